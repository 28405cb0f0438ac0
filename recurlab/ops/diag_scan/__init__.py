"""The diagonal gated linear recurrence h_t = exp(log_a_t) * h_{t-1} + b_t, one file per backend.

- ``interface.py``: :func:`diag_scan` and :func:`diag_step`, the public functions
  (input checks, then the chosen backend).
- ``reference.py``: the plain loop over time, the ground truth of the tests.
- ``chunk.py``: the pure-PyTorch parallel scan (Kogge-Stone inside chunks).
- ``cpu.py``: the compiled C++ kernel (``diag_scan.cpp``), built on first use by
  ``recurlab.ops._cpu_ext``.

``recurlab.ops.diag_scan`` is the function; reach the backends with plain imports,
e.g. ``from recurlab.ops.diag_scan.chunk import diag_scan_chunk``.
"""

from .interface import diag_scan, diag_step

__all__ = ["diag_scan", "diag_step"]
