"""Non-Cartesian raw layout: round trip and clear errors on bad trajectories."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from physics.errors import FileFormatError, InvalidDataError, ShapeError
from recon.io import is_noncartesian, open_raw, read_noncartesian, write_noncartesian


@pytest.fixture
def radial(rng):
    traj = rng.uniform(-16, 16, (12, 40, 2)).astype(np.float32)
    kspace = (rng.standard_normal((2, 3, 12, 40)) + 1j * rng.standard_normal((2, 3, 12, 40))).astype(np.complex64)
    return kspace, traj


def test_round_trip(tmp_path, radial):
    kspace, traj = radial
    path = tmp_path / "nc.h5"
    dcf = np.abs(traj[..., 0]) + 1
    write_noncartesian(path, kspace, traj, (32, 32), dcf=dcf, reference=np.ones((2, 32, 32)),
                       attrs={"note": "x"})
    assert is_noncartesian(path)
    d = read_noncartesian(path)
    np.testing.assert_array_equal(d.kspace, kspace)
    np.testing.assert_array_equal(d.trajectory, traj)
    np.testing.assert_array_equal(d.dcf, dcf)
    assert d.image_shape == (32, 32) and d.reference.shape == (2, 32, 32) and d.attrs["note"] == "x"


@pytest.mark.parametrize("edit, error, words", [
    (lambda t: t.__setitem__((0, 0, 0), np.nan), InvalidDataError, "NaN"),
    (lambda t: t.__setitem__((3, 5, 1), 16.0), InvalidDataError, "outside"),  # N/2 is out of range
])
def test_bad_trajectory_values(tmp_path, radial, edit, error, words):
    kspace, traj = radial
    traj = traj.copy()
    edit(traj)
    with pytest.raises(error, match=words):
        write_noncartesian(tmp_path / "w.h5", kspace, traj, (32, 32))
    path = tmp_path / "r.h5"
    with h5py.File(path, "w") as f:
        f["kspace"], f["trajectory"] = kspace, traj
        f.attrs["image_shape"] = [32, 32]
    with pytest.raises(error, match=words):
        read_noncartesian(path)
    assert not (tmp_path / "w.h5").exists()


def test_bad_layouts(tmp_path, radial):
    kspace, traj = radial
    path = tmp_path / "r.h5"
    with h5py.File(path, "w") as f:
        f["kspace"], f["trajectory"] = kspace, traj[..., :1]
        f.attrs["image_shape"] = [32, 32]
    with pytest.raises(ShapeError, match="trajectory"):
        read_noncartesian(path)
    with h5py.File(path, "w") as f:
        f["kspace"], f["trajectory"] = kspace[..., :30], traj
        f.attrs["image_shape"] = [32, 32]
    with pytest.raises(ShapeError, match="kspace"):
        read_noncartesian(path)
    with h5py.File(path, "w") as f:
        f["kspace"], f["trajectory"] = kspace, traj
    with pytest.raises(FileFormatError, match="image_shape"):
        read_noncartesian(path)
    with pytest.raises(ShapeError):
        write_noncartesian(tmp_path / "w.h5", kspace[0], traj, (32, 32))


def test_shared_radial_file_is_recognised(data_dir):
    """The real radial file holds a trajectory, so it is not mistaken for Cartesian k-space."""
    assert is_noncartesian(data_dir / "cardiac_radial_12ch_real.h5")
    assert not is_noncartesian(data_dir / "brain_4ch_real.h5")
    with open_raw(data_dir / "brain_4ch_real.h5") as raw:
        assert raw.num_coils == 4
