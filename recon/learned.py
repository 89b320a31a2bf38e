"""Trained unrolled networks in use: loading, reconstruction of raw data, test-set scores, and the
adapters that let the operator models train on :mod:`recon.data` examples.

Two kinds of model (:mod:`recon.unrolled`). E2E-VarNet takes what a scanner gives,
``(masked_kspace, mask)``, and estimates its own coil maps. VarNet, MoDL and the learned
primal-dual take an operator and its data, ``(A, y)``. Examples are arrays, so an adapter module
builds the operator per example and calls its ``net`` (the adapters have no parameters of their
own: the inference weights are those of ``adapter.net``):

- :class:`MultiCoilAdapter` ``(masked_kspace, mask, maps)``:
  ``net(MultiCoilMRI(maps, mask), masked_kspace)``, the ``maps`` in each example from :class:`MapsDataset`;
- :class:`CTAdapter` ``(sinogram)``: ``net(A, sinogram)``, ``A`` the projector of one geometry
  scaled to norm 1 (:func:`normalised_ct_operator`).

Coil maps of the operator models are ESPIRiT maps (:func:`recon.pipeline.coil_maps`, the
pipeline's defaults, so ``sum_c |S_c|^2 = 1`` on the object and ``||A|| <= 1``). In training they
come from the centre block of ``round(nx * center_fraction)`` columns (the smallest centre
fraction of the dataset) that every mask of a :class:`recon.data.SliceDataset` samples in full, so
they do not depend on the random mask and are estimated once per slice; on raw data
(:func:`reconstruct_learned`) from the largest fully sampled centred block of the file's mask, as
``recon reconstruct --method sense`` does.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from physics.coil_maps import MAX_CALIB
from physics.ct import ct_operator
from physics.ct_geometry import CTGeometry
from physics.errors import FileFormatError, InvalidDataError, ShapeError
from physics.linop import LinearOperator, Scaled
from physics.mri import MultiCoilMRI
from physics.noise import prewhiten
from recon.data import Example, SliceDataset, collate
from recon.fbp import fbp
from recon.metrics import evaluate
from recon.pipeline import ReconOptions, coil_maps
from recon.power import operator_norm
from recon.sense import zero_filled
from recon.train import load_model
from recon.unrolled import E2EVarNet, build_model

__all__ = ["LEARNED_METHODS", "CTAdapter", "MapsDataset", "MultiCoilAdapter", "default_weights",
           "load_trained", "masked_slice", "normalised_ct_operator", "reconstruct_learned",
           "reconstruct_learned_ct", "score_test_set"]

PathLike = str | os.PathLike

#: ``recon reconstruct --method`` name -> the ``model`` of :func:`recon.unrolled.build_model`.
LEARNED_METHODS = {"e2e-varnet": "e2e_varnet", "varnet": "varnet", "modl": "modl",
                   "learned-primal-dual": "learned_primal_dual"}
#: The model shipped in the package (``recon/data/<name>/``), per method.
_SHIPPED = {"e2e-varnet": "e2e_varnet_small", "modl": "modl_small"}


# ------------------------------------------------------------------------------------------------
# operators and adapters
# ------------------------------------------------------------------------------------------------
def normalised_ct_operator(geometry: CTGeometry, backend: str = "numba") -> Scaled:
    """``A / ||A||``: the projector of a 2D ``geometry`` (:func:`physics.ct.ct_operator`) with norm ~1."""
    if not isinstance(geometry, CTGeometry) or geometry.kind == "cone":
        raise InvalidDataError(f"learned CT models take 2D slices (parallel or fan beam), got "
                               f"{getattr(geometry, 'kind', type(geometry).__name__)}")
    A = ct_operator(geometry, backend)
    return Scaled(A, float(1.0 / operator_norm(A)))


class MultiCoilAdapter(nnx.Module):
    """Calls an operator model on multi-coil examples: ``net(MultiCoilMRI(maps, mask), masked_kspace)``.

    ``masked_kspace (..., coils, ny, nx)`` complex64, ``mask (..., ny, nx)`` float32,
    ``maps (..., coils, ny, nx)`` complex64 -> complex64 image ``(..., ny, nx)`` (one operator per item).
    """

    def __init__(self, net: nnx.Module):
        self.net = net

    def __call__(self, masked_kspace: jax.Array, mask: jax.Array, maps: jax.Array) -> jax.Array:
        k = jnp.asarray(masked_kspace, jnp.complex64)
        maps, mask = jnp.asarray(maps, jnp.complex64), jnp.asarray(mask, jnp.float32)
        if k.ndim < 3 or maps.shape != k.shape or mask.shape != k.shape[:-3] + k.shape[-2:]:
            raise ShapeError(f"MultiCoilAdapter: expected masked_kspace and maps (..., coils, ny, nx) "
                             f"and mask (..., ny, nx), got {k.shape}, {maps.shape} and {mask.shape}")
        lead, (coils, ny, nx) = k.shape[:-3], k.shape[-3:]
        one = nnx.vmap(lambda net, y, m, s: net(MultiCoilMRI(s, m), y), in_axes=(None, 0, 0, 0))
        out = one(self.net, k.reshape(-1, coils, ny, nx), mask.reshape(-1, ny, nx),
                  maps.reshape(-1, coils, ny, nx))
        return out.reshape(*lead, ny, nx)


class CTAdapter(nnx.Module):
    """Calls an operator model on CT examples: ``net(A, sinogram)``, ``A`` of :func:`normalised_ct_operator`.

    ``sinogram (..., angles, detectors)`` float32 -> image ``(..., ny, nx)`` in the units of the
    data / mm (mm^-1 for line integrals).
    """

    def __init__(self, net: nnx.Module, geometry: CTGeometry, backend: str = "numba"):
        self.net, self.geometry, self.backend = net, geometry, backend
        self.scale = float(normalised_ct_operator(geometry, backend).factor)

    def __call__(self, sinogram: jax.Array) -> jax.Array:
        return self.net(Scaled(ct_operator(self.geometry, self.backend), self.scale), sinogram)


class MapsDataset:
    """A :class:`recon.data.SliceDataset` whose examples also hold ``inputs["maps"]``, complex64
    ``(coils, ky, kx)`` ESPIRiT maps of the slice's centre block (module docstring), cached per slice.

    Raises (from :meth:`example`):
        ShapeError: the centre block is empty (``center_fraction`` 0).
        InvalidDataError: the centre block is narrower than ESPIRiT's kernel (3 columns at least).
    """

    def __init__(self, dataset: SliceDataset):
        if not isinstance(dataset, SliceDataset):
            raise InvalidDataError(f"MapsDataset wraps a recon.data.SliceDataset, got "
                                   f"{type(dataset).__name__}")
        self.dataset, self.seed = dataset, dataset.seed
        self._maps: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.dataset)

    def example(self, index: int, epoch: int) -> Example:
        example = self.dataset.example(index, epoch)
        inputs = example["inputs"]
        if int(index) not in self._maps:
            ny, nx = inputs["mask"].shape
            calib = (min(ny, MAX_CALIB), round(nx * min(self.dataset.center_fractions)))
            self._maps[int(index)] = np.asarray(coil_maps(inputs["masked_kspace"], inputs["mask"],
                                                          ReconOptions(calib=calib)), np.complex64)
        return {"inputs": {**inputs, "maps": self._maps[int(index)]}, "target": example["target"]}

    def __repr__(self) -> str:
        return f"MapsDataset({self.dataset!r})"


# ------------------------------------------------------------------------------------------------
# trained models on data
# ------------------------------------------------------------------------------------------------
def default_weights(method: str) -> Path:
    """The folder of the model shipped for ``method``: ``recon/data/e2e_varnet_small`` for
    ``"e2e-varnet"``, ``recon/data/modl_small`` for ``"modl"``.

    Raises:
        InvalidDataError: no model ships for ``method``.
        FileFormatError: the package lacks the shipped model's files.
    """
    if method not in _SHIPPED:
        raise InvalidDataError(f"--method {method} needs --weights DIR, a model folder written by "
                               f"recon train (weights.msgpack + config.json); only "
                               f"{', '.join(_SHIPPED)} ships with the package")
    folder = Path(str(resources.files("recon") / "data" / _SHIPPED[method]))
    if not (folder / "config.json").is_file():
        raise FileFormatError(f"no {method} model is shipped in {folder} (config.json missing); pass "
                              "--weights DIR, a model folder written by recon train")
    return folder


def load_trained(directory: PathLike, *, method: str | None = None) -> nnx.Module:
    """The model saved in ``directory`` by :func:`recon.train.save_model` (``weights.msgpack`` + ``config.json``).

    Args:
        method: a key of :data:`LEARNED_METHODS`; the saved model must be of that architecture.

    Raises:
        FileFormatError: a file missing, unreadable or corrupt.
        InvalidDataError: weights of another architecture than their config (or than ``method``),
            a bad config, an unknown ``method``.
    """
    if method is not None and method not in LEARNED_METHODS:
        raise InvalidDataError(f"unknown learned method {method!r}; expected one of "
                               f"{sorted(LEARNED_METHODS)}")

    def build(config: dict, rngs: nnx.Rngs) -> nnx.Module:
        if method is not None and config.get("model") != LEARNED_METHODS[method]:
            raise InvalidDataError(f"{Path(directory) / 'config.json'}: a {config.get('model')!r} model, "
                                   f"but --method {method} needs a {LEARNED_METHODS[method]!r} model")
        return build_model(config, rngs)

    return load_model(directory, build)


@nnx.jit
def _on_operator(model: nnx.Module, A: LinearOperator, y: jax.Array) -> jax.Array:
    return model(A, y)


@nnx.jit
def _on_kspace(model: nnx.Module, kspace: jax.Array, mask: jax.Array) -> jax.Array:
    return model(kspace, mask)


@nnx.jit
def _on_inputs(model: nnx.Module, inputs: dict[str, jax.Array]) -> jax.Array:
    return model(**inputs)


def masked_slice(kspace: np.ndarray, mask: np.ndarray,
                 whitening: np.ndarray | None = None) -> tuple[jax.Array, np.ndarray]:
    """``(y, mask)``: one Cartesian slice ``kspace (coils, ky, kx)`` times its boolean ``mask``
    (broadcast to ``(ky, kx)``), complex64, optionally pre-whitened by ``whitening (coils, coils)``.

    Raises:
        ShapeError: not one complex slice, or a mask that does not fit it.
    """
    kspace = np.asarray(kspace)
    if kspace.ndim != 3 or not np.iscomplexobj(kspace):
        raise ShapeError(f"expected one slice of complex k-space (coils, ky, kx), got {kspace.dtype} "
                         f"{kspace.shape}")
    try:
        mask = np.broadcast_to(np.asarray(mask, bool), kspace.shape[-2:])
    except ValueError:
        raise ShapeError(f"mask of shape {np.shape(mask)} does not fit k-space {kspace.shape}") from None
    y = jnp.asarray(kspace, jnp.complex64) * mask
    return (y if whitening is None else prewhiten(y, whitening)), mask


def reconstruct_learned(model: nnx.Module, kspace: np.ndarray, mask: np.ndarray, *,
                        whitening: np.ndarray | None = None) -> np.ndarray:
    """Magnitude image ``(ny, nx)`` float32 of one Cartesian slice ``kspace (coils, ky, kx)``.

    ``mask`` is boolean and broadcastable to ``(ky, kx)``; ``whitening`` an optional
    ``(coils, coils)`` pre-whitening matrix. E2E-VarNet runs on the masked k-space; VarNet and
    MoDL on ``MultiCoilMRI`` with ESPIRiT maps (module docstring).

    Raises:
        ShapeError: a mask that does not fit the k-space; a model that needs 2D data (the learned
            primal-dual).
        InvalidDataError: a model trained on real images (CT).
    """
    k, mask = masked_slice(kspace, mask, whitening)
    if isinstance(model, E2EVarNet):
        return np.asarray(_on_kspace(model, k, jnp.asarray(mask, jnp.float32)), np.float32)
    A = MultiCoilMRI(coil_maps(np.asarray(k), mask, ReconOptions()), jnp.asarray(mask, jnp.float32))
    return np.abs(np.asarray(_on_operator(model, A, k))).astype(np.float32)


def reconstruct_learned_ct(model: nnx.Module, sinogram: np.ndarray, geometry: CTGeometry, *,
                           progress: Callable[[], None] | None = None) -> np.ndarray:
    """Images ``(slices, ny, nx)`` float32 of 2D sinograms ``(slices, angles, detectors)`` by an
    operator model on :func:`normalised_ct_operator` of ``geometry``; ``progress`` is called per slice.

    Raises:
        InvalidDataError: E2E-VarNet (it takes k-space), a model trained on complex images, a
            cone-beam geometry.
    """
    if isinstance(model, E2EVarNet):
        raise InvalidDataError("an e2e_varnet model takes multi-coil k-space, not a sinogram")
    A = normalised_ct_operator(geometry)
    images = []
    for y in np.asarray(sinogram, np.float32):
        images.append(np.asarray(_on_operator(model, A, jnp.asarray(y)), np.float32))
        if progress is not None:
            progress()
    return np.stack(images)


def score_test_set(model: nnx.Module, dataset: Any) -> dict[str, dict[str, float]]:
    """Mean fastMRI metrics (``nmse``, ``psnr``, ``ssim``, per example) over a test set.

    Args:
        model: called as ``model(**inputs)`` on a batch of one (E2E-VarNet or an adapter).
        dataset: a :class:`recon.data.Dataset` whose examples are taken at epoch 0 (fixed masks
            and noise): MRI examples (``masked_kspace``) or CT examples (``sinogram``, with
            ``dataset.geometry``).

    Returns:
        ``{"model": scores, baseline: scores}``, the baseline ``"zero-filled"`` (RSS of the
        masked k-space) for MRI, ``"fbp"`` (ramp filter) for CT.
    """
    totals: dict[str, dict[str, float]] = {}
    for index in range(len(dataset)):
        batch = collate([dataset.example(index, 0)])
        inputs, target = batch["inputs"], batch["target"]
        if "sinogram" in inputs:
            baseline = ("fbp", fbp(inputs["sinogram"], dataset.geometry))
        else:
            baseline = ("zero-filled", zero_filled(inputs["masked_kspace"]))
        for name, image in (("model", _on_inputs(model, inputs)), baseline):
            scores = evaluate(target, jnp.abs(image) if jnp.iscomplexobj(image) else image)
            totals[name] = {k: totals.get(name, {}).get(k, 0.0) + v for k, v in scores.items()}
    return {name: {k: v / len(dataset) for k, v in s.items()} for name, s in totals.items()}
