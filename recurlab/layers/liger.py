"""Liger Attention (Lan et al. 2025, "Liger: Linearizing Large Language Models to Gated Recurrent
Structures", sec. 3; the authors' OpenSparseLLMs/Linearization code): an intra-layer hybrid of
sliding-window softmax attention and gated linear attention that reuses a pretrained attention
layer's projections and adds no parameters.

    q, k, v = x W_q, x W_k, x W_v                       (the attention layer's weights)
    GLA branch:  φ(q) = softmax(q) and φ(k) = softmax(k) over the head dimension,
                 log α = logsigmoid(k) / 16              (the gate is the key projection itself)
                 o_gla = GLA(φ(q), φ(k), v, log α), scale 1, no norm, no output gate, no RoPE
    SWA branch:  o_swa = softmax attention with RoPE over a window of 64 tokens
    y = (0.5 o_swa + 0.5 o_gla) W_o

``LigerAttention.from_attention(layer)`` builds one from a trained ``attention``
layer, sharing nothing but copying its four projections.
State: LigerState (KVCache of the last window - 1 tokens, GLA state S (B, H, Dh, Dh)).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .. import ops
from ..state import State
from .attention import Attention
from .registry import register


@dataclass(frozen=True)
class LigerState(State):
    """cache: the sliding window's KVCache; S: (B, H, Dh, Dh) the gated linear attention state (float32)."""

    cache: ops.KVCache
    S: torch.Tensor


@register("liger", kind="token", paper="Lan et al. 2025, Liger (linearised attention hybrid)",
          state="KV cache of window - 1 tokens + Dh * Dh per head", tiny={"n_heads": 2, "window": 4})
class LigerAttention(Attention):
    state_type = LigerState
    kv_attention = False  # its state adds a GLA memory to the window's cache
    def __init__(self, d_model: int, n_heads: int | None = None, window: int = 64, rope_base: float = 10000.0,
                 gate_normalizer: float = 16.0, mix: float = 0.5):
        super().__init__(d_model, n_heads, None, rope_base, window)
        self.gate_normalizer = gate_normalizer
        self.mix_weight = mix

    @classmethod
    def from_attention(cls, attention: Attention, window: int = 64) -> "LigerAttention":
        """A Liger layer with the projections of a (trained) attention layer."""
        if not isinstance(attention, Attention) or attention.n_kv_heads != attention.n_heads:
            raise ValueError("attention must be a recurlab attention layer without grouped key/value heads")
        other = [name for name, differs in (
            ("head_dim", attention.head_dim * attention.n_heads != attention.d_model),
            ("qkv_bias", attention.q_proj.bias is not None), ("out_bias", attention.o_proj.bias is not None),
            ("rope_scaling", attention.rope_scaling is not None)) if differs]
        if other:  # a Liger layer has none of these: copying the weights alone would change the function
            raise ValueError(f"attention must use the default {', '.join(other)} to become a Liger layer (a Liger layer "
                             f"has no such option)")
        weight = attention.q_proj.weight
        liger = cls(attention.d_model, attention.n_heads, window=window, rope_base=attention.rope_base)
        liger = liger.to(device=weight.device, dtype=weight.dtype)
        liger.load_state_dict(attention.state_dict())
        return liger

    def _linear_inputs(self, x):
        B, T, _ = x.shape
        shape = (B, T, self.n_heads, self.head_dim)
        q, k, v = self.q_proj(x).view(shape), self.k_proj(x).view(shape), self.v_proj(x).view(shape)
        log_alpha = F.logsigmoid(k) / self.gate_normalizer
        return torch.softmax(q, -1), torch.softmax(k, -1), v, log_alpha

    def mix(self, x, state):
        q, k, v = self.project(x, state.cache.offset)
        o_swa, cache = ops.attention(q, k, v, window=self.window, cache=state.cache)
        o_gla, S = ops.gla(*self._linear_inputs(x), scale=1.0, initial_state=state.S)
        o = self.mix_weight * o_swa + (1 - self.mix_weight) * o_gla
        return self.o_proj(o.flatten(-2)), LigerState(cache, S)

    def mix_step(self, x_t, state):
        q, k, v = self.project(x_t.unsqueeze(1), state.cache.offset)
        o_swa, cache = ops.attention(q, k, v, window=self.window, cache=state.cache)
        fq, fk, fv, log_alpha = (t.squeeze(1) for t in self._linear_inputs(x_t.unsqueeze(1)))
        o_gla, S = ops.gla_step(fq, fk, fv, log_alpha, state.S, scale=1.0)
        o = self.mix_weight * o_swa.squeeze(1) + (1 - self.mix_weight) * o_gla
        return self.o_proj(o.flatten(-2)), LigerState(cache, S)

    def init_state(self, batch_size, device=None, dtype=None):
        acc = torch.float64 if dtype == torch.float64 else torch.float32
        return LigerState(ops.KVCache(self.window),
                          torch.zeros(batch_size, self.n_heads, self.head_dim, self.head_dim, device=device, dtype=acc))
