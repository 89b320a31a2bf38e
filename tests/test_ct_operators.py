"""CT operators of physics/ct.py: adjoints, backends agreeing, jit/vmap/grad, ASTRA and
scikit-image cross-checks, bad input."""

import astra
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage.transform import radon

import kernels.joseph_cuda
from physics.ct import ConeBeamCT, FanBeamCT, ParallelBeamCT, ct_operator
from physics.ct_geometry import cone_beam, fan_beam, parallel_beam
from physics.errors import InvalidDataError, ShapeError
from physics.linop import adjoint_error
from physics.phantom import shepp_logan

HOST = ["numba", "cuda"] if kernels.joseph_cuda.is_available() else ["numba"]

ANGLES_PI = np.linspace(0, np.pi, 24, endpoint=False)  # multiples of pi/4 included: ties of |sin|, |cos|
ANGLES_2PI = np.linspace(0, 2 * np.pi, 30, endpoint=False) + 0.1

GEOMETRIES = {
    "parallel": parallel_beam((20, 28), ANGLES_PI, 40, detector_spacing=0.8, pixel_size=0.9,
                              detector_offset=1.3),
    "fan-flat": fan_beam((20, 28), ANGLES_2PI, 48, source_to_isocenter=60.0, source_to_detector=100.0,
                         detector_spacing=1.4, detector_offset=-0.9),
    "fan-arc": fan_beam((20, 28), ANGLES_2PI, 48, source_to_isocenter=60.0, source_to_detector=100.0,
                        detector_spacing=1.4, detector_offset=-0.9, detector="arc"),
    "cone": cone_beam((8, 10, 12), np.linspace(0, 2 * np.pi, 16, endpoint=False), (14, 20),
                      source_to_isocenter=40.0, source_to_detector=70.0, detector_spacing=(1.3, 1.2),
                      detector_offset=(0.4, -0.6)),
}
CASES = ([("parallel", b) for b in [*HOST, "jax"]]
         + [(name, b) for name in ("fan-flat", "fan-arc", "cone") for b in HOST])


def rel(a, b) -> float:
    return float(np.linalg.norm(np.ravel(a - b)) / np.linalg.norm(np.ravel(b)))


def normal(seed: int, shape) -> jax.Array:
    return jax.random.normal(jax.random.key(seed), shape, jnp.float32)


@pytest.mark.parametrize("name,backend", CASES)
def test_adjoint(name, backend):
    A = ct_operator(GEOMETRIES[name], backend)
    assert A.in_shape == GEOMETRIES[name].image_shape and A.out_shape == GEOMETRIES[name].sinogram_shape
    for seed in range(2):
        assert adjoint_error(A, jax.random.key(seed)) < 1e-5


def test_ct_operator_picks_the_class():
    assert [type(ct_operator(GEOMETRIES[n])) for n in ("parallel", "fan-arc", "cone")] == \
        [ParallelBeamCT, FanBeamCT, ConeBeamCT]


@pytest.mark.parametrize("geometry", [
    GEOMETRIES["parallel"],
    # odd detector count, pixels larger than bins, angles over 2 pi with random ones and the ties
    parallel_beam((17, 12), np.concatenate([np.arange(8) * np.pi / 4,
                                            np.random.default_rng(3).uniform(-1, 7, 12)]),
                  31, detector_spacing=0.7, pixel_size=1.3, detector_offset=-2.2),
])
def test_jax_projector_matches_numba(geometry):
    jax_op, numba_op = ParallelBeamCT(geometry, "jax"), ParallelBeamCT(geometry, "numba")
    x, y = normal(0, geometry.image_shape), normal(1, geometry.sinogram_shape)
    assert rel(jax_op(x), numba_op(x)) < 1e-5
    assert rel(jax_op.adjoint(y), numba_op.adjoint(y)) < 1e-5


@pytest.mark.parametrize("name,backend", CASES)
def test_jit_vmap_and_batch_axes(name, backend):
    A = ct_operator(GEOMETRIES[name], backend)
    assert jax.tree.leaves(A) == []  # all static: the operator is a jit argument without arrays
    x = normal(0, (2, 3, *A.in_shape))
    y = jax.jit(lambda op, v: op(v))(A, x)
    assert y.shape == (2, 3, *A.out_shape) and y.dtype == jnp.float32
    np.testing.assert_allclose(jax.vmap(A)(x[1]), y[1], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(A(x[1, 2]), y[1, 2], rtol=1e-5, atol=1e-4)
    z = jax.jit(lambda op, v: op.adjoint(v))(A, y[0])
    assert z.shape == (3, *A.in_shape) and z.dtype == jnp.float32
    np.testing.assert_allclose(jax.vmap(A.adjoint)(y[0]), z, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(A.adjoint(y[0, 1]), z[1], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name,backend", CASES)
def test_grad_of_data_term(name, backend):
    """grad ||Ax - y||^2 = 2 A^T (Ax - y), under jit."""
    A = ct_operator(GEOMETRIES[name], backend)
    x, y = normal(0, A.in_shape), normal(1, A.out_shape)
    g = jax.jit(jax.grad(lambda v: jnp.sum((A(v) - y) ** 2)))(x)
    assert rel(g, 2 * A.adjoint(A(x) - y)) < 1e-5


@pytest.mark.parametrize("name,backend", CASES)
def test_directional_derivative_matches_finite_difference(name, backend):
    """A smooth non-quadratic loss: central difference of L along v equals <grad L, v>."""
    A = ct_operator(GEOMETRIES[name], backend)
    x, v = normal(0, A.in_shape), normal(1, A.in_shape)

    def loss(u):
        return jnp.sum(jnp.cos(0.2 * A(u)))

    h = 1e-2
    finite = (loss(x + h * v) - loss(x - h * v)) / (2 * h)
    analytic = jnp.vdot(jax.grad(loss)(x), v)
    assert abs(float(finite - analytic)) < 1e-2 * abs(float(analytic))


def test_grad_through_jax_backend_equals_numba():
    g = GEOMETRIES["parallel"]
    x = normal(0, g.image_shape)

    def gradient(A):
        return jax.grad(lambda u: jnp.sum(jnp.sin(0.3 * A(u))))(x)

    assert rel(gradient(ParallelBeamCT(g, "jax")), gradient(ParallelBeamCT(g, "numba"))) < 1e-5


@pytest.mark.parametrize("backend", [*HOST, "jax"])
def test_matches_scikit_image_radon(backend):
    """``skimage.transform.radon(image, theta_deg, circle=True)`` is ``(detectors, angles)`` with
    detector bin ``j`` at ``u = j - n // 2`` pixels and its angle ``theta_deg`` our ``theta`` in
    degrees: our geometry with ``theta = deg2rad(theta_deg)``, ``n`` bins of one pixel, and an odd
    ``n`` so that its rotation centre ``n // 2`` is our centre ``(n - 1) / 2``. skimage rotates the
    image with linear interpolation and sums columns (another discretisation): a few % apart."""
    n = 63
    image = shepp_logan((n, n))
    degrees = np.arange(0.0, 180.0, 7.5) + 3.0
    A = ParallelBeamCT(parallel_beam((n, n), np.deg2rad(degrees), n), backend)
    reference = radon(image, degrees, circle=True).T
    assert rel(A(jnp.asarray(image)), reference) < 0.03
    # the mirrored angle convention is far off: the comparison can tell
    mirrored = ParallelBeamCT(parallel_beam((n, n), -np.deg2rad(degrees), n), backend)
    assert rel(mirrored(jnp.asarray(image)), reference) > 0.05


@pytest.mark.parametrize("backend", [*HOST, "jax"])
def test_matches_astra_linear_parallel(backend):
    """ASTRA's 'linear' CPU projector is Joseph's method on the same geometry (no detector offset
    in its 'parallel' geometry); its volume window ``(min_x, max_x, min_y, max_y)`` in mm sets the
    pixel size. Differences are ASTRA's float32 coordinates (~1e-6 per sample)."""
    ny, nx, n_det, p, du = 24, 30, 44, 0.8, 1.1
    angles = np.linspace(0, np.pi, 20, endpoint=False) + 0.05
    A = ParallelBeamCT(parallel_beam((ny, nx), angles, n_det, detector_spacing=du, pixel_size=p), backend)
    image = np.asarray(normal(0, (ny, nx))) + 2.0
    sinogram = np.asarray(normal(1, A.out_shape))
    volume = astra.create_vol_geom(ny, nx, -nx * p / 2, nx * p / 2, -ny * p / 2, ny * p / 2)
    projector = astra.create_projector("linear", astra.create_proj_geom("parallel", du, n_det, angles), volume)
    try:
        sino_id, astra_sino = astra.create_sino(image, projector)
        bp_id, astra_bp = astra.create_backprojection(sinogram, projector)
        astra.data2d.delete([sino_id, bp_id])
    finally:
        astra.projector.delete(projector)
    assert rel(A(jnp.asarray(image)), astra_sino) < 1e-4
    assert rel(A.adjoint(jnp.asarray(sinogram)), astra_bp) < 1e-4


@pytest.mark.parametrize("backend", [*HOST, "jax"])
def test_wrong_input_shape(backend):
    A = ParallelBeamCT(GEOMETRIES["parallel"], backend)
    with pytest.raises(ShapeError, match=r"\(20, 28\)"):
        A(jnp.zeros((28, 20)))
    with pytest.raises(ShapeError, match=r"\(24, 40\)"):
        A.adjoint(jnp.zeros((24, 39)))


def test_bad_backend_or_geometry():
    with pytest.raises(InvalidDataError, match="unknown backend 'opencl'"):
        ParallelBeamCT(GEOMETRIES["parallel"], "opencl")
    with pytest.raises(InvalidDataError, match="unknown backend 'jax'"):
        ct_operator(GEOMETRIES["fan-flat"], "jax")
    with pytest.raises(InvalidDataError, match="parallel-beam geometry, got a cone-beam"):
        ParallelBeamCT(GEOMETRIES["cone"])
    with pytest.raises(InvalidDataError, match="CTGeometry"):
        ct_operator({"kind": "parallel"})


def test_cuda_backend_without_gpu(monkeypatch):
    monkeypatch.setattr(kernels.joseph_cuda, "is_available", lambda: False)
    with pytest.raises(InvalidDataError, match="cuda.*GPU"):
        FanBeamCT(GEOMETRIES["fan-flat"], "cuda")


def test_cgls_through_the_callback_operator_and_its_gradient():
    """CG on a host-kernel operator (no JAX transpose rule) runs, and differentiates implicitly."""
    from recon.cg import cgls

    g = parallel_beam((16, 16), np.linspace(0, np.pi, 24, endpoint=False), 24)
    A, J = ParallelBeamCT(g), ParallelBeamCT(g, backend="jax")
    x = jnp.asarray(np.random.default_rng(0).random((16, 16)), jnp.float32)
    y = A(x)
    lam = 20.0  # ||A||^2 is about 500: a well-conditioned system, so float32 differences stay small
    loss = lambda op, y: jnp.sum(cgls(op, y, lam=lam, maxiter=30, tol=0.0)[0] ** 2)  # noqa: E731
    np.testing.assert_allclose(cgls(A, y, lam=lam, maxiter=30)[0], cgls(J, y, lam=lam, maxiter=30)[0],
                               rtol=1e-3, atol=1e-4)
    M = np.asarray(jax.jacfwd(J)(x), np.float64).reshape(y.size, x.size)  # the dense projector
    H = M.T @ M + lam * np.eye(x.size)
    xs = np.linalg.solve(H, M.T @ np.asarray(y, np.float64).ravel())
    expected = 2 * M @ np.linalg.solve(H, xs)  # d ||x*(y)||^2 / dy
    np.testing.assert_allclose(np.asarray(jax.grad(loss, argnums=1)(A, y)).ravel(), expected,
                               rtol=2e-3, atol=2e-3 * np.abs(expected).max())
