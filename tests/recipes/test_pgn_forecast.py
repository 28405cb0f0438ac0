import numpy as np
import pytest
import torch

from recurlab.recipes import pgn_forecast as pf

TINY = pf.Config(datasets=("synthetic",), models=("tpgn", "dlinear"), synthetic_hours=24 * 7 * 10,
                 synthetic_lookback=72, synthetic_horizon=48, train_stride=3, epochs=6, patience=6)


def test_tiny_run_learns_and_is_deterministic(tmp_path):
    a = pf.run(config=TINY, out_dir=tmp_path, progress=False)
    res = a.details["synthetic"]["models"]
    for name in ("tpgn", "dlinear"):
        assert res[name]["mse"] < 0.8 * res["seasonal_naive"]["mse"], (name, res)
        assert res[name]["mse"] < 0.8 * res["lookback_mean"]["mse"], (name, res)
    b = pf.run(config=TINY, progress=False)
    assert [r.ours for r in a.rows] == [r.ours for r in b.rows]
    assert (tmp_path / "forecasts.png").exists() and a.files == [str(tmp_path / "forecasts.png")]
    metrics = [r.metric for r in a.rows]
    assert "synthetic test MSE, tpgn" in metrics and "synthetic test MAE, dlinear" in metrics


def test_tpgn_columns_map_to_their_own_horizon_phases():
    """With the short branch switched off, input phase p only reaches output phase p: the grid is
    read column-wise into the PGN and the head writes row-major back to the horizon."""
    torch.manual_seed(0)
    P, L, H = 4, 12, 8
    model = pf.TPGN(L, H, P, n_marks=1, d_model=8)
    with torch.no_grad():
        model.short_rows.weight.zero_()
        model.short_rows.bias.zero_()
    x = torch.randn(1, L, requires_grad=True)
    out = model(x, torch.zeros(1, L, 1))
    assert out.shape == (1, H)
    for k in range(H):
        (grad,) = torch.autograd.grad(out[0, k], x, retain_graph=True)
        touched = grad[0].abs() > 0
        assert touched[torch.arange(L) % P == k % P].all()
        assert not touched[torch.arange(L) % P != k % P].any()


def test_tpgn_long_branch_uses_the_pgn_unit_with_window_rows_minus_one():
    model = pf.TPGN(168, 168, 24, n_marks=2, d_model=32)
    assert model.pgn.window == 6 and model.rows == 7 and model.out_rows == 7
    with pytest.raises(ValueError, match="multiple"):
        pf.TPGN(100, 168, 24, 2)
    with pytest.raises(ValueError, match="horizon"):
        pf.TPGN(168, 100, 24, 2)
    with pytest.raises(ValueError, match="expected x"):
        model(torch.zeros(2, 100), torch.zeros(2, 100, 2))


@pytest.mark.parametrize("name", pf.MODELS)
def test_instance_norm_makes_every_model_shift_and_scale_equivariant(name):
    torch.manual_seed(0)
    model = pf.build_model(name, 48, 24, 24, 2, pf.Config(d_model=8)).double()
    x, marks = torch.randn(3, 48, dtype=torch.float64), torch.rand(3, 48, 2, dtype=torch.float64)
    y = model(x, marks)
    assert y.shape == (3, 24)
    torch.testing.assert_close(model(3 * x + 5, marks), 3 * y + 5, rtol=1e-5, atol=1e-5)


def test_dlinear_moving_average_decomposition():
    model = pf.DLinear(6, 2, kernel=3).double()
    with torch.no_grad():
        model.trend.weight.zero_(); model.trend.bias.zero_()
        model.seasonal.weight.zero_(); model.seasonal.bias.zero_()
        model.trend.weight[0, 0] = 1.0       # output 0 = first trend value
        model.seasonal.weight[1, 5] = 1.0    # output 1 = last remainder value
    x = torch.tensor([[1.0, 4.0, 1.0, 4.0, 1.0, 7.0]], dtype=torch.float64)
    out = model(x)
    torch.testing.assert_close(out[0, 0], torch.tensor((1 + 1 + 4) / 3, dtype=torch.float64))
    torch.testing.assert_close(out[0, 1], torch.tensor(7 - (1 + 7 + 7) / 3, dtype=torch.float64))


def test_synthetic_series_is_seeded_and_daily_periodic():
    v, marks = pf.synthetic_series(24 * 7 * 8, seed=1)
    v2, _ = pf.synthetic_series(24 * 7 * 8, seed=1)
    v3, _ = pf.synthetic_series(24 * 7 * 8, seed=2)
    np.testing.assert_array_equal(v, v2)
    assert not np.allclose(v, v3)
    assert marks.shape == (len(v), 2) and marks.min() >= -0.5 and marks.max() <= 0.5
    d = v - np.convolve(v, np.ones(169) / 169, mode="same")  # remove the trend
    d = d[200:-200]
    corr = lambda lag: np.corrcoef(d[:-lag], d[lag:])[0, 1]  # noqa: E731
    assert corr(24) > 0.5 and corr(12) < 0  # daily variance 0.58 vs AR(1) noise 0.18


def test_co2_series_loads_offline_without_gaps():
    values, marks = pf.co2_series()
    assert values.shape == (2284,) and marks.shape == (2284, 1)
    assert np.isfinite(values).all() and 300 < values.min() < values.max() < 400
