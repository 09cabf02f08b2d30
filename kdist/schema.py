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
from collections import Counter
from enum import Enum

import numpy as np
import pandas as pd

from .errors import DataError, InvalidOptionError, InvalidSymbolError

__all__ = [
    "Adjust",
    "BAR_COLUMNS",
    "Freq",
    "KLINE_COLUMNS",
    "normalise",
    "normalise_many",
    "normalise_symbol",
    "parse_symbols",
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
            choices = ", ".join(f.value for f in cls)
            raise InvalidOptionError(
                f"Unknown freq {value!r}; choose one of {choices}", option="freq", value=value
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
                f"Unknown adjust {value!r}; choose one of none, qfq, hfq",
                option="adjust",
                value=value,
            ) from None


# --- symbols -------------------------------------------------------------------------------

_ASHARE = re.compile(r"^\d{6}\.(SH|SZ|BJ)$")
_TICKER = re.compile(r"^[A-Z0-9^][A-Z0-9.^=_-]{0,19}$")
# re.ASCII: \d would also match Arabic-Indic or full-width digits ("６０００００").
_PREFIXED = re.compile(r"^(SH|SZ|BJ)\.?(\d{6})$", re.ASCII)
_SUFFIXED = re.compile(r"^(\d{6})\.(SH|SS|SZ|BJ)$", re.ASCII)
_CODE = re.compile(r"\d{6}", re.ASCII)
_MAX_SHOWN = 5


def _exchange_of(code: str) -> str:
    """Guess the A-share exchange of a bare 6-digit code (6/9: Shanghai, 4/8/92: Beijing)."""
    if code[0] in "69" and not code.startswith("92"):
        return "SH"
    if code[0] in "48" or code.startswith("92"):
        return "BJ"
    return "SZ"


def normalise_symbol(symbol) -> str:
    """Return the canonical form of one symbol, or raise :class:`InvalidSymbolError`.

    A-shares become ``000001.SZ`` / ``600000.SH`` / ``830799.BJ`` from any of ``000001.sz``,
    ``sz000001``, ``sz.000001``, ``600000.SS`` (Yahoo's Shanghai suffix) or a bare 6-digit
    code (exchange inferred from the leading digit). Other tickers are upper-cased and must
    be short and made of letters, digits and ``.^=_-``.

    Examples
    --------
    >>> normalise_symbol("sh.600000"), normalise_symbol("000001"), normalise_symbol("brk-b")
    ('600000.SH', '000001.SZ', 'BRK-B')
    """
    if not isinstance(symbol, str):
        raise InvalidSymbolError(
            f"Invalid symbol {symbol!r}: expected a string", symbols=[repr(symbol)]
        )
    text = symbol.strip().upper()
    if m := _PREFIXED.match(text):
        return f"{m.group(2)}.{m.group(1)}"
    if m := _SUFFIXED.match(text):
        exchange = "SH" if m.group(2) == "SS" else m.group(2)
        return f"{m.group(1)}.{exchange}"
    if _CODE.fullmatch(text):
        return f"{text}.{_exchange_of(text)}"
    if _TICKER.match(text) and not text.isdigit():
        return text
    shown = symbol if len(symbol) <= 40 else symbol[:40] + "..."
    raise InvalidSymbolError(
        f"Invalid symbol {shown!r}: use A-share codes like 000001.SZ or tickers like AAPL",
        symbols=[symbol],
    )


def parse_symbols(symbols, *, skip_invalid: bool = False) -> tuple[list[str], list[str]]:
    """Normalise and de-duplicate ``symbols``, keeping their order.

    Returns ``(valid, invalid)``. Unless ``skip_invalid`` is true, any invalid symbol raises
    one :class:`InvalidSymbolError` that names all of them, before any work is done.
    """
    if isinstance(symbols, str):
        symbols = [s for s in re.split(r"[\s,]+", symbols) if s]
    valid: dict[str, None] = {}
    invalid: list[str] = []
    for raw in symbols:
        try:
            valid[normalise_symbol(raw)] = None
        except InvalidSymbolError:
            invalid.append(raw if isinstance(raw, str) else repr(raw))
    if invalid and not skip_invalid:
        shown = ", ".join(repr(s if len(s) <= 40 else s[:40] + "...") for s in invalid[:_MAX_SHOWN])
        more = f" and {len(invalid) - _MAX_SHOWN} more" if len(invalid) > _MAX_SHOWN else ""
        raise InvalidSymbolError(
            f"{len(invalid)} invalid symbol(s): {shown}{more}; use A-share codes like "
            "000001.SZ or tickers like AAPL (nothing was fetched)",
            symbols=invalid,
        )
    return list(valid), invalid


# --- dates ---------------------------------------------------------------------------------


def to_date(value, *, name: str = "date") -> pd.Timestamp:
    """Normalise a str, ``date``, ``datetime`` or Timestamp to a tz-naive midnight Timestamp."""
    if value is None:
        raise InvalidOptionError(f"Missing {name}: give a date like 2024-01-31", option=name)
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise InvalidOptionError(
            f"Invalid {name} {value!r}: give a date like 2024-01-31", option=name, value=value
        ) from None
    if ts is pd.NaT:
        raise InvalidOptionError(f"Invalid {name} {value!r}", option=name, value=value)
    if ts.tzinfo is not None:
        ts = ts.tz_localize(None)
    return ts.normalize().as_unit("us")


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
        lo = np.array([_us(s) for s in start], dtype="datetime64[us]")[codes]
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
    rejected: list[Counter[str]] = [Counter() for _ in range(n)]
    bad = np.zeros(len(ts), bool)

    def count(reason, mask):
        if codes is None:
            rejected[0][reason] += int(mask.sum())
            return
        for i, k in enumerate(np.bincount(codes[mask], minlength=n)):
            if k:
                rejected[i][reason] += int(k)

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
        return bars, out, [dict(r) for r in rejected]
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
    return bars, out, [dict(r) for r in rejected]
