"""The ``sdpa`` backend of ``attention``: torch's fused ``scaled_dot_product_attention``.

Softmax attention (Vaswani et al. 2017, "Attention Is All You Need", eq. 1) in
torch's fused kernel, plus sliding-window attention (as in Samba, SambaY and
Liger) in blocks of ``window`` queries, O(T * window) in time and memory, for
long prompts (after earlier tokens too).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def attention_sdpa(q, k, v, scale, mask, is_causal):
    """q (B, T, H, Dh), k, v (B, S, H, Dh) (keys already repeated for GQA), mask (T, S) bool
    (True = may attend) or None, is_causal -> o (B, T, H, Dh): torch's fused attention."""
    return F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
        attn_mask=mask, is_causal=is_causal, scale=scale,
    ).transpose(1, 2)


def sliding_window_sdpa(q, k, v, window, scale, n_past=0):
    """Sliding-window attention in O(T * window) time and memory: queries in blocks of ``window``
    attend to their own block of keys and the one before.

    q (B, T, H, Dh); k, v (B, n_past + T, H, Dh) (already repeated for GQA): the ``n_past`` earlier
    keys (at most ``window - 1``: no query sees further back), then those of the T queries ->
    o (B, T, H, Dh). Query i (the key n_past + i) sees keys in (n_past + i - window, n_past + i].
    """
    B, T, H, Dh = q.shape
    w = window
    if n_past > w - 1:
        raise ValueError(f"n_past must be at most window - 1 = {w - 1}, got {n_past}")
    lead = w - n_past  # zero keys in front, so that w keys precede the first query's own
    pad = (-T) % w  # padded queries are dropped, padded keys come after every real query
    q = F.pad(q, (0, 0, 0, 0, 0, pad))
    k, v = (F.pad(x, (0, 0, 0, 0, lead, pad)) for x in (k, v))
    nb = (T + pad) // w
    qb = q.view(B, nb, w, H, Dh).transpose(2, 3)  # (B, nb, H, w, Dh)
    kb, vb = (x.view(B, nb + 1, w, H, Dh).transpose(2, 3) for x in (k, v))
    keys, values = (torch.cat([x[:, :-1], x[:, 1:]], 3) for x in (kb, vb))  # (B, nb, H, 2w, Dh)
    i = torch.arange(w, device=q.device).view(w, 1)
    m = torch.arange(2 * w, device=q.device).view(1, 2 * w)
    allowed = (m <= w + i) & (m > i)  # key m of the pair of blocks is within (query - window, query]
    # One (w, 2w) mask broadcast over every block; the first block also masks the `lead` padding keys
    # in front (always excluded by `m > i` when lead <= 1), so it takes a call of its own.
    first = 1 if lead > 1 else 0
    o = []
    if first:
        o.append(F.scaled_dot_product_attention(qb[:, :1], keys[:, :1], values[:, :1], attn_mask=allowed & (m >= lead),
                                                scale=scale))
    if nb > first:
        o.append(F.scaled_dot_product_attention(qb[:, first:], keys[:, first:], values[:, first:], attn_mask=allowed,
                                                scale=scale))
    o = o[0] if len(o) == 1 else torch.cat(o, 1)
    return o.transpose(2, 3).reshape(B, nb * w, H, Dh)[:, :T]
