"""Linear operators as immutable JAX pytrees.

An operator is a frozen dataclass registered with :mod:`jax.tree_util`: array fields are pytree
leaves (so operators pass through ``jit``, ``vmap`` and ``grad``), fields declared with
:func:`static` are hashable metadata. Subclasses implement ``_forward`` and ``_adjoint`` (and may
override ``_normal`` where a faster form exists) and the shape/dtype properties; the base class
checks shapes, and provides ``A(x)``, ``A.adjoint(y)``, ``A.normal(x)``, ``A.H`` and ``A @ B``.

Operators act on the trailing ``in_shape`` axes; leading axes are batch axes and broadcast.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from physics.errors import ShapeError

Shape = tuple[int, ...]
T = TypeVar("T")


def static(**kwargs: Any) -> Any:
    """A dataclass field that is pytree metadata (hashable, part of the jit cache key)."""
    return dataclasses.field(metadata={"static": True}, **kwargs)


def operator(cls: type[T]) -> type[T]:
    """Class decorator: make ``cls`` a frozen dataclass and register it as a pytree."""
    cls = dataclasses.dataclass(frozen=True, repr=False)(cls)
    fields = dataclasses.fields(cls)
    jax.tree_util.register_dataclass(
        cls,
        data_fields=[f.name for f in fields if not f.metadata.get("static")],
        meta_fields=[f.name for f in fields if f.metadata.get("static")],
    )
    return cls


def _check_trailing(x: jax.Array, shape: Shape, what: str, op: object) -> None:
    if tuple(x.shape[x.ndim - len(shape):]) != tuple(shape) or x.ndim < len(shape):
        raise ShapeError(
            f"{type(op).__name__} {what}: expected an array ending in shape {tuple(shape)}, "
            f"got {tuple(x.shape)}"
        )


class LinearOperator:
    """Base class: ``y = A(x)``, ``x = A.adjoint(y)``, ``A.normal(x) = A^H A x``."""

    # -- to implement ----------------------------------------------------------------------
    @property
    def in_shape(self) -> Shape:
        raise NotImplementedError

    @property
    def out_shape(self) -> Shape:
        raise NotImplementedError

    @property
    def in_dtype(self) -> jnp.dtype:
        return jnp.dtype(jnp.complex64)

    @property
    def out_dtype(self) -> jnp.dtype:
        return jnp.dtype(jnp.complex64)

    def _forward(self, x: jax.Array) -> jax.Array:
        raise NotImplementedError

    def _adjoint(self, y: jax.Array) -> jax.Array:
        raise NotImplementedError

    def _normal(self, x: jax.Array) -> jax.Array:
        return self._adjoint(self._forward(x))

    # -- public interface ------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"{type(self).__name__}({tuple(self.in_shape)} -> {tuple(self.out_shape)})"

    @property
    def shape(self) -> tuple[Shape, Shape]:
        """``(out_shape, in_shape)``."""
        return self.out_shape, self.in_shape

    def __call__(self, x: jax.Array) -> jax.Array:
        _check_trailing(x, self.in_shape, "input", self)
        return self._forward(x)

    def adjoint(self, y: jax.Array) -> jax.Array:
        _check_trailing(y, self.out_shape, "adjoint input", self)
        return self._adjoint(y)

    def normal(self, x: jax.Array) -> jax.Array:
        _check_trailing(x, self.in_shape, "normal input", self)
        return self._normal(x)

    @property
    def H(self) -> "LinearOperator":
        return Adjoint(self)

    def __matmul__(self, other: Any) -> Any:
        if isinstance(other, LinearOperator):
            if tuple(self.in_shape) != tuple(other.out_shape):
                raise ShapeError(
                    f"cannot compose {type(self).__name__} (input {tuple(self.in_shape)}) with "
                    f"{type(other).__name__} (output {tuple(other.out_shape)})"
                )
            return Composed(self, other)
        return self(other)


@operator
class Adjoint(LinearOperator):
    """The adjoint ``A^H`` of an operator, as an operator."""

    op: LinearOperator

    in_shape = property(lambda self: self.op.out_shape)
    out_shape = property(lambda self: self.op.in_shape)
    in_dtype = property(lambda self: self.op.out_dtype)
    out_dtype = property(lambda self: self.op.in_dtype)

    def _forward(self, x):
        return self.op._adjoint(x)

    def _adjoint(self, y):
        return self.op._forward(y)

    @property
    def H(self) -> LinearOperator:
        return self.op


@operator
class Composed(LinearOperator):
    """``outer @ inner``: applies ``inner`` then ``outer``."""

    outer: LinearOperator
    inner: LinearOperator

    in_shape = property(lambda self: self.inner.in_shape)
    out_shape = property(lambda self: self.outer.out_shape)
    in_dtype = property(lambda self: self.inner.in_dtype)
    out_dtype = property(lambda self: self.outer.out_dtype)

    def _forward(self, x):
        return self.outer._forward(self.inner._forward(x))

    def _adjoint(self, y):
        return self.inner._adjoint(self.outer._adjoint(y))


@operator
class Scaled(LinearOperator):
    """``c A`` for a real scalar ``c`` (a pytree leaf, so it may be traced), e.g. ``A / ||A||``."""

    op: LinearOperator
    factor: jax.Array

    in_shape = property(lambda self: self.op.in_shape)
    out_shape = property(lambda self: self.op.out_shape)
    in_dtype = property(lambda self: self.op.in_dtype)
    out_dtype = property(lambda self: self.op.out_dtype)

    def _forward(self, x):
        return (self.factor * self.op._forward(x)).astype(self.out_dtype)

    def _adjoint(self, y):
        return (self.factor * self.op._adjoint(y)).astype(self.in_dtype)

    def _normal(self, x):
        return (self.factor ** 2 * self.op._normal(x)).astype(self.in_dtype)


@operator
class Identity(LinearOperator):
    """The identity on arrays of shape ``shape``."""

    shape_: Shape = static()
    dtype_: str = static(default="complex64")

    in_shape = out_shape = property(lambda self: tuple(self.shape_))
    in_dtype = out_dtype = property(lambda self: jnp.dtype(self.dtype_))

    def _forward(self, x):
        return x

    _adjoint = _forward


def _random(key: jax.Array, shape: Shape, dtype: jnp.dtype) -> jax.Array:
    if jnp.issubdtype(dtype, jnp.complexfloating):
        kr, ki = jax.random.split(key)
        real = jnp.finfo(dtype).dtype
        return (jax.random.normal(kr, shape, real) + 1j * jax.random.normal(ki, shape, real)).astype(dtype)
    return jax.random.normal(key, shape, dtype)


def adjoint_error(op: LinearOperator, key: jax.Array) -> float:
    """Relative dot-product-test error ``|<Ax, y> - <x, A^H y>| / (||Ax|| ||y||)``.

    ``x`` and ``y`` are standard (complex) Gaussian of the operator's input and output shapes.
    An exact adjoint gives a value at the level of the floating-point precision (~1e-7 in
    float32).
    """
    kx, ky = jax.random.split(key)
    x = _random(kx, op.in_shape, op.in_dtype)
    y = _random(ky, op.out_shape, op.out_dtype)
    ax, aty = op(x), op.adjoint(y)
    lhs = jnp.vdot(ax.ravel(), y.ravel())
    rhs = jnp.vdot(x.ravel(), aty.ravel())
    scale = jnp.linalg.norm(ax.ravel()) * jnp.linalg.norm(y.ravel())
    return float(np.abs(np.asarray(lhs - rhs)) / max(float(scale), np.finfo(np.float32).tiny))
