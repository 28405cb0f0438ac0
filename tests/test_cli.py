import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from recurlab import perf
from recurlab.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]


def test_info_lists_backends(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "compiled CPU kernels: ready" in out
    assert "diag_scan" in out and "reference chunk cpu" in out


def test_bench_ops_arguments_parse():
    args = build_parser().parse_args(["bench", "ops", "--quick", "--set", "seq_lens=64,128", "--set", "repeats=2",
                                      "--out", "x"])
    assert args.quick and args.set == ["seq_lens=64,128", "repeats=2"] and args.out == "x"
    args = build_parser().parse_args(["bench", "ops", "--set", "seq_lens=64,128", "repeats=2"])
    assert args.set == ["seq_lens=64,128", "repeats=2"] and args.out == "bench-results/ops"


def test_unknown_command_exits_with_usage():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["frobnicate"])


def test_console_script_runs_bench_ops(tmp_path):
    # the installed entry point end to end, at a tiny length
    out = subprocess.run([sys.executable, "-m", "recurlab.cli", "bench", "ops", "--set", "seq_lens=32", "repeats=1",
                          "--out", str(tmp_path)], capture_output=True, text=True, check=True, timeout=300)
    assert "| diag_scan/cpu | 32 |" in out.stdout
    assert (tmp_path / "results.json").exists() and (tmp_path / "time_vs_length.png").exists()


def test_allocator_tuning_can_be_disabled(monkeypatch):
    monkeypatch.setattr(perf, "_tuned", False)
    monkeypatch.setenv("RECURLAB_NO_ALLOCATOR_TUNING", "1")
    assert perf.tune_cpu_allocator() is False and perf.allocator_tuned() is False
    monkeypatch.delenv("RECURLAB_NO_ALLOCATOR_TUNING")
    assert perf.tune_cpu_allocator() is sys.platform.startswith("linux")


def run_example(name: str) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "examples" / name)], check=True, timeout=300, cwd=ROOT,
                          capture_output=True, text=True)
    return done.stdout


def numbers_after(text: str, label: str) -> list[float]:
    return [float(x) for x in re.findall(re.escape(label) + r"\s*([-+0-9.e]+)", text)]


def test_every_example_is_checked():
    assert {p.name for p in (ROOT / "examples").glob("*.py")} == set(EXAMPLE_CHECKS)


def check_ops_quickstart(out: str):
    errors = numbers_after(out, "max |auto - reference| =") + numbers_after(out, "max |chunk - reference| =")
    assert len(errors) == 2 and max(errors) < 1e-4, out
    assert "short state (2, 3, 64), long conv output (2, 300, 64)" in out
    assert "sliding-window cache keeps 63 keys after 300 tokens" in out  # window 64: the current key + 63


def check_layers_and_models(out: str):
    for name in ("mingru", "gla", "rwkv", "attention"):
        assert re.search(rf"^{name} +[0-9,]+ params, output \(2, 64, 128\)$", out, re.M), out
    config = json.loads(out.split("config as JSON:\n", 1)[1])
    assert config["mixer"] == ["swa", "gla", "gmu", "gmu"] and config["memory_layer"] == 1


def check_recipes(out: str):
    rows = {line.split("|")[2].strip(): float(line.split("|")[3]) for line in out.splitlines()
            if line.startswith("| gru_svm |")}
    assert rows["test accuracy, GRU-SVM"] > rows["test accuracy, majority class"] + 0.1, out


def check_recursion_over_depth(out: str):
    gaps = numbers_after(out, "step vs forward:")
    assert len(gaps) == 5 and max(gaps) < 1e-5, out
    loops = json.loads(re.search(r"loops per token .*: (\[.*\])", out).group(1))
    assert set(loops) <= {1, 2, 3} and len(set(loops)) > 1, out  # early exit: not every token runs every loop
    calls = re.search(r"sequential: (\d+) core calls; parallel sampler: (\d+) core calls", out)
    assert int(calls.group(2)) < int(calls.group(1)), out


def check_speculative_decoding(out: str):
    accepted = numbers_after(out, "mean accepted per call:")
    assert len(accepted) == 2 and all(1 < a <= 4 for a in accepted), out  # the trained draft is mostly right
    assert "greedy speculative == greedy: True" in out, out


def check_huggingface(out: str):
    assert "loaded RecurlabForCausalLM with" in out and "'tokenizer.json'" in out, out
    assert "transformers generate: 'In the beginning God" in out, out  # the trained hybrid, through transformers
    assert "transformers generate == recurlab generate: True" in out, out
    gap = numbers_after(out, "max |logits - transformers'| =")
    assert len(gap) == 1 and gap[0] < 1e-6, out


def check_lexical_unit_decoding(out: str):
    per_pass = numbers_after(out, "tokens per pass:")
    assert len(per_pass) == 4 and per_pass[0] == 1.0 and max(per_pass[1:]) > 1.1, out  # beta 2.0, 0.95, 0.9, 0.7
    assert re.search(r"marked 60,000 tokens: .* of tokens in units of 2 or more", out), out
    assert "LUD at beta > 1 == greedy decoding of the tuned model: True" in out, out


def check_convert_to_liger(out: str):
    for to in ("liger-gla", "liger-attention"):
        count, teacher = re.search(rf"^{to} +parameters ([0-9,]+) \(teacher ([0-9,]+)\)$", out, re.M).groups()
        assert count == teacher, out
    assert "softmax branch = teacher: True" in out, out
    summary = json.loads(out[out.index("{"):out.index("}") + 1])
    assert summary["params_after"] == summary["params_before"] and summary["finetune_tokens"] == 4096, out
    assert summary["val_bits_per_byte_after_finetune"] < summary["val_bits_per_byte_before_finetune"], out


EXAMPLE_CHECKS = {"ops_quickstart.py": check_ops_quickstart, "layers_and_models.py": check_layers_and_models,
                  "recipes.py": check_recipes, "recursion_over_depth.py": check_recursion_over_depth,
                  "speculative_decoding.py": check_speculative_decoding, "huggingface.py": check_huggingface,
                  "lexical_unit_decoding.py": check_lexical_unit_decoding,
                  "convert_to_liger.py": check_convert_to_liger}


def check_vision_units(out: str):
    degrees = numbers_after(out, "fitted degree")
    assert len(degrees) == 4 and all(abs(d - (order + 2)) < 1e-6 for order, d in enumerate(degrees)), out
    activator, vit = numbers_after(out, "Activator: max |logits(shuffled patches) - logits| =") + \
        numbers_after(out, "ViT: max |logits(shuffled patches) - logits| =")
    assert activator < 1e-5 < 1e-4 < vit, out  # a bag of patches vs a model with position embeddings
    assert out.count("MFLOPs/image") == 5 and "relations: images (64, 1, 32, 32)" in out, out


EXAMPLE_CHECKS["vision_units.py"] = check_vision_units


def check_train_vision_classifier(out: str):
    top1 = numbers_after(out, "test top-1")
    assert len(top1) == 1 and top1[0] > 80, out  # the relation is learned (the square's position alone: ~49%)
    assert "files: checkpoint.pt, curves.png, metrics.jsonl, model, summary.json, train_config.json" in out, out
    predicted, true = (re.search(rf"^{k}: *(\[.*\])$", out, re.M).group(1) for k in ("predicted", "true"))
    assert len(ast.literal_eval(predicted)) == len(ast.literal_eval(true)) == 8, out


EXAMPLE_CHECKS["train_vision_classifier.py"] = check_train_vision_classifier


def check_quantize_fairy2i(out: str):
    trained = numbers_after(out, "parameters: validation")
    rows = re.findall(r"^(\S+bit) +([0-9.]+) +([0-9.]+) +([0-9.]+) +([0-9,]+)$", out, re.M)
    assert len(trained) == 1 and [r[0] for r in rows] == ["fairy2i-2bit", "rtn-2bit", "fairy2i-1bit", "ternary-1.58bit",
                                                          "bitnet-1.58bit"], out
    for name, quantized, tuned, packed, size in rows:
        assert float(quantized) > trained[0] and float(tuned) < float(quantized), (name, out)  # QAT recovers some
        assert abs(float(packed) - float(tuned)) < 2e-3, (name, out)  # the packed model is the tuned one
    assert "fairy2i-2bit continues 'And God said':" in out, out


EXAMPLE_CHECKS["quantize_fairy2i.py"] = check_quantize_fairy2i


def check_sorted_submodels(out: str):
    rows = re.findall(r"^ +([12]) +(\d+) +([0-9,]+) +([0-9.]+) +([0-9.]+)$", out, re.M)
    assert [(d, w) for d, w, *_ in rows] == [("2", "176"), ("2", "44"), ("1", "176"), ("1", "44")], out
    usual = {(d, w): float(u) for d, w, _, u, _ in rows}
    nested = {(d, w): float(s) for d, w, _, _, s in rows}
    for key in [("2", "44"), ("1", "176"), ("1", "44")]:  # prefixes of a usual model were never trained alone
        assert nested[key] < usual[key] - 0.1, (key, out)
    saved = numbers_after(out, "parameters,")
    assert len(saved) == 1 and abs(saved[0] - nested[("1", "44")]) < 1e-6, out  # the saved copy is the sub-model
    assert "saved the depth-1, width-44 sub-model: 42,992 parameters" in out, out


EXAMPLE_CHECKS["sorted_submodels.py"] = check_sorted_submodels


@pytest.mark.parametrize("name", sorted(EXAMPLE_CHECKS))
def test_example_prints_what_it_promises(name):
    EXAMPLE_CHECKS[name](run_example(name))


def test_layers_command_lists_every_unit(capsys):
    from recurlab import layers

    assert main(["layers"]) == 0
    out = capsys.readouterr().out
    for name in layers.names():
        assert f"\n{name} " in out or out.startswith(name)
    assert "parallel=no" in out  # gru
