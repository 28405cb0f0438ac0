"""``recurlab bench mqar``: the Zoology MQAR comparison, every unit, on a CPU.

``recurlab demo`` runs its quick form.

For every (mixer, width, sequence length) it trains a 2-layer CausalLM of token
mixers only (no channel mixer, as in Zoology) on MQAR with each learning rate of
a small sweep. Three disjoint example sets (different seeds): training; validation, evaluated every
``eval_every`` steps to stop early and to pick the learning rate (``accuracy``: the best validation
accuracy of a run); and a held-out test set, evaluated once on the model at the end of its run
(``test_accuracy``), which is what the tables report. It writes

    runs.jsonl       every finished training run (the sweep resumes from it; see bench.harness)
    results.json     "rows": the best run per (mixer, d_model, seq_len) by validation accuracy: mixer,
                     d_model, seq_len, num_kv_pairs, lr, accuracy, test_accuracy, params, seconds,
                     steps; and the config
    results.md       accuracy table, mixers x (seq_len, d_model)
    mqar.png         Zoology's figure: accuracy vs width, one line per mixer, one panel per length

A learning rate sweep stops early once a run reaches the early-stop accuracy
(no other rate can beat it). See docs/mqar.md for the protocol and how it
differs in scale from the paper.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields
from dataclasses import replace as dataclasses_replace
from pathlib import Path

from .. import layers
from ..configs import check_fields, param
from ..tasks import MQARConfig, multi_query_associative_recall
from ..models import CausalLM, ModelConfig
from ..train import TrainConfig, Trainer
from ..train.tasks import recall_model
from ..train.trainer import evaluate, seed_everything
from .harness import Benchmark, Context, Finished, Report, RunLog, settings
from .report import markdown_table

ZOOLOGY = {  # HazyResearch/zoology FIG2_CONFIGS and zoology/config.py (TrainConfig, DataConfig defaults)
    "vocab_size": 8192,  # VOCAB_SIZE = 8_192
    "train_examples": 100_000,  # train MQARConfig(num_examples=100_000)
    "eval_examples": 3_000,  # test MQARConfig(num_examples=3_000): evaluated every epoch, stops training
    "test_examples": 3_000,  # recurlab's held-out set, the size of Zoology's test set
    "lrs": tuple(float(x) for x in (1e-4, 10 ** (-4 + 2 / 3), 10 ** (-4 + 4 / 3), 1e-2)),  # np.logspace(-4, -2, 4)
    "batch_size": 512,  # 512 for L <= 128 (256 at L=256, 128 at 512, 64 at 1024: zoology_batch_size)
}


def zoology_batch_size(seq_len: int) -> int:
    """Zoology's figure 2 batch size for a sequence length (FIG2_CONFIGS)."""
    return 64 if seq_len >= 1024 else 128 if seq_len >= 512 else 256 if seq_len >= 256 else 512


def zoology_init(model, n_layers: int) -> None:
    """Zoology's initialisation (zoology/model.py, _init_weights for TransformerBlock, applied to every module):
    every nn.Linear weight N(0, 0.02^2) with a zero bias, every nn.Embedding N(0, 0.02^2), then the mixers'
    output projections N(0, (0.02 / sqrt(2 n_layers))^2) (0.01 at 2 layers). Zoology matches the name
    "out_proj.weight" (its attention's and Hyena's); recurlab's attention calls it o_proj. Convolution filters
    and other raw parameters keep their own initialisation, as in Zoology."""
    import math

    from torch import nn

    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
    for name, p in model.named_parameters():
        if name.endswith(("out_proj.weight", "o_proj.weight")):
            nn.init.normal_(p, std=0.02 / math.sqrt(2 * n_layers))


FIG2_CONFIGS = "zoology/experiments/paper_configs/iclr24_zoology_figure2/configs.py"


def zoology_fig2_arguments(mixer: str, seq_len: int, n_layers: int) -> tuple[dict, list[dict] | None]:
    """The constructor arguments Zoology's figure 2 gives ``mixer`` (HazyResearch/zoology, FIG2_CONFIGS),
    as (arguments for every layer, per-layer arguments or None). Mixers absent from figure 2 get ({}, None).

    - attention: ``num_heads: 1`` (Fig. 2's MHA; its attention dropout 0.1 has no recurlab counterpart).
    - hyena: ``l_max: input_seq_len``.
    - baseconv: ``l_max: input_seq_len, kernel_size: [3, -1, 3, -1]`` indexed by layer, with Zoology's
      BaseConv default ``implicit_long_conv=True``: a short k=3 filter in even layers, the implicit long
      filter in odd ones (zoology/mixers/base_conv.py).
    - rwkv: Fig. 2 passes only ``l_max``, which recurlab's RWKV does not need (no fixed-length buffers).
    """
    if mixer == "attention":
        return {"n_heads": 1}, None
    if mixer == "hyena":
        return {"l_max": seq_len}, None
    if mixer == "shortconv":
        return {}, [{"kernel_size": 3} for _ in range(n_layers)]
    if mixer == "baseconv":
        per_layer = [{"kernel_size": 3} if i % 2 == 0 else {"kernel_size": -1, "implicit_long_conv": True}
                     for i in range(n_layers)]
        return {"l_max": seq_len}, per_layer
    return {}, None


DEFAULT_MIXERS = ("attention", "gla", "mingru", "gam", "rwkv", "baseconv", "hyena", "gru", "liger")


VARIANTS = {  # bench-only names for a registered mixer built another way
    "shortconv": "baseconv with a k=3 filter in every layer (the bench's BaseConv before it followed figure 2: "
                 "2 layers see 4 tokens back): a pure short gated convolution",
}


def _token_mixers() -> list[str]:
    return layers.names("token") + list(VARIANTS)


@dataclass
class MQARBenchConfig:
    mixers: tuple[str, ...] = param(DEFAULT_MIXERS, axis=True, choices=_token_mixers)
    d_models: tuple[int, ...] = param((64, 128), axis=True, ge=1)
    seq_lens: tuple[int, ...] = param((64, 128), axis=True, ge=4)
    lrs: tuple[float, ...] = param((3e-3, 1e-3), axis=True, gt=0)
    kv_per_token: float = param(1 / 16, gt=0, le=0.25)  # num_kv_pairs = seq_len / 16: Zoology's (64, 4), (128, 8)
    vocab_size: int = param(512, ge=8)
    train_examples: int = param(50_000, ge=1)
    eval_examples: int = param(500, ge=1)  # validation: early stopping and the learning-rate choice
    test_examples: int = param(1000, ge=1)  # held out: evaluated once, at the end of each run
    max_steps: int = param(2000, ge=1)
    batch_size: int = param(64, ge=1)
    eval_every: int = param(250, ge=1)
    early_stop_accuracy: float = param(0.99, gt=0, le=1)
    n_layers: int = param(2, ge=1)
    seed: int = param(0, ge=0)
    mixer_kwargs: dict[str, dict] = field(default_factory=dict)  # per mixer, over Zoology's Fig. 2 arguments
    layer_kwargs: dict[str, list[dict]] = field(default_factory=dict)  # per mixer, replaces Fig. 2's per-layer ones
    mixer_lrs: dict[str, list[float]] = field(default_factory=dict)  # per mixer, replaces lrs (e.g. its best rate)
    protocol: str = param("cpu", choices=("cpu", "zoology"))  # "zoology": the published recipe, see ZOOLOGY
    epochs: int = param(64, ge=1)  # protocol "zoology" only: passes over the training set (max_steps unused)

    def __post_init__(self):
        check_fields(self)
        if self.protocol == "zoology":  # every field left at its CPU default takes Zoology's value
            cpu = {f.name: f.default for f in fields(self)}
            for name, value in ZOOLOGY.items():
                if getattr(self, name) == cpu[name]:
                    setattr(self, name, value)

    @classmethod
    def quick(cls, **overrides) -> "MQARBenchConfig":
        """The demo: five units at width 128, L=64 with 4 key-value pairs, V=512, 2,000 steps, each at the
        learning rate that did best for it in the committed default sweep (docs/results/mqar.md: 1e-3 for
        gla and mingru, 3e-3 for the others). A pure short convolution ("shortconv") stands for the units
        that cannot reach the context; BaseConv as Zoology builds it is left out (it needs far more than
        2,000 steps to leave the plateau). Attention has recurlab's default d/64 = 2 heads: with Zoology's
        one head of 128 it reaches only 0.62 in these 2,000 steps."""
        base = dict(mixers=("attention", "gla", "hyena", "mingru", "shortconv"), d_models=(128,), seq_lens=(64,),
                    lrs=(3e-3,), mixer_lrs={"gla": [1e-3], "mingru": [1e-3]}, max_steps=2000,
                    mixer_kwargs={"attention": {"n_heads": 2}})
        return cls(**{**base, **overrides})

    def rates(self, mixer: str) -> tuple[float, ...]:
        """The learning rates tried for ``mixer``: ``mixer_lrs[mixer]`` if given, else ``lrs``."""
        return tuple(self.mixer_lrs.get(mixer, self.lrs))

    def unit(self, mixer: str) -> str:
        """The registered token mixer a sweep name builds (a VARIANTS name builds another mixer)."""
        return "baseconv" if mixer == "shortconv" else mixer

    def num_kv_pairs(self, seq_len: int) -> int:
        return max(1, round(seq_len * self.kv_per_token))

    def mixer_arguments(self, mixer: str, seq_len: int) -> tuple[dict, list[dict] | None]:
        """(ModelConfig.mixer_kwargs, ModelConfig.layer_kwargs) of ``mixer``'s model at ``seq_len``:
        Zoology's figure 2 settings (:func:`zoology_fig2_arguments`), then this config's overrides."""
        kwargs, per_layer = zoology_fig2_arguments(mixer, seq_len, self.n_layers)
        kwargs.update(self.mixer_kwargs.get(mixer, {}))
        if mixer in self.layer_kwargs:
            per_layer = self.layer_kwargs[mixer]
        return ({self.unit(mixer): kwargs} if kwargs else {}), per_layer


def jobs(cfg: MQARBenchConfig) -> list[dict]:
    """One training run per (length, width, mixer, learning rate), with every setting of the sweep."""
    shared = settings(cfg)
    return [{"mixer": m, "d_model": d, "seq_len": L, "lr": lr, "settings": shared}
            for L in cfg.seq_lens for d in cfg.d_models for m in cfg.mixers for lr in cfg.rates(m)]


def solved_at_another_rate(cfg: MQARBenchConfig, job: dict, log: RunLog) -> bool:
    """A learning rate is not tried once an earlier one of the sweep reached the early-stop accuracy
    (no other rate can do better)."""
    rates = cfg.rates(job["mixer"])
    for lr in rates[:rates.index(job["lr"])]:
        earlier = log.get({**job, "lr": lr})
        if earlier is not None and earlier["accuracy"] >= cfg.early_stop_accuracy:
            return True
    return False


def bench_model(cfg: MQARBenchConfig, mixer: str, d_model: int, seq_len: int):
    """The CausalLM the sweep trains for (mixer, width, length): ``cfg.n_layers`` blocks of the token mixer
    only, with Zoology's figure 2 arguments (:meth:`MQARBenchConfig.mixer_arguments`). Protocol "zoology"
    adds Zoology's model recipe: LayerNorm, embedding dropout 0.1, :func:`zoology_init`, and its Identity
    state mixer (channel mixer "identity": each block also adds LayerNorm(x) to the residual stream)."""
    mixer_kwargs, layer_kwargs = cfg.mixer_arguments(mixer, seq_len)
    unit = cfg.unit(mixer)
    if cfg.protocol != "zoology":
        return recall_model(unit, d_model, cfg.vocab_size, cfg.n_layers, mixer_kwargs, layer_kwargs)
    model = CausalLM(ModelConfig(vocab_size=cfg.vocab_size, d_model=d_model, n_layers=cfg.n_layers, mixer=unit,
                                 channel_mixer="identity", mixer_kwargs=mixer_kwargs, layer_kwargs=layer_kwargs,
                                 norm="layernorm", embed_dropout=0.1))
    zoology_init(model, cfg.n_layers)
    return model


def train_config(cfg: MQARBenchConfig, seq_len: int, lr: float, progress: bool = False) -> TrainConfig:
    """How one run trains. Protocol "cpu": max_steps at batch_size, recurlab's AdamW (β 0.9, 0.95; decay on
    matrices), 50 warm-up steps then cosine to 10%, clipping 1.0, evaluation every eval_every steps.
    Protocol "zoology" (zoology/train.py): ``epochs`` passes at Zoology's batch size, AdamW with torch's
    betas (0.9, 0.999) and weight decay 0.1 on every parameter, no clipping, CosineAnnealingLR over the epochs
    stepped per epoch (no warm-up), evaluation after every epoch; both stop at early_stop_accuracy."""
    if cfg.protocol == "zoology":
        batch = min(cfg.batch_size, zoology_batch_size(seq_len))
        per_epoch = cfg.train_examples // batch
        return TrainConfig(steps=cfg.epochs * per_epoch, batch_size=batch, lr=lr, warmup_steps=0, weight_decay=0.1,
                           betas=(0.9, 0.999), decay="all", schedule="epoch_cosine", grad_clip=0.0,
                           eval_every=per_epoch, early_stop_accuracy=cfg.early_stop_accuracy, seed=cfg.seed,
                           precision="fp32", progress=progress)
    return TrainConfig(steps=cfg.max_steps, batch_size=cfg.batch_size, lr=lr, eval_every=cfg.eval_every,
                       early_stop_accuracy=cfg.early_stop_accuracy, seed=cfg.seed, precision="fp32",
                       progress=progress)


def measure(job: dict, ctx: Context) -> dict:
    cfg, mixer, d, L, lr = MQARBenchConfig(**job["settings"]), job["mixer"], job["d_model"], job["seq_len"], job["lr"]
    mq = MQARConfig(seq_len=L, num_kv_pairs=cfg.num_kv_pairs(L), vocab_size=cfg.vocab_size)
    sizes = (cfg.train_examples, cfg.eval_examples, cfg.test_examples)
    train, evaluation, test = ctx.cached((L, mq.num_kv_pairs, mq.vocab_size, sizes, cfg.seed), lambda: (
        multi_query_associative_recall(cfg.train_examples, mq, seed=3 * cfg.seed + 1),
        multi_query_associative_recall(cfg.eval_examples, mq, seed=3 * cfg.seed + 2),
        multi_query_associative_recall(cfg.test_examples, mq, seed=3 * cfg.seed + 3)))
    seed_everything(cfg.seed)
    model = bench_model(cfg, mixer, d, L)
    train_cfg = train_config(cfg, L, lr, ctx.progress)
    start = time.perf_counter()
    trainer = Trainer(model, train, evaluation, train_cfg)
    summary = trainer.fit()
    held_out = evaluate(model, test, train_cfg.eval_batch_size, trainer.runtime.device)
    return {"mixer": mixer, "d_model": d, "seq_len": L, "num_kv_pairs": cfg.num_kv_pairs(L), "lr": lr,
            "accuracy": summary["best_accuracy"], "final_accuracy": summary["eval_accuracy"],
            "test_accuracy": held_out["accuracy"],
            "params": sum(p.numel() for p in model.parameters()), "seconds": time.perf_counter() - start,
            "steps": summary["step"]}


def best_rows(runs: list[dict]) -> list[dict]:
    """The best learning rate's run per (mixer, d_model, seq_len), chosen by validation accuracy."""
    best: dict[tuple, dict] = {}
    for r in runs:
        k = (r["mixer"], r["d_model"], r["seq_len"])
        if k not in best or r["accuracy"] > best[k]["accuracy"]:
            best[k] = r
    return sorted(best.values(), key=lambda r: (r["seq_len"], r["mixer"], r["d_model"]))


def report(cfg: MQARBenchConfig, finished: Finished) -> Report:
    rows = best_rows([result for _, result in finished])
    result = {"config": asdict(cfg), "rows": rows}
    return Report(render_markdown(result), {"rows": rows, "runs": [r for _, r in finished]},
                  lambda path: plot_mqar(result, path))


def label(job: dict) -> str:
    return f"{job['mixer']} d={job['d_model']} L={job['seq_len']} lr={job['lr']:g}"


def summary(job: dict, row: dict) -> str:
    return (f"{row['mixer']:<10} d={row['d_model']:<4} L={row['seq_len']:<4} lr={row['lr']:<7g} accuracy "
            f"{row['accuracy']:.3f}, held-out test {row['test_accuracy']:.3f} ({row['steps']} steps, "
            f"{row['seconds']:.0f} s)")


BENCHMARK = Benchmark("mqar", MQARBenchConfig, jobs, measure, report, plot_file="mqar.png",
                      skip=solved_at_another_rate, label=label, summary=summary)


# `time recurlab demo --out /tmp/demo` on the 2-core machine of docs/results/ops.md, 2026-12-01
DEMO_MINUTES = "7.7 min wall on idle cores (12.8 while another job shared them)"


DEMO_GROUPS = (("attention", "hyena"), ("gla", "mingru", "shortconv"))  # one process per core, about equal work


def demo(out: Path, progress: bool = True, cfg: MQARBenchConfig | None = None,
         groups: tuple[tuple[str, ...], ...] = DEMO_GROUPS) -> dict:
    """``recurlab demo``: the quick sweep, introduced (what it measures and what not) and timed.

    The mixers run in one process per group (each with one thread: on 2 cores, two at once), each into
    ``out/worker-i``; their runs are then gathered into ``out/runs.jsonl`` and reported as one sweep."""
    import json
    import os
    import subprocess
    import sys

    from . import harness

    cfg = cfg or MQARBenchConfig.quick()
    L = cfg.seq_lens[0]
    kv = cfg.num_kv_pairs(L)
    rates = ", ".join(f"{m} {cfg.rates(m)[0]:g}" for m in cfg.mixers)
    n_heads = cfg.mixer_kwargs.get("attention", {}).get("n_heads")
    heads = f"; attention with {n_heads} heads" if n_heads and "attention" in cfg.mixers else ""
    print("recurlab demo: how much associative recall does each unit lose against attention?\n"
          f"Trains {len(cfg.mixers) * len(cfg.d_models)} two-layer models on MQAR (Zoology): "
          f"{', '.join(cfg.mixers)} at width {', '.join(map(str, cfg.d_models))}, sequence length {L}, {kv} "
          f"key-value pairs, vocabulary {cfg.vocab_size}, at most {cfg.max_steps} steps of {cfg.batch_size}, "
          f"each at its best learning rate from the default sweep ({rates}){heads}.\n"
          f"What it measures: how far each unit gets past the one-query plateau (accuracy {1 / kv:.2f}) in a "
          f"small budget. Not what each can eventually store: Zoology trains 50 times as many examples, and\n"
          f"BaseConv as Zoology builds it, strong there, needs far more steps than this (docs/mqar.md).\n"
          f"Measured: {DEMO_MINUTES} on 2 CPU cores ({len(groups)} processes of one thread each).\n", flush=True)
    start = time.perf_counter()
    out = Path(out)
    workers = []
    for i, group in enumerate(groups):
        folder = out / f"worker-{i}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(asdict(dataclasses_replace(cfg, mixers=tuple(group)))))
        command = [sys.executable, "-m", "recurlab.cli", "bench", "mqar", "--config", str(folder / "config.json"),
                   "--out", str(folder), "--no-progress"]
        workers.append(subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1"}))
    failed = [i for i, w in enumerate(workers) if w.wait() != 0]
    if failed:
        raise RuntimeError(f"demo worker(s) {failed} failed; see the output above")
    lines = [line for i in range(len(groups)) for line in (out / f"worker-{i}" / "runs.jsonl").read_text().splitlines()]
    (out / "runs.jsonl").write_text("".join(line + "\n" for line in lines if line.strip()))
    result = harness.run(BENCHMARK, cfg, out, progress=False, echo=lambda message: None)  # every run is reused
    print("\n" + (out / "results.md").read_text())
    print(f"plot: {out / 'mqar.png'}   (finished in {(time.perf_counter() - start) / 60:.1f} min; "
          f"the full sweep: recurlab bench mqar; docs/mqar.md explains the protocol)")
    return result


def render_markdown(result: dict) -> str:
    cfg, rows = result["config"], result["rows"]
    lengths = sorted({r["seq_len"] for r in rows})
    widths = sorted({r["d_model"] for r in rows})
    mixers = [m for m in cfg["mixers"] if any(r["mixer"] == m for r in rows)]
    by = {(r["mixer"], r["d_model"], r["seq_len"]): r for r in rows}
    held_out = all("test_accuracy" in r for r in rows)  # runs made before the test set was added have none
    shown = "test_accuracy" if held_out else "accuracy"
    header = ["mixer"] + [f"L={L} d={d}" for L in lengths for d in widths]
    body = []
    for m in mixers:
        cells = []
        for L in lengths:
            for d in widths:
                r = by.get((m, d, L))
                cells.append("—" if r is None else f"{r[shown]:.3f}")
        body.append([m] + cells)
    what = ("Accuracy on the held-out test set of the model at the end of the run whose learning rate won on the "
            "validation set." if held_out else
            "These runs predate the held-out test set: accuracy is the best periodic evaluation on the validation "
            "set that also stopped the runs and chose the learning rate (optimistic).")
    test_sets = (f"{cfg['eval_examples']:,} validation and {cfg.get('test_examples', 0):,} held-out test examples"
                 if held_out else f"{cfg['eval_examples']:,} validation examples")
    rates = ", ".join(f"{x:g}" for x in cfg["lrs"])
    if cfg.get("mixer_lrs"):
        rates += " (per mixer: " + "; ".join(f"{m} {', '.join(f'{x:g}' for x in r)}"
                                             for m, r in cfg["mixer_lrs"].items()) + ")"
    if cfg.get("protocol", "cpu") != "cpu":
        rates += f"; protocol {cfg['protocol']} ({cfg['epochs']} epochs, see docs/mqar.md)"
    lines = [
        "# MQAR accuracy (best learning rate)\n",
        f"2-layer models of token mixers only; vocabulary {cfg['vocab_size']}, num_kv_pairs = seq_len x "
        f"{cfg['kv_per_token']:g}, {cfg['train_examples']:,} training, {test_sets}, "
        f"batch {cfg['batch_size']}, at most {cfg['max_steps']} steps (stop at {cfg['early_stop_accuracy']} accuracy), "
        f"learning rates {rates}. Accuracy: per example, the share of its queries "
        "answered right, averaged over examples. " + what + "\n",
        markdown_table(header, body),
        "\n## Runs\n",
        markdown_table(["mixer", "d_model", "seq_len", "kv", "lr", "validation (best)", "held-out test", "params",
                        "steps", "seconds"],
                       [[r["mixer"], str(r["d_model"]), str(r["seq_len"]), str(r["num_kv_pairs"]), f"{r['lr']:g}",
                         f"{r['accuracy']:.3f}", f"{r['test_accuracy']:.3f}" if "test_accuracy" in r else "—",
                         f"{r['params']:,}", str(r["steps"]), f"{r['seconds']:.0f}"]
                        for r in rows]),
    ]
    return "\n".join(lines) + "\n"


def plot_mqar(result: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    lengths = sorted({r["seq_len"] for r in rows})
    fig, axes = plt.subplots(1, len(lengths), figsize=(4.5 * len(lengths), 4), sharey=True, squeeze=False)
    for ax, L in zip(axes[0], lengths):
        for mixer in result["config"]["mixers"]:
            pts = sorted((r["d_model"], r.get("test_accuracy", r["accuracy"])) for r in rows
                         if r["mixer"] == mixer and r["seq_len"] == L)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o",
                        linestyle="--" if mixer == "attention" else "-", label=mixer)
        kv = next(r["num_kv_pairs"] for r in rows if r["seq_len"] == L)
        ax.set_title(f"sequence length {L}, {kv} key-value pairs")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("model width d_model")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("MQAR accuracy" + (" (held-out test)" if all("test_accuracy" in r for r in rows) else ""))
    axes[0][-1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
