"""The model configuration: one dataclass, plain JSON in and out, that describes any recurlab LM."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from torch import nn

from .. import layers
from ..configs import check_fields
from .depth import check_depth_kwargs, depth_names


NORMS = ("rmsnorm", "layernorm")


def make_norm(kind: str, d_model: int, eps: float) -> nn.Module:
    """The norm ``kind`` ("rmsnorm" or "layernorm", with bias) over the last dimension of size d_model."""
    if kind == "layernorm":
        return nn.LayerNorm(d_model, eps=eps)
    if kind == "rmsnorm":
        return nn.RMSNorm(d_model, eps=eps)
    raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {kind!r}")


@dataclass
class ModelConfig:
    """A language model ``embedding -> depth module -> norm -> head`` (:class:`recurlab.models.CausalLM`).

    Attributes:
        vocab_size: number of token ids.
        d_model: width of the residual stream.
        n_layers: number of distinct blocks (token mixer + channel mixer). How the depth module
            uses them: the stack applies each once; ``recursive``/``relaxed`` loop them; ``mor`` takes
            ``first`` + shared + ``last``; ``recurrent_depth`` takes ``prelude`` + core + ``coda``.
        mixer: a token-mixer name for every block, or a list of n_layers names
            (hybrids, e.g. ["gla", "gla", "attention"]).
        channel_mixer: a channel-mixer name for every block, or None for blocks
            with a token mixer only.
        mixer_kwargs: per mixer name, keyword arguments for its constructor,
            e.g. {"swa": {"window": 64}}.
        layer_kwargs: None, or a list of n_layers dicts: block i's mixer takes
            ``{**mixer_kwargs[its name], **layer_kwargs[i]}`` (per-layer settings, e.g. Zoology's
            BaseConv with a short filter in block 0 and a long one in block 1:
            [{"kernel_size": 3}, {"kernel_size": -1, "l_max": 64}]).
        channel_kwargs: keyword arguments for the channel mixer.
        depth: the depth module by name (``recurlab.models.depth_names()``): "stack", "recursive",
            "relaxed", "mor", "recurrent_depth", "rmoe".
        depth_kwargs: the depth module's arguments, e.g. {"n_loops": 3} for "recursive".
        memory_layer: (stack only) index of the block whose memory read-out the gmu blocks
            after it consume (SambaY's decoder-hybrid-decoder layout), or None.
        kv_layer: (stack only) index of the full-attention block whose KV cache the cross_attention blocks
            after it read (YOCO's and SambaY's cross-decoder: one KV cache for the whole model), or None.
        tie_embeddings: the output head reuses the embedding matrix.
        norm_eps: epsilon of the norms.
        norm: "rmsnorm" (default) or "layernorm" (Zoology's blocks): the blocks' pre-norms and the final norm.
        embed_dropout: dropout on the token embeddings while training (Zoology: 0.1); 0 by default.
    """

    vocab_size: int = 256
    d_model: int = 256
    n_layers: int = 2
    mixer: str | list[str] = "gla"
    channel_mixer: str | None = "swiglu"
    mixer_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    layer_kwargs: list[dict[str, Any]] | None = None
    channel_kwargs: dict[str, Any] = field(default_factory=dict)
    depth: str = "stack"
    depth_kwargs: dict[str, Any] = field(default_factory=dict)
    memory_layer: int | None = None
    kv_layer: int | None = None
    tie_embeddings: bool = True
    norm_eps: float = 1e-5
    norm: str = "rmsnorm"
    embed_dropout: float = 0.0

    def __post_init__(self):
        if isinstance(self.mixer, tuple):
            self.mixer = list(self.mixer)
        self.validate()

    @property
    def mixers(self) -> list[str]:
        """The token-mixer name of each block."""
        return [self.mixer] * self.n_layers if isinstance(self.mixer, str) else list(self.mixer)

    def validate(self) -> None:
        """A ValueError naming the first field that has the wrong type or value."""
        check_fields(self)  # every field's type, from its annotation, errors naming the key
        for name in ("vocab_size", "d_model", "n_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"model config {name} must be a positive int, got {value!r}")
        if not (isinstance(self.mixer, str) or (isinstance(self.mixer, list) and all(isinstance(m, str) for m in self.mixer))):
            raise ValueError(f"model config mixer must be a token-mixer name or a list of them, got {self.mixer!r}")
        mixers = self.mixers
        if len(mixers) != self.n_layers:
            raise ValueError(f"model config mixer must be one name or a list of n_layers={self.n_layers} names, "
                             f"got {len(mixers)} names")
        valid = layers.names("token")
        for name in mixers:
            if name not in valid:
                raise ValueError(f"unknown token mixer {name!r}; valid names: {', '.join(sorted(valid))}")
        for key in ("mixer_kwargs", "channel_kwargs", "depth_kwargs"):
            if not isinstance(getattr(self, key), dict):
                raise ValueError(f"model config {key} must be a JSON object (dict), got {getattr(self, key)!r}")
        for name, kwargs in self.mixer_kwargs.items():
            if name not in mixers:
                raise ValueError(f"mixer_kwargs has an entry for {name!r}, which no layer uses "
                                 f"(layers use {sorted(set(mixers))})")
            if not isinstance(kwargs, dict):
                raise ValueError(f"mixer_kwargs[{name!r}] must be a dict of constructor arguments, got {kwargs!r}")
            unknown = [k for k in kwargs if not layers.accepts(name, k)]
            if unknown:
                raise ValueError(f"mixer_kwargs[{name!r}]: {name} takes no argument(s) {', '.join(unknown)}")
        self._validate_layer_kwargs(mixers)
        if self.channel_mixer is not None and self.channel_mixer not in layers.names("channel"):
            raise ValueError(f"unknown channel mixer {self.channel_mixer!r}; valid names: "
                             f"{', '.join(sorted(layers.names('channel')))} or None")
        unknown = [k for k in self.channel_kwargs if self.channel_mixer is None or not layers.accepts(self.channel_mixer, k)]
        if unknown:
            raise ValueError(f"channel_kwargs: {self.channel_mixer} takes no argument(s) {', '.join(unknown)}")
        if not isinstance(self.depth, str) or self.depth not in depth_names():
            raise ValueError(f"unknown depth module {self.depth!r}; valid names: {', '.join(sorted(depth_names()))}")
        check_depth_kwargs(self.depth, self.depth_kwargs)
        if not isinstance(self.tie_embeddings, bool):
            raise ValueError(f"model config tie_embeddings must be true or false, got {self.tie_embeddings!r}")
        if not isinstance(self.norm_eps, (int, float)) or isinstance(self.norm_eps, bool) or not self.norm_eps > 0:
            raise ValueError(f"model config norm_eps must be a number > 0, got {self.norm_eps!r}")
        if self.norm not in NORMS:
            raise ValueError(f"model config norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        if not isinstance(self.embed_dropout, (int, float)) or isinstance(self.embed_dropout, bool) \
                or not 0 <= self.embed_dropout < 1:
            raise ValueError(f"model config embed_dropout must be a number in [0, 1), got {self.embed_dropout!r}")
        self._validate_memory(mixers)
        self._validate_kv(mixers)

    def _validate_layer_kwargs(self, mixers: list[str]) -> None:
        if self.layer_kwargs is None:
            return
        if not isinstance(self.layer_kwargs, list) or len(self.layer_kwargs) != self.n_layers:
            raise ValueError(f"model config layer_kwargs must be None or a list of n_layers={self.n_layers} dicts, "
                             f"got {self.layer_kwargs!r}")
        for i, (name, kwargs) in enumerate(zip(mixers, self.layer_kwargs)):
            if not isinstance(kwargs, dict):
                raise ValueError(f"layer_kwargs[{i}] must be a dict of constructor arguments for layer {i}'s "
                                 f"{name}, got {kwargs!r}")
            unknown = [k for k in kwargs if not layers.accepts(name, k)]
            if unknown:
                raise ValueError(f"layer_kwargs[{i}]: layer {i} is a {name}, which takes no argument(s) "
                                 f"{', '.join(unknown)}")

    def mixer_arguments(self, layer: int) -> dict[str, Any]:
        """The constructor arguments of block ``layer``'s token mixer: ``mixer_kwargs`` of its name, then
        ``layer_kwargs[layer]`` over them."""
        kwargs = dict(self.mixer_kwargs.get(self.mixers[layer], {}))
        if self.layer_kwargs is not None:
            kwargs.update(self.layer_kwargs[layer])
        return kwargs

    def _validate_memory(self, mixers: list[str]) -> None:
        readers = [i for i, name in enumerate(mixers) if layers.info(name).cls.reads_memory]
        if readers and self.depth != "stack":
            names = ", ".join(repr(n) for n in dict.fromkeys(mixers[i] for i in readers))
            raise ValueError(f"depth {self.depth!r} cannot run token mixer {names} (layers {readers}): it reads another "
                             f"layer's memory read-out, and memory_layer is wired by the 'stack' depth module only "
                             f"(SambaY's layout); depth {self.depth!r} takes self-contained mixers")
        if self.memory_layer is None:
            if readers:
                raise ValueError(f"layers {readers} read a memory (gmu): set memory_layer to an earlier layer "
                                 f"whose mixer produces one")
            return
        if self.depth != "stack":
            raise ValueError(f"memory_layer is wired by the 'stack' depth module; depth {self.depth!r} takes "
                             f"self-contained mixers only")
        if not isinstance(self.memory_layer, int) or isinstance(self.memory_layer, bool) \
                or not 0 <= self.memory_layer < self.n_layers:
            raise ValueError(f"memory_layer must be a layer index in [0, {self.n_layers}), got {self.memory_layer!r}")
        if not layers.info(mixers[self.memory_layer]).cls.produces_memory:
            producers = [n for n in layers.names("token") if layers.info(n).cls.produces_memory]
            raise ValueError(f"memory_layer={self.memory_layer} is a {mixers[self.memory_layer]!r} layer, which "
                             f"produces no memory read-out; use one of: {', '.join(producers)}")
        if any(i <= self.memory_layer for i in readers):
            raise ValueError(f"gmu layers {readers} must come after memory_layer={self.memory_layer}")

    def _validate_kv(self, mixers: list[str]) -> None:
        readers = [i for i, name in enumerate(mixers) if layers.info(name).cls.reads_kv]
        if readers and self.depth != "stack":
            raise ValueError(f"depth {self.depth!r} cannot run token mixer 'cross_attention' (layers {readers}): it reads "
                             f"another layer's KV cache, and kv_layer is wired by the 'stack' depth module only "
                             f"(YOCO's and SambaY's layout); depth {self.depth!r} takes self-contained mixers")
        if self.kv_layer is None:
            if readers:
                raise ValueError(f"layers {readers} read a KV cache (cross_attention): set kv_layer to an earlier "
                                 f"'attention' layer")
            return
        if self.depth != "stack":
            raise ValueError(f"kv_layer is wired by the 'stack' depth module; depth {self.depth!r} takes "
                             f"self-contained mixers only")
        if not isinstance(self.kv_layer, int) or isinstance(self.kv_layer, bool) or not 0 <= self.kv_layer < self.n_layers:
            raise ValueError(f"kv_layer must be a layer index in [0, {self.n_layers}), got {self.kv_layer!r}")
        if mixers[self.kv_layer] != "attention" or self.mixer_arguments(self.kv_layer).get("window") is not None:
            raise ValueError(f"kv_layer={self.kv_layer} must be a full 'attention' layer (no window), got "
                             f"{mixers[self.kv_layer]!r}")
        if any(i <= self.kv_layer for i in readers):
            raise ValueError(f"cross_attention layers {readers} must come after kv_layer={self.kv_layer}")

    # ------------------------------------------------------------------ JSON

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> "ModelConfig":
        """Build from a plain mapping; unknown keys raise a ValueError listing the valid ones."""
        if not isinstance(mapping, Mapping):
            raise ValueError(f"a model config must be a JSON object, got {type(mapping).__name__}")
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in mapping if k not in valid]
        if unknown:
            raise ValueError(f"unknown model config key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(valid)}")
        return cls(**dict(mapping))

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> "ModelConfig":
        """Parse JSON text, or read it from a file path."""
        text = str(text_or_path)
        if not text.lstrip().startswith("{"):
            text = Path(text_or_path).read_text()
        return cls.from_dict(json.loads(text))
