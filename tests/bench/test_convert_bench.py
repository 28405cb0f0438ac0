"""``recurlab bench convert`` (recurlab/bench/convert.py) end to end at tiny size."""

import json

import pytest

from recurlab.bench import harness
from recurlab.bench.convert import (BENCHMARK, ConvertBenchConfig, LoRAPart, TeacherPart, jobs, recovered,
                                    scratch_setup, teacher_tokens)
from recurlab.configs import ConfigError, override
from recurlab.models import CausalLM, ModelConfig

TEXT = "".join(f"In the beginning {i} the word was {i * 7 % 13} and it was good.\n" for i in range(300))


def tiny(corpus, **overrides):
    base = dict(fractions=[0.05, 0.5], scratch=["liger-gla"], corpus=str(corpus),
                teacher=TeacherPart(d_model=16, n_layers=2, steps=8, seq_len=16, batch_size=4, lr=1e-2, eval_every=4),
                lora=LoRAPart(rank=2, lr=1e-2, batch_size=4, eval_every=2), eval_sequences=8,
                decode_prompt=4, decode_tokens=6, decode_rounds=1)
    base.update(overrides)
    return ConvertBenchConfig(**base)


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    return path


def run(cfg, out):
    return harness.run(BENCHMARK, cfg, out, progress=False, echo=lambda m: None)


def test_the_whole_benchmark_runs_scores_every_row_alike_and_resumes(tmp_path, corpus):
    cfg = tiny(corpus)
    result = run(cfg, tmp_path / "out")
    rows = {(r["variant"], r["tokens"]): r for r in result["rows"]}
    teacher = rows[("teacher (attention)", teacher_tokens(cfg))]
    assert teacher["recovered"] == pytest.approx(100.0) and teacher["fraction"] == 1.0
    assert teacher_tokens(cfg) == 8 * 4 * 16
    # every target: a not-fine-tuned row, then one row per budget (whole LoRA steps of 4 x 16 tokens)
    for to in ("liger-gla", "liger-attention", "gla"):
        tokens = sorted(t for v, t in rows if v == to)
        assert tokens == [0, 64, 256], to  # 5% of 512 -> 1 step, 50% -> 4 steps
        for t in tokens:
            r = rows[(to, t)]
            assert r["recovered"] == pytest.approx(recovered(r["val_bits_per_byte"], teacher["val_bits_per_byte"],
                                                             result["unigram_bits_per_byte"]))
            assert (r["params"] > teacher["params"]) if to == "gla" else (r["params"] == teacher["params"])
            assert r["decode_tokens_per_s"] > 0 and r["state_bytes"] > 0
        assert rows[(to, 64)]["trained_params"] > 0 and rows[(to, 0)]["trained_params"] == 0
    # the teacher's KV cache grows with the generated tokens, the recurrence's state does not
    assert rows[("liger-gla", 64)]["state_bytes"] < teacher["state_bytes"]
    scratch = rows[("liger-gla from scratch", teacher_tokens(cfg))]
    assert scratch["trained_params"] == scratch["params"] == teacher["params"]
    # a conversion row's teacher score is the teacher row's: the same validation windows
    convert_rows = [json.loads(line)["result"] for line in (tmp_path / "out" / "runs.jsonl").read_text().splitlines()]
    teacher_scores = [r["teacher_bits_per_byte"] for r in convert_rows if "teacher_bits_per_byte" in r]
    assert len(teacher_scores) == 6
    assert teacher_scores == pytest.approx([teacher["val_bits_per_byte"]] * 6, abs=1e-9)
    for name in ("results.json", "results.md", "convert.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    markdown = (tmp_path / "out" / "results.md").read_text()
    assert "liger-gla from scratch" in markdown and "0 (not fine-tuned)" in markdown
    # a second run reuses every finished job
    seen = []
    harness.run(BENCHMARK, cfg, tmp_path / "out", progress=False, echo=seen.append)
    assert seen == [f"reusing {len(jobs(cfg))} finished jobs from {tmp_path / 'out' / 'runs.jsonl'}"]


def test_from_scratch_models_have_exactly_the_converted_shape(corpus):
    cfg = tiny(corpus)
    teacher = CausalLM(ModelConfig.from_dict({**scratch_setup(cfg, "liger-gla")["model"], "vocab_size": 256}))
    hybrid = CausalLM(ModelConfig.from_dict({**scratch_setup(cfg, "liger-attention")["model"], "vocab_size": 256}))
    assert teacher.config.mixers == ["liger_gla"] * 2 and hybrid.config.mixers == ["liger"] * 2
    assert hybrid.config.layer_kwargs[0]["window"] == 64


def test_quick_is_valid_and_settings_are_checked():
    cfg = ConvertBenchConfig.quick()
    assert len(jobs(cfg)) == 1 + 3 * 2 + 2 + 1
    with pytest.raises(ConfigError, match="fractions"):
        override(ConvertBenchConfig(), ["fractions=[0]"])
    with pytest.raises(ConfigError, match="targets"):
        override(ConvertBenchConfig(), ["targets=[mamba]"])


def test_a_later_job_without_its_teacher_says_what_is_missing(tmp_path, corpus):
    cfg = tiny(corpus)
    convert_job = jobs(cfg)[1]
    ctx = harness.Context(tmp_path, harness.RunLog(tmp_path / "runs.jsonl"))
    with pytest.raises(ValueError, match="earlier jobs"):
        BENCHMARK.measure(convert_job, ctx)
