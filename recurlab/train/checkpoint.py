"""Checkpoints that survive interruption: written to a temporary file, then renamed into place."""

from __future__ import annotations

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
    """Load a checkpoint written by :func:`save_atomic` (on the CPU)."""
    return torch.load(path, map_location="cpu", weights_only=False)
