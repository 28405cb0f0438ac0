import json

import pytest

from recurlab.bench import harness
from recurlab.bench import layers as layers_bench
from recurlab.bench.layers import LayersBenchConfig


def run_layers_bench(cfg, out):
    return harness.run(layers_bench.BENCHMARK, cfg, out, progress=False, echo=lambda m: None)


def test_tiny_layers_bench_writes_table_plot_and_profile(tmp_path):
    cfg = LayersBenchConfig(mixers=("gru", "mingru", "attention", "gmu"), d_model=16, batch=2, seq_len=32,
                            repeats=2, decode_steps=3, budget_s=2.0, profile=("mingru",),
                            memory_mixers=("swa", "attention"), memory_lengths=(512, 2048),
                            mixer_kwargs={"swa": {"window": 32}})
    result = run_layers_bench(cfg, tmp_path)
    rows = {r["mixer"]: r for r in json.loads((tmp_path / "results.json").read_text())["rows"]}
    assert set(rows) == {"gru", "mingru", "attention", "gmu"}
    assert rows["gru"]["speedup_vs_gru"] == pytest.approx(1.0)
    assert all(r["fwd_bwd_ms"] > 0 and r["decode_step_ms"] > 0 and r["params"] > 0 for r in rows.values())
    shares = result["profiles"]["mingru"]
    assert shares["recurlab scans"] > 0 and sum(shares.values()) == pytest.approx(1.0)
    assert "| mingru |" in (tmp_path / "results.md").read_text()
    memory = {(r["mixer"], r["seq_len"]): r["peak_bytes"] for r in result["memory"]}
    assert memory[("swa", 2048)] / memory[("swa", 512)] < 6  # the window keeps it linear (4x the tokens)
    assert memory[("attention", 2048)] > 0
    assert "Peak memory of a prefill" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "layers.png").read_bytes()[:4] == b"\x89PNG"


def test_refuses_when_step_disagrees(monkeypatch, tmp_path):
    monkeypatch.setattr(layers_bench, "check_step_equals_forward", lambda name, cfg: f"{name}: broken")
    with pytest.raises(RuntimeError, match="refusing to report speeds: mingru: broken"):
        run_layers_bench(LayersBenchConfig(mixers=("mingru",), d_model=8, seq_len=8), tmp_path)


def test_quick_and_bad_names():
    q = LayersBenchConfig.quick()
    assert (q.seq_len, q.repeats, q.decode_steps) == (512, 2, 5)
    with pytest.raises(ValueError, match="mixers must be one of .*got 'lstm'"):
        LayersBenchConfig(mixers=("gru", "lstm"))
