"""The converter (recurlab/convert/liger.py): weights reused, parameter counts, exactness of the softmax branch."""

import pytest
import torch

from recurlab.convert import convert
from recurlab.models import CausalLM, ModelConfig
from tests.convert.common import tiny_attention_model

IDS = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("to, mixer", [("liger-gla", "liger_gla"), ("liger-attention", "liger")])
def test_liger_conversion_runs_and_keeps_exactly_the_parameters(to, mixer):
    model = tiny_attention_model()
    converted = convert(model, to)
    assert converted.config.mixers == [mixer, mixer]
    assert converted.num_parameters()["total"] == model.num_parameters()["total"]
    source, target = model.state_dict(), converted.state_dict()
    assert set(source) == set(target) and all(torch.equal(source[k], target[k]) for k in source)
    logits, _ = converted(IDS)
    assert logits.shape == (2, 16, 256) and torch.isfinite(logits).all()
    assert not torch.allclose(logits, model(IDS)[0])  # it is another function
    out = converted.generate(IDS[:1, :5], 6, temperature=0)
    assert out.shape == (1, 11) and torch.equal(out[:, :5], IDS[:1, :5])
    # the step form continues the parallel form (the state contract holds for the converted network)
    full, _ = converted(IDS[:, :9])
    _, state = converted(IDS[:, :8])
    step, _ = converted.step(IDS[:, 8], state)
    torch.testing.assert_close(step, full[:, 8], rtol=0, atol=1e-10)


def test_the_gla_baseline_adds_only_its_random_gate():
    model = tiny_attention_model()
    converted = convert(model, "gla", gate_rank=4, seed=3)
    added = converted.num_parameters()["total"] - model.num_parameters()["total"]
    assert added == 2 * (32 * 4 + 4 * 16 + 16)  # per layer: W_1 (32 -> 4), W_2 (4 -> 16 = H_kv * Dh), b
    assert torch.equal(converted.state_dict()["depth.blocks.1.mixer.k_proj.weight"],
                       model.state_dict()["depth.blocks.1.mixer.k_proj.weight"])
    again = convert(model, "gla", gate_rank=4, seed=3)
    assert torch.equal(again.depth.blocks[0].mixer.gate_down.weight, converted.depth.blocks[0].mixer.gate_down.weight)
    assert torch.isfinite(converted(IDS)[0]).all()


@pytest.mark.parametrize("attention", [{}, {"qkv_bias": True, "out_bias": True, "head_dim": 6,
                                            "rope_scaling": {"type": "linear", "factor": 2.0}}])
def test_liger_attentions_softmax_branch_is_the_original_attention_when_the_window_covers_the_sequence(attention):
    """With a window of at least T tokens and the mix weight at 1 (only the softmax branch), every converted
    layer is the original attention layer, so the network's logits are the original's (float64)."""
    model = tiny_attention_model(**attention)
    converted = convert(model, "liger-attention", window=IDS.shape[1])
    for block in converted.depth.blocks:
        block.mixer.mix_weight = 1.0
    torch.testing.assert_close(converted(IDS)[0], model(IDS)[0], rtol=0, atol=1e-12)
    converted.depth.blocks[0].mixer.mix_weight = 0.5  # and the linear branch is really mixed in
    assert (converted(IDS)[0] - model(IDS)[0]).abs().max() > 1e-3


def test_a_llama_checkpoint_converts(tmp_path):
    pytest.importorskip("transformers", reason="the hf extra is part of the test extras")
    from transformers import LlamaConfig, LlamaForCausalLM

    from recurlab.hf import load_llama

    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2)).save_pretrained(tmp_path)
    llama = load_llama(tmp_path, dtype=torch.float64)
    converted = convert(llama, "liger-attention", window=8)
    assert converted.num_parameters()["total"] == llama.num_parameters()["total"]
    ids = torch.randint(0, 64, (1, 8))
    for block in converted.depth.blocks:
        block.mixer.mix_weight = 1.0
    torch.testing.assert_close(converted(ids)[0], llama(ids)[0], rtol=0, atol=1e-12)


def test_what_cannot_be_converted_is_refused():
    model = tiny_attention_model()
    with pytest.raises(ValueError, match="to must be one of liger-gla, liger-attention, gla, got 'mamba'"):
        convert(model, "mamba")
    hybrid = CausalLM(ModelConfig(vocab_size=256, d_model=16, n_layers=2, mixer=["attention", "gla"]))
    with pytest.raises(ValueError, match="layer 1 is a 'gla' layer"):
        convert(hybrid, "liger-gla")
    with pytest.raises(ValueError, match="model must be a recurlab CausalLM"):
        convert(torch.nn.Linear(2, 2), "liger-gla")
    with pytest.raises(ValueError, match="window must be a positive number of tokens"):
        convert(model, "liger-attention", window=0)
