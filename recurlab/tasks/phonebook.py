"""Phonebook lookup: retrieval from a long context, in bytes.

The phonebook task of Jelassi et al. 2024 ("Repeat After Me: Transformers are Better than State Space Models at
Copying"), which SambaY (Ren et al. 2025) uses to compare long-context retrieval: a list of names and numbers,
then a name to look up. A sequence of ``context_len`` bytes here is

    [spaces] book [queries]
    book     n_entries lines ``name:number\\n``: distinct random names (letters a-z, A-Z), random digits
    queries  n_queries lines ``name?number\\n``, each a distinct name of the book, in random order

and the labels are the digits of every query's number (each predicted from the bytes before it; ``IGNORE``
elsewhere), so a model must find the name in the book and copy the number after it. The book fills the
context (as many entries as fit; spaces at the start take the rest), so the longer the context, the more
entries there are to tell apart and the farther back an entry can be. A fixed-size state must hold every
entry to answer: a pure recurrent model's accuracy falls as the book grows, attention's need not.

A query is answered when all its digits are right (:func:`query_accuracy`); with teacher forcing that is
exactly what greedy decoding of the number would produce. Chance is 10 ** -number_len.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .base import IGNORE, SequenceTask

LETTERS = np.frombuffer(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", dtype=np.uint8)  # of names
DIGITS = np.frombuffer(b"0123456789", dtype=np.uint8)
ENTRY_MARK, QUERY_MARK, NEWLINE, SPACE = ord(":"), ord("?"), ord("\n"), ord(" ")


@dataclass(frozen=True)
class PhonebookConfig:
    """context_len: bytes per sequence; name_len / number_len: letters per name, digits per number;
    n_queries: lookups per sequence (each one of the book's names)."""

    context_len: int = 1024
    name_len: int = 2
    number_len: int = 3
    n_queries: int = 8

    @property
    def line_len(self) -> int:
        """Bytes of one entry or query: name, mark, number, newline."""
        return self.name_len + self.number_len + 2

    @property
    def n_entries(self) -> int:
        """Entries in each book: as many as fit before the queries (the sequence holds context_len + 1 bytes,
        its inputs the first context_len)."""
        return (self.context_len + 1) // self.line_len - self.n_queries

    def validate(self) -> None:
        for name in ("context_len", "name_len", "number_len", "n_queries"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_entries < self.n_queries:
            raise ValueError(f"context_len={self.context_len} holds {self.n_entries} entries of {self.line_len} bytes "
                             f"besides the queries, fewer than n_queries={self.n_queries}: lengthen the context or "
                             f"ask fewer queries")
        if len(LETTERS) ** self.name_len < self.n_entries:
            raise ValueError(f"name_len={self.name_len} gives {len(LETTERS) ** self.name_len} distinct names, fewer than the "
                             f"{self.n_entries} entries of a {self.context_len}-byte book: lengthen the names")


def _lines(names: np.ndarray, numbers: np.ndarray, mark: int, name_len: int) -> np.ndarray:
    """(N, n) name indices and (N, n, number_len) digits -> (N, n, line_len) bytes ``name<mark>number\\n``."""
    base = len(LETTERS)
    letters = (names[..., None] // base ** np.arange(name_len - 1, -1, -1)) % base
    n_rows, n = names.shape
    marks = np.full((n_rows, n, 1), mark, dtype=np.uint8)
    ends = np.full((n_rows, n, 1), NEWLINE, dtype=np.uint8)
    return np.concatenate([LETTERS[letters], marks, DIGITS[numbers], ends], axis=-1)


def phonebook(num_examples: int, config: PhonebookConfig = PhonebookConfig(), seed: int = 0) -> SequenceTask:
    """``num_examples`` phonebook sequences: inputs and labels (N, context_len) over 256 byte ids (see the module
    docstring). The same (config, seed) always gives the same sequences."""
    config.validate()
    if num_examples < 1:
        raise ValueError(f"num_examples must be >= 1, got {num_examples}")
    rng = np.random.default_rng(seed)
    n, q, width = config.n_entries, config.n_queries, config.line_len
    names = np.stack([rng.choice(len(LETTERS) ** config.name_len, n, replace=False) for _ in range(num_examples)])
    numbers = rng.integers(0, 10, size=(num_examples, n, config.number_len))
    asked = np.argsort(rng.random((num_examples, n)), axis=1)[:, :q]  # q distinct entries per book, random order
    rows = np.arange(num_examples)[:, None]
    book = _lines(names, numbers, ENTRY_MARK, config.name_len).reshape(num_examples, -1)
    queries = _lines(names[rows, asked], numbers[rows, asked], QUERY_MARK, config.name_len).reshape(num_examples, -1)
    pad = config.context_len + 1 - (n + q) * width
    sequence = np.concatenate([np.full((num_examples, pad), SPACE, dtype=np.uint8), book, queries], axis=1)
    sequence = torch.from_numpy(sequence.astype(np.int64))
    labels = torch.full((num_examples, config.context_len + 1), IGNORE, dtype=torch.long)
    start = pad + n * width  # the first query's first byte
    for k in range(q):  # the digits of query k, after its name and mark
        digits = slice(start + k * width + config.name_len + 1, start + k * width + config.name_len + 1 + config.number_len)
        labels[:, digits] = sequence[:, digits]
    return SequenceTask(sequence[:, :-1].contiguous(), labels[:, 1:].contiguous(), 256)


def query_accuracy(predictions: torch.Tensor, labels: torch.Tensor, number_len: int) -> torch.Tensor:
    """Per sequence, the fraction of queries whose every digit is predicted: predictions and labels (N, L) token
    ids (labels IGNORE off the digits, as :func:`phonebook` makes them). Returns (N,) float."""
    if predictions.shape != labels.shape:
        raise ValueError(f"predictions {tuple(predictions.shape)} and labels {tuple(labels.shape)} must match")
    mask = labels != IGNORE
    per_row = mask.sum(1)
    if (per_row != per_row[0]).any() or int(per_row[0]) % number_len:
        raise ValueError(f"every row must label the same number of queries of number_len={number_len} digits")
    hits = (predictions == labels)[mask].view(labels.shape[0], -1, number_len)
    return hits.all(-1).float().mean(-1)
