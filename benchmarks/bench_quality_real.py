"""Quality and time on real multi-coil k-space: recon-engine's pipeline vs SigPy's, same data.

Fully sampled real data from ``../shared/data`` is undersampled retrospectively (fastMRI
equispaced column masks, seed 0) and reconstructed end to end from the undersampled k-space:
coil maps from its calibration region, then the reconstruction, scored against the fully sampled
RSS with the fastMRI metrics (:mod:`recon.metrics`).

- recon-engine: ``recon.pipeline.reconstruct_slice`` with its defaults (ESPIRiT with adaptive
  kernel and crop 0.8; CG-SENSE lam 0.01, 20 iterations; l1-wavelet lam 0.004 (db2, cycle spinning), 80 FISTA
  iterations; tv lam 0.004, 60 PDHG iterations).
- SigPy: ``EspiritCalib`` (its defaults: kernel 6, thresh 0.02, crop 0.95; calib width = the
  smaller side of the calibration block) then ``SenseRecon`` (its defaults: lamda 0, 100 iterations,
  and with lamda 0.02 as ours).
- zero-filled RSS for reference.

Quality figures go to ``extra_info`` and a "quality" section at the end of the run; times are
medians of whole reconstructions (maps included), compilation excluded by a warm-up call.

Run: ``.venv/bin/python -m pytest benchmarks/bench_quality_real.py --benchmark-only``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from physics.coil_maps import calibration_region
from physics.sampling import equispaced_mask
from recon.io import open_raw
from recon.metrics import evaluate
from recon.pipeline import ReconOptions, reconstruct_slice

sigpy_mri = pytest.importorskip("sigpy.mri")

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CASES = [("brain_4ch_real.h5", 2, 0.08), ("brain_4ch_real.h5", 4, 0.08),
         ("mr_small_8ch_semireal.h5", 2, 0.16), ("mr_small_8ch_semireal.h5", 3, 0.16),
         ("phantom_gre_2ch_real.h5", 2, 0.08)]
QUALITY: dict[str, dict[str, dict[str, float]]] = {}


def _case(name: str, accel: int, fraction: float):
    path = DATA / name
    if not path.exists():
        pytest.skip(f"real data not found: {path}")
    with open_raw(path) as raw:
        kspace, reference = raw.kspace(0), raw.reference()
    mask = equispaced_mask(kspace.shape[-1], accel, fraction, seed=0)
    return kspace * mask, mask, reference


def _sigpy(y, mask, lamda):
    mask2d = np.broadcast_to(mask, y.shape[-2:]).astype(np.float32)
    width = min(calibration_region(mask2d > 0, y.shape[-2:]))
    maps = sigpy_mri.app.EspiritCalib(y, calib_width=width, show_pbar=False).run()
    image = sigpy_mri.app.SenseRecon(y, maps, lamda=lamda, weights=mask2d, show_pbar=False).run()
    return np.abs(image).astype(np.float32)


METHODS = {
    "recon-engine": lambda y, m: reconstruct_slice(y, m, ReconOptions()),
    "recon-engine l1-wavelet": lambda y, m: reconstruct_slice(y, m, ReconOptions(method="l1-wavelet")),
    "recon-engine tv": lambda y, m: reconstruct_slice(y, m, ReconOptions(method="tv")),
    "SigPy (lamda 0)": lambda y, m: _sigpy(y, m, 0.0),
    "SigPy (lamda 0.02)": lambda y, m: _sigpy(y, m, 0.02),
    "zero-filled": lambda y, m: reconstruct_slice(y, m, ReconOptions(method="zero-filled")),
}


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0].split('_')[0]}{c[0].split('_')[1]}-R{c[1]}")
def test_real_data(benchmark, record_median, case, method):
    y, mask, reference = _case(*case)
    run = METHODS[method]
    run(y, mask)  # warm-up: compilation
    benchmark.group = f"{case[0]} R={case[1]} centre {case[2]:g}"
    image = benchmark.pedantic(run, args=(y, mask), rounds=3, iterations=1)
    scores = evaluate(reference, image[None])
    benchmark.extra_info.update(scores)
    QUALITY.setdefault(benchmark.group, {})[method] = scores
    record_median(method)


