"""Low-dose CT physics: Poisson counting statistics, the log transform and the data terms."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from physics.dose import (log_transform, low_dose_sinogram, photon_counts, transmission_nll, wls_loss,
                          wls_weights)
from physics.errors import InvalidDataError, ShapeError

N = 200_000


@pytest.mark.parametrize("I0, sigma", [(1e3, 0.0), (50.0, 0.0), (1e3, 5.0)])
def test_counts_have_poisson_mean_and_variance(I0, sigma):
    p = np.full(N, 1.0, np.float32)
    counts = np.asarray(photon_counts(p, I0, key=7, electronic_sigma=sigma), np.float64)
    assert counts.shape == (N,) and counts.dtype == np.float64
    lam = I0 * np.exp(-1.0)
    assert abs(counts.mean() - lam) < 5 * np.sqrt((lam + sigma**2) / N)
    # Var of a sample variance ~ 2 var^2 / N (plus a small kurtosis term): 5 sigma is ~1.6 %.
    assert counts.var() == pytest.approx(lam + sigma**2, rel=0.02)
    if sigma == 0:
        np.testing.assert_array_equal(counts, np.round(counts))


def test_counts_are_reproducible_and_follow_I0_per_bin():
    p = jnp.linspace(0.0, 3.0, 64)
    np.testing.assert_array_equal(photon_counts(p, 1e4, key=3),
                                  photon_counts(p, 1e4, key=jax.random.key(3)))
    np.testing.assert_array_equal(photon_counts(p, 1e4, seed=3), photon_counts(p, 1e4, key=3))
    assert not np.array_equal(photon_counts(p, 1e4, key=3), photon_counts(p, 1e4, key=4))
    # A blank scan per bin (a bowtie) broadcasts against the sinogram.
    bowtie = jnp.array([1e2, 1e6])
    counts = photon_counts(jnp.zeros((5000, 2)), bowtie, key=0)
    np.testing.assert_allclose(counts.mean(axis=0), bowtie, rtol=0.01)


def test_log_transform_floor_and_values():
    I0 = 1e4
    counts = jnp.array([0.0, -3.0, 0.2, 1.0, 100.0, 1e4])
    y = np.asarray(log_transform(counts, I0))
    np.testing.assert_allclose(y, [np.log(I0)] * 4 + [np.log(100.0), 0.0], rtol=1e-6, atol=1e-6)
    y = np.asarray(log_transform(counts, I0, floor=0.5))
    np.testing.assert_allclose(y[:3], np.log(I0 / 0.5), rtol=1e-6)
    assert np.all(np.isfinite(y))


def test_low_dose_noise_scales_as_one_over_sqrt_I0():
    p = np.full(N, 2.0, np.float32)
    std = {}
    for I0 in (1e4, 1e6):
        noisy = np.asarray(low_dose_sinogram(p, I0, seed=1), np.float64)
        assert abs(noisy.mean() - 2.0) < 0.01
        std[I0] = (noisy - 2.0).std()
        assert std[I0] == pytest.approx(np.sqrt(np.exp(2.0) / I0), rel=0.03)  # delta method
    assert std[1e4] / std[1e6] == pytest.approx(10.0, rel=0.03)


def test_transmission_nll_gradient_and_value_against_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    p = rng.uniform(0.0, 4.0, 40).astype(np.float32)
    I0 = 5e3
    counts = np.asarray(photon_counts(p, I0, key=2))
    grad = jax.grad(transmission_nll)(jnp.asarray(p), counts, I0)
    np.testing.assert_allclose(grad, counts - I0 * np.exp(-p.astype(np.float64)), rtol=1e-5, atol=1e-2)
    # Differences of the NLL equal differences of scipy's Poisson log-likelihood (constants drop).
    q = p + rng.normal(0.0, 0.05, p.shape).astype(np.float32)
    ours = float(transmission_nll(q, counts, I0) - transmission_nll(p, counts, I0))
    scipy_nll = [-stats.poisson.logpmf(counts, I0 * np.exp(-x.astype(np.float64))).sum()
                 for x in (q, p)]
    assert ours == pytest.approx(scipy_nll[0] - scipy_nll[1], rel=1e-3, abs=0.05)
    assert float(jax.jit(transmission_nll)(p, counts, I0)) == pytest.approx(
        float(transmission_nll(p, counts, I0)), rel=1e-6)


def test_wls_weights_and_loss():
    counts = jnp.array([-2.0, 0.0, 1.0, 100.0, 1e4])
    np.testing.assert_allclose(wls_weights(counts), [0.0, 0.0, 1.0, 100.0, 1e4])
    np.testing.assert_allclose(wls_weights(counts, electronic_sigma=3.0),
                               [0.0, 0.0, 1 / 10, 1e4 / 109, 1e8 / 10009], rtol=1e-6)
    assert np.all(np.isfinite(jax.grad(lambda c: wls_weights(c, electronic_sigma=1.0).sum())(counts)))
    p, y = jnp.array([1.0, 2.0, 3.0, 0.5, 0.0]), jnp.array([1.5, 2.0, 2.0, 0.0, 1.0])
    w = wls_weights(counts)
    assert float(wls_loss(p, y, w)) == pytest.approx(0.5 * float(jnp.sum(w * (p - y) ** 2)))
    assert float(wls_loss(p, y, w)) == pytest.approx(0.5 * (1.0 * 1.0 + 100 * 0.25 + 1e4 * 1.0))
    np.testing.assert_allclose(jax.grad(wls_loss)(p, y, w), w * (p - y))


@pytest.mark.parametrize("call, error", [
    (lambda: photon_counts(jnp.ones(4), 0.0, seed=0), InvalidDataError),
    (lambda: photon_counts(jnp.ones(4), -5.0, seed=0), InvalidDataError),
    (lambda: photon_counts(jnp.ones(4), 2e9, seed=0), InvalidDataError),
    (lambda: photon_counts(jnp.array([1.0, np.nan]), 1e3, seed=0), InvalidDataError),
    (lambda: photon_counts(jnp.ones(4), 1e3, seed=0, electronic_sigma=-1.0), InvalidDataError),
    (lambda: photon_counts(jnp.ones(4), 1e3), InvalidDataError),
    (lambda: photon_counts(jnp.ones(4), 1e3, key=1, seed=1), InvalidDataError),
    (lambda: log_transform(jnp.ones(4), jnp.array([1e3, 0.0, 1e3, 1e3])), InvalidDataError),
    (lambda: log_transform(jnp.ones(4), 1e3, floor=0.0), InvalidDataError),
    (lambda: log_transform(jnp.array([np.inf]), 1e3), InvalidDataError),
    (lambda: transmission_nll(jnp.ones(4), jnp.ones(3), 1e3), ShapeError),
    (lambda: transmission_nll(jnp.array([np.nan]), jnp.ones(1), 1e3), InvalidDataError),
    (lambda: wls_loss(jnp.ones(4), jnp.ones(4), -jnp.ones(4)), InvalidDataError),
    (lambda: wls_loss(jnp.ones(4), jnp.ones(4), jnp.ones(5)), ShapeError),
    (lambda: photon_counts(jnp.ones(4, jnp.complex64), 1e3, seed=0), InvalidDataError),
])
def test_bad_input(call, error):
    with pytest.raises(error):
        call()
