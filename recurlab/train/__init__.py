"""The trainer shared by every experiment: AdamW, warmup + cosine, clipping, evaluation,
mixed precision, JSONL metrics, atomic checkpoints with exact resume, and DDP under torchrun."""

from .config import TrainConfig
from .trainer import Trainer, evaluate

__all__ = ["TrainConfig", "Trainer", "evaluate"]
