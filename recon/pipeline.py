"""From raw multi-coil k-space to images: the reconstruction methods behind ``recon reconstruct``.

One slice at a time: optional noise pre-whitening, coil maps from the calibration region
(ESPIRiT or the ACS low-pass estimate), then the method. The k-space scale does not matter:
ESPIRiT thresholds are relative, CG-SENSE tolerances are relative and its Tikhonov weight is
relative to the normalised maps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np

from physics.coil_maps import acs_maps, espirit
from physics.errors import InvalidDataError
from physics.linop import LinearOperator, Scaled
from physics.mri import MultiCoilMRI
from physics.noncartesian import NonCartesianMRI, noncartesian_maps
from physics.nufft import NUFFT
from physics.trajectory import pipe_menon_dcf
from physics.noise import prewhiten
from recon.cg import cgls
from recon.cs import admm_tv, l1_wavelet, tv
from recon.power import operator_norm
from recon.sense import rss, zero_filled

METHODS = ("zero-filled", "sense", "l1-wavelet", "tv", "admm-tv")
MAPS = ("espirit", "acs")
# Per method: (solver, default lambda, default iterations). Lambdas of the compressed-sensing
# methods are fractions of the zero-filled image's peak (see recon.cs).
_SOLVERS = {
    "sense": (cgls, 0.01, 20),
    "l1-wavelet": (l1_wavelet, 0.004, 80),
    "tv": (tv, 0.004, 60),
    "admm-tv": (admm_tv, 0.004, 30),
}


@dataclasses.dataclass(frozen=True)
class ReconOptions:
    """Parameters of a reconstruction (stored as attributes of the output file).

    method: one of :data:`METHODS`.
    maps: coil-map estimate, one of :data:`MAPS`.
    iterations: iteration limit; ``None``: the method's default (SENSE 20, l1-wavelet 40,
        tv 60, admm-tv 30).
    lam: regularisation weight; ``None``: the method's default. SENSE: Tikhonov weight relative
        to the normalised encoding operator (0.01); l1-wavelet, tv and admm-tv (0.004):
        fraction of the zero-filled image peak (:mod:`recon.cs`).
    tol: relative tolerance (CG residual; relative change for the CS solvers, 0 = run all).
    calib: calibration block size ``(ny, nx)``; ``None`` finds the largest fully sampled centred
        block (capped at 32 per axis).
    kernel: ESPIRiT kernel width; ``None`` adapts it to the block (:func:`kernel_width`).
    crop: ESPIRiT eigenvalue crop (BART's 0.8): maps are zero outside the object, a support
        constraint that helps unfolding at high acceleration; 0 keeps maps (and noise) everywhere.

    Defaults were chosen on the real multi-coil data in ``shared/data`` (2-8 coils, R = 2-4,
    retrospective equispaced masks), weighing fastMRI PSNR and SSIM against the fully sampled RSS:
    few coils need ``lam`` ~0.02, many coils at high R prefer less; 0.01 sits between.
    """

    method: str = "sense"
    maps: str = "espirit"
    iterations: int | None = None
    lam: float | None = None
    tol: float = 1e-4
    calib: tuple[int, int] | None = None
    kernel: int | None = None
    crop: float = 0.8

    def __post_init__(self):
        if self.method not in METHODS:
            raise InvalidDataError(f"unknown method {self.method!r}; expected one of {METHODS}")
        if self.maps not in MAPS:
            raise InvalidDataError(f"unknown coil-map estimate {self.maps!r}; expected one of {MAPS}")
        if ((self.iterations is not None and self.iterations < 1) or (self.lam is not None and self.lam < 0)
                or self.tol < 0 or not 0 <= self.crop < 1):
            raise InvalidDataError(
                f"need iterations >= 1, lambda >= 0, tol >= 0, 0 <= crop < 1; got {self.iterations}, "
                f"{self.lam}, {self.tol}, {self.crop}"
            )


def coil_maps(kspace: np.ndarray, mask: np.ndarray, options: ReconOptions) -> jnp.ndarray:
    """Coil sensitivities ``(coils, ny, nx)`` of one slice from its calibration region."""
    if options.maps == "acs":
        return acs_maps(kspace, calib=options.calib, mask=mask)
    return espirit(kspace, calib=options.calib, mask=mask, kernel=options.kernel, crop=options.crop)


def _solve(A: LinearOperator, y: jax.Array, options: ReconOptions) -> np.ndarray:
    """Run ``options.method`` (not zero-filled) on ``A x = y``; ``A`` has norm about 1."""
    solver, lam, iterations = _SOLVERS[options.method]
    lam = lam if options.lam is None else options.lam
    iterations = iterations if options.iterations is None else options.iterations
    if options.method == "sense":
        image, _ = solver(A, y, lam=lam, maxiter=iterations, tol=options.tol)
    elif options.method == "l1-wavelet":  # random cycle spinning from a fixed seed: deterministic
        image, _ = solver(A, y, lam=lam, iterations=iterations, key=jax.random.key(0))
    else:
        image, _ = solver(A, y, lam=lam, iterations=iterations)
    return np.abs(np.asarray(image)).astype(np.float32)


def reconstruct_slice(kspace: np.ndarray, mask: np.ndarray, options: ReconOptions,
                      whitening: np.ndarray | None = None) -> np.ndarray:
    """Magnitude image ``(ny, nx)`` float32 of one slice ``kspace (coils, ky, kx)``.

    ``mask`` is boolean and broadcastable to ``(ky, kx)``; ``whitening`` an optional
    ``(coils, coils)`` pre-whitening matrix (:func:`physics.noise.whitening_matrix`).
    """
    mask = np.broadcast_to(np.asarray(mask, bool), kspace.shape[-2:])
    kspace = jnp.asarray(kspace, jnp.complex64) * mask
    if whitening is not None:
        kspace = prewhiten(kspace, whitening)
    if options.method == "zero-filled":
        return np.asarray(zero_filled(kspace), np.float32)
    maps = coil_maps(np.asarray(kspace), mask, options)
    return _solve(MultiCoilMRI(maps, jnp.asarray(mask, jnp.float32)), kspace, options)


def reconstruct_noncartesian_slice(kspace: np.ndarray, trajectory: np.ndarray,
                                   image_shape: tuple[int, ...], options: ReconOptions, *,
                                   dcf: np.ndarray | None = None,
                                   whitening: np.ndarray | None = None) -> np.ndarray:
    """Magnitude image ``image_shape`` float32 of one non-Cartesian slice ``kspace (coils, *samples)``.

    ``trajectory (*samples, ndim)`` is in cycles per field of view (:mod:`physics.nufft`); ``dcf``
    defaults to Pipe-Menon's. zero-filled is the DCF-weighted gridding (adjoint NUFFT, RSS);
    the other methods run on :class:`physics.noncartesian.NonCartesianMRI` (Toeplitz normal
    operator, maps from the gridded k-space centre by ESPIRiT) scaled to norm 1, so their ``lam``
    means what it means for Cartesian data. The model is unweighted (maximum likelihood for white
    noise); the DCF serves only gridding and calibration.
    """
    ndim = len(image_shape)
    kspace = jnp.asarray(kspace, jnp.complex64)
    if whitening is not None:
        kspace = prewhiten(kspace, whitening, coil_axis=-np.ndim(trajectory))
    if dcf is None:
        dcf = pipe_menon_dcf(trajectory, image_shape)
    if options.method == "zero-filled":
        coil_images = NUFFT(trajectory, image_shape).adjoint(jnp.asarray(dcf) * kspace)
        return np.asarray(rss(coil_images, axis=-ndim - 1), np.float32)
    if options.maps != "espirit":
        raise InvalidDataError(f"coil maps {options.maps!r} need Cartesian k-space; non-Cartesian data "
                               "uses ESPIRiT on the gridded k-space centre (--maps espirit)")
    calib = 24 if options.calib is None else min(options.calib)
    maps = noncartesian_maps(kspace, trajectory, image_shape, calib=min(calib, *image_shape), dcf=dcf)
    A = NonCartesianMRI(maps, trajectory)
    norm = operator_norm(A)
    return _solve(Scaled(A, 1 / norm), kspace / norm, options)
