r"""Unrolled reconstruction networks: every cascade runs the real physics operator.

VarNet, MoDL and the learned primal-dual see only a linear operator of :mod:`physics`
(``A(x)``, ``A.adjoint(y)``, ``A.normal(x)``) and its data ``y (..., *A.out_shape)``, so one model
runs on Cartesian, non-Cartesian and CT operators; they return ``(..., *A.in_shape)`` images in
``A.in_dtype``. E2E-VarNet is Cartesian multi-coil: ``(masked_kspace, mask) -> RSS image``.

Scale. VarNet, MoDL and LPD divide the data by ``s``, the root-mean-square of ``A^H y`` over the
image of each item, and multiply the result by ``s``: the models are scale-equivariant,
``model(A, a y) = a model(A, y)`` for real ``a > 0``, and their networks see images of unit RMS.
E2E-VarNet is scale-equivariant without a global scale: its U-Nets normalise their input by its
mean and standard deviation (fastMRI's ``NormUnet``), its sensitivity maps are divided by their
RSS, and data consistency is linear. Step sizes (``alpha_t``, ``lambda``) are relative to
``||A^H A||``: normalise operators to ``||A|| ~ 1`` (coil maps with ``sum_c |S_c|^2 = 1``;
``physics.linop.Scaled(A, 1 / recon.power.operator_norm(A))`` for CT).

Zero cascades give these baselines: VarNet ``A^H y``; MoDL the Tikhonov (CG-SENSE) solution
``(A^H A + lambda I)^{-1} A^H y`` with the learned ``lambda``; E2E-VarNet the RSS of the
zero-filled coil images; LPD ``0`` (its memories start at zero, as in Adler & Oktem).

Cascades are unrolled Python loops; ``remat=True`` wraps each cascade in :func:`nnx.remat`
(activations recomputed in the backward pass: memory of one cascade instead of all).
Every model is built from a typed config (:meth:`ModelConfig.to_dict` / ``from_dict``, JSON
ready) by :func:`build_model`. The registry also holds the image-to-image denoisers that the GAN
training of :mod:`recon.gan` trains as generators (enhancers, plug-and-play priors):
:class:`REDCNNDenoiser` and :class:`UNetDenoiser`, ``x (B, ny, nx) -> (B, ny, nx)``, as
scale-equivariant as the unrolled models (``D(a x) = a D(x)``, real ``a > 0``).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from physics.errors import InvalidDataError, ShapeError
from physics.fft import ifftc
from physics.linop import LinearOperator
from physics.mri import MultiCoilMRI
from recon.cg import cg
from recon.gan import REDCNN
from recon.nets import (ConvNet, DnCNN, FieldsOfExperts, NormUNet, UNet, from_channels, image_channels,
                        to_channels)
from recon.sense import rss

__all__ = ["DENOISERS", "E2EVarNet", "E2EVarNetConfig", "LearnedPrimalDual", "LearnedPrimalDualConfig", "MoDL",
           "MoDLConfig", "ModelConfig", "REDCNNConfig", "REDCNNDenoiser", "UNetDenoiser",
           "UNetDenoiserConfig", "VarNet", "VarNetConfig", "build_model", "calibration_mask"]


# ------------------------------------------------------------------------------------------------
# configs
# ------------------------------------------------------------------------------------------------
_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Base of the model configs: typed fields (int, float, bool, str), JSON dict round trip.

    Integer fields must be >= 1 (``cascades`` >= 0), float fields > 0; a wrong type, an unknown
    key or a value out of range raises :class:`InvalidDataError`.
    """

    model: ClassVar[str] = ""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value, kind = getattr(self, f.name), _TYPES[f.type]
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, f.name, value := float(value))
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise InvalidDataError(f"{self.model} config: {f.name} must be {f.type}, got {value!r}")
            low = 0 if f.name == "cascades" else 1
            if kind is str:
                continue
            if (kind is int and value < low) or (kind is float and not value > 0):
                raise InvalidDataError(f"{self.model} config: {f.name} must be "
                                       f"{'>= ' + str(low) if kind is int else '> 0'}, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        """``{"model": name, field: value, ...}`` (JSON-serialisable)."""
        return {"model": self.model, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> "ModelConfig":
        """The config of ``config`` (as :meth:`to_dict` writes it; missing fields take defaults)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        values = dict(config)
        if values.pop("model", cls.model) != cls.model:
            raise InvalidDataError(f"{cls.__name__}: config is for model {config['model']!r}, "
                                   f"not {cls.model!r}")
        unknown = sorted(set(values) - fields)
        if unknown:
            raise InvalidDataError(f"{cls.model} config: unknown field(s) {unknown}; expected a subset "
                                   f"of {sorted(fields)}")
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class VarNetConfig(ModelConfig):
    """VarNet: cascades, image type, FoE regulariser sizes, initial step size ``alpha``."""

    model: ClassVar[str] = "varnet"
    cascades: int = 8
    complex_images: bool = True
    filters: int = 24
    kernel_size: int = 7
    rbf: int = 31
    vmax: float = 3.0
    step_size: float = 0.5
    shared: bool = False
    remat: bool = False


@dataclasses.dataclass(frozen=True)
class E2EVarNetConfig(ModelConfig):
    """E2E-VarNet: cascades, cascade U-Net and sensitivity U-Net widths and depths."""

    model: ClassVar[str] = "e2e_varnet"
    cascades: int = 4
    chans: int = 8
    pools: int = 3
    sens_chans: int = 4
    sens_pools: int = 3
    remat: bool = False


@dataclasses.dataclass(frozen=True)
class MoDLConfig(ModelConfig):
    """MoDL: iterations, image type, denoiser and its size, initial ``lambda``, CG iterations and
    tolerance. ``denoiser``: ``"dncnn"`` (:class:`DnCNN`, ``features`` wide, ``depth`` layers),
    ``"redcnn"`` (:class:`REDCNNDenoiser`, ``features``, ``layers = depth``) or
    ``"unet_denoiser"`` (:class:`UNetDenoiser`, ``chans = features``, ``pools = depth``): the
    last two are the GAN generators, so a trained one can be the regulariser block
    (:meth:`MoDL.denoiser_config`)."""

    model: ClassVar[str] = "modl"
    cascades: int = 5
    complex_images: bool = True
    denoiser: str = "dncnn"
    features: int = 32
    depth: int = 5
    lam: float = 0.05
    cg_iterations: int = 10
    cg_tol: float = 1e-6
    remat: bool = False

    def __post_init__(self):
        super().__post_init__()
        if self.denoiser not in ("dncnn", "redcnn", "unet_denoiser"):
            raise InvalidDataError(f"{self.model} config: denoiser must be 'dncnn', 'redcnn' or "
                                   f"'unet_denoiser', got {self.denoiser!r}")


@dataclasses.dataclass(frozen=True)
class LearnedPrimalDualConfig(ModelConfig):
    """Learned primal-dual: iterations, image type, memory (images per space), CNN sizes."""

    model: ClassVar[str] = "learned_primal_dual"
    cascades: int = 10
    complex_images: bool = False
    primal_memory: int = 5
    dual_memory: int = 5
    features: int = 32
    depth: int = 3
    remat: bool = False

    def __post_init__(self):
        super().__post_init__()
        if self.primal_memory < 2:
            raise InvalidDataError(f"{self.model} config: primal_memory must be >= 2 (slot 0 is the "
                                   f"output, slot 1 feeds A), got {self.primal_memory}")


@dataclasses.dataclass(frozen=True)
class REDCNNConfig(ModelConfig):
    """RED-CNN denoiser (:class:`REDCNNDenoiser`): image type, features, convolutions per side."""

    model: ClassVar[str] = "redcnn"
    complex_images: bool = False
    features: int = 96
    layers: int = 5


@dataclasses.dataclass(frozen=True)
class UNetDenoiserConfig(ModelConfig):
    """U-Net denoiser (:class:`UNetDenoiser`): image type, fastMRI U-Net width and depth."""

    model: ClassVar[str] = "unet_denoiser"
    complex_images: bool = True
    chans: int = 32
    pools: int = 4


# ------------------------------------------------------------------------------------------------
# shared pieces
# ------------------------------------------------------------------------------------------------
def _inverse_softplus(value: float) -> jax.Array:
    return jnp.log(jnp.expm1(jnp.float32(value)))


def _cascade_step(fn, remat: bool):
    return nnx.remat(fn) if remat else fn


def _check_operator(A: Any, y: jax.Array, complex_images: bool, who: str) -> None:
    if not isinstance(A, LinearOperator):
        raise InvalidDataError(f"{who}: A must be a physics.linop.LinearOperator, got {type(A).__name__}")
    if jnp.issubdtype(A.in_dtype, jnp.complexfloating) != complex_images:
        raise InvalidDataError(f"{who}: the operator's images are {A.in_dtype} but the model was "
                               f"built with complex_images={complex_images}")
    shape, out = tuple(jnp.shape(y)), tuple(A.out_shape)
    if len(shape) < len(out) or shape[len(shape) - len(out):] != out:
        raise ShapeError(f"{who}: data of shape {shape} do not end in the operator's data shape {out}")


def _normalised(A: LinearOperator, y: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(A^H y / s, y / s, s)``, ``s`` the RMS of ``A^H y`` per item, shaped ``(..., 1, ..., 1)``
    to broadcast against images (1 where ``A^H y = 0``)."""
    AHy = A.adjoint(y)
    axes = tuple(range(-len(A.in_shape), 0))
    s = jnp.sqrt(jnp.mean(jnp.abs(AHy) ** 2, axis=axes, keepdims=True))
    s = jnp.where(s > 0, s, 1.0)
    s_data = s.reshape(s.shape[:s.ndim - len(A.in_shape)] + (1,) * len(A.out_shape))
    return AHy / s, (y / s_data).astype(y.dtype), s


# ------------------------------------------------------------------------------------------------
# VarNet
# ------------------------------------------------------------------------------------------------
class VarNet(nnx.Module):
    r"""Variational network (Hammernik et al. 2018) on any operator.

    .. math:: x_{t+1} = x_t - \alpha_t A^H (A x_t - y) - \nabla R_t(x_t),\qquad x_0 = A^H y

    ``alpha_t = softplus(.)`` learned per cascade; ``R_t`` a :class:`FieldsOfExperts` per cascade
    (or one for all with ``shared=True``). ``A^H (A x - y)`` is computed as ``A.normal(x) - A^H y``.
    ``self(A, y)``: data ``(..., *A.out_shape)`` -> image ``(..., *A.in_shape)``.
    """

    config_type: ClassVar[type[ModelConfig]] = VarNetConfig

    def __init__(self, config: VarNetConfig, *, rngs: nnx.Rngs):
        self.config = config
        count = min(config.cascades, 1) if config.shared else config.cascades
        self.regularisers = nnx.List([
            FieldsOfExperts(config.complex_images, config.filters, config.kernel_size, config.rbf,
                            config.vmax, rngs=rngs) for _ in range(count)])
        self.step_size = nnx.Param(jnp.full((config.cascades,), _inverse_softplus(config.step_size)))

    def __call__(self, A: LinearOperator, y: jax.Array) -> jax.Array:
        _check_operator(A, y, self.config.complex_images, "VarNet")
        AHy, _, s = _normalised(A, y)

        def cascade(regulariser, alpha, x):
            return x - jax.nn.softplus(alpha) * (A.normal(x) - AHy) - regulariser(x)

        step, alphas, x = _cascade_step(cascade, self.config.remat), self.step_size[...], AHy
        for t in range(self.config.cascades):
            x = step(self.regularisers[t % len(self.regularisers)], alphas[t], x)
        return x * s


# ------------------------------------------------------------------------------------------------
# E2E-VarNet
# ------------------------------------------------------------------------------------------------
def calibration_mask(mask: jax.Array) -> jax.Array:
    """The centred fully sampled calibration (ACS) block of a 2D mask, traceable under ``jit``.

    ``mask (ny, nx)`` real or bool -> float32 ``(ny, nx)``, 1 inside the block. The block is grown
    from the k-space centre ``(ny//2, nx//2)`` by the rule of
    :func:`physics.coil_maps.calibration_region` (one sample per axis in turn while the block
    stays fully sampled; a block of size ``n`` covers ``N//2 - n//2 .. N//2 - n//2 + n - 1``),
    which needs a concrete mask; this one runs on traced masks (a :func:`jax.lax.while_loop`).
    For a fastMRI column mask it is all rows times the low-frequency columns. An unsampled
    centre gives an all-zero mask.
    """
    sampled = jnp.asarray(mask) != 0
    shape = sampled.shape
    centre = jnp.array([n // 2 for n in shape], jnp.int32)
    index = [jax.lax.broadcasted_iota(jnp.int32, shape, axis) for axis in range(len(shape))]

    def block(size):
        low = centre - size // 2
        inside = [(i >= lo) & (i < lo + s) for i, lo, s in zip(index, low, size)]
        return functools.reduce(jnp.logical_and, inside)

    def grow(state):
        size, _ = state
        grown = jnp.bool_(False)
        for axis in range(len(shape)):
            trial = size.at[axis].add(1)
            fits = (trial[axis] <= shape[axis]) & jnp.all(sampled | ~block(trial))
            size, grown = jnp.where(fits, trial, size), grown | fits
        return size, grown

    start = (jnp.ones(len(shape), jnp.int32), jnp.bool_(True))
    size, _ = jax.lax.while_loop(lambda state: state[1], grow, start)
    return (block(size) & sampled[tuple(n // 2 for n in shape)]).astype(jnp.float32)


class _E2ECascade(nnx.Module):
    r"""One cascade ``k - eta M (k - k_0) - A(U(A^H k))``, ``A = F S`` (:class:`MultiCoilMRI`
    with mask 1): ``A^H`` is ``R(F^{-1} .)``, ``A`` is ``F(E(.))``."""

    def __init__(self, config: E2EVarNetConfig, *, data_consistency: bool, rngs: nnx.Rngs):
        self.unet = NormUNet(True, config.chans, config.pools, rngs=rngs)
        self.eta = nnx.Param(jnp.ones((), jnp.float32)) if data_consistency else None

    def __call__(self, k: jax.Array, k0: jax.Array, mask: jax.Array, maps: jax.Array) -> jax.Array:
        A = MultiCoilMRI(maps, jnp.float32(1.0))
        if self.eta is not None:
            k = k - self.eta[...] * mask * (k - k0)
        return k - A(self.unet(A.adjoint(k)))


class E2EVarNet(nnx.Module):
    r"""End-to-end variational network (Sriram et al. 2020): multi-coil k-space in, RSS image out.

    .. math:: k_{t+1} = k_t - \eta_t M (k_t - k_0) - F E(U_t(R(F^{-1} k_t))),
              \quad \hat x = \mathrm{RSS}(F^{-1} k_T)

    (fastMRI's sign of the network term; ``U_t`` learns either sign) with
    ``R x = sum_c conj(S_c) x_c``, ``E x = (S_c x)_c``; ``U_t`` a :class:`NormUNet` on the
    complex image; ``eta_t`` learned (no sign constraint, initially 1, as fastMRI), except in the
    first cascade, where ``k_0 - k_0 = 0`` makes it void (fastMRI keeps that dead weight). The maps ``S``
    come from a :class:`NormUNet` applied coil by coil to the zero-filled images of the
    calibration region (:func:`calibration_mask`), divided by their RSS over coils.

    ``self(masked_kspace, mask)``: ``masked_kspace (..., coils, ny, nx)`` complex64 and a real mask
    broadcastable to it (constant over coils: ``(nx,)``, ``(ny, nx)``, ``(batch, 1, ny, nx)``) ->
    ``(..., ny, nx)`` float32.
    """

    config_type: ClassVar[type[ModelConfig]] = E2EVarNetConfig

    def __init__(self, config: E2EVarNetConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.sens_net = NormUNet(True, config.sens_chans, config.sens_pools, rngs=rngs)
        self.cascades = nnx.List([_E2ECascade(config, data_consistency=t > 0, rngs=rngs)
                                  for t in range(config.cascades)])

    def sensitivity_maps(self, kspace: jax.Array, mask: jax.Array) -> jax.Array:
        """Maps ``(coils, ny, nx)`` of one item ``kspace (coils, ny, nx)``, ``mask (ny, nx)``."""
        x = self.sens_net(ifftc(calibration_mask(mask) * kspace))
        return x / rss(x, axis=-3)

    def _one(self, k0: jax.Array, mask: jax.Array) -> jax.Array:
        maps = self.sensitivity_maps(k0, mask)
        step, k = _cascade_step(lambda block, k: block(k, k0, mask, maps), self.config.remat), k0
        for block in self.cascades:
            k = step(block, k)
        return rss(ifftc(k), axis=-3)

    def __call__(self, masked_kspace: jax.Array, mask: jax.Array) -> jax.Array:
        k = jnp.asarray(masked_kspace)
        if k.ndim < 3 or not jnp.iscomplexobj(k):
            raise ShapeError(f"E2EVarNet: masked_kspace must be complex (..., coils, ny, nx), got "
                             f"{k.dtype} {k.shape}")
        try:
            m = jnp.broadcast_to(jnp.asarray(mask, jnp.float32), k.shape)[..., 0, :, :]
        except ValueError:
            raise ShapeError(f"E2EVarNet: mask of shape {jnp.shape(mask)} does not broadcast against "
                             f"k-space of shape {k.shape}") from None
        lead, (coils, ny, nx) = k.shape[:-3], k.shape[-3:]
        one = nnx.vmap(lambda model, k0, mask: model._one(k0, mask), in_axes=(None, 0, 0))
        out = one(self, k.reshape(-1, coils, ny, nx).astype(jnp.complex64), m.reshape(-1, ny, nx))
        return out.reshape(*lead, ny, nx)


# ------------------------------------------------------------------------------------------------
# MoDL
# ------------------------------------------------------------------------------------------------
class MoDL(nnx.Module):
    r"""Model-based deep learning (Aggarwal et al. 2019) on any operator.

    .. math:: x_{k+1} = \arg\min_x \|A x - y\|^2 + \lambda \|x - D_w(x_k)\|^2
              = (A^H A + \lambda I)^{-1} (A^H y + \lambda D_w(x_k))

    solved by :func:`recon.cg.cg` (``cg_iterations``, ``cg_tol``, warm-started at ``x_k``) and
    differentiated implicitly through its :func:`jax.lax.custom_linear_solve` (the backward pass
    is another CG solve; gradients reach ``lambda`` through the system matrix and the right-hand
    side). ``D_w`` a :class:`DnCNN` (or a GAN generator, ``config.denoiser``) shared by all
    iterations; ``lambda = softplus(.)`` learned;
    ``x_0`` the CG solution with ``D = 0``. ``self(A, y)``: ``(..., *A.out_shape)`` -> ``(..., *A.in_shape)``.
    """

    config_type: ClassVar[type[ModelConfig]] = MoDLConfig

    def __init__(self, config: MoDLConfig, *, rngs: nnx.Rngs):
        self.config = config
        denoiser = self.denoiser_config(config)
        self.denoiser = (DnCNN(config.complex_images, config.features, config.depth, rngs=rngs)
                         if denoiser is None else build_model(denoiser, rngs))
        self.lam = nnx.Param(_inverse_softplus(config.lam))

    @staticmethod
    def denoiser_config(config: MoDLConfig) -> dict[str, Any] | None:
        """The :func:`build_model` config of the denoiser block (None for DnCNN): a generator saved
        with this config (``recon train`` of a GAN experiment) fits ``model.denoiser``."""
        if config.denoiser == "redcnn":
            return REDCNNConfig(config.complex_images, config.features, config.depth).to_dict()
        if config.denoiser == "unet_denoiser":
            return UNetDenoiserConfig(config.complex_images, config.features, config.depth).to_dict()
        return None

    def __call__(self, A: LinearOperator, y: jax.Array) -> jax.Array:
        _check_operator(A, y, self.config.complex_images, "MoDL")
        AHy, _, s = _normalised(A, y)
        lam, c = jax.nn.softplus(self.lam[...]), self.config

        def solve(rhs, x0):
            return cg(A.normal, rhs, x0, maxiter=c.cg_iterations, tol=c.cg_tol, damp=lam)[0]

        def cascade(denoiser, x):
            return solve(AHy + lam * denoiser(x), x)

        step, x = _cascade_step(cascade, c.remat), solve(AHy, None)
        for _ in range(c.cascades):
            x = step(self.denoiser, x)
        return x * s


# ------------------------------------------------------------------------------------------------
# learned primal-dual
# ------------------------------------------------------------------------------------------------
class _PrimalDualCascade(nnx.Module):
    """``h += Gamma(h, A f^(1), g)``, then ``f += Lambda(f, A^H h^(0))`` (Adler & Oktem, Alg. 3)."""

    def __init__(self, config: LearnedPrimalDualConfig, *, rngs: nnx.Rngs):
        c = image_channels(config.complex_images)
        P, D = config.primal_memory * c, config.dual_memory * c
        self.c = c
        self.dual = ConvNet(D + 2 * c, D, config.features, config.depth, rngs=rngs)
        self.primal = ConvNet(P + c, P, config.features, config.depth, rngs=rngs)

    def __call__(self, f: jax.Array, h: jax.Array, g: jax.Array, A: LinearOperator):
        c = self.c
        Af = to_channels(A(from_channels(f[..., c:2 * c])))
        h = h + self.dual(jnp.concatenate([h, Af, g], axis=-1))
        AHh = to_channels(A.adjoint(from_channels(h[..., :c])))
        return f + self.primal(jnp.concatenate([f, AHh], axis=-1)), h


class LearnedPrimalDual(nnx.Module):
    r"""Learned primal-dual (Adler & Oktem 2018) for operators between 2D spaces (CT sinograms).

    Primal memory ``f`` (``primal_memory`` images) and dual memory ``h`` (``dual_memory`` data
    arrays), both starting at 0, are updated per iteration by residual :class:`ConvNet` blocks
    (untied across iterations), the dual from ``[h, A f^{(1)}, y]``, the primal from
    ``[f, A^H h^{(0)}]``; the output is ``f^{(0)}``. Complex operators (single-coil MRI) work with
    ``complex_images=True`` (2 channels per image). ``self(A, y)``: ``(..., *A.out_shape)`` ->
    ``(..., *A.in_shape)``; ``A.in_shape`` and ``A.out_shape`` must both be 2D.
    """

    config_type: ClassVar[type[ModelConfig]] = LearnedPrimalDualConfig

    def __init__(self, config: LearnedPrimalDualConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.cascades = nnx.List([_PrimalDualCascade(config, rngs=rngs) for _ in range(config.cascades)])

    def __call__(self, A: LinearOperator, y: jax.Array) -> jax.Array:
        _check_operator(A, y, self.config.complex_images, "LearnedPrimalDual")
        if len(A.in_shape) != 2 or len(A.out_shape) != 2:
            raise ShapeError(f"LearnedPrimalDual needs 2D images and 2D data (a sinogram), got an "
                             f"operator {tuple(A.in_shape)} -> {tuple(A.out_shape)}")
        _, g, s = _normalised(A, y)
        c, lead = image_channels(self.config.complex_images), y.shape[:-2]
        f = jnp.zeros((*lead, *A.in_shape, self.config.primal_memory * c), jnp.float32)
        h = jnp.zeros((*lead, *A.out_shape, self.config.dual_memory * c), jnp.float32)
        step, g = _cascade_step(lambda block, f, h: block(f, h, g, A), self.config.remat), to_channels(g)
        for block in self.cascades:
            f, h = step(block, f, h)
        return from_channels(f[..., :c]).astype(A.in_dtype) * s


# ------------------------------------------------------------------------------------------------
# image-to-image denoisers (GAN generators)
# ------------------------------------------------------------------------------------------------
def _standardised(net, x: jax.Array, complex_images: bool, who: str) -> jax.Array:
    """``net`` (channels -> channels) on ``x (..., ny, nx)`` normalised per image and channel to
    zero mean and unit standard deviation over ``(ny, nx)`` (std 1 where it is 0), de-normalised
    after: ``D(a x) = a D(x)`` for real ``a > 0``, whatever the units of ``x``."""
    if jnp.iscomplexobj(x) != complex_images or jnp.ndim(x) < 2:
        raise ShapeError(f"{who}: built for {'complex' if complex_images else 'real'} images "
                         f"(..., ny, nx), got {jnp.result_type(x)} {tuple(jnp.shape(x))}")
    h = to_channels(x)
    mean = jnp.mean(h, axis=(-3, -2), keepdims=True)
    var = jnp.var(h, axis=(-3, -2), keepdims=True)
    std = jnp.sqrt(jnp.where(var > 0, var, 1.0))
    return from_channels(net((h - mean) / std) * std + mean)


class REDCNNDenoiser(nnx.Module):
    """:class:`recon.gan.REDCNN` on standardised images (:func:`_standardised`): ``x (..., ny, nx)``
    float32 (or complex64 with ``complex_images``) -> same shape and dtype; ``ny, nx >= 4 layers + 1``.
    Residual by RED-CNN's own input shortcut: with zero weights it is the identity."""

    config_type: ClassVar[type[ModelConfig]] = REDCNNConfig

    def __init__(self, config: REDCNNConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.net = REDCNN(image_channels(config.complex_images), config.features, config.layers, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return _standardised(lambda h: to_channels(self.net(from_channels(h))), x,
                             self.config.complex_images, "REDCNNDenoiser")


class UNetDenoiser(nnx.Module):
    """Residual fastMRI :class:`recon.nets.UNet` on standardised images: ``x + s U((x - m) / s)``
    per channel (:func:`_standardised`; a :class:`recon.nets.NormUNet` that learns the residual).
    ``x (..., ny, nx)`` complex64 (or float32 without ``complex_images``) -> same shape and dtype."""

    config_type: ClassVar[type[ModelConfig]] = UNetDenoiserConfig

    def __init__(self, config: UNetDenoiserConfig, *, rngs: nnx.Rngs):
        self.config = config
        c = image_channels(config.complex_images)
        self.unet = UNet(c, c, config.chans, config.pools, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return _standardised(lambda h: h + self.unet(h), x, self.config.complex_images, "UNetDenoiser")


# ------------------------------------------------------------------------------------------------
# factory
# ------------------------------------------------------------------------------------------------
#: The image-to-image denoisers (GAN generators) among the models.
DENOISERS: tuple[type[nnx.Module], ...] = (REDCNNDenoiser, UNetDenoiser)

_MODELS: dict[str, type[nnx.Module]] = {cls.config_type.model: cls
                                        for cls in (VarNet, E2EVarNet, MoDL, LearnedPrimalDual, *DENOISERS)}


def build_model(config: dict[str, Any], rngs: nnx.Rngs) -> nnx.Module:
    """The model named by ``config["model"]`` (``"varnet"``, ``"e2e_varnet"``, ``"modl"``,
    ``"learned_primal_dual"``, ``"redcnn"``, ``"unet_denoiser"``) with the other entries as its
    config's fields.

    Raises:
        InvalidDataError: ``config`` is not a dict, names no or an unknown model, or has unknown
            fields or bad values.
    """
    if not isinstance(config, dict) or "model" not in config:
        raise InvalidDataError(f"build_model: config must be a dict with a 'model' entry, got {config!r}")
    if config["model"] not in _MODELS:
        raise InvalidDataError(f"build_model: unknown model {config['model']!r}, expected one of "
                               f"{sorted(_MODELS)}")
    cls = _MODELS[config["model"]]
    return cls(cls.config_type.from_dict(config), rngs=rngs)
