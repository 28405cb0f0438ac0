"""What every speculative decoder shares: the sampling distribution, draws from a generator, the
bookkeeping of the pending token, and the statistics a run returns."""

from __future__ import annotations

import dataclasses

import torch

from ..models.generation import check_sampling_args


def sampling_probs(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None) -> torch.Tensor:
    """The distribution a token is sampled from, float64 (..., V), from logits (..., V).

    temperature 0 is greedy: a one-hot vector at ``argmax`` (the first maximum, as ``generate``).
    Otherwise softmax(logits / temperature) restricted to the top_k largest logits (ties at the k-th
    value are kept, as in ``recurlab.models.generation.sample_next``). Drafts and target go through
    this same function, so both distributions are modified the same way."""
    logits = logits.double()
    if temperature == 0:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).double()
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.softmax(logits, -1)


def check_args(input_ids: torch.Tensor, max_new_tokens: int, temperature: float, top_k: int | None) -> None:
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.shape[0] != 1 \
            or input_ids.shape[1] < 1:
        got = tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__
        raise ValueError(f"input_ids must be a (1, T) tensor with T >= 1 (one sequence), got {got}")
    check_sampling_args(max_new_tokens, temperature, top_k, None)  # the checks of CausalLM.generate


def draw(probs: torch.Tensor, generator: torch.Generator | None) -> int:
    """One token id from a probability vector (V,)."""
    return int(torch.multinomial(probs, 1, generator=generator))


def uniform(generator: torch.Generator | None) -> float:
    """One U[0, 1) number."""
    return float(torch.rand((), generator=generator, dtype=torch.float64))


def residual(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """norm(max(0, p - q)) (V,): what is sampled after q's token was rejected against p.

    Its mass is zero only when p == q, where nothing is ever rejected; rounding can still get
    there, and p itself is then the right distribution."""
    r = (p - q).clamp_min(0)
    total = r.sum()
    return r / total if total > 0 else p


def accept(p_token: float, q_token: float, generator: torch.Generator | None) -> bool:
    """Accept a token drafted with probability q_token with probability min(1, p_token / q_token)."""
    u = uniform(generator)
    return u * q_token < p_token


def prefill(model, input_ids: torch.Tensor):
    """The model's state after every prompt token but the last (the last is the first "pending" token).

    Every decoder here keeps each model's state one token behind the committed sequence: the
    pending token is fed first in the next call, which then also yields the logits for the token
    after it, so no call is spent on the pending token alone."""
    weight = next(model.parameters())
    state = model.init_state(1, weight.device, weight.dtype)
    if input_ids.shape[1] > 1:
        _, state = model(input_ids[:, :-1], state)
    return state


@dataclasses.dataclass
class DecodeStats:
    """What a speculative run cost.

    target_calls: parallel verification calls of the target (one per round).
    accepted: draft tokens accepted in each round (0..draft length); each round also emits one token
        of its own (the resampled or bonus token), so a round yields accepted + 1 tokens.
    draft_calls: draft model calls (``step`` over one token, or over one tree level as a batch).
    target_rerun_tokens: tokens the target ran again to rebuild its state after a partial acceptance
        (see recurlab/decoding/verify.py); zero when every draft was accepted.
    target_reruns: the target calls those re-runs took (one per partly accepted round).
    target_rewinds: partly accepted rounds whose state came from dropping the rejected tokens from a KV
        cache instead (no call; recurlab/decoding/rewind.py).
    target_prefix_states: partly accepted rounds whose state was read from the prefix states the
        verification call kept (diagonal scans, gated linear attention; no call).
    target_positions: token positions the verification calls ran (chain: k + 1 per round; a tree: its
        nodes + 1 with tree attention, leaves x (depth + 1) as paths)."""

    target_calls: int = 0
    accepted: list[int] = dataclasses.field(default_factory=list)
    draft_calls: int = 0
    target_rerun_tokens: int = 0
    target_reruns: int = 0
    target_rewinds: int = 0
    target_prefix_states: int = 0
    target_positions: int = 0

    @property
    def mean_accepted(self) -> float:
        """Mean accepted draft tokens per target call."""
        return sum(self.accepted) / max(len(self.accepted), 1)

    @property
    def tokens_per_call(self) -> float:
        """Mean tokens emitted per target call (accepted + 1; the last round may be cut by max_new_tokens)."""
        return self.mean_accepted + 1
