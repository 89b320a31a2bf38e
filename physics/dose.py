"""Low-dose CT physics: photon counting, the log transform and the statistical data terms.

A detector bin behind a line integral ``p`` (dimensionless, the sinogram of an image in mm^-1)
receives ``Y ~ Poisson(I0 exp(-p))`` photons, ``I0`` being the unattenuated (blank-scan) count
per bin and view, plus zero-mean Gaussian electronic noise of standard deviation
``electronic_sigma`` counts. The scanner's data are ``y = -log(Y / I0)``, whose variance is about
``exp(p) / I0``: the noise of a sinogram grows as ``1 / sqrt(I0)``, i.e. as one over the square
root of the dose.

Data terms, both differentiable in JAX and summed over all bins:

- transmission Poisson negative log-likelihood of line integrals ``p`` given counts ``Y``,
  ``L(p) = sum I0 exp(-p) + Y p`` (the constants ``-Y log I0 + log Y!`` dropped), gradient
  ``Y - I0 exp(-p)``;
- penalised weighted least squares, ``0.5 sum w (p - y)^2``, with statistical weights
  ``w = Y^2 / (Y + electronic_sigma^2)`` (``= Y`` without electronic noise; ``0`` where ``Y <= 0``),
  the inverse of the variance of ``y``.

``I0`` is a positive number or an array that broadcasts against the sinogram (a blank scan per
bin, e.g. behind a bowtie filter).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from physics.errors import InvalidDataError, ShapeError

__all__ = ["log_transform", "low_dose_sinogram", "photon_counts", "transmission_nll",
           "wls_loss", "wls_weights"]

_MAX_I0 = 1e9  # Poisson draws are int32 (up to 2.1e9)


def photon_counts(sinogram, I0, *, key: jax.Array | int | None = None, seed: int | None = None,
                  electronic_sigma: float = 0.0) -> jax.Array:
    """Detected counts ``Poisson(I0 exp(-p)) + N(0, electronic_sigma^2)``, ``float32``.

    Args:
        sinogram: line integrals ``p`` (any shape, real, finite).
        I0: blank-scan counts per bin, ``0 < I0 <= 1e9``, a number or an array broadcasting
            against ``sinogram``.
        key: a ``jax.random`` key (an ``int`` is taken as a seed); equal keys give equal counts.
        seed: an ``int`` seed instead of ``key``. Exactly one of ``key`` and ``seed`` is given.
        electronic_sigma: standard deviation of the electronic noise in counts, ``>= 0``. With it
            counts can be ``<= 0`` (see :func:`log_transform`).

    Returns:
        Counts of the shape of ``sinogram`` (broadcast with ``I0``).

    Raises:
        InvalidDataError: NaN/Inf in the sinogram, ``I0`` outside ``(0, 1e9]``, negative or
            non-finite ``electronic_sigma``, both or neither of ``key`` and ``seed``.
    """
    if (key is None) == (seed is None):
        raise InvalidDataError("photon_counts: pass exactly one of key (a jax.random key) and seed "
                               "(an int)")
    p, i0 = _check(sinogram, "photon_counts", "sinogram"), _check_I0(I0, "photon_counts")
    if not (np.isfinite(electronic_sigma) and electronic_sigma >= 0):
        raise InvalidDataError(f"photon_counts: electronic_sigma must be finite and >= 0 counts, "
                               f"got {electronic_sigma}")
    shape = jnp.broadcast_shapes(p.shape, i0.shape)
    if key is None or isinstance(key, (int, np.integer)):
        key = jax.random.key(int(seed if key is None else key))
    k_poisson, k_gauss = jax.random.split(key)
    counts = jax.random.poisson(k_poisson, i0 * jnp.exp(-p), shape=shape).astype(jnp.float32)
    if electronic_sigma > 0:
        counts = counts + electronic_sigma * jax.random.normal(k_gauss, shape, jnp.float32)
    return counts


def log_transform(counts, I0, *, floor: float = 1.0) -> jax.Array:
    """Line integrals ``-log(max(counts, floor) / I0)``, ``float32``.

    The floor (in counts, default one photon) keeps zero and negative counts finite: such a bin
    reads ``log(I0 / floor)``.

    Raises:
        InvalidDataError: NaN/Inf counts, bad ``I0``, ``floor <= 0``.
    """
    y, i0 = _check(counts, "log_transform", "counts"), _check_I0(I0, "log_transform")
    if not (np.isfinite(floor) and floor > 0):
        raise InvalidDataError(f"log_transform: floor must be a positive number of counts, got {floor}")
    return jnp.log(i0) - jnp.log(jnp.maximum(y, floor))


def low_dose_sinogram(sinogram, I0, *, key: jax.Array | int | None = None, seed: int | None = None,
                      electronic_sigma: float = 0.0, floor: float = 1.0) -> jax.Array:
    """Noisy line integrals at dose ``I0``: ``log_transform(photon_counts(...))``, ``float32``.

    See :func:`photon_counts` and :func:`log_transform` for the arguments.
    """
    counts = photon_counts(sinogram, I0, key=key, seed=seed, electronic_sigma=electronic_sigma)
    return log_transform(counts, I0, floor=floor)


def transmission_nll(line_integrals, counts, I0) -> jax.Array:
    """Poisson negative log-likelihood ``sum I0 exp(-p) + Y p`` (constants dropped), a scalar.

    Differentiable in ``line_integrals``; its gradient is ``counts - I0 exp(-p)``.

    Args:
        line_integrals: ``p``, e.g. the forward projection of an image.
        counts: measured counts ``Y`` of the same shape (may be ``<= 0`` with electronic noise).
        I0: blank-scan counts, positive, broadcasting against ``p``.

    Raises:
        ShapeError: ``counts`` and ``line_integrals`` differ in shape.
        InvalidDataError: NaN/Inf inputs, bad ``I0``.
    """
    p = _check(line_integrals, "transmission_nll", "line_integrals")
    y = _check(counts, "transmission_nll", "counts")
    _same_shape(p, y, "transmission_nll", "counts")
    i0 = _check_I0(I0, "transmission_nll")
    return jnp.sum(i0 * jnp.exp(-p) + y * p)


def wls_weights(counts, *, electronic_sigma: float = 0.0) -> jax.Array:
    """Statistical weights ``Y^2 / (Y + electronic_sigma^2)`` (``0`` where ``Y <= 0``), ``float32``.

    Raises:
        InvalidDataError: NaN/Inf counts, negative ``electronic_sigma``.
    """
    y = _check(counts, "wls_weights", "counts")
    if not (np.isfinite(electronic_sigma) and electronic_sigma >= 0):
        raise InvalidDataError(f"wls_weights: electronic_sigma must be finite and >= 0 counts, "
                               f"got {electronic_sigma}")
    safe = jnp.where(y > 0, y, 1.0)  # no 0 / 0 in the value or the gradient
    return jnp.where(y > 0, safe**2 / (safe + electronic_sigma**2), 0.0)


def wls_loss(line_integrals, sinogram, weights) -> jax.Array:
    """Weighted least squares ``0.5 sum w (p - y)^2``, a scalar, differentiable in ``p``.

    Raises:
        ShapeError: the three arrays differ in shape.
        InvalidDataError: NaN/Inf inputs or negative weights.
    """
    p = _check(line_integrals, "wls_loss", "line_integrals")
    y = _check(sinogram, "wls_loss", "sinogram")
    w = _check(weights, "wls_loss", "weights")
    _same_shape(p, y, "wls_loss", "sinogram")
    _same_shape(p, w, "wls_loss", "weights")
    if not isinstance(w, jax.core.Tracer) and bool(jnp.any(w < 0)):
        raise InvalidDataError("wls_loss: weights must be >= 0")
    return 0.5 * jnp.sum(w * (p - y) ** 2)


def _check(x, what: str, name: str) -> jax.Array:
    """``x`` as a float32 JAX array, refusing complex data and (when concrete) NaN/Inf."""
    if jnp.iscomplexobj(x):
        raise InvalidDataError(f"{what}: {name} must be real, got {jnp.asarray(x).dtype}")
    a = jnp.asarray(x, jnp.float32)
    if not isinstance(a, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(a))):
        raise InvalidDataError(f"{what}: {name} contains NaN or Inf")
    return a


def _check_I0(I0, what: str) -> jax.Array:
    i0 = _check(I0, what, "I0")
    if not isinstance(i0, jax.core.Tracer) and not bool(jnp.all((i0 > 0) & (i0 <= _MAX_I0))):
        raise InvalidDataError(f"{what}: I0 (blank-scan counts) must be in (0, {_MAX_I0:g}], got "
                               f"values in [{float(jnp.min(i0)):g}, {float(jnp.max(i0)):g}]")
    return i0


def _same_shape(a: jax.Array, b: jax.Array, what: str, name: str) -> None:
    if a.shape != b.shape:
        raise ShapeError(f"{what}: {name} has shape {b.shape}, expected {a.shape} "
                         f"(the shape of line_integrals)")
