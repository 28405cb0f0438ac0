"""Learnable commutative monoid (LCM) aggregators (Ong & Veličković, "Learnable Commutative Monoids for Graph
Neural Networks", LoG 2022, arXiv 2212.08541; reference implementation: PyTorch Geometric's ``LCMAggregation``),
compared with sum, mean, max and a sequential GRU aggregator on set and graph tasks where sum does not
generalise from small to large sets.

The aggregators reduce a set {x_1, ..., x_n} of projected element features (all aggregators see the same
projection phi(x) = ReLU(W e(x) + b), PyG's ``project=True``) to one vector of width d:

    sum:  Σ_i x_i          mean: (1/n) Σ_i x_i          max: max_i x_i (per channel)
    gru:  h_t = GRU(x_t, h_{t-1}), h_0 = 0, output h_n: the set read in its given order (depth n)
    lcm:  a binary operator made commutative by symmetrising a GRU cell,

              x ⊕ y = ½ [ GRUCell(input=x, hidden=y) + GRUCell(input=y, hidden=x) ]

          applied as a balanced binary tree: level by level, neighbours (1,2), (3,4), ... are combined; an odd
          element left over at the end of a level is carried up unchanged (as PyG does); ceil(log2 n) levels.
          For n = 5: ((x1 ⊕ x2) ⊕ (x3 ⊕ x4)) ⊕ x5.

The operator is exactly commutative (x ⊕ y == y ⊕ x bit for bit: the two cell calls are the same
computations summed in the other order), so the tree is exactly invariant under swapping the two subtrees of
any node. It is not associative (associativity is only approximated by training), so the tree result depends
on the order of the elements in general: :func:`permutation_sensitivity` measures how often a trained model's
prediction changes when a set is shuffled.

Padding: a batch of sets is padded to a common length with a mask that must be a prefix (the valid elements
first). In the tree, padding acts as the monoid's identity: x ⊕ pad = x and pad ⊕ pad = pad, so a padded set
gives the same result as the unpadded one (PyG instead pads with zero vectors that are reduced like elements,
which makes a node's result depend on the largest degree in its batch). The sequential GRU reads the set
including padding and returns the state after the last valid element, which padding after it cannot change.

Built from recurlab's parts: the sequential aggregator is recurlab's ``gru`` token mixer (``torch.nn.GRU``,
d_model = hidden = d, so its output projection is the identity); the LCM operator uses ``torch.nn.GRUCell``,
the same cell, one step at a time, because the tree calls it on pairs rather than along a sequence.

Tasks (element values are small integers, embedded and projected; a readout MLP maps the aggregate to classes):

- ``second_largest``: a multiset of n values in [0, K); the class is its second-largest value. Sets are drawn
  with a planted top pair (second largest s ~ U[0, K), largest t ~ U[s, K), the other n - 2 values ~ U[0, s]),
  so the class distribution does not depend on n and large sets are not trivially "K - 1".
- ``parity``: n bits; the class is the parity of the number of ones (counts beyond the training sizes are unseen).
- ``graph_second_min``: Erdős–Rényi graphs with node values in [0, K); for every node v with at least one
  neighbour the class is the second-smallest value of the multiset {x_v} ∪ {x_u : u ∈ N(v)}. A one-layer GNN
  aggregates phi(x_u) over the neighbours (in node-index order) and reads out MLP([agg, e_root(x_v)]); the set
  size is the degree. Training graphs are sparse, test graphs denser.

Training: every (task, aggregator) pair trains through :func:`recurlab.train.loop.train_epochs` on sets of size
2..``train_max_size`` (degree 1..``train_max_size`` for the graph task) with Adam; the epoch with the lowest
cross-entropy on a held-out set *within* the training range is kept. Test accuracy is measured per set size up to
``max(test_sizes)``, far outside the training range. Aggregation time: the forward pass of each aggregator
alone on random features, per set size (min over repeats), with the sequential depth (n cell steps for the GRU,
ceil(log2 n) tree levels for LCM).

Deviations from the paper (also in docs/recipes/lcm_aggregate.md): synthetic tasks of our own design in the
spirit of the paper's (second-minimum/-maximum, parity-like counting, neighbourhoods of random graphs) rather
than its exact benchmarks; one message-passing layer; small widths and short training; CPU, single thread,
so timing shows per-call overheads and total work rather than GPU parallelism; padding as identity (above).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..train.loop import TensorBatches, train_epochs
from .common import RecipeResult, ResultRow

PAPER = "Ong & Veličković, Learnable Commutative Monoids for Graph Neural Networks, LoG 2022"

AGGREGATORS = ("sum", "mean", "max", "gru", "lcm")
TASKS = ("second_largest", "parity", "graph_second_min")


# ----------------------------------------------------------------------------- aggregators

def _check_set_batch(x: torch.Tensor, mask: torch.Tensor) -> None:
    if x.ndim != 3:
        raise ValueError(f"x must be (B, N, d), got shape {tuple(x.shape)}")
    if mask.dtype != torch.bool or mask.shape != x.shape[:2]:
        raise ValueError(f"mask must be a bool tensor of shape {tuple(x.shape[:2])}, got {mask.dtype} "
                         f"{tuple(mask.shape)}")
    if x.shape[1] == 0 or not bool(mask[:, 0].all()):
        raise ValueError("every set needs at least one element: mask[:, 0] must be all True")
    if bool((mask[:, 1:] & ~mask[:, :-1]).any()):
        raise ValueError("mask must be a prefix per set (valid elements first, padding after)")


class SumAggregation(nn.Module):
    """Σ over the valid elements: x (B, N, d), mask (B, N) -> (B, d)."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        _check_set_batch(x, mask)
        return (x * mask.unsqueeze(-1).to(x.dtype)).sum(1)


class MeanAggregation(nn.Module):
    """Mean over the valid elements: x (B, N, d), mask (B, N) -> (B, d)."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        _check_set_batch(x, mask)
        m = mask.unsqueeze(-1).to(x.dtype)
        return (x * m).sum(1) / m.sum(1)


class MaxAggregation(nn.Module):
    """Channel-wise max over the valid elements: x (B, N, d), mask (B, N) -> (B, d)."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        _check_set_batch(x, mask)
        return x.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1)


class GRUAggregation(nn.Module):
    """The set read in its given order by recurlab's ``gru`` mixer; the state after the last valid element.

    x (B, N, d), mask (B, N) (a prefix) -> (B, d). Depth: N sequential cell steps.
    """

    def __init__(self, d: int):
        super().__init__()
        from .. import layers

        self.gru = layers.build("gru", d_model=d)  # hidden = d: the mixer's output projection is the identity

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        _check_set_batch(x, mask)
        y, _ = self.gru(x)  # y[:, t] = h_{t+1}; padding comes after the valid elements, so it cannot reach them
        last = mask.sum(1) - 1
        return y[torch.arange(x.shape[0]), last]


def lcm_op(cell: nn.GRUCell, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """The commutative operator left ⊕ right = ½ [cell(left, right) + cell(right, left)] (input, hidden).

    left, right: (M, d) -> (M, d). Both orders run in one batched cell call.
    """
    if left.shape != right.shape or left.ndim != 2:
        raise ValueError(f"left and right must be equal (M, d) tensors, got {tuple(left.shape)} and {tuple(right.shape)}")
    m = left.shape[0]
    both = cell(torch.cat([left, right]), torch.cat([right, left]))
    return 0.5 * (both[:m] + both[m:])


def tree_reduce(op, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Balanced-tree reduction of every set with the binary ``op`` ((M, d), (M, d) -> (M, d)).

    x (B, N, d), mask (B, N) bool (a prefix) -> (B, d). Each level combines positions (0, 1), (2, 3), ...; an odd
    last position is carried to the next level unchanged; ceil(log2 N) levels. Padding is the identity
    (x ⊕ pad = x), so the result equals the reduction of the unpadded set. ``op`` runs only on pairs of valid
    elements (one batched call per level).
    """
    _check_set_batch(x, mask)
    while x.shape[1] > 1:
        carry = None
        if x.shape[1] % 2:
            carry = (x[:, -1:], mask[:, -1:])
            x, mask = x[:, :-1], mask[:, :-1]
        left, right = x[:, 0::2], x[:, 1::2]
        m_left, m_right = mask[:, 0::2], mask[:, 1::2]
        both = m_left & m_right
        if bool(both.all()):  # no padding at this level: one call on all pairs
            out = op(left.reshape(-1, left.shape[-1]), right.reshape(-1, right.shape[-1])).view(left.shape)
        else:
            out = torch.where(m_left.unsqueeze(-1), left, right)  # one side padding: the other side (identity)
            if bool(both.any()):
                out = out.clone()
                out[both] = op(left[both], right[both])
        x, mask = out, m_left | m_right
        if carry is not None:
            x, mask = torch.cat([x, carry[0]], 1), torch.cat([mask, carry[1]], 1)
    return x[:, 0]


class LCMAggregation(nn.Module):
    """The learnable commutative monoid aggregator: the GRU-cell operator :func:`lcm_op` reduced as a balanced
    tree (:func:`tree_reduce`). x (B, N, d), mask (B, N) (a prefix) -> (B, d). Depth: ceil(log2 N) levels."""

    def __init__(self, d: int):
        super().__init__()
        self.cell = nn.GRUCell(d, d)

    def op(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return lcm_op(self.cell, left, right)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return tree_reduce(self.op, x, mask)


def make_aggregator(name: str, d: int) -> nn.Module:
    """One of :data:`AGGREGATORS` for features of width d."""
    if name not in AGGREGATORS:
        raise ValueError(f"aggregator must be one of {', '.join(AGGREGATORS)}, got {name!r}")
    if name == "gru":
        return GRUAggregation(d)
    if name == "lcm":
        return LCMAggregation(d)
    return {"sum": SumAggregation, "mean": MeanAggregation, "max": MaxAggregation}[name]()


def tree_depth(n: int) -> int:
    """Levels of the balanced tree over n elements: ceil(log2 n)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return math.ceil(math.log2(n)) if n > 1 else 0


# ----------------------------------------------------------------------------- the model

class SetNet(nn.Module):
    """rho(aggregate_i phi(x_i) [, e_root(x_v)]): values (B, N) int64 in [0, n_values), lengths (B,) >= 1,
    own (B,) int64 (the node's own value; used only with ``root``) -> logits (B, n_classes).

    phi(x) = ReLU(W e(x) + b) (PyG's ``project=True``); rho = Linear-ReLU-Linear.
    """

    def __init__(self, aggregator: str, n_values: int, n_classes: int, d: int = 32, hidden: int = 64,
                 root: bool = False):
        super().__init__()
        self.n_values = n_values
        self.embed = nn.Embedding(n_values, d)
        self.project = nn.Linear(d, d)
        self.aggregate = make_aggregator(aggregator, d)
        self.root = nn.Embedding(n_values, d) if root else None
        self.readout = nn.Sequential(nn.Linear(d * (2 if root else 1), hidden), nn.ReLU(), nn.Linear(hidden, n_classes))

    def forward(self, values: torch.Tensor, lengths: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
        if values.ndim != 2 or lengths.shape != values.shape[:1] or own.shape != values.shape[:1]:
            raise ValueError(f"values must be (B, N), lengths and own (B,), got {tuple(values.shape)}, "
                             f"{tuple(lengths.shape)}, {tuple(own.shape)}")
        if values.numel() and (int(values.min()) < 0 or int(values.max()) >= self.n_values):
            raise ValueError(f"values must lie in [0, {self.n_values})")
        mask = torch.arange(values.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)
        h = F.relu(self.project(self.embed(values)))
        a = self.aggregate(h, mask)
        if self.root is not None:
            a = torch.cat([a, self.root(own)], -1)
        return self.readout(a)


# ----------------------------------------------------------------------------- data

@dataclass
class SetData:
    """Padded sets: values (M, N) int64 (0 after each set's end), lengths (M,), own (M,) (the root value, graph
    task; zeros otherwise), targets (M,) int64."""

    values: torch.Tensor
    lengths: torch.Tensor
    own: torch.Tensor
    targets: torch.Tensor

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return self.values, self.lengths, self.own, self.targets

    def __len__(self) -> int:
        return len(self.targets)


def _pad(rows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    out = np.zeros((len(rows), int(lengths.max())), dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out, lengths


def _to_data(values: np.ndarray, lengths: np.ndarray, own: np.ndarray, targets: np.ndarray) -> SetData:
    return SetData(torch.as_tensor(values), torch.as_tensor(lengths), torch.as_tensor(own), torch.as_tensor(targets))


def _check_sizes(sizes: np.ndarray, smallest: int) -> np.ndarray:
    sizes = np.asarray(sizes, dtype=np.int64)
    if sizes.ndim != 1 or len(sizes) == 0 or sizes.min() < smallest:
        raise ValueError(f"sizes must be a non-empty 1-d array of ints >= {smallest}")
    return sizes


def second_largest_sets(sizes, n_values: int, rng: np.random.Generator) -> SetData:
    """One multiset per entry of ``sizes`` (each >= 2) with values in [0, n_values); target: its second-largest
    value. Planted top pair: s ~ U[0, K), t ~ U[s, K), the other n - 2 values ~ U[0, s]; shuffled."""
    sizes = _check_sizes(sizes, 2)
    if n_values < 2:
        raise ValueError(f"n_values must be >= 2, got {n_values}")
    s = rng.integers(0, n_values, size=len(sizes))
    t = rng.integers(s, n_values)
    rows = []
    for i, n in enumerate(sizes):
        row = np.concatenate([[t[i], s[i]], rng.integers(0, s[i] + 1, size=n - 2)])
        rows.append(rng.permutation(row))
    values, lengths = _pad(rows)
    return _to_data(values, lengths, np.zeros(len(sizes), dtype=np.int64), s.astype(np.int64))


def parity_sets(sizes, rng: np.random.Generator) -> SetData:
    """One set of bits per entry of ``sizes`` (each >= 1); target: the parity of its number of ones."""
    sizes = _check_sizes(sizes, 1)
    rows = [rng.integers(0, 2, size=n) for n in sizes]
    values, lengths = _pad(rows)
    return _to_data(values, lengths, np.zeros(len(sizes), dtype=np.int64),
                    np.array([r.sum() % 2 for r in rows], dtype=np.int64))


def random_graph(n_nodes: int, mean_degree: float, rng: np.random.Generator) -> np.ndarray:
    """Erdős–Rényi G(n, p) with p = mean_degree / (n - 1): a symmetric bool adjacency (n, n) without self-loops."""
    if n_nodes < 2 or not 0 < mean_degree <= n_nodes - 1:
        raise ValueError(f"need n_nodes >= 2 and 0 < mean_degree <= n_nodes - 1, got {n_nodes}, {mean_degree}")
    upper = np.triu(rng.random((n_nodes, n_nodes)) < mean_degree / (n_nodes - 1), 1)
    return upper | upper.T


def second_min_neighbourhoods(adjacency: np.ndarray, node_values: np.ndarray) -> SetData:
    """Every node with >= 1 neighbour: its neighbours' values in node-index order, its own value, and the target
    second-smallest value of {x_v} ∪ {x_u : u ∈ N(v)} (a multiset)."""
    if adjacency.ndim != 2 or adjacency.shape[0] != adjacency.shape[1] or node_values.shape != adjacency.shape[:1]:
        raise ValueError(f"adjacency must be (n, n) and node_values (n,), got {adjacency.shape}, {node_values.shape}")
    rows, own, targets = [], [], []
    for v in range(adjacency.shape[0]):
        neighbours = np.flatnonzero(adjacency[v])
        if len(neighbours) == 0:
            continue
        vals = node_values[neighbours]
        rows.append(vals)
        own.append(node_values[v])
        targets.append(np.sort(np.append(vals, node_values[v]))[1])
    if not rows:
        raise ValueError("the graph has no node with a neighbour")
    values, lengths = _pad(rows)
    return _to_data(values, lengths, np.array(own, dtype=np.int64), np.array(targets, dtype=np.int64))


def _concat(parts: list[SetData]) -> SetData:
    width = max(p.values.shape[1] for p in parts)
    values = torch.cat([F.pad(p.values, (0, width - p.values.shape[1])) for p in parts])
    return SetData(values, torch.cat([p.lengths for p in parts]), torch.cat([p.own for p in parts]),
                   torch.cat([p.targets for p in parts]))


def _select(data: SetData, keep: torch.Tensor) -> SetData:
    idx = keep.nonzero().squeeze(1) if keep.dtype == torch.bool else keep
    lengths = data.lengths[idx]
    width = int(lengths.max()) if len(idx) else 1
    return SetData(data.values[idx, :width], lengths, data.own[idx], data.targets[idx])


def graph_nodes(n_target: int, n_nodes: int, mean_degree: float, degree_range: tuple[int, int], n_values: int,
                rng: np.random.Generator, max_graphs: int = 1000) -> SetData:
    """Nodes with degree in ``degree_range`` (inclusive) from fresh random graphs until ``n_target`` are collected."""
    lo, hi = degree_range
    if not 1 <= lo <= hi:
        raise ValueError(f"degree_range must be (lo, hi) with 1 <= lo <= hi, got {degree_range}")
    parts, count = [], 0
    for _ in range(max_graphs):
        adjacency = random_graph(n_nodes, mean_degree, rng)
        data = second_min_neighbourhoods(adjacency, rng.integers(0, n_values, size=n_nodes))
        keep = (data.lengths >= lo) & (data.lengths <= hi)
        if bool(keep.any()):
            parts.append(_select(data, keep))
            count += int(keep.sum())
        if count >= n_target:
            break
    else:
        raise ValueError(f"could not collect {n_target} nodes of degree {lo}..{hi} from {max_graphs} graphs of "
                         f"{n_nodes} nodes, mean degree {mean_degree}")
    out = _concat(parts)
    return _select(out, torch.arange(n_target))


def degree_bucket(size: int) -> tuple[int, int]:
    """The degrees counted as test size ``size`` in the graph task: size ± size // 4."""
    return max(1, size - size // 4), size + size // 4


# ----------------------------------------------------------------------------- the recipe

@dataclass
class Config:
    tasks: tuple[str, ...] = TASKS
    aggregators: tuple[str, ...] = AGGREGATORS
    n_values: int = 16  # K: values in [0, K) for second_largest
    graph_values: int = 16  # node values in [0, graph_values) for graph_second_min (larger values make high
    # degrees less degenerate but need more data: 64 did not train at the quick scale)
    train_max_size: int = 8  # training sets have 2..train_max_size elements (graph: degree 1..train_max_size)
    test_sizes: tuple[int, ...] = (2, 4, 8, 16, 32, 64)
    n_train: int = 5000
    n_val: int = 1000
    n_test: int = 1000  # per test size
    graph_nodes: int = 256  # nodes per random graph (>= 4 * max(test_sizes))
    d: int = 32
    hidden: int = 64
    epochs: int = 20
    batch_size: int = 64
    lr: float = 3e-3
    timing_sizes: tuple[int, ...] = (2, 4, 8, 16, 32, 64, 128, 256, 512)
    timing_batches: tuple[int, ...] = (1, 64)  # sets per forward: 1 shows depth (latency), 64 shows total work
    timing_repeats: int = 5

    @classmethod
    def quick(cls) -> "Config":
        return cls(n_train=2000, n_val=400, n_test=300, epochs=10, test_sizes=(2, 4, 8, 16, 32),
                   timing_sizes=(2, 8, 32, 128), timing_repeats=3)

    @classmethod
    def full(cls) -> "Config":
        return cls()

    def check(self) -> None:
        bad = [t for t in self.tasks if t not in TASKS]
        if not self.tasks or bad:
            raise ValueError(f"tasks must be a non-empty subset of {', '.join(TASKS)}, got {self.tasks}")
        bad = [a for a in self.aggregators if a not in AGGREGATORS]
        if not self.aggregators or bad:
            raise ValueError(f"aggregators must be a non-empty subset of {', '.join(AGGREGATORS)}, got {self.aggregators}")
        if self.n_values < 2 or self.graph_values < 2:
            raise ValueError(f"n_values and graph_values must be >= 2, got {self.n_values}, {self.graph_values}")
        if self.train_max_size < 2:
            raise ValueError(f"train_max_size must be >= 2, got {self.train_max_size}")
        if not self.test_sizes or min(self.test_sizes) < 2:
            raise ValueError(f"test_sizes must be non-empty ints >= 2, got {self.test_sizes}")
        if not self.timing_sizes or min(self.timing_sizes) < 1:
            raise ValueError(f"timing_sizes must be non-empty ints >= 1, got {self.timing_sizes}")
        if not self.timing_batches or min(self.timing_batches) < 1:
            raise ValueError(f"timing_batches must be non-empty ints >= 1, got {self.timing_batches}")
        for name in ("n_train", "n_val", "n_test", "d", "hidden", "epochs", "batch_size", "timing_repeats"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.graph_nodes < 4 * max(self.test_sizes):
            raise ValueError(f"graph_nodes must be >= 4 * max(test_sizes) = {4 * max(self.test_sizes)} so that "
                             f"test graphs can reach their degrees, got {self.graph_nodes}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")


def _rng(seed: int, task: str, split: str) -> np.random.Generator:
    return np.random.default_rng([seed, TASKS.index(task), ("train", "val", "test", "perm").index(split)])


def task_classes(task: str, cfg: Config) -> tuple[int, int]:
    """(number of input values, number of classes) of a task."""
    if task == "parity":
        return 2, 2
    return (cfg.graph_values,) * 2 if task == "graph_second_min" else (cfg.n_values,) * 2


def make_train(task: str, n: int, cfg: Config, rng: np.random.Generator) -> SetData:
    """n training (or validation) examples with set sizes in the training range."""
    if task == "graph_second_min":
        mean_degree = (cfg.train_max_size + 1) / 2
        return graph_nodes(n, cfg.graph_nodes, mean_degree, (1, cfg.train_max_size), cfg.graph_values, rng)
    sizes = rng.integers(2, cfg.train_max_size + 1, size=n)
    return parity_sets(sizes, rng) if task == "parity" else second_largest_sets(sizes, cfg.n_values, rng)


def make_test(task: str, size: int, n: int, cfg: Config, rng: np.random.Generator) -> SetData:
    """n test examples of set size ``size`` (graph task: degree in :func:`degree_bucket`)."""
    if task == "graph_second_min":
        return graph_nodes(n, cfg.graph_nodes, float(size), degree_bucket(size), cfg.graph_values, rng)
    sizes = np.full(n, size)
    return parity_sets(sizes, rng) if task == "parity" else second_largest_sets(sizes, cfg.n_values, rng)


def predict(model: nn.Module, data: SetData, batch_size: int = 1000) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        out = torch.cat([model(data.values[i:i + batch_size], data.lengths[i:i + batch_size], data.own[i:i + batch_size])
                         .argmax(-1) for i in range(0, len(data), batch_size)])
    model.train()
    return out


def accuracy(model: nn.Module, data: SetData) -> float:
    return float((predict(model, data) == data.targets).float().mean())


def shuffle_sets(data: SetData, rng: np.random.Generator) -> SetData:
    """Each set's valid elements in a random order (padding stays at the end)."""
    values = data.values.clone()
    for i, n in enumerate(data.lengths.tolist()):
        values[i, :n] = values[i, torch.as_tensor(rng.permutation(n))]
    return SetData(values, data.lengths, data.own, data.targets)


def permutation_sensitivity(model: nn.Module, data: SetData, rng: np.random.Generator) -> float:
    """The fraction of sets whose predicted class changes when their elements are shuffled once."""
    return float((predict(model, data) != predict(model, shuffle_sets(data, rng))).float().mean())


def train_model(task: str, aggregator: str, train: SetData, val: SetData, cfg: Config, seed: int,
                progress: bool = False) -> tuple[SetNet, dict]:
    """Train one (task, aggregator) model with Adam through the shared loop; the epoch with the lowest in-range
    validation cross-entropy is kept (not accuracy, which saturates at 1.0 and would keep the first epoch to
    reach it). Returns the model and its curves."""
    n_in, n_classes = task_classes(task, cfg)
    torch.manual_seed(seed)
    model = SetNet(aggregator, n_in, n_classes, cfg.d, cfg.hidden, root=task == "graph_second_min")
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    batches = TensorBatches(train.tensors(), cfg.batch_size, torch.Generator().manual_seed(seed))
    history = train_epochs(model, opt, F.cross_entropy, batches, cfg.epochs,
                           validate=lambda: validation_metrics(model, val), select="val_loss",
                           progress=progress, desc=f"{task}/{aggregator}")
    return model, {"loss": history.window_loss, "val_loss": [v["val_loss"] for v in history.val],
                   "val_accuracy": [v["val_accuracy"] for v in history.val], "best_epoch": history.best_window + 1}


def validation_metrics(model: nn.Module, data: SetData, batch_size: int = 1000) -> dict[str, float]:
    """Mean cross-entropy and accuracy on ``data`` (no gradients)."""
    model.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(data), batch_size):
            logits = model(data.values[i:i + batch_size], data.lengths[i:i + batch_size], data.own[i:i + batch_size])
            target = data.targets[i:i + batch_size]
            loss += float(F.cross_entropy(logits, target, reduction="sum"))
            correct += int((logits.argmax(-1) == target).sum())
    model.train()
    return {"val_loss": loss / len(data), "val_accuracy": correct / len(data)}


def time_aggregators(cfg: Config, seed: int, aggregators=AGGREGATORS) -> dict[str, dict[str, list[float]]]:
    """Seconds of one forward pass of each aggregator alone (no grad, min over ``timing_repeats``) on
    (B, n, d) random features, for B in ``timing_batches`` and n in ``timing_sizes``: {str(B): {aggregator: [s]}}."""
    torch.manual_seed(seed)
    modules = {a: make_aggregator(a, cfg.d).eval() for a in aggregators}
    out = {str(b): {a: [] for a in aggregators} for b in cfg.timing_batches}
    with torch.no_grad():
        for b, n in ((b, n) for b in cfg.timing_batches for n in cfg.timing_sizes):
            x = torch.randn(b, n, cfg.d)
            mask = torch.ones(b, n, dtype=torch.bool)
            for a, module in modules.items():
                module(x, mask)  # warm-up
                best = float("inf")
                for _ in range(cfg.timing_repeats):
                    start = time.perf_counter()
                    module(x, mask)
                    best = min(best, time.perf_counter() - start)
                out[str(b)][a].append(best)
    return out


def _plot(cfg: Config, accuracies: dict, baselines: dict, timing: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = {"second_largest": "second-largest of a multiset", "parity": "parity of the number of ones",
              "graph_second_min": "second-min of closed neighbourhood (G(n,p))"}
    fig, axes = plt.subplots(1, len(cfg.tasks) + 1, figsize=(4.6 * (len(cfg.tasks) + 1), 3.8))
    for ax, task in zip(axes, cfg.tasks):
        lo = 1 if task == "graph_second_min" else 2
        ax.axvspan(lo, cfg.train_max_size, color="0.85", label="training sizes")
        for k, a in enumerate(cfg.aggregators):
            ax.plot(cfg.test_sizes, accuracies[task][a], marker="o", color=f"C{k}", label=a)
        ax.plot(cfg.test_sizes, baselines[task], "k:", label="majority class")
        ax.set_xscale("log", base=2)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("degree" if task == "graph_second_min" else "set size")
        ax.set_ylabel("test accuracy")
        ax.set_title(titles[task], fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    ax = axes[-1]
    styles = ["-", "--", ":", "-."]
    for j, b in enumerate(cfg.timing_batches):
        for k, a in enumerate(cfg.aggregators):
            ax.plot(cfg.timing_sizes, [1e3 * s for s in timing[str(b)][a]], styles[j % 4], marker="o", ms=3,
                    color=f"C{k}", label=f"{a}, {b} set{'s' if b > 1 else ''}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("set size n")
    ax.set_ylabel(f"ms per forward (d={cfg.d}, CPU, 1 thread)")
    ax.set_title("aggregation time (gru: n steps, lcm: ceil(log2 n) levels)", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(quick: bool = False, out_dir=None, seed: int = 0, progress: bool = True, config: Config | None = None) -> RecipeResult:
    """Train every (task, aggregator) on small sets, test on sets up to max(test_sizes); time the aggregators."""
    cfg = config or (Config.quick() if quick else Config.full())
    cfg.check()
    accuracies, baselines, curves, in_range, sensitivity = {}, {}, {}, {}, {}
    largest = max(cfg.test_sizes)
    for task in cfg.tasks:
        train = make_train(task, cfg.n_train, cfg, _rng(seed, task, "train"))
        val = make_train(task, cfg.n_val, cfg, _rng(seed, task, "val"))
        test_rng = _rng(seed, task, "test")
        tests = [make_test(task, s, cfg.n_test, cfg, test_rng) for s in cfg.test_sizes]
        n_classes = task_classes(task, cfg)[1]
        baselines[task] = [float(torch.bincount(t.targets, minlength=n_classes).max()) / len(t) for t in tests]
        accuracies[task], curves[task], in_range[task], sensitivity[task] = {}, {}, {}, {}
        for a in cfg.aggregators:
            model, curves[task][a] = train_model(task, a, train, val, cfg, seed, progress)
            in_range[task][a] = accuracy(model, val)
            accuracies[task][a] = [accuracy(model, t) for t in tests]
            sensitivity[task][a] = permutation_sensitivity(model, tests[-1], _rng(seed, task, "perm"))
    timing = time_aggregators(cfg, seed, cfg.aggregators)

    train_desc = {"second_largest": f"sets of 2..{cfg.train_max_size}", "parity": f"sets of 2..{cfg.train_max_size}",
                  "graph_second_min": f"degree 1..{cfg.train_max_size}"}
    paper_acc = {"lcm": "competitive with gru (qualitative)",
                 "gru": "competitive with or above sum/mean/max (qualitative)"}
    rows = []
    for task in cfg.tasks:
        size_name = "degree" if task == "graph_second_min" else "set size"
        scale = (f"synthetic, {cfg.n_train} training examples, d={cfg.d}, {cfg.epochs} epochs"
                 + {"parity": "", "second_largest": f", values in [0, {cfg.n_values})",
                    "graph_second_min": f", values in [0, {cfg.graph_values})"}[task])
        for a in cfg.aggregators:
            rows.append(ResultRow(f"{task}: accuracy at {size_name} {largest}, {a}", accuracies[task][a][-1],
                                  paper_acc.get(a, "-"), f"{scale}; trained on {train_desc[task]}"))
        rows.append(ResultRow(f"{task}: accuracy at {size_name} {largest}, majority class", baselines[task][-1], "-",
                              scale))
    for task in cfg.tasks:
        for a in ("lcm", "gru"):
            if a in cfg.aggregators:
                rows.append(ResultRow(f"{task}: share of predictions changed by shuffling, size {largest}, {a}",
                                      sensitivity[task][a], "-", "one random permutation per test set"))
    n_max = max(cfg.timing_sizes)
    for b in cfg.timing_batches:
        for a in ("gru", "lcm"):
            if a in cfg.aggregators:
                depth = n_max if a == "gru" else tree_depth(n_max)
                rows.append(ResultRow(f"aggregation time, {b} set{'s' if b > 1 else ''} of n={n_max}, {a} "
                                      f"(ms; depth {depth})", 1e3 * timing[str(b)][a][cfg.timing_sizes.index(n_max)],
                                      "O(n) depth" if a == "gru" else "O(log n) depth",
                                      f"d={cfg.d}, CPU, 1 thread; forward only, min of {cfg.timing_repeats}", ".3f"))

    result = RecipeResult(recipe="lcm_aggregate", quick=quick, seed=seed, rows=rows, details={
        "config": asdict(cfg), "test_sizes": list(cfg.test_sizes), "accuracy": accuracies, "majority": baselines,
        "val_accuracy_in_range": in_range, "permutation_sensitivity": sensitivity, "curves": curves,
        "timing_sizes": list(cfg.timing_sizes), "timing_seconds": timing,
        "depth": {"gru": list(cfg.timing_sizes), "lcm": [tree_depth(n) for n in cfg.timing_sizes]},
        "timing_note": "wall-clock, not deterministic; min over repeats"})
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / "lcm_aggregate.png"
        _plot(cfg, accuracies, baselines, timing, path)
        result.files.append(str(path))
    return result
