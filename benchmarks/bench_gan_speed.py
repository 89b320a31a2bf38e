"""Training-step speed of the low-dose CT GAN: recon-engine (JAX) vs the same GAN in PyTorch.

Problem: the configuration of ``experiments/gan_ldct_small.py``: generator RED-CNN (5 + 5 valid
5x5 layers of 32 features, residual shortcuts, on images standardised per image), critic
:class:`recon.gan.WGANCritic` (one score per image: 3 stride-2 4x4 convolutions, padding 1, of
32, 64, 128 features, LeakyReLU 0.2, no normalisation layer, spatial mean, linear layer without
bias; spectral norm as the config says, off in the experiment) trained with the least-squares GAN
loss on images divided by each target's root-mean-square, Adam (b1 0.5) with the warm-up + cosine
schedule and global-norm clipping at 1 for each network, generator loss ``50 L1 + 0.01 adv``, EMA
of the generator weights (decay ``min(0.995, (1 + t) / (10 + t))`` at step ``t``, as
:func:`recon.gan.train_gan`). One training step = one critic update on the real and the
(detached) generated batch, one generator update (from the same generator pass: the generator
has not changed in between), one EMA update; float32, images in mm^-1
(thorax phantoms of :mod:`physics.ct_phantom` plus Gaussian noise; the time does not depend on
the content). Cases: the experiment's batch (``train["batch_size"]``, 2) at its 64 x 64, and the
same batch at 128 x 128 (a common LDCT training patch).

- recon-engine: :func:`recon.gan.make_gan_step` (``nnx.jit``) on the models the experiment
  trains (:func:`recon.unrolled.build_model`, :func:`recon.gan.build_critic`), optimisers of
  :func:`recon.train.make_optimizer` (the experiment's generator and critic configs, as
  :class:`recon.gan.GANConfig` gives them), then :func:`recon.gan.ema_update` with the warm-up
  decay. Compilation is excluded (a first step before timing).
- PyTorch (eager, ``torch.set_num_threads(os.cpu_count())``, in the same process): the same
  networks written by hand (:class:`TorchREDCNN`, :class:`TorchWGANCritic`; spectral norm, where
  configured, by ``torch.nn.utils.parametrizations.spectral_norm``, one power iteration per call
  as ours), the same step: ``real`` and the detached ``fake`` divided by the target's RMS
  (recomputed each step, as ours), critic scores of ``cat([real, fake])`` in one call, critic
  loss by deepinv's LSGAN :class:`deepinv.loss.adversarial.DiscriminatorMetric`, generator
  adversarial term (the prediction divided by the same RMS, scored by the updated critic) by
  :class:`deepinv.loss.adversarial.SupAdversarialGeneratorLoss` (its MSE has no 1/2, so its
  weight is ``adv_weight / 2``), critic parameters frozen during the generator's backward pass
  (ours differentiates only the generator), ``torch.optim.Adam`` + ``clip_grad_norm_`` +
  ``LambdaLR`` of the same schedule, EMA by ``torch.optim.swa_utils.AveragedModel`` (parameters
  only; its first update copies the initial weights, as ours clones them, then it averages with
  the warm-up decay).

What deepinv does not give: its critics (``PatchGANDiscriminator``, ``DCGANDiscriminator``, ...)
are not this per-image critic (``DCGANDiscriminator`` ends in a full-size convolution and a
sigmoid and uses batch norm); it has no RED-CNN; its ``AdversarialTrainer`` runs a different step
(the generator update first, from one generator forward pass shared with the critic update,
critic gradients accumulated by the generator's backward pass) inside an epoch loop over a data
loader and a physics operator, with no RMS scaling. So the networks and the step are written
here, and deepinv's losses are used.

Before timing, each case checks that the two sides have the same number of trainable
parameters per network, and that they are the same function: the PyTorch networks loaded with
our weights (the critic with our spectrally normalised kernels where configured) give our
outputs to 1e-4. Without spectral norm (the experiment) it also checks that they train alike:
the PyTorch networks that are timed start from our weights, and three steps of each side give
the same critic and generator losses, and EMA generators of the same output, to 1e-4. One
difference left with spectral norm: in the generator update ours runs the critic's power
iteration on a copy and drops it, PyTorch's (training mode) stores it; the same work either way.
Ours reuses one RNG key (the LSGAN step draws nothing; :func:`recon.gan.train_gan` draws a key
per step).

Run: ``.venv/bin/python -m pytest benchmarks/bench_gan_speed.py --benchmark-only -s``
(needs the ``peers`` extra; about 1.5 to 2 minutes on 2 cores). PyTorch's eager step, with a
thread per core, slows many-fold while another process uses the cores (at 64 x 64 on a shared
2-core machine: 0.11 s minimum, 2.3 s median), so compare minima too, or run on idle cores.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from experiments.gan_ldct_small import EXPERIMENT
from physics.ct_phantom import anatomical_ellipses, ellipse_image, scale_ellipses
from recon.gan import GANConfig, SpectralNorm, build_critic, ema_update, make_gan_step
from recon.nets import parameter_count
from recon.train import make_optimizer
from recon.unrolled import build_model

torch = pytest.importorskip("torch")
adversarial = pytest.importorskip("deepinv.loss.adversarial")
nn = torch.nn

CONFIG = GANConfig.from_dict(EXPERIMENT.config())
BATCH = CONFIG.batch_size
CASES = [(BATCH, EXPERIMENT.data.size), (BATCH, 128)]  # (batch, image size): the experiment's, a usual LDCT patch
FOV_MM, NOISE = 400.0, 0.2  # field of view; noise std relative to mu_water (~0.019 mm^-1)
ROUNDS = {64: 10, 128: 5}  # timed steps per image size
CHECK_STEPS = 3  # steps of each side compared before timing
PEER = "PyTorch + deepinv losses"


def group(batch: int, n: int) -> str:
    model, critic = EXPERIMENT.model, CONFIG.critic
    sn = "SN " if critic.get("spectral_norm", False) else ""
    return (f"GAN train step (critic + generator + EMA), RED-CNN {model['features']}x{model['layers']} + "
            f"{sn}per-image critic {critic['features']}x{critic['layers']} ({CONFIG.adversarial}), "
            f"batch {batch}, {n}x{n}")


def ema_decay(t: int) -> float:
    """The EMA decay of step ``t`` (0-based) in :func:`recon.gan.train_gan`."""
    return min(CONFIG.ema_decay, (1 + t) / (10 + t))


def make_batch(batch: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(low_dose, normal_dose)`` float32 ``(batch, n, n)`` in mm^-1: thorax phantoms, plus noise."""
    pixel = FOV_MM / n
    target = np.stack([ellipse_image(scale_ellipses(anatomical_ellipses(seed=i), (n, n), pixel_size=pixel),
                                     (n, n), pixel_size=pixel) for i in range(batch)])
    noise = np.random.default_rng(0).normal(0.0, NOISE * float(target.max()), target.shape)
    return (target + noise).astype(np.float32), target.astype(np.float32)


# ------------------------------------------------------------------------------------------------
# PyTorch networks
# ------------------------------------------------------------------------------------------------
class TorchREDCNN(nn.Module):
    """:class:`recon.unrolled.REDCNNDenoiser` for real images: ``x (B, ny, nx)`` -> same."""

    def __init__(self, features: int, layers: int):
        super().__init__()
        enc, dec = [1] + [features] * layers, [features] * layers + [1]
        self.layers = layers
        self.encoder = nn.ModuleList(nn.Conv2d(a, b, 5) for a, b in zip(enc[:-1], enc[1:]))
        self.decoder = nn.ModuleList(nn.ConvTranspose2d(a, b, 5) for a, b in zip(dec[:-1], dec[1:]))

    def forward(self, x):
        h = x[:, None]
        mean, var = h.mean((-2, -1), keepdim=True), h.var((-2, -1), unbiased=False, keepdim=True)
        std = torch.sqrt(torch.where(var > 0, var, torch.ones_like(var)))
        h = (h - mean) / std
        shortcuts = {0: h}
        for k, conv in enumerate(self.encoder, start=1):
            h = torch.relu(conv(h))
            if k % 2 == 0 and k < self.layers:
                shortcuts[k] = h
        for j, deconv in enumerate(self.decoder, start=1):
            h = deconv(h)
            if self.layers - j in shortcuts:
                h = h + shortcuts[self.layers - j]
            if j < self.layers:
                h = torch.relu(h)
        return (h * std + mean)[:, 0]


class TorchWGANCritic(nn.Module):
    """:class:`recon.gan.WGANCritic` for real images: ``x (B, ny, nx)`` -> scores ``(B,)``."""

    def __init__(self, features: int, layers: int, spectral_norm: bool):
        super().__init__()
        widths = [1] + [features * min(2 ** i, 8) for i in range(layers)]

        def sn(m: nn.Module) -> nn.Module:
            return nn.utils.parametrizations.spectral_norm(m) if spectral_norm else m

        self.convs = nn.ModuleList(sn(nn.Conv2d(a, b, 4, stride=2, padding=1))
                                   for a, b in zip(widths[:-1], widths[1:]))
        self.out = sn(nn.Linear(widths[-1], 1, bias=False))

    def forward(self, x):
        h = x[:, None]
        for conv in self.convs:
            h = nn.functional.leaky_relu(conv(h), 0.2)
        return self.out(h.mean((-2, -1)))[:, 0]


def torch_networks(spectral_norm: bool | None = None) -> tuple[TorchREDCNN, TorchWGANCritic]:
    """The experiment's generator and critic in PyTorch (``spectral_norm`` overrides the config's)."""
    model, critic = EXPERIMENT.model, CONFIG.critic
    sn = critic.get("spectral_norm", False) if spectral_norm is None else spectral_norm
    return (TorchREDCNN(model["features"], model["layers"]),
            TorchWGANCritic(critic["features"], critic["layers"], sn))


def _tensor(a) -> torch.Tensor:
    return torch.from_numpy(np.array(a, np.float32))


def _kernel_bias(layer: nnx.Module) -> tuple[jax.Array, nnx.Param | None]:
    """A layer's kernel (divided by its current sigma for a :class:`SpectralNorm` one) and bias."""
    if isinstance(layer, SpectralNorm):
        return layer.normalized_kernel(), layer.layer.bias
    return layer.kernel[...], layer.bias


def load_ours(torch_g: TorchREDCNN, torch_c: TorchWGANCritic, generator, critic) -> None:
    """Copy our weights into PyTorch networks without spectral norm (``torch_c`` gets our spectrally
    normalised kernels where ours has them): NHWC ``(kh, kw, in, out)`` kernels to ``(out, in, kh,
    kw)``, ``(in, out)`` to ``(out, in)``; flax's transposed convolution does not flip its kernel,
    PyTorch's does."""
    with torch.no_grad():
        for t, o in zip(torch_g.encoder, generator.net.encoder):
            t.weight.copy_(_tensor(o.kernel[...]).permute(3, 2, 0, 1))
            t.bias.copy_(_tensor(o.bias[...]))
        for t, o in zip(torch_g.decoder, generator.net.decoder):
            t.weight.copy_(_tensor(o.kernel[...]).flip(0, 1).permute(2, 3, 0, 1))
            t.bias.copy_(_tensor(o.bias[...]))
        for t, o in zip(torch_c.convs, critic.convs):
            kernel, bias = _kernel_bias(o)
            t.weight.copy_(_tensor(kernel).permute(3, 2, 0, 1))
            t.bias.copy_(_tensor(bias[...]))
        kernel, bias = _kernel_bias(critic.out)
        assert bias is None and torch_c.out.bias is None
        torch_c.out.weight.copy_(_tensor(kernel).T)


def schedule_factor(config: dict):
    """:func:`recon.train.learning_rate_schedule` over ``learning_rate``, for ``LambdaLR``."""
    peak, end = config["learning_rate"], config["end_learning_rate"]
    warm, decay = config["warmup_steps"], config["decay_steps"]

    def factor(t: int) -> float:
        if t < warm:
            return t / warm
        s = min(t - warm, decay - warm) / (decay - warm)
        return (end + (peak - end) * 0.5 * (1 + math.cos(math.pi * s))) / peak

    return factor


# ------------------------------------------------------------------------------------------------
# the two sides
# ------------------------------------------------------------------------------------------------
def ours() -> tuple[nnx.Module, nnx.Module]:
    generator = build_model(EXPERIMENT.model, nnx.Rngs(0))
    return generator, build_critic(CONFIG.critic, 1, nnx.Rngs(1))


def our_training(generator, critic, inputs: np.ndarray, target: np.ndarray) -> tuple[Callable, nnx.Module]:
    """``(step, ema)``: ``step()`` runs one GAN step + EMA update of ours and returns
    ``(critic loss, generator loss)``; ``ema`` is the averaged generator."""
    ema = nnx.clone(generator)
    g_opt = nnx.Optimizer(generator, make_optimizer(CONFIG.optimizer_config("generator")), wrt=nnx.Param)
    c_opt = nnx.Optimizer(critic, make_optimizer(CONFIG.optimizer_config("critic")), wrt=nnx.Param)
    gan_step = make_gan_step(CONFIG.loss, adversarial=CONFIG.adversarial, adv_weight=CONFIG.adv_weight,
                             gp_weight=CONFIG.gp_weight, critic_steps=CONFIG.critic_steps)
    data = {"inputs": {"x": jnp.asarray(inputs)}, "target": jnp.asarray(target)}
    key, counter = jax.random.key(CONFIG.seed), itertools.count()

    def step():
        metrics = gan_step(generator, critic, g_opt, c_opt, data, key)
        ema_update(ema, generator, ema_decay(next(counter)))
        metrics, _ = jax.block_until_ready((metrics, nnx.state(ema, nnx.Param)))
        return float(metrics["critic"]), float(metrics["generator"])

    return step, ema


def torch_training(generator: TorchREDCNN, critic: TorchWGANCritic, inputs: np.ndarray,
                   target: np.ndarray) -> tuple[Callable, nn.Module]:
    """``(step, ema)`` of PyTorch, as :func:`our_training`."""
    assert CONFIG.adversarial == "lsgan" and CONFIG.critic_steps == 1
    g_config, c_config = CONFIG.optimizer_config("generator"), CONFIG.optimizer_config("critic")
    assert g_config["optimizer"] == c_config["optimizer"] == "adam"
    g_opt = torch.optim.Adam(generator.parameters(), lr=g_config["learning_rate"],
                             betas=(g_config["b1"], g_config["b2"]), eps=g_config["eps"])
    c_opt = torch.optim.Adam(critic.parameters(), lr=c_config["learning_rate"],
                             betas=(c_config["b1"], c_config["b2"]), eps=c_config["eps"])
    g_sched = torch.optim.lr_scheduler.LambdaLR(g_opt, schedule_factor(g_config))
    c_sched = torch.optim.lr_scheduler.LambdaLR(c_opt, schedule_factor(c_config))

    def warm_ema(ema_params, params, n_averaged):  # n_averaged = 1 + t at step t
        torch.optim.swa_utils.get_ema_multi_avg_fn(ema_decay(int(n_averaged) - 1))(ema_params, params, None)

    ema = torch.optim.swa_utils.AveragedModel(generator, multi_avg_fn=warm_ema)
    ema.update_parameters(generator)  # copies the initial weights (ours: nnx.clone)
    metric = adversarial.DiscriminatorMetric()  # LSGAN: MSE to labels 1 (real) / 0 (fake)
    # deepinv's generator term is MSE(D(fake), 1), ours (1/2) mean (D(fake) - 1)^2
    g_adversarial = adversarial.SupAdversarialGeneratorLoss(weight_adv=CONFIG.adv_weight / 2, D=critic)
    (pixel_name, pixel_weight), = CONFIG.loss.items()
    assert pixel_name == "l1"
    x, target = _tensor(inputs), _tensor(target)
    batch = target.shape[0]

    def step():
        ms = target.square().mean((-2, -1), keepdim=True)  # recon.gan._rms
        scale = torch.sqrt(torch.where(ms > 0, ms, torch.ones_like(ms)))
        real = target / scale
        pred = generator(x)  # one generator pass for both updates, as ours
        fake = pred.detach() / scale
        c_opt.zero_grad(set_to_none=True)
        scores = critic(torch.cat([real, fake]))
        c_loss = 0.5 * (metric(scores[:batch], real=True) + metric(scores[batch:], real=False))
        c_loss.backward()
        nn.utils.clip_grad_norm_(critic.parameters(), c_config["clip_norm"])
        c_opt.step()
        c_sched.step()
        critic.requires_grad_(False)
        g_opt.zero_grad(set_to_none=True)
        g_loss = pixel_weight * nn.functional.l1_loss(pred, target) + g_adversarial(real, pred / scale)
        g_loss.backward()
        critic.requires_grad_(True)
        nn.utils.clip_grad_norm_(generator.parameters(), g_config["clip_norm"])
        g_opt.step()
        g_sched.step()
        ema.update_parameters(generator)
        return float(c_loss.detach()), float(g_loss.detach())

    return step, ema


@pytest.mark.parametrize("batch,n", CASES, ids=[f"{b}x{n}" for b, n in CASES])
def test_recon_engine_gan_step(benchmark, record_median, batch, n):
    benchmark.group = group(batch, n)
    inputs, target = make_batch(batch, n)
    step, _ = our_training(*ours(), inputs, target)
    assert all(np.isfinite(step()))  # compiles
    benchmark.pedantic(step, rounds=ROUNDS[n])
    record_median("recon-engine")


@pytest.mark.parametrize("batch,n", CASES, ids=[f"{b}x{n}" for b, n in CASES])
def test_torch_gan_step(benchmark, record_median, batch, n):
    benchmark.group = group(batch, n)
    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    inputs, target = make_batch(batch, n)
    generator, critic = torch_networks()
    ours_g, ours_c = ours()
    assert sum(p.numel() for p in generator.parameters()) == parameter_count(ours_g)
    assert sum(p.numel() for p in critic.parameters()) == parameter_count(ours_c)

    # the same functions: our weights in the PyTorch networks give our outputs
    check_g, check_c = torch_networks(spectral_norm=False)
    ours_c.set_attributes(update_stats=False, raise_if_not_found=False)  # SN: no power step
    load_ours(check_g, check_c, ours_g, ours_c)
    ours_c.set_attributes(update_stats=True, raise_if_not_found=False)
    scaled = target / np.sqrt(np.mean(target ** 2, axis=(-2, -1), keepdims=True))  # what the critic sees
    with torch.no_grad():
        np.testing.assert_allclose(check_g(_tensor(inputs)).numpy(), np.asarray(ours_g(jnp.asarray(inputs))),
                                   atol=1e-4 * float(target.max()), rtol=1e-4)
        np.testing.assert_allclose(check_c(_tensor(scaled)).numpy(), np.asarray(ours_c(jnp.asarray(scaled))),
                                   atol=1e-4, rtol=1e-4)

    if not CONFIG.critic.get("spectral_norm", False):
        # the same training: from our weights, CHECK_STEPS steps of each give the same losses and EMA
        load_ours(generator, critic, ours_g, ours_c)
        step, ema = torch_training(generator, critic, inputs, target)
        our_step, our_ema = our_training(ours_g, ours_c, inputs, target)
        for _ in range(CHECK_STEPS):
            np.testing.assert_allclose(step(), our_step(), rtol=1e-4, atol=1e-6)
        with torch.no_grad():
            np.testing.assert_allclose(ema(_tensor(inputs)).numpy(), np.asarray(our_ema(jnp.asarray(inputs))),
                                       atol=1e-4 * float(target.max()), rtol=1e-4)
    else:
        step, _ = torch_training(generator, critic, inputs, target)
        step()
    assert all(np.isfinite(step()))
    benchmark.pedantic(step, rounds=ROUNDS[n])
    record_median(PEER)
    print(f"\n{group(batch, n)}: torch threads {torch.get_num_threads()}")
