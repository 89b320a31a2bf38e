"""Noise power spectrum (NPS) of images: how much noise, and of what texture.

For noise-only regions ``n_i`` (an image minus its noise-free truth, or the difference of two
repeated scans divided by sqrt 2), each ``ny x nx`` with pixels of ``dy x dx`` mm, the 2D NPS is
(ICRU Report 87; Boedeker et al., Med. Phys. 2007)::

    NPS(fy, fx) = dy dx / (ny nx) * mean_i |DFT(n_i - mean(n_i))|^2      [value^2 mm^2]

on the DFT's frequency grid in cycles/mm. Its integral over frequency is the noise variance; its
radial average against |f| shows the texture: a pixel-wise-smoothed image (e.g. a denoiser trained
with a pixel loss) has its noise power pushed to low frequencies (a lower ``mean_frequency``, a
"plastic" look), while normal-dose noise spreads to high frequencies.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from physics.errors import InvalidDataError, ShapeError

__all__ = ["NoisePowerSpectrum", "noise_power_spectrum"]


class NoisePowerSpectrum(NamedTuple):
    """``nps2d`` (ny, nx), centred (zero frequency at ``[ny // 2, nx // 2]``), value^2 mm^2;
    ``frequencies`` (bins,) cycles/mm, the centres of the radial bins of width ``1 / (max(ny, nx)
    * pixel)`` up to the Nyquist frequency; ``radial`` (bins,) the mean of ``nps2d`` in each ring;
    ``variance`` the integral of ``nps2d`` (= the mean per-pixel noise variance, Parseval);
    ``mean_frequency`` the NPS-weighted mean of |f| in cycles/mm."""

    nps2d: np.ndarray
    frequencies: np.ndarray
    radial: np.ndarray
    variance: float
    mean_frequency: float


def noise_power_spectrum(noise: np.ndarray, pixel_size: float | tuple[float, float] = 1.0) -> NoisePowerSpectrum:
    """The NPS of noise-only regions ``noise`` (n, ny, nx) or (ny, nx), real, with pixels of
    ``pixel_size`` mm (one number or ``(dy, dx)``); each region's mean is removed first.

    Raises:
        ShapeError: not 2D or 3D, or regions smaller than 4 x 4.
        InvalidDataError: complex or non-finite values, a non-positive pixel size.
    """
    n = np.asarray(noise)
    if n.ndim == 2:
        n = n[None]
    if n.ndim != 3 or min(n.shape[1:]) < 4:
        raise ShapeError(f"noise_power_spectrum: expected regions (n, ny, nx) or (ny, nx) of at least "
                         f"4 x 4 pixels, got {np.shape(noise)}")
    if np.iscomplexobj(n) or not np.all(np.isfinite(n)):
        raise InvalidDataError("noise_power_spectrum: the noise must be real and finite")
    dy, dx = (pixel_size, pixel_size) if np.isscalar(pixel_size) else pixel_size
    if not (dy > 0 and dx > 0):
        raise InvalidDataError(f"noise_power_spectrum: pixel size must be > 0 mm, got {pixel_size!r}")
    _, ny, nx = n.shape
    n = n.astype(np.float64) - n.mean(axis=(1, 2), keepdims=True)
    power = np.mean(np.abs(np.fft.fft2(n)) ** 2, axis=0)
    nps2d = np.fft.fftshift(power) * dy * dx / (ny * nx)
    fy = np.fft.fftshift(np.fft.fftfreq(ny, dy))
    fx = np.fft.fftshift(np.fft.fftfreq(nx, dx))
    radius = np.hypot(*np.meshgrid(fy, fx, indexing="ij"))
    df = 1.0 / (max(ny, nx) * max(dy, dx))
    nyquist = 0.5 / max(dy, dx)
    bins = np.arange(int(round(nyquist / df)) + 1)
    index = np.rint(radius / df).astype(int)
    inside = index <= bins[-1]
    counts = np.bincount(index[inside], minlength=len(bins))
    sums = np.bincount(index[inside], weights=nps2d[inside], minlength=len(bins))
    radial = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
    cell = 1.0 / (ny * dy * nx * dx)  # area of one frequency sample, (cycles/mm)^2
    total = nps2d.sum()
    return NoisePowerSpectrum(nps2d, bins * df, radial, float(total * cell),
                              float((radius * nps2d).sum() / total) if total > 0 else 0.0)
