"""Reconstruction of recon-engine: solvers, learned models, the pipeline, metrics, files, the CLI.

Solvers: :mod:`recon.cg` (CG, CGLS), :mod:`recon.fista`, :mod:`recon.pdhg`, :mod:`recon.admm`,
:mod:`recon.power`; priors :mod:`recon.wavelet`, :mod:`recon.tv`; methods :mod:`recon.sense`,
:mod:`recon.cs`, :mod:`recon.ct` and :mod:`recon.fbp` (CT), :mod:`recon.pnp` (plug-and-play,
data consistency), :mod:`recon.trust` (data-consistency report). Learned: :mod:`recon.nets`,
:mod:`recon.unrolled`, :mod:`recon.gan`, :mod:`recon.train`, :mod:`recon.data`,
:mod:`recon.learned`. Around them: :mod:`recon.pipeline` (raw data to images),
:mod:`recon.metrics` (fastMRI NMSE/PSNR/SSIM), :mod:`recon.io` and :mod:`recon.ismrmrd` (files),
:mod:`recon.cli` (the command line), :mod:`recon.demo`, :mod:`recon.figures`, :mod:`recon.progress`.
"""
