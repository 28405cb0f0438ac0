"""The ``reference`` backend of ``gla``: the recurrence step by step, the ground truth.

    S_t = diag(alpha_t) S_{t-1} + k_t v_t^T,      o_t = scale * S_t^T q_t

(Yang et al. 2023, "Gated Linear Attention Transformers with Hardware-Efficient
Training", eqs. 1-3). Every other backend is tested against this one in value
and gradient.
"""

from __future__ import annotations

import torch


def gla_reference(q, k, v, log_alpha, scale, state):
    """The step loop: q, k (B, T, H, K), v (B, T, H, V), log_alpha (B, T, H, K or 1),
    state (B, H, K, V) or None, all in one accumulation dtype -> o (B, T, H, V), S_last (B, H, K, V)."""
    B, T, H, K = q.shape
    S = state if state is not None else q.new_zeros(B, H, K, v.shape[-1])
    outputs = []
    for q_t, k_t, v_t, g_t in zip(q.unbind(1), k.unbind(1), v.unbind(1), log_alpha.unbind(1)):
        S = torch.exp(g_t).unsqueeze(-1) * S + k_t.unsqueeze(-1) * v_t.unsqueeze(-2)
        outputs.append(scale * torch.einsum("bhk,bhkv->bhv", q_t, S))
    return torch.stack(outputs, 1), S
