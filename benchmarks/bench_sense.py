"""Speed of a CG-SENSE reconstruction: recon-engine vs SigPy, one slice and a batch of slices.

Problem: 8 coils, 256 x 256, complex64, simulated by ``physics.simulation.simulate_multicoil``
(brain phantom, birdcage maps, 30 dB SNR, seed 0; its true maps are used), undersampled by
fastMRI's R = 4 equispaced column mask (8% centre, ``physics.sampling.equispaced_mask``, seed 0)
over the last axis. Both solve ``(A^H A + lam I) x = A^H y`` with ``lam = 1e-3`` by exactly 20 CG
iterations from zero (tol 0), so the work is the same.

recon-engine: ``recon.sense.cg_sense`` (jitted; compilation excluded by a warm-up call and
reported once as ``compile_s`` in ``extra_info``; ``block_until_ready`` inside the timed call).
The batch of 4 slices is one compiled call of ``jax.vmap(cg_sense)``.
SigPy: ``sigpy.mri.app.SenseRecon(y, maps, lamda=lam, weights=mask2d, max_iter=20).run()`` on
NumPy arrays (its set-up, ``A^H y`` included, is timed as ours is); the batch is a Python loop.
Before timing, the two images are checked to agree and to have the same PSNR against the true
image (magnitudes, ``recon.metrics.psnr``); the PSNRs go into ``extra_info``.

Run: ``.venv/bin/python -m pytest benchmarks/bench_sense.py --benchmark-only``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np
import pytest

from physics.sampling import acceleration, equispaced_mask
from physics.simulation import simulate_multicoil
from recon.metrics import psnr
from recon.sense import cg_sense

sigpy_mri = pytest.importorskip("sigpy.mri")

SIZE, COILS, SLICES = 256, 8, 4
ACCEL, CENTRE_FRACTION = 4, 0.08
LAM, ITERS = 1e-3, 20
SNR_DB, SEED = 30.0, 0
PROBLEM = f"CG-SENSE {ITERS} it, lam={LAM:g}, {COILS} coils {SIZE}x{SIZE} complex64, R={ACCEL}"
GROUP_SINGLE = f"{PROBLEM}, 1 slice"
GROUP_BATCH = f"{PROBLEM}, {SLICES} slices (recon-engine: vmap, one call; SigPy: loop over slices)"


class Problem(NamedTuple):
    """Masked k-space ``(..., coils, ny, nx)``, true maps ``(..., coils, ny, nx)``, column mask
    ``(nx,)`` float32, and the true image ``(..., ny, nx)``; complex64 NumPy arrays."""

    kspace: np.ndarray
    maps: np.ndarray
    mask: np.ndarray
    image: np.ndarray


class Ours(NamedTuple):
    """recon-engine's compiled solver, its first result and its compilation time."""

    solve: Callable
    args: tuple
    image: np.ndarray
    iterations: np.ndarray
    compile_s: float


def make_problem(slices: int) -> Problem:
    sim = simulate_multicoil(SIZE, COILS, slices, snr_db=SNR_DB, seed=SEED)
    mask = equispaced_mask(SIZE, ACCEL, CENTRE_FRACTION, seed=SEED).astype(np.float32)
    kspace = (sim.kspace * mask).astype(np.complex64)
    if slices == 1:
        return Problem(kspace[0], sim.maps[0], mask, sim.image[0])
    return Problem(kspace, sim.maps, mask, sim.image)


def sigpy_sense(kspace: np.ndarray, maps: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """SigPy's CG-SENSE of one slice ``(coils, ny, nx)`` -> ``(ny, nx)``."""
    weights = np.broadcast_to(mask, kspace.shape[-2:])
    app = sigpy_mri.app.SenseRecon(kspace, maps, lamda=LAM, weights=weights, max_iter=ITERS,
                                   show_pbar=False)
    return app.run()


def sigpy_sense_loop(kspace: np.ndarray, maps: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """SigPy's CG-SENSE slice by slice: ``(slices, coils, ny, nx)`` -> ``(slices, ny, nx)``."""
    return np.stack([sigpy_sense(k, s, mask) for k, s in zip(kspace, maps)])


def ours_single(kspace, maps, mask):
    return cg_sense(kspace, maps, mask, lam=LAM, maxiter=ITERS, tol=0.0)


ours_batch = jax.jit(jax.vmap(ours_single, in_axes=(0, 0, None)))


def compile_and_time(solve: Callable, problem: Problem, steady_calls: int = 5) -> Ours:
    """First call (tracing + compilation + run) minus the median steady-state call."""
    args = tuple(jax.device_put(a) for a in (problem.kspace, problem.maps, problem.mask))
    jax.clear_caches()  # nothing compiled earlier in the session may hide the compilation
    start = time.perf_counter()
    image, info = solve(*args)
    image.block_until_ready()
    first = time.perf_counter() - start
    steady = []
    for _ in range(steady_calls):
        start = time.perf_counter()
        solve(*args)[0].block_until_ready()
        steady.append(time.perf_counter() - start)
    return Ours(solve, args, np.asarray(image), np.asarray(info.iterations),
                first - statistics.median(steady))


def magnitude_psnr(image: np.ndarray, recon: np.ndarray) -> float:
    return float(psnr(np.abs(image), np.abs(recon)))


def check_agreement(benchmark, problem: Problem, ours: Ours, theirs: np.ndarray) -> None:
    """Same iterations, same image (to 1e-3 of the max), same PSNR (to 0.05 dB); PSNRs filed."""
    assert np.all(ours.iterations == ITERS)
    assert theirs.shape == ours.image.shape and theirs.dtype == np.complex64
    assert np.abs(ours.image - theirs).max() < 1e-3 * np.abs(theirs).max()
    psnr_ours = magnitude_psnr(problem.image, ours.image)
    psnr_sigpy = magnitude_psnr(problem.image, theirs)
    assert abs(psnr_ours - psnr_sigpy) < 0.05
    benchmark.extra_info["psnr_db_recon_engine"] = psnr_ours
    benchmark.extra_info["psnr_db_sigpy"] = psnr_sigpy


@pytest.fixture(scope="module")
def single() -> Problem:
    return make_problem(1)


@pytest.fixture(scope="module")
def batch() -> Problem:
    return make_problem(SLICES)


@pytest.fixture(scope="module")
def ours_single_run(single) -> Ours:
    return compile_and_time(ours_single, single)


@pytest.fixture(scope="module")
def ours_batch_run(batch) -> Ours:
    return compile_and_time(ours_batch, batch)


@pytest.fixture(scope="module")
def sigpy_single_image(single) -> np.ndarray:
    return sigpy_sense(single.kspace, single.maps, single.mask)


@pytest.fixture(scope="module")
def sigpy_batch_image(batch) -> np.ndarray:
    return sigpy_sense_loop(batch.kspace, batch.maps, batch.mask)


def test_problem_is_r4_with_centre_block(single, batch):
    assert acceleration(single.mask) == pytest.approx(ACCEL, abs=0.1)
    assert single.mask[SIZE // 2 - 8:SIZE // 2 + 8].all()
    assert single.kspace.shape == single.maps.shape == (COILS, SIZE, SIZE)
    assert batch.kspace.shape == batch.maps.shape == (SLICES, COILS, SIZE, SIZE)
    assert np.allclose(np.sum(np.abs(single.maps) ** 2, axis=0), 1, atol=1e-4)


@pytest.mark.benchmark(group=GROUP_SINGLE)
def test_recon_engine_sense(benchmark, record_median, single, ours_single_run, sigpy_single_image):
    ours = ours_single_run
    check_agreement(benchmark, single, ours, sigpy_single_image)
    benchmark.extra_info["compile_s"] = ours.compile_s
    benchmark(lambda: ours.solve(*ours.args)[0].block_until_ready())
    record_median("recon-engine")


@pytest.mark.benchmark(group=GROUP_SINGLE)
def test_sigpy_sense(benchmark, record_median, single, sigpy_single_image):
    benchmark.extra_info["psnr_db_sigpy"] = magnitude_psnr(single.image, sigpy_single_image)
    benchmark(sigpy_sense, single.kspace, single.maps, single.mask)
    record_median("SigPy")


@pytest.mark.benchmark(group=GROUP_BATCH)
def test_recon_engine_sense_vmap_slices(benchmark, record_median, batch, ours_batch_run,
                                        sigpy_batch_image):
    ours = ours_batch_run
    check_agreement(benchmark, batch, ours, sigpy_batch_image)
    benchmark.extra_info["compile_s"] = ours.compile_s
    benchmark(lambda: ours.solve(*ours.args)[0].block_until_ready())
    record_median("recon-engine")  # the label the ratios are taken against; the group says vmap


@pytest.mark.benchmark(group=GROUP_BATCH)
def test_sigpy_sense_loop_slices(benchmark, record_median, batch, sigpy_batch_image):
    benchmark.extra_info["psnr_db_sigpy"] = magnitude_psnr(batch.image, sigpy_batch_image)
    benchmark(sigpy_sense_loop, batch.kspace, batch.maps, batch.mask)
    record_median("SigPy (loop over slices)")
