"""Sliced group attention (Shen, Liu & Xing, "Sliced Recursive Transformer", ECCV 2022, sec. 3.2):
causal softmax attention restricted to groups of tokens, which SReT re-partitions at every
recursive application so that information still crosses group borders over depth.

SReT slices a (bidirectional) image into G groups after a random token permutation; a causal LM
cannot permute, so the groups here are contiguous and causal:

    groups  [0, offset), [offset, offset + G), [offset + G, offset + 2G), ...    (G = group_size)
    mask    token t attends to s iff s <= t and s lies in t's group  (and t - s < window if set)

Everything else is :class:`recurlab.layers.attention.Attention` (projections, RoPE at absolute
positions). The KV cache only needs the current group: it is emptied at every group start, so
decoding memory is O(G) per layer. ``forward``/``step`` take ``group=(size, offset)`` to override the
constructor's partition for one call: :class:`recurlab.recursion.Recursive` changes it per loop
(capability ``sliced_groups``). ``group_size=None`` (or ``group=(None, 0)``) is ordinary attention.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import ops
from .attention import Attention
from .registry import register


def check_group(group, name: str) -> tuple[int | None, int]:
    """(size, offset) validated: size a positive int or None, offset in [0, size) (0 without a size)."""
    if not isinstance(group, tuple) or len(group) != 2:
        raise ValueError(f"{name} must be a (size, offset) tuple, got {group!r}")
    size, offset = group
    if size is None:
        if offset != 0:
            raise ValueError(f"{name}: a group offset needs a group size, got offset {offset!r} without one")
        return None, 0
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"{name}: group size must be a positive int number of tokens or None, got {size!r}")
    if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset < size:
        raise ValueError(f"{name}: group offset must be an int in [0, group size={size}), got {offset!r}")
    return size, offset


def group_bounds(position: int, size: int, offset: int) -> tuple[int, int]:
    """[start, end) of the group holding token ``position``: [0, offset) first, then blocks of ``size``."""
    if position < offset:
        return 0, offset
    start = offset + (position - offset) // size * size
    return start, start + size


@register("sliced_attention", kind="token", paper="Shen et al. 2022, SReT sliced group attention (causal groups)",
          state="KV cache of the current group", tiny={"n_heads": 2, "group_size": 4, "group_offset": 1})
class SlicedAttention(Attention):
    kv_attention = False  # its cache follows the groups: MoR's routed attention cannot re-run it
    sliced_groups = True
    tree_attention = False  # groups restart attention: a tree would need its own grouping

    def __init__(self, d_model: int, n_heads: int | None = None, n_kv_heads: int | None = None,
                 rope_base: float = 10000.0, window: int | None = None, group_size: int | None = 64,
                 group_offset: int = 0):
        super().__init__(d_model, n_heads, n_kv_heads, rope_base, window)
        self.group_size, self.group_offset = check_group((group_size, group_offset), "group_size/group_offset")

    def mix(self, x, state, group: tuple[int | None, int] | None = None):
        """x (B, T, d_model) -> y, KVCache; ``group=(size, offset)`` overrides the constructor's partition."""
        size, offset = (self.group_size, self.group_offset) if group is None else check_group(group, "group")
        q, k, v = self.project(x, state.offset)
        if size is None:
            o, cache = ops.attention(q, k, v, window=self.window, cache=state)
        else:
            o, cache = self._grouped_attention(q, k, v, state, size, offset)
        return self.o_proj(o.flatten(-2)), cache

    def mix_step(self, x_t, state, group: tuple[int | None, int] | None = None):
        y, cache = self.mix(x_t.unsqueeze(1), state, group)
        return y.squeeze(1), cache

    def _grouped_attention(self, q, k, v, cache: ops.KVCache, size: int, offset: int):
        """Causal attention within contiguous groups. q (B, T, H, Dh), k, v (B, T, H_kv, Dh) at
        positions cache.offset.. -> o (B, T, H, Dh) and the cache of the group the last token is in."""
        B, T, H, Dh = q.shape
        p0 = cache.offset
        start, end = group_bounds(p0, size, offset)
        n_head = min(T, end - p0)  # the tokens that finish the current group, with its cached keys
        o_head, cache = ops.attention(q[:, :n_head], k[:, :n_head], v[:, :n_head], window=self.window,
                                      cache=cache.since(start))
        rest = T - n_head
        if rest:  # whole groups of `size` from here on: one batched call over (B * groups) sequences
            n_groups = -(-rest // size)
            pad = n_groups * size - rest  # padded tokens come after every real query: causality hides them

            def grouped(t):
                t = F.pad(t[:, n_head:], (0, 0, 0, 0, 0, pad))
                return t.reshape(B * n_groups, size, *t.shape[2:])

            o_rest, _ = ops.attention(grouped(q), grouped(k), grouped(v), window=self.window)
            o_head = torch.cat([o_head, o_rest.reshape(B, n_groups * size, H, Dh)[:, :rest]], 1)
            last = p0 + n_head + (n_groups - 1) * size  # start of the group of the last token
            cache = ops.KVCache(self.window, offset=last).append(k[:, last - p0:], v[:, last - p0:]).trimmed()
        if cache.offset == group_bounds(cache.offset - 1, size, offset)[1]:
            cache = cache.since(cache.offset)  # the group is complete: its keys are never read again
        return o_head, cache
