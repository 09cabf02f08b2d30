"""Who may open the DuckDB file: one writer at a time, readers between its batches, and
only files kdist created (issue 14)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest

import kdist
import kdist.access as access  # the Store's file access: locks, waits, writers
from kdist.errors import DatabaseLockedError, StoreError
from kdist.schema import Adjust, Freq
from kdist.store import Store

SYMBOLS = ["600000.SH", "000001.SZ", "600519.SH", "000002.SZ"]
WINDOW = {"start": "2024-01-02", "end": "2024-03-29"}


def tables(db):
    con = duckdb.connect(db, read_only=True)
    try:
        found = con.execute("SELECT table_name FROM duckdb_tables()").fetchall()
        return sorted(r[0] for r in found)
    finally:
        con.close()


def at_once(n, func):
    """Run ``func(i)`` in ``n`` threads released together; return what each returned or raised."""
    barrier = threading.Barrier(n)
    results = [None] * n

    def run(i):
        barrier.wait()
        try:
            results[i] = func(i)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


# --- A. one writer per file, also within one process ------------------------------------------


def test_two_threads_opening_one_file_for_writing_exactly_one_wins(db):
    Store(db).close()
    for _ in range(20):
        results = at_once(2, lambda i: Store(db))
        stores = [r for r in results if isinstance(r, Store)]
        refused = [r for r in results if isinstance(r, DatabaseLockedError)]
        for store in stores:
            store.close()
        assert len(stores) == 1 and len(refused) == 1, results
        assert "another import in this process" in str(refused[0])
    with Store(db) as store:  # every claim was released
        assert store.jobs().empty


def test_a_failed_open_releases_the_claim(db):
    con = duckdb.connect(db)
    con.execute("CREATE TABLE kline (code VARCHAR)")
    con.close()
    for _ in range(2):  # the second attempt meets the same error, not "in use"
        with pytest.raises(StoreError, match="'kline' table that kdist did not create"):
            Store(db)


def test_two_imports_started_together_in_one_process_store_each_bar_once(db):
    Store(db).close()

    def run(i):
        return kdist.ingest(SYMBOLS, **WINDOW, db=db, client="sync")

    results = at_once(2, run)
    refused = [r for r in results if isinstance(r, DatabaseLockedError)]
    done = [r for r in results if isinstance(r, kdist.Report)]
    assert len(refused) == 1 and len(done) == 1, results
    assert done[0].status == "done"
    checked = kdist.check(db)
    assert checked["duplicate_keys"] == 0 and checked["rows"] == done[0].rows_written
    with Store(db, read_only=True) as store:
        assert store.jobs()["status"].tolist() == ["done"]


# --- B. a DuckDB file kdist did not create ----------------------------------------------------


def foreign(db, *ddl):
    con = duckdb.connect(db)
    for statement in ddl:
        con.execute(statement)
    con.close()


def test_another_applications_file_is_refused_unchanged(db):
    foreign(db, "CREATE TABLE trades (id INTEGER, price DOUBLE)",
            "INSERT INTO trades VALUES (1, 9.5)", "CREATE VIEW expensive AS SELECT * FROM trades")
    with pytest.raises(StoreError) as info:
        Store(db)
    message = str(info.value)
    assert "\n" not in message and db in message and info.value.path == db
    assert "kdist did not create" in message and "trades" in message and "expensive" in message
    assert "another --db" in message and "adopt=True" in message
    assert tables(db) == ["trades"]
    with pytest.raises(StoreError, match="is not a kdist database.*trades"):
        Store(db, read_only=True)


def test_a_file_with_its_own_kdist_jobs_table_is_refused_unchanged(db, tmp_path):
    foreign(db, "CREATE TABLE kdist_jobs (job INTEGER)")
    log = tmp_path / "calls.log"
    provider = kdist.get_provider("synthetic", call_log=str(log))
    with pytest.raises(StoreError, match="kdist did not create.*kdist_jobs"):
        kdist.ingest(SYMBOLS[:1], **WINDOW, db=db, client="sync", provider=provider)
    assert tables(db) == ["kdist_jobs"] and not log.exists()


def test_an_empty_duckdb_file_is_initialised(db):
    foreign(db)
    with Store(db) as store:
        assert store.jobs().empty
    assert tables(db) == ["kdist_action_checks", "kdist_actions", "kdist_findings",
                          "kdist_job_symbols", "kdist_jobs", "kdist_meta", "kdist_quality",
                          "kdist_series", "kline"]


def test_adopt_adds_kdist_tables_beside_the_others(db):
    foreign(db, "CREATE TABLE trades (id INTEGER)", "INSERT INTO trades VALUES (7)")
    with Store(db, adopt=True) as store:
        report = kdist.ingest(SYMBOLS[:2], **WINDOW, db=store, client="sync")
    assert report.status == "done"
    assert tables(db) == ["kdist_action_checks", "kdist_actions", "kdist_findings",
                          "kdist_job_symbols", "kdist_jobs", "kdist_meta", "kdist_quality",
                          "kdist_series", "kline",
                          "trades"]
    assert len(kdist.load(db)) == report.rows_written
    with Store(db) as store:  # adopted once, a kdist file from then on
        assert store.con.execute("SELECT * FROM trades").fetchall() == [(7,)]


def test_adopt_refuses_a_file_whose_tables_have_kdist_names(db):
    foreign(db, "CREATE TABLE kdist_job_symbols (x INTEGER)")
    with pytest.raises(StoreError, match="kdist_job_symbols"):
        Store(db, adopt=True)
    assert tables(db) == ["kdist_job_symbols"]


# --- C. readers while an import writes --------------------------------------------------------

BIN = Path(sys.executable).parent
ENV = {**os.environ, "KDIST_DASHBOARD_ADDRESS": "127.0.0.1:0"}
UNIVERSE = kdist.get_provider("synthetic", universe=40).list_symbols()

# An import of n symbols, one per chunk, at 5 calls per second, in this process (sync), which
# writes a batch every `flush` seconds. Store.idle() runs wherever the runner waits for results.
IMPORT = textwrap.dedent(
    """
    import json, sys
    import kdist, kdist.access, kdist.backends

    wait = kdist.backends.InProcess.wait

    def waiting(self, futures, timeout):
        try:
            return wait(self, futures, timeout)
        finally:
            for store in list(kdist.access._WRITERS.values()):
                store.idle()

    kdist.backends.InProcess.wait = waiting
    db, log, n, flush = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    symbols = kdist.get_provider("synthetic", universe=n).list_symbols()
    report = kdist.ingest(symbols, start="2024-01-02", end="2024-03-29", db=db, client="sync",
                          chunk_size=1, flush_seconds=flush,
                          provider=kdist.get_provider("synthetic", latency=0.2, call_log=log))
    print(json.dumps({"job_id": report.job_id, "status": report.status}))
    """
)
# A process that opens the file for writing and holds it, never idle, until told to close it.
HOLD = textwrap.dedent(
    """
    import sys, kdist
    store = kdist.Store(sys.argv[1], read_only=sys.argv[2] == "read")
    print("ready", flush=True)
    sys.stdin.readline()
    store.close()
    """
)
# A process that holds the file with plain DuckDB until told to let go.
DUCKDB_HOLD = textwrap.dedent(
    """
    import sys, duckdb
    con = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == "read")
    print("ready", flush=True)
    sys.stdin.readline()
    con.close()
    """
)


def wait_until(predicate, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def calls(log: Path) -> list[str]:
    return log.read_text().split("\n")[:-1] if log.exists() else []


@pytest.fixture
def spawn():
    """Start Python snippets as processes; every one is killed at the end of the test."""
    started = []

    def start(code, *args):
        proc = subprocess.Popen([sys.executable, "-c", code, *map(str, args)], env=ENV,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


@pytest.fixture
def importing(spawn, tmp_path):
    """Start the import above in another process; return it, its database and call log once
    its job is recorded and it has fetched a few symbols."""

    def start(n=40, flush=0.5):
        db, log = tmp_path / "k.duckdb", tmp_path / "calls.log"
        proc = spawn(IMPORT, db, log, n, flush)
        wait_until(lambda: len(calls(log)) >= 3 or proc.poll() is not None, 30, "the import")
        assert proc.poll() is None, proc.communicate()
        return proc, str(db), log

    return start


@pytest.fixture
def held(spawn):
    """A process holding ``db`` (``how``: kdist write/read, duckdb write/read) until it ends."""

    def start(db, code, how):
        proc = spawn(code, db, how)
        assert proc.stdout.readline().strip() == "ready", proc.communicate()
        return proc

    return start


def reference(tmp_path, n) -> pd.DataFrame:
    db = str(tmp_path / "reference.duckdb")
    kdist.ingest(kdist.get_provider("synthetic", universe=n).list_symbols(), **WINDOW, db=db,
                 client="sync")
    with Store(db, read_only=True) as store:
        return store.fingerprint()


def finished(proc) -> dict:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return json.loads(out)


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_kdist_readers_get_in_during_an_import_and_see_whole_batches(importing, tmp_path):
    proc, db, _ = importing(n=40, flush=0.5)
    bars = reference(tmp_path, 40).set_index("symbol")["bars"]
    seen = []
    while proc.poll() is None:
        t0 = time.monotonic()
        with Store(db, read_only=True, wait=10) as store:
            jobs = store.jobs()
            ledger = store.job_symbols(jobs["job_id"].iat[0])
            loaded = store.load()
        waited = time.monotonic() - t0
        [status] = jobs["status"].tolist()
        assert status in ("running", "done")  # live, never taken for interrupted
        if proc.poll() is not None or status == "done":
            break  # it may have ended before this read: nothing proven by it
        ok = set(ledger.loc[ledger["status"] == "ok", "symbol"])
        # One snapshot of committed batches: every bar of the symbols recorded ok, no other.
        assert set(loaded["symbol"]) == ok
        assert (loaded.groupby("symbol").size() == bars[sorted(ok)]).all()
        assert waited < 8, waited  # let in between batches, well before `wait` ran out
        seen.append(len(ok))
        if len(seen) == 3:
            # The command line's readers too (another process, a one-line answer).
            shown = subprocess.run([BIN / "kdist", "jobs", "--db", db, "--json"],
                                   capture_output=True, text=True, timeout=30, env=ENV)
            live = proc.poll() is None
            assert shown.returncode == 0, shown.stderr
            assert [j["status"] for j in json.loads(shown.stdout)] in (
                [["running"]] if live else [["running"], ["done"]])
        time.sleep(0.2)
    assert len(seen) >= 3 and seen == sorted(seen) and any(0 < n < 40 for n in seen), seen
    assert finished(proc)["status"] == "done"
    checked = kdist.check(db)
    assert checked["ok"] and checked["rows"] == bars.sum()
    pd.testing.assert_frame_equal(kdist.Store(db, read_only=True).fingerprint(),
                                  reference(tmp_path, 40))


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_plain_duckdb_reader_gets_in_between_batches_when_it_retries(importing, tmp_path):
    proc, db, _ = importing(n=40, flush=2.0)
    deadline = time.monotonic() + 15
    stored = 0
    while not stored:  # until it has read a batch, in the middle of the import
        try:
            con = duckdb.connect(db, read_only=True)
        except duckdb.IOException as exc:
            assert "Conflicting lock" in str(exc)
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
            continue
        try:
            stored = con.execute("SELECT count(DISTINCT symbol) FROM kline").fetchone()[0]
            ok = con.execute(
                "SELECT count(*) FROM kdist_job_symbols WHERE status = 'ok'").fetchone()[0]
        finally:
            con.close()
        assert proc.poll() is None
        assert stored == ok < 40
        time.sleep(0.2)
    assert finished(proc)["status"] == "done"  # and the import wrote on once it let go
    pd.testing.assert_frame_equal(kdist.Store(db, read_only=True).fingerprint(),
                                  reference(tmp_path, 40))


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_second_writer_process_is_refused_naming_the_import(importing, tmp_path):
    proc, db, _ = importing(n=30, flush=0.5)
    lock = Path(db + ".lock")
    wait_until(lambda: json.loads(lock.read_text() or "{}").get("job"), 10, "the job's id")
    job_id = json.loads(lock.read_text())["job"]
    log = tmp_path / "second.log"
    second = subprocess.run(
        [BIN / "kdist", "ingest", "600000.SH", "--start", "2024-01-02", "--end", "2024-01-31",
         "--db", db, "--scheduler", "sync", "--option", f"call_log={log}"],
        capture_output=True, text=True, timeout=30, env=ENV)
    with pytest.raises(DatabaseLockedError) as info:
        Store(db)
    assert proc.poll() is None  # both met the running import
    assert second.returncode == 1
    [line] = second.stderr.strip().splitlines()
    assert f"PID {proc.pid}" in line and f"job {job_id}" in line and db in line
    assert not log.exists()  # refused before fetching
    assert info.value.pid == proc.pid and f"PID {proc.pid}" in str(info.value)
    assert finished(proc) == {"job_id": job_id, "status": "done"}
    with Store(db, read_only=True) as store:
        assert store.jobs()[["job_id", "status"]].values.tolist() == [[job_id, "done"]]
    assert not lock.exists()


def test_a_reader_on_this_thread_gets_in_while_its_writer_is_idle(db):
    with Store(db) as writer:
        kdist.ingest(SYMBOLS[:1], **WINDOW, db=writer, client="sync")
        first = kdist.load(db)  # the writer is idle on this very thread
        assert set(first["symbol"]) == {SYMBOLS[0]}
        kdist.ingest(SYMBOLS[1:2], **WINDOW, db=writer, client="sync")  # reopened
        assert set(kdist.load(db)["symbol"]) == set(SYMBOLS[:2])


def test_a_reader_left_open_on_this_thread_fails_a_write_at_once(db):
    with Store(db) as writer:
        kdist.ingest(SYMBOLS[:1], **WINDOW, db=writer, client="sync")
        t0 = time.monotonic()
        with Store(db, read_only=True) as reader:  # the idle writer lets it in
            with pytest.raises(DatabaseLockedError, match="open for reading on this thread"):
                writer.jobs()  # it would wait for the reader forever
            assert len(reader.load()) > 0
        assert time.monotonic() - t0 < 5
        assert writer.jobs()["status"].tolist() == ["done"]
        with Store(db, read_only=True):
            with pytest.raises(DatabaseLockedError, match="open for reading on this thread"):
                kdist.ingest(SYMBOLS[:1], **WINDOW, db=writer, client="sync")


def test_a_reader_waits_for_a_writer_of_this_process_to_finish_opening(db, monkeypatch):
    Store(db).close()
    mark = Store._mark_interrupted
    opening = threading.Event()

    def slow(self):  # a long first statement on the new connection
        opening.set()
        self.con.execute("SELECT count(*) FROM range(400000000)").fetchall()
        mark(self)

    monkeypatch.setattr(Store, "_mark_interrupted", slow)
    writers = []
    thread = threading.Thread(target=lambda: writers.append(Store(db)))
    thread.start()
    assert opening.wait(10)
    try:
        assert kdist.catalog(db).empty  # it must not close the connection under the writer
    finally:
        thread.join(30)
    with writers[0] as writer:
        assert writer.jobs().empty


def test_a_reader_thread_gets_in_while_an_import_thread_runs(db, monkeypatch):
    """A notebook: an import panel runs in a thread, a browse panel reads the catalog."""
    import kdist.backends

    wait = kdist.backends.InProcess.wait

    def waiting(self, futures, timeout):
        try:
            return wait(self, futures, timeout)
        finally:
            for store in list(access._WRITERS.values()):
                store.idle()

    monkeypatch.setattr(kdist.backends.InProcess, "wait", waiting)
    provider = kdist.get_provider("synthetic", latency=0.1)
    Store(db).close()
    reports = []
    thread = threading.Thread(target=lambda: reports.append(kdist.ingest(
        UNIVERSE[:20], **WINDOW, db=db, client="sync", chunk_size=1, flush_seconds=0.3,
        provider=provider)))
    thread.start()
    reads = []
    while thread.is_alive():
        catalog = kdist.catalog(db)
        if thread.is_alive():
            reads.append(len(catalog))
        time.sleep(0.1)
    thread.join()
    assert reports[0].status == "done" and len(kdist.catalog(db)) == 20
    assert len(reads) >= 3 and reads == sorted(reads) and reads[-1] > 0, reads


# --- idle() ------------------------------------------------------------------------------------


def settings(store):
    return store.con.execute(
        """SELECT current_setting('memory_limit'), current_setting('enable_progress_bar')"""
    ).fetchall()


def test_idle_lets_go_after_release_after_and_reopens_as_before(db, monkeypatch):
    monkeypatch.setattr(access, "RELEASE_AFTER", 0.2)
    with Store(db) as store:
        kdist.ingest(SYMBOLS[:1], **WINDOW, db=store, client="sync")
        before = settings(store)
        assert before[0][1] is False
        assert store.idle() is False  # just used
        time.sleep(0.25)
        assert store.idle() is True
        duckdb.connect(db, read_only=True).close()  # released: anyone may read now
        assert store.idle() is True
        kdist.ingest(SYMBOLS[1:2], **WINDOW, db=store, client="sync")
        assert settings(store) == before  # the writer's settings, again
    assert set(kdist.load(db)["symbol"]) == set(SYMBOLS[:2])


def test_idle_lets_go_at_once_for_a_waiting_reader(db):
    with Store(db) as store:
        store.jobs()
        assert store.idle() is False
        reader = access._FileLock(store._readers_path)
        assert reader.acquire(shared=True)
        try:
            assert store.idle() is True
        finally:
            reader.release()
        assert store.jobs().empty  # reopened
        assert store.idle() is False


def test_bounds_read_before_a_release_still_serve_the_windows(db):
    kdist.ingest(SYMBOLS, **WINDOW, db=db, client="sync")
    args = (SYMBOLS, Freq.DAY, Adjust.NONE, pd.Timestamp("2024-01-02"),
            pd.Timestamp("2024-04-30"), 5)
    with Store(db) as fresh:
        expected = fresh.incremental_windows(*args)
    with Store(db) as store:
        store.series(Freq.DAY, Adjust.NONE)
        reader = access._FileLock(store._readers_path)
        reader.acquire(shared=True)
        assert store.idle() is True
        reader.release()
        assert (Freq.DAY, Adjust.NONE) in store._series  # nobody else can have written
        got = store.incremental_windows(*args)
    for a, b in zip(got, expected):
        pd.testing.assert_frame_equal(a, b)


def test_the_lock_file_names_the_writer_and_its_job_and_goes_with_it(db):
    with Store(db) as store:
        lock = Path(db + ".lock")
        assert json.loads(lock.read_text()) == {
            "pid": os.getpid(), "command": access._command(), "job": None}
        report = kdist.ingest(SYMBOLS[:1], **WINDOW, db=store, client="sync")
        assert json.loads(lock.read_text())["job"] == report.job_id
    assert not lock.exists()
    kdist.load(db)
    assert not Path(db + ".readers").exists()


def test_a_lock_file_left_by_a_killed_import_holds_nothing(db):
    report = kdist.ingest(SYMBOLS[:1], **WINDOW, db=db, client="sync")
    with Store(db) as store:
        store.con.execute("UPDATE kdist_jobs SET status = 'running'")
    Path(db + ".lock").write_text(json.dumps({"pid": 1, "command": "kdist ingest", "job": "x"}))
    with Store(db, read_only=True) as store:  # no process holds it: the job was interrupted
        assert store.jobs()["status"].tolist() == ["interrupted"]
    assert kdist.ingest(resume=report.job_id, db=db, client="sync").status == "done"


def test_a_reader_waits_for_an_import_only_as_long_as_told(db, held):
    Store(db).close()
    writer = held(db, HOLD, "write")  # a kdist writer that never calls idle()
    t0 = time.monotonic()
    with pytest.raises(DatabaseLockedError) as info:
        Store(db, read_only=True, wait=1)
    assert 1 <= time.monotonic() - t0 < 5
    message = str(info.value)
    assert f"PID {writer.pid}" in message and "within 1 s" in message and "\n" not in message
    assert info.value.pid == writer.pid


def test_a_reader_does_not_wait_for_a_holder_that_is_not_kdist(db, held):
    Store(db).close()
    other = held(db, DUCKDB_HOLD, "write")
    t0 = time.monotonic()
    with pytest.raises(DatabaseLockedError, match=f"PID {other.pid}"):
        Store(db, read_only=True)
    assert time.monotonic() - t0 < 3


def test_a_writer_waits_for_readers_then_names_the_one_that_stays(db, held, monkeypatch):
    monkeypatch.setattr(access, "WRITE_WAIT", 2.0)
    with Store(db) as store:
        kdist.ingest(SYMBOLS[:1], **WINDOW, db=store, client="sync")
        time.sleep(access.RELEASE_AFTER)
        assert store.idle() is True
        reader = held(db, DUCKDB_HOLD, "read")
        t0 = time.monotonic()
        with pytest.raises(DatabaseLockedError) as info:
            store.jobs()
        assert 2 <= time.monotonic() - t0 < 6
        assert f"PID {reader.pid}" in str(info.value) and "waited 2 s" in str(info.value)
        # The job's last writes try again, without another long wait for the same reader.
        t0 = time.monotonic()
        with pytest.raises(DatabaseLockedError, match="waited 1 s"):
            store.jobs()
        assert time.monotonic() - t0 < 1.8
        reader.stdin.write("go\n")
        reader.stdin.flush()
        reader.wait(10)
        assert store.jobs()["status"].tolist() == ["done"]  # it left: the writer goes on
