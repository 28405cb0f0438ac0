"""Cross-attention over one shared KV cache: the cross-decoder layer of YOCO (Sun et al. 2024, "You Only
Cache Once: Decoder-Decoder Architectures for Language Models", sec. 2.2) and SambaY (Ren et al. 2025,
"Decoder-Hybrid-Decoder Architecture for Efficient Reasoning with Long Generation"; the authors' ArchScale
code, ``CausalSelfAttention(yoco_cross=True)``).

    q = RoPE(x W_q, positions)                                (H query heads of width Dh; no k or v projection)
    o = softmax(q Kᵀ / sqrt(Dh) + causal mask) V,   y = o W_o

K and V are the keys (already rotated) and values of the model's one full-attention layer, the KV cache it
holds after the current tokens were appended (``kv=``, a :class:`recurlab.ops.KVCache` without a window).
The query at absolute position p sees the keys at positions <= p: the mask is the causal mask of the
layer that wrote the cache, so a cross-decoder over it is still a causal language model. The layer writes
no keys of its own: its state is empty, and however many cross-attention layers follow, the model keeps one
KV cache (the "cache once" of YOCO). The ``Stack`` depth module wires ``kv=`` from ``ModelConfig.kv_layer``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..ops import KVCache
from ..ops.attention.sdpa import attention_sdpa
from .attention import head_layout
from .base import StatelessMixer
from .registry import register
from .rotary import check_rope_scaling, rotary


@register("cross_attention", kind="token", paper="Sun et al. 2024 YOCO / Ren et al. 2025 SambaY: cross-attention over "
          "the one shared KV cache", state="none (reads the shared KV cache)", tiny={"n_heads": 2})
class CrossAttention(StatelessMixer):
    reads_kv = True

    def __init__(self, d_model: int, n_heads: int | None = None, n_kv_heads: int | None = None,
                 head_dim: int | None = None, rope_base: float = 10000.0, rope_scaling: dict | None = None):
        """n_heads query heads of width head_dim over keys with n_kv_heads heads (grouped-query when fewer):
        n_kv_heads, head_dim, rope_base and rope_scaling must be those of the attention layer that writes the
        cache (the Stack checks)."""
        super().__init__(d_model)
        self.n_heads, self.n_kv_heads, self.head_dim = head_layout(d_model, n_heads, n_kv_heads, head_dim)
        if self.head_dim < 2 or self.head_dim % 2:
            raise ValueError(f"head_dim must be an even number >= 2 for rotary positions, got {self.head_dim}")
        check_rope_scaling(rope_scaling)
        self.rope_base, self.rope_scaling = rope_base, rope_scaling
        self.q_proj = nn.Linear(d_model, self.n_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, d_model, bias=False)

    def _attend(self, x: torch.Tensor, kv: KVCache | None) -> torch.Tensor:
        """x (B, T, d_model), the last T of the cache's tokens -> (B, T, d_model)."""
        self.check_kv(kv, x)
        B, T, _ = x.shape
        start = kv.offset - T  # absolute position of x's first token
        positions = torch.arange(start, start + T, device=x.device)
        q = rotary(self.q_proj(x).view(B, T, self.n_heads, self.head_dim), positions, self.rope_base,
                   self.rope_scaling)
        keys, values = kv.keys, kv.values  # (B, S, H_kv, Dh), S = kv.offset (no window: nothing dropped)
        group = self.n_heads // self.n_kv_heads
        if group > 1:
            keys, values = keys.repeat_interleave(group, dim=2), values.repeat_interleave(group, dim=2)
        mask = torch.arange(kv.length, device=x.device).view(1, -1) <= positions.view(-1, 1)  # (T, S)
        o = attention_sdpa(q, keys.to(q.dtype), values.to(q.dtype), self.head_dim ** -0.5, mask, False)
        return self.o_proj(o.flatten(-2))

    def check_kv(self, kv: KVCache | None, x: torch.Tensor) -> None:
        """A ValueError unless ``kv`` is a window-less KVCache holding x's batch, at least its T tokens, and keys
        of this layer's (n_kv_heads, head_dim)."""
        T = x.shape[1]
        if kv is None:
            raise ValueError("cross_attention needs kv=: the KV cache of a full-attention layer after these tokens; "
                             "in a model set kv_layer to an earlier 'attention' layer")
        if not isinstance(kv, KVCache) or kv.window is not None:
            raise ValueError(f"kv must be a KVCache without a window (full attention), got {kv!r:.80}")
        if kv.keys is None or kv.length < T or kv.length != kv.offset:
            raise ValueError(f"kv must hold every token so far, these {T} included: length {kv.length}, offset "
                             f"{kv.offset}")
        expected = (x.shape[0], kv.length, self.n_kv_heads, self.head_dim)
        if tuple(kv.keys.shape) != expected:
            raise ValueError(f"kv keys must have shape (B, S, n_kv_heads, head_dim) = {expected}, got "
                             f"{tuple(kv.keys.shape)}")

    def mix(self, x, state, kv: KVCache | None = None):
        return self._attend(x, kv), state

    def mix_step(self, x_t, state, kv: KVCache | None = None):
        return self._attend(x_t.unsqueeze(1), kv).squeeze(1), state

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, n_heads={self.n_heads}, n_kv_heads={self.n_kv_heads}, head_dim={self.head_dim}"
