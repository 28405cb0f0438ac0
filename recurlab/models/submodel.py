"""Nested sub-models of a language model that share its tensors (SortedNet, Valipour et al. 2023).

A sub-model of a ``stack`` :class:`~recurlab.models.CausalLM` keeps the first ``depth`` blocks and, in each of them,
the first ``width`` hidden units of the channel mixer; the embedding, the final norm and the head are the parent's:

    x_0 = embed(ids)
    x_{i+1} = block_i(x_i)                                   i < depth (the parent's blocks, unchanged mixers)
    channel mixer, width w of hidden H:
        mlp:        W_down[:, :w] act(W_up[:w] x)
        glu family: W_down[:, :w] (act(W_gate[:w] x) ⊙ W_value[:w] x)     (W_gate, W_value: rows 0.. and H.. of
                                                                          the parent's gate_and_value)
    logits = head(norm(x_depth))

Nothing is copied: the sub-model's modules are the parent's and its weight slices are views of the parent's
tensors, so a gradient through a sub-model lands in the parent's parameters. That is what SortedNet trains
(recurlab/compress/sorted.py): every sub-model at once, so that the first blocks and the first hidden units
carry the most (the network is "sorted"), and a smaller model is a prefix of the big one with no search.

    sub = model.submodel(depth=2, width=256)   # a CausalLM: forward, step, generate, bits per byte
    small = sub.extract()                      # a standalone copy of just those tensors (save, deploy)

Width covers the channel mixers (mlp, glu, swiglu, geglu); token mixers keep all their heads and channels.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.base import ChannelMixer
from ..layers.mlp import MLP, GatedLinearUnit
from .block import Block
from .causal_lm import CausalLM
from .config import ModelConfig
from .stack import Stack


def hidden_width(channel_mixer: nn.Module) -> int:
    """The hidden size H of a channel mixer a sub-model can narrow (mlp or the glu family)."""
    if isinstance(channel_mixer, MLP):
        return channel_mixer.up.out_features
    if isinstance(channel_mixer, GatedLinearUnit):
        return channel_mixer.down.in_features
    raise ValueError(f"width= narrows mlp, glu, swiglu or geglu channel mixers, not {type(channel_mixer).__name__}")


class PrefixChannel(ChannelMixer):
    """The first ``width`` hidden units of ``full`` (an mlp or glu-family channel mixer), computed from views of
    its weights: x (..., d_model) -> (..., d_model)."""

    def __init__(self, full: nn.Module, width: int):
        hidden = hidden_width(full)
        if not isinstance(width, int) or not 1 <= width <= hidden:
            raise ValueError(f"width must be an int in [1, {hidden}] (the channel mixer's hidden size), got {width!r}")
        super().__init__(full.d_model)
        self.full, self.width = full, width

    @property
    def registry_name(self) -> str:
        return f"{self.full.registry_name}[:{self.width}]"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        full, w = self.full, self.width
        if isinstance(full, MLP):
            hidden = full.activation(F.linear(x, full.up.weight[:w], _rows(full.up.bias, 0, w)))
        else:
            H = full.down.in_features
            gate = F.linear(x, full.gate_and_value.weight[:w], _rows(full.gate_and_value.bias, 0, w))
            value = F.linear(x, full.gate_and_value.weight[H:H + w], _rows(full.gate_and_value.bias, H, H + w))
            hidden = full.activation(gate) * value
        return F.linear(hidden, full.down.weight[:, :w], full.down.bias)

    def sliced_state(self) -> dict[str, torch.Tensor]:
        """The parameters of a standalone channel mixer of hidden size ``width`` (copies), by the full one's names."""
        full, w = self.full, self.width
        state = {}
        for name, tensor in full.state_dict().items():
            if name.startswith("down."):
                state[name] = tensor[:, :w] if name == "down.weight" else tensor
            elif name.startswith("gate_and_value."):
                H = full.down.in_features
                state[name] = torch.cat([tensor[:w], tensor[H:H + w]])
            else:  # up.weight, up.bias
                state[name] = tensor[:w]
        return {name: tensor.clone() for name, tensor in state.items()}

    def extra_repr(self) -> str:
        return f"width={self.width}"


def _rows(bias: torch.Tensor | None, start: int, stop: int) -> torch.Tensor | None:
    return None if bias is None else bias[start:stop]


def submodel_config(config: ModelConfig, depth: int, width: int | None) -> ModelConfig:
    """The config of the standalone model a sub-model equals: ``depth`` layers, channel mixers of hidden ``width``."""
    mixer = config.mixer if isinstance(config.mixer, str) else list(config.mixer[:depth])
    layer_kwargs = config.layer_kwargs if config.layer_kwargs is None else list(config.layer_kwargs[:depth])
    channel_kwargs = dict(config.channel_kwargs)
    if width is not None:
        channel_kwargs["hidden_size"] = width
    return dataclasses.replace(config, n_layers=depth, mixer=mixer, layer_kwargs=layer_kwargs,
                               channel_kwargs=channel_kwargs)


def check_nestable(model: CausalLM, depth: int | None, width: int | None) -> tuple[int, int | None]:
    """(depth, width) resolved (None: all blocks / the full width), or a ValueError naming what is wrong."""
    config = model.config
    if config.depth != "stack" or not isinstance(model.depth, Stack):
        raise ValueError(f"sub-models are prefixes of a 'stack' model's blocks; this model's depth module is "
                         f"{config.depth!r}")
    if model.depth.shares_layers:
        raise ValueError("sub-models of a model with memory or KV sharing (memory_layer / kv_layer: SambaY, YOCO) are "
                         "not supported: a gated memory unit or a cross-attention reads a layer that a shallower "
                         "sub-model may not have")
    n = len(model.depth.blocks)
    depth = n if depth is None else depth
    if not isinstance(depth, int) or isinstance(depth, bool) or not 1 <= depth <= n:
        raise ValueError(f"depth must be an int in [1, {n}] (the number of blocks), got {depth!r}")
    if width is not None:
        if config.channel_mixer is None:
            raise ValueError("width= narrows the channel mixers, and this model has none (channel_mixer=None)")
        hidden = hidden_width(model.depth.blocks[0].channel_mixer)
        if not isinstance(width, int) or isinstance(width, bool) or not 1 <= width <= hidden:
            raise ValueError(f"width must be an int in [1, {hidden}] (the channel mixer's hidden size), got {width!r}")
        if width == hidden:
            width = None
    return depth, width


def _shared_block(block: Block, width: int | None, config: ModelConfig) -> Block:
    """``block`` itself at full width; else a Block over the same mixer and norms with a narrowed channel mixer."""
    if width is None:
        return block
    narrowed = Block(block.mixer, PrefixChannel(block.channel_mixer, width), config.norm_eps, config.norm)
    narrowed.mixer_norm, narrowed.channel_norm = block.mixer_norm, block.channel_norm
    return narrowed


class SubModel(CausalLM):
    """A sub-model view of ``parent`` (see the module docstring). Its tensors are the parent's; ``save_pretrained``
    and ``num_parameters`` speak for the standalone model :meth:`extract` makes."""

    def __init__(self, parent: CausalLM, depth: int | None = None, width: int | None = None):
        depth, width = check_nestable(parent, depth, width)
        nn.Module.__init__(self)  # not CausalLM.__init__: every part below is the parent's own module
        self.config = submodel_config(parent.config, depth, width)
        self.embedding = parent.embedding
        self.depth = Stack([_shared_block(b, width, parent.config) for b in parent.depth.blocks[:depth]])
        self.embed_dropout = parent.embed_dropout
        self.final_norm = parent.final_norm
        self.head = parent.head
        self.width = width

    def extract(self) -> CausalLM:
        """A standalone CausalLM with copies of this sub-model's tensors (same outputs, its own storage)."""
        model = CausalLM(self.config).to(self.embedding.weight.device, self.embedding.weight.dtype)
        state = OrderedDict()
        for name, tensor in nn.Module.state_dict(self).items():
            if ".channel_mixer.full." not in name:
                state[name] = tensor.clone()
        for i, block in enumerate(self.depth.blocks):
            if isinstance(block.channel_mixer, PrefixChannel):
                for name, tensor in block.channel_mixer.sliced_state().items():
                    state[f"depth.blocks.{i}.channel_mixer.{name}"] = tensor
        model.load_state_dict(state)
        return model.train(self.training)

    def save_pretrained(self, directory, tokenizer=None):
        """Save the standalone model (:meth:`extract`): loads with ``CausalLM.from_pretrained``."""
        return self.extract().save_pretrained(directory, tokenizer)

    def num_parameters(self) -> "OrderedDict[str, int]":
        """The parameter counts of the standalone model this sub-model equals."""
        return self.extract().num_parameters()

    def extra_repr(self) -> str:
        return f"depth={len(self.depth.blocks)}, width={self.width if self.width is not None else 'full'}"


def submodel(model: CausalLM, depth: int | None = None, width: int | None = None) -> SubModel:
    """The sub-model of ``model`` with its first ``depth`` blocks and channel-mixer ``width`` (None: all), sharing
    its tensors."""
    return SubModel(model, depth, width)
