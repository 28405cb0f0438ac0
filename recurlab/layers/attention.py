"""Causal softmax attention with rotary positions (Vaswani et al. 2017, "Attention Is All You
Need", eq. 1; RoPE: Su et al. 2021), and its sliding-window variant (`swa`, as in Longformer /
Mistral / Samba): the quality baselines of every comparison.

    q, k, v = x W_q [+ b_q], x W_k [+ b_k], x W_v [+ b_v]   (H query heads, H_kv key/value heads:
                                                            grouped-query if fewer; head width Dh)
    q, k = RoPE(q, pos), RoPE(k, pos)                       (optionally rescaled frequencies: rotary.py)
    o = softmax(q kᵀ / sqrt(Dh) + causal [+ window] mask) v,   y = o W_o [+ b_o]

The options a pretrained Llama-family checkpoint needs all default to the original layer:
``head_dim`` (d_model / n_heads), ``qkv_bias`` (Qwen2) and ``out_bias`` (False), ``rope_scaling``
(None), so configs and model files written before they existed load unchanged.

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
from .rotary import check_rope_scaling, rotary
from .tree import TokenTree


def head_layout(d_model: int, n_heads: int | None, n_kv_heads: int | None, head_dim: int | None
                ) -> tuple[int, int, int]:
    """(n_heads, n_kv_heads, head_dim) of a multi-head projection: n_heads defaults to d_model // 64 (at
    least 1), n_kv_heads to n_heads (it must divide n_heads), head_dim to d_model // n_heads."""
    n_heads = n_heads or max(1, d_model // 64)
    n_kv_heads = n_kv_heads or n_heads
    if n_heads % n_kv_heads:
        raise ValueError(f"n_kv_heads={n_kv_heads} must divide n_heads={n_heads}")
    if head_dim is None and d_model % n_heads:
        raise ValueError(f"n_heads={n_heads} must divide d_model={d_model} (or set head_dim)")
    return n_heads, n_kv_heads, head_dim if head_dim is not None else d_model // n_heads


@register("attention", kind="token", paper="Vaswani et al. 2017, softmax attention + RoPE",
          state="KV cache: 2 * d_kv per past token", tiny={"n_heads": 2})
class Attention(TokenMixer):
    state_type = ops.KVCache
    tree_attention = True
    kv_attention = True
    window: int | None = None

    def __init__(self, d_model: int, n_heads: int | None = None, n_kv_heads: int | None = None,
                 rope_base: float = 10000.0, window: int | None = None, head_dim: int | None = None,
                 qkv_bias: bool = False, out_bias: bool = False, rope_scaling: dict | None = None):
        """n_heads query heads of width head_dim (default d_model // n_heads) and n_kv_heads key/value heads
        (default n_heads); qkv_bias / out_bias add biases to W_q, W_k, W_v / W_o; rope_scaling rescales the
        rotary frequencies (None, or a dict described in :mod:`recurlab.layers.rotary`)."""
        super().__init__(d_model)
        self.n_heads, self.n_kv_heads, self.head_dim = head_layout(d_model, n_heads, n_kv_heads, head_dim)
        if self.head_dim < 2 or self.head_dim % 2:
            raise ValueError(f"head_dim must be an even number >= 2 for rotary positions, got {self.head_dim}")
        check_rope_scaling(rope_scaling)
        self.rope_base = rope_base
        self.rope_scaling = rope_scaling
        self.window = window if window is not None else type(self).window
        if self.window is not None and self.window < 1:
            raise ValueError(f"window must be a positive number of tokens, got {self.window}")
        q, kv = self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim
        self.q_proj = nn.Linear(d_model, q, bias=qkv_bias)
        self.k_proj = nn.Linear(d_model, kv, bias=qkv_bias)
        self.v_proj = nn.Linear(d_model, kv, bias=qkv_bias)
        self.o_proj = nn.Linear(q, d_model, bias=out_bias)

    def rotate(self, x, positions):
        """RoPE of q or k (B, T, heads, Dh) at absolute positions (T,), with this layer's base and scaling."""
        return rotary(x, positions, self.rope_base, self.rope_scaling)

    def project(self, x, start: int, positions: torch.Tensor | None = None):
        """q (B, T, H, Dh), k, v (B, T, H_kv, Dh) with rotary positions start..start+T-1 (or ``positions`` (T,))."""
        B, T, _ = x.shape
        if positions is None:
            positions = torch.arange(start, start + T, device=x.device)
        q = self.rotate(self.q_proj(x).view(B, T, self.n_heads, self.head_dim), positions)
        k = self.rotate(self.k_proj(x).view(B, T, self.n_kv_heads, self.head_dim), positions)
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
                 rope_base: float = 10000.0, window: int = 128, head_dim: int | None = None,
                 qkv_bias: bool = False, out_bias: bool = False, rope_scaling: dict | None = None):
        super().__init__(d_model, n_heads, n_kv_heads, rope_base, window, head_dim, qkv_bias, out_bias, rope_scaling)
