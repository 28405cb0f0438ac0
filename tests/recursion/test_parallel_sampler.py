import pytest
import torch

from recurlab.models import CausalLM
from recurlab.ops import KVCache
from recurlab.recursion.parallel_sampler import parallel_generate, sequential_generate
from recurlab.state import tensor_leaves
from recurlab.tasks import SequenceTask
from recurlab.tasks.base import IGNORE
from recurlab.train import TrainConfig, Trainer
from tests.recursion.common import config

V = 11


def tiny_model(mixer="attention", d=16, mean_iterations=4, **kw):
    """A CausalLM of 1 prelude, 2 core and 1 coda blocks (depth "recurrent_depth")."""
    return CausalLM(config("recurrent_depth", {"prelude": 1, "coda": 1, "mean_iterations": mean_iterations, **kw},
                           vocab_size=V, d_model=d, n_layers=4, mixer=mixer))


@pytest.mark.parametrize("mixer", ["attention", "gla"])
@pytest.mark.parametrize("init", [{"test_init_std": 0.0}, {"init_seed": 7}])
def test_one_position_window_with_all_iterations_is_sequential_greedy_decoding(mixer, init):
    model = tiny_model(mixer, **init)
    prompt = torch.randint(0, V, (1, 5))
    expected, seq_stats = sequential_generate(model, prompt, 12)
    got, stats = parallel_generate(model, prompt, 12, threshold=0.0, inner_steps=4, max_window=1, noise_mixing=0.0)
    assert torch.equal(got, expected)
    assert stats.forward_passes == seq_stats.forward_passes == 12
    assert stats.core_calls == seq_stats.core_calls == 11 * 4 and stats.core_iterations == 11 * 4


@pytest.mark.parametrize("mixer", ["attention", "gla"])
def test_the_wavefront_keeps_its_bookkeeping(mixer):
    model = tiny_model(mixer, mean_iterations=8, init_std=0.5)
    prompt = torch.randint(0, V, (1, 4))
    tokens, stats = parallel_generate(model, prompt, 10, threshold=0.0, inner_steps=4, seed=1)
    assert tokens.shape == (1, 14) and torch.equal(tokens[:, :4], prompt) and 0 <= tokens.min() and tokens.max() < V
    # no early exits: every position gets max_iterations = 8 core iterations, i.e. two outer steps,
    # so after the prefill's token each outer step freezes one token from the second on
    assert stats.forward_passes == 1 + 10
    assert stats.core_calls == 4 * 10 and stats.core_iterations == 4 * (1 + 2 * 9)
    again, _ = parallel_generate(model, prompt, 10, threshold=0.0, inner_steps=4, seed=1)
    assert torch.equal(tokens, again)
    # a generous threshold freezes a position after its first outer step: fewer iterations, same passes
    _, loose = parallel_generate(model, prompt, 10, threshold=10.0, inner_steps=4, seed=1)
    assert loose.core_iterations == 4 * 9 and loose.forward_passes == 1 + 9


def test_committed_states_are_values_that_window_runs_leave_untouched():
    cache = KVCache().append(torch.randn(1, 3, 2, 4), torch.randn(1, 3, 2, 4))
    keys = cache.keys.clone()
    k2, k3 = torch.randn(1, 2, 2, 4), torch.randn(1, 2, 2, 4)
    longer = cache.append(k2, torch.randn(1, 2, 2, 4))
    other = cache.append(k3, torch.randn(1, 2, 2, 4))  # a second window run from the same committed cache
    assert cache.length == 3 and cache.offset == 3 and longer.length == 5 and longer.offset == 5
    assert torch.equal(cache.keys, keys) and torch.equal(longer.keys[:, :3], keys)
    assert torch.equal(longer.keys[:, 3:], k2) and torch.equal(other.keys[:, 3:], k3)
    # the same for a whole model state: running a window from it twice gives the same result
    model = tiny_model(test_init_std=0.0).eval()
    prompt, window = torch.randint(0, V, (1, 5)), torch.randint(0, V, (1, 3))
    with torch.no_grad():
        _, state = model(prompt, model.depth.new_state(4))
        kept = [t.clone() for t in tensor_leaves(state)]
        first, _ = model(window, state)
        second, _ = model(window, state)
    assert torch.equal(first, second)
    assert all(torch.equal(a, b) for a, b in zip(tensor_leaves(state), kept))


def periodic_task(n, length, seed):
    """Each row repeats a random pattern of period 2..4 (the first 4 positions are not scored)."""
    g = torch.Generator().manual_seed(seed)
    period = torch.randint(2, 5, (n,), generator=g)
    pattern = torch.randint(0, V, (n, 4), generator=g)
    seq = pattern.gather(1, torch.arange(length + 1)[None] % period[:, None])
    labels = seq[:, 1:].clone()
    labels[:, :4] = IGNORE
    return SequenceTask(seq[:, :-1].contiguous(), labels, V)


def test_on_a_trained_model_the_sampler_mostly_agrees_with_sequential_decoding_in_fewer_core_calls():
    torch.manual_seed(0)
    model = tiny_model("attention", d=32, mean_iterations=6, backprop_depth=3, init_std=0.5)
    task = periodic_task(448, 16, 0)
    train_config = TrainConfig(steps=120, batch_size=32, lr=1e-2, warmup_steps=10, eval_every=120, precision="fp32",
                               progress=False)
    Trainer(model, task.subset(slice(64, None)), task.subset(slice(0, 64)), train_config).fit()
    model.depth.num_iterations = 8
    prompts = periodic_task(8, 8, 1).inputs
    agree = calls = seq_calls = 0
    for i, prompt in enumerate(prompts):
        expected, seq_stats = sequential_generate(model, prompt[None], 12)
        got, stats = parallel_generate(model, prompt[None], 12, seed=i)
        agree += int((got[:, 8:] == expected[:, 8:]).sum())
        calls, seq_calls = calls + stats.core_calls, seq_calls + seq_stats.core_calls
    assert agree >= 0.8 * 12 * len(prompts), agree
    assert calls < 0.7 * seq_calls, (calls, seq_calls)


def test_bad_arguments_raise_value_errors():
    model = tiny_model()
    prompt = torch.randint(0, V, (1, 3))
    with pytest.raises(ValueError, match="depth is recurrent_depth"):
        parallel_generate(CausalLM(config("stack", vocab_size=V, mixer="gla")), prompt, 3)
    with pytest.raises(ValueError, match="depth is recurrent_depth"):
        sequential_generate(CausalLM(config("stack", vocab_size=V, mixer="gla")), prompt, 3)
    with pytest.raises(ValueError, match=r"shape \(1, T\)"):
        parallel_generate(model, torch.randint(0, V, (2, 3)), 3)
    with pytest.raises(ValueError, match="vocab_size"):
        parallel_generate(model, torch.full((1, 3), V), 3)
    with pytest.raises(ValueError, match="inner_steps"):
        parallel_generate(model, prompt, 3, inner_steps=5)
    with pytest.raises(ValueError, match="max_window"):
        parallel_generate(model, prompt, 3, max_window=0)
    with pytest.raises(ValueError, match="threshold"):
        parallel_generate(model, prompt, 3, threshold=-1.0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        parallel_generate(model, prompt, -1)
    with pytest.raises(ValueError, match="noise_mixing"):
        parallel_generate(model, prompt, 3, noise_mixing=2.0)
    with pytest.raises(ValueError, match="num_iterations"):
        sequential_generate(model, prompt, 3, num_iterations=0)
