"""The two places a job's chunks can run, behind one small interface.

:class:`Cluster` is what the client loop (:mod:`kdist.loop`) sees: submit tasks, wait for
the first to finish, fetch results, cancel, and ask which workers are silent.
:class:`InProcess` runs chunks one at a time on a daemon thread of this process (``sync``);
:class:`DaskCluster` runs them through a Dask client, fetching finished results ahead of
the caller. :func:`kdist.cluster.resolve_cluster` decides which one a job gets.
:func:`dask_error` tells Dask's errors apart by type without importing Dask until one can
have occurred.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import functools
import logging
import queue
import sys
import threading
import time
import weakref

from . import ticks
from .errors import SchedulerUnreachableError

__all__ = ["Cluster", "DaskCluster", "InProcess", "dask_error"]

log = logging.getLogger(__name__)

#: Finished results fetched in one round trip. Each is held until its batch is written, so
#: more at once raised scenario D's client peak and made A no faster
#: (see docs/performance.md#fetch-ahead).
_GATHER_AT_ONCE = 2
#: Finished results fetched ahead of the caller, at most (each a chunk's bars): more took
#: scenario D's client peak to the edge of its target, with A no faster
#: (see docs/performance.md#fetch-ahead).
_AHEAD = 2


class Cluster:
    """Where a job's chunks run: the small interface the client loop uses.

    Two implementations: :class:`InProcess` (``sync``: chunks run one at a time on a
    thread of this process) and :class:`DaskCluster` (a Dask client: kdist's local cluster
    or a scheduler somewhere else). Futures are whatever the implementation hands out
    (``concurrent.futures.Future`` or ``distributed.Future``); only the cluster that made
    a future is asked about it.
    """

    #: ``"sync"``, ``"local"`` or ``"distributed"``: what the job's report says ran.
    mode: str
    #: The Dask client, for code that needs Dask itself (None in process).
    client = None
    #: Whether the cluster holds submitted tasks until a thread is free, so a job can
    #: submit every chunk at once (Dask's scheduler queues them; its dashboard then shows
    #: the whole job). In process, results wait in the client's own memory instead.
    queues_tasks = False
    #: Whether :meth:`close` stops the cluster itself (kdist started it for this job).
    starts_cluster = False

    def __init__(self, mode: str, *, address: str | None = None,
                 dashboard_link: str | None = None, fallback_reason: str | None = None):
        self.mode = mode
        self.address = address
        self.dashboard_link = dashboard_link
        #: Why the job runs here and not where it was asked to (an unreachable scheduler).
        self.fallback_reason = fallback_reason
        #: Why this mode was chosen when nobody named one (e.g. a small job runs in process).
        self.reason: str | None = None

    def __repr__(self):
        return f"{type(self).__name__}(mode={self.mode!r}, address={self.address!r})"

    @property
    def n_workers(self) -> int:
        """Workers the job can use (at least 1)."""
        return 1

    @property
    def n_threads(self) -> int:
        """Threads over all workers (at least 1)."""
        return 1

    def connected(self) -> bool:
        """False while the cluster cannot be reached (a client that lost its scheduler)."""
        return True

    def live_workers(self) -> int:
        """Workers connected now (0 when the scheduler itself is gone)."""
        return 1

    def submit(self, task, workers: list[str] | None = None):
        """Start a ``dask.delayed`` task and return its future (on one of ``workers`` only,
        when given and the cluster has workers)."""
        raise NotImplementedError

    def submit_many(self, tasks) -> list:
        """Start ``dask.delayed`` tasks and return their futures."""
        return [self.submit(task) for task in tasks]

    def state(self, future) -> str:
        """``"finished"``, ``"error"``, ``"cancelled"``, or ``"pending"`` for anything else
        (running, queued, or lost with its worker and being computed again)."""
        raise NotImplementedError

    def settle(self, future, timeout: float) -> bool:
        """Whether a future the job stopped has finished, waiting up to ``timeout`` seconds
        where its task cannot be cancelled mid-run."""
        return self.state(future) == "finished"

    def gather_finished(self, futures, timeout: float) -> dict:
        """Results of finished ``futures`` it can fetch cheaply now: ``{future: result}``.

        Best effort: a future missing from the answer is fetched by the caller itself,
        with its checks.
        """
        return {}

    def wait(self, futures, timeout: float):
        """Return ``(done, not_done)`` after the first completes or ``timeout`` seconds."""
        raise NotImplementedError

    def cancel(self, futures):
        """Cancel futures that have not finished (best effort)."""
        for future in futures:
            future.cancel()

    def heartbeats(self) -> dict:
        """``{worker address: its last heartbeat, in the scheduler's clock}``; empty where
        there are no workers to fall silent."""
        return {}

    def processing(self, workers) -> dict:
        """``{worker address: keys of the tasks it is running}`` for ``workers``."""
        return {}

    def holding(self, futures) -> dict:
        """``{key: addresses of the workers holding its result}`` for finished ``futures``."""
        return {}

    def run_on_workers(self, fn, *args, skip=()) -> None:
        """Run coroutine function ``fn(*args)`` on every worker but ``skip``, without waiting
        (nothing to do where the job runs in this process)."""

    def listen(self, topic: str, handler) -> None:
        """Call ``handler(chunk index, symbols done)`` for each tick a running chunk sends
        to ``topic`` (:mod:`kdist.ticks`); on the client's event loop thread for Dask."""
        ticks.listen(topic, handler)

    def forget(self, topic: str) -> None:
        """Stop listening to ``topic``."""
        ticks.forget(topic)

    def share(self, limits) -> None:
        """Make a job's politeness limits (:class:`kdist.limits.Limits`) ready for every
        worker before its first task reads them."""

    def close(self):
        """Shut down what this object started (never a client the caller passed in)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class InProcess(Cluster):
    """``sync``: chunks run one at a time on a daemon thread of this process."""

    def __init__(self, *, fallback_reason: str | None = None):
        super().__init__("sync", fallback_reason=fallback_reason)
        self._executor: _DaemonExecutor | None = None

    def submit(self, task, workers=None):
        if self._executor is None:
            self._executor = _DaemonExecutor()
        # Dask's own scheduler function: compute(scheduler="sync") would first import
        # distributed to look for a client, a cost a small job notices
        # (see docs/performance.md#in-process).
        return self._executor.submit(_run_sync, task)

    def state(self, future) -> str:
        if not future.done():
            return "pending"
        if future.cancelled():
            return "cancelled"
        return "error" if future.exception() is not None else "finished"

    def settle(self, future, timeout: float) -> bool:
        # A running chunk cannot be cancelled: it stops at its next symbol.
        try:
            future.result(timeout=timeout)
        except BaseException:  # cancelled, failed or still running: nothing to keep
            return False
        return True

    def wait(self, futures, timeout: float):
        if not futures:
            return set(), set()
        done, pending = cf.wait(futures, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        return set(done), set(pending)

    def close(self):
        if self._executor is not None:
            self._executor.shutdown()


class DaskCluster(Cluster):
    """Chunks run on a Dask cluster through ``client``.

    Every chunk can be submitted at once: the scheduler queues what no thread can run yet
    (Dask's root-task queuing), runs the queue in the tasks' priority order, and its
    dashboard counts the whole job.

    ``closers`` are called on :meth:`close`, last first: what kdist started for this job
    (a local cluster and its client). A client the caller passed in has none: it is theirs.
    """

    queues_tasks = True

    def __init__(self, mode: str, client, *, address: str | None = None,
                 dashboard_link: str | None = None, closers=(), starts_cluster: bool = False):
        super().__init__(mode, address=address, dashboard_link=dashboard_link)
        self.client = client
        self._closers = list(closers)
        self.starts_cluster = starts_cluster
        #: Results being fetched, or fetched, before the caller asks: {future key: cf.Future}.
        self._ahead: dict = {}
        #: Keys whose results nobody has asked for yet: only these are fetched ahead.
        self._unasked: set = set()
        self._ahead_lock = threading.Lock()
        #: Set when one of the job's tasks ends: what :meth:`wait` sleeps on.
        self._ended = threading.Event()

    @property
    def n_workers(self) -> int:
        return max(1, len(self.client.scheduler_info(n_workers=-1)["workers"]))

    @property
    def n_threads(self) -> int:
        return max(1, sum(self.client.nthreads().values()))

    def connected(self) -> bool:
        return self.client.status == "running"

    def live_workers(self) -> int:
        try:
            return len(self.client.scheduler_info(n_workers=-1)["workers"])
        except Exception:  # the scheduler itself is gone
            return 0

    def submit(self, task, workers=None):
        if workers:
            future = self.client.compute(task, workers=workers, allow_other_workers=False)
        else:
            future = self.client.compute(task)
        future.add_done_callback(self._end)
        return future

    def submit_many(self, tasks) -> list:
        futures = list(self.client.compute(list(tasks)))
        with self._ahead_lock:
            self._unasked.update(f.key for f in futures)
        for future in futures:
            future.add_done_callback(self._fetch_ahead)
        return futures

    def _end(self, future):
        self._ended.set()

    def state(self, future) -> str:
        status = future.status
        return status if status in ("finished", "error", "cancelled") else "pending"

    def _gather(self, futures) -> cf.Future:
        """Fetch ``futures``' results on the client's event loop; safe from any thread."""
        return asyncio.run_coroutine_threadsafe(
            self.client.gather(futures, asynchronous=True), self.client.loop.asyncio_loop)

    def _fetch_ahead(self, future):
        """Start fetching a finished task's result at once, on the client's event loop.

        Runs in Dask's callback thread when the task ends. The transfer then overlaps the
        caller's work (writing the previous batch) instead of following it, where the
        client's thread used to wait for transfers (see docs/performance.md#fetch-ahead). At
        most ``_AHEAD`` results are held before the caller takes them, to bound client memory;
        the others are fetched when asked for.
        """
        try:
            if future.status != "finished":
                return
            with self._ahead_lock:
                # Dask's callback thread may run late: a result already asked for (and
                # fetched by the caller) must not be fetched again and held.
                if future.key not in self._unasked or len(self._ahead) >= _AHEAD:
                    return
                try:
                    self._ahead[future.key] = self._gather([future])
                except Exception as exc:  # a closing client: fetched when asked, or never
                    log.debug("could not fetch %s ahead: %r", future.key, exc)
        finally:
            self._end(future)

    def gather_finished(self, futures, timeout: float) -> dict:
        """Those fetched ahead (see :meth:`_fetch_ahead`) are taken as they are; the others
        are fetched in one round trip, where fetching them one by one costs one each (see
        docs/performance.md#fetch-ahead)."""
        results = {}
        for future in futures:
            with self._ahead_lock:
                self._unasked.discard(future.key)  # fetched now, one way or another
                ahead = self._ahead.pop(future.key, None)
            if ahead is not None:
                try:
                    results[future] = ahead.result(timeout)[0]
                except Exception:  # lost with its worker, erred, or slow: the caller checks
                    ahead.cancel()
        # A few at a time: each result is held until the batch it joins is written.
        finished = [f for f in futures if f not in results and f.status == "finished"]
        finished = finished[:_GATHER_AT_ONCE]
        if len(finished) < 2:
            return results
        fetching = None
        try:
            fetching = self._gather(finished)
            values = fetching.result(timeout)
        except Exception:
            if fetching is not None:
                fetching.cancel()
            return results
        return {**results, **dict(zip(finished, values))}

    def wait(self, futures, timeout: float):
        """As ``distributed.wait(futures, timeout, return_when="FIRST_COMPLETED")``, without
        its cost: that makes an asyncio task per future on the client's event loop, each
        call, and a job calls it once per finished chunk with every unfinished chunk in it.
        The loop is the one the client's messages (and a local cluster's scheduler) run on
        (see docs/performance.md#waiting). Here the futures' done callbacks wake the caller,
        which looks at their states itself."""
        if not futures:
            return set(), set()
        futures = list(futures)
        deadline = time.monotonic() + timeout
        while True:
            self._ended.clear()
            if any(f.done() for f in futures):
                break
            left = deadline - time.monotonic()
            if left <= 0:
                return set(), set(futures)
            # Dask calls a future's done callbacks once: a result lost with its worker and
            # computed again ends without one. While a future is lost, look every 0.1 s.
            lost = any(f.status == "lost" for f in futures)
            self._ended.wait(min(left, 0.1) if lost else left)
        # Dask's own split: done is whatever is not pending (a result lost with its worker too).
        done = {f for f in futures if f.status != "pending"}
        cancelled = [f for f in done if f.cancelled()]
        if cancelled:
            # Dask cancels every future when the client loses its scheduler.
            raise SchedulerUnreachableError(
                f"Lost the scheduler {self.address} mid-job ({len(futures)} chunks in "
                "flight were cancelled)",
                address=self.address,
            )
        return done, set(futures) - done

    def cancel(self, futures):
        """Best effort: a client that already lost its scheduler cannot send the request,
        and that failure must not hide the error that is stopping the job."""
        if not futures:
            return
        with self._ahead_lock:
            for f in futures:
                self._unasked.discard(f.key)
                ahead = self._ahead.pop(f.key, None)
                if ahead is not None:
                    ahead.cancel()
        try:
            self.client.cancel(list(futures))
        except Exception:  # the scheduler is gone: so are the tasks
            pass

    def heartbeats(self) -> dict:
        return {address: info.get("last_seen") for address, info in
                self.client.scheduler_info(n_workers=-1)["workers"].items()}

    def processing(self, workers) -> dict:
        return self.client.processing(list(workers))

    def holding(self, futures) -> dict:
        return dict(self.client.who_has(list(futures)))

    def run_on_workers(self, fn, *args, skip=()) -> None:
        """From a thread, on the workers that answer: ``Client.run`` waits for every worker
        it names, and a frozen one would hold the caller for minutes."""
        if not self.connected():
            return
        threading.Thread(target=_run_on_workers, name="kdist-run-on-workers",
                         args=(self.client, fn, args, set(skip)), daemon=True).start()

    def listen(self, topic: str, handler) -> None:
        super().listen(topic, handler)
        if self.client not in _SUBSCRIBED:  # once per client: every job's ticks share it
            with contextlib.suppress(Exception):  # no ticks: the display moves by chunks
                self.client.subscribe_topic(ticks.TOPIC, _route)
                _SUBSCRIBED.add(self.client)

    def share(self, limits) -> None:
        from .limits import prepare

        prepare(limits, self.client)

    def close(self):
        for closer in reversed(self._closers):
            try:
                closer()
            except Exception as exc:  # closing must not hide the job's own outcome
                log.debug("ignored error while closing the cluster: %s", exc)
        self._closers.clear()


#: The clients subscribed to :data:`kdist.ticks.TOPIC`.
_SUBSCRIBED: weakref.WeakSet = weakref.WeakSet()


def _route(event):
    """A tick from a worker, ``(time, [run topic, chunk index, done])``, to its job's
    listener (:func:`kdist.ticks.deliver`)."""
    ticks.deliver(*event[1])


def _run_on_workers(client, fn, args, skip: set):
    with contextlib.suppress(Exception):
        workers = [a for a in client.scheduler_info(n_workers=-1)["workers"] if a not in skip]
        if workers:
            client.run(fn, *args, workers=workers, wait=False)


class _DaemonExecutor:
    """Runs in-process tasks one at a time on a daemon thread.

    Not a ``ThreadPoolExecutor``: Python joins those threads at exit, so a provider call that
    never returns (``timeout=0``) would keep a stopped job's process alive for ever. A job
    that stops leaves a running task to end at its next symbol, or with the process.
    """

    def __init__(self):
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        threading.Thread(target=self._serve, name="kdist-sync", daemon=True).start()

    def submit(self, fn, *args) -> cf.Future:
        future: cf.Future = cf.Future()
        self._tasks.put((future, fn, args))
        return future

    def _serve(self):
        while True:
            item = self._tasks.get()
            if item is None:
                return
            future, fn, args = item
            if self._closed or not future.set_running_or_notify_cancel():
                future.cancel()
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # handed to whoever waits on the future
                future.set_exception(exc)

    def shutdown(self):
        """Cancel the tasks not started; never wait for the one running."""
        self._closed = True
        self._tasks.put(None)


@functools.cache
def _dask_errors() -> dict[str, tuple[type, ...]]:
    """Dask's exception classes by what they mean to kdist, imported on first use (``import
    kdist`` never imports distributed; an in-process job never needs it)."""
    from distributed.client import FuturesCancelledError
    from distributed.comm.core import CommClosedError, FatalCommClosedError
    from distributed.scheduler import KilledWorker

    return {
        "worker died": (KilledWorker,),  # Dask gave up on a task whose workers kept dying
        "cancelled": (cf.CancelledError, asyncio.CancelledError, FuturesCancelledError),
        "closed": (CommClosedError,),  # a connection closed, or never opened
        "refused": (FatalCommClosedError,),  # e.g. a TLS handshake the other side refused
    }


def dask_error(exc: BaseException, kind: str) -> bool:
    """Whether ``exc`` is a Dask error of ``kind``: ``worker died``, ``cancelled``,
    ``closed`` or ``refused`` (matched by type, through one lazily built map)."""
    if "distributed" not in sys.modules:
        # Nothing of Dask's ran: only the in-process executor's cancellations can occur.
        return kind == "cancelled" and isinstance(exc, (cf.CancelledError,
                                                        asyncio.CancelledError))
    return isinstance(exc, _dask_errors()[kind])


def _run_sync(task):
    from dask.local import get_sync

    return get_sync(task.__dask_graph__(), task.key)


