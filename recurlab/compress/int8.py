"""Integer linear layers: INT8 weights and activations multiplied in int32 on the CPU (AutoNeural's deployment target).

AutoNeural (Nexa AI 2025) co-designs a model for integer-only inference on NPUs. This module gives recurlab's
models the integer part of that path on a CPU: every ``nn.Linear`` of a model becomes an :class:`IntLinear`,

    W_q = round(W / s_w),  s_w = max_j |W_ij| / q_max        per output channel i  (symmetric, q_max = 2^(bits-1) - 1)
    x_q = round(x / s_x),  s_x = max_j |x_tj| / q_max        per token t, computed from each input (dynamic)
    y   = (x_q W_q^T) ⊙ (s_x s_w^T) + b                      x_q W_q^T accumulated exactly in int32

At 8 bits the product runs through ``torch._int_mm`` (int8 x int8 -> int32, the integer GEMM of torch's CPU and
CUDA builds); at fewer bits (``bits=4``) the codes are simulated in float (no 4-bit kernel here), which gives the
quality of such a model but not its speed. What stays floating point, so this is *not* integer-only: the scales'
rescaling, norms, activations, the gating products, the scans and convolutions of token mixers, softmax, and the
tied embedding / head. :func:`sqnr_db` measures how far quantised features are from the float ones.

    int8_model = integer_model(model, bits=8)     # a copy; model is unchanged
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def quantize_symmetric(x: torch.Tensor, bits: int, dim: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes, scales): codes = round(x / s) in [-q_max, q_max] with s = max |x| / q_max along ``dim`` (kept as a
    size-1 axis). A row of zeros gets scale 1 (its codes are 0)."""
    check_bits(bits)
    q_max = 2 ** (bits - 1) - 1
    scale = x.detach().abs().amax(dim=dim, keepdim=True).float() / q_max
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    codes = torch.clamp(torch.round(x.float() / scale), -q_max, q_max)
    return codes, scale


def check_bits(bits: int) -> None:
    if not isinstance(bits, int) or isinstance(bits, bool) or not 2 <= bits <= 8:
        raise ValueError(f"bits must be an int in [2, 8], got {bits!r}")


class IntLinear(nn.Module):
    """y = x W^T + b with W stored as ``bits``-bit codes per output channel and x quantised per token on the fly.
    x (..., in_features) float -> y (..., out_features) in x's dtype."""

    def __init__(self, linear: nn.Linear, bits: int = 8):
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        check_bits(bits)
        self.in_features, self.out_features, self.bits = linear.in_features, linear.out_features, bits
        codes, scale = quantize_symmetric(linear.weight, bits, dim=1)
        self.register_buffer("weight_codes", codes.to(torch.int8))  # (out, in)
        self.register_buffer("weight_scale", scale.squeeze(1))  # (out,)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"x must have last dimension in_features={self.in_features}, got {tuple(x.shape)}")
        rows = x.reshape(-1, self.in_features)
        codes, scale = quantize_symmetric(rows, self.bits, dim=1)  # (N, in), (N, 1)
        if self.bits == 8 and rows.device.type in ("cpu", "cuda") and rows.shape[0] > 0:
            acc = torch._int_mm(codes.to(torch.int8), self.weight_codes.t()).float()  # exact int32 products
        else:  # fewer bits: the same codes, multiplied in float (exact below 2^24 per sum)
            acc = codes @ self.weight_codes.float().t()
        y = acc * scale * self.weight_scale
        if self.bias is not None:
            y = y + self.bias.float()
        return y.to(x.dtype).reshape(*x.shape[:-1], self.out_features)

    def dequantized_weight(self) -> torch.Tensor:
        """The weight this layer multiplies by, in float: codes x per-channel scales (out, in)."""
        return self.weight_codes.float() * self.weight_scale[:, None]

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}"


def integer_model(model: nn.Module, bits: int = 8) -> nn.Module:
    """A copy of ``model`` (in eval mode) with every ``nn.Linear`` replaced by an :class:`IntLinear`."""
    check_bits(bits)
    model = copy.deepcopy(model).eval()
    targets = [(name, module) for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not targets:
        raise ValueError("model has no nn.Linear layer to quantise")
    for name, module in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, IntLinear(module, bits))
    return model


def sqnr_db(reference: torch.Tensor, quantized: torch.Tensor) -> float:
    """Signal-to-quantisation-noise ratio 10 log10(Σ reference² / Σ (reference - quantized)²) in dB (inf if equal)."""
    if reference.shape != quantized.shape:
        raise ValueError(f"reference and quantized must have the same shape, got {tuple(reference.shape)} and "
                         f"{tuple(quantized.shape)}")
    noise = (reference.double() - quantized.double()).square().sum().item()
    signal = reference.double().square().sum().item()
    return math.inf if noise == 0 else 10 * math.log10(signal / noise)


ACTIVATION_SCHEMES = ("token", "tensor")


def fake_quantize_linear_inputs(model: nn.Module, bits: int, activations: str = "token",
                                calibration: torch.Tensor | None = None) -> nn.Module:
    """A copy of ``model`` whose every nn.Linear and nn.Conv2d sees its weight quantised per output channel and its
    input quantised to ``bits`` bits, in float: what a W``bits``A``bits`` integer deployment computes, for models
    without an integer kernel here. ``activations``:

    - "token": dynamic, one scale per token (Linear: each row; Conv2d: each pixel's channel vector), from the
      input itself (what :class:`IntLinear` does);
    - "tensor": static, one scale per layer, max |input| over a forward pass of ``calibration`` (a batch of model
      inputs), values beyond it clipped: the usual scheme of integer-only accelerators, where a few outlier
      channels cost every other channel its resolution.
    """
    check_bits(bits)
    if activations not in ACTIVATION_SCHEMES:
        raise ValueError(f"activations must be one of {', '.join(ACTIVATION_SCHEMES)}, got {activations!r}")
    if (activations == "tensor") != (calibration is not None):
        raise ValueError("calibration (a batch of inputs) is needed with activations='tensor', and only then")
    model = copy.deepcopy(model).eval()
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    ranges = _input_ranges(model, layers, calibration) if activations == "tensor" else None
    for i, module in enumerate(layers):
        codes, scale = quantize_symmetric(module.weight.flatten(1), bits, dim=1)
        with torch.no_grad():
            module.weight.copy_((codes * scale).reshape(module.weight.shape))
        if ranges is None:
            channel_dim = 1 if isinstance(module, nn.Conv2d) else -1  # a pixel's channels / a token's features
            module.register_forward_pre_hook(_token_quantizer(bits, channel_dim))
        else:
            module.register_forward_pre_hook(_static_quantizer(bits, ranges[i]))
    return model


def _input_ranges(model: nn.Module, layers: list[nn.Module], calibration: torch.Tensor) -> list[float]:
    """max |input| of every layer of ``layers`` over one forward pass of ``calibration`` (float, unquantised)."""
    ranges = [0.0] * len(layers)

    def record(i):
        return lambda module, args: ranges.__setitem__(i, max(ranges[i], args[0].detach().abs().max().item()))

    handles = [layer.register_forward_pre_hook(record(i)) for i, layer in enumerate(layers)]
    try:
        with torch.no_grad():
            model(calibration)
    finally:
        for handle in handles:
            handle.remove()
    return ranges


def _token_quantizer(bits: int, channel_dim: int):
    def hook(module, args):
        x = args[0]
        codes, scale = quantize_symmetric(x, bits, dim=channel_dim)
        return ((codes * scale).to(x.dtype), *args[1:])

    return hook


def _static_quantizer(bits: int, max_abs: float):
    q_max = 2 ** (bits - 1) - 1
    scale = max_abs / q_max if max_abs > 0 else 1.0

    def hook(module, args):
        x = args[0]
        return ((torch.clamp(torch.round(x.float() / scale), -q_max, q_max) * scale).to(x.dtype), *args[1:])

    return hook


__all__ = ["IntLinear", "fake_quantize_linear_inputs", "integer_model", "quantize_symmetric", "sqnr_db"]
