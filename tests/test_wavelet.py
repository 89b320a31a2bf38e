"""Wavelet transform and wavelet-L1 prox: against PyWavelets and SigPy, and analytic properties."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import pywt
import sigpy

from physics import InvalidDataError, ShapeError, adjoint_error
from recon.wavelet import (WAVELETS, Wavelet, _filters, random_shift, soft_threshold,
                           wavelet_l1, wavelet_prox)
from tests.conftest import complex_normal

# (wavelet, shape, levels): non-square, 2D and 3D, at the largest allowed level or below it
CASES = [
    ("haar", (16, 8), 3), ("haar", (8, 4, 12), 2),
    ("db2", (24, 12), 2), ("db2", (12, 24, 6), 1),
    ("db4", (32, 48), 2), ("db4", (56, 28), 1), ("db4", (16, 14, 28), 1),
]
HAAR_2D, HAAR_3D, DB2_2D, _, _, DB4_2D, _ = CASES  # reused below: compiled transforms are cached


def pywt_forward(x: np.ndarray, wavelet: str, levels: int):
    """Independent reference: pywt's periodized DWT packed by ``coeffs_to_array`` (float64),
    and the slices of each band."""
    coeffs = pywt.wavedecn(x.astype(np.complex128 if np.iscomplexobj(x) else np.float64),
                           wavelet, mode="periodization", level=levels)
    return pywt.coeffs_to_array(coeffs)


def pywt_prox(x: np.ndarray, t, wavelet: str, levels: int) -> np.ndarray:
    """Prox by pywt: soft-threshold the detail coefficients (periodization mode), keep cA."""
    coeffs = pywt.wavedecn(x.astype(np.complex128), wavelet, mode="periodization", level=levels)
    out = [coeffs[0]]
    for detail in coeffs[1:]:
        out.append({k: pywt.threshold(v, t, mode="soft") for k, v in detail.items()})
    return pywt.waverecn(out, wavelet, mode="periodization")


@pytest.mark.parametrize("name", WAVELETS)
def test_filters_are_pywt_filters(name):
    w = pywt.Wavelet(name)
    assert w.orthogonal
    g, h = _filters(name)
    np.testing.assert_allclose(g, w.dec_lo, rtol=0, atol=1e-15)
    np.testing.assert_allclose(h, w.dec_hi, rtol=0, atol=1e-15)


@pytest.mark.parametrize("wavelet,shape,levels", CASES)
def test_matches_pywt_and_orthonormal(wavelet, shape, levels, rng):
    W = Wavelet(shape, wavelet, levels)
    x = complex_normal(rng, shape)
    y = W(jnp.asarray(x))
    assert y.dtype == jnp.complex64
    ref, slices = pywt_forward(x, wavelet, levels)
    np.testing.assert_allclose(y, ref, rtol=0, atol=2e-6)
    # the inverse is pywt's waverecn of the same packed coefficients
    c = pywt.array_to_coeffs(np.asarray(y), slices, output_format="wavedecn")
    np.testing.assert_allclose(W.adjoint(y), pywt.waverecn(c, wavelet, mode="periodization"),
                               rtol=0, atol=2e-6)
    np.testing.assert_allclose(W.H(y), x, atol=2e-6)  # perfect reconstruction
    np.testing.assert_allclose(W(W.adjoint(jnp.asarray(x))), x, atol=2e-6)  # and a right inverse
    np.testing.assert_allclose(jnp.linalg.norm(y), np.linalg.norm(x), rtol=1e-6)
    np.testing.assert_allclose(W.normal(jnp.asarray(x)), x)
    assert adjoint_error(W, jax.random.key(levels)) < 1e-6


@pytest.mark.parametrize("wavelet,shape,levels", CASES[::3])
def test_real_input_stays_real(wavelet, shape, levels, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    W = Wavelet(shape, wavelet, levels)
    y = W(jnp.asarray(x))
    assert y.dtype == jnp.float32 and W.H(y).dtype == jnp.float32
    np.testing.assert_allclose(y, pywt_forward(x, wavelet, levels)[0], rtol=0, atol=2e-6)
    np.testing.assert_allclose(W.H(y), x, atol=2e-6)


def test_default_levels_rule():
    # largest L <= 4 with n % 2**L == 0 and n / 2**L >= taps - 1, for every axis
    assert Wavelet((256, 256)).levels == 4
    assert Wavelet((320, 368), "db4").levels == 4
    assert Wavelet((64, 28), "db4").levels == 2  # 28 / 4 = 7 = taps - 1
    assert Wavelet((48, 40), "haar").levels == 3  # 40 = 8 * 5
    assert Wavelet((16, 64, 64), "db2").levels == 2  # 16 / 4 = 4 >= 3, 16 / 8 = 2 < 3
    for name in ("haar", "db2", "db4"):
        for n in (48, 64, 112, 200):
            taps = len(pywt.Wavelet(name).dec_lo)
            div = (n & -n).bit_length() - 1  # powers of two dividing n
            expect = min(pywt.dwt_max_level(n, taps), div, 4)
            assert Wavelet.create([n, 2 * n], name).levels == expect


def test_detail_mask():
    W = Wavelet((32, 48), "db2", 2)
    assert W.approx_shape == (8, 12)
    mask = W.detail_mask
    assert mask.shape == (32, 48) and mask.dtype == bool
    assert not mask[:8, :12].any() and mask.sum() == 32 * 48 - 8 * 12
    # the False block is exactly where pywt puts the approximation cA
    _, slices = pywt.coeffs_to_array(pywt.wavedecn(np.zeros((32, 48)), "db2", "periodization", 2))
    ref = np.ones((32, 48), bool)
    ref[slices[0]] = False
    np.testing.assert_array_equal(mask, ref)


def test_jit_vmap_batch(rng):
    wavelet, shape, levels = DB2_2D
    W = Wavelet(shape, wavelet, levels)
    xb = complex_normal(rng, (2, 3, *shape))
    ref = np.stack([[pywt_forward(x, wavelet, levels)[0] for x in row] for row in xb])
    np.testing.assert_allclose(W(jnp.asarray(xb)), ref, atol=2e-6)  # leading batch axes
    np.testing.assert_allclose(jax.vmap(jax.vmap(W))(jnp.asarray(xb)), ref, atol=2e-6)
    np.testing.assert_allclose(jax.jit(jax.vmap(W.adjoint))(jnp.asarray(ref[0])), xb[0], atol=2e-6)
    # the operator passes through jit as a pytree argument; one threshold per slice broadcasts
    t = np.array([0.1, 0.5, 2.0], np.float32)
    prox = jax.jit(lambda x, t, A: wavelet_prox(x, t, A))(jnp.asarray(xb[0]), t[:, None, None], W)
    np.testing.assert_allclose(prox, np.stack([pywt_prox(x, ti, wavelet, levels)
                                               for x, ti in zip(xb[0], t)]), atol=3e-6)
    l1 = wavelet_l1(jnp.asarray(xb), W)
    assert l1.shape == (2, 3) and l1.dtype == jnp.float32
    np.testing.assert_allclose(l1, np.abs(ref * W.detail_mask).sum(axis=(-2, -1)), rtol=1e-5)


def test_grad(rng):
    wavelet, shape, levels = DB2_2D
    W = Wavelet(shape, wavelet, levels)
    z = jnp.asarray(complex_normal(rng, shape))
    # complex: through W, soft threshold and W^H; at t = 0 the prox is the identity, so the
    # gradient of ||prox(z)||^2 is that of ||z||^2 (whatever JAX's complex convention)
    grad_prox = jax.jit(jax.grad(lambda z, t: jnp.sum(jnp.abs(wavelet_prox(z, t, W)) ** 2)))
    np.testing.assert_allclose(grad_prox(z, 0.0), jax.grad(lambda z: jnp.sum(jnp.abs(z) ** 2))(z),
                               atol=1e-5)
    for z0 in (z, jnp.zeros_like(z)):  # finite, also at 0
        assert np.isfinite(np.asarray(grad_prox(z0, 0.3))).all()
    # real input: d/dx sum |detail(W x)| = W^T (mask * sign(W x)), W^T by pywt
    x = rng.standard_normal(shape).astype(np.float32)
    c, slices = pywt_forward(x, wavelet, levels)
    expect = pywt.waverecn(pywt.array_to_coeffs(W.detail_mask * np.sign(c), slices, "wavedecn"),
                           wavelet, mode="periodization")
    grad_l1 = jax.jit(jax.grad(lambda x: wavelet_l1(x, W)))
    np.testing.assert_allclose(grad_l1(jnp.asarray(x)), expect, atol=1e-5)
    assert (np.asarray(grad_l1(jnp.zeros(shape))) == 0).all()  # subgradient 0 at 0


def test_soft_threshold_closed_form(rng):
    x = complex_normal(rng, (200,))
    x[:5] = 0
    t = 0.8
    y = np.asarray(soft_threshold(jnp.asarray(x), t))
    assert y.dtype == np.complex64
    np.testing.assert_allclose(np.abs(y), np.maximum(np.abs(x) - t, 0), atol=1e-6)  # shrink by t
    keep = np.abs(x) > t + 1e-3
    np.testing.assert_allclose(np.angle(y[keep]), np.angle(x[keep]), atol=1e-5)  # phase kept
    assert (y[np.abs(x) <= t] == 0).all() and (y[:5] == 0).all()  # below t and zeros -> 0
    # real input: sign(x) max(|x| - t, 0); array threshold broadcasts
    r = rng.standard_normal((4, 50)).astype(np.float32)
    ts = np.array([0.0, 0.1, 0.5, 3.0], np.float32)[:, None]
    yr = np.asarray(soft_threshold(jnp.asarray(r), jnp.asarray(ts)))
    assert yr.dtype == np.float32
    np.testing.assert_allclose(yr, np.sign(r) * np.maximum(np.abs(r) - ts, 0), atol=1e-6)
    # finite gradient at 0
    g = jax.grad(lambda x: jnp.sum(soft_threshold(x, 0.1)))(jnp.zeros(3))
    assert np.isfinite(np.asarray(g)).all()


@pytest.mark.parametrize("wavelet,shape,levels", [DB4_2D, DB2_2D, HAAR_3D])
def test_prox_is_the_minimiser(wavelet, shape, levels, rng):
    W = Wavelet(shape, wavelet, levels)
    x = jnp.asarray(complex_normal(rng, shape))
    t = 0.7
    p = wavelet_prox(x, t, W)

    def objective(q):
        return 0.5 * float(jnp.sum(jnp.abs(q - x) ** 2)) + t * float(wavelet_l1(q, W))

    fp = objective(p)
    assert fp < objective(x)
    for k in range(100):
        scale = 10.0 ** (-3 + 3 * (k % 4) / 3)  # perturbations of size 1e-3 .. 1
        d = jnp.asarray(complex_normal(np.random.default_rng(k), shape)) * scale
        assert fp <= objective(p + d) + 1e-6 * fp  # float32 rounding of the objective
    # approximation block untouched, details shrunk
    cx, cp = np.asarray(W(x)), np.asarray(W(p))
    np.testing.assert_allclose(cp[~W.detail_mask], cx[~W.detail_mask], atol=1e-6)
    assert np.abs(cp[W.detail_mask]).sum() < np.abs(cx[W.detail_mask]).sum()
    # independent reference: pywt (periodization) + pywt.threshold in float64
    np.testing.assert_allclose(p, pywt_prox(np.asarray(x), t, wavelet, levels), atol=3e-6)
    assert np.isclose(float(wavelet_l1(x, W)), np.abs(cx[W.detail_mask]).sum(), rtol=1e-5)


def test_prox_matches_sigpy_haar(rng):
    # SigPy pads to even sizes and uses pywt's "zero" mode: for Haar on sizes divisible by
    # 2**levels no padding happens, so its transform is ours; its L1Reg thresholds every
    # coefficient, so give it a threshold array that is 0 on the approximation block.
    _, shape, levels = HAAR_2D
    t = 0.5
    W = Wavelet(shape, "haar", levels)
    x = complex_normal(rng, shape)
    S = sigpy.linop.Wavelet(shape, wave_name="haar", level=levels)
    assert tuple(S.oshape) == shape
    np.testing.assert_allclose(W(jnp.asarray(x)), S(x), atol=2e-6)
    prox = sigpy.prox.UnitaryTransform(sigpy.prox.L1Reg(shape, t * W.detail_mask), S)
    np.testing.assert_allclose(wavelet_prox(jnp.asarray(x), t, W), prox(1.0, x), atol=2e-6)


def test_shift_cycle_spinning(rng):
    wavelet, shape, levels = DB2_2D
    W = Wavelet(shape, wavelet, levels)
    x = complex_normal(rng, shape)

    def expect(s):  # numpy: roll, prox by pywt, roll back
        return np.roll(pywt_prox(np.roll(x, s, axis=(0, 1)), 0.4, wavelet, levels), [-v for v in s],
                       axis=(0, 1))

    p = wavelet_prox(jnp.asarray(x), 0.4, W, shift=(3, -5))
    np.testing.assert_allclose(p, expect((3, -5)), atol=3e-6)
    # the shifted prox is not the unshifted one (the transform is shift-variant) ...
    assert not np.allclose(p, expect((0, 0)), atol=1e-3)
    # ... except for shifts by multiples of 2**levels (a permutation within each band)
    np.testing.assert_allclose(wavelet_prox(jnp.asarray(x), 0.4, W, shift=(4, 8)), expect((0, 0)),
                               atol=3e-6)
    # traced shifts drawn from a key under jit
    step = jax.jit(lambda x, key: wavelet_prox(x, 0.4, W, shift=random_shift(key, W)))
    for seed in range(3):
        key = jax.random.key(seed)
        s = random_shift(key, W)
        assert s.dtype == jnp.int32 and s.shape == (2,)
        np.testing.assert_allclose(step(jnp.asarray(x), key), expect(tuple(int(v) for v in s)),
                                   atol=3e-6)
    keys = jax.random.split(jax.random.key(9), 200)
    draws = np.asarray(jax.vmap(lambda k: random_shift(k, W))(keys))
    assert draws.min() == 0 and draws.max() == 2 ** levels - 1


def test_bad_inputs():
    with pytest.raises(ShapeError, match=r"\(15, 16\)"):
        Wavelet((15, 16), "haar", 1)  # odd size
    with pytest.raises(ShapeError, match="at most 2"):
        Wavelet((64, 28), "db4", 3)  # 28 not divisible by 8
    with pytest.raises(ShapeError, match="allows no"):
        Wavelet((16, 12), "db4")  # 12 / 2 = 6 < 7 = taps - 1
    with pytest.raises(ShapeError):
        Wavelet((33, 32))  # levels=None, odd size
    with pytest.raises(InvalidDataError, match="db99"):
        Wavelet((32, 32), "db99")
    with pytest.raises(InvalidDataError):
        Wavelet((32, 32), "bior2.2")  # biorthogonal: not orthonormal, not offered
    for levels in (0, -1, 1.5, True):
        with pytest.raises(InvalidDataError):
            Wavelet((32, 32), "haar", levels)
    for shape in ((32,), (2, 4, 4, 4), (0, 8)):
        with pytest.raises(ShapeError):
            Wavelet(shape, "haar", 1)
    W = Wavelet((16, 16), "haar", 2)
    with pytest.raises(ShapeError):
        W(jnp.zeros((16, 8), jnp.complex64))
    with pytest.raises(ShapeError):
        wavelet_prox(jnp.zeros((16, 16), jnp.complex64), 0.1, W, shift=(1, 2, 3))
    with pytest.raises(ShapeError):
        wavelet_prox(jnp.zeros((16, 16), jnp.complex64), 0.1, W, shift=jnp.zeros(2))
