"""Recursive: K unique blocks looped n_loops times (layer tying), with SReT's per-application residual
scalars and sliced group attention.

Shen, Liu & Xing, "Sliced Recursive Transformer" (ECCV 2022; arXiv 2111.05297, 2021). The
network reuses its blocks over depth: with unique blocks f_0 .. f_{K-1}, loop l = 0 .. n_loops-1 applies

    x <- f_{K-1}( ... f_1( f_0(x) ) ... )            (effective depth N = K * n_loops, K blocks of weights)

and each application (l, i) is a pre-norm residual block whose two residuals carry SReT's learnable
scalars (``loop_scales=True``; all initialised to 1, so the start equals plain tying):

    x <- c1[l, i] * x + c2[l, i] * TokenMixer_i(RMSNorm(x))
    x <- c3[l, i] * x + c4[l, i] * ChannelMixer_i(RMSNorm(x))

Sliced group attention (``group_sizes``/``group_offsets``, one entry per loop): the
``sliced_attention`` mixers attend within contiguous causal groups whose partition changes from loop
to loop (recurlab.layers.sliced_attention), so that each loop costs O(G) keys per token while tokens in other groups
are reached through the loops before. :func:`sliced_group_schedule` builds the two schedules used here:
"shift" (every loop size G, odd loops shifted by G/2, so each border of one loop is inside a group of
the next) and "grow" (sizes G, 2G, 4G, ...: fewer, larger groups in later loops, as SReT's G1 > G2
group counts; a size None is ordinary attention).

Choices where the paper leaves a causal LM open (see docs/recursion/recursive.md):
- Order of applications: the whole stack per loop (f_0..f_{K-1}, f_0..f_{K-1}, ...), the "cycle" order
  of the Relaxed Recursive Transformers paper. SReT's released code repeats each block in place
  (f_0, f_0, f_1, f_1, ...; SReT.py, verified for recurlab/vision/sret.py); a Stack of [b0, b0, b1, b1]
  gives that order.
- The scalars c1..c4 are per application here; in SReT's code they belong to the block and are shared
  by its loops.
- SReT's non-shared projection after each recursion (x = c1 x + c2 MLP(LN x)) is not included: it is
  not layer tying, and the block's own channel mixer plays that role.
- Causal contiguous groups instead of SReT's random permutation, which would let tokens see the future.

State: :class:`recurlab.models.BlockStates` with one entry per application, index l * K + i (loop l,
block i), each the state of block i's token mixer (a KVCache for attention, the recurrent state for
gla, ...): a block looped n times keeps n separate states, as n distinct layers would.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..layers.sliced_attention import check_group
from ..models.block import Block, check_self_contained, config_block
from ..models.depth import BlockStates, DepthModule, register_depth


def sliced_group_schedule(group_size: int, n_loops: int, kind: str = "shift") -> tuple[list[int | None], list[int]]:
    """(group_sizes, group_offsets) for :class:`Recursive` so that successive loops use different partitions.

    kind "shift": size G every loop, offsets 0, G//2, 0, G//2, ...; kind "grow": sizes G, 2G, 4G, ..., offsets 0.
    """
    if not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size must be a positive int, got {group_size!r}")
    if kind == "shift":
        if group_size < 2:
            raise ValueError("kind='shift' needs group_size >= 2 (a shift of group_size // 2 = 0 would not "
                             "move the groups)")
        return [group_size] * n_loops, [(group_size // 2) * (l % 2) for l in range(n_loops)]
    if kind == "grow":
        return [group_size * 2**l for l in range(n_loops)], [0] * n_loops
    raise ValueError(f"kind must be 'shift' or 'grow', got {kind!r}")


@register_depth("recursive", tiny={"n_layers": 2, "depth_kwargs": {"n_loops": 2, "loop_scales": True}})
class Recursive(DepthModule):
    """K unique blocks applied n_loops times in order (effective depth K * n_loops).

    Args:
        blocks: the K distinct Blocks (from :func:`recurlab.models.make_block`).
        n_loops: how many times the stack of blocks is applied (>= 1).
        loop_scales: learn SReT's residual scalars (c1, c2, c3, c4) per application, initialised to 1.
        group_sizes: per loop, the sliced-group size of every block's mixer (None: ungrouped); None to
            leave the mixers as constructed. Needs mixers with the ``sliced_groups`` capability
            (``sliced_attention``).
        group_offsets: per loop, where the first full group starts (in [0, size)); zeros if None.
    """

    state_type = BlockStates

    def __init__(self, blocks: list[Block], n_loops: int, loop_scales: bool = False,
                 group_sizes: list[int | None] | None = None, group_offsets: list[int] | None = None):
        if (not isinstance(blocks, (list, tuple, nn.ModuleList)) or not blocks
                or not all(isinstance(b, Block) for b in blocks)):
            raise ValueError(f"blocks must be a non-empty list of recurlab Blocks, got {blocks!r:.80}")
        if len({id(b) for b in blocks}) != len(blocks):
            raise ValueError("blocks must be distinct Block objects (sharing is what n_loops does)")
        if not isinstance(n_loops, int) or isinstance(n_loops, bool) or n_loops < 1:
            raise ValueError(f"n_loops must be a positive int, got {n_loops!r}")
        super().__init__(blocks[0].d_model)
        if any(b.d_model != self.d_model for b in blocks):
            raise ValueError(f"blocks must all have d_model={self.d_model}, got {[b.d_model for b in blocks]}")
        check_self_contained(blocks, "blocks", type(self).registry_name)
        self.blocks = nn.ModuleList(blocks)
        self.n_loops = n_loops
        self.loop_scales = nn.Parameter(torch.ones(n_loops, len(blocks), 4)) if loop_scales else None
        if self.loop_scales is not None:
            self.loop_scales.no_weight_decay = True  # scalars: the trainer must not decay them towards 0
        self.groups = self._group_schedule(group_sizes, group_offsets)

    @classmethod
    def from_config(cls, config, *, n_loops: int, loop_scales: bool = False,
                    group_sizes: list[int | None] | None = None, group_offsets: list[int] | None = None
                    ) -> "Recursive":
        """The config's n_layers blocks, looped n_loops times."""
        blocks = [config_block(config, i) for i in range(config.n_layers)]
        return cls(blocks, n_loops, loop_scales, group_sizes, group_offsets)

    @property
    def n_unique(self) -> int:
        """K, the number of distinct blocks."""
        return len(self.blocks)

    @property
    def n_applications(self) -> int:
        """Block applications per token (the compute of one forward), K * n_loops."""
        return self.n_unique * self.n_loops

    def init_state(self, batch_size, device=None, dtype=None) -> BlockStates:
        return BlockStates(tuple(self.blocks[i].mixer.init_state(batch_size, device, dtype)
                                 for _ in range(self.n_loops) for i in range(self.n_unique)))

    def run(self, x: torch.Tensor, state: BlockStates, step: bool) -> tuple[torch.Tensor, BlockStates]:
        states = self.application_states(state)
        for loop in range(self.n_loops):
            x = self.run_loop(loop, x, states, step)
        return x, BlockStates(tuple(states))

    def application_states(self, state: BlockStates) -> list:
        """The states of the n_applications block applications, as a new list."""
        if len(state.blocks) != self.n_applications:
            raise ValueError(f"state must hold one state per block application ({self.n_applications}), "
                             f"got {len(state.blocks)}")
        return list(state.blocks)

    def run_loop(self, loop: int, x: torch.Tensor, states: list, step: bool) -> torch.Tensor:
        """Apply loop ``loop`` (all K blocks) to x ((B, T, d) or (B, d) with step); replaces the loop's
        entries of the list ``states`` with the new states."""
        for i in range(self.n_unique):
            j = loop * self.n_unique + i
            x, states[j] = self.apply_block(loop, i, x, states[j], step)
        return x

    def apply_block(self, loop: int, i: int, x: torch.Tensor, state: Any, step: bool) -> tuple[torch.Tensor, Any]:
        """One application of block i in loop ``loop``: Block's two pre-norm residual sub-steps with the
        loop's scalars and sliced groups."""
        block = self.blocks[i]
        c1, c2, c3, c4 = self.loop_scales[loop, i] if self.loop_scales is not None else (1.0, 1.0, 1.0, 1.0)
        mixer_norm, channel_norm = self.norms(loop, i)
        kwargs = {} if self.groups is None else {"group": self.groups[loop]}
        y, state = (block.mixer.step if step else block.mixer)(mixer_norm(x), state, **kwargs)
        x = c1 * x + c2 * y
        if block.channel_mixer is not None:
            x = c3 * x + c4 * block.channel_mixer(channel_norm(x))
        return x, state

    def norms(self, loop: int, i: int) -> tuple[nn.Module, nn.Module | None]:
        """The (token-mixer, channel-mixer) RMSNorms of application (loop, i): the block's own, shared."""
        block = self.blocks[i]
        return block.mixer_norm, block.channel_norm

    def _group_schedule(self, sizes, offsets) -> list[tuple[int | None, int]] | None:
        if sizes is None:
            if offsets is not None:
                raise ValueError("group_offsets needs group_sizes")
            return None
        if not isinstance(sizes, (list, tuple)) or len(sizes) != self.n_loops:
            raise ValueError(f"group_sizes must be a list of n_loops={self.n_loops} sizes (int or None), got {sizes!r}")
        offsets = [0] * self.n_loops if offsets is None else offsets
        if not isinstance(offsets, (list, tuple)) or len(offsets) != self.n_loops:
            raise ValueError(f"group_offsets must be a list of n_loops={self.n_loops} ints, got {offsets!r}")
        ungroupable = [type(b.mixer).__name__ for b in self.blocks if not b.mixer.sliced_groups]
        if ungroupable:
            raise ValueError(f"group_sizes needs every block's token mixer to take sliced groups "
                             f"(sliced_attention), got {ungroupable}")
        return [check_group((size, offset), f"group_sizes/group_offsets[{loop}]")
                for loop, (size, offset) in enumerate(zip(sizes, offsets))]

    def extra_repr(self) -> str:
        return (f"n_unique={self.n_unique}, n_loops={self.n_loops}, loop_scales={self.loop_scales is not None}, "
                f"groups={self.groups}")
