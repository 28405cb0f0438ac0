"""Timing helpers: medians of repeats with a time budget, alone or side by side."""

from __future__ import annotations

import math
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


def decode_side_by_side(models: dict, prompt: int, tokens: int, rounds: int, seed: int = 0) -> dict:
    """Greedy decoding of ``tokens`` tokens after a random ``prompt``-token prompt, batch 1, for every CausalLM of
    ``models`` (name -> model) side by side: interleaved rounds, medians, the prefill untimed. Returns
    {"tokens_per_s": {name: ...}, "state_bytes": {name: the decoding state's bytes at the end}, "threads"}."""
    state_bytes: dict[str, int] = {}

    def prefill(model):
        ids = torch.randint(0, model.config.vocab_size, (1, prompt), generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            return model(ids)[1], ids[:, -1]

    @torch.no_grad()
    def decode(prepared, name):
        state, token = prepared
        for _ in range(tokens):
            logits, state = models[name].step(token, state)
            token = logits.argmax(-1)
        state_bytes[name] = state.nbytes()

    timings = measure_interleaved({n: (lambda p, n=n: decode(p, n)) for n in models}, repeats=rounds,
                                  budget_s=math.inf, device=torch.device("cpu"), warmup={n: 0 for n in models},
                                  setup={n: (lambda m=m: prefill(m)) for n, m in models.items()})
    return {"tokens_per_s": {n: tokens / t.median_s for n, t in timings.items()}, "state_bytes": state_bytes,
            "threads": torch.get_num_threads()}
