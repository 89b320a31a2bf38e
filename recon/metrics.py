"""Image-quality metrics as the fastMRI challenge defines them (NMSE, PSNR, SSIM), in JAX.

All three compare a reference ``gt`` with a reconstruction ``pred``, real magnitudes of the same
shape, over a whole volume (fastMRI ``fastmri/evaluate.py``):

- ``nmse = ||gt - pred||^2 / ||gt||^2`` over every voxel;
- ``psnr = 20 log10(maxval) - 10 log10(mean((gt - pred)^2))`` in dB, ``maxval = max(gt)``;
- ``ssim``: scikit-image's ``structural_similarity`` with its defaults (7x7 uniform window,
  ``K1 = 0.01``, ``K2 = 0.03``, sample covariance, mean over the valid region where the window
  lies inside the image) computed per slice with ``data_range = maxval`` and averaged over slices.

The data range is the maximum of the reference *volume*, not of each slice. Everything is pure
JAX: ``jit``-able and differentiable (``ssim`` doubles as a training loss). Computation runs in
the inputs' float dtype (float32 by default); float32 results agree with float64 scikit-image to
~1e-6 relative (SSIM's local variances come from images centred per slice, which removes most
of the cancellation in ``E[x^2] - E[x]^2``).

Errors: complex input -> ``InvalidDataError`` (pass magnitudes); different shapes ->
``ShapeError``; an empty, non-finite or all-zero reference -> ``InvalidDataError``. NaN in
``pred`` is not an error: the metrics come out NaN. Value checks run eagerly only; under ``jit``
only the shape and dtype checks run (values are not known there).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from physics.errors import InvalidDataError, ShapeError

__all__ = ["nmse", "psnr", "ssim", "evaluate"]


def _as_real(x: jax.Array, name: str) -> jax.Array:
    """``x`` as a floating-point JAX array (float32 unless already float); complex is refused."""
    if jnp.iscomplexobj(x):
        raise InvalidDataError(
            f"{name} is complex ({jnp.result_type(x)}); metrics compare real magnitudes: "
            f"pass jnp.abs({name}) (or a root-sum-of-squares image)"
        )
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    return x


def _check(gt: jax.Array, pred: jax.Array) -> tuple[jax.Array, jax.Array]:
    gt, pred = _as_real(gt, "gt"), _as_real(pred, "pred")
    if gt.shape != pred.shape:
        raise ShapeError(f"gt has shape {tuple(gt.shape)} but pred has shape {tuple(pred.shape)}; "
                         "expected equal shapes")
    if gt.size == 0:
        raise InvalidDataError(f"gt is empty (shape {tuple(gt.shape)}); expected at least one voxel")
    if not isinstance(gt, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(gt))):
        raise InvalidDataError("gt contains NaN or Inf values; expected a finite reference image")
    dtype = jnp.result_type(gt, pred)
    return gt.astype(dtype), pred.astype(dtype)


def _data_range(gt: jax.Array, maxval: float | jax.Array | None) -> jax.Array:
    """``maxval``, or the maximum of the reference volume; refuses a known non-positive range."""
    r = jnp.max(gt) if maxval is None else jnp.asarray(maxval, dtype=gt.dtype)
    if not isinstance(r, jax.core.Tracer) and bool(jnp.any(r <= 0)):
        what = "max(gt)" if maxval is None else "maxval"
        raise InvalidDataError(f"{what} = {np.asarray(r)} is not a positive data range; "
                               "expected a reference with positive values or an explicit maxval > 0")
    return r


# -- jitted kernels (the public functions check their inputs eagerly, then call these) ---------
def _box_mean(x: jax.Array, w: int) -> jax.Array:
    """Mean over every ``w x w`` window lying inside the last two axes (``valid`` region).

    Separable sum of shifted views: ``(..., ny, nx) -> (..., ny - w + 1, nx - w + 1)``. Each
    output is a sum of ``w^2`` terms (no running cumulative sum), so float32 stays accurate.
    """
    ny, nx = x.shape[-2] - w + 1, x.shape[-1] - w + 1
    rows = sum(x[..., i:i + ny, :] for i in range(w))
    return sum(rows[..., :, j:j + nx] for j in range(w)) / (w * w)


@jax.jit
def _nmse(gt: jax.Array, pred: jax.Array, den: jax.Array) -> jax.Array:
    return jnp.sum((gt - pred) ** 2) / den


@jax.jit
def _psnr(gt: jax.Array, pred: jax.Array, r: jax.Array) -> jax.Array:
    return 20.0 * jnp.log10(r) - 10.0 * jnp.log10(jnp.mean((gt - pred) ** 2))


@partial(jax.jit, static_argnums=3)
def _ssim(gt: jax.Array, pred: jax.Array, r: jax.Array, win_size: int, k1: float, k2: float) -> jax.Array:
    r = r[..., None, None]
    c1, c2 = (k1 * r) ** 2, (k2 * r) ** 2
    cov_norm = win_size**2 / (win_size**2 - 1)  # sample covariance, as scikit-image
    # Second moments from images centred on their per-slice means: (co)variances are
    # shift-invariant, and the centring removes most of the float32 cancellation in E[x^2] - E[x]^2.
    gm = jnp.mean(gt, axis=(-2, -1), keepdims=True)
    pm = jnp.mean(pred, axis=(-2, -1), keepdims=True)
    x, y = gt - gm, pred - pm
    mx, my = _box_mean(x, win_size), _box_mean(y, win_size)
    vx = cov_norm * (_box_mean(x * x, win_size) - mx * mx)
    vy = cov_norm * (_box_mean(y * y, win_size) - my * my)
    vxy = cov_norm * (_box_mean(x * y, win_size) - mx * my)
    ux, uy = mx + gm, my + pm  # local means of the uncentred images
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return jnp.mean(jnp.mean(s, axis=(-2, -1)))


def nmse(gt: jax.Array, pred: jax.Array) -> jax.Array:
    """Normalised mean squared error ``||gt - pred||^2 / ||gt||^2`` over the whole array.

    Args:
        gt, pred: real arrays of the same shape (any rank).

    Returns:
        () float, 0 for identical inputs; NaN if ``pred`` holds NaN.
    """
    gt, pred = _check(gt, pred)
    den = jnp.sum(gt * gt)
    if not isinstance(den, jax.core.Tracer) and float(den) == 0.0:
        raise InvalidDataError("gt is all zeros; NMSE (normalised by ||gt||^2) is undefined")
    return _nmse(gt, pred, den)


def psnr(gt: jax.Array, pred: jax.Array, maxval: float | jax.Array | None = None) -> jax.Array:
    """Peak signal-to-noise ratio in dB, ``20 log10(maxval) - 10 log10(mse)``.

    Args:
        gt, pred: real arrays of the same shape (any rank).
        maxval: data range; default ``max(gt)`` over the whole volume (fastMRI).

    Returns:
        () float in dB; ``inf`` for identical inputs, NaN if ``pred`` holds NaN.
    """
    gt, pred = _check(gt, pred)
    r = _data_range(gt, maxval)
    return _psnr(gt, pred, r)


def ssim(
    gt: jax.Array,
    pred: jax.Array,
    maxval: float | jax.Array | None = None,
    *,
    win_size: int = 7,
    k1: float = 0.01,
    k2: float = 0.03,
) -> jax.Array:
    """Structural similarity, per slice with a uniform window, averaged over slices (fastMRI).

    Equals ``mean_s skimage.metrics.structural_similarity(gt[s], pred[s], data_range=maxval)``.

    Args:
        gt, pred: real arrays ``(..., ny, nx)`` of the same shape; leading axes are slices.
        maxval: data range ``R`` (``C1 = (k1 R)^2``, ``C2 = (k2 R)^2``); default ``max(gt)`` over
            the whole volume. An array broadcastable to ``gt.shape[:-2]`` gives one range per
            slice (e.g. per example of a training batch).
        win_size: odd side of the square window, at most ``min(ny, nx)``.
        k1, k2: stabilising constants.

    Returns:
        () float, 1 for identical inputs; NaN if ``pred`` holds NaN.
    """
    gt, pred = _check(gt, pred)
    if gt.ndim < 2 or win_size % 2 != 1 or win_size < 3 or min(gt.shape[-2:]) < win_size:
        raise ShapeError(
            f"ssim needs images (..., ny, nx) with ny, nx >= win_size and an odd win_size >= 3; "
            f"got shape {tuple(gt.shape)} and win_size={win_size}"
        )
    return _ssim(gt, pred, _data_range(gt, maxval), win_size, k1, k2)


def evaluate(gt: jax.Array, pred: jax.Array) -> dict[str, float]:
    """fastMRI's three metrics of one volume: ``{"nmse", "psnr", "ssim"}`` as Python floats.

    Args:
        gt, pred: real magnitude volumes ``(slices, ny, nx)`` (or one image ``(ny, nx)``); the
            data range of PSNR and SSIM is ``max(gt)``.
    """
    return {
        "nmse": float(nmse(gt, pred)),
        "psnr": float(psnr(gt, pred)),
        "ssim": float(ssim(gt, pred)),
    }
