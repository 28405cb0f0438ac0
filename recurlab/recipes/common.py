"""What every recipe returns and writes: rows of recipe | metric | ours | paper's number | scale difference."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..files import write_json, write_text


@dataclass
class ResultRow:
    """One line of docs/results/recipes.md.

    Attributes:
        metric: what was measured, e.g. "test accuracy, GRU-SVM".
        ours: our value (a float; formatted by ``fmt``).
        paper: the paper's number as text ("84.15%"), or "-" when the paper has none for this row.
        scale: how our setting differs from the paper's (data, size, steps).
        fmt: Python format spec for ``ours``.
    """

    metric: str
    ours: float
    paper: str = "-"
    scale: str = ""
    fmt: str = ".4f"

    def formatted(self) -> str:
        return format(self.ours, self.fmt)


@dataclass
class RecipeResult:
    """A recipe's outcome: table rows, free-form details (per-model metrics, settings) and files written."""

    recipe: str
    quick: bool
    seed: int
    rows: list[ResultRow] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RecipeResult":
        d = dict(d)
        d["rows"] = [ResultRow(**r) for r in d.get("rows", [])]
        return cls(**d)

    def markdown(self) -> str:
        """The recipe's rows as a Markdown table (recipe | metric | ours | paper | scale)."""
        from ..bench.report import markdown_table

        rows = [(self.recipe, r.metric, r.formatted(), r.paper, r.scale) for r in self.rows]
        return markdown_table(["recipe", "metric", "ours", "paper's number", "scale difference"], rows)

    def write(self, out_dir: str | Path) -> Path:
        """Write results.json (atomically) and results.md into out_dir."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / "results.md", self.markdown() + "\n")
        return write_json(out / "results.json", self.to_dict())
