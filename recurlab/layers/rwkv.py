"""RWKV-4 time mixing (Peng et al. 2023, "RWKV: Reinventing RNNs for the Transformer Era", eqs. 11-16)
as used by SpikeGPT (Zhu et al. 2023, "SpikeGPT: Generative Pre-trained Language Model with Spiking
Neural Networks", sec. 3), with SpikeGPT's binary spiking activation as an option.

Token shift mixes each token with the previous one, then

    k_t = W_k (μ_k ⊙ x_t + (1 - μ_k) ⊙ x_{t-1}),  v_t, r_t likewise
    wkv_t = (Σ_{i<t} e^{-(t-1-i) w + k_i} v_i + e^{u + k_t} v_t) / (Σ_{i<t} e^{-(t-1-i) w + k_i} + e^{u + k_t})
    y_t = W_o (σ(r_t) ⊙ wkv_t),            w = exp(time_decay) > 0, u = time_first  (per channel)

Numerator and denominator are two diagonal scans in float64 of the sums scaled
by e^{-m_t}, m_t the running maximum of k (the official kernels keep a running
maximum for the same reason): every exp takes a value <= 0, so keys of any size
are safe. The step form keeps (numerator, denominator, maximum) as RWKV's
recurrent mode does.

``spiking=True`` passes y through SpikeGPT's leaky integrate-and-fire neuron along
tokens, V_t = V_{t-1} + (y_t - V_{t-1}) / 2, spike s_t = [V_t >= 1], hard reset
V_t = 0 after a spike, with the arctan surrogate gradient α/2 / (1 + (π α (V_t - 1) / 2)²),
α = 2. The neuron is a non-linear recurrence and runs as a loop over tokens.

Initialisation follows RWKV-4 / SpikeGPT: time_decay_c = -5 + 8 (c / (d-1))^(0.7 + 1.3 l/(L-1)),
time_first = ln 0.3 plus a small zigzag, token-shift ratios by layer depth; W_k, W_r, W_o start at zero.
State: (last input (B, d), numerator (B, d), denominator (B, d), maximum (B, d)) [+ V (B, d) if spiking].
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import ops
from .base import TokenMixer
from .registry import register


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
          state="x_prev, num, den, max: 4 * d_model")
class RWKVTimeMix(TokenMixer):
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

    def forward(self, x, state=None):
        self.check_sequence(x)
        B, T, d = x.shape
        state = state if state is not None else self.init_state(B, x.device, x.dtype)
        last_x, num0, den0, max0 = state[:4]
        x_prev = torch.cat([last_x.to(x.dtype).unsqueeze(1), x[:, :-1]], 1)
        k, v, r = self._mix(x, x_prev)
        wkv, (num, den, running_max) = self._wkv(k, v, num0, den0, max0)
        y = torch.sigmoid(r) * wkv.to(x.dtype)
        new_state = (x[:, -1], num, den, running_max)
        y = self.output(y)
        if self.spiking:
            spikes, membrane = [], state[4]
            for y_t in y.unbind(1):
                s_t, membrane = lif_step(y_t, membrane)
                spikes.append(s_t)
            y = torch.stack(spikes, 1)
            new_state = new_state + (membrane,)
        return y, new_state

    def _wkv(self, k, v, num0, den0, max0):
        """wkv for every t by two diagonal scans in float64, against the running maximum of k.

        With m_t = max(m_{t-1}, k_t), the sums scaled by e^{-m_t},
            Ñ_t = e^{-w + m_{t-1} - m_t} Ñ_{t-1} + e^{k_t - m_t} v_t   (and Z̃_t without v_t),
        are diagonal scans whose gates and inputs only ever take exp of values <= 0.
        """
        k64, v64 = k.double(), v.double()
        w = torch.exp(self.time_decay.double())  # (d,)
        u = self.time_first.double()
        running_max = torch.cummax(torch.cat([max0.unsqueeze(1), k64], 1), dim=1).values  # (B, T + 1, d)
        m_prev, m = running_max[:, :-1], running_max[:, 1:]
        log_gate = (m_prev - m) - w
        scaled = torch.exp(k64 - m)
        num, num_last = ops.diag_scan(log_gate, scaled * v64, num0)
        den, den_last = ops.diag_scan(log_gate, scaled, den0)
        # wkv_t combines the sums over i < t (scale e^{m_{t-1}}) with the bonus term e^{u + k_t}
        num_before = torch.cat([num0.unsqueeze(1), num[:, :-1]], 1)
        den_before = torch.cat([den0.unsqueeze(1), den[:, :-1]], 1)
        q = torch.maximum(m_prev, u + k64)
        past, now = torch.exp(m_prev - q), torch.exp(u + k64 - q)
        wkv = (past * num_before + now * v64) / (past * den_before + now)
        return wkv, (num_last, den_last, m[:, -1])

    def step(self, x_t, state=None):
        self.check_token(x_t)
        state = state if state is not None else self.init_state(x_t.shape[0], x_t.device, x_t.dtype)
        last_x, num, den, running_max = state[:4]
        k, v, r = self._mix(x_t, last_x.to(x_t.dtype))
        k64, v64 = k.double(), v.double()
        w, u = torch.exp(self.time_decay.double()), self.time_first.double()
        q = torch.maximum(running_max, u + k64)  # RWKV's recurrent mode with a running maximum
        a, b = torch.exp(running_max - q), torch.exp(u + k64 - q)
        wkv = (a * num + b * v64) / (a * den + b)
        q_next = torch.maximum(running_max - w, k64)
        a, b = torch.exp(running_max - w - q_next), torch.exp(k64 - q_next)
        new_state = (x_t, a * num + b * v64, a * den + b, q_next)
        y = self.output(torch.sigmoid(r) * wkv.to(x_t.dtype))
        if self.spiking:
            y, membrane = lif_step(y, state[4])
            new_state = new_state + (membrane,)
        return y, new_state

    def init_state(self, batch_size, device=None, dtype=None):
        zeros = lambda dt: torch.zeros(batch_size, self.d_model, device=device, dtype=dt)  # noqa: E731
        state = (zeros(dtype), zeros(torch.float64), zeros(torch.float64),
                 torch.full((batch_size, self.d_model), -1e38, device=device, dtype=torch.float64))
        return state + (zeros(dtype),) if self.spiking else state
