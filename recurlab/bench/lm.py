"""``recurlab bench lm``: train every language-model preset in one session and tabulate them.

Each job trains one preset as ``recurlab train --preset <name>`` would (in this process, one
after another, so their training speeds are comparable) into ``OUT/<preset>``, which keeps its
checkpoint: an interrupted training continues from it, a finished one is reused from the run
log. Then ``results.json``, ``results.md`` (mixer, parameters, validation bits per byte,
training tokens/s, beside the unigram baseline) and ``lm.png`` (validation bits per byte over
training).

Training runs of different presets may happen hours apart (or be resumed after
an interruption), so their own tokens/s are not a fair comparison. The table's
speed column is therefore measured again side by side by the last job: every
preset's model takes a few training steps in turn, round after round, and the
median per preset is reported (:func:`measure_training_throughput`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..configs import check_fields, param
from ..files import read_jsonl, write_json
from ..train.lm import PRESETS, DataSource, LMSetup, train_language_model
from ..train.loss import masked_cross_entropy
from .harness import Benchmark, Context, Finished, Report, job_key
from .report import markdown_table
from .timing import measure_interleaved


def _presets() -> list[str]:
    return list(PRESETS)


@dataclass
class LMBenchConfig:
    presets: tuple[str, ...] = param(tuple(PRESETS), axis=True, choices=_presets)
    steps: int | None = param(None, ge=1)  # every preset's steps (None: the preset's own)
    throughput_rounds: int = param(5, ge=0)  # rounds of the side-by-side training speed (0: skip it)
    data: dict[str, Any] = param(factory=dict, schema=DataSource)  # default: the default corpus

    def __post_init__(self):
        check_fields(self)

    @classmethod
    def quick(cls, **overrides) -> "LMBenchConfig":
        """Every preset for 50 steps, 2 speed rounds: minutes, for the table's shape rather than its numbers."""
        return cls(**{"steps": 50, "throughput_rounds": 2, **overrides})

    def setup(self, preset: str) -> LMSetup:
        setup = LMSetup.preset(preset)
        if self.steps is not None:
            setup.train["steps"] = self.steps
        return dataclasses.replace(setup, data=dict(self.data))


def jobs(cfg: LMBenchConfig) -> list[dict]:
    """One training per preset (its whole setup), then the side-by-side speed of them all."""
    trainings = [{"preset": p, "setup": dataclasses.asdict(cfg.setup(p))} for p in cfg.presets]
    speed = [{"speed_rounds": cfg.throughput_rounds, "setups": {j["preset"]: j["setup"] for j in trainings}}]
    return trainings + (speed if cfg.throughput_rounds else [])


def measure(job: dict, ctx: Context) -> dict:
    if "speed_rounds" in job:
        setups = {name: LMSetup(**s) for name, s in job["setups"].items()}
        return {"tokens_per_s": measure_training_throughput(setups, rounds=job["speed_rounds"])}
    name, run = job["preset"], ctx.out_dir / job["preset"]
    summary = train_in_folder(job, run, name, ctx.progress)
    curve = [(r["step"], r.get("eval_loss")) for r in read_jsonl(run / "metrics.jsonl")]
    return {**summary, "preset": name, "mixer": job["setup"]["model"]["mixer"], "curve": curve}


def train_in_folder(job: dict, run: Path, name: str, progress: bool) -> dict:
    """Train ``LMSetup(**job["setup"])`` into the folder ``run`` (model in ``run/model``), continuing
    an interrupted training of the same job there; a folder left by another job starts afresh.
    Returns the training summary (:func:`recurlab.train.lm.train_language_model`)."""
    marker = run / "job.json"  # which job the folder's checkpoint belongs to
    other_job = marker.exists() and json.loads(marker.read_text()) != {"key": job_key(job)}
    if other_job:  # the checkpoint of another setup: start this one afresh
        for stale in ("checkpoint.pt", "metrics.jsonl", "lm_summary.json"):
            (run / stale).unlink(missing_ok=True)
    resume = (run / "checkpoint.pt").exists()  # (a folder without marker: the trainer checks the settings)
    write_json(marker, {"key": job_key(job)})
    return train_language_model(LMSetup(**job["setup"]), run, name=name, resume=resume, progress=progress)


def measure_training_throughput(presets: list[str] | dict[str, LMSetup], rounds: int = 5, steps_per_round: int = 2,
                                seed: int = 0) -> dict[str, float]:
    """Training tokens/s of each preset's model, measured side by side in this process.

    Each model takes ``steps_per_round`` AdamW steps (forward, cross-entropy, backward, update)
    on a random batch of its preset's shape (batch_size x seq_len tokens), preset after preset,
    for ``rounds`` rounds after one warm-up each (:func:`recurlab.bench.timing.measure_interleaved`);
    returns the median tokens/s per preset.
    """
    from ..models import CausalLM, ModelConfig

    if rounds < 1 or steps_per_round < 1:
        raise ValueError(f"rounds and steps_per_round must be >= 1, got {rounds} and {steps_per_round}")
    setups = presets if isinstance(presets, dict) else {name: LMSetup.preset(name) for name in presets}
    fns, tokens = {}, {}
    for name, setup in setups.items():
        torch.manual_seed(seed)
        model = CausalLM(ModelConfig.from_dict(setup.model)).train()
        ids = torch.randint(0, model.config.vocab_size, (setup.train["batch_size"], setup.seq_len + 1))
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def steps(model=model, optimizer=optimizer, ids=ids):
            for _ in range(steps_per_round):
                logits, _ = model(ids[:, :-1])
                optimizer.zero_grad(set_to_none=True)
                masked_cross_entropy(logits, ids[:, 1:]).backward()
                optimizer.step()

        fns[name], tokens[name] = steps, steps_per_round * ids[:, :-1].numel()
    timings = measure_interleaved(fns, repeats=rounds, budget_s=math.inf, device=torch.device("cpu"))
    return {name: tokens[name] / t.median_s for name, t in timings.items()}


def report(cfg: LMBenchConfig, finished: Finished) -> Report:
    rows = [dict(result) for job, result in finished if "preset" in job]
    for job, result in finished:
        if "speed_rounds" in job:
            for r in rows:
                r["side_by_side_tokens_per_s"] = result["tokens_per_s"][r["preset"]]
    result = {"rows": rows}
    return Report(render_markdown(result), result, lambda path: plot_lm(result, path))


def summary(job: dict, result: dict) -> str:
    if "speed_rounds" in job:
        return "side by side: " + ", ".join(f"{k} {v:,.0f}" for k, v in result["tokens_per_s"].items()) + " tokens/s"
    return (f"{job['preset']}: {result['val_bits_per_byte']:.3f} bits per byte, "
            f"{result['train_tokens_per_s']:,.0f} tokens/s")


BENCHMARK = Benchmark("lm", LMBenchConfig, jobs, measure, report, plot_file="lm.png", out="runs/lm-bench",
                      label=lambda job: job.get("preset", "training speed side by side"), summary=summary)


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


def plot_lm(result: dict, path: Path) -> None:
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
