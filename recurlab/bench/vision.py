"""``recurlab bench vision``: the gated / recursive vision backbones at matched size, one recipe, real and synthetic images.

For every (data set, model, seed) it builds the model at about ``params_target`` parameters, trains it with the
shared recipe (below) and measures

    params        trainable parameters of the model as trained (in_chans 1, the data set's classes)
    MFLOPs        forward FLOPs of one image, counted by ``torch.utils.flop_counter.FlopCounterMode``: 2 per
                  multiply-add of every conv and matmul (the ViT's attention is written out as matmuls: the counter
                  gives SDPA 0 on CPU); norms, activations, softmax, pools and element-wise products are not
                  counted (so a max-pool counts 0)
    train img/s   batch_size / the median time of one training step (forward, backward, AdamW step) on a copy of
                  the trained model; infer img/s: batch_size / the median time of an eval-mode forward, no grad.
                  Both timed round-robin (``timing.measure_interleaved``) inside the job, on this CPU
    top-1         accuracy on the test split after the last epoch (no model selection: the test split is never
                  used to pick weights or epochs)

Models (``recurlab.vision.zoo.MODELS``; widths per family picked by ``zoo.pick_widths``, a small search over a
fixed grid):

    hornet              HorNet, g^n Conv orders (2, 3, 4, 5) by stage (Rao et al. 2022)
    hornet-n1..n5       the order ablation: the same depths and widths, every stage at order n
    convnext            ConvNeXt (Liu et al. 2022) with HorNet's depths and layout: the block's spatial op is a
                        7x7 depthwise conv, so hornet vs convnext isolates g^n Conv (recurlab/vision/convnext.py)
    resnet-conv         BottleneckResNet, 3x3 conv in every bottleneck (Han et al. 2022's baseline)
    resnet-dwconv       the same widths, 3x3 depthwise conv
    resnet-maxpool      the same widths, 3x3 max-pool (PfLayer: no parameters in the spatial op)
    resnet-avgpool      the same widths, 3x3 average pool
    activator           Activator (Abdullah & Aydin 2024): ViT with the attention replaced by a GLU unit
    activator-light     Activator without the FFN
    vit                 a small ViT (4 heads, depth 4), the Activator's baseline
    sret                SReT (Shen, Liu & Xing 2022): SReT-T's layout, every block applied twice
    sret-n1             the same widths and blocks applied once (recursion vs no recursion)

Recipe (docs/vision-bench.md): AdamW (β 0.9/0.999, weight decay on weight matrices and conv kernels only),
linear warm-up then cosine to 1% of ``lr``, label smoothing, the data set's augmentation (random crop; for
relations also the relabelled flip), inputs normalised by the training split's mean and std, batch
``batch_size``, ``epochs[dataset]`` epochs, through :func:`recurlab.train.loop.train_epochs` (a bar per job
that advances every step with the loss). Writes results.json, results.md and vision.png.
"""

from __future__ import annotations

import copy
import statistics
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..configs import check_fields, param
from ..vision.train import AugmentedBatches, accuracy, adamw, load_data
from ..vision.zoo import (HORNET_ORDERS, MODELS, RESNETS, SRETS, build_from_spec, count_parameters, describe_widths,
                          family, flops_per_image, model_spec)
from .harness import Benchmark, Context, Finished, Report, settings
from .report import markdown_table
from .timing import measure_interleaved

DATASETS = ("mnist5k", "digits", "relations", "relations-square")
# fields that only shape the report: they stay out of the jobs' keys
REPORT_ONLY = ("tolerance",)
# per-data-set fields: a job holds its own set's value only
PER_SET = ("epochs", "image_size")

# the paper each model comes from, for the tables
PAPERS = {"hornet": "Rao et al. 2022", "convnext": "Liu et al. 2022", "resnet": "Han et al. 2022",
          "activator": "Abdullah & Aydin 2024", "vit": "Dosovitskiy et al. 2021", "sret": "Shen, Liu & Xing 2022"}


def _check_per_set(name: str, value: dict, low: int) -> None:
    for key, v in value.items():
        if key not in DATASETS:
            raise ValueError(f"{name} has an unknown data set {key!r}; valid: {', '.join(DATASETS)}")
        if v < low:
            raise ValueError(f"{name}.{key} must be >= {low}, got {v}")


@dataclass
class VisionBenchConfig:
    datasets: tuple[str, ...] = param(("mnist5k", "relations-square", "relations"), axis=True, choices=DATASETS)
    models: tuple[str, ...] = param(MODELS, axis=True, choices=MODELS)
    seeds: tuple[int, ...] = param((0,), axis=True, ge=0)
    # epochs per data set (relations: every model we ran stayed at 50% through 40 epochs; docs/vision-bench.md)
    epochs: dict[str, int] = param(factory=lambda: {"mnist5k": 30, "digits": 30, "relations": 40,
                                                    "relations-square": 40})
    # the side every image is brought to (real sets: bilinear resize; relations: the canvas); patchify models use
    # patch = image_size // 8 (an 8 x 8 grid of tokens at their first stage), the ResNets see every pixel
    image_size: dict[str, int] = param(factory=lambda: {"mnist5k": 32, "digits": 32, "relations": 32,
                                                        "relations-square": 32})
    max_train: int | None = param(None, ge=1)  # a fixed random N of each set's training images (None: all)
    max_test: int | None = param(None, ge=1)  # a fixed random N of the test images (None: all)
    params_target: int = param(500_000, ge=1000)
    batch_size: int = param(128, ge=1)
    lr: float = param(2e-3, gt=0)
    weight_decay: float = param(0.05, ge=0)
    warmup: float = param(0.05, ge=0, lt=1)  # fraction of the steps spent in the linear warm-up
    min_lr_ratio: float = param(0.01, ge=0, le=1)
    label_smoothing: float = param(0.1, ge=0, lt=1)
    drop_path: float = param(0.0, ge=0, lt=1)  # stochastic depth of HorNet and ConvNeXt (last block's rate)
    eval_every: int = param(0, ge=0)  # test accuracy every N epochs as a learning curve (0: after the last only)
    speed_repeats: int = param(5, ge=1)
    speed_budget_s: float = param(10.0, gt=0)
    tolerance: float = param(2.0, ge=0)  # accuracy points within which two models count as "close" in the report

    def __post_init__(self):
        check_fields(self)
        self.epochs = {**VisionBenchConfig.__dataclass_fields__["epochs"].default_factory(), **self.epochs}
        self.image_size = {**VisionBenchConfig.__dataclass_fields__["image_size"].default_factory(),
                           **self.image_size}
        _check_per_set("epochs", self.epochs, 1)
        _check_per_set("image_size", self.image_size, 8)
        for name, size in self.image_size.items():
            if size % 8:
                raise ValueError(f"image_size.{name} must be a multiple of 8 (patch = image_size // 8), got {size}")
        for name in ("relations", "relations-square"):
            if self.image_size[name] < 16:
                raise ValueError(f"image_size.{name} must be >= 16 (the relations canvas), got "
                                 f"{self.image_size[name]}")
        for name in ("datasets", "models", "seeds"):
            values = getattr(self, name)
            if not values:
                raise ValueError(f"{name} must not be empty")
            if len(set(values)) != len(values):
                raise ValueError(f"{name} has duplicates: {values}")

    @classmethod
    def quick(cls, **overrides) -> "VisionBenchConfig":
        """A few minutes on one thread: 512 training images, 2 epochs, every model and the three default sets.
        The accuracies mean little; it checks the whole path."""
        return cls(**{"epochs": {"mnist5k": 2, "digits": 2, "relations": 2, "relations-square": 2},
                      "max_train": 512, "max_test": 256,
                      "batch_size": 64, "params_target": 200_000, "speed_repeats": 2, "speed_budget_s": 2.0,
                      **overrides})


# ---------------------------------------------------------------------------------------------------- models
# (recurlab.vision.zoo: every backbone by name at a parameter budget)


# ------------------------------------------------------------------------------------------------------ data


# --------------------------------------------------------------------------------------------------- the jobs


def jobs(cfg: VisionBenchConfig) -> list[dict]:
    """One job per (data set, model, seed): its own set's epochs and image size, and every shared setting."""
    shared = {k: v for k, v in settings(cfg).items() if k not in REPORT_ONLY + PER_SET}
    return [{"dataset": ds, "model": m, "seed": s, "epochs": cfg.epochs[ds], "image_size": cfg.image_size[ds],
             **shared} for ds in cfg.datasets for m in cfg.models for s in cfg.seeds]


def measure(job: dict, ctx: Context) -> dict:
    from ..train.loop import train_epochs
    from ..train.schedule import warmup_cosine

    name, size, seed = job["dataset"], job["image_size"], job["seed"]
    data = ctx.cached(("vision-data", name, size, job["max_train"], job["max_test"]),
                      lambda: load_data(name, size, job["max_train"], job["max_test"]))
    classes, mean, std = data["classes"], data["mean"], data["std"]
    (x_train, y_train), (x_test, y_test) = data["train"], data["test"]
    torch.manual_seed(seed)
    spec = model_spec(job["model"], classes=classes, size=size, target=job["params_target"],
                      drop_path=job["drop_path"])
    model = build_from_spec(spec)
    params = count_parameters(model)
    flops = flops_per_image(model, size)

    generator = torch.Generator().manual_seed(seed)
    batches = AugmentedBatches(x_train, y_train, name, job["batch_size"], mean, std, generator)
    total = job["epochs"] * len(batches)
    optimizer = adamw(model, job["lr"], job["weight_decay"])
    curve, epoch = [], [0]

    def validate() -> dict:
        epoch[0] += 1
        every = job["eval_every"]
        if every and (epoch[0] % every == 0) and epoch[0] < job["epochs"]:
            curve.append([epoch[0], accuracy(model, x_test, y_test, mean, std)])
        return {}

    import time

    start = time.perf_counter()
    history = train_epochs(model, optimizer, partial(F.cross_entropy, label_smoothing=job["label_smoothing"]),
                           batches, job["epochs"], validate=validate, progress=ctx.progress,
                           lr_factor=partial(warmup_cosine, total=total, warmup=round(job["warmup"] * total),
                                             min_ratio=job["min_lr_ratio"]),
                           desc=f"{name} {job['model']} seed {seed}")
    train_seconds = time.perf_counter() - start
    top1 = accuracy(model, x_test, y_test, mean, std)
    curve.append([job["epochs"], top1])
    train_img_s, infer_img_s = _speeds(model, x_train, y_train, mean, std, job)
    return {"dataset": name, "model": job["model"], "seed": seed, "params": params, "flops": flops,
            "mflops": flops / 1e6, "widths": describe_widths(spec),
            "top1": top1, "final_train_loss": history.window_loss[-1], "curve": curve,
            "train_images_per_s": train_img_s, "infer_images_per_s": infer_img_s, "train_seconds": train_seconds,
            "steps": len(history.step_loss), "threads": torch.get_num_threads(),
            "train_images": len(y_train), "test_images": len(y_test)}


def _speeds(model: nn.Module, x_train, y_train, mean: float, std: float, job: dict) -> tuple[float, float]:
    """Images per second of a training step and of inference at the batch size (medians, round-robin)."""
    bs = min(job["batch_size"], len(y_train))
    x, y = (x_train[:bs] - mean) / std, y_train[:bs]
    trained = copy.deepcopy(model)
    optimizer = adamw(trained, job["lr"], job["weight_decay"])
    loss_fn = partial(F.cross_entropy, label_smoothing=job["label_smoothing"])
    model.eval()

    def train_step():
        trained.train()
        loss = loss_fn(trained(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def infer():
        with torch.no_grad():
            model(x)

    t = measure_interleaved({"train": train_step, "infer": infer}, repeats=job["speed_repeats"],
                            budget_s=job["speed_budget_s"], device=torch.device("cpu"))
    return bs / t["train"].median_s, bs / t["infer"].median_s


# ---------------------------------------------------------------------------------------------------- report


def _mean(values):
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def aggregate(finished: Finished) -> dict:
    """(dataset, model) -> the mean over seeds of every measured number, with the seeds' top-1s."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for _, row in finished:
        groups.setdefault((row["dataset"], row["model"]), []).append(row)
    out = {}
    for key, rows in groups.items():
        out[key] = {"dataset": key[0], "model": key[1], "seeds": [r["seed"] for r in rows],
                    "top1_by_seed": [r["top1"] for r in rows], "widths": rows[0]["widths"],
                    **{k: _mean([r[k] for r in rows]) for k in ("params", "mflops", "top1", "train_images_per_s",
                                                                "infer_images_per_s", "train_seconds")}}
        out[key]["top1_std"] = statistics.stdev(out[key]["top1_by_seed"]) if len(rows) > 1 else None
    return out


def _pct(v):
    return "–" if v is None else f"{100 * v:.1f}"


def _yes(flag):
    return "–" if flag is None else ("yes" if flag else "no")


def _beats(a: float | None, b: float | None, tol: float):
    """"yes" if a > b by more than tol, "no" if a < b by more than tol, "tie (within N points)" otherwise; None
    if either is missing. Accuracy differences inside the tolerance are not read as a result either way."""
    if a is None or b is None:
        return None
    if a > b + tol:
        return "yes"
    if a < b - tol:
        return "no"
    return f"tie (within {100 * tol:g} points)"


def claims(cfg: VisionBenchConfig, agg: dict) -> list[dict]:
    """Each paper's claim, per data set, with whether it held here (computed from the rows; None: not measured).
    Accuracy comparisons use the report's tolerance: a difference inside it is a tie, not a win."""
    tol = cfg.tolerance / 100
    out = []
    for ds in cfg.datasets:
        def get(m, ds=ds):
            return agg.get((ds, m))

        def acc(m):
            return get(m)["top1"] if get(m) else None

        def row(paper, claim, held, evidence, ds=ds):
            out.append({"dataset": ds, "paper": paper, "claim": claim, "held": held, "evidence": evidence})

        h, c, v = acc("hornet"), acc("convnext"), acc("vit")
        row("HorNet", "HorNet beats ConvNeXt at similar size", _beats(h, c, tol),
            f"hornet {_pct(h)} vs convnext {_pct(c)}")
        row("HorNet", "HorNet beats ViT at similar size", _beats(h, v, tol), f"hornet {_pct(h)} vs vit {_pct(v)}")
        orders = [(n, acc(f"hornet-n{n}")) for n in range(1, 6) if acc(f"hornet-n{n}") is not None]
        if len(orders) >= 2:
            accs = [a for _, a in orders]
            if max(accs) - min(accs) <= tol:
                held = f"no difference (all within {cfg.tolerance:g} points)"
            elif all(b >= a - tol for a, b in zip(accs, accs[1:])) and accs[-1] > accs[0] + tol:
                held = "yes"
            elif accs[-1] > accs[0] + tol:
                held = "partly (highest order > lowest, not monotone)"
            else:
                held = "no"
        else:
            held = None
        row("HorNet", "accuracy rises with the order n", held,
            ", ".join(f"n={n}: {_pct(a)}" for n, a in orders) or "not measured")
        conv, mx = get("resnet-conv"), get("resnet-maxpool")
        if conv and mx:
            row("PfLayer", f"max-pool close to 3x3 conv (within {cfg.tolerance:g} points)",
                mx["top1"] >= conv["top1"] - tol, f"maxpool {_pct(mx['top1'])} vs conv {_pct(conv['top1'])}")
            row("PfLayer", "max-pool needs fewer FLOPs", mx["mflops"] < conv["mflops"],
                f"{mx['mflops']:.1f} vs {conv['mflops']:.1f} MFLOPs")
            row("PfLayer", "max-pool is faster (inference)", mx["infer_images_per_s"] > conv["infer_images_per_s"],
                f"{mx['infer_images_per_s']:,.0f} vs {conv['infer_images_per_s']:,.0f} img/s")
            row("PfLayer", "max-pool is faster (training)", mx["train_images_per_s"] > conv["train_images_per_s"],
                f"{mx['train_images_per_s']:,.0f} vs {conv['train_images_per_s']:,.0f} img/s")
        for act in ("activator", "activator-light"):
            a, vit = get(act), get("vit")
            if a and vit:
                row("Activator", f"{act} competitive with ViT (within {cfg.tolerance:g} points)",
                    a["top1"] >= vit["top1"] - tol, f"{act} {_pct(a['top1'])} vs vit {_pct(vit['top1'])}")
                row("Activator", f"{act} costs less than ViT (FLOPs)", a["mflops"] < vit["mflops"],
                    f"{a['mflops']:.1f} vs {vit['mflops']:.1f} MFLOPs")
        rec, flat = get("sret"), get("sret-n1")
        if rec and flat:
            row("SReT", "recursion helps: blocks applied twice beat the same blocks applied once",
                _beats(rec["top1"], flat["top1"], tol), f"sret {_pct(rec['top1'])} vs sret-n1 {_pct(flat['top1'])} "
                f"({rec['params']:,.0f} vs {flat['params']:,.0f} params, {rec['mflops']:.1f} vs "
                f"{flat['mflops']:.1f} MFLOPs)")
    return out


def render_markdown(cfg: VisionBenchConfig, agg: dict, claim_rows: list[dict], threads: int | None) -> str:
    sets = [ds for ds in cfg.datasets if any(k[0] == ds for k in agg)]
    models = [m for m in cfg.models if any(k[1] == m for k in agg)]
    first = sets[0] if sets else None
    lines = ["# recurlab bench vision", "",
             f"Every model at about {cfg.params_target:,} parameters, trained with one recipe: AdamW (lr {cfg.lr:g}, "
             f"weight decay {cfg.weight_decay:g} on weights only), {100 * cfg.warmup:g}% linear warm-up then cosine to "
             f"{cfg.min_lr_ratio:g} x lr, label smoothing {cfg.label_smoothing:g}, batch {cfg.batch_size}, the data "
             f"set's augmentation; epochs: " + ", ".join(f"{ds} {cfg.epochs[ds]}" for ds in sets) + "; images: "
             + ", ".join(f"{ds} {cfg.image_size[ds]}x{cfg.image_size[ds]}" for ds in sets)
             + f"; seeds {', '.join(map(str, cfg.seeds))} (top-1: mean over seeds, after the last epoch, on the test "
             "split). MFLOPs: forward, one image, torch's FlopCounterMode (2 FLOPs per multiply-add of convs, "
             "matmuls, the ViT's attention included; norms, activations, softmax, pools and element-wise products not "
             "counted). Images/s: "
             f"median of timed steps at batch {cfg.batch_size} on this CPU"
             + (f", {threads} thread(s)" if threads else "") + ".", ""]
    if not sets:
        return "\n".join(lines + ["No finished jobs yet.", ""])
    header = ["model", "params", "MFLOPs/image", "train img/s", "infer img/s"] + [f"top-1 {ds} (%)" for ds in sets]
    body = []
    for m in models:
        ref = agg.get((first, m)) or next((agg[(ds, m)] for ds in sets if (ds, m) in agg), None)
        body.append([m, f"{ref['params']:,.0f}", f"{ref['mflops']:.1f}", f"{ref['train_images_per_s']:,.0f}",
                     f"{ref['infer_images_per_s']:,.0f}"] + [_pct(agg[(ds, m)]["top1"]) if (ds, m) in agg else "–"
                                                             for ds in sets])
    lines += ["## All models", "", f"params, MFLOPs and images/s on {first} (the other sets differ only by the "
              "head's classes and, where set, the image size; see the per-set tables).", "",
              markdown_table(header, body), ""]
    for ds in sets:
        rows = [[m, agg[(ds, m)]["widths"], f"{agg[(ds, m)]['params']:,.0f}", f"{agg[(ds, m)]['mflops']:.1f}",
                 f"{agg[(ds, m)]['train_images_per_s']:,.0f}", f"{agg[(ds, m)]['infer_images_per_s']:,.0f}",
                 f"{agg[(ds, m)]['train_seconds']:.0f}", _pct(agg[(ds, m)]["top1"]),
                 "–" if agg[(ds, m)]["top1_std"] is None else f"{100 * agg[(ds, m)]['top1_std']:.1f}"]
                for m in models if (ds, m) in agg]
        lines += [f"### {ds}", "", markdown_table(["model", "widths", "params", "MFLOPs/image", "train img/s",
                                                   "infer img/s", "train s", "top-1 (%)", "std over seeds"], rows), ""]
    sections = (("HorNet order ablation (n = 1..5)", ["hornet", *HORNET_ORDERS, "convnext"]),
                ("PfLayer trade: the bottleneck's spatial op", list(RESNETS)),
                ("Activator vs ViT at equal parameters", ["activator", "activator-light", "vit"]),
                ("SReT recursion vs no recursion", list(SRETS)))
    for title, names in sections:
        present = [m for m in names if any((ds, m) in agg for ds in sets)]
        if not present:
            continue
        rows = []
        for m in present:
            ref = agg.get((first, m)) or next(agg[(ds, m)] for ds in sets if (ds, m) in agg)
            rows.append([m, f"{ref['params']:,.0f}", f"{ref['mflops']:.1f}", f"{ref['train_images_per_s']:,.0f}",
                         f"{ref['infer_images_per_s']:,.0f}"] + [_pct(agg[(ds, m)]["top1"]) if (ds, m) in agg
                                                                 else "–" for ds in sets])
        lines += [f"## {title}", "", markdown_table(header, rows), ""]
        paper = title.split()[0]
        mine = [c for c in claim_rows if c["paper"] == paper]
        if mine:
            lines += [markdown_table(["data set", "the paper's claim", "held here?", "numbers"],
                                     [[c["dataset"], c["claim"], c["held"] if isinstance(c["held"], str)
                                       else _yes(c["held"]), c["evidence"]] for c in mine]), ""]
    lines += ["The papers' claims: HorNet (Rao et al. 2022) beats ConvNeXt and ViT-style models (Swin) of similar "
              "size and accuracy rises with the order n; PfLayer (Han et al. 2022) ResNet-50 with max-pool loses "
              "1.9 points on ImageNet (74.3 vs 76.2) with fewer parameters and FLOPs and runs faster; Activator "
              f"(Abdullah & Aydin 2024) is competitive with a ViT at lower cost; SReT (Shen, Liu & Xing 2022): applying "
              "each block twice (with a non-shared projection after each application) beats applying it once at "
              "nearly the same parameters. \"close\"/\"competitive\": within "
              f"{cfg.tolerance:g} accuracy points here (the report's tolerance setting).", ""]
    return "\n".join(lines)


def report(cfg: VisionBenchConfig, finished: Finished) -> Report:
    agg = aggregate(finished)
    claim_rows = claims(cfg, agg)
    threads = finished[0][1].get("threads") if finished else None
    rows = [dict(row) for _, row in finished]
    summary = [agg[k] for k in agg]
    return Report(render_markdown(cfg, agg, claim_rows, threads), {"rows": rows, "summary": summary,
                                                                   "claims": claim_rows},
                  lambda path: plot_vision(cfg, agg, path))


def plot_vision(cfg: VisionBenchConfig, agg: dict, path: Path) -> None:
    """Accuracy against MFLOPs (top row) and against inference images/s (bottom row), one column per data set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401  (matplotlib.ticker below)

    sets = [ds for ds in cfg.datasets if any(k[0] == ds for k in agg)] or list(cfg.datasets[:1])
    fig, axes = plt.subplots(2, len(sets), figsize=(6 * len(sets), 9), squeeze=False)
    colors = {"hornet": "tab:red", "convnext": "tab:blue", "resnet": "tab:green", "activator": "tab:purple",
              "activator-light": "tab:pink", "vit": "tab:orange", "sret": "tab:brown"}
    for j, ds in enumerate(sets):
        for i, (key, label) in enumerate((("mflops", "MFLOPs per image (forward)"),
                                          ("infer_images_per_s", "inference images/s (this CPU)"))):
            ax = axes[i][j]
            for (d, m), r in agg.items():
                if d != ds or not r[key]:
                    continue
                ax.scatter(r[key], 100 * r["top1"], color=colors.get(family(m), "tab:gray"),
                           marker="o" if m in ("hornet", "convnext", "vit", "activator", "resnet-conv", "sret") else "^")
                ax.annotate(m, (r[key], 100 * r["top1"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels overlap on short ranges
            ax.set_xlabel(label)
            ax.set_ylabel("top-1 (%)")
            ax.set_title(ds)
            ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"recurlab bench vision: about {cfg.params_target:,} parameters per model")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def label(job: dict) -> str:
    return f"{job['dataset']} {job['model']} seed {job['seed']}"


def summary(job: dict, result: dict) -> str:
    return (f"{result['dataset']:>9} {result['model']:<16} seed {result['seed']}: top-1 {100 * result['top1']:.1f}%, "
            f"{result['params']:,} params, {result['mflops']:.1f} MFLOPs, {result['train_images_per_s']:,.0f} train / "
            f"{result['infer_images_per_s']:,.0f} infer img/s, trained in {result['train_seconds']:.0f} s")


BENCHMARK = Benchmark("vision", VisionBenchConfig, jobs, measure, report, plot_file="vision.png", label=label,
                      summary=summary)
