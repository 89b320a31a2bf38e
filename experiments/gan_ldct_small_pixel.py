"""RED-CNN trained with the pixel loss only: :data:`experiments.gan_ldct_small.EXPERIMENT` with
``adv_weight = 0`` (the baseline that the adversarial term is compared against); ``FULL`` likewise."""

import dataclasses

from experiments import gan_ldct_small

EXPERIMENT = dataclasses.replace(gan_ldct_small.EXPERIMENT, name="gan_ldct_small_pixel",
                                 gan={**gan_ldct_small.EXPERIMENT.gan, "adv_weight": 0.0})
FULL = dataclasses.replace(gan_ldct_small.FULL, name="gan_ldct_full_pixel",
                           gan={**gan_ldct_small.FULL.gan, "adv_weight": 0.0})
