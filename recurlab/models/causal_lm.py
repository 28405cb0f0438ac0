"""The causal language model: embedding -> depth module -> RMSNorm -> tied head, for every network.

    model = CausalLM(ModelConfig(vocab_size=256, d_model=256, n_layers=4, mixer="gla"))
    model = CausalLM(ModelConfig(..., n_layers=2, depth="recursive", depth_kwargs={"n_loops": 3}))
    logits, state = model(input_ids)            # (B, T) -> (B, T, vocab)
    logits_t, state = model.step(ids_t, state)  # (B,) -> (B, vocab): decoding, O(1) per token for
                                                # recurrent mixers, a growing KV cache for attention
    model.generate(prompt, 100); model.save_pretrained(folder); CausalLM.from_pretrained(folder)
    small = model.submodel(depth=2, width=128)  # nested sub-model sharing these tensors (SortedNet)

The depth module (``config.depth``: the plain stack, or a recursion over depth) is where networks
differ; everything here is shared. A depth module's ``aux_loss`` (router losses) is exposed as
``model.aux_loss``, which the trainer adds to the language-modelling loss.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Mapping

import torch
from torch import nn

from ..state import State
from .config import ModelConfig, make_norm
from .depth import DepthModule, build_depth


class CausalLM(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise ValueError(f"config must be a ModelConfig (or use CausalLM.from_config(mapping)), got "
                             f"{type(config).__name__}")
        config.validate()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.d_model)
        nn.init.normal_(self.embedding.weight, std=0.02)
        self.depth: DepthModule = build_depth(config)
        self.embed_dropout = nn.Dropout(config.embed_dropout)  # identity at 0 and in eval mode
        self.final_norm = make_norm(config.norm, config.d_model, config.norm_eps)
        self.head = None if config.tie_embeddings else nn.Linear(config.d_model, config.vocab_size, bias=False)

    @classmethod
    def from_config(cls, config: ModelConfig | Mapping[str, Any]) -> "CausalLM":
        """Build from a ModelConfig or a plain mapping (e.g. parsed JSON)."""
        return cls(config if isinstance(config, ModelConfig) else ModelConfig.from_dict(config))

    # ------------------------------------------------------------------ forward

    def forward(self, input_ids: torch.Tensor, state: State | None = None, **depth_inputs: Any
                ) -> tuple[torch.Tensor, State]:
        """input_ids (B, T) int -> logits (B, T, vocab_size) and the depth module's state."""
        hidden, state = self.features(input_ids, state, **depth_inputs)
        return self.logits(hidden), state

    def step(self, token_ids: torch.Tensor, state: State | None = None, **depth_inputs: Any
             ) -> tuple[torch.Tensor, State]:
        """token_ids (B,) int -> logits (B, vocab_size) of the next token and the updated state."""
        x, state = self.depth.step(self.embed(token_ids, rank=1), state, **depth_inputs)
        return self.readout(x), state

    def prefill(self, input_ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """A prompt (B, T >= 1) -> the logits of the token after it (B, vocab_size) and the state: ``forward``'s
        last position, computed only as far as decoding needs (the depth module's ``prefill``)."""
        x, state = self.depth.prefill(self.embed(input_ids), state)
        return self.readout(x), state

    def features(self, input_ids: torch.Tensor, state: State | None = None, **depth_inputs: Any
                 ) -> tuple[torch.Tensor, State]:
        """The final-normed hidden states (B, T, d_model) instead of logits, and the state.

        With :meth:`logits` this lets a loss compute the vocabulary projection only
        where there are labels (MQAR labels 4 of 64 positions)."""
        x, state = self.depth(self.embed(input_ids), state, **depth_inputs)
        return self.final_norm(x), state

    def embed(self, ids: torch.Tensor, rank: int = 2) -> torch.Tensor:
        """Token embeddings: ids (B, T) -> (B, T, d_model), or with rank=1 (B,) -> (B, d_model); a
        ValueError for anything but integer ids of that rank in [0, vocab_size)."""
        if not isinstance(ids, torch.Tensor) or ids.dim() != rank or ids.dtype not in (torch.int32, torch.int64):
            got = f"{tuple(ids.shape)} {ids.dtype}" if isinstance(ids, torch.Tensor) else type(ids).__name__
            layout = "(B, T)" if rank == 2 else "(B,)"
            raise ValueError(f"input ids must be an int64 tensor of shape {layout}, got {got}")
        # the range check reads values back to the host: eager only, so torch.compile traces no graph break
        if ids.numel() and not torch.compiler.is_compiling() and (
                int(ids.min()) < 0 or int(ids.max()) >= self.config.vocab_size):
            raise ValueError(f"input ids must lie in [0, vocab_size={self.config.vocab_size}), "
                             f"got values in [{int(ids.min())}, {int(ids.max())}]")
        return self.embed_dropout(self.embedding(ids))

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits (..., vocab_size) of final-normed hidden states (..., d_model)."""
        return features @ self.embedding.weight.t() if self.head is None else self.head(features)

    def readout(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of residual-stream states (..., d_model): the final norm, then the head."""
        return self.logits(self.final_norm(x))

    def init_state(self, batch_size: int, device=None, dtype=None) -> State:
        """The depth module's state before the first token."""
        return self.depth.init_state(batch_size, device, dtype)

    @property
    def aux_loss(self) -> torch.Tensor | None:
        """The depth module's auxiliary loss from the last forward (None when it has none)."""
        return self.depth.aux_loss

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
    def from_pretrained(cls, directory, map_location="cpu", dtype: torch.dtype | None = None) -> "CausalLM":
        """Load what :meth:`save_pretrained` wrote, in eval mode (call ``.train()`` to fine-tune), in ``dtype``
        (None: the dtype it was saved in); mismatched files raise ValueError naming the tensors."""
        from .pretrained import load_pretrained

        return load_pretrained(cls, directory, map_location, dtype)

    # ------------------------------------------------------------------ nested sub-models

    def submodel(self, depth: int | None = None, width: int | None = None) -> "CausalLM":
        """The first ``depth`` blocks with channel mixers narrowed to their first ``width`` hidden units (None: all),
        sharing this model's tensors (SortedNet; recurlab/models/submodel.py). ``.extract()`` copies it out."""
        from .submodel import submodel

        return submodel(self, depth, width)

    # ------------------------------------------------------------------ size

    def num_parameters(self) -> "OrderedDict[str, int]":
        """Parameter counts by part (the tied head counts once, under embedding), and the total."""
        parts: OrderedDict[str, int] = OrderedDict()
        parts["embedding"] = self.embedding.weight.numel()
        parts.update(self.depth.num_parameters())
        parts["final_norm"] = self.final_norm.weight.numel()
        if self.head is not None:
            parts["head"] = self.head.weight.numel()
        parts["total"] = sum(p.numel() for p in self.parameters())
        return parts
