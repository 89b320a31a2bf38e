"""Raw data and image files in fastMRI-style HDF5 (h5py); ISMRMRD input is in :mod:`recon.ismrmrd`.

fastMRI layout: ``kspace`` complex (slices, coils, ky, kx), centred (k-space centre at n//2) and
orthonormal as :func:`physics.fft.fftc`; optional ``mask`` (kx,), (ky, kx) or (slices, ky, kx);
optional ``reconstruction_rss`` float32 (slices, ny, nx) and ``ismrmrd_header`` (XML bytes). A
rank-3 ``kspace`` (coils, ky, kx) is read as one slice. Output files hold ``reconstruction``
float32 (slices, ny, nx) plus root attributes.

CT layout (:func:`read_ct`, :func:`write_ct`): ``sinogram`` float32 of line integrals (after the
log transform), (slices, angles, detectors) for parallel and fan beam, (angles, rows, columns) for
cone beam; ``angles`` float32 (angles,) in radians; root attributes ``geometry`` (``parallel``,
``fan``, ``cone``), ``detector_spacing_mm`` (cone: one value or (rows, columns)),
``pixel_size_mm``, ``image_shape`` ((ny, nx) or (nz, ny, nx)), for fan and cone
``source_to_isocenter_mm`` and ``source_to_detector_mm``; optionally ``detector_offset_mm`` and
``detector_type`` (``flat`` or ``arc``, fan beam); optional ``counts`` (raw photon counts, the
sinogram's shape) with root attribute ``I0``; optional reference ``image`` float32 (slices, ny, nx)
or (nz, ny, nx) in mm^-1. Conventions of the geometry: :mod:`physics.ct_geometry`.

Non-Cartesian layout (:func:`read_noncartesian`, :func:`write_noncartesian`): ``kspace`` complex
(slices, coils, *samples) (e.g. samples = (spokes, readout)); ``trajectory`` float32
(*samples, ndim) in cycles per field of view within [-N/2, N/2) per axis, axes in the order of
the image axes ((ky, kx) for an image (ny, nx)), such that a trajectory on the integer grid
reproduces the centred FFT of :mod:`physics.fft`; root attribute ``image_shape``; optional ``dcf``
float32 (*samples) and ``reconstruction_rss`` (slices, ny, nx).

Inputs are opened read-only and never followed out of the file: external links, virtual datasets
and external raw storage are refused. Every problem raises a :class:`physics.errors.ReconError`
subclass naming the file, the dataset, what was found and what was expected. Writers write a
temporary file in the target folder and ``os.replace`` it, so a failed write leaves nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from physics.ct_geometry import CTGeometry
from physics.errors import FileFormatError, InvalidDataError, OutputError, ReconError, ShapeError

__all__ = [
    "CTData", "NonCartesianData", "RawFile", "center_crop", "is_ct", "is_noncartesian", "open_raw", "read_ct", "read_ct_image", "read_images", "read_noise", "read_noncartesian",
    "write_ct", "write_kspace", "write_noncartesian", "write_reconstruction",
]

PathLike = str | os.PathLike



# ----------------------------------------------------------------------------------- reading
def _open_h5(path: PathLike) -> h5py.File:
    """Open an existing HDF5 file read-only, turning every failure into FileFormatError."""
    p = Path(path)
    if not p.exists():
        raise FileFormatError(f"{p}: file does not exist")
    if not p.is_file():
        raise FileFormatError(f"{p}: not a regular file (expected an HDF5 file)")
    try:
        if not h5py.is_hdf5(p):
            raise FileFormatError(f"{p}: not an HDF5 file (no HDF5 signature)")
        return h5py.File(p, "r")
    except OSError as e:
        raise FileFormatError(f"{p}: cannot open as HDF5, truncated or corrupt ({e})") from e


def _local(f: h5py.File, name: str, hops: int = 0) -> h5py.HLObject | None:
    """Object at ``name`` in ``f``, following soft links by hand and refusing external links."""
    if hops > 16:
        raise FileFormatError(f"{f.filename}: soft links around '{name}' form a loop")
    node: h5py.Group = f["/"]
    parts = [p for p in name.split("/") if p]
    for k, part in enumerate(parts):
        if not isinstance(node, h5py.Group):
            return None
        link = node.get(part, getlink=True)
        if link is None:
            return None
        if isinstance(link, h5py.SoftLink):
            base = link.path if link.path.startswith("/") else f"{node.name.rstrip('/')}/{link.path}"
            return _local(f, "/".join([base, *parts[k + 1:]]), hops + 1)
        if isinstance(link, h5py.ExternalLink):
            raise FileFormatError(
                f"{f.filename}: '{name}' is an external link to '{link.path}' in {link.filename}; "
                "input files must hold their data themselves")
        if not isinstance(link, h5py.HardLink):
            raise FileFormatError(f"{f.filename}: '{name}' is a {type(link).__name__}, "
                                  "expected a dataset stored in the file")
        node = node[part]
    return node


def _dataset(f: h5py.File, name: str, *, required: bool = True) -> h5py.Dataset | None:
    """Dataset ``name`` stored in ``f`` itself (no links out, not virtual, no external storage)."""
    obj = _local(f, name)
    if obj is None:
        if required:
            raise FileFormatError(
                f"{f.filename}: no dataset '{name}' (found: {sorted(f.keys()) or 'nothing'})")
        return None
    if not isinstance(obj, h5py.Dataset):
        raise FileFormatError(f"{f.filename}: '{name}' is a {type(obj).__name__}, expected a dataset")
    if obj.is_virtual or obj.external:
        raise FileFormatError(
            f"{f.filename}: dataset '{name}' is {'virtual' if obj.is_virtual else 'stored externally'}"
            "; input files must hold their data themselves")
    return obj


def _read(dset: h5py.Dataset, index: Any = ()) -> np.ndarray:
    try:
        return np.asarray(dset[index])
    except OSError as e:
        raise FileFormatError(
            f"{dset.file.filename}: cannot read dataset '{dset.name}', file corrupt ({e})") from e


def _check_complex(dset: h5py.Dataset) -> None:
    if dset.dtype.kind != "c" or dset.dtype.itemsize not in (8, 16):  # either byte order
        raise FileFormatError(
            f"{dset.file.filename}: dataset '{dset.name}' has dtype {dset.dtype}, "
            "expected complex64 or complex128")


def _check_finite(x: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(x)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InvalidDataError(f"{what} holds {int(bad.sum())} NaN/Inf values (first at index {first})")


def _real_stack(dset: h5py.Dataset) -> np.ndarray:
    """Read a real (slices, ny, nx) or (ny, nx) image dataset as float32 (slices, ny, nx)."""
    where = f"{dset.file.filename}: dataset '{dset.name}'"
    if dset.dtype.kind not in "fiu":
        raise FileFormatError(
            f"{where} has dtype {dset.dtype}, expected real (float or integer) images")
    if dset.ndim not in (2, 3):
        raise ShapeError(f"{where} has shape {dset.shape}, expected (slices, ny, nx) or (ny, nx)")
    x = _read(dset).astype(np.float32).reshape((-1, *dset.shape[-2:]))
    if x.size == 0:
        raise InvalidDataError(f"{where} has shape {dset.shape}: no images")
    _check_finite(x, where)
    return x


class RawFile:
    """A fastMRI-style raw file opened read-only; k-space is read one slice at a time.

    Use :func:`open_raw` (also a context manager). ``shape`` is (slices, coils, ky, kx); a rank-3
    ``kspace`` dataset (coils, ky, kx) is one slice.
    """

    def __init__(self, path: PathLike):
        self.path = Path(path)
        self._file = _open_h5(self.path)
        try:
            self._validate()
        except BaseException:
            self._file.close()
            raise

    def _validate(self) -> None:
        f, p = self._file, self.path
        self._kspace = ks = _dataset(f, "kspace")
        _check_complex(ks)
        if ks.ndim not in (3, 4):
            raise ShapeError(f"{p}: dataset 'kspace' has shape {ks.shape}, "
                             "expected (slices, coils, ky, kx) or (coils, ky, kx)")
        self.shape: tuple[int, int, int, int] = tuple(ks.shape) if ks.ndim == 4 else (1, *ks.shape)
        if self.shape[0] == 0:
            raise InvalidDataError(f"{p}: dataset 'kspace' has shape {ks.shape}: no slices")
        if 0 in self.shape:
            raise InvalidDataError(f"{p}: dataset 'kspace' has shape {ks.shape}: an empty axis")
        slices, _, ny, nx = self.shape
        self._mask = _dataset(f, "mask", required=False)
        if self._mask is not None:
            if self._mask.dtype.kind not in "biuf":
                raise FileFormatError(f"{p}: dataset 'mask' has dtype {self._mask.dtype}, "
                                      "expected bool, integer or float")
            allowed = [(nx,), (ny, nx), (slices, ny, nx)]
            if tuple(self._mask.shape) not in allowed:
                raise ShapeError(f"{p}: dataset 'mask' has shape {self._mask.shape}, expected one "
                                 f"of {allowed} to match 'kspace' {ks.shape}")
        self._reference = _dataset(f, "reconstruction_rss", required=False)
        ref = self._reference
        if ref is not None and (ref.ndim not in (2, 3) or ref.shape[:-2] not in ((), (slices,))
                                or (ref.ndim == 2 and slices != 1)):
            raise ShapeError(f"{p}: dataset 'reconstruction_rss' has shape {ref.shape}, "
                             f"expected ({slices}, ny, nx) to match 'kspace' {ks.shape}")
        self._header = _dataset(f, "ismrmrd_header", required=False)

    @property
    def num_slices(self) -> int:
        return self.shape[0]

    @property
    def num_coils(self) -> int:
        return self.shape[1]

    def _index(self, i: int) -> int:
        if not self._file:
            raise FileFormatError(f"{self.path}: file is closed")
        n = self.num_slices
        if not isinstance(i, (int, np.integer)) or not -n <= i < n:
            raise InvalidDataError(f"{self.path}: slice {i!r} out of range, the file has {n} slices")
        return int(i) % n

    def kspace(self, i: int) -> np.ndarray:
        """Slice ``i`` of k-space, complex64 (coils, ky, kx); only this slice is read."""
        i = self._index(i)
        y = _read(self._kspace, i if self._kspace.ndim == 4 else ()).astype(np.complex64)
        _check_finite(y, f"{self.path}: slice {i} of 'kspace'")
        if not y.any():
            raise InvalidDataError(f"{self.path}: slice {i} of 'kspace' is all zero")
        return y

    def mask(self, i: int) -> np.ndarray:
        """Sampling mask of slice ``i``, bool (ky, kx): the file's ``mask``, else non-zero k-space."""
        i = self._index(i)
        ny, nx = self.shape[2:]
        if self._mask is None:
            return np.any(self.kspace(i) != 0, axis=0)
        m = _read(self._mask, i if self._mask.ndim == 3 else ())
        what = f"{self.path}: dataset 'mask'"
        if not np.isin(m, (0, 1)).all():
            bad = np.unique(m[~np.isin(m, (0, 1))])[:5]
            raise InvalidDataError(f"{what} holds values {bad.tolist()}, expected only 0 and 1")
        m = np.broadcast_to(m.astype(bool), (ny, nx)).copy()
        if not m.any():
            raise InvalidDataError(f"{what} samples nothing for slice {i}")
        return m

    def reference(self) -> np.ndarray | None:
        """``reconstruction_rss`` as float32 (slices, ny, nx), or None when absent."""
        return None if self._reference is None else _real_stack(self._reference)

    @property
    def attrs(self) -> dict[str, Any]:
        """Root attributes (bytes decoded, numpy values as Python values)."""
        return {k: _plain(v) for k, v in self._file.attrs.items()}

    @property
    def header(self) -> str | None:
        """The ``ismrmrd_header`` XML as text, or None when absent."""
        if self._header is None:
            return None
        h = _read(self._header)
        h = h.item() if h.ndim == 0 else h.ravel()[0]
        return h.decode("utf-8", "replace") if isinstance(h, bytes) else str(h)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> RawFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RawFile({str(self.path)!r}, shape={self.shape}, mask={self._mask is not None})"


def open_raw(path: PathLike) -> RawFile:
    """Open a fastMRI-style raw file read-only and validate its layout (see :class:`RawFile`)."""
    return RawFile(path)


def read_noise(path: PathLike, dataset: str = "noise") -> np.ndarray:
    """Noise-only samples, complex64 (coils, samples), e.g. for pre-whitening."""
    with _open_h5(path) as f:
        d = _dataset(f, dataset)
        _check_complex(d)
        if d.ndim != 2:
            raise ShapeError(
                f"{path}: dataset '{dataset}' has shape {d.shape}, expected (coils, samples)")
        if 0 in d.shape:
            raise InvalidDataError(f"{path}: dataset '{dataset}' has shape {d.shape}: no samples")
        x = _read(d).astype(np.complex64)
    _check_finite(x, f"{path}: dataset '{dataset}'")
    return x


def read_images(path: PathLike, dataset: str = "reconstruction") -> np.ndarray:
    """Real images float32 (slices, ny, nx), e.g. ``reconstruction`` or ``reconstruction_rss``."""
    with _open_h5(path) as f:
        return _real_stack(_dataset(f, dataset))


def read_ct_image(path: PathLike, dataset: str = "image") -> tuple[np.ndarray, float]:
    """A CT image stack float32 (slices, ny, nx) in mm^-1 and its root attribute ``pixel_size_mm``."""
    with _open_h5(path) as f:
        image = _real_stack(_dataset(f, dataset))
        pixel = _numbers({k: _plain(v) for k, v in f.attrs.items()}, "pixel_size_mm", (1,), str(path))[0]
    if pixel <= 0:
        raise InvalidDataError(f"{path}: attribute 'pixel_size_mm' = {pixel}, expected > 0")
    return image, pixel


def center_crop(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Central ``shape`` = (ny, nx) part of the last two axes of ``x`` (a view), as fastMRI crops.

    On an axis of size n cropped to m the crop starts at ``(n - m) // 2``.
    """
    if len(shape) != 2 or any(int(m) < 1 for m in shape):
        raise ShapeError(f"crop shape {tuple(shape)} must be two positive sizes (ny, nx)")
    if x.ndim < 2 or x.shape[-2] < shape[0] or x.shape[-1] < shape[1]:
        raise ShapeError(f"cannot crop an array of shape {x.shape} to {tuple(shape)} over its last "
                         "two axes: the image must be at least as large as the crop")
    top, left = (x.shape[-2] - shape[0]) // 2, (x.shape[-1] - shape[1]) // 2
    return x[..., top:top + shape[0], left:left + shape[1]]


# ----------------------------------------------------------------------------------- CT
@dataclasses.dataclass(frozen=True)
class CTData:
    """A CT file in memory: ``sinogram`` (slices, angles, detectors) or cone (angles, rows, cols)
    float32, its :class:`CTGeometry`, optional ``counts`` + ``I0`` and reference ``image``."""

    sinogram: np.ndarray
    geometry: CTGeometry
    counts: np.ndarray | None = None
    I0: float | None = None
    image: np.ndarray | None = None
    attrs: dict[str, Any] = dataclasses.field(default_factory=dict)


def is_ct(path: PathLike) -> bool:
    """Whether ``path`` is an HDF5 file with a ``sinogram`` dataset (the CT layout)."""
    with _open_h5(path) as f:
        return _local(f, "sinogram") is not None


def _plain(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v.item() if isinstance(v, np.generic) else v


def _numbers(attrs: dict[str, Any], key: str, n: tuple[int, ...], where: str,
             required: bool = True) -> tuple[float, ...] | None:
    """Attribute ``key`` as a tuple of finite numbers with a length in ``n`` (a scalar is length 1)."""
    if key not in attrs:
        if required:
            raise FileFormatError(f"{where}: missing root attribute '{key}' (required by the CT layout)")
        return None
    value = attrs[key]
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = json.loads(value)
    try:
        values = tuple(float(v) for v in np.atleast_1d(np.asarray(value, np.float64)).ravel())
    except (TypeError, ValueError):
        raise FileFormatError(f"{where}: attribute '{key}' = {value!r} is not numeric") from None
    if len(values) not in n or not np.all(np.isfinite(values)):
        raise FileFormatError(f"{where}: attribute '{key}' = {value!r}, expected {' or '.join(map(str, n))} "
                              "finite number(s)")
    return values


def _ct_geometry(attrs: dict[str, Any], angles: np.ndarray, detector_shape: tuple[int, ...],
                 where: str) -> CTGeometry:
    kind = attrs.get("geometry")
    if kind not in ("parallel", "fan", "cone"):
        raise FileFormatError(f"{where}: root attribute 'geometry' = {kind!r}, expected 'parallel', 'fan' or 'cone'")
    cone = kind == "cone"
    image_shape = _numbers(attrs, "image_shape", (3,) if cone else (2,), where)
    if any(v != int(v) or v < 1 for v in image_shape):
        raise FileFormatError(f"{where}: attribute 'image_shape' = {image_shape} must be positive integers")
    spacing = _numbers(attrs, "detector_spacing_mm", (1, 2) if cone else (1,), where)
    offset = _numbers(attrs, "detector_offset_mm", (1, 2) if cone else (1,), where, required=False) or (0.0,)
    pixel = _numbers(attrs, "pixel_size_mm", (1,), where)[0]
    R = D = None
    if kind != "parallel":
        R = _numbers(attrs, "source_to_isocenter_mm", (1,), where)[0]
        D = _numbers(attrs, "source_to_detector_mm", (1,), where)[0]
    detector = attrs.get("detector_type", "flat")
    try:
        return CTGeometry(kind, tuple(int(v) for v in image_shape), tuple(float(a) for a in angles),
                          detector_shape, spacing * 2 if cone and len(spacing) == 1 else spacing,
                          offset * 2 if cone and len(offset) == 1 else offset, pixel, R, D, detector)
    except ReconError as e:
        raise FileFormatError(f"{where}: inconsistent geometry attributes: {e}") from e


def read_ct(path: PathLike) -> CTData:
    """Read and validate a CT file (layout in the module docstring)."""
    with _open_h5(path) as f:
        where = str(path)
        attrs = {k: _plain(v) for k, v in f.attrs.items()}
        sino = _dataset(f, "sinogram")
        if sino.dtype.kind not in "fiu":
            raise FileFormatError(f"{where}: dataset 'sinogram' has dtype {sino.dtype}, expected float32")
        cone = attrs.get("geometry") == "cone"
        if sino.ndim != 3 and not (sino.ndim == 2 and not cone):
            raise ShapeError(f"{where}: dataset 'sinogram' has shape {sino.shape}, expected "
                             + ("(angles, rows, columns) for cone beam" if cone else
                                "(slices, angles, detectors)"))
        if 0 in sino.shape:
            raise InvalidDataError(f"{where}: dataset 'sinogram' has shape {sino.shape}: an empty axis")
        ang = _dataset(f, "angles")
        n_angles = sino.shape[0] if cone else sino.shape[-2]
        if ang.ndim != 1 or ang.shape[0] != n_angles or ang.dtype.kind not in "fiu":
            raise ShapeError(f"{where}: dataset 'angles' has shape {ang.shape} ({ang.dtype}), expected "
                             f"({n_angles},) real radians to match 'sinogram' {sino.shape}")
        angles = _read(ang).astype(np.float64)
        _check_finite(angles, f"{where}: dataset 'angles'")
        detector_shape = tuple(sino.shape[1:]) if cone else (sino.shape[-1],)
        geometry = _ct_geometry(attrs, angles, detector_shape, where)
        y = _read(sino).astype(np.float32)
        y = y if cone or y.ndim == 3 else y[None]
        _check_finite(y, f"{where}: dataset 'sinogram'")
        counts = I0 = image = None
        if (c := _dataset(f, "counts", required=False)) is not None:
            if tuple(c.shape) != tuple(sino.shape):
                raise ShapeError(f"{where}: dataset 'counts' has shape {c.shape}, expected the "
                                 f"sinogram's {sino.shape}")
            counts = _read(c).astype(np.float32).reshape(y.shape)
            _check_finite(counts, f"{where}: dataset 'counts'")
            I0 = _numbers(attrs, "I0", (1,), f"{where} (with 'counts')")[0]
            if I0 <= 0:
                raise InvalidDataError(f"{where}: attribute 'I0' = {I0}, expected a positive photon count")
        if (im := _dataset(f, "image", required=False)) is not None:
            image = _real_stack(im) if not cone else _read(im).astype(np.float32)
            expected = geometry.image_shape if cone else (y.shape[0], *geometry.image_shape)
            if tuple(image.shape) != tuple(expected):
                raise ShapeError(f"{where}: dataset 'image' has shape {im.shape}, expected {expected} "
                                 "to match 'image_shape' and the sinogram's slices")
            _check_finite(image, f"{where}: dataset 'image'")
    return CTData(y, geometry, counts, I0, image, attrs)


# ----------------------------------------------------------------------------------- non-Cartesian
@dataclasses.dataclass(frozen=True)
class NonCartesianData:
    """A non-Cartesian raw file in memory: ``kspace`` complex64 (slices, coils, *samples),
    ``trajectory`` float32 (*samples, ndim) in cycles/FOV, ``image_shape``, optional ``dcf``
    (*samples) and ``reference`` (slices, ny, nx)."""

    kspace: np.ndarray
    trajectory: np.ndarray
    image_shape: tuple[int, ...]
    dcf: np.ndarray | None = None
    reference: np.ndarray | None = None
    attrs: dict[str, Any] = dataclasses.field(default_factory=dict)


def is_noncartesian(path: PathLike) -> bool:
    """Whether ``path`` is an HDF5 file with a ``trajectory`` dataset (the non-Cartesian layout)."""
    with _open_h5(path) as f:
        return _local(f, "trajectory") is not None


def _check_trajectory(traj: np.ndarray, image_shape: tuple[int, ...], samples: tuple[int, ...],
                      where: str) -> None:
    if traj.shape != (*samples, len(image_shape)):
        raise ShapeError(f"{where}: trajectory has shape {traj.shape}, expected {(*samples, len(image_shape))} "
                         f"(the k-space samples {samples} and one coordinate per image axis {image_shape})")
    _check_finite(traj, f"{where}: trajectory")
    half = np.asarray(image_shape, np.float64) / 2
    outside = np.any((traj < -half) | (traj >= half), axis=-1)
    if outside.any():
        first = tuple(int(i) for i in np.argwhere(outside)[0])
        raise InvalidDataError(
            f"{where}: {int(outside.sum())} trajectory points lie outside [-N/2, N/2) for image "
            f"shape {image_shape} (first at {first}: {traj[first].tolist()}); the trajectory is in "
            "cycles per field of view")


def read_noncartesian(path: PathLike) -> NonCartesianData:
    """Read and validate a non-Cartesian raw file (layout in the module docstring)."""
    where = str(path)
    with _open_h5(path) as f:
        attrs = {k: _plain(v) for k, v in f.attrs.items()}
        ks = _dataset(f, "kspace")
        _check_complex(ks)
        tr = _dataset(f, "trajectory")
        if tr.dtype.kind != "f":
            raise FileFormatError(f"{where}: dataset 'trajectory' has dtype {tr.dtype}, expected float32")
        image_shape = _numbers(attrs, "image_shape", (2, 3), where)
        if any(v != int(v) or v < 1 for v in image_shape):
            raise FileFormatError(f"{where}: attribute 'image_shape' = {image_shape} must be positive integers")
        image_shape = tuple(int(v) for v in image_shape)
        samples = tuple(tr.shape[:-1])
        if ks.ndim != len(samples) + 2 or tuple(ks.shape[2:]) != samples or 0 in ks.shape:
            raise ShapeError(f"{where}: dataset 'kspace' has shape {ks.shape}, expected (slices, coils, "
                             f"*{samples}) to match 'trajectory' {tr.shape}")
        traj = _read(tr).astype(np.float32)
        _check_trajectory(traj, image_shape, samples, where)
        kspace = _read(ks).astype(np.complex64)
        _check_finite(kspace, f"{where}: dataset 'kspace'")
        dcf = reference = None
        if (d := _dataset(f, "dcf", required=False)) is not None:
            if tuple(d.shape) != samples:
                raise ShapeError(f"{where}: dataset 'dcf' has shape {d.shape}, expected {samples}")
            dcf = _read(d).astype(np.float32)
            _check_finite(dcf, f"{where}: dataset 'dcf'")
            if (dcf < 0).any():
                raise InvalidDataError(f"{where}: dataset 'dcf' has negative weights")
        if (r := _dataset(f, "reconstruction_rss", required=False)) is not None:
            reference = _real_stack(r)
            if reference.shape[0] != kspace.shape[0]:
                raise ShapeError(f"{where}: 'reconstruction_rss' has {reference.shape[0]} slices, "
                                 f"'kspace' {kspace.shape[0]}")
    return NonCartesianData(kspace, traj, image_shape, dcf, reference, attrs)


# ----------------------------------------------------------------------------------- writing
def _output_target(path: PathLike, input_path: PathLike | None = None) -> Path:
    """Resolved output path after checking its folder and that it is not the input file."""
    p = Path(path)
    if p.is_dir():
        raise OutputError(f"output {p} is a directory, expected a file path")
    target = p.resolve()
    folder = target.parent
    if not folder.is_dir():
        raise OutputError(f"output folder {folder} does not exist (for output {p})")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {folder} is not writable (for output {p})")
    if input_path is not None:
        source = Path(input_path).resolve()
        same = source.exists() and target.exists() and os.path.samefile(source, target)
        if source == target or same:  # also hard links
            raise OutputError(f"output {p} is the input file {input_path}; "
                              "input files are never overwritten, choose another output path")
    return target


@contextlib.contextmanager
def _atomic_h5(path: PathLike, input_path: PathLike | None = None) -> Iterator[h5py.File]:
    """An HDF5 file written next to ``path`` and renamed onto it only when the body succeeds."""
    target = _output_target(path, input_path)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    try:
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))  # umask applies
    except OSError as e:
        raise OutputError(f"cannot create a file in output folder {target.parent}: {e.strerror}") from e
    try:
        with h5py.File(tmp, "w") as f:
            yield f
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, ReconError) or not isinstance(e, Exception):
            raise
        raise OutputError(f"could not write {target}: {type(e).__name__}: {e}") from e


def _attr_value(key: str, value: Any) -> Any:
    """An HDF5-storable attribute: scalars and strings as they are, containers as JSON text."""
    if isinstance(value, (str, bool, int, float, np.generic)):
        return value
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return value
    try:
        return json.dumps(value.tolist() if isinstance(value, np.ndarray) else value)
    except (TypeError, ValueError) as e:
        raise InvalidDataError(f"attribute '{key}' = {value!r} is not a scalar, string or "
                               f"JSON-serialisable value ({e})") from e


def _attrs(attrs: dict[str, Any] | None) -> dict[str, Any]:
    out = {}
    for key, value in (attrs or {}).items():
        if not isinstance(key, str) or not key:
            raise InvalidDataError(f"attribute name {key!r} must be a non-empty string")
        out[key] = _attr_value(key, value)
    return out


def _as_stack(x: Any, name: str, kind: str, rank: int) -> np.ndarray:
    """``x`` as a finite array of ``rank`` (one leading slice axis added to rank - 1)."""
    a = np.asarray(x)
    if a.dtype.kind not in kind:
        raise InvalidDataError(f"{name} has dtype {a.dtype}, expected "
                               f"{'complex or real numbers' if 'c' in kind else 'real numbers'}")
    if a.ndim == rank - 1:
        a = a[None]
    if a.ndim != rank or 0 in a.shape:
        raise ShapeError(f"{name} has shape {np.shape(x)}, expected {rank} non-empty axes "
                         "(slices first; the slice axis may be left out for one slice)")
    _check_finite(a, name)
    return a


def write_kspace(path: PathLike, kspace: np.ndarray, *, mask: np.ndarray | None = None,
                 reference: np.ndarray | None = None, attrs: dict[str, Any] | None = None) -> None:
    """Write a fastMRI-style raw file atomically.

    Args:
        kspace: (slices, coils, ky, kx) or (coils, ky, kx), stored as complex64.
        mask: (kx,), (ky, kx) or (slices, ky, kx) of 0/1, stored as bool ``mask``.
        reference: (slices, ny, nx) or (ny, nx) real, stored as float32 ``reconstruction_rss``.
        attrs: root attributes (containers stored as JSON text).
    """
    k = _as_stack(kspace, "kspace", "biufc", 4).astype(np.complex64)
    _check_finite(k, "kspace (after conversion to complex64)")
    slices, _, ny, nx = k.shape
    m = r = None
    if mask is not None:
        m = np.asarray(mask)
        allowed = [(nx,), (ny, nx), (slices, ny, nx)]
        if m.shape not in allowed:
            raise ShapeError(
                f"mask has shape {m.shape}, expected one of {allowed} for kspace {k.shape}")
        if m.dtype.kind not in "biuf" or not np.isin(m, (0, 1)).all():
            raise InvalidDataError(f"mask (dtype {m.dtype}) must hold only 0 and 1")
        m = m.astype(bool)
    if reference is not None:
        r = _as_stack(reference, "reference", "biuf", 3).astype(np.float32)
        if r.shape[0] != slices:
            raise ShapeError(f"reference has shape {np.shape(reference)}, expected {slices} slices "
                             f"to match kspace {k.shape}")
    meta = _attrs(attrs)
    with _atomic_h5(path) as f:
        f.create_dataset("kspace", data=k)
        if m is not None:
            f.create_dataset("mask", data=m)
        if r is not None:
            f.create_dataset("reconstruction_rss", data=r)
        f.attrs.update(meta)


def write_reconstruction(path: PathLike, images: np.ndarray, *, attrs: dict[str, Any] | None = None,
                         input_path: PathLike | None = None,
                         extra: dict[str, np.ndarray] | None = None) -> None:
    """Write reconstructed images atomically as fastMRI ``reconstruction`` float32 (slices, ny, nx).

    Args:
        images: real (slices, ny, nx) or (ny, nx); take ``abs`` of complex images first.
        attrs: root attributes, e.g. method and parameters (containers stored as JSON text).
        input_path: the raw file reconstructed; the output may not be this file.
        extra: more datasets to store, written as given (name -> array).
    """
    x = _as_stack(images, "images", "biuf", 3).astype(np.float32)
    _check_finite(x, "images (after conversion to float32)")
    meta = _attrs(attrs)
    extra = dict(extra or {})
    for name in extra:
        if not isinstance(name, str) or not name.strip("/") or name.strip("/") == "reconstruction":
            raise InvalidDataError(f"extra dataset name {name!r} must be a string other than "
                                   "'reconstruction'")
    with _atomic_h5(path, input_path) as f:
        f.create_dataset("reconstruction", data=x)
        for name, value in extra.items():
            f.create_dataset(name, data=np.asarray(value))
        f.attrs.update(meta)


def _geometry_attrs(g: CTGeometry) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "geometry": g.kind, "image_shape": np.asarray(g.image_shape, np.int64),
        "pixel_size_mm": g.pixel_size,
        "detector_spacing_mm": np.asarray(g.detector_spacing, np.float64),
        "detector_offset_mm": np.asarray(g.detector_offset, np.float64)}
    if g.kind != "parallel":
        attrs |= {"source_to_isocenter_mm": g.source_to_isocenter,
                  "source_to_detector_mm": g.source_to_detector}
    if g.kind == "fan":
        attrs["detector_type"] = g.detector
    return attrs


def write_ct(path: PathLike, sinogram: np.ndarray, geometry: CTGeometry, *,
             counts: np.ndarray | None = None, I0: float | None = None,
             image: np.ndarray | None = None, attrs: dict[str, Any] | None = None) -> None:
    """Write a CT file atomically (layout in the module docstring).

    Args:
        sinogram: line integrals, (slices, angles, detectors) or (angles, detectors) for 2D
            geometries, (angles, rows, columns) for cone beam.
        geometry: the acquisition geometry; the sinogram must match ``geometry.sinogram_shape``.
        counts, I0: raw photon counts (the sinogram's shape) and the incident intensity.
        image: reference image in mm^-1, (slices, ny, nx) / (ny, nx) or (nz, ny, nx) for cone.
        attrs: more root attributes.
    """
    cone = geometry.kind == "cone"
    y = _as_stack(sinogram, "sinogram", "biuf", 3).astype(np.float32)
    expected = geometry.sinogram_shape if cone else (y.shape[0], *geometry.sinogram_shape)
    if y.shape != tuple(expected):
        raise ShapeError(f"sinogram has shape {np.shape(sinogram)}, expected {tuple(expected)} for the "
                         f"{geometry.kind} geometry")
    if (counts is None) != (I0 is None):
        raise InvalidDataError("counts and I0 go together: give both or neither")
    c = im = None
    if counts is not None:
        c = _as_stack(counts, "counts", "biuf", 3).astype(np.float32)
        if c.shape != y.shape:
            raise ShapeError(f"counts has shape {np.shape(counts)}, expected the sinogram's {y.shape}")
        if not (np.isfinite(I0) and I0 > 0):
            raise InvalidDataError(f"I0 = {I0}, expected a positive photon count")
    if image is not None:
        im = _as_stack(image, "image", "biuf", 3).astype(np.float32)
        want = geometry.image_shape if cone else (y.shape[0], *geometry.image_shape)
        if im.shape != tuple(want):
            raise ShapeError(f"image has shape {np.shape(image)}, expected {tuple(want)}")
    meta = _attrs({**(attrs or {}), **_geometry_attrs(geometry), **({} if I0 is None else {"I0": float(I0)})})
    with _atomic_h5(path) as f:
        f.create_dataset("sinogram", data=y)
        f.create_dataset("angles", data=geometry.angles_array.astype(np.float32))
        if c is not None:
            f.create_dataset("counts", data=c)
        if im is not None:
            f.create_dataset("image", data=im)
        f.attrs.update(meta)


def write_noncartesian(path: PathLike, kspace: np.ndarray, trajectory: np.ndarray,
                       image_shape: tuple[int, ...], *, dcf: np.ndarray | None = None,
                       reference: np.ndarray | None = None, attrs: dict[str, Any] | None = None) -> None:
    """Write a non-Cartesian raw file atomically (layout in the module docstring).

    Args:
        kspace: complex (slices, coils, *samples).
        trajectory: (*samples, ndim) in cycles per field of view, within [-N/2, N/2).
        image_shape: (ny, nx) or (nz, ny, nx).
        dcf: optional density compensation (*samples).
        reference: optional (slices, ny, nx) real reference images.
    """
    traj = np.asarray(trajectory, np.float32)
    k = np.asarray(kspace)
    if k.dtype.kind not in "biufc" or k.ndim != traj.ndim + 1 or k.shape[2:] != traj.shape[:-1] or 0 in k.shape:
        raise ShapeError(f"kspace has shape {k.shape}, expected (slices, coils, *{traj.shape[:-1]}) "
                         f"to match trajectory {traj.shape}")
    k = k.astype(np.complex64)
    _check_finite(k, "kspace")
    image_shape = tuple(int(n) for n in image_shape)
    _check_trajectory(traj, image_shape, traj.shape[:-1], "write_noncartesian")
    w = r = None
    if dcf is not None:
        w = np.asarray(dcf, np.float32)
        if w.shape != traj.shape[:-1]:
            raise ShapeError(f"dcf has shape {w.shape}, expected {traj.shape[:-1]}")
        _check_finite(w, "dcf")
    if reference is not None:
        r = _as_stack(reference, "reference", "biuf", 3).astype(np.float32)
    meta = _attrs({**(attrs or {}), "image_shape": np.asarray(image_shape, np.int64)})
    with _atomic_h5(path) as f:
        f.create_dataset("kspace", data=k)
        f.create_dataset("trajectory", data=traj)
        if w is not None:
            f.create_dataset("dcf", data=w)
        if r is not None:
            f.create_dataset("reconstruction_rss", data=r)
        f.attrs.update(meta)
