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
