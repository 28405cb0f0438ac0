"""Tiny instances of every registered token mixer, so every contract test runs in milliseconds.

The constructor arguments come from each layer's registration (``@register(..., tiny=...)``): a
new unit is picked up by every contract test without editing this file.
"""

import torch

from recurlab import layers
from recurlab.ops import KVCache

D = 16
TOKEN_MIXERS = layers.names("token")
TINY = {name: layers.info(name).tiny for name in TOKEN_MIXERS}


def make_mixer(name, dtype=torch.float64, **overrides):
    torch.manual_seed(0)
    mixer = layers.build(name, D, **{**TINY[name], **overrides}).to(dtype)
    # randomise zero-initialised weights (rwkv's k, r, o) so the tests exercise every path
    with torch.no_grad():
        for p in mixer.parameters():
            if p.abs().sum() == 0 and p.dim() > 1:
                p.normal_(0, 0.3)
    return mixer


class SideInputs(dict):
    """What a mixer that reads another layer's output needs beside x (B, T, d), as keyword arguments: a memory
    read-out (B, T, memory_dim) for a mixer that reads_memory, a KV cache of T tokens for one that reads_kv, nothing
    otherwise. ``**inputs`` gives them for the whole x; ``slice``/``at`` for a chunk, rows or one token of it."""

    def slice(self, lo=None, hi=None, rows=None) -> dict:
        """The inputs for x[rows, lo:hi]: the memory sliced; the cache of the tokens up to hi, its rows."""
        if "memory" in self:
            m = self["memory"] if rows is None else self["memory"][rows]
            return {"memory": m[:, lo:hi]}
        if "kv" in self:
            kv = self["kv"]
            hi = kv.length if hi is None else hi
            kv = kv.without_last(kv.length - hi)
            return {"kv": kv if rows is None else kv.select(rows)}
        return {}

    def at(self, t: int) -> dict:
        """The inputs for the token x[:, t] (a step)."""
        if "memory" in self:
            return {"memory": self["memory"][:, t]}
        return self.slice(0, t + 1)

    def empty_batch(self, T: int | None) -> dict:
        """Inputs for a batch of 0 rows (T tokens, or one step when T is None): an empty memory; nothing for a
        KV reader (no mixer runs on an empty batch)."""
        if "memory" in self:
            width = self["memory"].shape[-1]
            shape = (0, width) if T is None else (0, T, width)
            return {"memory": torch.randn(*shape, dtype=self["memory"].dtype)}
        return {}


def memory_for(mixer, x) -> SideInputs:
    """The side inputs of ``mixer`` for x (B, T, d): see :class:`SideInputs`."""
    g = torch.Generator().manual_seed(5)
    if mixer.reads_memory:
        return SideInputs(memory=torch.randn(*x.shape[:-1], mixer.memory_dim, generator=g, dtype=x.dtype))
    if mixer.reads_kv:
        B, T = x.shape[:2]
        k, v = (torch.randn(B, T, mixer.n_kv_heads, mixer.head_dim, generator=g).to(x.dtype) for _ in range(2))
        return SideInputs(kv=KVCache().append(k, v))
    return SideInputs()
