"""MoDL (Aggarwal, Mani & Jacob, IEEE TMI 2019), small: 8-coil simulated brain slices at 4x and 8x, CPU-sized.

``EXPERIMENT``: 5 weight-shared iterations of a 5-layer DnCNN (32 features) and 6 CG steps, on
64 x 64 slices with ESPIRiT maps, random masks at 4x or 8x (8 % centre, the block its maps come from) drawn per
example; trains in minutes on a 2-core CPU and ships in ``recon/data/modl_small`` (``recon
reconstruct --method modl`` without ``--weights``). The denoiser is local (an 11-pixel receptive
field) and the data consistency exact, so the model runs on any matrix size. ``lambda`` starts at 1 (of
``||A^H A|| = 1``): from the paper's 0.05 the denoiser barely reaches the output and the loss
did not fall in 800 steps here; from 1 it falls from the first hundred.

``FULL`` is the paper's configuration (and its code, ``hkaggarwal/modl`` ``trn.py``): K = 10
iterations sharing one 5-layer CNN of 64 3x3 filters (residual, batch norm in the paper; our
DnCNN has none), lambda learned from 0.05, 10 CG iterations per data-consistency step, Adam at
1e-3, batch 1, 50 epochs of 360 slices (4 subjects; 164 test slices of a fifth) of 12-channel
brain data, 256 x 232, 6x random undersampling, ESPIRiT maps, MSE loss. Our simulated data stands
in for the brain data set (256 x 256, 12 coils, 4x column masks).
"""

from experiments.base import Experiment, MRIData

EXPERIMENT = Experiment(
    name="modl_small",
    model={"model": "modl", "cascades": 5, "features": 32, "depth": 5, "lam": 1.0,
           "cg_iterations": 6},
    train={"optimizer": "adam", "learning_rate": 1e-3, "warmup_steps": 20, "decay_steps": 2000,
           "end_learning_rate": 1e-5, "clip_norm": 1.0, "loss": {"ssim": 0.84, "l1": 0.16},
           "batch_size": 1, "checkpoint_every": 100},
    data=MRIData(size=64, coils=8, train=64, test=8, acceleration=[4.0, 8.0], center_fraction=0.08),
    steps=2000,
)

FULL = Experiment(
    name="modl_full",
    model={"model": "modl", "cascades": 10, "features": 64, "depth": 5, "lam": 0.05,
           "cg_iterations": 10},
    train={"optimizer": "adam", "learning_rate": 1e-3, "warmup_steps": 0, "decay_steps": 50 * 360,
           "end_learning_rate": 1e-3, "clip_norm": 1.0, "loss": {"mse": 1.0}, "batch_size": 1,
           "checkpoint_every": 360},
    data=MRIData(size=256, coils=12, train=360, test=164, acceleration=4.0, center_fraction=0.08),
    steps=50 * 360,
)
