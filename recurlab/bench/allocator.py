"""``recurlab bench allocator``: what :func:`recurlab.perf.tune_cpu_allocator` buys, in fresh processes.

The tuning is a process-wide glibc setting that cannot be undone cleanly, so each measurement runs
in a child process started with or without ``RECURLAB_NO_ALLOCATOR_TUNING=1``; the two kinds of
child alternate (untuned, tuned, untuned, ...) so that machine noise hits both alike. A child
builds the inputs, runs the op once to warm up, then times ``inner`` calls and prints their
median; the report gives, per op, the median over children and the ratio untuned / tuned.

Ops (B x T x D float32 tensors, 32 MiB at the default 8 x 4096 x 256):

- ``clone``: one copy of a tensor (allocate, fault in, write);
- ``diag_scan forward``: the ``cpu`` backend, no autograd;
- ``diag_scan forward+backward``: the ``cpu`` backend, a dense random output gradient.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass

from ..configs import check_fields, param
from .harness import Benchmark, Context, Finished, Report, settings
from .report import markdown_table

OPS = ("clone", "diag_scan forward", "diag_scan forward+backward")


@dataclass
class AllocatorBenchConfig:
    ops: tuple[str, ...] = param(OPS, axis=True, choices=OPS)
    batch: int = param(8, ge=1)
    seq_len: int = param(4096, ge=1)
    width: int = param(256, ge=1)
    processes: int = param(5, ge=1)  # children of each kind, alternating
    inner: int = param(20, ge=1)  # timed calls inside one child
    threads: int = param(0, ge=0)  # torch threads in a child; 0 keeps torch's default

    def __post_init__(self):
        check_fields(self)

    @classmethod
    def quick(cls, **overrides) -> "AllocatorBenchConfig":
        return cls(**{"processes": 3, "inner": 10, **overrides})


def child(op: str, batch: int, seq_len: int, width: int, inner: int, threads: int) -> dict:
    """Run in a fresh process: {"ms": the median time of ``op`` in milliseconds, "tuned": whether the
    allocator tuning is on in this process}."""
    from .. import perf
    perf.tune_cpu_allocator()  # a no-op under RECURLAB_NO_ALLOCATOR_TUNING=1
    import time

    import torch
    import torch.nn.functional as F

    from .. import ops

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    log_a = F.logsigmoid(torch.randn(batch, seq_len, width))
    b = torch.randn(batch, seq_len, width)
    if op == "clone":
        def call():
            return b.clone()
    elif op == "diag_scan forward":
        def call():
            with torch.no_grad():
                return ops.diag_scan(log_a, b, backend="cpu")
    else:
        la, bb, grad = log_a.clone().requires_grad_(True), b.clone().requires_grad_(True), torch.randn_like(b)

        def call():
            la.grad = bb.grad = None
            h, _ = ops.diag_scan(la, bb, backend="cpu")
            h.backward(grad)
    call()
    times = []
    for _ in range(inner):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return {"ms": 1e3 * statistics.median(times), "tuned": perf.allocator_tuned()}


def _run_child(job: dict, tuned: bool) -> float:
    env = {**os.environ, "RECURLAB_NO_ALLOCATOR_TUNING": "0" if tuned else "1"}
    args = {k: job[k] for k in ("op", "batch", "seq_len", "width", "inner", "threads")}
    code = f"import json; from recurlab.bench.allocator import child; print(json.dumps(child(**{args!r})))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"allocator child for {job['op']!r} failed:\n{done.stderr.strip()}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["tuned"] != tuned:
        raise RuntimeError(f"the allocator tuning could not be {'applied' if tuned else 'left off'} in a child "
                           "process (it needs Linux with glibc): nothing to compare")
    return result["ms"]


def _jobs(cfg: AllocatorBenchConfig) -> list[dict]:
    shared = settings(cfg)
    return [{"op": op, **shared} for op in cfg.ops]


def _measure(job: dict, ctx: Context) -> dict:
    untuned, tuned = [], []
    for _ in range(job["processes"]):
        untuned.append(_run_child(job, tuned=False))
        tuned.append(_run_child(job, tuned=True))
    return {"untuned_ms": statistics.median(untuned), "tuned_ms": statistics.median(tuned),
            "untuned_runs": untuned, "tuned_runs": tuned}


def _report(cfg: AllocatorBenchConfig, finished: Finished) -> Report:
    rows, data = [], []
    for job, result in finished:
        ratio = result["untuned_ms"] / result["tuned_ms"]
        rows.append([job["op"], f"{result['untuned_ms']:.2f}", f"{result['tuned_ms']:.2f}", f"{ratio:.1f}x"])
        data.append({"op": job["op"], "untuned_ms": result["untuned_ms"], "tuned_ms": result["tuned_ms"],
                     "ratio": ratio})
    size = f"{cfg.batch} x {cfg.seq_len} x {cfg.width} float32"
    markdown = "\n\n".join([
        "# Allocator tuning: ms per call, fresh processes with and without it",
        f"Tensors {size}; median of {cfg.inner} calls per process, median over {cfg.processes} processes of "
        "each kind, run alternately. Produced by `recurlab bench allocator`.",
        markdown_table(["op", "untuned ms", "tuned ms", "untuned / tuned"], rows)])
    return Report(markdown + "\n", {"rows": data})


BENCHMARK = Benchmark(name="allocator", config=AllocatorBenchConfig, jobs=_jobs, measure=_measure, report=_report,
                      label=lambda job: job["op"], resume=False,
                      summary=lambda job, r: f"{job['op']}: untuned {r['untuned_ms']:.2f} ms, "
                                             f"tuned {r['tuned_ms']:.2f} ms")
