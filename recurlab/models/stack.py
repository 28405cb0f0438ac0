"""The plain stack, the default depth module: N distinct blocks applied once each, in order.

    x <- block_{N-1}( ... block_1( block_0(x) ) ... )

SambaY's memory sharing (Ren et al. 2025, "Decoder-Hybrid-Decoder Architecture for Efficient
Reasoning with Long Generation", sec. 2) is wired here: the block at ``memory_layer`` hands its
mixer's memory read-out (e.g. the scan output of its SSM) to every later block whose mixer
``reads_memory`` (gated memory units). The read-out is recomputed from the tokens at every call,
so the state is only the blocks' own states.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .. import layers
from ..layers.tree import TokenTree
from .block import Block, config_block, mixer_name
from .depth import BlockStates, DepthModule, register_depth


@register_depth("stack", tiny={"n_layers": 2})
class Stack(DepthModule):
    """N distinct blocks; ``memory_layer``: the block whose memory read-out later memory readers take.

    State: :class:`BlockStates`, one mixer state per block.
    """

    state_type = BlockStates

    def __init__(self, blocks: list[Block], memory_layer: int | None = None):
        if not isinstance(blocks, (list, tuple, nn.ModuleList)) or not blocks or not all(isinstance(b, Block) for b in blocks):
            raise ValueError(f"blocks must be a non-empty list of recurlab Blocks, got {blocks!r:.80}")
        super().__init__(blocks[0].d_model)
        if any(b.d_model != self.d_model for b in blocks):
            raise ValueError(f"blocks must all have d_model={self.d_model}, got {[b.d_model for b in blocks]}")
        readers = [i for i, b in enumerate(blocks) if b.mixer.reads_memory]
        if memory_layer is not None:
            if not isinstance(memory_layer, int) or not 0 <= memory_layer < len(blocks):
                raise ValueError(f"memory_layer must be a block index in [0, {len(blocks)}), got {memory_layer!r}")
            if not blocks[memory_layer].mixer.produces_memory:
                raise ValueError(f"memory_layer={memory_layer} is a {type(blocks[memory_layer].mixer).__name__} "
                                 f"layer, which produces no memory read-out")
        if readers and (memory_layer is None or min(readers) <= memory_layer):
            raise ValueError(f"blocks {readers} read a memory: set memory_layer to an earlier block that produces one")
        self.blocks = nn.ModuleList(blocks)
        self.memory_layer = memory_layer

    @classmethod
    def from_config(cls, config) -> "Stack":
        blocks, memory_dim = [], None
        for i, name in enumerate(config.mixers):
            reads = layers.info(name).cls.reads_memory
            block = config_block(config, i, **({"memory_dim": memory_dim} if reads else {}))
            if i == config.memory_layer:
                memory_dim = block.mixer.memory_dim
            blocks.append(block)
        return cls(blocks, config.memory_layer)

    def run(self, x: torch.Tensor, state: BlockStates, step: bool, tree: TokenTree | None = None,
            prefix_states: bool = False) -> tuple[torch.Tensor, BlockStates]:
        """``tree``: the tokens form a :class:`TokenTree` (every block must be tree attention).
        ``prefix_states``: every block whose mixer has that capability returns a
        :class:`~recurlab.state.PrefixStates` (the state after every prefix) in place of its final state; the
        other blocks return theirs as usual (recurlab/decoding/verify.py takes the states it needs from them)."""
        states = list(self._check_length(state).blocks)
        if tree is not None and not all(b.mixer.tree_attention for b in self.blocks):
            names = sorted({mixer_name(b.mixer) for b in self.blocks if not b.mixer.tree_attention})
            raise ValueError(f"tree= needs every block to be full softmax attention; {', '.join(names)} cannot "
                             "score a token tree")
        if prefix_states and (step or tree is not None or self.memory_layer is not None):
            raise ValueError("prefix_states= is for a parallel call without tree= of a stack without memory sharing")
        extra = {} if tree is None else {"tree": tree}
        memory = None
        for i, block in enumerate(self.blocks):
            if i == self.memory_layer:
                x, states[i], memory = block.run_with_memory(x, states[i], step)
            elif block.mixer.reads_memory:
                x, states[i] = block.run(x, states[i], step, memory=memory)
            else:
                own = {"prefix_states": True} if prefix_states and block.mixer.prefix_states else {}
                x, states[i] = block.run(x, states[i], step, **extra, **own)
        return x, BlockStates(tuple(states))

    def init_state(self, batch_size, device=None, dtype=None) -> BlockStates:
        return BlockStates(tuple(b.mixer.init_state(batch_size, device, dtype) for b in self.blocks))

    def num_parameters(self) -> "OrderedDict[str, int]":
        count = lambda m: sum(p.numel() for p in m.parameters()) if m is not None else 0  # noqa: E731
        parts: OrderedDict[str, int] = OrderedDict()
        for i, block in enumerate(self.blocks):
            parts[f"layers.{i}.mixer ({block.mixer.registry_name})"] = count(block.mixer)
            if block.channel_mixer is not None:
                parts[f"layers.{i}.channel_mixer ({block.channel_mixer.registry_name})"] = count(block.channel_mixer)
            parts[f"layers.{i}.norms"] = count(block.mixer_norm) + count(block.channel_norm)
        return parts

    def _check_length(self, state: BlockStates) -> BlockStates:
        if len(state.blocks) != len(self.blocks):
            raise ValueError(f"state must hold one state per block ({len(self.blocks)}), got {len(state.blocks)}")
        return state

    def extra_repr(self) -> str:
        return f"n_layers={len(self.blocks)}, memory_layer={self.memory_layer}"
