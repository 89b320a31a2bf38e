"""Property tests over every operator of physics/: adjoint, normal, jit, vmap, grad, shapes."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sigpy.mri

from physics import (FFT, CartesianMRI, MultiCoilMRI, ShapeError, adjoint_error)
from tests.conftest import complex_normal


def _maps(rng, shape):
    return jnp.asarray(complex_normal(rng, shape))


def make(name, rng):
    mask1d = jnp.asarray(rng.random(16) < 0.4, jnp.float32)
    mask2d = jnp.asarray(rng.random((12, 16)) < 0.4, jnp.float32)
    if name == "fft":
        return FFT((12, 16))
    if name == "mc-1d-mask":
        return MultiCoilMRI(_maps(rng, (4, 12, 16)), mask1d)
    if name == "mc-2d-mask":
        return MultiCoilMRI(_maps(rng, (4, 12, 16)), mask2d)
    if name == "mc-weights":
        return MultiCoilMRI(_maps(rng, (3, 12, 16)), jnp.asarray(rng.random((12, 16)), jnp.float32))
    if name == "mc-3d":
        return MultiCoilMRI(_maps(rng, (3, 6, 8, 10)), jnp.asarray(rng.random((8, 10)) < 0.5, jnp.float32), ndim=3)
    if name == "mc-odd":
        return MultiCoilMRI(_maps(rng, (2, 9, 11)), jnp.float32(1.0))
    if name == "single-coil":
        return CartesianMRI(mask2d, (12, 16))
    if name == "composed":
        return FFT((12, 16)).H @ CartesianMRI(mask2d, (12, 16))
    if name == "adjoint":
        return MultiCoilMRI(_maps(rng, (4, 12, 16)), mask1d).H
    raise KeyError(name)


OPERATORS = ["fft", "mc-1d-mask", "mc-2d-mask", "mc-weights", "mc-3d", "mc-odd", "single-coil",
             "composed", "adjoint"]


@pytest.mark.parametrize("name", OPERATORS)
def test_adjoint(name, rng):
    A = make(name, rng)
    for seed in range(3):
        assert adjoint_error(A, jax.random.key(seed)) < 1e-6


@pytest.mark.parametrize("name", OPERATORS)
def test_normal_is_adjoint_of_forward(name, rng):
    A = make(name, rng)
    x = jnp.asarray(complex_normal(rng, A.in_shape))
    np.testing.assert_allclose(A.normal(x), A.adjoint(A(x)), atol=1e-5)


@pytest.mark.parametrize("name", OPERATORS)
def test_jit_vmap_and_batch_axes(name, rng):
    A = make(name, rng)
    x = jnp.asarray(complex_normal(rng, (3, *A.in_shape)))
    y = jax.jit(lambda op, v: op(v))(A, x)  # the operator itself is a jit argument (pytree)
    assert y.shape == (3, *A.out_shape) and y.dtype == jnp.complex64
    np.testing.assert_allclose(jax.vmap(A)(x), y, atol=1e-5)  # leading axes broadcast
    np.testing.assert_allclose(y[1], A(x[1]), atol=1e-5)
    leaves, tree = jax.tree.flatten(A)
    assert jax.tree.unflatten(tree, leaves).shape == A.shape


@pytest.mark.parametrize("name", OPERATORS)
def test_grad_of_data_term(name, rng):
    """grad of 0.5||Ax - y||^2 is A^H(Ax - y) (JAX returns the conjugate of the Wirtinger form)."""
    A = make(name, rng)
    x = jnp.asarray(complex_normal(rng, A.in_shape))
    y = jnp.asarray(complex_normal(rng, A.out_shape))
    g = jax.grad(lambda v: 0.5 * jnp.sum(jnp.abs(A(v) - y) ** 2))(x)
    np.testing.assert_allclose(jnp.conj(g), A.adjoint(A(x) - y), atol=1e-4)


def test_operator_in_vmap_over_maps(rng):
    maps = _maps(rng, (5, 4, 12, 16))  # a batch of 5 slices, each with its own maps
    x = jnp.asarray(complex_normal(rng, (5, 12, 16)))
    mask = jnp.ones(16)
    y = jax.vmap(lambda m, v: MultiCoilMRI(m, mask)(v))(maps, x)
    np.testing.assert_allclose(y[2], MultiCoilMRI(maps[2], mask)(x[2]), atol=1e-5)


def test_multicoil_matches_sigpy_sense(rng):
    maps = complex_normal(rng, (6, 20, 24))
    mask = (rng.random(24) < 0.5).astype(np.float32)
    x = complex_normal(rng, (20, 24))
    S = sigpy.mri.linop.Sense(maps, weights=np.broadcast_to(mask, (20, 24)))
    A = MultiCoilMRI(jnp.asarray(maps), jnp.asarray(mask))
    y = complex_normal(rng, (6, 20, 24)) * mask
    np.testing.assert_allclose(A(x), S * x, atol=1e-4)
    np.testing.assert_allclose(A.adjoint(y), S.H * y, atol=1e-4)


def test_multicoil_3d_matches_sigpy(rng):
    maps = complex_normal(rng, (3, 4, 6, 8))
    x = complex_normal(rng, (4, 6, 8))
    S = sigpy.mri.linop.Sense(maps)
    np.testing.assert_allclose(MultiCoilMRI(jnp.asarray(maps), 1.0, ndim=3)(x), S * x, atol=1e-4)


def test_shape_errors(rng):
    A = make("mc-1d-mask", rng)
    with pytest.raises(ShapeError, match=r"expected an array ending in shape \(12, 16\), got \(12, 15\)"):
        A(jnp.zeros((12, 15), jnp.complex64))
    with pytest.raises(ShapeError, match="adjoint input"):
        A.adjoint(jnp.zeros((3, 12, 16), jnp.complex64))
    with pytest.raises(ShapeError, match="mask of shape"):
        MultiCoilMRI(_maps(rng, (4, 12, 16)), jnp.ones(15))
    with pytest.raises(ShapeError, match="maps must have shape"):
        MultiCoilMRI(_maps(rng, (12, 16)), jnp.ones(16))
    with pytest.raises(ShapeError, match="cannot compose"):
        FFT((8, 8)) @ A


def test_operators_are_immutable(rng):
    A = make("mc-1d-mask", rng)
    with pytest.raises(dataclasses.FrozenInstanceError):
        A.mask = jnp.zeros(16)
    B = dataclasses.replace(A, mask=jnp.zeros(16))
    x = jnp.asarray(complex_normal(rng, A.in_shape))
    assert float(jnp.abs(B(x)).max()) == 0.0 and float(jnp.abs(A(x)).max()) > 0
