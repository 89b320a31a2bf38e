"""Cartesian undersampling patterns: fastMRI column masks and variable-density Poisson disc.

All masks are ``bool`` numpy arrays in the centred k-space layout of :mod:`physics.fft` (the
k-space centre, DC, is at index ``n // 2``). Column masks ``(num_cols,)`` select phase-encode
columns, the last axis of fastMRI k-space ``(..., coils, rows, cols)``, and broadcast against it;
Poisson-disc masks ``(ny, nx)`` cover the two phase-encode axes of a 3D acquisition. Every
function takes an explicit ``seed`` (an ``int`` or a numpy ``Generator``, which is advanced);
equal seeds give equal masks.
"""

from __future__ import annotations

import math

import numpy as np

from kernels.poisson_disc import dart_throwing
from physics.errors import InvalidDataError

__all__ = ["acceleration", "equispaced_mask", "poisson_disc_mask", "random_mask"]


def acceleration(mask) -> float:
    """Acceleration factor ``mask.size / mask.sum()`` (number of samples over samples taken)."""
    m = np.asarray(mask)
    taken = float(np.sum(m != 0))
    if taken == 0:
        raise InvalidDataError(f"acceleration: mask of shape {m.shape} samples nothing")
    return m.size / taken


def _check_columns(num_cols: int, accel: float, center_fraction: float, what: str) -> int:
    """Validate column-mask parameters; return the number of centre columns."""
    if int(num_cols) != num_cols or num_cols < 1:
        raise InvalidDataError(f"{what}: num_cols must be a positive integer, got {num_cols}")
    if not (math.isfinite(accel) and accel >= 1):
        raise InvalidDataError(f"{what}: acceleration must be finite and >= 1, got {accel}")
    if not (0 <= center_fraction < 1):
        raise InvalidDataError(f"{what}: center_fraction must be in [0, 1), got {center_fraction}")
    num_low = round(num_cols * center_fraction)
    if num_low > num_cols / accel + 1e-9:
        raise InvalidDataError(
            f"{what}: the centre block of {num_low} columns (center_fraction {center_fraction}) "
            f"exceeds the {num_cols / accel:.1f} columns allowed by acceleration {accel}"
        )
    return num_low


def _centre_block(num_cols: int, num_low: int) -> np.ndarray:
    """fastMRI's centre block: ``num_low`` columns from ``(num_cols - num_low + 1) // 2``."""
    mask = np.zeros(num_cols, dtype=bool)
    start = (num_cols - num_low + 1) // 2
    mask[start:start + num_low] = True
    return mask


def random_mask(num_cols: int, acceleration: float, center_fraction: float, *,
                seed: int | np.random.Generator = 0) -> np.ndarray:
    """fastMRI ``RandomMaskFunc`` column mask, ``bool`` ``(num_cols,)``.

    ``N_low = round(N * center_fraction)`` centre columns are always sampled; every other column
    is sampled independently with probability ``(N / acceleration - N_low) / (N - N_low)``, so that
    ``N / acceleration`` columns are sampled on average.

    Raises:
        InvalidDataError: ``num_cols < 1``, ``acceleration < 1``, ``center_fraction`` outside
            ``[0, 1)``, or a centre block larger than ``N / acceleration``.
    """
    num_low = _check_columns(num_cols, acceleration, center_fraction, "random_mask")
    rng = np.random.default_rng(seed)
    outside = num_cols - num_low
    prob = (num_cols / acceleration - num_low) / outside if outside else 0.0
    mask = rng.uniform(size=num_cols) < prob
    return mask | _centre_block(num_cols, num_low)


def equispaced_mask(num_cols: int, acceleration: float, center_fraction: float, *,
                    seed: int | np.random.Generator = 0) -> np.ndarray:
    """fastMRI ``EquispacedMaskFractionFunc`` column mask, ``bool`` ``(num_cols,)``.

    The ``N_low`` centre columns plus columns ``round(offset + k * a)``, ``k = 0, 1, ...`` below
    ``N - 1``, with the spacing adjusted for the centre, ``a = acceleration (N - N_low) /
    (N - acceleration N_low)``, so that the whole mask samples ``N / acceleration`` columns, and a
    random ``offset`` in ``[0, round(a))``. (As in fastMRI, the spacing is fractional, so the
    columns are only nearly equispaced.)

    Raises:
        InvalidDataError: as :func:`random_mask`.
    """
    num_low = _check_columns(num_cols, acceleration, center_fraction, "equispaced_mask")
    rng = np.random.default_rng(seed)
    mask = _centre_block(num_cols, num_low)
    budget = num_cols / acceleration - num_low  # columns left for the equispaced part
    if budget <= 1e-9:
        return mask
    spacing = (num_cols - num_low) / budget
    offset = rng.integers(0, max(round(spacing), 1))
    columns = np.around(np.arange(offset, num_cols - 1, spacing)).astype(np.int64)
    mask[columns] = True
    return mask


def poisson_disc_mask(shape: tuple[int, int], acceleration: float, *,
                      calib: tuple[int, int] = (24, 24), seed: int | np.random.Generator = 0,
                      max_attempts: int = 30, tol: float = 0.02) -> np.ndarray:
    """Variable-density Poisson-disc mask for the two phase-encode axes, ``bool`` ``(ny, nx)``.

    No two samples lie closer than the local radius, which grows linearly with the distance
    from the calibration block, ``r(k) = 1 + s * d(k)`` with ``d`` the per-axis distance outside
    the block normalised to 1 at the edges (``sqrt(2)`` in the corners), scaled per axis by
    ``n_axis / max(ny, nx)`` (and at least one pixel): dense near the centre, sparse at the edge,
    as BART's ``poisson -v`` and SigPy's ``mri.poisson``. The slope ``s`` is found by bisection
    until the achieved acceleration (calibration block included) is within ``tol`` of the
    target. The centred ``calib`` block (rows from ``(ny - cy + 1) // 2``, likewise columns) is
    fully sampled.

    Args:
        shape: ``(ny, nx)``.
        acceleration: target ``ny * nx / samples``, ``>= 1``.
        calib: fully sampled centre block ``(cy, cx)``, each ``0 <= c <= n``.
        seed: ``int`` or ``Generator``: draws the seed of the dart-throwing kernel.
        max_attempts: candidates tried around an active sample before it is retired.
        tol: relative tolerance on the acceleration for the bisection, in ``(0, 0.05]``.

    Raises:
        InvalidDataError: bad shape, acceleration, calib, ``max_attempts`` or ``tol``; or a
            target the bisection cannot reach within 5 % (e.g. a calibration block that takes
            more samples than the target allows).
    """
    try:
        ny, nx = (int(n) for n in shape)
        cy, cx = (int(c) for c in calib)
    except (TypeError, ValueError) as err:
        raise InvalidDataError(f"poisson_disc_mask: shape and calib must be pairs of ints, "
                               f"got {shape!r}, {calib!r}") from err
    if ny < 1 or nx < 1:
        raise InvalidDataError(f"poisson_disc_mask: shape must be positive, got {shape}")
    if not (0 <= cy <= ny and 0 <= cx <= nx):
        raise InvalidDataError(f"poisson_disc_mask: calib {calib} must fit in the shape {shape}")
    if not (math.isfinite(acceleration) and acceleration >= 1):
        raise InvalidDataError(f"poisson_disc_mask: acceleration must be finite and >= 1, "
                               f"got {acceleration}")
    if max_attempts < 1 or not (0 < tol <= 0.05):
        raise InvalidDataError(f"poisson_disc_mask: need max_attempts >= 1 and 0 < tol <= 0.05, "
                               f"got {max_attempts}, {tol}")
    if cy * cx > ny * nx / acceleration:
        raise InvalidDataError(
            f"poisson_disc_mask: the {cy}x{cx} calibration block takes {cy * cx} samples, more "
            f"than the {ny * nx / acceleration:.0f} allowed by acceleration {acceleration} on {shape}"
        )
    calib_mask = np.zeros((ny, nx), dtype=bool)
    y0, x0 = (ny - cy + 1) // 2, (nx - cx + 1) // 2
    calib_mask[y0:y0 + cy, x0:x0 + cx] = True
    if acceleration == 1:
        return np.ones((ny, nx), dtype=bool)

    # Distance outside the calibration block, per axis, normalised to 1 at the far edge.
    def outside(n: int, c: int) -> np.ndarray:
        d = np.maximum(np.abs(np.arange(n) - n // 2) - c / 2, 0.0)
        return d / d.max() if d.max() > 0 else d

    dist = np.hypot(outside(ny, cy)[:, None], outside(nx, cx)[None, :])
    scale_y, scale_x = ny / max(ny, nx), nx / max(ny, nx)
    kernel_seed = np.uint64(np.random.default_rng(seed).integers(1, 2**63 - 1))

    def sample(slope: float) -> np.ndarray:
        radius = 1.0 + slope * dist
        mask = dart_throwing(np.maximum(radius * scale_y, 1.0), np.maximum(radius * scale_x, 1.0),
                              int(max_attempts), kernel_seed)
        return mask | calib_mask

    low, high = 0.0, float(max(ny, nx))
    best, best_error = None, np.inf
    for _ in range(40):
        slope = 0.5 * (low + high)
        mask = sample(slope)
        achieved = mask.size / mask.sum()
        error = abs(achieved / acceleration - 1.0)
        if error < best_error:
            best, best_error = mask, error
        if error <= tol:
            break
        if achieved < acceleration:
            low = slope
        else:
            high = slope
    if best_error > 0.05:
        raise InvalidDataError(
            f"poisson_disc_mask: could not reach acceleration {acceleration} on {shape} with calib "
            f"{calib} (closest {best.size / best.sum():.2f})"
        )
    return best
