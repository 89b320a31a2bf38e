"""E2E-VarNet (Sriram et al. 2020), small: 8-coil simulated brain slices, CPU-sized.

``EXPERIMENT`` trains in about 40 minutes on a 2-core CPU and is the model shipped in
``recon/data/e2e_varnet_small`` (``recon demo``, ``recon reconstruct --method e2e-varnet``). So
that one model serves any matrix and the usual protocols, it sees matrices of 96 to 192 pixels,
single 2D-phantom slices and slice pairs of a 3D phantom, random and equispaced masks at 4x (8 %
centre) and 8x (4 % centre); four U-Net pools give each cascade a receptive field wider than the
aliasing shift N/R of a 192-pixel matrix at 4x.
``FULL`` is the paper's configuration for fastMRI brain/knee on a GPU (12 cascades, U-Nets of
18 channels and 4 pools, sensitivity U-Net 8/4, Adam 3e-4, SSIM loss, 50 epochs of ~35k slices,
batch 1).
"""

from experiments.base import Experiment, MRIData

EXPERIMENT = Experiment(
    name="e2e_varnet_small",
    model={"model": "e2e_varnet", "cascades": 4, "chans": 8, "pools": 4, "sens_chans": 4, "sens_pools": 3},
    train={"optimizer": "adam", "learning_rate": 1e-3, "warmup_steps": 100, "decay_steps": 3000,
           "end_learning_rate": 1e-5, "clip_norm": 1.0, "loss": {"ssim": 0.84, "l1": 0.16},
           "batch_size": 1, "checkpoint_every": 250},
    data=MRIData(size=[96, 128, 160, 192], coils=8, train=128, test=16, slices=[1, 2],
                 acceleration=[4.0, 8.0], center_fraction=[0.08, 0.04], mask=["random", "equispaced"]),
    steps=3000,
)

FULL = Experiment(
    name="e2e_varnet_full",
    model={"model": "e2e_varnet", "cascades": 12, "chans": 18, "pools": 4, "sens_chans": 8, "sens_pools": 4},
    train={"optimizer": "adam", "learning_rate": 3e-4, "warmup_steps": 0, "decay_steps": 50 * 35_000,
           "loss": {"ssim": 1.0}, "batch_size": 1, "checkpoint_every": 5000},
    data=MRIData(size=320, coils=16, train=35_000, test=2_000),
    steps=50 * 35_000,
)
