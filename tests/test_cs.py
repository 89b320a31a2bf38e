"""Compressed-sensing reconstructions (recon.cs) on simulated and real multi-coil data."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from physics.fft import fftc
from physics.mri import MultiCoilMRI
from physics.sampling import equispaced_mask
from physics.simulation import simulate_multicoil
from recon.cs import admm_tv, l1_wavelet, tv
from recon.metrics import psnr
from recon.sense import cg_sense, zero_filled
from recon.tv import finite_difference, total_variation
from recon.wavelet import Wavelet, wavelet_l1


@pytest.fixture(scope="module")
def problem():
    sim = simulate_multicoil(128, 12, 1, snr_db=30, seed=4)
    mask = equispaced_mask(128, 4, 0.1, seed=0).astype(np.float32)
    y = sim.kspace[0] * mask
    return y, sim.maps[0], mask, np.abs(sim.image[0]), sim.reference


def _objective_tv(x, y, maps, mask, weight):
    r = mask * fftc(maps * x) - y
    return 0.5 * float(jnp.sum(jnp.abs(r) ** 2)) + weight * float(total_variation(x, finite_difference(x.shape)))


def test_cs_beats_zero_filled_and_cg_sense_at_r4(problem):
    y, maps, mask, truth, _ = problem
    scores = {"zero-filled": psnr(truth[None], zero_filled(y)[None])}
    scores["sense"] = psnr(truth[None], jnp.abs(cg_sense(y, maps, mask, lam=0.01, maxiter=20)[0])[None])
    for name, solver in (("l1-wavelet", l1_wavelet), ("tv", tv), ("admm-tv", admm_tv)):
        scores[name] = psnr(truth[None], jnp.abs(solver(MultiCoilMRI(maps, mask), y)[0])[None])
    for name in ("l1-wavelet", "tv", "admm-tv"):
        assert scores[name] > scores["sense"] + 1 and scores[name] > scores["zero-filled"] + 4, scores


def test_pdhg_and_admm_reach_the_same_tv_minimiser(problem):
    """Two algorithms, one objective: their solutions agree and beat a perturbed point."""
    y, maps, mask, _, _ = problem
    a, _ = tv(MultiCoilMRI(maps, mask), y, lam=0.004, iterations=300)
    b, _ = admm_tv(MultiCoilMRI(maps, mask), y, lam=0.004, iterations=100, cg_iterations=10)
    assert float(jnp.linalg.norm(a - b) / jnp.linalg.norm(a)) < 0.01
    weight = 0.004 * float(jnp.max(jnp.abs(jnp.sum(jnp.conj(maps) * np.fft.fftshift(np.fft.ifft2(
        np.fft.ifftshift(y, axes=(-2, -1)), norm="ortho"), axes=(-2, -1)), axis=0))))
    f_a = _objective_tv(a, y, maps, mask, weight)
    rng = np.random.default_rng(0)
    for _ in range(5):
        d = (rng.standard_normal(a.shape) + 1j * rng.standard_normal(a.shape)).astype(np.complex64)
        assert f_a <= _objective_tv(a + 1e-3 * np.abs(a).max() * d, y, maps, mask, weight) + 1e-6 * f_a


def test_fista_objective_decreases_to_a_minimum(problem):
    y, maps, mask, _, _ = problem
    W = Wavelet.create((128, 128), "db4")

    def objective(x, weight):
        r = mask * fftc(maps * x) - y
        return 0.5 * float(jnp.sum(jnp.abs(r) ** 2)) + weight * float(wavelet_l1(x, W))

    x10, _ = l1_wavelet(MultiCoilMRI(maps, mask), y, lam=0.003, iterations=10, wavelet="db4")
    x80, _ = l1_wavelet(MultiCoilMRI(maps, mask), y, lam=0.003, iterations=80, wavelet="db4")
    x200, _ = l1_wavelet(MultiCoilMRI(maps, mask), y, lam=0.003, iterations=200, wavelet="db4")
    b = jnp.sum(jnp.conj(maps) * np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(y, axes=(-2, -1)),
                                                               norm="ortho"), axes=(-2, -1)), axis=0)
    weight = 0.003 * float(jnp.max(jnp.abs(b)))
    f = [objective(x, weight) for x in (b, x10, x80, x200)]
    assert f[1] < f[0] and f[2] < f[1] and f[3] <= f[2] * (1 + 1e-4)
    assert (f[2] - f[3]) / f[3] < 5e-3  # converged


def test_scale_invariance_of_lambda(problem):
    y, maps, mask, _, _ = problem
    a, _ = l1_wavelet(MultiCoilMRI(maps, mask), y)
    b, _ = l1_wavelet(MultiCoilMRI(maps, mask), y * 1e-5)
    np.testing.assert_allclose(np.asarray(b) * 1e5, a, atol=1e-3 * float(jnp.abs(a).max()))


def test_cycle_spinning_and_single_coil(problem):
    y, maps, mask, truth, _ = problem
    x, info = l1_wavelet(MultiCoilMRI(maps, mask), y, key=jax.random.key(1))
    assert psnr(truth[None], jnp.abs(x)[None]) > psnr(truth[None], zero_filled(y)[None]) + 4
    assert info.history.shape == (40,) and int(info.iterations) == 40
    # single coil: maps of ones, (1, ny, nx)
    image = truth.astype(np.complex64)
    y1 = fftc(image)[None] * mask
    x1, _ = tv(MultiCoilMRI(jnp.ones((1, 128, 128), jnp.complex64), mask), y1)
    assert psnr(truth[None], jnp.abs(x1)[None]) > psnr(truth[None], zero_filled(y1)[None]) + 2


def test_batched_over_slices(problem):
    y, maps, mask, _, _ = problem
    ys = jnp.stack([y, 2 * y])
    xs, info = jax.vmap(lambda k: l1_wavelet(MultiCoilMRI(maps, mask), k, iterations=10))(ys)
    np.testing.assert_allclose(xs[1], 2 * xs[0], atol=1e-3 * float(jnp.abs(xs[1]).max()))
    assert info.iterations.shape == (2,)
