"""Reconstruction, learning, data I/O and the command line of recon-engine."""
