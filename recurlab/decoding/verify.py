"""Verification: a target model scores draft tokens in one parallel call and gives back its state
after any accepted prefix, for every token mixer and depth module.

    v = verify(model, state, tokens)   # tokens (P, n): one draft chain (P = 1) or P root-to-leaf paths
    v.logits                           # (P, n, V): row r, position i predicts the token after tokens[r, i]
    v.state_after(m, row=r)            # the state after the first m tokens of row r (batch 1)

Method (the same for every mixer): one ``model(tokens, state)`` call scores all positions; the state
after m accepted tokens is

- m == 0: the given state, unchanged (states are values: no call wrote into it);
- m == n: the call's own final state (of the row asked for) — free;
- 0 < m < n, every part of the state a KV cache without a window (a stack of attention blocks):
  the end state without its last n - m tokens (:func:`recurlab.decoding.rewind.rewind`) — free, no
  call (counted as ``rewound``);
- 0 < m < n, a plain stack whose blocks are diagonal scans or gated linear attention (the
  ``prefix_states`` capability), possibly beside full attention: the scoring call itself keeps every
  block's state after every prefix (``model(tokens, state, prefix_states=True)``) and the state after m
  is read from them (:func:`recurlab.decoding.rewind.prefix_state`) — no second call (counted as
  ``from_prefix``). The call costs a little more (a gla block computes n states instead of one);
  ``recurlab bench decoding`` measures it against the re-run below, per mixer;
- 0 < m < n otherwise (convolutional, sliding-window, other recurrent and hybrid states, depth modules
  other than the plain stack): ``model(tokens[r:r+1, :m], state)``, a re-run of the m accepted tokens
  from the kept state. Cost: m more token positions through the target (``rerun_tokens``), in a second
  call (``reruns``).

Every way is correct for every registered mixer and depth module (tests/decoding/test_verify.py).

Trees are scored as paths: each root-to-leaf path is one batch row, all rows starting from the same
state (``state.select``), shorter paths padded at their end (causal models: padding never changes the
logits before it). Cost: P x n token positions for a tree of P leaves and depth n - 1, instead of the
(number of nodes) positions a tree attention mask would take; it works for recurrent mixers, which
have no tree mask, and attention alike.
"""

from __future__ import annotations

import dataclasses

import torch

from ..state import State
from .rewind import can_keep_prefix_states, prefix_state, rewind


@dataclasses.dataclass
class Verification:
    """The result of :func:`verify`: logits (P, n, V) of every position, and the states to continue from."""

    model: torch.nn.Module
    start_state: State  # batch 1: the state before tokens
    tokens: torch.Tensor  # (P, n)
    logits: torch.Tensor  # (P, n, V)
    end_state: State  # batch P: the state after each row's n tokens
    rewind: bool = True  # drop rejected tokens from states that allow it (KV caches) instead of a re-run
    along: State | None = None  # the call's prefix states (batch P), when the model kept them
    rerun_tokens: int = 0  # tokens re-run so far by state_after
    reruns: int = 0  # target calls made so far by state_after
    rewound: int = 0  # states given by dropping tokens from the end state (no call)
    from_prefix: int = 0  # states read from the call's prefix states (no call)

    def state_after(self, m: int, row: int = 0) -> State:
        """The model's state (batch 1) after the first m tokens of row ``row`` (0 <= m <= n)."""
        n = self.tokens.shape[1]
        if not 0 <= m <= n:
            raise ValueError(f"m must lie in [0, {n}], got {m}")
        if m == 0:
            return self.start_state
        one_row = self.tokens.shape[0] == 1
        if m == n:
            return self.end_state if one_row else self.end_state.select([row])
        if self.along is not None:  # the call kept every prefix's state
            self.from_prefix += 1
            earlier = prefix_state(self.along, m, n)
            return earlier if one_row else earlier.select([row])
        earlier = rewind(self.end_state, n - m) if self.rewind else None
        if earlier is not None:  # every part of the state is a KV cache: drop the rejected tokens (views)
            self.rewound += 1
            return earlier if one_row else earlier.select([row])
        self.rerun_tokens += m
        self.reruns += 1
        _, state = self.model(self.tokens[row:row + 1, :m], self.start_state)
        return state


@torch.no_grad()
def verify(model, state: State, tokens: torch.Tensor, rewind: bool = True, prefix_states: bool = True
           ) -> Verification:
    """Score ``tokens`` (P, n) int64 continuing ``state`` (batch 1) in one call of ``model``.

    Every row continues the same state (it is selected P times). Returns a :class:`Verification`
    whose ``logits[r, i]`` (V,) are the model's logits after ``tokens[r, :i + 1]``. ``rewind=False``
    re-runs accepted prefixes even where the state could drop the rejected tokens, ``prefix_states=False``
    even where the call could keep every prefix's state (both for measuring)."""
    if tokens.dim() != 2 or tokens.shape[1] < 1:
        raise ValueError(f"tokens must be a (P, n) tensor with n >= 1, got {tuple(tokens.shape)}")
    if state.batch_size not in (None, 1):
        raise ValueError(f"state must hold one sequence (batch 1), got batch {state.batch_size}")
    rows = tokens.shape[0]
    start = state.select([0] * rows) if rows > 1 else state
    if prefix_states and tokens.shape[1] > 1 and can_keep_prefix_states(model):
        logits, along = model(tokens, start, prefix_states=True)
        n = tokens.shape[1]
        return Verification(model, state, tokens, logits, prefix_state(along, n, n), rewind, along)
    logits, end = model(tokens, start)
    return Verification(model, state, tokens, logits, end, rewind)
