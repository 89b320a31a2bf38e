"""Denoisers in use (recon.enhance): loading, the real/complex adapter, enhancement of raw MRI and
CT data with data consistency and the trust report, and plug-and-play with a network.

Identity networks are the registered RED-CNN denoiser with zero weights (its input shortcut makes
it the identity); hallucinating ones add a bright disc that is not in the data.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from physics.ct import ct_operator
from physics.ct_geometry import parallel_beam
from physics.ct_phantom import shepp_logan_ct
from physics.dose import log_transform, photon_counts
from physics.errors import FileFormatError, InvalidDataError, ShapeError
from physics.mri import MultiCoilMRI
from physics.sampling import equispaced_mask
from physics.simulation import simulate_multicoil
from recon.admm import admm
from recon.cg import cgls
from recon.enhance import (denoise, enhance_ct, enhance_kspace, load_denoiser, reconstruct_pnp,
                           reconstruct_pnp_ct, takes_complex)
from recon.fbp import fbp
from recon.fista import fista
from recon.io import CTData
from recon.learned import normalised_ct_operator
from recon.pipeline import ReconOptions, coil_maps
from recon.train import save_model
from recon.trust import ct_sigma
from recon.unrolled import build_model
from tests.conftest import rngs

N = 32


def identity(complex_images: bool, layers: int = 2) -> tuple[nnx.Module, dict]:
    """The registered RED-CNN denoiser with every weight zero: ``D(x) = x``."""
    config = {"model": "redcnn", "complex_images": complex_images, "features": 4, "layers": layers}
    model = build_model(config, rngs())
    nnx.update(model, jax.tree.map(jnp.zeros_like, nnx.state(model, nnx.Param)))
    return model, config


def disc(n: int = N) -> np.ndarray:
    yy, xx = np.mgrid[:n, :n]
    return ((yy - 0.4 * n) ** 2 + (xx - 0.55 * n) ** 2 < (0.1 * n) ** 2).astype(np.float32)


class AddDisc(nnx.Module):
    """A hallucinating enhancer: ``x + amplitude * disc`` (real or complex images)."""

    def __init__(self, amplitude: float):
        self.disc = nnx.Variable(jnp.asarray(amplitude * disc()))

    def __call__(self, x: jax.Array) -> jax.Array:
        return x + self.disc[...].astype(x.dtype)


@pytest.fixture(scope="module")
def mri():
    sim = simulate_multicoil(N, 4, snr_db=30.0, seed=2)
    mask = equispaced_mask(N, 3.0, 0.16, seed=0)
    m = np.broadcast_to(mask, (N, N))
    kspace = sim.kspace[0] * m
    A = MultiCoilMRI(coil_maps(kspace, m, ReconOptions()), jnp.asarray(m, jnp.float32))
    return kspace, mask, sim.sigma, A, jnp.asarray(kspace)


@pytest.fixture(scope="module")
def ct() -> CTData:
    """Low dose (I0 = 1e3), the use of an enhancer: FBP's own residual from discretisation (0.025
    of the data at 32 px) is then below the noise's (0.066); at high dose it is not."""
    g = parallel_beam((N, N), np.linspace(0, np.pi, 48, endpoint=False), 48, pixel_size=1.0)
    image = shepp_logan_ct((N, N))[None] * 2.0
    clean = np.asarray(ct_operator(g)(jnp.asarray(image)), np.float32)
    counts = np.asarray(photon_counts(clean, 1e3, seed=1), np.float32)
    return CTData(np.asarray(log_transform(counts, 1e3), np.float32), g, counts, 1e3, image)


def test_load_denoiser_round_trip_and_wrong_kind(tmp_path):
    model, config = identity(False)
    save_model(model, config, tmp_path / "good")
    loaded, saved = load_denoiser(tmp_path / "good")
    assert saved == config and not takes_complex(loaded, (N, N))
    x = np.random.default_rng(0).standard_normal((2, N, N)).astype(np.float32)
    np.testing.assert_allclose(denoise(loaded, x), x, rtol=1e-5, atol=1e-6)
    modl = {"model": "modl", "cascades": 1, "features": 4, "depth": 2, "cg_iterations": 3}
    save_model(build_model(modl, rngs()), modl, tmp_path / "modl")
    with pytest.raises(InvalidDataError, match="'modl' model is not an image denoiser"):
        load_denoiser(tmp_path / "modl")
    with pytest.raises(FileFormatError, match="config.json"):
        load_denoiser(tmp_path / "missing")


def test_noise_weighted_consistency_is_the_map_image(mri):
    """The output minimises ||A x - y||^2 / sigma^2 + ||x - x_e||^2 / tau^2 (its gradient vanishes),
    and lies between the exact fit and the enhanced image in residual."""
    kspace, mask, sigma, A, y = mri
    model, error = AddDisc(0.5 * float(jnp.abs(A.adjoint(y)).max())), 0.2
    x_e = jnp.asarray(enhance_kspace(model, kspace, mask, sigma=sigma, data_consistency="none").image[0])
    out = enhance_kspace(model, kspace, mask, sigma=sigma, data_consistency="noise", relative_error=error)
    exact = enhance_kspace(model, kspace, mask, sigma=sigma, data_consistency="exact")
    x = jnp.asarray(out.image[0])
    tau2 = error ** 2 * float(jnp.mean(jnp.abs(x_e) ** 2))
    gradient = A.adjoint(A(x) - y) / sigma ** 2 + (x - x_e) / tau2
    assert float(jnp.linalg.norm(gradient)) < 1e-3 * float(jnp.linalg.norm(A.adjoint(y))) / sigma ** 2
    assert float(exact.report.residual) < float(out.report.residual) < float(jnp.linalg.norm(A(x_e) - y)
                                                                             / jnp.linalg.norm(y))
    with pytest.raises(InvalidDataError, match="relative error"):
        enhance_kspace(model, kspace, mask, data_consistency="noise")
    with pytest.raises(InvalidDataError, match="expected one of"):
        enhance_kspace(model, kspace, mask, data_consistency="soft")


def test_adapter_real_model_on_complex_images_keeps_the_phase(rng):
    x = (rng.standard_normal((1, N, N)) + 1j * rng.standard_normal((1, N, N))).astype(np.complex64)
    out = denoise(AddDisc(2.0), x)  # takes real images: enhances |x|, keeps the phase
    np.testing.assert_allclose(out, (np.abs(x) + 2.0 * disc()) * np.exp(1j * np.angle(x)), rtol=1e-5,
                               atol=1e-5)
    complex_model, _ = identity(True)
    assert takes_complex(complex_model, (N, N))
    magnitude = np.abs(x).astype(np.float32)
    np.testing.assert_allclose(denoise(complex_model, magnitude), magnitude, rtol=1e-5, atol=1e-5)
    with pytest.raises(InvalidDataError, match="complex"):
        denoise(complex_model, magnitude, real_only=True)
    deep, _ = identity(False, layers=8)  # RED-CNN of 8 valid layers needs 33 pixels
    with pytest.raises(ShapeError, match="takes no images of shape"):
        denoise(deep, magnitude)


def test_data_consistency_brings_a_hallucination_down_to_the_least_squares_residual(mri):
    kspace, mask, sigma, A, y = mri
    amplitude = 0.5 * float(jnp.abs(A.adjoint(y)).max())
    model = AddDisc(amplitude)
    raw = enhance_kspace(model, kspace, mask, sigma=sigma, data_consistency="none")
    kept = enhance_kspace(model, kspace, mask, sigma=sigma, data_consistency="exact")
    # the hard consistency step is 30 CG steps from the enhanced image; least squares from 0 with
    # as many steps fits the data as well (the problem converges slowly: R = 3.6, cropped maps)
    least_squares, _ = cgls(A, y, maxiter=30, tol=1e-7)
    floor = float(jnp.linalg.norm(A(least_squares) - y) / jnp.linalg.norm(y))
    assert float(raw.report.residual) > 3 * float(raw.report.expected)
    assert bool(raw.report.suspicious) and not bool(kept.report.suspicious)
    assert float(kept.report.residual) < min(1.02 * floor, float(kept.report.expected))
    # without consistency the departure from the zero-filled image is the disc, and only the disc
    d = np.asarray(raw.report.departure)
    peak = float(np.abs(raw.classical).max())
    np.testing.assert_allclose(d[disc() > 0], amplitude / peak, rtol=1e-4)
    assert d[disc() == 0].max() < 1e-6
    assert raw.image.shape == kept.classical.shape == (1, N, N) and raw.image.dtype == np.complex64


def test_ct_enhancement_trusts_the_identity_and_flags_a_disc(ct):
    data = ct
    same = enhance_ct(identity(False)[0], data)
    np.testing.assert_allclose(same.image, np.asarray(fbp(data.sinogram, data.geometry)), rtol=1e-4,
                               atol=1e-5)
    assert not bool(same.report.suspicious[0])
    np.testing.assert_allclose(np.asarray(same.report.sigma), ct_sigma(data), rtol=1e-6)
    bad = enhance_ct(AddDisc(float(data.image.max())), data)
    assert bool(bad.report.suspicious[0]) and bad.report.departure.shape == (1, N, N)
    assert float(bad.report.departure[0][disc() > 0].min()) > 0.3


def test_pnp_with_an_identity_network_is_the_plain_solver(mri, ct):
    kspace, mask, _, A, y = mri
    b = A.adjoint(y)
    plain, _ = admm(A.normal, b, lambda v: v, lambda v: v, lambda v, t: v, b, rho=0.05, maxiter=10,
                    cg_iterations=5)
    image, report = reconstruct_pnp(identity(True)[0], kspace, mask, iterations=10)
    np.testing.assert_allclose(image, np.abs(np.asarray(plain)), rtol=1e-4, atol=1e-4 * np.abs(plain).max())
    assert report.residual.shape == () and report.departure.shape == (N, N)
    plain, _ = fista(lambda x: A.normal(x) - b, lambda v, t, key: v, b, step=0.9, maxiter=10)
    image, _ = reconstruct_pnp(identity(False)[0], kspace, mask, method="pnp-fista", iterations=10,
                               step=0.9)  # a real network on the magnitude, the phase kept
    np.testing.assert_allclose(image, np.abs(np.asarray(plain)), rtol=1e-4, atol=1e-4 * np.abs(plain).max())
    data = ct
    An = normalised_ct_operator(data.geometry)
    yn = jnp.asarray(data.sinogram[0]) * An.factor
    plain, _ = admm(An.normal, An.adjoint(yn), lambda v: v, lambda v: v, lambda v, t: v, An.adjoint(yn),
                    rho=0.05, maxiter=5, cg_iterations=5)
    images, report = reconstruct_pnp_ct(identity(False)[0], data.sinogram, data.geometry, iterations=5)
    np.testing.assert_allclose(images[0], np.asarray(plain), rtol=1e-3, atol=1e-4 * float(plain.max()))
    assert report.residual.shape == (1,)
    with pytest.raises(InvalidDataError, match="complex"):
        reconstruct_pnp_ct(identity(True)[0], data.sinogram, data.geometry)
    with pytest.raises(InvalidDataError, match="iterations"):
        reconstruct_pnp(identity(True)[0], kspace, mask, iterations=0)
