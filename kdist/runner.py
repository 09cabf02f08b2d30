"""The public face of an import: :func:`ingest`, :func:`update`, :func:`fetch`, :func:`chunk_tasks`.

An import is planned here (symbols, dates and numbers checked, the store asked what it
holds, the chunks cut, the cluster chosen) and run by :class:`~kdist.loop.JobLoop` on the
client, which submits one ``dask.delayed`` task per chunk (:mod:`kdist.fetching`, the
worker side) and writes the results in batches (:mod:`kdist.batch`). Whatever ends a job
(success, cancel, Ctrl-C, a lost cluster, a failed write) the finished batches are
committed and the job's ledger says which symbols are still missing, so ``resume=``
fetches only those.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import logging
import math
import os
import threading
import uuid
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .batch import BATCH_ROWS, FLUSH_SECONDS
from .cluster import Cluster, closes_with_job, named_scheduler, resolve_cluster, shared_cluster
from .errors import JobFailedError, KdistError, UsageError
from .fetching import CALL_TIMEOUT, RETRIES, ChunkResult, fetch_chunk, outcome
from .fetching import task as chunk_task
from .ledger import VERIFY_MODE
from .limits import Limits
from .loop import FetchLoop, JobLoop
from .outcome import JobStatus, Status
from .plan import estimate_rows, plan_chunks
from .progress import Callback, display, in_notebook
from .providers import Provider, get_provider
from .providers.registry import provider_class
from .report import Clock, Report, counted, reasons
from .schema import Adjust, Freq, parse_symbols, window_bounds
from .store import DEFAULT_DB, Store

log = logging.getLogger(__name__)

__all__ = ["CALL_TIMEOUT", "COOLDOWN", "OVERLAP", "RETRIES", "TRIP_AFTER", "ChunkResult",
           "chunk_tasks", "fetch", "fetch_chunk", "ingest", "update"]

#: Bars an incremental fetch re-reads before the last stored one, to detect revised history.
OVERLAP = 3
#: Circuit breaker: transient failures in a row before every worker pauses, and the pause.
TRIP_AFTER = 5
COOLDOWN = 60.0
#: ``kdist.fetch`` warns when its in-memory result grows past this many rows.
FETCH_WARN_ROWS = 5_000_000
#: A job of at most this many bars from a provider that does not wait on a network runs in
#: the client's process when no scheduler is named: starting a local cluster's worker
#: processes would cost more than the job itself (see docs/performance.md#local-cluster).
SMALL_JOB_BARS = 1_000_000
#: Up to this many cores, a job of any size from such a provider runs in the client's process
#: too: moving bars from worker processes to the client (pickling, TLS, copies) costs more
#: than making them, and the workers and the client's DuckDB writes share the same cores. On
#: 2 cores, 2,000 symbols x 10 years took 3.0 s in process and 6.0 s on the local cluster,
#: 500 symbols' year of minute bars 15.1 s and 29.8 s (see docs/performance.md#in-process).
SMALL_MACHINE_CORES = 2


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
    return [chunk_task(provider, c, freq, adjust, retries, timeout, job_id) for c in chunks]



def _new_job_id() -> str:
    return f"{_dt.datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"



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
    #: Fetch each symbol's corporate actions with its bars.
    actions: bool = False
    #: Symbols whose actions must be asked from earlier than their bars' window: their raw
    #: bars of this source were stored without them (Store.actions_from).
    actions_from: dict = field(default_factory=dict)


def _plan_job(symbols, start, end, freq, adjust, provider, db, skip_invalid, incremental,
              overlap, resume, store=None, options=None, actions=None) -> _Job:
    """Validate everything the caller gave, or read a job to resume, before any work."""
    if resume is not None:
        opened = Store(db, read_only=True) if store is None else contextlib.nullcontext(store)
        with opened as store:
            job = store.job(resume)
            if job["mode"] == VERIFY_MODE:
                raise UsageError(
                    f"Job {resume} is a verification (kdist verify), not an import: there is "
                    "nothing to resume; run kdist verify again")
            todo = store.unfinished_symbols(resume)
        if provider is None:
            provider = get_provider(job["provider"],
                                    **{**job["provider_options"], **(options or {})})
        else:
            provider = get_provider(provider)
        lo, hi = window_bounds(job["start"], job["end"])
        params = job["params"]
        # Symbols recorded as invalid (skip_invalid) fail again, never reach the provider.
        valid, invalid = parse_symbols(todo, skip_invalid=True, provider=provider)
        return _Job(resume, valid, invalid, lo, hi, Freq.parse(job["freq"]),
                    Adjust.parse(job["adjust"]), provider, bool(params.get("incremental")),
                    int(params.get("overlap", overlap)), resumed=True,
                    actions=bool(params.get("actions")) and provider.serves_actions)
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
                overlap, actions=_wants_actions(actions, provider, adjust))


def _wants_actions(actions: bool | None, provider: Provider, adjust: Adjust) -> bool:
    """Whether a new job fetches corporate actions: by default when it fetches raw bars from
    a provider that serves them; asked for explicitly, a job that cannot is refused."""
    if actions is None:
        return adjust is Adjust.NONE and provider.serves_actions
    if actions and adjust is not Adjust.NONE:
        raise UsageError(
            f"Corporate actions are fetched with raw bars (adjust='none'), not {adjust.value!r}: "
            "import raw bars, and qfq/hfq are derived from them and the actions")
    if actions and not provider.serves_actions:
        raise UsageError(f"Provider {provider.name!r} serves no corporate actions; leave out "
                         "actions (--actions)")
    return bool(actions)


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
    progress: bool | None = None,
    split: str = "chunks",
    n_workers: int | None = None,
    threads_per_worker: int | None = None,
    fallback: bool = True,
    skip_invalid: bool = False,
    incremental: bool = False,
    overlap: int = OVERLAP,
    actions: bool | None = None,
    resume: str | None = None,
    options: dict | None = None,
    retries: int = RETRIES,
    timeout: float | None = CALL_TIMEOUT,
    batch_rows: int | None = None,
    flush_seconds: float = FLUSH_SECONDS,
    max_in_flight: int | None = None,
    worker_timeout: float = 30.0,
    cancel: threading.Event | None = None,
    max_concurrency: int | None = None,
    max_rate: float | None = None,
    trip_after: int | None = TRIP_AFTER,
    cooldown: float = COOLDOWN,
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
        A :class:`~kdist.progress.Callback` for progress events.
    progress
        Show a live progress display when no ``callback`` is given. None (the default): in
        a Jupyter notebook, a bar with the dashboard link (ipywidgets, else text);
        elsewhere nothing. False: never; True: also outside notebooks (the terminal bar).
    n_workers, threads_per_worker, fallback
        Size of a local cluster; whether an unusable scheduler falls back to local execution.
    skip_invalid
        Record invalid symbols as failed and import the rest, instead of refusing the job.
    incremental, overlap
        Fetch each stored symbol from its last ``overlap`` stored bars on, instead of the
        whole window; when those bars differ at the source (history revised, e.g. re-adjusted
        prices) fetch the symbol in full and report it as revised. New symbols get the window.
    actions
        Also fetch each symbol's corporate actions (dividends, bonus shares, splits and the
        vendor's factors) into ``kdist_actions``, from which :func:`kdist.load` derives qfq
        and hfq prices. None (the default): when the bars are raw (``adjust="none"``) and
        the provider serves them.
    resume, options
        A job id: finish that job from its recorded parameters, fetching only its symbols
        that are not yet ok or empty. ``symbols``, dates, freq and adjust are not used;
        ``options`` update the job's recorded provider options (e.g. a longer timeout, a
        fixed credential), or give ``provider`` to replace it.
    retries, timeout
        Attempts per symbol for transient errors, and seconds one provider call may take.
    batch_rows, flush_seconds
        A batch is written when it holds this many rows or is this old (default:
        ``BATCH_ROWS``, two row groups; four times that for minute bars, whose commits'
        fixed costs otherwise add up: see docs/performance.md#batches).
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
    clock = Clock()
    with clock.phase("plan"):
        job, given, db = _checked_job(
            symbols, start, end, freq, adjust, provider, db, skip_invalid, incremental,
            overlap, actions, resume, options, numbers=dict(
                chunk_size=(chunk_size, 1, False), n_workers=(n_workers, 1, False),
                threads_per_worker=(threads_per_worker, 1, False),
                overlap=(overlap, 1, False), retries=(retries, 1, False),
                timeout=(timeout, 0, True), batch_rows=(batch_rows, 1, False),
                flush_seconds=(flush_seconds, 0, True),
                max_in_flight=(max_in_flight, 1, False),
                worker_timeout=(worker_timeout, 0, True),
                max_concurrency=(max_concurrency, 1, False), max_rate=(max_rate, None, True),
                trip_after=(trip_after, 1, False), cooldown=(cooldown, 0, True),
            ))
    with clock.phase("progress"):
        callback = callback or display(progress)
    if job.resumed and not job.symbols:
        return _nothing_left(job, db, callback, clock)
    cluster_options = dict(
        n_workers=n_workers, threads_per_worker=threads_per_worker, fallback=fallback,
        worker_timeout=worker_timeout, security=security, tls_ca=tls_ca, tls_cert=tls_cert,
        tls_key=tls_key,
    )
    report = None
    try:
        with contextlib.ExitStack() as stack:
            cluster, store, windows, overlap_bars, stored = _open(
                stack, job, db, given, client, cluster_options, clock)
            if job.incremental:
                with clock.phase("maintain"):
                    # Where the bars this update appends to the series start.
                    store.mark_appends(job.freq, job.adjust)
            with clock.phase("plan"):
                if job.actions:
                    job.actions_from = store.actions_from(job.symbols, job.provider.name)
                chunks = plan_chunks(
                    job.symbols, job.start, job.end, freq=job.freq,
                    n_threads=cluster.n_threads, n_workers=cluster.n_workers,
                    chunk_size=chunk_size, split=split, windows=windows, overlap=overlap_bars,
                    in_process=cluster.mode == "sync",
                )
            with clock.phase("report"):
                report = _report(job, "running", db, mode=cluster.mode, cluster=cluster)
                report.n_chunks = len(chunks)
            with clock.phase("ledger"):
                _record_start(store, job, cluster)
            with clock.phase("progress"):
                callback.on_start(
                    {"job_id": job.job_id, "mode": cluster.mode, "n_symbols": report.n_symbols,
                     "n_chunks": len(chunks), "dashboard_link": cluster.dashboard_link,
                     "db": str(db)}
                )
                callback.set_size(report.n_symbols)
            with clock.phase("cluster"):
                limits = _limits(job, cluster, max_concurrency=max_concurrency,
                                 max_rate=max_rate, trip_after=trip_after, cooldown=cooldown)
            try:
                JobLoop(job, chunks, cluster, store, report, callback, clock, stored=stored,
                        retries=retries, timeout=timeout,
                        batch_rows=batch_rows or _batch_rows(job.freq),
                        flush_seconds=flush_seconds, max_in_flight=max_in_flight,
                        worker_timeout=worker_timeout, cancel=cancel, limits=limits).run()
                if job.incremental and report.rows_written and report.status in (
                        JobStatus.DONE, JobStatus.PARTIAL) and not (
                        cancel is not None and cancel.is_set()):
                    _maintain(store, job, report, clock)
            finally:
                with clock.phase("progress"):
                    callback.on_finish(report)  # also when the job raised: bars must close
    finally:
        if report is not None:
            _stamp(report, clock)  # after the store and the cluster closed: their time too

    if report.status == JobStatus.FAILED and report.symbols_failed == report.n_symbols:
        raise JobFailedError(
            f"No symbol could be imported ({report.symbols_failed} failed); "
            f"see kdist jobs {job.job_id} --db {db}",
            report=report,
        )
    return report


def _checked_job(symbols, start, end, freq, adjust, provider, db, skip_invalid, incremental,
                 overlap, actions, resume, options, numbers: dict) -> tuple:
    """The job :func:`ingest` was asked for, every argument checked before anything runs:
    ``(job, the caller's open Store or None, the database's path)``; ``numbers`` are
    :func:`_check_numbers`'s."""
    _check_numbers(**numbers)
    given = db if isinstance(db, Store) else None
    if given is not None:
        if given.read_only:
            raise UsageError(f"ingest writes to {given.path}: pass a Store opened for writing "
                             "(read_only=False), or its path")
        db = given.path
    if options and resume is None:
        raise UsageError("options= updates a resumed job's provider options; for a new job "
                         "pass get_provider(name, **options) as provider")
    job = _plan_job(symbols, start, end, freq, adjust, provider, db, skip_invalid,
                    incremental, overlap, resume, store=given, options=options, actions=actions)
    served = _served_from(job)
    if job.incremental and served is not None and job.start < served:
        # An update fetches each stored symbol from its last bars, not from its first: bars
        # the vendor serves no more (Yahoo's minute bars after 30 days) cannot be fetched
        # again, so the job asks from the first day the vendor still serves.
        job.start = served
    job.provider.check(freq=job.freq, adjust=job.adjust, start=job.start, end=job.end)
    return job, given, db


def _maintain(store: Store, job: _Job, report: Report, clock: Clock) -> None:
    """After an update's writes: sort the bars updates appended to the series into place
    once they fill a row group, so reads of one symbol keep skipping them
    (:mod:`kdist.layout`). The job is already recorded and done: a sort that fails or is
    interrupted leaves the table as it was, and the next update sorts."""
    with clock.phase("maintain"):
        try:
            done = store.maintain(job.freq, job.adjust)
        except KdistError as exc:
            log.warning("could not sort the recent bars of %s (the next update tries "
                        "again): %s", store.path, exc)
            report.maintained = f"sort of the recent bars failed ({exc}); the next update sorts"
            return
        except KeyboardInterrupt:
            # The job is recorded as done; only the optional sort was stopped (rolled back).
            report.maintained = "sort of the recent bars interrupted; the next update sorts"
            return
    if done is not None:
        report.maintained = str(done)


def _stamp(report: Report, clock: Clock) -> None:
    """Give the report the job's elapsed time, up to now, and its phases (rounded to the
    millisecond, ``other`` taking the rounding, so they still add up)."""
    clock.stop()
    report.elapsed_s = round(clock.elapsed(), 3)
    named = {k: round(v, 3) for k, v in clock.timings().items() if k != "other"}
    report.timings = {**named, "other": round(max(0.0, report.elapsed_s - sum(named.values())), 3)}


def _nothing_left(job: _Job, db, callback: Callback, clock: Clock) -> Report:
    """A resumed job with nothing left to fetch: what remains, if anything, is invalid."""
    with clock.phase("report"):
        report = _report(job, "done", db, mode="none")
        report.count([outcome(s, Status.FAILED, error=UsageError("invalid symbol"))
                      for s in job.invalid])
        report.status = str(JobStatus.FAILED if job.invalid else JobStatus.DONE)
    with clock.phase("progress"):
        callback.on_finish(report)
    _stamp(report, clock)
    if job.invalid:
        raise JobFailedError(
            f"Nothing left to import in job {job.job_id}: its remaining symbols are "
            f"invalid ({', '.join(job.invalid[:5])})",
            report=report,
        )
    return report


def _open(stack: contextlib.ExitStack, job: _Job, db, given: Store | None, client,
          cluster_options: dict, clock: Clock):
    """The job's cluster and store, and what the store holds of the job:
    ``(cluster, store, windows, overlap_bars, stored)``, each closed by ``stack``.

    The store is asked once: for an incremental job, each stored symbol's windows and the
    bars they must match; otherwise which symbols have bars at all (``stored``: only their
    spans need deleting before a write).

    A named scheduler is resolved before the database is touched, so a wrong address leaves
    no trace. Otherwise the job's size decides where it runs: in this process when small.
    """
    open_cluster = _cluster_opener(stack, cluster_options, clock)
    auto = client is None and named_scheduler() is None and not job.provider.remote
    cluster = None
    if not auto:
        cluster = open_cluster(client)
    elif not job.incremental:
        # The size needs nothing stored: decide (and start a cluster) before the file is
        # created, so a cluster that fails to start leaves no empty database behind.
        cluster = _auto_cluster(open_cluster, _estimated_bars(job, None), cluster_options)
    if given is not None:
        store = given
    else:
        with clock.phase("write"):
            store = stack.enter_context(Store(db))
        # Runs just before the store closes (the stack unwinds in reverse): its close, a
        # checkpoint of what the job wrote, is the store's time.
        stack.callback(clock.switch, "write")
    with clock.phase("plan"):
        if not job.incremental:
            return cluster, store, None, None, store.stored_symbols(job.symbols, job.freq,
                                                                    job.adjust)
        windows, overlap_bars = store.incremental_windows(
            job.symbols, job.freq, job.adjust, job.start, job.end, job.overlap
        )
        served = _served_from(job)
        if served is not None:
            # Neither the overlap nor a full re-fetch can reach before what the vendor serves.
            windows["since"] = windows["since"].clip(lower=served)
            windows["full"] = windows["full"].clip(lower=served)
        estimated = _estimated_bars(job, windows) if auto else 0
    if auto:
        cluster = _auto_cluster(open_cluster, estimated, cluster_options)
    # Every stored symbol of an incremental job comes with its last stored bars.
    # unique() first: a set of 15,000 Arrow strings iterated in Python took 9 ms, not 0.6.
    return cluster, store, windows, overlap_bars, set(overlap_bars["symbol"].unique().tolist())


def _served_from(job) -> pd.Timestamp | None:
    """The first day the job's vendor still serves bars of its freq (a rolling or fixed
    horizon the provider declares), or None."""
    horizon = job.provider.horizon(job.freq)
    return None if horizon is None else horizon.first_served()


def _cluster_opener(stack: contextlib.ExitStack, cluster_options: dict,
                    clock: Clock | None = None):
    """``open_cluster(client, reason=None)``: the job's :class:`Cluster`, closed by ``stack``
    (in a notebook, the local cluster its calls share); its start and stop are the
    ``cluster`` phase of ``clock``, if given."""
    clock = clock if clock is not None else Clock()

    def open_cluster(client, reason=None) -> Cluster:
        with clock.phase("cluster"):
            return _opened(client, reason)

    def _opened(client, reason) -> Cluster:
        if client is None and named_scheduler() is None and in_notebook() \
                and _plain(cluster_options):
            # Calls in one notebook share a local cluster, as the panels do: no start for
            # each call, and its dashboard link stays alive between them.
            try:
                return shared_cluster(cluster_options["n_workers"],
                                      cluster_options["threads_per_worker"],
                                      security=cluster_options["security"])
            except Exception:
                if not cluster_options["fallback"]:
                    raise
                # What follows warns and runs in this process if no local cluster starts.
        cluster = stack.enter_context(resolve_cluster(client, **cluster_options))
        # Runs just before the cluster closes (the stack unwinds in reverse).
        stack.callback(clock.switch, "cluster")
        cluster.reason = reason
        return cluster

    return open_cluster


def _plain(cluster_options: dict) -> bool:
    """No certificates given: a local cluster that a notebook's calls can share."""
    security = cluster_options["security"]
    return (security is None or security is False) and not any(
        cluster_options[k] for k in ("tls_ca", "tls_cert", "tls_key"))


def _auto_cluster(open_cluster, bars: int, cluster_options: dict) -> Cluster:
    """In this process for a small job, or on a small machine unless the caller sized a
    cluster (``n_workers``, ``threads_per_worker``); on a local cluster otherwise (only for
    providers that do not wait on a network: the caller asks)."""
    if bars <= SMALL_JOB_BARS:
        return open_cluster("sync", f"a small job of about {bars:,} bars runs in this "
                            "process; --scheduler local starts a cluster")
    cores = usable_cores()
    sized = (cluster_options["n_workers"] is not None
             or cluster_options["threads_per_worker"] is not None)
    if cores <= SMALL_MACHINE_CORES and not sized:
        return open_cluster("sync", f"about {bars:,} bars from a provider that does not wait "
                            f"on a network: fastest in this process on {cores} cores; "
                            "--scheduler local starts a cluster")
    return open_cluster(None)


def usable_cores() -> int:
    """The cores this process may run on (its affinity where the platform tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _limits(job: _Job, cluster: Cluster, **given) -> Limits:
    """The job's politeness limits: the caller's, else the provider's own."""
    limits = Limits(
        # A fresh key per run: a resumed job must not inherit an open breaker.
        key=f"kdist-{job.job_id}-{job.provider.name}-{uuid.uuid4().hex[:6]}",
        provider=job.provider.name,
        max_concurrency=given["max_concurrency"] or job.provider.max_concurrency,
        max_rate=given["max_rate"] or job.provider.max_rate,
        trip_after=given["trip_after"], cooldown=given["cooldown"],
    )
    cluster.share(limits)
    return limits


def _batch_rows(freq: Freq) -> int:
    """Rows a batch collects before it is written, by default: minute bars come in chunks
    of a few symbols' whole years, and 500 symbols' year made 125 commits of two row groups
    each; eight row groups took 0.8 s less of a 10 s import of 150 symbols' year
    (see docs/performance.md#batches). Daily bars keep two: the client's peak is D's target."""
    return BATCH_ROWS * (4 if freq.intraday else 1)


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
        cluster_closed=cluster is not None and closes_with_job(cluster),
        fallback_reason=cluster.fallback_reason if cluster else None,
        mode_reason=cluster.reason if cluster else None,
        resumed=job.resumed, incremental=job.incremental, actions=job.actions,
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
            "params": {"incremental": job.incremental, "overlap": job.overlap,
                       "actions": job.actions},
            "note": cluster.fallback_reason,
        },
        job.symbols + job.invalid,
    )



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
    progress: bool | None = None,
    **kwargs,
) -> list[Report]:
    """Bring every stored symbol up to date: one incremental :func:`ingest` per source.

    Each (freq, adjust) series stored by a provider is extended from its last bars to ``end``
    (default today), with that provider's options from its most recent job, updated by
    ``options``. Pass ``provider`` (a name or an object) to update only what that provider
    stored. Suitable for a daily cron job (``kdist update``).

    ``progress`` is :func:`ingest`'s: a live display in notebooks by default.

    Returns one :class:`~kdist.report.Report` per provider updated (empty if nothing is
    stored).
    """
    freq, adjust = Freq.parse(freq), Adjust.parse(adjust)
    # A name only filters (its options come from the ledger); an object is used as given.
    wanted = provider.name if isinstance(provider, Provider) else provider
    if wanted is not None and not isinstance(provider, Provider):
        provider_class(wanted)  # an unknown name is an error, not "nothing stored"
    # One connection for the reads here and the imports: each import finds every symbol's
    # first and last bars already read, and the file already open (see
    # docs/performance.md#updates).
    with Store(db, create=False) as store:
        stored = store.series(freq, adjust)
        if wanted is not None:
            stored = stored[stored["source"] == wanted]
        jobs = store.jobs()
        # A verification's provider options (kdist verify --against) are not the source's.
        jobs = jobs[jobs["mode"] != VERIFY_MODE]
        recorded = {}
        for source in stored["source"].unique():
            recent = jobs[jobs["provider"] == source]
            recorded[source] = (store.job(recent["job_id"].iat[0])["provider_options"]
                                if len(recent) else {})
        reports = []
        cancel = kwargs.get("cancel")
        # Asked for corporate actions: from each source that serves them (a source that
        # serves none must not stop the others' updates).
        actions = kwargs.pop("actions", None)
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
                    callback=callback, progress=progress, incremental=True,
                    actions=None if actions and not chosen.serves_actions else actions,
                    **kwargs,
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
        # The import's loop without a store: a bounded number in flight, dead workers'
        # chunks retried, and a watchdog, so a cluster that lost its workers or its scheduler
        # ends the fetch with an error instead of a wait.
        loop = FetchLoop(cluster, chunks, functools.partial(
            chunk_task, provider, freq=freq, adjust=adjust, retries=RETRIES,
            timeout=CALL_TIMEOUT, job_id=job_id,
        ), worker_timeout=worker_timeout, job_id=job_id, warn_rows=FETCH_WARN_ROWS)
        bars = loop.run()
    if loop.failures:
        shown = "; ".join(f"{s}: {e}" for s, e in list(loop.failures.items())[:5])
        warnings.warn(f"{len(loop.failures)} symbol(s) failed: {shown}", UserWarning,
                      stacklevel=2)
    if loop.rejected:
        warnings.warn(_rejected_line(loop.rejected), UserWarning, stacklevel=2)
    return bars


def _rejected_line(rejected: dict[str, dict]) -> str:
    """One line of rejected rows: how many, in how many symbols, and why (the first five)."""
    total = sum(sum(r.values()) for r in rejected.values())
    shown = "; ".join(f"{s}: {reasons(r)}" for s, r in list(rejected.items())[:5])
    more = f" (and {len(rejected) - 5} more symbols)" if len(rejected) > 5 else ""
    return f"{counted(total, 'row')} rejected in {counted(len(rejected), 'symbol')}: {shown}{more}"

