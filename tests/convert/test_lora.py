"""LoRA (recurlab/convert/lora.py): a fresh adapter changes nothing, merge() folds it in exactly."""

import pytest
import torch
from torch import nn

from recurlab.convert.lora import LoRALinear, add_lora, lora_parameters, merge_lora
from tests.convert.common import tiny_attention_model


def test_a_fresh_adapter_leaves_the_outputs_bit_identical():
    model = tiny_attention_model()
    ids = torch.randint(0, 256, (2, 12))
    before = model(ids)[0]
    names = add_lora(model, rank=8)
    assert names == [f"depth.blocks.{i}.mixer.{p}" for i in range(2) for p in ("q_proj", "k_proj", "v_proj")]
    assert all((m.lora_B == 0).all() for m in model.modules() if isinstance(m, LoRALinear))
    assert torch.equal(model(ids)[0], before)


def test_lora_adds_rank_times_in_plus_out_parameters_and_freezes_the_base():
    model = tiny_attention_model()
    total = sum(p.numel() for p in model.parameters())
    add_lora(model, rank=8)
    # per layer: q (32 -> 32), k and v (32 -> 16 with 2 key/value heads)
    assert sum(p.numel() for p in lora_parameters(model)) == 2 * 8 * ((32 + 32) + 2 * (32 + 16))
    assert sum(p.numel() for p in model.parameters()) == total + 2 * 8 * (64 + 96)
    wrapped = model.depth.blocks[0].mixer.q_proj
    assert not wrapped.base.weight.requires_grad and wrapped.lora_A.requires_grad and wrapped.scaling == 1.0
    assert merge_lora(model) == 6
    assert sum(p.numel() for p in model.parameters()) == total


def test_merge_computes_what_the_wrapper_computed():
    torch.manual_seed(0)
    base = nn.Linear(12, 7, bias=True).double()
    lora = LoRALinear(base, rank=3, alpha=6.0)
    with torch.no_grad():
        lora.lora_B.normal_()
    x = torch.randn(4, 5, 12, dtype=torch.float64)
    expected = x @ base.weight.t() + base.bias + 2.0 * (x @ lora.lora_A.t()) @ lora.lora_B.t()  # alpha / r = 2
    torch.testing.assert_close(lora(x), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(lora.merge()(x), lora(x), rtol=0, atol=1e-12)

    model = tiny_attention_model()
    ids = torch.randint(0, 256, (2, 12))
    add_lora(model, rank=4)
    with torch.no_grad():
        for p in lora_parameters(model):
            p.normal_(0, 0.1)
    unmerged = model(ids)[0]
    merge_lora(model)
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    torch.testing.assert_close(model(ids)[0], unmerged, rtol=0, atol=1e-12)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="rank must be a positive int"):
        LoRALinear(nn.Linear(4, 4), rank=0)
    with pytest.raises(ValueError, match="base must be an nn.Linear"):
        LoRALinear(nn.Conv1d(4, 4, 1))
    with pytest.raises(ValueError, match="no nn.Linear named nothing"):
        add_lora(tiny_attention_model(), targets=("nothing",))
