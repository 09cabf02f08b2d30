"""Cross-source verification: :func:`verify` compares stored bars with a second provider's.

The series stored in a database (symbol, freq, adjust) are fetched again from another
provider on the cluster, with that provider's politeness limits, chunk by chunk as an import
fetches them (:class:`~kdist.loop.EachLoop`). As each chunk's result arrives, the stored
bars of its symbols are read with the store's own read (:meth:`~kdist.store.Store.load`,
qfq/hfq derived where corporate actions are stored) and compared with it
(:func:`compare_bars`); what differs goes to ``kdist_findings``, and the symbols' outcomes
to the job ledger, in one transaction per chunk. Nothing is written to ``kline``: the
verification is a ledger job of mode ``verify`` that no import resumes and the catalog never
counts as a write.

The stored series' windows start no earlier than the first day the other provider serves
their freq (:meth:`~kdist.providers.Provider.horizon`: Yahoo's 30 days of 1-minute bars, a
fixed first date): the report's ``note`` says so ("windows start at 2026-11-08: yfinance
serves 1m bars for the last 30 days"), the bars stored before are not compared (no
``only_ours``), and a symbol with no stored bar since fails with that reason.

The rules, per symbol, on the bars of both sides joined by ``ts``:

- ``bar_time`` (intraday): the sides stamp bars at different ends: moving theirs by one bar
  length (either way) matches more stamps than not moving them, at least
  :data:`STAMP_SHARE` of the side with fewer bars, and leaves at least as many closes equal.
  One finding for the symbol says which side is stamped at the bar's start ("theirs are
  stamped at the bar's start, ours at its end: every bar 5 minutes earlier") and what the
  providers declare (:attr:`~kdist.providers.Provider.bar_time`); theirs are then moved onto
  ours' stamps and compared by the rules below (their findings show ours' stamps).
- ``suspended`` (information): a bar one side has and the other not that is a placeholder bar
  on its side (:func:`kdist.gaps.placeholders`: no trade, flat at the close before: how
  baostock's suspended days are stored; Eastmoney and akshare leave the days out). One
  finding per run of such bars (consecutive in the joined bars, one symbol's), at its first
  bar, naming the run's days and its number of bars.
- ``only_ours`` / ``only_theirs``: any other bar one side has and the other not, one finding
  each.
- A placeholder bar matched with a bar of the other side: its prices copy the close before,
  so none of its prices is compared (no ``price`` finding, and it takes no part in the
  adjustment below); when the other side traded (volume above 0) that is one ``volume``
  finding ("ours a placeholder bar ..., theirs traded"), in any units, and nothing else.
- ``price``: ``open high low close`` differ when ``|ours - theirs| > max(0.01,
  tolerance * |theirs|)``: a difference of a cent never counts (vendors round prices to
  cents), above that the relative ``tolerance`` (default 0.5%).
- ``adjust``: the sides are adjusted differently (one qfq or hfq, the other raw, or adjusted
  at other dates). Walking the bars, a step is a close off the previous bar's ratio
  theirs/ours by more than max(0.02, tolerance * |theirs|) (two prices rounded to cents can
  be); a step the next bar comes back from is a spike, one bad bar. The steps cut the bars
  into pieces, each at a level (its median ratio). An adjustment's ratio moves one way over
  time and never comes back, in long pieces; so an *excursion* (up to
  :data:`EXCURSION_PIECES` pieces after which the ratio is back at the level before them, or
  an inner piece shorter than :data:`ADJUST_MIN_PIECE` bars) is bad bars, not an adjustment.
  A symbol is adjusted differently when at least :data:`ADJUST_MIN_BARS` closes outside
  spikes and excursions differ, spikes and excursions hold at most :data:`ADJUST_ASTRAY` of
  its bars, and the levels of the other pieces move one way only (up or down) in few steps
  (at most :data:`ADJUST_MAX_STEPS`, or one per 20 bars compared). One finding for the
  symbol names the step dates and the ratio range, instead of a price finding per bar; a
  spike is still a ``price`` finding (its close), and each bar of an excursion a ``price``
  finding per field off ours times the ratio around it. Otherwise every bar's prices are
  compared as above: three bars 10% off that come back are three bars' price findings, not
  an adjustment. (A run of bad bars at either end of the window that does not come back
  cannot be told from an adjustment there.)
- ``volume_units``: the median of ours/theirs over the bars where both volumes are above
  zero is within 5% of 100 or 1/100 (or 10 and 1/10 for bonds and repo, counted in 手 of
  10): one side counts shares, the other 手 (lots). One finding for the symbol, instead of a
  volume finding per bar.
- ``volume``: otherwise a bar's volumes differ when ``|ours - theirs| > max(tolerance,
  0.01) * max(|ours|, |theirs|)`` (a missing volume on either side is not compared).

``amount`` is not compared (vendors differ in what they sum).

Every kind but ``suspended`` (:data:`INFORMATIONAL`) is a difference (:data:`DIFFERENCES`):
:attr:`VerifyReport.ok` is false when there is one (``kdist verify`` exits with 1), and
:attr:`VerifyReport.n_differences` counts them. :meth:`VerifyReport.to_dict` (the JSON) holds
the first :data:`JSON_FINDINGS` findings, differences first, and says how many it leaves out;
``kdist.findings(db, job_id)`` reads every one.
"""

from __future__ import annotations

import contextlib
import functools
import html
import json
import math
import random
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .cluster import closes_with_job, named_scheduler
from .errors import ClusterError, InvalidOptionError, KdistError, StoreError, UsageError
from .fetching import CALL_TIMEOUT, RETRIES
from .fetching import task as chunk_task
from .gaps import placeholders
from .ledger import VERIFY_MODE
from .loop import EachLoop
from .outcome import JobStatus, Status, outcome
from .plan import estimate_rows, plan_chunks
from .progress import Callback, display
from .providers import Provider, get_provider, provider_class
from .report import counted
from .runner import (
    COOLDOWN,
    OVERLAP,
    TRIP_AFTER,
    _auto_cluster,
    _check_numbers,
    _cluster_opener,
    _Job,
    _limits,
    _new_job_id,
)
from .schema import Adjust, Freq, parse_symbols, to_date
from .securities import Kind, kind_of
from .store import FINDING_COLUMNS, Store

__all__ = ["DIFFERENCES", "INFORMATIONAL", "KINDS", "TOLERANCE", "VerifyReport", "compare_bars",
           "verify"]

#: Relative price tolerance by default: 0.5% of their price.
TOLERANCE = 0.005
#: A price difference of this much never counts: vendors round prices to cents.
CENT = 0.01
#: The kinds of finding, in the order reports list them.
KINDS = ("only_ours", "only_theirs", "price", "volume", "volume_units", "adjust", "bar_time",
         "suspended")
#: Kinds that inform and differ in nothing: they never make a report not ok.
INFORMATIONAL = ("suspended",)
#: Kinds that are differences: any makes :attr:`VerifyReport.ok` false (and ``kdist verify``
#: exit with 1).
DIFFERENCES = tuple(k for k in KINDS if k not in INFORMATIONAL)
#: An adjustment mismatch needs at least this many differing closes...
ADJUST_MIN_BARS = 3
#: ... and at most this many steps of the close ratio (or one per 20 bars compared).
ADJUST_MAX_STEPS = 4
#: A piece of the close ratio between two steps, not the first or last, is one level of an
#: adjustment only when it has this many bars; a shorter one holds bad bars.
ADJUST_MIN_PIECE = 5
#: An excursion: at most this many pieces in a row after which the ratio is back at the level
#: before them (an adjustment's ratio never comes back).
EXCURSION_PIECES = 5
#: ... and spikes and excursions hold at most this share of an adjusted symbol's bars (noise
#: is no adjustment).
ADJUST_ASTRAY = 0.25
#: Intraday sides one bar apart: moving theirs by a bar matches at least this share of the
#: side with fewer bars.
STAMP_SHARE = 0.9
#: A step of the close ratio: the next close is off the ratio so far by more than
#: max(2 cents, tolerance) (rounding to cents moves the ratio of two rounded prices by up to
#: about a cent).
STEP_CENTS = 0.02
#: How near a volume ratio must be to a unit's factor (100, 10) to count as units: 5%.
UNIT_BAND = 0.05
#: Findings a report keeps in memory; more are read back from ``kdist_findings`` when asked.
KEEP_FINDINGS = 10_000
#: Findings ``to_text`` and ``to_html`` show before "and N more".
SHOWN = 20
#: Findings :meth:`VerifyReport.to_dict` (and the JSON of ``kdist verify --json``) holds by
#: default; ``kdist.findings(db, job_id)`` reads them all.
JSON_FINDINGS = 1000

_PRICES = ("open", "high", "low", "close")
_COLUMNS = ("symbol", "ts", *_PRICES, "volume")
_EPS = 1e-9  # float noise: 10.01 - 10.00 is not more than a cent


# -- the comparison -----------------------------------------------------------------------


def compare_bars(ours: pd.DataFrame, theirs: pd.DataFrame, *, tolerance: float = TOLERANCE,
                 freq=None, bar_times=(None, None)) -> pd.DataFrame:
    """What differs between two sides' bars (the rules are the module's docstring).

    Parameters
    ----------
    ours, theirs
        Bars with ``symbol, ts, open, high, low, close`` and ``volume`` (NaN or missing: not
        compared), each side already cut to the windows to compare.
    tolerance
        Relative price tolerance; a cent never counts.
    freq
        The bars' freq (``"1d"``, ``"5m"`` ...): which placeholder rule applies and, intraday,
        the bar length a stamp convention moves bars by. None: told from the stamps (all at
        midnight: daily; else the commonest step between two bars of a day).
    bar_times
        ``(ours, theirs)``: where each side's provider declares it stamps intraday bars,
        ``"start"``, ``"end"`` or None (not known); a ``bar_time`` finding names them.

    Returns
    -------
    pandas.DataFrame
        One row per finding: ``symbol, kind, ts, field, ours, theirs, detail``, by symbol and
        ts (a symbol's own findings, with no ts, first).
    """
    declared = ({None: (None, bar_times[0])}, {None: (None, bar_times[1])})
    return _compare(ours, theirs, tolerance, freq, declared)[0]


def _compare(ours: pd.DataFrame, theirs: pd.DataFrame, tolerance: float, freq=None,
             declared=({}, {})):
    """:func:`compare_bars`, and how many bars both sides have. ``declared``: per side, the
    provider's name and declared stamp convention by symbol (key None: any symbol)."""
    ours, theirs = _side(ours), _side(theirs)
    freq, minutes = _freq_of(freq, ours, theirs)
    found = []
    if minutes:
        theirs, stamps = _stamps(ours, theirs, minutes, tolerance, declared)
        found.append(stamps)
    ours["held"] = placeholders(ours, freq)
    theirs["held"] = placeholders(theirs, freq)
    merged = ours.merge(theirs, on=["symbol", "ts"], how="outer", suffixes=("_o", "_t"),
                        indicator=True)
    merged = merged.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)
    side = merged["_merge"].to_numpy()
    held_o, held_t = merged["held_o"].eq(True).to_numpy(), merged["held_t"].eq(True).to_numpy()
    mine, other = side == "left_only", side == "right_only"
    for rows, kind, detail in ((mine & ~held_o, "only_ours", "theirs has no such bar"),
                               (other & ~held_t, "only_theirs", "ours has no such bar")):
        rows = merged[rows]
        found.append(_findings(rows["symbol"], kind, rows["ts"], None, rows["close_o"],
                               rows["close_t"], detail))
    found.append(_suspended(merged, mine & held_o, "ours"))
    found.append(_suspended(merged, other & held_t, "theirs"))
    on_both = side == "both"
    both = merged[on_both].reset_index(drop=True)
    if len(both):
        held_o, held_t = held_o[on_both], held_t[on_both]
        # A placeholder's prices copy the close before: no observation to compare.
        found += _prices(both[~(held_o | held_t)].reset_index(drop=True), tolerance)
        found += _volumes(both, tolerance, held_o, held_t)
    frame = pd.concat([f for f in found if len(f)] or [_findings([], "", [], None, [], [], "")],
                      ignore_index=True)
    for col in ("symbol", "kind", "field", "detail"):
        frame[col] = frame[col].astype("str")  # missing: NaN, as the table reads back
    return _in_order(frame), len(both)


def _in_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Findings by symbol, ts (a symbol's own, with no ts, first), kind and field, as
    :meth:`~kdist.store.Store.findings` reads them back."""
    order = np.lexsort((frame["field"].fillna("").to_numpy(dtype=str),
                        frame["kind"].to_numpy(dtype=str),
                        frame["ts"].to_numpy().astype("int64"),  # NaT first
                        frame["symbol"].to_numpy(dtype=str)))
    return frame.take(order).reset_index(drop=True)


def _side(bars: pd.DataFrame) -> pd.DataFrame:
    """One side's bars in the columns and dtypes compared, by symbol and ts."""
    n = len(bars)
    frame = pd.DataFrame({
        "symbol": (bars["symbol"].astype("str").to_numpy() if n else np.array([], dtype=object)),
        "ts": pd.to_datetime(bars["ts"]).astype("datetime64[us]").to_numpy() if n
        else np.array([], dtype="datetime64[us]"),
    })
    for col in _COLUMNS[2:]:
        values = bars[col] if col in bars else np.full(n, np.nan)
        frame[col] = pd.to_numeric(pd.Series(values), errors="coerce").astype("float64").to_numpy()
    return frame.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)


def _freq_of(freq, ours: pd.DataFrame, theirs: pd.DataFrame) -> tuple[Freq, int | None]:
    """The freq whose placeholder rule applies, and the bar length in minutes (None: not
    intraday): ``freq``'s, or told from the stamps (all at midnight: daily; else the
    commonest step between two bars of one symbol's day)."""
    if freq is not None:
        freq = Freq.parse(freq)
        return freq, freq.minutes if freq.intraday else None
    steps = []
    for frame in (ours, theirs):
        ts = frame["ts"].to_numpy()
        symbol = frame["symbol"].to_numpy(dtype=object)
        day = ts.astype("datetime64[D]")
        same = (symbol[1:] == symbol[:-1]) & (day[1:] == day[:-1])
        steps.append((ts[1:] - ts[:-1])[same])
    ts = np.concatenate([ours["ts"].to_numpy(), theirs["ts"].to_numpy()])
    if (ts == ts.astype("datetime64[D]")).all():
        return Freq.DAY, None
    minutes = np.concatenate(steps).astype("timedelta64[m]").astype("int64")
    values, counts = np.unique(minutes[minutes > 0], return_counts=True)
    if not len(values):
        return Freq.MIN1, None  # one bar a day: the intraday rule, no bar length
    m = int(values[counts.argmax()])
    known = {f.minutes: f for f in Freq if f.intraday}
    return known.get(m, Freq.MIN1), m


def _stamps(ours: pd.DataFrame, theirs: pd.DataFrame, minutes: int, tolerance: float,
            declared) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Intraday bars stamped one bar apart: ``theirs`` with the bars of such symbols moved
    onto ours' stamps, and a ``bar_time`` finding per such symbol.

    A symbol's sides are one bar apart when moving theirs by one bar (either way) matches
    more stamps than not moving them, matches at least :data:`STAMP_SHARE` of the side with
    fewer bars, and leaves at least as many closes within the tolerance.
    """
    empty = _findings([], "", [], None, [], [], "")
    symbols = pd.Index(ours["symbol"].unique()).intersection(pd.Index(theirs["symbol"].unique()))
    if not len(symbols):
        return theirs, empty
    bar = np.timedelta64(minutes, "m")
    size = np.minimum(ours.groupby("symbol").size().reindex(symbols).to_numpy(),
                      theirs.groupby("symbol").size().reindex(symbols).to_numpy())

    def matching(by: int) -> tuple[np.ndarray, np.ndarray]:
        moved = theirs[["symbol", "ts", "close"]].assign(ts=theirs["ts"].to_numpy() + by * bar)
        both = ours[["symbol", "ts", "close"]].merge(moved, on=["symbol", "ts"])
        agree = (np.abs(both["close_x"].to_numpy() - both["close_y"].to_numpy())
                 <= _limit(tolerance, both["close_y"].to_numpy()))
        counted = pd.DataFrame({"symbol": both["symbol"], "n": 1, "agree": agree.astype(int)})
        counted = counted.groupby("symbol").sum().reindex(symbols, fill_value=0)
        return counted["n"].to_numpy(), counted["agree"].to_numpy()

    (n0, agree0), (later, agree_l), (earlier, agree_e) = (matching(b) for b in (0, 1, -1))
    way = np.where(later >= earlier, 1, -1)
    n, agree = np.where(way > 0, later, earlier), np.where(way > 0, agree_l, agree_e)
    moved = (n > n0) & (n >= STAMP_SHARE * size) & (agree >= agree0)
    if not moved.any():
        return theirs, empty
    by = pd.Series(np.where(moved, way, 0), index=symbols)
    shift = theirs["symbol"].map(by).fillna(0).to_numpy(dtype="int64")
    theirs = theirs.assign(ts=theirs["ts"].to_numpy() + shift * bar)
    which = np.flatnonzero(moved)
    names = symbols.to_numpy(dtype=object)[which]
    details = [_stamp_detail(int(way[i]), minutes, _declared(declared[0], s),
                             _declared(declared[1], s)) for i, s in zip(which, names)]
    return theirs, _findings(names, "bar_time", None, "ts", None, None, details)


def _declared(by_symbol: dict, symbol: str) -> tuple[str | None, str | None]:
    """A side's provider name and declared stamp convention for ``symbol``."""
    return by_symbol.get(symbol, by_symbol.get(None, (None, None)))


def _stamp_detail(way: int, minutes: int, ours, theirs) -> str:
    """A ``bar_time`` finding's text: theirs moved ``way`` bars onto ours' stamps."""
    at_t, at_o, then = ("start", "end", "earlier") if way > 0 else ("end", "start", "later")
    text = (f"theirs are stamped at the bar's {at_t}, ours at its {at_o}: every bar "
            f"{minutes} minutes {then}")
    said = [f"{name or who} stamps bars at their {at}"
            for (name, at), who in ((ours, "ours' provider"), (theirs, "theirs' provider"))
            if at]
    if ours[1] and theirs[1]:
        agrees = (ours[1], theirs[1]) == (at_o, at_t)
        text += ("; as declared: " if agrees else "; not as declared: ") + ", ".join(said)
    elif said:
        text += "; declared: " + said[0]
    return (text + f"; compared with theirs moved {minutes} minutes "
            f"{'later' if way > 0 else 'earlier'} (their bars shown at ours' stamps)")


def _suspended(merged: pd.DataFrame, rows: np.ndarray, who: str) -> pd.DataFrame:
    """One ``suspended`` finding per run of placeholder bars only ``who`` has (``rows``: a
    mask of ``merged``'s rows; a run: such rows next to each other, one symbol's)."""
    at = np.flatnonzero(rows)
    if not len(at):
        return _findings([], "", [], None, [], [], "")
    symbol = merged["symbol"].to_numpy(dtype=object)
    ts = merged["ts"].to_numpy()
    starts = rows & ~np.r_[False, rows[:-1] & (symbol[1:] == symbol[:-1])]
    run = np.cumsum(starts)[at] - 1
    first, last = at[starts[at]], at[np.r_[run[1:] != run[:-1], True]]
    n = np.bincount(run)
    other = "theirs" if who == "ours" else "ours"
    close = merged["close_o" if who == "ours" else "close_t"].to_numpy()[first]
    details = [f"{k} placeholder bar{'s' if k > 1 else ''} {_day(a)}"
               + (f" .. {_day(b)}" if k > 1 else "")
               + f": {who} has the symbol suspended (no trade: volume 0, flat at the close "
               f"before), {other} has no bar{'s' if k > 1 else ''}"
               for k, a, b in zip(n.tolist(), ts[first], ts[last])]
    return _findings(symbol[first], "suspended", ts[first], None,
                     close if who == "ours" else None, close if who == "theirs" else None,
                     details)


def _findings(symbol, kind, ts, field_, ours, theirs, detail) -> pd.DataFrame:
    """Findings from columns (or one value for all)."""
    symbol = np.asarray(symbol, dtype=object)
    n = len(symbol)

    def column(value, dtype):
        if isinstance(value, (str, type(None))) or np.ndim(value) == 0:
            return np.full(n, value, dtype=dtype)
        return np.asarray(value, dtype=dtype)

    return pd.DataFrame({
        "symbol": symbol,
        "kind": column(kind, object),
        "ts": pd.to_datetime(column(ts, "datetime64[us]") if ts is not None
                             else np.full(n, np.datetime64("NaT"), "datetime64[us]")),
        "field": column(field_, object),
        "ours": column(ours, "float64") if ours is not None else np.full(n, np.nan),
        "theirs": column(theirs, "float64") if theirs is not None else np.full(n, np.nan),
        "detail": column(detail, object),
    }, columns=list(FINDING_COLUMNS))


def _limit(tolerance: float, theirs: np.ndarray, floor: float = CENT) -> np.ndarray:
    """How far a price may be off theirs: max(a cent, tolerance x theirs)."""
    return np.maximum(floor, tolerance * np.abs(theirs)) + _EPS


def _prices(both: pd.DataFrame, tolerance: float) -> list[pd.DataFrame]:
    """``price`` findings per bar and field, or one ``adjust`` finding per symbol (and the
    ``price`` findings of its spikes and excursions)."""
    symbol = both["symbol"].to_numpy(dtype=object)
    ts = both["ts"].to_numpy()
    codes, names = pd.factorize(symbol, sort=False)
    with np.errstate(invalid="ignore", divide="ignore"):
        off = {f: np.abs(both[f + "_o"].to_numpy() - both[f + "_t"].to_numpy())
               > _limit(tolerance, both[f + "_t"].to_numpy()) for f in _PRICES}
    adjusted, spike, excursion, around, details = _adjustment(
        codes, ts, both["close_o"].to_numpy(), both["close_t"].to_numpy(), off["close"],
        tolerance)
    found = []
    if adjusted.any():
        which = np.flatnonzero(adjusted)
        found.append(_findings(names[which], "adjust", None, "close", None, None,
                               [details[i] for i in which]))
    in_adjusted = adjusted[codes]
    # A run of bars off the ratio around it, in a differently adjusted symbol: their prices
    # against ours at that ratio.
    away = in_adjusted & excursion & ~spike
    for f in _PRICES:
        o, t = both[f + "_o"].to_numpy(), both[f + "_t"].to_numpy()
        with np.errstate(invalid="ignore"):
            moved = away & (np.abs(t - o * around) > _limit(tolerance, t))
        rows = np.flatnonzero(off[f] & ~in_adjusted)
        found.append(_findings(symbol[rows], "price", ts[rows], f, o[rows], t[rows],
                               _differences(o[rows], t[rows])))
        rows = np.flatnonzero(moved)
        ratio = around[rows]
        found.append(_findings(symbol[rows], "price", ts[rows], f, o[rows], t[rows], [
            f"{d} against ours x {r:.4g}, the ratio theirs/ours around it"
            for d, r in zip(_differences(o[rows] * ratio, t[rows]), ratio.tolist())]))
    # A lone close off its neighbours' ratio in a differently adjusted symbol.
    rows = np.flatnonzero(spike & in_adjusted)
    o, t = both["close_o"].to_numpy()[rows], both["close_t"].to_numpy()[rows]
    found.append(_findings(symbol[rows], "price", ts[rows], "close", o, t,
                           [f"{d}; off its neighbours' ratio theirs/ours" for d in
                            _differences(o, t)]))
    return found


def _differences(ours: np.ndarray, theirs: np.ndarray) -> list[str]:
    """``theirs +0.62 (+5.00%)`` per pair."""
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = (theirs - ours) / np.abs(ours)
    return [f"theirs {t - o:+.6g}" + (f" ({r:+.2%})" if math.isfinite(r) else "")
            for o, t, r in zip(ours.tolist(), theirs.tolist(), rel.tolist())]


def _adjustment(codes, ts, ours, theirs, off, tolerance):
    """Which symbols' closes differ by an adjustment: ``(adjusted per symbol, spike per bar,
    excursion per bar, the ratio around each excursion's bar, detail per symbol)``.

    Walking each symbol's bars in time, a bar is a step when its close is off the previous
    bar's ratio theirs/ours (:data:`STEP_CENTS`, or the tolerance). A step whose next bar is
    back on the ratio before it (or a step at the last bar) is a spike, one bad bar, not a
    step. The steps cut the bars into pieces, each at one level of the ratio (its median).
    An excursion is a piece, or up to :data:`EXCURSION_PIECES` pieces in a row, after which
    the ratio comes back to the level before them, or an inner piece shorter than
    :data:`ADJUST_MIN_PIECE` bars: bad bars, not an adjustment. A symbol is adjusted
    differently when at least :data:`ADJUST_MIN_BARS` closes outside spikes and excursions
    differ, no more than :data:`ADJUST_ASTRAY` of its bars are spikes or in excursions, and
    the levels of the other pieces move one way only (up, or down, never back) in few steps.
    """
    n = len(codes)
    n_symbols = int(codes.max()) + 1 if n else 0
    first = np.r_[True, codes[1:] != codes[:-1]]
    last = np.r_[codes[1:] != codes[:-1], True]
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = theirs / ours
        limit = _limit(tolerance, theirs, STEP_CENTS)
        before = np.r_[np.nan, ratio[:-1]]
        step = ~first & ~(np.abs(theirs - ours * before) <= limit)
        # The next bar back on the ratio before this one: this bar alone is off.
        back = np.r_[np.abs(theirs[1:] - ours[1:] * before[:-1]) <= limit[1:], False]
    spike = step & (last | (back & ~last))
    after_spike = np.r_[False, spike[:-1]] & ~first
    steps = step & ~spike & ~after_spike
    bars = np.bincount(codes, minlength=n_symbols)
    # The pieces: their owner, level (the median ratio), median price and size in bars.
    begins = np.flatnonzero(steps | first)
    piece = np.cumsum(steps | first) - 1
    keep = ~spike & np.isfinite(ratio)
    owner = codes[begins]
    stats = pd.DataFrame({"piece": piece[keep], "ratio": ratio[keep],
                          "price": np.abs(ours[keep])}).groupby("piece").median()
    stats = stats.reindex(range(len(begins)))
    level, price = stats["ratio"].to_numpy(), stats["price"].to_numpy()
    size = np.bincount(piece[keep], minlength=len(begins))
    with np.errstate(invalid="ignore", divide="ignore"):
        # Two levels are one when the closes they give differ by no more than a step.
        near = np.maximum(tolerance * np.abs(level), STEP_CENTS / price) + _EPS
    inner = ~np.r_[True, owner[1:] != owner[:-1]] & ~np.r_[owner[1:] != owner[:-1], True]
    away = _excursions(owner, level, near) | (inner & (size < ADJUST_MIN_PIECE)) \
        | ~np.isfinite(level)
    excursion = away[piece]
    # The level an excursion left (else the one it came back to).
    left = pd.Series(np.where(away, np.nan, level)).groupby(owner).ffill()
    around = left.fillna(pd.Series(np.where(away, np.nan, level)).groupby(owner).bfill())
    around = np.where(excursion, around.to_numpy()[piece], np.nan)
    # The levels of the other pieces: steps between them, one way only.
    kept = np.flatnonzero(~away)
    a, b = kept[:-1], kept[1:]
    moves = (owner[a] == owner[b]) & (np.abs(level[b] - level[a]) > np.maximum(near[a],
                                                                               near[b]))
    up = np.bincount(owner[a[moves & (level[b] > level[a])]], minlength=n_symbols)
    down = np.bincount(owner[a[moves & (level[b] < level[a])]], minlength=n_symbols)
    differing = np.bincount(codes, weights=(off & ~spike & ~excursion).astype(float),
                            minlength=n_symbols)
    n_steps = up + down
    astray = np.bincount(codes, weights=(spike | excursion).astype(float), minlength=n_symbols)
    adjusted = ((differing >= ADJUST_MIN_BARS) & ((up == 0) | (down == 0))
                & (astray <= ADJUST_ASTRAY * bars)
                & (n_steps <= np.maximum(ADJUST_MAX_STEPS, bars // 20))
                & (np.bincount(owner[kept], minlength=n_symbols) > 0))
    details: dict[int, str] = {}
    if adjusted.any():
        # The levels: the median ratio of the bars between two moves (excursions aside).
        joined = np.full(len(begins), -1)
        joined[kept] = np.cumsum(np.r_[True, moves | (owner[a] != owner[b])]) - 1
        at = keep & ~excursion
        levels = pd.Series(ratio[at]).groupby(joined[piece[at]]).median()
        levels = levels.groupby(owner[kept][np.unique(joined[kept], return_index=True)[1]])
        lows, highs = levels.min(), levels.max()
        stepped = begins[b[moves]]
        for i in np.flatnonzero(adjusted):
            dates = [_day(t) for t in ts[stepped[codes[stepped] == i]]]
            lo, hi = lows.get(i, np.nan), highs.get(i, np.nan)
            if dates:
                shown = ", ".join(dates[:10]) + (f" and {len(dates) - 10} more"
                                                 if len(dates) > 10 else "")
                where = f"{lo:.4g} to {hi:.4g}, stepping on {shown}"
            else:
                where = f"{lo:.4g} throughout"
            details[i] = (f"close ratio theirs/ours {where}: adjusted differently (e.g. one "
                          f"side qfq or hfq, the other raw); {int(differing[i])} of "
                          f"{int(bars[i])} closes differ")
    return adjusted, spike, excursion, around, details


def _excursions(owner: np.ndarray, level: np.ndarray, near: np.ndarray) -> np.ndarray:
    """Which pieces are in an excursion: up to :data:`EXCURSION_PIECES` pieces in a row
    after which the ratio is back at the level before them (one symbol's pieces)."""
    n = len(owner)
    edges = np.zeros(n + 1, np.int64)
    for lag in range(2, EXCURSION_PIECES + 2):  # a few lags: no loop over pieces or bars
        if n <= lag:
            break
        i = np.arange(n - lag)
        k = i + lag
        with np.errstate(invalid="ignore"):
            hit = (owner[i] == owner[k]) & (np.abs(level[i] - level[k])
                                            <= np.maximum(near[i], near[k]))
        np.add.at(edges, i[hit] + 1, 1)
        np.add.at(edges, k[hit], -1)
    return np.cumsum(edges[:-1]) > 0


def _units(symbols) -> np.ndarray:
    """The 手 of each symbol: 10 for bonds and repo, 100 otherwise."""
    kinds = kind_of(list(symbols))
    return np.array([10.0 if k in (Kind.BOND.value, Kind.REPO.value) else 100.0
                     for k in kinds.tolist()])


def _volumes(both: pd.DataFrame, tolerance: float, held_o: np.ndarray,
             held_t: np.ndarray) -> list[pd.DataFrame]:
    """One ``volume_units`` finding per symbol whose sides count in other units, else
    ``volume`` findings per bar; and a ``volume`` finding per placeholder bar (``held_o``,
    ``held_t``: ours', theirs') the other side traded."""
    symbol = both["symbol"].to_numpy(dtype=object)
    codes, names = pd.factorize(symbol, sort=False)
    ours, theirs = both["volume_o"].to_numpy(), both["volume_t"].to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        usable = (ours > 0) & (theirs > 0)
        ratio = np.where(usable, ours / theirs, np.nan)
    frame = pd.DataFrame({"code": codes, "ratio": ratio,
                          "ours": np.where(usable, ours, np.nan),
                          "theirs": np.where(usable, theirs, np.nan)})
    medians = frame.groupby("code").median().reindex(range(len(names)))
    median = medians["ratio"].to_numpy()
    unit = _units(names)
    units = np.zeros(len(names), bool)
    text = np.full(len(names), "", dtype=object)
    for factor, mine, other in ((100.0, "shares", "lots (手 of 100)"),
                                (10.0, "bonds", "手 of 10 bonds")):
        applies = unit == factor if factor == 10.0 else np.ones(len(names), bool)
        with np.errstate(invalid="ignore"):
            more = applies & ~units & (np.abs(median / factor - 1) <= UNIT_BAND)
            fewer = applies & ~units & ~more & (np.abs(median * factor - 1) <= UNIT_BAND)
        text[more] = f"ours in {mine}, theirs in {other}"
        text[fewer] = f"ours in {other}, theirs in {mine}"
        units |= more | fewer
    found = []
    if units.any():
        which = np.flatnonzero(units)
        found.append(_findings(
            names[which], "volume_units", None, "volume", medians["ours"].to_numpy()[which],
            medians["theirs"].to_numpy()[which],
            [f"{text[i]}: median ratio ours/theirs {median[i]:.4g}" for i in which]))
    with np.errstate(invalid="ignore"):
        # A placeholder (no trade) where the other side traded: one finding, whatever units.
        traded = (held_o & (theirs > 0)) | (held_t & (ours > 0))
        off = (np.isfinite(ours) & np.isfinite(theirs) & ~units[codes] & ~(held_o | held_t)
               & (np.abs(ours - theirs)
                  > max(tolerance, 0.01) * np.maximum(np.abs(ours), np.abs(theirs)) + _EPS))
    rows = np.flatnonzero(off | traded)
    o, t = ours[rows], theirs[rows]
    with np.errstate(invalid="ignore", divide="ignore"):
        r = o / t
    found.append(_findings(symbol[rows], "volume", both["ts"].to_numpy()[rows], "volume", o, t, [
        (f"{'ours' if ho else 'theirs'} a placeholder bar (suspended: volume 0, flat at the "
         f"close before), {'theirs' if ho else 'ours'} traded") if ho or ht
        else f"ratio ours/theirs {x:.4g}" if math.isfinite(x) else "theirs 0"
        for x, ho, ht in zip(r.tolist(), held_o[rows].tolist(), held_t[rows].tolist())]))
    return found


def _day(ts) -> str:
    """A bar's time as text: the date alone at midnight."""
    stamp = pd.Timestamp(ts)
    if pd.isna(stamp):
        return "-"
    return str(stamp.date()) if stamp == stamp.normalize() else str(stamp)


# -- the report ---------------------------------------------------------------------------


@dataclass(repr=False)
class VerifyReport:
    """What one verification found. ``str()`` (and :meth:`to_text`) is a terminal table,
    :meth:`to_html` the notebook's, :meth:`to_dict` the JSON; :attr:`ok` is true when every
    symbol was compared and nothing differs (findings of :data:`INFORMATIONAL` kinds, such
    as ``suspended``, differ in nothing)."""

    job_id: str
    status: str
    mode: str
    against: str
    freq: str
    adjust: str
    start: str
    end: str
    db: str
    tolerance: float
    n_symbols: int = 0
    n_chunks: int = 0
    #: Symbols compared (their provider answered with bars in the window).
    symbols_compared: int = 0
    #: Compared symbols without any difference (informational findings aside).
    symbols_agreeing: int = 0
    #: Compared symbols with a difference (a finding of a kind of :data:`DIFFERENCES`).
    symbols_with_findings: int = 0
    #: Symbols the other provider failed for (``failures`` says why).
    symbols_failed: int = 0
    #: Symbols the other provider had no bars for in the window (not compared).
    symbols_empty: int = 0
    #: Symbols not asked: the provider's circuit breaker opened.
    symbols_skipped: int = 0
    #: Findings per kind (every kind of :data:`KINDS`, zeros too).
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    n_findings: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    empty: list[str] = field(default_factory=list)
    #: Bars compared: both sides had them.
    bars_compared: int = 0
    elapsed_s: float = 0.0
    dashboard_link: str | None = None
    cluster_closed: bool = False
    fallback_reason: str | None = None
    mode_reason: str | None = None
    note: str | None = None
    _kept: list = field(default_factory=list)
    _source: object = None  # the db path, or the Store that was given

    @property
    def n_differences(self) -> int:
        """Findings that are differences: every kind of :data:`DIFFERENCES` (not ``suspended``,
        which informs)."""
        return sum(n for k, n in self.counts.items() if k not in INFORMATIONAL)

    @property
    def ok(self) -> bool:
        """Every symbol compared (none failed, skipped or empty), and no difference."""
        return (self.n_differences == 0 and self.symbols_failed == 0 and self.symbols_empty == 0
                and self.symbols_skipped == 0)

    @property
    def findings(self) -> pd.DataFrame:
        """Every finding: ``symbol, kind, ts, field, ours, theirs, detail`` (read back from
        ``kdist_findings`` when there were more than :data:`KEEP_FINDINGS`)."""
        if self._kept is not None:
            frames = [f for f in self._kept if len(f)]
            if not frames:
                return _findings([], "", [], None, [], [], "")
            return _in_order(pd.concat(frames, ignore_index=True))
        store = self._source
        if isinstance(store, Store) and not store._closed:
            return store.findings(self.job_id)
        with Store(self.db, read_only=True) as store:
            return store.findings(self.job_id)

    def count(self, outcomes: list[dict], found: pd.DataFrame):
        """Count a chunk's outcomes and findings."""
        for o in outcomes:
            status = o["status"]
            if status == Status.OK:
                self.symbols_compared += 1
            elif status == Status.EMPTY:
                self.symbols_empty += 1
                self.empty.append(o["symbol"])
            elif status == Status.SKIPPED:
                self.symbols_skipped += 1
            else:
                self.symbols_failed += 1
                self.failures[o["symbol"]] = f"{o['error_class']}: {o['error']}"
        with_findings = found.loc[~found["kind"].isin(INFORMATIONAL), "symbol"].nunique()
        self.symbols_with_findings += with_findings
        self.symbols_agreeing = self.symbols_compared - self.symbols_with_findings
        for kind, n in found["kind"].value_counts().items():
            self.counts[kind] = self.counts.get(kind, 0) + int(n)
        self.n_findings += len(found)
        if self._kept is not None:
            if self.n_findings <= KEEP_FINDINGS:
                self._kept.append(found)
            else:
                self._kept = None  # too many to hold: read back from the table

    def final_status(self) -> str:
        """The job's status once every symbol has an outcome (findings are no failure)."""
        if self.symbols_skipped:
            return JobStatus.INTERRUPTED
        if self.symbols_failed == 0:
            return JobStatus.DONE
        if self.symbols_failed == self.n_symbols:
            return JobStatus.FAILED
        return JobStatus.PARTIAL

    # -- showing it ------------------------------------------------------------------------

    def _rows(self) -> list[tuple[str, str]]:
        kinds = ", ".join(f"{n:,} {k}" + (" (information)" if k in INFORMATIONAL else "")
                          for k, n in self.counts.items() if n)
        symbols = (f"{self.n_symbols:,}: {self.symbols_compared} compared "
                   f"({self.symbols_agreeing} agree, {self.symbols_with_findings} with "
                   f"differences)")
        symbols += "".join(f", {n} {what}" for n, what in (
            (self.symbols_failed, "failed"), (self.symbols_empty, "empty at " + self.against),
            (self.symbols_skipped, "skipped")) if n)
        rows = [
            ("verify", f"{self.job_id} ({self.status}): "
                       + ("agrees" if self.ok else "differs" if self.n_differences
                          else "not every symbol compared")),
            ("series", f"{self.freq} {self.adjust}  {self.start} .. {self.end}  in {self.db}"),
            ("against", f"{self.against} on {self.mode}"
                        + (f" (fallback: {self.fallback_reason})" if self.fallback_reason
                           else f" ({self.mode_reason})" if self.mode_reason else "")),
            ("symbols", symbols),
            ("bars", f"{self.bars_compared:,} compared"),
            ("findings", f"{self.n_findings:,}" + (f": {kinds}" if kinds else "")),
            ("rules", (f"a price off by more than max(0.01, {self.tolerance:.2%} of theirs), "
                       f"a volume by more than {max(self.tolerance, 0.01):.2%}; volume units, "
                       "adjustment and stamp convention per symbol; placeholder bars one side "
                       "has are suspended (information)")),
            ("time", f"{self.elapsed_s:.1f} s"),
        ]
        if self.dashboard_link:
            rows.append(("dashboard", self.dashboard_link + (" (closed with its cluster)"
                                                             if self.cluster_closed else "")))
        if self.note:
            rows.append(("note", self.note))
        return rows

    def _table(self, limit: int) -> tuple[list[list[str]], int]:
        """The first ``limit`` findings as text cells, and how many are left out."""
        shown = self._first(limit) if self.n_findings else None
        if shown is None or shown.empty:
            return [], 0
        cells = [[str(r.symbol), str(r.kind), _day(r.ts), r.field if isinstance(r.field, str)
                  else "-", _number(r.ours), _number(r.theirs), str(r.detail or "")]
                 for r in shown.itertuples(index=False)]
        return cells, self.n_findings - len(cells)

    def to_text(self, limit: int = SHOWN) -> str:
        """The summary, the first ``limit`` findings as a table (symbol, kind, date, field,
        ours, theirs, detail) with "and N more", and the failures."""
        width = max(len(k) for k, _ in self._rows())
        lines = [f"{k:<{width}}  {v}" for k, v in self._rows()]
        cells, more = self._table(limit)
        if cells:
            head = ["symbol", "kind", "ts", "field", "ours", "theirs", "detail"]
            sizes = [max(len(head[i]), *(len(c[i]) for c in cells)) for i in range(6)]
            right = {4, 5}

            def line(row):
                parts = [row[i].rjust(sizes[i]) if i in right else row[i].ljust(sizes[i])
                         for i in range(6)]
                return "  ".join(parts + [row[6]]).rstrip()

            lines += ["", line(head)] + [line(c) for c in cells]
            if more:
                lines.append(f"... and {more:,} more (kdist.findings({self.db!r}, "
                             f"{self.job_id!r}))")
        if self.failures:
            lines.append("failed:")
            items = list(self.failures.items())
            lines += [f"  {s}: {r}" for s, r in items[:10]]
            if len(items) > 10:
                lines.append(f"  ... and {len(items) - 10:,} more (kdist jobs {self.job_id})")
        if self.empty:
            lines.append(f"empty at {self.against}: {', '.join(self.empty[:10])}"
                         + (f" and {len(self.empty) - 10:,} more" if len(self.empty) > 10
                            else ""))
        return "\n".join(lines)

    def __str__(self):
        return self.to_text()

    def __repr__(self):
        return (f"<VerifyReport {self.job_id} {self.status} against {self.against}: "
                f"{counted(self.n_symbols, 'symbol')}, {self.symbols_compared} compared, "
                f"{self.symbols_failed} failed, {counted(self.n_findings, 'finding')}>")

    def _first(self, limit: int | None) -> pd.DataFrame:
        """The first ``limit`` findings (None: all), differences before information."""
        found = self.findings if self.n_findings else _findings([], "", [], None, [], [], "")
        if limit is None or len(found) <= limit:
            return found
        informs = found["kind"].isin(INFORMATIONAL).to_numpy()
        return found.take(np.argsort(informs, kind="stable")[:limit]).reset_index(drop=True)

    def to_dict(self, limit: int | None = JSON_FINDINGS) -> dict:
        """A JSON-ready dict: the counts, ``ok``, ``n_differences``, and the first ``limit``
        findings (default :data:`JSON_FINDINGS`; None: all), differences before information,
        as records with ISO times; ``findings_omitted`` says how many are left out and
        ``all_findings`` how to read every one (``kdist.findings(db, job_id)``)."""
        data = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        data["counts"] = dict(self.counts)
        data["failures"] = dict(self.failures)
        data["empty"] = list(self.empty)
        data["ok"] = self.ok
        data["n_differences"] = self.n_differences
        found = self._first(limit)
        data["findings_omitted"] = self.n_findings - len(found)
        data["all_findings"] = f"kdist.findings({self.db!r}, {self.job_id!r})"
        data["findings"] = [
            {"symbol": r.symbol, "kind": r.kind,
             "ts": None if pd.isna(r.ts) else pd.Timestamp(r.ts).isoformat(),
             "field": r.field if isinstance(r.field, str) else None,
             "ours": None if pd.isna(r.ours) else float(r.ours),
             "theirs": None if pd.isna(r.theirs) else float(r.theirs),
             "detail": r.detail if isinstance(r.detail, str) else None}
            for r in found.itertuples(index=False)]
        return data

    def to_json(self, limit: int | None = JSON_FINDINGS, **kwargs) -> str:
        """:meth:`to_dict` as JSON text (the first ``limit`` findings; None: all)."""
        return json.dumps(self.to_dict(limit), ensure_ascii=False, **kwargs)

    def _repr_html_(self):
        return self.to_html()

    def to_html(self, limit: int = SHOWN) -> str:
        """The summary and the first ``limit`` findings as HTML tables, as notebooks show it."""
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th><td style='text-align:left'>"
            f"{html.escape(str(v))}</td></tr>" for k, v in self._rows())
        cells, more = self._table(limit)
        table = ""
        if cells:
            head = "".join(f"<th style='text-align:left'>{h}</th>" for h in
                           ("symbol", "kind", "ts", "field", "ours", "theirs", "detail"))
            body = "".join(
                "<tr>" + "".join(
                    f"<td style='text-align:{'right' if i in (4, 5) else 'left'}'>"
                    f"{html.escape(c)}</td>" for i, c in enumerate(row)) + "</tr>"
                for row in cells)
            table = f"<p><b>findings</b></p><table><tr>{head}</tr>{body}</table>"
            if more:
                table += f"<p>... and {more:,} more</p>"
        fails = "".join(f"<li>{html.escape(f'{s}: {r}')}</li>"
                        for s, r in list(self.failures.items())[:10])
        fails = f"<p><b>failed</b></p><ul>{fails}</ul>" if fails else ""
        return f"<div><b>kdist verify</b><table>{rows}</table>{table}{fails}</div>"


def _number(value) -> str:
    if value is None or pd.isna(value):
        return "-"
    value = float(value)
    if value.is_integer() and abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.6g}"


# -- the job ------------------------------------------------------------------------------


def verify(
    db,
    against,
    symbols=None,
    *,
    sample: int | None = None,
    start=None,
    end=None,
    freq="1d",
    adjust="none",
    tolerance: float = TOLERANCE,
    options: dict | None = None,
    client=None,
    chunk_size: int | None = None,
    max_concurrency: int | None = None,
    max_rate: float | None = None,
    progress: bool | None = None,
    seed: int = 0,
    callback: Callback | None = None,
    cancel: threading.Event | None = None,
    worker_timeout: float = 30.0,
) -> VerifyReport:
    """Compare the bars stored in ``db`` with a second provider's, symbol by symbol.

    The stored series of ``freq``/``adjust`` are fetched again from ``against`` on the
    cluster (chosen as :func:`kdist.ingest` chooses it), with that provider's politeness
    limits, and compared chunk by chunk as results arrive (the rules:
    :mod:`kdist.verification`). Findings go to ``kdist_findings`` and the symbols' outcomes to the
    job ledger (a job of mode ``verify``); nothing is written to ``kline``. Windows start no
    earlier than the first day ``against`` serves ``freq`` bars (its horizon; the report's
    ``note`` says so), and a symbol with no stored bar since fails with that reason.

    Parameters
    ----------
    db
        The DuckDB file (it must exist), or a :class:`~kdist.store.Store` open for writing.
    against
        The second provider: a registered name or an instance; ``options`` are its options.
    symbols, sample, seed
        Which stored series: the symbols named; or ``sample`` of them chosen at random
        (the same for the same ``seed``); or, neither given, every stored one.
    start, end
        The window compared (dates, inclusive); by default each symbol's first and last
        stored bar. Either way no earlier than the provider's horizon.
    freq, adjust
        The stored series compared (qfq/hfq derived where corporate actions are stored,
        as :func:`kdist.load` reads them); the provider is asked for the same.
    tolerance
        Relative price tolerance (0.005: 0.5%); a cent never counts.
    client, chunk_size, worker_timeout
        As for :func:`kdist.ingest`.
    max_concurrency, max_rate
        Cluster-wide caps on the provider's calls (default: its own).
    progress, callback, cancel
        As for :func:`kdist.ingest`: a live display, progress events, a
        ``threading.Event`` that stops the verification early.

    Returns
    -------
    VerifyReport
        Counts, the findings, and ``ok``.

    Raises
    ------
    UsageError
        An unknown provider, invalid or unstored symbols, bad numbers, every chosen series
        older than the provider serves; nothing is recorded.
    StoreError
        The database is missing, locked by an import (``DatabaseLockedError``) or opened
        read-only.
    """
    t0 = time.perf_counter()
    _check_numbers(sample=(sample, 1, False), chunk_size=(chunk_size, 1, False),
                   max_concurrency=(max_concurrency, 1, False),
                   max_rate=(max_rate, None, True), worker_timeout=(worker_timeout, 0, True))
    if (isinstance(tolerance, bool) or not isinstance(tolerance, (int, float, np.number))
            or not math.isfinite(tolerance) or not 0 <= tolerance < 1):
        raise InvalidOptionError(
            f"tolerance must be a fraction of the price from 0 to below 1 (0.005 is 0.5%), "
            f"not {tolerance!r}", option="tolerance", value=tolerance)
    if symbols is not None and sample is not None:
        raise UsageError("Give symbols or sample=N, not both")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise InvalidOptionError(f"seed must be a whole number, not {seed!r}", option="seed")
    freq, adjust = Freq.parse(freq), Adjust.parse(adjust)
    lo = to_date(start, name="start") if start is not None else None
    hi = to_date(end, name="end") if end is not None else None
    if lo is not None and hi is not None and lo > hi:
        raise InvalidOptionError(f"start {lo.date()} is after end {hi.date()}: swap them",
                                 option="start")
    provider = get_provider(against, **(options or {}))
    given = db if isinstance(db, Store) else None
    if given is not None:
        if given.read_only:
            raise UsageError(f"verify records its findings in {given.path}: pass a Store "
                             "opened for writing (read_only=False), or its path")
        db = given.path
    callback = callback or display(progress)
    cluster_options = dict(n_workers=None, threads_per_worker=None, fallback=True,
                           worker_timeout=worker_timeout, security=None, tls_ca=None,
                           tls_cert=None, tls_key=None)
    with contextlib.ExitStack() as stack:
        store = given if given is not None else stack.enter_context(Store(db, create=False))
        if not store.has_quality:
            raise StoreError(f"{store.path} has no kdist_findings table: open it for writing "
                             "(kdist adds it)", path=str(store.path))
        windows, invalid = _windows(store, provider, symbols, sample, seed, lo, hi, freq,
                                    adjust)
        windows, unserved, horizon_note = _served(windows, provider, freq)
        provider.check(freq=freq, adjust=adjust, start=windows["since"].min(),
                       end=windows["stop"].max())
        open_cluster = _cluster_opener(stack, cluster_options)
        if client is None and named_scheduler() is None and not provider.remote:
            bars = int(sum(estimate_rows(freq, a, b)
                           for a, b in zip(windows["since"], windows["stop"])))
            cluster = _auto_cluster(open_cluster, bars)
        else:
            cluster = open_cluster(client)
        job = _Job(_new_job_id(), list(windows["symbol"]), invalid + list(unserved),
                   windows["since"].min(),
                   windows["stop"].max(), freq, adjust, provider, False, OVERLAP)
        report = VerifyReport(
            job_id=job.job_id, status=str(JobStatus.RUNNING), mode=cluster.mode,
            against=provider.name, freq=freq.value, adjust=adjust.value,
            start=str(job.start.date()), end=str((job.end - pd.Timedelta(days=1)).date()),
            db=str(db), tolerance=float(tolerance),
            n_symbols=len(job.symbols) + len(invalid) + len(unserved), note=horizon_note,
            dashboard_link=cluster.dashboard_link, fallback_reason=cluster.fallback_reason,
            mode_reason=cluster.reason, _source=given if given is not None else str(db))
        report.cluster_closed = closes_with_job(cluster)
        chunks = plan_chunks(job.symbols, job.start, job.end, freq=freq,
                             n_threads=cluster.n_threads, n_workers=cluster.n_workers,
                             chunk_size=chunk_size, windows=windows,
                             in_process=cluster.mode == "sync")
        report.n_chunks = len(chunks)
        store.start_job(
            {"job_id": job.job_id, "mode": VERIFY_MODE, "provider": provider.name,
             "provider_options": provider.given_options(),
             "provider_version": provider.version(), "freq": freq.value,
             "adjust": adjust.value, "start": job.start.date(),
             "end": (job.end - pd.Timedelta(days=1)).date(),
             "params": {"cluster": cluster.mode, "tolerance": tolerance, "sample": sample,
                        "seed": seed if sample is not None else None,
                        "window": [None if lo is None else str(lo.date()),
                                   None if hi is None else str(hi.date())]},
             "note": cluster.fallback_reason},
            job.symbols + invalid + list(unserved),
        )
        callback.on_start({"job_id": job.job_id, "mode": cluster.mode,
                           "n_symbols": report.n_symbols, "n_chunks": len(chunks),
                           "dashboard_link": cluster.dashboard_link, "db": str(db)})
        callback.set_size(report.n_symbols)
        run = _Run(store, job, windows.set_index("symbol"), float(tolerance), report, callback)
        status, raising = JobStatus.FAILED, False
        try:
            if invalid or unserved:
                bad = [outcome(s, Status.FAILED, error=UsageError(
                    f"not a symbol provider {provider.name!r} serves")) for s in invalid]
                bad += [outcome(s, Status.FAILED, error=UsageError(why))
                        for s, why in unserved.items()]
                run.record(bad, _findings([], "", [], None, [], [], ""))
            limits = _limits(job, cluster, max_concurrency=max_concurrency, max_rate=max_rate,
                             trip_after=TRIP_AFTER, cooldown=COOLDOWN)
            loop = EachLoop(
                cluster, chunks,
                functools.partial(chunk_task, provider, freq=freq, adjust=adjust,
                                  retries=RETRIES, timeout=CALL_TIMEOUT, job_id=job.job_id,
                                  limits=limits, ticks=run.topic),
                run.take, worker_timeout=worker_timeout, job_id=job.job_id, limits=limits,
                idle=store.idle, ticks=(run.topic, run.tick), cancel=cancel)
            if cancel is not None:
                cancel.kdist_watched = True  # the CLI's signal handler sets it, never raises
            finished = loop.run()
            status = report.final_status() if finished else JobStatus.CANCELLED
        except KeyboardInterrupt:
            status, raising = JobStatus.CANCELLED, True
            raise
        except ClusterError as exc:
            status, raising = JobStatus.INTERRUPTED, True
            raise type(exc)(f"{exc}; the findings so far are kept (job {job.job_id}); run "
                            "kdist verify again", **{**exc.__dict__, "job_id": job.job_id}
                            ) from exc
        except BaseException:
            raising = True
            raise
        finally:
            if cancel is not None:
                cancel.kdist_watched = False
            report.status = str(status)
            report.elapsed_s = round(time.perf_counter() - t0, 3)
            try:
                store.finish_job(job.job_id, status=report.status, elapsed_s=report.elapsed_s,
                                 note=report.note)
            except StoreError:
                if not raising:
                    raise
            finally:
                callback.on_finish(report)
    return report


def _windows(store: Store, provider: Provider, symbols, sample, seed, lo, hi, freq: Freq,
             adjust: Adjust) -> tuple[pd.DataFrame, list[str]]:
    """The stored series to compare and each one's window: ``symbol, since, full, stop``
    (``stop`` exclusive), and the chosen symbols ``provider`` cannot serve."""
    stored = _stored(store, freq, adjust)
    what = f"{freq.value} {adjust.value}"
    if stored.empty:
        raise UsageError(f"Nothing is stored in {store.path} as {what} bars to verify; "
                         "'kdist status' lists what is stored")
    names = stored["symbol"].tolist()
    if symbols is not None:
        wanted, _ = parse_symbols(symbols, strict=False)
        if not wanted:
            raise UsageError("No symbols to verify: name some, or give sample=N, or none "
                             "for every stored one")
        known = set(names)
        missing = [s for s in wanted if s not in known]
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more"
                                              if len(missing) > 5 else "")
            raise UsageError(f"Not stored in {store.path} as {what} bars: {shown}; verify "
                             "compares stored series ('kdist status' lists them)")
        chosen = wanted
    elif sample is not None:
        chosen = sorted(random.Random(int(seed)).sample(sorted(names), min(sample, len(names))))
    else:
        chosen = names
    valid, _ = parse_symbols(chosen, skip_invalid=True, provider=provider)
    served = set(valid)
    invalid = [s for s in chosen if s not in served]
    rows = stored.set_index("symbol").loc[[s for s in chosen if s in served]]
    since = (rows["first"].dt.normalize() if lo is None
             else pd.Series(lo, index=rows.index))
    last = rows["last"].dt.normalize() if hi is None else pd.Series(hi, index=rows.index)
    windows = pd.DataFrame({
        "symbol": rows.index.astype(str),
        "since": since.astype("datetime64[us]").to_numpy(),
        "stop": (last + pd.Timedelta(days=1)).astype("datetime64[us]").to_numpy(),
    })
    windows["full"] = windows["since"]
    if windows.empty and not invalid:
        raise UsageError("No symbols to verify")
    if windows.empty:
        raise UsageError(f"Provider {provider.name!r} serves none of the symbols chosen "
                         f"({', '.join(invalid[:5])})")
    return windows, invalid


def _served(windows: pd.DataFrame, provider: Provider, freq: Freq, now=None):
    """The windows clipped to the first day ``provider`` serves ``freq`` bars on (its rolling
    or fixed horizon, :meth:`~kdist.providers.Provider.horizon`): ``(windows, unserved,
    note)``; ``unserved``: the symbols whose window ends before that day, each with why it
    is not compared; ``note``: what the report says of the clipping (None: nothing clipped).
    Bars stored before that day are not compared."""
    horizon = provider.horizon(freq)
    first = horizon.first_served(now) if horizon is not None else None
    if first is None:
        return windows, {}, None
    served = np.datetime64(pd.Timestamp(first).normalize(), "us")
    clipped = windows["since"].to_numpy() < served
    if not clipped.any():
        return windows, {}, None
    if horizon.days is not None and (horizon.earliest is None or first > horizon.earliest):
        how = f"for the last {horizon.days} days"
    else:
        how = f"from {pd.Timestamp(first).date()} on"
    said = f"{provider.name} serves {freq.value} bars {how}"
    gone = windows["stop"].to_numpy() <= served
    unserved = {s: f"every stored bar is before {pd.Timestamp(first).date()}: {said}; "
                   "nothing to compare" for s in windows["symbol"][gone]}
    if gone.all():
        raise UsageError(f"Nothing to verify: {said} (from {pd.Timestamp(first).date()}) "
                         f"and every stored {freq.value} bar chosen is older")
    windows = windows[~gone].copy()
    for col in ("since", "full"):
        windows[col] = np.maximum(windows[col].to_numpy(), served)
    note = (f"windows start at {pd.Timestamp(first).date()}: {said}; the bars stored before "
            "are not compared")
    if unserved:
        note += f" ({len(unserved)} symbol{'s' if len(unserved) > 1 else ''} with none since)"
    return windows.reset_index(drop=True), unserved, note


def _stored(store: Store, freq: Freq, adjust: Adjust) -> pd.DataFrame:
    """``symbol, first, last`` of every series :meth:`Store.load` reads as ``freq``/``adjust``:
    stored bars, and for qfq/hfq the raw bars of symbols whose corporate actions are stored
    (their adjusted bars are derived)."""
    series = store.series(freq, adjust)[["symbol", "first", "last"]]
    if adjust is not Adjust.NONE and store.has_actions:
        derivable = store.derivable()
        if derivable:
            raw = store.series(freq, Adjust.NONE)[["symbol", "first", "last"]]
            raw = raw[raw["symbol"].isin(derivable)]
            series = pd.concat([series[~series["symbol"].isin(raw["symbol"])], raw])
    return series.sort_values("symbol").reset_index(drop=True)


class _Run:
    """One verification's client side: each finished chunk compared with the stored bars and
    recorded, its symbols' progress shown."""

    def __init__(self, store: Store, job: _Job, windows: pd.DataFrame, tolerance: float,
                 report: VerifyReport, callback: Callback):
        self.store, self.job, self.windows = store, job, windows
        self.tolerance, self.report, self.callback = tolerance, report, callback
        self.topic = f"kdist-ticks-{job.job_id}"
        self.inside: dict[int, int] = {}
        self.taken: set[int] = set()
        self.finished = self.shown = self.chunks = 0
        self.said = report.note  # the report's note before any chunk (the horizon's)
        self.theirs = (job.provider.name, job.provider.bar_time)

    def tick(self, index: int, done: int):
        if index not in self.taken:
            self.inside[index] = done

    def take(self, result, chunk):
        """Compare one chunk's bars with ours, record its outcomes and findings."""
        self.taken.add(chunk.index)
        self.inside.pop(chunk.index, None)
        fetched = {o["symbol"]: o for o in result.outcomes}
        symbols = [s for s in chunk.symbols if s in fetched]  # the rest stay pending
        theirs = _within(result.bars, self.windows)
        asked = [s for s in symbols if fetched[s]["status"] == Status.OK]
        ours = _within(self._ours(asked), self.windows) if asked else theirs.iloc[:0]
        spans = theirs.groupby("symbol", observed=True)["ts"].agg(["min", "max"])
        outcomes, compared = [], []
        for s in symbols:
            o = fetched[s]
            since = self.windows.at[s, "since"]
            if o["status"] != Status.OK:
                outcomes.append({**o, "window_start": since})
            elif s not in spans.index:  # bars, but none in this symbol's window
                outcomes.append(outcome(s, Status.EMPTY, attempts=o["attempts"],
                                        rejected=o.get("rejected"), start=since))
            else:
                compared.append(s)
                # rows: none written (the job's rows_written stays 0).
                outcomes.append(outcome(s, Status.OK, first=spans.at[s, "min"],
                                        last=spans.at[s, "max"], attempts=o["attempts"],
                                        rejected=o.get("rejected"), start=since))
        theirs = theirs[theirs["symbol"].isin(compared)]
        ours = ours[ours["symbol"].isin(compared)]
        declared = (_conventions(ours) if self.job.freq.intraday else {}, {None: self.theirs})
        found, both = _compare(ours, theirs, self.tolerance, self.job.freq, declared)
        self.report.bars_compared += both
        self.record(outcomes, found)
        self.chunks += 1
        self.callback.on_chunks(self.chunks, self.report.n_chunks)
        tripped = [o["error"] for o in result.outcomes if o["status"] == Status.SKIPPED]
        if tripped:
            self.report.note = "; ".join(n for n in (self.said, tripped[0]) if n)

    def _ours(self, symbols: list[str]) -> pd.DataFrame:
        w = self.windows.loc[symbols]
        return self.store.load(symbols, w["since"].min(),
                               w["stop"].max() - pd.Timedelta(days=1), self.job.freq,
                               self.job.adjust)

    def record(self, outcomes: list[dict], found: pd.DataFrame):
        self.store.write_findings(found, outcomes, job_id=self.job.job_id, freq=self.job.freq,
                                  adjust=self.job.adjust, against=self.job.provider.name)
        self.report.count(outcomes, found)
        self.callback.on_symbols(outcomes)
        self.finished += len(outcomes)
        total = self.report.n_symbols
        done = min(total, self.finished + sum(list(self.inside.values())))
        if done > self.shown:
            self.shown = done
            self.callback.on_progress(done, total)


def _conventions(ours: pd.DataFrame) -> dict:
    """``{symbol: (source, declared bar_time)}`` of the stored bars: the stamp convention of
    the provider each symbol's bars came from (its first bar's), where one is declared."""
    if ours.empty or "source" not in ours:
        return {}
    sources = ours.groupby("symbol", sort=False)["source"].first().dropna().astype(str)
    declared = {}
    for name in sources.unique().tolist():  # a few sources, not bars
        try:
            declared[name] = provider_class(name).bar_time
        except KdistError:
            declared[name] = None  # a source no installed provider knows
    return {s: (name, declared[name]) for s, name in sources.items()}


def _within(bars: pd.DataFrame, windows: pd.DataFrame) -> pd.DataFrame:
    """The bars of each symbol inside its window (``since`` .. ``stop``, exclusive)."""
    if bars is None or bars.empty:
        return pd.DataFrame({c: pd.Series(dtype="datetime64[us]" if c == "ts" else
                                          "object" if c == "symbol" else "float64")
                             for c in _COLUMNS})
    symbol = bars["symbol"].astype("str")
    ts = pd.to_datetime(bars["ts"]).astype("datetime64[us]")
    since, stop = symbol.map(windows["since"]), symbol.map(windows["stop"])
    keep = (ts >= since) & (ts < stop)
    out = bars.loc[keep.to_numpy()].copy()
    out["symbol"] = symbol[keep].to_numpy()
    out["ts"] = ts[keep].to_numpy()
    return out.reset_index(drop=True)
