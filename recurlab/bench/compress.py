"""``recurlab bench compress``: the four ways of issue 18 to make networks smaller or cheaper, side by side.

Each method has its own benchmark, which trains and measures: ``bench quantize`` (Fairy2i against real 1-2 bit
quantisers), ``bench sorted`` (SortedNet's nested sub-models against models trained alone), ``bench prune`` (AP
against iterative magnitude pruning) and ``bench autoneural`` (gated short convolutions, integer linear layers,
quantisable encoders). This one trains nothing and times nothing: it reads their results.json files (by default
the committed ones, docs/results/<name>/results.json beside the package source; ``results`` names others, e.g.
your own runs) and writes one page of tables and one figure of four panels:

    quality vs bits          quantize: bits per byte against bits per weight, after fine-tuning
    sub-model quality vs size  sorted: bits per byte against parameters, SortedNet vs trained alone
    accuracy vs sparsity     prune: IMP and IMP+AP, mean over seeds
    integer vs float         autoneural: bits per byte and forward / decoding tokens/s, float32 vs INT8

A results file that is missing is reported as missing (the others are still shown).
"""

from __future__ import annotations

import hashlib
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from ..configs import check_fields, param
from .harness import Benchmark, Context, Finished, Report
from .report import markdown_table

PARTS = ("quantize", "sorted", "prune", "autoneural")
COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "results"


@dataclass
class CompressBenchConfig:
    results: dict[str, str] = param(factory=dict)  # part -> results.json (default: the committed ones)

    def __post_init__(self):
        check_fields(self)
        unknown = [k for k in self.results if k not in PARTS]
        if unknown:
            raise ValueError(f"results names unknown part(s) {unknown}; valid: {', '.join(PARTS)}")

    @classmethod
    def quick(cls, **overrides) -> "CompressBenchConfig":
        """The same: nothing here takes long."""
        return cls(**overrides)

    def path(self, part: str) -> Path:
        return Path(self.results[part]) if part in self.results else COMMITTED / part / "results.json"


def jobs(cfg: CompressBenchConfig) -> list[dict]:
    """One job per part: its file and a hash of its content (a changed file is read again)."""
    out = []
    for part in PARTS:
        path = cfg.path(part)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else None
        out.append({"part": part, "path": str(path), "sha256": digest})
    return out


# ---------------------------------------------------------------------------------------------- measurements


def _mean(values: list[float]) -> float:
    return statistics.fmean(values)


def read_quantize(data: dict) -> list[dict]:
    """Per model and method: bits per weight, float32, after quantising, after fine-tuning."""
    return [{"model": r["model"], "method": r["method"], "bits_per_weight": r["bits_per_weight"],
             "float32": r["full_bits_per_byte"], "ptq": r["ptq_bits_per_byte"], "qat": r["qat_bits_per_byte"]}
            for r in data["rows"]]


def read_sorted(data: dict) -> list[dict]:
    return [{k: r[k] for k in ("mixer", "depth", "width_fraction", "params", "alone", "sorted", "cut")}
            for r in data["rows"]]


def read_prune(data: dict) -> list[dict]:
    """Per task, method and round: sparsity and the metric's mean over seeds."""
    groups: dict[tuple, list[dict]] = {}
    for row in data["rows"]:
        for r in row["rounds"]:
            groups.setdefault((row["task"], row["method"], r["round"], row["metric"]), []).append(r)
    return [{"task": task, "method": method, "round": rnd, "metric": metric, "sparsity": rounds[0]["sparsity"],
             "value": _mean([r["value"] for r in rounds]), "seeds": len(rounds)}
            for (task, method, rnd, metric), rounds in sorted(groups.items())]


def read_autoneural(data: dict) -> list[dict]:
    """kind "integer": a language model's bits per byte by bits and its int8 / float32 speeds; kind "encoder": a
    vision encoder's top-1 and features SQNR by bits."""
    out = []
    for r in data.get("integer", []):
        row = {"kind": "integer", "model": r["model"], **{f"bpb_{x['bits']}": x["bits_per_byte"] for x in r["rows"]}}
        for kind in ("forward", "decode"):
            speed = r.get(f"{kind}_tokens_per_s")
            if speed:
                row[f"{kind}_float32"], row[f"{kind}_int8"] = speed["float32"], speed["int8"]
        out.append(row)
    for r in data.get("encoder", []):
        row = {"kind": "encoder", "model": r["encoder"], "params": r["params"]}
        for x in r["rows"]:
            suffix = "" if x["bits"] == 32 or (x.get("activations") or "token") == "token" else "_tensor"
            row[f"top1_{x['bits']}{suffix}"] = x["top1"]
            if x["bits"] != 32:
                row[f"sqnr_{x['bits']}{suffix}"] = x["sqnr_db"]
        out.append(row)
    return out


READERS = {"quantize": read_quantize, "sorted": read_sorted, "prune": read_prune, "autoneural": read_autoneural}


def measure(job: dict, ctx: Context) -> dict:
    path = Path(job["path"])
    if job["sha256"] is None:
        return {"part": job["part"], "path": job["path"], "missing": True, "rows": []}
    data = json.loads(path.read_text())
    if data.get("benchmark") not in (None, job["part"]):
        raise ValueError(f"{path} holds the results of bench {data.get('benchmark')!r}, not {job['part']!r}")
    return {"part": job["part"], "path": job["path"], "missing": False, "rows": READERS[job["part"]](data)}


# ------------------------------------------------------------------------------------------------ report


def _section_quantize(rows: list[dict]) -> list[str]:
    methods = list(dict.fromkeys(r["method"] for r in rows))
    body = []
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = {r["method"]: r for r in rows if r["model"] == model}
        first = next(iter(mine.values()))
        body.append([model, f"{first['float32']:.3f}"] + [f"{mine[m]['qat']:.3f}" if m in mine else "" for m in methods])
    bits = {r["method"]: r["bits_per_weight"] for r in rows}
    return [markdown_table(["model", "float32"] + [f"{m} ({bits[m]:.2f} b)" for m in methods], body)]


def _section_sorted(rows: list[dict]) -> list[str]:
    body = [[r["mixer"], f"{r['depth']} x {r['width_fraction']:g}", f"{r['params']:,}", f"{r['alone']:.3f}",
             f"{r['sorted']:.3f}", f"{r['cut']:.3f}"] for r in rows if None not in (r["alone"], r["sorted"], r["cut"])]
    return [markdown_table(["mixer", "depth x width", "params", "trained alone", "SortedNet", "cut from full"], body)]


def _section_prune(rows: list[dict]) -> list[str]:
    body = []
    for task in dict.fromkeys(r["task"] for r in rows):
        last = max(r["round"] for r in rows if r["task"] == task)
        at = {r["method"]: r for r in rows if r["task"] == task and r["round"] == last}
        metric = next(iter(at.values()))["metric"]
        fmt = (lambda v: f"{100 * v:.1f}") if metric == "accuracy" else (lambda v: f"{v:.3f}")
        body.append([task, "accuracy %" if metric == "accuracy" else "bits per byte",
                     f"{100 * next(iter(at.values()))['sparsity']:.1f}",
                     fmt(at["imp"]["value"]) if "imp" in at else "", fmt(at["ap"]["value"]) if "ap" in at else "",
                     f"{next(iter(at.values()))['seeds']}"])
    return [markdown_table(["task", "metric", "sparsity %", "IMP", "IMP+AP", "seeds"], body)]


def _section_autoneural(rows: list[dict]) -> list[str]:
    body = []
    for r in (r for r in rows if r["kind"] == "integer"):
        speed = lambda kind: (f"{r[f'{kind}_int8'] / r[f'{kind}_float32']:.2f}x"  # noqa: E731
                              if f"{kind}_int8" in r else "")
        bpb = lambda bits: f"{r[f'bpb_{bits}']:.3f}" if f"bpb_{bits}" in r else ""  # noqa: E731
        body.append([r["model"], bpb(32), bpb(8), bpb(4), speed("forward"), speed("decode")])
    out = [markdown_table(["model", "float32 bpb", "W8A8 bpb", "W4A4 bpb", "forward int8 / float32",
                           "decode int8 / float32"], body)] if body else []
    encoders = [r for r in rows if r["kind"] == "encoder"]
    if encoders:
        get = lambda r, k: f"{r[k]:.1f}" if k in r else ""  # noqa: E731
        out += ["", "Encoders, activations per token (dynamic) / per tensor (static):", "",
                markdown_table(["encoder", "params", "top-1 float32", "top-1 W8A8", "top-1 W4A4",
                                "features SQNR W8A8 (dB)", "W4A4 (dB)"],
                               [[r["model"], f"{r['params']:,}", get(r, "top1_32"),
                                 f"{get(r, 'top1_8')} / {get(r, 'top1_8_tensor')}",
                                 f"{get(r, 'top1_4')} / {get(r, 'top1_4_tensor')}",
                                 f"{get(r, 'sqnr_8')} / {get(r, 'sqnr_8_tensor')}",
                                 f"{get(r, 'sqnr_4')} / {get(r, 'sqnr_4_tensor')}"] for r in encoders])]
    return out


SECTIONS = {"quantize": ("Quality vs bits (bench quantize; validation bits per byte after straight-through "
                         "fine-tuning)", _section_quantize),
            "sorted": ("Sub-model quality vs size (bench sorted; validation bits per byte)", _section_sorted),
            "prune": ("Quality at the highest sparsity (bench prune; mean over seeds)", _section_prune),
            "autoneural": ("Integer linear layers (bench autoneural)", _section_autoneural)}


def shown(path: str) -> str:
    """A committed results file relative to the repository (the same on every machine), any other as given."""
    try:
        return str(Path(path).relative_to(COMMITTED.parents[1]))
    except ValueError:
        return path


def render_markdown(finished: Finished) -> str:
    lines = ["# recurlab bench compress", "",
             "Issue 18's methods side by side, read from each benchmark's results (nothing trained or timed here; "
             "each method's own page has its setup and its paper's claim).", ""]
    for job, result in finished:
        title, section = SECTIONS[result["part"]]
        lines += [f"## {title}", "", f"From `{shown(result['path'])}`.", ""]
        lines += (["Missing: run that benchmark first, or name its results.json in `results`."] if result["missing"]
                  else section(result["rows"]) if result["rows"] else ["No rows in that file yet."]) + [""]
    return "\n".join(lines)


def report(cfg: CompressBenchConfig, finished: Finished) -> Report:
    data = {result["part"]: result["rows"] for _, result in finished}
    return Report(render_markdown(finished), {"parts": data}, lambda path: plot(data, path))


def plot(data: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(20, 4.3))
    ax = axes[0]
    for model in dict.fromkeys(r["model"] for r in data.get("quantize", [])):
        mine = [r for r in data["quantize"] if r["model"] == model]
        color = ax.plot([], [])[0].get_color()  # one colour per model; Fairy2i filled, real baselines hollow
        for fairy in (True, False):
            points = [(r["bits_per_weight"], r["qat"]) for r in mine if r["method"].startswith("fairy2i") == fairy]
            if points:
                ax.plot(*zip(*points), marker="o", linestyle="none", color=color,
                        markerfacecolor=color if fairy else "none", label=f"{model} {'Fairy2i' if fairy else 'real'}")
    ax.set(xlabel="bits per weight", ylabel="val bits per byte", title="quantize: quality vs bits (after QAT)")
    ax = axes[1]
    rows = sorted(data.get("sorted", []), key=lambda r: r["params"])
    for column, marker in (("alone", "o"), ("sorted", "s")):
        points = [(r["params"], r[column]) for r in rows if r[column] is not None]
        if points:
            ax.plot(*zip(*points), marker=marker, linestyle="none", label="trained alone" if column == "alone" else
                    "SortedNet sub-model")
    ax.set(xscale="log", xlabel="parameters", ylabel="val bits per byte", title="sorted: sub-model quality vs size")
    ax = axes[2]
    for task in dict.fromkeys(r["task"] for r in data.get("prune", [])):
        if next(r["metric"] for r in data["prune"] if r["task"] == task) != "accuracy":
            continue  # bits per byte has its own scale: in the table
        for method, style in (("imp", "-"), ("ap", "--")):
            mine = [r for r in data["prune"] if r["task"] == task and r["method"] == method]
            ax.plot([1 - r["sparsity"] for r in mine], [100 * r["value"] for r in mine], style, label=f"{task} {method}")
    ax.set(xscale="log", xlabel="fraction of weights kept", ylabel="accuracy %", title="prune: accuracy vs sparsity")
    ax = axes[3]
    rows = [r for r in data.get("autoneural", []) if r["kind"] == "integer"]
    for i, r in enumerate(rows):
        for j, kind in enumerate(("forward", "decode")):
            if f"{kind}_int8" in r:
                ax.bar(i * 3 + j, r[f"{kind}_int8"] / r[f"{kind}_float32"], color=("tab:blue", "tab:orange")[j],
                       label=kind if i == 0 else None)
    ax.axhline(1.0, color="gray", linestyle=":")
    ax.set_xticks([i * 3 + 0.5 for i in range(len(rows))], [r["model"] for r in rows])
    ax.set(ylabel="int8 / float32 tokens/s", title="autoneural: integer linear layers, speed")
    for ax in axes:
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


BENCHMARK = Benchmark("compress", CompressBenchConfig, jobs, measure, report, plot_file="compress.png",
                      label=lambda job: job["part"], resume=False)
