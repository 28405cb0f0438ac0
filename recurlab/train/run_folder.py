"""A training run's output folder: one run at a time, nothing overwritten by accident, no debris.

    with RunFolder(out_dir, resume=False, overwrite=False) as folder:   # takes the folder's lock
        ...train, writing folder.path / "checkpoint.pt", "metrics.jsonl", ...

- **Lock.** An exclusive ``flock`` on ``OUT/.lock`` for the whole run: a second run into the same
  folder stops at once with a ValueError naming the folder and the process that holds it (two
  runs used to interleave their metrics and overwrite each other's checkpoints). The lock is the
  kernel's, so a killed run never leaves a stale one behind.
- **No accidental restart.** Starting fresh over a folder that holds a checkpoint is refused unless
  ``overwrite`` (then the old checkpoint and metrics go first); ``resume`` continues it. Metrics
  without a checkpoint (a run killed before its first one) are the debris of a run that cannot be
  continued, and a fresh start removes them instead of appending to them.
- **Debris.** Temporary files of writes that a killed run left half-done (``*.tmp``) are removed:
  under the lock no other process can be writing them.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

RUN_FILES = ("checkpoint.pt", "metrics.jsonl")


class RunFolder:
    def __init__(self, path: str | Path, resume: bool = False, overwrite: bool = False):
        if resume and overwrite:
            raise ValueError("resume and overwrite exclude each other: continue the run, or start it again")
        self.path = Path(path)
        self.resume, self.overwrite = resume, overwrite
        self._lock_file = None

    def __enter__(self) -> "RunFolder":
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            self._clean_debris()
            self._check_start()
        except BaseException:
            self._unlock()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._unlock()

    def _lock(self) -> None:
        lock = open(self.path / ".lock", "a+")
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            lock.close()
            raise ValueError(f"another run is writing into {self.path} (pid {holder}); wait for it to finish or "
                             f"choose another --out") from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        self._lock_file = lock

    def _unlock(self) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def _clean_debris(self) -> None:
        for tmp in self.path.glob("*.tmp"):
            tmp.unlink(missing_ok=True)

    def check(self) -> None:
        """Raise now if the run cannot start in this folder (nothing to resume, or a run that would be
        replaced without ``overwrite``); lets a command refuse before it builds data and models.
        :meth:`__enter__` checks again under the lock."""
        checkpoint = self.path / "checkpoint.pt"
        if self.resume and not checkpoint.exists():
            raise FileNotFoundError(f"cannot resume: no checkpoint at {checkpoint}")
        if not self.resume and checkpoint.exists() and not self.overwrite:
            raise ValueError(f"{self.path} already holds a training run (checkpoint.pt); continue it with --resume "
                             f"or start it again with --overwrite")

    def _check_start(self) -> None:
        self.check()
        if self.resume:
            return
        for name in RUN_FILES:
            (self.path / name).unlink(missing_ok=True)
