"""Numerical phantoms: modified Shepp-Logan, a textured complex "brain", birdcage coil maps.

Coordinates. The field of view is ``[-1, 1]`` along every axis and pixel ``j`` of an axis with
``n`` pixels sits at its centre, ``(2 j + 1) / n - 1``. ``x`` runs left to right along the last
axis, ``y`` runs *upwards* (row 0 is the top, ``y > 0``), and ``z`` increases with the slice index,
so that the 2D phantom displays as in Shepp & Logan (1974) and Toft (1996) with the three small
ellipses at the bottom. All functions return numpy arrays (``float32`` or ``complex64``).
"""

from __future__ import annotations

import numpy as np

from physics.errors import InvalidDataError

__all__ = ["birdcage_maps", "brain_phantom", "ellipse_sum", "shepp_logan"]

# Modified Shepp-Logan (Toft 1996): intensity, semi-axes (a, b), centre (x0, y0), angle in degrees.
_ELLIPSES_2D = np.array([
    [1.0, 0.6900, 0.9200, 0.00, 0.0000, 0.0],
    [-0.8, 0.6624, 0.8740, 0.00, -0.0184, 0.0],
    [-0.2, 0.1100, 0.3100, 0.22, 0.0000, -18.0],
    [-0.2, 0.1600, 0.4100, -0.22, 0.0000, 18.0],
    [0.1, 0.2100, 0.2500, 0.00, 0.3500, 0.0],
    [0.1, 0.0460, 0.0460, 0.00, 0.1000, 0.0],
    [0.1, 0.0460, 0.0460, 0.00, -0.1000, 0.0],
    [0.1, 0.0460, 0.0230, -0.08, -0.6050, 0.0],
    [0.1, 0.0230, 0.0230, 0.00, -0.6060, 0.0],
    [0.1, 0.0230, 0.0460, 0.06, -0.6050, 0.0],
])

# 3D modified Shepp-Logan (Toft's intensities, the ellipsoids of Schabel's ``phantom3d``):
# intensity, semi-axes (a, b, c), centre (x0, y0, z0), angle in degrees about the z axis.
_ELLIPSOIDS_3D = np.array([
    [1.0, 0.6900, 0.920, 0.810, 0.00, 0.0000, 0.00, 0.0],
    [-0.8, 0.6624, 0.874, 0.780, 0.00, -0.0184, 0.00, 0.0],
    [-0.2, 0.1100, 0.310, 0.220, 0.22, 0.0000, 0.00, -18.0],
    [-0.2, 0.1600, 0.410, 0.280, -0.22, 0.0000, 0.00, 18.0],
    [0.1, 0.2100, 0.250, 0.410, 0.00, 0.3500, -0.15, 0.0],
    [0.1, 0.0460, 0.046, 0.050, 0.00, 0.1000, 0.25, 0.0],
    [0.1, 0.0460, 0.046, 0.050, 0.00, -0.1000, 0.25, 0.0],
    [0.1, 0.0460, 0.023, 0.050, -0.08, -0.6050, 0.00, 0.0],
    [0.1, 0.0230, 0.023, 0.020, 0.00, -0.6060, 0.00, 0.0],
    [0.1, 0.0230, 0.046, 0.020, 0.06, -0.6050, 0.00, 0.0],
])


def _check_shape(shape, ndims: tuple[int, ...], what: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(n) for n in shape)
    except TypeError as err:
        raise InvalidDataError(f"{what}: shape must be a tuple of ints, got {shape!r}") from err
    if len(shape) not in ndims or any(n < 1 for n in shape):
        raise InvalidDataError(
            f"{what}: expected a shape of {' or '.join(map(str, ndims))} positive sizes, got {shape}"
        )
    return shape


def _grid(shape: tuple[int, ...]) -> list[np.ndarray]:
    """Pixel-centre coordinates in ``[-1, 1]``, returned as ``[x, y]`` or ``[x, y, z]`` (float64)."""
    axes = [(2.0 * np.arange(n) + 1.0) / n - 1.0 for n in shape]
    axes[-2] = -axes[-2]  # y points up: row 0 is the top of the image
    coords = np.meshgrid(*axes, indexing="ij", sparse=True)
    return coords[::-1]  # (x, y) or (x, y, z)


def shepp_logan(shape: tuple[int, ...]) -> np.ndarray:
    """Modified (Toft) Shepp-Logan phantom in ``[0, 1]``, ``float32`` ``(ny, nx)`` or ``(nz, ny, nx)``.

    The 2D phantom is the sum of Toft's ten ellipses (skull 1.0, brain 0.2, ventricles 0.0,
    small features 0.3/0.4); the 3D phantom uses the ellipsoids of Schabel's ``phantom3d``
    ("Modified Shepp-Logan") rotated about ``z`` only. A pixel belongs to an ellipse when its
    centre does (no anti-aliasing). See the module docstring for the coordinate convention.

    Raises:
        InvalidDataError: ``shape`` is not 2 or 3 positive sizes.
    """
    shape = _check_shape(shape, (2, 3), "shepp_logan")
    image = ellipse_sum(_grid(shape), _ELLIPSES_2D if len(shape) == 2 else _ELLIPSOIDS_3D)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def ellipse_sum(coords: list[np.ndarray], table: np.ndarray) -> np.ndarray:
    """Sum of ``value * [point inside]`` over the rows of an ellipse or ellipsoid table, ``float64``.

    Args:
        coords: ``[x, y]`` (ellipses) or ``[x, y, z]`` (ellipsoids), arrays that broadcast
            together, in any length unit.
        table: rows ``(value, semi-axes (d), centre (d), angle_deg)`` with lengths in the unit of
            ``coords``; ``angle_deg`` turns the first semi-axis counter-clockwise from ``x``
            (a rotation about ``z``). A point on the boundary is inside.

    Returns:
        The broadcast shape of ``coords``.
    """
    d = len(coords)
    total = np.zeros(np.broadcast_shapes(*(np.shape(c) for c in coords)), dtype=np.float64)
    for row in np.asarray(table, np.float64):
        value, semi, centre, angle = row[0], row[1:1 + d], row[1 + d:1 + 2 * d], np.deg2rad(row[-1])
        dx, dy = coords[0] - centre[0], coords[1] - centre[1]
        u = dx * np.cos(angle) + dy * np.sin(angle)  # coordinates in the ellipse frame
        v = -dx * np.sin(angle) + dy * np.cos(angle)
        r2 = (u / semi[0]) ** 2 + (v / semi[1]) ** 2
        if d == 3:
            r2 = r2 + ((coords[2] - centre[2]) / semi[2]) ** 2
        total += value * (r2 <= 1.0)
    return total


def _smooth_field(coords: list[np.ndarray], rng: np.random.Generator, max_freq: int,
                  terms: int) -> np.ndarray:
    """Zero-mean, unit-std sum of ``terms`` random cosines with integer frequencies ``<= max_freq``
    cycles per field of view (FOV ``[-1, 1]`` is 2 units long)."""
    field = 0.0
    for _ in range(terms):
        freq = rng.integers(-max_freq, max_freq + 1, size=len(coords))
        phase = rng.uniform(0.0, 2.0 * np.pi)
        arg = sum(np.pi * f * c for f, c in zip(freq, coords))
        field = field + rng.standard_normal() * np.cos(arg + phase)
    field = np.broadcast_to(field, np.broadcast_shapes(*(c.shape for c in coords)))
    field = field - field.mean()
    std = field.std()
    return field / std if std > 0 else field


def brain_phantom(shape: tuple[int, ...], *, seed: int = 0, texture: float = 0.03,
                  phase_range: float = np.pi / 2) -> np.ndarray:
    """Shepp-Logan with smooth texture and smooth phase: a complex "brain", ``complex64``.

    ``m(r) = SL(r) * (1 + texture * t(r))`` with ``t`` a zero-mean, unit-std random sum of cosines of
    at most 4 cycles per FOV, applied inside the object only (``SL > 0``), and phase
    ``p(r) = p0 + quadratic polynomial in (x, y[, z])`` with random coefficients, scaled to span
    ``phase_range`` radians (peak to peak) over the FOV. The result is ``m exp(i p)`` divided by
    ``max |m|`` so that the magnitude peaks at 1.

    Args:
        shape: ``(ny, nx)`` or ``(nz, ny, nx)``.
        seed: seed of the numpy ``Generator``; equal seeds give identical phantoms.
        texture: relative amplitude (std) of the multiplicative texture, ``0 <= texture < 0.5``.
        phase_range: peak-to-peak phase across the FOV in radians, ``>= 0``.

    Raises:
        InvalidDataError: bad shape, texture or phase range.
    """
    shape = _check_shape(shape, (2, 3), "brain_phantom")
    if not (0.0 <= texture < 0.5):
        raise InvalidDataError(f"brain_phantom: texture must be in [0, 0.5), got {texture}")
    if not (np.isfinite(phase_range) and phase_range >= 0):
        raise InvalidDataError(
            f"brain_phantom: phase_range must be finite and >= 0, got {phase_range}"
        )
    rng = np.random.default_rng(seed)
    coords = _grid(shape)
    magnitude = shepp_logan(shape).astype(np.float64)
    field = _smooth_field(coords, rng, max_freq=4, terms=24)
    magnitude = np.where(magnitude > 0, magnitude * (1.0 + texture * field), 0.0)

    d = len(shape)
    full = [np.broadcast_to(c, shape) for c in coords]
    monomials = [c for c in full] + [full[i] * full[j] for i in range(d) for j in range(i, d)]
    phase = sum(rng.standard_normal() * m for m in monomials)
    span = np.ptp(phase)
    phase = phase * (phase_range / span) if span > 0 else np.zeros(shape)
    phase = phase - phase.mean() + rng.uniform(-np.pi, np.pi)

    image = magnitude / magnitude.max() * np.exp(1j * phase)
    return image.astype(np.complex64)


def birdcage_maps(shape: tuple[int, ...], *, radius: float = 1.5, rings: int = 4) -> np.ndarray:
    """Birdcage-coil sensitivities, ``complex64`` of ``shape`` = ``(coils, ny, nx)`` or
    ``(coils, nz, ny, nx)``.

    Model (a Biot-Savart-like caricature, as SigPy's ``mri.birdcage_maps``): coil ``c`` is a point
    at angle ``theta_c`` on a circle of ``radius`` (in units of the half FOV, so ``radius > 1``
    puts the coils outside the image's inscribed circle) around the z axis. With
    ``d = r - r_c = (dx, dy[, dz])`` the raw sensitivity is

        ``S_c(r) = exp(i (atan2(dx, -dy) - theta_c)) / |d|``,

    i.e. the magnitude falls as ``1 / distance`` and the phase follows the direction from the coil.
    In 2D the ``coils`` are equally spaced, ``theta_c = 2 pi c / coils``. In 3D they form ``rings``
    rings of ``coils / rings`` coils each (ring ``k`` of coil ``c = k * per_ring + j`` sits at
    ``z_k = (2 k + 1) / rings - 1``, ``theta_c = 2 pi j / per_ring``, rotated by ``pi / per_ring``
    on odd rings). Finally ``S_c /= sqrt(sum_c |S_c|^2)`` so that the root-sum-of-squares is 1 at
    every pixel.

    Args:
        shape: ``(coils, *spatial)`` with 2 or 3 spatial axes (the shape of the output).
        radius: coil circle radius in half-FOV units, ``radius >= 1``.
        rings: number of coil rings along z (3D only); must divide ``coils``.

    Raises:
        InvalidDataError: bad shape, radius or ring count.
    """
    shape = _check_shape(shape, (3, 4), "birdcage_maps")
    coils, spatial = shape[0], shape[1:]
    if not (np.isfinite(radius) and radius >= 1.0):
        raise InvalidDataError(
            f"birdcage_maps: radius must be finite and >= 1 (half FOVs), got {radius}"
        )
    coords = _grid(spatial)
    if len(spatial) == 2:
        per_ring, ring = coils, np.zeros(coils, dtype=int)
    else:
        if rings < 1 or coils % rings:
            raise InvalidDataError(
                f"birdcage_maps: rings must be >= 1 and divide the {coils} coils, got rings={rings}"
            )
        per_ring = coils // rings
        ring = np.arange(coils) // per_ring
    index = np.arange(coils) - ring * per_ring
    theta = 2.0 * np.pi * index / per_ring + np.pi / per_ring * (ring % 2)

    maps = np.empty(shape, dtype=np.complex128)
    for c in range(coils):
        dx = coords[0] - radius * np.cos(theta[c])
        dy = coords[1] - radius * np.sin(theta[c])
        dist2 = dx**2 + dy**2
        if len(spatial) == 3:
            dist2 = dist2 + (coords[2] - ((2.0 * ring[c] + 1.0) / rings - 1.0)) ** 2
        # exp(i atan2(dx, -dy)) = (-dy + i dx) / |(dx, dy)|
        direction = (-dy + 1j * dx) / np.sqrt(dx**2 + dy**2)
        maps[c] = direction * np.exp(-1j * theta[c]) / np.sqrt(dist2)
    maps /= np.sqrt(np.sum(np.abs(maps) ** 2, axis=0))
    return maps.astype(np.complex64)
