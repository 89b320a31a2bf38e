"""The trust report (recon.trust) on simulated multi-coil data with known noise.

The CG-SENSE solution of noisy data fits them to the noise level and must not be flagged; the same
image with a bright disc that is not in the data must be; on pure noise the noise-only residual
must equal the measured one and the estimated sigma the true one.
"""

from typing import NamedTuple

import h5py
import jax.numpy as jnp
import numpy as np
import pytest

from physics.errors import InvalidDataError, ShapeError
from physics.fft import fftc
from physics.mri import MultiCoilMRI
from physics.sampling import equispaced_mask
from physics.noise import add_noise
from physics.phantom import birdcage_maps, brain_phantom
from recon.sense import cg_sense
from recon.trust import FACTOR, estimate_sigma, trust_figure, trust_fields, trust_report, write_trust

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
