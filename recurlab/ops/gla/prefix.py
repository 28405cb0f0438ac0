"""The state of gated linear attention after every prefix of a sequence, from the parallel form.

    S_t = diag(A_t) S_0 + sum_{s <= t} diag(A_t / A_s) k_s v_s^T,   A_t = prod_{r <= t} alpha_r

(the unrolled recurrence S_t = diag(alpha_t) S_{t-1} + k_t v_t^T of Yang et al. 2023, eq. 1). All T
states are computed in one batched contraction, with log A_t - log A_s <= 0 for s <= t, so no factor
exceeds 1. Cost: O(T^2 H K + T^2 H K V) time and T states of memory: it is meant for the few tokens a
speculative decoder verifies at once (recurlab/decoding/verify.py), not for long sequences.
"""

from __future__ import annotations

import torch

from .. import _checks
from .interface import _check_inputs


def gla_prefix_states(k: torch.Tensor, v: torch.Tensor, log_alpha: torch.Tensor,
                      initial_state: torch.Tensor | None = None) -> torch.Tensor:
    """States after every prefix: k (B, T, H, K), v (B, T, H, V), log_alpha (B, T, H, K) or (B, T, H, 1),
    initial_state (B, H, K, V) or None (zeros) -> (B, T, H, K, V), position t - 1 the state after t tokens,
    float32 (float64 for float64 inputs). Its last position equals :func:`recurlab.ops.gla`'s final state."""
    B, T, H, K, V = _check_inputs(k, k, v, log_alpha, initial_state, time_axis=True)
    _checks.check_log_gate("log_alpha", log_alpha)
    acc = _checks.accumulation_dtype(v.dtype)
    k, v, log_alpha = (x.to(acc) for x in (k, v, log_alpha))
    log_A = torch.cumsum(log_alpha.expand(B, T, H, K), dim=1)  # (B, T, H, K)
    # decay from s to t (t rows, s columns), kept only for s <= t: exp(log A_t - log A_s) <= 1
    pairwise = log_A.unsqueeze(2) - log_A.unsqueeze(1)  # (B, T_t, T_s, H, K)
    causal = torch.ones(T, T, dtype=torch.bool, device=k.device).tril().view(1, T, T, 1, 1)
    decay = torch.where(causal, pairwise, torch.full_like(pairwise, float("-inf"))).exp()
    states = torch.einsum("btshk,bshk,bshv->bthkv", decay, k, v)
    if initial_state is not None:
        states = states + log_A.exp().unsqueeze(-1) * initial_state.to(acc).unsqueeze(1)
    return states
