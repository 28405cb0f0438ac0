"""Channel Gated Learning Unit (CGLU), after the CGLU-BNF forecasting model (2025, "forecasting
with incomplete data"): a learnable activation and gated residual channel filtering.

No code was released and the abstract gives no formula, so recurlab implements
its description as follows (a documented choice, see docs/layers.md):

    h = W_2 (x_1 ⊙ σ(β ⊙ x_1)) + b_2,  x_1 = W_1 x + b_1     learnable activation: Swish with a
                                                             trainable slope β per hidden channel
    g = σ(W_g x + b_g)                                       per-channel filter gate
    y = g ⊙ h + (1 - g) ⊙ x                                  gated residual: each channel passes
                                                             its input through or its filtered value
"""

from __future__ import annotations

import torch
from torch import nn

from .base import ChannelMixer
from .registry import register


@register("cglu", kind="channel", paper="CGLU-BNF 2025, channel gated learning unit (formula: recurlab's reading)")
class ChannelGatedLearningUnit(ChannelMixer):
    def __init__(self, d_model: int, hidden_size: int | None = None):
        super().__init__(d_model)
        hidden = hidden_size or 2 * d_model
        self.up = nn.Linear(d_model, hidden)
        self.slope = nn.Parameter(torch.ones(hidden))
        self.down = nn.Linear(hidden, d_model)
        self.gate = nn.Linear(d_model, d_model)

    def forward(self, x):
        self.check_input(x)
        x1 = self.up(x)
        h = self.down(x1 * torch.sigmoid(self.slope * x1))
        g = torch.sigmoid(self.gate(x))
        return g * h + (1 - g) * x
