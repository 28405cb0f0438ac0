"""psi-class intersection numbers with a set transformer and the Dynamic Range Activator (Hashemi, Corominas and
Giacchetto, "Can Transformers Do Enumerative Geometry?", arXiv 2408.14915, 2024; ICLR 2025; official code
Baran-phys/DynamicFormer), rebuilt at laptop scale.

The numbers. For a genus g >= 0 and n >= 1 marked points with 2g - 2 + n > 0, the intersection number

    <tau_{d_1} ... tau_{d_n}>_g = integral over the moduli space Mbar_{g,n} of psi_1^{d_1} ... psi_n^{d_n}

is a positive rational when sum_i d_i = 3g - 3 + n (the dimension constraint) and 0 otherwise. It is
symmetric in the d_i, so we key it by the sorted tuple. :func:`intersection_number` computes it exactly
(``fractions.Fraction``), memoised, from

    base cases          <tau_0^3>_0 = 1,  <tau_1>_1 = 1/24
    string equation     <tau_0 prod_j tau_{d_j}>_g = sum_j <tau_{d_j - 1} prod_{i != j} tau_{d_i}>_g
    dilaton equation    <tau_1 prod_{j=1..m} tau_{d_j}>_g = (2g - 2 + m) <prod_j tau_{d_j}>_g
    DVV / Virasoro      (2k+1)!! <tau_k prod_{j=1..m} tau_{d_j}>_g =                       (k >= 1; used for k >= 2)
                            sum_j (2k + 2d_j - 1)!! / (2d_j - 1)!! <tau_{k + d_j - 1} prod_{i != j} tau_{d_i}>_g
                          + 1/2 sum_{r+s=k-2} (2r+1)!! (2s+1)!! <tau_r tau_s prod_j tau_{d_j}>_{g-1}
                          + 1/2 sum_{r+s=k-2} (2r+1)!! (2s+1)!! sum_{g1+g2=g, I u J = {1..m}}
                                  <tau_r prod_{I} tau_{d_i}>_{g1} <tau_s prod_{J} tau_{d_j}>_{g2}

(Dijkgraaf-Verlinde-Verlinde 1991, in the normalisation of Liu-Xu; (-1)!! = 1; unstable or dimension-violating
brackets are 0). :func:`dvv_rhs` evaluates the DVV right-hand side on any marked point, which the tests use to
check that the string and dilaton shortcuts agree with the recursion.

The learning task (paper sec. 3-4): predict y = log10 <tau_{d_1} ... tau_{d_n}>_g (we pin base 10; every nonzero
bracket is positive) from (g, n, d_1..d_n). Training uses n <= ``n_train_max``; the error is reported on held-out
*larger* n (n_train_max < n <= max_n) at the same genera, where the values reach new orders of magnitude.

The model, from recurlab's parts. Each marked point is a token with features (d_i, g, n) / 10, linearly embedded to
d_model; ``n_layers`` pre-norm encoder blocks

    x <- x + SetAttention(LayerNorm(x)),   x <- x + MLP_act(LayerNorm(x))

then a pooled head  z = [mean_i x_i, max_i x_i, mean_i x_i * log(n+1)/log(n_avg+1), g/10, n/10],
y_hat = W_2 act(W_1 z). SetAttention is recurlab's ``attention`` layer (its q/k/v/o projections) run
*bidirectionally* through :func:`recurlab.ops.attention` with ``causal=False`` and every token at rotary position 0
(RoPE is then the identity), so the encoder is permutation-invariant as the multiset {d_i} requires. The MLP is
recurlab's ``mlp`` channel mixer; for DRA and Snake its activation is replaced by the learnable module below
(``relu`` and ``gelu`` are its own). The head's ``act`` is the same activation. The mean*log-scaler pooling follows
the official code's PNA-style aggregator (the scalers let the readout depend on n, which extrapolation needs).

The activations compared (as in the paper: DRA against ReLU, GELU and Snake):

    ReLU, GELU        fixed
    Snake             x + sin^2(a x) / a                                 (Ziyin et al. 2020; a learnable per channel)
    DRA               x + a sin^2(x / b) + c cos(b x) + d tanh(b x)       (a, b, c, d learnable per channel)

Two DRA formulas are published: the paper's main text defines x + a sin^2(x/b) + c cos(bx) + d tanh(bx); the
``torch-dra`` package (dra/activations.py) computes x + b sin^2(ax)/a + c cos(ax) + d tanh(bx), and the training
script of the official code yet another mix (x + a sin^2(ax)/b + c cos(bx) + d tanh(bx)). We implement the main
text's. Its only division is x / b: b is used as sign(b) * max(|b|, eps) (sign of 0 taken +), so the activation
stays finite as b -> 0 (the same guard protects Snake's 1/a). Initialisation a = b = 1, c = d = 0 (DRA then starts
as x + sin^2 x); the package draws all four from N(0, 1), which with per-channel parameters puts some |b| near 0
and makes sin^2(x/b) oscillate wildly at the start.

Uncertainty (paper sec. 4.3): split conformal prediction. The residuals |y - y_hat| on a calibration split (drawn
from the same n <= n_train_max pool as training, never trained on) give q = the ceil((m+1)(1-alpha))-th smallest of
the m scores; the interval is y_hat +- q, with coverage >= 1 - alpha (alpha = 0.1: 90%) guaranteed for exchangeable
data. We report it on held-out in-range data (where the guarantee applies) and on the larger-n set (where it does
not). The paper's "dynamic sliding window" calibrates per window of equal n; at held-out n there is no calibration
data of that n, so we use the plain global split-conformal interval.

Deviations (also in docs/recipes/dra_enumerative.md): the paper's DynamicFormer also reads the quantum Airy structure
tensors (A, B, C, D) of the Virasoro constraints through a second transformer branch and adds a Barlow-twins loss
between the branches; we feed only (g, n, d_i). Its data reach genus 17 and values 10^{-45}..10^{45}, held out by
*genus* in the official script; ours reach genus ``max_genus`` (6 in the full run: about 10^{-11.1}..10^{3.7})
and hold out larger n, as the task asks. Sizes are tiny (d_model 32, 2 blocks) and there is no dropout.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from fractions import Fraction
from functools import lru_cache, partial
from itertools import combinations
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..train.loop import train_steps
from ..train.schedule import warmup_cosine
from .common import RecipeResult, ResultRow

PAPER = ("Hashemi, Corominas, Giacchetto, Can Transformers Do Enumerative Geometry? (the Dynamic Range Activator), "
         "2024 / ICLR 2025")

ACTIVATIONS = ("relu", "gelu", "snake", "dra")
FEATURE_SCALE = 0.1  # token features (d_i, g, n) * 0.1

# ----------------------------------------------------------------------------- exact intersection numbers


def double_factorial(k: int) -> int:
    """k!! for k >= -1 ((-1)!! = 0!! = 1)."""
    if k < -1:
        raise ValueError(f"double_factorial needs k >= -1, got {k}")
    out = 1
    while k > 1:
        out *= k
        k -= 2
    return out


def _check_bracket(g, ds) -> tuple[int, tuple[int, ...]]:
    if not isinstance(g, (int, np.integer)) or isinstance(g, bool) or g < 0:
        raise ValueError(f"g must be an int >= 0, got {g!r}")
    ds = tuple(ds)
    if not ds or any(not isinstance(d, (int, np.integer)) or isinstance(d, bool) or d < 0 for d in ds):
        raise ValueError(f"ds must be a non-empty sequence of ints >= 0 (the exponents d_1..d_n), got {ds!r}")
    return int(g), tuple(sorted(int(d) for d in ds))


def intersection_number(g: int, ds) -> Fraction:
    """<tau_{d_1} ... tau_{d_n}>_g exactly; 0 unless sum d_i = 3g - 3 + n and 2g - 2 + n > 0."""
    g, ds = _check_bracket(g, ds)
    return _bracket(g, ds)


def _vanishes(g: int, ds: tuple[int, ...]) -> bool:
    n = len(ds)
    return g < 0 or n == 0 or 2 * g - 2 + n <= 0 or any(d < 0 for d in ds) or sum(ds) != 3 * g - 3 + n


@lru_cache(maxsize=None)
def _bracket(g: int, ds: tuple[int, ...]) -> Fraction:
    """The memoised recursion on a sorted tuple ds (string, then dilaton, then DVV on the largest d)."""
    if _vanishes(g, ds):
        return Fraction(0)
    if g == 0 and len(ds) == 3:
        return Fraction(1)  # <tau_0^3>_0 (the constraint forces all d = 0)
    if g == 1 and len(ds) == 1:
        return Fraction(1, 24)  # <tau_1>_1
    if ds[0] == 0:
        return string_rhs(g, ds[1:])
    if ds[0] == 1:
        return dilaton_rhs(g, ds[1:])
    return dvv_rhs(g, ds, len(ds) - 1)


def _key(ds) -> tuple[int, ...]:
    return tuple(sorted(ds))


def string_rhs(g: int, rest: tuple[int, ...]) -> Fraction:
    """Right side of the string equation: <tau_0 prod tau_rest>_g = sum_j <tau_{rest_j - 1} prod_{i!=j} tau_rest_i>_g."""
    total = Fraction(0)
    for j, d in enumerate(rest):
        if d > 0:
            total += _bracket(g, _key(rest[:j] + (d - 1,) + rest[j + 1:]))
    return total


def dilaton_rhs(g: int, rest: tuple[int, ...]) -> Fraction:
    """Right side of the dilaton equation: <tau_1 prod tau_rest>_g = (2g - 2 + len(rest)) <prod tau_rest>_g."""
    if not rest:  # <tau_1>_g with no other point: only <tau_1>_1, a base case
        return Fraction(0)
    return (2 * g - 2 + len(rest)) * _bracket(g, _key(rest))


def dvv_rhs(g: int, ds, i: int) -> Fraction:
    """<tau_{d_1}..tau_{d_n}>_g by the DVV (Virasoro) recursion removing marked point ``i`` (needs ds[i] >= 1)."""
    g, ds_sorted = _check_bracket(g, ds)
    ds = tuple(int(d) for d in ds)
    if not 0 <= i < len(ds) or ds[i] < 1:
        raise ValueError(f"i must index a marked point with d_i >= 1, got i={i} for ds={ds}")
    if _vanishes(g, ds_sorted):
        return Fraction(0)
    k, rest = ds[i], ds[:i] + ds[i + 1:]
    total = Fraction(0)
    for j, d in enumerate(rest):
        coeff = Fraction(double_factorial(2 * k + 2 * d - 1), double_factorial(2 * d - 1))
        total += coeff * _bracket(g, _key(rest[:j] + (k + d - 1,) + rest[j + 1:]))
    m = len(rest)
    for r in range(k - 1):  # r + s = k - 2
        s = k - 2 - r
        coeff = Fraction(double_factorial(2 * r + 1) * double_factorial(2 * s + 1), 2)
        total += coeff * _bracket(g - 1, _key(rest + (r, s)))
        for size in range(m + 1):
            for part in combinations(range(m), size):
                left = (r,) + tuple(rest[t] for t in part)
                right = (s,) + tuple(rest[t] for t in range(m) if t not in part)
                for g1 in range(g + 1):
                    a = _bracket(g1, _key(left))
                    if a:
                        total += coeff * a * _bracket(g - g1, _key(right))
    return total / double_factorial(2 * k + 1)


def partitions(total: int, parts: int, largest: int | None = None):
    """Non-increasing tuples of ``parts`` ints >= 0 summing to ``total`` (each <= ``largest``)."""
    largest = total if largest is None else largest
    if parts == 0:
        if total == 0:
            yield ()
        return
    for d in range(min(total, largest), -1, -1):
        for tail in partitions(total - d, parts - 1, d):
            yield (d,) + tail


def enumerate_brackets(max_genus: int, max_n: int) -> list[tuple[int, tuple[int, ...], Fraction]]:
    """Every nonzero <tau_{d_1}..tau_{d_n}>_g with g <= max_genus, 1 <= n <= max_n, as (g, sorted ds, value)."""
    if not isinstance(max_genus, int) or max_genus < 0:
        raise ValueError(f"max_genus must be an int >= 0, got {max_genus!r}")
    if not isinstance(max_n, int) or max_n < 1:
        raise ValueError(f"max_n must be an int >= 1, got {max_n!r}")
    out = []
    for g in range(max_genus + 1):
        for n in range(1, max_n + 1):
            if 2 * g - 2 + n <= 0:
                continue
            for p in partitions(3 * g - 3 + n, n):
                ds = tuple(sorted(p))
                value = _bracket(g, ds)
                if value:
                    out.append((g, ds, value))
    return out


def log10_fraction(x: Fraction) -> float:
    """log10 of a positive Fraction, exact in range (numerator and denominator may exceed float range)."""
    if x <= 0:
        raise ValueError(f"log10_fraction needs a positive value, got {x}")
    return math.log10(x.numerator) - math.log10(x.denominator)


# ----------------------------------------------------------------------------- activations


def _away_from_zero(p: torch.Tensor, eps: float) -> torch.Tensor:
    """p with |p| >= eps, keeping its sign (0 -> +eps); the gradient passes where |p| >= eps."""
    sign = torch.where(p < 0, -torch.ones_like(p), torch.ones_like(p))
    return sign * p.abs().clamp_min(eps)


class DRA(nn.Module):
    """Dynamic Range Activator, the paper's main-text form, per channel (last dim):

        DRA(x) = x + a sin^2(x / b) + c cos(b x) + d tanh(b x),  b used as sign(b) max(|b|, eps) in x / b.
    """

    def __init__(self, channels: int, eps: float = 1e-3):
        super().__init__()
        if channels < 1 or eps <= 0:
            raise ValueError(f"channels must be >= 1 and eps > 0, got {channels}, {eps}")
        self.eps = eps
        self.a = nn.Parameter(torch.ones(channels))
        self.b = nn.Parameter(torch.ones(channels))
        self.c = nn.Parameter(torch.zeros(channels))
        self.d = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.a.shape[0]:
            raise ValueError(f"DRA over {self.a.shape[0]} channels got input with last dim {x.shape[-1]}")
        b_safe = _away_from_zero(self.b, self.eps)
        bx = self.b * x
        return x + self.a * torch.sin(x / b_safe).square() + self.c * torch.cos(bx) + self.d * torch.tanh(bx)


class Snake(nn.Module):
    """Snake (Ziyin et al. 2020): x + sin^2(a x) / a, a per channel, 1/a guarded as in :class:`DRA`."""

    def __init__(self, channels: int, eps: float = 1e-3):
        super().__init__()
        if channels < 1 or eps <= 0:
            raise ValueError(f"channels must be >= 1 and eps > 0, got {channels}, {eps}")
        self.eps = eps
        self.a = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.a.shape[0]:
            raise ValueError(f"Snake over {self.a.shape[0]} channels got input with last dim {x.shape[-1]}")
        return x + torch.sin(self.a * x).square() / _away_from_zero(self.a, self.eps)


def make_activation(name: str, channels: int) -> nn.Module:
    """relu / gelu (fixed) or snake / dra (learnable per channel) as a module."""
    if name == "relu":
        return nn.ReLU()
    if name == "gelu":
        return nn.GELU()
    if name == "snake":
        return Snake(channels)
    if name == "dra":
        return DRA(channels)
    raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {name!r}")


# ----------------------------------------------------------------------------- the model


class SetAttention(nn.Module):
    """recurlab's ``attention`` layer run bidirectionally over a set: q, k, v, o projections of the layer, every
    token at rotary position 0 (RoPE = identity), ``ops.attention(causal=False)``. x (B, T, D) -> (B, T, D)."""

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        from .. import layers

        self.attn = layers.build("attention", d_model, n_heads=n_heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from .. import ops

        B, T, _ = x.shape
        a = self.attn  # its project() with every position 0, minus the rotation by angle 0 (the identity)
        q = a.q_proj(x).view(B, T, a.n_heads, a.head_dim)
        k = a.k_proj(x).view(B, T, a.n_kv_heads, a.head_dim)
        v = a.v_proj(x).view(B, T, a.n_kv_heads, a.head_dim)
        o, _ = ops.attention(q, k, v, causal=False)
        return self.attn.o_proj(o.flatten(-2))


class IntersectionRegressor(nn.Module):
    """A permutation-invariant encoder of the marked points -> log10 <tau_{d_1}..tau_{d_n}>_g (standardised).

    forward(ds, g): ds (B, n) float exponents (one n per batch), g (B,) float genera -> (B,) predictions.
    """

    def __init__(self, activation: str, d_model: int = 32, n_layers: int = 2, n_heads: int = 4,
                 hidden: int = 64, n_avg: float = 4.0):
        super().__init__()
        from .. import layers

        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        self.activation, self.n_avg = activation, n_avg
        self.embed = nn.Linear(3, d_model)
        self.norms1 = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(n_layers))
        self.norms2 = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(n_layers))
        self.attns = nn.ModuleList(SetAttention(d_model, n_heads) for _ in range(n_layers))
        self.mlps = nn.ModuleList()
        for _ in range(n_layers):
            if activation in ("relu", "gelu"):
                mlp = layers.build("mlp", d_model, hidden_size=hidden, bias=True, activation=activation)
            else:  # recurlab's MLP with its activation function replaced by the learnable module
                mlp = layers.build("mlp", d_model, hidden_size=hidden, bias=True)
                mlp.activation = make_activation(activation, hidden)
                mlp.activation_name = activation
            self.mlps.append(mlp)
        self.head_in = nn.Linear(3 * d_model + 2, hidden)
        self.head_act = make_activation(activation, hidden)
        self.head_out = nn.Linear(hidden, 1)

    def forward(self, ds: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        if ds.ndim != 2 or g.shape != ds.shape[:1]:
            raise ValueError(f"ds must be (B, n) and g (B,), got {tuple(ds.shape)} and {tuple(g.shape)}")
        B, n = ds.shape
        g_feat = (g * FEATURE_SCALE).view(B, 1, 1).expand(B, n, 1)
        n_feat = ds.new_full((B, n, 1), n * FEATURE_SCALE)
        x = self.embed(torch.cat([ds.unsqueeze(-1) * FEATURE_SCALE, g_feat, n_feat], -1))
        for norm1, attn, norm2, mlp in zip(self.norms1, self.attns, self.norms2, self.mlps):
            x = x + attn(norm1(x))
            x = x + mlp(norm2(x))
        mean = x.mean(1)
        scaler = math.log(n + 1) / math.log(self.n_avg + 1)
        z = torch.cat([mean, x.amax(1), mean * scaler, g.view(B, 1) * FEATURE_SCALE,
                       ds.new_full((B, 1), n * FEATURE_SCALE)], -1)
        return self.head_out(self.head_act(self.head_in(z))).squeeze(-1)


# ----------------------------------------------------------------------------- conformal prediction


def conformal_quantile(scores: np.ndarray, alpha: float) -> float:
    """Split-conformal threshold: the ceil((m+1)(1-alpha))-th smallest of the m calibration scores (inf if that
    rank exceeds m), so that a new exchangeable score is <= it with probability >= 1 - alpha."""
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 1 or scores.size == 0 or not np.all(np.isfinite(scores)):
        raise ValueError(f"scores must be a non-empty 1-D array of finite values, got shape {scores.shape}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    m = scores.size
    rank = math.ceil((m + 1) * (1 - alpha))
    return math.inf if rank > m else float(np.sort(scores)[rank - 1])


def interval_coverage(y: np.ndarray, pred: np.ndarray, q: float) -> float:
    """Share of y inside [pred - q, pred + q]."""
    y, pred = np.asarray(y, float), np.asarray(pred, float)
    if y.shape != pred.shape or y.size == 0:
        raise ValueError(f"y and pred must be non-empty and of one shape, got {y.shape} and {pred.shape}")
    return float(np.mean(np.abs(y - pred) <= q))


# ----------------------------------------------------------------------------- the recipe


@dataclass
class Config:
    max_genus: int = 6
    max_n: int = 8
    n_train_max: int = 6  # train/calibrate on n <= this; held-out test: n_train_max < n <= max_n
    cal_fraction: float = 0.2  # of the n <= n_train_max pool: conformal calibration
    test_fraction: float = 0.2  # of that pool: in-range test
    activations: tuple[str, ...] = ACTIVATIONS
    seeds: int = 2  # models per activation (seeds seed, seed+1, ...); metrics are their mean
    d_model: int = 32
    n_layers: int = 2
    n_heads: int = 4
    hidden: int = 64
    steps: int = 2500
    eval_every: int = 500
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    alpha: float = 0.1  # 90% intervals
    grad_clip: float = 1.0

    @classmethod
    def quick(cls) -> "Config":
        return cls(max_genus=4, max_n=7, n_train_max=5, seeds=1, steps=1200, eval_every=400)

    @classmethod
    def full(cls) -> "Config":
        return cls()

    def check(self) -> None:
        if self.max_genus < 0 or self.max_n < 2:
            raise ValueError(f"max_genus must be >= 0 and max_n >= 2, got {self.max_genus}, {self.max_n}")
        if not 1 <= self.n_train_max < self.max_n:
            raise ValueError(f"n_train_max must be in [1, max_n - 1] = [1, {self.max_n - 1}], got {self.n_train_max}")
        if not (0 < self.cal_fraction < 1 and 0 < self.test_fraction < 1 and self.cal_fraction + self.test_fraction < 1):
            raise ValueError(f"cal_fraction and test_fraction must be in (0, 1) with sum < 1, got "
                             f"{self.cal_fraction}, {self.test_fraction}")
        bad = [a for a in self.activations if a not in ACTIVATIONS]
        if bad or not self.activations:
            raise ValueError(f"activations must be a non-empty subset of {ACTIVATIONS}, got {self.activations}")
        if self.seeds < 1 or self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"seeds, steps and batch_size must be >= 1, got {self.seeds}, {self.steps}, "
                             f"{self.batch_size}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")


@dataclass
class Split:
    """One set of brackets: exponents grouped by n (bucket n -> (N_n, n) array), genera and log10 targets."""

    ds: dict[int, np.ndarray]
    g: dict[int, np.ndarray]
    y: dict[int, np.ndarray]

    @classmethod
    def of(cls, rows: list[tuple[int, tuple[int, ...], float]]) -> "Split":
        ds, g, y = {}, {}, {}
        for n in sorted({len(r[1]) for r in rows}):
            sel = [r for r in rows if len(r[1]) == n]
            ds[n] = np.array([r[1] for r in sel], dtype=np.float32).reshape(len(sel), n)
            g[n] = np.array([r[0] for r in sel], dtype=np.float32)
            y[n] = np.array([r[2] for r in sel], dtype=np.float64)
        return cls(ds, g, y)

    def __len__(self) -> int:
        return sum(len(v) for v in self.y.values())

    def targets(self) -> np.ndarray:
        return np.concatenate([self.y[n] for n in sorted(self.y)])

    def ns(self) -> np.ndarray:
        return np.concatenate([np.full(len(self.y[n]), n) for n in sorted(self.y)])


def make_splits(cfg: Config, seed: int) -> tuple[dict[str, Split], float]:
    """Brackets -> train / cal / test (n <= n_train_max, shuffled by ``seed``) and heldout (larger n); seconds."""
    import time

    start = time.perf_counter()
    rows = [(g, ds, log10_fraction(v)) for g, ds, v in enumerate_brackets(cfg.max_genus, cfg.max_n)]
    seconds = time.perf_counter() - start
    pool = [r for r in rows if len(r[1]) <= cfg.n_train_max]
    held = [r for r in rows if len(r[1]) > cfg.n_train_max]
    order = np.random.default_rng(seed).permutation(len(pool))
    n_cal, n_test = round(cfg.cal_fraction * len(pool)), round(cfg.test_fraction * len(pool))
    cal = [pool[i] for i in order[:n_cal]]
    test = [pool[i] for i in order[n_cal:n_cal + n_test]]
    train = [pool[i] for i in order[n_cal + n_test:]]
    if not train or not cal or not test or not held:
        raise ValueError(f"max_genus={cfg.max_genus}, max_n={cfg.max_n}, n_train_max={cfg.n_train_max} leave an "
                         f"empty split (train {len(train)}, cal {len(cal)}, test {len(test)}, held-out {len(held)})")
    return {"train": Split.of(train), "cal": Split.of(cal), "test": Split.of(test), "heldout": Split.of(held)}, seconds


def predict(model: IntersectionRegressor, split: Split, mean: float, std: float) -> np.ndarray:
    """log10 predictions in the order of split.targets()."""
    model.eval()
    with torch.no_grad():
        out = [model(torch.as_tensor(split.ds[n]), torch.as_tensor(split.g[n])).double().numpy() * std + mean
               for n in sorted(split.y)]
    model.train()
    return np.concatenate(out)


def _batch_fn(train: Split, mean: float, std: float, batch_size: int, seed: int):
    """Batches for :func:`train_steps`: a bucket n drawn in proportion to its size, then up to batch_size of its
    brackets without replacement; the generator is consumed in step order, so runs repeat exactly."""
    rng = np.random.default_rng(seed)
    ns = sorted(train.y)
    sizes = np.array([len(train.y[n]) for n in ns], dtype=float)
    tensors = {n: (torch.as_tensor(train.ds[n]), torch.as_tensor(train.g[n]),
                   torch.as_tensor((train.y[n] - mean) / std, dtype=torch.float32)) for n in ns}

    def batch(step: int):
        n = ns[rng.choice(len(ns), p=sizes / sizes.sum())]
        ds, g, y = tensors[n]
        idx = torch.as_tensor(rng.choice(len(y), size=min(batch_size, len(y)), replace=False))
        return ds[idx], g[idx], y[idx]

    return batch


def train_model(activation: str, splits: dict[str, Split], cfg: Config, seed: int, progress: bool = False
                ) -> tuple[IntersectionRegressor, dict, float, float]:
    """Train one regressor on splits["train"] with AdamW, warmup-cosine, MSE on standardised log10 targets, through
    the shared loop; the final weights are kept. Returns the model, its curves, and the target mean / std."""
    y_train = splits["train"].targets()
    mean, std = float(y_train.mean()), float(y_train.std() or 1.0)
    torch.manual_seed(seed)
    model = IntersectionRegressor(activation, cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.hidden,
                                  n_avg=float(np.mean(splits["train"].ns())))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)

    def validate() -> dict[str, float]:
        cal = splits["cal"]
        return {"cal_mae": float(np.mean(np.abs(predict(model, cal, mean, std) - cal.targets())))}

    history = train_steps(model, opt, F.mse_loss, _batch_fn(splits["train"], mean, std, cfg.batch_size, seed),
                          cfg.steps, min(cfg.eval_every, cfg.steps),
                          lr_factor=partial(warmup_cosine, total=cfg.steps, warmup=max(1, cfg.steps // 20),
                                            min_ratio=0.05),
                          grad_clip=cfg.grad_clip, validate=validate, progress=progress, desc=f"{activation} s{seed}")
    curves = {"window_loss": history.window_loss, "window_end": history.window_end,
              "cal_mae": [v["cal_mae"] for v in history.val]}
    return model, curves, mean, std


def _metrics(y: np.ndarray, pred: np.ndarray, q: float) -> dict[str, float]:
    err = pred - y
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err ** 2))),
            "max_abs": float(np.max(np.abs(err))), "r2": 1 - float(np.sum(err ** 2)) / ss_tot if ss_tot else math.nan,
            "coverage": interval_coverage(y, pred, q)}


def evaluate(model, splits, mean, std, alpha) -> tuple[dict, dict[str, np.ndarray]]:
    """Conformal threshold from the calibration split and metrics on test and heldout; also the predictions."""
    preds = {name: predict(model, splits[name], mean, std) for name in ("cal", "test", "heldout")}
    q = conformal_quantile(np.abs(preds["cal"] - splits["cal"].targets()), alpha)
    out = {"q": q}
    for name in ("test", "heldout"):
        out[name] = _metrics(splits[name].targets(), preds[name], q)
    held_ns = splits["heldout"].ns()
    out["heldout_by_n"] = {int(n): _metrics(splits["heldout"].targets()[held_ns == n], preds["heldout"][held_ns == n], q)
                           for n in np.unique(held_ns)}
    return out, preds


def _plot(splits, preds: dict[str, dict[str, np.ndarray]], summary: dict, alpha: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acts = list(preds)
    fig, axes = plt.subplots(1, len(acts) + 1, figsize=(4 * (len(acts) + 1), 4))
    y_test, y_held = splits["test"].targets(), splits["heldout"].targets()
    lo, hi = min(y_test.min(), y_held.min()) - 1, max(y_test.max(), y_held.max()) + 1
    for ax, act in zip(axes, acts):
        s = summary[act]
        ax.scatter(y_held, preds[act]["heldout"], s=3, alpha=0.4, color="C3", label=f"held-out n (MAE {s['heldout']['mae']:.2f})")
        ax.scatter(y_test, preds[act]["test"], s=3, alpha=0.6, color="C0", label=f"in-range test (MAE {s['test']['mae']:.2f})")
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
        ax.plot([lo, hi], [lo + s["q"], hi + s["q"]], "k:", lw=0.8)
        ax.plot([lo, hi], [lo - s["q"], hi - s["q"]], "k:", lw=0.8, label=f"conformal ±{s['q']:.2f}")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_title(f"{act}: predicted vs true log10<τ>", fontsize=9)
        ax.set_xlabel("true log10 value")
        ax.set_ylabel("predicted")
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(alpha=0.3)
    ax = axes[-1]
    x = np.arange(len(acts))
    ax.bar(x - 0.2, [summary[a]["test"]["coverage"] for a in acts], 0.4, label="in-range test")
    ax.bar(x + 0.2, [summary[a]["heldout"]["coverage"] for a in acts], 0.4, label="held-out larger n")
    ax.axhline(1 - alpha, color="k", ls="--", lw=0.8, label=f"target {1 - alpha:.0%}")
    ax.set_xticks(x, acts)
    ax.set_ylim(0, 1.05)
    ax.set_title("split-conformal interval coverage", fontsize=9)
    ax.legend(fontsize=7, loc="lower left")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _mean_metrics(runs: list[dict]) -> dict:
    """Element-wise mean of nested metric dicts (over seeds)."""
    first = runs[0]
    if isinstance(first, dict):
        return {k: _mean_metrics([r[k] for r in runs]) for k in first}
    return float(np.mean(runs))


def run(quick: bool = False, out_dir=None, seed: int = 0, progress: bool = True, config: Config | None = None
        ) -> RecipeResult:
    """Enumerate the brackets, train one regressor per activation (and seed), calibrate conformal intervals,
    report log10 errors on held-out larger n and interval coverage."""
    cfg = config or (Config.quick() if quick else Config.full())
    cfg.check()
    splits, enum_seconds = make_splits(cfg, seed)
    y_train = splits["train"].targets()
    baseline = {name: float(np.mean(np.abs(splits[name].targets() - y_train.mean()))) for name in ("test", "heldout")}
    per_seed, summary, curves, preds = {}, {}, {}, {}
    for act in cfg.activations:
        runs = []
        for k in range(cfg.seeds):
            model, curves[f"{act}/{seed + k}"], mean, std = train_model(act, splits, cfg, seed + k, progress)
            metrics, p = evaluate(model, splits, mean, std, cfg.alpha)
            runs.append(metrics)
            if k == 0:
                preds[act] = p
        per_seed[act] = runs
        summary[act] = _mean_metrics(runs)
    all_y = np.concatenate([s.targets() for s in splits.values()])
    sizes = {name: len(s) for name, s in splits.items()}
    scale = (f"g<={cfg.max_genus}, train n<={cfg.n_train_max}, held-out n={cfg.n_train_max + 1}..{cfg.max_n} "
             f"({sizes['train']} train / {sizes['heldout']} held-out brackets, log10 range "
             f"{all_y.min():.1f}..{all_y.max():.1f}); d_model {cfg.d_model}, {cfg.n_layers} blocks, {cfg.steps} steps, "
             f"mean of {cfg.seeds} seed(s)")
    rows = []
    for act in cfg.activations:
        rows.append(ResultRow(f"held-out n MAE of log10 value, {act}", summary[act]["heldout"]["mae"], "-", scale, ".3f"))
    for act in cfg.activations:
        rows.append(ResultRow(f"held-out n R^2 of log10 value, {act}", summary[act]["heldout"]["r2"], "-", scale, ".4f"))
    for act in cfg.activations:
        rows.append(ResultRow(f"in-range test MAE of log10 value, {act}", summary[act]["test"]["mae"], "-", scale, ".3f"))
    rows.append(ResultRow("held-out n MAE of log10 value, train-mean baseline", baseline["heldout"], "-", scale, ".3f"))
    for act in cfg.activations:
        rows.append(ResultRow(f"{1 - cfg.alpha:.0%} conformal coverage in-range test, {act}",
                              summary[act]["test"]["coverage"], f"target {1 - cfg.alpha:.0%}", scale, ".3f"))
    for act in cfg.activations:
        rows.append(ResultRow(f"{1 - cfg.alpha:.0%} conformal coverage held-out n, {act}",
                              summary[act]["heldout"]["coverage"], f"target {1 - cfg.alpha:.0%}", scale, ".3f"))
    ranking = sorted(cfg.activations, key=lambda a: summary[a]["heldout"]["mae"])
    result = RecipeResult(recipe="dra_enumerative", quick=quick, seed=seed, rows=rows,
                          details={"config": asdict(cfg), "sizes": sizes, "enumeration_seconds": enum_seconds,
                                   "log10_range": [float(all_y.min()), float(all_y.max())],
                                   "baseline_mae": baseline, "summary": summary, "per_seed": per_seed,
                                   "heldout_mae_ranking": ranking, "curves": curves})
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / "dra_enumerative.png"
        _plot(splits, preds, summary, cfg.alpha, path)
        result.files.append(str(path))
    return result
