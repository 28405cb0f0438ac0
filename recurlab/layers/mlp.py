"""Position-wise channel mixers: the Transformer MLP and the GLU family.

    mlp:     y = W_2 act(W_1 x), act GELU by default           (Vaswani et al. 2017; GELU: Hendrycks & Gimpel 2016;
                                                                 relu; relu2 = ReLU(x)², So et al. 2021, Primer)
    glu:     y = W_2 (σ(W x) ⊙ V x)                            (Dauphin et al. 2017; Shazeer 2020, "GLU Variants
    swiglu:  y = W_2 (Swish(W x) ⊙ V x)                          Improve Transformer", eqs. 5-6)
    geglu:   y = W_2 (GELU(W x) ⊙ V x)
    identity: y = x                                            (Zoology's token-mixer-only blocks: its
                                                                 state_mixer torch.nn.Identity, which
                                                                 adds the pre-normed x to the residual)

Hidden width: 4 d_model for mlp; 8/3 d_model (rounded up to a multiple of 8)
for the gated ones, so all have about 8 d_model² weights. The Activator
paper's GLU-as-core image model is recurlab/vision/activator.py.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from .base import ChannelMixer
from .registry import register


def gated_hidden_size(d_model: int) -> int:
    return -(-(8 * d_model // 3) // 8) * 8


def relu_squared(x):
    """ReLU(x)² (Primer, So et al. 2021; RWKV's channel mix)."""
    return F.relu(x).square()


MLP_ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu, "relu2": relu_squared}


@register("mlp", kind="channel", paper="Vaswani et al. 2017, Transformer MLP (GELU)")
class MLP(ChannelMixer):
    """y = W_2 act(W_1 x). ``activation``: "gelu" (default), "relu" or "relu2" (the ReLU family is what
    pruning methods that track dead neurons need, recurlab/compress/prune.py)."""

    def __init__(self, d_model: int, hidden_size: int | None = None, bias: bool = False, activation: str = "gelu"):
        super().__init__(d_model)
        if activation not in MLP_ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(MLP_ACTIVATIONS)}, got {activation!r}")
        hidden = hidden_size or 4 * d_model
        self.activation_name = activation
        self.activation = MLP_ACTIVATIONS[activation]
        self.up = nn.Linear(d_model, hidden, bias=bias)
        self.down = nn.Linear(hidden, d_model, bias=bias)

    def forward(self, x):
        self.check_input(x)
        return self.down(self.activation(self.up(x)))

    def extra_repr(self) -> str:
        return f"activation={self.activation_name}"


class GatedLinearUnit(ChannelMixer):
    activation = staticmethod(F.sigmoid)

    def __init__(self, d_model: int, hidden_size: int | None = None, bias: bool = False):
        super().__init__(d_model)
        hidden = hidden_size or gated_hidden_size(d_model)
        self.gate_and_value = nn.Linear(d_model, 2 * hidden, bias=bias)
        self.down = nn.Linear(hidden, d_model, bias=bias)

    def forward(self, x):
        self.check_input(x)
        gate, value = self.gate_and_value(x).chunk(2, dim=-1)
        return self.down(self.activation(gate) * value)


@register("glu", kind="channel", paper="Dauphin et al. 2017 / Shazeer 2020, GLU")
class GLU(GatedLinearUnit):
    activation = staticmethod(F.sigmoid)


@register("swiglu", kind="channel", paper="Shazeer 2020, SwiGLU")
class SwiGLU(GatedLinearUnit):
    activation = staticmethod(F.silu)


@register("geglu", kind="channel", paper="Shazeer 2020, GeGLU")
class GeGLU(GatedLinearUnit):
    activation = staticmethod(F.gelu)


@register("identity", kind="channel", paper="Arora et al. 2023, Zoology (state_mixer = torch.nn.Identity)")
class Identity(ChannelMixer):
    """y = x: no parameters. In a Block, x + Identity(norm(x)) = x + norm(x), which is what Zoology's
    TransformerBlock computes with its Identity state mixer (the MQAR models of its figure 2)."""

    def forward(self, x):
        self.check_input(x)
        return x
