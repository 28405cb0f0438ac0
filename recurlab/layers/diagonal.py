"""Token mixers whose whole recurrence is one diagonal scan (minGRU, minLSTM).

A subclass computes, from the input alone, the log-decay and the input of

    h_t = exp(log_a_t) ⊙ h_{t-1} + b_t

in ``gates(x) -> (log_a, b)``; this class runs it with ``recurlab.ops.diag_scan``
(parallel form) or ``diag_step`` (one token), maps h back to d_model with
``self.out`` and offers h as the memory read-out. The scan's h_t is the state after t tokens,
so ``forward(x, state, prefix_states=True)`` gives every prefix's state at no extra cost.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import ops
from ..state import PrefixStates
from .base import TokenMixer
from .states import HiddenState


class DiagonalRecurrence(TokenMixer):
    state_type = HiddenState
    produces_memory = True
    prefix_states = True  # h_t of the scan is the state after t tokens

    def __init__(self, d_model: int, hidden_size: int):
        super().__init__(d_model)
        self.hidden_size = hidden_size
        self.memory_dim = hidden_size
        self.out = nn.Linear(hidden_size, d_model) if hidden_size != d_model else nn.Identity()

    def gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log_a, b), each (..., hidden_size), from x (..., d_model)."""
        raise NotImplementedError

    def mix_with_memory(self, x, state):
        h, h_last = ops.diag_scan(*self.gates(x), state.h)
        return self.out(h), HiddenState(h_last), h

    def mix_prefix_states(self, x, state):
        h, h_last = ops.diag_scan(*self.gates(x), state.h)
        return self.out(h), PrefixStates(state, HiddenState(h.to(h_last.dtype)), x.shape[1])

    def mix_step_with_memory(self, x_t, state):
        h_t, h_next = ops.diag_step(*self.gates(x_t), state.h)
        return self.out(h_t), HiddenState(h_next), h_t

    def init_state(self, batch_size, device=None, dtype=None):
        acc = torch.float64 if dtype == torch.float64 else torch.float32
        return HiddenState(torch.zeros(batch_size, self.hidden_size, device=device, dtype=acc))
