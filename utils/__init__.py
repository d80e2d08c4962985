"""Shared pieces: image I/O, metrics, losses, checkpoints, command-line options."""
