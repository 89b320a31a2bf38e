"""RED-CNN + least-squares GAN enhancer of low-dose CT, small: thorax phantoms, CPU-sized.

``EXPERIMENT`` maps the FBP (ramp filter) of a sinogram re-acquired at 2.5e3 photons per bin to
the FBP of it at 1e4, a quarter dose to a normal dose as in the Mayo low-dose CT challenge, fresh
Poisson noise per example and epoch (:class:`experiments.base.LDCTData`): 64 x 64 thorax
phantoms (400 mm field of view), 96 parallel-beam views over 180 degrees, 64 training and 8 test
slices. The normal dose keeps a noise texture of its own, which is what the critic can learn to
ask for (at 1e6 the target is nearly noiseless and the critic had nothing to tell apart).
Generator: RED-CNN (5 + 5 layers of 32 features) on standardised images. Critic: a per-image
convolutional critic (:class:`recon.gan.WGANCritic`, 3 levels of 32 features, trained with the
least-squares loss); a PatchGAN, whose instance normalisation removes each image's overall noise
level, stayed at chance (real and fake scores both 0.5) in 400-step trials here, this one told
normal-dose FBP from the generator's output (0.60 against 0.46). Generator loss ``50 L1 + 0.01
adversarial`` (images in mm^-1: 50 ~ 1 / mu_water puts the L1 in units of water attenuation, so
the ratio of the terms is pix2pix's ``lambda_L1 = 100`` against 1); weights averaged with decay
0.995 (the averaged generator is the saved model); 800 steps of 2 slices. Trains in about 4
minutes on a 2-core CPU.

``recon train gan_ldct_small_pixel`` (:mod:`experiments.gan_ldct_small_pixel`) is the same run
with ``adv_weight = 0``: the RED-CNN pixel-loss baseline (the critic is trained and logged but
does not reach the generator).

``FULL`` is a full-size GPU configuration after Chen et al. 2017 (RED-CNN: 5 convolutions and 5
deconvolutions of 96 5x5 filters, stride 1, no padding, residual shortcuts; Adam from 1e-4
decaying to 1e-5; MSE in the paper, L1 here) with the usual LDCT GAN additions (a WGAN-GP critic,
gradient penalty 10, several critic updates per generator update, as in WGAN-VGG, Yang et al.
2018), on 512 x 512 slices, 720 views and a quarter dose; our thorax phantoms stand in for the
Mayo / NBIA data. Not run in CI.
"""

from experiments.base import Experiment, LDCTData

EXPERIMENT = Experiment(
    name="gan_ldct_small",
    model={"model": "redcnn", "complex_images": False, "features": 32, "layers": 5},
    train={"optimizer": "adam", "learning_rate": 1e-3, "b1": 0.5, "warmup_steps": 20, "decay_steps": 800,
           "end_learning_rate": 1e-5, "clip_norm": 1.0, "loss": {"l1": 50.0}, "batch_size": 2,
           "checkpoint_every": 200},
    gan={"critic": {"model": "wgan", "features": 32, "layers": 3, "spectral_norm": False},
         "critic_optimizer": {"learning_rate": 1e-3}, "adversarial": "lsgan", "adv_weight": 0.01,
         "critic_steps": 1, "ema_decay": 0.995, "seed": 0},
    data=LDCTData(size=64, angles=96, fov_mm=400.0, train=64, test=8, dose=2.5e3, normal_dose=1e4,
                  filter="ramp"),
    steps=800,
)

FULL = Experiment(
    name="gan_ldct_full",
    model={"model": "redcnn", "complex_images": False, "features": 96, "layers": 5},
    train={"optimizer": "adam", "learning_rate": 1e-4, "b1": 0.5, "b2": 0.9, "warmup_steps": 0,
           "decay_steps": 200_000, "end_learning_rate": 1e-5, "clip_norm": 1.0, "loss": {"l1": 50.0},
           "batch_size": 16, "checkpoint_every": 5000},
    gan={"critic": {"model": "wgan", "features": 64, "layers": 4, "spectral_norm": False},
         "critic_optimizer": {}, "adversarial": "wgan-gp", "adv_weight": 0.01, "gp_weight": 10.0,
         "critic_steps": 4, "ema_decay": 0.999, "seed": 0},
    data=LDCTData(size=512, angles=720, fov_mm=400.0, train=5000, test=500, dose=2.5e5, normal_dose=1e6,
                  filter="ramp"),
    steps=200_000,
)
