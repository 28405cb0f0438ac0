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
last l_max - 1 gated inputs: O(l_max d) memory and time per token and sequence (plus
the filter, once per step, below), which is what sets convolutional models apart from
recurrent ones at inference.

``step`` computes the filter h afresh at every token, as ``forward`` does: nothing derived from the
weights is kept between calls. A per-module cache keyed on the parameters' pointers and versions
(removed) returned a wrong filter whenever something else determined its value: the loop cursor of
a Relaxed model's per-loop LoRA on the filter's Linears (every loop decoded with loop 0's filter),
or an in-place ``p.data`` update, which bumps no version. Keeping h in the state was the other
option, but state tensors are batch first (``select`` would copy the (d_model, l_max) filter per
row) and a state would carry weights from before an update. What holds no weight is kept: the
positional features and the exponential window are fixed by the construction arguments, the dtype
and the device, and :meth:`ImplicitFilter.constants` keeps them under exactly that key. The price
left is the FFN's l_max (2 order² + order d_model) multiply-adds per layer and token, beside the
convolution's l_max d_model per sequence. Measured at d_model 256, l_max 2048, order 64 (a 6-layer
CausalLM, one thread, no grad, interleaved medians of 9 runs of 16 tokens, on a shared 2-core
machine): 29 ms/token with a fixed filter vs 44 recomputed at batch 1 (1.5x), 167 vs 193 ms per
step at batch 8 (1.2x). ``recurlab bench layers --set mixers=hyena`` times the layer's decode step
(the side-by-side script is in the message of the commit that removed the cache).

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
        self.l_max, self.d_model = l_max, d_model
        layers = [nn.Linear(3, order), _Sin(order)]
        for _ in range(inner_layers):
            layers += [nn.Linear(order, order), _Sin(order)]
        layers.append(nn.Linear(order, d_model, bias=False))
        self.ffn = nn.Sequential(*layers)
        self.max_decay, self.min_decay = math.log(target) / fast_decay_pct, math.log(target) / slow_decay_pct

    def positions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """t̂ (L, 1) = lag / (l_max - 1) and the features PE (L, 3) = [t̂, cos(f ω), -sin(f ω)], ω = 2π lag / l_max,
        f = 1e-4, in float64: computed on each call from the lag, so a float64 filter is exact (buffers made
        in float32 kept their rounding through .double())."""
        device = self.first_parameter().device
        lag = torch.arange(self.l_max, device=device, dtype=torch.float64).unsqueeze(-1)
        t = lag / max(self.l_max - 1, 1)
        angle = 2 * math.pi * lag / self.l_max * 1e-4
        return t, torch.cat([t, angle.cos(), -angle.sin()], -1)

    def window(self) -> torch.Tensor:
        """exp(-t̂ |δ|) (L, d) in float64, δ spread linearly from the slow to the fast decay rate over channels."""
        t, _ = self.positions()
        deltas = torch.linspace(self.min_decay, self.max_decay, self.d_model, device=t.device, dtype=torch.float64)
        return torch.exp(-t * deltas.abs())

    def first_parameter(self) -> torch.Tensor:
        """A parameter of the FFN, whose device and dtype the filter takes. Not ``ffn[0].weight``: a depth module
        may wrap the Linears (Relaxed's per-loop LoRA is a module around the Linear, without a ``weight``)."""
        return next(self.ffn.parameters())

    def constants(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The positional features (L, 3) and the window (L, d) in the FFN's dtype and device. They hold no
        weight: their value is fixed by (l_max, d_model, the decay rates: set at construction) and by the
        dtype and device, so they are kept under exactly that key (a decoding step then pays for the FFN
        only). Not kept while torch.compile traces (it computes them in the graph)."""
        first = self.first_parameter()
        key = (first.dtype, first.device)
        if torch.compiler.is_compiling():
            return self._constants(*key)
        if getattr(self, "_constants_key", None) != key:
            self._constants_value, self._constants_key = self._constants(*key), key
        return self._constants_value

    def _constants(self, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        return self.positions()[1].to(dtype), self.window().to(dtype)

    def forward(self) -> torch.Tensor:
        features, window = self.constants()
        h = self.ffn(features) * window  # (L, d)
        return h.t()


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
        h = self.long_filter()
        history = state.history if state.history is not None else \
            x_t.new_zeros(x_t.shape[0], self.l_max - 1, self.d_model)
        z, history = ops.long_conv_step(x1 * v, history, h.to(x_t.dtype), self.skip)
        return self.out_proj(x2 * z), HyenaState(short_state, history)

    def init_state(self, batch_size, device=None, dtype=None):
        return HyenaState(torch.zeros(batch_size, self.short_kernel - 1, 3 * self.d_model, device=device, dtype=dtype))
