"""Learned primal-dual (Adler & Oktem, IEEE TMI 2018), small: low-dose sparse-view thorax CT.

``EXPERIMENT``: 6 primal-dual iterations with memories of 5 + 5, residual CNNs of 3 layers and
16 features, on 64 x 64 thorax phantoms (400 mm field of view), 60 parallel-beam views over 180
degrees, Poisson noise at 1e4 photons per bin; trains in minutes on a 2-core CPU. Images are in
mm^-1 (water 0.0192), so the L1 term is weighted 8 (~0.16 / mu_water): with the MRI experiments'
0.16 it vanishes beside SSIM, which leaves the intensity free (PSNR 12.5 dB after 600 steps).

``FULL`` is the paper's ellipse experiment (and its code, ``adler-j/learned_primal_dual``
``ellipses/learned_primal_dual.py``): 10 iterations, primal and dual memories of 5, per block
three 3x3 convolutions (32, 32 features with PReLU, then 5; ours use ReLU), untied weights, the
projector scaled to norm 1; 128 x 128 random-ellipse phantoms, 30 parallel-beam views, 5 % white
Gaussian noise; MSE loss, Adam (beta2 = 0.99) at 1e-3 with cosine decay over 100,001 steps,
gradients clipped to norm 1, batches of 5. (Its human-phantom experiment is a fan beam of 1000
views and 1000 bins on 512 x 512 Mayo slices with a non-linear, Poisson forward model.) Our
thorax phantoms and Poisson noise stand in for the random ellipses and Gaussian noise.
"""

from experiments.base import CTData, Experiment

EXPERIMENT = Experiment(
    name="lpd_ct_small",
    model={"model": "learned_primal_dual", "cascades": 6, "primal_memory": 5, "dual_memory": 5,
           "features": 16, "depth": 3},
    train={"optimizer": "adam", "learning_rate": 1e-3, "b2": 0.99, "warmup_steps": 20,
           "decay_steps": 1500, "end_learning_rate": 1e-5, "clip_norm": 1.0,
           "loss": {"ssim": 0.84, "l1": 8.0}, "batch_size": 1, "checkpoint_every": 250},
    data=CTData(size=64, angles=60, fov_mm=400.0, train=64, test=8, dose=1e4),
    steps=1500,
)

FULL = Experiment(
    name="lpd_ct_full",
    model={"model": "learned_primal_dual", "cascades": 10, "primal_memory": 5, "dual_memory": 5,
           "features": 32, "depth": 3},
    train={"optimizer": "adam", "learning_rate": 1e-3, "b2": 0.99, "warmup_steps": 0,
           "decay_steps": 100_001, "end_learning_rate": 0.0, "clip_norm": 1.0,
           "loss": {"mse": 1.0}, "batch_size": 5, "checkpoint_every": 1000},
    data=CTData(size=128, angles=30, fov_mm=128.0, train=50_000, test=100, dose=1e4),
    steps=100_001,
)
