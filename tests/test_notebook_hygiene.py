"""Notebooks are committed clean: numbered names, a title first, outputs only where nbval checks.

nbval (lax mode) compares the saved outputs of cells marked ``# NBVAL_CHECK_OUTPUT`` and
nothing else, so those cells keep their outputs and every other cell is stored empty: no
stale tracebacks, paths, job ids or dashboard links in the repository.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NAME = re.compile(r"^\d{2}-[a-z0-9]+(?:[-_][a-z0-9]+)*\.ipynb$")
CHECK = "# NBVAL_CHECK_OUTPUT"

paths = sorted(NOTEBOOKS.glob("*.ipynb"))


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _checked(cell) -> bool:
    return cell.get("cell_type") == "code" and _source(cell).startswith(CHECK)


def test_there_are_notebooks():
    assert paths, f"no notebooks in {NOTEBOOKS}"


@pytest.mark.parametrize("path", paths, ids=lambda p: p.name)
def test_name_is_numbered(path):
    assert NAME.match(path.name), f"{path.name}: name notebooks NN-topic.ipynb"


@pytest.mark.parametrize("path", paths, ids=lambda p: p.name)
def test_first_cell_is_a_title(path):
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    assert cells, f"{path.name} has no cells"
    first = cells[0]
    assert first["cell_type"] == "markdown", f"{path.name}: the first cell must be markdown"
    assert _source(first).startswith("# "), f"{path.name}: the first cell must start with '# '"


@pytest.mark.parametrize("path", paths, ids=lambda p: p.name)
def test_outputs_only_on_checked_cells(path):
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    for i, cell in enumerate(cells):
        if cell["cell_type"] != "code" or _checked(cell):
            continue
        first = _source(cell).splitlines()[:1]
        assert not cell.get("outputs"), (
            f"{path.name} cell {i} {first}: clear its outputs (only {CHECK} cells keep them)"
        )
        assert cell.get("execution_count") is None, (
            f"{path.name} cell {i} {first}: clear its execution count"
        )


@pytest.mark.parametrize("path", paths, ids=lambda p: p.name)
def test_no_saved_widget_state(path):
    metadata = json.loads(path.read_text(encoding="utf-8")).get("metadata", {})
    assert "widgets" not in metadata, (
        f"{path.name}: saved widget state (old job ids, paths, ports); clear it before committing"
    )
