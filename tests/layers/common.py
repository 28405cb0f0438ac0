"""Small constructor arguments per token mixer, so every contract test runs in milliseconds."""

import torch

from recurlab import layers

D = 16
TINY = {
    "gru": {},
    "mingru": {},
    "minlstm": {},
    "gla": {"n_heads": 2},
    "gam": {"num_slots": 8},
    "gmu": {"memory_dim": 12},
    "pgn": {"window": 5},
    "rwkv": {"layer_idx": 1, "n_layers": 3},
    "baseconv": {},
    "hyena": {"l_max": 40, "filter_order": 8},
    "attention": {"n_heads": 2},
    "swa": {"n_heads": 2, "window": 4},
    "liger": {"n_heads": 2, "window": 4},
}
TOKEN_MIXERS = layers.names("token")


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
    """The memory read-out a gmu layer needs, or None for other mixers."""
    if not mixer.needs_memory:
        return {}
    g = torch.Generator().manual_seed(5)
    return {"memory": torch.randn(*x.shape[:-1], mixer.memory_width, generator=g, dtype=x.dtype)}
