"""Trained denoisers in use: enhancement of images and raw data, and plug-and-play reconstruction.

A denoiser is a model saved by :func:`recon.train.save_model` whose config names one of
:data:`DENOISER_MODELS`; it is called as ``model(x)`` on an image batch ``(B, ny, nx)``, float32
(CT, or MRI magnitude) or complex64 (MRI), and returns the same shape and dtype. Which of the two
a model takes is found by tracing it (:func:`takes_complex`); :func:`denoise` adapts the images:
a real model enhances the magnitude of a complex image and keeps its phase, a complex model
enhances a magnitude image as a complex one with zero phase and returns the magnitude.

Enhancement (``recon enhance``, :func:`enhance_file`):

- image files (``reconstruction`` of ``recon reconstruct``, or a CT ``image`` file with
  ``pixel_size_mm``): every slice is enhanced; no data, so the trust fields hold only the
  departure map from the input image (``trust/departure``);
- fastMRI raw files (``kspace``, ``mask``), per slice (:func:`enhance_kspace`): ESPIRiT maps,
  zero-filled image ``A^H y`` (coil-combined with the maps), enhanced, then data consistency
  (:func:`recon.pnp.replace_measured`): by default weighed by the noise of the data and the
  model's expected error (``calibration.json`` of ``recon train``), so that the image fits the
  measured k-space to within its noise; or exact; and the trust report against ``A^H y``;
- 2D CT files (``sinogram`` and geometry, :func:`enhance_ct`): FBP (ramp), enhanced, and the trust
  report against the FBP, with the noise of the file's counts or ``I0`` (:func:`recon.trust.ct_sigma`).

Plug-and-play (``recon reconstruct --method pnp-admm|pnp-fista --denoiser DIR``):
:func:`reconstruct_pnp` (a Cartesian slice on ``MultiCoilMRI`` with ESPIRiT maps) and
:func:`reconstruct_pnp_ct` (2D CT slices on the projector scaled to norm 1), each with its trust
report.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import h5py
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from physics.ct_geometry import CTGeometry
from physics.errors import FileFormatError, InvalidDataError, ReconError, ShapeError
from physics.linop import LinearOperator
from physics.mri import MultiCoilMRI
from recon.fbp import fbp
from recon.io import (CTData, is_ct, is_noncartesian, open_raw, read_ct, read_ct_image, read_images,
                      write_reconstruction)
from recon.learned import masked_slice, normalised_ct_operator
from recon.pipeline import ReconOptions, coil_maps
from recon.pnp import noise_weight, pnp_admm, pnp_fista, replace_measured
from recon.train import load_model
from recon.trust import (TrustReport, ct_sigma, ct_trust, departure_map, kspace_sigma, sense_trust,
                         stack_reports, trust_report, write_trust)
from recon.unrolled import DENOISERS, build_model

__all__ = ["DATA_CONSISTENCY", "DENOISER_MODELS", "PNP_METHODS", "Enhanced", "denoise", "enhance_ct",
           "enhance_file", "enhance_kspace", "load_denoiser", "reconstruct_pnp", "reconstruct_pnp_ct",
           "takes_complex"]

PathLike = str | os.PathLike
Progress = Callable[[], None] | None

#: ``config["model"]`` of the image denoisers (:func:`recon.unrolled.build_model`).
DENOISER_MODELS = tuple(cls.config_type.model for cls in DENOISERS)
#: Data consistency after enhancing raw MRI data (:func:`enhance_kspace`).
DATA_CONSISTENCY = ("noise", "exact", "none")
#: ``recon reconstruct --method`` names of plug-and-play, and their defaults.
PNP_METHODS = ("pnp-admm", "pnp-fista")
PNP_ITERATIONS, PNP_RHO = 30, 0.05


class Enhanced(NamedTuple):
    """An enhanced stack: ``image`` and the ``classical`` reconstruction it started from, both
    ``(slices, ny, nx)`` (complex64 for MRI raw data, float32 otherwise), and the trust ``report``."""

    image: np.ndarray
    classical: np.ndarray
    report: TrustReport


# ------------------------------------------------------------------------------------------------
# the model
# ------------------------------------------------------------------------------------------------
def load_denoiser(directory: PathLike) -> tuple[nnx.Module, dict[str, Any]]:
    """``(model, config)`` of the denoiser saved in ``directory`` (``weights.msgpack`` + ``config.json``).

    Raises:
        FileFormatError: a file missing, unreadable or corrupt.
        InvalidDataError: a model that is not an image denoiser (e.g. an unrolled network), weights
            of another architecture than the config.
    """
    seen: dict[str, Any] = {}

    def build(config: dict, rngs: nnx.Rngs) -> nnx.Module:
        if config.get("model") not in DENOISER_MODELS:
            raise InvalidDataError(f"{Path(directory) / 'config.json'}: a {config.get('model')!r} model is "
                                   f"not an image denoiser; expected one of {DENOISER_MODELS} (a "
                                   "generator written by recon train)")
        seen.update(config)
        return build_model(config, rngs)

    model = load_model(directory, build)
    return model, dict(seen)


def takes_complex(model: nnx.Module, image_shape: tuple[int, int]) -> bool:
    """Whether ``model`` takes complex64 images ``(B, *image_shape)`` (False: it takes float32 ones),
    found by tracing it on a batch of one (nothing is computed).

    Raises:
        ShapeError: the model takes neither, or returns another shape.
    """
    shape = (1, *(int(n) for n in image_shape))
    errors = []
    for dtype in (jnp.float32, jnp.complex64):
        try:
            out = nnx.eval_shape(lambda m, x: m(x), model, jax.ShapeDtypeStruct(shape, dtype))
        except (ReconError, TypeError, ValueError) as e:
            errors.append(f"{np.dtype(dtype).name}: {e}")
            continue
        if tuple(out.shape) != shape:
            raise ShapeError(f"the denoiser returns shape {tuple(out.shape)} for images {shape}, "
                             "expected the same shape")
        return dtype == jnp.complex64
    raise ShapeError(f"the denoiser takes no images of shape {shape[1:]} ({'; '.join(errors)})")


def _network(model: nnx.Module, x: jax.Array, complex_model: bool) -> jax.Array:
    """``model`` on images ``x (B, ny, nx)`` of either dtype, returning ``x``'s dtype (module docstring)."""
    if complex_model:
        out = model(x.astype(jnp.complex64))
        return out if jnp.iscomplexobj(x) else jnp.abs(out)
    if jnp.iscomplexobj(x):
        return model(jnp.abs(x)) * jnp.exp(1j * jnp.angle(x)).astype(jnp.complex64)
    return model(x.astype(jnp.float32))


@partial(nnx.jit, static_argnames=("complex_model",))
def _apply(model: nnx.Module, x: jax.Array, complex_model: bool) -> jax.Array:
    return _network(model, x, complex_model)


def denoise(model: nnx.Module, images: np.ndarray, *, real_only: bool = False,
            progress: Progress = None) -> np.ndarray:
    """``model`` on every slice of ``images (slices, ny, nx)``, float32 or complex64; same shape and dtype.

    ``real_only``: refuse a model of complex images (the images are real physics, e.g. CT).

    Raises:
        ShapeError: images not ``(slices, ny, nx)``, or a model that does not take them.
        InvalidDataError: a complex model with ``real_only``.
    """
    images = np.asarray(images)
    if images.ndim != 3 or 0 in images.shape:
        raise ShapeError(f"expected images (slices, ny, nx), got shape {images.shape}")
    complex_model = takes_complex(model, images.shape[-2:])
    if complex_model and real_only:
        raise InvalidDataError("the denoiser takes complex (MRI) images; these are real CT images")
    dtype = np.complex64 if np.iscomplexobj(images) else np.float32
    out = []
    for x in images:
        out.append(np.asarray(_apply(model, jnp.asarray(x, dtype)[None], complex_model))[0])
        if progress is not None:
            progress()
    return np.stack(out)


# ------------------------------------------------------------------------------------------------
# enhancement of raw data
# ------------------------------------------------------------------------------------------------
def _cartesian(kspace: np.ndarray, mask: np.ndarray, options: ReconOptions | None,
               whitening: np.ndarray | None) -> tuple[MultiCoilMRI, jax.Array]:
    """``(A, y)``: ``MultiCoilMRI`` with the maps of ``options`` (default ESPIRiT) and the masked,
    optionally pre-whitened k-space of one slice ``(coils, ky, kx)``."""
    y, mask = masked_slice(kspace, mask, whitening)
    maps = coil_maps(np.asarray(y), mask, options or ReconOptions())
    return MultiCoilMRI(maps, jnp.asarray(mask, jnp.float32)), y


def enhance_kspace(model: nnx.Module, kspace: np.ndarray, mask: np.ndarray, *,
                   data_consistency: str = "noise", relative_error: float | None = None,
                   sigma: float | None = None) -> Enhanced:
    """Enhance one Cartesian slice ``kspace (coils, ky, kx)`` (boolean ``mask`` broadcastable to
    ``(ky, kx)``): the zero-filled ``A^H y`` on ESPIRiT maps, ``model`` on it, then data
    consistency (:data:`DATA_CONSISTENCY`): ``"noise"`` the maximum-a-posteriori image of the
    noise level and the model's ``relative_error`` (:func:`recon.pnp.noise_weight`), ``"exact"``
    the image nearest to it whose k-space fits the measured samples best, ``"none"``.
    The report has no slice axis; ``sigma`` is the noise per k-space sample (default:
    :func:`recon.trust.kspace_sigma`)."""
    _check_consistency(data_consistency, relative_error)
    A, y = _cartesian(kspace, mask, None, None)
    classical = A.adjoint(y)
    x = jnp.asarray(denoise(model, np.asarray(classical)[None])[0])
    sigma = kspace_sigma(y) if sigma is None else sigma
    if data_consistency != "none":
        lam = 0.0 if data_consistency == "exact" else noise_weight(sigma, x, relative_error)
        x, _ = replace_measured(x, y, A.maps, A.mask, lam=lam)
    report = trust_report(A, y, x, sigma=sigma, classical=classical)
    return Enhanced(np.asarray(x, np.complex64)[None], np.asarray(classical, np.complex64)[None], report)


def _check_consistency(mode: str, relative_error: float | None) -> None:
    if mode not in DATA_CONSISTENCY:
        raise InvalidDataError(f"data consistency {mode!r}: expected one of {DATA_CONSISTENCY}")
    if mode == "noise" and relative_error is None:
        raise InvalidDataError("noise-weighted data consistency needs the model's relative error "
                               "(calibration.json, written by recon train); use 'exact' or 'none'")


def enhance_ct(model: nnx.Module, data: CTData, *, progress: Progress = None) -> Enhanced:
    """Enhance the FBP (ramp filter) of every 2D slice of a CT file; the report against the FBP
    with the noise of the file's counts or ``I0`` (:func:`recon.trust.ct_sigma`; else estimated)."""
    _check_2d(data.geometry)
    classical = np.asarray(fbp(data.sinogram, data.geometry), np.float32)
    image = denoise(model, classical, real_only=True, progress=progress)
    report = ct_trust(image, data.sinogram, data.geometry, sigma=ct_sigma(data), classical=classical)
    return Enhanced(image, classical, report)


def _check_2d(geometry: CTGeometry) -> None:
    if geometry.kind == "cone":
        raise InvalidDataError("denoisers enhance 2D slices: this CT file is a cone-beam scan; "
                               "reconstruct it (recon reconstruct) and enhance the image file")


# ------------------------------------------------------------------------------------------------
# files
# ------------------------------------------------------------------------------------------------
def _datasets(path: PathLike) -> set[str]:
    with h5py.File(path, "r") as f:
        return set(f.keys())


def enhance_file(path: PathLike, output: PathLike, model: nnx.Module, *, data_consistency: str = "noise",
                 relative_error: float | None = None, attrs: dict[str, Any] | None = None,
                 progress: Callable[[int], Callable[[], None]] | None = None) -> dict[str, Any]:
    """Enhance the images of ``path`` and write them to ``output`` atomically (module docstring).

    Args:
        path: a CT file (``sinogram``), a fastMRI raw file (``kspace``), a reconstruction file
            (``reconstruction``) or a CT image file (``image`` with ``pixel_size_mm``).
        output: the HDF5 written: ``reconstruction`` float32 (slices, ny, nx) (magnitudes),
            ``classical`` (raw inputs: the zero-filled / FBP images enhanced) and the trust fields
            (:func:`recon.trust.trust_fields`; image inputs: ``trust/departure`` only).
        model: a denoiser (:func:`load_denoiser`).
        data_consistency, relative_error: MRI raw data: the data consistency of :func:`enhance_kspace`
            and the model's relative error (:func:`recon.train.load_calibration`).
        attrs: more root attributes of the output.
        progress: ``progress(total)`` returns the function called after each slice.

    Returns:
        ``{"input": kind, "shape": (slices, ny, nx), "suspicious": [slice indices]}``, kind one of
        ``"ct-raw"``, ``"mri-raw"``, ``"reconstruction"``, ``"ct-image"``.

    Raises:
        FileFormatError: none of the datasets above; ShapeError, InvalidDataError: see
        :func:`denoise`, :func:`recon.io.read_ct`, :func:`recon.io.open_raw`.
    """
    tick = (lambda n: None) if progress is None else progress
    meta = {**(attrs or {}), "input": str(path)}
    _check_consistency(data_consistency, relative_error)
    if is_ct(path):
        data = read_ct(path)
        _check_2d(data.geometry)
        out = enhance_ct(model, data, progress=tick(len(data.sinogram)))
        meta |= {"units": "mm^-1", "pixel_size_mm": data.geometry.pixel_size, "classical": "fbp"}
        return _write_raw(output, path, out, "ct-raw", meta)
    if is_noncartesian(path):
        raise InvalidDataError(f"{path} holds non-Cartesian k-space: reconstruct it first (recon "
                               "reconstruct) and enhance the image file")
    found = _datasets(path)
    if "kspace" in found:
        with open_raw(path) as raw:
            sigma = raw.attrs.get("noise_sigma")
            step = tick(raw.num_slices)
            slices = []
            for i in range(raw.num_slices):
                slices.append(enhance_kspace(model, raw.kspace(i), raw.mask(i), sigma=sigma,
                                             data_consistency=data_consistency,
                                             relative_error=relative_error))
                if step is not None:
                    step()
        out = Enhanced(np.concatenate([s.image for s in slices]),
                       np.concatenate([s.classical for s in slices]),
                       stack_reports([s.report for s in slices]))
        meta |= {"classical": "zero-filled", "data_consistency": data_consistency}
        if data_consistency == "noise":
            meta["relative_error"] = relative_error
        return _write_raw(output, path, out, "mri-raw", meta)
    if "reconstruction" in found or "image" in found:
        if "reconstruction" in found:
            kind, images = "reconstruction", read_images(path, "reconstruction")
            with h5py.File(path, "r") as f:
                keep = {k: f.attrs[k] for k in ("units", "pixel_size_mm") if k in f.attrs}
        else:
            images, pixel = read_ct_image(path)
            kind, keep = "ct-image", {"units": "mm^-1", "pixel_size_mm": pixel}
        ct = keep.get("units") == "mm^-1"
        enhanced = denoise(model, images, real_only=ct, progress=tick(len(images)))
        meta |= {**keep, "trust_data": "none: the input holds images, not the data they were "
                                       "reconstructed from; trust/departure is from the input"}
        write_reconstruction(output, enhanced, attrs=meta, input_path=path,
                             extra={"trust/departure": np.asarray(departure_map(enhanced, images))})
        return {"input": kind, "shape": enhanced.shape, "suspicious": []}
    raise FileFormatError(f"{path}: no dataset 'sinogram', 'kspace', 'reconstruction' or 'image' to "
                          f"enhance (found: {sorted(found) or 'nothing'})")


def _write_raw(output: PathLike, path: PathLike, out: Enhanced, kind: str,
               meta: dict[str, Any]) -> dict[str, Any]:
    image = np.abs(out.image).astype(np.float32)
    write_trust(output, image, out.report, attrs=meta, input_path=path,
                extra={"classical": np.abs(out.classical).astype(np.float32)})
    return {"input": kind, "shape": image.shape,
            "suspicious": [int(i) for i in np.flatnonzero(np.asarray(out.report.suspicious).reshape(-1))]}


# ------------------------------------------------------------------------------------------------
# plug-and-play with a denoiser
# ------------------------------------------------------------------------------------------------
def _check_pnp(method: str, iterations: int, rho: float, step: float | None) -> None:
    if method not in PNP_METHODS:
        raise InvalidDataError(f"unknown plug-and-play method {method!r}; expected one of {PNP_METHODS}")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise InvalidDataError(f"plug-and-play: iterations must be a positive integer, got {iterations!r}")
    if not (np.isfinite(rho) and rho > 0) or (step is not None and not (np.isfinite(step) and step > 0)):
        raise InvalidDataError(f"plug-and-play: rho and step must be > 0, got {rho!r} and {step!r}")


@partial(nnx.jit, static_argnames=("method", "iterations", "complex_model"))
def _pnp(model: nnx.Module, A: LinearOperator, y: jax.Array, rho: jax.Array, step: jax.Array | None, *,
         method: str, iterations: int, complex_model: bool) -> jax.Array:
    def denoiser(v: jax.Array) -> jax.Array:
        return _network(model, v[None], complex_model)[0]

    if method == "pnp-admm":
        return pnp_admm(A, y, denoiser, rho=rho, iterations=iterations)[0]
    return pnp_fista(A, y, denoiser, iterations=iterations, step=step)[0]


def reconstruct_pnp(model: nnx.Module, kspace: np.ndarray, mask: np.ndarray, *, method: str = "pnp-admm",
                    iterations: int = PNP_ITERATIONS, rho: float = PNP_RHO, step: float | None = None,
                    options: ReconOptions | None = None, whitening: np.ndarray | None = None,
                    sigma: float | None = None) -> tuple[np.ndarray, TrustReport]:
    """PnP reconstruction of one Cartesian slice ``kspace (coils, ky, kx)`` with ``model`` as the denoiser.

    :func:`recon.pnp.pnp_admm` (penalty ``rho``) or :func:`recon.pnp.pnp_fista` (gradient
    ``step``, default ``1 / ||A||^2``) on ``MultiCoilMRI`` with the coil maps of ``options``
    (default ESPIRiT), optionally pre-whitened. Returns the magnitude image ``(ny, nx)`` float32
    and its :func:`recon.trust.sense_trust` report (noise ``sigma`` per sample, default estimated).
    """
    _check_pnp(method, iterations, rho, step)
    A, y = _cartesian(kspace, mask, options, whitening)
    complex_model = takes_complex(model, A.in_shape)
    x = _pnp(model, A, y, rho, step, method=method, iterations=iterations, complex_model=complex_model)
    return np.abs(np.asarray(x)).astype(np.float32), sense_trust(A, y, x, sigma=sigma)


def reconstruct_pnp_ct(model: nnx.Module, sinogram: np.ndarray, geometry: CTGeometry, *,
                       method: str = "pnp-admm", iterations: int = PNP_ITERATIONS, rho: float = PNP_RHO,
                       step: float | None = None, sigma: float | np.ndarray | None = None,
                       progress: Progress = None) -> tuple[np.ndarray, TrustReport]:
    """PnP reconstruction of 2D sinograms ``(slices, angles, detectors)`` on the projector of
    ``geometry`` scaled to norm 1 (:func:`recon.learned.normalised_ct_operator`), so ``rho`` and
    ``step`` mean what they mean for MRI and the images are in mm^-1. Returns ``(slices, ny, nx)``
    float32 and the :func:`recon.trust.ct_trust` report against FBP."""
    _check_pnp(method, iterations, rho, step)
    _check_2d(geometry)
    if takes_complex(model, geometry.image_shape):
        raise InvalidDataError("the denoiser takes complex (MRI) images; CT images are real")
    A = normalised_ct_operator(geometry)
    images = []
    for y in np.asarray(sinogram, np.float32):
        x = _pnp(model, A, jnp.asarray(y) * A.factor, rho, step, method=method, iterations=iterations,
                 complex_model=False)
        images.append(np.asarray(x, np.float32))
        if progress is not None:
            progress()
    images = np.stack(images)
    return images, ct_trust(images, sinogram, geometry, sigma=sigma)
