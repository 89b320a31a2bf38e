"""ADMM (scaled form, Boyd et al. 2011) for ``min_x ||A x - y||^2 / 2 + h(D x)``.

Splitting ``z = D x``; the x-update is a linear solve by :func:`recon.cg.cg` (the one CG of the
code base), warm-started from the previous x. Returns the :class:`recon.fista.SolverInfo` record
shared with FISTA and PDHG (same loop).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from physics.errors import InvalidDataError
from recon.cg import cg
from recon.fista import SolverInfo, _as_inexact, _check_options, _iterate


def admm(normal: Callable, rhs: jax.Array, D: Callable, D_adjoint: Callable, prox_h: Callable,
         x0: jax.Array, *, rho: float | jax.Array, maxiter: int = 50, cg_iterations: int = 10,
         tol: float = 0.0, objective: Callable | None = None) -> tuple[jax.Array, SolverInfo]:
    """Scaled-form ADMM (``z = D x_0``, ``u = 0`` at the start)::

        x <- argmin ||A x - y||^2 / 2 + rho / 2 ||D x - z + u||^2
             = (A^H A + rho D^H D)^{-1} (A^H y + rho D^H (z - u))   (CG, cg_iterations steps)
        z <- prox_{h / rho}(D x + u)
        u <- u + D x - z

    Converges for any ``rho > 0`` (exact x-updates); ``rho`` sets the speed: of the order of the
    eigenvalues of ``A^H A`` is a good start. With few CG steps the x-update is inexact and the
    limit may be slightly off; raise ``cg_iterations`` if the result must be exact.

    Args:
        normal: ``x -> A^H A x`` (Hermitian PSD).
        rhs: ``A^H y``, shape and dtype of ``x0``.
        D: linear map ``x -> D x`` (array or pytree); D_adjoint its adjoint.
        prox_h: ``(v, t) -> prox_{t h}(v)`` on ``D``'s output.
        x0: initial iterate, real or complex array.
        rho: penalty parameter (> 0).
        maxiter: ADMM iteration limit (static under ``jit``; sets the history length).
        cg_iterations: CG iterations per x-update (static; CG stops earlier at its own 1e-6).
        tol: stop once ``||x' - x|| / ||x'|| <= tol`` (0: never).
        objective: optional ``x -> ||A x - y||^2 / 2 + h(D x)`` recorded in the history.

    Returns:
        ``(x, info)``: last x-iterate (dtype and shape of ``x0``) and :class:`SolverInfo`.
    """
    _check_options(maxiter, tol, rho=rho)
    if isinstance(cg_iterations, bool) or not isinstance(cg_iterations, int) or cg_iterations < 1:
        raise InvalidDataError(f"cg_iterations must be a positive integer, got {cg_iterations!r}")
    x0 = _as_inexact(x0)
    rhs = jnp.asarray(rhs, x0.dtype)
    tmap = jax.tree.map

    def system(v):
        return normal(v) + rho * D_adjoint(D(v))

    def update(state, k):
        x, z, u = state
        b = rhs + rho * D_adjoint(tmap(jnp.subtract, z, u))
        x, _ = cg(system, b, x0=x, maxiter=cg_iterations)
        Dx = D(x)
        z = prox_h(tmap(jnp.add, Dx, u), 1 / rho)
        u = tmap(lambda a, b, c: a + b - c, u, Dx, z)
        return x, z, u

    z0 = D(x0)
    u0 = tmap(jnp.zeros_like, z0)
    (x, _, _), info = _iterate(update, (x0, z0, u0), maxiter=maxiter, tol=tol, objective=objective)
    return x, info
