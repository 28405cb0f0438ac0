import dataclasses
import json

import pytest

from recurlab.bench import harness
from recurlab.bench.recursion import (BENCHMARK, VARIANTS, BatchingPart, LMPart, RecursionBenchConfig, RelaxedPart,
                                      SamplerPart, Shape, SpeedPart, StructuralPart, build_variant, jobs)
from recurlab.bench.recursion_parts import compute_per_token
from recurlab.configs import override

TEXT = "".join(f"In the beginning {i} the word was {i * 7 % 13} and it was good.\n" for i in range(400))


def tiny(corpus, **overrides):
    base = dict(mixers=["attention"], shape=Shape(depth=4, shared=2, lora_rank=2),
                lm=LMPart(d_model=16, seq_len=16, batch_size=4, steps=3, eval_sequences=4, corpus=str(corpus)),
                speed=SpeedPart(decode_prompt=4, decode_tokens=3, rounds=1),
                structural=StructuralPart(variants=["stack-N", "recursive"], d_model=16, steps=2, batch_size=4,
                                          train_examples=64, test_examples=8, max_bits=10, long_bits=11),
                iterations=[1, 2], sampler=SamplerPart(prompts=1, prompt_len=4, new_tokens=3, iterations=2, inner_steps=1),
                relaxed=RelaxedPart(ranks=[0, 16], schemes=["average"], uptrain_steps=1),
                batching=BatchingPart(thresholds=[0.0]))
    base.update(overrides)
    return RecursionBenchConfig(**base)


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    return path


def run_recursion_bench(cfg, out):
    return harness.run(BENCHMARK, cfg, out, progress=False, echo=lambda m: None)


# variant -> (depth module class name, block applications per token of a depth-4 model with 2 shared blocks)
EXPECTED = {"stack-N": ("Stack", 4), "stack-K": ("Stack", 2), "recursive": ("Recursive", 4),
            "recursive-sliced": ("Recursive", 4), "relaxed": ("Relaxed", 4), "mor-expert": ("MixtureOfRecursions", 4),
            "mor-token": ("MixtureOfRecursions", 4), "recurrent-depth": ("RecurrentDepth", 4),
            "rmoe": ("RMoEStack", 4), "rmoe-plain": ("RMoEStack", 4)}


def test_every_variant_has_an_expectation():
    assert set(EXPECTED) == set(VARIANTS)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_builds_its_depth_module_and_decodes_as_it_runs(variant):
    """The variant is the depth module it names, applies as many blocks as a depth-4 model (MoR: at most, as
    routed), shares parameters as it says, and its step-by-step decoding equals its parallel forward."""
    import torch

    torch.manual_seed(0)
    mixer = "attention" if variant == "recursive-sliced" else "gla"
    shape = Shape(depth=4, shared=2, lora_rank=2)
    model = build_variant(variant, mixer, shape, 16, vocab_size=32, seq_len=16).double().eval()
    ids = torch.randint(0, 32, (2, 6))
    with torch.no_grad():
        logits, _ = model(ids)
        applications = compute_per_token(model)
        state, steps = None, []
        for t in range(6):
            logits_t, state = model.step(ids[:, t], state)
            steps.append(logits_t)
    kind, per_token = EXPECTED[variant]
    assert type(model.depth).__name__ == kind
    assert (2 <= applications <= per_token) if kind == "MixtureOfRecursions" else applications == per_token
    torch.testing.assert_close(torch.stack(steps, 1), logits, rtol=1e-9, atol=1e-9)
    params = model.num_parameters()["total"]
    stack_n = build_variant("stack-N", mixer, shape, 16, vocab_size=32, seq_len=16).num_parameters()["total"]
    stack_k = build_variant("stack-K", mixer, shape, 16, vocab_size=32, seq_len=16).num_parameters()["total"]
    if variant in ("recursive", "recursive-sliced"):  # K blocks' weights (+ per-loop scales): about stack-K
        assert params <= stack_k + 64
    if variant == "relaxed":  # K blocks plus one LoRA per loop: between stack-K and stack-N
        assert stack_k < params < stack_n


def test_bench_runs_every_part_writes_results_and_resumes(tmp_path, corpus):
    cfg = tiny(corpus, variants=["stack-N", "stack-K", "recursive", "relaxed", "recurrent-depth"])
    result = run_recursion_bench(cfg, tmp_path / "out")
    assert {r["variant"] for r in result["lm"]} == set(cfg.variants)
    by = {r["variant"]: r for r in result["lm"]}
    assert by["stack-N"]["block_applications"] == 4 and by["stack-K"]["block_applications"] == 2
    assert by["recursive"]["params"] < by["stack-N"]["params"]
    assert all(r["train_tokens_per_s"] > 0 and r["decode_tokens_per_s"] > 0 for r in result["lm"])
    assert list(result["iterations"][0]["bits_per_byte"]) == ["1", "2"]
    # at full LoRA rank (16 = d_model) the converted model reproduces the trained stack exactly
    full = [r for r in result["relaxed"] if r["rank"] == 16][0]
    assert full["bits_before"] == pytest.approx(full["stack_bits"], abs=1e-4)
    # threshold 0: every token exits after the first loop
    assert result["batching"][0]["mean_loops"] == 1.0
    assert {r["split"] if "split" in r else "ok" for r in result["structural"]} == {"ok"}
    assert {r["task"] for r in result["structural"]} == {"successor", "traversal-pre"}
    assert set(result["sampler"][0]["summary"]) == {"0.0", "0.03", "0.1"}
    assert (tmp_path / "out" / "results.md").read_text().startswith("# Recursion over depth")
    assert (tmp_path / "out" / "recursion.png").stat().st_size > 0
    lines = (tmp_path / "out" / "runs.jsonl").read_text().splitlines()
    again = run_recursion_bench(cfg, tmp_path / "out")  # everything reused: nothing appended
    assert (tmp_path / "out" / "runs.jsonl").read_text().splitlines() == lines
    assert json.dumps(again["lm"]) == json.dumps(result["lm"])


def test_sliced_recursion_needs_attention_and_is_skipped_for_other_mixers(tmp_path, corpus):
    with pytest.raises(ValueError, match="sliced group attention"):
        build_variant("recursive-sliced", "gla", Shape(), 16)
    result = run_recursion_bench(tiny(corpus, mixers=["gla"], variants=["stack-K", "recursive-sliced"], parts=["lm"]),
                                 tmp_path / "out")
    assert [r["variant"] for r in result["lm"]] == ["stack-K"]


def test_later_parts_need_the_lm_part(tmp_path, corpus):
    with pytest.raises(ValueError, match="include lm in parts"):
        run_recursion_bench(tiny(corpus, parts=["iterations"]), tmp_path / "out")


def test_bad_settings_are_named(corpus):
    with pytest.raises(ValueError, match="multiple of shape.shared"):
        tiny(corpus, shape=Shape(depth=5, shared=2))
    with pytest.raises(ValueError, match="variants must be one of .*got 'nope'"):
        tiny(corpus, variants=["stack-N", "nope"])
    with pytest.raises(ValueError, match="structural.steps must be >= 1, got 0"):
        override(RecursionBenchConfig(), ["structural.steps=0"])
    with pytest.raises(ValueError, match="lm.stpes is not a key of lm; valid keys: d_model, seq_len"):
        override(RecursionBenchConfig(), ["lm.stpes=3"])


def test_each_part_reruns_only_when_its_own_settings_change(corpus):
    cfg = tiny(corpus)
    keys = {harness.job_key(j): j["part"] for j in jobs(cfg)}

    def parts_rerun(**changes):
        new = {harness.job_key(j) for j in jobs(dataclasses.replace(cfg, **changes))}
        return sorted({part for key, part in keys.items() if key not in new})

    assert parts_rerun(structural=dataclasses.replace(cfg.structural, steps=5)) == ["structural"]
    assert parts_rerun(speed=dataclasses.replace(cfg.speed, rounds=2)) == ["lm-decode", "lm-speed"]
    assert parts_rerun(relaxed=dataclasses.replace(cfg.relaxed, uptrain_steps=2)) == ["relaxed"]
    assert parts_rerun(iterations=[1, 3]) == ["iterations"]
    everything = sorted(set(keys.values()))
    assert parts_rerun(seed=1) == everything  # the seed and the shape reach every job
    assert parts_rerun(shape=Shape(depth=4, shared=2, lora_rank=4)) == everything
    # the lm settings reach every part built on the lm models, not structural
    assert parts_rerun(lm=dataclasses.replace(cfg.lm, steps=4)) == [p for p in everything if p != "structural"]


def test_quick_is_small_and_complete():
    q = RecursionBenchConfig.quick()
    assert q.mixers == ["attention"] and q.parts == list(("lm", "structural", "iterations", "sampler", "relaxed",
                                                          "batching"))
    assert (q.lm.steps, q.structural.steps, q.shape.depth) == (40, 40, 4)
