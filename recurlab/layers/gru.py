"""The classic GRU (Cho et al. 2014, "Learning Phrase Representations using RNN Encoder-Decoder"),
through ``torch.nn.GRU``: the baseline every efficient recurrent unit is measured against.

    r_t = σ(W_r x_t + U_r h_{t-1}),  z_t = σ(W_z x_t + U_z h_{t-1})
    n_t = tanh(W_n x_t + r_t ⊙ (U_n h_{t-1}))
    h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}

The gates read h_{t-1}, so training is sequential over time (cuDNN / MKL-DNN
kernels make each step fast, but the T steps cannot run in parallel).
State: h (B, hidden_size).
"""

from __future__ import annotations

import torch
from torch import nn

from .base import TokenMixer
from .registry import register
from .states import HiddenState


@register("gru", kind="token", paper="Cho et al. 2014, GRU (torch.nn.GRU)", state="h: hidden_size", parallel=False,
          tiny={})
class GRU(TokenMixer):
    state_type = HiddenState

    def __init__(self, d_model: int, hidden_size: int | None = None):
        super().__init__(d_model)
        self.hidden_size = hidden_size or d_model
        self.rnn = nn.GRU(d_model, self.hidden_size, batch_first=True)
        self.out = nn.Linear(self.hidden_size, d_model) if self.hidden_size != d_model else nn.Identity()

    def mix(self, x, state):
        y, h = self.rnn(x, state.h.unsqueeze(0).to(x.dtype))
        return self.out(y), HiddenState(h.squeeze(0))

    def mix_step(self, x_t, state):
        y, state = self.mix(x_t.unsqueeze(1), state)
        return y.squeeze(1), state

    def init_state(self, batch_size, device=None, dtype=None):
        return HiddenState(torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype or torch.float32))
