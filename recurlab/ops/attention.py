"""Causal softmax attention with an optional sliding window and a KV cache.

The quality baseline every efficient unit is measured against (Vaswani et al.
2017), with the sliding-window variant used by Samba, SambaY and Liger. The
``sdpa`` backend runs torch's fused ``scaled_dot_product_attention``;
``reference`` spells the softmax out and is the ground truth of the tests.

State is a :class:`KVCache`. Unlike the recurrent ops' states it grows with the
sequence (up to ``window - 1`` tokens for sliding-window attention), which is the
cost recurrent units avoid. The cache is a value (:mod:`recurlab.ops.kv_cache`):
``attention`` returns a new cache with the new keys and values appended, in
amortised O(1) per token, and leaves the one it was given unchanged.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F

from . import _checks
from .backends import resolve
from .kv_cache import KVCache


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = True,
    window: int | None = None,
    scale: float | None = None,
    cache: KVCache | None = None,
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
        backend: "auto"/"sdpa" (torch's fused attention) or "reference".

    Returns:
        o: (B, T, H, Dh) in the dtype of v, and the cache including these tokens.
    """
    _check_attention_args(q, k, v, causal, window, cache)
    name = resolve("attention", backend, q.device)
    if cache is None:
        cache = KVCache(window)
    elif cache.window != window:
        raise ValueError(f"window must equal the cache's window ({cache.window}), got {window}")
    B, T, H, Dh = q.shape
    n_past = cache.length
    q_start = cache.offset
    cache = cache.append(k, v)
    keys, values = cache.keys, cache.values
    group = H // k.shape[2]
    if group > 1:
        keys = keys.repeat_interleave(group, dim=2)
        values = values.repeat_interleave(group, dim=2)
    scale = Dh**-0.5 if scale is None else float(scale)
    mask = None
    if causal and (window is not None or n_past > 0):
        q_pos = q_start + torch.arange(T, device=q.device)
        k_pos = q_start - n_past + torch.arange(keys.shape[1], device=q.device)
        mask = k_pos.view(1, -1) <= q_pos.view(-1, 1)
        if window is not None:
            mask = mask & (k_pos.view(1, -1) > q_pos.view(-1, 1) - window)
    is_causal = causal and mask is None and T > 1
    if name == "sdpa" and window is not None and n_past == 0 and T > 2 * window:
        o = _sliding_window_blocks(q, keys, values, window, scale)
    elif name == "reference":
        o = _reference_attention(q, keys, values, scale, mask, is_causal)
    else:
        o = F.scaled_dot_product_attention(
            q.transpose(1, 2), keys.transpose(1, 2), values.transpose(1, 2),
            attn_mask=mask, is_causal=is_causal, scale=scale,
        ).transpose(1, 2)
    return o, cache.trimmed()


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


def _sliding_window_blocks(q, k, v, window, scale):
    """Sliding-window attention in O(T * window): queries in blocks of ``window`` attend to their
    own block and the one before, (B, T, H, Dh) in and out (keys already repeated for GQA)."""
    B, T, H, Dh = q.shape
    w = window
    pad = (-T) % w
    if pad:  # padded keys come after every real query, so causality masks them
        q, k, v = (F.pad(x, (0, 0, 0, 0, 0, pad)) for x in (q, k, v))
    nb = (T + pad) // w
    blocks = lambda x: x.view(B, nb, w, H, Dh).transpose(2, 3)  # (B, nb, H, w, Dh)  # noqa: E731
    qb, kb, vb = blocks(q), blocks(k), blocks(v)
    previous = lambda x: torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], 1)  # noqa: E731
    keys, values = torch.cat([previous(kb), kb], 3), torch.cat([previous(vb), vb], 3)  # (B, nb, H, 2w, Dh)
    i = torch.arange(w, device=q.device).view(w, 1)
    m = torch.arange(2 * w, device=q.device).view(1, 2 * w)
    allowed = (m <= w + i) & (m > i)  # key position (j-1)w + m within (query - window, query]
    mask = allowed.expand(nb, 1, w, 2 * w).clone()
    mask[0, :, :, :w] = False  # the first block has no block before it
    o = F.scaled_dot_product_attention(qb, keys, values, attn_mask=mask, scale=scale)
    return o.transpose(2, 3).reshape(B, nb * w, H, Dh)[:, :T]


def _reference_attention(q, k, v, scale, mask, is_causal):
    acc = _checks.accumulation_dtype(v.dtype)
    scores = torch.einsum("bthd,bshd->bhts", q.to(acc), k.to(acc)) * scale
    if is_causal:
        T, S = scores.shape[-2:]
        mask = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(S - T)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return torch.einsum("bhts,bshd->bthd", weights, v.to(acc)).to(v.dtype)


def _check_attention_args(q, k, v, causal, window, cache):
    _checks.check_tensor("q", q, ranks=(4,), layout="(B, T, H, Dh)")
    _checks.check_tensor("k", k, ranks=(4,), layout="(B, T, H_kv, Dh)")
    _checks.check_tensor("v", v, ranks=(4,), layout="(B, T, H_kv, Dh)")
    B, T, H, Dh = q.shape
    if k.shape[:2] != q.shape[:2] or k.shape[3] != Dh:
        raise ValueError(f"k must have shape (B, T, H_kv, Dh) with (B, T) = ({B}, {T}) and Dh = {Dh} of q, got {_checks.fmt_shape(k.shape)}")
    _checks.check_shape("v", v, k.shape, "(B, T, H_kv, Dh) like k")
    if H % k.shape[2] != 0:
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


