"""A conformance suite for providers: subclass it in a provider's tests to prove the contract.

:class:`ProviderConformance` holds pytest tests of what every provider owes the runner:
filled metadata (and the values a subclass declares), registration under its name, an import
that loads no vendor package, ``version``, frames that :func:`kdist.schema.normalise` turns
into canonical bars inside the requested window, an empty frame for an empty window, a
permanent error (or no bars) for an unknown symbol, pickling by options, and ``check``
refusing what the provider does not list. Its name does not start with ``Test``, so pytest
collects only subclasses::

    from kdist.testing import ProviderConformance

    class TestConformance(ProviderConformance):
        symbol, start, end = "600000.SH", "2024-01-02", "2024-01-31"
        empty_window = ("2024-01-06", "2024-01-07")  # a weekend
        unknown_symbol = "NOSUCH"
        metadata = {"tz": "Asia/Shanghai", "options": {"token": None}}

        @pytest.fixture
        def provider(self, fake_vendor):  # the seam already replaced
            return MyProvider(token="test")

This module imports pytest; ``import kdist`` never imports it.
"""

from __future__ import annotations

import importlib.metadata
import pickle
import re
import subprocess
import sys
import warnings

import pandas as pd
import pytest

from .actions import COLUMNS, normalise_actions
from .errors import InvalidOptionError, PermanentProviderError, UnknownProviderError
from .providers.base import Option, Provider
from .providers.registry import available_providers, provider_class
from .schema import BAR_COLUMNS, Adjust, Freq, normalise, normalise_many, window_bounds

__all__ = ["ProviderConformance"]

_DTYPES = {"ts": "datetime64[us]", **{c: "float64" for c in BAR_COLUMNS[1:]}}

#: Run in a fresh process, the pickled provider on stdin and its packages as arguments: exits
#: with a message naming the packages that importing, building or asking its version loaded.
_IMPORTS_NO_VENDOR = """
import pickle, sys
import kdist
already = set(sys.modules)  # loaded by kdist itself, not by the provider
provider = pickle.loads(sys.stdin.buffer.read())  # imports its module, rebuilds it
try:
    kdist.get_provider(provider.name, **provider.given_options())  # by name, as the CLI does
except kdist.errors.UnknownProviderError:
    pass
provider.version()
loaded = [m for m in sys.argv[1:] if m in sys.modules and m not in already]
sys.exit(f"imported {', '.join(loaded)}" if loaded else 0)
"""


class ProviderConformance:
    """Tests every provider must pass; subclass it as ``Test...`` to run them.

    Subclasses override the :meth:`provider` fixture and set the class attributes below.
    Windows are inclusive dates, as users give them; the suite calls ``fetch`` the way the
    runner does (Timestamps, the last day inclusive, ``freq`` and ``adjust`` as strings).
    """

    #: A symbol with at least one bar in ``[start, end]``.
    symbol: str | None = None
    #: An inclusive window (str, date or Timestamp) in which ``symbol`` has bars.
    start = None
    end = None
    #: A frequency and adjustment the provider serves.
    freq: str = "1d"
    adjust: str = "none"
    #: ``(start, end)`` in which ``symbol`` has no bars, or None to skip that test.
    empty_window: tuple | None = None
    #: A symbol the provider does not know, or None to skip that test.
    unknown_symbol: str | None = None
    #: An inclusive ``(start, end)`` in which ``symbol`` has at least one corporate action,
    #: for providers that serve them (:attr:`Provider.serves_actions`); None skips that test.
    actions_window: tuple | None = None
    #: Attribute values the provider promises, e.g. ``{"tz": "Asia/Shanghai", "freqs":
    #: (Freq.DAY,)}``; ``"options"`` maps every option's name to its default.
    metadata: dict = {}

    @pytest.fixture
    def provider(self) -> Provider:
        """The provider under test, its vendor seam already replaced: override this."""
        pytest.fail(f"{type(self).__name__} must override the `provider` fixture")

    # -- helpers ----------------------------------------------------------------------------

    def _window(self, start=None, end=None) -> tuple[pd.Timestamp, pd.Timestamp]:
        for attr in ("symbol", "start", "end"):
            if getattr(self, attr) is None:
                pytest.fail(f"{type(self).__name__} must set `{attr}`")
        return window_bounds(self.start if start is None else start,
                             self.end if end is None else end)

    def _options(self) -> tuple[Freq, Adjust]:
        return Freq.parse(self.freq), Adjust.parse(self.adjust)

    def _fetch(self, provider, symbol=None, start=None, end=None) -> pd.DataFrame:
        lo, hi = self._window(start, end)
        freq, adjust = self._options()
        # As kdist.runner calls it: the window's days as Timestamps, the last one inclusive.
        raw = provider.fetch(symbol or self.symbol, lo, hi - pd.Timedelta(days=1),
                             freq.value, adjust.value)
        assert isinstance(raw, pd.DataFrame), (
            f"fetch returned {type(raw).__name__}, not a pandas DataFrame"
        )
        return raw

    def _normalise(self, provider, raw) -> tuple[pd.DataFrame, dict]:
        # No window here, so bars outside it are seen, not silently dropped.
        freq, adjust = self._options()
        return normalise(raw, freq=freq, adjust=adjust, tz=provider.tz)

    # -- metadata ---------------------------------------------------------------------------

    def test_metadata_is_filled(self, provider):
        cls = type(provider)
        assert isinstance(provider, Provider), f"{cls.__name__} is not a kdist Provider"
        assert isinstance(cls.name, str) and cls.name, f"{cls.__name__}.name is empty"
        assert isinstance(cls.description, str) and cls.description, (
            f"{cls.__name__}.description is empty"
        )
        assert all(isinstance(m, str) for m in cls.requires), "requires must hold module names"
        assert isinstance(cls.url, str), f"{cls.__name__}.url must be a str"
        assert not cls.url or cls.url.startswith(("https://", "http://")), (
            f"{cls.__name__}.url is no web address: {cls.url!r}"
        )
        assert cls.freqs and all(isinstance(f, Freq) for f in cls.freqs), (
            "freqs must be a non-empty tuple of kdist.Freq"
        )
        assert cls.adjusts and all(isinstance(a, Adjust) for a in cls.adjusts), (
            "adjusts must be a non-empty tuple of kdist.Adjust"
        )
        assert all(isinstance(o, Option) for o in cls.options.values()), (
            "options must map names to kdist.providers.Option"
        )
        freq, adjust = self._options()
        assert freq in cls.freqs and adjust in cls.adjusts, (
            f"the suite's freq={freq.value!r}, adjust={adjust.value!r} are not served by "
            f"{cls.name!r}: set freq and adjust on {type(self).__name__}"
        )
        for key, expected in self.metadata.items():
            if key == "options":
                got = {name: option.default for name, option in provider.options.items()}
                assert all(option.help for option in provider.options.values()), (
                    f"an option of {cls.name!r} has no help"
                )
            else:
                got = getattr(provider, key)
            assert got == expected, f"{cls.__name__}.{key} is {got!r}, not {expected!r}"

    def test_registered_under_its_name(self, provider):
        cls = type(provider)
        try:
            registered = provider_class(cls.name)
        except UnknownProviderError:
            pytest.skip(f"no provider is registered as {cls.name!r}")
        assert registered is cls, (
            f"{cls.name!r} names {registered.__module__}.{registered.__qualname__}, not "
            f"{cls.__module__}.{cls.__qualname__}"
        )
        with warnings.catch_warnings():
            # Only this provider is under test: a sibling not installed here must not fail it.
            warnings.filterwarnings(
                "ignore", f"Provider '(?!{re.escape(cls.name)}')[^']+' cannot be loaded"
            )
            rows = {row["name"]: row for row in available_providers()}
        row = rows[cls.name]
        assert row["installed"] and row["description"] == cls.description, row
        assert set(row["options"]) == set(cls.options), row

    def test_importing_it_imports_no_vendor_package(self, provider):
        cls = type(provider)
        if not cls.requires:
            pytest.skip(f"{cls.name!r} needs no vendor package")
        done = subprocess.run(
            [sys.executable, "-c", _IMPORTS_NO_VENDOR, *cls.requires],
            input=pickle.dumps(provider), capture_output=True, timeout=120,
        )
        assert done.returncode == 0, (
            f"importing {cls.__module__}, building {cls.name!r} and asking its version "
            f"must import no vendor package: {done.stderr.decode(errors='replace').strip()}"
        )

    def test_version_is_a_string_or_none(self, provider):
        version = provider.version()
        assert version is None or (isinstance(version, str) and version), (
            f"version() returned {version!r}: give a non-empty str, or None"
        )

    def test_version_is_the_vendor_packages(self, provider):
        requires = type(provider).requires
        if not requires:
            pytest.skip(f"{provider.name!r} needs no vendor package")
        installed = []
        for module in requires:
            try:
                installed.append(importlib.metadata.version(module))
            except importlib.metadata.PackageNotFoundError:
                pass
        version = provider.version()
        assert version in installed or (version is None and not installed), (
            f"version() returned {version!r}, not the installed version of {', '.join(requires)}"
        )

    # -- fetch ------------------------------------------------------------------------------

    def test_fetch_gives_canonical_bars(self, provider):
        bars, _ = self._normalise(provider, self._fetch(provider))
        assert list(bars.columns) == list(BAR_COLUMNS)
        dtypes = {c: str(bars[c].dtype) for c in BAR_COLUMNS}
        assert dtypes == _DTYPES, f"normalised dtypes {dtypes}"
        assert len(bars) >= 1, (
            f"no bars for {self.symbol} in {self.start} .. {self.end}: choose a window with bars"
        )

    def test_bars_are_inside_the_window(self, provider):
        lo, hi = self._window()
        bars, _ = self._normalise(provider, self._fetch(provider))
        outside = bars[(bars["ts"] < lo) | (bars["ts"] >= hi)]
        assert outside.empty, (
            f"{len(outside)} bar(s) outside {lo.date()} .. {(hi - pd.Timedelta(days=1)).date()}, "
            f"first at {outside['ts'].iloc[0] if len(outside) else None}"
        )

    def test_no_duplicate_timestamps_after_normalise(self, provider):
        bars, rejected = self._normalise(provider, self._fetch(provider))
        # normalise keeps the last of equal stamps; a provider should not rely on it, e.g. by
        # stamping daily bars with times that fall on one day.
        assert "duplicate timestamp" not in rejected, (
            f"{rejected['duplicate timestamp']} bar(s) share a timestamp after normalise"
        )
        assert bars["ts"].is_unique and bars["ts"].is_monotonic_increasing

    def test_empty_window_gives_an_empty_frame(self, provider):
        if self.empty_window is None:
            pytest.skip("no empty_window given")
        start, end = self.empty_window
        raw = self._fetch(provider, start=start, end=end)
        assert len(raw) == 0, f"{len(raw)} row(s) for a window without bars"
        bars, rejected = self._normalise(provider, raw)
        assert bars.empty and rejected == {}
        assert list(bars.columns) == list(BAR_COLUMNS)

    def test_unknown_symbol_is_a_permanent_error_or_empty(self, provider):
        if self.unknown_symbol is None:
            pytest.skip("no unknown_symbol given")
        try:
            raw = self._fetch(provider, symbol=self.unknown_symbol)
        except PermanentProviderError as exc:
            assert self.unknown_symbol in str(exc) or getattr(exc, "symbol", None) == (
                self.unknown_symbol
            ), f"the error does not name {self.unknown_symbol}: {exc}"
            # Dask sends worker errors back to the client: the error must survive pickling.
            copy = pickle.loads(pickle.dumps(exc))
            assert type(copy) is type(exc) and str(copy) == str(exc)
        except Exception as exc:
            pytest.fail(
                f"unknown symbol {self.unknown_symbol} raised {type(exc).__name__}: {exc}; "
                "raise kdist.errors.SymbolNotFoundError or return an empty frame"
            )
        else:
            bars, _ = self._normalise(provider, raw)
            assert bars.empty, (
                f"{len(bars)} bar(s) for unknown symbol {self.unknown_symbol}: raise "
                "SymbolNotFoundError or return an empty frame"
            )

    def test_fetch_many_gives_what_fetch_gives(self, provider):
        if type(provider).fetch_many is Provider.fetch_many:
            pytest.skip(f"{provider.name!r} has no fetch_many")
        lo, hi = self._window()
        freq, adjust = self._options()
        symbols = [self.symbol] + ([self.unknown_symbol] if self.unknown_symbol else [])
        raw = provider.fetch_many(symbols, [lo] * len(symbols), hi - pd.Timedelta(days=1),
                                  freq.value, adjust.value)
        if raw is None:
            pytest.skip(f"{provider.name!r} declined this batch (fetch_many returned None)")
        assert isinstance(raw, pd.DataFrame) and "symbol" in raw.columns, (
            "fetch_many must return a DataFrame with a 'symbol' column, or None"
        )
        bars, codes, _ = normalise_many(raw, symbols, freq=freq, adjust=adjust, tz=provider.tz)
        expected, _ = self._normalise(provider, self._fetch(provider))
        pd.testing.assert_frame_equal(bars[codes == 0].reset_index(drop=True), expected)
        assert not (codes == 1).any(), f"fetch_many gave bars for {self.unknown_symbol}"

    # -- corporate actions ------------------------------------------------------------------

    def test_actions_are_none_or_canonical(self, provider):
        lo, hi = self._window()
        got = provider.actions(self.symbol, lo, hi - pd.Timedelta(days=1))
        if not provider.serves_actions:
            assert got is None, "a provider without _actions must answer actions() with None"
            return
        assert isinstance(got, pd.DataFrame), "actions() must return a DataFrame or None"
        assert list(got.columns) == list(COLUMNS), f"actions() columns {list(got.columns)}"
        assert got["ex_date"].is_monotonic_increasing and not got["ex_date"].duplicated().any()

    def test_actions_in_their_window(self, provider):
        if not provider.serves_actions or self.actions_window is None:
            pytest.skip(f"{provider.name!r} serves no corporate actions, or none is named")
        lo, hi = (pd.Timestamp(d) for d in self.actions_window)
        got = provider.actions(self.symbol, lo, hi)
        inside = got[(got["ex_date"] >= lo) & (got["ex_date"] <= hi)]
        assert len(inside), f"no corporate action of {self.symbol} in {lo.date()}..{hi.date()}"
        again = pickle.loads(pickle.dumps(provider)).actions(self.symbol, lo, hi)
        pd.testing.assert_frame_equal(again, got)

    def test_actions_many_gives_what_actions_gives(self, provider):
        if type(provider).actions_many is Provider.actions_many or not provider.serves_actions:
            pytest.skip(f"{provider.name!r} has no actions_many")
        lo, hi = self._window()
        last = hi - pd.Timedelta(days=1)
        many = provider.actions_many([self.symbol], [lo], last)
        if many is None:
            pytest.skip(f"{provider.name!r} declined (actions_many returned None)")
        assert "symbol" in many.columns, "actions_many must return a frame with a 'symbol' column"
        got = normalise_actions(many).drop(columns="symbol")
        pd.testing.assert_frame_equal(got, provider.actions(self.symbol, lo, last))

    # -- pickling and check -------------------------------------------------------------------

    def test_pickle_round_trip_fetches_the_same_bars(self, provider):
        copy = pickle.loads(pickle.dumps(provider))
        assert copy is not provider and type(copy) is type(provider)
        assert copy == provider, f"{copy!r} != {provider!r} after pickling"
        expected, _ = self._normalise(provider, self._fetch(provider))
        got, _ = self._normalise(copy, self._fetch(copy))
        pd.testing.assert_frame_equal(got, expected)

    def test_check_accepts_what_it_serves(self, provider):
        lo, hi = self._window()
        freq, adjust = self._options()
        provider.check(freq=freq, adjust=adjust, start=lo, end=hi)

    def test_check_refuses_what_it_does_not_list(self, provider):
        lo, hi = self._window()
        freq, adjust = self._options()
        refused = [(f, adjust) for f in Freq if f not in provider.freqs]
        refused += [(freq, a) for a in Adjust if a not in provider.adjusts]
        if not refused:
            pytest.skip(f"{provider.name!r} serves every freq and adjust")
        for f, a in refused:
            with pytest.raises(InvalidOptionError) as info:
                provider.check(freq=f, adjust=a, start=lo, end=hi)
            value = f.value if f is not freq else a.value
            assert value in str(info.value), f"the refusal does not name {value!r}: {info.value}"
