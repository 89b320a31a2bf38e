import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse.linalg

from recon.cg import cg
from tests.conftest import complex_normal


def hpd(rng, n, cond=50.0, complex_=True):
    q, _ = np.linalg.qr(complex_normal(rng, (n, n)) if complex_ else rng.standard_normal((n, n)))
    return (q * np.geomspace(1.0, 1.0 / cond, n)) @ q.conj().T


def test_converges_to_dense_solution(rng):
    H = hpd(rng, 30)
    b = complex_normal(rng, 30)
    x, info = jax.jit(lambda b: cg(lambda v: jnp.asarray(H, jnp.complex64) @ v, b, maxiter=200, tol=1e-6))(b)
    np.testing.assert_allclose(x, np.linalg.solve(H, b), rtol=0, atol=1e-4 * np.abs(np.linalg.solve(H, b)).max())
    assert bool(info.converged) and info.residual <= 1e-6
    assert int(info.iterations) <= 60
    hist = np.asarray(info.history)
    assert hist[0] == pytest.approx(1.0) and np.isnan(hist[int(info.iterations) + 1:]).all()
    assert hist[int(info.iterations)] == pytest.approx(float(info.residual), rel=1e-5)


@pytest.mark.parametrize("maxiter", [1, 3, 7])
def test_iterates_match_scipy(rng, maxiter):
    H = hpd(rng, 12, complex_=False)
    b = rng.standard_normal(12)
    x_ref, _ = scipy.sparse.linalg.cg(H, b, rtol=1e-30, maxiter=maxiter)
    with jax.enable_x64(True):
        x, info = cg(lambda v: jnp.asarray(H) @ v, jnp.asarray(b), maxiter=maxiter, tol=0.0)
    np.testing.assert_allclose(x, x_ref, rtol=1e-4, atol=1e-5)
    assert int(info.iterations) == maxiter


def test_damping_is_tikhonov(rng):
    H = hpd(rng, 16)
    b = complex_normal(rng, 16)
    x, _ = cg(lambda v: jnp.asarray(H, jnp.complex64) @ v, b, maxiter=100, tol=1e-7, damp=0.3)
    np.testing.assert_allclose(x, np.linalg.solve(H + 0.3 * np.eye(16), b), atol=1e-4)


def test_pytree_and_vmap(rng):
    H = jnp.asarray(hpd(rng, 8), jnp.complex64)
    bs = jnp.asarray(complex_normal(rng, (4, 8)))
    xs, info = jax.vmap(lambda b: cg(lambda v: H @ v, b, maxiter=50))(bs)
    np.testing.assert_allclose(xs[2], np.linalg.solve(np.asarray(H), np.asarray(bs[2])), atol=1e-4)
    assert info.iterations.shape == (4,)
    tree = {"a": bs[0], "b": bs[1]}
    xt, _ = cg(lambda t: {"a": H @ t["a"], "b": 2.0 * t["b"]}, tree, maxiter=50)
    np.testing.assert_allclose(xt["b"], bs[1] / 2, atol=1e-5)


def test_zero_rhs_returns_zero():
    x, info = cg(lambda v: 2 * v, jnp.zeros(5, jnp.complex64))
    assert np.all(np.asarray(x) == 0) and bool(info.converged) and int(info.iterations) == 0


def test_gradients_by_implicit_differentiation(rng):
    """d/db ||H^-1 b||^2 and d/dD of a diagonal system, against finite differences / closed form."""
    H = hpd(rng, 10, cond=10.0)
    Hj = jnp.asarray(H, jnp.complex64)
    b = complex_normal(rng, 10)
    g = jax.grad(lambda v: jnp.sum(jnp.abs(cg(lambda u: Hj @ u, v, maxiter=100, tol=1e-7)[0]) ** 2))(jnp.asarray(b))
    d = complex_normal(rng, 10)
    f = lambda v: np.sum(np.abs(np.linalg.solve(H, v)) ** 2)  # noqa: E731
    fd = (f(b + 1e-3 * d) - f(b - 1e-3 * d)) / 2e-3
    assert np.real(np.sum(np.asarray(g) * d)) == pytest.approx(fd, rel=1e-3)
    D = jnp.asarray(rng.uniform(1, 2, 10), jnp.float32)
    gD = jax.grad(lambda D: jnp.sum(jnp.abs(cg(lambda u: D * u, jnp.asarray(b), maxiter=50, tol=1e-7)[0]) ** 2))(D)
    np.testing.assert_allclose(gD, -2 * np.abs(b) ** 2 / np.asarray(D) ** 3, rtol=1e-3)
