"""Network building blocks: complex <-> channels, fastMRI U-Net, NormUNet, DnCNN, Fields of Experts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from physics.errors import ShapeError
from recon.nets import (ConvNet, DnCNN, FieldsOfExperts, NormUNet, UNet, from_channels, parameter_count,
                        to_channels)
from tests.conftest import complex_normal, rngs


def test_channels_round_trip(rng):
    z = complex_normal(rng, (2, 3, 5, 7))
    h = to_channels(z)
    assert h.shape == (2, 3, 5, 7, 2) and h.dtype == jnp.float32
    np.testing.assert_array_equal(h[..., 0], z.real)
    np.testing.assert_array_equal(h[..., 1], z.imag)
    back = from_channels(h)
    assert back.dtype == jnp.complex64
    np.testing.assert_array_equal(back, z)
    r = rng.standard_normal((4, 6)).astype(np.float32)
    assert to_channels(r).shape == (4, 6, 1)
    np.testing.assert_array_equal(from_channels(to_channels(r)), r)
    with pytest.raises(ShapeError, match="1 .*or 2"):
        from_channels(jnp.zeros((4, 6, 3)))


def _fastmri_unet_parameters(in_chans: int, out_chans: int, chans: int, pools: int) -> int:
    """Weights of fastMRI's ``Unet`` counted from its layer list (3x3 convs without bias in
    ConvBlocks, 2x2 transpose convs without bias, a final 1x1 conv with bias, norms without affine)."""
    conv_block = lambda a, b: 9 * a * b + 9 * b * b  # noqa: E731
    total, ch = conv_block(in_chans, chans), chans
    for _ in range(pools - 1):
        total += conv_block(ch, 2 * ch)
        ch *= 2
    total += conv_block(ch, 2 * ch)  # bottom
    for _ in range(pools):
        total += 4 * (2 * ch) * ch + conv_block(2 * ch, ch)  # transpose conv, then ConvBlock
        ch //= 2
    return total + chans * out_chans + out_chans


@pytest.mark.parametrize("args", [(1, 1, 32, 4), (2, 2, 18, 4), (2, 3, 4, 2)])
def test_unet_has_the_fastmri_layers(args):
    model = nnx.eval_shape(lambda: UNet(*args, rngs=nnx.Rngs(0)))
    assert parameter_count(model) == _fastmri_unet_parameters(*args)
    if args == (1, 1, 32, 4):
        assert parameter_count(model) == 7_756_097  # fastMRI's single-coil U-Net baseline


@pytest.mark.parametrize("shape", [(32, 32), (30, 27), (17, 9)])
def test_unet_pads_and_crops_any_size(shape):
    model, run = UNet(2, 3, chans=4, pools=3, rngs=rngs(0)), nnx.jit(lambda m, h: m(h))
    h = jax.random.normal(jax.random.key(0), (2, 3, *shape, 2))
    out = run(model, h)
    assert out.shape == (2, 3, *shape, 3) and out.dtype == jnp.float32
    # items are independent (instance norm, no batch statistics): batch == one at a time
    np.testing.assert_allclose(out[1, 2], run(model, h[1, 2]), rtol=1e-4, atol=1e-5)


def test_unet_pads_symmetrically_like_fastmri():
    """A 29 x 27 input is zero-padded to 32 x 28 (multiples of 2^pools) as fastMRI's NormUnet
    pads (half the padding, rounded down, before; the rest after) and cropped back: the same as
    padding it by hand."""
    model = UNet(2, 2, chans=4, pools=2, rngs=rngs(0))
    h = jax.random.normal(jax.random.key(1), (29, 27, 2))
    by_hand = model(jnp.pad(h, ((1, 2), (0, 1), (0, 0))))[1:30, 0:27]
    np.testing.assert_allclose(model(h), by_hand, rtol=1e-5, atol=1e-5)


def test_normunet_is_scale_equivariant(rng):
    model = NormUNet(True, chans=4, pools=2, rngs=rngs(1))
    z = jnp.asarray(complex_normal(rng, (3, 20, 24)))
    out = model(z)
    assert out.shape == z.shape and out.dtype == jnp.complex64
    np.testing.assert_allclose(model(250.0 * z), 250.0 * out, rtol=1e-4,
                               atol=1e-4 * float(jnp.abs(250 * out).max()))
    real = NormUNet(False, chans=4, pools=2, rngs=rngs(1))
    r = jnp.asarray(rng.standard_normal((20, 24)), jnp.float32)
    assert real(r).shape == (20, 24) and real(r).dtype == jnp.float32


def test_dncnn_is_residual(rng):
    model = DnCNN(True, features=8, depth=4, rngs=rngs(0))
    assert parameter_count(model) == (9 * 2 * 8 + 8) + 2 * (9 * 8 * 8 + 8) + (9 * 8 * 2 + 2)
    z = jnp.asarray(complex_normal(rng, (2, 16, 16)))
    assert model(z).shape == z.shape and model(z).dtype == jnp.complex64
    # with the noise estimator's last layer zeroed, D is the identity
    last = model.noise.layers[-1]
    last.kernel[...] = jnp.zeros_like(last.kernel[...])
    last.bias[...] = jnp.zeros_like(last.bias[...])
    np.testing.assert_array_equal(model(z), z)
    with pytest.raises(ShapeError, match="depth"):
        ConvNet(2, 2, 8, 0, rngs=rngs(0))


@pytest.mark.parametrize("complex_images", [True, False])
def test_fields_of_experts_gradient_matches_finite_differences(rng, complex_images):
    model = FieldsOfExperts(complex_images, filters=6, kernel_size=5, rbf=9, vmax=2.0, rngs=rngs(3))
    shape = (2, 12, 14)
    if complex_images:
        x, d = complex_normal(rng, shape), complex_normal(rng, shape)
    else:
        x, d = (rng.standard_normal(shape).astype(np.float32) for _ in range(2))
    grad = model(jnp.asarray(x))
    assert grad.shape == shape and grad.dtype == x.dtype
    assert model.energy(jnp.asarray(x)).shape == (2,)
    with jax.enable_x64(True):  # central differences of the energy in float64 (parameters cast)
        params = nnx.state(model, nnx.Param)
        model64 = nnx.merge(nnx.graphdef(model), jax.tree.map(lambda p: p.astype(jnp.float64), params))
        x64, d64 = (np.asarray(v, np.complex128 if complex_images else np.float64) for v in (x, d))
        eps = 1e-4
        fd = float(jnp.sum(model64.energy(jnp.asarray(x64 + eps * d64))
                           - model64.energy(jnp.asarray(x64 - eps * d64)))) / (2 * eps)
    directional = float(np.sum(np.real(np.conj(np.asarray(grad)) * d)))  # Re <grad, d>
    assert directional == pytest.approx(fd, rel=1e-4)
