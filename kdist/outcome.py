"""What a symbol came to in a job: its status and its outcome, one row of the job's ledger.

An outcome is a plain dict (it travels from the workers inside a chunk's result and is
written to the ledger in batches) whose keys are :data:`LEDGER_COLUMNS` plus ``appended``.
:class:`Status` names the statuses; every display counts them the same way
(:meth:`Status.counts_as_failed`), and the store's ledger columns come from here.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["LEDGER_COLUMNS", "JobStatus", "Status", "outcome"]


class Status(StrEnum):
    """A symbol's status in a job's ledger."""

    PENDING = "pending"  # not fetched yet (or its batch was never written)
    OK = "ok"  # bars stored (or none new: up to date)
    EMPTY = "empty"  # the source has no bars in the window
    FAILED = "failed"  # an error, named in the outcome
    SKIPPED = "skipped"  # not fetched: the provider's circuit breaker opened

    @property
    def counts_as_failed(self) -> bool:
        """Shown as failed by every progress display: nothing was imported for it."""
        return self in (Status.FAILED, Status.SKIPPED)

    @property
    def finished(self) -> bool:
        """Needs nothing more: a resume leaves it alone."""
        return self in (Status.OK, Status.EMPTY)


class JobStatus(StrEnum):
    """A job's status in ``kdist_jobs``."""

    RUNNING = "running"
    DONE = "done"  # every symbol ok or empty
    PARTIAL = "partial"  # some symbols failed
    FAILED = "failed"  # none could be imported, or a write failed
    CANCELLED = "cancelled"  # stopped by the caller (cancel, Ctrl-C, SIGTERM): resumable
    INTERRUPTED = "interrupted"  # the cluster, the process or the vendor went away: resumable


#: The columns of a symbol's row in the job ledger (``kdist_job_symbols``), in order.
LEDGER_COLUMNS = (
    "symbol",
    "status",
    "rows",
    "first_ts",
    "last_ts",
    "attempts",
    "error_class",
    "error",
    "rejected_rows",
    "rejected",
    "window_start",
    "revised",
)


def outcome(symbol, status: Status | str, *, rows=0, first=None, last=None, attempts=0,
            error=None, rejected=None, start=None, revised=False, appended=False) -> dict:
    """One symbol's outcome: the ledger's columns, and whether only new bars were kept."""
    rejected = rejected or {}
    return {
        # Only bars after the last stored one were kept (the stored overlap matched): no
        # stored window to replace. Not a ledger column.
        "appended": appended,
        "symbol": symbol,
        "status": status.value if isinstance(status, Status) else Status(status).value,
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
