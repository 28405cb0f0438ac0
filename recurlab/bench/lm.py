"""``recurlab bench lm``: train every language-model preset in one session and tabulate them.

Runs ``recurlab train --preset <name>`` for each preset (one after another, so
their training speeds are comparable), skipping presets whose run folder already
holds a finished ``lm_summary.json``, then writes ``results.json``, ``results.md``
(mixer, parameters, validation bits per byte, training tokens/s, beside the
unigram baseline) and ``lm.png`` (validation bits per byte over training).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ..train.lm import PRESETS
from .report import markdown_table


def run_lm_bench(presets: list[str], out_dir: Path, steps: int | None = None, progress=print) -> dict:
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
    result = {"rows": rows}
    (out_dir / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    (out_dir / "results.md").write_text(render_markdown(result))
    plot_lm(result, out_dir / "lm.png")
    return result


def render_markdown(result: dict) -> str:
    rows = result["rows"]
    unigram = rows[0]["unigram_bits_per_byte"] if rows else float("nan")
    header = ["preset", "mixer", "params", "val bits/byte", "val perplexity (bytes)", "train tokens/s", "steps", "minutes"]
    body = [[r["preset"], "+".join(r["mixer"]) if isinstance(r["mixer"], list) else r["mixer"], f"{r['params']:,}",
             f"{r['val_bits_per_byte']:.3f}", f"{r['perplexity']:.2f}", f"{r['train_tokens_per_s']:,.0f}",
             str(r["steps"]), f"{r['train_seconds'] / 60:.1f}"] for r in rows]
    return ("# Language-model presets\n\nUnigram baseline (validation bytes under training byte frequencies): "
            f"{unigram:.3f} bits per byte.\n\n" + markdown_table(header, body) + "\n")


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
