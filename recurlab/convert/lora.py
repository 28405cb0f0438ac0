"""LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models", eq. 3): a frozen linear
layer plus a trainable low-rank update,

    y = x W^T + b + (alpha / r) · (x A^T) B^T        A (r, in), B (out, r)

A starts as kaiming_uniform(a = sqrt(5)) (nn.Linear's default for a weight) and B at zero, so a fresh
adapter leaves the layer's output unchanged; alpha defaults to r (scaling 1), as peft's ``LoraConfig(r=8)``
that the Liger authors' fine-tuning uses (lora_alpha 8, no dropout). ``merge()`` folds the update
into the weight, W + (alpha / r) B A, and returns a plain nn.Linear.

    names = add_lora(model, targets=("q_proj", "k_proj", "v_proj"), rank=8)  # every such nn.Linear wrapped
    ...train lora_parameters(model)...
    merge_lora(model)                                                           # plain nn.Linear again
"""

from __future__ import annotations

import math

import torch
from torch import nn


class LoRALinear(nn.Module):
    """A frozen nn.Linear ``base`` plus the trainable low-rank update (alpha / rank) · B A."""

    def __init__(self, base: nn.Linear, rank: int = 8, alpha: float | None = None):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise ValueError(f"base must be an nn.Linear, got {type(base).__name__}")
        if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
            raise ValueError(f"rank must be a positive int, got {rank!r}")
        alpha = float(rank if alpha is None else alpha)
        if not alpha > 0:
            raise ValueError(f"alpha must be a number > 0, got {alpha!r}")
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.rank, self.alpha, self.scaling = rank, alpha, alpha / rank
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, **factory))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, **factory))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., in) -> (..., out)."""
        return self.base(x) + (x @ self.lora_A.t() @ self.lora_B.t()) * self.scaling

    def merge(self) -> nn.Linear:
        """A new nn.Linear computing the same function: weight W + scaling · B A, the same bias."""
        merged = nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None,
                           device=self.base.weight.device, dtype=self.base.weight.dtype)
        with torch.no_grad():
            merged.weight.copy_(self.base.weight + self.scaling * (self.lora_B @ self.lora_A))
            if self.base.bias is not None:
                merged.bias.copy_(self.base.bias)
        return merged

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha}"


def add_lora(model: nn.Module, targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj"), rank: int = 8,
             alpha: float | None = None) -> list[str]:
    """Wrap every nn.Linear of ``model`` whose attribute name is in ``targets`` in a LoRALinear (in place);
    returns the wrapped modules' names. A ValueError if none matches."""
    found = [(name, module) for name, module in model.named_modules()
             if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in targets]
    if not found:
        raise ValueError(f"the model has no nn.Linear named {', '.join(targets)} to adapt with LoRA")
    for name, module in found:
        parent_name, _, attribute = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, attribute, LoRALinear(module, rank, alpha))
    return [name for name, _ in found]


def lora_modules(model: nn.Module) -> list[tuple[str, LoRALinear]]:
    """(name, module) of every LoRALinear in ``model``."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, LoRALinear)]


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The A and B matrices of every LoRALinear in ``model``."""
    return [p for _, m in lora_modules(model) for p in (m.lora_A, m.lora_B)]


def merge_lora(model: nn.Module) -> int:
    """Replace every LoRALinear in ``model`` by its merged nn.Linear (in place); returns how many."""
    modules = lora_modules(model)
    for name, module in modules:
        parent_name, _, attribute = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, attribute, module.merge())
    return len(modules)
