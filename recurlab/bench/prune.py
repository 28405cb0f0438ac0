"""``recurlab bench prune``: AP (activate-while-pruning) against plain iterative magnitude pruning, by sparsity.

AP (Liu, Ghosh, Tan & Motani 2022, "AP: Selective Activation for De-sparsifying Pruned Neural Networks") claims
+3-4% accuracy over the pruning method it is added to on CIFAR-10/100 at high sparsity, by lowering the dynamic
dead-neuron rate (DNR). This benchmark runs both methods (recurlab/compress/prune.py) on three small ReLU tasks:

    digits-mlp    scikit-learn digits (1,442 / 355 images of 8x8), MLP 64-256-256-10 with ReLU
    mnist5k-cnn   mnist5k (4,000 / 1,000 images of 28x28), conv3x3(16)-ReLU-pool-conv3x3(32)-ReLU-pool-fc(64)-ReLU-fc
    lm-mlp        a byte-level CausalLM (2 minGRU blocks, d_model 64) whose channel mixers are ``mlp`` with ReLU,
                  on the default text corpus; pruned: every nn.Linear of the blocks; metric: validation bits per byte

Each job is one (task, method, seed): round 0 trains the dense network, then ``rounds[task]`` rounds each remove
``rate`` (20%) of the alive weights (global threshold over the pruned tensors), AP taking ``ap_rate`` (2 points) of
them among the negative weights that moved least, rewind the survivors to initialisation and train again. Both
methods of a seed start from the same initialisation and see the same batches. Per round: the test metric, the
sparsity, and the dynamic DNR over the round's training. The classifiers train with SGD (momentum 0.9, weight
decay 5e-4, linear warm-up then cosine), as the official script uses SGD; the language model with AdamW. Writes
results.json (every round of every job), results.md (mean ± std over seeds) and prune.png.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..compress.prune import Masks, iterative_prune
from ..configs import check_fields, param
from .harness import Benchmark, Context, Finished, Report, settings
from .report import markdown_table

TASKS = ("digits-mlp", "mnist5k-cnn", "lm-mlp")
METHODS = ("imp", "ap")
METRIC = {"digits-mlp": "accuracy", "mnist5k-cnn": "accuracy", "lm-mlp": "bits_per_byte"}
PER_TASK = ("rounds", "epochs")  # dict fields: a job holds its own task's value only
AP_CLAIM = "+3-4% accuracy on CIFAR-10/100 over the pruning method alone at high sparsity (ResNet, VGG)"


def _check_per_task(name: str, value: dict, low: int) -> None:
    for key, v in value.items():
        if key not in TASKS:
            raise ValueError(f"{name} has an unknown task {key!r}; valid: {', '.join(TASKS)}")
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"{name}.{key} must be an integer >= {low}, got {v!r}")


@dataclass
class PruneBenchConfig:
    tasks: tuple[str, ...] = param(TASKS, axis=True, choices=TASKS)
    methods: tuple[str, ...] = param(METHODS, axis=True, choices=METHODS)
    seeds: tuple[int, ...] = param((0, 1, 2), axis=True, ge=0)
    # pruning rounds after the dense one: 0.8^r of the weights stay (25: 0.38%, 12: 6.9%, 10: 10.7%)
    rounds: dict[str, int] = param(factory=lambda: {"digits-mlp": 25, "mnist5k-cnn": 12, "lm-mlp": 10})
    # training epochs per round (lm-mlp: unused, it trains lm_steps per round)
    epochs: dict[str, int] = param(factory=lambda: {"digits-mlp": 15, "mnist5k-cnn": 2, "lm-mlp": 1})
    rate: float = param(0.2, gt=0, lt=1)  # fraction of the alive weights removed per round (official: 20%)
    ap_rate: float = param(0.02, ge=0, lt=1)  # of it, taken by AP (official: 2 points)
    batch_size: int = param(64, ge=1)
    lr: float = param(0.05, gt=0)  # SGD, classifiers
    lm_lr: float = param(3e-3, gt=0)  # AdamW, language model
    lm_steps: int = param(250, ge=1)  # training steps per round of the language model
    lm_batch: int = param(16, ge=1)
    lm_seq_len: int = param(64, ge=2)
    lm_eval_sequences: int = param(128, ge=1)

    def __post_init__(self):
        check_fields(self)
        defaults = PruneBenchConfig.__dataclass_fields__
        self.rounds = {**defaults["rounds"].default_factory(), **self.rounds}
        self.epochs = {**defaults["epochs"].default_factory(), **self.epochs}
        _check_per_task("rounds", self.rounds, 0)
        _check_per_task("epochs", self.epochs, 1)
        if self.ap_rate > self.rate:
            raise ValueError(f"ap_rate must be in [0, rate={self.rate}], got {self.ap_rate}")
        for name in ("tasks", "methods", "seeds"):
            values = getattr(self, name)
            if not values:
                raise ValueError(f"{name} must not be empty")
            if len(set(values)) != len(values):
                raise ValueError(f"{name} has duplicates: {values}")

    @classmethod
    def quick(cls, **overrides) -> "PruneBenchConfig":
        """About a minute on one thread: every task, both methods, one seed, a few short rounds."""
        return cls(**{"seeds": (0,), "rounds": {"digits-mlp": 4, "mnist5k-cnn": 2, "lm-mlp": 2},
                      "epochs": {"digits-mlp": 8, "mnist5k-cnn": 1, "lm-mlp": 1}, "lm_steps": 60,
                      "lm_eval_sequences": 32, **overrides})


def jobs(cfg: PruneBenchConfig) -> list[dict]:
    shared = {k: v for k, v in settings(cfg).items() if k not in PER_TASK}
    return [{"task": t, "method": m, "seed": s, "rounds": cfg.rounds[t], "epochs": cfg.epochs[t], **shared}
            for t in cfg.tasks for s in cfg.seeds for m in cfg.methods]


# --------------------------------------------------------------------------------------------------- models


def digits_mlp() -> nn.Module:
    """(B, 1, 8, 8) -> (B, 10)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                         nn.Linear(256, 10))


def mnist_cnn() -> nn.Module:
    """(B, 1, 28, 28) -> (B, 10): two conv-ReLU-pool stages and two fully connected layers."""
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 10))


def relu_lm() -> nn.Module:
    from ..models import CausalLM, ModelConfig

    return CausalLM(ModelConfig(vocab_size=256, d_model=64, n_layers=2, mixer="mingru", channel_mixer="mlp",
                                channel_kwargs={"activation": "relu"}))


# ---------------------------------------------------------------------------------------------- training


def lr_factor(step: int, total: int) -> float:
    """Linear warm-up over the first 5% of the steps, then cosine to 0."""
    warmup = max(1, round(0.05 * total))
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def image_data(name: str) -> dict:
    from ..vision.data import load

    train, test = load(name, "train"), load(name, "test")
    mean, std = train.images.mean(), train.images.std()
    return {"train": ((train.images - mean) / std, train.labels), "test": ((test.images - mean) / std, test.labels)}


def text_windows(seq_len: int, eval_sequences: int) -> dict:
    """Byte windows of the default corpus: train (N, seq_len + 1) and the first ``eval_sequences`` validation ones."""
    from ..tasks.text import default_corpus, split_text

    train_text, val_text = split_text(default_corpus())

    def windows(text: str) -> torch.Tensor:
        ids = torch.frombuffer(bytearray(text.encode("utf-8")), dtype=torch.uint8).long()
        n = (len(ids) - 1) // seq_len
        return ids[: n * seq_len + 1].unfold(0, seq_len + 1, seq_len)

    return {"train": windows(train_text), "val": windows(val_text)[:eval_sequences]}


def train_classifier(model: nn.Module, masks: Masks, data: dict, job: dict, generator: torch.Generator,
                     step_done) -> None:
    x, y = data["train"]
    batches = math.ceil(len(y) / job["batch_size"])
    total = job["epochs"] * batches
    optimizer = torch.optim.SGD(model.parameters(), lr=job["lr"], momentum=0.9, weight_decay=5e-4)
    handle = masks.enforce(optimizer)
    model.train()
    step = 0
    for _ in range(job["epochs"]):
        for batch in torch.randperm(len(y), generator=generator).split(job["batch_size"]):
            for group in optimizer.param_groups:
                group["lr"] = job["lr"] * lr_factor(step, total)
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
            step += 1
            step_done()
    handle.remove()


@torch.no_grad()
def classifier_accuracy(model: nn.Module, data: dict) -> float:
    model.eval()
    x, y = data["test"]
    correct = sum(int((model(xb).argmax(1) == yb).sum()) for xb, yb in zip(x.split(500), y.split(500)))
    return correct / len(y)


def lm_loss(model: nn.Module, windows: torch.Tensor) -> torch.Tensor:
    logits = model(windows[:, :-1])[0]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1))


def train_lm(model: nn.Module, masks: Masks, data: dict, job: dict, generator: torch.Generator, step_done) -> None:
    train = data["train"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=job["lm_lr"], betas=(0.9, 0.95), weight_decay=0.0)
    handle = masks.enforce(optimizer)
    model.train()
    for step in range(job["lm_steps"]):
        for group in optimizer.param_groups:
            group["lr"] = job["lm_lr"] * lr_factor(step, job["lm_steps"])
        batch = train[torch.randint(len(train), (job["lm_batch"],), generator=generator)]
        optimizer.zero_grad(set_to_none=True)
        lm_loss(model, batch).backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step_done()
    handle.remove()


@torch.no_grad()
def lm_bits_per_byte(model: nn.Module, data: dict) -> float:
    """Mean cross-entropy over the validation windows / ln 2 (byte tokens: one token is one byte)."""
    model.eval()
    val = data["val"]
    losses = [float(lm_loss(model, chunk)) * len(chunk) for chunk in val.split(32)]
    return sum(losses) / len(val) / math.log(2)


# -------------------------------------------------------------------------------------------------- measure


def measure(job: dict, ctx: Context) -> dict:
    task, seed = job["task"], job["seed"]
    if task == "lm-mlp":
        data = ctx.cached(("prune-text", job["lm_seq_len"], job["lm_eval_sequences"]),
                          lambda: text_windows(job["lm_seq_len"], job["lm_eval_sequences"]))
        build, train, score, under = relu_lm, train_lm, lm_bits_per_byte, "depth."
        steps_per_round = job["lm_steps"]
    else:
        name = task.split("-")[0]
        data = ctx.cached(("prune-images", name), lambda: image_data(name))
        build, train, score, under = {"digits-mlp": digits_mlp, "mnist5k-cnn": mnist_cnn}[task], train_classifier, \
            classifier_accuracy, None
        steps_per_round = job["epochs"] * math.ceil(len(data["train"][1]) / job["batch_size"])
    torch.manual_seed(seed)
    model = build()
    generator = torch.Generator().manual_seed(seed)
    bar = tqdm(total=(job["rounds"] + 1) * steps_per_round, desc=f"{task} {job['method']} seed {seed}",
               disable=not ctx.progress, leave=False, dynamic_ncols=True)

    def on_round(r) -> None:
        bar.set_postfix_str(f"round {r.round}: sparsity {r.sparsity:.3f}, {METRIC[task]} "
                            f"{r.metrics[METRIC[task]]:.3f}, DNR {r.dnr:.3f}")

    history = iterative_prune(model, Masks.of(model, under),
                              lambda m, masks: train(m, masks, data, job, generator, lambda: bar.update(1)),
                              lambda m: {METRIC[task]: score(m, data)}, rounds=job["rounds"], rate=job["rate"],
                              ap_rate=job["ap_rate"] if job["method"] == "ap" else 0.0, on_round=on_round)
    bar.close()
    pruned = Masks.of(model, under).numel()
    return {"task": task, "method": job["method"], "seed": seed, "metric": METRIC[task], "prunable_weights": pruned,
            "params": sum(p.numel() for p in model.parameters()), "threads": torch.get_num_threads(),
            "rounds": [{"round": r.round, "sparsity": r.sparsity, "alive": r.alive, "dnr": r.dnr,
                        "dnr_by_layer": r.dnr_by_layer, "ap_removed": r.ap_removed,
                        "value": r.metrics[METRIC[task]]} for r in history]}


# ---------------------------------------------------------------------------------------------------- report


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def aggregate(rows: list[dict]) -> dict:
    """(task, method, round) -> sparsity, mean / std over seeds of the metric and of the DNR, the seeds."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        for r in row["rounds"]:
            groups.setdefault((row["task"], row["method"], r["round"]), []).append(r)
    out = {}
    for key, rounds in groups.items():
        value, value_std = _mean_std([r["value"] for r in rounds])
        dnr, dnr_std = _mean_std([r["dnr"] for r in rounds])
        out[key] = {"sparsity": rounds[0]["sparsity"], "value": value, "value_std": value_std, "dnr": dnr,
                    "dnr_std": dnr_std, "seeds": len(rounds)}
    return out


def _signed(diffs: list[float], scale: float, digits: int) -> str:
    mean, std = _mean_std(diffs)
    return f"{scale * mean:+.{digits}f}" + ("" if std is None else f" ± {scale * std:.{digits}f}")


def _pm(mean: float, std: float | None, scale: float, digits: int) -> str:
    return f"{scale * mean:.{digits}f}" + ("" if std is None else f" ± {scale * std:.{digits}f}")


def paired(rows: list[dict], task: str, rnd: int) -> list[float]:
    """AP's metric minus IMP's, per seed that has both at round ``rnd`` (a seed's two runs share initialisation
    and batches, so the pair is the comparison)."""
    value = {(r["method"], r["seed"]): r["rounds"][rnd]["value"] for r in rows
             if r["task"] == task and len(r["rounds"]) > rnd}
    return [value[("ap", s)] - value[("imp", s)] for m, s in value if m == "imp" and ("ap", s) in value]


def verdict(task: str, diffs: list[float]) -> str:
    """How many seeds AP wins (metric better: accuracy higher, bits per byte lower), "k of n"."""
    sign = 1 if METRIC[task] == "accuracy" else -1
    return f"{sum(sign * d > 0 for d in diffs)} of {len(diffs)}"


def render_markdown(cfg: PruneBenchConfig, rows: list[dict]) -> str:
    agg = aggregate(rows)
    lines = ["# recurlab bench prune", "",
             f"IMP with rewinding to initialisation: each round removes {100 * cfg.rate:g}% of the alive weights "
             f"(global magnitude threshold); AP takes {100 * cfg.ap_rate:g} points of them among the negative "
             "weights that moved least since the round began. Mean ± std over the seeds; DNR: the fraction of ReLU "
             "outputs that were 0 over the round's training (dynamic DNR).", ""]
    if not rows:
        return "\n".join(lines + ["No finished job yet.", ""])
    claim = []
    for task in cfg.tasks:
        if not any(r["task"] == task for r in rows):
            continue
        metric = METRIC[task]
        scale, digits, unit = (100, 1, "accuracy (%)") if metric == "accuracy" else (1, 3, "bits per byte")
        example = next(r for r in rows if r["task"] == task)
        n_seeds = sorted({r["seed"] for r in rows if r["task"] == task})
        rounds = sorted({k[2] for k in agg if k[0] == task})
        body = []
        for rnd in rounds:
            imp, ap = agg.get((task, "imp", rnd)), agg.get((task, "ap", rnd))
            first = imp or ap
            cells = [str(rnd), f"{100 * first['sparsity']:.1f}"]
            cells += [_pm(x["value"], x["value_std"], scale, digits) if x else "–" for x in (imp, ap)]
            diffs = paired(rows, task, rnd)
            cells.append(_signed(diffs, scale, digits) if diffs else "–")
            cells += [_pm(x["dnr"], x["dnr_std"], 100, 1) if x else "–" for x in (imp, ap)]
            body.append(cells)
        lines += [f"## {task}", "",
                  f"{example['prunable_weights']:,} prunable weights of {example['params']:,} parameters; seeds "
                  f"{', '.join(map(str, n_seeds))}; metric: test {unit}" + (" (lower is better)"
                                                                           if metric != "accuracy" else "") + ".", "",
                  markdown_table(["round", "sparsity (%)", f"IMP {unit}", f"IMP+AP {unit}", "AP − IMP (paired)",
                                  "IMP DNR (%)", "IMP+AP DNR (%)"], body), ""]
        top = [rnd for rnd in rounds if (task, "imp", rnd) in agg and (task, "ap", rnd) in agg][-3:]
        for rnd in top:
            imp, ap = agg[(task, "imp", rnd)], agg[(task, "ap", rnd)]
            diffs = paired(rows, task, rnd)
            claim.append([task, f"{100 * imp['sparsity']:.1f}", _pm(imp["value"], imp["value_std"], scale, digits),
                          _pm(ap["value"], ap["value_std"], scale, digits), _signed(diffs, scale, digits),
                          f"{100 * (ap['dnr'] - imp['dnr']):+.1f}", verdict(task, diffs)])
    if claim:
        lines += ["## AP's claim at the highest sparsities", "", f"The paper: {AP_CLAIM}.", "",
                  markdown_table(["task", "sparsity (%)", "IMP", "IMP+AP", "AP − IMP (paired)",
                                  "DNR change (points)", "seeds where AP is better"], claim), "",
                  "AP − IMP: mean ± std over seeds of the per-seed difference (both methods of a seed share the "
                  "initialisation and the batches). Accuracy in %; bits per byte: lower is better.", ""]
    return "\n".join(lines)


def report(cfg: PruneBenchConfig, finished: Finished) -> Report:
    rows = [dict(row) for _, row in finished]
    return Report(render_markdown(cfg, rows), {"rows": rows}, lambda path: plot_prune(cfg, rows, path))


def plot_prune(cfg: PruneBenchConfig, rows: list[dict], path) -> None:
    """Top row: the metric against the fraction of weights kept (log axis), one panel per task, both methods with
    the std over seeds; bottom row: the dynamic DNR likewise."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    agg = aggregate(rows)
    tasks = [t for t in cfg.tasks if any(k[0] == t for k in agg)] or list(cfg.tasks[:1])
    fig, axes = plt.subplots(2, len(tasks), figsize=(5.2 * len(tasks), 8), squeeze=False)
    for j, task in enumerate(tasks):
        scale = 100 if METRIC[task] == "accuracy" else 1
        for method, color, name in (("imp", "tab:blue", "IMP"), ("ap", "tab:red", "IMP+AP")):
            points = sorted((k[2], v) for k, v in agg.items() if k[0] == task and k[1] == method)
            if not points:
                continue
            kept = [100 * (1 - v["sparsity"]) for _, v in points]
            for i, (key, std_key, s) in enumerate((("value", "value_std", scale), ("dnr", "dnr_std", 100))):
                ax = axes[i][j]
                ax.errorbar(kept, [s * v[key] for _, v in points], yerr=[s * (v[std_key] or 0) for _, v in points],
                            color=color, marker="o", markersize=3, capsize=2, label=name)
        for i, ylabel in enumerate(("test accuracy (%)" if scale == 100 else "validation bits per byte",
                                    "dynamic DNR (%)")):
            ax = axes[i][j]
            ax.set_xscale("log")
            ax.invert_xaxis()
            ax.set_xlabel("weights kept (%)")
            ax.set_ylabel(ylabel)
            ax.set_title(task)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
    fig.suptitle("recurlab bench prune: IMP vs IMP+AP (mean ± std over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def label(job: dict) -> str:
    return f"{job['task']} {job['method']} seed {job['seed']}"


def summary(job: dict, result: dict) -> str:
    last = result["rounds"][-1]
    return (f"{result['task']} {result['method']} seed {result['seed']}: sparsity {100 * last['sparsity']:.1f}%, "
            f"{result['metric']} {last['value']:.3f}, DNR {100 * last['dnr']:.1f}% (dense: "
            f"{result['rounds'][0]['value']:.3f}, DNR {100 * result['rounds'][0]['dnr']:.1f}%)")


BENCHMARK = Benchmark("prune", PruneBenchConfig, jobs, measure, report, plot_file="prune.png", label=label,
                      summary=summary)
