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
  ``init_seed`` set, s_0 at absolute position t and batch row b is a fixed function of
  (init_seed, t) - so a parallel prefill, token-by-token decoding and the parallel sampler all see
  the same s_0 - otherwise it comes from the global RNG (the paper's behaviour).
- Decoding state (as Huginn's KV cache, which keys its entries by a block index that runs over
  prelude blocks, then over every (iteration, core block) pair, then over coda blocks): iteration i
  of the core at a new token continues iteration i's state from the earlier tokens. The state is a
  :class:`RecurrentDepthState`: prelude block states, ``core[i][l]`` for iteration i and core block
  l, coda block states, the iteration count and the number of tokens seen. Decoding must use the
  count of the prefill: ``step`` continues with the state's count, and an explicit
  ``num_iterations`` that disagrees raises a ValueError.

Compute per token: ``len(prelude) + r * len(core) + len(coda)`` block applications
(:meth:`RecurrentDepth.blocks_per_token`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..models.block import Block
from .base import DepthModule


@dataclass
class RecurrentDepthState:
    """Decoding state of :class:`RecurrentDepth`.

    Attributes:
        prelude: one state per prelude block.
        core: ``core[i][l]`` is the state of core block l at iteration i (i < num_iterations).
        coda: one state per coda block.
        num_iterations: the core iteration count this state was built with.
        position: number of tokens processed so far (the absolute position of the next token).
    """

    prelude: list
    core: list[list]
    coda: list
    num_iterations: int
    position: int = 0


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

    def __init__(self, prelude: list[Block], core: list[Block], coda: list[Block], mean_iterations: int = 8,
                 backprop_depth: int = 4, init_std: float = 1.0, sigma: float = 0.5,
                 test_init_std: float | None = None, init_seed: int | None = None, norm_eps: float = 1e-5):
        for name, blocks in (("prelude", prelude), ("core", core), ("coda", coda)):
            if not isinstance(blocks, (list, tuple)) or not all(isinstance(b, Block) for b in blocks):
                raise ValueError(f"{name} must be a list of recurlab Blocks (see recurlab.recursion.make_block), "
                                 f"got {type(blocks).__name__}")
        if not core:
            raise ValueError("core must hold at least one Block")
        d_model = core[0].mixer.d_model
        super().__init__(d_model)
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
            columns.append(nn.init.trunc_normal_(torch.empty(batch_size, self.d_model), 0.0, std, -3 * std, 3 * std,
                                                 generator=g))
        return torch.stack(columns, 1).to(device=device, dtype=dtype)

    @staticmethod
    def run_blocks(blocks, x: torch.Tensor, states: list, step: bool = False) -> torch.Tensor:
        """Apply ``blocks`` in order to x (B, T, d) (or (B, d) with step=True); ``states`` is updated in place."""
        for i, block in enumerate(blocks):
            x, states[i], _ = (block.step if step else block)(x, states[i])
        return x

    def core_iteration(self, s: torch.Tensor, e: torch.Tensor, states: list, step: bool = False) -> torch.Tensor:
        """One iteration s_i = N_c(core(A([s_{i-1}; e]))): s, e (B, T, d) or (B, d); ``states`` (one per core
        block, this iteration's) is updated in place."""
        x = self.adapter(torch.cat([s, e], dim=-1))
        return self.core_norm(self.run_blocks(self.core, x, states, step))

    # ------------------------------------------------------------------ the contract

    def new_state(self, num_iterations: int) -> RecurrentDepthState:
        """The empty state (what ``state=None`` means) for a given iteration count."""
        return RecurrentDepthState([None] * len(self.prelude), [[None] * len(self.core) for _ in range(num_iterations)],
                                   [None] * len(self.coda), num_iterations, 0)

    def _resolve(self, state, num_iterations) -> tuple[RecurrentDepthState, int, int]:
        """(state, iterations without gradient, iterations with gradient) for this call."""
        if num_iterations is not None:
            num_iterations = self._check_iterations(num_iterations)
        if state is not None:
            if not isinstance(state, RecurrentDepthState):
                raise ValueError(f"state must be a RecurrentDepthState (as returned by forward/step) or None, "
                                 f"got {type(state).__name__}")
            if num_iterations is not None and num_iterations != state.num_iterations:
                raise ValueError(f"num_iterations={num_iterations} differs from the state's {state.num_iterations}: "
                                 "decoding must use the iteration count of the prefill")
            r = state.num_iterations
        elif num_iterations is not None:
            r = num_iterations
        elif self.training:
            no_grad, with_grad = self.sample_iterations()
            return self.new_state(no_grad + with_grad), no_grad, with_grad
        else:
            r = self.num_iterations
        state = state if state is not None else self.new_state(r)
        if self.training and torch.is_grad_enabled():
            k = min(r, self.backprop_depth)
            return state, r - k, k
        return state, r, 0

    def forward(self, x: torch.Tensor, state: Any = None, num_iterations: int | None = None
                ) -> tuple[torch.Tensor, RecurrentDepthState]:
        """x (B, T, d) -> (B, T, d). ``num_iterations`` overrides r (training samples it otherwise)."""
        return self._run(x, state, num_iterations, step=False)

    def step(self, x_t: torch.Tensor, state: Any = None, num_iterations: int | None = None
             ) -> tuple[torch.Tensor, RecurrentDepthState]:
        """One token x_t (B, d) -> (B, d), continuing every block's state at its own iteration index."""
        return self._run(x_t, state, num_iterations, step=True)

    def _run(self, x, state, num_iterations, step):
        layout = "(B, d_model)" if step else "(B, T, d_model)"
        if not isinstance(x, torch.Tensor) or x.dim() != (2 if step else 3) or x.shape[-1] != self.d_model:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{'x_t' if step else 'x'} must be a tensor of shape {layout} with d_model="
                             f"{self.d_model}, got {got}")
        state, no_grad, with_grad = self._resolve(state, num_iterations)
        self.last_num_iterations = no_grad + with_grad
        length = 1 if step else x.shape[1]
        e = self.run_blocks(self.prelude, x, state.prelude, step)
        s = self.initial_latent(x.shape[0], state.position, length, x.device, x.dtype)
        if step:
            s = s[:, 0]
        with torch.no_grad():
            for i in range(no_grad):
                s = self.core_iteration(s, e, state.core[i], step)
        for i in range(no_grad, no_grad + with_grad):
            s = self.core_iteration(s, e, state.core[i], step)
        y = self.run_blocks(self.coda, s, state.coda, step)
        state.position += length
        return y, state

    def extra_repr(self) -> str:
        return (f"prelude={len(self.prelude)}, core={len(self.core)}, coda={len(self.coda)}, "
                f"mean_iterations={self.mean_iterations}, backprop_depth={self.backprop_depth}, "
                f"num_iterations={self.num_iterations}, init_std={self.init_std}")
