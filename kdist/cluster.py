"""Find the Dask cluster a job runs on, or fall back to running it locally.

``client`` may be a :class:`distributed.Client`, a scheduler address (``tcp://host:8786``,
``tls://...``), ``"local"`` (a :class:`~distributed.LocalCluster` of worker processes on
127.0.0.1) or ``"sync"`` (in this process, no workers). When it is not given, the
``KDIST_SCHEDULER`` environment variable or Dask's ``scheduler-address`` setting names a
scheduler; otherwise kdist starts a local cluster.

A scheduler that does not answer within ``connect_timeout`` seconds, or has no workers within
``worker_timeout``, is never waited on forever: kdist warns and runs the job on a local
cluster instead (``fallback=True``, the default), or raises a :class:`~kdist.errors.ClusterError`.
The :class:`Cluster` records which mode ran and why, for the job's report.
"""

from __future__ import annotations

import concurrent.futures as cf
import ipaddress
import logging
import os
import socket
import warnings
from dataclasses import dataclass, field
from urllib.parse import urlparse

import dask

from .errors import InvalidOptionError, NoWorkersError, SchedulerUnreachableError

__all__ = ["Cluster", "resolve_cluster"]

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
WORKER_TIMEOUT = 30.0


@dataclass
class Cluster:
    """Where a job's chunks run: a Dask client, or an in-process executor for ``sync``."""

    mode: str  # "distributed", "local" or "sync"
    client: object | None = None
    address: str | None = None
    dashboard_link: str | None = None
    fallback_reason: str | None = None
    _closers: list = field(default_factory=list, repr=False)
    _executor: cf.ThreadPoolExecutor | None = field(default=None, repr=False)

    @property
    def n_workers(self) -> int:
        if self.client is None:
            return 1
        return max(1, len(self.client.scheduler_info(n_workers=-1)["workers"]))

    @property
    def n_threads(self) -> int:
        if self.client is None:
            return 1
        return max(1, sum(self.client.nthreads().values()))

    def connected(self) -> bool:
        """False while the client has lost its scheduler (``sync`` is always connected)."""
        return self.client is None or self.client.status == "running"

    def live_workers(self) -> int:
        """Workers connected now (1 for ``sync``)."""
        if self.client is None:
            return 1
        try:
            return len(self.client.scheduler_info(n_workers=-1)["workers"])
        except Exception:  # the scheduler itself is gone
            return 0

    def submit(self, task):
        """Start a ``dask.delayed`` task and return its future."""
        if self.client is None:
            if self._executor is None:
                self._executor = cf.ThreadPoolExecutor(1, thread_name_prefix="kdist-sync")
            return self._executor.submit(task.compute, scheduler="sync")
        return self.client.compute(task)

    def wait(self, futures, timeout: float):
        """Return ``(done, not_done)`` after the first completes or ``timeout`` seconds."""
        if not futures:
            return set(), set()
        if self.client is None:
            done, pending = cf.wait(futures, timeout=timeout, return_when=cf.FIRST_COMPLETED)
            return set(done), set(pending)
        from distributed import wait

        try:
            # Our client is not the process default (the caller may have their own).
            with self.client.as_current():
                done, pending = wait(list(futures), timeout=timeout, return_when="FIRST_COMPLETED")
        except TimeoutError:
            return set(), set(futures)
        except Exception as exc:
            # Dask cancels every future when the client loses its scheduler.
            if type(exc).__name__ in ("FuturesCancelledError", "CancelledError"):
                raise SchedulerUnreachableError(
                    f"Lost the scheduler {self.address} mid-job ({len(futures)} chunks in "
                    "flight were cancelled)",
                    address=self.address,
                ) from exc
            raise
        return set(done), set(pending)

    def cancel(self, futures):
        """Cancel futures that have not finished.

        Best effort: a client that already lost its scheduler cannot send the request, and
        that failure must not hide the error that is stopping the job.
        """
        if not futures:
            return
        if self.client is None:
            for f in futures:
                f.cancel()
            return
        try:
            self.client.cancel(list(futures))
        except Exception:  # the scheduler is gone: so are the tasks
            pass

    def close(self):
        """Shut down what this object started (never a client the caller passed in)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
        for closer in reversed(self._closers):
            try:
                closer()
            except Exception as exc:  # closing must not hide the job's own outcome
                log.debug("ignored error while closing the cluster: %s", exc)
        self._closers.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _is_loopback(address: str) -> bool:
    host = urlparse(address if "://" in address else f"tcp://{address}").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
        except OSError:
            return False


def _local_cluster(n_workers, threads_per_worker) -> Cluster:
    from distributed import Client, LocalCluster

    n_workers = n_workers or min(4, os.cpu_count() or 1)
    threads_per_worker = threads_per_worker or 2
    cluster = LocalCluster(
        n_workers=n_workers,
        threads_per_worker=threads_per_worker,
        processes=True,
        host="127.0.0.1",
        dashboard_address=os.environ.get("KDIST_DASHBOARD_ADDRESS", "127.0.0.1:8787"),
        silence_logs=logging.ERROR,
    )
    client = Client(cluster, set_as_default=False)
    return Cluster(
        "local",
        client=client,
        address=cluster.scheduler_address,
        dashboard_link=client.dashboard_link,
        _closers=[cluster.close, client.close],
    )


def _probe(address: str, timeout: float):
    """Open and close a TCP connection to the scheduler's port.

    A refused connection fails here at once; Dask's client would retry it until its timeout.
    """
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    if parsed.scheme not in ("tcp", "tls") or not parsed.port:
        return  # other protocols (inproc, ucx) are left to Dask
    with socket.create_connection((parsed.hostname, parsed.port), timeout=timeout):
        pass


def _remote_cluster(address: str, connect_timeout: float, worker_timeout: float, security):
    from distributed import Client

    if address.startswith("tcp://") and not _is_loopback(address):
        warnings.warn(
            f"Connecting to {address} without TLS: anyone who can reach that port can run "
            "code on the cluster. Use a tls:// scheduler with certificates on shared networks.",
            UserWarning,
            stacklevel=3,
        )
    try:
        _probe(address, connect_timeout)
        client = Client(
            address, timeout=connect_timeout, set_as_default=False, security=security
        )
    except (OSError, TimeoutError) as exc:
        raise SchedulerUnreachableError(
            f"Scheduler {address} did not answer within {connect_timeout:g}s ({exc}); "
            "check the address and that 'dask scheduler' is running",
            address=address,
        ) from exc
    try:
        client.wait_for_workers(1, timeout=worker_timeout)
    except (TimeoutError, OSError) as exc:
        client.close()
        raise NoWorkersError(
            f"Scheduler {address} has no workers after {worker_timeout:g}s; "
            "start some with 'dask worker " + address + "'",
            address=address,
        ) from exc
    return Cluster(
        "distributed",
        client=client,
        address=address,
        dashboard_link=client.dashboard_link,
        _closers=[client.close],
    )


def resolve_cluster(
    client=None,
    *,
    n_workers: int | None = None,
    threads_per_worker: int | None = None,
    fallback: bool = True,
    connect_timeout: float = CONNECT_TIMEOUT,
    worker_timeout: float = WORKER_TIMEOUT,
    security=None,
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
        A ``distributed.security.Security`` for ``tls://`` schedulers.

    Raises
    ------
    SchedulerUnreachableError, NoWorkersError
        With ``fallback=False`` only.
    """
    if client is None:
        client = os.environ.get("KDIST_SCHEDULER") or dask.config.get("scheduler-address", None)
        client = client or "local"
    if not isinstance(client, str):
        # A distributed.Client the caller owns: use it, never close it.
        return Cluster(
            "distributed",
            client=client,
            address=getattr(client.scheduler, "address", None),
            dashboard_link=client.dashboard_link,
        )
    if client == "sync":
        return Cluster("sync")
    if client == "local":
        try:
            return _local_cluster(n_workers, threads_per_worker)
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
    try:
        return _remote_cluster(client, connect_timeout, worker_timeout, security)
    except (SchedulerUnreachableError, NoWorkersError) as exc:
        if not fallback:
            raise
        reason = str(exc)
    warnings.warn(f"{reason}. Running locally instead.", UserWarning, stacklevel=2)
    try:
        cluster = _local_cluster(n_workers, threads_per_worker)
    except Exception as exc:
        return _fallback_sync(f"{reason}; local cluster failed to start ({exc})")
    cluster.fallback_reason = reason
    return cluster


def _fallback_sync(reason: str) -> Cluster:
    warnings.warn(f"{reason}. Running in this process instead.", UserWarning, stacklevel=3)
    return Cluster("sync", fallback_reason=reason)
