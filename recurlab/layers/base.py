"""The contract every token mixer meets, and input checks shared by the layers.

A token mixer maps (B, T, d_model) to (B, T, d_model) and carries a state (recurlab.state):

    y, state = mixer(x, state)          # whole sequence (parallel form); state None = the start
    y_t, state = mixer.step(x_t, state) # one token (decoding form), x_t: (B, d_model)
    state = mixer.init_state(batch_size, device, dtype)

Running on x[:, :t] then x[:, t:] with the carried state equals running on x, the step loop
equals the parallel form, the given state is never changed, and an empty input (B = 0 or T = 0)
gives an empty output and passes the state through (tests/layers check all of it for every
registered mixer).

A subclass writes the unit's equations in ``mix(x, state)`` and ``mix_step(x_t, state)``;
``forward`` and ``step`` here check the input, resolve ``state=None`` and handle empty inputs
first, so every mixer validates the same way.

Capabilities. Code that needs to know what a mixer can do reads these class attributes, never
its type:

    produces_memory   it can hand a *memory read-out* (B, [T,] memory_dim) to later layers
                      (SambaY's gated memory units): ``forward_with_memory`` / ``step_with_memory``,
                      written as ``mix_with_memory`` / ``mix_step_with_memory``
    reads_memory      it consumes one: ``forward`` / ``step`` take ``memory=`` of width memory_dim
    reads_kv          it attends over another layer's KV cache: ``forward`` / ``step`` take ``kv=``, the
                      :class:`recurlab.ops.KVCache` of a full-attention layer after the current tokens
                      (YOCO's and SambaY's cross-decoder; layers/cross_attention.py)
    kv_attention      softmax attention over a :class:`recurlab.ops.KVCache` with projections
                      q_proj, k_proj, v_proj, o_proj, rotary positions (`rotate(x, positions)`), n_heads,
                      n_kv_heads, head_dim and window: Mixture-of-Recursions re-runs it on routed tokens
    sliced_groups     ``forward`` / ``step`` take ``group=(size, offset)`` (sliced group attention)
    tree_attention    ``forward`` takes ``tree=TokenTree(parents)``: the tokens are a tree, each seeing the
                      state's tokens and its ancestors (layers/tree.py; full attention only)
    prefix_states     ``forward`` takes ``prefix_states=True`` and then returns, in place of the final state,
                      a :class:`recurlab.state.PrefixStates`: the state after every prefix of x, taken from
                      the parallel form (written as ``mix_prefix_states``). Speculative decoding's verifier
                      continues from any accepted prefix with it, without re-running the tokens
                      (recurlab/decoding/verify.py). Diagonal scans (minGRU, minLSTM) and gated linear
                      attention (gla, liger_gla) have it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..ops import _checks
from ..state import NoState, PrefixStates, State, check_state


class TokenMixer(nn.Module):
    """Base class of token mixers: (B, T, d_model) -> (B, T, d_model) with a state."""

    state_type: type[State] = State  # the class of this mixer's states
    produces_memory: bool = False
    reads_memory: bool = False
    reads_kv: bool = False
    kv_attention: bool = False
    sliced_groups: bool = False
    tree_attention: bool = False
    prefix_states: bool = False
    memory_dim: int | None = None  # width of the memory read-out produced (produces_memory) or read (reads_memory)

    def __init__(self, d_model: int):
        super().__init__()
        if not isinstance(d_model, int) or isinstance(d_model, bool) or d_model < 1:
            raise ValueError(f"d_model must be a positive int, got {d_model!r}")
        self.d_model = d_model

    # ------------------------------------------------------------------ the interface

    def forward(self, x: torch.Tensor, state: State | None = None, **inputs: Any) -> tuple[torch.Tensor, State]:
        """x (B, T, d_model) -> y (B, T, d_model) and the state after these tokens (with
        ``prefix_states=True``: a :class:`PrefixStates` of the state after every prefix)."""
        self.check_sequence(x)
        self.check_inputs(inputs)
        state = self.resolve_state(state, x)
        prefix = inputs.pop("prefix_states", False)
        if prefix not in (True, False):
            raise ValueError(f"prefix_states must be True or False, got {prefix!r}")
        if x.shape[0] == 0 or x.shape[1] == 0:
            self.check_memory(inputs.get("memory"), x)
            if not prefix:
                return torch.zeros_like(x), state
            T = x.shape[1]  # B = 0: every prefix's state is the (empty) given one
            along = None if T == 0 else state.map_tensors(lambda t: t.unsqueeze(1).expand(t.shape[0], T, *t.shape[1:]))
            return torch.zeros_like(x), PrefixStates(state, along, T)
        return self.mix_prefix_states(x, state, **inputs) if prefix else self.mix(x, state, **inputs)

    def step(self, x_t: torch.Tensor, state: State | None = None, **inputs: Any) -> tuple[torch.Tensor, State]:
        """x_t (B, d_model) -> y_t (B, d_model) and the state after this token."""
        self.check_token(x_t)
        if "prefix_states" in inputs:
            raise ValueError("prefix_states= is for the parallel form (forward), not step")
        self.check_inputs(inputs)
        state = self.resolve_state(state, x_t)
        if x_t.shape[0] == 0:
            return torch.zeros_like(x_t), state
        return self.mix_step(x_t, state, **inputs)

    def forward_with_memory(self, x: torch.Tensor, state: State | None = None
                            ) -> tuple[torch.Tensor, State, torch.Tensor]:
        """As forward, plus the memory read-out (B, T, memory_dim) for later layers."""
        self._check_produces_memory()
        self.check_sequence(x)
        state = self.resolve_state(state, x)
        if x.shape[0] == 0 or x.shape[1] == 0:
            return torch.zeros_like(x), state, x.new_zeros(*x.shape[:2], self.memory_dim)
        return self.mix_with_memory(x, state)

    def step_with_memory(self, x_t: torch.Tensor, state: State | None = None
                         ) -> tuple[torch.Tensor, State, torch.Tensor]:
        """As step, plus this token's memory read-out (B, memory_dim)."""
        self._check_produces_memory()
        self.check_token(x_t)
        state = self.resolve_state(state, x_t)
        if x_t.shape[0] == 0:
            return torch.zeros_like(x_t), state, x_t.new_zeros(0, self.memory_dim)
        return self.mix_step_with_memory(x_t, state)

    def init_state(self, batch_size: int, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> State:
        """The state before the first token (what ``state=None`` means)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ what a unit writes

    def mix(self, x: torch.Tensor, state: State, **inputs: Any) -> tuple[torch.Tensor, State]:
        """The unit's parallel form on checked, non-empty x with a resolved state."""
        if self.produces_memory:
            y, state, _ = self.mix_with_memory(x, state)
            return y, state
        raise NotImplementedError

    def mix_step(self, x_t: torch.Tensor, state: State, **inputs: Any) -> tuple[torch.Tensor, State]:
        """The unit's one-token form on a checked, non-empty x_t with a resolved state."""
        if self.produces_memory:
            y_t, state, _ = self.mix_step_with_memory(x_t, state)
            return y_t, state
        raise NotImplementedError

    def mix_prefix_states(self, x: torch.Tensor, state: State, **inputs: Any) -> tuple[torch.Tensor, PrefixStates]:
        """As ``mix``, returning the state after every prefix of x (mixers with ``prefix_states``)."""
        raise NotImplementedError

    def mix_with_memory(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State, torch.Tensor]:
        raise NotImplementedError

    def mix_step_with_memory(self, x_t: torch.Tensor, state: State) -> tuple[torch.Tensor, State, torch.Tensor]:
        raise NotImplementedError

    # ------------------------------------------------------------------ checks

    def resolve_state(self, state: State | None, x: torch.Tensor) -> State:
        """``state``, or the initial state for x's batch, device and dtype when None; a ValueError for
        anything that is not this mixer's state type."""
        state = check_state(state, self.state_type, type(self).__name__)
        return self.init_state(x.shape[0], x.device, x.dtype) if state is None else state

    def check_inputs(self, inputs: dict) -> None:
        """A ValueError for an extra input this mixer's capabilities do not take (memory=, group=)."""
        takes = {"memory": self.reads_memory, "kv": self.reads_kv, "group": self.sliced_groups, "tree": self.tree_attention,
                 "prefix_states": self.prefix_states}
        for key in inputs:
            if not takes.get(key, False):
                name = getattr(self, "registry_name", type(self).__name__)
                hint = {"group": "; sliced groups are the sliced_attention mixer",
                        "memory": "; only mixers that read a memory (gmu) take one",
                        "kv": "; only cross_attention reads another layer's KV cache",
                        "tree": "; only full softmax attention scores a token tree",
                        "prefix_states": "; only diagonal scans and gated linear attention give the state after "
                                         "every prefix"}.get(key, "")
                raise ValueError(f"{name} takes no {key}={hint}")

    def check_sequence(self, x: torch.Tensor, name: str = "x") -> None:
        """Raise ValueError unless x is a floating (B, T, d_model) tensor."""
        _checks.check_tensor(name, x, ranks=(3,), layout=f"(B, T, d_model={self.d_model})")
        if x.shape[-1] != self.d_model:
            raise ValueError(f"{name} must have shape (B, T, d_model={self.d_model}), got {tuple(x.shape)}")

    def check_token(self, x_t: torch.Tensor, name: str = "x_t") -> None:
        """Raise ValueError unless x_t is a floating (B, d_model) tensor."""
        _checks.check_tensor(name, x_t, ranks=(2,), layout=f"(B, d_model={self.d_model})")
        if x_t.shape[-1] != self.d_model:
            raise ValueError(f"{name} must have shape (B, d_model={self.d_model}), got {tuple(x_t.shape)}")

    def check_memory(self, memory: torch.Tensor | None, x: torch.Tensor) -> None:
        """For a mixer that reads_memory: a ValueError unless memory is (x's leading dims, memory_dim)."""
        if not self.reads_memory:
            if memory is not None:
                raise ValueError(f"{type(self).__name__} reads no memory; got memory=")
            return
        expected = tuple(x.shape[:-1]) + (self.memory_dim,)
        if memory is None:
            raise ValueError(f"{getattr(self, 'registry_name', type(self).__name__)} needs memory=: the read-out {expected} of an earlier layer; "
                             "in a model set memory_layer to a layer whose mixer produces one")
        _checks.check_tensor("memory", memory, ranks=(x.dim(),), layout=str(expected))
        if tuple(memory.shape) != expected:
            raise ValueError(f"memory must have shape {expected} (x's leading dims, memory_dim), "
                             f"got {tuple(memory.shape)}")

    def _check_produces_memory(self) -> None:
        if not self.produces_memory:
            raise NotImplementedError(f"{type(self).__name__} does not produce a memory read-out")

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}"


class StatelessMixer(TokenMixer):
    """A token mixer that keeps no state across tokens (its state is :class:`recurlab.state.NoState`)."""

    state_type = NoState

    def init_state(self, batch_size, device=None, dtype=None) -> NoState:
        return NoState()


class ChannelMixer(nn.Module):
    """Base class of channel mixers: position-wise (B, T, d_model) -> (B, T, d_model), no state."""

    def __init__(self, d_model: int):
        super().__init__()
        if not isinstance(d_model, int) or isinstance(d_model, bool) or d_model < 1:
            raise ValueError(f"d_model must be a positive int, got {d_model!r}")
        self.d_model = d_model

    def check_input(self, x: torch.Tensor) -> None:
        _checks.check_tensor("x", x, ranks=(2, 3), layout=f"(B, T, d_model={self.d_model}) or (B, d_model)")
        if x.shape[-1] != self.d_model:
            raise ValueError(f"x must have last dimension d_model={self.d_model}, got shape {tuple(x.shape)}")
