"""The import itself: ``fetch_chunk`` on the workers, the ingest loop on the client.

Worker side, :func:`fetch_chunk` calls the provider once per symbol, with a timeout on every
call and transient errors retried with exponential backoff and jitter, then normalises and
validates each frame and returns the chunk's bars with one outcome per symbol. A failing
symbol never fails its chunk. Workers never open the database.

Client side, :func:`ingest` submits one ``dask.delayed`` task per chunk with a key naming
the job and the chunk (so a re-run never reuses cached results), keeps a bounded number in
flight, and as they finish coalesces their frames into large batches that it writes to
DuckDB when a batch is big enough or a few seconds old. Client memory is bounded by the
batch size and the tasks in flight, never by the job size. Whatever ends a job (success,
cancel, Ctrl-C, a lost cluster) the finished batches are committed and the job's ledger says
which symbols are still missing, so ``resume=`` fetches only those.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import logging
import math
import queue
import shlex
import threading
import time
import uuid
import warnings
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

from .cluster import Cluster, named_scheduler, resolve_cluster
from .errors import (
    ClusterError,
    DataError,
    JobFailedError,
    KdistError,
    NoWorkersError,
    ProviderTrippedError,
    SchedulerUnreachableError,
    StoreError,
    TransientProviderError,
    UsageError,
)
from .limits import Limits
from .limits import gate as get_gate
from .limits import prepare as prepare_limits
from .limits import stop as stop_gate
from .limits import stop_on_worker
from .plan import Chunk, estimate_rows, plan_chunks
from .progress import Callback
from .providers import Provider, get_provider
from .providers.registry import provider_class
from .report import Report
from .schema import (
    Adjust,
    Freq,
    empty_bars,
    normalise,
    normalise_many,
    parse_symbols,
    window_bounds,
)
from .store import DEFAULT_DB, Store

__all__ = ["ChunkResult", "chunk_tasks", "fetch", "fetch_chunk", "ingest", "update"]

#: Rows of one DuckDB row group. A batch commits whole row groups and carries the rest of
#: its rows into the next one: DuckDB then never rewrites a partly filled row group, which
#: cost a third more time and up to 10 bytes per bar.
ROW_GROUP = 122_880
#: Rows that make a batch worth writing, and the age at which a smaller batch is written anyway.
BATCH_ROWS = 2 * ROW_GROUP
FLUSH_SECONDS = 5.0
#: Attempts per symbol for transient errors, and the most time spent retrying one symbol.
RETRIES = 3
RETRY_SECONDS = 120.0
#: Seconds one provider call may take before it counts as a (transient) timeout.
CALL_TIMEOUT = 60.0
#: Bars an incremental fetch re-reads before the last stored one, to detect revised history.
OVERLAP = 3
#: ``kdist.fetch`` warns when its in-memory result grows past this many rows.
FETCH_WARN_ROWS = 5_000_000
#: A job of at most this many bars from a provider that does not wait on a network runs in
#: the client's process when no scheduler is named: starting a local cluster's worker
#: processes (about 1.5 s on 2 cores) would cost more than the job itself.
SMALL_JOB_BARS = 1_000_000
#: Seconds the client may be disconnected from its scheduler before the job stops.
RECONNECT_GRACE = 10.0
#: Seconds a stopping job waits for chunks running in its own process to reach their next
#: symbol: a signal must end a job within a few seconds, even with a provider call hung.
STOP_GRACE = 2.0

_TRANSIENT = (TransientProviderError, ConnectionError, TimeoutError)

log = logging.getLogger(__name__)


@dataclass
class ChunkResult:
    """What a worker sends back for one chunk: its bars and one outcome per symbol."""

    index: int
    bars: pd.DataFrame
    outcomes: list[dict]


def _outcome(symbol, status, *, rows=0, first=None, last=None, attempts=0, error=None,
             rejected=None, start=None, revised=False, appended=False):
    rejected = rejected or {}
    return {
        # Only bars after the last stored one were kept (the stored overlap matched): no
        # stored window to replace. Not a ledger column.
        "appended": appended,
        "symbol": symbol,
        "status": status,
        "rows": rows,
        "first_ts": first,
        "last_ts": last,
        "attempts": attempts,
        "error_class": type(error).__name__ if error is not None else None,
        "error": str(error) if error is not None else None,
        "rejected_rows": sum(rejected.values()),
        "rejected": rejected,
        "window_start": start,
        "revised": revised,
    }


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
                fn, args, box, done = self.jobs.get(timeout=5.0)
            except queue.Empty:
                if not self.owner.is_alive():
                    return  # the task thread is gone (an in-process job ended): so are we
                continue
            try:
                box["value"] = fn(*args)
            except BaseException as exc:  # handed to the waiting thread, never lost
                box["error"] = exc
            finally:
                done.set()

    def call(self, fn, args, timeout: float) -> dict | None:
        """Run ``fn(*args)``; the result box, or None if ``timeout`` passed first."""
        box: dict = {}
        done = threading.Event()
        self.jobs.put((fn, args, box, done))
        return box if done.wait(timeout) else None


_callers = threading.local()


def _call(provider: Provider, timeout: float | None, symbol, *args):
    """``provider.fetch(symbol, *args)``, given up on after ``timeout`` seconds."""
    return _bounded(provider, provider.fetch, (symbol, *args), timeout, symbol)


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
    Dask's profiler (``sys._current_frames`` -> GC -> a lock, Python 3.11): 4 of 7 imports
    of 2,000 symbols with the profiler at 1 ms, 0 of 15 with this
    (``python -m benchmarks.experiments.profiler_hang``).
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
    attempts = 0
    for attempt in _retrying(retries):
        with attempt:
            attempts = attempt.retry_state.attempt_number
            try:
                if gate is None:
                    frame = _call(provider, timeout, symbol, since, last_day, freq.value,
                                  adjust.value)
                else:
                    gate.admit()
                    with gate.slot():
                        frame = _call(provider, timeout, symbol, since, last_day, freq.value,
                                      adjust.value)
                    gate.succeeded()
            except Exception as exc:
                exc.kdist_attempts = attempts
                if gate is not None and isinstance(exc, _TRANSIENT):
                    gate.failed()
                raise
    return frame, attempts


_COMPARED = ["open", "high", "low", "close", "volume"]


def _overlaps(frame: pd.DataFrame | None) -> dict:
    """Per symbol, the stored overlap bars as numpy ``(ts, values)``: split once per chunk,
    so the per-symbol check below is plain numpy (pandas' per-call cost was 0.56 ms a symbol,
    more than fetching it)."""
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
) -> ChunkResult:
    """Fetch, normalise and validate every symbol of ``chunk`` (runs on a worker).

    Returns a :class:`ChunkResult` whose ``bars`` has a ``symbol`` column followed by the
    canonical bar columns. Errors are outcomes, not exceptions. For an incremental chunk, a
    symbol whose re-fetched overlap differs from the stored bars is fetched again from its
    ``full`` start and reported as revised.
    """
    gate = get_gate(limits)
    if _batches(provider, limits) and (batch := _fetch_batch(
        provider, chunk, freq, adjust, retries, timeout, gate
    )) is not None:
        return batch
    frames, tagged, outcomes = [], [], []
    overlaps = _overlaps(chunk.overlap)
    for i, symbol in enumerate(chunk.symbols):
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
            outcomes.append(_outcome(symbol, "failed", attempts=attempts or 1, error=err))
            continue
        except Exception as exc:
            attempts += getattr(exc, "kdist_attempts", 1)
            status = "skipped" if isinstance(exc, ProviderTrippedError) else "failed"
            outcomes.append(_outcome(symbol, status, attempts=attempts, error=exc))
            continue
        ts = bars["ts"].to_numpy()
        outcomes.append(_fetched(symbol, ts[0] if len(ts) else None,
                                 ts[-1] if len(ts) else None, rows=len(bars),
                                 attempts=attempts, rejected=rejected, since=since,
                                 revised=revised, appended=appended))
        if len(bars):
            frames.append(bars)
            tagged.append(symbol)
    return ChunkResult(chunk.index, _tag(frames, tagged), outcomes)


def _fetched(symbol, first, last, *, rows, attempts, rejected, since, revised, appended):
    """The outcome of a symbol whose fetch answered: ok, empty, or failed when every row was
    rejected. An appended symbol without new bars is ok: it is up to date already."""
    if rows == 0 and not appended:
        if rejected:
            reasons = ", ".join(f"{n} {r}" for r, n in rejected.items())
            err = DataError(f"{symbol}: every row was rejected ({reasons})", symbol=symbol)
            return _outcome(symbol, "failed", attempts=attempts, error=err, rejected=rejected)
        return _outcome(symbol, "empty", attempts=attempts, start=since)
    return _outcome(symbol, "ok", rows=rows,
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
    outcomes = []
    for i, symbol in enumerate(chunk.symbols):
        n, end = int(counts[i]), int(ends[i])
        outcomes.append(_fetched(
            symbol, ts[end - n] if n else None, ts[end - 1] if n else None, rows=n,
            attempts=int(attempts[i]), rejected=rejected[i],
            since=chunk.window(i)[1 if i in revised else 0], revised=i in revised,
            appended=bool(appended[i]),
        ))
    bars.insert(0, "symbol", _symbol_column(chunk.symbols, codes))
    return ChunkResult(chunk.index, bars, outcomes)


def _symbol_column(symbols, codes: np.ndarray):
    """The string column ``symbols[codes]``, taken in Arrow: ten times faster than pandas
    building it from Python strings, and the same ``str`` dtype."""
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
        return _concat([])
    bars = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    codes = np.repeat(np.arange(len(symbols)), [len(f) for f in frames])
    bars.insert(0, "symbol", _symbol_column(symbols, codes))
    return bars


def _concat(frames) -> pd.DataFrame:
    if not frames:
        bars = empty_bars()
        bars.insert(0, "symbol", pd.Series(dtype="str"))
        return bars
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def chunk_tasks(
    symbols,
    *,
    start,
    end=None,
    freq="1d",
    adjust="none",
    provider="synthetic",
    chunk_size=None,
    n_threads: int = 1,
    job_id: str | None = None,
    retries: int = RETRIES,
    timeout: float | None = CALL_TIMEOUT,
    split: str = "chunks",
    n_workers: int = 1,
):
    """Return one ``dask.delayed`` fetch per chunk of symbols, for composing your own graphs.

    Each task computes to a :class:`ChunkResult`. Keys name the job and the chunk
    (``kdist-<job_id>-chunk-00003``), so two jobs never share cached results.

    Examples
    --------
    >>> import dask
    >>> tasks = chunk_tasks(["600000.SH", "000001.SZ"], start="2024-01-01", end="2024-03-31")
    >>> results = dask.compute(*tasks, scheduler="sync")
    >>> sum(len(r.bars) for r in results)
    120
    """
    freq, adjust = Freq.parse(freq), Adjust.parse(adjust)
    lo, hi = window_bounds(start, end)
    provider = get_provider(provider)
    valid, _ = parse_symbols(symbols, provider=provider)
    job_id = job_id or _new_job_id()
    chunks = plan_chunks(
        valid, lo, hi, freq=freq, n_threads=n_threads, n_workers=n_workers,
        chunk_size=chunk_size, split=split,
    )
    return [_task(provider, c, freq, adjust, retries, timeout, job_id) for c in chunks]


def _task(provider, chunk, freq, adjust, retries, timeout, job_id, part=None, limits=None,
          solo=False, moved=0):
    # pure=False and a key naming job and chunk: identical arguments in a later job (a re-run
    # in the same notebook) must fetch again, never reuse a cached result.
    suffix = (("" if part is None else f"-{part:03d}") + ("-solo" if solo else "")
              + (f"-moved{moved}" if moved else ""))
    # The arguments travel inside a partial: dask.delayed would otherwise walk the chunk
    # (a dataclass holding a frame of overlap bars) looking for collections, each time.
    call = functools.partial(fetch_chunk, provider, chunk, freq, adjust, retries, timeout, limits)
    # Its place in the plan as the task's priority: Dask otherwise ran a submission's tasks
    # in no useful order, and the small chunks planned to end the job could run first.
    with dask.annotate(priority=-chunk.index):
        return dask.delayed(call, pure=False)(
            dask_key_name=f"kdist-{job_id}-chunk-{chunk.index:05d}{suffix}",
        )


def _new_job_id() -> str:
    return f"{_dt.datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


class _Batch:
    """Frames and outcomes waiting to be written together.

    ``stored`` names the job's symbols that had bars in the store when the job started: only
    their windows need deleting before the insert. Each symbol is written once per job, so a
    symbol new to the store never needs it, and skipping those deletes keeps a first import
    from scanning an ever larger table batch after batch.
    """

    def __init__(self, stored: set[str] | None = None):
        self.stored = stored
        #: Bars of other sources this job's writes replaced: {source: bars}.
        self.replaced: dict[str, int] = {}
        self._reset()

    def _reset(self):
        self.frames, self.outcomes, self.windows = [], [], []
        self.rows = 0
        self.since = None

    def add(self, result: ChunkResult, chunk: Chunk):
        if self.since is None:
            self.since = time.monotonic()
        if len(result.bars):
            self.frames.append(result.bars)
            self.rows += len(result.bars)
        self.outcomes.extend(result.outcomes)
        # Only symbols that came back with bars replace stored bars, and only within the
        # span the source returned (first to last bar): a failure or an empty answer never
        # erases history, nor does a source that covers less than what is stored.
        ok = [(o["symbol"], o["first_ts"], o["last_ts"]) for o in result.outcomes
              if o["status"] == "ok" and not o.get("appended") and o["rows"]
              and (self.stored is None or o["symbol"] in self.stored)]
        if ok:
            symbols, firsts, lasts = zip(*ok)
            self.windows.append(pd.DataFrame({
                "symbol": list(symbols), "start": list(firsts),
                # Exclusive: one second past the last bar, as ts holds whole seconds.
                "stop": pd.to_datetime(list(lasts)) + pd.Timedelta(seconds=1),
            }))

    def add_outcomes(self, outcomes):
        if self.since is None:
            self.since = time.monotonic()
        self.outcomes.extend(outcomes)

    def due(self, batch_rows, flush_seconds) -> bool:
        if self.since is None:
            return False
        return self.rows >= batch_rows or time.monotonic() - self.since >= flush_seconds

    def write(self, store: Store, *, final: bool = True, **job) -> int:
        """Write the batch in one transaction; unless ``final``, only whole row groups.

        The rows past the last whole row group wait for the next write, with the outcomes
        of their symbols, so a symbol is recorded ok only in the transaction that stores the
        last of its bars. Its stored window is replaced now, before the first of them. A job
        that dies in between leaves such a symbol pending with some bars: a resume replaces
        its window, as for any stored symbol.
        """
        if self.since is None:
            return 0
        windows = (
            pd.concat(self.windows, ignore_index=True).astype(
                {"start": "datetime64[us]", "stop": "datetime64[us]"})
            if self.windows
            else pd.DataFrame({"symbol": pd.Series(dtype="str"),
                               "start": pd.Series(dtype="datetime64[us]"),
                               "stop": pd.Series(dtype="datetime64[us]")})
        )
        bars = _concat(self.frames)
        cut = len(bars) if final else len(bars) // ROW_GROUP * ROW_GROUP
        if cut == 0:
            cut = len(bars)  # less than a row group: written as it is (a time-based flush)
        carry = bars.iloc[cut:]
        waiting = set(carry["symbol"].unique()) if len(carry) else set()
        now = [o for o in self.outcomes if o["symbol"] not in waiting]
        later = [o for o in self.outcomes if o["symbol"] in waiting]
        rows = store.write_batch(bars.iloc[:cut], now, windows=windows, **job)
        for source, n in getattr(store, "replaced", {}).items():
            self.replaced[source] = self.replaced.get(source, 0) + n
        self._reset()
        if len(carry):
            self.since = time.monotonic()
            self.frames = [carry.reset_index(drop=True)]
            self.rows = len(carry)
            self.outcomes = later
        return rows


@dataclass
class _Job:
    """A validated job, new or resumed, before it runs."""

    job_id: str
    symbols: list[str]
    invalid: list[str]
    start: pd.Timestamp
    end: pd.Timestamp  # exclusive
    freq: Freq
    adjust: Adjust
    provider: Provider
    incremental: bool
    overlap: int
    resumed: bool = False


def _plan_job(symbols, start, end, freq, adjust, provider, db, skip_invalid, incremental,
              overlap, resume, store=None) -> _Job:
    """Validate everything the caller gave, or read a job to resume, before any work."""
    if resume is not None:
        opened = Store(db, read_only=True) if store is None else contextlib.nullcontext(store)
        with opened as store:
            job = store.job(resume)
            todo = store.unfinished_symbols(resume)
        if provider is None:
            provider = get_provider(job["provider"], **job["provider_options"])
        else:
            provider = get_provider(provider)
        lo, hi = window_bounds(job["start"], job["end"])
        params = job["params"]
        # Symbols recorded as invalid (skip_invalid) fail again, never reach the provider.
        valid, invalid = parse_symbols(todo, skip_invalid=True, provider=provider)
        return _Job(resume, valid, invalid, lo, hi, Freq.parse(job["freq"]),
                    Adjust.parse(job["adjust"]), provider, bool(params.get("incremental")),
                    int(params.get("overlap", overlap)), resumed=True)
    freq, adjust = Freq.parse(freq), Adjust.parse(adjust)
    lo, hi = window_bounds(start, end)
    provider = get_provider(provider if provider is not None else "synthetic")
    if overlap < 1:
        raise UsageError(f"overlap must be at least 1 bar, not {overlap}")
    if symbols is None:
        symbols = provider.list_symbols()
    valid, invalid = parse_symbols(symbols, skip_invalid=skip_invalid, provider=provider)
    if not valid:
        raise UsageError("No valid symbols to import: name some, or use --all")
    return _Job(_new_job_id(), valid, invalid, lo, hi, freq, adjust, provider, incremental,
                overlap)


def ingest(
    symbols=None,
    *,
    start=None,
    end=None,
    freq="1d",
    adjust="none",
    provider=None,
    db=DEFAULT_DB,
    client=None,
    chunk_size: int | None = None,
    callback: Callback | None = None,
    split: str = "chunks",
    n_workers: int | None = None,
    threads_per_worker: int | None = None,
    fallback: bool = True,
    skip_invalid: bool = False,
    incremental: bool = False,
    overlap: int = OVERLAP,
    resume: str | None = None,
    retries: int = RETRIES,
    timeout: float | None = CALL_TIMEOUT,
    batch_rows: int = BATCH_ROWS,
    flush_seconds: float = FLUSH_SECONDS,
    max_in_flight: int | None = None,
    worker_timeout: float = 30.0,
    cancel: threading.Event | None = None,
    max_concurrency: int | None = None,
    max_rate: float | None = None,
    trip_after: int | None = 5,
    cooldown: float = 60.0,
    security=None,
    tls_ca=None,
    tls_cert=None,
    tls_key=None,
) -> Report:
    """Import bars for many symbols into a DuckDB file, in parallel on a Dask cluster.

    Parameters
    ----------
    symbols
        Symbols in any accepted form (``000001.SZ``, ``sh600000``, ``AAPL``), a list or a
        comma/space separated string; None imports every symbol the provider lists.
    start, end
        Inclusive date window (str, date or Timestamp); ``end`` defaults to today.
    freq, adjust
        ``1d 1w 1M 1m 5m 15m 30m 60m`` and ``none qfq hfq``.
    provider
        A registered name or a provider object (``kdist.get_provider("synthetic", latency=0.05)``);
        default ``"synthetic"``, or for ``resume`` the job's own.
    db
        Path of the DuckDB file, created if missing; or an open, writable
        :class:`~kdist.store.Store`, which is used as it is and left open.
    client
        A ``distributed.Client``, a scheduler address, ``"local"``, ``"sync"`` or None
        (see :func:`kdist.cluster.resolve_cluster`).
    chunk_size, split
        Symbols per task (default: several chunks per worker thread), or ``split="per-worker"``.
    callback
        A :class:`~kdist.progress.Callback` for progress.
    n_workers, threads_per_worker, fallback
        Size of a local cluster; whether an unusable scheduler falls back to local execution.
    skip_invalid
        Record invalid symbols as failed and import the rest, instead of refusing the job.
    incremental, overlap
        Fetch each stored symbol from its last ``overlap`` stored bars on, instead of the
        whole window; when those bars differ at the source (history revised, e.g. re-adjusted
        prices) fetch the symbol in full and report it as revised. New symbols get the window.
    resume
        A job id: finish that job from its recorded parameters, fetching only its symbols
        that are not yet ok or empty. ``symbols``, dates, freq and adjust are not used.
    retries, timeout
        Attempts per symbol for transient errors, and seconds one provider call may take.
    batch_rows, flush_seconds
        A batch is written when it holds this many rows or is this old.
    max_in_flight
        Chunks submitted but not yet collected (default: twice the cluster's threads, >= 4).
    worker_timeout
        Seconds to wait for a scheduler's first worker, and without any worker mid-job
        before the job stops: never a hang.
    cancel
        A ``threading.Event``: when set, in-flight work is cancelled, finished batches are
        committed and the job is marked cancelled (resumable).
    max_concurrency, max_rate
        Cluster-wide caps on provider calls in flight and calls started per second
        (default: the provider's own conservative values; see :mod:`kdist.limits`).
    trip_after, cooldown
        Circuit breaker: after this many transient failures in a row, pause every worker's
        calls for ``cooldown`` seconds; if failures go on, stop calling the provider and end
        the job with the remaining symbols skipped (resumable). None disables it.
    security, tls_ca, tls_cert, tls_key
        Certificates for a ``tls://`` scheduler: a directory from ``kdist cluster certs``
        or a ``distributed.security.Security``, or the three files (CA, client certificate,
        client key); see :func:`kdist.cluster.resolve_cluster`.

    Returns
    -------
    Report
        ``job_id, status, mode, n_symbols, symbols_ok, symbols_empty, symbols_failed,
        failures`` (symbol -> reason), ``rows_written, elapsed_s`` and more.

    Raises
    ------
    UsageError
        Invalid symbols, dates, freq, adjust, provider or options; nothing is fetched.
    StoreError
        The database cannot be opened (``DatabaseLockedError`` names the holder).
    ClusterError
        The cluster was lost mid-job; finished batches are stored, resume with the job id.
    JobFailedError
        Not one symbol could be imported; ``.report`` has the details.
    """
    t0 = time.perf_counter()
    _check_numbers(
        chunk_size=(chunk_size, 1, False), n_workers=(n_workers, 1, False),
        threads_per_worker=(threads_per_worker, 1, False), overlap=(overlap, 1, False),
        retries=(retries, 1, False), timeout=(timeout, 0, True),
        batch_rows=(batch_rows, 1, False), flush_seconds=(flush_seconds, 0, True),
        max_in_flight=(max_in_flight, 1, False), worker_timeout=(worker_timeout, 0, True),
        max_concurrency=(max_concurrency, 1, False), max_rate=(max_rate, None, True),
        trip_after=(trip_after, 1, False), cooldown=(cooldown, 0, True),
    )
    given = db if isinstance(db, Store) else None
    if given is not None:
        if given.read_only:
            raise UsageError(f"ingest writes to {given.path}: pass a Store opened for writing "
                             "(read_only=False), or its path")
        db = given.path
    job = _plan_job(symbols, start, end, freq, adjust, provider, db, skip_invalid,
                    incremental, overlap, resume, store=given)
    job.provider.check(freq=job.freq, adjust=job.adjust, start=job.start, end=job.end)
    callback = callback or Callback()
    if job.resumed and not job.symbols:
        # Nothing left to fetch: what remains (if anything) are invalid symbols.
        report = _report(job, "done", db, mode="none")
        _tally(report, [_outcome(s, "failed", error=UsageError("invalid symbol"))
                        for s in job.invalid])
        report.status = "failed" if job.invalid else "done"
        callback.on_finish(report)
        if job.invalid:
            raise JobFailedError(
                f"Nothing left to import in job {job.job_id}: its remaining symbols are "
                f"invalid ({', '.join(job.invalid[:5])})",
                report=report,
            )
        return report

    with contextlib.ExitStack() as stack:

        def open_cluster(client, reason=None):
            cluster = stack.enter_context(resolve_cluster(
                client, n_workers=n_workers, threads_per_worker=threads_per_worker,
                fallback=fallback, worker_timeout=worker_timeout, security=security,
                tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key,
            ))
            cluster.reason = reason
            return cluster

        # A named scheduler is resolved before the database is touched, so a wrong address
        # leaves no trace. Otherwise the job's size decides where it runs.
        auto = client is None and named_scheduler() is None and not job.provider.remote
        if not auto:
            cluster = open_cluster(client)
        elif not job.incremental:
            # The size needs nothing stored: decide (and start a cluster) before the file
            # is created, so a cluster that fails to start leaves no empty database behind.
            cluster = _auto_cluster(open_cluster, _estimated_bars(job, None))
        store = given if given is not None else stack.enter_context(Store(db))
        windows = overlap_bars = None
        if job.incremental:
            windows, overlap_bars = store.incremental_windows(
                job.symbols, job.freq, job.adjust, job.start, job.end, job.overlap
            )
            if auto:
                cluster = _auto_cluster(open_cluster, _estimated_bars(job, windows))
        report = _report(job, "running", db, mode=cluster.mode, cluster=cluster)
        chunks = plan_chunks(
            job.symbols, job.start, job.end, freq=job.freq, n_threads=cluster.n_threads,
            n_workers=cluster.n_workers, chunk_size=chunk_size, split=split,
            windows=windows, overlap=overlap_bars, in_process=cluster.mode == "sync",
        )
        report.n_chunks = len(chunks)
        _record_start(store, job, cluster)
        callback.on_start(
            {"job_id": job.job_id, "mode": cluster.mode, "n_symbols": report.n_symbols,
             "n_chunks": len(chunks), "dashboard_link": cluster.dashboard_link, "db": str(db)}
        )
        callback.set_size(report.n_symbols)
        limits = Limits(
            # A fresh key per run: a resumed job must not inherit an open breaker.
            key=f"kdist-{job.job_id}-{job.provider.name}-{uuid.uuid4().hex[:6]}",
            provider=job.provider.name,
            max_concurrency=max_concurrency or job.provider.max_concurrency,
            max_rate=max_rate or job.provider.max_rate, trip_after=trip_after,
            cooldown=cooldown,
        )
        if cluster.client is not None:
            prepare_limits(limits, cluster.client)
        try:
            _run(job, chunks, cluster, store, report, callback, t0, retries=retries,
                 timeout=timeout, batch_rows=batch_rows, flush_seconds=flush_seconds,
                 max_in_flight=max_in_flight, worker_timeout=worker_timeout, cancel=cancel,
                 limits=limits)
        finally:
            callback.on_finish(report)  # also when the job raised: progress bars must close

    if report.status == "failed" and report.symbols_failed == report.n_symbols:
        raise JobFailedError(
            f"No symbol could be imported ({report.symbols_failed} failed); "
            f"see kdist jobs {job.job_id} --db {db}",
            report=report,
        )
    return report


def _auto_cluster(open_cluster, bars: int) -> Cluster:
    """In this process for a small job, on a local cluster otherwise."""
    if bars <= SMALL_JOB_BARS:
        return open_cluster("sync", f"a small job of about {bars:,} bars runs in this "
                            "process; --scheduler local starts a cluster")
    return open_cluster(None)


def _check_numbers(**given):
    """Refuse a number no job can run with, before anything is recorded.

    Each value comes as ``(value, least, real)``: None means "the default", an integer
    setting must be a whole number of at least ``least``, a real one a finite number of at
    least ``least`` (a zero timeout means "no limit"), or above zero when ``least`` is None.
    """
    for name, (value, least, real) in given.items():
        if value is None:
            continue
        whole = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
        number = whole or (real and isinstance(value, (float, np.floating)))
        kind = "a number" if real else "a whole number"
        if least is None:
            if not number or not math.isfinite(value) or value <= 0:
                raise UsageError(f"{name} must be {kind} above 0, not {value!r}")
        elif not number or not math.isfinite(value) or value < least:
            raise UsageError(f"{name} must be {kind} of at least {least:g}, not {value!r}")


def _estimated_bars(job: _Job, windows: pd.DataFrame | None) -> int:
    """Roughly how many bars the job fetches (each symbol from its own start, if given)."""
    if windows is None:
        return len(job.symbols) * estimate_rows(job.freq, job.start, job.end)
    starts = windows["since"].value_counts()
    return int(sum(n * estimate_rows(job.freq, start, job.end) for start, n in starts.items()))


def _report(job: _Job, status: str, db, *, mode: str, cluster: Cluster | None = None) -> Report:
    return Report(
        job_id=job.job_id, status=status, mode=mode, provider=job.provider.name,
        freq=job.freq.value, adjust=job.adjust.value, start=str(job.start.date()),
        end=str((job.end - pd.Timedelta(days=1)).date()), db=str(db),
        n_symbols=len(job.symbols) + len(job.invalid),
        dashboard_link=cluster.dashboard_link if cluster else None,
        fallback_reason=cluster.fallback_reason if cluster else None,
        mode_reason=cluster.reason if cluster else None,
        resumed=job.resumed, incremental=job.incremental,
    )


def _record_start(store: Store, job: _Job, cluster: Cluster):
    if job.resumed:
        store.resume_job(job.job_id, mode=cluster.mode, note=cluster.fallback_reason)
        return
    store.start_job(
        {
            "job_id": job.job_id, "mode": cluster.mode, "provider": job.provider.name,
            "provider_options": job.provider.given_options(),
            "provider_version": job.provider.version(), "freq": job.freq.value,
            "adjust": job.adjust.value, "start": job.start.date(),
            "end": (job.end - pd.Timedelta(days=1)).date(),
            "params": {"incremental": job.incremental, "overlap": job.overlap},
            "note": cluster.fallback_reason,
        },
        job.symbols + job.invalid,
    )


def _run(job, chunks, cluster, store, report, callback, t0, *, retries, timeout, batch_rows,
         flush_seconds, max_in_flight, worker_timeout, cancel, limits=None):
    """Submit the chunks, collect and write their results; always leave the job recorded."""
    if job.incremental:
        # Every stored symbol of an incremental job came with its last stored bars.
        stored = {s for c in chunks if c.overlap is not None for s in c.overlap["symbol"]}
    else:
        stored = store.stored_symbols(job.symbols, job.freq, job.adjust)
    batch = _Batch(stored)
    write_args = {"job_id": job.job_id, "freq": job.freq, "adjust": job.adjust,
                  "source": job.provider.name}
    if job.invalid:
        bad = [_outcome(s, "failed", error=UsageError("invalid symbol")) for s in job.invalid]
        batch.add_outcomes(bad)
        _tally(report, bad)
        callback.on_symbols(bad)

    def flush(final: bool = True):
        rows = batch.write(store, final=final, **write_args)
        report.rows_written += rows
        report.replaced = dict(batch.replaced)
        if rows:
            callback.on_write(rows, report.rows_written)

    limit = max_in_flight or max(4, 2 * cluster.n_threads)
    # Keys name the job and this run of it: a resumed job keeps its id, and a chunk of the
    # cancelled run may still be running or held by the scheduler under the same number;
    # sharing its key would hand that stale result to the new task.
    run_id = f"{job.job_id}-{uuid.uuid4().hex[:4]}"
    queue = [(_task(job.provider, c, job.freq, job.adjust, retries, timeout, run_id,
                    limits=limits), c)
             for c in reversed(chunks)]
    pending: dict = {}
    tasks = {"done": 0, "total": len(queue)}
    split: set = set()  # chunks already retried one symbol at a time
    # One-symbol tasks that died with a worker once: Dask also blames a task that only
    # waited on the dying worker, so each gets one more try, alone on the cluster.
    solo: list = []
    tried_alone: set = set()
    patience: dict = {}  # seconds to wait for a result that was slow to fetch before

    def left() -> bool:
        """Chunks still to submit, running, or waiting for a retry alone."""
        return bool(queue or pending or solo)

    if cancel is not None:
        # The caller's signal handler sets ``cancel`` instead of raising while this loop and
        # its clean-up run: an exception raised inside a DuckDB write would interrupt it.
        cancel.kdist_watched = True
    silence = _Silence(cluster)
    status = "failed"
    raising = False  # an exception is on its way out: errors met while cleaning up must not hide it
    unstored = None  # the write failure that left finished symbols out of the file
    try:
        watch = _Watchdog(cluster, worker_timeout)
        moved: dict = {}  # chunks run again elsewhere, and how often
        while left():
            if queue and len(pending) < limit:
                # One submission for all of them: per task, a graph update each costs the
                # scheduler and the client a round trip (a 32-thread cluster took 0.3 s to
                # fill).
                ready = [queue.pop() for _ in range(min(len(queue), limit - len(pending)))]
                futures = cluster.submit_many([task for task, _ in ready])
                pending.update(zip(futures, (chunk for _, chunk in ready)))
            if solo and not queue and not pending:
                task, chunk = solo.pop()
                pending[cluster.submit(task)] = chunk
            done, _ = cluster.wait(set(pending), timeout=min(1.0, flush_seconds))
            # Between batches the file is let go when idle or when a reader waits for it.
            store.idle()
            gathered = cluster.gather_finished(done, RESULT_TIMEOUT)
            for future in done:
                chunk = pending.pop(future)
                try:
                    result = gathered.get(future) or _result(
                        future, chunk, cluster, patience.get(future, RESULT_TIMEOUT)
                    )
                except _NotYet:
                    pending[future] = chunk  # lost with a worker, or slow: wait again
                    patience[future] = 2 * patience.get(future, RESULT_TIMEOUT)
                    continue
                except _WorkerDied as died:
                    if len(chunk) > 1 and chunk not in split:
                        # Dask blames every task on a dying worker: the symbols that merely
                        # shared it get another chance, one task each, so only the symbol
                        # that kills workers ends failed.
                        parts = chunk.split()
                        split.update(parts)
                        tasks["total"] += len(parts) - 1
                        queue.extend(
                            (_task(job.provider, c, job.freq, job.adjust, retries, timeout,
                                   run_id, part=i, limits=limits), c)
                            for i, c in reversed(list(enumerate(parts)))
                        )
                        continue
                    if len(chunk) == 1 and chunk not in tried_alone:
                        tried_alone.add(chunk)
                        solo.append((_task(job.provider, chunk, job.freq, job.adjust, retries,
                                           timeout, run_id, part=len(tried_alone),
                                           limits=limits, solo=True), chunk))
                        continue
                    result = died.result
                batch.add(result, chunk)
                gathered.pop(future, None)
                _tally(report, result.outcomes)
                callback.on_symbols(result.outcomes)
                tasks["done"] += 1
                callback.on_chunks(tasks["done"], tasks["total"])
                if batch.rows >= batch_rows and left():
                    # Now, not after every finished chunk is in: the client holds about
                    # one batch, however many chunks finished together. (After the last
                    # chunk, the final write takes it all in one transaction.)
                    flush(final=False)
                tripped = [o["error"] for o in result.outcomes if o["status"] == "skipped"]
                if tripped:
                    report.note = tripped[0]
                if tripped and (queue or solo):
                    # The breaker opened: what is not submitted yet is skipped unfetched.
                    skipped = [_outcome(sym, "skipped", error=ProviderTrippedError(report.note))
                               for _, c in queue + solo for sym in c.symbols]
                    tasks["total"] -= len(queue) + len(solo)
                    callback.on_chunks(tasks["done"], tasks["total"])
                    queue.clear()
                    solo.clear()
                    batch.add_outcomes(skipped)
                    _tally(report, skipped)
                    callback.on_symbols(skipped)
            watch.check(bool(done), len(pending) + len(queue) + len(solo), job.job_id)
            for future, chunk, note, workers in silence.check(pending):
                # Dask waits out its worker TTL (minutes) before it gives up on a worker
                # that stopped answering: run the chunk elsewhere now. A chunk's bars replace
                # its window, so a late answer of the first run changes nothing.
                del pending[future]
                cluster.cancel({future})
                callback.on_note(note)
                log.warning(note)
                moved[chunk] = moved.get(chunk, 0) + 1
                task = _task(job.provider, chunk, job.freq, job.adjust, retries, timeout,
                             run_id, limits=limits, moved=moved[chunk])
                pending[cluster.submit(task, workers=workers)] = chunk
            draining = not queue and not solo and not any(f.done() for f in pending)
            if left() and (batch.due(batch_rows, flush_seconds)
                           or (draining and batch.rows >= batch_rows // 4)):
                # Also while the last chunks run and the client has nothing else to do: the
                # write at the end then holds only their bars. With nothing left to run, the
                # final write below takes the whole batch: one transaction, not a write of
                # whole row groups and another of the rest (B's job ended 0.03-0.1 s later).
                flush(final=False)
            if cancel is not None and cancel.is_set():
                break
        status = "cancelled" if left() else _final_status(report)
    except KeyboardInterrupt as exc:
        status, raising = "cancelled", True
        exc.kdist_resume = _resume_command(job, store)
        raise
    except ClusterError as exc:
        status, raising = "interrupted", True
        raise type(exc)(
            f"{exc}; what finished is stored; resume with: {_resume_command(job, store)}",
            **{**exc.__dict__, "job_id": job.job_id},
        ) from exc
    except StoreError as exc:
        # A batch could not be written (a full disk, a file that went read-only): stop, keep
        # what earlier batches stored, and say so below, once the job is recorded.
        status, unstored = "failed", exc
    except BaseException:
        raising = True
        raise
    finally:
        if limits is not None:
            stop_gate(limits.key)  # in-process chunks stop at their next symbol
            if cluster.client is not None and cluster.connected():
                # Workers keep one gate per job (semaphores, a rate thread): end them too.
                # From a thread, on the workers that answer: Client.run waits for every
                # worker it names, and a frozen one would hold the job's end for minutes.
                threading.Thread(target=_stop_on_workers, name="kdist-stop-gates",
                                 args=(cluster.client, limits.key, silence.silent),
                                 daemon=True).start()
        cluster.cancel(set(pending))
        _collect_finished(pending, cluster, batch, report, callback)
        try:
            flush()  # whatever finished is kept, however the job ends
        except KdistError as exc:
            status, unstored = "failed", unstored or exc
        if unstored is not None:
            _unstored(report, batch.outcomes, unstored)
        if not raising and unstored is None and job.resumed:
            status = _job_status(store, job.job_id, status)
        report.status = status
        report.elapsed_s = round(time.perf_counter() - t0, 3)
        try:
            store.finish_job(job.job_id, status=status, elapsed_s=report.elapsed_s)
        except KdistError as exc:
            # A dead connection must not hide the error already on its way out; the next
            # writer marks a job left "running" as interrupted.
            if not raising and unstored is None:
                unstored = exc
        if cancel is not None:
            cancel.kdist_watched = False
    if unstored is not None:
        what = (f"the bars of {_count(report.unstored, 'symbol')}" if report.unstored
                else f"the end of job {job.job_id}")
        raise StoreError(
            f"Could not store {what} in {store.path}: "
            f"{str(unstored).removeprefix(f'Cannot use database {store.path}: ')}; what earlier batches wrote "
            f"is kept; fix that, then resume with: {_resume_command(job, store)}",
            path=str(store.path), job_id=job.job_id, report=report,
        ) from unstored


def _stop_on_workers(client, key: str, silent: set):
    with contextlib.suppress(Exception):
        workers = [a for a in client.scheduler_info(n_workers=-1)["workers"] if a not in silent]
        if workers:
            client.run(stop_on_worker, key, workers=workers, wait=False)


def _collect_finished(pending, cluster, batch, report, callback):
    """Keep the results of chunks that finished while the job was being stopped.

    In-process (``sync``) chunks cannot be cancelled mid-run; they stop at their next
    symbol, so their finished symbols are waited for briefly (``STOP_GRACE`` seconds in all)
    and kept. A chunk stuck in a provider call is left behind: its symbols stay pending.
    """
    deadline = time.monotonic() + STOP_GRACE
    for future, chunk in list(pending.items()):
        try:
            if cluster.client is None:
                future.result(timeout=max(0.0, deadline - time.monotonic()))
            elif future.status != "finished":
                continue
            result = _result(future, chunk, cluster, timeout=1.0)
        except Exception:  # cancelled, lost, or slow: those symbols stay pending
            continue
        batch.add(result, chunk)
        _tally(report, result.outcomes)
        callback.on_symbols(result.outcomes)


def _resume_command(job: _Job, store: Store) -> str:
    return f"kdist ingest --resume {job.job_id} --db {shlex.quote(str(store.path))}"


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _unstored(report: Report, outcomes, error: BaseException):
    """Count the symbols of a batch that could not be written as failed, not ok or empty.

    Their ledger rows were to be written with their bars, so the ledger still has them
    pending and a resume fetches them again.
    """
    reason = f"{type(error).__name__}: not stored ({error})"
    for o in outcomes:
        symbol, status = o["symbol"], o["status"]
        if status == "failed":
            continue
        if status == "ok":
            report.symbols_ok -= 1
            if o.get("revised") and symbol in report.revised:
                report.revised.remove(symbol)
        elif status == "empty":
            report.symbols_empty -= 1
            if symbol in report.empty:
                report.empty.remove(symbol)
        elif status == "skipped":
            report.symbols_skipped -= 1
        report.symbols_failed += 1
        report.unstored += 1
        report.failures[symbol] = reason


def _job_status(store: Store, job_id: str, status: str) -> str:
    """The status of a resumed job from every one of its symbols, not only this run's."""
    if status != "done" and status != "partial" and status != "failed":
        return status
    counts = store.job_symbols(job_id)["status"].value_counts()
    failed, total = int(counts.get("failed", 0)), int(counts.sum())
    if counts.get("pending", 0) or counts.get("skipped", 0):
        return "interrupted"
    if failed == 0:
        return "done"
    return "failed" if failed == total else "partial"


class _Watchdog:
    """Stops a job that can no longer progress: no workers, or no scheduler."""

    def __init__(self, cluster: Cluster, worker_timeout: float):
        self.cluster = cluster
        self.worker_timeout = worker_timeout
        self.progress_at = time.monotonic()
        self.checked_at = 0.0
        self.lost_since = None

    def check(self, progressed: bool, remaining: int, job_id: str):
        now = time.monotonic()
        if progressed:
            self.progress_at = now
            self.lost_since = None
            return
        if self.cluster.client is None or now - self.checked_at < 2.0:
            return
        self.checked_at = now
        if not self.cluster.connected():
            self.lost_since = self.lost_since or now
            if now - self.lost_since >= RECONNECT_GRACE:
                raise SchedulerUnreachableError(
                    f"Lost the scheduler {self.cluster.address} mid-job with {remaining} "
                    "chunks not fetched",
                    address=self.cluster.address, job_id=job_id,
                )
            return
        self.lost_since = None
        if now - self.progress_at > self.worker_timeout and self.cluster.live_workers() == 0:
            raise NoWorkersError(
                f"No workers for {self.worker_timeout:g}s with {remaining} chunks not fetched",
                address=self.cluster.address, job_id=job_id,
            )


#: Seconds without a heartbeat after which a worker counts as silent (Dask's workers send
#: one every fraction of a second; a frozen process or a blocked event loop sends none).
SILENT_SECONDS = 20.0


class _Silence:
    """Finds chunks running on a worker that has stopped answering, to run them elsewhere.

    A worker frozen (SIGSTOP, a laptop's sleep, swapping) or with its event loop blocked
    keeps its tasks until Dask's worker TTL passes (300 s by default), with no word to the
    user. The scheduler's record of each worker's last heartbeat tells, every few seconds,
    which workers are silent; only chunks on those move, and only while another worker
    still answers.
    """

    def __init__(self, cluster: Cluster, after: float | None = None):
        self.cluster = cluster
        self.after = SILENT_SECONDS if after is None else after
        self.checked_at = time.monotonic()
        #: Workers found silent at the last check.
        self.silent: set = set()

    def check(self, pending: dict) -> list:
        """``(future, chunk, note, workers to use)`` for each chunk to move."""
        client = self.cluster.client
        now = time.monotonic()
        if client is None or not pending or now - self.checked_at < min(5.0, self.after / 2):
            return []
        self.checked_at = now
        try:
            seen = {address: info.get("last_seen") for address, info in
                    client.scheduler_info(n_workers=-1)["workers"].items()}
            if not seen or not all(seen.values()):
                return []
            # The scheduler's own clock: the latest heartbeat stands for its "now", so a
            # client whose clock differs from the scheduler's judges no worker wrongly.
            latest = max(seen.values())
            silent = {a: latest - t for a, t in seen.items() if latest - t > self.after}
            self.silent = set(silent)
            answering = sorted(set(seen) - set(silent))
            if not silent or not answering:
                return []
            held = {key: address for address, keys in client.processing(list(silent)).items()
                    for key in keys}
        except Exception as exc:  # a scheduler that cannot say: Dask's own TTL still applies
            log.debug("could not ask the scheduler for silent workers: %r", exc)
            return []
        moves = []
        for future, chunk in pending.items():
            address = held.get(future.key)
            if address is not None:
                note = (f"chunk {chunk.index} ({_count(len(chunk), 'symbol')}): its worker "
                        f"{address} has not answered for {silent[address]:.0f}s; running it on "
                        "another worker")
                moves.append((future, chunk, note, answering))
        return moves


class _NotYet(Exception):
    """A finished future whose result cannot be fetched now (lost with its worker)."""


class _WorkerDied(Exception):
    """The chunk's task was killed with its worker too often (Dask's KilledWorker)."""

    def __init__(self, result: ChunkResult):
        super().__init__("worker died")
        self.result = result


#: Seconds to fetch a finished chunk's result before going back to the loop; doubled for a
#: result that needed longer, so a large transfer on a slow network still gets through.
RESULT_TIMEOUT = 5.0


def _result(future, chunk: Chunk, cluster: Cluster, timeout: float = RESULT_TIMEOUT) -> ChunkResult:
    """A finished future's result, or a result that marks every symbol of its chunk failed.

    Never blocks for long: a result still held by a worker that dies is recomputed by Dask,
    and waiting for it here would keep the watchdog, cancel and flushes from running.
    Raises :class:`_NotYet` when the result is not (or no longer) to be had now.
    """
    if cluster.client is not None:
        if future.status not in ("finished", "error", "cancelled"):
            raise _NotYet()  # reported done, then lost with its worker: Dask computes it again
        failed = future.status == "error"
    else:
        failed = future.done() and not future.cancelled() and future.exception() is not None
    if failed:
        # The task itself raised: never mistake its TimeoutError for a slow transfer below.
        return _from_error(future.exception(), chunk, cluster)
    try:
        return future.result(timeout=timeout)
    except TimeoutError as exc:
        raise _NotYet() from exc  # the result is slow to arrive: try again later
    except Exception as exc:
        return _from_error(exc, chunk, cluster)


def _from_error(exc: BaseException, chunk: Chunk, cluster: Cluster) -> ChunkResult:
    if type(exc).__name__ == "KilledWorker":
        err = RuntimeError(f"worker died while fetching ({exc})")
        raise _WorkerDied(_failed(chunk, err)) from exc
    if type(exc).__name__ == "CancelledError" and not cluster.connected():
        raise SchedulerUnreachableError(
            f"Lost the scheduler {cluster.address} mid-job", address=cluster.address
        ) from exc
    return _failed(chunk, exc)


def _failed(chunk: Chunk, exc: BaseException) -> ChunkResult:
    return ChunkResult(
        chunk.index, _concat([]), [_outcome(s, "failed", error=exc) for s in chunk.symbols]
    )


def _tally(report: Report, outcomes):
    for o in outcomes:
        if o["status"] == "ok":
            report.symbols_ok += 1
            if o.get("revised"):
                report.revised.append(o["symbol"])
        elif o["status"] == "empty":
            report.symbols_empty += 1
            report.empty.append(o["symbol"])
        elif o["status"] == "skipped":
            report.symbols_skipped += 1
        else:
            report.symbols_failed += 1
            report.failures[o["symbol"]] = f"{o['error_class']}: {o['error']}"
        report.rejected_rows += o.get("rejected_rows", 0)


def _final_status(report: Report) -> str:
    if report.symbols_skipped:
        return "interrupted"  # the breaker stopped it: resumable once the vendor answers
    if report.symbols_failed == 0:
        return "done"
    if report.symbols_failed == report.n_symbols:
        return "failed"
    return "partial"


def update(
    db=DEFAULT_DB,
    *,
    provider=None,
    options: dict | None = None,
    freq="1d",
    adjust="none",
    end=None,
    client=None,
    callback: Callback | None = None,
    **kwargs,
) -> list[Report]:
    """Bring every stored symbol up to date: one incremental :func:`ingest` per source.

    Each (freq, adjust) series stored by a provider is extended from its last bars to ``end``
    (default today), with that provider's options from its most recent job, updated by
    ``options``. Pass ``provider`` (a name or an object) to update only what that provider
    stored. Suitable for a daily cron job (``kdist update``).

    Returns one :class:`~kdist.report.Report` per provider updated (empty if nothing is
    stored).
    """
    freq, adjust = Freq.parse(freq), Adjust.parse(adjust)
    # A name only filters (its options come from the ledger); an object is used as given.
    wanted = provider.name if isinstance(provider, Provider) else provider
    if wanted is not None and not isinstance(provider, Provider):
        provider_class(wanted)  # an unknown name is an error, not "nothing stored"
    # One connection for the reads here and the imports: each import finds every symbol's
    # first and last bars already read, and the file already open (an update of 5,000
    # symbols on a 12.9M-bar file: 0.59-0.74 s instead of 0.74-0.85).
    with Store(db, create=False) as store:
        stored = store.series(freq, adjust)
        if wanted is not None:
            stored = stored[stored["source"] == wanted]
        jobs = store.jobs()
        recorded = {}
        for source in stored["source"].unique():
            recent = jobs[jobs["provider"] == source]
            recorded[source] = (store.job(recent["job_id"].iat[0])["provider_options"]
                                if len(recent) else {})
        reports = []
        cancel = kwargs.get("cancel")
        for source, rows in stored.groupby("source", sort=True):
            if cancel is not None and cancel.is_set():
                break  # stopped: the sources not started yet wait for the next update
            if isinstance(provider, Provider):
                chosen = provider
            else:
                chosen = get_provider(source, **{**recorded[source], **(options or {})})
            reports.append(
                ingest(
                    rows["symbol"].tolist(), start=rows["first"].min(), end=end, freq=freq,
                    adjust=adjust, provider=chosen, db=store, client=client,
                    callback=callback, incremental=True, **kwargs,
                )
            )
    return reports


def fetch(
    symbols,
    *,
    start,
    end=None,
    freq="1d",
    adjust="none",
    provider="synthetic",
    client="sync",
    chunk_size: int | None = None,
    worker_timeout: float = 30.0,
) -> pd.DataFrame:
    """Fetch bars into one in-memory DataFrame without storing them, for a quick look.

    Runs in this process by default (``client="sync"``); pass a client or ``"local"`` to
    use a cluster (``worker_timeout``: seconds without any worker before it gives up with
    ``NoWorkersError``). Failed symbols are named in a warning. Use :func:`ingest` for anything
    large: this holds every row in memory and warns past a few million rows.
    """
    freq, adjust = Freq.parse(freq), Adjust.parse(adjust)
    lo, hi = window_bounds(start, end)
    provider = get_provider(provider)
    provider.check(freq=freq, adjust=adjust, start=lo, end=hi)
    valid, _ = parse_symbols(symbols, provider=provider)
    with resolve_cluster(client) as cluster:
        chunks = plan_chunks(valid, lo, hi, freq=freq, n_threads=cluster.n_threads,
                             chunk_size=chunk_size)
        job_id = _new_job_id()
        # As in ingest: a bounded number in flight, and a watchdog, so a cluster that lost
        # its workers or its scheduler ends the fetch with an error instead of a wait.
        queue = [(_task(provider, c, freq, adjust, RETRIES, CALL_TIMEOUT, job_id), c)
                 for c in reversed(chunks)]
        limit = max(4, 2 * cluster.n_threads)
        watch = _Watchdog(cluster, worker_timeout)
        pending: dict = {}
        frames, failures, rows, warned = {}, {}, 0, False
        rejected: dict[str, dict] = {}
        try:
            while queue or pending:
                while queue and len(pending) < limit:
                    task, chunk = queue.pop()
                    pending[cluster.submit(task)] = chunk
                done, _ = cluster.wait(set(pending), timeout=1.0)
                for future in done:
                    chunk = pending.pop(future)
                    try:
                        result = _result(future, chunk, cluster)
                    except _NotYet:
                        pending[future] = chunk
                        continue
                    except _WorkerDied as died:
                        result = died.result
                    frames[chunk.index] = result.bars
                    rows += len(result.bars)
                    failures.update({o["symbol"]: o["error"] for o in result.outcomes
                                     if o["status"] == "failed"})
                    rejected.update({o["symbol"]: o["rejected"] for o in result.outcomes
                                     if o.get("rejected") and o["status"] != "failed"})
                    if rows > FETCH_WARN_ROWS and not warned:
                        warned = True
                        warnings.warn(
                            f"kdist.fetch holds {rows:,} rows in memory; use kdist.ingest to "
                            "store large imports in DuckDB", ResourceWarning, stacklevel=2,
                        )
                watch.check(bool(done), len(pending) + len(queue), job_id)
        finally:
            cluster.cancel(set(pending))
    if failures:
        shown = "; ".join(f"{s}: {e}" for s, e in list(failures.items())[:5])
        warnings.warn(f"{len(failures)} symbol(s) failed: {shown}", UserWarning, stacklevel=2)
    if rejected:
        total = sum(sum(r.values()) for r in rejected.values())
        shown = "; ".join(
            f"{s}: " + ", ".join(f"{n:,} {reason}" for reason, n in r.items())
            for s, r in list(rejected.items())[:5]
        )
        more = f" (and {len(rejected) - 5} more symbols)" if len(rejected) > 5 else ""
        warnings.warn(f"{_count(total, 'row')} rejected in {_count(len(rejected), 'symbol')}: "
                      f"{shown}{more}", UserWarning, stacklevel=2)
    return _concat([frames[i] for i in sorted(frames) if len(frames[i])])
