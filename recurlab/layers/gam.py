"""Gated Associative Memory (GAM, 2025, "Gated Associative Memory: A Parallel O(N) Architecture
for Efficient Sequence Modeling"), as its authors' code defines it:

    local_t  = DWConv_3(x)_t                      causal depthwise convolution, kernel 3, bias
    global_t = softmax(x_t Mᵀ) M                  M: (num_slots, d_model), a learned memory bank
    [a_t, b_t] = x_t W_g + b_g
    y_t = σ(a_t) ⊙ local_t + σ(b_t) ⊙ global_t

The "associative memory" is read with the current token as the query; the bank M
is a parameter and does not depend on the sequence. So the only mixing across
tokens is the kernel-3 convolution: a token sees the 2 tokens before it, and a
stack of L GAM layers sees 2L tokens back (tests/layers/test_gam.py checks this).
That is what the released code computes, and recurlab implements it as such.
State: InputWindow, the last 2 inputs (B, 2, d_model).
"""

from __future__ import annotations

import torch
from torch import nn

from .. import ops
from .base import TokenMixer
from .registry import register
from .states import InputWindow


@register("gam", kind="token", paper="GAM 2025, Gated Associative Memory", state="last kernel_size - 1 inputs",
          tiny={"num_slots": 8})
class GatedAssociativeMemory(TokenMixer):
    state_type = InputWindow

    def __init__(self, d_model: int, num_slots: int = 512, kernel_size: int = 3):
        super().__init__(d_model)
        self.kernel_size = kernel_size
        self.conv_weight = nn.Parameter(torch.empty(d_model, kernel_size))
        self.conv_bias = nn.Parameter(torch.zeros(d_model))
        nn.init.kaiming_uniform_(self.conv_weight, a=5**0.5)  # as nn.Conv1d does
        self.memory = nn.Parameter(torch.randn(num_slots, d_model) * d_model**-0.5)
        self.gate = nn.Linear(d_model, 2 * d_model)

    def _combine(self, x, local):
        read = torch.softmax(x @ self.memory.t(), dim=-1) @ self.memory
        a, b = self.gate(x).chunk(2, dim=-1)
        return torch.sigmoid(a) * local + torch.sigmoid(b) * read

    def mix(self, x, state):
        local, inputs = ops.causal_conv1d(x, self.conv_weight, self.conv_bias, state.inputs)
        return self._combine(x, local), InputWindow(inputs)

    def mix_step(self, x_t, state):
        local, inputs = ops.causal_conv1d_step(x_t, state.inputs, self.conv_weight, self.conv_bias)
        return self._combine(x_t, local), InputWindow(inputs)

    def init_state(self, batch_size, device=None, dtype=None):
        return InputWindow(torch.zeros(batch_size, self.kernel_size - 1, self.d_model, device=device, dtype=dtype))
