import numpy as np
import pytest
import sigpy

from physics import FFT, adjoint_error, fftc, ifftc
from tests.conftest import complex_normal

import jax


def numpy_centred(x, ndim, inverse=False):
    axes = tuple(range(-ndim, 0))
    f = np.fft.ifftn if inverse else np.fft.fftn
    return np.fft.fftshift(f(np.fft.ifftshift(x, axes=axes), axes=axes, norm="ortho"), axes=axes)


SHAPES = [(8, 8), (6, 10), (8, 6), (7, 9), (6, 7), (3, 4, 6, 8), (2, 6, 5, 8)]


@pytest.mark.parametrize("shape, ndim", [(s, n) for s in SHAPES for n in (2, 3) if len(s) >= n])
def test_fftc_matches_numpy_definition(rng, shape, ndim):
    x = complex_normal(rng, shape)
    np.testing.assert_allclose(fftc(x, ndim), numpy_centred(x, ndim), atol=2e-5)
    np.testing.assert_allclose(ifftc(x, ndim), numpy_centred(x, ndim, inverse=True), atol=2e-5)


@pytest.mark.parametrize("shape", [(16, 12), (15, 9), (4, 8, 6)])
def test_fftc_matches_sigpy(rng, shape):
    x = complex_normal(rng, shape)
    axes = tuple(range(-len(shape), 0))
    np.testing.assert_allclose(fftc(x, len(shape)), sigpy.fft(x, axes=axes), atol=2e-5)
    np.testing.assert_allclose(ifftc(x, len(shape)), sigpy.ifft(x, axes=axes), atol=2e-5)


def test_fftc_is_unitary_and_inverse(rng):
    x = complex_normal(rng, (2, 10, 14))
    y = fftc(x)
    np.testing.assert_allclose(np.linalg.norm(y), np.linalg.norm(x), rtol=1e-5)
    np.testing.assert_allclose(ifftc(y), x, atol=2e-5)
    assert adjoint_error(FFT((10, 14)), jax.random.key(0)) < 1e-6


def test_fftc_dc_at_centre():
    x = np.ones((8, 6), np.complex64)
    y = np.asarray(fftc(x))
    assert np.argmax(np.abs(y)) == np.ravel_multi_index((4, 3), (8, 6))
    np.testing.assert_allclose(y[4, 3], np.sqrt(48), rtol=1e-6)
