"""Cluster-wide politeness towards a vendor: concurrency cap, call rate, circuit breaker.

A :class:`Limits` travels with every task of a job and is turned into a :class:`Gate` once per
worker process. Every provider call goes through the gate:

- **concurrency**: a ``distributed.Semaphore`` named after the job and provider caps the calls
  in flight across the whole cluster (a process-local semaphore when there is no cluster);
- **rate**: a second cluster-wide semaphore of ``max(1, floor(max_rate))`` tokens; a call takes a token
  when it starts and a background thread gives it back one window later, so no more than
  ``max_rate`` calls start in any second across the cluster, however many workers or threads;
- **circuit breaker**: after ``trip_after`` consecutive transient failures (connection drops,
  timeouts, HTTP 429) in a process, every process pauses calls for ``cooldown`` seconds; if the
  failures go on after that, the breaker opens and the job's remaining calls are refused with
  :class:`~kdist.errors.ProviderTrippedError` (those symbols end "skipped", resumable later).
  Breaker state is a ``distributed.Variable``, so one worker's trip stops them all.
"""

from __future__ import annotations

import contextlib
import math
import queue
import threading
import time
from dataclasses import dataclass

from .errors import ProviderTrippedError
from .ticks import current_worker

__all__ = ["Gate", "Limits", "gate", "prepare", "stop"]

#: Seconds a process trusts its copy of the cluster-wide breaker state.
_STATE_TTL = 0.5
_CLOSED = {"open": False, "cool_until": 0.0}


@dataclass(frozen=True)
class Limits:
    """How politely one job may call one provider (None: no limit)."""

    key: str  # unique per job and provider: names the cluster-wide semaphore and breaker
    provider: str
    max_concurrency: int | None = None
    max_rate: float | None = None
    trip_after: int | None = 5
    cooldown: float = 60.0

    @property
    def tokens(self) -> int:
        """Calls that may start within one :attr:`window`."""
        return max(1, math.floor(self.max_rate)) if self.max_rate else 0

    @property
    def window(self) -> float:
        """Seconds a start token stays taken: ``tokens / max_rate`` (1 s for rates >= 1), plus
        10% for the time between taking a token and the vendor seeing the request."""
        return 1.1 * self.tokens / self.max_rate if self.max_rate else 0.0


def prepare(limits: Limits, client) -> None:
    """Set the cluster-wide breaker state to closed before any task reads it.

    An unset ``distributed.Variable`` makes every read wait out its timeout (and the scheduler
    log an error each time).
    """
    from distributed import Variable

    Variable(f"{limits.key}-breaker", client=client).set(dict(_CLOSED))


_gates: dict[str, Gate] = {}
_gates_lock = threading.Lock()


def gate(limits: Limits | None) -> Gate | None:
    """The process's gate for ``limits`` (one per job and provider), created on first use."""
    if limits is None:
        return None
    with _gates_lock:
        if limits.key not in _gates:
            _gates[limits.key] = Gate(limits)
        return _gates[limits.key]


def stop(key: str) -> None:
    """End the job's gate in this process: chunks still running here stop at their next
    symbol, and its background thread exits."""
    with _gates_lock:
        found = _gates.pop(key, None)
    if found is not None:
        found.close()


async def stop_on_worker(key: str) -> None:
    """:func:`stop` for ``Client.run(..., wait=False)``, which runs only coroutines: the stop
    itself runs in a thread, as closing a semaphore talks to the scheduler synchronously."""
    import asyncio

    await asyncio.get_running_loop().run_in_executor(None, stop, key)


class Gate:
    """The per-process side of :class:`Limits`: semaphore, rate hold, breaker state."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.stopped = False
        self._failures = 0
        self._lock = threading.Lock()
        self._refreshing = threading.Lock()
        self._state = dict(_CLOSED)
        self._state_at = 0.0
        worker = current_worker()
        self._client = worker.client if worker is not None else None
        self._slots = self._semaphore("calls", limits.max_concurrency)
        self._tokens = self._semaphore("starts", limits.tokens)
        self._returns: queue.SimpleQueue = queue.SimpleQueue()
        if self._tokens is not None:
            threading.Thread(target=self._give_back, name="kdist-rate", daemon=True).start()
        if self._client is not None:
            from distributed import Variable

            self._var = Variable(f"{limits.key}-breaker", client=self._client)
        else:
            self._var = None

    def _semaphore(self, what: str, leases: int | None):
        if not leases:
            return None
        if self._client is None:
            return threading.BoundedSemaphore(leases)
        from distributed import Semaphore

        # Inside a worker task the semaphore finds the worker's scheduler connection itself.
        return Semaphore(max_leases=leases, name=f"{self.limits.key}-{what}")

    def _give_back(self):
        # Tokens come back in the order they were taken, each one window after: one thread
        # for all of them, never a thread per call.
        while not self.stopped:
            try:
                due = self._returns.get(timeout=5.0)
            except queue.Empty:
                continue
            time.sleep(max(0.0, due - time.monotonic()))
            self._tokens.release()

    def close(self):
        """Stop: running chunks end at their next provider call; threads and leases are released."""
        self.stopped = True
        for sem in (self._slots, self._tokens):
            if sem is not None and hasattr(sem, "close"):
                with contextlib.suppress(Exception):
                    sem.close()

    # -- breaker --------------------------------------------------------------------------

    def _read(self) -> dict:
        # One thread refreshes the shared state when it is stale; the others go on with the
        # copy they have rather than queue up at the scheduler together.
        if (self._var is not None and time.monotonic() - self._state_at > _STATE_TTL
                and self._refreshing.acquire(blocking=False)):
            try:
                self._state = self._var.get(timeout=1) or self._state
            except Exception:  # never set yet, or the scheduler is slow: keep our copy
                pass
            finally:
                self._state_at = time.monotonic()
                self._refreshing.release()
        return self._state

    def _write(self, state: dict):
        self._state, self._state_at = state, time.monotonic()
        if self._var is not None:
            with contextlib.suppress(Exception):
                self._var.set(state)

    def admit(self):
        """Wait out a cooldown; refuse the call when the breaker is open."""
        state = self._read()
        if state["open"]:
            raise ProviderTrippedError(
                f"{self.limits.provider} keeps dropping connections or rate-limiting: stopped "
                "calling it for this job. Wait (a vendor ban can last hours) or change network, "
                "then resume the job",
                provider=self.limits.provider,
            )
        wait = state["cool_until"] - time.time()
        if wait > 0:
            time.sleep(wait)

    def failed(self):
        """A transient failure: count it; trip the breaker after ``trip_after`` in a row."""
        if not self.limits.trip_after:
            return
        with self._lock:
            self._failures += 1
            if self._failures < self.limits.trip_after:
                return
            self._failures = 0
        state = dict(self._read())
        if state["cool_until"]:  # tripped before and still failing: open for good
            state["open"] = True
        else:
            state["cool_until"] = time.time() + self.limits.cooldown
        self._write(state)

    def succeeded(self):
        with self._lock:
            self._failures = 0
        state = self._read()
        if state["cool_until"] and not state["open"] and time.time() > state["cool_until"]:
            # The vendor answers again after the cooldown: close the breaker, so failures
            # hours later get a cooldown of their own before the job gives up.
            self._write(dict(_CLOSED))

    # -- concurrency and rate -------------------------------------------------------------

    @contextlib.contextmanager
    def slot(self):
        """Hold one of the cluster's call slots for the call, and take a start token."""
        if self._slots is not None:
            self._slots.acquire()
        try:
            if self._tokens is not None:
                self._tokens.acquire()
                self._returns.put(time.monotonic() + self.limits.window)
            yield
        finally:
            if self._slots is not None:
                self._slots.release()
