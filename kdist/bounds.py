"""Each stored series' first and last bar, kept beside ``kline`` by every write.

An update starts from every symbol's last stored bar, and a job asking for corporate actions
from every symbol's first raw bar. Reading them from ``kline`` is an aggregate over every
stored bar: 0.5 s for 30 million minute bars, a third of a one-day update's time, and
growing with the store while the update's own work does not (see docs/performance.md#updates).

So ``kdist_series`` (created with the other tables, :mod:`kdist.store`) holds one row per
symbol, freq, adjust and source: the first and last ``ts`` of that source's bars of the
series. :func:`update` brings the rows of a write's
symbols up to date inside the write's transaction, from what the write deleted (its
windows) and inserted (its bars), without reading ``kline`` in the common case:

- bars of the write's source outside a symbol's window are kept, and every bar inserted
  lies inside it, so the new first bar is the old one if it came before the window, else
  the first inserted; the new last bar likewise;
- a window that misses a source's stored range leaves that source's row as it was;
- anything else (a window that reaches another source's stored range, deletes bars with
  none inserted, or bars inserted outside their window) is read back from ``kline`` for
  those symbols alone.

:func:`rebuild` fills the table from ``kline`` (a file made before it existed);
:meth:`kdist.store.Store.check` counts rows that disagree with ``kline``.
Identifiers are fixed text; every value goes through a ``?`` parameter.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa


def rebuild(con) -> None:
    """Fill ``kdist_series`` from ``kline`` (one aggregate over every bar)."""
    con.execute("DELETE FROM kdist_series")
    con.execute(
        """INSERT INTO kdist_series
           SELECT symbol, freq, adjust, source, min(ts), max(ts) FROM kline GROUP BY ALL""")


def series(con, freq: str, adjust: str) -> pd.DataFrame:
    """``symbol, source, first, last`` of every stored symbol of one series: the source of
    its last bar and the bounds over every source, ordered by symbol."""
    return con.execute(
        """SELECT symbol, arg_max(source, last_ts) AS source,
                  min(first_ts)::TIMESTAMP AS first, max(last_ts)::TIMESTAMP AS last
           FROM kdist_series WHERE freq = ? AND adjust = ? GROUP BY symbol ORDER BY symbol""",
        [freq, adjust],
    ).df()


def stale(con) -> int:
    """Rows of ``kdist_series`` that disagree with ``kline`` (missing, extra or different):
    0 unless ``kline`` was changed by something other than kdist."""
    return con.execute(
        """WITH actual AS (SELECT symbol, freq, adjust, source, min(ts) AS first_ts,
                                  max(ts) AS last_ts FROM kline GROUP BY ALL)
           SELECT count(*) FROM (
               (SELECT * FROM actual EXCEPT ALL SELECT * FROM kdist_series)
               UNION ALL
               (SELECT * FROM kdist_series EXCEPT ALL SELECT * FROM actual))""",
    ).fetchall()[0][0]


def update(con, freq: str, adjust: str, source: str, windows: pd.DataFrame,
           inserted: bool, spans: dict | None = None) -> None:
    """After a write deleted the bars of ``windows`` (``symbol, start, stop``; stop
    exclusive) and inserted the registered ``kdist_batch`` (when ``inserted``) as
    ``source``, in the same transaction: bring the bounds of its symbols up to date.

    ``spans`` (``{symbol: (first, last)}``) are the inserted bars' bounds where the caller
    knows them; otherwise they are aggregated from ``kdist_batch``. Only a symbol with a
    window can have lost a kept first or last bar: its rows are worked out from the old ones.
    Every other symbol only gained bars, and one ``MERGE`` of an Arrow table widens its
    bounds (an import of new symbols, an update that appends). An import runs this once per
    batch: a list parameter of 5,000 times cost 13 ms to convert, a per-symbol aggregate of
    a batch's strings more (see docs/performance.md#updates)."""
    if inserted and spans is not None:
        names = list(spans)
        firsts = pd.DatetimeIndex([v[0] for v in spans.values()]).as_unit("us")
        lasts = pd.DatetimeIndex([v[1] for v in spans.values()]).as_unit("us")
    elif inserted:
        found = con.execute(
            """SELECT symbol::VARCHAR AS symbol, min(ts)::TIMESTAMP AS lo,
                      max(ts)::TIMESTAMP AS hi FROM kdist_batch GROUP BY 1""").df()
        names = found["symbol"].tolist()
        firsts = pd.DatetimeIndex(found["lo"]).as_unit("us")
        lasts = pd.DatetimeIndex(found["hi"]).as_unit("us")
    else:
        names, firsts, lasts = [], pd.DatetimeIndex([]), pd.DatetimeIndex([])
    starts = pd.to_datetime(windows["start"]).dt.to_pydatetime()
    stops = pd.to_datetime(windows["stop"]).dt.to_pydatetime()
    cuts = dict(zip(windows["symbol"].tolist(), zip(starts, stops)))
    # A window over stored bars may have deleted a first or last one: those symbols' rows
    # are worked out from what they were. Every other symbol only gained bars.
    old = con.execute(
        """SELECT symbol, source, first_ts::TIMESTAMP, last_ts::TIMESTAMP FROM kdist_series
           WHERE freq = ? AND adjust = ? AND symbol IN (SELECT unnest(?::VARCHAR[]))""",
        [freq, adjust, list(cuts)]).fetchall() if cuts else []
    worked = {r[0] for r in old}
    at = [k for k, name in enumerate(names) if name in worked]
    got = dict(zip([names[k] for k in at], zip(firsts[at].to_pydatetime(),
                                                lasts[at].to_pydatetime())))
    rows, rescan = _bounds(old, cuts, got, source)
    if old:
        con.execute(
            """DELETE FROM kdist_series WHERE freq = ? AND adjust = ?
                 AND symbol IN (SELECT unnest(?::VARCHAR[]))""", [freq, adjust, sorted(worked)])
    grown = [k for k, name in enumerate(names) if name not in worked]
    if rows:
        symbols, sources, lows, highs = (list(c) for c in zip(*rows))
        con.execute(
            """INSERT INTO kdist_series
               SELECT unnest(?::VARCHAR[]), ?, ?, unnest(?::VARCHAR[]),
                      unnest(?::TIMESTAMP[])::TIMESTAMP_S, unnest(?::TIMESTAMP[])::TIMESTAMP_S""",
            [symbols, freq, adjust, sources, lows, highs])
    if grown:
        # Bars added, none deleted: the bounds widen to take them in, or start with them.
        con.register("kdist_grown", pa.table({
            "symbol": pa.array([names[k] for k in grown], pa.string()),
            "first_ts": pa.array(firsts[grown].to_numpy()),
            "last_ts": pa.array(lasts[grown].to_numpy())}))
        try:
            con.execute(
                """MERGE INTO kdist_series t
                   USING (SELECT symbol, first_ts::TIMESTAMP_S AS first_ts,
                                 last_ts::TIMESTAMP_S AS last_ts FROM kdist_grown) g
                   ON t.symbol = g.symbol AND t.freq = ? AND t.adjust = ? AND t.source = ?
                   WHEN MATCHED THEN UPDATE SET first_ts = least(t.first_ts, g.first_ts),
                                                last_ts = greatest(t.last_ts, g.last_ts)
                   WHEN NOT MATCHED THEN
                       INSERT VALUES (g.symbol, ?, ?, ?, g.first_ts, g.last_ts)""",
                [freq, adjust, source, freq, adjust, source])
        finally:
            con.unregister("kdist_grown")
    if rescan:
        con.execute(
            """INSERT INTO kdist_series
               SELECT symbol, freq, adjust, source, min(ts), max(ts) FROM kline
               WHERE freq = ? AND adjust = ? AND symbol IN (SELECT unnest(?::VARCHAR[]))
               GROUP BY ALL""", [freq, adjust, rescan])


def _bounds(old: list[tuple], cuts: dict, got: dict, source: str) -> tuple[list, list]:
    """The new rows ``(symbol, source, first, last)`` of the affected symbols, from their
    stored rows (``old``, every source's), the windows (``cuts``: symbol to start, stop)
    and the inserted bars' bounds (``got``); and the symbols whose rows only ``kline`` can
    tell. A symbol with nothing stored takes the inserted bars' bounds (an import's usual
    batch: the window deleted nothing)."""

    def deleted(ts, w):  # the window removed the bar at ts
        return w is not None and w[0] <= ts < w[1]

    rows, rescan, ours = [], set(), set()
    for symbol, src, first, last in old:
        w = cuts.get(symbol)
        if src != source or symbol not in got:
            if src == source:
                ours.add(symbol)
            # No bars of this source inserted: as it was, unless the window reached it.
            if w is not None and first < w[1] and last >= w[0]:
                rescan.add(symbol)
            else:
                rows.append((symbol, src, first, last))
            continue
        ours.add(symbol)
        lo, hi = got[symbol]
        if w is not None and not (w[0] <= lo and hi < w[1]):
            rescan.add(symbol)  # bars outside their window: not what a write does
            continue
        # The old first and last bar stay unless the window deleted them. A deleted first
        # bar's successor is the first inserted bar: the kept bars from the window's stop
        # on come after every inserted bar (and likewise for the last).
        rows.append((symbol, src, lo if deleted(first, w) else min(first, lo),
                     hi if deleted(last, w) else max(last, hi)))
    for symbol, (lo, hi) in got.items():
        if symbol not in ours:  # nothing of this source was stored: its bars are these
            rows.append((symbol, source, lo, hi))
    return [r for r in rows if r[0] not in rescan], sorted(rescan)
