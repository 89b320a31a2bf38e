"""Gridding kernels (Numba, CPU): interpolation grid -> points and its exact adjoint, spreading.

Coordinates. A grid has shape ``(*G, coils)`` (any number of spatial axes, coil axis last, so
every cell's coils are contiguous and each point's kernel weights serve all coils). A point sits
at the fractional grid position ``u = (u_0, ..., u_{d-1})`` (float64, in grid cells, absolute:
cell ``j`` is at position ``j``); the grid is periodic, cell ``j`` means ``j mod G``. Along each
axis the point touches the ``width`` cells ``start, ..., start + width - 1`` with
``start = floor(u - width / 2) + 1``, i.e. the cells at offsets ``t = u - j`` in ``[-width/2,
width/2)``.

Kernel. A separable window ``phi(t) = prod_d phi_1(t_d)``, given as one polynomial per cell:
with ``s = u - start - (width/2 - 1)`` in ``[0, 1)`` and ``z = 2 s - 1``, the weight of cell
``start + i`` is ``sum_k coeffs[k, i] z^(K-k)`` (Horner, highest power first). The caller fits the
polynomials to its window (for the Kaiser-Bessel window: physics/nufft.py).

Values. Point values are ``(coils, points)``, complex64.

Race-free spreading. :func:`sort_points` orders the points by their first cell (row-major) and
cuts axis 0 of the grid into an even number of strips, each at least ``width`` rows high: a point
whose first row lies in strip ``s`` writes only into strips ``s`` and ``s + 1`` (mod the number
of strips), so all even strips can be spread in parallel, then all odd ones.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["interpolate", "sort_points", "spread"]

#: Points per parallel work item of the interpolation.
_CHUNK = 2048
#: Upper bound on the number of strips of the spreading (parallel work items per phase: half).
_MAX_STRIPS = 128


@numba.njit(cache=True, inline="always")
def _axis_cells(u: float, size: int, coeffs: np.ndarray, weights: np.ndarray, cells: np.ndarray) -> None:
    """Weights and wrapped indices of the ``width`` cells one axis of a point touches."""
    width = coeffs.shape[1]
    start = math.floor(u - 0.5 * width) + 1
    z = 2.0 * (u - start - (0.5 * width - 1.0)) - 1.0
    for i in range(width):
        v = coeffs[0, i]
        for k in range(1, coeffs.shape[0]):
            v = v * z + coeffs[k, i]
        weights[i] = v
        j = start + i
        if j < 0:
            j += size
        elif j >= size:
            j -= size
        cells[i] = j


@numba.njit(cache=True, inline="always")
def _point_cells(coords: np.ndarray, m: int, shape: np.ndarray, coeffs: np.ndarray, w1: np.ndarray,
                 c1: np.ndarray, weights: np.ndarray, cells: np.ndarray) -> None:
    """Outer product over axes: ``width^d`` weights and flat (row-major) cell indices of point ``m``."""
    width = coeffs.shape[1]
    ndim = coords.shape[1]
    _axis_cells(coords[m, 0], shape[0], coeffs, w1, c1)
    for i in range(width):
        weights[i] = w1[i]
        cells[i] = c1[i]
    n = width
    for d in range(1, ndim):
        _axis_cells(coords[m, d], shape[d], coeffs, w1, c1)
        for q in range(n - 1, -1, -1):  # expand in place from the back: q * width + i >= q
            wq, cq = weights[q], cells[q] * shape[d]
            for i in range(width):
                weights[q * width + i] = wq * w1[i]
                cells[q * width + i] = cq + c1[i]
        n *= width


@numba.njit(parallel=True, cache=True)
def _interpolate(grid: np.ndarray, shape: np.ndarray, coords: np.ndarray, order: np.ndarray,
                 coeffs: np.ndarray, out: np.ndarray) -> None:
    # grid: float32 (cells, 2 coils) (real/imag interleaved); out: float32 (coils, 2 points)
    lanes = grid.shape[1]
    ndim, width = coords.shape[1], coeffs.shape[1]
    ncell = width ** ndim
    npoint = order.shape[0]
    for chunk in numba.prange((npoint + _CHUNK - 1) // _CHUNK):
        w1 = np.empty(width, np.float64)
        c1 = np.empty(width, np.int64)
        weights = np.empty(ncell, np.float64)
        cells = np.empty(ncell, np.int64)
        acc = np.empty(lanes, np.float32)
        for idx in range(chunk * _CHUNK, min((chunk + 1) * _CHUNK, npoint)):
            m = order[idx]
            _point_cells(coords, m, shape, coeffs, w1, c1, weights, cells)
            acc[:] = 0.0
            for q in range(ncell):
                w = np.float32(weights[q])
                row = grid[cells[q]]
                for r in range(lanes):
                    acc[r] += w * row[r]
            for c in range(lanes // 2):
                out[c, 2 * m] = acc[2 * c]
                out[c, 2 * m + 1] = acc[2 * c + 1]


@numba.njit(parallel=True, cache=True)
def _spread(values: np.ndarray, shape: np.ndarray, coords: np.ndarray, order: np.ndarray,
            strips: np.ndarray, coeffs: np.ndarray, grid: np.ndarray) -> None:
    # values: float32 (coils, 2 points); grid: float32 (cells, 2 coils), zeroed by the caller
    lanes = grid.shape[1]
    ndim, width = coords.shape[1], coeffs.shape[1]
    ncell = width ** ndim
    nstrip = strips.shape[0] - 1
    for phase in range(2):  # even strips, then odd strips: no two tasks touch the same rows
        for task in numba.prange((nstrip - phase + 1) // 2):
            s = 2 * task + phase
            w1 = np.empty(width, np.float64)
            c1 = np.empty(width, np.int64)
            weights = np.empty(ncell, np.float64)
            cells = np.empty(ncell, np.int64)
            val = np.empty(lanes, np.float32)
            for idx in range(strips[s], strips[s + 1]):
                m = order[idx]
                _point_cells(coords, m, shape, coeffs, w1, c1, weights, cells)
                for c in range(lanes // 2):
                    val[2 * c] = values[c, 2 * m]
                    val[2 * c + 1] = values[c, 2 * m + 1]
                for q in range(ncell):
                    w = np.float32(weights[q])
                    row = grid[cells[q]]
                    for r in range(lanes):
                        row[r] += w * val[r]


def _first_cells(coords: np.ndarray, grid_shape: tuple[int, ...], width: int) -> np.ndarray:
    """``(points, ndim)`` int64: each point's first touched cell per axis, wrapped into the grid."""
    start = np.floor(coords - 0.5 * width).astype(np.int64) + 1
    return np.mod(start, np.asarray(grid_shape, np.int64))


def sort_points(coords: np.ndarray, grid_shape: tuple[int, ...], width: int) -> tuple[np.ndarray, np.ndarray]:
    """Processing order and spreading strips of the points (computed once per trajectory).

    Args:
        coords: float64 ``(points, ndim)`` grid positions (module docstring).
        grid_shape: ``G``, the spatial grid shape.
        width: kernel width in cells.

    Returns:
        ``order``: int64 ``(points,)``, the points sorted row-major by their first cell (grid
        locality for both kernels); ``strips``: int64 ``(strips + 1,)``, positions in ``order``
        where each strip of axis 0 begins (last entry: ``points``). The number of strips is even
        and every strip spans at least ``width`` rows (one strip if ``G_0 < 2 width``); rows are
        divided so that strips hold similar numbers of points.
    """
    start = _first_cells(coords, grid_shape, width)
    key = np.ravel_multi_index(tuple(start.T), grid_shape)
    order = np.argsort(key, kind="stable")
    rows = grid_shape[0]
    nstrip = min(rows // width, _MAX_STRIPS) // 2 * 2
    if nstrip < 2:
        return order, np.array([0, len(order)], np.int64)
    cumulative = np.cumsum(np.bincount(start[:, 0], minlength=rows))  # points with first row <= r
    bounds = [0]
    for s in range(1, nstrip):
        target = np.searchsorted(cumulative, s * len(order) / nstrip) + 1  # rows holding the quota
        bounds.append(int(np.clip(target, bounds[-1] + width, rows - (nstrip - s) * width)))
    bounds.append(rows)
    first_row = start[order, 0]
    strips = np.searchsorted(first_row, np.asarray(bounds), side="left").astype(np.int64)
    return order, strips


def _as_lanes(a: np.ndarray, rows: int) -> np.ndarray:
    """complex64 array -> float32 ``(rows, 2 * rest)`` view, real and imaginary interleaved."""
    return np.ascontiguousarray(a, np.complex64).reshape(rows, -1).view(np.float32)


def interpolate(grid: np.ndarray, coords: np.ndarray, order: np.ndarray, coeffs: np.ndarray) -> np.ndarray:
    """``values[c, m] = sum_j phi(u_m - j) grid[j, c]``: complex64 ``(*G, coils)`` -> ``(coils, points)``.

    ``coords``: float64 ``(points, ndim)``; ``order`` from :func:`sort_points`; ``coeffs``:
    float64 ``(degree + 1, width)`` kernel polynomials (module docstring).
    """
    grid_shape, coils = grid.shape[:-1], grid.shape[-1]
    out = np.empty((coils, coords.shape[0]), np.complex64)
    _interpolate(_as_lanes(grid, math.prod(grid_shape)), np.asarray(grid_shape, np.int64),
                 coords, order, coeffs, out.view(np.float32))
    return out


def spread(values: np.ndarray, coords: np.ndarray, order: np.ndarray, strips: np.ndarray,
           coeffs: np.ndarray, grid_shape: tuple[int, ...]) -> np.ndarray:
    """The exact adjoint of :func:`interpolate`: complex64 ``(coils, points)`` -> ``(*G, coils)``.

    ``grid[j, c] = sum_m phi(u_m - j) values[c, m]``, in parallel over strips (:func:`sort_points`).
    """
    coils = values.shape[0]
    grid = np.zeros((*grid_shape, coils), np.complex64)
    _spread(np.ascontiguousarray(values, np.complex64).view(np.float32), np.asarray(grid_shape, np.int64),
            coords, order, strips, coeffs, grid.reshape(-1, coils).view(np.float32))
    return grid
