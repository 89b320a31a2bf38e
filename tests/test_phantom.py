"""Phantoms: Shepp-Logan values against Toft's table and scikit-image, brain phantom, coil maps."""

from __future__ import annotations

import numpy as np
import pytest

from physics.errors import InvalidDataError
from physics.phantom import birdcage_maps, brain_phantom, shepp_logan


def _pixel(n: int, coord: float, flip: bool = False) -> int:
    """Index of the pixel whose centre ``(2 j + 1) / n - 1`` is nearest to ``coord`` (y flips)."""
    j = int(round((coord + 1.0) * n / 2.0 - 0.5))
    return n - 1 - j if flip else j


# (x, y, value) from Toft's ellipse table, points chosen away from every ellipse boundary.
KNOWN_2D = [
    (0.95, 0.95, 0.0),    # background, outside the skull
    (0.0, 0.90, 1.0),     # skull at the top: inside ellipse 1 (b=.92), above ellipse 2 (top .8556)
    (0.0, -0.91, 1.0),    # skull at the bottom
    (0.675, 0.0, 1.0),    # skull on the right (ellipse 1 a=.69, ellipse 2 a=.6624)
    (0.0, 0.0, 0.2),      # centre: brain matter
    (0.22, 0.0, 0.0),     # right ventricle: 1 - 0.8 - 0.2
    (-0.22, 0.0, 0.0),    # left ventricle
    (0.0, 0.45, 0.3),     # ellipse 5
    (0.0, 0.12, 0.4),     # ellipses 5 and 6 overlap
    (0.0, -0.1, 0.3),     # ellipse 7
    (0.0, -0.606, 0.3),   # ellipse 9 (small, at the bottom)
]


def test_shepp_logan_dtype_range_and_known_values():
    n = 256
    image = shepp_logan((n, n))
    assert image.shape == (n, n) and image.dtype == np.float32
    assert image.min() == 0.0 and image.max() == 1.0
    for x, y, value in KNOWN_2D:
        assert image[_pixel(n, y, flip=True), _pixel(n, x)] == pytest.approx(value, abs=1e-6), (x, y)
    # Corners are background, and the phantom is left-right symmetric in its big structures.
    assert image[0, 0] == image[-1, -1] == image[0, -1] == image[-1, 0] == 0.0


def test_shepp_logan_matches_scikit_image():
    """scikit-image ships a 400x400 rendering of Toft's phantom (8-bit PNG): agree off the edges."""
    skdata = pytest.importorskip("skimage.data")
    reference = skdata.shepp_logan_phantom()
    image = shepp_logan(reference.shape)
    mismatch = np.abs(image - reference) > 0.02
    assert mismatch.mean() < 0.01  # boundary pixels only (rasterisation rule)
    assert (np.abs(image[::-1] - reference) > 0.02).mean() > 0.05  # orientation matters


def test_shepp_logan_3d_known_values_and_shape():
    shape = (100, 48, 56)  # z pixel centres at odd multiples of 0.01
    volume = shepp_logan(shape)
    assert volume.shape == shape and volume.dtype == np.float32
    assert 0.0 <= volume.min() and volume.max() == 1.0
    nz, ny, nx = shape
    for x, y, z, value in [(0.0, 0.0, 0.0, 0.2), (0.0, 0.1, 0.25, 0.3), (0.9, 0.9, 0.9, 0.0),
                           (0.0, 0.0, -0.79, 1.0), (0.22, 0.0, 0.0, 0.0)]:
        got = volume[_pixel(nz, z), _pixel(ny, y, flip=True), _pixel(nx, x)]
        assert got == pytest.approx(value, abs=1e-6), (x, y, z)
    assert volume[0].max() == 0.0 and volume[-1].max() == 0.0  # ellipsoid 1 ends at |z| = .81


@pytest.mark.parametrize("shape", [(64, 80), (16, 32, 24)])
def test_brain_phantom(shape):
    image = brain_phantom(shape, seed=5)
    assert image.shape == shape and image.dtype == np.complex64
    assert np.abs(image).max() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_array_equal(image, brain_phantom(shape, seed=5))
    assert not np.allclose(image, brain_phantom(shape, seed=6))
    support = shepp_logan(shape) > 0
    assert np.all(image[~support] == 0) and np.all(np.abs(image[support]) > 0)
    # Texture is a few per cent: |image| / SL is constant up to the texture inside each region.
    sl = shepp_logan(shape)
    brain = np.isclose(sl, 0.2)
    ratio = np.abs(image[brain]) / sl[brain]
    spread = ratio.std() / ratio.mean()
    assert 0.005 < spread < 0.1
    # Smooth phase: spans about pi/2 inside the object; neighbours differ by a small angle.
    phase = np.angle(image * np.exp(-1j * np.angle(image[support].mean())))
    assert 0.5 < np.ptp(phase[support]) <= np.pi / 2 + 1e-3
    step = np.abs(np.angle(image[..., 1:] * np.conj(image[..., :-1])))
    assert step[support[..., 1:] & support[..., :-1]].max() < 0.1


def _rss(maps: np.ndarray) -> np.ndarray:
    return np.sqrt(np.sum(np.abs(maps.astype(np.complex128)) ** 2, axis=0))


@pytest.mark.parametrize("shape", [(8, 64, 64), (5, 48, 40), (8, 12, 32, 32), (12, 9, 24, 20)])
def test_birdcage_maps_rss_and_smooth(shape):
    maps = birdcage_maps(shape, rings=4 if shape[0] % 4 == 0 else 1)
    assert maps.shape == shape and maps.dtype == np.complex64
    np.testing.assert_allclose(_rss(maps), 1.0, atol=1e-5)
    # Smooth: nearly all energy of each (Hann-windowed, so that the FOV edges do not leak) map
    # lies at low spatial frequencies; white noise would put most of it above the cut-off.
    spatial = tuple(range(1, maps.ndim))
    window = np.ones(shape[1:])
    for axis, n in enumerate(shape[1:]):
        profile = [-1 if i == axis else 1 for i in range(len(spatial))]
        window = window * np.hanning(n + 2)[1:-1].reshape(profile)
    spectrum = np.abs(np.fft.fftn(maps * window, axes=spatial)) ** 2
    spectrum = np.fft.fftshift(spectrum, axes=spatial)
    grids = np.meshgrid(*[np.abs(np.arange(n) - n // 2) / n for n in shape[1:]], indexing="ij")
    high = np.max(grids, axis=0) > 0.125  # beyond 1/8 of the sampling rate on any axis
    fraction = spectrum[:, high].sum(axis=1) / spectrum.reshape(shape[0], -1).sum(axis=1)
    assert fraction.max() < 0.005
    # Coils differ and magnitude falls with distance from each coil.
    assert not np.allclose(maps[0], maps[1])


def test_birdcage_geometry_2d():
    """Coil 0 sits at angle 0 (right edge), coil coils/4 at 90 degrees (top edge)."""
    maps = birdcage_maps((4, 32, 32))
    magnitude = np.abs(maps)
    assert magnitude[0, 16, -1] > magnitude[0, 16, 0]   # right beats left
    assert magnitude[1, 0, 16] > magnitude[1, -1, 16]   # top beats bottom (y up)
    assert magnitude[2, 16, 0] > magnitude[2, 16, -1]
    # Relative sensitivity of a coil follows 1/distance: compare two pixels against the formula.
    x = (2 * np.arange(32) + 1) / 32 - 1
    y = x[15]  # row 16 (y points up)
    d_near, d_far = np.hypot(x[-1] - 1.5, y), np.hypot(x[0] - 1.5, y)
    rss_raw_near = np.sqrt(sum(1 / np.hypot(x[-1] - 1.5 * np.cos(t), y - 1.5 * np.sin(t)) ** 2
                               for t in np.arange(4) * np.pi / 2))
    assert d_near < d_far
    assert magnitude[0, 16, -1] == pytest.approx(1 / d_near / rss_raw_near, rel=1e-5)


def test_birdcage_3d_rings_along_z():
    maps = birdcage_maps((8, 16, 16, 16), rings=2)
    magnitude = np.abs(maps)
    assert magnitude[0, 0].mean() > magnitude[0, -1].mean()   # ring 0 at negative z
    assert magnitude[4, -1].mean() > magnitude[4, 0].mean()   # ring 1 at positive z


@pytest.mark.parametrize("call", [
    lambda: shepp_logan((0, 4)),
    lambda: shepp_logan((4,)),
    lambda: brain_phantom((4, 4, 4, 4)),
    lambda: brain_phantom((8, 8), texture=0.7),
    lambda: birdcage_maps((8, 8)),
    lambda: birdcage_maps((8, 8, 8), radius=0.5),
    lambda: birdcage_maps((6, 4, 8, 8), rings=4),
])
def test_bad_parameters(call):
    with pytest.raises(InvalidDataError):
        call()
