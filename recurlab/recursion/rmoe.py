"""Mixture-of-experts whose router is a GRU running over the layers (RMoE).

Qiu et al. 2024, "Layerwise Recurrent Router for Mixture-of-Experts" (RMoE; code qiuzh20/RMoE,
``llama_moe_rnn``). Each layer l = 0..L-1 of the stack is a pre-norm residual block whose channel
mixer is a top-k MoE (:class:`recurlab.layers.moe.MixtureOfExperts`). The router of layer l sees
the token's MoE input h_l = RMSNorm(x_l) and the router state of the layer below:

    x'_l   = W1^(l) h_l                     per-layer projection d_model -> router_dim, no bias
    r_l    = GRUCell(x'_l, r_{l-1})         ONE GRU cell shared by all layers, r_{-1} = 0
    logits = W2^(l) r_l                     per-layer projection router_dim -> n_experts, no bias
    gates  = renormalise(top-k(softmax(logits)))

The recurrence runs over depth only, per token: r never crosses time steps, so the decoding state
of the stack is only its token mixers' states (``step`` starts every token from r = 0). The
baseline ``router="plain"`` replaces the three lines above by logits = W^(l) h_l (each layer's own
linear router, as in Switch/Mixtral).

As a depth module (``ModelConfig(depth="rmoe", channel_mixer="moe", channel_kwargs={"n_experts": 8,
"top_k": 2})``) its blocks are ordinary blocks whose channel mixer is the MoE without a router of its
own (``router=False``): the layerwise router gives it its logits.

Choices (the paper's code, or ours where it leaves the detail open):

- The GRU is the standard one (torch.nn.GRUCell, with biases; the official CustomGRUCell computes
  the same equations), input and hidden size ``router_dim`` (the paper: 256 at d_model >= 1024; our
  default 64 for small models).
- aux_loss = aux_coef · Σ_l balance_l with the Switch/GShard balancing loss of each layer
  (:func:`recurlab.layers.moe.load_balancing_loss`, 1 at uniform routing). The official code
  computes one loss over all layers' logits concatenated (about the mean over layers), so our
  default aux_coef = 0.01 weighs it L times more than their 0.01 would.
- Experts are SwiGLU of hidden size ``channel_kwargs["hidden_size"]`` (default: SwiGLU's own, 8/3 d_model).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..layers.moe import MixtureOfExperts
from ..models.block import Block, check_self_contained, config_block
from ..models.depth import BlockStates, DepthModule, register_depth

ROUTERS = ("recurrent", "plain")


class LayerwiseRecurrentRouter(nn.Module):
    """RMoE's router: per-layer W1^(l), a GRU cell shared over layers, per-layer W2^(l).

    ``logits, r = router(h, layer, r_prev)`` with h: (..., d_model), r_prev: (..., router_dim) or
    None (= zeros, before layer 0) -> logits (..., n_experts), r (..., router_dim).
    """

    def __init__(self, d_model: int, n_layers: int, n_experts: int = 8, router_dim: int = 64):
        super().__init__()
        for name, v in (("d_model", d_model), ("n_layers", n_layers), ("n_experts", n_experts),
                        ("router_dim", router_dim)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.d_model, self.n_layers, self.n_experts, self.router_dim = d_model, n_layers, n_experts, router_dim
        self.w1 = nn.ModuleList(nn.Linear(d_model, router_dim, bias=False) for _ in range(n_layers))
        self.gru = nn.GRUCell(router_dim, router_dim)
        self.w2 = nn.ModuleList(nn.Linear(router_dim, n_experts, bias=False) for _ in range(n_layers))

    def forward(self, h: torch.Tensor, layer: int, r_prev: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        _check_router_call(h, layer, self.d_model, self.n_layers)
        lead = h.shape[:-1]
        x_in = self.w1[layer](h).reshape(-1, self.router_dim)
        if r_prev is not None:
            if r_prev.shape != lead + (self.router_dim,):
                raise ValueError(f"r_prev must have shape {tuple(lead) + (self.router_dim,)} (h's leading dims, "
                                 f"router_dim), got {tuple(r_prev.shape)}")
            r_prev = r_prev.reshape(-1, self.router_dim)
        r = self.gru(x_in, r_prev).reshape(*lead, self.router_dim)
        return self.w2[layer](r), r


class PlainRouter(nn.Module):
    """The baseline: each layer's own linear router, logits = W^(l) h_l; no state (r stays None)."""

    def __init__(self, d_model: int, n_layers: int, n_experts: int = 8):
        super().__init__()
        self.d_model, self.n_layers, self.n_experts = d_model, n_layers, n_experts
        self.w = nn.ModuleList(nn.Linear(d_model, n_experts, bias=False) for _ in range(n_layers))

    def forward(self, h: torch.Tensor, layer: int, r_prev: Any = None) -> tuple[torch.Tensor, None]:
        _check_router_call(h, layer, self.d_model, self.n_layers)
        return self.w[layer](h), None


def _check_router_call(h, layer, d_model, n_layers):
    if not isinstance(h, torch.Tensor) or h.dim() < 1 or h.shape[-1] != d_model:
        got = tuple(h.shape) if isinstance(h, torch.Tensor) else type(h).__name__
        raise ValueError(f"h must be a tensor of shape (..., d_model={d_model}), got {got}")
    if not isinstance(layer, int) or not 0 <= layer < n_layers:
        raise ValueError(f"layer must be an int in [0, n_layers={n_layers}), got {layer!r}")


@register_depth("rmoe", tiny={"n_layers": 2, "channel_mixer": "moe", "channel_kwargs": {"n_experts": 4, "top_k": 2}})
class RMoEStack(DepthModule):
    """Blocks of (token mixer, router-less MoE channel mixer) routed by a layerwise recurrent (or plain) router.

    Each layer l:   x = x + mixer_l(RMSNorm(x));   h = RMSNorm(x);
                    logits, r = router(h, l, r);   x = x + moe_l(h, logits)

    ``y, state = stack(x, state)`` with x: (B, T, d_model); state: :class:`BlockStates` of the token
    mixers. ``step`` takes x_t: (B, d_model). After each call ``aux_loss`` is aux_coef · Σ_l balance_l
    and ``router_logits`` the list of each layer's routing logits (detached), (B, T, n_experts) each
    ((B, n_experts) after step), for inspecting expert usage.

    Args:
        blocks: one Block per layer whose channel mixer is a MixtureOfExperts built with router=False.
        router: "recurrent" (RMoE's GRU over layers) or "plain" (each layer's own linear router).
        router_dim: the GRU's width.
        aux_coef: weight of the summed balancing losses.
    """

    state_type = BlockStates

    def __init__(self, blocks: list[Block], router: str = "recurrent", router_dim: int = 64, aux_coef: float = 0.01):
        if not isinstance(blocks, (list, tuple, nn.ModuleList)) or not blocks or not all(isinstance(b, Block) for b in blocks):
            raise ValueError(f"blocks must be a non-empty list of recurlab Blocks, got {blocks!r:.80}")
        super().__init__(blocks[0].d_model)
        check_self_contained(blocks, "blocks", type(self).registry_name)
        moes = [b.channel_mixer for b in blocks]
        if not all(isinstance(m, MixtureOfExperts) and m.router is None for m in moes):
            raise ValueError("every block's channel mixer must be a MixtureOfExperts built with router=False "
                             "(channel_mixer='moe'; the layerwise router gives the logits)")
        if len({m.n_experts for m in moes}) != 1:
            raise ValueError(f"every MoE must have the same number of experts, got {[m.n_experts for m in moes]}")
        if router not in ROUTERS:
            raise ValueError(f"router must be one of {', '.join(ROUTERS)}, got {router!r}")
        if not isinstance(aux_coef, (int, float)) or aux_coef < 0:
            raise ValueError(f"aux_coef must be a number >= 0, got {aux_coef!r}")
        self.blocks = nn.ModuleList(blocks)
        self.n_layers, self.router_kind, self.aux_coef = len(blocks), router, float(aux_coef)
        n_experts = moes[0].n_experts
        self.router = (LayerwiseRecurrentRouter(self.d_model, self.n_layers, n_experts, router_dim)
                       if router == "recurrent" else PlainRouter(self.d_model, self.n_layers, n_experts))
        self.router_logits: list[torch.Tensor] = []

    @classmethod
    def from_config(cls, config, *, router: str = "recurrent", router_dim: int = 64,
                    aux_coef: float = 0.01) -> "RMoEStack":
        """The config's n_layers blocks; the config's channel mixer must be "moe" (its router is RMoE's)."""
        if config.channel_mixer != "moe":
            raise ValueError(f"depth 'rmoe' routes MoE channel mixers: set channel_mixer='moe' (with channel_kwargs "
                             f"such as n_experts, top_k), got {config.channel_mixer!r}")
        return cls([config_block(config, i, channel_overrides={"router": False}) for i in range(config.n_layers)],
                   router, router_dim, aux_coef)

    def init_state(self, batch_size, device=None, dtype=None) -> BlockStates:
        return BlockStates(tuple(b.mixer.init_state(batch_size, device, dtype) for b in self.blocks))

    def run(self, x: torch.Tensor, state: BlockStates, step: bool) -> tuple[torch.Tensor, BlockStates]:
        if len(state.blocks) != self.n_layers:
            raise ValueError(f"RMoEStack state must hold {self.n_layers} block states, got {len(state.blocks)}")
        states = list(state.blocks)
        r = None  # router state over depth, per token; zeros before layer 0
        balance = []
        self.router_logits = []
        for l, block in enumerate(self.blocks):
            y, states[l] = (block.mixer.step if step else block.mixer)(block.mixer_norm(x), states[l])
            x = x + y
            h = block.channel_norm(x)
            logits, r = self.router(h, l, r)
            x = x + block.channel_mixer(h, router_logits=logits)
            balance.append(block.channel_mixer.aux_loss)
            self.router_logits.append(logits.detach())
        self.aux_loss = self.aux_coef * torch.stack(balance).sum()
        return x, BlockStates(tuple(states))

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, n_layers={self.n_layers}, router={self.router_kind}, aux_coef={self.aux_coef}"
