"""Shared pieces of the forecasting recipes (``pgn_forecast``, ``cglu_impute``).

The protocol is the one of the long-range forecasting literature (Informer, Zhou et al. 2021;
DLinear, Zeng et al. 2023; PGN, Jia et al. 2024): the series is split by time into train /
validation / test (70 / 10 / 20 % by default); the normalisation is fitted on the training part
only; a window is ``lookback`` past steps followed by ``horizon`` target steps, and a validation
or test window is one whose *targets* lie in that split (its lookback may reach back into the
previous split, as in those papers' loaders). Metrics are reported on the normalised scale.

    split_points, window_starts, make_windows      windowing by time
    Standardizer                                   per-channel z-score fitted on train
    forecast_metrics, interval_metrics             MSE / MAE / RMSE, coverage / width of an interval
    train_model, predict                           Adam through the shared loop, early stopping on validation
    plot_forecasts                                 forecast-vs-truth panels (matplotlib, Agg)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..train.loop import TensorBatches, train_epochs


# ----------------------------------------------------------------------------------- windowing

def split_points(n: int, fractions: Sequence[float] = (0.7, 0.1, 0.2)) -> tuple[int, int]:
    """Indices (train_end, val_end) splitting ``n`` time steps by ``fractions`` (train, val, test).

    Train is ``[0, train_end)``, validation ``[train_end, val_end)``, test ``[val_end, n)``.
    """
    if len(fractions) != 3 or any(f <= 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions must be three positive numbers summing to 1, got {tuple(fractions)}")
    if n < 3:
        raise ValueError(f"n must be >= 3 time steps, got {n}")
    train_end = int(round(n * fractions[0]))
    val_end = int(round(n * (fractions[0] + fractions[1])))
    return train_end, val_end


def window_starts(n: int, lookback: int, horizon: int, target_start: int, target_stop: int,
                  stride: int = 1) -> np.ndarray:
    """Start indices ``s`` of every window whose targets ``[s + lookback, s + lookback + horizon)``
    lie inside ``[target_start, target_stop)`` and whose lookback ``[s, s + lookback)`` starts at
    ``s >= 0``; every ``stride``-th such start, from the first.

    For a training window pass ``target_start = 0`` so that the whole window lies in train.
    """
    if lookback < 1 or horizon < 1 or stride < 1:
        raise ValueError(f"lookback, horizon and stride must be >= 1, got {lookback}, {horizon}, {stride}")
    if not 0 <= target_start <= target_stop <= n:
        raise ValueError(f"need 0 <= target_start <= target_stop <= n, got {target_start}, {target_stop}, {n}")
    first = max(0, target_start - lookback)
    last = target_stop - lookback - horizon  # inclusive
    if last < first:
        return np.zeros(0, dtype=np.int64)
    return np.arange(first, last + 1, stride, dtype=np.int64)


def make_windows(series: np.ndarray, starts: np.ndarray, lookback: int, horizon: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Cut windows out of ``series`` (N, C) or (N,).

    Returns ``(past, future)``: (n, lookback, C) and (n, horizon, C), or (n, lookback) and
    (n, horizon) for a 1-D series.
    """
    series = np.asarray(series)
    if series.ndim not in (1, 2):
        raise ValueError(f"series must be (N,) or (N, C), got shape {series.shape}")
    starts = np.asarray(starts, dtype=np.int64)
    if starts.size and (starts.min() < 0 or starts.max() + lookback + horizon > len(series)):
        raise ValueError(f"a window runs outside the series of length {len(series)}")
    idx = starts[:, None] + np.arange(lookback + horizon)[None, :]
    cut = series[idx]
    return cut[:, :lookback], cut[:, lookback:]


class Standardizer:
    """Per-channel z-score ``(x - mean) / std`` fitted on the training part only.

    ``fit`` takes (N,) or (N, C) and ignores NaNs (missing values), so it can be fitted on the
    observed training values of an incomplete series.
    """

    def __init__(self):
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

    def fit(self, train: np.ndarray) -> "Standardizer":
        train = np.asarray(train, dtype=np.float64)
        if train.ndim not in (1, 2) or train.shape[0] < 2:
            raise ValueError(f"train must be (N,) or (N, C) with N >= 2, got shape {train.shape}")
        self.mean = np.nanmean(train, axis=0)
        std = np.nanstd(train, axis=0)
        self.std = np.where(std > 0, std, 1.0)
        return self

    def _check(self):
        if self.mean is None:
            raise ValueError("Standardizer used before fit")

    def transform(self, x: np.ndarray) -> np.ndarray:
        self._check()
        return (np.asarray(x, dtype=np.float64) - self.mean) / self.std

    def inverse(self, z: np.ndarray) -> np.ndarray:
        self._check()
        return np.asarray(z, dtype=np.float64) * self.std + self.mean


# ----------------------------------------------------------------------------------- metrics

def forecast_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Mean squared, mean absolute and root mean squared error over every element."""
    pred, true = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if pred.shape != true.shape:
        raise ValueError(f"pred shape {pred.shape} != true shape {true.shape}")
    err = pred - true
    mse = float(np.mean(err ** 2))
    return {"mse": mse, "mae": float(np.mean(np.abs(err))), "rmse": math.sqrt(mse)}


def interval_metrics(true: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> dict[str, float]:
    """Empirical coverage (share of ``true`` inside ``[lower, upper]``) and mean width of an interval."""
    true, lower, upper = (np.asarray(a, dtype=np.float64) for a in (true, lower, upper))
    if not true.shape == lower.shape == upper.shape:
        raise ValueError(f"true, lower, upper shapes differ: {true.shape}, {lower.shape}, {upper.shape}")
    if np.any(lower > upper):
        raise ValueError("lower must be <= upper everywhere")
    inside = (true >= lower) & (true <= upper)
    return {"coverage": float(inside.mean()), "width": float(np.mean(upper - lower))}


# ----------------------------------------------------------------------------------- training

@torch.no_grad()
def predict(model: nn.Module, inputs: Sequence[torch.Tensor], batch_size: int = 256):
    """``model(*inputs)`` in evaluation mode, in batches; outputs concatenated along dim 0
    (a tuple of outputs is concatenated element-wise)."""
    model.eval()
    n = inputs[0].shape[0]
    outs = [model(*(t[i:i + batch_size] for t in inputs)) for i in range(0, n, batch_size)]
    if isinstance(outs[0], tuple):
        return tuple(torch.cat(parts, 0) for parts in zip(*outs))
    return torch.cat(outs, 0)


def train_model(model: nn.Module, train: Sequence[torch.Tensor], val: Sequence[torch.Tensor],
                loss_fn: Callable, *, epochs: int, batch_size: int = 32, lr: float = 1e-3,
                patience: int = 3, seed: int = 0, progress: bool = True, desc: str = "train") -> dict:
    """Adam on shuffled mini-batches with early stopping; restores the best-validation weights
    (the shared loop :func:`recurlab.train.loop.train_epochs`, one validation per epoch).

    Args:
        train, val: tuples ``(*inputs, target)`` of tensors sharing dim 0; the model is called as
            ``model(*inputs)`` and the loss as ``loss_fn(output, target)``.
        epochs: maximum passes over ``train``; training stops after ``patience`` epochs without
            a lower validation loss.
        seed: seeds the shuffling (the caller seeds the initialisation).

    Returns:
        dict with ``train_loss`` and ``val_loss`` per epoch, ``best_epoch`` and ``best_val``.
    """
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs}, {batch_size}")
    *x_val, y_val = val
    batches = TensorBatches(train, batch_size, torch.Generator().manual_seed(seed))
    history = train_epochs(model, torch.optim.Adam(model.parameters(), lr=lr), loss_fn, batches, epochs,
                           validate=lambda: {"val_loss": float(loss_fn(predict(model, x_val), y_val))},
                           select="val_loss", patience=patience, progress=progress, desc=desc)
    return {"train_loss": history.window_loss, "val_loss": [v["val_loss"] for v in history.val],
            "best_epoch": history.best_window, "best_val": history.best_value}


# ----------------------------------------------------------------------------------- plotting

def plot_forecasts(path: str | Path, panels: Sequence[dict], title: str = "") -> Path:
    """Save forecast-vs-truth panels as a PNG (one row per panel).

    Each panel is a dict with ``history`` (lookback values, (L,)), ``truth`` ((H,)),
    ``forecasts`` ({name: (H,)}), optional ``bands`` ({name: (lower (H,), upper (H,))}),
    optional ``observed`` (bool (L,): which history points were seen; unseen ones are drawn
    hollow) and ``title``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 3.2 * len(panels)), squeeze=False)
    for ax, panel in zip(axes[:, 0], panels):
        history = np.asarray(panel["history"])
        truth = np.asarray(panel["truth"])
        L, H = len(history), len(truth)
        t_past, t_future = np.arange(-L, 0), np.arange(H)
        ax.plot(t_past, history, color="0.4", lw=1, label="history")
        observed = panel.get("observed")
        if observed is not None:
            observed = np.asarray(observed, dtype=bool)
            ax.scatter(t_past[~observed], history[~observed], s=6, facecolors="none", edgecolors="red",
                       lw=0.6, label="missing (unseen)", zorder=3)
        ax.plot(t_future, truth, color="black", lw=1.5, label="truth")
        for name, (lo, hi) in (panel.get("bands") or {}).items():
            ax.fill_between(t_future, lo, hi, alpha=0.25, label=f"{name} interval")
        for name, forecast in panel["forecasts"].items():
            ax.plot(t_future, np.asarray(forecast), lw=1.2, label=name)
        ax.axvline(0, color="0.7", ls=":")
        ax.set_title(panel.get("title", ""), fontsize=10)
        ax.legend(fontsize=7, ncol=3, loc="upper left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
