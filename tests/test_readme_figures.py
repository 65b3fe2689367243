"""Every results table of the README and docs/presets.md is what its record in docs/records/ gives.

scripts/readme_figures.py writes the tables, the pictures and the records from real runs (`make demo` and the other
CPU presets); this recomputes each table from the record it kept, so a number that the record does not give fails.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import pytest

import hpscape

ROOT = Path(__file__).resolve().parents[1]
_SPEC = importlib.util.spec_from_file_location("readme_figures", ROOT / "scripts" / "readme_figures.py")
readme_figures = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(readme_figures)  # type: ignore[union-attr]


def _blocks() -> list[tuple[str, Path, str]]:
    found = []
    for document in (ROOT / "README.md", ROOT / "docs" / "presets.md"):
        for name, body in re.findall(r"<!-- results:([a-z0-9-]+):start -->\n(.*?)\n<!-- results:\1:end -->",
                                     document.read_text(), re.S):
            found.append((name, document, body))
    return found


def test_the_readme_and_presets_page_hold_a_table_for_every_cpu_preset() -> None:
    names = [name for name, _, _ in _blocks()]
    assert sorted(names) == sorted(readme_figures.CPU_PRESETS)
    assert ("quick", ROOT / "README.md") in [(n, d) for n, d, _ in _blocks()]


@pytest.mark.parametrize(("name", "document", "body"), _blocks(), ids=[b[0] for b in _blocks()])
def test_each_table_is_what_its_record_gives(name: str, document: Path, body: str, tmp_path: Path) -> None:
    record = ROOT / "docs" / "records" / f"{name}.db"
    if body.startswith(readme_figures.NOT_RUN):
        # A preset not run for this revision says so, and shows no picture or number that would need a record.
        assert not record.is_file(), f"docs/records/{name}.db exists: run scripts/readme_figures.py for its table"
        assert f"]({name}.png)" not in document.read_text() and f"](docs/{name}.png)" not in document.read_text()
        return
    assert record.is_file(), f"docs/records/{name}.db is missing: run the preset, then scripts/readme_figures.py"
    copy = tmp_path / "record.db"
    shutil.copy(record, copy)
    sweep = hpscape.load(f"sqlite:///{copy}", name)
    assert body == readme_figures.results_table(sweep), f"{document.name}'s {name} table differs from its record"
    assert (ROOT / "docs" / f"{name}.png").is_file()


def test_replace_block_rewrites_only_between_its_markers() -> None:
    text = "a\n<!-- results:x:start -->\nold\n<!-- results:x:end -->\nb"
    assert readme_figures.replace_block(text, "x", "new\nlines") == \
        "a\n<!-- results:x:start -->\nnew\nlines\n<!-- results:x:end -->\nb"
    with pytest.raises(ValueError, match="no <!-- results:y:start -->"):
        readme_figures.replace_block(text, "y", "z")
