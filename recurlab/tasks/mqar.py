"""Associative-recall tasks: MQAR as specified by Zoology, plain associative recall, selective copying.

Multi-query associative recall (Arora et al. 2023, "Zoology: Measuring and Improving Recall in
Efficient Language Models", sec. 3.1; zoology/data/multiquery_ar.py). With vocabulary V and
``num_kv_pairs`` = n, each example of length L is

    k_1 v_1 k_2 v_2 ... k_n v_n | 0 0 k_a 0 0 k_b ... 0           (the query region, L - 2n tokens)

keys are n distinct ids from [1, V/2), values n distinct ids from [V/2, V). Every
key is queried exactly once in the region after the context: the query region
has (L - 2n) / 2 slots, key i goes to slot g drawn without replacement with
probability ∝ g^(a-1) (a = ``power_a`` = 0.01: most queries come soon after the
context), and sits at position 2n + 2g. The label at a query position is the
value bound to that key; every other label is -100 (IGNORE). The model sees
inputs = sequence[:-1] and predicts labels = sequence[1:], so inputs and labels
have length L.

Generation is vectorised with numpy and fully determined by ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .base import IGNORE, SequenceTask


@dataclass(frozen=True)
class MQARConfig:
    """One MQAR setting (Zoology's defaults: V = 8192, a = 0.01)."""

    seq_len: int = 64
    num_kv_pairs: int = 4
    vocab_size: int = 8192
    power_a: float = 0.01
    random_non_queries: bool = False  # fill non-query slots with random ids instead of 0

    def validate(self) -> None:
        if self.seq_len % 2:
            raise ValueError(f"seq_len must be even, got {self.seq_len}")
        if self.num_kv_pairs < 1 or 4 * self.num_kv_pairs > self.seq_len:
            raise ValueError(f"num_kv_pairs must be in [1, seq_len / 4 = {self.seq_len // 4}] so that every key "
                             f"fits a query slot after the context, got {self.num_kv_pairs}")
        if self.vocab_size // 2 - 1 < self.num_kv_pairs:
            raise ValueError(f"vocab_size={self.vocab_size} is too small for {self.num_kv_pairs} distinct keys")
        if not 0 < self.power_a <= 1:
            raise ValueError(f"power_a must be in (0, 1], got {self.power_a}")


def _distinct_ids(rng: np.random.Generator, n_rows: int, k: int, low: int, high: int) -> np.ndarray:
    """(n_rows, k) ids from [low, high), distinct within each row (redraw rows with repeats)."""
    ids = rng.integers(low, high, size=(n_rows, k))
    while True:
        s = np.sort(ids, axis=1)
        bad = np.nonzero((s[:, 1:] == s[:, :-1]).any(axis=1))[0]
        if bad.size == 0:
            return ids
        ids[bad] = rng.integers(low, high, size=(bad.size, k))


def multi_query_associative_recall(num_examples: int, config: MQARConfig = MQARConfig(), seed: int = 0) -> SequenceTask:
    """``num_examples`` MQAR sequences (inputs and labels (N, seq_len)); see the module docstring."""
    config.validate()
    rng = np.random.default_rng(seed)
    L, n, V = config.seq_len, config.num_kv_pairs, config.vocab_size
    context = 2 * n
    keys = _distinct_ids(rng, num_examples, n, 1, V // 2)
    values = _distinct_ids(rng, num_examples, n, V // 2, V)
    sequence = np.zeros((num_examples, L + 1), dtype=np.int64)
    sequence[:, 0:context:2] = keys
    sequence[:, 1:context:2] = values
    # query slots: n distinct of (L - 2n) / 2, P(g) ∝ g^(a-1) (g = 1..slots), by the Gumbel top-k trick
    slots = (L - context) // 2
    g = np.arange(1, slots + 1, dtype=np.float64)
    log_p = (config.power_a - 1) * np.log(g)
    scores = log_p + rng.gumbel(size=(num_examples, slots))
    gaps = np.argsort(-scores, axis=1)[:, :n]  # 0-based slot of each key, in key order
    positions = context + 2 * gaps
    rows = np.arange(num_examples)[:, None]
    if config.random_non_queries:
        sequence[:, context:] = rng.integers(1, V, size=(num_examples, L + 1 - context))
    sequence[rows, positions] = keys
    labels = np.full((num_examples, L + 1), IGNORE, dtype=np.int64)
    labels[rows, positions + 1] = values
    return SequenceTask(torch.from_numpy(sequence[:, :-1].copy()), torch.from_numpy(labels[:, 1:].copy()), V)


def associative_recall(num_examples: int, seq_len: int = 64, vocab_size: int = 64, seed: int = 0) -> SequenceTask:
    """Plain associative recall: key-value pairs, then one of the keys; predict its value.

    n = (seq_len - 1) // 2 pairs k_i v_i fill the first 2n positions (keys distinct,
    from [1, V/2); values from [V/2, V)), any position left is blank (0), and the
    last input is one of the keys. Only the last position is labelled: the value
    bound to that key.
    """
    n = (seq_len - 1) // 2
    if n < 1:
        raise ValueError(f"seq_len must be >= 3 (a pair, then the query), got {seq_len}")
    if vocab_size // 2 - 1 < n:
        raise ValueError(f"vocab_size={vocab_size} gives fewer than n={n} distinct keys in [1, vocab_size / 2)")
    rng = np.random.default_rng(seed)
    keys = _distinct_ids(rng, num_examples, n, 1, vocab_size // 2)
    values = rng.integers(vocab_size // 2, vocab_size, size=(num_examples, n))
    inputs = np.zeros((num_examples, seq_len), dtype=np.int64)
    inputs[:, 0 : 2 * n : 2] = keys
    inputs[:, 1 : 2 * n : 2] = values
    which = rng.integers(0, n, size=num_examples)
    rows = np.arange(num_examples)
    inputs[:, -1] = keys[rows, which]
    labels = np.full((num_examples, seq_len), IGNORE, dtype=np.int64)
    labels[:, -1] = values[rows, which]
    return SequenceTask(torch.from_numpy(inputs), torch.from_numpy(labels), vocab_size)


def selective_copying(num_examples: int, seq_len: int = 64, num_tokens: int = 8, vocab_size: int = 16,
                      seed: int = 0) -> SequenceTask:
    """Selective copying (Gu & Dao 2023, "Mamba", sec. 3.1): copy the data tokens in order, skipping blanks.

    The first seq_len - num_tokens positions hold num_tokens data tokens (ids from
    [2, V)) at random positions among blanks (0); the last num_tokens positions are
    markers (1). The model must emit the data tokens in order, starting right after
    the scattered region: the label at position region - 1 + i is data token i.
    """
    region = seq_len - num_tokens
    if num_tokens < 1 or region < num_tokens:
        raise ValueError(f"need 1 <= num_tokens <= seq_len / 2, got num_tokens={num_tokens}, seq_len={seq_len}")
    if vocab_size < 3:
        raise ValueError("vocab_size must be >= 3 (blank, marker and at least one data token)")
    rng = np.random.default_rng(seed)
    data = rng.integers(2, vocab_size, size=(num_examples, num_tokens))
    slots = np.sort(np.argsort(rng.random((num_examples, region)), axis=1)[:, :num_tokens], axis=1)
    rows = np.arange(num_examples)[:, None]
    inputs = np.zeros((num_examples, seq_len), dtype=np.int64)
    inputs[rows, slots] = data
    inputs[:, region:] = 1
    labels = np.full((num_examples, seq_len), IGNORE, dtype=np.int64)
    labels[:, region - 1 : seq_len - 1] = data
    return SequenceTask(torch.from_numpy(inputs), torch.from_numpy(labels), vocab_size)
