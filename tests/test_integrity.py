"""Never report success for data that was not stored (docs/testplan.md, "Integrity").

A write that fails (a full disk, a batch the store refuses) is an error naming the resume
command, and the report counts as ok only what the file holds; a bar kdist cannot store
exactly fails its own symbol, not the job; a signal ends a job within seconds in every mode
with the real job id in the resume hint; numbers no job can run with are refused before
anything is recorded; and a resumed job's status counts every symbol of the job.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest

import kdist
from kdist.errors import StoreError, UsageError
from kdist.progress import Callback
from kdist.store import Store

BIN = Path(sys.executable).parent
KDIST = str(BIN / "kdist")
ENV = {**os.environ, "KDIST_DASHBOARD_ADDRESS": "127.0.0.1:0"}
UNIVERSE = kdist.get_provider("synthetic", universe=50).list_symbols()


def _read(db: str, sql: str, params=()):
    con = duckdb.connect(db, read_only=True)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def _stored_vs_ledger(db: str):
    """(symbols with bars in kline, symbols the ledger says are ok) of the file's only job."""
    stored = {r[0] for r in _read(db, "SELECT DISTINCT symbol FROM kline")}
    ok = {r[0] for r in _read(db, "SELECT symbol FROM kdist_job_symbols WHERE status = 'ok'")}
    return stored, ok


# --- a small file system that fills up ------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs: a real 'No space left on device' for DuckDB's writes (needs root)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _cli(*args, timeout=120):
    return subprocess.run([KDIST, *map(str, args)], capture_output=True, text=True, env=ENV,
                          timeout=timeout, start_new_session=True)


@pytest.mark.slow
def test_a_final_write_that_fails_on_a_full_disk_exits_1_with_the_resume_command(small_disk):
    db = str(small_disk / "kdist.duckdb")
    done = _cli("ingest", "--all", "--option", "universe=50", "--start", "2015-01-01",
                "--end", "2024-12-31", "--db", db, "--quiet")
    assert done.returncode == 1, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "No space left on device" in lines[0]
    resume = re.search(r"resume with: (kdist ingest --resume \S+ --db \S+)", lines[0])
    assert resume, lines[0]
    # Nothing the ledger calls ok is missing from the file (here nothing was stored).
    stored, ok = _stored_vs_ledger(db)
    assert ok <= stored
    assert _read(db, "SELECT status FROM kdist_jobs") == [("failed",)]

    # Room again: the resume command from the message stores every symbol.
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    again = _cli(*resume.group(1).split()[1:], "--quiet")
    assert again.returncode == 0, again
    stored, ok = _stored_vs_ledger(db)
    assert stored == ok == set(UNIVERSE)
    assert _read(db, "SELECT count(*) - count(DISTINCT (symbol, ts)) FROM kline") == [(0,)]


@pytest.mark.slow
def test_update_on_a_full_disk_exits_1(small_disk):
    db = str(small_disk / "kdist.duckdb")
    first = _cli("ingest", *UNIVERSE[:5], "--start", "2024-01-01", "--end", "2024-03-29",
                 "--db", db, "--quiet")
    assert first.returncode == 0, first
    filler = small_disk / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)
    before = _read(db, "SELECT count(*), max(ts) FROM kline")
    done = _cli("update", "--db", db, "--end", "2024-12-31", "--quiet")
    assert done.returncode == 1, done
    assert "No space left on device" in done.stderr
    assert "its disk is full" in done.stderr and "free space on it" in done.stderr  # what to do
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert _read(db, "SELECT count(*), max(ts) FROM kline") == before


def test_a_write_the_store_refuses_is_an_error_and_no_symbol_counts_as_ok(db, monkeypatch):
    def refuse(self, bars, outcomes, **kwargs):
        raise StoreError(f"Cannot use database {self.path}: refused for the test", path=self.path)

    monkeypatch.setattr(Store, "write_batch", refuse)
    with pytest.raises(StoreError, match=r"resume with: kdist ingest --resume \S+ --db ") as err:
        kdist.ingest(UNIVERSE[:10], start="2024-01-01", end="2024-06-28", db=db, client="sync")
    report = err.value.report
    assert report.status == "failed"
    assert report.symbols_ok == 0 and report.symbols_failed == 10 and report.unstored == 10
    assert report.rows_written == 0
    assert all("not stored" in reason for reason in report.failures.values())
    monkeypatch.undo()
    with Store(db, read_only=True) as store:
        job = store.jobs().iloc[0]
        assert job["status"] == "failed" and job["symbols_ok"] == 0
        assert set(store.job_symbols(job["job_id"])["status"]) == {"pending"}


def test_a_mid_job_write_failure_keeps_earlier_batches_and_counts_only_them(db, monkeypatch):
    real = Store.write_batch
    calls = []

    def second_fails(self, bars, outcomes, **kwargs):
        calls.append(len(bars))
        if len(calls) >= 2:
            raise StoreError(f"Cannot use database {self.path}: disk full (test)", path=self.path)
        return real(self, bars, outcomes, **kwargs)

    monkeypatch.setattr(Store, "write_batch", second_fails)
    with pytest.raises(StoreError, match="resume with: kdist ingest --resume") as err:
        kdist.ingest(UNIVERSE, start="2020-01-01", end="2024-12-31", db=db, client="sync",
                     chunk_size=5, batch_rows=5_000)
    monkeypatch.undo()
    report = err.value.report
    stored, ok = _stored_vs_ledger(db)
    assert report.symbols_ok == len(ok) > 0
    assert ok == stored
    # The rest were never fetched: pending in the ledger, fetched by the resume.
    with Store(db, read_only=True) as store:
        statuses = store.job_symbols(report.job_id)["status"].value_counts()
    assert statuses["pending"] == len(UNIVERSE) - report.symbols_ok
    # The resume finishes it: every symbol once.
    kdist.ingest(resume=report.job_id, db=db, client="sync")
    stored, ok = _stored_vs_ledger(db)
    assert stored == ok == set(UNIVERSE)
    assert _read(db, "SELECT count(*) - count(DISTINCT (symbol, ts)) FROM kline") == [(0,)]


# --- a bar that cannot be stored exactly ----------------------------------------------------


def _minute_csv(path: Path, symbol: str, odd: str | None = None):
    """One trading morning of 1-minute bars as a broker's CSV export lays them out."""
    rows = ["datetime,open,high,low,close,volume,amount"]
    for minute in range(1, 121):
        hh, mm = divmod(9 * 60 + 30 + minute, 60)
        stamp = f"2024-03-01 {hh:02d}:{mm:02d}:00"
        if odd and minute == 1:
            stamp = odd
        rows.append(f"{stamp},10.00,10.05,9.98,10.01,1200,12012.0")
    path.joinpath(f"{symbol}.csv").write_text("\n".join(rows) + "\n")


def test_a_sub_second_timestamp_fails_its_symbol_only(tmp_path, db):
    root = tmp_path / "csv"
    root.mkdir()
    symbols = [f"6000{i:02d}.SH" for i in range(30)]
    for i, symbol in enumerate(symbols):
        _minute_csv(root, symbol, odd="2024-03-01 09:31:00.5" if i == 7 else None)
    args = ["ingest", "--all", "--provider", "csv", "--option", f"root={root}", "--freq", "1m",
            "--start", "2024-03-01", "--end", "2024-03-01", "--db", db, "--quiet"]
    done = _cli(*args)
    assert done.returncode == 3, done  # partial: the others are stored
    assert {r[0] for r in _read(db, "SELECT DISTINCT symbol FROM kline")} == set(symbols) - {symbols[7]}
    [(status, error)] = _read(db, "SELECT status, error FROM kdist_job_symbols WHERE symbol = ?",
                              [symbols[7]])
    assert status == "failed" and "sub-second timestamp" in error and "09:31:00.5" in error
    # A resume tries that symbol alone, fails it again, and keeps the job partial.
    [(job_id,)] = _read(db, "SELECT job_id FROM kdist_jobs")
    again = _cli("ingest", "--resume", job_id, "--db", db, "--quiet")
    assert again.returncode == 3, again
    assert _read(db, "SELECT status FROM kdist_jobs") == [("partial",)]


# --- numbers no job can run with -------------------------------------------------------------


@pytest.mark.parametrize("name, value", [
    ("timeout", -1), ("timeout", math.nan), ("max_concurrency", -1), ("max_rate", math.nan),
    ("max_rate", 0), ("n_workers", -2), ("threads_per_worker", -1), ("chunk_size", 0),
    ("retries", 0), ("cooldown", math.inf), ("batch_rows", 2.5), ("overlap", 0),
])
def test_numbers_are_checked_before_anything_is_recorded(db, name, value):
    with pytest.raises(UsageError, match=name):
        kdist.ingest(UNIVERSE[:2], start="2024-01-01", end="2024-01-31", db=db,
                     **{name: value})
    assert not os.path.exists(db)


@pytest.mark.parametrize("flag, value", [
    ("--timeout", "-1"), ("--timeout", "nan"), ("--max-concurrency", "-1"),
    ("--max-rate", "nan"), ("--workers", "-2"), ("--threads", "-1"),
])
def test_the_cli_refuses_bad_numbers_with_exit_2(tmp_path, flag, value):
    db = tmp_path / "x.duckdb"
    done = _cli("ingest", "600000.SH", "--start", "2024-01-01", "--db", db, f"{flag}={value}",
                timeout=60)
    assert done.returncode == 2, done
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert not db.exists()


# --- a resume judged on the whole job ------------------------------------------------------


def test_a_resume_whose_remaining_symbols_fail_again_stays_partial(db):
    provider = kdist.get_provider("synthetic", universe=40, fail="000003.SZ,600004.SH")
    symbols = provider.list_symbols()
    report = kdist.ingest(symbols, start="2024-01-01", end="2024-03-29", db=db,
                          provider=provider, client="sync", retries=1)
    assert report.status == "partial" and report.symbols_failed == 2
    again = kdist.ingest(resume=report.job_id, db=db, client="sync", retries=1)
    assert again.symbols_failed == 2 and again.n_symbols == 2
    assert again.status == "partial"
    with Store(db, read_only=True) as store:
        assert store.jobs().iloc[0]["status"] == "partial"
    done = _cli("ingest", "--resume", report.job_id, "--db", db, "--quiet", "--retries", "1")
    assert done.returncode == 3, done


# --- signals -------------------------------------------------------------------------------


class _Running:
    """A ``kdist ingest`` subprocess, its stderr read line by line as it comes."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([KDIST, *map(str, args)], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=ENV,
                                     start_new_session=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if m := re.search(pattern, line):
                    return m
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern!r}: {self.lines}")

    def stop(self, *signals, gap: float = 0.2) -> tuple[int, float]:
        t0 = time.monotonic()
        for i, sig in enumerate(signals):
            if i:
                time.sleep(gap)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, sig)
        code = self.proc.wait(timeout=60)
        self._reader.join(timeout=5)
        return code, time.monotonic() - t0

    def kill(self):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)


@pytest.fixture
def running():
    started = []

    def start(*args):
        started.append(_Running(*args))
        return started[-1]

    yield start
    for run in started:
        run.kill()


def _started(run: _Running) -> str:
    return run.wait_for(r"kdist job (\S+):").group(1)


@pytest.mark.slow
@pytest.mark.parametrize("timeout", ["0", "60"])
def test_sigterm_ends_an_in_process_job_with_a_hung_call_within_seconds(running, db, timeout):
    symbols = sorted(UNIVERSE[:6])  # the order chunks are planned and run in
    run = running("ingest", *symbols, "--start", "2024-01-01", "--end", "2024-03-29",
                  "--db", db, "--scheduler", "sync", "--timeout", timeout,
                  "--option", f"hang={symbols[3]}", "--chunk-size", "1")
    job_id = _started(run)
    time.sleep(1.0)  # the first symbols are fetched, the hung one is waiting
    code, took = run.stop(signal.SIGTERM)
    assert code == 130, run.lines
    assert took < 8, f"took {took:.1f}s to stop"
    assert any(f"--resume {job_id} --db" in line for line in run.lines), run.lines
    assert not any("Traceback" in line for line in run.lines), run.lines
    stored, ok = _stored_vs_ledger(db)
    assert ok == stored and set(symbols[:3]) <= ok
    assert _read(db, "SELECT status FROM kdist_jobs") == [("cancelled",)]


@pytest.mark.slow
def test_two_sigterms_exit_130_with_the_job_id_and_no_traceback(running, db):
    provider_opts = ["--option", "latency=0.05"]
    run = running("ingest", *UNIVERSE, "--start", "2015-01-01", "--end", "2024-12-31",
                  "--db", db, "--scheduler", "sync", "--chunk-size", "2", *provider_opts)
    job_id = _started(run)
    time.sleep(1.0)
    code, took = run.stop(signal.SIGTERM, signal.SIGTERM)
    assert code == 130, run.lines
    assert took < 8
    assert not any("Traceback" in line or "RuntimeError" in line for line in run.lines), run.lines
    assert any(f"--resume {job_id} --db" in line for line in run.lines), run.lines
    stored, ok = _stored_vs_ledger(db)
    assert ok == stored
    # The resume finishes the job.
    again = _cli("ingest", "--resume", job_id, "--db", db, "--quiet")
    assert again.returncode == 0, again
    assert _stored_vs_ledger(db)[1] == set(UNIVERSE)


@pytest.mark.slow
def test_sigterm_ends_a_local_cluster_job_within_seconds(running, db):
    run = running("ingest", *UNIVERSE, "--start", "2015-01-01", "--end", "2024-12-31",
                  "--db", db, "--scheduler", "local", "--workers", "2", "--threads", "1",
                  "--chunk-size", "1", "--option", "latency=0.3")
    job_id = _started(run)
    time.sleep(2.0)
    code, took = run.stop(signal.SIGTERM)
    assert code == 130, run.lines
    assert took < 10, f"took {took:.1f}s to stop"
    assert any(f"--resume {job_id} --db" in line for line in run.lines), run.lines
    stored, ok = _stored_vs_ledger(db)
    assert ok == stored


# --- a worker that stops answering ------------------------------------------------------------


class _Notes(Callback):
    def __init__(self):
        self.notes: list[str] = []
        self.symbols = 0

    def on_note(self, text):
        self.notes.append(text)

    def on_symbols(self, outcomes):
        self.symbols += len(outcomes)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_result_held_by_a_frozen_worker_is_run_elsewhere():
    """A chunk that finished on a worker just before the worker froze: its result cannot
    be fetched until Dask's TTL (minutes), so the watchdog moves it as it moves running
    chunks (the ingest above met this race once in CI and waited out its timeout)."""
    from distributed import Client, LocalCluster

    from kdist.backends import DaskCluster
    from kdist.loop import _Silence
    from kdist.plan import Chunk

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster, \
            Client(cluster, set_as_default=False) as client:
        pids = client.run(os.getpid)
        frozen, answering = sorted(pids)
        held = client.submit(sum, [1, 2], workers=[frozen], pure=False)
        assert held.result(timeout=30) == 3
        chunk = Chunk(0, ("600000.SH",), None, None)
        silence = _Silence(DaskCluster("client", client), after=2.0)
        assert silence.check({held: chunk}) == []  # every worker answers
        os.kill(pids[frozen], signal.SIGSTOP)
        try:
            moves, deadline = [], time.monotonic() + 30
            while not moves and time.monotonic() < deadline:
                time.sleep(0.5)
                moves = silence.check({held: chunk})
        finally:
            os.kill(pids[frozen], signal.SIGCONT)
    assert len(moves) == 1
    future, moved, note, workers = moves[0]
    assert future is held and moved is chunk and workers == [answering]
    assert f"its worker {frozen} has not answered" in note


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_chunk_on_a_frozen_worker_runs_elsewhere_and_the_user_is_told(db, monkeypatch):
    from distributed import Client, LocalCluster

    from kdist import loop

    monkeypatch.setattr(loop, "SILENT_SECONDS", 4.0)
    notes = _Notes()
    symbols = kdist.get_provider("synthetic", universe=24).list_symbols()
    provider = kdist.get_provider("synthetic", latency=0.25)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster, \
            Client(cluster, set_as_default=False) as client:
        pids = client.run(os.getpid)
        frozen = []

        def freeze_one():
            while notes.symbols < 2:  # the job is under way on both workers
                time.sleep(0.05)
            address, pid = sorted(pids.items())[0]
            os.kill(pid, signal.SIGSTOP)
            frozen.append(pid)

        freezer = threading.Thread(target=freeze_one, daemon=True)
        freezer.start()
        t0 = time.monotonic()
        try:
            report = kdist.ingest(symbols, start="2024-01-01", end="2024-03-29", db=db,
                                  provider=provider, client=client, chunk_size=2,
                                  callback=notes)
            took = time.monotonic() - t0
        finally:
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
    assert frozen, "no worker was frozen"
    assert report.status == "done" and report.symbols_ok == len(symbols)
    assert took < 45, f"took {took:.0f}s"
    assert notes.notes and "has not answered" in notes.notes[0], notes.notes
    assert _read(db, "SELECT count(*) - count(DISTINCT (symbol, ts)) FROM kline") == [(0,)]
    assert {r[0] for r in _read(db, "SELECT DISTINCT symbol FROM kline")} == set(symbols)


def test_the_api_refuses_a_database_that_is_not_a_file():
    for db in (":memory:", ":memory:x", "md:kdist", ""):
        with pytest.raises(UsageError, match="not a local file"):
            kdist.ingest(UNIVERSE[:1], start="2024-01-01", end="2024-01-31", db=db,
                         client="sync")


def test_update_names_an_unknown_provider(db):
    kdist.ingest(UNIVERSE[:1], start="2024-01-01", end="2024-01-31", db=db, client="sync")
    with pytest.raises(kdist.errors.UnknownProviderError, match="Unknown provider 'nope'"):
        kdist.update(db, provider="nope")
