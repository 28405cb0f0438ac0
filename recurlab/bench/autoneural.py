"""``recurlab bench autoneural``: AutoNeural's integer-friendly design choices, measured at recurlab's scale.

AutoNeural (Nexa AI 2025) co-designs a vision-language model for integer-only NPU inference and claims: (1) a
MobileNet-style depthwise-separable vision encoder has up to 7x lower quantisation error than a ViT encoder;
(2) a language backbone of gated short convolutions with few attention layers (Liquid AI's LFM2 layout) decodes
about 3x faster with 4x longer context than an attention backbone, with no large KV cache. This benchmark:

    language   ``presets`` (default lm-attention and lm-autoneural, the same parameters; trained with their preset
               recipe, or the saved models in ``checkpoints``): validation bits per byte; greedy decoding speed and
               the decoding state's bytes after ``decode_prompt`` + ``decode_tokens`` tokens, side by side
    integer    each language model with every nn.Linear an INT8 x INT8 -> int32 layer (recurlab/compress/int8.py;
               and 4 bits, simulated): bits per byte, the SQNR of the final features, forward and decoding speed
               against float32 side by side
    encoders   ``encoders`` (default resnet-dwconv, the depthwise-separable bottleneck network, and vit) trained on
               the same images (recurlab.vision.train), then post-training quantised, weights per output channel
               and the inputs of every linear / conv layer per token, to each of ``encoder_bits``: top-1 and the
               SQNR of the features the classifier reads

Writes results.json, results.md and autoneural.png. Every training is a job of the run log and resumes.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..configs import check_fields, param
from ..train.lm import PRESETS
from ..vision.data import NAMES as VISION_SETS
from ..vision.zoo import MODELS as VISION_MODELS
from .harness import Benchmark, Context, Finished, Report, job_key
from .report import markdown_table
from .timing import decode_side_by_side, measure_interleaved

CLAIMS = {"encoder": "a depthwise-separable (MobileNet-style) encoder: up to 7x lower quantisation error than ViT",
          "decode": "gated short convolutions + few attention layers: ~3x faster decoding, 4x longer context, "
                    "no large KV cache"}


@dataclass
class AutoNeuralBenchConfig:
    presets: list[str] = param(factory=lambda: ["lm-attention", "lm-autoneural"], choices=tuple(PRESETS))
    checkpoints: dict[str, str] = param(factory=dict)  # name -> saved model folder: used instead of presets
    train_steps: int | None = param(None, ge=1)  # the presets' training steps (None: each preset's own)
    eval_sequences: int = param(64, ge=1)
    decode_prompt: int = param(2048, ge=1)
    decode_tokens: int = param(2048, ge=1)
    decode_rounds: int = param(3, ge=1)
    speed_batch: int = param(4, ge=1)
    speed_repeats: int = param(5, ge=1)
    int_bits: list[int] = param(factory=lambda: [8, 4])
    # encoder -> parameter target of recurlab.vision.zoo; resnet-dwconv takes resnet-conv's widths, so its target is
    # higher: both land near 0.2 M parameters (232,660 and 205,898 at 32 x 32)
    encoders: dict[str, int] = param(factory=lambda: {"resnet-dwconv": 400_000, "vit": 200_000})
    encoder_dataset: str = param("mnist5k", choices=VISION_SETS)
    encoder_image_size: int = param(32, ge=8)
    encoder_epochs: int = param(30, ge=1)  # the vision bench recipe's: a ViT needs it (10 epochs left it at 29% on mnist5k)
    encoder_bits: list[int] = param(factory=lambda: [8, 4])
    seed: int = param(0, ge=0)

    def __post_init__(self):
        check_fields(self)
        if any(not isinstance(b, int) or not 2 <= b <= 8 for b in [*self.int_bits, *self.encoder_bits]):
            raise ValueError(f"int_bits and encoder_bits must be ints in [2, 8], got {self.int_bits}, {self.encoder_bits}")
        if not (self.presets or self.checkpoints or self.encoders):
            raise ValueError("presets, checkpoints and encoders are all empty: nothing to measure")
        unknown = [name for name in self.encoders if name not in VISION_MODELS]
        if unknown:
            raise ValueError(f"encoders names unknown model(s) {unknown}; valid: {', '.join(VISION_MODELS)}")

    @classmethod
    def quick(cls, **overrides) -> "AutoNeuralBenchConfig":
        """Minutes on 2 cores: the presets trained for 60 steps, short decoding, small encoders on the digits set."""
        return cls(**{"train_steps": 60, "eval_sequences": 16, "decode_prompt": 128, "decode_tokens": 128,
                      "decode_rounds": 2, "speed_repeats": 2, "encoder_dataset": "digits",
                      "encoders": {"resnet-dwconv": 60_000, "vit": 30_000}, "encoder_epochs": 3, **overrides})


# ------------------------------------------------------------------------------------------------ jobs


def train_job(cfg: AutoNeuralBenchConfig, preset: str) -> dict:
    setup = copy.deepcopy(PRESETS[preset])
    setup["train"]["seed"] = cfg.seed
    if cfg.train_steps is not None:
        setup["train"]["steps"] = cfg.train_steps
        setup["train"]["eval_every"] = min(setup["train"]["eval_every"], cfg.train_steps)
    setup["data"] = {}
    return {"part": "train", "arch": preset, "origin": "preset", "setup": setup, "eval_sequences": cfg.eval_sequences,
            "seed": cfg.seed}


def sources(cfg: AutoNeuralBenchConfig) -> dict[str, dict]:
    """name -> a train job of this run, or {"path": a saved model folder}."""
    if cfg.checkpoints:
        for name, folder in cfg.checkpoints.items():
            if not (Path(folder) / "config.json").exists() and not (Path(folder) / "model" / "config.json").exists():
                raise ValueError(f"checkpoints.{name}: {folder} holds no saved model (config.json)")
        return {name: {"path": str(folder)} for name, folder in cfg.checkpoints.items()}
    return {preset: train_job(cfg, preset) for preset in cfg.presets}


def jobs(cfg: AutoNeuralBenchConfig) -> list[dict]:
    models = sources(cfg)
    out = [s for s in models.values() if s.get("part") == "train"]
    if models:  # presets=[] and no checkpoints: the encoders alone
        out.append({"part": "decode", "models": models, "prompt": cfg.decode_prompt, "tokens": cfg.decode_tokens,
                    "rounds": cfg.decode_rounds, "seed": cfg.seed})
    for name, source in models.items():
        out.append({"part": "integer", "model": name, "source": source, "bits": list(cfg.int_bits),
                    "eval_sequences": cfg.eval_sequences, "speed_batch": cfg.speed_batch,
                    "speed_repeats": cfg.speed_repeats, "decode_tokens": min(cfg.decode_tokens, 512),
                    "decode_rounds": cfg.decode_rounds, "seed": cfg.seed})
    for encoder, target in cfg.encoders.items():
        training = {"model": encoder, "dataset": cfg.encoder_dataset, "image_size": cfg.encoder_image_size,
                    "params_target": target, "epochs": cfg.encoder_epochs, "seed": cfg.seed}
        out.append({"part": "encoder", "encoder": encoder, "training": training, "bits": list(cfg.encoder_bits)})
    return out


# ---------------------------------------------------------------------------------------------- measurements


def _load(ctx: Context, source: dict):
    """(model, tokenizer) of a source: a saved folder, or the model a train job of this run saved."""
    from ..train.text_finetune import model_and_tokenizer
    from .convert import _model_folder

    folder = Path(source["path"]) if "path" in source else _model_folder(ctx, source)
    model, tokenizer = model_and_tokenizer(folder)
    return model.float().eval(), tokenizer


def _text(tokenizer, eval_sequences: int):
    from ..train.text_finetune import TextFinetune, text_data

    return text_data(tokenizer, TextFinetune(seq_len=256, eval_sequences=eval_sequences))


def measure_decode(job: dict, ctx: Context) -> dict:
    models = {name: _load(ctx, source)[0] for name, source in job["models"].items()}
    out = decode_side_by_side(models, job["prompt"], job["tokens"], job["rounds"], job["seed"])
    out["params"] = {name: sum(p.numel() for p in m.parameters()) for name, m in models.items()}
    return out


def measure_integer(job: dict, ctx: Context) -> dict:
    from ..compress.int8 import integer_model, sqnr_db

    model, tokenizer = _load(ctx, job["source"])
    data = _text(tokenizer, job["eval_sequences"])
    windows = data.val.inputs[: min(8, len(data.val.inputs))]
    with torch.no_grad():
        reference = model.features(windows)[0]
    rows = [{"bits": 32, "bits_per_byte": data.bits_per_byte(model), "sqnr_db": None}]  # None: the reference
    quantized = {}
    for bits in job["bits"]:
        q = integer_model(model, bits)
        quantized[bits] = q
        with torch.no_grad():
            features = q.features(windows)[0]
        rows.append({"bits": bits, "bits_per_byte": data.bits_per_byte(q), "sqnr_db": sqnr_db(reference, features)})
    speed = {}
    if 8 in quantized:
        ids = torch.randint(0, model.config.vocab_size, (job["speed_batch"], 256),
                            generator=torch.Generator().manual_seed(job["seed"]))

        def forward(m):
            with torch.no_grad():
                m(ids)

        t = measure_interleaved({"float32": lambda: forward(model), "int8": lambda: forward(quantized[8])},
                                repeats=job["speed_repeats"], budget_s=math.inf, device=torch.device("cpu"))
        decode = decode_side_by_side({"float32": model, "int8": quantized[8]}, 256, job["decode_tokens"],
                                     job["decode_rounds"], job["seed"])
        speed = {"forward_tokens_per_s": {k: ids.numel() / v.median_s for k, v in t.items()},
                 "decode_tokens_per_s": decode["tokens_per_s"]}
    return {"model": job["model"], "rows": rows, **speed, "threads": torch.get_num_threads()}


def _features_and_logits(model: nn.Module, images: torch.Tensor, batch_size: int = 256):
    """(features the last linear layer reads, logits) of ``images`` (already normalised)."""
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    seen: list[torch.Tensor] = []
    handle = last.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().flatten(1)))
    try:
        with torch.no_grad():
            logits = torch.cat([model(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])
    finally:
        handle.remove()
    return torch.cat(seen), logits


def measure_encoder(job: dict, ctx: Context) -> dict:
    from ..compress.int8 import ACTIVATION_SCHEMES, fake_quantize_linear_inputs, sqnr_db
    from ..vision.saved import load_classifier
    from ..vision.train import VisionTraining, load_data, train_vision

    cfg = VisionTraining(**job["training"])
    folder = ctx.out_dir / "encoders" / f"{job['encoder']}-{job_key(job)}"
    summary = train_vision(cfg, folder, resume=(folder / "checkpoint.pt").exists(), progress=ctx.progress)
    classifier = load_classifier(folder / "model")
    model = classifier.model.eval()
    data = load_data(cfg.dataset, cfg.image_size, cfg.max_train, cfg.max_test)
    images, labels = data["test"]
    images = (images - classifier.mean) / classifier.std
    features, logits = _features_and_logits(model, images)
    rows = [{"bits": 32, "activations": None, "top1": (logits.argmax(1) == labels).float().mean().item() * 100,
             "sqnr_db": None}]
    # static per-tensor activation ranges come from 256 training images spread over the split (its classes are
    # in blocks), never from the test images scored here
    train = data["train"][0]
    train_images = (train[:: max(1, len(train) // 256)][:256] - classifier.mean) / classifier.std
    for bits in job["bits"]:
        for scheme in ACTIVATION_SCHEMES:
            calibration = train_images if scheme == "tensor" else None
            f_q, l_q = _features_and_logits(fake_quantize_linear_inputs(model, bits, scheme, calibration), images)
            rows.append({"bits": bits, "activations": scheme,
                         "top1": (l_q.argmax(1) == labels).float().mean().item() * 100,
                         "sqnr_db": sqnr_db(features, f_q), "logits_sqnr_db": sqnr_db(logits, l_q)})
    return {"encoder": job["encoder"], "params": summary["params"], "dataset": cfg.dataset, "rows": rows}


def measure(job: dict, ctx: Context) -> dict:
    from .convert import measure_train  # trains a preset and scores it, as bench convert and quantize do

    return {"train": measure_train, "decode": measure_decode, "integer": measure_integer,
            "encoder": measure_encoder}[job["part"]](job, ctx)


# ------------------------------------------------------------------------------------------------ report


def _precision(row: dict) -> str:
    if row["bits"] == 32:
        return "float32"
    scheme = row.get("activations") or "token"
    return f"W{row['bits']}A{row['bits']} ({'per token' if scheme == 'token' else 'per tensor'})"


def _db(value: float) -> str:
    return "exact" if value is None or math.isinf(value) else f"{value:.1f}"


def render_markdown(cfg: AutoNeuralBenchConfig, finished: Finished) -> str:
    lines = ["# recurlab bench autoneural", ""]
    trained = [r for j, r in finished if j["part"] == "train"]
    if trained:
        lines += [markdown_table(["model", "params", "val bits/byte", "training tokens"],
                                 [[t["arch"], f"{t['params']:,}", f"{t['val_bits_per_byte']:.3f}",
                                   f"{t['train_tokens']:,}"] for t in trained]), ""]
    decode = next((r for j, r in finished if j["part"] == "decode"), None)
    if decode:
        names = list(decode["tokens_per_s"])
        base = decode["tokens_per_s"].get("lm-attention")
        lines += [f"## Decoding: {cfg.decode_tokens:,} tokens after a {cfg.decode_prompt:,}-token prompt, batch 1, "
                  f"greedy, {decode['threads']} threads, side by side", "",
                  markdown_table(["model", "params", "tokens/s", "vs lm-attention", "state at the end (MB)"],
                                 [[n, f"{decode['params'][n]:,}", f"{decode['tokens_per_s'][n]:,.0f}",
                                   f"{decode['tokens_per_s'][n] / base:.2f}x" if base else "",
                                   f"{decode['state_bytes'][n] / 1e6:.2f}"] for n in names]), ""]
    integer = [r for j, r in finished if j["part"] == "integer"]
    if integer:
        body = []
        for r in integer:
            for row in r["rows"]:
                body.append([r["model"], "float32" if row["bits"] == 32 else f"W{row['bits']}A{row['bits']}",
                             f"{row['bits_per_byte']:.3f}", _db(row["sqnr_db"])])
        lines += ["## Integer linear layers (weights per channel, activations per token; int32 products at 8 bits)",
                  "", markdown_table(["model", "precision", "val bits/byte", "features SQNR (dB)"], body), ""]
        speed = [[r["model"], f"{r['forward_tokens_per_s']['float32']:,.0f}", f"{r['forward_tokens_per_s']['int8']:,.0f}",
                  f"{r['decode_tokens_per_s']['float32']:,.0f}", f"{r['decode_tokens_per_s']['int8']:,.0f}"]
                 for r in integer if "forward_tokens_per_s" in r]
        if speed:
            lines += [markdown_table(["model", "forward tok/s float32", "forward tok/s int8", "decode tok/s float32",
                                      "decode tok/s int8"], speed), ""]
    encoders = [r for j, r in finished if j["part"] == "encoder"]
    if encoders:
        body = [[r["encoder"], f"{r['params']:,}", _precision(row), f"{row['top1']:.1f}", _db(row["sqnr_db"])]
                for r in encoders for row in r["rows"]]
        lines += [f"## Encoders on {encoders[0]['dataset']}: post-training quantisation (weights per output channel; "
                  "activations per token, dynamic, or per tensor, static from 256 training images)", "",
                  markdown_table(["encoder", "params", "precision", "top-1 %", "features SQNR (dB)"], body), ""]
    lines += ["## AutoNeural's claims", ""] + [f"- {v}" for v in CLAIMS.values()] + [""]
    return "\n".join(lines)


def _finite(value):
    """JSON has no infinity: an SQNR of identical features (inf) is written as None, as the float32 rows are."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return None if isinstance(value, float) and math.isinf(value) else value


def report(cfg: AutoNeuralBenchConfig, finished: Finished) -> Report:
    finished = [(job, _finite(result)) for job, result in finished]
    data = {part: [r for j, r in finished if j["part"] == part] for part in ("train", "decode", "integer", "encoder")}
    return Report(render_markdown(cfg, finished), data, lambda path: plot(data, path))


def plot(data: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    for r in data["encoder"]:
        for scheme, style in (("token", "-"), ("tensor", "--")):
            rows = [row for row in r["rows"] if row["bits"] != 32 and (row.get("activations") or "token") == scheme]
            if rows:
                ax.plot([row["bits"] for row in rows], [row["sqnr_db"] for row in rows], style, marker="o",
                        label=f"{r['encoder']}, activations per {scheme}")
    ax.set(xlabel="bits (weights and activations)", ylabel="features SQNR (dB)", title="encoders: quantisation error")
    ax = axes[1]
    for r in data["integer"]:
        bits = [row["bits"] for row in r["rows"]]
        ax.plot(bits, [row["bits_per_byte"] for row in r["rows"]], marker="o", label=r["model"])
    ax.set(xlabel="bits (32 = float)", ylabel="val bits per byte", title="language models: integer linear layers")
    ax = axes[2]
    if data["decode"]:
        d = data["decode"][0]
        names = list(d["tokens_per_s"])
        ax.bar(names, [d["tokens_per_s"][n] for n in names], color="tab:blue")
        ax.set(ylabel="decode tokens/s (batch 1)", title="decoding speed (state MB on the bars)")
        for i, n in enumerate(names):
            ax.annotate(f"{d['state_bytes'][n] / 1e6:.1f} MB", (i, d["tokens_per_s"][n]), ha="center", fontsize=8)
    for ax in axes[:2]:
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # a partial run may have nothing to draw here yet
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def label(job: dict) -> str:
    return {"train": lambda: f"train {job.get('arch')}", "decode": lambda: "decode side by side",
            "integer": lambda: f"integer {job.get('model')}", "encoder": lambda: f"encoder {job.get('encoder')}"}[
        job["part"]]()


def summary(job: dict, result: dict) -> str:
    if job["part"] == "train":
        return f"trained {result['arch']}: {result['val_bits_per_byte']:.3f} bits per byte"
    if job["part"] == "decode":
        return "decode tokens/s: " + ", ".join(f"{k} {v:,.0f}" for k, v in result["tokens_per_s"].items())
    if job["part"] == "integer":
        return f"{result['model']}: " + ", ".join(f"{r['bits']} bits {r['bits_per_byte']:.3f}" for r in result["rows"])
    return f"{result['encoder']}: " + ", ".join(f"{r['bits']} bits top-1 {r['top1']:.1f}" for r in result["rows"])


BENCHMARK = Benchmark("autoneural", AutoNeuralBenchConfig, jobs, measure, report, plot_file="autoneural.png",
                      label=label, summary=summary)
