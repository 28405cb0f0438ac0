import numpy as np
import pytest
import torch
from torch import nn

from recurlab.recipes.forecasting import (Standardizer, forecast_metrics, interval_metrics, make_windows,
                                          plot_forecasts, predict, split_points, train_model, window_starts)


def test_split_points_and_errors():
    assert split_points(100) == (70, 80)
    assert split_points(10, (0.5, 0.25, 0.25)) == (5, 8)
    with pytest.raises(ValueError, match="fractions"):
        split_points(100, (0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="n must"):
        split_points(2)


def test_window_starts_keep_targets_inside_the_split():
    n, L, H = 100, 10, 5
    train = window_starts(n, L, H, 0, 70)
    assert train[0] == 0 and train[-1] + L + H == 70           # whole window inside train
    test = window_starts(n, L, H, 80, 100)
    assert test[0] + L == 80 and test[-1] + L + H == 100        # first target is the split's first step
    assert test[0] < 80                                         # its lookback reaches back into validation
    assert list(window_starts(n, L, H, 0, 70, stride=20)) == [0, 20, 40]
    assert len(window_starts(n, L, H, 95, 100)) == 1 and len(window_starts(n, L, H, 96, 100)) == 0
    with pytest.raises(ValueError, match="target_start"):
        window_starts(n, L, H, 50, 40)


def test_make_windows_cuts_the_right_values():
    series = np.arange(20.0)
    past, future = make_windows(series, np.array([0, 3]), 4, 2)
    np.testing.assert_array_equal(past, [[0, 1, 2, 3], [3, 4, 5, 6]])
    np.testing.assert_array_equal(future, [[4, 5], [7, 8]])
    past, future = make_windows(np.stack([series, -series], 1), np.array([1]), 3, 1)
    assert past.shape == (1, 3, 2) and future.shape == (1, 1, 2)
    np.testing.assert_array_equal(future[0, 0], [4, -4])
    with pytest.raises(ValueError, match="outside"):
        make_windows(series, np.array([18]), 4, 2)


def test_standardizer_fits_train_only_and_ignores_nan():
    train = np.array([[1.0, 10.0], [3.0, np.nan], [5.0, 30.0]])
    s = Standardizer().fit(train)
    np.testing.assert_allclose(s.mean, [3.0, 20.0])
    np.testing.assert_allclose(s.std, [np.std([1, 3, 5]), 10.0])
    x = np.array([[7.0, 0.0]])
    np.testing.assert_allclose(s.inverse(s.transform(x)), x)
    with pytest.raises(ValueError, match="before fit"):
        Standardizer().transform(x)


def test_metrics_by_hand():
    m = forecast_metrics(np.array([1.0, 2.0, 4.0]), np.array([1.0, 0.0, 0.0]))
    assert m["mse"] == pytest.approx(20 / 3) and m["mae"] == pytest.approx(2.0)
    assert m["rmse"] == pytest.approx(np.sqrt(20 / 3))
    iv = interval_metrics(np.array([0.0, 1.0, 5.0, -2.0]), np.full(4, -1.0), np.full(4, 2.0))
    assert iv == {"coverage": 0.5, "width": 3.0}
    with pytest.raises(ValueError, match="shape"):
        forecast_metrics(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="lower"):
        interval_metrics(np.zeros(2), np.ones(2), np.zeros(2))


def test_train_model_learns_and_restores_best_weights():
    torch.manual_seed(0)
    x = torch.randn(256, 4)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [0.0]]) + 0.01 * torch.randn(256, 1)
    model = nn.Linear(4, 1)
    loss = nn.MSELoss()
    before = float(loss(predict(model, (x[200:],)), y[200:]))
    hist = train_model(model, (x[:200], y[:200]), (x[200:], y[200:]), loss, epochs=30, batch_size=16, lr=0.05,
                       patience=30, progress=False)
    after = float(loss(predict(model, (x[200:],)), y[200:]))
    assert after < 0.01 * before
    assert after == pytest.approx(hist["best_val"], rel=1e-5)
    assert hist["best_val"] == min(hist["val_loss"])


def test_plot_forecasts_writes_png(tmp_path):
    path = plot_forecasts(tmp_path / "p.png", [{"history": np.zeros(8), "truth": np.ones(4),
                                                "forecasts": {"a": np.ones(4)},
                                                "bands": {"a": (np.zeros(4), np.full(4, 2.0))},
                                                "observed": np.arange(8) % 2 == 0, "title": "t"}])
    assert path.exists() and path.read_bytes()[:4] == b"\x89PNG"
