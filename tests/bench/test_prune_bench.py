"""``recurlab bench prune`` (recurlab/bench/prune.py): a tiny run, resume, and the committed results."""

import json
from pathlib import Path

import pytest
import torch

from recurlab.bench import harness
from recurlab.bench import load as load_bench
from recurlab.bench.prune import BENCHMARK, PruneBenchConfig, jobs, render_markdown

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results" / "prune"


def test_config_checks_and_jobs():
    cfg = PruneBenchConfig.quick(tasks=("digits-mlp",))
    assert [(j["task"], j["method"], j["seed"], j["rounds"]) for j in jobs(cfg)] == [("digits-mlp", "imp", 0, 4),
                                                                                    ("digits-mlp", "ap", 0, 4)]
    assert load_bench("prune") is BENCHMARK
    with pytest.raises(ValueError, match=r"ap_rate must be in \[0, rate=0.1\]"):
        PruneBenchConfig(rate=0.1, ap_rate=0.2)
    with pytest.raises(ValueError, match="rounds has an unknown task 'cifar'"):
        PruneBenchConfig(rounds={"cifar": 3})
    with pytest.raises(ValueError, match="epochs.digits-mlp must be an integer >= 1"):
        PruneBenchConfig(epochs={"digits-mlp": 0})


def test_tiny_run_reports_both_methods_and_resumes(tmp_path):
    torch.set_num_threads(1)
    cfg = PruneBenchConfig(tasks=("digits-mlp",), seeds=(0, 1), rounds={"digits-mlp": 2}, epochs={"digits-mlp": 2})
    out = tmp_path / "out"
    result = harness.run(BENCHMARK, cfg, out, progress=False, echo=lambda m: None)
    rows = {(r["method"], r["seed"]): r for r in result["rows"]}
    assert set(rows) == {("imp", 0), ("ap", 0), ("imp", 1), ("ap", 1)}
    for (method, seed), row in rows.items():
        assert [r["alive"] for r in row["rounds"]] == [84_480, 67_584, 54_067]  # 20% of the alive per round
        assert [r["ap_removed"] > 0 for r in row["rounds"]] == [False, method == "ap", method == "ap"]
    # the same seed: the same initialisation and batches, so the dense round is identical for both methods
    assert rows[("imp", 0)]["rounds"][0] == rows[("ap", 0)]["rounds"][0]
    md = (out / "results.md").read_text()
    assert "## digits-mlp" in md and "## AP's claim at the highest sparsities" in md
    assert (out / "prune.png").stat().st_size > 0
    lines = (out / "runs.jsonl").read_text().splitlines()
    again = harness.run(BENCHMARK, cfg, out, progress=False, echo=lambda m: None)
    assert (out / "runs.jsonl").read_text().splitlines() == lines and again["rows"] == result["rows"]


def test_the_committed_table_is_what_the_committed_results_give():
    saved = json.loads((RESULTS / "results.json").read_text())
    config = {k: tuple(v) if isinstance(v, list) else v for k, v in saved["config"].items()}
    assert (RESULTS / "results.md").read_text() == render_markdown(PruneBenchConfig(**config), saved["rows"])
