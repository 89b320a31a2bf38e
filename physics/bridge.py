"""The one bridge from host (Numba, NumPy) kernels into JAX: linear maps with exact adjoints, and
plain host functions.

:func:`linear_callback` wraps a pair of NumPy functions ``forward: X -> Y`` and
``adjoint: Y -> X`` (the exact adjoint of ``forward``) into a JAX function that works inside
``jit`` (through ``jax.pure_callback``), under ``vmap`` (leading batch axes are handed to the host
function, which loops over them) and under reverse-mode differentiation (``jax.custom_vjp``: the
VJP of a linear map ``A`` is its transpose ``A^T g = conj(A^H conj(g))``, computed by ``adjoint``).
Forward-mode differentiation (``jvp``) is not available through a callback.
:func:`host_function` runs any NumPy function inside ``jit`` (not differentiable; meant for the
backward passes of ``custom_vjp`` rules).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

HostFn = Callable[[np.ndarray], np.ndarray]


def _host_call(fn: HostFn, x: jax.Array, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
               in_dtype, out_dtype) -> jax.Array:
    """Apply ``fn`` (one item ``in_shape -> out_shape``) to every item of ``x``'s leading axes."""
    batch = x.shape[:x.ndim - len(in_shape)]
    result = jax.ShapeDtypeStruct((*batch, *out_shape), out_dtype)

    def host(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, in_dtype)
        lead = a.shape[:a.ndim - len(in_shape)]  # under vmap, batch axes may be added in front
        items = a.reshape((-1, *in_shape))
        out = np.empty((items.shape[0], *out_shape), out_dtype)
        for i, item in enumerate(items):
            out[i] = fn(item)
        return out.reshape((*lead, *out_shape))

    return jax.pure_callback(host, result, x.astype(in_dtype), vmap_method="expand_dims")


def linear_callback(forward: HostFn, adjoint: HostFn, in_shape: tuple[int, ...],
                    out_shape: tuple[int, ...], in_dtype=jnp.float32,
                    out_dtype=jnp.float32) -> tuple[Callable[[jax.Array], jax.Array],
                                                    Callable[[jax.Array], jax.Array]]:
    """JAX functions ``(A, A_adjoint)`` calling the host kernels ``forward`` and ``adjoint``.

    Args:
        forward: NumPy function mapping one array of ``in_shape``/``in_dtype`` to one of
            ``out_shape``/``out_dtype``.
        adjoint: its exact adjoint, ``out_shape -> in_shape``.
    Returns:
        Two JAX functions that accept arrays with any leading batch axes.
    """
    in_dtype, out_dtype = jnp.dtype(in_dtype), jnp.dtype(out_dtype)
    complex_ = jnp.issubdtype(in_dtype, jnp.complexfloating) or jnp.issubdtype(out_dtype, jnp.complexfloating)

    def transpose(fn: HostFn) -> HostFn:  # A^T g = conj(A^H conj(g)): JAX's cotangent convention
        return (lambda g: np.conj(fn(np.conj(g)))) if complex_ else fn

    fwd_t, adj_t = transpose(forward), transpose(adjoint)

    @jax.custom_vjp
    def apply(x):
        return _host_call(forward, x, in_shape, out_shape, in_dtype, out_dtype)

    @jax.custom_vjp
    def apply_adjoint(y):
        return _host_call(adjoint, y, out_shape, in_shape, out_dtype, in_dtype)

    apply.defvjp(lambda x: (apply(x), None),
                 lambda _, g: (_host_call(adj_t, g, out_shape, in_shape, out_dtype, in_dtype),))
    apply_adjoint.defvjp(lambda y: (apply_adjoint(y), None),
                         lambda _, g: (_host_call(fwd_t, g, in_shape, out_shape, in_dtype, out_dtype),))
    return apply, apply_adjoint


def host_function(fn: Callable[..., np.ndarray], result: jax.ShapeDtypeStruct, *args: jax.Array) -> jax.Array:
    """``fn(*args)`` computed on the host as NumPy arrays, inside or outside ``jit``; ``result`` gives
    the shape and dtype it returns. Under ``vmap`` it is called once per item."""
    def host(*arrays: np.ndarray) -> np.ndarray:
        return np.asarray(fn(*(np.asarray(a) for a in arrays)), result.dtype)

    return jax.pure_callback(host, result, *args, vmap_method="sequential")
