"""``RecurlabCache``: the ``transformers`` cache object that carries a recurlab :class:`State` between calls.

recurlab models keep whatever each layer needs to continue a sequence in one State value (recurrent
states, KV caches, depth-recursion states; ``recurlab.state``). ``generate()`` of ``transformers``
hands the model's ``cache`` output back to the next forward; this class is that object:

    out = model(ids, use_cache=True)            # out.cache: a RecurlabCache after T tokens
    out = model(next_ids, cache=out.cache)      # continues the sequence

It holds the State and the number of tokens it has seen. recurlab states are values (never changed
in place), so the cache is updated by swapping in the new State; beam search's reordering and
batch selection map to ``State.select``. Rolling back tokens (``crop``) is not possible for a
recurrent state, so ``is_croppable`` is False and assisted generation is refused by ``transformers``
(the model is stateful).
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache

from ..state import State


class RecurlabCache(Cache):
    def __init__(self, state: State, seen_tokens: int):
        """state: the recurlab State after ``seen_tokens`` tokens (batch first)."""
        super().__init__(layers=[])
        if not isinstance(state, State):
            raise ValueError(f"state must be a recurlab State, got {type(state).__name__}")
        self.state = state
        self.seen_tokens = int(seen_tokens)

    def __repr__(self) -> str:
        return f"RecurlabCache({type(self.state).__name__}, seen_tokens={self.seen_tokens})"

    def update_state(self, state: State, new_tokens: int) -> None:
        """Take the State after ``new_tokens`` more tokens."""
        self.state = state
        self.seen_tokens += int(new_tokens)

    # ---------------------------------------------------------------- what transformers asks a cache

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seen_tokens

    def get_max_length(self, layer_idx: int | None = None) -> int:
        return -1  # no fixed capacity

    def has_previous_state(self, layer_idx: int | None = None, state_idx: int | None = None) -> bool:
        return self.seen_tokens > 0

    @property
    def is_compileable(self) -> bool:
        return False

    @property
    def is_initialized(self) -> bool:
        return True

    @property
    def is_croppable(self) -> bool:
        return False

    @property
    def is_linear(self) -> list[bool]:
        # One entry that is not a plain linear-attention layer: generate() then slices a continued prompt
        # to the tokens past get_seq_length(), as for attention caches.
        return [False]

    @property
    def batch_size(self) -> int:
        size = self.state.batch_size
        return -1 if size is None else size

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.state = self.state.select(beam_idx)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.state = self.state.select(indices)

    def batch_repeat_interleave(self, repeats: int) -> None:
        size = self.batch_size
        if size < 0:
            raise ValueError("cannot repeat the rows of a recurlab state that has no batch tensors")
        self.state = self.state.select(torch.arange(size).repeat_interleave(repeats))

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove != 0:
            raise ValueError("a recurlab state cannot drop tokens it has already absorbed (recurrent states are not "
                             "croppable); keep an earlier RecurlabCache instead")

    def reset(self) -> None:
        raise ValueError("a RecurlabCache cannot be reset in place; start again with cache=None")
