"""recurlab.bench.memory: peak memory of a mixer's forward pass against the sequence length."""

import pytest

from recurlab.bench.memory import forward_peak_bytes, markdown, peak_memory_vs_length


def test_sliding_window_mixers_prefill_in_linear_memory():
    """swa (window 128) and liger prefill in O(T * window): 4x the tokens, at most ~4x the peak
    (before issue 13 a dense T x T mask made it 16x: 196 MiB at T = 8192, 3 GiB at T = 32768)."""
    rows = peak_memory_vs_length(["swa", "liger"], [2048, 8192], 16, mixer_kwargs={"swa": {"n_heads": 1, "window": 128}})
    for name in ("swa", "liger"):
        peak = {r["seq_len"]: r["peak_bytes"] for r in rows if r["mixer"] == name}
        assert 0 < peak[2048] and peak[8192] / peak[2048] < 6, (name, peak)


def test_the_profiler_sees_the_peak_not_the_end():
    import torch

    x = torch.randn(1000, 1000)  # 4 MB

    def fn():
        y = x @ x  # 4 MB
        z = y + 1  # 8 MB held here
        del y
        return z * 2  # 8 MB again

    assert 8_000_000 <= forward_peak_bytes(fn) < 8_100_000


def test_rss_method_and_report():
    rows = peak_memory_vs_length(["swa"], [64], 16, mixer_kwargs={"swa": {"window": 8}}, method="rss")
    assert rows[0]["peak_bytes"] >= 0 and rows[0]["seq_len"] == 64
    assert "| swa | 64 |" in markdown(rows)
    with pytest.raises(ValueError, match="method must be"):
        peak_memory_vs_length(["swa"], [64], 16, method="tracemalloc")
