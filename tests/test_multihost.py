"""Several machines on one: a scheduler and two workers in their own network namespaces.

Each runs in a Linux network namespace with its own address (10.x.y.10, .11, .12), joined
by veth pairs to a bridge; the client stays in this namespace and reaches them through the
bridge's address (10.x.y.1), so every connection crosses a network, as between hosts, and
none can use 127.0.0.1. The import goes through them once with plain TCP (kdist warns) and
once with TLS started by ``kdist cluster scheduler`` / ``kdist cluster worker``.

Needs root and ``ip`` (iproute2); otherwise the tests skip with the reason, or fail when
``KDIST_REQUIRE_NETNS=1`` (CI). Namespaces, bridge and processes are removed afterwards,
also when a test fails.
"""

from __future__ import annotations

import ipaddress
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from _procs import kill_groups

import kdist
from kdist.security import client_security, dask_command, make_certs

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

BIN = Path(sys.executable).parent
WINDOW = {"start": "2024-01-01", "end": "2024-06-28"}
SYMBOLS = kdist.get_provider("synthetic", universe=16).list_symbols()
ROLES = ("sched", "w1", "w2")
PORT = 8786


def _unavailable(reason: str):
    if os.environ.get("KDIST_REQUIRE_NETNS") == "1":
        pytest.fail(f"KDIST_REQUIRE_NETNS=1 but {reason}")
    pytest.skip(reason)


def ip(*args, check=True) -> subprocess.CompletedProcess:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and result.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def _free_subnet() -> ipaddress.IPv4Network:
    used = ip("-4", "route", "show", "table", "all").stdout + ip("-4", "addr").stdout
    taken = [ipaddress.ip_network(m, strict=False)
             for m in re.findall(r"(\d+\.\d+\.\d+\.\d+(?:/\d+)?)", used)]
    for _ in range(50):
        net = ipaddress.ip_network(f"10.{random.randint(100, 250)}.{random.randint(0, 255)}.0/24")
        if not any(net.overlaps(t) for t in taken):
            return net
    raise RuntimeError("no free 10.x.y.0/24 subnet")


class Hosts:
    """Network namespaces joined by a bridge; ``addr[role]`` is each one's address."""

    def __init__(self):
        tag = f"{os.getpid() % 10000:04d}{random.randrange(16**3):03x}"
        self.bridge = f"kdb{tag}"
        self.ns = {role: f"kdist-{tag}-{role}" for role in ROLES}
        self.net = _free_subnet()
        hosts = list(self.net.hosts())
        self.gateway = str(hosts[0])
        self.addr = {role: str(hosts[9 + i]) for i, role in enumerate(ROLES)}
        self.created_ns: list[str] = []
        self.created_bridge = False
        self.procs: list[subprocess.Popen] = []

    def up(self):
        ip("link", "add", self.bridge, "type", "bridge")
        self.created_bridge = True
        ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for i, role in enumerate(ROLES):
            ns, outer, inner = self.ns[role], f"{self.bridge}o{i}", f"{self.bridge}i{i}"
            ip("netns", "add", ns)
            self.created_ns.append(ns)
            ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            ip("link", "set", outer, "master", self.bridge)
            ip("link", "set", outer, "up")
            ip("link", "set", inner, "netns", ns)
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "addr", "add", f"{self.addr[role]}/24", "dev", inner)
            ip("-n", ns, "link", "set", inner, "up")

    def spawn(self, role, cmd, log: Path) -> subprocess.Popen:
        """Start ``cmd`` inside the namespace of ``role``, in its own process group."""
        fh = open(log, "w")
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns[role], *map(str, cmd)],
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "KDIST_DASHBOARD_ADDRESS": "127.0.0.1:0"})
        fh.close()
        self.procs.append(proc)
        return proc

    def reachable(self, src: str, dst: str, timeout: float = 10) -> bool:
        """Whether a TCP connection from namespace ``src`` reaches a listener in ``dst``."""
        code = ("import socket,sys; s=socket.socket(); s.settimeout(10); "
                f"s.bind(({self.addr[dst]!r}, 0)); s.listen(); print(s.getsockname()[1], "
                "flush=True); s.accept()")
        server = subprocess.Popen(["ip", "netns", "exec", self.ns[dst], sys.executable, "-c",
                                   code], stdout=subprocess.PIPE, text=True)
        try:
            port = int(server.stdout.readline())
            probe = (f"import socket; socket.create_connection(({self.addr[dst]!r}, {port}), "
                     f"timeout={timeout})")
            prefix = ["ip", "netns", "exec", self.ns[src]] if src != "client" else []
            ok = subprocess.run([*prefix, sys.executable, "-c", probe], capture_output=True,
                                timeout=timeout + 20).returncode == 0
        finally:
            server.kill()
            server.wait()
        return ok

    def stop_processes(self):
        kill_groups(self.procs, timeout=30)
        self.procs.clear()

    def down(self):
        self.stop_processes()
        for ns in self.created_ns:  # deleting a namespace deletes its end of the veth pair
            ip("netns", "del", ns, check=False)
        if self.created_bridge:
            ip("link", "del", self.bridge, check=False)


@pytest.fixture(scope="module")
def hosts():
    if not sys.platform.startswith("linux"):
        _unavailable("network namespaces are Linux only")
    if os.geteuid() != 0:
        _unavailable("network namespaces need root")
    if shutil.which("ip") is None:
        _unavailable("'ip' (iproute2) is not installed: apt-get install iproute2")
    h = Hosts()
    try:
        try:
            h.up()
        except (RuntimeError, subprocess.SubprocessError) as exc:
            _unavailable(f"cannot make network namespaces here ({exc})")
        if not (h.reachable("w1", "sched") and h.reachable("client", "w2")):
            _unavailable("namespaces on the bridge cannot reach each other (bridged traffic "
                         "filtered: br_netfilter with an iptables FORWARD policy of DROP?)")
        yield h
    finally:
        h.down()


def wait_for(log: Path, pattern: str, proc: subprocess.Popen, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if m := re.search(pattern, log.read_text()):
            return m.group(1)
        assert proc.poll() is None, log.read_text()
        time.sleep(0.1)
    raise AssertionError(f"no {pattern!r} in {log} after {timeout:g}s:\n{log.read_text()}")


def reference(tmp_path) -> pd.DataFrame:
    db = tmp_path / "reference.duckdb"
    kdist.ingest(SYMBOLS, **WINDOW, db=db, client="sync")
    with kdist.Store(db, read_only=True) as store:
        return store.fingerprint()


def start_cluster(hosts: Hosts, tmp_path: Path, protocol: str) -> tuple[str, object]:
    """Start the scheduler and both workers; return the scheduler address and security."""
    sched = hosts.addr["sched"]
    if protocol == "tls":
        certs = tmp_path / "certs"
        make_certs(certs, hosts=["localhost", *hosts.addr.values()])
        kdist_bin = BIN / "kdist"
        sched_cmd = [kdist_bin, "cluster", "scheduler", "--certs", certs, "--host", sched,
                     "--port", PORT]
        worker_cmd = [kdist_bin, "cluster", "worker", f"tls://{sched}:{PORT}", "--certs", certs,
                      "--nthreads", 1]  # listens where Dask finds the route to the scheduler
        security = client_security(certs)
    else:
        sched_cmd = [*dask_command(), "scheduler", "--host", sched, "--port", PORT,
                     "--dashboard-address", "127.0.0.1:0"]
        worker_cmd = None
        security = None
    log = tmp_path / "sched.log"
    proc = hosts.spawn("sched", sched_cmd, log)
    address = wait_for(log, r"Scheduler at:\s+(\S+)", proc)
    assert address == f"{protocol}://{sched}:{PORT}"
    for name in ("w1", "w2"):
        cmd = worker_cmd or [*dask_command(), "worker", address, "--host", hosts.addr[name],
                             "--nthreads", 1, "--no-dashboard"]
        hosts.spawn(name, [*cmd, "--name", name], tmp_path / f"{name}.log")
    return address, security


@pytest.mark.parametrize("protocol", ["tcp", "tls"])
def test_ingest_through_a_scheduler_and_two_workers_on_other_hosts(hosts, tmp_path, protocol):
    from distributed import Client

    try:
        address, security = start_cluster(hosts, tmp_path, protocol)
        with Client(address, security=security, timeout=30, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=60)
            workers = client.scheduler_info(n_workers=-1)["workers"]
            # Each worker is on its own host, seen by the scheduler at that host's address.
            assert sorted(w["host"] for w in workers.values()) == [hosts.addr["w1"],
                                                                   hosts.addr["w2"]]
            here = os.readlink("/proc/self/ns/net")
            netns = client.run(lambda: os.readlink("/proc/self/ns/net"))
            assert len(set(netns.values())) == 2 and here not in netns.values()

        db = tmp_path / "kdist.duckdb"
        options = {"db": db, "client": address, "fallback": False, "chunk_size": 1,
                   "provider": kdist.get_provider("synthetic", latency=0.1)}
        if protocol == "tcp":
            with pytest.warns(UserWarning, match=f"Connecting to {address} without TLS"):
                report = kdist.ingest(SYMBOLS, **WINDOW, **options)
        else:
            report = kdist.ingest(SYMBOLS, **WINDOW, **options, security=tmp_path / "certs")

        assert report.mode == "distributed"
        assert report.symbols_ok == len(SYMBOLS) and report.failures == {}
        with kdist.Store(db, read_only=True) as store:
            stored = store.fingerprint()
        pd.testing.assert_frame_equal(stored, reference(tmp_path))
        with Client(address, security=security, timeout=30, set_as_default=False) as client:
            executed = client.run(lambda dask_worker: dask_worker.state.executed_count)
        assert all(n > 0 for n in executed.values()), executed  # both hosts fetched
    finally:
        hosts.stop_processes()
