"""Process-level settings that make PyTorch's CPU ops faster on Linux.

PyTorch's CPU allocator gets memory from glibc ``malloc``, which serves blocks
above its mmap threshold (at most 32 MiB) with fresh ``mmap`` pages and returns
them to the kernel on ``free``. Every large temporary then pays a page fault per
4 KiB page and the kernel's zeroing of it: on a 2-core machine a 32 MiB tensor
costs 8-12 ms to allocate and touch, several times the time to fill it (``recurlab bench allocator``
measures the difference in fresh processes). PyTorch's
performance guide recommends a caching allocator (jemalloc, tcmalloc) for this;
:func:`tune_cpu_allocator` gets the same effect from glibc by raising its mmap
and trim thresholds, so freed blocks are reused.

The ``recurlab`` command-line tool calls it at start (set
``RECURLAB_NO_ALLOCATOR_TUNING=1`` to skip); call it yourself at the top of a
training script to get the same speed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_THRESHOLD = 1 << 30  # 1 GiB: larger blocks still come from mmap

_tuned = False


def tune_cpu_allocator() -> bool:
    """Let glibc keep freed blocks up to 1 GiB for reuse. Returns True when applied.

    Does nothing (returns False) off Linux/glibc, or when the environment sets
    ``RECURLAB_NO_ALLOCATOR_TUNING=1``. Memory freed by PyTorch stays with the
    process instead of going back to the OS, so resident memory reflects the
    peak working set.
    """
    global _tuned
    if _tuned:
        return True
    if os.environ.get("RECURLAB_NO_ALLOCATOR_TUNING", "") not in ("", "0") or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = mallopt(_M_MMAP_THRESHOLD, _THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, 2 * _THRESHOLD - 1) == 1
    _tuned = bool(ok)
    return _tuned


def allocator_tuned() -> bool:
    """Whether :func:`tune_cpu_allocator` has been applied in this process."""
    return _tuned


def environment() -> dict:
    """What a measurement ran on: versions, threads, allocator tuning, the accelerator if any
    (recorded beside every benchmark's results and printed by ``recurlab info``)."""
    import platform

    import torch

    from . import __version__

    return {"recurlab": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "threads": torch.get_num_threads(), "allocator_tuned": allocator_tuned(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def describe() -> list[str]:
    """``recurlab info``: versions, threads, the compiled kernels (built here on first use) and the
    backends of every op on each device."""
    import torch

    from . import ops
    from .ops import _cpu_ext

    env = environment()
    kernels = f"ready ({_cpu_ext.extension_name()})" if _cpu_ext.available() else \
        f"unavailable: {_cpu_ext.status()['error']}"
    lines = [f"recurlab {env['recurlab']}, torch {env['torch']}, {env['threads']} threads",
             f"CUDA available: {torch.cuda.is_available()}", f"compiled CPU kernels: {kernels}",
             f"allocator tuned: {env['allocator_tuned']}"]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return lines + [f"  {op:<14} " + ", ".join(f"{d}: {' '.join(ops.available_backends(op, d))}" for d in devices)
                    for op in ops.BACKENDS]
