"""Recursive (SReT-style layer tying): equals the unrolled stack, step = forward with caches, per-loop scales
and sliced groups, learns, rejects bad arguments."""

import copy

import pytest
import torch

from recurlab.models import BlockStates, CausalLM, Stack, make_block
from recurlab.recursion.recursive import Recursive, sliced_group_schedule
from recurlab.state import tensor_leaves
from tests.conftest import assert_rel_close
from tests.recursion.common import D, check_step_equals_forward, config, make_blocks, train_lag_copy


@pytest.mark.parametrize("mixer", ["attention", "gla"])
def test_equals_the_unrolled_stack_and_keeps_one_state_per_application(mixer):
    blocks = make_blocks(mixer, 2)
    depth = Recursive(blocks, n_loops=3)
    x = torch.randn(2, 7, D, dtype=torch.float64)
    y, state = depth(x)
    y_ref, _ = Stack(blocks * 3)(x)  # the same two blocks, three times over
    assert_rel_close(y, y_ref, 1e-12, "recursive vs unrolled stack")
    assert isinstance(state, BlockStates)
    assert len(state.blocks) == depth.n_applications == 6 and depth.n_unique == 2
    assert len({id(s) for s in state.blocks}) == 6  # separate caches / states per (loop, block)
    assert sum(p.numel() for p in depth.parameters()) == sum(p.numel() for b in blocks for p in b.parameters())


@pytest.mark.parametrize("mixer", ["attention", "gla"])
def test_step_equals_forward_with_loop_scales(mixer):
    depth = Recursive(make_blocks(mixer, 2), n_loops=2, loop_scales=True).eval()
    with torch.no_grad():
        depth.loop_scales.uniform_(0.5, 1.5)
    check_step_equals_forward(depth, torch.randn(2, 9, D, dtype=torch.float64))


def test_step_equals_forward_with_sliced_groups():
    sizes, offsets = sliced_group_schedule(4, 3, "shift")
    depth = Recursive(make_blocks("sliced_attention", 2), 3, loop_scales=True, group_sizes=sizes,
                      group_offsets=offsets)
    check_step_equals_forward(depth.eval(), torch.randn(2, 11, D, dtype=torch.float64))


def test_a_kept_state_is_unchanged_and_continues_exactly():
    sizes, offsets = sliced_group_schedule(3, 2, "shift")
    depth = Recursive(make_blocks("sliced_attention", 2), 2, group_sizes=sizes, group_offsets=offsets).eval()
    x = torch.randn(2, 10, D, dtype=torch.float64)
    y, _ = depth(x)
    _, state = depth(x[:, :6])
    kept = [t.clone() for t in tensor_leaves(state)]
    for branch in range(2):  # two continuations from the same state: the first must not disturb the second
        y_t, after = depth.step(x[:, 6], state)
        assert_rel_close(y_t, y[:, 6], 1e-10, f"branch {branch}")
        assert after is not state and after.blocks[0].offset == 7 and state.blocks[0].offset == 6
    assert all(torch.equal(a, b) for a, b in zip(tensor_leaves(state), kept))
    y_rest, _ = depth(x[:, 6:], state)
    assert_rel_close(y_rest, y[:, 6:], 1e-10, "the kept state continues")


def test_loop_scales_start_at_one_and_follow_sret_residuals():
    blocks = make_blocks("attention", 1)
    plain, scaled = Recursive(blocks, 2), Recursive(blocks, 2, loop_scales=True)
    x = torch.randn(2, 5, D, dtype=torch.float64)
    assert_rel_close(scaled(x)[0], plain(x)[0], 1e-14, "scales initialised to 1")
    with torch.no_grad():
        scaled.loop_scales.copy_(torch.tensor([[[0.5, 2.0, 1.5, 0.25]], [[1.0, 0.0, 0.0, 3.0]]]))
    b = blocks[0]
    h = x.clone()
    y, _ = b.mixer(b.mixer_norm(h))
    h = 0.5 * h + 2.0 * y
    h = 1.5 * h + 0.25 * b.channel_mixer(b.channel_norm(h))
    h = 0.0 * h + 3.0 * b.channel_mixer(b.channel_norm(h))  # loop 1: c2 = 0 removes the mixer, c3 = 0 the residual
    assert_rel_close(scaled(x)[0], h, 1e-12, "x = c1 x + c2 f(x) per residual")


def test_per_loop_groups_equal_blocks_built_with_those_groups():
    blocks = make_blocks("sliced_attention", 2)  # ungrouped as built
    depth = Recursive(blocks, 2, group_sizes=[3, None])
    grouped = copy.deepcopy(blocks)
    for b in grouped:
        b.mixer.group_size = 3
    x = torch.randn(2, 10, D, dtype=torch.float64)
    assert_rel_close(depth(x)[0], Stack(grouped + blocks)(x)[0], 1e-12, "loop 0 grouped by 3, loop 1 full")
    assert (depth(x)[0] - Recursive(blocks, 2)(x)[0]).abs().max() > 1e-4


def test_sliced_group_schedules_change_the_partition_every_loop():
    assert sliced_group_schedule(8, 3, "shift") == ([8, 8, 8], [0, 4, 0])
    assert sliced_group_schedule(4, 3, "grow") == ([4, 8, 16], [0, 0, 0])
    with pytest.raises(ValueError, match="kind"):
        sliced_group_schedule(4, 2, "random")
    with pytest.raises(ValueError, match="group_size"):
        sliced_group_schedule(0, 2)


def test_from_config_loops_the_configs_blocks():
    model = CausalLM(config("recursive", {"n_loops": 3, "loop_scales": True, "group_sizes": [4, 4, None],
                                          "group_offsets": [0, 2, 0]}, n_layers=2, mixer="sliced_attention"))
    depth = model.depth
    assert isinstance(depth, Recursive) and depth.n_unique == 2 and depth.n_loops == 3
    assert depth.loop_scales.shape == (3, 2, 4) and depth.groups == [(4, 0), (4, 2), (None, 0)]
    state = model.init_state(2)
    assert isinstance(state, BlockStates) and len(state.blocks) == 6
    with pytest.raises(ValueError, match="n_loops"):
        config("recursive", {}, n_layers=2)


def test_bad_arguments_raise_value_errors():
    blocks = make_blocks("sliced_attention", 2)
    with pytest.raises(ValueError, match="n_loops"):
        Recursive(blocks, 0)
    with pytest.raises(ValueError, match="blocks"):
        Recursive([], 2)
    with pytest.raises(ValueError, match="distinct"):
        Recursive([blocks[0], blocks[0]], 2)
    with pytest.raises(ValueError, match="group_sizes"):
        Recursive(blocks, 2, group_sizes=[4])
    with pytest.raises(ValueError, match="group offset"):
        Recursive(blocks, 2, group_sizes=[4, 4], group_offsets=[0, 4])
    with pytest.raises(ValueError, match="take sliced groups"):
        Recursive(make_blocks("gla", 1), 2, group_sizes=[4, 8])
    with pytest.raises(ValueError, match="take sliced groups"):  # plain attention has no groups any more
        Recursive(make_blocks("attention", 1), 2, group_sizes=[4, 8])
    with pytest.raises(ValueError, match="take sliced groups"):  # liger replaces Attention.forward: no groups
        Recursive([make_block("liger", D, mixer_kwargs={"n_heads": 2, "window": 4})], 2, group_sizes=[4, 8])
    depth = Recursive(blocks, 2)
    x = torch.randn(1, 3, D, dtype=torch.float64)
    with pytest.raises(ValueError, match="state must be a BlockStates"):
        depth(x, [None] * 4)
    with pytest.raises(ValueError, match=r"one state per block application \(4\), got 2"):
        depth(x, BlockStates(depth.init_state(1).blocks[:2]))
    with pytest.raises(ValueError, match=r"\(B, T, d_model=16\)"):
        depth(torch.randn(1, 3, D + 1, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\(B, d_model=16\)"):
        depth.step(torch.randn(1, 3, D, dtype=torch.float64))


def test_learns_a_lag_copy_task():
    first, last = train_lag_copy(config("recursive", {"n_loops": 2, "loop_scales": True, "group_sizes": [None, 4]},
                                        mixer="sliced_attention"))
    assert first > 2.5 and last < 0.2 * first, (first, last)


def test_trainer_does_not_decay_the_residual_scalars():
    from recurlab.tasks import SequenceTask
    from recurlab.train import Trainer, TrainConfig

    model = CausalLM(config("recursive", {"n_loops": 2, "loop_scales": True}, mixer="gla", mixer_kwargs={}))
    ids = torch.randint(0, 16, (8, 6))
    trainer = Trainer(model, SequenceTask(ids, ids, 16), None, TrainConfig(steps=1, batch_size=4, progress=False))
    groups = {g["weight_decay"]: {id(p) for p in g["params"]} for g in trainer.optimizer.param_groups}
    assert id(model.depth.loop_scales) in groups[0.0]
    assert id(model.depth.blocks[0].mixer.q_proj.weight) in groups[trainer.config.weight_decay]
