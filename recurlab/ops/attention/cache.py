"""Key/value caches as values: appending returns a new cache, in amortised O(1) per token.

A cache is a window ``[start, end)`` onto shared, geometrically grown slot buffers
(:class:`SlotBuffers`, batch first: ``(B, capacity, ...)``). ``append`` writes the new slots in
place *only* when this cache ends where the buffers' written part ends (it is the newest cache
built on them) and there is room; otherwise it copies its live slots into new buffers first. So a
cache that is kept (to roll back a speculative draft, or to branch a beam) is never changed by
later appends to caches built from it: they write past its ``end``, or into buffers of their own.
When gradients flow through the keys, buffers are rebuilt by concatenation instead, so autograd's
saved views stay valid.

    cache = KVCache(window=None)
    cache2 = cache.append(k, v)          # k, v: (B, T, H_kv, Dh); cache is unchanged
    cache2.keys, cache2.values           # (B, length, H_kv, Dh) views
    cache2.select([1, 0])                # rows of the batch (copies)
"""

from __future__ import annotations

import dataclasses

import torch

from ...state import State


class SlotBuffers:
    """Growable batch-first buffers shared by the caches built from one another.

    ``tensors`` are (B, capacity, ...) each; slots [0, written) hold data some cache may view.
    ``frozen`` buffers (built by concatenation while gradients flow) are never written in place.
    """

    def __init__(self, tensors: tuple[torch.Tensor, ...], written: int, frozen: bool = False):
        self.tensors = tensors
        self.written = written
        self.frozen = frozen

    @property
    def capacity(self) -> int:
        return self.tensors[0].shape[1]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors)


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class SlotCache(State):
    """Per-token slots ``[start, end)`` of :class:`SlotBuffers`: the base of key/value caches.

    Attributes:
        offset: tokens seen so far (the absolute position of the next token).
        start, end: the live slots in the buffers.
        buffers: the shared buffers, or None before the first token.
    """

    offset: int = 0
    start: int = 0
    end: int = 0
    buffers: SlotBuffers | None = None

    @property
    def length(self) -> int:
        """Number of live slots (tokens held)."""
        return self.end - self.start

    def slot(self, i: int) -> torch.Tensor | None:
        """Live view of buffer i, (B, length, ...), or None before the first token."""
        return None if self.buffers is None else self.buffers.tensors[i][:, self.start : self.end]

    def nbytes(self) -> int:
        """Memory held by the buffers (capacity, not just length)."""
        return 0 if self.buffers is None else self.buffers.nbytes()

    def append_slots(self, new: tuple[torch.Tensor, ...], advance: int):
        """A cache with the slots ``new`` (each (B, n, ...)) after the live ones, and ``offset + advance``."""
        n = new[0].shape[1]
        if self.buffers is not None:
            self._check_compatible(new)
        old = self.buffers
        grad = torch.is_grad_enabled() and (any(t.requires_grad for t in new)
                                             or (old is not None and old.tensors[0].requires_grad))
        if grad:  # new tensors, never in-place writes: autograd keeps views of the old ones
            live = [self.slot(i) for i in range(len(new))] if old is not None else None
            tensors = tuple(new) if live is None else tuple(torch.cat([a, b], 1) for a, b in zip(live, new))
            buffers, start, end = SlotBuffers(tensors, tensors[0].shape[1], frozen=True), 0, tensors[0].shape[1]
        elif old is not None and not old.frozen and old.written == self.end and self.end + n <= old.capacity:
            for buf, t in zip(old.tensors, new):  # this cache is the newest on the buffers: write past it
                buf[:, self.end : self.end + n] = t
            old.written = self.end + n
            buffers, start, end = old, self.start, self.end + n
        else:  # copy the live slots into buffers of our own, grown geometrically (amortised O(1) per token)
            capacity = max(16, 2 * (self.length + n))
            tensors = tuple(t.new_empty((t.shape[0], capacity, *t.shape[2:])) for t in new)
            for i, (buf, t) in enumerate(zip(tensors, new)):
                if self.length:
                    buf[:, : self.length] = self.slot(i)
                buf[:, self.length : self.length + n] = t
            buffers, start, end = SlotBuffers(tensors, self.length + n), 0, self.length + n
        return dataclasses.replace(self, offset=self.offset + advance, start=start, end=end, buffers=buffers)

    def keep_last(self, count: int):
        """A cache holding only the last ``count`` live slots (same buffers, no copy)."""
        if self.length <= count:
            return self
        return dataclasses.replace(self, start=self.end - count)

    def map_tensors(self, fn):
        """Apply ``fn`` to the live views; the result owns new buffers."""
        if self.buffers is None:
            return self
        tensors = tuple(fn(self.slot(i)) for i in range(len(self.buffers.tensors)))
        return dataclasses.replace(self, start=0, end=tensors[0].shape[1],
                                   buffers=SlotBuffers(tensors, tensors[0].shape[1]))

    def _check_compatible(self, new: tuple[torch.Tensor, ...]) -> None:
        for i, (buf, t) in enumerate(zip(self.buffers.tensors, new)):
            if t.shape[0] != buf.shape[0] or t.shape[2:] != buf.shape[2:] or t.dtype != buf.dtype:
                raise ValueError(
                    f"new slots must match the cache: buffer {i} holds (B, S, ...) = ({buf.shape[0]}, S, "
                    f"{', '.join(map(str, buf.shape[2:]))}) in {buf.dtype}, got {tuple(t.shape)} in {t.dtype}"
                    " (batch size, heads and dtype must stay those of the first tokens)")


@dataclasses.dataclass(frozen=True, eq=False)
class KVCache(SlotCache):
    """Keys and values of the tokens seen so far, (B, length, H_kv, Dh) each, and the absolute position.

    Attributes:
        window: if set, only the last ``window - 1`` keys are kept (those a next query can see).
        offset: number of tokens processed so far (the position of the next token).
    """

    window: int | None = None

    def __post_init__(self):
        if self.window is not None and (not isinstance(self.window, int) or self.window < 1):
            raise ValueError(f"window must be a positive int number of tokens or None, got {self.window!r}")

    @property
    def keys(self) -> torch.Tensor | None:
        return self.slot(0)

    @property
    def values(self) -> torch.Tensor | None:
        return self.slot(1)

    def append(self, k: torch.Tensor, v: torch.Tensor) -> "KVCache":
        """A cache with (B, T, H_kv, Dh) keys and values added after those held (this one is unchanged)."""
        held = self.keys
        if held is not None and (k.shape[0] != held.shape[0] or k.shape[2:] != held.shape[2:] or k.dtype != held.dtype):
            raise ValueError(f"k must match the cache: (B, T, H_kv, Dh) = ({held.shape[0]}, T, {held.shape[2]}, "
                             f"{held.shape[3]}) in {held.dtype}, got {tuple(k.shape)} in {k.dtype}")
        return self.append_slots((k, v), advance=k.shape[1])

    def trimmed(self) -> "KVCache":
        """Only the ``window - 1`` most recent keys (all of them without a window).

        After a long prompt the buffers are far larger than a window needs; then the kept keys are
        copied into right-sized buffers, so the decoding state of sliding-window attention stays
        O(window), not O(prompt)."""
        if self.window is None:
            return self
        kept = self.keep_last(self.window - 1)
        if kept.buffers is not None and kept.buffers.capacity > 2 * self.window:
            kept = kept.map_tensors(torch.Tensor.clone)
        return kept

    def without_last(self, count: int) -> "KVCache":
        """The cache before its last ``count`` tokens (same buffers, no copy; this one is unchanged).

        Only for caches without a window (a windowed cache has dropped keys the shorter one needs).
        The slots past the new end stay written, so the next append copies into buffers of its
        own rather than overwrite them: a cache that still views them is never changed."""
        if self.window is not None:
            raise ValueError("without_last needs a cache without a window (a windowed cache has dropped old keys)")
        if not 0 <= count <= self.length:
            raise ValueError(f"count must lie in [0, {self.length}] (the tokens held), got {count}")
        return dataclasses.replace(self, offset=self.offset - count, end=self.end - count)

    def since(self, position: int) -> "KVCache":
        """Only the keys of tokens at absolute positions >= ``position``."""
        return self.keep_last(max(0, self.offset - position))
