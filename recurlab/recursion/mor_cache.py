"""Recursion-wise state for Mixture-of-Recursions: running the shared blocks on the tokens routed to one recursion.

Bae et al., "Mixture-of-Recursions: Learning Dynamic Recursive Depths for Adaptive Token-Level
Computation" (2025), sec. 2.2.2 ("KV caching strategies"). At recursion r only the tokens the
router sent there compute; every batch row has its own subsequence of them (of its own length).
This module applies the shared blocks to such subsequences, given *right-padded* rows:

    x: (B, n, d)      row b holds its c_b active tokens in causal order, then n - c_b padding slots
    valid: (B, n)     True on the first c_b slots of row b
    positions: (B, n) the original (absolute) positions of those tokens

Because every unit here is causal, padding after a row's tokens never changes their outputs; what
padding must not change is the state, and the two kinds of token mixer keep it differently:

* attention (mixers with the ``kv_attention`` capability: ``attention``, ``swa``): a :class:`RecursionKVCache`
  per (recursion, block) holding the keys and values of the tokens that took that recursion, each
  with its original position and a validity flag. A query at position p attends to the valid
  entries at positions <= p (and > p - window for ``swa``): the recursion's own cache, i.e. the
  earlier tokens that were also active at r (*recursion-wise caching*), or, with *recursive KV
  sharing*, the cache of the first recursion (every token), in which case only queries are
  computed. Rotary positions are the tokens' original positions (as the official code gathers
  the position embeddings of the selected tokens).
* every other mixer with a fixed-size state (gla, mingru, gru, rwkv, convolutions, ...): its own
  state per (recursion, block). The recurrence of recursion r runs over the subsequence of tokens
  active at r only: a token not routed to r leaves recursion r's state unchanged. Rows with the same
  number of active tokens run as one batch through the block (no padding, so their final states
  are exact) from ``state.select(rows)``, and their states are written back row by row
  (:func:`scatter_rows`). Mixers whose state holds a cache (liger, sliced_attention) are refused in
  shared blocks: a KVCache has one length and one position counter for all rows, and a recursion
  takes a different number of tokens from each row (:func:`check_row_splittable`).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch
import torch.nn.functional as F

from ..layers import TokenMixer
from ..models.block import Block, mixer_name
from ..ops.attention.cache import SlotCache
from ..state import State


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class RecursionKVCache(SlotCache):
    """Keys and values of the tokens that took one recursion, per batch row, with their positions.

    Views of the live slots (None before the first token):
        keys, values: (B, S, H_kv, Dh).
        positions: (B, S) int64 original positions of the entries.
        valid: (B, S) bool; False on slots of rows whose token did not take this recursion
            (a slot is added only when some row has a token to add, so with batch size 1 every
            entry is valid and the cache holds exactly the tokens that took the recursion).

    A value, like :class:`recurlab.ops.KVCache`: ``append`` returns a new cache (amortised O(1) per
    slot) and leaves this one unchanged.
    """

    keys = property(lambda self: self.slot(0))
    values = property(lambda self: self.slot(1))
    positions = property(lambda self: self.slot(2))
    valid = property(lambda self: self.slot(3))

    def append(self, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor,
               valid: torch.Tensor) -> "RecursionKVCache":
        """A cache with n more slots: k, v (B, n, H_kv, Dh), positions and valid (B, n)."""
        held = self.keys
        if held is not None and (k.shape[0] != held.shape[0] or k.shape[2:] != held.shape[2:]):
            raise ValueError(f"state batch mismatch: the recursion cache holds keys of shape (B, S, H_kv, Dh) = "
                             f"{tuple(held.shape)}, new keys have shape {tuple(k.shape)}")
        return self.append_slots((k, v, positions, valid), advance=k.shape[1])


# ------------------------------------------------------------------------------------------ attention


def _rotary_rows(x: torch.Tensor, positions: torch.Tensor, mixer: TokenMixer) -> torch.Tensor:
    """RoPE of (B, n, H, Dh) at per-row positions (B, n), with the mixer's rotary base and scaling
    (``mixer.rotate`` takes one (T,) row of positions)."""
    B, n, H, Dh = x.shape
    return mixer.rotate(x.reshape(1, B * n, H, Dh), positions.reshape(B * n)).view(B, n, H, Dh)


def routed_attention(mixer: TokenMixer, h: torch.Tensor, positions: torch.Tensor, valid: torch.Tensor,
                     cache: RecursionKVCache, shared_kv: RecursionKVCache | None = None
                     ) -> tuple[torch.Tensor, RecursionKVCache]:
    """Causal attention of the active tokens of one recursion, with the mixer's own projections.

    Args:
        mixer: the block's attention mixer (``kv_attention``: q/k/v/o projections, heads, rotary base, window).
        h: (B, n, d_model) normed inputs of the right-padded active tokens.
        positions: (B, n) their original positions; valid: (B, n) False on padding.
        cache: this recursion's cache (not changed; the new one is returned).
        shared_kv: recursive KV sharing: attend to this cache (the first recursion's) with new queries only.

    Returns:
        (B, n, d_model) mixer output (values on padding slots are finite and meaningless), and the
        recursion's cache with the new keys and values (``cache`` itself with shared_kv).
    """
    B, n, _ = h.shape
    H, Hkv, Dh = mixer.n_heads, mixer.n_kv_heads, mixer.head_dim
    q = _rotary_rows(mixer.q_proj(h).view(B, n, H, Dh), positions, mixer)
    if shared_kv is None:
        k = _rotary_rows(mixer.k_proj(h).view(B, n, Hkv, Dh), positions, mixer)
        v = mixer.v_proj(h).view(B, n, Hkv, Dh)
        cache = cache.append(k, v, positions, valid)
        source = cache
    else:
        source = shared_kv
    keys, values = source.keys, source.values
    if H != Hkv:
        keys, values = keys.repeat_interleave(H // Hkv, dim=2), values.repeat_interleave(H // Hkv, dim=2)
    k_pos, q_pos = source.positions[:, None, :], positions[:, :, None]  # (B, 1, S), (B, n, 1)
    mask = source.valid[:, None, :] & (k_pos <= q_pos)
    if mixer.window is not None:
        mask = mask & (k_pos > q_pos - mixer.window)
    mask = mask | ~valid[:, :, None]  # a padding query sees every slot: no empty softmax, output discarded
    o = F.scaled_dot_product_attention(q.transpose(1, 2), keys.transpose(1, 2), values.transpose(1, 2),
                                       attn_mask=mask[:, None], scale=Dh**-0.5).transpose(1, 2)
    return mixer.o_proj(o.reshape(B, n, H * Dh)), cache


def attention_block(block: Block, x: torch.Tensor,
                    attend: Callable[[torch.Tensor], tuple[torch.Tensor, RecursionKVCache]]
                    ) -> tuple[torch.Tensor, RecursionKVCache]:
    """The equations of :class:`recurlab.models.block.Block` with its attention called through ``attend``:
    x + attend(norm(x)), then x + channel(norm(x)); returns the cache ``attend`` returned."""
    y, cache = attend(block.mixer_norm(x))
    return block.channel(x + y), cache


# ------------------------------------------------------------------------------------- recurrent states


def scatter_rows(full: State, rows: torch.Tensor, part: State) -> State:
    """``full`` with batch rows ``rows`` replaced by ``part`` (a state of the same type for those rows).

    Tensor leaves are index-copied (in ``full``'s dtype), nested states and tuples recursed into, other
    fields taken from ``full`` when equal; a None leaf of ``full`` facing a tensor in ``part`` stands for
    zeros (hyena's history before the first token)."""

    def merge(a, b):
        if isinstance(a, torch.Tensor) or (a is None and isinstance(b, torch.Tensor)):
            if a is None:
                a = b.new_zeros((int(full.batch_size), *b.shape[1:]))
            return a.index_copy(0, rows.to(a.device), b.to(a.dtype))
        if isinstance(a, State):
            return dataclasses.replace(a, **{f.name: merge(getattr(a, f.name), getattr(b, f.name))
                                             for f in dataclasses.fields(a)})
        if isinstance(a, (tuple, list)):
            return type(a)(merge(x, y) for x, y in zip(a, b))
        if a != b:
            raise ValueError(f"cannot merge per-row states whose field differs across rows ({a!r} vs {b!r})")
        return a

    return merge(full, part)


def check_row_splittable(block: Block, what: str) -> None:
    """Raise ValueError unless the block's mixer keeps a fixed-size state (no cache) that rows can split.

    A cache (:class:`recurlab.ops.KVCache`, any SlotCache) has one length and one position counter
    (``offset``, which also places RoPE and sliced groups) for all batch rows, but a recursion takes a
    different number of tokens from each row, so the rows' states could not be merged back."""
    caches = [s for s in _states_within(block.mixer.init_state(2)) if isinstance(s, SlotCache)]
    if caches:
        raise ValueError(f"depth 'mor' cannot run token mixer {mixer_name(block.mixer)!r} in its shared blocks "
                         f"({what}): its state holds a {type(caches[0]).__name__}, which has one length and one "
                         f"position counter for every batch row, while Mixture-of-Recursions sends a different number "
                         f"of tokens of each row through a recursion. Share attention/swa (routed caches) or a mixer "
                         f"with a fixed-size state, or use this one in the first/last blocks")


def _states_within(state):
    yield state
    if isinstance(state, State) and not isinstance(state, SlotCache):
        for f in dataclasses.fields(state):
            value = getattr(state, f.name)
            for v in (value if isinstance(value, (tuple, list)) else (value,)):
                if isinstance(v, State):
                    yield from _states_within(v)


def recurrent_block_rows(block: Block, x: torch.Tensor, counts: torch.Tensor, state: State,
                         step: bool) -> tuple[torch.Tensor, State]:
    """Run ``block`` over each row's first counts[b] tokens of x (B, n, d) from that row's state.

    Rows with the same count run as one batch; rows with count 0 keep their state unchanged.
    ``step`` (n == 1) uses the block's step form. Returns (x with the active slots replaced, state).
    """
    B = x.shape[0]
    out = x.clone()
    for c in sorted(set(counts.tolist()) - {0}):
        rows = torch.nonzero(counts == c).squeeze(1)
        whole = rows.numel() == B
        sub = state if whole else state.select(rows)
        if step:
            y, sub = block.step(x[rows, 0], sub)
            y = y.unsqueeze(1)
        else:
            y, sub = block(x[rows, :c], sub)
        out[rows, :c] = y
        state = sub if whole else scatter_rows(state, rows, sub)
    return out, state
