"""``recurlab bench quantize`` (recurlab/bench/quantize.py) end to end on a tiny saved model and a tiny text."""

import json

import pytest
import torch

from recurlab.bench import harness
from recurlab.bench import load as load_bench
from recurlab.bench.quantize import BENCHMARK, QuantizeBenchConfig, jobs, parse_method
from recurlab.configs import ConfigError, override
from recurlab.models import CausalLM, ModelConfig
from recurlab.tasks.text import ByteTokenizer

TEXT = "".join(f"In the beginning {i} the word was {i * 7 % 13} and it was good.\n" for i in range(300))


@pytest.fixture
def setup(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    torch.manual_seed(0)
    model = CausalLM(ModelConfig(vocab_size=256, d_model=16, n_layers=2, mixer="mingru",
                                 channel_kwargs={"hidden_size": 32}))
    model.save_pretrained(tmp_path / "tiny", ByteTokenizer())
    return corpus, tmp_path / "tiny"


def tiny(corpus, folder, **overrides):
    return QuantizeBenchConfig(**{"checkpoints": {"tiny": str(folder)}, "corpus": str(corpus), "seq_len": 16,
                                  "methods": ["fairy2i-2", "rtn-2", "bitnet"], "finetune_tokens": 256,
                                  "finetune_batch": 4, "eval_every": 2, "eval_sequences": 4, "speed_batch": 1,
                                  "speed_repeats": 1, **overrides})


def run(cfg, out):
    return harness.run(BENCHMARK, cfg, out, progress=False, echo=lambda m: None)


def test_every_method_is_scored_on_the_same_model_and_the_run_resumes(tmp_path, setup):
    corpus, folder = setup
    out = tmp_path / "out"
    result = run(tiny(corpus, folder), out)
    rows = {r["method"]: r for r in result["rows"]}
    assert set(rows) == {"fairy2i-2", "rtn-2", "bitnet"}
    full = {r["full_bits_per_byte"] for r in rows.values()}
    assert len(full) == 1  # one model, one set of validation windows
    for r in rows.values():
        assert r["finetune_tokens"] == 256 and r["bytes_packed"] < r["bytes_full"]
        assert abs(r["packed_bits_per_byte"] - r["qat_bits_per_byte"]) < 1e-3
        assert r["full_tokens_per_s"] > 0 and r["packed_tokens_per_s"] > 0
    assert rows["fairy2i-2"]["bits_per_weight"] == 2 and rows["bitnet"]["bits_per_weight"] == pytest.approx(1.585, 1e-3)
    md = (out / "results.md").read_text()
    assert "## Fairy2i's claim" in md and "fairy2i-2 vs rtn-2" in md and (out / "quantize.png").stat().st_size > 0
    (control,) = result["controls"]  # the float32 model fine-tuned alike: same start, same budget
    assert control["full_bits_per_byte"] == rows["fairy2i-2"]["full_bits_per_byte"]
    assert control["finetune_tokens"] == 256 and "float32 fine-tuned" in md
    lines = (out / "runs.jsonl").read_text().splitlines()
    again = run(tiny(corpus, folder), out)  # reused
    assert (out / "runs.jsonl").read_text().splitlines() == lines and json.dumps(again["rows"]) == json.dumps(result["rows"])


def test_registered_and_jobs_follow_the_axes(tmp_path, setup):
    corpus, folder = setup
    assert load_bench("quantize") is BENCHMARK
    presets = QuantizeBenchConfig()
    parts = [j["part"] for j in jobs(presets)]
    assert parts.count("train") == 3 and parts.count("quantize") == 15 and parts.count("control") == 3
    # checkpoints: nothing trained
    assert [j["part"] for j in jobs(tiny(corpus, folder))] == ["quantize"] * 3 + ["control"]
    assert parse_method("fairy2i-1") == ("fairy2i", 1) and parse_method("ternary") == ("ternary", None)


@pytest.mark.parametrize("assignment, key", [("methods=fairy2i-9", "methods"), ("methods=gptq-2", "methods"),
                                             ("presets=lm-nope", "presets"), ("finetune_lr=0", "finetune_lr")])
def test_bad_settings_name_the_field(assignment, key):
    with pytest.raises((ConfigError, ValueError), match=key):
        override(QuantizeBenchConfig(), [assignment])


def test_a_missing_checkpoint_is_named_before_any_work():
    with pytest.raises(ValueError, match="checkpoints.x: /nowhere holds no saved model"):
        jobs(override(QuantizeBenchConfig(), ['checkpoints={"x": "/nowhere"}']))
