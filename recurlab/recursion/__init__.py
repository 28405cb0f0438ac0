"""Recursion over depth: one block reused instead of a stack of distinct layers.

    base.py        the depth-module contract, the vanilla Stack baseline, make_block
    lm.py          DepthLM: embedding + any depth module + tied head (CausalLM's interface)
    recursive.py   Recursive: layer tying with per-loop scales (SReT, 2021)
    relaxed.py     Relaxed: per-loop LoRA on the shared block, init from a trained stack, early exit
    depthwise_batching.py  continuous depth-wise batching, simulated (Relaxed Recursive Transformers, 2024)
    mor.py, mor_cache.py  MixtureOfRecursions: routed per-token depth, recursion-wise caches (MoR, 2025)
    recurrent_depth.py  RecurrentDepth: prelude / looped core / coda (Huginn, 2025)
    parallel_sampler.py the diffusion-forcing parallel sampler for RecurrentDepth
    rmoe.py        LayerwiseRecurrentRouter: MoE whose router state is a GRU over layers (RMoE, 2024)
"""

from .base import DepthModule, Stack, make_block
from .lm import DepthLM
from .depthwise_batching import BatchingCounts, sample_depths, simulate_depthwise_batching
from .mor import MixtureOfRecursions, MoRState
from .parallel_sampler import SamplerStats, parallel_generate, sequential_generate
from .recurrent_depth import RecurrentDepth, RecurrentDepthState
from .recursive import Recursive, sliced_group_schedule
from .relaxed import LoopLoRALinear, Relaxed, early_exit_forward, early_exit_step
from .rmoe import LayerwiseRecurrentRouter, RMoEStack

__all__ = ["BatchingCounts", "DepthLM", "DepthModule", "early_exit_forward", "early_exit_step",
           "LayerwiseRecurrentRouter", "LoopLoRALinear", "make_block", "MixtureOfRecursions", "MoRState",
           "parallel_generate", "RecurrentDepth", "RecurrentDepthState", "Recursive", "Relaxed", "RMoEStack",
           "sample_depths", "SamplerStats", "sequential_generate", "simulate_depthwise_batching",
           "sliced_group_schedule", "Stack"]
