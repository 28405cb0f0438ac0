"""Every registered token mixer meets the contract of recurlab.layers.TokenMixer."""

import pytest
import torch

from recurlab import layers
from tests.layers.common import D, TINY, TOKEN_MIXERS, make_mixer, memory_for


def test_every_token_mixer_has_tiny_test_arguments():
    assert sorted(TINY) == sorted(TOKEN_MIXERS)


def run_steps(mixer, x, state=None):
    mem = memory_for(mixer, x)
    return run_steps_from(mixer, x, state, mem["memory"] if mem else None)


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
            kw = {"memory": mem["memory"][:, lo:hi]} if mem else {}
            y_part, state = mixer(x[:, lo:hi], state, **kw)
            parts.append(y_part)
        # and a step after a parallel chunk continues the same sequence
        y_head, state = mixer(x[:, :20], None, **({"memory": mem["memory"][:, :20]} if mem else {}))
        y_tail, _ = run_steps_from(mixer, x[:, 20:], state, mem["memory"][:, 20:] if mem else None)
    torch.testing.assert_close(torch.cat(parts, 1), y, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(torch.cat([y_head, y_tail], 1), y, rtol=1e-9, atol=1e-10)


def run_steps_from(mixer, x, state, memory):
    outs = []
    for t in range(x.shape[1]):
        kw = {"memory": memory[:, t]} if memory is not None else {}
        y_t, state = mixer.step(x[:, t], state, **kw)
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
        y_t, _ = mixer.step(x[:, 0], None, **({"memory": mem["memory"][:, 0]} if mem else {}))
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
