"""Convert a pretrained attention language model into a gated recurrent one, as Liger does (Lan et al. 2025,
"Liger: Linearizing Large Language Models to Gated Recurrent Structures", sec. 3; the authors'
OpenSparseLLMs/Linearization code).

    liger = convert(model, to="liger-gla")          # every attention block -> liger_gla (a pure recurrence)
    hybrid = convert(model, to="liger-attention")   # every attention block -> liger (0.5 SWA + 0.5 GLA)
    baseline = convert(model, to="gla")             # liger_gla with a new, random low-rank gate

Every block's token mixer must be ``attention`` or ``swa`` (a model trained by recurlab, or one
``recurlab.hf.load_llama`` read from a Llama / Mistral / Qwen2 folder). What is reused: each layer's
W_q, W_k, W_v, W_o (and biases), its head layout (grouped key/value heads are repeated inside the
linear branch, as the authors' ``repeat_kv``: no new parameters) and, for Liger Attention, its RoPE
base and scaling; the channel mixers, norms, embedding and head are copied unchanged. The liger
variants add no parameter: the gate is the pooled key projection (the pooling is the identity in
the authors' shipped configs: g = k). The ``gla`` baseline adds GLA's low-rank gate (rank 16 by
default), randomly initialised. Any depth module works (only the mixers change); the model's dtype
and device are kept.
"""

from __future__ import annotations

import torch

from ..layers.attention import Attention
from ..models.causal_lm import CausalLM
from ..models.config import ModelConfig

TARGETS = ("liger-gla", "liger-attention", "gla")
SOURCE_MIXERS = ("attention", "swa")


def check_target(to: str) -> str:
    """``to`` if it is a conversion target, else a ValueError listing them."""
    if to not in TARGETS:
        raise ValueError(f"to must be one of {', '.join(TARGETS)}, got {to!r}")
    return to


def check_attention_model(model: CausalLM) -> list[Attention]:
    """The attention mixer of every block of ``model``; a ValueError naming the first block that has another."""
    if not isinstance(model, CausalLM):
        raise ValueError(f"model must be a recurlab CausalLM, got {type(model).__name__}")
    mixers = model.config.mixers
    other = [(i, name) for i, name in enumerate(mixers) if name not in SOURCE_MIXERS]
    if other:
        i, name = other[0]
        raise ValueError(f"model must be an attention language model (every mixer one of {', '.join(SOURCE_MIXERS)}) "
                         f"to be converted; layer {i} is a {name!r} layer")
    return [block.mixer for block in model.depth.blocks]


def converted_layer_kwargs(attention: Attention, to: str, window: int, gate_rank: int) -> dict:
    """The constructor arguments of the layer that replaces ``attention``."""
    kwargs = {"n_heads": attention.n_heads, "n_kv_heads": attention.n_kv_heads, "head_dim": attention.head_dim,
              "qkv_bias": attention.q_proj.bias is not None, "out_bias": attention.o_proj.bias is not None}
    if to == "liger-attention":
        kwargs.update(window=window, rope_base=attention.rope_base, rope_scaling=attention.rope_scaling)
    elif to == "gla":
        kwargs.update(gate_rank=gate_rank)
    return kwargs


def converted_config(model: CausalLM, to: str, window: int = 64, gate_rank: int = 16) -> ModelConfig:
    """The ModelConfig of ``convert(model, to, ...)``: the same network with every attention mixer replaced."""
    check_target(to)
    attentions = check_attention_model(model)
    mixer = "liger" if to == "liger-attention" else "liger_gla"
    config = model.config.to_dict()
    config.update(mixer=mixer, mixer_kwargs={},
                  layer_kwargs=[converted_layer_kwargs(a, to, window, gate_rank) for a in attentions])
    return ModelConfig.from_dict(config)


def convert(model: CausalLM, to: str, window: int = 64, gate_rank: int = 16, seed: int = 0) -> CausalLM:
    """A new CausalLM: ``model`` with every attention block's mixer converted (see the module docstring).

    to: "liger-gla" | "liger-attention" | "gla". window: Liger Attention's sliding window (the authors': 64).
    gate_rank: the ``gla`` baseline's gate rank. seed: draws the ``gla`` baseline's random gate (the global
    random state is left as it was). The source model is not changed; the result is in eval mode."""
    if not isinstance(window, int) or isinstance(window, bool) or window < 1:
        raise ValueError(f"window must be a positive number of tokens, got {window!r}")
    if not isinstance(gate_rank, int) or isinstance(gate_rank, bool) or gate_rank < 1:
        raise ValueError(f"gate_rank must be a positive int, got {gate_rank!r}")
    config = converted_config(model, to, window, gate_rank)
    weight = model.embedding.weight
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        converted = CausalLM(config).to(device=weight.device, dtype=weight.dtype)
    source = model.state_dict()
    target = converted.state_dict()
    new = sorted(set(target) - set(source))  # the gla baseline's gate; nothing for the liger variants
    dropped = sorted(set(source) - set(target))
    if dropped or any(".gate_" not in name for name in new):
        raise AssertionError(f"conversion lost tensors {dropped} or added unexpected ones {new}")
    converted.load_state_dict({**{k: target[k] for k in new}, **source})
    return converted.eval()


def new_parameter_names(model: CausalLM) -> list[str]:
    """The parameters a conversion added (the ``gla`` baseline's gate projections), by name."""
    return [name for name, _ in model.named_parameters() if ".mixer.gate_" in name]
