"""Load a Llama-architecture checkpoint (Llama, Mistral, Qwen2) as a recurlab ``attention`` model.

    model = load_llama("path/to/folder")    # config.json + model.safetensors (or a sharded index), transformers layout
    model.generate(prompt, 20, temperature=0)

A Llama decoder layer is recurlab's pre-norm :class:`Block` with an ``attention`` mixer and a ``swiglu``
channel mixer, and the network is recurlab's :class:`CausalLM` (embedding -> blocks -> RMSNorm -> head):

    x = x + o_proj(attention(RoPE(q_proj(n1 x)), RoPE(k_proj(n1 x)), v_proj(n1 x)))
    x = x + down_proj(silu(gate_proj(n2 x)) * up_proj(n2 x))

so the weights map one to one (``gate_proj`` and ``up_proj`` are stacked into ``gate_and_value``) and
the logits equal transformers' own model on the same weights (tests/hf/test_llama.py). What is read
from config.json: vocabulary, widths, heads (``num_key_value_heads``: grouped-query attention;
``head_dim``), ``rms_norm_eps``, ``tie_word_embeddings``, the rotary base and scaling (``rope_parameters``,
or the older ``rope_theta`` / ``rope_scaling``: default, linear or llama3), biases (Llama's
``attention_bias`` / ``mlp_bias``; Qwen2's q/k/v biases) and sliding windows (Mistral's
``sliding_window``; Qwen2's ``layer_types`` when ``use_sliding_window``). Anything else that would change
the function (another activation, another RoPE type, a partial rotary factor) is refused, naming the key.

Only safetensors files are read (a ``pytorch_model.bin`` is a pickle, which recurlab does not load).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from ..models.causal_lm import CausalLM
from ..models.config import ModelConfig

LLAMA_FAMILY = ("llama", "mistral", "qwen2")


def read_hf_config(folder: str | Path) -> dict[str, Any]:
    """The config.json of a Hugging Face checkpoint folder, as a dict."""
    path = Path(folder) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"no config.json in {folder}: not a Hugging Face checkpoint folder")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not JSON: {error}") from None


def rope_settings(config: dict[str, Any]) -> tuple[float, dict | None]:
    """(base, recurlab rope_scaling) from ``rope_parameters`` (transformers 5) or ``rope_theta`` + ``rope_scaling``."""
    params = config.get("rope_parameters")
    if params is None:
        params = dict(config.get("rope_scaling") or {})
        params.setdefault("rope_theta", config.get("rope_theta", 10000.0))
    kind = params.get("rope_type", params.get("type", "default"))
    if params.get("partial_rotary_factor", 1.0) != 1.0:
        raise ValueError(f"partial_rotary_factor={params['partial_rotary_factor']} is not supported (recurlab rotates "
                         f"every channel of a head)")
    base = float(params["rope_theta"])
    if kind == "default":
        return base, None
    if kind == "linear":
        return base, {"type": "linear", "factor": params["factor"]}
    if kind == "llama3":
        keys = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
        return base, {"type": "llama3", **{k: params[k] for k in keys}}
    raise ValueError(f"rope type {kind!r} is not supported; supported: default, linear, llama3")


def llama_model_config(config: dict[str, Any], tie_embeddings: bool | None = None) -> ModelConfig:
    """The recurlab ModelConfig equivalent to a Llama / Mistral / Qwen2 config.json (a dict).

    tie_embeddings: used when config.json does not say (older files leave out ``tie_word_embeddings``
    when it equals their base default); :func:`load_llama` passes whether the file has no ``lm_head.weight``."""
    model_type = config.get("model_type")
    if model_type not in LLAMA_FAMILY:
        raise ValueError(f"model_type must be one of {', '.join(LLAMA_FAMILY)} (a Llama-architecture checkpoint), "
                         f"got {model_type!r}")
    if config.get("hidden_act", "silu") != "silu":
        raise ValueError(f"hidden_act={config['hidden_act']!r} is not supported: the MLP must be SwiGLU (silu)")
    d_model, n_layers, n_heads = config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"]
    base, scaling = rope_settings(config)
    attention: dict[str, Any] = {
        "n_heads": n_heads,
        "n_kv_heads": config.get("num_key_value_heads") or n_heads,
        "head_dim": config.get("head_dim") or d_model // n_heads,
        "rope_base": base,
        "rope_scaling": scaling,
    }
    if model_type == "qwen2":
        attention.update(qkv_bias=True, out_bias=False)
    elif config.get("attention_bias", False):
        attention.update(qkv_bias=True, out_bias=True)
    return ModelConfig(
        vocab_size=config["vocab_size"], d_model=d_model, n_layers=n_layers, mixer="attention",
        channel_mixer="swiglu",
        mixer_kwargs={"attention": attention},
        layer_kwargs=layer_windows(config, model_type, n_layers),
        channel_kwargs={"hidden_size": config["intermediate_size"], "bias": bool(config.get("mlp_bias", False))},
        tie_embeddings=bool(config.get("tie_word_embeddings", tie_embeddings)),
        norm_eps=float(config.get("rms_norm_eps", 1e-6)), norm="rmsnorm",
    )


def layer_windows(config: dict[str, Any], model_type: str, n_layers: int) -> list[dict] | None:
    """Per-layer sliding windows as recurlab layer_kwargs, or None when every layer attends to everything."""
    window = config.get("sliding_window")
    if model_type == "mistral":
        return None if window is None else [{"window": int(window)}] * n_layers
    if model_type == "qwen2" and config.get("use_sliding_window", False) and window is not None:
        types = config.get("layer_types") or ["sliding_attention" if i >= config.get("max_window_layers", n_layers)
                                              else "full_attention" for i in range(n_layers)]
        return [{"window": int(window)} if kind == "sliding_attention" else {} for kind in types]
    return None


def read_safetensors(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of model.safetensors, or of the shards listed in model.safetensors.index.json."""
    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if single.exists():
        return load_file(str(single))
    if index.exists():
        tensors: dict[str, torch.Tensor] = {}
        for shard in sorted(set(json.loads(index.read_text())["weight_map"].values())):
            tensors.update(load_file(str(folder / shard)))
        return tensors
    if (folder / "pytorch_model.bin").exists():
        raise ValueError(f"{folder} holds pytorch_model.bin, a pickle that recurlab does not load; convert it to "
                         f"safetensors (transformers: model.save_pretrained(folder, safe_serialization=True))")
    raise FileNotFoundError(f"no model.safetensors or model.safetensors.index.json in {folder}")


def llama_state_dict(tensors: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """recurlab CausalLM tensors from transformers' Llama names; unknown or missing tensors raise a ValueError."""
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(name: str) -> torch.Tensor:
        if name not in tensors:
            raise ValueError(f"the checkpoint has no tensor {name!r}")
        used.add(name)
        return tensors[name]

    out["embedding.weight"] = take("model.embed_tokens.weight")
    out["final_norm.weight"] = take("model.norm.weight")
    if config.tie_embeddings:
        if "lm_head.weight" in tensors:  # some files store the tied head too: it must be the embedding
            if not torch.equal(take("lm_head.weight"), out["embedding.weight"]):
                raise ValueError("tie_word_embeddings is true but lm_head.weight differs from model.embed_tokens.weight")
    else:
        out["head.weight"] = take("lm_head.weight")
    attention = config.mixer_kwargs["attention"]
    biases = ("weight", "bias") if attention.get("qkv_bias") else ("weight",)
    mlp_parts = ("weight", "bias") if config.channel_kwargs.get("bias") else ("weight",)
    for i in range(config.n_layers):
        src, dst = f"model.layers.{i}.", f"depth.blocks.{i}."
        for proj in ("q_proj", "k_proj", "v_proj"):
            for part in biases:
                out[f"{dst}mixer.{proj}.{part}"] = take(f"{src}self_attn.{proj}.{part}")
        for part in ("weight", "bias") if attention.get("out_bias") else ("weight",):
            out[f"{dst}mixer.o_proj.{part}"] = take(f"{src}self_attn.o_proj.{part}")
        for part in mlp_parts:  # recurlab's gate_and_value is [gate; up] (chunked in that order)
            out[f"{dst}channel_mixer.gate_and_value.{part}"] = torch.cat(
                [take(f"{src}mlp.gate_proj.{part}"), take(f"{src}mlp.up_proj.{part}")], 0)
            out[f"{dst}channel_mixer.down.{part}"] = take(f"{src}mlp.down_proj.{part}")
        out[f"{dst}mixer_norm.weight"] = take(f"{src}input_layernorm.weight")
        out[f"{dst}channel_norm.weight"] = take(f"{src}post_attention_layernorm.weight")
    unused = sorted(k for k in tensors if k not in used and not k.endswith("rotary_emb.inv_freq"))
    if unused:
        raise ValueError(f"the checkpoint has tensors a Llama-architecture model does not: {', '.join(unused[:8])}"
                         f"{' ...' if len(unused) > 8 else ''}")
    return out


def load_llama(folder: str | Path, dtype: torch.dtype | None = None) -> CausalLM:
    """A recurlab CausalLM with the weights of a Llama / Mistral / Qwen2 checkpoint folder.

    dtype: of the returned model; None keeps the checkpoint's (its embedding's dtype)."""
    folder = Path(folder)
    raw = read_safetensors(folder)
    config = llama_model_config(read_hf_config(folder), tie_embeddings="lm_head.weight" not in raw)
    tensors = llama_state_dict(raw, config)
    model = CausalLM(config)
    expected = model.state_dict()
    wrong = [f"{k} {tuple(v.shape)} (model: {tuple(expected[k].shape)})" for k, v in tensors.items()
             if v.shape != expected[k].shape]
    if wrong:
        raise ValueError(f"tensors of {folder} do not fit its config.json: {', '.join(wrong)}")
    model = model.to(dtype or tensors["embedding.weight"].dtype)
    model.load_state_dict(tensors)
    return model.eval()
