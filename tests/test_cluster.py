"""Cluster resolution: sync, local on loopback, a given client, unreachable schedulers."""

from __future__ import annotations

import ipaddress
import os
import socket
import time

import pytest

import kdist
from kdist.backends import _AHEAD, _GATHER_AT_ONCE, DaskCluster
from kdist.cluster import resolve_cluster
from kdist.errors import SchedulerUnreachableError

WINDOW = {"start": "2024-01-01", "end": "2024-03-31"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sync_runs_in_process():
    with resolve_cluster("sync") as cluster:
        assert cluster.mode == "sync" and cluster.client is None
        assert cluster.n_threads == 1


@pytest.mark.slow
def test_default_local_cluster_listens_on_loopback_only(monkeypatch):
    """Scheduler, nanny, worker and dashboard sockets of the default cluster: 127.0.0.1 only.

    Checked on the sockets the processes really listen on (psutil), not on the addresses
    Dask reports, and with kdist's own dashboard default (127.0.0.1:8787).
    """
    import dask
    import psutil

    monkeypatch.delenv("KDIST_SCHEDULER", raising=False)
    monkeypatch.delenv("KDIST_DASHBOARD_ADDRESS", raising=False)
    with dask.config.set({"scheduler-address": None}), resolve_cluster(
        None, n_workers=1, threads_per_worker=1
    ) as cluster:
        assert cluster.mode == "local"
        client = cluster.client
        workers = client.run(os.getpid)
        nannies = client.run(os.getpid, nanny=True)
        me = psutil.Process()
        procs = [me, *(psutil.Process(pid) for pid in (*workers.values(), *nannies.values()))]
        found = {(p.pid, c.laddr.ip, c.laddr.port) for p in procs
                 for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}
        ports = {port for _, _, port in found}

        def port(address):
            return int(address.rsplit(":", 1)[1].split("/")[0])

        # The sockets Dask says it uses are among them...
        assert port(cluster.address) in ports
        assert port(cluster.dashboard_link) in ports
        assert {port(w) for w in workers} <= ports and {port(n) for n in nannies} <= ports
        for pid in (*workers.values(), *nannies.values()):
            assert any(p == pid for p, _, _ in found), f"process {pid} listens on nothing?"
        # ... and no socket of the scheduler's process, the nannies or the workers is
        # reachable from another machine.
        outside = {f for f in found if not ipaddress.ip_address(f[1]).is_loopback}
        assert not outside, f"listening beyond loopback: {outside}"
        assert cluster.dashboard_link.startswith("http://127.0.0.1:")


def test_unreachable_scheduler_without_fallback_fails_fast_naming_it(db):
    address = f"tcp://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    with pytest.raises(SchedulerUnreachableError, match=address):
        kdist.ingest(["600000.SH"], **WINDOW, db=db, client=address, fallback=False)
    assert time.monotonic() - t0 < 15
    assert not os.path.exists(db)  # the database is not touched before the cluster is resolved


def test_environment_variable_names_the_scheduler(monkeypatch):
    address = f"tcp://127.0.0.1:{free_port()}"
    monkeypatch.setenv("KDIST_SCHEDULER", address)
    with pytest.raises(SchedulerUnreachableError, match=address):
        resolve_cluster(None, fallback=False, connect_timeout=2)


@pytest.mark.slow
def test_unreachable_scheduler_falls_back_to_local_with_a_warning(db):
    address = f"tcp://127.0.0.1:{free_port()}"
    with pytest.warns(UserWarning, match="Running locally instead"):
        report = kdist.ingest(["600000.SH", "000001.SZ"], **WINDOW, db=db, client=address,
                              n_workers=1, threads_per_worker=1)
    assert report.mode == "local"
    assert address in report.fallback_reason
    assert report.symbols_ok == 2
    with kdist.Store(db, read_only=True) as store:
        assert address in store.jobs()["note"].iat[0]  # the ledger says which mode ran and why


@pytest.mark.slow
def test_given_client_is_used_and_left_open(client, db):
    report = kdist.ingest(["600000.SH", "000001.SZ"], **WINDOW, db=db, client=client)
    assert report.mode == "distributed"
    assert report.symbols_ok == 2
    assert client.status == "running"


def _ahead_settled(cluster, n, timeout=10.0):
    """Wait until ``n`` results are held fetched ahead (Dask's callback thread starts them)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with cluster._ahead_lock:
            ahead = list(cluster._ahead.values())
        if len(ahead) == n and all(a.done() for a in ahead):
            return ahead
        time.sleep(0.02)
    raise AssertionError(f"{len(ahead)} results fetched ahead, expected {n}")


def test_finished_results_are_fetched_ahead_up_to_a_bound(client):
    import dask
    from distributed import wait

    cluster = DaskCluster("distributed", client)
    n = _AHEAD + _GATHER_AT_ONCE + 1
    futures = cluster.submit_many(
        [dask.delayed(list, pure=False)(range(i, i + 3)) for i in range(n)]
    )
    with client.as_current():
        wait(futures, timeout=30)
    ahead = _ahead_settled(cluster, _AHEAD)  # fetched before anyone asked, and no more
    assert all(a.exception() is None for a in ahead)
    got = cluster.gather_finished(futures, timeout=10)
    # The ones fetched ahead, and a bounded few more in one round trip; the caller fetches
    # the rest itself, so the client never holds every finished result at once.
    assert len(got) == _AHEAD + _GATHER_AT_ONCE
    assert all(got[f] == list(range(i, i + 3)) for i, f in enumerate(futures) if f in got)
    assert cluster._ahead == {}
    for future in futures:  # Dask's callback thread running late: nothing is fetched again
        cluster._fetch_ahead(future)
    assert cluster._ahead == {}


def test_cancelled_futures_drop_their_results_fetched_ahead(client):
    import dask
    from distributed import wait

    cluster = DaskCluster("distributed", client)
    futures = cluster.submit_many([dask.delayed(list, pure=False)(range(3)) for _ in range(2)])
    with client.as_current():
        wait(futures, timeout=30)
    _ahead_settled(cluster, 2)
    cluster.cancel(futures)
    assert cluster._ahead == {}


def test_chunks_run_in_the_order_they_were_planned(client, db, tmp_path):
    """Dask ran the tasks of one submission in no useful order (the last first, in one run
    a round of full chunks after the small ones meant to end the job): each chunk carries
    its place as the task's priority."""
    log = tmp_path / "calls.log"
    provider = kdist.get_provider("synthetic", latency=0.02, call_log=str(log))
    symbols = kdist.get_provider("synthetic", universe=24).list_symbols()
    # Both workers import kdist first: a worker still importing it when the job starts
    # would run its first chunk late whatever its priority (seen on a loaded machine).
    client.run(lambda: __import__("kdist.runner"))
    kdist.ingest(symbols, **WINDOW, provider=provider, db=db, client=client, chunk_size=2)
    planned = sorted(symbols)  # chunks are planned in sorted symbol order
    calls = [planned.index(line.split()[0]) // 2 for line in log.read_text().splitlines()]
    first = {}
    for at, chunk in enumerate(calls):
        first.setdefault(chunk, at)
    # Two worker threads: chunk i starts before chunk i + 2 does.
    assert all(first[i] < first[i + 2] for i in range(len(symbols) // 2 - 2)), calls


def test_unknown_scheduler_word_is_a_usage_error():
    with pytest.raises(kdist.UsageError, match="tcp://host:8786"):
        resolve_cluster("localhost")
