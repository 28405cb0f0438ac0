"""Liger (Lan et al. 2025, "Liger: Linearizing Large Language Models to Gated Recurrent
Structures", sec. 3; the authors' OpenSparseLLMs/Linearization code): token mixers that reuse a
pretrained attention layer's projections and add no parameters.

    q, k, v = x W_q, x W_k, x W_v                       (the attention layer's weights, biases if it has them)
    GLA branch:  φ(q) = softmax(q) and φ(k) = softmax(k) over the head dimension,
                 log α = logsigmoid(k) / 16              (the gate is the pooled key projection; the
                                                          pooling is the identity in the shipped configs)
                 o_gla = GLA(φ(q), φ(k), v, log α), scale 1, no norm, no output gate, no RoPE
    SWA branch:  o_swa = softmax attention with RoPE over a window of 64 tokens

    ``liger``      Liger Attention:  y = (0.5 o_swa + 0.5 o_gla) W_o
    ``liger_gla``  the GLA branch alone (a pure recurrence):  y = o_gla W_o

Grouped-query attention (n_kv_heads < n_heads) is carried as the authors' code does: the key, value
and gate heads are repeated to the query heads inside the linear branch (head h reads key/value
head h // (n_heads / n_kv_heads)), so the layer keeps the attention layer's parameters exactly.

``liger_gla`` with ``gate_rank`` r > 0 replaces the key gate by GLA's own low-rank gate
log α = logsigmoid((x W_1) W_2 + b) / 16 (new parameters, N(0, 0.02), b = 0): the plain-GLA
baseline with a randomly initialised gate that ``recurlab convert --to gla`` builds.

``LigerAttention.from_attention(layer)`` / ``LigerGLA.from_attention(layer)`` build one from a
trained ``attention`` layer, copying its projections (and its head layout, biases and RoPE settings).
States: LigerState (KVCache of the last window - 1 tokens, GLA state S (B, H, Dh, Dh)) for ``liger``;
MatrixState(S) for ``liger_gla``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from ..state import PrefixStates, State
from .attention import Attention, head_layout
from .base import TokenMixer
from .registry import register
from .states import MatrixState


def liger_linear_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor,
                        gate_normalizer: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Liger's GLA inputs from unrotated projections: q (B, T, H, Dh); k, v, g (B, T, H_kv, Dh) ->
    (softmax(q), softmax(k), v, logsigmoid(g) / gate_normalizer), each (B, T, H, Dh), key/value/gate heads
    repeated to H (head h reads head h // (H / H_kv), as transformers' ``repeat_kv``)."""
    groups = q.shape[2] // k.shape[2]
    if groups > 1:
        k, v, g = (t.repeat_interleave(groups, dim=2) for t in (k, v, g))
    return torch.softmax(q, -1), torch.softmax(k, -1), v, F.logsigmoid(g) / gate_normalizer


def _attention_options(attention: Attention) -> dict:
    """The head layout and biases of an attention layer, as constructor arguments."""
    if not isinstance(attention, Attention):
        raise ValueError(f"attention must be a recurlab attention layer, got {type(attention).__name__}")
    return {"n_heads": attention.n_heads, "n_kv_heads": attention.n_kv_heads, "head_dim": attention.head_dim,
            "qkv_bias": attention.q_proj.bias is not None, "out_bias": attention.o_proj.bias is not None}


def _copy_projections(layer: nn.Module, attention: Attention) -> None:
    """Copy W_q, W_k, W_v, W_o (and biases) of ``attention`` into ``layer`` (same names and shapes)."""
    for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
        getattr(layer, name).load_state_dict(getattr(attention, name).state_dict())


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
    tree_attention = False  # the window drops keys a branch would need

    def __init__(self, d_model: int, n_heads: int | None = None, window: int = 64, rope_base: float = 10000.0,
                 gate_normalizer: float = 16.0, mix: float = 0.5, n_kv_heads: int | None = None,
                 head_dim: int | None = None, qkv_bias: bool = False, out_bias: bool = False,
                 rope_scaling: dict | None = None):
        """The attention options (n_kv_heads, head_dim, qkv_bias, out_bias, rope_scaling) are those of
        :class:`Attention`; mix weighs the window branch (1 - mix the linear one)."""
        super().__init__(d_model, n_heads, n_kv_heads, rope_base, window, head_dim, qkv_bias, out_bias, rope_scaling)
        self.gate_normalizer = gate_normalizer
        self.mix_weight = mix

    @classmethod
    def from_attention(cls, attention: Attention, window: int = 64) -> "LigerAttention":
        """A Liger layer with the projections, head layout, biases and RoPE settings of a (trained) attention layer."""
        options = _attention_options(attention)
        weight = attention.q_proj.weight
        liger = cls(attention.d_model, window=window, rope_base=attention.rope_base,
                    rope_scaling=attention.rope_scaling, **options).to(device=weight.device, dtype=weight.dtype)
        _copy_projections(liger, attention)
        return liger

    def _linear_inputs(self, x):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim)
        k = self.k_proj(x).view(B, T, self.n_kv_heads, self.head_dim)
        v = self.v_proj(x).view(B, T, self.n_kv_heads, self.head_dim)
        return liger_linear_inputs(q, k, v, k, self.gate_normalizer)

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


@register("liger_gla", kind="token", paper="Lan et al. 2025, Liger (linearised attention, GLA branch only)",
          state="S: Dh * Dh per head", tiny={"n_heads": 2})
class LigerGLA(TokenMixer):
    state_type = MatrixState
    prefix_states = True  # every prefix's S from the parallel form (ops.gla_prefix_states)

    def __init__(self, d_model: int, n_heads: int | None = None, n_kv_heads: int | None = None,
                 head_dim: int | None = None, qkv_bias: bool = False, out_bias: bool = False,
                 gate_normalizer: float = 16.0, gate_rank: int = 0):
        """n_heads query heads of width head_dim (default d_model // n_heads), n_kv_heads key/value heads
        (default n_heads), biases as :class:`Attention`'s; gate_rank 0: the gate is the key projection (Liger),
        r > 0: GLA's low-rank gate x W_1 W_2 + b (d_model -> r -> n_kv_heads * head_dim), new parameters."""
        super().__init__(d_model)
        self.n_heads, self.n_kv_heads, self.head_dim = head_layout(d_model, n_heads, n_kv_heads, head_dim)
        if self.head_dim < 1:
            raise ValueError(f"head_dim must be a positive int, got {self.head_dim}")
        if not isinstance(gate_rank, int) or gate_rank < 0:
            raise ValueError(f"gate_rank must be an int >= 0 (0: the gate is the key projection), got {gate_rank!r}")
        self.gate_normalizer = gate_normalizer
        q, kv = self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim
        self.q_proj = nn.Linear(d_model, q, bias=qkv_bias)
        self.k_proj = nn.Linear(d_model, kv, bias=qkv_bias)
        self.v_proj = nn.Linear(d_model, kv, bias=qkv_bias)
        self.o_proj = nn.Linear(q, d_model, bias=out_bias)
        self.gate_rank = gate_rank
        if gate_rank:
            self.gate_down = nn.Linear(d_model, gate_rank, bias=False)
            self.gate_up = nn.Linear(gate_rank, kv, bias=True)
            nn.init.normal_(self.gate_down.weight, std=0.02)
            nn.init.normal_(self.gate_up.weight, std=0.02)
            nn.init.zeros_(self.gate_up.bias)

    @classmethod
    def from_attention(cls, attention: Attention, gate_rank: int = 0) -> "LigerGLA":
        """A layer with the projections, head layout and biases of a (trained) attention layer (the gate, for
        gate_rank > 0, is new: drawn from the global random generator)."""
        options = _attention_options(attention)
        weight = attention.q_proj.weight
        layer = cls(attention.d_model, gate_rank=gate_rank, **options).to(device=weight.device, dtype=weight.dtype)
        _copy_projections(layer, attention)
        return layer

    def _inputs(self, x):
        """x (B, T, d_model) -> φ(q), φ(k), v, log α, each (B, T, H, Dh)."""
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim)
        k = self.k_proj(x).view(B, T, self.n_kv_heads, self.head_dim)
        v = self.v_proj(x).view(B, T, self.n_kv_heads, self.head_dim)
        g = self.gate_up(self.gate_down(x)).view(B, T, self.n_kv_heads, self.head_dim) if self.gate_rank else k
        return liger_linear_inputs(q, k, v, g, self.gate_normalizer)

    def mix(self, x, state):
        o, S = ops.gla(*self._inputs(x), scale=1.0, initial_state=state.S)
        return self.o_proj(o.flatten(-2)), MatrixState(S)

    def mix_prefix_states(self, x, state):
        q, k, v, log_alpha = self._inputs(x)
        o, _ = ops.gla(q, k, v, log_alpha, scale=1.0, initial_state=state.S, output_final_state=False)
        along = MatrixState(ops.gla_prefix_states(k, v, log_alpha, state.S))
        return self.o_proj(o.flatten(-2)), PrefixStates(state, along, x.shape[1])

    def mix_step(self, x_t, state):
        q, k, v, log_alpha = (t.squeeze(1) for t in self._inputs(x_t.unsqueeze(1)))
        o, S = ops.gla_step(q, k, v, log_alpha, state.S, scale=1.0)
        return self.o_proj(o.flatten(-2)), MatrixState(S)

    def init_state(self, batch_size, device=None, dtype=None):
        acc = torch.float64 if dtype == torch.float64 else torch.float32
        return MatrixState(torch.zeros(batch_size, self.n_heads, self.head_dim, self.head_dim, device=device,
                                       dtype=acc))
