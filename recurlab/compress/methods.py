"""Weight quantisers by name, each a pair quantise(weight) -> (dequantised, codes, scales) and
dequantise(codes, scales, shape) -> weight, so that training (straight-through) and the packed form agree bit for bit.

    fairy2i   Fairy2i (recurlab.compress.fairy2i): the widely-linear complex form, codes {±1, ±i}, one pair of
              scales per tensor and stage; ``bits`` = T residual stages (1 bit per real weight each)
    rtn       real round-to-nearest per output channel on 2^bits symmetric levels (k - (L-1)/2) Δ, k = 0..L-1,
              Δ = max |w_row| / ((L-1)/2): the plain post-training baseline (bits 2: levels ±Δ/2, ±3Δ/2)
    ternary   real ternary round-to-nearest per output channel: {-1, 0, +1} x mean |w_row| (1.58 bits; stored
              in 2)
    bitnet    BitNet b1.58's ternary weights (Ma et al. 2024): {-1, 0, +1} x γ with γ = mean |W| over the whole
              tensor, RoundClip(W / γ, -1, 1); trained with the same straight-through estimator

Codes are unsigned ints below 2^code_bits (code_bits 2 or 4), stored packed (:func:`pack_codes`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from .fairy2i import fairy2i_dequantize, fairy2i_quantize

METHODS = ("fairy2i", "rtn", "ternary", "bitnet")
EPS = 1e-8


@dataclass(frozen=True)
class Quantizer:
    """One method at one bit width. ``bits``: per real weight as the paper counts it (scales not included);
    ``code_bits``: bits each stored code takes in the packed form."""

    method: str
    bits: float
    code_bits: int
    quantize: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    dequantize: Callable[[torch.Tensor, torch.Tensor, tuple[int, int]], torch.Tensor]

    @property
    def name(self) -> str:
        return f"{self.method}-{self.bits:.3g}bit"


def _levels_rtn(bits: int):
    levels = 2 ** bits
    half = (levels - 1) / 2

    def quantize(weight):
        with torch.no_grad():
            delta = (weight.abs().amax(1, keepdim=True) / half).clamp_min(EPS)
            codes = torch.clamp(torch.round(weight / delta + half), 0, levels - 1).to(torch.uint8)
            return dequantize(codes, delta.flatten(), tuple(weight.shape)), codes, delta.flatten()

    def dequantize(codes, scales, shape):
        return (codes.view(shape).to(scales.dtype) - half) * scales.view(-1, 1)

    return quantize, dequantize


def _ternary(per_channel: bool):
    def quantize(weight):
        with torch.no_grad():
            scale = weight.abs().mean(1, keepdim=True) if per_channel else weight.abs().mean().view(1, 1)
            scale = scale.clamp_min(EPS)
            codes = (torch.clamp(torch.round(weight / scale), -1, 1) + 1).to(torch.uint8)
            return dequantize(codes, scale.flatten(), tuple(weight.shape)), codes, scale.flatten()

    def dequantize(codes, scales, shape):
        return (codes.view(shape).to(scales.dtype) - 1) * scales.view(-1, 1)

    return quantize, dequantize


def _fairy2i(steps: int):
    def quantize(weight):
        return fairy2i_quantize(weight, steps)

    def dequantize(codes, scales, shape):
        n, m = shape[0] // 2, shape[1] // 2
        return fairy2i_dequantize(codes.view(steps, 2, n, m), scales.view(steps, 2, 2))

    return quantize, dequantize


def get_quantizer(method: str, bits: int | None = None) -> Quantizer:
    """The quantiser of ``method`` (:data:`METHODS`); ``bits``: fairy2i's stages T (1 or 2 in the paper; default 2),
    rtn's bits (2, 3 or 4; default 2); ternary and bitnet take none (1.58 bits)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if method in ("ternary", "bitnet"):
        if bits is not None:
            raise ValueError(f"bits does not apply to {method} (ternary: log2(3) = 1.58 bits per weight)")
        return Quantizer(method, math.log2(3), 2, *_ternary(per_channel=method == "ternary"))
    bits = 2 if bits is None else bits
    if not isinstance(bits, int) or isinstance(bits, bool):
        raise ValueError(f"bits must be an int, got {bits!r}")
    if method == "fairy2i":
        if not 1 <= bits <= 4:
            raise ValueError(f"bits (fairy2i's residual stages) must be in 1..4, got {bits}")
        return Quantizer(method, bits, 2, *_fairy2i(bits))
    if bits not in (2, 3, 4):
        raise ValueError(f"bits must be 2, 3 or 4 for rtn, got {bits}")
    return Quantizer(method, bits, 2 if bits == 2 else 4, *_levels_rtn(bits))


def pack_codes(codes: torch.Tensor, code_bits: int) -> torch.Tensor:
    """Codes (any shape, uint8 values below 2^code_bits) -> a flat uint8 tensor, 8 / code_bits codes per byte
    (the first code in the lowest bits); the tail is padded with zeros."""
    if code_bits not in (1, 2, 4, 8):
        raise ValueError(f"code_bits must be 1, 2, 4 or 8, got {code_bits}")
    flat = codes.reshape(-1).to(torch.uint8)
    if flat.numel() and int(flat.max()) >= 2 ** code_bits:
        raise ValueError(f"codes must be below 2^code_bits = {2 ** code_bits}, got {int(flat.max())}")
    per_byte = 8 // code_bits
    padded = torch.zeros(math.ceil(flat.numel() / per_byte) * per_byte, dtype=torch.uint8, device=flat.device)
    padded[:flat.numel()] = flat
    groups = padded.view(-1, per_byte).to(torch.int32)
    shifts = torch.arange(per_byte, dtype=torch.int32, device=flat.device) * code_bits
    return (groups << shifts).sum(1).to(torch.uint8)


def unpack_codes(packed: torch.Tensor, code_bits: int, count: int) -> torch.Tensor:
    """The first ``count`` codes of :func:`pack_codes`'s output, as a flat uint8 tensor."""
    per_byte = 8 // code_bits
    shifts = torch.arange(per_byte, dtype=torch.int32, device=packed.device) * code_bits
    codes = (packed.to(torch.int32).view(-1, 1) >> shifts) & (2 ** code_bits - 1)
    return codes.reshape(-1)[:count].to(torch.uint8)
