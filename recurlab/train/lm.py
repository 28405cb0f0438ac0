"""Language-modelling setups for ``recurlab train --preset lm-<mixer>`` and ``--config FILE``.

A preset is a small CausalLM (about 5 M parameters: d_model 256, 6 blocks with
SwiGLU channel mixers, byte-level vocabulary) sized to train in 12-18 minutes on
2 CPU cores on the default corpus (800 steps of 16 x 256 tokens), and a TrainConfig. ``lm-sambay`` is
SambaY's decoder-hybrid-decoder in full (8 blocks): a self-decoder of GLA and sliding-window attention whose
last GLA layer hands its memory read-out to the gated memory units of the cross-decoder, one full-attention
layer whose KV cache (the model's only growing one) the cross-decoder's cross-attention reads; ``lm-yoco``
is the paper's Samba+YOCO baseline (cross-attention in place of the GMU); ``lm-samba-gmu`` is the recurrent
half alone (6 blocks: no full attention, no cross-attention). ``lm-autoneural`` is AutoNeural's (Nexa AI 2025) LFM2-style backbone: gated
short convolutions (``short_conv``) with attention in 2 of the 6 blocks.

Bits per byte: validation loss (nats per token) / ln 2 x tokens / bytes; for the
byte tokenizer one token is one byte. The unigram baseline is the cross-entropy
of the validation bytes under the training bytes' frequencies.
"""

from __future__ import annotations

import dataclasses
import sys
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..configs import ConfigError, check_fields, checked_as, from_dict, param
from ..files import write_json
from ..models import ModelConfig
from ..tasks.text import (BPETokenizer, ByteTokenizer, default_corpus, language_modelling_task, load_hf_dataset,
                          load_text, split_text)
from .config import TrainConfig
from .run_folder import RunFolder

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
    # SambaY's decoder-hybrid-decoder (Ren et al. 2025; ArchScale's layout for L = 8 layers): a Samba self-decoder
    # (GLA standing in for Mamba, and sliding-window attention) whose last GLA layer's read-out is the memory,
    # one full-attention layer (the model's only growing KV cache), then a cross-decoder alternating a gated
    # memory unit and cross-attention over that one cache
    "lm-sambay": _preset(["gla", "swa", "gla", "swa", "gla", "attention", "gmu", "cross_attention"], n_layers=8,
                         memory_layer=4, kv_layer=5, mixer_kwargs={"swa": {"window": 64}}),
    # the paper's baseline, Samba + YOCO: the same layout with cross-attention in place of the gated memory unit
    "lm-yoco": _preset(["gla", "swa", "gla", "swa", "gla", "attention", "cross_attention", "cross_attention"],
                       n_layers=8, kv_layer=5, mixer_kwargs={"swa": {"window": 64}}),
    # the recurrent half of SambaY alone (recurlab's lm-sambay before the full layout): a self-decoder of
    # sliding-window attention and GLA, then gated memory units, no full attention and no cross-attention
    "lm-samba-gmu": _preset(["swa", "gla", "swa", "gla", "gmu", "gmu"], memory_layer=3,
                            mixer_kwargs={"swa": {"window": 64}}),
    # AutoNeural's language backbone, LFM2's layout at 6 blocks: gated short convolutions with a few attention
    # layers (LFM2-350M: attention at 6 of 16 blocks, 2, 5, 8, 10, 12, 14); the same parameters as lm-attention
    "lm-autoneural": _preset(["short_conv", "short_conv", "attention", "short_conv", "short_conv", "attention"]),
}


@dataclass
class DataSource:
    """Where a language model's text comes from: a .txt file or folder, a saved Hugging Face dataset,
    or (neither given) the default corpus."""

    path: str | None = None
    hf_dataset: str | None = None
    split: str = "train"
    text_field: str = "text"

    def __post_init__(self):
        check_fields(self)
        if self.path is not None and self.hf_dataset is not None:
            raise ValueError("give data.path or data.hf_dataset, not both")

    def load_text(self) -> str:
        if self.path is not None:
            text, where = load_text(self.path), f"data.path {self.path}"
        elif self.hf_dataset is not None:
            text, where = load_hf_dataset(self.hf_dataset, self.split, self.text_field), f"data.hf_dataset {self.hf_dataset}"
        else:
            return default_corpus()
        if not text.strip():
            raise ValueError(f"{where} holds no text to train on")
        return text


@dataclass
class LMSetup:
    """Everything ``recurlab train`` needs for a language model (a preset, or a JSON file of this shape).

    ``model`` holds ModelConfig's keys (vocab_size comes from the tokenizer), ``train`` TrainConfig's,
    ``data`` DataSource's; all of them are checked on construction, before any data is read.
    """

    model: dict[str, Any] = param(schema=ModelConfig)
    train: dict[str, Any] = param(schema=TrainConfig)
    seq_len: int = param(256, ge=1)
    tokenizer: str = param("bytes", choices=("bytes", "bpe"))
    bpe_vocab_size: int = param(4096, ge=257)
    val_fraction: float = param(0.05, gt=0, lt=1)
    data: dict[str, Any] = param(factory=dict, schema=DataSource)  # {"path": ...} or {"hf_dataset": ..., "split": ...}

    def __post_init__(self):
        check_fields(self)
        vocab = 256 if self.tokenizer == "bytes" else self.bpe_vocab_size
        checked_as("model", lambda: ModelConfig.from_dict({**self.model, "vocab_size": vocab}))
        checked_as("train", lambda: TrainConfig.from_dict(self.train))
        checked_as("data", lambda: DataSource(**self.data))

    @classmethod
    def preset(cls, name: str) -> "LMSetup":
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
        return cls(**json.loads(json.dumps(PRESETS[name])))  # a deep copy

    @classmethod
    def from_file(cls, path: str | Path) -> "LMSetup":
        try:
            spec = json.loads(Path(path).read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not JSON: {error}") from None
        try:
            return from_dict(cls, spec)
        except ConfigError as error:
            raise ConfigError(f"{path}: {error.key}", error.problem) from None

    def load_text(self) -> str:
        return DataSource(**self.data).load_text()

    def build(self):
        """(model config, train config, tokenizer, train task, validation task, validation bytes, unigram bpb)."""
        text = self.load_text()
        train_text, val_text = split_text(text, self.val_fraction)
        if self.tokenizer == "bytes":
            tokenizer = ByteTokenizer()
        else:
            tokenizer = BPETokenizer.train(train_text, self.bpe_vocab_size)
        model_config = ModelConfig.from_dict({**self.model, "vocab_size": tokenizer.vocab_size})
        train_ids, val_ids = tokenizer.encode(train_text), tokenizer.encode(val_text)
        train_task = language_modelling_task(train_ids, self.seq_len, tokenizer.vocab_size)
        val_task = language_modelling_task(val_ids, self.seq_len, tokenizer.vocab_size)
        # bytes per token of the evaluated part of the validation text
        evaluated_tokens = val_task.inputs.numel()
        bytes_per_token = len(val_text.encode("utf-8")) / max(len(val_ids), 1)
        return (model_config, TrainConfig.from_dict(self.train), tokenizer, train_task, val_task,
                evaluated_tokens * bytes_per_token, unigram_bits_per_byte(train_text, val_text))


def train_language_model(setup: LMSetup, out: str | Path, name: str = "lm", resume: bool = False,
                         progress: bool = True, overwrite: bool = False) -> dict | None:
    """``recurlab train --preset``: train, evaluate bits per byte, save the model and ``lm_summary.json``.

    resume / overwrite: as :meth:`recurlab.train.Trainer.fit` (a run folder that holds a checkpoint is
    continued or started again, never silently replaced). Returns the summary (None on the processes
    other than rank 0 under torchrun).
    """
    from ..models import CausalLM
    from .distributed import teardown
    from .trainer import Trainer, evaluate, seed_everything

    out = Path(out)
    model_config, train_config, tokenizer, train_task, val_task, val_bytes, unigram_bpb = setup.build()
    train_config = dataclasses.replace(train_config, progress=progress)
    seed_everything(train_config.seed)
    model = CausalLM(model_config)
    params = model.num_parameters()["total"]
    print(f"{name}: {params:,} parameters, {len(train_task):,} training sequences of {setup.seq_len} tokens; "
          f"unigram baseline {unigram_bpb:.3f} bits per byte", file=sys.stderr, flush=True)
    trainer = Trainer(model, train_task, val_task, train_config, out_dir=out)
    summary = trainer.fit(resume=resume, overwrite=overwrite)
    result = None
    if trainer.runtime.is_main:
        final = evaluate(model, val_task, train_config.eval_batch_size, trainer.runtime.device)
        tokens_per_s = summary["step"] * train_config.batch_size * setup.seq_len / max(summary["seconds"], 1e-9)
        model.save_pretrained(out / "model", tokenizer)
        result = {"run": name, "params": params, "val_loss": final["loss"],
                  "val_bits_per_byte": bits_per_byte(final["loss"], val_task.inputs.numel(), val_bytes),
                  "unigram_bits_per_byte": unigram_bpb, "perplexity": math.exp(final["loss"]),
                  "train_tokens_per_s": tokens_per_s, "steps": summary["step"], "train_seconds": summary["seconds"]}
        write_json(out / "lm_summary.json", result)
    trainer.close()
    teardown()
    return result


def run_from_cli(preset: str | None, config_file: str | None, overrides: list[str], out: str | None, resume: bool,
                 progress: bool, overwrite: bool = False) -> None:
    """``recurlab train``: a language model from a preset or a JSON file, else a model on a synthetic task
    (:class:`recurlab.train.tasks.SyntheticTraining`); ``overrides`` are ``key=value`` settings."""
    from ..configs import override
    from .tasks import SyntheticTraining, train_synthetic

    if preset and config_file:
        raise ValueError("give --preset or --config, not both")
    if resume and not (out or preset or config_file):
        raise ValueError("--resume needs --out, the folder of the run to continue")
    if preset or config_file:
        name = preset or Path(config_file).stem
        setup = override(LMSetup.preset(preset) if preset else LMSetup.from_file(config_file), overrides)
        folder = Path(out or f"runs/{name}")
        RunFolder(folder, resume, overwrite).check()
        result = train_language_model(setup, folder, name, resume=resume, progress=progress, overwrite=overwrite)
        if result is not None:
            print(json.dumps(result))
            print(f"saved the model to {folder / 'model'}; try: recurlab generate --checkpoint {folder} "
                  "--prompt 'And God said'", file=sys.stderr)
        return
    if any(a.split("=")[0] in ("data.path", "data.hf_dataset") for a in overrides):
        raise ValueError("text data is for language models: add --preset NAME or --config FILE")
    if out:
        RunFolder(out, resume, overwrite).check()
    result = train_synthetic(override(SyntheticTraining(), overrides), out, resume, progress, overwrite)
    if result is not None:
        print(json.dumps(result))


@dataclass
class SamplingConfig:
    """How ``recurlab generate`` continues a prompt."""

    max_new_tokens: int = param(300, ge=1)
    temperature: float = param(0.8, ge=0)  # 0: greedy
    top_k: int | None = param(None, ge=1)
    top_p: float | None = param(None, gt=0, le=1)
    seed: int = param(0, ge=0)

    def __post_init__(self):
        check_fields(self)


def continue_prompt(directory: str | Path, prompt: str, sampling: SamplingConfig, out=None,
                    draft: str | Path | None = None, method: str | None = None) -> None:
    """Stream the continuation of ``prompt`` by the model saved in ``directory`` (or a training run's folder).

    With ``draft`` (a second saved model over the same tokenizer) and ``method`` (a spec of
    :mod:`recurlab.decoding.methods`, e.g. ``chain:4``), the text is sampled by speculative decoding:
    the same distribution as plain sampling, written when it is done, and the run's cost (target
    calls, accepted drafts) is printed on stderr."""
    import codecs
    import sys

    from ..models.generation import stream

    if not prompt:
        raise ValueError("--prompt must not be empty: the model continues a text")
    if (draft is None) != (method is None):
        raise ValueError("--draft and --method go together: give both for speculative decoding, or neither")
    model, tokenizer, directory = _load_saved(directory)
    ids = tokenizer.encode(prompt).unsqueeze(0)
    out = out or sys.stdout
    out.write(prompt)
    out.flush()
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace") if tokenizer.name == "bytes" else None

    def write(token: int) -> None:
        out.write(decoder.decode(bytes([token])) if decoder else tokenizer.decode([token]))
        out.flush()

    if draft is None:
        for token in stream(model, ids, sampling.max_new_tokens, sampling.temperature, sampling.top_k, sampling.top_p,
                            sampling.seed):
            write(int(token[0]))
    else:
        from ..decoding.methods import generate_with, parse_method

        spec = parse_method(method)
        if sampling.top_p is not None:
            raise ValueError("top_p is not supported with --method (speculative decoders take temperature and top_k)")
        draft_model, draft_tokenizer, draft_dir = _load_saved(draft)
        if draft_tokenizer.to_dict() != tokenizer.to_dict():
            raise ValueError(f"the draft {draft_dir} has another tokenizer than the target {directory}: "
                             "speculative decoding needs one vocabulary")
        generator = torch.Generator().manual_seed(sampling.seed)
        full, stats = generate_with(spec, model, draft_model, ids, sampling.max_new_tokens, sampling.temperature,
                                    sampling.top_k, generator)
        for token in full[0, ids.shape[1]:].tolist():
            write(token)
        out.write("\n")
        print(f"{spec.spec}: {stats.target_calls} target calls and {stats.target_reruns} re-runs for "
              f"{sampling.max_new_tokens} tokens, {stats.mean_accepted:.2f} drafts accepted per call, "
              f"{stats.draft_calls} draft calls", file=sys.stderr)
        return
    out.write("\n")


def continue_prompt_lud(directory: str | Path, prompt: str, sampling: SamplingConfig, max_parallel: int = 4,
                        beta: float = 0.9, out=None) -> None:
    """Continue ``prompt`` with an LUD-tuned model (recurlab.decoding.lud), streaming each pass's tokens;
    the passes and tokens per pass go to stderr."""
    import codecs
    import sys

    from ..decoding.lud import lud_passes
    from ..decoding.common import DecodeStats

    if not prompt:
        raise ValueError("--prompt must not be empty: the model continues a text")
    if sampling.top_p is not None:
        raise ValueError("top_p is not supported with --method lud (it takes temperature and top_k)")
    model, tokenizer, directory = _load_saved(directory)
    if model.config.vocab_size != tokenizer.vocab_size + 1:
        raise ValueError(f"{directory} is not an LUD-tuned model: its vocabulary ({model.config.vocab_size}) should be "
                         f"the tokenizer's ({tokenizer.vocab_size}) plus the placeholder")
    out = out or sys.stdout
    out.write(prompt)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace") if tokenizer.name == "bytes" else None
    stats = DecodeStats()
    generator = torch.Generator().manual_seed(sampling.seed)
    for step in lud_passes(model, tokenizer.encode(prompt).unsqueeze(0), sampling.max_new_tokens, max_parallel, beta,
                           sampling.temperature, sampling.top_k, generator, stats=stats):
        out.write(decoder.decode(bytes(step.tokens)) if decoder else tokenizer.decode(step.tokens))
        out.flush()
    out.write("\n")
    print(f"lud: {stats.target_calls} passes for {sampling.max_new_tokens} tokens ({stats.tokens_per_call:.2f} per pass), "
          f"{stats.target_reruns} re-runs, {stats.target_rewinds} rewinds", file=sys.stderr)


def _load_saved(directory: str | Path):
    """(model in eval mode, tokenizer, folder) of a model saved with its tokenizer (or a training run's folder)."""
    from ..models import CausalLM
    from ..models.pretrained import load_tokenizer

    directory = Path(directory)
    if not (directory / "config.json").exists() and (directory / "model" / "config.json").exists():
        directory = directory / "model"  # a training run's folder
    model = CausalLM.from_pretrained(directory).eval()
    tokenizer = load_tokenizer(directory)
    if tokenizer is None:
        raise ValueError(f"{directory} has no tokenizer saved with the model; it cannot decode text")
    return model, tokenizer, directory


def unigram_bits_per_byte(train_text: str, val_text: str) -> float:
    """Cross-entropy (bits per byte) of the validation bytes under the training byte frequencies (add-one)."""
    train = torch.frombuffer(bytearray(train_text.encode("utf-8")), dtype=torch.uint8).long()
    val = torch.frombuffer(bytearray(val_text.encode("utf-8")), dtype=torch.uint8).long()
    counts = torch.bincount(train, minlength=256).double() + 1
    log2p = torch.log2(counts / counts.sum())
    return float(-log2p[val].mean())


def bits_per_byte(loss_nats_per_token: float, tokens: int, n_bytes: float) -> float:
    return loss_nats_per_token / math.log(2) * tokens / n_bytes
