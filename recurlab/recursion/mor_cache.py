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

* attention (:class:`recurlab.layers.attention.Attention` and ``swa``): a :class:`RecursionKVCache`
  per (recursion, block) holding the keys and values of the tokens that took that recursion, each
  with its original position and a validity flag. A query at position p attends to the valid
  entries at positions <= p (and > p - window for ``swa``): the recursion's own cache, i.e. the
  earlier tokens that were also active at r (*recursion-wise caching*), or, with *recursive KV
  sharing*, the cache of the first recursion (every token), in which case only queries are
  computed. Rotary positions are the tokens' original positions (as the official code gathers
  the position embeddings of the selected tokens).
* every other mixer (gla, mingru, gru, rwkv, convolutions, ...): its own state, batch first, per
  (recursion, block). The recurrence of recursion r runs over the subsequence of tokens active at r
  only: a token not routed to r leaves recursion r's state unchanged. Rows with the same number of
  active tokens run as one batch through the block (no padding, so their final states are exact),
  and their states are written back row by row.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..layers.attention import Attention
from ..layers.rotary import rotary
from ..models.block import Block


class RecursionKVCache:
    """Keys and values of the tokens that took one recursion, per batch row, with their positions.

    Attributes (views of the first ``length`` slots):
        keys, values: (B, S, H_kv, Dh), or None before the first token.
        positions: (B, S) int64 original positions of the entries.
        valid: (B, S) bool; False on slots of rows whose token did not take this recursion
            (a slot is added only when some row has a token to add, so with batch size 1 every
            entry is valid and the cache holds exactly the tokens that took the recursion).

    Like :class:`recurlab.ops.KVCache`, the buffers grow geometrically and are written in place
    while no gradient flows through them (decoding), and are rebuilt by concatenation otherwise.
    """

    def __init__(self):
        self.length = 0
        self._buffers: list[torch.Tensor] | None = None  # keys, values, positions, valid
        self._owned = False

    def _view(self, i: int) -> torch.Tensor | None:
        return None if self._buffers is None else self._buffers[i][:, : self.length]

    keys = property(lambda self: self._view(0))
    values = property(lambda self: self._view(1))
    positions = property(lambda self: self._view(2))
    valid = property(lambda self: self._view(3))

    def append(self, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor, valid: torch.Tensor) -> None:
        """Add n slots: k, v (B, n, H_kv, Dh), positions and valid (B, n)."""
        new = [k, v, positions, valid]
        if self._buffers is not None and (k.shape[0] != self._buffers[0].shape[0]
                                          or k.shape[2:] != self._buffers[0].shape[2:]):
            raise ValueError(f"state batch mismatch: the recursion cache holds keys of shape (B, S, H_kv, Dh) = "
                             f"{tuple(self.keys.shape)}, new keys have shape {tuple(k.shape)}")
        needed = self.length + k.shape[1]
        if torch.is_grad_enabled() and (k.requires_grad or v.requires_grad):
            old = [self._view(i) for i in range(4)] if self._buffers is not None else None
            self._buffers = new if old is None else [torch.cat([a, b], 1) for a, b in zip(old, new)]
            self._owned = False
        else:
            if self._buffers is None or not self._owned or needed > self._buffers[0].shape[1]:
                capacity = max(needed, 16, 2 * self.length)
                grown = [t.new_zeros((t.shape[0], capacity, *t.shape[2:])) for t in new]
                for buf, t in zip(grown, [self._view(i) for i in range(4)] if self._buffers is not None else []):
                    buf[:, : self.length] = t
                self._buffers, self._owned = grown, True
            for buf, t in zip(self._buffers, new):
                buf[:, self.length : needed] = t
        self.length = needed


# ------------------------------------------------------------------------------------------ attention


def is_plain_attention(mixer) -> bool:
    """True for softmax attention whose forward is :class:`Attention`'s own (attention, swa); False for
    subclasses that add to it (liger's hybrid), which keep mixer states of their own."""
    return isinstance(mixer, Attention) and type(mixer).forward is Attention.forward


def _rotary_rows(x: torch.Tensor, positions: torch.Tensor, base: float) -> torch.Tensor:
    """RoPE of (B, n, H, Dh) at per-row positions (B, n) (recurlab.layers.rotary takes one (T,) row)."""
    B, n, H, Dh = x.shape
    return rotary(x.reshape(1, B * n, H, Dh), positions.reshape(B * n), base).view(B, n, H, Dh)


def routed_attention(mixer: Attention, h: torch.Tensor, positions: torch.Tensor, valid: torch.Tensor,
                     cache: RecursionKVCache, shared_kv: RecursionKVCache | None = None) -> torch.Tensor:
    """Causal attention of the active tokens of one recursion, with the mixer's own projections.

    Args:
        mixer: the block's attention mixer (its q/k/v/o projections, heads, rotary base, window).
        h: (B, n, d_model) normed inputs of the right-padded active tokens.
        positions: (B, n) their original positions; valid: (B, n) False on padding.
        cache: this recursion's cache; the new keys and values are appended to it (not with shared_kv).
        shared_kv: recursive KV sharing: attend to this cache (the first recursion's) with new queries only.

    Returns:
        (B, n, d_model) mixer output (values on padding slots are finite and meaningless).
    """
    B, n, _ = h.shape
    H, Hkv, Dh = mixer.n_heads, mixer.n_kv_heads, mixer.head_dim
    q = _rotary_rows(mixer.q_proj(h).view(B, n, H, Dh), positions, mixer.rope_base)
    if shared_kv is None:
        k = _rotary_rows(mixer.k_proj(h).view(B, n, Hkv, Dh), positions, mixer.rope_base)
        v = mixer.v_proj(h).view(B, n, Hkv, Dh)
        cache.append(k, v, positions, valid)
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
    return mixer.o_proj(o.reshape(B, n, H * Dh))


def attention_block(block: Block, x: torch.Tensor, attend: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """The equations of :class:`recurlab.models.block.Block` with its attention called through ``attend``:
    x + attend(norm(x)), then x + channel(norm(x))."""
    x = x + attend(block.mixer_norm(x))
    if block.channel_mixer is not None:
        x = x + block.channel_mixer(block.channel_norm(x))
    return x


# ------------------------------------------------------------------------------------- recurrent states


def map_state(fn: Callable[..., torch.Tensor], *states: Any) -> Any:
    """Apply fn leaf by leaf to states of one structure (tensors in nested tuples/lists, or None)."""
    first = states[0]
    if first is None:
        return None
    if isinstance(first, torch.Tensor):
        return fn(*states)
    if isinstance(first, (tuple, list)):
        return type(first)(map_state(fn, *parts) for parts in zip(*states))
    raise ValueError(f"a recursion state leaf must be a tensor, a tuple/list of them or None, "
                     f"got {type(first).__name__}")


def _batch_first(state: Any, batch_size: int) -> bool:
    if state is None:
        return True
    if isinstance(state, torch.Tensor):
        return state.dim() >= 1 and state.shape[0] == batch_size
    if isinstance(state, (tuple, list)):
        return all(_batch_first(s, batch_size) for s in state)
    return False


def check_row_splittable(block: Block, what: str) -> None:
    """Raise ValueError unless the block's mixer keeps a batch-first tensor state that can be split by rows."""
    try:
        ok = all(_batch_first(block.mixer.init_state(n), n) for n in (1, 2))
    except NotImplementedError:
        ok = False
    if not ok:
        raise ValueError(f"{what}: mixer {type(block.mixer).__name__} keeps a state that is not made of batch-first "
                         f"tensors, so it cannot run on per-row subsequences of routed tokens; use attention/swa or "
                         f"a recurrent mixer (gla, mingru, gru, rwkv, ...)")


def recurrent_block_rows(block: Block, x: torch.Tensor, counts: torch.Tensor, state: Any,
                         step: bool) -> tuple[torch.Tensor, Any]:
    """Run ``block`` over each row's first counts[b] tokens of x (B, n, d) from that row's state.

    Rows with the same count run as one batch; rows with count 0 keep their state unchanged.
    ``step`` (n == 1) uses the block's step form. Returns (x with the active slots replaced, state).
    """
    B = x.shape[0]
    if state is None:
        state = block.mixer.init_state(B, x.device, x.dtype)
    out = x.clone()
    for c in sorted(set(counts.tolist()) - {0}):
        rows = torch.nonzero(counts == c).squeeze(1)
        whole = rows.numel() == B
        sub = state if whole else map_state(lambda s: s.index_select(0, rows), state)
        if step:
            y, sub, _ = block.step(x[rows, 0], sub)
            y = y.unsqueeze(1)
        else:
            y, sub, _ = block(x[rows, :c], sub)
        out[rows, :c] = y
        state = sub if whole else map_state(lambda full, s: full.index_copy(0, rows, s.to(full.dtype)), state, sub)
    return out, state
