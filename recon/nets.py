"""Network building blocks of the learned reconstructions (Flax NNX), channels-last.

Images enter and leave the image-level networks (:class:`NormUNet`, :class:`DnCNN`,
:class:`FieldsOfExperts`) as they are in the physics: complex64 ``(..., ny, nx)`` (MRI) or
float32 ``(..., ny, nx)`` (CT). Inside, they are real channels ``(..., ny, nx, c)``: ``c = 2``
(real, imaginary) for complex images, ``c = 1`` for real ones; :func:`to_channels` and
:func:`from_channels` are the one place where that conversion happens. The channel-level blocks
(:class:`ConvNet`, :class:`UNet`) take and return such channel arrays. Every block accepts any
number of leading batch axes.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from physics.errors import ShapeError

__all__ = ["ConvNet", "DnCNN", "FieldsOfExperts", "NormUNet", "UNet", "from_channels",
           "image_channels", "parameter_count", "to_channels"]


# ------------------------------------------------------------------------------------------------
# complex <-> channels
# ------------------------------------------------------------------------------------------------
def image_channels(complex_images: bool) -> int:
    """Real channels of one image: 2 for complex images, 1 for real ones."""
    return 2 if complex_images else 1


def to_channels(x: jax.Array) -> jax.Array:
    """Image ``(..., ny, nx)`` -> real channels ``(..., ny, nx, c)``: ``(re, im)`` for complex,
    ``c = 1`` for real images; float32 for complex64 / float32 input (float64 for double)."""
    if jnp.iscomplexobj(x):
        return jnp.stack([jnp.real(x), jnp.imag(x)], axis=-1)
    return jnp.asarray(x, jnp.result_type(x, jnp.float32))[..., None]


def from_channels(h: jax.Array) -> jax.Array:
    """Channels ``(..., ny, nx, c)`` -> image ``(..., ny, nx)``: complex for ``c = 2`` (complex64
    from float32), real for ``c = 1``."""
    if h.shape[-1] == 2:
        return jax.lax.complex(h[..., 0], h[..., 1])
    if h.shape[-1] == 1:
        return h[..., 0]
    raise ShapeError(f"from_channels: expected 1 (real) or 2 (complex) trailing channels, got shape "
                     f"{h.shape}")


def _batched(fn, h: jax.Array) -> jax.Array:
    """Apply ``fn`` on ``(batch, ny, nx, c)`` to ``h`` of shape ``(..., ny, nx, c)``."""
    if h.ndim < 3:
        raise ShapeError(f"expected channels of shape (..., ny, nx, c), got {h.shape}")
    lead = h.shape[:-3]
    out = fn(h.reshape((-1, *h.shape[-3:])))
    return out.reshape((*lead, *out.shape[1:]))


# ------------------------------------------------------------------------------------------------
# plain CNN and the fastMRI U-Net (channel level)
# ------------------------------------------------------------------------------------------------
class ConvNet(nnx.Module):
    """``depth`` 3x3 convolutions (zero 'same' padding, bias) with ReLU between them.

    ``(..., ny, nx, in_chans) -> (..., ny, nx, out_chans)``; the hidden layers have ``features``
    channels. The CNN of DnCNN and of the learned primal-dual blocks.
    """

    def __init__(self, in_chans: int, out_chans: int, features: int, depth: int, *, rngs: nnx.Rngs):
        if depth < 1:
            raise ShapeError(f"ConvNet: depth must be >= 1, got {depth}")
        sizes = [in_chans] + [features] * (depth - 1) + [out_chans]
        self.layers = nnx.List([nnx.Conv(a, b, (3, 3), rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])

    def __call__(self, h: jax.Array) -> jax.Array:
        for layer in self.layers[:-1]:
            h = jax.nn.relu(layer(h))
        return self.layers[-1](h)


def _instance_norm(h: jax.Array, eps: float = 1e-5) -> jax.Array:
    """Per-item, per-channel normalisation over ``(ny, nx)`` of ``(batch, ny, nx, c)`` (no affine)."""
    mean = jnp.mean(h, axis=(1, 2), keepdims=True)
    var = jnp.var(h, axis=(1, 2), keepdims=True)
    return (h - mean) * jax.lax.rsqrt(var + eps)


class _ConvBlock(nnx.Module):
    """fastMRI ConvBlock: two (3x3 conv without bias, instance norm, leaky ReLU 0.2)."""

    def __init__(self, in_chans: int, out_chans: int, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(in_chans, out_chans, (3, 3), use_bias=False, rngs=rngs)
        self.conv2 = nnx.Conv(out_chans, out_chans, (3, 3), use_bias=False, rngs=rngs)

    def __call__(self, h: jax.Array) -> jax.Array:
        h = jax.nn.leaky_relu(_instance_norm(self.conv1(h)), 0.2)
        return jax.nn.leaky_relu(_instance_norm(self.conv2(h)), 0.2)


class _UpBlock(nnx.Module):
    """fastMRI TransposeConvBlock (2x2 stride-2 transpose conv, no bias, instance norm, leaky
    ReLU 0.2), then concatenation with the skip connection and a :class:`_ConvBlock`."""

    def __init__(self, in_chans: int, out_chans: int, *, rngs: nnx.Rngs):
        self.up = nnx.ConvTranspose(in_chans, out_chans, (2, 2), strides=(2, 2), padding="VALID",
                                    use_bias=False, rngs=rngs)
        self.conv = _ConvBlock(2 * out_chans, out_chans, rngs=rngs)

    def __call__(self, h: jax.Array, skip: jax.Array) -> jax.Array:
        h = jax.nn.leaky_relu(_instance_norm(self.up(h)), 0.2)
        return self.conv(jnp.concatenate([h, skip], axis=-1))


class UNet(nnx.Module):
    """The fastMRI U-Net (Ronneberger et al. 2015; Zbontar et al. 2018), channels-last.

    ``pools`` levels: :class:`_ConvBlock` then 2x2 average pooling, channels ``chans * 2^level``;
    a bottom ConvBlock; per level up a 2x2 stride-2 transpose convolution, concatenation with the
    skip and a ConvBlock; a final 1x1 convolution (with bias) to ``out_chans``. Instance norm
    without affine parameters, leaky ReLU 0.2, no dropout.

    Sizes that are not multiples of ``2^pools`` are zero-padded symmetrically up to the next
    multiple and the output is cropped back, as fastMRI's ``NormUnet`` does, so every pooling is
    exact. ``(..., ny, nx, in_chans) -> (..., ny, nx, out_chans)``, float32.
    """

    def __init__(self, in_chans: int, out_chans: int, chans: int = 32, pools: int = 4, *, rngs: nnx.Rngs):
        if pools < 1 or chans < 1:
            raise ShapeError(f"UNet: pools and chans must be >= 1, got pools={pools}, chans={chans}")
        widths = [chans * 2 ** level for level in range(pools)]
        self.pools = pools
        self.down = nnx.List([_ConvBlock(a, b, rngs=rngs) for a, b in zip([in_chans] + widths[:-1], widths)])
        self.bottom = _ConvBlock(widths[-1], 2 * widths[-1], rngs=rngs)
        self.up = nnx.List([_UpBlock(2 * w, w, rngs=rngs) for w in reversed(widths)])
        self.out = nnx.Conv(widths[0], out_chans, (1, 1), rngs=rngs)

    def __call__(self, h: jax.Array) -> jax.Array:
        return _batched(self._forward, h)

    def _forward(self, h: jax.Array) -> jax.Array:
        _, ny, nx, _ = h.shape
        multiple = 2 ** self.pools
        padded = [-(-n // multiple) * multiple for n in (ny, nx)]  # next multiples
        pad = [(0, 0)] + [((m - n) // 2, m - n - (m - n) // 2) for n, m in zip((ny, nx), padded)] + [(0, 0)]
        h = jnp.pad(h, pad)
        skips = []
        for block in self.down:
            h = block(h)
            skips.append(h)
            h = nnx.avg_pool(h, (2, 2), strides=(2, 2))
        h = self.bottom(h)
        for block, skip in zip(self.up, reversed(skips)):
            h = block(h, skip)
        h = self.out(h)
        return h[:, pad[1][0]:pad[1][0] + ny, pad[2][0]:pad[2][0] + nx]


# ------------------------------------------------------------------------------------------------
# image-level networks
# ------------------------------------------------------------------------------------------------
def _safe_std(h: jax.Array, axes: tuple[int, ...]) -> jax.Array:
    """Standard deviation over ``axes`` (kept), 1 where it is 0 (finite gradients there too)."""
    var = jnp.var(h, axis=axes, keepdims=True)
    return jnp.sqrt(jnp.where(var > 0, var, 1.0))


class NormUNet(nnx.Module):
    """fastMRI's ``NormUnet``: a :class:`UNet` on an image normalised to zero mean, unit std.

    ``x (..., ny, nx)`` complex64 (or float32 with ``complex_images=False``) -> same shape and
    dtype. Each channel (real and imaginary part) of each image is normalised by its own mean and
    (population) standard deviation over ``(ny, nx)`` before the U-Net and de-normalised after
    it, so ``U(a x) = a U(x)`` for every real ``a > 0``.
    """

    def __init__(self, complex_images: bool = True, chans: int = 18, pools: int = 4, *, rngs: nnx.Rngs):
        c = image_channels(complex_images)
        self.unet = UNet(c, c, chans, pools, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = to_channels(x)
        mean = jnp.mean(h, axis=(-3, -2), keepdims=True)
        std = _safe_std(h, (-3, -2))
        return from_channels(self.unet((h - mean) / std) * std + mean)


class DnCNN(nnx.Module):
    """DnCNN (Zhang et al. 2017) without batch norm: ``D(x) = x - N(x)``, ``N`` a :class:`ConvNet`
    of ``depth`` 3x3 layers that estimates the noise.

    ``x (..., ny, nx)`` complex64 (or float32 with ``complex_images=False``) -> same shape and dtype.
    """

    def __init__(self, complex_images: bool = True, features: int = 64, depth: int = 17, *, rngs: nnx.Rngs):
        c = image_channels(complex_images)
        self.noise = ConvNet(c, c, features, depth, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return x - from_channels(self.noise(to_channels(x)))


class FieldsOfExperts(nnx.Module):
    r"""Learned variational regulariser (Roth & Black 2009; Hammernik et al. 2018); returns its gradient.

    .. math::
        R(x) = \sum_{k, p} \phi_k((K_k x)(p)),\qquad
        \phi_k(z) = \sum_j w_{kj} \exp\!\left(-\frac{(z - \mu_j)^2}{2\sigma^2}\right)

    ``K_k``: ``filters`` learned ``kernel_size x kernel_size`` convolutions of the image channels
    (zero 'same' padding, no bias); ``phi_k``: learned weights ``w_kj`` of ``rbf`` Gaussians with
    centres ``mu_j`` equispaced on ``[-vmax, vmax]`` and width ``sigma = 2 vmax / (rbf - 1)``.
    ``w`` starts as ``0.1 mu_j^2 / vmax^2`` (roughly quadratic potentials), so every filter is
    active from the start. ``vmax`` is in units of the (normalised) image.

    ``self(x)`` is ``grad_x R(x)`` by :func:`jax.grad` of the energy, same shape and dtype as ``x``
    (``(..., ny, nx)`` complex64, or float32 with ``complex_images=False``); for complex ``x`` it is
    ``dR/dRe x + i dR/dIm x``, the steepest-ascent direction. :meth:`energy` gives ``R`` per image.
    """

    def __init__(self, complex_images: bool = True, filters: int = 24, kernel_size: int = 7,
                 rbf: int = 31, vmax: float = 3.0, *, rngs: nnx.Rngs):
        if rbf < 2 or vmax <= 0:
            raise ShapeError(f"FieldsOfExperts: needs rbf >= 2 and vmax > 0, got rbf={rbf}, vmax={vmax}")
        self.conv = nnx.Conv(image_channels(complex_images), filters, (kernel_size, kernel_size),
                             use_bias=False, rngs=rngs)
        self.rbf, self.vmax = rbf, float(vmax)
        mu = jnp.linspace(-self.vmax, self.vmax, rbf)
        self.weights = nnx.Param(jnp.tile(0.1 * (mu / self.vmax) ** 2, (filters, 1)))

    def _energy(self, h: jax.Array) -> jax.Array:
        mu = jnp.linspace(-self.vmax, self.vmax, self.rbf)
        sigma = 2 * self.vmax / (self.rbf - 1)
        z = self.conv(h)[..., None]  # (..., ny, nx, filters, 1)
        phi = jnp.sum(self.weights[...] * jnp.exp(-0.5 * ((z - mu) / sigma) ** 2), axis=-1)
        return jnp.sum(phi, axis=(-3, -2, -1))

    def energy(self, x: jax.Array) -> jax.Array:
        """``R(x)`` per image: ``(..., ny, nx) -> (...)`` float32."""
        return self._energy(to_channels(x))

    def __call__(self, x: jax.Array) -> jax.Array:
        grad = jax.grad(lambda h: jnp.sum(self._energy(h)))(to_channels(x))
        return from_channels(grad)


def parameter_count(module: nnx.Module) -> int:
    """Number of trainable scalars (entries of every :class:`nnx.Param`) of ``module``."""
    return sum(math.prod(p.shape) for p in jax.tree.leaves(nnx.state(module, nnx.Param)))
