"""Intraday history that expires: stored series about to pass their vendor's look-back.

Some vendors serve intraday bars for recent days only (Yahoo: 1-minute bars for 30 days,
5- to 60-minute bars for 60), declared per freq by each provider as a rolling
:class:`~kdist.providers.base.Horizon`. A stored series that is not updated in time has a
hole that can never be filled: the bars after its last stored bar leave the vendor's window
one trading day after another. This module says which stored series are closest to that,
from :meth:`kdist.store.Store.catalog` alone (no bar is read), and how many bars a delay
would cost.

The dates, for a series whose last stored bar is on day L and whose vendor looks back
``look_back`` days (on day D it serves the bars of days D - look_back + 1 on):

``deadline``
    L + look_back - 1: the last day the vendor still serves day L. ``kdist update`` fetches
    from the day of a series' last stored bars on (to check them against the vendor), so it
    must run by then; from the next day on (``expires``) the rest of day L and then each
    following trading day is gone.
``days_left``
    ``deadline`` minus today, in days: 0 means today is the last day, negative that the
    deadline has passed.
``bars_per_day``
    The series' stored bars divided by the trading sessions of its exchange calendar
    (:func:`kdist.calendars.calendar_for`; the provider's own calendar when it names one)
    from its first to its last stored day: what a trading day of delay costs. An estimate:
    a partly stored first day, or a gap in the stored bars, lowers it. Past a calendar's
    horizon (XSHG's ends 2026-12-31) weekdays count as sessions, and so they do for a
    calendar that cannot be loaded.
bars lost
    When the next update runs on day R, the bars of the sessions after day L up to
    R - look_back can never be fetched any more: ``bars_per_day`` times those sessions (day
    L itself is taken as stored whole). :func:`bars_lost` sums that over the stored series
    for R = today + N; :func:`expiring`'s ``lost`` column is it for R = today.

Only intraday series whose source declares a rolling horizon for their freq are looked at. A
series of several sources (``csv,yfinance``) is judged by the shortest rolling horizon among
them, the most urgent case. Daily bars, local files (``tdx``, ``csv``, ``parquet``) and
generated data (``synthetic``) never expire.

Everything is computed on arrays, per (source, freq) and per calendar, never per series in
Python: a catalog of 50,000 series takes a fraction of a second (the first use of an
exchange calendar in a process loads it, about half a second). ``now`` is injectable for
tests; it defaults to the local clock, as the yfinance provider's own refusal does.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from . import calendars
from .report import counted
from .schema import Freq
from .store import Store

__all__ = ["bars_lost", "expiring", "outlook", "per_series", "status_warnings", "update_line"]

#: The columns of :func:`expiring`.
COLUMNS = ["symbol", "freq", "adjust", "source", "first", "last", "bars", "look_back",
           "first_served", "deadline", "expires", "days_left", "bars_per_day", "lost",
           "calendar"]
_DAY = np.timedelta64(1, "D")


def expiring(db_or_store, *, now=None, within_days: int | None = None) -> pd.DataFrame:
    """Stored intraday series whose vendor serves their freq for a rolling look-back only,
    most urgent first.

    Parameters
    ----------
    db_or_store
        A database path, an open :class:`~kdist.store.Store`, or a frame of
        :meth:`Store.catalog` (so a caller that has read the catalog need not read it again).
    now
        The moment to judge from (default: now); only its day counts.
    within_days
        Only the series that lose bars unless updated within that many days
        (``days_left < within_days``); all by default.

    Returns
    -------
    pandas.DataFrame
        One row per series: ``symbol freq adjust source first last bars`` from the catalog;
        ``look_back`` (days), ``first_served`` (the first day the vendor serves today),
        ``deadline`` (the last day ``kdist update`` gets every bar),
        ``expires`` (the day after), ``days_left`` (deadline minus today), ``bars_per_day``
        (what each trading day of delay past the deadline costs), ``lost`` (bars already
        gone for good today) and ``calendar`` (whose sessions were counted). Sorted by
        ``days_left``, then by ``bars_per_day`` (most first), then symbol. The module
        docstring says how each is computed.
    """
    frame = _table(_catalog(db_or_store), _today(now))
    if within_days is not None:
        frame = frame[frame["days_left"] < within_days].reset_index(drop=True)
    return frame


def bars_lost(db_or_store, days: int, *, now=None) -> int:
    """How many more stored series' bars would be lost for good if no update ran for
    ``days`` days: the bars of the trading days after each series' last stored day that
    will have left the vendor's window by today + ``days`` and have not left it yet (those
    are gone whatever one does); 0 for series of vendors without a rolling horizon.
    ``db_or_store`` as for :func:`expiring`."""
    today = _today(now)
    frame = _table(_catalog(db_or_store), today)
    return int((_lost(frame, today + np.timedelta64(int(days), "D")) - _lost(frame, today)).sum())


def outlook(db_or_store, days: int, *, now=None) -> dict:
    """What ``kdist update`` reports: whether skipping updates for ``days`` days loses bars.

    A JSON-ready dict: ``warn_days`` (``days``), ``series`` (stored series with a rolling
    horizon), ``losing`` (those that would lose bars), ``bars_lost`` (how many more than
    are lost already), ``already_lost`` (bars that left the vendor's window already),
    ``groups`` (their ``source freq`` pairs), ``passed`` (series whose deadline has passed
    already), ``next_deadline`` (the most urgent series' deadline, ISO date or None),
    ``next`` (that series: ``symbol source freq adjust days_left``, or None).
    """
    today = _today(now)
    frame = _table(_catalog(db_or_store), today)
    gone = _lost(frame, today)
    lost = _lost(frame, today + np.timedelta64(int(days), "D")) - gone
    first = frame.iloc[0] if len(frame) else None
    return {
        "warn_days": int(days),
        "series": len(frame),
        "losing": int((lost > 0).sum()),
        "bars_lost": int(lost.sum()),
        "already_lost": int(gone.sum()),
        "groups": sorted({f"{s} {f}" for s, f in
                          zip(frame["source"][lost > 0], frame["freq"][lost > 0])}),
        "passed": int((frame["days_left"] < 0).sum()),
        "next_deadline": None if first is None else f"{first['deadline']:%Y-%m-%d}",
        "next": None if first is None else {
            "symbol": first["symbol"], "source": first["source"], "freq": first["freq"],
            "adjust": first["adjust"], "days_left": int(first["days_left"])},
    }


def update_line(summary: dict) -> str | None:
    """One line for ``kdist update`` from :func:`outlook`'s dict; None when no stored series
    has a rolling horizon (nothing to say)."""
    if not summary["series"]:
        return None
    days = counted(summary["warn_days"], "day")
    nxt = summary["next"]
    which = f"{nxt['symbol']} {nxt['source']} {nxt['freq']}"
    if summary["bars_lost"]:
        head = (f"horizon: not running kdist update for {days} would lose "
                f"{counted(summary['bars_lost'], 'bar')} of {_series(summary['losing'])} "
                f"({', '.join(summary['groups'])}) for good")
    else:
        head = f"horizon: not running kdist update for {days} would lose no bars"
    if summary["passed"]:
        return (f"{head}; {_series(summary['passed'])} passed the vendor's horizon already "
                f"(first: {which}, due by {summary['next_deadline']}): this update keeps what "
                "the vendor still serves")
    if not summary["bars_lost"]:
        return (f"{head}; the next vendor horizon is {summary['next_deadline']} ({which}: "
                "update it by then)")
    return f"{head}; the first must be updated by {summary['next_deadline']} ({which})"


def status_warnings(frame: pd.DataFrame, within_days: int, *, most: int = 3) -> list[str]:
    """``kdist status``'s warning lines from :func:`expiring`'s frame: per source, freq and
    look-back, the series that lose bars unless updated within ``within_days`` days (a
    line for those whose deadline has passed, then one for the rest), naming the ``most``
    urgent."""
    lines = []
    urgent = frame[frame["days_left"] < within_days]
    for (source, freq, look_back), group in urgent.groupby(
            ["source", "freq", "look_back"], sort=False):
        passed, coming = group[group["days_left"] < 0], group[group["days_left"] >= 0]
        what = f"({source} {freq})"
        if len(passed):
            start = pd.Timestamp(passed["first_served"].iat[0])
            lost = counted(int(passed["lost"].sum()), "bar")
            lines.append(
                f"warning: {_series(len(passed))} {what} passed the vendor's {look_back}-day "
                f"horizon: {lost} lost for good, {_per_day(passed['bars_per_day'])} more a day "
                f"each; run kdist update --freq {freq} now to keep what is left (from "
                f"{start:%Y-%m-%d}); first: {_named(passed, 'since', most, expired=True)}")
        if len(coming):
            lines.append(
                f"warning: {_series(len(coming))} {what} reach the vendor's {look_back}-day "
                f"horizon within {counted(within_days, 'day')}: run "
                f"kdist update --freq {freq} by {coming['deadline'].iat[0]:%Y-%m-%d} or lose "
                f"{_per_day(coming['bars_per_day'])} bars a day each; first: "
                f"{_named(coming, 'by', most)}")
    return lines


def per_series(catalog: pd.DataFrame, *, now=None, within_days: int | None = None) -> list:
    """For each row of ``catalog`` (in its order), a JSON-ready dict of its horizon
    (``look_back_days update_by days_left bars_per_day bars_lost`` and ``warning``: whether
    ``days_left < within_days``), or None for a series that does not expire."""
    frame = _table(catalog, _today(now))
    key = ["symbol", "freq", "adjust"]
    at = pd.MultiIndex.from_frame(frame[key]).get_indexer(pd.MultiIndex.from_frame(catalog[key]))
    days_left = frame["days_left"].to_numpy(np.int64)
    warning = (days_left < within_days if within_days is not None
               else np.zeros(len(frame), dtype=bool))
    names = ("look_back_days", "update_by", "days_left", "bars_per_day", "bars_lost", "warning")
    records = [dict(zip(names, values)) for values in zip(
        frame["look_back"].tolist(),
        np.datetime_as_string(frame["deadline"].to_numpy("datetime64[D]")).tolist(),
        days_left.tolist(), frame["bars_per_day"].round(1).tolist(), frame["lost"].tolist(),
        warning.tolist())]
    return [records[i] if i >= 0 else None for i in at]


# -- the computation -----------------------------------------------------------------------


def _catalog(db_or_store) -> pd.DataFrame:
    """The stored series of the freqs some provider serves for a rolling look-back only: a
    store of daily bars is not scanned whole for them (every ``kdist update`` asks)."""
    if isinstance(db_or_store, pd.DataFrame):
        return db_or_store
    if isinstance(db_or_store, Store):
        return db_or_store.catalog(freqs=_rolling_freqs())
    if not isinstance(db_or_store, (str, os.PathLike)):
        raise TypeError(f"expected a database path, a Store or a catalog frame, not "
                        f"{type(db_or_store).__name__}")
    with Store(db_or_store, read_only=True) as store:
        return store.catalog(freqs=_rolling_freqs())


def _rolling_freqs() -> list[str]:
    """The freqs any registered provider declares a rolling horizon for."""
    from .providers.registry import _names, provider_class

    freqs = set()
    for name in _names():
        try:
            cls = provider_class(name)
        except Exception:  # noqa: BLE001 - a plug-in that cannot load declares nothing
            continue
        freqs |= {f.value for f, h in cls.horizons.items() if h.rolling}
    return sorted(freqs)


def _today(now) -> np.datetime64:
    moment = pd.Timestamp.now() if now is None else pd.Timestamp(now)
    if moment.tzinfo is not None:
        moment = moment.tz_localize(None)
    return np.datetime64(moment.normalize().date(), "D")


def _horizon_of(source: str, freq: str) -> tuple[int, str | None] | None:
    """The shortest rolling look-back among ``source``'s providers (``csv,yfinance``) for
    ``freq``, with that provider's calendar; None when none declares one (or is unknown)."""
    from .providers import provider_class

    best = None
    for name in str(source).split(","):
        try:
            horizon = provider_class(name.strip()).horizon(freq)
            calendar = provider_class(name.strip()).calendar
        except Exception:  # noqa: BLE001 - an unknown or broken provider declares nothing
            continue
        if horizon is not None and horizon.rolling and (best is None or horizon.days < best[0]):
            best = (horizon.days, calendar)
    return best


def _table(catalog: pd.DataFrame, today: np.datetime64) -> pd.DataFrame:
    """:func:`expiring`'s frame, every series with a rolling horizon, sorted."""
    if catalog.empty:
        return _empty()
    intraday = catalog["freq"].isin([f.value for f in Freq if f.intraday]).to_numpy()
    series = catalog[intraday]
    pairs = series[["source", "freq"]].drop_duplicates()
    found = {(s, f): _horizon_of(s, f) for s, f in zip(pairs["source"], pairs["freq"])}
    keys = list(zip(series["source"].tolist(), series["freq"].tolist()))  # lists: fast to walk
    look_back = np.array([found[k][0] if found[k] else 0 for k in keys], dtype=np.int64)
    series = series[look_back > 0]
    if series.empty:
        return _empty()
    override = [found[k][1] for k, keep in zip(keys, look_back > 0) if keep]
    look_back = look_back[look_back > 0]
    first = series["first"].to_numpy("datetime64[D]")
    last = series["last"].to_numpy("datetime64[D]")
    deadline = last + (look_back - 1) * _DAY
    frame = pd.DataFrame({
        "symbol": series["symbol"].to_numpy(), "freq": series["freq"].to_numpy(),
        "adjust": series["adjust"].to_numpy(), "source": series["source"].to_numpy(),
        "first": series["first"].to_numpy(), "last": series["last"].to_numpy(),
        "bars": series["bars"].to_numpy(np.int64), "look_back": look_back,
        "deadline": deadline.astype("datetime64[s]"),
        "expires": (deadline + _DAY).astype("datetime64[s]"),
        "days_left": ((deadline - today) // _DAY).astype(np.int64),
    })
    cals = np.array([calendars.calendar_for(s, o)
                     for s, o in zip(frame["symbol"].tolist(), override)], dtype=object)
    count = _SessionCounter(cals, first, np.maximum(last, today))
    frame["bars_per_day"] = frame["bars"] / np.maximum(count(first, last), 1)
    frame["calendar"] = cals
    frame["lost"] = _lost(frame, today, count)
    frame["first_served"] = (today - (look_back - 1) * _DAY).astype("datetime64[s]")
    frame = frame.sort_values(["days_left", "bars_per_day", "symbol"],
                              ascending=[True, False, True], kind="stable")
    return frame[COLUMNS].reset_index(drop=True)


def _empty() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="object") for c in COLUMNS})
    for c in ("bars", "look_back", "days_left", "lost"):
        frame[c] = frame[c].astype(np.int64)
    for c in ("first", "last", "first_served", "deadline", "expires"):
        frame[c] = frame[c].astype("datetime64[s]")
    frame["bars_per_day"] = frame["bars_per_day"].astype("float64")
    return frame


def _lost(frame: pd.DataFrame, run_day: np.datetime64, count=None) -> np.ndarray:
    """Per series, the bars gone for good when the next update runs on ``run_day``: the
    sessions after its last stored day up to ``run_day - look_back``, times its bars a day."""
    if frame.empty:
        return np.zeros(0, dtype=np.int64)
    last = frame["last"].to_numpy("datetime64[D]")
    gone_until = run_day - frame["look_back"].to_numpy(np.int64) * _DAY
    if count is None:
        count = _SessionCounter(frame["calendar"].to_numpy(object), last,
                                np.maximum(gone_until, last))
    sessions = count(last + _DAY, gone_until)
    return np.rint(sessions * frame["bars_per_day"].to_numpy("float64")).astype(np.int64)


class _SessionCounter:
    """Counts the sessions of each series' calendar in ``[a, b]`` (dates, inclusive), for
    arrays of windows: one session list per calendar, then ``searchsorted``; weekdays past
    what a calendar knows, or for a calendar that cannot be loaded."""

    def __init__(self, cals: np.ndarray, lo: np.ndarray, hi: np.ndarray):
        self.cals = cals
        self.known = {}
        for name in pd.unique(cals):
            mine = cals == name
            try:
                found = calendars.sessions(name, pd.Timestamp(lo[mine].min()),
                                           pd.Timestamp(hi[mine].max()))
            except Exception:  # noqa: BLE001 - unknown calendar, missing package: weekdays
                continue
            days = np.asarray(found.days.values, "datetime64[D]")
            self.known[name] = (days, np.datetime64(found.known_until.date(), "D"),
                                days[0] if len(days) else None)

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a = np.asarray(a, "datetime64[D]")
        b = np.asarray(b, "datetime64[D]")
        out = np.zeros(len(a), dtype=np.int64)
        for name in pd.unique(self.cals):
            mine = self.cals == name
            lo, hi = a[mine], b[mine]
            known = self.known.get(name)
            if known is None:
                out[mine] = _weekdays(lo, hi)
                continue
            days, until, _ = known
            top = np.minimum(hi, until)
            inside = np.searchsorted(days, top, "right") - np.searchsorted(days, lo, "left")
            inside = np.where(top >= lo, inside, 0)
            beyond = _weekdays(np.maximum(lo, until + _DAY), hi)
            out[mine] = np.maximum(inside, 0) + beyond
        return out


def _weekdays(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Weekdays in ``[a, b]``, 0 for an empty window."""
    return np.maximum(np.busday_count(a, b + _DAY), 0).astype(np.int64)


def _series(n: int) -> str:
    """``1 intraday series``, ``12 intraday series``."""
    return f"{n:,} intraday series"


def _per_day(values: pd.Series) -> str:
    """``390`` when the series agree (rounded), ``up to 390`` otherwise."""
    rounded = np.rint(values.to_numpy("float64")).astype(np.int64)
    most = int(rounded.max())
    return f"{most:,}" if (rounded == most).all() else f"up to {most:,}"


def _named(group: pd.DataFrame, word: str, most: int, *, expired: bool = False) -> str:
    """``AAPL (by 2026-12-10), MSFT (by 2026-12-11) and 9 more``."""
    shown = group.head(most)
    dates = shown["expires"] if expired else shown["deadline"]
    names = ", ".join(f"{s} ({word} {d:%Y-%m-%d})" for s, d in zip(shown["symbol"], dates))
    rest = len(group) - len(shown)
    return f"{names} and {rest:,} more" if rest > 0 else names
