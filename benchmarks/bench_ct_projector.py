"""Speed of the CT projectors (kernels.joseph, Numba CPU): recon-engine vs ASTRA (CPU) and scikit-image.

Problems: a 512 x 512 image of 1 mm pixels (random values inside the inscribed circle);
parallel beam, 720 angles over [0, pi), 725 bins of 1 mm; flat fan beam, R = 1000 mm,
D = 1500 mm, 720 angles over [0, 2 pi), 725 bins of 1.5 mm; cone beam (ours only), a 128^3
volume of 1 mm voxels, 180 views over [0, 2 pi), a 256 x 256 detector of 1.5 mm pixels,
R = 500 mm, D = 1000 mm (the whole volume stays inside the cone). Each problem is timed forward
and back (the adjoint). Peers: ASTRA's CPU projectors (``linear`` for parallel beam, Joseph's
method as ours; ``line_fanflat`` for fan beam) through ``astra.create_sino`` /
``astra.create_backprojection``, and scikit-image ``radon(circle=False)`` (725 bins) /
``iradon(filter_name=None)`` for parallel beam. Results are checked to agree before timing;
Numba compilation is excluded by a first call. ASTRA's CPU projectors run on one thread,
ours on all of Numba's threads (``NUMBA_NUM_THREADS``).

Run: ``.venv/bin/python -m pytest benchmarks/bench_ct_projector.py --benchmark-only``.
"""

from __future__ import annotations

import numpy as np
import pytest

from kernels import joseph

astra = pytest.importorskip("astra")
skimage_transform = pytest.importorskip("skimage.transform")

N, N_ANGLES, N_DET = 512, 720, 725
PARALLEL = dict(angles=np.linspace(0, np.pi, N_ANGLES, endpoint=False), det_spacing=1.0, src_iso=0.0,
                src_det=0.0, mode=joseph.MODE_PARALLEL)
FAN = dict(angles=np.linspace(0, 2 * np.pi, N_ANGLES, endpoint=False), det_spacing=1.5, src_iso=1000.0,
           src_det=1500.0, mode=joseph.MODE_FAN_FLAT)
CONE_N, CONE_VIEWS, CONE_DET, CONE_SPACING, CONE_R, CONE_D = 128, 180, 256, 1.5, 500.0, 1000.0
CONE_ANGLES = np.linspace(0, 2 * np.pi, CONE_VIEWS, endpoint=False)
PROBLEM = f"{N}x{N}, {N_ANGLES} angles, {N_DET} bins"
GROUPS = {
    "parallel forward": f"CT parallel forward, {PROBLEM}",
    "parallel back": f"CT parallel backprojection, {PROBLEM}",
    "fan forward": f"CT fan-flat forward, {PROBLEM}",
    "fan back": f"CT fan-flat backprojection, {PROBLEM}",
    "cone forward": f"CT cone forward, {CONE_N}^3, {CONE_VIEWS} views, {CONE_DET}^2 detector",
    "cone back": f"CT cone backprojection, {CONE_N}^3, {CONE_VIEWS} views, {CONE_DET}^2 detector",
}
PEER_ROUNDS = 3


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:N, :N] - (N - 1) / 2
    return (rng.random((N, N)) * (yy ** 2 + xx ** 2 < (N / 2 - 1) ** 2)).astype(np.float32)


def ours_forward(image: np.ndarray, geom: dict) -> np.ndarray:
    return joseph.forward_2d(image, geom["angles"], N_DET, geom["det_spacing"], 0.0, 1.0, geom["src_iso"],
                             geom["src_det"], geom["mode"])


def ours_back(sino: np.ndarray, geom: dict) -> np.ndarray:
    return joseph.adjoint_2d(sino, geom["angles"], N, N, geom["det_spacing"], 0.0, 1.0, geom["src_iso"],
                             geom["src_det"], geom["mode"])


@pytest.fixture(scope="module")
def astra_projectors():
    """ASTRA CPU projector ids for the parallel ('linear') and fan ('line_fanflat') problems."""
    vol = astra.create_vol_geom(N, N, -N / 2, N / 2, -N / 2, N / 2)
    ids = {"parallel": astra.create_projector(
               "linear", astra.create_proj_geom("parallel", 1.0, N_DET, PARALLEL["angles"]), vol),
           "fan": astra.create_projector(
               "line_fanflat", astra.create_proj_geom("fanflat", FAN["det_spacing"], N_DET, FAN["angles"],
                                                      FAN["src_iso"], FAN["src_det"] - FAN["src_iso"]), vol)}
    yield ids
    for pid in ids.values():
        astra.projector.delete(pid)


def astra_forward(pid: int, image: np.ndarray) -> np.ndarray:
    sid, sino = astra.create_sino(image, pid)
    astra.data2d.delete(sid)
    return sino


def astra_back(pid: int, sino: np.ndarray) -> np.ndarray:
    bid, bp = astra.create_backprojection(sino, pid)
    astra.data2d.delete(bid)
    return bp


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def timed(benchmark, fn, *args, rounds: int):
    return benchmark.pedantic(fn, args=args, rounds=rounds, iterations=1, warmup_rounds=0)


# -- parallel beam ---------------------------------------------------------------------------

@pytest.mark.benchmark(group=GROUPS["parallel forward"])
def test_parallel_forward_recon_engine(benchmark, record_median, image, astra_projectors):
    sino = ours_forward(image, PARALLEL)  # compiles
    reference = astra_forward(astra_projectors["parallel"], image)
    assert np.abs(sino - reference).max() < 1e-2 * reference.max()  # the same method
    timed(benchmark, ours_forward, image, PARALLEL, rounds=5)
    record_median("recon-engine")


@pytest.mark.benchmark(group=GROUPS["parallel forward"])
def test_parallel_forward_astra(benchmark, record_median, image, astra_projectors):
    timed(benchmark, astra_forward, astra_projectors["parallel"], image, rounds=PEER_ROUNDS)
    record_median("ASTRA")


@pytest.mark.benchmark(group=GROUPS["parallel forward"])
def test_parallel_forward_skimage(benchmark, record_median, image):
    degrees = np.rad2deg(PARALLEL["angles"])
    sino = skimage_transform.radon(image, theta=degrees, circle=False).T
    assert sino.shape == (N_ANGLES, N_DET) and correlation(sino, ours_forward(image, PARALLEL)) > 0.99
    timed(benchmark, skimage_transform.radon, image, degrees, False, rounds=1)
    record_median("scikit-image")


@pytest.mark.benchmark(group=GROUPS["parallel back"])
def test_parallel_back_recon_engine(benchmark, record_median, image, astra_projectors):
    sino = ours_forward(image, PARALLEL)
    back = ours_back(sino, PARALLEL)  # compiles
    reference = astra_back(astra_projectors["parallel"], sino)
    assert np.abs(back - reference).max() < 1e-3 * reference.max()
    timed(benchmark, ours_back, sino, PARALLEL, rounds=5)
    record_median("recon-engine")


@pytest.mark.benchmark(group=GROUPS["parallel back"])
def test_parallel_back_astra(benchmark, record_median, image, astra_projectors):
    sino = ours_forward(image, PARALLEL)
    timed(benchmark, astra_back, astra_projectors["parallel"], sino, rounds=PEER_ROUNDS)
    record_median("ASTRA")


@pytest.mark.benchmark(group=GROUPS["parallel back"])
def test_parallel_back_skimage(benchmark, record_median, image):
    sino = ours_forward(image, PARALLEL)
    degrees = np.rad2deg(PARALLEL["angles"])
    back = skimage_transform.iradon(sino.T, theta=degrees, output_size=N, filter_name=None, circle=False)
    assert correlation(back, ours_back(sino, PARALLEL)) > 0.99
    timed(benchmark, lambda: skimage_transform.iradon(sino.T, theta=degrees, output_size=N,
                                                      filter_name=None, circle=False), rounds=1)
    record_median("scikit-image")


# -- fan beam --------------------------------------------------------------------------------

@pytest.mark.benchmark(group=GROUPS["fan forward"])
def test_fan_forward_recon_engine(benchmark, record_median, image, astra_projectors):
    sino = ours_forward(image, FAN)
    reference = astra_forward(astra_projectors["fan"], image)
    assert correlation(sino, reference) > 0.99  # ASTRA's line model: a different discretisation
    timed(benchmark, ours_forward, image, FAN, rounds=5)
    record_median("recon-engine")


@pytest.mark.benchmark(group=GROUPS["fan forward"])
def test_fan_forward_astra(benchmark, record_median, image, astra_projectors):
    timed(benchmark, astra_forward, astra_projectors["fan"], image, rounds=PEER_ROUNDS)
    record_median("ASTRA")


@pytest.mark.benchmark(group=GROUPS["fan back"])
def test_fan_back_recon_engine(benchmark, record_median, image, astra_projectors):
    sino = ours_forward(image, FAN)
    back = ours_back(sino, FAN)
    assert correlation(back, astra_back(astra_projectors["fan"], sino)) > 0.99
    timed(benchmark, ours_back, sino, FAN, rounds=5)
    record_median("recon-engine")


@pytest.mark.benchmark(group=GROUPS["fan back"])
def test_fan_back_astra(benchmark, record_median, image, astra_projectors):
    sino = ours_forward(image, FAN)
    timed(benchmark, astra_back, astra_projectors["fan"], sino, rounds=PEER_ROUNDS)
    record_median("ASTRA")


# -- cone beam (ours only) -------------------------------------------------------------------

def cone_args() -> tuple:
    return (CONE_SPACING, CONE_SPACING, 0.0, 0.0, 1.0, CONE_R, CONE_D)


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    return np.random.default_rng(1).random((CONE_N,) * 3).astype(np.float32)


@pytest.mark.benchmark(group=GROUPS["cone forward"])
def test_cone_forward_recon_engine(benchmark, record_median, volume):
    proj = joseph.forward_cone(volume, CONE_ANGLES, CONE_DET, CONE_DET, *cone_args())
    assert not proj[:, [0, -1], :].any() and not proj[:, :, [0, -1]].any()  # the volume fits the cone
    timed(benchmark, joseph.forward_cone, volume, CONE_ANGLES, CONE_DET, CONE_DET, *cone_args(), rounds=3)
    record_median("recon-engine")


@pytest.mark.benchmark(group=GROUPS["cone back"])
def test_cone_back_recon_engine(benchmark, record_median, volume):
    proj = joseph.forward_cone(volume, CONE_ANGLES, CONE_DET, CONE_DET, *cone_args())
    back = joseph.adjoint_cone(proj, CONE_ANGLES, *volume.shape, *cone_args())
    assert back.shape == volume.shape and back.min() > 0  # every voxel is seen
    timed(benchmark, joseph.adjoint_cone, proj, CONE_ANGLES, *volume.shape, *cone_args(), rounds=3)
    record_median("recon-engine")
