"""A causal language model around any depth module: embedding -> depth -> RMSNorm -> tied head.

    model = DepthLM(vocab_size=256, depth=Recursive(...))
    logits, state = model(ids)              # (B, T) -> (B, T, V)
    logits_t, state = model.step(ids_t, state)
    model.generate(prompt, 100)

It offers :class:`recurlab.models.CausalLM`'s interface (``features``/``logits``/``forward``/
``step``/``generate``/``num_parameters``), so :class:`recurlab.train.Trainer` trains it; the
depth module's ``aux_loss`` (router losses) is exposed as ``model.aux_loss`` and added by the
trainer to the language-modelling loss.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from .base import DepthModule


class DepthLM(nn.Module):
    def __init__(self, vocab_size: int, depth: DepthModule, norm_eps: float = 1e-5):
        super().__init__()
        if not isinstance(depth, DepthModule):
            raise ValueError(f"depth must be a recurlab.recursion DepthModule, got {type(depth).__name__}")
        if not isinstance(vocab_size, int) or vocab_size < 1:
            raise ValueError(f"vocab_size must be a positive int, got {vocab_size!r}")
        self.vocab_size = vocab_size
        self.d_model = depth.d_model
        self.embedding = nn.Embedding(vocab_size, depth.d_model)
        nn.init.normal_(self.embedding.weight, std=0.02)
        self.depth = depth
        self.final_norm = nn.RMSNorm(depth.d_model, eps=norm_eps)

    @property
    def aux_loss(self) -> torch.Tensor | None:
        """The depth module's auxiliary loss from the last forward (None when it has none)."""
        return self.depth.aux_loss

    def features(self, input_ids: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        """input_ids (B, T) -> final-normed hidden states (B, T, d_model) and the depth state."""
        self._check_ids(input_ids, 2, "(B, T)")
        x, state = self.depth(self.embedding(input_ids), state)
        return self.final_norm(x), state

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return features @ self.embedding.weight.t()

    def forward(self, input_ids: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        h, state = self.features(input_ids, state)
        return self.logits(h), state

    def step(self, token_ids: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        """token_ids (B,) -> next-token logits (B, V) and the updated state."""
        self._check_ids(token_ids, 1, "(B,)")
        x, state = self.depth.step(self.embedding(token_ids), state)
        return self.logits(self.final_norm(x)), state

    def generate(self, input_ids: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, seed: int | None = None) -> torch.Tensor:
        from ..models.generation import generate

        return generate(self, input_ids, max_new_tokens, temperature, top_k, top_p, seed)

    def num_parameters(self) -> "OrderedDict[str, int]":
        parts: OrderedDict[str, int] = OrderedDict()
        parts["embedding"] = self.embedding.weight.numel()
        parts["depth"] = sum(p.numel() for p in self.depth.parameters())
        parts["final_norm"] = self.final_norm.weight.numel()
        parts["total"] = sum(p.numel() for p in self.parameters())
        return parts

    def _check_ids(self, ids, rank, layout):
        if not isinstance(ids, torch.Tensor) or ids.dim() != rank or ids.dtype not in (torch.int32, torch.int64):
            got = f"{tuple(ids.shape)} {ids.dtype}" if isinstance(ids, torch.Tensor) else type(ids).__name__
            raise ValueError(f"input ids must be an int64 tensor of shape {layout}, got {got}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size):
            raise ValueError(f"input ids must lie in [0, vocab_size={self.vocab_size}), "
                             f"got values in [{int(ids.min())}, {int(ids.max())}]")
