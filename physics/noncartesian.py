"""Non-Cartesian multi-coil MRI: ``y_c = W^(1/2) N (S_c x)`` with a Toeplitz normal operator, and
coil maps from non-Cartesian data.

Layout as :mod:`physics.mri`: image ``(..., *spatial)``, maps ``(coils, *spatial)``, k-space
``(..., coils, *samples)`` where ``trajectory`` is ``(*samples, ndim)`` in the convention of
:mod:`physics.nufft` (cycles/FOV, image-axis order). ``N`` is the NUFFT, ``W`` optional
non-negative sample weights (e.g. a DCF): as SigPy's ``Sense``, the forward model carries
``sqrt(w)``, so ``A^H A = S^H N^H W N S`` and least squares on data ``sqrt(w) y`` is DCF-weighted.

Toeplitz embedding (Wajer & Pruessmann 2001; Fessler et al. 2005). ``N^H W N`` is a Toeplitz
matrix, ``T[n, n'] = (1/prod N) sum_m w_m exp(2 pi i k_m . (n - n') / N)``: a convolution with
``T`` over offsets ``-N < d < N``. Its values come from one adjoint NUFFT of ``w`` at ``2 k`` onto
a ``2N`` image (index ``p`` holds ``d = p - N``); zero-padding ``x`` to ``2N`` makes the circular
convolution linear, so

    ``A^H A x = sum_c conj(S_c) crop(ifftc(K * fftc(pad(S_c x))))``,  ``K = 2^ndim fftc(T)``,

with ``K`` real (``T`` is Hermitian once its unused ``d = -N`` entries are zeroed), computed once
at construction. It equals ``A.adjoint(A(x))`` to the NUFFT's accuracy (:data:`physics.nufft.ACCURACY`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from physics.coil_maps import espirit
from physics.errors import InvalidDataError, ShapeError
from physics.fft import fftc, ifftc
from physics.linop import LinearOperator, operator, static
from physics.nufft import NUFFT, check_trajectory
from physics.trajectory import pipe_menon_dcf


class _Sources:
    """The arrays a derived field was computed from, compared by identity (a hashable static)."""

    def __init__(self, *arrays):
        self.arrays = arrays

    def match(self, *arrays) -> bool:
        return len(arrays) == len(self.arrays) and all(a is b for a, b in zip(arrays, self.arrays))


def _centred_pad(image_shape: tuple[int, ...]) -> list[tuple[int, int]]:
    """Padding of an ``N`` image to ``2N`` with the centre ``N//2`` at ``N`` (as the NUFFT's grid)."""
    return [(n - n // 2, n // 2) for n in image_shape]


def toeplitz_kernel(trajectory, image_shape: tuple[int, ...], weights=None, *, width: int = 4,
                    oversampling: float = 2.0, backend: str | None = None) -> jax.Array:
    """``K``, float32 ``2 * image_shape``, such that ``N^H W N x = crop(ifftc(K fftc(pad(x))))``.

    Args:
        trajectory: ``(*samples, ndim)`` cycles/FOV (checked against ``image_shape``).
        image_shape: ``N``.
        weights: real ``(*samples)`` or ``None`` (all ones).
        width, oversampling, backend: of the NUFFT that computes the point-spread function.
    """
    image_shape = tuple(image_shape)
    trajectory = check_trajectory(trajectory, image_shape, "toeplitz_kernel")
    big = tuple(2 * n for n in image_shape)
    psf_op = NUFFT(2 * trajectory, big, width=width, oversampling=oversampling, backend=backend)
    w = jnp.ones(psf_op.out_shape, jnp.float32) if weights is None else jnp.asarray(weights, jnp.float32)
    psf = psf_op.adjoint(w.astype(jnp.complex64))  # (2N): sqrt(prod 2N) / prod N * T(p - N)
    for axis in range(len(big)):  # offset -N is never used: zero it, making T Hermitian
        psf = psf.at[(slice(None),) * axis + (0,)].set(0)
    return (2 ** len(big)) * jnp.real(fftc(psf, len(big)))


@operator
class NonCartesianMRI(LinearOperator):
    """Non-Cartesian multi-coil MRI ``y_c = sqrt(w) NUFFT(S_c x)`` (module docstring).

    Args:
        maps: coil sensitivities, complex ``(coils, *spatial)``, 2 or 3 spatial axes.
        trajectory: float32 ``(*samples, ndim)`` cycles/FOV for the image ``spatial``.
        weights: optional real non-negative ``(*samples)`` (a DCF, or 0/1 to drop samples).
        width, oversampling, backend: of the NUFFT (:class:`physics.nufft.NUFFT`).
        nufft, toeplitz, sources: derived at construction (the NUFFT, the Toeplitz kernel ``K``
            and what they were computed from); leave ``None``.

    ``A(x)``: ``(..., *spatial) -> (..., coils, *samples)``; ``A.adjoint`` sums over coils;
    ``A.normal`` uses the Toeplitz kernel (two FFTs of ``2 * spatial`` per coil, no gridding).
    Replacing ``trajectory`` or ``weights`` (``dataclasses.replace``) recomputes the derived
    fields; the operator is then a new jit cache entry.

    Raises:
        ShapeError: maps, trajectory and weights do not fit together.
        InvalidDataError: bad trajectory or negative/non-finite weights.
    """

    maps: jax.Array
    trajectory: jax.Array
    _: dataclasses.KW_ONLY
    weights: jax.Array | None = None
    width: int = static(default=4)
    oversampling: float = static(default=2.0)
    backend: str | None = static(default=None)
    nufft: NUFFT | None = None
    toeplitz: jax.Array | None = None
    sources: _Sources | None = static(default=None)

    def __post_init__(self):
        if not hasattr(self.maps, "shape") or not hasattr(self.trajectory, "shape"):
            return  # placeholder leaves of tree utilities
        ndim = self.trajectory.shape[-1] if self.trajectory.ndim else 0
        if ndim not in (2, 3) or self.maps.ndim != ndim + 1:
            raise ShapeError(f"NonCartesianMRI: maps must be (coils, *spatial) with as many spatial axes "
                             f"as the trajectory has coordinates (2 or 3); got maps {tuple(self.maps.shape)}, "
                             f"trajectory {tuple(self.trajectory.shape)}")
        spatial = tuple(self.maps.shape[1:])
        trajectory = check_trajectory(self.trajectory, spatial, "NonCartesianMRI")
        weights = self.weights
        if weights is not None:
            if tuple(np.shape(weights)) != tuple(trajectory.shape[:-1]):
                raise ShapeError(f"NonCartesianMRI: weights must have the sample shape "
                                 f"{tuple(trajectory.shape[:-1])}, got {tuple(np.shape(weights))}")
            if not isinstance(weights, jax.core.Tracer):
                w = np.asarray(weights)
                if np.iscomplexobj(w) or not np.all(np.isfinite(w)) or np.any(w < 0):
                    raise InvalidDataError("NonCartesianMRI: weights must be real, finite and >= 0")
            weights = jnp.asarray(weights, jnp.float32)
        object.__setattr__(self, "trajectory", trajectory)
        object.__setattr__(self, "weights", weights)
        traced = any(isinstance(a, jax.core.Tracer) for a in (trajectory, weights))
        if traced and self.nufft is not None and self.toeplitz is not None:
            return  # rebuilt from leaves inside jit/vmap: the derived fields come along
        if self.sources is not None and self.sources.match(trajectory, weights):
            return
        options = dict(width=self.width, oversampling=self.oversampling, backend=self.backend)
        nufft = NUFFT(trajectory, spatial, **options)
        object.__setattr__(self, "backend", nufft.backend)
        object.__setattr__(self, "nufft", nufft)
        object.__setattr__(self, "toeplitz", toeplitz_kernel(trajectory, spatial, weights, **options))
        object.__setattr__(self, "sources", _Sources(trajectory, weights))

    in_shape = property(lambda self: tuple(self.maps.shape[1:]))
    out_shape = property(lambda self: (self.maps.shape[0], *self.trajectory.shape[:-1]))

    def _sqrt_weights(self):
        return 1.0 if self.weights is None else jnp.sqrt(self.weights)

    def _coil_images(self, x):  # (..., *spatial) -> (..., coils, *spatial)
        ndim = self.maps.ndim - 1
        return self.maps * jnp.asarray(x, jnp.complex64)[..., None, *(slice(None),) * ndim]

    def _forward(self, x):
        return self._sqrt_weights() * self.nufft(self._coil_images(x))

    def _adjoint(self, y):
        images = self.nufft.adjoint(self._sqrt_weights() * jnp.asarray(y, jnp.complex64))
        return jnp.sum(jnp.conj(self.maps) * images, axis=-self.maps.ndim)

    def _normal(self, x):
        ndim = self.maps.ndim - 1
        spatial = self.in_shape
        Sx = self._coil_images(x)
        padded = jnp.pad(Sx, [(0, 0)] * (Sx.ndim - ndim) + _centred_pad(spatial))
        conv = ifftc(self.toeplitz * fftc(padded, ndim), ndim)
        crop = tuple(slice(n - n // 2, n - n // 2 + n) for n in spatial)
        return jnp.sum(jnp.conj(self.maps) * conv[(..., *crop)], axis=-self.maps.ndim)


def noncartesian_maps(kspace, trajectory, image_shape: tuple[int, ...], *, calib: int = 24, dcf=None,
                      width: int = 4, backend: str | None = None) -> jax.Array:
    """ESPIRiT coil maps from non-Cartesian k-space, complex64 ``(coils, *image_shape)``.

    The k-space centre (samples with ``max_d |k_d| < calib / 2``, a square block, so that the
    Cartesian calibration block has no empty corners) is gridded onto a ``calib^ndim`` Cartesian
    k-space: the DCF-weighted adjoint NUFFT onto a ``calib^ndim`` image, then ``fftc``. That block
    is placed at the centre of an otherwise empty ``image_shape`` k-space and handed to
    :func:`physics.coil_maps.espirit` with ``calib=(calib,) * ndim`` (its other options at their
    defaults).

    Args:
        kspace: complex ``(coils, *samples)``.
        trajectory: ``(*samples, ndim)`` cycles/FOV for ``image_shape``.
        image_shape: the maps' spatial shape.
        calib: calibration block size per axis, ``8 <= calib <= min(image_shape)``.
        dcf: ``(*samples)`` density compensation; ``None``: :func:`physics.trajectory.pipe_menon_dcf`
            of the calibration samples on the ``calib`` grid.
        width, backend: of the gridding NUFFT.

    Raises:
        ShapeError: kspace, trajectory and dcf do not fit together.
        InvalidDataError: bad trajectory or calib, no samples in the calibration region, NaN data.
    """
    image_shape = tuple(int(n) for n in image_shape)
    k = np.asarray(check_trajectory(trajectory, image_shape, "noncartesian_maps"))
    kspace = np.asarray(kspace)
    samples = k.shape[:-1]
    if kspace.ndim != len(samples) + 1 or kspace.shape[1:] != samples:
        raise ShapeError(f"noncartesian_maps: kspace must be (coils, *samples) with samples {samples}, "
                         f"got {kspace.shape}")
    if not np.all(np.isfinite(kspace)):
        raise InvalidDataError("noncartesian_maps: kspace contains NaN or Inf values")
    if int(calib) != calib or not 8 <= calib <= min(image_shape):
        raise InvalidDataError(f"noncartesian_maps: calib must be an integer in [8, {min(image_shape)}], got {calib}")
    if dcf is not None and np.shape(dcf) != samples:
        raise ShapeError(f"noncartesian_maps: dcf must have the sample shape {samples}, got {np.shape(dcf)}")
    inside = np.all(np.abs(k) < calib / 2, axis=-1)
    if not inside.any():
        raise InvalidDataError(f"noncartesian_maps: no samples within the {calib}-wide calibration block")
    ndim, block = len(image_shape), (int(calib),) * len(image_shape)
    centre = k[inside]
    w = pipe_menon_dcf(centre, block, width=width, backend=backend) if dcf is None else np.asarray(dcf)[inside]
    grid_op = NUFFT(centre, block, width=width, backend=backend)
    calib_kspace = fftc(grid_op.adjoint(jnp.asarray(kspace[:, inside] * w, jnp.complex64)), ndim)
    pad = [(0, 0)] + [(n // 2 - c // 2, n - c - (n // 2 - c // 2)) for n, c in zip(image_shape, block)]
    return espirit(jnp.pad(calib_kspace, pad), calib=block)

