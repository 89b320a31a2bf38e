"""GAN denoisers: RED-CNN, critics, spectral normalisation, GAN losses, EMA, a short GAN run."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from physics.errors import InvalidDataError, ShapeError
from recon.gan import (REDCNN, PatchGAN, SpectralNorm, WGANCritic, ema_update, gradient_penalty,
                       lsgan_losses, make_gan_step, wgan_losses)
from recon.train import make_optimizer
from tests.conftest import complex_normal, rngs


@nnx.jit
def _output_and_grads(model: nnx.Module, x: jax.Array) -> tuple[jax.Array, nnx.State]:
    """``model(x)`` and the gradient of ``sum |model(x)|^2`` with respect to every Param."""
    (_, y), grads = nnx.value_and_grad(lambda m: (jnp.sum(jnp.abs(m(x)) ** 2), m(x)), has_aux=True)(model)
    return y, grads


def _grad_norms(grads: nnx.State) -> list[float]:
    return [float(jnp.linalg.norm(g)) for g in jax.tree.leaves(grads)]


def test_redcnn_shapes_grads_and_shortcut(rng):
    x = jnp.asarray(rng.standard_normal((2, 32, 32)), jnp.float32)
    net = REDCNN(1, features=4, layers=5, rngs=rngs(0))
    y, grads = _output_and_grads(net, x)
    assert y.shape == x.shape and y.dtype == jnp.float32
    norms = _grad_norms(grads)
    assert len(norms) == 20 and min(norms) > 0  # 5 convs + 5 deconvs, kernel and bias each
    z = jnp.asarray(complex_normal(rng, (3, 21, 23)))
    cnet = REDCNN(2, features=4, layers=3, rngs=rngs(1))
    assert cnet(z).shape == z.shape and cnet(z).dtype == jnp.complex64
    # with every weight and bias 0, only the input->output shortcut is left: D(x) = x
    nnx.update(cnet, jax.tree.map(jnp.zeros_like, nnx.state(cnet, nnx.Param)))
    np.testing.assert_array_equal(cnet(z), z)
    with pytest.raises(ShapeError, match=r">= 13"):
        cnet(z[:, :12])
    with pytest.raises(ShapeError, match="2 image channel"):
        cnet(x)


def test_critics_shapes_and_grads(rng):
    x = jnp.asarray(rng.standard_normal((2, 32, 32)), jnp.float32)
    patch = PatchGAN(1, features=4, layers=3, rngs=rngs(0))
    scores, grads = _output_and_grads(patch, x)
    assert scores.shape == (2, 2, 2) and scores.dtype == jnp.float32
    assert min(_grad_norms(grads)) > 0
    z = jnp.asarray(complex_normal(rng, (3, 32, 32)))
    critic = WGANCritic(2, features=4, layers=3, spectral_norm=True, rngs=rngs(1))
    scores, grads = _output_and_grads(critic, z)
    assert scores.shape == (3,) and scores.dtype == jnp.float32
    assert min(_grad_norms(grads)) > 0
    with pytest.raises(ShapeError, match=r"\(batch, ny, nx\)"):
        critic(z[0])


class _LinearCritic(nnx.Module):
    """``D(x) = <w, x>`` per image: its gradient is ``w`` everywhere."""

    def __init__(self, w: np.ndarray):
        self.w = nnx.Param(jnp.asarray(w))

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.sum(self.w[...] * x, axis=(-2, -1))


def test_gradient_penalty_of_linear_critic_is_analytic(rng):
    w = (0.02 * rng.standard_normal((16, 16))).astype(np.float32)
    real, fake = (jnp.asarray(rng.standard_normal((3, 16, 16)), jnp.float32) for _ in range(2))
    expected = (np.linalg.norm(w.astype(np.float64)) - 1) ** 2
    gp = gradient_penalty(_LinearCritic(w), real, fake, jax.random.key(0))
    np.testing.assert_allclose(float(gp), expected, rtol=1e-5)
    with pytest.raises(ShapeError, match="one shape and dtype"):
        gradient_penalty(_LinearCritic(w), real, fake[:2], jax.random.key(0))


def test_gradient_penalty_matches_jacobian_definition(rng):
    """Nonlinear critic, complex images: per-example gradient norms from ``jax.jacrev``."""
    critic = WGANCritic(2, features=3, layers=2, rngs=rngs(3))
    real, fake = (jnp.asarray(complex_normal(rng, (2, 8, 8))) for _ in range(2))
    key = jax.random.key(7)
    eps = np.asarray(jax.random.uniform(key, (2, 1, 1)))
    x_hat = eps * real + (1 - eps) * fake
    # D as a function of the (re, im) parts; jac[b, c] = dD(x_b) / dx_c
    jac_re, jac_im = jax.jacrev(lambda a, b: critic(jax.lax.complex(a, b)), argnums=(0, 1))(
        jnp.real(x_hat), jnp.imag(x_hat))
    jac_re, jac_im = np.asarray(jac_re, np.float64), np.asarray(jac_im, np.float64)
    norms = [np.sqrt(np.sum(jac_re[b, b] ** 2 + jac_im[b, b] ** 2)) for b in range(2)]
    assert not np.any(np.asarray(jac_re[0, 1]))  # examples are independent
    np.testing.assert_allclose(float(gradient_penalty(critic, real, fake, key)),
                               np.mean((np.array(norms) - 1) ** 2), rtol=1e-4)


def test_spectral_norm_bounds_the_layer(rng):
    conv = nnx.Conv(3, 5, (3, 3), rngs=rngs(0))
    kernel = np.asarray(conv.kernel[...])
    sn = SpectralNorm(conv, rngs=rngs(1))
    top = np.linalg.svd(kernel.reshape(-1, 5).astype(np.float64), compute_uv=False)[0]
    x = jnp.asarray(rng.standard_normal((4, 12, 12, 3)), jnp.float32)
    # one step from a random start: the Rayleigh quotient underestimates sigma
    assert float(jnp.max(jnp.abs(sn.normalized_kernel()))) * top >= np.max(np.abs(kernel)) * (1 - 1e-6)
    for _ in range(30):  # power iteration, one step per call
        y = sn(x)
    normalized = np.asarray(sn.normalized_kernel(), np.float64)
    np.testing.assert_allclose(np.linalg.svd(normalized.reshape(-1, 5), compute_uv=False)[0], 1.0, rtol=1e-4)
    np.testing.assert_array_equal(conv.kernel[...], kernel)  # the stored kernel is untouched
    reference = nnx.clone(conv)
    reference.kernel[...] = jnp.asarray(normalized, jnp.float32)
    np.testing.assert_allclose(y, reference(x), rtol=1e-4, atol=1e-5)
    # |conv(x)| ~ |x| on random inputs; |conv|_2 <= sqrt(3 * 3) always (power iteration on conv^T conv)
    sn.set_attributes(update_stats=False)
    bias = conv.bias[...]
    linear = lambda x: sn(x) - bias  # noqa: E731
    for _ in range(5):
        x = jnp.asarray(rng.standard_normal((1, 12, 12, 3)), jnp.float32)
        assert float(jnp.linalg.norm(linear(x)) / jnp.linalg.norm(x)) <= 1.25
    transpose = jax.linear_transpose(linear, x)
    for _ in range(50):
        x = transpose(linear(x))[0]
        x = x / jnp.linalg.norm(x)
    assert 1.0 < float(jnp.linalg.norm(linear(x))) <= 3.0
    # a linear layer: |M|_2 = 1 is its operator norm; the top singular vector reaches it
    lin = SpectralNorm(nnx.Linear(6, 4, rngs=rngs(2)), rngs=rngs(3))
    for _ in range(30):
        lin(jnp.zeros((1, 6)))
    m = np.asarray(lin.normalized_kernel(), np.float64)
    top_in = np.linalg.svd(m.T)[2][0]
    out = np.asarray(lin(jnp.asarray(top_in[None], jnp.float32)) - lin.layer.bias[...])
    np.testing.assert_allclose(np.linalg.norm(out), 1.0, rtol=1e-4)
    # frozen: no update of the power-iteration state
    lin.set_attributes(update_stats=False)
    u = np.asarray(lin.u[...])
    lin.layer.kernel[...] = jnp.asarray(rng.standard_normal((6, 4)), jnp.float32)
    lin(jnp.zeros((1, 6)))
    np.testing.assert_array_equal(lin.u[...], u)


def test_gan_losses():
    real, fake = jnp.array([1.0, 0.5]), jnp.array([0.0, 0.25, 1.0])
    critic, gen = lsgan_losses(real, fake)
    np.testing.assert_allclose(critic, 0.5 * (0.125 + (0.0 + 0.0625 + 1.0) / 3))
    np.testing.assert_allclose(gen, 0.5 * (1.0 + 0.5625 + 0.0) / 3)
    critic, gen = wgan_losses(real, fake)
    np.testing.assert_allclose(critic, 1.25 / 3 - 0.75)
    np.testing.assert_allclose(gen, -1.25 / 3)


def test_ema_update_formula():
    ema, model = REDCNN(1, 4, 2, rngs=rngs(0)), REDCNN(1, 4, 2, rngs=rngs(1))
    before = [np.asarray(p) for p in jax.tree.leaves(nnx.state(ema, nnx.Param))]
    params = [np.asarray(p) for p in jax.tree.leaves(nnx.state(model, nnx.Param))]
    ema_update(ema, model, 0.9)
    for e, e0, p in zip(jax.tree.leaves(nnx.state(ema, nnx.Param)), before, params):
        np.testing.assert_allclose(e, 0.9 * e0 + 0.1 * p, rtol=1e-6, atol=1e-7)
    for p, p0 in zip(jax.tree.leaves(nnx.state(model, nnx.Param)), params):
        np.testing.assert_array_equal(p, p0)
    with pytest.raises(InvalidDataError, match=r"\[0, 1\]"):
        ema_update(ema, model, 1.5)
    with pytest.raises(ShapeError, match="different parameters"):
        ema_update(ema, REDCNN(1, 5, 2, rngs=rngs(2)), 0.9)


def _blobs(rng: np.random.Generator, n: int, size: int = 32) -> np.ndarray:
    """``n`` images of 3 Gaussian blobs each, values in [0, ~1], float32."""
    y, x = np.mgrid[:size, :size]
    out = np.zeros((n, size, size))
    for i in range(n):
        for cy, cx, r in zip(*rng.uniform([[6], [6], [2]], [[26], [26], [5]], (3, 3))):
            out[i] += np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * r ** 2))
    return np.clip(out, 0, 1).astype(np.float32)


def test_short_lsgan_run_denoises_blobs(rng):
    """60 LSGAN steps of RED-CNN against a spectrally normalised PatchGAN on noisy blobs."""
    generator = REDCNN(1, features=8, layers=3, rngs=rngs(0))
    critic = PatchGAN(1, features=8, layers=2, spectral_norm=True, rngs=rngs(1))
    g_opt = nnx.Optimizer(generator, make_optimizer({"learning_rate": 3e-3, "clip_norm": None}),
                          wrt=nnx.Param)
    c_opt = nnx.Optimizer(critic, make_optimizer({"learning_rate": 2e-3, "clip_norm": None}),
                          wrt=nnx.Param)
    step = make_gan_step({"l1": 1.0}, adversarial="lsgan", adv_weight=0.01)
    u0 = np.asarray(critic.convs[0].u[...])
    history, noise_l1 = [], []
    for i in range(60):  # ~1 s after compilation
        clean = _blobs(rng, 2)
        noisy = clean + 0.15 * rng.standard_normal(clean.shape).astype(np.float32)
        batch = {"inputs": {"x": jnp.asarray(noisy)}, "target": jnp.asarray(clean)}
        noise_l1.append(np.mean(np.abs(noisy - clean)))
        history.append({k: float(v) for k, v in step(generator, critic, g_opt, c_opt, batch,
                                                      jax.random.key(i)).items()})
    assert all(np.isfinite(list(h.values())).all() for h in history)
    gap = [h["real_score"] - h["fake_score"] for h in history]
    assert np.mean(gap[2:10]) > 0  # the critic tells clean from denoised early
    pixel = [h["pixel"] for h in history]
    assert np.mean(pixel[-5:]) < 0.7 * np.mean(pixel[:3])
    assert np.mean(pixel[-5:]) < 0.75 * np.mean(noise_l1)  # better than returning the noisy input
    assert not np.array_equal(critic.convs[0].u[...], u0)  # power iteration ran in training
    with pytest.raises(InvalidDataError, match="adversarial"):
        make_gan_step({"l1": 1.0}, adversarial="hinge")


def test_wgan_gp_steps(rng):
    generator = REDCNN(1, features=4, layers=2, rngs=rngs(0))
    critic = WGANCritic(1, features=4, layers=2, rngs=rngs(1))
    g_opt = nnx.Optimizer(generator, make_optimizer({"learning_rate": 1e-4}), wrt=nnx.Param)
    c_opt = nnx.Optimizer(critic, make_optimizer({"learning_rate": 1e-3}), wrt=nnx.Param)
    step = make_gan_step({"ssim": 0.84, "l1": 0.16}, adversarial="wgan-gp", critic_steps=2)
    g0, c0 = (jax.tree.map(np.asarray, nnx.state(m, nnx.Param)) for m in (generator, critic))
    clean = _blobs(rng, 2)
    batch = {"inputs": {"x": jnp.asarray(clean + 0.1 * rng.standard_normal(clean.shape), jnp.float32)},
             "target": jnp.asarray(clean)}
    for i in range(2):
        out = step(generator, critic, g_opt, c_opt, batch, jax.random.key(i))
        assert all(np.isfinite(float(v)) for v in out.values())
        assert float(out["gradient_penalty"]) > 0
        np.testing.assert_allclose(out["generator"], out["pixel"] + 1e-3 * out["adversarial"], rtol=1e-5)
    for before, model in ((g0, generator), (c0, critic)):
        changed = jax.tree.map(lambda a, b: not np.array_equal(a, b), before, nnx.state(model, nnx.Param))
        assert all(jax.tree.leaves(changed))
    complex_target = {"inputs": batch["inputs"], "target": batch["target"].astype(jnp.complex64)}
    with pytest.raises(ShapeError, match="needs both alike"):  # complex outputs of real targets are
        step(generator, critic, g_opt, c_opt, complex_target, jax.random.key(0))  # taken in magnitude


@pytest.mark.parametrize("pad", [0, 4])
def test_red_cnn_layers_match_flax_values_and_gradients(pad):
    """RED-CNN's layers run through recon.gan._fast_conv (a cropped 'same' convolution, a custom
    kernel gradient); values and both gradients must equal flax's Conv / ConvTranspose."""
    from recon.gan import _layer

    layer = (nnx.Conv(3, 4, (5, 5), padding="VALID", rngs=rngs()) if pad == 0
             else nnx.ConvTranspose(3, 4, (5, 5), padding="VALID", rngs=rngs()))
    x = jax.random.normal(jax.random.key(2), (2, 11, 9, 3))
    np.testing.assert_allclose(_layer(layer, x, pad), layer(x), rtol=1e-5, atol=1e-5)

    kernel = layer.kernel[...]
    fast = jax.grad(lambda k, v: jnp.sum(jnp.sin(_layer_with(layer, k, v, pad))), argnums=(0, 1))
    plain = jax.grad(lambda k, v: jnp.sum(jnp.sin(_flax_with(layer, k, v, pad))), argnums=(0, 1))(kernel, x)
    for gradients in (fast(kernel, x), jax.jit(fast)(kernel, x)):  # the host kernel gradient, eager and jitted
        for a, b in zip(gradients, plain):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(b))))


def test_conv_kernel_gradient_host_kernel(rng):
    from kernels.conv_grad import conv_kernel_gradient

    xp = rng.standard_normal((2, 9, 8, 3)).astype(np.float32)
    dy = rng.standard_normal((2, 5, 4, 4)).astype(np.float32)  # a 5x5 kernel: 9 - 4 by 8 - 4
    expected = np.stack([np.stack([np.einsum("bhwc,bhwo->co", xp[:, i:i + 5, j:j + 4], dy) for j in range(5)])
                         for i in range(5)])
    np.testing.assert_allclose(conv_kernel_gradient(xp, dy, 5), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="does not match"):
        conv_kernel_gradient(xp, dy, 3)


def _layer_with(layer, kernel, x, pad):
    from recon.gan import _fast_conv

    return _fast_conv(x, kernel, pad) + layer.bias[...]


def _flax_with(layer, kernel, x, pad):
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), [(pad, pad)] * 2,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC")) + layer.bias[...]
