"""RWKV-4 time mixing (Peng et al. 2023, "RWKV: Reinventing RNNs for the Transformer Era", eqs. 11-16)
as used by SpikeGPT (Zhu et al. 2023, "SpikeGPT: Generative Pre-trained Language Model with Spiking
Neural Networks", sec. 3), with SpikeGPT's binary spiking activation as an option.

Token shift mixes each token with the previous one, then

    k_t = W_k (μ_k ⊙ x_t + (1 - μ_k) ⊙ x_{t-1}),  v_t, r_t likewise
    wkv_t = (Σ_{i<t} e^{-(t-1-i) w + k_i} v_i + e^{u + k_t} v_t) / (Σ_{i<t} e^{-(t-1-i) w + k_i} + e^{u + k_t})
    y_t = W_o (σ(r_t) ⊙ wkv_t),            w = exp(time_decay) > 0, u = time_first  (per channel)

Numerator and denominator are two diagonal scans in float64 of the sums scaled
by e^{-p_t}, where p_t = max(p_{t-1} - w, k_t) is the decayed running maximum of
the official RWKV-4 kernel (the largest exponent among the terms of the sums, so
the largest scaled term is 1 and the denominator never underflows): every exp
takes a value <= 0, so keys of any size are safe. The parallel form computes it as
p_t = max_{i <= t}(k_i + i w) - t w (a cumulative maximum). The step form keeps
(numerator, denominator, p) as RWKV's recurrent mode does.

``spiking=True`` passes y through SpikeGPT's leaky integrate-and-fire neuron along
tokens, V_t = V_{t-1} + (y_t - V_{t-1}) / 2, spike s_t = [V_t >= 1], hard reset
V_t = 0 after a spike, with the arctan surrogate gradient α/2 / (1 + (π α (V_t - 1) / 2)²),
α = 2. The neuron is a non-linear recurrence and runs as a loop over tokens.

Initialisation follows RWKV-4 / SpikeGPT: time_decay_c = -5 + 8 (c / (d-1))^(0.7 + 1.3 l/(L-1)),
time_first = ln 0.3 plus a small zigzag, token-shift ratios by layer depth; W_k, W_r, W_o start at zero.
State: RWKVState (last input, scaled numerator and denominator, their log-scale p, and the spiking
neuron's membrane potential), each (B, d).
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
class RWKVState(State):
    """Decoding state of :class:`RWKVTimeMix`, each tensor (B, d_model).

    Attributes:
        last_x: the previous input (token shift), in the input dtype; zeros before the first token.
        num, den: Σ_i e^{-(t-i) w + k_i} v_i and Σ_i e^{-(t-i) w + k_i} over the tokens seen, scaled by
            e^{-scale} (float64).
        scale: the log-scale p of num and den (float64); -inf before the first token (empty sums).
        membrane: the spiking neuron's membrane potential (``spiking=True``), else None.
    """

    last_x: torch.Tensor
    num: torch.Tensor
    den: torch.Tensor
    scale: torch.Tensor
    membrane: torch.Tensor | None = None


class _SpikeFunction(torch.autograd.Function):
    """Heaviside step forward, arctan surrogate gradient backward (SpikeGPT, alpha = 2)."""

    @staticmethod
    def forward(ctx, membrane_minus_threshold):
        ctx.save_for_backward(membrane_minus_threshold)
        return (membrane_minus_threshold >= 0).to(membrane_minus_threshold.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        alpha = 2.0
        return grad * (alpha / 2) / (1 + (math.pi / 2 * alpha * x) ** 2)


def lif_step(y_t: torch.Tensor, membrane: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One leaky integrate-and-fire step: returns (spikes, membrane after reset)."""
    membrane = membrane + (y_t - membrane) / 2
    spikes = _SpikeFunction.apply(membrane - 1.0)
    return spikes, membrane * (1 - spikes)


@register("rwkv", kind="token", paper="Peng et al. 2023, RWKV-4 time mixing; Zhu et al. 2023, SpikeGPT",
          state="x_prev, num, den, max: 4 * d_model", tiny={"layer_idx": 1, "n_layers": 3})
class RWKVTimeMix(TokenMixer):
    state_type = RWKVState

    def __init__(self, d_model: int, layer_idx: int = 0, n_layers: int = 1, spiking: bool = False):
        super().__init__(d_model)
        self.spiking = spiking
        d = d_model
        ratio_0_to_1 = layer_idx / max(n_layers - 1, 1)
        ratio_1_to_almost_0 = 1.0 - layer_idx / n_layers
        position = torch.arange(d, dtype=torch.float32)
        decay = -5 + 8 * (position / max(d - 1, 1)) ** (0.7 + 1.3 * ratio_0_to_1)
        zigzag = torch.tensor([(i + 1) % 3 - 1 for i in range(d)], dtype=torch.float32) * 0.5
        shift_base = position / d
        self.time_decay = nn.Parameter(decay)
        self.time_first = nn.Parameter(torch.full((d,), math.log(0.3)) + zigzag)
        self.mix_k = nn.Parameter(shift_base**ratio_1_to_almost_0)
        self.mix_v = nn.Parameter(shift_base**ratio_1_to_almost_0 + 0.3 * ratio_0_to_1)
        self.mix_r = nn.Parameter(shift_base ** (0.5 * ratio_1_to_almost_0))
        self.key = nn.Linear(d, d, bias=False)
        self.value = nn.Linear(d, d, bias=False)
        self.receptance = nn.Linear(d, d, bias=False)
        self.output = nn.Linear(d, d, bias=False)
        for zero in (self.key, self.receptance, self.output):
            nn.init.zeros_(zero.weight)

    def _mix(self, x, x_prev):
        k = self.key(x * self.mix_k + x_prev * (1 - self.mix_k))
        v = self.value(x * self.mix_v + x_prev * (1 - self.mix_v))
        r = self.receptance(x * self.mix_r + x_prev * (1 - self.mix_r))
        return k, v, r

    def mix(self, x, state):
        x_prev = torch.cat([state.last_x.to(x.dtype).unsqueeze(1), x[:, :-1]], 1)
        k, v, r = self._mix(x, x_prev)
        wkv, (num, den, scale) = self._wkv(k, v, state.num, state.den, state.scale)
        y = self.output(torch.sigmoid(r) * wkv.to(x.dtype))
        membrane = None
        if self.spiking:
            spikes, membrane = [], state.membrane
            for y_t in y.unbind(1):
                s_t, membrane = lif_step(y_t, membrane)
                spikes.append(s_t)
            y = torch.stack(spikes, 1)
        return y, RWKVState(x[:, -1], num, den, scale, membrane)

    def _wkv(self, k, v, num0, den0, p0):
        """wkv for every t by two diagonal scans in float64, scaled by the decayed running maximum.

        With p_t = max(p_{t-1} - w, k_t) = max(p_{-1} - (t+1) w, max_{i<=t} (k_i - (t-i) w)),
        the sums scaled by e^{-p_t},
            Ñ_t = e^{p_{t-1} - w - p_t} Ñ_{t-1} + e^{k_t - p_t} v_t   (and Z̃_t without v_t),
        are diagonal scans whose gates and inputs only ever take exp of values <= 0, and the largest
        term of Z̃_t is 1.
        """
        B, T, d = k.shape
        k64, v64 = k.double(), v.double()
        w = torch.exp(self.time_decay.double())  # (d,)
        u = self.time_first.double()
        ramp = torch.arange(-1, T, device=k.device, dtype=torch.float64).unsqueeze(-1) * w  # (T + 1, d): t w
        lifted = torch.cat([p0.unsqueeze(1) - w, k64 + ramp[1:]], 1)  # p_{-1} - w, then k_i + i w
        p_all = torch.cummax(lifted, dim=1).values - ramp  # (B, T + 1, d): p_{-1} .. p_{T-1}
        p_prev, p = p_all[:, :-1], p_all[:, 1:]
        # p_t >= p_{t-1} - w exactly; clamp away rounding (and -inf - (-inf) before the first token, where
        # the scaled sums are 0 anyway and e^-1e4 = 0 in float64)
        log_gate = (p_prev - w - p).nan_to_num(nan=-1e4).clamp(-1e4, 0.0)
        scaled = torch.exp((k64 - p).clamp_max(0.0))
        num, num_last = ops.diag_scan(log_gate, scaled * v64, num0)
        den, den_last = ops.diag_scan(log_gate, scaled, den0)
        # wkv_t combines the sums over i < t (scale e^{p_{t-1}}) with the bonus term e^{u + k_t}
        num_before = torch.cat([num0.unsqueeze(1), num[:, :-1]], 1)
        den_before = torch.cat([den0.unsqueeze(1), den[:, :-1]], 1)
        q = torch.maximum(p_prev, u + k64)
        past, now = torch.exp(p_prev - q), torch.exp(u + k64 - q)
        wkv = (past * num_before + now * v64) / (past * den_before + now)
        return wkv, (num_last, den_last, p[:, -1])

    def mix_step(self, x_t, state):
        k, v, r = self._mix(x_t, state.last_x.to(x_t.dtype))
        k64, v64 = k.double(), v.double()
        w, u = torch.exp(self.time_decay.double()), self.time_first.double()
        num, den, p = state.num, state.den, state.scale
        q = torch.maximum(p, u + k64)  # RWKV's recurrent mode with the decayed running maximum
        a, b = torch.exp(p - q), torch.exp(u + k64 - q)
        wkv = (a * num + b * v64) / (a * den + b)
        p_next = torch.maximum(p - w, k64)
        a, b = torch.exp(p - w - p_next), torch.exp(k64 - p_next)
        y = self.output(torch.sigmoid(r) * wkv.to(x_t.dtype))
        membrane = None
        if self.spiking:
            y, membrane = lif_step(y, state.membrane)
        return y, RWKVState(x_t, a * num + b * v64, a * den + b, p_next, membrane)

    def init_state(self, batch_size, device=None, dtype=None):
        zeros = lambda dt: torch.zeros(batch_size, self.d_model, device=device, dtype=dt)  # noqa: E731
        return RWKVState(last_x=zeros(dtype), num=zeros(torch.float64), den=zeros(torch.float64),
                         scale=torch.full((batch_size, self.d_model), float("-inf"), device=device, dtype=torch.float64),
                         membrane=zeros(dtype) if self.spiking else None)
