"""Python source code for language modelling, offline: the standard library's own ``.py`` files.

The interpreter ships its standard library as source (``sysconfig.get_paths()["stdlib"]``), so real code
is always at hand without a download. :func:`stdlib_code` splits it **by file** (a file's text is all in
train or all in validation, so validation is code the model has never seen a line of):

- files: every ``*.py`` under the stdlib folder except ``site-packages`` (installed packages, not the
  standard library) and ``__pycache__``; test suites are kept (they are Python too);
- order: by the SHA-256 of the file's path relative to the folder (deterministic, and a byte cap takes
  files from every package instead of those whose names come first);
- split: a file is validation when that hash mod 1000 < 1000 x val_fraction (a fixed subset);
- cap: files are taken whole, in that order, when they fit in what is left of the split's share of
  ``max_bytes`` (train: (1 - val_fraction) x max_bytes, validation: val_fraction x max_bytes), counted
  in bytes on disk (the stdlib is UTF-8: on disk and in the text the same, unless a file has bytes that
  do not decode, which are replaced).

Files are joined by a blank line; text is read as UTF-8 (undecodable bytes replaced). The same Python
version gives the same text; another version's stdlib differs.
"""

from __future__ import annotations

import hashlib
import os
import sysconfig
from pathlib import Path


def stdlib_root() -> Path:
    """The folder of this interpreter's standard library."""
    return Path(sysconfig.get_paths()["stdlib"])


def path_hash(relative: str) -> int:
    """A stable integer hash of a relative path (the first 8 bytes of its SHA-256)."""
    return int.from_bytes(hashlib.sha256(relative.encode("utf-8")).digest()[:8], "big")


def stdlib_files(root: str | Path | None = None) -> list[str]:
    """The ``*.py`` files under ``root`` (default: the stdlib), as relative POSIX paths in hash order."""
    root = Path(root) if root is not None else stdlib_root()
    if not root.is_dir():
        raise FileNotFoundError(f"no standard library folder at {root}")
    files = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [d for d in subfolders if d not in ("site-packages", "__pycache__")]  # not walked
        files += [(Path(folder) / name).relative_to(root).as_posix() for name in names if name.endswith(".py")]
    return sorted(files, key=lambda rel: (path_hash(rel), rel))


def is_validation_file(relative: str, val_fraction: float) -> bool:
    """Whether a file (its relative path) belongs to the validation split."""
    return path_hash(relative) % 1000 < round(1000 * val_fraction)


def stdlib_code(max_bytes: int = 2_000_000, val_fraction: float = 0.1, root: str | Path | None = None
                ) -> tuple[str, str]:
    """(train text, validation text) of Python source, split by file (module docstring).

    max_bytes: the two splits together hold at most this many UTF-8 bytes. val_fraction in (0, 1)."""
    if not isinstance(max_bytes, int) or max_bytes < 1:
        raise ValueError(f"max_bytes must be an int >= 1, got {max_bytes!r}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction!r}")
    root = Path(root) if root is not None else stdlib_root()
    caps = {False: (1 - val_fraction) * max_bytes, True: val_fraction * max_bytes}
    parts: dict[bool, list[str]] = {False: [], True: []}
    sizes = {False: 0, True: 0}
    for rel in stdlib_files(root):
        split = is_validation_file(rel, val_fraction)
        size = (root / rel).stat().st_size + 2  # + the blank line that joins files
        if sizes[split] + size > caps[split]:
            continue  # a smaller file later in the order may still fit
        parts[split].append((root / rel).read_bytes().decode("utf-8", errors="replace"))
        sizes[split] += size
    return "\n\n".join(parts[False]), "\n\n".join(parts[True])
