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
    "rim_mri": "rim_mri",
    "pc_compress": "pc_compress",
    "lcm_aggregate": "lcm_aggregate",
    "mixer_dsr": "mixer_dsr",
    "global_workspace": "global_workspace",
    "dra_enumerative": "dra_enumerative",
    "generative_logic": "generative_logic",
}


def load(name: str) -> ModuleType:
    """The module of recipe ``name``; a ValueError lists the valid names."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; valid names: {', '.join(RECIPES)}")
    return importlib.import_module(f"{__name__}.{RECIPES[name]}")


def names() -> list[str]:
    return list(RECIPES)


def run_from_cli(name: str, quick: bool, seed: int, out: str | None, overrides: list[str], progress: bool):
    """``recurlab recipe NAME``: run it (``overrides``: key=value settings of its Config), write and print
    its results; ``report`` tabulates the results found under ``out``."""
    import time
    from pathlib import Path

    if name == "report":
        from .report import write_report

        if quick or overrides:
            raise ValueError("recipe report takes only --out, the folder of the recipes' results")
        path = write_report(out or "docs/results/recipes")
        print(path.read_text() + f"\nwrote {path}")
        return
    from ..configs import override

    module = load(name)
    config = override(module.Config.quick() if quick else module.Config.full(), overrides) if overrides else None
    folder = Path(out) if out else Path("bench-results/recipes") / (name + ("-quick" if quick else ""))
    start = time.perf_counter()
    try:
        result = module.run(quick=quick, out_dir=folder, seed=seed, progress=progress, config=config)
    except ModuleNotFoundError as error:
        if error.name in ("opacus", "statsmodels", "sklearn", "skimage"):
            raise ValueError(f"recipe {name} needs {error.name}: pip install 'recurlab[recipes]' (opacus, "
                             "statsmodels, scikit-learn, scikit-image)") from None
        raise
    result.seconds = time.perf_counter() - start
    result.write(folder)
    print(f"{name}: {module.PAPER}\n{result.markdown()}")
    print(f"{result.seconds / 60:.1f} min; wrote {folder / 'results.json'}, results.md"
          + "".join(f", {Path(f).name}" for f in result.files))
