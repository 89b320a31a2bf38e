"""Zero-filled root-sum-of-squares and CG-SENSE reconstruction of Cartesian multi-coil k-space.

All functions take one slice (or volume) ``kspace (coils, *spatial)`` and are ``vmap``-able over
leading slice axes; :func:`cg_sense` is jit-compiled with ``maxiter`` static.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from physics.fft import ifftc
from physics.mri import MultiCoilMRI
from recon.cg import CGInfo, cgls


def rss(coil_images: jax.Array, axis: int = -3) -> jax.Array:
    """Root-sum-of-squares coil combination ``sqrt(sum_c |x_c|^2)`` (float32)."""
    return jnp.sqrt(jnp.sum(jnp.abs(coil_images) ** 2, axis=axis))


def zero_filled(kspace: jax.Array, ndim: int = 2) -> jax.Array:
    """RSS of the inverse FFT of zero-filled k-space ``(..., coils, *spatial)`` -> ``(..., *spatial)``."""
    return rss(ifftc(kspace, ndim), axis=-ndim - 1)


@partial(jax.jit, static_argnames=("maxiter", "ndim"))
def cg_sense(kspace: jax.Array, maps: jax.Array, mask: jax.Array, *, lam: float = 0.0,
             maxiter: int = 30, tol: float = 1e-5, ndim: int = 2) -> tuple[jax.Array, CGInfo]:
    """CG-SENSE: ``argmin_x ||M F S x - y||^2 + lam ||x||^2`` by CG on the normal equations.

    Args:
        kspace: measured k-space ``y``, complex ``(coils, *spatial)``, zero where not sampled.
        maps: coil sensitivities ``S`` ``(coils, *spatial)``, normalised so that
            ``sum_c |S_c|^2 = 1`` on the object (as ESPIRiT gives): then ``A^H A`` has eigenvalues
            in ``[0, 1]`` and ``lam`` is relative to them, independent of the data's scale.
        mask: real sampling mask broadcastable to ``spatial``.
        lam: Tikhonov weight (>= 0).
        maxiter, tol: CG iteration limit and relative-residual tolerance (early stopping is
            itself a regulariser on noisy data).
        ndim: number of spatial axes (2 or 3).

    Returns:
        ``(image, info)``: complex64 image ``(*spatial)`` and the :class:`CGInfo` record.
    """
    return cgls(MultiCoilMRI(maps, mask, ndim), kspace, lam=lam, maxiter=maxiter, tol=tol)

