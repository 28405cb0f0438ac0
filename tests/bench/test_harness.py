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
