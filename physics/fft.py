"""The centred, orthonormal FFT of recon-engine (the one FFT of the code base).

``fftc(x) = fftshift(fft(ifftshift(x), norm="ortho"))`` over the trailing ``ndim`` axes, as fastMRI
and BART define it. For even sizes the two shifts equal a checkerboard sign modulation of input
and output (BART's ``fftmod``), which XLA fuses with neighbouring multiplies instead of copying
the array twice; odd sizes use explicit shifts.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from physics.linop import LinearOperator, operator, static


def _checkerboard(shape: tuple[int, ...], dtype) -> jax.Array:
    """``prod_i (-1)^n_i`` over an array of (even) sizes ``shape``."""
    parity = sum(jax.lax.broadcasted_iota(jnp.int32, shape, i) for i in range(len(shape)))
    return (1 - 2 * (parity % 2)).astype(dtype)


def _centred(x: jax.Array, ndim: int, inverse: bool) -> jax.Array:
    axes = tuple(range(-ndim, 0))
    transform = jnp.fft.ifftn if inverse else jnp.fft.fftn
    shape = x.shape[-ndim:]
    if all(n % 2 == 0 for n in shape):
        # fftshift(F(ifftshift(x))) = (-1)^(sum N_i/2) * c * F(c * x), c the checkerboard
        c = _checkerboard(shape, jnp.finfo(x.dtype).dtype)
        c_out = -c if sum(n // 2 for n in shape) % 2 else c
        return c_out * transform(c * x, axes=axes, norm="ortho")
    x = jnp.fft.ifftshift(x, axes=axes)
    return jnp.fft.fftshift(transform(x, axes=axes, norm="ortho"), axes=axes)


def fftc(x: jax.Array, ndim: int = 2) -> jax.Array:
    """Centred orthonormal FFT over the trailing ``ndim`` axes (image -> k-space)."""
    return _centred(jnp.asarray(x, dtype=jnp.result_type(x, jnp.complex64)), ndim, inverse=False)


def ifftc(y: jax.Array, ndim: int = 2) -> jax.Array:
    """Centred orthonormal inverse FFT over the trailing ``ndim`` axes (k-space -> image)."""
    return _centred(jnp.asarray(y, dtype=jnp.result_type(y, jnp.complex64)), ndim, inverse=True)


@operator
class FFT(LinearOperator):
    """Centred orthonormal FFT on arrays of shape ``shape_`` (unitary: ``F^H F = I``)."""

    shape_: tuple[int, ...] = static()

    in_shape = out_shape = property(lambda self: tuple(self.shape_))

    def _forward(self, x):
        return fftc(x, len(self.shape_))

    def _adjoint(self, y):
        return ifftc(y, len(self.shape_))

    def _normal(self, x):
        return x
