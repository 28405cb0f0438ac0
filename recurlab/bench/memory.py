"""Peak memory of a token mixer's forward pass against the sequence length.

Sliding-window attention must prefill in O(T * window) memory, not O(T^2) (issue 13, item 2);
``peak_memory_vs_length(["swa", "liger"], [2048, 8192, 32768], 16)`` shows how each mixer grows.

Torch's CPU allocator keeps no statistics and tracemalloc does not see tensor memory, so the peak
is read from the torch profiler (``profile_memory=True``): its allocation events carry the running
total of bytes torch has allocated, and the peak of a call is the largest running total during it
minus the total before it. That counts every tensor torch allocates (outputs included, inputs and
weights excluded), not memory a library allocates on its own (MKL or oneDNN scratch), nor what the
process's malloc keeps cached. ``method="rss"`` measures the resident-set high-water mark of a fresh
subprocess per point instead (coarser: it includes the interpreter's own peaks).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Sequence

import torch

from .. import layers


def forward_peak_bytes(fn: Callable[[], object]) -> int:
    """Peak bytes torch allocates while ``fn()`` runs, above what was allocated when it started."""
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    allocations = []  # (time, bytes: negative for a free, running total after it)
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        event = stack.pop()
        if event.tag == _EventType.Allocation:
            fields = event.extra_fields
            allocations.append((event.start_time_ns, fields.alloc_size, fields.total_allocated))
        stack.extend(event.children)
    if not allocations:
        return 0
    allocations.sort(key=lambda a: a[0])
    start = allocations[0][2] - allocations[0][1]  # the running total before the first event
    return max(total for _, _, total in allocations) - start


def _build(name: str, d_model: int, kwargs: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    return layers.build(name, d_model, **kwargs).eval()


def _point_rss(name: str, d_model: int, seq_len: int, batch: int, kwargs: dict) -> int:
    """Resident-set high-water mark of one forward pass, in a fresh process, above its RSS before it."""
    script = (
        "import json, resource, sys, torch\n"
        "from recurlab.bench.memory import _build\n"
        "name, d, T, B, kw = json.loads(sys.argv[1])\n"
        "layer = _build(name, d, kw)\n"
        "x = torch.randn(B, T, d)\n"
        "def rss():\n"
        "    with open('/proc/self/statm') as f:\n"
        "        return int(f.read().split()[1]) * resource.getpagesize()\n"
        "before = max(rss(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)\n"
        "with torch.no_grad():\n"
        "    layer(x)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before)\n"
    )
    out = subprocess.run([sys.executable, "-c", script, json.dumps([name, d_model, seq_len, batch, kwargs])],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


def peak_memory_vs_length(
    mixer_names: Sequence[str],
    lengths: Sequence[int],
    d_model: int,
    *,
    batch: int = 1,
    mixer_kwargs: dict[str, dict] | None = None,
    method: str = "profiler",
) -> list[dict]:
    """Peak memory of one forward pass (no gradients: a prefill) of each mixer at each length.

    Args:
        mixer_names: registered token mixers, e.g. ["swa", "liger"].
        lengths: sequence lengths T.
        d_model: model width.
        batch: batch size B.
        mixer_kwargs: per mixer, constructor arguments (e.g. {"swa": {"window": 128}}).
        method: "profiler" (bytes torch allocates, in this process) or "rss" (resident-set
            high-water mark of a fresh subprocess per point).

    Returns:
        One row per (mixer, length): {"mixer", "seq_len", "d_model", "batch", "peak_bytes",
        "bytes_per_token"}.
    """
    if method not in ("profiler", "rss"):
        raise ValueError(f"method must be 'profiler' or 'rss', got {method!r}")
    mixer_kwargs = mixer_kwargs or {}
    rows = []
    for name in mixer_names:
        kwargs = dict(mixer_kwargs.get(name, {}))
        layer = _build(name, d_model, kwargs) if method == "profiler" else None
        for T in lengths:
            if method == "profiler":
                x = torch.randn(batch, T, d_model)
                with torch.no_grad():
                    peak = forward_peak_bytes(lambda: layer(x))
                del x
            else:
                peak = _point_rss(name, d_model, T, batch, kwargs)
            rows.append({"mixer": name, "seq_len": T, "d_model": d_model, "batch": batch, "peak_bytes": peak,
                         "bytes_per_token": peak / (batch * T)})
    return rows


def markdown(rows: list[dict]) -> str:
    """The rows as a table: mixer | T | peak MiB | bytes per token."""
    lines = ["| mixer | T | peak MiB | bytes / token |", "|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['mixer']} | {r['seq_len']} | {r['peak_bytes'] / 2**20:.1f} | {r['bytes_per_token']:.0f} |")
    return "\n".join(lines)
