"""Tiny instances of every registered token mixer, so every contract test runs in milliseconds.

The constructor arguments come from each layer's registration (``@register(..., tiny=...)``): a
new unit is picked up by every contract test without editing this file.
"""

import torch

from recurlab import layers

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


def memory_for(mixer, x):
    """The memory read-out a mixer that reads_memory needs (as keyword arguments), or {}."""
    if not mixer.reads_memory:
        return {}
    g = torch.Generator().manual_seed(5)
    return {"memory": torch.randn(*x.shape[:-1], mixer.memory_dim, generator=g, dtype=x.dtype)}
