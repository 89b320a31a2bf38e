"""Forward models of recon-engine: JAX linear operators and the physics around them.

Operators (:mod:`physics.linop`, :mod:`physics.fft`, :mod:`physics.mri`, non-Cartesian MRI in
:mod:`physics.nufft` / :mod:`physics.noncartesian` with :mod:`physics.trajectory`, CT in
:mod:`physics.ct` with geometries in :mod:`physics.ct_geometry`), coil sensitivities
(:mod:`physics.coil_maps`), sampling patterns (:mod:`physics.sampling`), noise
(:mod:`physics.noise`), low-dose CT (:mod:`physics.dose`), phantoms and simulation (:mod:`physics.phantom`,
:mod:`physics.simulation`). Importing it changes no global state.
"""

from physics.coil_maps import acs_maps, calibration_region, espirit, kernel_width
from physics.ct import ConeBeamCT, FanBeamCT, ParallelBeamCT, ct_operator
from physics.ct_geometry import CTGeometry, cone_beam, fan_beam, parallel_beam
from physics.ct_phantom import anatomical_phantom, ellipse_sinogram, shepp_logan_ct
from physics.dose import log_transform, low_dose_sinogram, photon_counts
from physics.errors import FileFormatError, InvalidDataError, OutputError, ReconError, ShapeError
from physics.fft import FFT, fftc, ifftc
from physics.linop import (Adjoint, Composed, Identity, LinearOperator, Scaled, adjoint_error, operator,
                           static)
from physics.mri import CartesianMRI, MultiCoilMRI
from physics.noise import add_noise, noise_covariance, prewhiten, whitening_matrix
from physics.noncartesian import NonCartesianMRI, noncartesian_maps
from physics.nufft import NUFFT
from physics.trajectory import kooshball_3d, pipe_menon_dcf, radial_2d, ramp_dcf, spiral_2d, stack_of_stars
from physics.phantom import birdcage_maps, brain_phantom, shepp_logan
from physics.sampling import acceleration, equispaced_mask, poisson_disc_mask, random_mask
from physics.simulation import Simulation, simulate_multicoil

__all__ = [
    "CTGeometry", "ConeBeamCT", "FanBeamCT", "ParallelBeamCT", "anatomical_phantom", "cone_beam",
    "ct_operator", "ellipse_sinogram", "fan_beam", "log_transform", "low_dose_sinogram",
    "parallel_beam", "photon_counts", "shepp_logan_ct", "NUFFT", "NonCartesianMRI", "kooshball_3d",
    "noncartesian_maps", "pipe_menon_dcf", "radial_2d", "ramp_dcf", "spiral_2d", "stack_of_stars",
    "FFT", "Adjoint", "CartesianMRI", "Composed", "FileFormatError", "Identity",
    "InvalidDataError", "LinearOperator", "MultiCoilMRI", "OutputError", "ReconError",
    "Scaled", "ShapeError", "Simulation", "acceleration", "acs_maps", "add_noise", "adjoint_error",
    "birdcage_maps", "brain_phantom", "calibration_region", "equispaced_mask", "espirit", "fftc",
    "ifftc", "kernel_width", "noise_covariance", "operator", "poisson_disc_mask", "prewhiten",
    "random_mask", "shepp_logan", "simulate_multicoil", "static", "whitening_matrix",
]
