"""The ``reference`` backend of ``attention``: the softmax spelled out, the ground truth.

    o_t = sum_s softmax_s(scale * q_t . k_s  over the allowed s) v_s

(Vaswani et al. 2017, "Attention Is All You Need", eq. 1), in float32 (float64
for float64 inputs), rounded once to the dtype of v.
"""

from __future__ import annotations

import torch

from .. import _checks


def attention_reference(q, k, v, scale, mask, is_causal):
    """q (B, T, H, Dh), k, v (B, S, H, Dh) (keys already repeated for GQA), mask (T, S) bool
    (True = may attend) or None, is_causal: a lower-right triangle over the last T keys -> o (B, T, H, Dh)."""
    acc = _checks.accumulation_dtype(v.dtype)
    scores = torch.einsum("bthd,bshd->bhts", q.to(acc), k.to(acc)) * scale
    if is_causal:
        T, S = scores.shape[-2:]
        mask = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(S - T)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return torch.einsum("bhts,bshd->bthd", weights, v.to(acc)).to(v.dtype)
