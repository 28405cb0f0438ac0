"""``recurlab bench autoneural`` (recurlab/bench/autoneural.py) end to end on tiny saved models and a tiny encoder."""

import pytest
import torch

from recurlab.bench import harness
from recurlab.bench import load as load_bench
from recurlab.bench.autoneural import BENCHMARK, AutoNeuralBenchConfig, jobs
from recurlab.models import CausalLM, ModelConfig
from recurlab.tasks.text import ByteTokenizer


@pytest.fixture
def checkpoints(tmp_path):
    folders = {}
    for name, mixer in (("attention", "attention"), ("autoneural", ["short_conv", "attention"])):
        torch.manual_seed(0)
        model = CausalLM(ModelConfig(vocab_size=256, d_model=16, n_layers=2, mixer=mixer,
                                     channel_kwargs={"hidden_size": 32}))
        model.save_pretrained(tmp_path / name, ByteTokenizer())
        folders[name] = str(tmp_path / name)
    return folders


def tiny(checkpoints, **overrides):
    return AutoNeuralBenchConfig(**{"checkpoints": checkpoints, "eval_sequences": 2, "decode_prompt": 16,
                                    "decode_tokens": 8, "decode_rounds": 1, "speed_batch": 1, "speed_repeats": 1,
                                    "encoders": {"resnet-dwconv": 3000}, "encoder_dataset": "digits",
                                    "encoder_image_size": 8, "encoder_epochs": 1, **overrides})


def test_every_part_is_measured_and_the_run_resumes(tmp_path, checkpoints):
    out = tmp_path / "out"
    cfg = tiny(checkpoints)
    assert [j["part"] for j in jobs(cfg)] == ["decode", "integer", "integer", "encoder"]
    result = harness.run(BENCHMARK, cfg, out, progress=False, echo=lambda m: None)
    (decode,) = result["decode"]
    assert set(decode["tokens_per_s"]) == {"attention", "autoneural"}
    assert decode["state_bytes"]["autoneural"] < decode["state_bytes"]["attention"]  # one KV cache instead of two
    for r in result["integer"]:
        bits = [row["bits"] for row in r["rows"]]
        assert bits == [32, 8, 4] and r["rows"][0]["sqnr_db"] is None
        assert r["rows"][1]["sqnr_db"] > r["rows"][2]["sqnr_db"] > 0  # 8 bits closer to float than 4
        assert abs(r["rows"][1]["bits_per_byte"] - r["rows"][0]["bits_per_byte"]) < 0.05
        assert r["forward_tokens_per_s"]["int8"] > 0 and r["decode_tokens_per_s"]["int8"] > 0
    (encoder,) = result["encoder"]
    assert encoder["encoder"] == "resnet-dwconv"
    assert [(row["bits"], row["activations"]) for row in encoder["rows"]] == [
        (32, None), (8, "token"), (8, "tensor"), (4, "token"), (4, "tensor")]
    assert all(0 <= row["top1"] <= 100 for row in encoder["rows"])
    md = (out / "results.md").read_text()
    assert "## Decoding" in md and "W8A8 (per tensor)" in md and "## AutoNeural's claims" in md
    assert (out / "autoneural.png").stat().st_size > 0
    lines = (out / "runs.jsonl").read_text().splitlines()
    harness.run(BENCHMARK, cfg, out, progress=False, echo=lambda m: None)
    assert (out / "runs.jsonl").read_text().splitlines() == lines  # every job reused
    assert load_bench("autoneural") is BENCHMARK


def test_the_encoders_alone_and_bad_settings(tmp_path):
    cfg = AutoNeuralBenchConfig(presets=[], encoders={"vit": 1000})
    assert [j["part"] for j in jobs(cfg)] == ["encoder"]
    with pytest.raises(ValueError, match="encoders names unknown model"):
        AutoNeuralBenchConfig(encoders={"mobilenet": 1000})
    with pytest.raises(ValueError, match="nothing to measure"):
        AutoNeuralBenchConfig(presets=[], encoders={})
    with pytest.raises(ValueError, match="encoder_dataset"):
        AutoNeuralBenchConfig(encoder_dataset="cifar10")
    with pytest.raises(ValueError, match=r"must be ints in \[2, 8\]"):
        AutoNeuralBenchConfig(int_bits=[1])
    with pytest.raises(ValueError, match="holds no saved model"):
        jobs(AutoNeuralBenchConfig(checkpoints={"x": str(tmp_path)}))
