"""Causal softmax attention with rotary positions (Vaswani et al. 2017, "Attention Is All You
Need", eq. 1; RoPE: Su et al. 2021), and its sliding-window variant (`swa`, as in Longformer /
Mistral / Samba): the quality baselines of every comparison.

    q, k, v = x W_q, x W_k, x W_v       (H query heads, H_kv key/value heads: grouped-query if fewer)
    q, k = RoPE(q, pos), RoPE(k, pos)
    o = softmax(q kᵀ / sqrt(Dh) + causal [+ window] mask) v,   y = o W_o

State: a KVCache (recurlab.ops.KVCache) holding every past key and value, or
only the last ``window - 1`` for ``swa``: memory grows with the context for
full attention, which is the cost recurrent mixers avoid.

Sliced group attention (option ``group_size``; Zhang et al., "Sliced Recursive Transformer",
ECCV 2022): attention restricted to groups of tokens, which SReT re-partitions at every
recursive application so that information still crosses group borders over depth. SReT slices a
(bidirectional) image into G groups after a random token permutation; a causal LM cannot permute,
so the groups here are contiguous and causal:

    groups  [0, offset), [offset, offset + G), [offset + G, offset + 2G), ...    (G = group_size)
    mask    token t attends to s iff s <= t and s lies in t's group  (and t - s < window if set)

The KV cache then only needs the current group: it is emptied at every group start, so decoding
memory is O(G) per layer. ``forward``/``step`` take ``group=(size, offset)`` to override the
constructor's partition for one call (recurlab.recursion.Recursive changes it per loop).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from .base import TokenMixer
from .registry import register
from .rotary import rotary


@register("attention", kind="token", paper="Vaswani et al. 2017, softmax attention + RoPE",
          state="KV cache: 2 * d_kv per past token")
class Attention(TokenMixer):
    window: int | None = None

    def __init__(self, d_model: int, n_heads: int | None = None, n_kv_heads: int | None = None,
                 rope_base: float = 10000.0, window: int | None = None, group_size: int | None = None,
                 group_offset: int = 0):
        super().__init__(d_model)
        self.group_size, self.group_offset = self._check_group((group_size, group_offset), "group_size/group_offset")
        self.n_heads = n_heads or max(1, d_model // 64)
        self.n_kv_heads = n_kv_heads or self.n_heads
        if d_model % self.n_heads or self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads={self.n_heads} must divide d_model={d_model}, and n_kv_heads={self.n_kv_heads} n_heads")
        self.head_dim = d_model // self.n_heads
        if self.head_dim % 2:
            raise ValueError(f"head dimension d_model / n_heads = {self.head_dim} must be even for rotary positions")
        self.rope_base = rope_base
        self.window = window if window is not None else type(self).window
        if self.window is not None and self.window < 1:
            raise ValueError(f"window must be a positive number of tokens, got {self.window}")
        kv = self.n_kv_heads * self.head_dim
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj = nn.Linear(d_model, kv, bias=False)
        self.v_proj = nn.Linear(d_model, kv, bias=False)
        self.o_proj = nn.Linear(d_model, d_model, bias=False)

    def project(self, x, start: int):
        """q (B, T, H, Dh), k, v (B, T, H_kv, Dh) with rotary positions start..start+T-1."""
        B, T, _ = x.shape
        positions = torch.arange(start, start + T, device=x.device)
        q = rotary(self.q_proj(x).view(B, T, self.n_heads, self.head_dim), positions, self.rope_base)
        k = rotary(self.k_proj(x).view(B, T, self.n_kv_heads, self.head_dim), positions, self.rope_base)
        v = self.v_proj(x).view(B, T, self.n_kv_heads, self.head_dim)
        return q, k, v

    def forward(self, x, state=None, group: tuple[int | None, int] | None = None):
        """x (B, T, d_model) -> y (B, T, d_model), KVCache. ``group=(size, offset)`` overrides the
        constructor's group_size/group_offset for this call ((None, 0): ungrouped)."""
        self.check_sequence(x)
        size, offset = (self.group_size, self.group_offset) if group is None else self._check_group(group, "group")
        cache = state if state is not None else ops.KVCache(self.window)
        q, k, v = self.project(x, cache.offset)
        if size is None:
            o, cache = ops.attention(q, k, v, window=self.window, cache=cache)
        else:
            o, cache = self._grouped_attention(q, k, v, cache, size, offset)
        return self.o_proj(o.flatten(-2)), cache

    def step(self, x_t, state=None, group: tuple[int | None, int] | None = None):
        """x_t (B, d_model) -> y_t (B, d_model), KVCache; ``group`` as in forward."""
        self.check_token(x_t)
        y, cache = self.forward(x_t.unsqueeze(1), state, group)
        return y.squeeze(1), cache

    def init_state(self, batch_size, device=None, dtype=None):
        return ops.KVCache(self.window)

    # ------------------------------------------------------------------ sliced groups

    @staticmethod
    def _check_group(group, name: str) -> tuple[int | None, int]:
        if not isinstance(group, tuple) or len(group) != 2:
            raise ValueError(f"{name} must be a (size, offset) tuple, got {group!r}")
        size, offset = group
        if size is None:
            if offset != 0:
                raise ValueError(f"{name}: a group offset needs a group size, got offset {offset!r} without one")
            return None, 0
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ValueError(f"{name}: group size must be a positive int number of tokens or None, got {size!r}")
        if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset < size:
            raise ValueError(f"{name}: group offset must be an int in [0, group size={size}), got {offset!r}")
        return size, offset

    @staticmethod
    def group_bounds(position: int, size: int, offset: int) -> tuple[int, int]:
        """[start, end) of the group holding token ``position``: [0, offset) first, then blocks of ``size``."""
        if position < offset:
            return 0, offset
        start = offset + (position - offset) // size * size
        return start, start + size

    def _cache_from(self, cache: ops.KVCache, start: int) -> ops.KVCache:
        """``cache`` holding only keys at positions >= start (a new cache when some must go)."""
        keep = cache.offset - start
        if cache.length <= keep:
            return cache
        trimmed = ops.KVCache(self.window)
        if keep:
            trimmed.append(cache.keys[:, cache.length - keep:], cache.values[:, cache.length - keep:])
        trimmed.offset = cache.offset
        return trimmed

    def _grouped_attention(self, q, k, v, cache: ops.KVCache, size: int, offset: int):
        """Causal attention within contiguous groups. q (B, T, H, Dh), k, v (B, T, H_kv, Dh) at
        positions cache.offset.. -> o (B, T, H, Dh) and the cache of the group the last token is in."""
        B, T, H, Dh = q.shape
        p0 = cache.offset
        start, end = self.group_bounds(p0, size, offset)
        n_head = min(T, end - p0)  # the tokens that finish the current group, with its cached keys
        o_head, cache = ops.attention(q[:, :n_head], k[:, :n_head], v[:, :n_head], window=self.window,
                                      cache=self._cache_from(cache, start))
        rest = T - n_head
        if rest:  # whole groups of `size` from here on: one batched call over (B * groups) sequences
            n_groups = -(-rest // size)
            pad = n_groups * size - rest  # padded tokens come after every real query: causality hides them

            def grouped(t):
                t = F.pad(t[:, n_head:], (0, 0, 0, 0, 0, pad))
                return t.reshape(B * n_groups, size, *t.shape[2:])

            o_rest, _ = ops.attention(grouped(q), grouped(k), grouped(v), window=self.window)
            o_head = torch.cat([o_head, o_rest.reshape(B, n_groups * size, H, Dh)[:, :rest]], 1)
            last = p0 + n_head + (n_groups - 1) * size  # start of the group of the last token
            cache = ops.KVCache(self.window)
            cache.offset = last
            cache.append(k[:, last - p0:], v[:, last - p0:])
            cache.trim_to_window()
        if cache.offset == self.group_bounds(cache.offset - 1, size, offset)[1]:
            cache = self._cache_from(cache, cache.offset)  # the group is complete: its keys are never read again
        return o_head, cache


@register("swa", kind="token", paper="sliding-window attention (Beltagy et al. 2020; Samba 2024) + RoPE",
          state="KV cache of the last window - 1 tokens")
class SlidingWindowAttention(Attention):
    window = 128

    def __init__(self, d_model: int, n_heads: int | None = None, n_kv_heads: int | None = None,
                 rope_base: float = 10000.0, window: int = 128):
        super().__init__(d_model, n_heads, n_kv_heads, rope_base, window)
