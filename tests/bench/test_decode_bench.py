import json

import torch

from recurlab import ops
from recurlab.bench.decode import DecodeBenchConfig, run_decode_bench, state_bytes


def test_state_bytes_counts_tensors_and_caches():
    cache = ops.KVCache()
    with torch.no_grad():
        ops.attention(torch.randn(1, 3, 2, 4), torch.randn(1, 3, 2, 4), torch.randn(1, 3, 2, 4), cache=cache)
    state = [torch.zeros(2, 3), (torch.zeros(4, dtype=torch.float64), cache), None]
    assert state_bytes(state) == 2 * 3 * 4 + 4 * 8 + cache.nbytes()
    assert cache.nbytes() == 2 * 16 * 2 * 4 * 4  # capacity 16 tokens, keys and values


def test_tiny_decode_bench_shows_flat_and_growing_state(tmp_path):
    cfg = DecodeBenchConfig(presets=("lm-attention", "lm-mingru"), batch_sizes=(1,), prompt_len=16,
                            max_new_tokens=2048, prefill_lens=(16, 32))
    result = run_decode_bench(cfg, tmp_path, progress=lambda m: None)
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    for model in ("lm-attention", "lm-mingru"):
        got = [r for r in rows if r["model"] == model]
        assert [r["generated"] for r in got] == [1024, 2048]
        assert all(r["tokens_per_s"] > 0 and r["peak_rss_mb"] > 0 for r in got)
    att = [r["state_mb"] for r in rows if r["model"] == "lm-attention"]
    rnn = [r["state_mb"] for r in rows if r["model"] == "lm-mingru"]
    assert att[1] > att[0] and rnn[0] == rnn[1]  # the KV cache grows, the recurrent state does not
    assert {r["prompt_len"] for r in result["prefill"]} == {16, 32}
    assert "relative to attention" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "decode.png").read_bytes()[:4] == b"\x89PNG"
    # a rerun reuses the finished measurements instead of measuring again
    again = run_decode_bench(cfg, tmp_path, progress=lambda m: None)
    assert again["rows"] == result["rows"]


def test_lm_bench_tabulates_presets(tmp_path, monkeypatch):
    from recurlab.bench import lm as lm_bench

    text = "".join(f"And the LORD spake unto Moses, saying, day {i}.\n" for i in range(300))
    (tmp_path / "t.txt").write_text(text)
    calls = []
    real_run = lm_bench.subprocess.run

    def fake_run(cmd, check):  # train through the real CLI, on a tiny corpus
        calls.append(cmd)
        return real_run([*cmd, "--data", str(tmp_path / "t.txt"), "--no-progress"], check=check, capture_output=True)

    monkeypatch.setattr(lm_bench.subprocess, "run", fake_run)
    result = lm_bench.run_lm_bench(["lm-mingru", "lm-gam"], tmp_path / "out", steps=2, progress=lambda m: None,
                                   throughput_rounds=0)
    assert [r["preset"] for r in result["rows"]] == ["lm-mingru", "lm-gam"]
    assert all(r["steps"] == 2 and r["val_bits_per_byte"] > 0 for r in result["rows"])
    md = (tmp_path / "out" / "results.md").read_text()
    assert "| lm-mingru | mingru |" in md and "Unigram baseline" in md
    calls.clear()
    monkeypatch.setattr(lm_bench, "measure_training_throughput", lambda presets, rounds: {"lm-mingru": 1234.0})
    again = lm_bench.run_lm_bench(["lm-mingru"], tmp_path / "out", steps=2, progress=lambda m: None)
    assert calls == []  # finished runs are reused
    assert again["rows"][0]["side_by_side_tokens_per_s"] == 1234.0
    assert "| 1,234 |" in (tmp_path / "out" / "results.md").read_text()


def test_side_by_side_training_throughput_trains_each_preset():
    import pytest

    from recurlab.bench.lm import measure_training_throughput

    speeds = measure_training_throughput(["lm-mingru"], rounds=1, steps_per_round=1)
    assert set(speeds) == {"lm-mingru"} and speeds["lm-mingru"] > 0
    with pytest.raises(ValueError, match="rounds"):
        measure_training_throughput(["lm-mingru"], rounds=0)
