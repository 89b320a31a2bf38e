"""CT HDF5 layout: round trips of every geometry, and clear errors on bad files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from physics.ct_geometry import cone_beam, fan_beam, parallel_beam
from physics.errors import FileFormatError, InvalidDataError, ShapeError
from recon.io import is_ct, read_ct, read_ct_image, write_ct

ANGLES = np.linspace(0, np.pi, 12, endpoint=False)
GEOMETRIES = {
    "parallel": parallel_beam((16, 20), ANGLES, 30, detector_spacing=0.7, pixel_size=0.5,
                              detector_offset=0.3),
    "fan": fan_beam((16, 16), 2 * ANGLES, 40, source_to_isocenter=100.0, source_to_detector=160.0,
                    detector_spacing=0.8, pixel_size=0.5),
    "fan-arc": fan_beam((16, 16), 2 * ANGLES, 40, source_to_isocenter=100.0, source_to_detector=160.0,
                        detector_spacing=0.8, pixel_size=0.5, detector="arc"),
    "cone": cone_beam((8, 16, 16), 2 * ANGLES, (10, 24), source_to_isocenter=100.0,
                      source_to_detector=150.0, detector_spacing=(0.9, 0.8), pixel_size=0.5,
                      detector_offset=(0.1, -0.2)),
}


def _same_geometry(a, b):
    np.testing.assert_allclose(a.angles, b.angles, rtol=1e-6, atol=1e-7)  # stored as float32
    for field in ("kind", "image_shape", "detector_shape", "detector_spacing", "detector_offset",
                  "pixel_size", "source_to_isocenter", "source_to_detector", "detector"):
        assert getattr(a, field) == getattr(b, field), field


@pytest.mark.parametrize("name", GEOMETRIES)
def test_round_trip(tmp_path, name, rng):
    g = GEOMETRIES[name]
    cone = g.kind == "cone"
    slices = () if cone else (2,)
    sino = rng.random((*slices, *g.sinogram_shape)).astype(np.float32)
    image = rng.random((*slices, *g.image_shape) if not cone else g.image_shape).astype(np.float32)
    counts = rng.poisson(1000, sino.shape).astype(np.float32)
    path = tmp_path / "ct.h5"
    write_ct(path, sino, g, counts=counts, I0=1e4, image=image, attrs={"note": "test"})
    assert is_ct(path)
    data = read_ct(path)
    _same_geometry(data.geometry, g)
    np.testing.assert_array_equal(data.sinogram, sino)
    np.testing.assert_array_equal(data.counts, counts)
    np.testing.assert_array_equal(data.image, image)
    assert data.I0 == 1e4 and data.attrs["note"] == "test"
    with h5py.File(path) as f:  # the documented layout, as other tools will read it
        assert f["sinogram"].dtype == np.float32 and f["angles"].dtype == np.float32
        assert f.attrs["geometry"] == g.kind and tuple(f.attrs["image_shape"]) == g.image_shape


def test_single_slice_sinogram_and_image_file(tmp_path):
    g = GEOMETRIES["parallel"]
    path = tmp_path / "one.h5"
    write_ct(path, np.ones(g.sinogram_shape), g)
    assert read_ct(path).sinogram.shape == (1, *g.sinogram_shape)
    img = tmp_path / "img.h5"
    with h5py.File(img, "w") as f:
        f["image"] = np.ones((3, 4), np.float32)
        f.attrs["pixel_size_mm"] = 0.7
    image, pixel = read_ct_image(img)
    assert image.shape == (1, 3, 4) and pixel == pytest.approx(0.7)


def _write(path, sino=None, **attrs):
    g = GEOMETRIES["fan"]
    base = {"geometry": "fan", "image_shape": [16, 16], "pixel_size_mm": 0.5,
            "detector_spacing_mm": 0.8, "source_to_isocenter_mm": 100.0, "source_to_detector_mm": 160.0}
    base.update(attrs)
    with h5py.File(path, "w") as f:
        f["sinogram"] = np.ones((1, *g.sinogram_shape), np.float32) if sino is None else sino
        f["angles"] = g.angles_array.astype(np.float32)
        for k, v in base.items():
            if v is not None:
                f.attrs[k] = v


@pytest.mark.parametrize("attrs, error, words", [
    ({"geometry": "helical"}, FileFormatError, "'geometry'"),
    ({"source_to_isocenter_mm": None}, FileFormatError, "source_to_isocenter_mm"),
    ({"source_to_isocenter_mm": 200.0}, FileFormatError, "source_to_isocenter"),  # R > D
    ({"image_shape": [16]}, FileFormatError, "image_shape"),
    ({"pixel_size_mm": "wide"}, FileFormatError, "pixel_size_mm"),
    ({"detector_spacing_mm": -1.0}, FileFormatError, "spacing"),
    ({"image_shape": [4000, 4000]}, FileFormatError, "inside the image"),
])
def test_bad_attributes_are_clear_errors(tmp_path, attrs, error, words):
    path = tmp_path / "bad.h5"
    _write(path, **attrs)
    with pytest.raises(error, match=words):
        read_ct(path)


def test_bad_datasets(tmp_path):
    path = tmp_path / "bad.h5"
    _write(path, sino=np.ones((1, 12, 40, 2), np.float32))
    with pytest.raises(ShapeError, match="sinogram"):
        read_ct(path)
    sino = np.ones((1, 12, 40), np.float32)
    sino[0, 3, 4] = np.nan
    _write(path, sino=sino)
    with pytest.raises(InvalidDataError, match="NaN"):
        read_ct(path)
    _write(path)
    with h5py.File(path, "a") as f:
        del f["angles"]
        f["angles"] = np.zeros(5, np.float32)
    with pytest.raises(ShapeError, match="angles"):
        read_ct(path)


def test_writer_checks_shapes_and_leaves_nothing(tmp_path):
    g = GEOMETRIES["parallel"]
    path = tmp_path / "out.h5"
    with pytest.raises(ShapeError, match="expected"):
        write_ct(path, np.ones((12, 31)), g)
    with pytest.raises(InvalidDataError, match="together"):
        write_ct(path, np.ones(g.sinogram_shape), g, counts=np.ones(g.sinogram_shape))
    with pytest.raises(ShapeError, match="image"):
        write_ct(path, np.ones(g.sinogram_shape), g, image=np.ones((5, 5)))
    assert list(tmp_path.iterdir()) == []
