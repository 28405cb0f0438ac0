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
