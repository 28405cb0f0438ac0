import json
from dataclasses import dataclass

import pytest

from recurlab.bench import harness
from recurlab.bench.harness import Benchmark, Report, RunLog, job_key, settings
from recurlab.configs import param


@dataclass
class ToyConfig:
    sizes: tuple[int, ...] = param((1, 2, 3), axis=True)
    scale: float = 2.0
    name: str = "toy"


def toy(calls: list, fail_at: int | None = None) -> Benchmark:
    def measure(job, ctx):
        if job["size"] == fail_at:
            raise KeyboardInterrupt  # the run is interrupted during this job
        calls.append(job["size"])
        return {"value": job["size"] * job["settings"]["scale"]}

    def report(cfg, finished):
        rows = [{"size": job["size"], **result} for job, result in finished]
        return Report(f"# {cfg.name}\n\n{len(rows)} rows\n", {"rows": rows},
                      lambda path: path.write_bytes(b"\x89PNG fake"))

    return Benchmark("toy", ToyConfig, lambda cfg: [{"size": s, "settings": settings(cfg)} for s in cfg.sizes],
                     measure, report, plot_file="toy.png")


def test_results_are_written_with_config_and_environment(tmp_path):
    calls = []
    result = harness.run(toy(calls), ToyConfig(), tmp_path, progress=False, echo=lambda m: None)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert saved["benchmark"] == "toy" and saved["config"] == {"sizes": [1, 2, 3], "scale": 2.0, "name": "toy"}
    assert {"recurlab", "torch", "threads", "allocator_tuned"} <= set(saved["environment"])
    assert [r["value"] for r in saved["rows"]] == [2.0, 4.0, 6.0] and calls == [1, 2, 3]
    assert (tmp_path / "results.md").read_text() == "# toy\n\n3 rows\n"
    assert (tmp_path / "toy.png").read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json", "results.md", "runs.jsonl", "toy.png"]


def test_an_interrupted_run_has_reported_and_a_rerun_continues(tmp_path):
    calls = []
    with pytest.raises(KeyboardInterrupt):
        harness.run(toy(calls, fail_at=3), ToyConfig(), tmp_path, progress=False, echo=lambda m: None)
    assert "2 rows" in (tmp_path / "results.md").read_text()  # written after every job
    messages = []
    harness.run(toy(calls), ToyConfig(), tmp_path, progress=False, echo=messages.append)
    assert calls == [1, 2, 3]  # 1 and 2 were not measured again
    assert messages == [f"reusing 2 finished jobs from {tmp_path / 'runs.jsonl'}"]


def test_a_torn_last_line_is_dropped_with_a_warning_and_its_job_runs_again(tmp_path):
    calls = []
    harness.run(toy(calls), ToyConfig(sizes=(1, 2)), tmp_path, progress=False, echo=lambda m: None)
    log = tmp_path / "runs.jsonl"
    with open(log, "a") as f:
        f.write('{"step": 1600, "lo')
    with pytest.warns(RuntimeWarning, match="torn last line"):
        harness.run(toy(calls), ToyConfig(sizes=(1, 2, 3)), tmp_path, progress=False, echo=lambda m: None)
    assert calls == [1, 2, 3]
    assert [json.loads(line)["job"]["size"] for line in log.read_text().splitlines()] == [1, 2, 3]


def test_the_key_covers_the_whole_job():
    job = {"size": 1, "settings": {"scale": 2.0, "name": "toy", "nested": {"a": [1, 2]}}}
    assert job_key(job) == job_key(json.loads(json.dumps(job, sort_keys=True)))  # order does not matter
    for changed in ({"size": 2}, {"settings": {**job["settings"], "scale": 2.5}},
                    {"settings": {**job["settings"], "nested": {"a": [1, 3]}}},
                    {"settings": {**job["settings"], "new_field": 0}}):
        assert job_key({**job, **changed}) != job_key(job)
    with pytest.raises(TypeError):
        job_key({"path": object()})  # a job must be JSON


def test_changing_any_setting_reruns_every_job(tmp_path):
    calls = []
    harness.run(toy(calls), ToyConfig(), tmp_path, progress=False, echo=lambda m: None)
    harness.run(toy(calls), ToyConfig(scale=3.0), tmp_path, progress=False, echo=lambda m: None)
    harness.run(toy(calls), ToyConfig(name="other"), tmp_path, progress=False, echo=lambda m: None)
    assert calls == [1, 2, 3] * 3
    harness.run(toy(calls), ToyConfig(sizes=(3, 4)), tmp_path, progress=False, echo=lambda m: None)
    assert calls[9:] == [4]  # an axis lists jobs: size 3 is the same job as before


def test_a_fresh_log_when_the_benchmark_does_not_resume(tmp_path):
    calls = []
    bench = toy(calls)
    bench.resume = False
    harness.run(bench, ToyConfig(), tmp_path, progress=False, echo=lambda m: None)
    harness.run(bench, ToyConfig(), tmp_path, progress=False, echo=lambda m: None)
    assert calls == [1, 2, 3] * 2 and len(RunLog(tmp_path / "runs.jsonl").rows) == 3


def test_a_failed_check_refuses_to_measure(tmp_path):
    calls = []
    bench = toy(calls)
    bench.check = lambda cfg: ["op/backend: off by 1e-2"]
    with pytest.raises(RuntimeError, match="refusing to report speeds: op/backend: off by 1e-2"):
        harness.run(bench, ToyConfig(), tmp_path, progress=False, echo=lambda m: None)
    assert calls == []


def _candidates(value, f):
    """Other valid-looking values for a field, by its current value and metadata."""
    choices = f.metadata.get("choices")
    choices = list(choices() if callable(choices) else choices) if choices is not None else None
    schema = f.metadata.get("schema")
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 1, value + 2, value * 2]
    if isinstance(value, float):
        return [value / 2, value + 1]
    if isinstance(value, str):
        return [c for c in choices if c != value] if choices else [value + "x"]
    if isinstance(value, (list, tuple)):
        extra = choices[0] if choices else (value[-1] if value else 1)
        return [type(value)([*value, extra])]
    if isinstance(value, dict):
        return [{"path": "elsewhere.txt"}] if schema else [{**value, "x": {}}, {**value, "x": []}]
    if value is None:
        return [1, "x.txt"]
    raise AssertionError(f"no variation for {f.name}={value!r}")


def _leaves(cfg, prefix=""):
    """(dotted path, field, value) of every setting that is not a sweep axis, nested configs included."""
    import dataclasses

    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.metadata.get("axis"):
            continue
        if dataclasses.is_dataclass(value):
            yield from _leaves(value, f"{prefix}{f.name}.")
        else:
            yield prefix + f.name, f, value


def _with(cfg, path, value):
    import dataclasses

    head, _, rest = path.partition(".")
    return dataclasses.replace(cfg, **{head: _with(getattr(cfg, head), rest, value) if rest else value})


def variations(cfg):
    """(dotted field, the config with that field changed) for every setting that is not a sweep axis."""
    for path, f, value in _leaves(cfg):
        for candidate in _candidates(value, f):
            try:
                yield path, _with(cfg, path, candidate)
                break
            except (ValueError, TypeError):
                continue
        else:
            raise AssertionError(f"no valid variation of {path}")


@pytest.mark.parametrize("name, one_kind_of_job", [("ops", True), ("layers", True), ("mqar", True), ("decode", True),
                                                   ("lm", False), ("recursion", False)])
def test_every_setting_of_every_benchmark_is_in_its_job_keys(name, one_kind_of_job):
    from recurlab import bench

    benchmark = bench.load(name)
    cfg = benchmark.config.quick() if hasattr(benchmark.config, "quick") else benchmark.config()
    keys = {job_key(job) for job in benchmark.jobs(cfg)}
    tried = 0
    for path, changed in variations(cfg):
        new = {job_key(job) for job in benchmark.jobs(changed)}
        if one_kind_of_job:
            assert not keys & new, f"{name}: changing {path} reuses jobs measured under the old value"
        else:  # a setting re-runs the jobs that use it (lm: training vs speed; recursion: per part, tested there)
            assert keys - new, f"{name}: changing {path} re-runs nothing"
        tried += 1
    assert tried >= 3
