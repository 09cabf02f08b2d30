"""Keeping ``kline`` clustered by symbol while updates append to it.

DuckDB skips a row group when its min/max statistics exclude a filter's value. An import
writes each symbol's bars together, so a read of one symbol skips almost every row group
(see docs/performance.md#layout). An update writes a few bars of every symbol, and DuckDB
appends them to the table's last row group: after a few weeks of daily updates that tail
holds every symbol, interleaved, and every read of one symbol scans all of it. Each
unskippable row group costs a one-symbol read about as much as the whole read of a clustered
table.

So the bars an update appends are sorted into place once they fill a row group, in three
regions told apart by ``ts`` (two marks kept in ``kdist_meta``):

- ``ts <= sorted_from``: written by imports, or sorted before and left alone since;
- ``sorted_from < ts <= sorted_through``: one run sorted by ``(symbol, freq, adjust, ts)``,
  where a one-symbol read touches one or two row groups;
- ``ts > sorted_through``: the tail updates appended since, in arrival order.

When the tail holds a row group's worth of bars (:data:`TAIL_ROWS`), :func:`maintain`
rewrites the sorted run and the tail as one sorted run, in one transaction: a kill leaves
the table as it was, never half-sorted. The run is rewritten whole each time, so it stays
one run; once it holds :data:`RUN_ROWS` bars it is left alone (``sorted_from`` moves up) and
a new run starts, so no rewrite grows with the store. Bars written by an import after the
marks (new symbols, a re-import) sit in its own clustered row groups; those with ``ts`` in
the tail are sorted with it, the others stay where they are.

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
#: so no sort rewrites more than about a million bars (see docs/performance.md#layout).
RUN_ROWS = 8 * ROW_GROUP

_FROM, _THROUGH = "layout_sorted_from", "layout_sorted_through"


@dataclass
class Maintenance:
    """What :func:`maintain` did: the bars it sorted, in how many seconds, and whether the
    sorted run was then left alone."""

    rows: int
    seconds: float
    closed_run: bool

    def __str__(self) -> str:
        return (f"sorted the {self.rows:,} most recent bars by symbol in {self.seconds:.2f} s "
                "(reads of one symbol skip them again)")


def _get(con, key: str) -> pd.Timestamp | None:
    row = con.execute("SELECT value FROM kdist_meta WHERE key = ?", [key]).fetchone()
    return None if row is None or row[0] is None else pd.Timestamp(row[0])


def _set(con, key: str, value: pd.Timestamp | None):
    con.execute("DELETE FROM kdist_meta WHERE key = ?", [key])
    con.execute("INSERT INTO kdist_meta VALUES (?, ?)",
                [key, None if value is None else value.isoformat()])


def _last_ts(con) -> pd.Timestamp | None:
    last = con.execute("SELECT max(ts)::TIMESTAMP FROM kline").fetchone()[0]
    return None if last is None else pd.Timestamp(last)


def marks(con) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """``(sorted_from, sorted_through)``, or Nones when no update has been marked yet."""
    return _get(con, _FROM), _get(con, _THROUGH)


def mark(con) -> None:
    """Before an update's first write: where its appended bars will start. A store that has
    no marks yet (only imports so far, or written by an older kdist) is clustered up to its
    last bar; one that has them keeps them."""
    if _get(con, _THROUGH) is not None:
        return
    last = _last_ts(con)
    if last is not None:
        _set(con, _FROM, last)
        _set(con, _THROUGH, last)


def tail_rows(con) -> int:
    """Bars appended after the sorted run: the row groups a one-symbol read cannot skip."""
    through = _get(con, _THROUGH)
    if through is None:
        return 0
    # The bound in the column's type, so DuckDB skips row groups by their ts statistics.
    return con.execute("SELECT count(*) FROM kline WHERE ts > ?::TIMESTAMP_S",
                       [through]).fetchone()[0]


def due(con, tail_threshold: int | None = None) -> bool:
    """Whether the tail has grown to a row group's worth of bars (or ``tail_threshold``)."""
    return tail_rows(con) >= (TAIL_ROWS if tail_threshold is None else tail_threshold)


def maintain(con, *, run_rows: int | None = None) -> Maintenance:
    """Sort the sorted run and the tail into one run, in the caller's transaction; close the
    run when it has grown to ``run_rows`` bars."""
    t0 = time.perf_counter()
    start, last = _get(con, _FROM), _last_ts(con)
    if start is None or last is None:
        return Maintenance(0, 0.0, False)
    con.execute(
        """CREATE OR REPLACE TEMP TABLE kdist_resort AS
           SELECT * FROM kline WHERE ts > ?::TIMESTAMP_S ORDER BY symbol, freq, adjust, ts""",
        [start])
    try:
        rows = con.execute("SELECT count(*) FROM kdist_resort").fetchone()[0]
        con.execute("DELETE FROM kline WHERE ts > ?::TIMESTAMP_S", [start])
        con.execute("INSERT INTO kline SELECT * FROM kdist_resort")
    finally:
        con.execute("DROP TABLE IF EXISTS kdist_resort")
    closed = rows >= (RUN_ROWS if run_rows is None else run_rows)
    _set(con, _THROUGH, last)
    if closed:
        _set(con, _FROM, last)
    return Maintenance(rows, time.perf_counter() - t0, closed)
