"""The local cluster speaks TLS with credentials of its own, so other local users cannot use it.

Loopback is no boundary between the users of a shared machine: any of them can connect to a
port on 127.0.0.1, and a Dask scheduler, worker or nanny runs whatever it is sent. These
tests play that other user, with the tools Dask gives anyone: a real ``distributed.Client``
and a bare ``rpc`` asking a worker or nanny to ``run`` a function.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import threading
import urllib.request

import dask
import pandas as pd
import pytest

import kdist
from kdist import cli, widgets
from kdist.cluster import resolve_cluster
from kdist.errors import UsageError

WINDOW = {"start": "2024-01-01", "end": "2024-03-31"}


@pytest.fixture(autouse=True)
def _no_named_scheduler(monkeypatch):
    monkeypatch.delenv("KDIST_SCHEDULER", raising=False)
    monkeypatch.delenv("KDIST_LOCAL_TLS", raising=False)
    with dask.config.set({"scheduler-address": None}):
        yield


@pytest.fixture
def started(monkeypatch):
    """The addresses of the local clusters kdist starts, in order."""
    seen = []
    real = kdist.cluster._local_cluster

    def spy(*args, **kwargs):
        cluster = real(*args, **kwargs)
        seen.append(cluster.address)
        return cluster

    monkeypatch.setattr(kdist.cluster, "_local_cluster", spy)
    return seen


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1].split("/")[0])


def _stranger_client(address: str, security=None):
    """Connect as another user would and run a function on every worker; return the pids."""
    from distributed import Client

    with Client(address, security=security, timeout=5, set_as_default=False) as client:
        return client.run(os.getpid)


def _stranger_rpc(address: str, ssl_context=None):
    """Ask a worker or nanny directly to run a function, as a bare Dask ``rpc`` can."""
    from distributed.core import rpc
    from distributed.protocol.pickle import dumps

    async def attack():
        args = {"ssl_context": ssl_context} if ssl_context is not None else {}
        async with rpc(address, timeout=5, connection_args=args) as remote:
            return await remote.run(function=dumps(os.getpid))

    return asyncio.run(attack())


def _unverified_tls() -> ssl.SSLContext:
    """A TLS client that accepts any server and shows no certificate of its own."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _servers(cluster):
    """The scheduler's, workers' and nannies' addresses of a running local cluster."""
    client = cluster.client
    workers = list(client.run(lambda dask_worker: dask_worker.address))
    nannies = list(client.run(lambda dask_worker: dask_worker.address, nanny=True).values())
    return cluster.address, workers, nannies


@pytest.mark.slow
def test_the_default_local_cluster_refuses_strangers_but_runs_its_own_client():
    from distributed.security import Security

    with resolve_cluster(None, n_workers=1, threads_per_worker=1) as cluster:
        assert cluster.mode == "local"
        scheduler, workers, nannies = _servers(cluster)
        assert all(a.startswith("tls://127.0.0.1:") for a in (scheduler, *workers, *nannies))

        # Plain TCP to the scheduler's port: Dask's default protocol.
        with pytest.raises(OSError):
            _stranger_client(f"tcp://127.0.0.1:{_port(scheduler)}")
        # TLS with credentials of the stranger's own making.
        with pytest.raises(OSError):
            _stranger_client(scheduler, security=Security.temporary())
        # Straight to a worker or nanny, in plain TCP or in TLS without a certificate.
        for address in (*workers, *nannies):
            with pytest.raises(OSError):
                _stranger_rpc(f"tcp://127.0.0.1:{_port(address)}")
            with pytest.raises((OSError, ssl.SSLError)):
                _stranger_rpc(address, ssl_context=_unverified_tls())

        # kdist's own client still runs code, and the dashboard is plain HTTP on loopback.
        assert len(cluster.client.run(os.getpid)) == 1
        assert cluster.dashboard_link.startswith("http://127.0.0.1:")
        health = cluster.dashboard_link.replace("/status", "/health")
        with urllib.request.urlopen(health, timeout=10) as response:
            assert response.read() == b"ok"


@pytest.mark.slow
def test_security_false_starts_the_plain_cluster_anyone_local_can_use():
    """The opt-out does what it says, and proves the attacks above are real attacks."""
    with resolve_cluster("local", n_workers=1, threads_per_worker=1, security=False) as cluster:
        scheduler, workers, nannies = _servers(cluster)
        assert scheduler.startswith("tcp://127.0.0.1:")
        assert len(_stranger_client(scheduler)) == 1
        assert _stranger_rpc(workers[0])["status"] == "OK"
        assert _stranger_rpc(nannies[0])["status"] == "OK"


@pytest.mark.slow
@pytest.mark.parametrize("value, scheme", [
    ("0", "tcp"), ("false", "tcp"), ("off", "tcp"), ("1", "tls"), ("yes", "tls"), ("", "tls"),
])
def test_kdist_local_tls_environment_variable(monkeypatch, value, scheme):
    monkeypatch.setenv("KDIST_LOCAL_TLS", value)
    with resolve_cluster("local", n_workers=1, threads_per_worker=1) as cluster:
        assert cluster.address.startswith(f"{scheme}://127.0.0.1:")


def test_a_bad_kdist_local_tls_value_is_a_usage_error_naming_it(monkeypatch):
    monkeypatch.setenv("KDIST_LOCAL_TLS", "maybe")
    with pytest.raises(UsageError, match="KDIST_LOCAL_TLS='maybe'.*0 .*1"):
        resolve_cluster("local", n_workers=1, threads_per_worker=1)


def test_security_false_goes_with_no_certificates_and_no_tls_scheduler(tmp_path):
    from kdist.security import make_certs

    files = make_certs(tmp_path)["client"]
    with pytest.raises(UsageError, match="security=False .*tls:// scheduler needs"):
        resolve_cluster("tls://127.0.0.1:8786", security=False)
    with pytest.raises(UsageError, match="security=False .*not both"):
        resolve_cluster("local", security=False, tls_ca=files.ca, tls_cert=files.cert,
                        tls_key=files.key)


@pytest.mark.slow
def test_fallback_from_an_unreachable_scheduler_starts_a_tls_local_cluster():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.warns(UserWarning, match="Running locally instead"):
        cluster = resolve_cluster(f"tcp://127.0.0.1:{port}", n_workers=1, threads_per_worker=1)
    with cluster:
        assert cluster.mode == "local" and cluster.address.startswith("tls://127.0.0.1:")


@pytest.mark.slow
def test_ingest_runs_end_to_end_on_the_tls_local_cluster(db, fingerprint, started):
    """Client, workers and a cluster-wide semaphore (worker-side clients) all over TLS."""
    symbols = [f"{600000 + i:06d}.SH" for i in range(12)]
    report = kdist.ingest(symbols, **WINDOW, db=db, client="local", n_workers=2,
                          threads_per_worker=1, max_concurrency=2)
    assert report.status == "done" and report.mode == "local"
    assert report.symbols_ok == len(symbols)
    assert len(fingerprint(db)) == len(symbols)

    plain = str(db) + ".plain"
    report = kdist.ingest(symbols, **WINDOW, db=plain, client="local", n_workers=1,
                          threads_per_worker=1, security=False)
    assert report.status == "done"
    pd.testing.assert_frame_equal(fingerprint(plain), fingerprint(db))
    assert [a.split("://")[0] for a in started] == ["tls", "tcp"]


def test_local_credentials_pass_strict_x509_checks_and_stay_in_memory():
    """Python 3.13 verifies with VERIFY_X509_STRICT by default; these must pass it."""
    from kdist.security import local_security

    security = local_security()
    assert "\n" in security.tls_ca_file and "\n" in security.tls_worker_key  # no files
    server = security.get_listen_args("scheduler")["ssl_context"]
    client = security.get_connection_args("worker")["ssl_context"]
    for context in (server, client):
        context.verify_flags |= ssl.VERIFY_X509_STRICT
    ours, theirs = socket.socketpair()
    errors = []

    def serve():
        try:
            with server.wrap_socket(ours, server_side=True) as tls:
                tls.recv(1)
        except Exception as exc:
            errors.append(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    with client.wrap_socket(theirs) as tls:
        tls.sendall(b"x")
    thread.join(10)
    assert not errors
    assert local_security().tls_ca_file != security.tls_ca_file  # new for every cluster


@pytest.mark.slow
def test_the_panel_shares_a_tls_local_cluster_unless_told_otherwise(db, tmp_path):
    panel = widgets.IngestPanel(db, symbols="600000.SH", **WINDOW, n_workers=1,
                                threads_per_worker=1)
    plain = widgets.IngestPanel(tmp_path / "plain.duckdb", symbols="600000.SH", **WINDOW,
                                n_workers=1, threads_per_worker=1, security=False)
    try:
        panel.start()
        assert panel.wait(120).status == "done"
        assert panel._local.address.startswith("tls://127.0.0.1:")
        plain.start()
        assert plain.wait(120).status == "done"
        # Not the TLS one of the same size: a panel never gets less than it asked for.
        assert plain._local.address.startswith("tcp://127.0.0.1:")
    finally:
        panel.close()
        plain.close()


@pytest.mark.parametrize("extra, message", [
    (["--scheduler", "tls://127.0.0.1:8786"], "tls:// scheduler needs"),
    (["--certs", "{tmp}"], "--certs DIR or --no-local-tls, not both"),
])
def test_cli_no_local_tls_conflicts_are_usage_errors(capsys, tmp_path, db, extra, message):
    from kdist.security import make_certs

    make_certs(tmp_path)
    extra = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    code = cli.main(["ingest", "600000.SH", "--start", "2024-01-01", "--db", db,
                     "--no-local-tls", *extra])
    _, err = capsys.readouterr()
    assert code == 2 and message in err, err


@pytest.mark.slow
def test_cli_no_local_tls_starts_a_plain_local_cluster(capsys, db, started):
    for flag in ([], ["--no-local-tls"]):
        code = cli.main(["ingest", "600000.SH", "--start", "2024-01-01", "--end", "2024-01-31",
                         "--db", db, "--scheduler", "local", "--workers", "1", "--threads",
                         "1", "--quiet", *flag])
        assert code == 0, capsys.readouterr().err
    assert [a.split("://")[0] for a in started] == ["tls", "tcp"]
