"""Synthetic keyboard typos: QWERTY-adjacent substitutions and insertions, deletions and transpositions.

The keyboard-decoding recipe (Ghosh & Kristensson, "Neural Networks for Text Correction and Completion
in Keyboard Decoding", 2017) trains on real typing errors (Twitter, OpenTypo). Offline we have only clean
text, so this module makes the errors: every character of a word is, independently with probability
``rate``, hit by one of four edits,

    substitution   c -> a key adjacent to c on a QWERTY keyboard          "hand" -> "hans"
    insertion      c -> c k, k a key adjacent to c (a fat-finger double hit) "hand" -> "hangd"
    deletion       c -> (nothing)                                           "hand" -> "had"
    transposition  c d -> d c (c and the next character swap)              "hand" -> "hnad"

chosen with the probabilities ``weights`` (uniform by default). Edits never touch spaces, so a noisy
sentence has as many words as the clean one, and a word is never deleted to nothing. ``rate = 0`` is the
identity. Everything random is drawn from the ``numpy.random.Generator`` passed in, so a seed fixes the
noise.

Keyboard geometry: the three letter rows of a standard QWERTY board, each staggered to the right of the
row above (row 2 by 1/4 key, row 3 by 3/4 key, as on a physical board with a 1.5-wide Tab, 1.75-wide Caps
Lock and 2.25-wide left Shift). Two keys are adjacent when they are next to each other in one row, or in
neighbouring rows with key centres less than one key width apart horizontally. This gives e.g.
a: q w s z, g: t y f h v b, m: n j k; the relation is symmetric by construction.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

QWERTY_ROWS: tuple[str, ...] = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
ROW_OFFSETS: tuple[float, ...] = (0.0, 0.25, 0.75)  # horizontal stagger of each row, in key widths
EDITS: tuple[str, ...] = ("insert", "delete", "substitute", "transpose")


def qwerty_neighbours() -> dict[str, tuple[str, ...]]:
    """Each lowercase letter -> the letters on the keys touching it, sorted (see the module docstring)."""
    centre = {ch: (r, i + ROW_OFFSETS[r]) for r, row in enumerate(QWERTY_ROWS) for i, ch in enumerate(row)}
    out: dict[str, tuple[str, ...]] = {}
    for ch, (r, x) in centre.items():
        near = []
        for other, (r2, x2) in centre.items():
            if other == ch:
                continue
            same_row = r2 == r and abs(x2 - x) == 1.0
            next_row = abs(r2 - r) == 1 and abs(x2 - x) < 1.0
            if same_row or next_row:
                near.append(other)
        out[ch] = tuple(sorted(near))
    return out


KEY_NEIGHBOURS: dict[str, tuple[str, ...]] = qwerty_neighbours()


def _neighbour(ch: str, rng: np.random.Generator) -> str:
    keys = KEY_NEIGHBOURS.get(ch)
    if not keys:
        raise ValueError(f"character {ch!r} is not a QWERTY letter key; expected one of a-z")
    return keys[int(rng.integers(len(keys)))]


def _check_index(word: str, i: int) -> None:
    if not 0 <= i < len(word):
        raise ValueError(f"i must index a character of word {word!r} (0 <= i < {len(word)}), got {i}")


def substitute(word: str, i: int, rng: np.random.Generator) -> str:
    """``word`` with character i replaced by a QWERTY neighbour of it."""
    _check_index(word, i)
    return word[:i] + _neighbour(word[i], rng) + word[i + 1 :]


def insert(word: str, i: int, rng: np.random.Generator) -> str:
    """``word`` with a QWERTY neighbour of character i inserted right after it."""
    _check_index(word, i)
    return word[: i + 1] + _neighbour(word[i], rng) + word[i + 1 :]


def delete(word: str, i: int) -> str:
    """``word`` without character i."""
    _check_index(word, i)
    return word[:i] + word[i + 1 :]


def transpose(word: str, i: int) -> str:
    """``word`` with characters i and i + 1 swapped (i must not be the last index)."""
    if not 0 <= i < len(word) - 1:
        raise ValueError(f"i must index a character with a successor in {word!r} (0 <= i < {len(word) - 1}), got {i}")
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def _check_rate_and_weights(rate: float, weights: Sequence[float]) -> np.ndarray:
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be a probability in [0, 1], got {rate}")
    w = np.asarray(weights, dtype=float)
    if w.shape != (len(EDITS),) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be {len(EDITS)} non-negative numbers for {EDITS} with a positive sum, "
                         f"got {list(weights)}")
    return w / w.sum()


def corrupt_word(word: str, rate: float, rng: np.random.Generator,
                 weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)) -> str:
    """``word`` (lowercase letters) after each character was hit by an edit with probability ``rate``.

    Characters are visited left to right in the clean word; the edit kind is drawn with probabilities
    ``weights`` over (insert, delete, substitute, transpose). A transposition consumes the next character
    too (it is not visited again); one drawn on the last character, or a deletion that would leave the
    word empty, leaves that character as it is.
    """
    p = _check_rate_and_weights(rate, weights)
    if rate == 0.0 or not word:
        return word
    hits = rng.random(len(word)) < rate
    kinds = rng.choice(len(EDITS), size=len(word), p=p)
    out: list[str] = []
    i = 0
    while i < len(word):
        ch = word[i]
        if not hits[i]:
            out.append(ch)
            i += 1
            continue
        kind = EDITS[kinds[i]]
        if kind == "substitute":
            out.append(_neighbour(ch, rng))
        elif kind == "insert":
            out.extend((ch, _neighbour(ch, rng)))
        elif kind == "delete":
            if len(out) == 0 and i == len(word) - 1:  # the only character left: keep it
                out.append(ch)
        elif kind == "transpose" and i + 1 < len(word):
            out.extend((word[i + 1], ch))
            i += 1
        else:  # transposition of the last character: nothing to swap with
            out.append(ch)
        i += 1
    return "".join(out)


def corrupt_sentence(words: Sequence[str], rate: float, rng: np.random.Generator,
                     weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)) -> list[str]:
    """Each word of a sentence through :func:`corrupt_word`; the word count is unchanged."""
    return [corrupt_word(w, rate, rng, weights) for w in words]


def truncate_last_word(words: Sequence[str], rng: np.random.Generator, min_fraction: float = 0.5) -> list[str]:
    """The sentence with its last word cut to a prefix, as if the user were still typing it (completion).

    The prefix keeps k characters, k uniform in [max(1, ceil(min_fraction * n)), n - 1] for a last word of
    n >= 2 characters; a one-letter last word is left whole.
    """
    if not 0.0 <= min_fraction <= 1.0:
        raise ValueError(f"min_fraction must be in [0, 1], got {min_fraction}")
    if len(words) == 0:
        raise ValueError("words must hold at least one word")
    words = list(words)
    n = len(words[-1])
    if n < 2:
        return words
    low = min(max(1, int(np.ceil(min_fraction * n))), n - 1)
    words[-1] = words[-1][: int(rng.integers(low, n))]
    return words
