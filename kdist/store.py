"""All SQL: the DuckDB file's tables, batch writes, the job ledger, ``load`` and ``check``.

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

Who may open the file. DuckDB lets one process hold it read-write or many read it, never both.
A writing :class:`Store` holds kdist's own lock for its whole life, an ``flock`` on
``<db>.lock`` (which names the process and its job), so a second writer, in this process or
another, is refused at once; its DuckDB connection is only needed while it writes, and
:meth:`Store.idle`, called by the import loop while it waits, closes it after
:data:`RELEASE_AFTER` seconds without a statement, or at once when a reader is waiting. The
next statement reopens it. A reader (``read_only=True``: :func:`load`, :func:`catalog`,
:func:`check`, ``kdist show/jobs/status``) holds a shared ``flock`` on ``<db>.readers`` while
it waits and reads, which is how the writer knows to let go and to wait before reopening;
when a kdist import holds the file it retries for up to :data:`READ_WAIT` seconds, and it
sees committed batches only. Any other holder is named at once, as waiting for it would not
help.

Identifiers are fixed strings in this module; every value goes through a ``?`` parameter.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import logging
import os
import re
import sys
import threading
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

try:
    import fcntl
except ImportError:  # Windows: no flock; the writer then holds DuckDB's lock for its life
    fcntl = None

from .errors import DatabaseLockedError, SchemaVersionError, StoreError, UsageError
from .outcome import LEDGER_COLUMNS
from .schema import Adjust, Freq, parse_symbols, to_date

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_DB", "Store", "catalog", "check", "jobs", "ledger", "load"]

#: Where the CLI and the API put the database when ``db`` is not given.
DEFAULT_DB = "data/kdist.duckdb"
#: Version of the tables below, kept in ``kdist_meta``. 2: ``kline.ts`` is TIMESTAMP_S.
SCHEMA_VERSION = "2"
#: DuckDB memory limit of the writing connection (environment: KDIST_DUCKDB_MEMORY): a
#: lower limit lowers the client's peak until it slows the import
#: (see docs/performance.md#memory-limit).
WRITER_MEMORY = "192MB"
#: Block size of a new database file, in bytes (DuckDB's default is 262144).
BLOCK_SIZE = 131072
#: Seconds without a statement after which :meth:`Store.idle` closes the writer's DuckDB
#: connection, so that readers get in between batches (see docs/architecture.md, Readers).
RELEASE_AFTER = 1.0
#: Seconds a reader waits for a kdist import to let it in: the longest an import holds the
#: file without waiting is its start (opening, reading the stored bounds, starting a local
#: cluster) or one batch's write, a few seconds on a busy machine.
READ_WAIT = 30.0
#: Seconds a writer waits to reopen the file while readers hold it, before it gives up naming
#: them: kdist's readers hold it for one call; a DuckDB client holding it longer is told.
WRITE_WAIT = 60.0

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
"""

_LOCK = re.compile(r"Conflicting lock is held in (?P<holder>.*?) \(PID (?P<pid>\d+)\)")


def _bar_span(freq: Freq) -> pd.Timedelta:
    """Calendar time one bar covers at most (a trading day for intraday bars' sessions)."""
    if freq.intraday:
        return pd.Timedelta(days=1)
    return {Freq.DAY: pd.Timedelta(days=1), Freq.WEEK: pd.Timedelta(days=7),
            Freq.MONTH: pd.Timedelta(days=31)}[freq]


#: The writing Store of each file this process has open (see Store._claim), and the lock that
#: makes checking and registering one step.
_WRITERS: dict[str, Store] = {}
_WRITERS_LOCK = threading.Lock()
#: The threads of this process with a reader Store open, per file, as many times as open.
_READING: dict[str, list[int]] = {}


def _now() -> _dt.datetime:
    return _dt.datetime.now()


class _FileLock:
    """An ``flock`` on a file next to the database; the file is removed by its last holder.

    flock conflicts between any two open files, in one process or two, and ends with the
    process that held it, so a killed import leaves nothing locked behind.
    """

    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None

    def acquire(self, *, shared: bool = False, block: bool = False, create: bool = True,
                write: bool = False):
        """Take the lock: True, or False when someone else holds it, or None when there is
        no such file (``create=False``) or it cannot be opened (another user's)."""
        mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if block else fcntl.LOCK_NB)
        # flock needs no write access: only a writer, which records itself, opens for writing.
        flags = (os.O_RDWR if write else os.O_RDONLY) | (os.O_CREAT if create else 0)
        while True:
            try:
                fd = os.open(self.path, flags, 0o666)
            except FileNotFoundError:
                return None
            except PermissionError:
                if create:
                    raise
                return None
            try:
                fcntl.flock(fd, mode)
            except BlockingIOError:
                os.close(fd)
                return False
            except BaseException:
                os.close(fd)
                raise
            # The last holder may have removed the file between our open and our lock: a lock
            # on a removed file guards nothing, so take the one at the path now.
            try:
                here, mine = os.stat(self.path), os.fstat(fd)
                if (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino):
                    self.fd = fd
                    return True
            except FileNotFoundError:
                pass
            os.close(fd)

    def write(self, text: str):
        """Say who holds the lock, for others' messages; best effort: the lock itself is the
        flock, and a full disk must not stop a job from recording that it failed."""
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, text.encode(), 0)
        except OSError as exc:
            log.debug("could not write %s: %s", self.path, exc)

    def release(self):
        """Let go, removing the file if no one else holds it (a holder that opened it since
        notices the removal, see acquire)."""
        fd, self.fd = self.fd, None
        if fd is None:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.unlink(self.path)
        except OSError:
            pass  # others hold it still (or it is gone): theirs to remove
        finally:
            os.close(fd)


def _using(method):
    """Run a method holding the store's connection, so that :meth:`Store.idle`, from another
    thread, never closes it in the middle of a statement or a transaction."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._use:
            try:
                return method(self, *args, **kwargs)
            finally:
                self._last_used = time.monotonic()

    return wrapper


class Store:
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
        if str(path).startswith((":memory:", "md:", "motherduck:")) or not str(path).strip():
            raise UsageError(
                f"db={str(path)!r} is not a local file: kdist stores bars in a DuckDB file, "
                "e.g. data/kdist.duckdb"
            )
        self.path = Path(path)
        self.read_only = read_only
        self._adopt = adopt
        # The per-symbol bounds series() read last, until the next write (incremental_windows).
        # They stay valid while the connection is closed: no other writer can get in.
        self._series: dict[tuple[Freq, Adjust], pd.DataFrame] = {}
        self._con: duckdb.DuckDBPyConnection | None = None
        self._closed = False
        self._use = threading.RLock()
        self._last_used = time.monotonic()
        self._key: str | None = None
        self._lock: _FileLock | None = None  # a writer's: held from open to close
        self._reading: _FileLock | None = None  # a reader's: held while it waits and reads
        self._thread: int | None = None  # a reader's thread, once connected (see _READING)
        self._write_wait = WRITE_WAIT  # how long the next reopen may wait for readers
        if (read_only or not create) and not self.path.exists():
            raise StoreError(
                f"No kdist database at {self.path}: run 'kdist ingest' first or pass --db",
                path=str(self.path),
            )
        # Sidecar files by the resolved path: two spellings of one file share one lock.
        self._real = str(self.path.resolve())
        self._lock_path = Path(self._real + ".lock")
        self._readers_path = Path(self._real + ".readers")
        # The writer's buffer pool is capped: DuckDB otherwise keeps every block it wrote
        # cached, so a long import's memory would grow with the table, not the batch. It
        # spills to disk past the cap; readers keep DuckDB's default.
        self._config = {}
        if not read_only:
            self._config["memory_limit"] = os.environ.get("KDIST_DUCKDB_MEMORY", WRITER_MEMORY)
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
            self._config["default_block_size"] = str(BLOCK_SIZE)
        # Held while opening: once claimed, a reader's idle() call from another thread must
        # wait for the checks and the first transaction on the new connection.
        with self._use:
            try:
                if read_only:
                    self._con = self._open_reader(wait)
                else:
                    self._claim(self._real)
                    self._con = self._open_writer(first=True)
                self._prepare()
                if not read_only:
                    self._mark_interrupted()
            except BaseException:
                self.close()
                raise

    # -- who holds the file ---------------------------------------------------------------

    def _claim(self, key: str):
        """Become the file's only writer, or raise naming the one there is."""
        with _WRITERS_LOCK:
            # Checked and registered in one step: two imports of this process started
            # together would otherwise both pass the check and write every bar twice.
            if key in _WRITERS:
                raise DatabaseLockedError(
                    f"{self.path} is in use by another import in this process: wait for it to "
                    "finish (or cancel it), or use another --db",
                    path=str(self.path),
                    holder="this process",
                    pid=os.getpid(),
                )
            _WRITERS[key] = self
            self._key = key
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"Cannot create the directory of {self.path}: {exc.strerror}",
                path=str(self.path),
            ) from exc
        if fcntl is None:
            return
        lock = _FileLock(self._lock_path)
        deadline = time.monotonic() + 0.5
        try:
            # A reader checking whether an import is running holds the lock for an instant.
            while not lock.acquire(write=True):
                if time.monotonic() >= deadline:
                    holder = _holder(self._lock_path)
                    raise DatabaseLockedError(
                        f"{self.path} is in use by {_describe(holder)}: wait for that import "
                        "to finish or stop it, or use another --db",
                        path=str(self.path),
                        holder=holder.get("command", "kdist"),
                        pid=holder.get("pid"),
                    )
                time.sleep(0.01)
        except OSError as exc:
            raise StoreError(
                f"Cannot lock {self.path} for writing ({self._lock_path}: {exc.strerror}); "
                "check the directory's permissions or use another --db",
                path=str(self.path),
            ) from exc
        self._lock = lock
        self._tell(None)

    def _tell(self, job_id: str | None):
        """Write who holds the lock, so that refused writers and waiting readers can say."""
        if self._lock is not None:
            self._lock.write(json.dumps(
                {"pid": os.getpid(), "command": _command(), "job": job_id}))

    def _live_import(self) -> dict | None:
        """The kdist import that holds the file now (what its lock file says), or None."""
        if fcntl is None:
            return None
        probe = _FileLock(self._lock_path)
        got = probe.acquire(shared=True, create=False)
        if got:
            probe.release()  # removes a lock file left by a killed import
        return _holder(self._lock_path) if got is False else None

    def _readers_waiting(self) -> bool:
        """Whether a kdist reader waits for the file or reads it (it holds ``<db>.readers``)."""
        if fcntl is None:
            return False
        probe = _FileLock(self._readers_path)
        got = probe.acquire(create=False)
        if got:
            probe.release()
        return got is False

    def _open_reader(self, wait: float) -> duckdb.DuckDBPyConnection:
        """Connect read-only, waiting for up to ``wait`` seconds while a kdist import writes."""
        if fcntl is not None:
            announce = _FileLock(self._readers_path)
            try:
                announce.acquire(shared=True, block=True)
                self._reading = announce
            except OSError:
                pass  # a directory we may not write: unannounced, we get in once it is idle
        deadline = time.monotonic() + wait
        delay = 0.02
        while True:
            try:
                con = self._connect(read_only=True)
            except duckdb.Error as exc:
                if not _conflict(exc):
                    raise _store_error(self.path, exc) from exc
                writer = self._live_import()
                if writer is None:
                    # Not a kdist import: nothing says it will let go between batches.
                    raise _store_error(self.path, exc) from exc
                # An import of this process may be idle on this very thread: ask it directly.
                ours = _WRITERS.get(self._real)
                released = ours is not None and ours.idle()
                if time.monotonic() >= deadline:
                    raise DatabaseLockedError(
                        f"{self.path} is being written by {_describe(writer)}, which did not "
                        f"let readers in within {wait:g} s: try again, or wait for that import "
                        "to finish",
                        path=str(self.path),
                        holder=writer.get("command", "kdist"),
                        pid=writer.get("pid"),
                    ) from exc
                if not released:
                    time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                    delay = min(2 * delay, 0.25)
                continue
            with _WRITERS_LOCK:
                _READING.setdefault(self._real, []).append(threading.get_ident())
            self._thread = threading.get_ident()
            return con

    def _open_writer(self, *, first: bool) -> duckdb.DuckDBPyConnection:
        """Connect read-write; when reopening, wait for readers to finish first."""
        waited = self._write_wait
        deadline = time.monotonic() + waited
        delay = 0.01
        # A reader open on this very thread cannot close while we wait for it.
        stuck = threading.get_ident() in _READING.get(self._real, ())
        while True:
            # Readers that waited while we wrote go first; each holds the file for one call.
            while (not first and not stuck and self._readers_waiting()
                   and time.monotonic() < deadline):
                time.sleep(0.01)
            try:
                con = self._connect(read_only=False)
                self._write_wait = WRITE_WAIT
                return con
            except duckdb.Error as exc:
                if stuck and _conflict(exc):
                    raise DatabaseLockedError(
                        f"{self.path} is open for reading on this thread (a kdist.Store(..., "
                        "read_only=True) not closed yet): close it before writing",
                        path=str(self.path), holder="this process", pid=os.getpid(),
                    ) from exc
                # At the first open only a kdist reader is worth waiting for: any other holder
                # (a DuckDB client, an older kdist) is named at once, before anything is fetched.
                wait = _conflict(exc) and (not first or self._readers_waiting())
                if not wait:
                    raise _store_error(self.path, exc) from exc
                if time.monotonic() >= deadline:
                    # The job is stopping: its last writes (the batch in hand, the job's end)
                    # try once more, without another long wait for the same holder.
                    self._write_wait = min(waited, 1.0)
                    raise _store_error(self.path, exc, waited=waited) from exc
                time.sleep(delay)
                delay = min(2 * delay, 0.1)

    def _connect(self, *, read_only: bool) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(str(self.path), read_only=read_only, config=self._config)
        try:
            # Per connection, so again at every reopen. No progress bar: DuckDB would draw
            # one on the terminal for any slow statement.
            con.execute("SET enable_progress_bar = false")
        except BaseException:
            con.close()
            raise
        self._last_used = time.monotonic()
        return con

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The DuckDB connection, reopened if :meth:`idle` closed it. For one thread at a time."""
        if self._con is None:
            if self._closed:
                raise StoreError(f"{self.path}: this Store is closed; open a new one",
                                 path=str(self.path))
            self._con = self._open_writer(first=False)
        self._last_used = time.monotonic()
        return self._con

    def idle(self) -> bool:
        """Let readers in while the caller has nothing to write.

        Closes the DuckDB connection (the store stays the file's only writer) when it was
        not used for :data:`RELEASE_AFTER` seconds or a kdist reader waits; the next call
        that needs it reopens it. Call it whenever waiting: it costs a clock read and, when
        the connection is open, one failed ``open`` of ``<db>.readers``. Safe from another
        thread: it does nothing while a call of this store is running. A reader store, or
        one without ``flock`` (Windows), never lets go.

        Returns
        -------
        bool
            True when the connection is closed: readers can open the file.
        """
        if self.read_only or fcntl is None or self._closed:
            return False
        if not self._use.acquire(blocking=False):
            return False
        try:
            if self._con is None:
                return True
            if (time.monotonic() - self._last_used < RELEASE_AFTER
                    and not self._readers_waiting()):
                return False
            con, self._con = self._con, None
            try:
                con.close()
            except duckdb.Error as exc:
                raise _store_error(self.path, exc) from exc
            return True
        finally:
            self._use.release()

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
            if found == "1":
                # Version 1 differs only in kline.ts being TIMESTAMP, and every read casts ts
                # to TIMESTAMP: a reader reads it as it is; the first writer migrates it.
                if not self.read_only:
                    self._migrate_from_1()
                return
            if found != SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"{self.path} uses kdist schema version {found}, this kdist uses "
                    f"{SCHEMA_VERSION}; use another --db or the kdist version that wrote it",
                    path=str(self.path),
                    found=found,
                )
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
        if clash := sorted(tables & {"kdist_jobs", "kdist_job_symbols"}):
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
            self.con.execute(
                "UPDATE kdist_meta SET value = ? WHERE key = 'schema_version'", [SCHEMA_VERSION]
            )
            self.con.execute(
                "INSERT INTO kdist_meta VALUES ('migrated_from_1', ?)",
                [f"kdist {_version()} at {_now().isoformat(timespec='seconds')}"],
            )
            self.con.commit()
        except duckdb.Error as exc:
            self.con.rollback()
            raise _store_error(self.path, exc) from exc

    def _mark_interrupted(self):
        # We hold kdist's writer lock, so no job can still be running: one that says so was
        # interrupted (its process killed) and is resumable.
        self._transaction(
            lambda con: con.execute(
                """UPDATE kdist_jobs SET status = 'interrupted' WHERE status = 'running'"""
            )
        )

    def close(self):
        """Close the connection and let the file go (to the next writer too)."""
        with self._use:
            self._closed = True
            con, self._con = self._con, None
            try:
                if con is not None:
                    con.close()
            finally:
                # DuckDB's lock first, kdist's last: a writer that gets ours can open the file.
                for lock in (self._reading, self._lock):
                    if lock is not None:
                        lock.release()
                self._reading = self._lock = None
                with _WRITERS_LOCK:
                    if self._key is not None:
                        _WRITERS.pop(self._key, None)
                    if self._thread is not None:
                        threads = _READING[self._real]
                        threads.remove(self._thread)
                        if not threads:
                            del _READING[self._real]
                self._key = self._thread = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- the job ledger -------------------------------------------------------------------

    @_using
    def start_job(self, job: dict, symbols: list[str]):
        """Record a new job as running, with every symbol pending."""
        now = _now()
        pending = pd.DataFrame({"symbol": pd.Series(symbols, dtype="str")})

        def work(con):
            con.execute(
                """INSERT INTO kdist_jobs (job_id, created_at, status, mode, provider,
                   provider_options, provider_version, freq, adjust, start, "end",
                   n_symbols, kdist_version, params, note)
                   VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                [
                    job["job_id"],
                    now,
                    job["mode"],
                    job["provider"],
                    json.dumps(job.get("provider_options", {}), default=str),
                    job.get("provider_version"),
                    job["freq"],
                    job["adjust"],
                    job["start"],
                    job["end"],
                    len(symbols),
                    _version(),
                    json.dumps(job.get("params", {}), default=str),
                    job.get("note"),
                ],
            )
            con.register("kdist_pending", pending)
            con.execute(
                """INSERT INTO kdist_job_symbols (job_id, symbol, status, attempts, updated_at)
                   SELECT ?, symbol, 'pending', 0, ? FROM kdist_pending""",
                [job["job_id"], now],
            )
            con.unregister("kdist_pending")

        self._transaction(work)
        self._tell(job["job_id"])

    @_using
    def resume_job(self, job_id: str, *, mode: str, note: str | None = None):
        """Mark an existing job running again (its unfinished symbols are about to be fetched)."""
        self._transaction(
            lambda con: con.execute(
                """UPDATE kdist_jobs SET status = 'running', mode = ?, finished_at = NULL,
                       note = ? WHERE job_id = ?""",
                [mode, note, job_id],
            )
        )
        self._tell(job_id)

    @_using
    def job(self, job_id: str) -> dict:
        """One job's recorded parameters and counts, or a UsageError naming the known ones."""
        row = self.con.execute(
            """SELECT job_id, status, mode, provider, provider_options, freq, adjust, start,
                      "end", n_symbols, params FROM kdist_jobs WHERE job_id = ?""",
            [job_id],
        ).df()
        if row.empty:
            raise UsageError(
                f"No job {job_id!r} in {self.path}; 'kdist jobs --db {self.path}' lists them"
            )
        job = row.iloc[0].to_dict()
        job["provider_options"] = json.loads(job["provider_options"] or "{}")
        job["params"] = json.loads(job["params"] or "{}")
        if job["status"] == "running" and self._orphaned():
            job["status"] = "interrupted"
        return job

    @_using
    def stored_symbols(self, symbols: list[str], freq: Freq, adjust: Adjust) -> set[str]:
        """Which of ``symbols`` have any stored bars of this freq and adjust."""
        wanted = pd.DataFrame({"symbol": pd.Series(symbols, dtype="str")})
        self.con.register("kdist_wanted", wanted)
        try:
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
        first and last bars).

        What :meth:`catalog` says of them, in one pass grouped by symbol alone, cheaper than
        the catalog's grouping by symbol, freq and adjust (see docs/performance.md#scans).
        Until the next write, :meth:`incremental_windows` on this connection takes its bounds
        from here instead of reading them again (:func:`kdist.update` calls both).
        """
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
    def unfinished_symbols(self, job_id: str) -> list[str]:
        """Symbols of a job that are not yet ok or empty (pending or failed), in order."""
        return [
            r[0]
            for r in self.con.execute(
                """SELECT symbol FROM kdist_job_symbols
                   WHERE job_id = ? AND status NOT IN ('ok', 'empty') ORDER BY symbol""",
                [job_id],
            ).fetchall()
        ]

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
        slack = _bar_span(freq) * (2 * overlap) + pd.Timedelta(days=15)
        # Two steps: per-symbol bounds (a cheap aggregate), then the last bars of each symbol
        # from a slice near its end, rather than ranking every stored bar. The bounds cover
        # every stored symbol of the series, and the wanted ones are picked here: a join in
        # the scan cost more than the scan (see docs/performance.md#scans).
        known = self._series.get((freq, adjust))
        if known is not None and (known["last"] < pd.Timestamp(end)).all():
            # series() read them on this connection and nothing was written since; with
            # every stored bar before `end` they are what the query below would return
            # (an aggregate of every stored bar, saved; see docs/performance.md#scans).
            bounds = known[["symbol", "first", "last"]].set_axis(
                ["symbol", "first_ts", "last_ts"], axis=1)
        else:
            bounds = self.con.execute(
                """SELECT symbol, min(ts)::TIMESTAMP AS first_ts, max(ts)::TIMESTAMP AS last_ts
                   FROM kline WHERE freq = ? AND adjust = ? AND ts < ? GROUP BY symbol""",
                [freq.value, adjust.value, end],
            ).df()
        bounds = bounds[bounds["symbol"].isin(wanted["symbol"])].reset_index(drop=True)
        # The slice starts no earlier than the earliest symbol's: a constant bound the scan
        # applies before the join (see docs/performance.md#scans).
        floor = (bounds["last_ts"].min() - slack).ceil("s") if len(bounds) else None
        self.con.register("kdist_bounds", bounds)
        try:
            bars = self.con.execute(
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
        start = pd.Timestamp(start)
        last_day = pd.Timestamp(end) - pd.Timedelta(days=1)
        stored = bars.groupby("symbol").agg(since=("ts", "min"), first=("first_ts", "min"))
        # Whole days: a provider fetches by date, and a window cut inside a day would count
        # that day's earlier bars as "outside the window".
        since = stored["since"].dt.normalize().clip(upper=last_day)
        full = stored["first"].dt.normalize().clip(upper=start)
        windows = wanted.assign(
            since=wanted["symbol"].map(since).fillna(start).astype("datetime64[us]"),
            full=wanted["symbol"].map(full).fillna(start).astype("datetime64[us]"),
        )
        return windows, bars.drop(columns="first_ts")

    @_using
    def finish_job(self, job_id: str, *, status: str, elapsed_s: float, note: str | None = None):
        """Mark a job finished and recount its symbols from the ledger."""
        self._transaction(
            lambda con: con.execute(
                """UPDATE kdist_jobs SET status = ?, finished_at = ?, elapsed_s = ?,
                       note = coalesce(?, note),
                       symbols_ok = s.ok, symbols_empty = s.empty, symbols_failed = s.failed,
                       symbols_skipped = s.skipped,
                       rows_written = s.rows_written, rejected_rows = s.rejected_rows
                   FROM (SELECT count(*) FILTER (WHERE status = 'ok') AS ok,
                                count(*) FILTER (WHERE status = 'empty') AS empty,
                                count(*) FILTER (WHERE status = 'failed') AS failed,
                                count(*) FILTER (WHERE status = 'skipped') AS skipped,
                                coalesce(sum(rows), 0) AS rows_written,
                                coalesce(sum(rejected_rows), 0)
                                    AS rejected_rows
                         FROM kdist_job_symbols WHERE job_id = ?) AS s
                   WHERE job_id = ?""",
                [status, _now(), elapsed_s, note, job_id, job_id],
            )
        )

    @_using
    def jobs(self) -> pd.DataFrame:
        """Every job, newest first."""
        return self.con.execute(
            """SELECT job_id, created_at, finished_at,
                      CASE WHEN status = 'running' AND ? THEN 'interrupted' ELSE status END
                          AS status,
                      mode, provider, freq, adjust, start, "end", n_symbols, symbols_ok,
                      symbols_empty, symbols_failed, symbols_skipped, rows_written,
                      rejected_rows, elapsed_s, note
               FROM kdist_jobs ORDER BY created_at DESC""",
            [self._orphaned()],
        ).df()

    def _orphaned(self) -> bool:
        """Whether a job recorded as running has no process running it any more."""
        # A writer marked every job left running as interrupted when it opened the file, so a
        # running job is its own; a reader reads between the batches of a live import, so
        # only when no kdist import holds the file was such a job interrupted (its process
        # killed, its machine lost), and it can be resumed.
        return self.read_only and self._live_import() is None

    @_using
    def job_symbols(self, job_id: str, status: str | None = None) -> pd.DataFrame:
        """The per-symbol ledger of one job, optionally only one status."""
        return self.con.execute(
            """SELECT symbol, status, rows, first_ts, last_ts, attempts, error_class, error,
                      rejected_rows, rejected, window_start, revised
               FROM kdist_job_symbols WHERE job_id = ? AND (? IS NULL OR status = ?)
               ORDER BY symbol""",
            [job_id, status, status],
        ).df()

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
    ) -> int:
        """Replace the bars of the batch's symbols within their windows, and record outcomes.

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
        ledger = pd.DataFrame.from_records(outcomes, columns=list(LEDGER_COLUMNS))
        ledger["rejected"] = [json.dumps(r) if r else None for r in ledger["rejected"]]
        for col in ("first_ts", "last_ts", "window_start"):
            ledger[col] = pd.to_datetime(ledger[col]).astype("datetime64[us]")
        ledger["revised"] = ledger["revised"].eq(True)  # missing counts as not revised
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
            con.execute(
                """UPDATE kdist_jobs SET rows_written = rows_written + ? WHERE job_id = ?""",
                [len(bars), job_id],
            )
            for name in ("kdist_batch", "kdist_windows", "kdist_outcomes"):
                con.unregister(name)

        self._transaction(work)
        #: Bars of other sources the last write replaced: {source: bars}.
        self.replaced = {str(src): int(n) for src, n in replaced}
        return len(bars)

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
        try:
            self.con.begin()
            work(self.con)
            self.con.commit()
        except BaseException as exc:
            # Any failure, not only DuckDB's (a missing ledger key, a frame DuckDB cannot
            # scan, Ctrl-C), must roll back: a transaction left open refuses every later one.
            try:
                self.con.rollback()
            except duckdb.Error:
                pass
            if isinstance(exc, duckdb.Error):
                raise _store_error(self.path, exc) from exc
            raise

    # -- reads ----------------------------------------------------------------------------

    @_using
    def load(self, symbols=None, start=None, end=None, freq="1d", adjust="none") -> pd.DataFrame:
        """Stored bars as one DataFrame sorted by symbol and ts (see :func:`load`)."""
        freq, adjust = Freq.parse(freq), Adjust.parse(adjust)
        lo = to_date(start, name="start") if start is not None else None
        hi = to_date(end, name="end") + pd.Timedelta(days=1) if end is not None else None
        if symbols is not None:
            # Not strict: names stored by an earlier kdist stay readable.
            symbols = parse_symbols([symbols] if isinstance(symbols, str) else symbols,
                                    strict=False)[0]
        # Bounds in the column's type, TIMESTAMP_S, so DuckDB skips row groups by their ts
        # range (see docs/performance.md#scans). Exact: lo and hi
        # are midnights.
        return self.con.execute(
            """SELECT symbol, ts::TIMESTAMP AS ts, open, high, low, close, volume, amount, source
               FROM kline
               WHERE freq = ? AND adjust = ?
                 AND (?::VARCHAR[] IS NULL OR symbol IN (SELECT unnest(?::VARCHAR[])))
                 AND (?::TIMESTAMP_S IS NULL OR ts >= ?::TIMESTAMP_S)
                 AND (?::TIMESTAMP_S IS NULL OR ts < ?::TIMESTAMP_S)
               ORDER BY symbol, ts""",
            [freq.value, adjust.value, symbols, symbols, lo, lo, hi, hi],
        ).df()

    @_using
    def check(self) -> dict:
        """Count duplicate keys and bars that break OHLC sanity; ``ok`` is true when none do."""
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
        result["ok"] = all(result[k] == 0 for k in keys[1:])
        return result

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
    def catalog(self) -> pd.DataFrame:
        """What is stored: per (symbol, freq, adjust) the kind of security, the bar count,
        first and last bar, source (sources joined by commas, and ``mixed`` true, when a
        series holds bars of several), and when a job last wrote it."""
        from .securities import kind_of

        frame = self.con.execute(
            """WITH bars AS (
                   SELECT symbol, freq, adjust, count(*) AS bars, min(ts)::TIMESTAMP AS first,
                          max(ts)::TIMESTAMP AS last,
                          string_agg(DISTINCT source, ',' ORDER BY source) AS source,
                          count(DISTINCT source) > 1 AS mixed
                   FROM kline GROUP BY ALL),
               writes AS (
                   SELECT s.symbol, j.freq, j.adjust, max(s.updated_at) AS updated
                   FROM kdist_job_symbols s JOIN kdist_jobs j USING (job_id)
                   WHERE s.status = 'ok' GROUP BY ALL)
               SELECT bars.*, writes.updated FROM bars
               LEFT JOIN writes USING (symbol, freq, adjust)
               ORDER BY symbol, freq, adjust"""
        ).df()
        frame.insert(1, "kind", kind_of(frame["symbol"]))
        return frame


def _version() -> str:
    from ._version import __version__

    return __version__


def _store_error(path: Path, exc: Exception, *, waited: float | None = None) -> StoreError:
    """One line for a DuckDB error; ``waited``: a writer gave up waiting for readers."""
    text = str(exc)
    if m := _LOCK.search(text):
        holder, pid = m.group("holder"), int(m.group("pid"))
        who = "this process" if pid == os.getpid() else f"{holder} (PID {pid})"
        if waited is not None:
            return DatabaseLockedError(
                f"{path} is open in {who}, and this import waited {waited:g} s to write its "
                "next batch: close that connection (other DuckDB clients should open the file "
                "read-only and close it after each query)",
                path=str(path), holder=holder, pid=pid,
            )
        return DatabaseLockedError(
            f"{path} is in use by {who}: wait for that import to finish or stop it, "
            "or use another --db",
            path=str(path),
            holder=holder,
            pid=pid,
        )
    if "different configuration" in text:
        if waited is not None:
            return DatabaseLockedError(
                f"{path} is open in this process through another connection (such as "
                f"duckdb.connect(..., read_only=True)), and this import waited {waited:g} s "
                "to write its next batch: close that connection",
                path=str(path), holder="this process", pid=os.getpid(),
            )
        return DatabaseLockedError(
            f"{path} is already open in this process with other settings (an import "
            "writing it, or a connection such as duckdb.connect(..., read_only=True)): close "
            "that connection or wait for the import to finish",
            path=str(path),
            holder="this process",
            pid=os.getpid(),
        )
    first = text.splitlines()[0] if text else type(exc).__name__
    return StoreError(f"Cannot use database {path}: {first}", path=str(path))


def _conflict(exc: Exception) -> bool:
    """Whether DuckDB refused a connection because another one holds the file."""
    text = str(exc)
    return bool(_LOCK.search(text)) or "different configuration" in text


def _command() -> str:
    """What this process is, in a few words: ``kdist ingest``, ``python -c``, ``jupyter``."""
    argv = sys.argv or [""]
    name = Path(argv[0]).name
    if name in ("", "-c"):
        name = "python -c" if name else "python"
    elif name == "__main__.py":
        name = f"python -m {Path(argv[0]).parent.name}"
    elif name.endswith(".py"):
        name = f"python {name}"
    if len(argv) > 1 and not argv[1].startswith("-") and name in ("kdist", "python -m kdist"):
        name = f"{name} {argv[1]}"
    return name


def _holder(lock_path: Path) -> dict:
    """What a writer's lock file says of it (pid, command, job); empty if unreadable."""
    try:
        holder = json.loads(lock_path.read_text())
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _describe(holder: dict) -> str:
    """``kdist ingest (PID 4242, job 20260101-...)``, from what :func:`_holder` read."""
    if holder.get("pid") == os.getpid():
        return "another import in this process"
    details = [f"PID {holder['pid']}"] if holder.get("pid") else []
    if holder.get("job"):
        details.append(f"job {holder['job']}")
    name = holder.get("command") or "another kdist import"
    return f"{name} ({', '.join(details)})" if details else name


def _listing(names, most: int = 5) -> str:
    """``a, b, c`` or ``a, b, c, d, e and 3 more``."""
    names = sorted(names)
    shown = ", ".join(names[:most])
    return f"{shown} and {len(names) - most} more" if len(names) > most else shown


def load(db=DEFAULT_DB, symbols=None, start=None, end=None, freq="1d", adjust="none"):
    """Return stored bars as a DataFrame sorted by symbol and ts.

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

    Examples
    --------
    >>> bars = kdist.load("data/kdist.duckdb", "600000.SH", start="2024-01-01")  # doctest: +SKIP
    """
    with Store(db, read_only=True) as store:
        return store.load(symbols, start, end, freq, adjust)


def check(db=DEFAULT_DB) -> dict:
    """Prove the stored bars are sane: no duplicate keys, no broken OHLC, no bad prices.

    Returns a dict of counts with ``ok`` true when every count of problems is zero.
    """
    with Store(db, read_only=True) as store:
        return store.check()


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


def catalog(db=DEFAULT_DB) -> pd.DataFrame:
    """What is stored: per (symbol, freq, adjust) the bar count, first and last bar, source,
    and when a job last wrote it (``updated``)."""
    with Store(db, read_only=True) as store:
        return store.catalog()
