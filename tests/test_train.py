"""recon.train: schedule, clipping, losses, the loop, checkpoints, exact resume, saved models.

A tiny NNX model (zero-filled RSS plus a learned two-layer residual) trains on six simulated
32x32, 4-coil slices; expected values are analytic (schedule, Adam's first moments), from
scikit-image (SSIM) or from an uninterrupted run (resume).
"""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from skimage.metrics import structural_similarity

from physics.errors import FileFormatError, InvalidDataError, OutputError
from recon.data import simulated_dataset
from recon.sense import zero_filled
from recon.train import (TrainConfig, combined_loss, l1_loss, learning_rate_schedule, load_model,
                         make_optimizer, mse_loss, save_model, ssim_loss, train)


class Tiny(nnx.Module):
    """``s * x0 + conv2(relu(conv1(x0)))`` with ``x0`` the zero-filled RSS image."""

    def __init__(self, width: int = 4, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(1, width, (3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(width, 1, (3, 3), rngs=rngs)
        self.scale = nnx.Param(jnp.ones((), jnp.float32))

    def __call__(self, masked_kspace: jax.Array, mask: jax.Array) -> jax.Array:
        x0 = zero_filled(masked_kspace)  # (batch, ny, nx)
        return self.scale * x0 + self.conv2(jax.nn.relu(self.conv1(x0[..., None])))[..., 0]


def build(config: dict, rngs: nnx.Rngs) -> Tiny:
    return Tiny(config["width"], rngs=rngs)


CONFIG = {"learning_rate": 1e-2, "warmup_steps": 2, "decay_steps": 40, "batch_size": 2,
          "checkpoint_every": 2, "loss": {"l1": 1.0}, "model": {"width": 4}}


def params(model: nnx.Module) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))]


def assert_same_params(a: nnx.Module, b: nnx.Module) -> None:
    for x, y in zip(params(a), params(b), strict=True):
        np.testing.assert_array_equal(x, y)  # bit for bit


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return simulated_dataset(tmp_path_factory.mktemp("sim"), n=6, size=32, coils=4, seed=0)


@pytest.fixture(scope="module")
def full_run(data, tmp_path_factory):
    """An uninterrupted 6-step run: (model, history, folder)."""
    out = tmp_path_factory.mktemp("full")
    model = Tiny(rngs=nnx.Rngs(0))
    history = train(model, CONFIG, data, out, steps=6)
    return model, history, out


# ----------------------------------------------------------------------------------- optimiser
def test_schedule_is_linear_warmup_then_cosine():
    cfg = {"learning_rate": 1e-2, "warmup_steps": 4, "decay_steps": 20, "end_learning_rate": 1e-4}
    lr = learning_rate_schedule(cfg)
    for step in range(0, 30):
        if step <= 4:
            expected = 1e-2 * step / 4
        else:
            t = min(step - 4, 16) / 16
            expected = 1e-4 + (1e-2 - 1e-4) * 0.5 * (1 + math.cos(math.pi * t))
        assert float(lr(step)) == pytest.approx(expected, rel=1e-5, abs=1e-9), step


@pytest.mark.parametrize("kind", ["adam", "adamw"])
def test_optimizer_follows_the_schedule(kind):
    cfg = {"optimizer": kind, "learning_rate": 1e-2, "warmup_steps": 3, "decay_steps": 10,
           "clip_norm": 100.0, "weight_decay": 0.1 if kind == "adamw" else 0.0, "eps": 1e-12}
    tx, lr = make_optimizer(cfg), learning_rate_schedule(cfg)
    p = {"w": jnp.array([0.5, -2.0])}
    g = {"w": jnp.ones(2)}  # constant gradient: Adam's normalised step is exactly 1
    state = tx.init(p)
    for step in range(10):
        updates, state = tx.update(g, state, p)
        decay = 0.1 * np.asarray(p["w"]) if kind == "adamw" else 0.0
        np.testing.assert_allclose(updates["w"], -float(lr(step)) * (1 + decay), rtol=1e-4, atol=1e-12)


def test_clipping_bounds_the_update():
    """With clip_norm 1, a gradient spike changes nothing: every gradient is scaled to norm 1."""
    direction = jnp.array([0.6, 0.8])
    p = {"w": jnp.zeros(2)}

    def updates(clip, norms):
        tx = make_optimizer({"learning_rate": 1e-2, "clip_norm": clip})
        state, out = tx.init(p), []
        for n in norms:
            u, state = tx.update({"w": n * direction}, state, p)
            out.append(np.asarray(u["w"]))
        return np.array(out)

    spiky = [1.0, 3.0, 1e6, 1.0, 2.0]  # a spike at step 2
    reference = updates(1.0, [1.0] * 5)
    np.testing.assert_allclose(updates(1.0, spiky), reference, rtol=1e-6)
    assert np.abs(reference).max() <= 1e-2 * (1 + 1e-6)
    unclipped = updates(None, spiky)
    assert np.abs(unclipped[3]).max() < 0.7 * np.abs(reference[3]).max()  # the spike stalls Adam


def test_config_errors():
    with pytest.raises(InvalidDataError, match=r"unknown training config field\(s\) \['lr'\]"):
        TrainConfig.from_dict({"lr": 1e-3})
    with pytest.raises(InvalidDataError, match="weight_decay .* needs optimizer 'adamw'"):
        make_optimizer({"weight_decay": 0.1})
    with pytest.raises(InvalidDataError, match="decay_steps"):
        make_optimizer({"warmup_steps": 10, "decay_steps": 10})
    with pytest.raises(InvalidDataError, match="learning_rate"):
        make_optimizer({"learning_rate": -1.0})
    with pytest.raises(InvalidDataError, match="unknown loss 'lpips'"):
        TrainConfig.from_dict({"loss": {"lpips": 1.0}})
    assert TrainConfig.from_dict(TrainConfig().to_dict()) == TrainConfig()


# ----------------------------------------------------------------------------------- losses
def test_ssim_loss_matches_scikit_image_is_zero_on_identity_and_differentiable():
    rng = np.random.default_rng(0)
    target = rng.uniform(0.1, 1.0, size=(2, 20, 20)).astype(np.float32)
    target[1] *= 3.0  # each image its own data range
    pred = (target + 0.1 * rng.standard_normal(target.shape)).astype(np.float32)
    expected = 1 - np.mean([structural_similarity(t, p, data_range=float(t.max()))
                            for t, p in zip(target.astype(np.float64), pred.astype(np.float64))])
    assert float(ssim_loss(pred, target)) == pytest.approx(expected, rel=1e-4)
    assert abs(float(ssim_loss(target, target))) < 1e-6
    assert abs(float(ssim_loss(target * np.exp(1j * 0.7), target))) < 1e-6  # magnitude of complex
    for at in (target, pred):
        g = jax.grad(ssim_loss)(jnp.asarray(at), target)
        assert bool(jnp.all(jnp.isfinite(g)))
    assert float(jnp.abs(jax.grad(ssim_loss)(jnp.asarray(pred), target)).max()) > 0


def test_l1_mse_and_combined_losses():
    rng = np.random.default_rng(1)
    target = rng.uniform(0.1, 1.0, size=(2, 12, 12)).astype(np.float32)
    pred = target + 0.2 * rng.standard_normal(target.shape).astype(np.float32)
    assert float(l1_loss(pred, target)) == pytest.approx(np.mean(np.abs(pred - target)), rel=1e-6)
    assert float(mse_loss(pred, target)) == pytest.approx(np.mean((pred - target) ** 2), rel=1e-6)
    mixed = combined_loss({"ssim": 0.84, "l1": 0.16})(pred, target)
    assert float(mixed) == pytest.approx(0.84 * float(ssim_loss(pred, target))
                                         + 0.16 * float(l1_loss(pred, target)), rel=1e-6)
    with pytest.raises(InvalidDataError, match="finite number >= 0"):
        combined_loss({"l1": -1.0})
    with pytest.raises(InvalidDataError, match="non-empty"):
        combined_loss({})


# ----------------------------------------------------------------------------------- training
def test_loss_lowers_and_outputs_are_written(data, tmp_path):
    cfg = {**CONFIG, "checkpoint_every": 10}
    history = train(Tiny(rngs=nnx.Rngs(1)), cfg, data, tmp_path, steps=21)
    losses = np.array([r["loss"] for r in history])
    assert len(losses) == 21 and np.isfinite(losses).all()
    assert losses[-6:].mean() < 0.8 * losses[:3].mean()
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines == history
    assert set(lines[0]) == {"step", "loss", "lr", "examples_per_s", "wall_s"}
    assert [r["step"] for r in lines] == list(range(1, 22))
    lr = learning_rate_schedule(cfg)
    assert [r["lr"] for r in lines] == pytest.approx([float(lr(s)) for s in range(21)])
    assert all(r["examples_per_s"] > 0 for r in lines) and lines[-1]["wall_s"] > lines[0]["wall_s"]
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "config.json").read_text()) == TrainConfig.from_dict(cfg).to_dict()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["10", "20", "21"]


def test_same_seed_gives_identical_params(data, full_run, tmp_path):
    model, history, _ = full_run
    twin = Tiny(rngs=nnx.Rngs(0))
    again = train(twin, CONFIG, data, tmp_path, steps=6)
    assert_same_params(model, twin)
    assert [r["loss"] for r in again] == [r["loss"] for r in history]


def test_checkpoint_round_trip(data, full_run):
    model, history, out = full_run
    restored = Tiny(rngs=nnx.Rngs(9))  # other initial weights, overwritten by the checkpoint
    again = train(restored, CONFIG, data, out, steps=6, resume=True)  # at step 6 already: restore only
    assert_same_params(model, restored)
    assert again == history


def test_resume_is_bit_exact(data, full_run, tmp_path):
    model, history, _ = full_run
    first = Tiny(rngs=nnx.Rngs(0))
    train(first, {**CONFIG, "checkpoint_every": 100}, data, tmp_path / "a", steps=3)
    with pytest.raises(InvalidDataError, match=r"fields \['checkpoint_every'\] differ"):
        train(Tiny(rngs=nnx.Rngs(0)), CONFIG, data, tmp_path / "a", steps=6, resume=True)
    resumed = Tiny(rngs=nnx.Rngs(5))
    log = train(resumed, {**CONFIG, "checkpoint_every": 100}, data, tmp_path / "a", steps=6, resume=True)
    assert_same_params(model, resumed)
    assert [r["loss"] for r in log] == [r["loss"] for r in history]


class Interrupted:
    """``data``, failing on its ``fail_at``-th example (as a killed data loader would)."""

    def __init__(self, data, fail_at: int):
        self.data, self.seed, self.calls, self.fail_at = data, data.seed, 0, fail_at

    def __len__(self) -> int:
        return len(self.data)

    def example(self, index: int, epoch: int):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt
        return self.data.example(index, epoch)


def test_interrupted_run_resumes_from_its_last_checkpoint(data, full_run, tmp_path):
    model, history, _ = full_run
    with pytest.raises(KeyboardInterrupt):
        train(Tiny(rngs=nnx.Rngs(0)), CONFIG, Interrupted(data, fail_at=11), tmp_path, steps=6)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["2", "4"]
    with pytest.raises(OutputError, match="resume=True"):
        train(Tiny(rngs=nnx.Rngs(0)), CONFIG, data, tmp_path, steps=6)
    with pytest.raises(InvalidDataError, match="'model/conv1/bias'.*another architecture"):
        train(Tiny(3, rngs=nnx.Rngs(0)), CONFIG, data, tmp_path, steps=6, resume=True)
    resumed = Tiny(rngs=nnx.Rngs(0))
    log = train(resumed, CONFIG, data, tmp_path, steps=6, resume=True)
    assert_same_params(model, resumed)
    assert [r["step"] for r in log] == list(range(1, 7))  # steps logged past the checkpoint dropped
    assert [r["loss"] for r in log] == [r["loss"] for r in history]


def test_non_finite_loss_stops_training(data, tmp_path):
    class NaNTarget(Interrupted):
        def example(self, index, epoch):
            ex = self.data.example(index, epoch)
            return {**ex, "target": np.full_like(ex["target"], np.nan)}

    with pytest.raises(InvalidDataError, match="training loss is nan at step 1"):
        train(Tiny(rngs=nnx.Rngs(0)), CONFIG, NaNTarget(data, 0), tmp_path, steps=3)


# ----------------------------------------------------------------------------------- saved models
def test_save_and_load_model(full_run, data, tmp_path):
    model = full_run[0]
    save_model(model, {"width": 4}, tmp_path / "m")
    loaded = load_model(tmp_path / "m", build)
    assert_same_params(model, loaded)
    batch = {k: v[None] for k, v in data.example(0, 0)["inputs"].items()}
    np.testing.assert_array_equal(model(**batch), loaded(**batch))
    size = (tmp_path / "m" / "weights.msgpack").stat().st_size
    assert size < 4 * sum(x.size for x in params(model)) + 2000

    (tmp_path / "m" / "config.json").write_text(json.dumps({"width": 3}))
    with pytest.raises(InvalidDataError, match="'conv1/bias' is \\(4,\\) float32, the model's is \\(3,\\)"):
        load_model(tmp_path / "m", build)


def test_load_model_errors(full_run, tmp_path):
    save_model(full_run[0], {"width": 4}, tmp_path)
    weights = (tmp_path / "weights.msgpack").read_bytes()
    (tmp_path / "weights.msgpack").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(FileFormatError, match="corrupt model weights"):
        load_model(tmp_path, build)
    (tmp_path / "weights.msgpack").unlink()
    with pytest.raises(FileFormatError, match="no model weights"):
        load_model(tmp_path, build)
    (tmp_path / "config.json").write_text("{width: 4")
    with pytest.raises(FileFormatError, match="not readable JSON"):
        load_model(tmp_path, build)
    (tmp_path / "config.json").unlink()
    with pytest.raises(FileFormatError, match="config.json: no model config"):
        load_model(tmp_path, build)

    class Smaller(nnx.Module):
        def __init__(self, rngs):
            self.conv1 = nnx.Conv(1, 4, (3, 3), rngs=rngs)

    save_model(Smaller(nnx.Rngs(0)), {"width": 4}, tmp_path / "small")
    with pytest.raises(InvalidDataError, match="no 'conv2/bias'"):
        load_model(tmp_path / "small", build)
    with pytest.raises(InvalidDataError, match="JSON-serialisable"):
        save_model(full_run[0], {"width": object()}, tmp_path / "x")
