"""Numba CT projectors (kernels.joseph, kernels.joseph_cuda): adjoints, analytic line integrals,
ASTRA and scikit-image cross-checks, CUDA kernels under the simulator and compiled to PTX."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from kernels import joseph
from kernels.joseph import MODE_FAN_ARC, MODE_FAN_FLAT, MODE_PARALLEL

ROOT = Path(__file__).resolve().parents[1]
MODES = {"parallel": MODE_PARALLEL, "fan-flat": MODE_FAN_FLAT, "fan-arc": MODE_FAN_ARC}

# 2D geometry: non-square image, pixel 0.7 mm, offset detector, angles over 2 pi including pi/4
# multiples (rays exactly at 45 degrees: the tie of the dominant-axis choice).
NY, NX, PIXEL = 24, 32, 0.7
ANGLES_2D = np.concatenate([np.linspace(0, 2 * np.pi, 13, endpoint=False), np.pi / 4 * np.arange(8)])
GEOM_2D = dict(det_spacing=0.9, det_offset=1.3, pixel_size=PIXEL, src_iso=40.0, src_det=70.0)
N_DET = 40
# Cone geometry: tall volume and a source close to it, so that the rays walk along x, along y
# and (steep rays, |dz| largest) along z: all three layouts are exercised.
NZ, NYC, NXC = 30, 7, 9
ANGLES_CONE = np.linspace(0, 2 * np.pi, 7, endpoint=False)
CONE_ARGS = (7.0, 1.3, 2.0, -0.4, 0.8, 12.0, 24.0)  # spacing_v, spacing_u, offset_v, offset_u, pixel, R, D
ROWS, COLS = 15, 16


def forward_2d(image, mode, angles=ANGLES_2D, n_det=N_DET, **geom):
    g = {**GEOM_2D, **geom}
    return joseph.forward_2d(image, angles, n_det, g["det_spacing"], g["det_offset"], g["pixel_size"],
                             g["src_iso"], g["src_det"], mode)


def adjoint_2d(sino, mode, shape=(NY, NX), angles=ANGLES_2D, **geom):
    g = {**GEOM_2D, **geom}
    return joseph.adjoint_2d(sino, angles, *shape, g["det_spacing"], g["det_offset"], g["pixel_size"],
                             g["src_iso"], g["src_det"], mode)


def dot_test_error(Ax, y, x, ATy) -> float:
    """``|<Ax, y> - <x, A^T y>| / <Ax, y>`` in float64, for positive ``x`` and ``y`` (so that a
    wrong weight anywhere shifts the sum instead of averaging out)."""
    lhs = np.vdot(Ax.astype(np.float64), y.astype(np.float64))
    rhs = np.vdot(x.astype(np.float64), ATy.astype(np.float64))
    return abs(lhs - rhs) / lhs


# -- adjoints --------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES.values(), ids=MODES.keys())
def test_adjoint_2d_is_the_transpose(mode, rng):
    x = rng.random((NY, NX)).astype(np.float32)
    y = rng.random((len(ANGLES_2D), N_DET)).astype(np.float32)
    Ax, ATy = forward_2d(x, mode), adjoint_2d(y, mode)
    assert Ax.shape == y.shape and Ax.dtype == np.float32
    assert ATy.shape == x.shape and ATy.dtype == np.float32
    assert dot_test_error(Ax, y, x, ATy) < 1e-5
    assert np.count_nonzero(Ax) > 0.5 * Ax.size  # the rays do cross the image


def test_adjoint_cone_is_the_transpose(rng):
    x = rng.random((NZ, NYC, NXC)).astype(np.float32)
    y = rng.random((len(ANGLES_CONE), ROWS, COLS)).astype(np.float32)
    Ax = joseph.forward_cone(x, ANGLES_CONE, ROWS, COLS, *CONE_ARGS)
    ATy = joseph.adjoint_cone(y, ANGLES_CONE, NZ, NYC, NXC, *CONE_ARGS)
    assert Ax.shape == y.shape and ATy.shape == x.shape and ATy.dtype == np.float32
    assert dot_test_error(Ax, y, x, ATy) < 1e-5


def test_adjoint_matches_the_explicit_matrix(rng):
    """Columns of A (forward of unit images) against rows of A^T (adjoint of unit sinograms)."""
    shape, angles, n_det = (5, 6), np.array([0.3, 1.9, 4.0]), 7
    geom = dict(det_spacing=1.1, det_offset=0.4, pixel_size=0.9)
    A = np.stack([forward_2d(e.reshape(shape), MODE_FAN_FLAT, angles, n_det, **geom).ravel()
                  for e in np.eye(30, dtype=np.float32)], axis=1)
    AT = np.stack([adjoint_2d(e.reshape(len(angles), n_det), MODE_FAN_FLAT, shape, angles, **geom).ravel()
                   for e in np.eye(len(angles) * n_det, dtype=np.float32)], axis=1)
    np.testing.assert_allclose(AT, A.T, rtol=1e-6, atol=1e-6)


# -- line integrals: an independent reference and analytic values ---------------------------

def ray_lines(mode, angles, u, R, D):
    """Each ray ``(angle, bin)`` as a point ``(px, py)`` and a direction ``(vx, vy)`` in mm, from
    the conventions of physics.ct_geometry."""
    s, c = np.sin(angles)[:, None], np.cos(angles)[:, None]
    if mode == MODE_PARALLEL:  # the line u e_u + t d
        return u * c, u * s, s + 0 * u, -c + 0 * u
    if mode == MODE_FAN_FLAT:  # from the source R d to -(D - R) d + u e_u
        vx, vy = -D * s + u * c, D * c + u * s
    else:  # fan angle gamma = u / D: direction -cos(gamma) d + sin(gamma) e_u
        g = u / D
        vx, vy = -np.cos(g) * s + np.sin(g) * c, np.cos(g) * c + np.sin(g) * s
    return R * s + 0 * u, -R * c + 0 * u, vx, vy


def joseph_reference(image, p, px, py, vx, vy) -> float:
    """Joseph's line integral of one ray, in float64 and millimetres, with explicit bounds."""
    ny, nx = image.shape
    if abs(vx) >= abs(vy):  # one step per column, interpolate between rows
        centres, lines, slope = (np.arange(nx) - (nx - 1) / 2) * p, image.T, vy / vx
        minor = lambda x: (ny - 1) / 2 - (py + (x - px) * slope) / p  # noqa: E731
    else:  # one step per row, interpolate between columns
        centres, lines, slope = ((ny - 1) / 2 - np.arange(ny)) * p, image, vx / vy
        minor = lambda y: (px + (y - py) * slope) / p + (nx - 1) / 2  # noqa: E731
    total = 0.0
    for line, centre in zip(lines, centres):
        m = minor(centre)
        i = int(np.floor(m))
        f = m - i
        if 0 <= i < len(line):
            total += (1 - f) * line[i]
        if 0 <= i + 1 < len(line):
            total += f * line[i + 1]
    return total * p * np.hypot(vx, vy) / max(abs(vx), abs(vy))


@pytest.mark.parametrize("mode", MODES.values(), ids=MODES.keys())
def test_forward_matches_a_float64_reference(mode, rng):
    """Every ray, edges included (rays grazing the border see pixels outside as zero)."""
    image = rng.random((NY, NX))
    angles = ANGLES_2D[::2]
    sino = forward_2d(image.astype(np.float32), mode, angles)
    u = joseph.detector_positions(N_DET, GEOM_2D["det_spacing"], GEOM_2D["det_offset"])
    lines = np.broadcast_arrays(*ray_lines(mode, angles, u, GEOM_2D["src_iso"], GEOM_2D["src_det"]))
    reference = np.vectorize(lambda *ray: joseph_reference(image, PIXEL, *ray))(*lines)
    np.testing.assert_allclose(sino, reference, rtol=0, atol=2e-6 * reference.max())


def ball_image(shape, p, centre, r, mu, sub=3) -> np.ndarray:
    """Uniform disc / ball of value ``mu``, radius ``r`` mm and centre ``(x, y[, z])`` mm on a
    ``(ny, nx)`` / ``(nz, ny, nx)`` grid of pixel ``p`` mm: mean of ``sub^ndim`` samples per pixel."""
    offsets = (np.arange(sub) + 0.5) / sub - 0.5

    def samples(n, sign):  # pixel-centre coordinates (mm) of each sub-sample along one axis
        return (sign * (np.arange(n) - (n - 1) / 2)[:, None] + offsets).reshape(-1) * p

    axes = [samples(shape[-1], 1), samples(shape[-2], -1)]  # x, y
    if len(shape) == 3:
        axes.append(samples(shape[0], 1))  # z
    grids = np.meshgrid(*axes[::-1], indexing="ij")  # (z,) y, x
    inside = sum((g - c) ** 2 for g, c in zip(grids, centre[::-1])) < r * r
    blocks = inside.reshape([k for n in shape for k in (n, sub)])
    return (mu * blocks.mean(axis=tuple(range(1, 2 * len(shape), 2)))).astype(np.float32)


@pytest.mark.parametrize("mode", MODES.values(), ids=MODES.keys())
def test_disc_line_integrals_are_analytic(mode):
    """A uniform disc off the origin: 2 mu sqrt(r^2 - s^2), s = distance from ray to centre."""
    p, cx, cy, r, mu = 0.5, 5.0, -8.0, 20.0, 0.02
    image = ball_image((128, 128), p, (cx, cy), r, mu, sub=4)
    angles = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    n_det, du, offset, R, D = 160, 0.6, 1.3, 100.0, 180.0
    sino = forward_2d(image, mode, angles, n_det, det_spacing=du, det_offset=offset, pixel_size=p,
                      src_iso=R, src_det=D)
    px, py, vx, vy = ray_lines(mode, angles, joseph.detector_positions(n_det, du, offset), R, D)
    dist = np.abs(vx * (cy - py) - vy * (cx - px)) / np.hypot(vx, vy)
    exact = 2 * mu * np.sqrt(np.clip(r * r - dist ** 2, 0, None))
    core = dist < 0.9 * r
    assert core.sum() > 2000
    assert np.max(np.abs(sino - exact)[core] / exact[core]) < 0.02
    assert np.all(sino[dist > r + 2 * p] == 0)  # rays that miss the disc see nothing


def test_ball_line_integrals_are_analytic():
    """Cone beam through a uniform ball off the origin (offset detector)."""
    p, centre, r, mu = 0.9, np.array([4.0, -3.0, 5.0]), 14.0, 0.03
    volume = ball_image((40, 48, 44), p, centre, r, mu)
    angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    rows, cols, dv, du, ov, ou, R, D = 50, 60, 2.0, 2.0, 1.5, -2.0, 80.0, 160.0
    proj = joseph.forward_cone(volume, angles, rows, cols, dv, du, ov, ou, p, R, D)
    v = joseph.detector_positions(rows, dv, ov)[:, None]
    u = joseph.detector_positions(cols, du, ou)
    s, c = np.sin(angles)[:, None, None], np.cos(angles)[:, None, None]
    source = np.stack(np.broadcast_arrays(R * s, -R * c, 0 * s), -1)
    pixel = np.stack(np.broadcast_arrays(-(D - R) * s + u * c, (D - R) * c + u * s, v + 0 * s), -1)
    direction = (pixel - source) / np.linalg.norm(pixel - source, axis=-1, keepdims=True)
    w = centre - source
    dist = np.linalg.norm(w - np.sum(w * direction, -1, keepdims=True) * direction, axis=-1)
    exact = 2 * mu * np.sqrt(np.clip(r * r - dist ** 2, 0, None))
    core = dist < 0.8 * r
    assert core.sum() > 3000
    assert np.max(np.abs(proj - exact)[core] / exact[core]) < 0.03
    assert np.all(proj[dist > r + 2 * p] == 0)


# -- peers -----------------------------------------------------------------------------------

def smooth_image(ny, nx) -> np.ndarray:
    """Three Gaussian blobs inside the inscribed circle, float32."""
    yy, xx = np.mgrid[:ny, :nx]
    image = sum(a * np.exp(-((yy - r0) ** 2 + (xx - c0) ** 2) / (2 * w * w))
                for r0, c0, w, a in [(0.42 * ny, 0.47 * nx, 4, 1.0), (0.62 * ny, 0.4 * nx, 6, 0.5),
                                     (0.5 * ny, 0.65 * nx, 3, 0.8)])
    inside = (yy - (ny - 1) / 2) ** 2 + (xx - (nx - 1) / 2) ** 2 < (0.45 * min(ny, nx)) ** 2
    return (image * inside).astype(np.float32)


def test_parallel_matches_astra_linear(rng):
    """Same method as ASTRA's CPU 'linear' projector: forward and backprojection to ~1e-5.

    Observed: ASTRA differs from a float64 Joseph sum (see test_forward_matches_a_float64_reference)
    on rays that cross the outermost pixels, and by up to 1e-3 of the maximum on 512^2 random
    images; so this check uses a small image that is zero outside its inscribed circle.
    """
    astra = pytest.importorskip("astra")
    ny, nx, p, n_det, du = 48, 64, 0.7, 100, 0.9
    yy, xx = np.mgrid[:ny, :nx]
    inside = (yy - (ny - 1) / 2) ** 2 + (xx - (nx - 1) / 2) ** 2 < (0.45 * ny) ** 2
    image = (rng.random((ny, nx)) * inside).astype(np.float32)
    angles = np.linspace(0, np.pi, 180, endpoint=False)
    vol = astra.create_vol_geom(ny, nx, -nx * p / 2, nx * p / 2, -ny * p / 2, ny * p / 2)
    proj = astra.create_proj_geom("parallel", du, n_det, angles)
    pid = astra.create_projector("linear", proj, vol)
    try:
        sid, sino_astra = astra.create_sino(image, pid)
        astra.data2d.delete(sid)
        bid, bp_astra = astra.create_backprojection(sino_astra, pid)
        astra.data2d.delete(bid)
    finally:
        astra.projector.delete(pid)
    geom = dict(det_spacing=du, det_offset=0.0, pixel_size=p)
    sino = forward_2d(image, MODE_PARALLEL, angles, n_det, **geom)
    np.testing.assert_allclose(sino, sino_astra, rtol=0, atol=1e-4 * sino_astra.max())
    bp = adjoint_2d(sino_astra, MODE_PARALLEL, (ny, nx), angles, **geom)
    np.testing.assert_allclose(bp, bp_astra, rtol=0, atol=1e-5 * bp_astra.max())


def test_fan_flat_matches_astra_fanflat():
    """ASTRA's fan-beam CPU projectors discretise differently: agreement to a few %."""
    astra = pytest.importorskip("astra")
    ny, nx, p = 48, 64, 0.8
    image = smooth_image(ny, nx)
    angles = np.linspace(0, 2 * np.pi, 36, endpoint=False)
    n_det, du, R, D = 100, 1.1, 150.0, 250.0
    vol = astra.create_vol_geom(ny, nx, -nx * p / 2, nx * p / 2, -ny * p / 2, ny * p / 2)
    proj = astra.create_proj_geom("fanflat", du, n_det, angles, R, D - R)
    geom = dict(det_spacing=du, det_offset=0.0, pixel_size=p, src_iso=R, src_det=D)
    sino = forward_2d(image, MODE_FAN_FLAT, angles, n_det, **geom)
    for name, tol_forward, tol_back in (("line_fanflat", 0.02, None), ("strip_fanflat", 0.005, 0.02)):
        pid = astra.create_projector(name, proj, vol)
        try:
            sid, sino_astra = astra.create_sino(image, pid)
            astra.data2d.delete(sid)
            bid, bp_astra = astra.create_backprojection(sino_astra, pid)
            astra.data2d.delete(bid)
        finally:
            astra.projector.delete(pid)
        assert np.linalg.norm(sino - sino_astra) < tol_forward * np.linalg.norm(sino_astra), name
        assert np.abs(sino - sino_astra).max() < 3 * tol_forward * sino_astra.max(), name
        if tol_back is not None:  # line_fanflat's own backprojection has its line-model aliasing
            bp = adjoint_2d(sino_astra, MODE_FAN_FLAT, (ny, nx), angles, **geom)
            assert np.linalg.norm(bp - bp_astra) < tol_back * np.linalg.norm(bp_astra), name


def test_parallel_matches_skimage_radon():
    """scikit-image: ``radon(image, theta_deg, circle=True).T[i, j]`` is our bin ``j`` at
    ``theta = radians(theta_deg[i])`` for an odd square image (its rotation centre ``n // 2`` is
    then our ``(n - 1) / 2``), pixel and bin 1 mm, ``n`` bins, no offset. Its ``iradon`` without
    filter is ``pi / (2 na)`` times a (pixel-driven) backprojection."""
    transform = pytest.importorskip("skimage.transform")
    n = 65
    image = smooth_image(n, n)
    degrees = np.linspace(0, 180, 30, endpoint=False)
    geom = dict(det_spacing=1.0, det_offset=0.0, pixel_size=1.0)
    sino = forward_2d(image, MODE_PARALLEL, np.deg2rad(degrees), n, **geom)
    sino_skimage = transform.radon(image.astype(np.float64), theta=degrees, circle=True).T
    np.testing.assert_allclose(sino, sino_skimage, rtol=0, atol=0.005 * sino.max())
    bp = adjoint_2d(sino, MODE_PARALLEL, (n, n), np.deg2rad(degrees), **geom) * np.pi / (2 * len(degrees))
    bp_skimage = transform.iradon(sino.T.astype(np.float64), theta=degrees, filter_name=None, circle=True)
    yy, xx = np.mgrid[:n, :n]
    disc = (yy - n // 2) ** 2 + (xx - n // 2) ** 2 < (n // 2 - 1) ** 2
    assert np.linalg.norm((bp - bp_skimage)[disc]) < 0.03 * np.linalg.norm(bp[disc])


# -- API behaviour ---------------------------------------------------------------------------

def test_inputs_are_not_modified_and_any_float_layout_is_accepted(rng):
    image = rng.random((NX, NY)).T  # float64, Fortran order
    before = image.copy()
    sino = forward_2d(image, MODE_FAN_ARC)
    np.testing.assert_array_equal(image, before)
    np.testing.assert_array_equal(sino, forward_2d(np.ascontiguousarray(image, np.float32), MODE_FAN_ARC))
    sino_before = sino.copy()
    adjoint_2d(sino, MODE_FAN_ARC)
    np.testing.assert_array_equal(sino, sino_before)
    volume = rng.random((NZ, NYC, NXC)).astype(np.float32)
    volume_before = volume.copy()
    proj = joseph.forward_cone(volume, ANGLES_CONE, ROWS, COLS, *CONE_ARGS)
    proj_before = proj.copy()
    joseph.adjoint_cone(proj, ANGLES_CONE, NZ, NYC, NXC, *CONE_ARGS)
    np.testing.assert_array_equal(volume, volume_before)
    np.testing.assert_array_equal(proj, proj_before)


def test_rays_that_miss_the_image_give_zero(rng):
    image = rng.random((NY, NX)).astype(np.float32)
    sino = forward_2d(image, MODE_PARALLEL, det_offset=100.0)  # all bins far beside the image
    assert sino.shape == (len(ANGLES_2D), N_DET) and not sino.any()
    assert not adjoint_2d(np.ones_like(sino), MODE_PARALLEL, det_offset=100.0).any()


def test_bad_input_is_refused(rng):
    image = rng.random((NY, NX)).astype(np.float32)
    with pytest.raises(ValueError, match="image must be 2D"):
        forward_2d(image[None], MODE_PARALLEL)
    with pytest.raises(ValueError, match="mode"):
        forward_2d(image, 3)
    with pytest.raises(ValueError, match="angles"):
        adjoint_2d(np.zeros((len(ANGLES_2D) + 1, N_DET), np.float32), MODE_PARALLEL)
    with pytest.raises(ValueError, match="volume must be 3D"):
        joseph.forward_cone(image, ANGLES_CONE, ROWS, COLS, *CONE_ARGS)
    with pytest.raises(ValueError, match="angles"):
        joseph.adjoint_cone(np.zeros((1, ROWS, COLS), np.float32), ANGLES_CONE, NZ, NYC, NXC, *CONE_ARGS)


# -- CUDA ------------------------------------------------------------------------------------

SIMULATOR_SCRIPT = """
import json
import numpy as np
from kernels import joseph, joseph_cuda

rng = np.random.default_rng(0)
errors = {"available": joseph_cuda.is_available()}
image = rng.random((12, 16)).astype(np.float32)
sino = rng.random((6, 20)).astype(np.float32)
angles = np.linspace(0, 2 * np.pi, 6, endpoint=False)
for mode in (joseph.MODE_PARALLEL, joseph.MODE_FAN_FLAT, joseph.MODE_FAN_ARC):
    geom = (0.9, 0.3, 0.8, 40.0, 70.0, mode)
    cpu, gpu = joseph.forward_2d(image, angles, 20, *geom), joseph_cuda.forward_2d(image, angles, 20, *geom)
    errors[f"forward_2d {mode}"] = float(np.abs(cpu - gpu).max() / np.abs(cpu).max())
    cpu = joseph.adjoint_2d(sino, angles, 12, 16, *geom)
    gpu = joseph_cuda.adjoint_2d(sino, angles, 12, 16, *geom)
    errors[f"adjoint_2d {mode}"] = float(np.abs(cpu - gpu).max() / np.abs(cpu).max())
volume = rng.random((16, 5, 6)).astype(np.float32)  # tall, source close: x, y and z walks
angles = np.linspace(0, 2 * np.pi, 3, endpoint=False)
geom = (6.0, 1.5, 2.0, -0.4, 1.0, 9.0, 18.0)
cpu = joseph.forward_cone(volume, angles, 8, 9, *geom)
gpu = joseph_cuda.forward_cone(volume, angles, 8, 9, *geom)
errors["forward_cone"] = float(np.abs(cpu - gpu).max() / np.abs(cpu).max())
proj = rng.random(cpu.shape).astype(np.float32)
cpu = joseph.adjoint_cone(proj, angles, 16, 5, 6, *geom)
gpu = joseph_cuda.adjoint_cone(proj, angles, 16, 5, 6, *geom)
errors["adjoint_cone"] = float(np.abs(cpu - gpu).max() / np.abs(cpu).max())
print(json.dumps(errors))
"""


def run_python(script: str, **env: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_cuda_kernels_match_cpu_under_the_simulator():
    """kernels.joseph_cuda run by NUMBA_ENABLE_CUDASIM=1 (in a subprocess), against kernels.joseph."""
    errors = json.loads(run_python(SIMULATOR_SCRIPT, NUMBA_ENABLE_CUDASIM="1").stdout.splitlines()[-1])
    assert errors.pop("available") is True
    assert len(errors) == 8
    for name, error in errors.items():
        assert error < 1e-5, name


PTX_SCRIPT = """
import re
import types
import numba.cuda.dispatcher
from numba import cuda, types as t
from numba.cuda.cudadrv import nvvm

if not nvvm.is_available():
    print("no NVVM")
    raise SystemExit(0)
# Device functions ask the (absent) GPU for its compute capability: pretend an H100 (sm_90).
numba.cuda.dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=(9, 0))
from kernels import joseph_cuda

f4_2, f4_3, f4_4 = t.float32[:, ::1], t.float32[:, :, ::1], t.float32[:, :, :, ::1]
f8_1, f8_2, i8, f8 = t.float64[::1], t.float64[:, ::1], t.int64, t.float64
signatures = {
    "_forward_2d": (f4_2, f4_2, f8_2, f8_2, i8, i8, f8, f4_2),
    "_adjoint_2d": (f4_2, f8_2, f8_2, i8, i8, f8, f4_3, f4_3),
    "_forward_cone": (f4_3, f4_3, f4_3, f8_2, f8_1, f8_1, f8, f8, i8, i8, i8, f8, f4_3),
    "_adjoint_cone": (f4_3, f8_2, f8_1, f8_1, f8, f8, i8, i8, i8, f8, f4_4, f4_4, f4_4),
}
for name, signature in signatures.items():
    ptx, _ = cuda.compile_ptx(getattr(joseph_cuda, name).py_func, signature, fastmath=True, cc=(9, 0))
    atomics = len(re.findall(r"(?:atom|red)(?:[.]global)?[.]add[.]f32", ptx))
    print(name, ".entry" in ptx, atomics > 0)
"""


def test_cuda_kernels_compile_to_ptx():
    """The real CUDA target (which the simulator does not exercise) compiles all four kernels."""
    out = run_python(PTX_SCRIPT).stdout
    if out.startswith("no NVVM"):
        pytest.skip("NVVM (CUDA compiler library) not installed")
    lines = dict(line.split(" ", 1) for line in out.strip().splitlines())
    # kernels present; only the adjoints scatter, with float32 atomic adds
    assert lines == {"_forward_2d": "True False", "_adjoint_2d": "True True", "_forward_cone": "True False",
                     "_adjoint_cone": "True True"}
