"""CT phantoms in attenuation units (mm^-1) and their exact sinograms.

A phantom is a table of ellipses (2D) or ellipsoids (3D), one row each:
``(value, semi-axes (d), centre (d), angle_deg)``, the layout of :func:`physics.phantom.ellipse_sum`
(the angle turns the first semi-axis counter-clockwise from ``x``, about ``z``); values add up
where shapes overlap. The published tables below are in *unit* coordinates (the ``[-1, 1]`` field
of view of :mod:`physics.phantom`, ``y`` up) with values relative to water;
:func:`scale_ellipses` turns them into millimetres and mm^-1 for an image of a given shape and
pixel size, and the same physical table gives both the image (:func:`ellipse_image`, sampled at
the pixel centres of :mod:`physics.ct_geometry`) and the exact line integrals
(:func:`ellipse_sinogram`), so a reconstruction can be compared with the truth without a
discrete projector in between.
"""

from __future__ import annotations

import numpy as np

from physics.ct_geometry import CTGeometry
from physics.errors import InvalidDataError, ShapeError
from physics.phantom import ellipse_sum

__all__ = [
    "MU_WATER", "SHEPP_LOGAN_CT_2D", "SHEPP_LOGAN_CT_3D", "anatomical_ellipses",
    "anatomical_phantom", "ellipse_image", "ellipse_sinogram", "scale_ellipses", "shepp_logan_ct",
]

MU_WATER = 0.0192
"""Linear attenuation coefficient of water near 70 keV, mm^-1."""

# The original Shepp-Logan head (Shepp & Logan 1974; Kak & Slaney 1988, Table 3.1): the ellipses
# of physics.phantom's Toft table with the original values. Skull 2.0, brain 1.02, ventricles
# 1.00, small features 1.03-1.04 (times water).
SHEPP_LOGAN_CT_2D = np.array([
    [2.00, 0.6900, 0.9200, 0.00, 0.0000, 0.0],
    [-0.98, 0.6624, 0.8740, 0.00, -0.0184, 0.0],
    [-0.02, 0.1100, 0.3100, 0.22, 0.0000, -18.0],
    [-0.02, 0.1600, 0.4100, -0.22, 0.0000, 18.0],
    [0.01, 0.2100, 0.2500, 0.00, 0.3500, 0.0],
    [0.01, 0.0460, 0.0460, 0.00, 0.1000, 0.0],
    [0.01, 0.0460, 0.0460, 0.00, -0.1000, 0.0],
    [0.01, 0.0460, 0.0230, -0.08, -0.6050, 0.0],
    [0.01, 0.0230, 0.0230, 0.00, -0.6060, 0.0],
    [0.01, 0.0230, 0.0460, 0.06, -0.6050, 0.0],
])
SHEPP_LOGAN_CT_2D.flags.writeable = False

# 3D: the ellipsoids of physics.phantom's 3D table (Schabel's phantom3d) with the same values.
SHEPP_LOGAN_CT_3D = np.array([
    [2.00, 0.6900, 0.920, 0.810, 0.00, 0.0000, 0.00, 0.0],
    [-0.98, 0.6624, 0.874, 0.780, 0.00, -0.0184, 0.00, 0.0],
    [-0.02, 0.1100, 0.310, 0.220, 0.22, 0.0000, 0.00, -18.0],
    [-0.02, 0.1600, 0.410, 0.280, -0.22, 0.0000, 0.00, 18.0],
    [0.01, 0.2100, 0.250, 0.410, 0.00, 0.3500, -0.15, 0.0],
    [0.01, 0.0460, 0.046, 0.050, 0.00, 0.1000, 0.25, 0.0],
    [0.01, 0.0460, 0.046, 0.050, 0.00, -0.1000, 0.25, 0.0],
    [0.01, 0.0460, 0.023, 0.050, -0.08, -0.6050, 0.00, 0.0],
    [0.01, 0.0230, 0.023, 0.020, 0.00, -0.6060, 0.00, 0.0],
    [0.01, 0.0230, 0.046, 0.020, 0.06, -0.6050, 0.00, 0.0],
])
SHEPP_LOGAN_CT_3D.flags.writeable = False

# A thorax slice (anterior up, patient's left on the image right), values relative to water,
# each row adding to what lies beneath: fat 0.92, soft tissue 1.04, lungs 0.26, blood 1.06,
# cortical bone 1.79, trabecular bone 1.34, spinal canal 1.01.
_BONE = 0.75  # cortical bone over soft tissue
_THORAX = np.array([
    [0.92, 0.90, 0.62, 0.00, 0.00, 0.0],       # body (fat rim)
    [0.12, 0.84, 0.56, 0.00, -0.01, 0.0],      # soft tissue
    [-0.78, 0.21, 0.34, -0.42, 0.02, -10.0],   # right lung (image left)
    [-0.78, 0.21, 0.34, 0.42, 0.02, 10.0],     # left lung
    [0.02, 0.14, 0.12, 0.04, 0.08, 20.0],      # heart
    [0.02, 0.05, 0.05, 0.12, -0.22, 0.0],      # descending aorta
    [_BONE, 0.085, 0.085, 0.00, -0.30, 0.0],   # vertebral body, cortical shell
    [-0.45, 0.07, 0.07, 0.00, -0.30, 0.0],     # trabecular bone inside it
    [-0.03, 0.035, 0.035, 0.00, -0.43, 0.0],   # spinal canal
    [_BONE, 0.02, 0.04, 0.00, -0.50, 0.0],     # spinous process
    [_BONE, 0.06, 0.025, 0.00, 0.47, 0.0],     # sternum
])
_RIB_ANGLES_DEG = (25.0, 55.0, 125.0, 155.0, 205.0, 235.0, 305.0, 335.0)


def anatomical_ellipses(*, seed: int = 0) -> np.ndarray:
    """Ellipse table of the thorax phantom in unit coordinates, values relative to water.

    Fixed anatomy (body with a fat rim, soft tissue, two lungs, heart, aorta, spine, sternum and
    eight ribs) plus, drawn with ``numpy.random.default_rng(seed)``: two lung nodules (soft
    tissue in lung, radius 0.015-0.03), six pulmonary vessels (radius 0.008-0.015) and two
    low-contrast lesions in the heart (radius 0.02-0.04, contrast +-1-4 %).

    Returns:
        ``(rows, 6)`` float64, the layout of the module docstring; equal seeds give equal tables.
    """
    rng = np.random.default_rng(seed)
    phi = np.deg2rad(_RIB_ANGLES_DEG)
    ribs = np.stack([np.full_like(phi, _BONE), np.full_like(phi, 0.035), np.full_like(phi, 0.018),
                     0.76 * np.cos(phi), 0.49 * np.sin(phi) - 0.01,
                     np.asarray(_RIB_ANGLES_DEG) + 90.0], axis=1)

    def blobs(count: int, host: np.ndarray, radius: tuple[float, float], value) -> np.ndarray:
        """Discs of random radius at random points within half of ``host``'s semi-axes."""
        r = rng.uniform(0.0, 0.5, count) ** 0.5
        t = rng.uniform(0.0, 2.0 * np.pi, count)
        a, b, x0, y0, angle = host[1], host[2], host[3], host[4], np.deg2rad(host[5])
        u, v = a * r * np.cos(t), b * r * np.sin(t)
        x, y = x0 + u * np.cos(angle) - v * np.sin(angle), y0 + u * np.sin(angle) + v * np.cos(angle)
        size = rng.uniform(*radius, count)
        return np.stack([np.broadcast_to(value, (count,)), size, size, x, y, np.zeros(count)], axis=1)

    lungs = (_THORAX[2], _THORAX[3])
    nodules = [blobs(1, lung, (0.015, 0.03), 0.78) for lung in lungs]
    vessels = [blobs(3, lung, (0.008, 0.015), 0.78) for lung in lungs]
    contrast = rng.choice([-1.0, 1.0], 2) * rng.uniform(0.01, 0.04, 2)
    lesions = blobs(2, _THORAX[4], (0.02, 0.04), contrast)
    return np.concatenate([_THORAX, ribs, *nodules, *vessels, lesions])


def scale_ellipses(table: np.ndarray, image_shape: tuple[int, ...], *, pixel_size: float = 1.0,
                   mu_water: float = MU_WATER) -> np.ndarray:
    """A unit table in mm and mm^-1, for an image of ``image_shape`` pixels of ``pixel_size`` mm.

    Unit coordinates scale isotropically by ``min(image_shape) * pixel_size / 2`` mm (for a
    square image or cubic volume: ``[-1, 1]`` spans the field of view ``n * pixel_size``, as in
    :func:`physics.phantom.shepp_logan`) and values by ``mu_water``; angles are unchanged.

    Raises:
        ShapeError: the table does not have ``2 len(image_shape) + 2`` columns.
        InvalidDataError: a non-positive pixel size or ``mu_water``.
    """
    d = len(image_shape)
    table = _check_table(table, d)
    if not (np.isfinite(pixel_size) and pixel_size > 0 and np.isfinite(mu_water) and mu_water > 0):
        raise InvalidDataError(f"scale_ellipses: pixel_size ({pixel_size} mm) and mu_water "
                               f"({mu_water} mm^-1) must be positive")
    half_fov = min(image_shape) * pixel_size / 2.0
    scaled = table.copy()
    scaled[:, 0] *= mu_water
    scaled[:, 1:1 + 2 * d] *= half_fov
    return scaled


def ellipse_image(ellipses: np.ndarray, image_shape: tuple[int, ...], *,
                  pixel_size: float = 1.0) -> np.ndarray:
    """Sample a physical table (mm, mm^-1) at the pixel centres of :mod:`physics.ct_geometry`.

    Returns:
        ``float32`` of ``image_shape``, ``(ny, nx)`` or ``(nz, ny, nx)``.
    """
    image_shape = _check_shape(image_shape, "ellipse_image")
    ellipses = _check_table(ellipses, len(image_shape))
    axes = [(np.arange(n) - (n - 1) / 2.0) * pixel_size for n in image_shape]
    axes[-2] = -axes[-2]  # row 0 is the top: y points up
    coords = np.meshgrid(*axes, indexing="ij", sparse=True)[::-1]  # [x, y] or [x, y, z]
    return ellipse_sum(coords, ellipses).astype(np.float32)


def shepp_logan_ct(shape: tuple[int, ...], *, mu_water: float = MU_WATER) -> np.ndarray:
    """Original Shepp-Logan head in mm^-1 (1.0 of the table is ``mu_water``), ``float32``.

    ``shape`` is ``(ny, nx)`` (table :data:`SHEPP_LOGAN_CT_2D`) or ``(nz, ny, nx)``
    (:data:`SHEPP_LOGAN_CT_3D`). The image does not depend on the pixel size; its exact sinogram
    is ``ellipse_sinogram(g, scale_ellipses(table, shape, pixel_size=g.pixel_size))``.
    """
    shape = _check_shape(shape, "shepp_logan_ct")
    table = SHEPP_LOGAN_CT_2D if len(shape) == 2 else SHEPP_LOGAN_CT_3D
    return ellipse_image(scale_ellipses(table, shape, mu_water=mu_water), shape)


def anatomical_phantom(shape: tuple[int, int], *, seed: int = 0,
                       mu_water: float = MU_WATER) -> np.ndarray:
    """Thorax slice of :func:`anatomical_ellipses` in mm^-1, ``float32`` ``(ny, nx)``."""
    shape = _check_shape(shape, "anatomical_phantom", ndims=(2,))
    return ellipse_image(scale_ellipses(anatomical_ellipses(seed=seed), shape, mu_water=mu_water),
                         shape)


def ellipse_sinogram(geometry: CTGeometry, ellipses: np.ndarray) -> np.ndarray:
    """Exact line integrals of a physical table for every ray of ``geometry``.

    The ray of a bin runs through its centre, from the source (fan, cone) or along ``d``
    (parallel), as in :mod:`physics.ct_geometry`; the integral is over the whole line. A line
    ``a + t w`` (``|w| = 1``) crosses the ellipsoid ``|M (p - c)| <= 1`` (``M`` = rotation, then
    division by the semi-axes) along a chord of length ``2 sqrt(B^2 - A C) / A`` with
    ``A = |M w|^2``, ``B = (M w) . (M (a - c))``, ``C = |M (a - c)|^2 - 1``.

    Args:
        geometry: 2D (parallel, fan flat or arc) or cone-beam geometry.
        ellipses: table in mm and mm^-1 (:func:`scale_ellipses`), 6 columns in 2D, 8 for cone.

    Returns:
        ``float32`` of ``geometry.sinogram_shape`` (value times mm, dimensionless for mm^-1).

    Raises:
        ShapeError: the table's columns do not match the geometry's dimension.
    """
    d = geometry.ndim
    ellipses = _check_table(ellipses, d)
    origin, direction = _rays(geometry)
    total = np.zeros(geometry.sinogram_shape)
    for row in ellipses:
        value, semi, centre, angle = row[0], row[1:1 + d], row[1 + d:1 + 2 * d], np.deg2rad(row[-1])
        rotation = np.eye(d)
        rotation[:2, :2] = [[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]]
        m = rotation / semi[:, None]  # p -> coordinates in which the ellipse is the unit ball
        q, w = (origin - centre) @ m.T, direction @ m.T
        a, b, c = np.sum(w * w, -1), np.sum(q * w, -1), np.sum(q * q, -1) - 1.0
        total += value * 2.0 * np.sqrt(np.maximum(b * b - a * c, 0.0)) / a
    return total.astype(np.float32)


def _rays(geometry: CTGeometry) -> tuple[np.ndarray, np.ndarray]:
    """A point on, and the unit direction of, every ray, float64 arrays that broadcast to
    ``(*sinogram_shape, ndim)`` (the source is one point per view)."""
    theta = geometry.angles_array
    d = np.stack([np.sin(theta), -np.cos(theta)], -1)
    e_u = np.stack([np.cos(theta), np.sin(theta)], -1)
    u = geometry.detector_positions(-1)
    d, e_u = d[:, None, :], e_u[:, None, :]  # (angles, 1, 2) against u (n_u, 1)
    if geometry.kind == "parallel":
        return u[:, None] * e_u, d
    R, D = geometry.source_to_isocenter, geometry.source_to_detector
    source = R * d
    if geometry.detector == "arc":
        gamma = (u / D)[:, None]
        target = source + D * (-np.cos(gamma) * d + np.sin(gamma) * e_u)
    else:
        target = -(D - R) * d + u[:, None] * e_u
    if geometry.kind == "cone":  # rows along z: (angles, rows, cols, 3)
        v = geometry.detector_positions(0)
        shape = (theta.size, v.size, u.size)
        source = np.concatenate([source, np.zeros_like(source[..., :1])], -1)[:, None]
        target = np.concatenate([np.broadcast_to(target[:, None], (*shape, 2)),
                                 np.broadcast_to(v[None, :, None, None], (*shape, 1))], -1)
    ray = target - source
    return source, ray / np.linalg.norm(ray, axis=-1, keepdims=True)


def _check_table(table, d: int) -> np.ndarray:
    t = np.asarray(table, np.float64)
    if t.ndim != 2 or t.shape[1] != 2 * d + 2:
        raise ShapeError(f"ellipse table for {d}D must be (rows, {2 * d + 2}): value, {d} semi-axes, "
                         f"{d} centre coordinates, angle_deg; got shape {t.shape}")
    if not np.all(np.isfinite(t)) or np.any(t[:, 1:1 + d] <= 0):
        raise InvalidDataError("ellipse table: entries must be finite and semi-axes positive")
    return t


def _check_shape(shape, what: str, ndims: tuple[int, ...] = (2, 3)) -> tuple[int, ...]:
    try:
        shape = tuple(int(n) for n in shape)
    except TypeError as err:
        raise InvalidDataError(f"{what}: shape must be a tuple of ints, got {shape!r}") from err
    if len(shape) not in ndims or min(shape) < 1:
        raise InvalidDataError(f"{what}: expected {' or '.join(map(str, ndims))} positive sizes, "
                               f"got {shape}")
    return shape
