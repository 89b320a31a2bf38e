"""FBP and FDK against analytic sinograms of the Shepp-Logan and thorax phantoms."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from physics.ct_geometry import cone_beam, fan_beam, parallel_beam
from physics.ct_phantom import (MU_WATER, SHEPP_LOGAN_CT_2D, SHEPP_LOGAN_CT_3D, anatomical_ellipses,
                                anatomical_phantom, ellipse_image, ellipse_sinogram, scale_ellipses,
                                shepp_logan_ct)
from physics.dose import low_dose_sinogram
from physics.errors import InvalidDataError, ShapeError
from recon.fbp import fbp, fdk

N = 128
R, D = 300.0, 600.0  # mm; 200 bins of 2 mm cover the 128 mm image circle
GAMMA_FLAT, GAMMA_ARC = np.arctan(199.0 / D), 199.0 / D  # half fan angle of the outermost bin


def _fan(angles, detector="flat", offset=0.0):
    return fan_beam((N, N), angles, 200, source_to_isocenter=R, source_to_detector=D,
                    detector_spacing=2.0, detector=detector, detector_offset=offset)


def _uniform(stop, count=256):
    return np.linspace(0.0, stop, count, endpoint=False)


GEOMETRIES = {
    "parallel": parallel_beam((N, N), _uniform(np.pi), 192),
    "parallel-2pi-offset": parallel_beam((N, N), _uniform(2 * np.pi), 192, detector_offset=0.6),
    "parallel-nonuniform": parallel_beam((N, N), np.sort(np.random.default_rng(0).uniform(0, np.pi, 300)),
                                         192),
    "fan-flat": _fan(_uniform(2 * np.pi), offset=1.3),
    "fan-arc": _fan(_uniform(2 * np.pi), detector="arc"),
    "short-scan-flat": _fan(_uniform(np.pi + 2 * GAMMA_FLAT + 0.05)),
    "short-scan-arc": _fan(_uniform(np.pi + 2 * GAMMA_ARC + 0.05), detector="arc"),
    "short-scan-reversed": _fan(_uniform(np.pi + 2 * GAMMA_FLAT + 0.05)[::-1] + 1.0),
}


def _inside_brain(shape):
    """Pixels inside the brain ellipse shrunk by 10 %: away from the skull's edges."""
    shrunk = SHEPP_LOGAN_CT_2D[1:2] * [1.0, 0.9, 0.9, 1.0, 1.0, 1.0]
    return ellipse_image(scale_ellipses(shrunk, shape), shape) != 0


def _interior(truth):
    """Pixels of the object whose 3x3 neighbourhood in ``truth`` is constant (2D)."""
    padded = np.pad(truth, 1, mode="edge")
    ny, nx = truth.shape
    neighbours = np.stack([padded[1 + i:1 + i + ny, 1 + j:1 + j + nx]
                           for i in (-1, 0, 1) for j in (-1, 0, 1)])
    return (neighbours.max(0) == neighbours.min(0)) & (truth > 0)


def _relative_rmse(image, truth, mask):
    return float(np.sqrt(np.mean((image - truth)[mask] ** 2) / np.mean(truth[mask] ** 2)))


@pytest.mark.parametrize("name", GEOMETRIES)
def test_fbp_of_analytic_shepp_logan(name):
    geometry = GEOMETRIES[name]
    truth = shepp_logan_ct((N, N))
    sinogram = ellipse_sinogram(geometry, scale_ellipses(SHEPP_LOGAN_CT_2D, (N, N)))
    image = np.asarray(fbp(sinogram, geometry))
    assert image.shape == (N, N) and image.dtype == np.float32
    assert _relative_rmse(image, truth, _inside_brain((N, N))) < 0.004  # 0.0014 measured
    flat = image[56:64, 90:98]  # brain matter beside the right ventricle
    assert np.all(np.isclose(truth[56:64, 90:98], 1.02 * MU_WATER))
    assert flat.mean() == pytest.approx(1.02 * MU_WATER, rel=0.01)


@pytest.mark.parametrize("name", ["parallel", "fan-flat", "fan-arc"])
def test_uniform_disc_scale(name):
    geometry = GEOMETRIES[name]
    mu, radius = 0.02, 40.0
    image = np.asarray(fbp(ellipse_sinogram(geometry, [[mu, radius, radius, 0.0, 0.0, 0.0]]), geometry))
    assert image[N // 2 - 2:N // 2 + 2, N // 2 - 2:N // 2 + 2].mean() == pytest.approx(mu, rel=0.01)
    assert abs(image[2:10, 2:10].mean()) < 0.01 * mu  # background, no DC offset


def test_thorax_phantom_and_limited_angle():
    """The thorax phantom reconstructs; a fan scan shorter than pi + fan angle still returns an
    image, with the expected artefacts (no Parker weights)."""
    table = scale_ellipses(anatomical_ellipses(seed=2), (N, N))
    truth = anatomical_phantom((N, N), seed=2)
    interior = _interior(truth)
    full = _fan(_uniform(2 * np.pi))
    error = _relative_rmse(np.asarray(fbp(ellipse_sinogram(full, table), full)), truth, interior)
    assert error < 0.04  # 0.024 measured: ringing next to the lungs and bones
    limited = _fan(_uniform(np.pi))
    image = np.asarray(fbp(ellipse_sinogram(limited, table), limited))
    assert np.all(np.isfinite(image)) and _relative_rmse(image, truth, interior) > 3 * error


def test_filters_trade_noise_for_resolution():
    geometry = GEOMETRIES["parallel"]
    clean = ellipse_sinogram(geometry, scale_ellipses(SHEPP_LOGAN_CT_2D, (N, N)))
    noisy = low_dose_sinogram(clean, 2e4, key=0)
    inside = _inside_brain((N, N))
    noise, blur = {}, {}
    order = [("ramp", 1.0), ("shepp-logan", 1.0), ("cosine", 1.0), ("hann", 1.0), ("hann", 0.5)]
    for name, cutoff in order:
        image = np.asarray(fbp(clean, geometry, filter=name, cutoff=cutoff))
        difference = np.asarray(fbp(noisy, geometry, filter=name, cutoff=cutoff)) - image
        noise[name, cutoff] = float(np.std(difference[inside]))
        blur[name, cutoff] = float(np.abs(np.diff(image[N // 2])).max())  # steepest step at the skull
    assert all(noise[a] > noise[b] for a, b in zip(order, order[1:]))
    assert all(blur[a] > blur[b] for a, b in zip(order, order[1:]))
    assert noise["hann", 1.0] < 0.7 * noise["ramp", 1.0]
    # Apodisation keeps the scale: the mean of a flat region is unchanged.
    flat = [np.asarray(fbp(clean, geometry, filter=f))[56:64, 90:98].mean() for f in ("ramp", "hann")]
    assert flat[1] == pytest.approx(flat[0], rel=0.005)


def test_fdk_central_slice_of_analytic_3d_phantom():
    n = 32
    geometry = cone_beam((n, n, n), _uniform(2 * np.pi, 128), (64, 64), source_to_isocenter=128.0,
                         source_to_detector=256.0)
    truth = shepp_logan_ct((n, n, n))
    volume = np.asarray(fdk(ellipse_sinogram(geometry, scale_ellipses(SHEPP_LOGAN_CT_3D, (n, n, n))),
                            geometry))
    assert volume.shape == (n, n, n) and volume.dtype == np.float32
    shrunk = SHEPP_LOGAN_CT_3D[1:2] * [1.0, 0.9, 0.9, 0.9, 1.0, 1.0, 1.0, 1.0]
    inside = ellipse_image(scale_ellipses(shrunk, (n, n, n)), (n, n, n)) != 0
    for k in (n // 2 - 1, n // 2):  # z = -0.5 and +0.5 mm, next to the mid-plane
        assert _relative_rmse(volume[k], truth[k], inside[k]) < 0.006  # 0.0024 measured
        assert volume[k][inside[k]].mean() == pytest.approx(truth[k][inside[k]].mean(), rel=0.01)


def test_fdk_short_scan_with_parker_weights():
    n = 32
    gamma = np.arctan(31.5 / 256.0)
    geometry = cone_beam((n, n, n), _uniform(np.pi + 2 * gamma + 0.05, 128), (64, 64),
                         source_to_isocenter=128.0, source_to_detector=256.0)
    truth = shepp_logan_ct((n, n, n))
    volume = np.asarray(fdk(ellipse_sinogram(geometry, scale_ellipses(SHEPP_LOGAN_CT_3D, (n, n, n))),
                            geometry))
    assert _relative_rmse(volume[n // 2], truth[n // 2], _interior(truth[n // 2])) < 0.005  # 0.0019


def test_batch_jit_and_gradient():
    geometry = GEOMETRIES["fan-flat"]
    rng = np.random.default_rng(1)
    stack = rng.standard_normal((2, *geometry.sinogram_shape)).astype(np.float32)
    images = np.asarray(fbp(stack, geometry))
    assert images.shape == (2, N, N)
    scale = np.abs(images).max()  # float32 sums in another order: compare on the image's scale
    np.testing.assert_allclose(images[1], fbp(stack[1], geometry), rtol=1e-4, atol=1e-4 * scale)
    jitted = jax.jit(lambda s: fbp(s, geometry))
    np.testing.assert_allclose(jitted(stack[0]), images[0], rtol=1e-4, atol=1e-4 * scale)
    # FBP is linear: <FBP s, w> = <s, grad_s <FBP s, w>>, the gradient being FBP's transpose.
    w = rng.standard_normal((N, N)).astype(np.float32)
    grad = jax.grad(lambda s: jnp.vdot(fbp(s, geometry), w))(jnp.asarray(stack[0]))
    assert grad.shape == geometry.sinogram_shape
    assert float(jnp.vdot(grad, stack[0])) == pytest.approx(float(np.vdot(images[0], w)), rel=1e-3)


@pytest.mark.parametrize("name", ["parallel", "fan-flat", "fan-arc"])
def test_fbp_inverts_the_discrete_projector(name):
    geometry = GEOMETRIES[name]
    from physics.ct import ct_operator  # the Joseph projectors; the tests above need only analytic data

    x = anatomical_phantom((N, N), seed=0)
    image = np.asarray(fbp(ct_operator(geometry)(x), geometry))
    assert _relative_rmse(image, x, _interior(x)) < 0.04  # 0.019 measured for fan-flat


def test_fdk_inverts_the_discrete_projector():
    from physics.ct import ct_operator

    n = 32
    geometry = cone_beam((n, n, n), _uniform(2 * np.pi, 96), (56, 56), source_to_isocenter=128.0,
                         source_to_detector=256.0)
    x = shepp_logan_ct((n, n, n))
    volume = np.asarray(fdk(ct_operator(geometry)(x), geometry))
    assert _relative_rmse(volume[n // 2], x[n // 2], _interior(x[n // 2])) < 0.04  # 0.021 measured


@pytest.mark.parametrize("call, error", [
    (lambda: fbp(np.zeros((256, 191), np.float32), GEOMETRIES["parallel"]), ShapeError),
    (lambda: fbp(np.zeros(192, np.float32), GEOMETRIES["parallel"]), ShapeError),
    (lambda: fbp(np.full((256, 192), np.nan, np.float32), GEOMETRIES["parallel"]), InvalidDataError),
    (lambda: fbp(np.zeros((256, 192), np.complex64), GEOMETRIES["parallel"]), InvalidDataError),
    (lambda: fbp(np.zeros((256, 192), np.float32), GEOMETRIES["parallel"], filter="butterworth"),
     InvalidDataError),
    (lambda: fbp(np.zeros((256, 192)), GEOMETRIES["parallel"], cutoff=0.0), InvalidDataError),
    (lambda: fdk(np.zeros((256, 192), np.float32), GEOMETRIES["parallel"]), InvalidDataError),
    (lambda: fbp(np.zeros((1, 192), np.float32), parallel_beam((N, N), [0.0], 192)), ShapeError),
])
def test_bad_input(call, error):
    with pytest.raises(error):
        call()
