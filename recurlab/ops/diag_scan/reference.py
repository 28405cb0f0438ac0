"""The ``reference`` backend of ``diag_scan``: the plain loop over time, the ground truth.

    h_t = exp(log_a_t) * h_{t-1} + b_t

(Feng et al. 2024, "Were RNNs All We Needed?", eq. 4). Every other backend is
tested against this one in value and gradient.
"""

from __future__ import annotations

import torch

from .. import _checks


def diag_scan_reference(
    log_a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The plain loop: log_a, b (B, T, D), h0 (B, D) or None -> h (B, T, D) in b's dtype, h_last (B, D).

    Accumulates in float32 (float64 for float64 inputs); unbind + stack keeps
    the backward O(T).
    """
    acc = _checks.accumulation_dtype(b.dtype)
    h = h0.to(acc) if h0 is not None else b.new_zeros((b.shape[0], b.shape[2]), dtype=acc)
    states = []
    for log_a_t, b_t in zip(log_a.to(acc).unbind(1), b.to(acc).unbind(1)):
        h = torch.exp(log_a_t) * h + b_t
        states.append(h)
    return torch.stack(states, 1).to(b.dtype), h
