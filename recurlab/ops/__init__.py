"""Pure tensor functions: the scans and convolutions every unit is built on.

Layout is batch first: sequences (B, T, D), heads (B, T, H, K). Decay gates are
passed in log space. Every op takes an optional initial state and returns the
final one, and has a one-token step form for decoding.

One package per op (``diag_scan/``, ``gla/``, ``conv/``, ``attention/``): the
public functions in ``interface.py`` (input checks, then the chosen backend),
``reference.py`` beside one file per fast path (``chunk.py``, ``cpu.py``,
``fft.py``, ``sdpa.py``, ...). ``recurlab.ops.gla`` is the function, not the
package; reach the backends with ``from recurlab.ops.gla.chunk import gla_chunk``
or ``from recurlab.ops.gla import chunk`` (``import recurlab.ops.gla.chunk as m``
fails, because the attribute ``recurlab.ops.gla`` is the function).
"""

from .backends import BACKENDS, available_backends
from .diag_scan import diag_scan, diag_step
from .gla import gla, gla_prefix_states, gla_step
from .conv import causal_conv1d, causal_conv1d_step, long_conv, long_conv_step
from .attention import KVCache, attention, attention_step

__all__ = [
    "BACKENDS",
    "KVCache",
    "attention",
    "attention_step",
    "available_backends",
    "causal_conv1d",
    "causal_conv1d_step",
    "diag_scan",
    "diag_step",
    "gla",
    "gla_prefix_states",
    "gla_step",
    "long_conv",
    "long_conv_step",
]
