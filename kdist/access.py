"""Who may open the DuckDB file, and the connection to it: the file-access part of a Store.

DuckDB lets one process hold a file read-write or many read it, never both. A writing
:class:`~kdist.store.Store` holds kdist's own lock for its whole life, an ``flock`` on
``<db>.lock`` (which names the process and its job), so a second writer, in this process or
another, is refused at once; its DuckDB connection is only needed while it writes, and
:meth:`FileAccess.idle`, called by the import loop while it waits, closes it after
:data:`RELEASE_AFTER` seconds without a statement, or at once when a reader is waiting. The
next statement reopens it. A reader (``read_only=True``: :func:`kdist.store.load`,
:func:`~kdist.store.catalog`, :func:`~kdist.store.check`, ``kdist show/jobs/status``) holds a
shared ``flock`` on ``<db>.readers`` while it waits and reads, which is how the writer knows to
let go and to wait before reopening; when a kdist import holds the file it retries for up to
:data:`READ_WAIT` seconds, and it sees committed batches only. Any other holder is named at
once, as waiting for it would not help.

:class:`FileAccess`, the base of :class:`~kdist.store.Store`, does all of that: it claims the
file, opens, closes and reopens the connection, runs a transaction, and turns DuckDB's
refusals into errors that name the holder. It knows nothing of kdist's tables.
"""

from __future__ import annotations

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

try:
    import fcntl
except ImportError:  # Windows: no flock; the writer then holds DuckDB's lock for its life
    fcntl = None

from .errors import DatabaseLockedError, StoreError, UsageError

log = logging.getLogger(__name__)

__all__ = ["READ_WAIT", "RELEASE_AFTER", "WRITE_WAIT", "FileAccess"]

#: Seconds without a statement after which :meth:`FileAccess.idle` closes the writer's DuckDB
#: connection, so that readers get in between batches (see docs/architecture.md, Readers).
RELEASE_AFTER = 1.0
#: Seconds a reader waits for a kdist import to let it in: the longest an import holds the
#: file without waiting is its start (opening, reading the stored bounds, starting a local
#: cluster) or one batch's write, a few seconds on a busy machine.
READ_WAIT = 30.0
#: Seconds a writer waits to reopen the file while readers hold it, before it gives up naming
#: them: kdist's readers hold it for one call; a DuckDB client holding it longer is told.
WRITE_WAIT = 60.0

_LOCK = re.compile(r"Conflicting lock is held in (?P<holder>.*?) \(PID (?P<pid>\d+)\)")


#: The writing Store of each file this process has open (see FileAccess._claim), and the lock
#: that makes checking and registering one step.
_WRITERS: dict[str, FileAccess] = {}
_WRITERS_LOCK = threading.Lock()
#: The threads of this process with a reader Store open, per file, as many times as open.
_READING: dict[str, list[int]] = {}


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
    """Run a method holding the store's connection, so that :meth:`FileAccess.idle`, from
    another thread, never closes it in the middle of a statement or a transaction."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._use:
            try:
                return method(self, *args, **kwargs)
            finally:
                self._last_used = time.monotonic()

    return wrapper


class FileAccess:
    """One DuckDB file held the kdist way (see the module's docstring); the base of
    :class:`~kdist.store.Store`, which documents the parameters.

    Constructing it checks the path and finds the sidecar files; :meth:`_open` then claims
    the file (a writer) and connects. ``config`` is DuckDB's, for every connection.
    """

    def __init__(
        self, path: str | os.PathLike, *, read_only: bool, create: bool, config: dict,
    ):
        if str(path).startswith((":memory:", "md:", "motherduck:")) or not str(path).strip():
            raise UsageError(
                f"db={str(path)!r} is not a local file: kdist stores bars in a DuckDB file, "
                "e.g. data/kdist.duckdb"
            )
        self.path = Path(path)
        self.read_only = read_only
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
        self._config = config

    def _open(self, wait: float):
        """Connect: a reader waits for up to ``wait`` seconds for an import to let it in; a
        writer first becomes the file's only writer. Call it holding ``_use``."""
        if self.read_only:
            self._con = self._open_reader(wait)
        else:
            self._claim(self._real)
            self._con = self._open_writer(first=True)

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

    # -- transactions ---------------------------------------------------------------------

    @_using
    def _transaction(self, work):
        """Run ``work(con)`` in one transaction, rolled back on any failure."""
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
    if "No space left on device" in text:
        # DuckDB rolled the transaction back: what was stored before stays as it was.
        return StoreError(f"Cannot use database {path}: its disk is full ({first}); free space "
                          "on it, or move the file to a disk with room", path=str(path))
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
