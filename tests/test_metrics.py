"""recon.metrics against scikit-image and fastMRI's evaluation loop, gradients, jit, bad input.

Tolerances. Our metrics run in float32; the references run scikit-image in float64. The SSIM
map is ``(A1 A2) / (B1 B2)`` with variances from ``E[x^2] - E[x]^2``: in float32 that difference
carries an absolute error ~ eps32 * R^2 ~ 1e-7 R^2 next to ``C2 = (0.03 R)^2 ~ 1e-3 R^2``, so a
flat-region pixel can be off by ~1e-4 relative. Centring each slice on its mean and averaging
over thousands of pixels brings the mean to <~2e-6 relative in practice (measured on the real
images below), hence ``rtol=1e-5``. In float64 (``jax.enable_x64``) the agreement is ~1e-12,
which checks the formula itself, independent of rounding.
"""

from __future__ import annotations

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from physics.errors import InvalidDataError, ShapeError
from recon.metrics import evaluate, nmse, psnr, ssim

DATA = "/work/shared/data"
RTOL32 = 1e-5


def fastmri_ssim(gt: np.ndarray, pred: np.ndarray, maxval: float | None = None) -> float:
    """fastMRI's evaluate.ssim: skimage per slice, data range from the volume, mean over slices."""
    maxval = gt.max() if maxval is None else maxval
    return sum(structural_similarity(g, p, data_range=maxval) for g, p in zip(gt, pred)) / len(gt)


def smooth_plus_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float):
    """A smooth positive image (sum of a few random low-frequency cosines) and a noisy copy."""
    *lead, ny, nx = shape
    y, x = np.mgrid[:ny, :nx] / max(ny, nx)
    gt = np.zeros(shape)
    for _ in range(4):
        fy, fx, ph = rng.uniform(0.5, 4.0), rng.uniform(0.5, 4.0), rng.uniform(0, 2 * np.pi)
        gt = gt + rng.uniform(0.2, 1.0, size=(*lead, 1, 1)) * (1 + np.cos(2 * np.pi * (fy * y + fx * x) + ph))
    pred = np.abs(gt + sigma * gt.max() * rng.standard_normal(shape))
    return gt, pred


def real_image() -> np.ndarray:
    """A real MR magnitude image (64x64, float64) from the shared test data."""
    with h5py.File(f"{DATA}/mr_small_8ch_semireal.h5", "r") as f:
        return np.asarray(f["reconstruction_rss"][0], dtype=np.float64)


# -- agreement with scikit-image / fastMRI ---------------------------------------------------
@pytest.mark.parametrize("shape", [(32, 32), (23, 41), (7, 9)])
def test_ssim_matches_skimage_on_random_images(shape):
    rng = np.random.default_rng(1)
    gt = rng.uniform(0, 1, shape)
    pred = np.clip(gt + 0.3 * rng.standard_normal(shape), 0, None)
    ref = structural_similarity(gt, pred, data_range=gt.max())
    got = ssim(gt.astype(np.float32), pred.astype(np.float32))
    assert got.dtype == jnp.float32 and got.shape == ()
    np.testing.assert_allclose(float(got), ref, rtol=RTOL32)


@pytest.mark.parametrize("sigma", [1e-3, 1e-2, 0.1])
def test_ssim_and_psnr_match_skimage_on_structured_images(sigma):
    rng = np.random.default_rng(2)
    gt, pred = smooth_plus_noise(rng, (48, 40), sigma)
    r = gt.max()
    np.testing.assert_allclose(
        float(ssim(gt.astype(np.float32), pred.astype(np.float32))),
        structural_similarity(gt, pred, data_range=r), rtol=RTOL32)
    np.testing.assert_allclose(
        float(psnr(gt.astype(np.float32), pred.astype(np.float32))),
        peak_signal_noise_ratio(gt, pred, data_range=r), rtol=RTOL32)


@pytest.mark.parametrize("sigma", [1e-3, 0.05])
def test_metrics_match_skimage_on_a_real_mr_image(sigma):
    gt = real_image()
    pred = np.abs(gt + sigma * gt.max() * np.random.default_rng(3).standard_normal(gt.shape))
    g32, p32 = gt.astype(np.float32), pred.astype(np.float32)
    np.testing.assert_allclose(float(ssim(g32, p32)),
                               structural_similarity(gt, pred, data_range=gt.max()), rtol=RTOL32)
    np.testing.assert_allclose(float(psnr(g32, p32)),
                               peak_signal_noise_ratio(gt, pred, data_range=gt.max()), rtol=RTOL32)
    np.testing.assert_allclose(float(nmse(g32, p32)),
                               np.linalg.norm(gt - pred) ** 2 / np.linalg.norm(gt) ** 2, rtol=RTOL32)


def test_volume_metrics_use_the_volume_maximum_and_average_slices():
    rng = np.random.default_rng(4)
    gt, pred = smooth_plus_noise(rng, (3, 30, 26), 0.02)
    gt[0] *= 0.2  # slices of different brightness: per-slice ranges would differ from the volume's
    pred[0] *= 0.2
    ref = fastmri_ssim(gt, pred)
    per_slice_range = np.mean([structural_similarity(g, p, data_range=g.max()) for g, p in zip(gt, pred)])
    assert abs(ref - per_slice_range) > 1e-3  # the test can tell the two conventions apart
    g32, p32 = gt.astype(np.float32), pred.astype(np.float32)
    np.testing.assert_allclose(float(ssim(g32, p32)), ref, rtol=RTOL32)
    np.testing.assert_allclose(float(psnr(g32, p32)),
                               peak_signal_noise_ratio(gt, pred, data_range=gt.max()), rtol=RTOL32)
    np.testing.assert_allclose(float(nmse(g32, p32)),
                               np.linalg.norm(gt - pred) ** 2 / np.linalg.norm(gt) ** 2, rtol=RTOL32)
    # One image equals a one-slice volume.
    np.testing.assert_allclose(float(ssim(g32[1], p32[1], gt.max())),
                               float(ssim(g32[1:2], p32[1:2], gt.max())), rtol=1e-7)


def test_float64_agrees_with_skimage_to_rounding():
    rng = np.random.default_rng(5)
    gt, pred = smooth_plus_noise(rng, (2, 21, 17), 0.05)
    with jax.enable_x64(True):
        got = ssim(jnp.asarray(gt), jnp.asarray(pred))
        assert got.dtype == jnp.float64
        np.testing.assert_allclose(float(got), fastmri_ssim(gt, pred), rtol=1e-12)
        np.testing.assert_allclose(float(psnr(jnp.asarray(gt), jnp.asarray(pred))),
                                   peak_signal_noise_ratio(gt, pred, data_range=gt.max()), rtol=1e-12)


def test_explicit_maxval_window_and_constants_follow_skimage():
    rng = np.random.default_rng(6)
    gt, pred = smooth_plus_noise(rng, (2, 25, 25), 0.05)
    g32, p32 = gt.astype(np.float32), pred.astype(np.float32)
    np.testing.assert_allclose(float(ssim(g32, p32, maxval=3.0)), fastmri_ssim(gt, pred, maxval=3.0),
                               rtol=RTOL32)
    ref = np.mean([structural_similarity(g, p, data_range=2.5, win_size=5, K1=0.02, K2=0.05)
                   for g, p in zip(gt, pred)])
    np.testing.assert_allclose(float(ssim(g32, p32, 2.5, win_size=5, k1=0.02, k2=0.05)), ref, rtol=RTOL32)
    # One data range per slice (e.g. per example of a training batch).
    ranges = gt.max(axis=(1, 2))
    ref = np.mean([structural_similarity(g, p, data_range=m) for g, p, m in zip(gt, pred, ranges)])
    np.testing.assert_allclose(float(ssim(g32, p32, jnp.asarray(ranges, jnp.float32))), ref, rtol=RTOL32)


def test_identical_images():
    gt, _ = smooth_plus_noise(np.random.default_rng(7), (2, 16, 16), 0.0)
    gt = gt.astype(np.float32)
    assert float(ssim(gt, gt)) == pytest.approx(1.0, abs=1e-6)
    assert float(nmse(gt, gt)) == 0.0
    assert float(psnr(gt, gt)) == np.inf
    assert evaluate(gt, gt)["psnr"] == np.inf


def test_evaluate_returns_python_floats():
    rng = np.random.default_rng(8)
    gt, pred = smooth_plus_noise(rng, (3, 20, 20), 0.05)
    gt, pred = gt.astype(np.float32), pred.astype(np.float32)
    gt_copy = gt.copy()
    out = evaluate(gt, pred)
    assert set(out) == {"nmse", "psnr", "ssim"}
    assert all(type(v) is float for v in out.values())
    assert out["ssim"] == pytest.approx(float(ssim(gt, pred)), rel=1e-7)
    assert out["psnr"] == pytest.approx(float(psnr(gt, pred)), rel=1e-7)
    assert out["nmse"] == pytest.approx(float(nmse(gt, pred)), rel=1e-7)
    np.testing.assert_array_equal(gt, gt_copy)  # inputs untouched


# -- jit and gradients -----------------------------------------------------------------------
def test_jit_matches_eager():
    rng = np.random.default_rng(9)
    gt, pred = (a.astype(np.float32) for a in smooth_plus_noise(rng, (2, 18, 22), 0.05))
    for f in (ssim, psnr, nmse):
        np.testing.assert_allclose(float(jax.jit(f)(gt, pred)), float(f(gt, pred)), rtol=1e-6)
    f = jax.jit(lambda g, p, m: ssim(g, p, m, win_size=5))
    np.testing.assert_allclose(float(f(gt, pred, 2.0)), float(ssim(gt, pred, 2.0, win_size=5)), rtol=1e-6)


def test_ssim_gradient_matches_finite_difference():
    rng = np.random.default_rng(10)
    gt, pred = smooth_plus_noise(rng, (2, 16, 14), 0.1)
    direction = rng.standard_normal(gt.shape)
    g32 = jax.grad(ssim, argnums=1)(gt.astype(np.float32), pred.astype(np.float32))
    assert g32.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(g32)))
    with jax.enable_x64(True):
        gt64, pred64, d = (jnp.asarray(a) for a in (gt, pred, direction))
        grad = jax.grad(ssim, argnums=1)(gt64, pred64)
        h = 1e-5
        fd = (ssim(gt64, pred64 + h * d) - ssim(gt64, pred64 - h * d)) / (2 * h)
        np.testing.assert_allclose(float(jnp.vdot(grad, d)), float(fd), rtol=1e-6)
    # The float32 gradient is the float64 one to float32 precision.
    np.testing.assert_allclose(np.asarray(g32), np.asarray(grad), rtol=1e-3, atol=1e-4 * np.abs(grad).max())


# -- bad input -------------------------------------------------------------------------------
@pytest.mark.parametrize("f", [nmse, psnr, ssim, evaluate])
def test_complex_input_is_refused(f):
    img = np.ones((8, 8), np.complex64)
    with pytest.raises(InvalidDataError, match="magnitudes"):
        f(img, np.ones((8, 8), np.float32))
    with pytest.raises(InvalidDataError, match="pred is complex"):
        f(np.ones((8, 8), np.float32), img)


@pytest.mark.parametrize("f", [nmse, psnr, ssim, evaluate])
def test_shape_mismatch_names_both_shapes(f):
    with pytest.raises(ShapeError, match=r"\(2, 8, 8\).*\(2, 8, 9\)"):
        f(np.ones((2, 8, 8), np.float32), np.ones((2, 8, 9), np.float32))


@pytest.mark.parametrize("f", [nmse, psnr, ssim])
def test_bad_reference_is_refused(f):
    gt = np.ones((8, 8), np.float32)
    gt[3, 4] = np.nan
    with pytest.raises(InvalidDataError, match="NaN"):
        f(gt, np.ones((8, 8), np.float32))
    with pytest.raises(InvalidDataError, match="empty"):
        f(np.ones((0, 8, 8), np.float32), np.ones((0, 8, 8), np.float32))
    with pytest.raises(InvalidDataError):  # all zeros: no data range / no normalisation
        f(np.zeros((8, 8), np.float32), np.ones((8, 8), np.float32))


def test_nan_prediction_gives_nan_metrics():
    gt = np.ones((2, 9, 9), np.float32)
    pred = gt.copy()
    pred[1, 4, 4] = np.nan
    out = evaluate(gt, pred)
    assert all(np.isnan(v) for v in out.values())


def test_ssim_window_checks():
    img = np.ones((6, 10), np.float32)
    with pytest.raises(ShapeError, match="win_size=7"):
        ssim(img, img)
    with pytest.raises(ShapeError, match="win_size=4"):
        ssim(np.ones((9, 9), np.float32), np.ones((9, 9), np.float32), win_size=4)
    with pytest.raises(InvalidDataError, match="maxval"):
        ssim(np.ones((9, 9), np.float32), np.ones((9, 9), np.float32), maxval=0.0)
