"""Parallel Gated Network (PGN; Jia et al. 2024, "PGN: The RNN's New Successor is Effective for
Long-Range Time Series Forecasting", eqs. 1-3; the authors' TPGN code).

A Historical Information Extraction (HIE) layer summarises the strictly past
window of inputs, and a gate fuses it with the current step:

    h_t = HIE(x_{t-w}, ..., x_{t-1})                      (zero-padded before the start)
    [g_t, c_t] = W_g [x_t ; h_t] + b_g
    y_t = σ(g_t) ⊙ h_t + (1 - σ(g_t)) ⊙ tanh(c_t)

There is no recurrence: every step reads its window directly, so the path from
any past input to the output has length one, and training is parallel.
In the authors' code the HIE is one convolution over the window (each output
channel reads every input channel at every lag: w·d² weights). recurlab
factorises it as a depthwise lag filter followed by a channel-mixing linear,
h_t = W_h (Σ_j c_j ⊙ x_{t-j}) + b_h, which keeps w·d + d² weights so a window of
hundreds of steps stays affordable (a documented deviation). State: the last w
inputs (B, w, d_model) as an InputWindow, O(w·d) per decoded token.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import ops
from .base import TokenMixer
from .registry import register
from .states import InputWindow


@register("pgn", kind="token", paper="Jia et al. 2024, PGN (Parallel Gated Network)", state="last window inputs",
          tiny={"window": 5})
class ParallelGatedNetwork(TokenMixer):
    state_type = InputWindow

    def __init__(self, d_model: int, window: int = 64):
        super().__init__(d_model)
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = window
        self.lag_filter = nn.Parameter(torch.randn(d_model, window) / window)  # [:, j] multiplies x_{t-w+j}
        self.hie_mix = nn.Linear(d_model, d_model)
        self.gate = nn.Linear(2 * d_model, 2 * d_model)

    def _fuse(self, x, h):
        g, c = self.gate(torch.cat([x, h], -1)).chunk(2, dim=-1)
        g = torch.sigmoid(g)
        return g * h + (1 - g) * torch.tanh(c)

    def mix(self, x, state):
        T = x.shape[1]
        full = torch.cat([state.inputs.to(x.dtype), x], 1)  # (B, w + T, d): w earlier inputs, then x
        # h_t sums full[:, t : t + w] (the w inputs before x_t): a w-tap causal conv over full[:, :-1]
        # whose first w-1 inputs serve as its history
        window_sum, _ = ops.causal_conv1d(full[:, self.window - 1 : -1], self.lag_filter,
                                          state=full[:, : self.window - 1])
        h = self.hie_mix(window_sum)
        return self._fuse(x, h), InputWindow(full[:, T:])

    def mix_step(self, x_t, state):
        history = state.inputs
        window_sum = torch.einsum("bwd,dw->bd", history.to(x_t.dtype), self.lag_filter)
        h = self.hie_mix(window_sum)
        return self._fuse(x_t, h), InputWindow(torch.cat([history[:, 1:], x_t.unsqueeze(1).to(history.dtype)], 1))

    def init_state(self, batch_size, device=None, dtype=None):
        return InputWindow(torch.zeros(batch_size, self.window, self.d_model, device=device, dtype=dtype))
