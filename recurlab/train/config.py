"""Training hyperparameters, one dataclass that round-trips through JSON."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping


@dataclass
class TrainConfig:
    """How to train.

    Attributes:
        steps: optimizer steps in total.
        batch_size: examples per step, over all processes (each of W processes takes batch_size / W).
        lr: peak learning rate, reached after warmup, then cosine decay to lr * min_lr_ratio.
        warmup_steps: linear warmup from 0.
        weight_decay, betas: AdamW's. Matrices are decayed (the embedding, and the tied head with it, as in
            nanoGPT); biases, norm gains and parameters marked ``no_weight_decay`` are not (see Trainer).
        grad_clip: clip the global gradient norm to this (0: off).
        eval_every: evaluate every this many steps (and at the end).
        eval_batch_size: examples per evaluation batch.
        early_stop_accuracy: stop once the evaluation accuracy reaches this (None: never).
        checkpoint_every: write the checkpoint every this many steps (0: at evaluations only).
        seed: seeds the model initialisation, the data order and everything random.
        precision: "fp32", "bf16", "fp16" or "auto" (bf16 on a GPU that has it, else fp32).
        progress: show a progress bar.
    """

    steps: int = 1000
    batch_size: int = 64
    lr: float = 3e-3
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    eval_every: int = 100
    eval_batch_size: int = 256
    early_stop_accuracy: float | None = None
    checkpoint_every: int = 0
    seed: int = 0
    precision: str = "auto"
    progress: bool = True

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be >= 1, got {self.steps} and {self.batch_size}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.precision not in ("fp32", "bf16", "fp16", "auto"):
            raise ValueError(f"precision must be fp32, bf16, fp16 or auto, got {self.precision!r}")
        self.betas = tuple(self.betas)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> "TrainConfig":
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in mapping if k not in valid]
        if unknown:
            raise ValueError(f"unknown train config key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(valid)}")
        return cls(**dict(mapping))
