"""Quantised linear layers in a model: straight-through training, and the packed form for storage and inference.

    names = quantize_model(model, get_quantizer("fairy2i", 2))   # nn.Linear -> QuantizedLinear, in place
    ...fine-tune: the forward uses the quantised weight, the gradient reaches the real weight unchanged...
    pack_model(model)                                              # QuantizedLinear -> PackedLinear

Which layers: every ``nn.Linear`` inside the depth module (mixers and channel mixers) whose in and out features
are both even (Fairy2i pairs them into complex numbers; the official code leaves odd ones in full precision, and
every method here quantises the same set so that they compare at equal coverage). The embedding, the final norm
and the (tied) head stay in full precision, as do biases and norms.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .methods import Quantizer, get_quantizer, pack_codes, unpack_codes


class QuantizedLinear(nn.Module):
    """An ``nn.Linear`` whose forward uses ``quantizer``'s weight, trained straight-through:

        y = x Q(A)ᵀ + b     in the forward;     ∂L/∂A = ∂L/∂Q(A)     in the backward

    ``weight`` and ``bias`` are the original layer's parameters (the same tensors, so the parameter names and an
    optimizer's state carry over). Shapes as nn.Linear: (..., in_features) -> (..., out_features).
    """

    def __init__(self, linear: nn.Linear, quantizer: Quantizer):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias
        self.quantizer = quantizer

    def quantized_weight(self) -> torch.Tensor:
        return self.quantizer.quantize(self.weight)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight + (self.quantized_weight() - self.weight).detach()
        return F.linear(x, weight, self.bias)

    def pack(self) -> "PackedLinear":
        _, codes, scales = self.quantizer.quantize(self.weight.detach())
        packed = pack_codes(codes, self.quantizer.code_bits)
        return PackedLinear(self.in_features, self.out_features, self.quantizer, packed,
                            scales.float(), None if self.bias is None else nn.Parameter(self.bias.detach().clone()))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, {self.quantizer.name}"


class PackedLinear(nn.Module):
    """A quantised linear layer stored as packed codes (buffer ``codes``, uint8, 8 / code_bits per byte) and
    scales (buffer ``scales``, float32), plus the full-precision bias. The forward dequantises the weight once
    (cached until new codes are loaded) and runs a dense matmul: on a CPU that is the fastest way to apply it; the
    packed form is for storage (docs/compress.md says what a multiplication-free kernel would need)."""

    def __init__(self, in_features: int, out_features: int, quantizer: Quantizer, codes: torch.Tensor,
                 scales: torch.Tensor, bias: nn.Parameter | None = None):
        super().__init__()
        self.in_features, self.out_features, self.quantizer = in_features, out_features, quantizer
        self.register_buffer("codes", codes)
        self.register_buffer("scales", scales)
        self.bias = bias
        self._weight: torch.Tensor | None = None

    @classmethod
    def empty(cls, in_features: int, out_features: int, quantizer: Quantizer, bias: bool) -> "PackedLinear":
        """A layer of the right buffer shapes (zeros) to load a saved one into."""
        count = _code_count(quantizer, out_features, in_features)
        if quantizer.method == "fairy2i":
            scales = (int(quantizer.bits), 2, 2)
        else:
            scales = (1,) if quantizer.method == "bitnet" else (out_features,)
        codes = torch.zeros(math.ceil(count * quantizer.code_bits / 8), dtype=torch.uint8)
        return cls(in_features, out_features, quantizer, codes, torch.zeros(scales),
                   nn.Parameter(torch.zeros(out_features)) if bias else None)

    def _load_from_state_dict(self, *args, **kwargs):
        self._weight = None
        return super()._load_from_state_dict(*args, **kwargs)

    def dequantized_weight(self) -> torch.Tensor:
        shape = (self.out_features, self.in_features)
        count = _code_count(self.quantizer, self.out_features, self.in_features)
        codes = unpack_codes(self.codes, self.quantizer.code_bits, count)
        return self.quantizer.dequantize(codes, self.scales, shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._weight is None or self._weight.device != x.device or self._weight.dtype != x.dtype:
            self._weight = self.dequantized_weight().to(device=x.device, dtype=x.dtype)
        return F.linear(x, self._weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, {self.quantizer.name}, "
                f"{self.codes.numel():,} bytes of codes")


def _code_count(quantizer: Quantizer, out_features: int, in_features: int) -> int:
    if quantizer.method == "fairy2i":
        return int(quantizer.bits) * out_features * in_features // 2  # T stages x (U, W) x n x m
    return out_features * in_features


def quantizable(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) and module.in_features % 2 == 0 and module.out_features % 2 == 0


def _targets(model: nn.Module, kind) -> list[tuple[nn.Module, str, str]]:
    depth = getattr(model, "depth", None)
    if depth is None:
        raise ValueError("model must be a recurlab CausalLM (its blocks under model.depth)")
    out = []
    for name, module in depth.named_modules():
        for child_name, child in module.named_children():
            if kind(child):
                out.append((module, child_name, f"depth.{name + '.' if name else ''}{child_name}"))
    return out


def quantize_model(model: nn.Module, quantizer: Quantizer) -> list[str]:
    """Replace, in place, every quantisable nn.Linear of ``model``'s depth module by a :class:`QuantizedLinear`;
    returns their names (in the model's state dict)."""
    names = []
    for parent, child_name, full in _targets(model, quantizable):
        setattr(parent, child_name, QuantizedLinear(getattr(parent, child_name), quantizer))
        names.append(full)
    if not names:
        raise ValueError("model has no linear layer with even in and out features in its depth module")
    return names


def pack_model(model: nn.Module) -> list[str]:
    """Replace every :class:`QuantizedLinear` by its :class:`PackedLinear` (in place); returns their names."""
    names = []
    for parent, child_name, full in _targets(model, lambda m: isinstance(m, QuantizedLinear)):
        setattr(parent, child_name, getattr(parent, child_name).pack())
        names.append(full)
    return names


def empty_packed_model(model: nn.Module, names: list[str], method: str, bits: int | None) -> nn.Module:
    """``model`` (a fresh CausalLM of the saved config) with the layers ``names`` replaced by empty
    :class:`PackedLinear` layers of ``method`` / ``bits``, ready to load a packed state dict."""
    quantizer = get_quantizer(method, bits)
    wanted = set(names)
    found = []
    for parent, child_name, full in _targets(model, quantizable):
        if full in wanted:
            linear = getattr(parent, child_name)
            setattr(parent, child_name, PackedLinear.empty(linear.in_features, linear.out_features, quantizer,
                                                           linear.bias is not None))
            found.append(full)
    missing = wanted - set(found)
    if missing:
        raise ValueError(f"the saved quantised layers {sorted(missing)} are not quantisable linear layers of the model")
    return model
