"""Probabilistic forecasting from incomplete multi-sensor data with stacked Channel Gated Learning
Units (after "CGLU-BNF", 2025: channel gated learning units with Fourier time features and a
probabilistic head, for forecasting with incomplete data).

No code and no formula of the CGLU were published. recurlab's registered ``cglu`` channel mixer
(recurlab/layers/cglu.py) is our reading of the abstract, **unverified**:

    x_1 = W_1 x + b_1,   h = W_2 (x_1 ⊙ σ(β ⊙ x_1)) + b_2      learnable-slope Swish MLP
    g   = σ(W_g x + b_g),   CGLU(x) = g ⊙ h + (1 - g) ⊙ x       per-channel gated residual

The forecaster built here (all of it our choice where the paper gives no detail):

    inputs   v ∈ R^{L×S}  observed values, z-scored on train, missing entries set to 0
             m ∈ {0,1}^{L×S}  the observation mask (1 = observed)
             φ(t_0) = [sin, cos](2π k hour/24) k = 1, 2; [sin, cos](2π day/7)   Fourier time features
                      of the first forecast step
    u_0      = W_in [vec v ; vec m ; φ(t_0)] + b_in                    (d)
    u_{l+1}  = CGLU_l(LayerNorm(u_l)),  l = 0..N-1                      stacked units
    [μ, s]   = W_out LayerNorm(u_N) + b_out,  μ, s ∈ R^{H×S}            Gaussian head
    σ² = exp(clamp(s, -10, 10)),  loss = mean ½ (s + (y - μ)² / σ²)     Gaussian NLL
    90% interval: μ ± z_{0.95} σ,  z_{0.95} = 1.6449

Baselines: a GRU over the lookback steps ([v_t; m_t; φ(t)] per step) whose last hidden state
feeds the same Gaussian head, and the naive forecast (each sensor's last observed value, the
train mean if none) with an interval from the 5% / 95% quantiles of its training residuals per
horizon step.

Data: a seeded synthetic multi-sensor series (:func:`sensor_series`) and two missingness
patterns applied to the model *inputs* only (:func:`mcar_mask`, :func:`block_mask`); forecast
targets are always the complete ground truth, and every test target point is scored.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from .. import layers
from .common import RecipeResult, ResultRow
from .forecasting import (Standardizer, forecast_metrics, interval_metrics, make_windows, plot_forecasts, predict,
                          split_points, train_model, window_starts)

PAPER = ("CGLU-BNF (2025), channel gated learning units with Fourier features and a probabilistic head "
         "for forecasting with incomplete data (no code or formula published)")

PATTERNS = ("none", "mcar", "block")
MODELS = ("cglu", "gru")
Z90 = 1.6448536269514722  # standard normal 95% quantile: the 90% central interval


@dataclass
class Config:
    """One run's settings. ``quick()`` fits < 3 min and ``full()`` < 12 min on one CPU core."""

    n_sensors: int = 6
    hours: int = 24 * 7 * 52          # one year of hourly readings
    lookback: int = 96                # 4 days
    horizon: int = 24                 # 1 day ahead
    mcar_rate: float = 0.2            # share of readings missing at random
    block_rate: float = 0.2           # target share missing in contiguous gaps
    block_min: int = 6                # gap lengths, hours, uniform in [block_min, block_max]
    block_max: int = 48
    d_model: int = 64
    n_layers: int = 3
    hidden: int = 128                 # CGLU inner width
    gru_hidden: int = 64
    level: float = 0.9                # prediction interval
    train_stride: int = 2
    epochs: int = 40
    patience: int = 6
    batch_size: int = 64
    lr: float = 1e-3
    patterns: tuple[str, ...] = PATTERNS
    models: tuple[str, ...] = MODELS

    @classmethod
    def quick(cls) -> "Config":
        return cls(hours=24 * 7 * 16, train_stride=4, epochs=15, patience=4)

    @classmethod
    def full(cls) -> "Config":
        return cls()


# ----------------------------------------------------------------------------------- data

def sensor_series(n_hours: int, n_sensors: int, seed: int = 0) -> np.ndarray:
    """A seeded hourly series of ``n_sensors`` correlated sensors, (n_hours, n_sensors).

    Sensor i (parameters drawn once from the seed):

        x_i(t) = m_i + a_i c(t - τ_i) + 0.3 sin(2π t/168) + λ_i f(t) + d_i(t) + 0.2 ε_i(t)
        c(t)   = sin(2π t/24) + 0.3 sin(4π t/24)                   shared daily cycle
        f(t)   = 0.95 f(t-1) + 0.2 η(t)                            shared AR(1) factor (weather)
        d_i(t) = d_i(t-1) + 0.01 ζ_i(t)                            slow random-walk drift
        m_i ~ N(0, 1),  a_i ~ U(0.6, 1.4),  τ_i ~ U(-3, 3) hours,  λ_i ~ U(0.5, 1.5)
        ε, η, ζ ~ N(0, 1) i.i.d.
    """
    if n_hours < 2 or n_sensors < 1:
        raise ValueError(f"need n_hours >= 2 and n_sensors >= 1, got {n_hours}, {n_sensors}")
    rng = np.random.default_rng(seed)
    offset = rng.normal(0, 1, n_sensors)
    amplitude = rng.uniform(0.6, 1.4, n_sensors)
    lag = rng.uniform(-3, 3, n_sensors)
    loading = rng.uniform(0.5, 1.5, n_sensors)
    t = np.arange(n_hours, dtype=np.float64)[:, None]
    shifted = t - lag[None, :]
    daily = np.sin(2 * np.pi * shifted / 24) + 0.3 * np.sin(4 * np.pi * shifted / 24)
    eta = rng.standard_normal(n_hours)
    factor = np.empty(n_hours)
    factor[0] = 0.2 * eta[0] / math.sqrt(1 - 0.95 ** 2)
    for i in range(1, n_hours):
        factor[i] = 0.95 * factor[i - 1] + 0.2 * eta[i]
    drift = np.cumsum(0.01 * rng.standard_normal((n_hours, n_sensors)), axis=0)
    noise = 0.2 * rng.standard_normal((n_hours, n_sensors))
    return (offset + amplitude * daily + 0.3 * np.sin(2 * np.pi * t / 168) + loading * factor[:, None]
            + drift + noise)


def mcar_mask(shape: tuple[int, int], rate: float, rng: np.random.Generator) -> np.ndarray:
    """Missing completely at random: each reading is missing independently with probability
    ``rate``. Returns the observation mask, bool ``shape`` (True = observed)."""
    if not 0 <= rate < 1:
        raise ValueError(f"rate must be in [0, 1), got {rate}")
    return rng.random(shape) >= rate


def block_mask(shape: tuple[int, int], rate: float, min_len: int, max_len: int,
               rng: np.random.Generator) -> np.ndarray:
    """Contiguous gaps, drawn independently per sensor (column) as an alternating renewal process:
    an observed run of geometric length (mean ``mean_gap (1 - rate) / rate``, at least 1), then a
    gap of length uniform in ``[min_len, max_len]``, and so on, starting with an observed run.

    Every maximal gap therefore has a length in ``[min_len, max_len]`` (only a gap cut by the end
    of the series can be shorter), and the expected missing share is ``rate``.
    Returns the observation mask, bool ``shape`` (True = observed).
    """
    if not 0 < rate < 1:
        raise ValueError(f"rate must be in (0, 1), got {rate}")
    if not 1 <= min_len <= max_len:
        raise ValueError(f"need 1 <= min_len <= max_len, got {min_len}, {max_len}")
    n, channels = shape
    observed = np.ones(shape, dtype=bool)
    mean_gap = (min_len + max_len) / 2
    mean_run = max(mean_gap * (1 - rate) / rate, 1.0)
    for c in range(channels):
        t = int(rng.geometric(1 / mean_run))
        while t < n:
            gap = int(rng.integers(min_len, max_len + 1))
            observed[t:t + gap, c] = False
            t += gap + int(rng.geometric(1 / mean_run))
    return observed


def missing_mask(pattern: str, shape: tuple[int, int], config: Config, seed: int) -> np.ndarray:
    """The observation mask of ``pattern`` in :data:`PATTERNS` (``none``: all observed)."""
    if pattern not in PATTERNS:
        raise ValueError(f"unknown missingness pattern {pattern!r}; valid: {', '.join(PATTERNS)}")
    rng = np.random.default_rng([seed, PATTERNS.index(pattern)])
    if pattern == "none":
        return np.ones(shape, dtype=bool)
    if pattern == "mcar":
        return mcar_mask(shape, config.mcar_rate, rng)
    return block_mask(shape, config.block_rate, config.block_min, config.block_max, rng)


def fourier_time_features(hours: np.ndarray) -> np.ndarray:
    """[sin, cos](2π k h/24) for k = 1, 2 and [sin, cos](2π d/7), h = hour of day, d = day
    (t = 0 is a Monday 00:00). hours (...,) -> (..., 6)."""
    hours = np.asarray(hours, dtype=np.float64)
    angles = [2 * np.pi * hours / 24, 4 * np.pi * hours / 24, 2 * np.pi * hours / 168]
    return np.stack([f(a) for a in angles for f in (np.sin, np.cos)], -1)


# ----------------------------------------------------------------------------------- models

class GaussianHead(nn.Module):
    """features (B, d_in) -> mean (B, H, S) and log-variance (B, H, S), clamped to [-10, 10]."""

    def __init__(self, d_in: int, horizon: int, n_sensors: int):
        super().__init__()
        self.horizon, self.n_sensors = horizon, n_sensors
        self.norm = nn.LayerNorm(d_in)
        self.proj = nn.Linear(d_in, 2 * horizon * n_sensors)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.proj(self.norm(features)).view(-1, 2, self.horizon, self.n_sensors)
        return out[:, 0], out[:, 1].clamp(-10.0, 10.0)


def gaussian_nll(output: tuple[torch.Tensor, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """Mean Gaussian negative log-likelihood, constant dropped: ½ (log σ² + (y - μ)² / σ²).
    output = (mean, log_var), each shaped like target."""
    mean, log_var = output
    if mean.shape != target.shape or log_var.shape != target.shape:
        raise ValueError(f"mean {tuple(mean.shape)} and log_var {tuple(log_var.shape)} must match target "
                         f"{tuple(target.shape)}")
    return 0.5 * (log_var + (target - mean) ** 2 * torch.exp(-log_var)).mean()


class CGLUForecaster(nn.Module):
    """Stacked CGLU units over the flattened window (see the module docstring).

    Forward: values (B, L, S) zero-filled, mask (B, L, S) in {0, 1}, time features of the first
    forecast step (B, F), steps' time features (B, L, F) (unused here; the GRU reads them)
    -> (mean, log_var), each (B, H, S).
    """

    def __init__(self, lookback: int, horizon: int, n_sensors: int, n_time: int, d_model: int = 64,
                 n_layers: int = 3, hidden: int = 128):
        super().__init__()
        self.lookback, self.n_sensors = lookback, n_sensors
        self.embed = nn.Linear(2 * lookback * n_sensors + n_time, d_model)
        self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(n_layers))
        self.units = nn.ModuleList(layers.build("cglu", d_model, kind="channel", hidden_size=hidden)
                                   for _ in range(n_layers))
        self.head = GaussianHead(d_model, horizon, n_sensors)

    def forward(self, values, mask, origin_time, step_time):
        B = values.shape[0]
        if values.shape[1:] != (self.lookback, self.n_sensors) or mask.shape != values.shape:
            raise ValueError(f"values and mask must be (B, {self.lookback}, {self.n_sensors}), "
                             f"got {tuple(values.shape)} and {tuple(mask.shape)}")
        u = self.embed(torch.cat([values.reshape(B, -1), mask.reshape(B, -1), origin_time], -1))
        for norm, unit in zip(self.norms, self.units):
            u = unit(norm(u))
        return self.head(u)


class GRUForecaster(nn.Module):
    """``nn.GRU`` over the lookback steps [values_t; mask_t; φ(t)]; last hidden state -> the same
    Gaussian head. Same call signature as :class:`CGLUForecaster`."""

    def __init__(self, horizon: int, n_sensors: int, n_time: int, hidden: int = 64):
        super().__init__()
        self.gru = nn.GRU(2 * n_sensors + n_time, hidden, batch_first=True)
        self.head = GaussianHead(hidden, horizon, n_sensors)

    def forward(self, values, mask, origin_time, step_time):
        _, h = self.gru(torch.cat([values, mask, step_time], -1))
        return self.head(h[-1])


def last_observed(values: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Each sensor's last observed value in the window (0, the train mean, if none).
    values, observed (n, L, S) -> (n, S)."""
    if values.shape != observed.shape or values.ndim != 3:
        raise ValueError(f"values and observed must both be (n, L, S), got {values.shape}, {observed.shape}")
    L = values.shape[1]
    steps = np.where(observed, np.arange(L)[None, :, None], -1)
    last = steps.max(1)                                       # (n, S), -1 when never observed
    picked = np.take_along_axis(values, np.maximum(last, 0)[:, None, :], 1)[:, 0]
    return np.where(last >= 0, picked, 0.0)


# ----------------------------------------------------------------------------------- one pattern

def _windows(z, observed, t_hours, starts, config):
    """Model inputs and targets for the windows starting at ``starts``."""
    L, H = config.lookback, config.horizon
    values, target = make_windows(z, starts, L, H)
    seen, _ = make_windows(observed, starts, L, H)
    times = fourier_time_features(t_hours)
    step_time, _ = make_windows(times, starts, L, H)
    origin_time = times[starts + L]
    filled = np.where(seen, values, 0.0)
    as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    return {"inputs": (as_t(filled), as_t(seen), as_t(origin_time), as_t(step_time)), "target": as_t(target),
            "values": filled, "seen": seen, "true_history": values}


def run_pattern(pattern: str, config: Config, seed: int = 0, progress: bool = True) -> dict:
    """Train the models of ``config.models`` with inputs masked by ``pattern``; test metrics
    (normalised scale) of each model and of the naive forecast, plus one window for the plot."""
    clean = sensor_series(config.hours, config.n_sensors, seed)
    n = len(clean)
    observed = missing_mask(pattern, clean.shape, config, seed)
    train_end, val_end = split_points(n)
    scaler = Standardizer().fit(np.where(observed[:train_end], clean[:train_end], np.nan))
    z = scaler.transform(clean)
    t_hours = np.arange(n, dtype=np.float64)
    L, H = config.lookback, config.horizon
    train = _windows(z, observed, t_hours, window_starts(n, L, H, 0, train_end, config.train_stride), config)
    val = _windows(z, observed, t_hours, window_starts(n, L, H, train_end, val_end), config)
    test = _windows(z, observed, t_hours, window_starts(n, L, H, val_end, n), config)
    if min(len(d["target"]) for d in (train, val, test)) == 0:
        raise ValueError(f"series of {n} hours too short for lookback {L} + horizon {H} windows")
    y_test = test["target"].numpy()
    z_level = float(torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(0.5 + config.level / 2)))
    out = {"pattern": pattern, "missing_share": float(1 - observed.mean()),
           "windows": {k: len(d["target"]) for k, d in (("train", train), ("val", val), ("test", test))},
           "models": {}}
    plot_index, plot_sensor = len(y_test) // 2, 0
    out["plot"] = {"history": test["true_history"][plot_index, :, plot_sensor].tolist(),
                   "observed": test["seen"][plot_index, :, plot_sensor].tolist(),
                   "truth": y_test[plot_index, :, plot_sensor].tolist(), "forecasts": {}, "bands": {}}
    n_time = train["inputs"][2].shape[-1]
    for name in config.models:
        torch.manual_seed(seed)
        if name == "cglu":
            model = CGLUForecaster(L, H, config.n_sensors, n_time, config.d_model, config.n_layers, config.hidden)
        elif name == "gru":
            model = GRUForecaster(H, config.n_sensors, n_time, config.gru_hidden)
        else:
            raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODELS)}")
        start = time.perf_counter()
        history = train_model(model, (*train["inputs"], train["target"]), (*val["inputs"], val["target"]),
                              gaussian_nll, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                              patience=config.patience, seed=seed, progress=progress, desc=f"{pattern}/{name}")
        seconds = time.perf_counter() - start
        mean, log_var = (t.numpy().astype(np.float64) for t in predict(model, test["inputs"]))
        half = z_level * np.exp(0.5 * log_var)
        out["models"][name] = {**forecast_metrics(mean, y_test), **interval_metrics(y_test, mean - half, mean + half),
                               "nll": float(gaussian_nll((torch.from_numpy(mean), torch.from_numpy(log_var)),
                                                         torch.from_numpy(y_test))),
                               "params": sum(p.numel() for p in model.parameters()), "train_seconds": seconds,
                               **history}
        out["plot"]["forecasts"][name] = mean[plot_index, :, plot_sensor].tolist()
        out["plot"]["bands"][name] = ((mean - half)[plot_index, :, plot_sensor].tolist(),
                                      (mean + half)[plot_index, :, plot_sensor].tolist())
    # naive: last observed value; interval from its training residual quantiles per (step, sensor)
    tail = (1 - config.level) / 2
    naive_train = last_observed(train["values"], train["seen"])[:, None, :]
    resid = train["target"].numpy() - naive_train
    lo_q, hi_q = np.quantile(resid, tail, axis=0), np.quantile(resid, 1 - tail, axis=0)
    naive = np.repeat(last_observed(test["values"], test["seen"])[:, None, :], H, 1)
    out["models"]["naive"] = {**forecast_metrics(naive, y_test), **interval_metrics(y_test, naive + lo_q, naive + hi_q)}
    out["plot"]["forecasts"]["naive"] = naive[plot_index, :, plot_sensor].tolist()
    return out


# ----------------------------------------------------------------------------------- the recipe

def run(quick: bool = False, out_dir=None, seed: int = 0, progress: bool = True, config: Config | None = None
        ) -> RecipeResult:
    """Train the CGLU forecaster and the GRU under each missingness pattern; rows = test RMSE,
    90%-interval coverage and width per model and pattern."""
    config = config or (Config.quick() if quick else Config.full())
    result = RecipeResult(recipe="cglu_impute", quick=quick, seed=seed)
    result.details["config"] = asdict(config)
    scale = (f"paper: real sensor data (not published); ours: synthetic {config.n_sensors} sensors, "
             f"{config.hours // 168} weeks hourly, {config.lookback} -> {config.horizon}")
    pct = f"{round(100 * config.level)}%"
    for pattern in config.patterns:
        res = run_pattern(pattern, config, seed, progress)
        result.details[pattern] = res
        what = {"none": "no missing", "mcar": f"MCAR {config.mcar_rate:.0%}",
                "block": f"block gaps {config.block_min}-{config.block_max} h, {config.block_rate:.0%}"}[pattern]
        for name in (*config.models, "naive"):
            m = res["models"][name]
            result.rows.append(ResultRow(metric=f"{what}: test RMSE, {name}", ours=m["rmse"], scale=scale))
            result.rows.append(ResultRow(metric=f"{what}: {pct} interval coverage, {name}", ours=m["coverage"],
                                         scale=scale, fmt=".3f"))
            result.rows.append(ResultRow(metric=f"{what}: {pct} interval mean width, {name}", ours=m["width"],
                                         scale=scale, fmt=".3f"))
    if out_dir is not None:
        panels = []
        for pattern in config.patterns:
            p = result.details[pattern]["plot"]
            first = config.models[0] if config.models else None
            bands = {first: p["bands"][first]} if first else {}
            title = f"missingness: {pattern} (sensor 0, one test window, normalised; band = {first} {pct} interval)"
            panels.append({**p, "bands": bands, "title": title})
        path = plot_forecasts(f"{out_dir}/forecast_intervals.png", panels, title="CGLU forecaster vs GRU vs naive")
        result.files.append(str(path))
    return result
