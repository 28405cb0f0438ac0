"""Mixture-of-Recursions: shared blocks applied to each token as many times as a router decides.

Bae et al., "Mixture-of-Recursions: Learning Dynamic Recursive Depths for Adaptive Token-Level
Computation" (2025), with the mechanisms of the official code (raymin0223/mixture_of_recursions,
``expert_choice_router.py`` and ``token_choice_router.py``).

Middle-cycle sharing (sec. 2.1): unique ``first`` blocks, then K ``shared`` blocks f = f_K o ... o f_1
applied up to N_r times, then unique ``last`` blocks. Each application of f is one *recursion*; a
block f_k is a pre-norm residual Block, so f(h) already contains h.

Expert-choice routing (sec. 2.2.1; one linear router θ_r per recursion r = 0..N_r-1):

    g_t^r = α σ(θ_rᵀ h_t^r / T)                     α = 0.1, T = 1 (router temperature)
    A^r   = top-k_r of g^r over the tokens in A^{r-1}   (A^{-1} = every token; k_r = ⌊cap_r L⌋,
                                                        cap_r = (N_r - r) / N_r: 1, 2/3, 1/3 for N_r = 3)
    h_t^{r+1} = h_t^r + g_t^r f(h_t^r)   if t ∈ A^r,   else h_t^r           (the code's scatter_add of
                                                                           g * block output onto h)

Top-k over the sequence looks at later tokens, so training adds the BCE between the router logits
and top-k membership (over the candidates A^{r-1}; coefficient 0.001) and decoding decides
causally: t ∈ A^r iff t ∈ A^{r-1} and σ(θ_rᵀ h_t^r / T) >= 0.5. Here the top-k rule is used by
``forward`` in training mode, the threshold rule by ``forward`` in eval mode and by ``step``
always; a recursion with cap_r = 1 takes every candidate under both rules.

Token-choice routing (sec. 2.2.1): one router at the entry of the recursions,

    p_t = α softmax(θᵀ h_t^0 / T),  i_t = argmax_j p_t^j,  w_t = p_t^{i_t}      (α = 1)
    token t takes recursions 0..i_t:  h^{r+1} = f(h^r),  output  h_t^0 + w_t h_t^{i_t + 1}

(the official code adds w times the last block output to the input of the recursions), with the
balancing loss N_r Σ_i f_i P_i (f_i: fraction of tokens with depth i, P_i: mean of p^i; coefficient
0.1) and the router z-loss mean(logsumexp(θᵀ h / T)²) (coefficient 1e-5; applied to the expert
routers too, where the logsumexp of one logit is the logit). The router only reads the token's
own state, so token choice is causal: ``forward`` and ``step`` agree in training mode too.

KV caching (sec. 2.2.2) and recurrent states: see :mod:`recurlab.recursion.mor_cache`. Recursion r
keeps its own state per shared block, built only from the tokens active at r (recursion-wise
caching); with ``kv_sharing`` every recursion's attention reads the keys and values of the first
recursion (which every token takes) and computes only queries.

After each forward or step: ``aux_loss`` (training forward only, else None), ``last_active``
(B, T, N_r) bool (token t took recursion r), ``mean_recursions`` (recursions per token, averaged
over the batch) and ``applications_per_token()`` (len(first) + K * mean_recursions + len(last)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..models.block import Block, config_block, mixer_name
from ..models.depth import DepthModule, register_depth
from ..state import State
from .mor_cache import RecursionKVCache, attention_block, check_row_splittable, recurrent_block_rows, routed_attention

ROUTERS = ("expert", "token")


@dataclass(frozen=True)
class MoRState(State):
    """Decoding state of :class:`MixtureOfRecursions`.

    Attributes:
        first, last: one state per unique block (its mixer's).
        recursions: recursions[r][k] is the state of shared block k at recursion r: a
            :class:`RecursionKVCache` for attention, the mixer's own state otherwise (None for r > 0
            with kv_sharing: recursion 0's cache is read).
        offset: tokens processed so far (the original position of the next token).
    """

    first: tuple = ()
    recursions: tuple = ()
    last: tuple = ()
    offset: int = 0


@register_depth("mor", tiny={"n_layers": 3, "depth_kwargs": {"n_recursions": 2, "first": 1, "last": 1}})
class MixtureOfRecursions(DepthModule):
    """Mixture-of-Recursions over K shared blocks, N_r recursions, with expert- or token-choice routing.

    Args:
        shared: the K shared blocks, applied in order at each recursion.
        n_recursions: N_r >= 1, the most recursions a token can take.
        router: "expert" (expert-choice, per-recursion top-k / threshold) or "token" (token-choice).
        first, last: unique blocks before and after the recursions (middle-cycle sharing).
        kv_sharing: recursive KV sharing (attention shared blocks only; every token takes recursion 0).
        capacities: expert choice: cap_r in (0, 1], non-increasing; default (N_r - r) / N_r.
        alpha: router scale; default 0.1 (expert) or 1.0 (token).
        router_temperature: T in σ(θᵀ h / T) / softmax(θᵀ h / T).
        bce_coef: expert choice: weight of the router BCE (sum over recursions of the mean over candidates).
        balance_coef: token choice: weight of the balancing loss.
        z_loss_coef: weight of the router z-loss.
        threshold: expert choice at inference: a candidate continues iff σ(logit) >= threshold.
    """

    state_type = MoRState

    def __init__(self, shared: list[Block], n_recursions: int, router: str = "expert",
                 first: list[Block] | None = None, last: list[Block] | None = None, kv_sharing: bool = False,
                 capacities: Sequence[float] | None = None, alpha: float | None = None,
                 router_temperature: float = 1.0, bce_coef: float = 1e-3, balance_coef: float = 0.1,
                 z_loss_coef: float = 1e-5, threshold: float = 0.5):
        d_model = self._check_blocks("shared", shared, None, allow_empty=False)
        super().__init__(d_model)
        self._check_blocks("first", first, d_model)
        self._check_blocks("last", last, d_model)
        if not isinstance(n_recursions, int) or isinstance(n_recursions, bool) or n_recursions < 1:
            raise ValueError(f"n_recursions must be an int >= 1, got {n_recursions!r}")
        if router not in ROUTERS:
            raise ValueError(f"router must be one of {ROUTERS}, got {router!r}")
        if not isinstance(kv_sharing, bool):
            raise ValueError(f"kv_sharing must be a bool, got {kv_sharing!r}")
        for name, value in (("router_temperature", router_temperature), ("alpha", alpha)):
            if value is not None and not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        for name, value in (("bce_coef", bce_coef), ("balance_coef", balance_coef), ("z_loss_coef", z_loss_coef)):
            if not (isinstance(value, (int, float)) and value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not (isinstance(threshold, (int, float)) and 0 < threshold < 1):
            raise ValueError(f"threshold must lie in (0, 1), got {threshold!r}")

        self.n_recursions, self.router_kind, self.kv_sharing = n_recursions, router, kv_sharing
        self.capacities = self._check_capacities(capacities, router, n_recursions)
        if kv_sharing:
            not_attention = [type(b.mixer).__name__ for b in shared if not b.mixer.kv_attention]
            if not_attention:
                raise ValueError(f"kv_sharing reuses attention keys and values, so every shared block needs an "
                                 f"attention mixer; got {', '.join(not_attention)}")
            if router == "expert" and self.capacities[0] < 1:
                raise ValueError(f"kv_sharing needs every token at the first recursion (later recursions read its keys "
                                 f"and values): capacities[0] must be 1, got {self.capacities[0]}")
        for k, block in enumerate(shared):
            if not block.mixer.kv_attention:
                check_row_splittable(block, f"shared[{k}]")

        self.shared = nn.ModuleList(shared)
        self.first = nn.ModuleList(first or [])
        self.last = nn.ModuleList(last or [])
        self.alpha = float(alpha if alpha is not None else (0.1 if router == "expert" else 1.0))
        self.router_temperature = float(router_temperature)
        self.bce_coef, self.balance_coef, self.z_loss_coef = float(bce_coef), float(balance_coef), float(z_loss_coef)
        self.threshold = float(threshold)
        if router == "expert":
            self.routers = nn.ModuleList(nn.Linear(d_model, 1, bias=False) for _ in range(n_recursions))
        else:
            self.routers = nn.ModuleList([nn.Linear(d_model, n_recursions, bias=False)])
        for r in self.routers:
            nn.init.normal_(r.weight, std=0.02)
        self.last_active: torch.Tensor | None = None
        self.mean_recursions: float | None = None

    @classmethod
    def from_config(cls, config, *, n_recursions: int, router: str = "expert", first: int = 0, last: int = 0,
                    kv_sharing: bool = False, capacities: Sequence[float] | None = None, alpha: float | None = None,
                    router_temperature: float = 1.0, bce_coef: float = 1e-3, balance_coef: float = 0.1,
                    z_loss_coef: float = 1e-5, threshold: float = 0.5) -> "MixtureOfRecursions":
        """The config's n_layers blocks as ``first`` unique blocks, the shared blocks, ``last`` unique blocks."""
        for name, count in (("first", first), ("last", last)):
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                raise ValueError(f"depth_kwargs {name} must be a number of blocks >= 0, got {count!r}")
        if first + last >= config.n_layers:
            raise ValueError(f"first={first} + last={last} unique blocks leave none of the n_layers="
                             f"{config.n_layers} blocks to share")
        blocks = [config_block(config, i) for i in range(config.n_layers)]
        return cls(blocks[first: config.n_layers - last], n_recursions, router, blocks[:first],
                   blocks[config.n_layers - last:], kv_sharing, capacities, alpha, router_temperature, bce_coef,
                   balance_coef, z_loss_coef, threshold)

    # -------------------------------------------------------------------------------------- interface

    def applications_per_token(self) -> float:
        """Block applications per token in the last forward/step: first + K * mean recursions + last."""
        if self.mean_recursions is None:
            raise ValueError("applications_per_token is known after a forward or step; none has run yet")
        return len(self.first) + len(self.shared) * self.mean_recursions + len(self.last)

    def init_state(self, batch_size, device=None, dtype=None) -> MoRState:
        def shared_state(r, block):
            if block.mixer.kv_attention:
                return None if (self.kv_sharing and r > 0) else RecursionKVCache()
            return block.mixer.init_state(batch_size, device, dtype)

        return MoRState(tuple(b.mixer.init_state(batch_size, device, dtype) for b in self.first),
                        tuple(tuple(shared_state(r, b) for b in self.shared) for r in range(self.n_recursions)),
                        tuple(b.mixer.init_state(batch_size, device, dtype) for b in self.last), 0)

    # ---------------------------------------------------------------------------------------- the pass

    def run(self, x: torch.Tensor, state: MoRState, step: bool) -> tuple[torch.Tensor, MoRState]:
        """x (B, T, d_model), or (B, d_model) with step -> the same shape and the state after these tokens.

        Expert choice routes by top-k per sequence in training mode and by the causal threshold in
        eval mode (and always in step)."""
        self._check_state(state)
        if step:
            x = x.unsqueeze(1)
        first, recursions, last = list(state.first), [list(r) for r in state.recursions], list(state.last)
        positions = state.offset + torch.arange(x.shape[1], device=x.device)
        for i, block in enumerate(self.first):
            x, first[i] = self._unique_block(block, x, first[i], step)
        recurse = self._expert_choice if self.router_kind == "expert" else self._token_choice
        x, active, aux = recurse(x, positions, recursions, step)
        for i, block in enumerate(self.last):
            x, last[i] = self._unique_block(block, x, last[i], step)
        self.last_active = active.detach()
        self.mean_recursions = float(active.sum()) / max(1, active.shape[0] * active.shape[1])
        self.aux_loss = aux if (self.training and not step) else None
        new_state = MoRState(tuple(first), tuple(tuple(r) for r in recursions), tuple(last), state.offset + x.shape[1])
        return (x.squeeze(1) if step else x), new_state

    @staticmethod
    def _unique_block(block: Block, x: torch.Tensor, state: Any, step: bool) -> tuple[torch.Tensor, Any]:
        """A first/last block on x (B, T, d); with ``step`` (T = 1) through its step form."""
        if step:
            y, state = block.step(x[:, 0], state)
            return y.unsqueeze(1), state
        return block(x, state)

    def _expert_choice(self, h: torch.Tensor, positions: torch.Tensor, states: list, step: bool):
        """h (B, T, d) -> (h after the recursions, active (B, T, N_r), aux loss)."""
        B, T, _ = h.shape
        top_k = self.training and not step
        candidates = torch.ones(B, T, dtype=torch.bool, device=h.device)
        active, bce, z = [], h.new_zeros(()), h.new_zeros(())
        for r, router in enumerate(self.routers):
            logits = router(h / self.router_temperature).squeeze(-1)  # (B, T)
            g = self.alpha * torch.sigmoid(logits)
            if self.capacities[r] >= 1:
                selected = candidates
            elif top_k:
                k = max(1, math.floor(self.capacities[r] * T + 1e-9))
                chosen = g.masked_fill(~candidates, -1.0).topk(k, dim=1).indices
                selected = torch.zeros_like(candidates).scatter(1, chosen, True)
            else:
                selected = candidates & (torch.sigmoid(logits) >= self.threshold)
            if top_k:
                targets = selected[candidates].to(logits.dtype)
                bce = bce + F.binary_cross_entropy_with_logits(logits[candidates], targets)
                z = z + logits[candidates].square().mean()
            f = self._recursion(h, selected, positions, states, r, step)
            h = torch.where(selected.unsqueeze(-1), h + g.unsqueeze(-1) * f, h)
            candidates = selected
            active.append(selected)
        aux = self.bce_coef * bce + self.z_loss_coef * z
        return h, torch.stack(active, -1), aux

    def _token_choice(self, h0: torch.Tensor, positions: torch.Tensor, states: list, step: bool):
        """h0 (B, T, d) -> (output, active (B, T, N_r), aux loss)."""
        logits = self.routers[0](h0 / self.router_temperature)  # (B, T, N_r)
        probs = self.alpha * torch.softmax(logits, -1)
        w, depth = probs.max(-1)  # top-1: token t takes recursions 0..depth_t
        h, out, active = h0, h0, []
        for r in range(self.n_recursions):
            selected = depth >= r
            f = self._recursion(h, selected, positions, states, r, step)
            out = torch.where((depth == r).unsqueeze(-1), h0 + w.unsqueeze(-1) * f, out)
            h = torch.where(selected.unsqueeze(-1), f, h)
            active.append(selected)
        N = self.n_recursions
        fraction = F.one_hot(depth, N).to(probs.dtype).mean((0, 1))
        balance = N * (fraction * probs.mean((0, 1))).sum()
        z = torch.logsumexp(logits, -1).square().mean()
        return out, torch.stack(active, -1), self.balance_coef * balance + self.z_loss_coef * z

    def _recursion(self, h: torch.Tensor, selected: torch.Tensor, positions: torch.Tensor, states: list, r: int,
                   step: bool) -> torch.Tensor:
        """f(h) at the selected tokens (B, T, d) (other entries meaningless); replaces the entries of the
        (local) list ``states[r]`` by the recursion's new states.

        The selected tokens of each row are gathered, in causal order, into right-padded rows, run
        through the K shared blocks with recursion r's states, and scattered back.
        """
        B, T, d = h.shape
        counts = selected.sum(1)
        n = int(counts.max()) if B else 0
        if n == 0:
            return h
        order = torch.sort((~selected).to(torch.int8), dim=1, stable=True).indices[:, :n]  # selected first
        valid = torch.arange(n, device=h.device) < counts.unsqueeze(1)
        x = h.gather(1, order.unsqueeze(-1).expand(B, n, d))
        pos = positions[order]
        for k, block in enumerate(self.shared):
            if block.mixer.kv_attention:
                sharing = self.kv_sharing and r > 0
                shared_kv = states[0][k] if sharing else None
                cache = states[r][k]
                x, cache = attention_block(block, x, lambda u, block=block, cache=cache: routed_attention(
                    block.mixer, u, pos, valid, cache, shared_kv))
                states[r][k] = None if sharing else cache
            else:
                x, states[r][k] = recurrent_block_rows(block, x, counts, states[r][k], step)
        return h.scatter(1, order.unsqueeze(-1).expand(B, n, d), x)

    # ------------------------------------------------------------------------------------------ checks

    @staticmethod
    def _check_blocks(name: str, blocks, d_model: int | None, allow_empty: bool = True) -> int | None:
        if blocks is None and allow_empty:
            return d_model
        if not isinstance(blocks, (list, tuple, nn.ModuleList)) or (not allow_empty and len(blocks) == 0):
            raise ValueError(f"{name} must be a {'non-empty ' if not allow_empty else ''}list of recurlab Blocks, "
                             f"got {type(blocks).__name__}{f' of {len(blocks)}' if hasattr(blocks, '__len__') else ''}")
        for i, block in enumerate(blocks):
            if not isinstance(block, Block):
                raise ValueError(f"{name}[{i}] must be a recurlab.models.block.Block, got {type(block).__name__}")
            if block.mixer.reads_kv:
                raise ValueError(f"depth 'mor' cannot run token mixer {mixer_name(block.mixer)!r} ({name}[{i}]): it "
                                 f"reads another layer's KV cache, which only the 'stack' depth module wires "
                                 f"(kv_layer, YOCO's and SambaY's layout)")
            if block.mixer.reads_memory:
                raise ValueError(f"depth 'mor' cannot run token mixer {mixer_name(block.mixer)!r} ({name}[{i}]): it "
                                 f"reads another layer's memory read-out, which only the 'stack' depth module wires "
                                 f"(memory_layer, SambaY's layout)")
            d_model = block.mixer.d_model if d_model is None else d_model
            if block.mixer.d_model != d_model:
                raise ValueError(f"{name}[{i}] has d_model={block.mixer.d_model}, expected {d_model} like the others")
        return d_model

    @staticmethod
    def _check_capacities(capacities, router: str, n_recursions: int) -> tuple[float, ...]:
        if router == "token":
            if capacities is not None:
                raise ValueError("capacities apply to router='expert'; token choice fixes each token's depth itself")
            return (1.0,) * n_recursions
        if capacities is None:
            return tuple((n_recursions - r) / n_recursions for r in range(n_recursions))
        caps = tuple(float(c) for c in capacities)
        if len(caps) != n_recursions or not all(0 < c <= 1 for c in caps) or any(b > a for a, b in zip(caps, caps[1:])):
            raise ValueError(f"capacities must hold n_recursions={n_recursions} non-increasing fractions in (0, 1], "
                             f"got {list(capacities)}")
        return caps

    def _check_state(self, state: MoRState) -> MoRState:
        shape = (len(state.first), len(state.recursions), len(state.last))
        if shape != (len(self.first), self.n_recursions, len(self.last)) or any(
                len(s) != len(self.shared) for s in state.recursions):
            raise ValueError(f"state does not fit this model: (first, recursions, last) = {shape}, expected "
                             f"({len(self.first)}, {self.n_recursions}, {len(self.last)}) with {len(self.shared)} "
                             f"shared block states per recursion")
        return state
