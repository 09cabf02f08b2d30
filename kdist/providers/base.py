"""The provider contract: turn (symbol, window, freq, adjust) into bars, and nothing else.

A provider knows no Dask, no DuckDB and no widgets. It is built from plain options, pickles
by those options (sessions and logins are opened lazily in the process that uses them), and
talks to its vendor through one private method, the only thing tests replace. Vendor
exceptions are translated into :class:`~kdist.errors.TransientProviderError` (retry) or
:class:`~kdist.errors.PermanentProviderError` (do not) at that seam.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from .._version import __version__
from ..actions import normalise_actions
from ..errors import (
    InvalidOptionError,
    PermanentProviderError,
    SymbolNotFoundError,
    UsageError,
    closest,
    did_you_mean,
)
from ..schema import Adjust, Freq, normalise_symbol, to_date

__all__ = [
    "Horizon",
    "Option",
    "Provider",
    "directory_option",
    "file_inside",
    "missing_file",
    "one_line",
    "required_option",
    "vendor_numbers",
]


@dataclass(frozen=True)
class Option:
    """A provider option: its type, default and one line of help."""

    type: type
    default: Any
    help: str = ""
    #: Refuse zero, negative and NaN values (timeouts, latencies, rates).
    positive: bool = False

    def format(self, value) -> str:
        """``value`` as text that :meth:`coerce` reads back (a form field, a CLI option)."""
        if value is None:
            return ""
        if isinstance(value, dict):
            return ",".join(f"{k}:{v}" for k, v in value.items())
        return str(value)

    def coerce(self, name: str, value):
        """Return ``value`` as this option's type; strings from the CLI are parsed."""
        if value is None or isinstance(value, self.type):
            return value
        try:
            if self.type is bool and isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            if self.type is dict and isinstance(value, str):
                # "ts:日期,open:开盘" -> {"ts": "日期", "open": "开盘"}
                pairs = [p.split(":", 1) for p in value.split(",") if p]
                if any(len(p) != 2 for p in pairs):
                    raise ValueError(value)
                return {k.strip(): v.strip() for k, v in pairs}
            if self.type is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(value)  # int(2.7) would silently make it 2
            return self.type(value)
        except (TypeError, ValueError):
            raise InvalidOptionError(
                f"Option {name}={value!r} is not a valid {self.type.__name__}",
                option=name,
                value=value,
            ) from None


@dataclass(frozen=True)
class Horizon:
    """How far back a vendor serves the bars of one freq, and where that fact comes from.

    ``days`` is a rolling look-back: on day D the vendor serves bars stamped on or after
    midnight of D - (days - 1), so a bar of day L can be fetched up to day L + days - 1 and
    never after (Yahoo's 1-minute bars: 30). ``earliest`` is a fixed first date: nothing
    before it was ever served. Either may be None (no such limit, or none known). ``source``
    is one line saying where the fact comes from. :meth:`Provider.horizon` returns a
    provider's; :mod:`kdist.horizons` tells which stored series are about to pass theirs.

    Examples
    --------
    >>> h = Horizon(days=30, source="Yahoo")
    >>> h.first_served("2026-12-07 10:00")
    Timestamp('2026-11-08 00:00:00')
    """

    #: Rolling look-back in days (None: none).
    days: int | None = None
    #: The first date the vendor serves (None: none known).
    earliest: pd.Timestamp | None = None
    #: Where the fact comes from: one line.
    source: str = ""

    def __post_init__(self):
        if self.days is not None and not (isinstance(self.days, int) and self.days >= 1):
            raise ValueError(f"Horizon days must be a whole number of days >= 1, not {self.days!r}")
        if self.earliest is not None:
            object.__setattr__(self, "earliest", pd.Timestamp(self.earliest).normalize())

    @property
    def rolling(self) -> bool:
        """Whether bars leave the vendor's window as time passes (a ``days`` look-back)."""
        return self.days is not None

    def first_served(self, now=None) -> pd.Timestamp | None:
        """The first day whose bars the vendor serves on ``now``'s day (default: today):
        the later of the rolling and the fixed limit; None when there is neither."""
        first = self.earliest
        if self.days is not None:
            today = (pd.Timestamp.now() if now is None else pd.Timestamp(now)).normalize()
            rolling = today - pd.Timedelta(days=self.days - 1)
            first = rolling if first is None else max(first, rolling)
        return first


class Provider:
    """Base class of every data provider.

    Subclasses set the class metadata, declare their ``options`` and implement
    :meth:`_fetch`, which :meth:`fetch` calls with parsed arguments. Everything else has a
    working default. A provider may override :meth:`fetch` instead and parse its arguments
    itself (plug-ins written before :meth:`_fetch` existed do).

    Examples
    --------
    >>> from kdist.providers import get_provider
    >>> p = get_provider("synthetic", seed=7)
    >>> p.fetch("600000.SH", "2024-01-02", "2024-01-05").shape[0]
    4
    """

    #: Registry name.
    name: ClassVar[str] = ""
    #: One line shown by ``kdist providers``.
    description: ClassVar[str] = ""
    #: Importable modules the provider needs, checked before any work is submitted.
    requires: ClassVar[tuple[str, ...]] = ()
    #: ``pip install "kdist[extra]"`` installs them.
    extra: ClassVar[str | None] = None
    url: ClassVar[str] = ""
    #: Frequencies and adjustments the vendor serves.
    freqs: ClassVar[tuple[Freq, ...]] = tuple(Freq)
    adjusts: ClassVar[tuple[Adjust, ...]] = tuple(Adjust)
    #: Exchange time zone of tz-aware vendor timestamps; bars are stored in its local time.
    tz: ClassVar[str | None] = None
    #: Appended to the refusal of a freq the provider does not serve: where to get it instead.
    freq_hint: ClassVar[str] = ""
    options: ClassVar[dict[str, Option]] = {}
    #: Politeness defaults for the whole cluster (None: unlimited): calls in flight at once,
    #: and calls started per second. ``ingest(max_concurrency=..., max_rate=...)`` overrides.
    max_concurrency: ClassVar[int | None] = None
    max_rate: ClassVar[float | None] = None
    #: Whether calls wait on a network service. A small job from a provider that does not
    #: (files, generated data) runs in the client's process when no scheduler is named:
    #: starting worker processes would take longer than the job.
    remote: ClassVar[bool] = True
    #: Whether the vendor's unadjusted bars already have splits applied (Yahoo's do): the
    #: factors kdist computes from this provider's events then leave its splits out.
    splits_in_bars: ClassVar[bool] = False
    #: The trading calendar (an ``exchange_calendars`` name) of every symbol the provider
    #: serves, when that is not the calendar a symbol's form names
    #: (:func:`kdist.calendars.calendar_for`): a vendor of one exchange, or a generator with
    #: a calendar of its own. ``kdist check --gaps`` checks stored bars against it.
    calendar: ClassVar[str | None] = None
    #: Where an intraday bar is stamped: at its ``"end"`` (the first A-share 1-minute bar is
    #: 09:31: baostock, TDX) or its ``"start"`` (09:30: Yahoo). None: the user's files say;
    #: ``kdist check --gaps`` tells from the bars (a bar at the session's open, or its close).
    bar_time: ClassVar[str | None] = "end"
    #: How far back the vendor serves each freq (a :class:`Horizon`: a rolling look-back in
    #: days and/or a fixed first date, and the source of the fact). A freq not listed has no
    #: horizon the provider can vouch for (local files, generated data, or not known).
    #: :meth:`horizon` reads it; ``kdist status`` warns before stored intraday history passes
    #: a rolling one.
    horizons: ClassVar[dict[Freq, Horizon]] = {}

    def __init__(self, **options):
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            known = ", ".join(sorted(self.options)) or "none"
            raise InvalidOptionError(
                f"Unknown option(s) {', '.join(unknown)} for provider {self.name!r}"
                f"{_close_options(unknown, self.options)}; known: {known}",
                option=unknown[0],
            )
        self.config = {
            key: opt.coerce(key, options.get(key, opt.default)) for key, opt in self.options.items()
        }
        for key, opt in self.options.items():
            value = self.config[key]
            if opt.positive and not (value is not None and value > 0):  # NaN fails too
                raise InvalidOptionError(
                    f"Option {key}={value!r} of provider {self.name!r} must be a positive number",
                    option=key,
                    value=value,
                )

    def __getattr__(self, key):
        config = self.__dict__.get("config", {})
        if key in config:
            return config[key]
        raise AttributeError(f"{type(self).__name__!s} has no attribute {key!r}")

    def __reduce__(self):
        # Pickle by options only: a worker rebuilds the provider and opens its own session.
        return (_rebuild, (type(self), self.given_options()))

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.given_options().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        return type(self) is type(other) and self.config == other.config

    def __hash__(self):
        return hash((type(self), repr(sorted(self.config.items(), key=str))))

    def given_options(self) -> dict:
        """Options that differ from their defaults."""
        return {k: v for k, v in self.config.items() if v != self.options[k].default}

    @classmethod
    def horizon(cls, freq) -> Horizon | None:
        """How far back the vendor serves ``freq`` (see :attr:`horizons`); None when the
        provider declares nothing for it."""
        return cls.horizons.get(Freq.parse(freq))

    # -- the contract ---------------------------------------------------------------------

    def fetch(self, symbol: str, start, end, freq="1d", adjust="none") -> pd.DataFrame:
        """Return the bars of ``symbol`` stamped in ``[start, end]`` (dates inclusive).

        The frame has a ``ts`` column (or DatetimeIndex) and ``open high low close`` plus
        ``volume`` (shares) and ``amount`` when the vendor has them; :func:`kdist.schema.normalise`
        does the rest. An unknown symbol raises :class:`~kdist.errors.SymbolNotFoundError` (or,
        where the vendor cannot tell, returns an empty frame); no data in the window returns
        an empty frame.

        The arguments are parsed here, once for every provider: ``freq`` and ``adjust``
        become :class:`~kdist.schema.Freq` and :class:`~kdist.schema.Adjust`, the dates
        midnight Timestamps, the request is refused unless :meth:`check` passes, and the
        symbol is made canonical by :meth:`_symbol`. Then :meth:`_fetch` gets the bars.

        Raises
        ------
        InvalidOptionError
            An unknown freq or adjust, a date that is no date, or a request :meth:`check`
            refuses.
        InvalidSymbolError
            ``symbol`` is not a symbol at all.
        """
        freq, adjust = Freq.parse(freq), Adjust.parse(adjust)
        start, end = to_date(start, name="start"), to_date(end, name="end")
        self.check(freq=freq, adjust=adjust, start=start, end=end + pd.Timedelta(days=1))
        return self._fetch(self._symbol(symbol), start, end, freq, adjust)

    def _fetch(self, symbol: str, start: pd.Timestamp, end: pd.Timestamp, freq: Freq,
               adjust: Adjust) -> pd.DataFrame:
        """Return the bars of ``symbol`` stamped in ``[start, end]``: what a provider writes.

        :meth:`fetch` calls it with parsed values: ``symbol`` from :meth:`_symbol`, ``start``
        and ``end`` midnight Timestamps (``end`` inclusive, and possibly before ``start``:
        then no bar is in the window), ``freq`` and ``adjust`` enums that :meth:`check`
        accepted. The frame is :meth:`fetch`'s.
        """
        raise NotImplementedError(f"{type(self).__name__} implements neither _fetch nor fetch")

    def _symbol(self, symbol) -> str:
        """Return ``symbol`` as :meth:`_fetch` gets it: canonical, by
        :func:`kdist.schema.normalise_symbol`. Symbols are validated upstream, but a provider
        builds paths and requests from this one: never trust it.
        """
        return normalise_symbol(symbol)

    # -- optional hooks -------------------------------------------------------------------

    def fetch_many(self, symbols, starts, end, freq="1d", adjust="none") -> pd.DataFrame | None:
        """Return the bars of several symbols in one call, or None to be asked one by one.

        ``symbols[i]``'s bars are those stamped in ``[starts[i], end]`` (dates inclusive), as
        :meth:`fetch` would return them, in one frame with a ``symbol`` column (strings or a
        categorical of ``symbols``); a symbol without bars has no rows. kdist calls it once
        per chunk when a provider overrides it and no ``max_concurrency`` or ``max_rate`` is
        in force, with a timeout of the per-call timeout times the number of symbols. An
        exception is never a failed symbol: kdist then asks :meth:`fetch` symbol by symbol,
        so each symbol gets its own retries and outcome. Worth it when the vendor serves many
        symbols in one request, or when per-call overhead dominates (local or generated data).
        """
        return None

    @property
    def serves_actions(self) -> bool:
        """Whether :meth:`actions` answers: the provider implements :meth:`_actions`."""
        return type(self)._actions is not Provider._actions

    def actions(self, symbol: str, start, end) -> pd.DataFrame | None:
        """Return the corporate actions of ``symbol`` with ex-dates in ``[start, end]``
        (dates inclusive), or None when the provider serves none.

        One row per ex-date with the columns of :data:`kdist.actions.COLUMNS`: the event's
        numbers per share (cash dividend, bonus and transfer shares, rights shares and their
        price, split ratio) and ``factor``, the vendor's cumulative back-adjustment factor in
        force from the ex-date on (NaN when the vendor gives events only: kdist then computes
        it from the stored raw closes). The rows of ``[start, end]`` are taken as complete: a
        stored row of that window the answer lacks is superseded. Rows outside it may be
        returned too (a vendor's whole factor series) and are added, never taken as complete.
        The frame goes through :func:`kdist.actions.normalise_actions`.
        """
        if not self.serves_actions:
            return None
        start, end = to_date(start, name="start"), to_date(end, name="end")
        frame = self._actions(self._symbol(symbol), start, end)
        return None if frame is None else normalise_actions(frame, symbol=symbol)

    def actions_many(self, symbols, starts, end) -> pd.DataFrame | None:
        """Return the corporate actions of several symbols in one call, or None to be asked
        one by one.

        ``symbols[i]``'s rows are those :meth:`actions` would return for ``(symbols[i],
        starts[i], end)``, in one frame with a ``symbol`` column. kdist calls it once per
        chunk whose bars came from :meth:`fetch_many`; an exception is never a failed
        symbol: kdist then asks :meth:`actions` symbol by symbol.
        """
        return None

    def _actions(self, symbol: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame | None:
        """Return the vendor's corporate actions of ``symbol`` in ``[start, end]`` as
        :meth:`actions` describes them (any frame :func:`~kdist.actions.normalise_actions`
        accepts): what a provider that serves corporate actions writes. ``symbol`` comes
        from :meth:`_symbol`, the dates are midnight Timestamps."""
        return None

    def list_symbols(self) -> list[str]:
        """Every symbol the provider can serve (for ``--all``)."""
        raise UsageError(f"Provider {self.name!r} cannot list its symbols; name them instead")

    def check(self, *, freq: Freq, adjust: Adjust, start: pd.Timestamp, end: pd.Timestamp):
        """Refuse a request the vendor cannot serve, before any work is submitted."""
        if freq not in self.freqs:
            served = ", ".join(f.value for f in self.freqs)
            hint = f"; {self.freq_hint}" if self.freq_hint else ""
            raise InvalidOptionError(
                f"Provider {self.name!r} has no {freq.value} bars; it serves {served}{hint}",
                option="freq",
                value=freq.value,
            )
        if adjust not in self.adjusts:
            served = ", ".join(a.value for a in self.adjusts)
            raise InvalidOptionError(
                f"Provider {self.name!r} has no {adjust.value!r} adjustment; it serves {served}",
                option="adjust",
            )

    def version(self) -> str | None:
        """Return the version of the code that fetches, recorded with each job.

        The installed version of the first package in :attr:`requires` (None when it is
        missing); for a provider of kdist's own that needs none (or a subclass of one),
        kdist's version. A plug-in that needs no package records None unless it overrides
        this.
        """
        if self.requires:
            try:
                return importlib.metadata.version(self.requires[0])
            except importlib.metadata.PackageNotFoundError:
                return None
        ours = (c.__module__.startswith("kdist.") for c in type(self).__mro__
                if c not in (Provider, object))
        return __version__ if any(ours) else None


def required_option(provider: Provider, key: str, needs: str) -> None:
    """Raise InvalidOptionError unless option ``key`` is set (neither None nor empty).

    For options without a usable default, checked on construction. The message reads
    "Provider 'name' needs option ``key``: ``needs``", so ``needs`` says what to give and
    shows an example.
    """
    if not provider.config[key]:
        raise InvalidOptionError(
            f"Provider {provider.name!r} needs option {key}: {needs}", option=key
        )


def directory_option(provider: Provider, key: str, holds: str) -> Path:
    """Return the resolved directory named by option ``key``, or raise InvalidOptionError.

    For providers that read local files. Call it lazily (in :meth:`Provider.check` or on
    first use), never on construction: a provider unpickled on a remote worker must find the
    directory there, and a client that only submits need not have it. ``holds`` completes
    "give the directory that holds ...".
    """
    value = provider.config[key]
    path = Path(value).expanduser()
    if not path.is_dir():
        what = "is not a directory" if path.exists() else "does not exist"
        raise InvalidOptionError(
            f"Option {key}={value!r} of provider {provider.name!r} {what}; give the "
            f"directory that holds {holds}",
            option=key,
            value=value,
        )
    return path.resolve()


def file_inside(candidate: Path, root: Path, *, symbol: str, what: str, hint: str) -> Path:
    """Return ``candidate`` resolved, or raise PermanentProviderError when it cannot be
    resolved or resolves outside ``root`` (itself resolved).

    For providers that read local files: a symbol or pattern must not lead out of the
    directory the user named (``../``, absolute paths, symlinks out). ``what`` names the file
    in messages ("the file", "the TDX file"); ``hint`` ends the refusal with what to check.
    """
    try:
        path = candidate.resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # symlink loop, NUL byte
        raise PermanentProviderError(
            f"Cannot resolve {what} of {symbol} ({candidate}): {one_line(exc)}",
            symbol=symbol,
            path=str(candidate),
        ) from exc
    if not path.is_relative_to(root):
        via = "" if path == candidate else f" (via {candidate})"
        raise PermanentProviderError(
            f"Refused {what} of {symbol}: {path}{via} is outside root {root}; {hint}",
            symbol=symbol,
            path=str(path),
        )
    return path


def missing_file(symbol: str, tried: list[Path], what: str, advice: str) -> SymbolNotFoundError:
    """Return the error for ``symbol`` when none of the files ``tried`` exists.

    For providers that read local files. The message reads "No ``what``: ``tried`` does not
    exist; ``advice``", naming every path tried.
    """
    names = " nor ".join(str(p) for p in tried)
    return SymbolNotFoundError(
        f"No {what}: {names} does not exist; {advice}", symbol=symbol, path=str(tried[0])
    )


def vendor_numbers(frame: pd.DataFrame, raw: pd.DataFrame, columns: dict[str, Any]) -> pd.DataFrame:
    """Set ``frame[name]`` to vendor column ``columns[name]`` of ``raw`` as float64; return it.

    For providers that turn a vendor's frame into bars. Values that are no number (``""``,
    ``"-"``) become NaN, and so does a whole column ``raw`` lacks (or that is mapped to None).
    ``raw``'s rows are taken by position: ``frame`` has one row per row of ``raw``.
    """
    for name, column in columns.items():
        if column is not None and column in raw.columns:
            frame[name] = pd.to_numeric(raw[column], errors="coerce").astype("float64").to_numpy()
        else:
            frame[name] = float("nan")
    return frame


def one_line(exc: BaseException) -> str:
    """Return the first line of ``exc``'s message, or its class name when it has none.

    For error messages that quote a vendor's or the system's exception: theirs may span many
    lines (a server's answer, a traceback), and a kdist error is read on one.
    """
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _close_options(unknown: list[str], known) -> str:
    """`` (did you mean 'latency'?)``, or for several unknown names each one's closest:
    `` (did you mean 'latency' for 'latncy', 'seed' for 'sed'?)``; ``""`` when none is close."""
    if len(unknown) == 1:
        return did_you_mean(unknown[0], known)
    pairs = [f"{match!r} for {name!r}" for name in unknown
             if (match := closest(name, known)) is not None]
    return f" (did you mean {', '.join(pairs)}?)" if pairs else ""


def _rebuild(cls, options):
    return cls(**options)
