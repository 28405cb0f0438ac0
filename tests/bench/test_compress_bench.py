"""``recurlab bench compress`` (recurlab/bench/compress.py): the four methods' results read side by side."""

import json

import pytest

from recurlab.bench import harness
from recurlab.bench.compress import BENCHMARK, COMMITTED, CompressBenchConfig, jobs

AUTONEURAL = {"benchmark": "autoneural", "integer": [
    {"model": "lm-x", "rows": [{"bits": 32, "bits_per_byte": 2.0, "sqnr_db": None},
                               {"bits": 8, "bits_per_byte": 2.01, "sqnr_db": 40.0}],
     "forward_tokens_per_s": {"float32": 100.0, "int8": 150.0}, "decode_tokens_per_s": {"float32": 50.0, "int8": 40.0}}],
    "encoder": [{"encoder": "vit", "params": 1234, "rows": [
        {"bits": 32, "activations": None, "top1": 90.0, "sqnr_db": None},
        {"bits": 8, "activations": "token", "top1": 89.5, "sqnr_db": 35.5},
        {"bits": 8, "activations": "tensor", "top1": 80.0, "sqnr_db": 20.25}]}]}


def test_the_committed_results_and_a_given_file_are_read_side_by_side(tmp_path):
    given = tmp_path / "autoneural.json"
    given.write_text(json.dumps(AUTONEURAL))
    out = tmp_path / "out"
    result = harness.run(BENCHMARK, CompressBenchConfig(results={"autoneural": str(given)}), out, progress=False,
                         echo=lambda m: None)
    parts = result["parts"]
    assert {r["method"] for r in parts["quantize"]} >= {"fairy2i-2", "rtn-2"}  # the committed bench quantize
    committed = json.loads((COMMITTED / "sorted" / "results.json").read_text())
    assert [r["sorted"] for r in parts["sorted"]] == [r["sorted"] for r in committed["rows"]]
    assert {r["method"] for r in parts["prune"]} == {"imp", "ap"}
    md = (out / "results.md").read_text()
    assert "From `docs/results/sorted/results.json`." in md and "| lm-x | 2.000 | 2.010 |  | 1.50x | 0.80x |" in md
    assert "| vit | 1,234 | 90.0 | 89.5 / 80.0 |  /  | 35.5 / 20.2 |  /  |" in md
    assert (out / "compress.png").stat().st_size > 0


def test_a_missing_file_is_reported_and_others_still_shown(tmp_path):
    cfg = CompressBenchConfig(results={"autoneural": str(tmp_path / "none.json")})
    assert [j["sha256"] is None for j in jobs(cfg)] == [False, False, False, True]
    harness.run(BENCHMARK, cfg, tmp_path / "out", progress=False, echo=lambda m: None)
    assert "Missing: run that benchmark first" in (tmp_path / "out" / "results.md").read_text()


def test_wrong_files_and_parts_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown part"):
        CompressBenchConfig(results={"distill": "x.json"})
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"benchmark": "sorted", "rows": []}))
    with pytest.raises(ValueError, match="holds the results of bench 'sorted', not 'prune'"):
        harness.run(BENCHMARK, CompressBenchConfig(results={"prune": str(wrong)}), tmp_path / "o", progress=False,
                    echo=lambda m: None)
