"""Trading calendars: which exchange's sessions a symbol trades on, from ``exchange_calendars``.

A symbol's calendar comes from its form: A-share codes (``.SH``, ``.SZ``, ``.BJ``, and
Yahoo's ``.SS``) trade on the Shanghai calendar ``XSHG`` (exchange_calendars has no
Shenzhen or Beijing calendar; the three exchanges share their holidays), Yahoo's suffixes
name their exchange (``.HK`` XHKG, ``.L`` XLON, ``.T`` XTKS, ...), and a bare ticker
(``AAPL``) is taken as New York's (``XNYS``). ``calendar_for(symbol, override=...)`` lets a
provider or the user say otherwise.

A calendar knows its sessions only up to its horizon (XSHG's hard-coded Chinese holidays end
on 2026-12-31: exchange_calendars raises for any later date). :func:`sessions` never lets
that escape: it returns the sessions it knows and says up to when (``known_until``), so a
check of later bars can say plainly that their sessions are not known yet.

Intraday bars are checked against each session's minutes (:func:`bar_stamps`): the trading
minutes of a session (XSHG 09:30-11:30 and 13:00-15:00, exchange-local) cut into bars of the
freq, each stamped at its end (the first A-share 1-minute bar is 09:31: baostock, TDX) or its
start (09:30: Yahoo), as the provider's ``bar_time`` says. A generator with a calendar of its
own registers it (:func:`register`): the synthetic provider does.

``exchange_calendars`` is imported on first use: ``import kdist`` stays light.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import MissingDependencyError, UsageError

__all__ = ["INDICES", "SUFFIXES", "Sessions", "bar_stamps", "calendar_for", "opens", "register", "sessions"]

#: Calendar of each symbol suffix (A-share and Yahoo forms): Yahoo's exchange suffixes with
#: an exchange_calendars calendar (German regional exchanges share Xetra's holidays; NSE
#: India's are BSE's). A suffix not here has no calendar kdist can vouch for.
SUFFIXES = {
    "SH": "XSHG", "SZ": "XSHG", "BJ": "XSHG", "SS": "XSHG",
    "HK": "XHKG", "L": "XLON", "IL": "XLON", "T": "XTKS", "TO": "XTSE", "V": "XTSX",
    "AX": "XASX", "DE": "XETR", "F": "XFRA", "BE": "XETR", "DU": "XDUS", "HM": "XHAM",
    "HA": "XETR", "MU": "XETR", "SG": "XSTU", "PA": "XPAR", "AS": "XAMS", "BR": "XBRU",
    "LS": "XLIS", "MI": "XMIL", "MC": "XMAD", "SW": "XSWX", "VI": "XWBO", "IR": "XDUB",
    "ST": "XSTO", "OL": "XOSL", "CO": "XCSE", "HE": "XHEL", "IC": "XICE", "RG": "XRIS",
    "TL": "XTAL", "VS": "XLIT", "PR": "XPRA", "BD": "XBUD", "WA": "XWAR", "IS": "XIST",
    "KS": "XKRX", "KQ": "XKRX", "TW": "XTAI", "TWO": "XTAI", "SI": "XSES", "KL": "XKLS",
    "BK": "XBKK", "JK": "XIDX", "NS": "XBOM", "BO": "XBOM", "NZ": "XNZE", "TA": "XTAE",
    "SR": "XSAU", "JO": "XJSE", "SA": "BVMF", "MX": "XMEX", "BA": "XBUE", "SN": "XSGO",
    "CBT": "CMES", "CME": "CMES", "CMX": "CMES", "NYM": "CMES", "NYB": "ICEUS",
}
#: Yahoo's index tickers with a known exchange.
INDICES = {
    "^GSPC": "XNYS", "^DJI": "XNYS", "^IXIC": "XNYS", "^NDX": "XNYS", "^RUT": "XNYS",
    "^VIX": "XNYS", "^NYA": "XNYS", "^HSI": "XHKG", "^N225": "XTKS", "^FTSE": "XLON",
    "^GDAXI": "XETR", "^FCHI": "XPAR", "^STOXX50E": "XETR", "^AEX": "XAMS", "^SSMI": "XSWX",
    "^KS11": "XKRX", "^TWII": "XTAI", "^AXJO": "XASX", "^BSESN": "XBOM", "^NSEI": "XBOM",
    "^GSPTSE": "XTSE", "^STI": "XSES", "^SSEC": "XSHG", "^BVSP": "BVMF", "^MXX": "XMEX",
}
#: A ticker without a suffix (AAPL, BRK-B) trades in New York.
DEFAULT = "XNYS"
#: The first day a calendar is asked from when it sets no bound of its own (XNYS, XLON):
#: far enough back for any daily history a vendor serves. XSHG starts at its own bound,
#: 1990-12-03; XTKS at 1997.
FIRST = "1900-01-01"
_CRYPTO = ("-USD", "-USDT", "-USDC", "-EUR", "-BTC", "-ETH")


def calendar_for(symbol: str, override: str | None = None) -> str | None:
    """Return the exchange_calendars name of the calendar ``symbol`` trades on, or None when
    its form names no exchange kdist knows a calendar of (a suffix not in :data:`SUFFIXES`,
    an index not in :data:`INDICES`): a check then says so rather than guess.

    ``override`` (a calendar name) wins: a provider whose symbols say nothing of their
    exchange, or a user who knows better. Crypto pairs (``BTC-USD``) trade every day
    (``24/7``), currency pairs (``EURUSD=X``) every weekday (``24/5``), futures (``ES=F``) on
    CME Globex's (``CMES``).

    Examples
    --------
    >>> calendar_for("600000.SH"), calendar_for("0700.HK"), calendar_for("AAPL")
    ('XSHG', 'XHKG', 'XNYS')
    >>> calendar_for("BTC-USD"), calendar_for("^N225"), calendar_for("ABC.XX") is None
    ('24/7', 'XTKS', True)
    """
    if override:
        return override
    upper = symbol.upper()
    if upper.startswith("^"):
        return INDICES.get(upper)
    if upper.endswith("=X"):
        return "24/5"
    if upper.endswith("=F"):
        return "CMES"
    if upper.endswith(_CRYPTO):
        return "24/7"
    head, dot, suffix = upper.rpartition(".")
    if not dot or not head:
        return DEFAULT
    return SUFFIXES.get(suffix)


@dataclass(frozen=True)
class Sessions:
    """The sessions of one calendar in a window, as far as the calendar knows them."""

    calendar: str
    #: Session dates (midnight, naive), sorted.
    days: pd.DatetimeIndex
    #: The calendar's last known session: days after it are not known to be sessions or not.
    known_until: pd.Timestamp
    #: Its first known session: days before it are not known either.
    known_from: pd.Timestamp = pd.Timestamp("1900-01-01")

    def unknown_after(self, end) -> bool:
        """Whether the window up to ``end`` reaches past what the calendar knows."""
        return pd.Timestamp(end) > self.known_until


@dataclass(frozen=True)
class _Own:
    """A calendar that is not exchange_calendars': its sessions and their hours."""

    days: Callable[[pd.Timestamp, pd.Timestamp], pd.DatetimeIndex]
    hours: tuple[tuple[str, str], ...]
    first: pd.Timestamp
    last: pd.Timestamp


_OWN: dict[str, _Own] = {}


def register(name: str, days, *, hours=(("09:30", "11:30"), ("13:00", "15:00")),
             first="1990-01-01", last="2100-12-31"):
    """Register a calendar of one's own: ``days(start, end)`` returns its sessions (midnight
    Timestamps) in that window, ``hours`` the local (open, close) of each part of a session,
    ``first``/``last`` the range it knows."""
    _OWN[name] = _Own(days, tuple(hours), pd.Timestamp(first), pd.Timestamp(last))


@contextlib.contextmanager
def _quiet():
    """exchange_calendars 4.13 uses pandas APIs that pandas 3.1 deprecates (``Series.values``
    of tz-aware dates): its warnings are not the user's to act on."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield


@functools.cache
def _calendar(name: str):
    try:
        import exchange_calendars as xcals
    except ImportError as exc:  # a dependency of kdist: only a broken install lacks it
        raise MissingDependencyError(
            "exchange_calendars is missing: pip install exchange-calendars",
            name="exchange_calendars",
        ) from exc
    if name not in xcals.get_calendar_names():
        raise UsageError(f"Unknown trading calendar {name!r}: use one exchange_calendars "
                         "knows, e.g. XSHG, XNYS, XHKG, XLON, XTKS")
    # As far back as the calendar records: by default it would start 20 years ago.
    with _quiet():
        return xcals.get_calendar(name, start=xcals.get_calendar(name).bound_min() or FIRST)


def sessions(calendar: str, start, end) -> Sessions:
    """The sessions of ``calendar`` from ``start`` to ``end`` (dates, inclusive), clipped to
    what the calendar knows; ``known_until`` says where its knowledge ends."""
    own = _OWN.get(calendar)
    cal = None if own else _calendar(calendar)
    if own:
        first, last = own.first, own.last
    else:
        first, last = pd.Timestamp(cal.first_session), pd.Timestamp(cal.last_session)
    lo, hi = max(pd.Timestamp(start).normalize(), first), min(pd.Timestamp(end).normalize(), last)
    if lo > hi:
        days = pd.DatetimeIndex([], dtype="datetime64[ns]")
    elif own:
        days = pd.DatetimeIndex(own.days(lo, hi))
    else:
        with _quiet():
            days = pd.DatetimeIndex(cal.sessions_in_range(lo, hi))
        days = days.tz_localize(None) if days.tz is not None else days
    return Sessions(calendar, days, last, first)


def _parts(calendar: str, days: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each trading part of the sessions ``days`` (a session with a lunch break has two):
    its session, local open and local close, as datetime64[s] arrays."""
    own = _OWN.get(calendar)
    if own:
        day = np.asarray(days, "datetime64[s]")
        bounds = [(pd.Timedelta(a + ":00"), pd.Timedelta(b + ":00")) for a, b in own.hours]
        opens = [day + np.timedelta64(a) for a, _ in bounds]
        closes = [day + np.timedelta64(b) for _, b in bounds]
        session = np.concatenate([day] * len(bounds))
        return session, np.concatenate(opens), np.concatenate(closes)
    cal = _calendar(calendar)
    with _quiet():
        frame = cal.schedule.loc[days.min():days.max()] if len(days) else cal.schedule.iloc[:0]
    frame = frame[frame.index.isin(days)]

    def local(column):
        return np.asarray(frame[column].dt.tz_convert(cal.tz).dt.tz_localize(None),
                          "datetime64[s]")

    day = np.asarray(frame.index.tz_localize(None) if frame.index.tz else frame.index,
                     "datetime64[s]")
    opens, closes = local("open"), local("close")
    if frame["break_start"].notna().any():
        broken = frame["break_start"].notna().to_numpy()
        starts, ends = local("break_start"), local("break_end")
        # Morning: open to the break; afternoon: the break's end to the close.
        session = np.concatenate([day, day[broken]])
        closes = np.concatenate([np.where(broken, starts, closes), closes[broken]])
        opens = np.concatenate([opens, ends[broken]])
        return session, opens, closes
    return day, opens, closes


def opens(calendar: str, days: pd.DatetimeIndex) -> np.ndarray:
    """The local open of each session of ``days`` (datetime64[s], sorted)."""
    session, starts, _ = _parts(calendar, days)
    first = pd.Series(starts).groupby(session).min()
    return np.asarray(first.sort_index(), "datetime64[s]")


def bar_stamps(calendar: str, days: pd.DatetimeIndex, minutes: int,
               bar_time: str = "end") -> pd.DataFrame:
    """The stamps of the ``minutes``-long bars of sessions ``days``: columns ``day`` and
    ``ts`` (exchange-local, tz-naive, datetime64[s]), sorted.

    Each part of a session (the morning and the afternoon of one with a lunch break) is cut
    into bars of ``minutes`` from its open, a last bar shorter when the part is not a
    multiple (New York's 60m bars end 16:00 with a 30-minute bar; Hong Kong's morning ends
    with 11:30-12:00, and its afternoon starts again at 13:00, as Yahoo's hourly bars do).
    Each bar is stamped at its ``"end"`` (09:31 is the first A-share 1-minute bar) or its
    ``"start"`` (09:30). A-share mornings are a multiple of every freq up to 60 minutes.
    """
    if bar_time not in ("end", "start"):
        raise UsageError(f"bar_time must be 'end' or 'start', not {bar_time!r}")
    session, opens, closes = _parts(calendar, days)
    order = np.lexsort((opens, session))
    session, opens, closes = session[order], opens[order], closes[order]
    lengths = ((closes - opens) // np.timedelta64(1, "m")).astype(np.int64)
    lengths = np.maximum(lengths, 0)
    total = int(lengths.sum())
    part = np.repeat(np.arange(len(lengths)), lengths)
    within = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    minute = opens[part] + within * np.timedelta64(60, "s")  # each minute's start
    day = session[part]
    last_of_part = within == lengths[part] - 1
    if bar_time == "start":
        keep = within % minutes == 0
        ts = minute[keep]
    else:
        keep = (within % minutes == minutes - 1) | last_of_part
        ts = minute[keep] + np.timedelta64(60, "s")
    return pd.DataFrame({"day": day[keep].astype("datetime64[s]"),
                         "ts": ts.astype("datetime64[s]")})
