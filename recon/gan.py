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
  :mod:`recon.train` plus the adversarial loss), :func:`ema_update` (generator weight averaging),
  :func:`train_gan` (the loop of :func:`recon.train.fit` with both networks, both optimisers,
  the EMA generator and the RNG key checkpointed; exact resume), configured by :class:`GANConfig`.
- :class:`MultiCoilEnhancer`: an enhancer on multi-coil MRI examples, the coil-combined
  zero-filled image in, optionally followed by data consistency with the real operator (exact,
  or weighed by the noise level and the enhancer's expected error).

The generators themselves (scale-equivariant RED-CNN and U-Net denoisers) are models of
:func:`recon.unrolled.build_model` (``"redcnn"``, ``"unet_denoiser"``), so that
:func:`recon.train.save_model` / :func:`recon.learned.load_trained` handle them like the others.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from typing import Any, Literal

import jax
import jax.numpy as jnp
from flax import nnx

from physics.errors import InvalidDataError, ShapeError
from kernels.conv_grad import conv_kernel_gradient
from physics.bridge import host_function
from physics.mri import MultiCoilMRI
from recon.data import Dataset
from recon.nets import from_channels, to_channels
from recon.pnp import noise_weight, replace_measured
from recon.trust import kspace_sigma
from recon.train import (PathLike, TrainConfig, Trainer, combined_loss, fit, learning_rate_schedule,
                         make_optimizer)

__all__ = ["GANConfig", "MultiCoilEnhancer", "PatchGAN", "PowerIterate", "REDCNN", "SpectralNorm",
           "WGANCritic", "build_critic", "ema_update", "gradient_penalty", "lsgan_losses",
           "make_gan_step", "train_gan", "wgan_losses"]

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
def _conv2d(x: jax.Array, kernel: jax.Array, pad: int) -> jax.Array:
    """Stride-1 2D convolution of ``x (B, ny, nx, cin)`` with ``kernel (k, k, cin, cout)`` and
    ``pad`` zeros on each side (flax's ``Conv``/``ConvTranspose`` arithmetic: no kernel flip)."""
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), [(pad, pad)] * 2,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _valid_as_same(x: jax.Array, kernel: jax.Array, pad: int) -> jax.Array:
    """:func:`_conv2d`, a valid one (``pad=0``, odd kernel) computed as a 'same' one, cropped."""
    c = kernel.shape[0] // 2
    if pad == 0 and kernel.shape[0] % 2 == 1 and c > 0:
        return _conv2d(x, kernel, c)[:, c:-c, c:-c, :]
    return _conv2d(x, kernel, pad)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _fast_conv(x: jax.Array, kernel: jax.Array, pad: int) -> jax.Array:
    """:func:`_conv2d` (square kernel, ``0 <= pad < k``) with detours around slow paths of XLA's
    CPU convolutions (measured on RED-CNN's 5x5 layers, 2 x 128^2 x 32 channels): a valid
    convolution is computed as a 'same' one, cropped (39 -> 7 ms); the input gradient is the
    correlation of the output gradient with the flipped, transposed kernel and padding
    ``k - 1 - pad``, by the same route (valid for the transposed layers: 28 -> 4 ms); the kernel
    gradient as ``k^2`` matrix products of shifted inputs with the output gradient (262 -> 50 ms),
    on the CPU by OpenBLAS (:func:`kernels.conv_grad.conv_kernel_gradient`, about 15 ms)."""
    return _valid_as_same(x, kernel, pad)


def _fast_conv_fwd(x: jax.Array, kernel: jax.Array, pad: int):
    return _fast_conv(x, kernel, pad), (x, kernel)


def _fast_conv_bwd(pad: int, residuals, dy: jax.Array):
    x, kernel = residuals
    k = kernel.shape[0]
    dx = _valid_as_same(dy, jnp.flip(kernel, (0, 1)).swapaxes(2, 3), k - 1 - pad)
    xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    if jax.default_backend() == "cpu":  # OpenBLAS through NumPy: 3x XLA's CPU matrix products here
        result = jax.ShapeDtypeStruct(kernel.shape, jnp.float32)
        dk = host_function(functools.partial(conv_kernel_gradient, k=k), result, xp.astype(jnp.float32),
                           dy.astype(jnp.float32))
    else:
        ny, nx = dy.shape[1:3]
        dk = jnp.stack([jnp.stack([jnp.einsum("bhwc,bhwo->co", xp[:, i:i + ny, j:j + nx], dy)
                                   for j in range(k)]) for i in range(k)])
    return dx, dk.astype(kernel.dtype)


_fast_conv.defvjp(_fast_conv_fwd, _fast_conv_bwd)


def _layer(layer: nnx.Module, h: jax.Array, pad: int) -> jax.Array:
    """``layer`` (a stride-1 ``nnx.Conv`` or ``nnx.ConvTranspose`` with bias) on ``h (..., ny, nx, c)``
    by :func:`_fast_conv`; ``pad`` 0 for a valid convolution, ``k - 1`` for a valid transposed one."""
    lead = h.shape[:-3]
    out = _fast_conv(h.reshape(-1, *h.shape[-3:]), layer.kernel[...], pad) + layer.bias[...]
    return out.reshape(*lead, *out.shape[-3:])


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
            h = jax.nn.relu(_layer(conv, h, 0))
            if k % 2 == 0 and k < self.depth:
                shortcuts[k] = h
        for j, deconv in enumerate(self.decoder, start=1):
            h = _layer(deconv, h, 4)
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
    With ``spectral_norm`` every convolution is a :class:`SpectralNorm` one. The instance
    normalisation removes each image's per-channel mean and contrast of the features, so the
    critic judges local structure, not an image's overall noise level (it stayed at chance
    between RED-CNN output and normal-dose FBP in ``gan_ldct_small`` trials; :class:`WGANCritic`
    told them apart).

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


_ADVERSARIAL = {"lsgan": lsgan_losses, "wgan-gp": wgan_losses}


def _rms(target: jax.Array) -> jax.Array:
    """Root-mean-square magnitude of each target image ``(B, ...)``, shaped ``(B, 1, ..., 1)``, 1
    where it is 0; held constant for gradients."""
    ms = jnp.mean(jnp.abs(target.reshape(target.shape[0], -1)) ** 2, axis=1)
    rms = jnp.sqrt(jnp.where(ms > 0, ms, 1.0)).astype(jnp.real(target).dtype)
    return jax.lax.stop_gradient(rms.reshape((-1,) + (1,) * (target.ndim - 1)))


def _like_target(image: jax.Array, target: jax.Array) -> jax.Array:
    """``|image|`` for a complex image and a real target, else ``image``: what the critic compares."""
    return jnp.abs(image) if jnp.iscomplexobj(image) and not jnp.iscomplexobj(target) else image


def make_gan_step(pixel_loss: Mapping[str, float], *, adversarial: Adversarial = "lsgan",
                  adv_weight: float = 1e-3, gp_weight: float = 10.0, critic_steps: int = 1) -> GanStep:
    """One jit-compiled alternating GAN step ``step(generator, critic, g_opt, c_opt, batch, key)``.

    ``fake = generator(**batch["inputs"])`` is an enhanced image, ``real = batch["target"]`` (one
    shape and dtype, ``(B, ny, nx)``; a complex ``fake`` against a real ``real`` is taken in
    magnitude, as the pixel losses take it, e.g. MRI against an RSS target). The critic sees both
    divided by the root-mean-square magnitude of their target image, so that it works in the
    same units whatever those of the data (mm^-1 for CT, any scale for MRI), as the
    scale-equivariant generators do; the gradient penalty is taken in those units too. First
    ``critic_steps`` updates of the critic through ``c_opt`` on the fixed ``fake`` (critic loss
    of ``adversarial``; for ``"wgan-gp"`` plus ``gp_weight *`` :func:`gradient_penalty`, with a
    fresh split of ``key`` each), then one update of the generator through ``g_opt`` on ``pixel
    + adv_weight * adversarial``, where ``pixel`` is :func:`recon.train.combined_loss` of
    ``pixel_loss`` (e.g. ``{"l1": 1.0}`` or ``{"ssim": 0.84, "l1": 0.16}``) and the adversarial
    term is scored by the updated critic (whose state the generator update leaves alone). Each
    optimiser (``nnx.Optimizer(..., wrt=nnx.Param)``, e.g. of
    :func:`recon.train.make_optimizer`) carries its own learning rate.

    The step returns float32 scalars: ``critic`` (critic loss of the last critic update, penalty
    included), ``real_score``/``fake_score`` (mean critic scores in it), ``gradient_penalty``
    (``"wgan-gp"`` only), ``pixel``, ``adversarial`` and ``generator`` (the total).

    Equal arguments give the same function, compiled once per architecture and batch shape.

    Raises:
        InvalidDataError: unknown ``adversarial`` or loss name, negative or non-finite weights,
            ``critic_steps < 1``.
    """
    combined_loss(pixel_loss)  # validates the terms
    if adversarial not in _ADVERSARIAL:
        raise InvalidDataError(f"make_gan_step: adversarial must be 'lsgan' or 'wgan-gp', "
                               f"got {adversarial!r}")
    for name, w in (("adv_weight", adv_weight), ("gp_weight", gp_weight)):
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise InvalidDataError(f"make_gan_step: {name} must be a finite number >= 0, got {w!r}")
    if isinstance(critic_steps, bool) or not isinstance(critic_steps, int) or critic_steps < 1:
        raise InvalidDataError(f"make_gan_step: critic_steps must be an integer >= 1, got {critic_steps!r}")
    return _gan_step(tuple(pixel_loss.items()), adversarial, float(adv_weight), float(gp_weight),
                     critic_steps)


@functools.cache
def _gan_step(pixel_loss: tuple[tuple[str, float], ...], adversarial: Adversarial, adv_weight: float,
              gp_weight: float, critic_steps: int) -> GanStep:
    """The step of :func:`make_gan_step`, one function per set of arguments (so a run resumed in
    the same process, or a second run, reuses its compilation)."""
    pixel, losses = combined_loss(dict(pixel_loss)), _ADVERSARIAL[adversarial]
    penalised = adversarial == "wgan-gp"

    @nnx.jit
    def step(generator: nnx.Module, critic: nnx.Module, g_opt: nnx.Optimizer, c_opt: nnx.Optimizer,
             batch: dict, key: jax.Array) -> dict[str, jax.Array]:
        target = batch["target"]
        scale = _rms(target)
        # one generator pass serves both updates (the generator does not change in between)
        graphdef, params, rest = nnx.split(generator, nnx.Param, ...)
        pred, pullback = jax.vjp(lambda p: nnx.merge(graphdef, p, rest)(**batch["inputs"]), params)
        fake = jax.lax.stop_gradient(_like_target(pred, target)) / scale
        real = target / scale
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

        def generator_objective(pred: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
            pix = pixel(pred, target)
            _, adv = losses(real_scores, scorer(_like_target(pred, target) / scale))  # ignores real scores
            return pix + adv_weight * adv, (pix, adv)

        (total, (pix, adv)), d_pred = jax.value_and_grad(generator_objective, has_aux=True)(pred)
        g_opt.update(generator, pullback(d_pred)[0])
        return {"critic": critic_loss, "real_score": jnp.mean(real_scores), **aux,
                "pixel": pix, "adversarial": adv, "generator": total}

    return step


# ------------------------------------------------------------------------------------------------
# the training run
# ------------------------------------------------------------------------------------------------
_CRITICS = {"patchgan": PatchGAN, "wgan": WGANCritic}
_CRITIC_FIELDS = {"features": int, "layers": int, "spectral_norm": bool}
_OPTIMIZER_FIELDS = ("optimizer", "learning_rate", "warmup_steps", "decay_steps", "end_learning_rate",
                     "weight_decay", "b1", "b2", "eps", "clip_norm")


def _critic_options(config: Any) -> tuple[type[nnx.Module], dict[str, Any]]:
    """``(class, keyword arguments)`` of a critic config, validated."""
    if not isinstance(config, Mapping) or config.get("model") not in _CRITICS:
        raise InvalidDataError(f"critic config: expected an object with 'model' one of {sorted(_CRITICS)}, "
                               f"got {config!r}")
    options = {k: v for k, v in config.items() if k != "model"}
    for name, value in options.items():
        kind = _CRITIC_FIELDS.get(name)
        if kind is None:
            raise InvalidDataError(f"critic config: unknown field {name!r}; known: "
                                   f"{['model', *sorted(_CRITIC_FIELDS)]}")
        if not isinstance(value, kind) or (kind is int and (isinstance(value, bool) or value < 1)):
            raise InvalidDataError(f"critic config: {name} must be "
                                   f"{'an integer >= 1' if kind is int else 'true or false'}, got {value!r}")
    return _CRITICS[config["model"]], options


def build_critic(config: Mapping[str, Any], channels: int, rngs: nnx.Rngs) -> nnx.Module:
    """The critic of ``config``: ``{"model": "patchgan" | "wgan", "features": int, "layers": int,
    "spectral_norm": bool}`` (missing fields take the defaults of :class:`PatchGAN` /
    :class:`WGANCritic`), for images of ``channels`` (1 real, 2 complex).

    Raises:
        InvalidDataError: an unknown model or field, a bad value.
    """
    cls, options = _critic_options(config)
    return cls(channels, **options, rngs=rngs)


@dataclasses.dataclass(frozen=True)
class GANConfig(TrainConfig):
    """GAN training configuration: a :class:`recon.train.TrainConfig` of the generator plus the critic.

    The fields of :class:`~recon.train.TrainConfig` keep their meaning for the generator
    (``optimizer`` ... ``clip_norm`` its optimiser and schedule, ``loss`` the pixel loss, default
    ``{"l1": 1.0}``, ``model`` its model config) and for the loop (``batch_size``,
    ``checkpoint_every``, ``keep_checkpoints``).

    Attributes:
        critic: the critic's config, as :func:`build_critic` takes it.
        critic_optimizer: optimiser fields of the critic that differ from the generator's, e.g.
            ``{"learning_rate": 4e-4}`` (two time-scale update rule); ``{}``: the same.
        adversarial: ``"lsgan"`` or ``"wgan-gp"`` (:func:`make_gan_step`).
        adv_weight: weight of the adversarial term in the generator loss; 0 trains the generator
            on the pixel loss alone (the critic still trains and is logged, without effect).
        gp_weight: weight of the gradient penalty (``"wgan-gp"``).
        critic_steps: critic updates per generator update.
        ema_decay: decay ``d`` of the generator's weight average (the inference model); step
            ``t`` (0-based) averages with ``min(d, (1 + t) / (10 + t))``, so early steps are not
            dominated by the initial weights (TensorFlow's ``ExponentialMovingAverage`` rule).
        seed: seed of the RNG key of the steps (gradient-penalty interpolation).
    """

    loss: dict[str, float] = dataclasses.field(default_factory=lambda: {"l1": 1.0})
    critic: dict[str, Any] = dataclasses.field(default_factory=lambda: {"model": "patchgan"})
    critic_optimizer: dict[str, Any] = dataclasses.field(default_factory=dict)
    adversarial: Adversarial = "lsgan"
    adv_weight: float = 1e-3
    gp_weight: float = 10.0
    critic_steps: int = 1
    ema_decay: float = 0.999
    seed: int = 0

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> GANConfig:
        """Validate a config mapping; unknown fields and bad values raise InvalidDataError."""
        c = super().from_dict(config)
        _critic_options(c.critic)
        if not isinstance(c.critic_optimizer, Mapping) or set(c.critic_optimizer) - set(_OPTIMIZER_FIELDS):
            raise InvalidDataError(f"GAN config: critic_optimizer must be an object of optimiser fields "
                                   f"{list(_OPTIMIZER_FIELDS)}, got {c.critic_optimizer!r}")
        TrainConfig.from_dict(c.optimizer_config("critic"))
        make_gan_step(c.loss, adversarial=c.adversarial, adv_weight=c.adv_weight, gp_weight=c.gp_weight,
                      critic_steps=c.critic_steps)  # validates those fields
        d = c.ema_decay
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0 <= d < 1:
            raise InvalidDataError(f"GAN config: ema_decay must be a number in [0, 1), got {d!r}")
        if isinstance(c.seed, bool) or not isinstance(c.seed, int) or c.seed < 0:
            raise InvalidDataError(f"GAN config: seed must be an integer >= 0, got {c.seed!r}")
        return c

    def optimizer_config(self, part: Literal["generator", "critic"]) -> dict[str, Any]:
        """The optimiser fields of ``part``, a mapping for :func:`recon.train.make_optimizer`."""
        fields = {name: getattr(self, name) for name in _OPTIMIZER_FIELDS}
        return fields if part == "generator" else {**fields, **self.critic_optimizer}


_GAN_CURVES = (("generator", ("loss", "pixel", "adversarial")),
               ("critic", ("critic", "real_score", "fake_score", "gradient_penalty")),
               ("learning rate", ("lr", "lr_critic")))


def train_gan(generator: nnx.Module, critic: nnx.Module, config: Mapping[str, Any], dataset: Dataset,
              out_dir: PathLike, *, steps: int, resume: bool = False,
              progress: bool = True) -> tuple[list[dict[str, Any]], nnx.Module]:
    """Train ``generator`` and ``critic`` in place by alternating GAN steps until ``steps`` in all.

    The loop of :func:`recon.train.fit`: each step is one :func:`make_gan_step` step (the key
    drawn from an ``nnx.Rngs(config.seed)``), then :func:`ema_update` of the averaged generator.
    Checkpoints hold ``generator``, ``critic``, ``generator_optimizer``, ``critic_optimizer``,
    ``ema`` (the averaged generator) and ``rngs`` (key and count), so a resumed run equals an
    uninterrupted one bit for bit. Each record of ``metrics.jsonl`` holds the step's ``generator``
    (total), ``pixel``, ``adversarial``, ``critic``, ``real_score``, ``fake_score`` (and
    ``gradient_penalty`` for ``"wgan-gp"``), ``loss`` (= ``generator``, as in every run), ``lr``
    and ``lr_critic``.

    Args:
        generator: an NNX module called as ``generator(**batch["inputs"])``, same shape as the
            target (complex outputs against real targets compared in magnitude).
        critic: a critic of the config's ``critic`` (:func:`build_critic`).
        config: a :class:`GANConfig` mapping.
        dataset, out_dir, steps, resume, progress: as in :func:`recon.train.fit`.

    Returns:
        ``(history, ema)``: the records of ``metrics.jsonl`` and the averaged generator (a copy of
        ``generator``'s architecture), the model for inference.

    Raises:
        InvalidDataError: a bad config, and as :func:`recon.train.fit`.
        OutputError: as :func:`recon.train.fit`.
    """
    c = GANConfig.from_dict(config)
    ema = nnx.clone(generator)
    g_config, c_config = c.optimizer_config("generator"), c.optimizer_config("critic")
    g_opt = nnx.Optimizer(generator, make_optimizer(g_config), wrt=nnx.Param)
    c_opt = nnx.Optimizer(critic, make_optimizer(c_config), wrt=nnx.Param)
    g_lr, c_lr = learning_rate_schedule(g_config), learning_rate_schedule(c_config)
    gan_step = make_gan_step(c.loss, adversarial=c.adversarial, adv_weight=c.adv_weight,
                             gp_weight=c.gp_weight, critic_steps=c.critic_steps)
    rngs = nnx.Rngs(c.seed)

    def step(batch: dict, index: int) -> dict[str, Any]:
        metrics = gan_step(generator, critic, g_opt, c_opt, batch, rngs())
        ema_update(ema, generator, min(c.ema_decay, (1 + index) / (10 + index)))
        return {"loss": metrics["generator"], **metrics, "lr": g_lr(index), "lr_critic": c_lr(index)}

    parts = {"generator": generator, "critic": critic, "generator_optimizer": g_opt,
             "critic_optimizer": c_opt, "ema": ema, "rngs": rngs}
    trainer = Trainer(c.to_dict(), parts, step, c.batch_size, c.checkpoint_every, c.keep_checkpoints,
                      curves=_GAN_CURVES)
    return fit(trainer, dataset, out_dir, steps=steps, resume=resume, progress=progress), ema


# ------------------------------------------------------------------------------------------------
# enhancers on multi-coil MRI
# ------------------------------------------------------------------------------------------------
class MultiCoilEnhancer(nnx.Module):
    """An image enhancer ``net`` on multi-coil examples ``(masked_kspace, mask, maps)``.

    ``x0 = A^H y`` with ``A = MultiCoilMRI(maps, mask)`` (the coil-combined zero-filled image;
    with ``sum_c |S_c|^2 = 1`` its magnitude is the object's where the maps are right), then
    ``x = net(x0)``; with ``consistency`` the image is pulled back to the data
    (:func:`recon.pnp.replace_measured`, ``maxiter`` CG steps):

    - ``relative_error`` None: exactly; the measured k-space is kept and ``net`` fills in only what
      was not measured. With noisy multi-coil data (more samples than pixels) the exact fit is
      the least-squares one: it restores the measured noise, amplified by the conditioning of
      ``A`` (on the held-out slices of ``gan_mri_small`` 28.1 dB -> 21.7 dB at 4x).
    - ``relative_error`` (the enhancer's ``||x - x_true|| / ||x||`` on validation data): the
      maximum-a-posteriori image of the noise per sample (:func:`recon.trust.kspace_sigma` of
      each item) and the enhancer's expected error, ``lam = sigma^2 / tau^2``
      (:func:`recon.pnp.noise_weight`).

    Like the adapters of :mod:`recon.learned` it has no parameters of its own.
    ``masked_kspace (..., coils, ny, nx)`` complex64, ``mask (..., ny, nx)`` float32, ``maps``
    like the k-space -> complex64 image ``(..., ny, nx)``.
    """

    def __init__(self, net: nnx.Module, *, consistency: bool = True, relative_error: float | None = None,
                 maxiter: int = 30):
        self.net, self.consistency, self.maxiter = net, consistency, maxiter
        self.relative_error = relative_error

    @staticmethod
    def _items(masked_kspace, mask, maps) -> tuple[jax.Array, ...]:
        """``(y, mask, maps, A^H y)`` with one leading item axis, and the leading shape."""
        k = jnp.asarray(masked_kspace, jnp.complex64)
        maps, mask = jnp.asarray(maps, jnp.complex64), jnp.asarray(mask, jnp.float32)
        if k.ndim < 3 or maps.shape != k.shape or mask.shape != k.shape[:-3] + k.shape[-2:]:
            raise ShapeError(f"MultiCoilEnhancer: expected masked_kspace and maps (..., coils, ny, nx) "
                             f"and mask (..., ny, nx), got {k.shape}, {maps.shape} and {mask.shape}")
        k, mask, maps = k.reshape(-1, *k.shape[-3:]), mask.reshape(-1, *k.shape[-2:]), maps.reshape(k.shape)
        x0 = jax.vmap(lambda y, m, s: MultiCoilMRI(s, m).adjoint(y))(k, mask, maps)
        return k, mask, maps, x0, jnp.shape(masked_kspace)[:-3]

    def zero_filled(self, masked_kspace: jax.Array, mask: jax.Array, maps: jax.Array) -> jax.Array:
        """``x0 = A^H y`` per item, complex64 ``(..., ny, nx)``."""
        *_, x0, lead = self._items(masked_kspace, mask, maps)
        return x0.reshape(*lead, *x0.shape[-2:])

    def __call__(self, masked_kspace: jax.Array, mask: jax.Array, maps: jax.Array) -> jax.Array:
        k, m, s, x0, lead = self._items(masked_kspace, mask, maps)
        x = self.net(x0)
        if self.consistency:
            def consistent(x, y, m, s):
                error = self.relative_error
                lam = 0.0 if error is None else noise_weight(kspace_sigma(y), x, error)
                return replace_measured(x, y, s, m, lam=lam, maxiter=self.maxiter)[0]

            x = jax.vmap(consistent)(x, k, m, s)
        return x.reshape(*lead, *x.shape[-2:])
