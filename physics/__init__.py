"""Forward models of recon-engine: JAX linear operators for MRI (and, later, CT)."""

from physics.errors import FileFormatError, InvalidDataError, OutputError, ReconError, ShapeError
from physics.fft import FFT, fftc, ifftc
from physics.linop import Adjoint, Composed, Identity, LinearOperator, adjoint_error, operator, static
from physics.mri import CartesianMRI, MultiCoilMRI

__all__ = [
    "Adjoint", "CartesianMRI", "Composed", "FFT", "FileFormatError", "Identity",
    "InvalidDataError", "LinearOperator", "MultiCoilMRI", "OutputError", "ReconError",
    "ShapeError", "adjoint_error", "fftc", "ifftc", "operator", "static",
]
