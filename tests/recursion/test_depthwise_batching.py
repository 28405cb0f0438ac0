"""Continuous depth-wise batching simulation against hand-counted schedules."""

import numpy as np
import pytest
import torch

from recurlab.recursion.depthwise_batching import sample_depths, simulate_depthwise_batching


def test_hand_counted_refill_schedule():
    # batch 2, depths [1, 3, 1, 1] of 3 loops. Depth-wise: call 1 {a, b} (a leaves), call 2 {b, c} (c leaves),
    # call 3 {b, d} (both leave): 3 calls. Vanilla: 2 batches x 3 loops = 6. Static exit: max(1,3) + max(1,1) = 4.
    r = simulate_depthwise_batching([1, 3, 1, 1], batch_size=2, n_loops=3)
    assert (r.vanilla_calls, r.static_exit_calls, r.depthwise_calls) == (6, 4, 3)
    assert r.loop_applications == 6 and r.speedup == 2.0 and r.speedup_over_static_exit == 4 / 3
    assert r.vanilla_tokens_per_call == 2.0 and r.depthwise_tokens_per_call == 2.0


def test_no_early_exit_means_no_gain_and_partial_last_batch():
    # 5 tokens all at full depth 2, batch 2: both schedules run [2, 2, 1] tokens for 2 loops each = 6 calls
    r = simulate_depthwise_batching([2] * 5, batch_size=2)
    assert (r.vanilla_calls, r.static_exit_calls, r.depthwise_calls) == (6, 6, 6)
    assert r.speedup == 1.0 and r.depthwise_tokens_per_call == pytest.approx(10 / 6)


def test_refilling_interleaves_depths():
    # batch 3, depths [3, 1, 1, 1, 1, 2], n_loops 4:
    # call 1 {3,1,1} -> {2}; call 2 +{1,1} -> {1}; call 3 +{1,2} -> {1}; call 4 {1} -> {}: 4 calls.
    # vanilla: 2 batches x 4 = 8; static: max(3,1,1) + max(1,1,2) = 5
    r = simulate_depthwise_batching(torch.tensor([[3, 1, 1], [1, 1, 2]]), batch_size=3, n_loops=4)
    assert (r.vanilla_calls, r.static_exit_calls, r.depthwise_calls) == (8, 5, 4)
    assert r.n_tokens == 6 and r.loop_applications == 9 and r.depthwise_tokens_per_call == 9 / 4


def test_batch_of_one_is_the_sum_of_depths():
    depths = sample_depths([0.5, 0.25, 0.25], 50, seed=1)
    r = simulate_depthwise_batching(depths, batch_size=1, n_loops=3)
    assert r.depthwise_calls == r.static_exit_calls == depths.sum() and r.vanilla_calls == 150


def test_sampled_depths_follow_the_distribution():
    depths = sample_depths([0.2, 0.3, 0.5], 20_000, seed=0)
    assert set(np.unique(depths)) == {1, 2, 3}
    assert np.allclose(np.bincount(depths, minlength=4)[1:] / 20_000, [0.2, 0.3, 0.5], atol=0.02)
    r = simulate_depthwise_batching(depths, batch_size=16, n_loops=3)
    # with refills the calls approach the work divided by the batch: sum(depths) / 16
    assert r.depthwise_calls <= depths.sum() / 16 + 3 and r.speedup == pytest.approx(3 / 2.3, rel=0.05)


@pytest.mark.parametrize("args,match", [
    (([], 2), "depths"), (([1.5, 2], 2), "depths"), (([0, 1], 2), "1..n_loops"), (([1, 4], 2, 3), "1..n_loops"),
    (([1, 2], 0), "batch_size"), (([1, 2], 2, 0), "n_loops"),
])
def test_bad_arguments_raise(args, match):
    with pytest.raises(ValueError, match=match):
        simulate_depthwise_batching(*args)


def test_bad_distribution_raises():
    with pytest.raises(ValueError, match="probabilities"):
        sample_depths([0.5, 0.6], 10)
    with pytest.raises(ValueError, match="n_tokens"):
        sample_depths([1.0], 0)
