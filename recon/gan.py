"""Adversarially trained denoisers for image enhancement: RED-CNN generator, critics, GAN losses.

Images enter and leave every network here as they are in the physics: float32 ``(B, ny, nx)``
(CT) or complex64 (MRI), converted to real channels only by :func:`recon.nets.to_channels`.

- :class:`REDCNN` (Chen et al. 2017), the generator: a residual encoder-decoder CNN.
- :class:`PatchGAN` (Isola et al. 2017), least-squares patch critic, one score per patch;
  :class:`WGANCritic`, one score per image, without normalisation layers (gradient penalty).
- :class:`SpectralNorm` (Miyato et al. 2018): a layer whose kernel is divided by its largest
  singular value, estimated by power iteration.
- Losses: :func:`lsgan_losses` (Mao et al. 2017), :func:`wgan_losses` and
  :func:`gradient_penalty` (Gulrajani et al. 2017).
- Training: :func:`make_gan_step` (critic update(s), then generator update with a pixel loss of
  :mod:`recon.train` plus the adversarial loss), :func:`ema_update` (generator weight averaging).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

from physics.errors import InvalidDataError, ShapeError
from recon.nets import from_channels, to_channels
from recon.train import combined_loss

__all__ = ["PatchGAN", "PowerIterate", "REDCNN", "SpectralNorm", "WGANCritic", "ema_update",
           "gradient_penalty", "lsgan_losses", "make_gan_step", "wgan_losses"]

Adversarial = Literal["lsgan", "wgan-gp"]
GanStep = Callable[[nnx.Module, nnx.Module, nnx.Optimizer, nnx.Optimizer, dict, jax.Array],
                   dict[str, jax.Array]]


def _image_channels(x: jax.Array, channels: int, who: str) -> jax.Array:
    """``x (..., ny, nx)`` as channels ``(..., ny, nx, channels)``, checked."""
    h = to_channels(x)
    if h.shape[-1] != channels:
        kind = "complex" if jnp.iscomplexobj(x) else "real"
        raise ShapeError(f"{who}: built for {channels} image channel(s) (1 real, 2 complex), got a "
                         f"{kind} image of {h.shape[-1]}")
    return h


# ------------------------------------------------------------------------------------------------
# generator
# ------------------------------------------------------------------------------------------------
class REDCNN(nnx.Module):
    """RED-CNN (Chen et al. 2017): residual encoder-decoder CNN, ``D(x)`` an enhanced ``x``.

    Encoder: ``layers`` 5x5 convolutions (stride 1, *valid* padding, as in the paper: each one
    trims 2 pixels per side), decoder: ``layers`` 5x5 transposed convolutions (stride 1, valid:
    each one restores them), ``features`` channels between, ReLU. Shortcuts of the paper: the
    input is added to the last deconvolution's output, and the output of encoder conv ``k``
    (``k = 2, 4, ...``, ``k < layers``) to that of decoder deconv ``layers - k`` (same size),
    each before its ReLU. Unlike the paper there is no ReLU after the final sum, so images with
    negative values (complex parts, normalised CT) pass unchanged.

    ``x (..., ny, nx)``: float32 (``channels=1``) or complex64 (``channels=2``) -> same shape and
    dtype; needs ``ny, nx >= 4 layers + 1``.
    """

    def __init__(self, channels: int = 1, features: int = 96, layers: int = 5, *, rngs: nnx.Rngs):
        if channels not in (1, 2) or features < 1 or layers < 1:
            raise ShapeError(f"REDCNN: needs channels 1 (real) or 2 (complex), features >= 1, "
                             f"layers >= 1; got channels={channels}, features={features}, layers={layers}")
        enc = [channels] + [features] * layers
        dec = [features] * layers + [channels]
        self.channels, self.depth = channels, layers
        self.encoder = nnx.List([nnx.Conv(a, b, (5, 5), padding="VALID", rngs=rngs)
                                 for a, b in zip(enc[:-1], enc[1:])])
        self.decoder = nnx.List([nnx.ConvTranspose(a, b, (5, 5), padding="VALID", rngs=rngs)
                                 for a, b in zip(dec[:-1], dec[1:])])

    def __call__(self, x: jax.Array) -> jax.Array:
        h = _image_channels(x, self.channels, "REDCNN")
        smallest = 4 * self.depth + 1
        if min(h.shape[-3:-1]) < smallest:
            raise ShapeError(f"REDCNN: images of {self.depth} valid 5x5 layers need ny, nx >= {smallest}, "
                             f"got {h.shape[-3:-1]}")
        shortcuts = {0: h}  # encoder level -> feature map
        for k, conv in enumerate(self.encoder, start=1):
            h = jax.nn.relu(conv(h))
            if k % 2 == 0 and k < self.depth:
                shortcuts[k] = h
        for j, deconv in enumerate(self.decoder, start=1):
            h = deconv(h)
            if self.depth - j in shortcuts:
                h = h + shortcuts[self.depth - j]
            if j < self.depth:
                h = jax.nn.relu(h)
        return from_channels(h)


# ------------------------------------------------------------------------------------------------
# spectral normalisation
# ------------------------------------------------------------------------------------------------
class PowerIterate(nnx.Variable):
    """Right singular vector estimate of :class:`SpectralNorm` (training state, not a Param)."""


def _unit(v: jax.Array, eps: float) -> jax.Array:
    return v / (jnp.linalg.norm(v) + eps)


class SpectralNorm(nnx.Module):
    """``layer`` (an ``nnx.Conv``, ``nnx.ConvTranspose`` or ``nnx.Linear``) with its kernel divided
    by the kernel's largest singular value ``sigma`` (Miyato et al. 2018).

    The kernel ``(..., out)`` is taken as the matrix ``M`` of shape ``(prod(...), out)``; ``sigma``
    is estimated by ``steps`` power iterations from the stored vector ``u`` (a
    :class:`PowerIterate`, unit norm, ``(out,)``): ``v = Mu/|Mu|``, ``u = M^T v/|M^T v|``,
    ``sigma = v^T M u`` (``u``, ``v`` held constant for gradients). Each call stores the new ``u``
    while ``update_stats`` is True (``module.set_attributes(update_stats=False)`` freezes it), so
    the estimate converges over training. The output is that of the layer with kernel
    ``M / sigma``, computed exactly as ``(layer(x) - bias) / sigma + bias`` (the layer is linear in
    its kernel); the stored kernel itself is never changed (unlike ``nnx.SpectralNorm``).

    ``|M|_2 = 1`` bounds a convolution's operator norm by ``sqrt(kh kw)`` (by 1 for ``Linear``).
    """

    def __init__(self, layer: nnx.Module, *, steps: int = 1, eps: float = 1e-12,
                 update_stats: bool = True, rngs: nnx.Rngs):
        if not isinstance(getattr(layer, "kernel", None), nnx.Param):
            raise InvalidDataError(f"SpectralNorm wraps a layer with a 'kernel' Param, got "
                                   f"{type(layer).__name__}")
        if steps < 1:
            raise InvalidDataError(f"SpectralNorm: steps must be >= 1, got {steps}")
        self.layer, self.steps, self.eps, self.update_stats = layer, steps, eps, update_stats
        u = jax.random.normal(rngs.params(), (layer.kernel.shape[-1],), jnp.float32)
        self.u = PowerIterate(_unit(u, eps))

    def _estimate(self) -> tuple[jax.Array, jax.Array]:
        """``(u, sigma)`` after ``steps`` power iterations from the stored ``u``."""
        kernel = self.layer.kernel[...]
        m = kernel.reshape(-1, kernel.shape[-1])
        u = self.u[...]
        for _ in range(self.steps):
            v = _unit(m @ u, self.eps)
            u = _unit(m.T @ v, self.eps)
        u, v = jax.lax.stop_gradient(u), jax.lax.stop_gradient(v)
        return u, v @ m @ u

    def normalized_kernel(self) -> jax.Array:
        """The kernel divided by the current ``sigma`` estimate (nothing stored)."""
        return self.layer.kernel[...] / self._estimate()[1]

    def __call__(self, x: jax.Array) -> jax.Array:
        u, sigma = self._estimate()
        if self.update_stats:
            self.u[...] = u
        bias = 0.0 if self.layer.bias is None else self.layer.bias[...]
        return (self.layer(x) - bias) / sigma + bias


# ------------------------------------------------------------------------------------------------
# critics
# ------------------------------------------------------------------------------------------------
def _conv(a: int, b: int, stride: int, spectral_norm: bool, rngs: nnx.Rngs) -> nnx.Module:
    """4x4 convolution, padding 1 (pix2pix), optionally spectrally normalised."""
    conv = nnx.Conv(a, b, (4, 4), strides=(stride, stride), padding=((1, 1), (1, 1)), rngs=rngs)
    return SpectralNorm(conv, rngs=rngs) if spectral_norm else conv


def _critic_channels(x: jax.Array, channels: int, who: str) -> jax.Array:
    if jnp.ndim(x) != 3:
        raise ShapeError(f"{who}: expected images (batch, ny, nx), got shape {tuple(jnp.shape(x))}")
    return _image_channels(x, channels, who)


class PatchGAN(nnx.Module):
    """pix2pix's patch critic (Isola et al. 2017; 70x70 receptive field for ``layers=3``).

    4x4 convolutions, padding 1: ``layers`` of stride 2 with widths ``features * 2^i`` (capped at
    ``8 features``), one of stride 1, then a stride-1 convolution to one score per patch; LeakyReLU
    0.2 after every hidden layer, instance normalisation (``nnx.GroupNorm`` with one group per
    channel, affine) after every hidden layer but the first, no sigmoid (least-squares GAN).
    With ``spectral_norm`` every convolution is a :class:`SpectralNorm` one.

    ``x (B, ny, nx)`` float32 (``channels=1``) or complex64 (``channels=2``) -> scores
    ``(B, py, px)`` float32, ``py = ny / 2^layers - 2`` for ``ny`` a multiple of ``2^layers``.
    """

    def __init__(self, channels: int, features: int = 64, layers: int = 3, *, spectral_norm: bool = False,
                 rngs: nnx.Rngs):
        if channels not in (1, 2) or features < 1 or layers < 1:
            raise ShapeError(f"PatchGAN: needs channels 1 or 2, features >= 1, layers >= 1; got "
                             f"channels={channels}, features={features}, layers={layers}")
        widths = [channels] + [features * min(2 ** i, 8) for i in range(layers + 1)]
        strides = [2] * layers + [1]
        self.channels = channels
        self.convs = nnx.List([_conv(a, b, s, spectral_norm, rngs)
                               for a, b, s in zip(widths[:-1], widths[1:], strides)])
        self.norms = nnx.List([nnx.GroupNorm(w, num_groups=w, rngs=rngs) for w in widths[2:]])
        self.out = _conv(widths[-1], 1, 1, spectral_norm, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = _critic_channels(x, self.channels, "PatchGAN")
        h = jax.nn.leaky_relu(self.convs[0](h), 0.2)
        for conv, norm in zip(self.convs[1:], self.norms):
            h = jax.nn.leaky_relu(norm(conv(h)), 0.2)
        return self.out(h)[..., 0]


class WGANCritic(nnx.Module):
    """Convolutional Wasserstein critic: one unbounded score per image.

    ``layers`` 4x4 stride-2 convolutions (padding 1, widths ``features * 2^i`` capped at
    ``8 features``) with LeakyReLU 0.2 and no normalisation layer (a batch or instance norm
    would couple the examples or break the per-example gradient penalty), a spatial mean and a
    linear layer (no bias) to the score. With ``spectral_norm`` every convolution and the linear layer are
    :class:`SpectralNorm` ones.

    ``x (B, ny, nx)`` float32 (``channels=1``) or complex64 (``channels=2``) -> ``(B,)`` float32.
    """

    def __init__(self, channels: int, features: int = 64, layers: int = 4, *, spectral_norm: bool = False,
                 rngs: nnx.Rngs):
        if channels not in (1, 2) or features < 1 or layers < 1:
            raise ShapeError(f"WGANCritic: needs channels 1 or 2, features >= 1, layers >= 1; got "
                             f"channels={channels}, features={features}, layers={layers}")
        widths = [channels] + [features * min(2 ** i, 8) for i in range(layers)]
        self.channels = channels
        self.convs = nnx.List([_conv(a, b, 2, spectral_norm, rngs) for a, b in zip(widths[:-1], widths[1:])])
        linear = nnx.Linear(widths[-1], 1, use_bias=False, rngs=rngs)  # WGAN losses cancel a bias
        self.out = SpectralNorm(linear, rngs=rngs) if spectral_norm else linear

    def __call__(self, x: jax.Array) -> jax.Array:
        h = _critic_channels(x, self.channels, "WGANCritic")
        for conv in self.convs:
            h = jax.nn.leaky_relu(conv(h), 0.2)
        return self.out(jnp.mean(h, axis=(-3, -2)))[..., 0]


# ------------------------------------------------------------------------------------------------
# losses
# ------------------------------------------------------------------------------------------------
def lsgan_losses(real_scores: jax.Array, fake_scores: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Least-squares GAN (Mao et al. 2017, targets 0 fake / 1 real): ``(critic_loss, generator_loss)``.

    ``critic = (mean (D(real) - 1)^2 + mean D(fake)^2) / 2``, ``generator = mean (D(fake) - 1)^2 / 2``;
    scores of any shape (per image or per patch), scalars out.
    """
    critic = 0.5 * (jnp.mean((real_scores - 1.0) ** 2) + jnp.mean(fake_scores ** 2))
    return critic, 0.5 * jnp.mean((fake_scores - 1.0) ** 2)


def wgan_losses(real_scores: jax.Array, fake_scores: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Wasserstein GAN: ``(critic_loss, generator_loss) = (mean D(fake) - mean D(real), -mean D(fake))``
    (the critic's gradient penalty is :func:`gradient_penalty`, added by the caller)."""
    return jnp.mean(fake_scores) - jnp.mean(real_scores), -jnp.mean(fake_scores)


def _per_example(scores: jax.Array) -> jax.Array:
    """``(B, ...)`` scores -> ``(B,)``: the mean over everything but the batch axis."""
    return jnp.mean(scores.reshape(scores.shape[0], -1), axis=1)


def _frozen(critic: nnx.Module) -> Callable[[jax.Array], jax.Array]:
    """``critic``'s scores from a fresh copy of it made at each call (inside whatever ``jax``
    transform calls it), so that ``critic`` itself, power-iteration state included, is unchanged."""
    graphdef, state = nnx.split(critic)
    return lambda x: nnx.merge(graphdef, state, copy=True)(x)


def gradient_penalty(critic: nnx.Module, real: jax.Array, fake: jax.Array, key: jax.Array) -> jax.Array:
    """WGAN-GP penalty (Gulrajani et al. 2017): ``mean_b (||grad_x D(x_hat_b)||_2 - 1)^2``.

    ``x_hat_b = eps_b real_b + (1 - eps_b) fake_b`` with ``eps = jax.random.uniform(key, (B, 1, 1))``
    (one draw per example); ``D(x)`` is the critic's score of an image (the mean of its patch
    scores for a patch critic); the gradient is taken with respect to the real channels of the
    image (real and imaginary parts for complex images), its norm as ``sqrt(sum g^2 + 1e-12)``
    (finite gradients at 0). The critic must treat the examples independently; it is not changed.

    Args:
        critic: ``(B, ny, nx) -> (B, ...)`` scores.
        real, fake: images ``(B, ny, nx)`` of one shape and dtype.
        key: a ``jax.random`` key.

    Returns:
        () float32.
    """
    if jnp.shape(real) != jnp.shape(fake) or jnp.result_type(real) != jnp.result_type(fake):
        raise ShapeError(f"gradient_penalty: real {jnp.shape(real)} {jnp.result_type(real)} and fake "
                         f"{jnp.shape(fake)} {jnp.result_type(fake)} must have one shape and dtype")
    if jnp.ndim(real) < 1:
        raise ShapeError("gradient_penalty: expected a batch of images (B, ny, nx), got a scalar")
    eps = jax.random.uniform(key, (real.shape[0],) + (1,) * (jnp.ndim(real) - 1))
    x_hat = to_channels(eps * real + (1 - eps) * fake)
    frozen = _frozen(critic)
    grad = jax.grad(lambda h: jnp.sum(_per_example(frozen(from_channels(h)))))(x_hat)
    norms = jnp.sqrt(jnp.sum(grad.reshape(grad.shape[0], -1) ** 2, axis=1) + 1e-12)
    return jnp.mean((norms - 1.0) ** 2)


# ------------------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------------------
@jax.jit
def _average(ema: nnx.State, params: nnx.State, decay: jax.Array) -> nnx.State:
    return jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, ema, params)


def ema_update(ema_model: nnx.Module, model: nnx.Module, decay: float) -> None:
    """``ema <- decay * ema + (1 - decay) * param`` for every ``nnx.Param``, in ``ema_model`` in place.

    ``ema_model`` is a copy of the generator (e.g. ``nnx.clone(generator)`` at the start) whose
    averaged weights are used for inference; other variables are left as they are.

    Raises:
        InvalidDataError: ``decay`` not in ``[0, 1]``.
        ShapeError: the two models' parameters differ in structure or shape.
    """
    if not (isinstance(decay, (int, float)) and 0 <= decay <= 1):
        raise InvalidDataError(f"ema_update: decay must be a number in [0, 1], got {decay!r}")
    ema, params = nnx.state(ema_model, nnx.Param), nnx.state(model, nnx.Param)
    shapes = [jax.tree.map(jnp.shape, nnx.to_pure_dict(s)) for s in (ema, params)]
    if shapes[0] != shapes[1]:
        raise ShapeError("ema_update: the averaged model and the model have different parameters; "
                         "expected two instances of one architecture")
    nnx.update(ema_model, _average(ema, params, jnp.float32(decay)))


def make_gan_step(pixel_loss: Mapping[str, float], *, adversarial: Adversarial = "lsgan",
                  adv_weight: float = 1e-3, gp_weight: float = 10.0, critic_steps: int = 1) -> GanStep:
    """One jit-compiled alternating GAN step ``step(generator, critic, g_opt, c_opt, batch, key)``.

    ``fake = generator(**batch["inputs"])`` is an enhanced image, ``real = batch["target"]`` (one
    shape and dtype, ``(B, ny, nx)``). First ``critic_steps`` updates of the critic through
    ``c_opt`` on the fixed ``fake`` (critic loss of ``adversarial``; for ``"wgan-gp"`` plus
    ``gp_weight *`` :func:`gradient_penalty`, with a fresh split of ``key`` each), then one update
    of the generator through ``g_opt`` on ``pixel + adv_weight * adversarial``, where ``pixel`` is
    :func:`recon.train.combined_loss` of ``pixel_loss`` (e.g. ``{"l1": 1.0}`` or ``{"ssim": 0.84,
    "l1": 0.16}``) and the adversarial term is scored by the updated critic (whose state the
    generator update leaves alone). Each optimiser (``nnx.Optimizer(..., wrt=nnx.Param)``, e.g. of
    :func:`recon.train.make_optimizer`) carries its own learning rate.

    The step returns float32 scalars: ``critic`` (critic loss of the last critic update, penalty
    included), ``real_score``/``fake_score`` (mean critic scores in it), ``gradient_penalty``
    (``"wgan-gp"`` only), ``pixel``, ``adversarial`` and ``generator`` (the total).

    Raises:
        InvalidDataError: unknown ``adversarial`` or loss name, negative or non-finite weights,
            ``critic_steps < 1``.
    """
    pixel = combined_loss(pixel_loss)
    losses = {"lsgan": lsgan_losses, "wgan-gp": wgan_losses}.get(adversarial)
    if losses is None:
        raise InvalidDataError(f"make_gan_step: adversarial must be 'lsgan' or 'wgan-gp', "
                               f"got {adversarial!r}")
    for name, w in (("adv_weight", adv_weight), ("gp_weight", gp_weight)):
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise InvalidDataError(f"make_gan_step: {name} must be a finite number >= 0, got {w!r}")
    if isinstance(critic_steps, bool) or not isinstance(critic_steps, int) or critic_steps < 1:
        raise InvalidDataError(f"make_gan_step: critic_steps must be an integer >= 1, got {critic_steps!r}")
    penalised = adversarial == "wgan-gp"

    @nnx.jit
    def step(generator: nnx.Module, critic: nnx.Module, g_opt: nnx.Optimizer, c_opt: nnx.Optimizer,
             batch: dict, key: jax.Array) -> dict[str, jax.Array]:
        real = batch["target"]
        fake = jax.lax.stop_gradient(generator(**batch["inputs"]))
        if fake.shape != real.shape or fake.dtype != real.dtype:
            raise ShapeError(f"make_gan_step: the generator gives {fake.shape} {fake.dtype} but the "
                             f"target is {real.shape} {real.dtype}; the critic needs both alike")
        n = real.shape[0]
        for k in jax.random.split(key, critic_steps):
            def critic_objective(c: nnx.Module, k=k) -> tuple[jax.Array, dict]:
                scores = c(jnp.concatenate([real, fake]))
                loss, _ = losses(scores[:n], scores[n:])
                aux = {"real_scores": scores[:n]}
                if penalised:
                    aux["gradient_penalty"] = gradient_penalty(c, real, fake, k)
                    loss = loss + gp_weight * aux["gradient_penalty"]
                aux["fake_score"] = jnp.mean(scores[n:])
                return loss, aux

            (critic_loss, aux), grads = nnx.value_and_grad(critic_objective, has_aux=True)(critic)
            c_opt.update(critic, grads)
        real_scores = jax.lax.stop_gradient(aux.pop("real_scores"))
        scorer = _frozen(critic)

        def generator_objective(g: nnx.Module) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
            pred = g(**batch["inputs"])
            pix = pixel(pred, real)
            _, adv = losses(real_scores, scorer(pred))  # the generator's loss ignores real scores
            return pix + adv_weight * adv, (pix, adv)

        (total, (pix, adv)), grads = nnx.value_and_grad(generator_objective, has_aux=True)(generator)
        g_opt.update(generator, grads)
        return {"critic": critic_loss, "real_score": jnp.mean(real_scores), **aux,
                "pixel": pix, "adversarial": adv, "generator": total}

    return step
