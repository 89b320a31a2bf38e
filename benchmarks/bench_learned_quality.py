"""Learned against classical reconstruction on held-out data: the comparison that matters.

Simulated test sets: 6 slices per matrix size (96 and 192), simulated 8-coil brain phantoms from
phantom seeds never seen in training (``recon.data.simulated_dataset`` seed 1000, complex noise
at 30 dB), each with its seeded fastMRI random column mask, 4x (8 % centre) and 8x (4 % centre).
Real data: ``../shared/data/brain_4ch_real.h5`` (in-vivo brain, 4 channels, 256 x 256, never
seen in training), equispaced masks at 4x (8 %) and 8x (4 %), against its fully sampled RSS.

Methods, all end to end from the masked k-space: zero-filled RSS; CG-SENSE and L1-wavelet of
:mod:`recon.pipeline` (ESPIRiT maps; L1-wavelet at its best lambda of 0.001-0.008 on this very
test set: the classical method's best case); the MoDL and E2E-VarNet shipped in ``recon/data``
(``recon train modl_small`` / ``e2e_varnet_small``, trained on simulated phantoms only) through
:func:`recon.learned.reconstruct_learned`. Scores: fastMRI PSNR / SSIM / NMSE against the fully
sampled RSS, averaged over slices.

Run: ``.venv/bin/python -m pytest benchmarks/bench_learned_quality.py --benchmark-only -s``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from physics.sampling import equispaced_mask
from recon.data import simulated_dataset
from recon.io import open_raw
from recon.learned import default_weights, load_trained, reconstruct_learned
from recon.metrics import evaluate
from recon.pipeline import ReconOptions, reconstruct_slice

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CENTRE = {4.0: 0.08, 8.0: 0.04}
LAMBDAS = (0.001, 0.002, 0.004, 0.008)
QUALITY: dict[str, dict[str, dict[str, float]]] = {}


@pytest.fixture(scope="module")
def models():
    return {"MoDL": load_trained(default_weights("modl")),
            "E2E-VarNet": load_trained(default_weights("e2e-varnet"))}


def _simulated(size: int, acceleration: float) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    folder = Path(tempfile.gettempdir()) / "recon-engine-bench-learned"
    folder.mkdir(exist_ok=True)
    test = simulated_dataset(folder, n=6, seed=1000, size=size, coils=8, acceleration=acceleration,
                             center_fraction=CENTRE[acceleration])
    cases = []
    for i in range(len(test)):
        ex = test.example(i, 0)
        cases.append((ex["inputs"]["masked_kspace"], ex["inputs"]["mask"][0] > 0, ex["target"]))
    return cases


def _real(acceleration: float) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    path = SHARED / "brain_4ch_real.h5"
    if not path.exists():
        pytest.skip(f"{path} not found (the shared real data lives beside the repository)")
    with open_raw(path) as raw:
        kspace, reference = raw.kspace(0), raw.reference()[0]
    columns = equispaced_mask(kspace.shape[-1], acceleration, CENTRE[acceleration], seed=0)
    return [(kspace * columns, columns, reference)]


def _table(group: str, cases, models) -> None:
    results: dict[str, list] = {}

    def score(name, image, target):
        results.setdefault(name, []).append(evaluate(target[None], np.asarray(image, np.float32)[None]))

    for k, columns, target in cases:
        score("zero-filled", reconstruct_slice(k, columns, ReconOptions(method="zero-filled")), target)
        score("CG-SENSE", reconstruct_slice(k, columns, ReconOptions(method="sense")), target)
        for lam in LAMBDAS:
            score(f"l1-wavelet {lam:g}",
                  reconstruct_slice(k, columns, ReconOptions(method="l1-wavelet", lam=lam)), target)
        for name, model in models.items():
            score(name, reconstruct_learned(model, k, columns), target)
    table = {name: {m: float(np.mean([s[m] for s in scores])) for m in scores[0]}
             for name, scores in results.items()}
    best_l1 = max((n for n in table if n.startswith("l1-wavelet")), key=lambda n: table[n]["psnr"])
    QUALITY[group] = {n: table[n] for n in ("zero-filled", "CG-SENSE", best_l1, *models)}
    for n, s in QUALITY[group].items():
        print(f"{group} | {n}: PSNR {s['psnr']:.2f} SSIM {s['ssim']:.3f} NMSE {s['nmse']:.4f}")


@pytest.mark.parametrize("acceleration", [4.0, 8.0])
@pytest.mark.parametrize("size", [96, 192])
def test_simulated(benchmark, models, size, acceleration):
    _table(f"held-out simulated 8-coil {size}x{size}, random {acceleration:g}x", _simulated(size, acceleration),
           models)
    benchmark.pedantic(lambda: None, rounds=1)  # scores only


@pytest.mark.parametrize("acceleration", [4.0, 8.0])
def test_real_brain(benchmark, models, acceleration):
    _table(f"real brain_4ch 256x256, equispaced {acceleration:g}x", _real(acceleration), models)
    benchmark.pedantic(lambda: None, rounds=1)  # scores only
