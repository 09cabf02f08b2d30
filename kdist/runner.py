"""The import itself: ``fetch_chunk`` on the workers, the ingest loop on the client.

Worker side, :func:`fetch_chunk` calls the provider once per symbol (retrying transient
errors with backoff), normalises and validates each frame, and returns the chunk's bars with
one outcome per symbol. A failing symbol never fails its chunk. Workers never open the
database.

Client side, :func:`ingest` submits one ``dask.delayed`` task per chunk with a key naming
the job and the chunk (so a re-run never reuses cached results), keeps a bounded number in
flight, and as they finish coalesces their frames into large batches that it writes to
DuckDB when a batch is big enough or a few seconds old. Client memory is bounded by the
batch size and the tasks in flight, never by the job size.
"""

from __future__ import annotations

import datetime as _dt
import html
import sys
import threading
import time
import uuid
import warnings
from dataclasses import asdict, dataclass, field

import dask
import pandas as pd
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from .cluster import resolve_cluster
from .errors import (
    DataError,
    JobFailedError,
    KdistError,
    NoWorkersError,
    TransientProviderError,
    UsageError,
)
from .plan import Chunk, plan_chunks
from .progress import Callback
from .providers import Provider, get_provider
from .schema import Adjust, Freq, normalise, parse_symbols, window_bounds
from .store import DEFAULT_DB, Store

__all__ = ["ChunkResult", "Report", "chunk_tasks", "fetch", "fetch_chunk", "ingest"]

#: Rows that make a batch worth writing, and the age at which a smaller batch is written anyway.
BATCH_ROWS = 250_000
FLUSH_SECONDS = 5.0
#: Retry policy for transient provider errors, inside the task.
RETRIES = 3
RETRY_SECONDS = 60.0
#: ``kdist.fetch`` warns when its in-memory result grows past this many rows.
FETCH_WARN_ROWS = 5_000_000

_TRANSIENT = (TransientProviderError, ConnectionError, TimeoutError)


@dataclass
class ChunkResult:
    """What a worker sends back for one chunk: its bars and one outcome per symbol."""

    index: int
    bars: pd.DataFrame
    outcomes: list[dict]


def _outcome(symbol, status, *, rows=0, first=None, last=None, attempts=0, error=None, rejected=None):
    rejected = rejected or {}
    return {
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
    }


def _fetch_one(provider: Provider, symbol: str, chunk: Chunk, freq: Freq, adjust: Adjust, retries):
    """Fetch one symbol with retries; return ``(frame, attempts)`` or raise the last error."""
    last_day = chunk.end - pd.Timedelta(days=1)
    attempts = 0
    for attempt in Retrying(
        stop=stop_after_attempt(retries) | stop_after_delay(RETRY_SECONDS),
        wait=wait_exponential_jitter(multiplier=0.2, max=5.0, jitter=0.2),
        retry=retry_if_exception_type(_TRANSIENT),
        reraise=True,
    ):
        with attempt:
            attempts = attempt.retry_state.attempt_number
            try:
                frame = provider.fetch(symbol, chunk.start, last_day, freq.value, adjust.value)
            except Exception as exc:
                exc.kdist_attempts = attempts
                raise
    return frame, attempts


def fetch_chunk(
    provider: Provider, chunk: Chunk, freq: Freq, adjust: Adjust, retries: int = RETRIES
) -> ChunkResult:
    """Fetch, normalise and validate every symbol of ``chunk`` (runs on a worker).

    Returns a :class:`ChunkResult` whose ``bars`` has a ``symbol`` column followed by the
    canonical bar columns. Errors are outcomes, not exceptions.
    """
    frames, outcomes = [], []
    for symbol in chunk.symbols:
        try:
            raw, attempts = _fetch_one(provider, symbol, chunk, freq, adjust, retries)
        except Exception as exc:
            attempts = getattr(exc, "kdist_attempts", 1)
            outcomes.append(_outcome(symbol, "failed", attempts=attempts, error=exc))
            continue
        try:
            bars, rejected = normalise(
                raw, freq=freq, adjust=adjust, start=chunk.start, end=chunk.end, tz=provider.tz
            )
        except DataError as exc:
            err = DataError(f"{symbol}: {exc}", symbol=symbol, column=getattr(exc, "column", None))
            outcomes.append(_outcome(symbol, "failed", attempts=attempts, error=err))
            continue
        if len(bars) == 0:
            if rejected:
                reasons = ", ".join(f"{n} {r}" for r, n in rejected.items())
                err = DataError(f"{symbol}: every row was rejected ({reasons})", symbol=symbol)
                outcomes.append(
                    _outcome(symbol, "failed", attempts=attempts, error=err, rejected=rejected)
                )
            else:
                outcomes.append(_outcome(symbol, "empty", attempts=attempts))
            continue
        bars.insert(0, "symbol", symbol)
        frames.append(bars)
        outcomes.append(
            _outcome(
                symbol,
                "ok",
                rows=len(bars),
                first=bars["ts"].iat[0],
                last=bars["ts"].iat[-1],
                attempts=attempts,
                rejected=rejected,
            )
        )
    if frames:
        bars = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    else:
        from .schema import empty_bars

        bars = empty_bars()
        bars.insert(0, "symbol", pd.Series(dtype="str"))
    return ChunkResult(chunk.index, bars, outcomes)


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
    valid, _ = parse_symbols(symbols)
    provider = get_provider(provider)
    job_id = job_id or _new_job_id()
    chunks = plan_chunks(
        valid, lo, hi, freq=freq, n_threads=n_threads, n_workers=n_workers,
        chunk_size=chunk_size, split=split,
    )
    return [_task(provider, c, freq, adjust, retries, job_id) for c in chunks]


def _task(provider, chunk: Chunk, freq: Freq, adjust: Adjust, retries: int, job_id: str):
    # pure=False and a key naming job and chunk: identical arguments in a later job (a re-run
    # in the same notebook) must fetch again, never reuse a cached result.
    return dask.delayed(fetch_chunk, pure=False)(
        provider, chunk, freq, adjust, retries,
        dask_key_name=f"kdist-{job_id}-chunk-{chunk.index:05d}",
    )


def _new_job_id() -> str:
    return f"{_dt.datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


@dataclass
class Report:
    """The outcome of one import: counts, failures, timings. ``str()`` is a readable summary."""

    job_id: str
    status: str
    mode: str
    provider: str
    freq: str
    adjust: str
    start: str
    end: str
    db: str
    n_symbols: int = 0
    n_chunks: int = 0
    symbols_ok: int = 0
    symbols_empty: int = 0
    symbols_failed: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    empty: list[str] = field(default_factory=list)
    rows_written: int = 0
    rejected_rows: int = 0
    elapsed_s: float = 0.0
    dashboard_link: str | None = None
    fallback_reason: str | None = None

    @property
    def rows_per_s(self) -> float:
        return self.rows_written / self.elapsed_s if self.elapsed_s else 0.0

    def to_dict(self) -> dict:
        """A JSON-ready dict of every field."""
        return asdict(self)

    def _rows(self):
        rows = [
            ("job", self.job_id),
            ("status", self.status),
            ("mode", self.mode + (f" (fallback: {self.fallback_reason})" if self.fallback_reason else "")),
            ("provider", f"{self.provider}  {self.freq} {self.adjust}  {self.start} .. {self.end}"),
            ("symbols", f"{self.n_symbols} in {self.n_chunks} chunks: {self.symbols_ok} ok, "
                        f"{self.symbols_empty} empty, {self.symbols_failed} failed"),
            ("rows written", f"{self.rows_written:,}" + (f" ({self.rejected_rows:,} rejected)" if self.rejected_rows else "")),
            ("time", f"{self.elapsed_s:.1f} s ({self.rows_per_s:,.0f} rows/s)"),
            ("database", self.db),
        ]
        if self.dashboard_link:
            rows.append(("dashboard", self.dashboard_link))
        return rows

    def _failure_lines(self, limit=10):
        items = list(self.failures.items())
        lines = [f"{s}: {r}" for s, r in items[:limit]]
        if len(items) > limit:
            lines.append(f"... and {len(items) - limit} more (kdist jobs {self.job_id})")
        return lines

    def __str__(self):
        width = max(len(k) for k, _ in self._rows())
        text = [f"{k:<{width}}  {v}" for k, v in self._rows()]
        if self.failures:
            text.append("failures:")
            text += [f"  {line}" for line in self._failure_lines()]
        if self.empty:
            text.append(f"empty: {', '.join(self.empty[:10])}" + (" ..." if len(self.empty) > 10 else ""))
        return "\n".join(text)

    def table(self):
        """The summary as a ``rich`` table, for terminals."""
        from rich.table import Table

        table = Table(title="kdist import", show_header=False)
        table.add_column(style="bold")
        table.add_column()
        for key, value in self._rows():
            table.add_row(key, str(value))
        for line in self._failure_lines():
            table.add_row("[red]failed", line)
        return table

    def _repr_html_(self):
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th><td style='text-align:left'>"
            f"{html.escape(str(v))}</td></tr>"
            for k, v in self._rows()
        )
        fails = "".join(f"<li>{html.escape(line)}</li>" for line in self._failure_lines())
        fails = f"<p><b>failures</b></p><ul>{fails}</ul>" if fails else ""
        return f"<div><b>kdist import</b><table>{rows}</table>{fails}</div>"


class _Batch:
    """Frames and outcomes waiting to be written together."""

    def __init__(self):
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
        ok = [o["symbol"] for o in result.outcomes if o["status"] == "ok"]
        if ok:
            self.windows.append(pd.DataFrame({"symbol": ok, "start": chunk.start, "stop": chunk.end}))

    def due(self, batch_rows, flush_seconds) -> bool:
        if self.since is None:
            return False
        return self.rows >= batch_rows or time.monotonic() - self.since >= flush_seconds

    def write(self, store: Store, **job) -> int:
        if self.since is None:
            return 0
        bars = pd.concat(self.frames, ignore_index=True) if self.frames else None
        if bars is None:
            from .schema import empty_bars

            bars = empty_bars()
            bars.insert(0, "symbol", pd.Series(dtype="str"))
        windows = (
            pd.concat(self.windows, ignore_index=True)
            if self.windows
            else pd.DataFrame({"symbol": pd.Series(dtype="str"), "start": pd.Series(dtype="datetime64[us]"), "stop": pd.Series(dtype="datetime64[us]")})
        )
        rows = store.write_batch(bars, self.outcomes, windows=windows, **job)
        self.__init__()
        return rows


def ingest(
    symbols=None,
    *,
    start,
    end=None,
    freq="1d",
    adjust="none",
    provider="synthetic",
    db=DEFAULT_DB,
    client=None,
    chunk_size: int | None = None,
    callback: Callback | None = None,
    split: str = "chunks",
    n_workers: int | None = None,
    threads_per_worker: int | None = None,
    fallback: bool = True,
    skip_invalid: bool = False,
    retries: int = RETRIES,
    batch_rows: int = BATCH_ROWS,
    flush_seconds: float = FLUSH_SECONDS,
    max_in_flight: int | None = None,
    worker_timeout: float = 30.0,
    cancel: threading.Event | None = None,
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
        A registered name or a provider object (``kdist.get_provider("synthetic", latency=0.05)``).
    db
        Path of the DuckDB file, created if missing.
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
    retries
        Attempts per symbol for transient errors.
    batch_rows, flush_seconds
        A batch is written when it holds this many rows or is this old.
    max_in_flight
        Chunks submitted but not yet collected (default: twice the cluster's threads, >= 4).
    worker_timeout
        Seconds to wait for a scheduler's first worker, and without any worker mid-job
        before the job stops: never a hang.
    cancel
        A ``threading.Event``: when set, in-flight work is cancelled, finished batches are
        committed and the job is marked cancelled.

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
    JobFailedError
        Not one symbol could be imported; ``.report`` has the details.
    """
    t0 = time.perf_counter()
    freq, adjust = Freq.parse(freq), Adjust.parse(adjust)
    lo, hi = window_bounds(start, end)
    provider = get_provider(provider)
    provider.check(freq=freq, adjust=adjust, start=lo, end=hi)
    if symbols is None:
        symbols = provider.list_symbols()
    valid, invalid = parse_symbols(symbols, skip_invalid=skip_invalid)
    if not valid:
        raise UsageError("No valid symbols to import: name some, or use --all")
    callback = callback or Callback()

    with resolve_cluster(
        client, n_workers=n_workers, threads_per_worker=threads_per_worker, fallback=fallback,
        worker_timeout=worker_timeout,
    ) as cluster, Store(db) as store:
        job_id = _new_job_id()
        n_threads = cluster.n_threads
        chunks = plan_chunks(
            valid, lo, hi, freq=freq, n_threads=n_threads, n_workers=cluster.n_workers,
            chunk_size=chunk_size, split=split,
        )
        tasks = [(_task(provider, c, freq, adjust, retries, job_id), c) for c in chunks]
        report = Report(
            job_id=job_id, status="running", mode=cluster.mode, provider=provider.name,
            freq=freq.value, adjust=adjust.value, start=str(lo.date()),
            end=str((hi - pd.Timedelta(days=1)).date()), db=str(db),
            n_symbols=len(valid) + len(invalid), n_chunks=len(tasks),
            dashboard_link=cluster.dashboard_link, fallback_reason=cluster.fallback_reason,
        )
        store.start_job(
            {
                "job_id": job_id, "mode": cluster.mode, "provider": provider.name,
                "provider_options": provider.given_options(),
                "provider_version": provider.version(), "freq": freq.value,
                "adjust": adjust.value, "start": lo.date(), "end": report.end,
                "note": cluster.fallback_reason,
            },
            valid + invalid,
        )
        callback.on_start(
            {"job_id": job_id, "mode": cluster.mode, "n_symbols": report.n_symbols,
             "n_chunks": len(tasks), "dashboard_link": cluster.dashboard_link, "db": str(db)}
        )
        callback.set_size(report.n_symbols)
        batch = _Batch()
        write_args = {"job_id": job_id, "freq": freq, "adjust": adjust, "source": provider.name}
        if invalid:
            bad = [_outcome(s, "failed", error=UsageError("invalid symbol")) for s in invalid]
            batch.outcomes.extend(bad)
            batch.since = time.monotonic()
            _tally(report, bad)
            callback.on_symbols(bad)

        limit = max_in_flight or max(4, 2 * n_threads)
        queue = list(reversed(tasks))
        pending: dict = {}
        status = "failed"
        try:
            idle_since = time.monotonic()
            while queue or pending:
                while queue and len(pending) < limit:
                    task, chunk = queue.pop()
                    pending[cluster.submit(task)] = chunk
                done, _ = cluster.wait(set(pending), timeout=min(1.0, flush_seconds))
                for future in done:
                    chunk = pending.pop(future)
                    result = _result(future, chunk)
                    batch.add(result, chunk)
                    _tally(report, result.outcomes)
                    callback.on_symbols(result.outcomes)
                if done:
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since > worker_timeout and cluster.live_workers() == 0:
                    raise NoWorkersError(
                        f"No workers for {worker_timeout:g}s; {len(pending) + len(queue)} chunks "
                        f"not fetched; what finished is stored",
                        job_id=job_id,
                    )
                if batch.due(batch_rows, flush_seconds):
                    rows = batch.write(store, **write_args)
                    report.rows_written += rows
                    callback.on_write(rows, report.rows_written)
                if cancel is not None and cancel.is_set():
                    break
            status = "cancelled" if (queue or pending) else _final_status(report)
        except KeyboardInterrupt:
            status = "cancelled"
            raise
        finally:
            cluster.cancel(set(pending))
            try:
                # Whatever finished is worth keeping, however the job ends.
                rows = batch.write(store, **write_args)
                report.rows_written += rows
                callback.on_write(rows, report.rows_written)
            except KdistError:
                status = "failed"
                if sys.exc_info()[0] is None:
                    raise
            finally:
                report.status = status
                report.elapsed_s = round(time.perf_counter() - t0, 3)
                store.finish_job(job_id, status=status, elapsed_s=report.elapsed_s)

    callback.on_finish(report)
    if report.status == "failed" and report.symbols_failed == report.n_symbols:
        raise JobFailedError(
            f"No symbol could be imported ({report.symbols_failed} failed); "
            f"see kdist jobs {job_id}",
            report=report,
        )
    return report


def _result(future, chunk: Chunk) -> ChunkResult:
    """A finished future's result, or a result that marks every symbol of its chunk failed."""
    try:
        return future.result()
    except Exception as exc:
        name = type(exc).__name__
        if name == "KilledWorker":
            exc = RuntimeError(f"worker died while fetching ({exc})")
        return ChunkResult(chunk.index, pd.DataFrame(), [_outcome(s, "failed", error=exc) for s in chunk.symbols])


def _tally(report: Report, outcomes):
    for o in outcomes:
        if o["status"] == "ok":
            report.symbols_ok += 1
        elif o["status"] == "empty":
            report.symbols_empty += 1
            report.empty.append(o["symbol"])
        else:
            report.symbols_failed += 1
            report.failures[o["symbol"]] = f"{o['error_class']}: {o['error']}"
        report.rejected_rows += o.get("rejected_rows", 0)


def _final_status(report: Report) -> str:
    if report.symbols_failed == 0:
        return "done"
    if report.symbols_failed == report.n_symbols:
        return "failed"
    return "partial"


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
) -> pd.DataFrame:
    """Fetch bars into one in-memory DataFrame without storing them, for a quick look.

    Runs in this process by default (``client="sync"``); pass a client or ``"local"`` to
    use a cluster. Failed symbols are named in a warning. Use :func:`ingest` for anything
    large: this holds every row in memory and warns past a few million rows.
    """
    freq, adjust = Freq.parse(freq), Adjust.parse(adjust)
    lo, hi = window_bounds(start, end)
    provider = get_provider(provider)
    provider.check(freq=freq, adjust=adjust, start=lo, end=hi)
    with resolve_cluster(client) as cluster:
        valid, _ = parse_symbols(symbols)
        chunks = plan_chunks(valid, lo, hi, freq=freq, n_threads=cluster.n_threads, chunk_size=chunk_size)
        job_id = _new_job_id()
        pending = {cluster.submit(_task(provider, c, freq, adjust, RETRIES, job_id)): c for c in chunks}
        frames, failures, rows, warned = {}, {}, 0, False
        while pending:
            done, _ = cluster.wait(set(pending), timeout=1.0)
            for future in done:
                chunk = pending.pop(future)
                result = _result(future, chunk)
                frames[chunk.index] = result.bars
                rows += len(result.bars)
                failures.update({o["symbol"]: o["error"] for o in result.outcomes if o["status"] == "failed"})
                if rows > FETCH_WARN_ROWS and not warned:
                    warned = True
                    warnings.warn(
                        f"kdist.fetch holds {rows:,} rows in memory; use kdist.ingest to store "
                        "large imports in DuckDB", ResourceWarning, stacklevel=2,
                    )
    if failures:
        shown = "; ".join(f"{s}: {e}" for s, e in list(failures.items())[:5])
        warnings.warn(f"{len(failures)} symbol(s) failed: {shown}", UserWarning, stacklevel=2)
    ordered = [frames[i] for i in sorted(frames) if len(frames[i])]
    if not ordered:
        return fetch_chunk(provider, Chunk(0, (), lo, hi), freq, adjust).bars
    return pd.concat(ordered, ignore_index=True)
