"""Causal softmax attention with an optional sliding window and a KV cache, one file per backend.

- ``interface.py``: :func:`attention` and :func:`attention_step`, the public
  functions (input checks, the cache updated, the mask built, then the chosen backend).
- ``cache.py``: :class:`KVCache`, the keys and values seen so far.
- ``reference.py``: the softmax spelled out, the ground truth of the tests.
- ``sdpa.py``: torch's fused ``scaled_dot_product_attention``, and sliding-window
  attention in blocks for long prompts.

``recurlab.ops.attention`` is the function; reach the backends with plain imports,
e.g. ``from recurlab.ops.attention.sdpa import attention_sdpa``.
"""

from .cache import KVCache
from .interface import attention, attention_step

__all__ = ["KVCache", "attention", "attention_step"]
