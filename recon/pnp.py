"""Plug-and-play priors and data consistency for any linear operator ``A`` of :mod:`physics`.

Plug-and-play (Venkatakrishnan et al. 2013): a denoiser ``D(x) -> x`` (a trained network, BM3D, a
wavelet shrinkage; real or complex images of ``A.in_shape``) replaces the prox of the prior in
:func:`recon.admm.admm` and :func:`recon.fista.fista`; the data term stays ``||A x - y||^2 / 2``.
``A`` is expected to have norm about 1 (SENSE with normalised coil maps; scale other operators),
as in :mod:`recon.cs`. The functions are not jit-compiled themselves, so that a network's weights
are never baked into a compiled program as constants: wrap a call in ``jax.jit`` (or ``nnx.jit``)
with the denoiser closed over or passed as an argument.

Data consistency: :func:`data_consistency` pulls an image ``x_e`` (e.g. a network's output) back
to the data, softly or exactly; :func:`replace_measured` is its Cartesian multi-coil MRI form;
:func:`noise_weight` gives the soft weight of the noise level and the enhancer's expected error.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp

from physics.errors import InvalidDataError
from physics.linop import LinearOperator
from physics.mri import MultiCoilMRI
from recon.admm import admm
from recon.cg import CGInfo, cg
from recon.fista import SolverInfo, fista
from recon.power import operator_norm

Denoiser = Callable[[jax.Array], jax.Array]


def _identity(x: jax.Array) -> jax.Array:
    return x


def pnp_admm(A: LinearOperator, y: jax.Array, denoiser: Denoiser, *, rho: float = 0.05,
             iterations: int = 30, cg_iterations: int = 5) -> tuple[jax.Array, SolverInfo]:
    """PnP-ADMM: :func:`recon.admm.admm` with the split ``z = x`` and ``z <- D(x + u)``::

        x <- (A^H A + rho I)^{-1} (A^H y + rho (z - u))   (CG, cg_iterations steps, warm start)
        z <- D(x + u)
        u <- u + x - z

    With ``D`` the prox of ``h / rho`` this is ADMM for ``||A x - y||^2 / 2 + h(x)``: a denoiser
    for Gaussian noise of variance ``s^2`` acts as a prior of weight ``rho s^2``, so a larger
    ``rho`` trusts the denoiser more. Starts from ``x = z = A^H y``.

    Args:
        A: linear operator (``A(x)``, ``A.adjoint``, ``A.normal``), norm about 1.
        y: measured data ``(*A.out_shape)``.
        denoiser: ``D(x) -> x`` on images ``(*A.in_shape)`` of ``A.in_dtype``.
        rho: ADMM penalty (> 0), relative to the eigenvalues of ``A^H A`` in [0, 1].
        iterations: ADMM iterations; cg_iterations: CG steps per x-update.

    Returns:
        ``(image (*A.in_shape), info)``; ``info.history`` holds the relative change per iteration.
    """
    b = A.adjoint(y)
    return admm(A.normal, b, _identity, _identity, lambda v, t: denoiser(v), b, rho=rho,
                maxiter=iterations, cg_iterations=cg_iterations)


def pnp_fista(A: LinearOperator, y: jax.Array, denoiser: Denoiser, *, iterations: int = 30,
              step: float | jax.Array | None = None) -> tuple[jax.Array, SolverInfo]:
    """PnP-FISTA: :func:`recon.fista.fista` on ``||A x - y||^2 / 2`` with ``prox <- D``::

        x_k = D(v_k - step A^H (A v_k - y)),  v_{k+1} = x_k + momentum (x_k - x_{k-1})

    Starts from ``A^H y``. With ``D`` the prox of ``step h`` it is FISTA for
    ``||A x - y||^2 / 2 + h(x)``.

    Args:
        A, y, denoiser: as in :func:`pnp_admm`.
        iterations: FISTA iterations.
        step: gradient step; default ``1 / L`` with ``L`` the largest eigenvalue of ``A^H A``
            (power iteration, 10 % margin).

    Returns:
        ``(image (*A.in_shape), info)``; ``info.history`` holds the relative change per iteration.
    """
    b = A.adjoint(y)
    if step is None:
        step = 1.0 / operator_norm(A, margin=1.05) ** 2
    return fista(lambda x: A.normal(x) - b, lambda v, t, key: denoiser(v), b, step=step,
                 maxiter=iterations)


def data_consistency(A: LinearOperator, y: jax.Array, x: jax.Array, *, lam: float | jax.Array = 0.0,
                     maxiter: int = 30, tol: float = 1e-6) -> tuple[jax.Array, CGInfo]:
    """Pull an image ``x_e`` back to the data: ``argmin_x ||A x - y||^2 + lam ||x - x_e||^2``.

    Solved by :func:`recon.cg.cg` on ``(A^H A + lam I) x = A^H y + lam x_e`` started from ``x_e``.

    - ``lam > 0`` (soft): a compromise; ``||A x - y||`` grows monotonically with ``lam`` from its
      least-squares value (``lam -> 0``) to ``||A x_e - y||`` (``lam -> inf``).
    - ``lam = 0`` (hard): CG from ``x_e`` stays in ``x_e + range(A^H)``, so it converges to
      ``x_e + A^+ (y - A x_e)``, the point nearest to ``x_e`` among the least-squares solutions:
      the orthogonal projection of ``x_e`` onto ``{x : A x = y}`` when the data are consistent
      (the residual on the measured samples vanishes); with noisy data that ``A`` cannot fit
      exactly (more measurements than unknowns, as multi-coil k-space) the measured residual is
      the least-squares one. The part of ``x_e`` in the null space of ``A`` is kept unchanged.

    For single-coil Cartesian MRI with a 0/1 mask, ``lam = 0`` is exactly k-space replacement
    ``F^H ((1 - M) F x_e + y)`` (one CG step). With ``lam = 0`` and a rank-deficient, poorly
    conditioned ``A`` keep ``tol >= 1e-6``: CG run on past float32 precision drifts in the null
    space (on a 2-coil 3x problem of condition 7e3, 200 iterations at ``tol = 1e-7`` diverged).

    Args:
        A: linear operator; y: data ``(*A.out_shape)``; x: the image ``x_e`` ``(*A.in_shape)``.
        lam: weight (>= 0) of the closeness to ``x_e``, relative to the eigenvalues of ``A^H A``.
        maxiter, tol: CG iteration limit and relative-residual tolerance.

    Returns:
        ``(image, info)``: the image (shape of ``x``, ``A.in_dtype``) and the
        :class:`recon.cg.CGInfo`.
    """
    if isinstance(lam, (int, float)) and not lam >= 0:
        raise InvalidDataError(f"data_consistency: lam must be >= 0, got {lam!r}")
    return _consistency(A, y, jnp.asarray(x).astype(A.in_dtype), lam, maxiter=maxiter, tol=tol)


@partial(jax.jit, static_argnames=("maxiter",))
def _consistency(A: LinearOperator, y: jax.Array, x: jax.Array, lam: float | jax.Array, *,
                 maxiter: int, tol: float) -> tuple[jax.Array, CGInfo]:
    return cg(A.normal, A.adjoint(y) + lam * x, x0=x, maxiter=maxiter, tol=tol, damp=lam)


def noise_weight(sigma: float | jax.Array, x: jax.Array, relative_error: float) -> jax.Array:
    """The ``lam`` of :func:`data_consistency` that makes its solution the maximum-a-posteriori image
    when the data noise is Gaussian with standard deviation ``sigma`` per sample and ``x_e`` (an
    enhancer's output) errs by Gaussian noise of ``tau = relative_error * RMS(x_e)`` per pixel:
    ``||A x - y||^2 / sigma^2 + ||x - x_e||^2 / tau^2`` is minimal at ``lam = sigma^2 / tau^2``.

    ``relative_error`` is the enhancer's ``||x_e - x_true|| / ||x_e||``, measured on data it was not
    trained on (:func:`experiments.base.run` writes it beside the model); ``sigma`` in the units of
    ``A x`` (e.g. :func:`recon.trust.kspace_sigma`). An unknown noise level (``sigma`` NaN) gives
    ``lam = 0``: exact consistency. Float32 scalar.
    """
    if not relative_error > 0:
        raise InvalidDataError(f"noise_weight: relative_error must be > 0, got {relative_error!r}")
    tau2 = relative_error ** 2 * jnp.mean(jnp.abs(jnp.asarray(x)) ** 2)
    lam = jnp.asarray(sigma, jnp.float32) ** 2 / jnp.where(tau2 > 0, tau2, 1.0)
    return jnp.where(jnp.isnan(lam), 0.0, lam).astype(jnp.float32)


def replace_measured(x: jax.Array, kspace: jax.Array, maps: jax.Array, mask: jax.Array, *,
                     lam: float | jax.Array = 0.0, maxiter: int = 30, tol: float = 1e-6,
                     ndim: int = 2) -> tuple[jax.Array, CGInfo]:
    """Cartesian multi-coil data consistency: :func:`data_consistency` for ``A = M F S``.

    Hard (``lam = 0``): the image nearest to ``x`` whose k-space ``M F S x`` equals the measured
    samples (exact least-squares projection, by CG; not the coil-image replace-and-combine
    approximation), and for one coil with ``|S| = 1`` the image whose k-space is ``kspace`` where
    ``mask = 1`` and ``x``'s own k-space elsewhere. Soft (``lam > 0``): see :func:`data_consistency`.

    Args:
        x: image ``(*spatial)`` complex.
        kspace: measured k-space ``(coils, *spatial)``, zero where not sampled.
        maps: coil sensitivities ``(coils, *spatial)``, ``sum_c |S_c|^2 = 1`` on the object.
        mask: real 0/1 sampling mask broadcastable to ``spatial``.
        lam, maxiter, tol: as in :func:`data_consistency`; ndim: number of spatial axes (2 or 3).
    """
    return data_consistency(MultiCoilMRI(maps, mask, ndim), kspace, x, lam=lam, maxiter=maxiter, tol=tol)
