"""Timing helpers: medians of repeats with a time budget, alone or side by side."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch


@dataclass
class Timing:
    median_s: float
    runs_s: list[float] = field(default_factory=list)

    @property
    def ms(self) -> float:
        return 1e3 * self.median_s


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(fn: Callable[[], object], *, repeats: int, budget_s: float, device: torch.device,
            warmup: int = 1) -> Timing:
    """Median wall time of ``fn`` over up to ``repeats`` runs after ``warmup`` runs.

    Stops early (keeping at least one timed run) once ``budget_s`` seconds have
    been spent, so that slow baselines at long lengths stay affordable; the
    number of runs is reported with the median.
    """
    for _ in range(warmup):
        fn()
    synchronize(device)
    runs: list[float] = []
    spent = 0.0
    while len(runs) < repeats and (not runs or spent < budget_s):
        start = time.perf_counter()
        fn()
        synchronize(device)
        runs.append(time.perf_counter() - start)
        spent += runs[-1]
    return Timing(statistics.median(runs), runs)


def measure_interleaved(fns: dict[str, Callable[..., object]], *, repeats: int, budget_s: float,
                        device: torch.device, warmup: dict[str, int] | None = None,
                        setup: dict[str, Callable[[], object]] | None = None) -> dict[str, Timing]:
    """Time several functions side by side: round-robin, one run of each per round.

    Machine noise (other tenants, frequency changes) then hits every candidate
    alike, so their ratios are steadier than with one block of runs each. A
    function leaves the rotation after ``repeats`` runs or once its runs exceed
    ``budget_s`` seconds (keeping at least one). Every side-by-side measurement
    of recurlab (ops, layers, training and decoding speed) goes through here.

    ``setup[name]``, when given, runs untimed before every run of ``fns[name]``
    (warm-ups included) and its return value is passed to it: a decoding
    benchmark prefills there and times only the decoding.
    """
    warmup, setup = warmup or {}, setup or {}

    def call(name):
        if name in setup:
            prepared = setup[name]()
            synchronize(device)
            start = time.perf_counter()
            fns[name](prepared)
        else:
            start = time.perf_counter()
            fns[name]()
        synchronize(device)
        return time.perf_counter() - start

    for name in fns:
        for _ in range(warmup.get(name, 1)):
            call(name)
    runs: dict[str, list[float]] = {name: [] for name in fns}
    active = list(fns)
    while active:
        for name in list(active):
            runs[name].append(call(name))
            if len(runs[name]) >= repeats or sum(runs[name]) >= budget_s:
                active.remove(name)
    return {name: Timing(statistics.median(r), r) for name, r in runs.items()}
