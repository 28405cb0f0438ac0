"""Gated linear attention S_t = diag(alpha_t) S_{t-1} + k_t v_t^T, o_t = scale * S_t^T q_t, one file per backend.

- ``interface.py``: :func:`gla` and :func:`gla_step`, the public functions
  (input checks, then the chosen backend).
- ``reference.py``: the recurrence step by step, the ground truth of the tests.
- ``prefix.py``: :func:`gla_prefix_states`, the state after every prefix from the parallel form
  (speculative decoding's verifier).
- ``chunk.py``: the chunkwise form (Yang et al. 2023, sec. 4): the direct form
  with a written-out backward, and secondary chunking for extreme decay.

``recurlab.ops.gla`` is the function; reach the backends with plain imports,
e.g. ``from recurlab.ops.gla.chunk import gla_chunk``.
"""

from .interface import gla, gla_step
from .prefix import gla_prefix_states

__all__ = ["gla", "gla_prefix_states", "gla_step"]
