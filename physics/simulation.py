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


class RadialSimulation(NamedTuple):
    """A simulated radial acquisition: ``kspace`` complex64 (slices, coils, spokes, samples),
    ``trajectory`` float32 (spokes, samples, 2) in cycles/FOV, the true ``image`` (slices, n, n),
    ``maps`` (slices, coils, n, n), ``reference`` = noise-free RSS coil image (slices, n, n) and
    the noise ``sigma``."""

    kspace: np.ndarray
    trajectory: np.ndarray
    image: np.ndarray
    maps: np.ndarray
    reference: np.ndarray
    sigma: float


def simulate_radial(size: int = 256, coils: int = 8, slices: int = 1, *, spokes: int = 64,
                    samples: int | None = None, golden: bool = True, snr_db: float = 30.0,
                    seed: int = 0) -> RadialSimulation:
    """The phantom and coils of :func:`simulate_multicoil` sampled along radial spokes
    (:func:`physics.trajectory.radial_2d`, ``samples`` per spoke, default ``2 size``: 2x readout
    oversampling) by the NUFFT, with complex Gaussian noise of the Cartesian simulation's
    ``sigma`` per sample (the same receiver noise; ``snr_db`` is that of the Cartesian scan)."""
    from physics.noncartesian import NonCartesianMRI
    from physics.trajectory import radial_2d

    cart = simulate_multicoil(size, coils, slices, snr_db=snr_db, seed=seed)
    trajectory = radial_2d(spokes, samples or 2 * size, image_shape=(size, size), golden=golden)
    clean = np.stack([np.asarray(NonCartesianMRI(m, trajectory)(x)) for m, x in zip(cart.maps, cart.image)])
    rng = np.random.default_rng(seed)
    noise = cart.sigma / np.sqrt(2) * (rng.standard_normal(clean.shape) + 1j * rng.standard_normal(clean.shape))
    reference = np.sqrt(np.sum(np.abs(cart.maps * cart.image[:, None]) ** 2, axis=1))
    return RadialSimulation((clean + noise).astype(np.complex64), trajectory, cart.image, cart.maps,
                            reference.astype(np.float32), cart.sigma)
