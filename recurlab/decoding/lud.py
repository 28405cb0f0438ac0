"""Lexical Unit Decoding (Sun et al. 2024, "Decoding at the Speed of Thought: Harnessing Parallel Decoding of
Lexical Units for LLMs", LREC-COLING 2024, arXiv:2405.15208).

A trained language model predicts many tokens with near certainty once a word or phrase has begun. LUD
calls such a run of tokens a *lexical unit*, fine-tunes the model to emit a unit's tokens in one pass
through placeholder tokens, and at decoding accepts the leading run of those parallel predictions that
the model is confident about. No draft model, no change of architecture: one extra vocabulary entry.

    units = mark_units(base, train_ids, alpha=0.9, max_unit=4)           # 1. which spans are units
    model, placeholder = extend_vocabulary(base)                          # 2. vocabulary + [PAD]
    task = lud_training_task(train_ids, units, placeholder, seq_len=64)   # 2. unit examples + plain LM
    ...fine-tune model on task with recurlab.train.Trainer...             # 3. (train_lud does 1-3)
    ids, stats = lud_generate(model, prompt, 64, max_parallel=4, beta=0.9)  # 4. decode

1. **Marking.** A teacher-forced pass of the trained model gives p(x_i | x_<i) for every position; position
   i is *confident* when that exceeds ``alpha``. Left to right, a unit starts at any token x_s and takes
   the maximal run of confident tokens after it, at most ``max_unit`` tokens in all.
2. **Layout.** The vocabulary gets one token more, the placeholder (id = the old vocabulary size). For a
   unit x_s..x_{s+m-1} (m >= 2) after c tokens of context an example of length L is

       inputs = x_{s-c}   .. x_{s-1}  PAD x (m - 1)       PAD x (L - c - m + 1)   (filler)
       labels = x_{s-c+1} .. x_s      x_{s+1} .. x_{s+m-1}  IGNORE x (L - c - m + 1)

   i.e. the context keeps its next-token labels, x_{s-1}'s position predicts x_s and the j-th
   placeholder predicts x_{s+j}; c is drawn from [1, L - m + 1] so placeholders are trained at every
   position (``vary_context``; c = L - m + 1 without filler otherwise). A fraction of ordinary
   language-modelling windows is mixed in so the model keeps predicting the next token.
3. **Decoding.** A pass feeds the committed-but-unfed tokens and ``max_parallel - 1`` placeholders in
   one call: the last real position gives u_1, placeholder j gives u_{j+1}. u_1 is always taken; then
   u_2, u_3, .. while each one's probability exceeds ``beta`` (and, with ``repetition_control``, while
   it differs from the token before it). The placeholders must not stay in the model's state: the state
   is rebuilt by re-running the real tokens (``verify(...).state_after(m)``), which works for attention,
   recurrences and convolutions alike.

The official repository (github.com/tjunlp-lab/Lexical-Unit-Decoding-LUD-) holds only a README, so
the layout above, the defaults of alpha and beta and the repetition rule are our reading of the paper,
not checked against its code (docs/lud.md).
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import torch

from ..models import CausalLM, ModelConfig
from ..state import State
from ..tasks.base import SequenceTask
from .common import DecodeStats, check_args, draw, prefill, sampling_probs
from .verify import verify

ALPHA = 0.9  # marking: a token is confident when the trained model gives it probability > ALPHA
BETA = 0.9  # decoding: a parallel token is accepted while its probability > BETA
MAX_UNIT = 4  # the longest lexical unit, and the tokens one decoding pass can emit (the paper's k)
LUD_FRACTION = 0.5  # share of lexical-unit examples in the fine-tuning mixture (the rest: plain LM windows)


# ---------------------------------------------------------------------------------------------- 1. marking


@dataclasses.dataclass
class LexicalUnits:
    """A partition of a token stream of ``n_tokens`` into lexical units.

    starts (U,) int64: each unit's first position, increasing, starts[0] = 0.
    lengths (U,) int64: each unit's length in [1, max_unit]; lengths.sum() == n_tokens."""

    starts: torch.Tensor
    lengths: torch.Tensor
    n_tokens: int

    def histogram(self) -> dict[int, int]:
        """Number of units of each length {length: count}."""
        return dict(sorted(Counter(self.lengths.tolist()).items()))

    def fraction_in_units(self, min_length: int = 2) -> float:
        """The fraction of tokens inside units of at least ``min_length`` tokens."""
        inside = int(self.lengths[self.lengths >= min_length].sum())
        return inside / max(self.n_tokens, 1)

    def report(self) -> dict:
        """What the marking found: unit-length histogram, the fraction of tokens in units of length >= 2,
        and the mean unit length (tokens per pass an ideal LUD model would reach on this text)."""
        return {"tokens": self.n_tokens, "units": len(self.lengths),
                "length_histogram": {str(k): v for k, v in self.histogram().items()},
                "fraction_in_units_of_2_or_more": self.fraction_in_units(2),
                "mean_unit_length": self.n_tokens / max(len(self.lengths), 1)}


def units_from_confidence(confident: torch.Tensor, max_unit: int = MAX_UNIT) -> LexicalUnits:
    """Greedy left-to-right partition of a stream into lexical units.

    confident (N,) bool: whether position i was predicted with probability > alpha. A unit starts at any
    token and takes the confident tokens after it while they last, at most ``max_unit`` tokens in all.
    (Whether the first token of a unit was itself confident does not matter.)"""
    if not isinstance(confident, torch.Tensor) or confident.dim() != 1 or confident.dtype != torch.bool:
        got = f"{tuple(confident.shape)} {confident.dtype}" if isinstance(confident, torch.Tensor) else type(confident).__name__
        raise ValueError(f"confident must be a (N,) bool tensor, got {got}")
    if not isinstance(max_unit, int) or max_unit < 1:
        raise ValueError(f"max_unit must be an int >= 1, got {max_unit!r}")
    flags, n = confident.tolist(), confident.shape[0]
    starts, lengths, s = [], [], 0
    while s < n:
        m = 1
        while m < max_unit and s + m < n and flags[s + m]:
            m += 1
        starts.append(s)
        lengths.append(m)
        s += m
    return LexicalUnits(torch.tensor(starts, dtype=torch.long), torch.tensor(lengths, dtype=torch.long), n)


@torch.no_grad()
def token_confidence(model, ids: torch.Tensor, window: int = 256, batch_size: int = 16) -> torch.Tensor:
    """p(x_i | x_<i) under ``model`` for every position of a stream ids (N,) -> (N,) float32 (on the CPU).

    Teacher-forced over non-overlapping windows of ``window`` tokens, each from a fresh state (the
    context of a position is its window's earlier tokens); the first position of each window has no
    context and gets probability 0 (it always starts a unit)."""
    _check_ids(ids, "ids")
    if not isinstance(window, int) or window < 2:
        raise ValueError(f"window must be an int >= 2, got {window!r}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    n = ids.shape[0]
    padded = torch.cat([ids, ids.new_zeros((-n) % window)]).view(-1, window)
    probs = torch.zeros(padded.shape, dtype=torch.float32)
    for lo in range(0, padded.shape[0], batch_size):
        rows = padded[lo:lo + batch_size].to(device)
        logits, _ = model(rows[:, :-1])
        p = torch.softmax(logits.float(), -1).gather(-1, rows[:, 1:, None])[..., 0]
        probs[lo:lo + batch_size, 1:] = p.cpu()
    model.train(was_training)
    return probs.flatten()[:n]


def mark_units(model, ids: torch.Tensor, alpha: float = ALPHA, max_unit: int = MAX_UNIT, window: int = 256,
               batch_size: int = 16) -> LexicalUnits:
    """Lexical units of a token stream ids (N,) under a trained model: confidence > ``alpha`` (see
    :func:`token_confidence` and :func:`units_from_confidence`)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
    return units_from_confidence(token_confidence(model, ids, window, batch_size) > alpha, max_unit)


# ---------------------------------------------------------------------------------------------- 2. layout


def extend_vocabulary(model: CausalLM) -> tuple[CausalLM, int]:
    """A copy of ``model`` with one more vocabulary entry, the placeholder: (new model, placeholder id).

    The placeholder's id is the old vocab_size. Every other parameter is copied, so the logits of the old
    tokens are unchanged; the placeholder's embedding row (and head row, when the head is untied) is the
    mean of the old rows. Decoding never emits the placeholder (:func:`lud_generate` masks its logit)."""
    if not isinstance(model, CausalLM):
        raise ValueError(f"model must be a CausalLM, got {type(model).__name__}")
    placeholder = model.config.vocab_size
    config = ModelConfig.from_dict({**model.config.to_dict(), "vocab_size": placeholder + 1})
    weight = next(model.parameters())
    extended = CausalLM(config).to(device=weight.device, dtype=weight.dtype)
    state = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    for name in ("embedding.weight", "head.weight"):
        if name in state:
            rows = state[name]
            state[name] = torch.cat([rows, rows.mean(0, keepdim=True)])
    extended.load_state_dict(state)
    extended.train(model.training)
    return extended, placeholder


def lud_examples(ids: torch.Tensor, units: LexicalUnits, placeholder_id: int, seq_len: int,
                 context_labels: bool = True, vary_context: bool = True, seed: int = 0) -> SequenceTask:
    """One example (inputs, labels) (seq_len,) per unit x_s .. x_{s+m-1} of ``ids`` (N,) with m >= 2 and s >= 1:

        inputs = ids[s-c : s]    + [placeholder] * (m - 1) + [placeholder] * (L - c - m + 1)
        labels = ids[s-c+1 : s+m]                          + [IGNORE]      * (L - c - m + 1)

    (L = seq_len, c = context length.) Position s - 1 predicts x_s and placeholder j predicts x_{s+j}; the
    context positions keep their next-token labels (``context_labels=False``: IGNORE). What follows the
    unit is filler that no label looks at (a causal model never sees it from the labelled positions).

    vary_context=True: c is drawn uniformly from [1, min(s, L - m + 1)] (seeded), so the placeholders are
    met at every position a decoded prompt puts them (attention's positions, a recurrence's state after
    a short text); False: c = L - m + 1 (no filler), and units with less context before them are skipped.
    vocab_size = placeholder_id + 1."""
    from ..tasks.base import IGNORE

    _check_ids(ids, "ids")
    if units.n_tokens != ids.shape[0]:
        raise ValueError(f"units were marked on {units.n_tokens} tokens but ids has {ids.shape[0]}")
    if not isinstance(seq_len, int) or seq_len < 2:
        raise ValueError(f"seq_len must be an int >= 2, got {seq_len!r}")
    g = torch.Generator().manual_seed(seed)
    inputs, labels = [], []
    for s, m in zip(units.starts.tolist(), units.lengths.tolist()):
        longest = seq_len - m + 1
        if m < 2 or s < 1 or m > seq_len or (not vary_context and s < longest):
            continue
        c = int(torch.randint(1, min(s, longest) + 1, (), generator=g)) if vary_context else longest
        filler = seq_len - c - m + 1
        inputs.append(torch.cat([ids[s - c:s], ids.new_full((m - 1 + filler,), placeholder_id)]))
        row = torch.cat([ids[s - c + 1:s + m], ids.new_full((filler,), IGNORE)])
        if not context_labels:
            row[:c - 1] = IGNORE
        labels.append(row)
    if not inputs:
        empty = torch.zeros(0, seq_len, dtype=torch.long)
        return SequenceTask(empty, empty.clone(), placeholder_id + 1)
    return SequenceTask(torch.stack(inputs), torch.stack(labels), placeholder_id + 1)


def lud_training_task(ids: torch.Tensor, units: LexicalUnits, placeholder_id: int, seq_len: int,
                      lud_fraction: float = LUD_FRACTION, seed: int = 0, context_labels: bool = True,
                      vary_context: bool = True) -> SequenceTask:
    """The fine-tuning mixture: every lexical-unit example of :func:`lud_examples`, and ordinary
    language-modelling windows of ``ids`` (random offsets, seeded) so that unit examples are
    ``lud_fraction`` of all examples (context_labels, vary_context: as :func:`lud_examples`). Raises ValueError when the
    text has no unit of length >= 2."""
    if not 0 < lud_fraction <= 1:
        raise ValueError(f"lud_fraction must lie in (0, 1], got {lud_fraction!r}")
    unit_task = lud_examples(ids, units, placeholder_id, seq_len, context_labels, vary_context, seed)
    if len(unit_task) == 0:
        raise ValueError("no lexical unit of length >= 2 with enough context: lower alpha, raise max_unit, "
                         "give more text or a better-trained model")
    n_lm = round(len(unit_task) * (1 - lud_fraction) / lud_fraction)
    if ids.shape[0] < seq_len + 1:
        raise ValueError(f"ids has {ids.shape[0]} tokens, fewer than seq_len + 1 = {seq_len + 1}")
    g = torch.Generator().manual_seed(seed)
    offsets = torch.randint(0, ids.shape[0] - seq_len, (n_lm,), generator=g)
    windows = torch.stack([ids[o:o + seq_len + 1] for o in offsets.tolist()]) if n_lm else \
        torch.zeros(0, seq_len + 1, dtype=torch.long)
    return SequenceTask(torch.cat([unit_task.inputs, windows[:, :-1]]), torch.cat([unit_task.labels, windows[:, 1:]]),
                        placeholder_id + 1)


# ---------------------------------------------------------------------------------------------- 3. fine-tuning


def train_lud(base_model: CausalLM, train_ids: torch.Tensor, out_dir: str | Path | None = None,
              val_ids: torch.Tensor | None = None, steps: int = 300, alpha: float = ALPHA, max_unit: int = MAX_UNIT,
              seq_len: int = 64, batch_size: int = 16, lr: float = 1e-3, lud_fraction: float = LUD_FRACTION,
              context_labels: bool = True, eval_every: int = 100, seed: int = 0, progress: bool = True,
              resume: bool = False, overwrite: bool = False) -> tuple[CausalLM, dict]:
    """Mark lexical units with ``base_model`` on ``train_ids`` (N,), build the mixture, fine-tune a copy with one
    more vocabulary entry (the placeholder, id = base vocab_size) with :class:`recurlab.train.Trainer`.

    Returns (the fine-tuned model in eval mode, the report: marking statistics, examples, training summary).
    With ``out_dir`` the run is a Trainer run folder (checkpoint, metrics; ``resume``/``overwrite`` as
    ``Trainer.fit``) and the model is saved there with ``save_pretrained`` next to ``lud_report.json``.
    The base model is not changed."""
    from ..files import write_json
    from ..train import Trainer, TrainConfig

    _check_ids(train_ids, "train_ids")
    units = mark_units(base_model, train_ids, alpha, max_unit, window=max(seq_len, 2))
    model, placeholder = extend_vocabulary(base_model)
    train_task = lud_training_task(train_ids, units, placeholder, seq_len, lud_fraction, seed, context_labels)
    val_task = None
    if val_ids is not None:
        val_units = mark_units(base_model, val_ids, alpha, max_unit, window=max(seq_len, 2))
        val_task = lud_training_task(val_ids, val_units, placeholder, seq_len, lud_fraction, seed + 1,
                                     context_labels)
    config = TrainConfig(steps=steps, batch_size=min(batch_size, len(train_task)), lr=lr,
                         warmup_steps=min(50, steps // 10), eval_every=min(eval_every, steps), eval_batch_size=64,
                         seed=seed, precision="fp32", progress=progress)
    model.train()
    summary = Trainer(model, train_task, val_task, config, out_dir).fit(resume=resume, overwrite=overwrite)
    model.eval()
    report = {"alpha": alpha, "max_unit": max_unit, "placeholder_id": placeholder, "marking": units.report(),
              "examples": len(train_task), "unit_examples": int((train_task.inputs == placeholder).any(1).sum()),
              "lud_fraction": lud_fraction, "seq_len": seq_len, "context_labels": context_labels, "train": summary}
    if out_dir is not None:
        model.save_pretrained(Path(out_dir) / "model")
        write_json(Path(out_dir) / "lud_report.json", report)
    return model, report


# ---------------------------------------------------------------------------------------------- 4. decoding


@dataclasses.dataclass
class LudPass:
    """One decoding pass: the tokens it committed (1..max_parallel), and the model's state after the text
    committed before them, rebuilt without placeholders (the next pass feeds ``tokens`` from it)."""

    tokens: list[int]
    state: State


@torch.no_grad()
def lud_passes(model, input_ids: torch.Tensor, max_new_tokens: int, max_parallel: int = MAX_UNIT,
               beta: float = BETA, temperature: float = 0.0, top_k: int | None = None,
               generator: torch.Generator | None = None, placeholder_id: int | None = None,
               repetition_control: bool = True, stats: DecodeStats | None = None) -> Iterator[LudPass]:
    """The passes of :func:`lud_generate`, one :class:`LudPass` at a time (same arguments; a generator,
    so bad arguments raise at the first ``next``). ``stats``, if given, is updated in place."""
    check_args(input_ids, max_new_tokens, temperature, top_k)
    placeholder_id = _check_lud_args(model, max_parallel, beta, placeholder_id)
    stats = stats if stats is not None else DecodeStats()
    device = input_ids.device
    state = prefill(model, input_ids)
    unfed, new = input_ids[0, -1:].tolist(), 0  # committed tokens not yet in the state
    while new < max_new_tokens:
        k = min(max_parallel, max_new_tokens - new)
        tokens = torch.tensor([unfed + [placeholder_id] * (k - 1)], device=device)
        v = verify(model, state, tokens)
        stats.target_calls += 1
        logits = v.logits[0, len(unfed) - 1:].clone()  # (k, V): u_1 .. u_k
        logits[:, placeholder_id] = float("-inf")  # the placeholder is never an output
        accepted = _accept(logits, beta, temperature, top_k, generator, repetition_control)
        state = v.state_after(len(unfed))  # the real tokens only: a KV-cache rewind, else a re-run (unless k == 1)
        stats.target_rerun_tokens += v.rerun_tokens
        stats.target_reruns += v.reruns
        stats.target_rewinds += v.rewound
        stats.target_prefix_states += v.from_prefix
        stats.accepted.append(len(accepted) - 1)
        new += len(accepted)
        unfed = accepted
        yield LudPass(accepted, state)


def lud_generate(model, input_ids: torch.Tensor, max_new_tokens: int, max_parallel: int = MAX_UNIT,
                 beta: float = BETA, temperature: float = 0.0, top_k: int | None = None,
                 generator: torch.Generator | None = None, placeholder_id: int | None = None,
                 repetition_control: bool = True) -> tuple[torch.Tensor, DecodeStats]:
    """Decode ``max_new_tokens`` after the prompt input_ids (1, T) with an LUD-tuned model: (ids (1, T + n), stats).

    Each pass is one model call over [the tokens committed by the last pass, placeholder x (k - 1)]
    (k = max_parallel, fewer at the end): u_1 (from the last real position) is always accepted, then
    u_2, u_3, .. while each one's probability exceeds ``beta`` -- under the sampling distribution
    (temperature, top_k), and at temperature 0 (greedy: u = argmax) the softmax probability of the
    argmax. With ``repetition_control`` a parallel span stops before a token equal to the one before it.
    Then the state is rebuilt without placeholders by re-running the committed tokens.

    beta > 1 or max_parallel = 1 is plain decoding: one token per pass (greedy: ``model.generate`` at
    temperature 0). placeholder_id: default the model's last vocabulary id (as :func:`extend_vocabulary`).

    stats (:class:`DecodeStats`): target_calls = passes (model calls, the re-runs not counted);
    accepted[i] = tokens of pass i beyond its first (tokens_per_call = tokens per pass);
    target_rerun_tokens = tokens re-run to rebuild states."""
    stats = DecodeStats()
    out = input_ids[0].tolist()
    for step in lud_passes(model, input_ids, max_new_tokens, max_parallel, beta, temperature, top_k, generator,
                           placeholder_id, repetition_control, stats):
        out += step.tokens
    return torch.tensor([out], device=input_ids.device), stats


def _accept(logits: torch.Tensor, beta: float, temperature: float, top_k: int | None,
            generator: torch.Generator | None, repetition_control: bool) -> list[int]:
    """The tokens a pass commits from its logits (k, V): u_1 always, then the confident leading run."""
    probs = sampling_probs(logits, temperature, top_k)  # (k, V)
    confidence = torch.softmax(logits.double(), -1) if temperature == 0 else probs
    accepted = []
    for j in range(logits.shape[0]):
        token = int(probs[j].argmax()) if temperature == 0 else draw(probs[j], generator)
        if j > 0 and (float(confidence[j, token]) <= beta or (repetition_control and token == accepted[-1])):
            break
        accepted.append(token)
    return accepted


def _check_lud_args(model, max_parallel, beta, placeholder_id) -> int:
    vocab = model.config.vocab_size
    if not isinstance(max_parallel, int) or max_parallel < 1:
        raise ValueError(f"max_parallel must be an int >= 1 (tokens per pass at most), got {max_parallel!r}")
    if not isinstance(beta, (int, float)) or math.isnan(beta) or beta < 0:
        raise ValueError(f"beta must be a number >= 0 (> 1 turns parallel acceptance off), got {beta!r}")
    placeholder_id = vocab - 1 if placeholder_id is None else placeholder_id
    if not isinstance(placeholder_id, int) or not 0 <= placeholder_id < vocab:
        raise ValueError(f"placeholder_id must be an int in [0, vocab_size={vocab}), got {placeholder_id!r}")
    return placeholder_id


def _check_ids(ids, name: str) -> None:
    if not isinstance(ids, torch.Tensor) or ids.dim() != 1 or ids.dtype != torch.long or ids.numel() < 1:
        got = f"{tuple(ids.shape)} {ids.dtype}" if isinstance(ids, torch.Tensor) else type(ids).__name__
        raise ValueError(f"{name} must be a non-empty (N,) int64 tensor of token ids, got {got}")


# ---------------------------------------------------------------------------------------------- quality


@torch.no_grad()
def continuation_bits_per_byte(reference, prompt: torch.Tensor, continuation: torch.Tensor,
                               bytes_per_token: float = 1.0) -> float:
    """Bits per byte of ``continuation`` (1, N) after ``prompt`` (1, T) under ``reference``:
    -sum log2 p(c_i | prompt, c_<i) / (N x bytes_per_token). For byte tokens bytes_per_token = 1."""
    if continuation.shape[1] == 0:
        return float("nan")
    ids = torch.cat([prompt, continuation], 1)
    logits, _ = reference(ids[:, :-1])
    logp = torch.log_softmax(logits[0, prompt.shape[1] - 1:].double(), -1)
    nats = -logp.gather(-1, continuation[0, :, None]).sum()
    return float(nats) / math.log(2) / (continuation.shape[1] * bytes_per_token)


def lud_quality(base_model, lud_model, prompts: list[torch.Tensor], max_new_tokens: int,
                max_parallel: int = MAX_UNIT, beta: float = BETA, placeholder_id: int | None = None,
                bytes_per_token: float = 1.0, repetition_control: bool = True) -> dict:
    """How LUD decoding of ``lud_model`` compares with greedy decoding of ``base_model`` on ``prompts``
    (each (1, T)), at temperature 0:

    - token_match: fraction of new-token positions where LUD's output equals the base's greedy output;
    - prefix_match: mean fraction of a continuation before the first difference (after a difference the
      two texts are shifted, so token_match counts chance agreements there);
    - exact_match: fraction of prompts whose whole continuation is identical;
    - lud_bits_per_byte / greedy_bits_per_byte: bits per byte of the continuations under ``base_model``
      (the reference), averaged over prompts;
    - tokens_per_pass: generated tokens / LUD passes; passes, rerun_tokens: totals."""
    if not prompts:
        raise ValueError("prompts must hold at least one (1, T) prompt")
    matches = exact = passes = rerun = prefix = 0
    lud_bpb, greedy_bpb = [], []
    for prompt in prompts:
        greedy = base_model.generate(prompt, max_new_tokens, temperature=0)[:, prompt.shape[1]:]
        ids, stats = lud_generate(lud_model, prompt, max_new_tokens, max_parallel, beta, 0.0,
                                  placeholder_id=placeholder_id, repetition_control=repetition_control)
        lud = ids[:, prompt.shape[1]:]
        agree = (lud == greedy)[0]
        same = int(agree.sum())
        matches += same
        prefix += int(agree.long().cumprod(0).sum())
        exact += int(same == max_new_tokens)
        passes += stats.target_calls
        rerun += stats.target_rerun_tokens
        lud_bpb.append(continuation_bits_per_byte(base_model, prompt, lud, bytes_per_token))
        greedy_bpb.append(continuation_bits_per_byte(base_model, prompt, greedy, bytes_per_token))
    n = len(prompts)
    return {"prompts": n, "max_new_tokens": max_new_tokens, "token_match": matches / max(n * max_new_tokens, 1),
            "prefix_match": prefix / max(n * max_new_tokens, 1),
            "exact_match": exact / n, "lud_bits_per_byte": sum(lud_bpb) / n, "greedy_bits_per_byte": sum(greedy_bpb) / n,
            "tokens_per_pass": n * max_new_tokens / max(passes, 1), "passes": passes, "rerun_tokens": rerun}
