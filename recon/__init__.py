"""Reconstruction of recon-engine: solvers, the pipeline, metrics, file I/O and the ``recon`` CLI.

Modules: :mod:`recon.cg` (conjugate gradient), :mod:`recon.sense` (zero-filled RSS, CG-SENSE),
:mod:`recon.pipeline` (raw k-space to images), :mod:`recon.metrics` (fastMRI NMSE/PSNR/SSIM),
:mod:`recon.io` and :mod:`recon.ismrmrd` (files), :mod:`recon.cli` (the command line).
"""
