"""Depth modules: what maps the residual stream through a network's depth, and their registry.

Every language model in recurlab is ``embedding -> depth module -> RMSNorm -> head``
(:class:`recurlab.models.CausalLM`). The depth module is where architectures differ:

    stack                N distinct blocks, applied once each (SambaY's shared memory wired here)
    recursive, relaxed   K blocks looped (SReT; Relaxed Recursive Transformers)         recurlab.recursion
    mor                  blocks recursed per token as a router decides (Mixture-of-Recursions)
    recurrent_depth      prelude / a core looped a sampled number of times / coda (Huginn)
    rmoe                 blocks with MoE channel mixers routed by a GRU over depth (RMoE)

The contract (tested for every registered depth module):

    y, state = depth(x, state)           # x, y: (B, T, d_model); state None = the start
    y_t, state = depth.step(x_t, state)  # x_t, y_t: (B, d_model), one token
    y_last, state = depth.prefill(x)     # forward's last position (B, d_model) and its state: for decoding
    state = depth.init_state(batch_size, device, dtype)    # a recurlab.state.State
    depth.aux_loss                       # a scalar set by the last forward (router losses), or None

States follow :mod:`recurlab.state` (values, batch first, ``select``, ``to``, ``detach``); an empty
input (B = 0 or T = 0) is returned as it is with the state passed through.

Registry: ``@register_depth("name")`` on a class with ``from_config(config, *, ...) -> DepthModule``,
whose keyword-only arguments are what ``ModelConfig.depth_kwargs`` may set.
Depth modules live in this package (``stack``) and in :mod:`recurlab.recursion`, which is imported
on the first lookup so that ``recurlab.models`` does not import it at load time (it imports us).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from ..ops import _checks
from ..state import State, check_state

if TYPE_CHECKING:
    from .config import ModelConfig


@dataclass(frozen=True)
class BlockStates(State):
    """One token-mixer state per block application, in the order the blocks are applied."""

    blocks: tuple[State, ...]


class DepthModule(nn.Module):
    """Base class of depth modules: (B, T, d_model) -> (B, T, d_model) with a state and an auxiliary loss.

    A subclass writes ``run(x, state, step, **inputs)`` (x is (B, T, d) or, with step, (B, d); the
    state already resolved) and ``init_state``; ``forward`` and ``step`` here check the input first.
    """

    state_type: type[State] = State

    def __init__(self, d_model: int):
        super().__init__()
        if not isinstance(d_model, int) or isinstance(d_model, bool) or d_model < 1:
            raise ValueError(f"d_model must be a positive int, got {d_model!r}")
        self.d_model = d_model
        self.aux_loss: torch.Tensor | None = None

    @classmethod
    def from_config(cls, config: "ModelConfig", **depth_kwargs: Any) -> "DepthModule":
        """Build from a ModelConfig; its keyword-only arguments are what ``depth_kwargs`` may set."""
        raise NotImplementedError(f"{cls.__name__} cannot be built from a ModelConfig")

    def forward(self, x: torch.Tensor, state: State | None = None, **inputs: Any) -> tuple[torch.Tensor, State]:
        """x (B, T, d_model) -> (B, T, d_model) and the state after these tokens."""
        self._check(x, "x", 3, "(B, T, d_model)")
        state = self.resolve_state(state, x)
        if x.shape[0] == 0 or x.shape[1] == 0:
            self.aux_loss = None
            return x, state
        return self.run(x, state, False, **inputs)

    def step(self, x_t: torch.Tensor, state: State | None = None, **inputs: Any) -> tuple[torch.Tensor, State]:
        """x_t (B, d_model) -> (B, d_model) for one token, and the state after it."""
        self._check(x_t, "x_t", 2, "(B, d_model)")
        state = self.resolve_state(state, x_t)
        if x_t.shape[0] == 0:
            self.aux_loss = None
            return x_t, state
        return self.run(x_t, state, True, **inputs)

    def run(self, x: torch.Tensor, state: State, step: bool, **inputs: Any) -> tuple[torch.Tensor, State]:
        raise NotImplementedError

    def prefill(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """A prompt x (B, T >= 1, d_model) -> the output at its last position (B, d_model) and the state after it:
        what decoding needs from a prompt. Here ``forward``'s last position; a depth module that can skip work
        for the other positions overrides it (the stack with a shared KV cache: YOCO's early exit)."""
        if x.dim() == 3 and x.shape[1] == 0:
            raise ValueError("prefill needs a prompt of at least one token, got T = 0")
        y, state = self.forward(x, state)
        return y[:, -1], state

    def init_state(self, batch_size: int, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> State:
        """The state before the first token (what ``state=None`` means)."""
        raise NotImplementedError

    def resolve_state(self, state: State | None, x: torch.Tensor) -> State:
        state = check_state(state, self.state_type, type(self).__name__)
        return self.init_state(x.shape[0], x.device, x.dtype) if state is None else state

    def num_parameters(self) -> "OrderedDict[str, int]":
        """Parameter counts by part (override for a finer split)."""
        return OrderedDict(depth=sum(p.numel() for p in self.parameters()))

    def _check(self, x, name: str, rank: int, layout: str) -> None:
        _checks.check_tensor(name, x, ranks=(rank,), layout=f"{layout[:-1]}={self.d_model})")
        if x.shape[-1] != self.d_model:
            raise ValueError(f"{name} must have shape {layout[:-1]}={self.d_model}), got {tuple(x.shape)}")


# ---------------------------------------------------------------------------------------------- registry

_DEPTH: dict[str, type[DepthModule]] = {}
_TINY: dict[str, dict[str, Any]] = {}
_DISCOVERED = False


def register_depth(name: str, tiny: dict[str, Any] | None = None) -> Callable[[type[DepthModule]], type[DepthModule]]:
    """Class decorator adding a depth module to the registry under ``name``.

    ``tiny``: ModelConfig fields (n_layers, depth_kwargs, channel_mixer, ...) of a tiny instance, with
    which the contract tests run it (d_model 16, with every registered token mixer).
    """

    def decorate(cls: type[DepthModule]) -> type[DepthModule]:
        if name in _DEPTH and _DEPTH[name] is not cls:
            raise ValueError(f"depth module name {name!r} is already registered to {_DEPTH[name].__name__}")
        _DEPTH[name] = cls
        _TINY[name] = dict(tiny or {})
        cls.registry_name = name
        return cls

    return decorate


def _discover() -> None:
    """Import the modules that register depth modules (once)."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    importlib.import_module(f"{__package__}.stack")
    recursion = importlib.import_module("recurlab.recursion")
    for module in pkgutil.iter_modules(recursion.__path__):
        importlib.import_module(f"recurlab.recursion.{module.name}")


def depth_names() -> list[str]:
    """Registered depth-module names."""
    _discover()
    return list(_DEPTH)


def tiny_depth(name: str) -> dict[str, Any]:
    """The ModelConfig fields of a tiny instance of depth module ``name`` (for tests)."""
    depth_class(name)
    return dict(_TINY[name])


def depth_class(name: str) -> type[DepthModule]:
    _discover()
    if name not in _DEPTH:
        raise ValueError(f"unknown depth module {name!r}; valid names: {', '.join(sorted(_DEPTH))}")
    return _DEPTH[name]


def depth_arguments(name: str) -> dict[str, inspect.Parameter]:
    """The keyword arguments ``ModelConfig.depth_kwargs`` may set for depth module ``name`` (those of its
    ``from_config``), by name."""
    params = inspect.signature(depth_class(name).from_config).parameters
    return {k: p for k, p in params.items() if p.kind is p.KEYWORD_ONLY}


def check_depth_kwargs(name: str, kwargs: dict) -> None:
    """A ValueError naming unknown or missing ``depth_kwargs`` of depth module ``name``."""
    valid = depth_arguments(name)
    unknown = [k for k in kwargs if k not in valid]
    if unknown:
        raise ValueError(f"depth {name!r} takes no argument(s) {', '.join(unknown)} in depth_kwargs; it accepts: "
                         f"{', '.join(valid) or 'none'}")
    missing = [k for k, p in valid.items() if p.default is inspect.Parameter.empty and k not in kwargs]
    if missing:
        raise ValueError(f"depth {name!r} needs depth_kwargs {', '.join(missing)}")


def build_depth(config: "ModelConfig") -> DepthModule:
    """The depth module ``config.depth`` built from the config (``config.depth_kwargs`` as its arguments)."""
    check_depth_kwargs(config.depth, config.depth_kwargs)
    return depth_class(config.depth).from_config(config, **config.depth_kwargs)
