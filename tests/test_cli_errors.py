"""Every flag takes effect or is rejected; a user error is one line on stderr and exit code 2."""

import json

import pytest

from recurlab import __version__
from recurlab.bench import harness
from recurlab.cli import main
from recurlab.train import lm, tasks

TINY_LM = {"model": {"d_model": 16, "n_layers": 1, "mixer": "mingru", "channel_mixer": None},
           "train": {"steps": 1, "batch_size": 2, "eval_every": 1, "warmup_steps": 0}, "seq_len": 16}
TEXT = "".join(f"And God said unto Moses, day {i}.\n" for i in range(60))


def user_error(capsys, argv) -> str:
    """Run the CLI, expect a user error; return its one line."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def parse_error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if training starts: errors must come before any work."""
    def forbidden(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(lm, "train_language_model", forbidden)
    monkeypatch.setattr(tasks, "train_synthetic", forbidden)


def config_file(tmp_path, **changes):
    spec = json.loads(json.dumps(TINY_LM))
    for key, value in changes.items():
        section, _, name = key.rpartition("__")
        (spec[section] if section else spec)[name] = value
    path = tmp_path / "lm.json"
    path.write_text(json.dumps(spec))
    return str(path)


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"recurlab {__version__}"


@pytest.mark.parametrize("setting, message", [
    ("train.steps=0", "train.steps must be >= 1, got 0"),  # used to train 2000 steps
    ("train.eval_every=0", "train.eval_every must be >= 1, got 0"),  # used to raise ZeroDivisionError
    ("data.eval_examples=0", "data.eval_examples must be >= 1, got 0"),  # used to report eval_loss 0.0
    ("train.steps=40.5", "train.steps must be int, got '40.5'"),
    ("model.mixer=lstm", "unknown token mixer 'lstm'; valid names: attention"),
])
def test_bad_training_settings_are_named_before_any_work(capsys, no_training, setting, message):
    assert message in user_error(capsys, ["train", "--set", setting])


def test_text_data_without_a_language_model_is_rejected(capsys, no_training):
    # used to train MQAR and ignore --data
    assert "add --preset NAME or --config FILE" in user_error(capsys, ["train", "--set", "data.path=corpus.txt"])


def test_unknown_keys_list_the_valid_ones(capsys, no_training):
    line = user_error(capsys, ["train", "--set", "data.pth=x"])
    assert "data.pth is not a key of data; valid keys: task, seq_len" in line
    line = user_error(capsys, ["train", "--preset", "lm-gla", "--set", "data.pth=x"])
    assert "data.pth is not a key of data; valid keys: path, hf_dataset, split, text_field" in line
    line = user_error(capsys, ["train", "--preset", "lm-gla", "--set", "model.dmodel=8"])
    assert "model.dmodel is not a key of model; valid keys: vocab_size, d_model" in line
    line = user_error(capsys, ["bench", "mqar", "--set", "max_step=5"])
    assert "max_step is not a key of MQARBenchConfig; valid keys: mixers, d_models" in line


@pytest.mark.parametrize("changes, message", [
    ({"seq_len": "64"}, "seq_len must be int, got '64'"),
    ({"seq_len": 0}, "seq_len must be >= 1, got 0"),
    ({"train__steps": "40"}, "train.steps must be int, got '40'"),
    ({"data": {"pth": "corpus.txt"}}, "data.pth is not a key of data"),  # used to train on the default corpus
    ({"epochs": 3}, "epochs is not a key of LMSetup"),
])
def test_bad_config_files_are_named_before_any_work(capsys, tmp_path, no_training, changes, message):
    line = user_error(capsys, ["train", "--config", config_file(tmp_path, **changes)])
    assert message in line and "lm.json" in line


def test_set_applies_on_top_of_a_config_file(tmp_path, capsys):
    # with --config the old --mixer/--d-model flags were silently ignored; --set takes effect
    (tmp_path / "t.txt").write_text(TEXT)
    path = config_file(tmp_path, data={"path": str(tmp_path / "t.txt")})
    assert main(["train", "--config", path, "--set", "model.mixer=gla", "model.d_model=8", "--out",
                 str(tmp_path / "run"), "--no-progress"]) == 0
    saved = json.loads((tmp_path / "run" / "model" / "config.json").read_text())["model"]
    assert (saved["mixer"], saved["d_model"]) == ("gla", 8)


def test_preset_overrides_reach_the_training(monkeypatch, capsys):
    seen = []
    monkeypatch.setattr(lm, "train_language_model", lambda setup, out, name, resume, progress, overwrite: seen.append(setup))
    assert main(["train", "--preset", "lm-gla", "--set", "train.lr=1e-3", "--set", "model.d_model=128"]) == 0
    assert seen[0].train["lr"] == 1e-3 and seen[0].model["d_model"] == 128 and seen[0].model["mixer"] == "gla"


def test_an_empty_data_file_is_an_error_before_training(tmp_path, capsys, monkeypatch):
    from recurlab.train import trainer

    monkeypatch.setattr(trainer.Trainer, "fit", lambda *a, **k: pytest.fail("training started"))
    (tmp_path / "empty.txt").write_text("\n  \n")
    line = user_error(capsys, ["train", "--config", config_file(tmp_path, data={"path": str(tmp_path / "empty.txt")})])
    assert "empty.txt holds no text to train on" in line


def test_an_empty_prompt_is_an_error_before_loading(capsys, tmp_path):
    line = user_error(capsys, ["generate", "--checkpoint", str(tmp_path / "nowhere"), "--prompt", ""])
    assert "--prompt must not be empty" in line
    line = user_error(capsys, ["generate", "--checkpoint", str(tmp_path / "nowhere"), "--prompt", "x",
                               "--set", "top_p=2"])
    assert "top_p must be <= 1, got 2.0" in line


def test_preset_and_config_together_and_resume_without_out(capsys, tmp_path, no_training):
    assert "--preset or --config, not both" in user_error(
        capsys, ["train", "--preset", "lm-gla", "--config", config_file(tmp_path)])
    assert "--resume needs --out" in user_error(capsys, ["train", "--resume"])


def test_choices_come_from_the_registries(capsys):
    assert "invalid choice: 'lm-lstm'" in parse_error(capsys, ["train", "--preset", "lm-lstm"])
    assert "invalid choice: 'nope'" in parse_error(capsys, ["recipe", "nope"])
    assert "invalid choice: 'nope'" in parse_error(capsys, ["bench", "nope"])
    line = user_error(capsys, ["bench", "mqar", "--set", "mixers=gla,lstm"])
    assert "mixers must be one of attention" in line and "got 'lstm'" in line
    assert "unrecognized arguments: --steps 5" in parse_error(capsys, ["train", "--steps", "5"])


def test_bench_settings_reach_the_config(monkeypatch, capsys, tmp_path):
    seen = []
    monkeypatch.setattr(harness, "run", lambda bench, cfg, out, progress: seen.append((bench.name, cfg, progress)))
    (tmp_path / "results.md").write_text("# table\n")
    assert main(["bench", "mqar", "--quick", "--set", "max_steps=500", "--set", "mixers=gla,attention",
                 "--out", str(tmp_path), "--no-progress"]) == 0
    name, cfg, progress = seen[0]
    assert (name, cfg.max_steps, cfg.mixers, cfg.seq_lens, progress) == ("mqar", 500, ("gla", "attention"), (64,), False)
    (tmp_path / "cfg.json").write_text(json.dumps({"lm": {"steps": 7}, "mixers": ["gla"]}))
    assert main(["bench", "recursion", "--config", str(tmp_path / "cfg.json"), "--set", "structural.steps=9",
                 "--out", str(tmp_path)]) == 0
    cfg = seen[1][1]
    assert (cfg.lm.steps, cfg.lm.d_model, cfg.mixers, cfg.structural.steps) == (7, 128, ["gla"], 9)


def test_debug_shows_the_traceback(capsys, no_training):
    with pytest.raises(ValueError, match="train.steps must be >= 1"):
        main(["train", "--set", "train.steps=0", "--debug"])


def test_help_lists_the_keys(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "recursion", "--help"])
    out = capsys.readouterr().out
    assert "structural.steps (int; >= 1) = 2500" in out and "lm.d_model (int; >= 1) = 128" in out


def test_recipe_settings_reach_the_recipe(monkeypatch, capsys, tmp_path):
    from recurlab import recipes
    from recurlab.recipes.common import RecipeResult

    module, seen = recipes.load("gru_svm"), []
    monkeypatch.setattr(module, "run", lambda quick, out_dir, seed, progress, config:
                        seen.append((quick, seed, config)) or RecipeResult("gru_svm", quick, seed))
    assert main(["recipe", "gru_svm", "--set", "epochs=2", "--seed", "3", "--out", str(tmp_path)]) == 0
    quick, seed, config = seen[0]
    assert (quick, seed, config.epochs, config.paper_lrs) == (False, 3, 2, True)  # on top of the full config
    assert main(["recipe", "gru_svm", "--quick", "--set", "hidden_size=8", "--out", str(tmp_path)]) == 0
    assert (seen[1][2].hidden_size, seen[1][2].n_train) == (8, 8_000)  # on top of the quick one
    assert "epoch is not a key of Config; valid keys: n_train" in user_error(
        capsys, ["recipe", "gru_svm", "--set", "epoch=2", "--out", str(tmp_path)])
    assert "epochs must be int, got 'two'" in user_error(
        capsys, ["recipe", "gru_svm", "--set", "epochs=two", "--out", str(tmp_path)])
    assert "takes only --out" in user_error(capsys, ["recipe", "report", "--quick"])


def test_unknown_benchmark_names_the_valid_ones():
    from recurlab import bench

    with pytest.raises(ValueError, match="unknown benchmark 'nope'; valid names: ops, layers, mqar, decode, decoding, lm, recursion"):
        bench.load("nope")


def test_a_rerun_over_a_finished_run_needs_resume_or_overwrite(tmp_path, capsys):
    """A second `recurlab train` into one folder never silently replaces the first run's checkpoint."""
    corpus = tmp_path / "t.txt"
    corpus.write_text(TEXT)
    out = tmp_path / "run"
    argv = ["train", "--config", config_file(tmp_path), "--set", f"data.path={corpus}", "--out", str(out),
            "--no-progress"]
    assert main(argv) == 0
    assert f"writing the run in {out}" in capsys.readouterr().err
    before = (out / "checkpoint.pt").read_bytes()
    line = user_error(capsys, argv)
    assert "already holds a training run" in line and "--resume" in line and "--overwrite" in line
    assert (out / "checkpoint.pt").read_bytes() == before
    assert main([*argv, "--overwrite"]) == 0
    assert f"writing the run in {out}" in capsys.readouterr().err
    assert user_error(capsys, [*argv, "--resume", "--overwrite"]).endswith("exclude each other: continue the run, "
                                                                          "or start it again")


def test_without_out_a_synthetic_run_says_that_nothing_is_written(capsys):
    assert main(["train", "--set", "model.mixer=mingru", "--set", "model.d_model=8", "--set", "data.vocab_size=32",
                 "--set", "data.seq_len=16", "--set", "data.num_kv_pairs=2", "--set", "data.train_examples=64",
                 "--set", "data.eval_examples=8", "--set", "train.steps=2", "--set", "train.batch_size=8",
                 "--set", "train.eval_every=1", "--no-progress"]) == 0
    assert "no --out: nothing is written" in capsys.readouterr().err
