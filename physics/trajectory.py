"""Non-Cartesian k-space trajectories and density compensation, in the convention of physics.nufft.

Every trajectory is float32 ``(..., ndim)`` in cycles per field of view for the ``image_shape``
it is made for, the coordinate axes in image-axis order (``(ky, kx)`` for ``(ny, nx)``,
``(kz, ky, kx)`` for ``(nz, ny, nx)``), each inside ``[-N_d/2, N_d/2)``. Readouts are described by
a normalised radius ``rho`` (a fraction of the k-space width, ``|rho| < 1/2``) and a unit
direction; axis ``d`` is ``k_d = rho * direction_d * N_d`` (an ellipse for non-square images).
A readout of ``samples`` points has ``rho_s = (s - samples//2) / samples``, so it passes through
``k = 0`` at sample ``samples//2``; ``samples = 2 N`` is a 2x oversampled readout.

Density compensation weights are float32 of the sample shape, in units of k-space area per
sample, ``(cycles/FOV)^ndim``: on a fully sampled Cartesian grid they are 1, so the DCF-weighted
adjoint NUFFT approximates the inverse FFT with the scaling of :func:`physics.fft.ifftc`.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from physics.errors import InvalidDataError, ShapeError
from physics.nufft import NUFFT, check_trajectory, kaiser_bessel_fourier

#: The golden angle of 2D radial sampling, ``pi / golden ratio`` (111.246 degrees; Winkelmann et
#: al., IEEE TMI 26:68, 2007): each spoke bisects the largest gap left by the previous ones.
GOLDEN_ANGLE = math.pi * 2 / (1 + math.sqrt(5))
#: The 2D golden means of 3D radial sampling (Chan et al., MRM 61:354, 2009).
GOLDEN_MEANS = (0.4655712318767680, 0.6823278038280193)


def _positive(who: str, **sizes: int) -> None:
    for name, value in sizes.items():
        if int(value) != value or value < 1:
            raise InvalidDataError(f"{who}: {name} must be a positive integer, got {value}")


def _image_shape(who: str, image_shape, ndim: int) -> tuple[int, ...]:
    shape = tuple(int(n) for n in image_shape)
    if len(shape) != ndim or min(shape) < 1:
        raise ShapeError(f"{who}: image_shape must be {ndim} positive sizes, got {tuple(image_shape)}")
    return shape


def _readout(samples: int) -> np.ndarray:
    """Normalised radii ``(s - samples//2) / samples`` of one readout, float64."""
    return (np.arange(samples) - samples // 2) / samples


def _to_trajectory(rho_direction: np.ndarray, image_shape: tuple[int, ...]) -> np.ndarray:
    """``rho * direction`` (float64, ``(..., ndim)``, within ``[-1/2, 1/2]``) -> float32 cycles/FOV.

    Coordinates that round to ``+N/2`` are wrapped to ``-N/2`` (the same sample: the transform is
    N-periodic).
    """
    n = np.asarray(image_shape, np.float32)
    k = (rho_direction * np.asarray(image_shape)).astype(np.float32)
    return np.where(k >= n / 2, k - n, k).astype(np.float32)


def radial_angles(spokes: int, *, golden: bool = False) -> np.ndarray:
    """Spoke angles in radians, float64 ``(spokes,)`` in ``[0, pi)``: ``pi i / spokes`` or golden."""
    step = GOLDEN_ANGLE if golden else math.pi / spokes
    return np.mod(np.arange(spokes) * step, math.pi)


def radial_2d(spokes: int, samples: int, *, image_shape: tuple[int, int], golden: bool = False) -> np.ndarray:
    """2D radial trajectory, float32 ``(spokes, samples, 2)`` as ``(ky, kx)``.

    Spoke ``i`` runs through the centre along ``(sin theta_i, cos theta_i)`` with
    ``theta_i = pi i / spokes`` (uniform over ``pi``) or ``theta_i = i * GOLDEN_ANGLE mod pi``.
    Nyquist-complete for ``spokes >= pi N / 2`` with ``samples = N``.
    """
    _positive("radial_2d", spokes=spokes, samples=samples)
    shape = _image_shape("radial_2d", image_shape, 2)
    theta = radial_angles(spokes, golden=golden)
    direction = np.stack([np.sin(theta), np.cos(theta)], axis=-1)  # (spokes, 2)
    return _to_trajectory(_readout(samples)[None, :, None] * direction[:, None, :], shape)


def spiral_2d(interleaves: int, samples: int, *, image_shape: tuple[int, int], density: float = 1.0,
              turns: float | None = None) -> np.ndarray:
    """2D (variable-density) spiral, float32 ``(interleaves, samples, 2)`` as ``(ky, kx)``.

    Interleaf ``l`` at ``t = s / samples`` in ``[0, 1)``: radius ``rho = t^density / 2`` and angle
    ``2 pi (turns t + l / interleaves)``, starting at the centre. ``density = 1`` is an
    Archimedean spiral, sampled at Nyquist everywhere for the default
    ``turns = max(N) / (2 interleaves)``; ``density > 1`` samples the centre more densely and the
    edge ``density`` times more sparsely. Samples are uniform in ``t`` (constant angular rate).
    """
    _positive("spiral_2d", interleaves=interleaves, samples=samples)
    shape = _image_shape("spiral_2d", image_shape, 2)
    if not density > 0:
        raise InvalidDataError(f"spiral_2d: density must be > 0, got {density}")
    turns = max(shape) / (2 * interleaves) if turns is None else turns
    if not turns > 0:
        raise InvalidDataError(f"spiral_2d: turns must be > 0, got {turns}")
    t = np.arange(samples) / samples
    rho = 0.5 * t ** density
    angle = 2 * math.pi * (turns * t[None, :] + np.arange(interleaves)[:, None] / interleaves)
    return _to_trajectory(rho[..., None] * np.stack([np.sin(angle), np.cos(angle)], axis=-1), shape)


def kooshball_3d(spokes: int, samples: int, *, image_shape: tuple[int, int, int]) -> np.ndarray:
    """3D radial ("kooshball") trajectory, float32 ``(spokes, samples, 3)`` as ``(kz, ky, kx)``.

    Spoke ``i`` runs through the centre along ``(z, sqrt(1 - z^2) sin a, sqrt(1 - z^2) cos a)``
    with the golden means ``z = frac(i g1)``, ``a = 2 pi frac(i g2)`` (:data:`GOLDEN_MEANS`): an
    even, incremental covering of the half sphere.
    """
    _positive("kooshball_3d", spokes=spokes, samples=samples)
    shape = _image_shape("kooshball_3d", image_shape, 3)
    i = np.arange(spokes)
    z = np.mod(i * GOLDEN_MEANS[0], 1.0)
    a = 2 * math.pi * np.mod(i * GOLDEN_MEANS[1], 1.0)
    r = np.sqrt(1 - z ** 2)
    direction = np.stack([z, r * np.sin(a), r * np.cos(a)], axis=-1)
    return _to_trajectory(_readout(samples)[None, :, None] * direction[:, None, :], shape)


def stack_of_stars(spokes: int, samples: int, partitions: int, *, image_shape: tuple[int, int, int],
                   golden: bool = False) -> np.ndarray:
    """Stack of stars, float32 ``(partitions, spokes, samples, 3)`` as ``(kz, ky, kx)``.

    Cartesian along ``kz`` (integer ``p - partitions//2``, the central ``partitions`` of ``nz``),
    :func:`radial_2d` in every ``(ky, kx)`` plane (the same spokes in every partition).
    """
    _positive("stack_of_stars", spokes=spokes, samples=samples, partitions=partitions)
    shape = _image_shape("stack_of_stars", image_shape, 3)
    if partitions > shape[0]:
        raise InvalidDataError(f"stack_of_stars: {partitions} partitions exceed nz = {shape[0]}")
    plane = radial_2d(spokes, samples, image_shape=shape[1:], golden=golden)
    kz = np.arange(partitions, dtype=np.float32) - partitions // 2
    kz = np.broadcast_to(kz[:, None, None, None], (partitions, spokes, samples, 1))
    return np.concatenate([kz, np.broadcast_to(plane, (partitions, *plane.shape))], axis=-1)


# ------------------------------------------------------------------------------------------------
# density compensation
# ------------------------------------------------------------------------------------------------
def ramp_dcf(trajectory, image_shape: tuple[int, int]) -> np.ndarray:
    """Analytic DCF of 2D radial sampling (full spokes through the centre), float32 ``(..., spokes, samples)``.

    ``w = pi rho drho N_y N_x / spokes``: the area of the ring of radius ``rho`` (normalised,
    module docstring) and width ``drho`` (the readout spacing) shared by the ``2 spokes`` samples
    on it, in (cycles/FOV)^2. The centre, where ``rho = 0``, gets ``rho = drho / 4``: the disc of
    radius ``drho / 2`` shared by the ``spokes`` samples at ``k = 0``. Leading axes (e.g.
    partitions of a stack of stars, given as ``trajectory[..., 1:]``) are separate stars.

    Raises:
        ShapeError: the trajectory is not ``(..., spokes, samples, 2)``.
    """
    shape = _image_shape("ramp_dcf", image_shape, 2)
    k = np.asarray(check_trajectory(trajectory, shape, "ramp_dcf"), np.float64)
    if k.ndim < 3 or k.shape[-2] < 2:
        raise ShapeError(f"ramp_dcf: trajectory must be (..., spokes, samples, 2) with samples >= 2, "
                         f"got {k.shape}")
    p = k / np.asarray(shape)
    rho = np.linalg.norm(p, axis=-1)
    drho = float(np.median(np.linalg.norm(np.diff(p, axis=-2), axis=-1)))
    rho = np.maximum(rho, drho / 4)
    return (math.pi * rho * drho * math.prod(shape) / k.shape[-3]).astype(np.float32)


def pipe_menon_dcf(trajectory, image_shape: tuple[int, ...], iterations: int = 20, *, width: int = 4,
                   oversampling: float = 2.0, backend: str | None = None) -> np.ndarray:
    """Iterative DCF (Pipe & Menon, MRM 41:179, 1999), float32 of the sample shape.

    ``w <- w / (C C^H w)`` from ``w = 1``, with ``C`` the NUFFT's interpolation from its
    oversampled grid and ``C^H`` the spreading (:meth:`physics.nufft.NUFFT.interpolate` /
    ``spread``): the fixed point makes the gridded density ``C^H w`` flat. The result is scaled
    to k-space area per sample: a uniform density of weights ``a`` gives
    ``C C^H a = prod_d phi_hat(0)^2 / sigma_d`` (``sigma_d = G_d / N_d``), so ``w`` is multiplied by
    that constant (1 on a full Cartesian grid).

    Raises:
        ShapeError, InvalidDataError: bad trajectory (:func:`physics.nufft.check_trajectory`) or
            ``iterations < 1``.
    """
    _positive("pipe_menon_dcf", iterations=iterations)
    A = NUFFT(trajectory, tuple(image_shape), width=width, oversampling=oversampling, backend=backend)
    w = jnp.ones(A.out_shape, jnp.float32)
    for _ in range(int(iterations)):
        w = w / jnp.real(A.interpolate(A.spread(w)))
    sigma = np.asarray(A.grid_shape) / np.asarray(A.image_shape)
    area = np.prod(kaiser_bessel_fourier(0.0, A.width, A.beta) ** 2 / sigma)
    return np.asarray(w * area, np.float32)

