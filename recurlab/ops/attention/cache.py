"""The state of softmax attention: :class:`KVCache`, the keys and values seen so far.

Unlike the recurrent ops' states it grows with the sequence (up to ``window - 1``
tokens for sliding-window attention), which is the cost recurrent units avoid.
For fast decoding the cache is a preallocated buffer that grows geometrically
and is updated in place: ``attention`` returns the same object it was given,
with the new keys and values appended.
"""

from __future__ import annotations

import torch

from .. import _checks


class KVCache:
    """Keys and values seen so far, (B, S, H_kv, Dh) each, and the absolute position.

    Attributes:
        offset: number of tokens processed so far (the position of the next token).
        window: if set, only the last ``window - 1`` keys are kept.
    """

    def __init__(self, window: int | None = None):
        if window is not None and window < 1:
            raise ValueError(f"window must be a positive number of tokens, got {window}")
        self.window = window
        self.offset = 0
        self.length = 0
        self._k: torch.Tensor | None = None
        self._v: torch.Tensor | None = None
        self._owned = False  # True when the buffers are ours to write in place

    @property
    def keys(self) -> torch.Tensor | None:
        return None if self._k is None else self._k[:, : self.length]

    @property
    def values(self) -> torch.Tensor | None:
        return None if self._v is None else self._v[:, : self.length]

    def nbytes(self) -> int:
        """Memory held by the buffers (capacity, not just length)."""
        return sum(t.numel() * t.element_size() for t in (self._k, self._v) if t is not None)

    def append(self, k: torch.Tensor, v: torch.Tensor) -> None:
        """Add (B, T, H_kv, Dh) keys and values after those already held."""
        if self._k is not None:
            self._check_compatible(k, v)
        needs_graph = k.requires_grad or v.requires_grad or (self._k is not None and self._k.requires_grad)
        if torch.is_grad_enabled() and needs_graph:
            # keep autograd's view of earlier keys intact: new tensors, never in-place writes
            self._k = k if self._k is None else torch.cat([self.keys, k], 1)
            self._v = v if self._v is None else torch.cat([self.values, v], 1)
            self.length = self._k.shape[1]
            self._owned = False
        else:
            needed = self.length + k.shape[1]
            if self._k is None or not self._owned or needed > self._k.shape[1]:
                # a buffer of our own, grown geometrically: amortised O(1) per token
                capacity = max(needed, 16, 2 * self.length)
                self._k = self._reallocate(self._k, k, capacity)
                self._v = self._reallocate(self._v, v, capacity)
                self._owned = True
            self._k[:, self.length : needed] = k
            self._v[:, self.length : needed] = v
            self.length = needed
        self.offset += k.shape[1]

    def trim_to_window(self) -> None:
        """Keep only the ``window - 1`` most recent keys (those a next query can see)."""
        if self.window is None or self.length <= self.window - 1:
            return
        keep = self.window - 1
        if not self._owned:
            self._k, self._v = self.keys[:, self.length - keep :], self.values[:, self.length - keep :]
        elif self._k.shape[1] > 2 * self.window:
            # far more capacity than the window needs (after a long prompt): keep a right-sized copy,
            # so the decoding state of sliding-window attention stays O(window), not O(prompt)
            self._k = self._k[:, self.length - keep : self.length].clone()
            self._v = self._v[:, self.length - keep : self.length].clone()
        else:
            self._k[:, :keep] = self._k[:, self.length - keep : self.length].clone()
            self._v[:, :keep] = self._v[:, self.length - keep : self.length].clone()
        self.length = keep

    def _reallocate(self, old: torch.Tensor | None, new: torch.Tensor, capacity: int) -> torch.Tensor:
        buf = new.new_empty((new.shape[0], capacity, *new.shape[2:]))
        if old is not None and self.length:
            buf[:, : self.length] = old[:, : self.length]
        return buf

    def _check_compatible(self, k, v):
        if k.shape[0] != self._k.shape[0] or k.shape[2:] != self._k.shape[2:] or k.dtype != self._k.dtype:
            raise ValueError(
                f"k must match the cache: (B, T, H_kv, Dh) = ({self._k.shape[0]}, T, {self._k.shape[2]}, "
                f"{self._k.shape[3]}) in {self._k.dtype}, got {_checks.fmt_shape(k.shape)} in {k.dtype}"
            )
