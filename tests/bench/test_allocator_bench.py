"""recurlab bench allocator: children with and without the tuning, a ratio per op."""

import json

import pytest

from recurlab.bench import harness, load
from recurlab.bench.allocator import AllocatorBenchConfig, child


def test_a_tiny_run_times_both_kinds_of_process(tmp_path):
    cfg = AllocatorBenchConfig(ops=("clone",), batch=1, seq_len=16, width=8, processes=1, inner=1)
    results = harness.run(load("allocator"), cfg, tmp_path, progress=False)
    assert [row["op"] for row in results["rows"]] == ["clone"]
    for row in results["rows"]:
        assert row["untuned_ms"] > 0 and row["tuned_ms"] > 0
        assert row["ratio"] == pytest.approx(row["untuned_ms"] / row["tuned_ms"])
    assert "untuned / tuned" in (tmp_path / "results.md").read_text()
    assert len((tmp_path / "runs.jsonl").read_text().splitlines()) == 1
    json.loads((tmp_path / "results.json").read_text())


@pytest.mark.parametrize("op", AllocatorBenchConfig().ops)
def test_the_child_times_each_op_and_reports_whether_the_tuning_is_on(monkeypatch, op):
    monkeypatch.setenv("RECURLAB_NO_ALLOCATOR_TUNING", "1")
    from recurlab import perf
    monkeypatch.setattr(perf, "_tuned", False)
    result = child(op, 1, 4, 4, 1, 0)
    assert result["tuned"] is False and result["ms"] >= 0


def test_an_unknown_op_is_named():
    with pytest.raises(ValueError, match="ops must be one of"):
        AllocatorBenchConfig(ops=("memset",))
