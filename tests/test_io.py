"""recon.io: real fastMRI-style files, write/read round trips, ISMRMRD, and every bad input.

Files under test are written here with plain h5py (or the ismrmrd package), independently of the
writers being tested, into pytest's tmp_path; /work/shared is only read.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess

import h5py
import ismrmrd
import ismrmrd.xsd as xsd
import numpy as np
import pytest

from physics.errors import FileFormatError, InvalidDataError, OutputError, ShapeError
from recon.io import (
    center_crop, open_raw, read_images, read_noise, write_kspace,
    write_reconstruction,
)
from recon.ismrmrd import read_ismrmrd
from tests.conftest import complex_normal


def h5(path, **datasets):
    """Write ``datasets`` (name -> array) with plain h5py and return the path."""
    with h5py.File(path, "w") as f:
        for name, value in datasets.items():
            f.create_dataset(name, data=value)
    return path


def digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


# --------------------------------------------------------------------------- real files
def test_reads_mr_small_fully_sampled(data_dir):
    path = data_dir / "mr_small_8ch_semireal.h5"
    with h5py.File(path, "r") as f:
        k_ref, rss_ref, sigma = f["kspace"][0], f["reconstruction_rss"][()], f.attrs["noise_sigma"]
    with open_raw(path) as raw:
        assert (raw.shape, raw.num_slices, raw.num_coils) == ((1, 8, 64, 64), 1, 8)
        k = raw.kspace(0)
        assert k.dtype == np.complex64 and k.shape == (8, 64, 64)
        np.testing.assert_array_equal(k, k_ref)
        m = raw.mask(0)  # no mask in the file: the non-zero pattern, all sampled
        assert m.dtype == bool and m.shape == (64, 64) and m.all()
        np.testing.assert_array_equal(raw.reference(), rss_ref)
        assert raw.attrs["noise_sigma"] == pytest.approx(float(sigma))
        assert raw.header is None and raw.kspace(-1).shape == (8, 64, 64)


def test_reads_brain_12ch_2d_mask(data_dir):
    path = data_dir / "brain_12ch_3x2_real.h5"
    with h5py.File(path, "r") as f:
        mask_ref = f["mask"][()]
    with open_raw(path) as raw:
        m, k = raw.mask(0), raw.kspace(0)
        assert raw.shape == (1, 12, 224, 160) and raw.reference() is None
    assert m.shape == (224, 160) and m.dtype == bool
    np.testing.assert_array_equal(m, mask_ref)
    assert m.sum() == 6480  # 18 % of 224 x 160, as the data README states
    # the undersampled data are zero exactly where the mask is False
    np.testing.assert_array_equal(np.any(k != 0, axis=0), m)


def test_reads_noise_scan(data_dir):
    path = data_dir / "noise_16ch_real.h5"
    noise = read_noise(path)
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(noise, f["noise"][()])
    assert noise.shape == (16, 256) and noise.dtype == np.complex64 and np.all(noise.std(axis=1) > 0)


def test_kspace_is_read_slice_by_slice(tmp_path, rng):
    """Open reads no k-space: a corrupt chunk of slice 3 and a NaN in slice 2 surface only there."""
    k = complex_normal(rng, (4, 2, 16, 16))
    k[2, 1, 3, 4] = np.nan
    path = tmp_path / "lazy.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=k, chunks=(1, 2, 16, 16), compression="gzip")
        offset, size = f["kspace"].id.get_chunk_info_by_coord((3, 0, 0, 0))[2:4]
    with open(path, "r+b") as fh:  # overwrite slice 3's compressed chunk with garbage
        fh.seek(offset)
        fh.write(b"\xff" * size)
    with open_raw(path) as raw:
        for i in (0, 1):
            np.testing.assert_array_equal(raw.kspace(i), k[i])
        with pytest.raises(InvalidDataError, match=r"slice 2 of 'kspace' holds 1 NaN/Inf.*\(1, 3, 4\)"):
            raw.kspace(2)
        with pytest.raises(FileFormatError, match=r"lazy.h5: cannot read dataset '/kspace'"):
            raw.kspace(3)


@pytest.mark.parametrize("dtype", [np.complex128, ">c8", ">c16"])
def test_rank3_and_other_complex_dtypes(tmp_path, rng, dtype):
    k = complex_normal(rng, (3, 8, 6)).astype(np.complex128)
    with open_raw(h5(tmp_path / "r3.h5", kspace=k.astype(dtype))) as raw:
        assert raw.shape == (1, 3, 8, 6)
        np.testing.assert_array_equal(raw.kspace(0), k.astype(np.complex64))
        assert raw.kspace(0).dtype == np.complex64


def test_soft_link_inside_the_file_is_fine(tmp_path, rng):
    k = complex_normal(rng, (1, 2, 4, 4))
    path = tmp_path / "soft.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data/raw", data=k)
        f["kspace"] = h5py.SoftLink("/data/raw")
    with open_raw(path) as raw:
        np.testing.assert_array_equal(raw.kspace(0), k[0])


# --------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("mask_kind", ["none", "1d", "2d", "3d"])
def test_write_kspace_round_trip(tmp_path, rng, mask_kind):
    slices, coils, ny, nx = 2, 3, 8, 6
    cols = np.array([1, 0, 1, 1, 0, 1], bool)
    full = np.broadcast_to(cols, (slices, ny, nx)).copy()
    full[1, 0] = False  # make slice 1 differ from slice 0
    mask = {"none": None, "1d": cols, "2d": full[0].astype(np.float32), "3d": full}[mask_kind]
    k = complex_normal(rng, (slices, coils, ny, nx)) * full[:, None]  # zero where not sampled
    ref = np.abs(rng.standard_normal((slices, ny, nx))).astype(np.float64)
    path = tmp_path / "raw.h5"
    write_kspace(path, k.astype(np.complex128), mask=mask, reference=ref,
                 attrs={"acceleration": 2, "note": "test", "sizes": [1, 2]})
    with open_raw(path) as raw:
        assert raw.shape == k.shape
        for i in range(slices):
            np.testing.assert_array_equal(raw.kspace(i), k[i])
            # without a mask dataset: the non-zero pattern of slice i
            expected = {"none": full[i], "1d": full[0], "2d": full[0], "3d": full[i]}
            np.testing.assert_array_equal(raw.mask(i), expected[mask_kind])
        np.testing.assert_array_equal(raw.reference(), ref.astype(np.float32))
        assert raw.attrs["acceleration"] == 2 and raw.attrs["note"] == "test"
        assert json.loads(raw.attrs["sizes"]) == [1, 2]
    with h5py.File(path, "r") as f:  # the stored layout itself
        assert f["kspace"].dtype == np.complex64 and f["reconstruction_rss"].dtype == np.float32
        assert ("mask" in f) == (mask is not None)
        if mask is not None:
            assert f["mask"].dtype == bool and f["mask"].shape == np.shape(mask)


def test_write_reconstruction_round_trip(tmp_path, rng):
    images = np.abs(rng.standard_normal((3, 10, 12)))  # float64 in, float32 stored
    path = tmp_path / "out.h5"
    params = {"lambda": 0.01, "iterations": 30}
    write_reconstruction(path, images, input_path=tmp_path / "in.h5",
                         attrs={"method": "l1-wavelet", "parameters": params, "seconds": 1.5,
                                "converged": True, "acceleration": np.int64(4)},
                         extra={"coil_maps": complex_normal(rng, (3, 2, 10, 12))})
    np.testing.assert_array_equal(read_images(path), images.astype(np.float32))
    with h5py.File(path, "r") as f:
        assert f["reconstruction"].dtype == np.float32 and f["reconstruction"].shape == (3, 10, 12)
        assert f.attrs["method"] == "l1-wavelet" and json.loads(f.attrs["parameters"]) == params
        assert f.attrs["seconds"] == 1.5 and bool(f.attrs["converged"]) and f.attrs["acceleration"] == 4
        assert f["coil_maps"].shape == (3, 2, 10, 12)
    assert sorted(os.listdir(tmp_path)) == ["out.h5"]  # no temporary left behind
    write_reconstruction(path, images[0])  # one (ny, nx) image is one slice; replaces the file
    assert read_images(path).shape == (1, 10, 12)


def test_read_images_rss_of_a_raw_file(data_dir):
    rss = read_images(data_dir / "mr_small_8ch_semireal.h5", "reconstruction_rss")
    assert rss.shape == (1, 64, 64) and rss.dtype == np.float32 and rss.max() > 0


def test_center_crop_matches_fastmri_indexing():
    x = np.arange(2 * 7 * 6).reshape(2, 7, 6)
    np.testing.assert_array_equal(center_crop(x, (3, 4)), x[:, 2:5, 1:5])
    np.testing.assert_array_equal(center_crop(x, (4, 3)), x[:, 1:5, 1:4])  # odd margins round down
    np.testing.assert_array_equal(center_crop(x, (7, 6)), x)
    y = np.zeros((6, 8))
    y[3, 4] = 1  # centred layout: the centre n//2 stays at m//2 when n - m is even
    assert np.argwhere(center_crop(y, (4, 4))).tolist() == [[2, 2]]
    with pytest.raises(ShapeError, match=r"shape \(2, 7, 6\) to \(8, 6\)"):
        center_crop(x, (8, 6))
    with pytest.raises(ShapeError, match="two positive sizes"):
        center_crop(x, (0, 3))


# --------------------------------------------------------------------------- ISMRMRD
def ismrmrd_header(nx, ny, slices, ky_limits, trajectory="CARTESIAN") -> str:
    space = xsd.encodingSpaceType(matrixSize=xsd.matrixSizeType(x=nx, y=ny, z=1),
                                  fieldOfView_mm=xsd.fieldOfViewMm(x=200.0, y=200.0, z=5.0))
    lo, hi, centre = ky_limits
    limits = xsd.encodingLimitsType(
        kspace_encoding_step_1=xsd.limitType(minimum=lo, maximum=hi, center=centre),
        slice=xsd.limitType(minimum=0, maximum=slices - 1, center=0))
    header = xsd.ismrmrdHeader(
        experimentalConditions=xsd.experimentalConditionsType(H1resonanceFrequency_Hz=123_000_000),
        encoding=[xsd.encodingType(encodedSpace=space, reconSpace=space, encodingLimits=limits,
                                   trajectory=getattr(xsd.trajectoryType, trajectory))])
    return xsd.ToXML(header)


def acquisition(data, *, step=0, slc=0, centre=0, flags=(), average=0, **head):
    acq = ismrmrd.Acquisition.from_array(np.asarray(data, np.complex64), center_sample=centre, **head)
    acq.idx.kspace_encode_step_1, acq.idx.slice, acq.idx.average = step, slc, average
    for flag in flags:
        acq.set_flag(flag)
    return acq


def write_ismrmrd(path, xml, acquisitions):
    with ismrmrd.Dataset(str(path), "dataset", create_if_needed=True) as dset:
        dset.write_xml_header(xml.encode())
        for acq in acquisitions:
            dset.append_acquisition(acq)
    return path


def test_ismrmrd_round_trip_exact(tmp_path, rng):
    slices, coils, ny, nx = 2, 3, 8, 10
    k = complex_normal(rng, (slices, coils, ny, nx))
    xml = ismrmrd_header(nx, ny, slices, (0, ny - 1, ny // 2))
    noise = acquisition(100 * complex_normal(rng, (coils, 16)),
                        flags=[ismrmrd.ACQ_IS_NOISE_MEASUREMENT])
    lines = [acquisition(k[s, :, y], step=y, slc=s, centre=nx // 2)
             for s, y in rng.permutation([(s, y) for s in range(slices) for y in range(ny)])]
    path = write_ismrmrd(tmp_path / "raw.h5", xml, [noise, *lines])
    before = digest(path)
    kspace, header = read_ismrmrd(path)
    assert kspace.dtype == np.complex64 and kspace.shape == k.shape
    np.testing.assert_array_equal(kspace, k)
    assert header == xml and xsd.CreateFromDocument(header).encoding[0].encodedSpace.matrixSize.x == nx
    assert digest(path) == before  # opened read-only


def test_ismrmrd_partial_fourier_asymmetric_echo(tmp_path, rng):
    """Line at ny//2 + step - centre, sample at nx//2 + s - center_sample; reverse/discard/average."""
    coils, ny, nx, ns, centre = 2, 8, 10, 7, 2
    xml = ismrmrd_header(nx, ny, 1, (0, 5, 2))  # steps 0..5 of 8, centre at step 2
    data = {y: complex_normal(rng, (coils, ns)) for y in range(6)}
    second = complex_normal(rng, (coils, ns))
    acqs = [acquisition(data[y], step=y, centre=centre) for y in (0, 1, 2, 4)]
    acqs.append(acquisition(data[3][:, ::-1], step=3, centre=ns - 1 - centre,
                            flags=[ismrmrd.ACQ_IS_REVERSE]))
    acqs.append(acquisition(data[5], step=5, centre=centre, discard_pre=1))
    acqs.append(acquisition(second, step=4, centre=centre, average=1))
    acqs.append(acquisition(np.ones((coils, ns)), step=1, centre=centre,
                            flags=[ismrmrd.ACQ_IS_NAVIGATION_DATA]))
    kspace, _ = read_ismrmrd(write_ismrmrd(tmp_path / "pf.h5", xml, acqs))
    expected = np.zeros((1, coils, ny, nx), np.complex64)
    for y in range(6):  # kx columns 5 - 2 = 3 .. 9, ky rows 4 + y - 2
        expected[0, :, 2 + y, 3:10] = data[y]
    expected[0, :, 7, 3] = 0  # discard_pre=1 drops the first sample of step 5
    expected[0, :, 6, 3:10] = (data[4] + second) / 2  # two averages of step 4
    np.testing.assert_allclose(kspace, expected, rtol=1e-6, atol=0)


def test_ismrmrd_bad_inputs(tmp_path, rng, data_dir):
    noise = acquisition(complex_normal(rng, (2, 8)), flags=[ismrmrd.ACQ_IS_NOISE_MEASUREMENT])
    only_noise = write_ismrmrd(tmp_path / "noise.h5", ismrmrd_header(8, 8, 1, (0, 7, 4)), [noise])
    with pytest.raises(InvalidDataError, match="noise.h5: no imaging acquisitions in 'dataset'"):
        read_ismrmrd(only_noise)
    radial = write_ismrmrd(tmp_path / "radial.h5", ismrmrd_header(8, 8, 1, (0, 7, 4), "RADIAL"),
                           [acquisition(complex_normal(rng, (2, 8)), centre=4)])
    with pytest.raises(FileFormatError, match="trajectory 'radial' is not supported"):
        read_ismrmrd(radial)
    too_long = write_ismrmrd(tmp_path / "long.h5", ismrmrd_header(8, 8, 1, (0, 7, 4)),
                             [acquisition(complex_normal(rng, (2, 12)), step=1, centre=4)])
    with pytest.raises(ShapeError, match=r"acquisition 0 .*12 samples.*outside .* matrix \(8, 8\)"):
        read_ismrmrd(too_long)
    with pytest.raises(FileFormatError, match="no ISMRMRD group 'dataset'"):
        read_ismrmrd(data_dir / "mr_small_8ch_semireal.h5")
    with pytest.raises(FileFormatError, match="does not exist"):
        read_ismrmrd(tmp_path / "absent.h5")


# --------------------------------------------------------------------------- bad input files
def test_missing_file(tmp_path):
    with pytest.raises(FileFormatError, match=r"nothing.h5: file does not exist"):
        open_raw(tmp_path / "nothing.h5")
    with pytest.raises(FileFormatError, match="not a regular file"):
        open_raw(tmp_path)


def test_text_file_is_not_hdf5(tmp_path):
    path = tmp_path / "notes.h5"
    path.write_text("kspace = 1\n")
    with pytest.raises(FileFormatError, match=r"notes.h5: not an HDF5 file"):
        open_raw(path)
    with pytest.raises(FileFormatError, match="not an HDF5 file"):
        read_images(path)


def test_truncated_file(tmp_path, data_dir):
    data = (data_dir / "mr_small_8ch_semireal.h5").read_bytes()
    path = tmp_path / "cut.h5"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FileFormatError, match=r"cut.h5: cannot open as HDF5, truncated or corrupt"):
        open_raw(path)


def test_missing_kspace_and_kspace_group(tmp_path):
    with pytest.raises(FileFormatError, match=r"no dataset 'kspace' \(found: \['image'\]\)"):
        open_raw(h5(tmp_path / "a.h5", image=np.zeros((2, 2))))
    path = tmp_path / "g.h5"
    with h5py.File(path, "w") as f:
        f.create_group("kspace")
    with pytest.raises(FileFormatError, match="'kspace' is a Group, expected a dataset"):
        open_raw(path)


@pytest.mark.parametrize("shape", [(4, 4), (1, 1, 2, 4, 4)])
def test_wrong_rank(tmp_path, shape):
    with pytest.raises(ShapeError, match=re.escape(f"'kspace' has shape {shape}, expected (slices")):
        open_raw(h5(tmp_path / "r.h5", kspace=np.ones(shape, np.complex64)))


@pytest.mark.parametrize("dtype", [np.float32, np.int16, [("real", "<f4"), ("imag", "<f4")]])
def test_real_dtype(tmp_path, dtype):
    with pytest.raises(FileFormatError, match=r"'/kspace' has dtype .*, expected complex64 or "):
        open_raw(h5(tmp_path / "real.h5", kspace=np.ones((1, 2, 4, 4), dtype)))


def test_zero_slices_and_all_zero_slice(tmp_path):
    with pytest.raises(InvalidDataError, match=r"'kspace' has shape \(0, 2, 4, 4\): no slices"):
        open_raw(h5(tmp_path / "z.h5", kspace=np.ones((0, 2, 4, 4), np.complex64)))
    with open_raw(h5(tmp_path / "zero.h5", kspace=np.zeros((2, 2, 4, 4), np.complex64))) as raw:
        with pytest.raises(InvalidDataError, match="slice 1 of 'kspace' is all zero"):
            raw.kspace(1)
        with pytest.raises(InvalidDataError, match="slice 2 out of range, the file has 2 slices"):
            raw.kspace(2)


@pytest.mark.parametrize("mask_shape", [(5,), (8, 5), (3, 8, 6), (6, 8)])
def test_mask_does_not_match_kspace(tmp_path, mask_shape):
    k, mask = np.ones((2, 2, 8, 6), np.complex64), np.ones(mask_shape, bool)
    expected = re.escape(f"'mask' has shape {mask_shape}, expected one of [(6,), (8, 6), (2, 8, 6)]")
    with pytest.raises(ShapeError, match=expected):
        open_raw(h5(tmp_path / "m.h5", kspace=k, mask=mask))


@pytest.mark.parametrize("shape", [(3, 8, 6), (8, 6), (2, 2, 8, 6)])
def test_reference_does_not_match_kspace(tmp_path, shape):
    path = h5(tmp_path / "ref.h5", kspace=np.ones((2, 2, 8, 6), np.complex64),
              reconstruction_rss=np.ones(shape, np.float32))
    expected = re.escape(f"'reconstruction_rss' has shape {shape}, expected (2,")
    with pytest.raises(ShapeError, match=expected):
        open_raw(path)


def test_mask_values(tmp_path):
    k = np.ones((1, 2, 4, 4), np.complex64)
    with open_raw(h5(tmp_path / "m.h5", kspace=k, mask=np.array([0, 0.5, 1, 1], np.float32))) as raw:
        with pytest.raises(InvalidDataError, match=r"'mask' holds values \[0.5\], expected only 0"):
            raw.mask(0)
    with open_raw(h5(tmp_path / "e.h5", kspace=k, mask=np.zeros(4, np.uint8))) as raw:
        with pytest.raises(InvalidDataError, match="'mask' samples nothing for slice 0"):
            raw.mask(0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, complex(0, -np.inf)])
def test_nan_inf_in_a_slice(tmp_path, rng, bad):
    k = complex_normal(rng, (3, 2, 4, 4))
    k[1, 0, 2, 3] = bad
    with open_raw(h5(tmp_path / "n.h5", kspace=k)) as raw:
        raw.kspace(0)
        with pytest.raises(InvalidDataError, match=r"n.h5: slice 1 of 'kspace' holds 1 NaN/Inf values"):
            raw.kspace(1)


@pytest.mark.parametrize("name", ["kspace", "mask", "reconstruction_rss"])
def test_external_link_refused(tmp_path, name):
    other = h5(tmp_path / "other.h5", data=np.ones((1, 2, 4, 4), np.complex64),
               m=np.ones(4, bool), rss=np.ones((1, 4, 4), np.float32))
    path = tmp_path / "ext.h5"
    with h5py.File(path, "w") as f:
        if name != "kspace":
            f["kspace"] = np.ones((1, 2, 4, 4), np.complex64)
        target = {"kspace": "data", "mask": "m", "reconstruction_rss": "rss"}[name]
        f[name] = h5py.ExternalLink(str(other), target)
    expected = rf"ext.h5: '{name}' is an external link to '\w+' in .*other.h5"
    with pytest.raises(FileFormatError, match=expected):
        open_raw(path)


def test_soft_link_to_external_link_refused(tmp_path):
    other = h5(tmp_path / "other.h5", data=np.ones((1, 2, 4, 4), np.complex64))
    path = tmp_path / "hop.h5"
    with h5py.File(path, "w") as f:
        f["outside"] = h5py.ExternalLink(str(other), "data")
        f["kspace"] = h5py.SoftLink("/outside")
    with pytest.raises(FileFormatError, match="'/outside' is an external link to 'data'"):
        open_raw(path)


def test_virtual_and_external_storage_refused(tmp_path):
    source = h5(tmp_path / "src.h5", data=np.ones((1, 2, 4, 4), np.complex64))
    layout = h5py.VirtualLayout(shape=(1, 2, 4, 4), dtype=np.complex64)
    layout[:] = h5py.VirtualSource(str(source), "data", shape=(1, 2, 4, 4))
    path = tmp_path / "vds.h5"
    with h5py.File(path, "w") as f:
        f.create_virtual_dataset("kspace", layout)
    with pytest.raises(FileFormatError, match="dataset 'kspace' is virtual"):
        open_raw(path)
    path = tmp_path / "extern.h5"
    (tmp_path / "raw.bin").write_bytes(np.ones((1, 2, 4, 4), np.complex64).tobytes())
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", shape=(1, 2, 4, 4), dtype=np.complex64,
                         external=[(str(tmp_path / "raw.bin"), 0, h5py.h5f.UNLIMITED)])
    with pytest.raises(FileFormatError, match="dataset 'kspace' is stored externally"):
        open_raw(path)


def test_bad_noise_and_image_files(tmp_path, rng):
    with pytest.raises(ShapeError, match=r"'noise' has shape \(2, 3, 4\), expected \(coils, samples\)"):
        read_noise(h5(tmp_path / "n3.h5", noise=complex_normal(rng, (2, 3, 4))))
    with pytest.raises(FileFormatError, match="'/noise' has dtype float64, expected complex64"):
        read_noise(h5(tmp_path / "nr.h5", noise=np.ones((2, 4))))
    with pytest.raises(FileFormatError, match=r"no dataset 'noise' \(found: \['kspace'\]\)"):
        read_noise(h5(tmp_path / "k.h5", kspace=np.ones((2, 4), np.complex64)))
    with pytest.raises(FileFormatError, match="'/reconstruction' has dtype complex64, expected real"):
        read_images(h5(tmp_path / "c.h5", reconstruction=np.ones((1, 4, 4), np.complex64)))
    images = np.ones((2, 4, 4), np.float32)
    images[1, 2, 2] = np.nan
    with pytest.raises(InvalidDataError, match=r"holds 1 NaN/Inf values \(first at index \(1, 2, 2"):
        read_images(h5(tmp_path / "nan.h5", reconstruction=images))
    with pytest.raises(ShapeError, match=r"'/reconstruction' has shape \(4,\)"):
        read_images(h5(tmp_path / "r1.h5", reconstruction=np.ones(4)))


# --------------------------------------------------------------------------- bad outputs
@pytest.fixture
def readonly_dir(tmp_path):
    """A folder nobody can create files in (chmod for users, the immutable flag for root)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)],
                                                        capture_output=True).returncode != 0:
        pytest.skip("running as root without the immutable flag: no folder is unwritable")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_unwritable_or_missing_output_folder(tmp_path, readonly_dir):
    images = np.ones((1, 4, 4), np.float32)
    with pytest.raises(OutputError, match=r"output folder .*ro"):
        write_reconstruction(readonly_dir / "out.h5", images)
    with pytest.raises(OutputError, match=r"output folder .*ro"):
        write_kspace(readonly_dir / "raw.h5", np.ones((1, 1, 4, 4), np.complex64))
    assert os.listdir(readonly_dir) == []
    with pytest.raises(OutputError, match=r"output folder .*missing does not exist"):
        write_reconstruction(tmp_path / "missing" / "out.h5", images)
    with pytest.raises(OutputError, match="is a directory"):
        write_reconstruction(tmp_path, images)


def test_output_equal_to_input_refused(tmp_path, data_dir):
    source = tmp_path / "in.h5"
    shutil.copyfile(data_dir / "mr_small_8ch_semireal.h5", source)
    before = digest(source)
    (tmp_path / "link.h5").symlink_to(source)
    os.link(source, tmp_path / "hard.h5")
    images = np.ones((1, 64, 64), np.float32)
    cases = [(source, source), (tmp_path / "link.h5", source), (source, tmp_path / "link.h5"),
             (tmp_path / "hard.h5", source), (tmp_path / "." / "in.h5", "in.h5")]
    cwd = os.getcwd()
    os.chdir(tmp_path)  # the relative input path "in.h5" resolves against the working folder
    try:
        for out, given in cases:
            with pytest.raises(OutputError, match="is the input file .*never overwritten"):
                write_reconstruction(out, images, input_path=given)
    finally:
        os.chdir(cwd)
    assert digest(source) == before


def test_failed_write_leaves_nothing_and_keeps_existing_target(tmp_path, rng):
    images = np.abs(rng.standard_normal((2, 6, 6))).astype(np.float32)
    unstorable = {"bad": np.asarray([object(), None], dtype=object)}  # h5py has no type for objects
    target = tmp_path / "out.h5"
    with pytest.raises(OutputError, match=r"could not write .*out.h5: TypeError: Object dtype"):
        write_reconstruction(target, images, extra=unstorable)
    assert os.listdir(tmp_path) == []  # neither the target nor a temporary file

    write_reconstruction(target, images, attrs={"method": "first"})
    before = digest(target)
    with pytest.raises(OutputError, match="could not write"):
        write_reconstruction(target, 2 * images, attrs={"method": "second"}, extra=unstorable)
    assert digest(target) == before and os.listdir(tmp_path) == ["out.h5"]
    np.testing.assert_array_equal(read_images(target), images)


def test_bad_values_for_writers(tmp_path, rng):
    out = tmp_path / "o.h5"
    nan = np.ones((1, 4, 4), np.float32)
    nan[0, 1, 1] = np.nan
    with pytest.raises(InvalidDataError, match=r"images holds 1 NaN/Inf values \(first at .*\(0, 1, 1"):
        write_reconstruction(out, nan)
    with pytest.raises(InvalidDataError, match="images has dtype complex64, expected real numbers"):
        write_reconstruction(out, complex_normal(rng, (1, 4, 4)))
    with pytest.raises(ShapeError, match=r"images has shape \(4,\), expected 3 non-empty axes"):
        write_reconstruction(out, np.ones(4))
    with pytest.raises(InvalidDataError, match="attribute 'when' = .* is not a scalar, string or JSON"):
        write_reconstruction(out, np.ones((1, 4, 4)), attrs={"when": object()})
    with pytest.raises(InvalidDataError, match="extra dataset name 'reconstruction'"):
        write_reconstruction(out, np.ones((1, 4, 4)), extra={"reconstruction": np.ones(2)})
    k = complex_normal(rng, (2, 2, 4, 6))
    with pytest.raises(ShapeError, match=re.escape("mask has shape (4,), expected one of [(6,), (4,")):
        write_kspace(out, k, mask=np.ones(4, bool))
    with pytest.raises(InvalidDataError, match="mask .* must hold only 0 and 1"):
        write_kspace(out, k, mask=np.full(6, 2))
    with pytest.raises(ShapeError, match=r"reference has shape \(3, 4, 6\), expected 2 slices"):
        write_kspace(out, k, reference=np.ones((3, 4, 6)))
    with pytest.raises(InvalidDataError, match="kspace has dtype <U1"):
        write_kspace(out, np.full((1, 1, 2, 2), "a"))
    assert os.listdir(tmp_path) == []
