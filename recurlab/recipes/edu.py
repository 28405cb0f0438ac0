"""Elementary discourse units for the ``fake_news`` recipe: a rule-based segmenter, the EDU dependency
graph from discourse markers, and a seeded synthetic corpus whose label is carried by discourse structure.

The recipe rebuilds EDU4FD (Wang, Wang, Yang & Zhang, "Detecting fake news by enhanced text
representation with multi-EDU-structure awareness", Expert Systems with Applications 206, 117781, 2022;
arXiv:2205.15139). The paper segments articles into EDUs with a trained discourse segmenter and takes
rhetorical relations from a discourse parser; neither is available offline, so this module replaces both
by transparent rules (our choice, documented in docs/recipes/fake_news.md):

Segmentation (:func:`segment`)
    1. sentences end at ``.``, ``!`` or ``?`` followed by white space or the end of the text;
    2. a sentence is cut at ``,`` and ``;`` and before every *strong* discourse marker (``because``,
       ``although``, ``which``, ``if``, ``when``, ``however`` ...) wherever it occurs; a *weak* marker
       (``and``, ``so``, ``yet``, ``then``, ``also``, ``as``) opens an EDU only at the start of a piece
       (after punctuation), since "bread and butter" must not be cut;
    3. a piece that is only a marker ("However,") is joined to the next piece, and a piece of fewer than
       ``min_words`` words without a marker is joined to the previous EDU of its sentence.

Graph (:func:`build_graph`)
    Every EDU but the first gets exactly one incoming edge (head -> dependent, relation):

    - its opening marker chooses the relation (:data:`MARKERS`), else ``continuation``;
    - ``continuation`` and ``elaboration`` attach to the previous EDU;
    - any other relation attaches to the head (first EDU) of the EDU's own sentence, or, when the
      marker opens the sentence ("Therefore, ..."), to the head of the previous sentence.

Corpus (:func:`make_corpus`)
    An article draws three topics T = {A, B, C}; every clause is "the <topic> <verb> <obj> <obj>" with a
    polarity verb (rose/fell, approved/rejected, ...) and two object words of the topic. Each sentence
    is a *motif* whose head (first EDU) is a claim H on topic A (probability 1/2) or B or C:

    - cause:      "H(t, s), [fillers], because E."   real: E on topic t;  fake: E on another topic of T
    - contrast:   "H(t, s), [fillers], but/although E(t, s')."   real: s' = -s;  fake: s' = s
    - conclusion: "Therefore, E." (also Thus / Consequently), premise = head H(t, s) of the previous
                  sentence.  real: E(t, s);  fake: E on another topic of T, random polarity
    - neutral:    "H, [fillers]." in both classes.

    0..max_fillers filler clauses ("which/when/if/and ...") sit between a claim and its checked EDU; a
    filler is on the head's topic with probability 1/3, else on one of the two other topics, so the
    EDU just before a checked one agrees with it in topic with probability 1/3 in both classes: only the
    link to the (non-adjacent) head tells real from fake. A real article has only coherent motifs; a
    fake one has k >= 1 incoherent ones (k uniform over 1..#checked). Topics, object words and
    polarities are exchangeable between the classes, so every word's (and word pair's) expected count
    is the same in real and fake articles: the label lives in which EDU agrees with which, not in the
    vocabulary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

RELATIONS: tuple[str, ...] = ("continuation", "elaboration", "cause", "result", "contrast", "condition", "temporal")
"""Discourse relation types of the EDU graph, in index order."""

MARKERS: dict[str, str] = {
    # cause
    "because": "cause", "since": "cause", "due to": "cause",
    # result / conclusion
    "therefore": "result", "thus": "result", "hence": "result", "consequently": "result",
    "as a result": "result", "so": "result",
    # contrast
    "but": "contrast", "however": "contrast", "although": "contrast", "even though": "contrast",
    "though": "contrast", "whereas": "contrast", "yet": "contrast", "nevertheless": "contrast",
    # elaboration
    "which": "elaboration", "who": "elaboration", "including": "elaboration", "for example": "elaboration",
    "in particular": "elaboration",
    # condition
    "if": "condition", "unless": "condition", "provided that": "condition",
    # temporal
    "when": "temporal", "after": "temporal", "before": "temporal", "while": "temporal", "until": "temporal",
    "then": "temporal", "meanwhile": "temporal",
    # continuation
    "and": "continuation", "also": "continuation", "moreover": "continuation", "furthermore": "continuation",
    "in addition": "continuation", "as": "continuation",
}
"""Discourse marker (lower case, possibly several words) -> relation of the EDU it opens."""

WEAK_MARKERS: frozenset[str] = frozenset({"and", "so", "yet", "then", "also", "as"})
"""Markers that open an EDU only at the start of a piece (after punctuation), never mid-piece."""

_STRONG = sorted((m for m in MARKERS if m not in WEAK_MARKERS), key=len, reverse=True)
_STRONG_RE = re.compile(r"\b(?:" + "|".join(re.escape(m) for m in _STRONG) + r")\b", re.IGNORECASE)
_ALL_BY_LENGTH = sorted(MARKERS, key=len, reverse=True)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[a-z0-9_']+")


@dataclass(frozen=True)
class EDU:
    """One elementary discourse unit.

    Attributes:
        text: the clause as written (punctuation at its ends removed).
        sentence: index of its sentence in the article.
        position: index inside its sentence (0 = the sentence head).
        marker: the discourse marker that opens it (lower case), or None.
    """

    text: str
    sentence: int
    position: int
    marker: str | None

    @property
    def relation(self) -> str:
        """The relation its marker signals (``continuation`` without a marker)."""
        return MARKERS[self.marker] if self.marker else "continuation"

    def words(self) -> list[str]:
        """Lower-case word tokens (letters, digits, ``_`` and ``'``)."""
        return _WORD.findall(self.text.lower())


def opening_marker(text: str) -> str | None:
    """The longest discourse marker that opens ``text`` as whole words (case-insensitive), or None."""
    low = text.lower().lstrip()
    for m in _ALL_BY_LENGTH:
        if low.startswith(m) and (len(low) == len(m) or not (low[len(m)].isalnum() or low[len(m)] == "_")):
            return m
    return None


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``: cut after ``.``, ``!`` or ``?`` followed by white space; empty ones dropped."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def _split_before_markers(chunk: str) -> list[str]:
    """Cut ``chunk`` before every strong marker (leftmost-longest, so "even though" is not cut at "though")."""
    starts = [m.start() for m in _STRONG_RE.finditer(chunk)]
    bounds = [0] + [s for s in starts if s > 0] + [len(chunk)]
    return [chunk[a:b].strip() for a, b in zip(bounds[:-1], bounds[1:])]


def segment(text: str, min_words: int = 2) -> list[EDU]:
    """Split an article into EDUs by the rules of the module docstring.

    Args:
        text: the article.
        min_words: pieces with fewer words and no marker are joined to the previous EDU (>= 1).

    Returns:
        the EDUs in reading order, numbered by sentence and position.
    """
    if not isinstance(min_words, int) or min_words < 1:
        raise ValueError(f"min_words must be an int >= 1, got {min_words!r}")
    edus: list[EDU] = []
    for s_idx, sentence in enumerate(split_sentences(text)):
        sentence = sentence.rstrip(".!?").strip()
        pieces: list[str] = []
        for chunk in re.split(r"[,;:]", sentence):
            pieces.extend(_split_before_markers(chunk))
        pieces = [p for p in pieces if _WORD.search(p.lower())]
        units: list[str] = []
        pending = ""  # a marker-only piece, or a short first piece, waiting for the next piece
        for p in pieces:
            if pending:
                p = f"{pending} {p}"
                pending = ""
            marker = opening_marker(p)
            n_words = len(_WORD.findall(p.lower()))
            if marker is not None and n_words == len(_WORD.findall(marker)):
                pending = p
            elif marker is None and n_words < min_words:
                if units:
                    units[-1] = f"{units[-1]}, {p}"
                else:
                    pending = p + ","
            else:
                units.append(p)
        if pending:
            if units:
                units[-1] = f"{units[-1]}, {pending.rstrip(',')}"
            else:
                units.append(pending.rstrip(","))
        for pos, u in enumerate(units):
            edus.append(EDU(text=u, sentence=s_idx, position=pos, marker=opening_marker(u)))
    return edus


def build_graph(edus: list[EDU]) -> list[tuple[int, int, str]]:
    """Typed dependency edges (head, dependent, relation) between EDUs, one per EDU after the first.

    Args:
        edus: the output of :func:`segment` (sentence/position numbering must be consistent).

    Returns:
        edges with head < dependent, in order of the dependent.
    """
    heads: dict[int, int] = {}
    for i, e in enumerate(edus):
        if not isinstance(e, EDU):
            raise ValueError(f"edus[{i}] must be an EDU, got {type(e).__name__}")
        if e.position == 0:
            if e.sentence in heads:
                raise ValueError(f"edus has two heads (position 0) for sentence {e.sentence}")
            heads[e.sentence] = i
        elif e.sentence not in heads:
            raise ValueError(f"edus[{i}] has position {e.position} but sentence {e.sentence} has no head before it")
    edges: list[tuple[int, int, str]] = []
    for i, e in enumerate(edus):
        if i == 0:
            continue
        rel = e.relation
        if rel in ("continuation", "elaboration"):
            head = i - 1
        elif e.position > 0:
            head = heads[e.sentence]
        else:  # a marker opening a sentence links to the previous sentence's head
            head = heads.get(e.sentence - 1, i - 1)
        edges.append((head, i, rel))
    return edges


# ----------------------------------------------------------------------------- the synthetic corpus

TOPIC_STEMS: tuple[str, ...] = (
    "senate", "vaccine", "harbor", "wildfire", "currency", "stadium", "railway", "pipeline",
    "orchard", "satellite", "hospital", "election", "glacier", "factory", "museum", "reservoir",
    "airline", "festival", "mine", "university", "bridge", "drought", "court", "startup",
)
POLARITY_VERBS: tuple[tuple[str, str], ...] = (
    ("rose", "fell"), ("approved", "rejected"), ("confirmed", "denied"), ("won", "lost"),
    ("expanded", "shrank"), ("improved", "worsened"),
)
FILLER_MARKERS: tuple[str, ...] = ("which", "when", "if", "and")
MOTIFS: tuple[str, ...] = ("cause", "contrast", "conclusion", "neutral")


@dataclass
class Corpus:
    """Synthetic articles with labels (0 = real, 1 = fake) and the generator's bookkeeping.

    Attributes:
        texts: the articles as plain text.
        labels: (N,) int64, 1 for fake.
        motifs: per article, the list of (motif, coherent) pairs of its sentences.
    """

    texts: list[str]
    labels: np.ndarray
    motifs: list[list[tuple[str, bool]]]


def _clause(rng: np.random.Generator, topic: int, sign: int, words_per_topic: int) -> str:
    """'the <topic> <verb> <object> <object>' on ``topic`` with polarity ``sign`` (+1 / -1): the topic's
    name is the subject, the objects are two distinct words of the topic's own vocabulary."""
    stem = TOPIC_STEMS[topic]
    w = rng.choice(words_per_topic, size=2, replace=False)
    verb = POLARITY_VERBS[rng.integers(len(POLARITY_VERBS))][0 if sign > 0 else 1]
    return f"the {stem} {verb} {stem}{w[0]} {stem}{w[1]}"


def make_article(rng: np.random.Generator, fake: bool, n_topics: int = 12, words_per_topic: int = 8,
                 min_sentences: int = 4, max_sentences: int = 6, max_fillers: int = 2
                 ) -> tuple[str, list[tuple[str, bool]]]:
    """One article; see the module docstring for the motifs. Returns (text, [(motif, coherent), ...])."""
    topics = [int(t) for t in rng.choice(n_topics, size=3, replace=False)]
    n_sent = int(rng.integers(min_sentences, max_sentences + 1))
    kinds = [str(rng.choice(MOTIFS[:2] + MOTIFS[3:]))] + [str(rng.choice(MOTIFS)) for _ in range(n_sent - 1)]
    for i in range(1, n_sent):  # a conclusion needs a claim sentence as its premise
        if kinds[i] == "conclusion" and kinds[i - 1] == "conclusion":
            kinds[i] = "neutral"
    checked = [i for i, k in enumerate(kinds) if k != "neutral"]
    if not checked:  # every article carries at least one checkable motif
        kinds[0] = str(rng.choice(MOTIFS[:2]))
        checked = [0]
    coherent = {i: True for i in checked}
    if fake:
        k = int(rng.integers(1, len(checked) + 1))
        for i in rng.choice(checked, size=k, replace=False):
            coherent[int(i)] = False

    def other_topic(t: int) -> int:
        """One of the article's two other topics, uniformly."""
        rest = [u for u in topics if u != t]
        return rest[int(rng.integers(2))]

    def pm() -> int:
        return int(rng.choice([-1, 1]))

    sentences, record = [], []
    prev_topic, prev_sign = topics[0], 1
    for i, kind in enumerate(kinds):
        ok = coherent.get(i, True)
        if kind == "conclusion":  # premise = head of the previous sentence
            topic, sign = (prev_topic, prev_sign) if ok else (other_topic(prev_topic), pm())
            marker = str(rng.choice(["Therefore", "Thus", "Consequently"]))
            sentences.append(f"{marker}, {_clause(rng, topic, sign, words_per_topic)}.")
            record.append((kind, ok))
            continue
        head_topic = topics[0] if rng.random() < 0.5 else topics[1 + int(rng.integers(2))]
        sign = pm()
        parts = [_clause(rng, head_topic, sign, words_per_topic).capitalize()]
        for _ in range(int(rng.integers(0, max_fillers + 1))):
            t = head_topic if rng.random() < 1 / 3 else other_topic(head_topic)
            parts.append(f"{rng.choice(FILLER_MARKERS)} {_clause(rng, t, pm(), words_per_topic)}")
        if kind == "cause":
            topic = head_topic if ok else other_topic(head_topic)
            parts.append(f"because {_clause(rng, topic, sign, words_per_topic)}")
        elif kind == "contrast":
            m = str(rng.choice(["but", "although"]))
            parts.append(f"{m} {_clause(rng, head_topic, -sign if ok else sign, words_per_topic)}")
        sentences.append(", ".join(parts) + ".")
        record.append((kind, ok))
        prev_topic, prev_sign = head_topic, sign
    return " ".join(sentences), record


def make_corpus(n: int, seed: int, n_topics: int = 12, words_per_topic: int = 8, min_sentences: int = 4,
                max_sentences: int = 6, max_fillers: int = 2) -> Corpus:
    """``n`` articles, half real and half fake (shuffled), determined by ``seed``.

    Args:
        n: number of articles (>= 2).
        seed: seed of the numpy Generator.
        n_topics: size of the topic pool (3 <= n_topics <= len(TOPIC_STEMS)).
        words_per_topic: object words per topic (>= 2).
        min_sentences, max_sentences: sentence count range, 1 <= min <= max.
        max_fillers: at most this many filler clauses between a claim and its checked EDU (>= 0).
    """
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an int >= 2, got {n!r}")
    if not 3 <= n_topics <= len(TOPIC_STEMS):
        raise ValueError(f"n_topics must be in [3, {len(TOPIC_STEMS)}], got {n_topics}")
    if words_per_topic < 2:
        raise ValueError(f"words_per_topic must be >= 2, got {words_per_topic}")
    if not 1 <= min_sentences <= max_sentences:
        raise ValueError(f"need 1 <= min_sentences <= max_sentences, got {min_sentences}, {max_sentences}")
    if max_fillers < 0:
        raise ValueError(f"max_fillers must be >= 0, got {max_fillers}")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 2).astype(np.int64)
    texts, motifs = [], []
    for y in labels:
        text, rec = make_article(rng, bool(y), n_topics, words_per_topic, min_sentences, max_sentences, max_fillers)
        texts.append(text)
        motifs.append(rec)
    return Corpus(texts=texts, labels=labels, motifs=motifs)
