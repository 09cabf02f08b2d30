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

``exchange_calendars`` is imported on first use: ``import kdist`` stays light.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from dataclasses import dataclass

import pandas as pd

from .errors import MissingDependencyError, UsageError

__all__ = ["SUFFIXES", "Sessions", "calendar_for", "sessions"]

#: Calendar of each symbol suffix (A-share and Yahoo forms).
SUFFIXES = {
    "SH": "XSHG", "SZ": "XSHG", "BJ": "XSHG", "SS": "XSHG",
    "HK": "XHKG", "L": "XLON", "T": "XTKS", "TO": "XTSE", "V": "XTSE", "AX": "XASX",
    "DE": "XFRA", "F": "XFRA", "PA": "XPAR", "AS": "XAMS", "BR": "XBRU", "MI": "XMIL",
    "MC": "XMAD", "SW": "XSWX", "ST": "XSTO", "OL": "XOSL", "CO": "XCSE", "HE": "XHEL",
    "KS": "XKRX", "KQ": "XKRX", "TW": "XTAI", "SI": "XSES", "NS": "XBOM", "BO": "XBOM",
    "SA": "BVMF", "MX": "XMEX", "JO": "XJSE", "NZ": "XNZE", "IS": "XIST", "WA": "XWAR",
}
#: A ticker without a suffix (AAPL, BRK-B) trades in New York.
DEFAULT = "XNYS"
#: The first day a calendar is asked from when it sets no bound of its own (XSHG starts
#: at its own, 1990-12-03; XHKG's is 1960).
FIRST = "1990-01-01"


def calendar_for(symbol: str, override: str | None = None) -> str:
    """Return the exchange_calendars name of the calendar ``symbol`` trades on.

    ``override`` (a calendar name) wins: a provider whose symbols say nothing of their
    exchange, or a user who knows better.

    Examples
    --------
    >>> calendar_for("600000.SH"), calendar_for("0700.HK"), calendar_for("AAPL")
    ('XSHG', 'XHKG', 'XNYS')
    """
    if override:
        return override
    head, dot, suffix = symbol.rpartition(".")
    if not dot or not head:
        return DEFAULT
    return SUFFIXES.get(suffix.upper(), DEFAULT)


@dataclass(frozen=True)
class Sessions:
    """The sessions of one calendar in a window, as far as the calendar knows them."""

    calendar: str
    #: Session dates (midnight, naive), sorted.
    days: pd.DatetimeIndex
    #: The calendar's last known session: days after it are not known to be sessions or not.
    known_until: pd.Timestamp

    def unknown_after(self, end) -> bool:
        """Whether the window up to ``end`` reaches past what the calendar knows."""
        return pd.Timestamp(end) > self.known_until


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
        raise UsageError(f"Unknown trading calendar {name!r}; exchange_calendars knows e.g. "
                         "XSHG, XNYS, XHKG, XLON, XTKS")
    # As far back as the calendar records: by default it would start 20 years ago.
    with _quiet():
        return xcals.get_calendar(name, start=xcals.get_calendar(name).bound_min() or FIRST)


def sessions(calendar: str, start, end) -> Sessions:
    """The sessions of ``calendar`` from ``start`` to ``end`` (dates, inclusive), clipped to
    what the calendar knows; ``known_until`` says where its knowledge ends."""
    cal = _calendar(calendar)
    first, last = pd.Timestamp(cal.first_session), pd.Timestamp(cal.last_session)
    lo, hi = max(pd.Timestamp(start).normalize(), first), min(pd.Timestamp(end).normalize(), last)
    if lo > hi:
        days = pd.DatetimeIndex([], dtype="datetime64[ns]")
    else:
        with _quiet():
            days = pd.DatetimeIndex(cal.sessions_in_range(lo, hi))
        days = days.tz_localize(None) if days.tz is not None else days
    return Sessions(calendar, days, last)
