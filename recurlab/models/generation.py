"""Sampling from a causal LM with its states: a parallel prefill, then one ``step`` per new token.

Recurrent layers decode with their fixed-size state, attention layers with their
KV cache, hybrids with both: the cost of a new token does not depend on how
long the prompt was, except for attention.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Next token ids (B,) from logits (B, V): greedy at temperature 0, else top-k / top-p sampling."""
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = torch.softmax(sorted_logits, -1).cumsum(-1)
        drop_sorted = cumulative - torch.softmax(sorted_logits, -1) > top_p  # keep the smallest set reaching top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    probs = torch.softmax(logits, -1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def check_sampling_args(max_new_tokens, temperature, top_k, top_p):
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 means greedy), got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p}")


@torch.no_grad()
def stream(model, input_ids: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
           top_p: float | None = None, seed: int | None = None) -> Iterator[torch.Tensor]:
    """Yield each new token (B,) as soon as it is decoded."""
    check_sampling_args(max_new_tokens, temperature, top_k, top_p)
    if max_new_tokens == 0:
        return
    generator = None
    if seed is not None:
        generator = torch.Generator(device=input_ids.device).manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        logits, state = model.prefill(input_ids)
        token = sample_next(logits, temperature, top_k, top_p, generator)
        yield token
        for _ in range(max_new_tokens - 1):
            logits, state = model.step(token, state)
            token = sample_next(logits, temperature, top_k, top_p, generator)
            yield token
    finally:
        model.train(was_training)


def generate(model, input_ids: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, seed: int | None = None) -> torch.Tensor:
    """The prompt followed by ``max_new_tokens`` sampled tokens, (B, T + max_new_tokens)."""
    new = list(stream(model, input_ids, max_new_tokens, temperature, top_k, top_p, seed))
    return torch.cat([input_ids, torch.stack(new, 1)], 1) if new else input_ids.clone()
