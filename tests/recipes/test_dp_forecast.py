"""Tests of the DP forecasting recipe: Opacus per-sample gradients of the ReLU-BiGRU, the Gaussian
mechanism's calibration, the data/windowing, the metrics, and a tiny deterministic run."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recurlab.recipes import dp_forecast as d


def test_relu_gru_matches_the_equations():
    torch.manual_seed(0)
    cell = d.ReLUGRU(3, 4).double()
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    h = torch.zeros(2, 4, dtype=torch.float64)
    wx, bx = cell.input_gates.weight, cell.input_gates.bias
    wh, bh = cell.hidden_gates.weight, cell.hidden_gates.bias
    for t in range(5):
        gx, gh = x[:, t] @ wx.T + bx, h @ wh.T + bh
        r = torch.sigmoid(gx[:, :4] + gh[:, :4])
        z = torch.sigmoid(gx[:, 4:8] + gh[:, 4:8])
        n = torch.relu(gx[:, 8:] + r * gh[:, 8:])
        h = z * h + (1 - z) * n
    assert torch.allclose(cell(x), h)
    # the reverse direction is the forward direction on the time-reversed input
    rev = d.ReLUGRU(3, 4, reverse=True).double()
    rev.load_state_dict(cell.state_dict())
    assert torch.allclose(rev(x), cell(x.flip(1)))


def test_opacus_per_sample_gradients_equal_one_at_a_time_gradients():
    from opacus import GradSampleModule

    torch.manual_seed(0)
    model = d.BiGRUForecaster(n_features=5, hidden_size=4, n_outputs=3).double()
    x = torch.randn(4, 6, 5, dtype=torch.float64)
    y = torch.randn(4, 3, dtype=torch.float64)
    expected = []
    for i in range(4):
        model.zero_grad()
        F.l1_loss(model(x[i:i + 1]), y[i:i + 1], reduction="sum").backward()
        expected.append({n: p.grad.clone() for n, p in model.named_parameters()})
    gsm = GradSampleModule(model, loss_reduction="sum")
    F.l1_loss(gsm(x), y, reduction="sum").backward()
    for name, p in model.named_parameters():
        assert p.grad_sample.shape == (4, *p.shape), name
        for i in range(4):
            assert torch.allclose(p.grad_sample[i], expected[i][name], atol=1e-12), (name, i)
    gsm.remove_hooks()


def test_gaussian_sigma_analytic_and_classic():
    # classic formula by hand
    assert d.gaussian_sigma(0.5, 1e-5, 2.0, method="classic") == pytest.approx(2 * math.sqrt(2 * math.log(1.25e5)) / 0.5)
    for eps in (0.1, 0.5, 0.9):
        assert d.gaussian_sigma(eps, 1e-5) < d.gaussian_sigma(eps, 1e-5, method="classic")
    for eps in (0.5, 1.0, 4.0, 8.0):
        s = d.gaussian_sigma(eps, 1e-5)
        assert d.analytic_delta(s, eps) <= 1e-5 < d.analytic_delta(0.99 * s, eps)  # smallest valid sigma
        assert d.gaussian_sigma(eps, 1e-5, 3.0) == pytest.approx(3 * s)  # linear in the sensitivity
    # monotone: more privacy (smaller eps or delta) needs more noise
    assert d.gaussian_sigma(0.5, 1e-5) > d.gaussian_sigma(1.0, 1e-5) > d.gaussian_sigma(1.0, 1e-3)
    with pytest.raises(ValueError, match="epsilon < 1"):
        d.gaussian_sigma(2.0, 1e-5, method="classic")
    with pytest.raises(ValueError, match="delta"):
        d.gaussian_sigma(1.0, 0.0)


def test_perturb_counts_adds_rounded_noise_of_sigma():
    rng = np.random.default_rng(0)
    c = np.full((20000, 2), 1000.0)
    noisy = d.perturb_counts(c, 5.0, rng)
    assert np.array_equal(noisy, np.rint(noisy))
    assert abs((noisy - c).std() - 5.0) < 0.1 and abs((noisy - c).mean()) < 0.1


def test_series_windows_and_metrics():
    a = d.mobility_series(14, seed=1)
    assert np.array_equal(a, d.mobility_series(14, seed=1)) and not np.array_equal(a, d.mobility_series(14, seed=2))
    assert a.shape == (14 * 24, 6) and a.min() >= 0
    # the regions' mean levels and the daily cycle: business-heavy region 4 peaks at midday on weekdays
    assert np.allclose(a.mean(0) / np.array(d.REGION_LEVELS), 1, atol=0.35)
    day = a[:24 * 5, 4].reshape(5, 24)
    assert np.all(day[:, 12:15].mean(1) > 1.5 * day[:, 0:4].mean(1))
    # correlated regions (shared factor + common cycles)
    assert np.corrcoef(a.T)[0, 2] > 0
    f = np.arange(20.0).reshape(10, 2)
    x, y = d.make_windows(f, f[:, :1], lag=3)
    assert x.shape == (7, 3, 2) and y.shape == (7, 1)
    assert np.array_equal(x[0], f[0:3]) and y[0, 0] == f[3, 0]
    m = d.forecast_errors(np.array([[1.0, 0.0], [3.0, 0.0]]), np.array([[2.0, 0.0], [3.0, 0.0]]))
    # region 0: rmse sqrt(1/2), mae 1/2, smape 100*(2/3 + 0)/2; region 1 all zeros -> 0
    assert m["rmse"] == pytest.approx(math.sqrt(0.5) / 2) and m["mae"] == pytest.approx(0.25)
    assert m["smape"] == pytest.approx(100 * (2 / 3) / 2 / 2)
    with pytest.raises(ValueError, match="lag"):
        d.make_windows(f, f, lag=10)


def test_tiny_run_beats_mean_forecast_and_is_deterministic(tmp_path):
    cfg = d.Config(n_days=16, test_days=3, hidden_size=8, epochs=6, batch_size=64, lr=1e-2, epsilons=(4.0,))
    r1 = d.run(out_dir=tmp_path, seed=0, progress=False, config=cfg)
    r2 = d.run(out_dir=None, seed=0, progress=False, config=cfg)
    assert [row.ours for row in r1.rows] == [row.ours for row in r2.rows]
    res = r1.details["results"]
    counts = d.mobility_series(16, seed=0)
    test = counts[-72:]
    mean_rmse = float(np.sqrt(((test - counts[:-72].mean(0)) ** 2).mean(0)).mean())
    assert res["non_private"]["rmse"] < 0.7 * mean_rmse
    assert res["input"]["4"]["rmse"] < 0.7 * mean_rmse
    dp = res["dp_sgd"]["4"]
    assert 0 < dp["epsilon_spent"] <= 4.0 * 1.05 and dp["noise_multiplier"] > 0
    assert (tmp_path / "dp_forecast_error_vs_epsilon.png").stat().st_size > 0
