"""MoDL whose regulariser block is the GAN generator of ``gan_mri_small``, fine-tuned: CPU-sized.

``EXPERIMENT``: :mod:`experiments.modl_small` (5 weight-shared iterations, 6 CG steps, 8-coil
simulated 64 x 64 brain slices with ESPIRiT maps, random masks at 4x or 8x with 8 % centre drawn
per example) with the DnCNN replaced by the residual U-Net (16 channels, 3 pools) that
:mod:`experiments.gan_mri_small` trains adversarially as a stand-alone enhancer. The block starts
from that generator's averaged weights (``pretrained``; :func:`experiments.base.run` trains
``gan_mri_small`` into the sibling folder first when it has no model), ``lambda`` from 1, and the
whole network is fine-tuned end to end (SSIM + L1) for 600 steps at a tenth of the GAN's learning
rate. The unrolled network keeps the generator's prior and adds what it lacks: the data term,
weighed by a ``lambda`` learned on training data (MoDL's CG step is a soft data consistency).
``benchmarks/bench_gan_quality.py`` compares it with the stand-alone enhancer, the same network
trained from a random start for as many steps, and the DnCNN MoDL.

``FULL``: :data:`experiments.modl_small.FULL` with the generator of
:data:`experiments.gan_mri_small.FULL` (32 channels, 4 pools) as its block
(``gan_mri_small:FULL``, trained into the sibling folder ``gan_mri_full``).
"""

import dataclasses

from experiments import modl_small
from experiments.base import Experiment

EXPERIMENT = Experiment(
    name="modl_gan_small",
    model={"model": "modl", "cascades": 5, "denoiser": "unet_denoiser", "features": 16, "depth": 3,
           "lam": 1.0, "cg_iterations": 6},
    train={"optimizer": "adam", "learning_rate": 1e-4, "warmup_steps": 20, "decay_steps": 600,
           "end_learning_rate": 1e-6, "clip_norm": 1.0, "loss": {"ssim": 0.84, "l1": 0.16},
           "batch_size": 1, "checkpoint_every": 100},
    data=modl_small.EXPERIMENT.data,
    steps=600,
    pretrained={"denoiser": "gan_mri_small"},
)

FULL = dataclasses.replace(
    modl_small.FULL, name="modl_gan_full",
    model={**modl_small.FULL.model, "denoiser": "unet_denoiser", "features": 32, "depth": 4},
    pretrained={"denoiser": "gan_mri_small:FULL"})
