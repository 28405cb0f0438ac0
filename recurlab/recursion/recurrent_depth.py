"""Recurrent depth: a prelude, one core block looped a sampled number of times, and a coda.

Geiping et al. 2025, "Scaling up Test-Time Compute with Latent Reasoning: A Recurrent Depth
Approach" (the Huginn-0125 3.5B model; official code seal-rg/recurrent-pretraining). With x the
embedded tokens (B, T, d):

    e   = P(x)                                    prelude: distinct blocks, applied once
    s_0 ~ TruncNormal(0, σ_init², ±3σ_init)       one random latent per token and channel
    s_i = R(e, s_{i-1}) = N_c(core(A([s_{i-1}; e])))   i = 1..r, input injection every iteration
    y   = C(s_r)                                  coda: distinct blocks, applied once

A = Linear(2d -> d, no bias) is the adapter, core is a list of blocks applied in order.

Training (the paper's Sec. 3.3): the iteration count is sampled per step,

    τ ~ LogNormal(log r̄ - σ²/2, σ),  r = Poisson(τ) + 1,  σ = 0.5,

so that E[τ] = r̄ and E[r] = r̄ + 1 (as the official sampler draws it), and gradients flow only through
the last k = min(r, backprop_depth) iterations: the first r - k run under ``torch.no_grad`` (the
paper's truncated backpropagation). At test time ``num_iterations`` (default ``mean_iterations``)
fixes r; it may differ from training, which is the point of the model (test-time compute).

Choices where recurlab differs from or completes the paper:

- Norms. Huginn's blocks are "sandwich" blocks, x = n2(x + attn(n1 x)); x = n4(x + mlp(n3 x)),
  and its coda reads ln_f(s_r). recurlab's :class:`~recurlab.models.block.Block` is pre-norm
  (x + f(norm x)), whose residual stream grows with every application, which a loop of unknown
  length cannot afford. So the core output goes through one RMSNorm N_c at every iteration (the
  role of the last core block's n4 in Huginn): the latent keeps a fixed scale however many times
  the core runs, and N_c is also the ``norm`` in y = coda(norm(s_r)).
- Initial latent at test time. Training draws s_0 from the global RNG as the paper does. In eval,
  ``test_init_std`` (default: ``init_std``) sets its scale; 0 gives the zero state. With
  ``init_seed`` set, s_0 at absolute position t is a fixed function of (init_seed, t), the same
  for every batch row - so a parallel prefill, token-by-token decoding, the parallel sampler and
  any batching of the sequences all see the same s_0 - otherwise it comes from the global RNG (the paper's behaviour).
- Decoding state (as Huginn's KV cache, which keys its entries by a block index that runs over
  prelude blocks, then over every (iteration, core block) pair, then over coda blocks): iteration i
  of the core at a new token continues iteration i's state from the earlier tokens. The state is a
  :class:`RecurrentDepthState`: prelude block states, ``core[i][l]`` for iteration i and core block
  l, coda block states, the iteration count (None until the first call fixes it) and the number of
  tokens seen. Decoding must use the count of the prefill: ``step`` continues with the state's
  count, and an explicit ``num_iterations`` that disagrees raises a ValueError.

Compute per token: ``len(prelude) + r * len(core) + len(coda)`` block applications
(:meth:`RecurrentDepth.blocks_per_token`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..models.block import Block, check_self_contained, config_block
from ..models.depth import DepthModule, register_depth
from ..state import State


@dataclass(frozen=True)
class RecurrentDepthState(State):
    """Decoding state of :class:`RecurrentDepth`.

    Attributes:
        prelude: one state per prelude block.
        core: ``core[i][l]`` is the state of core block l at iteration i (i < num_iterations).
        coda: one state per coda block.
        num_iterations: the core iteration count of this state; None before the first token (the first
            call fixes it: sampled in training, ``num_iterations`` otherwise).
        position: number of tokens processed so far (the absolute position of the next token).
    """

    prelude: tuple
    core: tuple
    coda: tuple
    num_iterations: int | None = None
    position: int = 0


@register_depth("recurrent_depth", tiny={"n_layers": 3, "depth_kwargs": {"mean_iterations": 2, "init_seed": 0}})
class RecurrentDepth(DepthModule):
    """Prelude -> core looped r times with input injection -> coda (Geiping et al. 2025).

    Args:
        prelude, core, coda: lists of :class:`Block` (prelude and coda may be empty, core may not).
        mean_iterations: r̄, the mean of the training iteration distribution and the default
            test-time ``num_iterations``.
        backprop_depth: k, the number of last iterations that receive gradients in training.
        init_std: σ_init of the truncated-normal initial latent in training (0: zero state).
        sigma: σ of the log-normal rate of the iteration sampler (0.5 in the paper).
        test_init_std: σ_init at test time (None: ``init_std``; 0: the zero state).
        init_seed: when set, the test-time s_0 is a deterministic function of (seed, position).
        norm_eps: epsilon of the core-output RMSNorm.

    Shapes: ``forward(x (B, T, d), state) -> (y (B, T, d), state)``;
    ``step(x_t (B, d), state) -> (y_t (B, d), state)``.
    """

    state_type = RecurrentDepthState

    def __init__(self, prelude: list[Block], core: list[Block], coda: list[Block], mean_iterations: int = 8,
                 backprop_depth: int = 4, init_std: float = 1.0, sigma: float = 0.5,
                 test_init_std: float | None = None, init_seed: int | None = None, norm_eps: float = 1e-5):
        for name, blocks in (("prelude", prelude), ("core", core), ("coda", coda)):
            if not isinstance(blocks, (list, tuple)) or not all(isinstance(b, Block) for b in blocks):
                raise ValueError(f"{name} must be a list of recurlab Blocks (see recurlab.models.make_block), "
                                 f"got {type(blocks).__name__}")
        if not core:
            raise ValueError("core must hold at least one Block")
        d_model = core[0].mixer.d_model
        super().__init__(d_model)
        for name, blocks in (("prelude", prelude), ("core", core), ("coda", coda)):
            check_self_contained(blocks, name, type(self).registry_name)
        for name, blocks in (("prelude", prelude), ("core", core), ("coda", coda)):
            for b in blocks:
                if b.mixer.d_model != d_model:
                    raise ValueError(f"every block must have d_model={d_model}; a {name} block has {b.mixer.d_model}")
        if not isinstance(mean_iterations, int) or mean_iterations < 1:
            raise ValueError(f"mean_iterations must be an int >= 1, got {mean_iterations!r}")
        if not isinstance(backprop_depth, int) or backprop_depth < 1:
            raise ValueError(f"backprop_depth must be an int >= 1, got {backprop_depth!r}")
        if not init_std >= 0:
            raise ValueError(f"init_std must be >= 0, got {init_std!r}")
        if not sigma >= 0:
            raise ValueError(f"sigma must be >= 0, got {sigma!r}")
        if test_init_std is not None and not test_init_std >= 0:
            raise ValueError(f"test_init_std must be >= 0 or None, got {test_init_std!r}")
        self.prelude = nn.ModuleList(prelude)
        self.core = nn.ModuleList(core)
        self.coda = nn.ModuleList(coda)
        self.adapter = nn.Linear(2 * d_model, d_model, bias=False)
        self.core_norm = nn.RMSNorm(d_model, eps=norm_eps)
        self.mean_iterations = mean_iterations
        self.backprop_depth = backprop_depth
        self.init_std = float(init_std)
        self.sigma = float(sigma)
        self.test_init_std = test_init_std
        self.init_seed = init_seed
        self._num_iterations = mean_iterations
        self.last_num_iterations: int | None = None  # r used by the last forward (training samples it)

    @classmethod
    def from_config(cls, config, *, prelude: int = 1, coda: int = 1, mean_iterations: int = 8,
                    backprop_depth: int = 4, init_std: float = 1.0, sigma: float = 0.5,
                    test_init_std: float | None = None, init_seed: int | None = None) -> "RecurrentDepth":
        """The config's n_layers blocks as ``prelude`` blocks, the core, and ``coda`` blocks."""
        for name, count in (("prelude", prelude), ("coda", coda)):
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                raise ValueError(f"depth_kwargs {name} must be a number of blocks >= 0, got {count!r}")
        n = config.n_layers
        if prelude + coda >= n:
            raise ValueError(f"prelude={prelude} + coda={coda} blocks leave none of the n_layers={n} blocks "
                             f"for the core")
        blocks = [config_block(config, i) for i in range(n)]
        return cls(blocks[:prelude], blocks[prelude: n - coda], blocks[n - coda:], mean_iterations, backprop_depth,
                   init_std, sigma, test_init_std, init_seed, config.norm_eps)

    # ------------------------------------------------------------------ settings

    @property
    def num_iterations(self) -> int:
        """Test-time iteration count r (default ``mean_iterations``)."""
        return self._num_iterations

    @num_iterations.setter
    def num_iterations(self, value: int) -> None:
        self._num_iterations = self._check_iterations(value)

    @staticmethod
    def _check_iterations(value, name="num_iterations") -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        return value

    def blocks_per_token(self, num_iterations: int | None = None) -> int:
        """Block applications per token: len(prelude) + r * len(core) + len(coda)."""
        r = self.num_iterations if num_iterations is None else self._check_iterations(num_iterations)
        return len(self.prelude) + r * len(self.core) + len(self.coda)

    def sample_iterations(self, generator: torch.Generator | None = None) -> tuple[int, int]:
        """The training draw: (r - k iterations without gradient, k with), r = Poisson(τ) + 1,
        τ ~ LogNormal(log r̄ - σ²/2, σ), k = min(r, backprop_depth)."""
        mu = math.log(self.mean_iterations) - self.sigma**2 / 2
        tau = torch.empty(1).log_normal_(mu, self.sigma, generator=generator) if self.sigma > 0 else torch.tensor(
            [math.exp(mu)])
        r = int(torch.poisson(tau, generator=generator).item()) + 1
        k = min(r, self.backprop_depth)
        return r - k, k

    # ------------------------------------------------------------------ pieces (used by the parallel sampler)

    def initial_latent(self, batch_size: int, start: int, length: int, device=None, dtype=None) -> torch.Tensor:
        """s_0 for positions start..start+length-1, (B, length, d).

        Training: truncated normal N(0, init_std²) cut at ±3 init_std, from the global RNG.
        Eval: scale ``test_init_std`` (or ``init_std``); with ``init_seed`` a deterministic function of
        (init_seed, absolute position), otherwise the global RNG."""
        std = self.init_std if self.training or self.test_init_std is None else float(self.test_init_std)
        shape = (batch_size, length, self.d_model)
        if std == 0 or length == 0:
            return torch.zeros(shape, device=device, dtype=dtype)
        if self.training or self.init_seed is None:
            s = torch.empty(shape, device=device, dtype=dtype)
            return nn.init.trunc_normal_(s, 0.0, std, -3 * std, 3 * std)
        columns = []
        for t in range(start, start + length):
            g = torch.Generator().manual_seed(int(self.init_seed) * 1_000_003 + t)
            columns.append(nn.init.trunc_normal_(torch.empty(self.d_model), 0.0, std, -3 * std, 3 * std, generator=g))
        return torch.stack(columns, 0).expand(batch_size, length, self.d_model).to(device=device, dtype=dtype)

    @staticmethod
    def run_blocks(blocks, x: torch.Tensor, states: list, step: bool = False) -> torch.Tensor:
        """Apply ``blocks`` in order to x (B, T, d) (or (B, d) with step=True); the entries of the list
        ``states`` are replaced by the new states."""
        for i, block in enumerate(blocks):
            x, states[i] = block.run(x, states[i], step)
        return x

    def core_iteration(self, s: torch.Tensor, e: torch.Tensor, states: list, step: bool = False) -> torch.Tensor:
        """One iteration s_i = N_c(core(A([s_{i-1}; e]))): s, e (B, T, d) or (B, d); the entries of the
        list ``states`` (one per core block, this iteration's) are replaced by the new states."""
        x = self.adapter(torch.cat([s, e], dim=-1))
        return self.core_norm(self.run_blocks(self.core, x, states, step))

    # ------------------------------------------------------------------ the contract

    def init_state(self, batch_size, device=None, dtype=None) -> RecurrentDepthState:
        """The empty state (what ``state=None`` means): its iteration count is fixed by the first call."""
        return RecurrentDepthState(tuple(b.mixer.init_state(batch_size, device, dtype) for b in self.prelude), (),
                                   tuple(b.mixer.init_state(batch_size, device, dtype) for b in self.coda))

    def new_state(self, num_iterations: int, batch_size: int = 1, device=None, dtype=None) -> RecurrentDepthState:
        """The empty state with a fixed iteration count."""
        return self._with_core(self.init_state(batch_size, device, dtype), self._check_iterations(num_iterations),
                               batch_size, device, dtype)

    def _with_core(self, state: RecurrentDepthState, r: int, batch_size, device, dtype) -> RecurrentDepthState:
        core = tuple(tuple(b.mixer.init_state(batch_size, device, dtype) for b in self.core) for _ in range(r))
        return state.replace(core=core, num_iterations=r)

    def _resolve(self, state: RecurrentDepthState, num_iterations, x) -> tuple[RecurrentDepthState, int, int]:
        """(state with its iteration count fixed, iterations without gradient, iterations with gradient)."""
        if num_iterations is not None:
            num_iterations = self._check_iterations(num_iterations)
        if state.num_iterations is not None:
            if num_iterations is not None and num_iterations != state.num_iterations:
                raise ValueError(f"num_iterations={num_iterations} differs from the state's {state.num_iterations}: "
                                 "decoding must use the iteration count of the prefill")
            r = state.num_iterations
        elif num_iterations is not None:
            r = num_iterations
        elif self.training:
            no_grad, with_grad = self.sample_iterations()
            return self._with_core(state, no_grad + with_grad, x.shape[0], x.device, x.dtype), no_grad, with_grad
        else:
            r = self.num_iterations
        if state.num_iterations is None:
            state = self._with_core(state, r, x.shape[0], x.device, x.dtype)
        if self.training and torch.is_grad_enabled():
            k = min(r, self.backprop_depth)
            return state, r - k, k
        return state, r, 0

    def forward(self, x: torch.Tensor, state: RecurrentDepthState | None = None, num_iterations: int | None = None
                ) -> tuple[torch.Tensor, RecurrentDepthState]:
        """x (B, T, d) -> (B, T, d). ``num_iterations`` overrides r (training samples it otherwise)."""
        return super().forward(x, state, num_iterations=num_iterations)

    def step(self, x_t: torch.Tensor, state: RecurrentDepthState | None = None, num_iterations: int | None = None
             ) -> tuple[torch.Tensor, RecurrentDepthState]:
        """One token x_t (B, d) -> (B, d), continuing every block's state at its own iteration index."""
        return super().step(x_t, state, num_iterations=num_iterations)

    def run(self, x, state, step, num_iterations=None):
        state, no_grad, with_grad = self._resolve(state, num_iterations, x)
        self.last_num_iterations = no_grad + with_grad
        length = 1 if step else x.shape[1]
        prelude, core, coda = list(state.prelude), [list(c) for c in state.core], list(state.coda)
        e = self.run_blocks(self.prelude, x, prelude, step)
        s = self.initial_latent(x.shape[0], state.position, length, x.device, x.dtype)
        if step:
            s = s[:, 0]
        with torch.no_grad():
            for i in range(no_grad):
                s = self.core_iteration(s, e, core[i], step)
        for i in range(no_grad, no_grad + with_grad):
            s = self.core_iteration(s, e, core[i], step)
        y = self.run_blocks(self.coda, s, coda, step)
        return y, state.replace(prelude=tuple(prelude), core=tuple(tuple(c) for c in core), coda=tuple(coda),
                                position=state.position + length)

    def extra_repr(self) -> str:
        return (f"prelude={len(self.prelude)}, core={len(self.core)}, coda={len(self.coda)}, "
                f"mean_iterations={self.mean_iterations}, backprop_depth={self.backprop_depth}, "
                f"num_iterations={self.num_iterations}, init_std={self.init_std}")
