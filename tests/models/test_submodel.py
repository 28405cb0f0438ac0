"""Nested sub-models (SortedNet's prefixes in depth and channel-mixer width): equations, sharing, copies, errors."""

import pytest
import torch

from recurlab.models import CausalLM, ModelConfig
from recurlab.models.submodel import PrefixChannel, SubModel


def tiny(channel_mixer="swiglu", mixer="gla", **kwargs):
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=40, d_model=16, n_layers=3, mixer=mixer, channel_mixer=channel_mixer, **kwargs)
    return CausalLM(config).double()


def by_hand(model, ids, depth, width):
    """The sub-model's logits written out from the parent's tensors (module docstring of models/submodel.py)."""
    x = model.embedding(ids)
    for block in model.depth.blocks[:depth]:
        y, _ = block.mixer(block.mixer_norm(x))
        x = x + y
        h = block.channel_norm(x)
        cm = block.channel_mixer
        if hasattr(cm, "up"):  # mlp
            hidden = cm.activation(h @ cm.up.weight[:width].t())
        else:  # glu family: gate rows 0.., value rows H..
            H = cm.down.in_features
            gate = h @ cm.gate_and_value.weight[:width].t()
            value = h @ cm.gate_and_value.weight[H:H + width].t()
            hidden = cm.activation(gate) * value
        x = x + hidden @ cm.down.weight[:, :width].t()
    return model.final_norm(x) @ model.embedding.weight.t()


@pytest.mark.parametrize("channel_mixer,kwargs", [("swiglu", {}), ("geglu", {}),
                                                  ("mlp", {"channel_kwargs": {"activation": "relu"}})])
@pytest.mark.parametrize("depth,width", [(1, 5), (2, 11), (3, 1)])
def test_submodel_is_the_prefix_of_depth_and_width(channel_mixer, kwargs, depth, width):
    model = tiny(channel_mixer, **kwargs)
    ids = torch.randint(0, 40, (2, 9))
    sub = model.submodel(depth=depth, width=width)
    torch.testing.assert_close(sub(ids)[0], by_hand(model, ids, depth, width), rtol=1e-12, atol=1e-12)


def test_the_full_submodel_is_the_model_and_narrower_is_not():
    model = tiny()
    ids = torch.randint(0, 40, (2, 9))
    assert torch.equal(model.submodel()(ids)[0], model(ids)[0])
    hidden = model.depth.blocks[0].channel_mixer.down.in_features
    assert torch.equal(model.submodel(width=hidden)(ids)[0], model(ids)[0])
    assert not torch.allclose(model.submodel(width=hidden - 1)(ids)[0], model(ids)[0])


def test_submodels_share_storage_with_the_parent():
    model = tiny()
    sub = model.submodel(depth=2, width=6)
    parent_params = {id(p) for p in model.parameters()}
    assert all(id(p) in parent_params for p in sub.parameters())  # no tensor of its own
    ids = torch.randint(0, 40, (1, 5))
    before = sub(ids)[0]
    with torch.no_grad():  # a change to the parent is a change to the sub-model
        model.depth.blocks[1].channel_mixer.down.weight[:, :6].mul_(2)
    assert not torch.allclose(sub(ids)[0], before)


def test_gradients_reach_only_the_prefix():
    model = tiny()
    sub = model.submodel(depth=2, width=6)
    sub(torch.randint(0, 40, (2, 7)))[0].square().sum().backward()
    cm = model.depth.blocks[0].channel_mixer
    H = cm.down.in_features
    assert cm.down.weight.grad[:, :6].abs().sum() > 0 and cm.down.weight.grad[:, 6:].abs().sum() == 0
    assert cm.gate_and_value.weight.grad[H + 6:].abs().sum() == 0 and cm.gate_and_value.weight.grad[H:H + 6].abs().sum() > 0
    assert all(p.grad is None for p in model.depth.blocks[2].parameters())


def test_step_by_step_decoding_equals_the_forward_pass():
    model = tiny()
    sub = model.submodel(depth=2, width=7)
    ids = torch.randint(0, 40, (2, 6))
    state, steps = None, []
    for t in range(ids.shape[1]):
        logits, state = sub.step(ids[:, t], state)
        steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, 1), sub(ids)[0], rtol=1e-10, atol=1e-10)
    assert sub.generate(ids[:, :2], 3, temperature=0).shape == (2, 5)


def test_extract_copies_to_a_standalone_model_that_saves_and_loads(tmp_path):
    model = tiny()
    sub = model.submodel(depth=2, width=7)
    small = sub.extract()
    assert type(small) is CausalLM and small.config.n_layers == 2 and small.config.channel_kwargs["hidden_size"] == 7
    ids = torch.randint(0, 40, (2, 6))
    torch.testing.assert_close(small(ids)[0], sub(ids)[0], rtol=1e-12, atol=1e-12)  # one matmul vs two
    pointers = {p.untyped_storage().data_ptr() for p in model.parameters()}
    assert not any(p.untyped_storage().data_ptr() in pointers for p in small.parameters())
    assert sub.num_parameters()["total"] == sum(p.numel() for p in small.parameters()) < model.num_parameters()["total"]
    sub.save_pretrained(tmp_path / "small")
    loaded = CausalLM.from_pretrained(tmp_path / "small", dtype=torch.float64)
    torch.testing.assert_close(loaded(ids)[0], small(ids)[0], rtol=0, atol=0)


def test_prefix_channel_names_its_source():
    model = tiny()
    sub = model.submodel(width=4)
    cm = sub.depth.blocks[0].channel_mixer
    assert isinstance(cm, PrefixChannel) and cm.registry_name == "swiglu[:4]" and isinstance(sub, SubModel)
    assert "layers.0.channel_mixer (swiglu)" in sub.num_parameters()


@pytest.mark.parametrize("kwargs,match", [
    ({"depth": 0}, r"depth must be an int in \[1, 3\]"),
    ({"depth": 4}, r"depth must be an int in \[1, 3\]"),
    ({"depth": 1.5}, "depth must be an int"),
    ({"width": 0}, r"width must be an int in \[1, 48\]"),
    ({"width": 49}, r"width must be an int in \[1, 48\]"),
])
def test_bad_depth_or_width_is_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny().submodel(**kwargs)


def test_models_without_a_nestable_layout_are_refused():
    with pytest.raises(ValueError, match="this model has none"):
        tiny(channel_mixer=None).submodel(width=2)
    with pytest.raises(ValueError, match="narrows mlp, glu, swiglu or geglu"):
        tiny(channel_mixer="moe").submodel(width=2)
    recursive = CausalLM(ModelConfig(vocab_size=40, d_model=16, n_layers=1, mixer="gla", depth="recursive",
                                     depth_kwargs={"n_loops": 2}))
    with pytest.raises(ValueError, match="prefixes of a 'stack' model"):
        recursive.submodel(depth=1)
    sambay = CausalLM(ModelConfig(vocab_size=40, d_model=16, n_layers=3, mixer=["gla", "gla", "gmu"],
                                  memory_layer=0))
    with pytest.raises(ValueError, match="memory or KV sharing"):
        sambay.submodel(depth=2)


def test_empty_inputs_pass_through_a_submodel():
    sub = tiny().submodel(depth=2, width=5)
    assert sub(torch.zeros(0, 4, dtype=torch.long))[0].shape == (0, 4, 40)
    assert sub(torch.zeros(2, 0, dtype=torch.long))[0].shape == (2, 0, 40)
