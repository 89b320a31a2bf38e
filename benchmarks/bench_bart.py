"""Compressed sensing against BART and SigPy: wavelet-L1 and TV SENSE, same data, quality and time.

Problem: ``physics.simulation.simulate_multicoil(256, 8, 1, snr_db=30, seed=0)`` (8 coils,
256 x 256), undersampled over the last axis by fastMRI equispaced masks
(``physics.sampling.equispaced_mask``, seed 0): R = 4 (centre fraction 0.08) and R = 8 (0.04).
Scores: fastMRI PSNR / SSIM (``recon.metrics.evaluate``) of the magnitude against the RSS of the
fully sampled noisy data (``sim.reference``). Each pipeline starts from the undersampled k-space
``(coils, ky, kx)`` complex64 NumPy and the 2D mask, and ends with a magnitude image: coil maps
from the calibration region, then the reconstruction. Timed as a whole (pytest-benchmark, 3
rounds, median filed with ``record_median``):

- recon-engine: ``physics.coil_maps.espirit(y, mask=mask, kernel=None, crop=0.8)``, then
  ``recon.cs.l1_wavelet`` (FISTA, 80 iterations, db2, random cycle spinning) or
  ``recon.cs.admm_tv`` (ADMM, 30 iterations of 5 CG steps, isotropic TV). Compilation is excluded (the sweep compiles it first) and
  measured once per case, as ``compile_s`` = first call after ``jax.clear_caches()`` minus a
  steady call.
- BART (``bart`` v0.8 on PATH, subprocesses in a temporary folder, ``OMP_NUM_THREADS=2`` and
  ``OMP_WAIT_POLICY=PASSIVE``; writing ``ksp.cfl`` and reading ``out.cfl`` are timed too):
  ``bart ecalib -m1 ksp maps`` (crop 0.8 by default), then ``bart pics -S -l1 -r LAM -i 40``
  (FISTA, dau2 wavelet, random cycle spinning: BART's defaults) or
  ``bart pics -S -R T:3:0:LAM -u 0.05 -i 60`` (TV over x and y by ADMM; BART's default
  ``rho = 0.5`` is far from converged in 60 iterations, 29 dB against 44 dB at R = 4, so rho is
  0.05 as in ``recon.cs.admm_tv``). PASSIVE: on a shared 2-core machine OpenMP's spinning
  threads made one ``pics`` call take 9-14 s instead of 1.5 s.
- SigPy: ``EspiritCalib(y, calib_width=min(calibration block), crop=0.8)`` (crop as BART's and
  ours), then ``L1WaveletRecon(..., max_iter=40)`` (FISTA, db4, all coefficients penalised) or
  ``TotalVariationRecon(..., max_iter=60)`` (PDHG, anisotropic TV), ``weights=mask``.

Regularisation: every method gets its best weight per prior and R from a 5-point log sweep
(factor 2, by PSNR; not timed, done once per module run). Weights are fractions of the
zero-filled image peak: ours and SigPy as ``max |A^H y|`` with their own maps (SigPy's absolute
``lamda`` is that fraction times the peak); BART's as given to ``pics``, whose internal scaling
divides the data by the peak of the zero-filled RSS (or its 90th percentile). A best weight at
the grid's edge is flagged in ``extra_info`` (``best_at_grid_edge``).

BART's conventions are checked once before any BART number is used (and asserted):
orientation and FFT: our ``(coils, ky, kx)`` k-space is written as BART dims
``(ky, kx, 1, coils)`` (column-major .cfl); ``bart fft -i -u 3`` (BART's centred unitary FFT)
equals ``physics.fft.ifftc`` coil by coil, and ``bart rss 8`` of it equals
``recon.sense.zero_filled``. Scale: ``bart pics -S -l2 -r 0 -i 30`` with BART's maps equals
``recon.sense.cg_sense(lam=0, maxiter=30)`` with the same maps as complex images; without ``-S``
it is off by BART's internal data scaling (the factor is filed as ``bart_internal_scale``). The
ratio of medians over the object (reconstruction / reference) is printed and filed for each run.

Run: ``.venv/bin/python -m pytest benchmarks/bench_bart.py --benchmark-only -s``.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np
import pytest

from physics.coil_maps import calibration_region, espirit
from physics.fft import ifftc
from physics.mri import MultiCoilMRI
from physics.sampling import equispaced_mask
from physics.simulation import simulate_multicoil
from recon import cs
from recon.metrics import evaluate
from recon.sense import cg_sense, zero_filled

if shutil.which("bart") is None:
    pytest.skip("BART is not installed ('bart' is not on PATH; Debian package 'bart', which "
                "`make bench` installs): BART benchmarks skipped", allow_module_level=True)

SIZE, COILS, SNR_DB, SEED = 256, 8, 30.0, 0
CASES = {4: 0.08, 8: 0.04}  # acceleration -> centre fraction
PRIORS = ("l1-wavelet", "tv")
ITERATIONS = {"l1-wavelet": 40, "tv": 60}
ADMM_ITERATIONS = 30  # recon-engine's TV: recon.cs.admm_tv (5 CG steps per iteration)
FISTA_ITERATIONS = 80  # recon-engine's l1: twice BART's 40, still in less wall time than BART
CROP, ROUNDS = 0.8, 3
BART_ENV = {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"}
BART_ARGS: dict[str, Callable[[float], list[str]]] = {
    "l1-wavelet": lambda lam: ["-l1", "-r", f"{lam:g}"],
    "tv": lambda lam: ["-R", f"T:3:0:{lam:g}", "-u", "0.05"],
}
# Sweep centres per (method, prior), from a wider sweep (1e-4 ... 5e-2) on this problem.
CENTRES = {
    ("recon-engine", "l1-wavelet"): 0.002, ("recon-engine", "tv"): 0.005,
    ("BART", "l1-wavelet"): 0.005, ("BART", "tv"): 0.005,
    ("SigPy", "l1-wavelet"): 0.003, ("SigPy", "tv"): 0.02,
}
QUALITY: dict[str, dict[str, dict[str, float]]] = {}


# -- BART files and commands ---------------------------------------------------------------------
def write_cfl(base: Path, array: np.ndarray) -> None:
    """BART's format: ``base.hdr`` (dims, padded to 16 with 1s), ``base.cfl`` (complex64,
    column-major, first dimension fastest)."""
    dims = list(array.shape) + [1] * (16 - array.ndim)
    base.with_suffix(".hdr").write_text("# Dimensions\n" + " ".join(map(str, dims)) + "\n")
    np.asarray(array, np.complex64).ravel(order="F").tofile(base.with_suffix(".cfl"))


def read_cfl(base: Path) -> np.ndarray:
    """Array of a ``.cfl``/``.hdr`` pair, with its dims as in the header (16 for BART's output)."""
    dims = [int(n) for n in base.with_suffix(".hdr").read_text().splitlines()[1].split()]
    return np.fromfile(base.with_suffix(".cfl"), np.complex64).reshape(dims, order="F")


def to_bart(kspace: np.ndarray) -> np.ndarray:
    """``(coils, ky, kx)`` -> BART ``(ky, kx, 1, coils)``."""
    return np.transpose(kspace, (1, 2, 0))[:, :, None, :]


def from_bart(array: np.ndarray) -> np.ndarray:
    """BART ``(y, x, 1, coils, 1, ...)`` -> ``(coils, y, x)``; an image comes out ``(1, y, x)``."""
    return np.ascontiguousarray(np.moveaxis(array.reshape(array.shape[:4]), 3, 0)[:, :, :, 0])


def bart(*args: str, cwd: Path) -> str:
    done = subprocess.run(["bart", *args], cwd=cwd, env={**os.environ, **BART_ENV},
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"bart {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


# -- the three pipelines: maps(kspace, mask) and solve(prior, kspace, maps, mask, lam) -----------
def ours_maps(kspace, mask, workdir=None):
    return espirit(kspace, mask=mask, kernel=None, crop=CROP)


def ours_solve(prior, kspace, maps, mask, lam, workdir=None):
    if prior == "l1-wavelet":  # db2 with random cycle spinning, as recon.pipeline runs it
        image, _ = cs.l1_wavelet(MultiCoilMRI(maps, mask), kspace, lam=lam, iterations=FISTA_ITERATIONS,
                                 key=jax.random.key(0))
    else:  # TV by ADMM with CG inner solves, as BART's pics -R T
        image, _ = cs.admm_tv(MultiCoilMRI(maps, mask), kspace, lam=lam, iterations=ADMM_ITERATIONS)
    return np.abs(np.asarray(image))


def bart_maps(kspace, mask, workdir: Path):
    write_cfl(workdir / "ksp", to_bart(kspace))
    bart("ecalib", "-m1", "ksp", "maps", cwd=workdir)
    return workdir / "maps"


def bart_solve(prior, kspace, maps, mask, lam, workdir: Path):
    bart("pics", "-S", *BART_ARGS[prior](lam), "-i", str(ITERATIONS[prior]), "ksp", "maps", "out",
         cwd=workdir)
    return np.abs(from_bart(read_cfl(workdir / "out"))[0])


def sigpy_maps(kspace, mask, workdir=None):
    import sigpy.mri

    width = min(calibration_region(mask > 0, kspace.shape[-2:]))
    return sigpy.mri.app.EspiritCalib(kspace, calib_width=width, crop=CROP, show_pbar=False).run()


def sigpy_solve(prior, kspace, maps, mask, lam, workdir=None):
    import sigpy
    import sigpy.mri

    peak = np.max(np.abs(np.sum(np.conj(maps) * sigpy.ifft(kspace, axes=(-2, -1)), axis=0)))
    app = sigpy.mri.app.L1WaveletRecon if prior == "l1-wavelet" else sigpy.mri.app.TotalVariationRecon
    image = app(kspace, maps, lam * peak, weights=mask, max_iter=ITERATIONS[prior], show_pbar=False).run()
    return np.abs(image)


class Method(NamedTuple):
    maps: Callable
    solve: Callable


METHODS = {"recon-engine": Method(ours_maps, ours_solve), "BART": Method(bart_maps, bart_solve),
           "SigPy": Method(sigpy_maps, sigpy_solve)}


def pipeline(method: str, prior: str, kspace: np.ndarray, mask: np.ndarray, lam: float) -> np.ndarray:
    """Maps and reconstruction from scratch: magnitude image ``(ny, nx)``."""
    m = METHODS[method]
    if method == "BART":
        with tempfile.TemporaryDirectory(prefix="bench-bart-") as tmp:
            return m.solve(prior, kspace, m.maps(kspace, mask, Path(tmp)), mask, lam, Path(tmp))
    return m.solve(prior, kspace, m.maps(kspace, mask), mask, lam)


# -- data, conventions, sweeps (module-wide, not timed) ------------------------------------------
class Case(NamedTuple):
    kspace: np.ndarray  # undersampled (coils, ky, kx) complex64
    mask: np.ndarray  # (ky, kx) float32
    reference: np.ndarray  # (1, ny, nx) float32
    object: np.ndarray  # (ny, nx) bool, where the noise-free object is above 10 % of its peak


@cache
def load(accel: int) -> Case:
    sim = simulate_multicoil(SIZE, COILS, 1, snr_db=SNR_DB, seed=SEED)
    mask = np.broadcast_to(equispaced_mask(SIZE, accel, CASES[accel], seed=SEED), (SIZE, SIZE))
    obj = np.abs(sim.image[0])
    return Case((sim.kspace[0] * mask).astype(np.complex64), mask.astype(np.float32),
                sim.reference, obj > 0.1 * obj.max())


def median_ratio(image: np.ndarray, case: Case) -> float:
    return float(np.median(image[case.object]) / np.median(case.reference[0][case.object]))


def relative_error(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


@pytest.fixture(scope="module")
def bart_conventions() -> dict[str, float]:
    """Orientation, FFT and scale of BART against ours (R = 4 data), asserted; the numbers."""
    case = load(4)
    with tempfile.TemporaryDirectory(prefix="bench-bart-") as tmp:
        work = Path(tmp)
        write_cfl(work / "ksp", to_bart(case.kspace))
        bart("fft", "-i", "-u", "3", "ksp", "coils", cwd=work)
        bart("rss", "8", "coils", "rss", cwd=work)
        bart("ecalib", "-m1", "ksp", "maps", cwd=work)
        sense = {}
        for flag in ("-S", None):
            flags = [flag] if flag else []
            bart("pics", *flags, "-l2", "-r", "0", "-i", "30", "ksp", "maps", "out", cwd=work)
            sense[flag] = from_bart(read_cfl(work / "out"))[0]
        coils, rss = from_bart(read_cfl(work / "coils")), from_bart(read_cfl(work / "rss"))[0]
        maps = from_bart(read_cfl(work / "maps"))
    ours = np.asarray(cg_sense(case.kspace, maps, case.mask, lam=0.0, maxiter=30, tol=0.0)[0])
    found = {
        "fft_coil_images_rel_error": relative_error(coils, ifftc(case.kspace)),
        "rss_rel_error": relative_error(np.abs(rss), zero_filled(case.kspace)),
        "cg_sense_rel_error": relative_error(sense["-S"], ours),
        "bart_internal_scale": float(np.vdot(ours, sense[None]).real / np.vdot(ours, ours).real),
    }
    print(f"\nBART conventions: {found}")
    assert found["fft_coil_images_rel_error"] < 1e-5 and found["rss_rel_error"] < 1e-5
    assert found["cg_sense_rel_error"] < 1e-3  # same problem, same scale: -S undoes BART's scaling
    return found


class Tuned(NamedTuple):
    lam: float
    sweep: dict[str, float]  # lam -> PSNR
    at_edge: bool
    compile_s: float | None


@pytest.fixture(scope="module")
def tuned() -> Callable[[str, str, int], Tuned]:
    """Best weight of (method, prior, R) by PSNR over a 5-point grid, computed once and cached."""
    results: dict[tuple[str, str, int], Tuned] = {}

    def get(method: str, prior: str, accel: int) -> Tuned:
        if (method, prior, accel) not in results:
            results[method, prior, accel] = _sweep(method, prior, load(accel))
        return results[method, prior, accel]

    return get


def _sweep(method: str, prior: str, case: Case) -> Tuned:
    grid = [CENTRES[method, prior] * 2.0 ** k for k in range(-2, 3)]
    compile_s = None
    if method == "recon-engine":  # compilation: first call from an empty cache minus steady ones
        jax.clear_caches()
        times = []
        for _ in range(3):
            start = time.perf_counter()
            pipeline(method, prior, case.kspace, case.mask, grid[0])
            times.append(time.perf_counter() - start)
        compile_s = times[0] - statistics.median(times[1:])
    m = METHODS[method]
    with tempfile.TemporaryDirectory(prefix="bench-bart-") as tmp:
        maps = m.maps(case.kspace, case.mask, Path(tmp))
        sweep = {f"{lam:g}": evaluate(case.reference, m.solve(prior, case.kspace, maps, case.mask, lam,
                                                              Path(tmp))[None])["psnr"] for lam in grid}
    best = max(grid, key=lambda lam: sweep[f"{lam:g}"])
    return Tuned(best, sweep, best in (grid[0], grid[-1]), compile_s)


# -- the benchmark ------------------------------------------------------------------------------
@pytest.mark.parametrize("method", list(METHODS))  # recon-engine first: the others' ratios need it
@pytest.mark.parametrize("prior", PRIORS)
@pytest.mark.parametrize("accel", list(CASES), ids=lambda r: f"R{r}")
def test_compressed_sensing(benchmark, record_median, bart_conventions, tuned, accel, prior, method):
    if method == "SigPy":
        pytest.importorskip("sigpy.mri")
    case = load(accel)
    best = tuned(method, prior, accel)
    benchmark.group = f"CS {prior} R={accel}, simulated {COILS} coils {SIZE}x{SIZE}, maps + recon"
    image = benchmark.pedantic(pipeline, args=(method, prior, case.kspace, case.mask, best.lam),
                               rounds=ROUNDS, iterations=1, warmup_rounds=0)
    scores = evaluate(case.reference, image[None])
    ratio = median_ratio(image, case)
    info = {**scores, "lam": best.lam, "sweep_psnr": best.sweep, "best_at_grid_edge": best.at_edge,
            "median_ratio_in_object": ratio, "iterations": ITERATIONS[prior]}
    if best.compile_s is not None:
        info["compile_s"] = best.compile_s
    if method == "BART":
        info.update(bart_conventions)
    benchmark.extra_info.update(info)
    QUALITY.setdefault(f"{prior} R={accel}, simulated {COILS} coils", {})[method] = scores
    record_median(method)
    edge = " (AT GRID EDGE)" if best.at_edge else ""
    print(f"\n{method} {prior} R={accel}: lam {best.lam:g}{edge}, PSNR {scores['psnr']:.2f} dB, "
          f"SSIM {scores['ssim']:.4f}, median ratio in object {ratio:.3f}, "
          f"sweep (lam: PSNR) {best.sweep}")
