"""The public functions :func:`attention` and :func:`attention_step`: input checks, the cache, the mask, then a backend.

Causal softmax attention with an optional sliding window and a KV cache: the
quality baseline every efficient unit is measured against (Vaswani et al.
2017), with the sliding-window variant used by Samba, SambaY and Liger.

State is a :class:`KVCache` (``cache.py``), a value: ``attention`` returns a new
cache with the new keys and values appended (amortised O(1) per token) and leaves
the one it was given unchanged.

Backends (``backend=``), one module each in this package:

- ``reference`` (``reference.py``): the softmax spelled out; the ground truth of the tests.
- ``sdpa`` (``sdpa.py``): torch's fused ``scaled_dot_product_attention``; a
  sliding window over more than ``2 * window`` tokens runs in blocks of ``window``
  queries, with or without a cache, in O(T * window) time and memory (no T x T mask).
- ``auto``: ``sdpa``.
"""

from __future__ import annotations

import torch

from .. import _checks
from ..backends import resolve
from .cache import KVCache
from .reference import attention_reference
from .sdpa import attention_sdpa, sliding_window_sdpa


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = True,
    window: int | None = None,
    scale: float | None = None,
    cache: KVCache | None = None,
    mask: torch.Tensor | None = None,
    backend: str = "auto",
) -> tuple[torch.Tensor, KVCache]:
    """Softmax attention, batch first.

    Args:
        q: (B, T, H, Dh) queries of the T new tokens.
        k, v: (B, T, H_kv, Dh) their keys and values; H must be a multiple of
            H_kv (grouped-query attention when H_kv < H).
        causal: each query sees keys at positions <= its own. False (full,
            bidirectional attention) allows neither ``window`` nor ``cache``.
        window: sliding window: query at position p sees keys in (p - window, p].
        scale: softmax scale; Dh ** -0.5 if None.
        cache: a :class:`KVCache` of earlier tokens (not changed: a new cache is
            returned), or None.
        mask: which keys each query sees, bool (T, n_past + T) over the cached keys then the new
            ones, instead of the causal mask (e.g. a token tree: each token sees the cache and its
            ancestors). Only without a window.
        backend: "auto"/"sdpa" (torch's fused attention) or "reference".

    Returns:
        o: (B, T, H, Dh) in the dtype of v, and the cache including these tokens.
        Empty inputs (B, T, H or Dh = 0) run no backend: o is empty and the cache
        passes through (T = 0) or records the tokens (B, H or Dh = 0).
    """
    _check_attention_args(q, k, v, causal, window, cache)
    name = resolve("attention", backend, q.device)
    if mask is not None:
        n_keys = (0 if cache is None else cache.length) + q.shape[1]
        if window is not None or not causal:
            raise ValueError("mask replaces the causal mask: it needs causal=True and no window")
        if mask.dtype != torch.bool or tuple(mask.shape) != (q.shape[1], n_keys):
            raise ValueError(f"mask must be a bool (T, n_past + T) = ({q.shape[1]}, {n_keys}) tensor, "
                             f"got {mask.dtype} {tuple(mask.shape)}")
    if cache is None:
        cache = KVCache(window)
    elif cache.window != window:
        raise ValueError(f"window must equal the cache's window ({cache.window}), got {window}")
    B, T, H, Dh = q.shape
    if q.numel() == 0:  # B, T, H or Dh is 0: no backend runs
        o = _checks.joined_to_inputs(v.new_zeros(B, T, H, Dh), q, k, v)
        return o, cache if T == 0 else cache.append(k, v).trimmed()
    n_past = cache.length
    cache = cache.append(k, v)
    keys, values = cache.keys, cache.values
    if window is not None and n_past > window - 1:  # keys no query can see (a cache grown by hand)
        keys, values = keys[:, n_past - (window - 1) :], values[:, n_past - (window - 1) :]
        n_past = window - 1
    group = H // k.shape[2]
    if group > 1:
        keys = keys.repeat_interleave(group, dim=2)
        values = values.repeat_interleave(group, dim=2)
    scale = Dh**-0.5 if scale is None else float(scale)
    if name == "sdpa" and window is not None and T > 2 * window:  # O(T * window) time and memory
        o = sliding_window_sdpa(q, keys, values, window, scale, n_past)
    else:  # a dense (T, n_past + T) mask: T <= 2 * window with a window (so O(T * window)), or none
        if mask is None:
            mask = _causal_mask(T, n_past, window, q.device) if causal and (window is not None or n_past > 0) else None
            is_causal = causal and mask is None and T > 1
        else:
            is_causal = False
        backend_fn = attention_reference if name == "reference" else attention_sdpa
        o = backend_fn(q, keys, values, scale, mask, is_causal)
    return o, cache.trimmed()


def _causal_mask(T: int, n_past: int, window: int | None, device) -> torch.Tensor:
    """(T, n_past + T) bool, True where query i (the key n_past + i) may see key j: j <= n_past + i,
    and j > n_past + i - window with a window."""
    q_pos = n_past + torch.arange(T, device=device).view(-1, 1)
    k_pos = torch.arange(n_past + T, device=device).view(1, -1)
    mask = k_pos <= q_pos
    return mask if window is None else mask & (k_pos > q_pos - window)


def attention_step(
    q_t: torch.Tensor, k_t: torch.Tensor, v_t: torch.Tensor, cache: KVCache, *, window: int | None = None,
    scale: float | None = None, backend: str = "auto",
) -> tuple[torch.Tensor, KVCache]:
    """One token of causal :func:`attention`: q_t (B, H, Dh), k_t, v_t (B, H_kv, Dh)."""
    for name, x in (("q_t", q_t), ("k_t", k_t), ("v_t", v_t)):
        _checks.check_tensor(name, x, ranks=(3,), layout="(B, H, Dh)")
    o, cache = attention(q_t.unsqueeze(1), k_t.unsqueeze(1), v_t.unsqueeze(1), window=window, scale=scale,
                         cache=cache, backend=backend)
    return o.squeeze(1), cache


def _check_attention_args(q, k, v, causal, window, cache):
    _checks.check_tensor("q", q, ranks=(4,), layout="(B, T, H, Dh)")
    _checks.check_tensor("k", k, ranks=(4,), layout="(B, T, H_kv, Dh)")
    _checks.check_tensor("v", v, ranks=(4,), layout="(B, T, H_kv, Dh)")
    B, T, H, Dh = q.shape
    if k.shape[:2] != q.shape[:2] or k.shape[3] != Dh:
        raise ValueError(f"k must have shape (B, T, H_kv, Dh) with (B, T) = ({B}, {T}) and Dh = {Dh} of q, got {_checks.fmt_shape(k.shape)}")
    _checks.check_shape("v", v, k.shape, "(B, T, H_kv, Dh) like k")
    if (H % k.shape[2] != 0) if k.shape[2] else H != 0:
        raise ValueError(f"k must have a number of heads H_kv dividing q's H = {H}, got H_kv = {k.shape[2]}")
    for name, x in (("k", k), ("v", v)):
        _checks.check_same_dtype(name, x, "q", q)
        _checks.check_same_device(name, x, "q", q)
    if window is not None and (not isinstance(window, int) or window < 1):
        raise ValueError(f"window must be a positive int number of tokens or None, got {window!r}")
    if not causal and (window is not None or cache is not None):
        raise ValueError("causal=False (full attention) takes neither window nor cache")
    if cache is not None and not isinstance(cache, KVCache):
        raise ValueError(f"cache must be a recurlab.ops.KVCache or None, got {type(cache).__name__}")
