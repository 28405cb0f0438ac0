"""Recursion over depth: one block reused instead of a stack of distinct layers.

    base.py        the depth-module contract, the vanilla Stack baseline, make_block
    lm.py          DepthLM: embedding + any depth module + tied head (CausalLM's interface)
    recursive.py   Recursive: layer tying with per-loop scales (SReT, 2021)
    relaxed.py     Relaxed: per-loop LoRA on the shared block, init from a trained stack, early exit
    mor.py         MixtureOfRecursions: routed per-token depth (MoR, 2025)
    recurrent_depth.py  RecurrentDepth: prelude / looped core / coda (Huginn, 2025)
    parallel_sampler.py the diffusion-forcing parallel sampler for RecurrentDepth
    rmoe.py        LayerwiseRecurrentRouter: MoE whose router state is a GRU over layers (RMoE, 2024)
"""

from .base import DepthModule, Stack, make_block
from .lm import DepthLM
from .mor import MixtureOfRecursions, MoRState

__all__ = ["DepthLM", "DepthModule", "MixtureOfRecursions", "MoRState", "Stack", "make_block"]
