"""Differentially private forecasting of aggregated mobility (Arcolezi, Couchot, Renaud, Al Bouna, Xiao,
"Differentially private multivariate time series forecasting of aggregated human mobility with deep
learning: input or gradient perturbation?", 2022; official code hharcolezi/ldp-protocols-mobility-cdrs,
papers/[3]), rebuilt on a synthetic mobility series.

Task (paper sec. 3-4): the number of people in R = 6 regions per time step; with lag L = 6, the six
past steps of all regions (plus calendar features) predict the next step of every region:

    x_t = [c_{t-6}, ..., c_{t-1}]  (6 x F: R counts + sin/cos of time of day and of week),   y_t = c_t  (R)

Model (official ``DL_1``): a bidirectional GRU with ReLU candidate activation (Keras
``Bidirectional(GRU(h, activation="relu"))``, reset-after form, sigmoid gates), the two final states
concatenated, then Dense(R):

    r = σ(W_r x + b_r + U_r h + c_r),   z = σ(W_z x + b_z + U_z h + c_z)
    n = relu(W_n x + b_n + r ⊙ (U_n h + c_n)),   h' = z ⊙ h + (1 - z) ⊙ n
    ŷ = Dense([h_T^→ ; h_1^←]),   trained with the mean absolute error; predictions clipped at 0.

Privacy (paper sec. 3.3), three settings with the same model, optimiser and epochs:

(a) none;
(b) gradient perturbation: DP-SGD (Abadi et al. 2016) through Opacus: Poisson-sampled batches,
    per-example gradients clipped to ``max_grad_norm``, Gaussian noise N(0, σ² C²) added to the sum;
    σ is found by ``make_private_with_epsilon`` for the target (ε, δ) over the planned epochs, and the
    RDP accountant's ε after training is reported. The privacy unit is one training *window*.
(c) input perturbation: the Gaussian mechanism applied once to every count of the training series
    before anything else, ĉ = round(c + N(0, σ²)) (official code: diffprivlib ``Gaussian(ε, δ,
    sensitivity=1)`` on every count, then ``np.rint``). One person changes one count by at most
    Δ = 1 (event-level privacy), equivalently Δ/(max - min) on the min-max normalised series. We set σ
    by the *analytic* Gaussian mechanism (Balle & Wang, "Improving the Gaussian Mechanism for
    Differential Privacy", 2018, Thm. 8): the smallest σ with

        Φ(Δ/(2σ) - εσ/Δ) - e^ε Φ(-Δ/(2σ) - εσ/Δ) <= δ,

    which is valid for every ε > 0, unlike the classical σ = Δ √(2 ln(1.25/δ)) / ε (Dwork & Roth 2014,
    Thm. A.1, only for ε < 1; diffprivlib's ``Gaussian`` uses it and refuses ε > 1).

The model is built from ``nn.Linear`` layers so that Opacus' per-sample-gradient hooks apply directly
(Opacus cannot hook ``nn.GRU``, and its ``DPGRU`` has no ReLU candidate); the hooks accumulate over
the L = 6 reuses of the recurrent weights, which tests/recipes/test_dp_forecast.py checks against
gradients computed one example at a time. (recurlab's ``gru`` mixer wraps ``nn.GRU``, so it cannot be
used under Opacus; this is why the recipe defines its own cell.)

Choices where the paper is open or we deviate (also docs/recipes/dp_forecast.md):
- synthetic data (:func:`mobility_series`) instead of the Orange CDR counts of Paris' suburbs; hourly
  steps; the test set is the last ``test_days`` days (paper: the last week of half-hourly data).
- the counts are min-max scaled with the training split's bounds; for DP-SGD these bounds are taken
  from the data without privacy cost (the paper does the same implicitly), for input perturbation from
  the perturbed training series.
- the weekly calendar feature uses a 7-day period (the official notebook's "Week" features use a
  30-day period).
- Adam for all three settings (DP-Adam under Opacus); the paper's DP optimiser and its tuned
  hyper-parameters (Bayesian search over batch size, width, learning rate, clipping) are not
  reproduced: we use one fixed setting for all.
- all settings are evaluated on the clean test series (inputs and targets).
- the ε of (b) (per window, which overlaps L + 1 time steps) and of (c) (per count) protect different
  units; like the paper we compare them at equal numbers.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..train.loop import train_epochs
from .common import RecipeResult, ResultRow

PAPER = ("Arcolezi, Couchot, Renaud, Al Bouna, Xiao, Differentially private multivariate time series forecasting "
         "of aggregated human mobility with deep learning: input or gradient perturbation?, 2022")

# mean level of each region (people present), like the official data's commune + five IRIS areas
REGION_LEVELS = (100_000.0, 10_000.0, 12_000.0, 9_000.0, 3_000.0, 9_000.0)
# share of each region's population that follows the office-hours (daytime, weekday) profile
REGION_BUSINESS = (0.4, 0.8, 0.2, 0.5, 0.9, 0.1)


# ----------------------------------------------------------------------------- the synthetic series

def mobility_series(n_days: int, *, seed: int, steps_per_day: int = 24, noise: float = 0.02,
                    shared_noise: float = 0.02) -> np.ndarray:
    """Seeded synthetic people counts of 6 regions: (n_days * steps_per_day, 6) float64, >= 0.

    Each region r mixes a residential and a business daily profile with weight REGION_BUSINESS[r]:

        residential(h) = 1 + 0.25 cos(2π (h - 2) / 24)           (present at night)
        business(h)    = 0.35 + 1.3 exp(-(h - 13.5)² / (2 · 3²))  (office hours; 0.35 on weekends)
        level_r(t) = REGION_LEVELS[r] · [b_r business + (1 - b_r) residential] · weekend_r · exp(e_r(t))

    where weekends add 10% to the residential part and the noise e_r(t) = s(t) + u_r(t) is an AR(1)
    factor s shared by all regions (coefficient 0.9, stationary sd ``shared_noise``: city-wide events and
    weather, the source of the regions' correlation) plus independent AR(1) terms u_r (coefficient 0.7,
    sd ``noise``); a slow trend of ±5% over the whole span and Poisson counting noise complete it.
    One event day in every 10 adds 15% to one random region between 18:00 and 23:00.
    """
    if not isinstance(n_days, int) or n_days < 2:
        raise ValueError(f"n_days must be an int >= 2, got {n_days!r}")
    if not isinstance(steps_per_day, int) or steps_per_day < 4:
        raise ValueError(f"steps_per_day must be an int >= 4, got {steps_per_day!r}")
    rng = np.random.default_rng(seed)
    n = n_days * steps_per_day
    t = np.arange(n)
    hour = (t % steps_per_day) * 24.0 / steps_per_day
    day = t // steps_per_day
    weekend = (day % 7) >= 5
    residential = 1 + 0.25 * np.cos(2 * np.pi * (hour - 2) / 24)
    business = np.where(weekend, 0.35, 0.35 + 1.3 * np.exp(-((hour - 13.5) ** 2) / (2 * 3.0 ** 2)))
    b = np.asarray(REGION_BUSINESS)
    profile = b * business[:, None] + (1 - b) * (residential * np.where(weekend, 1.1, 1.0))[:, None]

    def ar1(phi: float, sd: float, size: tuple[int, ...]) -> np.ndarray:
        eps = rng.normal(0, sd * math.sqrt(1 - phi ** 2), size=size)
        out = np.empty(size)
        out[0] = rng.normal(0, sd, size=size[1:])
        for i in range(1, size[0]):
            out[i] = phi * out[i - 1] + eps[i]
        return out

    shared = ar1(0.9, shared_noise, (n, 1))
    own = ar1(0.7, noise, (n, len(REGION_LEVELS)))
    trend = 1 + 0.05 * np.sin(2 * np.pi * t / n + rng.uniform(0, 2 * np.pi, size=(len(REGION_LEVELS), 1))).T
    event = np.zeros((n, len(REGION_LEVELS)))
    for d in np.flatnonzero(rng.random(n_days) < 0.1):
        r = rng.integers(len(REGION_LEVELS))
        evening = (day == d) & (hour >= 18) & (hour <= 23)
        event[evening, r] = 0.15
    mean = np.asarray(REGION_LEVELS) * profile * trend * np.exp(shared + own) * (1 + event)
    return rng.poisson(mean).astype(np.float64)


def calendar_features(n_steps: int, steps_per_day: int) -> np.ndarray:
    """(n_steps, 4): sin/cos of the time of day and of the time of week."""
    t = np.arange(n_steps)
    day, week = 2 * np.pi * t / steps_per_day, 2 * np.pi * t / (7 * steps_per_day)
    return np.stack([np.sin(day), np.cos(day), np.sin(week), np.cos(week)], 1)


def make_windows(features: np.ndarray, targets: np.ndarray, lag: int) -> tuple[np.ndarray, np.ndarray]:
    """features (T, F), targets (T, R) -> x (T - lag, lag, F) of steps t-lag..t-1 and y (T - lag, R) at t."""
    if features.ndim != 2 or targets.ndim != 2 or len(features) != len(targets):
        raise ValueError(f"features must be (T, F) and targets (T, R), got {features.shape} and {targets.shape}")
    if not 1 <= lag < len(features):
        raise ValueError(f"lag must be in [1, T), got {lag} with T = {len(features)}")
    idx = np.arange(lag, len(features))[:, None] + np.arange(-lag, 0)[None, :]
    return features[idx], targets[lag:]


# ----------------------------------------------------------------------------- privacy mechanisms

def _phi(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2))


def gaussian_sigma(epsilon: float, delta: float, sensitivity: float = 1.0, method: str = "analytic") -> float:
    """Noise sd of the Gaussian mechanism for (ε, δ)-DP of a query with L2 sensitivity Δ.

    method="analytic": Balle & Wang (2018, Thm. 8), the smallest σ with
        Φ(Δ/(2σ) - εσ/Δ) - e^ε Φ(-Δ/(2σ) - εσ/Δ) <= δ   (bisection to 1e-12 relative; any ε > 0).
    method="classic": σ = Δ √(2 ln(1.25/δ)) / ε (Dwork & Roth 2014, Thm. A.1; requires ε < 1).
    """
    if not epsilon > 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if not sensitivity > 0:
        raise ValueError(f"sensitivity must be > 0, got {sensitivity}")
    if method == "classic":
        if epsilon >= 1:
            raise ValueError(f"the classic Gaussian mechanism needs epsilon < 1, got {epsilon}")
        return sensitivity * math.sqrt(2 * math.log(1.25 / delta)) / epsilon
    if method != "analytic":
        raise ValueError(f"method must be 'analytic' or 'classic', got {method!r}")
    return sensitivity * _unit_analytic_sigma(epsilon, delta)


def analytic_delta(sigma: float, epsilon: float, sensitivity: float = 1.0) -> float:
    """The δ(ε) of the Gaussian mechanism with noise sd σ (Balle & Wang 2018, Thm. 8)."""
    a, b = sensitivity / (2 * sigma), epsilon * sigma / sensitivity
    return _phi(a - b) - math.exp(epsilon) * _phi(-a - b)


def _unit_analytic_sigma(epsilon: float, delta: float) -> float:
    lo, hi = 1e-6, 1.0
    while analytic_delta(hi, epsilon) > delta:  # δ(σ) decreases in σ
        hi *= 2
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if analytic_delta(mid, epsilon) > delta:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * hi:
            break
    return hi


def perturb_counts(counts: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Input perturbation: round(c + N(0, σ²)) for every count (the paper's ``np.rint(dp.randomise(c))``)."""
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    return np.rint(counts + rng.normal(0.0, sigma, size=counts.shape))


# ----------------------------------------------------------------------------- the model

class ReLUGRU(nn.Module):
    """One direction of Keras' ``GRU(h, activation="relu")`` (reset-after form), built from nn.Linear.

    x: (B, T, d) -> final hidden state (B, h). ``reverse=True`` reads the sequence from t = T to 1.
    """

    def __init__(self, input_size: int, hidden_size: int, reverse: bool = False):
        super().__init__()
        self.hidden_size = hidden_size
        self.reverse = reverse
        self.input_gates = nn.Linear(input_size, 3 * hidden_size)  # W_{r,z,n} x + b
        self.hidden_gates = nn.Linear(hidden_size, 3 * hidden_size)  # U_{r,z,n} h + c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3:
            raise ValueError(f"x must be (B, T, d), got shape {tuple(x.shape)}")
        gx = self.input_gates(x)
        h = x.new_zeros(x.shape[0], self.hidden_size)
        steps = range(x.shape[1] - 1, -1, -1) if self.reverse else range(x.shape[1])
        for t in steps:
            xr, xz, xn = gx[:, t].chunk(3, dim=-1)
            hr, hz, hn = self.hidden_gates(h).chunk(3, dim=-1)
            r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
            n = torch.relu(xn + r * hn)
            h = z * h + (1 - z) * n
        return h


class BiGRUForecaster(nn.Module):
    """Bidirectional ReLU-GRU -> Dense(n_outputs): x (B, lag, n_features) -> ŷ (B, n_outputs)."""

    def __init__(self, n_features: int, hidden_size: int, n_outputs: int):
        super().__init__()
        self.forward_gru = ReLUGRU(n_features, hidden_size)
        self.backward_gru = ReLUGRU(n_features, hidden_size, reverse=True)
        self.out = nn.Linear(2 * hidden_size, n_outputs)
        self.n_features = n_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[-1] != self.n_features:
            raise ValueError(f"x must be (B, lag, {self.n_features}), got shape {tuple(x.shape)}")
        return self.out(torch.cat([self.forward_gru(x), self.backward_gru(x)], dim=-1))


# ----------------------------------------------------------------------------- metrics

def forecast_errors(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """RMSE, MAE (counts) and sMAPE (%) per region, averaged over regions. y_*: (N, R).

    sMAPE = 100/N Σ 2|ŷ - y| / (|y| + |ŷ|) (terms with y = ŷ = 0 count as 0).
    """
    if y_true.shape != y_pred.shape or y_true.ndim != 2:
        raise ValueError(f"y_true and y_pred must both be (N, R), got {y_true.shape} and {y_pred.shape}")
    err = y_pred - y_true
    denom = np.abs(y_true) + np.abs(y_pred)
    ratio = np.divide(2 * np.abs(err), denom, out=np.zeros_like(denom, dtype=float), where=denom > 0)
    return {"rmse": float(np.sqrt((err ** 2).mean(0)).mean()), "mae": float(np.abs(err).mean(0).mean()),
            "smape": float(100 * ratio.mean(0).mean())}


# ----------------------------------------------------------------------------- the recipe

@dataclass
class Config:
    n_days: int = 98
    steps_per_day: int = 24
    test_days: int = 14
    lag: int = 6
    hidden_size: int = 32
    epochs: int = 30
    batch_size: int = 128
    lr: float = 3e-3
    epsilons: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)
    delta: float = 1e-5
    max_grad_norm: float = 1.0
    sensitivity: float = 1.0
    accountant: str = "rdp"

    @classmethod
    def quick(cls) -> "Config":
        return cls(n_days=49, test_days=7, epochs=15, epsilons=(1.0, 8.0))

    @classmethod
    def full(cls) -> "Config":
        return cls()


@dataclass
class _Split:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test_counts: np.ndarray
    lo: np.ndarray = field(repr=False)
    span: np.ndarray = field(repr=False)

    def to_counts(self, y_scaled: np.ndarray) -> np.ndarray:
        return np.clip(y_scaled * self.span + self.lo, 0, None)


def _split(train_counts: np.ndarray, clean_counts: np.ndarray, cfg: Config) -> _Split:
    """Windows of the (possibly perturbed) training part and of the clean test part, min-max scaled with
    the training part's bounds. The test targets are the last test_days * steps_per_day steps."""
    n_test = cfg.test_days * cfg.steps_per_day
    n_train_steps = len(clean_counts) - n_test
    lo = train_counts[:n_train_steps].min(0)
    span = np.maximum(train_counts[:n_train_steps].max(0) - lo, 1.0)
    cal = calendar_features(len(clean_counts), cfg.steps_per_day)
    feats_train = np.concatenate([(train_counts - lo) / span, cal], 1)
    feats_clean = np.concatenate([(clean_counts - lo) / span, cal], 1)
    x_tr, y_tr = make_windows(feats_train[:n_train_steps], feats_train[:n_train_steps, :len(REGION_LEVELS)], cfg.lag)
    x_all, _ = make_windows(feats_clean, feats_clean[:, :len(REGION_LEVELS)], cfg.lag)
    return _Split(torch.tensor(x_tr, dtype=torch.float32), torch.tensor(y_tr, dtype=torch.float32),
                  torch.tensor(x_all[-n_test:], dtype=torch.float32), clean_counts[-n_test:], lo, span)


def train_forecaster(split: _Split, cfg: Config, seed: int, *, target_epsilon: float | None = None,
                     progress: bool = False, desc: str = "") -> tuple[BiGRUForecaster, dict]:
    """Train the BiGRU on split's training windows with MAE; DP-SGD via Opacus when target_epsilon is set.

    Trains through the shared loop (:func:`recurlab.train.loop.train_epochs`; Poisson batches that come out empty
    take no step). Returns the trained model and {"epsilon_spent", "noise_multiplier", "loss"} (loss: the mean
    training MAE of every epoch; epsilon_spent from the accountant after training; None without DP).
    """
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(seed)
    model = BiGRUForecaster(split.x_train.shape[-1], cfg.hidden_size, split.y_train.shape[-1])
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(TensorDataset(split.x_train, split.y_train), batch_size=cfg.batch_size, shuffle=True,
                        generator=gen)
    info: dict = {"epsilon_spent": None, "noise_multiplier": None, "loss": []}
    engine = None
    with warnings.catch_warnings():
        # Opacus warns that secure_mode is off (fine for an experiment) and torch that its backward hooks
        # fire on module outputs because the inputs need no gradient (expected: they are data)
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        if target_epsilon is not None:
            from opacus import PrivacyEngine

            engine = PrivacyEngine(accountant=cfg.accountant)
            model, opt, loader = engine.make_private_with_epsilon(
                module=model, optimizer=opt, data_loader=loader, target_epsilon=target_epsilon,
                target_delta=cfg.delta, epochs=cfg.epochs, max_grad_norm=cfg.max_grad_norm)
            info["noise_multiplier"] = float(opt.noise_multiplier)
        history = train_epochs(model, opt, F.l1_loss, loader, cfg.epochs, progress=progress, desc=desc or "train")
    info["loss"] = history.window_loss
    if engine is not None:
        info["epsilon_spent"] = float(engine.get_epsilon(cfg.delta))
        model = model._module
    return model, info


def _evaluate(model: nn.Module, split: _Split) -> dict[str, float]:
    model.eval()
    with torch.no_grad():
        pred = split.to_counts(model(split.x_test).numpy().astype(np.float64))
    return forecast_errors(split.y_test_counts, pred)


def _plot(results: dict, cfg: Config, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    eps = list(cfg.epsilons)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, metric, label in zip(axes, ("rmse", "mae", "smape"), ("RMSE (people)", "MAE (people)", "sMAPE (%)")):
        ax.plot(eps, [results["dp_sgd"][e][metric] for e in eps], "o-", label="gradient perturbation (DP-SGD)")
        ax.plot(eps, [results["input"][e][metric] for e in eps], "s-", label="input perturbation (Gaussian)")
        ax.axhline(results["non_private"][metric], color="k", ls="--", label="non-private BiGRU")
        ax.axhline(results["naive"][metric], color="gray", ls=":", label="naive last value")
        ax.set_xscale("log", base=2)
        ax.set_xlabel(f"ε (δ = {cfg.delta:g})")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8)
    fig.suptitle("BiGRU forecast of 6 regions' counts: error vs privacy budget (test split)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(quick: bool = False, out_dir=None, seed: int = 0, progress: bool = True, config: Config | None = None) -> RecipeResult:
    """Non-private, DP-SGD and input-perturbed BiGRU forecasters at each ε; RMSE, MAE, sMAPE on the test days."""
    cfg = config or (Config.quick() if quick else Config.full())
    counts = mobility_series(cfg.n_days, seed=seed, steps_per_day=cfg.steps_per_day)
    clean = _split(counts, counts, cfg)
    n_test = cfg.test_days * cfg.steps_per_day
    naive = forecast_errors(clean.y_test_counts, counts[-n_test - 1:-1])

    results: dict = {"naive": naive, "dp_sgd": {}, "input": {}, "train": {}}
    model, info = train_forecaster(clean, cfg, seed, progress=progress, desc="non-private")
    results["non_private"] = _evaluate(model, clean)
    results["train"]["non_private"] = info
    rng = np.random.default_rng([seed, 1])
    for eps in cfg.epsilons:
        model, info = train_forecaster(clean, cfg, seed, target_epsilon=eps, progress=progress, desc=f"DP-SGD ε={eps:g}")
        results["dp_sgd"][eps] = {**_evaluate(model, clean), "epsilon_spent": info["epsilon_spent"],
                                  "noise_multiplier": info["noise_multiplier"]}
        results["train"][f"dp_sgd_{eps:g}"] = info
        sigma = gaussian_sigma(eps, cfg.delta, cfg.sensitivity)
        noisy = counts.copy()
        noisy[:-n_test] = perturb_counts(counts[:-n_test], sigma, rng)
        split = _split(noisy, counts, cfg)
        model, info = train_forecaster(split, cfg, seed, progress=progress, desc=f"input ε={eps:g}")
        results["input"][eps] = {**_evaluate(model, split), "sigma": sigma}
        results["train"][f"input_{eps:g}"] = info

    base = results["non_private"]
    scale = (f"synthetic hourly counts, 6 regions, {cfg.n_days - cfg.test_days} train / {cfg.test_days} test days, "
             f"BiGRU h={cfg.hidden_size}, {cfg.epochs} epochs, δ={cfg.delta:g}")
    rows = [ResultRow("RMSE, non-private BiGRU", base["rmse"], "-", scale, ".1f"),
            ResultRow("RMSE, naive last value", naive["rmse"], "-", scale, ".1f"),
            ResultRow("sMAPE %, non-private BiGRU", base["smape"], "-", scale, ".3f")]
    for eps in cfg.epsilons:
        for key, name in (("dp_sgd", "DP-SGD"), ("input", "input perturbation")):
            r = results[key][eps]
            rows.append(ResultRow(f"RMSE, {name} ε={eps:g}", r["rmse"], "-", scale, ".1f"))
            rows.append(ResultRow(f"RMSE cost % vs non-private, {name} ε={eps:g}",
                                  100 * (r["rmse"] - base["rmse"]) / base["rmse"], "0.57-2.8%", scale, ".2f"))
    result = RecipeResult(recipe="dp_forecast", quick=quick, seed=seed, rows=rows,
                          details={"config": asdict(cfg), "results": _json_keys(results)})
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / "dp_forecast_error_vs_epsilon.png"
        _plot(results, cfg, path)
        result.files.append(str(path))
    return result


def _json_keys(d):
    """Float dict keys (ε) -> strings, so results.json is valid JSON with stable keys."""
    if isinstance(d, dict):
        return {(f"{k:g}" if isinstance(k, float) else k): _json_keys(v) for k, v in d.items()}
    return d
