import math

import pytest

from recurlab.train.schedule import warmup_cosine, warmup_times_cosine


def test_warmup_times_cosine_ramps_and_decays_from_step_zero():
    f = lambda s: warmup_times_cosine(s, total=100, warmup=10, min_ratio=0.1)  # noqa: E731
    cosine = lambda s: 0.55 + 0.45 * math.cos(math.pi * s / 100)  # noqa: E731
    assert f(0) == pytest.approx(0.1 * cosine(0))
    assert f(4) == pytest.approx(0.5 * cosine(4))  # the ramp scales a cosine that already runs
    assert f(9) == pytest.approx(cosine(9)) and f(9) < 1
    assert f(50) == pytest.approx(0.55)
    assert f(100) == pytest.approx(0.1) and f(150) == pytest.approx(0.1)
    assert all(f(s) >= f(s + 1) for s in range(9, 120))
    # not the trainer's schedule, whose cosine starts after the warm-up
    assert f(9) < warmup_cosine(9, total=100, warmup=10, min_ratio=0.1) == 1.0
    assert warmup_times_cosine(0, total=10, warmup=0, min_ratio=0.1) == 1.0
    with pytest.raises(ValueError, match="total"):
        warmup_times_cosine(0, total=0, warmup=0, min_ratio=0.1)


def test_epoch_cosine_is_constant_within_an_epoch_and_anneals_to_zero_over_the_epochs():
    from recurlab.train.schedule import epoch_cosine

    f = lambda s: epoch_cosine(s, steps_per_epoch=10, epochs=4)  # noqa: E731
    assert [f(s) for s in range(10)] == [1.0] * 10  # no warm-up: the peak from step 0, all of epoch 0
    assert f(10) == f(19) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert f(20) == pytest.approx(0.5)
    assert f(39) == pytest.approx(0.5 * (1 + math.cos(3 * math.pi / 4)))
    assert f(40) == f(1000) == pytest.approx(0.0)
