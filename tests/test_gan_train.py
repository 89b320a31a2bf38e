"""GAN training with the one loop of recon.train: logs, determinism, exact resume, EMA, the
pixel-only limit, the denoiser models of build_model, the LDCT and MRI enhancement experiments
and ``recon train gan_ldct_small`` through the real CLI.

The loop tests train a tiny RED-CNN denoiser on noisy Gaussian blobs whose noise is drawn per
``(seed, epoch, index)``; the experiment tests shrink the experiments to 32 x 32 images.
"""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx
from skimage.metrics import peak_signal_noise_ratio

from experiments import base
from physics.errors import InvalidDataError, ShapeError
from physics.mri import MultiCoilMRI
from recon.cli import main
from recon.cg import cgls
from recon.data import LDCTDataset, example_rng
from recon.fbp import fbp
from recon.gan import GANConfig, MultiCoilEnhancer, build_critic, make_gan_step, train_gan
from recon.learned import load_trained
from recon.train import load_calibration, make_optimizer, save_model, train
from recon.unrolled import (MoDL, MoDLConfig, REDCNNDenoiser, UNetDenoiser, UNetDenoiserConfig,
                            build_model)
from tests.conftest import complex_normal, rngs


class Blobs:
    """``n`` images of Gaussian blobs (fixed per index) plus noise of std 0.2 drawn per
    ``(seed, epoch, index)``: ``{"inputs": {"x": noisy}, "target": clean}``, float32."""

    def __init__(self, n: int = 6, size: int = 24, seed: int = 0):
        self.seed, self.n = seed, n
        y, x = np.mgrid[:size, :size]
        rng = np.random.default_rng(99)
        self.clean = np.zeros((n, size, size), np.float32)
        for i in range(n):
            for cy, cx, r in rng.uniform([4, 4, 2], [size - 4, size - 4, 4], (3, 3)):
                self.clean[i] += np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * r ** 2)).astype(np.float32)

    def __len__(self) -> int:
        return self.n

    def example(self, index: int, epoch: int) -> dict:
        noise = 0.2 * example_rng(self.seed, epoch, index).standard_normal(self.clean.shape[1:])
        return {"inputs": {"x": (self.clean[index] + noise).astype(np.float32)},
                "target": self.clean[index].copy()}


MODEL = {"model": "redcnn", "features": 8, "layers": 3}
CONFIG = {"learning_rate": 3e-3, "decay_steps": 100, "batch_size": 2, "checkpoint_every": 2,
          "loss": {"mse": 1.0}, "model": MODEL, "adversarial": "wgan-gp", "adv_weight": 0.01,
          "critic": {"model": "wgan", "features": 4, "layers": 2, "spectral_norm": True},
          "critic_optimizer": {"learning_rate": 1e-3}, "critic_steps": 2, "ema_decay": 0.9, "seed": 3}


def models(config: dict = CONFIG) -> tuple[nnx.Module, nnx.Module]:
    """A fresh generator and critic of ``config`` (fixed initialisation)."""
    return build_model(config["model"], rngs(0)), build_critic(config["critic"], 1, rngs(1))


def params(module: nnx.Module) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(module, nnx.Param))]


def assert_same(a: nnx.Module, b: nnx.Module) -> None:
    """Every variable (parameters, power-iteration vectors) equal bit for bit."""
    for x, y in zip(jax.tree.leaves(nnx.state(a)), jax.tree.leaves(nnx.state(b)), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def data():
    return Blobs()


@pytest.fixture(scope="module")
def full_run(data, tmp_path_factory):
    """An uninterrupted 6-step WGAN-GP run: (generator, critic, ema, history, folder)."""
    out = tmp_path_factory.mktemp("gan")
    generator, critic = models()
    history, ema = train_gan(generator, critic, CONFIG, data, out, steps=6, progress=False)
    return generator, critic, ema, history, out


# ------------------------------------------------------------------------------------------------
# the loop
# ------------------------------------------------------------------------------------------------
def test_gan_run_lowers_the_pixel_loss_and_writes_its_logs(data, tmp_path):
    config = {**CONFIG, "checkpoint_every": 10}  # the step of CONFIG: compiled once for the file
    history, _ = train_gan(*models(config), config, data, tmp_path, steps=30, progress=False)
    pixel = np.array([r["pixel"] for r in history])
    assert pixel[-4:].mean() < 0.75 * pixel[:2].mean()
    assert pixel[-4:].mean() < 0.2 ** 2  # better than returning the noisy input
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines == history and [r["step"] for r in lines] == list(range(1, 31))
    assert set(lines[0]) == {"step", "loss", "generator", "pixel", "adversarial", "critic", "real_score",
                             "fake_score", "gradient_penalty", "lr", "lr_critic", "examples_per_s", "wall_s"}
    for r in lines:
        assert r["loss"] == r["generator"] == pytest.approx(r["pixel"] + 0.01 * r["adversarial"], rel=1e-5)
    assert lines[4]["lr"] == pytest.approx(3e-3 * 0.5 * (1 + np.cos(np.pi * 4 / 100)), rel=1e-5)
    assert lines[4]["lr_critic"] == pytest.approx(1e-3 * 0.5 * (1 + np.cos(np.pi * 4 / 100)), rel=1e-5)
    assert json.loads((tmp_path / "config.json").read_text()) == GANConfig.from_dict(config).to_dict()
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["10", "20", "30"]


def test_same_seed_gives_identical_runs(data, full_run, tmp_path):
    generator, critic, ema, history, _ = full_run
    assert "gradient_penalty" in history[0] and all(r["gradient_penalty"] > 0 for r in history)
    twin_g, twin_c = models()
    again, twin_ema = train_gan(twin_g, twin_c, CONFIG, data, tmp_path, steps=6, progress=False)
    for a, b in ((generator, twin_g), (critic, twin_c), (ema, twin_ema)):
        assert_same(a, b)
    assert [{k: v for k, v in r.items() if k not in ("examples_per_s", "wall_s")} for r in again] == \
           [{k: v for k, v in r.items() if k not in ("examples_per_s", "wall_s")} for r in history]


class Interrupted(Blobs):
    """Blobs failing on their ``fail_at``-th example (as a killed data loader would)."""

    def __init__(self, fail_at: int):
        super().__init__()
        self.calls, self.fail_at = 0, fail_at

    def example(self, index: int, epoch: int) -> dict:
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt
        return super().example(index, epoch)


def test_interrupted_run_resumes_bit_for_bit(data, full_run, tmp_path):
    """Killed in step 4 (examples 7-8), resumed from checkpoint 2 (models, both optimisers, EMA,
    RNG key and count, power iterations): the uninterrupted run's every variable and metric."""
    generator, critic, ema, history, _ = full_run
    with pytest.raises(KeyboardInterrupt):
        train_gan(*models(), CONFIG, Interrupted(fail_at=7), tmp_path, steps=6, progress=False)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["2"]
    with pytest.raises(InvalidDataError, match=r"fields \['adv_weight'\] differ"):
        train_gan(*models(), {**CONFIG, "adv_weight": 0.1}, data, tmp_path, steps=6, resume=True)
    resumed_g, resumed_c = build_model(MODEL, rngs(5)), build_critic(CONFIG["critic"], 1, rngs(6))
    log, resumed_ema = train_gan(resumed_g, resumed_c, CONFIG, data, tmp_path, steps=6, resume=True,
                                 progress=False)
    for a, b in ((generator, resumed_g), (critic, resumed_c), (ema, resumed_ema)):
        assert_same(a, b)
    assert [r["generator"] for r in log] == [r["generator"] for r in history]
    assert [r["gradient_penalty"] for r in log] == [r["gradient_penalty"] for r in history]


def test_ema_is_the_saved_inference_model(full_run, tmp_path):
    generator, _, ema, _, out = full_run
    with ocp.CheckpointManager(out / "checkpoints") as manager:
        saved = manager.restore(6, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
    for a, b in zip(jax.tree.leaves(saved["ema"]), jax.tree.leaves(nnx.to_pure_dict(nnx.state(ema))),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(params(ema), params(generator)))
    save_model(ema, MODEL, tmp_path)
    loaded = load_trained(tmp_path)
    assert isinstance(loaded, REDCNNDenoiser)
    for a, b in zip(params(loaded), params(ema), strict=True):
        np.testing.assert_array_equal(a, b)


def test_zero_adversarial_weight_is_pixel_loss_training(data, tmp_path):
    """adv_weight 0: the generator follows supervised training with the same optimiser and loss."""
    config = {**CONFIG, "adv_weight": 0.0, "adversarial": "lsgan", "critic_steps": 1,
              "critic": {"model": "patchgan", "features": 4, "layers": 2}}
    generator, critic = models(config)
    history, _ = train_gan(generator, critic, config, data, tmp_path / "gan", steps=4, progress=False)
    assert all(r["generator"] == r["pixel"] for r in history)
    supervised = build_model(MODEL, rngs(0))
    fields = ("learning_rate", "decay_steps", "batch_size", "checkpoint_every", "loss", "model")
    log = train(supervised, {k: config[k] for k in fields}, data, tmp_path / "sup", steps=4, progress=False)
    np.testing.assert_allclose([r["pixel"] for r in history], [r["loss"] for r in log], rtol=1e-5)
    for a, b in zip(params(generator), params(supervised), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_non_finite_metric_stops_training(tmp_path):
    class NaNTarget(Blobs):
        def example(self, index, epoch):
            return {**super().example(index, epoch), "target": np.full((24, 24), np.nan, np.float32)}

    with pytest.raises(InvalidDataError, match="training .* is nan at step 1"):
        train_gan(*models(), CONFIG, NaNTarget(), tmp_path, steps=3, progress=False)


def test_gan_config_errors():
    assert GANConfig.from_dict(GANConfig().to_dict()) == GANConfig()
    assert GANConfig().loss == {"l1": 1.0}
    c = GANConfig.from_dict(CONFIG)
    assert c.optimizer_config("critic")["learning_rate"] == 1e-3
    assert c.optimizer_config("generator")["learning_rate"] == 3e-3
    make_optimizer(c.optimizer_config("critic"))
    bad = [({"lr_critic": 1e-3}, r"unknown training config field\(s\) \['lr_critic'\]"),
           ({"critic": {"model": "dcgan"}}, "'model' one of"),
           ({"critic": {"model": "wgan", "width": 3}}, "unknown field 'width'"),
           ({"critic": {"model": "wgan", "layers": 0}}, "layers must be an integer >= 1"),
           ({"critic_optimizer": {"loss": {"l1": 1.0}}}, "critic_optimizer must be an object of optimiser"),
           ({"critic_optimizer": {"learning_rate": -1.0}}, "learning_rate must be a finite number > 0"),
           ({"adversarial": "hinge"}, "adversarial must be 'lsgan' or 'wgan-gp'"),
           ({"adv_weight": -0.1}, "adv_weight must be a finite number >= 0"),
           ({"critic_steps": 0}, "critic_steps must be an integer >= 1"),
           ({"ema_decay": 1.0}, r"ema_decay must be a number in \[0, 1\)"),
           ({"seed": -1}, "seed must be an integer >= 0")]
    for change, message in bad:
        with pytest.raises(InvalidDataError, match=message):
            GANConfig.from_dict({**CONFIG, **change})


def test_complex_generator_against_magnitude_targets(rng):
    """A complex enhancer against a real (RSS) target: the critic scores magnitudes, divided by
    the RMS of the target."""
    net = build_model({"model": "redcnn", "complex_images": True, "features": 4, "layers": 1}, rngs(0))
    critic = build_critic({"model": "patchgan", "features": 4, "layers": 1}, 1, rngs(1))
    g_opt = nnx.Optimizer(net, make_optimizer({"learning_rate": 1e-3}), wrt=nnx.Param)
    c_opt = nnx.Optimizer(critic, make_optimizer({"learning_rate": 1e-3}), wrt=nnx.Param)
    x = jnp.asarray(complex_normal(rng, (2, 16, 16)))
    batch = {"inputs": {"x": x}, "target": jnp.abs(x)}
    rms = jnp.sqrt(jnp.mean(jnp.abs(x) ** 2, axis=(1, 2), keepdims=True))  # of each target
    expected = float(jnp.mean(nnx.clone(critic)(jnp.abs(net(x)) / rms)))  # the critic before its update
    out = make_gan_step({"l1": 1.0})(net, critic, g_opt, c_opt, batch, jax.random.key(0))
    assert all(np.isfinite(float(v)) for v in out.values())
    assert float(out["fake_score"]) == pytest.approx(expected, rel=1e-4)


# ------------------------------------------------------------------------------------------------
# denoiser models
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("config", [{"model": "redcnn", "features": 4, "layers": 2},  # CT
                                    {"model": "unet_denoiser", "chans": 4, "pools": 2}])  # MRI
def test_denoisers_are_scale_equivariant_and_round_trip(config, rng, tmp_path):
    model = build_model(config, rngs(0))
    nnx.update(model, jax.tree.map(lambda p: p + 0.05, nnx.state(model, nnx.Param)))  # non-trivial
    complex_images = config.get("complex_images", config["model"] == "unet_denoiser")
    x = jnp.asarray(complex_normal(rng, (2, 20, 20)) if complex_images
                    else 0.02 * (1 + rng.standard_normal((2, 20, 20))), jnp.complex64 if complex_images
                    else jnp.float32)
    apply = nnx.jit(lambda model, x: model(x))
    y = apply(model, x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert float(jnp.linalg.norm(y - x)) > 1e-3 * float(jnp.linalg.norm(x))  # not the identity
    peak = float(jnp.abs(y).max())
    np.testing.assert_allclose(apply(model, 1e4 * x), 1e4 * y, rtol=2e-3, atol=2e-3 * 1e4 * peak)  # units
    np.testing.assert_allclose(apply(model, x[0]), y[0], rtol=1e-4, atol=1e-5 * peak)  # unbatched
    with pytest.raises(ShapeError, match="built for"):
        model(jnp.abs(x) if complex_images else x.astype(jnp.complex64))
    save_model(model, model.config.to_dict(), tmp_path)
    loaded = load_trained(tmp_path)
    assert type(loaded) is type(model) and loaded.config == model.config
    np.testing.assert_array_equal(apply(loaded, x), y)


def test_denoiser_configs():
    assert UNetDenoiserConfig.from_dict({"model": "unet_denoiser", "chans": 8}).to_dict() == \
           {"model": "unet_denoiser", "complex_images": True, "chans": 8, "pools": 4}
    with pytest.raises(InvalidDataError, match="features must be int"):
        build_model({"model": "redcnn", "features": 2.5}, nnx.Rngs(0))
    with pytest.raises(InvalidDataError, match=r"unknown field\(s\) \['depth'\]"):
        build_model({"model": "unet_denoiser", "depth": 3}, nnx.Rngs(0))
    zero = build_model({"model": "redcnn", "features": 4, "layers": 2}, rngs(0))
    nnx.update(zero, jax.tree.map(jnp.zeros_like, nnx.state(zero, nnx.Param)))
    x = jnp.linspace(0, 1, 18 * 18, dtype=jnp.float32).reshape(1, 18, 18)
    np.testing.assert_allclose(zero(x), x, atol=1e-6)  # RED-CNN's shortcut: the identity


def test_multicoil_enhancer_keeps_the_measured_kspace(rng):
    maps = complex_normal(rng, (3, 16, 16))
    maps /= np.sqrt(np.sum(np.abs(maps) ** 2, axis=0))
    mask = np.zeros((16, 16), np.float32)
    mask[:, ::3] = 1
    truth = complex_normal(rng, (16, 16))
    y = np.asarray(MultiCoilMRI(jnp.asarray(maps), jnp.asarray(mask))(jnp.asarray(truth)))
    y = y + 0.05 * mask * complex_normal(rng, y.shape)  # noise, for the noise-weighted consistency
    net = build_model({"model": "redcnn", "complex_images": True, "features": 2, "layers": 1}, rngs(0))
    inputs = {"masked_kspace": y[None], "mask": mask[None], "maps": maps[None]}
    A = MultiCoilMRI(jnp.asarray(maps), jnp.asarray(mask))
    x0 = MultiCoilEnhancer(net).zero_filled(**inputs)
    np.testing.assert_allclose(x0[0], A.adjoint(jnp.asarray(y)), rtol=1e-5, atol=1e-6)
    plain = MultiCoilEnhancer(net, consistency=False)(**inputs)
    np.testing.assert_allclose(plain, net(x0), rtol=1e-5, atol=1e-6)
    consistent = MultiCoilEnhancer(net, maxiter=50)(**inputs)
    soft = MultiCoilEnhancer(net, relative_error=2.0, maxiter=50)(**inputs)
    residual = lambda x: float(jnp.linalg.norm(A(x[0]) - y) / np.linalg.norm(y))  # noqa: E731
    least_squares, _ = cgls(A, jnp.asarray(y), maxiter=100, tol=1e-7)
    assert residual(plain) > 0.1 and residual(consistent) < 1.01 * residual(least_squares[None])
    assert 1.05 * residual(consistent) < residual(soft) < residual(plain) / 1.05


def test_ldct_pairs(tmp_path):
    e = base.get("gan_ldct_small")
    data = dataclasses.replace(e.data, size=24, angles=24, train=2, test=1)
    path, _ = data.simulate(tmp_path, "train")
    pairs = LDCTDataset(path, dose=1e3, normal_dose=None, filter="ramp", seed=4)
    a, again, later = pairs.example(1, 0), pairs.example(1, 0), pairs.example(1, 1)
    np.testing.assert_array_equal(a["inputs"]["x"], again["inputs"]["x"])
    assert not np.array_equal(a["inputs"]["x"], later["inputs"]["x"])  # fresh noise per epoch
    exact = pairs.slices.example(1, 0)["inputs"]["sinogram"]
    np.testing.assert_allclose(a["target"], fbp(exact, pairs.geometry), rtol=1e-5, atol=1e-7)
    noisy = LDCTDataset(path, dose=1e3, normal_dose=1e5, seed=4).example(1, 0)
    assert not np.array_equal(noisy["target"], fbp(exact, pairs.geometry, filter="hann"))
    with pytest.raises(InvalidDataError, match="must exceed dose"):
        LDCTDataset(path, dose=1e4, normal_dose=1e3)


# ------------------------------------------------------------------------------------------------
# experiments
# ------------------------------------------------------------------------------------------------
GAN_EXPERIMENTS = ("gan_ldct_small", "gan_ldct_small_pixel", "gan_mri_small")


def test_experiment_records_round_trip_and_are_valid():
    for name in GAN_EXPERIMENTS:
        module = __import__(f"experiments.{name}", fromlist=["FULL"])
        for e in (module.EXPERIMENT, module.FULL):
            record = json.loads(json.dumps(e.to_dict()))
            assert base.Experiment.from_dict(record) == e and record["gan"] == e.gan
            GANConfig.from_dict(e.config())
            nnx.eval_shape(lambda e=e: build_model(e.model, nnx.Rngs(0)))
    assert base.get("gan_ldct_small_pixel").gan["adv_weight"] == 0.0
    plain = base.get("lpd_ct_small")
    assert "gan" not in plain.to_dict() and base.Experiment.from_dict(plain.to_dict()) == plain
    with pytest.raises(InvalidDataError, match="optionally 'gan'"):
        base.Experiment.from_dict({**plain.to_dict(), "critic": {}})


def tiny(name: str) -> base.Experiment:
    """GAN experiment ``name`` on 32 x 32 data (2 training, 1 test slice) with tiny networks."""
    e = base.get(name)
    if e.data.kind == "mri":
        model, data = dict(chans=4, pools=2), dict(coils=4, center_fraction=0.16)
    else:
        model, data = dict(features=4, layers=2), dict(angles=24)
    return dataclasses.replace(e, model={**e.model, **model}, train={**e.train, "batch_size": 1},
                               gan={**e.gan, "critic": {**e.gan["critic"], "features": 4, "layers": 2}},
                               data=dataclasses.replace(e.data, size=32, train=2, test=1, **data))


def test_tiny_mri_experiment_trains_saves_and_scores(tmp_path):
    e = tiny("gan_mri_small")
    history = base.run(e, tmp_path, steps=2, progress=False)
    assert [r["step"] for r in history] == [1, 2]
    assert base.get(str(tmp_path / "model" / base.EXPERIMENT_FILE)) == e
    net = load_trained(tmp_path / "model")
    assert isinstance(net, UNetDenoiser)
    scores = base.evaluate(e, tmp_path / "model", tmp_path / "data")
    assert set(scores) == {"model", "model+dc", "model+noise-dc", "input", "zero-filled"}
    assert all(np.isfinite(v) for s in scores.values() for v in s.values())
    # the calibration: the generator's relative error on validation slices (other phantoms than test)
    calibration = json.loads((tmp_path / "model" / "calibration.json").read_text())
    assert calibration["split"] == "validation" and calibration["examples"] == 1
    valid = e.dataset(tmp_path / "data", "validation").example(0, 0)
    assert not np.array_equal(valid["target"], e.dataset(tmp_path / "data", "test").example(0, 0)["target"])
    out = np.abs(np.asarray(e.wrap(net, consistency=False)(**{k: jnp.asarray(v)[None]
                                                             for k, v in valid["inputs"].items()})[0]))
    expected = np.linalg.norm(out - valid["target"]) / np.linalg.norm(out)
    assert calibration["relative_error"] == pytest.approx(expected, rel=1e-4)
    assert load_calibration(tmp_path / "model") == calibration["relative_error"]
    save_model(net, e.model, tmp_path / "model")  # new weights: the old calibration no longer holds
    assert load_calibration(tmp_path / "model") is None
    example = e.dataset(tmp_path / "data", "test").example(0, 0)
    k, maps = example["inputs"]["masked_kspace"], example["inputs"]["maps"]  # |A^H y| by numpy's FFT
    coil_images = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm="ortho"),
                                  axes=(-2, -1))
    x, target = np.abs(np.sum(np.conj(maps) * coil_images, axis=0)), example["target"].astype(np.float64)
    assert scores["input"]["psnr"] == pytest.approx(
        peak_signal_noise_ratio(target, x.astype(np.float64), data_range=float(target.max())), abs=1e-3)


def test_recon_train_and_evaluate_gan_ldct_small_commands(tmp_path, capsys):
    """The real experiment, 3 steps, through recon.cli.main; then its test-set scores."""
    out = tmp_path / "run"
    assert main(["train", "gan_ldct_small", "--steps", "3", "--out", str(out)]) == 0
    assert "trained gan_ldct_small: 3 steps" in capsys.readouterr().out
    net = load_trained(out / "model")
    assert isinstance(net, REDCNNDenoiser) and net.config.features == 32
    assert main(["evaluate", "--model", str(out / "model"), "--data", str(out / "data"), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert set(scores) == {"model", "input"} and all(np.isfinite(s["psnr"]) for s in scores.values())
    test = base.get("gan_ldct_small").dataset(out / "data", "test")
    psnr = [peak_signal_noise_ratio(ex["target"].astype(np.float64), ex["inputs"]["x"].astype(np.float64),
                                    data_range=float(ex["target"].max()))
            for ex in (test.example(i, 0) for i in range(len(test)))]
    assert scores["input"]["psnr"] == pytest.approx(np.mean(psnr), abs=1e-3)  # the low-dose FBP


def test_gan_generator_as_the_regulariser_block_of_modl(tmp_path):
    """``pretrained``: MoDL's block starts as the generator of a GAN experiment, which run() trains
    first into the sibling folder; the block must match the generator's architecture."""
    gan = dataclasses.replace(tiny("gan_mri_small"), steps=2)
    (tmp_path / "gan.json").write_text(json.dumps(gan.to_dict()))
    e = base.get("modl_gan_small")
    assert e.pretrained == {"denoiser": "gan_mri_small"} and e.model["denoiser"] == "unet_denoiser"
    assert base.get("modl_gan_small:FULL").pretrained == {"denoiser": "gan_mri_small:FULL"}
    for variant in ("", ":FULL"):  # the block of each MoDL is the generator it starts from
        modl = base.get("modl_gan_small" + variant)
        generator = base.get(modl.pretrained["denoiser"]).model
        assert (MoDL.denoiser_config(MoDLConfig.from_dict(modl.model))
                == UNetDenoiserConfig.from_dict(generator).to_dict())
    small = {"cascades": 2, "features": 4, "depth": 2, "cg_iterations": 2}
    e = dataclasses.replace(e, model={**e.model, **small},
                            data=gan.data, pretrained={"denoiser": str(tmp_path / "gan.json")})
    assert base.Experiment.from_dict(e.to_dict()) == e
    base.run(e, tmp_path / "modl", steps=1, progress=False)  # lr 0 at step 1 (warm-up): weights unchanged
    generator = load_trained(tmp_path / gan.name / "model")
    block = load_trained(tmp_path / "modl" / "model").denoiser
    assert isinstance(block, UNetDenoiser) and block.config == generator.config
    jax.tree.map(np.testing.assert_array_equal, nnx.state(block, nnx.Param), nnx.state(generator, nnx.Param))
    wrong = dataclasses.replace(e, model={**e.model, "features": 8})
    with pytest.raises(InvalidDataError, match="pretrained denoiser"):
        base.run(wrong, tmp_path / "wrong", steps=1, progress=False)
    with pytest.raises(InvalidDataError, match="no submodule 'regulariser'"):
        base.run(dataclasses.replace(e, pretrained={"regulariser": str(tmp_path / "gan.json")}),
                 tmp_path / "wrong", steps=1, progress=False)
    with pytest.raises(InvalidDataError, match="variant"):
        base.get("modl_gan_small:BIG")
