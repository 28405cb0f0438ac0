"""The state contract: what every decoding state in recurlab is and what it supports.

Every token mixer (``recurlab.layers``) and every depth module (``recurlab.models``,
``recurlab.recursion``) carries its decoding state as a :class:`State`:

    state = mixer.init_state(batch_size, device, dtype)   # what ``state=None`` means
    y, state = mixer(x, state)                             # a *new* state; the given one is unchanged
    state.select(indices)                                  # rows along the batch (beams, draft trees, paths)
    state.to(device), state.to(dtype=...), state.detach()  # moved / converted / cut from the graph
    state.nbytes()                                         # memory held (decoding benchmarks)

A State is a frozen dataclass whose fields are tensors, nested States, tuples of them, or plain
Python values (ints, None). Every tensor leaf is **batch first**, so ``select`` takes rows of each
one. States are **values**: no method writes into a state it was given; every forward and step
returns a new state, so keeping an old one (to roll back a draft, or to branch into beams) is safe.
(:class:`recurlab.ops.KVCache` appends into a shared buffer for speed, but only past the end of
every view that exists, so it keeps this promise; see its docstring.)

This module depends on torch only: ``ops``, ``layers`` and ``models`` all import it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch

S = TypeVar("S", bound="State")


def map_tensors(fn: Callable[[torch.Tensor], torch.Tensor], value: Any) -> Any:
    """Apply ``fn`` to every tensor leaf of ``value`` (a tensor, State, tuple/list of them, or a plain value)."""
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, State):
        return value.map_tensors(fn)
    if isinstance(value, (tuple, list)):
        return type(value)(map_tensors(fn, v) for v in value)
    return value


def tensor_leaves(value: Any) -> list[torch.Tensor]:
    """Every tensor leaf of ``value``, in field order."""
    leaves: list[torch.Tensor] = []

    def visit(t: torch.Tensor) -> torch.Tensor:
        leaves.append(t)
        return t

    map_tensors(visit, value)
    return leaves


def as_index(indices: torch.Tensor | Sequence[int], device: torch.device | None = None) -> torch.Tensor:
    """``indices`` as an int64 tensor (B',); ValueError unless 1-D integers."""
    index = torch.as_tensor(indices, device=device)
    if index.dim() != 1 or (index.numel() and index.dtype in (torch.bool,) + _FLOATS):
        raise ValueError(f"indices must be a 1-D sequence or tensor of batch row numbers, got {indices!r:.80}")
    return index.long()


_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@dataclasses.dataclass(frozen=True)
class State:
    """Base class of decoding states: a frozen dataclass with batch-first tensor leaves."""

    def map_tensors(self: S, fn: Callable[[torch.Tensor], torch.Tensor]) -> S:
        """A new state with ``fn`` applied to every tensor leaf (plain fields are kept)."""
        changes = {f.name: map_tensors(fn, getattr(self, f.name)) for f in dataclasses.fields(self)}
        return dataclasses.replace(self, **changes)

    def select(self: S, indices: torch.Tensor | Sequence[int]) -> S:
        """The state of batch rows ``indices`` (B',) in that order; rows may repeat (beams)."""
        index = as_index(indices)
        batch = self.batch_size
        if batch is not None and index.numel() and (int(index.min()) < -batch or int(index.max()) >= batch):
            raise ValueError(f"indices must lie in [0, batch_size={batch}), got {index.tolist()}")
        return self.map_tensors(lambda t: t.index_select(0, index.to(t.device)))

    def to(self: S, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> S:
        """Moved to ``device``; floating tensors converted to ``dtype`` (integer and bool ones are kept)."""

        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device=device, dtype=dtype if dtype is not None and t.is_floating_point() else None)

        return self.map_tensors(move)

    def detach(self: S) -> S:
        """The same values, cut from the autograd graph (truncated backpropagation through time)."""
        return self.map_tensors(torch.Tensor.detach)

    def replace(self: S, **changes: Any) -> S:
        """A copy with some fields changed (dataclasses.replace)."""
        return dataclasses.replace(self, **changes)

    def nbytes(self) -> int:
        """Memory the state holds: its tensors (caches count their buffers' capacity)."""

        def size(value: Any) -> int:
            if isinstance(value, torch.Tensor):
                return value.numel() * value.element_size()
            if isinstance(value, State):
                return value.nbytes()
            if isinstance(value, (tuple, list)):
                return sum(size(v) for v in value)
            return 0

        return sum(size(getattr(self, f.name)) for f in dataclasses.fields(self))

    @property
    def batch_size(self) -> int | None:
        """The batch size of the tensor leaves (None for a state without tensors)."""
        leaves = tensor_leaves(self)
        return int(leaves[0].shape[0]) if leaves else None


@dataclasses.dataclass(frozen=True)
class PrefixStates(State):
    """The states after every prefix of one parallel call's T tokens, a by-product of a recurrence's
    parallel form (``mixer(x, state, prefix_states=True)``, for mixers with the ``prefix_states`` capability).

    start: the state before the call (B, ...). along: the mixer's own state type with a position axis after
    the batch axis: every tensor (B, T, ...), position t - 1 holding the state after t tokens (None when
    T == 0). length: T. ``at(m)`` is the state after the first m tokens, 0 <= m <= T.
    """

    start: State
    along: State | None
    length: int

    def at(self, m: int) -> State:
        """The state after the first ``m`` tokens of the call (``start`` for m = 0)."""
        if not isinstance(m, int) or not 0 <= m <= self.length:
            raise ValueError(f"m must be an int in [0, {self.length}], got {m!r}")
        if m == 0:
            return self.start
        return self.along.map_tensors(lambda t: t[:, m - 1])


@dataclasses.dataclass(frozen=True)
class NoState(State):
    """The state of a mixer that keeps none (it reads only the current token, or a shared memory)."""


def check_state(state: Any, cls: type[S], owner: str) -> S | None:
    """``state`` if it is None or a ``cls``; otherwise a ValueError naming what ``owner`` expects."""
    if state is None or isinstance(state, cls):
        return state
    raise ValueError(f"state must be a {cls.__name__} (as returned by {owner}'s forward, step or init_state) "
                     f"or None, got {type(state).__name__}")
