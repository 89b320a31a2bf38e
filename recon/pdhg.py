"""PDHG (Chambolle & Pock 2011): primal-dual hybrid gradient for ``min_x F(K x) + G(x)``.

``K`` may map the image to a pytree (e.g. ``(A x, D x)`` for data term plus TV), so that
``F(w_1, w_2) = F_1(w_1) + F_2(w_2)`` is separable and its conjugate's prox acts leaf by leaf.
Returns the :class:`recon.fista.SolverInfo` record shared with FISTA and ADMM (same loop).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from recon.fista import SolverInfo, _as_inexact, _check_options, _iterate


def conjugate_prox(prox_f: Callable) -> Callable:
    """``prox_{sigma F*}`` from ``prox_f(v, t) = prox_{t F}(v)`` by Moreau's identity:
    ``prox_{sigma F*}(v) = v - sigma prox_{F / sigma}(v / sigma)`` (arrays or pytrees)."""

    def prox_f_conj(v, sigma):
        p = prox_f(jax.tree.map(lambda u: u / sigma, v), 1 / sigma)
        return jax.tree.map(lambda u, w: u - sigma * w, v, p)

    return prox_f_conj


def pdhg(K: Callable, K_adjoint: Callable, prox_f_conj: Callable, prox_g: Callable | None,
         x0: jax.Array, *, tau: float | jax.Array, sigma: float | jax.Array, maxiter: int = 100,
         tol: float = 0.0, objective: Callable | None = None,
         theta: float = 1.0) -> tuple[jax.Array, SolverInfo]:
    """Chambolle-Pock iteration for ``min_x F(K x) + G(x)`` (dual variable ``z`` starts at 0)::

        z    <- prox_{sigma F*}(z + sigma K xbar)
        x'   <- prox_{tau G}(x - tau K^H z)
        xbar <- x' + theta (x' - x),   x <- x'

    Converges for ``theta = 1`` when ``tau * sigma * L <= 1`` with ``L = ||K||^2`` the largest
    eigenvalue of ``K^H K`` (:func:`recon.power.max_eigenvalue` of ``lambda x: K_adjoint(K(x))``,
    times a small safety factor); ``tau = sigma = 1 / sqrt(L)`` is the usual choice, and the ratio
    ``tau / sigma`` may be tuned to balance primal and dual progress.

    Args:
        K: linear map ``x -> K x``, an array or a pytree of arrays (e.g. a tuple).
        K_adjoint: its adjoint, pytree -> array of ``x0``'s shape.
        prox_f_conj: ``(z, sigma) -> prox_{sigma F*}(z)`` on ``K``'s output pytree (see
            :func:`conjugate_prox` to build it from the prox of ``F``).
        prox_g: ``(v, tau) -> prox_{tau G}(v)``; None for ``G = 0``.
        x0: initial iterate, real or complex array.
        tau, sigma: primal and dual step sizes.
        maxiter: iteration limit (static under ``jit``; sets the history length).
        tol: stop once the primal relative change ``||x' - x|| / ||x'|| <= tol`` (0: never).
        objective: optional ``x -> F(K x) + G(x)`` (real scalar) recorded in the history.
        theta: extrapolation parameter (1: the standard method).

    Returns:
        ``(x, info)``: last primal iterate (dtype and shape of ``x0``) and :class:`SolverInfo`.
    """
    _check_options(maxiter, tol, tau=tau, sigma=sigma)
    x0 = _as_inexact(x0)
    z0 = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(K, x0))

    def update(state, k):
        x, xbar, z = state
        z = prox_f_conj(jax.tree.map(lambda u, v: u + sigma * v, z, K(xbar)), sigma)
        v = x - tau * K_adjoint(z)
        x_new = v if prox_g is None else prox_g(v, tau)
        return x_new, x_new + theta * (x_new - x), z

    (x, _, _), info = _iterate(update, (x0, x0, z0), maxiter=maxiter, tol=tol, objective=objective)
    return x, info
