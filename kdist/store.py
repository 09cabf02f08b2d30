"""The DuckDB file's tables, batch writes and reads: :class:`Store`, ``load`` and ``check``.

One file holds the bars (``kline``) and the ledger (``kdist_jobs``, one row per job, and
``kdist_job_symbols``, one row per job and symbol). Only the client process writes.

Writes replace by window: in one transaction the batch's ``(symbol, freq, adjust, window)``
rows are deleted and the new rows inserted, together with the ledger rows of those symbols,
so a crash leaves either the whole batch or none of it, and a re-run or a recomputed task
never duplicates a bar. There is deliberately no PRIMARY KEY (it made bulk loads slower and
the file larger: see docs/performance.md#writes); uniqueness comes from the replace and from
:func:`kdist.schema.normalise` de-duplicating each symbol's frame, and :func:`check` proves it.

``kline.ts`` is ``TIMESTAMP_S`` (whole seconds; schema version 2): bars never have sub-second
parts, and seconds pack into fewer bits than microseconds (see
docs/performance.md#bytes-per-bar). Every read casts it back to ``TIMESTAMP``, so frames keep
``ts`` as ``datetime64[us]``; a write refuses sub-second timestamps rather than let DuckDB
round them. A version-1 file (``ts TIMESTAMP``) is migrated in place when opened read-write
and read as it is when opened read-only.

Who may open the file (one writer at a time, readers between its batches) and the
connection itself are :mod:`kdist.access`, the base of :class:`Store`; the job ledger's
statements are :mod:`kdist.ledger`, which :class:`Store` inherits.

Identifiers are fixed strings in this module; every value goes through a ``?`` parameter.
"""

from __future__ import annotations

import contextlib
import json
import os

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from . import bounds, layout
from .access import READ_WAIT, _store_error, _using
from .adjustment import compare_with_vendor, merge_actions, read_derived
from .errors import DatabaseLockedError, SchemaVersionError, StoreError, UsageError
from .gaps import SERIES_COLUMNS, Quality, check_gaps, held_bars
from .ledger import VERIFY_MODE, Ledger, _now, _version
from .outcome import LEDGER_COLUMNS
from .schema import Adjust, Freq, read_symbols, to_date

__all__ = ["DEFAULT_DB", "FINDING_COLUMNS", "Store", "catalog", "check", "check_adjust", "panel",
           "corporate_actions", "findings", "jobs", "ledger", "load", "quality",
           "quality_history"]

#: Where the CLI and the API put the database when ``db`` is not given.
DEFAULT_DB = "data/kdist.duckdb"
#: Version of the tables below, kept in ``kdist_meta``. 2: ``kline.ts`` is TIMESTAMP_S;
#: 3: the corporate actions (``kdist_actions``, ``kdist_action_checks``); 4: the data checks
#: (``kdist_quality``, one row per series and gap check; ``kdist_findings``, what a
#: cross-source verification found).
SCHEMA_VERSION = "5"
#: DuckDB memory limit of the writing connection (environment: KDIST_DUCKDB_MEMORY): a
#: lower limit lowers the client's peak until it slows the import
#: (see docs/performance.md#memory-limit).
WRITER_MEMORY = "192MB"
#: DuckDB memory limit while :meth:`Store.maintain` sorts the recent bars: enough for a
#: million bars in memory (see docs/performance.md#layout).
MAINTAIN_MEMORY = "1GB"
#: Block size of a new database file, in bytes (DuckDB's default is 262144).
BLOCK_SIZE = 131072

_DDL = """
CREATE TABLE IF NOT EXISTS kdist_meta (key VARCHAR NOT NULL, value VARCHAR);
CREATE TABLE IF NOT EXISTS kline (
    symbol VARCHAR NOT NULL,
    freq VARCHAR NOT NULL,
    adjust VARCHAR NOT NULL,
    ts TIMESTAMP_S NOT NULL,
    open DOUBLE,
    high DOUBLE,
    low DOUBLE,
    close DOUBLE,
    volume DOUBLE,
    amount DOUBLE,
    source VARCHAR
);
CREATE TABLE IF NOT EXISTS kdist_jobs (
    job_id VARCHAR NOT NULL,
    created_at TIMESTAMP,
    finished_at TIMESTAMP,
    status VARCHAR,
    mode VARCHAR,
    provider VARCHAR,
    provider_options VARCHAR,
    provider_version VARCHAR,
    freq VARCHAR,
    adjust VARCHAR,
    start DATE,
    "end" DATE,
    n_symbols INTEGER,
    symbols_ok INTEGER DEFAULT 0,
    symbols_empty INTEGER DEFAULT 0,
    symbols_failed INTEGER DEFAULT 0,
    symbols_skipped INTEGER DEFAULT 0,
    rows_written BIGINT DEFAULT 0,
    rejected_rows BIGINT DEFAULT 0,
    elapsed_s DOUBLE,
    kdist_version VARCHAR,
    params VARCHAR,
    note VARCHAR
);
CREATE TABLE IF NOT EXISTS kdist_job_symbols (
    job_id VARCHAR NOT NULL,
    symbol VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    rows BIGINT,
    first_ts TIMESTAMP,
    last_ts TIMESTAMP,
    attempts INTEGER,
    error_class VARCHAR,
    error VARCHAR,
    rejected_rows BIGINT,
    rejected VARCHAR,
    window_start TIMESTAMP,
    revised BOOLEAN,
    updated_at TIMESTAMP
);
""" + """
CREATE TABLE IF NOT EXISTS kdist_actions (
    symbol VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    ex_date DATE NOT NULL,
    cash DOUBLE,
    bonus DOUBLE,
    rights DOUBLE,
    rights_price DOUBLE,
    split DOUBLE,
    factor DOUBLE,
    factor_from VARCHAR,
    job_id VARCHAR,
    valid_from TIMESTAMP NOT NULL,
    valid_to TIMESTAMP
);
CREATE TABLE IF NOT EXISTS kdist_action_checks (
    symbol VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    start DATE,
    "end" DATE,
    splits_in_bars BOOLEAN,
    job_id VARCHAR,
    checked_at TIMESTAMP
);
""" + """
CREATE TABLE IF NOT EXISTS kdist_quality (
    checked_at TIMESTAMP NOT NULL,
    symbol VARCHAR NOT NULL,
    freq VARCHAR NOT NULL,
    adjust VARCHAR NOT NULL,
    source VARCHAR,
    calendar VARCHAR,
    bar_time VARCHAR,
    first TIMESTAMP,
    last TIMESTAMP,
    sessions BIGINT,
    bars BIGINT,
    suspended BIGINT,
    missing BIGINT,
    off_calendar BIGINT,
    unknown BIGINT,
    completeness DOUBLE
);
CREATE TABLE IF NOT EXISTS kdist_findings (
    job_id VARCHAR NOT NULL,
    symbol VARCHAR NOT NULL,
    freq VARCHAR,
    adjust VARCHAR,
    against VARCHAR,
    kind VARCHAR NOT NULL,
    ts TIMESTAMP,
    field VARCHAR,
    ours DOUBLE,
    theirs DOUBLE,
    detail VARCHAR
);
""" + """
CREATE TABLE IF NOT EXISTS kdist_series (
    symbol VARCHAR NOT NULL,
    freq VARCHAR NOT NULL,
    adjust VARCHAR NOT NULL,
    source VARCHAR,
    first_ts TIMESTAMP_S NOT NULL,
    last_ts TIMESTAMP_S NOT NULL
);
"""


#: The columns of a verification's finding, as :meth:`Store.findings` returns them.
FINDING_COLUMNS = ("symbol", "kind", "ts", "field", "ours", "theirs", "detail")


def _bar_span(freq: Freq) -> pd.Timedelta:
    """Calendar time one bar covers at most (a trading day for intraday bars' sessions)."""
    if freq.intraday:
        return pd.Timedelta(days=1)
    return {Freq.DAY: pd.Timedelta(days=1), Freq.WEEK: pd.Timedelta(days=7),
            Freq.MONTH: pd.Timedelta(days=31)}[freq]



def _ledger_rows(outcomes: list[dict]) -> pd.DataFrame:
    """A batch's outcomes as rows of ``kdist_job_symbols``, less ``job_id`` and ``updated_at``."""
    ledger = pd.DataFrame.from_records(outcomes, columns=list(LEDGER_COLUMNS))
    ledger["rejected"] = [json.dumps(r) if r else None for r in ledger["rejected"]]
    for col in ("first_ts", "last_ts", "window_start"):
        ledger[col] = pd.to_datetime(ledger[col]).astype("datetime64[us]")
    ledger["revised"] = ledger["revised"].eq(True)  # missing counts as not revised
    return ledger

def _replace_outcomes(con, job_id: str, now):
    """Replace the job's ledger rows of the symbols in the registered ``kdist_outcomes``
    with them (a batch's, or a verification chunk's), inside the caller's transaction."""
    con.execute(
        """DELETE FROM kdist_job_symbols
           WHERE job_id = ? AND symbol IN (SELECT symbol FROM kdist_outcomes)""",
        [job_id],
    )
    con.execute(
        """INSERT INTO kdist_job_symbols
           SELECT ?, symbol, status, rows, first_ts, last_ts, attempts, error_class,
                  error, rejected_rows, rejected, window_start, revised, ?
           FROM kdist_outcomes""",
        [job_id, now],
    )


class Store(Ledger):
    """A connection to one kdist DuckDB file.

    Opening creates the file and its tables if needed (``read_only=False``; ``create=False``
    refuses a missing file instead) and checks the schema version. A writer holds the file
    against other writers until :meth:`close`; between its statements it lets readers in
    (:meth:`idle`). Use it as a context manager so the file is released.

    Parameters
    ----------
    path
        The DuckDB file.
    read_only
        Open for reading: many readers may read at once, and between the batches of an import.
    create
        Create a missing file (writers only).
    adopt
        Add kdist's tables to an existing DuckDB file that has tables of its own (none of them
        named like kdist's). Without it such a file is refused, so that a mistyped ``--db``
        never changes another application's database.
    wait
        Seconds a reader waits for a kdist import to let it in (:data:`READ_WAIT`).

    Raises
    ------
    DatabaseLockedError
        Another import holds the file (for a reader: it did not let it in within ``wait``
        seconds), or a process that is not kdist holds it; the message names it.
    SchemaVersionError
        The file was written by an incompatible kdist schema.
    StoreError
        The file is not kdist's, or any other reason it cannot be opened (a missing
        directory, no permission).
    """

    def __init__(
        self, path: str | os.PathLike = DEFAULT_DB, *, read_only: bool = False,
        create: bool = True, adopt: bool = False, wait: float = READ_WAIT,
    ):
        # The writer's buffer pool is capped: DuckDB otherwise keeps every block it wrote
        # cached, so a long import's memory would grow with the table, not the batch. It
        # spills to disk past the cap; readers keep DuckDB's default.
        config = {}
        if not read_only:
            config["memory_limit"] = os.environ.get("KDIST_DUCKDB_MEMORY", WRITER_MEMORY)
            # DuckDB's optimistic writes stay on (its default): a large insert's row groups
            # go to the file once, not to the WAL and then the file at the checkpoint, and
            # the inserts take far less time (see docs/performance.md#writes). They waste
            # space only when a commit's row groups get rewritten, which write_batch avoids
            # (whole row groups, one Arrow chunk).
            # 128 KiB blocks instead of 256 KiB (used only when the file is created): each
            # commit ends in a partly filled row group whose segments leave blocks partly
            # used, and smaller blocks waste less, as fast; 64 KiB wasted less still but cost
            # client memory. A larger checkpoint_threshold or threads=1 did not help
            # reliably (see docs/performance.md#bytes-per-bar).
            config["default_block_size"] = str(BLOCK_SIZE)
        self._memory_limit = config.get("memory_limit")
        super().__init__(path, read_only=read_only, create=create, config=config)
        self._adopt = adopt
        #: Whether the file has the corporate-action tables (a version-2 file opened
        #: read-only has not: it reads as one without corporate actions).
        self.has_actions = False
        #: Whether the file has the data checks' tables (``kdist_quality``,
        #: ``kdist_findings``; not a version-3 file opened read-only).
        self.has_quality = False
        #: Whether the file keeps each series' first and last bar (``kdist_series``, see
        #: :mod:`kdist.bounds`; not a file of version 4 or older opened read-only).
        self.has_series = False
        #: Symbols whose corporate actions the last write added or revised.
        self.actions_new: list[str] = []
        # The per-symbol bounds series() read last, until the next write (incremental_windows).
        # They stay valid while the connection is closed: no other writer can get in.
        self._series: dict[tuple[Freq, Adjust], pd.DataFrame] = {}
        # Held while opening: once claimed, a reader's idle() call from another thread must
        # wait for the checks and the first transaction on the new connection.
        with self._use:
            try:
                self._open(wait)
                self._prepare()
                if not read_only:
                    self._mark_interrupted()
            except BaseException:
                self.close()
                raise

    # -- opening ---------------------------------------------------------------------------

    def _prepare(self):
        tables = {r[0] for r in self.con.execute(
            """SELECT table_name FROM duckdb_tables()
               UNION ALL SELECT view_name FROM duckdb_views() WHERE NOT internal""").fetchall()}
        if "kline" in tables and "kdist_meta" not in tables:
            raise SchemaVersionError(
                f"{self.path} has a 'kline' table that kdist did not create; use another --db",
                path=str(self.path),
            )
        if "kdist_meta" in tables:
            # fetchall, not fetchone: DuckDB 2.0 refuses register() on a connection whose
            # last result was not read to its end (a reader's next call may register a frame).
            rows = self.con.execute(
                "SELECT value FROM kdist_meta WHERE key = 'schema_version'"
            ).fetchall()
            found = rows[0][0] if rows else None
            if found in ("1", "2", "3", "4"):
                # Version 1 differs only in kline.ts being TIMESTAMP, and every read casts ts
                # to TIMESTAMP; version 2 lacks the corporate-action tables, version 3 the
                # data checks', version 4 the series bounds. A reader reads the file as it
                # is (without what it lacks); the first writer migrates it.
                if not self.read_only:
                    if found == "1":
                        self._migrate_from_1()
                    self._add_tables(found if found in ("3", "4") else "2")
                self.has_actions = found in ("3", "4") or not self.read_only
                self.has_quality = found == "4" or not self.read_only
                self.has_series = not self.read_only
                return
            if found != SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"{self.path} uses kdist schema version {found}, this kdist uses "
                    f"{SCHEMA_VERSION}; use another --db or the kdist version that wrote it",
                    path=str(self.path),
                    found=found,
                )
            self.has_actions = self.has_quality = self.has_series = True
            return
        if self.read_only:
            held = f" (it holds {_listing(tables)})" if tables else ""
            raise StoreError(f"{self.path} is not a kdist database{held}", path=str(self.path))
        if tables and not self._adopt:
            # A mistyped --db must not change another application's database.
            raise StoreError(
                f"{self.path} is a DuckDB database kdist did not create (it holds "
                f"{_listing(tables)}): use another --db, or open it with "
                "kdist.Store(path, adopt=True) to add kdist's tables to it",
                path=str(self.path),
            )
        if clash := sorted(tables & {"kdist_jobs", "kdist_job_symbols", "kdist_actions",
                                     "kdist_action_checks", "kdist_quality", "kdist_findings",
                                     "kdist_series"}):
            raise StoreError(
                f"Cannot add kdist's tables to {self.path}: it has tables of the same names "
                f"({', '.join(clash)}); use another --db",
                path=str(self.path),
            )
        # DDL in its own transaction, before any data is written.
        try:
            self.con.begin()
            self.con.execute(_DDL)
            self.con.execute(
                "INSERT INTO kdist_meta VALUES ('schema_version', ?), ('created_by', ?)",
                [SCHEMA_VERSION, f"kdist {_version()}"],
            )
            self.con.commit()
        except duckdb.Error as exc:
            self.con.rollback()
            raise _store_error(self.path, exc) from exc
        self.has_actions = self.has_quality = self.has_series = True

    def _add_tables(self, found: str):
        """Add the tables a version-2, -3 or -4 file lacks (the corporate actions', the data
        checks', the series bounds, filled from ``kline``), in one transaction."""
        try:
            self.con.begin()
            self.con.execute(_DDL)  # IF NOT EXISTS: only the new tables are created
            bounds.rebuild(self.con)
            self._migrated(found, SCHEMA_VERSION)
            self.con.commit()
        except duckdb.Error as exc:
            self.con.rollback()
            raise _store_error(self.path, exc) from exc

    def _migrated(self, found: str, to: str):
        """Record in ``kdist_meta`` that the file went from version ``found`` to ``to``."""
        self.con.execute("UPDATE kdist_meta SET value = ? WHERE key = 'schema_version'", [to])
        self.con.execute(
            "INSERT INTO kdist_meta VALUES ('migrated_from_' || ?, ?)",
            [found, f"kdist {_version()} at {_now().isoformat(timespec='seconds')}"],
        )

    def _migrate_from_1(self):
        """Turn a version-1 file's ``kline.ts`` (TIMESTAMP) into TIMESTAMP_S, in one transaction.

        A bar with sub-second parts would be rounded by the cast: refuse instead, and leave
        the file as it was.
        """
        try:
            self.con.begin()
            [(n, symbol, ts)] = self.con.execute(
                """SELECT count(*), arg_min(symbol, ts), min(ts) FROM kline
                   WHERE ts <> date_trunc('second', ts)"""
            ).fetchall()
            if n:
                self.con.rollback()
                raise SchemaVersionError(
                    f"{self.path} uses kdist schema version 1 and cannot be upgraded to "
                    f"{SCHEMA_VERSION}, which stores whole seconds: {n} bars have sub-second "
                    f"timestamps (the first: {symbol} {ts}); delete or fix them with any DuckDB "
                    "client and open it again, or use the kdist version that wrote it",
                    path=str(self.path),
                    found="1",
                )
            self.con.execute("ALTER TABLE kline ALTER COLUMN ts SET DATA TYPE TIMESTAMP_S")
            self._migrated("1", "2")
            self.con.commit()
        except duckdb.Error as exc:
            self.con.rollback()
            raise _store_error(self.path, exc) from exc

    # -- what is stored, for planning a job ----------------------------------------------

    @_using
    def stored_symbols(self, symbols: list[str], freq: Freq, adjust: Adjust) -> set[str]:
        """Which of ``symbols`` have any stored bars of this freq and adjust."""
        wanted = pd.DataFrame({"symbol": pd.Series(symbols, dtype="str")})
        self.con.register("kdist_wanted", wanted)
        try:
            # From the bars themselves, not the kept bounds: which windows an import deletes
            # must not depend on a table another DuckDB client could have left behind.
            rows = self.con.execute(
                """SELECT DISTINCT k.symbol FROM kline k SEMI JOIN kdist_wanted w
                   ON k.symbol = w.symbol WHERE k.freq = ? AND k.adjust = ?""",
                [freq.value, adjust.value],
            ).fetchall()
        finally:
            self.con.unregister("kdist_wanted")
        return {r[0] for r in rows}

    @_using
    def series(self, freq: Freq, adjust: Adjust) -> pd.DataFrame:
        """The stored symbols of one freq and adjust: ``symbol, source, first, last`` (their
        first and last bars, and the source of the last).

        Read from the bounds every write keeps (:mod:`kdist.bounds`): one row per symbol,
        however many bars are stored. A file of version 4 or older opened read-only has none:
        its bars are aggregated, in one pass grouped by symbol alone (see
        docs/performance.md#scans). Until the next write, :meth:`incremental_windows` on this
        connection takes its bounds from here (:func:`kdist.update` calls both).
        """
        if self.has_series:
            frame = bounds.series(self.con, freq.value, adjust.value)
            self._series[(freq, adjust)] = frame
            return frame
        frame = self.con.execute(
            # The source of the last bar: a series that mixes sources is updated from the
            # one that holds its latest bars.
            """SELECT symbol, arg_max(source, ts) AS source, min(ts)::TIMESTAMP AS first,
                      max(ts)::TIMESTAMP AS last
               FROM kline WHERE freq = ? AND adjust = ? GROUP BY symbol ORDER BY symbol""",
            [freq.value, adjust.value],
        ).df()
        self._series[(freq, adjust)] = frame  # pandas copies on write: callers cannot alter it
        return frame

    @_using
    def incremental_windows(
        self, symbols: list[str], freq: Freq, adjust: Adjust, start, end, overlap: int
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Per-symbol fetch windows for an incremental job, and the bars they must match.

        Returns ``(windows, overlap_bars)``. ``windows`` has ``symbol, since, full``: a stored
        symbol is fetched from the day of its ``overlap``-th last bar (``since``), or, if those
        bars changed at the source, again from ``full`` (its first stored bar or ``start``,
        whichever is earlier); a new symbol from ``start``. ``end`` is exclusive.
        ``overlap_bars`` is ordered by symbol and ``ts``, whatever plan the scan ran with.
        """
        wanted = pd.DataFrame({"symbol": pd.Series(symbols, dtype="str")})
        # Two steps: per-symbol bounds (kept by every write), then the last bars of each
        # symbol from a slice near its end, rather than ranking every stored bar. The bounds
        # cover every stored symbol of the series, and the wanted ones are picked here: a
        # join in the scan cost more than the scan (see docs/performance.md#scans).
        known = self._series.get((freq, adjust))
        if known is None and self.has_series:
            known = bounds.series(self.con, freq.value, adjust.value)
        if known is not None and (known["last"] < pd.Timestamp(end)).all():
            # The kept bounds (or series() read them on this connection and nothing was
            # written since); with every stored bar before `end` they are what the query
            # below would return (an aggregate of every stored bar, saved; see
            # docs/performance.md#updates).
            edges = known[["symbol", "first", "last"]].set_axis(
                ["symbol", "first_ts", "last_ts"], axis=1)
        else:
            edges = self.con.execute(
                """SELECT symbol, min(ts)::TIMESTAMP AS first_ts, max(ts)::TIMESTAMP AS last_ts
                   FROM kline WHERE freq = ? AND adjust = ? AND ts < ? GROUP BY symbol""",
                [freq.value, adjust.value, end],
            ).df()
        # An index lookup, not Series.isin: on Arrow strings that walks both in Python
        # (23 ms against 0.6 ms for 5,000 symbols; see docs/performance.md#updates).
        asked = pd.Index(wanted["symbol"].unique()).get_indexer(edges["symbol"]) >= 0
        edges = edges[asked].reset_index(drop=True)
        # The last bars lie within a few bar spans of the last one, unless a holiday or a
        # gap stretches them: look there first (the fewer bars a slice holds, the cheaper
        # its columns and ranking: 0.17 s against 0.05 s for 500 symbols of minute bars),
        # then as far back as before (two weeks and a few bar spans) for the symbols that
        # had more bars than were found.
        step = pd.Timedelta(minutes=freq.minutes) if freq.intraday else _bar_span(freq)
        near = step * (2 * overlap)
        bars = self._last_bars(edges, freq, adjust, near, overlap)
        found = edges["symbol"].map(bars["symbol"].value_counts()).fillna(0)
        short = edges[(found < overlap) & (edges["first_ts"] < edges["last_ts"] - near)]
        if len(short):
            wide = self._last_bars(short.reset_index(drop=True), freq, adjust,
                                   _bar_span(freq) * (2 * overlap) + pd.Timedelta(days=15),
                                   overlap)
            bars = pd.concat([bars[~bars["symbol"].isin(short["symbol"])], wide])
            bars = bars.sort_values(["symbol", "ts"], ignore_index=True)
        start = pd.Timestamp(start)
        last_day = pd.Timestamp(end) - pd.Timedelta(days=1)
        # bars are ordered by symbol and ts: each symbol's first row has its earliest
        # overlap bar, and first_ts is the same on all of its rows (no groupby needed).
        names = bars["symbol"].to_numpy(object)
        heads = np.flatnonzero(np.r_[True, names[1:] != names[:-1]]) if len(names) else []
        stored = pd.DataFrame({"since": bars["ts"].to_numpy()[heads],
                               "first": bars["first_ts"].to_numpy()[heads]},
                              index=pd.Index(names[heads], name="symbol"))
        # Whole days: a provider fetches by date, and a window cut inside a day would count
        # that day's earlier bars as "outside the window".
        since = stored["since"].dt.normalize().clip(upper=last_day)
        full = stored["first"].dt.normalize().clip(upper=start)
        windows = wanted.assign(
            since=wanted["symbol"].map(since).fillna(start).astype("datetime64[us]"),
            full=wanted["symbol"].map(full).fillna(start).astype("datetime64[us]"),
        )
        return windows, bars.drop(columns="first_ts")

    def _last_bars(self, edges: pd.DataFrame, freq: Freq, adjust: Adjust,
                   slack: pd.Timedelta, overlap: int) -> pd.DataFrame:
        """The last ``overlap`` bars of each of ``edges``' symbols (``symbol, first_ts,
        last_ts``) within ``slack`` of its last bar, with its ``first_ts``, ordered by
        symbol and ``ts``."""
        # The slice starts no earlier than the earliest symbol's: a constant bound the scan
        # applies before the join (see docs/performance.md#scans).
        floor = (edges["last_ts"].min() - slack).ceil("s") if len(edges) else None
        self.con.register("kdist_bounds", edges)
        try:
            return self.con.execute(
                """SELECT k.symbol, k.ts::TIMESTAMP AS ts, k.open, k.high, k.low, k.close,
                          k.volume, b.first_ts
                   FROM kline k JOIN kdist_bounds b ON k.symbol = b.symbol
                   WHERE k.freq = ? AND k.adjust = ? AND k.ts >= ?::TIMESTAMP_S
                     AND k.ts <= b.last_ts AND k.ts >= b.last_ts - ?::INTERVAL
                   QUALIFY row_number() OVER (PARTITION BY k.symbol ORDER BY k.ts DESC) <= ?
                   ORDER BY k.symbol, k.ts""",
                [freq.value, adjust.value, None if floor is None else floor.to_pydatetime(),
                 f"{int(slack.total_seconds())} seconds", overlap],
            ).df()
        finally:
            self.con.unregister("kdist_bounds")

    # -- writes ---------------------------------------------------------------------------

    @_using
    def write_batch(
        self,
        bars: pd.DataFrame,
        outcomes: list[dict],
        *,
        job_id: str,
        freq: Freq,
        adjust: Adjust,
        source: str,
        windows: pd.DataFrame,
        actions: pd.DataFrame | None = None,
        checks: pd.DataFrame | None = None,
        splits_in_bars: bool = False,
        spans: dict | None = None,
    ) -> int:
        """Replace the bars of the batch's symbols within their windows, and record outcomes
        and corporate actions.

        Parameters
        ----------
        bars
            Columns ``symbol ts open high low close volume amount``; unique ``(symbol, ts)``.
        outcomes
            One dict per symbol with the keys of the ledger (``symbol, status, rows, ...``).
        windows
            Columns ``symbol, start, stop`` (``stop`` exclusive): the stored bars of each
            symbol in its window are replaced. Symbols that failed or came back empty are
            left out, so a vendor hiccup never erases stored history.
        actions, checks, splits_in_bars
            The corporate actions of the batch's symbols (a ``symbol`` column and
            :data:`kdist.actions.COLUMNS`) and the window each was asked for (``symbol,
            start, end``), merged by :func:`kdist.adjustment.merge_actions` after the bars
            (factors computed from events need the raw closes); :attr:`actions_new` then
            names the symbols whose actions changed.
        spans
            ``{symbol: (first, last)}``: the first and last ``ts`` of each symbol's bars in
            ``bars``, as the caller knows them (the batch, from each symbol's outcome);
            computed from ``bars`` when not given. They keep ``kdist_series`` up to date
            (:mod:`kdist.bounds`).

        Returns
        -------
        int
            Rows inserted.

        Raises
        ------
        StoreError
            A bar's ``ts`` has a sub-second part (``kline.ts`` holds whole seconds, and the
            cast would round it); nothing of the batch is written.
        """
        self._check_whole_seconds(bars)
        ledger = _ledger_rows(outcomes)
        # The delete compares kline.ts with bounds of its own type, TIMESTAMP_S: DuckDB then
        # skips row groups by their ts range, where casting every stored ts made it scan them
        # all (see docs/performance.md#scans). Rounding the bounds up is exact
        # for whole-second ts: ts >= x exactly when ts >= ceil(x), and likewise for <.
        windows = windows.assign(
            **{c: pd.to_datetime(windows[c]).dt.ceil("s").astype("datetime64[s]")
               for c in ("start", "stop")}
        )
        now = _now()

        if len(bars):
            # DuckDB scans an Arrow table faster than the same pandas frame. One Arrow chunk
            # per column: a frame concatenated from chunks has string columns of many
            # chunks, and DuckDB then inserts the pieces in parallel, each into row groups of
            # its own that the checkpoint rewrites, leaving the superseded blocks in the file
            # as free space (see docs/performance.md#writes).
            bars = pa.Table.from_pandas(bars, preserve_index=False).combine_chunks()

        replaced: list = []
        changed: list = []

        def work(con):
            con.register("kdist_batch", bars)
            con.register("kdist_windows", windows)
            con.register("kdist_outcomes", ledger)
            if len(windows):
                # Bars of another source about to be replaced: the report says so.
                replaced[:] = con.execute(
                    """SELECT kline.source, count(*) FROM kline JOIN kdist_windows w
                         ON kline.symbol = w.symbol
                       WHERE kline.freq = ? AND kline.adjust = ? AND kline.ts >= w.start
                         AND kline.ts < w.stop AND kline.source IS DISTINCT FROM ?
                       GROUP BY ALL""",
                    [freq.value, adjust.value, source],
                ).fetchall()
                con.execute(
                    """DELETE FROM kline USING kdist_windows w
                       WHERE kline.symbol = w.symbol AND kline.freq = ? AND kline.adjust = ?
                         AND kline.ts >= w.start AND kline.ts < w.stop""",
                    [freq.value, adjust.value],
                )
            if len(bars):
                # ts arrives as datetime64[us] (TIMESTAMP); the cast to TIMESTAMP_S is exact
                # (_check_whole_seconds made sure) and costs no write speed
                # (see docs/performance.md#writes). Via TIMESTAMP:
                # DuckDB has no direct cast from TIMESTAMP_NS (datetime64[ns]) to TIMESTAMP_S.
                con.execute(
                    """INSERT INTO kline
                       SELECT symbol, ?, ?, ts::TIMESTAMP::TIMESTAMP_S, open, high, low, close,
                              volume, amount, ?
                       FROM kdist_batch""",
                    [freq.value, adjust.value, source],
                )
            # Each series' first and last bar, kept for updates (kdist.bounds).
            bounds.update(con, freq.value, adjust.value, source, windows,
                          len(bars) > 0, spans)
            _replace_outcomes(con, job_id, now)
            con.execute(
                """UPDATE kdist_jobs SET rows_written = rows_written + ? WHERE job_id = ?""",
                [len(bars), job_id],
            )
            for name in ("kdist_batch", "kdist_windows", "kdist_outcomes"):
                con.unregister(name)
            if checks is not None and len(checks):
                changed[:] = merge_actions(con, actions, checks, source=source, job_id=job_id,
                                           now=now, splits_in_bars=splits_in_bars)

        self._transaction(work)
        self.actions_new = list(changed)
        #: Bars of other sources the last write replaced: {source: bars}.
        self.replaced = {str(src): int(n) for src, n in replaced}
        return len(bars)

    @_using
    def rebuild_bounds(self) -> None:
        """Read every series' first and last bar from ``kline`` again (one transaction): for
        a file whose bars were changed with another DuckDB client (``check`` counts them as
        ``stale_bounds``)."""
        if self.read_only:
            raise UsageError(f"{self.path} is open read-only: open it for writing to mend it")
        self._transaction(bounds.rebuild)
        self._series.clear()

    @_using
    def mark_appends(self, freq: Freq | str = "1d", adjust: Adjust | str = "none") -> None:
        """Before an update's first write: note where the bars it appends to the series
        will start, if nothing has yet (see :mod:`kdist.layout`)."""
        if self.read_only:
            return
        freq, adjust = Freq.parse(freq).value, Adjust.parse(adjust).value
        self._transaction(lambda con: layout.mark(con, freq, adjust))

    @_using
    def maintain(self, freq: Freq | str = "1d", adjust: Adjust | str = "none", *,
                 force: bool = False) -> layout.Maintenance | None:
        """Sort the bars updates appended to a series into place once they fill a row
        group, so reads of one symbol keep skipping them (see :mod:`kdist.layout`); one
        transaction. None when there was nothing to do; ``force`` sorts whatever tail there
        is.

        Raises
        ------
        StoreError
            The sort failed (the table is as it was; the next update tries again).
        """
        if self.read_only:
            return None
        freq, adjust = Freq.parse(freq).value, Adjust.parse(adjust).value
        done: list = []

        def work(con):
            layout.mark(con, freq, adjust)
            tail = layout.tail_rows(con, freq, adjust)
            if tail >= (1 if force else layout.TAIL_ROWS):
                done.append(layout.maintain(con, freq, adjust, tail=tail))

        # Sorting a million bars needs more than a batch write's memory (under it the sort
        # spilled to disk): the limit is raised for the sort alone, unless the user set it.
        raise_limit = "KDIST_DUCKDB_MEMORY" not in os.environ
        try:
            if raise_limit:
                self.con.execute("SET memory_limit = ?", [MAINTAIN_MEMORY])
            try:
                self._transaction(work)
            finally:
                if raise_limit:
                    self.con.execute("SET memory_limit = ?", [self._memory_limit])
        except duckdb.Error as exc:
            raise _store_error(self.path, exc) from exc
        if done:
            self._series.clear()  # the rows moved; bounds read before are re-read
        return done[0] if done else None

    @_using
    def write_findings(self, findings: pd.DataFrame, outcomes: list[dict], *, job_id: str,
                       freq: Freq, adjust: Adjust, against: str):
        """Record what a verification (:func:`kdist.verify`) found for some of its symbols,
        in one transaction: their ledger rows (replacing the pending ones) and their
        findings (columns ``symbol, kind, ts, field, ours, theirs, detail``) in
        ``kdist_findings``. ``kline`` is not touched."""
        if not self.has_quality:
            raise StoreError(f"{self.path} has no kdist_findings table: open it for writing "
                             "(a newer kdist adds it)", path=str(self.path))
        ledger = _ledger_rows(outcomes)
        found = pd.DataFrame({
            "symbol": findings["symbol"].astype("str"), "kind": findings["kind"].astype("str"),
            "ts": pd.to_datetime(findings["ts"]).astype("datetime64[us]"),
            "field": findings["field"].astype("object"),
            "ours": findings["ours"].astype("float64"),
            "theirs": findings["theirs"].astype("float64"),
            "detail": findings["detail"].astype("object"),
        })
        now = _now()

        def work(con):
            con.register("kdist_outcomes", ledger)
            con.register("kdist_found", found)
            _replace_outcomes(con, job_id, now)
            con.execute(
                """INSERT INTO kdist_findings (job_id, symbol, freq, adjust, against, kind, ts,
                                               field, ours, theirs, detail)
                   SELECT ?, symbol, ?, ?, ?, kind, ts, field, ours, theirs, detail
                   FROM kdist_found""",
                [job_id, freq.value, adjust.value, against],
            )
            for name in ("kdist_outcomes", "kdist_found"):
                con.unregister(name)

        self._transaction(work)

    @_using
    def findings(self, job_id: str) -> pd.DataFrame:
        """What one verification found (``kdist_findings``): ``symbol, kind, ts, field, ours,
        theirs, detail``, by symbol and ts (a symbol's own findings first)."""
        if not self.has_quality:
            return pd.DataFrame(columns=list(FINDING_COLUMNS))
        return self.con.execute(
            """SELECT symbol, kind, ts, field, ours, theirs, detail FROM kdist_findings
               WHERE job_id = ? ORDER BY symbol, ts NULLS FIRST, kind, field""",
            [job_id],
        ).df()

    def _check_whole_seconds(self, bars: pd.DataFrame):
        ts = bars["ts"].to_numpy() if "ts" in bars else None
        if ts is None or ts.dtype.kind != "M" or ts.dtype == "datetime64[s]":
            return  # not datetimes (DuckDB converts or refuses them), or whole seconds already
        off = (ts != ts.astype("datetime64[s]")) & ~np.isnat(ts)
        if off.any():
            first = int(off.argmax())
            symbol = bars["symbol"].iat[first] if "symbol" in bars else "?"
            raise StoreError(
                f"Cannot store {int(off.sum())} bars with sub-second timestamps in {self.path} "
                f"(the first: {symbol} {pd.Timestamp(ts[first])}): kdist stores bar times in "
                "whole seconds; round them in the provider",
                path=str(self.path),
            )

    @_using
    def _transaction(self, work):
        self._series.clear()  # bounds read before a write are not the file's any more
        super()._transaction(work)

    # -- reads ----------------------------------------------------------------------------

    @_using
    def load(self, symbols=None, start=None, end=None, freq="1d", adjust="none", *,
             as_of=None, derive: bool | None = None, placeholders: str = "keep") -> pd.DataFrame:
        """Stored bars as one DataFrame sorted by symbol and ts (see :func:`load`)."""
        if placeholders not in ("keep", "drop"):
            raise UsageError(f"placeholders must be 'keep' or 'drop', not {placeholders!r}")
        bars = self._load(symbols, start, end, freq, adjust, as_of=as_of, derive=derive)
        if placeholders == "drop" and len(bars):
            # Decided on the stored bars (raw ones too for a derived read: an adjusted
            # placeholder on an ex-date no longer repeats the adjusted close before it).
            adjusts = sorted({Adjust.parse(adjust).value, Adjust.NONE.value})
            wanted = sorted(bars["symbol"].unique())
            lo, hi = bars["ts"].min(), bars["ts"].max() + pd.Timedelta(seconds=1)
            held = held_bars(self.con, freq, adjusts, wanted, lo, hi)
            if len(held):
                key = pd.MultiIndex.from_arrays([bars["symbol"], bars["ts"]])
                gone = key.isin(pd.MultiIndex.from_arrays([held["symbol"], held["ts"]]))
                bars = bars[~gone].reset_index(drop=True)
        return bars

    def _load(self, symbols, start, end, freq, adjust, *, as_of, derive) -> pd.DataFrame:
        freq, adjust = Freq.parse(freq), Adjust.parse(adjust)
        lo = to_date(start, name="start") if start is not None else None
        hi = to_date(end, name="end") + pd.Timedelta(days=1) if end is not None else None
        if as_of is not None:
            as_of = to_date(as_of, name="as_of")
            # What was known on that day: no bar after it either.
            hi = as_of + pd.Timedelta(days=1) if hi is None else min(hi, as_of + pd.Timedelta(days=1))
        symbols = read_symbols(symbols)
        # Bounds in the column's type, TIMESTAMP_S, so DuckDB skips row groups by their ts
        # range (see docs/performance.md#scans). Exact: lo and hi are midnights.
        stored = """SELECT k.symbol, k.ts::TIMESTAMP AS ts, k.open, k.high, k.low, k.close,
                           k.volume, k.amount, k.source
                    FROM kline k
                    WHERE k.adjust = ? AND k.freq = ?
                      AND (?::VARCHAR[] IS NULL OR k.symbol IN (SELECT unnest(?::VARCHAR[])))
                      AND (?::TIMESTAMP_S IS NULL OR k.ts >= ?::TIMESTAMP_S)
                      AND (?::TIMESTAMP_S IS NULL OR k.ts < ?::TIMESTAMP_S)"""
        params = [adjust.value, freq.value, symbols, symbols, lo, lo, hi, hi]
        if adjust is Adjust.NONE or derive is False or not self.has_actions:
            if derive is True or (as_of is not None and adjust is not Adjust.NONE):
                what = "derive=True" if derive is True else "as_of"
                raise UsageError(
                    f"{what} derives qfq/hfq from raw bars and corporate actions, and "
                    f"{self.path} has none: import raw bars (kdist ingest --adjust none) or "
                    "read the stored vendor bars without it")
            return self.con.execute(stored + " ORDER BY k.symbol, k.ts", params).df()
        # As of a date only derived bars: a vendor's stored qfq carries the anchor of the day
        # it was fetched, a look into that date's future.
        return read_derived(self.con, adjust, freq, as_of=as_of, symbols=symbols, lo=lo,
                            hi=hi, stored=derive is None and as_of is None)

    @_using
    def actions(self, symbols=None, start=None, end=None, *,
                history: bool = False) -> pd.DataFrame:
        """The stored corporate actions: per symbol, source and ex-date the event's numbers
        per share, the cumulative hfq ``factor`` and where it came from (``vendor`` or
        ``events``), the job that fetched it, and ``valid_from``/``valid_to``; ex-dates in
        ``[start, end]`` when given. Only the rows in force unless ``history`` (then
        superseded versions too)."""
        lo = to_date(start, name="start") if start is not None else None
        hi = to_date(end, name="end") if end is not None else None
        if not self.has_actions:
            return pd.DataFrame(columns=["symbol", "source", "ex_date", "cash", "bonus", "rights",
                                         "rights_price", "split", "factor", "factor_from",
                                         "job_id", "valid_from", "valid_to"])
        symbols = read_symbols(symbols)
        return self.con.execute(
            """SELECT symbol, source, ex_date::TIMESTAMP AS ex_date, cash, bonus, rights,
                      rights_price, split, factor, factor_from, job_id, valid_from, valid_to
               FROM kdist_actions
               WHERE (?::VARCHAR[] IS NULL OR symbol IN (SELECT unnest(?::VARCHAR[])))
                 AND (? OR valid_to IS NULL)
                 AND (?::DATE IS NULL OR ex_date >= ?::DATE)
                 AND (?::DATE IS NULL OR ex_date <= ?::DATE)
               ORDER BY symbol, source, ex_date, valid_from""",
            [symbols, symbols, history, lo, lo, hi, hi]).df()

    @_using
    def actions_summary(self) -> pd.DataFrame:
        """Per source: symbols whose corporate actions were fetched, the events and factors
        in force, the superseded versions kept, and when actions were last fetched."""
        columns = ["source", "symbols", "events", "superseded", "checked"]
        if not self.has_actions:
            return pd.DataFrame(columns=columns)
        return self.con.execute(
            """WITH c AS (SELECT source, count(DISTINCT symbol) AS symbols,
                                 max(checked_at) AS checked
                          FROM kdist_action_checks GROUP BY source),
                    a AS (SELECT source, count(*) FILTER (WHERE valid_to IS NULL) AS events,
                                 count(*) FILTER (WHERE valid_to IS NOT NULL) AS superseded
                          FROM kdist_actions GROUP BY source)
               SELECT c.source, c.symbols, coalesce(a.events, 0) AS events,
                      coalesce(a.superseded, 0) AS superseded, c.checked
               FROM c LEFT JOIN a USING (source) ORDER BY c.source""").df()[columns]

    @_using
    def actions_from(self, symbols: list[str], source: str) -> dict:
        """For those of ``symbols`` whose corporate actions were never fetched from
        ``source`` but that have raw bars of it: their first raw bar, from which a job must
        ask for their actions (an update asks only from its overlap on, and the factors of
        the bars before would be missing)."""
        if not self.has_actions:
            return {}
        checked = {r[0] for r in self.con.execute(
            "SELECT DISTINCT symbol FROM kdist_action_checks WHERE source = ?",
            [source]).fetchall()}
        unchecked = [s for s in symbols if s not in checked]
        if not unchecked:
            return {}  # the common case of an update: no scan of the bars
        wanted = pd.DataFrame({"symbol": pd.Series(unchecked, dtype="str")})
        self.con.register("kdist_unchecked", wanted)
        try:
            if self.has_series:  # the bounds table: no scan of the bars
                rows = self.con.execute(
                    """SELECT k.symbol, min(k.first_ts)::TIMESTAMP FROM kdist_series k
                       SEMI JOIN kdist_unchecked w ON k.symbol = w.symbol
                       WHERE k.adjust = 'none' AND k.source = ? GROUP BY k.symbol""",
                    [source]).fetchall()
            else:
                rows = self.con.execute(
                    """SELECT k.symbol, min(k.ts)::TIMESTAMP FROM kline k
                       SEMI JOIN kdist_unchecked w ON k.symbol = w.symbol
                       WHERE k.adjust = 'none' AND k.source = ? GROUP BY k.symbol""",
                    [source]).fetchall()
        finally:
            self.con.unregister("kdist_unchecked")
        return {symbol: pd.Timestamp(first).normalize() for symbol, first in rows}

    @_using
    def derivable(self) -> set[str]:
        """Symbols whose corporate actions were fetched: their qfq/hfq derive from raw bars."""
        if not self.has_actions:
            return set()
        return {r[0] for r in self.con.execute(
            "SELECT DISTINCT symbol FROM kdist_action_checks").fetchall()}

    @_using
    def check_adjust(self, freq="1d", tolerance: float = 0.01) -> pd.DataFrame:
        """Compare stored vendor-adjusted bars with the ones derived from raw bars and factors.

        Per symbol and adjust (``qfq``, ``hfq``) with both: bars compared, the largest price
        difference, how many bars differ by more than ``tolerance`` (the vendor's rounding:
        0.01 for A-share prices) and the first of them. A qfq series the vendor adjusted
        before a later ex-date differs from its first bar on: it is stale.
        """
        freq = Freq.parse(freq)
        columns = ["symbol", "adjust", "bars", "max_diff", "differing", "first_differing"]
        if not self.has_actions:
            return pd.DataFrame(columns=columns)
        return compare_with_vendor(self.con, freq, tolerance)[columns]

    @_using
    def check(self) -> dict:
        """Count duplicate keys and bars that break OHLC sanity, and series whose kept first
        and last bar disagree with the bars (``stale_bounds``: ``kline`` changed by something
        other than kdist; :meth:`rebuild_bounds` mends them); ``ok`` is true when none do."""
        row = self.con.execute(
            """SELECT
                 (SELECT count(*) FROM kline) AS rows,
                 (SELECT count(*) FROM (SELECT 1 FROM kline GROUP BY symbol, freq, adjust, ts
                                        HAVING count(*) > 1)) AS duplicate_keys,
                 (SELECT count(*) FROM kline WHERE high < low OR greatest(open, close) > high
                                             OR least(open, close) < low) AS ohlc_violations,
                 (SELECT count(*) FROM kline WHERE adjust <> 'qfq'
                        AND least(open, high, low, close) <= 0) AS non_positive_prices,
                 (SELECT count(*) FROM kline WHERE open IS NULL OR high IS NULL OR low IS NULL
                        OR close IS NULL OR isnan(open + high + low + close)
                        OR isinf(open + high + low + close)) AS missing_prices,
                 (SELECT count(*) FROM kline WHERE volume < 0) AS negative_volume"""
        ).fetchall()[0]  # fetchall: see _prepare
        keys = ("rows", "duplicate_keys", "ohlc_violations", "non_positive_prices",
                "missing_prices", "negative_volume")
        result = dict(zip(keys, (int(v) for v in row)))
        if self.has_series:
            result["stale_bounds"] = int(bounds.stale(self.con))
            keys += ("stale_bounds",)
        result["ok"] = all(result[k] == 0 for k in keys[1:])
        return result

    @_using
    def check_gaps(self, symbols=None, freq=None, adjust=None, start=None, end=None, *,
                   calendar=None, bar_time=None, record: bool = True) -> Quality:
        """Classify the gaps of the stored daily and intraday series against their trading
        calendars (see :mod:`kdist.gaps`); with ``record``, and a file opened for writing,
        each series' counts go to ``kdist_quality`` with the time of the check."""
        symbols = read_symbols(symbols)
        found = check_gaps(self.con, symbols=symbols, freq=freq,
                           adjust=Adjust.parse(adjust).value if adjust else None,
                           start=to_date(start, name="start") if start is not None else None,
                           end=to_date(end, name="end") if end is not None else None,
                           calendar=calendar, bar_time=bar_time)
        if record and not self.read_only and self.has_quality and len(found.series):
            rows = found.series.assign(checked_at=found.checked_at.to_datetime64())

            def work(con):
                con.register("kdist_quality_rows", rows)
                try:
                    con.execute(
                        """INSERT INTO kdist_quality (checked_at, symbol, freq, adjust, source,
                               calendar, bar_time, first, last, sessions, bars, suspended,
                               missing, off_calendar, unknown, completeness)
                           SELECT checked_at, symbol, freq, adjust, source, calendar, bar_time,
                                  first, last, sessions, bars, suspended, missing,
                                  off_calendar, unknown, completeness
                           FROM kdist_quality_rows""")
                finally:
                    con.unregister("kdist_quality_rows")

            self._transaction(work)
            found.recorded = True
        return found

    @_using
    def quality_history(self, symbols=None) -> pd.DataFrame:
        """Every recorded gap check: per check and series its counts and completeness, oldest
        check first (``kdist check --gaps`` records one each time it runs)."""
        columns = ["checked_at", *SERIES_COLUMNS]
        if not self.has_quality:
            return pd.DataFrame(columns=columns)
        symbols = read_symbols(symbols)
        return self.con.execute(
            """SELECT checked_at, symbol, freq, adjust, source, calendar, bar_time, first, last,
                      sessions, bars, suspended, missing, off_calendar, unknown, completeness
               FROM kdist_quality
               WHERE (?::VARCHAR[] IS NULL OR symbol IN (SELECT unnest(?::VARCHAR[])))
               ORDER BY checked_at, symbol, freq, adjust""", [symbols, symbols]).df()

    @_using
    def fingerprint(self, freq="1d", adjust="none") -> pd.DataFrame:
        """Per symbol: bar count and an order-independent hash of the stored values.

        Two imports of the same data give equal fingerprints, whatever the cluster, chunking
        or number of re-runs; a lost, duplicated or altered bar changes them.
        """
        freq, adjust = Freq.parse(freq), Adjust.parse(adjust)
        return self.con.execute(
            """SELECT symbol, count(*) AS bars,
                      sum(hash(ts::TIMESTAMP, open, high, low, close, volume)::HUGEINT)::VARCHAR
                          AS value_hash
               FROM kline WHERE freq = ? AND adjust = ? GROUP BY symbol ORDER BY symbol""",
            [freq.value, adjust.value],
        ).df()

    @_using
    def catalog(self, freqs=None) -> pd.DataFrame:
        """What is stored: per (symbol, freq, adjust) the kind of security, the bar count,
        first and last bar, source (sources joined by commas, and ``mixed`` true, when a
        series holds bars of several), and when a job last wrote it; of the ``freqs`` given
        only (values like ``"1m"``), every freq when None."""
        from .securities import kind_of

        freqs = None if freqs is None else [Freq.parse(f).value for f in freqs]
        frame = self.con.execute(
            """WITH bars AS (
                   SELECT symbol, freq, adjust, count(*) AS bars, min(ts)::TIMESTAMP AS first,
                          max(ts)::TIMESTAMP AS last,
                          string_agg(DISTINCT source, ',' ORDER BY source) AS source,
                          count(DISTINCT source) > 1 AS mixed
                   FROM kline
                   WHERE ?::VARCHAR[] IS NULL OR freq IN (SELECT unnest(?::VARCHAR[]))
                   GROUP BY ALL),
               writes AS (
                   SELECT s.symbol, j.freq, j.adjust, max(s.updated_at) AS updated
                   FROM kdist_job_symbols s JOIN kdist_jobs j USING (job_id)
                   WHERE s.status = 'ok' AND j.mode IS DISTINCT FROM ? GROUP BY ALL)
               SELECT bars.*, writes.updated FROM bars
               LEFT JOIN writes USING (symbol, freq, adjust)
               ORDER BY symbol, freq, adjust""",
            [freqs, freqs, VERIFY_MODE],  # a verification wrote no bars
        ).df()
        frame.insert(1, "kind", kind_of(frame["symbol"]))
        return frame

    def summary(self, catalog: pd.DataFrame | None = None) -> pd.DataFrame:
        """What is stored, per (source, freq, adjust) of the :meth:`catalog` (or of the
        ``catalog`` given): symbols, bars, first and last bar, and when a job last wrote one
        of them (``updated``). A series of several sources counts under ``csv,tdx``."""
        series = self.catalog() if catalog is None else catalog
        return (series.groupby(["source", "freq", "adjust"], sort=True)
                .agg(symbols=("symbol", "size"), bars=("bars", "sum"), first=("first", "min"),
                     last=("last", "max"), updated=("updated", "max"))
                .reset_index())


@contextlib.contextmanager
def reading(db_or_store):
    """A read-only :class:`Store` of ``db_or_store`` for one short read, closed after it (a
    Store given is used as it is). Long exports open one per chunk: a reader holding the
    file would make an import writing it meanwhile wait, and give up after a minute."""
    if isinstance(db_or_store, Store):
        yield db_or_store
        return
    with Store(db_or_store, read_only=True) as store:
        yield store


def _listing(names, most: int = 5) -> str:
    """``a, b, c`` or ``a, b, c, d, e and 3 more``."""
    names = sorted(names)
    shown = ", ".join(names[:most])
    return f"{shown} and {len(names) - most} more" if len(names) > most else shown


def load(db=DEFAULT_DB, symbols=None, start=None, end=None, freq="1d", adjust="none", *,
         as_of=None, derive: bool | None = None, placeholders: str = "keep",
         layout: str = "long", fields=None):
    """Return stored bars as a DataFrame sorted by symbol and ts.

    ``adjust="qfq"`` or ``"hfq"`` derives adjusted prices from the raw bars and the stored
    corporate actions of every symbol whose actions were fetched (in DuckDB, an as-of join
    on the ex-dates): hfq = raw x F(t), qfq = raw x F(t) / F(latest), F the cumulative
    back-adjustment factor; volume and amount stay raw. Symbols without stored actions
    return the vendor-adjusted bars a job stored (``kdist ingest --adjust qfq``), if any.

    Parameters
    ----------
    db
        Path of the DuckDB file.
    symbols
        A symbol or a list of them, in any accepted form (``sh600000``, ``000001.SZ``);
        all when None.
    start, end
        Inclusive date bounds; open when None.
    freq, adjust
        Which bars.
    as_of
        A date: the bars and factors known at the end of that day, qfq anchored at the
        latest ex-date up to it: no look-ahead for a backtest. Bars after it are left out.
    derive
        None: derived where corporate actions are stored, the vendor's bars elsewhere; True:
        derived only; False: only the vendor-adjusted bars stored as they came.
    placeholders
        ``"keep"`` (the default) returns every stored bar; ``"drop"`` leaves out placeholder
        bars, the ones vendors write for a suspended day (volume 0, open = high = low =
        close = the previous close; intraday, a whole day of them), which flatten moving
        averages and returns.
    layout, fields
        ``"long"`` (the default): one row per symbol and bar. ``"wide"``: dates x symbols,
        as :func:`panel` returns it, with ``fields`` (default open, high, low, close,
        volume: columns ``(field, symbol)``; one name: that field alone).

    Examples
    --------
    >>> bars = kdist.load("data/kdist.duckdb", "600000.SH", start="2024-01-01")  # doctest: +SKIP
    >>> qfq = kdist.load("data/kdist.duckdb", "600000.SH", adjust="qfq", as_of="2023-06-30")  # doctest: +SKIP
    """
    if layout not in ("long", "wide"):
        raise UsageError(f"layout must be 'long' or 'wide', not {layout!r}")
    if layout == "wide":
        return panel(db, symbols, fields or list(WIDE_FIELDS), start, end, freq, adjust,
                     as_of=as_of, derive=derive, placeholders=placeholders)
    if fields is not None:
        raise UsageError("fields= picks the columns of a wide layout: load(..., "
                         "layout='wide', fields=...), or kdist.panel")
    with Store(db, read_only=True) as store:
        return store.load(symbols, start, end, freq, adjust, as_of=as_of, derive=derive,
                          placeholders=placeholders)


#: The fields of ``load(layout="wide")`` when none are named: yfinance's and vectorbt's.
WIDE_FIELDS = ("open", "high", "low", "close", "volume")


def panel(db=DEFAULT_DB, symbols=None, fields="close", start=None, end=None, freq="1d",
          adjust="none", *, as_of=None, derive: bool | None = None,
          placeholders: str = "keep") -> pd.DataFrame:
    """Stored bars as dates x symbols, the shape yfinance's ``download`` and vectorbt use.

    One field (``fields="close"``): a DatetimeIndex (``ts``) by symbol. Several
    (``fields=["open", "close", "volume"]``): columns ``(field, symbol)``. A date a symbol
    has no bar on is NaN. Prices are adjusted as :func:`load` adjusts them (``adjust="qfq"``
    derives from raw bars and stored factors); volume is ``int64`` when every cell is a whole
    number (float64 with NaN where a symbol has no bar on a date). The other arguments are
    :func:`load`'s.

    Examples
    --------
    >>> close = kdist.panel("data/kdist.duckdb", fields="close", adjust="qfq")  # doctest: +SKIP
    >>> returns = close.pct_change()  # doctest: +SKIP
    """
    from .wide import panel as wide_panel

    with Store(db, read_only=True) as store:
        return wide_panel(store, symbols, fields, start, end, freq, adjust, as_of=as_of,
                          derive=derive, placeholders=placeholders)


def corporate_actions(db=DEFAULT_DB, symbols=None, start=None, end=None, *,
                      history: bool = False) -> pd.DataFrame:
    """The stored corporate actions and factors (see :meth:`Store.actions`), of ex-dates in
    ``[start, end]`` when given; superseded versions too with ``history``."""
    with Store(db, read_only=True) as store:
        return store.actions(symbols, start, end, history=history)


def check_adjust(db=DEFAULT_DB, freq="1d", tolerance: float = 0.01) -> pd.DataFrame:
    """Stored vendor-adjusted bars against the derived ones, per symbol and adjust (see
    :meth:`Store.check_adjust`); ``kdist check --adjust`` prints the symbols that differ."""
    with Store(db, read_only=True) as store:
        return store.check_adjust(freq, tolerance)


def check(db=DEFAULT_DB) -> dict:
    """Prove the stored bars are sane: no duplicate keys, no broken OHLC, no bad prices.

    Returns a dict of counts with ``ok`` true when every count of problems is zero.
    """
    with Store(db, read_only=True) as store:
        return store.check()


def quality(db=DEFAULT_DB, symbols=None, freq=None, adjust=None, start=None, end=None, *,
            calendar=None, bar_time=None, record: bool = True) -> Quality:
    """Check the stored daily and intraday bars against their exchanges' trading calendars.

    Per series ``(symbol, freq, adjust)``, between its first and last bar: sessions with no
    bar (``missing``), placeholder bars of suspended days (``suspended``), bars stamped on a
    day or minute that is no session's (``off_calendar``), and a ``completeness`` figure. The
    counts are recorded in the file with the time of the check (``record``; skipped, and
    ``recorded`` false, while an import holds the file), so :func:`quality_history` shows how
    coverage changed.

    Parameters
    ----------
    symbols, freq, adjust, start, end
        What to check: every daily and intraday series when None.
    calendar
        An ``exchange_calendars`` name for every series, or a dict of them keyed by symbol or
        by source; by default each symbol's exchange (A-share codes XSHG, ``.HK`` XHKG, bare
        tickers XNYS, ...) or the calendar its provider declares.
    bar_time
        ``"end"`` or ``"start"``: how intraday bars are stamped, when the provider's own
        convention (or, for files, the one their bars show) is not the right one.

    Returns
    -------
    kdist.gaps.Quality
        ``series`` (counts per series), ``gaps`` (every gap: symbol, freq, adjust, ts,
        kind), ``symbols()`` (completeness per symbol), ``runs()``, ``ok``, ``to_text()``.

    Examples
    --------
    >>> found = kdist.quality("data/kdist.duckdb")  # doctest: +SKIP
    >>> found.symbols().sort_values("completeness").head()  # doctest: +SKIP
    """
    args = (symbols, freq, adjust, start, end)
    with Store(db, read_only=True) as store:
        # A file of an older schema is read as it is: recording would upgrade it, and a
        # check must leave the file as an earlier kdist can still open it.
        recordable = store.has_quality
    why = None
    if record and recordable:
        try:
            with Store(db, create=False) as store:
                return store.check_gaps(*args, calendar=calendar, bar_time=bar_time)
        except DatabaseLockedError:
            why = "an import holds the file"  # checked between its batches
        except StoreError as exc:  # a file or directory this user may not write
            why = f"the file cannot be opened for writing ({exc})"
    elif record:
        why = ("the file's schema predates the table of checks; the next kdist ingest or "
               "update upgrades it")
    with Store(db, read_only=True) as store:
        found = store.check_gaps(*args, calendar=calendar, bar_time=bar_time, record=False)
    if why:
        found.note = f"not recorded: {why}"
    return found


def quality_history(db=DEFAULT_DB, symbols=None) -> pd.DataFrame:
    """Every recorded gap check (see :meth:`Store.quality_history`)."""
    with Store(db, read_only=True) as store:
        return store.quality_history(symbols)


def jobs(db=DEFAULT_DB) -> pd.DataFrame:
    """Every job recorded in ``db``, newest first: status, provider, window, counts, timing.

    A job recorded ``running`` with no import holding the file shows as ``interrupted``
    (its process was killed); ``kdist ingest --resume JOB_ID`` finishes it.
    """
    with Store(db, read_only=True) as store:
        return store.jobs()


def ledger(db=DEFAULT_DB, job_id: str | None = None, status: str | None = None) -> pd.DataFrame:
    """One job's per-symbol ledger (the newest job's when ``job_id`` is None): each symbol's
    status, rows, first and last bar, attempts, error, and rejected rows with their reasons
    (``rejected``, JSON); only symbols of ``status`` when given."""
    with Store(db, read_only=True) as store:
        if job_id is None:
            recorded = store.jobs()
            if recorded.empty:
                raise UsageError(f"No jobs in {db}: run 'kdist ingest' first")
            job_id = recorded["job_id"].iat[0]
        store.job(job_id)  # an unknown id is a UsageError naming where to look
        return store.job_symbols(job_id, status=status)


def findings(db=DEFAULT_DB, job_id: str | None = None) -> pd.DataFrame:
    """What a verification (:func:`kdist.verify`) found: one row per finding, ``symbol,
    kind, ts, field, ours, theirs, detail``; the newest verification's when ``job_id`` is
    None."""
    with Store(db, read_only=True) as store:
        if job_id is None:
            recorded = store.jobs()
            recorded = recorded[recorded["mode"] == VERIFY_MODE]
            if recorded.empty:
                raise UsageError(f"No verification in {db}: run 'kdist verify' first")
            job_id = recorded["job_id"].iat[0]
        store.job(job_id)  # an unknown id is a UsageError naming where to look
        return store.findings(job_id)


def catalog(db=DEFAULT_DB) -> pd.DataFrame:
    """What is stored: per (symbol, freq, adjust) the bar count, first and last bar, source,
    and when a job last wrote it (``updated``)."""
    with Store(db, read_only=True) as store:
        return store.catalog()


def summary(db=DEFAULT_DB) -> pd.DataFrame:
    """What is stored, per source, freq and adjust: symbols, bars, first and last bar, and
    when a job last wrote one of them (``updated``); ``kdist status`` prints it."""
    with Store(db, read_only=True) as store:
        return store.summary()
