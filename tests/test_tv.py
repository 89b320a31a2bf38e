"""Total variation (recon/tv.py): finite differences vs NumPy and SigPy, norms, dual projection,
TV prox vs analytic solutions, SciPy L-BFGS and scikit-image's Chambolle, jit/vmap/grad."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
import sigpy
from skimage.restoration import denoise_tv_chambolle

from physics.errors import InvalidDataError, ShapeError
from physics.linop import adjoint_error
from recon.tv import (FiniteDifference, finite_difference, project_dual, total_variation, tv_norm,
                      tv_prox)
from tests.conftest import complex_normal

CONFIGS = {  # name: (shape, axes, weights, dtype); shapes shared to share jax.random compiles
    "2d": ((12, 16), None, None, "complex64"),
    "2d-real": ((12, 16), None, None, "float32"),
    "3d": ((4, 6, 8), None, None, "complex64"),
    "time": ((4, 6, 8), (-3,), None, "complex64"),
    "weighted": ((4, 6, 8), (-3, -2, -1), (3.0, 1.0, 0.5), "complex64"),
    "odd": ((7, 9), None, None, "complex64"),
    "one-axis": ((6, 8), (1,), None, "complex64"),
}


# jitted once per shape: far fewer compilations than op-by-op eager dispatch
TV = jax.jit(total_variation, static_argnames=("isotropic",))
TVN = jax.jit(tv_norm, static_argnames=("isotropic", "ndim"))


def make(name) -> FiniteDifference:
    shape, axes, weights, dtype = CONFIGS[name]
    return finite_difference(shape, axes, weights, dtype=dtype)


# -- the operator ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["2d", "2d-real", "3d", "time", "weighted"])
def test_adjoint(name):
    D = make(name)
    for seed in range(3):
        assert adjoint_error(D, jax.random.key(seed)) < 1e-6


@pytest.mark.parametrize("name", list(CONFIGS))
def test_forward_and_normal_match_numpy(name, rng):
    D = make(name)
    shape, _, weights, _ = CONFIGS[name]
    x = complex_normal(rng, (2, *shape))  # one batch axis
    w = weights or (1.0,) * len(D.axes)
    ref = np.stack([wk * (np.roll(x, -1, axis=a) - x) for wk, a in zip(w, D.axes)], axis=1)
    got = np.asarray(D(jnp.asarray(x)))
    assert got.shape == (2, len(D.axes), *shape)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    # adjoint = negative divergence: sum_k w_k (y_k[i-1] - y_k[i])
    div = sum(wk * (np.roll(ref[:, k], 1, axis=a) - ref[:, k]) for k, (wk, a) in enumerate(zip(w, D.axes)))
    np.testing.assert_allclose(np.asarray(D.adjoint(jnp.asarray(ref))), div, atol=1e-4)
    np.testing.assert_allclose(np.asarray(D.normal(jnp.asarray(x))), div, atol=1e-4)


@pytest.mark.parametrize("shape,axes", [((6, 8), (0, 1)), ((5, 6, 7), (0, 1, 2)), ((4, 6, 8), (0,))])
def test_matches_sigpy_up_to_a_roll(shape, axes, rng):
    """SigPy's FiniteDifference is the periodic backward difference x[i] - x[i-1]; ours is the
    forward one, i.e. SigPy's output rolled by -1 along each axis. D^H D and the anisotropic TV
    agree exactly; the isotropic TV of SigPy's gradient is ours of the image flipped along axes."""
    x = complex_normal(rng, shape)
    G = sigpy.linop.FiniteDifference(shape, axes=list(axes))
    D = finite_difference(shape, axes)
    ref = G(x)
    ours = np.asarray(D(jnp.asarray(x)))
    for k, a in enumerate(axes):
        np.testing.assert_allclose(ours[k], np.roll(ref[k], -1, axis=a), atol=1e-5)
    np.testing.assert_allclose(np.asarray(D.normal(jnp.asarray(x))), (G.H * G)(x), atol=1e-4)
    np.testing.assert_allclose(np.asarray(D.adjoint(jnp.asarray(ours))), G.H(ref), atol=1e-4)
    # anisotropic TV is the same; isotropic TV pairs the differences at another pixel: SigPy's
    # backward differences of x are minus our forward differences of the flipped image
    nd = len(shape)
    aniso = np.sum(np.abs(ref))
    np.testing.assert_allclose(float(TVN(D(jnp.asarray(x)), isotropic=False, ndim=nd)), aniso, rtol=1e-5)
    iso = np.sum(np.sqrt(np.sum(np.abs(ref) ** 2, axis=0)))
    flipped = jnp.asarray(np.flip(x, axis=axes).copy())
    np.testing.assert_allclose(float(TVN(D(flipped), ndim=nd)), iso, rtol=1e-5)


def _power_iteration(D, rng, iterations):
    v = jnp.asarray(rng.standard_normal(D.in_shape), jnp.float32)

    def body(_, v):
        w = D.normal(v)
        return w / jnp.linalg.norm(w)

    v = jax.lax.fori_loop(0, iterations, body, v)
    return float(jnp.vdot(v, D.normal(v)).real / jnp.vdot(v, v).real)


@pytest.mark.parametrize("shape,weights", [((8, 10), None), ((6, 4), (1.0, 0.5)),
                                           ((4, 6, 4), (2.0, 1.0, 1.0))])
def test_norm_bound_power_iteration_even_sizes(shape, weights, rng):
    D = finite_difference(shape, weights=weights)
    bound = 4 * sum(w * w for w in (weights or (1.0,) * len(shape)))
    lam = _power_iteration(D, rng, 1000)
    assert lam <= bound * (1 + 1e-5)
    assert lam == pytest.approx(bound, rel=1e-3)
    assert D.norm_squared == pytest.approx(bound, rel=1e-12)


@pytest.mark.parametrize("shape,axes,weights", [((5, 7), None, None), ((6, 5), None, (1.0, 2.0)),
                                                ((3, 4, 5), None, None), ((4, 3, 5), (0,), None),
                                                ((1, 6), None, None)])
def test_norm_squared_is_exact(shape, axes, weights):
    """Largest eigenvalue of the dense D^H D equals norm_squared (< 4 sum w^2 for odd sizes)."""
    D = finite_difference(shape, axes, weights, dtype="float32")
    n = int(np.prod(shape))
    M = np.asarray(jax.vmap(lambda e: D.normal(e.reshape(shape)).ravel())(jnp.eye(n)), np.float64)
    top = np.linalg.eigvalsh(M)[-1]
    assert D.norm_squared == pytest.approx(top, rel=1e-5, abs=1e-5)
    assert D.norm_squared <= 4 * sum(w * w for w in (weights or (1.0,) * len(D.axes))) + 1e-12


# -- TV norms ----------------------------------------------------------------------------------

def test_tv_of_constant_is_zero_and_batch_axes_are_kept():
    D = finite_difference((6, 8))
    x = jnp.full((3, 6, 8), 2.0 - 1.5j, jnp.complex64)
    for iso in (True, False):
        tv = TV(x, D, isotropic=iso)
        assert tv.shape == (3,) and tv.dtype == jnp.float32
        np.testing.assert_array_equal(np.asarray(tv), 0.0)


@pytest.mark.parametrize("axis", [-2, -1])
def test_tv_of_a_step_edge(axis):
    """A step of height h across axis `axis` (cut length L = the other axis): periodic wrap makes
    two jumps per line, so TV = 2 |h| L, isotropic = anisotropic; a time weight scales it."""
    ny, nx, h = 6, 10, 3.0 - 4.0j  # |h| = 5
    x = np.zeros((ny, nx), np.complex64)
    if axis == -1:
        x[:, 3:7] = h
    else:
        x[2:5, :] = h
    L = ny if axis == -1 else nx
    D = finite_difference((ny, nx))
    for iso in (True, False):
        assert float(TV(jnp.asarray(x), D, isotropic=iso)) == pytest.approx(2 * 5 * L, rel=1e-6)
    Dw = finite_difference((ny, nx), weights=(0.5, 0.25))
    w = 0.25 if axis == -1 else 0.5
    assert float(TV(jnp.asarray(x), Dw)) == pytest.approx(w * 2 * 5 * L, rel=1e-6)


def test_tv_of_a_moving_edge_in_time():
    """A dynamic series (t, ny, nx) whose edge moves one column per frame: the time-only TV is
    the number of pixels that change between consecutive frames (wrap-around included)."""
    t, ny, nx = 4, 5, 8
    x = np.zeros((t, ny, nx), np.float32)
    for k in range(t):
        x[k, :, : 2 + k] = 1.0
    D = finite_difference((t, ny, nx), axes=(-3,))
    # frames k -> k+1 differ in one column (ny pixels); frame t-1 -> 0 differs in t-1 columns
    assert float(TV(jnp.asarray(x), D)) == pytest.approx(ny * (t - 1) + ny * (t - 1))


def test_isotropic_vs_anisotropic_and_formula(rng):
    for shape, c in (((9, 11), np.sqrt(2)), ((4, 5, 6), np.sqrt(3))):
        D = finite_difference(shape)
        x = jnp.asarray(complex_normal(rng, (3, *shape)))
        g = np.asarray(D(x))
        iso = np.asarray(TVN(jnp.asarray(g), ndim=len(shape)))
        aniso = np.asarray(TVN(jnp.asarray(g), isotropic=False, ndim=len(shape)))
        pixels = tuple(range(1, len(shape) + 1))
        np.testing.assert_allclose(iso, np.sqrt((np.abs(g) ** 2).sum(1)).sum(axis=pixels), rtol=1e-5)
        np.testing.assert_allclose(aniso, np.abs(g).sum(axis=(1, *(a + 1 for a in pixels))), rtol=1e-5)
        assert np.all(iso <= aniso * (1 + 1e-6)) and np.all(aniso <= c * iso * (1 + 1e-6))


def test_grad_of_tv_is_finite_and_correct(rng):
    D = finite_difference((6, 8))
    tv = lambda x: TV(x, D)  # noqa: E731
    const = jnp.ones((6, 8), jnp.complex64)
    grad0 = jax.grad(tv)(const)
    assert np.all(np.isfinite(np.asarray(grad0)))
    x = jnp.asarray(complex_normal(rng, (6, 8)))
    v = jnp.asarray(complex_normal(rng, (6, 8)))
    g = jax.grad(tv)(x)  # JAX convention: d tv(x + e v)/de = Re <conj(g), v>
    eps = 1e-3
    fd = (float(tv(x + eps * v)) - float(tv(x - eps * v))) / (2 * eps)
    assert float(jnp.real(jnp.sum(g * v))) == pytest.approx(fd, rel=1e-2)
    grad_aniso = jax.grad(lambda x: TV(x, D, isotropic=False))(const)
    assert np.all(np.isfinite(np.asarray(grad_aniso)))


# -- dual projection ---------------------------------------------------------------------------

@pytest.mark.parametrize("isotropic", [True, False])
def test_project_dual(isotropic, rng):
    radius = 0.7
    p = jnp.asarray(3 * complex_normal(rng, (2, 2, 6, 8)))  # (batch, n_axes, ny, nx)
    q = project_dual(p, radius, isotropic=isotropic)
    mag = np.sqrt((np.abs(np.asarray(q)) ** 2).sum(1)) if isotropic else np.abs(np.asarray(q))
    assert mag.max() <= radius * (1 + 1e-6)
    np.testing.assert_allclose(np.asarray(project_dual(q, radius, isotropic=isotropic)), q, atol=1e-6)
    inside = p / (4 * np.max(np.abs(np.asarray(p))))  # entries <= 0.25, pixel norms <= 0.36 < radius
    np.testing.assert_array_equal(np.asarray(project_dual(inside, radius, isotropic=isotropic)), inside)
    # phase (and, isotropic, direction across the gradient axis) is kept: q = s * p with 0 < s <= 1
    s = np.asarray(q) / np.asarray(p)
    np.testing.assert_allclose(s.imag, 0, atol=1e-6)
    assert np.all((s.real > 0) & (s.real <= 1 + 1e-6))
    if isotropic:
        np.testing.assert_allclose(s[:, 0], s[:, 1], rtol=1e-5)


@pytest.mark.parametrize("isotropic", [True, False])
def test_moreau_identity(isotropic, rng):
    """prox_{t f}(v) + t prox_{f*/t}(v / t) = v for f = radius ||.||_{1(,2)}; prox_{f*/t} is the
    projection onto the radius ball, prox_{t f} the (group) soft threshold, written here in NumPy."""
    radius, t = 0.8, 1.7
    v = 2 * complex_normal(rng, (2, 6, 8))
    mag = np.sqrt((np.abs(v) ** 2).sum(0, keepdims=True)) if isotropic else np.abs(v)
    soft = v * np.maximum(0, 1 - t * radius / mag)
    proj = np.asarray(project_dual(jnp.asarray(v / t), radius, isotropic=isotropic))
    np.testing.assert_allclose(soft + t * proj, v, atol=1e-5)


# -- TV prox -----------------------------------------------------------------------------------

def _objective(u, x, lam, D, isotropic):
    u = np.asarray(u, np.complex128)
    g = np.stack([np.roll(u, -1, axis=a) - u for a in D.axes])
    tv = np.sqrt((np.abs(g) ** 2).sum(0)).sum() if isotropic else np.abs(g).sum()
    return 0.5 * np.sum(np.abs(u - x) ** 2) + lam * tv


@pytest.mark.parametrize("isotropic", [True, False])
def test_tv_prox_is_a_minimiser(isotropic, rng):
    D = finite_difference((8, 10))
    x = complex_normal(rng, (8, 10))
    lam = 0.4
    u = np.asarray(tv_prox(jnp.asarray(x), lam, D, isotropic=isotropic, iterations=300))
    f = _objective(u, x, lam, D, isotropic)
    assert f < _objective(x, x, lam, D, isotropic) - 1.0
    # strong convexity: F(u* + d) >= F(u*) + ||d||^2 / 2 for the exact minimiser u*
    for scale in (1e-1, 1e-2):
        for _ in range(10):
            d = scale * complex_normal(rng, (8, 10))
            assert _objective(u + d, x, lam, D, isotropic) > f + 0.4 * np.sum(np.abs(d) ** 2)


def test_tv_prox_of_a_periodic_step_is_analytic():
    """A step 0 | h with widths a | b along x (two jumps per row): the minimiser stays piecewise
    constant with levels 2 lam / a and h - 2 lam / b (derivative of a u1^2/2 + b (u2-h)^2/2 +
    2 lam (u2 - u1) per row), for isotropic and anisotropic TV."""
    a, b, h, lam = 4, 6, 2.0, 0.6
    x = np.zeros((5, a + b), np.float32)
    x[:, a:] = h
    ref = np.where(x > 0, h - 2 * lam / b, 2 * lam / a)
    D = finite_difference(x.shape)
    for iso in (True, False):
        np.testing.assert_allclose(np.asarray(tv_prox(jnp.asarray(x), lam, D, isotropic=iso, iterations=200)),
                                   ref, atol=1e-5)


def test_tv_prox_limits(rng):
    D = finite_difference((6, 8))
    x = jnp.asarray(complex_normal(rng, (6, 8)))
    np.testing.assert_allclose(np.asarray(tv_prox(x, 0.0, D)), x, atol=1e-6)
    big = np.asarray(tv_prox(x, 1e3, D, iterations=300))  # TV forced to 0: the mean image
    np.testing.assert_allclose(big, np.full((6, 8), np.asarray(x).mean()), atol=1e-3)
    np.testing.assert_allclose(np.asarray(tv_prox(x, 0.3, D)).mean(), np.asarray(x).mean(), atol=1e-6)


def _smoothed_tv_prox(x, lam, isotropic, eps=1e-6):
    """Reference: L-BFGS (float64) on 0.5||u - x||^2 + lam sum sqrt(|D u|^2 + eps^2), periodic."""
    def f(u):
        u = u.reshape(x.shape)
        g = np.stack([np.roll(u, -1, 0) - u, np.roll(u, -1, 1) - u])
        m = np.sqrt((g ** 2).sum(0, keepdims=True) + eps ** 2) if isotropic else np.sqrt(g ** 2 + eps ** 2)
        d = g / m
        grad = (u - x) + lam * (np.roll(d[0], 1, 0) - d[0] + np.roll(d[1], 1, 1) - d[1])
        return 0.5 * np.sum((u - x) ** 2) + lam * m.sum(), grad.ravel()

    res = scipy.optimize.minimize(f, x.ravel(), jac=True, method="L-BFGS-B",
                                  options=dict(maxiter=20000, gtol=1e-12, ftol=1e-16, maxcor=50))
    return res.x.reshape(x.shape)


@pytest.mark.parametrize("isotropic", [True, False])
def test_tv_prox_matches_scipy_lbfgs(isotropic, rng):
    """8x8 real image; smoothing eps = 1e-6 moves the minimiser by O(eps) (measured 1e-5 at
    eps=1e-5), far below float32 FISTA's own ~1e-6 level, hence 1e-4."""
    x = rng.standard_normal((8, 8))
    lam = 0.3
    ref = _smoothed_tv_prox(x, lam, isotropic)
    D = finite_difference((8, 8), dtype="float32")
    u = np.asarray(tv_prox(jnp.asarray(x, jnp.float32), lam, D, isotropic=isotropic, iterations=400))
    np.testing.assert_allclose(u, ref, atol=1e-4)


def test_tv_prox_matches_skimage_chambolle(rng):
    """skimage's ``denoise_tv_chambolle(f, weight)`` minimises 0.5||u - f||^2 + weight * TV(u)
    (isotropic, Neumann boundary): weight = threshold. The object sits in a zero border, where
    the solution is flat, so periodic and Neumann boundaries give the same minimiser. Chambolle
    is run to 1e-14 relative energy change; measured agreement 7e-7 (3e-5 at 300 iterations)."""
    n = 24
    yy, xx = np.mgrid[:n, :n]
    x = np.zeros((n, n))
    x[(yy - 12) ** 2 + (xx - 11) ** 2 < 36] = 1.0
    x[8:14, 14:18] += 0.5
    x[6:18, 6:18] += 0.1 * rng.standard_normal((12, 12))
    ref = denoise_tv_chambolle(x, weight=0.1, eps=1e-14, max_num_iter=20000)
    D = finite_difference((n, n), dtype="float32")
    u = np.asarray(tv_prox(jnp.asarray(x, jnp.float32), 0.1, D, iterations=1000))
    np.testing.assert_allclose(u, ref, atol=1e-5)


def test_tv_prox_complex_phase_equivariance(rng):
    D = finite_difference((6, 8))
    x = rng.standard_normal((6, 8)).astype(np.float32)
    real = np.asarray(tv_prox(jnp.asarray(x), 0.3, D, iterations=100))
    phase = np.exp(1j * 0.7).astype(np.complex64)
    cplx = np.asarray(tv_prox(jnp.asarray(x * phase), 0.3, D, iterations=100))
    assert cplx.dtype == np.complex64 and real.dtype == np.float32
    np.testing.assert_allclose(cplx, real * phase, atol=1e-5)


def test_tv_prox_3d_and_time_weighted(rng):
    """3D and dynamic TV: the result is a minimiser (objective below perturbations)."""
    for D in (finite_difference((4, 6, 6)), finite_difference((4, 6, 6), weights=(2.0, 1.0, 1.0))):
        x = complex_normal(rng, (4, 6, 6))
        u = np.asarray(tv_prox(jnp.asarray(x), 0.2, D, iterations=300))
        w = np.asarray(D.weights or (1.0,) * 3)

        def F(v):
            g = np.stack([wk * (np.roll(v, -1, axis=a) - v) for wk, a in zip(w, D.axes)])
            return 0.5 * np.sum(np.abs(v - x) ** 2) + 0.2 * np.sqrt((np.abs(g) ** 2).sum(0)).sum()

        for _ in range(5):
            d = 1e-2 * complex_normal(rng, x.shape)
            assert F(u + d) > F(u) + 0.4 * np.sum(np.abs(d) ** 2)


def test_jit_vmap_batch_and_per_image_threshold(rng):
    D = finite_difference((6, 8))
    x = jnp.asarray(complex_normal(rng, (3, 6, 8)))
    lam = jnp.asarray([0.1, 0.5, 1.0])
    prox = jax.jit(lambda x, l: tv_prox(x, l, D, iterations=30))
    one = [np.asarray(prox(x[i], lam[i])) for i in range(3)]
    batched = prox(x, lam)
    mapped = jax.vmap(prox)(x, lam)
    np.testing.assert_allclose(np.asarray(batched), np.stack(one), atol=1e-5)
    np.testing.assert_allclose(np.asarray(mapped), np.stack(one), atol=1e-5)
    Dw = finite_difference((6, 8), weights=(2.0, 0.5))  # an operator passes through jit as an argument
    np.testing.assert_allclose(np.asarray(jax.jit(lambda D, x: D.adjoint(D(x)))(Dw, x)),
                               np.asarray(Dw.normal(x)), atol=1e-5)
    tv = jax.jit(jax.vmap(lambda x: total_variation(x, D)))(x)
    np.testing.assert_allclose(np.asarray(tv), np.asarray(total_variation(x, D)), rtol=1e-6)
    g = jax.grad(lambda x: jnp.sum(jnp.abs(tv_prox(x, 0.3, D, iterations=5)) ** 2))(x[0].real)
    assert np.all(np.isfinite(np.asarray(g)))


# -- bad input ---------------------------------------------------------------------------------

def test_bad_input():
    with pytest.raises(ShapeError, match="out of range"):
        finite_difference((6, 8), axes=(2,))
    with pytest.raises(ShapeError, match="distinct"):
        FiniteDifference((6, 8), (-1, -1))
    with pytest.raises(ShapeError, match="distinct"):
        FiniteDifference((6, 8), (0,))
    with pytest.raises(InvalidDataError, match="weights"):
        finite_difference((6, 8), weights=(1.0,))
    with pytest.raises(InvalidDataError, match="weights"):
        finite_difference((6, 8), weights=(1.0, -1.0))
    D = finite_difference((6, 8))
    with pytest.raises(ShapeError, match=r"\(6, 8\)"):
        D(jnp.zeros((6, 7)))
    with pytest.raises(ShapeError, match="at least 3"):
        tv_norm(jnp.zeros((6, 8)))
    with pytest.raises(ShapeError, match=r"\(6, 8\)"):
        tv_prox(jnp.zeros((8, 6)), 0.1, D)
    with pytest.raises(InvalidDataError, match="iterations"):
        tv_prox(jnp.zeros((6, 8)), 0.1, D, iterations=-1)
    with pytest.raises(InvalidDataError, match="threshold"):
        tv_prox(jnp.zeros((6, 8)), -0.1, D)
    with pytest.raises(InvalidDataError, match="radius"):
        project_dual(jnp.zeros((2, 6, 8)), -1.0)
    with pytest.raises(ShapeError, match="threshold"):
        tv_prox(jnp.zeros((6, 8)), jnp.ones((2,)), D)
