"""The MQAR budget study: recall accuracy against training budget, gathered from finished ``bench mqar`` sweeps.

    python -m recurlab.bench.mqar_budget            # rewrites the table in docs/results/mqar-budget.md
                                                    # and draws docs/results/mqar-budget/budget.png

Issue 14 asks whether, with more training, the units' ordering converges to Zoology's Fig. 2. The
sweeps that answer it are ordinary ``recurlab bench mqar`` runs at L = 64, 4 key-value pairs, whose
``max_steps`` (and ``train_examples``) are 1x, 4x and 16x the default sweep's 2,000 steps. This module
reads their run logs (:data:`SOURCES`, relative to docs/results; a later source replaces an earlier
one's cell, so the BaseConv rerun replaces the mis-wired original), keeps for each (mixer, d_model,
budget) the learning rate with the best validation accuracy, and reports its held-out test accuracy
(validation accuracy, marked ``(val)``, for runs that predate the held-out set).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from ..files import read_jsonl, write_text

DEFAULT_STEPS = 2000  # the default sweep's max_steps: the 1x budget
SEQ_LEN, KV_PER_TOKEN = 64, 0.0625
# run logs under docs/results, in order of precedence (later wins a cell)
SOURCES = ("mqar", "mqar-fig2", "mqar-budget/4x", "mqar-budget/16x-d64", "mqar-budget/4x-d128")
MIXERS = ("attention", "gla", "hyena", "rwkv", "baseconv", "mingru")
# Zoology Fig. 2 at L = 64 (kv = 4), read off the figure (+-0.03): ../shared/notes/mqar.md
ZOOLOGY = {("attention", 64): 1.0, ("attention", 128): 1.0, ("baseconv", 64): 0.70, ("baseconv", 128): 0.93,
           ("rwkv", 64): 0.75, ("rwkv", 128): 0.92}
IN_FIG2 = ("attention", "baseconv", "rwkv", "hyena")  # Hyena is in Fig. 2; its L = 64 values were not read off
ZOOLOGY_EXAMPLES = 64 * 100_000  # 64 epochs of 100k examples
START, END = "<!-- budget table: python -m recurlab.bench.mqar_budget -->", "<!-- end of budget table -->"


@dataclass(frozen=True)
class Cell:
    mixer: str
    d_model: int
    budget: int  # max_steps / DEFAULT_STEPS
    lr: float
    accuracy: float  # held-out test accuracy, or validation accuracy when held_out is False
    held_out: bool
    examples_budget: int  # max_steps x batch size (early stopping at 0.99 ends some runs sooner)
    source: str


def gather(results: Path, sources: tuple[str, ...] = SOURCES) -> dict[tuple[str, int, int], Cell]:
    """The best-learning-rate cell of every (mixer, d_model, budget) at L = 64, kv = 4 in the run logs."""
    cells: dict[tuple[str, int, int], Cell] = {}
    for source in sources:
        best: dict[tuple[str, int, int], tuple[float, Cell]] = {}
        for row in read_jsonl(results / source / "runs.jsonl"):
            job, result = row["job"], row["result"]
            s = job["settings"]
            if job["seq_len"] != SEQ_LEN or s["kv_per_token"] != KV_PER_TOKEN or s["max_steps"] % DEFAULT_STEPS:
                continue
            key = (job["mixer"], job["d_model"], s["max_steps"] // DEFAULT_STEPS)
            held_out = result.get("test_accuracy") is not None
            cell = Cell(*key, job["lr"], result["test_accuracy"] if held_out else result["accuracy"], held_out,
                        s["max_steps"] * s["batch_size"], source)
            if key not in best or result["accuracy"] > best[key][0]:  # choose the lr by validation accuracy
                best[key] = (result["accuracy"], cell)
        cells.update({key: cell for key, (_, cell) in best.items()})
    return cells


def table(cells: dict[tuple[str, int, int], Cell]) -> str:
    budgets = sorted({b for _, _, b in cells})
    widths = sorted({d for _, d, _ in cells})
    header = ["mixer"] + [f"d={d}, {b}x" for d in widths for b in budgets] + [f"Zoology d={d}" for d in widths]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for mixer in [m for m in MIXERS if any(k[0] == m for k in cells)]:
        row = [mixer]
        for d in widths:
            for b in budgets:
                cell = cells.get((mixer, d, b))
                row.append("not run" if cell is None else f"{cell.accuracy:.3f}" + ("" if cell.held_out else " (val)"))
        row += [f"≈ {ZOOLOGY[(mixer, d)]:.2f}" if (mixer, d) in ZOOLOGY else "not read off" if mixer in IN_FIG2
                else "not in Fig. 2" for d in widths]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def plot(cells: dict[tuple[str, int, int], Cell], path: Path) -> None:
    """Accuracy against examples seen (log scale), a panel per d_model; Zoology's values as stars at its budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    widths = sorted({d for _, d, _ in cells})
    fig, axes = plt.subplots(1, len(widths), figsize=(5.5 * len(widths), 4.2), sharey=True, squeeze=False)
    colors = dict(zip(MIXERS, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for ax, d in zip(axes[0], widths):
        for mixer in MIXERS:
            pts = sorted((c.examples_budget, c.accuracy) for (m, dd, _), c in cells.items()
                         if m == mixer and dd == d)
            if pts:
                ax.plot(*zip(*pts), marker="o", color=colors[mixer], label=mixer)
            if (mixer, d) in ZOOLOGY:
                ax.plot([ZOOLOGY_EXAMPLES], [ZOOLOGY[(mixer, d)]], marker="*", markersize=12, color=colors[mixer],
                        linestyle="none")
        ax.axhline(0.25, color="gray", linestyle=":", linewidth=1)
        ax.set_xscale("log")
        ax.set_title(f"MQAR L=64, kv=4, d_model={d} (stars: Zoology Fig. 2)", fontsize=9)
        ax.set_xlabel("training budget: max_steps x batch size (examples)")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("accuracy (held-out test set)")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def rewrite(results: Path) -> str:
    """Rewrite the table between the markers of results/mqar-budget.md and draw the plot; returns the table."""
    cells = gather(results)
    page = results / "mqar-budget.md"
    text = page.read_text()
    if START not in text or END not in text:
        raise ValueError(f"{page} has no budget-table markers ({START} ... {END})")
    new = table(cells)
    head, rest = text.split(START, 1)
    write_text(page, head + START + "\n" + new + END + rest.split(END, 1)[1])
    plot(cells, results / "mqar-budget" / "budget.png")
    return new


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "docs" / "results"
    print(rewrite(root))
