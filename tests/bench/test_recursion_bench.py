import json

import pytest

from recurlab.bench.recursion import VARIANTS, RecursionBenchConfig, build_variant, run_recursion_bench

TEXT = "".join(f"In the beginning {i} the word was {i * 7 % 13} and it was good.\n" for i in range(400))


def tiny(**overrides):
    base = dict(mixers=["attention"], d_model=16, depth=4, shared=2, lora_rank=2, seq_len=16, batch_size=4, steps=3,
                eval_sequences=4, decode_prompt=4, decode_tokens=3, throughput_rounds=1, structural_d_model=16,
                structural_steps=2, structural_train_examples=64, structural_test_examples=8,
                structural_max_bits=10, structural_long_bits=11, rd_iterations=[1, 2], sampler_prompts=1,
                sampler_new_tokens=3, sampler_iterations=2, sampler_inner_steps=1, relaxed_ranks=[0, 16],
                relaxed_schemes=["average"], relaxed_uptrain_steps=1, early_exit_thresholds=[0.0],
                structural_variants=["stack-N", "recursive"])
    base.update(overrides)
    return RecursionBenchConfig(**base)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_builds_and_runs_forward_and_step(variant):
    import torch

    mixer = "attention" if variant == "recursive-sliced" else "gla"
    model = build_variant(variant, mixer, tiny(), vocab_size=32).eval()
    ids = torch.randint(0, 32, (2, 6))
    logits, _ = model(ids)
    step_logits, _ = model.step(ids[:, 0])
    assert logits.shape == (2, 6, 32) and step_logits.shape == (2, 32)


def test_bench_runs_every_part_writes_results_and_resumes(tmp_path):
    cfg = tiny(variants=["stack-N", "stack-K", "recursive", "relaxed", "recurrent-depth"])
    result = run_recursion_bench(cfg, tmp_path, text=TEXT)
    assert {r["variant"] for r in result["lm"]} == set(cfg.variants)
    by = {r["variant"]: r for r in result["lm"]}
    assert by["stack-N"]["block_applications"] == 4 and by["stack-K"]["block_applications"] == 2
    assert by["recursive"]["params"] < by["stack-N"]["params"]
    assert all(r["train_tokens_per_s"] > 0 for r in result["lm"])
    assert list(result["iterations"][0]["bits_per_byte"]) == ["1", "2"]
    # at full LoRA rank (16 = d_model) the converted model reproduces the trained stack exactly
    full = [r for r in result["relaxed"] if r["rank"] == 16][0]
    assert full["bits_before"] == pytest.approx(full["stack_bits"], abs=1e-4)
    # threshold 0: every token exits after the first loop
    assert result["batching"][0]["mean_loops"] == 1.0
    assert {r["split"] if "split" in r else "ok" for r in result["structural"]} == {"ok"}
    assert (tmp_path / "results.md").read_text().startswith("# Recursion over depth")
    assert (tmp_path / "recursion.png").stat().st_size > 0
    lines = (tmp_path / "runs.jsonl").read_text().splitlines()
    again = run_recursion_bench(cfg, tmp_path, text=TEXT)  # everything reused: nothing appended
    assert (tmp_path / "runs.jsonl").read_text().splitlines() == lines
    assert json.dumps(again["lm"]) == json.dumps(result["lm"])


def test_sliced_recursion_needs_attention_and_is_skipped_for_other_mixers(tmp_path):
    with pytest.raises(ValueError, match="sliced group attention"):
        build_variant("recursive-sliced", "gla", tiny())
    result = run_recursion_bench(tiny(mixers=["gla"], variants=["stack-K", "recursive-sliced"], parts=["lm"]),
                                 tmp_path, text=TEXT)
    assert [r["variant"] for r in result["lm"]] == ["stack-K"]


def test_later_parts_need_the_lm_part(tmp_path):
    with pytest.raises(ValueError, match="run with --parts lm"):
        run_recursion_bench(tiny(parts=["iterations"]), tmp_path, text=TEXT)


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="multiple of shared"):
        tiny(depth=5)
    with pytest.raises(ValueError, match="unknown variant"):
        tiny(variants=["stack-N", "nope"])
