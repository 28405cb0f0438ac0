"""Layers by name: ``build("gla", d_model=256)`` so that configs and the CLI can pick any unit.

Adding a layer is one file under ``recurlab/layers/`` with a ``@register`` line on its class: the
package imports every module in its folder, the contract tests run every registered mixer with
the ``tiny`` arguments it registers, and the CLI offers its name.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

from torch import nn


@dataclass(frozen=True)
class LayerInfo:
    name: str
    kind: str  # "token" or "channel"
    cls: type
    paper: str
    state: str  # decoding state, in words (per layer, for batch size 1)
    parallel: bool  # has a parallel-over-time training form
    tiny: dict  # constructor arguments of a tiny instance (d_model 16) for the tests

    def summary(self) -> str:
        return f"{self.name:<10} {self.kind:<7} parallel={'yes' if self.parallel else 'no ':<3}  state: {self.state:<38} {self.paper}"


_REGISTRY: dict[str, LayerInfo] = {}


def register(name: str, *, kind: str, paper: str, state: str = "none", parallel: bool = True,
             tiny: dict | None = None) -> Callable[[type], type]:
    """Class decorator adding a layer to the registry under ``name``.

    Args:
        kind: "token" (a :class:`TokenMixer`) or "channel" (a :class:`ChannelMixer`).
        paper: the paper it implements, as "Authors year, title".
        state: its decoding state in words (shown by ``recurlab layers``).
        parallel: whether it has a parallel-over-time training form.
        tiny: constructor arguments (besides d_model=16) that make an instance small enough for the
            contract tests to run in milliseconds, e.g. ``{"n_heads": 2}``.
    """
    if kind not in ("token", "channel"):
        raise ValueError(f"kind must be 'token' or 'channel', got {kind!r}")

    def decorate(cls: type) -> type:
        if name in _REGISTRY:
            raise ValueError(f"layer name {name!r} is already registered to {_REGISTRY[name].cls.__name__}")
        _REGISTRY[name] = LayerInfo(name, kind, cls, paper, state, parallel, dict(tiny or {}))
        cls.registry_name = name
        return cls

    return decorate


def names(kind: str | None = None) -> list[str]:
    """Registered layer names, optionally only token or channel mixers."""
    return [n for n, info in _REGISTRY.items() if kind is None or info.kind == kind]


def info(name: str) -> LayerInfo:
    if name not in _REGISTRY:
        raise ValueError(f"unknown layer {name!r}; valid names: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def build(name: str, d_model: int, *, kind: str | None = None, **kwargs) -> nn.Module:
    """Construct the layer registered as ``name``.

    Keyword arguments the layer's constructor does not accept raise a
    ValueError listing the ones it does.
    """
    if name not in _REGISTRY or (kind is not None and _REGISTRY[name].kind != kind):
        valid = names(kind)
        what = f"{kind} mixer" if kind else "layer"
        raise ValueError(f"unknown {what} {name!r}; valid names: {', '.join(sorted(valid))}")
    cls = _REGISTRY[name].cls
    params = inspect.signature(cls.__init__).parameters
    accepted = [p for p in params if p not in ("self", "d_model")]
    unknown = [k for k in kwargs if k not in params]
    if unknown:
        raise ValueError(f"{name} takes no argument(s) {', '.join(unknown)}; it accepts: {', '.join(accepted) or 'none'}")
    return cls(d_model, **kwargs)


def accepts(name: str, argument: str) -> bool:
    """Whether layer ``name``'s constructor takes ``argument`` (e.g. layer_idx)."""
    return argument in inspect.signature(info(name).cls.__init__).parameters
