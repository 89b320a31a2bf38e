"""Numba CT projectors (CPU): Joseph's method for parallel, fan (flat / arc) and cone beam.

Geometry: the convention of :mod:`physics.ct_geometry` (ASTRA's ``parallel``, ``fanflat`` and
``cone`` with a centred volume), passed here as plain numbers since kernels import no physics.
Values are line integrals in image units times mm.

Algorithm (Joseph 1982; ASTRA's ``linear`` projector). Each ray is a point and a direction in
continuous pixel-index coordinates (pixel centres at integers). The ray is walked one pixel at a
time along its dominant axis (``|dx| >= |dy|``: over columns, else over rows; in 3D the dominant
of x, y, z); at each step the image is interpolated linearly (2D) or bilinearly (3D) between the
two (four) nearest pixels of the crossed column / row / slice, pixels outside the image counting
as zero, and the sum is weighted by ``pixel_size / |dominant component of the unit direction|``
(mm per step). The walk is clipped to the steps whose interpolation touches the image, so rays
that miss it cost nothing. The whole line is integrated (the source lies outside the image).

Memory order: the image is read through one padded copy per dominant axis ("layout"), with the
dominant axis first and the interpolated axes contiguous (2D: ``image`` and ``image.T``; 3D:
``volume`` transposed to ``(x, z, y)``, ``(y, z, x)`` and ``(z, y, x)``), padded with
:data:`PAD` zero lines on each side of the interpolated axes so that the inner loop needs no
bounds checks; the padded coordinates are positive, so indices are unsigned (Numba then skips its
negative-index wrap-around). Inner loops run in float32; the per-ray set-up in float64.

Adjoint: the exact transpose of the same walk (same steps, same weights), scattering instead of
gathering. On the CPU, angles are split into ``numba.get_num_threads()`` chunks, each scattering
into its own zeroed layouts (memory: chunks x 2 images in 2D, chunks x 3 volumes in 3D), summed
at the end. :mod:`kernels.joseph_cuda` compiles the same ray functions (:func:`compile_joseph`)
for the GPU, one thread per ray, scattering with atomic adds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numba
import numpy as np
from numba import njit, prange

__all__ = ["MODE_FAN_ARC", "MODE_FAN_FLAT", "MODE_PARALLEL", "adjoint_2d", "adjoint_cone",
           "forward_2d", "forward_cone"]

MODE_PARALLEL, MODE_FAN_FLAT, MODE_FAN_ARC = 0, 1, 2
PAD = 2  # zero lines on each side of the interpolated axes of a layout


class RayFunctions(NamedTuple):
    """One target's compiled per-ray functions (see :func:`compile_joseph`)."""

    project_2d: Callable
    backproject_2d: Callable
    project_cone: Callable
    backproject_cone: Callable


def compile_joseph(device_jit: Callable, add: Callable) -> RayFunctions:
    """Compile the ray setup and traversal for one target.

    Args:
        device_jit: the target's decorator for functions called from kernels (e.g.
            ``njit(inline="always")`` or ``cuda.jit(device=True)``).
        add: compiled ``add(array, index_tuple, value)``: ``array[index] += value`` (atomic on GPUs).
    Returns:
        ``project_2d(lay_y, lay_x, sincos, rays, ny, nx, pixel_size, a, j) -> float32``: line
        integral of ray ``j`` at angle ``a``; ``backproject_2d(buf_y, buf_x, ..., a, j, value)``
        scatters ``value`` along it; ``project_cone(lay_x, lay_y, lay_z, sincos, v, u, R, D, nz,
        ny, nx, pixel_size, a, r, c)`` and ``backproject_cone(..., a, r, c, value)`` likewise.
        Arguments are described at :func:`geometry_2d`, :func:`geometry_cone` and
        :func:`layouts_2d` / :func:`layouts_3d`.
    """
    @device_jit
    def clip(m_at0, k, n_minor, n_major):
        """Steps ``lo..hi`` of ``M`` in ``[0, n_major)`` where ``m = m_at0 + M k`` is in ``[-1, n_minor]``.

        (No ``min``/``max`` builtins here: the CUDA target does not compile them.)
        """
        if k == 0.0:
            if -1.0 <= m_at0 <= n_minor:
                return 0, n_major - 1
            return 0, -1
        t1 = (-1.0 - m_at0) / k
        t2 = (n_minor - m_at0) / k
        if t1 > t2:
            t1, t2 = t2, t1
        lo, hi = 0, n_major - 1
        if t1 > 0.0:
            lo = int(math.ceil(t1)) if t1 < n_major else n_major
        if t2 < n_major - 1.0:
            hi = int(math.floor(t2)) if t2 > -1.0 else -1
        return lo, hi

    @device_jit
    def ray_2d(s, c, pd, pu, da, du, ny, nx, pixel_size):
        """Walk of the ray ``pd d + pu e_u + t (da d + du e_u)`` at ``(sin, cos) = (s, c)``.

        Returns ``(axis, lo, hi, m_lo, k, weight)``: axis 0 steps over columns (layout
        ``x``), 1 over rows (layout ``y``); at step ``M`` in ``lo..hi`` the padded minor
        coordinate is ``m_lo + (M - lo) k``.
        """
        px, py = pd * s + pu * c, pu * s - pd * c  # a point of the ray, mm
        vx, vy = da * s + du * c, du * s - da * c  # its direction, mm
        x0, y0 = px / pixel_size + 0.5 * (nx - 1), 0.5 * (ny - 1) - py / pixel_size  # index coords
        dx, dy = vx, -vy
        norm = math.sqrt(vx * vx + vy * vy)
        if abs(dx) >= abs(dy):
            axis, k, n_major, n_minor, w = 0, dy / dx, nx, ny, pixel_size * norm / abs(dx)
            m_at0 = y0 - x0 * k
        else:
            axis, k, n_major, n_minor, w = 1, dx / dy, ny, nx, pixel_size * norm / abs(dy)
            m_at0 = x0 - y0 * k
        lo, hi = clip(m_at0, k, n_minor, n_major)
        return axis, lo, hi, np.float32(m_at0 + lo * k + PAD), np.float32(k), np.float32(w)

    @device_jit
    def gather_2d(lay, lo, hi, m_lo, k):
        acc = np.float32(0.0)
        for M in range(lo, hi + 1):
            m = m_lo + np.float32(M - lo) * k
            i, Mu, one = np.uint32(m), np.uint32(M), np.uint32(1)
            f = m - np.float32(i)
            v0 = lay[Mu, i]
            acc += v0 + f * (lay[Mu, i + one] - v0)
        return acc

    @device_jit
    def scatter_2d(lay, lo, hi, m_lo, k, value):
        for M in range(lo, hi + 1):
            m = m_lo + np.float32(M - lo) * k
            i, Mu, one = np.uint32(m), np.uint32(M), np.uint32(1)
            fv = (m - np.float32(i)) * value
            add(lay, (Mu, i), value - fv)
            add(lay, (Mu, i + one), fv)

    @device_jit
    def project_2d(lay_y, lay_x, sincos, rays, ny, nx, pixel_size, a, j):
        axis, lo, hi, m_lo, k, w = ray_2d(sincos[a, 0], sincos[a, 1], rays[j, 0], rays[j, 1],
                                          rays[j, 2], rays[j, 3], ny, nx, pixel_size)
        return w * gather_2d(lay_x if axis == 0 else lay_y, lo, hi, m_lo, k)

    @device_jit
    def backproject_2d(buf_y, buf_x, sincos, rays, ny, nx, pixel_size, a, j, value):
        axis, lo, hi, m_lo, k, w = ray_2d(sincos[a, 0], sincos[a, 1], rays[j, 0], rays[j, 1],
                                          rays[j, 2], rays[j, 3], ny, nx, pixel_size)
        scatter_2d(buf_x if axis == 0 else buf_y, lo, hi, m_lo, k, w * value)

    @device_jit
    def ray_cone(s, c, R, D, v, u, nz, ny, nx, pixel_size):
        """Walk of the ray from the source ``R d`` to the detector pixel ``(v, u)``.

        Returns ``(axis, lo, hi, a_lo, ka, b_lo, kb, weight)``: axis 0 steps over x (layout
        ``(x, z, y)``), 1 over y (``(y, z, x)``), 2 over z (``(z, y, x)``); at step ``M`` the padded
        minor coordinates are ``a_lo + (M - lo) ka`` and ``b_lo + (M - lo) kb``.
        """
        x0, y0, z0 = R * s / pixel_size + 0.5 * (nx - 1), 0.5 * (ny - 1) + R * c / pixel_size, 0.5 * (nz - 1)
        vx, vy = u * c - D * s, D * c + u * s
        dx, dy, dz = vx, -vy, v
        norm = math.sqrt(vx * vx + vy * vy + v * v)
        if abs(dx) >= abs(dy) and abs(dx) >= abs(dz):
            axis, m0, dm, n_major, a0, da, na, b0, db, nb = 0, x0, dx, nx, z0, dz, nz, y0, dy, ny
        elif abs(dy) >= abs(dz):
            axis, m0, dm, n_major, a0, da, na, b0, db, nb = 1, y0, dy, ny, z0, dz, nz, x0, dx, nx
        else:
            axis, m0, dm, n_major, a0, da, na, b0, db, nb = 2, z0, dz, nz, y0, dy, ny, x0, dx, nx
        ka, kb = da / dm, db / dm
        a_at0, b_at0 = a0 - m0 * ka, b0 - m0 * kb
        lo_a, hi_a = clip(a_at0, ka, na, n_major)
        lo_b, hi_b = clip(b_at0, kb, nb, n_major)
        lo = lo_a if lo_a > lo_b else lo_b
        return (axis, lo, hi_a if hi_a < hi_b else hi_b, np.float32(a_at0 + lo * ka + PAD), np.float32(ka),
                np.float32(b_at0 + lo * kb + PAD), np.float32(kb), np.float32(pixel_size * norm / abs(dm)))

    @device_jit
    def gather_3d(lay, lo, hi, a_lo, ka, b_lo, kb):
        acc = np.float32(0.0)
        for M in range(lo, hi + 1):
            t = np.float32(M - lo)
            am, bm = a_lo + t * ka, b_lo + t * kb
            i, j, Mu, one = np.uint32(am), np.uint32(bm), np.uint32(M), np.uint32(1)
            fa, fb = am - np.float32(i), bm - np.float32(j)
            v00, v10 = lay[Mu, i, j], lay[Mu, i + one, j]
            near = v00 + fb * (lay[Mu, i, j + one] - v00)
            far = v10 + fb * (lay[Mu, i + one, j + one] - v10)
            acc += near + fa * (far - near)
        return acc

    @device_jit
    def scatter_3d(lay, lo, hi, a_lo, ka, b_lo, kb, value):
        for M in range(lo, hi + 1):
            t = np.float32(M - lo)
            am, bm = a_lo + t * ka, b_lo + t * kb
            i, j, Mu, one = np.uint32(am), np.uint32(bm), np.uint32(M), np.uint32(1)
            fa, fb = am - np.float32(i), bm - np.float32(j)
            far = fa * value
            near = value - far
            add(lay, (Mu, i, j), near - fb * near)
            add(lay, (Mu, i, j + one), fb * near)
            add(lay, (Mu, i + one, j), far - fb * far)
            add(lay, (Mu, i + one, j + one), fb * far)

    @device_jit
    def project_cone(lay_x, lay_y, lay_z, sincos, v, u, R, D, nz, ny, nx, pixel_size, a, r, c):
        axis, lo, hi, a_lo, ka, b_lo, kb, w = ray_cone(sincos[a, 0], sincos[a, 1], R, D, v[r], u[c],
                                                       nz, ny, nx, pixel_size)
        lay = lay_x if axis == 0 else (lay_y if axis == 1 else lay_z)
        return w * gather_3d(lay, lo, hi, a_lo, ka, b_lo, kb)

    @device_jit
    def backproject_cone(buf_x, buf_y, buf_z, sincos, v, u, R, D, nz, ny, nx, pixel_size, a, r, c, value):
        axis, lo, hi, a_lo, ka, b_lo, kb, w = ray_cone(sincos[a, 0], sincos[a, 1], R, D, v[r], u[c],
                                                       nz, ny, nx, pixel_size)
        buf = buf_x if axis == 0 else (buf_y if axis == 1 else buf_z)
        scatter_3d(buf, lo, hi, a_lo, ka, b_lo, kb, w * value)

    return RayFunctions(project_2d, backproject_2d, project_cone, backproject_cone)


# -- NumPy set-up shared with kernels.joseph_cuda ------------------------------------------------

def as_float32(x, ndim: int, name: str, n_angles: int | None = None) -> np.ndarray:
    """``x`` as a C-contiguous float32 array (a copy only if needed), checked to be ``ndim``-D
    with ``n_angles`` entries along its first axis (when given)."""
    x = np.ascontiguousarray(x, np.float32)
    if x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}D, got shape {x.shape}")
    if n_angles is not None and x.shape[0] != n_angles:
        raise ValueError(f"{name} of shape {x.shape} has {x.shape[0]} angles, expected {n_angles}")
    return x


def detector_positions(n: int, spacing: float, offset: float) -> np.ndarray:
    """``(n,)`` float64 bin centres ``u_j = (j - (n - 1) / 2) spacing + offset`` in mm."""
    return (np.arange(n) - 0.5 * (n - 1)) * float(spacing) + float(offset)


def angle_table(angles) -> np.ndarray:
    """``(na, 2)`` float64 ``(sin theta, cos theta)`` of the angles in radians."""
    angles = np.asarray(angles, np.float64).reshape(-1)
    return np.ascontiguousarray(np.stack([np.sin(angles), np.cos(angles)], axis=1))


def geometry_2d(angles, n_det: int, det_spacing: float, det_offset: float, src_iso: float,
                src_det: float, mode: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-angle ``(sin, cos)`` and per-bin ray table ``(n_det, 4)`` float64 ``(pd, pu, da, du)``.

    Ray ``j`` at angle ``theta`` passes through ``pd d + pu e_u`` with direction ``da d + du e_u``
    (``d``, ``e_u`` of :mod:`physics.ct_geometry`): parallel ``(0, u_j, 1, 0)``, flat fan
    ``(R, 0, -D, u_j)``, arc fan ``(R, 0, -cos gamma_j, sin gamma_j)`` with ``gamma_j = u_j / D``.
    """
    u = detector_positions(n_det, det_spacing, det_offset)
    rays = np.zeros((n_det, 4))
    if mode == MODE_PARALLEL:
        rays[:, 1], rays[:, 2] = u, 1.0
    elif mode == MODE_FAN_FLAT:
        rays[:, 0], rays[:, 2], rays[:, 3] = src_iso, -src_det, u
    elif mode == MODE_FAN_ARC:
        rays[:, 0], rays[:, 2], rays[:, 3] = src_iso, -np.cos(u / src_det), np.sin(u / src_det)
    else:
        raise ValueError(f"mode must be MODE_PARALLEL (0), MODE_FAN_FLAT (1) or MODE_FAN_ARC (2), got {mode}")
    return angle_table(angles), rays


def geometry_cone(angles, n_rows: int, n_cols: int, spacing_v: float, spacing_u: float,
                  offset_v: float, offset_u: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-angle ``(sin, cos)``, detector row positions ``v`` and column positions ``u`` (mm)."""
    return (angle_table(angles), detector_positions(n_rows, spacing_v, offset_v),
            detector_positions(n_cols, spacing_u, offset_u))


def _padded(a: np.ndarray) -> np.ndarray:
    """Copy of ``a`` with :data:`PAD` zeros on each side of every axis but the first."""
    shape = (a.shape[0], *(n + 2 * PAD for n in a.shape[1:]))
    out = np.zeros(shape, np.float32)
    out[(slice(None), *(slice(PAD, PAD + n) for n in a.shape[1:]))] = a
    return out


def layouts_2d(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Padded float32 ``(ny, nx + 2 PAD)`` copy of ``image`` and ``(nx, ny + 2 PAD)`` of ``image.T``."""
    return _padded(image), _padded(image.T)


def layouts_3d(volume: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Padded float32 copies of ``volume (z, y, x)`` ordered ``(x, z, y)``, ``(y, z, x)``, ``(z, y, x)``."""
    return _padded(volume.transpose(2, 0, 1)), _padded(volume.transpose(1, 0, 2)), _padded(volume)


def buffers_2d(chunks: int, ny: int, nx: int) -> tuple[np.ndarray, np.ndarray]:
    """Zeroed float32 scatter targets: ``chunks`` layouts of :func:`layouts_2d` for an ``(ny, nx)`` image."""
    return (np.zeros((chunks, ny, nx + 2 * PAD), np.float32),
            np.zeros((chunks, nx, ny + 2 * PAD), np.float32))


def buffers_3d(chunks: int, nz: int, ny: int, nx: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Zeroed float32 scatter targets: ``chunks`` layouts of :func:`layouts_3d`."""
    p = 2 * PAD
    return (np.zeros((chunks, nx, nz + p, ny + p), np.float32),
            np.zeros((chunks, ny, nz + p, nx + p), np.float32),
            np.zeros((chunks, nz, ny + p, nx + p), np.float32))


def sum_buffers_2d(buf_y: np.ndarray, buf_x: np.ndarray) -> np.ndarray:
    """``(ny, nx)`` float32 image: the sum over chunks of both layouts, padding dropped."""
    inner = slice(PAD, -PAD)
    return buf_y[:, :, inner].sum(0) + buf_x[:, :, inner].sum(0).T


def sum_buffers_3d(buf_x: np.ndarray, buf_y: np.ndarray, buf_z: np.ndarray) -> np.ndarray:
    """``(nz, ny, nx)`` float32 volume: the sum over chunks of the three layouts, padding dropped."""
    inner = slice(PAD, -PAD)
    return (buf_z[:, :, inner, inner].sum(0) + buf_x[:, :, inner, inner].sum(0).transpose(1, 2, 0)
            + buf_y[:, :, inner, inner].sum(0).transpose(1, 0, 2))


# -- CPU kernels ------------------------------------------------------------------------------

@njit(inline="always")
def _add(array, index, value):
    array[index] += value


_RAYS = compile_joseph(njit(inline="always", fastmath=True), _add)
_project_2d, _backproject_2d = _RAYS.project_2d, _RAYS.backproject_2d
_project_cone, _backproject_cone = _RAYS.project_cone, _RAYS.backproject_cone


@njit(parallel=True, fastmath=True, cache=True)
def _forward_2d(lay_y, lay_x, sincos, rays, ny, nx, pixel_size, out):
    na, nd = out.shape
    for ray in prange(na * nd):
        a, j = ray // nd, ray % nd
        out[a, j] = _project_2d(lay_y, lay_x, sincos, rays, ny, nx, pixel_size, a, j)


@njit(parallel=True, fastmath=True, cache=True)
def _adjoint_2d(sino, sincos, rays, ny, nx, pixel_size, buf_y, buf_x):
    chunks = buf_y.shape[0]
    na, nd = sino.shape
    for chunk in prange(chunks):
        for a in range(chunk * na // chunks, (chunk + 1) * na // chunks):
            for j in range(nd):
                if sino[a, j] != 0:
                    _backproject_2d(buf_y[chunk], buf_x[chunk], sincos, rays, ny, nx, pixel_size,
                                    a, j, sino[a, j])


@njit(parallel=True, fastmath=True, cache=True)
def _forward_cone(lay_x, lay_y, lay_z, sincos, v, u, R, D, nz, ny, nx, pixel_size, out):
    na, nr, nc = out.shape
    for ray in prange(na * nr * nc):
        a, rc = ray // (nr * nc), ray % (nr * nc)
        r, c = rc // nc, rc % nc
        out[a, r, c] = _project_cone(lay_x, lay_y, lay_z, sincos, v, u, R, D, nz, ny, nx, pixel_size, a, r, c)


@njit(parallel=True, fastmath=True, cache=True)
def _adjoint_cone(proj, sincos, v, u, R, D, nz, ny, nx, pixel_size, buf_x, buf_y, buf_z):
    chunks = buf_x.shape[0]
    na, nr, nc = proj.shape
    for chunk in prange(chunks):
        for a in range(chunk * na // chunks, (chunk + 1) * na // chunks):
            for r in range(nr):
                for c in range(nc):
                    if proj[a, r, c] != 0:
                        _backproject_cone(buf_x[chunk], buf_y[chunk], buf_z[chunk], sincos, v, u, R, D,
                                          nz, ny, nx, pixel_size, a, r, c, proj[a, r, c])


def _chunks(n_angles: int) -> int:
    return max(1, min(numba.get_num_threads(), n_angles))


def forward_2d(image: np.ndarray, angles: np.ndarray, n_det: int, det_spacing: float,
               det_offset: float, pixel_size: float, src_iso: float, src_det: float,
               mode: int) -> np.ndarray:
    """Sinogram ``f32[na, n_det]`` of line integrals of ``image f32[ny, nx]`` (mm, radians).

    ``mode``: :data:`MODE_PARALLEL` (``src_iso``, ``src_det`` ignored), :data:`MODE_FAN_FLAT`
    or :data:`MODE_FAN_ARC` (``det_spacing`` is then the arc length on the detector).
    """
    image = as_float32(image, 2, "image")
    sincos, rays = geometry_2d(angles, n_det, det_spacing, det_offset, src_iso, src_det, mode)
    out = np.empty((sincos.shape[0], int(n_det)), np.float32)
    _forward_2d(*layouts_2d(image), sincos, rays, image.shape[0], image.shape[1], float(pixel_size), out)
    return out


def adjoint_2d(sinogram: np.ndarray, angles: np.ndarray, ny: int, nx: int, det_spacing: float,
               det_offset: float, pixel_size: float, src_iso: float, src_det: float,
               mode: int) -> np.ndarray:
    """Backprojection ``f32[ny, nx]`` of ``sinogram f32[na, n_det]``: the transpose of :func:`forward_2d`."""
    sinogram = as_float32(sinogram, 2, "sinogram", np.size(angles))
    sincos, rays = geometry_2d(angles, sinogram.shape[1], det_spacing, det_offset, src_iso, src_det, mode)
    buf_y, buf_x = buffers_2d(_chunks(sincos.shape[0]), int(ny), int(nx))
    _adjoint_2d(sinogram, sincos, rays, int(ny), int(nx), float(pixel_size), buf_y, buf_x)
    return sum_buffers_2d(buf_y, buf_x)


def forward_cone(volume: np.ndarray, angles: np.ndarray, n_rows: int, n_cols: int,
                 spacing_v: float, spacing_u: float, offset_v: float, offset_u: float,
                 pixel_size: float, src_iso: float, src_det: float) -> np.ndarray:
    """Cone-beam projections ``f32[na, n_rows, n_cols]`` of ``volume f32[nz, ny, nx]`` (flat detector)."""
    volume = as_float32(volume, 3, "volume")
    sincos, v, u = geometry_cone(angles, n_rows, n_cols, spacing_v, spacing_u, offset_v, offset_u)
    out = np.empty((sincos.shape[0], int(n_rows), int(n_cols)), np.float32)
    _forward_cone(*layouts_3d(volume), sincos, v, u, float(src_iso), float(src_det), *volume.shape,
                  float(pixel_size), out)
    return out


def adjoint_cone(proj: np.ndarray, angles: np.ndarray, nz: int, ny: int, nx: int, spacing_v: float,
                 spacing_u: float, offset_v: float, offset_u: float, pixel_size: float,
                 src_iso: float, src_det: float) -> np.ndarray:
    """Backprojection ``f32[nz, ny, nx]`` of ``proj f32[na, n_rows, n_cols]``: the transpose of
    :func:`forward_cone`."""
    proj = as_float32(proj, 3, "projections", np.size(angles))
    sincos, v, u = geometry_cone(angles, *proj.shape[1:], spacing_v, spacing_u, offset_v, offset_u)
    bufs = buffers_3d(_chunks(sincos.shape[0]), int(nz), int(ny), int(nx))
    _adjoint_cone(proj, sincos, v, u, float(src_iso), float(src_det), int(nz), int(ny), int(nx),
                  float(pixel_size), *bufs)
    return sum_buffers_3d(*bufs)
