"""Coil-sensitivity estimation from the calibration (ACS) region: ESPIRiT and a direct estimate.

Supported: one slice ``kspace (coils, ny, nx)`` (2D) or one volume ``(coils, nz, ny, nx)`` (3D),
Cartesian, centred and orthonormal as in :mod:`physics.fft`. Maps are complex64
``(coils, *spatial)`` with ``sum_c |S_c|^2 = 1`` on the object (ESPIRiT: wherever not cropped;
ACS: wherever the low-resolution RSS is above its floor).

Calibration block. Along an axis of length ``N`` a centred block of size ``n`` covers the indices
``N//2 - n//2 .. N//2 - n//2 + n - 1`` (the k-space centre is index ``N//2``; an even block has one
more sample below the centre than above, as a centred crop of the centred FFT). Blocks are found by
:func:`calibration_region` and used the same way by :func:`espirit` and :func:`acs_maps`.

Phase. Maps are only defined up to a common phase per pixel; both estimators fix it as BART does:
the phase of the virtual coil ``p^H S(r)`` is removed, where ``p`` is the first principal component
(over coils) of the calibration data. The result is smooth wherever that virtual body coil sees
signal, unlike a phase taken from one physical coil, which may have a null inside the object.
"""

from __future__ import annotations

import itertools
import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from physics.errors import InvalidDataError, ShapeError
from physics.fft import ifftc

#: Automatically detected calibration blocks are capped at this size per axis (BART's and
#: SigPy's default is 24): a fully sampled 256 x 256 slice would otherwise give a Hankel matrix
#: of 63,001 rows. An explicit ``calib`` is never capped.
MAX_CALIB = 32
#: Pixels per chunk of the per-pixel eigen-problem (bounds memory: chunk x coils^2 x 8 bytes).
_CHUNK_PIXELS = 4096


# ------------------------------------------------------------------------------------------------
# calibration region
# ------------------------------------------------------------------------------------------------
def calibration_region(sampled: np.ndarray, shape: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """Size of the largest fully sampled block centred on the k-space centre, per spatial axis.

    Args:
        sampled: boolean (or 0/1, or k-space whose non-zeros are the samples) pattern that
            broadcasts against ``shape``: a fastMRI column mask ``(nx,)``, a 2D mask ``(ny, nx)``,
            ``(nz, ny, nx)`` ...
        shape: the spatial shape (default ``sampled.shape``). Axes along which ``sampled`` has
            length 1 are fully sampled, so a column mask gives ``ny`` rows.

    Returns:
        ``(n_0, n_1, ...)``, one size per axis of ``shape``.

    The block grows from ``(1, ..., 1)`` at the centre index ``N//2``: each round tries to add one
    sample to every axis in turn, keeping a step if the enlarged block is still fully sampled,
    until no axis can grow. Going from size ``n`` to ``n + 1`` adds the sample above the block
    when ``n`` is even and below it when ``n`` is odd (the centred-crop rule of the module
    docstring), so the block is symmetric for odd sizes and one sample longer below the centre
    for even sizes. A block shifted the other way is reported one shorter.

    Raises:
        ShapeError: ``sampled`` does not broadcast against ``shape``.
        InvalidDataError: the k-space centre itself is not sampled.
    """
    sampled = np.asarray(sampled)
    shape = tuple(int(n) for n in (sampled.shape if shape is None else shape))
    try:
        full = np.broadcast_to(sampled != 0, shape)
    except ValueError:
        raise ShapeError(
            f"calibration_region: sampling pattern of shape {sampled.shape} does not broadcast "
            f"against the spatial shape {shape}"
        ) from None
    centre = tuple(n // 2 for n in shape)
    if full.size == 0 or not full[centre]:
        raise InvalidDataError(
            f"calibration_region: the k-space centre {centre} is not sampled, so there is no "
            f"calibration region (pattern of shape {sampled.shape}, spatial shape {shape})"
        )

    def block(size):
        return full[tuple(slice(c - s // 2, c - s // 2 + s) for c, s in zip(centre, size))]

    size = [1] * len(shape)
    grown = True
    while grown:
        grown = False
        for axis, n in enumerate(shape):
            if size[axis] < n:
                trial = size.copy()
                trial[axis] += 1
                if centre[axis] - trial[axis] // 2 >= 0 and block(trial).all():
                    size, grown = trial, True
    return tuple(size)


def _calibration_data(kspace, calib, mask, max_calib: int | None, who: str):
    """Validate ``kspace`` and return its centred calibration block ``(coils, *calib)``.

    Concrete input is checked for NaN/Inf and an all-zero block; traced input (inside ``jit`` or
    ``vmap``) cannot be, and needs ``calib`` or a concrete ``mask`` to place the block.
    """
    traced = isinstance(kspace, jax.core.Tracer)
    if traced:
        kspace = jnp.asarray(kspace, jnp.complex64)
    else:
        kspace = np.asarray(kspace).astype(np.complex64, copy=False)
    if kspace.ndim not in (3, 4):
        raise ShapeError(f"{who}: kspace must be (coils, ny, nx) or (coils, nz, ny, nx), got {kspace.shape}")
    if not traced and not np.all(np.isfinite(kspace)):
        raise InvalidDataError(f"{who}: kspace contains NaN or Inf values")
    spatial = tuple(kspace.shape[1:])
    if calib is None:
        if mask is None and traced:
            raise InvalidDataError(f"{who}: inside jit/vmap the calibration block cannot be found "
                                   "from the data; pass calib or a concrete mask")
        sampled = np.any(kspace != 0, axis=0) if mask is None else np.asarray(mask)
        calib = calibration_region(sampled, spatial)
        if max_calib is not None:
            calib = tuple(min(n, int(max_calib)) for n in calib)
    calib = tuple(int(n) for n in np.atleast_1d(calib))
    if len(calib) != len(spatial) or any(not 1 <= n <= s for n, s in zip(calib, spatial)):
        raise ShapeError(f"{who}: calib {calib} must give one size in [1, N] per spatial axis {spatial}")
    index = tuple(slice(s // 2 - n // 2, s // 2 - n // 2 + n) for n, s in zip(calib, spatial))
    block = kspace[(slice(None),) + index]
    if not traced and not np.any(block != 0):
        raise InvalidDataError(f"{who}: the calibration block {calib} of k-space is all zeros")
    return jnp.asarray(block), spatial


def _virtual_coil(calib_data: jax.Array) -> jax.Array:
    """First principal component over coils of the calibration data, ``(coils,)``."""
    x = calib_data.reshape(calib_data.shape[0], -1)
    _, vectors = jnp.linalg.eigh(x @ x.conj().T)
    p = vectors[:, -1]
    big = p[jnp.argmax(jnp.abs(p))]
    return p * (jnp.conj(big) / jnp.abs(big))  # deterministic global phase


def _remove_phase(maps: jax.Array, p: jax.Array) -> jax.Array:
    """Multiply ``maps (coils, ...)`` by the conjugate phase of the virtual coil ``p^H maps``."""
    z = jnp.tensordot(jnp.conj(p), maps, axes=1)
    mag = jnp.abs(z)
    return maps * jnp.where(mag > 0, jnp.conj(z) / jnp.where(mag > 0, mag, 1), 1)


# ------------------------------------------------------------------------------------------------
# ESPIRiT
# ------------------------------------------------------------------------------------------------
def _hankel(calib_data: jax.Array, kernel: int) -> jax.Array:
    """Calibration matrix: one row per kernel-sized patch, columns ordered (coil, kernel offset)."""
    coils, *cs = calib_data.shape
    nblk = [n - kernel + 1 for n in cs]
    cols = [
        calib_data[(slice(None),) + tuple(slice(j, j + b) for j, b in zip(offset, nblk))]
        for offset in itertools.product(range(kernel), repeat=len(cs))
    ]
    a = jnp.stack(cols, axis=-1)  # (coils, *nblk, kernel^d)
    a = jnp.moveaxis(a.reshape(coils, -1, kernel ** len(cs)), 0, 1)
    return a.reshape(a.shape[0], -1)


def _offset_index(kernel: int, ndim: int) -> np.ndarray:
    """Flat index of ``j - j'`` (shifted by ``kernel - 1``) in the ``(2k-1)^d`` grid for all pairs."""
    offsets = np.array(list(itertools.product(range(kernel), repeat=ndim)))  # (K, d)
    diff = offsets[:, None, :] - offsets[None, :, :] + kernel - 1  # (K, K, d)
    return np.ravel_multi_index(tuple(np.moveaxis(diff, -1, 0)), (2 * kernel - 1,) * ndim).ravel()


def _normalise(v, *others):
    scale = jax.lax.rsqrt(jnp.maximum(jnp.sum(jnp.abs(v) ** 2, -1, keepdims=True), 1e-30))
    return (v * scale,) + tuple(o * scale for o in others)


def _dominant(matvec, v, iterations: int, bound: float):
    """Dominant eigenvector of a Hermitian ``G`` with spectrum in ``[0, 1]``, batched ``(..., coils)``.

    Chebyshev-accelerated power iteration (``iterations`` products with ``G``): the polynomial
    ``T_m((2 G - bound) / bound)`` is at most 1 on the unwanted part ``[0, bound]`` of the spectrum
    and grows fastest at the top eigenvalue, so components with eigenvalue <= ``bound`` decay as
    ``1 / (x + sqrt(x^2 - 1))`` per step with ``x = 2 lambda_1 / bound - 1`` (0.52 at
    ``lambda_1 = 0.95``, ``bound = 0.855``), against ``lambda_2 / lambda_1`` for plain power
    iteration; eigenvalues between ``bound`` and ``lambda_1`` still converge, more slowly.
    ``bound = 0`` gives plain power iteration. Returns the unit vector.
    """
    v = _normalise(v)[0]
    if bound <= 0:
        return jax.lax.fori_loop(0, iterations, lambda _, x: _normalise(matvec(x))[0], v)

    def shifted(x):  # (2 G - bound) / bound, mapping [0, bound] onto [-1, 1]
        return (2.0 / bound) * matvec(x) - x

    def step(_, state):
        prev, cur = state
        nxt = 2.0 * shifted(cur) - prev
        nxt, cur = _normalise(nxt, cur)  # one common scale keeps the three-term recurrence valid
        return cur, nxt

    _, v = jax.lax.fori_loop(0, iterations - 1, step, (v, shifted(v)))
    return _normalise(v)[0]


@partial(jax.jit, static_argnames=("shape", "kernel", "threshold", "crop", "iterations"))
def _espirit(calib_data, *, shape, kernel, threshold, crop, iterations):
    coils, ndim = calib_data.shape[0], len(shape)
    calib_data = calib_data / jnp.max(jnp.abs(calib_data))  # scale invariance in float32
    # Signal subspace of the calibration matrix A = U diag(s) V^H: patches lie in span of the rows
    # h_i of V^H with s_i >= threshold * s_max; P = sum_i h_i h_i^H, indexed ((c, j), (c', j')).
    _, s, vh = jnp.linalg.svd(_hankel(calib_data, kernel), full_matrices=False)
    keep = (s >= threshold * s[0]).astype(vh.dtype)
    P = (vh * keep[:, None]).T @ vh.conj()
    # Image-domain operator G(r) = (1/K) sum_i H_i(r) H_i(r)^H, H_i = unnormalised inverse DFT of
    # h_i; G_cc'(r) = sum_d Kd_cc'[d] exp(2 pi i d.r / N), Kd[d] = (1/K) sum_{j - j' = d} P.
    K, L = kernel ** ndim, 2 * kernel - 1
    P = P.reshape(coils, K, coils, K).transpose(1, 3, 0, 2).reshape(K * K, coils, coils)
    Kd = jax.ops.segment_sum(P, _offset_index(kernel, ndim), num_segments=L ** ndim) / K
    Kd = Kd.reshape((L,) * ndim + (coils, coils))
    # exp(2 pi i d (r - N//2) / N): pixel index r sits at position r - N//2 of the centred image.
    E = [jnp.exp(2j * jnp.pi * np.outer(np.arange(L) - kernel + 1, np.arange(n) - n // 2) / n)
         .astype(jnp.complex64) for n in shape]
    Kd = Kd.astype(jnp.complex64)

    # Start vectors: the low-resolution coil images, a spatially smooth guess that already points
    # along the sensitivities. Where two eigenvalues are both ~1 (the object wraps around the FOV)
    # power iteration keeps the start's mix, so a smooth start gives smooth, data-consistent maps.
    lowres = jnp.moveaxis(_lowres_images(calib_data, shape), 0, -1)  # (*shape, coils)

    def rows(i):  # G for the hyper-rows calib[i] (first spatial index i), then its eigenvector
        g = jnp.tensordot(E[0][:, i], Kd, axes=(0, 0))  # (L, ..., coils, coils)
        for e in E[1:]:
            g = jnp.moveaxis(jnp.tensordot(e, g, axes=(0, 0)), 0, -3)  # contract d, append r
        g = g.reshape(-1, coils, coils)  # (pixels, coils, coils)
        diag = jnp.real(jnp.diagonal(g, axis1=-2, axis2=-1))
        column = jnp.take_along_axis(g, jnp.argmax(diag, -1)[:, None, None], axis=-1)[..., 0]
        start = _normalise(lowres[i].reshape(-1, coils))[0]
        v = start + 1e-3 * _normalise(column)[0]  # the column only where the low-res image is 0
        v = _dominant(lambda x: jnp.sum(g * x[:, None, :], axis=-1), v, iterations, 0.9 * crop)
        w = jnp.sum(g * v[:, None, :], axis=-1)
        eig = jnp.sqrt(jnp.sum(jnp.abs(w) ** 2, -1))  # ||G v|| with ||v|| = 1
        v = w / jnp.maximum(eig, 1e-30)[:, None]
        return v.reshape(shape[1:] + (coils,)), eig.reshape(shape[1:])

    per = math.prod(shape[1:])
    maps, eig = jax.lax.map(rows, jnp.arange(shape[0]), batch_size=max(1, _CHUNK_PIXELS // per))
    maps = jnp.moveaxis(maps, -1, 0)
    maps = _remove_phase(maps, _virtual_coil(calib_data))
    return (maps * (eig >= crop)).astype(jnp.complex64), eig


def kernel_width(calib: tuple[int, ...], shape: tuple[int, ...], largest: int = 6) -> int:
    """ESPIRiT kernel width for a calibration block ``calib`` of an image of shape ``shape``.

    ``min(largest, min(shape) // 16, min(calib) - 4)``, at least 3: the maps' k-space support
    (``2 width - 1``) stays a small fraction of k-space, since sensitivities are smooth, and the
    narrowest side of the block holds at least five kernel positions. 256-pixel images with a
    10-line block keep BART's 6; a 64-pixel image, or a 6-line block, gets 3-4, where 6 fits
    noise and the eigenvalues collapse.
    """
    return max(3, min(largest, min(shape) // 16, min(calib) - 4))


def espirit(kspace, *, calib: tuple[int, ...] | None = None, kernel: int | None = 6,
            threshold: float = 0.02, crop: float = 0.95, mask=None,
            max_calib: int | None = MAX_CALIB, iterations: int = 40,
            return_eigenvalues: bool = False) -> jax.Array | tuple[jax.Array, jax.Array]:
    """ESPIRiT coil sensitivities (Uecker et al., MRM 71:990, 2014), one set of maps.

    1. Calibration matrix ``A``: every ``kernel^d`` patch of the calibration block, all coils
       (rows: patches; columns: coil x kernel offset); SVD ``A = U diag(s) V^H``.
    2. Keep the rows ``h_i`` of ``V^H`` with ``s_i >= threshold * max(s)`` (the signal subspace).
    3. Per pixel, ``G(r) = (N/K) sum_i w_i(r) w_i(r)^H`` with ``w_i = ifftc(zero-padded h_i)``,
       ``K = kernel^d`` (as BART ``ecalib`` and SigPy ``EspiritCalib``). ``G`` is computed
       exactly from its ``(2 kernel - 1)^d`` k-space kernel by a separable DFT, chunk by chunk,
       never as a full ``(pixels, coils, coils)`` array.
    4. The maps are the dominant eigenvector of ``G(r)`` (eigenvalue ~1 inside the object), by
       Chebyshev-accelerated power iteration (unwanted spectrum ``[0, 0.9 crop]``; plain power
       iteration when ``crop = 0``) started from the low-resolution coil images (smooth, and
       consistent with the data where the eigenvalue is degenerate because the object wraps);
       they are zeroed where the eigenvalue ``||G v||`` is below ``crop``.
    5. Phase relative to the first principal component of the calibration data (module docstring).

    Args:
        kspace: one slice ``(coils, ny, nx)`` or volume ``(coils, nz, ny, nx)``, centred,
            possibly undersampled (zeros where not sampled). Any scale: the calibration block is
            normalised first.
        calib: calibration block size per spatial axis (used as given); ``None``: found with
            :func:`calibration_region` from ``mask``, or from the non-zeros of ``kspace``, and
            capped at ``max_calib`` per axis.
        kernel: kernel width (per axis); the calibration block must be at least this large.
            ``None`` picks it from the block with :func:`kernel_width` (robust for small blocks).
        threshold: relative singular-value threshold, in ``(0, 1]``.
        crop: eigenvalue threshold in ``[0, 1)``; maps are zero where the eigenvalue is lower.
        mask: sampling pattern broadcastable to the spatial shape (see :func:`calibration_region`).
        max_calib: cap of an automatically found calibration block (``None``: no cap).
        iterations: products with ``G`` per pixel (Chebyshev-accelerated power iteration); 40
            matches SigPy's 100 plain power iterations on the real 12-channel brain.
        return_eigenvalues: also return the dominant eigenvalue per pixel (float32 ``spatial``;
            converged where it is above ``0.9 crop``, an underestimate elsewhere).

    Returns:
        complex64 ``(coils, *spatial)``, or ``(maps, eigenvalues)``.

    Works under ``jax.vmap``/``jit`` over slices when ``calib`` (or a concrete ``mask``) is given;
    the NaN/Inf and all-zero checks then cannot run. 3D works the same way but the calibration
    matrix has ``coils * kernel^3`` columns (2592 for 12 coils): use a smaller kernel there.

    Raises:
        ShapeError: bad ``kspace`` rank or ``calib`` length/size.
        InvalidDataError: NaN/Inf data, unsampled centre, calibration block smaller than the
            kernel or all zero, bad ``kernel``/``threshold``/``crop``/``iterations``.
    """
    if kernel is not None and (int(kernel) != kernel or kernel < 1):
        raise InvalidDataError(f"espirit: kernel must be a positive integer, got {kernel}")
    if not 0.0 < threshold <= 1.0:
        raise InvalidDataError(f"espirit: threshold must be in (0, 1], got {threshold}")
    if not 0.0 <= crop < 1.0:
        raise InvalidDataError(f"espirit: crop must be in [0, 1), got {crop}")
    if int(iterations) != iterations or iterations < 1:
        raise InvalidDataError(f"espirit: iterations must be a positive integer, got {iterations}")
    block, spatial = _calibration_data(kspace, calib, mask, max_calib, "espirit")
    if kernel is None:
        kernel = kernel_width(tuple(block.shape[1:]), spatial)
    if any(n < kernel for n in block.shape[1:]):
        raise InvalidDataError(
            f"espirit: calibration block {block.shape[1:]} is smaller than the kernel width "
            f"{kernel} along some axis; use a smaller kernel or acquire a larger calibration region"
        )
    maps, eig = _espirit(block, shape=spatial, kernel=int(kernel),
                         threshold=float(threshold), crop=float(crop), iterations=int(iterations))
    return (maps, eig) if return_eigenvalues else maps


# ------------------------------------------------------------------------------------------------
# direct (ACS) estimate
# ------------------------------------------------------------------------------------------------
def _hann(n: int) -> np.ndarray:
    """Hann window of ``n`` samples peaking (1) at index ``n//2``: ``cos^2(pi d / (n + 1))``."""
    return np.cos(np.pi * (np.arange(n) - n // 2) / (n + 1)) ** 2


def _lowres_images(calib_data: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Hann-windowed calibration block, zero-padded to ``shape``, inverse FFT'd: ``(coils, *shape)``."""
    ndim = len(shape)
    window = 1.0
    for axis, n in enumerate(calib_data.shape[1:]):
        window = window * _hann(n).reshape((n,) + (1,) * (ndim - 1 - axis))
    data = calib_data / jnp.max(jnp.abs(calib_data)) * window.astype(np.float32)
    pad = [(0, 0)] + [(s // 2 - n // 2, s - s // 2 - (n - n // 2)) for n, s in zip(data.shape[1:], shape)]
    return ifftc(jnp.pad(data, pad), ndim)


@partial(jax.jit, static_argnames=("shape", "floor"))
def _acs(calib_data, *, shape, floor):
    images = _lowres_images(calib_data, shape)
    rss = jnp.sqrt(jnp.sum(jnp.abs(images) ** 2, axis=0))
    maps = images / jnp.maximum(rss, floor * jnp.max(rss))
    return _remove_phase(maps, _virtual_coil(calib_data)).astype(jnp.complex64)


def acs_maps(kspace, *, calib: tuple[int, ...] | None = None, mask=None,
             max_calib: int | None = MAX_CALIB, floor: float = 0.02) -> jax.Array:
    """Direct sensitivity estimate: low-resolution coil images over their root-sum-of-squares.

    The centred calibration block (found as in :func:`espirit`) is multiplied by a separable Hann
    window ``cos^2(pi d / (n + 1))`` (``d``: offset from the block centre, ``n``: block size, so
    the window is 1 at the k-space centre and > 0 on the whole block), zero-padded, inverse
    FFT'd, and each coil image is divided by ``max(rss, floor * max(rss))``: the maps have
    ``sum_c |S_c|^2 = 1`` wherever the low-resolution RSS exceeds ``floor`` times its maximum and
    stay bounded (smaller) in the background. Phase as in the module docstring.

    Args:
        kspace: ``(coils, ny, nx)`` or ``(coils, nz, ny, nx)``, centred, possibly undersampled.
        calib, mask, max_calib: calibration block as in :func:`espirit`.
        floor: relative RSS floor in ``(0, 1)``.

    Returns:
        complex64 ``(coils, *spatial)``.

    Raises:
        ShapeError, InvalidDataError: as :func:`espirit` (no kernel-size condition).
    """
    if not 0.0 < floor < 1.0:
        raise InvalidDataError(f"acs_maps: floor must be in (0, 1), got {floor}")
    block, spatial = _calibration_data(kspace, calib, mask, max_calib, "acs_maps")
    return _acs(block, shape=spatial, floor=float(floor))
