"""Plug-and-play solvers and data consistency (recon.pnp).

PnP with the exact prox of an L2 term as the "denoiser" must reach the Tikhonov solution of
recon.cg.cgls; with soft thresholding, PnP-ADMM and PnP-FISTA must agree on the LASSO minimiser
(checked by its optimality conditions). Hard data consistency is checked against k-space
replacement by NumPy FFTs (one coil) and against a dense NumPy pseudo-inverse projection (two
coils, a null space); soft data consistency against a dense solve and for monotonicity in lambda.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from physics.errors import InvalidDataError
from physics.mri import MultiCoilMRI
from physics.sampling import equispaced_mask
from physics.simulation import simulate_multicoil
from recon.cg import cgls
from recon.pnp import data_consistency, noise_weight, pnp_admm, pnp_fista, replace_measured
from tests.conftest import complex_normal

N, COILS, MU = 16, 4, 0.05


@pytest.fixture(scope="module")
def problem():
    sim = simulate_multicoil(N, COILS, snr_db=25.0, seed=3)
    mask = equispaced_mask(N, 2.0, 0.25, seed=0).astype(np.float32)
    A = MultiCoilMRI(jnp.asarray(sim.maps[0]), jnp.asarray(mask))
    return A, jnp.asarray(mask * sim.kspace[0]), sim


def dense(A) -> np.ndarray:
    """The matrix of ``A`` (complex128, ``(prod out_shape, prod in_shape)``) column by column."""
    n = int(np.prod(A.in_shape))
    basis = jnp.eye(n, dtype=jnp.complex64).reshape(n, *A.in_shape)
    return np.asarray(jax.vmap(A)(basis)).reshape(n, -1).T.astype(np.complex128)


def rel(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


def soft(v, t):
    mag = jnp.abs(v)
    return v * jnp.maximum(1 - t / jnp.where(mag > 0, mag, 1), 0)


def test_pnp_admm_with_l2_prox_is_tikhonov(problem):
    A, y, _ = problem
    rho = 0.5
    x, info = pnp_admm(A, y, lambda v: v / (1 + MU / rho), rho=rho, iterations=80, cg_iterations=20)
    ref, _ = cgls(A, y, lam=MU, maxiter=200, tol=1e-7)
    assert int(info.iterations) == 80
    assert x.shape == A.in_shape and x.dtype == jnp.complex64
    assert rel(x, ref) < 1e-3


def test_pnp_fista_with_l2_prox_is_tikhonov(problem):
    A, y, _ = problem
    step = 0.9
    x, _ = pnp_fista(A, y, lambda v: v / (1 + step * MU), iterations=200, step=step)
    ref, _ = cgls(A, y, lam=MU, maxiter=200, tol=1e-7)
    assert rel(x, ref) < 1e-3


def test_pnp_with_identity_denoiser_is_least_squares(rng):
    """D = identity leaves the plain solvers: the least-squares solution of a well-conditioned
    problem (random coil maps, eigenvalues of A^H A in [0.085, 0.93])."""
    maps = complex_normal(rng, (COILS, N, N))
    maps /= np.sqrt(np.sum(np.abs(maps) ** 2, axis=0))
    mask = jnp.asarray(equispaced_mask(N, 2.0, 0.25, seed=0).astype(np.float32))
    A = MultiCoilMRI(jnp.asarray(maps), mask)
    y = mask * jnp.asarray(complex_normal(rng, (COILS, N, N)))
    ref, _ = cgls(A, y, maxiter=300, tol=1e-8)
    x_admm, _ = pnp_admm(A, y, lambda v: v, rho=0.05, iterations=60, cg_iterations=20)
    x_fista, _ = pnp_fista(A, y, lambda v: v, iterations=300)
    assert rel(x_admm, ref) < 1e-3
    assert rel(x_fista, ref) < 1e-3


def test_pnp_soft_threshold_admm_and_fista_reach_the_lasso_minimiser(problem):
    A, y, _ = problem
    lam, rho, step = 0.02, 0.5, 0.9
    x_a, _ = pnp_admm(A, y, lambda v: soft(v, lam / rho), rho=rho, iterations=300, cg_iterations=10)
    x_f, _ = pnp_fista(A, y, lambda v: soft(v, step * lam), iterations=400, step=step)
    assert rel(x_a, x_f) < 5e-3
    # optimality of 0.5 ||A x - y||^2 + lam ||x||_1: g = A^H (A x - y) is -lam x/|x| on the support
    g = np.asarray(A.normal(x_f) - A.adjoint(y))
    x = np.asarray(x_f)
    on = np.abs(x) > 1e-3 * np.abs(x).max()
    assert on.any() and (~on).any()
    assert np.abs(g[on] + lam * x[on] / np.abs(x[on])).max() < 0.05 * lam
    assert np.abs(g[~on]).max() < 1.05 * lam


def test_pnp_under_jit_matches_eager(problem):
    A, y, _ = problem
    denoiser = lambda v: soft(v, 0.01)  # noqa: E731
    eager, _ = pnp_fista(A, y, denoiser, iterations=10, step=0.9)
    compiled, _ = jax.jit(lambda A, y: pnp_fista(A, y, denoiser, iterations=10, step=0.9))(A, y)
    np.testing.assert_allclose(np.asarray(compiled), np.asarray(eager), rtol=1e-5, atol=1e-6)


def test_pnp_real_denoiser_output_keeps_the_complex_iterate(problem):
    """A denoiser returning a real image (e.g. magnitude network) is cast to the image dtype."""
    A, y, _ = problem
    x, _ = pnp_admm(A, y, lambda v: jnp.abs(v), rho=0.5, iterations=5, cg_iterations=5)
    assert x.dtype == jnp.complex64 and np.isfinite(np.asarray(x)).all()


def numpy_fftc(x):
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


def numpy_ifftc(k):
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


def test_hard_consistency_single_coil_is_kspace_replacement():
    rng = np.random.default_rng(0)
    x_e = complex_normal(rng, (N, N))
    mask = (rng.uniform(size=(N, N)) < 0.4).astype(np.float32)
    y = (mask * complex_normal(rng, (N, N)))[None]
    maps = np.ones((1, N, N), np.complex64)
    x, _ = replace_measured(jnp.asarray(x_e), jnp.asarray(y), jnp.asarray(maps), jnp.asarray(mask))
    expected = numpy_ifftc((1 - mask) * numpy_fftc(x_e) + y[0])
    assert rel(x, expected) < 1e-5
    k = numpy_fftc(np.asarray(x))
    np.testing.assert_allclose(k[mask == 1], y[0][mask == 1], atol=1e-4)


def test_hard_consistency_multicoil_is_the_pseudo_inverse_projection(rng):
    """Consistent (noise-free) data, 2 random coils at 3x (fewer samples than unknowns, a null
    space): the residual vanishes and x = x_e + A^+ (y - A x_e), x_e's null-space part kept."""
    n = 12
    maps = complex_normal(rng, (2, n, n))
    maps /= np.sqrt(np.sum(np.abs(maps) ** 2, axis=0))
    mask = jnp.asarray(equispaced_mask(n, 3.0, 0.17, seed=1).astype(np.float32))
    A = MultiCoilMRI(jnp.asarray(maps), mask)
    x_true = complex_normal(rng, (n, n))
    y = A(jnp.asarray(x_true))
    x_e = jnp.asarray(x_true + 0.3 * complex_normal(rng, (n, n)))
    x, info = data_consistency(A, y, x_e, maxiter=100, tol=1e-6)
    assert bool(info.converged)
    assert rel(A(x), y) < 1e-5 < 1e-2 < rel(A(x_e), y)
    M = dense(A)
    e = np.asarray(x_e).ravel()
    ref = e + np.linalg.pinv(M, rcond=1e-6) @ (np.asarray(y).ravel() - M @ e)
    assert rel(np.asarray(x).ravel(), ref) < 1e-5
    assert rel(x_true.ravel(), ref) > 0.1  # x_e's null-space part is kept, not x_true's


def test_soft_consistency_matches_dense_solve_and_is_monotone_in_lambda(problem):
    A, y, sim = problem
    x_e = jnp.asarray(np.abs(sim.image[0]).astype(np.complex64))  # a "network output" off the data
    residuals, distances = [], []
    for lam in (0.0, 0.01, 0.1, 1.0, 10.0):
        x, _ = data_consistency(A, y, x_e, lam=lam, maxiter=200, tol=1e-7)
        residuals.append(float(jnp.linalg.norm(A(x) - y)))
        distances.append(float(jnp.linalg.norm(x - x_e)))
    assert np.all(np.diff(residuals) > 0) and np.all(np.diff(distances) < 0)
    assert residuals[-1] < float(jnp.linalg.norm(A(x_e) - y))
    M, lam = dense(A), 0.1
    rhs = M.conj().T @ np.asarray(y).ravel() + lam * np.asarray(x_e).ravel()
    ref = np.linalg.solve(M.conj().T @ M + lam * np.eye(M.shape[1]), rhs)
    x, _ = data_consistency(A, y, x_e, lam=lam, maxiter=200, tol=1e-7)
    assert rel(np.asarray(x).ravel(), ref) < 1e-4


def test_data_consistency_does_not_modify_inputs_and_refuses_negative_lambda(problem):
    A, y, sim = problem
    x_e = np.asarray(sim.image[0]).copy()
    before = x_e.copy()
    data_consistency(A, y, x_e, lam=0.1, maxiter=5)
    np.testing.assert_array_equal(x_e, before)
    with pytest.raises(InvalidDataError, match="lam"):
        data_consistency(A, y, x_e, lam=-1.0)


def test_noise_weight_is_the_ratio_of_the_noise_and_prior_variances():
    x = jnp.full((4, 4), 2.0 + 0j, jnp.complex64)  # RMS 2: tau = 0.1 * 2
    assert float(noise_weight(0.05, x, 0.1)) == pytest.approx(0.05 ** 2 / 0.2 ** 2, rel=1e-6)
    assert float(noise_weight(jnp.nan, x, 0.1)) == 0.0  # unknown noise: exact consistency
    assert float(noise_weight(0.0, x, 0.1)) == 0.0
    with pytest.raises(InvalidDataError, match="relative_error"):
        noise_weight(0.05, x, 0.0)
