"""Every registered depth module meets the contract of recurlab.models.DepthModule and recurlab.state,
inside the one CausalLM, with attention and gla blocks."""

import pytest
import torch

from recurlab.models import CausalLM, ModelConfig, depth_names, tiny_depth
from recurlab.state import State, tensor_leaves

DEPTHS = depth_names()
MIXERS = {"attention": {"n_heads": 2}, "gla": {"n_heads": 2}}


def tiny_model(depth: str, mixer: str) -> CausalLM:
    torch.manual_seed(0)
    fields = tiny_depth(depth)
    config = ModelConfig(vocab_size=16, d_model=16, mixer=mixer, mixer_kwargs={mixer: MIXERS[mixer]}, depth=depth,
                         **fields)
    model = CausalLM(config).double().eval()
    with torch.no_grad():  # LoRA B, routers and scalars start at 0 / 1: make every parameter matter
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


CASES = [(d, m) for d in DEPTHS for m in MIXERS]


def test_every_depth_module_is_covered():
    assert {"stack", "recursive", "relaxed", "mor", "recurrent_depth", "rmoe"} <= set(DEPTHS)


@pytest.mark.parametrize("depth,mixer", CASES)
def test_forward_equals_steps_and_chunks(depth, mixer):
    model = tiny_model(depth, mixer)
    ids = torch.randint(0, 16, (2, 9))
    with torch.no_grad():
        logits, _ = model(ids)
        state, steps = None, []
        for t in range(9):
            logits_t, state = model.step(ids[:, t], state)
            steps.append(logits_t)
        head, state = model(ids[:, :4])
        tail, _ = model(ids[:, 4:], state)
    torch.testing.assert_close(torch.stack(steps, 1), logits, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(torch.cat([head, tail], 1), logits, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("depth,mixer", CASES)
def test_states_are_values_with_select(depth, mixer):
    model = tiny_model(depth, mixer)
    ids = torch.randint(0, 16, (3, 8))
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
