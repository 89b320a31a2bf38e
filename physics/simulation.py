"""Multi-coil k-space from a phantom: ``y = F S x + n`` with birdcage maps and complex noise."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from physics.errors import InvalidDataError
from physics.fft import fftc, ifftc
from physics.noise import add_noise
from physics.phantom import birdcage_maps, brain_phantom


class Simulation(NamedTuple):
    """Fully sampled simulated acquisition.

    kspace: complex64 (slices, coils, ny, nx), centred orthonormal k-space with noise.
    image: complex64 (slices, ny, nx), the noise-free object.
    maps: complex64 (slices, coils, ny, nx), sum_c |S_c|^2 = 1.
    reference: float32 (slices, ny, nx), root-sum-of-squares of the noisy coil images (fastMRI's
        ``reconstruction_rss``).
    sigma: noise standard deviation per complex k-space sample.
    """

    kspace: np.ndarray
    image: np.ndarray
    maps: np.ndarray
    reference: np.ndarray
    sigma: float


def simulate_multicoil(size: int = 256, coils: int = 8, slices: int = 1, *, snr_db: float = 30.0,
                       seed: int = 0) -> Simulation:
    """Simulate ``slices`` axial slices of the brain phantom seen by ``coils`` birdcage coils.

    For several slices the phantom is 3D and the slices are taken from its central half, with 3D
    birdcage maps; the noise level follows ``snr_db`` (see :func:`physics.noise.add_noise`).
    """
    if size < 8 or coils < 1 or slices < 1:
        raise InvalidDataError(f"need size >= 8, coils >= 1, slices >= 1; got {size}, {coils}, {slices}")
    if slices == 1:
        image = brain_phantom((size, size), seed=seed)[None]
        maps = birdcage_maps((coils, size, size))[None]
    else:
        nz = 2 * slices
        keep = slice(slices // 2, slices // 2 + slices)
        image = brain_phantom((nz, size, size), seed=seed)[keep]
        rings = next(r for r in (4, 3, 2, 1) if coils % r == 0)
        maps = np.moveaxis(birdcage_maps((coils, nz, size, size), rings=rings)[:, keep], 0, 1)
    clean = np.asarray(fftc(maps * image[:, None]))
    kspace, sigma = add_noise(clean, snr_db, seed=seed)
    reference = np.sqrt(np.sum(np.abs(np.asarray(ifftc(kspace))) ** 2, axis=1))
    return Simulation(np.asarray(kspace, np.complex64), image.astype(np.complex64),
                      maps.astype(np.complex64), reference.astype(np.float32), float(sigma))
