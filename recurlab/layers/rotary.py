"""Rotary position embeddings (Su et al. 2021, "RoFormer", eq. 34), applied to (B, T, H, Dh).

Positions are absolute, so a KV cache's offset continues them across calls.
"""

from __future__ import annotations

import torch


def rotary(x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Rotate pairs (x[..., i], x[..., i + Dh/2]) by angle position * base^(-2i/Dh).

    Args:
        x: (B, T, H, Dh) with Dh even.
        positions: (T,) absolute positions of the T tokens.
    """
    Dh = x.shape[-1]
    half = Dh // 2
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32  # float64 stays float64
    freqs = base ** (-torch.arange(half, device=x.device, dtype=acc) / half)
    angles = positions.to(acc).unsqueeze(-1) * freqs  # (T, half)
    cos, sin = angles.cos()[:, None, :], angles.sin()[:, None, :]  # (T, 1, half) broadcast over heads
    x1, x2 = x[..., :half].to(acc), x[..., half:].to(acc)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1).to(x.dtype)
