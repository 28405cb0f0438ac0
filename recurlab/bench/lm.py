"""``recurlab bench lm``: train every language-model preset in one session and tabulate them.

Runs ``recurlab train --preset <name>`` for each preset (one after another, so
their training speeds are comparable), skipping presets whose run folder already
holds a finished ``lm_summary.json``, then writes ``results.json``, ``results.md``
(mixer, parameters, validation bits per byte, training tokens/s, beside the
unigram baseline) and ``lm.png`` (validation bits per byte over training).

Training runs of different presets may happen hours apart (or be resumed after
an interruption), so their own tokens/s are not a fair comparison. The table's
speed column is therefore measured again side by side at the end: every
preset's model takes a few training steps in turn, round after round, and the
median per preset is reported (:func:`measure_training_throughput`).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..train.lm import PRESETS, LMSetup
from .report import markdown_table


def measure_training_throughput(presets: list[str], rounds: int = 5, steps_per_round: int = 2,
                                seed: int = 0) -> dict[str, float]:
    """Training tokens/s of each preset's model, measured side by side in this process.

    Each model takes ``steps_per_round`` AdamW steps (forward, cross-entropy, backward, update)
    on a random batch of its preset's shape (batch_size x seq_len tokens), preset after preset,
    for ``rounds`` rounds after one warm-up step each; returns the median tokens/s per preset.
    Interleaving puts every preset under the same machine conditions.
    """
    from ..models import CausalLM, ModelConfig

    if rounds < 1 or steps_per_round < 1:
        raise ValueError(f"rounds and steps_per_round must be >= 1, got {rounds} and {steps_per_round}")
    runs = {}
    for name in presets:
        setup = LMSetup.preset(name)
        torch.manual_seed(seed)
        model = CausalLM(ModelConfig.from_dict(setup.model)).train()
        ids = torch.randint(0, model.config.vocab_size, (setup.train["batch_size"], setup.seq_len + 1))
        runs[name] = (model, torch.optim.AdamW(model.parameters(), lr=1e-4), ids)

    def train_step(model, optimizer, ids):
        logits, _ = model(ids[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for run in runs.values():
        train_step(*run)  # warm-up: allocator, extension loading
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            for _ in range(steps_per_round):
                train_step(*run)
            tokens = steps_per_round * run[2][:, :-1].numel()
            samples[name].append(tokens / (time.perf_counter() - start))
    return {name: statistics.median(v) for name, v in samples.items()}


def run_lm_bench(presets: list[str], out_dir: Path, steps: int | None = None, progress=print,
                 throughput_rounds: int = 5) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in presets:
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
        run = out_dir / name
        summary_path = run / "lm_summary.json"
        if not summary_path.exists():
            progress(f"training {name} ...")
            cmd = [sys.executable, "-m", "recurlab.cli", "train", "--preset", name, "--out", str(run)]
            if steps:
                cmd += ["--steps", str(steps)]
            if (run / "checkpoint.pt").exists():
                cmd.append("--resume")
            subprocess.run(cmd, check=True)
        summary = json.loads(summary_path.read_text())
        curve = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
        rows.append({**summary, "preset": name, "mixer": PRESETS[name]["model"]["mixer"],
                     "curve": [(r["step"], r.get("eval_loss")) for r in curve]})
        progress(f"{name}: {summary['val_bits_per_byte']:.3f} bits per byte, {summary['train_tokens_per_s']:,.0f} tokens/s")
    if throughput_rounds:
        progress(f"measuring training speed side by side ({throughput_rounds} rounds) ...")
        speeds = measure_training_throughput(presets, rounds=throughput_rounds)
        for r in rows:
            r["side_by_side_tokens_per_s"] = speeds[r["preset"]]
    result = {"rows": rows, "environment": {"torch": torch.__version__, "threads": torch.get_num_threads()}}
    (out_dir / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    (out_dir / "results.md").write_text(render_markdown(result))
    plot_lm(result, out_dir / "lm.png")
    return result


def render_markdown(result: dict) -> str:
    rows = result["rows"]
    unigram = rows[0]["unigram_bits_per_byte"] if rows else float("nan")
    header = ["preset", "mixer", "params", "val bits/byte", "val perplexity (bytes)",
              "train tokens/s (side by side)", "tokens/s in its run", "steps", "minutes"]
    body = [[r["preset"], "+".join(r["mixer"]) if isinstance(r["mixer"], list) else r["mixer"], f"{r['params']:,}",
             f"{r['val_bits_per_byte']:.3f}", f"{r['perplexity']:.2f}",
             f"{r['side_by_side_tokens_per_s']:,.0f}" if "side_by_side_tokens_per_s" in r else "-",
             f"{r['train_tokens_per_s']:,.0f}", str(r["steps"]), f"{r['train_seconds'] / 60:.1f}"] for r in rows]
    return ("# Language-model presets\n\nUnigram baseline (validation bytes under training byte frequencies): "
            f"{unigram:.3f} bits per byte. \"Side by side\": median tokens/s of a few training steps per preset, "
            "interleaved in one process after all training (the fair speed comparison); \"in its run\": the "
            "speed of the preset's own training run, which depends on what else the machine did then.\n\n"
            + markdown_table(header, body) + "\n")


def plot_lm(result: dict, path: Path) -> Path:
    import math

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in result["rows"]:
        pts = [(s, loss / math.log(2)) for s, loss in r["curve"] if loss is not None]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=r["preset"])
    if result["rows"]:
        ax.axhline(result["rows"][0]["unigram_bits_per_byte"], color="gray", linestyle="--", label="unigram")
    ax.set_xlabel("training step")
    ax.set_ylabel("validation bits per token (bytes: per byte)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
