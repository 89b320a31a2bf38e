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
from recon.pipeline import ReconOptions, coil_maps, reconstruct, reconstruct_slice


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


def test_reconstruct_many_slices_and_progress(brain):
    kspace, _ = brain
    mask = equispaced_mask(kspace.shape[-1], 2, 0.16, seed=0)
    ticks = []
    images = reconstruct([(kspace, mask), (kspace[::-1], mask)], ReconOptions(method="zero-filled"),
                         progress=lambda: ticks.append(1))
    assert images.shape == (2, 256, 256) and images.dtype == np.float32 and len(ticks) == 2


def test_options_are_validated():
    for bad in ({"method": "magic"}, {"maps": "x"}, {"iterations": 0}, {"lam": -1}, {"crop": 1.0}):
        with pytest.raises(InvalidDataError):
            ReconOptions(**bad)
    assert dataclasses.replace(ReconOptions(), lam=0.5).lam == 0.5
