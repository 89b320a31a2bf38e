"""The trust report (recon.trust) on simulated multi-coil data with known noise.

The CG-SENSE solution of noisy data fits them to the noise level and must not be flagged; the same
image with a bright disc that is not in the data must be; on pure noise the noise-only residual
must equal the measured one and the estimated sigma the true one. A magnitude image is checked
with its best-fitting phase; the CT noise level of a low-dose file matches the actual noise.
"""

from typing import NamedTuple

import h5py
import jax.numpy as jnp
import numpy as np
import pytest

from physics.ct import ct_operator
from physics.ct_geometry import parallel_beam
from physics.ct_phantom import shepp_logan_ct
from physics.dose import log_transform, photon_counts
from physics.errors import InvalidDataError, ShapeError
from physics.fft import fftc
from physics.mri import MultiCoilMRI
from physics.sampling import equispaced_mask
from physics.noise import add_noise
from physics.phantom import birdcage_maps, brain_phantom
from recon.io import CTData
from recon.sense import cg_sense
from recon.trust import (FACTOR, ct_sigma, ct_trust, estimate_sigma, fit_phase, kspace_sigma, mri_trust,
                         sense_trust, stack_reports, trust_figure, trust_fields, trust_report, write_trust)

N, COILS = 48, 4


class Acquisition(NamedTuple):
    image: np.ndarray
    maps: np.ndarray
    sigma: float


def acquire(n: int = N, snr_db: float = 25.0) -> tuple[np.ndarray, Acquisition]:
    """4-coil k-space of the brain phantom, band-limited by a Gaussian k-space window (std 0.2 of
    the k-space width, as a finite-resolution acquisition: the outer corners hold noise, not the
    pixel phantom's jagged edges), plus noise at ``snr_db``."""
    image = brain_phantom((n, n), seed=5)
    maps = birdcage_maps((COILS, n, n))
    k = (np.arange(n) - n // 2) / n
    window = np.exp(-0.5 * (k[:, None] ** 2 + k[None, :] ** 2) / 0.2 ** 2)
    kspace, sigma = add_noise(np.asarray(fftc(maps * image)) * window, snr_db, seed=1)
    return kspace, Acquisition(image, maps, sigma)


@pytest.fixture(scope="module")
def case():
    kspace, sim = acquire()
    mask = equispaced_mask(N, 2.0, 0.2, seed=0).astype(np.float32)
    A = MultiCoilMRI(jnp.asarray(sim.maps), jnp.asarray(mask))
    y = jnp.asarray(mask * kspace)
    x, _ = cg_sense(y, A.maps, A.mask, maxiter=30)
    yy, xx = np.mgrid[:N, :N]
    disc = ((yy - 0.4 * N) ** 2 + (xx - 0.55 * N) ** 2 < (0.06 * N) ** 2).astype(np.float32)
    hallucinated = x + 0.5 * float(np.abs(sim.image).max()) * disc
    return A, y, x, hallucinated, disc, sim


def test_cg_sense_is_trusted_and_a_hallucination_is_flagged(case):
    A, y, x, hallucinated, _, sim = case
    good = trust_report(A, y, x)
    bad = trust_report(A, y, hallucinated)
    assert abs(float(good.sigma) / sim.sigma - 1) < 0.15
    assert not bool(good.suspicious) and float(good.residual) <= float(good.expected)
    assert bool(bad.suspicious) and float(bad.residual) > FACTOR * float(bad.expected)
    assert good.factor == FACTOR and good.departure is None


def test_report_is_per_slice(case):
    A, y, x, hallucinated, _, sim = case
    report = trust_report(A, jnp.stack([y, y]), jnp.stack([x, hallucinated]), sigma=sim.sigma)
    assert report.residual.shape == report.expected.shape == report.suspicious.shape == (2,)
    np.testing.assert_array_equal(np.asarray(report.suspicious), [False, True])
    np.testing.assert_allclose(np.asarray(report.sigma), sim.sigma, rtol=1e-6)
    measured = int(np.sum(np.asarray(y) != 0))
    np.testing.assert_array_equal(np.asarray(report.measured), [measured, measured])
    expected = sim.sigma * np.sqrt(measured) / np.linalg.norm(np.asarray(y))
    np.testing.assert_allclose(np.asarray(report.expected), expected, rtol=1e-5)
    r = np.linalg.norm(np.asarray(A(hallucinated) - y)) / np.linalg.norm(np.asarray(y))
    np.testing.assert_allclose(float(report.residual[1]), r, rtol=1e-5)


def test_departure_map_marks_the_added_structure(case):
    A, y, x, hallucinated, disc, sim = case
    report = trust_report(A, y, hallucinated, classical=x)
    d = np.asarray(report.departure)
    assert d.shape == (N, N) and d.dtype == np.float32
    peak = np.abs(np.asarray(x)).max()
    np.testing.assert_allclose(d[disc > 0], 0.5 * np.abs(sim.image).max() / peak, rtol=1e-4)
    assert np.abs(d[disc == 0]).max() < 1e-6


@pytest.mark.parametrize("dtype", ["complex", "real"])
def test_noise_only_residual_matches_sigma_on_pure_noise(rng, dtype):
    n, sigma = 96, 0.3
    shape = (COILS, n, n)
    if dtype == "complex":
        noise = sigma / np.sqrt(2) * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))
    else:
        noise = sigma * rng.standard_normal(shape)
    assert float(estimate_sigma(noise, pool=1)) == pytest.approx(sigma, rel=0.05)
    assert estimate_sigma(noise).shape == (COILS,)
    if dtype == "complex":
        mask = equispaced_mask(n, 2.0, 0.2, seed=0).astype(np.float32)
        A = MultiCoilMRI(jnp.asarray(birdcage_maps(shape)), jnp.asarray(mask))
        report = trust_report(A, jnp.asarray(mask * noise, jnp.complex64), jnp.zeros((n, n), jnp.complex64))
        assert float(report.residual) == pytest.approx(1.0)
        assert float(report.expected) == pytest.approx(1.0, rel=0.05)
        assert float(report.sigma) == pytest.approx(sigma, rel=0.05)
        assert not bool(report.suspicious)


def test_write_trust_and_figure(case, tmp_path):
    A, y, x, hallucinated, _, sim = case
    report = trust_report(A, jnp.stack([y, y]), jnp.stack([x, hallucinated]),
                          classical=jnp.stack([x, x]))
    out = tmp_path / "recon.h5"
    write_trust(out, np.abs(np.stack([x, hallucinated])), report, attrs={"method": "test"})
    with h5py.File(out) as f:
        assert f["reconstruction"].shape == (2, N, N) and f.attrs["method"] == "test"
        np.testing.assert_array_equal(f["trust/suspicious"][()], [False, True])
        np.testing.assert_allclose(f["trust/residual"][()], np.asarray(report.residual))
        np.testing.assert_allclose(f["trust/expected_residual"][()], np.asarray(report.expected))
        assert f["trust/departure"].shape == (2, N, N)
        assert f.attrs["trust_factor"] == FACTOR and f.attrs["trust_suspicious_slices"] == "[1]"
    extra, attrs = trust_fields(report)
    assert set(extra) == {"trust/residual", "trust/expected_residual", "trust/sigma",
                          "trust/measured", "trust/suspicious", "trust/departure"}
    fig = trust_figure(np.asarray(hallucinated), np.asarray(x), report, index=1)
    assert len(fig.axes) == 3 and "SUSPICIOUS" in fig._suptitle.get_text()
    fig.savefig(tmp_path / "trust.png")
    assert (tmp_path / "trust.png").stat().st_size > 0


def test_bad_input(case):
    A, y, x, *_ = case
    with pytest.raises(ShapeError, match="classical"):
        trust_report(A, y, x, classical=x[:-1])
    with pytest.raises(ShapeError, match="output shape"):
        trust_report(A, y[:-1], x)
    with pytest.raises(InvalidDataError, match="factor"):
        trust_report(A, y, x, factor=0.0)
    with pytest.raises(InvalidDataError, match="departure"):
        trust_figure(np.asarray(x), np.asarray(x), trust_report(A, y, x))


def test_magnitude_image_gets_the_best_fitting_phase(case):
    """A magnitude image has no phase to test against the data: sense_trust fits the best one
    (fit_phase from the CG-SENSE phase), so the CG-SENSE magnitude is trusted as CG-SENSE itself
    is, though with a wrong phase it would be flagged, and a disc added to it is still flagged."""
    A, y, x, _, disc, sim = case
    magnitude = np.abs(np.asarray(x)).astype(np.float32)
    yy, xx = np.mgrid[:N, :N]
    ramp = np.exp(2j * np.pi * (xx + yy) / N).astype(np.complex64)
    wrong = trust_report(A, y, magnitude * ramp, sigma=sim.sigma)
    assert bool(wrong.suspicious)
    fitted = fit_phase(A, y, jnp.asarray(magnitude), jnp.asarray(magnitude * ramp))
    np.testing.assert_allclose(np.abs(np.asarray(fitted)), magnitude, rtol=1e-5, atol=1e-6)
    assert float(trust_report(A, y, fitted).residual) < float(wrong.residual)  # never increases
    good = sense_trust(A, y, magnitude, sigma=sim.sigma)
    assert not bool(good.suspicious)
    assert float(good.residual) == pytest.approx(float(trust_report(A, y, x).residual), rel=0.05)
    bad = sense_trust(A, y, magnitude + 0.5 * magnitude.max() * disc, sigma=sim.sigma)
    assert bool(bad.suspicious)
    # the departure map of a magnitude image compares magnitudes with CG-SENSE's
    assert np.asarray(bad.departure)[disc > 0].min() > 0.3 > np.asarray(good.departure).max()


def test_mri_trust_estimates_maps_and_stack_reports_joins_slices(case):
    A, y, x, hallucinated, _, sim = case
    mask = np.asarray(A.mask) > 0
    kspace = np.asarray(y)
    reports = [mri_trust(np.abs(np.asarray(image)), kspace, mask, sigma=sim.sigma)
               for image in (x, hallucinated)]
    report = stack_reports(reports)
    assert report.residual.shape == (2,) and report.departure.shape == (2, N, N)
    np.testing.assert_array_equal(np.asarray(report.suspicious), [False, True])
    with pytest.raises(InvalidDataError, match="no reports"):
        stack_reports([])


def test_ct_sigma_is_the_noise_of_the_log_sinogram(rng):
    """sigma^2 m of ct_sigma is ||y - p||^2 of Poisson noise after the log (counts or I0 alone)."""
    g = parallel_beam((N, N), np.linspace(0, np.pi, 60, endpoint=False), 70, pixel_size=1.0)
    image = shepp_logan_ct((N, N))[None] * 3.0
    clean = np.asarray(ct_operator(g)(jnp.asarray(image)), np.float32)
    counts = np.asarray(photon_counts(clean, 5e3, seed=2), np.float32)
    y = np.asarray(log_transform(counts, 5e3), np.float32)
    empirical = np.linalg.norm(y - clean) / np.sqrt(y.size)
    assert float(ct_sigma(CTData(y, g, counts, 5e3))[0]) == pytest.approx(empirical, rel=0.03)
    assert float(ct_sigma(CTData(y, g, None, 5e3))[0]) == pytest.approx(empirical, rel=0.03)
    assert ct_sigma(CTData(clean, g)) is None
    report = ct_trust(image, y, g, sigma=ct_sigma(CTData(y, g, counts, 5e3)))
    assert float(report.residual[0]) == pytest.approx(float(report.expected[0]), rel=0.03)
    # noiseless data: no noise level, no verdict (NaN), never a flag
    noiseless = ct_trust(image + 0.01, clean, g)
    assert np.isnan(float(noiseless.sigma[0])) and not bool(noiseless.suspicious[0])


def test_kspace_sigma_falls_back_to_the_outer_rows_of_a_column_mask(rng):
    """Corner columns not sampled (8x): the corner estimate is NaN, the outer ky rows of the
    measured columns give the noise; nothing measured gives NaN."""
    n, sigma = 64, 0.2
    shape = (COILS, n, n)
    noise = sigma / np.sqrt(2) * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))
    columns = np.zeros(n, np.float32)
    columns[n // 2 - 4:n // 2 + 4] = 1  # centre only: no corner sample
    y = jnp.asarray(noise * columns, jnp.complex64)
    assert np.isnan(float(estimate_sigma(y, pool=1)))
    assert float(kspace_sigma(y)) == pytest.approx(sigma, rel=0.1)
    full = jnp.asarray(noise, jnp.complex64)
    assert float(kspace_sigma(full)) == float(estimate_sigma(full, pool=1))  # corners measured: the same
    assert np.isnan(float(kspace_sigma(jnp.zeros((COILS, n, n), jnp.complex64))))
    assert kspace_sigma(jnp.stack([y, full])).shape == (2,)
