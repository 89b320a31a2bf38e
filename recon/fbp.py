"""Filtered backprojection for parallel and fan beam, FDK for cone beam, in pure JAX.

Geometry and sinogram layout are those of :mod:`physics.ct_geometry`. Each reconstruction
weights the data, ramp-filters every detector row and backprojects pixel by pixel:

- **Filter.** The band-limited ramp of Kak & Slaney (1988, ch. 3), built in the spatial
  domain on the detector spacing ``tau``: ``h(0) = 1 / (4 tau^2)``, ``h(n) = -1 / (n pi tau)^2``
  for odd ``n``, ``0`` for even ``n`` and for ``|n| >= detectors``; its DFT (times ``tau``, the
  quadrature of the convolution) has no DC bias. ``"shepp-logan"``, ``"cosine"`` and ``"hann"``
  multiply it by ``sinc(x / 2)``, ``cos(pi x / 2)`` and ``cos^2(pi x / 2)`` with
  ``x = frequency / (cutoff * Nyquist)``; every filter is zero above the cutoff. Rows are zero
  padded to the next power of two ``>= 2 detectors`` (``padding=False``: a circular convolution
  over the detector, which wraps around).
- **Angles.** Each view gets the angle step around it (from the actual, sorted angles):
  ``(theta_{i+1} - theta_{i-1}) / 2``, the neighbour gap at the ends; the coverage is their sum.
- **Parallel beam**: ``f(x) = c sum_i dtheta_i q_i(x . e_u)`` with ``c = min(1, pi / coverage)``
  (``1`` over ``[0, pi)``, ``1/2`` over ``[0, 2 pi)``).
- **Fan beam, flat detector** (Kak & Slaney's equally spaced collinear detectors): data
  rescaled to the isocentre (``s = u R / D``, ``tau = du R / D``), pre-weighted by
  ``R / sqrt(R^2 + s^2)``, filtered, and backprojected at ``s = R (x . e_u) / U`` with weight
  ``R^2 / U^2``, ``U = R - x . d`` (the distance from the source along the central ray).
- **Fan beam, arc detector** (equiangular rays): pre-weight ``R cos gamma``, the ramp on the
  fan angle (``tau = du / D``, radians) times ``(gamma / sin gamma)^2``, backprojection at
  ``gamma = atan2(x . e_u, U)`` with weight ``1 / L^2``, ``L`` the source-to-pixel distance.
- **Scan range** for fan and cone beam, with the half fan angle ``gamma_m`` of the outermost bin
  centre: a full scan (coverage ``>= 2 pi``) uses ``c = pi / coverage``; a short scan
  (``pi + 2 gamma_m <= coverage < 2 pi``) Parker's (1982) weights, which sum to one over the two
  views of every line (``c = 1``); with less (limited angle) there are no complete data and the
  result is the plain weighted FBP with ``c = min(1, pi / coverage)``, streaked and biased.
- **FDK** (Feldkamp, Davis & Kress 1984): the flat fan formula per detector row, with the
  pre-weight ``R / sqrt(R^2 + s^2 + t^2)`` (``t = v R / D``, row coordinate at the isocentre),
  row-wise filtering along ``u``, and backprojection at ``(t, s) = R (z, x . e_u) / U`` with
  bilinear interpolation and weight ``R^2 / U^2``; exact in the mid-plane ``z = 0``.

The backprojection interpolates linearly on the detector (zero outside it), loops over the
views with ``lax.scan`` so that memory stays that of one image, and is linear and
differentiable in the data. Images are ``float32`` in the sinogram's unit per mm (mm^-1 for
line integrals of attenuation).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from physics.ct_geometry import CTGeometry
from physics.errors import InvalidDataError, ShapeError

__all__ = ["FILTERS", "fbp", "fdk"]

FILTERS = ("ramp", "shepp-logan", "cosine", "hann")


def fbp(sinogram, geometry: CTGeometry, *, filter: str = "ramp", cutoff: float = 1.0,
        padding: bool = True) -> jax.Array:
    """Filtered backprojection of a parallel- or fan-beam (flat or arc) sinogram.

    Args:
        sinogram: ``(..., angles, detectors)`` real line integrals (leading axes are slices).
        geometry: a ``"parallel"`` or ``"fan"`` :class:`~physics.ct_geometry.CTGeometry`.
        filter: one of :data:`FILTERS`.
        cutoff: the filter's cut-off frequency as a fraction of Nyquist, ``0 < cutoff <= 1``.
        padding: zero-pad rows to the next power of two ``>= 2 detectors`` before filtering.

    Returns:
        ``float32`` ``(..., ny, nx)``.

    Raises:
        ShapeError: the trailing axes are not ``geometry.sinogram_shape``, or fewer than 2 views.
        InvalidDataError: a cone geometry, complex or NaN/Inf data, unknown filter, bad cutoff.
    """
    return _checked(sinogram, geometry, ("parallel", "fan"), filter, cutoff, padding, "fbp")


def fdk(projections, geometry: CTGeometry, *, filter: str = "ramp", cutoff: float = 1.0,
        padding: bool = True) -> jax.Array:
    """Feldkamp-Davis-Kress reconstruction of circular cone-beam projections.

    Args:
        projections: ``(..., angles, rows, columns)`` real line integrals.
        geometry: a ``"cone"`` :class:`~physics.ct_geometry.CTGeometry`.
        filter, cutoff, padding: as in :func:`fbp` (rows are filtered along the columns).

    Returns:
        ``float32`` ``(..., nz, ny, nx)``.

    Raises:
        ShapeError: the trailing axes are not ``geometry.sinogram_shape``, or fewer than 2 views.
        InvalidDataError: not a cone geometry, complex or NaN/Inf data, unknown filter, bad cutoff.
    """
    return _checked(projections, geometry, ("cone",), filter, cutoff, padding, "fdk")


def _checked(data, geometry: CTGeometry, kinds: tuple[str, ...], filter: str, cutoff: float,
             padding: bool, what: str) -> jax.Array:
    if not isinstance(geometry, CTGeometry) or geometry.kind not in kinds:
        raise InvalidDataError(f"{what}: needs a {' or '.join(kinds)} CTGeometry, got "
                               f"{getattr(geometry, 'kind', type(geometry).__name__)!r}")
    if filter not in FILTERS:
        raise InvalidDataError(f"{what}: filter must be one of {FILTERS}, got {filter!r}")
    if not (np.isfinite(cutoff) and 0 < cutoff <= 1):
        raise InvalidDataError(f"{what}: cutoff must be in (0, 1] (fraction of Nyquist), got {cutoff}")
    if jnp.iscomplexobj(data):
        raise InvalidDataError(f"{what}: line integrals must be real, got {jnp.asarray(data).dtype}")
    x = jnp.asarray(data, jnp.float32)
    expected = geometry.sinogram_shape
    if x.shape[x.ndim - len(expected):] != expected or x.ndim < len(expected):
        axes = "angles, rows, columns" if geometry.kind == "cone" else "angles, detectors"
        raise ShapeError(f"{what}: expected data ending in shape {expected} ({axes}), got {x.shape}")
    if expected[0] < 2:
        raise ShapeError(f"{what}: needs at least 2 views, the geometry has {expected[0]}")
    if not isinstance(x, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(x))):
        raise InvalidDataError(f"{what}: data contain NaN or Inf")
    return _reconstruct(x, geometry, filter, float(cutoff), bool(padding))


@partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _reconstruct(data: jax.Array, geometry: CTGeometry, filter: str, cutoff: float,
                 padding: bool) -> jax.Array:
    sino_shape = geometry.sinogram_shape
    batch = data.shape[:data.ndim - len(sino_shape)]
    p = data.reshape((-1, *sino_shape)) * _data_weights(geometry)
    n_det = sino_shape[-1]
    length = 1 << (2 * n_det - 1).bit_length() if padding else n_det  # next power of 2 >= 2 n_det
    response = jnp.asarray(_filter_response(geometry, filter, cutoff, length), jnp.float32)
    q = jnp.fft.irfft(jnp.fft.rfft(p, n=length, axis=-1) * response, n=length, axis=-1)[..., :n_det]
    image = _backproject(q, geometry)
    return image.reshape((*batch, *geometry.image_shape))


def _axis(geometry: CTGeometry, axis: int) -> tuple[int, float, float]:
    """``(bins, spacing, offset)`` of detector axis ``-1`` (``u``) or ``0`` (``v``, cone rows)."""
    return geometry.detector_shape[axis], geometry.detector_spacing[axis], geometry.detector_offset[axis]


def _fan_angles(geometry: CTGeometry) -> np.ndarray:
    """Fan angle ``gamma`` of each bin centre (positive along ``e_u``), radians."""
    u, D = geometry.detector_positions(-1), geometry.source_to_detector
    return u / D if geometry.detector == "arc" else np.arctan(u / D)


def _data_weights(geometry: CTGeometry) -> np.ndarray:
    """Everything multiplying the data before the filter, broadcasting against ``(angles, *det)``:
    angle steps, the scan-range factor, Parker weights and the cosine pre-weight (float32)."""
    theta = geometry.angles_array
    order = np.argsort(theta, kind="stable")
    sorted_theta = theta[order]
    gaps = np.diff(sorted_theta)
    steps_sorted = np.concatenate([gaps[:1], 0.5 * (gaps[1:] + gaps[:-1]), gaps[-1:]])
    steps = np.empty_like(steps_sorted)
    steps[order] = steps_sorted
    coverage = float(steps.sum())
    det_axes = (1,) * len(geometry.detector_shape)
    weights = (steps * min(1.0, np.pi / coverage)).reshape(-1, *det_axes)
    if geometry.kind == "parallel":
        return weights.astype(np.float32)

    gamma = _fan_angles(geometry)
    R, D = geometry.source_to_isocenter, geometry.source_to_detector
    u = geometry.detector_positions(-1)
    if geometry.kind == "cone":
        v = geometry.detector_positions(0)
        pre = D / np.sqrt(D**2 + u[None, :] ** 2 + v[:, None] ** 2)  # (rows, cols)
    else:
        pre = R * np.cos(gamma) if geometry.detector == "arc" else D / np.sqrt(D**2 + u**2)
    full_scan = coverage >= 2.0 * np.pi * (1.0 - 1e-6)
    short_scan = coverage >= (np.pi + 2.0 * np.abs(gamma).max()) * (1.0 - 1e-6)
    if short_scan and not full_scan:
        beta = theta - sorted_theta[0] + 0.5 * steps_sorted[0]  # view centres within [0, coverage]
        parker = _parker(beta[:, None], gamma[None, :], 0.5 * (coverage - np.pi))
        weights = steps[:, None] * parker  # every line counted once: c = 1
        if geometry.kind == "cone":
            weights = weights[:, None, :]
    return (weights * pre).astype(np.float32)


def _parker(beta: np.ndarray, gamma: np.ndarray, delta: float) -> np.ndarray:
    """Parker's short-scan weights for views ``beta`` in ``[0, pi + 2 delta]`` and fan angles
    ``gamma`` (``|gamma| <= delta``). In this geometry the line of ``(beta, gamma)`` is seen again
    at ``(beta + pi - 2 gamma, -gamma)``; Parker's formula is written for ``g = -gamma``."""
    g = -gamma
    rise = 2.0 * (delta - g)          # end of the ramp-up
    fall = np.pi - 2.0 * g            # start of the ramp-down
    up = np.sin(0.25 * np.pi * beta / np.maximum(delta - g, 1e-12)) ** 2
    down = np.sin(0.25 * np.pi * (np.pi + 2.0 * delta - beta) / np.maximum(delta + g, 1e-12)) ** 2
    return np.where(beta < rise, up, np.where(beta > fall, down, 1.0))


def _filter_response(geometry: CTGeometry, filter: str, cutoff: float, length: int) -> np.ndarray:
    """Real frequency response ``(length // 2 + 1,)`` of the apodised band-limited ramp,
    including the quadrature factor ``tau``."""
    n_det, du = geometry.detector_shape[-1], geometry.detector_spacing[-1]
    if geometry.kind == "parallel":
        tau = du
    elif geometry.detector == "arc":
        tau = du / geometry.source_to_detector  # radians of fan angle
    else:
        tau = du * geometry.source_to_isocenter / geometry.source_to_detector
    k = np.arange(length)
    n = np.where(k <= length // 2, k, k - length).astype(np.float64)  # circular offsets
    odd = (np.abs(n) % 2 == 1) & (np.abs(n) < n_det)
    kernel = np.where(odd, -1.0 / (np.pi * np.where(odd, n, 1.0) * tau) ** 2, 0.0)
    kernel[0] = 1.0 / (4.0 * tau**2)
    if geometry.detector == "arc":
        angle = np.where(n == 0, 1.0, n * tau)
        kernel *= np.where(n == 0, 1.0, (angle / np.sin(angle)) ** 2)
    response = tau * np.fft.rfft(kernel).real
    x = np.arange(length // 2 + 1) / length / (0.5 * cutoff)  # frequency / (cutoff * Nyquist)
    window = {"ramp": np.ones_like(x), "shepp-logan": np.sinc(0.5 * x),
              "cosine": np.cos(0.5 * np.pi * x), "hann": np.cos(0.5 * np.pi * x) ** 2}[filter]
    return response * np.where(x <= 1.0, window, 0.0)


def _backproject(q: jax.Array, geometry: CTGeometry) -> jax.Array:
    """Weighted pixel-driven backprojection of filtered ``(B, angles, *det)`` to ``(B, *image)``.

    One view per ``lax.scan`` step, with the slices last so that every pixel gathers contiguous
    values (a gather batched over views or leading slices is several times slower on a CPU)."""
    axes = geometry.pixel_positions()
    x = jnp.asarray(axes[-1], jnp.float32)
    y = jnp.asarray(-axes[-2][:, None], jnp.float32)  # row 0 is the top
    R, D = geometry.source_to_isocenter, geometry.source_to_detector

    def bin_index(coordinate: jax.Array, axis: int) -> jax.Array:
        n, spacing, offset = _axis(geometry, axis)
        return (coordinate - offset) / spacing + (n - 1) / 2.0

    def view(q_view: jax.Array, cos_t: jax.Array, sin_t: jax.Array) -> jax.Array:
        """``(*det, B)`` -> ``(*image, B)``."""
        pe = x * cos_t + y * sin_t  # x . e_u, (ny, nx)
        if geometry.kind == "parallel":
            return _interp(q_view, bin_index(pe, -1))
        U = R - (x * sin_t - y * cos_t)  # R - x . d
        if geometry.detector == "arc":
            u, weight = D * jnp.arctan2(pe, U), 1.0 / (pe**2 + U**2)
        else:
            u, weight = D * pe / U, (R / U) ** 2
        col = bin_index(u, -1)
        if geometry.kind == "fan":
            return weight[..., None] * _interp(q_view, col)
        z = jnp.asarray(axes[0][:, None, None], jnp.float32)
        row = bin_index(D * z / U, 0)  # (nz, ny, nx)
        return weight[..., None] * _interp2(q_view, row, jnp.broadcast_to(col, row.shape))

    theta = geometry.angles_array
    trig = jnp.asarray(np.stack([np.cos(theta), np.sin(theta)], -1), jnp.float32)

    def step(image: jax.Array, inputs: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, None]:
        q_view, (cos_t, sin_t) = inputs[0], inputs[1]
        return image + view(q_view, cos_t, sin_t), None

    start = jnp.zeros((*geometry.image_shape, q.shape[0]), jnp.float32)
    image, _ = jax.lax.scan(step, start, (jnp.moveaxis(q, 0, -1), trig))
    return jnp.moveaxis(image, -1, 0)


def _interp(row: jax.Array, index: jax.Array) -> jax.Array:
    """Linear interpolation of ``(n, B)`` at fractional bins (zero outside): ``(*index.shape, B)``."""
    n = row.shape[0]
    padded = jnp.pad(row, ((1, 1), (0, 0)))
    index = jnp.clip(index, -1.0, float(n)) + 1.0  # in padded bins, 0 and n + 1 are zeros
    i0 = jnp.clip(jnp.floor(index).astype(jnp.int32), 0, n)
    f = (index - i0)[..., None]
    return padded[i0] * (1.0 - f) + padded[i0 + 1] * f


def _interp2(plane: jax.Array, row: jax.Array, col: jax.Array) -> jax.Array:
    """Bilinear interpolation of ``(rows, cols, B)`` at fractional ``(row, col)`` (zero outside)."""
    n_r, n_c = plane.shape[:2]
    padded = jnp.pad(plane, ((1, 1), (1, 1), (0, 0)))
    row = jnp.clip(row, -1.0, float(n_r)) + 1.0
    col = jnp.clip(col, -1.0, float(n_c)) + 1.0
    r0 = jnp.clip(jnp.floor(row).astype(jnp.int32), 0, n_r)
    c0 = jnp.clip(jnp.floor(col).astype(jnp.int32), 0, n_c)
    fr, fc = (row - r0)[..., None], (col - c0)[..., None]
    top = padded[r0, c0] * (1.0 - fc) + padded[r0, c0 + 1] * fc
    bottom = padded[r0 + 1, c0] * (1.0 - fc) + padded[r0 + 1, c0 + 1] * fc
    return top * (1.0 - fr) + bottom * fr
