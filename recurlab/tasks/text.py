"""Text for language modelling, offline: files, folders, local Hugging Face datasets, and a default corpus.

- :func:`load_text` reads a plain-text file, or every ``*.txt`` under a folder (sorted, joined by blank lines).
- :func:`load_hf_dataset` reads a dataset saved with ``datasets.Dataset.save_to_disk`` (needs the
  ``datasets`` package: ``pip install recurlab[lm]``).
- :func:`default_corpus` is the King James Bible (public domain, 4.3 MB of English) from Debian's
  ``bible-kjv-text`` package, extracted once with its ``bible`` program and cached under
  ``~/.cache/recurlab``. Nothing is downloaded at run time; without the package the error says how
  to get it (``./run`` installs it where it can).

Tokenizers: :class:`ByteTokenizer` (UTF-8 bytes, vocabulary 256, nothing to download) and
:class:`BPETokenizer` (byte-level BPE trained on the corpus with the ``tokenizers`` library).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import torch

from ..files import write_text
from .base import SequenceTask

KJV_RANGE = "Genesis 1:1-Revelation 22:21"


def load_text(path: str | Path) -> str:
    """A file's text, or the ``*.txt`` files under a folder joined by blank lines (sorted by path)."""
    path = Path(path)
    if path.is_file():
        return path.read_text(encoding="utf-8", errors="replace")
    if path.is_dir():
        files = sorted(path.rglob("*.txt"))
        if not files:
            raise FileNotFoundError(f"no *.txt files under {path}")
        return "\n\n".join(f.read_text(encoding="utf-8", errors="replace") for f in files)
    raise FileNotFoundError(f"no such file or folder: {path}")


def load_hf_dataset(path: str | Path, split: str | None = "train", text_field: str = "text") -> str:
    """The ``text_field`` column of a dataset saved to disk with Hugging Face ``datasets``, joined."""
    try:
        import datasets
    except ImportError as exc:
        raise ImportError("reading a Hugging Face dataset needs the 'datasets' package: pip install recurlab[lm]") from exc
    data = datasets.load_from_disk(str(path))
    if isinstance(data, datasets.DatasetDict):
        if split not in data:
            raise ValueError(f"split must be one of {sorted(data)}, got {split!r}")
        data = data[split]
    if text_field not in data.column_names:
        raise ValueError(f"text_field must be one of the columns {data.column_names}, got {text_field!r}")
    return "\n\n".join(data[text_field])


def _cache_dir() -> Path:
    return Path(os.environ.get("RECURLAB_CACHE", Path.home() / ".cache" / "recurlab"))


def default_corpus() -> str:
    """The King James Bible from Debian's bible-kjv-text package (verse numbers removed)."""
    cached = _cache_dir() / "kjv.txt"
    if cached.exists():
        return cached.read_text(encoding="utf-8")
    program = shutil.which("bible")
    if program is None:
        raise FileNotFoundError(
            "the default corpus needs Debian's bible-kjv-text package (apt-get install bible-kjv-text; "
            "./run installs it when it can), or give your own text with --set data.path=PATH")
    raw = subprocess.run([program, "-l0", KJV_RANGE], capture_output=True, text=True, check=True).stdout
    text = re.sub(r"(?m)^[ \t]+\d+ ", "", raw).strip() + "\n"  # "  12 And God said" -> "And God said"
    if len(text) < 1_000_000:
        raise RuntimeError(f"the bible program returned only {len(text)} characters; is bible-kjv-text installed?")
    write_text(cached, text)
    return text


class ByteTokenizer:
    """UTF-8 bytes as tokens: vocabulary 256, one token per byte, lossless."""

    vocab_size = 256
    name = "bytes"

    def encode(self, text: str) -> torch.Tensor:
        return torch.frombuffer(bytearray(text.encode("utf-8")), dtype=torch.uint8).long()

    def decode(self, ids) -> str:
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")

    def to_dict(self) -> dict:
        return {"type": "bytes"}


class BPETokenizer:
    """Byte-level BPE trained on a corpus with the ``tokenizers`` library (pip install recurlab[lm])."""

    name = "bpe"

    def __init__(self, tokenizer):
        self._tok = tokenizer
        self.vocab_size = tokenizer.get_vocab_size()

    @classmethod
    def train(cls, text: str, vocab_size: int = 4096) -> "BPETokenizer":
        try:
            from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        except ImportError as exc:
            raise ImportError("BPE needs the 'tokenizers' package: pip install recurlab[lm]") from exc
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      show_progress=False)
        chunks = [text[i : i + 100_000] for i in range(0, len(text), 100_000)]
        tok.train_from_iterator(chunks, trainer)
        return cls(tok)

    @classmethod
    def from_json(cls, text: str) -> "BPETokenizer":
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_str(text))

    def encode(self, text: str) -> torch.Tensor:
        return torch.tensor(self._tok.encode(text).ids, dtype=torch.long)

    def decode(self, ids) -> str:
        return self._tok.decode([int(i) for i in ids])

    def to_dict(self) -> dict:
        return {"type": "bpe", "json": self._tok.to_str()}


def tokenizer_from_dict(spec: dict):
    if spec.get("type") == "bytes":
        return ByteTokenizer()
    if spec.get("type") == "bpe":
        return BPETokenizer.from_json(spec["json"])
    raise ValueError(f"unknown tokenizer type {spec.get('type')!r}; expected 'bytes' or 'bpe'")


def split_text(text: str, val_fraction: float = 0.05) -> tuple[str, str]:
    """A fixed split: the last ``val_fraction`` of the text (from a line start) is validation."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    cut = int(len(text) * (1 - val_fraction))
    newline = text.find("\n", cut)
    cut = newline + 1 if newline != -1 else cut
    return text[:cut], text[cut:]


def language_modelling_task(ids: torch.Tensor, seq_len: int, vocab_size: int) -> SequenceTask:
    """Non-overlapping windows of seq_len + 1 tokens: inputs = window[:-1], labels = window[1:] (every position)."""
    n = (len(ids) - 1) // seq_len
    if n < 1:
        raise ValueError(f"the text has {len(ids)} tokens, fewer than seq_len + 1 = {seq_len + 1}")
    ids = ids[: n * seq_len + 1]
    inputs = ids[:-1].view(n, seq_len)
    labels = ids[1:].view(n, seq_len)
    return SequenceTask(inputs.contiguous(), labels.contiguous(), vocab_size)
