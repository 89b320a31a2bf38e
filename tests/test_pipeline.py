"""The reconstruction pipeline on real multi-coil data from ../shared/data."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from physics.errors import InvalidDataError
from physics.fft import fftc
from physics.noise import noise_covariance, whitening_matrix
from physics.sampling import equispaced_mask
from recon.io import open_raw, read_noise
from recon.metrics import evaluate
from recon.pipeline import ReconOptions, coil_maps, reconstruct_slice


@pytest.fixture(scope="module")
def brain(data_dir):
    with open_raw(data_dir / "brain_4ch_real.h5") as raw:
        return raw.kspace(0), raw.reference()


@pytest.mark.parametrize("name", ["brain_4ch_real.h5", "mr_small_8ch_semireal.h5"])
def test_sense_beats_zero_filled_on_real_data(data_dir, name):
    with open_raw(data_dir / name) as raw:
        kspace, reference = raw.kspace(0), raw.reference()
    mask = equispaced_mask(kspace.shape[-1], 2, 0.08, seed=0)
    scores = {m: evaluate(reference, reconstruct_slice(kspace, mask, ReconOptions(method=m))[None])
              for m in ("zero-filled", "sense")}
    assert scores["sense"]["psnr"] > scores["zero-filled"]["psnr"] + 2
    assert scores["sense"]["ssim"] > scores["zero-filled"]["ssim"]


def test_fully_sampled_sense_reproduces_rss(brain):
    kspace, reference = brain
    image = reconstruct_slice(kspace, np.ones(kspace.shape[-1], bool), ReconOptions(lam=0.0, iterations=30, crop=0.0))
    scores = evaluate(reference, image[None])
    # the coherent SENSE combination has a lower noise floor in the background than RSS
    assert scores["psnr"] > 40 and scores["ssim"] > 0.9


def test_scale_invariance(brain):
    """Real k-space comes at any scale: the image scales with the data, nothing else changes."""
    kspace, _ = brain
    mask = equispaced_mask(kspace.shape[-1], 3, 0.1, seed=1)
    a = reconstruct_slice(kspace, mask, ReconOptions())
    b = reconstruct_slice(kspace * np.float32(1e-6), mask, ReconOptions())
    np.testing.assert_allclose(b * 1e6, a, rtol=0, atol=2e-3 * a.max())


def test_real_undersampled_3x2_is_data_consistent(data_dir):
    """brain_12ch_3x2_real.h5 has no ground truth: check the fit to the measured samples."""
    with open_raw(data_dir / "brain_12ch_3x2_real.h5") as raw:
        kspace, mask = raw.kspace(0), raw.mask(0)
    options = ReconOptions(lam=0.0, iterations=30)
    maps = np.asarray(coil_maps(kspace, mask, options))
    image = reconstruct_slice(kspace, mask, options)
    assert np.isfinite(image).all() and image.max() > 0
    # with lambda = 0 the least-squares fit explains most of the sampled k-space energy
    from recon.sense import cg_sense
    x, info = cg_sense(kspace, maps, mask.astype(np.float32), maxiter=30)
    residual = np.linalg.norm((fftc(maps * np.asarray(x)) - kspace) * mask) / np.linalg.norm(kspace)
    assert residual < 0.2
    np.testing.assert_allclose(np.abs(np.asarray(x)), image, atol=1e-3 * image.max())


def test_prewhitening_with_real_noise_scan(data_dir, rng):
    """Correlated coil noise (the real 16-channel covariance) whitened before reconstruction."""
    noise = read_noise(data_dir / "noise_16ch_real.h5")
    W = whitening_matrix(noise_covariance(noise))
    with open_raw(data_dir / "mr_small_8ch_semireal.h5") as raw:
        kspace, reference = raw.kspace(0), raw.reference()
    # 16 virtual coils: the 8 real ones and 8 phase-shifted copies, mixed by the noise's colouring
    mixed = np.concatenate([kspace, 1j * kspace])
    coloured = np.einsum("ab,byx->ayx", np.linalg.inv(W), mixed).astype(np.complex64)
    mask = equispaced_mask(64, 2, 0.16, seed=0)
    plain = reconstruct_slice(coloured, mask, ReconOptions())
    white = reconstruct_slice(coloured, mask, ReconOptions(), whitening=W)
    assert np.isfinite(white).all()
    # whitening undoes the colouring up to a global scale: same image after normalisation
    ref = reconstruct_slice(mixed, mask, ReconOptions())
    scale = np.vdot(white, ref).real / np.vdot(white, white).real
    assert np.linalg.norm(white * scale - ref) < 0.05 * np.linalg.norm(ref)
    assert evaluate(reference, white[None] * scale / np.sqrt(2))["psnr"] > 25
    assert plain.shape == white.shape


def test_options_are_validated():
    for bad in ({"method": "magic"}, {"maps": "x"}, {"iterations": 0}, {"lam": -1}, {"crop": 1.0}):
        with pytest.raises(InvalidDataError):
            ReconOptions(**bad)
    assert dataclasses.replace(ReconOptions(), lam=0.5).lam == 0.5


def test_noncartesian_methods_on_simulated_radial_data():
    """48 golden-angle spokes for a 96^2 image (~3x under Nyquist): CS beats SENSE beats gridding."""
    from physics.simulation import simulate_radial
    from recon.pipeline import reconstruct_noncartesian_slice

    sim = simulate_radial(96, 8, 1, spokes=48, snr_db=30, seed=2)
    ref = sim.reference

    def score(method):
        x = reconstruct_noncartesian_slice(sim.kspace[0], sim.trajectory, (96, 96), ReconOptions(method=method))
        s = np.vdot(x, ref[0]).real / np.vdot(x, x).real  # the maps' normalisation fixes no global scale
        return evaluate(ref, s * x[None])["psnr"]

    scores = {m: score(m) for m in ("zero-filled", "sense", "tv")}
    assert scores["tv"] > scores["sense"] + 2 and scores["sense"] > scores["zero-filled"] + 1, scores


def test_noncartesian_real_radial_cardiac(data_dir):
    """The real 12-channel radial scan (25 spokes): our gridding reproduces the file's DCF-weighted
    exact-NUDFT image; SENSE (maps from the gridded centre) removes most of its streaks, which
    fill the anatomy-free bottom band of the field of view."""
    import h5py

    from recon.pipeline import reconstruct_noncartesian_slice

    with h5py.File(data_dir / "cardiac_radial_12ch_real.h5") as f:
        kspace = f["kspace"][0]
        traj = 256 * f["trajectory"][()][..., ::-1]  # (kx, ky) cycles/pixel -> (ky, kx) cycles/FOV
        gridding, dcf = f["gridding_rss"][0], f["dcf"][()]
    traj = np.where(traj >= 128, traj - 256, traj).astype(np.float32)  # +N/2 wraps to -N/2
    zf = reconstruct_noncartesian_slice(kspace, traj, (256, 256), ReconOptions(method="zero-filled"), dcf=dcf)
    assert np.corrcoef(zf.ravel(), gridding.ravel())[0, 1] > 0.99
    x = reconstruct_noncartesian_slice(kspace, traj, (256, 256), ReconOptions(method="sense", iterations=10),
                                       dcf=dcf)
    streaks = lambda im: im[215:].mean() / im[64:192, 64:192].mean()  # noqa: E731
    assert streaks(x) < 0.3 * streaks(zf), (streaks(x), streaks(zf))
    assert np.isfinite(x).all() and x.shape == (256, 256)
