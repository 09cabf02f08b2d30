"""The public surface: a sorted __all__, and no optional package imported by `import kdist`."""

from __future__ import annotations

import subprocess
import sys

import kdist


def test_all_is_sorted_and_exported():
    assert kdist.__all__ == sorted(kdist.__all__)
    for name in kdist.__all__:
        assert hasattr(kdist, name), name


def test_import_kdist_imports_no_optional_package():
    code = (
        "import sys, kdist\n"
        "heavy = ['ipywidgets', 'matplotlib', 'plotly', 'akshare', 'baostock', 'yfinance',\n"
        "         'distributed', 'IPython', 'rich', 'pytest', 'kdist.testing']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_version_matches_the_package_metadata():
    from importlib.metadata import version

    assert kdist.__version__ == version("kdist")
