"""Networks assembled from a config: the residual block and the causal LM."""

from .block import Block
from .causal_lm import CausalLM
from .config import ModelConfig

__all__ = ["Block", "CausalLM", "ModelConfig"]
