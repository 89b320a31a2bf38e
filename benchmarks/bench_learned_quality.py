"""Learned against classical reconstruction on held-out data: the comparison that matters.

Test set: the 8 held-out slices of ``experiments/e2e_varnet_small`` (simulated 8-coil brain
phantoms of 96 x 96 from phantom seeds never seen in training, complex noise at 30 dB), each with
its seeded fastMRI random column mask (8 % centre) at 4x and at 8x. Methods, all end to end from
the masked k-space: zero-filled RSS; CG-SENSE and L1-wavelet of :mod:`recon.pipeline` (ESPIRiT
maps; L1-wavelet at its best lambda of 0.001-0.008 on this very test set, the classical method's
best case); the E2E-VarNet shipped in ``recon/data/e2e_varnet_small`` (trained at 4x only by
``recon train e2e_varnet_small``; at 8x it runs outside its training distribution). Scores:
fastMRI PSNR / SSIM / NMSE against the fully sampled RSS, averaged over slices.

Run: ``.venv/bin/python -m pytest benchmarks/bench_learned_quality.py --benchmark-only -s``.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from experiments.base import get
from recon.metrics import evaluate
from recon.pipeline import ReconOptions, reconstruct_slice
from recon.train import load_model
from recon.unrolled import build_model

SHIPPED = Path(__file__).resolve().parents[1] / "recon" / "data" / "e2e_varnet_small"
QUALITY: dict[str, dict[str, dict[str, float]]] = {}


@pytest.fixture(scope="module")
def model():
    if not (SHIPPED / "weights.msgpack").exists():
        pytest.skip("no shipped E2E-VarNet weights")
    return load_model(SHIPPED, build_model)


def _test_set(acceleration: float):
    exp = get("e2e_varnet_small")
    exp = dataclasses.replace(exp, data=dataclasses.replace(exp.data, acceleration=acceleration))
    folder = Path(tempfile.gettempdir()) / "recon-engine-bench-learned"
    _, test = exp.datasets(folder)
    return [test.example(i, 0) for i in range(len(test))]


def _mean(scores: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([s[k] for s in scores])) for k in scores[0]}


@pytest.mark.parametrize("acceleration", [4.0, 8.0])
def test_learned_vs_classical(benchmark, model, acceleration):
    examples = _test_set(acceleration)
    group = f"held-out simulated 8-coil 96x96, {acceleration:g}x"
    results: dict[str, list] = {}

    def score(name, image, target):
        results.setdefault(name, []).append(evaluate(target[None], np.asarray(image, np.float32)[None]))

    for ex in examples:
        k, m, target = ex["inputs"]["masked_kspace"], ex["inputs"]["mask"], ex["target"]
        mask = m.astype(bool)
        score("zero-filled", reconstruct_slice(k, mask, ReconOptions(method="zero-filled")), target)
        score("CG-SENSE", reconstruct_slice(k, mask, ReconOptions(method="sense")), target)
        for lam in (0.001, 0.002, 0.004, 0.008):
            score(f"l1-wavelet {lam:g}", reconstruct_slice(k, mask, ReconOptions(method="l1-wavelet", lam=lam)), target)
        score("E2E-VarNet", model(jnp.asarray(k)[None], jnp.asarray(m)[None])[0], target)
    table = {name: _mean(s) for name, s in results.items()}
    best_l1 = max((n for n in table if n.startswith("l1-wavelet")), key=lambda n: table[n]["psnr"])
    QUALITY[group] = {n: table[n] for n in ("zero-filled", "CG-SENSE", best_l1, "E2E-VarNet")}
    for n, s in QUALITY[group].items():
        print(f"{group} {n}: PSNR {s['psnr']:.2f} SSIM {s['ssim']:.3f} NMSE {s['nmse']:.4f}")
    benchmark.pedantic(lambda: None, rounds=1)  # scores only
