"""Dropping the last tokens from a decoding state without running the model, where the state allows it.

    earlier = rewind(state, count)     # the state before the last `count` tokens, or None
    kept = keep_path(start, end, nodes)  # after a token-tree call: the state after one of its paths
    if can_keep_prefix_states(model):  # after model(tokens, state, prefix_states=True) -> (logits, along):
        state = prefix_state(along, m, n)  # the state after the first m of its n tokens

An attention KV cache holds every past token's key and value, so forgetting the last ``count``
tokens is a shorter view of the same buffers (:meth:`KVCache.without_last`): no model call. A
recurrent state (a hidden vector, a matrix memory, a convolution's window) has already folded those
tokens in and cannot give them back; sliding-window caches have dropped the keys a rewind would need
again. For those :func:`rewind` returns None and the caller re-runs the accepted tokens from a kept
state instead (recurlab/decoding/verify.py). A model's state is rewound when every part of it can
be: a stack of attention blocks yes, a hybrid with one recurrent block no.

A recurrence whose parallel form yields the state after every token (diagonal scans: minGRU,
minLSTM; gated linear attention: gla, liger_gla; the ``prefix_states`` capability of
recurlab/layers/base.py) can keep them all during the call instead: :func:`prefix_state` then gives
the state after any prefix of the call's tokens without running anything again, for a plain stack
whose every block either keeps its prefix states or holds a KV cache without a window.
"""

from __future__ import annotations

import torch

from ..models.depth import BlockStates
from ..ops.attention.cache import KVCache
from ..models.stack import Stack
from ..state import NoState, PrefixStates, State


def rewind(state: State, count: int) -> State | None:
    """``state`` without its last ``count`` tokens, or None when some part of it cannot drop tokens."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if count == 0:
        return state
    if isinstance(state, KVCache):
        return state.without_last(count) if state.window is None and state.length >= count else None
    if isinstance(state, NoState):
        return state
    if type(state) is BlockStates:
        blocks = tuple(rewind(s, count) for s in state.blocks)
        return None if any(b is None for b in blocks) else state.replace(blocks=blocks)
    return None


def keep_path(start: State, end: State, nodes: list[int]) -> State:
    """After a tree call (``model(tokens, start, tree=TokenTree(...))`` returned ``end``): the state after
    the tree tokens ``nodes`` (a root-to-node path, indices into the call's tokens) as if only they had
    run. Each KV cache keeps its ``start`` part and the keys and values of ``nodes`` (a copy), with
    offset ``start.offset + len(nodes)``. Only states made of KV caches without a window."""
    if isinstance(start, KVCache) and isinstance(end, KVCache) and start.window is None and end.window is None:
        if end.length < start.length:
            raise ValueError(f"end holds {end.length} tokens, fewer than start's {start.length}: not a later cache")
        index = torch.tensor([*range(start.length), *(start.length + n for n in nodes)], device=end.keys.device)
        kept = KVCache(None, offset=start.offset - start.length)  # the append advances it by what it holds
        return kept.append(end.keys.index_select(1, index), end.values.index_select(1, index)) if len(index) \
            else kept
    if type(start) is BlockStates and type(end) is BlockStates and len(start.blocks) == len(end.blocks):
        return start.replace(blocks=tuple(keep_path(a, b, nodes) for a, b in zip(start.blocks, end.blocks)))
    raise ValueError(f"keep_path needs states made of KV caches without a window, got {type(start).__name__}")


def can_keep_prefix_states(model) -> bool:
    """Whether ``model(tokens, state, prefix_states=True)`` lets :func:`prefix_state` give every prefix's state:
    a plain stack (no memory or KV sharing) with at least one block whose mixer keeps its prefix states and every
    other block full attention (a KV cache without a window, rewound)."""
    depth = getattr(model, "depth", None)
    if type(depth) is not Stack or depth.shares_layers:
        return False
    mixers = [block.mixer for block in depth.blocks]
    rewinds = lambda m: m.kv_attention and getattr(m, "window", None) is None  # noqa: E731
    return any(m.prefix_states for m in mixers) and all(m.prefix_states or rewinds(m) for m in mixers)


def prefix_state(along: State, m: int, n: int) -> State | None:
    """The state after the first ``m`` of the ``n`` tokens of a ``prefix_states=True`` call that returned
    ``along``: each block's :class:`PrefixStates` at m, each full KV cache rewound by n - m; None when some
    block's state is neither."""
    if isinstance(along, PrefixStates):
        return along.at(m)
    if type(along) is BlockStates:
        blocks = tuple(prefix_state(s, m, n) for s in along.blocks)
        return None if any(b is None for b in blocks) else along.replace(blocks=blocks)
    return rewind(along, n - m)
