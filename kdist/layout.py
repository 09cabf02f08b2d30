"""Keeping ``kline`` clustered by symbol while updates append to it.

DuckDB skips a row group when its min/max statistics exclude a filter's value. An import
writes each symbol's bars together, in chunks of contiguous symbols, so a read of one symbol
skips almost every row group (see docs/performance.md#layout). An update writes a few bars of
every symbol, and DuckDB appends them to the table's last row group: after a few weeks of
daily updates that tail holds every symbol, interleaved, and every read of one symbol scans
all of it. Each unskippable row group costs a one-symbol read about as much as the whole
read of a clustered table.

So the bars updates append are sorted into place once they fill a row group. Each series
(``freq``, ``adjust``) has three regions told apart by ``ts``, with two marks kept in
``kdist_meta`` per series (series move forward on their own: minute and daily updates run
at different times, and a daily bar is stamped at midnight, before the day's minutes):

- ``ts <= sorted_from``: written by imports, or sorted before and left alone since;
- ``sorted_from < ts <= sorted_through``: one run sorted by ``(symbol, ts)``, where a
  one-symbol read touches one or two row groups;
- ``ts > sorted_through``: the tail updates appended since, in arrival order.

When the tail holds a row group's worth of bars (:data:`TAIL_ROWS`), :func:`maintain`
rewrites the run and the tail as one sorted run, in one transaction: a kill leaves the
table as it was, never half-sorted. The run is rewritten whole each time, so it stays one
run; once it holds :data:`RUN_ROWS` bars it is left alone (``sorted_from`` moves up) and a
new run starts. A tail of :data:`RUN_ROWS` bars or more was written in large batches (an
import of new symbols, a catch-up after weeks): its chunks are contiguous symbols already,
so it is left as it is and the marks move past it. No sort rewrites more than twice
:data:`RUN_ROWS` bars, however large the store.

Identifiers are fixed text; every value goes through a ``?`` parameter.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd

#: Rows in one DuckDB row group (its default ``row_group_size``).
ROW_GROUP = 122_880
#: Appended bars that start a sort: one row group, the most a one-symbol read then scans of
#: the tail.
TAIL_ROWS = ROW_GROUP
#: Sorted-run size after which the run is left alone and a new one starts: eight row groups,
#: so no sort rewrites more than about two million bars (see docs/performance.md#layout).
RUN_ROWS = 8 * ROW_GROUP


@dataclass
class Maintenance:
    """What :func:`maintain` did: the bars it sorted (0 when it only moved the marks past a
    tail written in large batches), in how many seconds, and whether the run was closed."""

    rows: int
    seconds: float
    closed_run: bool
    series: str = ""

    def __str__(self) -> str:
        if not self.rows:
            return (f"{self.series}: the bars appended since the last sort came in large "
                    "batches, clustered already; nothing sorted")
        return (f"{self.series}: sorted the {self.rows:,} most recent bars by symbol in "
                f"{self.seconds:.2f} s (reads of one symbol skip them again)")


def _keys(freq: str, adjust: str) -> tuple[str, str]:
    return (f"layout_sorted_from {freq} {adjust}", f"layout_sorted_through {freq} {adjust}")


def _get(con, key: str) -> pd.Timestamp | None:
    row = con.execute("SELECT value FROM kdist_meta WHERE key = ?", [key]).fetchone()
    return None if row is None or row[0] is None else pd.Timestamp(row[0])


def _set(con, key: str, value: pd.Timestamp):
    con.execute("DELETE FROM kdist_meta WHERE key = ?", [key])
    con.execute("INSERT INTO kdist_meta VALUES (?, ?)", [key, value.isoformat()])


def _last_ts(con, freq: str, adjust: str) -> pd.Timestamp | None:
    last = con.execute("SELECT max(ts)::TIMESTAMP FROM kline WHERE freq = ? AND adjust = ?",
                       [freq, adjust]).fetchone()[0]
    return None if last is None else pd.Timestamp(last)


def marks(con, freq: str, adjust: str) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """``(sorted_from, sorted_through)`` of a series, or Nones before its first update."""
    start, through = _keys(freq, adjust)
    return _get(con, start), _get(con, through)


def mark(con, freq: str, adjust: str) -> None:
    """Before an update's first write: where the bars it appends to the series will start.
    A series without marks yet (only imports so far, or written by an older kdist) counts as
    clustered up to its last bar; one that has them keeps them."""
    start, through = _keys(freq, adjust)
    if _get(con, through) is not None:
        return
    last = _last_ts(con, freq, adjust)
    if last is not None:
        _set(con, start, last)
        _set(con, through, last)


def tail_rows(con, freq: str, adjust: str) -> int:
    """Bars of the series appended after its sorted run."""
    through = _get(con, _keys(freq, adjust)[1])
    if through is None:
        return 0
    # The bound in the column's type, so DuckDB skips row groups by their ts statistics.
    return con.execute(
        """SELECT count(*) FROM kline
           WHERE freq = ? AND adjust = ? AND ts > ?::TIMESTAMP_S""",
        [freq, adjust, through]).fetchone()[0]


def maintain(con, freq: str, adjust: str, *, tail: int | None = None) -> Maintenance:
    """Sort the series' run and tail into one run, in the caller's transaction, or move the
    marks past a tail written in large batches; close the run once it holds
    :data:`RUN_ROWS` bars. ``tail``: :func:`tail_rows`, if the caller counted it."""
    t0 = time.perf_counter()
    series = f"{freq} {adjust}"
    start_key, through_key = _keys(freq, adjust)
    start, last = _get(con, start_key), _last_ts(con, freq, adjust)
    if start is None or last is None:
        return Maintenance(0, 0.0, False, series)
    tail = tail_rows(con, freq, adjust) if tail is None else tail
    if tail >= RUN_ROWS:
        _set(con, start_key, last)
        _set(con, through_key, last)
        return Maintenance(0, time.perf_counter() - t0, True, series)
    con.execute(
        """CREATE OR REPLACE TEMP TABLE kdist_resort AS
           SELECT * FROM kline WHERE freq = ? AND adjust = ? AND ts > ?::TIMESTAMP_S
           ORDER BY symbol, ts""",
        [freq, adjust, start])
    rows = con.execute("SELECT count(*) FROM kdist_resort").fetchone()[0]
    con.execute("DELETE FROM kline WHERE freq = ? AND adjust = ? AND ts > ?::TIMESTAMP_S",
                [freq, adjust, start])
    con.execute("INSERT INTO kline SELECT * FROM kdist_resort")
    # Dropped here, not in a ``finally``: after a failed statement the transaction is
    # aborted (a DROP would hide the real error), and its rollback drops the table anyway.
    con.execute("DROP TABLE kdist_resort")
    closed = rows >= RUN_ROWS
    _set(con, through_key, last)
    if closed:
        _set(con, start_key, last)
    return Maintenance(rows, time.perf_counter() - t0, closed, series)
