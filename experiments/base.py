"""The experiment record and its runner: data, model, training, saved inference weights, scores.

An :class:`Experiment` is plain data (JSON-serialisable, :meth:`Experiment.to_dict`): the model
config of :func:`recon.unrolled.build_model`, the :class:`recon.train.TrainConfig`, the data
description (:class:`MRIData`, :class:`CTData` or :class:`LDCTData`), the default number of
steps and, for adversarial training, ``gan``: the fields that :class:`recon.gan.GANConfig` adds
to the training config (critic, critic optimiser, adversarial loss and weights, EMA). :func:`run`
simulates (or reuses) its data in ``out/data``, trains into ``out`` (checkpoints,
``metrics.jsonl``, ``curves.png``; resumable; :func:`recon.train.train`, or
:func:`recon.gan.train_gan` with ``gan``) and writes the inference weights to ``out/model``
(``weights.msgpack`` + ``config.json``, what ``recon reconstruct --weights`` reads; for a GAN the
averaged generator) with the experiment itself (``experiment.json``, what ``recon evaluate
--model`` reads to rebuild the test set); for a denoiser also ``calibration.json``, its relative
error on a validation split (other phantoms than train and test; :func:`calibrate`), which the
noise-weighted data consistency of ``recon enhance`` needs. ``pretrained`` starts submodules
from another experiment's model (trained first when missing). :func:`evaluate` scores saved
weights on the experiment's held-out test set.

What a model is trained on: E2E-VarNet on the examples of :class:`recon.data.SliceDataset`;
VarNet and MoDL on the same examples with ESPIRiT maps (:class:`recon.learned.MapsDataset`)
through :class:`recon.learned.MultiCoilAdapter`; any operator model on CT examples through
:class:`recon.learned.CTAdapter`; the image denoisers (``redcnn``, ``unet_denoiser``) on
low-dose / normal-dose FBP pairs (:class:`LDCTData`) as they are, and on MRI examples with
ESPIRiT maps through :class:`recon.gan.MultiCoilEnhancer` (the coil-combined zero-filled image
in; scored with and without hard data consistency) (:meth:`Experiment.wrap`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import os
import pkgutil
import secrets
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from physics.ct_geometry import CTGeometry, parallel_beam
from physics.ct_phantom import anatomical_ellipses, ellipse_image, ellipse_sinogram, scale_ellipses
from physics.errors import FileFormatError, InvalidDataError, OutputError
from recon.data import CTSliceDataset, Dataset, LDCTDataset, collate, low_dose, simulated_dataset
from recon.gan import GANConfig, MultiCoilEnhancer, build_critic, train_gan
from recon.io import write_ct
from recon.learned import CTAdapter, MapsDataset, MultiCoilAdapter, load_trained, score_test_set
from recon.metrics import evaluate as metrics
from recon.sense import zero_filled
from recon.train import load_calibration, save_calibration, save_model, train
from recon.unrolled import DENOISERS, E2EVarNet, LearnedPrimalDual, build_model

EXPERIMENT_FILE = "experiment.json"


@dataclasses.dataclass(frozen=True)
class MRIData:
    """Simulated multi-coil brain slices (:func:`recon.data.simulated_dataset`), fresh random
    column masks per example; the test set uses other phantom seeds.

    ``size``, ``slices`` (per file; > 1 takes slices of a 3D phantom), ``acceleration`` (with
    ``center_fraction``) and ``mask`` may be lists, varied over files or drawn per example as
    :func:`recon.data.simulated_dataset` and :class:`recon.data.SliceDataset` say.
    """

    kind: ClassVar[str] = "mri"
    size: int | list[int] = 64
    coils: int = 8
    train: int = 64
    test: int = 8
    acceleration: float | list[float] = 4.0
    center_fraction: float | list[float] = 0.08
    snr_db: float = 30.0
    seed: int = 0
    test_seed: int = 1000
    slices: int | list[int] = 1
    mask: str | list[str] = "random"
    validation_seed: int = 2000

    def dataset(self, folder: Path, split: str) -> Dataset:
        """The ``"train"``, ``"test"`` or ``"validation"`` (as many as ``test``, other phantoms)
        :class:`recon.data.SliceDataset`, simulated into ``folder``."""
        n, seed = _split(self, split)
        return simulated_dataset(folder, n=n, seed=seed, size=self.size, coils=self.coils,
                                 snr_db=self.snr_db, slices=self.slices, acceleration=self.acceleration,
                                 center_fraction=self.center_fraction, mask=self.mask)


@dataclasses.dataclass(frozen=True)
class CTData:
    """Simulated 2D parallel-beam CT of thorax phantoms, optionally at low dose.

    Slice ``i`` is the thorax of :func:`physics.ct_phantom.anatomical_ellipses` (random nodules,
    vessels and lesions) with a seed drawn from ``(seed, i)``, turned by a random angle and shrunk
    by a random factor in ``[0.75, 1]``; its sinogram is exact (analytic line integrals of the
    ellipses, so no projector is inverted by itself), ``angles`` views over 180 degrees, bins of one
    pixel (``fov_mm / size`` mm) covering the image's circumscribed circle. ``dose``: photons per
    bin ``I0`` of the Poisson noise drawn per example and epoch (:func:`recon.data.low_dose`);
    ``None`` keeps the sinograms noiseless. Targets are the phantom images in mm^-1.
    """

    kind: ClassVar[str] = "ct"
    size: int = 64
    angles: int = 60
    fov_mm: float = 400.0
    train: int = 64
    test: int = 8
    dose: float | None = 1e4
    seed: int = 0
    test_seed: int = 1000
    validation_seed: int = 2000

    def geometry(self) -> CTGeometry:
        pixel = self.fov_mm / self.size
        return parallel_beam((self.size, self.size), np.linspace(0, np.pi, self.angles, endpoint=False),
                             int(np.ceil(self.size * np.sqrt(2))) + 2, detector_spacing=pixel,
                             pixel_size=pixel)

    def dataset(self, folder: Path, split: str) -> Dataset:
        """The ``"train"`` or ``"test"`` :class:`recon.data.CTSliceDataset`, simulated into ``folder``
        (one file per split and parameters, reused when present)."""
        path, seed = self.simulate(folder, split)
        return CTSliceDataset(path, noise=None if self.dose is None else low_dose(self.dose), seed=seed)

    def simulate(self, folder: Path, split: str) -> tuple[Path, int]:
        """``(file, seed)`` of the ``"train"``, ``"test"`` or ``"validation"`` phantoms and their
        exact sinograms in ``folder`` (written if missing)."""
        n, seed = _split(self, split)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InvalidDataError(f"CTData: {split} must be a positive number of slices, got {n!r}")
        g = self.geometry()
        path = folder / (f"thorax_{self.size}px_{self.angles}angles_{self.fov_mm:g}mm_seed{seed}_"
                         f"n{n}.h5")
        if not path.exists():
            tables = [scale_ellipses(_thorax(int(np.random.SeedSequence([seed, i]).generate_state(1)[0])),
                                     g.image_shape, pixel_size=g.pixel_size) for i in range(n)]
            write_ct(path, np.stack([ellipse_sinogram(g, t) for t in tables]), g,
                     image=np.stack([ellipse_image(t, g.image_shape, pixel_size=g.pixel_size)
                                     for t in tables]),
                     attrs={"source": "experiments.base.CTData: thorax phantoms, exact sinograms",
                            "seed": seed})
        return path, seed


@dataclasses.dataclass(frozen=True)
class LDCTData(CTData):
    """Low-dose CT enhancement pairs of the :class:`CTData` thorax phantoms
    (:class:`recon.data.LDCTDataset`): input the FBP (``filter``) of the exact sinogram re-acquired
    at ``dose`` photons per bin, target the FBP of it at ``normal_dose`` (``None``: noiseless),
    fresh Poisson noise per example and epoch; images in mm^-1."""

    kind: ClassVar[str] = "ldct"
    angles: int = 96
    normal_dose: float | None = 1e6
    filter: str = "hann"

    def dataset(self, folder: Path, split: str) -> Dataset:
        """The ``"train"`` or ``"test"`` :class:`recon.data.LDCTDataset`, simulated into ``folder``."""
        if self.dose is None:
            raise InvalidDataError("LDCTData: dose must be a number of photons per bin, got None")
        path, seed = self.simulate(folder, split)
        return LDCTDataset(path, dose=self.dose, normal_dose=self.normal_dose, filter=self.filter, seed=seed)


def _split(data: MRIData | CTData, split: str) -> tuple[int, int]:
    """``(examples, seed)`` of a split; validation has as many examples as test."""
    splits = {"train": (data.train, data.seed), "test": (data.test, data.test_seed),
              "validation": (data.test, data.validation_seed)}
    if split not in splits:
        raise InvalidDataError(f"unknown data split {split!r}; expected one of {sorted(splits)}")
    return splits[split]


def _thorax(seed: int) -> np.ndarray:
    """The thorax table of ``seed`` (unit coordinates) turned and shrunk at random about the centre."""
    rng = np.random.default_rng([seed, 0x7468])
    table = anatomical_ellipses(seed=seed).copy()
    turn, shrink = rng.uniform(0.0, 2.0 * np.pi), rng.uniform(0.75, 1.0)
    c, s = np.cos(turn), np.sin(turn)
    x, y = table[:, 3].copy(), table[:, 4].copy()
    table[:, 3], table[:, 4] = shrink * (c * x - s * y), shrink * (s * x + c * y)
    table[:, 1:3] *= shrink
    table[:, 5] += np.degrees(turn)
    return table


_DATA = {cls.kind: cls for cls in (MRIData, CTData, LDCTData)}


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One experiment: ``model`` (config of ``build_model``), ``train`` (TrainConfig fields),
    ``data``, the default ``steps``, for GAN training ``gan`` (the :class:`recon.gan.GANConfig`
    fields beyond ``train``'s; ``None``: supervised training) and ``pretrained``: submodules of the
    model that start from the model of another experiment, ``{attribute: experiment name}`` (e.g.
    ``{"denoiser": "gan_mri_small"}``: MoDL's regulariser block starts as that GAN generator;
    :func:`run` trains the other experiment first if its folder has no model)."""

    name: str
    model: dict[str, Any]
    train: dict[str, Any]
    data: MRIData | CTData | LDCTData
    steps: int
    gan: dict[str, Any] | None = None
    pretrained: dict[str, str] | None = None

    def datasets(self, folder: Path) -> tuple[Dataset, Dataset]:
        """``(train, test)`` datasets simulated into ``folder`` (created), in the form the model of
        :meth:`build` takes (with coil maps for VarNet and MoDL on MRI data)."""
        folder.mkdir(parents=True, exist_ok=True)
        return self.dataset(folder, "train"), self.dataset(folder, "test")

    def dataset(self, folder: Path, split: str) -> Dataset:
        """The ``"train"`` or ``"test"`` dataset of :meth:`datasets` (``folder`` must exist)."""
        data = self.data.dataset(folder, split)
        with_maps = self.data.kind == "mri" and self.model.get("model") != "e2e_varnet"
        return MapsDataset(data) if with_maps else data

    def build(self) -> nnx.Module:
        """The trainable module: :meth:`wrap` (without data consistency) of a fresh
        ``build_model(self.model)``."""
        net = build_model(self.model, nnx.Rngs(jax.random.key(self.data.seed, impl="rbg")))
        return self.wrap(net, consistency=False)

    def config(self) -> dict[str, Any]:
        """The training config of :func:`run`: ``train`` (and ``gan``) fields with ``model``."""
        return {**self.train, **(self.gan or {}), "model": self.model}

    def wrap(self, net: nnx.Module, *, consistency: bool = True,
             relative_error: float | None = None) -> nnx.Module:
        """``net`` in the form that takes this experiment's examples (module docstring);
        ``consistency``: an MRI denoiser ends with data consistency, exact or, given the
        denoiser's ``relative_error``, weighed by the noise (:class:`recon.gan.MultiCoilEnhancer`).

        Raises:
            InvalidDataError: E2E-VarNet on CT data, the learned primal-dual on multi-coil MRI, a
                denoiser on sinograms, a reconstruction model on LDCT image pairs.
        """
        denoiser = isinstance(net, DENOISERS)
        if self.data.kind == "ldct" and not denoiser:
            raise InvalidDataError(f"experiment {self.name}: LDCTData holds image pairs for a denoiser "
                                   f"(redcnn, unet_denoiser), not data for {type(net).__name__}")
        if self.data.kind == "ct" and denoiser:
            raise InvalidDataError(f"experiment {self.name}: a {type(net).__name__} takes images, not CT "
                                   "sinograms; use LDCTData (low-dose FBP images)")
        if denoiser:
            if self.data.kind != "mri":
                return net
            return MultiCoilEnhancer(net, consistency=consistency, relative_error=relative_error)
        if self.data.kind == "ct":
            if isinstance(net, E2EVarNet):
                raise InvalidDataError(f"experiment {self.name}: an e2e_varnet model takes multi-coil "
                                       "k-space, not CT sinograms")
            return CTAdapter(net, self.data.geometry())
        if isinstance(net, E2EVarNet):
            return net
        if isinstance(net, LearnedPrimalDual):
            raise InvalidDataError(f"experiment {self.name}: the learned primal-dual takes 2D data "
                                   "(CTData), not multi-coil k-space")
        return MultiCoilAdapter(net)

    def to_dict(self) -> dict[str, Any]:
        """The experiment as JSON-ready data (:meth:`from_dict` inverts it; ``gan`` and ``pretrained``
        only when set)."""
        record = {"name": self.name, "model": dict(self.model), "train": dict(self.train),
                  "data": {"kind": self.data.kind, **dataclasses.asdict(self.data)}, "steps": self.steps}
        optional = {"gan": self.gan, "pretrained": self.pretrained}
        return {**record, **{k: dict(v) for k, v in optional.items() if v is not None}}

    @classmethod
    def from_dict(cls, record: Any, where: str = "experiment") -> Experiment:
        """The experiment of a :meth:`to_dict` record; an unknown or missing field raises
        :class:`InvalidDataError` naming ``where``."""
        fields = {f.name for f in dataclasses.fields(cls)}
        required = fields - {"gan", "pretrained"}
        if (not isinstance(record, dict) or not required <= set(record) <= fields
                or not isinstance(record["data"], dict)):
            got = sorted(record) if isinstance(record, dict) else type(record).__name__
            raise InvalidDataError(f"{where}: expected an object with fields {sorted(required)} and "
                                   f"optionally 'gan' and 'pretrained' (data an object), got {got}")
        data = dict(record["data"])
        kind = data.pop("kind", None)
        if kind not in _DATA:
            raise InvalidDataError(f"{where}: data kind {kind!r}, expected one of {sorted(_DATA)}")
        known = {f.name for f in dataclasses.fields(_DATA[kind])}
        if set(data) - known:
            raise InvalidDataError(f"{where}: unknown {kind} data field(s) {sorted(set(data) - known)}; "
                                   f"known: {sorted(known)}")
        gan, pretrained = record.get("gan"), record.get("pretrained")
        parts = (record["model"], record["train"], gan or {}, pretrained or {})
        if not all(isinstance(part, dict) for part in parts):
            raise InvalidDataError(f"{where}: model, train, gan and pretrained must be JSON objects")
        return cls(str(record["name"]), record["model"], record["train"], _DATA[kind](**data),
                   record["steps"], gan, pretrained)


def get(name: str) -> Experiment:
    """``EXPERIMENT`` of module ``experiments.<name>`` (``name`` may use dashes; ``<name>:FULL``
    gives the module's full-size ``FULL``), or the experiment of a JSON file (a path ending in
    ``.json``, e.g. ``out/model/experiment.json`` of :func:`run`)."""
    if name.endswith(".json"):
        path = Path(name)
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileFormatError(f"{path}: no such experiment file") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise FileFormatError(f"{path}: not a readable JSON experiment ({e})") from e
        return Experiment.from_dict(record, str(path))
    module_name, _, variant = name.replace("-", "_").partition(":")
    known = sorted(m.name for m in pkgutil.iter_modules(__import__("experiments").__path__)
                   if m.name != "base")
    if module_name not in known:
        raise InvalidDataError(f"unknown experiment {name!r}; known: {', '.join(known)} (or a path "
                               "to an experiment .json)")
    if variant not in ("", "FULL"):
        raise InvalidDataError(f"experiment {name!r}: the only variant is ':FULL', got {variant!r}")
    return getattr(importlib.import_module(f"experiments.{module_name}"), variant or "EXPERIMENT")


def run(experiment: Experiment, out: Path, *, steps: int | None = None, resume: bool = False,
        progress: bool = True) -> list[dict[str, Any]]:
    """Train ``experiment`` into ``out``; save its inference weights and itself in ``out/model``."""
    out = Path(out)
    model = experiment.build()
    for attribute, source in (experiment.pretrained or {}).items():
        _start_from(model, attribute, get(source), out.parent, progress=progress)
    folder = out / "data"
    folder.mkdir(parents=True, exist_ok=True)
    data = experiment.dataset(folder, "train")
    steps = steps or experiment.steps
    if experiment.gan is None:
        history = train(model, experiment.config(), data, out, steps=steps, resume=resume, progress=progress)
    else:
        config = experiment.config()
        channels = 2 if np.iscomplexobj(data.example(0, 0)["target"]) else 1
        key = jax.random.fold_in(jax.random.key(experiment.data.seed, impl="rbg"), 1)
        critic = build_critic(GANConfig.from_dict(config).critic, channels, nnx.Rngs(key))
        history, model = train_gan(model, critic, config, data, out, steps=steps, resume=resume,
                                   progress=progress)  # the averaged generator is saved
    net = model.net if isinstance(model, (MultiCoilAdapter, CTAdapter, MultiCoilEnhancer)) else model
    save_model(net, experiment.model, out / "model")
    if isinstance(net, DENOISERS):
        calibrate(experiment, net, out / "model", folder)
    _write_json(out / "model" / EXPERIMENT_FILE, experiment.to_dict())
    return history


def calibrate(experiment: Experiment, net: nnx.Module, model_dir: Path, folder: Path) -> float:
    """The :func:`relative_error` of the denoiser ``net`` (saved in ``model_dir``) on the
    experiment's validation split (simulated into ``folder``), written to
    ``model_dir/calibration.json`` (:func:`recon.train.save_calibration`) and returned."""
    validation = experiment.dataset(folder, "validation")
    error = relative_error(experiment.wrap(net, consistency=False), validation)
    save_calibration(model_dir, error, examples=len(validation), split="validation")
    return error


def relative_error(model: nnx.Module, dataset: Dataset) -> float:
    """``sqrt(sum ||x - target||^2 / sum ||x||^2)`` of an enhancer's outputs ``x`` (magnitudes of
    complex ones) over ``dataset`` at epoch 0: its expected error relative to its own output, the
    ``relative_error`` of :func:`recon.pnp.noise_weight`."""
    error = energy = 0.0
    for index in range(len(dataset)):
        batch = collate([dataset.example(index, 0)])
        x = jnp.abs(_output(model, batch["inputs"]))
        error += float(jnp.sum((x - batch["target"]) ** 2))
        energy += float(jnp.sum(x ** 2))
    return float(np.sqrt(error / energy))


@nnx.jit
def _output(model: nnx.Module, inputs: dict[str, jax.Array]) -> jax.Array:
    return model(**inputs)


def _start_from(model: nnx.Module, attribute: str, source: Experiment, runs: Path, *, progress: bool) -> None:
    """Set ``attribute`` of the network in ``model`` to the model that experiment ``source`` saved
    in ``runs/<source.name>/model``, training it there first if it is missing."""
    net, out = getattr(model, "net", model), runs / source.name
    if not isinstance(getattr(net, attribute, None), nnx.Module):
        raise InvalidDataError(f"pretrained: a {type(net).__name__} has no submodule {attribute!r}")
    if not (out / "model" / "weights.msgpack").exists():
        if progress:
            print(f"pretrained {attribute}: training experiment {source.name} into {out}")
        run(source, out, progress=progress)
    trained = load_trained(out / "model")
    block = getattr(net, attribute)
    if type(trained) is not type(block) or getattr(trained, "config", None) != getattr(block, "config", None):
        raise InvalidDataError(f"pretrained {attribute}: experiment {source.name} saved a "
                               f"{type(trained).__name__} {getattr(trained, 'config', '')}, but the "
                               f"model's block is a {type(block).__name__} {getattr(block, 'config', '')}")
    nnx.update(block, nnx.state(trained))


def evaluate(experiment: Experiment, model_dir: Path, folder: Path) -> dict[str, dict[str, float]]:
    """Scores of the model saved in ``model_dir`` and of the baselines on the experiment's test set
    (simulated into ``folder``, created): :func:`recon.learned.score_test_set` for reconstruction
    models, :func:`score_enhancer` for denoisers."""
    net = load_trained(model_dir)
    folder.mkdir(parents=True, exist_ok=True)
    test = experiment.dataset(folder, "test")
    if isinstance(net, DENOISERS):
        return score_enhancer(experiment.wrap(net, relative_error=load_calibration(model_dir)), test)
    return score_test_set(experiment.wrap(net), test)


@nnx.jit
def _enhanced(model: nnx.Module, inputs: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """The images that :func:`score_enhancer` scores, by name."""
    if not isinstance(model, MultiCoilEnhancer):
        return {"model": model(**inputs), "input": inputs["x"]}
    images = {"model": MultiCoilEnhancer(model.net, consistency=False)(**inputs),
              "model+dc": MultiCoilEnhancer(model.net, maxiter=model.maxiter)(**inputs),
              "input": model.zero_filled(**inputs), "zero-filled": zero_filled(inputs["masked_kspace"])}
    if model.relative_error is not None:
        images["model+noise-dc"] = model(**inputs)
    return images


def score_enhancer(model: nnx.Module, dataset: Dataset) -> dict[str, dict[str, float]]:
    """Mean fastMRI metrics (``nmse``, ``psnr``, ``ssim``; magnitudes of complex images, per
    example) of an image enhancer over a test set, its examples taken at epoch 0 (fixed masks and noise).

    Args:
        model: a denoiser on ``{"x"}`` examples (:class:`LDCTData`), or a
            :class:`recon.gan.MultiCoilEnhancer` on MRI examples with maps.
        dataset: a :class:`recon.data.Dataset` of such examples.

    Returns:
        ``{"model": ..., "input": ...}``: the enhanced image (the saved model's output) and the
        enhancer's input (the low-dose FBP; for MRI the coil-combined zero-filled image ``A^H y``);
        for MRI also ``"model+dc"``, the enhanced image after exact data consistency,
        ``"model+noise-dc"`` after the noise-weighted one (when ``model`` has a
        ``relative_error``), and ``"zero-filled"``, the RSS of the masked k-space (the baseline of
        :func:`recon.learned.score_test_set`).
    """
    totals: dict[str, dict[str, float]] = {}
    for index in range(len(dataset)):
        batch = collate([dataset.example(index, 0)])
        for name, image in _enhanced(model, batch["inputs"]).items():
            scores = metrics(batch["target"], jnp.abs(image) if jnp.iscomplexobj(image) else image)
            totals[name] = {k: totals.get(name, {}).get(k, 0.0) + v for k, v in scores.items()}
    return {name: {k: v / len(dataset) for k, v in s.items()} for name, s in totals.items()}


def _write_json(path: Path, record: dict[str, Any]) -> None:
    """Write ``record`` as JSON to a temporary file beside ``path``, then rename it onto ``path``."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True))
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from e
