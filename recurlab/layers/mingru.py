"""minGRU (Feng et al. 2024, "Were RNNs All We Needed?", sec. 3.1, eqs. 4-5).

The GRU with its gates made functions of x_t only, so the whole sequence is one
diagonal scan:

    z_t = σ(Linear_z(x_t)),   h̃_t = Linear_h(x_t)
    h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t

computed as ``diag_scan(log(1 - z_t), z_t ⊙ h̃_t)`` with log(1 - z_t) =
logsigmoid(-k_t) (never log of a rounded 1 - σ). The paper's log-space variant
passes h̃ through g(x) = x + 0.5 / σ(x) to keep it positive for a log-space scan;
recurlab's scans take negative inputs exactly, so h̃ stays linear (the paper's
eq. 5 form). With ``expand > 1`` the state is wider than d_model and a final
Linear maps it back. State: h (B, expand * d_model), float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .diagonal import DiagonalRecurrence
from .registry import register


@register("mingru", kind="token", paper="Feng et al. 2024, Were RNNs All We Needed? (minGRU)", state="h: expand * d_model",
          tiny={})
class MinGRU(DiagonalRecurrence):
    def __init__(self, d_model: int, expand: int = 1):
        super().__init__(d_model, expand * d_model)
        self.to_gate_and_candidate = nn.Linear(d_model, 2 * self.hidden_size)

    def gates(self, x):
        k, candidate = self.to_gate_and_candidate(x).chunk(2, dim=-1)
        log_keep = F.logsigmoid(-k)  # log(1 - z)
        return log_keep, torch.sigmoid(k) * candidate  # z ⊙ h̃
