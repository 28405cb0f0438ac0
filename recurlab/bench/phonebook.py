"""``recurlab bench phonebook``: long-context retrieval of the LM presets trained on the same budget.

SambaY (Ren et al. 2025) claims better long-context retrieval than YOCO, its Samba+YOCO baseline, on the
Phonebook task; pure recurrent models should fail it (Jelassi et al. 2024). Here every preset's layout (blocks,
mixers, memory and KV wiring as in ``recurlab train --preset``; the width set by ``d_model``) is trained from
scratch on byte-level phonebooks (:mod:`recurlab.tasks.phonebook`) of ``train_len`` bytes, on fresh books every
step, with the same steps, batch and learning rate for all, then evaluated on held-out books at every length of
``eval_lens`` (lengths above ``train_len`` test extrapolation: every book there is longer than any seen in
training). The measure: the fraction of lookups whose whole number is right (teacher-forced argmax, which is what
greedy decoding of the number gives). Files (see bench.harness): runs.jsonl, results.json, results.md and
phonebook.png (accuracy against context length, one line per preset).
"""

from __future__ import annotations

from functools import partial
import time
from dataclasses import dataclass

import torch

from ..configs import check_fields, param
from ..train.schedule import warmup_cosine
from .harness import Benchmark, Context, Finished, Report, settings
from .report import markdown_table

PRESETS = ("lm-attention", "lm-yoco", "lm-sambay", "lm-gla")
CLAIM = ("SambaY: better long-context retrieval (Phonebook) than Samba+YOCO; pure recurrent models fail "
         "phonebook lookup (Jelassi et al. 2024)")


@dataclass
class PhonebookBenchConfig:
    presets: tuple[str, ...] = param(PRESETS, axis=True)
    d_model: int = param(64, ge=8)  # the presets' width (their own: 256) for a CPU budget
    train_len: int = param(256, ge=16)
    min_train_len: int = param(64, ge=16)  # the shortest training books (see train_lens)
    eval_lens: tuple[int, ...] = param((128, 256, 512, 1024, 2048, 4096, 8192), ge=16)
    name_len: int = param(2, ge=1)
    number_len: int = param(3, ge=1)
    n_queries: int = param(16, ge=1)  # lookups per book (fewer in books of under 2 * n_queries lines)
    train_steps: int = param(3000, ge=1)
    batch_size: int = param(8, ge=1)  # books of train_len per step (more of the shorter ones)
    lr: float = param(3e-3, gt=0)
    n_test: int = param(32, ge=1)  # held-out books per evaluated length
    eval_tokens: int = param(8192, ge=16)  # tokens per evaluation batch
    seed: int = param(0, ge=0)

    def __post_init__(self):
        check_fields(self)
        from ..train.lm import PRESETS as LM_PRESETS

        unknown = [p for p in self.presets if p not in LM_PRESETS]
        if unknown or not self.presets:
            raise ValueError(f"presets must be LM presets ({', '.join(LM_PRESETS)}), got {self.presets}")
        if self.min_train_len > self.train_len:
            raise ValueError(f"min_train_len={self.min_train_len} must be at most train_len={self.train_len}")
        for length in (*self.train_lens, *self.eval_lens):
            self.book(length).validate()

    def book(self, length: int):
        """The phonebook of ``length`` bytes: n_queries lookups, or half its lines when it has fewer."""
        from ..tasks.phonebook import PhonebookConfig

        lines = (length + 1) // (self.name_len + self.number_len + 2)
        return PhonebookConfig(context_len=length, name_len=self.name_len, number_len=self.number_len,
                               n_queries=max(1, min(self.n_queries, lines // 2)))

    @property
    def train_lens(self) -> list[int]:
        """The training lengths: train_len, and its halvings down to min_train_len. Every step draws one (in a
        fixed seeded order), with batch_size * train_len / length books: the same tokens every step. The short
        books, with a few entries each, are where a model first learns to look a name up."""
        lens = [self.train_len]
        while lens[-1] // 2 >= self.min_train_len:
            lens.append(lens[-1] // 2)
        return lens[::-1]

    @classmethod
    def quick(cls, **overrides) -> "PhonebookBenchConfig":
        return cls(**{"presets": ("lm-attention", "lm-gla"), "d_model": 32, "train_len": 128,
                      "min_train_len": 32, "eval_lens": (64, 128, 256), "n_queries": 2, "train_steps": 40,
                      "batch_size": 4, "n_test": 8, **overrides})


def jobs(cfg: PhonebookBenchConfig) -> list[dict]:
    return [{"preset": p, **settings(cfg)} for p in cfg.presets]


def build(preset: str, d_model: int, seed: int):
    """The preset's layout at width d_model (vocabulary: bytes)."""
    from ..models import CausalLM, ModelConfig
    from ..train.lm import LMSetup

    torch.manual_seed(seed)
    return CausalLM(ModelConfig.from_dict({**LMSetup.preset(preset).model, "d_model": d_model, "vocab_size": 256}))


class _NextTokenLoss(torch.nn.Module):
    """model(inputs, labels) -> cross-entropy over the labelled positions: what the training loop calls."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, inputs, labels):
        logits, _ = self.model(inputs)
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)


def train(model, cfg: PhonebookBenchConfig, progress: bool, desc: str):
    """AdamW (5% warm-up, then cosine to 10%) on a fresh batch of books every step, of a length drawn from
    cfg.train_lens."""
    from ..tasks.phonebook import phonebook
    from ..train.loop import train_steps

    lens = cfg.train_lens
    which = torch.randint(0, len(lens), (cfg.train_steps,), generator=torch.Generator().manual_seed(cfg.seed))

    def batch(step):
        length = lens[int(which[step])]
        task = phonebook(cfg.batch_size * cfg.train_len // length, cfg.book(length), seed=cfg.seed * 1_000_003 + step)
        return task.inputs, task.labels, task.labels  # (*inputs, target): the target only sizes the batch

    schedule = partial(warmup_cosine, total=cfg.train_steps, warmup=max(1, cfg.train_steps // 20), min_ratio=0.1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    return train_steps(_NextTokenLoss(model), optimizer, lambda loss, _: loss, batch, cfg.train_steps,
                       max(1, cfg.train_steps // 5), lr_factor=schedule, grad_clip=1.0, progress=progress,
                       desc=desc)


@torch.no_grad()
def evaluate(model, cfg: PhonebookBenchConfig, length: int, progress: bool = False) -> dict:
    """Accuracy of the lookups in cfg.n_test held-out books of ``length`` bytes (seeded apart from training)."""
    from tqdm.auto import tqdm

    from ..tasks.phonebook import phonebook, query_accuracy

    task = phonebook(cfg.n_test, cfg.book(length), seed=10_000_019 + cfg.seed * 1_000 + length)
    per_batch = max(1, cfg.eval_tokens // length)
    model.eval()
    scores, start = [], time.perf_counter()
    for i in tqdm(range(0, cfg.n_test, per_batch), desc=f"eval {length}", disable=not progress, leave=False):
        logits, _ = model(task.inputs[i:i + per_batch])
        scores.append(query_accuracy(logits.argmax(-1), task.labels[i:i + per_batch], cfg.number_len))
    return {"length": length, "entries": cfg.book(length).n_entries, "accuracy": torch.cat(scores).mean().item(),
            "seconds": time.perf_counter() - start}


def measure(job: dict, ctx: Context) -> dict:
    cfg = PhonebookBenchConfig(**{k: v for k, v in job.items() if k != "preset"}, presets=(job["preset"],))
    torch.set_num_threads(1)  # one job per core: run presets side by side in separate processes
    model = build(job["preset"], cfg.d_model, cfg.seed)
    start = time.perf_counter()
    history = train(model, cfg, ctx.progress, job["preset"])
    train_seconds = time.perf_counter() - start
    rows = [evaluate(model, cfg, length, ctx.progress) for length in cfg.eval_lens]
    return {"rows": rows, "train_seconds": train_seconds, "final_loss": history.window_loss[-1],
            "loss_curve": history.window_loss, "params": sum(p.numel() for p in model.parameters())}


def render_markdown(cfg: PhonebookBenchConfig, finished: Finished) -> str:
    entries = {length: cfg.book(length).n_entries for length in cfg.eval_lens}
    lines = ["# recurlab bench phonebook\n",
             f"Byte-level phonebooks (`name:number` lines, {cfg.name_len}-letter names, {cfg.number_len}-digit "
             f"numbers, then {cfg.n_queries} lookups `name?number`). Every preset's layout at d_model {cfg.d_model}, "
             f"trained from scratch on books of {', '.join(map(str, cfg.train_lens))} bytes (one length per step, "
             f"{cfg.batch_size} x {cfg.train_len} bytes per step, fresh books every step): {cfg.train_steps} steps, "
             f"lr {cfg.lr}. Accuracy: lookups whose whole number is right, over "
             f"{cfg.n_test} held-out books per length (chance {10.0 ** -cfg.number_len:g}); lengths above "
             f"{cfg.train_len} are longer than any book seen in training. Claim: {CLAIM}.\n"]
    header = ["preset", "params"] + [f"{length:,} bytes ({entries[length]} entries)" for length in cfg.eval_lens]
    body = []
    for job, result in finished:
        by_length = {r["length"]: r["accuracy"] for r in result["rows"]}
        body.append([job["preset"], f"{result['params']:,}"]
                    + [f"{by_length[length]:.3f}" if length in by_length else "—" for length in cfg.eval_lens])
    lines.append(markdown_table(header, body))
    lines.append("\nTraining: " + "; ".join(
        f"{job['preset']}: final loss {result['final_loss']:.3f}, {result['train_seconds'] / 60:.1f} min"
        for job, result in finished) + ".")
    return "\n".join(lines) + "\n"


def report(cfg: PhonebookBenchConfig, finished: Finished) -> Report:
    rows = [{"preset": job["preset"], **r} for job, result in finished for r in result["rows"]]
    training = [{"preset": job["preset"], **{k: v for k, v in result.items() if k != "rows"}}
                for job, result in finished]
    return Report(render_markdown(cfg, finished), {"rows": rows, "training": training},
                  lambda path: plot_phonebook(cfg, rows, training, path))


def plot_phonebook(cfg: PhonebookBenchConfig, rows: list[dict], training: list[dict], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, preset in enumerate(dict.fromkeys(r["preset"] for r in rows)):
        pts = sorted((r["length"], r["accuracy"]) for r in rows if r["preset"] == preset)
        left.plot(*zip(*pts), "-o", color=f"C{i}", label=preset)
    for i, t in enumerate(training):
        curve = t["loss_curve"]
        right.plot([cfg.train_steps * (k + 1) / len(curve) for k in range(len(curve))], curve, "-o", color=f"C{i}",
                   label=t["preset"])
    left.axvline(cfg.train_len, color="grey", linestyle=":", label="training length")
    left.set(xscale="log", xlabel="context length (bytes)", ylabel="lookup accuracy", ylim=(-0.02, 1.02),
             title="phonebook lookup")
    left.set_xscale("log", base=2)
    right.set(xlabel="training step", ylabel="training loss (digits of the lookups)", yscale="log",
              title="training")
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def label(job: dict) -> str:
    return job["preset"]


def summary(job: dict, result: dict) -> str:
    return f"{job['preset']}: " + ", ".join(f"{r['length']}: {r['accuracy']:.3f}" for r in result["rows"])


BENCHMARK = Benchmark("phonebook", PhonebookBenchConfig, jobs, measure, report, plot_file="phonebook.png",
                      label=label, summary=summary)
