"""NonCartesianMRI (adjoint, Toeplitz normal, weights, jit/vmap/grad), coil maps from radial data,
and the real 12-channel radial cardiac data against its exact gridding reference."""

from __future__ import annotations

import dataclasses

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from physics.errors import InvalidDataError, ShapeError
from physics.linop import adjoint_error
from physics.noncartesian import NonCartesianMRI, noncartesian_maps
from physics.nufft import ACCURACY, NUFFT
from physics.phantom import birdcage_maps, brain_phantom
from physics.trajectory import radial_2d, ramp_dcf, stack_of_stars
from tests.conftest import complex_normal, nudft_matrix

BACKENDS = ["numba", "jax"]


def rel(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


@pytest.fixture(scope="module")
def radial():
    """4 coils, 20 x 24 image, 24 spokes x 48 samples, and the ramp DCF."""
    shape = (20, 24)
    k = radial_2d(24, 48, image_shape=shape, golden=True)
    return shape, jnp.asarray(birdcage_maps((4, *shape))), k, ramp_dcf(k, shape)


# ------------------------------------------------------------------------------------------------
# the operator
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("weighted", [False, True])
def test_adjoint_and_toeplitz_normal(radial, rng, backend, weighted):
    shape, maps, k, dcf = radial
    A = NonCartesianMRI(maps, k, weights=dcf if weighted else None, width=6, backend=backend)
    assert A.in_shape == shape and A.out_shape == (4, 24, 48)
    assert adjoint_error(A, jax.random.key(0)) < 1e-6
    x = complex_normal(rng, (2, *shape))
    assert rel(A.normal(x), A.adjoint(A(x))) < 1e-4


def test_toeplitz_normal_against_exact_nudft(radial, rng):
    """At the default width both the Toeplitz normal and A^H A are within the NUFFT's accuracy of
    the exact S^H E^H W E S (float64)."""
    shape, maps, k, dcf = radial
    A = NonCartesianMRI(maps, k, weights=dcf)
    E = nudft_matrix(k.reshape(-1, 2), shape)
    x = complex_normal(rng, shape)
    S = np.asarray(maps).reshape(4, -1)
    exact = np.sum(S.conj() * (E.conj().T @ (dcf.reshape(-1, 1) * (E @ (S * x.reshape(-1)).T))).T, axis=0)
    assert rel(np.ravel(A.normal(x)), exact) < 2 * ACCURACY[4]
    assert rel(np.ravel(A.adjoint(A(x))), exact) < 2 * ACCURACY[4]


def test_3d_stack_of_stars(rng):
    shape = (6, 10, 12)
    k = stack_of_stars(8, 20, 6, image_shape=shape)
    A = NonCartesianMRI(jnp.asarray(birdcage_maps((4, *shape))), k, width=6)
    assert A.out_shape == (4, 6, 8, 20)
    assert adjoint_error(A, jax.random.key(1)) < 1e-6
    x = complex_normal(rng, shape)
    assert rel(A.normal(x), A.adjoint(A(x))) < 1e-4


@pytest.mark.parametrize("backend", BACKENDS)
def test_jit_vmap_grad(radial, rng, backend):
    shape, maps, k, dcf = radial
    A = NonCartesianMRI(maps, k, weights=dcf, backend=backend)
    x = jnp.asarray(complex_normal(rng, (3, *shape)))
    y = jax.jit(lambda op, v: op(v))(A, x)  # the operator is a jit argument
    assert y.shape == (3, *A.out_shape) and y.dtype == jnp.complex64
    np.testing.assert_allclose(jax.vmap(A)(x), y, atol=1e-5)
    np.testing.assert_allclose(jax.jit(lambda op, v: op.normal(v))(A, x), A.normal(x), atol=1e-5)
    target = jnp.asarray(complex_normal(rng, A.out_shape))
    g = jax.grad(lambda v: 0.5 * jnp.sum(jnp.abs(A(v) - target) ** 2))(x[0])
    np.testing.assert_allclose(jnp.conj(g), A.adjoint(A(x[0]) - target), atol=1e-4)


def test_replace_recomputes_the_toeplitz_kernel(radial, rng):
    shape, maps, k, dcf = radial
    A = NonCartesianMRI(maps, k, width=6)
    B = dataclasses.replace(A, weights=jnp.asarray(dcf))
    assert B.toeplitz is not A.toeplitz
    x = complex_normal(rng, shape)
    assert rel(B.normal(x), B.adjoint(B(x))) < 1e-4
    leaves, tree = jax.tree.flatten(B)
    assert jax.tree.unflatten(tree, leaves).toeplitz is B.toeplitz  # no recomputation


def test_bad_operator_input(radial):
    shape, maps, k, dcf = radial
    with pytest.raises(ShapeError, match="spatial axes"):
        NonCartesianMRI(maps[0], k)
    with pytest.raises(ShapeError, match="sample shape"):
        NonCartesianMRI(maps, k, weights=dcf[:3])
    with pytest.raises(InvalidDataError, match=">= 0"):
        NonCartesianMRI(maps, k, weights=-dcf)
    with pytest.raises(InvalidDataError, match="outside"):
        NonCartesianMRI(maps, 2 * k)


# ------------------------------------------------------------------------------------------------
# coil maps from non-Cartesian data
# ------------------------------------------------------------------------------------------------
def _correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per pixel ``|<a, b>| / (||a|| ||b||)`` over coils (1: equal up to a phase)."""
    num = np.abs(np.sum(a * np.conj(b), axis=0))
    return num / np.maximum(np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0), 1e-30)


def test_noncartesian_maps_recover_the_true_maps():
    shape = (64, 64)
    image, maps = brain_phantom(shape, seed=3), birdcage_maps((8, *shape))
    k = radial_2d(100, 128, image_shape=shape)
    kspace = np.asarray(NUFFT(k, shape, width=6)(maps * image))
    estimate = np.asarray(noncartesian_maps(kspace, k, shape, calib=24))
    assert estimate.shape == (8, *shape) and estimate.dtype == np.complex64
    obj = np.abs(image) > 0.05 * np.abs(image).max()
    assert _correlation(estimate, maps)[obj].min() > 0.999
    np.testing.assert_allclose(np.linalg.norm(estimate, axis=0)[obj], 1, atol=1e-3)
    with pytest.raises(InvalidDataError, match="calib"):
        noncartesian_maps(kspace, k, shape, calib=4)
    with pytest.raises(ShapeError, match="coils, \\*samples"):
        noncartesian_maps(kspace[:, :5], k, shape)


# ------------------------------------------------------------------------------------------------
# real data: 12-channel radial cardiac slice
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cardiac(data_dir):
    with h5py.File(data_dir / "cardiac_radial_12ch_real.h5", "r") as f:
        return f["kspace"][0], f["trajectory"][()], f["dcf"][()], f["gridding_rss"][0]


def to_convention(trajectory: np.ndarray, n: int) -> np.ndarray:
    """The file's (kx, ky) in cycles/pixel in [-0.5, 0.5] -> our (ky, kx) in cycles/FOV of an
    ``n x n`` image: reversed axes, times n, and +n/2 (kx = 0.5 occurs) wrapped to -n/2."""
    k = (trajectory[..., ::-1] * n).astype(np.float32)
    return np.where(k >= n / 2, k - n, k)


def test_real_radial_gridding_matches_reference(cardiac):
    """image_shape 256 x 256 as the reference (the readout is 2x oversampled, so 256 pixels span
    twice the nominal 128-pixel FOV and k = 256 * traj stays within [-128, 128)). Our adjoint is
    orthonormal: gridding_rss = 256 * ours (1 / sqrt(256^2)), same orientation."""
    kspace, trajectory, dcf, reference = cardiac
    k = to_convention(trajectory, 256)
    images = NUFFT(k, (256, 256)).adjoint(jnp.asarray(kspace * dcf))  # (12, 256, 256)
    rss = np.sqrt(np.sum(np.abs(np.asarray(images)) ** 2, axis=0))
    assert np.corrcoef(rss.ravel(), reference.ravel())[0, 1] > 0.99  # measured: 1 - 5e-8
    assert rel(256 * rss, reference) < 1e-3  # measured: 1.4e-4 at width 4
    maps = np.asarray(noncartesian_maps(kspace, k, (256, 256), dcf=dcf))
    assert maps.shape == (12, 256, 256) and np.all(np.isfinite(maps))
    norm = np.linalg.norm(maps, axis=0)
    assert np.all(np.abs(norm[norm > 0] - 1) < 1e-3) and (norm > 0).mean() > 0.2
