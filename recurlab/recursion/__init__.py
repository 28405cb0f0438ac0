"""Recursion over depth: depth modules that reuse blocks instead of stacking distinct layers.

Each is registered by name, so a ModelConfig picks it (``depth="recursive"``, ``depth_kwargs={...}``)
and :class:`recurlab.models.CausalLM` wraps it like the plain stack.

    recursive.py   Recursive ("recursive"): layer tying with per-loop scales, sliced groups (SReT, 2021)
    relaxed.py     Relaxed ("relaxed"): per-loop LoRA on the shared blocks; relax() converts a trained
                   stack; early exit
    depthwise_batching.py  continuous depth-wise batching, simulated (Relaxed Recursive Transformers, 2024)
    mor.py, mor_cache.py  MixtureOfRecursions ("mor"): routed per-token depth, recursion-wise caches (MoR, 2025)
    recurrent_depth.py  RecurrentDepth ("recurrent_depth"): prelude / looped core / coda (Huginn, 2025)
    parallel_sampler.py the diffusion-forcing parallel sampler for RecurrentDepth
    rmoe.py        RMoEStack ("rmoe"): MoE whose router state is a GRU over layers (RMoE, 2024)
"""

from .depthwise_batching import BatchingCounts, sample_depths, simulate_depthwise_batching
from .mor import MixtureOfRecursions, MoRState
from .parallel_sampler import SamplerStats, parallel_generate, sequential_generate
from .recurrent_depth import RecurrentDepth, RecurrentDepthState
from .recursive import Recursive, sliced_group_schedule
from .relaxed import LoopLoRALinear, Relaxed, early_exit_forward, early_exit_step, relax
from .rmoe import LayerwiseRecurrentRouter, RMoEStack

__all__ = ["BatchingCounts", "early_exit_forward", "early_exit_step", "LayerwiseRecurrentRouter", "LoopLoRALinear",
           "MixtureOfRecursions", "MoRState", "parallel_generate", "RecurrentDepth", "RecurrentDepthState", "Recursive",
           "Relaxed", "relax", "RMoEStack", "sample_depths", "SamplerStats", "sequential_generate",
           "simulate_depthwise_batching", "sliced_group_schedule"]
