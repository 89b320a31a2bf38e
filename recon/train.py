"""Training of learned reconstruction: optimiser and schedule, losses, the loop, checkpoints, logs.

A model is any Flax NNX module called as ``model(**batch["inputs"])`` whose output is compared
with ``batch["target"]`` (batches from :mod:`recon.data`). :func:`fit` is the one training loop:
it runs a :class:`Trainer` (the NNX objects that change and one step function) -- the supervised
one of :func:`train`, or the GAN one of :func:`recon.gan.train_gan` -- and writes into its output
folder

- ``config.json``: the run's config (:class:`TrainConfig` for :func:`train`) as JSON;
- ``metrics.jsonl``: one JSON object per step: ``step`` (steps done), the step's metrics --
  always ``loss`` (the minimised objective) and ``lr`` (the learning rate of that step), for
  :func:`train` only those -- then ``examples_per_s`` (batch size over the time since the previous
  step, data and compilation included) and ``wall_s`` (seconds of training, over all resumed runs);
- ``curves.png``: the metrics against the step (loss and learning rate for :func:`train`);
- ``checkpoints/<step>/``: orbax-checkpoint folders holding the state of every part of the
  trainer (arrays: model and optimiser state, for a GAN also the critic, its optimiser, the EMA
  generator and the RNG key) and, as JSON, the step, the data-order state
  ``(seed, epoch, position)`` and the signature (path, shape, dtype) of every array. Nothing is
  pickled.

Exact resume: the data order and every random mask are functions of ``(seed, epoch, index)``
(:mod:`recon.data`), and the checkpoint holds everything else that changes during training, so
a run interrupted and resumed from its last checkpoint ends with bit-for-bit the parameters of an
uninterrupted run (on the same machine and software).

:func:`save_model` / :func:`load_model` store inference weights: ``weights.msgpack`` (Flax msgpack
of a flat ``{"path/to/param": array}`` dict of every model variable but RNG state) beside the
model's ``config.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import secrets
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx, serialization

from physics.errors import FileFormatError, InvalidDataError, OutputError, ShapeError
from recon.data import Dataset, batch_stream, prefetch
from recon.metrics import ssim
from recon.progress import progress_bar

__all__ = ["LOSSES", "TrainConfig", "Trainer", "combined_loss", "fit", "l1_loss", "learning_rate_schedule",
           "load_calibration", "load_model", "make_optimizer", "make_train_step", "mse_loss",
           "save_calibration", "save_model", "ssim_loss", "train"]

PathLike = str | os.PathLike
Loss = Callable[[jax.Array, jax.Array], jax.Array]
CONFIG, METRICS, CURVES, CHECKPOINTS, WEIGHTS, CALIBRATION = (
    "config.json", "metrics.jsonl", "curves.png", "checkpoints", "weights.msgpack", "calibration.json")


# ----------------------------------------------------------------------------------- config
@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training configuration; a JSON object of these fields (each optional) is its file form.

    Attributes:
        optimizer: ``"adam"`` or ``"adamw"`` (Adam with decoupled weight decay).
        learning_rate: peak learning rate, reached at the end of the warm-up.
        warmup_steps: steps of linear warm-up from 0 to ``learning_rate``.
        decay_steps: length of the whole schedule, warm-up included (optax's
            ``warmup_cosine_decay_schedule``): cosine decay from ``learning_rate`` to
            ``end_learning_rate`` over steps ``warmup_steps .. decay_steps``, constant after. It
            belongs to the config, not to a run's length, so a resumed run keeps the schedule.
        end_learning_rate: learning rate at and after ``decay_steps``.
        weight_decay: AdamW's decoupled weight decay (must be 0 for Adam).
        b1, b2, eps: Adam's moment decay rates and denominator offset.
        clip_norm: gradients are scaled down to at most this global L2 norm before Adam; ``None``
            turns clipping off.
        loss: weights of the loss terms, names from :data:`LOSSES`, e.g. ``{"ssim": 0.84,
            "l1": 0.16}``.
        batch_size: examples per step.
        checkpoint_every: steps between checkpoints (one is also written at the end).
        keep_checkpoints: how many of the latest checkpoints to keep.
        model: the model's own config (free-form JSON), kept with the run to rebuild the model.
    """

    optimizer: Literal["adam", "adamw"] = "adam"
    learning_rate: float = 1e-3
    warmup_steps: int = 0
    decay_steps: int = 10_000
    end_learning_rate: float = 0.0
    weight_decay: float = 0.0
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    clip_norm: float | None = 1.0
    loss: dict[str, float] = dataclasses.field(default_factory=lambda: {"ssim": 0.84, "l1": 0.16})
    batch_size: int = 1
    checkpoint_every: int = 100
    keep_checkpoints: int = 3
    model: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> TrainConfig:
        """Validate a config mapping; unknown fields and bad values raise InvalidDataError."""
        if not isinstance(config, Mapping):
            raise InvalidDataError(f"a training config is a mapping of fields, got {type(config).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(config) - fields)
        if unknown:
            raise InvalidDataError(f"unknown training config field(s) {unknown}; known: {sorted(fields)}")
        c = cls(**config)
        for name in ("warmup_steps", "decay_steps", "batch_size", "checkpoint_every", "keep_checkpoints"):
            v, low = getattr(c, name), 0 if name == "warmup_steps" else 1
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise InvalidDataError(f"training config: {name} must be an integer >= {low}, got {v!r}")
        bounds = {"learning_rate": (lambda v: v > 0, "> 0"), "end_learning_rate": (lambda v: v >= 0, ">= 0"),
                  "weight_decay": (lambda v: v >= 0, ">= 0"), "eps": (lambda v: v > 0, "> 0"),
                  "b1": (lambda v: 0 <= v < 1, "in [0, 1)"), "b2": (lambda v: 0 <= v < 1, "in [0, 1)")}
        for name, (ok, bound) in bounds.items():
            v = getattr(c, name)
            if not (_finite(v) and ok(v)):
                raise InvalidDataError(f"training config: {name} must be a finite number {bound}, got {v!r}")
        if c.optimizer not in ("adam", "adamw"):
            raise InvalidDataError(f"training config: optimizer must be 'adam' or 'adamw', "
                                   f"got {c.optimizer!r}")
        if c.optimizer == "adam" and c.weight_decay != 0:
            raise InvalidDataError(f"training config: weight_decay {c.weight_decay} needs optimizer 'adamw'")
        if c.decay_steps <= c.warmup_steps:
            raise InvalidDataError(f"training config: decay_steps ({c.decay_steps}) must exceed "
                                   f"warmup_steps ({c.warmup_steps}); it counts the warm-up too")
        if c.clip_norm is not None and not (_finite(c.clip_norm) and c.clip_norm > 0):
            raise InvalidDataError(f"training config: clip_norm must be a number > 0 or None, "
                                   f"got {c.clip_norm!r}")
        combined_loss(c.loss)  # validates the weights
        if not isinstance(c.model, Mapping):
            raise InvalidDataError(f"training config: model must be a JSON object, "
                                   f"got {type(c.model).__name__}")
        _json(dataclasses.asdict(c), "training config")
        return c

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-ready dict (:meth:`from_dict` inverts it)."""
        return json.loads(_json(dataclasses.asdict(self), "training config"))


def _finite(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


def _json(value: Any, what: str) -> str:
    try:
        return json.dumps(value, indent=2, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise InvalidDataError(f"{what} is not JSON-serialisable: {e}") from e


# ----------------------------------------------------------------------------------- optimiser
def learning_rate_schedule(config: Mapping[str, Any]) -> optax.Schedule:
    """Linear warm-up from 0 to ``learning_rate``, then cosine decay to ``end_learning_rate``."""
    c = TrainConfig.from_dict(config)
    return _schedule(c.learning_rate, c.warmup_steps, c.decay_steps, c.end_learning_rate)


def _schedule(learning_rate: float, warmup_steps: int, decay_steps: int,
              end_learning_rate: float) -> optax.Schedule:
    return optax.warmup_cosine_decay_schedule(0.0, learning_rate, warmup_steps, decay_steps,
                                              end_learning_rate)


def make_optimizer(config: Mapping[str, Any]) -> optax.GradientTransformation:
    """Global-norm gradient clipping, then Adam or AdamW on :func:`learning_rate_schedule`.

    Equal settings give the same (stateless) transformation object: ``nnx.Optimizer`` keeps it as
    static data, so optimisers of equal settings share compiled training steps.

    Args:
        config: a :class:`TrainConfig` mapping (fields ``optimizer``, ``learning_rate``,
            ``warmup_steps``, ``decay_steps``, ``end_learning_rate``, ``weight_decay``, ``b1``,
            ``b2``, ``eps``, ``clip_norm``).
    """
    c = TrainConfig.from_dict(config)
    return _optimizer(c.optimizer, c.learning_rate, c.warmup_steps, c.decay_steps, c.end_learning_rate,
                      c.weight_decay, c.b1, c.b2, c.eps, c.clip_norm)


@functools.cache
def _optimizer(optimizer: str, learning_rate: float, warmup_steps: int, decay_steps: int,
               end_learning_rate: float, weight_decay: float, b1: float, b2: float, eps: float,
               clip_norm: float | None) -> optax.GradientTransformation:
    schedule = _schedule(learning_rate, warmup_steps, decay_steps, end_learning_rate)
    if optimizer == "adamw":
        adam = optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)
    else:
        adam = optax.adam(schedule, b1=b1, b2=b2, eps=eps)
    return adam if clip_norm is None else optax.chain(optax.clip_by_global_norm(clip_norm), adam)


# ----------------------------------------------------------------------------------- losses
def _magnitudes(pred: jax.Array, target: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``|pred|`` (complex predictions) and the target, checked to have one shape."""
    pred = jnp.abs(pred) if jnp.iscomplexobj(pred) else pred
    if jnp.shape(pred) != jnp.shape(target):
        raise ShapeError(f"the prediction has shape {tuple(jnp.shape(pred))} but the target has "
                         f"{tuple(jnp.shape(target))}; expected equal shapes")
    return pred, target


def ssim_loss(pred: jax.Array, target: jax.Array) -> jax.Array:
    """``1 - SSIM`` (fastMRI's, :func:`recon.metrics.ssim`), differentiable in ``pred``.

    Args:
        pred: ``(..., ny, nx)``, real or complex (its magnitude is compared).
        target: real ``(..., ny, nx)``; each image's maximum is its data range.

    Returns:
        () float: 0 for identical images.
    """
    pred, target = _magnitudes(pred, target)
    maxval = jax.lax.stop_gradient(jnp.max(target, axis=(-2, -1)))
    return 1.0 - ssim(target, pred, maxval)


def l1_loss(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Mean absolute error ``mean |pred - target|`` (magnitude of complex ``pred``), a scalar."""
    pred, target = _magnitudes(pred, target)
    return jnp.mean(jnp.abs(pred - target))


def mse_loss(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Mean squared error ``mean (pred - target)^2`` (magnitude of complex ``pred``), a scalar."""
    pred, target = _magnitudes(pred, target)
    return jnp.mean((pred - target) ** 2)


LOSSES: dict[str, Loss] = {"ssim": ssim_loss, "l1": l1_loss, "mse": mse_loss}


def combined_loss(weights: Mapping[str, float]) -> Loss:
    """``sum_k w_k loss_k(pred, target)`` over named losses, e.g. ``{"ssim": 0.84, "l1": 0.16}``.

    Raises:
        InvalidDataError: no terms, a name not in :data:`LOSSES`, a negative or non-finite weight.
    """
    if not isinstance(weights, Mapping) or not weights:
        raise InvalidDataError(f"loss weights must be a non-empty mapping name -> weight, got {weights!r}")
    for name, w in weights.items():
        if name not in LOSSES:
            raise InvalidDataError(f"unknown loss {name!r}; known: {sorted(LOSSES)}")
        if not _finite(w) or w < 0:
            raise InvalidDataError(f"loss weight of {name!r} must be a finite number >= 0, got {w!r}")
    terms = tuple((LOSSES[name], float(w)) for name, w in weights.items())

    def loss(pred: jax.Array, target: jax.Array) -> jax.Array:
        return sum(w * fn(pred, target) for fn, w in terms)

    return loss


# ----------------------------------------------------------------------------------- step
def make_train_step(loss: Loss) -> Callable[[nnx.Module, nnx.Optimizer, dict], jax.Array]:
    """A jit-compiled step ``step(model, optimizer, batch) -> loss``, updating both in place.

    The loss is ``loss(model(**batch["inputs"]), batch["target"])``; its gradient with respect
    to the model's ``nnx.Param`` variables goes through ``optimizer.update``.
    """

    @nnx.jit
    def step(model: nnx.Module, optimizer: nnx.Optimizer, batch: dict) -> jax.Array:
        def objective(m: nnx.Module) -> jax.Array:
            return loss(m(**batch["inputs"]), batch["target"])

        value, grads = nnx.value_and_grad(objective)(model)
        optimizer.update(model, grads)
        return value

    return step


# ----------------------------------------------------------------------------------- files
def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it onto ``path``."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from e


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise FileFormatError(f"{path}: no {what} (file missing)")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FileFormatError(f"{path}: {what} is not readable JSON ({e})") from e


def _key_path(path: tuple) -> str:
    return jax.tree_util.keystr(path, simple=True, separator="/")


def _signature(tree: Any) -> dict[str, list]:
    """``{"path/to/leaf": [shape, dtype]}`` of a pytree of arrays (PRNG keys as their key data)."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.eval_shape(jax.random.key_data, leaf)
        out[_key_path(path)] = [list(leaf.shape), np.dtype(leaf.dtype).name]
    return out


def _mismatch(expected: dict[str, list], found: dict[str, list], where: str) -> None:
    """Raise InvalidDataError naming the first array whose presence, shape or dtype differs."""
    for name, (shape, dtype) in expected.items():
        if name not in found:
            raise InvalidDataError(f"{where}: no '{name}' ({tuple(shape)}, {dtype}) that the model has; "
                                   "saved from another architecture?")
        if found[name] != [shape, dtype]:
            raise InvalidDataError(f"{where}: '{name}' is {tuple(found[name][0])} {found[name][1]}, the "
                                   f"model's is {tuple(shape)} {dtype}; saved from another architecture?")
    for name, (shape, dtype) in found.items():
        if name not in expected:
            raise InvalidDataError(f"{where}: holds '{name}' ({tuple(shape)}, {dtype}) that the model "
                                   "does not have; saved from another architecture?")


# ----------------------------------------------------------------------------------- trainer
@dataclasses.dataclass(frozen=True)
class Trainer:
    """What :func:`fit` trains: the checkpointed NNX objects and one training step.

    Attributes:
        config: the run's config as JSON data; written to ``config.json``, and a resumed run must
            have the same.
        parts: the objects the step changes, by name (modules, ``nnx.Optimizer`` s, ``nnx.Rngs``);
            their whole state is what a checkpoint holds (``<name>/path/to/array``).
        step: ``step(batch, index) -> {metric: scalar}``, training step ``index`` (0-based) on a
            batch of :func:`recon.data.batch_stream`, updating ``parts`` in place. Every metric
            must be finite; ``"loss"`` (the minimised objective, shown by the progress bar) and
            ``"lr"`` are always among them.
        batch_size, checkpoint_every, keep_checkpoints: as in :class:`TrainConfig`.
        curves: the panels of ``curves.png``: ``(title, metric names)`` each.
    """

    config: dict[str, Any]
    parts: dict[str, Any]
    step: Callable[[dict, int], Mapping[str, Any]]
    batch_size: int
    checkpoint_every: int
    keep_checkpoints: int
    curves: tuple[tuple[str, tuple[str, ...]], ...] = (("training loss", ("loss",)), ("schedule", ("lr",)))


# ----------------------------------------------------------------------------------- checkpoints
def _train_state(parts: Mapping[str, Any]) -> dict[str, Any]:
    return {name: nnx.to_pure_dict(nnx.state(part)) for name, part in parts.items()}


def _restore(manager: ocp.CheckpointManager, step: int, parts: Mapping[str, Any]) -> dict[str, Any]:
    """Load checkpoint ``step`` into ``parts``; return its JSON metadata."""
    where = f"checkpoint {manager.directory / str(step)}"
    meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    current = _train_state(parts)
    _mismatch(_signature(current), meta["signature"], where)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, current)
    saved = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))["state"]
    for name, target in parts.items():
        state = nnx.state(target)
        nnx.replace_by_pure_dict(state, saved[name])
        nnx.update(target, state)
    return meta


def _save(manager: ocp.CheckpointManager, step: int, parts: Mapping[str, Any], meta: dict[str, Any]) -> None:
    state = _train_state(parts)
    meta = {**meta, "step": step, "signature": _signature(state)}
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                               meta=ocp.args.JsonSave(meta)), force=True)


def _write_curves(path: Path, history: list[dict[str, Any]],
                  panels: tuple[tuple[str, tuple[str, ...]], ...]) -> None:
    """PNG of ``panels`` (``(title, metric names)``, one subplot each) against the step."""
    from matplotlib.figure import Figure

    steps = [r["step"] for r in history]
    fig = Figure(figsize=(4.5 * len(panels), 3.4))
    for ax, (title, names) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
        names = [n for n in names if n in history[0]]
        for name in names:
            ax.plot(steps, [r[name] for r in history], lw=1, label=name)
        if names and all(r[n] > 0 for r in history for n in names):
            ax.set_yscale("log")
        ax.set(xlabel="step", title=title)
        if len(names) > 1:
            ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.png")
    try:
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, path)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from e
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _read_history(path: Path, up_to: int) -> list[dict[str, Any]]:
    """Records of ``metrics.jsonl`` with ``step <= up_to`` (an interrupted run logged past it)."""
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if r["step"] <= up_to]


# ----------------------------------------------------------------------------------- loop
def _resume(manager: ocp.CheckpointManager, out: Path, trainer: Trainer, dataset: Dataset,
            resume: bool) -> tuple[int, float]:
    """Restore the latest checkpoint of ``out`` (or start a run there); ``(step, wall_s)``."""
    latest = manager.latest_step()
    if latest is None:
        _write_atomic(out / CONFIG, _json(trainer.config, "training config").encode())
        return 0, 0.0
    if not resume:
        raise OutputError(f"{out} holds checkpoints of an earlier run (latest: step {latest}); "
                          "pass resume=True to continue it or choose another folder")
    saved, current = _read_json(out / CONFIG, "training config"), trainer.config
    if saved != current:
        changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        raise InvalidDataError(f"{out / CONFIG}: the run was trained with another config "
                               f"(fields {changed} differ); resume needs the same config")
    meta = _restore(manager, latest, trainer.parts)
    data = meta["data"]
    if (data["seed"], data["examples"]) != (dataset.seed, len(dataset)):
        raise InvalidDataError(
            f"checkpoint step {latest} was trained on a dataset of {data['examples']} examples "
            f"with seed {data['seed']}, this one has {len(dataset)} with seed {dataset.seed}")
    return latest, meta["wall_s"]


def fit(trainer: Trainer, dataset: Dataset, out_dir: PathLike, *, steps: int, resume: bool = False,
        progress: bool = True) -> list[dict[str, Any]]:
    """Run ``trainer`` until it has taken ``steps`` steps in all: the loop of every training.

    Batches come from :func:`recon.data.batch_stream` through a background
    :func:`recon.data.prefetch` thread; each step's metrics, with ``step`` (steps done),
    ``examples_per_s`` and ``wall_s``, are appended to ``metrics.jsonl``; every
    ``checkpoint_every`` steps and at the end the state of ``trainer.parts`` and the data order
    are checkpointed; ``curves.png`` is drawn at the end (layout in the module docstring).

    Args:
        trainer: the parts, step and config of the run (:class:`Trainer`).
        dataset: a :class:`recon.data.Dataset`.
        out_dir: the run's folder (created if missing).
        steps: total number of steps of the run; a resumed run continues from its checkpoint's
            step up to ``steps`` (nothing is done if it is already there).
        resume: continue from the latest checkpoint in ``out_dir`` (the parts must be of the same
            architecture; a folder without checkpoints starts from step 0).
        progress: show a progress bar with loss and throughput (only when stderr is a terminal).

    Returns:
        The run's log, the records of ``metrics.jsonl`` (earlier resumed parts included).

    Raises:
        InvalidDataError: bad ``steps``; on resume, a config, dataset or architecture that differs
            from the checkpoint's; a non-finite metric (training stops at that step, the last
            checkpoint is kept).
        OutputError: ``out_dir`` not writable, or it holds checkpoints and ``resume`` is False.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InvalidDataError(f"steps must be a positive integer, got {steps!r}")
    out = Path(out_dir).resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create the training folder {out}: {e.strerror or e}") from e
    if trainer.batch_size > len(dataset):
        raise InvalidDataError(f"batch_size {trainer.batch_size} exceeds the dataset's {len(dataset)} "
                               "examples")
    options = ocp.CheckpointManagerOptions(max_to_keep=trainer.keep_checkpoints)
    with ocp.CheckpointManager(out / CHECKPOINTS, options=options) as manager:
        start, wall = _resume(manager, out, trainer, dataset, resume)
        history = _read_history(out / METRICS, start)
        _write_atomic(out / METRICS, "".join(json.dumps(r) + "\n" for r in history).encode())
        if start < steps:
            stream = prefetch(batch_stream(dataset, trainer.batch_size, start=start, stop=steps))
            bar = progress_bar("train", "loss {task.fields[loss]:.4g}", "{task.fields[rate]:.1f} ex/s",
                               enabled=progress)
            with contextlib.closing(stream), bar, open(out / METRICS, "a") as log:
                task = bar.add_task("train", total=steps, completed=start, loss=math.nan, rate=0.0)
                last = time.perf_counter()
                for step, batch in enumerate(stream, start=start):
                    metrics = {name: float(v) for name, v in trainer.step(batch, step).items()}
                    now = time.perf_counter()
                    wall, rate, last = wall + now - last, trainer.batch_size / (now - last), now
                    done = step + 1
                    for name, value in metrics.items():
                        if not math.isfinite(value):
                            raise InvalidDataError(f"training {name} is {value} at step {done}; stopped "
                                                   f"(latest checkpoint: step {manager.latest_step()})")
                    record = {"step": done, **metrics, "examples_per_s": rate, "wall_s": wall}
                    history.append(record)
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                    bar.update(task, completed=done, loss=metrics["loss"], rate=rate)
                    if done % trainer.checkpoint_every == 0 or done == steps:
                        epoch, position = divmod(done, len(dataset) // trainer.batch_size)
                        _save(manager, done, trainer.parts, {
                            "data": {"seed": dataset.seed, "examples": len(dataset), "epoch": epoch,
                                     "position": position * trainer.batch_size,
                                     "batch_size": trainer.batch_size},
                            "wall_s": wall})
            manager.wait_until_finished()
    if history:
        _write_curves(out / CURVES, history, trainer.curves)
    return history


def train(model: nnx.Module, config: Mapping[str, Any], dataset: Dataset, out_dir: PathLike, *,
          steps: int, resume: bool = False, progress: bool = True) -> list[dict[str, Any]]:
    """Train ``model`` in place (supervised) until it has taken ``steps`` optimiser steps in all.

    :func:`fit` of ``model`` and its optimiser (:func:`make_optimizer`), checkpointed as
    ``model`` and ``optimizer``, with the step of :func:`make_train_step` on the loss of
    ``config``; each record holds ``loss`` and ``lr`` (the learning rate of that step).

    Args:
        model: an NNX module called as ``model(**batch["inputs"])``.
        config: a :class:`TrainConfig` mapping.
        dataset, out_dir, steps, resume, progress: as in :func:`fit`.

    Returns:
        The run's log, the records of ``metrics.jsonl`` (earlier resumed parts included).

    Raises:
        InvalidDataError: a bad config, and as :func:`fit`.
        OutputError: as :func:`fit`.
    """
    c = TrainConfig.from_dict(config)
    optimizer = nnx.Optimizer(model, make_optimizer(config), wrt=nnx.Param)
    schedule = learning_rate_schedule(config)
    step_fn = make_train_step(combined_loss(c.loss))

    def step(batch: dict, index: int) -> dict[str, Any]:
        return {"loss": step_fn(model, optimizer, batch), "lr": schedule(index)}

    trainer = Trainer(c.to_dict(), {"model": model, "optimizer": optimizer}, step, c.batch_size,
                      c.checkpoint_every, c.keep_checkpoints)
    return fit(trainer, dataset, out_dir, steps=steps, resume=resume, progress=progress)


# ----------------------------------------------------------------------------------- inference
def _inference_state(model: nnx.Module) -> nnx.State:
    return nnx.state(model, nnx.Not(nnx.RngState))


def save_model(model: nnx.Module, config: Mapping[str, Any], directory: PathLike) -> None:
    """Write inference weights and the model config into ``directory`` (created if missing).

    ``weights.msgpack``: every variable of ``model`` except RNG state, as a flat
    ``{"path/to/variable": array}`` Flax msgpack dict; ``config.json``: ``config``, what ``build``
    of :func:`load_model` needs. Each file is written atomically; a ``calibration.json`` of
    earlier weights (:func:`save_calibration`) is removed.

    Raises:
        InvalidDataError: ``config`` is not a JSON-serialisable mapping.
        OutputError: the folder cannot be written.
    """
    if not isinstance(config, Mapping):
        raise InvalidDataError(f"the model config must be a mapping, got {type(config).__name__}")
    text = _json(dict(config), "the model config")
    leaves = jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(_inference_state(model)))[0]
    flat = {_key_path(path): np.asarray(leaf) for path, leaf in leaves}
    target = Path(directory)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create the model folder {target}: {e.strerror or e}") from e
    _write_atomic(target / WEIGHTS, serialization.msgpack_serialize(flat))
    _write_atomic(target / CONFIG, text.encode())
    with contextlib.suppress(FileNotFoundError):  # it measured the weights replaced
        os.unlink(target / CALIBRATION)


def save_calibration(directory: PathLike, relative_error: float, *, examples: int, split: str) -> None:
    """Write ``calibration.json`` beside a saved model (atomically): the model's relative error
    ``||x - x_true|| / ||x||`` on ``examples`` examples of the data ``split`` it was measured on
    (what :func:`recon.pnp.noise_weight` needs)."""
    if not (relative_error > 0 and math.isfinite(relative_error)):
        raise InvalidDataError(f"save_calibration: relative_error must be finite and > 0, got "
                               f"{relative_error!r}")
    record = {"relative_error": float(relative_error), "examples": int(examples), "split": str(split)}
    _write_atomic(Path(directory) / CALIBRATION, _json(record, "the calibration").encode())


def load_calibration(directory: PathLike) -> float | None:
    """The relative error of :func:`save_calibration` in ``directory``; None when the model has none.

    Raises:
        FileFormatError: an unreadable file, or no positive ``relative_error`` in it.
    """
    path = Path(directory) / CALIBRATION
    if not path.exists():
        return None
    record = _read_json(path, "model calibration")
    error = record.get("relative_error") if isinstance(record, dict) else None
    if isinstance(error, bool) or not isinstance(error, (int, float)) or not error > 0:
        raise FileFormatError(f"{path}: expected {{\"relative_error\": a number > 0, ...}}, got {record!r}")
    return float(error)


def load_model(directory: PathLike, build: Callable[[dict, nnx.Rngs], nnx.Module]) -> nnx.Module:
    """The model saved by :func:`save_model` in ``directory``, built by ``build(config, rngs)``.

    Raises:
        FileFormatError: ``config.json`` or ``weights.msgpack`` missing, unreadable or corrupt.
        InvalidDataError: weights of another architecture (the first differing variable is named).
    """
    folder = Path(directory)
    config = _read_json(folder / CONFIG, "model config")
    if not isinstance(config, dict):
        raise FileFormatError(f"{folder / CONFIG}: expected a JSON object, got {type(config).__name__}")
    path = folder / WEIGHTS
    if not path.is_file():
        raise FileFormatError(f"{path}: no model weights (file missing)")
    try:
        flat = serialization.msgpack_restore(path.read_bytes())
    except Exception as e:  # msgpack raises ValueError, TypeError, ExtraData... on corrupt input
        raise FileFormatError(f"{path}: corrupt model weights, not Flax msgpack "
                              f"({type(e).__name__}: {e})") from e
    if not isinstance(flat, dict) or not all(isinstance(v, np.ndarray) for v in flat.values()):
        raise FileFormatError(f"{path}: expected a flat dict of arrays (written by save_model)")
    # shapes only: a random initialisation (compiled per parameter shape) would be overwritten
    model = nnx.eval_shape(lambda: build(config, nnx.Rngs(0)))
    state = _inference_state(model)
    pure = nnx.to_pure_dict(state)
    _mismatch(_signature(pure), _signature(flat), str(path))
    nnx.replace_by_pure_dict(state, jax.tree_util.tree_map_with_path(lambda p, _: flat[_key_path(p)], pure))
    nnx.update(model, state)
    return model
