"""MixER, a mixture of expert reconstructors for families of dynamical systems (Nzoyem, Barton, Deakin, "Towards
Foundational Models for Dynamical System Reconstruction: Hierarchical Meta-Learning via Mixture of Experts", 2025;
official code ddrous/MixER, JAX/Equinox), rebuilt at laptop scale on parametric ODE families integrated here.

The model (the paper's MixER layer as the official ``MixER`` vector field with ``split_context=True``):

    environments e = 1..E, each with a learned context xi_e in R^C (zeros at the start), C = K * c
    gate:    k(e) = argmax_k softmax([xi_e; 1]^T W)_k            W: (C + 1, K), top-1
    expert:  dx/dt = f_{k(e)}(x, xi_e[k(e)])                      xi_e[k]: the k-th of K pieces of size c
    rollout: x_hat(t_0) = x_0, x_hat(t_{i+1}) = RK4(f_{k(e)}, x_hat(t_i), dt)   (one RK4 step per sample)
    loss:    L = mean_{e, trajectories, i} ||x_hat(t_i) - x(t_i)||^2 + lambda * mean_e |xi_e|_1 / C

Only the chosen expert runs on an environment's trajectories and its output is not multiplied by the gate (as in
the official ``jax.lax.cond`` selection), so in MixER neither W nor the contexts get a gradient through the gate.
W is instead set by the gate update, run every ``gate_every`` gradient steps (official ``train_step_gates``):

    1. the loss of every expert k on every environment e (each expert rolled out with its context piece): L_ek
    2. K-means on the contexts with the L1 distance (mean |xi_e - m_j|) and mean centroid updates, warm-started from
       the previous centroids (random in [-1e-3, 1e-3] at first); an empty cluster or no convergence within
       ``kmeans_iters`` skips this update (and resets the centroids), as in the official code
    3. the median loss of every expert on every cluster: M_jk = median_{e in cluster j} L_ek
    4. greedy matching, cluster by cluster: cluster j takes the expert with the lowest M_jk not taken yet
    5. W = lstsq([xi + noise; 1], Y), Y_e = one-hot(expert of e's cluster), noise ~ N(0, noise^2)

Training alternates, as the official ``meta_train_gated``: every outer step runs ``inner_steps`` Adam steps on the
contexts only, then ``inner_steps`` Adam steps on the experts only (the gate update after every ``gate_every`` of
them). The gradient phases go through :func:`recurlab.train.loop.train_steps`: each phase is one call with
``eval_every = gate_every`` and the gate update as its ``validate`` hook (called after every window), so the recipe
has no loop of its own; the alternation between the two optimizers is the outer Python loop over those calls.
The loss is the official one: MSE of the full trajectory rolled out from its first state (not derivative
matching), plus the official 1e-3 L1 penalty on the contexts.

Baselines, trained with the same data, schedule and number of steps:
- gradient gate: the same experts and top-1 routing, with W a parameter trained in the expert phase. Because a hard
  top-1 choice passes no gradient, the chosen expert's output is scaled by p_k / stop_grad(p_k) (straight-through:
  the value is unchanged, the gradient reaches W and the contexts), plus the Switch load-balancing loss of
  recurlab's MoE layer (``recurlab.layers.moe.load_balancing_loss``, weight ``balance``) over the environments.
  The official "gradient_descent" mode applies softmax(W^T [xi; 1]) but its selected expert is not multiplied by
  the gate, so W would receive no gradient at all; we give it one.
- one network: a single context-conditioned vector field f(x, xi_e) for all environments (K = 1, the full context).

Data (:func:`ode_mixture`): 2-D ODE families integrated offline with the RK4 written here (10 sub-steps per sample,
float64). "hierarchical": Lotka-Volterra, FitzHugh-Nagumo and damped oscillators, ``envs_per_family`` environments
each, two parameters drawn per environment from family ranges; "related": one family (Lotka-Volterra) with
3 * ``envs_per_family`` environments whose parameters lie within +-``related_spread`` of one centre. Every environment
has ``n_train`` training and ``n_test`` test trajectories from random initial states; the metric is the MSE of the
full rollout of the test trajectories (new initial states, learned contexts), per family.

Why not a recurlab unit: recurlab's units are sequence (token) and channel mixers over hidden vectors, while the
experts here are vector fields f(x, xi) of a 2-D state integrated by RK4; recurlab's ``moe`` layer routes every token
by a router on the token with renormalised top-k gates (identically 1 for top-1, so no router gradient besides the
balancing loss), while MixER routes whole environments by their contexts. The experts are small SiLU MLPs
(official: GEPS/CoDA/NCF experts of width 256, depth 4; swish activation).

Deviations (also in docs/recipes/mixer_dsr.md): Adam instead of AdaBelief; no proximal terms (official
proximal_betas = 10); all environments in every step (official: 3 "nearest" contributors, self-reweighted);
no adaptation to new environments; hundreds instead of 5000 x 24 steps; tiny experts; our own ODE parameter ranges.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..layers.moe import load_balancing_loss
from ..train.loop import train_steps
from .common import RecipeResult, ResultRow

PAPER = ("Nzoyem, Barton, Deakin, Towards Foundational Models for Dynamical System Reconstruction: Hierarchical "
         "Meta-Learning via Mixture of Experts (MixER), 2025")

METHODS = ("mixer", "gradient_gate", "one_network")
METHOD_NAMES = {"mixer": "MixER", "gradient_gate": "gradient gate", "one_network": "one network"}

# ----------------------------------------------------------------------------- RK4 and the ODE families


def rk4_step(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, dt: float) -> torch.Tensor:
    """One classical Runge-Kutta step of the autonomous ODE dx/dt = f(x)."""
    k1 = f(x)
    k2 = f(x + 0.5 * dt * k1)
    k3 = f(x + 0.5 * dt * k2)
    k4 = f(x + dt * k3)
    return x + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)


def integrate(f: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor, dt: float, n_steps: int,
              substeps: int = 1) -> torch.Tensor:
    """Fixed-step RK4 from x0 (B, D): the states at t = 0, dt, ..., n_steps*dt as (B, n_steps + 1, D),
    each sample reached by ``substeps`` RK4 steps of size dt / substeps."""
    if x0.ndim != 2:
        raise ValueError(f"x0 must be (B, D), got shape {tuple(x0.shape)}")
    if dt <= 0 or n_steps < 1 or substeps < 1:
        raise ValueError(f"need dt > 0, n_steps >= 1, substeps >= 1; got dt={dt}, n_steps={n_steps}, "
                         f"substeps={substeps}")
    h = dt / substeps
    states, x = [x0], x0
    for _ in range(n_steps):
        for _ in range(substeps):
            x = rk4_step(f, x, h)
        states.append(x)
    return torch.stack(states, dim=1)


def _lotka_volterra(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    # dx = a x - b x y, dy = c x y - d y with a = d = 1; p = (b, c)
    b, c = p[:, 0], p[:, 1]
    u, v = x[:, 0], x[:, 1]
    return torch.stack([u - b * u * v, c * u * v - v], 1)


def _fitzhugh_nagumo(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    # dv = v - v^3/3 - w + I, dw = eps (v + 0.7 - 0.8 w); p = (I, eps)
    current, eps = p[:, 0], p[:, 1]
    v, w = x[:, 0], x[:, 1]
    return torch.stack([v - v ** 3 / 3 - w + current, eps * (v + 0.7 - 0.8 * w)], 1)


def _damped_oscillator(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    # dx = v, dv = -omega^2 x - 2 zeta omega v; p = (omega, zeta)
    omega, zeta = p[:, 0], p[:, 1]
    q, v = x[:, 0], x[:, 1]
    return torch.stack([v, -omega ** 2 * q - 2 * zeta * omega * v], 1)


# name -> (vector field, parameter ranges [(low, high)] * 2, initial-state box (low, high))
FAMILIES: dict[str, tuple[Callable, tuple[tuple[float, float], ...], tuple[float, float]]] = {
    "lotka_volterra": (_lotka_volterra, ((0.75, 1.25), (0.75, 1.25)), (0.5, 2.0)),
    "fitzhugh_nagumo": (_fitzhugh_nagumo, ((0.3, 0.7), (0.2, 0.4)), (-1.5, 1.5)),
    "damped_oscillator": (_damped_oscillator, ((1.0, 2.0), (0.05, 0.25)), (-1.5, 1.5)),
}
RELATED_FAMILY = "lotka_volterra"


def ode_mixture(kind: str, *, envs_per_family: int, n_train: int, n_test: int, n_steps: int, dt: float,
                seed: int, related_spread: float = 0.05, substeps: int = 10) -> dict:
    """A seeded mixture of ODE environments, integrated offline with RK4.

    Args:
        kind: "hierarchical" (every family of :data:`FAMILIES`, ``envs_per_family`` environments each, parameters
            uniform in the family's ranges) or "related" (``len(FAMILIES) * envs_per_family`` environments of
            :data:`RELATED_FAMILY`, parameters uniform within +-related_spread of the centre of its ranges).
        n_train, n_test: trajectories per environment (initial states uniform in the family's box).
        n_steps, dt: samples at t = 0, dt, ..., n_steps * dt.

    Returns:
        dict with "train" (E, n_train, n_steps + 1, 2) and "test" (E, n_test, n_steps + 1, 2) float32 tensors,
        "family" (E,) int64 family index, "families" (names), "params" (E, 2) float64 and "t" (n_steps + 1,).
    """
    if kind not in ("hierarchical", "related"):
        raise ValueError(f"kind must be 'hierarchical' or 'related', got {kind!r}")
    if envs_per_family < 1 or n_train < 1 or n_test < 1:
        raise ValueError(f"envs_per_family, n_train, n_test must be >= 1, got {envs_per_family}, {n_train}, {n_test}")
    if not 0 <= related_spread <= 0.5:
        raise ValueError(f"related_spread must be in [0, 0.5], got {related_spread}")
    rng = np.random.default_rng(seed)
    if kind == "hierarchical":
        families = list(FAMILIES)
        family = np.repeat(np.arange(len(families)), envs_per_family)
    else:
        families = [RELATED_FAMILY]
        family = np.zeros(len(FAMILIES) * envs_per_family, dtype=np.int64)
    params = np.zeros((len(family), 2))
    for e, fam in enumerate(family):
        ranges = FAMILIES[families[fam]][1]
        for j, (lo, hi) in enumerate(ranges):
            if kind == "related":
                mid = (lo + hi) / 2
                lo, hi = mid * (1 - related_spread), mid * (1 + related_spread)
            params[e, j] = rng.uniform(lo, hi)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        trajs = []
        for e, fam in enumerate(family):
            field, _, (lo, hi) = FAMILIES[families[fam]]
            x0 = torch.as_tensor(rng.uniform(lo, hi, size=(n, 2)))
            p = torch.as_tensor(params[e]).expand(n, 2)
            trajs.append(integrate(lambda x, p=p, field=field: field(x, p), x0, dt, n_steps, substeps))
        out[split] = torch.stack(trajs).float()
    return {**out, "family": torch.as_tensor(family, dtype=torch.long), "families": families, "params": params,
            "t": torch.arange(n_steps + 1) * dt}


# ----------------------------------------------------------------------------- the gate update


def kmeans_l1(points: torch.Tensor, centroids: torch.Tensor, max_iter: int = 20,
              tol: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor, str]:
    """K-means with the L1 (mean absolute) distance and mean centroid updates, as the official gate update.

    points: (N, C); centroids: (K, C) initial. Returns (assignments (N,) int64, centroids (K, C), status) with status
    "converged" (all centroids moved less than tol), "empty" (a cluster lost all points: stopped there) or
    "not_converged" (max_iter iterations).
    """
    if points.ndim != 2 or centroids.ndim != 2 or points.shape[1] != centroids.shape[1]:
        raise ValueError(f"points must be (N, C) and centroids (K, C), got {tuple(points.shape)} and "
                         f"{tuple(centroids.shape)}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    for _ in range(max_iter):
        old = centroids
        assign = (points[:, None, :] - centroids[None, :, :]).abs().mean(-1).argmin(-1)
        counts = torch.bincount(assign, minlength=len(centroids))
        if (counts == 0).any():
            return assign, centroids, "empty"
        centroids = torch.stack([points[assign == j].mean(0) for j in range(len(centroids))])
        if torch.allclose(centroids, old, atol=tol, rtol=0):
            return assign, centroids, "converged"
    return assign, centroids, "not_converged"


def match_clusters(cluster_losses: torch.Tensor) -> list[int]:
    """Greedy cluster -> expert matching: cluster j (in order) takes the expert with the lowest loss
    cluster_losses[j] among those not taken. cluster_losses: (K clusters, K experts)."""
    if cluster_losses.ndim != 2 or cluster_losses.shape[0] > cluster_losses.shape[1]:
        raise ValueError(f"cluster_losses must be (clusters, experts) with clusters <= experts, got "
                         f"{tuple(cluster_losses.shape)}")
    taken: list[int] = []
    for row in cluster_losses:
        taken.append(next(int(k) for k in torch.argsort(row, stable=True) if int(k) not in taken))
    return taken


@dataclass
class GateUpdate:
    status: str  # "updated", or the K-means status that skipped the update ("empty", "not_converged")
    weight: torch.Tensor | None  # the new W (C + 1, K), None when skipped
    assignments: torch.Tensor  # (E,) cluster of every environment
    centroids: torch.Tensor | None  # to warm-start the next K-means (None after a skip, as official)
    experts: list[int]  # expert matched to every cluster (empty when skipped)


def gate_update(contexts: torch.Tensor, expert_losses: torch.Tensor, centroids: torch.Tensor | None,
                generator: torch.Generator, noise: float = 1e-4, kmeans_iters: int = 20,
                tol: float = 1e-4) -> GateUpdate:
    """MixER's gate update: K-means (L1) on the contexts, median loss per (cluster, expert), greedy matching and
    W = lstsq([contexts + noise; 1], one-hot targets).

    contexts: (E, C); expert_losses: (E, K) the loss of every expert on every environment; centroids: (K, C) from the
    previous update or None (then uniform in [-1e-3, 1e-3] from ``generator``, which also draws the noise).
    """
    if contexts.ndim != 2 or expert_losses.ndim != 2 or expert_losses.shape[0] != contexts.shape[0]:
        raise ValueError(f"contexts must be (E, C) and expert_losses (E, K), got {tuple(contexts.shape)} and "
                         f"{tuple(expert_losses.shape)}")
    ctx = contexts.detach().double()
    n_envs, size = ctx.shape
    n_experts = expert_losses.shape[1]
    if centroids is None:
        centroids = (torch.rand(n_experts, size, generator=generator, dtype=torch.float64) * 2 - 1) * 1e-3
    assign, centroids, status = kmeans_l1(ctx, centroids.double(), kmeans_iters, tol)
    if status != "converged":
        return GateUpdate(status, None, assign, None, [])
    losses = expert_losses.detach().double()
    medians = torch.stack([losses[assign == j].quantile(0.5, dim=0) for j in range(n_experts)])
    experts = match_clusters(medians)
    y = F.one_hot(torch.as_tensor(experts)[assign], n_experts).double()
    x = ctx + noise * torch.randn(ctx.shape, generator=generator, dtype=torch.float64)
    x = torch.cat([x, torch.ones(n_envs, 1, dtype=torch.float64)], 1)
    weight = torch.linalg.lstsq(x, y).solution
    return GateUpdate("updated", weight, assign, centroids, experts)


# ----------------------------------------------------------------------------- the model


class VectorField(nn.Module):
    """f(x, xi) = MLP([x; xi]): SiLU MLP of ``depth`` hidden layers of ``width``."""

    def __init__(self, state_dim: int, context_dim: int, width: int, depth: int):
        super().__init__()
        dims = [state_dim + context_dim] + [width] * depth
        layers: list[nn.Module] = []
        for a, b in zip(dims, dims[1:]):
            layers += [nn.Linear(a, b), nn.SiLU()]
        self.net = nn.Sequential(*layers, nn.Linear(dims[-1], state_dim))

    def forward(self, x: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, ctx], -1))


class MixtureODE(nn.Module):
    """K context-conditioned vector fields with a top-1 gate on the environments' contexts.

    gate: "lstsq" (MixER: W a buffer set by :func:`gate_update`), "gradient" (W a parameter; straight-through
    scaling and balancing loss) or "none" (K must be 1: one network with the full context).
    Called as model(env (B,), x0 (B, D)) -> rollout (B, n_steps + 1, D).
    """

    def __init__(self, n_envs: int, n_experts: int, context_size: int, width: int, depth: int, dt: float,
                 n_steps: int, gate: str, state_dim: int = 2):
        super().__init__()
        if gate not in ("lstsq", "gradient", "none"):
            raise ValueError(f"gate must be 'lstsq', 'gradient' or 'none', got {gate!r}")
        if (gate == "none") != (n_experts == 1):
            raise ValueError(f"gate='none' goes with n_experts=1 and a gate with n_experts > 1; got gate={gate!r}, "
                             f"n_experts={n_experts}")
        if context_size % n_experts:
            raise ValueError(f"context_size ({context_size}) must be a multiple of n_experts ({n_experts})")
        self.n_experts, self.gate_kind, self.dt, self.n_steps = n_experts, gate, dt, n_steps
        self.piece = context_size // n_experts
        self.contexts = nn.Parameter(torch.zeros(n_envs, context_size))  # official: zeros
        first = VectorField(state_dim, self.piece, width, depth)
        self.experts = nn.ModuleList([first] + [VectorField(state_dim, self.piece, width, depth)
                                                for _ in range(n_experts - 1)])
        for expert in self.experts[1:]:  # official same_expert_init=True: every expert starts as the first
            expert.load_state_dict(first.state_dict())
        lim = 1 / math.sqrt(context_size + 1)
        weight = (torch.rand(context_size + 1, n_experts) * 2 - 1) * lim
        if gate == "gradient":
            self.gate_weight = nn.Parameter(weight)
        else:
            self.register_buffer("gate_weight", weight)
        self.aux_loss = torch.zeros(())

    def gate_probs(self, ctx: torch.Tensor) -> torch.Tensor:
        """softmax([xi; 1]^T W): (B, C) -> (B, K)."""
        return torch.softmax(torch.cat([ctx, torch.ones_like(ctx[:, :1])], 1) @ self.gate_weight, -1)

    def routing(self) -> torch.Tensor:
        """The expert chosen for every environment, (E,)."""
        with torch.no_grad():
            return self.gate_probs(self.contexts).argmax(-1)

    def rollout_expert(self, k: int, env: torch.Tensor, x0: torch.Tensor,
                       scale: torch.Tensor | None = None) -> torch.Tensor:
        """Expert k's rollout of x0 (B, D) with the environments' context pieces k; scale (B,) multiplies f."""
        ctx = self.contexts[env, k * self.piece:(k + 1) * self.piece]
        expert = self.experts[k]
        if scale is None:
            return integrate(lambda x: expert(x, ctx), x0, self.dt, self.n_steps)
        s = scale[:, None]
        return integrate(lambda x: s * expert(x, ctx), x0, self.dt, self.n_steps)

    def forward(self, env: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        if env.ndim != 1 or x0.ndim != 2 or env.shape[0] != x0.shape[0]:
            raise ValueError(f"env must be (B,) and x0 (B, D), got {tuple(env.shape)} and {tuple(x0.shape)}")
        if self.n_experts == 1:
            return self.rollout_expert(0, env, x0)
        probs = self.gate_probs(self.contexts[env])
        chosen = probs.argmax(-1)
        scale = None
        if self.gate_kind == "gradient":
            p = probs.gather(1, chosen[:, None]).squeeze(1)
            scale = p / p.detach()  # 1 in value, d/dW through p (straight-through top-1)
            env_probs = self.gate_probs(self.contexts[torch.unique(env)])
            self.aux_loss = load_balancing_loss(env_probs, env_probs.argmax(-1, keepdim=True), self.n_experts)
        out = x0.new_zeros(x0.shape[0], self.n_steps + 1, x0.shape[1])
        for k in range(self.n_experts):
            rows = torch.nonzero(chosen == k).squeeze(1)
            if rows.numel() == 0:
                continue
            part = self.rollout_expert(k, env[rows], x0[rows], None if scale is None else scale[rows])
            out = out.index_copy(0, rows, part)
        return out

    @torch.no_grad()
    def expert_losses(self, env: torch.Tensor, x0: torch.Tensor, target: torch.Tensor, n_envs: int) -> torch.Tensor:
        """(n_envs, K): the trajectory MSE of every expert on every environment."""
        out = torch.zeros(n_envs, self.n_experts, dtype=torch.float64)
        counts = torch.bincount(env, minlength=n_envs).double().clamp(min=1)
        for k in range(self.n_experts):
            per_traj = (self.rollout_expert(k, env, x0) - target).pow(2).flatten(1).mean(1).double()
            out[:, k] = torch.zeros(n_envs, dtype=torch.float64).index_add_(0, env, per_traj) / counts
        return out


# ----------------------------------------------------------------------------- the recipe


@dataclass
class Config:
    envs_per_family: int = 4  # hierarchical: 3 families x 4; related: 12 environments of one family
    n_train: int = 4  # training trajectories per environment
    n_test: int = 4
    n_steps: int = 25
    dt: float = 0.2
    related_spread: float = 0.05  # related mixture: parameters within +-5% of one centre
    n_experts: int = 3
    context_size: int = 6  # split into n_experts pieces for the experts (official split_context)
    width: int = 48
    depth: int = 2
    outer_steps: int = 30
    inner_steps: int = 10  # per phase (contexts, then experts); official 12
    gate_every: int = 5  # official gate_update_every
    lr: float = 3e-3
    ctx_l1: float = 1e-3  # official context regularisation
    balance: float = 0.01  # gradient gate: weight of the Switch balancing loss
    gate_noise: float = 1e-4
    kmeans_iters: int = 20
    kmeans_tol: float = 1e-4
    grad_clip: float = 1.0

    def __post_init__(self):
        for name in ("envs_per_family", "n_train", "n_test", "n_steps", "n_experts", "context_size", "width",
                     "depth", "outer_steps", "inner_steps", "gate_every", "kmeans_iters"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"Config.{name} must be a positive int, got {getattr(self, name)!r}")
        if self.context_size % self.n_experts:
            raise ValueError(f"Config.context_size ({self.context_size}) must be a multiple of n_experts "
                             f"({self.n_experts})")
        for name in ("dt", "lr"):
            if getattr(self, name) <= 0:
                raise ValueError(f"Config.{name} must be > 0, got {getattr(self, name)}")

    @classmethod
    def quick(cls) -> "Config":
        return cls(outer_steps=6, width=32)

    @classmethod
    def full(cls) -> "Config":
        return cls()


def _flat(traj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(E, N, T, D) -> env (E*N,), x0 (E*N, D), target (E*N, T, D)."""
    n_envs, n = traj.shape[:2]
    flat = traj.reshape(n_envs * n, *traj.shape[2:])
    return torch.arange(n_envs).repeat_interleave(n), flat[:, 0], flat


def train_model(method: str, data: dict, cfg: Config, seed: int, bar=None) -> tuple[MixtureODE, dict]:
    """Train one method ("mixer", "gradient_gate", "one_network") on data["train"] with the alternating schedule
    (contexts phase, experts phase) through :func:`train_steps`. Returns the model and its history."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    n_envs = data["train"].shape[0]
    torch.manual_seed(seed)
    if method == "one_network":
        model = MixtureODE(n_envs, 1, cfg.context_size, cfg.width, cfg.depth, cfg.dt, cfg.n_steps, "none")
    else:
        model = MixtureODE(n_envs, cfg.n_experts, cfg.context_size, cfg.width, cfg.depth, cfg.dt, cfg.n_steps,
                           "lstsq" if method == "mixer" else "gradient")
    env, x0, target = _flat(data["train"])
    batch = (env, x0, target)
    generator = torch.Generator().manual_seed(seed + 1)
    state: dict = {"centroids": None, "status": []}
    model_params = list(model.experts.parameters()) + ([model.gate_weight] if method == "gradient_gate" else [])
    opt_ctx = torch.optim.Adam([model.contexts], lr=cfg.lr)
    opt_model = torch.optim.Adam(model_params, lr=cfg.lr)

    def loss_fn(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = F.mse_loss(out, y) + cfg.ctx_l1 * model.contexts.abs().mean()
        if method == "gradient_gate":
            loss = loss + cfg.balance * model.aux_loss
        return loss

    def update_gate() -> dict[str, float]:
        losses = model.expert_losses(env, x0, target, n_envs)
        upd = gate_update(model.contexts, losses, state["centroids"], generator, cfg.gate_noise, cfg.kmeans_iters,
                          cfg.kmeans_tol)
        state["centroids"] = upd.centroids
        state["status"].append(upd.status)
        if upd.weight is not None:
            model.gate_weight.copy_(upd.weight.to(model.gate_weight.dtype))
        return {"gate_updated": float(upd.status == "updated")}

    history = {"loss": [], "routing": []}
    for outer in range(cfg.outer_steps):
        for params, opt in (([model.contexts], opt_ctx), (model_params, opt_model)):
            for p in model.parameters():
                p.requires_grad_(False)
            for p in params:
                p.requires_grad_(True)
            h = train_steps(model, opt, loss_fn, lambda s: batch, cfg.inner_steps,
                            cfg.gate_every if method == "mixer" else cfg.inner_steps,
                            validate=update_gate if method == "mixer" else None, grad_clip=cfg.grad_clip)
            history["loss"] += h.step_loss
            if bar is not None:
                bar.update(cfg.inner_steps)
                bar.set_postfix(method=METHOD_NAMES[method], loss=f"{h.step_loss[-1]:.4f}", refresh=False)
        history["routing"].append(model.routing().tolist())
    for p in model.parameters():
        p.requires_grad_(True)
    history["gate_updates"] = {s: state["status"].count(s) for s in sorted(set(state["status"]))}
    return model, history


def evaluate(model: MixtureODE, data: dict, split: str = "test") -> dict:
    """Rollout MSE per environment and per family, the routing and its purity."""
    env, x0, target = _flat(data[split])
    model.eval()
    with torch.no_grad():
        per_traj = (model(env, x0) - target).pow(2).flatten(1).mean(1)
    n_envs = data[split].shape[0]
    per_env = torch.zeros(n_envs).index_add_(0, env, per_traj) / data[split].shape[1]
    family = data["family"]
    per_family = {name: float(per_env[family == f].mean()) for f, name in enumerate(data["families"])}
    routing = model.routing()
    return {"mse": float(per_env.mean()), "mse_per_family": per_family, "mse_per_env": per_env.tolist(),
            "routing": routing.tolist(), "purity": gate_purity(routing, family),
            "experts_used": int(len(torch.unique(routing)))}


def gate_purity(routing: torch.Tensor, family: torch.Tensor) -> float:
    """Cluster purity of the routing: sum over experts of its most common family's count, over all environments."""
    if routing.shape != family.shape:
        raise ValueError(f"routing and family must have the same shape, got {tuple(routing.shape)}, "
                         f"{tuple(family.shape)}")
    total = 0
    for k in torch.unique(routing):
        total += int(torch.bincount(family[routing == k]).max())
    return total / len(family)


def _plot(data: dict, models: dict, results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hier, rel = data["hierarchical"], data["related"]
    panels = [("hierarchical", int((hier["family"] == f).nonzero()[0]), name) for f, name in enumerate(hier["families"])]
    panels.append(("related", 0, f"related: {rel['families'][0]}"))
    fig, axes = plt.subplots(2, 4, figsize=(18, 8))
    colors = {"mixer": "C0", "gradient_gate": "C1", "one_network": "C2"}
    for ax, (kind, e, title) in zip(axes[0], panels):
        true = data[kind]["test"][e, 0]
        ax.plot(true[:, 0], true[:, 1], "k-", lw=2.5, label="true")
        for method, model in models[kind].items():
            with torch.no_grad():
                pred = model(torch.tensor([e]), true[:1, :])[0]
            ax.plot(pred[:, 0], pred[:, 1], "--", color=colors[method], label=METHOD_NAMES[method])
        ax.set_title(f"{title} (env {e}, test trajectory)", fontsize=9)
        ax.set_xlabel("x1")
        ax.set_ylabel("x2")
        ax.legend(fontsize=7)
    for ax, (kind, method) in zip(axes[1], [("hierarchical", "mixer"), ("hierarchical", "gradient_gate"),
                                            ("related", "mixer"), ("related", "gradient_gate")]):
        r = results[kind][method]
        n_envs = len(r["routing"])
        mat = np.zeros((n_envs, len(models[kind][method].experts)))
        mat[np.arange(n_envs), r["routing"]] = 1
        ax.imshow(mat, cmap="Blues", aspect="auto", vmin=0, vmax=1)
        fam = data[kind]["family"].tolist()
        ax.set_yticks(range(n_envs), [f"{data[kind]['families'][f][:6]} {e}" for e, f in enumerate(fam)], fontsize=6)
        ax.set_xticks(range(mat.shape[1]), [f"expert {k}" for k in range(mat.shape[1])], fontsize=7)
        ax.set_title(f"{kind}: {METHOD_NAMES[method]} gate (purity {r['purity']:.2f})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(quick: bool = False, out_dir=None, seed: int = 0, progress: bool = True, config: Config | None = None) -> RecipeResult:
    """Train MixER, the gradient gate and one network on a hierarchical and a related ODE mixture; report the
    test rollout MSE per family and the gate purity."""
    cfg = config or (Config.quick() if quick else Config.full())
    data = {kind: ode_mixture(kind, envs_per_family=cfg.envs_per_family, n_train=cfg.n_train, n_test=cfg.n_test,
                              n_steps=cfg.n_steps, dt=cfg.dt, seed=seed + i, related_spread=cfg.related_spread)
            for i, kind in enumerate(("hierarchical", "related"))}
    total = 2 * len(METHODS) * cfg.outer_steps * 2 * cfg.inner_steps
    bar = tqdm(total=total, desc="mixer_dsr", unit="step", disable=not progress, dynamic_ncols=True)
    models: dict = {"hierarchical": {}, "related": {}}
    results: dict = {"hierarchical": {}, "related": {}}
    histories: dict = {"hierarchical": {}, "related": {}}
    for kind in ("hierarchical", "related"):
        for method in METHODS:
            bar.set_description(f"mixer_dsr {kind}")
            model, hist = train_model(method, data[kind], cfg, seed, bar)
            models[kind][method] = model
            histories[kind][method] = hist
            results[kind][method] = {**evaluate(model, data[kind], "test"),
                                     "train_mse": evaluate(model, data[kind], "train")["mse"],
                                     "gate_updates": hist["gate_updates"], "final_loss": hist["loss"][-1]}
    bar.close()

    steps = cfg.outer_steps * 2 * cfg.inner_steps
    scale = (f"{cfg.envs_per_family * 3} envs, {cfg.n_train} train / {cfg.n_test} test trajectories each, "
             f"{cfg.n_steps} RK4 steps of dt={cfg.dt}; K={cfg.n_experts} SiLU MLP experts {cfg.width}x{cfg.depth}, "
             f"{steps} Adam steps")
    h, r = results["hierarchical"], results["related"]
    rows = []
    for method in METHODS:
        rows.append(ResultRow(f"hierarchical: test rollout MSE, {METHOD_NAMES[method]}", h[method]["mse"], "-",
                              scale, ".4g"))
    for fam in data["hierarchical"]["families"]:
        for method in METHODS:
            rows.append(ResultRow(f"hierarchical: {fam} MSE, {METHOD_NAMES[method]}",
                                  h[method]["mse_per_family"][fam], "-", scale, ".4g"))
    rows += [
        ResultRow("hierarchical: gate purity, MixER", h["mixer"]["purity"], "-", scale, ".3f"),
        ResultRow("hierarchical: gate purity, gradient gate", h["gradient_gate"]["purity"], "-", scale, ".3f"),
        ResultRow("hierarchical: MSE ratio MixER / gradient gate", h["mixer"]["mse"] / h["gradient_gate"]["mse"],
                  "< 1 (claim: MixER beats gradient gating)", scale, ".3f"),
    ]
    for method in METHODS:
        rows.append(ResultRow(f"related: test rollout MSE, {METHOD_NAMES[method]}", r[method]["mse"], "-",
                              scale.replace(f"{cfg.envs_per_family * 3} envs", f"{cfg.envs_per_family * 3} "
                                            f"{RELATED_FAMILY} envs"), ".4g"))
    rows += [
        ResultRow("related: experts used, MixER", r["mixer"]["experts_used"], "-", scale, ".0f"),
        ResultRow("related: MSE ratio MixER / one network", r["mixer"]["mse"] / r["one_network"]["mse"],
                  "> 1 (claim: MixER underperforms on related data)", scale, ".3f"),
        ResultRow("related: MSE ratio MixER / gradient gate", r["mixer"]["mse"] / r["gradient_gate"]["mse"], "-",
                  scale, ".3f"),
    ]
    result = RecipeResult(recipe="mixer_dsr", quick=quick, seed=seed, rows=rows,
                          details={"config": asdict(cfg), "results": results,
                                   "params": {k: data[k]["params"].tolist() for k in data},
                                   "families": {k: data[k]["family"].tolist() for k in data},
                                   "routing_history": {k: {m: histories[k][m]["routing"] for m in METHODS}
                                                       for k in histories}})
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / "mixer_dsr.png"
        _plot(data, models, results, path)
        result.files.append(str(path))
    return result
