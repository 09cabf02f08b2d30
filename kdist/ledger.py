"""The job ledger: what each import job asked for and what each of its symbols came to.

Two tables of the store's file hold it: ``kdist_jobs``, one row per job (its parameters,
status and counts), and ``kdist_job_symbols``, one row per job and symbol (see
:mod:`kdist.outcome`). A job starts ``running`` with every symbol ``pending``;
:meth:`~kdist.store.Store.write_batch` records symbols' outcomes in the transaction that
writes their bars, and :meth:`Ledger.finish_job` recounts them from there. A job left
``running`` by a killed process shows as ``interrupted``, and ``kdist ingest --resume``
fetches its unfinished symbols.

:class:`Ledger` holds these statements; :class:`~kdist.store.Store` inherits them, and the
tables are created with the others by the store.
"""

from __future__ import annotations

import datetime as _dt
import json

import pandas as pd

from .access import FileAccess, _using
from .errors import UsageError

__all__ = ["VERIFY_MODE", "Ledger"]

#: The ``mode`` of a verification's ``kdist_jobs`` row (:func:`kdist.verify`): it wrote no
#: bars, so it is never resumed, never counts as a write of a series (the catalog's
#: ``updated``), and its provider options are not a source's (``kdist update``).
VERIFY_MODE = "verify"


def _now() -> _dt.datetime:
    return _dt.datetime.now()


def _version() -> str:
    from ._version import __version__

    return __version__


class Ledger(FileAccess):
    """The ledger's statements, on the store's connection (see the module's docstring)."""

    def _mark_interrupted(self):
        # We hold kdist's writer lock, so no job can still be running: one that says so was
        # interrupted (its process killed) and is resumable.
        self._transaction(
            lambda con: con.execute(
                """UPDATE kdist_jobs SET status = 'interrupted' WHERE status = 'running'"""
            )
        )

    @_using
    def start_job(self, job: dict, symbols: list[str]):
        """Record a new job as running, with every symbol pending."""
        now = _now()
        pending = pd.DataFrame({"symbol": pd.Series(symbols, dtype="str")})

        def work(con):
            con.execute(
                """INSERT INTO kdist_jobs (job_id, created_at, status, mode, provider,
                   provider_options, provider_version, freq, adjust, start, "end",
                   n_symbols, kdist_version, params, note)
                   VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                [
                    job["job_id"],
                    now,
                    job["mode"],
                    job["provider"],
                    json.dumps(job.get("provider_options", {}), default=str),
                    job.get("provider_version"),
                    job["freq"],
                    job["adjust"],
                    job["start"],
                    job["end"],
                    len(symbols),
                    _version(),
                    json.dumps(job.get("params", {}), default=str),
                    job.get("note"),
                ],
            )
            con.register("kdist_pending", pending)
            con.execute(
                """INSERT INTO kdist_job_symbols (job_id, symbol, status, attempts, updated_at)
                   SELECT ?, symbol, 'pending', 0, ? FROM kdist_pending""",
                [job["job_id"], now],
            )
            con.unregister("kdist_pending")

        self._transaction(work)
        self._tell(job["job_id"])

    @_using
    def resume_job(self, job_id: str, *, mode: str, note: str | None = None):
        """Mark an existing job running again (its unfinished symbols are about to be fetched)."""
        self._transaction(
            lambda con: con.execute(
                """UPDATE kdist_jobs SET status = 'running', mode = ?, finished_at = NULL,
                       note = ? WHERE job_id = ?""",
                [mode, note, job_id],
            )
        )
        self._tell(job_id)

    @_using
    def job(self, job_id: str) -> dict:
        """One job's recorded parameters and counts, or a UsageError naming the known ones."""
        row = self.con.execute(
            """SELECT job_id, status, mode, provider, provider_options, freq, adjust, start,
                      "end", n_symbols, params FROM kdist_jobs WHERE job_id = ?""",
            [job_id],
        ).df()
        if row.empty:
            raise UsageError(
                f"No job {job_id!r} in {self.path}; 'kdist jobs --db {self.path}' lists them"
            )
        job = row.iloc[0].to_dict()
        job["provider_options"] = json.loads(job["provider_options"] or "{}")
        job["params"] = json.loads(job["params"] or "{}")
        if job["status"] == "running" and self._orphaned():
            job["status"] = "interrupted"
        return job

    @_using
    def unfinished_symbols(self, job_id: str) -> list[str]:
        """Symbols of a job that are not yet ok or empty (pending or failed), in order."""
        return [
            r[0]
            for r in self.con.execute(
                """SELECT symbol FROM kdist_job_symbols
                   WHERE job_id = ? AND status NOT IN ('ok', 'empty') ORDER BY symbol""",
                [job_id],
            ).fetchall()
        ]

    @_using
    def finish_job(self, job_id: str, *, status: str, elapsed_s: float, note: str | None = None):
        """Mark a job finished and recount its symbols from the ledger."""
        self._transaction(
            lambda con: con.execute(
                """UPDATE kdist_jobs SET status = ?, finished_at = ?, elapsed_s = ?,
                       note = coalesce(?, note),
                       symbols_ok = s.ok, symbols_empty = s.empty, symbols_failed = s.failed,
                       symbols_skipped = s.skipped,
                       rows_written = s.rows_written, rejected_rows = s.rejected_rows
                   FROM (SELECT count(*) FILTER (WHERE status = 'ok') AS ok,
                                count(*) FILTER (WHERE status = 'empty') AS empty,
                                count(*) FILTER (WHERE status = 'failed') AS failed,
                                count(*) FILTER (WHERE status = 'skipped') AS skipped,
                                coalesce(sum(rows), 0) AS rows_written,
                                coalesce(sum(rejected_rows), 0)
                                    AS rejected_rows
                         FROM kdist_job_symbols WHERE job_id = ?) AS s
                   WHERE job_id = ?""",
                [status, _now(), elapsed_s, note, job_id, job_id],
            )
        )

    @_using
    def jobs(self) -> pd.DataFrame:
        """Every job, newest first."""
        return self.con.execute(
            """SELECT job_id, created_at, finished_at,
                      CASE WHEN status = 'running' AND ? THEN 'interrupted' ELSE status END
                          AS status,
                      mode, provider, freq, adjust, start, "end", n_symbols, symbols_ok,
                      symbols_empty, symbols_failed, symbols_skipped, rows_written,
                      rejected_rows, elapsed_s, note
               FROM kdist_jobs ORDER BY created_at DESC""",
            [self._orphaned()],
        ).df()

    def _orphaned(self) -> bool:
        """Whether a job recorded as running has no process running it any more."""
        # A writer marked every job left running as interrupted when it opened the file, so a
        # running job is its own; a reader reads between the batches of a live import, so
        # only when no kdist import holds the file was such a job interrupted (its process
        # killed, its machine lost), and it can be resumed.
        return self.read_only and self._live_import() is None

    @_using
    def symbol_counts(self, job_id: str) -> dict[str, int]:
        """How many of a job's symbols have each status (``{"ok": 4, "failed": 1}``),
        counted by the database: a resumed job's end needs only these, not every row."""
        rows = self.con.execute(
            """SELECT status, count(*) FROM kdist_job_symbols WHERE job_id = ?
               GROUP BY status""",
            [job_id],
        ).fetchall()
        return {status: int(n) for status, n in rows}

    @_using
    def job_symbols(self, job_id: str, status: str | None = None) -> pd.DataFrame:
        """The per-symbol ledger of one job, optionally only one status."""
        return self.con.execute(
            """SELECT symbol, status, rows, first_ts, last_ts, attempts, error_class, error,
                      rejected_rows, rejected, window_start, revised
               FROM kdist_job_symbols WHERE job_id = ? AND (? IS NULL OR status = ?)
               ORDER BY symbol""",
            [job_id, status, status],
        ).df()
