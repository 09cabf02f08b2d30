"""Third-party providers: the example plug-in found through its entry point, and bad plug-ins.

``tests/plugin_pkg`` is a real package (``make venv`` installs it editable), so the first
tests go through ``importlib.metadata`` as a user's plug-in would. The bad plug-ins are real
``EntryPoint`` objects added to the installed ones; the registry reads entry points once and
caches them, so that cache is cleared around every such test.
"""

from __future__ import annotations

import importlib.metadata
import json
import pickle
import subprocess
import sys

import pandas as pd
import pytest

import kdist
from kdist.cli import main
from kdist.errors import SymbolNotFoundError, UnknownProviderError
from kdist.providers import registry
from kdist.providers.synthetic import SyntheticProvider
from kdist.schema import BAR_COLUMNS
from kdist.testing import ProviderConformance

try:
    from kdist_example_plugin import ExampleProvider
except ModuleNotFoundError as exc:  # pragma: no cover - a setup problem, said plainly
    raise ImportError(
        "the example plug-in is not installed: run `make venv`, or "
        "`.venv/bin/python -m pip install -e tests/plugin_pkg`"
    ) from exc

GROUP = registry.ENTRY_POINT_GROUP
WINDOW = ("2024-01-02", "2024-01-12")  # 9 weekdays


def entry_point(name, value):
    return importlib.metadata.EntryPoint(name=name, value=value, group=GROUP)


@pytest.fixture
def plugins(monkeypatch):
    """Add entry points to the installed ones: ``plugins(entry_point(...), ...)``."""
    installed = list(importlib.metadata.entry_points(group=GROUP))

    def add(*extra):
        monkeypatch.setattr(registry, "entry_points", lambda group: [*installed, *extra])
        registry._plugins.cache_clear()

    registry._plugins.cache_clear()
    yield add
    registry._plugins.cache_clear()  # the next reader sees the real entry points again


def rows_by_name():
    return {row["name"]: row for row in kdist.available_providers()}


# --- found through the entry point -----------------------------------------------------------


def test_entry_point_is_installed():
    found = {ep.name: ep.value for ep in importlib.metadata.entry_points(group=GROUP)}
    assert found.get("example") == "kdist_example_plugin:ExampleProvider"


def test_available_providers_lists_the_plugin():
    rows = rows_by_name()
    assert rows["example"] == {
        "name": "example",
        "installed": True,
        "extra": None,
        "description": ExampleProvider.description,
        "options": {"base": "price level of the first day of 2000"},
        "freqs": [f.value for f in ExampleProvider.freqs],
        "calendar": None,
        "bar_time": "end",
        "horizons": {},
    }
    assert rows["synthetic"]["installed"]  # the built-ins are still there


def test_cli_providers_json_lists_the_plugin(capsys):
    assert main(["providers", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["example"]["installed"] is True
    assert rows["example"]["description"] == ExampleProvider.description


def test_cli_providers_in_a_fresh_process():
    # Nothing cached, nothing imported in advance: the plug-in is found from its metadata.
    out = subprocess.run([sys.executable, "-m", "kdist", "providers"], capture_output=True,
                         text=True, check=True, timeout=120).stdout
    assert "example" in out and ExampleProvider.description in out


def test_get_provider_by_name_with_options():
    provider = kdist.get_provider("example", base="20")
    assert type(provider) is ExampleProvider and provider.base == 20.0
    assert registry.provider_class("example") is ExampleProvider
    assert pickle.loads(pickle.dumps(provider)) == provider
    with pytest.raises(SymbolNotFoundError, match="does not know MSFT"):
        provider.fetch("MSFT", *WINDOW)


def test_unknown_name_lists_the_plugin():
    with pytest.raises(UnknownProviderError) as info:
        kdist.get_provider("exampel")
    assert "example" in info.value.available and "synthetic" in info.value.available


# --- its bars in the database ----------------------------------------------------------------


def expected_bars(symbol, **options):
    bars, _ = kdist.normalise(ExampleProvider(**options).fetch(symbol, *WINDOW))
    return bars


def test_ingest_stores_its_bars(db):
    report = kdist.ingest(["000001.SZ", "600000.SH", "MSFT"], start=WINDOW[0], end=WINDOW[1],
                          provider="example", client="sync", db=db)
    assert (report.symbols_ok, report.symbols_failed, report.rows_written) == (2, 1, 18)
    assert report.provider == "example"
    assert "does not know MSFT" in report.failures["MSFT"]
    stored = kdist.load(db)
    assert set(stored["source"]) == {"example"}
    for symbol in ("000001.SZ", "600000.SH"):
        got = stored[stored["symbol"] == symbol][list(BAR_COLUMNS)]
        pd.testing.assert_frame_equal(got.reset_index(drop=True), expected_bars(symbol),
                                      check_dtype=False)


def test_cli_ingest_with_the_plugin(capsys, db):
    code = main(["ingest", "AAPL", "--start", WINDOW[0], "--end", WINDOW[1],
                 "--provider", "example", "--option", "base=50", "--db", db,
                 "--scheduler", "sync", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out)
    assert (report["provider"], report["symbols_ok"], report["rows_written"]) == ("example", 1, 9)
    stored = kdist.load(db, "AAPL")
    assert set(stored["source"]) == {"example"}
    assert stored["close"].tolist() == expected_bars("AAPL", base=50)["close"].tolist()


# --- the contract ------------------------------------------------------------------------------


class TestConformance(ProviderConformance):
    symbol = "600000.SH"
    start, end = WINDOW
    empty_window = ("2024-01-06", "2024-01-07")  # a weekend
    unknown_symbol = "MSFT"

    @pytest.fixture
    def provider(self):
        return kdist.get_provider("example", base="12.5")  # through the entry point


# --- bad plug-ins ------------------------------------------------------------------------------


def test_broken_entry_point_warns_and_spares_the_others(plugins, capsys):
    plugins(entry_point("broken", "kdist_no_such_plugin:Provider"))
    with pytest.warns(UserWarning, match="'broken' cannot be loaded.*kdist_no_such_plugin"):
        rows = rows_by_name()
    assert rows["broken"]["installed"] is False
    assert "ModuleNotFoundError" in rows["broken"]["description"]
    assert rows["example"]["installed"] and rows["synthetic"]["installed"]
    with pytest.raises(UnknownProviderError, match="'broken' failed to load .*reinstall"):
        kdist.get_provider("broken")
    assert type(kdist.get_provider("example")) is ExampleProvider
    with pytest.warns(UserWarning, match="'broken' cannot be loaded"):
        assert main(["providers", "--json"]) == 0
    listed = {row["name"]: row["installed"] for row in json.loads(capsys.readouterr().out)}
    assert listed["broken"] is False and listed["example"] is True


def test_entry_point_shadowing_a_builtin_is_ignored(plugins):
    plugins(entry_point("synthetic", "kdist_example_plugin:ExampleProvider"))
    with pytest.warns(UserWarning, match="'synthetic' .*shadows a built-in and is ignored"):
        rows = rows_by_name()
    assert rows["synthetic"]["description"] == SyntheticProvider.description
    assert type(kdist.get_provider("synthetic")) is SyntheticProvider
    assert rows["example"]["installed"]


def test_entry_point_that_is_not_a_provider(plugins):
    plugins(entry_point("notone", "collections:OrderedDict"))
    with pytest.raises(UnknownProviderError, match="'notone' is not a kdist Provider subclass"):
        kdist.get_provider("notone")
    with pytest.warns(UserWarning, match="'notone' cannot be loaded"):
        rows = rows_by_name()
    assert rows["notone"]["installed"] is False and rows["example"]["installed"]
