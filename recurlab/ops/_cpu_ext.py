"""Build (once, cached on disk) and load recurlab's compiled CPU kernels.

The kernels (C++ files beside the Python backend that calls them, listed in
``SOURCES`` relative to ``recurlab/ops``: ``diag_scan/diag_scan.cpp``, wrapped by
``diag_scan/cpu.py``) are compiled with torch's C++ extension tools the first
time a CPU op needs them and cached under torch's extension directory
(``$TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``), in
``recurlab/<extension_name()>``. The name is a hash of everything the binary
depends on (:func:`build_key`: the sources' content, the compiler and its flags,
torch, Python, this CPU's instruction-set flags) and of the folder the sources
live in. Torch's build files record absolute source paths, so two checkouts or
virtual environments sharing one build folder would recompile each other's
kernel on every switch; with the folder in the key each install keeps its own
build, and a shared home directory across machines never loads a kernel built for
another CPU. ``recurlab info`` builds them ahead of time.

When no C++ compiler is present, or the build fails, or the environment sets
``RECURLAB_DISABLE_CPU_KERNELS=1``, ``available()`` returns False after one
RuntimeWarning, and ops fall back to their ``chunk`` backend.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
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


def build_key(source_dir: Path | None = None, sources: tuple[str, ...] = SOURCES) -> dict[str, str]:
    """Everything the compiled binary depends on, and the folder its sources live in."""
    source_dir = Path(source_dir or _source_dir()).resolve()
    content = hashlib.sha256()
    for name in sources:
        content.update(name.encode() + b"\0" + (source_dir / name).read_bytes())
    return {
        "source_dir": str(source_dir),
        "sources": content.hexdigest(),
        "cflags": " ".join(CFLAGS),
        "ldflags": " ".join(LDFLAGS),
        "compiler": _compiler_identity(),
        "torch": f"{torch.__version__} {getattr(torch.version, 'git_version', '')} "
                 f"cxx11abi={getattr(torch._C, '_GLIBCXX_USE_CXX11_ABI', '?')}",
        "python": f"{sys.version_info.major}.{sys.version_info.minor}{getattr(sys, 'abiflags', '')}",
        "cpu": _cpu_flags(),
    }


def extension_name(source_dir: Path | None = None, sources: tuple[str, ...] = SOURCES) -> str:
    """Name of the cached build: changes whenever :func:`build_key` does (sources, their folder,
    compiler, flags, torch, Python, CPU)."""
    key = json.dumps(build_key(source_dir, sources), sort_keys=True)
    return "recurlab_cpu_" + hashlib.sha256(key.encode()).hexdigest()[:16]


def build_directory(source_dir: Path | None = None, sources: tuple[str, ...] = SOURCES) -> Path:
    """Where the kernels of the sources in ``source_dir`` are built: one folder per
    :func:`extension_name` under ``$TORCH_EXTENSIONS_DIR`` (or torch's default root)."""
    from torch.utils.cpp_extension import get_default_build_root

    root = os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root()
    return Path(root) / "recurlab" / extension_name(source_dir, sources)


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CXX", "c++"))


@functools.lru_cache(maxsize=None)
def _compiler_version(path: str) -> str:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.strip().splitlines()[0] if out.strip() else "unknown"


def _compiler_identity() -> str:
    path = _compiler()
    if path is None:
        return "none"
    real = os.path.realpath(path)
    return f"{real} {_compiler_version(real)}"


def build(source_dir: Path | None = None, sources: tuple[str, ...] = SOURCES) -> Path:
    """Compile ``sources`` (relative to ``source_dir``, default recurlab/ops) into their own
    build folder, or reuse it when nothing changed, and load the library; returns its path."""
    from torch.utils.cpp_extension import load

    if _compiler() is None:
        raise RuntimeError(f"no C++ compiler found (looked for {os.environ.get('CXX', 'c++')!r} on PATH)")
    source_dir = Path(source_dir or _source_dir())
    name = extension_name(source_dir, sources)
    directory = build_directory(source_dir, sources)
    directory.mkdir(parents=True, exist_ok=True)
    load(
        name=name,
        sources=[str(source_dir / s) for s in sources],
        extra_cflags=list(CFLAGS),
        extra_ldflags=list(LDFLAGS),
        build_directory=str(directory),
        is_python_module=False,
        verbose=False,
    )
    key_file = directory / "build_key.json"  # what this build was made from, for whoever looks in the folder
    if not key_file.exists():
        key_file.write_text(json.dumps(build_key(source_dir, sources), indent=1, sort_keys=True) + "\n")
    return directory / f"{name}.so"


def _constant_under_compile(fn):
    """torch.compile calls ``fn`` once while tracing and keeps its result as a constant (the lock and
    the build inside would otherwise break the graph)."""
    mark = getattr(getattr(torch, "compiler", None), "assume_constant_result", None)
    return mark(fn) if mark is not None else fn


@_constant_under_compile
def available() -> bool:
    """True when the compiled CPU kernels are loaded (building them on first call).

    Under torch.compile it runs once at trace time and its answer is a constant of the graph.
    """
    if _state["tried"]:
        return _state["ok"]
    with _lock:
        if _state["tried"]:
            return _state["ok"]
        if os.environ.get(DISABLE_ENV, "") not in ("", "0"):
            _state["error"] = f"disabled by {DISABLE_ENV}"
        else:
            try:
                build()
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
