"""Fine-tuning a saved language model on text: what ``recurlab convert`` and ``recurlab quantize`` share.

    model, tokenizer = load_checkpoint("runs/lm-gla")          # a model folder, a training run or a HF folder
    data = text_data(tokenizer, TextFinetune(seq_len=256))      # training windows, validation windows, bytes
    data.bits_per_byte(model)

:class:`TextFinetune` holds the settings every such fine-tuning has (tokens, batch, learning rate, clipping,
evaluation, the text); each command subclasses it with its own defaults and extras. :func:`record_request`
keeps a command's arguments beside its run so that a resume with other arguments is refused.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..configs import check_fields, param
from ..files import write_json
from ..models.causal_lm import CausalLM
from ..tasks.text import language_modelling_task, split_text
from .lm import DataSource, bits_per_byte


@dataclass
class TextFinetune:
    """Fine-tuning on text (``--set finetune.KEY=VALUE``).

    Attributes:
        tokens: training tokens (0: no fine-tuning); steps = ceil(tokens / (batch_size * seq_len)).
        batch_size, seq_len: sequences per step and their length in tokens.
        lr, grad_clip: AdamW's constant learning rate and the gradient-norm clip.
        eval_every: evaluate the validation loss every this many steps (and checkpoint).
        eval_sequences: validation sequences of seq_len tokens used for bits per byte (the first ones).
        seed: the data order (and whatever the command initialises).
        val_fraction: the last part of the text held out for validation.
        data: where the text comes from: {} the default corpus, {"path": ...} or {"hf_dataset": ...}.
    """

    tokens: int = param(0, ge=0)
    batch_size: int = param(8, ge=1)
    seq_len: int = param(256, ge=1)
    lr: float = param(1e-3, gt=0)
    grad_clip: float = param(1.0, ge=0)
    eval_every: int = param(100, ge=1)
    eval_sequences: int = param(64, ge=1)
    seed: int = param(0, ge=0)
    val_fraction: float = param(0.05, gt=0, lt=1)
    data: dict[str, Any] = param(factory=dict, schema=DataSource)

    def __post_init__(self):
        check_fields(self)

    @property
    def steps(self) -> int:
        return math.ceil(self.tokens / (self.batch_size * self.seq_len))


def load_checkpoint(folder: str | Path):
    """(CausalLM, tokenizer or None) of a recurlab model folder (or a training run's folder, holding model/) or
    of a Llama-family / recurlab Hugging Face folder (needs recurlab[hf])."""
    from ..models.pretrained import load_tokenizer, read_config

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"CHECKPOINT {folder} is not a folder")
    if not (folder / "config.json").exists() and (folder / "model" / "config.json").exists():
        folder = folder / "model"  # a training run's folder
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"no config.json in CHECKPOINT {folder}: not a model folder")
    if read_json(folder / "config.json").get("format") is not None:
        read_config(folder)  # checks the format and version
        return CausalLM.from_pretrained(folder), load_tokenizer(folder)
    from transformers import PreTrainedTokenizerFast

    from ..hf import load_hf_checkpoint, recurlab_tokenizer

    tokenizer = None
    if (folder / "tokenizer.json").exists():
        tokenizer = recurlab_tokenizer(PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json")))
    return load_hf_checkpoint(folder), tokenizer


def model_and_tokenizer(checkpoint, tokenizer=None):
    """(model, tokenizer) of ``checkpoint``: a CausalLM with the ``tokenizer`` given beside it, or a folder
    (:func:`load_checkpoint`) holding its own; a ValueError when there is no tokenizer to encode the text with."""
    if isinstance(checkpoint, CausalLM):
        if tokenizer is None:
            raise ValueError("tokenizer is required when checkpoint is a CausalLM (it encodes the fine-tuning text)")
        return checkpoint, tokenizer
    model, tokenizer = load_checkpoint(checkpoint)
    if tokenizer is None:
        raise ValueError(f"CHECKPOINT {checkpoint} has no tokenizer saved with the model; the fine-tuning and "
                         f"validation text cannot be encoded")
    return model, tokenizer


@dataclass
class TextData:
    """The fine-tuning and validation tasks of a text, and what bits per byte needs."""

    train: Any  # SequenceTask
    val: Any  # SequenceTask, the first eval_sequences validation sequences
    val_bytes: float  # UTF-8 bytes the validation tokens stand for

    def bits_per_byte(self, model: CausalLM, batch_size: int = 16) -> float:
        """Validation bits per byte of ``model`` (evaluated in float32 or the model's dtype)."""
        from ..train.trainer import evaluate

        loss = evaluate(model, self.val, batch_size, next(model.parameters()).device)["loss"]
        return bits_per_byte(loss, self.val.inputs.numel(), self.val_bytes)


def text_data(tokenizer, config: TextFinetune) -> TextData:
    """Split the text (the default corpus or ``config.data``), tokenize, and cut windows of seq_len + 1 tokens."""
    train_text, val_text = split_text(DataSource(**config.data).load_text(), config.val_fraction)
    train_ids, val_ids = tokenizer.encode(train_text), tokenizer.encode(val_text)
    train = language_modelling_task(train_ids, config.seq_len, tokenizer.vocab_size)
    val = language_modelling_task(val_ids, config.seq_len, tokenizer.vocab_size)
    val = val.subset(slice(0, config.eval_sequences))
    bytes_per_token = len(val_text.encode("utf-8")) / max(len(val_ids), 1)
    return TextData(train, val, val.inputs.numel() * bytes_per_token)


def record_request(out: Path, filename: str, request: dict, resume: bool, hint: str) -> None:
    """Keep ``request`` (a command's arguments, JSON) in ``out/filename``; resuming a run that was started with
    another request is refused with a ValueError naming what differs (a Trainer checkpoint alone cannot tell, for
    example, liger-gla from liger-attention: their tensors have the same names). ``hint``: what to give instead."""
    path = out / filename
    request = json.loads(json.dumps(request))
    if resume and path.exists():
        saved = read_json(path)
        if saved != request:
            differ = [k for k in request if saved.get(k) != request[k]]
            raise ValueError(f"cannot resume {out}: it was started with other {' and '.join(differ)}; {hint}")
    out.mkdir(parents=True, exist_ok=True)
    write_json(path, request)


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
