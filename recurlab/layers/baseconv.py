"""BaseConv (Arora et al. 2023, "Zoology: Measuring and Improving Recall in Efficient Language
Models", sec. 4, eq. 2; the authors' zoology/mixers/base_conv.py):

    y = (u W + b) ⊙ (h ∗ u) + u

a linear projection gating a causal depthwise convolution of the same input. h
is a short filter (kernel_size taps with bias, default 3) or, with
``kernel_size=-1``, an explicit filter as long as ``l_max`` applied by FFT.
``use_act`` puts SiLU on both factors. The "+ u" is part of the authors' mixer
(inside the block's own residual), kept here. The Zoology study shows this
gated convolution reaches attention's quality except on associative recall,
where it needs a width growing with the sequence.
State: InputWindow, the last (kernel length - 1) inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from .base import TokenMixer
from .registry import register
from .states import InputWindow


@register("baseconv", kind="token", paper="Arora et al. 2023, Zoology (BaseConv)", state="last kernel_size - 1 inputs",
          tiny={})
class BaseConv(TokenMixer):
    state_type = InputWindow

    def __init__(self, d_model: int, kernel_size: int = 3, l_max: int = 2048, use_act: bool = False):
        super().__init__(d_model)
        self.long = kernel_size == -1
        self.kernel_len = l_max if self.long else kernel_size
        if self.kernel_len < 1:
            raise ValueError(f"kernel_size must be >= 1 or -1 (a long filter of l_max taps), got {kernel_size}")
        self.use_act = use_act
        self.projection = nn.Linear(d_model, d_model)
        if self.long:  # explicit long filter, indexed by lag, small at init like the authors' LongConvolution
            self.filter = nn.Parameter(torch.randn(d_model, self.kernel_len) * 0.002)
        else:
            self.filter = nn.Parameter(torch.empty(d_model, kernel_size))
            nn.init.kaiming_uniform_(self.filter, a=5**0.5)
            self.filter_bias = nn.Parameter(torch.zeros(d_model))

    def _conv(self, u, state):
        if self.long:
            return ops.long_conv(u, self.filter, state=state)
        return ops.causal_conv1d(u, self.filter, self.filter_bias, state)

    def _conv_step(self, u_t, state):
        if self.long:
            return ops.long_conv_step(u_t, state, self.filter)
        return ops.causal_conv1d_step(u_t, state, self.filter, self.filter_bias)

    def _combine(self, u, conv):
        proj = self.projection(u)
        if self.use_act:
            return F.silu(conv) * F.silu(proj) + u
        return conv * proj + u

    def mix(self, x, state):
        conv, inputs = self._conv(x, state.inputs)
        return self._combine(x, conv), InputWindow(inputs)

    def mix_step(self, x_t, state):
        conv, inputs = self._conv_step(x_t, state.inputs)
        return self._combine(x_t, conv), InputWindow(inputs)

    def init_state(self, batch_size, device=None, dtype=None):
        return InputWindow(torch.zeros(batch_size, self.kernel_len - 1, self.d_model, device=device, dtype=dtype))
