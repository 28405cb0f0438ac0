"""Networks assembled from a config: the residual block, depth modules and the one causal LM.

    ModelConfig   the whole network as plain JSON (mixers, channel mixer, depth module and its arguments)
    CausalLM      embedding -> depth module -> RMSNorm -> tied head, for every network
    Block         pre-norm token mixer + channel mixer, (x, state) -> (x, state)
    DepthModule   the contract of what maps the residual stream through depth; Stack is the default,
                  recurlab.recursion holds the others; all are registered by name (depth_names())
"""

from .block import Block, make_block
from .causal_lm import CausalLM
from .config import ModelConfig
from .depth import BlockStates, DepthModule, build_depth, depth_names, register_depth, tiny_depth
from .stack import Stack

__all__ = ["Block", "BlockStates", "CausalLM", "DepthModule", "ModelConfig", "Stack", "build_depth", "depth_names",
           "make_block", "register_depth", "tiny_depth"]
