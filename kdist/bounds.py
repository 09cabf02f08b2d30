"""Each stored series' first and last bar, kept beside ``kline`` by every write.

An update starts from every symbol's last stored bar, and a job asking for corporate actions
from every symbol's first raw bar. Reading them from ``kline`` is an aggregate over every
stored bar: 0.5 s for 30 million minute bars, a third of a one-day update's time, and
growing with the store while the update's own work does not (see docs/performance.md#updates).

So ``kdist_series`` (created with the other tables, :mod:`kdist.store`) holds one row per symbol, freq, adjust and source: the first and last
``ts`` of that source's bars of the series. :func:`update` brings the rows of a write's
symbols up to date inside the write's transaction, from what the write deleted (its
windows) and inserted (its bars), without reading ``kline`` in the common case:

- bars of the write's source outside a symbol's window are kept, and every bar inserted
  lies inside it, so the new first bar is the old one if it came before the window, else
  the first inserted; the new last bar likewise;
- a window that misses a source's stored range leaves that source's row as it was;
- anything else (a window that deletes another source's bars, or deletes bars with none
  inserted) is read back from ``kline`` for those symbols alone.

:func:`rebuild` fills the table from ``kline`` (a file made before it existed);
:meth:`kdist.store.Store.check` counts rows that disagree with ``kline``.
Identifiers are fixed text; every value goes through a ``?`` parameter.
"""

from __future__ import annotations

import pandas as pd

_COLUMNS = ["symbol", "source", "first_ts", "last_ts"]


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
           inserted: bool) -> None:
    """After a write deleted the bars of ``windows`` (``symbol, start, stop``; stop
    exclusive) and inserted the registered ``kdist_batch`` (when ``inserted``) as
    ``source``, in the same transaction: bring the bounds of its symbols up to date."""
    if inserted:
        batch = con.execute(
            """SELECT symbol::VARCHAR AS symbol, min(ts)::TIMESTAMP AS bmin,
                      max(ts)::TIMESTAMP AS bmax
               FROM kdist_batch GROUP BY 1""").df()
    else:
        batch = pd.DataFrame({"symbol": pd.Series([], dtype="str"),
                              "bmin": pd.Series([], dtype="datetime64[us]"),
                              "bmax": pd.Series([], dtype="datetime64[us]")})
    win = windows[["symbol", "start", "stop"]].astype(
        {"symbol": "str", "start": "datetime64[us]", "stop": "datetime64[us]"})
    affected = pd.DataFrame({"symbol": pd.unique(
        pd.concat([win["symbol"], batch["symbol"]], ignore_index=True))}).astype("str")
    if not len(affected):
        return
    con.register("kdist_affected", affected)
    try:
        old = con.execute(
            """SELECT s.symbol, s.source, s.first_ts::TIMESTAMP AS first_ts,
                      s.last_ts::TIMESTAMP AS last_ts
               FROM kdist_series s SEMI JOIN kdist_affected a ON s.symbol = a.symbol
               WHERE s.freq = ? AND s.adjust = ?""", [freq, adjust]).df()
        rows, rescan = _bounds(old, win, batch, source)
        con.execute(
            """DELETE FROM kdist_series USING kdist_affected a
               WHERE kdist_series.symbol = a.symbol AND freq = ? AND adjust = ?""",
            [freq, adjust])
        con.register("kdist_bounds_new", rows)
        try:
            con.execute(
                """INSERT INTO kdist_series SELECT symbol, ?, ?, source, first_ts, last_ts
                   FROM kdist_bounds_new""", [freq, adjust])
        finally:
            con.unregister("kdist_bounds_new")
    finally:
        con.unregister("kdist_affected")
    if rescan:
        con.register("kdist_rescan", pd.DataFrame({"symbol": pd.Series(rescan, dtype="str")}))
        try:
            con.execute(
                """INSERT INTO kdist_series
                   SELECT k.symbol, k.freq, k.adjust, k.source, min(k.ts), max(k.ts)
                   FROM kline k SEMI JOIN kdist_rescan r ON k.symbol = r.symbol
                   WHERE k.freq = ? AND k.adjust = ? GROUP BY ALL""", [freq, adjust])
        finally:
            con.unregister("kdist_rescan")


def _bounds(old: pd.DataFrame, win: pd.DataFrame, batch: pd.DataFrame,
            source: str) -> tuple[pd.DataFrame, list[str]]:
    """The new rows of the affected symbols that follow from the old rows, the windows and
    the inserted bars' bounds, and the symbols whose rows only ``kline`` can tell."""
    old = old.astype({"symbol": "str", "first_ts": "datetime64[us]",
                      "last_ts": "datetime64[us]"})
    batch = batch.astype({"symbol": "str"})
    ours = old["source"].eq(source)
    # The write's own source: one row per symbol that had bars of it or got some.
    mine = pd.merge(old[ours], batch, on="symbol", how="outer")
    mine["source"] = source
    mine = mine.merge(win, on="symbol", how="left")
    has_window = mine["start"].notna()
    has_bars = mine["bmin"].notna()
    had = mine["first_ts"].notna()
    inside = ~has_window | ((mine["bmin"] >= mine["start"]) & (mine["bmax"] < mine["stop"]))
    hits = has_window & had & (mine["first_ts"] < mine["stop"]) & (mine["last_ts"] >= mine["start"])
    # The old first and last bars stay unless the window deleted them. A deleted first
    # bar's successor is the first inserted bar: the kept bars from the window's stop on
    # come after every inserted bar (and likewise for the last).
    def kept(ts):
        return mine[ts].where(~((mine[ts] >= mine["start"]) & (mine[ts] < mine["stop"])))

    first, last = kept("first_ts"), kept("last_ts")
    mine["first_ts"] = pd.concat([first, mine["bmin"]], axis=1).min(axis=1)
    mine["last_ts"] = pd.concat([last, mine["bmax"]], axis=1).max(axis=1)
    # Deleted bars with none inserted, or bars outside their window: read them back.
    unknown = (has_bars & ~inside) | (~has_bars & hits)
    # Other sources: unchanged unless the window reaches into their stored range.
    theirs = old[~ours].merge(win, on="symbol", how="left")
    replaced = (theirs["start"].notna() & (theirs["first_ts"] < theirs["stop"])
                & (theirs["last_ts"] >= theirs["start"]))
    rescan = sorted(set(mine.loc[unknown, "symbol"]) | set(theirs.loc[replaced, "symbol"]))
    rows = pd.concat([mine[_COLUMNS], theirs[_COLUMNS]], ignore_index=True)
    rows = rows[~rows["symbol"].isin(rescan)].dropna(subset=["first_ts", "last_ts"])
    return rows.reset_index(drop=True), rescan
