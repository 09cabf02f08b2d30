"""An offline, deterministic provider: realistic-looking bars for any symbol, no network.

The bar of ``(symbol, ts)`` depends only on ``(symbol, ts, seed)``, so any sub-range,
chunking, order or machine produces identical values. The log price is a random walk with
two steps per calendar day (session open to close, close to the next open), cut into blocks
of 128 days and pinned at each block's start to a value-noise level of periods 128 days to
5.6 years: a block's walk is a Brownian bridge between its two pins, so any window costs one
hash per step of the blocks it touches, not a walk from some epoch. Intraday bars bridge
each day's open to its close in steps of the bar length. High, low and volume come from one
more hash per bar. Everything is vectorised numpy; most of a 10-year call is the fixed cost
of building the DataFrame (see docs/performance.md#synthetic-provider).

The calendar is every weekday except a fixed list of holidays (1 January, 1 May, 1-3
October); intraday bars follow the A-share sessions 09:30-11:30 and 13:00-15:00, stamped at
the end of each bar. Weekly and monthly bars aggregate the daily bars and are stamped on
the last trading day of their week or month.

Corporate actions (option ``actions``, on by default) come from hashes of ``(symbol, seed)``
alone, one to three slots a year from 1991 (1990-01-01 is the synthetic listing) to 2100, each
on a trading day of its season: a cash dividend most years (a yield of 0.5-4 %), bonus or
transfer shares every several years (10送1 to 10转10), a 2-for-1 split once in a few decades
and, rarely, a rights issue priced below the market. Raw bars gap at ex-dates as real ones
do: ``raw(t) = path(t) * G(t) / trend(t)``. ``G`` is the running product of the events' gaps,
each the reference price over the close before (:func:`kdist.actions.reference_price`) worked
out from the hashed yield, shares and discount, never from a price, so raw bars need no walk
from 1990. ``trend`` is ``G`` smoothed: each gap spread over a ramp of one to four years
around its ex-date, taken at the block pins, so prices rise between gaps (by at most 8 % a
year) and keep their level over the decades. Intraday bars of an ex-date gap with their day;
weekly and monthly bars aggregate the gapped daily bars.

What the vendor reports: its factor is the raw bars' own gaps, ``F(t) = 1 / G(t)``, so hfq
bars are the walk itself; the cash dividend is the yield times the raw close before the
ex-date, rounded to 0.01 per 10 shares (the rights price to 0.01), so the ex-rights formula
(:func:`kdist.actions.hfq_factors`) gives the vendor's factor from the reported figures to
within their rounding, as a real vendor's does. :meth:`SyntheticProvider.actions` returns
the ex-dates from the one in force at the window's start to its end with their factors, and
the figures of those in the window (the one before comes with its factor alone): the factors
cost a few hashes a year, the figures the walk's block before each ex-date of the window.
qfq and hfq bars are the raw bars adjusted by those factors
(:func:`kdist.actions.adjust_prices`) and rounded to 0.01, qfq anchored at the latest
ex-date up to the request's end; volume and amount stay raw, and weekly and monthly bars are
built from the adjusted daily bars, as vendors build theirs. With ``actions=False`` there
are no events, the bars are those of the path alone (as before actions existed), and qfq and
hfq equal raw.

Options simulate the network for tests and benchmarks: ``latency``/``jitter`` (seconds per
call; ``latency_dist="pareto"`` draws heavy-tailed delays of mean ``latency`` instead,
deterministic per symbol and call), ``slow_worker``/``slow_factor`` (calls on the named Dask
workers take that many times as long: a straggler), ``fail`` (symbols that raise a permanent
error), ``empty`` (symbols with no bars), ``flaky`` (probability of a transient error per
call, deterministic from the seed and the call count), ``hang`` (symbols whose call never
answers), ``crash`` (symbols whose call kills the process, as a dying worker would) and
``call_log`` (a file that gets one line per call, ``SYMBOL START END``, to prove what was
fetched). Corporate actions are served without a simulated network: only ``fail`` (raises)
and ``empty`` (no events) apply to them.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import math
import os
import random
import sys
import threading
import time
import zlib
from typing import NamedTuple

import numpy as np
import pandas as pd

from .. import calendars, ticks
from ..actions import COLUMNS as ACTION_COLUMNS
from ..actions import adjust_prices, empty_actions
from ..bars import WEEK_EPOCH, resample
from ..errors import InvalidOptionError, PermanentProviderError, TransientProviderError
from ..schema import Adjust, Freq, once_per_value, parse_symbols, to_date
from .base import Option, Provider

__all__ = ["SyntheticProvider"]

_EPOCH = np.datetime64("1990-01-01", "D")
_HOLIDAYS = ("01-01", "05-01", "10-01", "10-02", "10-03")
_COLUMNS = ["ts", "open", "high", "low", "close", "volume", "amount"]

#: Calendar days per bridge block; a window costs 2 hashes per day of the blocks it touches.
_BLOCK = 128
_SIGMA = 0.011  # daily log-price volatility, close to close
_SIGMA_DAY = 0.009  # open to close; the overnight step makes up the rest
_SIGMA_NIGHT = math.sqrt(_SIGMA**2 - _SIGMA_DAY**2)
# A uniform draw in [-1, 1) has standard deviation 1/sqrt(3).
_STEP_SCALE = np.tile([_SIGMA_DAY, _SIGMA_NIGHT], _BLOCK) * math.sqrt(3.0)
_RAMP = np.arange(2 * _BLOCK) / (2 * _BLOCK)
#: Value-noise octaves of the block pins: periods of 1, 2, 4, 8 and 16 blocks (128 days to
#: 5.6 years), amplitude growing with the square root of the period, like a random walk.
_PIN_OCTAVES = np.arange(5, dtype=np.int64)
_PIN_AMPLITUDE = _SIGMA * np.sqrt(_BLOCK * 2.0**_PIN_OCTAVES)
#: Hash streams: independent values for steps, pins, bar noise, (per bar length) intraday,
#: latency and corporate actions.
_STEPS, _PINS, _NOISE, _INTRADAY, _INTRADAY_NOISE, _LATENCY, _ACTIONS = 1, 2, 3, 4, 5, 6, 7
_M64 = 0xFFFFFFFFFFFFFFFF
_PARETO_SHAPE = 1.5
_PARETO_CAP = 100.0  # at most this many times the mean latency


_CACHED = (np.datetime64("1990-01-01", "D"), np.datetime64("2100-12-31", "D"))

#: Corporate actions: years with events (1990 is the listing year), and three slots a year in
#: seasons that never overlap, so a symbol's ex-dates are sorted by slot and never share a
#: day: a rights issue in spring, the annual dividend and bonus shares in summer, a split in
#: autumn. A season is (its first month, its length in days).
_YEARS = np.arange(1991, 2101)
_SEASONS = ((3, 50), (5, 100), (10, 60))
_SLOTS = len(_SEASONS)
_CASH_ODDS, _BONUS_ODDS, _RIGHTS_ODDS, _SPLIT_ODDS = 0.8, 0.1, 1 / 50, 1 / 40
_YIELD = (0.005, 0.035)  # cash yield: 0.5 % plus up to 3.5 % times a squared uniform
_BONUS = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 1.0])  # per share: 10送1 .. 10转10
_RIGHTS = np.array([0.1, 0.2, 0.3])  # per share: 10配1 .. 10配3
_DISCOUNT = (0.6, 0.25)  # rights price: 60-85 % of the close before the ex-date
_SPLIT = 2.0
#: The trend spreads each gap over a ramp of +-W days around its ex-date, W = |log gap| /
#: (2 _DRIFT) within _HALF_WIDTH: a ramp lifts the price by at most _DRIFT a year (a split's
#: over 8 years, a dividend's over 2), and the raw price keeps its level over the decades
#: however many shares the events create.
_DRIFT = 0.08 / 365.25
_HALF_WIDTH = (365.0, 1461.0)
#: Years either side of a trend knot whose ramps may be partly done; empty years pad the slot
#: table by _PAD on both sides, so a knot in any year finds its neighbours.
_REACH = 4
_PAD = 2 * _REACH + 1
_FAR = 1 << 40  # days of the padding slots: before and after everything


@functools.cache
def _calendar() -> np.busdaycalendar:
    holidays = [f"{y}-{md}" for y in range(1990, 2101) for md in _HOLIDAYS]
    return np.busdaycalendar(holidays=np.array(holidays, "datetime64[D]"))


@functools.cache
def _all_trading_days() -> np.ndarray:
    return _compute_trading_days(*_CACHED)


def _compute_trading_days(first: np.datetime64, last: np.datetime64) -> np.ndarray:
    days = np.arange(first, last + 1, dtype="datetime64[D]")
    return days[np.is_busday(days, busdaycal=_calendar())]


def _trading_days(first: np.datetime64, last: np.datetime64) -> np.ndarray:
    if first < _CACHED[0] or last > _CACHED[1]:
        return _compute_trading_days(first, last)
    every = _all_trading_days()  # a slice of the cached calendar: no per-call day arithmetic
    return every[np.searchsorted(every, first) : np.searchsorted(every, last, side="right")]


def _sessions(lo: pd.Timestamp, hi: pd.Timestamp) -> pd.DatetimeIndex:
    """The synthetic calendar's sessions from ``lo`` to ``hi`` (dates, inclusive)."""
    days = _trading_days(np.datetime64(lo.date(), "D"), np.datetime64(hi.date(), "D"))
    return pd.DatetimeIndex(days.astype("datetime64[ns]"))


#: Stock boards past the first 19,999 codes of ``list_symbols``: (first code, end, exchange):
#: ChiNext, STAR and the Beijing exchange's ranges.
_MORE_BOARDS = ((300000, 310000, "SZ"), (688000, 690000, "SH"), (830000, 840000, "BJ"),
                (870000, 880000, "BJ"), (430000, 440000, "BJ"), (920000, 930000, "BJ"))
#: The largest ``universe`` whose codes are all stocks.
MAX_UNIVERSE = 19_999 + sum(hi - lo for lo, hi, _ in _MORE_BOARDS)

#: The calendar of synthetic bars (weekdays less the fixed holidays, A-share hours), by which
#: ``kdist check --gaps`` checks them: it is not an exchange's.
CALENDAR = "SYNTHETIC"
calendars.register(CALENDAR, _sessions, first="1990-01-01", last="2100-12-31")


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a well-spread uint64 hash of uint64 input, vectorised."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def _mix_int(x: int) -> int:
    """:func:`_mix` of one Python int (no numpy scalar overhead)."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


#: Keys from which :func:`_mixed` hashes with numpy: below, plain ints cost less.
_NUMPY_KEYS = 32


def _mixed(keys: np.ndarray, xor: int = 0) -> np.ndarray:
    """:func:`_mix` of each of ``keys`` xor ``xor``, as uint64: plain ints for a few keys,
    numpy for a chunk's (the same values; 5,000 keys in Python took 5 ms a call)."""
    if len(keys) >= _NUMPY_KEYS:
        return _mix(np.asarray(keys, np.uint64) ^ np.uint64(xor))
    return np.array([_mix_int(int(key) ^ xor) for key in keys], np.uint64)


def _salts(keys: np.ndarray, stream: int) -> np.ndarray:
    """A well-spread per-(symbol, seed, stream) offset, one per key, shaped ``(n, 1)``:
    streams never share hash inputs."""
    return _mixed(keys, _mix_int(stream))[:, None]


def _hash(salt: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Hash of ``salt + index`` for int64 indices (negative ones wrap, still unique)."""
    with np.errstate(over="ignore"):
        return _mix(index.astype(np.uint64) + salt)


def _unit(bits: np.ndarray) -> np.ndarray:
    """uint64 hash to a float in [-1, 1)."""
    return (bits >> np.uint64(11)).astype(np.float64) * (2.0**-52) - 1.0


def _seed_half(seed: int) -> int:
    """The high 32 bits of every symbol key of ``seed``."""
    return zlib.crc32(f"{seed}".encode()) << 32


def _symbol_key(symbol: str, seed: int) -> int:
    return zlib.crc32(symbol.encode()) | _seed_half(seed)


def _dates(values) -> np.ndarray:
    """Each of ``values`` as :func:`to_date` makes it, as ``datetime64[us]``: each distinct
    value converted once (a batch's symbols share a few starts; 15 ms for 5,000 otherwise)."""
    day = once_per_value(lambda value: to_date(value).to_datetime64())
    return np.array([day(value) for value in values], "datetime64[us]")


def _symbol_keys(symbols, seed: int) -> np.ndarray:
    """:func:`_symbol_key` of each of ``symbols``, the seed's half hashed once."""
    high = _seed_half(seed)
    return np.array([zlib.crc32(symbol.encode()) | high for symbol in symbols], np.uint64)


# Every generator below works on ``n`` symbols at once: ``keys`` holds one uint64 key per
# symbol and results have one row per symbol, so a batch costs little more than one symbol.


def _pins(keys: np.ndarray, blocks: np.ndarray) -> np.ndarray:
    """Log price at the start of each block: value noise over the block index, ``(n, b)``."""
    salt = _salts(keys, _PINS)[:, :, None]
    knot = blocks[:, None] >> _PIN_OCTAVES  # floor division by 2**octave, negatives too
    frac = (blocks[:, None] - (knot << _PIN_OCTAVES)) / (2.0**_PIN_OCTAVES)
    left = _unit(_hash(salt, knot * 8 + _PIN_OCTAVES))
    right = _unit(_hash(salt, (knot + 1) * 8 + _PIN_OCTAVES))
    level = (left + (right - left) * frac) * _PIN_AMPLITUDE
    total = level[..., 0].copy()
    for octave in range(1, len(_PIN_OCTAVES)):  # column by column: the same sum in any window
        total += level[..., octave]
    return total


def _bridge(keys: np.ndarray, blocks: np.ndarray, pins: np.ndarray, ends: np.ndarray):
    """Log price at the session open and close of every day of ``blocks``, ``(n, b, 2 *
    _BLOCK)``: each block's walk from its pin, bent to end on the next block's (``ends``).

    Every value is a function of its block alone, so any set of blocks gives the same.
    """
    n, nb = len(keys), len(blocks)
    points = (blocks[:, None] * (2 * _BLOCK) + np.arange(2 * _BLOCK)).ravel()
    steps = _unit(_hash(_salts(keys, _STEPS), points)).reshape(n, nb, 2 * _BLOCK)
    walk = np.cumsum(steps * _STEP_SCALE, axis=2)
    # Brownian bridge: bend each block's walk linearly so it ends on the next block's pin.
    miss = walk[:, :, -1] - (ends - pins)
    walk = np.concatenate([np.zeros((n, nb, 1)), walk[:, :, :-1]], axis=2)
    return pins[:, :, None] + walk - miss[:, :, None] * _RAMP


def _skeleton(keys: np.ndarray, d0: int, d1: int, events: _Events | None = None) -> np.ndarray:
    """Log price at the session open and close of calendar days ``d0..d1`` (days since 1990),
    as rows ``[open d0, close d0, open d0+1, close d0+1, ...]``, one per key; with
    ``events``, less the trend (the gaps are added per day by :func:`_gaps`).

    Whole blocks are always computed, so a day's value never depends on the window.
    """
    b0, b1 = d0 // _BLOCK, d1 // _BLOCK
    blocks = np.arange(b0, b1 + 2, dtype=np.int64)
    pins = _pins(keys, blocks)
    if events is not None:
        # Pinning the trend bends each block's bridge along it: a piecewise linear drift.
        pins = pins - _trend(events, blocks)
    log = _bridge(keys, blocks[:-1], pins[:, :-1], pins[:, 1:])
    first = 2 * (d0 - _BLOCK * b0)
    return log.reshape(len(keys), -1)[:, first : first + 2 * (d1 - d0 + 1)]


class _Events(NamedTuple):
    """Every corporate action of ``n`` symbols, ``(n, slots)`` arrays: ``_SLOTS`` slots a year
    for ``_YEARS`` padded by ``_PAD`` empty years either side, sorted by ``day``."""

    day: np.ndarray  # ex-date, days since 1990 (a trading day; +-_FAR in the padding)
    gap: np.ndarray  # log of the raw price's multiplier at the ex-date (0: no event)
    cum: np.ndarray  # running sum of gap, one more column: cum[:, k] sums the first k slots
    yield_: np.ndarray  # cash dividend over the close before the ex-date
    bonus: np.ndarray
    rights: np.ndarray
    discount: np.ndarray  # rights price over the close before the ex-date
    split: np.ndarray


@functools.cache
def _next_trading_day() -> np.ndarray:
    """The first trading day on or after each day of the cached calendar, days since 1990."""
    every = (_all_trading_days() - _EPOCH).astype(np.int64)
    return every[np.searchsorted(every, np.arange((_CACHED[1] - _EPOCH).astype(np.int64)))]


@functools.cache
def _season_starts() -> np.ndarray:
    """The first day of each season of each of ``_YEARS``, days since 1990, ``(years, slots)``."""
    months = (_YEARS - 1970).astype("datetime64[Y]").astype("datetime64[M]")[:, None]
    firsts = np.array([month - 1 for month, _ in _SEASONS])
    return ((months + firsts).astype("datetime64[D]") - _EPOCH).astype(np.int64)


def _events(keys: np.ndarray, through: int | None = None) -> _Events:
    """The corporate actions of ``n`` symbols from 1991 to 2100 (or to the year
    ``through``: a year's events depend on nothing later), from hashes alone (no price).

    Twelve uniforms a year: whether and how much of each event, and each season's day.
    """
    every = _YEARS if through is None else _YEARS[_YEARS <= through]
    n, years = len(keys), len(every)
    index = (every[:, None] * _SLOTS + np.arange(_SLOTS)).ravel()
    u = [q.reshape(n, years, _SLOTS) for q in _noise(keys, _ACTIONS, index)]
    shape, real = (n, years + 2 * _PAD, _SLOTS), slice(_PAD, _PAD + years)
    yield_, bonus, rights, discount, gap = (np.zeros(shape) for _ in range(5))
    split = np.ones(shape)
    # Spring (slot 0): a rights issue below the market, rarely.
    r = rights[:, real, 0] = np.where(u[1][..., 1] < _RIGHTS_ODDS,
                                      _RIGHTS[(u[2][..., 1] * len(_RIGHTS)).astype(np.intp)], 0.0)
    d = discount[:, real, 0] = _DISCOUNT[0] + _DISCOUNT[1] * u[3][..., 1]
    # Summer (slot 1): the annual cash dividend, now and then with bonus shares.
    y = yield_[:, real, 1] = np.where(u[0][..., 0] < _CASH_ODDS,
                                      _YIELD[0] + _YIELD[1] * u[1][..., 0] ** 2, 0.0)
    b = bonus[:, real, 1] = np.where(u[2][..., 0] < _BONUS_ODDS,
                                     _BONUS[(u[3][..., 0] * len(_BONUS)).astype(np.intp)], 0.0)
    # Autumn (slot 2): a split, once in a few decades.
    s = split[:, real, 2] = np.where(u[0][..., 1] < _SPLIT_ODDS, _SPLIT, 1.0)
    # The gap is what the reference price makes of the close before it: ref / close(e-1).
    gap[:, real, 0] = np.log1p(d * r) - np.log1p(r)
    gap[:, real, 1] = np.log1p(-y) - np.log1p(b)
    gap[:, real, 2] = -np.log(s)
    # Each season's day, moved on to a trading day: a season ends before the next begins.
    length = np.array([days for _, days in _SEASONS])
    offset = np.stack([u[k][..., 2] for k in range(_SLOTS)], axis=-1) * length
    day = np.full(shape, -_FAR, np.int64)  # padding: before every day, or after
    day[:, _PAD + years:] = _FAR
    day[:, real] = _next_trading_day()[_season_starts()[:years] + offset.astype(np.int64)]
    gap = gap.reshape(n, -1)
    cum = np.concatenate([np.zeros((n, 1)), np.cumsum(gap, axis=1)], axis=1)
    return _Events(day.reshape(n, -1), gap, cum,
                   *(x.reshape(n, -1) for x in (yield_, bonus, rights, discount, split)))


#: The last computed events, ``(through, sorted keys, their rows, events)``: a chunk's bars
#: and then its corporate actions (or an update's overlap and then its factors in force) ask
#: for the same symbols' events, and the second call takes them from here.
_recent: list = []
_recent_lock = threading.Lock()
#: The most :func:`_events_of` keeps: 5,000 symbols' events to 2030 (an update of scenario
#: E's store) take 53 MB.
_RECENT_BYTES = 64 * 2**20


def _events_of(keys: np.ndarray, through: int | None) -> _Events:
    """:func:`_events`, from the last call's when that covered ``keys`` to the same year."""
    with _recent_lock:
        last = _recent[0] if _recent and _recent[0][0] == through else None
    if last is not None and len(keys):
        _, known, rows, events = last
        at = np.minimum(np.searchsorted(known, keys), len(known) - 1)
        if (known[at] == keys).all():
            return _Events(*(x[rows[at]] for x in events))
    events = _events(keys, through)
    if sum(x.nbytes for x in events) > _RECENT_BYTES:
        return events  # not kept: a process holds no more than a chunk's worth
    for x in events:
        x.setflags(write=False)  # shared with the next caller
    order = np.argsort(keys, kind="stable")
    with _recent_lock:
        _recent[:] = [(through, keys[order], order, events)]
    return events


def _events_through(last: np.datetime64) -> int | None:
    """The last year of events that bars up to day ``last`` depend on (None: every year).

    A day's trend takes the ramps of events up to ``_REACH`` years after it, and the walk
    is computed in whole blocks from the one after ``last``'s (:func:`_skeleton`): events
    of later years change nothing before ``last``, and an update of a few days need not
    compute a century of them (see docs/performance.md#updates)."""
    year = int(last.astype("datetime64[Y]").astype(np.int64)) + 1970
    through = year + 1 + _REACH + 1
    return None if through >= _YEARS[-1] else through


def _trend(events: _Events, blocks: np.ndarray) -> np.ndarray:
    """Log of the trend at the start of each block, ``(n, b)``: the sum of every gap times
    its ramp, 0 until W days before the ex-date and 1 from W days after it on.

    Gaps of more than ``_REACH`` years ago count whole (a running sum over all slots) and
    later ones by their ramps, added one by one: the same sum whatever the window.
    """
    t = blocks * _BLOCK
    year = (_EPOCH + t).astype("datetime64[Y]").astype(np.int64) + 1970
    # Before the first ramp starts the trend is 0, after the last ends it is the whole sum.
    year = np.clip(year, _YEARS[0] - _REACH - 1, _YEARS[-1] + _REACH + 1)
    first = (year - _REACH - (_YEARS[0] - _PAD)) * _SLOTS
    near = first[:, None] + np.arange((2 * _REACH + 1) * _SLOTS)
    gap, day = events.gap[:, near], events.day[:, near]
    half = np.clip(np.abs(gap) * (0.5 / _DRIFT), *_HALF_WIDTH)
    part = gap * np.clip((t[:, None] - day + half) / (2.0 * half), 0.0, 1.0)
    total = events.cum[:, first]
    for k in range(part.shape[-1]):
        total = total + part[..., k]
    return total


def _gaps(events: _Events, d: np.ndarray) -> np.ndarray:
    """Log of the product of the gaps of the ex-dates on or before each of days ``d`` (days
    since 1990, sorted), ``(n, len(d))``: the running sum of the slots counted so far, copied
    out run by run (never summed here, so a day's value never depends on the window)."""
    n, t = len(events.day), len(d)
    # Where each slot starts to count: the first of days d on or after its ex-date.
    lookup = np.searchsorted(d, np.arange(d[0], d[-1] + 2))
    pos = lookup[np.clip(events.day, d[0], d[-1] + 1) - d[0]]
    edges = np.concatenate([np.zeros((n, 1), np.intp), pos, np.full((n, 1), t)], axis=1)
    return np.repeat(events.cum.ravel(), np.diff(edges, axis=1).ravel()).reshape(n, t)


def _closes(keys: np.ndarray, events: _Events, d: np.ndarray) -> np.ndarray:
    """Raw daily closes of days ``d`` (days since 1990, sorted), ``(n, len(d))``, as
    :func:`_daily` makes them, from the blocks that hold those days only."""
    blocks = np.unique(d // _BLOCK)
    pins = _pins(keys, blocks) - _trend(events, blocks)
    ends = _pins(keys, blocks + 1) - _trend(events, blocks + 1)
    log = _bridge(keys, blocks, pins, ends).reshape(len(keys), -1)
    at = np.searchsorted(blocks, d // _BLOCK) * (2 * _BLOCK) + 2 * (d % _BLOCK) + 1
    return np.round(_base(keys) * np.exp(log[:, at] + _gaps(events, d)), 2)


#: Symbols' event plans kept per process (each about 2 KB), most recently used last.
_KEPT = 4096
_kept: collections.OrderedDict = collections.OrderedDict()
_kept_lock = threading.Lock()  # a worker's task threads share them
#: Symbols whose reported figures are computed together: the walk's blocks of a group's
#: event days are computed for every symbol of the group (memory grows with both).
_GROUP = 64


class _Plan(NamedTuple):
    """One symbol's corporate actions from 1991 to a year, from hashes alone (no price):
    the ex-dates (days since 1990), the hashed yield, bonus, rights, discount and split, and
    the vendor's cumulative hfq factor, ``exp`` of minus the running sum of the gaps: the
    raw bars gap by exactly those (:func:`_gaps`), so hfq bars are the walk itself."""

    day: np.ndarray
    yield_: np.ndarray
    bonus: np.ndarray
    rights: np.ndarray
    discount: np.ndarray
    split: np.ndarray
    factor: np.ndarray


def _plans(keys, last_year: int = 2100) -> list[_Plan]:
    """Each symbol's :class:`_Plan` up to ``last_year``, kept per process: a plan costs a
    few hashes a year, no walk."""
    wanted = [(int(key), last_year) for key in keys]
    with _kept_lock:
        missing = [w for w in dict.fromkeys(wanted) if w not in _kept]
    if missing:
        computed = _compute_plans(np.array([k for k, _ in missing], np.uint64), last_year)
        with _kept_lock:
            _kept.update(zip(missing, computed))
    with _kept_lock:
        found = []
        for w in wanted:
            _kept.move_to_end(w)
            found.append(_kept[w])
        while len(_kept) > _KEPT:
            _kept.popitem(last=False)
    return found


def _year_end(year: int) -> np.datetime64:
    return np.datetime64(f"{year}-12-31", "D")


def _happens(events: _Events, last_year: int) -> np.ndarray:
    """Which slots of ``events`` hold an action (not an empty slot) up to ``last_year``."""
    has = ((events.yield_ > 0) | (events.bonus > 0) | (events.rights > 0)
           | (events.split != 1.0))
    return has & (events.day < (np.datetime64(f"{last_year + 1}-01-01", "D")
                                - _EPOCH).astype(np.int64))


def _factors_only(ex_date: np.ndarray, factor: np.ndarray) -> dict[str, np.ndarray]:
    """An answer of ex-dates (days since 1990) with their factors and no event figures: the
    ones before a window, in force at its start."""
    n = len(ex_date)
    return {"ex_date": (_EPOCH + ex_date).astype("datetime64[us]"), "cash": np.zeros(n),
            "bonus": np.zeros(n), "rights": np.zeros(n), "rights_price": np.zeros(n),
            "split": np.ones(n), "factor": factor}


def _compute_plans(keys: np.ndarray, last_year: int) -> list[_Plan]:
    # The events the bars to the year's end took (a later year's are masked off): a chunk's
    # actions then find them computed.
    events = _events_of(keys, _events_through(_year_end(last_year)))
    has = _happens(events, last_year)
    # cum[:, k + 1] sums the gaps of slots up to k: the factor in force from slot k's day on.
    factor = np.exp(-events.cum[:, 1:])
    plans = []
    for i in range(len(keys)):
        at = has[i]
        columns = [x[i][at] for x in (events.day, events.yield_, events.bonus, events.rights,
                                       events.discount, events.split, factor)]
        for column in columns:
            column.setflags(write=False)  # kept: shared by every call
        plans.append(_Plan(*columns))
    return plans


def _in_force(keys: np.ndarray, start: np.datetime64, end: np.datetime64,
              last_year: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For the symbols without an ex-date from ``start`` to ``end``: what :func:`_reported`
    answers them, the ex-date in force at ``start`` with its factor (or nothing before it),
    computed for all of them together. Returns which symbols those are, those of them
    with an ex-date before ``start`` (their indices in ``keys``) and that ex-date's day and
    factor: each one's answer of one row (the others' answer has none)."""
    lo = (np.datetime64(start, "D") - _EPOCH).astype(np.int64)
    hi = (np.datetime64(end, "D") - _EPOCH).astype(np.int64)
    if lo > hi:  # an empty window: left to _reported, as any other answer
        none = np.zeros(0, np.intp)
        return np.zeros(len(keys), bool), none, none.astype(np.int64), none.astype(float)
    events = _events_of(keys, _events_through(np.datetime64(end, "D")))
    has = _happens(events, last_year)
    quiet = ~(has & (events.day >= lo) & (events.day <= hi)).any(axis=1)
    # The last ex-date before the window (days are sorted along the slots).
    before = np.where(has & (events.day < lo), np.arange(has.shape[1]), -1).max(axis=1)
    rows = np.flatnonzero(quiet & (before >= 0))
    k = before[rows]
    return quiet, rows, events.day[rows, k], np.exp(-events.cum[rows, k + 1])


def _reported(keys: np.ndarray, plans: list[_Plan], start: np.datetime64,
              end: np.datetime64) -> list[dict[str, np.ndarray]]:
    """Each symbol's corporate actions as the vendor reports them up to ``end``: the ex-dates
    from the one in force at ``start`` on, with their factors, and the figures of those in
    ``[start, end]``: the cash dividend
    and the rights price are the hashed yield and discount times the raw close before the
    ex-date, rounded as announced (0.01 per 10 shares, 0.01). Earlier ex-dates come with
    their factor alone, as baostock's factor series does (their figures were reported when
    they were asked for): a window costs the walk's blocks of its own ex-dates only.

    The factor is the vendor's own: the raw bars' gaps, which the reported (rounded) figures
    give to within their rounding by the ex-rights formula.
    """
    lo = (np.datetime64(start, "D") - _EPOCH).astype(np.int64)
    hi = (np.datetime64(end, "D") - _EPOCH).astype(np.int64)
    every = _all_trading_days()
    out = []
    for g in range(0, len(keys), _GROUP):
        group = list(range(g, min(g + _GROUP, len(keys))))
        inside = [(plans[i].day >= lo) & (plans[i].day <= hi) for i in group]
        days = [plans[i].day[m] for i, m in zip(group, inside)]
        before = [(every[np.searchsorted(every, _EPOCH + d) - 1] - _EPOCH).astype(np.int64)
                  for d in days]
        wanted = np.unique(np.concatenate(before)) if any(len(b) for b in before) else None
        if wanted is not None:
            sub = keys[group]
            closes = _closes(sub, _events_of(sub, _events_through(_EPOCH + hi)), wanted)
        for row, (i, m, b) in enumerate(zip(group, inside, before)):
            plan = plans[i]
            last = int(np.searchsorted(plan.day, hi, side="right"))
            # From the ex-date in force at the window's start: earlier factors adjust no bar
            # of the window, and an update's answer stays a row or two.
            first = max(int(np.searchsorted(plan.day, lo)) - 1, 0)
            m = m[:last]
            if not len(b):  # no ex-date in the window (an update's usual answer): factors only
                out.append(_factors_only(plan.day[first:last], plan.factor[first:last].copy()))
                continue
            close = closes[row, np.searchsorted(wanted, b)]
            cash, rights_price = np.zeros(last), np.zeros(last)
            y, d = plan.yield_[:last][m], plan.discount[:last][m]
            # At least 0.001: a dividend never rounds away (its gap is in the bars).
            cash[m] = np.where(y > 0, np.maximum(np.round(y * close, 3), 0.001), 0.0)
            rights_price[m] = np.where(plan.rights[:last][m] > 0, np.round(d * close, 2), 0.0)
            out.append({
                "ex_date": (_EPOCH + plan.day[first:last]).astype("datetime64[us]"),
                "cash": cash[first:],
                "bonus": np.where(m, plan.bonus[:last], 0.0)[first:],
                "rights": np.where(m, plan.rights[:last], 0.0)[first:],
                "rights_price": rights_price[first:],
                "split": np.where(m, plan.split[:last], 1.0)[first:],
                "factor": plan.factor[first:last].copy(),
            })
    return out


def _noise(keys: np.ndarray, stream: int, index: np.ndarray) -> tuple[np.ndarray, ...]:
    """Four independent uniforms in [0, 1) per key and index, from the 16-bit quarters of
    one hash."""
    bits = _hash(_salts(keys, stream), index)
    mask = np.uint64(0xFFFF)
    return tuple(
        ((bits >> np.uint64(16 * i)) & mask).astype(np.float64) * (1.0 / 65536) for i in range(4)
    )


def _base(keys: np.ndarray) -> np.ndarray:
    """Each symbol's price level, 5.00 to 99.99, shaped ``(n, 1)``."""
    return (5.0 + (_mixed(keys) % np.uint64(9500)) / 100.0)[:, None]


def _ohlcv(keys: np.ndarray, log_open, log_close, noise, scale: float):
    base = _base(keys)
    lots = ((2_000 + _mixed(keys, 7) % np.uint64(50_000)) * scale)[:, None]
    open_ = base * np.exp(log_open)
    close = base * np.exp(log_close)
    n_spread, n_high, n_low, n_volume = noise
    spread = (0.004 + 0.012 * math.sqrt(scale) * n_spread)
    high = np.round(np.maximum(open_, close) * (1 + spread * n_high), 2)
    low = np.round(np.minimum(open_, close) * (1 - spread * n_low), 2)
    open_, close = np.round(open_, 2), np.round(close, 2)
    volume = np.maximum(1.0, np.round(lots * np.exp(0.6 * (2 * n_volume - 1)))) * 100.0
    amount = np.round(volume * (open_ + high + low + close) / 4.0, 2)
    return open_, high, low, close, volume, amount


def _daily(keys: np.ndarray, days: np.ndarray, events: _Events | None = None):
    """Daily bars of the trading days ``days`` (datetime64[D], sorted, not empty); with
    ``events``, gapped at their ex-dates."""
    d = (days - _EPOCH).astype(np.int64)
    log = _skeleton(keys, int(d[0]), int(d[-1]), events)
    at = 2 * (d - d[0])
    log_open, log_close = log[:, at], log[:, at + 1]
    if events is not None:
        gaps = _gaps(events, d)
        log_open, log_close = log_open + gaps, log_close + gaps
    return _ohlcv(keys, log_open, log_close, _noise(keys, _NOISE, d), 1.0)


def _intraday(keys: np.ndarray, days: np.ndarray, minutes: int, events: _Events | None = None):
    """``minutes`` bars of the trading days ``days``: each day's open bridged to its close
    (gapped as the daily bar is, with ``events``)."""
    n = len(keys)
    d = (days - _EPOCH).astype(np.int64)
    log = _skeleton(keys, int(d[0]), int(d[-1]), events)
    at = 2 * (d - d[0])
    opens, closes = log[:, at, None], log[:, at + 1, None]
    if events is not None:
        gaps = _gaps(events, d)[:, :, None]
        opens, closes = opens + gaps, closes + gaps
    per_day = 240 // minutes
    index = d[:, None] * per_day + np.arange(per_day)
    steps = _unit(_hash(_salts(keys, _INTRADAY * 1000 + minutes)[:, :, None], index))
    walk = np.cumsum(steps * (_SIGMA_DAY * math.sqrt(3.0 / per_day)), axis=2)
    miss = walk[:, :, -1:] - (closes - opens)
    path = opens + walk - miss * (np.arange(1, per_day + 1) / per_day)
    path[:, :, -1] = closes[:, :, 0]  # exactly: the last bar closes where the daily bar does
    starts = np.concatenate([opens, path[:, :, :-1]], axis=2)
    noise = _noise(keys, _INTRADAY_NOISE * 1000 + minutes, index.ravel())
    return _ohlcv(keys, starts.reshape(n, -1), path.reshape(n, -1), noise, minutes / 240.0)


def _worker_name() -> str | None:
    """Name of the Dask worker this process runs, or None; never imports Dask."""
    worker = sys.modules.get("distributed.worker")
    if worker is None:
        return None
    try:
        return str(worker.get_worker().name)
    except ValueError:  # not a task thread (kdist calls providers from a helper thread)
        names = {str(w.name) for w in list(worker.Worker._instances)}
        return names.pop() if len(names) == 1 else None


class SyntheticProvider(Provider):
    """Deterministic offline bars for any symbol (the default provider)."""

    name = "synthetic"
    description = "Deterministic offline bars for any symbol; simulates latency and failures"
    calendar = CALENDAR
    horizons = {}  # generated: any date, any freq, forever
    options = {
        "seed": Option(int, 0, "changes every value, keeps the calendar"),
        "actions": Option(bool, True, "deterministic dividends, bonus shares and splits; false: "
                          "none, raw bars as before"),
        "latency": Option(float, 0.0, "seconds per call, a simulated network"),
        "jitter": Option(float, 0.0, "random +/- seconds added to latency"),
        "latency_dist": Option(
            str, "fixed", "'fixed' (latency +/- jitter) or 'pareto' (heavy-tailed, mean latency)"
        ),
        "slow_worker": Option(str, "", "comma-separated Dask worker names whose calls are slow"),
        "slow_factor": Option(float, 4.0, "how many times longer calls on a slow worker take",
                              positive=True),
        "fail": Option(str, "", "comma-separated symbols that raise a permanent error"),
        "empty": Option(str, "", "comma-separated symbols that have no bars"),
        "flaky": Option(float, 0.0, "probability of a transient error per call"),
        "universe": Option(int, 100, "how many symbols list_symbols() returns"),
        "call_log": Option(str, "", "append 'SYMBOL START END' per call to this file"),
        "hang": Option(str, "", "comma-separated symbols whose call never answers"),
        "crash": Option(str, "", "comma-separated symbols whose call kills the process"),
    }

    def __init__(self, **options):
        super().__init__(**options)
        if self.latency_dist not in ("fixed", "pareto"):
            raise InvalidOptionError(
                f"Option latency_dist={self.latency_dist!r} of provider 'synthetic': choose "
                "'fixed' or 'pareto'",
                option="latency_dist", value=self.latency_dist,
            )
        self._calls: dict[str, int] = {}
        # Same forms as everywhere else: "sh600000, 000001" names 600000.SH and 000001.SZ.
        self._fail = set(parse_symbols(self.fail)[0]) if self.fail else set()
        self._empty = set(parse_symbols(self.empty)[0]) if self.empty else set()
        self._hang = set(parse_symbols(self.hang)[0]) if self.hang else set()
        self._crash = set(parse_symbols(self.crash)[0]) if self.crash else set()
        self._slow = {s.strip() for s in self.slow_worker.split(",") if s.strip()}

    @property
    def remote(self) -> bool:
        """Only a simulated network or worker fault makes calls wait or kill their process:
        then even small jobs run on workers (see :attr:`Provider.remote`)."""
        return bool(self.latency or self.slow_worker or self.hang or self.crash)

    @property
    def serves_actions(self) -> bool:
        """Option ``actions``: without it, no events, and qfq and hfq bars are the raw ones."""
        return self.config["actions"]

    def _actions(self, symbol, start, end) -> pd.DataFrame:
        """The ex-dates from the one in force at ``start`` to ``end`` with their factors (a
        window's first bar needs the one in force), the figures of those in
        ``[start, end]`` (:func:`_reported`). No simulated network: only ``fail`` (raises) and ``empty`` (no
        events) apply."""
        if symbol in self._fail:
            raise PermanentProviderError(
                f"synthetic failure for {symbol} (option fail)", symbol=symbol
            )
        if symbol in self._empty:
            return empty_actions()
        keys = np.array([_symbol_key(symbol, self.seed)], np.uint64)
        [reported] = _reported(keys, _plans(keys, end.year), start.to_datetime64(),
                               end.to_datetime64())
        return pd.DataFrame(reported, copy=False)

    def actions_many(self, symbols, starts, end) -> pd.DataFrame | None:
        """Every symbol's actions in one call, computed together, as :meth:`actions` returns
        them; None (ask one by one) when a symbol is to fail."""
        if not self.serves_actions or any(symbol in self._fail for symbol in symbols):
            return None
        end = to_date(end)
        keys = _symbol_keys(symbols, self.seed)
        starts = _dates(starts)
        # Each answer's rows, with the index of its symbol: the quiet symbols' in bulk.
        whose, answers = [], []
        for start in np.unique(starts):  # an update's symbols may each start at their overlap
            at = np.flatnonzero(starts == start)
            # Most symbols of an update have no ex-date in its few days: their answer is the
            # one in force, found for all of them at once (see docs/performance.md#updates).
            quiet, rows, day, factor = _in_force(keys[at], start, end.to_datetime64(),
                                                 end.year)
            whose.append(at[rows])
            answers.append(_factors_only(day, factor))
            busy = at[~quiet]
            if len(busy):
                plans = _plans(keys[busy], end.year)
                for i, r in zip(busy, _reported(keys[busy], plans, start, end.to_datetime64())):
                    whose.append(np.full(len(r["ex_date"]), i, np.intp))
                    answers.append(r)
        whose = np.concatenate(whose) if whose else np.zeros(0, np.intp)
        # By symbol, each answer's rows in its order; a symbol to answer empty loses its rows.
        order = np.argsort(whose, kind="stable")
        if self._empty:
            gone = np.array([symbol in self._empty for symbol in symbols], bool)
            order = order[~gone[whose[order]]]
        frame = {name: np.concatenate([a[name] for a in answers])[order]
                 if answers else _factors_only(np.zeros(0, np.int64), np.zeros(0))[name]
                 for name in ACTION_COLUMNS}
        return pd.DataFrame({"symbol": np.asarray(symbols, object)[whose[order]], **frame})

    def list_symbols(self) -> list[str]:
        """``universe`` stock codes: 600000.SH, 000001.SZ, 600001.SH, ... alternating up to
        609999.SH and 009999.SZ; past those 19,999, the ChiNext, STAR and Beijing boards'
        codes (up to :data:`MAX_UNIVERSE`). Every one is a valid stock code."""
        if self.universe > MAX_UNIVERSE:
            raise InvalidOptionError(
                f"universe={self.universe}: the synthetic provider lists at most "
                f"{MAX_UNIVERSE:,} stock codes", option="universe")
        first = min(self.universe, 19_999)
        half = (first + 1) // 2
        sh = [f"{600000 + i:06d}.SH" for i in range(half)]
        sz = [f"{1 + i:06d}.SZ" for i in range(first - half)]
        codes = [s for pair in zip(sh, sz + [None]) for s in pair if s]
        for lo, hi, exchange in _MORE_BOARDS:
            if len(codes) >= self.universe:
                break
            codes += [f"{code:06d}.{exchange}"
                      for code in range(lo, min(hi, lo + self.universe - len(codes)))]
        return codes[: self.universe]

    def _delay(self, symbol: str, attempt: int) -> float:
        if self.latency_dist == "pareto":
            # Deterministic per (symbol, seed, call): two runs see the same stragglers.
            u = (_mix_int(_symbol_key(symbol, self.seed) ^ _mix_int(_LATENCY + attempt)) >> 11)
            u = u * 2.0**-53
            floor = self.latency * (_PARETO_SHAPE - 1) / _PARETO_SHAPE  # mean = latency
            return min(floor * (1.0 - u) ** (-1 / _PARETO_SHAPE), _PARETO_CAP * self.latency)
        return self.latency + (random.uniform(-self.jitter, self.jitter) if self.jitter else 0.0)

    def _simulate_network(self, symbol: str, start, end):
        attempt = self._calls.get(symbol, 0)
        self._calls[symbol] = attempt + 1
        if self.call_log:
            self._log_calls(f"{symbol} {to_date(start).date()} {to_date(end).date()}\n")
        if symbol in self._crash:
            os._exit(70)  # a worker dying mid-task, as a segfault or the OOM killer would
        if symbol in self._hang:
            time.sleep(24 * 3600)
        delay = self._delay(symbol, attempt)
        if delay > 0:
            time.sleep(delay)
        if symbol in self._fail:
            raise PermanentProviderError(
                f"synthetic failure for {symbol} (option fail)", symbol=symbol
            )
        if self.flaky:
            draw = (_mix_int((_symbol_key(symbol, self.seed) + attempt) & _M64) >> 11) * 2.0**-53
            if draw < self.flaky:
                raise TransientProviderError(
                    f"synthetic connection reset for {symbol} (call {attempt + 1})", symbol=symbol
                )

    def _count_calls(self, symbols, starts, end) -> None:
        """What :meth:`_simulate_network` does for calls that wait on nothing and fault
        nowhere, for a batch at once: count each symbol's call and log them in one write.
        A date is formatted once per distinct date, not twice per symbol (an update's 5,000
        symbols share a few: 40 ms of its fetch; see docs/performance.md#updates)."""
        calls = self._calls
        for symbol in symbols:
            calls[symbol] = calls.get(symbol, 0) + 1
        if not self.call_log or not len(symbols):
            return
        day = once_per_value(lambda value: str(to_date(value).date()))
        last = day(end)
        self._log_calls("".join(f"{symbol} {day(start)} {last}\n"
                                for symbol, start in zip(symbols, starts)))

    def _log_calls(self, text: str) -> None:
        # One write(2) with O_APPEND: whole lines, whatever other worker processes append.
        data = memoryview(text.encode("utf-8"))
        fd = os.open(self.call_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            while data:  # a regular file takes it whole, short of a signal or a full disk
                data = data[os.write(fd, data):]
        finally:
            os.close(fd)

    def _symbol(self, symbol) -> str:
        """``symbol`` as given: any text names a series (its hash seeds the values)."""
        return symbol

    def _fetch(self, symbol, start, end, freq, adjust) -> pd.DataFrame:
        with self._straggling():
            self._simulate_network(symbol, start, end)
            if symbol in self._empty or start > end:
                return pd.DataFrame(columns=_COLUMNS)
            _, columns = self._bars([symbol], [start], end, freq, adjust)
            return pd.DataFrame(columns, copy=False)

    def fetch_many(self, symbols, starts, end, freq="1d", adjust="none") -> pd.DataFrame | None:
        """Every symbol's bars in one call, computed together (cheaper per symbol than
        :meth:`fetch`; see docs/performance.md#synthetic-provider). The simulated network is the
        same as ``fetch``'s, one call per symbol; symbols with a simulated fault (``fail``,
        ``hang``, ``crash``, ``flaky``) are left to ``fetch``, one by one."""
        faulty = self._fail | self._hang | self._crash
        if self.flaky or any(symbol in faulty for symbol in symbols):
            return None
        # Calls that wait on nothing log their lines in one write, not one file opened per
        # symbol (5,000 of them cost an update a tenth of its time; see
        # docs/performance.md#updates); calls that wait log each as it is made.
        waits = bool(self.latency or self.jitter)
        with self._straggling():
            if waits:
                for i, (symbol, start) in enumerate(zip(symbols, starts)):
                    self._simulate_network(symbol, start, end)
                    ticks.tell(i + 1)
            else:
                self._count_calls(symbols, starts, end)
                ticks.tell(len(symbols))
            codes, columns = self._bars(symbols, starts, end, Freq.parse(freq),
                                        Adjust.parse(adjust))
        names = pd.Categorical.from_codes(codes, categories=list(symbols))
        return pd.DataFrame({"symbol": names, **columns}, copy=False)

    @contextlib.contextmanager
    def _straggling(self):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if self._slow and _worker_name() in self._slow:
                # A straggler: this worker takes slow_factor times as long for everything.
                time.sleep((self.slow_factor - 1) * (time.perf_counter() - t0))

    def _bars(self, symbols, starts, end, freq: Freq, adjust: Adjust):
        """The bars of each symbol from its start to ``end`` (dates inclusive), generated
        together: ``(codes, columns)``, each row's index in ``symbols`` and flat columns."""
        lo = _dates(starts)
        hi = to_date(end).to_datetime64()
        first, last = lo.min().astype("datetime64[D]"), hi.astype("datetime64[D]")
        if freq is Freq.WEEK:
            first = first - (first - WEEK_EPOCH).astype(int) % 7
            last = last + 6 - (last - WEEK_EPOCH).astype(int) % 7
        elif freq is Freq.MONTH:
            first = first.astype("datetime64[M]").astype("datetime64[D]")
            last = (last.astype("datetime64[M]") + 1).astype("datetime64[D]") - 1
        days = _trading_days(first, last) if first <= last else np.array([], "datetime64[D]")
        if len(days) == 0:
            return np.zeros(0, np.intp), _no_bars()
        keys = _symbol_keys(symbols, self.seed)
        events = (_events_of(keys, _events_through(last)) if self.config["actions"]
                  else None)
        if freq.intraday:
            n = freq.minutes
            ends = np.concatenate([np.arange(570 + n, 691, n), np.arange(780 + n, 901, n)])
            ts = (days.astype("datetime64[m]")[:, None] + ends).ravel()
            day = np.repeat(days, len(ends))
            o, h, l, c, v, a = _intraday(keys, days, n, events)
        else:
            ts = day = days
            o, h, l, c, v, a = _daily(keys, days, events)
        ts = ts.astype("datetime64[us]")
        empty = [i for i, symbol in enumerate(symbols) if symbol in self._empty]
        if adjust is not Adjust.NONE and events is not None:
            # Before weeks and months are built: a vendor's adjusted week is made of its
            # adjusted days, so a week holding an ex-date is adjusted day by day.
            o, h, l, c = _vendor_adjusted(keys, ts, (o, h, l, c), adjust, hi)
        if freq in (Freq.WEEK, Freq.MONTH):
            periods = resample(dict(zip(_COLUMNS, (ts, o, h, l, c, v, a))), freq)
            ts, o, h, l, c, v, a = (periods[column] for column in _COLUMNS)
        if freq in (Freq.WEEK, Freq.MONTH):
            keep = (ts >= lo[:, None]) & (ts <= hi)
        elif empty or (lo != lo[0]).any():
            keep = day.astype("datetime64[us]") >= lo[:, None]
        else:
            keep = None  # the common case (and one symbol): every bar is in every window
        if keep is not None:
            keep[empty] = False
        if keep is None or keep.all():
            codes = np.repeat(np.arange(len(symbols)), len(ts))
            ts = np.tile(ts, len(symbols))
            o, h, l, c, v, a = (x.ravel() for x in (o, h, l, c, v, a))
        else:
            codes, at = np.nonzero(keep)
            ts, o, h, l, c, v, a = ts[at], *(x[keep] for x in (o, h, l, c, v, a))
        return codes, {"ts": ts, "open": o, "high": h, "low": l, "close": c, "volume": v,
                       "amount": a}


def _vendor_adjusted(keys: np.ndarray, ts: np.ndarray, prices, adjust: Adjust,
                     end: np.datetime64) -> list[np.ndarray]:
    """``prices`` (open, high, low, close, each ``(n, len(ts))``) adjusted as a vendor does:
    raw times the symbol's own factors in force at each stamp, qfq anchored at the latest
    ex-date up to ``end``, rounded to 0.01 (:func:`kdist.actions.adjust_prices`). Weekly and
    monthly bars are built from the adjusted days, as vendors and kdist's derived reads do."""
    # adjust_prices of ones is the scale it multiplies prices by, bit for bit: one call per
    # symbol, then every column of every symbol at once.
    scale, ones = np.empty((len(keys), len(ts))), np.ones(len(ts))
    year = int(np.datetime64(end, "Y").astype(np.int64)) + 1970
    for i, plan in enumerate(_plans(keys, year)):
        ex = (_EPOCH + plan.day).astype("datetime64[us]")
        scale[i] = adjust_prices(ts, ones, ex, plan.factor, adjust.value, end)
    return [np.round(x * scale, 2) for x in prices]


def _no_bars() -> dict[str, np.ndarray]:
    return {"ts": np.array([], "datetime64[us]"), **{c: np.array([], np.float64) for c in _COLUMNS[1:]}}
