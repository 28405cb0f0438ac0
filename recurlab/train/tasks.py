"""Named training setups for ``recurlab train``: build the task data and the model from arguments."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..configs import check_fields, checked_as, param
from ..models import CausalLM, ModelConfig
from ..tasks import MQARConfig, SequenceTask, associative_recall, multi_query_associative_recall, selective_copying
from .config import TrainConfig

TASKS = ("mqar", "ar", "copy")


@dataclass
class SyntheticSetup:
    task: str = param("mqar", choices=TASKS)
    seq_len: int = param(64, ge=2)
    num_kv_pairs: int = param(4, ge=1)  # mqar: key-value pairs; copy: tokens to copy
    vocab_size: int = param(8192, ge=4)
    train_examples: int = param(50_000, ge=1)
    eval_examples: int = param(1_000, ge=1)
    data_seed: int = param(0, ge=0)

    def __post_init__(self):
        check_fields(self)

    def build(self) -> tuple[SequenceTask, SequenceTask]:
        """(train, eval) from disjoint seeds."""
        train_seed, eval_seed = 2 * self.data_seed + 1, 2 * self.data_seed + 2
        if self.task == "mqar":
            cfg = MQARConfig(seq_len=self.seq_len, num_kv_pairs=self.num_kv_pairs, vocab_size=self.vocab_size)
            return (multi_query_associative_recall(self.train_examples, cfg, train_seed),
                    multi_query_associative_recall(self.eval_examples, cfg, eval_seed))
        if self.task == "ar":
            return (associative_recall(self.train_examples, self.seq_len, self.vocab_size, train_seed),
                    associative_recall(self.eval_examples, self.seq_len, self.vocab_size, eval_seed))
        if self.task == "copy":
            return (selective_copying(self.train_examples, self.seq_len, self.num_kv_pairs, self.vocab_size, train_seed),
                    selective_copying(self.eval_examples, self.seq_len, self.num_kv_pairs, self.vocab_size, eval_seed))
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")


def recall_model(mixer: str | list[str], d_model: int, vocab_size: int, n_layers: int = 2,
                 mixer_kwargs: dict | None = None, layer_kwargs: list[dict] | None = None) -> CausalLM:
    """Zoology's recall model: token mixers only (no channel mixer), 2 layers by default;
    ``mixer_kwargs`` per mixer name and ``layer_kwargs`` per layer, as in ModelConfig."""
    return CausalLM(ModelConfig(vocab_size=vocab_size, d_model=d_model, n_layers=n_layers, mixer=mixer,
                                channel_mixer=None, mixer_kwargs=mixer_kwargs or {}, layer_kwargs=layer_kwargs))


def _recall_model() -> dict[str, Any]:
    return {"mixer": "attention", "d_model": 64, "n_layers": 2, "channel_mixer": None}


def _recall_training() -> dict[str, Any]:
    return {"steps": 2000, "batch_size": 64, "lr": 3e-3, "warmup_steps": 50, "eval_every": 100}


@dataclass
class SyntheticTraining:
    """``recurlab train`` without a preset: a model (ModelConfig's keys; Zoology's token mixers only by
    default, vocab_size from the data) trained on a synthetic task (TrainConfig's keys)."""

    data: SyntheticSetup = field(default_factory=SyntheticSetup)
    model: dict[str, Any] = param(factory=_recall_model, schema=ModelConfig)
    train: dict[str, Any] = param(factory=_recall_training, schema=TrainConfig)

    def __post_init__(self):
        check_fields(self)
        checked_as("model", self.model_config)
        checked_as("train", lambda: TrainConfig.from_dict(self.train))

    def model_config(self) -> ModelConfig:
        return ModelConfig.from_dict({**self.model, "vocab_size": self.data.vocab_size})


def train_synthetic(setup: SyntheticTraining, out: str | Path | None, resume: bool = False,
                    progress: bool = True, overwrite: bool = False) -> dict | None:
    """Train ``setup``'s model on its task (resumable, under torchrun too); the summary on rank 0, else None."""
    from .distributed import teardown
    from .trainer import Trainer, seed_everything

    train, evaluation = setup.data.build()
    config = TrainConfig.from_dict({**setup.train, "progress": progress})
    seed_everything(config.seed)
    model = CausalLM(setup.model_config())
    trainer = Trainer(model, train, evaluation, config, out_dir=out)
    if out is None and trainer.runtime.is_main:
        print("no --out: nothing is written (no checkpoint, no metrics)", file=sys.stderr, flush=True)
    summary = trainer.fit(resume=resume, overwrite=overwrite)
    result = {"params": sum(p.numel() for p in model.parameters()), **summary} if trainer.runtime.is_main else None
    trainer.close()
    teardown()
    return result
