"""The ``sdpa`` backend of ``attention``: torch's fused ``scaled_dot_product_attention``.

Softmax attention (Vaswani et al. 2017, "Attention Is All You Need", eq. 1) in
torch's fused kernel, plus sliding-window attention (as in Samba, SambaY and
Liger) in blocks of ``window`` queries, O(T * window), for long prompts.
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


def sliding_window_sdpa(q, k, v, window, scale):
    """Sliding-window attention in O(T * window): queries in blocks of ``window`` attend to their
    own block and the one before, (B, T, H, Dh) in and out (keys already repeated for GQA)."""
    B, T, H, Dh = q.shape
    w = window
    pad = (-T) % w
    if pad:  # padded keys come after every real query, so causality masks them
        q, k, v = (F.pad(x, (0, 0, 0, 0, 0, pad)) for x in (q, k, v))
    nb = (T + pad) // w
    blocks = lambda x: x.view(B, nb, w, H, Dh).transpose(2, 3)  # (B, nb, H, w, Dh)  # noqa: E731
    qb, kb, vb = blocks(q), blocks(k), blocks(v)
    previous = lambda x: torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], 1)  # noqa: E731
    keys, values = torch.cat([previous(kb), kb], 3), torch.cat([previous(vb), vb], 3)  # (B, nb, H, 2w, Dh)
    i = torch.arange(w, device=q.device).view(w, 1)
    m = torch.arange(2 * w, device=q.device).view(1, 2 * w)
    allowed = (m <= w + i) & (m > i)  # key position (j-1)w + m within (query - window, query]
    mask = allowed.expand(nb, 1, w, 2 * w).clone()
    mask[0, :, :, :w] = False  # the first block has no block before it
    o = F.scaled_dot_product_attention(qb, keys, values, attn_mask=mask, scale=scale)
    return o.transpose(2, 3).reshape(B, nb * w, H, Dh)[:, :T]
