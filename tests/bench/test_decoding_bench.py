"""``recurlab bench decoding``: speculative methods against plain decoding on models the bench trains."""

import json

import pytest

from recurlab.bench import harness
from recurlab.bench.decoding import BENCHMARK, DRAFT, DecodingBenchConfig, jobs


def test_jobs_train_each_model_once_then_decode_per_target_and_temperature():
    cfg = DecodingBenchConfig(targets=("lm-attention", "lm-gla"), temperatures=(0.0, 1.0), steps=3)
    all_jobs = jobs(cfg)
    assert [j["train"] for j in all_jobs if "train" in j] == ["lm-attention", "lm-gla", DRAFT, "lm-attention-code",
                                                               "lm-gla-code"]
    assert [(j["lud"], j["data"], j["base"]["train"]) for j in all_jobs if "lud" in j] == [
        ("lm-attention", "text", "lm-attention"), ("lm-gla", "text", "lm-gla"),
        ("lm-attention", "code", "lm-attention-code"), ("lm-gla", "code", "lm-gla-code")]
    # the LUD settings do not enter the speculative jobs' keys (changing them re-measures LUD only)
    lud_changed = jobs(DecodingBenchConfig(targets=("lm-attention", "lm-gla"), temperatures=(0.0, 1.0), steps=3,
                                           lud_steps=7))
    assert [harness.job_key(j) for j in lud_changed if "decode" in j] == [harness.job_key(j) for j in all_jobs
                                                                          if "decode" in j]
    draft = next(j for j in all_jobs if j.get("train") == DRAFT)["setup"]["model"]
    assert (draft["n_layers"], draft["d_model"], draft["mixer"]) == (2, 128, "mingru")
    decodes = [(j["decode"], j["temperature"]) for j in all_jobs if "decode" in j]
    assert len(all_jobs) == 5 + 4 + 4 + 1
    assert decodes == [("lm-attention", 0.0), ("lm-gla", 0.0), ("lm-attention", 1.0), ("lm-gla", 1.0)]
    assert all_jobs[-1]["rollback"] == ["mingru", "minlstm", "gla", "liger_gla"]
    # a decoding job names the trainings it uses: retraining a model measures it again
    key = harness.job_key(all_jobs[-2])
    retrained = jobs(DecodingBenchConfig(targets=("lm-attention", "lm-gla"), temperatures=(0.0, 1.0), steps=4))
    assert harness.job_key(retrained[-2]) != key
    # the per-mixer rollback measurement does not enter the other jobs' keys
    fewer = jobs(DecodingBenchConfig(targets=("lm-attention", "lm-gla"), temperatures=(0.0, 1.0), steps=3,
                                     rollback_mixers=("gla",)))
    assert [harness.job_key(j) for j in fewer[:-1]] == [harness.job_key(j) for j in all_jobs[:-1]]


def test_bad_method_is_refused_when_the_config_is_built():
    with pytest.raises(ValueError, match="unknown decoding method"):
        DecodingBenchConfig(methods=("chain:2", "medusa:3"))


def test_bench_trains_decodes_and_reports(tmp_path):
    text = "".join(f"And the LORD spake unto Moses, saying, day {i}.\n" for i in range(200))
    (tmp_path / "t.txt").write_text(text)
    cfg = DecodingBenchConfig(targets=("lm-gla",), temperatures=(0.0, 1.0), methods=("chain:2", "rsd-c:2x1", "rsd-s:2x2"),
                              steps=1, prompts=2, prompt_len=8, new_tokens=6, data={"path": str(tmp_path / "t.txt")},
                              lud_targets=("lm-gla",), lud_alpha=0.005, lud_steps=2, lud_tokens=2000, lud_betas=(2.0, 0.3), lud_prompts=2,
                              lud_prompt_len=8, lud_new_tokens=6, code_bytes=20_000, rollback_mixers=("mingru",))
    out = tmp_path / "out"
    result = harness.run(BENCHMARK, cfg, out, progress=False, echo=lambda m: None)
    assert set(result["models"]) == {"lm-gla", DRAFT, "lm-gla-code"}
    lud = result["lud"]
    assert [(r["data"], r["beta"]) for r in lud] == [("text", 2.0), ("text", 0.3), ("code", 2.0), ("code", 0.3)]
    for r in lud:
        assert r["tokens_per_s"] > 0 and 0 <= r["exact_match"] <= 1 and 0 <= r["prefix_match"] <= 1
        assert (r["tokens_per_pass"] == 1) if r["beta"] > 1 else (1 <= r["tokens_per_pass"] <= 4)
    code = (tmp_path / "out" / "data" / "python-stdlib-train.txt").read_text()
    assert "def " in code and len(code.encode()) <= 20_000
    assert (tmp_path / "out" / "models" / "lm-gla-lud-code" / "model" / "config.json").exists()
    rows = result["rows"]
    assert [(r["temperature"], r["method"]) for r in rows] == [
        (t, m) for t in (0.0, 1.0) for m in ("plain", "chain:2", "rsd-c:2x1", "rsd-s:2x2")]
    for r in rows:
        assert r["tokens_per_s"] > 0 and r["speedup"] > 0 and r["bits_per_token"] > 0
        if r["method"] != "plain":
            # every round verifies once and emits accepted + 1 tokens: calls per token lie in [1/(depth+1), 2]
            assert 1 / (r["depth"] + 1) - 1e-9 <= r["calls_per_token"] <= 2 and 0 <= r["mean_accepted"] <= r["depth"]
    assert all(r["equals_greedy"] for r in rows if r["temperature"] == 0)  # exact at temperature 0
    assert all(r["rewinds"] == 0 for r in rows if r["method"] != "plain")  # a gla state cannot drop tokens
    rollback = result["rollback"]["lm-gla"]
    assert rollback["rewind_ms"] is None and rollback["rerun_ms"] > 0 and rollback["step_rerun_ms"] > 0
    assert rollback["prefix"]  # a gla stack keeps its prefix states in the verification call
    assert all(r["rerun_tokens"] == 0 for r in rows if r["method"] != "plain")  # states read, never re-run
    [prefix] = result["prefix_states"]
    assert prefix["mixer"] == "mingru" and min(prefix["prefix_ms"], prefix["rerun_ms"], prefix["verify_ms"]) > 0
    md = (out / "results.md").read_text()
    assert "| lm-gla | - |" in md and "prefix states (below) |" in md
    assert "## Prefix states against a re-run, per recurrent mixer" in md and "| mingru |" in md
    assert "## Lexical Unit Decoding" in md and "| lm-gla | code | 0.3 |" in md
    assert "## Temperature 0" in md and "| lm-gla | rsd-c:2x1 | 2 | 4 | 6 |" in md
    assert (out / "decoding.png").stat().st_size > 0
    assert (out / "models" / "lm-gla" / "model" / "config.json").exists()
    logged = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert len(logged) == 8  # three trainings, two decoding jobs, two LUD jobs, rollback: a rerun reuses them all
    again = harness.run(BENCHMARK, cfg, out, progress=False, echo=lambda m: None)
    assert again["rows"] == rows
