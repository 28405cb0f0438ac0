import json

import pytest

from recurlab import recipes
from recurlab.recipes.common import RecipeResult, ResultRow


def test_every_registered_recipe_has_paper_and_run():
    for name in recipes.names():
        module = recipes.load(name)
        assert isinstance(module.PAPER, str) and module.PAPER, name
        assert callable(module.run), name


def test_unknown_recipe_names_the_valid_ones():
    with pytest.raises(ValueError, match="gru_svm"):
        recipes.load("nope")


def test_result_round_trips_through_json_and_renders_a_table(tmp_path):
    result = RecipeResult("demo", quick=True, seed=3, rows=[ResultRow("accuracy", 0.91234, "84.15%", "synthetic", ".3f")],
                          details={"epochs": 2})
    path = result.write(tmp_path)
    back = RecipeResult.from_dict(json.loads(path.read_text()))
    assert back == result
    md = (tmp_path / "results.md").read_text()
    assert "| demo | accuracy | 0.912 | 84.15% | synthetic |" in md
    assert not list(tmp_path.glob("*.tmp"))


def test_report_collects_recipes_in_registry_order(tmp_path):
    from recurlab.recipes.report import write_report

    folder = tmp_path / "recipes"
    for name, value in (("fake_news", 0.8), ("gru_svm", 0.9)):
        RecipeResult(name, quick=False, seed=0, rows=[ResultRow("accuracy", value)],
                     files=[str(folder / name / "plot.png")]).write(folder / name)
    out = write_report(folder)
    text = out.read_text()
    assert out == tmp_path / "recipes.md"
    assert text.index("| gru_svm |") < text.index("| fake_news |")
    assert "![gru_svm](recipes/gru_svm/plot.png)" in text
    with pytest.raises(ValueError, match="no recipe results"):
        write_report(tmp_path / "empty")


def test_cli_names_the_missing_extra(monkeypatch, capsys, tmp_path):
    from recurlab.cli import main

    def needs_opacus(**kwargs):
        raise ModuleNotFoundError("No module named 'opacus'", name="opacus")

    monkeypatch.setattr(recipes.load("dp_forecast"), "run", needs_opacus)
    assert main(["recipe", "dp_forecast", "--quick", "--out", str(tmp_path)]) == 2
    assert "recurlab[recipes]" in capsys.readouterr().err
