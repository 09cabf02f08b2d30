"""What `make lab` installs to open the notebooks, and what the Conda environment lists.

`make lab` installs the ``notebook`` extra and nothing else (no pytest, nbval or vendor
libraries); the extra holds what the notebooks import and dask-labextension, which docks the
Dask dashboard's panes inside JupyterLab. `make test` installs the test packages and that
extra too, so the extension's test below runs there. environment.yml lists every runtime
dependency of pyproject.toml, with the same minimum versions.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
RUNTIME = [Requirement(r) for r in PYPROJECT["dependencies"]]
EXTRAS = {name: [Requirement(r) for r in reqs]
          for name, reqs in PYPROJECT["optional-dependencies"].items()}

#: Distributions that are not for opening notebooks: test runners and vendor libraries.
NOT_FOR_NOTEBOOKS = {"pytest", "pytest-timeout", "nbval", "playwright", "kdist",
                     "akshare", "baostock", "yfinance"}
#: Conda-forge's names where they differ from PyPI's.
CONDA_NAME = {"duckdb": "python-duckdb"}
#: The module a distribution is imported as, where the names differ.
MODULES = {"dask-labextension": "dask_labextension"}
#: Modules the notebooks import from beside them (notebooks/background.py), not installed.
LOCAL = {"background"}


def _names(reqs) -> set[str]:
    return {r.name.lower() for r in reqs}


def _make(target: str) -> str:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    done = subprocess.run(["make", "-n", "-B", target], check=False, cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _installs(commands: str) -> list[str]:
    """What each ``pip install -e`` of a make recipe installs: ``.[a,b]`` or a path."""
    return re.findall(r"pip install .*?-e \"?([^\s\"]+)", commands)


def test_the_notebook_extra_has_no_test_or_vendor_packages():
    notebook = _names(EXTRAS["notebook"])
    assert {"jupyterlab", "ipykernel", "ipywidgets", "matplotlib", "dask-labextension"} <= notebook
    assert notebook & NOT_FOR_NOTEBOOKS == set()


def test_make_lab_installs_only_the_notebook_extra():
    installs = _installs(_make("lab"))
    assert installs == [".[notebook]"], f"make lab installs {installs}"


def test_make_test_installs_the_test_and_notebook_extras():
    installs = _installs(_make("test"))
    extras = {e for spec in installs if spec.startswith(".[")
              for e in spec[2:-1].split(",")}
    assert {"test", "notebook", "browser"} <= extras, f"make test installs {installs}"


def _imports(source: str) -> set[str]:
    """Top-level modules a cell imports (IPython magics and shell lines skipped)."""
    code = "\n".join(line for line in source.splitlines()
                     if not line.lstrip().startswith(("%", "!")))
    found = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


def test_the_notebooks_import_only_what_make_lab_installs():
    reqs = RUNTIME + EXTRAS["notebook"]
    installed = {"kdist"} | LOCAL
    for req in reqs:
        installed.add(MODULES.get(req.name.lower(), req.name.lower().replace("-", "_")))
        installed.update(req.extras)  # dask[distributed]
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] != "code":
                continue
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            missing = _imports(source) - installed - set(sys.stdlib_module_names)
            assert not missing, (
                f"{path.name} imports {sorted(missing)}: add it to the notebook extra of "
                "pyproject.toml (and environment.yml), or leave it out of the notebook"
            )


def _conda_packages() -> dict[str, str]:
    """environment.yml's Conda packages: name -> version spec ('' when none)."""
    packages = {}
    for line in (ROOT / "environment.yml").read_text(encoding="utf-8").splitlines():
        m = re.match(r"^  - ([A-Za-z0-9_.-]+)\s*([<>=!~].*)?$", line)
        if m:
            packages[m.group(1).lower()] = (m.group(2) or "").replace(" ", "")
    return packages


def _conda_names(req: Requirement) -> list[str]:
    names = [CONDA_NAME.get(req.name.lower(), req.name.lower())]
    return names + [extra for extra in sorted(req.extras)]  # dask[distributed]: distributed too


@pytest.mark.parametrize("group", ["dependencies", "notebook"])
def test_environment_yml_lists_pyprojects_packages(group):
    """Every runtime dependency (cryptography included) and the notebook extra, with
    pyproject's minimum versions."""
    conda = _conda_packages()
    reqs = RUNTIME if group == "dependencies" else EXTRAS["notebook"]
    for req in reqs:
        minimum = [f">={s.version}" for s in req.specifier if s.operator == ">="]
        for name in _conda_names(req):
            assert name in conda, f"environment.yml lacks {name} (pyproject: {req})"
            if minimum:
                assert conda[name] == minimum[0], (
                    f"environment.yml has {name}{conda[name]}, pyproject {req}"
                )


def _run(*args: str, env: dict) -> str:
    done = subprocess.run([sys.executable, "-m", "jupyter", *args], check=False, env=env, text=True,
                          capture_output=True, timeout=180)
    out = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr)  # no colours
    assert done.returncode == 0, out
    return out


@pytest.mark.slow
def test_dask_labextension_is_installed_and_enabled(tmp_path):
    """JupyterLab finds the extension in this environment, enabled, with its server side
    (which proxies the dashboard) enabled too; the user's own Jupyter settings are left out."""
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        pytest.skip("JupyterLab is not installed: pip install -e '.[notebook]' (make test does)")
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               JUPYTER_DATA_DIR=str(tmp_path / "data"), HOME=str(tmp_path))
    labextensions = _run("labextension", "list", env=env)
    assert re.search(r"^\s*dask-labextension v\S+ enabled OK\b", labextensions, re.MULTILINE), (
        f"dask-labextension is not installed and enabled "
        f"(pip install -e '.[notebook]'):\n{labextensions}"
    )
    server = _run("server", "extension", "list", env=env)
    assert re.search(r"^\s*dask_labextension enabled\s*$", server, re.MULTILINE), server
    assert re.search(r"^\s*dask_labextension \S+ OK\b", server, re.MULTILINE), server
