"""A residual block: pre-norm token mixer, then pre-norm channel mixer (as in GPT-2 / LLaMA).

    x = x + mixer(RMSNorm(x))
    x = x + channel_mixer(RMSNorm(x))
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..layers import TokenMixer


class Block(nn.Module):
    def __init__(self, mixer: TokenMixer, channel_mixer: nn.Module | None = None, norm_eps: float = 1e-5):
        super().__init__()
        self.mixer = mixer
        self.mixer_norm = nn.RMSNorm(mixer.d_model, eps=norm_eps)
        self.channel_mixer = channel_mixer
        self.channel_norm = nn.RMSNorm(mixer.d_model, eps=norm_eps) if channel_mixer is not None else None

    def forward(self, x: torch.Tensor, state: Any = None, memory: torch.Tensor | None = None,
                produce_memory: bool = False) -> tuple[torch.Tensor, Any, torch.Tensor | None]:
        """x (B, T, d) -> (x, state, memory read-out if produce_memory else None)."""
        return self._run(x, state, memory, produce_memory, step=False)

    def step(self, x_t: torch.Tensor, state: Any = None, memory: torch.Tensor | None = None,
             produce_memory: bool = False) -> tuple[torch.Tensor, Any, torch.Tensor | None]:
        """x_t (B, d) -> (x_t, state, memory read-out of this token if produce_memory else None)."""
        return self._run(x_t, state, memory, produce_memory, step=True)

    def _run(self, x, state, memory, produce_memory, step):
        h = self.mixer_norm(x)
        mixer = self.mixer
        out_memory = None
        if produce_memory:
            y, state, out_memory = (mixer.step_with_memory if step else mixer.forward_with_memory)(h, state)
        elif mixer.needs_memory:
            y, state = (mixer.step if step else mixer)(h, state, memory=memory)
        else:
            y, state = (mixer.step if step else mixer)(h, state)
        x = x + y
        if self.channel_mixer is not None:
            x = x + self.channel_mixer(self.channel_norm(x))
        return x, state, out_memory
