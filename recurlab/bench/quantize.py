"""``recurlab bench quantize``: Fairy2i's 1-2 bit complex weights against real baselines on trained language models.

Fairy2i (PKU 2025) claims that quantising each linear layer's widely-linear complex form to {±1, ±i} with a
recursive residual beats real-valued quantisers at the same bits (LLaMA-2 7B, 2 bits: C4 perplexity 7.85 against
FP16's 6.63, better than real binary and ternary methods). This benchmark tests it on models trained here:

    models     each of ``presets`` trained with its preset's recipe (the ``recurlab train --preset`` run), or
               the saved models named in ``checkpoints`` (then nothing is trained)
    quantised  every model with each of ``methods`` (recurlab.compress.methods: fairy2i-2, fairy2i-1, rtn-2,
               ternary, bitnet), the same layers in every case; bits per byte right after quantising (PTQ),
               then after ``finetune.tokens`` tokens of straight-through fine-tuning (QAT, the same budget and
               optimizer for every method), then packed and saved
    speed      forward tokens/s of the full-precision and of the packed model at batch ``speed_batch`` x the
               preset's sequence length, side by side (``timing.measure_interleaved``)
    control    every model fine-tuned in float32 with the same tokens and optimizer: how much of a QAT gain is
               plain extra training

Every model is scored on the same validation windows (bits per byte). Each training and quantisation is a job of
the run log (an interrupted run continues; a job's own fine-tuning resumes from its checkpoint); models stay in
OUT/models and OUT/quantize. Writes results.json, results.md and quantize.png (bits per byte against bits per
weight, PTQ and QAT, one panel per model).
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..compress.methods import get_quantizer
from ..compress.quantize import QuantizeConfig, QuantizeFinetune, load_quantized, quantize_and_finetune
from ..configs import check_fields, param
from ..train.lm import PRESETS
from .convert import measure_train
from .harness import Benchmark, Context, Finished, Report, job_key
from .report import markdown_table
from .timing import measure_interleaved

METHODS = ("fairy2i-2", "rtn-2", "fairy2i-1", "ternary", "bitnet")
FAIRY2I_CLAIM = "LLaMA-2 7B at 2 bits: C4 perplexity 7.85 (FP16 6.63), better than real binary / ternary methods"


def parse_method(name: str) -> tuple[str, int | None]:
    """"fairy2i-2" -> ("fairy2i", 2); "ternary" -> ("ternary", None); checked by get_quantizer."""
    method, _, bits = name.partition("-")
    parsed = (method, int(bits) if bits else None)
    get_quantizer(*parsed)
    return parsed


@dataclass
class QuantizeBenchConfig:
    presets: list[str] = param(factory=lambda: ["lm-gla", "lm-mingru", "lm-attention"], axis=True,
                               choices=tuple(PRESETS))
    checkpoints: dict[str, str] = param(factory=dict)  # name -> saved model folder: used instead of presets
    seq_len: int = param(256, ge=2)  # the sequence length of fine-tuning and scoring for checkpoints (presets: theirs)
    corpus: str | None = param(None)  # a text file for fine-tuning and scoring (None: the default corpus)
    methods: list[str] = param(factory=lambda: list(METHODS), axis=True)
    finetune_tokens: int = param(131_072, ge=0)  # straight-through fine-tuning per quantised model (0: PTQ only)
    finetune_lr: float = param(3e-4, gt=0)
    finetune_batch: int = param(8, ge=1)
    eval_every: int = param(32, ge=1)
    eval_sequences: int = param(64, ge=1)
    speed_batch: int = param(4, ge=1)
    speed_repeats: int = param(5, ge=1)
    seed: int = param(0, ge=0)

    def __post_init__(self):
        check_fields(self)
        for name in self.methods:
            try:
                parse_method(name)
            except ValueError as error:
                raise ValueError(f"methods has {name!r}: {error} (write method-bits, e.g. fairy2i-2)") from None

    @classmethod
    def quick(cls, **overrides) -> "QuantizeBenchConfig":
        """About ten minutes on 2 cores: lm-mingru (trained with its preset's recipe, most of the time) quantised
        with fairy2i-2 and rtn-2, 16k fine-tuning tokens each; with ``checkpoints`` nothing is trained."""
        return cls(**{"presets": ["lm-mingru"], "methods": ["fairy2i-2", "rtn-2"], "finetune_tokens": 16_384,
                      "eval_sequences": 16, "speed_repeats": 2, **overrides})


# ------------------------------------------------------------------------------------------------ jobs


def train_job(cfg: QuantizeBenchConfig, preset: str) -> dict:
    setup = copy.deepcopy(PRESETS[preset])
    setup["train"]["seed"] = cfg.seed
    setup["data"] = {"path": cfg.corpus} if cfg.corpus else {}
    return {"part": "train", "arch": preset, "origin": "preset", "setup": setup,
            "eval_sequences": cfg.eval_sequences, "seed": cfg.seed}


def sources(cfg: QuantizeBenchConfig) -> dict[str, dict]:
    """name -> what the quantised models start from: a train job of this run, or a saved folder."""
    if cfg.checkpoints:
        for name, folder in cfg.checkpoints.items():
            if not (Path(folder) / "config.json").exists() and not (Path(folder) / "model" / "config.json").exists():
                raise ValueError(f"checkpoints.{name}: {folder} holds no saved model (config.json)")
        return {name: {"path": str(folder), "seq_len": cfg.seq_len} for name, folder in cfg.checkpoints.items()}
    return {preset: train_job(cfg, preset) for preset in cfg.presets}


def finetune_config(cfg: QuantizeBenchConfig, seq_len: int) -> QuantizeFinetune:
    return QuantizeFinetune(tokens=cfg.finetune_tokens, batch_size=cfg.finetune_batch, seq_len=seq_len,
                            lr=cfg.finetune_lr, eval_every=cfg.eval_every, eval_sequences=cfg.eval_sequences,
                            seed=cfg.seed, data={"path": cfg.corpus} if cfg.corpus else {})


def jobs(cfg: QuantizeBenchConfig) -> list[dict]:
    out = []
    for name, source in sources(cfg).items():
        if source.get("part") == "train":
            out.append(source)
        seq_len = source["setup"]["seq_len"] if "setup" in source else source["seq_len"]
        for method in cfg.methods:
            out.append({"part": "quantize", "model": name, "source": source, "method": method,
                        "finetune": asdict(finetune_config(cfg, seq_len)), "speed_batch": cfg.speed_batch,
                        "speed_repeats": cfg.speed_repeats})
        if cfg.finetune_tokens:
            out.append({"part": "control", "model": name, "source": source,
                        "finetune": asdict(finetune_config(cfg, seq_len))})
    return out


# ---------------------------------------------------------------------------------------------- measurements


def _source_folder(ctx: Context, source: dict) -> Path:
    if "path" in source:
        return Path(source["path"])
    folder = ctx.out_dir / "models" / f"{source['origin']}-{source['arch']}-{job_key(source)}" / "model"
    if ctx.log.get(source) is None or not (folder / "config.json").exists():
        raise ValueError(f"the model of {source['arch']} is missing: run the benchmark's train jobs first")
    return folder


def measure_quantize(job: dict, ctx: Context) -> dict:
    from ..train.text_finetune import load_checkpoint

    method, bits = parse_method(job["method"])
    source = _source_folder(ctx, job["source"])
    out = ctx.out_dir / "quantize" / f"{job['model']}-{job['method']}-{job_key(job)}"
    config = QuantizeConfig(finetune=QuantizeFinetune(**job["finetune"]))
    s = quantize_and_finetune(source, method, bits, out, config, resume=True, progress=ctx.progress)
    full = load_checkpoint(source)[0].float().eval()
    packed = load_quantized(out / "model")
    ids = torch.randint(0, full.config.vocab_size, (job["speed_batch"], job["finetune"]["seq_len"]),
                        generator=torch.Generator().manual_seed(0))

    def forward(model):
        with torch.no_grad():
            model(ids)

    t = measure_interleaved({"full": lambda: forward(full), "packed": lambda: forward(packed)},
                            repeats=job["speed_repeats"], budget_s=math.inf, device=torch.device("cpu"))
    tokens = ids.numel()
    return {"model": job["model"], "method": job["method"], "quantizer": s["quantizer"],
            "bits_per_weight": s["bits_per_weight"], "params": s["params"], "quantized_weights": s["quantized_weights"],
            "full_bits_per_byte": s["val_bits_per_byte_full_precision"],
            "ptq_bits_per_byte": s["val_bits_per_byte_quantized"],
            "qat_bits_per_byte": s["val_bits_per_byte_after_finetune"],
            "packed_bits_per_byte": s["val_bits_per_byte_packed"],
            "finetune_tokens": s["finetune_tokens"], "finetune_seconds": s["finetune_seconds"],
            "bytes_full": s["bytes_full_precision"], "bytes_packed": s["bytes_packed_file"],
            "full_tokens_per_s": tokens / t["full"].median_s, "packed_tokens_per_s": tokens / t["packed"].median_s,
            "threads": torch.get_num_threads()}


def measure_control(job: dict, ctx: Context) -> dict:
    """The float32 model fine-tuned exactly as the quantised ones are (tokens, optimizer, data order)."""
    from ..compress.quantize import finetune_train_config
    from ..train.text_finetune import load_checkpoint, text_data
    from ..train.trainer import Trainer

    model, tokenizer = load_checkpoint(_source_folder(ctx, job["source"]))
    ft = QuantizeFinetune(**job["finetune"])
    data = text_data(tokenizer, ft)
    model.float().eval()
    before = data.bits_per_byte(model)
    model.train()
    folder = ctx.out_dir / "control" / f"{job['model']}-{job_key(job)}"
    trainer = Trainer(model, data.train, data.val, finetune_train_config(ft, ctx.progress), out_dir=folder)
    fit = trainer.fit(resume=(folder / "checkpoint.pt").exists())
    trainer.close()
    model.eval()
    return {"model": job["model"], "full_bits_per_byte": before, "finetuned_bits_per_byte": data.bits_per_byte(model),
            "finetune_tokens": fit["step"] * ft.batch_size * ft.seq_len}


def measure(job: dict, ctx: Context) -> dict:
    return {"train": measure_train, "quantize": measure_quantize, "control": measure_control}[job["part"]](job, ctx)


# ------------------------------------------------------------------------------------------------ report


def rows_of(finished: Finished) -> list[dict]:
    return [r for j, r in finished if j["part"] == "quantize"]


def render_markdown(cfg: QuantizeBenchConfig, rows: list[dict], trained: list[dict],
                    controls: list[dict] | None = None) -> str:
    lines = ["# recurlab bench quantize", "",
             f"Straight-through fine-tuning: {cfg.finetune_tokens:,} tokens per quantised model (AdamW, betas 0.9 / "
             f"0.95, lr {cfg.finetune_lr:g} constant, no weight decay, clipping 2, batch {cfg.finetune_batch}); "
             f"bits per byte on {cfg.eval_sequences} validation windows; the same linear layers quantised by every "
             "method (the blocks' even-sized nn.Linear layers; embedding, norms and the tied head stay float32). "
             "Bits per weight count the codes, not the scales. Speed: forward tokens/s at batch "
             f"{cfg.speed_batch}, full precision vs packed, side by side.", ""]
    if trained:
        lines += [markdown_table(["model", "params", "val bits/byte", "training tokens"],
                                 [[t["arch"], f"{t['params']:,}", f"{t['val_bits_per_byte']:.3f}",
                                   f"{t['train_tokens']:,}"] for t in trained]), ""]
    if not rows:
        return "\n".join(lines + ["No finished quantisation yet.", ""])
    header = ["model", "method", "bits/weight", "full precision", "PTQ", "QAT", "packed", "QAT gap",
              "file MB (full -> packed)", "tokens/s (full / packed)"]
    body = [[r["model"], r["quantizer"], f"{r['bits_per_weight']:.2f}", f"{r['full_bits_per_byte']:.3f}",
             f"{r['ptq_bits_per_byte']:.3f}", f"{r['qat_bits_per_byte']:.3f}", f"{r['packed_bits_per_byte']:.3f}",
             f"{r['qat_bits_per_byte'] - r['full_bits_per_byte']:+.3f}",
             f"{r['bytes_full'] / 1e6:.1f} -> {r['bytes_packed'] / 1e6:.2f}",
             f"{r['full_tokens_per_s']:,.0f} / {r['packed_tokens_per_s']:,.0f}"] for r in rows]
    lines += ["## Validation bits per byte", "", markdown_table(header, body), ""]
    if controls:
        lines += ["The float32 control: each model fine-tuned without quantisation, with the same tokens and "
                  "optimizer (what plain extra training gives):", "",
                  markdown_table(["model", "float32", "float32 fine-tuned", "tokens"],
                                 [[c["model"], f"{c['full_bits_per_byte']:.3f}", f"{c['finetuned_bits_per_byte']:.3f}",
                                   f"{c['finetune_tokens']:,}"] for c in controls]), ""]
    lines += ["## Fairy2i's claim", "", f"The paper: {FAIRY2I_CLAIM}.", ""]
    claim_rows = []
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = {r["method"]: r for r in rows if r["model"] == model}
        for ours, theirs in (("fairy2i-2", "rtn-2"), ("fairy2i-2", "ternary"), ("fairy2i-2", "bitnet"),
                             ("fairy2i-1", "ternary"), ("fairy2i-1", "bitnet")):
            if ours in mine and theirs in mine:
                for stage in ("ptq", "qat"):
                    a, b = mine[ours][f"{stage}_bits_per_byte"], mine[theirs][f"{stage}_bits_per_byte"]
                    claim_rows.append([model, f"{ours} vs {theirs}", stage.upper(), f"{a:.3f} vs {b:.3f}",
                                       "yes" if a < b else "no"])
    if claim_rows:
        lines += [markdown_table(["model", "comparison", "stage", "bits/byte", "Fairy2i better?"], claim_rows), "",
                  "fairy2i-2 vs rtn-2 is the comparison at equal bits; ternary and bitnet have 1.58 bits, between "
                  "fairy2i-1 and fairy2i-2.", ""]
    return "\n".join(lines)


def report(cfg: QuantizeBenchConfig, finished: Finished) -> Report:
    rows = rows_of(finished)
    trained = [r for j, r in finished if j["part"] == "train"]
    controls = [r for j, r in finished if j["part"] == "control"]
    return Report(render_markdown(cfg, rows, trained, controls), {"rows": rows, "trained": trained,
                                                                  "controls": controls},
                  lambda path: plot_quantize(rows, path))


def plot_quantize(rows: list[dict], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in rows)) or ["(none)"]
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4.5), squeeze=False)
    for ax, model in zip(axes[0], models):
        mine = [r for r in rows if r["model"] == model]
        for r in mine:
            color = "tab:red" if r["method"].startswith("fairy2i") else "tab:blue"
            ax.scatter(r["bits_per_weight"], r["ptq_bits_per_byte"], color=color, marker="x")
            ax.scatter(r["bits_per_weight"], r["qat_bits_per_byte"], color=color, marker="o")
            ax.annotate(r["method"], (r["bits_per_weight"], r["qat_bits_per_byte"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        if mine:
            ax.axhline(mine[0]["full_bits_per_byte"], color="gray", linestyle="--", label="float32")
        ax.set_xlabel("bits per weight (codes)")
        ax.set_ylabel("validation bits per byte")
        ax.set_title(f"{model}: x after quantising, o after fine-tuning")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def label(job: dict) -> str:
    if job["part"] == "train":
        return f"train {job['arch']}"
    return f"{job['model']} {job.get('method', 'float32 control')}"


def summary(job: dict, result: dict) -> str:
    if job["part"] == "train":
        return f"trained {result['arch']}: {result['val_bits_per_byte']:.3f} bits per byte"
    if job["part"] == "control":
        return (f"{result['model']} float32 fine-tuned: {result['full_bits_per_byte']:.3f} -> "
                f"{result['finetuned_bits_per_byte']:.3f} bits per byte")
    return (f"{result['model']} {result['quantizer']}: {result['full_bits_per_byte']:.3f} -> PTQ "
            f"{result['ptq_bits_per_byte']:.3f} -> QAT {result['qat_bits_per_byte']:.3f} bits per byte")


BENCHMARK = Benchmark("quantize", QuantizeBenchConfig, jobs, measure, report, plot_file="quantize.png", label=label,
                      summary=summary)
