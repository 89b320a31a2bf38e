"""Variational network (Hammernik et al., MRM 2018), small: 8-coil simulated brain slices at 4x.

``EXPERIMENT``: 8 gradient steps, each with its own fields-of-experts regulariser of 24 filters
of 5 x 5 and 15 Gaussian RBF potentials (the regulariser's gradient is differentiated again in
training, so filter size and RBF count set the cost), on 64 x 64 complex slices with ESPIRiT
maps; trains in minutes on a 2-core CPU.

``FULL`` is the paper's configuration (and its code, ``VLOGroup/mri-variationalnetwork``
``configs/``): T = 10 stages, 24 complex filters of 11 x 11 and 31 RBF activation weights per
stage, learned data-term weights, on coronal PD-FS knee data (15 coils, ESPIRiT maps; 10 patients
x 20 slices for training), regular 4x Cartesian undersampling with 24 ACS lines; trained by
IPALM on the MSE with batches of 10 (the code runs 1000 iterations). We train with Adam on our
simulated slices instead (320 x 320, 16 coils here).
"""

from experiments.base import Experiment, MRIData

EXPERIMENT = Experiment(
    name="varnet_small",
    model={"model": "varnet", "cascades": 8, "filters": 24, "kernel_size": 5, "rbf": 15},
    train={"optimizer": "adam", "learning_rate": 1e-3, "warmup_steps": 20, "decay_steps": 300,
           "end_learning_rate": 1e-5, "clip_norm": 1.0, "loss": {"ssim": 0.84, "l1": 0.16},
           "batch_size": 1, "checkpoint_every": 100},
    data=MRIData(size=64, coils=8, train=64, test=8, acceleration=4.0, center_fraction=0.08),
    steps=300,
)

FULL = Experiment(
    name="varnet_full",
    model={"model": "varnet", "cascades": 10, "filters": 24, "kernel_size": 11, "rbf": 31},
    train={"optimizer": "adam", "learning_rate": 1e-3, "warmup_steps": 0, "decay_steps": 1000,
           "end_learning_rate": 1e-5, "clip_norm": 1.0, "loss": {"mse": 1.0}, "batch_size": 10,
           "checkpoint_every": 100},
    data=MRIData(size=320, coils=16, train=200, test=20, acceleration=4.0, center_fraction=0.08),
    steps=1000,
)
