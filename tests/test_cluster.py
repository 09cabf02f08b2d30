"""Cluster resolution: sync, local on loopback, a given client, unreachable schedulers."""

from __future__ import annotations

import socket
import time

import pytest

import kdist
from kdist.cluster import resolve_cluster
from kdist.errors import NoWorkersError, SchedulerUnreachableError

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
def test_default_local_cluster_listens_on_loopback_only():
    with resolve_cluster("local", n_workers=1, threads_per_worker=1) as cluster:
        info = cluster.client.scheduler_info()
        assert cluster.mode == "local"
        assert cluster.address.startswith("tcp://127.0.0.1:")
        assert all(w.startswith("tcp://127.0.0.1:") for w in info["workers"])
        assert cluster.dashboard_link.startswith("http://127.0.0.1:")


def test_unreachable_scheduler_without_fallback_fails_fast_naming_it(db):
    address = f"tcp://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    with pytest.raises(SchedulerUnreachableError, match=address):
        kdist.ingest(["600000.SH"], **WINDOW, db=db, client=address, fallback=False)
    assert time.monotonic() - t0 < 15
    import os

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


def test_unknown_scheduler_word_is_a_usage_error():
    with pytest.raises(kdist.UsageError, match="tcp://host:8786"):
        resolve_cluster("localhost")
