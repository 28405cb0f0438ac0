"""Every ``recurlab`` command line in a code block of README.md and docs/ still parses and configures.

The work itself (training, benchmarks, recipes) is replaced by stubs; what is checked is that each
documented flag exists and each ``--set`` key and value is valid for its command.
"""

import re
import shlex
from pathlib import Path

import pytest

from recurlab import recipes
from recurlab.bench import harness
from recurlab.cli import main
from recurlab.recipes.common import RecipeResult
from recurlab.train import lm, tasks
from recurlab.train.run_folder import RunFolder

ROOT = Path(__file__).resolve().parents[1]
PLACEHOLDER = re.compile(r"<|\[|\.\.\.|\bNAME\b|\bCMD\b")


def documented_commands() -> list[tuple[str, str]]:
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        in_block = False
        for line in path.read_text().splitlines():
            if line.lstrip().startswith("```"):
                in_block = not in_block
                continue
            code = line.strip() if in_block or line.startswith("    ") else ""
            match = (re.match(r"(?:[A-Z_]+=\S+ )*(?:taskset -c \d+ )?(?:\./run |\.venv/bin/)?(recurlab .*)$", code)
                     or re.search(r"-m (recurlab\.cli .*)$", code))
            if match and not PLACEHOLDER.search(match.group(1)):
                argv = shlex.split(match.group(1), comments=True)[1:]
                found.append((f"{path.relative_to(ROOT)}: {line.strip()}", argv))
    return found


COMMANDS = documented_commands()


def test_the_docs_have_commands():
    assert len(COMMANDS) > 30
    assert any(argv[:2] == ["bench", "recursion"] and "--set" in argv for _, argv in COMMANDS)


@pytest.mark.parametrize("where, argv", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_documented_command_parses_and_configures(where, argv, monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)

    def fake_bench(bench, cfg, out, progress):
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "results.md").write_text("# stub\n")

    monkeypatch.setattr(harness, "run", fake_bench)
    monkeypatch.setattr("recurlab.bench.mqar.demo", lambda out, progress: None)
    monkeypatch.setattr(lm, "train_language_model", lambda *a, **k: None)
    monkeypatch.setattr(tasks, "train_synthetic", lambda *a, **k: None)
    monkeypatch.setattr(RunFolder, "check", lambda self: None)  # the run folder is the run's, not the command's
    monkeypatch.setattr(lm, "continue_prompt", lambda *a, **k: None)
    monkeypatch.setattr(lm, "continue_prompt_lud", lambda *a, **k: None)
    monkeypatch.setattr("recurlab.recipes.report.write_report", lambda folder: tmp_path / "report.md")
    (tmp_path / "report.md").write_text("stub\n")
    (tmp_path / "my_lm.json").write_text('{"model": {"mixer": "gla"}, "train": {}}')
    monkeypatch.setattr(RecipeResult, "write", lambda self, out: Path(out) / "results.json")  # nothing outside tmp
    for name in recipes.names():
        monkeypatch.setattr(recipes.load(name), "run", lambda quick, out_dir, seed, progress, config, name=name:
                            RecipeResult(name, quick, seed))
    if argv[:1] in (["export-hf"], ["import-hf"]):  # conversions read a model folder: checked in tests/hf/
        pytest.importorskip("transformers", reason="the hf extra is part of the test extras")
        monkeypatch.setattr("recurlab.hf.convert.export_hf", lambda src, dst, overwrite: dst)
        monkeypatch.setattr("recurlab.hf.convert.import_hf", lambda src, dst, overwrite: dst)
    if argv[:1] == ["convert"]:  # a conversion reads a model folder and trains: run in tests/convert/
        monkeypatch.setattr("recurlab.convert.finetune.convert_and_finetune",
                            lambda checkpoint, to, out, config, **kwargs: {"to": to})
    if argv[:1] == ["quantize"]:  # quantising reads a model folder and trains: run in tests/compress/
        monkeypatch.setattr("recurlab.compress.quantize.quantize_and_finetune",
                            lambda checkpoint, method, bits, out, config, **kwargs: {"method": method})
    if argv[:1] == ["train"] and "vision" in argv:  # trains: run in tests/vision/test_train.py
        monkeypatch.setattr("recurlab.vision.train.train_vision", lambda cfg, out, **kwargs: {"model": cfg.model})
    if argv[:1] == ["info"]:
        pytest.skip("recurlab info builds the kernels; tests/test_cli.py runs it")
    try:
        code = main(argv)
    except SystemExit as exit_:  # --help
        code = exit_.code
    assert code == 0, f"{where}: {capsys.readouterr().err}"
