"""Learned reconstruction in use: every experiment trains (tiny overrides of its model and data),
the adapters and ESPIRiT maps of the operator models, test-set scores against independent
metrics, the real ``recon train`` / ``reconstruct --method e2e-varnet`` / ``evaluate --model``
commands, and every bad input (one line, status 2, nothing written)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from skimage.metrics import peak_signal_noise_ratio

from experiments import base
from physics.coil_maps import espirit
from physics.ct_geometry import parallel_beam
from physics.mri import MultiCoilMRI
from recon.cli import main
from recon.data import collate
from recon.fbp import fbp
from recon.learned import (CTAdapter, MapsDataset, MultiCoilAdapter, default_weights, load_trained,
                           normalised_ct_operator)
from recon.train import TrainConfig
from recon.unrolled import build_model

ROOT = Path(__file__).resolve().parents[1]
TINY_MODELS = {
    "e2e_varnet": dict(cascades=1, chans=2, pools=1, sens_chans=2, sens_pools=1),
    "modl": dict(cascades=1, features=4, depth=2, cg_iterations=3),
    "varnet": dict(cascades=1, filters=4, kernel_size=3, rbf=7),
    "learned_primal_dual": dict(cascades=1, primal_memory=2, dual_memory=2, features=4, depth=2),
}
SMALL = ("modl_small", "varnet_small", "lpd_ct_small")


def tiny(name: str) -> base.Experiment:
    """Experiment ``name`` on 32 x 32 data (2 training, 1 test slice) with a one-cascade model."""
    e = base.get(name)
    size = dict(coils=4, acceleration=4.0, center_fraction=0.16) if e.data.kind == "mri" else dict(angles=16)
    return dataclasses.replace(e, model={**e.model, **TINY_MODELS[e.model["model"]]},
                               data=dataclasses.replace(e.data, size=32, train=2, test=1, **size))


def params(model: nnx.Module) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``runs(name) -> (experiment, out, history)``: the tiny experiment trained 2 steps (once)."""
    done = {}

    def get(name: str):
        if name not in done:
            out = tmp_path_factory.mktemp(name)
            e = tiny(name)
            done[name] = (e, out, base.run(e, out, steps=2, progress=False))
        return done[name]

    return get


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    """Simulated 2-slice, 4-coil 32 x 32 k-space at 4x (equispaced), a CT slice and a radial scan."""
    d = tmp_path_factory.mktemp("raw")
    assert main(["simulate", "-o", str(d / "full.h5"), "--coils", "4", "--size", "32", "--slices", "2"]) == 0
    assert main(["undersample", str(d / "full.h5"), "-o", str(d / "r4.h5"), "--center-fraction", "0.16"]) == 0
    assert main(["simulate-ct", "-o", str(d / "ct.h5"), "--size", "32", "--angles", "16"]) == 0
    assert main(["simulate", "-o", str(d / "radial.h5"), "--coils", "2", "--size", "32", "--trajectory",
                 "radial", "--spokes", "8"]) == 0
    return d


# ------------------------------------------------------------------------------------------------
# experiments
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SMALL)
def test_small_experiment_trains_and_saves(runs, name):
    e, out, history = runs(name)
    assert [r["step"] for r in history] == [1, 2] and all(np.isfinite(r["loss"]) for r in history)
    model_dir = out / "model"
    assert base.get(str(model_dir / base.EXPERIMENT_FILE)) == e  # experiment.json round trip
    trained = load_trained(model_dir)
    assert trained.config == type(trained).config_type.from_dict(e.model)
    initial = params(e.build())  # the experiment's deterministic initialisation
    assert any(not np.array_equal(a, b) for a, b in zip(params(trained), initial, strict=True))


@pytest.mark.parametrize("name", ["modl_small", "lpd_ct_small"])
def test_test_set_scores_and_baselines_match_independent_metrics(runs, name):
    """Zero-filled (numpy FFT) and FBP baselines of score_test_set, PSNR by scikit-image."""
    e, out, _ = runs(name)
    scores = base.evaluate(e, out / "model", out / "data")
    baseline = "fbp" if e.data.kind == "ct" else "zero-filled"
    assert set(scores) == {"model", baseline}
    assert all(np.isfinite(v) for s in scores.values() for v in s.values())
    test = e.dataset(out / "data", "test")
    ex = test.example(0, 0)
    target = ex["target"]
    if e.data.kind == "mri":
        k = ex["inputs"]["masked_kspace"]
        coil_images = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm="ortho"),
                                      axes=(-2, -1))
        image = np.sqrt(np.sum(np.abs(coil_images) ** 2, axis=0))
    else:
        image = np.asarray(fbp(ex["inputs"]["sinogram"], test.geometry))
    psnr = peak_signal_noise_ratio(target.astype(np.float64), image.astype(np.float64),
                                   data_range=float(target.max()))
    assert scores[baseline]["psnr"] == pytest.approx(psnr, abs=1e-3)


def test_experiment_configs_are_valid_and_full_is_the_papers():
    for name in ("e2e_varnet_small", "modl_gan_small", *SMALL):
        module = __import__(f"experiments.{name}", fromlist=["FULL"])
        for e in (module.EXPERIMENT, module.FULL):
            assert base.Experiment.from_dict(json.loads(json.dumps(e.to_dict()))) == e
            TrainConfig.from_dict({**e.train, "model": e.model})
            nnx.eval_shape(lambda e=e: build_model(e.model, nnx.Rngs(0)))  # valid config, no arrays
    assert base.get("modl-small").model["model"] == "modl"
    full = {n: __import__(f"experiments.{n}", fromlist=["FULL"]).FULL.model for n in SMALL}
    assert full["modl_small"] == {"model": "modl", "cascades": 10, "features": 64, "depth": 5,
                                  "lam": 0.05, "cg_iterations": 10}
    assert (full["varnet_small"]["cascades"], full["varnet_small"]["filters"],
            full["varnet_small"]["kernel_size"], full["varnet_small"]["rbf"]) == (10, 24, 11, 31)
    assert (full["lpd_ct_small"]["cascades"], full["lpd_ct_small"]["primal_memory"],
            full["lpd_ct_small"]["dual_memory"], full["lpd_ct_small"]["features"]) == (10, 5, 5, 32)


# ------------------------------------------------------------------------------------------------
# adapters and maps
# ------------------------------------------------------------------------------------------------
def test_maps_are_espirit_of_the_centre_block_and_do_not_depend_on_the_mask(runs):
    e, out, _ = runs("modl_small")
    data = e.dataset(out / "data", "train")
    assert isinstance(data, MapsDataset)
    a, b = data.example(0, 0), data.example(0, 1)
    assert not np.array_equal(a["inputs"]["mask"], b["inputs"]["mask"])  # other epoch, other mask
    np.testing.assert_array_equal(a["inputs"]["maps"], b["inputs"]["maps"])
    plain = data.dataset.example(0, 0)
    np.testing.assert_array_equal(a["inputs"]["masked_kspace"], plain["inputs"]["masked_kspace"])
    with h5py.File(data.dataset.files[0]) as f:  # the fully sampled file, independently
        full = f["kspace"][0]
    expected = espirit(full, calib=(32, round(32 * 0.16)), kernel=None, crop=0.8)
    np.testing.assert_allclose(a["inputs"]["maps"], expected, atol=1e-5)
    power = np.sum(np.abs(a["inputs"]["maps"]) ** 2, axis=0)
    assert np.allclose(power[power > 0], 1.0, atol=1e-4)


def test_multicoil_adapter_is_the_model_per_item(runs):
    e, out, _ = runs("varnet_small")
    data = e.dataset(out / "data", "train")
    batch = collate([data.example(0, 0), data.example(1, 0)])
    net = load_trained(out / "model")
    together = MultiCoilAdapter(net)(**batch["inputs"])
    for i in range(2):
        k, mask, maps = (batch["inputs"][key][i] for key in ("masked_kspace", "mask", "maps"))
        alone = net(MultiCoilMRI(jnp.asarray(maps), jnp.asarray(mask)), jnp.asarray(k))
        np.testing.assert_allclose(together[i], alone, rtol=2e-4, atol=2e-5 * float(jnp.max(jnp.abs(alone))))


def test_ct_operator_has_unit_norm_by_its_dense_matrix():
    g = parallel_beam((12, 12), np.linspace(0, np.pi, 8, endpoint=False), 18)
    A = normalised_ct_operator(g)
    matrix = np.asarray(A(jnp.eye(144, dtype=jnp.float32).reshape(144, 12, 12))).reshape(144, -1).T
    assert np.linalg.norm(matrix, 2) == pytest.approx(1 / 1.02, rel=2e-3)  # operator_norm's margin
    adapter = CTAdapter(build_model({"model": "learned_primal_dual", **TINY_MODELS["learned_primal_dual"]},
                                    nnx.Rngs(0)), g)
    assert adapter.scale == pytest.approx(float(A.factor))


# ------------------------------------------------------------------------------------------------
# the command line
# ------------------------------------------------------------------------------------------------
def recon(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "recon.cli", *args], capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
    assert proc.returncode == 0, f"recon {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def e2e(tmp_path_factory) -> Path:
    """``recon train`` of a tiny E2E-VarNet experiment (a .json), 2 steps, in a subprocess."""
    d = tmp_path_factory.mktemp("e2e")
    (d / "tiny.json").write_text(json.dumps(tiny("e2e_varnet_small").to_dict()))
    proc = recon("train", str(d / "tiny.json"), "--out", str(d / "run"), "--steps", "2")
    assert "trained e2e_varnet_small: 2 steps" in proc.stdout
    return d / "run"


def test_train_reconstruct_evaluate_commands(e2e, raw, tmp_path, capsys):
    model_dir = e2e / "model"
    assert {p.name for p in model_dir.iterdir()} == {"weights.msgpack", "config.json", base.EXPERIMENT_FILE}
    assert len((e2e / "metrics.jsonl").read_text().splitlines()) == 2
    assert main(["reconstruct", str(raw / "r4.h5"), "-o", str(tmp_path / "e2e.h5"), "--method", "e2e-varnet",
                 "--weights", str(model_dir)]) == 0
    with h5py.File(tmp_path / "e2e.h5") as f, h5py.File(raw / "r4.h5") as r:
        images = f["reconstruction"][()]
        assert images.shape == (2, 32, 32) and f.attrs["method"] == "e2e-varnet"
        model = load_trained(model_dir)  # called directly, unjitted, on the file's masked k-space
        expected = np.asarray(model(jnp.asarray(r["kspace"][1]), jnp.asarray(r["mask"][()], jnp.float32)))
    np.testing.assert_allclose(images[1], expected, rtol=1e-4, atol=1e-5 * float(expected.max()))
    capsys.readouterr()
    assert main(["evaluate", "--model", str(model_dir), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert set(scores) == {"model", "zero-filled"} and np.isfinite(scores["model"]["ssim"])
    # resuming a finished run does nothing; training into it again without --resume is refused
    assert main(["train", str(e2e.parent / "tiny.json"), "--out", str(e2e), "--steps", "2", "--resume"]) == 0
    assert main(["train", str(e2e.parent / "tiny.json"), "--out", str(e2e), "--steps", "3"]) == 2
    assert len((e2e / "metrics.jsonl").read_text().splitlines()) == 2


def test_e2e_varnet_defaults_to_the_shipped_model(raw, tmp_path, capsys):
    shipped = default_weights("e2e-varnet")
    assert shipped == ROOT / "recon" / "data" / "e2e_varnet_small"
    model = load_trained(shipped, method="e2e-varnet")
    assert model.config.to_dict() == {**json.loads((shipped / "config.json").read_text()), "remat": False}
    # the command finds the shipped weights, then refuses non-Cartesian data (no network run)
    _expect_error(capsys, ["reconstruct", str(raw / "radial.h5"), "-o", str(tmp_path / "o.h5"), "--method",
                           "e2e-varnet"], "needs Cartesian k-space", tmp_path)


def test_modl_defaults_to_the_shipped_model(raw, tmp_path):
    shipped = default_weights("modl")
    assert shipped == ROOT / "recon" / "data" / "modl_small"
    assert load_trained(shipped, method="modl").config.model == "modl"
    assert main(["reconstruct", str(raw / "r4.h5"), "-o", str(tmp_path / "modl.h5"), "--method", "modl"]) == 0
    with h5py.File(tmp_path / "modl.h5") as f:
        assert f["reconstruction"].shape == (2, 32, 32) and np.all(np.isfinite(f["reconstruction"][()]))
        assert json.loads(f.attrs["parameters"])["weights"] == str(shipped)


def test_learned_reconstruct_with_operator_models(runs, raw, tmp_path):
    for name, method in (("modl_small", "modl"), ("varnet_small", "varnet")):
        model_dir = runs(name)[1] / "model"
        assert main(["reconstruct", str(raw / "r4.h5"), "-o", str(tmp_path / f"{method}.h5"), "--method",
                     method, "--weights", str(model_dir)]) == 0
        with h5py.File(tmp_path / f"{method}.h5") as f:
            assert f["reconstruction"].shape == (2, 32, 32)
            assert json.loads(f.attrs["parameters"])["model"]["model"] == method
    lpd = runs("lpd_ct_small")[1] / "model"
    assert main(["reconstruct", str(raw / "ct.h5"), "-o", str(tmp_path / "lpd.h5"), "--method",
                 "learned-primal-dual", "--weights", str(lpd)]) == 0
    with h5py.File(tmp_path / "lpd.h5") as f:
        assert f["reconstruction"].shape == (1, 32, 32) and np.all(np.isfinite(f["reconstruction"][()]))


def _expect_error(capsys, argv, pattern, folder):
    before = sorted(p.name for p in folder.iterdir())
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("recon: error:") and "\n" not in err and "Traceback" not in err
    assert pattern in err, err
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing written


def test_bad_inputs_give_one_line_and_status_2(runs, e2e, raw, tmp_path, capsys):
    good, modl, lpd = e2e / "model", runs("modl_small")[1] / "model", runs("lpd_ct_small")[1] / "model"
    mixed = shutil.copytree(good, tmp_path / "mixed")  # e2e config, modl weights
    shutil.copy(modl / "weights.msgpack", mixed / "weights.msgpack")
    no_config = shutil.copytree(good, tmp_path / "no-config")
    (no_config / "config.json").unlink()
    (tmp_path / "bad.json").write_text(json.dumps({**tiny("modl_small").to_dict(), "extra": 1}))
    out = str(tmp_path / "out.h5")
    mri, ct = str(raw / "r4.h5"), str(raw / "ct.h5")
    cases = [
        (["reconstruct", mri, "-o", out, "--method", "e2e-varnet", "--weights", str(mixed)],
         "another architecture"),
        (["reconstruct", mri, "-o", out, "--method", "e2e-varnet", "--weights", str(no_config)],
         "config.json"),
        (["reconstruct", mri, "-o", out, "--method", "modl", "--weights", str(good)], "needs a 'modl' model"),
        (["reconstruct", mri, "-o", out, "--method", "varnet"], "needs --weights"),
        (["reconstruct", mri, "-o", out, "--method", "learned-primal-dual", "--weights", str(lpd)],
         "complex_images=False"),
        (["reconstruct", ct, "-o", out, "--method", "modl", "--weights", str(modl)], "complex_images=True"),
        (["reconstruct", ct, "-o", out, "--method", "e2e-varnet", "--weights", str(good)], "not a sinogram"),
        (["train", "no_such_experiment", "--out", str(tmp_path / "train")], "unknown experiment"),
        (["train", str(tmp_path / "bad.json"), "--out", str(tmp_path / "train")], "expected an object"),
        (["evaluate", "--model", str(tmp_path)], "experiment.json"),
        (["evaluate", mri, "--model", str(good)], "no INPUT"),
        (["evaluate", "--model", str(good), "--experiment", "lpd_ct_small"], "not CT sinograms"),
        (["evaluate", mri], "--reference"),
    ]
    for argv, pattern in cases:
        _expect_error(capsys, argv, pattern, tmp_path)
