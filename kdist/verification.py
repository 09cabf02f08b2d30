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

The rules, per symbol, on the bars of both sides joined by ``ts``:

- ``only_ours`` / ``only_theirs``: a bar one side has and the other not, one finding each.
- ``price``: ``open high low close`` differ when ``|ours - theirs| > max(0.01,
  tolerance * |theirs|)``: a difference of a cent never counts (vendors round prices to
  cents), above that the relative ``tolerance`` (default 0.5%).
- ``adjust``: the sides are adjusted differently (one qfq or hfq, the other raw, or adjusted
  at other dates): at least :data:`ADJUST_MIN_BARS` closes differ, and the close ratio
  theirs/ours is piecewise constant with few steps (at most :data:`ADJUST_MAX_STEPS`, or one
  per 20 bars compared; a step is a close off the previous bar's ratio by more than
  max(0.02, tolerance * |theirs|), as two prices rounded to cents can be). One finding for the symbol names the step dates and the ratio
  range, instead of a price finding per bar; a lone bar off its neighbours' ratio is still a
  ``price`` finding (its close).
- ``volume_units``: the median of ours/theirs over the bars where both volumes are above
  zero is within 5% of 100 or 1/100 (or 10 and 1/10 for bonds and repo, counted in 手 of
  10): one side counts shares, the other 手 (lots). One finding for the symbol, instead of a
  volume finding per bar.
- ``volume``: otherwise a bar's volumes differ when ``|ours - theirs| > max(tolerance,
  0.01) * max(|ours|, |theirs|)`` (a missing volume on either side is not compared).

``amount`` is not compared (vendors differ in what they sum).
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
from .errors import ClusterError, InvalidOptionError, StoreError, UsageError
from .fetching import CALL_TIMEOUT, RETRIES
from .fetching import task as chunk_task
from .ledger import VERIFY_MODE
from .loop import EachLoop
from .outcome import JobStatus, Status, outcome
from .plan import estimate_rows, plan_chunks
from .progress import Callback, display
from .providers import Provider, get_provider
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

__all__ = ["KINDS", "TOLERANCE", "VerifyReport", "compare_bars", "verify"]

#: Relative price tolerance by default: 0.5% of their price.
TOLERANCE = 0.005
#: A price difference of this much never counts: vendors round prices to cents.
CENT = 0.01
#: The kinds of finding, in the order reports list them.
KINDS = ("only_ours", "only_theirs", "price", "volume", "volume_units", "adjust")
#: An adjustment mismatch needs at least this many differing closes...
ADJUST_MIN_BARS = 3
#: ... and at most this many steps of the close ratio (or one per 20 bars compared).
ADJUST_MAX_STEPS = 4
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

_PRICES = ("open", "high", "low", "close")
_COLUMNS = ("symbol", "ts", *_PRICES, "volume")
_EPS = 1e-9  # float noise: 10.01 - 10.00 is not more than a cent


# -- the comparison -----------------------------------------------------------------------


def compare_bars(ours: pd.DataFrame, theirs: pd.DataFrame, *,
                 tolerance: float = TOLERANCE) -> pd.DataFrame:
    """What differs between two sides' bars (the rules are the module's docstring).

    Parameters
    ----------
    ours, theirs
        Bars with ``symbol, ts, open, high, low, close`` and ``volume`` (NaN or missing: not
        compared), each side already cut to the windows to compare.
    tolerance
        Relative price tolerance; a cent never counts.

    Returns
    -------
    pandas.DataFrame
        One row per finding: ``symbol, kind, ts, field, ours, theirs, detail``, by symbol and
        ts (a symbol's own findings, with no ts, first).
    """
    return _compare(ours, theirs, tolerance)[0]


def _compare(ours: pd.DataFrame, theirs: pd.DataFrame, tolerance: float):
    """:func:`compare_bars`, and how many bars both sides have."""
    merged = _side(ours).merge(_side(theirs), on=["symbol", "ts"], how="outer",
                               suffixes=("_o", "_t"), indicator=True)
    merged = merged.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)
    side = merged["_merge"].to_numpy()
    found = []
    for which, kind, detail in (("left_only", "only_ours", "theirs has no such bar"),
                                ("right_only", "only_theirs", "ours has no such bar")):
        rows = merged[side == which]
        found.append(_findings(rows["symbol"], kind, rows["ts"], None, rows["close_o"],
                               rows["close_t"], detail))
    both = merged[side == "both"].reset_index(drop=True)
    if len(both):
        found += _prices(both, tolerance)
        found += _volumes(both, tolerance)
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
    """One side's bars in the columns and dtypes compared."""
    n = len(bars)
    frame = pd.DataFrame({
        "symbol": (bars["symbol"].astype("str").to_numpy() if n else np.array([], dtype=object)),
        "ts": pd.to_datetime(bars["ts"]).astype("datetime64[us]").to_numpy() if n
        else np.array([], dtype="datetime64[us]"),
    })
    for col in _COLUMNS[2:]:
        values = bars[col] if col in bars else np.full(n, np.nan)
        frame[col] = pd.to_numeric(pd.Series(values), errors="coerce").astype("float64").to_numpy()
    return frame


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
    """``price`` findings per bar and field, or one ``adjust`` finding per symbol."""
    symbol = both["symbol"].to_numpy(dtype=object)
    ts = both["ts"].to_numpy()
    codes, names = pd.factorize(symbol, sort=False)
    with np.errstate(invalid="ignore", divide="ignore"):
        off = {f: np.abs(both[f + "_o"].to_numpy() - both[f + "_t"].to_numpy())
               > _limit(tolerance, both[f + "_t"].to_numpy()) for f in _PRICES}
    adjusted, spike, details = _adjustment(codes, ts, both["close_o"].to_numpy(),
                                           both["close_t"].to_numpy(), off["close"], tolerance)
    found = []
    if adjusted.any():
        which = np.flatnonzero(adjusted)
        found.append(_findings(names[which], "adjust", None, "close", None, None,
                               [details[i] for i in which]))
    in_adjusted = adjusted[codes]
    for f in _PRICES:
        rows = np.flatnonzero(off[f] & ~in_adjusted)
        o, t = both[f + "_o"].to_numpy()[rows], both[f + "_t"].to_numpy()[rows]
        found.append(_findings(symbol[rows], "price", ts[rows], f, o, t, _differences(o, t)))
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
    detail per symbol)``.

    Walking each symbol's bars in time, a bar is a step when its close is off the previous
    bar's ratio theirs/ours (:data:`STEP_CENTS`, or the tolerance). A step whose next bar is
    back on the ratio before it (or a step at the last bar) is a spike, one bad bar, not a
    step. A symbol is adjusted differently when at least :data:`ADJUST_MIN_BARS` closes
    (spikes aside) differ and its ratio takes few steps.
    """
    n = len(codes)
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
    n_symbols = int(codes.max()) + 1 if n else 0
    bars = np.bincount(codes, minlength=n_symbols)
    differing = np.bincount(codes, weights=(off & ~spike).astype(float), minlength=n_symbols)
    n_steps = np.bincount(codes, weights=steps.astype(float), minlength=n_symbols)
    adjusted = (differing >= ADJUST_MIN_BARS) & (n_steps <= np.maximum(ADJUST_MAX_STEPS,
                                                                      bars // 20))
    details: dict[int, str] = {}
    if adjusted.any():
        piece = np.cumsum(steps | first) - 1
        keep = ~spike & np.isfinite(ratio)
        level = pd.Series(ratio[keep]).groupby(piece[keep]).median()
        owner = pd.Series(codes[keep]).groupby(piece[keep]).first()
        lows, highs = level.groupby(owner).min(), level.groupby(owner).max()
        for i in np.flatnonzero(adjusted):
            dates = [_day(t) for t in ts[steps & (codes == i)]]
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
    return adjusted, spike, details


def _units(symbols) -> np.ndarray:
    """The 手 of each symbol: 10 for bonds and repo, 100 otherwise."""
    kinds = kind_of(list(symbols))
    return np.array([10.0 if k in (Kind.BOND.value, Kind.REPO.value) else 100.0
                     for k in kinds.tolist()])


def _volumes(both: pd.DataFrame, tolerance: float) -> list[pd.DataFrame]:
    """One ``volume_units`` finding per symbol whose sides count in other units, else
    ``volume`` findings per bar."""
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
        off = (np.isfinite(ours) & np.isfinite(theirs) & ~units[codes]
               & (np.abs(ours - theirs)
                  > max(tolerance, 0.01) * np.maximum(np.abs(ours), np.abs(theirs)) + _EPS))
    rows = np.flatnonzero(off)
    o, t = ours[rows], theirs[rows]
    with np.errstate(invalid="ignore", divide="ignore"):
        r = o / t
    found.append(_findings(symbol[rows], "volume", both["ts"].to_numpy()[rows], "volume", o, t,
                           [f"ratio ours/theirs {x:.4g}" if math.isfinite(x) else "theirs 0"
                            for x in r.tolist()]))
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
    symbol was compared and nothing differs."""

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
    #: Compared symbols without any finding.
    symbols_agreeing: int = 0
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
    def ok(self) -> bool:
        """Every symbol compared (none failed, skipped or empty), and no finding."""
        return (self.n_findings == 0 and self.symbols_failed == 0 and self.symbols_empty == 0
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
        with_findings = found["symbol"].nunique()
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
        kinds = ", ".join(f"{n:,} {k}" for k, n in self.counts.items() if n)
        symbols = (f"{self.n_symbols:,}: {self.symbols_compared} compared "
                   f"({self.symbols_agreeing} agree, {self.symbols_with_findings} with "
                   f"findings)")
        symbols += "".join(f", {n} {what}" for n, what in (
            (self.symbols_failed, "failed"), (self.symbols_empty, "empty at " + self.against),
            (self.symbols_skipped, "skipped")) if n)
        rows = [
            ("verify", f"{self.job_id} ({self.status}): "
                       + ("agrees" if self.ok else "differs" if self.n_findings
                          else "not every symbol compared")),
            ("series", f"{self.freq} {self.adjust}  {self.start} .. {self.end}  in {self.db}"),
            ("against", f"{self.against} on {self.mode}"
                        + (f" (fallback: {self.fallback_reason})" if self.fallback_reason
                           else f" ({self.mode_reason})" if self.mode_reason else "")),
            ("symbols", symbols),
            ("bars", f"{self.bars_compared:,} compared"),
            ("findings", f"{self.n_findings:,}" + (f": {kinds}" if kinds else "")),
            ("rules", (f"a price off by more than max(0.01, {self.tolerance:.2%} of theirs), "
                       f"a volume by more than {max(self.tolerance, 0.01):.2%}; volume units "
                       "and adjustment per symbol")),
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
        shown = self.findings.head(limit) if self.n_findings else None
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

    def to_dict(self, limit: int | None = None) -> dict:
        """A JSON-ready dict: the counts, ``ok``, and the findings (the first ``limit``, or
        all) as records with ISO times."""
        data = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        data["counts"] = dict(self.counts)
        data["failures"] = dict(self.failures)
        data["empty"] = list(self.empty)
        data["ok"] = self.ok
        found = self.findings if self.n_findings else _findings([], "", [], None, [], [], "")
        if limit is not None:
            found = found.head(limit)
        data["findings"] = [
            {"symbol": r.symbol, "kind": r.kind,
             "ts": None if pd.isna(r.ts) else pd.Timestamp(r.ts).isoformat(),
             "field": r.field if isinstance(r.field, str) else None,
             "ours": None if pd.isna(r.ours) else float(r.ours),
             "theirs": None if pd.isna(r.theirs) else float(r.theirs),
             "detail": r.detail if isinstance(r.detail, str) else None}
            for r in found.itertuples(index=False)]
        return data

    def to_json(self, limit: int | None = None, **kwargs) -> str:
        """:meth:`to_dict` as JSON text."""
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
    job ledger (a job of mode ``verify``); nothing is written to ``kline``.

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
        stored bar.
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
        An unknown provider, invalid or unstored symbols, bad numbers; nothing is recorded.
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
        provider.check(freq=freq, adjust=adjust, start=windows["since"].min(),
                       end=windows["stop"].max())
        open_cluster = _cluster_opener(stack, cluster_options)
        if client is None and named_scheduler() is None and not provider.remote:
            bars = int(sum(estimate_rows(freq, a, b)
                           for a, b in zip(windows["since"], windows["stop"])))
            cluster = _auto_cluster(open_cluster, bars)
        else:
            cluster = open_cluster(client)
        job = _Job(_new_job_id(), list(windows["symbol"]), invalid, windows["since"].min(),
                   windows["stop"].max(), freq, adjust, provider, False, OVERLAP)
        report = VerifyReport(
            job_id=job.job_id, status=str(JobStatus.RUNNING), mode=cluster.mode,
            against=provider.name, freq=freq.value, adjust=adjust.value,
            start=str(job.start.date()), end=str((job.end - pd.Timedelta(days=1)).date()),
            db=str(db), tolerance=float(tolerance), n_symbols=len(job.symbols) + len(invalid),
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
            job.symbols + invalid,
        )
        callback.on_start({"job_id": job.job_id, "mode": cluster.mode,
                           "n_symbols": report.n_symbols, "n_chunks": len(chunks),
                           "dashboard_link": cluster.dashboard_link, "db": str(db)})
        callback.set_size(report.n_symbols)
        run = _Run(store, job, windows.set_index("symbol"), float(tolerance), report, callback)
        status, raising = JobStatus.FAILED, False
        try:
            if invalid:
                bad = [outcome(s, Status.FAILED, error=UsageError(
                    f"not a symbol provider {provider.name!r} serves")) for s in invalid]
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
        found, both = _compare(ours, theirs, self.tolerance)
        self.report.bars_compared += both
        self.record(outcomes, found)
        self.chunks += 1
        self.callback.on_chunks(self.chunks, self.report.n_chunks)
        tripped = [o["error"] for o in result.outcomes if o["status"] == Status.SKIPPED]
        if tripped:
            self.report.note = tripped[0]

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
