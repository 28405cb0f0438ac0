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

from .. import ops
from .base import TokenMixer
from .registry import register


@register("mingru", kind="token", paper="Feng et al. 2024, Were RNNs All We Needed? (minGRU)", state="h: expand * d_model")
class MinGRU(TokenMixer):
    def __init__(self, d_model: int, expand: int = 1):
        super().__init__(d_model)
        self.hidden_size = expand * d_model
        self.memory_dim = self.hidden_size
        self.to_gate_and_candidate = nn.Linear(d_model, 2 * self.hidden_size)
        self.out = nn.Linear(self.hidden_size, d_model) if expand != 1 else nn.Identity()

    def _gates(self, x):
        k, candidate = self.to_gate_and_candidate(x).chunk(2, dim=-1)
        log_keep = F.logsigmoid(-k)  # log(1 - z)
        return log_keep, torch.sigmoid(k) * candidate  # z ⊙ h̃

    def forward_with_memory(self, x, state=None):
        self.check_sequence(x)
        log_keep, inp = self._gates(x)
        h, h_last = ops.diag_scan(log_keep, inp, state)
        return self.out(h), h_last, h

    def forward(self, x, state=None):
        y, state, _ = self.forward_with_memory(x, state)
        return y, state

    def step_with_memory(self, x_t, state=None):
        self.check_token(x_t)
        log_keep, inp = self._gates(x_t)
        h_t, state = ops.diag_step(log_keep, inp, state)
        return self.out(h_t), state, h_t

    def step(self, x_t, state=None):
        y_t, state, _ = self.step_with_memory(x_t, state)
        return y_t, state

    def init_state(self, batch_size, device=None, dtype=None):
        return torch.zeros(batch_size, self.hidden_size, device=device, dtype=torch.float64 if dtype == torch.float64 else torch.float32)
