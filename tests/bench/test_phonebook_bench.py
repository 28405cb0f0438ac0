"""bench phonebook at a tiny size: every preset trains and is evaluated at every length, the report and plot are
written; a preset layout keeps its wiring at the bench's width; bad settings are named."""

import json

import pytest

from recurlab.bench import harness, load
from recurlab.bench.phonebook import PhonebookBenchConfig, build, evaluate


def test_a_tiny_run_reports_every_preset_and_length(tmp_path):
    cfg = PhonebookBenchConfig.quick(presets=("lm-gla", "lm-sambay"), train_steps=3, n_test=2,
                                     eval_lens=(64, 128))
    harness.run(load("phonebook"), cfg, tmp_path, progress=False)
    data = json.loads((tmp_path / "results.json").read_text())
    assert {(r["preset"], r["length"]) for r in data["rows"]} == {(p, n) for p in cfg.presets for n in (64, 128)}
    assert all(0 <= r["accuracy"] <= 1 for r in data["rows"])
    text = (tmp_path / "results.md").read_text()
    assert "lm-sambay" in text and "128 bytes" in text and (tmp_path / "phonebook.png").exists()


def test_a_model_that_copies_the_book_scores_one():
    """The evaluation itself: a model whose logits put the true next byte first scores 1, whatever the length."""
    import torch

    cfg = PhonebookBenchConfig.quick(n_test=3)

    class Oracle(torch.nn.Module):  # answers every lookup by reading the book, as a perfect retriever would
        def forward(self, ids):
            logits = torch.zeros(*ids.shape, 256)
            for b, row in enumerate(ids.tolist()):
                text = bytes(row).decode()
                book = dict(line.split(":") for line in text.strip(" ").split("\n") if ":" in line)
                for t in range(ids.shape[1]):
                    line_start = text.rfind("\n", 0, t + 1) + 1
                    line = text[line_start:t + 1]
                    if "?" in line:
                        name, typed = line.split("?")
                        if len(typed) < cfg.number_len:
                            logits[b, t, ord(book[name][len(typed)])] = 1
            return logits, None

    assert evaluate(Oracle(), cfg, 128)["accuracy"] == 1.0


def test_presets_keep_their_layout_at_the_bench_width():
    model = build("lm-sambay", 32, seed=0)
    assert model.config.d_model == 32 and model.config.kv_layer == 5 and model.config.memory_layer == 4


@pytest.mark.parametrize("overrides, message", [
    ({"presets": ("lm-nothing",)}, "presets must be LM presets"),
    ({"train_len": 16, "min_train_len": 16, "name_len": 3, "number_len": 4}, "fewer than n_queries"),
])
def test_bad_settings_are_named(overrides, message):
    with pytest.raises(ValueError, match=message):
        PhonebookBenchConfig(**overrides)


def test_training_lengths_halve_down_to_the_shortest_and_short_books_ask_fewer_lookups():
    cfg = PhonebookBenchConfig(train_len=1024, min_train_len=64, n_queries=8, name_len=3, number_len=4)
    assert cfg.train_lens == [64, 128, 256, 512, 1024]
    assert cfg.book(64).n_queries == 3 and cfg.book(1024).n_queries == 8  # 7 lines at 64 bytes: 3 lookups, 4 entries
    with pytest.raises(ValueError, match="min_train_len"):
        PhonebookBenchConfig(train_len=128, min_train_len=256)
