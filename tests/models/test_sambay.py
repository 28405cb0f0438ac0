"""SambaY's decoder-hybrid-decoder in full and the YOCO baseline (Ren et al. 2025; Sun et al. 2024): the
cross-attention layer's checks (its equation: tests/layers/test_mixer_equations.py), the stack's KV sharing (one cache for the model), the prefill's early exit
(== forward's last position, and the state decodes on exactly), the presets, and the errors that name what is
wrong."""

import pytest
import torch

from recurlab import layers
from recurlab.models import CausalLM, ModelConfig
from recurlab.ops import KVCache
from recurlab.state import tensor_leaves
from recurlab.train.lm import PRESETS

SAMBAY = ["gla", "swa", "gla", "attention", "gmu", "cross_attention"]
YOCO = ["gla", "swa", "attention", "cross_attention", "cross_attention"]
KW = {"gla": {"n_heads": 2}, "swa": {"n_heads": 2, "window": 4}, "attention": {"n_heads": 2},
      "cross_attention": {"n_heads": 2}}


def tiny(mixers, **fields):
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=16, d_model=16, n_layers=len(mixers), mixer=mixers,
                         mixer_kwargs={k: v for k, v in KW.items() if k in mixers}, **fields)
    model = CausalLM(config).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


MODELS = {"sambay": lambda: tiny(SAMBAY, memory_layer=2, kv_layer=3), "yoco": lambda: tiny(YOCO, kv_layer=2)}


def test_cross_attention_names_a_missing_or_wrong_cache():
    layer = layers.build("cross_attention", 8, n_heads=2)
    x = torch.randn(1, 3, 8)
    with pytest.raises(ValueError, match="cross_attention needs kv=.*set kv_layer"):
        layer(x)
    with pytest.raises(ValueError, match="kv must hold every token so far, these 3 included"):
        layer(x, kv=KVCache().append(torch.randn(1, 2, 2, 4), torch.randn(1, 2, 2, 4)))
    with pytest.raises(ValueError, match="KVCache without a window"):
        layer(x, kv=KVCache(4).append(torch.randn(1, 3, 2, 4), torch.randn(1, 3, 2, 4)))
    with pytest.raises(ValueError, match=r"kv keys must have shape .* \(1, 3, 2, 4\)"):
        layer(x, kv=KVCache().append(torch.randn(1, 3, 1, 4), torch.randn(1, 3, 1, 4)))
    with pytest.raises(ValueError, match="gla takes no kv="):
        layers.build("gla", 8, n_heads=2)(x, kv=None)


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_forward_step_and_prefill_agree(kind):
    model = MODELS[kind]()
    ids = torch.randint(0, 16, (3, 12), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits, _ = model(ids)
        state, steps = None, []
        for t in range(12):
            out, state = model.step(ids[:, t], state)
            steps.append(out)
        torch.testing.assert_close(torch.stack(steps, 1), logits, rtol=1e-9, atol=1e-10)
        for cut in (1, 5, 11):  # the early exit: forward's last position, and a state that decodes on exactly
            last, state = model.prefill(ids[:, :cut])
            torch.testing.assert_close(last, logits[:, cut - 1], rtol=1e-9, atol=1e-10)
            _, full_state = model(ids[:, :cut])
            for a, b in zip(tensor_leaves(state), tensor_leaves(full_state)):
                torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
            tail = []
            for t in range(cut, 12):
                out, state = model.step(ids[:, t], state)
                tail.append(out)
            torch.testing.assert_close(torch.stack(tail, 1), logits[:, cut:], rtol=1e-9, atol=1e-10)
        # select: rows of the state continue their own sequences
        _, state = model(ids[:, :6])
        rows = [2, 0]
        out, _ = model(ids[rows, 6:], state.select(rows))
        torch.testing.assert_close(out, logits[rows, 6:], rtol=1e-9, atol=1e-10)


def test_the_early_exit_runs_the_cross_decoder_on_the_last_token_only():
    model = MODELS["sambay"]()
    tokens = {}  # block index -> tokens per row it computed outputs for

    def counting(i, method, per_call):
        def wrapped(x, *args, **kwargs):
            tokens[i] = tokens.get(i, 0) + per_call(x)
            return method(x, *args, **kwargs)
        return wrapped

    for i, block in enumerate(model.depth.blocks):  # the entry points a block calls
        m = block.mixer
        m.forward = counting(i, m.forward, lambda x: x.shape[1])
        m.step = counting(i, m.step, lambda x: 1)
        m.forward_with_memory = counting(i, m.forward_with_memory, lambda x: x.shape[1])
    with torch.no_grad():
        model.prefill(torch.randint(0, 16, (2, 9)))
    assert model.depth.early_exit
    # the self-decoder (gla, swa, gla) runs on all 9 tokens; the full-attention layer only projects the first 8
    # tokens' keys and values and runs on the last; the cross-decoder (gmu, cross_attention) runs on the last only
    assert tokens == {0: 9, 1: 9, 2: 9, 3: 1, 4: 1, 5: 1}


def test_one_kv_cache_for_the_model():
    """The state of the full layout grows by one layer's keys and values per token; the cross-decoder adds none."""
    model = MODELS["yoco"]()
    with torch.no_grad():
        _, state = model(torch.randint(0, 16, (2, 20)))
    caches = [s for s in state.blocks if isinstance(s, KVCache) and s.window is None]
    assert len(caches) == 1 and caches[0].length == 20
    assert all(not tensor_leaves(s) for s, b in zip(state.blocks, model.depth.blocks) if b.mixer.reads_kv)


def test_save_and_load_round_trip(tmp_path):
    model = MODELS["sambay"]()
    model.save_pretrained(tmp_path / "m")
    loaded = CausalLM.from_pretrained(tmp_path / "m")
    assert loaded.config.kv_layer == 3 and loaded.config.memory_layer == 2
    ids = torch.randint(0, 16, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids)[0], model(ids)[0])


def test_the_presets_build_the_papers_layouts():
    for name, kv in (("lm-sambay", 5), ("lm-yoco", 5)):
        config = ModelConfig.from_dict({**PRESETS[name]["model"], "d_model": 64})
        assert config.kv_layer == kv and config.mixers[kv] == "attention"
        model = CausalLM(config)
        assert model.depth.early_exit
    sambay = ModelConfig.from_dict(PRESETS["lm-sambay"]["model"])
    assert sambay.mixers[sambay.memory_layer] == "gla" and sambay.mixers[6:] == ["gmu", "cross_attention"]
    assert ModelConfig.from_dict(PRESETS["lm-yoco"]["model"]).mixers[6:] == ["cross_attention"] * 2
    assert ModelConfig.from_dict(PRESETS["lm-samba-gmu"]["model"]).kv_layer is None


@pytest.mark.parametrize("fields,message", [
    ({"mixer": ["attention", "cross_attention"]}, r"layers \[1\] read a KV cache \(cross_attention\): set kv_layer"),
    ({"mixer": ["gla", "cross_attention"], "kv_layer": 0}, "kv_layer=0 must be a full 'attention' layer"),
    ({"mixer": ["cross_attention", "attention"], "kv_layer": 1}, r"cross_attention layers \[0\] must come after"),
    ({"mixer": ["attention", "cross_attention"], "kv_layer": 2}, r"kv_layer must be a layer index in \[0, 2\)"),
    ({"mixer": ["attention", "cross_attention"], "kv_layer": 0, "depth": "recursive",
      "depth_kwargs": {"n_loops": 2}}, "depth 'recursive' cannot run token mixer 'cross_attention'"),
])
def test_bad_layouts_are_refused_by_name(fields, message):
    base = dict(vocab_size=16, d_model=16, n_layers=2, mixer_kwargs={})
    with pytest.raises(ValueError, match=message):
        ModelConfig(**{**base, **fields})


def test_a_cross_attention_must_read_keys_as_they_are_written():
    from recurlab.models import make_block
    from recurlab.models.stack import Stack

    blocks = [make_block("attention", 16, mixer_kwargs={"n_heads": 2}),
              make_block("cross_attention", 16, mixer_kwargs={"n_heads": 4})]
    with pytest.raises(ValueError, match="block 1's cross_attention must read keys as block 0 writes them"):
        Stack(blocks, kv_layer=0)


def test_sub_models_and_tree_scoring_are_refused():
    model = MODELS["yoco"]()
    with pytest.raises(ValueError, match="memory or KV sharing"):
        model.submodel(depth=3)
    assert model.depth.shares_layers
    from recurlab.decoding.rsd import scores_trees
    assert not scores_trees(model)
