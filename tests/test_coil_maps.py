"""Coil maps: calibration regions, ESPIRiT against SigPy, an exact eigen-solve and the true maps,
the projection property, scale invariance, ACS maps, the real 12-channel brain, bad input."""

from __future__ import annotations

import h5py
import jax
import numpy as np
import pytest
import sigpy.mri

from physics.coil_maps import acs_maps, calibration_region, espirit
from physics.errors import InvalidDataError, ShapeError
from physics.fft import fftc, ifftc
from physics.phantom import birdcage_maps, brain_phantom
from tests.conftest import complex_normal


def _correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per pixel ``|<a, b>| / (||a|| ||b||)`` over the coil axis (1: equal up to a phase)."""
    num = np.abs(np.sum(a * np.conj(b), axis=0))
    den = np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0)
    return num / np.maximum(den, 1e-30)


def _rss(maps) -> np.ndarray:
    return np.sqrt(np.sum(np.abs(np.asarray(maps)) ** 2, axis=0))


@pytest.fixture(scope="module")
def sim():
    """8 coils, 96 x 96, fully sampled, noiseless: image, true maps, k-space, object mask."""
    image = brain_phantom((96, 96), seed=3)
    maps = birdcage_maps((8, 96, 96))
    kspace = np.asarray(fftc(maps * image))
    obj = np.abs(image) > 0.05 * np.abs(image).max()
    return image, maps, kspace, obj


@pytest.fixture(scope="module")
def sim_maps(sim):
    return np.asarray(espirit(sim[2], calib=(24, 24)))


@pytest.fixture(scope="module")
def real(data_dir):
    with h5py.File(data_dir / "brain_12ch_3x2_real.h5", "r") as f:
        return f["kspace"][0], f["mask"][()]


# ------------------------------------------------------------------------------------------------
# calibration_region
# ------------------------------------------------------------------------------------------------
def _planted(shape, block, rng, density=0.3):
    """Random pattern with a fully sampled centred block (start N//2 - n//2) and no wider one."""
    mask = rng.random(shape) < density
    inner = tuple(slice(s // 2 - n // 2, s // 2 - n // 2 + n) for n, s in zip(block, shape))
    # A ring of unsampled points just outside the block on every side makes it maximal.
    outer = tuple(slice(max(s // 2 - n // 2 - 1, 0), s // 2 - n // 2 + n + 1)
                  for n, s in zip(block, shape))
    mask[outer] = False
    mask[inner] = True
    return mask


@pytest.mark.parametrize("shape, block", [((64, 48), (24, 20)), ((63, 47), (13, 9)), ((64, 47), (10, 11)),
                                          ((33, 40), (1, 6)), ((32, 32), (32, 30)), ((12, 10, 14), (4, 5, 6))])
def test_calibration_region_planted_block(shape, block):
    rng = np.random.default_rng(sum(shape) + sum(block))
    mask = _planted(shape, block, rng)
    mask_before = mask.copy()
    assert calibration_region(mask, shape) == block
    assert calibration_region(mask.astype(np.float32)) == block  # 0/1 weights, default shape
    np.testing.assert_array_equal(mask, mask_before)


def test_calibration_region_column_mask_gives_all_rows():
    mask = np.zeros(40, bool)
    mask[::4] = True
    mask[20 - 6:20 + 6] = True  # 12 centre columns: 14..25
    assert calibration_region(mask, (30, 40)) == (30, 12)
    assert calibration_region(mask[None, :], (30, 40)) == (30, 12)
    odd = np.zeros(41, bool)
    odd[20 - 3:20 + 4] = True  # symmetric 7 around index 20
    assert calibration_region(odd, (9, 41)) == (9, 7)


def test_calibration_region_even_rule_and_asymmetry():
    # Even sizes take one more sample below the centre: [c - n//2, c + n//2 - 1].
    line = np.zeros(32, bool)
    line[16 - 5:16 + 5] = True  # 11..20
    assert calibration_region(line) == (10,)
    shifted = np.zeros(32, bool)
    shifted[16 - 4:16 + 6] = True  # 12..21: the same 10 samples shifted up by one
    assert calibration_region(shifted) == (9,)  # 12..20 is the largest block by the rule


def test_calibration_region_maximal_on_random_patterns():
    # Independent check of the growth rule: the block is fully sampled and no single axis can grow.
    rng = np.random.default_rng(7)
    for trial in range(20):
        shape = tuple(rng.integers(8, 30, size=2))
        mask = rng.random(shape) < 0.9
        mask[tuple(s // 2 for s in shape)] = True
        size = calibration_region(mask)
        starts = [s // 2 - n // 2 for s, n in zip(shape, size)]

        def full(sz):
            lo = [s // 2 - n // 2 for s, n in zip(shape, sz)]
            inside = all(0 <= a and a + n <= s for a, n, s in zip(lo, sz, shape))
            return inside and mask[lo[0]:lo[0] + sz[0], lo[1]:lo[1] + sz[1]].all()

        assert min(starts) >= 0
        assert full(size), (trial, size)
        for axis in range(2):
            grown = list(size)
            grown[axis] += 1
            assert grown[axis] > shape[axis] or not full(grown), (trial, size, axis)


def test_calibration_region_from_kspace_nonzeros(sim):
    kspace = sim[2]
    sampled = np.zeros(kspace.shape[1:], bool)
    sampled[::3] = True
    sampled[48 - 8:48 + 8, 48 - 10:48 + 10] = True
    assert calibration_region(np.any(kspace * sampled != 0, axis=0)) == (16, 20)


def test_calibration_region_errors():
    mask = np.ones((16, 16), bool)
    mask[8, 8] = False
    with pytest.raises(InvalidDataError, match="centre"):
        calibration_region(mask)
    with pytest.raises(InvalidDataError):
        calibration_region(np.zeros(16), (8, 16))
    with pytest.raises(ShapeError, match="broadcast"):
        calibration_region(np.ones(15, bool), (16, 16))


def test_calibration_region_real_file(real):
    kspace, mask = real
    # The file's README and attributes say "24x20"; the mask (and the non-zeros of the k-space)
    # hold a fully sampled 24 x 24 block: rows 100..123 and columns 68..91.
    assert calibration_region(mask, mask.shape) == (24, 24)
    assert calibration_region(np.any(kspace != 0, axis=0)) == (24, 24)
    assert mask[100:124, 68:92].all() and not mask[99, 68:92].all() and not mask[100:124, 92].all()


# ------------------------------------------------------------------------------------------------
# ESPIRiT on simulated data
# ------------------------------------------------------------------------------------------------
def _sigpy(kspace, width, crop=0.95):
    return sigpy.mri.app.EspiritCalib(kspace, calib_width=width, thresh=0.02, kernel_width=6,
                                      crop=crop, show_pbar=False).run()


def test_espirit_matches_sigpy_fully_sampled(sim, sim_maps):
    _, _, kspace, obj = sim
    ref = _sigpy(kspace, 24)
    ours, theirs = np.linalg.norm(sim_maps, axis=0) > 0, np.linalg.norm(ref, axis=0) > 0
    assert np.mean(ours == theirs) > 0.99
    both = obj & ours & theirs
    assert both.sum() > 0.95 * obj.sum()
    assert _correlation(sim_maps, ref)[both].min() > 0.99


def test_espirit_matches_sigpy_and_truth_undersampled(sim):
    image, maps, kspace, obj = sim
    rng = np.random.default_rng(0)
    mask = rng.random(96) < 0.25
    mask[48 - 12:48 + 12] = True  # 24 centre columns
    noisy = (kspace + 1e-3 * np.abs(kspace).max() * complex_normal(rng, kspace.shape)) * mask
    ours = np.asarray(espirit(noisy, calib=(24, 24)))
    ref = _sigpy(noisy, 24)
    both = obj & (np.linalg.norm(ours, axis=0) > 0) & (np.linalg.norm(ref, axis=0) > 0)
    assert both.sum() > 0.95 * obj.sum()
    assert np.percentile(_correlation(ours, ref)[both], 1) > 0.99
    # The calibration block found from the mask: all 96 rows capped at 32, 24 columns.
    auto = np.asarray(espirit(noisy, mask=mask))
    assert calibration_region(mask, (96, 96)) == (96, 24)
    supported = obj & (_rss(auto) > 0)
    assert supported.sum() > 0.95 * obj.sum()
    assert np.percentile(_correlation(auto, maps)[supported], 1) > 0.99


def _exact_espirit(kspace, calib, kernel, threshold):
    """Direct numpy ESPIRiT: Hankel SVD, G from zero-padded inverse-FFT kernels, eigh per pixel."""
    coils, ny, nx = kspace.shape
    block = kspace[:, ny // 2 - calib[0] // 2:, nx // 2 - calib[1] // 2:][:, :calib[0], :calib[1]]
    rows = [block[:, i:i + kernel, j:j + kernel].ravel()
            for i in range(calib[0] - kernel + 1) for j in range(calib[1] - kernel + 1)]
    _, s, vh = np.linalg.svd(np.array(rows, np.complex128), full_matrices=False)
    kernels = vh[s >= threshold * s[0]].reshape(-1, coils, kernel, kernel)
    padded = np.zeros(kernels.shape[:2] + (ny, nx), complex)
    padded[..., :kernel, :kernel] = kernels  # placement only adds a phase common to all coils
    # Unnormalised inverse DFT sum_j h[j] exp(+2 pi i j.r / N), shifted so that the image origin
    # sits at index N//2 as in the centred FFT.
    w = np.fft.fftshift(np.fft.ifft2(padded), axes=(-2, -1)) * (ny * nx)
    G = np.einsum("kayx,kbyx->yxab", w, w.conj()) / kernel ** 2
    values, vectors = np.linalg.eigh(G)
    return values[..., -1], np.moveaxis(vectors[..., -1], -1, 0), values[..., -2]


def test_espirit_matches_exact_eigendecomposition(rng):
    coils, n = 6, 40
    kspace = np.asarray(fftc(birdcage_maps((coils, n, n)) * brain_phantom((n, n), seed=5)))
    kspace = kspace + 1e-3 * np.abs(kspace).max() * complex_normal(rng, kspace.shape)
    value, vector, second = _exact_espirit(kspace, (16, 14), 5, 0.03)
    maps, eig = espirit(kspace, calib=(16, 14), kernel=5, threshold=0.03, crop=0.9, return_eigenvalues=True)
    maps, eig = np.asarray(maps), np.asarray(eig)
    keep = value >= 0.9
    assert keep.sum() > 0.5 * n * n
    np.testing.assert_allclose(eig[keep], value[keep], atol=2e-3)
    gap = keep & (second < 0.95 * value)  # where the dominant eigenvector is well defined
    assert gap.sum() > 0.5 * n * n
    assert _correlation(maps, vector)[gap].min() > 0.999
    assert np.mean((_rss(maps) > 0) == (value >= 0.9)) > 0.99


@pytest.mark.parametrize("calib", [(24, 20), (96, 24)])
def test_espirit_rectangular_calibration_recovers_true_maps(sim, calib):
    image, maps, kspace, obj = sim
    ours = np.asarray(espirit(kspace, calib=calib))
    supported = obj & (_rss(ours) > 0)
    assert supported.sum() > 0.95 * obj.sum()
    assert _correlation(ours, maps)[supported].min() > 0.99


def test_espirit_projection_property(sim, sim_maps):
    _, _, kspace, obj = sim
    images = np.asarray(ifftc(kspace))
    combined = np.sum(np.conj(sim_maps) * images, axis=0)
    residual = sim_maps * combined - images
    assert np.linalg.norm(residual[:, obj]) < 0.03 * np.linalg.norm(images[:, obj])
    rss = _rss(sim_maps)
    np.testing.assert_allclose(rss[rss > 0], 1.0, atol=1e-4)


def test_espirit_scale_invariant(sim, sim_maps):
    kspace = sim[2]
    for scale in (1e-6, 1e4):
        scaled = np.asarray(espirit(kspace * scale, calib=(24, 24)))
        assert np.abs(scaled - sim_maps).max() < 1e-3


def test_espirit_without_crop_is_plain_power_iteration(sim, sim_maps):
    maps, eig = espirit(sim[2], calib=(24, 24), crop=0.0, return_eigenvalues=True)
    maps, eig = np.asarray(maps), np.asarray(eig)
    assert np.all(_rss(maps) > 0.999)  # nothing cropped
    support = _rss(sim_maps) > 0
    assert eig[support].min() >= 0.95 - 1e-4
    assert _correlation(maps, sim_maps)[support & sim[3]].min() > 0.999


def test_espirit_phase_follows_virtual_coil(sim, sim_maps):
    # Phase reference: the virtual coil p^H S (p: first principal component over coils of the
    # calibration data) has one constant phase wherever the maps are non-zero.
    kspace = sim[2]
    block = kspace[:, 36:60, 36:60].reshape(8, -1)
    p = np.linalg.eigh(block @ block.conj().T)[1][:, -1]
    z = np.tensordot(p.conj(), sim_maps, axes=1)[_rss(sim_maps) > 0]
    assert np.abs(z).min() > 0.1
    assert np.abs(np.angle(z * np.conj(z[0]))).max() < 1e-3


def test_espirit_3d_projection_property():
    shape = (16, 24, 24)
    image = brain_phantom(shape, seed=1)
    kspace = np.asarray(fftc(birdcage_maps((6,) + shape, rings=2) * image, 3))
    maps = np.asarray(espirit(kspace, calib=(10, 10, 10), kernel=3))
    obj = np.abs(image) > 0.05 * np.abs(image).max()
    images = np.asarray(ifftc(kspace, 3))
    residual = maps * np.sum(np.conj(maps) * images, axis=0) - images
    assert np.linalg.norm(residual[:, obj]) < 0.05 * np.linalg.norm(images[:, obj])


def test_espirit_vmap_over_slices(sim, sim_maps):
    kspace = sim[2]
    stack = np.stack([kspace, 2 * kspace])
    maps = jax.vmap(lambda k: espirit(k, calib=(24, 24)))(stack)
    assert maps.shape == (2,) + kspace.shape and maps.dtype == np.complex64
    assert np.abs(np.asarray(maps) - sim_maps).max() < 1e-3


# ------------------------------------------------------------------------------------------------
# ACS maps
# ------------------------------------------------------------------------------------------------
def test_acs_maps_normalised_and_close_to_truth(sim):
    image, maps, kspace, obj = sim
    before = kspace.copy()
    acs = np.asarray(acs_maps(kspace, calib=(24, 24)))
    np.testing.assert_array_equal(kspace, before)
    assert acs.dtype == np.complex64 and acs.shape == kspace.shape
    rss = _rss(acs)
    np.testing.assert_allclose(rss[obj], 1.0, atol=1e-4)
    assert rss.max() <= 1.0 + 1e-4  # the floor only shrinks the background
    assert np.median(_correlation(acs, maps)[obj]) > 0.99


# ------------------------------------------------------------------------------------------------
# real data
# ------------------------------------------------------------------------------------------------
def test_real_file_maps(real):
    kspace, mask = real
    maps = np.asarray(espirit(kspace, mask=mask))
    acs = np.asarray(acs_maps(kspace, mask=mask))
    assert maps.shape == kspace.shape and maps.dtype == np.complex64
    assert np.all(np.isfinite(maps)) and np.all(np.isfinite(acs))
    # Object: where the low-resolution (calibration-only) coil images carry signal.
    block = np.zeros_like(kspace)
    block[:, 100:124, 68:92] = kspace[:, 100:124, 68:92]
    low = np.asarray(ifftc(block))
    obj = _rss(low) > 0.15 * _rss(low).max()
    rss = _rss(maps)
    assert np.mean(rss[obj] > 0) > 0.98
    np.testing.assert_allclose(rss[rss > 0], 1.0, atol=1e-4)
    np.testing.assert_allclose(_rss(acs)[obj], 1.0, atol=1e-4)
    # The maps explain the calibration-resolution coil images (S S^H is the identity on them).
    inside = obj & (rss > 0)
    residual = maps * np.sum(np.conj(maps) * low, axis=0) - low
    assert np.linalg.norm(residual[:, inside]) < 0.1 * np.linalg.norm(low[:, inside])


def test_real_file_matches_sigpy(real):
    kspace, _ = real
    ours = np.asarray(espirit(kspace, calib=(20, 20)))
    ref = _sigpy(kspace, 20)
    sup_ours, sup_ref = _rss(ours) > 0, _rss(ref) > 0
    assert np.mean(sup_ours == sup_ref) > 0.99
    both = sup_ours & sup_ref
    assert np.mean(_correlation(ours, ref)[both] > 0.99) > 0.99


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------
def test_espirit_bad_input(sim):
    kspace = sim[2]
    with pytest.raises(InvalidDataError, match="smaller than the kernel"):
        espirit(kspace, calib=(24, 5))
    small = np.zeros(96, bool)
    small[46:50] = True
    with pytest.raises(InvalidDataError, match="smaller than the kernel"):
        espirit(kspace * small, mask=small)
    for bad in (np.nan, np.inf):
        broken = kspace.copy()
        broken[3, 10, 10] = bad
        with pytest.raises(InvalidDataError, match="NaN or Inf"):
            espirit(broken, calib=(24, 24))
        with pytest.raises(InvalidDataError, match="NaN or Inf"):
            acs_maps(broken)
    hole = kspace.copy()
    hole[:, 48, 48] = 0
    with pytest.raises(InvalidDataError, match="centre"):
        espirit(hole)
    with pytest.raises(InvalidDataError, match="all zeros"):
        espirit(np.zeros_like(kspace), calib=(24, 24))
    with pytest.raises(ShapeError):
        espirit(kspace[0], calib=(24, 24))
    with pytest.raises(ShapeError):
        espirit(kspace, calib=(24,))
    with pytest.raises(ShapeError):
        acs_maps(kspace, calib=(24, 200))
    with pytest.raises(ShapeError, match="broadcast"):
        espirit(kspace, mask=np.ones(95, bool))
    for kwargs in ({"kernel": 0}, {"threshold": 0.0}, {"threshold": 1.5}, {"crop": 1.0}, {"crop": -0.1},
                   {"iterations": 0}):
        with pytest.raises(InvalidDataError):
            espirit(kspace, calib=(24, 24), **kwargs)
    with pytest.raises(InvalidDataError):
        acs_maps(kspace, floor=0.0)
    with pytest.raises(InvalidDataError, match="inside jit"):
        jax.jit(lambda k: espirit(k))(kspace)
