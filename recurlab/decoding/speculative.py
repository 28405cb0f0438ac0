"""Chain speculative decoding (Leviathan et al. 2023, "Fast Inference from Transformers via Speculative
Decoding"; Chen et al. 2023, "Accelerating Large Language Model Decoding with Speculative Sampling").

Each round a small draft model q proposes k tokens d_1..d_k one after another; the target p scores them
in one call (:func:`recurlab.decoding.verify`), giving p_1..p_{k+1}. Draft i is accepted with
probability min(1, p_i(d_i) / q_i(d_i)); the first rejected one is replaced by a token from
norm(max(0, p_i - q_i)); when all k are accepted a bonus token comes from p_{k+1}. Every emitted token
then has exactly the target's distribution. Temperature and top-k change p and q alike
(:func:`sampling_probs`); at temperature 0 both are one-hot and the output is greedy decoding.

    ids, stats = speculative_generate(target, draft, prompt, 64, draft_len=4, generator=g)
    stats.target_calls, stats.accepted   # one target call per round, accepted drafts per round

Batch 1 only (one sequence): rows of a batch would accept different numbers of tokens.
"""

from __future__ import annotations

import torch

from .common import DecodeStats, accept, check_args, draw, prefill, residual, sampling_probs
from .verify import verify


@torch.no_grad()
def speculative_generate(target, draft, input_ids: torch.Tensor, max_new_tokens: int, draft_len: int = 4,
                         temperature: float = 1.0, top_k: int | None = None,
                         generator: torch.Generator | None = None) -> tuple[torch.Tensor, DecodeStats]:
    """The prompt (1, T) followed by max_new_tokens tokens sampled from ``target``, and the run's stats.

    target, draft: CausalLM-like models over the same vocabulary (``forward(ids, state)``, ``step``,
    ``init_state``); draft_len: tokens drafted per round (k >= 1); generator: every random draw
    (draft samples, acceptance tests, resamples) comes from it, so a seeded generator repeats a run."""
    check_args(input_ids, max_new_tokens, temperature, top_k)
    if draft_len < 1:
        raise ValueError(f"draft_len must be >= 1, got {draft_len}")
    stats = DecodeStats()
    out = input_ids[0].tolist()
    target_state, draft_state = prefill(target, input_ids), prefill(draft, input_ids)
    pending = out[-1]  # committed, but not yet run through either model
    new = 0
    device = input_ids.device
    while new < max_new_tokens:
        # draft k tokens; draft_states[i] is the draft's state after pending + d_1..d_i
        drafts, q, draft_states = [], [], []
        token, state = pending, draft_state
        for _ in range(draft_len):
            logits, state = draft.step(torch.tensor([token], device=device), state)
            stats.draft_calls += 1
            draft_states.append(state)
            q.append(sampling_probs(logits[0], temperature, top_k))
            token = draw(q[-1], generator)
            drafts.append(token)
        v = verify(target, target_state, torch.tensor([[pending] + drafts], device=device))
        stats.target_calls += 1
        stats.target_positions += 1 + draft_len
        p = sampling_probs(v.logits[0], temperature, top_k)  # (k + 1, V)
        accepted = 0
        for i, d in enumerate(drafts):
            if not accept(float(p[i, d]), float(q[i][d]), generator):
                break
            accepted += 1
        if accepted < draft_len:
            extra = draw(residual(p[accepted], q[accepted]), generator)
        else:
            extra = draw(p[draft_len], generator)  # the bonus token
        stats.accepted.append(accepted)
        # continue from the state after pending + d_1..d_accepted; the extra token is the next pending one
        target_state = v.state_after(1 + accepted)
        stats.target_rerun_tokens += v.rerun_tokens
        stats.target_reruns += v.reruns
        stats.target_rewinds += v.rewound
        stats.target_prefix_states += v.from_prefix
        if accepted < draft_len:
            draft_state = draft_states[accepted]
        else:
            _, draft_state = draft.step(torch.tensor([drafts[-1]], device=device), draft_states[-1])
            stats.draft_calls += 1
        emitted = drafts[:accepted] + [extra]
        out += emitted
        new += len(emitted)
        pending = extra
    total = input_ids.shape[1] + max_new_tokens
    return torch.tensor([out[:total]], device=device), stats
