"""Convert between recurlab's model folder and a Hugging Face folder (``recurlab export-hf`` / ``import-hf``).

    export_hf("runs/lm-gla/model", "hf/lm-gla")       # config.json (model_type "recurlab") + model.safetensors
                                                      # + tokenizer.json / tokenizer_config.json if one was saved
    import_hf("hf/lm-gla", "runs/lm-gla-back")         # recurlab's config.json + model.safetensors (+ tokenizer)
    import_hf("path/to/llama", "runs/llama")           # a Llama / Mistral / Qwen2 checkpoint, see llama.py

recurlab's folder: ``CausalLM.save_pretrained`` (format "recurlab-causal-lm", weight digests, the
tokenizer inside config.json). The Hugging Face folder: ``RecurlabForCausalLM.save_pretrained`` and
the tokenizer's ``save_pretrained``, loadable with ``AutoModelForCausalLM`` / ``AutoTokenizer`` after
``import recurlab.hf``. Weights keep their dtype both ways.
"""

from __future__ import annotations

from pathlib import Path

from transformers import PreTrainedTokenizerFast

from ..models.causal_lm import CausalLM
from ..models.pretrained import load_tokenizer
from .llama import LLAMA_FAMILY, load_llama, read_hf_config
from .modeling import RecurlabForCausalLM
from .tokenizer import hf_tokenizer, recurlab_tokenizer


def _check_folders(src: Path, dst: Path, overwrite: bool) -> None:
    if not src.is_dir():
        raise FileNotFoundError(f"SRC {src} is not a folder")
    if src.resolve() == dst.resolve():
        raise ValueError(f"DST must be another folder than SRC ({src})")
    if (dst / "config.json").exists() and not overwrite:
        raise ValueError(f"DST {dst} already holds a model (config.json); choose another folder or overwrite "
                         f"(overwrite=True, --overwrite)")


def export_hf(src: str | Path, dst: str | Path, overwrite: bool = False) -> Path:
    """recurlab's model folder ``src`` -> a Hugging Face folder ``dst`` (model, and the tokenizer if saved)."""
    src, dst = Path(src), Path(dst)
    _check_folders(src, dst, overwrite)
    model = CausalLM.from_pretrained(src)
    tokenizer = load_tokenizer(src)
    RecurlabForCausalLM.from_recurlab(model).save_pretrained(dst)
    if tokenizer is not None:
        hf_tokenizer(tokenizer).save_pretrained(dst)
    return dst


def checkpoint_kind(folder: str | Path) -> str:
    """"recurlab" (a RecurlabForCausalLM folder) or the Llama-family model_type of a Hugging Face folder."""
    config = read_hf_config(folder)
    model_type = config.get("model_type")
    if model_type == "recurlab" or model_type in LLAMA_FAMILY:
        return model_type
    if config.get("format") == "recurlab-causal-lm":
        raise ValueError(f"{folder} is a recurlab model folder already (not a Hugging Face one); export-hf converts it "
                         f"to Hugging Face")
    raise ValueError(f"{folder}/config.json has model_type {model_type!r}; import-hf reads 'recurlab' and the "
                     f"Llama family ({', '.join(LLAMA_FAMILY)})")


def load_hf_checkpoint(folder: str | Path) -> CausalLM:
    """The recurlab CausalLM of a Hugging Face folder: a saved RecurlabForCausalLM or a Llama-family checkpoint."""
    if checkpoint_kind(folder) == "recurlab":
        return RecurlabForCausalLM.from_pretrained(str(folder), local_files_only=True).model
    return load_llama(folder)


def import_hf(src: str | Path, dst: str | Path, overwrite: bool = False) -> Path:
    """A Hugging Face folder ``src`` -> recurlab's model folder ``dst``, with its tokenizer.json if it has one
    (the byte tokenizer comes back as ByteTokenizer, any other fast tokenizer as a BPETokenizer)."""
    src, dst = Path(src), Path(dst)
    _check_folders(src, dst, overwrite)
    model = load_hf_checkpoint(src)
    tokenizer = None
    if (src / "tokenizer.json").exists():
        tokenizer = recurlab_tokenizer(PreTrainedTokenizerFast(tokenizer_file=str(src / "tokenizer.json")))
    model.save_pretrained(dst, tokenizer=tokenizer)
    return dst
