"""Build (once, cached on disk) and load recurlab's compiled CPU kernels.

The kernels (C++ files beside the Python backend that calls them, listed in
``SOURCES`` relative to ``recurlab/ops``: ``diag_scan/diag_scan.cpp``, wrapped by
``diag_scan/cpu.py``) are compiled with torch's C++ extension tools the first
time a CPU op needs them and cached under torch's extension directory
(``$TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``). The cache key
covers the sources, the compiler flags, the torch version and this CPU's
instruction-set flags, so a shared home directory across different machines
never loads a kernel built for another CPU. ``recurlab info`` builds them ahead
of time.

When no C++ compiler is present, or the build fails, or the environment sets
``RECURLAB_DISABLE_CPU_KERNELS=1``, ``available()`` returns False after one
RuntimeWarning, and ops fall back to their ``chunk`` backend.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import threading
import warnings
from pathlib import Path

import torch

SOURCES = ("diag_scan/diag_scan.cpp",)  # relative to recurlab/ops
CFLAGS = ("-O3", "-march=native", "-fopenmp", "-fno-trapping-math")
LDFLAGS = ("-fopenmp",)
DISABLE_ENV = "RECURLAB_DISABLE_CPU_KERNELS"

_lock = threading.Lock()
_state: dict = {"tried": False, "ok": False, "error": None}
_fake_registered = False


def _source_dir() -> Path:
    """recurlab/ops: the directory ``SOURCES`` are relative to."""
    return Path(__file__).parent


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def extension_name() -> str:
    """Name of the cached build: changes whenever sources, flags, torch or CPU change."""
    digest = hashlib.sha256()
    for name in SOURCES:
        digest.update((_source_dir() / name).read_bytes())
    for part in (*CFLAGS, *LDFLAGS, torch.__version__, _cpu_flags()):
        digest.update(part.encode())
    return "recurlab_cpu_" + digest.hexdigest()[:12]


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CXX", "c++"))


def _build() -> None:
    from torch.utils.cpp_extension import load

    if _compiler() is None:
        raise RuntimeError(f"no C++ compiler found (looked for {os.environ.get('CXX', 'c++')!r} on PATH)")
    load(
        name=extension_name(),
        sources=[str(_source_dir() / name) for name in SOURCES],
        extra_cflags=list(CFLAGS),
        extra_ldflags=list(LDFLAGS),
        is_python_module=False,
        verbose=False,
    )
    _register_fake_kernels()


def _register_fake_kernels() -> None:
    """Shape-only implementations so torch.compile can trace through the ops."""
    register = getattr(torch.library, "register_fake", None)
    global _fake_registered
    if register is None or _fake_registered:
        return
    _fake_registered = True

    def acc(t: torch.Tensor) -> torch.dtype:
        return torch.float64 if t.dtype == torch.float64 else torch.float32

    @register("recurlab::diag_scan_fwd")
    def _(log_a, b, h0):
        return torch.empty_like(log_a), log_a.new_empty((log_a.shape[0], log_a.shape[2]), dtype=acc(log_a))

    @register("recurlab::diag_scan_bwd")
    def _(grad_h, grad_last, log_a, h, h0):
        return (
            torch.empty_like(log_a),
            torch.empty_like(log_a),
            log_a.new_empty((log_a.shape[0], log_a.shape[2]), dtype=acc(log_a)),
        )


def available() -> bool:
    """True when the compiled CPU kernels are loaded (building them on first call)."""
    if _state["tried"]:
        return _state["ok"]
    with _lock:
        if _state["tried"]:
            return _state["ok"]
        if os.environ.get(DISABLE_ENV, "") not in ("", "0"):
            _state["error"] = f"disabled by {DISABLE_ENV}"
        else:
            try:
                _build()
                _state["ok"] = True
            except Exception as exc:  # any build or load failure means: fall back
                _state["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else exc}"
        _state["tried"] = True
        if not _state["ok"]:
            warnings.warn(
                "recurlab: the compiled CPU kernels are unavailable "
                f"({_state['error']}); CPU ops fall back to the 'chunk' backend, which is slower. "
                "Install a C++ compiler (g++ or clang++) and ninja to enable them.",
                RuntimeWarning,
                stacklevel=3,
            )
        return _state["ok"]


def status() -> dict:
    """What happened on the last attempt: {'tried', 'ok', 'error'}."""
    return dict(_state)
