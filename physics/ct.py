"""CT forward models: parallel-, fan- and cone-beam projection as linear operators.

``A(x)``: attenuation image ``(..., ny, nx)`` (or volume ``(..., nz, ny, nx)``), float32 in
mm^-1, to the sinogram ``(..., *geometry.sinogram_shape)`` of line integrals (dimensionless),
float32; ``A.adjoint`` is the matched backprojection. The geometry (:mod:`physics.ct_geometry`)
is static pytree metadata, so an operator holds no arrays and passes through ``jit`` as it is.

All backends discretise the line integral by Joseph's method (Joseph 1982; ASTRA's "linear"
projector): a ray steps one pixel at a time along the image axis in which its direction is
dominant, interpolates linearly between the two nearest pixels of each crossed row or column
(pixels outside the image count as zero) and weighs each sample by the step length
``pixel_size / |dominant direction component|``.

Backends:
    ``"numba"``: the CPU kernels of :mod:`kernels.joseph`, called through
        :func:`physics.bridge.linear_callback` (``jit``, ``vmap``, ``grad``; no forward-mode).
    ``"cuda"``: the same kernels on an NVIDIA GPU (:mod:`kernels.joseph_cuda`).
    ``"jax"`` (parallel beam only): pure JAX, for accelerators without host callbacks. The
        projector gathers, per angle, ``detectors x lines`` interpolated samples (angles mapped in
        blocks with :func:`jax.lax.map` to bound memory); its adjoint is
        :func:`jax.linear_transpose` of the projector, so exact by construction.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from physics.bridge import linear_callback
from physics.ct_geometry import CTGeometry
from physics.errors import InvalidDataError
from physics.linop import LinearOperator, operator, static

__all__ = ["ConeBeamCT", "FanBeamCT", "ParallelBeamCT", "ct_operator"]

JaxFn = Callable[[jax.Array], jax.Array]

# samples gathered per lax.map step of the pure-JAX projector (float32: 4 MiB per array)
_SAMPLES_PER_STEP = 1 << 20


def _host_kernels(backend: str):
    """The kernel module of a host backend; ``"cuda"`` only where numba finds a GPU."""
    if backend == "numba":
        from kernels import joseph
        return joseph
    from kernels import joseph_cuda
    if not joseph_cuda.is_available():
        raise InvalidDataError("CT backend 'cuda' needs an NVIDIA GPU with a CUDA driver, and "
                               "numba.cuda finds none; use backend='numba' (CPU) instead")
    return joseph_cuda


def _host_pair(geometry: CTGeometry, backend: str) -> tuple[JaxFn, JaxFn]:
    """``(A, A_adjoint)`` calling the Numba kernels of ``backend`` on one image at a time."""
    k = _host_kernels(backend)
    g, angles = geometry, geometry.angles_array
    R, D = g.source_to_isocenter or 0.0, g.source_to_detector or 0.0
    if g.kind == "cone":
        nz, ny, nx = g.image_shape
        (rows, cols), (sv, su), (ov, ou) = g.detector_shape, g.detector_spacing, g.detector_offset

        def forward(x):
            return k.forward_cone(x, angles, rows, cols, sv, su, ov, ou, g.pixel_size, R, D)

        def adjoint(y):
            return k.adjoint_cone(y, angles, nz, ny, nx, sv, su, ov, ou, g.pixel_size, R, D)
    else:
        mode = (k.MODE_PARALLEL if g.kind == "parallel" else
                k.MODE_FAN_ARC if g.detector == "arc" else k.MODE_FAN_FLAT)
        (ny, nx), (n_det,), (du,), (offset,) = (g.image_shape, g.detector_shape, g.detector_spacing,
                                                g.detector_offset)

        def forward(x):
            return k.forward_2d(x, angles, n_det, du, offset, g.pixel_size, R, D, mode)

        def adjoint(y):
            return k.adjoint_2d(y, angles, ny, nx, du, offset, g.pixel_size, R, D, mode)

    return linear_callback(forward, adjoint, g.image_shape, g.sinogram_shape)


def _split(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float64 values as int32 floor and float32 fraction in [0, 1), so sums stay exact."""
    whole = np.floor(values)
    return whole.astype(np.int32), (values - whole).astype(np.float32)


def _joseph_tables(geometry: CTGeometry, theta: np.ndarray, columns: bool) -> dict[str, np.ndarray]:
    """Sampling tables of Joseph's method for parallel-beam angles ``theta`` (radians).

    Stepping over columns (``|sin theta| >= |cos theta|``; the image is then transposed so that
    lines are columns), ray ``j`` crosses column ``c`` at row coordinate
    ``(ny - 1)/2 - u_j / (p sin) + (c - (nx - 1)/2) cos / sin``; stepping over rows, it crosses
    row ``r`` at column coordinate ``(nx - 1)/2 + u_j / (p cos) + (r - (ny - 1)/2) sin / cos``.
    Both are ``det[j] + line[l]``, returned split by :func:`_split`, with the weights ``p / |step|``.
    """
    p = geometry.pixel_size
    ny, nx = geometry.image_shape
    n_len, n_lines = (ny, nx) if columns else (nx, ny)
    u = geometry.detector_positions()
    sin, cos = np.sin(theta)[:, None], np.cos(theta)[:, None]
    step, across, sign = (sin, cos, -1.0) if columns else (cos, sin, 1.0)
    det = (n_len - 1) / 2 + sign * u / (p * step)
    line = (np.arange(n_lines) - (n_lines - 1) / 2) * across / step
    det_int, det_frac = _split(det)
    line_int, line_frac = _split(line)
    return {"det_int": det_int, "det_frac": det_frac, "line_int": line_int, "line_frac": line_frac,
            "weight": (p / np.abs(step[:, 0])).astype(np.float32)}


def _project_lines(lines: jax.Array, tables: dict[str, np.ndarray]) -> jax.Array:
    """Joseph sums along the rows of ``lines`` ``(n_lines, n_len)`` for a block of angles.

    Returns ``(angles, detectors)``: ``weight * sum_l interp(lines[l], det[j] + line[l])``.
    """
    n_lines, n_len = lines.shape
    n_angles, n_det = tables["det_int"].shape
    padded = jnp.pad(lines, ((0, 0), (1, 1))).ravel()  # one zero pixel on either end of a line
    starts = jnp.arange(n_lines, dtype=jnp.int32) * (n_len + 2) + 1

    def one_angle(t):
        frac = t["det_frac"][:, None] + t["line_frac"][None, :]  # (n_det, n_lines), in [0, 2)
        carry = jnp.floor(frac)
        index = t["det_int"][:, None] + t["line_int"][None, :] + carry.astype(jnp.int32)
        frac = frac - carry
        inside = (index >= -1) & (index < n_len)
        flat = starts + jnp.clip(index, -1, n_len - 1)
        low = padded.at[flat].get(mode="promise_in_bounds")
        high = padded.at[flat + 1].get(mode="promise_in_bounds")
        samples = jnp.where(inside, (1 - frac) * low + frac * high, 0.0)
        return t["weight"] * jnp.sum(samples, axis=1)

    block = max(1, min(n_angles, _SAMPLES_PER_STEP // (n_det * n_lines)))
    return jax.lax.map(one_angle, jax.tree.map(jnp.asarray, tables), batch_size=block)


def _joseph_parallel(geometry: CTGeometry) -> JaxFn:
    """Pure-JAX Joseph parallel-beam projector of one image ``(ny, nx) -> (angles, detectors)``."""
    theta = geometry.angles_array
    by_columns = np.abs(np.sin(theta)) >= np.abs(np.cos(theta))
    groups = [(columns, _joseph_tables(geometry, theta[m], columns), np.flatnonzero(m))
              for m, columns in ((by_columns, True), (~by_columns, False)) if m.any()]
    order = np.argsort(np.concatenate([index for _, _, index in groups]))

    def project(image: jax.Array) -> jax.Array:
        parts = [_project_lines(image.T if columns else image, tables) for columns, tables, _ in groups]
        return jnp.concatenate(parts)[order]

    return project


def _jax_pair(geometry: CTGeometry) -> tuple[JaxFn, JaxFn]:
    """``(A, A_adjoint)`` of the pure-JAX projector, over any leading batch axes."""
    project = _joseph_parallel(geometry)
    image = jax.ShapeDtypeStruct(geometry.image_shape, jnp.float32)

    def backproject(sinogram: jax.Array) -> jax.Array:
        return jax.linear_transpose(project, image)(sinogram)[0]

    def batched(fn: JaxFn, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> JaxFn:
        @jax.jit  # compiled once per input shape, also when called outside jit
        def apply(x: jax.Array) -> jax.Array:
            lead = x.shape[:x.ndim - len(in_shape)]
            items = jnp.asarray(x, jnp.float32).reshape((-1, *in_shape))
            return jax.vmap(fn)(items).reshape((*lead, *out_shape))
        return apply

    return (batched(project, geometry.image_shape, geometry.sinogram_shape),
            batched(backproject, geometry.sinogram_shape, geometry.image_shape))


@functools.lru_cache(maxsize=32)
def _projector_pair(geometry: CTGeometry, backend: str) -> tuple[JaxFn, JaxFn]:
    """The ``(A, A_adjoint)`` JAX functions of a geometry and backend, built once."""
    return _jax_pair(geometry) if backend == "jax" else _host_pair(geometry, backend)


@operator
class _Projection(LinearOperator):
    """A CT projector ``image -> sinogram`` of ``geometry`` computed by ``backend``."""

    geometry: CTGeometry = static()
    backend: str = static(default="numba")

    kind: ClassVar[str] = ""
    backends: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self):
        name = type(self).__name__
        if not isinstance(self.geometry, CTGeometry):
            raise InvalidDataError(f"{name}: geometry must be a CTGeometry (physics.ct_geometry), "
                                   f"got {type(self.geometry).__name__}")
        if self.geometry.kind != self.kind:
            raise InvalidDataError(f"{name} needs a {self.kind}-beam geometry, got a "
                                   f"{self.geometry.kind}-beam one (use ct_operator to pick the class)")
        if self.backend not in self.backends:
            raise InvalidDataError(f"{name}: unknown backend {self.backend!r}, expected one of "
                                   f"{', '.join(map(repr, self.backends))}")
        if self.backend == "cuda":
            _host_kernels("cuda")

    in_shape = property(lambda self: tuple(self.geometry.image_shape))
    out_shape = property(lambda self: tuple(self.geometry.sinogram_shape))
    in_dtype = out_dtype = property(lambda self: jnp.dtype(jnp.float32))

    def _forward(self, x):
        return _projector_pair(self.geometry, self.backend)[0](x)

    def _adjoint(self, y):
        return _projector_pair(self.geometry, self.backend)[1](y)


@operator
class ParallelBeamCT(_Projection):
    """2D parallel-beam projection ``(..., ny, nx) -> (..., angles, detectors)``, float32.

    Args:
        geometry: a ``parallel_beam`` geometry.
        backend: ``"numba"`` (CPU), ``"cuda"`` (NVIDIA GPU) or ``"jax"`` (pure JAX, any device).
    """

    kind: ClassVar[str] = "parallel"
    backends: ClassVar[tuple[str, ...]] = ("numba", "cuda", "jax")


@operator
class FanBeamCT(_Projection):
    """2D fan-beam projection (flat or arc detector) ``(..., ny, nx) -> (..., angles, detectors)``.

    Args:
        geometry: a ``fan_beam`` geometry.
        backend: ``"numba"`` (CPU) or ``"cuda"`` (NVIDIA GPU).
    """

    kind: ClassVar[str] = "fan"
    backends: ClassVar[tuple[str, ...]] = ("numba", "cuda")


@operator
class ConeBeamCT(_Projection):
    """3D cone-beam projection ``(..., nz, ny, nx) -> (..., angles, rows, columns)``, float32.

    Args:
        geometry: a ``cone_beam`` geometry (circular orbit, flat detector).
        backend: ``"numba"`` (CPU) or ``"cuda"`` (NVIDIA GPU).
    """

    kind: ClassVar[str] = "cone"
    backends: ClassVar[tuple[str, ...]] = ("numba", "cuda")


def ct_operator(geometry: CTGeometry, backend: str = "numba") -> LinearOperator:
    """The projector of ``geometry``: :class:`ParallelBeamCT`, :class:`FanBeamCT` or :class:`ConeBeamCT`."""
    if not isinstance(geometry, CTGeometry):
        raise InvalidDataError(f"ct_operator: geometry must be a CTGeometry, got {type(geometry).__name__}")
    cls = {"parallel": ParallelBeamCT, "fan": FanBeamCT, "cone": ConeBeamCT}[geometry.kind]
    return cls(geometry, backend)
