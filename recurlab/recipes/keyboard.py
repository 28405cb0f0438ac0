"""Keyboard decoding: correct (and complete) mistyped sentences with a char-CNN + GRU encoder-decoder.

Paper: Shaona Ghosh and Per Ola Kristensson, "Neural Networks for Text Correction and Completion in
Keyboard Decoding" (2017). No official code; this module rebuilds the model from the paper's description
with recurlab's parts and trains it offline on synthetic typos (:mod:`recurlab.recipes.typos`) injected
into short sentences of the King James Bible (the default corpus).

Model (a sentence of S noisy words w_1..w_S, each a string of characters):

    word vectors   CNN(w) = W_p [max_p tanh(conv_2(E c))_p ; max_p tanh(conv_3(E c))_p ; max_p tanh(conv_4(E c))_p]
                   (c: the characters of w framed by begin/end-of-word marks; E: character embedding;
                   conv_k: 1-d convolution of width k; max over the window positions inside the word)
    encoder        h_1..h_S = GRU_enc(x_1..x_S),  x_i = CNN(w_i) + P_i      recurlab ``gru`` token mixer (forward)
    decoder        s_0 = h_S,   s_t = GRU_dec(s_{t-1}, e(y_{t-1}) + P_t)  recurlab ``gru`` token mixer
                   (``forward`` over the whole target under teacher forcing, ``step`` when decoding greedily)
    attention      α_ti = softmax_i(s_tᵀ W_a h_i),   c_t = Σ_i α_ti h_i            (Luong et al. 2015, "general")
    output         õ_t = tanh(W_c [c_t ; s_t]),   p(y_t = v | y_<t, w) = softmax_v((u_v + CNN(v))ᵀ õ_t + b_v)

Two additions of ours, both switchable in :class:`Config` and measured in docs/recipes/keyboard.md: word
position embeddings P (``positions``), and a spelling-aware output layer whose row for word v is a free
vector u_v (initialised at 0) plus the same char-CNN applied to v's spelling (``spelling_output``; off,
the output is the paper's plain softmax(W_o õ_t + b)). The second is what makes our CPU budget enough: a
noisy word's vector is close to its clean word's row from the first step (measured: 93% validation word
accuracy after 400 steps with it, 47% after 1000 steps without it and without P).

The output vocabulary is the training split's most frequent words plus <pad>, <s>, </s> and <unk>.
Training minimises the cross-entropy of the clean sentence under teacher forcing; the test decodes
greedily until </s>. For completion, a last word that is still being typed (the user has not pressed
space) is encoded without its end-of-word mark, and the decoder must output the whole word.

Choices where the paper leaves details open (see docs/recipes/keyboard.md): Luong's attention computed
after the recurrence, which lets teacher-forced training run the decoder GRU as one parallel call (the
paper's exact attention form is unverified); tanh before max-pooling as in Kim et al. 2016 ("Character-
Aware Neural Language Models"); the decoder starts from the encoder's last state; dropout on word vectors.

Metrics, on held-out sentences: word accuracy (position by position against the reference), character
error rate (Levenshtein distance between the space-joined output and reference, summed over sentences,
over the reference's characters) and sentence accuracy (exact match); for the model, for copying the
noisy input, and for a dictionary that replaces every out-of-vocabulary word by its nearest vocabulary
word (optimal-string-alignment distance, ties to the more frequent word).
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .. import layers
from ..layers.states import HiddenState
from ..tasks import IGNORE
from ..train.loop import train_steps
from ..train.loss import masked_cross_entropy
from ..train.schedule import warmup_times_cosine
from .common import RecipeResult, ResultRow
from .typos import corrupt_sentence, truncate_last_word

PAPER = "Ghosh & Kristensson, Neural Networks for Text Correction and Completion in Keyboard Decoding, 2017"
NAME = "keyboard"

SPECIALS: tuple[str, ...] = ("<pad>", "<s>", "</s>", "<unk>")
PAD, BOS, EOS, UNK = range(4)
CHAR_PAD, BOW, EOW, CHAR_OTHER = 0, 1, 2, 3
CHAR_IDS: dict[str, int] = {ch: 4 + i for i, ch in enumerate("abcdefghijklmnopqrstuvwxyz")}
N_CHARS = 4 + len(CHAR_IDS)


# ----------------------------------------------------------------------------------------------- config

@dataclass
class Config:
    """Everything a run depends on besides the seed. ``quick()`` fits in 3 minutes, ``full()`` in 12, on one core."""

    corpus: str = "kjv"  # "kjv" (the default corpus) or "builtin" (a small sentence grammar, for tests)
    vocab_size: int = 2000  # most frequent training words kept; sentences with other words are dropped
    min_words: int = 4
    max_words: int = 12
    n_val: int = 500
    n_test: int = 1000
    max_chars: int = 24  # characters kept per (noisy) word, marks included
    char_dim: int = 32
    n_filters: int = 64  # per width
    widths: tuple[int, ...] = (2, 3, 4)
    d_model: int = 192
    dropout: float = 0.1
    positions: bool = True  # word-position embeddings on encoder and decoder inputs (not in the paper)
    spelling_output: bool = True  # output layer row of word w += CharCNN(w) (not in the paper)
    steps: int = 3000
    batch_size: int = 64
    lr: float = 2e-3
    warmup: int = 100  # steps of the linear warm-up ramp (schedule: train.schedule.warmup_times_cosine)
    min_lr_ratio: float = 0.1  # the cosine decays the learning rate from lr to min_lr_ratio * lr over the steps
    clip: float = 1.0  # the gradient's global L2 norm is clipped to this before every step
    train_rate_max: float = 0.2  # each training sentence gets a typo rate uniform in [0, train_rate_max]
    completion_fraction: float = 0.25  # training sentences whose last word is cut to a prefix
    eval_rates: tuple[float, ...] = (0.0, 0.05, 0.1, 0.15, 0.2)
    headline_rate: float = 0.1  # the typo rate of the results table
    eval_every: int = 500
    n_val_eval: int = 300

    @classmethod
    def quick(cls) -> "Config":
        return cls(steps=600, n_test=500, d_model=128, eval_every=200)

    @classmethod
    def full(cls) -> "Config":
        return cls()

    def validate(self) -> None:
        if self.corpus not in ("kjv", "builtin"):
            raise ValueError(f"corpus must be 'kjv' or 'builtin', got {self.corpus!r}")
        if not 1 <= self.min_words <= self.max_words:
            raise ValueError(f"need 1 <= min_words <= max_words, got {self.min_words}, {self.max_words}")
        if self.headline_rate not in self.eval_rates:
            raise ValueError(f"headline_rate {self.headline_rate} must be one of eval_rates {self.eval_rates}")
        if not 0 <= self.completion_fraction <= 1 or not 0 <= self.train_rate_max <= 1:
            raise ValueError("completion_fraction and train_rate_max must lie in [0, 1], got "
                             f"{self.completion_fraction}, {self.train_rate_max}")
        if min(self.widths) < 1 or self.max_chars < max(self.widths):
            raise ValueError(f"widths must be >= 1 and max_chars >= max(widths), got {self.widths}, {self.max_chars}")


# ------------------------------------------------------------------------------------------------- data

def clean_sentences(text: str, min_words: int = 4, max_words: int = 12) -> list[list[str]]:
    """Short lowercase sentences of letters from running text, in order of appearance, duplicates removed.

    Each line is cut at . ; : ? ! into clauses; apostrophes are dropped ("lord's" -> "lords"), every
    other non-letter separates words; clauses of min_words..max_words words are kept.
    """
    seen: set[str] = set()
    out: list[list[str]] = []
    for line in text.splitlines():
        for clause in re.split(r"[.;:?!]", line):
            words = re.sub(r"[^a-z]+", " ", clause.lower().replace("'", "")).split()
            key = " ".join(words)
            if min_words <= len(words) <= max_words and key not in seen:
                seen.add(key)
                out.append(words)
    return out


def builtin_sentences() -> list[list[str]]:
    """A small fixed sentence set (1920 sentences of 4-10 words, 45 words) for tests without the corpus."""
    subjects = ["the king", "my brother", "the old man", "a young woman", "the children", "our teacher",
                "the farmer", "his sister"]
    verbs = ["saw", "found", "carried", "bought", "wanted", "cleaned", "painted", "sold"]
    objects = ["the red house", "a small boat", "the heavy stone", "an old book", "the green field", "a new coat"]
    tails = ["", "near the river", "in the morning", "with great care", "before the rain"]
    return [" ".join(p).split() for p in itertools.product(subjects, verbs, objects, tails)]


class WordVocab:
    """The decoder's words: <pad> <s> </s> <unk>, then words by decreasing training frequency."""

    def __init__(self, words: Sequence[str], counts: Sequence[int]):
        if len(words) != len(counts):
            raise ValueError(f"words and counts must have the same length, got {len(words)} and {len(counts)}")
        self.itos: list[str] = list(SPECIALS) + list(words)
        self.stoi: dict[str, int] = {w: i for i, w in enumerate(self.itos)}
        self.count: dict[str, int] = dict(zip(words, counts))

    @classmethod
    def from_sentences(cls, sentences: Sequence[Sequence[str]], size: int) -> "WordVocab":
        """The ``size`` most frequent words (ties alphabetical)."""
        counts = Counter(w for s in sentences for w in s)
        top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:size]
        return cls([w for w, _ in top], [c for _, c in top])

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, word: str) -> bool:
        return word in self.count

    @property
    def words(self) -> list[str]:
        return self.itos[len(SPECIALS):]

    def encode(self, words: Sequence[str]) -> list[int]:
        return [self.stoi.get(w, UNK) for w in words]

    def decode(self, ids: Sequence[int]) -> list[str]:
        """Words up to the first </s>; <pad> and <s> are skipped."""
        out = []
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if i not in (PAD, BOS):
                out.append(self.itos[i])
        return out


@dataclass
class Splits:
    train: list[list[str]]
    val: list[list[str]]
    test: list[list[str]]
    vocab: WordVocab
    dropped: int = 0  # sentences with a word outside the vocabulary


def make_splits(sentences: Sequence[Sequence[str]], cfg: Config, seed: int) -> Splits:
    """Shuffle (seeded), cut off test and val, build the vocabulary from train, keep in-vocabulary sentences."""
    if len(sentences) < cfg.n_val + cfg.n_test + 1:
        raise ValueError(f"need more than n_val + n_test = {cfg.n_val + cfg.n_test} sentences, got {len(sentences)}")
    order = np.random.default_rng([seed, 0]).permutation(len(sentences))
    shuffled = [list(sentences[i]) for i in order]
    # cut val/test generously, then keep the first n of those whose words are all in the vocabulary
    n_held = min(len(shuffled) // 2, 2 * (cfg.n_val + cfg.n_test))
    held, train = shuffled[:n_held], shuffled[n_held:]
    vocab = WordVocab.from_sentences(train, cfg.vocab_size)
    keep = [s for s in train if all(w in vocab for w in s)]
    held_ok = [s for s in held if all(w in vocab for w in s)]
    if len(held_ok) < cfg.n_val + cfg.n_test:
        raise ValueError(f"only {len(held_ok)} held-out sentences are in the vocabulary; lower n_val/n_test "
                         f"(now {cfg.n_val}/{cfg.n_test}) or raise vocab_size ({cfg.vocab_size})")
    test, val = held_ok[: cfg.n_test], held_ok[cfg.n_test : cfg.n_test + cfg.n_val]
    return Splits(keep, val, test, vocab, dropped=len(train) - len(keep))


def encode_chars(sentences: Sequence[Sequence[str]], max_chars: int = 24,
                 partial_last: Sequence[bool] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Character ids of a batch of sentences, each word framed as <bow> c_1 .. c_n <eow>.

    Args:
        sentences: B lists of words.
        max_chars: characters kept per word, marks included (longer words lose their tail).
        partial_last: per sentence, whether its last word is still being typed (then it has no <eow>).
    Returns:
        chars (B, S, C) long, 0 = padding, S the most words, C <= max_chars; lengths (B,) long word counts.
    """
    if len(sentences) == 0 or any(len(s) == 0 for s in sentences):
        raise ValueError("sentences must be a non-empty batch of non-empty word lists")
    partial_last = partial_last if partial_last is not None else [False] * len(sentences)
    if len(partial_last) != len(sentences):
        raise ValueError(f"partial_last must have one flag per sentence ({len(sentences)}), got {len(partial_last)}")
    ids = [[[BOW] + [CHAR_IDS.get(c, CHAR_OTHER) for c in w] + ([] if part and j == len(s) - 1 else [EOW])
            for j, w in enumerate(s)] for s, part in zip(sentences, partial_last)]
    n_words = max(len(s) for s in ids)
    n_chars = min(max_chars, max(len(w) for s in ids for w in s))
    out = torch.zeros(len(ids), n_words, n_chars, dtype=torch.long)
    for b, s in enumerate(ids):
        for j, w in enumerate(s):
            w = w[:n_chars]
            out[b, j, : len(w)] = torch.tensor(w)
    return out, torch.tensor([len(s) for s in sentences])


def encode_targets(sentences: Sequence[Sequence[str]], vocab: WordVocab) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forcing pairs: inputs <s> y_1..y_n and outputs y_1..y_n </s>, both (B, T) padded with <pad>."""
    seqs = [vocab.encode(s) for s in sentences]
    t = max(len(s) for s in seqs) + 1
    inp = torch.full((len(seqs), t), PAD, dtype=torch.long)
    out = torch.full((len(seqs), t), PAD, dtype=torch.long)
    for b, s in enumerate(seqs):
        inp[b, : len(s) + 1] = torch.tensor([BOS] + s)
        out[b, : len(s) + 1] = torch.tensor(s + [EOS])
    return inp, out


# ------------------------------------------------------------------------------------------------ model

class CharCNNWordEncoder(nn.Module):
    """A word's characters -> one vector: convolutions of several widths, max-pooled over positions.

    chars (N, C) long (0 = padding) -> (N, d_model). For width k, window p covers characters p..p+k-1; only
    windows inside the word are pooled (a word shorter than k pools its single, padded, first window).
    """

    def __init__(self, d_model: int, char_dim: int = 32, n_filters: int = 64, widths: Sequence[int] = (2, 3, 4)):
        super().__init__()
        self.widths = tuple(widths)
        self.embed = nn.Embedding(N_CHARS, char_dim, padding_idx=CHAR_PAD)
        self.convs = nn.ModuleList(nn.Conv1d(char_dim, n_filters, k) for k in self.widths)
        self.proj = nn.Linear(n_filters * len(self.widths), d_model)

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        if chars.dim() != 2:
            raise ValueError(f"chars must be (N, C) character ids, got shape {tuple(chars.shape)}")
        n, c = chars.shape
        length = (chars != CHAR_PAD).sum(1)  # (N,)
        width = max(c, max(self.widths))
        e = F.pad(self.embed(chars), (0, 0, 0, width - c)).transpose(1, 2)  # (N, char_dim, width)
        pooled = []
        for k, conv in zip(self.widths, self.convs):
            f = torch.tanh(conv(e))  # (N, F, width - k + 1)
            last_start = torch.clamp(length - k + 1, min=1)  # windows 0 .. last_start-1 lie inside the word
            valid = torch.arange(f.shape[-1], device=chars.device)[None, :] < last_start[:, None]
            pooled.append(f.masked_fill(~valid[:, None, :], -math.inf).amax(-1))
        return self.proj(torch.cat(pooled, dim=-1))


class TypoCorrector(nn.Module):
    """Char-CNN word vectors -> GRU encoder -> GRU decoder with Luong attention -> word logits.

    ``forward(chars (B, S, C), lengths (B,), targets_in (B, T)) -> logits (B, T, n_words)`` (teacher forcing);
    ``greedy(chars, lengths, max_len) -> (B, L) word ids`` (ends with </s> or max_len).

    ``mixer``: the recurrence of encoder and decoder, recurlab's ``gru`` (the paper's) or ``mingru``: units
    whose state is their (B, d) output, so that the encoder's output at the last word can start the decoder.
    ``vocab_chars`` (n_words, C): each output word's spelling, for the spelling-aware output layer.
    """

    MIXERS = ("gru", "mingru")

    def __init__(self, n_words: int, d_model: int = 192, char_dim: int = 32, n_filters: int = 64,
                 widths: Sequence[int] = (2, 3, 4), dropout: float = 0.1, mixer: str = "gru",
                 n_positions: int | None = 64, vocab_chars: torch.Tensor | None = None):
        super().__init__()
        if mixer not in self.MIXERS:
            raise ValueError(f"mixer must be one of {self.MIXERS}, got {mixer!r}")
        self.words = CharCNNWordEncoder(d_model, char_dim, n_filters, widths)
        # word-position embeddings P, shared by encoder (x_i + P_i) and decoder (e(y_{t-1}) + P_t); None: off
        self.positions = nn.Embedding(n_positions, d_model) if n_positions else None
        self.encoder = layers.build(mixer, d_model, kind="token")
        self.embed = nn.Embedding(n_words, d_model, padding_idx=PAD)
        self.decoder = layers.build(mixer, d_model, kind="token")
        self.attn = nn.Linear(d_model, d_model, bias=False)  # W_a
        self.combine = nn.Linear(2 * d_model, d_model)  # W_c
        self.out = nn.Linear(d_model, n_words)  # W_o
        self.dropout = nn.Dropout(dropout)
        # spelling-aware output layer: W_o row of word w += CharCNN(w) (None: a plain softmax layer)
        if vocab_chars is not None:
            if vocab_chars.dim() != 2 or vocab_chars.shape[0] != n_words:
                raise ValueError(f"vocab_chars must be (n_words={n_words}, C), got {tuple(vocab_chars.shape)}")
            nn.init.zeros_(self.out.weight)
        self.register_buffer("vocab_chars", vocab_chars, persistent=False)

    def encode(self, chars: torch.Tensor, lengths: torch.Tensor):
        """chars (B, S, C), lengths (B,) -> encoder states H (B, S, d), mask (B, S) of real words, s_0 (B, d)."""
        if chars.dim() != 3 or lengths.shape != chars.shape[:1]:
            raise ValueError(f"chars must be (B, S, C) and lengths (B,), got {tuple(chars.shape)} and "
                             f"{tuple(lengths.shape)}")
        b, s, c = chars.shape
        x = self._add_position(self.dropout(self.words(chars.reshape(b * s, c))).reshape(b, s, -1), 0)
        h, _ = self.encoder(x)
        mask = torch.arange(s, device=chars.device)[None, :] < lengths[:, None]
        s0 = h[torch.arange(b, device=chars.device), lengths - 1]
        return h, mask, HiddenState(s0)

    def _add_position(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """x (B, T, d) + P[start : start + T] (x unchanged without position embeddings)."""
        if self.positions is None:
            return x
        if start + x.shape[1] > self.positions.num_embeddings:
            raise ValueError(f"sentences may have at most {self.positions.num_embeddings} words here "
                             f"(n_positions), got {start + x.shape[1]}")
        return x + self.positions.weight[start : start + x.shape[1]]

    def readout(self, s: torch.Tensor, h: torch.Tensor, mask: torch.Tensor,
                weight: torch.Tensor | None = None) -> torch.Tensor:
        """Decoder states s (B, T, d) attend over H (B, S, d) -> logits (B, T, n_words).

        ``weight``: the (n_words, d) output matrix if already computed (:meth:`output_weight`).
        """
        scores = self.attn(s) @ h.transpose(1, 2)  # (B, T, S)
        alpha = torch.softmax(scores.masked_fill(~mask[:, None, :], -math.inf), dim=-1)
        o = torch.tanh(self.combine(torch.cat([alpha @ h, s], dim=-1)))
        weight = self.output_weight() if weight is None else weight
        return F.linear(self.dropout(o), weight, self.out.bias)

    def output_weight(self) -> torch.Tensor:
        """(n_words, d) rows of W_o: free vectors, plus each word's char-CNN vector when spelling-aware."""
        if self.vocab_chars is None:
            return self.out.weight
        return self.out.weight + self.words(self.vocab_chars)

    def forward(self, chars: torch.Tensor, lengths: torch.Tensor, targets_in: torch.Tensor) -> torch.Tensor:
        h, mask, s0 = self.encode(chars, lengths)
        s, _ = self.decoder(self._add_position(self.embed(targets_in), 0), s0)
        return self.readout(s, h, mask)

    @torch.no_grad()
    def greedy(self, chars: torch.Tensor, lengths: torch.Tensor, max_len: int) -> torch.Tensor:
        h, mask, state = self.encode(chars, lengths)
        weight = self.output_weight()  # the same at every step: computed once
        y = torch.full((chars.shape[0],), BOS, dtype=torch.long, device=chars.device)
        done = torch.zeros_like(y, dtype=torch.bool)
        out = []
        for t in range(max_len):
            s_t, state = self.decoder.step(self._add_position(self.embed(y)[:, None], t)[:, 0], state)
            y = self.readout(s_t[:, None], h, mask, weight)[:, 0].argmax(-1)
            y = torch.where(done, torch.full_like(y, PAD), y)
            out.append(y)
            done |= y == EOS
            if bool(done.all()):
                break
        return torch.stack(out, dim=1)


def correct(model: TypoCorrector, noisy: Sequence[Sequence[str]], vocab: WordVocab, max_chars: int = 24,
            partial_last: Sequence[bool] | None = None, batch_size: int = 250) -> list[list[str]]:
    """The model's greedy corrections of noisy sentences (lists of words)."""
    model.eval()
    partial_last = list(partial_last) if partial_last is not None else [False] * len(noisy)
    out: list[list[str]] = []
    for i in range(0, len(noisy), batch_size):
        chars, lengths = encode_chars(noisy[i : i + batch_size], max_chars, partial_last[i : i + batch_size])
        ids = model.greedy(chars, lengths, max_len=int(lengths.max()) + 3)
        out.extend(vocab.decode(row) for row in ids.tolist())
    return out


# --------------------------------------------------------------------------------------------- baselines

def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance (insertions, deletions, substitutions, cost 1) between two sequences."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


class NearestWordDictionary:
    """The dictionary baseline: out-of-vocabulary words -> the nearest vocabulary word.

    Distance: optimal string alignment (Levenshtein plus transposition of neighbours, each cost 1),
    computed against every vocabulary word at once; ties go to the more frequent word, then alphabetical.
    """

    def __init__(self, vocab: WordVocab):
        words = vocab.words
        if not words:
            raise ValueError("vocab must hold at least one word")
        order = sorted(range(len(words)), key=lambda i: (-vocab.count[words[i]], words[i]))
        self.words = [words[i] for i in order]  # most frequent first: argmin picks the tie winner
        self.vocab = set(words)
        self.lengths = np.array([len(w) for w in self.words])
        self.chars = np.full((len(words), int(self.lengths.max())), -1, dtype=np.int64)
        for i, w in enumerate(self.words):
            self.chars[i, : len(w)] = [ord(c) for c in w]
        self._cache: dict[tuple[str, bool], str] = {}

    def distances(self, word: str, prefix: bool = False) -> np.ndarray:
        """(V,) OSA distance from ``word`` to every vocabulary word (to its first len(word) letters if prefix)."""
        a = np.array([ord(c) for c in word], dtype=np.int64)
        m, lv = len(a), self.chars.shape[1]
        d = np.empty((m + 1, lv + 1, len(self.words)), dtype=np.int64)
        d[0] = np.arange(lv + 1)[:, None]
        d[:, 0] = np.arange(m + 1)[:, None]
        for i in range(1, m + 1):
            for j in range(1, lv + 1):
                cost = (self.chars[:, j - 1] != a[i - 1]).astype(np.int64)
                best = np.minimum(np.minimum(d[i - 1, j] + 1, d[i, j - 1] + 1), d[i - 1, j - 1] + cost)
                if i > 1 and j > 1:
                    swap = (self.chars[:, j - 1] == a[i - 2]) & (self.chars[:, j - 2] == a[i - 1])
                    best = np.where(swap, np.minimum(best, d[i - 2, j - 2] + 1), best)
                d[i, j] = best
        ends = np.minimum(self.lengths, m) if prefix else self.lengths
        return d[m, ends, np.arange(len(self.words))]

    def correct_word(self, word: str) -> str:
        """``word`` if it is in the vocabulary, else the nearest vocabulary word."""
        if word in self.vocab:
            return word
        key = (word, False)
        if key not in self._cache:
            self._cache[key] = self.words[int(np.argmin(self.distances(word)))]
        return self._cache[key]

    def complete_word(self, prefix: str) -> str:
        """The most frequent vocabulary word starting with ``prefix``; if none, the one whose beginning is nearest."""
        key = (prefix, True)
        if key not in self._cache:
            hits = [w for w in self.words if w.startswith(prefix)]
            if hits:
                self._cache[key] = hits[0]
            else:
                dist = self.distances(prefix, prefix=True) * 1000 + np.abs(self.lengths - len(prefix))
                self._cache[key] = self.words[int(np.argmin(dist))]
        return self._cache[key]

    def correct_sentence(self, words: Sequence[str], partial_last: bool = False) -> list[str]:
        out = [self.correct_word(w) for w in words]
        if partial_last:
            out[-1] = self.complete_word(words[-1])
        return out


# ----------------------------------------------------------------------------------------------- metrics

def scores(hyps: Sequence[Sequence[str]], refs: Sequence[Sequence[str]]) -> dict[str, float]:
    """word_accuracy, cer and sentence_accuracy of hypotheses against references (lists of words).

    Word accuracy compares position by position (a missing word is wrong); CER is the summed character
    Levenshtein distance of the space-joined strings over the references' summed length.
    """
    if len(hyps) != len(refs) or not refs:
        raise ValueError(f"hyps and refs must be equally long and non-empty, got {len(hyps)} and {len(refs)}")
    words = sum(len(r) for r in refs)
    right = sum(sum(1 for i, w in enumerate(r) if i < len(h) and h[i] == w) for h, r in zip(hyps, refs))
    hs, rs = [" ".join(h) for h in hyps], [" ".join(r) for r in refs]
    errors = sum(edit_distance(h, r) if h != r else 0 for h, r in zip(hs, rs))
    return {"word_accuracy": right / words, "cer": errors / sum(len(r) for r in rs),
            "sentence_accuracy": sum(h == r for h, r in zip(hs, rs)) / len(refs)}


def last_word_accuracy(hyps: Sequence[Sequence[str]], refs: Sequence[Sequence[str]]) -> float:
    """Fraction of sentences whose last reference word is output at that position (completion)."""
    return float(np.mean([len(h) >= len(r) and h[len(r) - 1] == r[-1] for h, r in zip(hyps, refs)]))


# ------------------------------------------------------------------------------------------------ train

def _noisy_batch(clean: Sequence[Sequence[str]], rng: np.random.Generator, rate_max: float,
                 completion_fraction: float) -> tuple[list[list[str]], list[bool]]:
    """Training inputs: each sentence at a typo rate uniform in [0, rate_max], some with a cut last word."""
    rates = rng.uniform(0.0, rate_max, size=len(clean))
    partial = (rng.random(len(clean)) < completion_fraction).tolist()
    noisy = []
    for s, r, p in zip(clean, rates, partial):
        s = truncate_last_word(s, rng) if p else list(s)
        noisy.append(corrupt_sentence(s, float(r), rng))
    return noisy, partial


def train(model: TypoCorrector, splits: Splits, cfg: Config, seed: int, progress: bool = True) -> dict:
    """Adam under :func:`recurlab.train.schedule.warmup_times_cosine`, gradient norm clipped to ``cfg.clip``, fresh
    noise every batch, through the shared loop (:func:`recurlab.train.loop.train_steps`); a validation check every
    ``cfg.eval_every`` steps, and the weights of the best check are kept."""
    rng = np.random.default_rng([seed, 1])
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    val_rng = np.random.default_rng([seed, 3])
    val_clean = splits.val[: cfg.n_val_eval]
    val_noisy = [corrupt_sentence(s, cfg.headline_rate, val_rng) for s in val_clean]
    order, pos = rng.permutation(len(splits.train)), 0

    def batch(step: int) -> tuple[torch.Tensor, ...]:
        """Step ``step``'s batch (steps come in order): chars (B, S, C), lengths (B,), targets in and out (B, T)."""
        nonlocal order, pos
        if pos + cfg.batch_size > len(order):
            order, pos = rng.permutation(len(splits.train)), 0
        clean = [splits.train[i] for i in order[pos : pos + cfg.batch_size]]
        pos += cfg.batch_size
        noisy, partial = _noisy_batch(clean, rng, cfg.train_rate_max, cfg.completion_fraction)
        return (*encode_chars(noisy, cfg.max_chars, partial), *encode_targets(clean, splits.vocab))

    def loss_fn(logits: torch.Tensor, tgt_out: torch.Tensor) -> torch.Tensor:
        return masked_cross_entropy(logits, tgt_out.masked_fill(tgt_out == PAD, IGNORE))  # padding is not predicted

    def validate() -> dict[str, float]:
        hyps = correct(model, val_noisy, splits.vocab, cfg.max_chars)
        return {"word_accuracy": scores(hyps, val_clean)["word_accuracy"]}

    history = train_steps(model, opt, loss_fn, batch, cfg.steps, cfg.eval_every,
                          lr_factor=partial(warmup_times_cosine, total=cfg.steps, warmup=cfg.warmup,
                                            min_ratio=cfg.min_lr_ratio),
                          grad_clip=cfg.clip, validate=validate, select="word_accuracy", maximize=True,
                          progress=progress, desc="keyboard")
    return {"step": history.window_end, "train_loss": history.window_loss,
            "val_word_accuracy": [v["word_accuracy"] for v in history.val],
            "best_val_word_accuracy": history.best_value}


# -------------------------------------------------------------------------------------------------- run

def _load_sentences(cfg: Config) -> list[list[str]]:
    if cfg.corpus == "builtin":
        return builtin_sentences()
    from ..tasks.text import default_corpus

    return clean_sentences(default_corpus(), cfg.min_words, cfg.max_words)


def _plot(per_rate: dict[str, dict[float, dict[str, float]]], rates: Sequence[float], cfg: Config,
          path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    panels = (("word_accuracy", "word accuracy"), ("cer", "character error rate"),
              ("sentence_accuracy", "sentence accuracy"))
    styles = {"model": ("C0", "o", "char-CNN + GRU seq2seq (ours)"),
              "dictionary": ("C1", "s", "nearest vocabulary word"),
              "copy": ("C7", "^", "copy the noisy input")}
    for ax, (key, title) in zip(axes, panels):
        for system, (colour, marker, label) in styles.items():
            ax.plot(rates, [per_rate[system][r][key] for r in rates], marker=marker, color=colour, label=label)
        ax.set_xlabel("typo rate per character")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    data = "held-out KJV sentences" if cfg.corpus == "kjv" else "built-in sentences"
    fig.suptitle(f"Keyboard decoding: synthetic QWERTY typos on {data} "
                 f"(model trained at rates uniform in [0, {cfg.train_rate_max:g}])", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run(quick: bool = False, out_dir=None, seed: int = 0, progress: bool = True,
        config: Config | None = None) -> RecipeResult:
    """Train the corrector, evaluate it and the baselines on the test split at every typo rate, plot."""
    cfg = config if config is not None else (Config.quick() if quick else Config.full())
    cfg.validate()
    torch.manual_seed(seed)
    splits = make_splits(_load_sentences(cfg), cfg, seed)
    vocab_chars = None
    if cfg.spelling_output:  # (n_words, C): each output word's spelling, specials included
        vocab_chars = encode_chars([[w] for w in splits.vocab.itos], cfg.max_chars)[0][:, 0]
    model = TypoCorrector(len(splits.vocab), cfg.d_model, cfg.char_dim, cfg.n_filters, cfg.widths, cfg.dropout,
                          n_positions=64 if cfg.positions else None, vocab_chars=vocab_chars)
    history = train(model, splits, cfg, seed, progress)
    dictionary = NearestWordDictionary(splits.vocab)

    per_rate: dict[str, dict[float, dict[str, float]]] = {"model": {}, "dictionary": {}, "copy": {}}
    examples = []
    for rate in tqdm(cfg.eval_rates, desc="evaluate", disable=not progress, leave=False):
        rng = np.random.default_rng([seed, 2, round(rate * 10_000)])
        noisy = [corrupt_sentence(s, rate, rng) for s in splits.test]
        outputs = {"model": correct(model, noisy, splits.vocab, cfg.max_chars),
                   "dictionary": [dictionary.correct_sentence(s) for s in noisy], "copy": noisy}
        for system, hyps in outputs.items():
            per_rate[system][rate] = scores(hyps, splits.test)
        if rate == cfg.headline_rate:
            examples = [{"noisy": " ".join(n), "model": " ".join(m), "reference": " ".join(r)}
                        for n, m, r in zip(noisy[:8], outputs["model"][:8], splits.test[:8])]

    # completion: the last word cut to a prefix (at least half typed), typos at the headline rate
    rng = np.random.default_rng([seed, 4])
    partial_noisy = [corrupt_sentence(truncate_last_word(s, rng), cfg.headline_rate, rng) for s in splits.test]
    flags = [True] * len(partial_noisy)
    completion = {
        "model": correct(model, partial_noisy, splits.vocab, cfg.max_chars, flags),
        "dictionary": [dictionary.correct_sentence(s, partial_last=True) for s in partial_noisy],
        "copy": partial_noisy,
    }
    completion_scores = {k: {"last_word_accuracy": last_word_accuracy(v, splits.test), **scores(v, splits.test)}
                         for k, v in completion.items()}

    head = {k: v[cfg.headline_rate] for k, v in per_rate.items()}
    pct = f"{cfg.headline_rate:.0%}"
    data = "KJV" if cfg.corpus == "kjv" else "built-in"
    scale = (f"synthetic typos at {pct}/char on {len(splits.test)} held-out {data} sentences, "
             f"{len(splits.vocab) - len(SPECIALS)}-word vocab, {cfg.steps} steps")
    paper_word = "90% (Twitter), 98% (OpenTypo)"
    rows = [
        ResultRow("word accuracy, char-CNN+GRU seq2seq", head["model"]["word_accuracy"], paper_word, scale),
        ResultRow("character error rate, char-CNN+GRU seq2seq", head["model"]["cer"], "2.4% (Twitter)", scale),
        ResultRow("sentence accuracy, char-CNN+GRU seq2seq", head["model"]["sentence_accuracy"],
                  "68.9% (OpenTypo)", scale),
    ]
    for system, label in (("dictionary", "nearest-word dictionary"), ("copy", "copy noisy input")):
        rows += [ResultRow(f"word accuracy, {label}", head[system]["word_accuracy"], "-", scale),
                 ResultRow(f"character error rate, {label}", head[system]["cer"], "-", scale),
                 ResultRow(f"sentence accuracy, {label}", head[system]["sentence_accuracy"], "-", scale)]
    comp_scale = f"last word cut to >= half its letters, plus {pct}/char typos"
    for system, label in (("model", "char-CNN+GRU seq2seq"), ("dictionary", "most frequent completion"),
                          ("copy", "copy noisy input")):
        rows.append(ResultRow(f"completion: last-word accuracy, {label}",
                              completion_scores[system]["last_word_accuracy"], "-", comp_scale))

    result = RecipeResult(recipe=NAME, quick=quick, seed=seed, rows=rows, details={
        "paper": PAPER,
        "config": asdict(cfg),
        "sentences": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test),
                      "train_dropped_out_of_vocab": splits.dropped},
        "vocab_words": len(splits.vocab) - len(SPECIALS),
        "parameters": sum(p.numel() for p in model.parameters()),
        "per_rate": {k: {str(r): m for r, m in v.items()} for k, v in per_rate.items()},
        "completion": completion_scores,
        "history": history,
        "examples": examples,
        "mixer": "gru (recurlab.layers, torch.nn.GRU) for encoder and decoder",
    })
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        result.files.append(str(_plot(per_rate, list(cfg.eval_rates), cfg, out / "keyboard.png")))
    return result
