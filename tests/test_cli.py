import subprocess
import sys
from pathlib import Path

import pytest

from recurlab import perf
from recurlab.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]


def test_info_lists_backends(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "compiled CPU kernels: ready" in out
    assert "diag_scan" in out and "reference chunk cpu" in out


def test_bench_ops_arguments_parse():
    args = build_parser().parse_args(["bench", "ops", "--quick", "--set", "seq_lens=64,128", "--set", "repeats=2",
                                      "--out", "x"])
    assert args.quick and args.set == ["seq_lens=64,128", "repeats=2"] and args.out == "x"
    args = build_parser().parse_args(["bench", "ops", "--set", "seq_lens=64,128", "repeats=2"])
    assert args.set == ["seq_lens=64,128", "repeats=2"] and args.out == "bench-results/ops"


def test_unknown_command_exits_with_usage():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["frobnicate"])


def test_console_script_runs_bench_ops(tmp_path):
    # the installed entry point end to end, at a tiny length
    out = subprocess.run([sys.executable, "-m", "recurlab.cli", "bench", "ops", "--set", "seq_lens=32", "repeats=1",
                          "--out", str(tmp_path)], capture_output=True, text=True, check=True, timeout=300)
    assert "| diag_scan/cpu | 32 |" in out.stdout
    assert (tmp_path / "results.json").exists() and (tmp_path / "time_vs_length.png").exists()


def test_allocator_tuning_can_be_disabled(monkeypatch):
    monkeypatch.setattr(perf, "_tuned", False)
    monkeypatch.setenv("RECURLAB_NO_ALLOCATOR_TUNING", "1")
    assert perf.tune_cpu_allocator() is False and perf.allocator_tuned() is False
    monkeypatch.delenv("RECURLAB_NO_ALLOCATOR_TUNING")
    assert perf.tune_cpu_allocator() is sys.platform.startswith("linux")


def test_examples_run():
    for script in sorted((ROOT / "examples").glob("*.py")):
        subprocess.run([sys.executable, str(script)], check=True, timeout=300, cwd=ROOT, capture_output=True)


def test_layers_command_lists_every_unit(capsys):
    from recurlab import layers

    assert main(["layers"]) == 0
    out = capsys.readouterr().out
    for name in layers.names():
        assert f"\n{name} " in out or out.startswith(name)
    assert "parallel=no" in out  # gru
