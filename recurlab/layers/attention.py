"""Causal softmax attention with rotary positions (Vaswani et al. 2017, "Attention Is All You
Need", eq. 1; RoPE: Su et al. 2021), and its sliding-window variant (`swa`, as in Longformer /
Mistral / Samba): the quality baselines of every comparison.

    q, k, v = x W_q, x W_k, x W_v       (H query heads, H_kv key/value heads: grouped-query if fewer)
    q, k = RoPE(q, pos), RoPE(k, pos)
    o = softmax(q kᵀ / sqrt(Dh) + causal [+ window] mask) v,   y = o W_o

State: a KVCache (recurlab.ops.KVCache) holding every past key and value, or
only the last ``window - 1`` for ``swa``: memory grows with the context for
full attention, which is the cost recurrent mixers avoid.

Sliced group attention (SReT) is its own mixer, ``sliced_attention`` (layers/sliced_attention.py).

Tree attention (capability ``tree_attention``, full attention only): ``forward(x, state,
tree=TokenTree(parents))`` scores a token tree in one call (layers/tree.py): token i is at rotary
position offset + depth(i) and sees the cached tokens and its ancestors. The returned cache holds
every node; ``recurlab.decoding.rewind.keep_path`` keeps one root-to-node path of it.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import ops
from .base import TokenMixer
from .registry import register
from .rotary import rotary
from .tree import TokenTree


@register("attention", kind="token", paper="Vaswani et al. 2017, softmax attention + RoPE",
          state="KV cache: 2 * d_kv per past token", tiny={"n_heads": 2})
class Attention(TokenMixer):
    state_type = ops.KVCache
    tree_attention = True
    kv_attention = True
    window: int | None = None

    def __init__(self, d_model: int, n_heads: int | None = None, n_kv_heads: int | None = None,
                 rope_base: float = 10000.0, window: int | None = None):
        super().__init__(d_model)
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

    def project(self, x, start: int, positions: torch.Tensor | None = None):
        """q (B, T, H, Dh), k, v (B, T, H_kv, Dh) with rotary positions start..start+T-1 (or ``positions`` (T,))."""
        B, T, _ = x.shape
        if positions is None:
            positions = torch.arange(start, start + T, device=x.device)
        q = rotary(self.q_proj(x).view(B, T, self.n_heads, self.head_dim), positions, self.rope_base)
        k = rotary(self.k_proj(x).view(B, T, self.n_kv_heads, self.head_dim), positions, self.rope_base)
        v = self.v_proj(x).view(B, T, self.n_kv_heads, self.head_dim)
        return q, k, v

    def mix(self, x, state, tree: TokenTree | None = None):
        """x (B, T, d_model) -> y (B, T, d_model) and the KVCache with these tokens; with ``tree`` the T
        tokens are a :class:`TokenTree` (each sees the cache and its ancestors)."""
        if tree is None:
            q, k, v = self.project(x, state.offset)
            o, cache = ops.attention(q, k, v, window=self.window, cache=state)
            return self.o_proj(o.flatten(-2)), cache
        if self.window is not None:
            raise ValueError(f"tree= needs attention without a window (a window drops keys a branch needs), "
                             f"got window={self.window}")
        if len(tree) != x.shape[1]:
            raise ValueError(f"tree must have one parent per token: {x.shape[1]} tokens, {len(tree)} parents")
        q, k, v = self.project(x, state.offset, positions=state.offset + tree.depths().to(x.device))
        mask = torch.cat([torch.ones(len(tree), state.length, dtype=torch.bool, device=x.device),
                          tree.visible().to(x.device)], 1)
        o, cache = ops.attention(q, k, v, cache=state, mask=mask)
        return self.o_proj(o.flatten(-2)), cache

    def mix_step(self, x_t, state, tree: TokenTree | None = None):
        if tree is not None:
            raise ValueError("tree= is for forward (a tree of several tokens), not step")
        y, cache = self.mix(x_t.unsqueeze(1), state)
        return y.squeeze(1), cache

    def init_state(self, batch_size, device=None, dtype=None):
        return ops.KVCache(self.window)


@register("swa", kind="token", paper="sliding-window attention (Beltagy et al. 2020; Samba 2024) + RoPE",
          state="KV cache of the last window - 1 tokens", tiny={"n_heads": 2, "window": 4})
class SlidingWindowAttention(Attention):
    window = 128
    tree_attention = False  # the window drops keys a branch would need

    def __init__(self, d_model: int, n_heads: int | None = None, n_kv_heads: int | None = None,
                 rope_base: float = 10000.0, window: int = 128):
        super().__init__(d_model, n_heads, n_kv_heads, rope_base, window)
