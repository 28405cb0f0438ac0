"""Tests of the GRU-SVM recipe: the L2-SVM loss, binning/one-hot, the flow generator, and a tiny run."""

import numpy as np
import pytest
import torch

from recurlab.recipes import gru_svm as g


def test_svm_targets_map_labels_to_plus_minus_one():
    t = g.svm_targets(torch.tensor([0, 1, 1]), 2)
    assert torch.equal(t, torch.tensor([[1.0, -1.0], [-1.0, 1.0], [-1.0, 1.0]]))
    with pytest.raises(ValueError, match="y must be"):
        g.svm_targets(torch.tensor([0, 2]), 2)


def test_l2_svm_loss_matches_hand_computation():
    o = torch.tensor([[0.5, -2.0], [0.3, 0.2]], dtype=torch.float64)
    y = torch.tensor([0, 1])
    w = torch.tensor([[1.0, -1.0], [2.0, 0.0]], dtype=torch.float64)
    # targets [[+1, -1], [-1, +1]]; margins 1 - y*o: [[0.5, -1.0], [1.3, 0.8]] -> clamp -> [[0.5, 0], [1.3, 0.8]]
    hinge = 0.5 ** 2 + 0 + 1.3 ** 2 + 0.8 ** 2
    reg = 0.5 * (1 + 1 + 4 + 0)
    c = 0.5
    assert g.l2_svm_loss(o, y, w, c).item() == pytest.approx(reg + c * hinge, rel=1e-12)
    # the gradient reaches W only through the 0.5||W||^2 term here
    w.requires_grad_(True)
    g.l2_svm_loss(o, y, w, c).backward()
    assert torch.allclose(w.grad, w.detach())
    with pytest.raises(ValueError, match="c must be positive"):
        g.l2_svm_loss(o, y, w, 0.0)


def test_decile_binner_and_one_hot():
    rng = np.random.default_rng(0)
    x = np.stack([rng.normal(size=1000), rng.integers(0, 8, size=1000), np.where(rng.random(1000) < 0.6, 0.0,
                                                                                 rng.lognormal(size=1000))], 1)
    b = g.DecileBinner(categorical=[1]).fit(x)
    levels = b.transform(x)
    assert levels.min() >= 0 and levels.max() <= 9
    counts = np.bincount(levels[:, 0], minlength=10)
    assert np.all(np.abs(counts - 100) <= 1)  # deciles of a continuous feature: ~equal bins
    assert np.array_equal(levels[:, 1], x[:, 1].astype(int))  # categorical: its code
    assert len(np.unique(levels[x[:, 2] == 0, 2])) == 1  # 60% zeros share one level
    assert np.array_equal(b.transform(np.array([[-1e9, 3, 0.0], [1e9, 3, 1e9]]))[:, 0], [0, 9])
    oh = g.one_hot(levels)
    assert oh.shape == (1000, 3, 10) and torch.all(oh.sum(-1) == 1)
    assert torch.equal(oh.argmax(-1), torch.as_tensor(levels))
    with pytest.raises(ValueError, match="categorical feature 1"):
        b.transform(np.array([[0.0, 12, 0.0]]))
    with pytest.raises(ValueError, match="before fit"):
        g.DecileBinner().transform(x)


def test_generator_deterministic_balanced_and_kyoto_shaped():
    x1, y1 = g.kyoto_like_flows(4000, seed=3, attack_fraction=0.3)
    x2, y2 = g.kyoto_like_flows(4000, seed=3, attack_fraction=0.3)
    x3, _ = g.kyoto_like_flows(4000, seed=4, attack_fraction=0.3)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2) and not np.array_equal(x1, x3)
    assert x1.shape == (4000, len(g.FEATURES)) == (4000, 21)
    assert abs(y1.mean() - 0.3) < 0.03
    col = {n: i for i, n in enumerate(g.FEATURES)}
    assert x1[:, col["dst_host_count"]].max() <= 100
    assert 0 <= x1[:, col["serror_rate"]].min() and x1[:, col["serror_rate"]].max() <= 1
    # heavy tails in bytes; attacks show more SYN errors than normal traffic
    sb = x1[:, col["src_bytes"]]
    assert np.quantile(sb, 0.99) > 10 * np.median(sb[sb > 0])
    assert x1[y1 == 1, col["serror_rate"]].mean() > x1[y1 == 0, col["serror_rate"]].mean() + 0.2
    with pytest.raises(ValueError, match="overlap"):
        g.kyoto_like_flows(10, seed=0, overlap=0.9)


def test_tiny_run_learns_and_is_deterministic(tmp_path):
    cfg = g.Config(n_train=2000, n_test=600, hidden_size=16, epochs=5, batch_size=100, lr=1e-2)
    r1 = g.run(out_dir=tmp_path, seed=0, progress=False, config=cfg)
    r2 = g.run(out_dir=None, seed=0, progress=False, config=cfg)
    assert [row.ours for row in r1.rows] == [row.ours for row in r2.rows]
    m = r1.details["metrics"]
    majority = r1.details["majority_accuracy"]
    assert m["svm"]["accuracy"] > majority + 0.1
    assert m["softmax"]["accuracy"] > majority + 0.1
    assert (tmp_path / "gru_svm_curves.png").stat().st_size > 0
    assert r1.files == [str(tmp_path / "gru_svm_curves.png")]
