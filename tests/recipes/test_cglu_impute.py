import numpy as np
import pytest
import torch

from recurlab.recipes import cglu_impute as ci
from recurlab.recipes.forecasting import make_windows

TINY = ci.Config(n_sensors=3, hours=24 * 7 * 8, lookback=48, horizon=12, d_model=32, n_layers=2, hidden=64,
                 gru_hidden=16, train_stride=2, epochs=8, patience=8, patterns=("none", "block"), models=("cglu",))


def test_tiny_run_learns_and_is_deterministic(tmp_path):
    a = ci.run(config=TINY, out_dir=tmp_path, progress=False)
    for pattern in TINY.patterns:
        res = a.details[pattern]["models"]
        assert res["cglu"]["rmse"] < 0.8 * res["naive"]["rmse"], (pattern, res)
        assert 0.5 < res["cglu"]["coverage"] <= 1.0 and res["cglu"]["width"] > 0
    assert a.details["block"]["missing_share"] > 0.1 and a.details["none"]["missing_share"] == 0
    b = ci.run(config=TINY, progress=False)
    assert [r.ours for r in a.rows] == [r.ours for r in b.rows]
    assert (tmp_path / "forecast_intervals.png").exists()


def test_mcar_mask_rate_and_determinism():
    m = ci.mcar_mask((20000, 4), 0.2, np.random.default_rng(3))
    assert m.dtype == bool and abs(1 - m.mean() - 0.2) < 0.01
    np.testing.assert_array_equal(m, ci.mcar_mask((20000, 4), 0.2, np.random.default_rng(3)))
    assert not np.array_equal(m, ci.mcar_mask((20000, 4), 0.2, np.random.default_rng(4)))
    with pytest.raises(ValueError, match="rate"):
        ci.mcar_mask((3, 3), 1.0, np.random.default_rng(0))


def _gaps(column):
    """(start, length) of every maximal run of False."""
    padded = np.concatenate([[True], column, [True]]).astype(int)
    edges = np.diff(padded)
    starts, stops = np.flatnonzero(edges == -1), np.flatnonzero(edges == 1)
    return list(zip(starts, stops - starts))


def test_block_mask_gap_lengths_rate_and_determinism():
    n = 60000
    m = ci.block_mask((n, 3), 0.2, 6, 48, np.random.default_rng(0))
    assert abs(1 - m.mean() - 0.2) < 0.02
    for c in range(3):
        gaps = _gaps(m[:, c])
        assert len(gaps) > 100
        for start, length in gaps:
            if start + length < n:                      # a gap cut by the end may be shorter
                assert 6 <= length <= 48, length
        assert m[0, c]                                  # the series starts with an observed run
    np.testing.assert_array_equal(m, ci.block_mask((n, 3), 0.2, 6, 48, np.random.default_rng(0)))
    with pytest.raises(ValueError, match="min_len"):
        ci.block_mask((10, 1), 0.2, 5, 4, np.random.default_rng(0))


def test_missing_mask_patterns():
    cfg = ci.Config()
    assert ci.missing_mask("none", (50, 2), cfg, 0).all()
    block = ci.missing_mask("block", (500, 2), cfg, 1)
    np.testing.assert_array_equal(block, ci.missing_mask("block", (500, 2), cfg, 1))
    assert not block.all()
    with pytest.raises(ValueError, match="pattern"):
        ci.missing_mask("weird", (5, 2), cfg, 0)


def test_targets_are_never_masked():
    z = np.random.default_rng(0).normal(size=(200, 2))
    nothing_seen = np.zeros_like(z, dtype=bool)
    starts = np.array([0, 50, 100])
    w = ci._windows(z, nothing_seen, np.arange(200.0), starts, TINY)
    _, target = make_windows(z, starts, TINY.lookback, TINY.horizon)
    np.testing.assert_allclose(w["target"].numpy(), target, rtol=1e-6)
    assert (w["inputs"][0] == 0).all() and (w["inputs"][1] == 0).all()


def test_last_observed():
    values = np.array([[[1.0, 5.0], [2.0, 6.0], [3.0, 7.0]]])           # (1, L=3, S=2)
    seen = np.array([[[True, False], [False, False], [False, False]]])
    np.testing.assert_array_equal(ci.last_observed(values, seen), [[1.0, 0.0]])
    np.testing.assert_array_equal(ci.last_observed(values, np.ones_like(seen)), [[3.0, 7.0]])


def test_gaussian_nll_matches_torch():
    mean, target = torch.randn(4, 3, 2), torch.randn(4, 3, 2)
    log_var = torch.randn(4, 3, 2)
    expected = torch.nn.functional.gaussian_nll_loss(mean, target, log_var.exp(), eps=0.0)
    torch.testing.assert_close(ci.gaussian_nll((mean, log_var), target), expected)
    with pytest.raises(ValueError, match="match"):
        ci.gaussian_nll((mean, log_var), target[:, :2])


def test_fourier_features_are_periodic():
    f = ci.fourier_time_features(np.array([0.0, 24.0, 168.0, 5.0]))
    assert f.shape == (4, 6)
    np.testing.assert_allclose(f[0, :4], f[1, :4], atol=1e-12)         # daily terms repeat after 24 h
    np.testing.assert_allclose(f[0], f[2], atol=1e-12)                 # everything repeats after a week
    assert not np.allclose(f[0, 4:], f[1, 4:])                          # the weekly term does not after a day


def test_forecasters_shapes_and_mask_channel_is_read():
    torch.manual_seed(0)
    B, L, H, S, F = 2, 8, 3, 2, 6
    values, mask = torch.randn(B, L, S), torch.ones(B, L, S)
    origin, steps = torch.randn(B, F), torch.randn(B, L, F)
    for model in (ci.CGLUForecaster(L, H, S, F, d_model=16, n_layers=2, hidden=32), ci.GRUForecaster(H, S, F, 8)):
        mean, log_var = model(values, mask, origin, steps)
        assert mean.shape == log_var.shape == (B, H, S)
        mean2, _ = model(values, torch.zeros_like(mask), origin, steps)
        assert not torch.allclose(mean, mean2)
    with pytest.raises(ValueError, match="values and mask"):
        ci.CGLUForecaster(L, H, S, F)(values[:, :4], mask[:, :4], origin, steps)
