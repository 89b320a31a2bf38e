"""CT reconstruction: FBP / FDK, SIRT, CGLS and total variation by PDHG.

The iterative methods see only an operator of :mod:`physics.ct` (``A``, ``A.adjoint``,
``A.normal``) and a sinogram of line integrals; TV reuses :func:`recon.cs.tv` (the one PDHG) on
the operator scaled to norm 1, so that its ``lam`` means what it means for MRI: a fraction of the
peak of the (normalised) backprojection. :func:`reconstruct_ct` runs a method slice by slice over
a CT file's sinograms (cone beam: the whole volume at once).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from physics.ct import ct_operator
from physics.ct_geometry import CTGeometry
from physics.errors import InvalidDataError, ShapeError
from physics.linop import LinearOperator, Scaled
from recon.cg import cgls
from recon.cs import tv
from recon.fbp import fbp, fdk
from recon.fista import SolverInfo, _iterate
from recon.power import operator_norm

__all__ = ["CT_METHODS", "reconstruct_ct", "sirt", "tv_ct"]

CT_METHODS = ("fbp", "sirt", "cgls", "tv")
# Default (lambda, iterations) per iterative method; lambda only for TV.
_DEFAULTS = {"sirt": (None, 100), "cgls": (None, 20), "tv": (0.001, 150)}


@partial(jax.jit, static_argnames=("iterations", "nonneg"))
def sirt(A: LinearOperator, y: jax.Array, *, iterations: int = 100, nonneg: bool = True,
         tol: float = 0.0) -> tuple[jax.Array, SolverInfo]:
    """SIRT (Gregor & Benson 2008): ``x <- P(x + C A^T R (y - A x))`` from ``x = 0``, with
    ``R = 1 / A 1`` (inverse ray lengths), ``C = 1 / A^T 1`` (inverse pixel weights; zero where a
    ray or pixel sees nothing) and ``P`` the projection onto ``x >= 0`` when ``nonneg``.
    Converges to a weighted least-squares solution; the iteration count regularises."""
    ones = jnp.ones(A.in_shape, A.in_dtype)
    row, col = A(ones), A.adjoint(jnp.ones(A.out_shape, A.out_dtype))
    R = jnp.where(row > 0, 1 / jnp.where(row > 0, row, 1), 0)
    C = jnp.where(col > 0, 1 / jnp.where(col > 0, col, 1), 0)

    def update(state, _):
        x = state[0] + C * A.adjoint(R * (y - A(state[0])))
        return (jnp.maximum(x, 0) if nonneg else x,)

    (x,), info = _iterate(update, (jnp.zeros(A.in_shape, A.in_dtype),), maxiter=iterations,
                          tol=tol, objective=None)
    return x, info


def tv_ct(A: LinearOperator, y: jax.Array, *, lam: float = 0.001, iterations: int = 150,
          nonneg: bool = True, tol: float = 0.0) -> tuple[jax.Array, SolverInfo]:
    """``argmin_{x >= 0} 1/2 ||A x - y||^2 + lam s ||A||^2 TV(x)`` by PDHG (:func:`recon.cs.tv` on
    ``A / ||A||``); ``s`` = peak of ``A^T y / ||A||^2``, so ``lam`` is scale free."""
    n = operator_norm(A)
    return tv(Scaled(A, 1 / n), y / n, lam=lam, iterations=iterations, nonneg=nonneg, tol=tol)


def _solver(method: str, geometry: CTGeometry, A: LinearOperator, lam: float | None,
            iterations: int | None, filter: str) -> Callable[[np.ndarray], jax.Array]:
    if method == "fbp":
        return lambda y: (fdk if geometry.kind == "cone" else fbp)(y, geometry, filter=filter)
    default_lam, default_iterations = _DEFAULTS[method]
    iterations = default_iterations if iterations is None else iterations
    if method == "sirt":
        return lambda y: sirt(A, y, iterations=iterations)[0]
    if method == "cgls":
        return lambda y: cgls(A, y, maxiter=iterations, tol=0.0)[0]
    lam = default_lam if lam is None else lam
    return lambda y: tv_ct(A, y, lam=lam, iterations=iterations)[0]


def reconstruct_ct(sinogram: np.ndarray, geometry: CTGeometry, *, method: str = "fbp",
                   iterations: int | None = None, lam: float | None = None, filter: str = "ramp",
                   backend: str = "numba", progress: Callable[[], None] | None = None) -> np.ndarray:
    """Reconstruct a CT file's sinograms into float32 images in the units of the data / mm.

    Args:
        sinogram: (slices, angles, detectors) for parallel/fan beam, (angles, rows, columns) for
            cone beam (as :class:`recon.io.CTData`).
        geometry: the acquisition geometry.
        method: one of :data:`CT_METHODS`.
        iterations, lam: iteration count and TV weight (``None``: the method's default:
            SIRT 100, CGLS 20, TV 150 iterations with ``lam`` 0.001).
        filter: FBP/FDK filter (``ramp``, ``shepp-logan``, ``cosine``, ``hann``).
        backend: projector backend of :func:`physics.ct.ct_operator`.
        progress: called after each slice.

    Returns:
        (slices, ny, nx) float32, or (nz, ny, nx) for cone beam.
    """
    if method not in CT_METHODS:
        raise InvalidDataError(f"unknown CT method {method!r}; expected one of {CT_METHODS}")
    if (iterations is not None and iterations < 1) or (lam is not None and lam < 0):
        raise InvalidDataError(f"need iterations >= 1 and lambda >= 0, got {iterations}, {lam}")
    cone = geometry.kind == "cone"
    y = np.asarray(sinogram, np.float32)
    expected = geometry.sinogram_shape if cone else (y.shape[0] if y.ndim else 0, *geometry.sinogram_shape)
    if y.shape != tuple(expected):
        raise ShapeError(f"sinogram has shape {y.shape}, expected {tuple(expected)} "
                         f"({'angles, rows, columns' if cone else 'slices, angles, detectors'}) "
                         f"for this {geometry.kind} geometry")
    stack = y[None] if cone else y
    A = None if method == "fbp" else ct_operator(geometry, backend=backend)
    solve = _solver(method, geometry, A, lam, iterations, filter)
    images = []
    for s in stack:
        images.append(np.asarray(solve(jnp.asarray(s)), np.float32))
        if progress is not None:
            progress()
    return images[0] if cone else np.stack(images)
