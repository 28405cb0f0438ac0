"""The model configuration: one dataclass, plain JSON in and out."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .. import layers
from ..configs import check_fields


@dataclass
class ModelConfig:
    """A stack of blocks (token mixer + channel mixer), as used by :class:`CausalLM`.

    Attributes:
        vocab_size: number of token ids.
        d_model: width of the residual stream.
        n_layers: number of blocks.
        mixer: a token-mixer name for every layer, or a list of n_layers names
            (hybrids, e.g. ["gla", "gla", "attention"]).
        channel_mixer: a channel-mixer name for every block, or None for blocks
            with a token mixer only.
        mixer_kwargs: per mixer name, keyword arguments for its constructor,
            e.g. {"swa": {"window": 64}}.
        channel_kwargs: keyword arguments for the channel mixer.
        memory_layer: index of the layer whose memory read-out the gmu layers
            after it consume (SambaY's decoder-hybrid-decoder layout), or None.
        tie_embeddings: the output head reuses the embedding matrix.
        norm_eps: epsilon of the RMSNorms.
    """

    vocab_size: int = 256
    d_model: int = 256
    n_layers: int = 2
    mixer: str | list[str] = "gla"
    channel_mixer: str | None = "swiglu"
    mixer_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    channel_kwargs: dict[str, Any] = field(default_factory=dict)
    memory_layer: int | None = None
    tie_embeddings: bool = True
    norm_eps: float = 1e-5

    def __post_init__(self):
        self.validate()

    @property
    def mixers(self) -> list[str]:
        """The token-mixer name of each layer."""
        return [self.mixer] * self.n_layers if isinstance(self.mixer, str) else list(self.mixer)

    def validate(self) -> None:
        check_fields(self)  # every field's type, errors naming the key
        if self.norm_eps <= 0:
            raise ValueError(f"norm_eps must be > 0, got {self.norm_eps!r}")
        for name in ("vocab_size", "d_model", "n_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        mixers = self.mixers
        if len(mixers) != self.n_layers:
            raise ValueError(f"mixer must be one name or a list of n_layers={self.n_layers} names, got {len(mixers)} names")
        valid = layers.names("token")
        for name in mixers:
            if name not in valid:
                raise ValueError(f"unknown token mixer {name!r}; valid names: {', '.join(sorted(valid))}")
        for name in self.mixer_kwargs:
            if name not in mixers:
                raise ValueError(f"mixer_kwargs has an entry for {name!r}, which no layer uses (layers use {sorted(set(mixers))})")
        if self.channel_mixer is not None and self.channel_mixer not in layers.names("channel"):
            raise ValueError(f"unknown channel mixer {self.channel_mixer!r}; valid names: "
                             f"{', '.join(sorted(layers.names('channel')))} or None")
        consumers = [i for i, name in enumerate(mixers) if layers.info(name).cls.needs_memory]
        if consumers and self.memory_layer is None:
            raise ValueError(f"layers {consumers} are gmu layers, which read a memory: set memory_layer to an earlier layer")
        if self.memory_layer is not None:
            if not 0 <= self.memory_layer < self.n_layers:
                raise ValueError(f"memory_layer must be a layer index in [0, {self.n_layers}), got {self.memory_layer}")
            if any(i <= self.memory_layer for i in consumers):
                raise ValueError(f"gmu layers {consumers} must come after memory_layer={self.memory_layer}")

    # ------------------------------------------------------------------ JSON

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> "ModelConfig":
        """Build from a plain mapping; unknown keys raise a ValueError listing the valid ones."""
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
