"""Sampling masks: fastMRI column masks and variable-density Poisson disc."""

from __future__ import annotations

import numpy as np
import pytest

from physics.errors import InvalidDataError
from physics.sampling import acceleration, equispaced_mask, poisson_disc_mask, random_mask


def _fastmri_centre(num_cols: int, center_fraction: float) -> tuple[int, int]:
    """Start and width of fastMRI's centre block (subsample.py: pad = (N - N_low + 1) // 2)."""
    width = int(round(num_cols * center_fraction))
    return (num_cols - width + 1) // 2, width


@pytest.mark.parametrize("mask_fn", [random_mask, equispaced_mask])
@pytest.mark.parametrize("num_cols, center_fraction", [(368, 0.08), (320, 0.04), (37, 0.1),
                                                       (64, 0.125), (25, 0.2)])
def test_centre_block(mask_fn, num_cols, center_fraction):
    mask = mask_fn(num_cols, 4, center_fraction, seed=1)
    assert mask.shape == (num_cols,) and mask.dtype == bool
    start, width = _fastmri_centre(num_cols, center_fraction)
    assert mask[start:start + width].all()
    assert width == round(num_cols * center_fraction)
    # Centred on the DC column N // 2 (within half a column for even widths).
    centre = start + (width - 1) / 2
    assert abs(centre - num_cols // 2) <= 0.5
    assert start <= num_cols // 2 < start + width


def test_centre_block_examples():
    """Hand-worked cases: N=8 with 2 or 3 centre columns, N=9 with 2 or 3."""
    for n, frac, expected in [(8, 0.25, [3, 4]), (8, 0.375, [3, 4, 5]), (9, 0.25, [4, 5]),
                              (9, 1 / 3, [3, 4, 5])]:
        mask = random_mask(n, n / len(expected), frac, seed=0)  # centre block only
        assert list(np.flatnonzero(mask)) == expected, (n, frac)


def test_random_mask_acceleration_on_average():
    num_cols, accel, frac = 320, 4, 0.08
    counts = [random_mask(num_cols, accel, frac, seed=s).sum() for s in range(400)]
    # Expected N / acc = 80 columns; std of the mean over 400 draws is about 0.3.
    assert np.mean(counts) == pytest.approx(num_cols / accel, abs=1.5)
    assert np.std(counts) > 1  # genuinely random
    # Outside the centre the empirical probability matches fastMRI's rule.
    start, width = _fastmri_centre(num_cols, frac)
    outside = np.ones(num_cols, dtype=bool)
    outside[start:start + width] = False
    masks = np.array([random_mask(num_cols, accel, frac, seed=s) for s in range(400)])
    prob = (num_cols / accel - width) / (num_cols - width)
    assert masks[:, outside].mean() == pytest.approx(prob, abs=0.01)


@pytest.mark.parametrize("num_cols, accel, frac", [(368, 4, 0.08), (368, 8, 0.04), (320, 6, 0.06),
                                                   (640, 4, 0.08), (100, 3, 0.0)])
def test_equispaced_mask_acceleration(num_cols, accel, frac):
    for seed in range(5):
        mask = equispaced_mask(num_cols, accel, frac, seed=seed)
        assert acceleration(mask) == pytest.approx(accel, rel=0.05)
    # Outside the centre, the sampled columns are (nearly) equally spaced.
    start, width = _fastmri_centre(num_cols, frac)
    cols = np.flatnonzero(mask)
    outer = cols[(cols < start - 1) | (cols > start + width)]
    spacing = accel * (num_cols - width) / (num_cols - accel * width)
    gaps = np.diff(outer[outer < start])
    if gaps.size:
        assert np.all(np.abs(gaps - spacing) <= 1.0)


@pytest.mark.parametrize("mask_fn", [random_mask, equispaced_mask])
def test_column_masks_deterministic_per_seed(mask_fn):
    a = mask_fn(320, 4, 0.08, seed=11)
    np.testing.assert_array_equal(a, mask_fn(320, 4, 0.08, seed=11))
    np.testing.assert_array_equal(a, mask_fn(320, 4, 0.08, seed=np.random.default_rng(11)))
    different = [not np.array_equal(a, mask_fn(320, 4, 0.08, seed=s)) for s in range(12, 20)]
    assert any(different)  # equispaced masks differ only by their offset


def test_acceleration_one_samples_everything():
    assert random_mask(50, 1.0, 0.1, seed=0).all()
    assert poisson_disc_mask((16, 12), 1.0, calib=(4, 4)).all()
    assert acceleration(np.ones((4, 5))) == 1.0
    assert acceleration(np.array([1, 0, 0, 0])) == 4.0


@pytest.fixture(scope="module")
def pd_mask() -> np.ndarray:
    return poisson_disc_mask((128, 96), 6.0, calib=(20, 16), seed=3)


def test_poisson_disc_acceleration_and_calib(pd_mask):
    assert pd_mask.shape == (128, 96) and pd_mask.dtype == bool
    assert acceleration(pd_mask) == pytest.approx(6.0, rel=0.05)
    y0, x0 = (128 - 20 + 1) // 2, (96 - 16 + 1) // 2
    assert pd_mask[y0:y0 + 20, x0:x0 + 16].all()
    assert pd_mask[64, 48]  # DC


def test_poisson_disc_variable_density(pd_mask):
    ny, nx = pd_mask.shape
    y, x = np.mgrid[:ny, :nx]
    r = np.hypot((y - ny // 2) / (ny / 2), (x - nx // 2) / (nx / 2))
    near = pd_mask[(r > 0.3) & (r < 0.45)].mean()  # just outside the calibration block
    far = pd_mask[r > 0.85].mean()
    assert near > 2 * far > 0


def test_poisson_disc_minimum_distance_in_outer_region(pd_mask):
    ny, nx = pd_mask.shape
    ys, xs = np.nonzero(pd_mask)
    r = np.hypot((ys - ny // 2) / (ny / 2), (xs - nx // 2) / (nx / 2))
    outer = r > 0.7
    points = np.stack([ys[outer], xs[outer]], axis=1).astype(float)
    d = np.sqrt(((points[:, None, :] - points[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    assert d.min() > 1.0 + 1e-9  # no two outer samples are neighbours
    # ... and yet the outer region is sampled (at least 1 pixel in 50).
    y, x = np.mgrid[:ny, :nx]
    outer_pixels = np.hypot((y - ny // 2) / (ny / 2), (x - nx // 2) / (nx / 2)) > 0.7
    assert points.shape[0] > 0.02 * outer_pixels.sum()


@pytest.mark.parametrize("shape, accel, calib", [((256, 256), 8, (24, 24)), ((64, 80), 4, (12, 12)),
                                                 ((100, 60), 10, (0, 0))])
def test_poisson_disc_accelerations(shape, accel, calib):
    mask = poisson_disc_mask(shape, accel, calib=calib, seed=0)
    assert acceleration(mask) == pytest.approx(accel, rel=0.05)


def test_poisson_disc_deterministic_per_seed():
    a = poisson_disc_mask((64, 64), 5, calib=(8, 8), seed=4)
    np.testing.assert_array_equal(a, poisson_disc_mask((64, 64), 5, calib=(8, 8), seed=4))
    assert not np.array_equal(a, poisson_disc_mask((64, 64), 5, calib=(8, 8), seed=5))


@pytest.mark.parametrize("call", [
    lambda: random_mask(0, 4, 0.08),
    lambda: random_mask(100, 0.5, 0.08),
    lambda: random_mask(100, 4, 1.0),
    lambda: random_mask(100, 4, -0.1),
    lambda: equispaced_mask(100, 8, 0.2),  # 20 centre columns > 100 / 8
    lambda: equispaced_mask(100, float("nan"), 0.08),
    lambda: poisson_disc_mask((32, 32), 4, calib=(40, 8)),
    lambda: poisson_disc_mask((32, 32), 0.9),
    lambda: poisson_disc_mask((0, 32), 4, calib=(0, 0)),
    lambda: poisson_disc_mask((32, 32), 8, calib=(16, 16)),  # calib alone exceeds the budget
    lambda: acceleration(np.zeros(8, bool)),
])
def test_bad_parameters(call):
    with pytest.raises(InvalidDataError):
        call()
