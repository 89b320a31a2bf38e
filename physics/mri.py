"""Cartesian MRI forward models: ``y = M F S x`` (multi-coil) and ``y = M F x`` (single coil).

Layout is coil-first as in fastMRI: image ``(..., *spatial)``, k-space ``(..., coils, *spatial)``
with ``spatial = (ny, nx)`` in 2D or ``(nz, ny, nx)`` in 3D. ``F`` is the centred orthonormal FFT
of :mod:`physics.fft`; ``M`` is a real sampling mask (0/1 or weights) that broadcasts against the
spatial shape: ``(nx,)`` for a fastMRI column mask, ``(ny, nx)`` for a 2D mask, ``(nz, ny, nx)``,
or a scalar ``1.0`` for fully sampled data. ``S`` are coil sensitivities ``(coils, *spatial)``.
Operators are immutable: a new mask means a new operator (``dataclasses.replace(A, mask=m)``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from physics.errors import ShapeError
from physics.fft import fftc, ifftc
from physics.linop import LinearOperator, operator, static


def _check_mask(mask, spatial: tuple[int, ...]) -> None:
    shape = tuple(jnp.shape(mask))
    if len(shape) > len(spatial) or any(m not in (1, s) for m, s in zip(shape[::-1], spatial[::-1])):
        raise ShapeError(f"mask of shape {shape} does not broadcast against the spatial shape {spatial}")


@operator
class MultiCoilMRI(LinearOperator):
    """Multi-coil Cartesian MRI (SENSE model) ``y_c = M F (S_c x)``.

    Args:
        maps: coil sensitivities, complex ``(coils, *spatial)``.
        mask: real sampling mask broadcastable to ``spatial`` (see module docstring).
        ndim: number of spatial axes, 2 or 3.

    ``A(x)``: ``(..., *spatial) -> (..., coils, *spatial)``; ``A.adjoint`` sums over coils.
    """

    maps: jax.Array
    mask: jax.Array
    ndim: int = static(default=2)

    def __post_init__(self):
        if hasattr(self.maps, "shape"):
            if self.ndim not in (2, 3) or len(self.maps.shape) != self.ndim + 1:
                raise ShapeError(
                    f"MultiCoilMRI: maps must have shape (coils, *spatial) with {self.ndim} spatial "
                    f"axes, got {tuple(self.maps.shape)}"
                )
            if hasattr(self.mask, "shape"):
                _check_mask(self.mask, tuple(self.maps.shape[1:]))

    in_shape = property(lambda self: tuple(self.maps.shape[1:]))
    out_shape = property(lambda self: tuple(self.maps.shape))

    def _forward(self, x):
        Sx = self.maps * x[..., None, *(slice(None),) * self.ndim]  # (..., coils, *spatial)
        return self.mask * fftc(Sx, self.ndim)

    def _adjoint(self, y):
        FiMy = ifftc(self.mask * y, self.ndim)  # (..., coils, *spatial)
        return jnp.sum(jnp.conj(self.maps) * FiMy, axis=-self.ndim - 1)


@operator
class CartesianMRI(LinearOperator):
    """Single-coil Cartesian MRI ``y = M F x`` on images of shape ``shape_`` (2D or 3D).

    ``mask`` is real and broadcastable to ``shape_``.
    """

    mask: jax.Array
    shape_: tuple[int, ...] = static()

    def __post_init__(self):
        if hasattr(self.mask, "shape"):
            _check_mask(self.mask, tuple(self.shape_))

    in_shape = out_shape = property(lambda self: tuple(self.shape_))

    def _forward(self, x):
        return self.mask * fftc(x, len(self.shape_))

    def _adjoint(self, y):
        return ifftc(self.mask * y, len(self.shape_))
