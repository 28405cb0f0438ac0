"""Sliced (causal, contiguous) group attention: the ``sliced_attention`` mixer (SReT)."""

import pytest
import torch

from recurlab import layers
from recurlab.layers.attention import Attention
from recurlab.layers.sliced_attention import SlicedAttention, group_bounds
from tests.conftest import assert_rel_close

D = 16


def make(dtype=torch.float64, **kw):
    torch.manual_seed(0)
    return layers.build("sliced_attention", D, n_heads=2, **{"group_size": None, **kw}).to(dtype)


def group_index(t: int, size: int, offset: int) -> int:
    """Which group token t is in, counted from the definition [0, offset), [offset + kG, offset + (k+1)G)."""
    if t < offset:
        return -1
    return (t - offset) // size


def naive(mixer: Attention, x: torch.Tensor, size, offset, window=None) -> torch.Tensor:
    """Attention with the mask spelt out: s <= t, same group, t - s < window."""
    B, T, _ = x.shape
    q, k, v = mixer.project(x, 0)
    mask = torch.zeros(T, T, dtype=torch.bool)
    for t in range(T):
        for s in range(t + 1):
            same = size is None or group_index(s, size, offset) == group_index(t, size, offset)
            mask[t, s] = same and (window is None or t - s < window)
    scores = torch.einsum("bthd,bshd->bhts", q, k) * mixer.head_dim**-0.5
    weights = scores.masked_fill(~mask, float("-inf")).softmax(-1)
    return mixer.o_proj(torch.einsum("bhts,bshd->bthd", weights, v).flatten(-2))


@pytest.mark.parametrize("size,offset,window", [(4, 0, None), (4, 2, None), (5, 3, None), (3, 0, 2), (1, 0, None),
                                                (64, 0, None)])
def test_forward_matches_the_mask_definition(size, offset, window):
    mixer = make(group_size=size, group_offset=offset, window=window)
    x = torch.randn(2, 13, D, dtype=torch.float64)
    y, _ = mixer(x)
    assert_rel_close(y, naive(mixer, x, size, offset, window), 1e-12, "grouped forward")


def test_group_of_one_token_sees_only_itself():
    mixer = make(group_size=1)
    x = torch.randn(2, 7, D, dtype=torch.float64)
    y, _ = mixer(x)
    _, _, v = mixer.project(x, 0)
    assert_rel_close(y, mixer.o_proj(v.flatten(-2)), 1e-12, "group of one = o_proj(v)")


@pytest.mark.parametrize("size,offset", [(4, 0), (4, 1), (3, 2)])
def test_step_and_prefix_then_steps_equal_forward(size, offset):
    mixer = make(group_size=size, group_offset=offset)
    x = torch.randn(2, 11, D, dtype=torch.float64)
    y, _ = mixer(x)
    state, steps = None, []
    for t in range(11):
        y_t, state = mixer.step(x[:, t], state)
        steps.append(y_t)
        # the cache never holds keys from before the current group
        start = group_bounds(t + 1, size, offset)[0]
        assert state.length <= t + 1 - start
    assert_rel_close(torch.stack(steps, 1), y, 1e-12, "step loop")
    for cut in (1, 3, 4, 6):
        y_a, state = mixer(x[:, :cut])
        y_b, _ = mixer(x[:, cut:], state)
        assert_rel_close(torch.cat([y_a, y_b], 1), y, 1e-12, f"prefix {cut} then rest")
        _, state = mixer(x[:, :cut])
        for t in range(cut, 11):
            y_t, state = mixer.step(x[:, t], state)
            assert_rel_close(y_t, y[:, t], 1e-12, f"prefix {cut} then step {t}")


def test_call_override_changes_the_partition_and_none_is_plain_attention():
    plain, grouped = make(), make(group_size=4)
    x = torch.randn(2, 10, D, dtype=torch.float64)
    y_plain, _ = plain(x)
    assert_rel_close(grouped(x, group=(None, 0))[0], y_plain, 1e-12, "group=(None, 0) is ungrouped")
    assert_rel_close(plain(x, group=(4, 2))[0], naive(plain, x, 4, 2), 1e-12, "override on an ungrouped layer")
    assert (grouped(x)[0] - y_plain).abs().max() > 1e-3  # grouping does change the output
    state = None
    for t in range(10):  # the override reaches step too
        y_t, state = plain.step(x[:, t], state, group=(3, 1))
    assert_rel_close(y_t, naive(plain, x, 3, 1)[:, -1], 1e-12, "step with override")


def test_gradients_flow_through_grouped_attention():
    mixer = make(torch.float32, group_size=3, group_offset=1)
    x = torch.randn(2, 10, D, requires_grad=True)
    y, _ = mixer(x)
    y.square().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("kw", [{"group_size": 0}, {"group_size": 2.5}, {"group_size": 4, "group_offset": 4},
                                {"group_size": 4, "group_offset": -1}, {"group_offset": 1}])
def test_bad_group_arguments_raise(kw):
    with pytest.raises(ValueError, match="group"):
        make(**kw)


def test_bad_call_override_raises():
    mixer = make()
    x = torch.randn(1, 4, D, dtype=torch.float64)
    with pytest.raises(ValueError, match="group"):
        mixer(x, group=4)
    with pytest.raises(ValueError, match="group offset"):
        mixer(x, group=(4, 5))


def test_only_mixers_with_the_sliced_groups_capability_take_a_group():
    x = torch.randn(1, 4, D, dtype=torch.float64)
    assert SlicedAttention.sliced_groups and not Attention.sliced_groups
    with pytest.raises(ValueError, match="attention takes no group="):
        layers.build("attention", D, n_heads=2).double()(x, group=(2, 0))
    assert not SlicedAttention.kv_attention  # MoR cannot re-run grouped caches as routed attention
