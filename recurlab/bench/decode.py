"""``recurlab bench decode``: what a fixed-size state buys at inference.

For each model (the language-model presets: attention, recurrent units and the
SambaY-style hybrid, all about 4-5 M parameters) and batch size, it prefills a
prompt of ``prompt_len`` tokens, then decodes greedily up to ``max_new_tokens``,
recording at each checkpoint length

- decoding throughput over the last segment (new tokens per second, all sequences of the batch),
- the memory of the decoding state (every state tensor, KV caches at their allocated capacity),
- the process's peak resident memory (each model runs in a fresh process, so it is its own).

It also times the prefill for several prompt lengths: ``model.prefill``, what decoding starts from (one parallel
forward and the logits of the last position; with a shared KV cache, YOCO's early exit skips the cross-decoder for
the other positions). Results before 2026-12-02 timed a whole forward with every position's logits.
Weights are random: speed and memory do not depend on them.
"""

from __future__ import annotations

import multiprocessing
import resource
import time
from dataclasses import asdict, dataclass

import torch

from .. import perf
from ..configs import check_fields, param
from .harness import Benchmark, Context, Finished, Report, settings
from .report import markdown_table

DEFAULT_PRESETS = ("lm-attention", "lm-gla", "lm-mingru", "lm-rwkv", "lm-gam", "lm-samba-gmu")


def _presets() -> list[str]:
    from ..train.lm import PRESETS

    return list(PRESETS)


@dataclass
class DecodeBenchConfig:
    presets: tuple[str, ...] = param(DEFAULT_PRESETS, axis=True, choices=_presets)
    batch_sizes: tuple[int, ...] = param((1, 8), axis=True, ge=1)
    prompt_len: int = param(2048, ge=1)
    max_new_tokens: int = param(32768, ge=1)
    prefill_lens: tuple[int, ...] = param((256, 512, 1024, 2048, 4096), ge=1)
    seed: int = param(0, ge=0)

    def __post_init__(self):
        check_fields(self)

    @classmethod
    def quick(cls, **overrides) -> "DecodeBenchConfig":
        return cls(**{"prompt_len": 256, "max_new_tokens": 1024, "prefill_lens": (128, 256), **overrides})

    def checkpoints(self) -> list[int]:
        points, n = [], 1024
        while n < self.max_new_tokens:
            points.append(n)
            n *= 2
        return points + [self.max_new_tokens]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def jobs(cfg: DecodeBenchConfig) -> list[dict]:
    """One (preset, batch) per job, with the preset's model configuration (a changed preset is measured again)."""
    from ..train.lm import PRESETS

    return [{"preset": p, "batch": b, "model": PRESETS[p]["model"], "settings": settings(cfg)}
            for b in cfg.batch_sizes for p in cfg.presets]


def measure(job: dict, ctx: Context) -> dict:
    """A fresh process per model: its peak memory is its own."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_measure, (job,))


def _measure(job: dict) -> dict:
    """One (preset, batch) in this process: decode rows and prefill rows."""
    from ..models import CausalLM, ModelConfig

    preset, batch, cfg = job["preset"], job["batch"], DecodeBenchConfig(**job["settings"])
    perf.tune_cpu_allocator()
    torch.manual_seed(cfg.seed)
    model = CausalLM(ModelConfig.from_dict(job["model"])).eval()
    params = model.num_parameters()["total"]
    vocab = model.config.vocab_size
    base_rss = _peak_rss_mb()
    rows, prefill = [], []
    with torch.no_grad():
        if batch == 1:
            for n in cfg.prefill_lens:
                ids = torch.randint(0, vocab, (1, n))
                model.prefill(ids[:, :16])  # warm-up
                start = time.perf_counter()
                model.prefill(ids)
                prefill.append({"model": preset, "prompt_len": n, "prefill_ms": 1e3 * (time.perf_counter() - start)})
        prompt = torch.randint(0, vocab, (batch, cfg.prompt_len))
        logits, state = model.prefill(prompt)
        token = logits.argmax(-1)
        done, seg_start, total_start = 0, time.perf_counter(), time.perf_counter()
        last_done = 0
        for point in cfg.checkpoints():
            while done < point:
                logits, state = model.step(token, state)
                token = logits.argmax(-1)
                done += 1
            now = time.perf_counter()
            rows.append({"model": preset, "params": params, "batch": batch, "generated": done,
                         "tokens_per_s": batch * (done - last_done) / (now - seg_start),
                         "cumulative_tokens_per_s": batch * done / (now - total_start),
                         "state_mb": state.nbytes() / 2**20, "peak_rss_mb": _peak_rss_mb(),
                         "rss_over_model_mb": _peak_rss_mb() - base_rss})
            seg_start, last_done = time.perf_counter(), done
    return {"rows": rows, "prefill": prefill, "threads": torch.get_num_threads()}


def report(cfg: DecodeBenchConfig, finished: Finished) -> Report:
    rows = [r for _, m in finished for r in m["rows"]]
    prefill = [r for _, m in finished for r in m["prefill"]]
    threads = sorted({m.get("threads") for _, m in finished} - {None})  # of the measuring processes
    environment = {**perf.environment(), **({"threads": threads[0]} if len(threads) == 1 else {})}
    result = {"config": asdict(cfg), "environment": environment, "rows": rows, "prefill": prefill}
    return Report(render_markdown(result), {"rows": rows, "prefill": prefill}, lambda path: plot_decode(result, path))


def summary(job: dict, result: dict) -> str:
    last = result["rows"][-1]
    return (f"{job['preset']:<14} batch {job['batch']}: {last['generated']} tokens, {last['tokens_per_s']:,.0f} "
            f"tokens/s at the end, state {last['state_mb']:.1f} MB")


BENCHMARK = Benchmark("decode", DecodeBenchConfig, jobs, measure, report, plot_file="decode.png",
                      label=lambda job: f"{job['preset']} batch {job['batch']}", summary=summary)


def render_markdown(result: dict) -> str:
    cfg, rows = result["config"], result["rows"]
    lines = ["# recurlab bench decode\n",
             f"Greedy decoding after a {cfg['prompt_len']}-token prompt, float32 on CPU, {result['environment']['threads']} "
             "threads, random weights. tokens/s: new tokens per second over the segment ending at that length, "
             "summed over the batch. State: every decoding-state tensor (KV caches at allocated capacity).\n"]
    for batch in cfg["batch_sizes"]:
        sub = [r for r in rows if r["batch"] == batch]
        if not sub:  # not measured yet (results are written after every job)
            continue
        lengths = sorted({r["generated"] for r in sub})
        models = list(dict.fromkeys(r["model"] for r in sub))
        by = {(r["model"], r["generated"]): r for r in sub}
        lines.append(f"\n## Batch {batch}: tokens/s (state MB)\n")
        header = ["model", "params"] + [f"{n:,} new" for n in lengths]
        body = [[m, f"{by[(m, lengths[0])]['params']:,}"] +
                [f"{by[(m, n)]['tokens_per_s']:,.0f} ({by[(m, n)]['state_mb']:.3g})" if (m, n) in by else "—"
                 for n in lengths] for m in models]
        lines.append(markdown_table(header, body))
        last = lengths[-1]
        if ("lm-attention", last) in by:
            base = by[("lm-attention", last)]["tokens_per_s"]
            lines.append(f"\nThroughput at {last:,} new tokens relative to attention: " + ", ".join(
                f"{m} {by[(m, last)]['tokens_per_s'] / base:.1f}x" for m in models if (m, last) in by) + ".")
        lines.append("\nPeak resident memory of each model's process (MB): " + ", ".join(
            f"{m} {max(r['peak_rss_mb'] for r in sub if r['model'] == m):,.0f}" for m in models) + ".")
    if result["prefill"]:
        lens = sorted({r["prompt_len"] for r in result["prefill"]})
        by = {(r["model"], r["prompt_len"]): r["prefill_ms"] for r in result["prefill"]}
        models = list(dict.fromkeys(r["model"] for r in result["prefill"]))
        lines.append("\n## Prefill time (ms, batch 1) vs prompt length\n")
        lines.append(markdown_table(["model"] + [str(n) for n in lens],
                                    [[m] + [f"{by[(m, n)]:.0f}" for n in lens] for m in models]))
    return "\n".join(lines) + "\n"


def plot_decode(result: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    styles = {b: s for b, s in zip(result["config"]["batch_sizes"], ["-", "--", ":", "-."])}
    models = list(dict.fromkeys(r["model"] for r in result["rows"]))
    colors = {m: f"C{i}" for i, m in enumerate(models)}
    for (ax, key, title) in ((axes[0], "tokens_per_s", "decoding throughput (tokens/s)"),
                             (axes[1], "state_mb", "decoding state (MB)")):
        for m in models:
            for b, style in styles.items():
                pts = [(r["generated"], r[key]) for r in result["rows"] if r["model"] == m and r["batch"] == b]
                if pts:
                    ax.plot(*zip(*pts), style, marker="o", color=colors[m], label=f"{m}, batch {b}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(f"tokens generated after a {result['config']['prompt_len']}-token prompt")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    for m in models:
        pts = sorted((r["prompt_len"], r["prefill_ms"]) for r in result["prefill"] if r["model"] == m)
        if pts:
            axes[2].plot(*zip(*pts), marker="o", color=colors[m], label=m)
    axes[2].set_xscale("log", base=2)
    axes[2].set_yscale("log")
    axes[2].set_xlabel("prompt length")
    axes[2].set_title("prefill time, batch 1 (ms)")
    axes[2].grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
