"""``recurlab quantize``: quantise a saved language model's weights, fine-tune it straight-through, save it packed.

    recurlab quantize --method fairy2i --bits 2 runs/lm-gla --out runs/lm-gla-w2 --set finetune.tokens=2000000
    summary = quantize_and_finetune("runs/lm-gla", "fairy2i", 2, "runs/lm-gla-w2", QuantizeConfig())
    model = load_quantized("runs/lm-gla-w2/model")          # a CausalLM with PackedLinear layers

Steps (:func:`quantize_and_finetune`):

1. load CHECKPOINT (a recurlab model folder or training run, or a Llama-family Hugging Face folder) and its
   tokenizer; split the text (the default corpus, or ``finetune.data``) as ``recurlab train`` does, and measure
   the full-precision model's validation bits per byte;
2. swap every quantisable linear layer of the blocks for a :class:`~recurlab.compress.layers.QuantizedLinear`
   of ``method`` / ``bits`` (:mod:`recurlab.compress.methods`) and measure bits per byte (post-training
   quantisation);
3. fine-tune all parameters for ``finetune.tokens`` tokens with the straight-through estimator through the
   :class:`~recurlab.train.Trainer` (resumable from ``OUT/finetune/checkpoint.pt``): AdamW, betas (0.9, 0.95),
   no weight decay, gradient clipping at 2 as Fairy2i's official QAT; a constant learning rate (``lr``; theirs
   is 3e-5 with warm-up and cosine stages over 30k steps of a 7B model);
4. pack (2 or 4 bits per code), measure bits per byte again (equal to step 3's: the packed layer rebuilds the
   same weights), save ``OUT/model`` (format ``recurlab-quantized-lm``: the model config, the method, the
   quantised layers, the tokenizer, packed codes and scales in model.safetensors) and ``OUT/quantize_summary.json``
   with the sizes.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..configs import check_fields, param
from ..files import write_json
from ..train.run_folder import RunFolder
from ..train.text_finetune import TextFinetune, model_and_tokenizer, record_request, text_data
from .layers import empty_packed_model, pack_model, quantize_model
from .methods import get_quantizer

FORMAT = "recurlab-quantized-lm"
FORMAT_VERSION = 1
SUMMARY = "quantize_summary.json"


@dataclass
class QuantizeFinetune(TextFinetune):
    """The straight-through fine-tuning after quantisation (``--set finetune.KEY=VALUE``): the settings of
    :class:`~recurlab.train.text_finetune.TextFinetune` (tokens: 0 is post-training quantisation only), with AdamW
    at betas (0.9, 0.95) and no weight decay as Fairy2i's official training, gradient clipping at 2 as theirs,
    and a constant learning rate ``lr`` (theirs: 3e-5 with warm-up and cosine stages, for a 7B model)."""

    lr: float = param(3e-4, gt=0)
    grad_clip: float = param(2.0, ge=0)


@dataclass
class QuantizeConfig:
    """``recurlab quantize``'s settings (``--set KEY=VALUE``; the method and bits are ``--method`` / ``--bits``)."""

    finetune: QuantizeFinetune = param(factory=QuantizeFinetune)

    def __post_init__(self):
        check_fields(self)


def finetune_train_config(config: QuantizeFinetune, progress: bool):
    """The Trainer's settings of the straight-through fine-tuning (also the float32 control of bench quantize)."""
    from ..train.config import TrainConfig

    return TrainConfig(steps=config.steps, batch_size=config.batch_size, lr=config.lr, warmup_steps=0,
                       min_lr_ratio=1.0, weight_decay=0.0, betas=(0.9, 0.95), grad_clip=config.grad_clip,
                       eval_every=min(config.eval_every, config.steps), eval_batch_size=16, seed=config.seed,
                       precision="fp32", progress=progress)


def quantize_and_finetune(checkpoint, method: str, bits: int | None, out: str | Path,
                          config: QuantizeConfig | None = None, tokenizer=None, resume: bool = False,
                          overwrite: bool = False, progress: bool = True) -> dict:
    """Quantise ``checkpoint`` with ``method`` / ``bits``, fine-tune for ``config.finetune.tokens`` tokens, pack,
    save OUT/model and OUT/quantize_summary.json, and return the summary (module docstring).

    checkpoint: a folder or a CausalLM (then give its ``tokenizer``). resume: continue an interrupted fine-tuning
    (a finished OUT returns its summary). overwrite: start again in an OUT that holds a run."""
    from ..models.causal_lm import CausalLM

    config = config or QuantizeConfig()
    quantizer = get_quantizer(method, bits)  # checks method and bits first
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other: continue the run, or start it again")
    out = Path(out)
    if (out / SUMMARY).exists() and not overwrite:
        if resume:
            return json.loads((out / SUMMARY).read_text())
        raise ValueError(f"OUT {out} already holds a quantised model ({SUMMARY}); choose another folder or "
                         f"overwrite (--overwrite)")
    model, tokenizer = model_and_tokenizer(checkpoint, tokenizer)
    ft = config.finetune
    run = RunFolder(out / "finetune", resume and (out / "finetune" / "checkpoint.pt").exists(), overwrite)
    if ft.tokens:
        run.check()
    record_request(out, "quantize_request.json", {"method": method, "bits": bits, "config": dataclasses.asdict(config)},
                   run.resume, "give the same --method, --bits and --set, or --overwrite")
    data = text_data(tokenizer, ft)
    model.float().eval()
    full_bpb = data.bits_per_byte(model)
    full_bytes = 4 * sum(p.numel() for p in model.parameters())
    names = quantize_model(model, quantizer)
    quantized_weights = sum(model.get_submodule(n).weight.numel() for n in names)
    ptq_bpb = data.bits_per_byte(model)
    print(f"{quantizer.name}: {len(names)} linear layers ({quantized_weights:,} of "
          f"{full_bytes // 4:,} parameters); validation bits per byte {full_bpb:.3f} -> {ptq_bpb:.3f} before "
          f"fine-tuning", file=sys.stderr, flush=True)
    fit: dict[str, Any] = {"step": 0, "seconds": 0.0}
    if ft.tokens:
        from ..train.trainer import Trainer

        model.train()
        trainer = Trainer(model, data.train, data.val, finetune_train_config(ft, progress), out_dir=out / "finetune")
        fit = trainer.fit(resume=run.resume, overwrite=overwrite)
        trainer.close()
    model.eval()
    qat_bpb = data.bits_per_byte(model)
    pack_model(model)
    packed_bpb = data.bits_per_byte(model)
    save_quantized(model, out / "model", tokenizer, method, bits, names)
    summary = {
        "method": method, "bits": bits, "quantizer": quantizer.name, "bits_per_weight": quantizer.bits,
        "source": None if isinstance(checkpoint, CausalLM) else str(checkpoint),
        "quantized_layers": len(names), "quantized_weights": quantized_weights, "params": full_bytes // 4,
        "finetune_tokens": fit["step"] * ft.batch_size * ft.seq_len, "finetune_steps": fit["step"],
        "finetune_seconds": fit["seconds"],
        "val_bits_per_byte_full_precision": full_bpb, "val_bits_per_byte_quantized": ptq_bpb,
        "val_bits_per_byte_after_finetune": qat_bpb, "val_bits_per_byte_packed": packed_bpb,
        "bytes_full_precision": full_bytes, "bytes_packed_file": (out / "model" / "model.safetensors").stat().st_size,
        "val_tokens": data.val.inputs.numel(), "config": dataclasses.asdict(config),
    }
    write_json(out / SUMMARY, summary)
    return summary


def save_quantized(model, directory: str | Path, tokenizer, method: str, bits: int | None, names: list[str]) -> Path:
    """A packed model (after :func:`~recurlab.compress.layers.pack_model`) as config.json + model.safetensors."""
    from ..models.pretrained import save_model_files

    fields = {"model": model.config.to_dict(), "quantization": {"method": method, "bits": bits, "layers": names}}
    if tokenizer is not None:
        fields["tokenizer"] = tokenizer.to_dict()
    return save_model_files(model, directory, FORMAT, FORMAT_VERSION, fields)


def load_quantized(directory: str | Path, map_location: str | torch.device = "cpu"):
    """The packed CausalLM saved by :func:`save_quantized` (eval mode), its weights checked against config.json."""
    from ..models import CausalLM, ModelConfig
    from ..models.pretrained import load_model_files, read_config

    meta = read_config(directory, FORMAT, (FORMAT_VERSION,))
    spec = meta["quantization"]
    with torch.random.fork_rng(devices=[]):  # the fresh model's random init is overwritten by the load
        model = empty_packed_model(CausalLM(ModelConfig.from_dict(meta["model"])), spec["layers"], spec["method"],
                                   spec["bits"])
    return load_model_files(model, directory, meta, map_location, torch.float32)


def load_quantized_tokenizer(directory: str | Path):
    from ..models.pretrained import read_config
    from ..tasks.text import tokenizer_from_dict

    spec = read_config(directory, FORMAT, (FORMAT_VERSION,)).get("tokenizer")
    return tokenizer_from_dict(spec) if spec else None
