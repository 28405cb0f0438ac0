import math

import pytest
import torch
from torch import nn

from recurlab.tasks import IGNORE, SequenceTask
from recurlab.tasks.structural import (EOS, LPAR, NIL, PAD, RPAR, SEP, SUCCESSOR_VOCAB, VALUE0, binary_successor,
                                       exact_match, exact_match_accuracy, successor_splits, traversal_splits,
                                       tree_traversal)


def split_example(inputs: torch.Tensor, labels: torch.Tensor) -> tuple[list[int], list[int]]:
    """(source tokens, labelled target tokens incl. EOS), checking the layout around them."""
    x, y = inputs.tolist(), labels.tolist()
    sep = x.index(SEP)
    labelled = [p for p, v in enumerate(y) if v != IGNORE]
    assert labelled == list(range(sep, sep + len(labelled)))  # one block starting at the SEP position
    target = [y[p] for p in labelled]
    assert target[-1] == EOS and EOS not in target[:-1]
    assert x[sep + 1 : sep + len(target)] == target[:-1]  # teacher forcing: the target is also the next input
    assert all(v == PAD for v in x[sep + len(target) :])  # EOS is only a label; padding after the target
    return x[:sep], target[:-1]


# ----------------------------------------------------------------------------- successor


def bits_to_int(tokens: list[int], order: str) -> int:
    digits = "".join(str(t - 3) for t in tokens)
    return int(digits[::-1] if order == "lsb" else digits, 2)


def int_to_tokens(v: int, order: str) -> list[int]:
    digits = bin(v)[2:]
    return [3 + int(c) for c in (digits[::-1] if order == "lsb" else digits)]


@pytest.mark.parametrize("order", ["lsb", "msb"])
def test_successor_targets_match_python_int_plus_one(order):
    task = binary_successor(300, 1, 9, bit_order=order, seed=5)
    assert task.vocab_size == SUCCESSOR_VOCAB
    assert int(task.inputs.min()) >= 0 and int(task.inputs.max()) < SUCCESSOR_VOCAB
    labelled = task.labels[task.labels != IGNORE]
    assert int(labelled.min()) >= 0 and int(labelled.max()) < SUCCESSOR_VOCAB
    lengths = []
    for x, y in zip(task.inputs, task.labels):
        source, target = split_example(x, y)
        assert 1 <= len(source) <= 9 and set(source) <= {3, 4}
        assert (source[-1] if order == "lsb" else source[0]) == 4  # no leading zero
        v = bits_to_int(source, order)
        assert target == int_to_tokens(v + 1, order)
        lengths.append(len(source))
    assert set(lengths) == set(range(1, 10))  # every length occurs


def test_successor_all_ones_and_carry_constraint():
    all_ones = binary_successor(20, 3, 6, min_carry_fraction=1.0, seed=0)
    for x, y in zip(all_ones.inputs, all_ones.labels):
        source, target = split_example(x, y)
        assert set(source) == {4} and target == [3] * len(source) + [4]  # 2^n - 1 -> 2^n: carry out
    task = binary_successor(200, 2, 8, min_carry_fraction=0.5, seed=1)
    for x, y in zip(task.inputs, task.labels):
        source, _ = split_example(x, y)
        trailing = len(source) - len("".join(str(t - 3) for t in source).lstrip("1"))  # lsb first: leading 1s
        assert trailing >= math.ceil(len(source) / 2)


def test_successor_splits():
    splits = successor_splits(n_train=300, n_test=100, train_length=10, test_length=13, seed=0)
    assert set(splits) == {"train", "test_iid", "test_edge", "test_longer"}
    assert len({t.seq_len for t in splits.values()}) == 1
    assert len(splits["train"]) == 300 and len(splits["test_edge"]) == 100

    def info(task):
        out = []
        for x, y in zip(task.inputs, task.labels):
            source, target = split_example(x, y)
            assert target == int_to_tokens(bits_to_int(source, "lsb") + 1, "lsb")
            digits = "".join(str(t - 3) for t in source)
            out.append((len(source), len(digits) - len(digits.lstrip("1"))))
        return out

    train = info(splits["train"])
    assert max(n for n, _ in train) == 10 and min(n for n, _ in train) == 1
    assert max(n for n, _ in info(splits["test_iid"])) <= 10
    edge = info(splits["test_edge"])
    assert all(5 <= n <= 10 and c >= math.ceil(n / 2) for n, c in edge)
    longer = info(splits["test_longer"])
    assert {n for n, _ in longer} == {11, 12, 13}
    # long carries are rare in training and the rule in the edge split
    def long_carry_share(rows):
        long = [c >= math.ceil(n / 2) for n, c in rows if n >= 3]
        return sum(long) / len(long)

    assert long_carry_share(train) < 0.4 and long_carry_share(edge) == 1.0


# ----------------------------------------------------------------------------- trees


def parse_tree(tokens: list[int], brackets: bool):
    """Prefix tokens -> nested (value, left, right) tuples, None for NIL; checks every token is used."""
    pos = 0

    def node():
        nonlocal pos
        tok = tokens[pos]
        pos += 1
        if tok == NIL:
            return None
        if brackets:
            assert tok == LPAR
            tok = tokens[pos]
            pos += 1
        assert tok >= VALUE0
        left, right = node(), node()
        if brackets:
            assert tokens[pos] == RPAR
            pos += 1
        return (tok, left, right)

    tree = node()
    assert pos == len(tokens)
    return tree


def traverse(tree, order: str) -> list[int]:
    if tree is None:
        return []
    v, left, right = tree
    parts = {"pre": [[v], traverse(left, order), traverse(right, order)],
             "in": [traverse(left, order), [v], traverse(right, order)],
             "post": [traverse(left, order), traverse(right, order), [v]]}[order]
    return [t for p in parts for t in p]


def depth(tree) -> int:
    return 0 if tree is None else 1 + max(depth(tree[1]), depth(tree[2]))


def is_path(tree) -> bool:
    if tree is None:
        return True
    _, left, right = tree
    return (left is None or right is None) and is_path(left) and is_path(right)


@pytest.mark.parametrize("order", ["pre", "in", "post"])
@pytest.mark.parametrize("brackets", [True, False])
def test_traversal_targets_match_a_recursive_traversal(order, brackets):
    task = tree_traversal(150, order, min_depth=1, max_depth=5, branch_prob=0.6, n_values=7, brackets=brackets,
                          seed=2)
    assert task.vocab_size == VALUE0 + 7
    assert int(task.inputs.max()) < task.vocab_size and int(task.inputs.min()) >= 0
    depths = []
    for x, y in zip(task.inputs, task.labels):
        source, target = split_example(x, y)
        tree = parse_tree(source, brackets)
        assert target == traverse(tree, order)
        assert all(VALUE0 <= t < VALUE0 + 7 for t in target)
        depths.append(depth(tree))
    assert set(depths) == {1, 2, 3, 4, 5}


def test_traversal_orders_differ_on_the_same_trees():
    pre, post = tree_traversal(50, "pre", 3, 4, seed=0), tree_traversal(50, "post", 3, 4, seed=0)
    assert torch.equal(pre.inputs[:, :10], post.inputs[:, :10])  # same trees (same seed) ...
    assert not torch.equal(pre.labels, post.labels)  # ... other targets


def test_branch_prob_extremes():
    full = tree_traversal(10, "in", 3, 3, branch_prob=1.0, seed=0)
    paths = tree_traversal(30, "in", 4, 4, branch_prob=0.0, seed=0)
    for x, y in zip(full.inputs, full.labels):
        assert len(split_example(x, y)[1]) == 7  # full tree of depth 3
    turns = set()
    for x, y in zip(paths.inputs, paths.labels):
        tree = parse_tree(split_example(x, y)[0], True)
        assert depth(tree) == 4 and is_path(tree)
        turns.add(tree[1] is None)
    assert turns == {True, False}  # both left and right turns occur


@pytest.mark.parametrize("order", ["pre", "in", "post"])
def test_traversal_splits(order):
    splits = traversal_splits(order, n_train=200, n_test=60, train_depth=4, test_depth=6, seed=1)
    assert len({t.seq_len for t in splits.values()}) == 1

    def trees(task):
        out = []
        for x, y in zip(task.inputs, task.labels):
            source, target = split_example(x, y)
            tree = parse_tree(source, True)
            assert target == traverse(tree, order)
            out.append(tree)
        return out

    assert {depth(t) for t in trees(splits["train"])} == {1, 2, 3, 4}
    assert max(depth(t) for t in trees(splits["test_iid"])) <= 4
    edge = trees(splits["test_edge"])
    assert all(depth(t) in (3, 4) and is_path(t) for t in edge)
    assert {depth(t) for t in trees(splits["test_longer"])} == {5, 6}


def unpadded_rows(task):
    return {tuple(t for t in row.tolist() if t != PAD) for row in task.inputs}


def test_iid_test_sets_are_disjoint_from_training_unless_asked_otherwise():
    for make in (lambda d: successor_splits(300, 100, train_length=9, test_length=10, disjoint=d, seed=0),
                 lambda d: traversal_splits("in", 300, 100, train_depth=3, test_depth=4, n_values=3, disjoint=d)):
        disjoint, overlapping = make(True), make(False)
        assert len(disjoint["test_iid"]) == 100
        assert not unpadded_rows(disjoint["test_iid"]) & unpadded_rows(disjoint["train"])
        assert unpadded_rows(overlapping["test_iid"]) & unpadded_rows(overlapping["train"])  # small spaces repeat
    with pytest.raises(ValueError, match="input space is too small for a disjoint test set of 100"):
        successor_splits(300, 100, train_length=5, test_length=6)
    successor_splits(300, 100, train_length=5, test_length=6, disjoint=False)


# ----------------------------------------------------------------------------- determinism, errors


def test_generators_are_deterministic_and_seeds_differ():
    for make in (lambda s: binary_successor(64, 1, 8, seed=s), lambda s: tree_traversal(64, "in", 1, 4, seed=s),
                 lambda s: successor_splits(64, 16, seed=s)["test_edge"],
                 lambda s: traversal_splits("post", 64, 16, seed=s)["test_longer"]):
        a, b, c = make(3), make(3), make(4)
        assert torch.equal(a.inputs, b.inputs) and torch.equal(a.labels, b.labels)
        assert not torch.equal(a.inputs, c.inputs)


def test_seq_len_padding_and_bad_arguments():
    task = binary_successor(10, 1, 4, seq_len=20, seed=0)
    assert task.seq_len == 20
    with pytest.raises(ValueError, match="seq_len=5 is too short"):
        binary_successor(10, 4, 4, seq_len=5)
    with pytest.raises(ValueError, match="need integers 1 <= min_length <= max_length"):
        binary_successor(10, 0, 4)
    with pytest.raises(ValueError, match="bit_order must be 'lsb' or 'msb'"):
        binary_successor(10, bit_order="big")
    with pytest.raises(ValueError, match="order must be one of pre, in, post"):
        tree_traversal(10, "level")
    with pytest.raises(ValueError, match="branch_prob must be in \\[0, 1\\]"):
        tree_traversal(10, branch_prob=1.5)
    with pytest.raises(ValueError, match="max_depth must be <= 16"):
        tree_traversal(10, max_depth=17)
    with pytest.raises(ValueError, match="need integers 1 <= train_depth <= test_depth"):
        traversal_splits(train_depth=4, test_depth=4)


# ----------------------------------------------------------------------------- exact match


class Oracle(nn.Module):
    """Predicts the stored answer of whichever example it is shown (looked up by its inputs)."""

    def __init__(self, task: SequenceTask, answers: torch.Tensor):
        super().__init__()
        self.task, self.answers = task, answers

    def features(self, ids):
        row = (ids[:, None, :] == self.task.inputs[None]).all(-1).float().argmax(1)
        return nn.functional.one_hot(self.answers[row].clamp_min(0), self.task.vocab_size).float(), None

    def logits(self, hidden):
        return hidden


def test_exact_match_needs_every_target_token():
    task = tree_traversal(40, "in", 4, 5, seed=0)
    assert len(torch.unique(task.inputs, dim=0)) == 40  # the oracle finds each example by its inputs
    assert exact_match(Oracle(task, task.labels), task, batch_size=7).all()
    answers = task.labels.clone()
    broken = [0, 5, 17]
    for i in broken:  # one wrong token (the last labelled one, EOS) per broken example
        last = (answers[i] != IGNORE).nonzero().max()
        answers[i, last] = VALUE0
    per_example = exact_match(Oracle(task, answers), task, batch_size=7)
    assert per_example.tolist() == [i not in broken for i in range(40)]
    result = exact_match_accuracy(Oracle(task, answers), {"a": task, "b": task.subset(slice(1, 5))})
    assert result == {"a": pytest.approx(37 / 40), "b": 1.0}
