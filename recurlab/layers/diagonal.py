"""Token mixers whose whole recurrence is one diagonal scan (minGRU, minLSTM).

A subclass computes, from the input alone, the log-decay and the input of

    h_t = exp(log_a_t) ⊙ h_{t-1} + b_t

in ``gates(x) -> (log_a, b)``; this class runs it with ``recurlab.ops.diag_scan``
(parallel form) or ``diag_step`` (one token), maps h back to d_model with
``self.out`` and offers h as the memory read-out.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import ops
from .base import TokenMixer


class DiagonalRecurrence(TokenMixer):
    def __init__(self, d_model: int, hidden_size: int):
        super().__init__(d_model)
        self.hidden_size = hidden_size
        self.memory_dim = hidden_size
        self.out = nn.Linear(hidden_size, d_model) if hidden_size != d_model else nn.Identity()

    def gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log_a, b), each (..., hidden_size), from x (..., d_model)."""
        raise NotImplementedError

    def forward_with_memory(self, x, state=None):
        self.check_sequence(x)
        h, h_last = ops.diag_scan(*self.gates(x), state)
        return self.out(h), h_last, h

    def forward(self, x, state=None):
        y, state, _ = self.forward_with_memory(x, state)
        return y, state

    def step_with_memory(self, x_t, state=None):
        self.check_token(x_t)
        h_t, state = ops.diag_step(*self.gates(x_t), state)
        return self.out(h_t), state, h_t

    def step(self, x_t, state=None):
        y_t, state, _ = self.step_with_memory(x_t, state)
        return y_t, state

    def init_state(self, batch_size, device=None, dtype=None):
        acc = torch.float64 if dtype == torch.float64 else torch.float32
        return torch.zeros(batch_size, self.hidden_size, device=device, dtype=acc)
