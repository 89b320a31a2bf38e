"""physics.bridge.host_function: a NumPy function inside jit and vmap."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from physics.bridge import host_function


def test_host_function_eager_jit_and_vmap(rng):
    a = rng.standard_normal((3, 4, 5)).astype(np.float32)
    b = rng.standard_normal((3, 5)).astype(np.float32)

    def product(x, y):
        return host_function(np.matmul, jax.ShapeDtypeStruct(x.shape[:-1], jnp.float32), x, y)

    expected = np.einsum("nij,nj->ni", a, b)
    np.testing.assert_allclose(jax.vmap(product)(a, b), expected, rtol=1e-5)
    np.testing.assert_allclose(jax.jit(jax.vmap(product))(a, b), expected, rtol=1e-5)
    np.testing.assert_allclose(product(a[0], b[0]), expected[0], rtol=1e-5)
    assert product(a[0], b[0]).dtype == jnp.float32
