"""Save and load models in the ecosystem's format: ``config.json`` + ``model.safetensors``.

    model.save_pretrained("runs/lm-gla/model", tokenizer=tok)
    model = CausalLM.from_pretrained("runs/lm-gla/model")
    tok = load_tokenizer("runs/lm-gla/model")          # if one was saved

``config.json`` holds the format name and version, the recurlab version that wrote
it, the model configuration (depth module included, so recursion models load the same
way) and, optionally, the tokenizer. Loading refuses files of an unknown format version
and state dicts with missing, unexpected or mis-shaped tensors, naming them. Version 1
files (written before the depth module was the spine: blocks at ``blocks.i``) load too.

``config.json`` also records the SHA-256 and size of every tensor file it describes; loading
verifies them first, so a damaged or altered ``model.safetensors`` (one flipped byte in a weight
would otherwise load silently) is refused with an error naming the file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .. import __version__
from ..files import atomic_path, write_json
from .config import ModelConfig

FORMAT = "recurlab-causal-lm"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)


def save_pretrained(model, directory: str | Path, tokenizer=None) -> Path:
    fields = {"model": model.config.to_dict()}
    if tokenizer is not None:
        fields["tokenizer"] = tokenizer.to_dict()
    return save_model_files(model, directory, FORMAT, FORMAT_VERSION, fields)


def save_model_files(model, directory: str | Path, format: str, version: int, fields: dict) -> Path:
    """``model``'s state dict as ``directory/model.safetensors`` (atomic) and ``config.json``: the format name and
    version, the recurlab version, ``fields`` and the digest of the weights file. Shared by every saved model kind
    (language models here, image classifiers in :mod:`recurlab.vision.saved`)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(directory / "model.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": format, "format_version": str(version)})
    meta = {"format": format, "format_version": version, "recurlab_version": __version__, **fields,
            "files": {"model.safetensors": file_digest(directory / "model.safetensors")}}
    write_json(directory / "config.json", meta)
    return directory


def file_digest(path: Path) -> dict:
    """{"sha256": hex digest, "bytes": size} of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"sha256": digest.hexdigest(), "bytes": path.stat().st_size}


def verify_files(directory: Path, meta: dict) -> None:
    """A ValueError naming the first file whose size or SHA-256 differs from what config.json recorded."""
    for name, expected in meta.get("files", {}).items():
        path = directory / name
        if not path.exists():
            raise FileNotFoundError(f"no {name} in {directory}")
        got = file_digest(path)
        if got != expected:
            raise ValueError(f"{path} does not match config.json (sha256 {got['sha256'][:12]}..., {got['bytes']} bytes; "
                             f"recorded {expected['sha256'][:12]}..., {expected['bytes']} bytes): the file is damaged "
                             f"or was changed after it was saved")


def read_config(directory: str | Path, format: str = FORMAT, readable: tuple[int, ...] = READABLE_VERSIONS) -> dict:
    """``directory/config.json``, checked to be of ``format`` in one of the ``readable`` versions."""
    path = Path(directory) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"no config.json in {directory}: not a saved recurlab model")
    meta = json.loads(path.read_text())
    if meta.get("format") != format:
        raise ValueError(f"{path} is not a {format} file (format={meta.get('format')!r})")
    if meta.get("format_version") not in readable:
        raise ValueError(f"{path} has format version {meta.get('format_version')} (written by recurlab "
                         f"{meta.get('recurlab_version')}); this recurlab ({__version__}) reads versions "
                         f"{', '.join(map(str, readable))}")
    return meta


def check_dtype(dtype) -> None:
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"dtype must be a floating torch.dtype (e.g. torch.bfloat16) or None, got {dtype!r}")


def load_pretrained(cls, directory: str | Path, map_location: str | torch.device = "cpu",
                    dtype: torch.dtype | None = None):
    """The saved model in eval mode, on ``map_location``, in ``dtype`` (None: the dtype its weights were saved in,
    so a bfloat16 file loads as bfloat16 rather than silently widened to float32)."""
    check_dtype(dtype)
    meta = read_config(directory)
    model = cls(ModelConfig.from_dict(meta["model"]))
    rename = None
    if meta["format_version"] == 1:  # the stack's blocks were the model's own: blocks.i -> depth.blocks.i
        rename = lambda k: "depth." + k if k.startswith("blocks.") else k  # noqa: E731
    return load_model_files(model, directory, meta, map_location, dtype, rename)


def load_model_files(model, directory: str | Path, meta: dict, map_location: str | torch.device = "cpu",
                     dtype: torch.dtype | None = None, rename=None):
    """Load ``directory/model.safetensors`` into ``model`` after checking the file against ``meta`` (its digest)
    and the model (no missing, unexpected or mis-shaped tensors, each named); ``rename`` maps saved names to the
    model's. Returns the model in eval mode on ``map_location`` in ``dtype`` (None: the saved dtype)."""
    weights_path = Path(directory) / "model.safetensors"
    if not weights_path.exists():
        raise FileNotFoundError(f"no model.safetensors in {directory}")
    verify_files(Path(directory), meta)
    weights = load_file(str(weights_path), device=str(map_location))
    if rename is not None:
        weights = {rename(k): v for k, v in weights.items()}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        parts = ([f"missing tensors: {', '.join(missing)}"] if missing else []) + \
                ([f"unexpected tensors: {', '.join(unexpected)}"] if unexpected else [])
        raise ValueError(f"{weights_path} does not match the model in config.json: " + "; ".join(parts))
    wrong = [f"{k} {tuple(weights[k].shape)} (model: {tuple(expected[k].shape)})" for k in expected
             if weights[k].shape != expected[k].shape]
    if wrong:
        raise ValueError(f"{weights_path} has tensors of the wrong shape: {', '.join(wrong)}")
    if dtype is None:
        saved = {v.dtype for v in weights.values() if v.is_floating_point()}
        dtype = saved.pop() if len(saved) == 1 else torch.float32
    model.to(dtype=dtype).load_state_dict(weights)
    return model.to(map_location).eval()


def load_tokenizer(directory: str | Path):
    """The tokenizer saved with the model, or None."""
    from ..tasks.text import tokenizer_from_dict

    spec = read_config(directory).get("tokenizer")
    return tokenizer_from_dict(spec) if spec else None
