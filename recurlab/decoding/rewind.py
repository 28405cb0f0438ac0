"""Dropping the last tokens from a decoding state without running the model, where the state allows it.

    earlier = rewind(state, count)     # the state before the last `count` tokens, or None

An attention KV cache holds every past token's key and value, so forgetting the last ``count``
tokens is a shorter view of the same buffers (:meth:`KVCache.without_last`): no model call. A
recurrent state (a hidden vector, a matrix memory, a convolution's window) has already folded those
tokens in and cannot give them back; sliding-window caches have dropped the keys a rewind would need
again. For those :func:`rewind` returns None and the caller re-runs the accepted tokens from a kept
state instead (recurlab/decoding/verify.py). A model's state is rewound when every part of it can
be: a stack of attention blocks yes, a hybrid with one recurrent block no.
"""

from __future__ import annotations

from ..models.depth import BlockStates
from ..ops.attention.cache import KVCache
from ..state import NoState, State


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
