"""Largest eigenvalue of a Hermitian positive semi-definite map by power iteration.

Used for step sizes: ``step = 1 / L`` in :func:`recon.fista.fista` with ``L`` the largest
eigenvalue of ``A^H A``, and ``tau sigma L <= 1`` in :func:`recon.pdhg.pdhg` with ``L = ||K||^2``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from physics.errors import InvalidDataError
from recon.cg import tree_dot as _dot
from recon.cg import tree_norm as _norm


def max_eigenvalue(normal: Callable, x0: jax.Array, *, iterations: int = 30) -> jax.Array:
    """Largest eigenvalue of a Hermitian PSD map ``normal`` (e.g. ``A.normal``) by power iteration.

    Each of the ``iterations`` steps applies ``normal`` once: ``lam = Re <x, N x>`` with
    ``||x|| = 1``, then ``x <- N x / ||N x||``; the result is the Rayleigh quotient of the last
    iterate, a lower bound that approaches ``lambda_max`` like ``(lambda_2 / lambda_max)^(2k)``.
    For step sizes multiply it by a small safety factor (e.g. 1.05).

    Args:
        normal: Hermitian positive semi-definite linear map ``x -> N x``.
        x0: start vector (array or pytree; the caller draws it at random, with a component along
            the top eigenvector); its scale does not matter.
        iterations: number of applications of ``normal`` (static under ``jit``).

    Returns:
        () real scalar of the real dtype of ``x0`` (float32 for complex64); 0 for a zero start.
    """
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise InvalidDataError(f"iterations must be a positive integer, got {iterations!r}")
    scale = lambda x, s: jax.tree.map(lambda u: u * s.astype(jnp.real(u).dtype), x)  # noqa: E731

    def normalise(x):
        n = _norm(x)
        return scale(x, jnp.where(n > 0, 1 / jnp.where(n > 0, n, 1), 0))

    def body(_, carry):
        x, _ = carry
        y = normal(x)
        return normalise(y), _dot(x, y)

    x0 = jax.tree.map(lambda u: jnp.asarray(u) if jnp.issubdtype(jnp.asarray(u).dtype, jnp.inexact)
                      else jnp.asarray(u, jnp.float32), x0)
    x = normalise(x0)
    _, lam = lax.fori_loop(0, iterations, body, (x, jnp.zeros((), _norm(x).dtype)))
    return lam


def operator_norm(A, *, iterations: int = 20, margin: float = 1.02) -> jax.Array:
    """``||A||`` (largest singular value) of a linear operator by power iteration on ``A.normal``
    from a fixed random start, times ``margin`` (power iteration approaches it from below)."""
    x0 = jax.random.normal(jax.random.key(0), A.in_shape, A.in_dtype)
    return margin * jnp.sqrt(max_eigenvalue(A.normal, x0, iterations=iterations))
