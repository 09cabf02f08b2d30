"""The ways of getting bars into DuckDB that the benchmark compares, each run in a fresh process.

Every alternative imports the same synthetic bars into the ``kline`` table of a database that
kdist created, so all of them store the same columns (``symbol, freq, adjust, ts, open, high,
low, close, volume, amount, source``) and their files are comparable:

- ``kdist``: :func:`kdist.ingest` (or :func:`kdist.update` for the incremental scenario), on
  kdist's default local cluster (``cold``: started and stopped inside the timed call, as a
  user's ``kdist ingest`` does) or on an already running cluster of the same shape (``warm``);
- ``sequential``: the loop a user writes by hand: fetch a symbol, INSERT it, next;
- ``gather_all``: one Dask task per chunk of symbols, ``client.gather`` every frame,
  ``pd.concat`` them, one INSERT at the end;
- ``records``: the original bridge: one slice of symbols per worker, each worker returns
  ``DataFrame.to_dict("records")``, the client rebuilds one DataFrame from all records and
  INSERTs it;
- ``ceiling``: DuckDB alone: one INSERT of the same rows, already in memory as one frame with
  the stored columns, into the empty table (building the frame is not timed).

The hand-written alternatives call ``provider.fetch`` and store what it returns, as a user
would; kdist also normalises and validates every frame (that cost is kdist's).

:func:`run` measures one run in the current process and returns a dict: the timed seconds,
rows stored, the client's peak resident memory (``VmHWM`` of this process only: worker
processes are children with their own accounting), the database size, CPU seconds and load.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd

#: What every alternative stores in the constant columns.
FREQ, ADJUST, SOURCE = "1d", "none", "synthetic"


def _peak_rss_mb() -> float:
    """This process's own peak resident memory.

    Linux's ``VmHWM``, not ``ru_maxrss``: ``ru_maxrss`` keeps the peak of the process this
    one was started from (the kernel folds the parent's high-water mark into it at exec), so
    a run started by a large process (a long pytest session) would report that process's peak.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _flushed(path: str) -> None:
    """Write a copied file to disk before a timed run: DuckDB's checkpoint syncs the file
    it writes, and on a fresh copy that sync would also flush the copy's hundreds of MB
    still in the page cache (0.1-0.3 s of a one-day update's time, varying with the
    kernel's own writeback), a cost of the benchmark's copy that a user's file never has."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _children_cpu_s() -> float:
    """CPU seconds of this process's ended children: the Dask worker processes, whose whole
    life (start-up included) falls inside one run."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _db_bytes(path: str) -> int:
    return sum(os.path.getsize(p) for p in (path, path + ".wal") if os.path.exists(p))


def _stored_rows(path: str) -> int:
    import duckdb

    with duckdb.connect(path, read_only=True) as con:
        return con.execute("SELECT count(*) FROM kline").fetchone()[0]


def _empty_db(path: str):
    """A fresh database with kdist's tables, so every alternative writes the same table."""
    import kdist

    for p in (path, path + ".wal"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(p)
    kdist.Store(path).close()


def _provider(spec):
    import kdist

    return kdist.get_provider("synthetic", **spec.get("options", {}))


def _symbols(spec) -> list[str]:
    import kdist

    return kdist.get_provider("synthetic", universe=spec["symbols"]).list_symbols()


@contextlib.contextmanager
def _cluster(spec):
    """A running LocalCluster of the spec's shape (kdist's default local shape by default)."""
    from distributed import Client, LocalCluster

    workers = spec.get("n_workers") or min(4, os.cpu_count() or 1)
    threads = spec.get("threads_per_worker") or 2
    with LocalCluster(
        n_workers=workers, threads_per_worker=threads, processes=True, host="127.0.0.1",
        dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR,
    ) as cluster, Client(cluster, set_as_default=False) as client:
        # Warm the workers: kdist, pandas and the provider imported before the timer starts.
        client.run(_warm_worker)
        yield client


def _warm_worker():
    import kdist
    from kdist.schema import normalise

    normalise(kdist.get_provider("synthetic").fetch("600000.SH", "2024-01-02", "2024-01-31"))


def _insert(con, frame: pd.DataFrame, freq: str = FREQ):
    con.register("bench_frame", frame)
    try:
        con.execute(
            """INSERT INTO kline SELECT symbol, ?, ?, ts, open, high, low, close, volume,
               amount, ? FROM bench_frame""",
            [freq, ADJUST, SOURCE],
        )
    finally:
        con.unregister("bench_frame")


# --- the alternatives ----------------------------------------------------------------------


def _fetch_frames(provider, symbols, start, end, freq=FREQ) -> pd.DataFrame:
    """What a user's Dask task does: fetch each symbol, tag it, concatenate."""
    frames = []
    for symbol in symbols:
        frame = provider.fetch(symbol, start, end, freq=freq)
        frame.insert(0, "symbol", symbol)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _fetch_records(provider, symbols, start, end) -> list[dict]:
    return _fetch_frames(provider, symbols, start, end).to_dict("records")


def run_kdist(spec, db, timer):
    import kdist

    provider = _provider(spec)
    symbols = None if spec.get("update") else _symbols(spec)
    kwargs = {"split": spec.get("split", "chunks"), "freq": spec.get("freq", FREQ)}
    if spec.get("chunk_size"):
        kwargs["chunk_size"] = spec["chunk_size"]
    mode = spec.get("mode", "warm")
    client_cm = _cluster(spec) if mode == "warm" else contextlib.nullcontext(None)
    with client_cm as client:
        if mode == "cold":
            kwargs.update(n_workers=spec.get("n_workers"),
                          threads_per_worker=spec.get("threads_per_worker"))
            # "local": kdist's local cluster whatever the machine (its default runs a job of
            # bars made on this machine in process up to two cores: runner.SMALL_MACHINE_CORES).
            client = spec.get("client")
        with timer:
            if spec.get("update"):
                reports = kdist.update(db, end=spec["end"], provider=provider, client=client,
                                       freq=kwargs["freq"])
                report = reports[0]
            else:
                report = kdist.ingest(symbols, start=spec["start"], end=spec["end"],
                                      provider=provider, db=db, client=client, **kwargs)
    return _report_figures(report)


def _report_figures(report) -> dict:
    """What the benchmark keeps of a kdist report: counts, and where the client's time went
    (``report.timings``: seconds per phase of the job)."""
    return {"status": report.status, "mode": report.mode, "n_chunks": report.n_chunks,
            "rows_written": report.rows_written, "elapsed_s": report.elapsed_s,
            "symbols_ok": report.symbols_ok, "revised": len(report.revised),
            "timings": dict(getattr(report, "timings", None) or {})}


def run_sequential(spec, db, timer):
    import duckdb

    provider = _provider(spec)
    symbols = _symbols(spec)
    with timer:
        con = duckdb.connect(db)
        for symbol in symbols:
            con.register("frame", provider.fetch(symbol, spec["start"], spec["end"]))
            con.execute(
                """INSERT INTO kline SELECT ?, ?, ?, ts, open, high, low, close, volume, amount, ?
                   FROM frame""",
                [symbol, FREQ, ADJUST, SOURCE],
            )
        con.close()
    return {}


def run_gather_all(spec, db, timer):
    import duckdb
    from kdist.plan import plan_chunks

    from kdist.schema import Freq

    provider = _provider(spec)
    symbols = _symbols(spec)
    freq = spec.get("freq", FREQ)
    with _cluster(spec) as client:
        # The same chunks kdist would make on this cluster.
        n_threads = sum(client.nthreads().values())
        chunks = plan_chunks(symbols, pd.Timestamp(spec["start"]), pd.Timestamp(spec["end"]),
                             freq=Freq.parse(freq), n_threads=n_threads)
        with timer:
            futures = [client.submit(_fetch_frames, provider, list(c.symbols), spec["start"],
                                     spec["end"], freq, pure=False) for c in chunks]
            frames = client.gather(futures)
            del futures
            bars = pd.concat(frames, ignore_index=True)
            del frames
            con = duckdb.connect(db)
            _insert(con, bars, freq)
            con.close()
    return {"n_chunks": len(chunks)}


def run_records(spec, db, timer):
    import duckdb

    provider = _provider(spec)
    symbols = _symbols(spec)
    with _cluster(spec) as client:
        workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
        slices = np.array_split(np.array(symbols, dtype=object), len(workers))
        with timer:
            futures = [client.submit(_fetch_records, provider, list(part), spec["start"],
                                     spec["end"], workers=[w], pure=False)
                       for w, part in zip(workers, slices)]
            records = []
            for future in futures:
                records.extend(future.result())
            del futures
            bars = pd.DataFrame(records)
            del records
            con = duckdb.connect(db)
            _insert(con, bars)
            con.close()
    return {"n_chunks": len(slices)}


def run_ceiling(spec, db, timer):
    import duckdb

    provider = _provider(spec)
    symbols = _symbols(spec)
    freq = spec.get("freq", FREQ)
    bars = _fetch_frames(provider, symbols, spec["start"], spec["end"], freq)
    bars.insert(1, "freq", freq)
    bars.insert(2, "adjust", ADJUST)
    bars["source"] = SOURCE
    with timer:
        con = duckdb.connect(db)
        con.register("bench_frame", bars)
        con.execute("INSERT INTO kline SELECT * FROM bench_frame")
        con.unregister("bench_frame")
        con.close()
    return {}


def run_load(spec, db, timer):
    """Read every stored daily bar into one frame: raw, or qfq derived from the raw bars and
    the stored corporate actions (an as-of join in DuckDB)."""
    import kdist

    with timer:
        bars = kdist.load(db, adjust=spec["adjust"])
    return {"loaded": len(bars), "symbols_loaded": int(bars["symbol"].nunique())}


def run_gaps(spec, db, timer):
    """``kdist check --gaps`` over every stored series, as a user runs it (the command, its
    table printed to nowhere; nothing recorded, so every repeat reads the same file):
    against the synthetic bars' own calendar, or with ``calendar`` against an exchange's."""
    import contextlib
    import io

    from kdist.cli import main

    args = ["check", "--gaps", "--db", db, "--no-record"]
    if spec.get("calendar"):
        args += ["--calendar", spec["calendar"]]
    out = io.StringIO()
    with timer, contextlib.redirect_stdout(out):
        code = main(args)
    return {"exit_code": code, "summary": out.getvalue().splitlines()[0][:300]}


def run_panel(spec, db, timer):
    """A wide close panel (dates x symbols) of every stored daily bar: ``kdist.panel``, or
    DuckDB's own ``PIVOT`` of the same bars into a pandas frame (the same run's yardstick)."""
    import duckdb

    import kdist

    if spec["how"] == "kdist":
        with timer:
            frame = kdist.panel(db, fields="close")
    else:
        con = duckdb.connect(db, read_only=True)
        try:
            with timer:
                frame = con.sql(
                    """PIVOT (SELECT ts::TIMESTAMP AS ts, symbol, close FROM kline
                              WHERE freq = '1d' AND adjust = 'none')
                       ON symbol USING first(close) GROUP BY ts ORDER BY ts""").df()
                frame = frame.set_index("ts")
        finally:
            con.close()
    return {"dates": len(frame), "symbols_wide": frame.shape[1],
            "cells": int(frame.notna().to_numpy().sum())}


# --- scenario G: a year of daily updates ---------------------------------------------------


def _best(fn, n: int) -> float:
    """The fastest of ``n`` calls, in seconds: a read's cost without the host's noise."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _row_groups(db: str) -> int:
    import duckdb

    with duckdb.connect(db, read_only=True) as con:
        return con.execute("SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('kline')"
                           ).fetchone()[0]


def _reads(db: str, symbol: str, last: pd.Timestamp, reads: int) -> dict:
    """The two reads scenario G compares: one symbol's whole history, and every symbol's
    last 60 days (each the best of ``reads`` calls), and the row groups they scan."""
    import kdist

    start = (last - pd.Timedelta(days=60)).strftime("%Y-%m-%d")
    kdist.load(db, symbol)  # the file's first open is not a read's cost
    return {"one_symbol_s": _best(lambda: kdist.load(db, symbol), reads),
            "last_60_days_s": _best(lambda: kdist.load(db, start=start), max(1, reads // 2)),
            "row_groups": _row_groups(db)}


def _reads_in_new_process(db: str, symbol: str, last: pd.Timestamp, reads: int) -> dict:
    """:func:`_reads` in a process of its own, as a user's notebook or script reads the
    store. Read in the process that ran 250 updates, the same store read 2-10 ms slower (a
    tenth to a third of a 27 ms read) from what that process keeps, not from the store (see
    benchmarks/README.md, scenario G)."""
    import json
    import subprocess
    import sys

    code = ("import json, sys, pandas as pd; from benchmarks.alternatives import _reads; "
            "print(json.dumps(_reads(sys.argv[1], sys.argv[2], pd.Timestamp(sys.argv[3]), "
            "int(sys.argv[4]))))")
    cpu0 = _children_cpu_s()
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, db, symbol, last.isoformat(), str(reads)],
            cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True,
            timeout=600, check=False)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"the reads of {db} took more than 600 s:\n{exc.stderr}") from None
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines:
        raise RuntimeError(f"the reads of {db} failed:\n{done.stderr[-2000:]}")
    # Its CPU is not the run's: the run's CPU figure counts its workers' (_children_cpu_s).
    return {**json.loads(lines[-1]), "cpu_s": _children_cpu_s() - cpu0}


def run_daily_updates(spec, db, timer):
    """``kdist.update`` once per trading day, ``days`` days in order, on a copy of a full
    import (as a daily cron job would, in one process): every update's seconds, and the
    reads of :func:`_reads` of the store before the first update and after the last, each
    in new processes (:func:`_reads_in_new_process`), and after the last in this one too.

    The store as the import left it is kept as a copy, and both stores are read after the
    updates, in turns, two processes each: read once before the updates instead, the
    imported store took 50 ms where it took 28-31 ms in other runs (the fifth round in
    benchmarks/README.md)."""
    import kdist
    from kdist.calendars import sessions
    from kdist.providers.synthetic import CALENDAR

    provider = _provider(spec)
    symbols = _symbols(spec)
    symbol = symbols[len(symbols) // 2]
    last = pd.Timestamp(spec["after"])
    days = sessions(CALENDAR, last + pd.Timedelta(days=1), last + pd.Timedelta(days=3 * spec["days"]))
    days = list(days.days[: spec["days"]])
    imported = db + ".imported"
    for suffix in ("", ".wal"):
        if os.path.exists(db + suffix):
            shutil.copyfile(db + suffix, imported + suffix)
            _flushed(imported + suffix)
    seconds, maintained = [], []
    with timer:
        for day in days:
            t0 = time.perf_counter()
            reports = kdist.update(db, end=day.strftime("%Y-%m-%d"), provider=provider,
                                   progress=False)
            seconds.append(time.perf_counter() - t0)
            # An update that sorted the appended bars into place says so (kdist.layout);
            # its "maintain" phase is then that sort's time.
            if reports and reports[0].maintained:
                maintained.append({"update": len(seconds), "what": reports[0].maintained,
                                   "seconds": reports[0].timings.get("maintain", 0.0)})
    # Also read here, in the process that ran the updates: shown, not compared.
    same_process = _reads(db, symbol, days[-1], spec["reads"])
    runs = {"before": [], "after": []}
    for _ in range(2):
        runs["before"].append(_reads_in_new_process(imported, symbol, last, spec["reads"]))
        runs["after"].append(_reads_in_new_process(db, symbol, days[-1], spec["reads"]))
    for suffix in ("", ".wal"):
        Path(imported + suffix).unlink(missing_ok=True)
    before, after = (_fastest(runs[when]) for when in ("before", "after"))
    head, tail = seconds[: spec["window"]], seconds[-spec["window"]:]
    return {"updates": len(seconds), "update_seconds": seconds, "maintained": maintained,
            "first_updates_s": statistics.median(head), "last_updates_s": statistics.median(tail),
            "before": before, "after": after, "after_in_updating_process": same_process,
            "symbol": symbol, "untimed_children_cpu_s": before["cpu_s"] + after["cpu_s"]}


def _fastest(reads: list[dict]) -> dict:
    """Several processes' :func:`_reads` of one store as one: each read's fastest, the CPU
    of them all, and every process's figures (``runs``)."""
    return {"one_symbol_s": min(r["one_symbol_s"] for r in reads),
            "last_60_days_s": min(r["last_60_days_s"] for r in reads),
            "row_groups": reads[0]["row_groups"], "cpu_s": sum(r["cpu_s"] for r in reads),
            "runs": reads}


# --- scenario I: the user's own cluster ----------------------------------------------------


@contextlib.contextmanager
def _dask_cli_cluster(spec, tmp: Path):
    """``dask scheduler`` and ``dask worker`` processes started as a user starts them, with
    Dask's own defaults (only the shape, the address and a free dashboard port given), and a
    client of them whose workers have imported what a job needs. They stay in this process's
    group: a run killed for taking too long takes them with it."""
    import subprocess
    import sys

    from distributed import Client

    bin_dir = Path(sys.executable).parent
    dask = str(bin_dir / "dask")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KDIST_")}
    tmp.mkdir(parents=True, exist_ok=True)
    scheduler_file = tmp / "scheduler.json"
    scheduler_file.unlink(missing_ok=True)
    log = open(tmp / "cluster.log", "w")  # noqa: SIM115 (closed below)
    procs = [subprocess.Popen(
        [dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address", ":0",
         "--scheduler-file", str(scheduler_file)],
        env=env, stdout=log, stderr=log)]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists():
            if time.monotonic() > deadline or procs[0].poll() is not None:
                raise RuntimeError("dask scheduler did not start within 60 s:\n"
                                   + (tmp / "cluster.log").read_text()[-2000:])
            time.sleep(0.1)
        workers = spec.get("n_workers") or 2
        for i in range(workers):
            procs.append(subprocess.Popen(
                [dask, "worker", "--scheduler-file", str(scheduler_file),
                 "--nthreads", str(spec.get("threads_per_worker") or 2), "--name", f"w{i}",
                 "--dashboard-address", ":0"],
                env=env, stdout=log, stderr=log))
        with Client(scheduler_file=str(scheduler_file), set_as_default=False) as client:
            client.wait_for_workers(workers, timeout=120)
            client.run(_warm_worker)
            yield client
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


@contextlib.contextmanager
def _kdist_local_cluster(spec):
    """kdist's own local cluster (its fork server and worker settings), already running,
    its workers having imported what a job needs: what ``kdist ingest`` starts."""
    from kdist.cluster import resolve_cluster

    with resolve_cluster("local", n_workers=spec.get("n_workers") or 2,
                         threads_per_worker=spec.get("threads_per_worker") or 2) as cluster:
        cluster.client.run(_warm_worker)
        yield cluster.client


def run_cluster(spec, db, timer):
    """The same import on kdist's local cluster or on the user's own (``dask scheduler`` and
    ``dask worker``), both running and warmed before the timer starts."""
    import kdist

    provider = _provider(spec)
    symbols = _symbols(spec)
    if spec["cluster"] == "dask_cli":
        cluster = _dask_cli_cluster(spec, Path(db).parent / f"{Path(db).stem}-cluster")
    else:
        cluster = _kdist_local_cluster(spec)
    with cluster as client:
        with timer:
            report = kdist.ingest(symbols, start=spec["start"], end=spec["end"],
                                  provider=provider, db=db, client=client, progress=False)
    return _report_figures(report)


# --- where the bytes go --------------------------------------------------------------------


def run_columns(spec, db, timer):
    """Bytes per stored bar of each column of a kept database, as
    ``python -m benchmarks.experiments.storage`` measures them (each column copied into a
    fresh file); the timed part is the whole breakdown."""
    import tempfile

    from benchmarks.experiments.storage import COLUMNS, size_per_bar

    rows = _stored_rows(db)
    columns = {}
    with timer, tempfile.TemporaryDirectory(dir=Path(db).parent) as tmp:
        for column in COLUMNS:
            size, how = size_per_bar(db, f"SELECT {column} FROM src.kline", rows, tmp)
            columns[column] = {"bytes_per_bar": size, "compression": how}
    return {"columns": columns}


ALTERNATIVES = {
    "load": run_load,
    "panel": run_panel,
    "gaps": run_gaps,
    "kdist": run_kdist,
    "sequential": run_sequential,
    "gather_all": run_gather_all,
    "records": run_records,
    "ceiling": run_ceiling,
    "daily_updates": run_daily_updates,
    "cluster": run_cluster,
    "columns": run_columns,
}


class _Timer:
    def __init__(self):
        self.seconds = None
        self.rss_before = None

    def __enter__(self):
        self.rss_before = _rss_mb()
        self.peak_before = _peak_rss_mb()
        self.cpu0 = time.process_time()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
        self.cpu = time.process_time() - self.cpu0


def run(spec: dict) -> dict:
    """Run one alternative of one scenario in this process and measure it."""
    os.environ.setdefault("KDIST_DASHBOARD_ADDRESS", "127.0.0.1:0")
    db = spec.get("read_db") or spec["db"]
    if spec.get("read_db"):
        pass  # reads a kept database as it is
    elif spec.get("base_db"):  # the incremental scenario starts from a copy of a full import
        for suffix in ("", ".wal"):
            if os.path.exists(spec["base_db"] + suffix):
                shutil.copyfile(spec["base_db"] + suffix, db + suffix)
                _flushed(db + suffix)
    else:
        _empty_db(db)
    if spec.get("call_log"):
        Path(spec["call_log"]).unlink(missing_ok=True)
    load0 = os.getloadavg()[0]
    children0 = _children_cpu_s()
    timer = _Timer()
    extra = ALTERNATIVES[spec["alt"]](spec, db, timer)
    peak = _peak_rss_mb()  # before anything below reads the database
    # Worker processes have ended and been waited for by now (every cluster is closed).
    workers_cpu = _children_cpu_s() - children0 - extra.pop("untimed_children_cpu_s", 0.0)
    rows = _stored_rows(db)
    if spec.get("check"):
        import kdist

        extra["check_ok"] = kdist.check(db)["ok"]
    return {
        "seconds": timer.seconds,
        "client_cpu_s": timer.cpu,
        "workers_cpu_s": workers_cpu,
        "rows": rows,
        "peak_rss_mb": peak,
        "rss_before_mb": timer.rss_before,
        "db_bytes": _db_bytes(db),
        "load_before": load0,
        "load_after": os.getloadavg()[0],
        **extra,
    }
