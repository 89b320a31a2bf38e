"""Numba kernels of recon-engine: array in, array out, no JAX (CT projectors come here)."""
