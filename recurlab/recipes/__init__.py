"""Application recipes: the seed papers' models rebuilt from recurlab's parts, trained offline at laptop scale.

    recurlab recipe gru_svm --quick          # < 5 minutes on 2 CPU cores
    recurlab recipe gru_svm                  # the full run (< 1 hour), results under bench-results/recipes/gru_svm

Every recipe is one module ``recurlab/recipes/<name>.py`` that defines

    PAPER: str                                   the paper it rebuilds (title, year)
    def run(quick=False, out_dir=None, seed=0, progress=True, config=None) -> RecipeResult

and is listed in :data:`RECIPES`. ``run`` is seeded and deterministic, writes ``results.json`` and
its plot into ``out_dir`` (when given) and returns the rows of the results table
(:class:`recurlab.recipes.common.RecipeResult`). ``config`` overrides the quick/full configuration
(each recipe's ``Config`` dataclass), which is how the tests run recipes at tiny sizes.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# name -> module under recurlab.recipes
RECIPES: dict[str, str] = {
    "gru_svm": "gru_svm",
    "pgn_forecast": "pgn_forecast",
    "dp_forecast": "dp_forecast",
    "keyboard": "keyboard",
    "fake_news": "fake_news",
    "cglu_impute": "cglu_impute",
}


def load(name: str) -> ModuleType:
    """The module of recipe ``name``; a ValueError lists the valid names."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; valid names: {', '.join(RECIPES)}")
    return importlib.import_module(f"{__name__}.{RECIPES[name]}")


def names() -> list[str]:
    return list(RECIPES)
