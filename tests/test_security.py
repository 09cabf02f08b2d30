"""Security (docs/testplan.md 23-24): TLS certificates, TLS clusters that refuse strangers, the
warning for plain TCP off this machine, and file providers that stay inside their root.

The integration tests start a TLS scheduler and worker the way a user does, with
``kdist cluster scheduler`` / ``kdist cluster worker`` as subprocesses, ingest through them,
and show that clients without the cluster's certificates are refused by the scheduler.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import ssl
import stat
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import pytest
from _procs import kill_groups

import kdist
from kdist.cluster import resolve_cluster
from kdist.errors import PermanentProviderError, SchedulerUnreachableError, UsageError
from kdist.providers import get_provider
from kdist.security import (
    ROLES,
    cert_files,
    client_security,
    make_certs,
    scheduler_command,
    worker_command,
)

BIN = Path(sys.executable).parent
WINDOW = {"start": "2024-01-01", "end": "2024-03-29"}
SYMBOLS = ["600000.SH", "000001.SZ", "600519.SH", "000002.SZ"]
ENV = {**os.environ, "KDIST_DASHBOARD_ADDRESS": "127.0.0.1:0"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- certificates ----------------------------------------------------------------------------


def load_cert(path):
    from cryptography import x509

    return x509.load_pem_x509_certificate(Path(path).read_bytes())


def test_certs_are_a_ca_and_role_certificates_it_signed(tmp_path):
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    made = make_certs(tmp_path / "certs", hosts=["sched.example.org", "10.0.0.5", "::1"])
    directory = tmp_path / "certs"
    assert made["new_ca"] and made["hosts"] == ["sched.example.org", "10.0.0.5", "::1"]
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    ca = load_cert(directory / "ca.pem")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert stat.S_IMODE((directory / "ca-key.pem").stat().st_mode) == 0o600
    for role in ROLES:
        files = cert_files(directory, role)
        assert made[role] == files
        assert stat.S_IMODE(files.key.stat().st_mode) == 0o600, role  # keys: owner only
        cert = load_cert(files.cert)
        cert.verify_directly_issued_by(ca)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == ["sched.example.org"]
        assert san.get_values_for_type(x509.IPAddress) == [
            ipaddress.ip_address("10.0.0.5"), ipaddress.ip_address("::1")]
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(usage)
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    # The key belongs to the certificate: an SSL context loads the pair.
    ssl.create_default_context().load_cert_chain(made["client"].cert, made["client"].key)


def test_default_hosts_are_this_machine(tmp_path):
    from cryptography import x509

    made = make_certs(tmp_path)
    san = load_cert(made["worker"].cert).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]


def test_existing_certificates_need_force_and_the_ca_is_kept(tmp_path):
    first = make_certs(tmp_path)
    ca_before = (tmp_path / "ca.pem").read_bytes()
    worker_before = first["worker"].cert.read_bytes()
    with pytest.raises(UsageError, match="already has scheduler.pem.*--force"):
        make_certs(tmp_path, hosts=["10.0.0.9"])
    again = make_certs(tmp_path, hosts=["10.0.0.9"], force=True)
    assert not again["new_ca"]
    assert (tmp_path / "ca.pem").read_bytes() == ca_before  # machines with ca.pem keep working
    assert again["worker"].cert.read_bytes() != worker_before
    load_cert(again["worker"].cert).verify_directly_issued_by(load_cert(tmp_path / "ca.pem"))


@pytest.mark.parametrize("hosts, days, match", [
    (["bad host!"], 30, "Invalid host 'bad host!'"),
    (["a;rm -rf /"], 30, "Invalid host"),
    ([], 30, "No host names"),
    (["localhost"], 0, "days must be"),
])
def test_bad_certificate_requests_are_usage_errors(tmp_path, hosts, days, match):
    with pytest.raises(UsageError, match=match):
        make_certs(tmp_path / "c", hosts=hosts, days=days)
    assert not (tmp_path / "c").exists()


def test_a_ca_without_its_key_is_refused(tmp_path):
    make_certs(tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "ca.pem").write_bytes((tmp_path / "a" / "ca.pem").read_bytes())
    with pytest.raises(UsageError, match="without ca-key.pem"):
        make_certs(tmp_path / "b")


# --- the client's Security -------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("certs")
    make_certs(path)
    return path


@pytest.fixture(scope="module")
def other_certs(tmp_path_factory) -> Path:
    """Certificates of another cluster's CA."""
    path = tmp_path_factory.mktemp("other-certs")
    make_certs(path)
    return path


def test_client_security_from_a_directory_or_three_files(certs):
    from distributed.security import Security

    assert client_security() is None
    sec = client_security(certs)
    assert isinstance(sec, Security) and sec.require_encryption
    assert (sec.tls_ca_file, sec.tls_client_cert, sec.tls_client_key) == tuple(
        str(p) for p in (certs / "ca.pem", certs / "client.pem", certs / "client-key.pem"))
    same = client_security(tls_ca=certs / "ca.pem", tls_cert=certs / "client.pem",
                           tls_key=certs / "client-key.pem")
    assert same.tls_client_cert == sec.tls_client_cert and same.require_encryption
    assert client_security(sec) is sec


@pytest.mark.parametrize("kwargs, match", [
    ({"tls_ca": "{c}/ca.pem"}, r"together \(missing --tls-cert, --tls-key\)"),
    ({"security": "{c}", "tls_ca": "{c}/ca.pem"}, "not both"),
    ({"security": "{c}/nope"}, "no such directory"),
    ({"tls_ca": "{c}/ca.pem", "tls_cert": "{c}/client.pem", "tls_key": "{c}/missing.pem"},
     r"missing.pem \(--tls-key\) does not exist"),
    ({"tls_ca": "{c}/ca.pem", "tls_cert": "{c}/client.pem", "tls_key": "{c}/worker-key.pem"},
     "worker-key.pem does not belong to the certificate"),
    ({"security": 42}, "certificate directory, not int"),
])
def test_bad_client_certificates_are_usage_errors(certs, kwargs, match):
    kwargs = {k: v.format(c=certs) if isinstance(v, str) else v for k, v in kwargs.items()}
    with pytest.raises(UsageError, match=match):
        client_security(**kwargs)


def test_tls_scheduler_without_certificates_is_refused_before_anything(db):
    address = f"tls://127.0.0.1:{free_port()}"
    with pytest.raises(UsageError, match="uses TLS: give the client's certificates with "
                                         "--certs DIR or --tls-ca, --tls-cert and --tls-key"):
        kdist.ingest(["600000.SH"], **WINDOW, db=db, client=address)
    assert not os.path.exists(db)


@pytest.mark.parametrize("client", ["tcp://127.0.0.1:8786", "127.0.0.1:8786", "local", "sync"])
def test_certificates_for_a_plain_scheduler_are_refused(certs, client, db):
    with pytest.raises(UsageError, match="they are for a tls:// scheduler"):
        kdist.ingest(["600000.SH"], **WINDOW, db=db, client=client, security=certs)
    assert not os.path.exists(db)


def test_dask_tls_settings_are_used_when_no_certificates_are_given(certs):
    import dask

    address = f"tls://127.0.0.1:{free_port()}"
    with dask.config.set({"distributed.comm.tls.ca-file": str(certs / "ca.pem"),
                          "distributed.comm.tls.client.cert": str(certs / "client.pem"),
                          "distributed.comm.tls.client.key": str(certs / "client-key.pem")}):
        # Not a usage error: kdist tries the scheduler (nobody listens there).
        with pytest.raises(SchedulerUnreachableError, match=address):
            resolve_cluster(address, fallback=False, connect_timeout=2)


# --- plain TCP off this machine ---------------------------------------------------------------


@pytest.mark.parametrize("address", ["tcp://192.0.2.1:8786", "192.0.2.1:8786"])
def test_plain_tcp_to_another_machine_warns_and_points_to_tls(address):
    with pytest.warns(UserWarning) as record, pytest.raises(SchedulerUnreachableError):
        resolve_cluster(address, fallback=False, connect_timeout=0.5)
    text = " ".join(str(w.message) for w in record)
    assert "without TLS" in text and "can run any code" in text
    assert "kdist cluster certs DIR" in text and "tls://" in text and "docs/deploy.md" in text


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:{port}", "tcp://localhost:{port}"])
def test_plain_tcp_on_this_machine_does_not_warn(address):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(SchedulerUnreachableError):
            resolve_cluster(address.format(port=free_port()), fallback=False, connect_timeout=2)


# --- dask commands -----------------------------------------------------------------------------


def test_scheduler_and_worker_commands(certs):
    sched = scheduler_command(certs)
    assert Path(sched[0]).name == "dask" and sched[1] == "scheduler"
    text = " ".join(sched)
    assert "--protocol tls" in text and f"--tls-ca-file {certs / 'ca.pem'}" in text
    assert f"--tls-cert {certs / 'scheduler.pem'} --tls-key {certs / 'scheduler-key.pem'}" in text
    assert "--host 127.0.0.1 --port 8786 --dashboard-address 127.0.0.1:8787" in text

    local = " ".join(worker_command("tls://127.0.0.1:8786", certs, nthreads=2))
    assert f"--tls-cert {certs / 'worker.pem'} --tls-key {certs / 'worker-key.pem'}" in local
    assert "--host 127.0.0.1" in local and "--nthreads 2" in local
    # Dask's health and metrics pages would otherwise listen on every interface.
    assert "--dashboard-address 127.0.0.1:0" in local
    remote = " ".join(worker_command("tls://10.0.0.5:8786", certs))
    assert "--host" not in remote  # Dask picks the interface that reaches the scheduler
    with pytest.raises(UsageError, match="not a TLS address"):
        worker_command("tcp://10.0.0.5:8786", certs)


# --- file providers stay inside their root ----------------------------------------------------


def _bars_file(path: Path):
    frame = pd.DataFrame({"date": ["2024-01-02", "2024-01-03"], "open": [1.0, 1.1],
                          "high": [1.2, 1.2], "low": [0.9, 1.0], "close": [1.1, 1.15],
                          "volume": [100, 200]})
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path)


@pytest.mark.parametrize("kind", ["csv", "parquet"])
@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink-file", "symlink-dir"])
def test_file_providers_refuse_paths_outside_root(tmp_path, kind, how):
    root, outside = tmp_path / "root", tmp_path / "outside"
    _bars_file(outside / f"AAPL.{kind}")  # a real file: a refusal is no mere "not found"
    root.mkdir()
    pattern = {"dotdot": f"../outside/{{symbol}}.{kind}",
               "absolute": str(outside / f"{{symbol}}.{kind}"),
               "symlink-file": f"{{symbol}}.{kind}",
               "symlink-dir": f"linked/{{symbol}}.{kind}"}[how]
    if how == "symlink-file":
        os.symlink(outside / f"AAPL.{kind}", root / f"AAPL.{kind}")
    if how == "symlink-dir":
        os.symlink(outside, root / "linked")
    provider = get_provider(kind, root=str(root), pattern=pattern)
    with pytest.raises(PermanentProviderError, match="outside root"):
        provider.fetch("AAPL", "2024-01-01", "2024-01-31")
    # The control: the same file inside the root is read.
    _bars_file(root / f"AAPL.{kind}.inside" / f"AAPL.{kind}")
    inside = get_provider(kind, root=str(root), pattern=f"AAPL.{kind}.inside/{{symbol}}.{kind}")
    assert len(inside.fetch("AAPL", "2024-01-01", "2024-01-31")) == 2


def test_symbols_cannot_name_paths(tmp_path):
    # tdx symlinks out of vipdoc are refused in tests/providers/test_tdx.py; a symbol can
    # never carry a path into any file provider, as it is validated first.
    (tmp_path / "vipdoc").mkdir()
    for provider in (get_provider("csv", root=str(tmp_path)),
                     get_provider("tdx", root=str(tmp_path))):
        for symbol in ("../600000.SH", "/etc/passwd", "..\\600000.SH", "600000.SH/../x"):
            with pytest.raises(kdist.UsageError):
                provider.fetch(symbol, "2024-01-01", "2024-01-31")


# --- a TLS cluster of real processes -------------------------------------------------------------


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.1)


class TLSCluster:
    """``kdist cluster scheduler`` and ``kdist cluster worker`` as subprocesses."""

    def __init__(self, tmp: Path, certs: Path):
        self.tmp, self.certs = tmp, certs
        self.procs: list[subprocess.Popen] = []
        self.logs = []

    def spawn(self, name, *args) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "w")
        self.logs.append(log)
        proc = subprocess.Popen([str(BIN / "kdist"), "cluster", *map(str, args)], env=ENV,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def log(self, name) -> str:
        return (self.tmp / f"{name}.log").read_text()

    def start(self):
        self.scheduler = self.spawn("scheduler", "scheduler", "--certs", self.certs,
                                    "--port", 0, "--dashboard-address", "127.0.0.1:0")

        def address():
            m = re.search(r"Scheduler at:\s+(\S+)", self.log("scheduler"))
            return m.group(1) if m else None

        wait_until(lambda: address() or self.scheduler.poll() is not None, 30, "the scheduler")
        assert self.scheduler.poll() is None, self.log("scheduler")
        self.address = address()
        self.worker = self.spawn("worker", "worker", self.address, "--certs", self.certs,
                                 "--nthreads", 1, "--name", "w1")
        from distributed import Client

        with Client(self.address, security=client_security(self.certs), timeout=20,
                    set_as_default=False) as client:
            client.wait_for_workers(1, timeout=30)
        return self

    def close(self):
        kill_groups(self.procs, timeout=20)
        for log in self.logs:
            log.close()


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory, certs):
    cluster = TLSCluster(tmp_path_factory.mktemp("tls-cluster"), certs)
    try:
        yield cluster.start()
    finally:
        cluster.close()


def kdist_cli(*args, timeout=90) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "kdist"), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=ENV)


def listeners(pids) -> set[tuple[int, str, int]]:
    """(pid, ip, port) of every listening TCP socket of these processes and their children."""
    import psutil

    procs = []
    for pid in pids:
        proc = psutil.Process(pid)
        procs += [proc, *proc.children(recursive=True)]
    return {(p.pid, c.laddr.ip, c.laddr.port) for p in procs
            for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}


def reference(symbols, tmp_path) -> pd.DataFrame:
    db = tmp_path / "reference.duckdb"
    kdist.ingest(symbols, **WINDOW, db=db, client="sync")
    with kdist.Store(db, read_only=True) as store:
        return store.fingerprint()


def fingerprint(db) -> pd.DataFrame:
    with kdist.Store(db, read_only=True) as store:
        return store.fingerprint()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_kdist_cluster_commands_listen_on_loopback_by_default(tls_cluster):
    found = listeners([tls_cluster.scheduler.pid, tls_cluster.worker.pid])
    assert {pid for pid, _, _ in found} >= {tls_cluster.scheduler.pid, tls_cluster.worker.pid}
    assert len(found) >= 5  # scheduler, its dashboard; nanny; worker, its health page
    outside = {f for f in found if not ipaddress.ip_address(f[1]).is_loopback}
    assert not outside, f"listening beyond 127.0.0.1: {outside}"
    assert tls_cluster.address.startswith("tls://127.0.0.1:")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_ingest_through_a_tls_cluster(tls_cluster, certs, tmp_path):
    db = tmp_path / "cli.duckdb"
    result = kdist_cli("ingest", *SYMBOLS, "--start", WINDOW["start"], "--end", WINDOW["end"],
                       "--db", db, "--scheduler", tls_cluster.address, "--certs", certs,
                       "--no-fallback", "--chunk-size", 1, "--json")
    assert result.returncode == 0, result.stderr
    assert '"mode": "distributed"' in result.stdout
    expected = reference(SYMBOLS, tmp_path)
    pd.testing.assert_frame_equal(fingerprint(db), expected)

    api_db = tmp_path / "api.duckdb"  # the Python API with the three files
    report = kdist.ingest(SYMBOLS, **WINDOW, db=api_db, client=tls_cluster.address,
                          tls_ca=certs / "ca.pem", tls_cert=certs / "client.pem",
                          tls_key=certs / "client-key.pem", fallback=False)
    assert report.mode == "distributed" and report.symbols_ok == len(SYMBOLS)
    pd.testing.assert_frame_equal(fingerprint(api_db), expected)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_client_without_the_certificates_is_refused(tls_cluster, certs, tmp_path):
    host, port = tls_cluster.address.removeprefix("tls://").rsplit(":", 1)
    db = tmp_path / "never.duckdb"
    # kdist refuses before connecting, naming the flags to pass (exit 2).
    result = kdist_cli("ingest", "600000.SH", "--start", WINDOW["start"], "--db", db,
                       "--scheduler", tls_cluster.address)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "--certs DIR or --tls-ca" in result.stderr
    assert not db.exists()

    # The scheduler itself refuses a TLS client without a certificate: it ends the
    # connection instead of speaking Dask. With the client certificate it answers.
    def first_bytes(with_cert: bool) -> bytes:
        ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        ctx.check_hostname = False
        if with_cert:
            ctx.load_cert_chain(certs / "client.pem", certs / "client-key.pem")
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname=host) as tls:
                tls.sendall(b"\0" * 8)
                return tls.recv(64)

    assert first_bytes(with_cert=True)
    try:
        refused = first_bytes(with_cert=False)
    except (ssl.SSLError, ConnectionError) as exc:  # an alert, or the connection cut
        refused = exc
    assert refused == b"" or isinstance(refused, Exception), refused

    # And a plain-TCP Dask client gets nothing.
    from distributed import Client

    with pytest.raises(OSError):
        Client(f"tcp://{host}:{port}", timeout=5, set_as_default=False)


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("which", ["another CA", "another CA's client certificate"])
def test_a_client_with_another_cas_certificates_is_refused(tls_cluster, certs, other_certs,
                                                          tmp_path, which):
    db = tmp_path / "never.duckdb"
    if which == "another CA":
        tls = ["--certs", other_certs]
        reason = f"its certificate is not signed by the CA {other_certs / 'ca.pem'}"
    else:  # trusts the scheduler, but the scheduler does not trust it
        tls = ["--tls-ca", certs / "ca.pem", "--tls-cert", other_certs / "client.pem",
               "--tls-key", other_certs / "client-key.pem"]
        reason = f"does not accept the client certificate {other_certs / 'client.pem'}"
    t0 = time.monotonic()
    result = kdist_cli("ingest", "600000.SH", "--start", WINDOW["start"], "--db", db,
                       "--scheduler", tls_cluster.address, *tls)  # fallback allowed: not used
    assert time.monotonic() - t0 < 30
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"kdist: error: TLS connection to scheduler "
                               f"{tls_cluster.address} failed:")
    assert reason in lines[0] and "certificates of that cluster's CA" in lines[0]
    assert not db.exists()  # no fallback to a local run, nothing written


# -- from review: settings, addresses, the CA's key, expiry -----------------------------------

def test_broken_dask_tls_settings_are_a_usage_error_not_a_local_run(tmp_path, monkeypatch):
    make_certs(tmp_path / "certs")
    monkeypatch.setenv("DASK_DISTRIBUTED__COMM__TLS__CA_FILE", str(tmp_path / "nope.pem"))
    monkeypatch.setenv("DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT",
                       str(tmp_path / "certs" / "client.pem"))
    monkeypatch.setenv("DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY",
                       str(tmp_path / "certs" / "client-key.pem"))
    import dask

    dask.config.refresh()
    try:
        with pytest.raises(UsageError, match="Dask's TLS settings"):
            resolve_cluster("tls://127.0.0.1:1")
    finally:
        monkeypatch.undo()
        dask.config.refresh()


@pytest.mark.parametrize("address", ["tls://127.0.0.1", "tcp://127.0.0.1:", "tcp://:8786"])
def test_an_address_without_host_or_port_is_a_usage_error(address, tmp_path):
    make_certs(tmp_path / "certs")
    security = tmp_path / "certs" if address.startswith("tls") else None
    with pytest.raises(kdist.errors.InvalidOptionError, match="needs a host and a port"):
        resolve_cluster(address, security=security)


def test_a_ca_key_others_can_read_is_refused(tmp_path):
    make_certs(tmp_path / "ck")
    (tmp_path / "ck" / "ca-key.pem").chmod(0o644)
    with pytest.raises(UsageError, match="readable by you only"):
        make_certs(tmp_path / "ck", force=True)


def test_an_expired_certificate_is_named_as_expired():
    from kdist.cluster import _tls_failure

    error = ssl.SSLCertVerificationError(1, "certificate verify failed")
    error.verify_message = "certificate has expired"
    assert _tls_failure(error) == "CERTIFICATE_EXPIRED"


def test_an_expired_client_certificate_is_refused_before_connecting(tmp_path):
    """Made with dates in the past by the same CA, as a certificate looks after 825 days."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    make_certs(tmp_path / "c")
    d = tmp_path / "c"
    ca = x509.load_pem_x509_certificate((d / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((d / "ca-key.pem").read_bytes(), None)
    key = serialization.load_pem_private_key((d / "client-key.pem").read_bytes(), None)
    old = x509.load_pem_x509_certificate((d / "client.pem").read_bytes())
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=900)
    expired = (x509.CertificateBuilder().subject_name(old.subject).issuer_name(ca.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(past).not_valid_after(past + dt.timedelta(days=825))
               .sign(ca_key, hashes.SHA256()))
    (d / "client.pem").write_bytes(expired.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(UsageError, match="not now: re-issue"):
        client_security(d)
