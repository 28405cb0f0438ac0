"""Tests of the LCM aggregation recipe: the commutative GRU-cell operator, the balanced-tree reduction (odd carries,
padding as identity, what holds under permutations), the baseline aggregators, the data, and a tiny run."""

import numpy as np
import pytest
import torch

from recurlab.recipes import lcm_aggregate as L


def affine(l, r):
    """A hand-computable, non-commutative, non-associative operator: l ⊕ r = 2 l + r."""
    return 2 * l + r


def full_mask(b, n):
    return torch.ones(b, n, dtype=torch.bool)


def test_lcm_op_is_exactly_commutative_and_symmetrises_the_cell():
    torch.manual_seed(0)
    agg = L.LCMAggregation(8)
    for m in (1, 5, 33):
        a, b = torch.randn(m, 8), torch.randn(m, 8)
        assert torch.equal(agg.op(a, b), agg.op(b, a))
        expected = 0.5 * (agg.cell(a, b) + agg.cell(b, a))  # GRUCell(input, hidden), both orders
        assert torch.allclose(agg.op(a, b), expected, atol=1e-6)
        assert not torch.allclose(agg.cell(a, b), agg.cell(b, a), atol=1e-3)  # the cell alone is not commutative
    with pytest.raises(ValueError, match="left and right"):
        agg.op(torch.randn(2, 8), torch.randn(3, 8))


def test_tree_reduce_hand_computed_with_odd_carries():
    # 3 elements: level 1 (1 ⊕ 2) = 4, 3 carried; level 2: 4 ⊕ 3 = 11
    x3 = torch.tensor([[1.0, 2.0, 3.0]]).unsqueeze(-1)
    assert L.tree_reduce(affine, x3, full_mask(1, 3)).item() == 11.0
    # 5 elements: [1⊕2, 3⊕4, 5] = [4, 10, 5]; [4⊕10, 5] = [18, 5]; 18⊕5 = 41
    x5 = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]]).unsqueeze(-1)
    assert L.tree_reduce(affine, x5, full_mask(1, 5)).item() == 41.0
    # the same shapes with the learned operator: ((a ⊕ b) ⊕ c) and (((a ⊕ b) ⊕ (c ⊕ d)) ⊕ e)
    torch.manual_seed(1)
    agg = L.LCMAggregation(6)
    a, b, c, d, e = torch.randn(5, 2, 6)
    op = agg.op
    got3 = agg(torch.stack([a, b, c], 1), full_mask(2, 3))
    got5 = agg(torch.stack([a, b, c, d, e], 1), full_mask(2, 5))
    assert torch.allclose(got3, op(op(a, b), c), atol=1e-6)
    assert torch.allclose(got5, op(op(op(a, b), op(c, d)), e), atol=1e-6)
    assert [L.tree_depth(n) for n in (1, 2, 3, 4, 5, 8, 9, 64)] == [0, 1, 2, 2, 3, 3, 4, 6]


def test_padding_acts_as_identity_and_gives_the_unpadded_result():
    # hand operator: set [1, 2, 3] padded to 8 with junk still gives 11; [7] alone gives 7
    x = torch.tensor([[1.0, 2.0, 3.0, 99, 99, 99, 99, 99], [7.0, 99, 99, 99, 99, 99, 99, 99]]).unsqueeze(-1)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0, 0]], dtype=torch.bool)
    assert L.tree_reduce(affine, x, mask).squeeze(-1).tolist() == [11.0, 7.0]
    torch.manual_seed(2)
    d, width = 5, 11
    lengths = [1, 2, 3, 5, 6, 8, 11]
    sets = [torch.randn(n, d) for n in lengths]
    padded = torch.randn(len(sets), width, d) * 100  # junk in the padding
    for i, s in enumerate(sets):
        padded[i, :len(s)] = s
    mask = torch.arange(width).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    for name in L.AGGREGATORS:
        agg = L.make_aggregator(name, d)
        got = agg(padded, mask)
        alone = torch.cat([agg(s.unsqueeze(0), full_mask(1, len(s))) for s in sets])
        assert torch.allclose(got, alone, atol=1e-5), name
    with pytest.raises(ValueError, match="prefix"):
        L.SumAggregation()(padded[:1, :3], torch.tensor([[True, False, True]]))
    with pytest.raises(ValueError, match="at least one element"):
        L.SumAggregation()(padded[:1, :3], torch.tensor([[False, False, False]]))


def test_tree_is_invariant_to_subtree_swaps_but_not_to_every_permutation():
    torch.manual_seed(3)
    agg = L.LCMAggregation(8)
    a, b, c, d = torch.randn(4, 1, 8)
    m = full_mask(1, 4)

    def reduce(*xs):
        return agg(torch.stack(xs, 1), m)

    base = reduce(a, b, c, d)
    # commutativity is exact, so swapping siblings anywhere in the tree changes nothing, bit for bit
    for perm in ((b, a, c, d), (a, b, d, c), (c, d, a, b), (d, c, b, a)):
        assert torch.equal(reduce(*perm), base)
    # associativity is not built in: (a ⊕ c) ⊕ (b ⊕ d) differs from (a ⊕ b) ⊕ (c ⊕ d) for an untrained operator
    assert (reduce(a, c, b, d) - base).abs().max() > 1e-4
    # the sequential GRU is not even commutative
    gru = L.GRUAggregation(8)
    assert (gru(torch.stack([b, a], 1), full_mask(1, 2)) - gru(torch.stack([a, b], 1), full_mask(1, 2))).abs().max() > 1e-4


def test_sum_mean_max_on_a_hand_case():
    x = torch.tensor([[[1.0, -2.0], [3.0, 4.0], [100.0, 100.0]], [[-1.0, -5.0], [0.0, 0.0], [0.0, 0.0]]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    assert L.SumAggregation()(x, mask).tolist() == [[4.0, 2.0], [-1.0, -5.0]]
    assert L.MeanAggregation()(x, mask).tolist() == [[2.0, 1.0], [-1.0, -5.0]]
    assert L.MaxAggregation()(x, mask).tolist() == [[3.0, 4.0], [-1.0, -5.0]]  # padding never wins, even at 0 > -5
    with pytest.raises(ValueError, match="aggregator must be one of"):
        L.make_aggregator("median", 4)


def test_gru_aggregator_is_the_state_after_the_last_valid_element():
    torch.manual_seed(4)
    agg = L.GRUAggregation(4)
    x = torch.randn(1, 3, 4)
    rnn = agg.gru.rnn  # recurlab's gru mixer wraps torch.nn.GRU
    h = torch.zeros(4)
    for t in range(3):
        _, hn = rnn(x[:, t:t + 1], h.view(1, 1, 4))
        h = hn.view(4)
    padded = torch.cat([x, torch.randn(1, 2, 4)], 1)
    mask = torch.tensor([[True, True, True, False, False]])
    assert torch.allclose(agg(padded, mask)[0], h, atol=1e-6)


def test_generators_targets_and_determinism():
    rng = np.random.default_rng(0)
    data = L.second_largest_sets(np.array([2, 3, 7, 40] * 50), 16, rng)
    for v, n, t in zip(data.values, data.lengths, data.targets):
        vals = sorted(v[:n].tolist(), reverse=True)
        assert vals[1] == t and 0 <= min(vals) and max(vals) < 16
        assert (v[n:] == 0).all()
    # the class distribution does not drift with the set size (the planted top pair)
    big = L.second_largest_sets(np.full(2000, 64), 16, np.random.default_rng(1)).targets.float().mean()
    small = L.second_largest_sets(np.full(2000, 2), 16, np.random.default_rng(1)).targets.float().mean()
    assert abs(big - small) < 0.5
    par = L.parity_sets(np.array([1, 4, 9]), np.random.default_rng(2))
    assert par.targets.tolist() == [int(v[:n].sum()) % 2 for v, n in zip(par.values, par.lengths)]
    # graph: path 0-1-2 and isolated 3; values [5, 2, 9, 0]
    adj = np.zeros((4, 4), dtype=bool)
    adj[0, 1] = adj[1, 0] = adj[1, 2] = adj[2, 1] = True
    g = L.second_min_neighbourhoods(adj, np.array([5, 2, 9, 0]))
    assert g.lengths.tolist() == [1, 2, 1]  # node 3 has no neighbour: left out
    assert g.own.tolist() == [5, 2, 9]
    assert g.values.tolist() == [[2, 0], [5, 9], [2, 0]]
    assert g.targets.tolist() == [5, 5, 9]  # {5,2} -> 5; {2,5,9} -> 5; {9,2} -> 9
    cfg = L.Config(graph_nodes=64, test_sizes=(2, 8, 16))
    t1 = L.make_test("graph_second_min", 8, 50, cfg, np.random.default_rng(5))
    t2 = L.make_test("graph_second_min", 8, 50, cfg, np.random.default_rng(5))
    assert torch.equal(t1.values, t2.values) and len(t1) == 50
    lo, hi = L.degree_bucket(8)
    assert (t1.lengths >= lo).all() and (t1.lengths <= hi).all()
    adj = L.random_graph(50, 4.0, np.random.default_rng(6))
    assert (adj == adj.T).all() and not adj.diagonal().any()


def test_config_errors_name_the_argument():
    L.Config.quick().check()
    L.Config.full().check()
    with pytest.raises(ValueError, match="tasks must be"):
        L.Config(tasks=("sorting",)).check()
    with pytest.raises(ValueError, match="aggregators must be"):
        L.Config(aggregators=()).check()
    with pytest.raises(ValueError, match="train_max_size"):
        L.Config(train_max_size=1).check()
    with pytest.raises(ValueError, match="graph_nodes"):
        L.Config(graph_nodes=100, test_sizes=(2, 64)).check()
    with pytest.raises(ValueError, match="values must lie"):
        L.SetNet("sum", 2, 2)(torch.tensor([[0, 3]]), torch.tensor([2]), torch.tensor([0]))


def test_tiny_run_learns_and_is_deterministic(tmp_path):
    cfg = L.Config(tasks=("parity", "second_largest"), aggregators=("max", "lcm"), n_values=8, n_train=800,
                   n_val=300, n_test=200, test_sizes=(2, 8, 16), epochs=6, timing_sizes=(2, 8),
                   timing_batches=(1, 4), timing_repeats=1)
    r1 = L.run(out_dir=tmp_path, seed=0, progress=False, config=cfg)
    r2 = L.run(out_dir=None, seed=0, progress=False, config=cfg)
    assert r1.details["accuracy"] == r2.details["accuracy"]
    acc, val, majority = r1.details["accuracy"], r1.details["val_accuracy_in_range"], r1.details["majority"]
    # in the training range the LCM model beats the majority class clearly on both tasks
    assert val["parity"]["lcm"] > 0.9
    assert val["second_largest"]["lcm"] > max(majority["second_largest"]) + 0.3
    # parity at size 16 (twice the largest training set): LCM generalises, max cannot beat chance by much
    assert acc["parity"]["lcm"][-1] > 0.8
    assert acc["parity"]["max"][-1] < 0.7
    assert (tmp_path / "lcm_aggregate.png").stat().st_size > 0
    assert r1.files == [str(tmp_path / "lcm_aggregate.png")]
    assert any("aggregation time" in row.metric for row in r1.rows)
