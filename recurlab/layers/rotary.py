"""Rotary position embeddings (Su et al. 2021, "RoFormer", eq. 34), applied to (B, T, H, Dh).

Positions are absolute, so a KV cache's offset continues them across calls.

Frequencies θ_i = base^(-2i/Dh), i < Dh/2, optionally rescaled for a longer context (``scaling``, a
JSON-able dict, as pretrained Llama-family checkpoints declare it):

    {"type": "linear", "factor": f}        θ_i / f (position interpolation: Chen et al. 2023)
    {"type": "llama3", "factor": f, "low_freq_factor": l, "high_freq_factor": h,
     "original_max_position_embeddings": L}
                                           Llama 3.1's rule: with wavelength λ_i = 2π / θ_i,
                                           λ_i < L / h keeps θ_i, λ_i > L / l takes θ_i / f, and in between
                                           s = (L / λ_i - l) / (h - l) blends (1 - s) θ_i / f + s θ_i
"""

from __future__ import annotations

import math
from typing import Any

import torch

ROPE_SCALING_KEYS = {
    "linear": ("factor",),
    "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"),
}


def check_rope_scaling(scaling: Any) -> None:
    """A ValueError unless ``scaling`` is None or a dict {"type": "linear"|"llama3", its keys: positive numbers}."""
    if scaling is None:
        return
    if not isinstance(scaling, dict) or scaling.get("type") not in ROPE_SCALING_KEYS:
        raise ValueError(f"rope_scaling must be None or a dict with type one of {', '.join(ROPE_SCALING_KEYS)}, "
                         f"got {scaling!r}")
    expected = ROPE_SCALING_KEYS[scaling["type"]]
    keys = set(scaling) - {"type"}
    if keys != set(expected):
        raise ValueError(f"rope_scaling of type {scaling['type']!r} takes exactly the keys {', '.join(expected)}, "
                         f"got {', '.join(sorted(keys)) or 'none'}")
    for key in expected:
        value = scaling[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"rope_scaling[{key!r}] must be a number > 0, got {value!r}")
    if scaling["type"] == "llama3" and not scaling["high_freq_factor"] > scaling["low_freq_factor"]:
        raise ValueError(f"rope_scaling: high_freq_factor must exceed low_freq_factor, got {scaling!r}")


def rope_frequencies(head_dim: int, base: float = 10000.0, scaling: dict | None = None,
                     dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """θ (Dh/2,): base^(-2i/Dh), rescaled by ``scaling`` (module docstring)."""
    half = head_dim // 2
    theta = base ** (-torch.arange(half, device=device, dtype=dtype) / half)
    if scaling is None:
        return theta
    factor = scaling["factor"]
    if scaling["type"] == "linear":
        return theta / factor
    low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
    context = scaling["original_max_position_embeddings"]
    wavelength = 2 * math.pi / theta
    blend = ((context / wavelength - low) / (high - low)).clamp(0, 1)  # 0: long wavelengths, 1: short ones
    return (1 - blend) * theta / factor + blend * theta


def rotary(x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0, scaling: dict | None = None
           ) -> torch.Tensor:
    """Rotate pairs (x[..., i], x[..., i + Dh/2]) by angle position * θ_i (θ from :func:`rope_frequencies`).

    Args:
        x: (B, T, H, Dh) with Dh even.
        positions: (T,) absolute positions of the T tokens.
        base, scaling: the frequencies' base and optional rescaling (module docstring).
    """
    Dh = x.shape[-1]
    half = Dh // 2
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32  # float64 stays float64
    freqs = rope_frequencies(Dh, base, scaling, acc, x.device)
    angles = positions.to(acc).unsqueeze(-1) * freqs  # (T, half)
    cos, sin = angles.cos()[:, None, :], angles.sin()[:, None, :]  # (T, 1, half) broadcast over heads
    x1, x2 = x[..., :half].to(acc), x[..., half:].to(acc)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1).to(x.dtype)
