"""The order-2 Hyena operator (Poli et al. 2023, "Hyena Hierarchy: Towards Larger Convolutional
Language Models", sec. 3, eqs. 3-7; as configured in the Zoology study's zoology/mixers/hyena.py):

    [x1, x2, v] = DWConv_3(u W_in)                   (d_model -> 3 d_model, short causal filter)
    z = x2 ⊙ (h ∗ (x1 ⊙ v) + D ⊙ (x1 ⊙ v))            (h: implicit long filter, D: skip, FFT convolution)
    y = z W_out

The long filter is implicit: h_t = FFN(PE(t)) ⊙ exp(-|δ| t̂) for lag t = 0..l_max-1,
t̂ = t / (l_max - 1), where PE(t) = [t̂, cos(2π f t / l_max), sin(2π f t / l_max)],
the FFN is Linear(3, order) -> Sin -> (Linear(order, order) -> Sin) x 2 -> Linear(order, d)
with learnable sine frequencies, and δ spreads per channel between the decay
rates that bring exp(-|δ| t̂) to 1e-2 at 30% and at 150% of l_max. Two differences
from zoology/mixers/hyena.py: there the positional features PE are a parameter
(tagged for lr 1e-5, but Zoology's trainer builds AdamW over model.parameters() and
ignores the tag, so in its runs they train at the run's learning rate and weight
decay), and one Sin module (one set of frequencies) is shared by the FFN's three
activations; recurlab keeps PE fixed and gives each activation its own frequencies.
The filter has l_max lags, so a token sees l_max tokens back. Decoding keeps the
last l_max - 1 gated inputs: O(l_max d) memory and time per token, which is what
sets convolutional models apart from recurrent ones at inference.
State: HyenaState (short-conv inputs (B, 2, 3 d_model), long-conv history (B, l_max - 1, d_model)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .. import ops
from ..state import State
from .base import TokenMixer
from .registry import register


@dataclass(frozen=True)
class HyenaState(State):
    """Decoding state of :class:`Hyena`.

    Attributes:
        short_inputs: (B, short_kernel - 1, 3 d_model) the last inputs of the short convolution.
        history: (B, l_max - 1, d_model) the last gated inputs x1 ⊙ v of the long convolution, or None
            before the first token (all zeros; the parallel form then convolves only the new tokens).
    """

    short_inputs: torch.Tensor
    history: torch.Tensor | None = None


class _Sin(nn.Module):
    def __init__(self, dim: int, w: float = 1.0):
        super().__init__()
        self.freq = nn.Parameter(w * torch.ones(dim))

    def forward(self, x):
        return torch.sin(self.freq * x)


class ImplicitFilter(nn.Module):
    """h (d_model, l_max): an FFN of positional features, exponentially windowed (Hyena, sec. 3.3)."""

    def __init__(self, d_model: int, l_max: int, order: int = 64, inner_layers: int = 2,
                 fast_decay_pct: float = 0.3, slow_decay_pct: float = 1.5, target: float = 1e-2):
        super().__init__()
        t = torch.linspace(0, 1, l_max).unsqueeze(-1)  # (L, 1)
        angle = 2 * math.pi * torch.arange(l_max, dtype=torch.float32).unsqueeze(-1) / l_max * 1e-4
        self.register_buffer("features", torch.cat([t, angle.cos(), -angle.sin()], -1), persistent=False)
        self.register_buffer("t", t, persistent=False)
        layers = [nn.Linear(3, order), _Sin(order)]
        for _ in range(inner_layers):
            layers += [nn.Linear(order, order), _Sin(order)]
        layers.append(nn.Linear(order, d_model, bias=False))
        self.ffn = nn.Sequential(*layers)
        max_decay, min_decay = math.log(target) / fast_decay_pct, math.log(target) / slow_decay_pct
        self.register_buffer("deltas", torch.linspace(min_decay, max_decay, d_model), persistent=False)

    def forward(self) -> torch.Tensor:
        h = self.ffn(self.features) * torch.exp(-self.t * self.deltas.abs())  # (L, d)
        return h.t()

    def cached(self) -> torch.Tensor:
        """The filter without gradient, recomputed only when a parameter changed (for decoding)."""
        key = tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in self.parameters())
        if getattr(self, "_cache_key", None) != key:
            with torch.no_grad():
                self._cache = self.forward()
            self._cache_key = key
        return self._cache


@register("hyena", kind="token", paper="Poli et al. 2023, Hyena (order 2, Zoology configuration)",
          state="short conv + last l_max - 1 inputs", tiny={"l_max": 40, "filter_order": 8})
class Hyena(TokenMixer):
    state_type = HyenaState

    def __init__(self, d_model: int, l_max: int = 2048, filter_order: int = 64, short_kernel: int = 3):
        super().__init__(d_model)
        self.l_max = l_max
        self.short_kernel = short_kernel
        self.in_proj = nn.Linear(d_model, 3 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.short_filter = nn.Parameter(torch.empty(3 * d_model, short_kernel))
        self.short_bias = nn.Parameter(torch.zeros(3 * d_model))
        nn.init.kaiming_uniform_(self.short_filter, a=5**0.5)
        self.long_filter = ImplicitFilter(d_model, l_max, order=filter_order)
        self.skip = nn.Parameter(torch.randn(d_model))

    def mix(self, x, state):
        B, T, d = x.shape
        history = state.history
        u, short_state = ops.causal_conv1d(self.in_proj(x), self.short_filter, self.short_bias, state.short_inputs)
        x1, x2, v = u.split(d, dim=-1)
        gated = x1 * v
        h = self.long_filter().to(x.dtype)
        if history is None:  # nothing before: the first T lags suffice (FFT of size ~2T)
            z, _ = ops.long_conv(gated, h[:, :T], self.skip)
            history = torch.cat([gated.new_zeros(B, self.l_max - 1, d), gated], 1)[:, -(self.l_max - 1):] \
                if self.l_max > 1 else gated[:, :0]
        else:
            z, history = ops.long_conv(gated, h, self.skip, history)
        return self.out_proj(x2 * z), HyenaState(short_state, history)

    def mix_step(self, x_t, state):
        u, short_state = ops.causal_conv1d_step(self.in_proj(x_t), state.short_inputs, self.short_filter,
                                                self.short_bias)
        x1, x2, v = u.split(self.d_model, dim=-1)
        h = self.long_filter() if torch.is_grad_enabled() else self.long_filter.cached()
        history = state.history if state.history is not None else \
            x_t.new_zeros(x_t.shape[0], self.l_max - 1, self.d_model)
        z, history = ops.long_conv_step(x1 * v, history, h.to(x_t.dtype), self.skip)
        return self.out_proj(x2 * z), HyenaState(short_state, history)

    def init_state(self, batch_size, device=None, dtype=None):
        return HyenaState(torch.zeros(batch_size, self.short_kernel - 1, 3 * self.d_model, device=device, dtype=dtype))
