"""Every registered depth module meets the contract of recurlab.models.DepthModule and recurlab.state, inside
the one CausalLM, with every registered token mixer (taken from the layers registry, with the tiny arguments it
registers), plus SambaY's layout of the stack (memory and KV sharing): forward == token-by-token steps == prefix +
steps == two chunks == prefill + steps, states are values that ``select`` rows, empty inputs, and a save/load round trip. A combination that
cannot work is refused at construction with an error naming the mixer, the depth module and why (REJECTED)."""

import pytest
import torch

from recurlab import layers
from recurlab.models import CausalLM, ModelConfig, depth_names, make_block, tiny_depth
from recurlab.recursion import MixtureOfRecursions, RecurrentDepth, Recursive, Relaxed, RMoEStack
from recurlab.state import State, tensor_leaves

DEPTHS = depth_names()
MIXERS = layers.names("token")
SAMBAY = "stack-sambay"  # the stack in lm-sambay's layout: a memory read by gmu, one KV cache read by cross_attention
# arguments the depth module wires itself: the layer depth (rwkv) and the width of a memory read-out (gmu)
WIRED = ("layer_idx", "n_layers", "memory_dim", "n_kv_heads", "head_dim", "rope_base", "rope_scaling")
READERS = [m for m in MIXERS if layers.info(m).cls.reads_memory]
KV_READERS = [m for m in MIXERS if layers.info(m).cls.reads_kv]
PRODUCERS = [m for m in MIXERS if layers.info(m).cls.produces_memory]

MOR_UNSHAREABLE = ("liger", "sliced_attention")  # a KVCache in the state: one length for all rows
# (depth, mixer) -> what the construction error must say (a regex naming the mixer, the depth and why)
REJECTED = {
    **{(d, m): f"depth '{d}' cannot run token mixer '{m}'.*reads another layer's memory read-out.*'stack' depth module"
       for d in DEPTHS if d != "stack" for m in READERS},
    # a memory reader in every layer of a plain stack has no layer to read from: it runs in SambaY's layout
    **{("stack", m): f"layers \\[0, 1\\] read a memory \\({m}\\): set memory_layer" for m in READERS},
    **{(d, m): f"depth '{d}' cannot run token mixer '{m}'.*reads another layer's KV cache.*'stack' depth module"
       for d in DEPTHS if d != "stack" for m in KV_READERS},
    **{("stack", m): f"layers \\[0, 1\\] read a KV cache \\({m}\\): set kv_layer" for m in KV_READERS},
    **{("mor", m): f"depth 'mor' cannot run token mixer '{m}' in its shared blocks.*KVCache.*one length.*every batch "
                   f"row.*different number of tokens" for m in MOR_UNSHAREABLE},
}


def sambay_layout(mixer: str) -> tuple[list[str], int, int]:
    """(the layers' mixers, memory_layer, kv_layer): ``mixer`` in SambaY's decoder-hybrid-decoder layout: a
    producer's memory read by a gmu, then the one full-attention layer whose KV cache a cross_attention reads."""
    if mixer in PRODUCERS:
        return [mixer, "attention", "gmu", "cross_attention"], 0, 1
    if mixer in READERS or mixer in KV_READERS:
        return ["gla", "attention", "gmu", "cross_attention"], 0, 1
    return [mixer, "gla", "attention", "gmu", "cross_attention"], 1, 2


def tiny_config(depth: str, mixer: str) -> ModelConfig:
    """d_model 16, vocab 16: the depth module's tiny fields, ``mixer`` in every block (SambaY: its layout)."""
    if depth == SAMBAY:
        names, memory_layer, kv_layer = sambay_layout(mixer)
        fields = {"n_layers": len(names), "mixer": names, "memory_layer": memory_layer, "kv_layer": kv_layer}
    else:
        names, fields = [mixer], {**tiny_depth(depth), "mixer": mixer, "depth": depth}
    kwargs = {n: {k: v for k, v in layers.info(n).tiny.items() if k not in WIRED} for n in names}
    return ModelConfig(vocab_size=16, d_model=16, mixer_kwargs={n: kw for n, kw in kwargs.items() if kw}, **fields)


def tiny_model(depth: str, mixer: str, dtype=torch.float64) -> CausalLM:
    torch.manual_seed(0)
    model = CausalLM(tiny_config(depth, mixer)).to(dtype).eval()
    with torch.no_grad():  # LoRA B, routers and scalars start at 0 / 1: make every parameter matter
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def route_about_half(model: CausalLM, ids: torch.Tensor) -> None:
    """For Mixture-of-Recursions: a threshold that sends about half of ``ids``' tokens to the last recursion.

    Untrained routers score every token alike (their logit follows a direction the whole residual stream shares),
    so the default threshold sends all tokens or none, and the routed paths (per-row subsequences, recursion
    caches) would go untested. Earlier recursions take every token (capacity 1 in the tiny model), so the last
    router's scores do not depend on the threshold; it is put in the widest gap between scores near their
    median, so that forward and step, which differ by rounding, route alike."""
    if model.depth.registry_name != "mor":
        return
    assert all(c == 1 for c in model.depth.capacities[:-1])
    scores = []
    hook = model.depth.routers[-1].register_forward_hook(lambda module, args, out: scores.append(out.sigmoid()))
    with torch.no_grad():
        model(ids)
    hook.remove()
    s = scores[0].flatten().sort().values
    middle = range(len(s) // 3, 2 * len(s) // 3)
    i = max(middle, key=lambda i: float(s[i + 1] - s[i]))
    model.depth.threshold = float(s[i] + s[i + 1]) / 2
    with torch.no_grad():
        model(ids)
    taken = int(model.depth.last_active[..., -1].sum())
    assert 0 < taken < ids.numel(), f"the last recursion took {taken} of {ids.numel()} tokens"


CASES = [(d, m) for d in DEPTHS + [SAMBAY] for m in MIXERS if (d, m) not in REJECTED]


def test_every_depth_module_and_mixer_is_covered():
    assert {"stack", "recursive", "relaxed", "mor", "recurrent_depth", "rmoe"} <= set(DEPTHS)
    assert set(CASES) | set(REJECTED) == {(d, m) for d in DEPTHS + [SAMBAY] for m in MIXERS}
    assert {m for d, m in CASES if d == SAMBAY} == set(MIXERS)


@pytest.mark.parametrize("depth,mixer", sorted(REJECTED))
def test_a_combination_that_cannot_work_is_refused_saying_why(depth, mixer):
    with pytest.raises(ValueError, match=REJECTED[(depth, mixer)]):
        tiny_model(depth, mixer)


@pytest.mark.parametrize("mixer", MOR_UNSHAREABLE)
def test_mor_runs_the_mixers_it_cannot_share_in_its_first_and_last_blocks(mixer):
    """The refusal is about shared blocks only: first/last blocks see every token of every row."""
    config = tiny_config("mor", "gla")
    torch.manual_seed(0)
    model = CausalLM(ModelConfig(**{**config.to_dict(), "mixer": [mixer, "gla", mixer], "mixer_kwargs": {
        mixer: layers.info(mixer).tiny, **config.mixer_kwargs}})).double().eval()
    ids = torch.randint(0, 16, (2, 9))
    route_about_half(model, ids)
    with torch.no_grad():
        logits, _ = model(ids)
        state, steps = None, []
        for t in range(9):
            logits_t, state = model.step(ids[:, t], state)
            steps.append(logits_t)
    torch.testing.assert_close(torch.stack(steps, 1), logits, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("reads,what", [("gmu", "memory read-out"), ("cross_attention", "KV cache")])
@pytest.mark.parametrize("depth", [d for d in DEPTHS if d != "stack"])
def test_depth_modules_built_from_blocks_refuse_readers_of_other_layers_saying_why(depth, reads, what):
    reader = make_block(reads, 16, channel_mixer="moe" if depth == "rmoe" else "swiglu",
                        channel_kwargs={"router": False} if depth == "rmoe" else None)
    build = {"recursive": lambda: Recursive([reader], 2), "relaxed": lambda: Relaxed([reader], 2, rank=2),
             "mor": lambda: MixtureOfRecursions([make_block("gla", 16)], 2, first=[reader]),
             "recurrent_depth": lambda: RecurrentDepth([], [reader], []), "rmoe": lambda: RMoEStack([reader])}
    with pytest.raises(ValueError, match=f"depth '{depth}' cannot run token mixer '{reads}' .*reads another layer's "
                                         f"{what}, which only the 'stack' depth module wires"):
        build[depth]()


@pytest.mark.parametrize("depth,mixer", CASES)
def test_forward_equals_steps_and_chunks(depth, mixer):
    model = tiny_model(depth, mixer)
    ids = torch.randint(0, 16, (2, 9))
    route_about_half(model, ids)
    with torch.no_grad():
        logits, _ = model(ids)
        state, steps = None, []
        for t in range(9):
            logits_t, state = model.step(ids[:, t], state)
            steps.append(logits_t)
        head, state = model(ids[:, :4])
        tail, _ = model(ids[:, 4:], state)
        prefixed = [head]
        for t in range(4, 9):
            logits_t, state = model.step(ids[:, t], state)
            prefixed.append(logits_t.unsqueeze(1))
        last, state = model.prefill(ids[:, :4])  # what decoding starts from: forward's last position and state
        prefilled = [last.unsqueeze(1)]
        for t in range(4, 9):
            logits_t, state = model.step(ids[:, t], state)
            prefilled.append(logits_t.unsqueeze(1))
    torch.testing.assert_close(torch.stack(steps, 1), logits, rtol=1e-9, atol=1e-9, msg="steps vs forward")
    torch.testing.assert_close(torch.cat(prefilled, 1), logits[:, 3:], rtol=1e-9, atol=1e-9, msg="prefill + steps")
    torch.testing.assert_close(torch.cat([head, tail], 1), logits, rtol=1e-9, atol=1e-9, msg="two chunks")
    torch.testing.assert_close(torch.cat(prefixed, 1), logits, rtol=1e-9, atol=1e-9, msg="prefix + steps")


@pytest.mark.parametrize("depth,mixer", CASES)
def test_states_are_values_with_select(depth, mixer):
    model = tiny_model(depth, mixer)
    ids = torch.randint(0, 16, (3, 8))
    route_about_half(model, ids)
    with torch.no_grad():
        init = model.init_state(3, dtype=torch.float64)
        assert isinstance(init, State) and isinstance(init, model.depth.state_type)
        _, state = model(ids[:, :5])
        before = [t.clone() for t in tensor_leaves(state)]
        full, _ = model(ids)
        model(ids[:, 5:], state)
        model.step(ids[:, 5], state)
        for a, b in zip(tensor_leaves(state), before):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        again, _ = model(ids[:, 5:], state)  # the kept state continues exactly (a rollback)
        torch.testing.assert_close(again, full[:, 5:], rtol=1e-9, atol=1e-9)
        rows = [2, 0, 2]
        picked, _ = model(ids[rows, 5:], state.select(rows))
        ref, _ = model(ids[rows])
        torch.testing.assert_close(picked, ref[:, 5:], rtol=1e-9, atol=1e-9)
        moved = state.to("cpu", dtype=torch.float32).detach()
        assert all(t.dtype != torch.float64 for t in tensor_leaves(moved))


@pytest.mark.parametrize("depth,mixer", CASES)
def test_empty_inputs_pass_the_state_through(depth, mixer):
    model = tiny_model(depth, mixer)
    with torch.no_grad():
        _, state = model(torch.randint(0, 16, (2, 4)))
        logits, same = model(torch.zeros(2, 0, dtype=torch.long), state)
        assert logits.shape == (2, 0, 16) and same is state
        logits, _ = model(torch.zeros(0, 5, dtype=torch.long))
        assert logits.shape == (0, 5, 16)
        logits_t, _ = model.step(torch.zeros(0, dtype=torch.long))
        assert logits_t.shape == (0, 16)


@pytest.mark.parametrize("depth,mixer", CASES)
def test_save_and_load_give_identical_logits(depth, mixer, tmp_path):
    model = tiny_model(depth, mixer, torch.float32)
    model.save_pretrained(tmp_path)
    loaded = CausalLM.from_pretrained(tmp_path).eval()
    assert loaded.config == model.config
    ids = torch.randint(0, 16, (2, 6))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids)[0], model(ids)[0], rtol=0, atol=0)
        _, state = model(ids[:, :5])
        _, loaded_state = loaded(ids[:, :5])
        torch.testing.assert_close(loaded.step(ids[:, 5], loaded_state)[0], model.step(ids[:, 5], state)[0],
                                   rtol=0, atol=0)


@pytest.mark.parametrize("depth", DEPTHS)
def test_a_wrong_state_type_is_refused(depth):
    model = tiny_model(depth, "gla")
    with pytest.raises(ValueError, match=f"state must be a {model.depth.state_type.__name__}"):
        model(torch.zeros(1, 3, dtype=torch.long), state=[None])


def test_unknown_depth_and_arguments_are_refused_naming_the_valid_ones():
    with pytest.raises(ValueError, match="unknown depth module 'loop'; valid names: .*recursive.*stack"):
        ModelConfig(depth="loop")
    with pytest.raises(ValueError, match="depth 'recursive' needs depth_kwargs n_loops"):
        ModelConfig(depth="recursive")
    with pytest.raises(ValueError, match="depth 'recursive' takes no argument\\(s\\) loops in depth_kwargs; it accepts: "
                                         "n_loops"):
        ModelConfig(depth="recursive", depth_kwargs={"loops": 2})
    with pytest.raises(ValueError, match="memory_layer is wired by the 'stack' depth module"):
        ModelConfig(n_layers=2, mixer=["gla", "gmu"], memory_layer=0, depth="recursive", depth_kwargs={"n_loops": 2})
    with pytest.raises(ValueError, match="set channel_mixer='moe'"):
        CausalLM(ModelConfig(depth="rmoe"))
