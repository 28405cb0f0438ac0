import math

import pytest
import torch

from recurlab.models import CausalLM, make_block
from recurlab.recursion.recurrent_depth import RecurrentDepth, RecurrentDepthState
from recurlab.state import tensor_leaves
from recurlab.tasks import SequenceTask
from recurlab.tasks.base import IGNORE
from recurlab.train import TrainConfig, Trainer
from recurlab.train.trainer import evaluate

from ..conftest import assert_rel_close
from .common import config

D = 16
MIXER_KW = {"attention": {"n_heads": 2}, "gla": {"n_heads": 2}}


def blocks(mixer, n):
    return [make_block(mixer, D, mixer_kwargs=MIXER_KW[mixer]) for _ in range(n)]


def depth_module(mixer="attention", prelude=1, core=2, coda=1, **kw):
    return RecurrentDepth(blocks(mixer, prelude), blocks(mixer, core), blocks(mixer, coda), **kw)


@pytest.mark.parametrize("mixer", ["attention", "gla"])
@pytest.mark.parametrize("init", [{"test_init_std": 0.0}, {"init_std": 0.7, "init_seed": 5}])
def test_parallel_forward_equals_steps_and_prefix_then_steps(mixer, init):
    depth = depth_module(mixer, mean_iterations=3, **init).double().eval()
    x = torch.randn(2, 7, D, dtype=torch.float64)
    y, state = depth(x)
    assert isinstance(state, RecurrentDepthState) and len(state.core) == 3 and state.position == 7
    s, ys = None, []
    for t in range(7):
        y_t, s = depth.step(x[:, t], s)
        ys.append(y_t)
    assert_rel_close(torch.stack(ys, 1), y, 1e-10, f"{mixer}: steps vs forward")
    y_prefix, s = depth(x[:, :4])
    ys = [y_prefix]
    for t in range(4, 7):
        y_t, s = depth.step(x[:, t], s)
        ys.append(y_t[:, None])
    assert_rel_close(torch.cat(ys, 1), y, 1e-10, f"{mixer}: prefix forward then steps vs forward")


def test_the_test_time_initial_latent_is_random_unless_seeded_or_zero():
    x = torch.randn(1, 5, D)
    depth = depth_module(init_std=1.0).eval()
    assert not torch.equal(depth(x)[0], depth(x)[0])  # the paper's test-time behaviour: fresh noise
    depth.init_seed = 3
    assert torch.equal(depth(x)[0], depth(x)[0])
    s0 = depth.initial_latent(2, 4, 3)
    assert torch.equal(s0[:, 1:], depth.initial_latent(2, 5, 2))  # a function of the absolute position
    assert s0.abs().max() <= 3.0 and s0.std() > 0.5
    depth.init_seed, depth.test_init_std = None, 0.0
    assert torch.equal(depth(x)[0], depth(x)[0]) and not depth.initial_latent(1, 0, 3).any()


def test_iteration_count_at_test_time_and_its_state():
    depth = depth_module(mean_iterations=4, test_init_std=0.0).eval()
    x = torch.randn(1, 5, D)
    y4, state = depth(x)
    assert depth.last_num_iterations == 4 and state.num_iterations == 4 and len(state.core) == 4
    y2, _ = depth(x, num_iterations=2)
    depth.num_iterations = 2
    assert torch.equal(depth(x)[0], y2) and not torch.allclose(y2, y4)
    # decoding continues with the prefill's count, whatever the attribute says now
    kept = [t.clone() for t in tensor_leaves(state)]
    y_t, after = depth.step(x[:, 0], state)
    assert depth.last_num_iterations == 4 and len(after.core) == 4 and after.position == 6
    assert state.position == 5 and all(torch.equal(a, b) for a, b in zip(tensor_leaves(state), kept))
    assert torch.equal(depth.step(x[:, 0], state)[0], y_t)  # the kept state gives the same step again
    state = after
    with pytest.raises(ValueError, match="iteration count of the prefill"):
        depth.step(x[:, 0], state, num_iterations=3)
    assert depth.blocks_per_token() == 1 + 2 * 2 + 1 and depth.blocks_per_token(10) == 1 + 10 * 2 + 1


def test_training_samples_the_count_and_backpropagates_through_the_last_iterations_only():
    depth = depth_module(mean_iterations=8, backprop_depth=3).train()
    g = torch.Generator().manual_seed(0)
    draws = [sum(depth.sample_iterations(g)) for _ in range(4000)]
    assert min(draws) >= 1 and abs(sum(draws) / len(draws) - 9.0) < 0.25  # E[Poisson(LogNormal) + 1] = 8 + 1
    log_rates = torch.tensor([math.log(max(d - 1, 0.5)) for d in draws])
    assert 0.3 < log_rates.std() < 1.2  # wider than Poisson(8) alone
    grad_modes = []
    original = depth.core_iteration
    depth.core_iteration = lambda *a, **k: (grad_modes.append(torch.is_grad_enabled()), original(*a, **k))[1]
    for _ in range(6):
        grad_modes.clear()
        y, _ = depth(torch.randn(2, 5, D))
        r = depth.last_num_iterations
        assert grad_modes == [False] * max(r - 3, 0) + [True] * min(r, 3)
    y.sum().backward()
    assert depth.adapter.weight.grad is not None and depth.core[0].mixer.q_proj.weight.grad.abs().sum() > 0


def test_from_config_splits_prelude_core_and_coda():
    model = CausalLM(config("recurrent_depth", {"prelude": 1, "coda": 2, "mean_iterations": 3, "init_seed": 4},
                            n_layers=5, mixer="gla"))
    depth = model.depth
    assert isinstance(depth, RecurrentDepth)
    assert (len(depth.prelude), len(depth.core), len(depth.coda)) == (1, 2, 2)
    assert depth.num_iterations == 3 and depth.init_seed == 4 and depth.blocks_per_token() == 1 + 3 * 2 + 2
    state = model.init_state(2)
    assert isinstance(state, RecurrentDepthState) and state.num_iterations is None and state.core == ()
    assert len(state.prelude) == 1 and len(state.coda) == 2
    fixed = depth.new_state(5, 2)
    assert fixed.num_iterations == 5 and len(fixed.core) == 5 and all(len(c) == 2 for c in fixed.core)
    with pytest.raises(ValueError, match="for the core"):
        CausalLM(config("recurrent_depth", {"prelude": 1, "coda": 1}, n_layers=2))


def test_bad_arguments_raise_value_errors():
    with pytest.raises(ValueError, match="core must hold"):
        RecurrentDepth(blocks("gla", 1), [], [])
    with pytest.raises(ValueError, match="prelude must be a list"):
        RecurrentDepth(torch.nn.Linear(D, D), blocks("gla", 1), [])
    with pytest.raises(ValueError, match="d_model=16"):
        RecurrentDepth([make_block("gla", 8)], blocks("gla", 1), [])
    with pytest.raises(ValueError, match="mean_iterations"):
        depth_module(mean_iterations=0)
    with pytest.raises(ValueError, match="backprop_depth"):
        depth_module(backprop_depth=0)
    with pytest.raises(ValueError, match="init_std"):
        depth_module(init_std=-1.0)
    depth = depth_module().eval()
    with pytest.raises(ValueError, match="num_iterations"):
        depth.num_iterations = 0
    with pytest.raises(ValueError, match=r"x must have shape \(B, T, d_model=16\)"):
        depth(torch.randn(2, 3, D + 1))
    with pytest.raises(ValueError, match=r"x_t must have shape \(B, d_model=16\)"):
        depth.step(torch.randn(2, 3, D))
    with pytest.raises(ValueError, match="RecurrentDepthState"):
        depth(torch.randn(1, 3, D), [None])


def test_a_tiny_recurrent_depth_language_model_learns():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    inputs = torch.randint(0, 16, (320, 10), generator=g)
    labels = torch.full_like(inputs, IGNORE)
    labels[:, 1:] = inputs[:, :-1]  # the previous token: needs the token mixer
    task = SequenceTask(inputs, labels, 16)
    model = CausalLM(config("recurrent_depth", {"prelude": 1, "coda": 1, "mean_iterations": 3, "backprop_depth": 2,
                                                "init_std": 0.5}, d_model=32, n_layers=3))
    before = evaluate(model, task.subset(slice(0, 64)))
    train_config = TrainConfig(steps=100, batch_size=32, lr=1e-2, warmup_steps=10, eval_every=100, precision="fp32",
                               progress=False)
    Trainer(model, task.subset(slice(64, None)), task.subset(slice(0, 64)), train_config).fit()
    after = evaluate(model, task.subset(slice(0, 64)))
    assert after["loss"] < 0.3 * before["loss"] and after["accuracy"] > 0.9, (before, after)
