"""A residual block: pre-norm token mixer, then pre-norm channel mixer (as in GPT-2 / LLaMA).

    x = x + mixer(RMSNorm(x))
    x = x + channel_mixer(RMSNorm(x))

A block is ``(x, state) -> (x, state)``; its state is its token mixer's. Extra inputs a mixer
takes (``memory=`` for a gated memory unit, ``group=`` for sliced attention) pass through. What is
shared between blocks (SambaY's memory read-out) is wired by the depth module, never by the block.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .. import layers
from ..layers import TokenMixer
from ..state import State

if TYPE_CHECKING:
    from .config import ModelConfig


class Block(nn.Module):
    def __init__(self, mixer: TokenMixer, channel_mixer: nn.Module | None = None, norm_eps: float = 1e-5,
                 norm: str = "rmsnorm"):
        super().__init__()
        from .config import make_norm

        if not isinstance(mixer, TokenMixer):
            raise ValueError(f"mixer must be a recurlab TokenMixer, got {type(mixer).__name__}")
        self.mixer = mixer
        self.mixer_norm = make_norm(norm, mixer.d_model, norm_eps)
        self.channel_mixer = channel_mixer
        self.channel_norm = make_norm(norm, mixer.d_model, norm_eps) if channel_mixer is not None else None

    @property
    def d_model(self) -> int:
        return self.mixer.d_model

    def forward(self, x: torch.Tensor, state: State | None = None, **mixer_inputs: Any) -> tuple[torch.Tensor, State]:
        """x (B, T, d) -> (x, state)."""
        y, state = self.mixer(self.mixer_norm(x), state, **mixer_inputs)
        return self.channel(x + y), state

    def step(self, x_t: torch.Tensor, state: State | None = None, **mixer_inputs: Any) -> tuple[torch.Tensor, State]:
        """x_t (B, d) -> (x_t, state) for one token."""
        y, state = self.mixer.step(self.mixer_norm(x_t), state, **mixer_inputs)
        return self.channel(x_t + y), state

    def run(self, x: torch.Tensor, state: State | None, step: bool, **mixer_inputs: Any) -> tuple[torch.Tensor, State]:
        """``step(x, state)`` if step else ``forward(x, state)``."""
        return (self.step if step else self.forward)(x, state, **mixer_inputs)

    def run_with_memory(self, x: torch.Tensor, state: State | None, step: bool
                        ) -> tuple[torch.Tensor, State, torch.Tensor]:
        """As run, plus the mixer's memory read-out ((B, T, memory_dim), or (B, memory_dim) with step)."""
        h = self.mixer_norm(x)
        y, state, memory = (self.mixer.step_with_memory if step else self.mixer.forward_with_memory)(h, state)
        return self.channel(x + y), state, memory

    def channel(self, x: torch.Tensor) -> torch.Tensor:
        """The channel-mixer half: x + channel_mixer(RMSNorm(x)) (x itself without a channel mixer)."""
        return x if self.channel_mixer is None else x + self.channel_mixer(self.channel_norm(x))


def make_block(mixer: str, d_model: int, channel_mixer: str | None = "swiglu", mixer_kwargs: dict | None = None,
               channel_kwargs: dict | None = None, norm_eps: float = 1e-5, norm: str = "rmsnorm") -> Block:
    """A pre-norm residual block (token mixer + channel mixer) of the named registered units."""
    token = layers.build(mixer, d_model, kind="token", **(mixer_kwargs or {}))
    channel = layers.build(channel_mixer, d_model, kind="channel", **(channel_kwargs or {})) if channel_mixer else None
    return Block(token, channel, norm_eps, norm)


def config_block(config: "ModelConfig", layer: int, channel_overrides: dict | None = None,
                 **mixer_defaults: Any) -> Block:
    """Block ``layer`` of ``config``: its token mixer (with the config's arguments for that mixer, then
    ``mixer_defaults`` and the layer depth for mixers whose initialisation depends on it, unless the
    config sets them; ``config.layer_kwargs[layer]`` overrides the per-name arguments) and the config's channel mixer (its arguments updated by ``channel_overrides``)."""
    name = config.mixers[layer]
    kwargs = config.mixer_arguments(layer)
    for key, value in (("layer_idx", layer), ("n_layers", config.n_layers), *mixer_defaults.items()):
        if layers.accepts(name, key):
            kwargs.setdefault(key, value)
    channel_kwargs = {**config.channel_kwargs, **(channel_overrides or {})}
    return make_block(name, config.d_model, config.channel_mixer, kwargs, channel_kwargs, config.norm_eps, config.norm)


def check_self_contained(blocks, what: str, depth: str) -> None:
    """A ValueError unless every block's mixer is self-contained (reads no other layer's memory); ``what`` names
    the list (e.g. "blocks") and ``depth`` the depth module that refuses it."""
    for i, block in enumerate(blocks):
        if block.mixer.reads_kv:
            raise ValueError(f"depth {depth!r} cannot run token mixer {mixer_name(block.mixer)!r} ({what}[{i}]): it "
                             f"reads another layer's KV cache, which only the 'stack' depth module wires (kv_layer, "
                             f"YOCO's and SambaY's layout)")
        if block.mixer.reads_memory:
            raise ValueError(f"depth {depth!r} cannot run token mixer {mixer_name(block.mixer)!r} ({what}[{i}]): it "
                             f"reads another layer's memory read-out, which only the 'stack' depth module wires "
                             f"(memory_layer, SambaY's layout)")


def mixer_name(mixer: TokenMixer) -> str:
    """The registry name of a token mixer (its class name if it is not registered)."""
    return getattr(type(mixer), "registry_name", type(mixer).__name__)
