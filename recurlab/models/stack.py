"""The plain stack, the default depth module: N distinct blocks applied once each, in order.

    x <- block_{N-1}( ... block_1( block_0(x) ) ... )

SambaY's memory sharing (Ren et al. 2025, "Decoder-Hybrid-Decoder Architecture for Efficient
Reasoning with Long Generation", sec. 2) is wired here: the block at ``memory_layer`` hands its
mixer's memory read-out (e.g. the scan output of its SSM) to every later block whose mixer
``reads_memory`` (gated memory units). The read-out is recomputed from the tokens at every call,
so the state is only the blocks' own states.

The cache-once layout of YOCO (Sun et al. 2024) and of SambaY's cross-decoder is wired here too: the full
attention block at ``kv_layer`` keeps the model's one KV cache, and every later block whose mixer
``reads_kv`` (cross-attention) attends over that cache as it stands after the current tokens. Since the
blocks after ``kv_layer`` keep no state of their own, a prompt only needs them at its last token
(:meth:`Stack.prefill`, YOCO's early exit): prefill costs the self-decoder plus the one layer's key and value
projections, linear in the prompt for a recurrent / sliding-window self-decoder.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .. import layers
from ..layers.attention import Attention
from ..layers.tree import TokenTree
from ..state import NoState
from .block import Block, config_block, mixer_name
from .depth import BlockStates, DepthModule, register_depth


@register_depth("stack", tiny={"n_layers": 2})
class Stack(DepthModule):
    """N distinct blocks; ``memory_layer``: the block whose memory read-out later memory readers take;
    ``kv_layer``: the full-attention block whose KV cache later cross-attention blocks read.

    State: :class:`BlockStates`, one mixer state per block.
    """

    state_type = BlockStates

    def __init__(self, blocks: list[Block], memory_layer: int | None = None, kv_layer: int | None = None):
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
        self._check_kv_layer(blocks, kv_layer)
        self.blocks = nn.ModuleList(blocks)
        self.memory_layer = memory_layer
        self.kv_layer = kv_layer

    @staticmethod
    def _check_kv_layer(blocks: list[Block], kv_layer: int | None) -> None:
        readers = [i for i, b in enumerate(blocks) if b.mixer.reads_kv]
        if kv_layer is None:
            if readers:
                raise ValueError(f"blocks {readers} read a KV cache (cross_attention): set kv_layer to an earlier "
                                 "full-attention block")
            return
        if not isinstance(kv_layer, int) or isinstance(kv_layer, bool) or not 0 <= kv_layer < len(blocks):
            raise ValueError(f"kv_layer must be a block index in [0, {len(blocks)}), got {kv_layer!r}")
        writer = blocks[kv_layer].mixer
        if type(writer) is not Attention or writer.window is not None:
            raise ValueError(f"kv_layer={kv_layer} must be a full 'attention' block (its KV cache keeps every "
                             f"token), got {mixer_name(writer)!r}")
        if any(i <= kv_layer for i in readers):
            raise ValueError(f"cross_attention blocks {readers} must come after kv_layer={kv_layer}")
        for i in readers:
            reader = blocks[i].mixer
            mine = (reader.n_kv_heads, reader.head_dim, reader.rope_base, reader.rope_scaling)
            theirs = (writer.n_kv_heads, writer.head_dim, writer.rope_base, writer.rope_scaling)
            if mine != theirs:
                raise ValueError(f"block {i}'s cross_attention must read keys as block {kv_layer} writes them: "
                                 f"(n_kv_heads, head_dim, rope_base, rope_scaling) {mine} != {theirs}")

    @classmethod
    def from_config(cls, config) -> "Stack":
        blocks, memory_dim, kv_layout = [], None, {}
        for i, name in enumerate(config.mixers):
            cls_ = layers.info(name).cls
            wired = {"memory_dim": memory_dim} if cls_.reads_memory else kv_layout if cls_.reads_kv else {}
            block = config_block(config, i, **wired)
            if i == config.memory_layer:
                memory_dim = block.mixer.memory_dim
            if i == config.kv_layer and isinstance(block.mixer, Attention):  # the cache's layout, for its readers
                writer = block.mixer
                kv_layout = {"n_kv_heads": writer.n_kv_heads, "head_dim": writer.head_dim,
                             "rope_base": writer.rope_base, "rope_scaling": writer.rope_scaling}
            blocks.append(block)
        return cls(blocks, config.memory_layer, config.kv_layer)

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
        if prefix_states and (step or tree is not None or self.shares_layers):
            raise ValueError("prefix_states= is for a parallel call without tree= of a stack without memory or KV "
                             "sharing")
        if tree is not None and self.kv_layer is not None:
            raise ValueError("tree= is not supported with a shared KV cache (kv_layer)")
        extra = {} if tree is None else {"tree": tree}
        memory = None
        for i, block in enumerate(self.blocks):
            if i == self.memory_layer:
                x, states[i], memory = block.run_with_memory(x, states[i], step)
            elif block.mixer.reads_memory:
                x, states[i] = block.run(x, states[i], step, memory=memory)
            elif block.mixer.reads_kv:
                x, states[i] = block.run(x, states[i], step, kv=states[self.kv_layer])
            else:
                own = {"prefix_states": True} if prefix_states and block.mixer.prefix_states else {}
                x, states[i] = block.run(x, states[i], step, **extra, **own)
        return x, BlockStates(tuple(states))

    @property
    def shares_layers(self) -> bool:
        """Whether blocks read another block's memory read-out or KV cache (SambaY's and YOCO's layouts)."""
        return self.memory_layer is not None or self.kv_layer is not None

    @property
    def early_exit(self) -> bool:
        """Whether a prompt needs the blocks after ``kv_layer`` only at its last token: they keep no state."""
        return self.kv_layer is not None and all(
            b.mixer.state_type is NoState for b in self.blocks[self.kv_layer + 1:])

    def prefill(self, x: torch.Tensor, state=None) -> tuple[torch.Tensor, BlockStates]:
        """x (B, T, d) -> the output at the last position (B, d) and the state after x, as ``forward`` gives.

        With a shared KV cache (YOCO's early exit): the blocks before ``kv_layer`` run on all T tokens; the
        ``kv_layer`` block only appends the keys and values of the first T - 1 tokens to its cache, then runs on
        the last token; every later block runs on the last token only (its memory read-out sliced to it)."""
        if not self.early_exit:
            return super().prefill(x, state)
        self._check(x, "x", 3, "(B, T, d_model)")
        state = self._check_length(self.resolve_state(state, x))
        if x.shape[0] == 0 or x.shape[1] == 0:
            return super().prefill(x, state)
        states, memory, k = list(state.blocks), None, self.kv_layer
        for i, block in enumerate(self.blocks[:k]):
            if i == self.memory_layer:
                x, states[i], memory = block.run_with_memory(x, states[i], False)
            else:
                x, states[i] = block.run(x, states[i], False, **({"memory": memory} if block.mixer.reads_memory else {}))
        writer = self.blocks[k].mixer
        _, keys, values = writer.project(self.blocks[k].mixer_norm(x[:, :-1]), states[k].offset)
        states[k] = states[k].append(keys, values)
        x, memory = x[:, -1], None if memory is None else memory[:, -1]
        for i, block in enumerate(self.blocks[k:], start=k):
            inputs = {"memory": memory} if block.mixer.reads_memory else {"kv": states[k]} if block.mixer.reads_kv else {}
            x, states[i] = block.run(x, states[i], True, **inputs)
        self.aux_loss = None
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
        return f"n_layers={len(self.blocks)}, memory_layer={self.memory_layer}, kv_layer={self.kv_layer}"
