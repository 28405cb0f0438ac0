"""Relaxed: a Recursive stack whose every nn.Linear gets a per-loop low-rank delta (layer-wise LoRA),
initialised from a trained N-layer Stack; and confidence-based early exit per token.

Bae, Fisch, Harutyunyan, Ji, Kim, Schuster, "Relaxed Recursive Transformers: Effective Parameter Sharing
with Layer-wise LoRA" (arXiv 2410.20672, 2024; ICLR 2025).

K shared blocks are looped n_loops times (:class:`recurlab.recursion.Recursive`, the "cycle" order:
application (l, i) stands for layer l * K + i of an N = K * n_loops layer model). Every linear map
W of the shared blocks becomes, in loop l,

    h = W x (+ b) + B_l A_l x          A_l: (r, d_in), B_l: (d_out, r)

with B_l = 0 at init (then it equals the strictly tied Recursive). The shared W, b are stored once:
each Linear is wrapped by a :class:`LoopLoRALinear` that holds the n_loops (A_l, B_l) pairs and reads
the current loop from a cursor the Relaxed module sets before each loop (no weight is copied and no
merged W + B_l A_l is formed, so the LoRA path costs 2 r (d_in + d_out) per token and linear).

Initialisation from a trained Stack (:meth:`Relaxed.from_stack`; :func:`relax` converts a whole
CausalLM), with tied block i standing for the original layers i, i + K, ..., i + (n_loops - 1) K:
    stepwise:  shared block i = layer round(linspace(0, N - 1, K)[i])   (Python's round, as the authors' code)
    average:   shared block i = the mean of layers i, i + K, ...        (every parameter, norms included)
    lower:     shared block i = layer i
    SVD-LoRA:  R_l = W(layer l K + i) - W_shared;  U S V^T = SVD(R_l);  B_l = U_r S_r,  A_l = V_r^T
so that a full rank (r >= min(d_out, d_in)) rebuilds every original weight exactly.
Parameters outside the Linear weights (RMSNorm gains, Linear biases, gla's gate bias and head norm)
are tied by the scheme; ``loop_norms=True`` keeps a copy of the blocks' two RMSNorms per application
(the authors' ``ln_share=False``), which is what makes a full-rank conversion exact for blocks whose
only other parameters are those norms (attention + swiglu/mlp without bias).

Early exit (:func:`early_exit_forward`, :func:`early_exit_step`): after loop l < n_loops a token
whose next-token distribution softmax(head(RMSNorm(h))) has max probability >= threshold exits; its
hidden state is copied forward unchanged through the deeper loops and the final logits are those at
exit. Deeper loops still run their token mixers on the copied hidden state, so their states (KV
caches, recurrent states) stay filled for later tokens ("state copying", as in depth-wise early-exit
decoders). What an exited token saves per deeper block: the channel mixer, the attention read and
output projection (only the state update remains: for attention the K/V projections) and the
confidence checks. This module is the reference for what exits when (it masks exited rows, so it runs
at full cost); recurlab.recursion.depthwise_batching simulates the throughput a server gains by
refilling the slots that exited tokens free.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import torch
from torch import nn

from ..models import CausalLM, Stack
from ..models.block import Block, config_block
from ..models.depth import BlockStates, register_depth
from ..state import State
from .recursive import Recursive

SCHEMES = ("stepwise", "average", "lower")


class _LoopCursor:
    """The loop the Relaxed module is running (None outside a loop: no LoRA delta)."""

    loop: int | None = None


class LoopLoRALinear(nn.Module):
    """A shared nn.Linear plus one low-rank delta per loop: y = base(x) + (x A_l^T) B_l^T.

    Shapes: lora_a (n_loops, r, d_in), lora_b (n_loops, d_out, r), r = min(rank, d_in, d_out).
    The loop is read from ``cursor.loop``; with None (the block used outside its Relaxed) y = base(x).
    """

    def __init__(self, base: nn.Linear, n_loops: int, rank: int, cursor: _LoopCursor):
        super().__init__()
        self.base = base
        self.cursor = cursor
        self.rank = min(rank, base.in_features, base.out_features)
        factory = {"dtype": base.weight.dtype, "device": base.weight.device}
        self.lora_a = nn.Parameter(torch.empty(n_loops, self.rank, base.in_features, **factory))
        self.lora_b = nn.Parameter(torch.zeros(n_loops, base.out_features, self.rank, **factory))
        for a in self.lora_a.data:  # A as a freshly initialised Linear (kaiming-uniform), B = 0
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        loop = self.cursor.loop
        if loop is None:
            return y
        return y + (x @ self.lora_a[loop].t()) @ self.lora_b[loop].t()

    def extra_repr(self) -> str:
        return f"n_loops={self.lora_a.shape[0]}, rank={self.rank}"


@register_depth("relaxed", tiny={"n_layers": 2, "depth_kwargs": {"n_loops": 2, "rank": 2}})
class Relaxed(Recursive):
    """Recursive with a per-loop LoRA on every nn.Linear of the shared blocks (and optional per-loop norms).

    Args:
        blocks: the K shared Blocks; their nn.Linear modules are wrapped in place by LoopLoRALinear.
        n_loops: loops over the blocks (effective depth K * n_loops).
        rank: LoRA rank r >= 1 (capped per Linear at min(d_in, d_out)).
        loop_scales, group_sizes, group_offsets: as in :class:`Recursive`.
        loop_norms: a separate copy of each block's two RMSNorms for every loop after the first (initialised
            from the block's; loop 0 uses the block's own).
    """

    def __init__(self, blocks: list[Block], n_loops: int, rank: int, loop_scales: bool = False,
                 group_sizes: list[int | None] | None = None, group_offsets: list[int] | None = None,
                 loop_norms: bool = False):
        super().__init__(blocks, n_loops, loop_scales, group_sizes, group_offsets)
        if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
            raise ValueError(f"rank must be a positive int (the LoRA rank), got {rank!r}")
        self.rank = rank
        self._cursor = _LoopCursor()
        for block in self.blocks:
            linears = [(name, m) for name, m in block.named_modules() if isinstance(m, nn.Linear)]
            for name, linear in linears:
                parent_name, _, child = name.rpartition(".")
                parent = block.get_submodule(parent_name) if parent_name else block
                setattr(parent, child, LoopLoRALinear(linear, n_loops, rank, self._cursor))
        self.loop_norms = None
        if loop_norms:  # loop 0 keeps the blocks' own norms; loops 1.. get copies, loop_norms[l - 1][i]
            self.loop_norms = nn.ModuleList(
                nn.ModuleList(nn.ModuleList([copy.deepcopy(b.mixer_norm), copy.deepcopy(b.channel_norm)])
                              for b in self.blocks) for _ in range(n_loops - 1))

    @classmethod
    def from_config(cls, config, *, n_loops: int, rank: int, loop_scales: bool = False,
                    group_sizes: list[int | None] | None = None, group_offsets: list[int] | None = None,
                    loop_norms: bool = False) -> "Relaxed":
        """The config's n_layers blocks, looped n_loops times with a rank-``rank`` LoRA per loop."""
        blocks = [config_block(config, i) for i in range(config.n_layers)]
        return cls(blocks, n_loops, rank, loop_scales, group_sizes, group_offsets, loop_norms)

    def run_loop(self, loop: int, x: torch.Tensor, states: list, step: bool) -> torch.Tensor:
        self._cursor.loop = loop
        try:
            return super().run_loop(loop, x, states, step)
        finally:
            self._cursor.loop = None

    def norms(self, loop: int, i: int) -> tuple[nn.Module, nn.Module | None]:
        if self.loop_norms is None or loop == 0:
            return super().norms(loop, i)
        mixer_norm, channel_norm = self.loop_norms[loop - 1][i]
        return mixer_norm, channel_norm

    def lora_modules(self, i: int) -> dict[str, LoopLoRALinear]:
        """Block i's wrapped linears by their path inside the block (e.g. 'mixer.q_proj')."""
        return {name: m for name, m in self.blocks[i].named_modules() if isinstance(m, LoopLoRALinear)}

    @classmethod
    def from_stack(cls, stack: Stack, n_loops: int, rank: int, scheme: str = "average", svd_init: bool = True,
                   loop_norms: bool = False, **kwargs) -> "Relaxed":
        """A Relaxed model of K = N / n_loops shared blocks initialised from an N-layer Stack.

        scheme: "stepwise" | "average" | "lower" (module docstring). svd_init: each loop's LoRA is the
        truncated rank-r SVD of (original weight - shared weight); otherwise B = 0 (strict tying at init).
        loop_norms: per-loop RMSNorms copied from the original layers. kwargs go to the constructor.
        The stack is not modified.
        """
        if not isinstance(stack, Stack):
            raise ValueError(f"stack must be a recurlab.models.Stack, got {type(stack).__name__}")
        N = len(stack.blocks)
        if not isinstance(n_loops, int) or n_loops < 1 or N % n_loops:
            raise ValueError(f"n_loops must be a positive int dividing the stack's {N} layers, got {n_loops!r}")
        if scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
        K = N // n_loops
        originals = [list(stack.blocks[l * K + i] for l in range(n_loops)) for i in range(K)]
        blocks = []
        for i in range(K):
            block = copy.deepcopy(originals[i][0])
            if scheme == "stepwise":
                source = round(float(np.linspace(0, N - 1, K)[i]))
                block.load_state_dict(stack.blocks[source].state_dict())
            elif scheme == "lower":
                block.load_state_dict(stack.blocks[i].state_dict())
            else:
                block.load_state_dict(_mean_state(originals[i]))
            blocks.append(block)
        model = cls(blocks, n_loops, rank, loop_norms=loop_norms, **kwargs)
        with torch.no_grad():
            for i in range(K):
                for name, lora in model.lora_modules(i).items():
                    for l, original in enumerate(originals[i]):
                        if svd_init:
                            residual = original.get_submodule(name).weight - lora.base.weight
                            U, S, Vh = torch.linalg.svd(residual, full_matrices=False)
                            lora.lora_b[l].copy_(U[:, : lora.rank] * S[: lora.rank])
                            lora.lora_a[l].copy_(Vh[: lora.rank])
                        else:
                            lora.lora_b[l].zero_()
                if loop_norms:
                    for l, original in enumerate(originals[i]):
                        mixer_norm, channel_norm = model.norms(l, i)
                        mixer_norm.load_state_dict(original.mixer_norm.state_dict())
                        if original.channel_norm is not None:
                            channel_norm.load_state_dict(original.channel_norm.state_dict())
        return model


def relax(model: CausalLM, n_loops: int, rank: int, scheme: str = "average", svd_init: bool = True,
          loop_norms: bool = False) -> CausalLM:
    """A CausalLM whose depth is :meth:`Relaxed.from_stack` of ``model``'s stack (embedding, final norm
    and head copied). ``model`` must have the "stack" depth module, and layers l K + i must share a
    mixer type for every loop l (they become one tied block)."""
    if not isinstance(model, CausalLM) or not isinstance(model.depth, Stack):
        raise ValueError(f"model must be a CausalLM with the 'stack' depth module, got {type(model).__name__}")
    config = model.config
    N = config.n_layers
    if not isinstance(n_loops, int) or n_loops < 1 or N % n_loops:
        raise ValueError(f"n_loops must be a positive int dividing the stack's {N} layers, got {n_loops!r}")
    K = N // n_loops
    mixers = config.mixers
    if any(mixers[l * K + i] != mixers[i] for l in range(n_loops) for i in range(K)):
        raise ValueError(f"layers l*{K} + i must have one mixer for every loop l to be tied, got {mixers}")
    per_layer = config.layer_kwargs
    if per_layer is not None and any(per_layer[l * K + i] != per_layer[i] for l in range(n_loops) for i in range(K)):
        raise ValueError(f"layers l*{K} + i must have the same layer_kwargs for every loop l to be tied, got {per_layer}")
    relaxed_config = dataclasses.replace(config, n_layers=K, mixer=mixers[:K] if isinstance(config.mixer, list)
                                         else config.mixer, layer_kwargs=None if per_layer is None else per_layer[:K],
                                         depth="relaxed",
                                         depth_kwargs={"n_loops": n_loops, "rank": rank, "loop_norms": loop_norms})
    converted = CausalLM(relaxed_config).to(model.embedding.weight.device, model.embedding.weight.dtype)
    depth = Relaxed.from_stack(model.depth, n_loops, rank, scheme, svd_init=svd_init, loop_norms=loop_norms)
    converted.depth.load_state_dict(depth.state_dict())
    converted.embedding.load_state_dict(model.embedding.state_dict())
    converted.final_norm.load_state_dict(model.final_norm.state_dict())
    if model.head is not None:
        converted.head.load_state_dict(model.head.state_dict())
    return converted


def _mean_state(blocks: list[Block]) -> dict[str, torch.Tensor]:
    """The element-wise mean of the blocks' floating state entries (others from the first block)."""
    states = [b.state_dict() for b in blocks]
    return {k: torch.stack([s[k] for s in states]).mean(0) if v.is_floating_point() else v
            for k, v in states[0].items()}


# ---------------------------------------------------------------------- early exit


def _check_exit_args(model, threshold):
    if not isinstance(model, CausalLM) or not isinstance(model.depth, Recursive):
        got = type(model).__name__ + (f" around {type(model.depth).__name__}" if isinstance(model, CausalLM) else "")
        raise ValueError(f"model must be a CausalLM whose depth is recursive (or relaxed), got {got}")
    if not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a max-probability in [0, 1], got {threshold!r}")


def _looped_with_exits(model: CausalLM, x: torch.Tensor, states: list, threshold: float, step: bool):
    """Run the loops on x ((B, T, d) or (B, d)), freezing tokens after their exit; returns the final-normed
    hidden and the exit loop (1..n_loops) per token."""
    depth: Recursive = model.depth
    exited = torch.zeros(x.shape[:-1], dtype=torch.bool, device=x.device)
    exit_loop = torch.full(x.shape[:-1], depth.n_loops, dtype=torch.long, device=x.device)
    for loop in range(depth.n_loops):
        x_new = depth.run_loop(loop, x, states, step)
        x = torch.where(exited.unsqueeze(-1), x, x_new)  # exited tokens: hidden state copied forward
        if loop < depth.n_loops - 1:
            logits = model.readout(x)
            confidence = torch.softmax(logits, -1, dtype=torch.promote_types(logits.dtype, torch.float32)).amax(-1)
            leaving = ~exited & (confidence >= threshold)
            exit_loop[leaving] = loop + 1
            exited |= leaving
    return model.final_norm(x), exit_loop


def early_exit_forward(model: CausalLM, input_ids: torch.Tensor, threshold: float,
                       state: State | None = None) -> tuple[torch.Tensor, torch.Tensor, BlockStates]:
    """Whole-sequence form of confidence-based early exit.

    input_ids (B, T) -> logits (B, T, V) at each token's exit, exit loops (B, T) in 1..n_loops (the
    number of loops each token ran), and the depth state (equal to what :func:`early_exit_step` builds).
    """
    _check_exit_args(model, threshold)
    x = model.embed(input_ids)
    states = model.depth.application_states(model.depth.resolve_state(state, x))
    h, exit_loop = _looped_with_exits(model, x, states, threshold, step=False)
    return model.logits(h), exit_loop, BlockStates(tuple(states))


def early_exit_step(model: CausalLM, token_ids: torch.Tensor, threshold: float,
                    state: State | None = None) -> tuple[torch.Tensor, torch.Tensor, BlockStates]:
    """One decoding step with early exit: token_ids (B,) -> logits (B, V), exit loops (B,), state."""
    _check_exit_args(model, threshold)
    x = model.embed(token_ids, rank=1)
    states = model.depth.application_states(model.depth.resolve_state(state, x))
    h, exit_loop = _looped_with_exits(model, x, states, threshold, step=True)
    return model.logits(h), exit_loop, BlockStates(tuple(states))
