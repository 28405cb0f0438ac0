"""The public causal convolutions: input checks, the state prepended to the input, then a backend.

``causal_conv1d`` is the short depthwise convolution used in front of most
recurrent mixers (Mamba, GLA's short conv, Zoology's BaseConv, GAM's local
pathway): weight (D, W), W small, tap W-1 applied to the current token. Its state
is the last W-1 inputs, a rolling buffer, so decoding costs O(W D) per token.

``long_conv`` is the causal convolution with a kernel as long as the sequence
(Hyena's implicit filters, Poli et al. 2023, eq. 3: y_t = sum_{s<=t} h_s x_{t-s}),
computed by FFT in O(T log T): kernel (D, L), index = lag. Its state is the last
L-1 inputs, so a long-kernel layer can still stream (at O(L D) per token).

Backends (``backend=``), one module each in this package: ``reference``
(``reference.py``, direct sums, the ground truth) for both; ``conv``
(``conv1d.py``) for ``causal_conv1d``; ``fft`` (``fft.py``) for ``long_conv``.
``auto`` is ``conv`` and ``fft`` respectively.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import _checks
from ..backends import resolve
from .conv1d import causal_conv1d_conv
from .fft import long_conv_fft
from .reference import causal_conv1d_reference, long_conv_reference

_ACTIVATIONS = (None, "silu")


def causal_conv1d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    state: torch.Tensor | None = None,
    *,
    activation: str | None = None,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Depthwise causal convolution y_t = sum_i weight[:, i] * x_{t-W+1+i} + bias.

    Args:
        x: (B, T, D) input.
        weight: (D, W) one short filter per channel; weight[:, W-1] multiplies x_t.
        bias: (D,) or None.
        state: (B, W-1, D) the W-1 inputs before x (oldest first); zeros if None.
        activation: None or "silu", applied to the output.
        backend: "auto", "reference" (loop over taps) or "conv" (torch conv1d).

    Returns:
        y: (B, T, D) in the dtype of x, and the new state (B, W-1, D): the last
        W-1 inputs seen, to pass to the next call or to :func:`causal_conv1d_step`.
        Empty x (B, T or D = 0) runs no backend: y is empty and the state passes through.
    """
    _check_conv_args(x, weight, bias, state, "(D, W)", time_axis=True)
    _check_activation(activation)
    name = resolve("causal_conv1d", backend, x.device)
    W = weight.shape[1]
    full = _prepend_history(x, state, W - 1)  # (B, W-1+T, D)
    if x.numel() == 0:  # B, T or D is 0: no backend runs; the last W-1 inputs pass through
        return _checks.joined_to_inputs(x.new_empty(x.shape), x, weight, bias, state), full[:, x.shape[1] :]
    if name == "reference":
        y = causal_conv1d_reference(full, weight)
    else:
        y = causal_conv1d_conv(full, weight)
    if bias is not None:
        y = y + bias
    return _activate(y, activation), full[:, full.shape[1] - (W - 1) :]


def causal_conv1d_step(
    x_t: torch.Tensor,
    state: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    activation: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One token of :func:`causal_conv1d`: x_t (B, D), state (B, W-1, D) -> (y_t (B, D), new state)."""
    _check_conv_args(x_t, weight, bias, state, "(D, W)", time_axis=False)
    _check_activation(activation)
    window = torch.cat([state.to(x_t.dtype), x_t.unsqueeze(1)], 1)  # (B, W, D)
    y_t = torch.einsum("bwd,dw->bd", window, weight)
    if bias is not None:
        y_t = y_t + bias
    return _activate(y_t, activation), window[:, 1:]


def long_conv(
    x: torch.Tensor,
    kernel: torch.Tensor,
    skip: torch.Tensor | None = None,
    state: torch.Tensor | None = None,
    *,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal convolution with a long kernel, y_t = sum_{s=0}^{L-1} kernel[:, s] * x_{t-s} + skip * x_t.

    Args:
        x: (B, T, D) input.
        kernel: (D, L) one filter per channel indexed by lag (kernel[:, 0] multiplies
            x_t); L may equal T (Hyena) or be any other length.
        skip: (D,) per-channel residual term (Hyena's D), or None.
        state: (B, L-1, D) the L-1 inputs before x (oldest first); zeros if None.
        backend: "auto"/"fft" (FFT in float32, O(T log T)) or "reference" (direct sum).

    Returns:
        y: (B, T, D) in the dtype of x, and the new state (B, L-1, D).
        Empty x (B, T or D = 0) runs no backend: y is empty and the state passes through.
    """
    _check_conv_args(x, kernel, skip, state, "(D, L)", time_axis=True, bias_name="skip", weight_name="kernel")
    name = resolve("long_conv", backend, x.device)
    L = kernel.shape[1]
    full = _prepend_history(x, state, L - 1)  # (B, L-1+T, D)
    if x.numel() == 0:  # B, T or D is 0: no backend runs (an empty FFT fails); the last L-1 inputs pass through
        return _checks.joined_to_inputs(x.new_empty(x.shape), x, kernel, skip, state), full[:, x.shape[1] :]
    if name == "reference":
        y = long_conv_reference(full, kernel)
    else:
        y = long_conv_fft(full, kernel)
    if skip is not None:
        y = y + skip * x
    return y, full[:, full.shape[1] - (L - 1) :]


def long_conv_step(
    x_t: torch.Tensor,
    state: torch.Tensor,
    kernel: torch.Tensor,
    skip: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One token of :func:`long_conv`: x_t (B, D), state (B, L-1, D) -> (y_t (B, D), new state)."""
    _check_conv_args(x_t, kernel, skip, state, "(D, L)", time_axis=False, bias_name="skip", weight_name="kernel")
    window = torch.cat([state.to(x_t.dtype), x_t.unsqueeze(1)], 1)  # (B, L, D), oldest first
    y_t = torch.einsum("bld,dl->bd", window, kernel.flip(1))
    if skip is not None:
        y_t = y_t + skip * x_t
    return y_t, window[:, 1:]


def _prepend_history(x: torch.Tensor, state: torch.Tensor | None, n: int) -> torch.Tensor:
    """The n inputs before x (zeros if no state) followed by x: (B, n + T, D)."""
    history = state if state is not None else x.new_zeros(x.shape[0], n, x.shape[2])
    return torch.cat([history.to(x.dtype), x], 1)


def _activate(y: torch.Tensor, activation: str | None) -> torch.Tensor:
    return F.silu(y) if activation == "silu" else y


def _check_conv_args(x, weight, bias, state, weight_layout, *, time_axis, bias_name="bias", weight_name="weight"):
    xname = "x" if time_axis else "x_t"
    _checks.check_tensor(xname, x, ranks=(3,) if time_axis else (2,), layout="(B, T, D)" if time_axis else "(B, D)")
    _checks.check_tensor(weight_name, weight, ranks=(2,), layout=weight_layout)
    D = x.shape[-1]
    if weight.shape[0] != D:
        raise ValueError(f"{weight_name} must have shape {weight_layout} with D = {D} channels of {xname}, got {_checks.fmt_shape(weight.shape)}")
    if weight.shape[1] < 1:
        raise ValueError(f"{weight_name} must have at least one tap, got shape {_checks.fmt_shape(weight.shape)}")
    _checks.check_same_device(weight_name, weight, xname, x)
    if bias is not None:
        _checks.check_tensor(bias_name, bias, ranks=(1,), layout="(D,)")
        _checks.check_shape(bias_name, bias, (D,), "(D,)")
        _checks.check_same_device(bias_name, bias, xname, x)
    B, W = x.shape[0], weight.shape[1]
    if state is not None or not time_axis:
        if state is None:
            raise ValueError("state must be given for a step: (B, W-1, D), e.g. from the previous call")
        _checks.check_tensor("state", state, ranks=(3,), layout="(B, W-1, D)")
        _checks.check_shape("state", state, (B, W - 1, D), "(B, W-1, D)")
        _checks.check_same_device("state", state, xname, x)


def _check_activation(activation):
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {_ACTIVATIONS}, got {activation!r}")
