"""Every registered token mixer meets the contract of recurlab.layers.TokenMixer and of recurlab.state."""

import pytest
import torch

from recurlab import layers
from recurlab.state import State, tensor_leaves
from tests.layers.common import D, TINY, TOKEN_MIXERS, make_mixer, memory_for


def test_every_token_mixer_registers_tiny_arguments_that_build_it():
    assert TOKEN_MIXERS and sorted(TINY) == sorted(TOKEN_MIXERS)
    for name in TOKEN_MIXERS:
        mixer = make_mixer(name)
        assert isinstance(mixer, layers.TokenMixer)
        assert sum(p.numel() for p in mixer.parameters()) < 50_000, f"{name}: tiny arguments build a big layer"


def run_steps(mixer, x, state=None):
    return run_steps_from(mixer, x, state, memory_for(mixer, x), 0)


@pytest.mark.parametrize("name", TOKEN_MIXERS)
def test_step_loop_equals_parallel_forward(name):
    mixer = make_mixer(name)
    x = torch.randn(2, 13, D, dtype=torch.float64)
    with torch.no_grad():
        y, _ = mixer(x, **memory_for(mixer, x))
        y_steps, _ = run_steps(mixer, x)
    torch.testing.assert_close(y_steps, y, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", TOKEN_MIXERS)
def test_streaming_with_carried_state_equals_whole(name):
    mixer = make_mixer(name)
    x = torch.randn(2, 23, D, dtype=torch.float64)
    mem = memory_for(mixer, x)
    with torch.no_grad():
        y, _ = mixer(x, **mem)
        parts, state = [], None
        for lo, hi in ((0, 1), (1, 9), (9, 23)):
            y_part, state = mixer(x[:, lo:hi], state, **mem.slice(lo, hi))
            parts.append(y_part)
        # and a step after a parallel chunk continues the same sequence
        y_head, state = mixer(x[:, :20], None, **mem.slice(0, 20))
        y_tail, _ = run_steps_from(mixer, x[:, 20:], state, mem, 20)
    torch.testing.assert_close(torch.cat(parts, 1), y, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(torch.cat([y_head, y_tail], 1), y, rtol=1e-9, atol=1e-10)


def run_steps_from(mixer, x, state, side, start):
    """Step through x, the tokens start.. of the sequence whose side inputs are ``side``."""
    outs = []
    for t in range(x.shape[1]):
        y_t, state = mixer.step(x[:, t], state, **side.at(start + t))
        outs.append(y_t)
    return torch.stack(outs, 1), state


@pytest.mark.parametrize("name", TOKEN_MIXERS)
def test_init_state_means_the_same_as_none(name):
    mixer = make_mixer(name)
    x = torch.randn(2, 6, D, dtype=torch.float64)
    mem = memory_for(mixer, x)
    with torch.no_grad():
        y_none, _ = mixer(x, None, **mem)
        y_init, _ = mixer(x, mixer.init_state(2, dtype=torch.float64), **mem)
    torch.testing.assert_close(y_init, y_none)


@pytest.mark.parametrize("name", TOKEN_MIXERS)
def test_gradients_are_finite_at_length_2048(name):
    mixer = make_mixer(name, dtype=torch.float32)
    x = torch.randn(1, 2048, D, requires_grad=True)
    y, _ = mixer(x, **memory_for(mixer, x))
    (y.float() ** 2).mean().backward()
    assert torch.isfinite(x.grad).all()
    for pname, p in mixer.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), f"{name}.{pname}: non-finite gradient"
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in mixer.parameters())


@pytest.mark.parametrize("name", TOKEN_MIXERS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_shape_and_dtype_are_preserved(name, dtype):
    mixer = make_mixer(name, dtype=dtype)
    x = torch.randn(3, 7, D).to(dtype)
    with torch.no_grad():
        y, _ = mixer(x, **memory_for(mixer, x))
        mem = memory_for(mixer, x)
        y_t, _ = mixer.step(x[:, 0], None, **mem.at(0))
    assert y.shape == x.shape and y.dtype == dtype
    assert y_t.shape == (3, D) and y_t.dtype == dtype
    assert torch.isfinite(y.float()).all()


@pytest.mark.parametrize("name", TOKEN_MIXERS)
def test_bad_input_raises_value_error(name):
    mixer = make_mixer(name, dtype=torch.float32)
    with pytest.raises(ValueError, match=rf"x must have shape \(B, T, d_model={D}\)"):
        mixer(torch.randn(2, 5, D - 1))
    with pytest.raises(ValueError, match=rf"x must have shape \(B, T, d_model={D}\)"):
        mixer(torch.randn(5, D))
    with pytest.raises(ValueError, match=rf"x_t must have shape \(B, d_model={D}\)"):
        mixer.step(torch.randn(2, 1, D))
    with pytest.raises(ValueError, match="x must have a floating dtype"):
        mixer(torch.ones(2, 5, D, dtype=torch.long))


def test_unknown_names_and_arguments():
    with pytest.raises(ValueError, match="unknown layer 'lstm'; valid names: .*gla.*mingru"):
        layers.build("lstm", 16)
    with pytest.raises(ValueError, match="unknown token mixer 'swiglu'"):
        layers.build("swiglu", 16, kind="token")
    with pytest.raises(ValueError, match="gla takes no argument\\(s\\) heads; it accepts: n_heads"):
        layers.build("gla", 16, heads=2)


# ---------------------------------------------------------------------------------------------- states


def _memory_slice(mem, rows=None, lo=None, hi=None):
    return mem.slice(lo, hi, rows)


@pytest.mark.parametrize("name", TOKEN_MIXERS)
def test_states_are_values_of_the_declared_type(name):
    mixer = make_mixer(name)
    x = torch.randn(2, 6, D, dtype=torch.float64)
    mem = memory_for(mixer, x)
    init = mixer.init_state(2, dtype=torch.float64)
    assert isinstance(init, State) and isinstance(init, mixer.state_type)
    with torch.no_grad():
        _, state = mixer(x, **mem)
        _, stepped = mixer.step(x[:, 0], state, **mem.at(0))
    assert type(state) is type(init) and type(stepped) is type(init)
    with pytest.raises(ValueError, match=f"state must be a {type(init).__name__}"):
        mixer(x, (1, 2), **mem)


@pytest.mark.parametrize("name", TOKEN_MIXERS)
def test_forward_and_step_leave_the_given_state_unchanged(name):
    mixer = make_mixer(name)
    x = torch.randn(2, 9, D, dtype=torch.float64)
    mem = memory_for(mixer, x)
    with torch.no_grad():
        y_ref, _ = mixer(x, **mem)
        _, state = mixer(x[:, :5], **_memory_slice(mem, lo=0, hi=5))
        before = [t.clone() for t in tensor_leaves(state)]
        mixer(x[:, 5:], state, **_memory_slice(mem, lo=5, hi=9))
        mixer.step(x[:, 5], state, **mem.at(5))
        after = tensor_leaves(state)
        assert len(after) == len(before)
        for a, b in zip(after, before):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        # and the kept state still continues the sequence exactly (a rollback)
        y_tail, _ = mixer(x[:, 5:], state, **_memory_slice(mem, lo=5, hi=9))
    torch.testing.assert_close(y_tail, y_ref[:, 5:], rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", TOKEN_MIXERS)
def test_select_takes_batch_rows_of_the_state(name):
    mixer = make_mixer(name)
    x = torch.randn(3, 10, D, dtype=torch.float64)
    mem = memory_for(mixer, x)
    rows = [2, 0, 2]
    with torch.no_grad():
        _, state = mixer(x[:, :6], **_memory_slice(mem, lo=0, hi=6))
        picked = state.select(rows)
        y_tail, _ = mixer(x[rows, 6:], picked, **_memory_slice(mem, rows=rows, lo=6, hi=10))
        y_ref, _ = mixer(x[rows], **_memory_slice(mem, rows=rows))
    torch.testing.assert_close(y_tail, y_ref[:, 6:], rtol=1e-9, atol=1e-10)
    assert picked.batch_size in (None, 3)  # None: a state without tensors (gmu)
    if state.batch_size is not None:
        with pytest.raises(ValueError, match=r"indices must lie in \[0, batch_size=3\)"):
            state.select([3])


@pytest.mark.parametrize("name", TOKEN_MIXERS)
def test_states_move_convert_and_detach(name):
    mixer = make_mixer(name, dtype=torch.float32)
    x = torch.randn(2, 5, D, requires_grad=True)
    mem = memory_for(mixer, x)
    _, state = mixer(x, **mem)
    detached = state.detach()
    assert not any(t.requires_grad for t in tensor_leaves(detached))
    moved = state.to("cpu", dtype=torch.float64)
    for a, b in zip(tensor_leaves(moved), tensor_leaves(state)):
        assert a.dtype == (torch.float64 if b.is_floating_point() else b.dtype)
        torch.testing.assert_close(a, b.detach().to(a.dtype))


@pytest.mark.parametrize("name", TOKEN_MIXERS)
def test_empty_inputs_give_empty_outputs_and_pass_the_state_through(name):
    mixer = make_mixer(name)
    with torch.no_grad():
        x = torch.randn(2, 7, D, dtype=torch.float64)
        mem = memory_for(mixer, x)
        _, state = mixer(x, **mem)
        empty_t = x[:, :0]
        y, same = mixer(empty_t, state, **_memory_slice(mem, lo=0, hi=0))
        assert y.shape == (2, 0, D) and same is state
        y0, state0 = mixer(torch.randn(0, 7, D, dtype=torch.float64), **mem.empty_batch(7))
        assert y0.shape == (0, 7, D) and isinstance(state0, mixer.state_type)
        y0_t, _ = mixer.step(torch.randn(0, D, dtype=torch.float64), **mem.empty_batch(None))
        assert y0_t.shape == (0, D)
