"""``recurlab bench convert``: how much of a trained attention model a conversion to a gated recurrence keeps (Liger).

Liger (Lan et al. 2025) claims that an attention model converted to gated linear attention, its gate
built from the key projection, recovers about 93% of its quality after LoRA fine-tuning on 0.02% of its
pretraining tokens. This benchmark tests that claim on a model trained here:

    teacher        an ``lm-attention`` model trained longer than the preset (by default its shape,
                   4x its 800 steps), on the default corpus in bytes
    converted      the teacher converted (:func:`recurlab.convert.convert`) to each of ``targets``
                   (liger-gla: the gated recurrence alone; liger-attention: 0.5 sliding window + 0.5 of it;
                   gla: the same recurrence with a new random low-rank gate), then LoRA-fine-tuned
                   (:func:`recurlab.convert.convert_and_finetune`, the authors' settings) on each of
                   ``fractions`` of the teacher's training tokens, and merged
    from scratch   each of ``scratch``'s architectures, of exactly the converted shape, trained from a
                   random start on the teacher's whole budget with the teacher's recipe
    decoding       greedy decoding tokens/s (batch 1, side by side) and the decoding state's memory after
                   ``decode_tokens`` generated tokens, for the teacher and every converted architecture

Every model is scored on the same validation windows (bits per byte); "recovered" is the share of the
teacher's improvement over the unigram baseline that a model keeps: (unigram - bpb) / (unigram - teacher).
Each training or conversion is a job of the run log (:mod:`recurlab.bench.harness`; an interrupted run
continues, a job's own training resumes from its checkpoint); the models stay in ``OUT/models`` and
``OUT/convert``. Writes results.json, results.md and convert.png (recovery against fine-tune tokens).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..configs import check_fields, param
from ..convert import TARGETS, ConvertConfig, FinetuneConfig, convert_and_finetune, converted_config
from ..convert.finetune import text_data
from ..models import CausalLM, ModelConfig
from ..train.lm import PRESETS, LMSetup, train_language_model
from .harness import Benchmark, Context, Finished, Report, job_key
from .report import markdown_table
from .timing import decode_side_by_side

TEACHER_PRESET = "lm-attention"
LIGER_CLAIM = (0.0002, 93.0)  # (fraction of pretraining tokens, % of quality recovered): the paper's claim


def _checked(cls):
    cls.__post_init__ = check_fields
    return dataclass(cls)


@_checked
class TeacherPart:
    """The teacher: the lm-attention preset's network and recipe, with these changes."""

    d_model: int = param(256, ge=1)
    n_layers: int = param(6, ge=1)
    steps: int = param(4 * PRESETS[TEACHER_PRESET]["train"]["steps"], ge=1)  # 4x the preset's
    seq_len: int = param(PRESETS[TEACHER_PRESET]["seq_len"], ge=2)
    batch_size: int = param(PRESETS[TEACHER_PRESET]["train"]["batch_size"], ge=1)
    lr: float = param(PRESETS[TEACHER_PRESET]["train"]["lr"], gt=0)
    eval_every: int = param(PRESETS[TEACHER_PRESET]["train"]["eval_every"], ge=1)


@_checked
class LoRAPart:
    """The fine-tuning after each conversion (recurlab.convert's defaults: the authors')."""

    rank: int = param(8, ge=1)
    lr: float = param(1e-3, gt=0)
    batch_size: int = param(8, ge=1)
    eval_every: int = param(100, ge=1)


@dataclass
class ConvertBenchConfig:
    targets: list[str] = param(factory=lambda: list(TARGETS), axis=True, choices=TARGETS)
    fractions: list[float] = param(factory=lambda: [0.0002, 0.001, 0.01, 0.05], axis=True, gt=0, le=1)
    scratch: list[str] = param(factory=lambda: ["liger-gla", "liger-attention"], axis=True, choices=TARGETS)
    teacher: TeacherPart = field(default_factory=TeacherPart)
    lora: LoRAPart = field(default_factory=LoRAPart)
    window: int = param(64, ge=1)  # Liger Attention's sliding window
    gate_rank: int = param(16, ge=1)  # the gla baseline's random gate
    eval_sequences: int = param(1024, ge=1)  # validation windows scored (at most all there are)
    decode_prompt: int = param(16, ge=1)
    decode_tokens: int = param(8192, ge=1)
    decode_rounds: int = param(3, ge=1)
    corpus: str | None = None  # a .txt file or folder; None: the default corpus
    seed: int = param(0, ge=0)

    def __post_init__(self):
        check_fields(self)

    @classmethod
    def quick(cls) -> "ConvertBenchConfig":
        """A few minutes on 2 cores: a tiny teacher, two budgets, short decoding."""
        return cls(fractions=[0.01, 0.1], teacher=TeacherPart(d_model=64, n_layers=2, steps=200, seq_len=128,
                                                              eval_every=100),
                   lora=LoRAPart(eval_every=50), eval_sequences=64, decode_tokens=512, decode_rounds=1)


# ------------------------------------------------------------------------------------------------ jobs


def teacher_setup(cfg: ConvertBenchConfig) -> dict:
    """The teacher's LMSetup as a dict: the lm-attention preset with the teacher part's changes."""
    setup = copy.deepcopy(PRESETS[TEACHER_PRESET])
    t = cfg.teacher
    setup["model"].update(d_model=t.d_model, n_layers=t.n_layers)
    setup["train"].update(steps=t.steps, batch_size=t.batch_size, lr=t.lr, eval_every=t.eval_every, seed=cfg.seed)
    setup["seq_len"] = t.seq_len
    setup["data"] = {"path": cfg.corpus} if cfg.corpus else {}
    return setup


def scratch_setup(cfg: ConvertBenchConfig, to: str) -> dict:
    """The teacher's setup with the network the conversion to ``to`` builds (its exact shape), from a random start."""
    setup = teacher_setup(cfg)
    teacher = ModelConfig.from_dict({**setup["model"], "vocab_size": 256})
    with torch.random.fork_rng(devices=[]):
        shape = converted_config(CausalLM(teacher), to, cfg.window, cfg.gate_rank).to_dict()
    setup["model"] = {k: v for k, v in shape.items() if k != "vocab_size"}
    return setup


def _common(cfg: ConvertBenchConfig) -> dict:
    return {"eval_sequences": cfg.eval_sequences, "seed": cfg.seed}


def teacher_job(cfg: ConvertBenchConfig) -> dict:
    return {"part": "train", "arch": "attention", "origin": "teacher", "setup": teacher_setup(cfg), **_common(cfg)}


def teacher_tokens(cfg: ConvertBenchConfig) -> int:
    return cfg.teacher.steps * cfg.teacher.batch_size * cfg.teacher.seq_len


def convert_config(cfg: ConvertBenchConfig, fraction: float) -> ConvertConfig:
    """recurlab.convert's settings for one cell: fine-tune on ``fraction`` of the teacher's tokens."""
    tokens = max(1, round(fraction * teacher_tokens(cfg)))
    finetune = FinetuneConfig(tokens=tokens, batch_size=cfg.lora.batch_size, seq_len=cfg.teacher.seq_len,
                              lr=cfg.lora.lr, rank=cfg.lora.rank, alpha=float(cfg.lora.rank),
                              eval_every=cfg.lora.eval_every, eval_sequences=cfg.eval_sequences, seed=cfg.seed,
                              data={"path": cfg.corpus} if cfg.corpus else {})
    return ConvertConfig(window=cfg.window, gate_rank=cfg.gate_rank, seed=cfg.seed, finetune=finetune)


def convert_job(cfg: ConvertBenchConfig, to: str, fraction: float) -> dict:
    return {"part": "convert", "to": to, "fraction": fraction, "teacher": teacher_job(cfg),
            "convert": asdict(convert_config(cfg, fraction))}


def jobs(cfg: ConvertBenchConfig) -> list[dict]:
    """The teacher, every conversion (cheapest budgets first), the from-scratch runs, then decoding."""
    out = [teacher_job(cfg)]
    out += [convert_job(cfg, to, f) for f in sorted(cfg.fractions) for to in cfg.targets]
    out += [{"part": "train", "arch": to, "origin": "scratch", "setup": scratch_setup(cfg, to), **_common(cfg)}
            for to in cfg.scratch]
    models = {"attention": teacher_job(cfg)}
    models.update({to: convert_job(cfg, to, max(cfg.fractions)) for to in cfg.targets})
    out.append({"part": "decode", "models": models, "prompt": cfg.decode_prompt, "tokens": cfg.decode_tokens,
                "rounds": cfg.decode_rounds, "seed": cfg.seed})
    return out


# ---------------------------------------------------------------------------------------------- measurements


def _train_folder(ctx: Context, job: dict) -> Path:
    return ctx.out_dir / "models" / f"{job['origin']}-{job['arch']}-{job_key(job)}"


def _convert_folder(ctx: Context, job: dict) -> Path:
    return ctx.out_dir / "convert" / f"{job['to']}-{job['fraction']:g}-{job_key(job)}"


def _model_folder(ctx: Context, job: dict) -> Path:
    """The saved model of a finished train or convert job."""
    folder = (_train_folder(ctx, job) if job["part"] == "train" else _convert_folder(ctx, job)) / "model"
    if ctx.log.get(job) is None or not (folder / "config.json").exists():
        raise ValueError(f"the model of job {job['part']} {job.get('to') or job.get('arch')} is missing: run the "
                         "benchmark's earlier jobs with the same settings first (they run in order)")
    return folder


def validation_bits_per_byte(model: CausalLM, tokenizer, setup: dict, eval_sequences: int) -> float:
    """Bits per byte on the first ``eval_sequences`` validation windows: the windows every row is scored on
    (the same as :func:`recurlab.convert.convert_and_finetune` scores)."""
    data = text_data(tokenizer, FinetuneConfig(seq_len=setup["seq_len"], eval_sequences=eval_sequences,
                                               val_fraction=setup.get("val_fraction", 0.05), data=setup["data"]))
    return data.bits_per_byte(model.eval())


def measure_train(job: dict, ctx: Context) -> dict:
    """Train the teacher or a from-scratch model (resuming its own checkpoint) and score it."""
    from ..models.pretrained import load_tokenizer

    folder = _train_folder(ctx, job)
    summary = train_language_model(LMSetup(**copy.deepcopy(job["setup"])), folder, f"{job['origin']} {job['arch']}",
                                   resume=(folder / "checkpoint.pt").exists(), progress=ctx.progress)
    model = CausalLM.from_pretrained(folder / "model")
    bpb = validation_bits_per_byte(model, load_tokenizer(folder / "model"), job["setup"], job["eval_sequences"])
    train = job["setup"]["train"]
    return {"arch": job["arch"], "origin": job["origin"], "params": summary["params"], "val_bits_per_byte": bpb,
            "unigram_bits_per_byte": summary["unigram_bits_per_byte"],
            "train_tokens": summary["steps"] * train["batch_size"] * job["setup"]["seq_len"],
            "train_seconds": summary["train_seconds"]}


def measure_convert(job: dict, ctx: Context) -> dict:
    """Convert the trained teacher to ``job["to"]`` and LoRA-fine-tune it (resumable), via recurlab.convert."""
    teacher = _model_folder(ctx, job["teacher"])
    config = ConvertConfig(**{**job["convert"], "finetune": FinetuneConfig(**job["convert"]["finetune"])})
    s = convert_and_finetune(teacher, job["to"], _convert_folder(ctx, job), config, resume=True, progress=ctx.progress)
    return {"to": job["to"], "fraction": job["fraction"], "finetune_tokens": s["finetune_tokens"],
            "finetune_steps": s["finetune_steps"], "finetune_seconds": s["finetune_seconds"],
            "params": s["params_after"], "trainable_params": s["trainable_params"],
            "teacher_bits_per_byte": s["original_val_bits_per_byte"],
            "before_bits_per_byte": s["val_bits_per_byte_before_finetune"],
            "val_bits_per_byte": s["val_bits_per_byte_after_finetune"]}


def measure_decode(job: dict, ctx: Context) -> dict:
    """Greedy decoding of ``tokens`` tokens after a ``prompt``-token prompt, batch 1, side by side (interleaved
    rounds, medians; the prefill is not timed), and the decoding state's bytes at the end."""
    models = {arch: CausalLM.from_pretrained(_model_folder(ctx, m)).eval() for arch, m in job["models"].items()}
    return decode_side_by_side(models, job["prompt"], job["tokens"], job["rounds"], job["seed"])


def measure(job: dict, ctx: Context) -> dict:
    return {"train": measure_train, "convert": measure_convert, "decode": measure_decode}[job["part"]](job, ctx)


# ------------------------------------------------------------------------------------------------ report


def recovered(bpb: float, teacher: float, unigram: float) -> float:
    """% of the teacher's improvement over the unigram baseline kept by a model at ``bpb`` bits per byte."""
    return 100.0 * (unigram - bpb) / (unigram - teacher)


def rows_of(cfg: ConvertBenchConfig, finished: Finished) -> dict:
    """The table's rows (teacher, converted before and after fine-tuning, from scratch) and the decode speeds."""
    teacher = next((r for j, r in finished if j["part"] == "train" and j["origin"] == "teacher"), None)
    decode = next((r for j, r in finished if j["part"] == "decode"), None)
    if teacher is None:
        return {"rows": [], "decode": decode}
    t_bpb, unigram, t_tokens = teacher["val_bits_per_byte"], teacher["unigram_bits_per_byte"], teacher["train_tokens"]

    def row(variant, arch, tokens, bpb, params, trained, origin):
        speed = decode["tokens_per_s"].get(arch) if decode else None
        state = decode["state_bytes"].get(arch) if decode else None
        return {"variant": variant, "arch": arch, "origin": origin, "tokens": tokens, "fraction": tokens / t_tokens,
                "val_bits_per_byte": bpb, "recovered": recovered(bpb, t_bpb, unigram), "params": params,
                "trained_params": trained, "decode_tokens_per_s": speed, "state_bytes": state}

    rows = [row("teacher (attention)", "attention", t_tokens, t_bpb, teacher["params"], teacher["params"], "teacher")]
    converted = [r for j, r in finished if j["part"] == "convert"]
    for to in cfg.targets:
        mine = sorted((r for r in converted if r["to"] == to), key=lambda r: r["fraction"])
        if mine:
            rows.append(row(to, to, 0, mine[0]["before_bits_per_byte"], mine[0]["params"], 0, "converted"))
        rows += [row(to, to, r["finetune_tokens"], r["val_bits_per_byte"], r["params"], r["trainable_params"],
                     "converted") for r in mine]
    rows += [row(f"{r['arch']} from scratch", r["arch"], r["train_tokens"], r["val_bits_per_byte"], r["params"],
                 r["params"], "scratch") for j, r in finished if j["part"] == "train" and r["origin"] == "scratch"]
    return {"rows": rows, "decode": decode, "teacher_bits_per_byte": t_bpb, "unigram_bits_per_byte": unigram,
            "teacher_tokens": t_tokens, "teacher_seconds": teacher["train_seconds"]}


def report(cfg: ConvertBenchConfig, finished: Finished) -> Report:
    data = rows_of(cfg, finished)
    return Report(render_markdown(cfg, data), data, lambda path: plot_recovery(data, path))


def _tokens(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n:,}"


def render_markdown(cfg: ConvertBenchConfig, data: dict) -> str:
    t = cfg.teacher
    lines = ["# recurlab bench convert\n",
             f"Teacher: `{TEACHER_PRESET}` network (d_model {t.d_model}, {t.n_layers} layers, SwiGLU, RoPE, bytes), "
             f"{t.steps} steps x {t.batch_size} x {t.seq_len} tokens. Converted by `recurlab.convert` (window "
             f"{cfg.window}), LoRA rank {cfg.lora.rank} on W_q, W_k, W_v at lr {cfg.lora.lr:g}, batch "
             f"{cfg.lora.batch_size}; from-scratch models of the converted shape trained on the teacher's budget and "
             f"recipe. Every model scored on the same {cfg.eval_sequences} (or all) validation windows; "
             "recovered = (unigram - bpb) / (unigram - teacher). Decoding: greedy, batch 1, float32, after a "
             f"{cfg.decode_prompt}-token prompt, side by side; state = every state tensor (KV caches at capacity) "
             f"after {cfg.decode_tokens:,} generated tokens.\n"]
    if not data["rows"]:
        return "\n".join(lines + ["(the teacher has not finished training yet)\n"])
    lines.append(f"Unigram baseline {data['unigram_bits_per_byte']:.3f} bits per byte; teacher "
                 f"{data['teacher_bits_per_byte']:.3f} after {_tokens(data['teacher_tokens'])} tokens.\n")
    body = []
    for r in data["rows"]:
        tokens = ("0 (not fine-tuned)" if r["origin"] == "converted" and r["tokens"] == 0 else
                  f"{_tokens(r['tokens'])} ({100 * r['fraction']:.3g}%)")
        speed = f"{r['decode_tokens_per_s']:,.0f}" if r["decode_tokens_per_s"] else "—"
        state = f"{r['state_bytes'] / 2**20:.3g}" if r["state_bytes"] else "—"
        body.append([r["variant"], tokens, f"{r['val_bits_per_byte']:.3f}", f"{r['recovered']:.1f}%",
                     f"{r['trained_params']:,}", speed, state])
    lines.append(markdown_table(["variant", "training tokens (of the teacher's)", "val bits/byte", "recovered",
                                 "trained parameters", f"decode tokens/s at {cfg.decode_tokens:,}",
                                 f"state MB at {cfg.decode_tokens:,}"], body))
    claim = [r for r in data["rows"] if r["origin"] == "converted" and r["tokens"]
             and abs(r["fraction"] - LIGER_CLAIM[0]) <= LIGER_CLAIM[0]]
    if claim:
        lines.append(f"\nLiger's claim: {LIGER_CLAIM[1]:g}% recovered at {100 * LIGER_CLAIM[0]:g}% of the "
                     "pretraining tokens. Here, nearest that budget: " + "; ".join(
                         f"{r['variant']} {r['recovered']:.1f}% at {100 * r['fraction']:.3g}%" for r in claim) + ".")
    return "\n".join(lines) + "\n"


def plot_recovery(data: dict, path) -> None:
    """% recovered against fine-tune tokens (as % of the teacher's), one line per target; from-scratch models
    and the teacher as horizontal references; Liger's claim as a star."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    converted = [r for r in data["rows"] if r["origin"] == "converted" and r["tokens"]]
    for i, arch in enumerate(dict.fromkeys(r["arch"] for r in converted)):
        pts = sorted((100 * r["fraction"], r["recovered"]) for r in converted if r["arch"] == arch)
        ax.plot(*zip(*pts), marker="o", color=f"C{i}", label=f"{arch}, converted + LoRA")
        for r in data["rows"]:
            if r["origin"] == "scratch" and r["arch"] == arch:
                ax.axhline(r["recovered"], color=f"C{i}", linestyle=":", label=f"{arch} from scratch (teacher's budget)")
    ax.axhline(100, color="black", linestyle="--", linewidth=1, label="teacher")
    ax.plot([100 * LIGER_CLAIM[0]], [LIGER_CLAIM[1]], marker="*", markersize=14, color="gold", markeredgecolor="black",
            linestyle="none", label="Liger's claim")
    ax.set_xscale("log")
    ax.set_xlabel("fine-tune tokens, % of the teacher's training tokens")
    ax.set_ylabel("% of the teacher's gain over unigram recovered")
    ax.set_title("Converting a trained attention model (recurlab bench convert)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def label(job: dict) -> str:
    if job["part"] == "convert":
        return f"convert {job['to']} {100 * job['fraction']:g}%"
    return f"{job['part']} {job.get('origin', '')} {job.get('arch', '')}".strip()


def summary(job: dict, result: dict) -> str:
    if job["part"] == "decode":
        return "decode: " + ", ".join(f"{a} {v:,.0f} tokens/s" for a, v in result["tokens_per_s"].items())
    return f"{label(job)}: {result['val_bits_per_byte']:.3f} bits per byte"


BENCHMARK = Benchmark("convert", ConvertBenchConfig, jobs, measure, report, plot_file="convert.png", label=label,
                      summary=summary)
