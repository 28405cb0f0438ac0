"""The gated short convolution of Liquid AI's LFM2, the language backbone family AutoNeural (Nexa AI 2025) builds on
(read from the Hugging Face ``transformers`` implementation, models/lfm2/modeling_lfm2.py, ``Lfm2ShortConv``):

    [b_t, c_t, h_t] = W_in x_t                     (d -> 3d, no bias)
    u_t = b_t ⊙ h_t                                 input gate
    v_t = sum_{i<k} w_i ⊙ u_{t-k+1+i}               causal depthwise convolution, k = 3 taps (conv_L_cache), no bias
    y_t = W_out (c_t ⊙ v_t)                         output gate, then d -> d (no bias)

No activation and no normalisation inside: the gates are plain products, which keeps every intermediate bounded
by its inputs and makes the layer friendly to integer-only inference (AutoNeural's point). Initialisation as
LFM2's: every weight (both projections and the filter) N(0, 0.02²).

State: the last k - 1 gated inputs u (B, k - 1, d), the same size at any length (an attention layer keeps
every key and value). In LFM2 a few attention layers are interleaved among these (LFM2-350M: 6 of 16), which is
what the ``lm-autoneural`` preset (recurlab/train/lm.py) does at recurlab's scale.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import ops
from .base import TokenMixer
from .registry import register
from .states import InputWindow


@register("short_conv", kind="token", paper="Liquid AI 2025, LFM2 gated short convolution (AutoNeural's backbone)",
          state="last kernel_size - 1 gated inputs", tiny={})
class GatedShortConv(TokenMixer):
    state_type = InputWindow

    def __init__(self, d_model: int, kernel_size: int = 3, init_std: float = 0.02):
        super().__init__(d_model)
        if not isinstance(kernel_size, int) or kernel_size < 1:
            raise ValueError(f"kernel_size must be an int >= 1, got {kernel_size!r}")
        self.kernel_size = kernel_size
        self.in_proj = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)
        self.filter = nn.Parameter(torch.empty(d_model, kernel_size))  # filter[:, k-1] multiplies u_t
        for weight in (self.in_proj.weight, self.out_proj.weight, self.filter):
            nn.init.normal_(weight, std=init_std)

    def _gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(u = b ⊙ h, c) of x (..., d)."""
        b, c, h = self.in_proj(x).chunk(3, dim=-1)
        return b * h, c

    def mix(self, x, state):
        u, c = self._gates(x)
        v, window = ops.causal_conv1d(u, self.filter, None, state.inputs)
        return self.out_proj(c * v), InputWindow(window)

    def mix_step(self, x_t, state):
        u, c = self._gates(x_t)
        v, window = ops.causal_conv1d_step(u, state.inputs, self.filter)
        return self.out_proj(c * v), InputWindow(window)

    def init_state(self, batch_size, device=None, dtype=None):
        return InputWindow(torch.zeros(batch_size, self.kernel_size - 1, self.d_model, device=device, dtype=dtype))

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, kernel_size={self.kernel_size}"
