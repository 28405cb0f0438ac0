"""The decoding states shared by several token mixers (recurlab.state's contract: frozen, batch first).

    HiddenState(h)         h (B, hidden): a vector recurrence (gru, mingru, minlstm)
    MatrixState(S)         S (B, H, K, V): a matrix memory per head (gla)
    InputWindow(inputs)    inputs (B, W, d): the last W inputs a convolution still needs (gam, baseconv, pgn)

States particular to one mixer (hyena, liger, rwkv) sit beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..state import State


@dataclass(frozen=True)
class HiddenState(State):
    """h: (B, hidden), float32 (float64 for float64 inputs)."""

    h: torch.Tensor


@dataclass(frozen=True)
class MatrixState(State):
    """S: (B, H, K, V) per-head matrix memory, float32 (float64 for float64 inputs)."""

    S: torch.Tensor


@dataclass(frozen=True)
class InputWindow(State):
    """inputs: (B, W, d), the last W inputs (zeros before the first token)."""

    inputs: torch.Tensor
