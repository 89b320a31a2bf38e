"""Noise: covariance and pre-whitening on a real 16-channel noise scan, simulated noise at an SNR."""

from __future__ import annotations

import h5py
import jax
import numpy as np
import pytest

from physics.errors import InvalidDataError, ShapeError
from physics.noise import add_noise, noise_covariance, prewhiten, whitening_matrix
from tests.conftest import complex_normal


@pytest.fixture(scope="module")
def real_noise(data_dir) -> np.ndarray:
    with h5py.File(data_dir / "noise_16ch_real.h5", "r") as f:
        noise = f["noise"][()]
    assert noise.shape == (16, 256) and noise.dtype == np.complex64
    return noise


def _max_correlation(c: np.ndarray) -> float:
    """Largest off-diagonal |correlation coefficient| of a covariance matrix."""
    d = np.sqrt(np.real(np.diag(c)))
    r = np.abs(c / np.outer(d, d))
    np.fill_diagonal(r, 0.0)
    return float(r.max())


def test_covariance_of_real_noise(real_noise):
    c = noise_covariance(real_noise)
    assert c.shape == (16, 16) and c.dtype == np.complex64
    n = real_noise.astype(np.complex128)
    reference = np.einsum("cs,ds->cd", n, n.conj()) / (n.shape[1] - 1)  # no mean removal
    np.testing.assert_allclose(c, reference, rtol=1e-5, atol=1e-6 * np.abs(reference).max())
    np.testing.assert_allclose(noise_covariance(real_noise, remove_mean=True), np.cov(n),
                               rtol=1e-5, atol=1e-6 * np.abs(reference).max())
    np.testing.assert_array_equal(c, c.conj().T)
    assert np.linalg.eigvalsh(c.astype(np.complex128))[0] > 0
    # A real coil array: clearly correlated between channels (max |rho| measured 0.55).
    assert _max_correlation(c) > 0.4


def test_whitening_same_data_is_identity(real_noise):
    c = noise_covariance(real_noise)
    w = whitening_matrix(c)
    assert w.shape == (16, 16) and w.dtype == np.complex64
    np.testing.assert_array_equal(w, np.tril(w))  # inverse of a lower Cholesky factor
    eye = np.eye(16)
    np.testing.assert_allclose(w.astype(np.complex128) @ c @ w.conj().T, eye, atol=1e-5)
    white = np.asarray(prewhiten(real_noise, w, coil_axis=0))
    np.testing.assert_allclose(noise_covariance(white), eye, atol=1e-5)


def test_whitening_held_out_samples(real_noise):
    """W from the even samples whitens the odd ones, up to the error of a 128-sample estimate."""
    train, test = real_noise[:, ::2], real_noise[:, 1::2]
    w = whitening_matrix(noise_covariance(train))
    c_white = noise_covariance(np.asarray(prewhiten(test, w, coil_axis=0)))
    raw = _max_correlation(noise_covariance(test))
    # White noise with 128 samples and 16 channels gives max |rho| about 0.2 and a mean variance
    # of 128 / (128 - 16) = 1.14 after whitening with an estimated W.
    assert raw > 0.45
    assert _max_correlation(c_white) < 0.35
    assert 0.85 < np.mean(np.real(np.diag(c_white))) < 1.35
    assert np.linalg.eigvalsh(c_white.astype(np.complex128))[0] > 0.3


def test_prewhiten_kspace_along_coil_axis(rng):
    coils = 6
    mix = complex_normal(rng, (coils, coils)) + 3 * np.eye(coils)
    w = whitening_matrix(mix @ mix.conj().T)
    kspace = complex_normal(rng, (3, coils, 8, 10))
    before = kspace.copy()
    out = prewhiten(kspace, w)
    assert out.shape == kspace.shape and out.dtype == np.complex64
    reference = np.einsum("cd,sdyx->scyx", w.astype(np.complex128), kspace)
    np.testing.assert_allclose(np.asarray(out), reference, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(kspace, before)
    jitted = jax.jit(lambda k, m: prewhiten(k, m))(kspace, w)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(out), rtol=1e-6, atol=1e-6)
    moved = prewhiten(np.moveaxis(kspace, 1, -1), w, coil_axis=-1)
    moved = np.moveaxis(np.asarray(moved), -1, 1)
    np.testing.assert_allclose(moved, reference, rtol=1e-5, atol=1e-5)


def test_prewhiten_makes_correlated_noise_white(rng):
    """Noise simulated with a covariance, estimated and whitened, comes out white."""
    coils = 4
    mix = complex_normal(rng, (coils, coils)) + np.eye(coils)
    cov = mix @ mix.conj().T
    clean = np.zeros((2, coils, 64, 64), dtype=np.complex64) + 1.0
    noisy, sigma = add_noise(clean, 0.0, seed=3, covariance=cov)
    noise = np.moveaxis(noisy - clean, 1, 0).reshape(coils, -1)
    # The noise follows cov scaled to mean power sigma^2 per sample.
    expected = cov * coils / np.trace(cov).real * sigma**2
    np.testing.assert_allclose(noise_covariance(noise), expected, atol=0.02 * np.abs(expected).max())
    white = prewhiten(noisy - clean, whitening_matrix(noise_covariance(noise)))
    white = np.moveaxis(np.asarray(white), 1, 0).reshape(coils, -1)
    np.testing.assert_allclose(noise_covariance(white), np.eye(coils), atol=1e-4)


def test_add_noise_snr_and_reproducibility(rng):
    kspace = complex_normal(rng, (4, 8, 64, 64)) * np.linspace(0.1, 3.0, 64, dtype=np.float32)
    before = kspace.copy()
    noisy, sigma = add_noise(kspace, 20.0, seed=7)
    assert noisy.dtype == np.complex64 and noisy.shape == kspace.shape
    np.testing.assert_array_equal(kspace, before)
    power = np.mean(np.abs(kspace.astype(np.complex128)) ** 2)
    assert sigma == pytest.approx(np.sqrt(power / 100.0), rel=1e-6)
    noise = (noisy - kspace).astype(np.complex128)
    measured = np.mean(np.abs(noise) ** 2)
    assert 10 * np.log10(power / measured) == pytest.approx(20.0, abs=0.05)  # ~1 % in power
    assert np.var(noise.real) == pytest.approx(np.var(noise.imag), rel=0.02)  # circular
    assert abs(np.mean(noise)) < 0.01 * sigma
    again, _ = add_noise(kspace, 20.0, seed=7)
    np.testing.assert_array_equal(noisy, again)
    other, _ = add_noise(kspace, 20.0, seed=8)
    assert not np.allclose(noisy, other)
    gen_a, _ = add_noise(kspace, 20.0, seed=np.random.default_rng(7))
    np.testing.assert_array_equal(gen_a, noisy)
    jax_in, _ = add_noise(jax.numpy.asarray(kspace), 20.0, seed=7)
    np.testing.assert_array_equal(jax_in, noisy)


def test_bad_inputs(real_noise):
    c = noise_covariance(real_noise)
    with pytest.raises(InvalidDataError, match="Hermitian"):
        whitening_matrix(c + np.triu(np.full_like(c, 1e-11), 1))
    with pytest.raises(InvalidDataError, match="NaN"):
        whitening_matrix(np.where(np.eye(16, dtype=bool), np.nan, c))
    with pytest.raises(InvalidDataError, match="positive definite"):
        v = real_noise[:, :4]
        whitening_matrix(v @ v.conj().T)  # rank 4 out of 16
    with pytest.raises(InvalidDataError, match="positive definite"):
        whitening_matrix(-np.eye(3))
    with pytest.raises(ShapeError):
        whitening_matrix(c[:, :8])
    with pytest.raises(InvalidDataError, match="samples"):
        noise_covariance(real_noise[:, :10])
    with pytest.raises(InvalidDataError, match="NaN"):
        noise_covariance(np.where(np.arange(256) == 3, np.nan, real_noise))
    with pytest.raises(ShapeError):
        noise_covariance(real_noise[0])
    with pytest.raises(ShapeError):
        prewhiten(np.zeros((2, 15, 4, 4), np.complex64), whitening_matrix(c))
    with pytest.raises(InvalidDataError, match="zero power"):
        add_noise(np.zeros((4, 4), np.complex64), 10.0)
    with pytest.raises(InvalidDataError):
        add_noise(np.ones((4, 4), np.complex64), np.inf)
    with pytest.raises(ShapeError):
        add_noise(np.ones((3, 4, 4), np.complex64), 10.0, covariance=c)
