"""Notebooks are committed clean: numbered names, a title first, outputs only where nbval checks.

The notebooks are documentation first, so what nbval needs lives in the cells' tags, not in
their code: a cell tagged ``nbval-check-output`` has its saved outputs compared (nbval runs in
lax mode, ``--nbval-lax``, which compares those cells and nothing else), ``nbval-ignore-output``
says a cell's output varies, ``nbval-skip`` and ``nbval-raises-exception`` are nbval's other
two. No cell opens with a ``# NBVAL_...`` comment. Checked cells keep their outputs and every
other cell is stored empty: no stale tracebacks, paths, job ids or dashboard links in the
repository.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NAME = re.compile(r"^\d{2}-[a-z0-9]+(?:[-_][a-z0-9]+)*\.ipynb$")
CHECK = "nbval-check-output"
IGNORE = "nbval-ignore-output"
#: A comment nbval reads as a marker (``# NBVAL_CHECK_OUTPUT``, its old PYTEST_VALIDATE_ form).
COMMENT = re.compile(r"^\s*#+\s*(NBVAL_|PYTEST_VALIDATE_)", re.IGNORECASE)

paths = sorted(NOTEBOOKS.glob("*.ipynb"))


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _tags(cell) -> list:
    return cell.get("metadata", {}).get("tags", [])


def _checked(cell) -> bool:
    return cell.get("cell_type") == "code" and CHECK in _tags(cell)


def _cells(path: Path) -> list:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _code_cells(path: Path):
    return [(i, c) for i, c in enumerate(_cells(path)) if c["cell_type"] == "code"]


def test_there_are_notebooks():
    assert paths, f"no notebooks in {NOTEBOOKS}"


@pytest.mark.parametrize("path", paths, ids=lambda p: p.name)
def test_name_is_numbered(path):
    assert NAME.match(path.name), f"{path.name}: name notebooks NN-topic.ipynb"


@pytest.mark.parametrize("path", paths, ids=lambda p: p.name)
def test_first_cell_is_a_title(path):
    cells = _cells(path)
    assert cells, f"{path.name} has no cells"
    first = cells[0]
    assert first["cell_type"] == "markdown", f"{path.name}: the first cell must be markdown"
    assert _source(first).startswith("# "), f"{path.name}: the first cell must start with '# '"


@pytest.mark.parametrize("path", paths, ids=lambda p: p.name)
def test_no_nbval_comments_in_the_code(path):
    """What nbval needs is a cell tag (in JupyterLab: the right sidebar's property inspector,
    "Cell Tags"), never a ``# NBVAL_...`` line the reader has to skip."""
    for i, cell in _code_cells(path):
        for line in _source(cell).splitlines():
            assert not COMMENT.match(line), (
                f"{path.name} cell {i}: {line.strip()!r}: remove it and tag the cell "
                f"{line.strip().lstrip('#').strip().lower().replace('_', '-')!r} instead"
            )


@pytest.mark.parametrize("path", paths, ids=lambda p: p.name)
def test_tags_are_nbval_tags(path):
    """Each nbval tag is one the installed nbval reads (a misspelt one would be ignored
    silently), and no cell is both checked and ignored."""
    from nbval.plugin import metadata_tags

    for i, cell in enumerate(_cells(path)):
        tags = _tags(cell)
        assert isinstance(tags, list), f"{path.name} cell {i}: tags must be a list"
        for tag in tags:
            if tag.startswith(("nbval", "raises-exception")):
                assert tag in metadata_tags, (
                    f"{path.name} cell {i}: nbval has no tag {tag!r}; "
                    f"it reads {sorted(metadata_tags)}"
                )
                assert cell["cell_type"] == "code", f"{path.name} cell {i}: {tag!r} on markdown"
        assert not {CHECK, IGNORE} <= set(tags), f"{path.name} cell {i}: checked and ignored"


@pytest.mark.parametrize("path", paths, ids=lambda p: p.name)
def test_every_notebook_checks_its_outcome(path):
    """Each notebook compares something: a run that went wrong cannot pass only by not failing."""
    checked = [i for i, cell in _code_cells(path) if _checked(cell)]
    assert checked, f"{path.name}: tag the cells that show the outcome {CHECK!r}"


@pytest.mark.parametrize("path", paths, ids=lambda p: p.name)
def test_checked_cells_keep_their_outputs(path):
    for i, cell in _code_cells(path):
        if _checked(cell):
            assert cell.get("outputs"), (
                f"{path.name} cell {i}: a {CHECK} cell needs its expected output saved: run it "
                "and save the notebook"
            )


@pytest.mark.parametrize("path", paths, ids=lambda p: p.name)
def test_outputs_only_on_checked_cells(path):
    for i, cell in _code_cells(path):
        if _checked(cell):
            continue
        first = _source(cell).splitlines()[:1]
        assert not cell.get("outputs"), (
            f"{path.name} cell {i} {first}: clear its outputs (only cells tagged {CHECK} keep them)"
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


def test_nbval_reads_the_tags_the_notebooks_use():
    """The installed nbval maps each tag to what the notebooks mean by it."""
    from nbval.plugin import find_metadata_tags

    def options(tag):
        return dict(find_metadata_tags({"tags": [tag]}))

    assert options(CHECK) == {"check": True}
    assert options(IGNORE) == {"check": False}
    assert options("nbval-skip") == {"skip": True}
    assert options("nbval-raises-exception") == {"check_exception": True}


def _notebook(cells) -> dict:
    """A notebook of ``(source, tags, saved stdout or None)`` code cells."""
    def cell(source, tags, stdout):
        outputs = [] if stdout is None else [
            {"name": "stdout", "output_type": "stream", "text": [stdout]}]
        return {"cell_type": "code", "execution_count": None if stdout is None else 1,
                "metadata": {"tags": tags}, "outputs": outputs, "source": [source]}
    return {
        "cells": [cell(*c) for c in cells],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                    "name": "python3"}},
        "nbformat": 4, "nbformat_minor": 5,
    }


@pytest.mark.slow
def test_nbval_honours_the_tags_in_lax_mode(tmp_path):
    """Run nbval as the suite does (``--nbval-lax``) on two small notebooks: a checked cell is
    compared and fails on a wrong saved output, an ignored or untagged one is not compared, a
    skipped one is not run, and an expected exception passes."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # not the project's settings
    good = _notebook([
        ("print(1 + 1)", [CHECK], "2\n"),
        ("print('varies')", [IGNORE], "something else\n"),
        ("print('untagged')", [], "something else\n"),
        ("raise RuntimeError('never run')", ["nbval-skip"], None),
        ("1 / 0", ["nbval-raises-exception"], None),
    ])
    bad = _notebook([("print(1 + 1)", [CHECK], "3\n")])
    (tmp_path / "good.ipynb").write_text(json.dumps(good))
    (tmp_path / "bad.ipynb").write_text(json.dumps(bad))

    def nbval(name):
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
             "--nbval-current-env", "--nbval-kernel-startup-timeout=180", name],
            check=False, cwd=tmp_path, capture_output=True, text=True, timeout=240,
        )

    passed = nbval("good.ipynb")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert re.search(r"\b4 passed, 1 skipped\b", passed.stdout), passed.stdout
    failed = nbval("bad.ipynb")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "1 failed" in failed.stdout, failed.stdout
