"""Recursive (SReT-style layer tying): equals the unrolled stack, step = forward with caches, per-loop scales
and sliced groups, learns, rejects bad arguments."""

import copy

import pytest
import torch

from recurlab.recursion import DepthLM, Stack, make_block
from recurlab.recursion.recursive import Recursive, sliced_group_schedule
from tests.conftest import assert_rel_close

D = 16
MIXER_KW = {"attention": {"n_heads": 2}, "gla": {"n_heads": 2}}


def make_blocks(mixer: str, k: int, dtype=torch.float64, seed: int = 0) -> list:
    """k distinct blocks with weights large enough that every path matters (gla starts at std 0.02)."""
    torch.manual_seed(seed)
    blocks = [make_block(mixer, D, mixer_kwargs=MIXER_KW[mixer]).to(dtype) for _ in range(k)]
    with torch.no_grad():
        for block in blocks:
            for name, p in block.named_parameters():
                if p.dim() > 1:
                    p.normal_(0, 0.3 / p.shape[1] ** 0.5 * 2)
                elif "norm" in name:
                    p.uniform_(0.5, 1.5)
    return blocks


def check_step_equals_forward(depth, x, tol=1e-10):
    """Whole sequence vs token-by-token step vs prefix forward then steps (depth in eval mode)."""
    y, _ = depth(x)
    state, ys = None, []
    for t in range(x.shape[1]):
        y_t, state = depth.step(x[:, t], state)
        ys.append(y_t)
    assert_rel_close(torch.stack(ys, 1), y, tol, "step loop vs forward")
    cut = x.shape[1] // 2 + 1
    y_a, state = depth(x[:, :cut])
    ys = [y_a]
    for t in range(cut, x.shape[1]):
        y_t, state = depth.step(x[:, t], state)
        ys.append(y_t.unsqueeze(1))
    assert_rel_close(torch.cat(ys, 1), y, tol, "prefix forward then steps")


@pytest.mark.parametrize("mixer", ["attention", "gla"])
def test_equals_the_unrolled_stack_and_keeps_one_state_per_application(mixer):
    blocks = make_blocks(mixer, 2)
    depth = Recursive(blocks, n_loops=3)
    x = torch.randn(2, 7, D, dtype=torch.float64)
    y, state = depth(x)
    y_ref, _ = Stack(blocks * 3)(x)  # the same two blocks, three times over
    assert_rel_close(y, y_ref, 1e-12, "recursive vs unrolled stack")
    assert len(state) == depth.n_applications == 6 and depth.n_unique == 2
    assert len({id(s) for s in state}) == 6  # separate caches / states per (loop, block)
    assert sum(p.numel() for p in depth.parameters()) == sum(p.numel() for b in blocks for p in b.parameters())


@pytest.mark.parametrize("mixer", ["attention", "gla"])
def test_step_equals_forward_with_loop_scales(mixer):
    depth = Recursive(make_blocks(mixer, 2), n_loops=2, loop_scales=True).eval()
    with torch.no_grad():
        depth.loop_scales.uniform_(0.5, 1.5)
    check_step_equals_forward(depth, torch.randn(2, 9, D, dtype=torch.float64))


def test_step_equals_forward_with_sliced_groups():
    sizes, offsets = sliced_group_schedule(4, 3, "shift")
    depth = Recursive(make_blocks("attention", 2), 3, loop_scales=True, group_sizes=sizes, group_offsets=offsets)
    check_step_equals_forward(depth.eval(), torch.randn(2, 11, D, dtype=torch.float64))


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
    blocks = make_blocks("attention", 2)
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


def test_bad_arguments_raise_value_errors():
    blocks = make_blocks("attention", 2)
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
    with pytest.raises(ValueError, match="attention mixer"):
        Recursive(make_blocks("gla", 1), 2, group_sizes=[4, 8])
    with pytest.raises(ValueError, match="attention mixer"):  # liger replaces Attention.forward: no groups
        Recursive([make_block("liger", D, mixer_kwargs={"n_heads": 2, "window": 4})], 2, group_sizes=[4, 8])
    depth = Recursive(blocks, 2)
    with pytest.raises(ValueError, match="state must be a list of 4"):
        depth(torch.randn(1, 3, D, dtype=torch.float64), [None] * 2)
    with pytest.raises(ValueError, match=r"\(B, T, d_model\)"):
        depth(torch.randn(1, 3, D + 1, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\(B, d_model\)"):
        depth.step(torch.randn(1, 3, D, dtype=torch.float64))


def train_lag_copy(depth, steps=80, seed=0, lag=2, vocab=16, seq_len=12) -> tuple[float, float]:
    """Train DepthLM(depth) to output the token seen ``lag`` steps back (chance: ln vocab = 2.77);
    returns (mean loss of the first 10 steps, of the last 10)."""
    torch.manual_seed(seed)
    model = DepthLM(vocab, depth)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        ids = torch.randint(0, vocab, (16, seq_len), generator=g)
        labels = torch.full_like(ids, -100)
        labels[:, lag:] = ids[:, :-lag]
        logits, _ = model(ids)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return sum(losses[:10]) / 10, sum(losses[-10:]) / 10


def test_learns_a_lag_copy_task():
    torch.manual_seed(0)
    blocks = [make_block("attention", D, mixer_kwargs={"n_heads": 2})]
    first, last = train_lag_copy(Recursive(blocks, 2, loop_scales=True, group_sizes=[None, 4]))
    assert first > 2.5 and last < 0.2 * first, (first, last)


def test_trainer_does_not_decay_the_residual_scalars():
    from recurlab.recursion import DepthLM, Recursive, make_block
    from recurlab.tasks import SequenceTask
    from recurlab.train import Trainer, TrainConfig

    model = DepthLM(16, Recursive([make_block("gla", 16)], n_loops=2, loop_scales=True))
    ids = torch.randint(0, 16, (8, 6))
    trainer = Trainer(model, SequenceTask(ids, ids, 16), None, TrainConfig(steps=1, batch_size=4, progress=False))
    groups = {g["weight_decay"]: {id(p) for p in g["params"]} for g in trainer.optimizer.param_groups}
    assert id(model.depth.loop_scales) in groups[0.0]
    assert id(model.depth.blocks[0].mixer.q_proj.weight) in groups[trainer.config.weight_decay]
