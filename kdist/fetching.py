"""The worker side of an import: fetch, normalise and check one chunk of symbols.

:func:`fetch_chunk` calls the provider once per symbol (or once per chunk through
``fetch_many``), with a timeout on every call and transient errors retried with exponential
backoff and jitter, then normalises and validates each frame and returns the chunk's bars
with one outcome per symbol. A failing symbol never fails its chunk. For an incremental
chunk it compares the re-fetched overlap with the stored bars (the incremental diff). Nothing
here touches the store or the cluster: it runs wherever Dask sends it, or in process. A
worker process gives its allocator kdist's settings before its first chunk
(:func:`tune_allocator`), however the worker was started.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import sys
import threading
from dataclasses import dataclass

import dask
import numpy as np
import pandas as pd
import pyarrow as pa
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from . import ticks
from .actions import empty_actions, normalise_actions
from .errors import (
    DataError,
    MissingDependencyError,
    PermanentProviderError,
    ProviderTrippedError,
    TransientProviderError,
)
from .limits import Limits
from .limits import gate as get_gate
from .outcome import Status, outcome
from .plan import Chunk
from .providers import Provider
from .schema import Adjust, Freq, empty_bars, normalise, normalise_many, once_per_value
from .ticks import Ticker

__all__ = ["CALL_TIMEOUT", "RETRIES", "WORKER_MALLOC", "ChunkResult", "failed_result",
           "fetch_chunk", "outcome", "task", "tune_allocator"]

#: Attempts per symbol for transient errors, and the most time spent retrying one symbol.
RETRIES = 3
RETRY_SECONDS = 120.0
#: Seconds one provider call may take before it counts as a (transient) timeout.
CALL_TIMEOUT = 60.0

_TRANSIENT = (TransientProviderError, ConnectionError, TimeoutError)

log = logging.getLogger(__name__)


@dataclass
class ChunkResult:
    """What a worker sends back for one chunk: its bars and one outcome per symbol, and for
    a job that asks for them the corporate actions of its ok symbols (``actions``: a
    ``symbol`` column and :data:`kdist.actions.COLUMNS`) with the window each was asked for
    (``checks``: ``symbol, start, end``)."""

    index: int
    bars: pd.DataFrame
    outcomes: list[dict]
    actions: pd.DataFrame | None = None
    checks: pd.DataFrame | None = None


class _Caller:
    """A long-lived daemon thread that makes the provider calls of one task thread.

    A call that outlives its timeout is abandoned with its thread (Python cannot kill a
    thread stuck in a socket read) and the next call gets a new caller. Reusing the thread
    otherwise matters: a thread per call is slower, and on Python 3.11 thread churn next to
    Dask's profiler (``sys._current_frames`` every few ms) can deadlock a worker's GIL.
    """

    def __init__(self):
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.owner = threading.current_thread()
        threading.Thread(target=self._serve, name="kdist-fetch", daemon=True).start()

    def _serve(self):
        while True:
            try:
                fn, args, box, done, ticker = self.jobs.get(timeout=5.0)
            except queue.Empty:
                if not self.owner.is_alive():
                    return  # the task thread is gone (an in-process job ended): so are we
                continue
            try:
                box["value"] = ticks.call_with(ticker, fn, *args)
            except BaseException as exc:  # handed to the waiting thread, never lost
                box["error"] = exc
            finally:
                done.set()

    def call(self, fn, args, timeout: float) -> dict | None:
        """Run ``fn(*args)``; the result box, or None if ``timeout`` passed first."""
        box: dict = {}
        done = threading.Event()
        self.jobs.put((fn, args, box, done, ticks.running()))
        return box if done.wait(timeout) else None


_callers = threading.local()


def _bounded(provider: Provider, fn, args, timeout: float | None, what: str):
    """``fn(*args)`` on this task thread's caller thread, given up on after ``timeout``."""
    if not timeout:
        return fn(*args)
    caller = getattr(_callers, "caller", None)
    if caller is None:
        caller = _callers.caller = _Caller()
    box = caller.call(fn, args, timeout)
    if box is None:
        _callers.caller = None  # its thread is stuck in the call: never reuse it
        raise TransientProviderError(
            f"{provider.name} gave no answer for {what} within {timeout:g}s",
            symbol=what if " " not in what else None,
        )
    if "error" in box:
        raise box["error"]
    return box["value"]


@functools.lru_cache(maxsize=None)
def _retrying(retries: int) -> Retrying:
    """The retry policy for ``retries`` attempts, one object per process.

    Reused, not built per symbol: each ``Retrying`` holds a ``threading.local`` (its state is
    per thread, so sharing it is safe), and workers freeing thousands of them hung inside
    Dask's profiler (``sys._current_frames`` -> GC -> a lock, Python 3.11), and one per
    process did not (see docs/performance.md#provider-calls).
    """
    return Retrying(
        stop=stop_after_attempt(retries) | stop_after_delay(RETRY_SECONDS),
        wait=wait_exponential_jitter(multiplier=0.2, max=5.0, jitter=0.2),
        retry=retry_if_exception_type(_TRANSIENT),
        reraise=True,
    )


def _fetch_one(provider, symbol, since, end, freq, adjust, retries, timeout, gate=None):
    """Fetch one symbol with retries through the job's gate (cluster-wide limits and
    breaker); return ``(frame, attempts)`` or raise the last error with its attempt count
    in ``kdist_attempts``."""
    last_day = end - pd.Timedelta(days=1)
    return _gated(provider, provider.fetch, (symbol, since, last_day, freq.value, adjust.value),
                  retries, timeout, gate, symbol)


def _gated(provider, fn, args, retries, timeout, gate, what: str):
    """``fn(*args)``, a call to the vendor, with retries of transient errors, each attempt
    bounded by ``timeout`` and let through by the job's gate; ``(result, attempts)``, or
    the last error raised with its attempt count in ``kdist_attempts``."""
    attempts = 0
    for attempt in _retrying(retries):
        with attempt:
            attempts = attempt.retry_state.attempt_number
            try:
                if gate is None:
                    value = _bounded(provider, fn, args, timeout, what)
                else:
                    gate.admit()
                    with gate.slot():
                        value = _bounded(provider, fn, args, timeout, what)
                    gate.succeeded()
            except Exception as exc:
                exc.kdist_attempts = attempts
                if gate is not None and isinstance(exc, _TRANSIENT):
                    gate.failed()
                raise
    return value, attempts


_COMPARED = ["open", "high", "low", "close", "volume"]


def _overlaps(frame: pd.DataFrame | None) -> dict:
    """Per symbol, the stored overlap bars as numpy ``(ts, values)``: split once per chunk,
    so the per-symbol check below is plain numpy (pandas' per-call cost was more than
    fetching the symbol; see docs/performance.md#one-call-per-chunk)."""
    if frame is None or len(frame) == 0:
        return {}
    frame = frame.sort_values(["symbol", "ts"], kind="stable")
    symbols = frame["symbol"].to_numpy()
    ts = frame["ts"].to_numpy()
    values = frame[_COMPARED].to_numpy(dtype="float64")
    cuts = np.flatnonzero(symbols[1:] != symbols[:-1]) + 1
    return {symbols[a]: (ts[a:b], values[a:b])
            for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(symbols)])}


def _differs(stored: tuple, bars: pd.DataFrame) -> bool:
    """True when fetched ``bars`` disagree with the stored overlap bars (history revised)."""
    want, expected = stored
    ts = bars["ts"].to_numpy()
    want = want.astype(ts.dtype)
    at = np.searchsorted(ts, want)
    if (at >= len(ts)).any() or (ts[np.minimum(at, len(ts) - 1)] != want).any():
        return True  # a stored bar is gone at the source
    fetched = np.column_stack([bars[c].to_numpy() for c in _COMPARED])[at]
    close = np.abs(fetched - expected) <= 1e-9 + 1e-9 * np.abs(expected)
    return not (close | (np.isnan(fetched) & np.isnan(expected))).all()


def _symbol_bars(provider, symbol, since, chunk, freq, adjust, retries, timeout, gate):
    """Fetch and normalise one window of one symbol: ``(bars, rejected, attempts)``."""
    raw, attempts = _fetch_one(provider, symbol, since, chunk.end, freq, adjust, retries, timeout,
                               gate)
    bars, rejected = normalise(
        raw, freq=freq, adjust=adjust, start=since, end=chunk.end, tz=provider.tz
    )
    return bars, rejected, attempts


def fetch_chunk(
    provider: Provider,
    chunk: Chunk,
    freq: Freq,
    adjust: Adjust,
    retries: int = RETRIES,
    timeout: float | None = CALL_TIMEOUT,
    limits: Limits | None = None,
    ticks: str | None = None,
    actions: bool | dict = False,
) -> ChunkResult:
    """Fetch, normalise and validate every symbol of ``chunk`` (runs on a worker).

    Returns a :class:`ChunkResult` whose ``bars`` has a ``symbol`` column followed by the
    canonical bar columns. Errors are outcomes, not exceptions. For an incremental chunk, a
    symbol whose re-fetched overlap differs from the stored bars is fetched again from its
    ``full`` start and reported as revised. Symbol by symbol, how many are done is told to
    the topic ``ticks`` as they finish (:mod:`kdist.ticks`). With ``actions``, each ok
    symbol's corporate actions are fetched too, from the start of its bars' window, or for
    a symbol in ``actions`` when it is a dict, from the earlier date it names.
    """
    with Ticker(ticks, chunk.index) as ticker:
        gate = get_gate(limits)
        result = None
        wants = bool(actions) and provider.serves_actions
        earlier = actions if isinstance(actions, dict) else {}
        if _batches(provider, limits):
            result = _fetch_batch(provider, chunk, freq, adjust, retries, timeout, gate)
            if result is not None and wants:
                _add_actions(provider, chunk, result, retries, timeout, gate, earlier)
        if result is None:
            result = _fetch_each(provider, chunk, freq, adjust, retries, timeout, gate, ticker,
                                 wants, earlier)
        return result


class _Actions:
    """The corporate actions of a chunk's symbols as they are fetched: each ok symbol's
    frame and the window it was asked for, into ``result.actions`` and ``result.checks``."""

    def __init__(self, provider, chunk: Chunk, retries, timeout, gate, earlier=None):
        self.provider, self.retries, self.timeout, self.gate = provider, retries, timeout, gate
        self.earlier = earlier or {}  # symbol -> an earlier start for its actions
        self.last_day = chunk.end - pd.Timedelta(days=1)
        self.frames, self.names, self.checks = [], [], []
        # A chunk's symbols share a few starts: each normalised once.
        self._day = once_per_value(lambda start: pd.Timestamp(start).normalize())

    def fetch(self, symbol: str, start):
        """Fetch ``symbol``'s actions from ``start`` (the start of its bars' window) on, or
        raise the last error with ``kdist_attempts``."""
        start = self.start(symbol, start)
        frame, _ = _gated(self.provider, self.provider.actions,
                                 (symbol, start, self.last_day), self.retries, self.timeout,
                                 self.gate, f"the corporate actions of {symbol}")
        if frame is not None:  # None: none served for it, nothing to take as complete
            self.checks.append((symbol, start, self.last_day))
            if len(frame):
                self.frames.append(frame)
                self.names.append(symbol)

    def start(self, symbol: str, start) -> pd.Timestamp:
        """Where ``symbol``'s actions are asked from: its bars' window, or earlier."""
        day = self._day(start)
        return min(day, self.earlier[symbol]) if symbol in self.earlier else day

    def into(self, result: ChunkResult) -> ChunkResult:
        result.checks = pd.DataFrame(self.checks, columns=["symbol", "start", "end"]).astype(
            {"symbol": "str", "start": "datetime64[us]", "end": "datetime64[us]"})
        if not self.frames:
            result.actions = empty_actions().assign(symbol=pd.Series(dtype="str"))
        elif self.names:
            # The symbol column built once for the chunk, as for its bars (_tag).
            result.actions = _tag(self.frames, self.names)
        else:
            result.actions = self.frames[0]  # actions_many's: it has its symbol column
        return result


#: Errors of a symbol's corporate actions that asking again will not mend (the vendor has
#: none for it, answers what is no action, or its package is missing): its bars are kept,
#: without a check, and its qfq/hfq are read as before (the vendor's stored bars).
_NO_ACTIONS = (PermanentProviderError, DataError, MissingDependencyError)


def _failed_actions(done: dict, exc: BaseException) -> tuple[dict, bool]:
    """The outcome of a symbol whose bars came but whose corporate actions did not, and
    whether its bars are kept. A transient error (or the breaker) fails it as a whole, so a
    resume fetches both; a permanent one keeps it ok, the error recorded with it."""
    symbol = done["symbol"]
    if isinstance(exc, _NO_ACTIONS):
        kept = dict(done, error_class=type(exc).__name__,
                    error=f"corporate actions of {symbol}: {exc}")
        return kept, True
    status = Status.SKIPPED if isinstance(exc, ProviderTrippedError) else Status.FAILED
    failure = outcome(symbol, status,
                      attempts=done["attempts"] + getattr(exc, "kdist_attempts", 1), error=exc)
    failure["error"] = f"corporate actions of {symbol}: {failure['error']}"
    return failure, False


def _actions_in_one_call(provider, chunk: Chunk, result: ChunkResult, found: _Actions,
                         timeout) -> bool:
    """The ok symbols' corporate actions from one ``actions_many`` call into ``result``;
    False to ask symbol by symbol instead (the provider has none, declined, or failed)."""
    if type(provider).actions_many is Provider.actions_many:
        return False
    ok = [(o["symbol"], found.start(o["symbol"], o["window_start"] or chunk.start))
          for o in result.outcomes if o["status"] == Status.OK]
    if not ok:
        found.into(result)
        return True
    symbols, starts = (list(x) for x in zip(*ok))
    try:
        frame = _bounded(provider, provider.actions_many, (symbols, starts, found.last_day),
                         timeout and timeout * len(symbols), f"{len(symbols)} symbols' actions")
        if frame is None:
            return False
        frame = normalise_actions(frame)
    except Exception as exc:
        log.debug("actions_many of chunk %d failed (%r): asking symbol by symbol", chunk.index,
                  exc)
        return False
    if len(frame):
        # An index lookup: Series.isin walks Arrow strings in Python (7 ms a chunk).
        asked = pd.Index(symbols).get_indexer(frame["symbol"]) >= 0
        if not asked.all():
            frame = frame[asked].reset_index(drop=True)
    found.checks = [(symbol, start, found.last_day) for symbol, start in ok]
    found.frames = [frame] if len(frame) else []
    found.into(result)
    return True


def _add_actions(provider, chunk: Chunk, result: ChunkResult, retries, timeout, gate,
                 earlier=None):
    """Fetch the corporate actions of every ok symbol of a chunk fetched in one call, each
    for the window its bars were fetched for (so an update asks only since its last bars),
    or from the date ``earlier`` names for it. What a failure does is
    :func:`_failed_actions`': a symbol failed as a whole has its bars left out."""
    found = _Actions(provider, chunk, retries, timeout, gate, earlier)
    if _actions_in_one_call(provider, chunk, result, found, timeout):
        return
    failed = set()
    for at, done in enumerate(result.outcomes):
        if done["status"] != Status.OK:
            continue
        symbol = done["symbol"]
        try:
            found.fetch(symbol, done["window_start"] or chunk.start)
        except Exception as exc:
            result.outcomes[at], kept = _failed_actions(done, exc)
            if not kept:
                failed.add(symbol)
    if failed and len(result.bars):
        result.bars = result.bars[~result.bars["symbol"].isin(failed)].reset_index(drop=True)
    found.into(result)


def _fetch_each(provider, chunk, freq, adjust, retries, timeout, gate, ticker,
                actions: bool = False, earlier=None) -> ChunkResult:
    """:func:`fetch_chunk` symbol by symbol, each with its own outcome; with ``actions``,
    each ok symbol's corporate actions right after its bars (a job stopped mid-chunk keeps
    every symbol finished so far)."""
    found = _Actions(provider, chunk, retries, timeout, gate, earlier) if actions else None
    frames, tagged, outcomes = [], [], []
    overlaps = _overlaps(chunk.overlap)
    for i, symbol in enumerate(chunk.symbols):
        ticker.tick(i)
        if gate is not None and gate.stopped:
            break  # the job is being stopped: the rest stay pending in the ledger
        since, full = chunk.window(i)
        attempts = 0
        revised = False
        try:
            bars, rejected, attempts = _symbol_bars(
                provider, symbol, since, chunk, freq, adjust, retries, timeout, gate
            )
            stored = overlaps.get(symbol)
            appended = False
            if stored is not None and full < since:
                if _differs(stored, bars):
                    revised, since = True, full
                    bars, rejected, more = _symbol_bars(
                        provider, symbol, since, chunk, freq, adjust, retries, timeout, gate
                    )
                    attempts += more
                else:
                    # The stored bars still hold: keep only what comes after them.
                    appended = True
                    last = stored[0].max().astype(bars["ts"].dtype)
                    bars = bars[bars["ts"].to_numpy() > last].reset_index(drop=True)
        except DataError as exc:
            err = DataError(f"{symbol}: {exc}", symbol=symbol, column=getattr(exc, "column", None))
            outcomes.append(outcome(symbol, Status.FAILED, attempts=attempts or 1, error=err))
            continue
        except Exception as exc:
            attempts += getattr(exc, "kdist_attempts", 1)
            status = Status.SKIPPED if isinstance(exc, ProviderTrippedError) else Status.FAILED
            outcomes.append(outcome(symbol, status, attempts=attempts, error=exc))
            continue
        ts = bars["ts"].to_numpy()
        done = _fetched(symbol, ts[0] if len(ts) else None, ts[-1] if len(ts) else None,
                        rows=len(bars), attempts=attempts, rejected=rejected, since=since,
                        revised=revised, appended=appended)
        if found is not None and done["status"] == Status.OK:
            try:
                found.fetch(symbol, since)
            except Exception as exc:
                done, kept = _failed_actions(done, exc)
                if not kept:
                    outcomes.append(done)
                    continue
        outcomes.append(done)
        if len(bars):
            frames.append(bars)
            tagged.append(symbol)
    result = ChunkResult(chunk.index, _tag(frames, tagged), outcomes)
    return result if found is None else found.into(result)


def _fetched(symbol, first, last, *, rows, attempts, rejected, since, revised, appended):
    """The outcome of a symbol whose fetch answered: ok, empty, or failed when every row was
    rejected. An appended symbol without new bars is ok: it is up to date already."""
    if rows == 0 and not appended:
        if rejected:
            reasons = ", ".join(f"{n} {r}" for r, n in rejected.items())
            err = DataError(f"{symbol}: every row was rejected ({reasons})", symbol=symbol)
            return outcome(symbol, Status.FAILED, attempts=attempts, error=err, rejected=rejected)
        return outcome(symbol, Status.EMPTY, attempts=attempts, start=since)
    return outcome(symbol, Status.OK, rows=rows,
                    first=None if first is None else pd.Timestamp(first),
                    last=None if last is None else pd.Timestamp(last), attempts=attempts,
                    rejected=rejected, start=since, revised=revised, appended=appended)


def _batches(provider: Provider, limits: Limits | None) -> bool:
    """Whether to ask ``provider`` for a chunk in one call: it has a ``fetch_many``, and no
    concurrency or rate limit is in force (those count calls symbol by symbol)."""
    return type(provider).fetch_many is not Provider.fetch_many and (
        limits is None or not (limits.max_concurrency or limits.max_rate)
    )


def _fetch_batch(provider, chunk, freq, adjust, retries, timeout, gate) -> ChunkResult | None:
    """The chunk in one ``fetch_many`` call and one validation pass, with the same outcomes
    as symbol by symbol; None to go symbol by symbol instead (the provider declined, or
    anything went wrong: then each symbol gets its own calls, retries and outcome)."""
    if gate is not None and gate.stopped:
        return None
    starts = [chunk.window(i)[0] for i in range(len(chunk))]
    last_day = chunk.end - pd.Timedelta(days=1)
    try:
        if gate is not None:
            gate.admit()
        raw = _bounded(
            provider, provider.fetch_many,
            (list(chunk.symbols), starts, last_day, freq.value, adjust.value),
            timeout and timeout * len(chunk), f"{len(chunk)} symbols",
        )
        if raw is None:
            return None
        bars, codes, rejected = normalise_many(
            raw, chunk.symbols, freq=freq, adjust=adjust, start=starts, end=chunk.end,
            tz=provider.tz,
        )
    except Exception as exc:
        if gate is not None and isinstance(exc, _TRANSIENT):
            gate.failed()
        log.debug("fetch_many of chunk %d failed (%r): fetching symbol by symbol", chunk.index,
                  exc)
        return None
    if gate is not None:
        gate.succeeded()
    revised, last = _revised(chunk, bars, codes)
    appended = ~np.isnat(last)  # checked against stored bars, and they still hold
    if appended.any():
        # Keep only what comes after the stored bars: nothing stored is rewritten.
        old = appended[codes] & (bars["ts"].to_numpy() <= last[codes])
        if old.any():
            bars, codes = bars[~old].reset_index(drop=True), codes[~old]
    attempts = np.ones(len(chunk), np.int64)
    if revised:
        # History changed at the source: fetch those symbols again from their full start.
        again = np.isin(codes, list(revised))
        frames, parts = [bars[~again]], [codes[~again]]
        for i in sorted(revised):
            more, rejected[i], n = _symbol_bars(
                provider, chunk.symbols[i], chunk.window(i)[1], chunk, freq, adjust, retries,
                timeout, gate,
            )
            frames.append(more)
            parts.append(np.full(len(more), i))
            attempts[i] += n
        bars = pd.concat(frames, ignore_index=True)
        codes = np.concatenate(parts)
        order = np.lexsort((bars["ts"].to_numpy(), codes))
        bars, codes = bars.take(order).reset_index(drop=True), codes[order]
    counts = np.bincount(codes, minlength=len(chunk))
    ends = np.cumsum(counts)
    ts = bars["ts"].to_numpy()
    # Each symbol's first and last bar boxed as Timestamps together, not two at a time
    # (the loop below runs once per symbol: 5,000 in an update).
    # (The positions of symbols without bars are clipped into range, and never read.)
    firsts = pd.DatetimeIndex(ts[np.clip(ends - counts, 0, len(ts) - 1)] if len(ts) else []
                              ).tolist()
    lasts = pd.DatetimeIndex(ts[np.clip(ends - 1, 0, len(ts) - 1)] if len(ts) else []).tolist()
    outcomes = []
    for i, (symbol, n, tries, added) in enumerate(zip(chunk.symbols, counts.tolist(),
                                                        attempts.tolist(), appended.tolist())):
        outcomes.append(_fetched(
            symbol, firsts[i] if n else None, lasts[i] if n else None, rows=n,
            attempts=tries, rejected=rejected[i],
            since=chunk.window(i)[1 if i in revised else 0], revised=i in revised,
            appended=added,
        ))
    bars.insert(0, "symbol", _symbol_column(chunk.symbols, codes))
    return ChunkResult(chunk.index, bars, outcomes)


def _symbol_column(symbols, codes: np.ndarray):
    """The string column ``symbols[codes]``, taken in Arrow: faster than pandas building it
    from Python strings (see docs/performance.md#one-call-per-chunk), and the same ``str``
    dtype."""
    names = pa.array(list(symbols), pa.large_string()).take(pa.array(codes))
    return pd.array(names, dtype="str")


def _revised(chunk: Chunk, bars: pd.DataFrame, codes: np.ndarray):
    """Check the chunk's fetched bars against their stored overlap bars, as :func:`_differs`.

    Returns ``(revised, last)``: the indices of the symbols whose stored bars are gone or
    changed at the source, and per symbol the time of its last stored bar where they all
    still hold (NaT where nothing was checked, or the symbol was revised).
    """
    n = len(chunk)
    last = np.full(n, np.datetime64("NaT"), "datetime64[us]")
    if chunk.overlap is None or chunk.since is None or len(chunk.overlap) == 0:
        return set(), last
    checked = np.array([full < since for since, full in zip(chunk.since, chunk.full)])
    stored = chunk.overlap
    # Plain numpy and dicts from here: this runs once per chunk of an update, where pandas'
    # per-call costs were most of the chunk's time.
    index = {symbol: i for i, symbol in enumerate(chunk.symbols)}
    mine = np.array([index.get(s, -1) for s in stored["symbol"].tolist()], np.intp)
    keep = (mine >= 0) & checked[np.maximum(mine, 0)]
    if not keep.any():
        return set(), last
    mine = mine[keep]
    want = stored["ts"].to_numpy()[keep].astype("datetime64[us]")
    expected = np.column_stack([stored[c].to_numpy(dtype="float64") for c in _COMPARED])[keep]
    # (symbol, ts) as one sortable int64, from the times' ranks (packing raw microseconds
    # overflows past 512 symbols): fetched bars are sorted by symbol, then ts.
    got_ts = bars["ts"].to_numpy().astype("datetime64[us]")
    times = np.unique(np.concatenate([got_ts, want]))
    fetched = codes.astype(np.int64) * len(times) + np.searchsorted(times, got_ts)
    sought = mine.astype(np.int64) * len(times) + np.searchsorted(times, want)
    at = np.minimum(np.searchsorted(fetched, sought), max(len(fetched) - 1, 0))
    found = (fetched[at] == sought) if len(fetched) else np.zeros(len(sought), bool)
    got = (np.column_stack([bars[c].to_numpy(dtype="float64") for c in _COMPARED])[at]
           if len(bars) else expected * np.nan)
    close = np.abs(got - expected) <= 1e-9 + 1e-9 * np.abs(expected)
    same = found & (close | (np.isnan(got) & np.isnan(expected))).all(axis=1)
    revised = {int(c) for c in np.unique(mine[~same])}
    latest = np.full(n, np.iinfo(np.int64).min, np.int64)
    np.maximum.at(latest, mine, want.astype(np.int64))
    held = np.zeros(n, bool)
    held[mine] = True
    held[list(revised)] = False
    last[held] = latest[held].astype("datetime64[us]")
    return revised, last


def _tag(frames, symbols) -> pd.DataFrame:
    """One frame of the chunk's bars with a ``symbol`` column, built once for the chunk:
    a string column per symbol costs more than the symbol's bars."""
    if not frames:
        return concat([])
    bars = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    codes = np.repeat(np.arange(len(symbols)), [len(f) for f in frames])
    bars.insert(0, "symbol", _symbol_column(symbols, codes))
    return bars


def concat(frames) -> pd.DataFrame:
    if not frames:
        bars = empty_bars()
        bars.insert(0, "symbol", pd.Series(dtype="str"))
        return bars
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


#: glibc's allocator settings for a process that runs chunks, by the environment variable
#: that sets each as a process starts: arrays up to 32 MiB come from the heap instead of a
#: fresh mmap each, and up to 64 MiB of freed memory is kept for reuse. They replace Dask's
#: ``MALLOC_TRIM_THRESHOLD_=65536``, with which glibc maps and unmaps every array over
#: 128 KiB (see docs/performance.md#worker-memory). kdist's local cluster starts its workers
#: with them; any other worker takes them with its first chunk (:func:`tune_allocator`).
WORKER_MALLOC = {"MALLOC_TRIM_THRESHOLD_": 64 * 2**20, "MALLOC_MMAP_THRESHOLD_": 32 * 2**20}

#: The ``mallopt`` parameter of each variable (M_TRIM_THRESHOLD, M_MMAP_THRESHOLD in glibc's
#: malloc.h), and the values that are not a cluster owner's choice: Dask's nanny sets the
#: first on every worker it starts, and kdist's local cluster both.
_MALLOPT = {"MALLOC_TRIM_THRESHOLD_": -1, "MALLOC_MMAP_THRESHOLD_": -3}
_NOT_CHOSEN = {"MALLOC_TRIM_THRESHOLD_": {"65536", str(WORKER_MALLOC["MALLOC_TRIM_THRESHOLD_"])},
               "MALLOC_MMAP_THRESHOLD_": {str(WORKER_MALLOC["MALLOC_MMAP_THRESHOLD_"])}}

_tuned: dict[str, int] | None = None
_tune_lock = threading.Lock()


def tune_allocator() -> dict[str, int]:
    """Give this process's glibc allocator the settings of :data:`WORKER_MALLOC`, once.

    Every chunk task that runs outside the process that built it calls this first, so a
    worker started by hand (``dask worker``, with Dask's setting) runs chunks as fast as
    kdist's local workers without its owner setting anything. An allocator its owner tuned
    (either variable set to a value of their own, or a ``glibc.malloc`` tunable in
    ``GLIBC_TUNABLES``) is left as it is, and so is any C library but glibc's.

    Returns
    -------
    dict
        The settings applied, by variable name (empty when none were): the same on every
        call in a process.
    """
    global _tuned
    if _tuned is None:
        with _tune_lock:
            if _tuned is None:
                _tuned = _mallopt(_malloc_plan(os.environ))
    return dict(_tuned)


def _malloc_plan(environ) -> dict[str, int]:
    """The settings :func:`tune_allocator` applies in a process with this environment: all
    of :data:`WORKER_MALLOC`, or none where the allocator's owner chose settings of their own."""
    chosen = [f"{name}={environ[name]}" for name, usual in _NOT_CHOSEN.items()
              if name in environ and environ[name].strip() not in usual]
    if "glibc.malloc." in environ.get("GLIBC_TUNABLES", ""):
        chosen.append(f"GLIBC_TUNABLES={environ['GLIBC_TUNABLES']}")
    if chosen:
        log.debug("allocator settings of this worker's own kept: %s", ", ".join(chosen))
        return {}
    return dict(WORKER_MALLOC)


def _mallopt(plan: dict[str, int]) -> dict[str, int]:
    """Apply ``plan`` through glibc's ``mallopt``; what it took (nothing without glibc).

    ``mallopt`` sets for the running process what the variables set as a process starts:
    new allocations follow it at once, in every thread's arena."""
    if not plan or not sys.platform.startswith("linux") or not _glibc():
        return {}
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError) as exc:
        log.debug("no mallopt in this process (%r): allocator left as it is", exc)
        return {}
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    applied = {}
    for name, value in plan.items():
        if mallopt(_MALLOPT[name], value) == 1:
            applied[name] = value
        else:
            log.debug("glibc refused %s=%d", name, value)
    return applied


def _glibc() -> bool:
    try:
        return bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (ValueError, OSError):  # no such name here: not glibc
        return False


#: This process, as the chunk tasks it builds name it: random per interpreter, then the
#: process id (a forked child keeps the first part, not the second).
_TOKEN = os.urandom(8).hex()


def _origin() -> str:
    return f"{_TOKEN}-{os.getpid()}"


def _run_chunk(origin: str, *args) -> ChunkResult:
    """:func:`fetch_chunk` as a task runs it, with kdist's allocator settings in any process
    but ``origin``, the one that built the task. That one is the user's (in process, or a
    Dask cluster of threads in it): a notebook or an application whose allocator stays
    theirs; it never had Dask's setting, and glibc's own costs little on the small jobs kdist
    runs there (see docs/performance.md#worker-memory)."""
    if origin != _origin():
        tune_allocator()
    return fetch_chunk(*args)


def task(provider, chunk, freq, adjust, retries, timeout, job_id, part=None, limits=None,
          solo=False, moved=0, ticks=None, actions=False):
    # pure=False and a key naming job and chunk: identical arguments in a later job (a re-run
    # in the same notebook) must fetch again, never reuse a cached result.
    suffix = (("" if part is None else f"-{part:03d}") + ("-solo" if solo else "")
              + (f"-moved{moved}" if moved else ""))
    # The arguments travel inside a partial: dask.delayed would otherwise walk the chunk
    # (a dataclass holding a frame of overlap bars) looking for collections, each time.
    # _run_chunk, not fetch_chunk: a worker process first takes kdist's allocator settings.
    call = functools.partial(_run_chunk, _origin(), provider, chunk, freq, adjust, retries,
                             timeout, limits, ticks, actions)
    # Its place in the plan as the task's priority: Dask otherwise ran a submission's tasks
    # in no useful order, and the small chunks planned to end the job could run first.
    with dask.annotate(priority=-chunk.index):
        return dask.delayed(call, pure=False)(
            dask_key_name=f"kdist-{job_id}-chunk-{chunk.index:05d}{suffix}",
        )



def failed_result(chunk: Chunk, exc: BaseException) -> ChunkResult:
    return ChunkResult(
        chunk.index, concat([]), [outcome(s, Status.FAILED, error=exc) for s in chunk.symbols]
    )
