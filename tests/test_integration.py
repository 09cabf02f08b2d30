"""Real processes: a processes=True LocalCluster, and `dask scheduler` / `dask worker`
subprocesses driven through the CLI. The same import through every mode stores an identical
table (per-symbol count and value hash)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import kdist

pytestmark = pytest.mark.slow

SYMBOLS = kdist.get_provider("synthetic", universe=40).list_symbols()
WINDOW = {"start": "2022-01-01", "end": "2024-12-31"}
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The oracle: a clean single-process import of the same symbols."""
    db = str(tmp_path_factory.mktemp("ref") / "ref.duckdb")
    kdist.ingest(SYMBOLS, **WINDOW, db=db, client="sync")
    with kdist.Store(db, read_only=True) as store:
        return store.fingerprint()


@pytest.fixture(scope="module")
def dask_procs(tmp_path_factory):
    """A `dask scheduler` and two `dask worker` processes on 127.0.0.1; yields the address."""
    tmp = tmp_path_factory.mktemp("dask")
    sched_file = tmp / "scheduler.json"
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    procs = [
        subprocess.Popen(
            [BIN / "dask", "scheduler", "--host", "127.0.0.1", "--port", "0",
             "--dashboard-address", "127.0.0.1:0", "--scheduler-file", sched_file],
            stdout=subprocess.DEVNULL, stderr=open(tmp / "scheduler.log", "w"), env=env,
            start_new_session=True,
        )
    ]
    deadline = time.monotonic() + 60
    while not sched_file.exists():
        assert time.monotonic() < deadline, (tmp / "scheduler.log").read_text()
        time.sleep(0.2)
    time.sleep(0.3)  # the file is written before it is complete on slow machines
    address = json.loads(sched_file.read_text())["address"]
    for i in range(2):
        procs.append(
            subprocess.Popen(
                [BIN / "dask", "worker", address, "--nthreads", "1", "--host", "127.0.0.1",
                 "--no-dashboard", "--name", f"w{i}", "--local-directory", tmp / f"w{i}"],
                stdout=subprocess.DEVNULL, stderr=open(tmp / f"worker{i}.log", "w"), env=env,
                start_new_session=True,
            )
        )
    from distributed import Client

    with Client(address, timeout=30, set_as_default=False) as c:
        c.wait_for_workers(2, timeout=60)
    yield address
    for p in reversed(procs):
        os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def run_cli(*args, timeout=180):
    return subprocess.run(
        [BIN / "kdist", *map(str, args)], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "KDIST_DASHBOARD_ADDRESS": "127.0.0.1:0"},
    )


def test_processes_cluster_stores_the_same_table(client, tmp_path, reference, fingerprint):
    db = str(tmp_path / "k.duckdb")
    report = kdist.ingest(SYMBOLS, **WINDOW, db=db, client=client, chunk_size=3)
    assert report.mode == "distributed" and report.symbols_ok == len(SYMBOLS)
    pd.testing.assert_frame_equal(fingerprint(db), reference)


def test_kdist_started_local_cluster_stores_the_same_table(tmp_path, reference, fingerprint):
    db = str(tmp_path / "k.duckdb")
    result = run_cli("ingest", *SYMBOLS, "--start", WINDOW["start"], "--end", WINDOW["end"],
                     "--db", db, "--scheduler", "local", "--workers", 2, "--threads", 1, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["mode"] == "local"
    pd.testing.assert_frame_equal(fingerprint(db), reference)


@pytest.mark.parametrize("chunk_size", [None, 1, 16])
def test_real_scheduler_and_workers_store_the_same_table(dask_procs, tmp_path, reference,
                                                          fingerprint, chunk_size):
    db = str(tmp_path / "k.duckdb")
    extra = ["--chunk-size", chunk_size] if chunk_size else []
    result = run_cli("ingest", *SYMBOLS, "--start", WINDOW["start"], "--end", WINDOW["end"],
                     "--db", db, "--scheduler", dask_procs, "--json", *extra)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["mode"] == "distributed"
    assert report["symbols_ok"] == len(SYMBOLS) and report["failures"] == {}
    pd.testing.assert_frame_equal(fingerprint(db), reference)


def test_real_cluster_one_failing_symbol_exit_3_named_in_json(dask_procs, tmp_path):
    db = str(tmp_path / "k.duckdb")
    symbols = kdist.get_provider("synthetic").list_symbols()  # the 100-symbol demo universe
    result = run_cli("ingest", "--all", "--start", "2024-01-01", "--end", "2024-12-31",
                     "--db", db, "--scheduler", dask_procs, "--option", f"fail={symbols[42]}",
                     "--json")
    assert result.returncode == 3, result.stderr
    report = json.loads(result.stdout)
    assert report["symbols_ok"] == 99
    assert list(report["failures"]) == [symbols[42]]
    assert kdist.load(db)["symbol"].nunique() == 99
