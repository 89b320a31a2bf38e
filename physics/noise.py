"""Complex Gaussian measurement noise: simulation, coil noise covariance and pre-whitening.

Thermal noise in multi-coil MRI is zero-mean circular complex Gaussian, independent between
samples and correlated between coils with covariance ``C = E[n n^H]`` ``(coils, coils)``.
Pre-whitening multiplies the coil axis of the data by ``W = L^{-1}`` where ``C = L L^H`` (lower
Cholesky), after which the noise covariance is ``W C W^H = I``. Coil axis: ``-3`` of multi-coil
k-space ``(..., coils, ky, kx)``, axis 0 of a noise scan ``(coils, samples)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from physics.errors import InvalidDataError, ShapeError

__all__ = ["add_noise", "noise_covariance", "prewhiten", "whitening_matrix"]


def _cholesky(covariance, what: str) -> np.ndarray:
    """Lower Cholesky factor (complex128) of a Hermitian positive definite ``(coils, coils)``."""
    c = np.asarray(covariance)
    if c.ndim != 2 or c.shape[0] != c.shape[1] or c.shape[0] < 1:
        raise ShapeError(f"{what}: covariance must be a square (coils, coils) matrix, got {c.shape}")
    c = c.astype(np.complex128)
    if not np.all(np.isfinite(c)):
        raise InvalidDataError(f"{what}: covariance contains NaN or Inf")
    scale = np.max(np.abs(c))
    if scale == 0:
        raise InvalidDataError(f"{what}: covariance is all zeros (not positive definite)")
    asymmetry = np.max(np.abs(c - c.conj().T)) / scale
    if asymmetry > 1e-5:
        raise InvalidDataError(
            f"{what}: covariance is not Hermitian (max |C - C^H| / max |C| = {asymmetry:.2e} > 1e-5)"
        )
    c = 0.5 * (c + c.conj().T)
    eig = np.linalg.eigvalsh(c)
    if eig[0] <= 1e-7 * eig[-1]:
        raise InvalidDataError(
            f"{what}: covariance is not positive definite (eigenvalues {eig[0]:.3e} .. "
            f"{eig[-1]:.3e}; the smallest must exceed 1e-7 times the largest)"
        )
    return np.linalg.cholesky(c)


def noise_covariance(noise, *, remove_mean: bool = False) -> np.ndarray:
    """Sample coil covariance ``C = N N^H / (samples - 1)`` of a noise scan, ``complex64``.

    Args:
        noise: noise-only samples, complex ``(coils, samples)`` (numpy or JAX).
        remove_mean: subtract each coil's mean first. Default ``False``: thermal noise is
            zero-mean, and BART does not remove the mean either. The divisor is ``samples - 1``
            in both cases.

    Returns:
        ``(coils, coils)`` Hermitian ``complex64`` (computed in double precision).

    Raises:
        ShapeError: ``noise`` is not 2D.
        InvalidDataError: NaN/Inf, fewer than 2 samples, or fewer samples than coils (the
            covariance would be singular).
    """
    n = np.asarray(noise)
    if n.ndim != 2:
        raise ShapeError(f"noise_covariance: noise must have shape (coils, samples), got {n.shape}")
    coils, samples = n.shape
    if samples < max(coils, 2):
        raise InvalidDataError(
            f"noise_covariance: {samples} noise samples for {coils} coils; need at least "
            f"max(coils, 2) = {max(coils, 2)}"
        )
    n = n.astype(np.complex128)
    if not np.all(np.isfinite(n)):
        raise InvalidDataError("noise_covariance: noise contains NaN or Inf")
    if remove_mean:
        n = n - n.mean(axis=1, keepdims=True)
    return (n @ n.conj().T / (samples - 1)).astype(np.complex64)


def whitening_matrix(covariance) -> np.ndarray:
    """Pre-whitening matrix ``W = L^{-1}`` with ``C = L L^H`` (lower Cholesky), ``complex64``.

    ``W C W^H = I``; ``W`` is lower triangular, so whitened coil ``c`` mixes coils ``0..c`` only.

    Args:
        covariance: Hermitian positive definite ``(coils, coils)`` (numpy or JAX).

    Raises:
        ShapeError: not a square matrix.
        InvalidDataError: NaN/Inf, not Hermitian (relative tolerance 1e-5), or not positive
            definite (smallest eigenvalue below 1e-7 times the largest).
    """
    lower = _cholesky(covariance, "whitening_matrix")
    eye = np.eye(lower.shape[0], dtype=np.complex128)
    return np.linalg.solve(lower, eye).astype(np.complex64)


def prewhiten(kspace, W, *, coil_axis: int = -3) -> jax.Array:
    """Apply ``W`` over the coil axis: ``y'_c = sum_d W[c, d] y_d``, ``complex64`` (jit-able).

    Args:
        kspace: complex data with a coil axis, e.g. ``(..., coils, ky, kx)`` (numpy or JAX).
        W: ``(coils, coils)`` whitening matrix from :func:`whitening_matrix`.
        coil_axis: position of the coil axis in ``kspace``.

    Raises:
        ShapeError: ``W`` is not ``(coils, coils)`` for the data's coil count, or bad ``coil_axis``.
    """
    x = jnp.asarray(kspace, dtype=jnp.complex64)
    w = jnp.asarray(W, dtype=jnp.complex64)
    if not -x.ndim <= coil_axis < x.ndim:
        raise ShapeError(f"prewhiten: coil_axis {coil_axis} out of range for data {x.shape}")
    coils = x.shape[coil_axis]
    if w.shape != (coils, coils):
        raise ShapeError(
            f"prewhiten: W must have shape ({coils}, {coils}) for data of shape {x.shape} with the "
            f"coil axis {coil_axis}, got {w.shape}"
        )
    return jnp.moveaxis(jnp.tensordot(w, x, axes=((1,), (coil_axis,))), 0, coil_axis)


def add_noise(kspace, snr_db: float, *, seed: int | np.random.Generator = 0,
              covariance=None, coil_axis: int = -3) -> tuple[np.ndarray, float]:
    """Add circular complex Gaussian noise at a given SNR: returns ``(noisy complex64, sigma)``.

    ``sigma^2 = mean(|kspace|^2) / 10^(snr_db / 10)`` over all samples (zeros included, so add
    noise before masking), and each noise sample has ``E|n|^2 = sigma^2`` (``sigma^2 / 2`` per real
    and imaginary part). With a coil ``covariance`` the noise is ``n = sigma L z`` along
    ``coil_axis``, ``z`` white and ``L L^H = C coils / trace(C)``: correlated between coils as
    ``C``, with the same mean power ``sigma^2`` per sample.

    Args:
        kspace: complex (or real) array (numpy or JAX); never modified.
        snr_db: signal-to-noise ratio in dB, finite.
        seed: ``int`` seed or a numpy ``Generator`` (which is advanced).
        covariance: optional Hermitian positive definite ``(coils, coils)``.
        coil_axis: coil axis of ``kspace`` when ``covariance`` is given.

    Raises:
        InvalidDataError: non-finite SNR or data, all-zero data, bad covariance.
        ShapeError: covariance does not match the coil axis.
    """
    k = np.asarray(kspace)
    if not np.isfinite(snr_db):
        raise InvalidDataError(f"add_noise: snr_db must be finite, got {snr_db}")
    if not np.all(np.isfinite(k)):
        raise InvalidDataError("add_noise: kspace contains NaN or Inf")
    power = float(np.mean(np.abs(k.astype(np.complex128)) ** 2)) if k.size else 0.0
    if power == 0:
        raise InvalidDataError(f"add_noise: kspace of shape {k.shape} has zero power; SNR undefined")
    sigma = float(np.sqrt(power / 10.0 ** (snr_db / 10.0)))
    rng = np.random.default_rng(seed)
    white = rng.standard_normal((2, *k.shape), dtype=np.float32)
    noise = (white[0] + 1j * white[1]) * np.float32(sigma / np.sqrt(2.0))
    if covariance is not None:
        if not -k.ndim <= coil_axis < k.ndim:
            raise ShapeError(f"add_noise: coil_axis {coil_axis} out of range for shape {k.shape}")
        lower = _cholesky(covariance, "add_noise")
        if lower.shape[0] != k.shape[coil_axis]:
            raise ShapeError(
                f"add_noise: covariance {lower.shape} does not match {k.shape[coil_axis]} coils on "
                f"axis {coil_axis} of kspace {k.shape}"
            )
        lower = lower * np.sqrt(lower.shape[0] / np.sum(np.abs(lower) ** 2))  # trace(L L^H) = coils
        mixed = np.tensordot(lower.astype(np.complex64), noise, axes=((1,), (coil_axis,)))
        noise = np.moveaxis(mixed, 0, coil_axis)
    return (k + noise).astype(np.complex64), sigma
