"""Convert a saved attention model and fine-tune it with LoRA: ``recurlab convert`` and what a benchmark calls.

    summary = convert_and_finetune("runs/lm-attention/model", "liger-gla", "runs/liger",
                                   override(ConvertConfig(), ["finetune.tokens=200000"]), resume=True)

Steps (each in :func:`convert_and_finetune`):

1. load CHECKPOINT (a recurlab model folder or training run, or a Llama / Mistral / Qwen2 Hugging Face
   folder) and its tokenizer; build the fine-tuning text (the default corpus, or ``finetune.data``) split
   as ``recurlab train`` splits it;
2. convert (:func:`recurlab.convert.liger.convert`) and measure validation bits per byte of the original
   and of the converted model;
3. fine-tune for ``finetune.tokens`` tokens through recurlab's :class:`~recurlab.train.Trainer` (resumable
   from ``OUT/finetune/checkpoint.pt``): LoRA (rank 8, alpha 8) on W_q, W_k, W_v of every converted
   layer, AdamW at a constant 1e-3 (weight decay 0.01: torch's default, which the authors' optimizer
   keeps), gradient clipping at 1, as the authors' fine-tuning. Only the LoRA matrices are trained (the
   authors' ``get_peft_model`` freezes everything else); the ``gla`` baseline also trains its new gate,
   which would otherwise stay random;
4. merge the LoRA updates into the weights, measure bits per byte again, save ``OUT/model``
   (``save_pretrained`` with the tokenizer) and ``OUT/convert_summary.json``.

A finished OUT (a summary) is returned as it is with ``resume``; starting over needs ``overwrite``.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..configs import check_fields, param
from ..files import write_json
from ..models.causal_lm import CausalLM
from ..train.config import TrainConfig
from ..train.run_folder import RunFolder
from ..train.text_finetune import (TextFinetune, load_checkpoint, model_and_tokenizer, read_json,  # noqa: F401
                                   record_request, text_data)
from .liger import check_attention_model, check_target, convert, new_parameter_names
from .lora import add_lora, lora_parameters, merge_lora

LORA_TARGETS = ("q_proj", "k_proj", "v_proj")
SUMMARY = "convert_summary.json"


@dataclass
class FinetuneConfig(TextFinetune):
    """LoRA fine-tuning after the conversion (``--set finetune.KEY=VALUE``): :class:`TextFinetune`'s settings
    (tokens, batch_size, seq_len, lr, grad_clip, eval_every, eval_sequences, seed, val_fraction, data) with the
    authors' defaults (lr 1e-3 constant, clipping 1.0), and

    Attributes:
        weight_decay: AdamW's (torch's default 0.01, which the authors' optimizer keeps).
        rank, alpha: LoRA's rank and scale (alpha / rank multiplies B A; the authors' peft default: 8, 8).
    """

    lr: float = param(1e-3, gt=0)
    grad_clip: float = param(1.0, ge=0)
    weight_decay: float = param(0.01, ge=0)
    rank: int = param(8, ge=1)
    alpha: float = param(8.0, gt=0)


@dataclass
class ConvertConfig:
    """``recurlab convert``'s settings (``--set KEY=VALUE``; the target is ``--to``).

    Attributes:
        window: Liger Attention's sliding window in tokens (the authors': 64).
        gate_rank: the ``gla`` baseline's random low-rank gate (GLA's: 16).
        seed: draws the ``gla`` baseline's gate.
        finetune: the LoRA fine-tuning (:class:`FinetuneConfig`).
    """

    window: int = param(64, ge=1)
    gate_rank: int = param(16, ge=1)
    seed: int = param(0, ge=0)
    finetune: FinetuneConfig = param(factory=FinetuneConfig)

    def __post_init__(self):
        check_fields(self)


def prepare_lora(model: CausalLM, config: FinetuneConfig) -> list[str]:
    """Freeze ``model``, wrap W_q, W_k, W_v of every mixer in LoRA (seeded by config.seed) and unfreeze the LoRA
    matrices and any parameter the conversion added (the gla baseline's gate); returns the trainable names."""
    new = set(new_parameter_names(model))
    for name, p in model.named_parameters():
        p.requires_grad_(name in new)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        add_lora(model, LORA_TARGETS, config.rank, config.alpha)
    return [name for name, p in model.named_parameters() if p.requires_grad]


def finetune_train_config(config: FinetuneConfig, progress: bool) -> TrainConfig:
    """The Trainer's settings: constant learning rate (no warmup, min_lr_ratio 1), AdamW's default betas."""
    return TrainConfig(steps=config.steps, batch_size=config.batch_size, lr=config.lr, warmup_steps=0,
                       min_lr_ratio=1.0, weight_decay=config.weight_decay, betas=(0.9, 0.999),
                       grad_clip=config.grad_clip, eval_every=min(config.eval_every, config.steps),
                       eval_batch_size=16, seed=config.seed, precision="fp32", progress=progress)


def convert_and_finetune(checkpoint: str | Path | CausalLM, to: str, out: str | Path,
                         config: ConvertConfig | None = None, tokenizer=None, resume: bool = False,
                         overwrite: bool = False, progress: bool = True) -> dict:
    """Convert ``checkpoint`` to ``to``, fine-tune with LoRA for ``config.finetune.tokens`` tokens, merge, save
    OUT/model and OUT/convert_summary.json, and return the summary (see the module docstring).

    checkpoint: a folder (see :func:`load_checkpoint`) or a CausalLM (then give its ``tokenizer``).
    resume: continue an interrupted fine-tuning from OUT/finetune/checkpoint.pt (a fresh start when there is
    none; a finished OUT returns its summary). overwrite: start again in an OUT that holds a run."""
    config = config or ConvertConfig()
    check_target(to)
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other: continue the run, or start it again")
    out = Path(out)
    if (out / SUMMARY).exists() and not overwrite:
        if resume:
            return read_json(out / SUMMARY)
        raise ValueError(f"OUT {out} already holds a converted model ({SUMMARY}); choose another folder or "
                         f"overwrite (--overwrite)")
    model, tokenizer = model_and_tokenizer(checkpoint, tokenizer)
    check_attention_model(model)
    ft = config.finetune
    run = RunFolder(out / "finetune", resume and (out / "finetune" / "checkpoint.pt").exists(), overwrite)
    if ft.tokens:
        run.check()  # before the request is recorded: a refused start leaves the folder's record as it was
    _check_same_request(out, {"to": to, "config": dataclasses.asdict(config)}, run.resume)
    data = text_data(tokenizer, ft)
    params_before = sum(p.numel() for p in model.parameters())
    original_bpb = data.bits_per_byte(model)
    converted = convert(model, to, config.window, config.gate_rank, config.seed)
    converted_params = sum(p.numel() for p in converted.parameters())
    before_bpb = data.bits_per_byte(converted)
    print(f"converted to {to}: {converted_params:,} parameters (the original: {params_before:,}); validation "
          f"bits per byte {original_bpb:.3f} -> {before_bpb:.3f}", file=sys.stderr, flush=True)

    trainable = prepare_lora(converted, ft)
    lora_count = sum(p.numel() for p in lora_parameters(converted))
    trainable_count = sum(p.numel() for p in converted.parameters() if p.requires_grad)
    fit: dict[str, Any] = {"step": 0, "seconds": 0.0}
    if ft.tokens:
        from ..train.trainer import Trainer

        converted.train()
        trainer = Trainer(converted, data.train, data.val, finetune_train_config(ft, progress), out_dir=out / "finetune")
        fit = trainer.fit(resume=run.resume, overwrite=overwrite)
        trainer.close()
    merge_lora(converted)
    for p in converted.parameters():
        p.requires_grad_(True)
    converted.eval()
    after_bpb = data.bits_per_byte(converted)
    converted.save_pretrained(out / "model", tokenizer)
    summary = {
        "to": to, "source": str(checkpoint) if not isinstance(checkpoint, CausalLM) else None,
        "params_before": params_before, "params_after": sum(p.numel() for p in converted.parameters()),
        "lora_params": lora_count, "trainable_params": trainable_count, "trainable": _group_names(trainable),
        "finetune_tokens": fit["step"] * ft.batch_size * ft.seq_len, "finetune_steps": fit["step"],
        "finetune_seconds": fit["seconds"],
        "original_val_bits_per_byte": original_bpb, "val_bits_per_byte_before_finetune": before_bpb,
        "val_bits_per_byte_after_finetune": after_bpb, "val_tokens": data.val.inputs.numel(),
        "config": dataclasses.asdict(config),
    }
    write_json(out / SUMMARY, summary)
    return summary


def _check_same_request(out: Path, request: dict, resume: bool) -> None:
    record_request(out, "convert_request.json", request, resume,
                   "give the same --to and --set, or --overwrite")


def _group_names(names: list[str]) -> list[str]:
    """Parameter names with the block index replaced by *, deduplicated (depth.blocks.*.mixer.q_proj.lora_A)."""
    import re

    return sorted({re.sub(r"\.\d+\.", ".*.", name) for name in names})
