"""TPGN long-range forecasting (Jia et al., "PGN: The RNN's New Successor is Effective for Long-Range
Time Series Forecasting", NeurIPS 2024; the authors' code Water2sea/TPGN, models/TPGN.py).

Claim: TPGN, a two-branch model whose long-term branch is a Parallel Gated Network (PGN) run
across periods, beats RNN-, CNN-, linear- and Transformer-based forecasters on 168 -> 168 (and
longer) univariate forecasting, e.g. ETTh1 168 -> 168 test MSE 0.1061 vs DLinear 0.1122.

The model (paper Sec. 4, official ``TPGN`` module). A lookback of L = R * P steps, P the period,
is laid out as a grid z[r, p] (R rows = periods, P columns = phases); each cell holds the value
and its time features (paper: "timeF" marks).

    long branch  (per column p, down the rows r = 0..R-1; window R-1 = every earlier row):
        e_r     = W_e z[r, p] + b_e                            embed the cell (1 + marks -> d)
        h_r     = HIE(e_{r-R+1}, ..., e_{r-1})                  PGN eq. 1, strictly past rows
        [g, c]  = W_g [e_r ; h_r] + b_g                         PGN eq. 2
        o_r     = σ(g) ⊙ h_r + (1 - σ(g)) ⊙ tanh(c)             PGN eq. 3
        long_p  = W_long [o_0; ...; o_{R-1}]                    linear over the rows (R·d -> d)
    short branch (patches):
        s_r     = W_row [z[r, 0]; ...; z[r, P-1]]               linear over one period (P·(1+m) -> d)
        short   = W_col [s_0; ...; s_{R-1}]                     linear over the rows (R·d -> d)
    head: ŷ[k, p] = W_o [short ; long_p]   (2d -> R' = H / P rows), read back row-major to (H,)

PGN eqs. 1-3 are recurlab's registered ``pgn`` token mixer (recurlab/layers/pgn.py) run on the
sequence of rows with ``window = R - 1``; everything else is plain ``nn.Linear``.

Differences from the official code (each a choice, stated in docs/recipes/pgn_forecast.md):
  * the official HIE is one grouped convolution from the raw cell (value + marks) to d channels
    over the R-1 past rows, and its gate reads the raw cell; here the cell is first embedded to
    d channels and recurlab's ``pgn`` factorises the HIE into a depthwise lag filter and a d x d
    mixing linear (see its docstring), with the gate reading the embedded cell;
  * every model here, baselines included, sees a per-window instance normalisation (subtract the
    lookback mean, divide by its standard deviation, undo on the output: the official ``norm=1``
    option) because the co2 series trends far out of its training range;
  * training: Adam 1e-3, batch 32, early stopping on validation MSE as in the official script, but
    fewer epochs and a strided subset of training windows to fit a CPU budget.

Baselines, all predicting the whole horizon at once from the same normalised input:
DLinear (Zeng et al. 2023: moving-average trend + remainder, one linear map each over the
lookback), a GRU (``nn.GRU``, last hidden state -> linear to H) and a causal attention stack
(recurlab ``Block``s of ``attention`` + ``swiglu``, last token -> linear to H).

Data: (a) the weekly Mauna Loa CO2 series shipped in ``statsmodels.datasets.co2`` (2284 weeks,
1958-2001; 59 missing weeks filled by linear interpolation): period P = 52 (one year of weeks),
so L = H = 156 (three years) replaces 168 = 7 x 24; (b) a seeded synthetic hourly series with
daily and weekly cycles, a weekend dip, a trend and AR(1) noise: period 24, L = H = 168.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from .. import layers
from ..models.block import Block
from .common import RecipeResult, ResultRow
from .forecasting import (Standardizer, forecast_metrics, make_windows, plot_forecasts, predict, split_points,
                          train_model, window_starts)

PAPER = ("Jia, Lin, Wang, Chen, Lin, Chen, Tang, "
         "PGN: The RNN's New Successor is Effective for Long-Range Time Series Forecasting, NeurIPS 2024")

MODELS = ("tpgn", "dlinear", "gru", "attention")
DATASETS = ("synthetic", "co2")

# the paper's Table 1, input 168 -> horizon 168, univariate, normalised scale: (MSE, MAE)
PAPER_168 = {
    "tpgn": {"ETTh1": (0.1061, 0.2533), "ECL": (0.2107, 0.3264), "Traffic": (0.1196, 0.1857),
             "ETTh2": (0.2174, 0.3623), "Weather": (0.1877, 0.3166)},
    "dlinear": {"ETTh1": (0.1122, 0.2605), "ECL": (0.2606, 0.3579), "Traffic": (0.1519, 0.2195),
                "ETTh2": (0.2556, 0.3944), "Weather": (0.2421, 0.3578)},
}


@dataclass
class Config:
    """One run's settings. ``quick()`` fits < 3 min and ``full()`` < 12 min on one CPU core."""

    datasets: tuple[str, ...] = DATASETS
    models: tuple[str, ...] = MODELS
    d_model: int = 32                  # the paper's d_model
    synthetic_hours: int = 24 * 7 * 40  # 40 weeks of hourly data
    synthetic_lookback: int = 168
    synthetic_horizon: int = 168
    synthetic_period: int = 24
    co2_lookback: int = 156            # 3 years of weeks: L must be a multiple of P = 52
    co2_horizon: int = 156
    co2_period: int = 52
    train_stride: int = 2              # every k-th training window (they overlap by L + H - k steps)
    epochs: int = 25                   # the official script: 25 epochs, patience 5
    patience: int = 5
    batch_size: int = 32
    lr: float = 1e-3
    attention_layers: int = 2
    attention_heads: int = 2

    @classmethod
    def quick(cls) -> "Config":
        return cls(synthetic_hours=24 * 7 * 24, train_stride=3, epochs=15, patience=4)

    @classmethod
    def full(cls) -> "Config":
        return cls()


# ----------------------------------------------------------------------------------- data

def synthetic_series(n_hours: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A seeded hourly series with two periods, for 168 -> 168 forecasting with P = 24.

        y_t = 1.0 sin(2π t/24) + 0.4 sin(4π t/24 + 0.5)         daily cycle and its 2nd harmonic
            + 0.6 sin(2π t/168 + 1.0) - 0.8·[day_t ∈ {Sat, Sun}]  weekly cycle and a weekend dip
            + 1.5 t / n                                          linear trend over the series
            + e_t,   e_t = 0.7 e_{t-1} + 0.3 ε_t,  ε_t ~ N(0, 1)   AR(1) noise (numpy seed ``seed``)

    Returns ``(values (n,), marks (n, 2))``: marks are hour-of-day and day-of-week scaled to
    [-0.5, 0.5] (the "timeF" encoding of the paper's code); t = 0 is a Monday 00:00.
    """
    if n_hours < 2:
        raise ValueError(f"n_hours must be >= 2, got {n_hours}")
    rng = np.random.default_rng(seed)
    t = np.arange(n_hours, dtype=np.float64)
    hour, day = t % 24, (t // 24) % 7
    seasonal = (np.sin(2 * np.pi * t / 24) + 0.4 * np.sin(4 * np.pi * t / 24 + 0.5)
                + 0.6 * np.sin(2 * np.pi * t / 168 + 1.0) - 0.8 * (day >= 5))
    eps = rng.standard_normal(n_hours)
    noise = np.empty(n_hours)
    noise[0] = 0.3 * eps[0] / np.sqrt(1 - 0.7 ** 2)
    for i in range(1, n_hours):
        noise[i] = 0.7 * noise[i - 1] + 0.3 * eps[i]
    values = seasonal + 1.5 * t / n_hours + noise
    marks = np.stack([hour / 23 - 0.5, day / 6 - 0.5], axis=1)
    return values, marks


def co2_series() -> tuple[np.ndarray, np.ndarray]:
    """The weekly Mauna Loa CO2 series of ``statsmodels.datasets.co2`` (2284 weeks, ppm), missing
    weeks filled by linear interpolation; marks: week-of-year scaled to [-0.5, 0.5]."""
    from statsmodels.datasets import co2

    frame = co2.load_pandas().data
    values = frame["co2"].interpolate(limit_direction="both").to_numpy(dtype=np.float64)
    week = frame.index.isocalendar().week.to_numpy(dtype=np.float64)
    return values, ((week - 1) / 52 - 0.5)[:, None]


# ----------------------------------------------------------------------------------- models

class InstanceNorm(nn.Module):
    """Per-window normalisation around any forecaster (the official TPGN ``norm=1``; RevIN without
    the affine part): x -> (x - mean_L(x)) / std_L(x), forecast -> forecast * std + mean.

    ``forecaster(x (B, L), marks (B, L, m)) -> (B, H)``."""

    def __init__(self, forecaster: nn.Module, eps: float = 1e-5):
        super().__init__()
        self.forecaster = forecaster
        self.eps = eps

    def forward(self, x: torch.Tensor, marks: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        std = torch.sqrt(x.var(1, keepdim=True, unbiased=False) + self.eps)
        return self.forecaster((x - mean) / std, marks) * std + mean


class TPGN(nn.Module):
    """The two-branch TPGN forecaster (see the module docstring for the equations).

    Args:
        lookback: L, a multiple of ``period``.  horizon: H, a multiple of ``period``.
        period: P, the columns of the grid.  n_marks: m, time features per step.
        d_model: d, the width of both branches.
    Forward: x (B, L), marks (B, L, m) -> forecast (B, H).
    """

    def __init__(self, lookback: int, horizon: int, period: int, n_marks: int, d_model: int = 32):
        super().__init__()
        if period < 1 or lookback % period or lookback // period < 2:
            raise ValueError(f"lookback must be a multiple >= 2 of period, got lookback={lookback}, period={period}")
        if horizon % period:
            raise ValueError(f"horizon must be a multiple of period, got horizon={horizon}, period={period}")
        self.lookback, self.horizon, self.period, self.n_marks = lookback, horizon, period, n_marks
        self.rows, self.out_rows = lookback // period, horizon // period
        cell = 1 + n_marks
        # long branch: PGN down the rows of each column, then a linear over the rows
        self.embed = nn.Linear(cell, d_model)
        self.pgn = layers.build("pgn", d_model, kind="token", window=self.rows - 1)
        self.long_rows = nn.Linear(self.rows * d_model, d_model)
        # short branch: a linear over each period (row), then over the rows
        self.short_cols = nn.Linear(period * cell, d_model)
        self.short_rows = nn.Linear(self.rows * d_model, d_model)
        self.head = nn.Linear(2 * d_model, self.out_rows)

    def forward(self, x: torch.Tensor, marks: torch.Tensor) -> torch.Tensor:
        B, L = x.shape
        if L != self.lookback or marks.shape != (B, L, self.n_marks):
            raise ValueError(f"expected x (B, {self.lookback}) and marks (B, {self.lookback}, {self.n_marks}), "
                             f"got {tuple(x.shape)} and {tuple(marks.shape)}")
        R, P = self.rows, self.period
        grid = torch.cat([x.unsqueeze(-1), marks], -1).view(B, R, P, -1)        # z[b, r, p, :]
        # long: one sequence of R rows per (window, column)
        columns = grid.transpose(1, 2).reshape(B * P, R, -1)
        o, _ = self.pgn(self.embed(columns))                                    # (B·P, R, d)
        long = self.long_rows(o.reshape(B, P, -1))                              # (B, P, d)
        # short: patches = rows
        short = self.short_rows(self.short_cols(grid.reshape(B, R, -1)).reshape(B, -1))  # (B, d)
        both = torch.cat([short.unsqueeze(1).expand(-1, P, -1), long], -1)      # (B, P, 2d)
        out = self.head(both)                                                   # (B, P, R'): ŷ[k, p]
        return out.transpose(1, 2).reshape(B, self.horizon)


class DLinear(nn.Module):
    """DLinear (Zeng et al., "Are Transformers Effective for Time Series Forecasting?", AAAI 2023):
    trend = moving average (kernel 25, edges replicated), remainder = x - trend, forecast =
    W_t trend + W_s remainder. x (B, L) -> (B, H); marks are ignored, as in the paper."""

    def __init__(self, lookback: int, horizon: int, kernel: int = 25):
        super().__init__()
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"kernel must be a positive odd number, got {kernel}")
        self.kernel = kernel
        self.trend = nn.Linear(lookback, horizon)
        self.seasonal = nn.Linear(lookback, horizon)

    def forward(self, x: torch.Tensor, marks: torch.Tensor | None = None) -> torch.Tensor:
        half = (self.kernel - 1) // 2
        padded = torch.cat([x[:, :1].expand(-1, half), x, x[:, -1:].expand(-1, half)], 1)
        trend = padded.unfold(1, self.kernel, 1).mean(-1)
        return self.trend(trend) + self.seasonal(x - trend)


class GRUForecaster(nn.Module):
    """``nn.GRU`` over the lookback steps [value; marks]; last hidden state -> linear to H."""

    def __init__(self, horizon: int, n_marks: int, d_model: int = 32):
        super().__init__()
        self.gru = nn.GRU(1 + n_marks, d_model, batch_first=True)
        self.head = nn.Linear(d_model, horizon)

    def forward(self, x: torch.Tensor, marks: torch.Tensor) -> torch.Tensor:
        _, h = self.gru(torch.cat([x.unsqueeze(-1), marks], -1))
        return self.head(h[-1])


class AttentionForecaster(nn.Module):
    """A causal recurlab stack: Linear embed -> ``n_layers`` Blocks (attention + swiglu) -> RMSNorm;
    the last token's state -> linear to H. x (B, L), marks (B, L, m) -> (B, H)."""

    def __init__(self, horizon: int, n_marks: int, d_model: int = 32, n_layers: int = 2, n_heads: int = 2):
        super().__init__()
        self.embed = nn.Linear(1 + n_marks, d_model)
        self.blocks = nn.ModuleList(
            Block(layers.build("attention", d_model, kind="token", n_heads=n_heads),
                  layers.build("swiglu", d_model, kind="channel")) for _ in range(n_layers))
        self.norm = nn.RMSNorm(d_model)
        self.head = nn.Linear(d_model, horizon)

    def forward(self, x: torch.Tensor, marks: torch.Tensor) -> torch.Tensor:
        h = self.embed(torch.cat([x.unsqueeze(-1), marks], -1))
        for block in self.blocks:
            h, _ = block(h)
        return self.head(self.norm(h[:, -1]))


def build_model(name: str, lookback: int, horizon: int, period: int, n_marks: int, config: Config) -> nn.Module:
    """One of :data:`MODELS`, wrapped in :class:`InstanceNorm`."""
    if name == "tpgn":
        model = TPGN(lookback, horizon, period, n_marks, config.d_model)
    elif name == "dlinear":
        model = DLinear(lookback, horizon)
    elif name == "gru":
        model = GRUForecaster(horizon, n_marks, config.d_model)
    elif name == "attention":
        model = AttentionForecaster(horizon, n_marks, config.d_model, config.attention_layers, config.attention_heads)
    else:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODELS)}")
    return InstanceNorm(model)


# ----------------------------------------------------------------------------------- one dataset

def _dataset(name: str, config: Config, seed: int):
    if name == "synthetic":
        values, marks = synthetic_series(config.synthetic_hours, seed)
        return values, marks, config.synthetic_lookback, config.synthetic_horizon, config.synthetic_period
    if name == "co2":
        values, marks = co2_series()
        return values, marks, config.co2_lookback, config.co2_horizon, config.co2_period
    raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")


def run_dataset(name: str, config: Config, seed: int = 0, progress: bool = True) -> dict:
    """Train and test every model of ``config.models`` on dataset ``name``.

    Returns a dict with the settings, per-model test ``mse``/``mae``/``rmse`` (normalised scale),
    training seconds and history, and one test window's forecasts for the plot."""
    values, marks, L, H, P = _dataset(name, config, seed)
    n = len(values)
    train_end, val_end = split_points(n)
    scaler = Standardizer().fit(values[:train_end])
    z = scaler.transform(values)
    series = np.concatenate([z[:, None], marks], 1).astype(np.float32)   # (N, 1 + m)

    def tensors(starts):
        past, future = make_windows(series, starts, L, H)
        return (torch.from_numpy(past[..., 0].copy()), torch.from_numpy(past[..., 1:].copy()),
                torch.from_numpy(future[..., 0].copy()))

    train = tensors(window_starts(n, L, H, 0, train_end, stride=config.train_stride))
    val = tensors(window_starts(n, L, H, train_end, val_end))
    test = tensors(window_starts(n, L, H, val_end, n))
    if min(len(train[0]), len(val[0]), len(test[0])) == 0:
        raise ValueError(f"{name}: series of {n} steps too short for lookback {L} + horizon {H} windows")
    plot_index = len(test[0]) // 2
    out = {"dataset": name, "n_points": n, "lookback": L, "horizon": H, "period": P,
           "splits": {"train_end": train_end, "val_end": val_end},
           "windows": {"train": len(train[0]), "val": len(val[0]), "test": len(test[0])},
           "models": {}, "plot": {"history": test[0][plot_index].tolist(), "truth": test[2][plot_index].tolist(),
                                  "forecasts": {}}}
    mse = nn.MSELoss()
    for model_name in config.models:
        torch.manual_seed(seed)
        model = build_model(model_name, L, H, P, marks.shape[1], config)
        start = time.perf_counter()
        history = train_model(model, train, val, mse, epochs=config.epochs, batch_size=config.batch_size,
                              lr=config.lr, patience=config.patience, seed=seed, progress=progress,
                              desc=f"{name}/{model_name}")
        seconds = time.perf_counter() - start
        pred = predict(model, test[:2])
        metrics = forecast_metrics(pred.numpy(), test[2].numpy())
        out["models"][model_name] = {**metrics, "params": sum(p.numel() for p in model.parameters()),
                                     "train_seconds": seconds, **history}
        out["plot"]["forecasts"][model_name] = pred[plot_index].tolist()
    # trivial reference: repeat the last period of the lookback (seasonal naive)
    naive = test[0][:, -P:].repeat(1, -(-H // P))[:, :H]
    out["models"]["seasonal_naive"] = forecast_metrics(naive.numpy(), test[2].numpy())
    # and the lookback mean (what every instance-normalised model outputs before it learns)
    flat = test[0].mean(1, keepdim=True).expand(-1, H)
    out["models"]["lookback_mean"] = forecast_metrics(flat.numpy(), test[2].numpy())
    return out


# ----------------------------------------------------------------------------------- the recipe

_SCALE = {
    "synthetic": "paper: ETTh1 (17k hours); ours: synthetic hourly, {weeks} weeks, 168 -> 168, P = 24, "
                 "<= {epochs} epochs, train windows at stride {stride}",
    "co2": "paper: ETTh1, 168 -> 168; ours: statsmodels co2 weekly (2284 pts), 156 -> 156, P = 52, "
           "<= {epochs} epochs, train windows at stride {stride}",
}


def run(quick: bool = False, out_dir=None, seed: int = 0, progress: bool = True, config: Config | None = None
        ) -> RecipeResult:
    """Train TPGN and the three baselines on both series; rows = test MSE / MAE per model and dataset."""
    config = config or (Config.quick() if quick else Config.full())
    result = RecipeResult(recipe="pgn_forecast", quick=quick, seed=seed)
    result.details["config"] = asdict(config)
    for dataset in config.datasets:
        res = run_dataset(dataset, config, seed, progress)
        result.details[dataset] = res
        for model_name in config.models:
            m = res["models"][model_name]
            paper = PAPER_168.get(model_name, {}).get("ETTh1")
            scale = _SCALE[dataset].format(weeks=config.synthetic_hours // 168, epochs=config.epochs,
                                           stride=config.train_stride)
            result.rows.append(ResultRow(metric=f"{dataset} test MSE, {model_name}", ours=m["mse"],
                                         paper=f"{paper[0]} (ETTh1)" if paper else "-", scale=scale))
            result.rows.append(ResultRow(metric=f"{dataset} test MAE, {model_name}", ours=m["mae"],
                                         paper=f"{paper[1]} (ETTh1)" if paper else "-", scale=scale))
        naive = res["models"]["seasonal_naive"]
        result.rows.append(ResultRow(metric=f"{dataset} test MSE, seasonal naive", ours=naive["mse"],
                                     scale="repeat the lookback's last period"))
    if out_dir is not None:
        panels = []
        for dataset in config.datasets:
            res = result.details[dataset]
            panels.append({"history": res["plot"]["history"], "truth": res["plot"]["truth"],
                           "forecasts": res["plot"]["forecasts"],
                           "title": f"{dataset}: one test window (normalised), {res['lookback']} -> {res['horizon']}"})
        path = plot_forecasts(f"{out_dir}/forecasts.png", panels, title="TPGN vs baselines")
        result.files.append(str(path))
    return result
