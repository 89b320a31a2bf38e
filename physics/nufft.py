"""Non-uniform FFT: type 2 (image -> arbitrary k-space points) and its exact adjoint (type 1).

Convention. A trajectory is float32 ``(*samples, ndim)`` in cycles per field of view, with the
coordinate axes in the order of the image axes (``(ky, kx)`` for an image ``(ny, nx)``,
``(kz, ky, kx)`` for ``(nz, ny, nx)``), each in ``[-N_d/2, N_d/2)``. The operator is

    ``y(k) = (1 / sqrt(prod N)) sum_n x[n] exp(-2 pi i sum_d k_d (n_d - N_d//2) / N_d)``,

so that a trajectory on the integer grid reproduces :func:`physics.fft.fftc` (centred,
orthonormal). The transform is periodic in ``k_d`` with period ``N_d``: a sample at ``+N_d/2``
equals one at ``-N_d/2``, which is where it must be given.

Algorithm (gridding). ``x`` is divided by the kernel's Fourier transform (de-apodisation), zero-
padded (centred) to the oversampled grid ``G_d >= oversampling * N_d``, transformed with ``fftc``
and interpolated at the grid positions ``u_d = k_d G_d / N_d + G_d//2`` with a Kaiser-Bessel
window of ``width`` cells (Beatty et al., IEEE TMI 24:799, 2005),

    ``phi(t) = I0(beta sqrt(1 - (2 t / width)^2)) / I0(beta)``,  ``|t| <= width / 2``,
    ``beta = pi sqrt(width^2 / oversampling^2 (oversampling - 1/2)^2 - 0.8)``,

whose Fourier transform ``width sinh(sqrt(beta^2 - (pi width f)^2)) / sqrt(...) / I0(beta)`` is
the de-apodisation. The adjoint is the exact adjoint of these discrete steps (spreading is the
transpose of the interpolation), not a second approximation.

Accuracy: :data:`ACCURACY` (checked in tests/test_nufft.py); the default width 4 gives ~6e-4,
width 6 ~7e-6.

Backends. ``"numba"`` (default on CPU): interpolation and spreading run in the Numba kernels of
:mod:`kernels.gridding` through :mod:`physics.bridge`, all coils (batch items) in one call; the
points are sorted once, at construction, so the trajectory must be concrete there. ``"jax"``:
a gather and its transpose, pure JAX (accelerators; traced trajectories, e.g. ``vmap`` over
trajectories). Both evaluate the same window (piecewise polynomials fitted to ``phi`` to 1e-9).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from numpy.polynomial import chebyshev

from kernels import gridding
from physics.bridge import linear_callback
from physics.errors import InvalidDataError, ShapeError
from physics.fft import fftc, ifftc
from physics.linop import LinearOperator, operator, static

#: Relative l2 error against the exact float64 NUDFT at 2x oversampling, by kernel width, as
#: measured (random complex 64 x 64 image, 2000 uniformly random float32 points, also the
#: reference's; type 1, 3D and odd sizes alike). About 10x per cell of width. At oversampling
#: 1.25 the errors are 3e-2, 6.7e-3, 1.6e-3, 3.8e-4, 9e-5, 2.3e-5 for widths 3 to 8.
ACCURACY = {2: 6e-2, 3: 6e-3, 4: 6e-4, 5: 6.5e-5, 6: 6.5e-6, 7: 7.5e-7, 8: 2e-7}


# ------------------------------------------------------------------------------------------------
# the Kaiser-Bessel window
# ------------------------------------------------------------------------------------------------
def kaiser_bessel_beta(width: int, oversampling: float) -> float:
    """Beatty et al.'s ``beta`` for a window of ``width`` cells at grid oversampling ``oversampling``."""
    return math.pi * math.sqrt((width / oversampling) ** 2 * (oversampling - 0.5) ** 2 - 0.8)


def kaiser_bessel(t: np.ndarray, width: int, beta: float) -> np.ndarray:
    """``phi(t)``, float64, ``t`` in grid cells (zero outside ``|t| <= width/2``; ``phi(0) = 1``)."""
    x = 2.0 * np.asarray(t, np.float64) / width
    inside = np.abs(x) <= 1
    return np.where(inside, np.i0(beta * np.sqrt(np.where(inside, 1 - x * x, 0))), 0) / np.i0(beta)


def kaiser_bessel_fourier(f: np.ndarray, width: int, beta: float) -> np.ndarray:
    """``int phi(t) exp(-2 pi i f t) dt``, float64, ``f`` in cycles per grid cell."""
    a = beta ** 2 - (np.pi * width * np.asarray(f, np.float64)) ** 2
    r = np.sqrt(np.abs(a))
    safe = np.where(r > 1e-12, r, 1.0)
    shape = np.where(r > 1e-12, np.where(a > 0, np.sinh(safe), np.sin(safe)) / safe, 1.0)
    return width * shape / np.i0(beta)


@functools.lru_cache(maxsize=32)
def kernel_polynomials(width: int, beta: float, tol: float = 1e-9) -> np.ndarray:
    """Piecewise polynomials of ``phi``: float64 ``(degree + 1, width)``, highest power first.

    Column ``i`` is ``phi(s + width/2 - 1 - i)`` as a polynomial in ``z = 2 s - 1``, ``s`` in
    ``[0, 1)`` (the layout of :mod:`kernels.gridding`): a Chebyshev fit of the lowest degree
    whose maximum error is below ``tol``.
    """
    nodes = np.cos(np.pi * (np.arange(64) + 0.5) / 64)
    check = np.linspace(-1.0, 1.0, 1001)
    pieces = [lambda z, i=i: kaiser_bessel((z + 1) / 2 + width / 2 - 1 - i, width, beta) for i in range(width)]
    for degree in range(4, 24):
        coeffs = [chebyshev.cheb2poly(chebyshev.chebfit(nodes, p(nodes), degree)) for p in pieces]
        if max(np.abs(np.polyval(c[::-1], check) - p(check)).max() for c, p in zip(coeffs, pieces)) < tol:
            break
    return np.ascontiguousarray(np.stack([c[::-1] for c in coeffs], axis=1))


def grid_size(n: int, oversampling: float, width: int) -> int:
    """Oversampled grid length: the smallest even 5-smooth integer ``>= max(oversampling n, 2 width)``."""
    g = max(math.ceil(oversampling * n - 1e-9), 2 * width)
    while True:
        r = g
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        if r == 1 and g % 2 == 0:
            return g
        g += 1


@functools.lru_cache(maxsize=32)
def _deapodisation(image_shape: tuple[int, ...], grid_shape: tuple[int, ...], width: int,
                   beta: float) -> np.ndarray:
    """float32 ``image_shape``: ``prod_d sqrt(G_d / N_d) / phi_hat((n_d - N_d//2) / G_d)``."""
    factors = [np.sqrt(g / n) / kaiser_bessel_fourier((np.arange(n) - n // 2) / g, width, beta)
               for n, g in zip(image_shape, grid_shape)]
    return functools.reduce(np.multiply.outer, factors).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# trajectories
# ------------------------------------------------------------------------------------------------
def check_trajectory(trajectory, image_shape: tuple[int, ...], who: str = "NUFFT") -> jax.Array:
    """The trajectory as float32, after checking its last axis and (when concrete) its values.

    Raises:
        ShapeError: the last axis is not ``len(image_shape)`` long.
        InvalidDataError: NaN/Inf, or a coordinate outside ``[-N_d/2, N_d/2)``.
    """
    shape = tuple(np.shape(trajectory))
    if len(shape) < 1 or shape[-1] != len(image_shape):
        raise ShapeError(f"{who}: trajectory must have shape (..., {len(image_shape)}) (one coordinate "
                         f"per image axis of {tuple(image_shape)}), got {shape}")
    if not isinstance(trajectory, jax.core.Tracer):
        k = np.asarray(trajectory, np.float32)
        if not np.all(np.isfinite(k)):
            raise InvalidDataError(f"{who}: trajectory contains NaN or Inf values")
        half = np.asarray(image_shape, np.float32) / 2
        for d, (lo, hi) in enumerate(zip(k.reshape(-1, len(image_shape)).min(0, initial=0),
                                         k.reshape(-1, len(image_shape)).max(0, initial=0))):
            if lo < -half[d] or hi >= half[d]:
                raise InvalidDataError(
                    f"{who}: trajectory axis {d} spans [{lo}, {hi}] cycles/FOV, outside "
                    f"[-{half[d]:g}, {half[d]:g}) for image size {image_shape[d]} (wrap samples at "
                    f"+N/2 to -N/2; the transform is N-periodic)")
    return jnp.asarray(trajectory, jnp.float32)


# ------------------------------------------------------------------------------------------------
# gridding: the Numba plan and the pure-JAX gather
# ------------------------------------------------------------------------------------------------
class GriddingPlan:
    """Host-side data of the Numba backend, built once per trajectory (identity-hashed).

    ``coords``: float64 ``(points, ndim)`` grid positions; ``order``, ``strips``: from
    :func:`kernels.gridding.sort_points`; ``source``: the trajectory array it was built from.
    """

    def __init__(self, trajectory: jax.Array, image_shape: tuple[int, ...], grid_shape: tuple[int, ...],
                 coeffs: np.ndarray):
        k = np.asarray(trajectory, np.float64).reshape(-1, len(image_shape))
        self.source = trajectory
        self.grid_shape = grid_shape
        self.coeffs = coeffs
        self.coords = np.ascontiguousarray(k * (np.asarray(grid_shape) / np.asarray(image_shape))
                                           + np.asarray(grid_shape) // 2)
        self.order, self.strips = gridding.sort_points(self.coords, grid_shape, coeffs.shape[1])
        self._bridges = {}

    def bridge(self, batch: int):
        """JAX functions ``(interpolate, spread)`` for ``batch`` grids (:func:`physics.bridge.linear_callback`).

        Jitted and kept per batch size, so that eager calls reuse one compilation (the caches die
        with the plan).
        """
        if batch not in self._bridges:
            pair = linear_callback(self.interpolate, self.spread, (*self.grid_shape, batch),
                                   (batch, len(self.order)), jnp.complex64, jnp.complex64)
            self._bridges[batch] = tuple(jax.jit(f) for f in pair)
        return self._bridges[batch]

    def interpolate(self, grid: np.ndarray) -> np.ndarray:  # (*G, B) -> (B, points)
        return gridding.interpolate(grid, self.coords, self.order, self.coeffs)

    def spread(self, values: np.ndarray) -> np.ndarray:  # (B, points) -> (*G, B)
        return gridding.spread(values, self.coords, self.order, self.strips, self.coeffs, self.grid_shape)


def _gather_cells(trajectory: jax.Array, image_shape: tuple[int, ...], grid_shape: tuple[int, ...],
                  coeffs: np.ndarray) -> tuple[jax.Array, jax.Array]:
    """Flat cell indices (int32) and weights (float32), both ``(points, width^ndim)``, in JAX.

    The grid position ``k G / N + G//2`` is split into an integer and a small fraction
    (``k = round(k) + lo``; ``round(k) G = q N + rem``; ``u = G//2 + q + (rem + lo G) / N``) so that
    float32 keeps the fraction to ~1e-7 cells for any ``G / N``.
    """
    width = coeffs.shape[1]
    k = trajectory.reshape(-1, len(image_shape))
    flat = jnp.zeros((k.shape[0], 1), jnp.int32)
    weights = jnp.ones((k.shape[0], 1), jnp.float32)
    for d, (n, g) in enumerate(zip(image_shape, grid_shape)):
        hi = jnp.round(k[:, d])
        q, rem = jnp.divmod(hi.astype(jnp.int32) * g, n)
        frac = (rem.astype(jnp.float32) + (k[:, d] - hi) * g) / n
        first = jnp.floor(frac - 0.5 * width) + 1
        z = 2.0 * (frac - first - (0.5 * width - 1.0)) - 1.0
        w = jnp.zeros((k.shape[0], width), jnp.float32)
        for c in coeffs.astype(np.float32):  # Horner, highest power first
            w = w * z[:, None] + c
        cells = jnp.mod(g // 2 + q[:, None] + first.astype(jnp.int32)[:, None] + jnp.arange(width), g)
        flat = (flat[:, :, None] * g + cells[:, None, :]).reshape(k.shape[0], -1)
        weights = (weights[:, :, None] * w[:, None, :]).reshape(k.shape[0], -1)
    return flat, weights


# ------------------------------------------------------------------------------------------------
# the operator
# ------------------------------------------------------------------------------------------------
def default_backend() -> str:
    """``"numba"`` when JAX computes on the CPU, else ``"jax"``."""
    return "numba" if jax.default_backend() == "cpu" else "jax"


@operator
class NUFFT(LinearOperator):
    """Type-2 NUFFT ``(..., *image_shape) -> (..., *trajectory.shape[:-1])``, complex64 (module docstring).

    Args:
        trajectory: float32 ``(*samples, ndim)``, cycles/FOV, axes in image-axis order, each in
            ``[-N_d/2, N_d/2)``.
        image_shape: ``(ny, nx)`` or ``(nz, ny, nx)`` (1D works too).
        width: kernel width in grid cells, 2..16 (accuracy: :data:`ACCURACY`).
        oversampling: grid oversampling ``> 1`` (grid sizes: :func:`grid_size`).
        backend: ``"numba"`` or ``"jax"``; ``None`` picks :func:`default_backend`.
        plan: derived (the Numba backend's :class:`GriddingPlan`); leave ``None``.

    ``A.adjoint`` is the type-1 transform (exact adjoint). ``A.interpolate`` / ``A.spread`` are
    the gridding pair on the oversampled grid (``A.grid_shape``) alone.

    Raises:
        ShapeError, InvalidDataError: bad trajectory (:func:`check_trajectory`) or parameters.

    Example:
        >>> k = jnp.array([[0.0, 0.0], [-4.0, 3.5]])
        >>> NUFFT(k, (8, 8))(jnp.ones((8, 8), jnp.complex64)).shape
        (2,)
    """

    trajectory: jax.Array
    image_shape: tuple[int, ...] = static()
    _: dataclasses.KW_ONLY
    width: int = static(default=4)
    oversampling: float = static(default=2.0)
    backend: str | None = static(default=None)
    plan: GriddingPlan | None = static(default=None)

    def __post_init__(self):
        if not hasattr(self.trajectory, "shape"):  # placeholder leaves of tree utilities
            return
        image_shape = tuple(int(n) for n in self.image_shape)
        if not 1 <= len(image_shape) <= 3 or min(image_shape) < 1:
            raise ShapeError(f"NUFFT: image_shape must be 1 to 3 positive sizes, got {self.image_shape}")
        if int(self.width) != self.width or not 2 <= self.width <= 16:
            raise InvalidDataError(f"NUFFT: width must be an integer in [2, 16] grid cells, got {self.width}")
        if not 1.0 < self.oversampling <= 4.0:
            raise InvalidDataError(f"NUFFT: oversampling must be in (1, 4], got {self.oversampling}")
        backend = default_backend() if self.backend is None else self.backend
        if backend not in ("numba", "jax"):
            raise InvalidDataError(f"NUFFT: backend must be 'numba' or 'jax', got {backend!r}")
        trajectory = check_trajectory(self.trajectory, image_shape)
        for name, value in (("image_shape", image_shape), ("width", int(self.width)),
                            ("oversampling", float(self.oversampling)), ("backend", backend),
                            ("trajectory", trajectory)):
            object.__setattr__(self, name, value)
        if backend == "jax":
            object.__setattr__(self, "plan", None)
        elif self.plan is None or (self.plan.source is not trajectory
                                   and not isinstance(trajectory, jax.core.Tracer)):
            if isinstance(trajectory, jax.core.Tracer):
                raise InvalidDataError("NUFFT: the numba backend sorts the trajectory at construction, so "
                                       "it must be concrete there; build the operator outside jit/vmap "
                                       "or use backend='jax'")
            object.__setattr__(self, "plan", GriddingPlan(trajectory, image_shape, self.grid_shape,
                                                          self.coefficients))

    # -- geometry --------------------------------------------------------------------------
    @property
    def grid_shape(self) -> tuple[int, ...]:
        """The oversampled grid ``G``."""
        return tuple(grid_size(n, self.oversampling, self.width) for n in self.image_shape)

    @property
    def beta(self) -> float:
        return kaiser_bessel_beta(self.width, self.oversampling)

    @property
    def coefficients(self) -> np.ndarray:
        """The window's piecewise polynomials (:func:`kernel_polynomials`)."""
        return kernel_polynomials(self.width, self.beta)

    in_shape = property(lambda self: tuple(self.image_shape))
    out_shape = property(lambda self: tuple(self.trajectory.shape[:-1]))

    # -- gridding ----------------------------------------------------------------------------
    @property
    def _geometry(self) -> dict:
        return dict(image_shape=self.image_shape, grid_shape=self.grid_shape, width=self.width, beta=self.beta)

    def _interpolate(self, grid: jax.Array) -> jax.Array:  # (B, *G) -> (B, points)
        if self.backend == "numba":
            return self.plan.bridge(grid.shape[0])[0](jnp.moveaxis(grid, 0, -1))
        return _gather(grid, self.trajectory, **self._geometry)

    def _spread(self, values: jax.Array) -> jax.Array:  # (B, points) -> (B, *G)
        if self.backend == "numba":
            return jnp.moveaxis(self.plan.bridge(values.shape[0])[1](values), -1, 0)
        return _scatter(values, self.trajectory, **self._geometry)

    def interpolate(self, grid: jax.Array) -> jax.Array:
        """``y_m = sum_j phi(u_m - j) grid[j]``: complex64 ``(..., *grid_shape) -> (..., *samples)``."""
        grid = jnp.asarray(grid, jnp.complex64)
        batch = grid.shape[:grid.ndim - len(self.grid_shape)]
        return self._interpolate(grid.reshape(-1, *self.grid_shape)).reshape(*batch, *self.out_shape)

    def spread(self, values: jax.Array) -> jax.Array:
        """The adjoint of :meth:`interpolate`: ``(..., *samples) -> (..., *grid_shape)``."""
        values = jnp.asarray(values, jnp.complex64)
        batch = values.shape[:values.ndim - len(self.out_shape)]
        return self._spread(values.reshape(-1, math.prod(self.out_shape))).reshape(*batch, *self.grid_shape)

    # -- the transform -------------------------------------------------------------------------
    def _forward(self, x):
        batch = x.shape[:x.ndim - len(self.image_shape)]
        grid = _image_to_grid(jnp.asarray(x, jnp.complex64).reshape(-1, *self.image_shape), **self._geometry)
        return self._interpolate(grid).reshape(*batch, *self.out_shape)

    def _adjoint(self, y):
        batch = y.shape[:y.ndim - len(self.out_shape)]
        grid = self._spread(jnp.asarray(y, jnp.complex64).reshape(-1, math.prod(self.out_shape)))
        return _grid_to_image(grid, **self._geometry).reshape(*batch, *self.image_shape)


# ------------------------------------------------------------------------------------------------
# the compiled pieces (static geometry, so that eager calls are fast and the jit cache small)
# ------------------------------------------------------------------------------------------------
_GEOMETRY = ("image_shape", "grid_shape", "width", "beta")


def _padding(image_shape, grid_shape) -> list[tuple[int, int]]:
    """Centred zero-padding of ``N`` to ``G``: image index ``n`` goes to ``n - N//2 + G//2``."""
    return [(g // 2 - n // 2, g - n - (g // 2 - n // 2)) for n, g in zip(image_shape, grid_shape)]


@functools.partial(jax.jit, static_argnames=_GEOMETRY)
def _image_to_grid(x, *, image_shape, grid_shape, width, beta):  # (B, *N) -> (B, *G)
    scaled = x * _deapodisation(image_shape, grid_shape, width, beta)
    return fftc(jnp.pad(scaled, [(0, 0)] + _padding(image_shape, grid_shape)), len(image_shape))


@functools.partial(jax.jit, static_argnames=_GEOMETRY)
def _grid_to_image(grid, *, image_shape, grid_shape, width, beta):  # (B, *G) -> (B, *N)
    crop = tuple(slice(lo, lo + n) for (lo, _), n in zip(_padding(image_shape, grid_shape), image_shape))
    return ifftc(grid, len(image_shape))[(..., *crop)] * _deapodisation(image_shape, grid_shape, width, beta)


@functools.partial(jax.jit, static_argnames=_GEOMETRY)
def _gather(grid, trajectory, *, image_shape, grid_shape, width, beta):  # (B, *G) -> (B, points)
    flat, weights = _gather_cells(trajectory, image_shape, grid_shape, kernel_polynomials(width, beta))
    return jnp.einsum("bmk,mk->bm", grid.reshape(grid.shape[0], -1)[:, flat], weights)


@functools.partial(jax.jit, static_argnames=_GEOMETRY)
def _scatter(values, trajectory, *, image_shape, grid_shape, width, beta):  # (B, points) -> (B, *G)
    geometry = dict(image_shape=image_shape, grid_shape=grid_shape, width=width, beta=beta)
    shape = jax.ShapeDtypeStruct((values.shape[0], *grid_shape), jnp.complex64)
    return jax.linear_transpose(lambda g: _gather(g, trajectory, **geometry), shape)(values)[0]
