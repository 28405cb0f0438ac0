"""``recurlab bench mqar``: the Zoology MQAR comparison, every unit, on a CPU (``recurlab demo`` runs
its quick form).

For every (mixer, width, sequence length) it trains a 2-layer CausalLM of token
mixers only (no channel mixer, as in Zoology) on MQAR with each learning rate of
a small sweep, keeps the best evaluation accuracy, and writes

    runs.jsonl       every finished training run (the sweep resumes from it)
    results.json     the best run per (mixer, d_model, seq_len): mixer, d_model, seq_len,
                     num_kv_pairs, lr, accuracy, params, seconds, steps
    results.md       accuracy table, mixers x (seq_len, d_model)
    mqar.png         Zoology's figure: accuracy vs width, one line per mixer, one panel per length

A learning rate sweep stops early once a run reaches the early-stop accuracy
(no other rate can beat it). See docs/mqar.md for the protocol and how it
differs in scale from the paper.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .. import __version__, perf
from ..tasks import MQARConfig, SequenceTask, multi_query_associative_recall
from ..train import TrainConfig, Trainer
from ..train.tasks import recall_model
from ..train.trainer import seed_everything
from .report import markdown_table

DEFAULT_MIXERS = ("attention", "gla", "mingru", "gam", "rwkv", "baseconv", "hyena", "gru", "liger")


@dataclass
class MQARBenchConfig:
    mixers: tuple[str, ...] = DEFAULT_MIXERS
    d_models: tuple[int, ...] = (64, 128)
    seq_lens: tuple[int, ...] = (64, 128)
    kv_per_token: float = 1 / 16  # num_kv_pairs = seq_len / 16: Zoology's (64, 4), (128, 8), (256, 16)
    vocab_size: int = 512
    lrs: tuple[float, ...] = (3e-3, 1e-3)
    train_examples: int = 50_000
    eval_examples: int = 500
    max_steps: int = 2000
    batch_size: int = 64
    eval_every: int = 250
    early_stop_accuracy: float = 0.99
    n_layers: int = 2
    seed: int = 0
    mixer_kwargs: dict = field(default_factory=dict)

    @classmethod
    def quick(cls, **overrides) -> "MQARBenchConfig":
        """The demo: four mixers, two widths, one length, one learning rate."""
        base = dict(mixers=("attention", "gla", "mingru", "baseconv"), d_models=(64, 128), seq_lens=(64,),
                    lrs=(3e-3,), max_steps=2000)
        return cls(**{**base, **overrides})

    def num_kv_pairs(self, seq_len: int) -> int:
        return max(1, round(seq_len * self.kv_per_token))

    def mixer_arguments(self, mixer: str, seq_len: int) -> dict:
        kwargs = dict(self.mixer_kwargs.get(mixer, {}))
        if mixer == "hyena":
            kwargs.setdefault("l_max", seq_len)
        return {mixer: kwargs} if kwargs else {}


def _key(row: dict) -> tuple:
    return (row["mixer"], row["d_model"], row["seq_len"], row["lr"])


def protocol_fingerprint(cfg: MQARBenchConfig) -> str:
    """A hash of everything that changes a run's outcome except which (mixer, width, length, lr) it is:
    finished runs are reused only under the same protocol."""
    import hashlib

    fixed = {k: v for k, v in asdict(cfg).items() if k not in ("mixers", "d_models", "seq_lens", "lrs")}
    return hashlib.sha256(json.dumps(fixed, sort_keys=True).encode()).hexdigest()[:12]


def run_mqar_bench(cfg: MQARBenchConfig, out_dir: Path, progress=tqdm.write) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    runs_path = out_dir / "runs.jsonl"
    protocol = protocol_fingerprint(cfg)
    done = {}
    if runs_path.exists():  # resume an interrupted sweep: reuse runs made under the same protocol
        for line in runs_path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                if row.get("protocol") == protocol:
                    done[_key(row)] = row
        if done:
            progress(f"reusing {len(done)} finished runs from {runs_path}")
    data: dict[int, tuple[SequenceTask, SequenceTask]] = {}
    jobs = [(L, d, m) for L in cfg.seq_lens for d in cfg.d_models for m in cfg.mixers]
    bar = tqdm(jobs, desc="mqar", unit="model")
    result = _write_results(cfg, done, out_dir) if not jobs else None
    for L, d, mixer in bar:
        for lr in cfg.lrs:
            key = (mixer, d, L, lr)
            if key in done:
                row = done[key]
            else:
                if L not in data:
                    mq = MQARConfig(seq_len=L, num_kv_pairs=cfg.num_kv_pairs(L), vocab_size=cfg.vocab_size)
                    data[L] = (multi_query_associative_recall(cfg.train_examples, mq, seed=2 * cfg.seed + 1),
                               multi_query_associative_recall(cfg.eval_examples, mq, seed=2 * cfg.seed + 2))
                bar.set_postfix_str(f"{mixer} d={d} L={L} lr={lr:g}")
                row = {**_train_one(cfg, mixer, d, L, lr, *data[L]), "protocol": protocol}
                with open(runs_path, "a") as f:
                    f.write(json.dumps(row) + "\n")
                done[key] = row
                progress(f"{mixer:<10} d={d:<4} L={L:<4} lr={lr:<7g} accuracy {row['accuracy']:.3f} "
                         f"({row['steps']} steps, {row['seconds']:.0f} s)")
            if row["accuracy"] >= cfg.early_stop_accuracy:
                break  # no other learning rate can do better
        result = _write_results(cfg, done, out_dir)  # after every model, so an interrupted sweep still reports
    return result


def _write_results(cfg: MQARBenchConfig, done: dict, out_dir: Path) -> dict:
    rows = _best_rows([done[k] for k in done if k[0] in cfg.mixers and k[1] in cfg.d_models and k[2] in cfg.seq_lens
                       and k[3] in cfg.lrs])
    result = {"config": asdict(cfg), "environment": {"recurlab": __version__, "torch": torch.__version__,
                                                     "threads": torch.get_num_threads(),
                                                     "allocator_tuned": perf.allocator_tuned()},
              "rows": rows}
    (out_dir / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    (out_dir / "config.json").write_text(json.dumps(result["config"], indent=2) + "\n")
    (out_dir / "results.md").write_text(render_markdown(result))
    plot_mqar(result, out_dir / "mqar.png")
    return result


def _train_one(cfg: MQARBenchConfig, mixer: str, d: int, L: int, lr: float,
               train: SequenceTask, evaluation: SequenceTask) -> dict:
    seed_everything(cfg.seed)
    model = recall_model(mixer, d, cfg.vocab_size, cfg.n_layers, cfg.mixer_arguments(mixer, L))
    train_cfg = TrainConfig(steps=cfg.max_steps, batch_size=cfg.batch_size, lr=lr, eval_every=cfg.eval_every,
                            early_stop_accuracy=cfg.early_stop_accuracy, seed=cfg.seed, precision="fp32",
                            progress=False)
    start = time.perf_counter()
    summary = Trainer(model, train, evaluation, train_cfg).fit()
    return {"mixer": mixer, "d_model": d, "seq_len": L, "num_kv_pairs": cfg.num_kv_pairs(L), "lr": lr,
            "accuracy": summary["best_accuracy"], "final_accuracy": summary["eval_accuracy"],
            "params": sum(p.numel() for p in model.parameters()), "seconds": time.perf_counter() - start,
            "steps": summary["step"]}


def _best_rows(runs: list[dict]) -> list[dict]:
    best: dict[tuple, dict] = {}
    for r in runs:
        k = (r["mixer"], r["d_model"], r["seq_len"])
        if k not in best or r["accuracy"] > best[k]["accuracy"]:
            best[k] = r
    return sorted(best.values(), key=lambda r: (r["seq_len"], r["mixer"], r["d_model"]))


def render_markdown(result: dict) -> str:
    cfg, rows = result["config"], result["rows"]
    lengths = sorted({r["seq_len"] for r in rows})
    widths = sorted({r["d_model"] for r in rows})
    mixers = [m for m in cfg["mixers"] if any(r["mixer"] == m for r in rows)]
    by = {(r["mixer"], r["d_model"], r["seq_len"]): r for r in rows}
    header = ["mixer"] + [f"L={L} d={d}" for L in lengths for d in widths]
    body = []
    for m in mixers:
        cells = []
        for L in lengths:
            for d in widths:
                r = by.get((m, d, L))
                cells.append("—" if r is None else f"{r['accuracy']:.3f}")
        body.append([m] + cells)
    lines = [
        "# MQAR accuracy (best learning rate)\n",
        f"2-layer models of token mixers only; vocabulary {cfg['vocab_size']}, num_kv_pairs = seq_len x "
        f"{cfg['kv_per_token']:g}, {cfg['train_examples']:,} training and {cfg['eval_examples']:,} test examples, "
        f"batch {cfg['batch_size']}, at most {cfg['max_steps']} steps (stop at {cfg['early_stop_accuracy']} accuracy), "
        f"learning rates {', '.join(f'{x:g}' for x in cfg['lrs'])}. Accuracy: per example, the share of its queries "
        "answered right, averaged over test examples.\n",
        markdown_table(header, body),
        "\n## Runs\n",
        markdown_table(["mixer", "d_model", "seq_len", "kv", "lr", "accuracy", "params", "steps", "seconds"],
                       [[r["mixer"], str(r["d_model"]), str(r["seq_len"]), str(r["num_kv_pairs"]), f"{r['lr']:g}",
                         f"{r['accuracy']:.3f}", f"{r['params']:,}", str(r["steps"]), f"{r['seconds']:.0f}"]
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
            pts = sorted((r["d_model"], r["accuracy"]) for r in rows if r["mixer"] == mixer and r["seq_len"] == L)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o",
                        linestyle="--" if mixer == "attention" else "-", label=mixer)
        kv = next(r["num_kv_pairs"] for r in rows if r["seq_len"] == L)
        ax.set_title(f"sequence length {L}, {kv} key-value pairs")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("model width d_model")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("MQAR accuracy")
    axes[0][-1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
