"""CT phantoms: table values, rasterisation, and exact sinograms against numerical line integrals
and ASTRA."""

from __future__ import annotations

import numpy as np
import pytest

from physics.ct_geometry import CTGeometry, cone_beam, fan_beam, parallel_beam
from physics.ct_phantom import (MU_WATER, SHEPP_LOGAN_CT_2D, SHEPP_LOGAN_CT_3D, anatomical_ellipses,
                                anatomical_phantom, ellipse_image, ellipse_sinogram, scale_ellipses,
                                shepp_logan_ct)
from physics.errors import InvalidDataError, ShapeError
from physics.phantom import ellipse_sum, shepp_logan


def test_shepp_logan_ct_values_and_structure():
    n = 256
    image = shepp_logan_ct((n, n))
    assert image.shape == (n, n) and image.dtype == np.float32
    relative = image / MU_WATER
    np.testing.assert_allclose(sorted(set(np.round(relative.ravel(), 4))),
                               [0.0, 1.0, 1.01, 1.02, 1.03, 1.04, 2.0], atol=1e-4)
    # Same ellipses as Toft's table: skull, ventricles and background coincide pixel by pixel.
    toft = shepp_logan((n, n))
    np.testing.assert_array_equal(np.isclose(relative, 2.0), toft == 1.0)
    np.testing.assert_array_equal(np.isclose(relative, 1.0), (toft == 0.0) & (image > 0))
    assert image[n // 2, n // 2] == pytest.approx(1.02 * MU_WATER)  # brain at the centre
    volume = shepp_logan_ct((32, 32, 32), mu_water=0.02)
    assert volume.dtype == np.float32 and volume.max() == pytest.approx(0.04)
    np.testing.assert_array_equal(np.isclose(volume, 0.04), shepp_logan((32, 32, 32)) == 1.0)


def test_anatomical_phantom_tissues_and_seed():
    image = anatomical_phantom((128, 128), seed=3)
    assert image.shape == (128, 128) and image.dtype == np.float32
    np.testing.assert_array_equal(image, anatomical_phantom((128, 128), seed=3))
    assert not np.array_equal(image, anatomical_phantom((128, 128), seed=4))
    relative = image / MU_WATER
    for tissue in (0.0, 0.26, 0.92, 1.04, 1.34, 1.79):  # air, lung, fat, soft tissue, bones
        assert np.isclose(relative, tissue, atol=1e-4).sum() > 10, tissue
    assert relative[64, 64] == pytest.approx(1.06, abs=0.05)  # heart, possibly a lesion
    assert np.isclose(relative[64, 34], 0.26, atol=1e-4)      # right lung (image left)
    assert relative[0].max() == 0.0 and relative[:, 0].max() == 0.0


def _ray(geometry: CTGeometry, view: int, bin_: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Start and end of a ray, written from the physics.ct_geometry docstring."""
    theta = geometry.angles[view]
    d = np.array([np.sin(theta), -np.cos(theta), 0.0])
    e_u = np.array([np.cos(theta), np.sin(theta), 0.0])
    e_v = np.array([0.0, 0.0, 1.0])
    n_u = geometry.detector_shape[-1]
    u = (bin_[-1] - (n_u - 1) / 2) * geometry.detector_spacing[-1] + geometry.detector_offset[-1]
    if geometry.kind == "parallel":
        return u * e_u + 300.0 * d, u * e_u - 300.0 * d
    R, D = geometry.source_to_isocenter, geometry.source_to_detector
    source = R * d
    if geometry.detector == "arc":
        gamma = u / D
        return source, source + D * (-np.cos(gamma) * d + np.sin(gamma) * e_u)
    end = -(D - R) * d + u * e_u
    if geometry.kind == "cone":
        n_v = geometry.detector_shape[0]
        v = (bin_[0] - (n_v - 1) / 2) * geometry.detector_spacing[0] + geometry.detector_offset[0]
        end = end + v * e_v
    return source, end


def _numerical_integral(table: np.ndarray, start: np.ndarray, end: np.ndarray, d: int) -> float:
    """Midpoint rule with 400,000 samples of the rasterised table along the segment."""
    samples = 400_000
    t = (np.arange(samples) + 0.5) / samples
    points = start[:d] + t[:, None] * (end[:d] - start[:d])
    step = np.linalg.norm(end - start) / samples
    return float(ellipse_sum(list(points.T), table).sum() * step)


GEOMETRIES = {
    "parallel": parallel_beam((64, 64), np.linspace(0, np.pi, 7, endpoint=False), 96,
                              detector_spacing=0.9, pixel_size=1.1, detector_offset=0.7),
    "fan-flat": fan_beam((64, 64), np.linspace(0, 2 * np.pi, 7, endpoint=False), 100,
                         source_to_isocenter=150.0, source_to_detector=280.0, detector_spacing=1.6,
                         detector_offset=-2.1),
    "fan-arc": fan_beam((64, 64), np.linspace(0.3, 2 * np.pi, 7, endpoint=False), 100,
                        source_to_isocenter=150.0, source_to_detector=280.0, detector_spacing=1.6,
                        detector_offset=1.3, detector="arc"),
    "cone": cone_beam((32, 32, 32), np.linspace(0, 2 * np.pi, 5, endpoint=False), (48, 40),
                      source_to_isocenter=100.0, source_to_detector=180.0, detector_spacing=(1.3, 1.5),
                      detector_offset=(2.0, -1.0)),
}


@pytest.mark.parametrize("name", GEOMETRIES)
def test_ellipse_sinogram_matches_numerical_line_integrals(name):
    geometry = GEOMETRIES[name]
    shape = geometry.image_shape
    unit = SHEPP_LOGAN_CT_3D if geometry.ndim == 3 else anatomical_ellipses(seed=1)
    table = scale_ellipses(unit, shape, pixel_size=geometry.pixel_size)
    sinogram = ellipse_sinogram(geometry, table)
    assert sinogram.shape == geometry.sinogram_shape and sinogram.dtype == np.float32
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(12):
        view = int(rng.integers(geometry.sinogram_shape[0]))
        bin_ = tuple(int(rng.integers(n // 4, 3 * n // 4)) for n in geometry.detector_shape)
        reference = _numerical_integral(table, *_ray(geometry, view, bin_), geometry.ndim)
        assert sinogram[(view, *bin_)] == pytest.approx(reference, rel=2e-3, abs=1e-4), (view, bin_)
        checked += reference > 0.1
    assert checked >= 8  # most rays cross the object


def test_disc_chord_is_2_mu_sqrt_r2_minus_s2():
    mu, r = 0.02, 30.0
    geometry = parallel_beam((64, 64), np.linspace(0, np.pi, 5, endpoint=False), 80,
                             detector_offset=0.25)
    sinogram = ellipse_sinogram(geometry, [[mu, r, r, 0.0, 0.0, 17.0]])
    s = (np.arange(80) - 39.5) + 0.25
    expected = 2 * mu * np.sqrt(np.maximum(r**2 - s**2, 0.0))
    np.testing.assert_allclose(sinogram, np.broadcast_to(expected, sinogram.shape), atol=1e-6)
    # An off-centre disc in a fan beam: the chord depends on the ray's distance to the centre.
    fan = fan_beam((64, 64), [0.4], 90, source_to_isocenter=200.0, source_to_detector=350.0)
    centre = np.array([10.0, -6.0])
    sinogram = ellipse_sinogram(fan, [[mu, 12.0, 12.0, *centre, 0.0]])[0]
    for j in (30, 45, 52, 60):
        start, end = _ray(fan, 0, (j,))
        w = (end - start)[:2] / np.linalg.norm(end - start)
        offset = centre - start[:2]
        distance = abs(offset[0] * w[1] - offset[1] * w[0])
        assert sinogram[j] == pytest.approx(2 * mu * np.sqrt(max(144.0 - distance**2, 0.0)), abs=1e-5)


# Off-centre, rotated, and asymmetric: a mirrored or rotated convention cannot agree.
_ASYMMETRIC = [[0.02, 20.0, 8.0, 18.0, 12.0, 30.0], [0.01, 10.0, 10.0, -25.0, -15.0, 0.0],
               [0.015, 30.0, 4.0, 0.0, -30.0, -10.0]]


@pytest.mark.parametrize("kind", ["parallel", "fanflat"])
def test_ellipse_sinogram_matches_astra(kind):
    """ASTRA's CPU projector applied to a 4x supersampled rasterisation of the same table."""
    astra = pytest.importorskip("astra")
    n, over = 96, 4
    angles = np.linspace(0, 2 * np.pi, 60, endpoint=False)
    fine = ellipse_image(_ASYMMETRIC, (n * over, n * over), pixel_size=1.0 / over)
    image = fine.reshape(n, over, n, over).mean(axis=(1, 3))
    if kind == "parallel":
        geometry = parallel_beam((n, n), angles, 140)
        projection, projector = astra.create_proj_geom("parallel", 1.0, 140, angles), "linear"
    else:
        geometry = fan_beam((n, n), angles, 150, source_to_isocenter=250.0, source_to_detector=450.0,
                            detector_spacing=1.5)
        projection = astra.create_proj_geom("fanflat", 1.5, 150, angles, 250.0, 200.0)
        projector = "line_fanflat"
    pid = astra.create_projector(projector, projection, astra.create_vol_geom(n, n))
    try:
        def astra_sinogram(x):
            sid, sino = astra.create_sino(x, pid)
            astra.data2d.delete(sid)
            return sino
        ours = ellipse_sinogram(geometry, _ASYMMETRIC)
        reference = astra_sinogram(image)
        scale = np.linalg.norm(reference)
        assert np.linalg.norm(ours - reference) / scale < 0.04  # pixelisation: 0.024 measured
        for wrong in (image[::-1], image[:, ::-1], image.T):
            assert np.linalg.norm(ours - astra_sinogram(wrong)) / scale > 0.5
    finally:
        astra.projector.delete(pid)


def test_scale_ellipses_units():
    table = scale_ellipses(SHEPP_LOGAN_CT_2D, (100, 80), pixel_size=0.5, mu_water=0.02)
    half_fov = 80 * 0.5 / 2  # the smaller side sets the scale
    np.testing.assert_allclose(table[:, 0], SHEPP_LOGAN_CT_2D[:, 0] * 0.02)
    np.testing.assert_allclose(table[:, 1:5], SHEPP_LOGAN_CT_2D[:, 1:5] * half_fov)
    np.testing.assert_array_equal(table[:, 5], SHEPP_LOGAN_CT_2D[:, 5])
    # Pixel size changes the sinogram (lengths in mm), not the image.
    unit_pixels = scale_ellipses(SHEPP_LOGAN_CT_2D, (100, 80), mu_water=0.02)
    np.testing.assert_array_equal(ellipse_image(table, (100, 80), pixel_size=0.5),
                                  ellipse_image(unit_pixels, (100, 80)))


@pytest.mark.parametrize("call, error", [
    (lambda: ellipse_sinogram(GEOMETRIES["cone"], SHEPP_LOGAN_CT_2D), ShapeError),
    (lambda: ellipse_sinogram(GEOMETRIES["parallel"], SHEPP_LOGAN_CT_3D), ShapeError),
    (lambda: ellipse_sinogram(GEOMETRIES["parallel"], [[1.0, 0.0, 1.0, 0, 0, 0]]), InvalidDataError),
    (lambda: ellipse_image([[np.nan, 1.0, 1.0, 0.0, 0.0, 0.0]], (8, 8)), InvalidDataError),
    (lambda: scale_ellipses(SHEPP_LOGAN_CT_2D, (8, 8), pixel_size=0.0), InvalidDataError),
    (lambda: shepp_logan_ct((8,)), InvalidDataError),
    (lambda: anatomical_phantom((8, 8, 8)), InvalidDataError),
])
def test_bad_input(call, error):
    with pytest.raises(error):
        call()
