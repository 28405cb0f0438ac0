"""EDU4FD: fake-news detection from the discourse structure of an article, on a synthetic corpus.

Paper: Yuhang Wang, Li Wang, Yanjie Yang & Yilin Zhang, "Detecting fake news by enhanced text
representation with multi-EDU-structure awareness", Expert Systems with Applications 206, 117781 (2022);
arXiv:2205.15139. No official code was found; the model below follows the paper's description.

An article is split into elementary discourse units (EDUs, :mod:`recurlab.recipes.edu`), each EDU is
encoded, and two views of the EDU sequence are fused:

    EDU encoding      e_i = tanh(W_e mean_{w in EDU i} E[w] + b_e)                      (our choice)
    sequence path     s_i = W_s [ReLU(conv_k(e)_i) for k in kernel_sizes]     (TextCNN over EDUs)
    graph path        h_i^(l+1) = ReLU( sum_r sum_{j in N_r(i)} a^r_ij W_r h_j^(l) ),  h^(0) = e    (RGAT)
                      a^r_ij = softmax_{j in N_r(i)} LeakyReLU(q_r^T W_r h_i + k_r^T W_r h_j)
    fusion            g_i = sigmoid(W_g [s_i; h_i] + b_g),  f_i = g_i * s_i + (1 - g_i) * h_i   (gated sum)
    GRU               o_1..o_T = GRU(f_1..f_T)                (recurlab's ``gru`` token mixer)
    pooling           a_i = softmax_i(u^T tanh(W_p o_i + b_p)),  d = sum_i a_i o_i
    classifier        p(y | article) = softmax(W_c d + b_c)

The relations r are the seven discourse relations of :data:`recurlab.recipes.edu.RELATIONS` (head ->
dependent), their seven inverses (dependent -> head) and a self loop, so N_r(i) of the self loop is {i}
and an EDU hears both the EDU it depends on and the EDUs that depend on it.

Ablations: ``no_graph`` (f_i = s_i), ``no_seq`` (f_i = h_i), and a bag-of-words logistic regression
(unigram + bigram counts, scikit-learn) that shows the corpus's vocabulary carries no label.

The corpus is synthetic and built so that discourse structure carries the label (see
:mod:`recurlab.recipes.edu`): the recipe tests whether the architecture can use discourse structure,
not fake-news detection in the wild. The paper's numbers are on real datasets and are not comparable.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import layers
from ..train.loop import TensorBatches, train_epochs
from . import edu
from .common import RecipeResult, ResultRow

PAPER = ("Wang, Wang, Yang & Zhang, Detecting fake news by enhanced text representation with "
         "multi-EDU-structure awareness (EDU4FD), Expert Systems with Applications, 2022")

VARIANTS: dict[str, tuple[bool, bool]] = {"full": (True, True), "no_graph": (False, True), "no_seq": (True, False)}
"""Model variant -> (use graph path, use sequence path)."""

N_REL = 2 * len(edu.RELATIONS) + 1  # relations, their inverses and the self loop
SELF_LOOP = 2 * len(edu.RELATIONS)
PAD, UNK = 0, 1


@dataclass
class Config:
    """One run's settings (``Config.quick()`` / ``Config.full()``; tests pass a tiny one)."""

    n_train: int = 8000
    n_test: int = 2000
    n_topics: int = 12
    words_per_topic: int = 8
    min_sentences: int = 4
    max_sentences: int = 6
    max_fillers: int = 2
    max_words: int = 8            # words kept per EDU
    d_model: int = 32
    kernel_sizes: tuple[int, ...] = (2, 3)
    rgat_layers: int = 2
    epochs: int = 15
    batch_size: int = 32
    lr: float = 3e-3
    grad_clip: float = 1.0        # the gradient's global L2 norm is clipped to this before every step
    variants: tuple[str, ...] = ("full", "no_graph", "no_seq")
    bow_C: float = 1.0

    @classmethod
    def quick(cls) -> "Config":
        return cls(n_train=3000, n_test=1000, epochs=10)

    @classmethod
    def full(cls) -> "Config":
        return cls()


# ----------------------------------------------------------------------------- featurisation


@dataclass
class Encoded:
    """A corpus as tensors.

    Attributes:
        tokens: (N, T, W) int64 word ids per EDU (0 = padding).
        mask: (N, T) bool, True at real EDUs.
        adj: (N, N_REL, T, T) bool, adj[n, r, i, j] = EDU i hears EDU j under relation r.
        labels: (N,) int64, 1 = fake.
    """

    tokens: torch.Tensor
    mask: torch.Tensor
    adj: torch.Tensor
    labels: torch.Tensor


def build_vocab(texts: list[str]) -> dict[str, int]:
    """Word -> id over the EDUs of ``texts`` (0 = padding, 1 = unknown), in first-seen order."""
    vocab = {"<pad>": PAD, "<unk>": UNK}
    for t in texts:
        for e in edu.segment(t):
            for w in e.words():
                vocab.setdefault(w, len(vocab))
    return vocab


def relation_adjacency(edges: list[tuple[int, int, str]], n_edus: int, max_edus: int) -> np.ndarray:
    """(N_REL, max_edus, max_edus) bool: for edge (h, d, r), d hears h under r and h hears d under r's inverse;
    every EDU hears itself under the self loop."""
    if n_edus > max_edus:
        raise ValueError(f"n_edus ({n_edus}) must be <= max_edus ({max_edus})")
    adj = np.zeros((N_REL, max_edus, max_edus), dtype=bool)
    r_of = {r: k for k, r in enumerate(edu.RELATIONS)}
    for h, d, rel in edges:
        if not (0 <= h < n_edus and 0 <= d < n_edus):
            raise ValueError(f"edge ({h}, {d}, {rel!r}) is outside the {n_edus} EDUs")
        adj[r_of[rel], d, h] = True
        adj[len(edu.RELATIONS) + r_of[rel], h, d] = True
    idx = np.arange(n_edus)
    adj[SELF_LOOP, idx, idx] = True
    return adj


def encode(texts: list[str], labels: np.ndarray, vocab: dict[str, int], max_words: int,
           max_edus: int | None = None) -> Encoded:
    """Segment, build graphs and map words to ids; articles longer than ``max_edus`` are cut."""
    segmented = [edu.segment(t) for t in texts]
    t_max = max_edus or max(len(s) for s in segmented)
    n = len(texts)
    tokens = np.zeros((n, t_max, max_words), dtype=np.int64)
    mask = np.zeros((n, t_max), dtype=bool)
    adj = np.zeros((n, N_REL, t_max, t_max), dtype=bool)
    for a, edus in enumerate(segmented):
        edus = edus[:t_max]
        for i, e in enumerate(edus):
            ids = [vocab.get(w, UNK) for w in e.words()][:max_words]
            tokens[a, i, :len(ids)] = ids
        mask[a, :len(edus)] = True
        adj[a] = relation_adjacency(edu.build_graph(edus), len(edus), t_max)
    return Encoded(torch.from_numpy(tokens), torch.from_numpy(mask), torch.from_numpy(adj),
                   torch.as_tensor(labels, dtype=torch.int64))


# ----------------------------------------------------------------------------- the model


class RGATLayer(nn.Module):
    """Relation-typed graph attention: h_i' = ReLU(sum_r sum_{j in N_r(i)} a^r_ij W_r h_j).

    a^r_ij = softmax over j in N_r(i) of LeakyReLU(q_r . W_r h_i + k_r . W_r h_j) (GAT-style additive
    scores, one W_r, q_r, k_r per relation). A node with no neighbour under r gets no message from r.
    """

    def __init__(self, d_model: int, n_relations: int, negative_slope: float = 0.2):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_relations, d_model, d_model))
        self.q = nn.Parameter(torch.empty(n_relations, d_model))
        self.k = nn.Parameter(torch.empty(n_relations, d_model))
        self.negative_slope = negative_slope
        for p in (self.weight, self.q, self.k):
            nn.init.xavier_uniform_(p)

    def forward(self, h: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        """h: (B, T, d), adj: (B, R, T, T) bool (adj[b, r, i, j]: i hears j) -> (B, T, d)."""
        if h.dim() != 3 or adj.shape != (h.shape[0], self.weight.shape[0], h.shape[1], h.shape[1]):
            raise ValueError(f"h must be (B, T, d) and adj (B, R={self.weight.shape[0]}, T, T); "
                             f"got h {tuple(h.shape)}, adj {tuple(adj.shape)}")
        z = torch.einsum("btd,rde->brte", h, self.weight)  # W_r h_j: (B, R, T, d)
        score_i = torch.einsum("brte,re->brt", z, self.q)
        score_j = torch.einsum("brte,re->brt", z, self.k)
        scores = F.leaky_relu(score_i.unsqueeze(-1) + score_j.unsqueeze(-2), self.negative_slope)
        alpha = torch.softmax(scores.masked_fill(~adj, -1e9), dim=-1) * adj  # rows without neighbours -> 0
        return torch.relu(torch.einsum("brij,brjd->bid", alpha, z))


class TextCNN(nn.Module):
    """Convolutions over consecutive EDUs (one output per EDU): W_s [ReLU(conv_k(e)) for k in kernel_sizes]."""

    def __init__(self, d_model: int, kernel_sizes: tuple[int, ...]):
        super().__init__()
        if not kernel_sizes or any(k < 1 for k in kernel_sizes):
            raise ValueError(f"kernel_sizes must be non-empty positive ints, got {kernel_sizes!r}")
        self.kernel_sizes = tuple(kernel_sizes)
        self.convs = nn.ModuleList(nn.Conv1d(d_model, d_model, k) for k in kernel_sizes)
        self.proj = nn.Linear(len(kernel_sizes) * d_model, d_model)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        """e: (B, T, d) with padded EDUs zeroed -> (B, T, d); window of EDU i = i - (k-1)//2 ... i + k//2."""
        x = e.transpose(1, 2)
        feats = [torch.relu(conv(F.pad(x, ((k - 1) // 2, k // 2)))) for k, conv in zip(self.kernel_sizes, self.convs)]
        return self.proj(torch.cat(feats, dim=1).transpose(1, 2))


class EDU4FD(nn.Module):
    """The EDU4FD classifier (equations in the module docstring). Returns logits (B, 2)."""

    def __init__(self, vocab_size: int, d_model: int = 32, kernel_sizes: tuple[int, ...] = (2, 3),
                 rgat_layers: int = 2, use_graph: bool = True, use_seq: bool = True):
        super().__init__()
        if not (use_graph or use_seq):
            raise ValueError("at least one of use_graph and use_seq must be True")
        if rgat_layers < 1:
            raise ValueError(f"rgat_layers must be >= 1, got {rgat_layers}")
        self.use_graph, self.use_seq = use_graph, use_seq
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=PAD)
        self.edu_proj = nn.Linear(d_model, d_model)
        self.seq = TextCNN(d_model, kernel_sizes) if use_seq else None
        self.rgat = nn.ModuleList(RGATLayer(d_model, N_REL) for _ in range(rgat_layers)) if use_graph else None
        self.gate = nn.Linear(2 * d_model, d_model) if (use_graph and use_seq) else None
        self.gru = layers.build("gru", d_model)
        self.pool_proj = nn.Linear(d_model, d_model)
        self.pool_u = nn.Linear(d_model, 1, bias=False)
        self.classify = nn.Linear(d_model, 2)

    def encode_edus(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: (B, T, W) -> e: (B, T, d), mean of word embeddings then tanh(Linear)."""
        words = (tokens != PAD).unsqueeze(-1)
        mean = (self.embed(tokens) * words).sum(2) / words.sum(2).clamp(min=1)
        return torch.tanh(self.edu_proj(mean))

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        """tokens: (B, T, W) int64, mask: (B, T) bool, adj: (B, N_REL, T, T) bool -> logits (B, 2)."""
        if tokens.dim() != 3 or mask.shape != tokens.shape[:2]:
            raise ValueError(f"tokens must be (B, T, W) and mask (B, T); got {tuple(tokens.shape)}, {tuple(mask.shape)}")
        m = mask.unsqueeze(-1).to(torch.float32)
        e = self.encode_edus(tokens) * m
        if self.seq is not None:
            s = self.seq(e) * m
        if self.rgat is not None:
            h = e
            for layer in self.rgat:
                h = layer(h, adj)
        if self.gate is not None:
            g = torch.sigmoid(self.gate(torch.cat([s, h], dim=-1)))
            f = g * s + (1 - g) * h
        else:
            f = s if self.seq is not None else h
        o, _ = self.gru(f * m)  # right padding: outputs at real EDUs never see the padding
        scores = self.pool_u(torch.tanh(self.pool_proj(o))).squeeze(-1).masked_fill(~mask, float("-inf"))
        doc = (torch.softmax(scores, dim=-1).unsqueeze(-1) * o).sum(1)
        return self.classify(doc)


# ----------------------------------------------------------------------------- training and metrics


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = 2) -> float:
    """Mean over classes of F1 = 2 TP / (2 TP + FP + FN) (a class never seen nor predicted scores 0)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred must have the same shape, got {y_true.shape} and {y_pred.shape}")
    f1 = []
    for c in range(n_classes):
        tp = np.sum((y_pred == c) & (y_true == c))
        denom = 2 * tp + np.sum((y_pred == c) & (y_true != c)) + np.sum((y_pred != c) & (y_true == c))
        f1.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(f1))


def train_model(model: EDU4FD, train: Encoded, cfg: Config, seed: int, progress: bool = True,
                desc: str = "train") -> list[float]:
    """Adam on cross-entropy for ``cfg.epochs`` epochs, gradient norm clipped to ``cfg.grad_clip``, through the
    shared loop (:func:`recurlab.train.loop.train_epochs`); returns the mean training loss of each epoch."""
    batches = TensorBatches((train.tokens, train.mask, train.adj, train.labels), cfg.batch_size,
                            torch.Generator().manual_seed(seed))
    history = train_epochs(model, torch.optim.Adam(model.parameters(), lr=cfg.lr), F.cross_entropy, batches,
                           cfg.epochs, grad_clip=cfg.grad_clip, progress=progress, desc=desc)
    return history.window_loss


@torch.no_grad()
def predict(model: EDU4FD, data: Encoded, batch_size: int = 256) -> np.ndarray:
    """Predicted labels (N,) of ``data``."""
    model.eval()
    out = [model(data.tokens[i:i + batch_size], data.mask[i:i + batch_size], data.adj[i:i + batch_size]).argmax(-1)
           for i in range(0, data.labels.shape[0], batch_size)]
    return torch.cat(out).numpy()


def bag_of_words_baseline(train_texts: list[str], y_train: np.ndarray, test_texts: list[str],
                          C: float = 1.0) -> np.ndarray:
    """Logistic regression on unigram + bigram counts (scikit-learn); returns test predictions."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = CountVectorizer(ngram_range=(1, 2))
    clf = LogisticRegression(C=C, max_iter=2000)
    clf.fit(vec.fit_transform(train_texts), y_train)
    return clf.predict(vec.transform(test_texts))


def _plot(metrics: dict[str, dict[str, float]], curves: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(metrics)
    x = np.arange(len(names))
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for k, (key, label) in enumerate([("accuracy", "accuracy"), ("macro_f1", "macro-F1")]):
        vals = [metrics[n][key] for n in names]
        bars = ax.bar(x + (k - 0.5) * 0.38, vals, 0.38, label=label)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.axhline(0.5, color="grey", ls="--", lw=1, label="chance")
    ax.set_xticks(x, names)
    ax.set_ylim(0, 1.05)
    ax.set_title("held-out test split")
    ax.legend(loc="upper right", fontsize=8)
    for name, c in curves.items():
        ax2.plot(np.arange(1, len(c) + 1), c, marker="o", ms=3, label=name)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("training cross-entropy")
    ax2.set_title("training loss")
    ax2.legend(fontsize=8)
    fig.suptitle("EDU4FD on a synthetic corpus where discourse structure carries the label", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(quick: bool = False, out_dir=None, seed: int = 0, progress: bool = True, config: Config | None = None
        ) -> RecipeResult:
    """Generate the corpus, train every variant of :data:`VARIANTS` in ``config.variants`` and the
    bag-of-words baseline, and report test accuracy and macro-F1 (see the module docstring)."""
    cfg = config or (Config.quick() if quick else Config.full())
    unknown = [v for v in cfg.variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"config.variants has unknown names {unknown}; valid: {list(VARIANTS)}")
    corpus_kw = dict(n_topics=cfg.n_topics, words_per_topic=cfg.words_per_topic, min_sentences=cfg.min_sentences,
                     max_sentences=cfg.max_sentences, max_fillers=cfg.max_fillers)
    train_c = edu.make_corpus(cfg.n_train, seed=2 * seed, **corpus_kw)
    test_c = edu.make_corpus(cfg.n_test, seed=2 * seed + 1, **corpus_kw)
    vocab = build_vocab(train_c.texts)
    max_edus = cfg.max_sentences * (cfg.max_fillers + 2)
    train = encode(train_c.texts, train_c.labels, vocab, cfg.max_words, max_edus)
    test = encode(test_c.texts, test_c.labels, vocab, cfg.max_words, max_edus)

    metrics: dict[str, dict[str, float]] = {}
    curves: dict[str, list[float]] = {}
    seconds: dict[str, float] = {}
    y_test = test_c.labels
    for name in cfg.variants:
        use_graph, use_seq = VARIANTS[name]
        torch.manual_seed(seed)
        model = EDU4FD(len(vocab), cfg.d_model, tuple(cfg.kernel_sizes), cfg.rgat_layers, use_graph, use_seq)
        start = time.perf_counter()
        curves[name] = train_model(model, train, cfg, seed, progress, desc=name)
        seconds[name] = time.perf_counter() - start
        pred = predict(model, test)
        metrics[name] = {"accuracy": float(np.mean(pred == y_test)), "macro_f1": macro_f1(y_test, pred),
                         "parameters": sum(p.numel() for p in model.parameters())}
    bow = bag_of_words_baseline(train_c.texts, train_c.labels, test_c.texts, cfg.bow_C)
    metrics["bag_of_words"] = {"accuracy": float(np.mean(bow == y_test)), "macro_f1": macro_f1(y_test, bow)}

    scale = (f"synthetic corpus ({cfg.n_train} train / {cfg.n_test} test articles, label carried by discourse "
             f"structure); d={cfg.d_model}, {cfg.epochs} epochs; paper: real news datasets")
    labels = {"full": "EDU4FD (graph + sequence)", "no_graph": "without graph path (TextCNN only)",
              "no_seq": "without sequence path (RGAT only)", "bag_of_words": "bag-of-words logistic regression"}
    rows = []
    for name, m in metrics.items():
        rows.append(ResultRow(metric=f"test accuracy, {labels[name]}", ours=m["accuracy"], paper="-", scale=scale))
        rows.append(ResultRow(metric=f"test macro-F1, {labels[name]}", ours=m["macro_f1"], paper="-", scale=scale))
    result = RecipeResult(recipe="fake_news", quick=quick, seed=seed, rows=rows, details={
        "config": asdict(cfg), "metrics": metrics, "train_loss": curves, "train_seconds": seconds,
        "vocab_size": len(vocab), "mean_edus_per_article": float(train.mask.sum(1).float().mean()),
        "majority_class_accuracy": float(max(np.mean(y_test), 1 - np.mean(y_test))),
    })
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / "fake_news_variants.png"
        _plot(metrics, curves, path)
        result.files.append(str(path))
    return result
