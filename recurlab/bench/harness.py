"""The experiment harness: every benchmark is a declaration run by :func:`run`.

A :class:`Benchmark` declares

    config    a dataclass of settings (``quick()`` for the minutes-long variant); fields marked
              ``axis`` (``param(..., axis=True)``) list the points of a sweep, the others are settings
    jobs      config -> list of jobs; a job is a JSON-able dict of everything that determines one
              measurement (its sweep point, the settings, the jobs it builds on)
    measure   (job, Context) -> result, a JSON-able dict
    report    (config, [(job, result), ...]) -> Report: markdown, data for results.json, a plot

and :func:`run` loops over the jobs with a progress bar, skips those already in the run log,
and rewrites the results after every measured job, so an interrupted run still reports and a
rerun continues where it stopped. Files in the output folder:

    runs.jsonl     the run log, one line per finished job: {"key", "job", "result"}. The key is a
                   hash of the whole job (canonical JSON), never of a hand-kept list of fields: a
                   job is reused only when everything it depends on is equal. A torn last line
                   (an interrupted write) is dropped with a warning.
    results.json   {"benchmark", "config", "environment", **report.data}, written atomically
    results.md     the report's markdown
    <plot>.png     the report's plot
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .. import perf
from ..files import append_jsonl, atomic_path, read_jsonl, write_json, write_text

Finished = list[tuple[dict, dict]]


def canonical(job: dict) -> str:
    """The job as canonical JSON: sorted keys, no spaces, tuples as lists."""
    return json.dumps(job, sort_keys=True, separators=(",", ":"), allow_nan=False)


def job_key(job: dict) -> str:
    """The run log's key of a job: a hash of all of it."""
    return hashlib.sha256(canonical(job).encode()).hexdigest()[:16]


def settings(cfg: Any) -> dict:
    """The config as a dict without its sweep axes (fields with ``axis`` metadata): what every job of
    a sweep shares. Every other field is in it, so a new field enters every job's key by itself."""
    return {f.name: _plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg) if not f.metadata.get("axis")}


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value))


class RunLog:
    """Finished jobs, one JSON line each; ``resume=False`` starts a new log (timings measured afresh)."""

    def __init__(self, path: Path, resume: bool = True):
        self.path = Path(path)
        self.rows: dict[str, dict] = {}
        if resume:
            self.rows = {row["key"]: row for row in read_jsonl(self.path)}
        elif self.path.exists():
            self.path.unlink()

    def get(self, job: dict) -> dict | None:
        """The result of ``job`` if it finished before, else None."""
        row = self.rows.get(job_key(job))
        return None if row is None else row["result"]

    def add(self, job: dict, result: dict) -> dict:
        row = {"key": job_key(job), "job": job, "result": result}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        append_jsonl(self.path, row)
        self.rows[row["key"]] = row
        return result


@dataclass
class Report:
    markdown: str
    data: dict = field(default_factory=dict)
    plot: Callable[[Path], object] | None = None  # draws the figure into the path it is given


@dataclass
class Context:
    """What a measure function gets besides its job."""

    out_dir: Path
    log: RunLog
    progress: bool = True  # show progress inside long jobs (training steps)
    echo: Callable[[str], object] = tqdm.write
    memo: dict = field(default_factory=dict)

    def cached(self, key: Any, build: Callable[[], Any]) -> Any:
        """``build()`` once per run for data several jobs share (a dataset, a corpus)."""
        if key not in self.memo:
            self.memo[key] = build()
        return self.memo[key]


@dataclass
class Benchmark:
    name: str
    config: type
    jobs: Callable[[Any], list[dict]]
    measure: Callable[[dict, Context], dict]
    report: Callable[[Any, Finished], Report]
    plot_file: str | None = None
    out: str = ""  # the default output folder (bench-results/<name>)
    check: Callable[[Any], list[str]] | None = None  # failures that forbid reporting speeds
    skip: Callable[[Any, dict, RunLog], bool] | None = None  # (config, job, log): made pointless by finished jobs
    label: Callable[[dict], str] = lambda job: ""  # noqa: E731  (the progress bar's note on a job)
    summary: Callable[[dict, dict], str] | None = None  # a line printed when a job finishes
    resume: bool = True  # reuse finished jobs of the run log (timing benchmarks measure afresh)

    def __post_init__(self):
        self.out = self.out or f"bench-results/{self.name}"


def run(bench: Benchmark, cfg: Any, out_dir: str | Path, *, progress: bool = True,
        echo: Callable[[str], object] = tqdm.write) -> dict:
    """Run (or continue) ``bench`` under ``cfg`` into ``out_dir``; returns what results.json holds."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = RunLog(out_dir / "runs.jsonl", resume=bench.resume)
    jobs = bench.jobs(cfg)
    keys = [job_key(job) for job in jobs]  # fails early on a job that is not JSON
    reused = sum(k in log.rows for k in keys)
    if reused:
        echo(f"reusing {reused} finished jobs from {log.path}")
    todo = [job for job, k in zip(jobs, keys) if k not in log.rows]
    if todo and bench.check is not None:
        failures = bench.check(cfg)
        if failures:
            raise RuntimeError("refusing to report speeds: " + "; ".join(failures))
    ctx = Context(out_dir, log, progress, echo)
    bar = tqdm(total=len(jobs), desc=bench.name, unit="job", disable=not progress, dynamic_ncols=True)
    results = None
    for job in jobs:
        if log.get(job) is None and not (bench.skip and bench.skip(cfg, job, log)):
            bar.set_postfix_str(bench.label(job))
            start = time.perf_counter()
            result = log.add(job, {**bench.measure(job, ctx), "job_seconds": time.perf_counter() - start})
            if bench.summary is not None:
                echo(bench.summary(job, result))
            results = write_results(bench, cfg, _finished(jobs, log), out_dir)
        bar.update(1)
    bar.close()
    return results if results is not None else write_results(bench, cfg, _finished(jobs, log), out_dir)


def _finished(jobs: list[dict], log: RunLog) -> Finished:
    return [(job, log.get(job)) for job in jobs if log.get(job) is not None]


def write_results(bench: Benchmark, cfg: Any, finished: Finished, out_dir: Path) -> dict:
    """results.json (with the config and the environment), results.md and the plot, each atomically."""
    report = bench.report(cfg, finished)
    results = {"benchmark": bench.name, "config": _plain(cfg), "environment": perf.environment(), **report.data}
    write_json(out_dir / "results.json", results)
    write_text(out_dir / "results.md", report.markdown)
    if report.plot is not None and bench.plot_file:
        with atomic_path(out_dir / bench.plot_file) as tmp:
            report.plot(tmp)
    return results


def files_written(bench: Benchmark, out_dir: str | Path) -> str:
    """The line the CLI prints after a run."""
    out = Path(out_dir)
    names = ["results.json", "results.md", "runs.jsonl"] + ([bench.plot_file] if bench.plot_file else [])
    return f"wrote {', '.join(str(out / n) for n in names)}"
