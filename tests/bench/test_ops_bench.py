import json

import pytest
import torch

from recurlab.bench import harness
from recurlab.bench.ops import BENCHMARK, OpsBenchConfig, check_correctness, render_markdown
from recurlab.bench.report import markdown_table
from recurlab.bench.timing import measure, measure_interleaved
from recurlab.ops.diag_scan import chunk as diag_scan_chunk

def run_ops_bench(cfg, out):
    return harness.run(BENCHMARK, cfg, out, progress=False, echo=lambda m: None)


TINY = dict(seq_lens=(32, 48), batch=2, width=16, heads=2, head_dim=8, repeats=2, budget_s=1.0)


def test_tiny_run_writes_json_markdown_and_plot(tmp_path):
    result = run_ops_bench(OpsBenchConfig(**TINY), tmp_path)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(result["rows"]))
    labels = {r["label"] for r in saved["rows"]}
    assert {"diag_scan/reference", "diag_scan/cpu", "diag_scan/chunk", "gla/reference", "gla/chunk",
            "gla/chunk (strong decay)", "gla/chunk (extreme decay)", "nn.GRU", "attention (SDPA)"} <= labels
    assert len(saved["rows"]) == len(labels) * 2  # every case at both lengths
    cpu_row = next(r for r in saved["rows"] if r["label"] == "diag_scan/cpu" and r["T"] == 32)
    assert cpu_row["fwd_ms"] > 0 and cpu_row["fwd_bwd_ms"] > 0 and cpu_row["tokens_per_s"] > 0
    ref_row = next(r for r in saved["rows"] if r["label"] == "diag_scan/reference" and r["T"] == 32)
    assert cpu_row["ratios"]["vs_reference"] == pytest.approx(ref_row["fwd_bwd_ms"] / cpu_row["fwd_bwd_ms"])
    assert [b["T"] for b in saved["bandwidth"]] == [32, 48]
    md = (tmp_path / "results.md").read_text()
    assert "| diag_scan/cpu | 32 |" in md and "% of copy bandwidth" in md
    png = (tmp_path / "time_vs_length.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_skipped_cases_are_reported_not_timed(tmp_path):
    result = run_ops_bench(OpsBenchConfig(**{**TINY, "max_extreme_decay_gla_len": 40}), tmp_path)
    row = next(r for r in result["rows"] if r["label"] == "gla/chunk (extreme decay)" and r["T"] == 48)
    assert row["skipped"] and row["fwd_ms"] is None
    assert "skipped" in render_markdown(result) and "skipped" in (tmp_path / "results.md").read_text()


def test_refuses_to_report_when_a_backend_is_wrong(monkeypatch, tmp_path):
    real = diag_scan_chunk._chunk_scan_forward
    monkeypatch.setattr(diag_scan_chunk, "_chunk_scan_forward", lambda la, b, h0, c=64: (lambda h, s: (h * 1.01, s))(*real(la, b, h0, c)))
    assert any("diag_scan/chunk" in f for f in check_correctness(torch.device("cpu")))
    with pytest.raises(RuntimeError, match="refusing to report speeds"):
        run_ops_bench(OpsBenchConfig(**TINY), tmp_path)


def test_measure_respects_repeats_and_budget():
    calls = []
    t = measure(lambda: calls.append(1), repeats=4, budget_s=10.0, device=torch.device("cpu"), warmup=2)
    assert len(calls) == 6 and len(t.runs_s) == 4 and t.median_s >= 0
    import time

    t = measure(lambda: time.sleep(0.02), repeats=50, budget_s=0.05, device=torch.device("cpu"), warmup=0)
    assert 1 <= len(t.runs_s) <= 4  # stopped by the budget


def test_measure_interleaved_times_only_the_call_after_its_setup():
    import time

    order = []
    timings = measure_interleaved({"a": lambda prepared: order.append(prepared)}, repeats=2, budget_s=10.0,
                                  device=torch.device("cpu"), warmup={"a": 1},
                                  setup={"a": lambda: (time.sleep(0.05), "state")[1]})
    assert order == ["state"] * 3 and max(timings["a"].runs_s) < 0.04


def test_measure_interleaved_runs_round_robin():
    order = []
    timings = measure_interleaved({"a": lambda: order.append("a"), "b": lambda: order.append("b")},
                                  repeats=3, budget_s=10.0, device=torch.device("cpu"), warmup={"a": 0, "b": 0})
    assert order == ["a", "b"] * 3
    assert set(timings) == {"a", "b"} and len(timings["a"].runs_s) == 3


def test_markdown_table():
    assert markdown_table(["x", "y"], [["1", "2"]]) == "| x | y |\n|---|---|\n| 1 | 2 |"
