"""NUFFT: against the exact NUDFT (float64), fftc on the integer grid, FINUFFT and SigPy; the
accuracy table; exact adjoints; the two backends; jit/vmap/grad; bad trajectories."""

from __future__ import annotations

import finufft
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sigpy

from physics.errors import InvalidDataError, ShapeError
from physics.fft import fftc
from physics.linop import adjoint_error
from physics.nufft import ACCURACY, NUFFT, kaiser_bessel, kaiser_bessel_fourier, kernel_polynomials
from tests.conftest import complex_normal, nudft_matrix

BACKENDS = ["numba", "jax"]


def random_points(rng, shape, count):
    return (rng.uniform(-0.5, 0.5, (count, len(shape))) * np.asarray(shape)).astype(np.float32)


def rel(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a) - b) / np.linalg.norm(b))


# ------------------------------------------------------------------------------------------------
# accuracy
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("width", [4, 6])
@pytest.mark.parametrize("shape", [(20, 16), (15, 9), (8, 10, 7)])
def test_against_exact_nudft(rng, backend, width, shape):
    k = random_points(rng, shape, 400)
    E = nudft_matrix(k, shape)
    x, y = complex_normal(rng, shape), complex_normal(rng, (400,))
    A = NUFFT(k, shape, width=width, backend=backend)
    assert rel(A(x), E @ x.ravel()) < 1.5 * ACCURACY[width]
    assert rel(np.ravel(A.adjoint(y)), E.conj().T @ y) < 1.5 * ACCURACY[width]


def test_accuracy_table_is_what_is_measured(rng):
    """The documented table (64 x 64, 2000 random points) within a factor 1.5 either way."""
    shape = (64, 64)
    k = random_points(rng, shape, 2000)
    x = complex_normal(rng, shape)
    exact = nudft_matrix(k, shape) @ x.ravel()
    for width, documented in ACCURACY.items():
        error = rel(NUFFT(k, shape, width=width)(x), exact)
        assert documented / 1.5 < error < 1.5 * documented, (width, error)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(16, 16), (15, 12), (9, 7), (6, 5, 8)])
def test_integer_grid_reproduces_fftc(rng, backend, shape):
    """On the integer Cartesian grid (k = n - N//2) the NUFFT is the centred orthonormal FFT:
    to float32 precision with width 8; within 2x the random-point accuracy with width 4."""
    k = np.stack(np.meshgrid(*[np.arange(n) - n // 2 for n in shape], indexing="ij"), -1).astype(np.float32)
    x = complex_normal(rng, shape)
    reference = np.asarray(fftc(x, len(shape)))
    for width, tolerance in ((8, 1e-6), (4, 2 * ACCURACY[4])):
        A = NUFFT(k, shape, width=width, backend=backend)
        assert A.out_shape == shape
        assert rel(A(x), reference) < tolerance
        assert rel(A.adjoint(reference), x) < tolerance


def test_kernel_polynomials_and_fourier_transform():
    """The fitted pieces are the Kaiser-Bessel window; its transform is the numerical integral."""
    width, beta = 6, 13.8551
    coeffs = kernel_polynomials(width, beta)
    s = np.linspace(0, 1, 101, endpoint=False)
    for i in range(width):
        fitted = np.polyval(coeffs[:, i], 2 * s - 1)
        np.testing.assert_allclose(fitted, kaiser_bessel(s + width / 2 - 1 - i, width, beta), atol=1e-9)
    t = np.linspace(-width / 2, width / 2, 20001)
    for f in (0.0, 0.1, 0.25, 0.4):
        integral = np.trapezoid(kaiser_bessel(t, width, beta) * np.cos(2 * np.pi * f * t), t)
        np.testing.assert_allclose(kaiser_bessel_fourier(f, width, beta), integral, rtol=1e-6)


# ------------------------------------------------------------------------------------------------
# peers: FINUFFT and SigPy
# ------------------------------------------------------------------------------------------------
def test_against_finufft(rng):
    """FINUFFT with x_finufft = 2 pi k / N, modes n - N//2 (its default ordering), 1/sqrt(prod N)."""
    shape = (24, 18)
    k = random_points(rng, shape, 500)
    x, y = complex_normal(rng, shape), complex_normal(rng, (500,))
    ky, kx = (2 * np.pi * k[:, d].astype(np.float64) / shape[d] for d in (0, 1))
    scale = 1 / np.sqrt(np.prod(shape))
    type2 = finufft.nufft2d2(ky, kx, x.astype(np.complex128), isign=-1, eps=1e-12) * scale
    type1 = finufft.nufft2d1(ky, kx, y.astype(np.complex128), shape, isign=1, eps=1e-12) * scale
    A = NUFFT(k, shape, width=6)
    assert rel(A(x), type2) < 1.5 * ACCURACY[6]
    assert rel(A.adjoint(y), type1) < 1.5 * ACCURACY[6]


def test_against_sigpy(rng):
    """SigPy's nufft uses the same convention (centred, orthonormal, coordinates in axis order)."""
    shape = (20, 14)
    k = random_points(rng, shape, 300)
    x = complex_normal(rng, shape)
    reference = sigpy.nufft(x.astype(np.complex128), k.astype(np.float64), oversamp=2.0, width=8)
    assert rel(NUFFT(k, shape, width=6)(x), reference) < 1.5 * ACCURACY[6]


# ------------------------------------------------------------------------------------------------
# operator properties
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape, samples", [((16, 12), (30, 10)), ((7, 9), (50,)), ((6, 8, 5), (40, 3))])
def test_exact_adjoint(rng, backend, shape, samples):
    k = random_points(rng, shape, int(np.prod(samples))).reshape(*samples, len(shape))
    A = NUFFT(k, shape, backend=backend)
    assert A.out_shape == samples
    for seed in range(2):
        assert adjoint_error(A, jax.random.key(seed)) < 1e-6
    assert adjoint_error(A.H, jax.random.key(5)) < 1e-6


@pytest.mark.parametrize("shape", [(16, 12), (6, 8, 5)])
def test_backends_agree(rng, shape):
    k = random_points(rng, shape, 300)
    x, y = complex_normal(rng, (2, *shape)), complex_normal(rng, (2, 300))
    numba_op, jax_op = NUFFT(k, shape, backend="numba"), NUFFT(k, shape, backend="jax")
    assert rel(numba_op(x), np.asarray(jax_op(x))) < 2e-6
    assert rel(numba_op.adjoint(y), np.asarray(jax_op.adjoint(y))) < 2e-6
    grid = complex_normal(rng, numba_op.grid_shape)
    assert rel(numba_op.interpolate(grid), np.asarray(jax_op.interpolate(grid))) < 2e-6


@pytest.mark.parametrize("backend", BACKENDS)
def test_jit_vmap_grad_and_batch_axes(rng, backend):
    shape = (12, 10)
    k = random_points(rng, shape, 60).reshape(20, 3, 2)
    A = NUFFT(k, shape, backend=backend)
    x = jnp.asarray(complex_normal(rng, (3, *shape)))
    y = jax.jit(lambda op, v: op(v))(A, x)  # the operator is a jit argument
    assert y.shape == (3, 20, 3) and y.dtype == jnp.complex64
    np.testing.assert_allclose(jax.vmap(A)(x), y, atol=1e-5)
    np.testing.assert_allclose(A(x[1]), y[1], atol=1e-5)
    np.testing.assert_allclose(jax.jit(lambda op, v: op.adjoint(v))(A, y), A.adjoint(y), atol=1e-5)
    target = jnp.asarray(complex_normal(rng, A.out_shape))
    g = jax.grad(lambda v: 0.5 * jnp.sum(jnp.abs(A(v) - target) ** 2))(x[0])
    np.testing.assert_allclose(jnp.conj(g), A.adjoint(A(x[0]) - target), atol=1e-4)


def test_jax_backend_vmaps_over_trajectories(rng):
    shape = (10, 12)
    ops = [NUFFT(random_points(rng, shape, 40), shape, backend="jax") for _ in range(3)]
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *ops)
    x = jnp.asarray(complex_normal(rng, (3, *shape)))
    y = jax.vmap(lambda op, v: op(v))(stacked, x)
    for i, op in enumerate(ops):
        np.testing.assert_allclose(y[i], op(x[i]), atol=1e-5)
    y_traced = jax.jit(lambda t, v: NUFFT(t, shape, backend="jax")(v))(ops[0].trajectory, x[0])
    np.testing.assert_allclose(y_traced, y[0], atol=1e-5)


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------
def test_bad_trajectories_and_parameters():
    shape = (8, 8)
    good = np.zeros((5, 2), np.float32)
    with pytest.raises(ShapeError, match=r"\(\.\.\., 2\)"):
        NUFFT(np.zeros((5, 3), np.float32), shape)
    with pytest.raises(InvalidDataError, match="NaN"):
        NUFFT(np.full((5, 2), np.nan, np.float32), shape)
    with pytest.raises(InvalidDataError, match=r"axis 1 .* outside \[-4, 4\)"):
        NUFFT(np.array([[0.0, 4.0]], np.float32), shape)  # +N/2 must be given as -N/2
    NUFFT(np.array([[-4.0, -4.0]], np.float32), shape)
    with pytest.raises(InvalidDataError, match="width"):
        NUFFT(good, shape, width=1)
    with pytest.raises(InvalidDataError, match="oversampling"):
        NUFFT(good, shape, oversampling=1.0)
    with pytest.raises(InvalidDataError, match="backend"):
        NUFFT(good, shape, backend="cuda")
    with pytest.raises(ShapeError, match="image_shape"):
        NUFFT(np.zeros((5, 4), np.float32), (2, 2, 2, 2))
    with pytest.raises(InvalidDataError, match="concrete"):
        jax.jit(lambda t: NUFFT(t, shape, backend="numba").out_shape)(good)
    with pytest.raises(ShapeError, match="ending in shape"):
        NUFFT(good, shape)(jnp.zeros((8, 9), jnp.complex64))
