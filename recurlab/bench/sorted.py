"""``recurlab bench sorted``: SortedNet's many-in-one training against training every sub-model on its own.

SortedNet (Valipour et al. 2023) claims that training the nested sub-models of one network together (a random
sub-model per draw, gradients accumulated over draws) gives sub-models that each keep at least 96% of the full
model's performance (160 sub-models of BERT at once), with no search at inference. This benchmark tests it on a
small language model (recurlab/compress/sorted.py, recurlab/models/submodel.py):

    grid       sub-models (depth, width): the first ``depth`` of ``n_layers`` blocks x the first ``width``
               fraction of the channel mixers' hidden units
    sorted     one model trained with SortedNet for ``steps`` steps, ``samples`` sub-models per step (default:
               as many as the grid has, so the run costs, in expectation, what the alone row costs in total);
               every grid point is then scored as a sub-model of it
    alone      a model of each grid point's size trained from scratch for the same steps, batches and schedule
               (one sub-model per step): what the same total compute buys without nesting
    cut        the sub-models cut from the alone-trained full model (no SortedNet): why nesting needs training

All are scored in bits per byte on the same validation windows. Each training is a job of the run log and resumes
from its own checkpoint. Writes results.json, results.md and sorted.png (bits per byte against parameters).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..configs import check_fields, param
from .harness import Benchmark, Context, Finished, Report, job_key, settings
from .report import markdown_table

SORTEDNET_CLAIM = "up to 160 sub-models trained at once, each at least 96% of the full model's performance"


@dataclass
class SortedBenchConfig:
    mixers: list[str] = param(factory=lambda: ["gla"], axis=True)
    d_model: int = param(128, ge=8)
    n_layers: int = param(4, ge=1)
    channel_mixer: str = param("swiglu", choices=("swiglu", "glu", "geglu", "mlp"))
    depths: list[int] = param(factory=lambda: [1, 2, 4])
    width_fractions: list[float] = param(factory=lambda: [0.25, 0.5, 1.0])
    samples: int | None = param(None, ge=1)  # sub-models per SortedNet step (None: the grid's size)
    seq_len: int = param(128, ge=2)
    batch_size: int = param(16, ge=1)
    steps: int = param(400, ge=1)
    lr: float = param(2e-3, gt=0)
    warmup_steps: int = param(40, ge=0)
    weight_decay: float = param(0.1, ge=0)
    eval_sequences: int = param(64, ge=1)
    corpus: str | None = param(None)  # a text file (None: the default corpus)
    seed: int = param(0, ge=0)

    def __post_init__(self):
        from .. import layers

        check_fields(self)
        if not self.mixers:
            raise ValueError("mixers must name at least one token mixer (the benchmark would measure nothing)")
        unknown = [m for m in self.mixers if m not in layers.names("token")]
        if unknown:
            raise ValueError(f"mixers names unknown token mixer(s) {unknown}; valid: {', '.join(layers.names('token'))}")
        if not self.depths or any(not 1 <= d <= self.n_layers for d in self.depths) or len(set(self.depths)) != len(self.depths):
            raise ValueError(f"depths must be distinct ints in [1, n_layers={self.n_layers}], got {self.depths}")
        if (not self.width_fractions or any(not 0 < f <= 1 for f in self.width_fractions)
                or len(set(self.width_fractions)) != len(self.width_fractions)):
            raise ValueError(f"width_fractions must be distinct numbers in (0, 1], got {self.width_fractions}")
        if 1.0 not in self.width_fractions or self.n_layers not in self.depths:
            raise ValueError("the grid must hold the full model: depths must include n_layers and width_fractions 1.0")

    @classmethod
    def quick(cls, **overrides) -> "SortedBenchConfig":
        """Under a minute on one core: a 2-layer model, a 2 x 2 grid, 60 steps (near the unigram rate: a smoke run)."""
        return cls(**{"d_model": 64, "n_layers": 2, "depths": [1, 2], "width_fractions": [0.5, 1.0], "steps": 60,
                      "warmup_steps": 6, "eval_sequences": 16, **overrides})


# ------------------------------------------------------------------------------------------------ jobs


def model_config(job: dict) -> dict:
    s = job["settings"]
    return {"vocab_size": 256, "d_model": s["d_model"], "n_layers": s["n_layers"], "mixer": job["mixer"],
            "channel_mixer": s["channel_mixer"]}


def grid_points(s: dict) -> list[tuple[int, float]]:
    """(depth, width fraction) of every grid point of the settings ``s``, in the tables' order."""
    return [(d, f) for d in s["depths"] for f in s["width_fractions"]]


def grid_of(full, s: dict) -> list[tuple[int, int]]:
    """(depth, width) of every grid point, widths in hidden units of ``full`` (a CausalLM)."""
    from ..models.submodel import hidden_width

    hidden = hidden_width(full.depth.blocks[0].channel_mixer)
    return [(d, max(1, round(f * hidden))) for d, f in grid_points(s)]


def jobs(cfg: SortedBenchConfig) -> list[dict]:
    shared = settings(cfg)
    out = []
    for mixer in cfg.mixers:
        out.append({"part": "sorted", "mixer": mixer, "settings": shared})
        for depth in cfg.depths:
            for fraction in cfg.width_fractions:
                out.append({"part": "alone", "mixer": mixer, "depth": depth, "width_fraction": fraction,
                            "settings": shared})
    return out


# ---------------------------------------------------------------------------------------------- measurements


def _data(ctx: Context, s: dict):
    from ..tasks.text import ByteTokenizer
    from ..train.text_finetune import TextFinetune, text_data

    config = TextFinetune(seq_len=s["seq_len"], batch_size=s["batch_size"], eval_sequences=s["eval_sequences"],
                          seed=s["seed"], data={"path": s["corpus"]} if s["corpus"] else {})
    return ctx.cached(("text", s["seq_len"], s["eval_sequences"], s["corpus"]),
                      lambda: text_data(ByteTokenizer(), config))


def _full_model(job: dict):
    from ..models import CausalLM, ModelConfig

    torch.manual_seed(job["settings"]["seed"])
    return CausalLM(ModelConfig.from_dict(model_config(job)))


def _train(model, data, s: dict, folder, ctx: Context) -> dict:
    from ..train.config import TrainConfig
    from ..train.trainer import Trainer

    config = TrainConfig(steps=s["steps"], batch_size=s["batch_size"], lr=s["lr"], warmup_steps=s["warmup_steps"],
                         weight_decay=s["weight_decay"], grad_clip=1.0, eval_every=max(1, s["steps"] // 4),
                         eval_batch_size=16, seed=s["seed"], precision="fp32", progress=ctx.progress)
    trainer = Trainer(model, data.train, data.val, config, out_dir=folder)
    try:
        return trainer.fit(resume=(folder / "checkpoint.pt").exists())
    finally:
        trainer.close()


def _params(model) -> int:
    return int(model.num_parameters()["total"])


def measure_sorted(job: dict, ctx: Context) -> dict:
    from ..compress.sorted import SortedTraining

    s = job["settings"]
    data = _data(ctx, s)
    model = _full_model(job)
    grid = grid_of(model, s)
    sorted_model = SortedTraining(model, grid, samples=s["samples"], seed=s["seed"])
    fit = _train(sorted_model, data, s, ctx.out_dir / "runs" / f"sorted-{job['mixer']}-{job_key(job)}", ctx)
    model.eval()
    rows = []
    for (depth, width), (_, fraction) in zip(grid, grid_points(s)):
        sub = model.submodel(depth, width)
        rows.append({"depth": depth, "width": width, "width_fraction": fraction, "params": _params(sub),
                     "bits_per_byte": data.bits_per_byte(sub)})
    return {"mixer": job["mixer"], "samples": sorted_model.samples, "grid_size": len(grid), "rows": rows,
            "train_seconds": fit["seconds"]}


def measure_alone(job: dict, ctx: Context) -> dict:
    from ..models import CausalLM
    from ..models.submodel import submodel_config

    s = job["settings"]
    data = _data(ctx, s)
    full = _full_model(job)
    grid = grid_of(full, s)
    depth, width = grid[grid_points(s).index((job["depth"], job["width_fraction"]))]
    torch.manual_seed(s["seed"])
    model = CausalLM(submodel_config(full.config, depth, width))
    fit = _train(model, data, s, ctx.out_dir / "runs" / f"alone-{job['mixer']}-{job_key(job)}", ctx)
    model.eval()
    result = {"mixer": job["mixer"], "depth": depth, "width": width, "width_fraction": job["width_fraction"],
              "params": _params(model), "bits_per_byte": data.bits_per_byte(model), "train_seconds": fit["seconds"]}
    if depth == s["n_layers"] and job["width_fraction"] == 1.0:  # the full model: score the cuts of it as well
        result["cuts"] = [{"depth": d, "width": w, "width_fraction": f,
                           "bits_per_byte": data.bits_per_byte(model.submodel(d, w))}
                          for (d, w), (_, f) in zip(grid, grid_points(s))]
    return result


def measure(job: dict, ctx: Context) -> dict:
    return {"sorted": measure_sorted, "alone": measure_alone}[job["part"]](job, ctx)


# ------------------------------------------------------------------------------------------------ report


def comparison_rows(finished: Finished) -> list[dict]:
    """One row per (mixer, grid point) with every measured column: alone, sorted, cut (None where not yet run)."""
    rows: dict[tuple, dict] = {}
    for job, result in finished:
        if job["part"] == "sorted":
            for r in result["rows"]:
                row = rows.setdefault((result["mixer"], r["depth"], r["width"]), {})
                row.update({"mixer": result["mixer"], "depth": r["depth"], "width": r["width"],
                            "width_fraction": r["width_fraction"], "params": r["params"], "sorted": r["bits_per_byte"]})
        else:
            row = rows.setdefault((result["mixer"], result["depth"], result["width"]), {})
            row.update({"mixer": result["mixer"], "depth": result["depth"], "width": result["width"],
                        "width_fraction": result["width_fraction"], "params": result["params"],
                        "alone": result["bits_per_byte"]})
            for cut in result.get("cuts", []):
                rows.setdefault((result["mixer"], cut["depth"], cut["width"]), {})["cut"] = cut["bits_per_byte"]
    out = [{"alone": None, "sorted": None, "cut": None, **row} for row in rows.values() if "depth" in row]
    return sorted(out, key=lambda r: (r["mixer"], -r["depth"], -r["width"]))


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def render_markdown(cfg: SortedBenchConfig, rows: list[dict], sorted_runs: list[dict]) -> str:
    grid = len(cfg.depths) * len(cfg.width_fractions)
    samples = cfg.samples or grid
    lines = ["# recurlab bench sorted", "",
             f"A {cfg.n_layers}-layer, d_model {cfg.d_model} byte-level language model ({cfg.channel_mixer} channel "
             f"mixers) on the default corpus; sub-models: depths {cfg.depths} x width fractions "
             f"{cfg.width_fractions} of the channel mixers' hidden units ({grid} sub-models). Every model: "
             f"{cfg.steps} steps of batch {cfg.batch_size} x {cfg.seq_len} tokens, AdamW lr {cfg.lr:g} with "
             f"{cfg.warmup_steps} warm-up steps and cosine decay, weight decay {cfg.weight_decay:g}, clipping 1. "
             f"SortedNet draws {samples} sub-models per step (the alone rows together cost "
             f"{grid} / {samples} times as many sub-model passes). Validation bits per byte on {cfg.eval_sequences} "
             "windows; lower is better. 'kept' = full / sub-model bits per byte of the SortedNet model "
             "(1.00: as good as the full model).", ""]
    for run in sorted_runs:
        lines.append(f"SortedNet run ({run['mixer']}): {run['train_seconds']:.0f} s of training.")
    if sorted_runs:
        lines.append("")
    if not rows:
        return "\n".join(lines + ["No finished job yet.", ""])
    for mixer in dict.fromkeys(r["mixer"] for r in rows):
        mine = [r for r in rows if r["mixer"] == mixer]
        full = next((r for r in mine if r["depth"] == cfg.n_layers and r["width_fraction"] == 1.0), None)
        body = []
        for r in mine:
            kept = (full["sorted"] / r["sorted"]) if full and full["sorted"] and r["sorted"] else None
            body.append([f"{r['depth']}", f"{r['width']} ({r['width_fraction']:g})", f"{r['params']:,}",
                         _fmt(r["alone"]), _fmt(r["sorted"]), _fmt(r["cut"]),
                         "" if r["alone"] is None or r["sorted"] is None else f"{r['sorted'] - r['alone']:+.3f}",
                         "" if kept is None else f"{kept:.3f}"])
        lines += [f"## {mixer}", "",
                  markdown_table(["depth", "width (fraction)", "params", "alone", "SortedNet", "cut from alone-full",
                                  "SortedNet - alone", "kept"], body), ""]
    lines += ["## SortedNet's claim", "", f"The paper: {SORTEDNET_CLAIM}.", ""]
    claims = []
    for mixer in dict.fromkeys(r["mixer"] for r in rows):
        mine = [r for r in rows if r["mixer"] == mixer and r["sorted"] is not None]
        full = next((r for r in mine if r["depth"] == cfg.n_layers and r["width_fraction"] == 1.0), None)
        if not full:
            continue
        kept = [full["sorted"] / r["sorted"] for r in mine]
        better = [r for r in mine if r["alone"] is not None and r["sorted"] < r["alone"]]
        compared = [r for r in mine if r["alone"] is not None]
        claims.append([mixer, f"{min(kept):.3f}", f"{sum(k >= 0.96 for k in kept)} / {len(kept)}",
                       f"{len(better)} / {len(compared)}"])
    if claims:
        lines += [markdown_table(["mixer", "smallest kept", "sub-models keeping >= 0.96", "SortedNet better than alone"],
                                 claims), ""]
    return "\n".join(lines)


def report(cfg: SortedBenchConfig, finished: Finished) -> Report:
    rows = comparison_rows(finished)
    sorted_runs = [{k: v for k, v in r.items() if k != "rows"} for j, r in finished if j["part"] == "sorted"]
    return Report(render_markdown(cfg, rows, sorted_runs), {"rows": rows, "sorted_runs": sorted_runs},
                  lambda path: plot_sorted(cfg, rows, path))


def plot_sorted(cfg: SortedBenchConfig, rows: list[dict], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mixers = list(dict.fromkeys(r["mixer"] for r in rows)) or ["(none)"]
    fig, axes = plt.subplots(1, len(mixers), figsize=(6 * len(mixers), 4.5), squeeze=False)
    styles = {"alone": ("tab:blue", "o", "trained alone"), "sorted": ("tab:red", "s", "SortedNet sub-model"),
              "cut": ("tab:gray", "x", "cut from the alone-trained full model")}
    for ax, mixer in zip(axes[0], mixers):
        mine = sorted((r for r in rows if r["mixer"] == mixer), key=lambda r: r["params"])
        for column, (color, marker, name) in styles.items():
            points = [(r["params"], r[column]) for r in mine if r[column] is not None]
            if points:
                ax.plot(*zip(*points), color=color, marker=marker, linestyle="none", label=name)
        for r in mine:
            ax.annotate(f"{r['depth']}x{r['width_fraction']:g}", (r["params"], r["sorted"] or r["alone"] or 0),
                        fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("parameters (depth x width fraction annotated)")
        ax.set_ylabel("validation bits per byte")
        ax.set_title(f"{mixer}: nested sub-models")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def label(job: dict) -> str:
    if job["part"] == "sorted":
        return f"SortedNet {job['mixer']}"
    return f"alone {job['mixer']} depth {job['depth']} width {job['width_fraction']:g}"


def summary(job: dict, result: dict) -> str:
    if job["part"] == "sorted":
        return (f"SortedNet {result['mixer']}: " + ", ".join(f"{r['depth']}x{r['width_fraction']:g} "
                                                             f"{r['bits_per_byte']:.3f}" for r in result["rows"]))
    return (f"alone {result['mixer']} {result['depth']}x{result['width_fraction']:g}: "
            f"{result['bits_per_byte']:.3f} bits per byte")


BENCHMARK = Benchmark("sorted", SortedBenchConfig, jobs, measure, report, plot_file="sorted.png", label=label,
                      summary=summary)
