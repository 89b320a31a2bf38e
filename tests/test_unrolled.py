"""Unrolled models: jit + grad reach every parameter, baselines, scale equivariance, cross-checks
against CG-SENSE / Tikhonov, CT and non-Cartesian operators, configs and the factory."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from physics.coil_maps import calibration_region
from physics.ct import ParallelBeamCT
from physics.ct_geometry import parallel_beam
from physics.errors import InvalidDataError, ShapeError
from physics.linop import Scaled
from physics.mri import CartesianMRI, MultiCoilMRI
from physics.noncartesian import NonCartesianMRI
from physics.phantom import birdcage_maps, brain_phantom, shepp_logan
from physics.sampling import equispaced_mask, poisson_disc_mask, random_mask
from physics.trajectory import radial_2d
from recon.cg import cg, cgls
from recon.nets import parameter_count
from recon.power import operator_norm
from recon.sense import cg_sense, zero_filled
from recon.unrolled import (E2EVarNet, LearnedPrimalDual, LearnedPrimalDualConfig, MoDL, MoDLConfig,
                            REDCNNDenoiser, UNetDenoiser, VarNet, VarNetConfig, build_model,
                            calibration_mask)
from tests.conftest import rngs

N = 32
SMALL = {
    "varnet": dict(cascades=2, filters=4, kernel_size=3, rbf=7),
    "modl": dict(cascades=2, features=4, depth=3, cg_iterations=8),
    "e2e_varnet": dict(cascades=2, chans=2, pools=1, sens_chans=2, sens_pools=1),
    "learned_primal_dual": dict(cascades=2, primal_memory=2, dual_memory=2, features=4, depth=2),
}


@pytest.fixture(scope="module")
def mri():
    """4 coils, 32 x 32, 4x equispaced columns; maps with sum_c |S_c|^2 = 1; a batch of 2."""
    maps = birdcage_maps((4, N, N))
    maps = maps / np.sqrt(np.sum(np.abs(maps) ** 2, axis=0))
    mask = equispaced_mask(N, 4, 0.25).astype(np.float32)
    A = MultiCoilMRI(jnp.asarray(maps), jnp.asarray(mask))
    x = jnp.asarray(np.stack([brain_phantom((N, N), seed=s) for s in range(2)]), jnp.complex64)
    return dict(A=A, x=x, y=A(x), mask=mask, maps=maps)


@pytest.fixture(scope="module")
def ct():
    """Parallel beam, 24 angles, 48 bins, normalised to ||A|| ~ 1 (numba and pure-JAX backends)."""
    geometry = parallel_beam((N, N), np.linspace(0, np.pi, 24, endpoint=False), 48)
    ops = {b: ParallelBeamCT(geometry, b) for b in ("numba", "jax")}
    ops = {b: Scaled(A, 1.0 / operator_norm(ops["jax"])) for b, A in ops.items()}
    x = jnp.asarray(np.stack([shepp_logan((N, N))] * 2), jnp.float32)
    return dict(ops=ops, x=x, y=ops["jax"](x))


def make(name: str, **overrides):
    return build_model({"model": name, **SMALL[name], **overrides}, rngs(0))


def mri_case(mri, name: str, **overrides):
    """``(model, A, y)`` on the MRI problem; LPD gets single-coil Cartesian MRI (2D data)."""
    if name != "learned_primal_dual":
        return make(name, **overrides), mri["A"], mri["y"]
    A = CartesianMRI(jnp.asarray(mri["mask"]), (N, N))
    return make(name, complex_images=True, **overrides), A, A(mri["x"])


def apply(model, A, y, mask=None):
    return model(y, mask) if isinstance(model, E2EVarNet) else model(A, y)


def value_and_grads(model, A, y, target, mask=None):
    """Loss ``mean |model - target|^2`` and its gradients, under nnx.jit."""
    loss = lambda m: jnp.mean(jnp.abs(apply(m, A, y, mask) - target) ** 2)  # noqa: E731
    return nnx.jit(nnx.value_and_grad(loss))(model)


def assert_every_parameter_learns(grads):
    leaves = jax.tree.leaves_with_path(grads)
    assert leaves
    bad = [jax.tree_util.keystr(p) for p, g in leaves if not (np.all(np.isfinite(g)) and np.any(g != 0))]
    assert not bad, f"zero or non-finite gradients: {bad}"


# ------------------------------------------------------------------------------------------------
# every model under jit and grad
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(SMALL))
def test_jit_grad_reaches_every_parameter_and_remat_agrees(mri, name):
    (model, A, y), x = mri_case(mri, name), mri["x"]
    target = jnp.abs(x) if name == "e2e_varnet" else x
    out = nnx.jit(lambda m: apply(m, A, y, mri["mask"]))(model)
    assert out.shape == (2, N, N)
    assert out.dtype == (jnp.float32 if name == "e2e_varnet" else jnp.complex64)
    loss, grads = value_and_grads(model, A, y, target, mri["mask"])
    assert np.isfinite(loss)
    assert_every_parameter_learns(grads)
    if name != "e2e_varnet":  # E2E-VarNet's remat is exercised in test_e2e_varnet_* below
        loss_r, grads_r = value_and_grads(mri_case(mri, name, remat=True)[0], A, y, x)
        assert float(loss_r) == pytest.approx(float(loss), rel=1e-5)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-6 * np.abs(a).max()),
                     grads, grads_r)


def test_e2e_varnet_batch_mask_remat_and_baseline(mri):
    """A per-item mask ``(batch, 1, 1, nx)`` equals the shared mask; remat changes nothing;
    zero cascades give the RSS of the zero-filled coil images."""
    y, mask = mri["y"], mri["mask"]
    model, remat = make("e2e_varnet"), make("e2e_varnet", remat=True)
    out = nnx.jit(lambda m, k, msk: m(k, msk))(model, y, mask)
    np.testing.assert_allclose(nnx.jit(lambda m, k, msk: m(k, msk))(remat, y, jnp.tile(mask, (2, 1, 1, 1))),
                               out, rtol=1e-5, atol=1e-6)
    baseline = make("e2e_varnet", cascades=0)(y, mask)
    np.testing.assert_allclose(baseline, zero_filled(y), rtol=1e-6)
    assert float(jnp.abs(out - baseline).max()) > 0
    with pytest.raises(ShapeError, match="does not broadcast"):
        model(y, np.ones(N - 1, np.float32))
    with pytest.raises(ShapeError, match="complex"):
        model(jnp.abs(y), mask)


# ------------------------------------------------------------------------------------------------
# baselines, cross-checks, equivariance
# ------------------------------------------------------------------------------------------------
def test_zero_cascade_baselines(mri):
    A, y = mri["A"], mri["y"]
    np.testing.assert_allclose(make("varnet", cascades=0)(A, y), A.adjoint(y), rtol=1e-5, atol=1e-6)
    tikhonov, _ = cgls(A, y, lam=0.05, maxiter=8, tol=1e-6)
    np.testing.assert_allclose(make("modl", cascades=0, lam=0.05)(A, y), tikhonov, rtol=1e-4, atol=1e-5)
    model, A1, y1 = mri_case(mri, "learned_primal_dual", cascades=0)
    assert not np.any(model(A1, y1))


class _Zero(nnx.Module):
    def __call__(self, x):
        return jnp.zeros_like(x)


def test_modl_with_zero_denoiser_is_tikhonov_and_cg_sense(mri):
    """With ``D = 0`` every MoDL iteration solves ``(A^H A + lam I) x = A^H y``: after any number
    of iterations the Tikhonov solution (lam = 0.3, where CG converges), and as ``lam -> 0`` the
    CG-SENSE solution (zero iterations: the same CG from 0 with the same iteration count)."""
    A, y = mri["A"], mri["y"]
    model = make("modl", lam=0.3, cg_iterations=60, cg_tol=1e-7)
    model.denoiser = _Zero()
    tikhonov, info = cgls(A, y, lam=0.3, maxiter=60, tol=1e-7)
    assert bool(jnp.all(info.converged))
    np.testing.assert_allclose(nnx.jit(lambda m: m(A, y))(model), tikhonov, rtol=0,
                               atol=1e-4 * float(jnp.abs(tikhonov).max()))
    model = make("modl", cascades=0, lam=1e-7, cg_iterations=40, cg_tol=1e-7)
    sense = jax.vmap(lambda k: cg_sense(k, jnp.asarray(mri["maps"]), jnp.asarray(mri["mask"]),
                                        maxiter=40, tol=1e-7)[0])(y)
    np.testing.assert_allclose(nnx.jit(lambda m: m(A, y))(model), sense, rtol=0,
                               atol=1e-3 * float(jnp.abs(sense).max()))


@pytest.mark.parametrize("name", list(SMALL))
def test_scale_equivariance(mri, name):
    model, A, y = mri_case(mri, name)
    run = nnx.jit(lambda m, y: apply(m, A, y, mri["mask"]))
    out, scaled = run(model, y), run(model, 1e3 * y)
    np.testing.assert_allclose(scaled, 1e3 * out, rtol=0, atol=1e-3 * float(jnp.abs(1e3 * out).max()))


@pytest.mark.parametrize("mask", [
    random_mask(N, 4, 0.125, seed=3), equispaced_mask(N, 3, 0.25, seed=1),
    poisson_disc_mask((N, N), 3, calib=(8, 8), seed=2), poisson_disc_mask((N, 28), 2, calib=(7, 10), seed=5),
])
def test_calibration_mask_matches_calibration_region(mask):
    shape = (N, mask.shape[-1])
    full = np.broadcast_to(mask, shape)
    calib = jax.jit(calibration_mask)(jnp.asarray(full))
    region = calibration_region(mask, shape)
    box = np.zeros(shape, bool)
    box[tuple(slice(n // 2 - r // 2, n // 2 - r // 2 + r) for n, r in zip(shape, region))] = True
    np.testing.assert_array_equal(np.asarray(calib), box.astype(np.float32))


# ------------------------------------------------------------------------------------------------
# other operators
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["varnet", "modl", "learned_primal_dual"])
def test_runs_on_parallel_beam_ct(ct, name):
    """On the Numba projector (host callbacks): MoDL's CG is differentiated without transposing A."""
    A = ct["ops"]["numba"]
    model = make(name, complex_images=False)
    loss, grads = value_and_grads(model, A, ct["y"], ct["x"])
    assert np.isfinite(loss)
    assert_every_parameter_learns(grads)
    assert model(A, ct["y"]).dtype == jnp.float32 and model(A, ct["y"]).shape == (2, N, N)


@pytest.mark.parametrize("problem", ["mri", "ct"])
def test_modl_lambda_gradient_matches_finite_differences(mri, ct, problem):
    """The implicit (custom_linear_solve) gradient w.r.t. lambda, through the system matrix and
    the right-hand side, equals central differences of the loss (complex and real operators)."""
    if problem == "mri":
        model, A, y, x = make("modl", lam=0.5, cg_iterations=30, cg_tol=1e-7), mri["A"], mri["y"], mri["x"]
    else:
        A, y, x = ct["ops"]["numba"], ct["y"], ct["x"]
        model = make("modl", complex_images=False, lam=0.5, cg_iterations=30, cg_tol=1e-7)
    loss = nnx.jit(lambda m: jnp.mean(jnp.abs(m(A, y) - x) ** 2))
    _, grads = value_and_grads(model, A, y, x)
    raw, eps = float(model.lam[...]), 1e-2
    values = []
    for step in (eps, -eps):
        model.lam[...] = jnp.float32(raw + step)
        values.append(float(loss(model)))
    assert float(grads["lam"][...]) == pytest.approx((values[0] - values[1]) / (2 * eps), rel=2e-3)


@pytest.mark.parametrize("name", ["varnet", "modl"])
def test_runs_on_noncartesian_mri(mri, name):
    trajectory = radial_2d(24, N, image_shape=(N, N))
    A = NonCartesianMRI(jnp.asarray(mri["maps"]), jnp.asarray(trajectory))
    A = Scaled(A, 1.0 / operator_norm(A))
    y = A(mri["x"])
    model = make(name)
    loss, grads = value_and_grads(model, A, y, mri["x"])
    assert np.isfinite(loss)
    assert_every_parameter_learns(grads)
    assert model(A, y).shape == (2, N, N)


def test_operator_mismatch_errors(mri, ct):
    A, y = mri["A"], mri["y"]
    with pytest.raises(InvalidDataError, match="complex_images=True"):
        make("varnet")(ct["ops"]["jax"], ct["y"])
    with pytest.raises(InvalidDataError, match="LinearOperator"):
        make("modl")(lambda x: x, y)
    with pytest.raises(ShapeError, match="data shape"):
        make("varnet")(A, y[..., :-1])
    with pytest.raises(ShapeError, match="2D data"):
        make("learned_primal_dual", complex_images=True)(A, y)


# ------------------------------------------------------------------------------------------------
# configs and the factory
# ------------------------------------------------------------------------------------------------
def test_config_round_trip_and_factory():
    for cls, name in ((VarNet, "varnet"), (E2EVarNet, "e2e_varnet"), (MoDL, "modl"),
                      (LearnedPrimalDual, "learned_primal_dual")):
        config = cls.config_type.from_dict({"model": name, **SMALL[name]})
        again = cls.config_type.from_dict(json.loads(json.dumps(config.to_dict())))
        assert again == config and again.to_dict()["model"] == name
        model = nnx.eval_shape(lambda: build_model(config.to_dict(), nnx.Rngs(0)))
        assert isinstance(model, cls) and model.config == config
    assert VarNetConfig(vmax=2).vmax == 2.0 and isinstance(VarNetConfig(vmax=2).vmax, float)
    with pytest.raises(InvalidDataError, match="not 'modl'"):
        MoDLConfig.from_dict({"model": "varnet"})


@pytest.mark.parametrize("config,match", [
    ({"cascades": 2}, "'model' entry"),
    ({"model": "unet"}, "unknown model 'unet'"),
    ({"model": "varnet", "filter": 3}, r"unknown field\(s\) \['filter'\]"),
    ({"model": "varnet", "cascades": "2"}, "cascades must be int"),
    ({"model": "modl", "cascades": True}, "cascades must be int"),
    ({"model": "modl", "cascades": -1}, "cascades must be >= 0"),
    ({"model": "modl", "lam": 0.0}, "lam must be > 0"),
    ({"model": "varnet", "shared": 1}, "shared must be bool"),
    ({"model": "learned_primal_dual", "primal_memory": 1}, "primal_memory must be >= 2"),
])
def test_bad_configs(config, match):
    with pytest.raises(InvalidDataError, match=match):
        build_model(config, nnx.Rngs(0))


def test_default_parameter_counts():
    """The default (CPU-sized) configs, counted from their layers."""
    def count(config):
        return parameter_count(nnx.eval_shape(lambda: build_model(config, nnx.Rngs(0))))

    conv = lambda a, b: 9 * a * b + b  # 3x3 convolution with bias  # noqa: E731
    v = VarNetConfig()
    per_cascade = v.filters * (v.kernel_size ** 2 * 2 + v.rbf)  # filters + RBF weights
    assert count({"model": "varnet"}) == v.cascades * (per_cascade + 1)
    assert count({"model": "varnet", "shared": True}) == per_cascade + v.cascades
    m = MoDLConfig()
    assert count({"model": "modl"}) == (conv(2, m.features) + (m.depth - 2) * conv(m.features, m.features)
                                        + conv(m.features, 2) + 1)
    p = LearnedPrimalDualConfig()
    P, D, F = p.primal_memory, p.dual_memory, p.features  # real images: one channel per slot
    block = lambda a, b: conv(a, F) + (p.depth - 2) * conv(F, F) + conv(F, b)  # noqa: E731
    assert count({"model": "learned_primal_dual"}) == p.cascades * (block(D + 2, D) + block(P + 1, P))
    assert count({"model": "e2e_varnet"}) > 0


@pytest.mark.parametrize("denoiser", ["redcnn", "unet_denoiser"])
def test_modl_with_a_gan_generator_block(mri, denoiser):
    """``denoiser``: the block is the registry's GAN generator of the matching config; with zero
    weights it is the identity (RED-CNN's shortcut; the U-Net's residual), so each iteration is
    the proximal point step ``(A^H A + lam I)^{-1} (A^H y + lam x_k)`` from the Tikhonov start."""
    A, y = mri["A"], mri["y"]
    model = make("modl", denoiser=denoiser, cascades=3, features=4, depth=2, lam=0.3, cg_iterations=60,
                 cg_tol=1e-7)
    expected = REDCNNDenoiser if denoiser == "redcnn" else UNetDenoiser
    assert isinstance(model.denoiser, expected)
    assert model.denoiser.config.to_dict() == MoDL.denoiser_config(model.config)
    nnx.update(model.denoiser, jax.tree.map(jnp.zeros_like, nnx.state(model.denoiser, nnx.Param)))
    x, _ = cgls(A, y, lam=0.3, maxiter=60, tol=1e-7)
    for _ in range(3):
        x = jax.vmap(lambda b, x0: cg(A.normal, b, x0, maxiter=60, tol=1e-7, damp=0.3)[0])(
            A.adjoint(y) + 0.3 * x, x)
    np.testing.assert_allclose(nnx.jit(lambda m: m(A, y))(model), x, rtol=0,
                               atol=1e-4 * float(jnp.abs(x).max()))
    assert MoDL.denoiser_config(make("modl").config) is None
    with pytest.raises(InvalidDataError, match="denoiser must be"):
        make("modl", denoiser="bm3d")
