"""Continuous depth-wise batching, simulated: how many calls of the shared block a looped model needs
to serve a queue of tokens when slots freed by early exits are refilled at once.

Bae et al., "Relaxed Recursive Transformers: Effective Parameter Sharing with Layer-wise LoRA" (2024),
its continuous depth-wise batching: in a looped model every loop runs the same weights, so one
call of the shared block can serve tokens that are at different loops. A slot whose token has run
all the loops it needs (its early-exit depth) is refilled from the queue before the next call.

Model of the simulation (counts, not wall time):
- requests: a FIFO queue of tokens, token j needing ``depths[j]`` in 1..n_loops loops;
- a call processes up to ``batch_size`` occupied slots, each advancing one loop (one call = one pass of
  the K shared blocks over a batch, whatever loop each slot is in);
- depth-wise: before every call, free slots take the next tokens from the queue;
- vanilla: the first ``batch_size`` tokens form a batch that runs all ``n_loops`` loops, then the next
  batch is admitted (a non-recursive model must do this: different layers cannot share a call);
- static early exit (for reference): as vanilla, but a batch stops once its deepest token exits.
Tokens are independent here; in decoding a sequence's next token also waits for its previous one,
which a trace of per-sequence depths would add. The state updates an exited token still needs in the
deeper loops (its KV projections, see relaxed.py) are not counted.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch


@dataclass(frozen=True)
class BatchingCounts:
    """Block calls needed for a queue of tokens, and the average occupied slots per call."""

    n_tokens: int
    loop_applications: int            # sum of the tokens' depths: the work early exit leaves
    vanilla_calls: int                # every batch to the full n_loops
    static_exit_calls: int            # every batch until its deepest token exits
    depthwise_calls: int              # continuous depth-wise batching
    vanilla_tokens_per_call: float    # n_tokens * n_loops / vanilla_calls
    depthwise_tokens_per_call: float  # loop_applications / depthwise_calls

    @property
    def speedup(self) -> float:
        """vanilla_calls / depthwise_calls: the throughput gain of depth-wise batching with early exit."""
        return self.vanilla_calls / self.depthwise_calls

    @property
    def speedup_over_static_exit(self) -> float:
        """static_exit_calls / depthwise_calls: what refilling slots adds to early exit alone."""
        return self.static_exit_calls / self.depthwise_calls


def simulate_depthwise_batching(depths: Sequence[int] | np.ndarray | torch.Tensor, batch_size: int,
                                n_loops: int | None = None) -> BatchingCounts:
    """Count block calls for a FIFO queue of tokens needing ``depths`` loops each (module docstring).

    Args:
        depths: loops per token, each in 1..n_loops (e.g. the flattened exit loops of
            :func:`recurlab.recursion.relaxed.early_exit_forward`).
        batch_size: slots per call (>= 1).
        n_loops: the model's loops (full depth); max(depths) if None.
    """
    d = np.asarray(depths.detach().cpu() if isinstance(depths, torch.Tensor) else depths).reshape(-1)
    if d.size == 0 or not np.issubdtype(d.dtype, np.integer):
        raise ValueError(f"depths must be a non-empty sequence of ints, got {d.dtype} of {d.size} entries")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    n_loops = int(d.max()) if n_loops is None else n_loops
    if not isinstance(n_loops, int) or n_loops < 1:
        raise ValueError(f"n_loops must be a positive int, got {n_loops!r}")
    if d.min() < 1 or d.max() > n_loops:
        raise ValueError(f"depths must lie in 1..n_loops={n_loops}, got values in {int(d.min())}..{int(d.max())}")

    n = int(d.size)
    n_batches = -(-n // batch_size)
    vanilla = n_batches * n_loops
    static = sum(int(d[b * batch_size:(b + 1) * batch_size].max()) for b in range(n_batches))

    queue = deque(int(x) for x in d)
    remaining: list[int] = []  # loops still to run, per occupied slot
    calls = 0
    while queue or remaining:
        while queue and len(remaining) < batch_size:
            remaining.append(queue.popleft())
        remaining = [r - 1 for r in remaining if r > 1]  # one call: every slot runs a loop; finished slots free
        calls += 1
    work = int(d.sum())
    return BatchingCounts(n, work, vanilla, static, calls, n * n_loops / vanilla, work / calls)


def sample_depths(probabilities: Sequence[float], n_tokens: int, seed: int = 0) -> np.ndarray:
    """n_tokens exit depths drawn i.i.d. with P(depth = l + 1) = probabilities[l] (a distribution over loops)."""
    p = np.asarray(probabilities, dtype=float)
    if p.ndim != 1 or p.size == 0 or (p < 0).any() or not np.isclose(p.sum(), 1.0):
        raise ValueError("probabilities must be a non-empty 1-D distribution over loops summing to 1, "
                         f"got {probabilities!r}")
    if not isinstance(n_tokens, int) or n_tokens < 1:
        raise ValueError(f"n_tokens must be a positive int, got {n_tokens!r}")
    return np.random.default_rng(seed).choice(np.arange(1, p.size + 1), size=n_tokens, p=p / p.sum())
