"""Gaps, classified: which sessions of each stored series have no bar, and why.

Each daily or intraday series ``(symbol, freq, adjust)`` is checked against its exchange's
trading calendar (:mod:`kdist.calendars`: ``exchange_calendars``' sessions, or a provider's
own) between its first and last bar:

``missing``
    a session (a minute bar's stamp, intraday) with no bar, and no known reason;
``suspended``
    a placeholder bar: volume 0 and open = high = low = close = the previous bar's close, what
    vendors write on a day the symbol did not trade (baostock's ``tradestatus`` 0 rows are
    stored so); intraday, a day whose every bar is flat at one price with no trade (a quiet
    minute is no suspension);
``off_calendar``
    a bar stamped on a day that is not a session, or at a minute no bar of the freq ends
    (starts, for providers that stamp bars at their start); a 1-minute bar at the session's
    open, the opening auction's that Eastmoney writes, is neither expected nor off;

and bars outside what the calendar knows (after its last known session, before its first)
are counted as ``unknown``. A symbol whose form names no calendar kdist knows is not
checked, and the result says so. A series'
``completeness`` is the share of its sessions that are not missing: a suspension is the
vendor's word, not a hole. Weekly and monthly bars are not checked.

It runs in DuckDB: one scan of the bars joined to the sessions counts every class per series,
and only series with something to list are read again for the dates (5,000 symbols x 10
years in about a second, every series with gaps in a few: see docs/performance.md#gap-checks). :func:`check_gaps` returns a :class:`Quality`; the store
records each series' counts in ``kdist_quality`` with the time of the check.

SQL text is fixed in this module; values go through ``?`` parameters and registered frames.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import calendars
from .errors import KdistError, UsageError
from .ledger import _now
from .report import counted
from .schema import Freq

__all__ = ["KINDS", "SERIES_COLUMNS", "Quality", "check_gaps", "held_bars", "placeholders"]

#: The classes of a gap, in the order they are reported.
KINDS = ("missing", "suspended", "off_calendar")
#: Columns of :attr:`Quality.series` (and of the ``kdist_quality`` table, less ``checked_at``).
SERIES_COLUMNS = ["symbol", "freq", "adjust", "source", "calendar", "bar_time", "first", "last",
                  "sessions", "bars", "suspended", "missing", "off_calendar", "unknown",
                  "completeness"]
GAP_COLUMNS = ["symbol", "freq", "adjust", "ts", "kind"]
_SHOWN = 20
#: How far back a daily placeholder's previous bar is looked for (the SQL's INTERVAL).
PREVIOUS_DAYS = 40


@dataclass
class Quality:
    """The result of a gap check: per series counts and completeness, and every gap."""

    checked_at: pd.Timestamp
    #: One row per series checked: :data:`SERIES_COLUMNS`.
    series: pd.DataFrame
    #: One row per gap: symbol, freq, adjust, ts, kind (:data:`KINDS`).
    gaps: pd.DataFrame
    #: Series not checked (weekly and monthly bars) and why.
    skipped: list[str] = field(default_factory=list)
    #: Whether the counts were recorded in the file's ``kdist_quality``.
    recorded: bool = False
    #: Why they were not, when they were to be.
    note: str | None = None

    @property
    def ok(self) -> bool:
        """No missing bar and no bar off the calendar (suspensions are the vendor's word)."""
        return not len(self.gaps[self.gaps["kind"].isin(("missing", "off_calendar"))])

    def counts(self) -> dict:
        """How many gaps of each kind, over every series."""
        found = self.gaps["kind"].value_counts()
        return {kind: int(found.get(kind, 0)) for kind in KINDS}

    def symbols(self) -> pd.DataFrame:
        """Per symbol and freq, over its series (adjust modes): sessions (bar stamps, intraday),
        missing, suspended, off-calendar bars and completeness. A symbol's daily and minute
        bars are counted apart: sessions and minutes do not add up."""
        per = (self.series.groupby(["symbol", "freq"], sort=True)
               .agg(series=("adjust", "size"), sessions=("sessions", "sum"),
                    missing=("missing", "sum"), suspended=("suspended", "sum"),
                    off_calendar=("off_calendar", "sum"))
               .reset_index())
        per["completeness"] = _completeness(per["sessions"], per["missing"])
        return per

    def completeness(self) -> dict[str, float]:
        """Completeness per freq, over every series of it."""
        return {freq: float(_completeness(rows["sessions"].sum(), rows["missing"].sum()))
                for freq, rows in self.series.groupby("freq", sort=False)}

    def coverage(self, freq="1d", adjust="none", period: str = "M") -> pd.DataFrame:
        """Completeness per symbol and month (``period``: a pandas period alias, ``"M"`` or
        ``"Y"``...) of the ``freq``/``adjust`` series: the share of each month's sessions
        (bar stamps, intraday) within the series' span that have a bar; NaN outside its
        span. Rows are symbols, columns periods: a heatmap's table."""
        freq = Freq.parse(freq)
        series = self.series[(self.series["freq"] == freq.value)
                             & (self.series["adjust"] == adjust)]
        if series.empty:
            return pd.DataFrame()
        periods = pd.period_range(series["first"].min(), series["last"].max(), freq=period)
        lo = np.asarray(periods.start_time, "datetime64[s]")
        hi = np.asarray(periods.end_time, "datetime64[s]")
        first = np.asarray(series["first"], "datetime64[s]")[:, None]
        last = np.asarray(series["last"], "datetime64[s]")[:, None]
        expected = np.zeros((len(series), len(periods)), "int64")
        for (calendar, bar_time), rows in series.groupby(["calendar", "bar_time"],
                                                         dropna=False).groups.items():
            at = series.index.get_indexer(rows)
            stamps, _, _, _ = _expected(calendar, freq, bar_time, series["first"].min(),
                                        series["last"].max())
            a = np.maximum(lo[None, :], first[at])
            b = np.minimum(hi[None, :], last[at])
            count = np.searchsorted(stamps, b, "right") - np.searchsorted(stamps, a, "left")
            expected[at] = np.where(b >= a, count, 0)
        gaps = self.gaps[(self.gaps["kind"] == "missing") & (self.gaps["freq"] == freq.value)
                         & (self.gaps["adjust"] == adjust)]
        missing = (pd.crosstab(gaps["symbol"], gaps["ts"].dt.to_period(period))
                   .reindex(index=series["symbol"], columns=periods, fill_value=0).to_numpy())
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(expected > 0, 1 - missing / np.maximum(expected, 1), np.nan)
        return pd.DataFrame(share, index=pd.Index(series["symbol"], name="symbol"),
                            columns=periods)

    def runs(self) -> pd.DataFrame:
        """The gaps as runs: consecutive sessions (stamps) of one kind in one series become one
        row with its first and last stamp and how many."""
        if self.gaps.empty:
            return pd.DataFrame(columns=["symbol", "freq", "adjust", "kind", "first", "last",
                                         "count"])
        keys = ["symbol", "freq", "adjust", "kind"]
        g = self.gaps.sort_values([*keys, "ts"]).reset_index(drop=True)
        # A run goes on while the next gap of the series and kind is at its next session
        # (``seq``: the stamp's number in the calendar; off-calendar bars have none).
        same = g[keys].shift().eq(g[keys]).all(axis=1)
        follows = g["seq"].astype("float64").diff().eq(1).to_numpy(bool)
        run = np.cumsum(~(same.to_numpy(bool) & follows))
        out = (g.groupby(run).agg(symbol=("symbol", "first"), freq=("freq", "first"),
                                  adjust=("adjust", "first"), kind=("kind", "first"),
                                  first=("ts", "first"), last=("ts", "last"),
                                  count=("ts", "size"))
               .sort_values(["symbol", "freq", "adjust", "first"], kind="stable")
               .reset_index(drop=True))
        return out

    def to_dict(self, every_gap: bool = False) -> dict:
        """The result for scripts: counts per series, the gaps as runs, and each gap's stamp
        only with ``every_gap`` (a missing month of minute bars is thousands of them)."""
        out = {
            "checked_at": self.checked_at.isoformat(),
            "ok": self.ok,
            "series": len(self.series),
            "counts": self.counts(),
            "completeness": self.completeness(),
            "recorded": self.recorded,
            "note": self.note,
            "skipped": self.skipped,
            "by_series": _records(self.series),
            "runs": _records(self.runs()),
        }
        if every_gap:
            out["gaps"] = _records(self.gaps[GAP_COLUMNS])
        return out

    def headline(self) -> str:
        """One line: series, completeness per freq, gaps per class."""
        per = ", ".join(f"{share:.4%} ({freq})" for freq, share in self.completeness().items())
        counts = self.counts()
        return (f"{len(self.series):,} series checked against their trading calendars: "
                f"completeness {per or 'nothing to check'}; {counts['missing']:,} missing, "
                f"{counts['suspended']:,} suspended, {counts['off_calendar']:,} off the "
                "calendar (sessions of daily series, bar stamps of intraday ones)")

    def to_text(self, most: int = _SHOWN) -> str:
        lines = [self.headline()]
        unknown = int(self.series["unknown"].sum()) if len(self.series) else 0
        if unknown:
            lines.append(f"{counted(unknown, 'bar')} outside the sessions their calendar knows "
                         "(not checked)")
        runs = self.runs()
        for row in runs.head(most).itertuples(index=False):
            span = _stamp(row.first) if row.count == 1 else \
                f"{_stamp(row.first)} .. {_stamp(row.last)}"
            lines.append(f"  {row.symbol} {row.freq} {row.adjust}  {row.kind:<12} {span}"
                         f"  ({row.count})")
        if len(runs) > most:
            lines.append(f"  ... and {len(runs) - most:,} more runs (--json lists them all)")
        lines.extend(self.skipped)
        if self.note:
            lines.append(self.note)
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        counts = self.counts()
        cells = "".join(f"<td>{n:,}</td>" for n in counts.values())
        head = "".join(f"<th>{k.replace('_', '-')}</th>" for k in counts)
        runs = self.runs().head(_SHOWN)
        table = runs.to_html(index=False, border=0) if len(runs) else "<p>No gaps.</p>"
        per = ", ".join(f"{share:.4%} ({freq})" for freq, share in self.completeness().items())
        notes = [*self.skipped, *([self.note] if self.note else [])]
        return (f"<div><b>{len(self.series):,} series</b>, completeness {html.escape(per)}"
                f"<table><tr>{head}</tr><tr>{cells}</tr></table>{table}"
                f"{''.join(f'<p>{html.escape(s)}</p>' for s in notes)}</div>")


def placeholders(bars: pd.DataFrame, freq) -> np.ndarray:
    """Which rows of ``bars`` (a frame sorted by symbol and ts, not in the store: a second
    provider's) are placeholder bars, by the rule :func:`check_gaps` applies in SQL to stored
    bars (:func:`held_bars`): a daily bar with no
    trade (volume 0) at one price (open = high = low = close) that repeats the close of the
    bar before it (none within 40 days: repeats it); intraday, every bar of a day flat at one
    price with no trade."""
    if bars.empty:
        return np.zeros(0, bool)
    flat = (bars["volume"].eq(0) & bars["open"].eq(bars["high"]) & bars["high"].eq(bars["low"])
            & bars["low"].eq(bars["close"]))
    by = bars.groupby("symbol", sort=False)
    if Freq.parse(freq).intraday:
        day = [bars["symbol"], bars["ts"].dt.normalize()]
        whole = flat.groupby(day).transform("all")
        one_price = bars["close"].groupby(day).transform("nunique").eq(1)
        return (whole & one_price).to_numpy()
    recent = (bars["ts"] - by["ts"].shift()) <= pd.Timedelta(days=PREVIOUS_DAYS)
    prev = by["close"].shift().where(recent)
    return (flat & (prev.isna() | bars["close"].eq(prev))).to_numpy()


def _completeness(sessions, missing):
    sessions = np.asarray(sessions, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sessions > 0, 1 - np.asarray(missing, dtype=float) / sessions, 1.0)


def _stamp(ts) -> str:
    ts = pd.Timestamp(ts)
    return ts.strftime("%Y-%m-%d") if ts == ts.normalize() else ts.strftime("%Y-%m-%d %H:%M")


def _records(frame: pd.DataFrame) -> list[dict]:
    out = frame.copy()
    for col in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[col]):
            out[col] = out[col].map(lambda t: None if pd.isna(t) else t.isoformat())
    return out.astype(object).where(out.notna(), None).to_dict("records")


# --- which calendar and which stamps ---------------------------------------------------------


def _provider(source: str):
    from .providers.registry import provider_class

    try:
        return provider_class(source)
    except KdistError:
        return None  # a source no installed provider knows: the symbol's own calendar


def _calendar_of(symbol: str, source: str, override) -> str:
    if isinstance(override, str):
        return override
    if isinstance(override, dict):
        chosen = override.get(symbol) or override.get(source)
        if chosen:
            return chosen
    cls = _provider(source)
    return calendars.calendar_for(symbol, getattr(cls, "calendar", None))


def _bar_time(source: str, bar_time) -> str | None:
    """The stamp convention of a series: given, or its provider's; None: to be told from
    the bars (:func:`_told_bar_times`)."""
    return bar_time or getattr(_provider(source), "bar_time", None)


_TIMES_SQL = """
SELECT s.id, list(DISTINCT k.ts::TIME) AS times
FROM kline k
JOIN kdist_q_told s ON k.symbol = s.symbol AND k.freq = s.freq AND k.adjust = s.adjust
GROUP BY s.id
"""


def _told_bar_times(con, series: pd.DataFrame) -> dict[int, str]:
    """For intraday series whose convention nobody states (files): ``end`` or ``start``,
    whichever puts more of the series' times of day on a bar stamp of its calendar's
    sessions (a full session near its last bar). Eastmoney's 1-minute files, 09:30 (the
    opening auction's bar) to 15:00, fit ``end``; Yahoo's hourly bars of Hong Kong,
    09:30 .. 15:00, fit ``start``."""
    if series.empty:
        return {}
    con.register("kdist_q_told", series[["id", "symbol", "freq", "adjust"]])
    try:
        times = dict(con.execute(_TIMES_SQL).fetchall())
    finally:
        con.unregister("kdist_q_told")
    told = {}
    for row in series.itertuples():
        recent = calendars.sessions(row.calendar, pd.Timestamp(row.last) - pd.Timedelta(days=14),
                                    row.last).days
        if not len(recent):
            told[row.id] = "end"
            continue
        seen = set(times.get(row.id, ()))
        score = {}
        for convention in ("end", "start"):
            stamps = calendars.bar_stamps(row.calendar, recent, Freq.parse(row.freq).minutes,
                                          convention)["ts"]
            score[convention] = len(seen & set(stamps.dt.time))
        told[row.id] = "start" if score["start"] > score["end"] else "end"
    return told


def _expected(calendar: str, freq: Freq, bar_time: str, first, last):
    """Stamps a series of ``calendar`` and ``freq`` should have in [first, last], sorted;
    stamps it may have besides (the opening auction's 1-minute bar at each session's open,
    which Eastmoney writes: 241 bars a day); and the calendar's first and last known
    sessions."""
    known = calendars.sessions(calendar, first, last)
    allowed = np.zeros(0, "datetime64[s]")
    if freq is Freq.DAY:
        stamps = np.asarray(known.days, "datetime64[s]")
    else:
        stamps = calendars.bar_stamps(calendar, known.days, freq.minutes, bar_time)["ts"]
        stamps = np.asarray(stamps, "datetime64[s]")
        if freq is Freq.MIN1 and bar_time == "end":
            allowed = calendars.opens(calendar, known.days)
    return stamps, allowed, known.known_until, known.known_from


# --- the check --------------------------------------------------------------------------------

_SERIES_SQL = """
SELECT k.symbol, k.freq, k.adjust, min(k.ts)::TIMESTAMP AS first, max(k.ts)::TIMESTAMP AS last,
       count(*) AS bars, string_agg(DISTINCT k.source, ',' ORDER BY k.source) AS source,
       min(k.source) AS main_source
FROM kline k
WHERE k.freq IN (SELECT unnest(?::VARCHAR[]))
  AND (?::VARCHAR[] IS NULL OR k.symbol IN (SELECT unnest(?::VARCHAR[])))
  AND (?::VARCHAR IS NULL OR k.adjust = ?)
  AND (?::TIMESTAMP_S IS NULL OR k.ts >= ?::TIMESTAMP_S)
  AND (?::TIMESTAMP_S IS NULL OR k.ts < ?::TIMESTAMP_S)
GROUP BY ALL
"""

# One scan: each bar either is on an expected stamp of its series' calendar (counted), or is
# not (off the calendar, or past what the calendar knows: unknown); flat zero-volume bars are
# counted so that only series with some are read again for placeholders. The series and the
# calendars are numbered (``id``, ``kid``): integer keys keep the joins' hash tables small.
_COUNT_SQL = """
SELECT s.id,
       count(e.ts) FILTER (e.required) AS on_calendar,
       count(*) FILTER (e.ts IS NULL AND k.ts::TIMESTAMP BETWEEN s.known_from AND s.known)
           AS off_calendar,
       count(*) FILTER (k.ts::TIMESTAMP NOT BETWEEN s.known_from AND s.known) AS unknown,
       count(*) FILTER (k.volume = 0 AND k.open = k.high AND k.high = k.low
                        AND k.low = k.close) AS flat
FROM kline k
JOIN kdist_q_series s ON k.symbol = s.symbol AND k.freq = s.freq AND k.adjust = s.adjust
LEFT JOIN kdist_q_expected e ON e.kid = s.kid AND e.ts = k.ts::TIMESTAMP
WHERE (?::TIMESTAMP_S IS NULL OR k.ts >= ?::TIMESTAMP_S)
  AND (?::TIMESTAMP_S IS NULL OR k.ts < ?::TIMESTAMP_S)
GROUP BY s.id
"""

# Sessions between a series' first and last bar without a bar, for the series with some;
# ``held``: an intraday stamp of a day the symbol's daily bar is a placeholder on (vendors
# write no minute bars for a suspended day: those are suspended, not missing).
_MISSING_SQL = """
WITH b AS (
    SELECT s.id, k.ts::TIMESTAMP AS ts
    FROM kline k
    JOIN kdist_q_series s ON k.symbol = s.symbol AND k.freq = s.freq AND k.adjust = s.adjust
    WHERE s.missing > 0),
m AS (
    SELECT s.id, s.symbol, s.freq, e.ts, e.seq
    FROM kdist_q_series s
    JOIN kdist_q_expected e ON e.kid = s.kid AND e.ts BETWEEN s.first AND s.last
    ANTI JOIN b ON b.id = s.id AND b.ts = e.ts
    WHERE s.missing > 0 AND e.required),
days AS (
    SELECT DISTINCT k.symbol, k.ts::DATE AS day
    FROM kline k
    SEMI JOIN (SELECT DISTINCT symbol FROM m WHERE freq <> '1d') i ON k.symbol = i.symbol
    WHERE k.freq = '1d' AND k.volume = 0 AND k.open = k.high AND k.high = k.low
      AND k.low = k.close)
SELECT m.id, m.ts, m.seq, (m.freq <> '1d' AND d.day IS NOT NULL) AS held
FROM m LEFT JOIN days d ON d.symbol = m.symbol AND d.day = m.ts::DATE
"""

_OFF_SQL = """
SELECT s.id, k.ts::TIMESTAMP AS ts, NULL::BIGINT AS seq
FROM kline k
JOIN kdist_q_series s ON k.symbol = s.symbol AND k.freq = s.freq AND k.adjust = s.adjust
ANTI JOIN kdist_q_expected e ON e.kid = s.kid AND e.ts = k.ts::TIMESTAMP
WHERE s.off_calendar > 0 AND k.ts::TIMESTAMP BETWEEN s.known_from AND s.known
  AND (?::TIMESTAMP_S IS NULL OR k.ts >= ?::TIMESTAMP_S)
  AND (?::TIMESTAMP_S IS NULL OR k.ts < ?::TIMESTAMP_S)
"""

# Placeholder bars among the flat zero-volume bars (``c``) of the series that have some. A
# daily one repeats the close of the bar before it (looked for in the 40 days before: a
# bar with none there is taken as repeating it); an intraday day is a suspension only when
# every bar of it is flat at one price with no trade (a quiet minute is none).
_PLACEHOLDER_SQL = """
WITH c AS (
    SELECT s.id, s.freq, k.ts::TIMESTAMP AS ts, k.close
    FROM kline k
    JOIN kdist_q_series s ON k.symbol = s.symbol AND k.freq = s.freq AND k.adjust = s.adjust
    WHERE s.flat > 0 AND k.volume = 0 AND k.open = k.high AND k.high = k.low
      AND k.low = k.close
      AND (?::TIMESTAMP_S IS NULL OR k.ts >= ?::TIMESTAMP_S)
      AND (?::TIMESTAMP_S IS NULL OR k.ts < ?::TIMESTAMP_S)),
daily AS (
    SELECT c.id, c.ts, c.close, arg_max(k.close, k.ts) AS prev
    FROM c
    JOIN kdist_q_series s ON s.id = c.id
    LEFT JOIN kline k ON k.symbol = s.symbol AND k.freq = s.freq AND k.adjust = s.adjust
                     AND k.ts < c.ts::TIMESTAMP_S
                     AND k.ts >= (c.ts - INTERVAL 40 DAY)::TIMESTAMP_S
    WHERE c.freq = '1d'
    GROUP BY c.id, c.ts, c.close),
flat_days AS (
    SELECT id, ts::DATE AS day, count(*) AS flat, min(close) = max(close) AS one_price
    FROM c WHERE freq <> '1d' GROUP BY ALL),
whole_days AS (
    SELECT d.id, d.day
    FROM flat_days d
    JOIN kdist_q_series s ON s.id = d.id
    JOIN kline k ON k.symbol = s.symbol AND k.freq = s.freq AND k.adjust = s.adjust
                AND k.ts >= d.day::TIMESTAMP_S
                AND k.ts < (d.day + INTERVAL 1 DAY)::TIMESTAMP_S
    WHERE d.one_price
    GROUP BY d.id, d.day, d.flat HAVING count(*) = d.flat),
held AS (
    SELECT id, ts FROM daily WHERE prev IS NULL OR close = prev
    UNION ALL
    SELECT c.id, c.ts FROM c JOIN whole_days w ON c.id = w.id AND c.ts::DATE = w.day)
SELECT h.id, h.ts, e.seq
FROM held h
JOIN kdist_q_series s ON s.id = h.id
LEFT JOIN kdist_q_expected e ON e.kid = s.kid AND e.ts = h.ts
"""


_STORED_SERIES_SQL = """
SELECT DISTINCT symbol, freq, adjust FROM kline
WHERE freq = ? AND adjust IN (SELECT unnest(?::VARCHAR[]))
  AND (?::VARCHAR[] IS NULL OR symbol IN (SELECT unnest(?::VARCHAR[])))
"""


def held_bars(con, freq, adjusts: list[str], symbols=None, lo=None, hi=None) -> pd.DataFrame:
    """The placeholder bars stored for ``freq`` under any of ``adjusts`` (``symbol, ts``),
    stamped in ``[lo, hi)``, by the rule and the SQL :func:`check_gaps` uses (a daily bar's
    previous close is looked for in the store, also before ``lo``): what ``load(...,
    placeholders="drop")`` leaves out. A derived qfq read passes ``none`` too, so a raw
    placeholder's day goes whatever its adjusted prices."""
    freq = Freq.parse(freq)
    series = con.execute(_STORED_SERIES_SQL, [freq.value, adjusts, symbols, symbols]).df()
    if series.empty:
        return pd.DataFrame({"symbol": pd.Series(dtype="str"),
                             "ts": pd.Series(dtype="datetime64[us]")})
    series = series.assign(id=np.arange(len(series)), kid=0, flat=1)
    con.register("kdist_q_series", series)
    con.register("kdist_q_expected", pd.DataFrame({
        "kid": pd.Series(dtype="int64"), "ts": pd.Series(dtype="datetime64[us]"),
        "seq": pd.Series(dtype="Int64"), "required": pd.Series(dtype="bool")}))
    try:
        held = con.execute(_PLACEHOLDER_SQL, [lo, lo, hi, hi]).df()
    finally:
        for name in ("kdist_q_series", "kdist_q_expected"):
            con.unregister(name)
    return pd.DataFrame({"symbol": series["symbol"].to_numpy()[held["id"].to_numpy()],
                         "ts": held["ts"].astype("datetime64[us]").to_numpy()})


def check_gaps(con, *, symbols=None, freq=None, adjust=None, start=None, end=None,
               calendar=None, bar_time=None, now=None) -> Quality:
    """Classify the gaps of the stored daily and intraday series (see the module docstring).

    ``symbols``/``freq``/``adjust``/``start``/``end`` narrow what is checked; ``calendar``
    overrides the calendar of every series (a name) or of some (a dict keyed by symbol or by
    source); ``bar_time`` (``"end"`` or ``"start"``) overrides how intraday bars are stamped.
    """
    checked_at = pd.Timestamp(now or _now()).floor("s")
    freqs = [Freq.parse(freq)] if freq else list(Freq)
    if freq and not (freqs[0] is Freq.DAY or freqs[0].intraday):
        raise UsageError(f"Gaps are checked for daily and intraday bars, not {freqs[0].value}: "
                         "weekly and monthly bars are built from the days")
    lo = pd.Timestamp(start).normalize() if start is not None else None
    hi = pd.Timestamp(end).normalize() + pd.Timedelta(days=1) if end is not None else None
    series = con.execute(_SERIES_SQL, [[f.value for f in freqs], symbols, symbols, adjust,
                                       adjust, lo, lo, hi, hi]).df()
    if isinstance(calendar, dict):
        calendar = dict(calendar)  # its keys are put in canonical form
    _check_names(series, symbols, calendar)
    longer = series["freq"].isin([Freq.WEEK.value, Freq.MONTH.value])
    skipped = [f"{int(longer.sum()):,} weekly or monthly series not checked (built from days: "
               "their daily bars are)"] if longer.any() else []
    series = series[~longer].reset_index(drop=True)
    empty = pd.DataFrame(columns=GAP_COLUMNS)
    if series.empty:
        return Quality(checked_at, pd.DataFrame(columns=SERIES_COLUMNS), empty, skipped)
    series["calendar"] = [_calendar_of(s, src, calendar)
                          for s, src in zip(series["symbol"], series["main_source"])]
    unknown = series["calendar"].isna()
    if unknown.any():
        names = sorted(series.loc[unknown, "symbol"].unique())
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        skipped.append(f"{int(unknown.sum()):,} series not checked: no trading calendar known "
                       f"for {shown} (name one: --calendar SYMBOL=NAME, e.g. XKLS)")
        series = series[~unknown].reset_index(drop=True)
        if series.empty:
            return Quality(checked_at, pd.DataFrame(columns=SERIES_COLUMNS),
                           pd.DataFrame(columns=GAP_COLUMNS), skipped)
    series["id"] = np.arange(len(series))
    series["bar_time"] = [
        "day" if f == Freq.DAY.value else _bar_time(src, bar_time)
        for f, src in zip(series["freq"], series["main_source"])]
    untold = series["bar_time"].isna()
    if untold.any():
        told = _told_bar_times(con, series[untold])
        series.loc[untold, "bar_time"] = series.loc[untold, "id"].map(told)
    series["key"] = series["calendar"] + "|" + series["freq"] + "|" + series["bar_time"]
    series["kid"] = series["key"].factorize()[0]
    expected, sessions, known, known_from = _expected_stamps(series)
    series["sessions"] = sessions
    series["known"] = known
    series["known_from"] = known_from
    _register(con, "kdist_q_expected", expected)
    try:
        _register(con, "kdist_q_series", series[["id", "symbol", "freq", "adjust", "kid",
                                                 "known", "known_from"]])
        counts = con.execute(_COUNT_SQL, [lo, lo, hi, hi]).df()
        series = series.merge(counts, on="id", how="left")
        for col in ("on_calendar", "off_calendar", "unknown", "flat"):
            series[col] = series[col].fillna(0).astype("int64")
        series["missing"] = (series["sessions"] - series["on_calendar"]).clip(lower=0)
        _register(con, "kdist_q_series", series[["id", "symbol", "freq", "adjust", "kid",
                                                 "known", "known_from", "first", "last",
                                                 "missing", "off_calendar", "flat"]])
        found = [frame for frame in _details(con, series, lo, hi) if len(frame)]
    finally:
        for name in ("kdist_q_series", "kdist_q_expected"):
            con.unregister(name)
    if found:
        gaps = pd.concat(found, ignore_index=True)
        keys = series[["symbol", "freq", "adjust"]].to_numpy()[gaps["id"].to_numpy()]
        gaps = pd.concat([pd.DataFrame(keys, columns=["symbol", "freq", "adjust"]),
                          gaps[["ts", "seq", "kind"]]], axis=1)
    else:
        gaps = empty.assign(seq=pd.Series(dtype="Int64"))
    gaps = gaps.sort_values(["symbol", "freq", "adjust", "ts"], kind="stable").reset_index(drop=True)
    # Counted from the gaps: a missing intraday stamp of a suspended day is suspended.
    for kind in ("suspended", "missing"):
        series[kind] = np.bincount(np.asarray(_ids_of(found, kind), "int64"),
                                   minlength=len(series))
    series["completeness"] = _completeness(series["sessions"], series["missing"])
    for col in ("sessions", "bars", "suspended", "missing", "off_calendar", "unknown"):
        series[col] = series[col].fillna(0).astype("int64")
    series["bar_time"] = series["bar_time"].where(series["freq"] != Freq.DAY.value, None)
    series = series[SERIES_COLUMNS].sort_values(["symbol", "freq", "adjust"]).reset_index(drop=True)
    gaps["ts"] = gaps["ts"].astype("datetime64[us]")
    return Quality(checked_at, series, gaps, skipped)


def _check_names(series: pd.DataFrame, symbols, calendar):
    """Refuse symbols with nothing stored to check, and calendar keys that name no stored
    symbol or source (a typo would otherwise leave the calendar unchanged, silently)."""
    from .schema import normalise_symbol

    stored = set(series["symbol"])
    if symbols:
        missing = [s for s in symbols if s not in stored]
        if missing:
            raise UsageError(f"No bars of {', '.join(missing[:5])} to check (of the freq and "
                             "adjust asked); 'kdist status --series' lists what is stored")
    if isinstance(calendar, dict):
        sources = {src for joined in series["source"] for src in str(joined).split(",")}
        for key in list(calendar):
            named = key if key in sources else normalise_symbol(key, strict=False)
            if named not in stored and named not in sources:
                raise UsageError(f"--calendar {key}=...: no stored symbol or source is named "
                                 f"{key!r}; sources stored: {', '.join(sorted(sources))}")
            calendar[named] = calendar.pop(key)


def _expected_stamps(series: pd.DataFrame):
    """Every expected stamp of the series' calendars over their span (one frame: kid, ts,
    seq, required), each series' count of stamps between its first and last bar, and where
    each calendar's knowledge ends (the end of its last known session's day) and starts."""
    frames = []
    sessions = np.zeros(len(series), "int64")
    known = np.empty(len(series), "datetime64[s]")
    known_from = np.empty(len(series), "datetime64[s]")
    for key, rows in series.groupby("key", sort=False).groups.items():
        part = series.loc[rows]
        cal, freq, bar_time = key.split("|")
        stamps, allowed, until, since = _expected(cal, Freq.parse(freq), bar_time,
                                                  part["first"].min(), part["last"].max())
        end_of_day = (np.datetime64(pd.Timestamp(until) + pd.Timedelta(days=1), "s")
                      - np.timedelta64(1, "s"))
        first = np.asarray(part["first"], "datetime64[s]")
        last = np.asarray(part["last"], "datetime64[s]")
        at = series.index.get_indexer(rows)
        sessions[at] = np.searchsorted(stamps, last, "right") - np.searchsorted(stamps, first, "left")
        known[at] = end_of_day
        known_from[at] = np.datetime64(pd.Timestamp(since), "s")
        frames.append(pd.DataFrame({"kid": part["kid"].iat[0],
                                    "ts": stamps.astype("datetime64[us]"),
                                    "seq": np.arange(len(stamps), dtype="int64"),
                                    "required": True}))
        if len(allowed):
            frames.append(pd.DataFrame({"kid": part["kid"].iat[0],
                                        "ts": allowed.astype("datetime64[us]"),
                                        "seq": pd.array([None] * len(allowed), "Int64"),
                                        "required": False}))
    expected = pd.concat(frames, ignore_index=True)
    return (expected, np.maximum(sessions, 0), known.astype("datetime64[us]"),
            known_from.astype("datetime64[us]"))


def _details(con, series: pd.DataFrame, lo, hi):
    """The dates of each class, read only for the series that have some."""
    if (series["missing"] > 0).any():
        missing = con.execute(_MISSING_SQL).df()
        kind = np.where(missing.pop("held").to_numpy(bool), "suspended", "missing")
        for name in ("missing", "suspended"):
            yield missing[kind == name].assign(kind=name)
    if (series["off_calendar"] > 0).any():
        yield con.execute(_OFF_SQL, [lo, lo, hi, hi]).df().assign(kind="off_calendar")
    if (series["flat"] > 0).any():
        yield con.execute(_PLACEHOLDER_SQL, [lo, lo, hi, hi]).df().assign(kind="suspended")


def _ids_of(found: list[pd.DataFrame], kind: str) -> np.ndarray:
    """The series ids of the gaps of ``kind`` among the detail frames."""
    ids = [frame["id"].to_numpy() for frame in found if frame["kind"].iat[0] == kind]
    return np.concatenate(ids) if ids else np.zeros(0, "int64")


def _register(con, name: str, frame: pd.DataFrame):
    con.register(name, frame)  # replaces a frame registered under the name before
