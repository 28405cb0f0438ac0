"""Files that survive interruption: every write goes to a temporary file beside the target, is
flushed to disk (fsync) and renamed over it, so a crash leaves the old file or the new one, never
a torn one.

    write_text(path, "...")                      write_bytes(path, b"...")
    write_json(path, obj)                        # indented, sorted as given, newline at the end
    with atomic_path(path) as tmp:               # for writers that take a path:
        torch.save(obj, tmp)                     # torch.save, safetensors' save_file, savefig, ...
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed over ``path`` when the block succeeds.

    The temporary file keeps ``path``'s suffix (some writers choose the format by it) and is
    removed when the block raises, so nothing half-written is left behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _mode_for(path))  # mkstemp makes 0600; keep the file's or the umask's permissions
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any, indent: int | None = 2) -> Path:
    return write_text(path, json.dumps(obj, indent=indent) + "\n")


def _mode_for(path: Path) -> int:
    if path.exists():
        return path.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (a no-op where directories cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def read_jsonl(path: str | Path) -> list[dict]:
    """The JSON objects of a file written one line at a time (``runs.jsonl``, ``metrics.jsonl``).

    A process killed while appending leaves a torn last line: it is dropped with a warning and the
    file is rewritten without it, so that the next append starts on a fresh line. A bad line
    anywhere else is not an interruption and raises a ValueError naming it.
    """
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.strip()]
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as error:
            if number < len(lines):
                raise ValueError(f"{path}: line {number} is not JSON ({error}) and is not the last line, so it is "
                                 "not an interrupted write; fix or remove it") from None
            warnings.warn(f"{path}: dropping a torn last line (an interrupted write): {line[:60]!r}", RuntimeWarning,
                          stacklevel=2)
            write_text(path, "".join(json.dumps(row) + "\n" for row in rows))
            return rows
    if text and not text.endswith("\n"):
        write_text(path, text + "\n")  # the next append must start a line of its own
    return rows


def append_jsonl(path: str | Path, row: dict) -> None:
    """Append one JSON object as one line (read back by :func:`read_jsonl`)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())
