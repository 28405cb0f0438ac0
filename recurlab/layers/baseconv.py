"""BaseConv (Arora et al. 2023, "Zoology: Measuring and Improving Recall in Efficient Language
Models", sec. 4, eq. 2; the authors' zoology/mixers/base_conv.py):

    y = (u W + b) ⊙ (h ∗ u) + u

a linear projection gating a causal depthwise convolution of the same input. h is one of:

- a short filter (``kernel_size`` taps with bias, default 3);
- ``kernel_size=-1``: an explicit filter of ``l_max`` lags, one free weight per channel and lag,
  applied by FFT; initialised N(0, 0.002^2) (recurlab's choice: the authors' LongConvolution
  draws N(0, 1) and adds the input back, h ∗ u + u; Zoology's figure 2 does not use it);
- ``kernel_size=-1, implicit_long_conv=True``: Zoology's implicit long filter (the one its
  figure 2 uses in the long layers: zoology/mixers/convolution.py, ImplicitLongConvolution),
  h[:, t] = W2 ReLU(W1 z_t + b1) + b2 for lag t < l_max, an MLP 3 -> ``filter_hidden`` (16) -> d
  of fixed positional features z_t = [t / (l_max - 1), cos(2π 1e-4 t / l_max), -sin(2π 1e-4 t / l_max)],
  and, as in the authors' fft_conv, the convolution output includes the input: h ∗ u + u.

``use_act`` puts SiLU on both factors. The outer "+ u" is part of the authors' mixer
(inside the block's own residual), kept here. Zoology's figure 2 builds its 2-layer BaseConv with
``kernel_size=[3, -1]`` (short in layer 0, implicit long in layer 1): ModelConfig.layer_kwargs. The Zoology study shows this
gated convolution reaches attention's quality except on associative recall,
where it needs a width growing with the sequence.
State: InputWindow, the last (kernel length - 1) inputs (l_max - 1 for a long filter).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from .base import TokenMixer
from .registry import register
from .states import InputWindow


class ImplicitLongFilter(nn.Module):
    """Zoology's implicit long filter: h (d_model, l_max) = MLP(z).T, z (l_max, 3) fixed positional features,
    MLP = Linear(3, hidden) -> ReLU -> Linear(hidden, d_model). Nothing decays or normalises h."""

    def __init__(self, d_model: int, l_max: int, hidden: int = 16):
        super().__init__()
        lag = torch.arange(l_max, dtype=torch.float32).unsqueeze(-1)  # (l_max, 1)
        t = torch.linspace(0, 1, l_max).unsqueeze(-1)  # (l_max, 1)
        angle = 2 * math.pi * 1e-4 * lag / l_max  # one band, frequency 1e-4 (d_emb = 3)
        self.register_buffer("features", torch.cat([t, angle.cos(), -angle.sin()], -1), persistent=False)
        self.mlp = nn.Sequential(nn.Linear(3, hidden), nn.ReLU(), nn.Linear(hidden, d_model))

    def forward(self) -> torch.Tensor:
        return self.mlp(self.features).t()  # (d_model, l_max)


@register("baseconv", kind="token", paper="Arora et al. 2023, Zoology (BaseConv)", state="last kernel_size - 1 inputs",
          tiny={})
class BaseConv(TokenMixer):
    state_type = InputWindow

    def __init__(self, d_model: int, kernel_size: int = 3, l_max: int = 2048, use_act: bool = False,
                 implicit_long_conv: bool = False, filter_hidden: int = 16):
        super().__init__(d_model)
        self.long = kernel_size == -1
        self.implicit = self.long and implicit_long_conv
        self.kernel_len = l_max if self.long else kernel_size
        if self.kernel_len < 1:
            raise ValueError(f"kernel_size must be >= 1 or -1 (a long filter of l_max taps), got {kernel_size}")
        if implicit_long_conv and not self.long:
            raise ValueError(f"implicit_long_conv=True needs kernel_size=-1 (a long filter), got kernel_size={kernel_size}")
        self.use_act = use_act
        self.projection = nn.Linear(d_model, d_model)
        if self.implicit:  # Zoology's ImplicitLongConvolution, with its "+ u" inside the convolution
            self.implicit_filter = ImplicitLongFilter(d_model, l_max, filter_hidden)
            self.register_buffer("conv_skip", torch.ones(d_model), persistent=False)
        elif self.long:  # explicit long filter, indexed by lag; small at init (recurlab's choice, see above)
            self.filter = nn.Parameter(torch.randn(d_model, self.kernel_len) * 0.002)
        else:
            self.filter = nn.Parameter(torch.empty(d_model, kernel_size))
            nn.init.kaiming_uniform_(self.filter, a=5**0.5)
            self.filter_bias = nn.Parameter(torch.zeros(d_model))

    def _conv(self, u, state):
        if self.implicit:
            return ops.long_conv(u, self.implicit_filter().to(u.dtype), self.conv_skip.to(u.dtype), state=state)
        if self.long:
            return ops.long_conv(u, self.filter, state=state)
        return ops.causal_conv1d(u, self.filter, self.filter_bias, state)

    def _conv_step(self, u_t, state):
        if self.implicit:
            return ops.long_conv_step(u_t, state, self.implicit_filter().to(u_t.dtype), self.conv_skip.to(u_t.dtype))
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
