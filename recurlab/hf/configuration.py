"""``RecurlabConfig``: a Hugging Face ``PretrainedConfig`` that wraps one recurlab :class:`ModelConfig`.

    config = RecurlabConfig.from_model_config(ModelConfig(mixer="gla", n_layers=2))
    config.recurlab                       # the ModelConfig as a plain dict (any mixer, hybrid, depth module)
    config.to_model_config()              # back to a ModelConfig

The recurlab dict is the whole description of the network; ``vocab_size``, ``hidden_size``,
``num_hidden_layers`` and ``tie_word_embeddings`` are derived from it for the tools of the
ecosystem that read those names, and a value given for one of them that disagrees is refused.
"""

from __future__ import annotations

from transformers import PretrainedConfig

from ..models.config import ModelConfig

DERIVED = {"vocab_size": "vocab_size", "hidden_size": "d_model", "num_hidden_layers": "n_layers",
           "tie_word_embeddings": "tie_embeddings"}


class RecurlabConfig(PretrainedConfig):
    """model_type "recurlab"; ``recurlab`` holds ``ModelConfig.to_dict()`` (None: the default ModelConfig)."""

    model_type = "recurlab"

    recurlab: dict | None = None
    vocab_size: int | None = None
    hidden_size: int | None = None
    num_hidden_layers: int | None = None
    tie_word_embeddings: bool | None = None
    use_cache: bool = True
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None

    def __post_init__(self, **kwargs):
        model = ModelConfig.from_dict(self.recurlab if self.recurlab is not None else {})  # validates
        self.recurlab = model.to_dict()
        for name, field in DERIVED.items():
            value, given = getattr(model, field), getattr(self, name)
            if given is not None and given != value:
                raise ValueError(f"{name}={given!r} disagrees with the recurlab model config's {field}={value!r}; "
                                 f"set it in the recurlab config")
            setattr(self, name, value)
        super().__post_init__(**kwargs)

    @classmethod
    def from_model_config(cls, config: ModelConfig, **kwargs) -> "RecurlabConfig":
        """The HF config of a recurlab ModelConfig; kwargs are other PretrainedConfig fields (eos_token_id, ...)."""
        if not isinstance(config, ModelConfig):
            raise ValueError(f"config must be a recurlab ModelConfig, got {type(config).__name__}")
        return cls(recurlab=config.to_dict(), **kwargs)

    def to_model_config(self) -> ModelConfig:
        return ModelConfig.from_dict(self.recurlab)
