"""Llama-architecture checkpoints (Llama, Qwen2, Mistral) load into recurlab's attention model with the same function:
tiny random models built by transformers offline, saved, loaded by recurlab.hf.load_llama, compared in float64."""

import json
import types

import pytest
import torch

pytest.importorskip("transformers", reason="the hf extra is part of the test extras")

from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config,  # noqa: E402
                          Qwen2ForCausalLM)

from recurlab.hf import RecurlabForCausalLM, load_llama  # noqa: E402
from tests.layers.test_mixer_equations import rope_angles  # noqa: E402

VOCAB = 64
SMALL = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2)
LLAMA3 = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
          "high_freq_factor": 4.0, "original_max_position_embeddings": 8}

CASES = {
    "llama_gqa_untied": lambda: LlamaForCausalLM(LlamaConfig(**SMALL, rms_norm_eps=1e-5, tie_word_embeddings=False)),
    "llama_tied_llama3_rope_biases_head_dim": lambda: LlamaForCausalLM(LlamaConfig(
        **SMALL, tie_word_embeddings=True, rope_parameters=LLAMA3, attention_bias=True, mlp_bias=True, head_dim=12)),
    "qwen2": lambda: Qwen2ForCausalLM(Qwen2Config(**SMALL, tie_word_embeddings=False)),
    "qwen2_sliding_layer": lambda: Qwen2ForCausalLM(Qwen2Config(**SMALL, use_sliding_window=True, sliding_window=4,
                                                                max_window_layers=1)),
    "mistral_window": lambda: MistralForCausalLM(MistralConfig(**SMALL, sliding_window=4)),
}


def build(case: str):
    torch.manual_seed(0)
    model = CASES[case]().double().eval()
    with torch.no_grad():  # biases and norm weights start at 0 / 1: make every one of them count
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.normal_(1.0 if "norm" in name else 0.0, 0.3)
    return model


def rms_norm_in_float64(self, x):
    """transformers' RMSNorm, x / sqrt(mean(x²) + eps) * weight, without its cast to float32."""
    return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))


def rotary_in_float64(self, x, position_ids):
    """transformers' rotary cos/sin, (B, T, Dh) = cos/sin of position * [θ, θ], with θ computed in float64 by the
    formula of tests/layers/test_mixer_equations.py (rope_angles) instead of in float32."""
    params = self.config.rope_parameters
    keys = {"default": (), "linear": ("factor",),
            "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")}
    scaling = None if params["rope_type"] == "default" else {
        "type": params["rope_type"], **{k: params[k] for k in keys[params["rope_type"]]}}
    theta = torch.tensor(rope_angles(2 * self.inv_freq.shape[0], params["rope_theta"], scaling), dtype=torch.float64)
    angles = position_ids[..., None].double() * theta
    angles = torch.cat([angles, angles], -1)
    return angles.cos().to(x.dtype), angles.sin().to(x.dtype)


def in_float64(model):
    """The model with the two places transformers computes in float32 whatever the weights' dtype (RMSNorm's
    statistics, the RoPE angles) computed in float64; everything else (weight layout, grouped heads, rotate-half
    pairing, biases, the MLP, tying, masks) is transformers' own code."""
    for module in model.modules():
        name = type(module).__name__
        if name.endswith("RMSNorm"):
            module.forward = types.MethodType(rms_norm_in_float64, module)
        elif name.endswith("RotaryEmbedding"):
            module.forward = types.MethodType(rotary_in_float64, module)
    return model


def ids(batch=2, length=12):
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("case", sorted(CASES))
def test_llama_family_logits_equal_transformers(case, tmp_path):
    reference = build(case)
    reference.save_pretrained(tmp_path)
    model = load_llama(tmp_path)
    assert model.config.mixers == ["attention"] * 2
    x = ids()
    with torch.no_grad():
        ours = model(x)[0]
        as_is = reference(x).logits  # transformers' float32 islands: agreement to float32's precision
        exact = in_float64(reference)(x).logits
    assert ours.dtype == torch.float64
    assert (ours - as_is).abs().max() < 1e-6
    assert (ours - exact).abs().max() < 1e-10


@pytest.mark.parametrize("case", ["llama_gqa_untied", "qwen2", "mistral_window"])
def test_recurlab_generate_equals_transformers_greedy(case, tmp_path):
    reference = build(case)
    reference.save_pretrained(tmp_path)
    model = load_llama(tmp_path)
    x = ids(length=6)
    expected = in_float64(reference).generate(x, attention_mask=torch.ones_like(x), max_new_tokens=10,
                                              do_sample=False)
    assert torch.equal(model.generate(x, 10, temperature=0), expected)


def test_beam_search_and_sampling_through_recurlab_cache_equal_transformers_own_cache(tmp_path):
    """The same Llama weights decoded by transformers twice: with its own model and KV cache, and as recurlab's model
    wrapped in RecurlabForCausalLM (RecurlabCache: reorder by State.select). Beam search and seeded sampling agree."""
    reference = in_float64(build("llama_gqa_untied"))
    reference.save_pretrained(tmp_path)
    wrapped = RecurlabForCausalLM.from_recurlab(load_llama(tmp_path))
    x = ids(batch=1, length=4)
    settings = [dict(num_beams=3, do_sample=False), dict(do_sample=True, top_k=20, temperature=0.9)]
    for kwargs in settings:
        torch.manual_seed(5)
        expected = reference.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=8, **kwargs)
        torch.manual_seed(5)
        assert torch.equal(wrapped.generate(x, max_new_tokens=8, **kwargs), expected), kwargs


def test_transformers_4_style_config_loads_too(tmp_path):
    """Older files: rope_theta + rope_scaling {"type": "linear"} instead of rope_parameters, and no
    tie_word_embeddings key (the head is untied because the file has lm_head.weight)."""
    reference = build("llama_gqa_untied")
    reference.config.rope_parameters = {"rope_type": "linear", "rope_theta": 500.0, "factor": 2.0}
    reference = LlamaForCausalLM(reference.config).double().eval()  # rebuilt with the scaled rotary embedding
    reference.load_state_dict(build("llama_gqa_untied").state_dict())
    reference.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["rope_parameters"], config["tie_word_embeddings"]
    config.update(rope_theta=500.0, rope_scaling={"type": "linear", "factor": 2.0})
    (tmp_path / "config.json").write_text(json.dumps(config))
    model = load_llama(tmp_path)
    assert model.config.mixer_kwargs["attention"]["rope_scaling"] == {"type": "linear", "factor": 2.0}
    assert not model.config.tie_embeddings
    with torch.no_grad():
        assert (model(ids())[0] - in_float64(reference)(ids()).logits).abs().max() < 1e-10


def test_what_is_not_a_llama_is_refused(tmp_path):
    reference = build("llama_gqa_untied")
    reference.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())

    def with_config(**changes):
        (tmp_path / "config.json").write_text(json.dumps({**config, **changes}))

    with_config(hidden_act="gelu")
    with pytest.raises(ValueError, match="hidden_act='gelu' is not supported"):
        load_llama(tmp_path)
    with_config(rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0})
    with pytest.raises(ValueError, match="rope type 'yarn' is not supported"):
        load_llama(tmp_path)
    with_config(model_type="gpt2")
    with pytest.raises(ValueError, match="model_type must be one of llama, mistral, qwen2"):
        load_llama(tmp_path)
    with_config()
    tensors = load_file(str(tmp_path / "model.safetensors"))
    save_file({**tensors, "model.extra.weight": torch.zeros(2)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="tensors a Llama-architecture model does not: model.extra.weight"):
        load_llama(tmp_path)
    del tensors["model.layers.1.mlp.up_proj.weight"]
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="no tensor 'model.layers.1.mlp.up_proj.weight'"):
        load_llama(tmp_path)
