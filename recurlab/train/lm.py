"""Language-modelling setups for ``recurlab train --preset lm-<mixer>`` and ``--config FILE``.

A preset is a small CausalLM (about 5 M parameters: d_model 256, 6 blocks with
SwiGLU channel mixers, byte-level vocabulary) sized to train in 12-18 minutes on
2 CPU cores on the default corpus (800 steps of 16 x 256 tokens), and a TrainConfig. ``lm-sambay`` is a
SambaY-style decoder-hybrid-decoder: a self-decoder of sliding-window attention
and GLA layers, whose last GLA layer hands its memory read-out to a
cross-decoder of gated memory units.

Bits per byte: validation loss (nats per token) / ln 2 x tokens / bytes; for the
byte tokenizer one token is one byte. The unigram baseline is the cross-entropy
of the validation bytes under the training bytes' frequencies.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..models import ModelConfig
from ..tasks.text import (BPETokenizer, ByteTokenizer, default_corpus, language_modelling_task, load_hf_dataset,
                          load_text, split_text)
from .config import TrainConfig

# 800 steps x 16 x 256 = 3.3 M tokens (0.8 epoch of the default corpus): 12-18 minutes on 2 CPU cores
_COMMON_TRAIN = dict(steps=800, batch_size=16, lr=2e-3, warmup_steps=50, weight_decay=0.1, eval_every=200,
                     eval_batch_size=64, grad_clip=1.0)


def _preset(mixer, **model_overrides) -> dict:
    model = dict(vocab_size=256, d_model=256, n_layers=6, mixer=mixer, channel_mixer="swiglu")
    model.update(model_overrides)
    return {"model": model, "train": dict(_COMMON_TRAIN), "seq_len": 256, "tokenizer": "bytes"}


PRESETS: dict[str, dict[str, Any]] = {
    "lm-attention": _preset("attention"),
    "lm-gla": _preset("gla"),
    "lm-mingru": _preset("mingru"),
    "lm-gam": _preset("gam"),
    "lm-rwkv": _preset("rwkv"),
    "lm-liger": _preset("liger"),
    "lm-sambay": _preset(["swa", "gla", "swa", "gla", "gmu", "gmu"], memory_layer=3,
                         mixer_kwargs={"swa": {"window": 64}}),
}


@dataclass
class LMSetup:
    """Everything ``recurlab train`` needs for a language model (a preset, or a JSON file of this shape)."""

    model: dict[str, Any]
    train: dict[str, Any]
    seq_len: int = 256
    tokenizer: str = "bytes"  # or "bpe"
    bpe_vocab_size: int = 4096
    val_fraction: float = 0.05
    data: dict[str, Any] = field(default_factory=dict)  # {"path": ...} or {"hf_dataset": ..., "split": ...}

    @classmethod
    def preset(cls, name: str) -> "LMSetup":
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
        spec = json.loads(json.dumps(PRESETS[name]))  # a deep copy
        return cls(**spec)

    @classmethod
    def from_file(cls, path: str | Path) -> "LMSetup":
        spec = json.loads(Path(path).read_text())
        valid = set(cls.__dataclass_fields__)
        unknown = set(spec) - valid
        if unknown:
            raise ValueError(f"unknown key(s) {sorted(unknown)} in {path}; valid keys: {sorted(valid)}")
        return cls(**spec)

    def load_text(self) -> str:
        if "path" in self.data:
            return load_text(self.data["path"])
        if "hf_dataset" in self.data:
            return load_hf_dataset(self.data["hf_dataset"], self.data.get("split", "train"),
                                   self.data.get("text_field", "text"))
        return default_corpus()

    def build(self):
        """(model config, train config, tokenizer, train task, validation task, validation bytes, unigram bpb)."""
        text = self.load_text()
        train_text, val_text = split_text(text, self.val_fraction)
        if self.tokenizer == "bytes":
            tokenizer = ByteTokenizer()
        elif self.tokenizer == "bpe":
            tokenizer = BPETokenizer.train(train_text, self.bpe_vocab_size)
        else:
            raise ValueError(f"tokenizer must be 'bytes' or 'bpe', got {self.tokenizer!r}")
        model_config = ModelConfig.from_dict({**self.model, "vocab_size": tokenizer.vocab_size})
        train_ids, val_ids = tokenizer.encode(train_text), tokenizer.encode(val_text)
        train_task = language_modelling_task(train_ids, self.seq_len, tokenizer.vocab_size)
        val_task = language_modelling_task(val_ids, self.seq_len, tokenizer.vocab_size)
        # bytes per token of the evaluated part of the validation text
        evaluated_tokens = val_task.inputs.numel()
        bytes_per_token = len(val_text.encode("utf-8")) / max(len(val_ids), 1)
        return (model_config, TrainConfig.from_dict(self.train), tokenizer, train_task, val_task,
                evaluated_tokens * bytes_per_token, unigram_bits_per_byte(train_text, val_text))


def unigram_bits_per_byte(train_text: str, val_text: str) -> float:
    """Cross-entropy (bits per byte) of the validation bytes under the training byte frequencies (add-one)."""
    train = torch.frombuffer(bytearray(train_text.encode("utf-8")), dtype=torch.uint8).long()
    val = torch.frombuffer(bytearray(val_text.encode("utf-8")), dtype=torch.uint8).long()
    counts = torch.bincount(train, minlength=256).double() + 1
    log2p = torch.log2(counts / counts.sum())
    return float(-log2p[val].mean())


def bits_per_byte(loss_nats_per_token: float, tokens: int, n_bytes: float) -> float:
    return loss_nats_per_token / math.log(2) * tokens / n_bytes
