"""Symbols finished inside a running chunk, told to the client while the chunk still runs.

A chunk's result reaches the client only when its last symbol is done: with a slow or
rate-limited vendor that is many seconds, or minutes, of a progress bar standing still. So a
chunk running symbol by symbol tells how many of its symbols are done, at most every
:data:`EVERY` seconds: on a Dask worker as a Dask event (``Worker.log_event`` on
:data:`TOPIC`, naming the job's run; the client subscribes with
``Client.subscribe_topic``), in this process by calling the listener registered for the
run. A tick carries ``(chunk index, symbols done)``;
nothing is counted twice, since the chunk's own result replaces its ticks.

A provider's ``fetch_many`` that works symbol by symbol (one vendor call each) calls
:func:`tell` after each symbol, so a chunk fetched in one call moves the display too.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

__all__ = ["EVERY", "TOPIC", "Ticker", "call_with", "current_worker", "deliver", "forget",
           "listen", "running", "tell"]

#: The one Dask event topic every job's ticks travel on, each naming its job's run: a client
#: subscribes once, however many jobs it runs (a topic per job left a handler per job on a
#: long-lived client, and the scheduler keeps every topic's events).
TOPIC = "kdist-ticks"

#: Seconds between two ticks of one chunk: the display moves twice a second at most, and a
#: chunk of fast symbols sends a handful of events, not one per symbol.
EVERY = 0.5

_LISTENERS: dict[str, Callable[[int, int], None]] = {}
_LOCK = threading.Lock()
#: The ticker of the chunk this thread is fetching (a worker thread runs one at a time).
_RUNNING = threading.local()


def current_worker():
    """The Dask worker running this code, or None (in process, or Dask not in use)."""
    # Without distributed imported this is no Dask worker; importing it to ask would slow an
    # in-process job (see docs/performance.md#in-process).
    if "distributed" not in sys.modules:
        return None
    try:
        from distributed import get_worker

        return get_worker()
    except (ImportError, ValueError):
        return None


def tell(done: int) -> None:
    """``done`` symbols of the chunk this thread fetches are finished (from a provider's
    ``fetch_many``; nothing happens outside a chunk's task)."""
    ticker = running()
    if ticker is not None:
        ticker.tick(done)


def running() -> Ticker | None:
    """The ticker of the chunk this thread fetches, if any."""
    return getattr(_RUNNING, "ticker", None)


def call_with(ticker: Ticker | None, fn, *args):
    """``fn(*args)`` with ``ticker`` as this thread's, for a thread that makes calls on
    behalf of a chunk's task (its provider calls run on another thread, with a timeout)."""
    before = running()
    _RUNNING.ticker = ticker
    try:
        return fn(*args)
    finally:
        _RUNNING.ticker = before


def listen(topic: str, handler: Callable[[int, int], None]) -> None:
    """Call ``handler(chunk index, symbols done)`` for ticks of ``topic``: sent in this
    process, or from workers through :func:`deliver`."""
    with _LOCK:
        _LISTENERS[topic] = handler


def forget(topic: str) -> None:
    with _LOCK:
        _LISTENERS.pop(topic, None)


def deliver(topic: str, index: int, done: int) -> None:
    """A tick that came from a worker, to the listener of ``topic``; a late one of a job
    that ended is dropped."""
    handler = _LISTENERS.get(topic)
    if handler is not None:
        handler(index, done)


class Ticker:
    """Tells ``topic`` how far chunk ``index`` has got; None as the topic tells nobody.

    As a context manager, it is the one :func:`tell` reaches from this thread.
    """

    def __init__(self, topic: str | None, index: int):
        self.topic, self.index = topic, index
        self._last = time.monotonic()
        # Found now, on the task's own thread: the provider calls that tick may run on
        # another (kdist.fetching's caller thread), where Dask knows no worker.
        self._handler = _LISTENERS.get(topic) if topic is not None else None
        self._worker = current_worker() if topic is not None and self._handler is None \
            else None

    def __enter__(self):
        _RUNNING.ticker = self
        return self

    def __exit__(self, *exc):
        _RUNNING.ticker = None

    def tick(self, done: int) -> None:
        """``done`` symbols of the chunk are finished (sent if :data:`EVERY` has passed)."""
        if done <= 0 or (self._handler is None and self._worker is None):
            return
        now = time.monotonic()
        if now - self._last < EVERY:
            return
        self._last = now
        if self._handler is not None:
            self._handler(self.index, done)
            return
        try:
            self._worker.log_event(TOPIC, [self.topic, self.index, done])
        except Exception:  # a closing worker: the chunk's result still tells all
            pass
