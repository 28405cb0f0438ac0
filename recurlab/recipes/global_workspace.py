"""Chaining operations through a global workspace: a + b by Input -> Increment (b times) -> Output
(Chateau-Laurent & VanRullen, "Learning to Chain Operations by Routing Information Through a Global
Workspace", 2025, arXiv 2503.01906). No official code was found; the model is rebuilt from the paper's
abstract and the issue's description.

The model. A workspace w_t in R^N (N slots; slot s stands for the number s, N >= 19 so that every sum
a + b <= 18 of two digits has a slot) is written by one of K = 3 modules per step, chosen by an LSTM
controller that reads the workspace:

    w_0 = 0,  r_0 = uniform(N),  g_{-1} = 0
    (h_t, c_t) = LSTMCell([beta ; w_t ; g_{t-1}], (h_{t-1}, c_{t-1}))     beta: the code of b (below)
    g_t = softmax(W_g h_t + b_g)                   training (or Gumbel-softmax with Config.gate="gumbel")
    g_t = one_hot(argmax(W_g h_t + b_g))           evaluation (hard routing: one module writes)
    u_in = In(x_a),  u_inc = Inc(w_t),  u_out = w_t                     the modules' writes
    w_{t+1} = g_t[in] u_in + g_t[inc] u_inc + g_t[out] u_out           the chosen module writes the workspace
    r_{t+1} = r_t + g_t[out] (Out(w_t) - r_t)                          the Output module emits the answer
    p(a + b = s) = r_T[s],  T = 11 steps,  loss = -log r_T[a + b]

The Output module reads the workspace out (its write leaves the workspace unchanged) and its read-out
replaces the answer register r; the answer is what it emitted last. With hard gates the computation is
exactly a + b when the controller calls Input at step 0, Increment at steps 1..b, Output at steps b+1..T-1
(T = 9 + 2 covers b <= 9). The controller is given b's code beta and must learn to count.

Version 1 (hand-designed modules, only the controller learns): In(a) = one_hot_N(a), Inc(w) = w shifted
one slot up (w'[s] = w[s-1], w'[0] = 0), Out(w) = w, beta = one_hot_N(b).

Version 2 (learned modules on scikit-learn's 8x8 digit images; a and b are images):
    In(x) = softmax(E(x)),  E: MLP 64 -> hidden -> N;  beta = In(x_b)
    Inc(w) = w * softmax(theta_inc)   a learned 1-d convolution over the slots with taps at offsets
            -2..+2 (5 numbers)
    Out(w) = w * softmax(theta_out)   the same family (a learned read-out; ideal: identity)
All three are PRETRAINED on the training images, each on its own objective (E: digit classification;
Inc: In(image of d) -> d + 1 for d + 1 <= train_max_sum; Out: In(image of d) -> d), then frozen; the
controller is then trained on the task exactly as in version 1. (Training Inc and Out end to end with the
controller was tried: the read-out learned a +2 shift and the controller two Increments fewer, which
fails the small sums; pretraining each module on its own objective removes that ambiguity.)
Translation equivariance is the inductive bias that lets a learned increment act on slots >= 10, which
never hold a value in training (sums <= 9): a dense N x N map has untrained columns there.

Ablation ``GW, controller blind to w``: the same model whose controller reads [beta ; g_{t-1}] only. Reading
the workspace lets the controller use its content as a cue in training, and that content (slots >= 10) is
new in extrapolation; the blind controller can only count.

Baselines (more parameters, asserted in the tests), reading the two operands as a sequence of two tokens
(one-hot digits in version 1, 64-pixel images in version 2) and classifying the sum over N classes:
an LSTM (``torch.nn.LSTM``: recurlab has no classic-LSTM mixer, only minLSTM) and a pre-norm Transformer
of recurlab's ``attention`` (causal softmax attention with RoPE) and ``mlp`` mixers, read at the last token.

Data and regimes: pairs a, b in 0..9. Training pairs: a + b <= train_max_sum (9) minus ``n_holdout`` pairs
held out (seeded; every digit and every sum keeps a training pair). Interpolation: the held-out pairs.
Extrapolation: the pairs with a + b > train_max_sum (sums 10..18). Version 2 draws the images of training
examples from one half of the digit images and the test examples from the other half.

Deviations (also in docs/recipes/global_workspace.md): sklearn's 8x8 digits instead of MNIST (offline);
the controller also reads its previous gate; soft gates in training, hard argmax at test; the Output
module's answer register; the equivariant learned increment/read-out; modules pretrained then frozen.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..train.loop import train_steps
from .common import RecipeResult, ResultRow

PAPER = ("Chateau-Laurent & VanRullen, Learning to Chain Operations by Routing Information Through a Global "
         "Workspace, 2025 (arXiv 2503.01906)")

DIGITS = 10
MODULES = ("input", "increment", "output")
N_STEPS = DIGITS + 1  # Input, up to 9 Increments, Output
GW, GW_BLIND, LSTM, TRANSFORMER = "global workspace", "GW, controller blind to w", "LSTM", "Transformer"
MODELS = (GW, GW_BLIND, LSTM, TRANSFORMER)


# ----------------------------------------------------------------------------- pairs and regimes

def split_pairs(train_max_sum: int, n_holdout: int, seed: int) -> dict[str, list[tuple[int, int]]]:
    """The pairs (a, b) of digits by regime: "train" (a + b <= train_max_sum, not held out), "interpolation"
    (``n_holdout`` pairs with a + b <= train_max_sum, drawn with a seeded generator so that every a, every b
    and every sum 0..train_max_sum keeps at least one training pair) and "extrapolation" (a + b > train_max_sum).
    """
    if not 1 <= train_max_sum <= 2 * (DIGITS - 1) - 1:
        raise ValueError(f"train_max_sum must be in [1, {2 * (DIGITS - 1) - 1}], got {train_max_sum}")
    inside = [(a, b) for a in range(DIGITS) for b in range(DIGITS) if a + b <= train_max_sum]
    if not 0 <= n_holdout <= len(inside) // 2:
        raise ValueError(f"n_holdout must be in [0, {len(inside) // 2}] for train_max_sum={train_max_sum}, "
                         f"got {n_holdout}")
    rng = np.random.default_rng(seed)
    train, held = list(inside), []
    for i in rng.permutation(len(inside)):
        if len(held) == n_holdout:
            break
        pair = inside[i]
        rest = [p for p in train if p != pair]
        if (any(p[0] == pair[0] for p in rest) and any(p[1] == pair[1] for p in rest)
                and any(sum(p) == sum(pair) for p in rest)):
            train, held = rest, held + [pair]
    if len(held) < n_holdout:
        raise ValueError(f"cannot hold out {n_holdout} pairs and keep every digit and sum in training")
    extra = [(a, b) for a in range(DIGITS) for b in range(DIGITS) if a + b > train_max_sum]
    return {"train": train, "interpolation": sorted(held), "extrapolation": extra}


def digit_pools(seed: int) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """scikit-learn's 8x8 digits scaled to [0, 1], split in halves per class (seeded): (train, test) pools
    mapping digit -> images (n, 64) float32."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x, y = (data.data / 16.0).astype(np.float32), data.target
    rng = np.random.default_rng(seed)
    train, test = {}, {}
    for d in range(DIGITS):
        idx = rng.permutation(np.flatnonzero(y == d))
        half = len(idx) // 2
        train[d], test[d] = x[idx[:half]], x[idx[half:]]
    return train, test


def image_pairs(pairs: list[tuple[int, int]], pool: dict[int, np.ndarray], n: int,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n examples: a pair drawn uniformly from ``pairs``, each operand a random image of its digit from ``pool``.
    Returns x_a (n, 64), x_b (n, 64), the sum (n,) int64."""
    if not pairs:
        raise ValueError("pairs must be non-empty")
    which = torch.randint(len(pairs), (n,), generator=generator)
    ab = torch.tensor(pairs)[which]
    xs = []
    for col in (0, 1):
        imgs = torch.empty(n, 64)
        for d in range(DIGITS):
            rows = torch.nonzero(ab[:, col] == d).flatten()
            if len(rows):
                pick = torch.randint(len(pool[d]), (len(rows),), generator=generator)
                imgs[rows] = torch.as_tensor(pool[d])[pick]
        xs.append(imgs)
    return xs[0], xs[1], ab.sum(1)


# ----------------------------------------------------------------------------- modules

def shift_up(w: torch.Tensor) -> torch.Tensor:
    """The hand-designed Increment: w (B, N) -> w' with w'[:, s] = w[:, s-1], w'[:, 0] = 0 (mass in the last
    slot falls off)."""
    return F.pad(w[:, :-1], (1, 0))


def slot_conv(w: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """w (B, N) convolved along the slots with ``taps`` (2k+1,) at offsets -k..k: out[s] = sum_j taps[j] w[s - (j - k)]
    (tap k+1 moves mass one slot up), zero outside the workspace."""
    k = (taps.numel() - 1) // 2
    # conv1d is a cross-correlation: out[s] = sum_i kernel[i] w[s + i - k]; flip the taps to get offsets j - k
    return F.conv1d(w.unsqueeze(1), taps.flip(0).view(1, 1, -1), padding=k).squeeze(1)


class HandModules(nn.Module):
    """Version 1: In(a) = one_hot_N(a), Inc = :func:`shift_up`, Out(w) = w, beta = one_hot_N(b); inputs are
    digits (B,) int64. No parameters."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def _one_hot(self, d: torch.Tensor) -> torch.Tensor:
        if d.ndim != 1 or d.dtype != torch.int64 or (d.numel() and (d.min() < 0 or d.max() >= DIGITS)):
            raise ValueError(f"digits must be (B,) int64 in [0, {DIGITS}), got {tuple(d.shape)} {d.dtype}")
        return F.one_hot(d, self.size).float()

    def read_input(self, x_a: torch.Tensor) -> torch.Tensor:
        return self._one_hot(x_a)

    def code_b(self, x_b: torch.Tensor) -> torch.Tensor:
        return self._one_hot(x_b)

    def increment(self, w: torch.Tensor) -> torch.Tensor:
        return shift_up(w)

    def read_out(self, w: torch.Tensor) -> torch.Tensor:
        return w


class LearnedModules(nn.Module):
    """Version 2: a learned encoder E (64 -> hidden -> N; In(x) = softmax(E(x)), also beta), and a learned
    Increment and Output, each a 1-d convolution over the slots with ``2 * reach + 1`` softmax-normalised taps
    (:func:`slot_conv`). Inputs are images (B, 64) in [0, 1]."""

    def __init__(self, size: int, hidden: int = 64, reach: int = 2):
        super().__init__()
        self.size = size
        self.encoder = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, size))
        self.inc_logits = nn.Parameter(torch.zeros(2 * reach + 1))
        self.out_logits = nn.Parameter(torch.zeros(2 * reach + 1))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != 64:
            raise ValueError(f"images must be (B, 64), got {tuple(x.shape)}")
        return self.encoder(x)

    def read_input(self, x_a: torch.Tensor) -> torch.Tensor:
        return self.encode(x_a).softmax(-1)

    def code_b(self, x_b: torch.Tensor) -> torch.Tensor:
        return self.encode(x_b).softmax(-1)

    def increment(self, w: torch.Tensor) -> torch.Tensor:
        return slot_conv(w, self.inc_logits.softmax(0))

    def read_out(self, w: torch.Tensor) -> torch.Tensor:
        return slot_conv(w, self.out_logits.softmax(0))


def workspace_step(w: torch.Tensor, r: torch.Tensor, gate: torch.Tensor, u_in: torch.Tensor,
                   modules: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """One routing step. w, r, u_in: (B, N) workspace, answer register and the Input module's write; gate (B, 3)
    over MODULES. Returns w' = g_in u_in + g_inc Inc(w) + g_out w and r' = r + g_out (Out(w) - r)."""
    if gate.ndim != 2 or gate.shape != (w.shape[0], len(MODULES)):
        raise ValueError(f"gate must be (B={w.shape[0]}, {len(MODULES)}), got {tuple(gate.shape)}")
    g_in, g_inc, g_out = gate[:, 0:1], gate[:, 1:2], gate[:, 2:3]
    w_next = g_in * u_in + g_inc * modules.increment(w) + g_out * w
    r_next = r + g_out * (modules.read_out(w) - r)
    return w_next, r_next


def route(modules: nn.Module, x_a: torch.Tensor, gates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run a given gate sequence (B, T, 3) through the workspace. Returns the answer r_T (B, N) and the
    workspaces (B, T+1, N)."""
    u_in = modules.read_input(x_a)
    w, r = torch.zeros_like(u_in), torch.full_like(u_in, 1.0 / u_in.shape[1])
    ws = [w]
    for t in range(gates.shape[1]):
        w, r = workspace_step(w, r, gates[:, t], u_in, modules)
        ws.append(w)
    return r, torch.stack(ws, 1)


def policy_gates(b: torch.Tensor, steps: int = N_STEPS) -> torch.Tensor:
    """The hand-set correct gate sequence (B, steps, 3): Input, Increment b times, then Output."""
    t = torch.arange(steps)
    choice = torch.where(t == 0, 0, torch.where(t.unsqueeze(0) <= b.unsqueeze(1), 1, 2))
    return F.one_hot(choice, len(MODULES)).float()


class Controller(nn.Module):
    """LSTMCell over [beta ; w_t ; g_{t-1}] (2N + 3; without ``reads_workspace``: [beta ; g_{t-1}]) -> gate
    logits (3)."""

    def __init__(self, size: int, hidden: int, reads_workspace: bool = True):
        super().__init__()
        self.reads_workspace = reads_workspace
        self.cell = nn.LSTMCell((2 if reads_workspace else 1) * size + len(MODULES), hidden)
        self.head = nn.Linear(hidden, len(MODULES))

    def forward(self, beta, w, g_prev, state):
        x = torch.cat([beta, w, g_prev] if self.reads_workspace else [beta, g_prev], -1)
        h, c = self.cell(x, state)
        return self.head(h), (h, c)


def make_gate(logits: torch.Tensor, mode: str, tau: float = 1.0) -> torch.Tensor:
    """(B, 3) logits -> gate: "soft" softmax(logits / tau), "gumbel" Gumbel-softmax(tau) (torch's global RNG),
    "hard" the one-hot argmax."""
    if mode == "soft":
        return (logits / tau).softmax(-1)
    if mode == "gumbel":
        return F.gumbel_softmax(logits, tau=tau)
    if mode == "hard":
        return F.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)
    raise ValueError(f"gate mode must be 'soft', 'gumbel' or 'hard', got {mode!r}")


class GlobalWorkspace(nn.Module):
    """Controller + modules routed through the workspace for N_STEPS steps; forward(x_a, x_b) -> the answer
    distribution r_T (B, N). Gates: ``gate`` ("soft" / "gumbel") in training mode, hard argmax in eval mode."""

    def __init__(self, modules: nn.Module, hidden: int, gate: str = "soft", tau: float = 1.0,
                 steps: int = N_STEPS, reads_workspace: bool = True):
        super().__init__()
        if gate not in ("soft", "gumbel"):
            raise ValueError(f"gate must be 'soft' or 'gumbel' (training), got {gate!r}")
        self.mods, self.gate, self.tau, self.steps = modules, gate, tau, steps
        self.controller = Controller(modules.size, hidden, reads_workspace)
        self.last_gates: torch.Tensor | None = None  # (B, T, 3) of the last forward

    def forward(self, x_a: torch.Tensor, x_b: torch.Tensor) -> torch.Tensor:
        u_in, beta = self.mods.read_input(x_a), self.mods.code_b(x_b)
        B, N = u_in.shape
        w, r = torch.zeros_like(u_in), torch.full_like(u_in, 1.0 / N)
        g = u_in.new_zeros(B, len(MODULES))
        state, gates = None, []
        for _ in range(self.steps):
            logits, state = self.controller(beta, w, g, state)
            g = make_gate(logits, self.gate if self.training else "hard", self.tau)
            w, r = workspace_step(w, r, g, u_in, self.mods)
            gates.append(g)
        self.last_gates = torch.stack(gates, 1).detach()
        return r


def nll_of_probs(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.nll_loss(torch.log(p.clamp_min(1e-8)), y)


# ----------------------------------------------------------------------------- baselines

class LSTMBaseline(nn.Module):
    """torch.nn.LSTM over the two operand tokens -> linear classifier of the sum at the last step."""

    def __init__(self, in_dim: int, hidden: int, n_classes: int, one_hot: bool):
        super().__init__()
        self.one_hot, self.in_dim = one_hot, in_dim
        self.rnn = nn.LSTM(in_dim, hidden, batch_first=True)
        self.out = nn.Linear(hidden, n_classes)

    def forward(self, x_a, x_b):
        y, _ = self.rnn(_tokens(x_a, x_b, self.in_dim, self.one_hot))
        return self.out(y[:, -1])


class TransformerBaseline(nn.Module):
    """Pre-norm Transformer of recurlab's ``attention`` and ``mlp`` mixers over the two operand tokens, read
    at the last token."""

    def __init__(self, in_dim: int, d_model: int, n_layers: int, n_heads: int, n_classes: int, one_hot: bool):
        super().__init__()
        from .. import layers

        self.one_hot, self.in_dim = one_hot, in_dim
        self.embed = nn.Linear(in_dim, d_model)
        self.attn = nn.ModuleList(layers.build("attention", d_model, n_heads=n_heads) for _ in range(n_layers))
        self.mlp = nn.ModuleList(layers.build("mlp", d_model) for _ in range(n_layers))
        self.norm1 = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(n_layers))
        self.norm2 = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(n_layers))
        self.final = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, n_classes)

    def forward(self, x_a, x_b):
        x = self.embed(_tokens(x_a, x_b, self.in_dim, self.one_hot))
        for attn, mlp, n1, n2 in zip(self.attn, self.mlp, self.norm1, self.norm2):
            x = x + attn(n1(x))[0]
            x = x + mlp(n2(x))
        return self.out(self.final(x[:, -1]))


def _tokens(x_a, x_b, in_dim: int, one_hot: bool) -> torch.Tensor:
    if one_hot:
        x_a, x_b = F.one_hot(x_a, in_dim).float(), F.one_hot(x_b, in_dim).float()
    return torch.stack([x_a, x_b], 1)  # (B, 2, in_dim)


def n_params(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


# ----------------------------------------------------------------------------- the recipe

@dataclass
class Config:
    size: int = 20  # workspace slots N (>= 19) = the baselines' classes
    train_max_sum: int = 9
    n_holdout: int = 10  # interpolation pairs held out of a + b <= train_max_sum
    hidden: int = 32  # controller LSTM
    gate: str = "soft"  # training gates: "soft" or "gumbel" (evaluation: hard argmax)
    tau: float = 1.0
    lr: float = 1e-2  # Adam, workspace model (controller; learned Increment/Output in version 2)
    weight_decay: float = 1e-3  # AdamW, all models
    steps: int = 1500  # per model and version
    batch_size: int = 64
    eval_every: int = 250
    encoder_hidden: int = 64
    encoder_epochs: int = 30
    module_epochs: int = 20  # version 2: pretraining of the Increment and Output taps
    lstm_hidden: int = 128
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    baseline_lr: float = 3e-3
    n_eval: int = 2000  # version 2: test examples per regime
    per_pair_eval: int = 20  # version 2: test examples per pair for the accuracy-vs-sum plot

    def __post_init__(self):
        if self.size < 2 * (DIGITS - 1) + 1:
            raise ValueError(f"size must be >= {2 * (DIGITS - 1) + 1} (a slot for every sum up to 18), got {self.size}")
        if self.gate not in ("soft", "gumbel"):
            raise ValueError(f"gate must be 'soft' or 'gumbel', got {self.gate!r}")
        for name in ("hidden", "steps", "batch_size", "eval_every", "encoder_hidden", "encoder_epochs",
                     "module_epochs", "lstm_hidden", "d_model", "n_layers", "n_heads", "n_eval", "per_pair_eval"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"n_heads={self.n_heads} must divide d_model={self.d_model}")

    @classmethod
    def quick(cls) -> "Config":
        return cls(steps=600, encoder_epochs=15, n_eval=1000, per_pair_eval=10)

    @classmethod
    def full(cls) -> "Config":
        return cls()


def _accuracy(model: nn.Module, x_a, x_b, y, batch: int = 4096) -> np.ndarray:
    """Per-example correctness (n,) bool, in evaluation mode (hard gates for the workspace model)."""
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x_a[i:i + batch], x_b[i:i + batch]).argmax(-1) for i in range(0, len(y), batch)])
    model.train()
    return (pred == y).numpy()


def routing_correct(gates: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Whether each hard gate sequence (B, T, 3) routes a to a + b: some Output call, an Input before the last
    one, and exactly b Increments between the last such Input and the last Output (with exact modules the
    answer is then a + b; other steps do not change it). (B,) bool."""
    choice = gates.argmax(-1)  # (B, T)
    steps = torch.arange(choice.shape[1]).expand_as(choice)
    never = torch.full_like(steps, -1)
    last_out = torch.where(choice == 2, steps, never).max(1).values  # -1: never
    before_out = steps < last_out.unsqueeze(1)
    last_in = torch.where((choice == 0) & before_out, steps, never).max(1).values
    between = before_out & (steps > last_in.unsqueeze(1))
    n_inc = ((choice == 1) & between).sum(1)
    return (last_out >= 0) & (last_in >= 0) & (n_inc == b)


def _routing(model: GlobalWorkspace, x_a, x_b, b: torch.Tensor) -> float:
    """Share of examples whose hard routing is correct (:func:`routing_correct`), whatever the modules compute."""
    model.eval()
    with torch.no_grad():
        model(x_a, x_b)
    model.train()
    return float(routing_correct(model.last_gates, b).float().mean())


def build_model(name: str, version: int, cfg: Config, modules: nn.Module | None = None) -> nn.Module:
    """One of MODELS for version 1 (one-hot digit tokens) or 2 (64-pixel image tokens); the workspace model
    routes through ``modules`` (HandModules / LearnedModules)."""
    in_dim, one_hot = (DIGITS, True) if version == 1 else (64, False)
    if name in (GW, GW_BLIND):
        if modules is None:
            raise ValueError("the global workspace model needs its modules")
        return GlobalWorkspace(modules, cfg.hidden, cfg.gate, cfg.tau, reads_workspace=name == GW)
    if name == LSTM:
        return LSTMBaseline(in_dim, cfg.lstm_hidden, cfg.size, one_hot)
    if name == TRANSFORMER:
        return TransformerBaseline(in_dim, cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.size, one_hot)
    raise ValueError(f"model name must be one of {MODELS}, got {name!r}")


def _train(name: str, model: nn.Module, batch_fn, cfg: Config, validate, progress: bool, desc: str):
    trainable = [p for p in model.parameters() if p.requires_grad]
    workspace = name in (GW, GW_BLIND)
    opt = torch.optim.AdamW(trainable, lr=cfg.lr if workspace else cfg.baseline_lr, weight_decay=cfg.weight_decay)
    loss_fn = nll_of_probs if workspace else F.cross_entropy
    history = train_steps(model, opt, loss_fn, batch_fn, cfg.steps, cfg.eval_every, validate=validate,
                          progress=progress, desc=desc)
    return {"loss": history.window_loss, "steps": history.window_end,
            "train_accuracy": [v["train_accuracy"] for v in history.val]}


class _ModuleTask(nn.Module):
    """A module's own objective, for pretraining: image -> In -> Increment (or Output) -> distribution (B, N)."""

    def __init__(self, modules: LearnedModules, which: str):
        super().__init__()
        self.mods, self.which = modules, which

    def forward(self, x):
        w = self.mods.read_input(x)
        return self.mods.increment(w) if self.which == "increment" else self.mods.read_out(w)


def pretrain_modules(modules: LearnedModules, pool: dict[int, np.ndarray], cfg: Config, seed: int,
                     progress: bool) -> dict[str, float]:
    """Pretrain version 2's modules on the training images, each on its own objective, through
    :func:`recurlab.train.loop.train_epochs`, then freeze them:

    1. the encoder E as a digit classifier (cross-entropy of its N logits against the digit);
    2. the Increment taps on "In(image of d) -> d + 1" for d + 1 <= train_max_sum (the training range);
    3. the Output taps on "In(image of d) -> d" (d <= train_max_sum).

    Returns the training accuracies of the three objectives."""
    from ..train.loop import TensorBatches, train_epochs

    def data(digits, offset):
        x = torch.as_tensor(np.concatenate([pool[d] for d in digits]))
        y = torch.cat([torch.full((len(pool[d]),), d + offset) for d in digits])
        return x, y

    accuracies = {}
    x, y = data(range(DIGITS), 0)
    opt = torch.optim.AdamW(modules.encoder.parameters(), lr=3e-3, weight_decay=cfg.weight_decay)
    batches = TensorBatches((x, y), 64, torch.Generator().manual_seed(seed))
    train_epochs(modules.encoder, opt, F.cross_entropy, batches, cfg.encoder_epochs, progress=progress,
                 desc="v2 encoder")
    modules.encoder.requires_grad_(False)
    with torch.no_grad():
        accuracies["encoder"] = float((modules.encoder(x).argmax(-1) == y).float().mean())
    for which, param, (xm, ym) in (("increment", modules.inc_logits, data(range(cfg.train_max_sum), 1)),
                                   ("output", modules.out_logits, data(range(cfg.train_max_sum + 1), 0))):
        task = _ModuleTask(modules, which)
        opt = torch.optim.Adam([param], lr=0.1)
        batches = TensorBatches((xm, ym), 64, torch.Generator().manual_seed(seed + 1))
        train_epochs(task, opt, nll_of_probs, batches, cfg.module_epochs, progress=progress, desc=f"v2 {which}")
        param.requires_grad_(False)
        with torch.no_grad():
            accuracies[which] = float((task(xm).argmax(-1) == ym).float().mean())
    return accuracies


def run_version(version: int, cfg: Config, seed: int, progress: bool) -> dict:
    """Train the three models of one version and measure every regime. Returns a dict of per-model metrics."""
    pairs = split_pairs(cfg.train_max_sum, cfg.n_holdout, seed)
    gen = torch.Generator().manual_seed(seed + 1000 * version)
    out: dict = {"pairs": pairs}
    if version == 1:
        torch.manual_seed(seed)
        modules = HandModules(cfg.size)
        tr = torch.tensor(pairs["train"])

        def batch_fn(step):
            idx = torch.randint(len(tr), (cfg.batch_size,), generator=gen)
            return tr[idx, 0], tr[idx, 1], tr[idx].sum(1)

        regimes = {k: (torch.tensor(v)[:, 0], torch.tensor(v)[:, 1], torch.tensor(v).sum(1)) for k, v in pairs.items()}
        grid = torch.tensor([(a, b) for a in range(DIGITS) for b in range(DIGITS)])
        grid_data = (grid[:, 0], grid[:, 1], grid.sum(1))
        train_eval = regimes["train"]
        b_of = {k: v[1] for k, v in regimes.items()}
    else:
        pool_train, pool_test = digit_pools(seed)
        torch.manual_seed(seed)
        modules = LearnedModules(cfg.size, cfg.encoder_hidden)
        out["pretrain_train_accuracy"] = pretrain_modules(modules, pool_train, cfg, seed, progress)
        test_x = torch.as_tensor(np.concatenate([pool_test[d] for d in range(DIGITS)]))
        test_y = torch.cat([torch.full((len(pool_test[d]),), d) for d in range(DIGITS)])
        with torch.no_grad():
            out["encoder_test_accuracy"] = float((modules.encoder(test_x).argmax(-1) == test_y).float().mean())

        def batch_fn(step):
            return image_pairs(pairs["train"], pool_train, cfg.batch_size, gen)

        eval_gen = torch.Generator().manual_seed(seed + 7)
        regimes, b_of = {}, {}
        for k, v in pairs.items():
            which = torch.randint(len(v), (cfg.n_eval,), generator=eval_gen)
            ab = torch.tensor(v)[which]
            xa, xb = torch.empty(cfg.n_eval, 64), torch.empty(cfg.n_eval, 64)
            for i, (a, b) in enumerate(ab.tolist()):
                xa[i] = torch.as_tensor(pool_test[a][torch.randint(len(pool_test[a]), (1,), generator=eval_gen)])
                xb[i] = torch.as_tensor(pool_test[b][torch.randint(len(pool_test[b]), (1,), generator=eval_gen)])
            regimes[k], b_of[k] = (xa, xb, ab.sum(1)), ab[:, 1]
        all_pairs = [(a, b) for a in range(DIGITS) for b in range(DIGITS)]
        xs = [image_pairs([p], pool_test, cfg.per_pair_eval, eval_gen) for p in all_pairs]
        grid_data = tuple(torch.cat([x[i] for x in xs]) for i in range(3))
        train_eval = image_pairs(pairs["train"], pool_train, cfg.n_eval, eval_gen)

    metrics = {}
    for name in MODELS:
        torch.manual_seed(seed)
        # each workspace model gets its own copy of the modules (version 2: the pretrained frozen encoder and
        # fresh Increment/Output taps)
        model = build_model(name, version, cfg, copy.deepcopy(modules))
        validate = (lambda m=model: {"train_accuracy": float(_accuracy(m, *train_eval).mean())})
        curves = _train(name, model, batch_fn, cfg, validate, progress, desc=f"v{version} {name}")
        m = {"params": n_params(model), "trainable_params": n_params(model, trainable_only=True), "curves": curves}
        for k, data in regimes.items():
            m[k] = float(_accuracy(model, *data).mean())
        ok = _accuracy(model, *grid_data)
        sums = grid_data[2].numpy()
        m["accuracy_by_sum"] = [float(ok[sums == s].mean()) for s in range(2 * DIGITS - 1)]
        if name in (GW, GW_BLIND):
            m["routing_correct"] = {k: _routing(model, data[0], data[1], b_of[k]) for k, data in regimes.items()}
            if version == 2:
                m["increment_taps"] = model.mods.inc_logits.softmax(0).tolist()
                m["output_taps"] = model.mods.out_logits.softmax(0).tolist()
        metrics[name] = m
    out["metrics"] = metrics
    return out


def _plot(results: dict, cfg: Config, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    sums = np.arange(2 * DIGITS - 1)
    for ax, version in zip(axes, (1, 2)):
        ax.axvspan(-0.5, cfg.train_max_sum + 0.5, color="0.9", label="training sums")
        for name, marker in zip(MODELS, "oxsd"):
            m = results[version]["metrics"][name]
            ax.plot(sums, m["accuracy_by_sum"], marker=marker, label=f"{name} ({m['params']:,} params)")
        ax.set_title(f"version {version}: " + ("hand-designed one-hot modules" if version == 1
                                                else "learned modules, 8x8 digit images"), fontsize=9)
        ax.set_xlabel("a + b")
        ax.set_xticks(sums)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    axes[0].set_ylabel("test accuracy (all pairs with this sum)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(quick: bool = False, out_dir=None, seed: int = 0, progress: bool = True, config: Config | None = None) -> RecipeResult:
    """Both versions: the workspace model, an LSTM and a Transformer; accuracy on held-out (interpolation) and
    larger (extrapolation) sums."""
    cfg = config or (Config.quick() if quick else Config.full())
    results = {v: run_version(v, cfg, seed, progress) for v in (1, 2)}
    scale = (f"sums <= {cfg.train_max_sum} minus {cfg.n_holdout} held-out pairs; {cfg.steps} steps x "
             f"{cfg.batch_size}; workspace N={cfg.size}, controller H={cfg.hidden}")
    rows = []
    for version, data in ((1, "one-hot digits"), (2, "8x8 digit images (sklearn)")):
        for regime in ("interpolation", "extrapolation"):
            for name in MODELS:
                m = results[version]["metrics"][name]
                paper = "claim: GW > LSTM, Transformer" if name == GW else "-"  # the paper reports no blind variant
                rows.append(ResultRow(f"v{version} {regime} accuracy, {name}", m[regime], paper,
                                      f"{data}; {scale}; {m['params']:,} params"))
    details = {"config": asdict(cfg)}
    for version in (1, 2):
        r = results[version]
        details[f"v{version}"] = {k: v for k, v in r.items()}
    result = RecipeResult(recipe="global_workspace", quick=quick, seed=seed, rows=rows, details=details)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / "global_workspace_accuracy_by_sum.png"
        _plot(results, cfg, path)
        result.files.append(str(path))
    return result
