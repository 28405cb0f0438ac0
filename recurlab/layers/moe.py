"""A top-k mixture-of-experts channel mixer with a load-balancing loss.

Shazeer et al. 2017, "Outrageously Large Neural Networks: The Sparsely-Gated Mixture-of-Experts
Layer" (top-k gating); Lepikhin et al. 2020, "GShard" and Fedus et al. 2022, "Switch Transformers"
(the auxiliary balancing loss, Switch eqs. 4-6); the softmax -> top-k -> renormalise order of
Mixtral (Jiang et al. 2024, "Mixtral of Experts"). For every token x (a row of the flattened input):

    p = softmax(W_r x)                          router probabilities over E experts      (E,)
    S = top-k indices of p                      the k chosen experts
    g_e = p_e / Σ_{j ∈ S} p_j   for e ∈ S       renormalised gates (sum to 1)
    y = Σ_{e ∈ S} g_e · expert_e(x)             only the k chosen experts run

    aux = E · Σ_e f_e P_e                       f_e = share of the N·k (token, slot) assignments
                                                      that went to expert e  (Σ f_e = 1)
                                                P_e = mean over tokens of p_e

aux is 1 under perfectly uniform routing and grows to E when everything goes to one expert; its
gradient reaches the router through P (f is a count). Switch defines f for top-1; for top-k we
count every slot and divide by N·k, so the value is comparable across k (the HF/Mixtral form
divides by N only and is k times larger).

Choices: each expert is a SwiGLU (default) or a GELU MLP from :mod:`recurlab.layers.mlp`, of
hidden size ``hidden_size`` (default: the dense unit's own default, as in Mixtral, so active
compute per token is k dense FFNs); router without bias; router softmax in float32 (float64 for
float64 inputs) whatever the input dtype. Dispatch loops over experts and gathers each one's tokens
with ``index_select`` and scatters back with ``index_add_``: compute is N·k expert evaluations, not
N·E. There is no capacity limit, so no token is dropped.

The layer sets ``self.aux_loss`` on every forward; the plain ``stack`` depth module does not
collect it, while the ``rmoe`` depth module (:class:`recurlab.recursion.RMoEStack`) does.
With ``router=False`` the layer has no router of its own and takes ``router_logits`` from its
caller (the layerwise recurrent router of RMoE).
"""

from __future__ import annotations

import torch
from torch import nn

from ..ops import _checks
from .base import ChannelMixer
from .mlp import MLP, SwiGLU
from .registry import register

EXPERTS = {"swiglu": SwiGLU, "mlp": MLP}


def top_k_routing(logits: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """logits (N, E) -> gates (N, k) (renormalised top-k probabilities), experts (N, k) int64, probs (N, E).

    The softmax runs in float32 (float64 for float64 logits).
    """
    probs = torch.softmax(logits.double() if logits.dtype == torch.float64 else logits.float(), dim=-1)
    top_p, experts = torch.topk(probs, top_k, dim=-1)
    gates = top_p / top_p.sum(dim=-1, keepdim=True)
    return gates, experts, probs


def load_balancing_loss(probs: torch.Tensor, experts: torch.Tensor, n_experts: int) -> torch.Tensor:
    """E · Σ_e f_e P_e for probs (N, E) and the chosen experts (N, k); 1 when routing is uniform."""
    f = torch.bincount(experts.reshape(-1), minlength=n_experts).to(probs.dtype) / experts.numel()
    P = probs.mean(dim=0)
    return n_experts * (f * P).sum()


def dispatch(x: torch.Tensor, experts: nn.ModuleList, gates: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """y_n = Σ_j gates[n, j] · experts[chosen[n, j]](x_n) with each expert run on its own tokens only.

    x: (N, d); gates: (N, k); chosen: (N, k) int64 expert ids -> y: (N, d) in x's dtype.
    """
    y = torch.zeros_like(x)
    gates = gates.to(x.dtype)
    for e, expert in enumerate(experts):
        tokens, slots = torch.nonzero(chosen == e, as_tuple=True)  # the (token, slot) pairs routed to e
        if tokens.numel() == 0:
            continue
        out = expert(x.index_select(0, tokens)) * gates[tokens, slots].unsqueeze(-1)
        y.index_add_(0, tokens, out)
    return y


@register("moe", kind="channel", paper="Shazeer et al. 2017 / Switch 2022: top-k mixture of experts + balancing loss",
          state="none")
class MixtureOfExperts(ChannelMixer):
    """Top-k MoE of ``n_experts`` position-wise experts. x: (B, T, d) or (B, d) -> same shape.

    Args:
        n_experts: E, the number of experts.
        top_k: k, experts per token (1 <= k <= E).
        hidden_size: each expert's hidden width (None: the expert unit's default).
        expert: "swiglu" or "mlp".
        router: whether the layer owns its linear router W_r (d -> E, no bias); with False every
            call must pass ``router_logits``.
    """

    def __init__(self, d_model: int, n_experts: int = 8, top_k: int = 2, hidden_size: int | None = None,
                 expert: str = "swiglu", router: bool = True):
        super().__init__(d_model)
        if not isinstance(n_experts, int) or n_experts < 1:
            raise ValueError(f"n_experts must be a positive int, got {n_experts!r}")
        if not isinstance(top_k, int) or not 1 <= top_k <= n_experts:
            raise ValueError(f"top_k must be an int in [1, n_experts={n_experts}], got {top_k!r}")
        if expert not in EXPERTS:
            raise ValueError(f"expert must be one of {', '.join(EXPERTS)}, got {expert!r}")
        if hidden_size is not None and (not isinstance(hidden_size, int) or hidden_size < 1):
            raise ValueError(f"hidden_size must be a positive int or None, got {hidden_size!r}")
        self.n_experts, self.top_k = n_experts, top_k
        self.router = nn.Linear(d_model, n_experts, bias=False) if router else None
        self.experts = nn.ModuleList(EXPERTS[expert](d_model, hidden_size) for _ in range(n_experts))
        self.aux_loss: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, router_logits: torch.Tensor | None = None) -> torch.Tensor:
        """x: (..., d_model); router_logits: (..., n_experts) or None (use the own router) -> (..., d_model).

        Sets ``self.aux_loss`` (the balancing loss of this call's tokens, a scalar tensor).
        """
        self.check_input(x)
        flat = x.reshape(-1, self.d_model)
        if router_logits is None:
            if self.router is None:
                raise ValueError("this MixtureOfExperts was built with router=False: pass router_logits "
                                 f"of shape (..., n_experts={self.n_experts})")
            logits = self.router(flat)
        else:
            _checks.check_tensor("router_logits", router_logits, ranks=(x.dim(),),
                                 layout=f"{tuple(x.shape[:-1]) + (self.n_experts,)} (x's leading dims, n_experts)")
            if router_logits.shape != x.shape[:-1] + (self.n_experts,):
                raise ValueError(f"router_logits must have shape {tuple(x.shape[:-1]) + (self.n_experts,)} "
                                 f"(x's leading dims, n_experts), got {tuple(router_logits.shape)}")
            logits = router_logits.reshape(-1, self.n_experts)
        gates, chosen, probs = top_k_routing(logits, self.top_k)
        self.aux_loss = load_balancing_loss(probs, chosen, self.n_experts)
        return dispatch(flat, self.experts, gates, chosen).reshape(x.shape)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, n_experts={self.n_experts}, top_k={self.top_k}"
