"""Provider names to classes: built-ins, plug-ins, unknown names and missing extras."""

from __future__ import annotations

import pickle

import pytest

from kdist.errors import (
    InvalidOptionError,
    MissingDependencyError,
    UnknownProviderError,
    UsageError,
)
from kdist.providers import Option, Provider, available_providers, get_provider, provider_class
from kdist.providers import registry
from kdist.providers.synthetic import SyntheticProvider


class NeedsMissing(Provider):
    """A provider whose optional vendor package is not installed."""

    name = "needs-missing"
    description = "needs a package nobody has"
    requires = ("no_such_module_xyz",)
    extra = "foo"


class NeedsMissingNoExtra(NeedsMissing):
    name = "needs-missing-no-extra"
    extra = None


class Installed(Provider):
    name = "installed"
    description = "needs only the standard library"
    requires = ("json",)
    options = {"token": Option(str, "", "an API token")}


@pytest.fixture
def builtins(monkeypatch):
    """Only synthetic and the test providers, as lazy "module:Class" strings."""
    table = {
        "synthetic": "kdist.providers.synthetic:SyntheticProvider",
        "needs-missing": f"{__name__}:NeedsMissing",
        "needs-missing-no-extra": f"{__name__}:NeedsMissingNoExtra",
        "installed": f"{__name__}:Installed",
    }
    monkeypatch.setattr(registry, "_BUILTINS", table)
    monkeypatch.setattr(registry, "_plugins", lambda: {})
    return table


def test_get_provider_by_name():
    p = get_provider("synthetic", seed=3)
    assert type(p) is SyntheticProvider and p.seed == 3
    assert type(get_provider()) is SyntheticProvider  # the default
    assert provider_class("synthetic") is SyntheticProvider


def test_get_provider_passes_an_instance_through():
    p = SyntheticProvider(seed=4)
    assert get_provider(p) is p


def test_get_provider_instance_with_more_options_makes_a_new_one():
    p = SyntheticProvider(seed=4, fail="AAPL")
    q = get_provider(p, flaky="0.5")
    assert q is not p and type(q) is SyntheticProvider
    assert q.given_options() == {"seed": 4, "fail": "AAPL", "flaky": 0.5}
    assert p.flaky == 0.0  # the original is untouched


def test_get_provider_bad_option():
    with pytest.raises(InvalidOptionError, match="known: actions, call_log"):
        get_provider("synthetic", nonsense=1)


def test_unknown_provider_lists_available():
    with pytest.raises(UnknownProviderError) as info:
        get_provider("yf")
    err = info.value
    assert str(err) == f"Unknown provider 'yf'; available: {', '.join(err.available)}"
    assert err.name == "yf"
    assert {"csv", "parquet", "synthetic"} <= set(err.available)
    assert err.available == sorted(err.available)
    assert isinstance(err, LookupError) and isinstance(err, UsageError)
    with pytest.raises(LookupError):
        provider_class("nope")


def test_unknown_provider_error_pickles():
    with pytest.raises(UnknownProviderError) as info:
        get_provider("nope")
    copy = pickle.loads(pickle.dumps(info.value))
    assert str(copy) == str(info.value) and copy.available == info.value.available


def test_unknown_provider_lists_plugins(builtins, monkeypatch):
    monkeypatch.setattr(registry, "_plugins", lambda: {"zzplug": object()})
    with pytest.raises(UnknownProviderError, match="available: installed, needs-missing, "
                       "needs-missing-no-extra, synthetic, zzplug"):
        get_provider("nope")


def test_missing_dependency_names_the_extra(builtins):
    with pytest.raises(MissingDependencyError) as info:
        get_provider("needs-missing")
    err = info.value
    assert str(err) == 'Provider \'needs-missing\' needs no_such_module_xyz: pip install "kdist[foo]"'
    assert err.extra == "foo"
    assert err.name == "needs-missing"
    assert isinstance(err, ImportError)
    # The class itself is importable: only the vendor package is missing.
    assert provider_class("needs-missing") is NeedsMissing


def test_missing_dependency_without_extra_names_the_package(builtins):
    with pytest.raises(MissingDependencyError, match="pip install no_such_module_xyz$"):
        get_provider("needs-missing-no-extra")


def test_missing_dependency_error_pickles(builtins):
    with pytest.raises(MissingDependencyError) as info:
        get_provider("needs-missing")
    copy = pickle.loads(pickle.dumps(info.value))
    assert str(copy) == str(info.value)
    assert (copy.extra, copy.name) == ("foo", "needs-missing")


def test_installed_provider_by_lazy_string(builtins):
    p = get_provider("installed", token="abc")
    assert type(p) is Installed and p.token == "abc"


def test_available_providers_rows(builtins):
    rows = {row["name"]: row for row in available_providers()}
    assert list(rows) == ["installed", "needs-missing", "needs-missing-no-extra", "synthetic"]
    assert rows["needs-missing"]["installed"] is False
    assert rows["needs-missing"]["extra"] == "foo"
    assert rows["needs-missing"]["description"] == "needs a package nobody has"
    assert rows["installed"]["installed"] is True
    assert rows["installed"]["options"] == {"token": "an API token"}
    synthetic = rows["synthetic"]
    assert synthetic["installed"] is True and synthetic["extra"] is None
    assert synthetic["description"] == SyntheticProvider.description
    assert set(synthetic["options"]) == set(SyntheticProvider.options)
    assert synthetic["options"]["seed"] == "changes every value, keeps the calendar"


class _EntryPoint:
    def __init__(self, target=None, error=None):
        self.target, self.error = target, error
        self.value = "somepkg.module:Thing"

    def load(self):
        if self.error is not None:
            raise self.error
        return self.target


def test_plugin_provider_by_entry_point(builtins, monkeypatch):
    monkeypatch.setattr(registry, "_plugins", lambda: {"plug": _EntryPoint(Installed)})
    assert type(get_provider("plug")) is Installed


def test_broken_plugin_is_reported_not_fatal(builtins, monkeypatch):
    plugins = {"broken": _EntryPoint(error=ImportError("no module named vendorlib"))}
    monkeypatch.setattr(registry, "_plugins", lambda: plugins)
    with pytest.raises(UnknownProviderError, match="failed to load .*vendorlib.*reinstall"):
        get_provider("broken")
    with pytest.warns(UserWarning, match="'broken' failed to load"):
        rows = {row["name"]: row for row in available_providers()}
    assert rows["broken"]["installed"] is False
    assert "vendorlib" in rows["broken"]["description"]
    # The others are still listed and usable.
    assert rows["synthetic"]["installed"] is True
    assert type(get_provider("synthetic")) is SyntheticProvider


def test_plugin_that_is_not_a_provider(builtins, monkeypatch):
    monkeypatch.setattr(registry, "_plugins", lambda: {"notone": _EntryPoint(dict)})
    with pytest.raises(UnknownProviderError, match="'notone' is not a kdist Provider subclass"):
        get_provider("notone")


def test_plugin_shadowing_a_builtin_is_ignored(monkeypatch):
    class Group:
        def __init__(self, name):
            self.name, self.value = name, "evil:Provider"

    monkeypatch.setattr(
        registry, "entry_points", lambda group: [Group("synthetic"), Group("extra")]
    )
    with pytest.warns(UserWarning, match="'synthetic' .*shadows a built-in and is ignored"):
        found = registry._plugins.__wrapped__()  # uncached: the real ones are read once
    assert list(found) == ["extra"]
