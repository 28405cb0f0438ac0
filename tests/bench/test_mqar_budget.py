"""The MQAR budget study's table and plot (recurlab/bench/mqar_budget.py)."""

import json
from pathlib import Path

import pytest

from recurlab.bench import mqar_budget
from recurlab.bench.mqar_budget import END, START, gather, rewrite, table

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results"


def run_row(mixer, d, lr, steps, val, test=None, seq_len=64):
    settings = {"kv_per_token": 0.0625, "max_steps": steps, "batch_size": 64}
    return {"key": f"{mixer}{d}{lr}{steps}{seq_len}", "job": {"mixer": mixer, "d_model": d, "seq_len": seq_len, "lr": lr,
                                                              "settings": settings},
            "result": {"accuracy": val, "test_accuracy": test, "steps": steps}}


def write_log(folder: Path, rows) -> None:
    folder.mkdir(parents=True)
    (folder / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_gather_keeps_the_best_lr_by_validation_and_later_sources_win(tmp_path):
    write_log(tmp_path / "a", [run_row("gla", 64, 1e-3, 2000, 0.30), run_row("gla", 64, 3e-3, 2000, 0.26),
                               run_row("baseconv", 64, 1e-3, 2000, 0.06), run_row("gla", 64, 1e-3, 2000, 0.9, seq_len=128),
                               run_row("gla", 64, 1e-3, 3000, 0.9)])  # not a multiple of the default budget
    write_log(tmp_path / "b", [run_row("baseconv", 64, 1e-3, 2000, 0.27, test=0.255),
                               run_row("gla", 64, 1e-3, 8000, 0.98, test=0.983),
                               run_row("gla", 64, 3e-3, 8000, 0.99, test=0.97)])
    cells = gather(tmp_path, ("a", "b"))
    assert set(cells) == {("gla", 64, 1), ("baseconv", 64, 1), ("gla", 64, 4)}
    assert (cells[("gla", 64, 1)].lr, cells[("gla", 64, 1)].held_out) == (1e-3, False)
    assert cells[("baseconv", 64, 1)].accuracy == 0.255 and cells[("baseconv", 64, 1)].source == "b"
    assert cells[("gla", 64, 4)].accuracy == 0.97  # the lr chosen on validation, its test accuracy reported
    text = table(cells)
    assert "| gla | 0.300 (val) | 0.970 | not in Fig. 2 |" in text
    assert "| baseconv | 0.255 | not run | ≈ 0.70 |" in text


def test_rewrite_replaces_only_the_marked_table_and_draws(tmp_path):
    write_log(tmp_path / "mqar", [run_row("rwkv", 64, 3e-3, 2000, 0.26, test=0.25)])
    (tmp_path / "mqar-budget").mkdir()
    (tmp_path / "mqar-budget.md").write_text(f"intro\n{START}\nold table\n{END}\noutro\n")
    rewrite(tmp_path)
    text = (tmp_path / "mqar-budget.md").read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old table" not in text
    assert "| rwkv | 0.250 | ≈ 0.75 |" in text
    assert (tmp_path / "mqar-budget" / "budget.png").stat().st_size > 0
    (tmp_path / "mqar-budget.md").write_text("no markers\n")
    with pytest.raises(ValueError, match="no budget-table markers"):
        rewrite(tmp_path)


def test_the_committed_table_is_what_the_committed_run_logs_give():
    page = (RESULTS / "mqar-budget.md").read_text()
    committed = page.split(START, 1)[1].split(END, 1)[0].lstrip("\n")
    assert committed == table(gather(RESULTS, mqar_budget.SOURCES))
