"""CG-SENSE and zero-filled reconstruction on simulated and real multi-coil data."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sigpy.mri

from physics.fft import fftc, ifftc
from physics.mri import MultiCoilMRI
from physics.sampling import equispaced_mask
from physics.simulation import simulate_multicoil
from recon.metrics import psnr
from recon.sense import cg_sense, rss, zero_filled
from tests.conftest import complex_normal


@pytest.fixture(scope="module")
def sim():
    return simulate_multicoil(64, 8, 2, snr_db=40.0, seed=3)


def test_zero_filled_of_full_data_is_rss_reference(sim):
    np.testing.assert_allclose(zero_filled(sim.kspace), sim.reference, rtol=1e-4, atol=1e-5)


def test_rss_is_magnitude_for_normalised_maps(sim):
    coil_images = sim.maps[0] * sim.image[0]
    np.testing.assert_allclose(rss(coil_images), np.abs(sim.image[0]), atol=1e-5)


def test_fully_sampled_noise_free_sense_is_exact(sim):
    clean = fftc(sim.maps[0] * sim.image[0])
    x, info = cg_sense(clean, sim.maps[0], jnp.float32(1.0), maxiter=10, tol=1e-6)
    np.testing.assert_allclose(x, sim.image[0], atol=1e-4)
    assert int(info.iterations) <= 3  # S^H S = I: CG converges at once


def test_sense_least_squares_solution_matches_dense_solve(rng):
    """A tiny problem: CG-SENSE equals the dense regularised least-squares solution."""
    maps = complex_normal(rng, (3, 8, 6)) / 2
    mask = (rng.random(6) < 0.5).astype(np.float32)
    mask[3] = 1
    y = complex_normal(rng, (3, 8, 6)) * mask
    A = MultiCoilMRI(jnp.asarray(maps), jnp.asarray(mask))
    E = np.stack([np.asarray(A(e.reshape(8, 6))).ravel() for e in np.eye(48, dtype=np.complex64)], 1)
    lam = 0.05
    x_ref = np.linalg.solve(E.conj().T @ E + lam * np.eye(48), E.conj().T @ y.ravel()).reshape(8, 6)
    x, info = cg_sense(jnp.asarray(y), jnp.asarray(maps), jnp.asarray(mask), lam=lam, maxiter=200, tol=1e-7)
    np.testing.assert_allclose(x, x_ref, atol=1e-4 * np.abs(x_ref).max())
    assert bool(info.converged)


def test_sense_matches_sigpy_sense_recon(sim):
    """Same data, same maps, same lambda: our CG-SENSE and SigPy's SenseRecon agree."""
    mask = equispaced_mask(64, 3, 0.1, seed=0).astype(np.float32)
    y = sim.kspace[0] * mask
    ours, _ = cg_sense(y, sim.maps[0], mask, lam=0.01, maxiter=100, tol=1e-7)
    ref = sigpy.mri.app.SenseRecon(y, sim.maps[0], lamda=0.01, weights=np.broadcast_to(mask, y.shape[1:]),
                                   max_iter=100, show_pbar=False).run()
    np.testing.assert_allclose(ours, ref, atol=2e-3 * np.abs(ref).max())


def test_sense_beats_zero_filled_at_r3(sim):
    mask = equispaced_mask(64, 3, 0.08, seed=1).astype(np.float32)
    y = sim.kspace * mask
    recon = jax.vmap(lambda k, m: cg_sense(k, m, mask, maxiter=40)[0])(y, sim.maps)  # batched slices
    truth = np.abs(sim.image)
    assert float(psnr(truth, np.abs(recon))) > float(psnr(truth, zero_filled(y))) + 8


def test_sense_3d(rng):
    sim3 = simulate_multicoil(16, 4, 1, snr_db=60, seed=0)
    maps = np.stack([sim3.maps[0]] * 4, axis=1)  # (coils, nz, ny, nx)
    x = np.stack([sim3.image[0]] * 4)
    mask = (rng.random((16, 16)) < 0.5).astype(np.float32)
    mask[6:10, 6:10] = 1
    y = fftc(maps * x, 3) * mask
    xr, _ = cg_sense(y, maps, mask, maxiter=60, tol=1e-7, ndim=3)
    assert np.linalg.norm(xr - x) / np.linalg.norm(x) < 0.05
