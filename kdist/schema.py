"""The canonical bar: columns, dtypes, freq and adjust values, symbols, dates, validation.

Every provider returns frames that :func:`normalise` turns into the canonical per-symbol
frame (``ts, open, high, low, close, volume, amount``); the runner adds ``symbol`` and the
store adds ``freq``, ``adjust`` and ``source``. Prices are float64 (never fixed-point: ETFs
carry three decimals and forward-adjusted prices can be negative), volume is in shares,
amount in the quote currency, and ``ts`` is exchange-local, tz-naive, daily bars at 00:00.

The validation rules live here and nowhere else, so a provider, a test and the store agree:
rows with NaN/inf prices, zero or negative prices (negative is allowed for forward-adjusted
``qfq`` data), ``high < low``, open/close outside ``[low, high]``, negative volume, or a time
outside the requested window are rejected and counted by reason; duplicate timestamps keep the
last row (the vendor's latest word); rows come out sorted by ``ts``.
"""

from __future__ import annotations

import datetime as _dt
import re
from enum import Enum

import numpy as np
import pandas as pd

from . import securities
from .errors import DataError, InvalidOptionError, InvalidSymbolError, did_you_mean
from .report import counted

__all__ = [
    "Adjust",
    "BAR_COLUMNS",
    "Freq",
    "KLINE_COLUMNS",
    "normalise",
    "normalise_many",
    "normalise_symbol",
    "parse_symbols",
    "read_symbols",
    "to_date",
    "window_bounds",
]

#: Columns of the per-symbol frame a provider delivers after normalisation.
BAR_COLUMNS = ("ts", "open", "high", "low", "close", "volume", "amount")
PRICE_COLUMNS = ("open", "high", "low", "close")
#: Columns of the ``kline`` table, in order.
KLINE_COLUMNS = ("symbol", "freq", "adjust", "ts", *BAR_COLUMNS[1:], "source")

_DTYPES = {"ts": "datetime64[us]", **{c: "float64" for c in BAR_COLUMNS[1:]}}


class Freq(str, Enum):
    """Bar frequency. Values are the strings users type: ``1d 1w 1M 1m 5m 15m 30m 60m``."""

    DAY = "1d"
    WEEK = "1w"
    MONTH = "1M"
    MIN1 = "1m"
    MIN5 = "5m"
    MIN15 = "15m"
    MIN30 = "30m"
    MIN60 = "60m"

    @property
    def intraday(self) -> bool:
        return self.value.endswith("m") and self is not Freq.MONTH

    @property
    def minutes(self) -> int:
        """Bar length in minutes (intraday only)."""
        return int(self.value[:-1])

    @classmethod
    def parse(cls, value) -> Freq:
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value))
        except ValueError:
            choices = [f.value for f in cls]
            raise InvalidOptionError(
                f"Unknown freq {value!r}{did_you_mean(value, choices)}; choose one of "
                f"{', '.join(choices)}", option="freq", value=value
            ) from None


class Adjust(str, Enum):
    """Price adjustment: ``none``, ``qfq`` (forward, 前复权) or ``hfq`` (backward, 后复权)."""

    NONE = "none"
    QFQ = "qfq"
    HFQ = "hfq"

    @classmethod
    def parse(cls, value) -> Adjust:
        if isinstance(value, cls):
            return value
        if value in (None, ""):
            return cls.NONE
        try:
            return cls(str(value).lower())
        except ValueError:
            raise InvalidOptionError(
                f"Unknown adjust {value!r}{did_you_mean(value, [a.value for a in cls])}; "
                "choose one of none, qfq, hfq",
                option="adjust",
                value=value,
            ) from None


# --- symbols -------------------------------------------------------------------------------

# re.ASCII: \d would also match Arabic-Indic or full-width digits ("６０００００").
_PREFIXED = re.compile(r"^(SH|SZ|BJ)\.?(\d+)$", re.ASCII)
_SUFFIXED = re.compile(r"^(\d+)\.(SH|SS|SZ|BJ)$", re.ASCII)
_DIGITS = re.compile(r"\d+", re.ASCII)
_TICKER = re.compile(r"^[A-Z0-9^][A-Z0-9^=_-]{0,19}$", re.ASCII)
#: What any stored symbol looks like, valid or not: safe characters only (reads, not imports).
_STORED = re.compile(r"^[A-Z0-9^][A-Z0-9.^=_-]{0,19}$", re.ASCII)
_SUFFIX = re.compile(r"^[A-Z]{1,4}$", re.ASCII)
_ASHARE_SUFFIXES = ("SH", "SZ", "BJ", "SS")
_HINT = "use A-share codes like 000001.SZ or tickers like AAPL"
_EXAMPLE = {"SH": "600000.SH", "SS": "600000.SS", "SZ": "000001.SZ", "BJ": "830799.BJ"}
_MAX_SHOWN = 5


def _knows(provider) -> tuple[frozenset[str] | None, bool, str | None]:
    """What ``provider`` accepts beyond listed A-shares: ticker suffixes and TDX's own codes.

    Providers say so with class attributes ``symbol_suffixes`` (None: any suffix, e.g. files
    named by the user) and ``tdx_codes``. Without a provider, or attributes, the defaults
    are what kdist's providers know together: Yahoo's suffixes, and TDX's block codes.
    """
    if provider is None:
        return securities.YAHOO_SUFFIXES, True, None
    suffixes = getattr(provider, "symbol_suffixes", securities.YAHOO_SUFFIXES)
    return suffixes, getattr(provider, "tdx_codes", True), getattr(provider, "name", None)


def _check_symbol(symbol, provider=None, strict=True, knows=None) -> tuple[str | None, str]:
    """Return ``(canonical, "")`` for a valid symbol, ``(None, why)`` for an invalid one.
    ``knows`` is :func:`_knows` of ``provider``, when the caller has it already."""
    text = symbol.strip().upper()
    knows = knows or _knows(provider)
    suffixes, tdx_codes, name = knows
    if not strict:
        canonical, _ = _check_symbol(symbol, provider, knows=knows)
        if canonical is not None:
            return canonical, ""
        # A name an older kdist stored (it accepted 60000.SH): readable, never importable.
        return (text, "") if _STORED.match(text) else (None, "")
    if m := _PREFIXED.match(text):
        code, exchange = m.group(2), m.group(1)
    elif m := _SUFFIXED.match(text):
        code, exchange = m.group(1), "SH" if m.group(2) == "SS" else m.group(2)
    elif _DIGITS.fullmatch(text):
        code, exchange = text, None
    else:
        return _check_ticker(text, suffixes, name)
    if len(code) != 6:
        return None, f"A-share codes have six digits, e.g. {_EXAMPLE.get(exchange, '600000')}"
    if exchange is None:
        exchange = securities.exchange_of(code)
        if exchange is None:
            return None, f"no exchange lists code {code}"
    kind = securities.kind_of_code(code, exchange)
    if kind is None:
        where = securities.EXCHANGE_NAMES[exchange]
        other = securities.exchange_of(code)
        if other is None:
            return None, f"{code} is no {where} code"
        other_kind = securities.kind_of_code(code, other)
        return None, (f"{code} is no {where} code; {code}.{other} is a "
                      f"{securities.EXCHANGE_NAMES[other]} {other_kind.value}")
    if kind not in securities.LISTED_KINDS and not tdx_codes:
        return None, f"{code} is a TDX {kind.value} code, served by the tdx provider only"
    return f"{code}.{exchange}", ""


def _check_ticker(text: str, suffixes, name) -> tuple[str | None, str]:
    base, dot, suffix = text.rpartition(".")
    if not dot:
        return (text, "") if _TICKER.match(text) else (None, "")
    if not _TICKER.match(base) or len(text) > 20 or not _SUFFIX.match(suffix):
        return None, ""
    if suffix in _ASHARE_SUFFIXES:
        return None, f"an .{suffix} symbol is six digits, e.g. {_EXAMPLE[suffix]}"
    if suffixes is None or suffix in suffixes:
        return text, ""
    if suffix == "US":
        return None, "US tickers have no suffix, e.g. AAPL"
    if len(suffix) == 1:
        return None, f"unknown suffix .{suffix}: share classes take '-', e.g. BRK-B"
    if name is not None and suffix in securities.YAHOO_SUFFIXES:
        return None, f"provider {name!r} has no .{suffix} tickers"
    return None, (f"unknown suffix .{suffix}: A-shares take .SH, .SZ or .BJ, other tickers "
                  "Yahoo's (.HK, .L, .T ...)")


def _shown(symbol: str) -> str:
    return symbol if len(symbol) <= 40 else symbol[:40] + "..."


def normalise_symbol(symbol, *, provider=None, strict: bool = True) -> str:
    """Return the canonical form of one symbol, or raise :class:`InvalidSymbolError`.

    A-shares become ``000001.SZ`` / ``600000.SH`` / ``830799.BJ`` from any of ``000001.sz``,
    ``sz000001``, ``sz.000001``, ``600000.SS`` (Yahoo's Shanghai suffix) or a bare 6-digit
    code (its exchange guessed by :func:`kdist.securities.exchange_of`); the code must lie in
    a range its exchange uses (:data:`kdist.securities.CODE_TABLE`). Other tickers are
    upper-cased, short, made of letters, digits and ``^=_-``, with at most one exchange
    suffix the provider knows (by default Yahoo's: ``0700.HK``, ``VOD.L``).

    Parameters
    ----------
    provider : Provider, optional
        The provider that will serve the symbol; its ``symbol_suffixes`` and ``tdx_codes``
        attributes narrow what is accepted.
    strict : bool
        False for reading what is stored: a name made of safe characters that an older
        kdist accepted (``60000.SH``) is returned as it is, upper-cased, instead of refused.

    Examples
    --------
    >>> normalise_symbol("sh.600000"), normalise_symbol("000001"), normalise_symbol("brk-b")
    ('600000.SH', '000001.SZ', 'BRK-B')
    """
    if not isinstance(symbol, str):
        raise InvalidSymbolError(
            f"Invalid symbol {symbol!r}: expected a string", symbols=[repr(symbol)]
        )
    canonical, why = _check_symbol(symbol, provider, strict)
    if canonical is None:
        because = f"{why}; " if why else ""
        raise InvalidSymbolError(
            f"Invalid symbol {_shown(symbol)!r}: {because}{_HINT}", symbols=[symbol]
        )
    return canonical


def read_symbols(symbols) -> list[str] | None:
    """The symbols a read asks for: None (every one), one, or a list, in any accepted form,
    canonical. Not strict: names stored by an earlier kdist stay readable."""
    if symbols is None:
        return None
    return parse_symbols([symbols] if isinstance(symbols, str) else symbols, strict=False)[0]


def parse_symbols(symbols, *, skip_invalid: bool = False, provider=None,
                  strict: bool = True) -> tuple[list[str], list[str]]:
    """Normalise and de-duplicate ``symbols``, keeping their order.

    Returns ``(valid, invalid)``. Unless ``skip_invalid`` is true, any invalid symbol raises
    one :class:`InvalidSymbolError` that names all of them and why, before any work is done.
    ``provider`` and ``strict`` are :func:`normalise_symbol`'s.
    """
    if isinstance(symbols, str):
        symbols = [s for s in re.split(r"[\s,]+", symbols) if s]
    valid: dict[str, None] = {}
    invalid: list[str] = []
    reasons: list[str] = []
    knows = _knows(provider)  # once, not per symbol: half of 5,000 symbols' checks
    for raw in symbols:
        if not isinstance(raw, str):
            invalid.append(repr(raw))
            reasons.append("expected a string")
            continue
        canonical, why = _check_symbol(raw, provider, strict, knows)
        if canonical is None:
            invalid.append(raw)
            reasons.append(why)
        else:
            valid[canonical] = None
    if invalid and not skip_invalid:
        shown = ", ".join(
            repr(_shown(s)) + (f" ({why})" if why else "")
            for s, why in zip(invalid[:_MAX_SHOWN], reasons)
        )
        more = f" and {len(invalid) - _MAX_SHOWN} more" if len(invalid) > _MAX_SHOWN else ""
        raise InvalidSymbolError(
            f"{len(invalid)} invalid symbol(s): {shown}{more}; {_HINT} (nothing was fetched)",
            symbols=invalid,
        )
    return list(valid), invalid


# --- dates ---------------------------------------------------------------------------------

#: The days a window may start or end on. Every market's history fits, and so does the day
#: after the last one in each type the dates pass through: Python's ``date`` (years 1 to
#: 9999; pandas parses "-1" as year -1), nanosecond Timestamps (1677 to 2262), DuckDB.
FIRST_DATE, LAST_DATE = pd.Timestamp("1800-01-01"), pd.Timestamp("2200-12-31")


def to_date(value, *, name: str = "date") -> pd.Timestamp:
    """Normalise a str, ``date``, ``datetime`` or Timestamp to a tz-naive midnight Timestamp.

    Raises
    ------
    InvalidOptionError
        ``value`` is missing, not a date, or outside :data:`FIRST_DATE` .. :data:`LAST_DATE`.
    """
    if value is None:
        raise InvalidOptionError(f"Missing {name}: give a date like 2024-01-31", option=name)
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError):
        raise InvalidOptionError(
            f"Invalid {name} {value!r}: give a date like 2024-01-31", option=name, value=value
        ) from None
    if ts is pd.NaT:
        raise InvalidOptionError(f"Invalid {name} {value!r}", option=name, value=value)
    if ts.tzinfo is not None:
        ts = ts.tz_localize(None)
    ts = ts.normalize().as_unit("us")
    if not FIRST_DATE <= ts <= LAST_DATE:
        raise InvalidOptionError(
            f"Invalid {name} {value!r}: give a date from {FIRST_DATE.date()} to "
            f"{LAST_DATE.date()}, like 2024-01-31",
            option=name,
            value=value,
        )
    return ts


def window_bounds(start, end) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Return ``(start, end_exclusive)`` for an inclusive date window, checking its order.

    ``end`` defaults to today. The window covers every bar stamped on or after ``start`` and
    before the day after ``end``, so intraday bars of the last day are included.
    """
    lo = to_date(start, name="start")
    hi = to_date(end if end is not None else _dt.date.today(), name="end")
    if lo > hi:
        raise InvalidOptionError(
            f"start {lo.date()} is after end {hi.date()}: swap them", option="start"
        )
    return lo, hi + pd.Timedelta(days=1)


# --- frames --------------------------------------------------------------------------------


#: Other names of the ``ts`` column, in order of preference (case-insensitive).
_TS_ALIASES = ("date", "datetime", "time", "timestamp")


def empty_bars() -> pd.DataFrame:
    """A canonical frame with no rows."""
    return pd.DataFrame({c: pd.Series(dtype=_DTYPES[c]) for c in BAR_COLUMNS})


def _flatten_columns(frame: pd.DataFrame) -> pd.DataFrame:
    if isinstance(frame.columns, pd.MultiIndex):
        # One ticker in a (field, ticker) MultiIndex: keep the field level.
        levels = [frame.columns.get_level_values(i) for i in range(frame.columns.nlevels)]
        for level in levels:
            if {str(v).lower() for v in level} & {"close", "open"}:
                frame = frame.copy()
                frame.columns = [str(v) for v in level]
                return frame
        raise DataError("MultiIndex columns without a 'close' level", column="close")
    return frame


def _to_ts(values: pd.Series, tz: str | None = None) -> pd.Series:
    """Parse timestamps: datetimes, ISO strings or yyyymmdd numbers, as naive datetimes.

    tz-aware values (datetimes or strings with a UTC offset) are converted to ``tz`` when it
    is given, then the zone is dropped; without ``tz`` they keep their wall time.
    """
    if isinstance(values.dtype, np.dtype) and values.dtype.kind == "M":
        return values.astype("datetime64[us]")  # already naive datetimes: the common case
    if (pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)) or (
        values.dtype == object and len(values) and isinstance(values.iloc[0], (int, np.integer))
    ):
        # yyyymmdd. Through float: a missing date (NA, None, or the float column a CSV with
        # a blank date gives) becomes NaT instead of breaking the integer cast or being read
        # as nanoseconds since 1970.
        days = pd.to_numeric(values, errors="coerce").astype("float64")
        days = days.where(days % 1 == 0).astype("Int64").astype("string")
        ts = pd.to_datetime(days, format="%Y%m%d", errors="coerce")
    elif isinstance(values.dtype, pd.DatetimeTZDtype):
        ts = values
    else:
        try:
            ts = pd.to_datetime(values, errors="coerce", format="mixed")
        except ValueError:
            ts = None  # mixed UTC offsets, e.g. ISO strings across a daylight-saving change
        if ts is None or (tz is not None and isinstance(ts.dtype, pd.DatetimeTZDtype)):
            if tz is None:
                raise DataError(
                    "timestamps with mixed UTC offsets in column 'ts' and no exchange time "
                    "zone to convert them to (set the provider's tz)",
                    column="ts",
                )
            # As instants: the only way to compare offsets, and mixed zones among datetime
            # objects would otherwise become NaT.
            ts = pd.to_datetime(values, errors="coerce", format="mixed", utc=True)
    if isinstance(ts.dtype, pd.DatetimeTZDtype):
        if tz is not None:
            ts = ts.dt.tz_convert(tz)
        ts = ts.dt.tz_localize(None)
    return ts.astype("datetime64[us]")


def normalise(
    frame: pd.DataFrame,
    *,
    freq: Freq = Freq.DAY,
    adjust: Adjust = Adjust.NONE,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    tz: str | None = None,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Turn a provider frame into clean canonical bars.

    Parameters
    ----------
    frame
        Columns ``ts`` (or a DatetimeIndex), ``open high low close`` and optionally
        ``volume amount``; case-insensitive. Values may be strings ("--" counts as missing).
    freq, adjust
        The bars' frequency (daily bars are stamped at midnight) and adjustment (``qfq``
        allows negative prices).
    start, end
        Requested window, ``end`` exclusive; rows outside it are rejected.
    tz
        The exchange's time zone: tz-aware timestamps (or strings with a UTC offset) are
        converted to it before the zone is dropped. Without it they keep their wall time, and
        mixed offsets (a daylight-saving change) are a :class:`DataError`.

    Returns
    -------
    (bars, rejected)
        ``bars`` has :data:`BAR_COLUMNS` with canonical dtypes, sorted, unique ``ts``.
        ``rejected`` counts dropped rows by reason.

    Raises
    ------
    DataError
        A required column is missing, appears twice, or cannot be read at all.
    """
    freq, adjust = Freq.parse(freq), Adjust.parse(adjust)
    if frame is None or len(frame) == 0:
        return empty_bars(), {}
    ts, values = _columns(frame, freq, tz)
    lo = None if start is None else _us(start)
    bars, _, rejected = _clean(ts, values, None, 1, adjust, lo, end)
    return bars, rejected[0]


def normalise_many(
    frame: pd.DataFrame,
    symbols,
    *,
    freq: Freq = Freq.DAY,
    adjust: Adjust = Adjust.NONE,
    start=None,
    end: pd.Timestamp | None = None,
    tz: str | None = None,
) -> tuple[pd.DataFrame, np.ndarray, list[dict[str, int]]]:
    """:func:`normalise` for many symbols' bars in one frame, with the same rules.

    ``frame`` has a ``symbol`` column naming one of ``symbols`` on every row (rows of other
    symbols are dropped); ``start`` is one window start for all, or one per symbol.

    Returns ``(bars, codes, rejected)``: the canonical bars sorted by symbol (in the order of
    ``symbols``) then ``ts``, unique per symbol; ``codes[i]``, the index in ``symbols`` of
    row ``i``'s symbol; and one rejected-rows count by reason per symbol.
    """
    freq, adjust = Freq.parse(freq), Adjust.parse(adjust)
    symbols = list(symbols)
    if frame is None or len(frame) == 0:
        return empty_bars(), np.zeros(0, np.intp), [{} for _ in symbols]
    if "symbol" not in frame.columns:
        raise DataError("missing column 'symbol' in a batch of several symbols", column="symbol")
    named = frame["symbol"]
    if isinstance(named.dtype, pd.CategoricalDtype) and list(named.cat.categories) == symbols:
        codes = named.cat.codes.to_numpy().astype(np.intp)  # the provider used our order
    elif isinstance(named.dtype, pd.CategoricalDtype):
        known = pd.Index(named.cat.categories).get_indexer(symbols)
        codes = np.full(len(named.cat.categories) + 1, -1, np.intp)
        codes[known[known >= 0]] = np.flatnonzero(known >= 0)
        codes = codes[named.cat.codes.to_numpy()]  # code -1 (missing) reads the last slot: -1
    else:
        codes = pd.Index(symbols).get_indexer(named.astype(object))
    ts, values = _columns(frame, freq, tz)
    if (codes < 0).any():
        mine = np.flatnonzero(codes >= 0)
        codes, ts = codes[mine], ts[mine]
        values = {k: v[mine] for k, v in values.items()}
    if start is None:
        lo = None
    elif isinstance(start, (list, tuple, np.ndarray, pd.Series, pd.Index)):
        us = once_per_value(_us)
        lo = np.array([us(s) for s in start], dtype="datetime64[us]")[codes]
    else:
        lo = _us(start)
    return _clean(ts, values, codes, len(symbols), adjust, lo, end)


def _ordered(ts: np.ndarray, codes: np.ndarray | None) -> bool:
    """True when rows are sorted by (code, ts) with no timestamp repeated within a code."""
    later = ts[1:] > ts[:-1]
    if codes is None:
        return bool(later.all())
    step = codes[1:] - codes[:-1]
    return bool(((step > 0) | ((step == 0) & later)).all())


def once_per_value(convert):
    """``convert``, converting each distinct value once across the calls of the function
    returned (a batch's symbols share a few window starts). Values are told apart with
    their time zone (equal instants in two zones are two dates); an unhashable value is
    converted, or refused, every time."""
    seen: dict = {}

    def converted(value):
        key = (value, getattr(value, "tzinfo", None))
        try:
            known = key in seen
        except TypeError:  # unhashable: only the lookup, never ``convert``'s own errors
            return convert(value)
        if not known:
            seen[key] = convert(value)
        return seen[key]

    return converted


def _us(value) -> np.datetime64:
    return np.datetime64(pd.Timestamp(value).as_unit("us").to_datetime64())


def _columns(frame: pd.DataFrame, freq: Freq, tz) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The ``ts`` column and the float64 value columns of a provider frame, as numpy."""
    frame = _flatten_columns(frame)
    names = [str(c).strip().lower() for c in frame.columns]
    wanted = {*BAR_COLUMNS, *_TS_ALIASES}
    if dupes := sorted({n for n in names if n in wanted and names.count(n) > 1}):
        # Two columns with one name (several tickers in a MultiIndex, "Close" and "close"):
        # picking one would be a guess.
        raise DataError(f"column {dupes[0]!r} appears more than once", column=dupes[0])
    columns = {str(c).strip().lower(): c for c in frame.columns}
    if "ts" not in columns:
        for alias in _TS_ALIASES:
            if alias in columns:
                columns["ts"] = columns[alias]
                break
    if "ts" in columns:
        raw_ts = frame[columns["ts"]].reset_index(drop=True)
    elif isinstance(frame.index, pd.DatetimeIndex):
        raw_ts = frame.index.to_series().reset_index(drop=True)
    else:
        raise DataError("missing column 'ts' (or a date/datetime column or index)", column="ts")
    # Plain numpy from here on: a symbol's frame is small, so pandas' per-call overhead,
    # not the arithmetic, would dominate.
    ts = _to_ts(raw_ts, tz).to_numpy()
    if not freq.intraday:
        ts = ts.astype("datetime64[D]").astype("datetime64[us]")
    values = {}
    for col in BAR_COLUMNS[1:]:
        if col not in columns:
            if col in PRICE_COLUMNS:
                raise DataError(f"missing column {col!r}", column=col)
            values[col] = np.full(len(frame), np.nan)
            continue
        series = frame[columns[col]]
        if not pd.api.types.is_numeric_dtype(series):
            series = pd.to_numeric(series.astype("str").str.replace(",", ""), errors="coerce")
        values[col] = series.to_numpy(dtype="float64", na_value=np.nan)
    return ts, values


def _refuse_sub_seconds(ts, bad):
    """Raise when a bar that would be kept has a sub-second timestamp.

    ``kline.ts`` holds whole seconds and rounding would change the data, so such a series
    cannot be stored as given: its symbol fails with this reason (the others are stored), and
    the user fixes the source. Rows rejected for other reasons do not count.
    """
    with np.errstate(invalid="ignore"):
        sub = ~bad & (ts.astype("datetime64[s]") != ts)
    if sub.any():
        first = pd.Timestamp(ts[np.flatnonzero(sub)[0]])
        raise DataError(
            f"{counted(int(sub.sum()), 'bar')} with a sub-second timestamp (the first: {first}); "
            "kdist stores whole seconds: fix the source's timestamps and import it again",
            column="ts",
        )


def _clean(ts, values, codes, n, adjust: Adjust, start, end):
    """Apply the row rules to ``n`` symbols' rows (``codes`` says whose; None: all one).

    Returns ``(bars, codes, rejected)`` as :func:`normalise_many` does.
    """
    o, h, lo, c = (values[k] for k in PRICE_COLUMNS)
    with np.errstate(invalid="ignore"):
        checks = [
            ("bad timestamp", np.isnat(ts)),
            ("missing or non-finite price",
             ~(np.isfinite(o) & np.isfinite(h) & np.isfinite(lo) & np.isfinite(c))),
            ("non-positive price",
             ((o <= 0) | (h <= 0) | (lo <= 0) | (c <= 0)) if adjust is not Adjust.QFQ
             else np.zeros(len(ts), bool)),
            ("high below low", h < lo),
            ("open or close outside [low, high]",
             (np.maximum(o, c) > h) | (np.minimum(o, c) < lo)),
            ("negative volume", (values["volume"] < 0) | (values["amount"] < 0)),
        ]
    if start is not None or end is not None:
        outside = np.zeros(len(ts), bool)
        if start is not None:
            outside |= ts < start
        if end is not None:
            outside |= ts >= _us(end)
        checks.append(("outside requested window", outside))
    # Plain dicts, returned as they are: making and copying a Counter per symbol took 2 ms
    # of a 1,250-symbol chunk's 2.1 ms here.
    rejected: list[dict[str, int]] = [{} for _ in range(n)]
    _refuse_sub_seconds(ts, np.logical_or.reduce([mask for _, mask in checks]))
    bad = np.zeros(len(ts), bool)

    def count(reason, mask):
        if codes is None:
            rejected[0][reason] = rejected[0].get(reason, 0) + int(mask.sum())
            return
        counts = np.bincount(codes[mask], minlength=n)
        for i in np.flatnonzero(counts):
            rejected[i][reason] = rejected[i].get(reason, 0) + int(counts[i])

    for reason, mask in checks:
        new = mask & ~bad
        if new.any():
            count(reason, new)
            bad |= new
    if not bad.any() and _ordered(ts, codes):
        # Clean rows already in order, with unique times (most vendors, most of the time):
        # no sort. Copied: the bars never share memory with the caller's frame.
        bars = pd.DataFrame({"ts": ts, **values}, copy=True)
        out = np.zeros(len(ts), np.intp) if codes is None else codes
        return bars, out, rejected
    keep = np.flatnonzero(~bad)
    # Last wins: a vendor that repeats a timestamp corrects itself in the later row. A stable
    # sort keeps equal timestamps in arrival order, so the last of each run is the one kept.
    if codes is None:
        order = keep[np.argsort(ts[keep], kind="stable")]
        same = ts[order][1:] == ts[order][:-1]
    else:
        order = keep[np.lexsort((ts[keep], codes[keep]))]
        same = (ts[order][1:] == ts[order][:-1]) & (codes[order][1:] == codes[order][:-1])
    if same.any():
        last = np.r_[~same, True]
        dropped = np.zeros(len(ts), bool)
        dropped[order[~last]] = True
        count("duplicate timestamp", dropped)
        order = order[last]
    bars = pd.DataFrame({"ts": ts[order], **{k: v[order] for k, v in values.items()}}, copy=False)
    out = np.zeros(len(order), np.intp) if codes is None else codes[order]
    return bars, out, rejected
