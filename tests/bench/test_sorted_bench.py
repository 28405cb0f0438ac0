"""``recurlab bench sorted`` (recurlab/bench/sorted.py) end to end at a tiny size, and its report."""

import json

import pytest

from recurlab.bench import harness
from recurlab.bench import load as load_bench
from recurlab.bench.sorted import BENCHMARK, SortedBenchConfig, comparison_rows, jobs, render_markdown

TEXT = "".join(f"In the beginning {i} the word was {i * 7 % 13} and it was good.\n" for i in range(300))


def tiny(corpus, **overrides):
    return SortedBenchConfig(**{"d_model": 16, "n_layers": 2, "depths": [1, 2], "width_fractions": [0.5, 1.0],
                                "seq_len": 16, "batch_size": 4, "steps": 30, "warmup_steps": 3, "lr": 1e-2,
                                "eval_sequences": 4, "corpus": str(corpus), **overrides})


def test_every_grid_point_is_scored_three_ways_and_the_run_resumes(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    out = tmp_path / "out"
    cfg = tiny(corpus)
    assert [j["part"] for j in jobs(cfg)] == ["sorted", "alone", "alone", "alone", "alone"]
    result = harness.run(BENCHMARK, cfg, out, progress=False, echo=lambda m: None)
    rows = {(r["depth"], r["width_fraction"]): r for r in result["rows"]}
    assert set(rows) == {(1, 0.5), (1, 1.0), (2, 0.5), (2, 1.0)}
    for r in rows.values():
        assert all(isinstance(r[k], float) and 0 < r[k] < 9 for k in ("alone", "sorted", "cut"))
    assert rows[(2, 1.0)]["cut"] == rows[(2, 1.0)]["alone"]  # the full cut is the full model
    assert rows[(1, 0.5)]["params"] < rows[(1, 1.0)]["params"] < rows[(2, 1.0)]["params"]
    assert rows[(2, 0.5)]["width"] == rows[(2, 1.0)]["width"] // 2
    # a depth-1 cut of a model never trained that way is worse than SortedNet's trained depth-1 sub-model
    assert rows[(1, 1.0)]["cut"] > rows[(1, 1.0)]["sorted"]
    md = (out / "results.md").read_text()
    assert "## SortedNet's claim" in md and "| gla |" in md and (out / "sorted.png").stat().st_size > 0
    lines = (out / "runs.jsonl").read_text().splitlines()
    again = harness.run(BENCHMARK, cfg, out, progress=False, echo=lambda m: None)
    assert (out / "runs.jsonl").read_text().splitlines() == lines
    assert json.dumps(again["rows"]) == json.dumps(result["rows"])
    assert load_bench("sorted") is BENCHMARK


def test_the_report_reads_partial_runs_and_regenerates_from_its_json():
    cfg = SortedBenchConfig(d_model=16, n_layers=2, depths=[1, 2], width_fractions=[1.0])
    job = {"part": "alone", "mixer": "gla", "depth": 1, "width_fraction": 1.0}
    finished = [(job, {"mixer": "gla", "depth": 1, "width": 48, "width_fraction": 1.0, "params": 10,
                       "bits_per_byte": 3.0, "train_seconds": 1.0})]
    rows = comparison_rows(finished)
    assert rows == [{"alone": 3.0, "sorted": None, "cut": None, "mixer": "gla", "depth": 1, "width": 48,
                     "width_fraction": 1.0, "params": 10}]
    assert "| 1 | 48 (1) | 10 | 3.000 |  |  |  |  |" in render_markdown(cfg, rows, [])


@pytest.mark.parametrize("overrides,match", [
    ({"depths": [3]}, r"depths must be distinct ints in \[1, n_layers=2\]"),
    ({"width_fractions": [0.0, 1.0]}, r"width_fractions must be distinct numbers in \(0, 1\]"),
    ({"depths": [1]}, "the grid must hold the full model"),
    ({"mixers": []}, "mixers must name at least one"),
    ({"mixers": ["glaa"]}, r"mixers names unknown token mixer\(s\) \['glaa'\]"),
])
def test_bad_grids_are_refused(overrides, match):
    with pytest.raises(ValueError, match=match):
        SortedBenchConfig(**{"n_layers": 2, "depths": [1, 2], "width_fractions": [0.5, 1.0], **overrides})
