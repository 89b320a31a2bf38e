"""The one error hierarchy of recon-engine.

Every error raised on bad input is a :class:`ReconError`, so that embedding code can catch one
type and the command line can print one line and exit with status 2.
"""

from __future__ import annotations


class ReconError(Exception):
    """Base class of every error recon-engine raises on bad input."""


class ShapeError(ReconError, ValueError):
    """An array has the wrong shape or rank for the operation (both shapes are in the message)."""


class InvalidDataError(ReconError, ValueError):
    """Values are unusable: NaN/Inf, no slices, no calibration region, bad parameters."""


class FileFormatError(ReconError):
    """An input file is missing, not HDF5, truncated, or lacks a required dataset."""


class OutputError(ReconError):
    """An output cannot be written (unwritable folder, output path equal to the input)."""
