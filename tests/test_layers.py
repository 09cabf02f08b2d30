"""The layers of docs/architecture.md ("How the code is laid out") hold: a module imports only
from its own layer or the ones below it, and the table names every module."""

from __future__ import annotations

import ast
from pathlib import Path

import kdist

ROOT = Path(kdist.__file__).parent

# Top first, as docs/architecture.md draws them.
LAYERS = [
    ("faces", {"cli", "cli_cluster", "cli_format", "widgets", "browse", "_panels",
               "plotting", "__main__"}),
    ("public API", {"runner", "verification", "exporting", "feeds"}),
    ("the client loop", {"loop", "batch"}),
    ("where bars go, where chunks run",
     {"store", "bounds", "layout", "adjustment", "gaps", "horizons", "wide", "qlib", "zipline", "ledger", "access", "cluster", "backends", "_quiet_worker", "security",
      "progress"}),
    ("worker side", {"fetching", "plan", "limits", "ticks", "providers", "testing"}),
    ("foundations", {"schema", "actions", "calendars", "bars", "securities", "outcome", "report", "errors", "_version"}),
]
LEVEL = {module: level for level, (_, modules) in enumerate(LAYERS) for module in modules}


def _module(path: Path, root: Path = ROOT) -> str:
    """``kdist/providers/tdx.py`` -> ``providers``; ``kdist/store.py`` -> ``store``."""
    return path.relative_to(root).with_suffix("").parts[0]


def _imports(path: Path, root: Path = ROOT) -> set[str]:
    """The kdist modules ``path`` imports, at any depth (deferred imports count too)."""
    package = path.relative_to(root).parts[:-1]  # () for kdist/, ("providers",) below it
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)]
            target = (*base, *(node.module.split(".") if node.module else ()))
            if target:
                found.add(target[0])
            else:  # from . import x, from .. import x
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kdist."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("kdist."))
    return found


def test_every_module_has_a_layer():
    modules = {_module(p) for p in ROOT.rglob("*.py")} - {"__init__"}
    assert modules - set(LEVEL) == set(), "add the new module to a layer here and in the docs"


def _upward(root: Path) -> list[str]:
    """Every import of a module from a layer above its own, under ``root``."""
    upward = []
    for path in sorted(root.rglob("*.py")):
        module = _module(path, root)
        if module == "__init__":  # the package's front door re-exports every layer
            continue
        for imported in _imports(path, root) - {"__version__", "__init__"}:
            if imported in LEVEL and LEVEL[imported] < LEVEL[module]:
                upward.append(f"{path.relative_to(root)} imports {imported} "
                              f"({LAYERS[LEVEL[imported]][0]} above {LAYERS[LEVEL[module]][0]})")
    return upward


def test_no_module_imports_from_a_layer_above_its_own():
    assert _upward(ROOT) == []


def test_the_check_sees_an_upward_import(tmp_path):
    """The check can fail: a foundation or a provider importing a layer above is caught,
    deferred imports included; an import from below is not."""
    fake = tmp_path / "kdist"
    (fake / "providers").mkdir(parents=True)
    (fake / "schema.py").write_text("def f():\n    from .loop import JobLoop\n")
    (fake / "providers" / "x.py").write_text("from ..store import Store\nfrom .. import bars\n")
    (fake / "runner.py").write_text("import kdist.store\nfrom kdist.schema import Freq\n")
    assert _imports(fake / "providers" / "x.py", fake) == {"store", "bars"}
    assert _upward(fake) == [
        "providers/x.py imports store (where bars go, where chunks run above worker side)",
        "schema.py imports loop (the client loop above foundations)",
    ]


def test_the_documented_table_names_the_same_layers():
    doc = (ROOT.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = doc.split("## How the code is laid out", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "`" in line]
    documented = {}
    for row in rows:
        name, modules = row.split("|")[1].strip(), row.split("|")[2]
        documented[name] = {m.strip("`/").removesuffix(".py")
                            for m in modules.replace(",", ";").replace(" ", "").split(";")
                            if m.startswith("`")}
    for name, modules in LAYERS:
        assert documented.get(name, set()) == modules - {"__main__"}, name
