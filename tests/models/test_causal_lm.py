import json

import pytest
import torch

from recurlab.models import CausalLM, ModelConfig
from tests.layers.common import TINY, TOKEN_MIXERS

PRODUCERS = ["mingru", "minlstm", "gla"]


def tiny_config(mixer, **overrides):
    names = [mixer] if isinstance(mixer, str) else mixer
    kwargs = {n: {k: v for k, v in TINY[n].items() if k not in ("layer_idx", "n_layers", "memory_dim")}
              for n in set(names)}
    kwargs = {n: kw for n, kw in kwargs.items() if kw}
    base = dict(vocab_size=16, d_model=16, n_layers=2, mixer=mixer, mixer_kwargs=kwargs)
    if "gmu" in names:
        base["memory_layer"] = 0
    if "cross_attention" in names:
        base["kv_layer"] = 0
    return ModelConfig(**{**base, **overrides})


def model_kinds():
    """Every token mixer as a 2-layer model; gmu reads the memory of a mingru layer below it."""
    kinds = {name: name for name in TOKEN_MIXERS if name not in ("gmu", "cross_attention")}
    kinds["gmu"] = ["mingru", "gmu"]
    kinds["cross_attention"] = ["attention", "cross_attention"]
    kinds["hybrid"] = ["gla", "attention"]
    kinds["samba-gmu"] = ["swa", "gla", "gmu", "gmu"]
    kinds["sambay"] = ["gla", "swa", "gla", "attention", "gmu", "cross_attention"]  # lm-sambay's layout, shortened
    kinds["yoco"] = ["gla", "swa", "attention", "cross_attention", "cross_attention"]
    return kinds


def build(kind, **overrides):
    mixer = model_kinds()[kind]
    extra = {"n_layers": len(mixer)} if isinstance(mixer, list) else {}
    if kind == "samba-gmu":
        extra["memory_layer"] = 1
    if kind == "sambay":
        extra.update(memory_layer=2, kv_layer=3)
    if kind == "yoco":
        extra["kv_layer"] = 2
    torch.manual_seed(0)
    return CausalLM(tiny_config(mixer, **extra, **overrides))


@pytest.mark.parametrize("kind", sorted(model_kinds()))
def test_forward_logits_equal_repeated_step(kind):
    model = build(kind).double()
    ids = torch.randint(0, 16, (2, 11))
    with torch.no_grad():
        logits, _ = model(ids)
        state, steps = None, []
        for t in range(11):
            logits_t, state = model.step(ids[:, t], state)
            steps.append(logits_t)
    torch.testing.assert_close(torch.stack(steps, 1), logits, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kind", sorted(model_kinds()))
def test_a_two_layer_model_overfits_a_tiny_batch(kind):
    model = build(kind)
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 16, (4, 24), generator=gen)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(300):
        logits, _ = model(ids[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 16), ids[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] <= 0.1 * losses[0], f"{kind}: loss {losses[0]:.3f} -> {losses[-1]:.3f}"


def test_config_round_trips_through_json(tmp_path):
    config = ModelConfig(vocab_size=50, d_model=32, n_layers=4, mixer=["swa", "gla", "gmu", "gmu"],
                         mixer_kwargs={"swa": {"window": 8}}, memory_layer=1, channel_mixer="geglu")
    again = ModelConfig.from_json(config.to_json())
    assert again == config
    config.to_json(tmp_path / "config.json")
    assert ModelConfig.from_json(tmp_path / "config.json") == config
    model = CausalLM.from_config(json.loads(config.to_json()))
    assert model.config == config
    assert model.depth.blocks[0].mixer.window == 8


def test_config_errors_name_the_valid_choices():
    with pytest.raises(ValueError, match="unknown model config key\\(s\\) 'layers'; valid keys: vocab_size, d_model, n_layers"):
        CausalLM.from_config({"layers": 3})
    with pytest.raises(ValueError, match="unknown token mixer 'transformer'; valid names: .*attention.*gla"):
        ModelConfig(mixer="transformer")
    with pytest.raises(ValueError, match="a list of n_layers=3 names, got 2"):
        ModelConfig(n_layers=3, mixer=["gla", "gla"])
    with pytest.raises(ValueError, match="unknown channel mixer 'relu'"):
        ModelConfig(channel_mixer="relu")
    with pytest.raises(ValueError, match=r"layers \[1\] read a memory \(gmu\): set memory_layer"):
        ModelConfig(mixer=["gla", "gmu"])
    with pytest.raises(ValueError, match="must come after memory_layer=1"):
        ModelConfig(mixer=["gmu", "gla"], memory_layer=1)
    with pytest.raises(ValueError, match="memory_layer=0 is a 'attention' layer, which produces no memory read-out; use one of: .*gla"):
        CausalLM(ModelConfig(mixer=["attention", "gmu"], memory_layer=0))
    with pytest.raises(ValueError, match="mixer_kwargs has an entry for 'swa', which no layer uses"):
        ModelConfig(mixer="gla", mixer_kwargs={"swa": {"window": 4}})
    with pytest.raises(ValueError, match="gla takes no argument\\(s\\) window"):
        CausalLM(ModelConfig(mixer="gla", mixer_kwargs={"gla": {"window": 4}}))
    with pytest.raises(ValueError, match="d_model must be a positive int"):
        ModelConfig(d_model=0)
    with pytest.raises(ValueError, match=r"layer_kwargs\[1\]: layer 1 is a gla, which takes no argument\(s\) kernel_size"):
        ModelConfig(mixer=["baseconv", "gla"], layer_kwargs=[{"kernel_size": 3}, {"kernel_size": 3}])
    with pytest.raises(ValueError, match="layer_kwargs must be None or a list of n_layers=2 dicts"):
        ModelConfig(mixer="baseconv", layer_kwargs=[{"kernel_size": 3}])


def test_layer_kwargs_override_mixer_kwargs_per_block_and_round_trip_json():
    config = ModelConfig(vocab_size=16, d_model=16, n_layers=3, mixer=["baseconv", "gla", "baseconv"],
                         mixer_kwargs={"baseconv": {"kernel_size": 4, "l_max": 8}},
                         layer_kwargs=[{}, {"n_heads": 2}, {"kernel_size": -1}])
    assert config.mixer_arguments(0) == {"kernel_size": 4, "l_max": 8}
    assert config.mixer_arguments(1) == {"n_heads": 2}
    assert config.mixer_arguments(2) == {"kernel_size": -1, "l_max": 8}
    blocks = CausalLM(config).depth.blocks
    assert (blocks[0].mixer.kernel_len, blocks[1].mixer.n_heads, blocks[2].mixer.kernel_len) == (4, 2, 8)
    assert ModelConfig.from_json(config.to_json()) == config
    assert ModelConfig.from_dict({"mixer": "gla"}).layer_kwargs is None


def test_bad_input_ids():
    model = build("gla")
    with pytest.raises(ValueError, match=r"input ids must be an int64 tensor of shape \(B, T\)"):
        model(torch.randn(2, 5))
    with pytest.raises(ValueError, match=r"must lie in \[0, vocab_size=16\), got values in \[0, 16\]"):
        model(torch.tensor([[0, 16]]))
    with pytest.raises(ValueError, match=r"shape \(B,\)"):
        model.step(torch.tensor([[1]]))
    with pytest.raises(ValueError, match="state must be a BlockStates"):
        model(torch.tensor([[1]]), state=[None])
    with pytest.raises(ValueError, match="state must hold one state per block \\(2\\), got 1"):
        model(torch.tensor([[1]]), state=model.init_state(1).replace(blocks=model.init_state(1).blocks[:1]))


def test_parameter_count_by_name():
    model = build("sambay")
    parts = model.num_parameters()
    assert parts["total"] == sum(p.numel() for p in model.parameters())
    assert sum(v for k, v in parts.items() if k != "total") == parts["total"]
    assert "layers.4.mixer (gmu)" in parts and "head" not in parts  # tied head counted once
    untied = CausalLM(tiny_config("gla", tie_embeddings=False))
    assert untied.num_parameters()["head"] == 16 * 16


def test_rwkv_gets_its_layer_depth():
    model = CausalLM(ModelConfig(vocab_size=8, d_model=8, n_layers=3, mixer="rwkv"))
    decays = [b.mixer.time_decay for b in model.depth.blocks]
    assert not torch.equal(decays[0], decays[2])


def test_init_state_and_no_channel_mixer():
    model = CausalLM(tiny_config("mingru", channel_mixer=None))
    assert model.depth.blocks[0].channel_mixer is None
    state = model.init_state(3)
    assert len(state.blocks) == 2 and state.blocks[0].h.shape == (3, 16)
    logits, _ = model(torch.zeros(3, 4, dtype=torch.long), state)
    assert logits.shape == (3, 4, 16)


def test_layernorm_and_embedding_dropout_options():
    config = ModelConfig(vocab_size=16, d_model=16, n_layers=2, mixer="gla", mixer_kwargs={"gla": {"n_heads": 2}},
                         channel_mixer="swiglu", norm="layernorm", embed_dropout=0.5)
    model = CausalLM(config).double()
    assert isinstance(model.final_norm, torch.nn.LayerNorm)
    assert all(isinstance(n, torch.nn.LayerNorm) for b in model.depth.blocks for n in (b.mixer_norm, b.channel_norm))
    ids = torch.randint(0, 16, (2, 6))
    model.eval()  # dropout off: forward == steps
    logits, state = model(ids)
    steps, state = [], None
    for t in range(6):
        y, state = model.step(ids[:, t], state)
        steps.append(y)
    torch.testing.assert_close(torch.stack(steps, 1), logits)
    model.train()  # dropout on: embeddings are dropped while training
    assert (model.embed(ids) == 0).any()
    assert ModelConfig.from_json(config.to_json()) == config
    with pytest.raises(ValueError, match="norm must be one of rmsnorm, layernorm"):
        ModelConfig(norm="batchnorm")
    with pytest.raises(ValueError, match=r"embed_dropout must be a number in \[0, 1\)"):
        ModelConfig(embed_dropout=1.0)
