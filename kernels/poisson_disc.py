"""Numba kernel: variable-radius Poisson-disc dart throwing on an integer grid (no JAX)."""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["dart_throwing"]


@numba.njit(cache=True)
def _uniform(state: np.ndarray) -> float:
    """xorshift64* step on ``state[0]``: a uniform double in ``[0, 1)``."""
    x = state[0]
    x ^= x >> np.uint64(12)
    x ^= x << np.uint64(25)
    x ^= x >> np.uint64(27)
    state[0] = x
    return float((x * np.uint64(2685821657736338717)) >> np.uint64(11)) / 9007199254740992.0


@numba.njit(cache=True)
def dart_throwing(radius_y: np.ndarray, radius_x: np.ndarray, max_attempts: int,
                   seed: np.uint64) -> np.ndarray:
    """Variable-radius Poisson disc (Bridson's active list) on the integer grid.

    A candidate pixel ``q`` is rejected when any sample ``p`` has
    ``((p - q) / r(q))^2 < 1`` with per-axis radii ``r(q) = (radius_y[q], radius_x[q])``.
    Candidates come from an active sample, at 1 to 2 radii in a uniform direction.
    """
    ny, nx = radius_y.shape
    mask = np.zeros((ny, nx), dtype=np.bool_)
    state = np.empty(1, dtype=np.uint64)
    state[0] = seed | np.uint64(1)
    active_y = np.empty(ny * nx, dtype=np.int64)
    active_x = np.empty(ny * nx, dtype=np.int64)
    active_y[0] = min(int(_uniform(state) * ny), ny - 1)
    active_x[0] = min(int(_uniform(state) * nx), nx - 1)
    mask[active_y[0], active_x[0]] = True
    num_active = 1
    while num_active > 0:
        i = min(int(_uniform(state) * num_active), num_active - 1)
        py, px = active_y[i], active_x[i]
        found = False
        for _ in range(max_attempts):
            dist = math.sqrt(1.0 + 3.0 * _uniform(state))  # uniform over the 1..2 annulus
            angle = 2.0 * math.pi * _uniform(state)
            qy = int(round(py + dist * radius_y[py, px] * math.sin(angle)))
            qx = int(round(px + dist * radius_x[py, px] * math.cos(angle)))
            if qy < 0 or qy >= ny or qx < 0 or qx >= nx or mask[qy, qx]:
                continue
            ry, rx = radius_y[qy, qx], radius_x[qy, qx]
            free = True
            for y in range(max(qy - int(ry), 0), min(qy + int(ry) + 1, ny)):
                for x in range(max(qx - int(rx), 0), min(qx + int(rx) + 1, nx)):
                    if mask[y, x] and ((y - qy) / ry) ** 2 + ((x - qx) / rx) ** 2 < 1.0:
                        free = False
                        break
                if not free:
                    break
            if free:
                found = True
                break
        if found:
            mask[qy, qx] = True
            active_y[num_active] = qy
            active_x[num_active] = qx
            num_active += 1
        else:  # retire the active sample: swap with the last one
            num_active -= 1
            active_y[i] = active_y[num_active]
            active_x[i] = active_x[num_active]
    return mask
