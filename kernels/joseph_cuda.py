"""CUDA CT projectors (``numba.cuda``): the Joseph method of :mod:`kernels.joseph` on NVIDIA GPUs.

Same algorithm, geometry convention and API as :mod:`kernels.joseph`: the per-ray set-up and
traversal are the very functions of :func:`kernels.joseph.compile_joseph`, compiled here as CUDA
device functions. One thread per ray: the forward projection gathers, the adjoint scatters into
one set of padded layouts with ``cuda.atomic.add`` (so its float32 sums are not bitwise
deterministic). NumPy arrays in and out: inputs are copied to the device and results back.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from kernels import joseph
from kernels.joseph import MODE_FAN_ARC, MODE_FAN_FLAT, MODE_PARALLEL

__all__ = ["MODE_FAN_ARC", "MODE_FAN_FLAT", "MODE_PARALLEL", "adjoint_2d", "adjoint_cone",
           "forward_2d", "forward_cone", "is_available"]

THREADS = 256  # threads per block


def is_available() -> bool:
    """Whether a CUDA GPU (or the simulator, ``NUMBA_ENABLE_CUDASIM=1``) can run these kernels."""
    return cuda.is_available()


@cuda.jit(device=True)
def _atomic_add(array, index, value):
    cuda.atomic.add(array, index, value)


_RAYS = joseph.compile_joseph(cuda.jit(device=True, fastmath=True), _atomic_add)
_project_2d, _backproject_2d = _RAYS.project_2d, _RAYS.backproject_2d
_project_cone, _backproject_cone = _RAYS.project_cone, _RAYS.backproject_cone


@cuda.jit(fastmath=True)
def _forward_2d(lay_y, lay_x, sincos, rays, ny, nx, pixel_size, out):
    ray = cuda.grid(1)
    na, nd = out.shape
    if ray < na * nd:
        a, j = ray // nd, ray % nd
        out[a, j] = _project_2d(lay_y, lay_x, sincos, rays, ny, nx, pixel_size, a, j)


@cuda.jit(fastmath=True)
def _adjoint_2d(sino, sincos, rays, ny, nx, pixel_size, buf_y, buf_x):
    ray = cuda.grid(1)
    na, nd = sino.shape
    if ray < na * nd:
        a, j = ray // nd, ray % nd
        if sino[a, j] != 0:
            _backproject_2d(buf_y[0], buf_x[0], sincos, rays, ny, nx, pixel_size, a, j, sino[a, j])


@cuda.jit(fastmath=True)
def _forward_cone(lay_x, lay_y, lay_z, sincos, v, u, R, D, nz, ny, nx, pixel_size, out):
    ray = cuda.grid(1)
    na, nr, nc = out.shape
    if ray < na * nr * nc:
        a, rc = ray // (nr * nc), ray % (nr * nc)
        r, c = rc // nc, rc % nc
        out[a, r, c] = _project_cone(lay_x, lay_y, lay_z, sincos, v, u, R, D, nz, ny, nx, pixel_size, a, r, c)


@cuda.jit(fastmath=True)
def _adjoint_cone(proj, sincos, v, u, R, D, nz, ny, nx, pixel_size, buf_x, buf_y, buf_z):
    ray = cuda.grid(1)
    na, nr, nc = proj.shape
    if ray < na * nr * nc:
        a, rc = ray // (nr * nc), ray % (nr * nc)
        r, c = rc // nc, rc % nc
        if proj[a, r, c] != 0:
            _backproject_cone(buf_x[0], buf_y[0], buf_z[0], sincos, v, u, R, D, nz, ny, nx, pixel_size,
                              a, r, c, proj[a, r, c])


def _blocks(n_rays: int) -> int:
    return max(1, (n_rays + THREADS - 1) // THREADS)


def _to_device(*arrays: np.ndarray) -> list:
    return [cuda.to_device(a) for a in arrays]


def forward_2d(image: np.ndarray, angles: np.ndarray, n_det: int, det_spacing: float,
               det_offset: float, pixel_size: float, src_iso: float, src_det: float,
               mode: int) -> np.ndarray:
    """Sinogram ``f32[na, n_det]`` of ``image f32[ny, nx]``: :func:`kernels.joseph.forward_2d` on the GPU."""
    image = joseph.as_float32(image, 2, "image")
    sincos, rays = joseph.geometry_2d(angles, n_det, det_spacing, det_offset, src_iso, src_det, mode)
    out = cuda.device_array((sincos.shape[0], int(n_det)), np.float32)
    _forward_2d[_blocks(out.size), THREADS](*_to_device(*joseph.layouts_2d(image), sincos, rays),
                                            image.shape[0], image.shape[1], float(pixel_size), out)
    return out.copy_to_host()


def adjoint_2d(sinogram: np.ndarray, angles: np.ndarray, ny: int, nx: int, det_spacing: float,
               det_offset: float, pixel_size: float, src_iso: float, src_det: float,
               mode: int) -> np.ndarray:
    """Backprojection ``f32[ny, nx]`` of ``sinogram f32[na, n_det]``: :func:`kernels.joseph.adjoint_2d`
    on the GPU."""
    sinogram = joseph.as_float32(sinogram, 2, "sinogram", np.size(angles))
    sincos, rays = joseph.geometry_2d(angles, sinogram.shape[1], det_spacing, det_offset, src_iso, src_det,
                                      mode)
    bufs = _to_device(*joseph.buffers_2d(1, int(ny), int(nx)))
    _adjoint_2d[_blocks(sinogram.size), THREADS](*_to_device(sinogram, sincos, rays), int(ny), int(nx),
                                                 float(pixel_size), *bufs)
    return joseph.sum_buffers_2d(*(b.copy_to_host() for b in bufs))


def forward_cone(volume: np.ndarray, angles: np.ndarray, n_rows: int, n_cols: int,
                 spacing_v: float, spacing_u: float, offset_v: float, offset_u: float,
                 pixel_size: float, src_iso: float, src_det: float) -> np.ndarray:
    """Projections ``f32[na, n_rows, n_cols]`` of ``volume f32[nz, ny, nx]``:
    :func:`kernels.joseph.forward_cone` on the GPU."""
    volume = joseph.as_float32(volume, 3, "volume")
    sincos, v, u = joseph.geometry_cone(angles, n_rows, n_cols, spacing_v, spacing_u, offset_v, offset_u)
    out = cuda.device_array((sincos.shape[0], int(n_rows), int(n_cols)), np.float32)
    _forward_cone[_blocks(out.size), THREADS](*_to_device(*joseph.layouts_3d(volume), sincos, v, u),
                                              float(src_iso), float(src_det), *volume.shape,
                                              float(pixel_size), out)
    return out.copy_to_host()


def adjoint_cone(proj: np.ndarray, angles: np.ndarray, nz: int, ny: int, nx: int, spacing_v: float,
                 spacing_u: float, offset_v: float, offset_u: float, pixel_size: float,
                 src_iso: float, src_det: float) -> np.ndarray:
    """Backprojection ``f32[nz, ny, nx]`` of ``proj f32[na, n_rows, n_cols]``:
    :func:`kernels.joseph.adjoint_cone` on the GPU."""
    proj = joseph.as_float32(proj, 3, "projections", np.size(angles))
    sincos, v, u = joseph.geometry_cone(angles, *proj.shape[1:], spacing_v, spacing_u, offset_v, offset_u)
    bufs = _to_device(*joseph.buffers_3d(1, int(nz), int(ny), int(nx)))
    _adjoint_cone[_blocks(proj.size), THREADS](*_to_device(proj, sincos, v, u), float(src_iso),
                                               float(src_det), int(nz), int(ny), int(nx), float(pixel_size),
                                               *bufs)
    return joseph.sum_buffers_3d(*(b.copy_to_host() for b in bufs))
