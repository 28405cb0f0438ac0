"""Causal convolutions over time, one file per backend.

- ``interface.py``: :func:`causal_conv1d`, :func:`causal_conv1d_step`,
  :func:`long_conv` and :func:`long_conv_step`, the public functions (input
  checks, the state prepended, then the chosen backend).
- ``reference.py``: both convolutions as direct sums over taps, the ground truth.
- ``conv1d.py``: the ``conv`` backend of ``causal_conv1d`` (torch's depthwise conv1d).
- ``fft.py``: the ``fft`` backend of ``long_conv`` (Hyena's FFT convolution).
"""

from .interface import causal_conv1d, causal_conv1d_step, long_conv, long_conv_step

__all__ = ["causal_conv1d", "causal_conv1d_step", "long_conv", "long_conv_step"]
