"""Pure tensor functions: the scans and convolutions every unit is built on.

Layout is batch first: sequences (B, T, D), heads (B, T, H, K). Decay gates are
passed in log space. Every op takes an optional initial state and returns the
final one, and has a one-token step form for decoding.
"""

from .backends import BACKENDS, available_backends
from .diag_scan import diag_scan, diag_step
from .gla import gla, gla_step

__all__ = ["BACKENDS", "available_backends", "diag_scan", "diag_step", "gla", "gla_step"]
