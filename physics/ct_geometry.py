"""CT acquisition geometries: parallel beam, fan beam (flat or arc detector), cone beam.

Coordinates (millimetres, radians), the same as ASTRA's ``parallel``, ``fanflat`` and ``cone``
geometries with a centred volume:

- Image ``(ny, nx)`` (2D) or volume ``(nz, ny, nx)`` (3D) with square pixels / cubic voxels of
  side ``pixel_size``. Pixel centres: ``x = (col - (nx - 1) / 2) * pixel_size`` (left to right),
  ``y = ((ny - 1) / 2 - row) * pixel_size`` (row 0 is the top, ``y`` points up) and
  ``z = (slice - (nz - 1) / 2) * pixel_size``. The rotation axis is ``z`` through the origin.
- At angle ``theta``: ``d = (sin theta, -cos theta)`` and the detector axis
  ``e_u = (cos theta, sin theta)``; detector bin ``j`` of ``n`` sits at
  ``u_j = (j - (n - 1) / 2) * spacing + offset`` along ``e_u``.
- Parallel beam: ray ``j`` is the line through ``u_j e_u`` with direction ``d``, so a point ``p``
  projects to ``u = p . e_u`` (``theta = 0`` integrates along ``y``, columns of the image).
- Fan beam: the source is at ``R d`` and the detector centre at ``-(D - R) d`` (``R`` = source to
  isocentre, ``D`` = source to detector). Flat detector: bin ``j`` is at ``-(D - R) d + u_j e_u``.
  Arc detector (equiangular, centred on the source): bin ``j`` is at fan angle
  ``gamma_j = u_j / D`` (``spacing`` is the arc length on the detector), i.e. at
  ``R d + D (-cos gamma_j d + sin gamma_j e_u)``.
- Cone beam (circular orbit, flat detector): as the flat fan beam in the ``z = 0`` plane, with
  detector rows along ``e_v = (0, 0, 1)``: pixel ``(r, c)`` is at
  ``-(D - R) d + u_c e_u + v_r e_v``, ``v_r = (r - (rows - 1) / 2) * spacing_v + offset_v``.

Sinograms are ``(angles, detectors)`` in 2D and ``(angles, rows, columns)`` for cone beam, of line
integrals in the units of the image times millimetres (an image in mm^-1 gives dimensionless
line integrals, the log-transformed data of a scanner).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

from physics.errors import InvalidDataError, ShapeError

__all__ = ["CTGeometry", "cone_beam", "fan_beam", "parallel_beam"]

Kind = Literal["parallel", "fan", "cone"]


@dataclasses.dataclass(frozen=True)
class CTGeometry:
    """An immutable, hashable CT geometry (usable as static metadata under ``jit``).

    Attributes:
        kind: ``"parallel"``, ``"fan"`` or ``"cone"``.
        image_shape: ``(ny, nx)`` for parallel/fan, ``(nz, ny, nx)`` for cone.
        angles: projection angles ``theta`` in radians.
        detector_shape: ``(detectors,)`` in 2D, ``(rows, columns)`` for cone.
        detector_spacing: mm, ``(du,)`` in 2D, ``(dv, du)`` for cone (arc length for an arc
            detector).
        detector_offset: mm, ``(offset_u,)`` in 2D, ``(offset_v, offset_u)`` for cone.
        pixel_size: side of a pixel / voxel in mm.
        source_to_isocenter: ``R`` in mm (fan and cone; ``None`` for parallel).
        source_to_detector: ``D`` in mm (fan and cone; ``None`` for parallel).
        detector: ``"flat"`` or ``"arc"`` (fan beam only; cone beam is flat).
    """

    kind: Kind
    image_shape: tuple[int, ...]
    angles: tuple[float, ...]
    detector_shape: tuple[int, ...]
    detector_spacing: tuple[float, ...]
    detector_offset: tuple[float, ...]
    pixel_size: float = 1.0
    source_to_isocenter: float | None = None
    source_to_detector: float | None = None
    detector: Literal["flat", "arc"] = "flat"

    def __post_init__(self):
        ndim = 3 if self.kind == "cone" else 2
        ndet = 2 if self.kind == "cone" else 1
        if self.kind not in ("parallel", "fan", "cone"):
            raise InvalidDataError(f"geometry must be 'parallel', 'fan' or 'cone', got {self.kind!r}")
        for name, value, n in (("image_shape", self.image_shape, ndim),
                               ("detector_shape", self.detector_shape, ndet),
                               ("detector_spacing", self.detector_spacing, ndet),
                               ("detector_offset", self.detector_offset, ndet)):
            if len(value) != n:
                raise ShapeError(f"{self.kind} geometry: {name} needs {n} entries, got {tuple(value)}")
        if min(self.image_shape) < 1 or min(self.detector_shape) < 1 or len(self.angles) < 1:
            raise ShapeError(f"{self.kind} geometry: empty image {self.image_shape}, detector "
                             f"{self.detector_shape} or no angles")
        values = np.array([*self.angles, *self.detector_spacing, *self.detector_offset,
                           self.pixel_size], np.float64)
        if not np.all(np.isfinite(values)):
            raise InvalidDataError(f"{self.kind} geometry: angles, spacings and sizes must be finite")
        if min(self.detector_spacing) <= 0 or self.pixel_size <= 0:
            raise InvalidDataError(f"{self.kind} geometry: detector spacing {self.detector_spacing} "
                                   f"and pixel size {self.pixel_size} must be positive")
        if self.detector not in ("flat", "arc") or (self.detector == "arc" and self.kind != "fan"):
            raise InvalidDataError(f"detector must be 'flat' (or 'arc' for fan beam), got {self.detector!r}")
        if self.kind == "parallel":
            if self.source_to_isocenter is not None or self.source_to_detector is not None:
                raise InvalidDataError("parallel geometry has no source distances")
        else:
            R, D = self.source_to_isocenter, self.source_to_detector
            if R is None or D is None or not (np.isfinite(R) and np.isfinite(D)) or not 0 < R < D:
                raise InvalidDataError(f"{self.kind} geometry needs 0 < source_to_isocenter < "
                                       f"source_to_detector (mm), got R={R}, D={D}")
            radius = 0.5 * self.pixel_size * float(np.hypot(*self.image_shape[-2:]))
            if radius >= R:
                raise InvalidDataError(f"{self.kind} geometry: the source (R={R} mm) is inside the "
                                       f"image circle (radius {radius:.1f} mm)")

    @property
    def ndim(self) -> int:
        """Number of image axes: 2 or 3."""
        return len(self.image_shape)

    @property
    def sinogram_shape(self) -> tuple[int, ...]:
        """``(angles, detectors)`` or ``(angles, rows, columns)``."""
        return (len(self.angles), *self.detector_shape)

    @property
    def angles_array(self) -> np.ndarray:
        """Angles as a float64 array in radians."""
        return np.asarray(self.angles, np.float64)

    def detector_positions(self, axis: int = -1) -> np.ndarray:
        """Bin centres in mm along detector axis ``-1`` (``u``) or ``0`` (``v``, cone rows), float64:
        ``(j - (n - 1) / 2) * spacing + offset`` (arc length on an arc detector)."""
        n = self.detector_shape[axis]
        return (np.arange(n) - (n - 1) / 2.0) * self.detector_spacing[axis] + self.detector_offset[axis]

    def pixel_positions(self) -> list[np.ndarray]:
        """Pixel-centre coordinates in mm per image axis, float64, ``(k - (n - 1) / 2) * pixel_size``,
        increasing with the index (so ``x`` and ``z`` directly; ``y = -positions[-2]``, y points up)."""
        return [(np.arange(n) - (n - 1) / 2.0) * self.pixel_size for n in self.image_shape]

    @property
    def magnification(self) -> float:
        """``D / R`` (1 for parallel beam)."""
        return 1.0 if self.kind == "parallel" else self.source_to_detector / self.source_to_isocenter


def _angles(angles) -> tuple[float, ...]:
    a = np.asarray(angles, np.float64)
    if np.ndim(a) == 0:  # a number of angles: uniform over the scan
        raise InvalidDataError("angles must be an array of radians (use numpy.linspace)")
    if a.ndim != 1:
        raise ShapeError(f"angles must be 1D, got shape {a.shape}")
    return tuple(float(v) for v in a)


def parallel_beam(image_shape: tuple[int, int], angles, detectors: int, *,
                  detector_spacing: float = 1.0, pixel_size: float = 1.0,
                  detector_offset: float = 0.0) -> CTGeometry:
    """2D parallel-beam geometry (see the module docstring for the conventions)."""
    return CTGeometry("parallel", tuple(int(n) for n in image_shape), _angles(angles), (int(detectors),),
                      (float(detector_spacing),), (float(detector_offset),), float(pixel_size))


def fan_beam(image_shape: tuple[int, int], angles, detectors: int, *, source_to_isocenter: float,
             source_to_detector: float, detector_spacing: float = 1.0, pixel_size: float = 1.0,
             detector_offset: float = 0.0, detector: Literal["flat", "arc"] = "flat") -> CTGeometry:
    """2D fan-beam geometry, flat or arc (equiangular) detector."""
    return CTGeometry("fan", tuple(int(n) for n in image_shape), _angles(angles), (int(detectors),),
                      (float(detector_spacing),), (float(detector_offset),), float(pixel_size),
                      float(source_to_isocenter), float(source_to_detector), detector)


def cone_beam(volume_shape: tuple[int, int, int], angles, detector_shape: tuple[int, int], *,
              source_to_isocenter: float, source_to_detector: float,
              detector_spacing: tuple[float, float] = (1.0, 1.0), pixel_size: float = 1.0,
              detector_offset: tuple[float, float] = (0.0, 0.0)) -> CTGeometry:
    """3D cone-beam geometry, circular orbit, flat detector ``(rows, columns)``."""
    return CTGeometry("cone", tuple(int(n) for n in volume_shape), _angles(angles),
                      tuple(int(n) for n in detector_shape),
                      tuple(float(s) for s in detector_spacing), tuple(float(o) for o in detector_offset),
                      float(pixel_size), float(source_to_isocenter), float(source_to_detector))
