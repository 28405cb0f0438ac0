"""ParaThinker: P reasoning paths decoded in parallel, then one summary over all of them (Wen et al. 2025,
"ParaThinker: Native Parallel Thinking as a New Paradigm to Scale LLM Test-time Compute"; code
MobileLLM/ParaThinker), for every recurlab model: attention, recurrent and hybrid.

The layout of one problem (``S`` = ``path_start``, ``E`` = ``path_end``, ``U`` = ``summary_start``):

    prompt | S path_1 E | S path_2 E | ... | S path_P E | U summary end
    seg 0    seg 1        seg 2              seg P        seg 0

Path i is generated from the prompt alone: its tokens carry a learned *path embedding* e_i (zero at
initialisation, so an untrained ParaThinker is the language model it wraps), added to the token embeddings,
which is what makes the P paths differ from the same prompt (the paper uses P distinct <think_i> tokens and a
segment embedding added to keys and values; see "Deviations" below). The paths decode as one batch of P rows
that start from the prompt's state, forked with ``State.select([0] * P)``: for attention the rows share the
prompt's KV cache values, for a recurrent mixer each row starts from the prompt's fixed-size state.

The summary's state: the summary reads the paths *in order through the state*. After the paths are written,
the prompt's state continues over ``S path_1 E ... S path_P E U`` (one parallel call, every path token with
its own path embedding), and the summary decodes from there with segment 0. This is the same for every mixer
(a recurrent state cannot attend to P separate branches), costs one parallel pass over the paths' tokens, and
is exactly what training shows the summary: :func:`sft_examples` trains each path on ``prompt | S path_i E``
(the context it is generated in) and the summary on the whole layout with labels on the summary only.

Deviations from the paper (docs/parathinker.md): one shared path-start token plus learned path embeddings
added to the input, instead of P special tokens and a segment embedding added to K and V before RoPE (ours works
for recurrent mixers, which have no keys); the summary re-reads the paths sequentially (positions continue,
paths see earlier paths during the re-read) instead of attending to the paths' own KV caches with positions
that restart after the prompt (which only attention can do).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..models.causal_lm import CausalLM
from ..models.generation import sample_next
from ..state import State
from ..tasks.base import IGNORE


class ParaThinker(nn.Module):
    """A :class:`CausalLM` with learned path embeddings: segment 0 (prompt, summary) adds nothing, segment i in
    1..max_paths adds e_i (zero-initialised) to the token embeddings.

    ``forward(ids (B, T), segments (B, T) or int, state)`` -> logits (B, T, V), state;
    ``prefill`` -> logits of the next token (B, V), state; ``step(ids (B,), segments (B,) or int, state)``.
    """

    def __init__(self, lm: CausalLM, max_paths: int = 8):
        super().__init__()
        if not isinstance(lm, CausalLM):
            raise ValueError(f"lm must be a recurlab CausalLM, got {type(lm).__name__}")
        if not isinstance(max_paths, int) or isinstance(max_paths, bool) or max_paths < 1:
            raise ValueError(f"max_paths must be an int >= 1, got {max_paths!r}")
        self.lm, self.max_paths = lm, max_paths
        # row 0 (prompt, summary) is the padding row: zero and never trained, so segment 0 is the wrapped model
        self.path_embedding = nn.Embedding(max_paths + 1, lm.config.d_model, padding_idx=0)
        nn.init.zeros_(self.path_embedding.weight)

    def embed(self, ids: torch.Tensor, segments: torch.Tensor | int, rank: int) -> torch.Tensor:
        segments = torch.as_tensor(segments, device=ids.device).expand(ids.shape)
        if segments.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"segments must be integers, got {segments.dtype}")
        if segments.numel() and (int(segments.min()) < 0 or int(segments.max()) > self.max_paths):
            raise ValueError(f"segments must lie in [0, max_paths={self.max_paths}], got values in "
                             f"[{int(segments.min())}, {int(segments.max())}]")
        return self.lm.embed(ids, rank=rank) + self.path_embedding(segments)

    def forward(self, ids: torch.Tensor, segments: torch.Tensor | int = 0, state: State | None = None
                ) -> tuple[torch.Tensor, State]:
        x, state = self.lm.depth(self.embed(ids, segments, 2), state)
        return self.lm.readout(x), state

    def prefill(self, ids: torch.Tensor, segments: torch.Tensor | int = 0, state: State | None = None
                ) -> tuple[torch.Tensor, State]:
        x, state = self.lm.depth.prefill(self.embed(ids, segments, 2), state)
        return self.lm.readout(x), state

    def step(self, ids: torch.Tensor, segments: torch.Tensor | int, state: State) -> tuple[torch.Tensor, State]:
        x, state = self.lm.depth.step(self.embed(ids, segments, 1), state)
        return self.lm.readout(x), state


@dataclass(frozen=True)
class Markers:
    """The token ids that delimit the layout: a path's start and end, the summary's start, and the end of the
    answer (EOS)."""

    path_start: int
    path_end: int
    summary_start: int
    end: int


@dataclass
class Examples:
    """Supervised sequences of the layout: inputs, segments, labels (N, L) int64 (labels IGNORE where nothing is
    predicted, inputs 0 and segments 0 in the padding)."""

    inputs: torch.Tensor
    segments: torch.Tensor
    labels: torch.Tensor


def _sequence(parts: list[tuple[list[int], int, bool]]) -> tuple[list[int], list[int], list[int]]:
    """(tokens, segment, labelled) parts -> next-token inputs, segments and labels of their concatenation."""
    tokens = [t for p, _, _ in parts for t in p]
    segs = [s for p, s, _ in parts for _ in p]
    wanted = [w for p, _, w in parts for _ in p]
    return tokens[:-1], segs[:-1], [t if w else IGNORE for t, w in zip(tokens[1:], wanted[1:])]


def layout(prompt: list[int], paths: list[list[int]], marks: Markers) -> tuple[list[int], list[int]]:
    """The summary's context: ``prompt | S path_1 E | ... | S path_P E | U`` as (tokens, segments)."""
    tokens, segs = list(prompt), [0] * len(prompt)
    for i, path in enumerate(paths, start=1):
        body = [marks.path_start, *path, marks.path_end]
        tokens += body
        segs += [i] * len(body)
    return tokens + [marks.summary_start], segs + [0]


def sft_examples(problems: list[tuple[list[int], list[list[int]], list[int]]], marks: Markers,
                 max_paths: int) -> Examples:
    """Training sequences for problems given as (prompt, paths, summary) token lists: for each problem, one
    sequence per path (``prompt | S path_i E``, labels on path_i and E: what path i is generated from) and one
    for the summary (the whole layout, labels on the summary and the end token only)."""
    rows = []
    for n, (prompt, paths, summary) in enumerate(problems):
        if not prompt or not paths or len(paths) > max_paths:
            raise ValueError(f"problem {n}: needs a non-empty prompt and 1..max_paths={max_paths} paths, got "
                             f"{len(prompt)} prompt tokens and {len(paths)} paths")
        for i, path in enumerate(paths, start=1):
            rows.append(_sequence([(list(prompt), 0, False), ([marks.path_start], i, False),
                                   ([*path, marks.path_end], i, True)]))
        context, segs = layout(prompt, paths, marks)
        tokens = context + [*summary, marks.end]
        labelled = [False] * len(context) + [True] * (len(summary) + 1)
        rows.append((tokens[:-1], segs + [0] * len(summary),
                     [t if w else IGNORE for t, w in zip(tokens[1:], labelled[1:])]))
    width = max(len(r[0]) for r in rows)
    pad = lambda values, fill: [v + [fill] * (width - len(v)) for v in values]  # noqa: E731
    return Examples(torch.tensor(pad([r[0] for r in rows], 0)), torch.tensor(pad([r[1] for r in rows], 0)),
                    torch.tensor(pad([r[2] for r in rows], IGNORE)))


def sft_loss(model: ParaThinker, inputs: torch.Tensor, segments: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the labelled positions of :class:`Examples` rows."""
    logits, _ = model(inputs, segments)
    return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE)


@dataclass
class Thought:
    """What :func:`think` wrote: P paths (tokens without the markers), the summary, and the time of each phase
    (seconds: prompt prefill, paths, summary's read of the paths, summary decoding)."""

    paths: list[list[int]]
    summary: list[int]
    seconds: dict[str, float] = field(default_factory=dict)


def _decode(model: ParaThinker, logits: torch.Tensor, state: State, segments: torch.Tensor, stop: int,
            max_tokens: int, temperature: float, generator) -> list[list[int]]:
    """Sample rows from ``logits`` (B, V) on, one ``step`` per token, until each row wrote ``stop`` (kept out of
    the result) or max_tokens."""
    rows = [[] for _ in range(logits.shape[0])]
    done = torch.zeros(logits.shape[0], dtype=torch.bool)
    for t in range(max_tokens):
        token = sample_next(logits, temperature, generator=generator)
        for r in range(len(rows)):
            if not done[r] and int(token[r]) != stop:
                rows[r].append(int(token[r]))
        done |= token.cpu() == stop
        if bool(done.all()) or t == max_tokens - 1:
            break
        logits, state = model.step(token, segments, state)
    return rows


@torch.no_grad()
def think(model: ParaThinker, prompt: list[int] | torch.Tensor, n_paths: int, marks: Markers,
          max_path_tokens: int = 64, max_summary_tokens: int = 32, temperature: float = 0.0,
          summary_temperature: float = 0.0, seed: int | None = None,
          generator: torch.Generator | None = None) -> Thought:
    """Write ``n_paths`` reasoning paths in parallel from ``prompt`` (one batch of P rows forked from the prompt's
    state), sampled at ``temperature`` (0: greedy), then the summary after reading them all, at
    ``summary_temperature``; ``seed`` or a ``generator`` makes the sampling repeatable."""
    if not isinstance(n_paths, int) or not 1 <= n_paths <= model.max_paths:
        raise ValueError(f"n_paths must be an int in [1, max_paths={model.max_paths}], got {n_paths!r}")
    prompt = torch.as_tensor(prompt, dtype=torch.long).flatten()
    if prompt.numel() == 0:
        raise ValueError("prompt must hold at least one token")
    if generator is None and seed is not None:
        generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    seconds = {}
    try:
        start = time.perf_counter()
        _, prompt_state = model.prefill(prompt[None], 0)
        seconds["prefill"] = time.perf_counter() - start

        start = time.perf_counter()
        segments = torch.arange(1, n_paths + 1)
        logits, state = model.step(torch.full((n_paths,), marks.path_start), segments,
                                   prompt_state.select([0] * n_paths))
        paths = _decode(model, logits, state, segments, marks.path_end, max_path_tokens, temperature, generator)
        seconds["paths"] = time.perf_counter() - start

        start = time.perf_counter()
        tokens, segs = layout([], paths, marks)  # the prompt is already in prompt_state
        logits, state = model.prefill(torch.tensor([tokens]), torch.tensor([segs]), prompt_state)
        seconds["read_paths"] = time.perf_counter() - start

        start = time.perf_counter()
        summary = _decode(model, logits, state, torch.zeros(1, dtype=torch.long), marks.end, max_summary_tokens,
                          summary_temperature, generator)[0]
        seconds["summary"] = time.perf_counter() - start
    finally:
        model.train(was_training)
    return Thought(paths, summary, seconds)
