"""Benchmarks: measured side by side in one run, reported as tables, JSON and plots.

Benchmarks are not tests: they run at real sizes and take minutes. Each is a declaration on the
harness (:mod:`recurlab.bench.harness`: run log with resume, side-by-side timer, results writer),
listed here by name for ``recurlab bench NAME``. Each refuses to report a speed for a backend that
does not first match the reference.
"""

from __future__ import annotations

import importlib

# name -> module under recurlab.bench that defines BENCHMARK
BENCHMARKS = {"ops": "ops", "layers": "layers", "mqar": "mqar", "decode": "decode", "decoding": "decoding", "lm": "lm",
              "recursion": "recursion", "allocator": "allocator",
              "convert": "convert", "vision": "vision", "quantize": "quantize",
              "sorted": "sorted", "prune": "prune", "autoneural": "autoneural",
              "compress": "compress", "reasoning": "reasoning", "phonebook": "phonebook"}


def names() -> list[str]:
    return list(BENCHMARKS)


def load(name: str):
    """The :class:`recurlab.bench.harness.Benchmark` called ``name``; a ValueError lists the valid names."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; valid names: {', '.join(BENCHMARKS)}")
    return importlib.import_module(f"{__name__}.{BENCHMARKS[name]}").BENCHMARK


def summary(name: str) -> str:
    """The first line of the benchmark module's docstring, after its command."""
    doc = importlib.import_module(f"{__name__}.{BENCHMARKS[name]}").__doc__ or ""
    return doc.strip().splitlines()[0].split(": ", 1)[-1]
