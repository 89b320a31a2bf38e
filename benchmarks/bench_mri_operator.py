"""Speed of the multi-coil Cartesian SENSE normal operator ``A^H A x``: recon-engine vs SigPy.

Problem: 16 coils, 320 x 320, complex64, a 1D column mask with every 4th column plus a
centre block of 8% of the columns (fastMRI's R = 4 equispaced mask), random smooth-ish coil maps
normalised to ``sum_c |S_c|^2 = 1``. recon-engine: ``MultiCoilMRI.normal`` under ``jit`` (the
operator is an argument, not a baked-in constant; compilation excluded by a warm-up call;
``block_until_ready`` inside the timed call). SigPy: ``S = sigpy.mri.linop.Sense(maps,
weights=mask)``, ``S.H(S(x))`` on NumPy arrays. Both results are checked to agree before timing.

Run: ``.venv/bin/python -m pytest benchmarks/bench_mri_operator.py --benchmark-only``.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from physics.mri import MultiCoilMRI

sigpy_mri = pytest.importorskip("sigpy.mri")

COILS, NY, NX = 16, 320, 320
ACCEL, CENTRE_FRACTION = 4, 0.08
GROUP = f"SENSE normal op, {COILS} coils {NY}x{NX} complex64, R={ACCEL}"


def column_mask(nx: int, accel: int, centre_fraction: float) -> np.ndarray:
    """``(nx,)`` float32 0/1 mask: every ``accel``-th column plus a fully sampled centre block."""
    mask = np.zeros(nx, np.float32)
    mask[::accel] = 1
    ncentre = round(nx * centre_fraction)
    start = (nx - ncentre + 1) // 2
    mask[start:start + ncentre] = 1
    return mask


@pytest.fixture(scope="module")
def problem() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coil maps ``(coils, ny, nx)``, column mask ``(nx,)`` and image ``(ny, nx)``, complex64."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[-1:1:NY * 1j, -1:1:NX * 1j]
    angles = 2 * np.pi * np.arange(COILS) / COILS
    centres = 1.2 * np.stack([np.cos(angles), np.sin(angles)], axis=1)[:, :, None, None]
    dist2 = (y - centres[:, 0]) ** 2 + (x - centres[:, 1]) ** 2
    maps = np.exp(-dist2 / 1.5) * np.exp(1j * rng.uniform(0, 2 * np.pi, (COILS, 1, 1)))
    maps /= np.sqrt(np.sum(np.abs(maps) ** 2, axis=0))
    image = rng.standard_normal((NY, NX)) + 1j * rng.standard_normal((NY, NX))
    return maps.astype(np.complex64), column_mask(NX, ACCEL, CENTRE_FRACTION), image.astype(np.complex64)


def sigpy_normal(maps: np.ndarray, mask: np.ndarray):
    S = sigpy_mri.linop.Sense(maps, coord=None, weights=np.broadcast_to(mask, (NY, NX)))
    SH = S.H
    return lambda x: SH(S(x))


def test_mask_is_r4_with_centre_block(problem):
    _, mask, _ = problem
    assert mask.shape == (NX,) and 1 / mask.mean() == pytest.approx(3.4, abs=0.2)  # R=4 plus centre
    assert mask[NX // 2 - 10:NX // 2 + 10].all()


@pytest.mark.benchmark(group=GROUP)
def test_recon_engine_normal(benchmark, record_median, problem):
    maps, mask, x = problem
    A = MultiCoilMRI(jax.device_put(maps), jax.device_put(mask))
    normal = jax.jit(lambda op, v: op.normal(v))
    xj = jax.device_put(x)
    out = normal(A, xj).block_until_ready()  # compile outside the timing
    np.testing.assert_allclose(np.asarray(out), sigpy_normal(maps, mask)(x), rtol=0,
                               atol=1e-5 * np.abs(x).max())
    benchmark(lambda: normal(A, xj).block_until_ready())
    record_median("recon-engine")


@pytest.mark.benchmark(group=GROUP)
def test_sigpy_normal(benchmark, record_median, problem):
    maps, mask, x = problem
    op = sigpy_normal(maps, mask)
    assert op(x).dtype == np.complex64
    benchmark(op, x)
    record_median("SigPy")
