"""Speed of ESPIRiT coil-map estimation: recon-engine vs SigPy, simulated and real 12-coil data.

Both estimate one set of maps with a 24 x 24 calibration block, kernel width 6, singular-value
threshold 0.02 and eigenvalue crop 0.95, from NumPy complex64 k-space ``(coils, ny, nx)``:

- simulated: ``physics.simulation.simulate_multicoil(256, 12, 1, snr_db=30, seed=0)``, slice 0,
  fully sampled (12 coils, 256 x 256);
- real: ``brain_12ch_3x2_real.h5`` from the shared data (``recon.io.open_raw``, slice 0, times
  its own 3x2 mask; 12 coils, 224 x 160). Skipped when the file is not there.

recon-engine: ``physics.coil_maps.espirit(kspace, calib=(24, 24), kernel=6, threshold=0.02,
crop=0.95)`` (jitted inside; compilation excluded by a warm-up call and reported once as
``compile_s`` in ``extra_info``; input checks and ``block_until_ready`` inside the timed call).
SigPy: ``sigpy.mri.app.EspiritCalib(kspace, calib_width=24, thresh=0.02, kernel_width=6,
crop=0.95, show_pbar=False).run()``. Before timing, the maps are checked to agree: their supports
(non-zero pixels) match and the per-pixel coil-vector correlation ``|<a, b>| / (||a|| ||b||)``
(1: equal up to a phase) is above 0.99 on at least 99 % of the pixels where both are non-zero;
that fraction goes into ``extra_info``. SigPy takes seconds per call, so both use
``benchmark.pedantic`` with few rounds (SigPy 3, recon-engine 5; one iteration, no warm-up
rounds: the agreement check has already run each once).

Run: ``.venv/bin/python -m pytest benchmarks/bench_coil_maps.py --benchmark-only``.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np
import pytest

from physics.coil_maps import calibration_region, espirit
from physics.simulation import simulate_multicoil
from recon.io import open_raw

sigpy_mri = pytest.importorskip("sigpy.mri")

#: The shared data folder, found as tests/conftest.py does: ../shared/data beside the repository.
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REAL_FILE = "brain_12ch_3x2_real.h5"

CALIB, KERNEL, THRESHOLD, CROP = (24, 24), 6, 0.02, 0.95
SIZE, COILS, SNR_DB, SEED = 256, 12, 30.0, 0
CORRELATION, FRACTION = 0.99, 0.99
ROUNDS_OURS, ROUNDS_SIGPY = 5, 3
PROBLEM = f"ESPIRiT calib {CALIB[0]}x{CALIB[1]}, kernel {KERNEL}, thresh {THRESHOLD:g}, crop {CROP:g}"
GROUPS = {
    "simulated": f"{PROBLEM}, simulated {COILS} coils {SIZE}x{SIZE}, fully sampled",
    "real": f"{PROBLEM}, real brain 12 coils 224x160, 3x2 undersampled",
}


class Problem(NamedTuple):
    """One slice of k-space ``(coils, ny, nx)`` complex64 NumPy, and the benchmark group."""

    name: str
    kspace: np.ndarray
    group: str


class Ours(NamedTuple):
    """recon-engine's first maps ``(coils, ny, nx)`` and its compilation time (s)."""

    maps: np.ndarray
    compile_s: float


def ours_espirit(kspace: np.ndarray) -> jax.Array:
    return espirit(kspace, calib=CALIB, kernel=KERNEL, threshold=THRESHOLD, crop=CROP)


def sigpy_espirit(kspace: np.ndarray) -> np.ndarray:
    app = sigpy_mri.app.EspiritCalib(kspace, calib_width=CALIB[0], thresh=THRESHOLD,
                                     kernel_width=KERNEL, crop=CROP, show_pbar=False)
    return app.run()


def load(name: str) -> Problem:
    if name == "simulated":
        kspace = simulate_multicoil(SIZE, COILS, 1, snr_db=SNR_DB, seed=SEED).kspace[0]
    else:
        path = DATA / REAL_FILE
        if not path.is_file():
            pytest.skip(f"real-data case needs {path}, which is missing (shared data folder "
                        f"expected at ../shared/data relative to the repository root)")
        with open_raw(path) as raw:
            kspace, mask = raw.kspace(0), raw.mask(0)
        # SigPy and ours both take the centred 24 x 24 block; it must be fully sampled.
        assert all(n >= c for n, c in zip(calibration_region(mask), CALIB))
        kspace = kspace * mask
    return Problem(name, np.ascontiguousarray(kspace, np.complex64), GROUPS[name])


def compile_and_time(kspace: np.ndarray, steady_calls: int = 3) -> Ours:
    """First call (tracing + compilation + run) minus the median steady-state call."""
    jax.clear_caches()  # nothing compiled earlier in the session may hide the compilation
    start = time.perf_counter()
    maps = ours_espirit(kspace).block_until_ready()
    first = time.perf_counter() - start
    steady = []
    for _ in range(steady_calls):
        start = time.perf_counter()
        ours_espirit(kspace).block_until_ready()
        steady.append(time.perf_counter() - start)
    return Ours(np.asarray(maps), first - statistics.median(steady))


def correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per pixel ``|<a, b>| / (||a|| ||b||)`` over the coil axis."""
    num = np.abs(np.sum(a * np.conj(b), axis=0))
    den = np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0)
    return num / np.maximum(den, 1e-30)


def check_agreement(benchmark, ours: np.ndarray, theirs: np.ndarray) -> None:
    """Same shape and dtype, (nearly) the same support, correlated maps; the numbers are filed."""
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype == np.complex64
    support_ours = np.linalg.norm(ours, axis=0) > 0
    support_theirs = np.linalg.norm(theirs, axis=0) > 0
    both = support_ours & support_theirs
    union = support_ours | support_theirs
    fraction = float(np.mean(correlation(ours, theirs)[both] > CORRELATION))
    benchmark.extra_info["support_pixels_recon_engine"] = int(support_ours.sum())
    benchmark.extra_info["support_pixels_sigpy"] = int(support_theirs.sum())
    benchmark.extra_info[f"fraction_correlation_above_{CORRELATION:g}"] = fraction
    assert both.sum() >= 0.99 * union.sum() > 0  # the check below covers (almost) all map pixels
    assert fraction >= FRACTION


@pytest.fixture(scope="module", params=list(GROUPS))
def problem(request) -> Problem:
    return load(request.param)


@pytest.fixture(scope="module")
def ours_run(problem) -> Ours:
    return compile_and_time(problem.kspace)


@pytest.fixture(scope="module")
def sigpy_maps(problem) -> np.ndarray:
    return sigpy_espirit(problem.kspace)


def test_recon_engine_espirit(benchmark, record_median, problem, ours_run, sigpy_maps):
    benchmark.group = problem.group
    check_agreement(benchmark, ours_run.maps, sigpy_maps)
    benchmark.extra_info["compile_s"] = ours_run.compile_s
    benchmark.pedantic(lambda: ours_espirit(problem.kspace).block_until_ready(),
                       rounds=ROUNDS_OURS, iterations=1, warmup_rounds=0)
    record_median("recon-engine")


def test_sigpy_espirit(benchmark, record_median, problem, ours_run, sigpy_maps):
    benchmark.group = problem.group
    check_agreement(benchmark, ours_run.maps, sigpy_maps)
    benchmark.pedantic(sigpy_espirit, args=(problem.kspace,), rounds=ROUNDS_SIGPY, iterations=1,
                       warmup_rounds=0)
    record_median("SigPy")
