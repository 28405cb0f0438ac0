"""The documentation names what the registries hold: every unit has its row in docs/layers.md, and every
depth module its name in docs/design.md, so a new unit cannot land undocumented."""

import re
from pathlib import Path

from recurlab import layers
from recurlab.models import depth_names

DOCS = Path(__file__).resolve().parent.parent / "docs"


def table_names(markdown: str, heading: str) -> list[str]:
    """The backticked first cells of the table under ``## heading``."""
    section = markdown.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.M)


def test_every_registered_layer_has_a_row_in_docs_layers_and_every_row_is_registered():
    text = (DOCS / "layers.md").read_text()
    for kind, heading in (("token", "Token mixers"), ("channel", "Channel mixers")):
        documented = table_names(text, heading)
        assert sorted(documented) == sorted(layers.names(kind)), (
            f"docs/layers.md '{heading}' lists {sorted(documented)}, the registry holds {sorted(layers.names(kind))}")


def test_every_depth_module_is_named_in_the_design_page():
    text = (DOCS / "design.md").read_text()
    missing = [name for name in depth_names() if f"`{name}`" not in text]
    assert not missing, f"docs/design.md does not name the depth module(s) {missing}"


def test_the_equation_tests_table_covers_every_unit_and_names_tests_that_exist():
    """docs/layers.md's 'Equation tests' table has a row for every registered unit, and each test it names is
    defined (in tests/layers/test_mixer_equations.py unless the cell names another file of tests/layers)."""
    section = (DOCS / "layers.md").read_text().split("## Equation tests", 1)[1].split("\n## ", 1)[0]
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in section.splitlines() if line.startswith("| `")]
    units = [name for row in rows for name in re.findall(r"`([a-z_]+)`", row[0])]
    assert sorted(units) == sorted(layers.names("token") + layers.names("channel"))
    tests = DOCS.parent / "tests" / "layers"
    for row in rows:
        named = re.findall(r"`(?:([a-z_]+\.py)::)?(test_[a-z0-9_]+)`", row[-1])
        assert named, f"the row of {row[0]} names no test"
        for file, name in named:
            source = (tests / (file or "test_mixer_equations.py")).read_text()
            assert re.search(rf"^def {name}\(", source, flags=re.M), f"{row[0]}: no test {name} in {file or 'test_mixer_equations.py'}"


def test_every_decoding_method_file_has_its_row_and_lud_names_its_api():
    """docs/decoding.md's method table names every method file of recurlab/decoding (and only files that exist);
    docs/lud.md names every public function and constant that lud.py exports."""
    from recurlab import decoding
    from recurlab.decoding import lud

    section = (DOCS / "decoding.md").read_text().split("| method | file |", 1)[1].split("\n\n", 1)[0]
    files = set(re.findall(r"`([a-z_]+\.py)`", section))
    shared = {"__init__.py", "common.py", "verify.py", "rewind.py", "methods.py"}  # what the methods share
    assert files == {p.name for p in Path(decoding.__file__).parent.glob("*.py")} - shared
    text = (DOCS / "lud.md").read_text()
    exported = [name for name in decoding.__all__ if hasattr(lud, name)
                and getattr(getattr(lud, name), "__module__", lud.__name__) == lud.__name__]  # constants have none
    missing = [name for name in exported if name not in text]
    assert len(exported) > 10 and not missing, f"docs/lud.md does not name {missing}"
