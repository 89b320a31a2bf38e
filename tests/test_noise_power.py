"""The noise power spectrum against its analytic values: white noise is flat at sigma^2 dx dy and
integrates to the variance; smoothing lowers the mean frequency; bad input is refused."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from physics.errors import InvalidDataError, ShapeError
from recon.noise_power import noise_power_spectrum


def test_white_noise_is_flat_and_integrates_to_the_variance():
    rng = np.random.default_rng(0)
    sigma, dy, dx = 3.0, 0.5, 0.8
    nps = noise_power_spectrum(sigma * rng.standard_normal((200, 32, 48)), (dy, dx))
    assert nps.nps2d.shape == (32, 48)
    np.testing.assert_allclose(nps.variance, sigma**2, rtol=0.02)
    inner = nps.radial[1:-1]  # flat at sigma^2 dx dy (the rings near zero hold few samples)
    np.testing.assert_allclose(inner.mean(), sigma**2 * dy * dx, rtol=0.03)
    np.testing.assert_allclose(inner, sigma**2 * dy * dx, rtol=0.2)
    assert nps.frequencies[-1] == pytest.approx(0.5 / max(dy, dx), rel=0.05)  # up to Nyquist


def test_smoothing_moves_power_to_low_frequencies():
    rng = np.random.default_rng(1)
    white = rng.standard_normal((64, 40, 40))
    smooth = np.stack([gaussian_filter(w, 1.5, mode="wrap") for w in white])
    a, b = noise_power_spectrum(white, 0.7), noise_power_spectrum(smooth, 0.7)
    assert b.variance < 0.2 * a.variance
    assert b.mean_frequency < 0.5 * a.mean_frequency
    np.testing.assert_allclose(b.variance, smooth.var(axis=(1, 2)).mean(), rtol=1e-6)  # Parseval


def test_bad_input():
    with pytest.raises(ShapeError):
        noise_power_spectrum(np.zeros((2, 3)))
    with pytest.raises(InvalidDataError):
        noise_power_spectrum(np.full((8, 8), np.nan))
    with pytest.raises(InvalidDataError):
        noise_power_spectrum(np.ones((8, 8), complex))
    with pytest.raises(InvalidDataError):
        noise_power_spectrum(np.ones((8, 8)), 0.0)
