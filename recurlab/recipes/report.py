"""The results table of all recipes: docs/results/recipes.md from each recipe's results.json
(and the hand-written conclusions in notes.md beside them, when present).

    recurlab recipe report                                # reads docs/results/recipes/*/results.json
    recurlab recipe report --out other/folder             # or any folder of recipe outputs
"""

from __future__ import annotations

import json
from pathlib import Path

from ..bench.report import markdown_table
from . import names
from .common import RecipeResult


def collect(folder: str | Path) -> list[RecipeResult]:
    """The results.json of every recipe found under ``folder`` (one subfolder per recipe), in registry order."""
    folder = Path(folder)
    found = []
    for name in names():
        path = folder / name / "results.json"
        if path.exists():
            found.append(RecipeResult.from_dict(json.loads(path.read_text())))
    return found


def render(results: list[RecipeResult], folder: str | Path) -> str:
    """One table: recipe | metric | ours | paper's number | scale difference, then each recipe's plots."""
    rows = [(r.recipe, row.metric, row.formatted(), row.paper, row.scale) for r in results for row in r.rows]
    lines = ["# Application recipes: results of the full runs", "",
             "Each recipe rebuilds a seed paper's model from recurlab's parts and trains it offline on 2 CPU cores "
             "(`recurlab recipe NAME`; the page of each recipe under [docs/recipes](../recipes) says what it "
             "rebuilds and where our setting differs). Numbers below are from the full runs committed beside this "
             "page; the paper's numbers are on the paper's data and scale, quoted for context.", "",
             markdown_table(["recipe", "metric", "ours", "paper's number", "scale difference"], rows), ""]
    if results:
        lines += ["| recipe | run | minutes |", "|---|---|---|"]
        lines += [f"| {r.recipe} | `recurlab recipe {r.recipe}{' --quick' if r.quick else ''} --seed {r.seed}` | "
                  f"{r.seconds / 60:.1f} |" for r in results]
        lines.append("")
    folder = Path(folder)
    notes = folder / "notes.md"  # hand-written conclusions drawn from the runs (what held, what did not)
    if notes.exists():
        lines += [notes.read_text(), ""]
    for r in results:
        for f in r.files:
            if f.endswith(".png"):
                rel = (Path(folder.name) / r.recipe / Path(f).name).as_posix()
                lines += [f"## {r.recipe}", "", f"![{r.recipe}]({rel})", ""]
    return "\n".join(lines)


def write_report(folder: str | Path = "docs/results/recipes", out: str | Path | None = None) -> Path:
    """Write the table (default: the Markdown file beside ``folder``, e.g. docs/results/recipes.md)."""
    folder = Path(folder)
    results = collect(folder)
    if not results:
        raise ValueError(f"no recipe results under {folder}: run `recurlab recipe NAME --out {folder}/NAME` first")
    out = Path(out) if out else folder.with_suffix(".md")
    out.write_text(render(results, folder))
    return out
