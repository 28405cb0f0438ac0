"""Tiny model pairs for the decoding tests, and a memoising wrapper that makes 20k sampled runs affordable."""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn

from recurlab.models import CausalLM, ModelConfig
from recurlab.state import State

VOCAB = 8


def tiny_lm(mixer: str, seed: int, n_layers: int = 1, scale: float = 0.3) -> CausalLM:
    """A float64 CausalLM over VOCAB tokens with random weights: unit-variance embeddings and an untied head of
    standard deviation ``scale``, so that next-token distributions are neither uniform nor one-hot (with a tied
    head every random model mostly predicts its last token again, and all models look alike)."""
    torch.manual_seed(seed)
    model = CausalLM(ModelConfig(vocab_size=VOCAB, d_model=16, n_layers=n_layers, mixer=mixer,
                                 tie_embeddings=False)).double().eval()
    with torch.no_grad():
        model.embedding.weight.normal_(0, 1.0)
        model.head.weight.normal_(0, scale)
    return model


def perturbed_copy(model: CausalLM, noise: float, seed: int) -> CausalLM:
    """A draft that agrees with ``model`` often but not always: its weights plus Gaussian noise of std ``noise``."""
    draft = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in draft.parameters():
            p.add_(noise * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return draft


@dataclasses.dataclass(frozen=True)
class History(State):
    """The tokens seen so far (B, T)."""

    ids: torch.Tensor


class HistoryLM(nn.Module):
    """``model``'s next-token logits, looked up by the whole token history (each computed once by a full
    forward from the start). Its state is the history itself, so it meets the forward/step/select contract
    the decoders use, and repeated runs from one prompt cost dictionary lookups instead of model calls.
    The model's own states are tested by test_verify.py and by the greedy tests, which use real models."""

    def __init__(self, model: CausalLM):
        super().__init__()
        self.model = model
        self.cache: dict[tuple[int, ...], torch.Tensor] = {}

    def init_state(self, batch_size: int, device=None, dtype=None) -> History:
        return History(torch.zeros(batch_size, 0, dtype=torch.long))

    def next_logits(self, history: tuple[int, ...]) -> torch.Tensor:
        if history not in self.cache:
            with torch.no_grad():
                self.cache[history] = self.model(torch.tensor([history]))[0][0, -1]
        return self.cache[history]

    def forward(self, ids: torch.Tensor, state: History) -> tuple[torch.Tensor, History]:
        history = torch.cat([state.ids, ids], 1)
        start = state.ids.shape[1]
        rows = history.tolist()
        logits = torch.stack([torch.stack([self.next_logits(tuple(row[:t + 1])) for t in range(start, len(row))])
                              for row in rows])
        return logits, History(history)

    def step(self, ids: torch.Tensor, state: History) -> tuple[torch.Tensor, History]:
        logits, state = self.forward(ids[:, None], state)
        return logits[:, 0], state
