"""Training hyperparameters, one dataclass that round-trips through JSON."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from ..configs import check_fields, param


@dataclass
class TrainConfig:
    """How to train. Every field is checked on construction (type and range; errors name the key).

    Attributes:
        steps: optimizer steps in total.
        batch_size: examples per step, over all processes (each of W processes takes batch_size / W).
        lr: peak learning rate, reached after warmup, then cosine decay to lr * min_lr_ratio.
        warmup_steps: linear warmup from 0.
        weight_decay, betas: AdamW's. Matrices are decayed (the embedding, and the tied head with it, as in
            nanoGPT); biases, norm gains and parameters marked ``no_weight_decay`` are not (see Trainer).
        decay: "matrices" (the above) or "all": every parameter in one AdamW group with weight_decay
            (Zoology's ``AdamW(model.parameters(), weight_decay=...)``).
        schedule: "warmup_cosine" (linear warmup, then cosine to lr * min_lr_ratio over the steps) or
            "epoch_cosine" (Zoology's ``CosineAnnealingLR(T_max=epochs, eta_min=0)`` stepped once per epoch:
            constant within an epoch, lr * (1 + cos(π e / epochs)) / 2 in epoch e, epochs = steps / steps per
            epoch; warmup_steps and min_lr_ratio unused).
        grad_clip: clip the global gradient norm to this (0: off).
        eval_every: evaluate every this many steps (and at the end).
        eval_batch_size: examples per evaluation batch.
        early_stop_accuracy: stop once the evaluation accuracy reaches this (None: never).
        checkpoint_every: write the checkpoint every this many steps (0: at evaluations only).
        seed: seeds the model initialisation, the data order and everything random.
        precision: "fp32", "bf16", "fp16" or "auto" (bf16 on a GPU that has it, else fp32).
        progress: show a progress bar.
    """

    steps: int = param(1000, ge=1)
    batch_size: int = param(64, ge=1)
    lr: float = param(3e-3, gt=0)
    warmup_steps: int = param(50, ge=0)
    min_lr_ratio: float = param(0.1, ge=0, le=1)
    weight_decay: float = param(0.1, ge=0)
    betas: tuple[float, float] = param((0.9, 0.95), ge=0, lt=1)
    decay: str = param("matrices", choices=("matrices", "all"))
    schedule: str = param("warmup_cosine", choices=("warmup_cosine", "epoch_cosine"))
    grad_clip: float = param(1.0, ge=0)
    eval_every: int = param(100, ge=1)
    eval_batch_size: int = param(256, ge=1)
    early_stop_accuracy: float | None = param(None, gt=0, le=1)
    checkpoint_every: int = param(0, ge=0)
    seed: int = param(0, ge=0)
    precision: str = param("auto", choices=("fp32", "bf16", "fp16", "auto"))
    progress: bool = True

    def __post_init__(self):
        check_fields(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> "TrainConfig":
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in mapping if k not in valid]
        if unknown:
            raise ValueError(f"unknown train config key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(valid)}")
        return cls(**dict(mapping))
