"""Gated Linear Attention layer (Yang et al. 2023, "Gated Linear Attention Transformers with
Hardware-Efficient Training", sec. 4.4, eqs. 9-11), with the parametrisation of the authors'
flash-linear-attention library:

    q = x W_q,  k = x W_k                         (d_model -> d_k = expand_k * d_model)
    v = x W_v                                    (d_model -> d_v = expand_v * d_model)
    log α = logsigmoid((x W_α1) W_α2 + b_α) / τ   (low rank 16, τ = 16: the paper's normaliser)
    S_t = diag(α_t) S_{t-1} + k_t v_tᵀ,  o_t = S_tᵀ q_t / sqrt(d_k / H)    per head (recurlab.ops.gla)
    y = W_o (RMSNorm_head(o_t) ⊙ swish(x W_g))

Initialisation N(0, 0.02), biases 0 (the decay then starts at σ(0)^(1/16) ≈ 0.958).
State: MatrixState(S), S (B, H, d_k/H, d_v/H) float32. The memory read-out (for gmu layers) is
o before the norm and output gate, width d_v.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from ..state import PrefixStates
from .base import TokenMixer
from .registry import register
from .states import MatrixState


@register("gla", kind="token", paper="Yang et al. 2023, Gated Linear Attention", state="S: d_k * d_v / heads",
          tiny={"n_heads": 2})
class GatedLinearAttention(TokenMixer):
    state_type = MatrixState
    produces_memory = True
    prefix_states = True  # every prefix's S from the parallel form (ops.gla_prefix_states)

    def __init__(self, d_model: int, n_heads: int = 4, expand_k: float = 0.5, expand_v: float = 1.0,
                 gate_low_rank: int = 16, gate_normalizer: float = 16.0, norm_eps: float = 1e-5):
        super().__init__(d_model)
        self.d_k, self.d_v = int(d_model * expand_k), int(d_model * expand_v)
        if self.d_k % n_heads or self.d_v % n_heads:
            raise ValueError(f"n_heads={n_heads} must divide d_k={self.d_k} and d_v={self.d_v}")
        self.n_heads = n_heads
        self.head_k, self.head_v = self.d_k // n_heads, self.d_v // n_heads
        self.gate_normalizer = gate_normalizer
        self.memory_dim = self.d_v
        self.q_proj = nn.Linear(d_model, self.d_k, bias=False)
        self.k_proj = nn.Linear(d_model, self.d_k, bias=False)
        self.v_proj = nn.Linear(d_model, self.d_v, bias=False)
        self.gate_down = nn.Linear(d_model, gate_low_rank, bias=False)
        self.gate_up = nn.Linear(gate_low_rank, self.d_k, bias=True)
        self.g_proj = nn.Linear(d_model, self.d_v, bias=False)
        self.head_norm = nn.RMSNorm(self.head_v, eps=norm_eps)
        self.o_proj = nn.Linear(self.d_v, d_model, bias=False)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def _project(self, x):
        lead = x.shape[:-1]
        q = self.q_proj(x).view(*lead, self.n_heads, self.head_k)
        k = self.k_proj(x).view(*lead, self.n_heads, self.head_k)
        v = self.v_proj(x).view(*lead, self.n_heads, self.head_v)
        log_alpha = F.logsigmoid(self.gate_up(self.gate_down(x))) / self.gate_normalizer
        return q, k, v, log_alpha.view(*lead, self.n_heads, self.head_k)

    def _output(self, x, o):
        o = self.head_norm(o).flatten(-2) * F.silu(self.g_proj(x))
        return self.o_proj(o)

    def mix_with_memory(self, x, state):
        q, k, v, log_alpha = self._project(x)
        o, S = ops.gla(q, k, v, log_alpha, initial_state=state.S)
        return self._output(x, o), MatrixState(S), o.flatten(-2)

    def mix_prefix_states(self, x, state):
        q, k, v, log_alpha = self._project(x)
        o, _ = ops.gla(q, k, v, log_alpha, initial_state=state.S, output_final_state=False)
        along = MatrixState(ops.gla_prefix_states(k, v, log_alpha, state.S))
        return self._output(x, o), PrefixStates(state, along, x.shape[1])

    def mix_step_with_memory(self, x_t, state):
        q, k, v, log_alpha = self._project(x_t)
        o, S = ops.gla_step(q, k, v, log_alpha, state.S)
        return self._output(x_t, o), MatrixState(S), o.flatten(-2)

    def init_state(self, batch_size, device=None, dtype=None):
        acc = torch.float64 if dtype == torch.float64 else torch.float32
        return MatrixState(torch.zeros(batch_size, self.n_heads, self.head_k, self.head_v, device=device, dtype=acc))
