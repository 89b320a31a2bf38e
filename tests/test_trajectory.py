"""Trajectories (shapes, ranges, angles, partitions) and density compensation (ramp, Pipe-Menon)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from physics.errors import InvalidDataError, ShapeError
from physics.nufft import NUFFT
from physics.trajectory import (GOLDEN_ANGLE, GOLDEN_MEANS, kooshball_3d, pipe_menon_dcf, radial_2d,
                                ramp_dcf, spiral_2d, stack_of_stars)


def in_range(k: np.ndarray, shape) -> bool:
    half = np.asarray(shape) / 2
    return bool(np.all(k >= -half) and np.all(k < half))


def spoke_angles(k: np.ndarray) -> np.ndarray:
    """Direction of each spoke ``(spokes, samples, 2)`` in [0, pi) from its last sample (ky, kx)."""
    last = k[:, -1]
    return np.mod(np.arctan2(last[:, 0], last[:, 1]), np.pi)


# ------------------------------------------------------------------------------------------------
# trajectories
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(32, 32), (24, 17)])
def test_radial_shapes_range_and_readout(shape):
    k = radial_2d(13, 2 * max(shape), image_shape=shape)
    assert k.shape == (13, 2 * max(shape), 2) and k.dtype == np.float32 and in_range(k, shape)
    np.testing.assert_array_equal(k[:, max(shape)], 0)  # through the centre at samples // 2
    # the first spoke (theta = 0) runs along kx over the full width [-N/2, N/2)
    np.testing.assert_allclose(k[0, :, 1], (np.arange(2 * max(shape)) - max(shape)) / (2 * max(shape)) * shape[1],
                               atol=1e-5)
    NUFFT(k, shape)  # accepted


def test_radial_uniform_and_golden_angles():
    uniform = spoke_angles(radial_2d(10, 16, image_shape=(16, 16)))
    np.testing.assert_allclose(np.diff(uniform[1:]), np.pi / 10, atol=1e-5)
    golden = spoke_angles(radial_2d(30, 16, image_shape=(16, 16), golden=True))
    steps = np.mod(np.diff(golden), np.pi)
    np.testing.assert_allclose(steps, GOLDEN_ANGLE, atol=1e-5)
    assert math.degrees(GOLDEN_ANGLE) == pytest.approx(111.246, abs=1e-3)


def test_spiral():
    shape = (32, 32)
    k = spiral_2d(4, 200, image_shape=shape)
    assert k.shape == (4, 200, 2) and k.dtype == np.float32 and in_range(k, shape)
    radius = np.linalg.norm(k, axis=-1)
    np.testing.assert_array_equal(radius[:, 0], 0)
    assert np.all(np.diff(radius, axis=1) > 0)
    np.testing.assert_allclose(radius[:, -1], 16 * (199 / 200), rtol=1e-5)
    # interleaves are rotated copies: 2 pi / 4 apart
    angle = np.arctan2(k[..., 0], k[..., 1])
    np.testing.assert_allclose(np.mod(angle[1, 1:] - angle[0, 1:], 2 * np.pi), np.pi / 2, atol=1e-4)
    dense = spiral_2d(4, 200, image_shape=shape, density=2.0)
    assert np.linalg.norm(dense[0, 100]) == pytest.approx(16 * 0.25, rel=1e-5)  # t^2 / 2 at t = 1/2


def test_kooshball():
    shape = (16, 16, 16)
    k = kooshball_3d(50, 32, image_shape=shape)
    assert k.shape == (50, 32, 3) and k.dtype == np.float32 and in_range(k, shape)
    direction = k[:, -1] / np.linalg.norm(k[:, -1], axis=-1, keepdims=True)
    z = np.mod(np.arange(50) * GOLDEN_MEANS[0], 1.0)
    np.testing.assert_allclose(direction[:, 0], z, atol=1e-5)  # kz follows the first golden mean
    # the directions cover the half sphere evenly: mean of z is 1/2, of the in-plane cosine ~0
    assert abs(direction[:, 0].mean() - 0.5) < 0.05 and abs(direction[:, 2].mean()) < 0.1


def test_stack_of_stars_partitions_on_the_grid():
    shape = (8, 24, 24)
    k = stack_of_stars(9, 48, 6, image_shape=shape, golden=True)
    assert k.shape == (6, 9, 48, 3) and k.dtype == np.float32 and in_range(k, shape)
    np.testing.assert_array_equal(k[..., 0], (np.arange(6) - 3)[:, None, None] * np.ones((9, 48)))
    for plane in k[..., 1:]:
        np.testing.assert_array_equal(plane, radial_2d(9, 48, image_shape=shape[1:], golden=True))


def test_bad_trajectory_arguments():
    with pytest.raises(InvalidDataError, match="spokes"):
        radial_2d(0, 16, image_shape=(16, 16))
    with pytest.raises(ShapeError, match="image_shape"):
        radial_2d(4, 16, image_shape=(16, 16, 16))
    with pytest.raises(InvalidDataError, match="partitions"):
        stack_of_stars(4, 16, 9, image_shape=(8, 16, 16))
    with pytest.raises(InvalidDataError, match="density"):
        spiral_2d(2, 16, image_shape=(16, 16), density=0.0)
    with pytest.raises(InvalidDataError, match="NaN"):
        pipe_menon_dcf(np.full((4, 2), np.nan, np.float32), (16, 16))
    with pytest.raises(ShapeError, match="spokes, samples, 2"):
        ramp_dcf(np.zeros((10, 2), np.float32), (16, 16))
    with pytest.raises(InvalidDataError, match="outside"):
        ramp_dcf(np.full((2, 3, 2), 8.0, np.float32), (16, 16))


# ------------------------------------------------------------------------------------------------
# density compensation
# ------------------------------------------------------------------------------------------------
def test_ramp_dcf_is_the_radius_with_a_centre_value():
    shape = (32, 32)
    k = radial_2d(50, 64, image_shape=shape)
    w = ramp_dcf(k, shape)
    assert w.shape == (50, 64) and w.dtype == np.float32
    radius = np.linalg.norm(k, axis=-1)
    off = radius > 0
    np.testing.assert_allclose(w[off] / radius[off], math.pi * 0.5 / 50, rtol=1e-5)  # pi dk / spokes
    np.testing.assert_allclose(w[:, 32], math.pi * 0.5 * 0.5 / 4 / 50, rtol=1e-5)  # |k| -> dk / 4
    # k-space area: the disc of radius N/2 (each ring shared by 2 x 50 samples)
    assert w.sum() == pytest.approx(math.pi * 16 ** 2, rel=0.01)


@pytest.fixture(scope="module")
def radial_pm():
    shape = (32, 32)
    k = radial_2d(64, 64, image_shape=shape)
    return shape, k, pipe_menon_dcf(k, shape)


def test_pipe_menon_flattens_the_gridded_density(radial_pm):
    shape, k, w = radial_pm
    A = NUFFT(k, shape)
    density = np.abs(np.asarray(A.spread(w)))  # C^H w on the 64 x 64 grid
    g = np.indices(A.grid_shape) - np.asarray(A.grid_shape)[:, None, None] // 2
    inner = np.hypot(*g) < 0.8 * 32  # inside 80% of the sampled disc (radius N/2 = 32 cells)
    assert density[inner].std() / density[inner].mean() < 0.02
    unweighted = np.abs(np.asarray(A.spread(np.ones(k.shape[:-1], np.float32))))
    assert unweighted[inner].std() / unweighted[inner].mean() > 0.5  # radial is far from flat


def test_pipe_menon_agrees_with_ramp_on_radial(radial_pm):
    shape, k, w = radial_pm
    ramp = ramp_dcf(k, shape)
    mid = (np.linalg.norm(k, axis=-1) > 3) & (np.linalg.norm(k, axis=-1) < 13)
    np.testing.assert_allclose(w[mid], ramp[mid], rtol=0.05)


def test_pipe_menon_scale_is_area_per_sample(rng):
    shape = (24, 24)
    cartesian = np.stack(np.meshgrid(*[np.arange(n) - n // 2 for n in shape], indexing="ij"), -1)
    w = pipe_menon_dcf(cartesian.astype(np.float32), shape)
    np.testing.assert_allclose(w, w.mean(), rtol=1e-4)  # uniform on a lattice ...
    assert w.mean() == pytest.approx(1.0, abs=0.1)  # ... near 1 (the lattice aliases with the kernel)
    points = (rng.uniform(-0.5, 0.5, (3000, 2)) * shape).astype(np.float32)
    assert pipe_menon_dcf(points, shape).mean() == pytest.approx(24 * 24 / 3000, rel=0.05)
