"""U-Net + least-squares GAN refinement of zero-filled multi-coil MRI at 4x, small: CPU-sized.

``EXPERIMENT``: the generator refines the coil-combined zero-filled image ``A^H y`` (complex,
``A = M F S`` with ESPIRiT maps of the fully sampled centre block, as the operator models use;
:class:`recon.gan.MultiCoilEnhancer`) of 8-coil simulated 64 x 64 brain slices, random column
masks at 4x with 8 % centre, fresh per example and epoch; 64 training and 8 test slices. Target:
the fully sampled reference, the file's RSS image (magnitude): the generator's complex output is
compared in magnitude by the pixel loss and by the critic, so no complex target is invented (the
phase of the output is the input's plus the network's residual, and data consistency keeps the
measured k-space). Generator: a residual fastMRI U-Net (16 channels, 3 pools) on standardised
complex images. Critic: a per-image convolutional critic (:class:`recon.gan.WGANCritic`, 3
levels of 16 features, least-squares loss) on magnitudes, as in
:mod:`experiments.gan_ldct_small` (a PatchGAN's instance normalisation hides each image's
overall noise level). Generator loss ``0.84 (1 - SSIM) + 0.16 L1 + 0.01 adversarial``; weights
averaged with decay 0.995; 1000 steps of 4 slices. ``recon evaluate --model`` scores the
averaged generator's output (``model``), the same after exact data consistency with the real
operator (``model+dc``, :func:`recon.pnp.replace_measured`: the measured k-space is kept, and with
it the measured noise, which the projection amplifies) and after the noise-weighted one
(``model+noise-dc``, weighed by the generator's relative error on validation slices; see
:class:`recon.gan.MultiCoilEnhancer`). :mod:`experiments.modl_gan_small` uses the generator as
MoDL's regulariser block.
Trains in about 1.5 minutes on an idle 2-core CPU.

``FULL`` is a full-size GPU configuration: fastMRI's U-Net (32 channels, 4 pools) as the
generator on 320 x 320 16-coil slices, a critic of 64 features and 4 levels, the same losses;
E2E-VarNet's data sizes (``experiments.e2e_varnet_small.FULL``). Not run in CI.
"""

from experiments.base import Experiment, MRIData

EXPERIMENT = Experiment(
    name="gan_mri_small",
    model={"model": "unet_denoiser", "complex_images": True, "chans": 16, "pools": 3},
    train={"optimizer": "adam", "learning_rate": 1e-3, "b1": 0.5, "warmup_steps": 20, "decay_steps": 1000,
           "end_learning_rate": 1e-5, "clip_norm": 1.0, "loss": {"ssim": 0.84, "l1": 0.16},
           "batch_size": 4, "checkpoint_every": 200},
    gan={"critic": {"model": "wgan", "features": 16, "layers": 3, "spectral_norm": False},
         "critic_optimizer": {"learning_rate": 1e-3}, "adversarial": "lsgan", "adv_weight": 0.01,
         "critic_steps": 1, "ema_decay": 0.995, "seed": 0},
    data=MRIData(size=64, coils=8, train=64, test=8, acceleration=4.0, center_fraction=0.08),
    steps=1000,
)

FULL = Experiment(
    name="gan_mri_full",
    model={"model": "unet_denoiser", "complex_images": True, "chans": 32, "pools": 4},
    train={"optimizer": "adam", "learning_rate": 3e-4, "b1": 0.5, "warmup_steps": 0,
           "decay_steps": 50 * 35_000 // 8, "end_learning_rate": 1e-6, "clip_norm": 1.0,
           "loss": {"ssim": 0.84, "l1": 0.16}, "batch_size": 8, "checkpoint_every": 5000},
    gan={"critic": {"model": "wgan", "features": 64, "layers": 4, "spectral_norm": False},
         "critic_optimizer": {}, "adversarial": "lsgan", "adv_weight": 0.01, "critic_steps": 1,
         "ema_decay": 0.999, "seed": 0},
    data=MRIData(size=320, coils=16, train=35_000, test=2_000),
    steps=50 * 35_000 // 8,
)
