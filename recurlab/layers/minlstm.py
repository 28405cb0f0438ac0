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

from .diagonal import DiagonalRecurrence
from .registry import register


@register("minlstm", kind="token", paper="Feng et al. 2024, Were RNNs All We Needed? (minLSTM)", state="h: expand * d_model",
          tiny={})
class MinLSTM(DiagonalRecurrence):
    def __init__(self, d_model: int, expand: int = 1):
        super().__init__(d_model, expand * d_model)
        self.to_gates_and_candidate = nn.Linear(d_model, 3 * self.hidden_size)

    def gates(self, x):
        k_f, k_i, candidate = self.to_gates_and_candidate(x).chunk(3, dim=-1)
        log_f, log_i = F.logsigmoid(k_f), F.logsigmoid(k_i)
        log_total = torch.logaddexp(log_f, log_i)
        return log_f - log_total, torch.exp(log_i - log_total) * candidate  # log f', i' ⊙ h̃
