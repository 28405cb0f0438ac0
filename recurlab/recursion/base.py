"""The contract of a depth module, the vanilla stack every recursion is compared with, and a block builder.

A *depth module* maps the residual stream through the network's depth, with a state for decoding:

    y, state = depth(x, state)          # x, y: (B, T, d_model); state: anything (None = start)
    y_t, state = depth.step(x_t, state) # x_t, y_t: (B, d_model): one token, for decoding
    depth.aux_loss                      # a scalar tensor set by the last forward (router losses), or None

:class:`recurlab.recursion.DepthLM` puts an embedding and a tied head around any depth module,
which gives it the :class:`recurlab.models.CausalLM` interface (forward/step/features/logits/
generate) so that the trainer, generation and benchmarks work unchanged. Every wrapper in this
package (Recursive, Relaxed, MixtureOfRecursions, RecurrentDepth) is a depth module built around
blocks from :func:`make_block`, whose token mixer can be any registered one (attention, gla, ...).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .. import layers
from ..models.block import Block


def make_block(mixer: str, d_model: int, channel_mixer: str | None = "swiglu", mixer_kwargs: dict | None = None,
               channel_kwargs: dict | None = None, norm_eps: float = 1e-5) -> Block:
    """A pre-norm residual block (token mixer + channel mixer) with the named registered units."""
    token = layers.build(mixer, d_model, kind="token", **(mixer_kwargs or {}))
    if token.needs_memory:
        raise ValueError(f"mixer {mixer!r} reads another layer's memory; recursion blocks take self-contained mixers")
    channel = layers.build(channel_mixer, d_model, kind="channel", **(channel_kwargs or {})) if channel_mixer else None
    return Block(token, channel, norm_eps)


class DepthModule(nn.Module):
    """Base class of depth modules: (B, T, d) -> (B, T, d) with a state, plus an auxiliary loss."""

    def __init__(self, d_model: int):
        super().__init__()
        if not isinstance(d_model, int) or d_model < 1:
            raise ValueError(f"d_model must be a positive int, got {d_model!r}")
        self.d_model = d_model
        self.aux_loss: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        raise NotImplementedError

    def step(self, x_t: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        raise NotImplementedError

    @staticmethod
    def split_state(state: Any, n: int, what: str = "state") -> list:
        """``state`` as a list of n entries (None -> n Nones); a ValueError if it has another length."""
        if state is None:
            return [None] * n
        if not isinstance(state, (list, tuple)) or len(state) != n:
            raise ValueError(f"{what} must be a list of {n} entries (as returned by forward/step), got "
                             f"{type(state).__name__}{'' if not isinstance(state, (list, tuple)) else f' of {len(state)}'}")
        return list(state)


class Stack(DepthModule):
    """The vanilla baseline: N distinct blocks applied once each, in order."""

    def __init__(self, blocks: list[Block]):
        if not blocks:
            raise ValueError("blocks must hold at least one Block")
        super().__init__(blocks[0].mixer.d_model)
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, list]:
        states = self.split_state(state, len(self.blocks))
        for i, block in enumerate(self.blocks):
            x, states[i], _ = block(x, states[i])
        return x, states

    def step(self, x_t: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, list]:
        states = self.split_state(state, len(self.blocks))
        for i, block in enumerate(self.blocks):
            x_t, states[i], _ = block.step(x_t, states[i])
        return x_t, states
