"""Orthonormal discrete wavelet transforms (periodized) and the wavelet-L1 proximal operator.

:class:`Wavelet` is the multi-level separable DWT over the trailing 2 or 3 axes of an image with
periodic boundaries (PyWavelets' ``mode="periodization"``): an orthonormal map of the image onto
coefficients of the same shape, ``W^H W = W W^H = I``. Coefficients are packed in the pyramid
layout of ``pywt.coeffs_to_array``: at each level every axis of the current block is split into
``[low-pass half | high-pass half]`` and the next level recurses on the all-low-pass corner, so the
coarsest approximation (scaling) block sits at the low-index corner,
``[:n_0 >> levels, :n_1 >> levels, ...]``.

One level along an axis of even length ``n`` (filter ``g`` low-pass, ``h`` high-pass, ``f`` taps):
``lo[k] = sum_j g[j] x[(2k + f/2 - j) mod n]`` and ``hi[k]`` likewise with ``h`` (pywt's phase).
It is computed as ``f`` strided slices of a wrap-padded copy (measured fastest on a CPU against a
roll-based, an FFT-based and a dense-matrix form); the inverse is its transpose.

Priors for compressed sensing: :func:`soft_threshold`, :func:`wavelet_l1` (L1 norm of the detail
coefficients; the approximation block is not penalised, as in BART) and :func:`wavelet_prox`
(its proximal operator, with optional cycle spinning by :func:`random_shift`).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from physics.errors import InvalidDataError, ShapeError
from physics.linop import LinearOperator, operator, static

__all__ = ["WAVELETS", "Wavelet", "random_shift", "soft_threshold", "wavelet_l1", "wavelet_prox"]

MAX_DEFAULT_LEVELS = 4

# Decomposition low-pass filters (``pywt.Wavelet(name).dec_lo``, PyWavelets 1.8.0, float64).
# The high-pass filter is the quadrature mirror ``h[k] = (-1)^(k+1) g[f-1-k]``; reconstruction
# filters are the time reverses (orthogonal wavelets). tests/test_wavelet.py checks them all
# against pywt.
_DEC_LO: dict[str, tuple[float, ...]] = {
    "haar": (0.7071067811865476, 0.7071067811865476),
    "db2": (-0.12940952255126037, 0.2241438680420134, 0.8365163037378079, 0.48296291314453416),
    "db3": (
        0.03522629188570953, -0.08544127388202666, -0.13501102001025458, 0.45987750211849154,
        0.8068915093110925, 0.33267055295008263
    ),
    "db4": (
        -0.010597401785069032, 0.0328830116668852, 0.030841381835560764, -0.18703481171909309,
        -0.027983769416859854, 0.6308807679298589, 0.7148465705529157, 0.2303778133088965
    ),
    "db5": (
        0.0033357252854737712, -0.012580751999081999, -0.006241490212798274, 0.07757149384004572,
        -0.032244869584638375, -0.24229488706638203, 0.13842814590132074, 0.7243085284377729,
        0.6038292697971896, 0.16010239797419293
    ),
    "db6": (
        -0.0010773010853084796, 0.004777257510945511, 0.0005538422011614961, -0.03158203931748603,
        0.027522865530305727, 0.09750160558732304, -0.12976686756726194, -0.22626469396543983,
        0.31525035170919763, 0.7511339080210954, 0.49462389039845306, 0.11154074335010947
    ),
    "db7": (
        0.00035371379997452024, -0.0018016407040474908, 0.0004295779729213665, 0.01255099855609984,
        -0.01657454163066688, -0.03802993693501441, 0.08061260915108308, 0.07130921926683026,
        -0.22403618499387498, -0.14390600392856498, 0.4697822874051931, 0.7291320908462351,
        0.3965393194819173, 0.07785205408500918
    ),
    "db8": (
        -0.00011747678412476953, 0.0006754494064505693, -0.00039174037337694705,
        -0.004870352993451574, 0.008746094047405777, 0.013981027917398282, -0.044088253930794755,
        -0.017369301001807547, 0.12874742662047847, 0.0004724845739132828, -0.2840155429615469,
        -0.015829105256349306, 0.5853546836542067, 0.6756307362972898, 0.31287159091429995,
        0.05441584224310401
    ),
    "sym4": (
        -0.07576571478927333, -0.02963552764599851, 0.49761866763201545, 0.8037387518059161,
        0.29785779560527736, -0.09921954357684722, -0.012603967262037833, 0.0322231006040427
    ),
    "sym5": (
        0.027333068345077982, 0.029519490925774643, -0.039134249302383094, 0.1993975339773936,
        0.7234076904024206, 0.6339789634582119, 0.01660210576452232, -0.17532808990845047,
        -0.021101834024758855, 0.019538882735286728
    ),
    "sym6": (
        0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
        0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
        -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148
    ),
    "sym7": (
        0.002681814568257878, -0.0010473848886829163, -0.01263630340325193, 0.03051551316596357,
        0.0678926935013727, -0.049552834937127255, 0.017441255086855827, 0.5361019170917628,
        0.767764317003164, 0.2886296317515146, -0.14004724044296152, -0.10780823770381774,
        0.004010244871533663, 0.010268176708511255
    ),
    "sym8": (
        -0.0033824159510061256, -0.0005421323317911481, 0.03169508781149298, 0.007607487324917605,
        -0.1432942383508097, -0.061273359067658524, 0.4813596512583722, 0.7771857517005235,
        0.3644418948353314, -0.05194583810770904, -0.027219029917056003, 0.049137179673607506,
        0.003808752013890615, -0.01495225833704823, -0.0003029205147213668, 0.0018899503327594609
    ),
}
_DEC_LO["db1"] = _DEC_LO["haar"]

WAVELETS: tuple[str, ...] = tuple(sorted(_DEC_LO))
"""Names accepted by :class:`Wavelet` (pywt names of orthogonal wavelets)."""


def _filters(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(dec_lo, dec_hi)`` of wavelet ``name`` as Python floats (folded into the XLA graph)."""
    g = _DEC_LO[name]
    f = len(g)
    return g, tuple((-1.0) ** (k + 1) * g[f - 1 - k] for k in range(f))


def _max_levels(shape: tuple[int, ...], taps: int) -> int:
    """Largest ``L`` with ``n % 2**L == 0`` and ``n >> L >= taps - 1`` for every axis ``n``."""
    level = 0
    while all(n % 2 ** (level + 1) == 0 and n >> (level + 1) >= taps - 1 for n in shape):
        level += 1
    return level


def _validate(shape, wavelet, levels) -> tuple[tuple[int, ...], int]:
    """Check the arguments of :class:`Wavelet`; return the normalised shape and level count."""
    if not isinstance(wavelet, str) or wavelet not in _DEC_LO:
        raise InvalidDataError(f"unknown wavelet {wavelet!r}; expected one of "
                               f"{', '.join(WAVELETS)}")
    try:
        shape = tuple(int(n) for n in shape)
    except TypeError:
        raise ShapeError(f"Wavelet: shape must be a tuple of 2 or 3 sizes, got {shape!r}") from None
    if len(shape) not in (2, 3) or any(n < 1 for n in shape):
        raise ShapeError(f"Wavelet: shape must be 2 or 3 positive sizes, got {shape}")
    taps = len(_DEC_LO[wavelet])
    allowed = _max_levels(shape, taps)
    rule = (f"every axis n must be divisible by 2**levels and n / 2**levels >= {taps - 1} "
            f"(filter length {taps} of {wavelet!r} minus 1)")
    if levels is None:
        if allowed == 0:
            raise ShapeError(f"Wavelet: image shape {shape} allows no {wavelet!r} level: {rule}")
        return shape, min(allowed, MAX_DEFAULT_LEVELS)
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 1:
        raise InvalidDataError(f"Wavelet: levels must be an integer >= 1 or None, got {levels!r}")
    if levels > allowed:
        raise ShapeError(f"Wavelet: {levels} levels of {wavelet!r} impossible on image shape "
                         f"{shape} (at most {allowed}): {rule}")
    return shape, int(levels)


def _analysis(x: jax.Array, axis: int, g, h) -> jax.Array:
    """One periodized DWT level along ``axis`` (even length n): ``[lo (n/2) | hi (n/2)]``."""
    n, f = x.shape[axis], len(g)
    o = f // 2
    left, right = f - 1 - o, o - 1  # indices 2k + o - j run over [o - f + 1, n - 2 + o]
    parts = [lax.slice_in_dim(x, n - left, n, axis=axis)] if left else []
    parts += [x] + ([lax.slice_in_dim(x, 0, right, axis=axis)] if right else [])
    xp = lax.concatenate(parts, axis) if len(parts) > 1 else x
    lo = hi = None
    for j in range(f):
        start = o - j + left
        t = lax.slice_in_dim(xp, start, start + n - 1, 2, axis=axis)
        lo = g[j] * t if lo is None else lo + g[j] * t
        hi = h[j] * t if hi is None else hi + h[j] * t
    return lax.concatenate([lo, hi], axis)


def _synthesis(y: jax.Array, axis: int, g, h) -> jax.Array:
    """Transpose (= inverse) of :func:`_analysis` along ``axis``."""
    n, f = y.shape[axis], len(g)
    m, o = n // 2, f // 2
    lo, hi = lax.slice_in_dim(y, 0, m, axis=axis), lax.slice_in_dim(y, m, n, axis=axis)
    # x[2i + r] = sum over taps j with o - j = 2s + r of g[j] lo[i - s] + h[j] hi[i - s]
    shifts = [(o - j) // 2 for j in range(f)]
    left, right = max(max(shifts), 0), max(-min(shifts), 0)

    def wrap(a):
        parts = [lax.slice_in_dim(a, m - left, m, axis=axis)] if left else []
        parts += [a] + ([lax.slice_in_dim(a, 0, right, axis=axis)] if right else [])
        return lax.concatenate(parts, axis) if len(parts) > 1 else a

    lo, hi = wrap(lo), wrap(hi)
    phases = [None, None]
    for j in range(f):
        r, start = (o - j) % 2, left - shifts[j]
        t = (g[j] * lax.slice_in_dim(lo, start, start + m, axis=axis)
             + h[j] * lax.slice_in_dim(hi, start, start + m, axis=axis))
        phases[r] = t if phases[r] is None else phases[r] + t
    out = jnp.stack(phases, axis=axis + 1)  # (..., m, 2, ...) -> interleave even/odd samples
    return out.reshape(y.shape)


def _block(shape: tuple[int, ...], level: int) -> tuple:
    return (Ellipsis, *(slice(0, n >> level) for n in shape))


def _inexact(x) -> jax.Array:
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.inexact) else x.astype(jnp.float32)


# jitted so that eager calls compile once per (shape, wavelet, levels) instead of dispatching
# hundreds of small ops; under an outer jit they are inlined.
@partial(jax.jit, static_argnums=(1, 2, 3))
def _dwt(x: jax.Array, shape: tuple[int, ...], wavelet: str, levels: int) -> jax.Array:
    """Forward transform over the trailing ``len(shape)`` axes of ``x``, pyramid-packed."""
    g, h = _filters(wavelet)
    y = x
    for level in range(levels):
        index = _block(shape, level)
        block = y[index]
        for axis in range(x.ndim - len(shape), x.ndim):
            block = _analysis(block, axis, g, h)
        y = block if level == 0 else y.at[index].set(block)
    return y


@partial(jax.jit, static_argnums=(1, 2, 3))
def _idwt(y: jax.Array, shape: tuple[int, ...], wavelet: str, levels: int) -> jax.Array:
    """Inverse of :func:`_dwt` (its transpose)."""
    g, h = _filters(wavelet)
    for level in reversed(range(levels)):
        index = _block(shape, level)
        block = y[index]
        for axis in range(y.ndim - len(shape), y.ndim):
            block = _synthesis(block, axis, g, h)
        y = block if level == 0 else y.at[index].set(block)
    return y


@operator
class Wavelet(LinearOperator):
    """Orthonormal multi-level periodized DWT over all axes of ``shape_`` (2D or 3D).

    Args:
        shape_: image shape ``(ny, nx)`` or ``(nz, ny, nx)``.
        wavelet: an orthogonal wavelet of :data:`WAVELETS` (``"haar"``, ``"db1"``..``"db8"``,
            ``"sym4"``..``"sym8"``).
        levels: number of levels. Allowed: every axis ``n`` divisible by ``2**levels`` and
            ``n / 2**levels >= taps - 1`` (the coarsest block at least the filter length minus 1,
            pywt's ``dwt_max_level`` rule). ``None``: as many as allowed, at most 4.

    ``A(x)``: ``(..., *shape_) -> (..., *shape_)`` coefficients in the ``pywt.coeffs_to_array``
    layout (equal to ``pywt.wavedecn(x, wavelet, "periodization", levels)`` packed);
    ``A.adjoint`` is the inverse transform. Complex inputs transform real and imaginary parts
    alike; real inputs stay real. Construction validates (``Wavelet.create`` is the same with
    any sequence as shape): :class:`~physics.errors.ShapeError` for impossible shapes or levels,
    :class:`~physics.errors.InvalidDataError` for unknown wavelets or non-integer levels.
    """

    shape_: tuple[int, ...] = static()
    wavelet: str = static(default="db4")
    levels: int | None = static(default=None)

    def __post_init__(self):
        shape, levels = _validate(self.shape_, self.wavelet, self.levels)
        object.__setattr__(self, "shape_", shape)
        object.__setattr__(self, "levels", levels)

    @classmethod
    def create(cls, shape, wavelet: str = "db4", levels: int | None = None) -> "Wavelet":
        """Validated transform on images of shape ``shape`` (see the class docstring)."""
        return cls(tuple(shape) if np.iterable(shape) else shape, wavelet, levels)

    in_shape = out_shape = property(lambda self: tuple(self.shape_))

    @property
    def approx_shape(self) -> tuple[int, ...]:
        """Shape of the coarsest approximation block (at the low-index corner)."""
        return tuple(n >> self.levels for n in self.shape_)

    @property
    def detail_mask(self) -> np.ndarray:
        """Bool ``shape_``: False on the coarsest approximation block, True on the details."""
        mask = np.ones(self.shape_, bool)
        mask[_block(self.shape_, self.levels)] = False
        return mask

    def _forward(self, x):
        return _dwt(_inexact(x), self.shape_, self.wavelet, self.levels)

    def _adjoint(self, y):
        return _idwt(_inexact(y), self.shape_, self.wavelet, self.levels)

    def _normal(self, x):
        return x  # orthonormal: W^H W = I


def soft_threshold(x: jax.Array, threshold: float | jax.Array) -> jax.Array:
    """``x * max(|x| - t, 0) / |x|`` (0 where ``x == 0``), for real or complex ``x``.

    Shrinks magnitudes by ``t`` and keeps phases (signs); ``threshold`` (>= 0, real) is a scalar
    or an array broadcastable to ``x``. Gradients are finite everywhere (0 at ``x == 0``).
    """
    x = jnp.asarray(x)
    nonzero = x != 0
    mag = jnp.abs(jnp.where(nonzero, x, 1))  # safe: no NaN gradient at 0
    scale = jnp.where(nonzero, jnp.maximum(mag - threshold, 0) / mag, 0)
    return x * scale.astype(mag.dtype)


def _check_shift(shift, ndim: int):
    if isinstance(shift, (tuple, list)):
        if len(shift) != ndim:
            raise ShapeError(f"shift must have one entry per image axis ({ndim}), got {shift!r}")
        if all(isinstance(s, (int, np.integer)) for s in shift):
            return tuple(int(s) for s in shift), tuple(-int(s) for s in shift)
    shift = jnp.asarray(shift)
    if shift.shape != (ndim,) or not jnp.issubdtype(shift.dtype, jnp.integer):
        raise ShapeError(f"shift must be {ndim} integers, got {shift.dtype} array of shape "
                         f"{shift.shape}")
    return shift, -shift


def wavelet_prox(x: jax.Array, threshold: float | jax.Array, W: Wavelet, *,
                 shift: tuple[int, ...] | jax.Array | None = None) -> jax.Array:
    """Proximal operator of ``threshold * wavelet_l1(., W)``: ``W^H S_t(W x)``.

    ``S_t`` soft-thresholds the detail coefficients by ``threshold`` (a scalar or an array
    broadcastable to the coefficients ``(..., *W.shape_)``, e.g. ``(batch, 1, 1)`` per slice) and
    leaves the approximation block unchanged; since ``W`` is orthonormal this is the exact
    minimiser of ``0.5 ||p - x||^2 + threshold * wavelet_l1(p, W)``.

    ``shift`` (``len(W.shape_)`` ints, or a traced int array from :func:`random_shift`) applies
    the prox to ``roll(x, shift)`` over the image axes and rolls the result back: cycle spinning,
    the prox of the shifted (shift-variant) penalty ``wavelet_l1(roll(., shift), W)``.
    """
    x = jnp.asarray(x)
    axes = tuple(range(-len(W.shape_), 0))
    if shift is not None:
        shift, back = _check_shift(shift, len(W.shape_))
        x = jnp.roll(x, shift, axis=axes)
    c = W(x)
    c = jnp.where(W.detail_mask, soft_threshold(c, threshold), c)
    p = W.adjoint(c)
    return p if shift is None else jnp.roll(p, back, axis=axes)


def wavelet_l1(x: jax.Array, W: Wavelet) -> jax.Array:
    """Sum of ``|detail coefficients of W x|`` per image: real ``(...)`` for ``x (..., *shape_)``.

    The approximation block is excluded. Batch axes are kept (sum them for a total), so that
    ``vmap(wavelet_l1)`` equals the batched call. Gradient 0 at zero coefficients.
    """
    c = W(x)
    nonzero = c != 0
    mag = jnp.where(nonzero & W.detail_mask, jnp.abs(jnp.where(nonzero, c, 1)), 0)
    return jnp.sum(mag, axis=tuple(range(-len(W.shape_), 0)))


def random_shift(key: jax.Array, W: Wavelet) -> jax.Array:
    """Uniform random cycle-spinning shift: int32 ``(ndim,)`` in ``[0, 2**W.levels)`` per axis.

    Shifts by multiples of ``2**levels`` only permute coefficients within each band, so this range
    covers every distinct shifted transform.
    """
    return jax.random.randint(key, (len(W.shape_),), 0, 2 ** W.levels, dtype=jnp.int32)
