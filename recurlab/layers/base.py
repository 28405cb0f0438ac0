"""The contract every token mixer meets, and input checks shared by the layers.

A token mixer maps (B, T, d_model) to (B, T, d_model) and carries a state:

    y, state = mixer(x, state)          # whole sequence (parallel form), state may be None
    y_t, state = mixer.step(x_t, state) # one token (decoding form), x_t: (B, d_model)
    state = mixer.init_state(batch_size)

Running on x[:, :t] then x[:, t:] with the carried state equals running on x,
and the step loop equals the parallel form (tests/layers check both for every
registered mixer).

Mixers that can hand a *memory read-out* to later layers (SambaY's gated memory
units) set ``memory_dim`` and implement ``forward_with_memory`` /
``step_with_memory``; mixers that consume one set ``needs_memory = True`` and
take ``memory=`` in ``forward`` and ``step``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..ops import _checks


class TokenMixer(nn.Module):
    """Base class of token mixers: (B, T, d_model) -> (B, T, d_model) with a state."""

    memory_dim: int | None = None  # width of the memory read-out this mixer can produce
    needs_memory: bool = False  # True for mixers that consume a memory read-out (gmu)

    def __init__(self, d_model: int):
        super().__init__()
        if not isinstance(d_model, int) or d_model < 1:
            raise ValueError(f"d_model must be a positive int, got {d_model!r}")
        self.d_model = d_model

    def forward(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        raise NotImplementedError

    def step(self, x_t: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        raise NotImplementedError

    def init_state(self, batch_size: int, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> Any:
        """The state before the first token (what ``state=None`` means)."""
        raise NotImplementedError

    def forward_with_memory(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any, torch.Tensor]:
        raise NotImplementedError(f"{type(self).__name__} does not produce a memory read-out")

    def step_with_memory(self, x_t: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any, torch.Tensor]:
        raise NotImplementedError(f"{type(self).__name__} does not produce a memory read-out")

    # ------------------------------------------------------------------ checks

    def check_sequence(self, x: torch.Tensor, name: str = "x") -> None:
        """Raise ValueError unless x is a floating (B, T, d_model) tensor."""
        _checks.check_tensor(name, x, ranks=(3,), layout=f"(B, T, d_model={self.d_model})")
        if x.shape[-1] != self.d_model:
            raise ValueError(f"{name} must have shape (B, T, d_model={self.d_model}), got {tuple(x.shape)}")

    def check_token(self, x_t: torch.Tensor, name: str = "x_t") -> None:
        """Raise ValueError unless x_t is a floating (B, d_model) tensor."""
        _checks.check_tensor(name, x_t, ranks=(2,), layout=f"(B, d_model={self.d_model})")
        if x_t.shape[-1] != self.d_model:
            raise ValueError(f"{name} must have shape (B, d_model={self.d_model}), got {tuple(x_t.shape)}")

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}"


class ChannelMixer(nn.Module):
    """Base class of channel mixers: position-wise (B, T, d_model) -> (B, T, d_model), no state."""

    def __init__(self, d_model: int):
        super().__init__()
        if not isinstance(d_model, int) or d_model < 1:
            raise ValueError(f"d_model must be a positive int, got {d_model!r}")
        self.d_model = d_model

    def check_input(self, x: torch.Tensor) -> None:
        _checks.check_tensor("x", x, ranks=(2, 3), layout=f"(B, T, d_model={self.d_model}) or (B, d_model)")
        if x.shape[-1] != self.d_model:
            raise ValueError(f"x must have last dimension d_model={self.d_model}, got shape {tuple(x.shape)}")


def state_batch_size(state: Any) -> int | None:
    """The batch size of a (possibly nested) state, or None."""
    if isinstance(state, torch.Tensor):
        return state.shape[0]
    if isinstance(state, (tuple, list)):
        for s in state:
            b = state_batch_size(s)
            if b is not None:
                return b
    return None
