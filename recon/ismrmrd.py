"""ISMRMRD HDF5 raw data (read with the ``ismrmrd`` package) as centred Cartesian k-space."""

from __future__ import annotations

import os

import h5py
import numpy as np

from physics.errors import FileFormatError, InvalidDataError, ShapeError
from recon.io import PathLike, _check_finite, _dataset, _local, _open_h5

__all__ = ["is_ismrmrd", "read_ismrmrd"]

# Acquisitions that are not imaging readouts (ISMRMRD flag bits), skipped by read_ismrmrd.
_SKIPPED_FLAGS = (
    "ACQ_IS_NOISE_MEASUREMENT", "ACQ_IS_PARALLEL_CALIBRATION", "ACQ_IS_NAVIGATION_DATA",
    "ACQ_IS_PHASECORR_DATA", "ACQ_IS_HPFEEDBACK_DATA", "ACQ_IS_DUMMYSCAN_DATA",
    "ACQ_IS_RTFEEDBACK_DATA", "ACQ_IS_SURFACECOILCORRECTIONSCAN_DATA",
    "ACQ_IS_PHASE_STABILIZATION_REFERENCE", "ACQ_IS_PHASE_STABILIZATION",
)


def is_ismrmrd(path: PathLike, dataset: str = "dataset") -> bool:
    """True when ``path`` is an HDF5 file holding an ISMRMRD group ``dataset`` (no ``kspace``)."""
    with _open_h5(path) as f:
        return "kspace" not in f and isinstance(_local(f, dataset), h5py.Group)


def read_ismrmrd(path: PathLike, dataset: str = "dataset") -> tuple[np.ndarray, str]:
    """Cartesian ISMRMRD raw data as centred k-space complex64 (slices, coils, ky, kx) and the XML.

    Uses the first encoding space: kx = encodedSpace.matrixSize.x, ky = matrixSize.y. Sample s of
    a readout goes to kx index ``nx//2 + s - center_sample`` (``discard_pre``/``discard_post``
    samples dropped, ``ACQ_IS_REVERSE`` readouts flipped), its ``kspace_encode_step_1`` to
    ``ny//2 + step - encodingLimits.kspace_encoding_step_1.center``. Noise, calibration-only,
    navigator, phase-correction and other non-imaging acquisitions and those of other encoding
    spaces are skipped; repeated averages are averaged. Unsupported (FileFormatError): non-Cartesian
    trajectories, 3D encoding, several contrasts/phases/repetitions/sets.
    """
    import ismrmrd  # noqa: PLC0415 - heavy import (xsdata), only needed here
    import ismrmrd.xsd  # noqa: PLC0415

    with _open_h5(path) as f:  # validate the layout with our own checks first
        if not isinstance(_local(f, dataset), h5py.Group):
            raise FileFormatError(f"{path}: no ISMRMRD group '{dataset}' (found: {sorted(f.keys())})")
        _dataset(f, f"{dataset}/xml")
        _dataset(f, f"{dataset}/data")
    with ismrmrd.Dataset(os.fspath(path), dataset, create_if_needed=False, mode="r") as dset:
        xml = dset.read_xml_header()
        xml = xml.decode("utf-8") if isinstance(xml, bytes) else str(xml)
        try:
            header = ismrmrd.xsd.CreateFromDocument(xml)
        except Exception as e:
            raise FileFormatError(f"{path}: invalid ISMRMRD XML header in '{dataset}/xml' ({e})") from e
        if not header.encoding:
            raise FileFormatError(f"{path}: ISMRMRD header has no <encoding>")
        enc = header.encoding[0]
        if enc.trajectory != ismrmrd.xsd.trajectoryType.CARTESIAN:
            raise FileFormatError(f"{path}: trajectory '{enc.trajectory.value}' is not supported, "
                                  "expected 'cartesian'")
        size = enc.encodedSpace.matrixSize
        if size.z > 1:
            raise FileFormatError(f"{path}: 3D encoding (matrix z = {size.z}) is not supported")
        nx, ny = size.x, size.y
        limits = enc.encodingLimits
        ky_centre = limits.kspace_encoding_step_1.center if limits.kspace_encoding_step_1 else ny // 2
        skip = sum(1 << (getattr(ismrmrd, flag) - 1) for flag in _SKIPPED_FLAGS)
        reverse = 1 << (ismrmrd.ACQ_IS_REVERSE - 1)
        lines = []  # (slice, ky, kx0, samples (coils, n))
        for n in range(dset.number_of_acquisitions()):
            acq = dset.read_acquisition(n)
            if acq.flags & skip or acq.encoding_space_ref != 0:
                continue
            idx = acq.idx
            other = {k: getattr(idx, k) for k in ("contrast", "phase", "repetition", "set",
                                                  "kspace_encode_step_2") if getattr(idx, k)}
            if other:
                raise FileFormatError(f"{path}: acquisition {n} has {other}; only one contrast, "
                                      "phase, repetition, set and 2D encoding are supported")
            data = np.array(acq.data, dtype=np.complex64)
            centre = acq.center_sample
            if acq.flags & reverse:
                data, centre = data[:, ::-1], data.shape[1] - 1 - centre
            lo, hi = acq.discard_pre, data.shape[1] - acq.discard_post
            ky, kx0 = ny // 2 + idx.kspace_encode_step_1 - ky_centre, nx // 2 - centre + lo
            if not (0 <= ky < ny and 0 <= kx0 and kx0 + hi - lo <= nx):
                raise ShapeError(f"{path}: acquisition {n} (encode step {idx.kspace_encode_step_1}, "
                                 f"{data.shape[1]} samples, centre {acq.center_sample}) falls "
                                 f"outside the encoded matrix ({ny}, {nx})")
            lines.append((idx.slice, ky, kx0, data[:, lo:hi]))
    if not lines:
        raise InvalidDataError(f"{path}: no imaging acquisitions in '{dataset}'")
    coils = {line[3].shape[0] for line in lines}
    if len(coils) != 1:
        raise FileFormatError(
            f"{path}: acquisitions have different numbers of channels {sorted(coils)}")
    slices = limits.slice.maximum + 1 if limits.slice else 1
    slices = max(slices, 1 + max(line[0] for line in lines))
    kspace = np.zeros((slices, coils.pop(), ny, nx), np.complex64)
    count = np.zeros((slices, 1, ny, nx), np.int32)
    for s, ky, kx0, samples in lines:
        kspace[s, :, ky, kx0:kx0 + samples.shape[1]] += samples
        count[s, :, ky, kx0:kx0 + samples.shape[1]] += 1
    np.divide(kspace, count, out=kspace, where=count > 1)
    _check_finite(kspace, f"{path}: ISMRMRD acquisitions in '{dataset}'")
    return kspace, xml
