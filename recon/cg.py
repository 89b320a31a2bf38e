"""Conjugate gradient for Hermitian positive semi-definite systems (the one CG of the code base).

Solves ``(A + damp I) x = b`` for an ``A`` given as any callable (an operator's ``normal``, a
closure, a matrix product) on arrays or pytrees of arrays. Pure function, ``jit``/``vmap``-able;
gradients by implicit differentiation (:func:`jax.lax.custom_linear_solve`): the backward pass is
another CG solve, accurate when both solves converge; ``A`` need not be transposable by JAX.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax


class CGInfo(NamedTuple):
    """Convergence record of :func:`cg` (a pytree; batched under ``vmap``).

    iterations: () int32, iterations run.
    residual: () float32, final relative residual ``||b - (A + damp I) x|| / ||b||`` (recursive).
    converged: () bool, ``residual <= tol``.
    history: (maxiter + 1,) float32, relative residual after each iteration (index 0: start);
        NaN after the last iteration run.
    """

    iterations: jax.Array
    residual: jax.Array
    converged: jax.Array
    history: jax.Array


def tree_dot(a, b) -> jax.Array:
    """Real part of ``<a, b>`` summed over all leaves of two arrays or pytrees."""
    return sum(jnp.real(jnp.vdot(u, v)) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def tree_norm(x) -> jax.Array:
    """Euclidean norm over all leaves of an array or pytree."""
    return jnp.sqrt(sum(jnp.sum(jnp.abs(leaf) ** 2) for leaf in jax.tree.leaves(x)))


def _cg_solve(matvec: Callable, b, x0, maxiter: int, tol: float):
    axpy = lambda a, x, y: jax.tree.map(lambda u, v: a * u + v, x, y)  # noqa: E731
    bnorm = jnp.sqrt(tree_dot(b, b))
    safe = jnp.where(bnorm > 0, bnorm, 1.0)
    r = jax.tree.map(jnp.subtract, b, matvec(x0))
    rr = tree_dot(r, r)
    history = jnp.full((maxiter + 1,), jnp.nan, jnp.float32).at[0].set((jnp.sqrt(rr) / safe).astype(jnp.float32))

    def cond(state):
        _, _, _, rr, k, _ = state
        return (k < maxiter) & (jnp.sqrt(rr) > tol * bnorm)

    def body(state):
        x, r, p, rr, k, history = state
        Ap = matvec(p)
        pAp = tree_dot(p, Ap)
        alpha = jnp.where(pAp > 0, rr / jnp.where(pAp > 0, pAp, 1.0), 0.0)
        x = axpy(alpha, p, x)
        r = axpy(-alpha, Ap, r)
        rr_new = tree_dot(r, r)
        p = axpy(rr_new / jnp.where(rr > 0, rr, 1.0), p, r)
        history = history.at[k + 1].set((jnp.sqrt(rr_new) / safe).astype(jnp.float32))
        return x, r, p, rr_new, k + 1, history

    state = (x0, r, r, rr, jnp.int32(0), history)
    x, _, _, rr, k, history = lax.while_loop(cond, body, state)
    res = (jnp.sqrt(rr) / safe).astype(jnp.float32)
    return x, CGInfo(k, res, res <= tol, history)


def cg(A: Callable, b, x0=None, *, maxiter: int = 30, tol: float = 1e-6,
       damp: float | jax.Array = 0.0):
    """Conjugate gradient for ``(A + damp I) x = b`` with ``A`` Hermitian positive semi-definite.

    Args:
        A: linear map ``x -> A x`` (same shapes and dtypes as ``b``).
        b: right-hand side, an array or pytree of arrays (complex or real).
        x0: initial guess (default zeros).
        maxiter: maximum number of iterations (static under ``jit``).
        tol: stop when ``||r|| <= tol ||b||``.
        damp: Tikhonov weight added to the diagonal (``>= 0``).

    Returns:
        ``(x, info)`` with :class:`CGInfo`.
    """
    if x0 is None:
        x0 = jax.tree.map(jnp.zeros_like, b)

    def matvec(x):
        return jax.tree.map(lambda ax, u: ax + damp * u, A(x), x)

    def solve(mv, rhs):
        return _cg_solve(mv, rhs, x0, maxiter, tol)

    def transpose_solve(mv, rhs):  # A^T = conj(A) for Hermitian A: (A^T)^-1 r = conj(A^-1 conj(r))
        x, info = solve(mv, jax.tree.map(jnp.conj, rhs))
        return jax.tree.map(jnp.conj, x), info

    # symmetric=True: JAX never transposes ``A`` itself (operators bridged from host kernels have
    # no transpose rule); the transposed system is solved by the same CG through conjugation.
    return lax.custom_linear_solve(matvec, b, solve, transpose_solve=transpose_solve, symmetric=True,
                                   has_aux=True)


@partial(jax.jit, static_argnames=("maxiter",))
def cgls(A, y, *, lam: float | jax.Array = 0.0, maxiter: int = 30, tol: float = 1e-5):
    """``argmin_x ||A x - y||^2 + lam ||x||^2`` for a linear operator ``A`` (``physics.linop``)
    by CG on the normal equations ``(A^H A + lam I) x = A^H y``, started from 0.

    Returns ``(x, info)`` with :class:`CGInfo` (residuals of the normal equations).
    """
    return cg(A.normal, A.adjoint(y), maxiter=maxiter, tol=tol, damp=lam)
