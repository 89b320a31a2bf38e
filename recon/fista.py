"""FISTA: accelerated proximal gradient for ``min_x f(x) + g(x)`` (Beck & Teboulle 2009).

Also home of :class:`SolverInfo`, the convergence record shared by the first-order solvers
(:func:`recon.fista.fista`, :func:`recon.pdhg.pdhg`, :func:`recon.admm.admm`), and of their common
loop (:func:`_iterate`): a :func:`jax.lax.while_loop` over a fixed-size history, so every solver is
a pure function, ``jit``-able with ``maxiter`` static and ``vmap``-able over independent problems
(under ``vmap`` each problem keeps its own iteration count and stopping point).

Prox convention: ``prox_g(v, t) = argmin_u g(u) + ||u - v||^2 / (2 t)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from physics.errors import InvalidDataError
from recon.cg import tree_norm as _norm


class SolverInfo(NamedTuple):
    """Convergence record of the first-order solvers (a pytree; batched under ``vmap``).

    iterations: () int32, iterations run.
    history: (maxiter,) float32; entry ``k`` is taken after iteration ``k + 1``: the objective
        of the iterate when an ``objective`` callable was given, else the relative change
        ``||x_{k+1} - x_k|| / ||x_{k+1}||``; NaN after the last iteration run.
    converged: () bool, the relative change fell to ``tol`` (always False for ``tol = 0``).
    """

    iterations: jax.Array
    history: jax.Array
    converged: jax.Array


def _relative_change(new, old) -> jax.Array:
    """``||new - old|| / ||new||`` (0 when both vanish, inf when only ``new`` does)."""
    d = _norm(jax.tree.map(jnp.subtract, new, old))
    n = _norm(new)
    return jnp.where(n > 0, d / jnp.where(n > 0, n, 1.0), jnp.where(d > 0, jnp.inf, 0.0))


def _check_options(maxiter: Any, tol: Any, **positive: Any) -> None:
    """Refuse a non-integer or non-positive ``maxiter``, a negative ``tol``, non-positive steps."""
    if isinstance(maxiter, bool) or not isinstance(maxiter, (int, np.integer)) or maxiter < 1:
        raise InvalidDataError(f"maxiter must be a positive integer (static under jit), got {maxiter!r}")
    if isinstance(tol, (int, float, np.number)) and not tol >= 0:
        raise InvalidDataError(f"tol must be >= 0, got {tol!r}")
    for name, value in positive.items():
        if isinstance(value, (int, float, np.number)) and not value > 0:
            raise InvalidDataError(f"{name} must be > 0, got {value!r}")


def _as_inexact(x0) -> jax.Array:
    x0 = jnp.asarray(x0)
    return x0 if jnp.issubdtype(x0.dtype, jnp.inexact) else x0.astype(jnp.float32)


def _iterate(update: Callable, state: tuple, *, maxiter: int, tol: Any,
             objective: Callable | None) -> tuple[tuple, SolverInfo]:
    """Run ``state <- update(state, k)`` (``state[0]`` is the iterate x) until ``maxiter``
    iterations or, for ``tol > 0``, until ``||x_{k+1} - x_k|| / ||x_{k+1}|| <= tol``."""
    state = jax.tree.map(jnp.asarray, state)

    def cond(carry):
        _, k, _, done = carry
        return (k < maxiter) & ~done

    def body(carry):
        state, k, history, _ = carry
        new = update(state, k)
        # Keep the loop-carried types fixed whatever dtype the user's prox returns.
        new = jax.tree.map(lambda a, ref: jnp.asarray(a).astype(ref.dtype), new, state)
        rel = _relative_change(new[0], state[0])
        value = rel if objective is None else jnp.real(objective(new[0]))
        history = history.at[k].set(jnp.asarray(value).astype(jnp.float32))
        done = (tol > 0) & (rel <= tol)
        return new, k + 1, history, done

    history = jnp.full((maxiter,), jnp.nan, jnp.float32)
    carry = (state, jnp.int32(0), history, jnp.asarray(False))
    state, k, history, done = lax.while_loop(cond, body, carry)
    return state, SolverInfo(k, history, done)


def fista(grad_f: Callable, prox_g: Callable, x0: jax.Array, *, step: float | jax.Array,
          maxiter: int = 50, tol: float = 0.0, objective: Callable | None = None,
          key: jax.Array | None = None, restart: bool = False) -> tuple[jax.Array, SolverInfo]:
    """FISTA with constant step for ``min_x f(x) + g(x)``, ``f`` smooth with L-Lipschitz gradient.

    Iteration (``t_1 = 1``, ``y_1 = x_0``)::

        x_k     = prox_g(y_k - step grad_f(y_k), step, key_k)
        t_{k+1} = (1 + sqrt(1 + 4 t_k^2)) / 2
        y_{k+1} = x_k + (t_k - 1) / t_{k+1} (x_k - x_{k-1})

    Not monotone in the objective; converges for ``step <= 1 / L`` (take ``L`` from
    :func:`recon.power.max_eigenvalue` of the normal operator, with a small safety margin).

    Args:
        grad_f: ``x -> grad f(x)`` (for complex ``x``, the gradient w.r.t. the real and imaginary
            parts as one complex array, e.g. ``A^H (A x - y)`` for ``f = ||A x - y||^2 / 2``).
        prox_g: ``(v, t, key) -> prox_{t g}(v)``; ``key`` is a per-iteration key
            (``jax.random.fold_in(key, k)``, distinct for each iteration, e.g. for random cycle
            spinning), or None when ``key`` is None.
        x0: initial iterate, real or complex array.
        step: constant step size (``1 / L``).
        maxiter: iteration limit (static under ``jit``; sets the history length).
        tol: stop once the relative change ``||x_k - x_{k-1}|| / ||x_k|| <= tol`` (0: never).
        objective: optional ``x -> f(x) + g(x)`` (real scalar) recorded in the history.
        key: optional ``jax.random`` key for ``prox_g``.
        restart: gradient-based adaptive restart (O'Donoghue & Candes 2015): reset the momentum
            whenever ``Re <y_k - x_k, x_k - x_{k-1}> > 0``.

    Returns:
        ``(x, info)``: last iterate ``x_k`` (dtype and shape of ``x0``) and :class:`SolverInfo`.
    """
    _check_options(maxiter, tol, step=step)
    x0 = _as_inexact(x0)
    real = jnp.real(x0).dtype

    def update(state, k):
        x, y, t = state
        key_k = None if key is None else jax.random.fold_in(key, k)
        x_new = prox_g(y - step * grad_f(y), step, key_k)
        t_new = (1 + jnp.sqrt(1 + 4 * t * t)) / 2
        y_new = x_new + ((t - 1) / t_new).astype(real) * (x_new - x)
        if restart:
            reset = jnp.real(jnp.vdot(y - x_new, x_new - x)) > 0
            t_new = jnp.where(reset, jnp.ones_like(t), t_new)
            y_new = jnp.where(reset, x_new, y_new)
        return x_new, y_new, t_new

    (x, _, _), info = _iterate(update, (x0, x0, jnp.ones((), real)), maxiter=maxiter, tol=tol,
                               objective=objective)
    return x, info
