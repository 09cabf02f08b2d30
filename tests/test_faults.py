"""Fault injection with real processes: dead workers, lost schedulers, killed importers, hung
calls, locked and unwritable databases (docs/testplan.md "Cluster faults" and "Store faults").

Every scenario runs real `dask scheduler` / `dask worker` processes and the `kdist` command
as subprocesses (each in its own session, killed by process group on teardown), and checks
what can be observed from outside: rows in DuckDB through the oracle (per-symbol bar count
and value hash, compared with a clean ``client="sync"`` run of the same import), exit codes,
the report and ledger, error text, and the synthetic provider's call log (one
``SYMBOL START END`` line per provider call).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import pandas as pd
import pytest

import kdist
from kdist.errors import NoWorkersError
from kdist.progress import Callback

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

BIN = Path(sys.executable).parent
UNIVERSE = kdist.get_provider("synthetic", universe=60).list_symbols()
WINDOW = {"start": "2024-01-01", "end": "2024-06-28"}
ENV = {
    **os.environ,
    "KDIST_DASHBOARD_ADDRESS": "127.0.0.1:0",
    "DASK_DISTRIBUTED__WORKER__DAEMON": "False",
}


# --- helpers -------------------------------------------------------------------------------


def calls(log: Path) -> list[str]:
    """Symbols of the provider calls recorded in a call log, in order."""
    if not log.exists():
        return []
    return [line.split()[0] for line in log.read_text().splitlines() if line.strip()]


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JobHung(AssertionError):
    """A job still running long after it should have stopped."""


class Background:
    """Run a call in a daemon thread; a hang is reported with the thread's stack."""

    def __init__(self, fn, *args, **kwargs):
        self.box: dict = {}

        def run():
            try:
                self.box["value"] = fn(*args, **kwargs)
            except BaseException as exc:
                self.box["error"] = exc

        self.thread = threading.Thread(target=run, name="kdist-test-job", daemon=True)
        self.thread.start()

    def error(self, timeout: float) -> BaseException | None:
        """Wait for the call to end and return what it raised (None if it returned)."""
        self.thread.join(timeout)
        if self.thread.is_alive():
            frame = sys._current_frames().get(self.thread.ident)
            stack = "".join(traceback.format_stack(frame)) if frame else "?"
            raise JobHung(f"still running after {timeout:g}s:\n{stack}")
        return self.box.get("error")


def fingerprint(db) -> pd.DataFrame:
    with kdist.Store(db, read_only=True) as store:
        return store.fingerprint()


def ledger(db, job_id) -> pd.DataFrame:
    with kdist.Store(db, read_only=True) as store:
        return store.job_symbols(job_id)


def assert_whole_symbols(db, ref: pd.DataFrame) -> set[str]:
    """Every stored symbol has exactly the bars and values of the reference; returns them."""
    stored = fingerprint(db).set_index("symbol")
    expected = ref.set_index("symbol").loc[stored.index]
    pd.testing.assert_frame_equal(stored, expected)
    return set(stored.index)


class NotOneLine(AssertionError):
    """stderr held more than the one line the CLI promises for a kdist error."""


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    if len(lines) != 1:
        raise NotOneLine(f"expected one line on stderr, got {len(lines)}:\n{stderr}")
    return lines[0]


def error_line(stderr: str) -> str:
    """The CLI's one 'kdist: error:' line (other lines are checked by one_line)."""
    lines = [line for line in stderr.splitlines() if line.startswith("kdist: error:")]
    assert len(lines) == 1, stderr
    return lines[0]


def cli_args(*args) -> list[str]:
    return [str(BIN / "kdist"), *map(str, args)]


def run_cli(*args, timeout: float = 45) -> subprocess.CompletedProcess:
    return subprocess.run(cli_args(*args), capture_output=True, text=True, timeout=timeout,
                          env=ENV, start_new_session=True)


def ingest_args(symbols, db, *extra) -> list:
    return ["ingest", *symbols, "--start", WINDOW["start"], "--end", WINDOW["end"],
            "--db", db, *extra]


_REFERENCES: dict = {}


def reference_of(symbols, seed: int = 0) -> pd.DataFrame:
    """The oracle of a clean single-process import of ``symbols`` (cached)."""
    import tempfile

    key = (tuple(symbols), seed)
    if key not in _REFERENCES:
        with tempfile.TemporaryDirectory(prefix="kdist-ref-") as tmp:
            db = str(Path(tmp) / "ref.duckdb")
            kdist.ingest(list(symbols), **WINDOW, db=db, client="sync",
                         provider=kdist.get_provider("synthetic", seed=seed))
            _REFERENCES[key] = fingerprint(db)
    return _REFERENCES[key]


@pytest.fixture
def reference():
    return reference_of


class Procs:
    """Subprocesses started by one test, each in its own session; all killed on teardown."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.started: list[subprocess.Popen] = []
        self.logs: list = []
        self.scheduler_proc = None
        self.address = None

    def spawn(self, cmd, *, name: str, capture: bool = False, env=None) -> subprocess.Popen:
        out = subprocess.PIPE if capture else subprocess.DEVNULL
        if capture:
            err = subprocess.PIPE
        else:
            err = open(self.tmp / f"{name}.log", "w")
            self.logs.append(err)
        proc = subprocess.Popen([str(c) for c in cmd], stdout=out, stderr=err, env=env or ENV,
                                text=True, start_new_session=True)
        self.started.append(proc)
        return proc

    def cli(self, *args) -> subprocess.Popen:
        return self.spawn(cli_args(*args), name="kdist", capture=True)

    def scheduler(self, **env) -> str:
        sched_file = self.tmp / "scheduler.json"
        self.scheduler_proc = self.spawn(
            [BIN / "dask", "scheduler", "--host", "127.0.0.1", "--port", "0",
             "--dashboard-address", "127.0.0.1:0", "--scheduler-file", sched_file],
            name="scheduler", env={**ENV, **env},
        )

        def address():
            try:
                return json.loads(sched_file.read_text())["address"]
            except (OSError, ValueError, KeyError):
                return None

        wait_until(lambda: address() is not None or self.scheduler_proc.poll() is not None,
                   30, "the scheduler file")
        assert self.scheduler_proc.poll() is None, (self.tmp / "scheduler.log").read_text()
        self.address = address()
        return self.address

    def worker(self, name: str, *, nanny: bool, nthreads: int = 1) -> subprocess.Popen:
        cmd = [BIN / "dask", "worker", self.address, "--nthreads", nthreads, "--host", "127.0.0.1",
               "--no-dashboard", "--dashboard-address", "127.0.0.1:0", "--name", name, "--local-directory", self.tmp / name]
        return self.spawn(cmd + ([] if nanny else ["--no-nanny"]), name=name)

    def client(self):
        from distributed import Client

        return Client(self.address, timeout=20, set_as_default=False)

    def wait_workers(self, n: int):
        with self.client() as c:
            c.wait_for_workers(n, timeout=30)

    @staticmethod
    def kill(proc: subprocess.Popen, sig=signal.SIGKILL) -> int:
        """Kill a process and its group; return its exit status."""
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        return proc.wait(timeout=20)

    def close(self):
        for proc in reversed(self.started):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for proc in self.started:
            try:
                proc.communicate(timeout=20)
            except (subprocess.TimeoutExpired, ValueError):
                proc.kill()
        for log in self.logs:
            log.close()


@pytest.fixture
def procs(tmp_path):
    p = Procs(tmp_path)
    try:
        yield p
    finally:
        p.close()


# --- cluster faults ------------------------------------------------------------------------


def test_sigkill_one_of_three_workers_mid_import(procs, tmp_path, reference):
    """1. A worker SIGKILLed mid-import: its chunks run elsewhere; nothing lost or doubled."""
    address = procs.scheduler()
    workers = [procs.worker(f"w{i}", nanny=False) for i in range(3)]
    procs.wait_workers(3)
    symbols = UNIVERSE[:36]
    db, log = tmp_path / "k.duckdb", tmp_path / "calls.log"
    cli = procs.cli(*ingest_args(symbols, db, "--scheduler", address, "--no-fallback",
                                 "--chunk-size", 2, "--option", "latency=0.25",
                                 "--option", f"call_log={log}", "--json"))
    wait_until(lambda: len(calls(log)) >= 6, 30, "the first provider calls")

    # Kill a worker that is running a kdist chunk right now.
    with procs.client() as c:
        pids = c.run(os.getpid)
        executing = c.run(lambda dask_worker: [str(ts.key) for ts in dask_worker.state.executing])
    busy = [addr for addr, keys in executing.items() if any("-chunk-" in k for k in keys)]
    assert busy, executing
    victim = next(w for w in workers if w.pid == pids[busy[0]])
    assert cli.poll() is None and len(calls(log)) < len(symbols)  # really mid-import
    assert procs.kill(victim) == -signal.SIGKILL

    out, err = cli.communicate(timeout=45)
    assert cli.returncode == 0, err
    report = json.loads(out)
    assert report["mode"] == "distributed"
    assert report["symbols_ok"] == len(symbols) and report["failures"] == {}
    assert set(calls(log)) == set(symbols)
    pd.testing.assert_frame_equal(fingerprint(db), reference(symbols))
    check = run_cli("check", "--db", db, "--json")
    assert check.returncode == 0, check.stdout + check.stderr
    result = json.loads(check.stdout)
    assert result["duplicate_keys"] == 0 and result["rows"] == reference(symbols)["bars"].sum()


def crash_import(procs, tmp_path, symbols, crash, n_workers, nthreads=1, latency=0.0):
    """Import ``symbols`` in chunks of 2 through the CLI on ``n_workers`` nanny workers (a
    task may fail on one worker only), ``crash`` killing each worker that fetches it.

    Checks what holds whatever else failed, and returns ``(exit code, report)``.
    """
    address = procs.scheduler(DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES="1")
    for i in range(n_workers):
        procs.worker(f"w{i}", nanny=True, nthreads=nthreads)
    procs.wait_workers(n_workers)
    db, log = tmp_path / "k.duckdb", tmp_path / "calls.log"
    cli = procs.cli(*ingest_args(symbols, db, "--scheduler", address, "--no-fallback",
                                 "--chunk-size", 2, "--option", f"crash={crash}",
                                 "--option", f"latency={latency}",
                                 "--option", f"call_log={log}", "--json"))
    out, err = cli.communicate(timeout=45)
    assert cli.returncode in (1, 3), err
    report = json.loads(out)  # printed with --json even when every symbol failed
    failures = report["failures"]
    assert crash in failures
    # The crash really happened more than once: the chunk was retried on a restarted worker.
    assert calls(log).count(crash) >= 2
    for symbol, reason in failures.items():
        assert "worker died while fetching" in reason, (symbol, reason)
    assert report["symbols_ok"] == len(symbols) - len(failures)
    # Every symbol is either stored whole or failed, and the ledger says the same.
    if len(failures) < len(symbols):
        stored = assert_whole_symbols(db, reference_of(symbols))
        assert stored == set(symbols) - set(failures)
    book = ledger(db, report["job_id"]).set_index("symbol")
    assert set(book.index[book["status"] == "failed"]) == set(failures)
    assert book.loc[list(failures), "error"].str.contains("worker died while fetching").all()
    return cli.returncode, report


class InnocentSymbolsFailed(AssertionError):
    """Symbols of chunks that never crashed a worker were reported failed."""


def test_a_chunk_that_kills_every_worker_fails(procs, tmp_path):
    """2. A chunk that crashes each worker it lands on (nanny workers restart) ends failed,
    named in the report as a dead worker; the rest is stored; exit code 3."""
    symbols = UNIVERSE[:12]
    bad_chunk = symbols[4:6]  # chunk 2 of size 2
    code, report = crash_import(procs, tmp_path, symbols, crash=bad_chunk[1], n_workers=2)
    assert code == 3
    # The dead chunk is retried one symbol a task: only the symbol that kills workers fails.
    assert list(report["failures"]) == [bad_chunk[1]]


def test_a_chunk_running_beside_a_crashing_chunk_is_not_failed(procs, tmp_path):
    """2b. One worker with two threads runs the crashing chunk beside an innocent one each
    time: the innocent chunk must not end failed."""
    symbols = UNIVERSE[:4]
    bad_chunk = symbols[:2]  # chunk 0 crashes after 0.5 s; chunk 1 runs 1 s beside it
    code, report = crash_import(procs, tmp_path, symbols, crash=bad_chunk[1], n_workers=1,
                                nthreads=2, latency=0.5)
    innocent = sorted(set(report["failures"]) - set(bad_chunk))
    if innocent:
        raise InnocentSymbolsFailed(f"{innocent} failed with {bad_chunk}: {report['failures']}")
    assert code == 3


def test_no_workers_without_fallback_stops_naming_the_address(procs, tmp_path):
    """3a. A scheduler with no workers and no fallback: a bounded wait, then a clear error."""
    address = procs.scheduler()
    db = tmp_path / "k.duckdb"
    t0 = time.monotonic()
    with pytest.raises(NoWorkersError, match=re.escape(address)) as info:
        kdist.ingest(UNIVERSE[:2], **WINDOW, db=str(db), client=address, worker_timeout=3,
                     fallback=False)
    assert 3 <= time.monotonic() - t0 < 15
    assert "dask worker" in str(info.value)
    assert not db.exists()
    # The same through the command line (its worker wait shortened to 3 s).
    wrapper = ("import functools, sys, kdist.runner as r; "
               "r.ingest = functools.partial(r.ingest, worker_timeout=3); "
               "from kdist.cli import main; sys.exit(main(sys.argv[1:]))")
    t0 = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", wrapper,
         *map(str, ingest_args(UNIVERSE[:2], db, "--scheduler", address, "--no-fallback"))],
        capture_output=True, text=True, timeout=30, env=ENV, start_new_session=True,
    )
    assert time.monotonic() - t0 < 20
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert line.startswith("kdist: error:") and address in line and "no workers" in line
    assert not db.exists()


def test_no_workers_with_fallback_runs_locally(procs, tmp_path, reference):
    """3b. A scheduler with no workers and the fallback on: the import runs locally."""
    address = procs.scheduler()
    db = str(tmp_path / "k.duckdb")
    symbols = UNIVERSE[:4]
    with pytest.warns(UserWarning, match="Running locally instead"):
        report = kdist.ingest(symbols, **WINDOW, db=db, client=address, worker_timeout=3,
                              n_workers=1, threads_per_worker=1)
    assert report.mode == "local" and address in report.fallback_reason
    assert report.symbols_ok == len(symbols)
    pd.testing.assert_frame_equal(fingerprint(db), reference(symbols))


def wait_until_mid_call(log: Path, n_workers: int, latency: float, timeout: float = 30):
    """Return when each of ``n_workers`` workers is half-way through a provider call.

    With one symbol per chunk, each worker logs a call when it starts a chunk; when the last
    ``n_workers`` calls started between a quarter and three quarters of ``latency`` ago, every
    worker is busy with a call and the results of their previous chunks were collected long
    ago (a result not yet collected is a different fault: see the next test).
    """
    seen: list[float] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = time.monotonic()
        seen += [now] * (len(calls(log)) - len(seen))
        if len(seen) >= 2 * n_workers:
            ages = [now - t for t in seen[-n_workers:]]
            if all(0.25 * latency <= age <= 0.75 * latency for age in ages):
                return
        time.sleep(0.01)
    raise AssertionError(f"no moment with every worker mid-call in {timeout:g}s: {seen}")


def test_all_workers_gone_mid_job_stops_then_resumes(procs, tmp_path, reference):
    """3c. Every worker killed while chunks are pending: the job stops after worker_timeout,
    what finished stays, and --resume on a new worker completes it."""
    address = procs.scheduler()
    workers = [procs.worker(f"w{i}", nanny=False) for i in range(2)]
    procs.wait_workers(2)
    symbols = UNIVERSE[:10]
    db, log = tmp_path / "k.duckdb", tmp_path / "calls.log"
    provider = kdist.get_provider("synthetic", latency=0.6, call_log=str(log))
    cancel = threading.Event()
    job = Background(kdist.ingest, symbols, **WINDOW, db=str(db), client=address,
                     provider=provider, chunk_size=1, flush_seconds=0.5, worker_timeout=3,
                     fallback=False, cancel=cancel)
    try:
        wait_until_mid_call(log, n_workers=2, latency=0.6)
        assert job.thread.is_alive()
        for w in workers:
            assert procs.kill(w) == -signal.SIGKILL
        killed_at = time.monotonic()
        error = job.error(timeout=20)
        assert time.monotonic() - killed_at < 15  # worker_timeout + the watchdog's period
    finally:
        cancel.set()  # a hung job must not outlive the test
        job.thread.join(10)
    assert isinstance(error, NoWorkersError), repr(error)
    assert error.address == address
    message = str(error)
    job_id = error.job_id
    assert re.search(r"No workers for 3s with \d+ chunks not fetched", message)
    assert f"kdist ingest --resume {job_id} --db {db}" in message

    ref = reference(symbols)
    stored = assert_whole_symbols(db, ref)
    before = ledger(db, job_id).set_index("symbol")["status"]
    assert stored == set(before[before == "ok"].index)
    assert 0 < len(stored) < len(symbols)
    jobs = json.loads(run_cli("jobs", "--db", db, "--json").stdout)
    assert [(j["job_id"], j["status"]) for j in jobs] == [(job_id, "interrupted")]

    for i in range(2):
        procs.worker(f"fresh{i}", nanny=False)
    procs.wait_workers(2)
    log.unlink()
    result = run_cli("ingest", "--resume", job_id, "--db", db, "--scheduler", address,
                     "--no-fallback", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "done"
    assert set(calls(log)) == set(symbols) - stored
    pd.testing.assert_frame_equal(fingerprint(db), ref)


class KillAllWorkersBeforeCollecting(Callback):
    """Holds the ingest loop so that finished chunks pile up uncollected on the workers,
    then kills every worker before the loop collects them."""

    def __init__(self, workers):
        self.workers, self.seen, self.killed_at = workers, 0, None

    def on_symbols(self, outcomes):
        self.seen += 1
        if self.seen == 1:
            time.sleep(1.0)  # both workers finish chunks meanwhile; the next wait sees them done
        elif self.seen == 2:
            for w in self.workers:
                Procs.kill(w)
            self.killed_at = time.monotonic()
            time.sleep(1.0)  # the scheduler has told the client those results are lost


def test_all_workers_gone_with_results_not_yet_collected_does_not_hang(procs, tmp_path):
    """3d. Every worker killed while finished results wait on them to be collected: the job
    still stops after worker_timeout (NoWorkersError), it does not hang."""
    address = procs.scheduler()
    workers = [procs.worker(f"w{i}", nanny=False) for i in range(2)]
    procs.wait_workers(2)
    db = tmp_path / "k.duckdb"
    callback = KillAllWorkersBeforeCollecting(workers)
    cancel = threading.Event()
    job = Background(kdist.ingest, UNIVERSE[:12], **WINDOW, db=str(db), client=address,
                     provider=kdist.get_provider("synthetic", latency=0.3), chunk_size=1,
                     worker_timeout=3, fallback=False, cancel=cancel, callback=callback)
    try:
        wait_until(lambda: callback.killed_at is not None or not job.thread.is_alive(), 30,
                   "the workers to be killed")
        assert callback.killed_at is not None, job.box
        error = job.error(timeout=12)  # worker_timeout 3 s + the watchdog's 2 s period
        assert isinstance(error, NoWorkersError), repr(error)
        assert "--resume" in str(error)
    finally:
        cancel.set()
        if job.thread.is_alive():  # stuck in a gather: losing the scheduler releases it
            Procs.kill(procs.scheduler_proc)
            job.thread.join(20)


def test_unreachable_scheduler_cli_fails_fast_naming_it(tmp_path):
    """4. Scheduler unreachable at start: exit 1 within seconds, one line naming the address,
    the database untouched."""
    address = f"tcp://127.0.0.1:{free_port()}"
    db = tmp_path / "sub" / "k.duckdb"
    t0 = time.monotonic()
    result = run_cli(*ingest_args(UNIVERSE[:2], db, "--scheduler", address, "--no-fallback"))
    assert time.monotonic() - t0 < 15
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert line.startswith("kdist: error:") and address in line
    assert not db.exists() and not db.parent.exists()


def test_scheduler_killed_mid_job_then_resume(procs, tmp_path, reference):
    """5. The scheduler SIGKILLed mid-job: exit 1 with one line saying how to resume; only
    whole symbols stored; the job is interrupted; --resume finishes it."""
    address = procs.scheduler()
    for i in range(2):
        procs.worker(f"w{i}", nanny=False)
    procs.wait_workers(2)
    symbols = UNIVERSE[:30]
    db, log = tmp_path / "k.duckdb", tmp_path / "calls.log"
    cli = procs.cli(*ingest_args(symbols, db, "--scheduler", address, "--no-fallback",
                                 "--chunk-size", 1, "--option", "latency=0.25",
                                 "--option", f"call_log={log}", "--json"))
    wait_until(lambda: len(calls(log)) >= 10, 30, "the first provider calls")
    assert cli.poll() is None
    procs.kill(procs.scheduler_proc)
    killed_at = time.monotonic()
    out, err = cli.communicate(timeout=40)
    assert time.monotonic() - killed_at < 20
    assert cli.returncode == 1, err
    line = error_line(err)
    assert "Lost the scheduler" in line and address in line
    match = re.search(r"kdist ingest --resume (\S+) --db (\S+)$", line)
    assert match and match.group(2) == str(db), line
    job_id = match.group(1)

    jobs = json.loads(run_cli("jobs", "--db", db, "--json").stdout)
    assert [(j["job_id"], j["status"]) for j in jobs] == [(job_id, "interrupted")]
    ref = reference(symbols)
    stored = assert_whole_symbols(db, ref)  # each stored symbol has its full bar count
    before = ledger(db, job_id).set_index("symbol")["status"]
    assert stored == set(before[before == "ok"].index)
    assert 0 < len(stored) < len(symbols)

    log.unlink()
    result = run_cli("ingest", "--resume", job_id, "--db", db, "--scheduler", "sync", "--json")
    assert result.returncode == 0, result.stderr
    assert set(calls(log)) == set(symbols) - stored
    pd.testing.assert_frame_equal(fingerprint(db), ref)
    with kdist.Store(str(db), read_only=True) as store:
        assert store.jobs()["status"].tolist() == ["done"]

    # Last, so that everything above is checked even while this fails: the error is one line.
    assert one_line(err) == line


def test_importing_process_sigkilled_then_resume_fetches_only_the_rest(procs, tmp_path,
                                                                       reference):
    """6. The kdist process SIGKILLed mid-job: the file reopens, the job shows interrupted,
    --resume fetches only symbols that were not ok (call log), oracle equal."""
    symbols = UNIVERSE[:50]
    db, log = tmp_path / "k.duckdb", tmp_path / "calls.log"
    cli = procs.cli(*ingest_args(symbols, db, "--scheduler", "sync", "--chunk-size", 1,
                                 "--option", "latency=0.2", "--option", f"call_log={log}",
                                 "--json"))
    # The job is recorded before the first call; batches are committed every few seconds,
    # and a reader is let in between them (the file's size also changes when the import lets
    # go of it, so only the ledger tells a commit).
    wait_until(lambda: calls(log), 30, "the first provider call")

    def committed() -> int:
        try:
            with kdist.Store(str(db), read_only=True, wait=5) as store:
                jobs = store.jobs()
                rows = store.job_symbols(jobs["job_id"].iat[0]) if len(jobs) else None
        except kdist.errors.KdistError:
            return 0
        return 0 if rows is None else int((rows["status"] == "ok").sum())

    wait_until(lambda: committed() > 0, 30, "a batch commit")
    assert cli.poll() is None and len(calls(log)) < len(symbols)
    assert Procs.kill(cli) == -signal.SIGKILL

    jobs = run_cli("jobs", "--db", db, "--json")
    assert jobs.returncode == 0, jobs.stderr
    jobs = json.loads(jobs.stdout)
    assert len(jobs) == 1 and jobs[0]["status"] == "interrupted"
    job_id = jobs[0]["job_id"]
    before = ledger(db, job_id).set_index("symbol")["status"]
    ok_before = set(before[before == "ok"].index)
    assert 0 < len(ok_before) < len(symbols)
    loaded = kdist.load(str(db))  # the file reopens, with the committed batches
    assert set(loaded["symbol"]) == ok_before
    assert len(loaded) == reference(symbols).set_index("symbol").loc[list(ok_before), "bars"].sum()
    assert assert_whole_symbols(db, reference(symbols)) == ok_before

    log.rename(tmp_path / "calls-first.log")  # the resume appends to a fresh log
    result = run_cli("ingest", "--resume", job_id, "--db", db, "--scheduler", "sync", "--json")
    assert result.returncode == 0, result.stderr
    fetched = calls(log)
    assert not set(fetched) & ok_before  # no ok symbol fetched again
    assert set(fetched) == set(symbols) - ok_before  # every missing one fetched once
    assert len(fetched) == len(set(fetched))
    pd.testing.assert_frame_equal(fingerprint(db), reference(symbols))
    with kdist.Store(str(db), read_only=True) as store:
        assert store.jobs()["status"].tolist() == ["done"]


def test_a_hanging_call_times_out_and_the_job_ends(client, db, reference):
    """7. A provider call that never answers: timed out per call, retried, then failed."""
    symbols = UNIVERSE[:4]
    provider = kdist.get_provider("synthetic", hang=symbols[1])
    t0 = time.monotonic()
    report = kdist.ingest(symbols, **WINDOW, db=db, client=client, provider=provider,
                          timeout=1, retries=2)
    assert time.monotonic() - t0 < 10
    assert list(report.failures) == [symbols[1]]
    assert "no answer" in report.failures[symbols[1]] and "1s" in report.failures[symbols[1]]
    row = ledger(db, report.job_id).set_index("symbol").loc[symbols[1]]
    assert row["status"] == "failed" and row["attempts"] == 2
    assert row["error_class"] == "TransientProviderError"
    others = [s for s in symbols if s != symbols[1]]
    assert assert_whole_symbols(db, reference(symbols)) == set(others)


def test_same_import_twice_in_one_session_stores_the_new_values(client, db, tmp_path,
                                                                 reference):
    """8. One persistent client, the source data changed between two runs: the second run
    fetches again and stores the new values."""
    symbols = UNIVERSE[:6]
    log = tmp_path / "calls.log"
    first = kdist.ingest(symbols, **WINDOW, db=db, client=client,
                         provider=kdist.get_provider("synthetic", call_log=str(log)))
    assert first.symbols_ok == len(symbols)
    old = fingerprint(db)
    pd.testing.assert_frame_equal(old, reference(symbols, seed=0))

    second = kdist.ingest(symbols, **WINDOW, db=db, client=client,
                          provider=kdist.get_provider("synthetic", seed=1, call_log=str(log)))
    assert second.symbols_ok == len(symbols) and second.job_id != first.job_id
    new = fingerprint(db)
    pd.testing.assert_frame_equal(new, reference(symbols, seed=1))
    assert (new["value_hash"] != old["value_hash"]).all()  # every symbol's values replaced
    assert (new["bars"] == old["bars"]).all()  # replaced, not appended
    assert sorted(calls(log)) == sorted(symbols * 2)

    # Identical arguments a third time: fetched again, never a cached result.
    third = kdist.ingest(symbols, **WINDOW, db=db, client=client,
                         provider=kdist.get_provider("synthetic", seed=1, call_log=str(log)))
    assert third.symbols_ok == len(symbols)
    assert sorted(calls(log)) == sorted(symbols * 3)
    pd.testing.assert_frame_equal(fingerprint(db), reference(symbols, seed=1))


# --- store faults --------------------------------------------------------------------------


def test_second_import_on_a_held_file_fails_before_fetching(procs, tmp_path, reference):
    """18. A second import on a file another import holds: exit 1 before any fetch, naming
    the holder's PID; the first completes unaffected."""
    symbols = UNIVERSE[:20]
    db, log1, log2 = tmp_path / "k.duckdb", tmp_path / "first.log", tmp_path / "second.log"
    first = procs.cli(*ingest_args(symbols, db, "--scheduler", "sync", "--chunk-size", 1,
                                   "--option", "latency=0.15", "--option", f"call_log={log1}",
                                   "--json"))
    wait_until(lambda: calls(log1), 30, "the first import to hold the file")
    second = run_cli(*ingest_args(UNIVERSE[:3], db, "--scheduler", "sync",
                                  "--option", f"call_log={log2}"))
    assert first.poll() is None  # the first still held the file
    assert second.returncode == 1
    line = one_line(second.stderr)
    assert f"PID {first.pid}" in line and str(db) in line
    assert not log2.exists()  # nothing fetched

    out, err = first.communicate(timeout=40)
    assert first.returncode == 0, err
    report = json.loads(out)
    assert report["symbols_ok"] == len(symbols)
    pd.testing.assert_frame_equal(fingerprint(db), reference(symbols))
    with kdist.Store(str(db), read_only=True) as store:  # the second left no trace
        assert store.jobs()[["job_id", "status"]].values.tolist() == [[report["job_id"], "done"]]


@pytest.mark.parametrize("below", ["k.duckdb", "sub/k.duckdb"])
def test_unwritable_database_path_is_one_line_naming_it(tmp_path, below):
    """20. A database path under a regular file: exit 1, one line naming the path."""
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a directory")
    db = blocker / below
    result = run_cli(*ingest_args(UNIVERSE[:2], db, "--scheduler", "sync"))
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert line.startswith("kdist: error:") and str(db) in line
    assert blocker.read_text() == "not a directory"
