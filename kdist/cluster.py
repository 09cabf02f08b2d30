"""Find the Dask cluster a job runs on, or fall back to running it locally.

``client`` may be a :class:`distributed.Client`, a scheduler address (``tcp://host:8786``,
``tls://...``), ``"local"`` (a :class:`~distributed.LocalCluster` of worker processes on
127.0.0.1) or ``"sync"`` (in this process, no workers). When it is not given, the
``KDIST_SCHEDULER`` environment variable or Dask's ``scheduler-address`` setting names a
scheduler; otherwise kdist starts a local cluster.

Safe by default: the local cluster's scheduler, workers and dashboard listen on 127.0.0.1
only, and its scheduler, workers and nannies speak TLS with credentials made for it in
memory (:func:`kdist.security.local_security`): every user of a shared machine can reach
127.0.0.1, and a Dask scheduler or worker runs whatever it is sent. ``security=False`` or
``KDIST_LOCAL_TLS=0`` starts it over plain TCP instead; the dashboard is plain HTTP either
way. A plain ``tcp://`` scheduler that is not on this machine gets a warning, since anyone
who reaches its port can run code on its workers. A ``tls://`` scheduler needs the client's
certificates (``security=`` a ``Security`` or a directory from ``kdist cluster certs``, or
``tls_ca``/``tls_cert``/``tls_key``; see :mod:`kdist.security`); without them the job is
refused before anything is contacted, and a TLS handshake the scheduler refuses is an error,
never a reason to fall back.

A scheduler that does not answer within ``connect_timeout`` seconds, or has no workers within
``worker_timeout``, is never waited on forever: kdist warns and runs the job on a local
cluster instead (``fallback=True``, the default), or raises a :class:`~kdist.errors.ClusterError`.
The :class:`Cluster` records which mode ran and why, for the job's report.
"""

from __future__ import annotations

import ipaddress
import logging
import multiprocessing
import os
import socket
import threading
import warnings
from urllib.parse import urlparse

import dask

from .backends import Cluster, DaskCluster, InProcess, dask_error
from .errors import InvalidOptionError, NoWorkersError, SchedulerUnreachableError, UsageError
from .fetching import WORKER_MALLOC

__all__ = ["Cluster", "DaskCluster", "InProcess", "close_shared", "closes_with_job", "dask_error",
           "is_shared",
           "named_scheduler", "resolve_cluster", "shared_cluster"]

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
WORKER_TIMEOUT = 30.0


#: Local clusters shared by the callers of :func:`shared_cluster`, by (workers, threads, tls).
_SHARED: dict[tuple, Cluster] = {}
_SHARED_LOCK = threading.Lock()


def shared_cluster(n_workers: int | None = None, threads_per_worker: int | None = None, *,
                   security=None) -> Cluster:
    """A local cluster that callers of the same size and security share, started on first use.

    Notebook panels (and re-run cells) use one cluster instead of starting another each
    time, so its dashboard link stays alive between imports. ``security=False`` gets a plain
    TCP cluster, kept apart from the TLS one: a caller that asks for TLS never gets a cluster
    every local user can reach. A cluster that lost its scheduler is replaced.
    """
    key = _shared_key(n_workers, threads_per_worker, security)
    tls = key[-1]
    with _SHARED_LOCK:
        cluster = _SHARED.get(key)
        if cluster is None or not cluster.connected():
            # Only False is for this cluster: certificates are for a tls:// address.
            cluster = _SHARED[key] = resolve_cluster(
                "local", n_workers=n_workers, threads_per_worker=threads_per_worker,
                fallback=False, security=None if tls else False)
        return cluster


def is_shared(n_workers: int | None = None, threads_per_worker: int | None = None, *,
              security=None) -> bool:
    """Whether :func:`shared_cluster` would hand out a running cluster for these arguments."""
    cluster = _SHARED.get(_shared_key(n_workers, threads_per_worker, security))
    return cluster is not None and cluster.connected()


def closes_with_job(cluster: Cluster) -> bool:
    """Whether closing ``cluster`` stops the cluster itself (and its dashboard): a local
    cluster kdist started for one job; not a shared one, a caller's or a remote one."""
    return cluster.starts_cluster and all(c is not cluster for c in _SHARED.values())


def _shared_key(n_workers, threads_per_worker, security) -> tuple:
    return (n_workers, threads_per_worker, _local_tls(security))


def close_shared(cluster: Cluster) -> None:
    """Stop a cluster from :func:`shared_cluster`; the next caller starts a new one."""
    with _SHARED_LOCK:
        for key, known in list(_SHARED.items()):
            if known is cluster:
                del _SHARED[key]
    cluster.close()


def _with_scheme(address: str) -> str:
    """``host:8786`` -> ``tcp://host:8786``: Dask's default protocol is plain TCP."""
    return address if "://" in address else f"tcp://{address}"


def _is_loopback(address: str) -> bool:
    host = urlparse(_with_scheme(address)).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
        except OSError:
            return False


def _local_tls(security) -> bool:
    """Whether kdist's local cluster uses TLS: ``security=False`` or ``KDIST_LOCAL_TLS=0``
    turn it off; anything else leaves it on."""
    if security is False:
        return False
    value = os.environ.get("KDIST_LOCAL_TLS", "").strip().lower()
    if value in ("", "1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise UsageError(
        f"KDIST_LOCAL_TLS={os.environ['KDIST_LOCAL_TLS']!r}: give 0 (the local cluster over "
        "plain TCP, which every local user can reach) or 1 (TLS, the default)"
    )


def _local_cluster(n_workers, threads_per_worker, *, tls: bool) -> Cluster:
    from distributed import Client, LocalCluster

    from .security import local_security

    n_workers = n_workers or min(4, os.cpu_count() or 1)
    threads_per_worker = threads_per_worker or 2
    with dask.config.set({**_start_method(), **_WORKER_MALLOC}):
        _start_forkserver()
        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            processes=True,
            host="127.0.0.1",
            protocol="tls://" if tls else "tcp://",
            security=local_security() if tls else None,
            # The dashboard stays plain HTTP on 127.0.0.1 (``security`` does not cover it):
            # its pages show the tasks but take no work, and a browser would not trust the
            # cluster's own CA.
            dashboard_address=dashboard_address(),
            silence_logs=logging.ERROR,
            # The terminal sends Ctrl-C to every process of its group: each worker printed
            # its own KeyboardInterrupt traceback before kdist's one line. Workers ignore
            # SIGINT; this process takes it, stops the job and closes the cluster.
            preload=[*dask.config.get("distributed.worker.preload", []),
                     "kdist._quiet_worker"],
        )
        client = Client(cluster, set_as_default=False)
    return DaskCluster("local", client, address=cluster.scheduler_address,
                       dashboard_link=client.dashboard_link, closers=[cluster.close, client.close],
                       starts_cluster=True)


#: Where the local cluster's dashboard listens when ``KDIST_DASHBOARD_ADDRESS`` does not say.
DASHBOARD = "127.0.0.1:8787"


def dashboard_address() -> str:
    """``KDIST_DASHBOARD_ADDRESS``, else 127.0.0.1:8787 when that port is free, else a free
    port: Dask would take another port itself, but with a warning that reads like an error
    (a second notebook or import on one machine always met it). The link printed and
    reported is the one the dashboard got."""
    given = os.environ.get("KDIST_DASHBOARD_ADDRESS")
    if given:
        return given
    host, port = DASHBOARD.rsplit(":", 1)
    with socket.socket() as probe:
        try:
            probe.bind((host, int(port)))
        except OSError:
            return f"{host}:0"
    return DASHBOARD


#: kdist's glibc settings (:data:`kdist.fetching.WORKER_MALLOC`) for local workers from
#: their start, replacing Dask's ``MALLOC_TRIM_THRESHOLD_=65536``: with Dask's, every array
#: over 128 KiB is a fresh mmap, page-faulted in and unmapped again, which multiplied a
#: chunk's CPU (see docs/performance.md#worker-memory). glibc reads them as a process
#: starts: a spawned worker (a restart) gets them from its nanny, the fork server from
#: :func:`_start_forkserver`, and every worker again from its first chunk.
_WORKER_MALLOC = {f"distributed.nanny.pre-spawn-environ.{name}": value
                  for name, value in WORKER_MALLOC.items()}


def _start_method() -> dict:
    """Start the local workers from a fork server where the platform has one, unless Dask
    is configured for something other than its default ``spawn``: the server imports Dask,
    pandas and numpy once and forks each worker from that, instead of each worker importing
    them again (see docs/performance.md#local-cluster). Restarted workers use the
    configured method again."""
    key = "distributed.worker.multiprocessing-method"
    if dask.config.get(key, "spawn") != "spawn":
        return {}
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return {}
    return {key: "forkserver"}


def _start_forkserver():
    """Start the fork server now, if the workers will come from one: it imports Dask, numpy
    and pandas in its own process while this one starts the scheduler (whose dashboard is
    slow to import), instead of after it (see docs/performance.md#local-cluster).

    It starts with the environment Dask's nanny gives the workers it spawns (kdist's
    allocator settings, one BLAS thread): a worker forked from the server has the server's
    allocator and environment, and what the nanny sets later, as it starts each worker,
    comes too late for it (see docs/performance.md#worker-memory).
    """
    if dask.config.get("distributed.worker.multiprocessing-method") != "forkserver":
        return
    from multiprocessing import forkserver

    from distributed.utils import get_mp_context

    get_mp_context()  # Dask's list of modules for the server to import
    # The server takes this process's environment as it starts; afterwards this process's
    # own is put back, so that nothing it starts later (a user's subprocess) inherits them.
    given = _pre_spawn_environ()
    saved = {name: os.environ.get(name) for name in given}
    os.environ.update(given)
    try:
        forkserver.ensure_running()
    except Exception as exc:  # Dask starts it itself, as before
        log.debug("could not start the fork server early: %r", exc)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _pre_spawn_environ() -> dict[str, str]:
    """The variables Dask's nanny sets before it starts a worker, as it reads them: this
    process's own value of each first, then Dask's settings (distributed.nanny)."""
    given = dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {}
    return {name: os.environ.get(name, str(value)) for name, value in given.items()
            if value is not None}


def _probe(address: str, timeout: float, security=None):
    """Open and close a connection to the scheduler's port.

    A refused connection fails here at once; Dask's client would retry it until its timeout.
    A ``tls://`` scheduler gets a whole TLS handshake (a bare TCP connection would show in
    its log as a failed handshake each time a job starts), which also fails at once when
    the scheduler's certificate is not from our CA.
    """
    parsed = urlparse(_with_scheme(address))
    if parsed.scheme not in ("tcp", "tls") or not parsed.port:
        return  # other protocols (inproc, ucx) are left to Dask
    with socket.create_connection((parsed.hostname, parsed.port), timeout=timeout) as sock:
        if parsed.scheme == "tls" and security is not None:
            context = security.get_connection_args("client")["ssl_context"]
            if context is not None:
                context.wrap_socket(sock, server_hostname=parsed.hostname).close()


#: What a refused TLS handshake means, by OpenSSL reason (or exception name).
_TLS_REASONS = {
    "CERTIFICATE_EXPIRED": "its certificate has expired",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "it refused the client certificate {cert}: expired",
    "CERTIFICATE_VERIFY_FAILED": "its certificate is not signed by the CA {ca}",
    "TLSV1_ALERT_UNKNOWN_CA": "it does not accept the client certificate {cert} (not signed "
                              "by its CA)",
    "SSLV3_ALERT_BAD_CERTIFICATE": "it does not accept the client certificate {cert}",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "it wants a client certificate",
    # TLS 1.3: the server checks the client's certificate after the client's half of the
    # handshake, and may just close the connection.
    "SSLEOFError": "it closed the connection during the handshake, as it does when it does "
                   "not accept the client certificate {cert}",
    "UNEXPECTED_EOF_WHILE_READING": "it closed the connection during the handshake, as it "
                                    "does when it does not accept the client certificate "
                                    "{cert}",
    "WRONG_VERSION_NUMBER": "it does not speak TLS (a plain tcp:// scheduler?)",
}


def _tls_failure(exc: BaseException) -> str | None:
    """Why a TLS connection failed, if ``exc`` is a refused handshake; else None."""
    import ssl

    chain, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    for link in chain:
        if isinstance(link, ssl.SSLCertVerificationError) and "expired" in str(
                getattr(link, "verify_message", "")):
            return "CERTIFICATE_EXPIRED"
        if isinstance(link, ssl.SSLError):
            reason, name = getattr(link, "reason", None), type(link).__name__
            if reason in _TLS_REASONS or name not in _TLS_REASONS:
                return reason or name
            return name
    for link in chain:
        # Dask keeps only the text of some SSL errors.
        text = str(link)
        for reason in _TLS_REASONS:
            if reason in text:
                return reason
        if dask_error(link, "refused") or "TLS certificate" in text:
            return "handshake refused"
    return None


def _file_name(value) -> str:
    # Security also takes PEM text instead of a file name.
    return "(given in memory)" if value and "\n" in str(value) else str(value)


def _remote_cluster(address: str, connect_timeout: float, worker_timeout: float, security):
    from distributed import Client

    address = _with_scheme(address)
    if address.startswith("tcp://") and not _is_loopback(address):
        warnings.warn(
            f"Connecting to {address} without TLS: anyone who can reach that port can run "
            "any code on the cluster's workers and read what they fetch. On a shared network "
            "use a TLS scheduler: 'kdist cluster certs DIR', 'kdist cluster scheduler --certs "
            "DIR', then --scheduler tls://HOST:8786 --certs DIR (see docs/deploy.md).",
            UserWarning,
            stacklevel=3,
        )
    try:
        _probe(address, connect_timeout, security)
        client = Client(
            address, timeout=connect_timeout, set_as_default=False, security=security
        )
    except (OSError, TimeoutError) as exc:
        reason = _tls_failure(exc) if address.startswith("tls://") else None
        if reason is not None:
            why = _TLS_REASONS.get(reason, "{reason}").format(
                ca=_file_name(security.tls_ca_file), cert=_file_name(security.tls_client_cert),
                reason=reason,
            )
            todo = (
                "re-issue the certificates with 'kdist cluster certs DIR --force', give them "
                "to every machine and restart the scheduler and workers" if "EXPIRED" in reason
                else "give the certificates of that cluster's CA: --certs DIR or --tls-ca, "
                "--tls-cert and --tls-key (Python: security=DIR or tls_ca=, tls_cert=, tls_key=)"
            )
            raise SchedulerUnreachableError(
                f"TLS connection to scheduler {address} failed: {why}; {todo}",
                address=address,
                tls=reason,
            ) from exc
        hint = ""
        if address.startswith("tcp://") and dask_error(exc, "closed") \
                and not dask_error(exc, "refused"):
            hint = "; if it is a TLS scheduler, use its tls:// address and certificates"
        raise SchedulerUnreachableError(
            f"Scheduler {address} did not answer within {connect_timeout:g}s ({exc}); "
            f"check the address and that 'dask scheduler' is running{hint}",
            address=address,
        ) from exc
    try:
        client.wait_for_workers(1, timeout=worker_timeout)
    except (TimeoutError, OSError) as exc:
        client.close()
        start = (f"kdist cluster worker {address} --certs DIR" if address.startswith("tls://")
                 else f"dask worker {address}")
        raise NoWorkersError(
            f"Scheduler {address} has no workers after {worker_timeout:g}s; "
            f"start some with '{start}'",
            address=address,
        ) from exc
    return DaskCluster("distributed", client, address=address,
                       dashboard_link=client.dashboard_link, closers=[client.close])


def _security(client, security, tls_ca, tls_cert, tls_key):
    """The client's ``Security`` for ``client``, or None; refuse what cannot work."""
    from .security import client_security, config_security

    is_tls = isinstance(client, str) and client.startswith("tls://")
    if security is False:  # no TLS where kdist starts the cluster: see _local_tls
        if any(v is not None for v in (tls_ca, tls_cert, tls_key)):
            raise UsageError(
                "security=False (--no-local-tls) turns TLS off, and tls_ca, tls_cert, tls_key "
                "are TLS files: give one or the other, not both"
            )
        if is_tls:
            raise UsageError(
                f"security=False (--no-local-tls) is for kdist's local cluster: the tls:// "
                f"scheduler needs the client's certificates ({client}); give them instead, "
                "with --certs DIR (Python: security=DIR)"
            )
        return None
    given = client_security(security, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key)
    if given is not None and not is_tls:
        where = client if isinstance(client, str) else "a distributed.Client (it has its own)"
        raise UsageError(
            f"TLS certificates were given but the scheduler is {where}: they are for a "
            "tls:// scheduler; pass its address, e.g. --scheduler tls://HOST:8786"
        )
    if is_tls and given is None:
        given = config_security()  # Dask's own settings (distributed.comm.tls.*)
        if given is None:
            raise UsageError(
                f"Scheduler {client} uses TLS: give the client's certificates with --certs "
                "DIR or --tls-ca, --tls-cert and --tls-key (Python: security=DIR or tls_ca=, "
                "tls_cert=, tls_key=); 'kdist cluster certs DIR' makes them"
            )
    return given


def resolve_cluster(
    client=None,
    *,
    n_workers: int | None = None,
    threads_per_worker: int | None = None,
    fallback: bool = True,
    connect_timeout: float = CONNECT_TIMEOUT,
    worker_timeout: float = WORKER_TIMEOUT,
    security=None,
    tls_ca=None,
    tls_cert=None,
    tls_key=None,
) -> Cluster:
    """Return the :class:`Cluster` a job should run on.

    Parameters
    ----------
    client
        A ``distributed.Client``, a scheduler address, ``"local"``, ``"sync"`` or None (the
        ``KDIST_SCHEDULER`` variable, then Dask's ``scheduler-address``, then ``"local"``).
    n_workers, threads_per_worker
        Size of a local cluster (default: up to 4 workers, 2 threads each).
    fallback
        When the scheduler is unreachable or has no workers, warn and run on a local cluster
        (and in this process if even that cannot start). When false, raise instead.
    connect_timeout, worker_timeout
        Seconds to wait for the scheduler to answer, and for its first worker.
    security
        For a ``tls://`` scheduler: a ``distributed.security.Security``, or a directory made
        by ``kdist cluster certs`` (its ``ca.pem``, ``client.pem``, ``client-key.pem``).
        ``False``: start the local cluster (for ``"local"``, or as the fallback) over plain
        TCP rather than TLS, as does ``KDIST_LOCAL_TLS=0``. Every user of this machine can
        then connect to it and run code on its workers.
    tls_ca, tls_cert, tls_key
        Or the three files: the cluster's CA certificate, the client's certificate and key.
        Without any of these a ``tls://`` scheduler uses Dask's ``distributed.comm.tls``
        settings, if they name a CA and a client certificate.

    Raises
    ------
    UsageError
        A ``tls://`` scheduler without certificates, certificates for anything else, or
        TLS files that are missing, unreadable or do not match; ``security=False`` with a
        ``tls://`` scheduler or TLS files; a ``KDIST_LOCAL_TLS`` other than 0 or 1 (or
        false/true, no/yes, off/on).
    SchedulerUnreachableError
        The scheduler refused the TLS handshake (its ``tls`` attribute says why), whatever
        ``fallback`` says: other certificates are needed, not another cluster.
    SchedulerUnreachableError, NoWorkersError
        Otherwise with ``fallback=False`` only.
    """
    if client is None:
        client = named_scheduler() or "local"
    asked = security  # False: a local cluster started here runs without TLS
    security = _security(client, security, tls_ca, tls_cert, tls_key)
    if not isinstance(client, str):
        # A distributed.Client the caller owns: use it, never close it. The client of a
        # notebook's shared local cluster (the panels pass it) says "local", as it is.
        shared = any(c.client is client for c in list(_SHARED.values()))
        return DaskCluster("local" if shared else "distributed", client,
                           address=getattr(client.scheduler, "address", None),
                           dashboard_link=client.dashboard_link)
    if client == "sync":
        return InProcess()
    if client == "local":
        tls = _local_tls(asked)  # a bad KDIST_LOCAL_TLS is an error, not a reason to fall back
        try:
            return _local_cluster(n_workers, threads_per_worker, tls=tls)
        except Exception as exc:
            if not fallback:
                raise
            return _fallback_sync(f"local cluster failed to start ({exc})")
    if "://" not in client and ":" not in client:
        raise InvalidOptionError(
            f"Unknown scheduler {client!r}: give an address like tcp://host:8786, "
            "'local' or 'sync'",
            option="scheduler",
        )
    parsed = urlparse(_with_scheme(client))
    try:
        port = parsed.port
    except ValueError:
        port = None
    if parsed.scheme in ("tcp", "tls") and not (parsed.hostname and port):
        raise InvalidOptionError(
            f"Scheduler address {client!r} needs a host and a port, like "
            f"{parsed.scheme}://host:8786",
            option="scheduler",
        )
    try:
        return _remote_cluster(client, connect_timeout, worker_timeout, security)
    except (SchedulerUnreachableError, NoWorkersError) as exc:
        if not fallback or getattr(exc, "tls", None):
            raise
        reason = str(exc)
    tls = _local_tls(asked)
    warnings.warn(f"{reason}. Running locally instead.", UserWarning, stacklevel=2)
    try:
        cluster = _local_cluster(n_workers, threads_per_worker, tls=tls)
    except Exception as exc:
        return _fallback_sync(f"{reason}; local cluster failed to start ({exc})")
    cluster.fallback_reason = reason
    return cluster


def named_scheduler() -> str | None:
    """The scheduler named by ``KDIST_SCHEDULER`` or Dask's ``scheduler-address``, if any."""
    return os.environ.get("KDIST_SCHEDULER") or dask.config.get("scheduler-address", None)


def _fallback_sync(reason: str) -> Cluster:
    warnings.warn(f"{reason}. Running in this process instead.", UserWarning, stacklevel=3)
    return InProcess(fallback_reason=reason)
