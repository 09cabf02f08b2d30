"""The client loop of an import: submit chunks, collect what finishes, write, finish.

:class:`JobLoop` runs one job on a :class:`~kdist.cluster.Cluster`: it keeps a bounded
number of chunks in flight, takes each finished chunk's result into a
:class:`~kdist.batch.Batch`, writes the batch when it is big enough or old enough, and,
however the job ends (done, cancelled, a lost cluster, a failed write), writes what finished
and records the job's final status. Client memory is bounded by the batch and the chunks in
flight, never by the job. Its :meth:`JobLoop.run` reads as the steps it takes.
"""

from __future__ import annotations

import logging
import shlex
import time
import uuid
import warnings

import pandas as pd

from .batch import ROW_GROUP, Batch
from .cluster import Cluster, dask_error
from .errors import (
    ClusterError,
    KdistError,
    NoWorkersError,
    ProviderTrippedError,
    SchedulerUnreachableError,
    StoreError,
    UsageError,
)
from .fetching import ChunkResult, concat, failed_result, task
from .limits import Limits, stop_on_worker
from .limits import stop as stop_gate
from .outcome import JobStatus, Status, outcome
from .plan import Chunk
from .progress import Callback
from .report import Clock, Report, counted
from .store import Store

__all__ = ["ChunkLoop", "EachLoop", "FetchLoop", "JobLoop"]

log = logging.getLogger(__name__)

#: Seconds the client may be disconnected from its scheduler before the job stops.
RECONNECT_GRACE = 10.0
#: Seconds a stopping job waits for chunks running in its own process to reach their next
#: symbol: a signal must end a job within a few seconds, even with a provider call hung.
STOP_GRACE = 2.0
#: Seconds to fetch a finished chunk's result before going back to the loop; doubled for a
#: result that needed longer, so a large transfer on a slow network still gets through.
RESULT_TIMEOUT = 5.0

#: Seconds without a heartbeat after which a worker counts as silent (Dask's workers send
#: one every fraction of a second; a frozen process or a blocked event loop sends none).
SILENT_SECONDS = 20.0


class ChunkLoop:
    """Run chunk tasks on a cluster and hand each finished chunk's result to :meth:`take`.

    On a cluster that queues tasks (Dask's scheduler) every chunk is submitted at once, so
    its dashboard shows the whole job; in process, a bounded number of tasks is in flight
    (``max_in_flight`` bounds it everywhere). A chunk whose worker died is split and retried
    (:meth:`requeue_dead`), the chunks of a worker that stopped answering run elsewhere
    (:meth:`move_silent`), and a cluster that lost its scheduler or its workers ends the loop
    with an error (the watchdog). Subclasses say what a result is for. ``clock`` (a
    :class:`~kdist.report.Clock`) is told where the loop's time goes: submitting, waiting
    for results, taking them, and watching the cluster.
    """

    def __init__(self, cluster: Cluster, chunks: list[Chunk], make_task, *,
                 max_in_flight: int | None, worker_timeout: float, job_id: str,
                 wait_seconds: float = 1.0, clock: Clock | None = None):
        self.cluster, self.make_task, self.job_id = cluster, make_task, job_id
        self.clock = clock if clock is not None else Clock()
        self.wait_seconds = wait_seconds
        with self.clock.phase("submit"):
            self.queue = [(make_task(c), c) for c in reversed(chunks)]
        #: Chunks in flight at most where the cluster does not queue them, and how few
        #: chunks are left when the job's last round runs.
        self.window = max(4, 2 * cluster.n_threads)
        self.limit = max_in_flight or (len(self.queue) if cluster.queues_tasks else self.window)
        self.pending: dict = {}
        self.done_tasks, self.total_tasks = 0, len(self.queue)
        self.split: set = set()  # chunks already retried one symbol at a time
        # One-symbol tasks that died with a worker once: Dask also blames a task that only
        # waited on the dying worker, so each gets one more try, alone on the cluster.
        self.solo: list = []
        self.tried_alone: set = set()
        self.patience: dict = {}  # seconds to wait for a result that was slow to fetch before
        self.moved: dict = {}  # chunks run again elsewhere, and how often
        self.watch = _Watchdog(cluster, worker_timeout)
        self.silence = _Silence(cluster)

    def left(self) -> bool:
        """Chunks still to submit, running, or waiting for a retry alone."""
        return bool(self.queue or self.pending or self.solo)

    def step(self):
        """One turn: submit what is ready, wait, collect what finished, watch the cluster."""
        with self.clock.phase("submit"):
            self.submit_ready()
        done = self.wait()
        self.collect(done)
        with self.clock.phase("cluster"):
            self.watch.check(bool(done), len(self.pending) + len(self.queue) + len(self.solo),
                             self.job_id)
            self.move_silent()

    def take(self, result: ChunkResult, chunk: Chunk):
        """One finished chunk's result (subclasses)."""
        raise NotImplementedError

    def submit_ready(self):
        """Fill the slots in flight from the queue; a solo retry once nothing else runs."""
        if self.queue and len(self.pending) < self.limit:
            # One submission for all of them: per task, a graph update each costs the
            # scheduler and the client a round trip.
            n = min(len(self.queue), self.limit - len(self.pending))
            ready = [self.queue.pop() for _ in range(n)]
            futures = self.cluster.submit_many([t for t, _ in ready])
            self.pending.update(zip(futures, (chunk for _, chunk in ready)))
        if self.solo and not self.queue and not self.pending:
            solo_task, chunk = self.solo.pop()
            self.pending[self.cluster.submit(solo_task)] = chunk

    def wait(self) -> set:
        """The futures that finished within the next ``wait_seconds``."""
        with self.clock.phase("wait"):
            done, _ = self.cluster.wait(set(self.pending), timeout=self.wait_seconds)
        return done

    def collect(self, done: set):
        """Take the results of finished chunks; requeue what died with a worker."""
        clock = self.clock
        with clock.phase("wait"):  # receiving results is waiting on the workers too
            gathered = self.cluster.gather_finished(done, RESULT_TIMEOUT)
        for future in done:
            chunk = self.pending.pop(future)
            try:
                with clock.phase("wait"):
                    result = gathered.get(future) or _result(
                        future, chunk, self.cluster, self.patience.get(future, RESULT_TIMEOUT)
                    )
            except _NotYet:
                self.pending[future] = chunk  # lost with a worker, or slow: wait again
                self.patience[future] = 2 * self.patience.get(future, RESULT_TIMEOUT)
                continue
            except _WorkerDied as died:
                if self.requeue_dead(chunk):
                    continue
                result = died.result
            gathered.pop(future, None)
            self.done_tasks += 1
            with clock.phase("take"):
                self.take(result, chunk)

    def requeue_dead(self, chunk: Chunk) -> bool:
        """Give the symbols of a chunk that died with its worker another chance; False when
        it has had every chance (its symbols then end failed)."""
        if len(chunk) > 1 and chunk not in self.split:
            # Dask blames every task on a dying worker: the symbols that merely shared it get
            # another chance, one task each, so only the symbol that kills workers ends failed.
            parts = chunk.split()
            self.split.update(parts)
            self.total_tasks += len(parts) - 1
            self.queue.extend((self.make_task(c, part=i), c)
                              for i, c in reversed(list(enumerate(parts))))
            return True
        if len(chunk) == 1 and chunk not in self.tried_alone:
            self.tried_alone.add(chunk)
            self.solo.append((self.make_task(chunk, part=len(self.tried_alone), solo=True),
                              chunk))
            return True
        return False

    def move_silent(self):
        """Run the chunks of workers that stopped answering on workers that answer."""
        for future, chunk, note, workers in self.silence.check(self.pending):
            # Dask waits out its worker TTL (minutes) before it gives up on a worker that
            # stopped answering. A chunk's bars replace their span, so a late answer of the
            # first run changes nothing.
            del self.pending[future]
            self.cluster.cancel({future})
            self.note(note)
            self.moved[chunk] = self.moved.get(chunk, 0) + 1
            moved_task = self.make_task(chunk, moved=self.moved[chunk])
            self.pending[self.cluster.submit(moved_task, workers=workers)] = chunk

    def note(self, text: str):
        log.warning(text)


class FetchLoop(ChunkLoop):
    """Collect every chunk's bars in memory, for :func:`kdist.fetch`; failures and rejected
    rows by symbol, for its warnings."""

    def __init__(self, cluster: Cluster, chunks: list[Chunk], make_task, *,
                 worker_timeout: float, job_id: str, warn_rows: int):
        super().__init__(cluster, chunks, make_task, max_in_flight=None,
                         worker_timeout=worker_timeout, job_id=job_id)
        self.warn_rows = warn_rows
        self.frames: list = []
        self.rows = 0
        self.failures: dict[str, str] = {}
        self.rejected: dict[str, dict] = {}

    def run(self) -> pd.DataFrame:
        try:
            while self.left():
                self.step()
        finally:
            self.cluster.cancel(set(self.pending))
        self.frames.sort(key=lambda item: item[0])
        return concat([bars for _, bars in self.frames if len(bars)])

    def take(self, result: ChunkResult, chunk: Chunk):
        # In plan order; the parts of a chunk split after its worker died, in symbol order.
        self.frames.append(((chunk.index, chunk.symbols[0] if chunk.symbols else ""),
                            result.bars))
        self.failures.update({o["symbol"]: o["error"] for o in result.outcomes
                              if o["status"] == Status.FAILED})
        self.rejected.update({o["symbol"]: o["rejected"] for o in result.outcomes
                              if o.get("rejected") and o["status"] != Status.FAILED})
        before, self.rows = self.rows, self.rows + len(result.bars)
        if before <= self.warn_rows < self.rows:
            # stacklevel: the caller of kdist.fetch (take < collect < step < run < fetch).
            warnings.warn(f"kdist.fetch holds {self.rows:,} rows in memory; use kdist.ingest "
                          "to store large imports in DuckDB", ResourceWarning, stacklevel=6)


class EachLoop(ChunkLoop):
    """Hand each finished chunk's result to ``each(result, chunk)`` as it arrives, keeping
    none, for :func:`kdist.verify` (which compares each chunk with the stored bars): client
    memory is bounded by the chunks in flight and fetched ahead, never by the job.

    ``idle`` is called after each wait (a writing store lets readers in, as an import's
    does), ``ticks`` is ``(topic, handler)``: the running chunks' symbols done
    (:mod:`kdist.ticks`), and the job's politeness gates (``limits``) end with the loop,
    as an import's do. ``cancel``, a ``threading.Event``, stops it early.
    """

    def __init__(self, cluster: Cluster, chunks: list[Chunk], make_task, each, *,
                 worker_timeout: float, job_id: str, limits: Limits | None = None,
                 idle=None, ticks=None, cancel=None):
        super().__init__(cluster, chunks, make_task, max_in_flight=None,
                         worker_timeout=worker_timeout, job_id=job_id)
        self.each, self.limits, self.idle, self.ticks = each, limits, idle, ticks
        self.cancel = cancel

    def run(self) -> bool:
        """Run until every chunk's result was handed over (True) or ``cancel`` was set
        (False: what had not finished is left out)."""
        if self.ticks is not None:
            self.cluster.listen(*self.ticks)
        try:
            while self.left():
                self.step()
                if self.cancel is not None and self.cancel.is_set():
                    break
        finally:
            try:
                _stop_gates(self.cluster, self.limits, self.silence.silent)
                self.cluster.cancel(set(self.pending))
            finally:
                if self.ticks is not None:
                    self.cluster.forget(self.ticks[0])
        return not self.left()

    def wait(self) -> set:
        done = super().wait()
        if self.idle is not None:
            self.idle()
        return done

    def take(self, result: ChunkResult, chunk: Chunk):
        self.each(result, chunk)


class JobLoop(ChunkLoop):
    """Run one planned job to its end and leave it recorded.

    Parameters are the job (a ``runner._Job``), its chunks, the cluster and the open store,
    the report to fill in, the progress callback, the job's :class:`~kdist.report.Clock`
    (started with the job; the loop tells it where its time goes), the job's symbols that
    have stored bars (``stored``: only their spans need deleting), and the run options of
    :func:`kdist.ingest` (``retries, timeout, batch_rows, flush_seconds, max_in_flight,
    worker_timeout, cancel, limits``).
    """

    def __init__(self, job, chunks: list[Chunk], cluster: Cluster, store: Store,
                 report: Report, callback: Callback, clock: Clock, *, stored: set[str],
                 retries: int, timeout: float | None, batch_rows: int, flush_seconds: float,
                 max_in_flight: int | None, worker_timeout: float, cancel=None,
                 limits: Limits | None = None):
        self.job, self.store = job, store
        self.report, self.callback = report, callback
        self.retries, self.timeout, self.limits = retries, timeout, limits
        self.batch_rows, self.flush_seconds = batch_rows, flush_seconds
        self.cancel = cancel
        # Keys name the job and this run of it: a resumed job keeps its id, and a chunk of
        # the cancelled run may still be running or held by the scheduler under the same
        # number; sharing its key would hand that stale result to the new task.
        self.run_id = f"{job.job_id}-{uuid.uuid4().hex[:4]}"
        self.topic = f"kdist-ticks-{self.run_id}"  # where its chunks tell their progress
        super().__init__(cluster, chunks, self._task, max_in_flight=max_in_flight,
                         worker_timeout=worker_timeout, job_id=job.job_id,
                         wait_seconds=min(1.0, flush_seconds), clock=clock)
        self.batch = Batch(stored)
        self.write_args = {"job_id": job.job_id, "freq": job.freq, "adjust": job.adjust,
                           "source": job.provider.name,
                           "splits_in_bars": job.provider.splits_in_bars}
        # Running chunks tell how many of their symbols are done (kdist.ticks), so the
        # display moves symbol by symbol: {chunk index: symbols done}, written by the
        # cluster's listener thread, read here.
        self.inside: dict[int, int] = {}
        self.taken: set[int] = set()  # chunks whose outcomes are in
        self.finished = 0  # symbols with an outcome
        self.taken_rows = 0  # bars of the chunks taken so far
        self.shown = 0

    def _task(self, chunk: Chunk, **key):
        job = self.job
        since = {s: job.actions_from[s] for s in chunk.symbols if s in job.actions_from}
        return task(job.provider, chunk, job.freq, job.adjust, self.retries, self.timeout,
                    self.run_id, limits=self.limits, ticks=self.topic,
                    actions=(since or True) if job.actions else False, **key)

    def _tick(self, index: int, done: int):
        if index not in self.taken:  # a late tick of a chunk already in: counted once
            self.inside[index] = done

    # -- the loop --------------------------------------------------------------------------

    def run(self):
        """Submit the chunks, collect and write their results; always leave the job recorded."""
        job, store, clock = self.job, self.store, self.clock
        if job.invalid:
            with clock.phase("take"):
                bad = [outcome(s, Status.FAILED, error=UsageError("invalid symbol"))
                       for s in job.invalid]
                self.batch.add_outcomes(bad)
                self._record(bad)
        if self.cancel is not None:
            # The caller's signal handler sets ``cancel`` instead of raising while this loop
            # and its clean-up run: an exception raised inside a DuckDB write would
            # interrupt it.
            self.cancel.kdist_watched = True
        status, raising, unstored = JobStatus.FAILED, False, None
        try:
            with clock.phase("cluster"):
                self.cluster.listen(self.topic, self._tick)
            while self.left():
                self.step()
                self.show_progress()
                self.flush_when_due()
                if self.cancel is not None and self.cancel.is_set():
                    break
            with clock.phase("report"):
                status = JobStatus.CANCELLED if self.left() else self.report.final_status()
        except KeyboardInterrupt as exc:
            status, raising = JobStatus.CANCELLED, True
            exc.kdist_resume = _resume_command(job, store)
            raise
        except ClusterError as exc:
            status, raising = JobStatus.INTERRUPTED, True
            raise type(exc)(
                f"{exc}; what finished is stored; resume with: {_resume_command(job, store)}",
                **{**exc.__dict__, "job_id": job.job_id},
            ) from exc
        except StoreError as exc:
            # A batch could not be written (a full disk, a file that went read-only): stop,
            # keep what earlier batches stored, and say so below, once the job is recorded.
            status, unstored = JobStatus.FAILED, exc
        except BaseException:
            raising = True
            raise
        finally:
            unstored = self.finish(status, raising, unstored)
        if unstored is not None:
            raise self._unstored_error(unstored) from unstored

    def wait(self) -> set:
        done = super().wait()
        # Between batches the file is let go when idle or when a reader waits for it.
        with self.clock.phase("write"):
            self.store.idle()
        return done

    def take(self, result: ChunkResult, chunk: Chunk):
        """One chunk's result: into the batch, the report and the progress display."""
        self.taken.add(chunk.index)
        self.inside.pop(chunk.index, None)  # its outcomes count now, not its ticks
        self.batch.add(result, chunk)
        self.taken_rows += len(result.bars)
        self._record(result.outcomes)
        with self.clock.phase("progress"):
            self.callback.on_chunks(self.done_tasks, self.total_tasks)
        if self.batch.rows >= self.batch_rows and self.left():
            # Now, not after every finished chunk is in: the client holds about one batch,
            # however many chunks finished together. (After the last chunk, the final write
            # takes it all in one transaction.)
            self.flush(final=False)
        tripped = [o["error"] for o in result.outcomes if o["status"] == Status.SKIPPED]
        if tripped:
            self.report.note = tripped[0]
            self.skip_rest()

    def skip_rest(self):
        """The breaker opened: what is not submitted yet is skipped unfetched."""
        if not (self.queue or self.solo):
            return
        error = ProviderTrippedError(self.report.note)
        skipped = [outcome(sym, Status.SKIPPED, error=error)
                   for _, c in self.queue + self.solo for sym in c.symbols]
        self.total_tasks -= len(self.queue) + len(self.solo)
        with self.clock.phase("progress"):
            self.callback.on_chunks(self.done_tasks, self.total_tasks)
        self.queue.clear()
        self.solo.clear()
        self.batch.add_outcomes(skipped)
        self._record(skipped)

    def note(self, text: str):
        with self.clock.phase("progress"):
            self.callback.on_note(text)
        super().note(text)

    def flush_when_due(self):
        """Write the batch when it is old or big enough, or when only the last chunks run."""
        # The last round: no more than a window of chunks left (on Dask every chunk is
        # submitted at the start, so an empty queue alone says nothing).
        draining = (not self.queue and not self.solo and len(self.pending) <= self.window
                    and not any(f.done() for f in self.pending))
        if self.left() and (self.batch.due(self.batch_rows, self.flush_seconds)
                            or (draining and self.batch.rows >= self.batch_rows // 4)
                            or self.ending()):
            # Also while the last chunks run and the client has nothing else to do: the write
            # at the end then holds only their bars. With nothing left to run, the final
            # write takes the whole batch: one transaction, not two.
            self.flush(final=False)

    def ending(self) -> bool:
        """The batch holds a whole row group, and the bars still to come (as many per symbol
        as so far) would not fill a batch: write the row group now, while chunks still run.
        Waiting for a full batch wrote most of a job's last batch after its last chunk, on
        the job's time (see docs/performance.md#batches)."""
        if self.batch.rows < ROW_GROUP or not self.finished:
            return False
        coming = self.taken_rows / self.finished * (self.report.n_symbols - self.finished)
        return coming < self.batch_rows

    def flush(self, final: bool = True):
        with self.clock.phase("write"):
            rows = self.batch.write(self.store, final=final, **self.write_args)
        self.report.rows_written += rows
        if rows:
            with self.clock.phase("progress"):
                self.callback.on_write(rows, self.report.rows_written)

    def _record(self, outcomes):
        """Count outcomes in the report and show them on the progress display."""
        with self.clock.phase("report"):
            self.report.count(outcomes)
        with self.clock.phase("progress"):
            self.callback.on_symbols(outcomes)
            self.finished += len(outcomes)
            self.show_progress()

    def show_progress(self):
        """Tell the display how many symbols are done, those inside running chunks included;
        it never goes back (a chunk run again elsewhere starts its count anew)."""
        with self.clock.phase("progress"):
            total = self.report.n_symbols
            done = min(total, self.finished + sum(list(self.inside.values())))
            if done > self.shown:
                self.shown = done
                self.callback.on_progress(done, total)

    # -- the end ---------------------------------------------------------------------------

    def finish(self, status: str, raising: bool, unstored):
        """Stop what runs, keep what finished, write it, record the job; return the write
        failure to raise, if any."""
        job, store, report, clock = self.job, self.store, self.report, self.clock
        try:
            with clock.phase("cluster"):
                self._stop_running()
            try:
                self.flush()  # whatever finished is kept, however the job ends
            except KdistError as exc:
                status, unstored = JobStatus.FAILED, unstored or exc
            with clock.phase("report"):
                self._report_writes()
            if unstored is not None:
                with clock.phase("report"):
                    report.unstore(self.batch.outcomes, unstored)
            with clock.phase("ledger"):
                if not raising and unstored is None and job.resumed:
                    status = _job_status(store, job.job_id, status)
                report.status = status = str(status)  # a plain string in report and ledger
                # Up to the job's record; the report's own becomes the whole call's, once
                # the store and the cluster are closed (kdist.ingest).
                report.elapsed_s = round(clock.elapsed(), 3)
                try:
                    store.finish_job(job.job_id, status=status, elapsed_s=report.elapsed_s)
                except KdistError as exc:
                    # A dead connection must not hide the error already on its way out; the
                    # next writer marks a job left "running" as interrupted.
                    if not raising and unstored is None:
                        unstored = exc
        finally:
            with clock.phase("cluster"):
                self.cluster.forget(self.topic)
            if self.cancel is not None:
                self.cancel.kdist_watched = False
        return unstored

    def _report_writes(self):
        """What the job's writes replaced and which symbols got new corporate actions, once
        at the end: sorting every symbol's name after each batch grew with the job."""
        self.report.replaced = dict(self.batch.replaced)
        self.report.actions_checked = self.batch.actions_checked
        self.report.actions_new = sorted(self.batch.actions_new)

    def _stop_running(self):
        """Stop the job's gates and chunks, keeping the results that finished meanwhile."""
        cluster = self.cluster
        _stop_gates(cluster, self.limits, self.silence.silent)
        cluster.cancel(set(self.pending))
        for result, chunk in _finished(self.pending, cluster):
            self.batch.add(result, chunk)
            self._record(result.outcomes)

    def _unstored_error(self, unstored) -> StoreError:
        report, store, job = self.report, self.store, self.job
        what = (f"the bars of {counted(report.unstored, 'symbol')}" if report.unstored
                else f"the end of job {job.job_id}")
        reason = str(unstored).removeprefix(f"Cannot use database {store.path}: ")
        return StoreError(
            f"Could not store {what} in {store.path}: {reason}; what earlier batches wrote "
            f"is kept; fix that, then resume with: {_resume_command(job, store)}",
            path=str(store.path), job_id=job.job_id, report=report,
        )



def _stop_gates(cluster: Cluster, limits: Limits | None, silent=()):
    """End a job's politeness gates: in-process chunks stop at their next symbol."""
    if limits is None:
        return
    stop_gate(limits.key)
    # Workers keep one gate per job (semaphores, a rate thread): end them too, on the
    # workers that answer.
    cluster.run_on_workers(stop_on_worker, limits.key, skip=silent)


def _finished(pending: dict, cluster: Cluster):
    """``(result, chunk)`` of the chunks that finished while the job was being stopped.

    In-process (``sync``) chunks cannot be cancelled mid-run; they stop at their next
    symbol, so their finished symbols are waited for briefly (``STOP_GRACE`` seconds in all)
    and kept. A chunk stuck in a provider call is left behind: its symbols stay pending.
    """
    deadline = time.monotonic() + STOP_GRACE
    for future, chunk in list(pending.items()):
        try:
            if not cluster.settle(future, max(0.0, deadline - time.monotonic())):
                continue
            result = _result(future, chunk, cluster, timeout=1.0)
        except Exception:  # cancelled, lost, or slow: those symbols stay pending
            continue
        yield result, chunk



def _resume_command(job, store: Store) -> str:
    return f"kdist ingest --resume {job.job_id} --db {shlex.quote(str(store.path))}"


def _job_status(store: Store, job_id: str, status: str) -> str:
    """The status of a resumed job from every one of its symbols, not only this run's."""
    if status not in (JobStatus.DONE, JobStatus.PARTIAL, JobStatus.FAILED):
        return status
    counts = store.symbol_counts(job_id)
    failed, total = counts.get(Status.FAILED, 0), sum(counts.values())
    if counts.get(Status.PENDING, 0) or counts.get(Status.SKIPPED, 0):
        return JobStatus.INTERRUPTED
    if failed == 0:
        return JobStatus.DONE
    return JobStatus.FAILED if failed == total else JobStatus.PARTIAL


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
        if now - self.checked_at < 2.0:
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



class _Silence:
    """Finds chunks running on a worker that has stopped answering, or finished there with
    their result not yet fetched, to run them elsewhere.

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
        now = time.monotonic()
        if not pending or now - self.checked_at < min(5.0, self.after / 2):
            return []
        self.checked_at = now
        try:
            seen = self.cluster.heartbeats()
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
            held = {key: address for address, keys in self.cluster.processing(silent).items()
                    for key in keys}
            # A chunk that finished on a worker just before it went silent: its result is
            # held there, and fetching it waits out Dask's TTL too. It runs again elsewhere.
            finished = [f for f in pending if f.key not in held and f.status == "finished"]
            if finished:
                for key, holders in self.cluster.holding(finished).items():
                    if holders and all(h in silent for h in holders):
                        held[key] = holders[0]
        except Exception as exc:  # a scheduler that cannot say: Dask's own TTL still applies
            log.debug("could not ask the scheduler for silent workers: %r", exc)
            return []
        moves = []
        for future, chunk in pending.items():
            address = held.get(future.key)
            if address is not None:
                note = (f"chunk {chunk.index} ({counted(len(chunk), 'symbol')}): its worker "
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



def _result(future, chunk: Chunk, cluster: Cluster, timeout: float = RESULT_TIMEOUT) -> ChunkResult:
    """A finished future's result, or a result that marks every symbol of its chunk failed.

    Never blocks for long: a result still held by a worker that dies is recomputed by Dask,
    and waiting for it here would keep the watchdog, cancel and flushes from running.
    Raises :class:`_NotYet` when the result is not (or no longer) to be had now.
    """
    state = cluster.state(future)
    if state == "pending":
        raise _NotYet()  # reported done, then lost with its worker: Dask computes it again
    if state == "error":
        # The task itself raised: never mistake its TimeoutError for a slow transfer below.
        return _from_error(future.exception(), chunk, cluster)
    try:
        return future.result(timeout=timeout)
    except TimeoutError as exc:
        raise _NotYet() from exc  # the result is slow to arrive: try again later
    except Exception as exc:
        return _from_error(exc, chunk, cluster)


def _from_error(exc: BaseException, chunk: Chunk, cluster: Cluster) -> ChunkResult:
    if dask_error(exc, "worker died"):
        err = RuntimeError(f"worker died while fetching ({exc})")
        raise _WorkerDied(failed_result(chunk, err)) from exc
    if dask_error(exc, "cancelled") and not cluster.connected():
        raise SchedulerUnreachableError(
            f"Lost the scheduler {cluster.address} mid-job", address=cluster.address
        ) from exc
    return failed_result(chunk, exc)
