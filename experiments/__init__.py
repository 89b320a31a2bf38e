"""Experiments: one module per experiment, each defining ``EXPERIMENT`` (CPU-sized, trained by
``recon train NAME``) and ``FULL`` (the paper's configuration, for a GPU; documented, not run in
CI). :func:`experiments.base.get` finds them by name."""
