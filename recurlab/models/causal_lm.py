"""A causal language model over any token mixers: embedding, blocks, final norm, tied head.

    logits, state = model(input_ids)            # (B, T) -> (B, T, vocab), a state per layer
    logits_t, state = model.step(ids_t, state)  # (B,) -> (B, vocab): decoding, O(1) per token for
                                                # recurrent mixers, a growing KV cache for attention
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Mapping

import torch
from torch import nn

from .. import layers
from .block import Block
from .config import ModelConfig


class CausalLM(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise ValueError(f"config must be a ModelConfig (or use CausalLM.from_config(mapping)), got {type(config).__name__}")
        config.validate()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.d_model)
        nn.init.normal_(self.embedding.weight, std=0.02)
        blocks = []
        memory_dim = None
        for i, name in enumerate(config.mixers):
            kwargs = dict(config.mixer_kwargs.get(name, {}))
            for key, value in (("layer_idx", i), ("n_layers", config.n_layers)):
                if layers.accepts(name, key):
                    kwargs.setdefault(key, value)
            if layers.info(name).cls.needs_memory:
                kwargs.setdefault("memory_dim", memory_dim)
            mixer = layers.build(name, config.d_model, kind="token", **kwargs)
            if i == config.memory_layer:
                if not mixer.memory_dim:
                    raise ValueError(f"memory_layer={i} is a {name!r} layer, which produces no memory read-out; "
                                     f"use one of: {', '.join(n for n in layers.names('token') if _produces_memory(n, config.d_model))}")
                memory_dim = mixer.memory_dim
            channel = (layers.build(config.channel_mixer, config.d_model, kind="channel", **config.channel_kwargs)
                       if config.channel_mixer is not None else None)
            blocks.append(Block(mixer, channel, config.norm_eps))
        self.blocks = nn.ModuleList(blocks)
        self.final_norm = nn.RMSNorm(config.d_model, eps=config.norm_eps)
        self.head = None if config.tie_embeddings else nn.Linear(config.d_model, config.vocab_size, bias=False)

    @classmethod
    def from_config(cls, config: ModelConfig | Mapping[str, Any]) -> "CausalLM":
        """Build from a ModelConfig or a plain mapping (e.g. parsed JSON)."""
        return cls(config if isinstance(config, ModelConfig) else ModelConfig.from_dict(config))

    # ------------------------------------------------------------------ forward

    def forward(self, input_ids: torch.Tensor, state: list | None = None) -> tuple[torch.Tensor, list]:
        """input_ids (B, T) int -> logits (B, T, vocab_size) and the per-layer states."""
        self._check_ids(input_ids, 2, "(B, T)")
        return self._run(input_ids, state, step=False)

    def step(self, token_ids: torch.Tensor, state: list | None = None) -> tuple[torch.Tensor, list]:
        """token_ids (B,) int -> logits (B, vocab_size) of the next token and the updated states."""
        self._check_ids(token_ids, 1, "(B,)")
        return self._run(token_ids, state, step=True)

    def features(self, input_ids: torch.Tensor, state: list | None = None) -> tuple[torch.Tensor, list]:
        """The final-normed hidden states (B, T, d_model) instead of logits, and the states.

        With :meth:`logits` this lets a loss compute the vocabulary projection only
        where there are labels (MQAR labels 4 of 64 positions)."""
        self._check_ids(input_ids, 2, "(B, T)")
        return self._run(input_ids, state, step=False, project=False)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits (..., vocab_size) of final-normed hidden states (..., d_model)."""
        return features @ self.embedding.weight.t() if self.head is None else self.head(features)

    def _run(self, ids, state, step, project=True):
        x = self.embedding(ids)
        states = self._layer_states(state)
        memory, new_states = None, []
        for i, block in enumerate(self.blocks):
            run = block.step if step else block
            x, s, m = run(x, states[i], memory=memory, produce_memory=i == self.config.memory_layer)
            memory = m if m is not None else memory
            new_states.append(s)
        x = self.final_norm(x)
        return (self.logits(x) if project else x), new_states

    def init_state(self, batch_size: int, device=None, dtype=None) -> list:
        """The per-layer states before the first token."""
        return [block.mixer.init_state(batch_size, device, dtype) for block in self.blocks]

    def _layer_states(self, state):
        if state is None:
            return [None] * len(self.blocks)
        if not isinstance(state, (list, tuple)) or len(state) != len(self.blocks):
            raise ValueError(f"state must be a list of {len(self.blocks)} per-layer states (as returned by forward/step)")
        return list(state)

    def _check_ids(self, ids, rank, layout):
        if not isinstance(ids, torch.Tensor) or ids.dim() != rank or ids.dtype not in (torch.int32, torch.int64):
            got = f"{tuple(ids.shape)} {ids.dtype}" if isinstance(ids, torch.Tensor) else type(ids).__name__
            raise ValueError(f"input ids must be an int64 tensor of shape {layout}, got {got}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.config.vocab_size):
            raise ValueError(f"input ids must lie in [0, vocab_size={self.config.vocab_size}), "
                             f"got values in [{int(ids.min())}, {int(ids.max())}]")

    # ------------------------------------------------------------------ generation and files

    def generate(self, input_ids: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, seed: int | None = None) -> torch.Tensor:
        """Prompt (B, T) followed by max_new_tokens new tokens: a parallel prefill, then ``step`` per token.
        temperature 0 is greedy; top_k / top_p restrict sampling; seed makes it repeatable."""
        from .generation import generate

        return generate(self, input_ids, max_new_tokens, temperature, top_k, top_p, seed)

    def save_pretrained(self, directory, tokenizer=None):
        """Write config.json and model.safetensors (and the tokenizer, if given) to ``directory``."""
        from .pretrained import save_pretrained

        return save_pretrained(self, directory, tokenizer)

    @classmethod
    def from_pretrained(cls, directory, map_location="cpu") -> "CausalLM":
        """Load what :meth:`save_pretrained` wrote; mismatched files raise ValueError naming the tensors."""
        from .pretrained import load_pretrained

        return load_pretrained(cls, directory, map_location)

    # ------------------------------------------------------------------ size

    def num_parameters(self) -> "OrderedDict[str, int]":
        """Parameter counts by part (the tied head counts once, under embedding), and the total."""
        count = lambda m: sum(p.numel() for p in m.parameters()) if m is not None else 0  # noqa: E731
        parts: OrderedDict[str, int] = OrderedDict()
        parts["embedding"] = count(self.embedding)
        for i, block in enumerate(self.blocks):
            parts[f"layers.{i}.mixer ({self.config.mixers[i]})"] = count(block.mixer)
            if block.channel_mixer is not None:
                parts[f"layers.{i}.channel_mixer ({self.config.channel_mixer})"] = count(block.channel_mixer)
            parts[f"layers.{i}.norms"] = count(block.mixer_norm) + count(block.channel_norm)
        parts["final_norm"] = count(self.final_norm)
        if self.head is not None:
            parts["head"] = count(self.head)
        parts["total"] = sum(p.numel() for p in self.parameters())
        return parts


def _produces_memory(name: str, d_model: int) -> bool:
    try:
        return bool(getattr(layers.build(name, d_model, kind="token"), "memory_dim", None))
    except ValueError:
        return False
