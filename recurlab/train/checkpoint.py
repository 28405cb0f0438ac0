"""Checkpoints that survive interruption: written to a temporary file, then renamed into place."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from ..files import atomic_path


def save_atomic(obj: Any, path: str | Path) -> Path:
    """torch.save to a temporary file beside ``path``, fsync, then rename over ``path``.

    A crash at any moment leaves either the previous checkpoint or the new one, never a torn file.
    """
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def load(path: str | Path) -> dict:
    """Load a checkpoint written by :func:`save_atomic` (on the CPU).

    Only plain data is read (``weights_only=True``: tensors, numbers, strings, lists, tuples and dicts):
    a checkpoint whose pickle asks to run code while loading (a tampered file) is refused with a
    ValueError naming the file, and nothing in it runs.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(f"{path} is not a plain-data recurlab checkpoint: its pickle asks for "
                         f"{_first_line(error)}; refusing to load it (nothing in it was run)") from None


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
