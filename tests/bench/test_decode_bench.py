import json

import torch

from recurlab import ops
from recurlab.bench import harness
from recurlab.bench.decode import BENCHMARK, DecodeBenchConfig, jobs
from recurlab.layers.liger import LigerState
from recurlab.layers.states import HiddenState
from recurlab.models import BlockStates


def run_decode_bench(cfg, out):
    return harness.run(BENCHMARK, cfg, out, progress=False, echo=lambda m: None)


def test_state_bytes_counts_tensors_and_caches():
    """The decode benchmark's state_mb is State.nbytes(): tensors, and caches by their buffers' capacity."""
    with torch.no_grad():
        _, cache = ops.attention(torch.randn(1, 3, 2, 4), torch.randn(1, 3, 2, 4), torch.randn(1, 3, 2, 4))
    state = BlockStates((HiddenState(torch.zeros(2, 3)), LigerState(cache, torch.zeros(4, dtype=torch.float64))))
    assert state.nbytes() == 2 * 3 * 4 + 4 * 8 + cache.nbytes()
    assert cache.nbytes() == 2 * 16 * 2 * 4 * 4  # capacity 16 tokens, keys and values


def test_tiny_decode_bench_shows_flat_and_growing_state(tmp_path):
    cfg = DecodeBenchConfig(presets=("lm-attention", "lm-mingru"), batch_sizes=(1,), prompt_len=16,
                            max_new_tokens=2048, prefill_lens=(16, 32))
    result = run_decode_bench(cfg, tmp_path)
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
    again = run_decode_bench(cfg, tmp_path)
    assert again["rows"] == result["rows"]


def test_the_report_of_a_partly_measured_run():
    from recurlab.bench.decode import render_markdown

    row = {"model": "lm-gla", "params": 1, "batch": 1, "generated": 1024, "tokens_per_s": 10.0, "state_mb": 0.1,
           "peak_rss_mb": 100.0}
    config = {"prompt_len": 16, "batch_sizes": [1, 8]}  # batch 8 not measured yet: it used to raise IndexError
    md = render_markdown({"config": config, "environment": {"threads": 1}, "rows": [row], "prefill": []})
    assert "## Batch 1" in md and "## Batch 8" not in md


def test_a_changed_preset_or_setting_is_measured_again(monkeypatch):
    from recurlab.train import lm

    cfg = DecodeBenchConfig(presets=("lm-mingru",), batch_sizes=(1,))
    key = harness.job_key(jobs(cfg)[0])
    assert harness.job_key(jobs(DecodeBenchConfig(presets=("lm-mingru",), batch_sizes=(1,), prompt_len=99))[0]) != key
    monkeypatch.setitem(lm.PRESETS["lm-mingru"]["model"], "d_model", 128)
    assert harness.job_key(jobs(cfg)[0]) != key


def test_lm_bench_tabulates_presets(tmp_path, monkeypatch):
    from recurlab.bench import lm as lm_bench

    text = "".join(f"And the LORD spake unto Moses, saying, day {i}.\n" for i in range(300))
    (tmp_path / "t.txt").write_text(text)
    cfg = lm_bench.LMBenchConfig(presets=("lm-mingru", "lm-gam"), steps=2, throughput_rounds=0,
                                 data={"path": str(tmp_path / "t.txt")})
    result = harness.run(lm_bench.BENCHMARK, cfg, tmp_path / "out", progress=False, echo=lambda m: None)
    assert [r["preset"] for r in result["rows"]] == ["lm-mingru", "lm-gam"]
    assert all(r["steps"] == 2 and r["val_bits_per_byte"] > 0 for r in result["rows"])
    assert (tmp_path / "out" / "lm-mingru" / "model" / "config.json").exists()
    md = (tmp_path / "out" / "results.md").read_text()
    assert "| lm-mingru | mingru |" in md and "Unigram baseline" in md
    trained = []
    monkeypatch.setattr(lm_bench, "train_language_model", lambda *a, **k: trained.append(a))
    monkeypatch.setattr(lm_bench, "measure_training_throughput", lambda setups, rounds: {"lm-mingru": 1234.0})
    again = harness.run(lm_bench.BENCHMARK, lm_bench.LMBenchConfig(**{**vars(cfg), "presets": ("lm-mingru",),
                                                                     "throughput_rounds": 5}),
                        tmp_path / "out", progress=False, echo=lambda m: None)
    assert trained == []  # finished runs are reused
    assert again["rows"][0]["side_by_side_tokens_per_s"] == 1234.0
    assert "| 1,234 |" in (tmp_path / "out" / "results.md").read_text()


def test_lm_bench_jobs_carry_the_whole_setup():
    from recurlab.bench.lm import LMBenchConfig, jobs

    base = {harness.job_key(j) for j in jobs(LMBenchConfig(presets=("lm-gla",), throughput_rounds=0))}
    for changed in (dict(steps=7), dict(data={"path": "x.txt"})):
        assert not base & {harness.job_key(j) for j in jobs(LMBenchConfig(presets=("lm-gla",), throughput_rounds=0,
                                                                          **changed))}
    assert jobs(LMBenchConfig(presets=("lm-gla",), steps=7, throughput_rounds=0))[0]["setup"]["train"]["steps"] == 7


def test_side_by_side_training_throughput_trains_each_preset():
    import pytest

    from recurlab.bench.lm import measure_training_throughput

    speeds = measure_training_throughput(["lm-mingru"], rounds=1, steps_per_round=1)
    assert set(speeds) == {"lm-mingru"} and speeds["lm-mingru"] > 0
    with pytest.raises(ValueError, match="rounds"):
        measure_training_throughput(["lm-mingru"], rounds=0)
