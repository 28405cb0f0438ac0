"""Structural-recursion tasks: binary successor and binary-tree traversal, with depth-based splits.

Zhang, Tigges, Zhang, Biderman, Raginsky & Ringer 2024, "Transformer-Based Models Are Not Yet
Perfect At Learning to Emulate Structural Recursion" (TMLR; arXiv:2401.12947). The paper writes
values of inductive data types as token sequences and trains small transformers on input/output
pairs of two structurally recursive functions:

    binary successor   data bin = Z | B0 bin | B1 bin        (a number's bits, least significant
                       succ Z      = B1 Z                      bit outermost)
                       succ (B0 n) = B1 n
                       succ (B1 n) = B0 (succ n)              the carry: recursion on trailing ones
    tree traversal     data tree = Leaf | Node value tree tree
                       pre/in/post-order: the node values in that order

It finds that the models fit shortcuts instead of the recursion: they fail on edge cases that the
training distribution under-represents (long carry chains, i.e. many trailing ones) and on inputs
longer or deeper than those seen in training. recurlab rebuilds the tasks for its own models; the
paper's exact token format is not reproduced (not verified), the choices below are ours.

Sequence format (both tasks): ``source SEP target EOS PAD...``, trained as next-token prediction
(``inputs`` = sequence[:-1], ``labels`` = sequence[1:]) with labels only on the target tokens and
EOS (IGNORE = -100 elsewhere): the label at the SEP position is the first target token. EOS is
only ever a label (the input after the last target token is PAD).

* Successor (vocabulary 5): PAD 0, SEP 1, EOS 2, bit 0 -> 3, bit 1 -> 4. A number of n bits has
  its top bit set (no leading zeros; n >= 1). ``bit_order="lsb"`` (default) writes the least
  significant bit first, the order of the constructors in the inductive term (B1 (B0 (B1 Z)) = 5
  -> ``1 0 1``), so the carry runs over the first tokens; ``"msb"`` writes the usual way. The
  target is the successor in the same order (n or n + 1 bits). Length = n = the term's depth.
* Traversal (vocabulary 6 + n_values): PAD 0, SEP 1, EOS 2, "(" 3, ")" 4, NIL 5 (empty subtree),
  value v -> 6 + v. A tree is written in prefix form, ``( v left right )`` for a node and NIL for
  an empty subtree (``brackets=False`` drops the brackets: ``v left right``, still unambiguous);
  e.g. root 3 with a left child 5: ``( 3 ( 5 NIL NIL ) NIL )``. The target is the node values in
  pre-, in- or post-order. Depth = the number of nodes on the longest root-to-leaf path.

Trees are drawn level by level: a tree of depth d has a random spine (one root-to-leaf path of
exactly d nodes, each turn left or right at random) and every other slot holds a node with
probability ``branch_prob`` if its parent does (and it is within depth d); values are uniform.

Splits (:func:`successor_splits`, :func:`traversal_splits`), as the paper's evaluation:
``train`` and ``test_iid`` draw sizes up to the training depth/length (``test_iid`` unseen in
training by default); ``test_edge`` keeps sizes in the training range but takes the rare hard
cases (numbers whose lowest half of bits or more are ones; path-shaped trees of the top two
training depths); ``test_longer`` takes sizes beyond the training range. :func:`exact_match` scores a model per example: every labelled position right
under teacher forcing, which is the same as greedy decoding producing the whole target.

Generation is vectorised numpy and determined by ``seed``.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import torch

from .base import IGNORE, SequenceTask

PAD, SEP, EOS = 0, 1, 2
BIT0, BIT1 = 3, 4
SUCCESSOR_VOCAB = 5
LPAR, RPAR, NIL, VALUE0 = 3, 4, 5, 6
ORDERS = ("pre", "in", "post")
MAX_TREE_DEPTH = 16  # generation holds 2^(depth+1) slots per tree


# ----------------------------------------------------------------------------- assembling sequences


def _assemble(source: np.ndarray, source_len: np.ndarray, target: np.ndarray, target_len: np.ndarray,
              vocab_size: int, seq_len: int | None) -> SequenceTask:
    """Rows ``source[:s] SEP target[:t] EOS PAD...`` -> next-token task labelled on target and EOS.

    source (N, Ws), target (N, Wt) token ids, left-aligned; source_len, target_len (N,).
    """
    n = source.shape[0]
    needed = int((source_len + target_len + 1).max()) if n else 1  # inputs = sequence[:-1]
    if seq_len is None:
        seq_len = needed
    elif seq_len < needed:
        raise ValueError(f"seq_len={seq_len} is too short: the longest example needs {needed} input positions")
    pos = np.arange(seq_len + 1)[None, :]
    s, t = source_len[:, None], target_len[:, None]
    seq = np.full((n, seq_len + 1), PAD, dtype=np.int64)
    src_mask = pos < s
    seq[src_mask] = np.take_along_axis(source, np.minimum(pos, source.shape[1] - 1), 1)[src_mask]
    seq[pos == s] = SEP
    tgt_pos = pos - s - 1
    tgt_mask = (tgt_pos >= 0) & (tgt_pos < t)
    seq[tgt_mask] = np.take_along_axis(target, np.clip(tgt_pos, 0, target.shape[1] - 1), 1)[tgt_mask]
    eos = pos == s + 1 + t
    seq[eos] = EOS
    labelled = (tgt_mask | eos)[:, 1:]
    labels = np.where(labelled, seq[:, 1:], IGNORE)
    inputs = np.where(eos, PAD, seq)[:, :-1]  # EOS is only ever a label: rows read the same however padded
    return SequenceTask(torch.from_numpy(inputs), torch.from_numpy(labels), vocab_size)


def _pad_to(task: SequenceTask, seq_len: int) -> SequenceTask:
    extra = seq_len - task.seq_len
    if extra == 0:
        return task
    inputs = torch.nn.functional.pad(task.inputs, (0, extra), value=PAD)
    labels = torch.nn.functional.pad(task.labels, (0, extra), value=IGNORE)
    return SequenceTask(inputs, labels, task.vocab_size)


def _same_length(tasks: dict[str, SequenceTask]) -> dict[str, SequenceTask]:
    """Pad every split to the longest one so that one model and one evaluation cover them all."""
    longest = max(t.seq_len for t in tasks.values())
    return {name: _pad_to(t, longest) for name, t in tasks.items()}


def _check_range(name_lo: str, lo: int, name_hi: str, hi: int, minimum: int = 1) -> None:
    if not isinstance(lo, (int, np.integer)) or not isinstance(hi, (int, np.integer)) or not minimum <= lo <= hi:
        raise ValueError(f"need integers {minimum} <= {name_lo} <= {name_hi}, got {name_lo}={lo!r}, {name_hi}={hi!r}")


def _split_seeds(seed: int, k: int) -> list[int]:
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(k)]


def _unseen(make, n: int, train: SequenceTask, split: str) -> SequenceTask:
    """The first n examples of make(4 n) whose source does not occur in ``train`` (PAD only pads rows,
    and the target is a function of the source, so comparing unpadded rows compares sources)."""
    seen = {row[row != PAD].tobytes() for row in train.inputs.numpy()}
    candidates = make(4 * n)
    fresh = [i for i, row in enumerate(candidates.inputs.numpy()) if row[row != PAD].tobytes() not in seen]
    if len(fresh) < n:
        raise ValueError(f"only {len(fresh)} of {4 * n} {split} candidates are unseen in training: the input space "
                         f"is too small for a disjoint test set of {n}; lengthen the inputs, shrink n_test or pass "
                         "disjoint=False")
    return candidates.subset(torch.tensor(fresh[:n]))


# ----------------------------------------------------------------------------- binary successor


def binary_successor(num_examples: int, min_length: int = 1, max_length: int = 8, min_carry_fraction: float = 0.0,
                     bit_order: str = "lsb", seq_len: int | None = None, seed: int = 0) -> SequenceTask:
    """Numbers of n bits (n uniform in [min_length, max_length], top bit 1) -> their successor.

    Args:
        min_carry_fraction: force the lowest ceil(f·n) bits to 1, so the carry chain (trailing ones)
            is at least that long (0: bits uniform, the chain is geometric; 1: all ones, 2^n - 1).
        bit_order: "lsb" (least significant bit first, the inductive term's order) or "msb".
        seq_len: pad inputs and labels to this length (None: the longest example's).
    Returns:
        a SequenceTask of vocabulary 5 (see the module docstring for the format).
    """
    _check_range("min_length", min_length, "max_length", max_length)
    if not 0.0 <= min_carry_fraction <= 1.0:
        raise ValueError(f"min_carry_fraction must be in [0, 1], got {min_carry_fraction!r}")
    if bit_order not in ("lsb", "msb"):
        raise ValueError(f"bit_order must be 'lsb' or 'msb', got {bit_order!r}")
    rng = np.random.default_rng(seed)
    n = rng.integers(min_length, max_length + 1, size=num_examples)
    width = max_length + 1  # the successor may need one more bit
    pos = np.arange(width)[None, :]
    rows = np.arange(num_examples)
    bits = rng.integers(0, 2, size=(num_examples, width))  # bits[:, i]: the coefficient of 2^i
    bits[pos >= n[:, None]] = 0
    bits[rows, n - 1] = 1  # no leading zeros
    carry = np.ceil(min_carry_fraction * n).astype(np.int64)
    bits[pos < carry[:, None]] = 1
    trailing_ones = np.cumprod(bits, axis=1).sum(axis=1)  # <= n (bits from n up are 0)
    succ = bits.copy()
    succ[pos < trailing_ones[:, None]] = 0  # succ (B1 m) = B0 (succ m) ...
    succ[pos == trailing_ones[:, None]] = 1  # ... until succ (B0 m) = B1 m or succ Z = B1 Z
    m = n + (trailing_ones == n)
    if bit_order == "msb":
        bits = np.take_along_axis(bits, np.clip(n[:, None] - 1 - pos, 0, width - 1), 1)
        succ = np.take_along_axis(succ, np.clip(m[:, None] - 1 - pos, 0, width - 1), 1)
    return _assemble(BIT0 + bits, n, BIT0 + succ, m, SUCCESSOR_VOCAB, seq_len)


def successor_splits(n_train: int = 4096, n_test: int = 512, train_length: int = 16, test_length: int = 24,
                     edge_carry_fraction: float = 0.5, bit_order: str = "lsb", disjoint: bool = True, seed: int = 0
                     ) -> dict[str, SequenceTask]:
    """Train on numbers of 1..train_length bits; test in distribution, on long carries, on longer numbers.

    Returns {"train", "test_iid", "test_edge", "test_longer"}, all padded to one seq_len:
    ``test_iid``: the training distribution, another seed; ``test_edge``: ceil(train_length / 2)..
    train_length bits whose lowest ceil(edge_carry_fraction · n) bits are ones (rare under uniform
    bits: probability 2^-ceil(n/2)); ``test_longer``: train_length + 1..test_length bits, uniform.
    With ``disjoint``, ``test_iid`` holds only numbers absent from ``train`` (a ValueError when
    there are too few: there are only 2^(n-1) numbers of n bits). ``test_edge`` is not made
    disjoint: the point is that its cases are rare in training, and there are few of them (about
    2^(n/2) per length n).
    """
    _check_range("train_length", train_length, "test_length", test_length - 1)
    s = _split_seeds(seed, 4)
    train = binary_successor(n_train, 1, train_length, bit_order=bit_order, seed=s[0])
    iid = partial(binary_successor, min_length=1, max_length=train_length, bit_order=bit_order, seed=s[1])
    edge = partial(binary_successor, min_length=math.ceil(train_length / 2), max_length=train_length,
                   min_carry_fraction=edge_carry_fraction, bit_order=bit_order, seed=s[2])
    return _same_length({
        "train": train,
        "test_iid": _unseen(iid, n_test, train, "test_iid") if disjoint else iid(n_test),
        "test_edge": edge(n_test),
        "test_longer": binary_successor(n_test, train_length + 1, test_length, bit_order=bit_order, seed=s[3]),
    })


# ----------------------------------------------------------------------------- binary-tree traversal


def _prefix_events(depth: int) -> tuple[np.ndarray, np.ndarray]:
    """The serialisation template of the full tree of ``depth`` node levels (heap slots, root 0).

    Returns (slot, kind) arrays in prefix order, kind 0 = open (LPAR, or NIL for an empty slot
    under a node), 1 = value, 2 = close; slots of level ``depth`` only ever emit NIL.
    """
    slots, kinds = [], []

    def visit(s: int, level: int) -> None:
        slots.append(s), kinds.append(0)
        if level < depth:
            slots.append(s), kinds.append(1)
            visit(2 * s + 1, level + 1)
            visit(2 * s + 2, level + 1)
            slots.append(s), kinds.append(2)

    visit(0, 0)
    return np.array(slots), np.array(kinds)


def _traversal_slots(depth: int, order: str) -> np.ndarray:
    """Heap slots of the full tree with ``depth`` levels in pre-, in- or post-order."""
    out: list[int] = []

    def visit(s: int, level: int) -> None:
        if level == depth:
            return
        if order == "pre":
            out.append(s)
        visit(2 * s + 1, level + 1)
        if order == "in":
            out.append(s)
        visit(2 * s + 2, level + 1)
        if order == "post":
            out.append(s)

    visit(0, 0)
    return np.array(out)


def _compact(tokens: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the kept tokens in order, left-aligned (PAD after): (N, max kept), lengths (N,)."""
    order = np.argsort(~keep, axis=1, kind="stable")
    lengths = keep.sum(axis=1)
    width = max(int(lengths.max()) if len(lengths) else 0, 1)
    packed = np.take_along_axis(tokens, order[:, :width], 1)
    packed[np.arange(width)[None, :] >= lengths[:, None]] = PAD
    return packed, lengths


def random_trees(num_examples: int, min_depth: int, max_depth: int, branch_prob: float,
                 rng: np.random.Generator) -> np.ndarray:
    """Presence masks (N, 2^(max_depth+1) - 1) of random binary trees in heap layout (children of s:
    2s+1, 2s+2), each of exact depth d uniform in [min_depth, max_depth] (see the module docstring)."""
    D = max_depth
    depth = rng.integers(min_depth, max_depth + 1, size=num_examples)
    rows = np.arange(num_examples)
    present = np.zeros((num_examples, 2 ** (D + 1) - 1), dtype=bool)
    present[:, 0] = True
    spine = np.zeros(num_examples, dtype=np.int64)  # the spine's slot at the current level
    for level in range(1, D):
        first, count = 2**level - 1, 2**level
        spine = 2 * spine + 1 + rng.integers(0, 2, size=num_examples)
        slots = np.arange(first, first + count)
        grown = present[:, (slots - 1) // 2] & (rng.random((num_examples, count)) < branch_prob)
        grown[rows, spine - first] = True
        present[:, slots] = grown & present[:, (slots - 1) // 2] & (level < depth)[:, None]
    return present


def tree_traversal(num_examples: int, order: str = "pre", min_depth: int = 1, max_depth: int = 4,
                   branch_prob: float = 0.5, n_values: int = 10, brackets: bool = True, seq_len: int | None = None,
                   seed: int = 0) -> SequenceTask:
    """Binary trees in prefix form -> their node values in ``order`` ("pre", "in" or "post").

    Args:
        min_depth, max_depth: each tree's depth is uniform in this range (depth 1: a single node).
        branch_prob: probability of a node in each slot off the spine whose parent is a node
            (0: path-shaped trees; 1: full trees).
        n_values: node values are uniform in [0, n_values); the vocabulary is 6 + n_values.
        brackets: write nodes as ``( v left right )`` (True) or ``v left right`` (False).
        seq_len: pad inputs and labels to this length (None: the longest example's).
    """
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    _check_range("min_depth", min_depth, "max_depth", max_depth)
    if max_depth > MAX_TREE_DEPTH:
        raise ValueError(f"max_depth must be <= {MAX_TREE_DEPTH} (generation holds 2^(depth+1) slots per tree), "
                         f"got {max_depth}")
    if not 0.0 <= branch_prob <= 1.0:
        raise ValueError(f"branch_prob must be in [0, 1], got {branch_prob!r}")
    if not isinstance(n_values, int) or n_values < 1:
        raise ValueError(f"n_values must be a positive int, got {n_values!r}")
    rng = np.random.default_rng(seed)
    present = random_trees(num_examples, min_depth, max_depth, branch_prob, rng)
    values = VALUE0 + rng.integers(0, n_values, size=present.shape)

    slot, kind = _prefix_events(max_depth)
    here = present[:, slot]
    parent_here = np.where(slot > 0, present[:, (np.maximum(slot, 1) - 1) // 2], True)
    nil = (kind == 0) & ~here & parent_here
    tokens = np.select([nil, kind == 0, kind == 1], [NIL, LPAR, values[:, slot]], RPAR)
    emit = nil | (here & (kind == 1)) | (here & (kind != 1) if brackets else False)
    source, source_len = _compact(tokens, emit)

    visit = _traversal_slots(max_depth, order)
    target, target_len = _compact(values[:, visit], present[:, visit])
    return _assemble(source, source_len, target, target_len, VALUE0 + n_values, seq_len)


def traversal_splits(order: str = "pre", n_train: int = 4096, n_test: int = 512, train_depth: int = 4,
                     test_depth: int = 6, branch_prob: float = 0.5, n_values: int = 10, brackets: bool = True,
                     disjoint: bool = True, seed: int = 0) -> dict[str, SequenceTask]:
    """Train on trees of depth 1..train_depth; test in distribution, on unbalanced trees, on deeper trees.

    Returns {"train", "test_iid", "test_edge", "test_longer"}, all padded to one seq_len:
    ``test_edge``: path-shaped trees (every inner node has one child, turning left or right at
    random) of depth train_depth - 1..train_depth, which have probability (1 - branch_prob)^(d-1)
    among the training trees of depth d; ``test_longer``: depth train_depth + 1..test_depth. With
    ``disjoint``, ``test_iid`` holds only trees absent from ``train``.
    """
    _check_range("train_depth", train_depth, "test_depth", test_depth - 1)
    s = _split_seeds(seed, 4)
    common = dict(order=order, n_values=n_values, brackets=brackets)
    train = tree_traversal(n_train, min_depth=1, max_depth=train_depth, branch_prob=branch_prob, seed=s[0], **common)
    iid = partial(tree_traversal, min_depth=1, max_depth=train_depth, branch_prob=branch_prob, seed=s[1], **common)
    edge = partial(tree_traversal, min_depth=max(1, train_depth - 1), max_depth=train_depth, branch_prob=0.0,
                   seed=s[2], **common)
    return _same_length({
        "train": train,
        "test_iid": _unseen(iid, n_test, train, "test_iid") if disjoint else iid(n_test),
        "test_edge": edge(n_test),
        "test_longer": tree_traversal(n_test, min_depth=train_depth + 1, max_depth=test_depth, branch_prob=branch_prob,
                                      seed=s[3], **common),
    })


# ----------------------------------------------------------------------------- exact match


@torch.no_grad()
def exact_match(model: torch.nn.Module, task: SequenceTask, batch_size: int = 256,
                device: str | torch.device = "cpu") -> torch.Tensor:
    """Per example (N,) bool: every labelled position predicted right (argmax, teacher forced).

    The model must offer ``features(ids) -> (hidden, state)`` and ``logits(hidden)`` (CausalLM,
    DepthLM). Teacher-forced exact match equals greedy decoding's: if every next-token argmax is
    right given the true prefix, greedy decoding reproduces the target, and conversely.
    """
    was_training = model.training
    model.eval()
    out = []
    for lo in range(0, len(task), batch_size):
        inputs = task.inputs[lo : lo + batch_size].to(device)
        labels = task.labels[lo : lo + batch_size].to(device)
        hidden, _ = model.features(inputs)
        mask = labels != IGNORE
        wrong = torch.zeros_like(mask)
        wrong[mask] = model.logits(hidden[mask]).argmax(-1) != labels[mask]
        out.append(~wrong.any(dim=1))
    model.train(was_training)
    return torch.cat(out).cpu() if out else torch.zeros(0, dtype=torch.bool)


def exact_match_accuracy(model: torch.nn.Module, splits: dict[str, SequenceTask], batch_size: int = 256,
                         device: str | torch.device = "cpu") -> dict[str, float]:
    """{split name: fraction of its examples whose whole target is right} (the paper's metric)."""
    return {name: exact_match(model, task, batch_size, device).float().mean().item() for name, task in splits.items()}
