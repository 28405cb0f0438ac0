"""minLSTM (Feng et al. 2024, "Were RNNs All We Needed?", sec. 3.2, eqs. 8-10).

The LSTM with gates from x_t only and the forget/input gates normalised to sum
to one (time-independent output scale):

    f_t = σ(Linear_f(x_t)),  i_t = σ(Linear_i(x_t)),  h̃_t = Linear_h(x_t)
    f'_t = f_t / (f_t + i_t),  i'_t = i_t / (f_t + i_t)
    h_t = f'_t ⊙ h_{t-1} + i'_t ⊙ h̃_t

with log f'_t = logσ(k_f) - logaddexp(logσ(k_f), logσ(k_i)) computed in log
space, then one ``diag_scan``. State: h (B, expand * d_model), float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from .base import TokenMixer
from .registry import register


@register("minlstm", kind="token", paper="Feng et al. 2024, Were RNNs All We Needed? (minLSTM)", state="h: expand * d_model")
class MinLSTM(TokenMixer):
    def __init__(self, d_model: int, expand: int = 1):
        super().__init__(d_model)
        self.hidden_size = expand * d_model
        self.memory_dim = self.hidden_size
        self.to_gates_and_candidate = nn.Linear(d_model, 3 * self.hidden_size)
        self.out = nn.Linear(self.hidden_size, d_model) if expand != 1 else nn.Identity()

    def _gates(self, x):
        k_f, k_i, candidate = self.to_gates_and_candidate(x).chunk(3, dim=-1)
        log_f, log_i = F.logsigmoid(k_f), F.logsigmoid(k_i)
        log_total = torch.logaddexp(log_f, log_i)
        return log_f - log_total, torch.exp(log_i - log_total) * candidate  # log f', i' ⊙ h̃

    def forward_with_memory(self, x, state=None):
        self.check_sequence(x)
        log_f, inp = self._gates(x)
        h, h_last = ops.diag_scan(log_f, inp, state)
        return self.out(h), h_last, h

    def forward(self, x, state=None):
        y, state, _ = self.forward_with_memory(x, state)
        return y, state

    def step_with_memory(self, x_t, state=None):
        self.check_token(x_t)
        log_f, inp = self._gates(x_t)
        h_t, state = ops.diag_step(log_f, inp, state)
        return self.out(h_t), state, h_t

    def step(self, x_t, state=None):
        y_t, state, _ = self.step_with_memory(x_t, state)
        return y_t, state

    def init_state(self, batch_size, device=None, dtype=None):
        return torch.zeros(batch_size, self.hidden_size, device=device, dtype=torch.float64 if dtype == torch.float64 else torch.float32)
