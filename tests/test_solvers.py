"""First-order solvers (power iteration, FISTA, PDHG, ADMM) against independent references.

LASSO ``min 0.5||Ax - b||^2 + lam||x||_1``: reference by L-BFGS-B on the split ``x = p - q``,
``p, q >= 0`` (real) or by a long float64 ISTA run in NumPy (complex), both checked by the KKT
conditions. 1D TV denoising ``min 0.5||x - b||^2 + lam sum|x_{i+1} - x_i|``: reference from the
dual, a bound-constrained QP solved by L-BFGS-B, checked by the duality gap.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

from physics.errors import InvalidDataError
from recon.admm import admm
from recon.fista import SolverInfo, fista
from recon.pdhg import conjugate_prox, pdhg
from recon.power import max_eigenvalue
from tests.conftest import complex_normal

M, N, NTV, LAM_TV = 20, 30, 40, 0.5


def soft(v, t):
    """Soft threshold for real or complex ``v`` (the prox of ``t ||.||_1``)."""
    mag = jnp.abs(v)
    return v * jnp.maximum(1 - t / jnp.where(mag > 0, mag, 1), 0)


def diff(x):
    return x[1:] - x[:-1]


def diff_adjoint(p):
    return jnp.concatenate([-p[:1], p[:-1] - p[1:], p[-1:]])


def kkt_violation(A, b, lam, x):
    """Largest violation of the LASSO optimality conditions, relative to ``lam``."""
    g = A.conj().T @ (A @ x - b)
    on = np.abs(x) > 1e-6 * np.abs(x).max()
    sign = x[on] / np.abs(x[on])
    return max(np.abs(g[on] + lam * sign).max(initial=0), np.abs(g[~on]).max(initial=0) - lam) / lam


def lasso_reference_lbfgs(A, b, lam):
    n = A.shape[1]

    def fun(w):
        r = A @ (w[:n] - w[n:]) - b
        g = A.T @ r
        return 0.5 * r @ r + lam * w.sum(), np.concatenate([g + lam, lam - g])

    res = scipy.optimize.minimize(fun, np.zeros(2 * n), jac=True, method="L-BFGS-B",
                                  bounds=[(0, None)] * (2 * n),
                                  options=dict(ftol=1e-16, gtol=1e-13, maxiter=20000, maxcor=50))
    x = res.x[:n] - res.x[n:]
    assert kkt_violation(A, b, lam, x) < 1e-6
    return x


def lasso_reference_ista(A, b, lam, iterations=20000):
    L = np.linalg.eigvalsh(A.conj().T @ A).max()
    x = np.zeros(A.shape[1], A.dtype)
    for _ in range(iterations):
        v = x - A.conj().T @ (A @ x - b) / L
        x = v * np.maximum(1 - lam / L / np.maximum(np.abs(v), 1e-300), 0)
    assert kkt_violation(A, b, lam, x) < 1e-6
    return x


def tv_reference(b, lam):
    """1D TV denoising via its dual ``min_{|p| <= lam} 0.5||b - D^T p||^2``."""
    D = np.diff(np.eye(len(b)), axis=0)

    def fun(p):
        r = b - D.T @ p
        return 0.5 * r @ r, -D @ r

    res = scipy.optimize.minimize(fun, np.zeros(len(b) - 1), jac=True, method="L-BFGS-B",
                                  bounds=[(-lam, lam)] * (len(b) - 1),
                                  options=dict(ftol=1e-16, gtol=1e-14, maxiter=20000, maxcor=50))
    x = b - D.T @ res.x
    primal = 0.5 * np.sum((x - b) ** 2) + lam * np.abs(D @ x).sum()
    assert primal - (0.5 * b @ b - res.fun) < 1e-6 * primal  # duality gap
    return x


@pytest.fixture(scope="module")
def lasso():
    rng = np.random.default_rng(7)
    A = rng.standard_normal((M, N)) / np.sqrt(M)
    x_true = np.zeros(N)
    x_true[rng.choice(N, 4, replace=False)] = 2 * rng.standard_normal(4)
    bs = A @ x_true + 0.05 * rng.standard_normal((3, M))  # three data vectors for vmap
    lam = 0.1 * np.abs(A.T @ bs[0]).max()
    refs = np.stack([lasso_reference_lbfgs(A, b, lam) for b in bs])
    return A, bs, lam, refs


@pytest.fixture(scope="module")
def complex_lasso():
    rng = np.random.default_rng(8)
    A = complex_normal(rng, (M, N)).astype(np.complex128) / np.sqrt(2 * M)
    x_true = np.zeros(N, np.complex128)
    x_true[rng.choice(N, 4, replace=False)] = complex_normal(rng, 4)
    b = A @ x_true + 0.03 * complex_normal(rng, M)
    lam = 0.1 * np.abs(A.conj().T @ b).max()
    return A, b, lam, lasso_reference_ista(A, b, lam)


@pytest.fixture(scope="module")
def tv():
    rng = np.random.default_rng(9)
    b = np.repeat(rng.standard_normal(5), NTV // 5) + 0.2 * rng.standard_normal(NTV)
    return b, tv_reference(b, LAM_TV)


def lasso_solver(method, A, lam, *, maxiter, tol=0.0, objective=None, restart=False):
    """``b -> (x, info)`` solving the LASSO with ``method`` (jit/vmap-able in ``b``)."""
    A = jnp.asarray(A, jnp.complex64 if np.iscomplexobj(A) else jnp.float32)
    AH = A.conj().T
    L = float(np.linalg.eigvalsh(np.asarray(AH @ A)).max())
    x0 = jnp.zeros(A.shape[1], A.dtype)
    opts = dict(maxiter=maxiter, tol=tol, objective=objective)
    if method == "fista":
        return lambda b: fista(lambda x: AH @ (A @ x - b), lambda v, t, _: soft(v, lam * t), x0,
                               step=1 / L, restart=restart, **opts)
    if method == "pdhg":  # F(w) = 0.5||w - b||^2, prox_{sigma F*}(z) = (z - sigma b) / (1 + sigma)
        return lambda b: pdhg(lambda x: A @ x, lambda z: AH @ z, lambda z, s: (z - s * b) / (1 + s),
                              lambda v, t: soft(v, lam * t), x0, tau=1 / np.sqrt(L),
                              sigma=1 / np.sqrt(L), **opts)
    return lambda b: admm(lambda x: AH @ (A @ x), AH @ b, lambda x: x, lambda z: z,
                          lambda v, t: soft(v, lam * t), x0, rho=1.0, cg_iterations=N, **opts)


def lasso_objective(A, b, lam):
    return lambda x: 0.5 * jnp.sum(jnp.abs(A @ x - b) ** 2) + lam * jnp.sum(jnp.abs(x))


# -- power iteration -------------------------------------------------------------------------

def test_max_eigenvalue_matches_eigvalsh(rng):
    B = complex_normal(rng, (40, 25))
    H = B.conj().T @ B  # Wishart: HPD, spread spectrum
    ref = np.linalg.eigvalsh(H.astype(np.complex128)).max()
    normal = lambda v: jnp.asarray(H) @ v  # noqa: E731
    x0 = jnp.asarray(complex_normal(rng, 25))
    lam = jax.jit(lambda x: max_eigenvalue(normal, x, iterations=200))(x0)
    assert lam.dtype == jnp.float32 and lam.shape == ()
    assert float(lam) == pytest.approx(ref, rel=1e-5)
    short = float(max_eigenvalue(normal, x0, iterations=5))  # Rayleigh quotient: a lower bound
    assert 0.5 * ref < short <= ref * (1 + 1e-5)
    assert float(max_eigenvalue(normal, 3 * x0, iterations=200)) == pytest.approx(ref, rel=1e-5)


def test_max_eigenvalue_edge_cases():
    assert float(max_eigenvalue(lambda v: 2 * v, jnp.zeros(4))) == 0.0
    assert float(max_eigenvalue(lambda v: 2.5 * v, jnp.ones(4, jnp.complex64), iterations=1)) == 2.5
    with pytest.raises(InvalidDataError, match="iterations"):
        max_eigenvalue(lambda v: v, jnp.ones(3), iterations=0)


# -- LASSO: every solver, real and complex ---------------------------------------------------

@pytest.mark.parametrize("method", ["fista", "fista-restart", "pdhg", "admm"])
def test_lasso_real(lasso, method):
    A, bs, lam, refs = lasso
    obj = lasso_objective(jnp.asarray(A, jnp.float32), jnp.asarray(bs[0], jnp.float32), lam)
    solve = lasso_solver(method.split("-")[0], A, lam, maxiter=400, objective=obj,
                         restart=method.endswith("restart"))
    x, info = jax.jit(solve)(jnp.asarray(bs[0], jnp.float32))
    assert x.dtype == jnp.float32 and x.shape == (N,)
    np.testing.assert_allclose(x, refs[0], rtol=0, atol=1e-4 * np.abs(refs[0]).max())
    f_ref = float(obj(jnp.asarray(refs[0], jnp.float32)))
    hist = np.asarray(info.history)
    assert hist.shape == (400,) and np.isfinite(hist).all() and int(info.iterations) == 400
    assert hist[-1] == pytest.approx(f_ref, rel=1e-5) and hist[-1] <= hist[0]
    assert not bool(info.converged)  # tol = 0: never declared converged
    assert kkt_violation(A, bs[0], lam, np.asarray(x, np.float64)) < 1e-3


@pytest.mark.parametrize("method", ["fista", "pdhg", "admm"])
def test_lasso_complex(complex_lasso, method):
    A, b, lam, ref = complex_lasso
    x, info = lasso_solver(method, A, lam, maxiter=400)(jnp.asarray(b, jnp.complex64))
    assert x.dtype == jnp.complex64
    np.testing.assert_allclose(x, ref, rtol=0, atol=1e-4 * np.abs(ref).max())
    assert np.abs(np.imag(ref)).max() > 0.1 * np.abs(ref).max()  # genuinely complex solution
    hist = np.asarray(info.history)  # relative change, all iterations
    assert np.isfinite(hist).all() and hist[-1] < 1e-5


# -- TV denoising: PDHG with K = (I, D) as a tuple, ADMM with D = differences -----------------

def test_pdhg_tv_tuple_operator(tv):
    b, ref = tv
    bj = jnp.asarray(b, jnp.float32)
    L = float(max_eigenvalue(lambda x: x + diff_adjoint(diff(x)), jnp.asarray(np.cos(np.arange(NTV))),
                             iterations=200)) * 1.01
    assert 4.5 < L < 5.06  # ||I||^2 + ||D||^2 <= 1 + 4

    def prox_f_conj(z, sigma):  # F(w1, w2) = 0.5||w1 - b||^2 + lam||w2||_1
        return (z[0] - sigma * bj) / (1 + sigma), jnp.clip(z[1], -LAM_TV, LAM_TV)

    x, info = pdhg(lambda x: (x, diff(x)), lambda z: z[0] + diff_adjoint(z[1]), prox_f_conj, None,
                   jnp.zeros(NTV), tau=1 / np.sqrt(L), sigma=1 / np.sqrt(L), maxiter=400)
    np.testing.assert_allclose(x, ref, rtol=0, atol=1e-4 * np.abs(ref).max())
    assert int(info.iterations) == 400


@pytest.mark.parametrize("cg_iterations", [3, 10])
def test_admm_tv(tv, cg_iterations):
    b, ref = tv
    bj = jnp.asarray(b, jnp.float32)
    objective = lambda x: 0.5 * jnp.sum((x - bj) ** 2) + LAM_TV * jnp.sum(jnp.abs(diff(x)))  # noqa: E731
    x, info = admm(lambda x: x, bj, diff, diff_adjoint, lambda v, t: soft(v, LAM_TV * t),
                   jnp.zeros(NTV), rho=1.0, maxiter=300, cg_iterations=cg_iterations,
                   objective=objective)
    np.testing.assert_allclose(x, ref, rtol=0, atol=1e-4 * np.abs(ref).max())
    f_ref = 0.5 * np.sum((ref - b) ** 2) + LAM_TV * np.abs(np.diff(ref)).sum()
    assert float(info.history[-1]) == pytest.approx(f_ref, rel=1e-5)


def test_conjugate_prox_moreau():
    v = jnp.linspace(-3.0, 3.0, 13)
    b, sigma = jnp.cos(jnp.arange(13.0)), 0.7
    # F = lam||.||_1: F* is the indicator of the lam-box, its prox the clip.
    np.testing.assert_allclose(conjugate_prox(lambda u, t: soft(u, 1.5 * t))(v, sigma),
                               jnp.clip(v, -1.5, 1.5), atol=1e-6)
    # F = 0.5||. - b||^2: prox_{tF}(u) = (u + t b) / (1 + t); prox_{sigma F*}(z) = (z - sigma b) / (1 + sigma).
    tree = conjugate_prox(lambda u, t: {"w": (u["w"] + t * b) / (1 + t)})({"w": v}, sigma)
    np.testing.assert_allclose(tree["w"], (v - sigma * b) / (1 + sigma), atol=1e-6)


# -- iterate by iterate against NumPy transcriptions of the papers' recurrences (float64) ------

@pytest.mark.parametrize("restart", [False, True])
def test_fista_iterates_match_numpy(lasso, restart):
    A, bs, lam, _ = lasso
    b, L, its = bs[0], np.linalg.eigvalsh(A.T @ A).max(), 30
    x = y = np.zeros(N)
    t, restarts = 1.0, 0
    for _ in range(its):  # Beck & Teboulle (2009) FISTA; O'Donoghue & Candes (2015) restart
        v = y - A.T @ (A @ y - b) / L
        x_new = np.sign(v) * np.maximum(np.abs(v) - lam / L, 0)
        t_new = (1 + np.sqrt(1 + 4 * t * t)) / 2
        y_new = x_new + (t - 1) / t_new * (x_new - x)
        if restart and (y - x_new) @ (x_new - x) > 0:
            t_new, y_new, restarts = 1.0, x_new, restarts + 1
        x, y, t = x_new, y_new, t_new
    assert restarts >= 2 or not restart
    with jax.enable_x64(True):
        got, info = fista(lambda x: A.T @ (A @ x - b), lambda v, t, _: soft(v, lam * t),
                          jnp.zeros(N), step=1 / L, maxiter=its, restart=restart)
    np.testing.assert_allclose(got, x, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("theta", [1.0, 0.5])
def test_pdhg_iterates_match_numpy(tv, theta):
    b, _ = tv
    D = np.diff(np.eye(NTV), axis=0)
    tau, sigma, its = 0.3, 0.6, 12
    x = xbar = np.zeros(NTV)
    z1, z2 = np.zeros(NTV), np.zeros(NTV - 1)
    for _ in range(its):  # Chambolle & Pock (2011), K = (I, D), G = 0
        z1 = (z1 + sigma * xbar - sigma * b) / (1 + sigma)
        z2 = np.clip(z2 + sigma * D @ xbar, -LAM_TV, LAM_TV)
        x_new = x - tau * (z1 + D.T @ z2)
        x, xbar = x_new, x_new + theta * (x_new - x)
    with jax.enable_x64(True):
        got, _ = pdhg(lambda x: (x, diff(x)), lambda z: z[0] + diff_adjoint(z[1]),
                      lambda z, s: ((z[0] - s * b) / (1 + s), jnp.clip(z[1], -LAM_TV, LAM_TV)), None,
                      jnp.zeros(NTV), tau=tau, sigma=sigma, theta=theta, maxiter=its)
    np.testing.assert_allclose(got, x, rtol=1e-9, atol=1e-12)


def test_admm_iterates_match_numpy(tv):
    b, _ = tv
    D = np.diff(np.eye(NTV), axis=0)
    rho, its = 2.0, 8
    x = np.zeros(NTV)
    z, u = D @ x, np.zeros(NTV - 1)
    for _ in range(its):  # Boyd et al. (2011), scaled form, exact x-update
        x = np.linalg.solve(np.eye(NTV) + rho * D.T @ D, b + rho * D.T @ (z - u))
        v = D @ x + u
        z = np.sign(v) * np.maximum(np.abs(v) - LAM_TV / rho, 0)
        u = u + D @ x - z
    with jax.enable_x64(True):
        got, _ = admm(lambda x: x, jnp.asarray(b), diff, diff_adjoint, lambda v, t: soft(v, LAM_TV * t),
                      jnp.zeros(NTV), rho=rho, maxiter=its, cg_iterations=NTV)
    np.testing.assert_allclose(got, x, rtol=1e-5, atol=1e-6)


# -- FISTA's key plumbing ---------------------------------------------------------------------

def test_fista_passes_distinct_keys():
    x0 = jnp.zeros(8)

    def draw(v, t, key):  # ignores v: every iterate is a fresh draw from the iteration's key
        return jax.random.normal(key, v.shape)

    run = lambda key: fista(lambda x: 0 * x, draw, x0, step=1.0, maxiter=6, key=key)  # noqa: E731
    x1, info = jax.jit(run)(jax.random.key(0))
    x2, _ = run(jax.random.key(0))
    x3, _ = run(jax.random.key(1))
    np.testing.assert_array_equal(x1, x2)  # deterministic for a given key
    assert not np.allclose(x1, x3)
    assert (np.asarray(info.history) > 0.1).all()  # each iteration drew a different vector

    def no_key(v, t, key):
        assert key is None
        return soft(v, t)

    x, _ = fista(lambda x: x - 1.0, no_key, x0, step=0.5, maxiter=3)
    assert np.isfinite(np.asarray(x)).all()


# -- jit, vmap, early stopping, history ------------------------------------------------------

@pytest.mark.parametrize("method", ["fista", "pdhg", "admm"])
def test_vmap_and_early_stop(lasso, method):
    A, bs, lam, refs = lasso
    tol, maxiter = 1e-6, 1000
    solve = jax.jit(jax.vmap(lasso_solver(method, A, lam, maxiter=maxiter, tol=tol)))
    xs, info = solve(jnp.asarray(bs, jnp.float32))
    assert isinstance(info, SolverInfo) and info.history.shape == (3, maxiter)
    its = np.asarray(info.iterations)
    assert its.shape == (3,) and (its < maxiter).all() and np.asarray(info.converged).all()
    np.testing.assert_allclose(xs, refs, rtol=0, atol=1e-4 * np.abs(refs).max())
    single = lasso_solver(method, A, lam, maxiter=maxiter, tol=tol)
    for i in range(3):
        hist = np.asarray(info.history[i])
        assert np.isfinite(hist[:its[i]]).all() and np.isnan(hist[its[i]:]).all()
        assert hist[its[i] - 1] <= tol < hist[its[i] - 2]
        x, one = single(jnp.asarray(bs[i], jnp.float32))  # vmap keeps each problem's own stop
        assert int(one.iterations) == its[i]
        np.testing.assert_allclose(xs[i], x, atol=1e-6 * np.abs(refs).max())


def test_bad_options_are_refused():
    grad, prox = (lambda x: x), (lambda v, t, k: v)
    with pytest.raises(InvalidDataError, match="maxiter"):
        fista(grad, prox, jnp.zeros(3), step=1.0, maxiter=0)
    with pytest.raises(InvalidDataError, match="step"):
        fista(grad, prox, jnp.zeros(3), step=-1.0)
    with pytest.raises(InvalidDataError, match="tol"):
        pdhg(lambda x: x, lambda z: z, lambda z, s: z, None, jnp.zeros(3), tau=1.0, sigma=1.0, tol=-1.0)
    with pytest.raises(InvalidDataError, match="rho"):
        admm(lambda x: x, jnp.zeros(3), lambda x: x, lambda z: z, lambda v, t: v, jnp.zeros(3), rho=0.0)
    with pytest.raises(InvalidDataError, match="cg_iterations"):
        admm(lambda x: x, jnp.zeros(3), lambda x: x, lambda z: z, lambda v, t: v, jnp.zeros(3), rho=1.0,
             cg_iterations=0)
