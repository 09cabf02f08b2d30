"""Progress callbacks: how a running job tells the outside world what it is doing.

The runner calls a :class:`Callback`; it never imports a UI library. The terminal bar here,
the notebook widget bar and a test's recorder are implementations of the same small
interface, so each can be swapped for another without touching the import.
"""

from __future__ import annotations

import sys

from .outcome import Status

__all__ = ["Callback", "TerminalProgress"]


class Callback:
    """Receives a job's events. Every method is optional; the base class ignores them all.

    Order: ``on_start`` once, then ``set_size`` once, then ``on_symbols`` as chunks finish and
    ``on_write`` after each committed batch and ``on_chunks`` after each task's result
    (interleaved), then ``on_finish`` once.
    """

    def on_start(self, info: dict) -> None:
        """The job is planned: ``info`` has ``job_id, mode, n_symbols, n_chunks,
        dashboard_link, db``."""

    def set_size(self, n_symbols: int) -> None:
        """How many symbols the job will report on."""

    def on_symbols(self, outcomes: list[dict]) -> None:
        """Symbols finished (one dict each: ``symbol, status, rows, error, ...``)."""

    def on_write(self, rows: int, total_rows: int) -> None:
        """A batch of ``rows`` was committed; ``total_rows`` so far."""

    def on_chunks(self, done: int, total: int) -> None:
        """``done`` of ``total`` tasks have returned. ``total`` grows when a chunk that lost
        its worker is retried one symbol per task."""

    def on_note(self, text: str) -> None:
        """Something the user should know while the job runs (a silent worker, a chunk
        moved to another worker); one line."""

    def on_finish(self, report) -> None:
        """The job ended; ``report`` is its :class:`~kdist.report.Report`."""


class TerminalProgress(Callback):
    """A progress bar on the terminal (stderr), with rows written and failures so far."""

    def __init__(self, file=None):
        from rich.console import Console

        self.console = Console(file=file or sys.stderr)
        self._progress = None
        self._task = None
        self._failed = 0
        self._rows = 0

    def on_start(self, info):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console.print(
            f"kdist job {info['job_id']}: {info['n_symbols']} symbols in {info['n_chunks']} "
            f"chunks on {info['mode']} -> {info['db']}"
        )
        if info.get("dashboard_link"):
            self.console.print(f"Dask dashboard: {info['dashboard_link']}")
        self._progress = Progress(
            TextColumn("[bold]symbols"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rows]:,} rows  {task.fields[failed]} failed"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task("ingest", total=info["n_symbols"], rows=0, failed=0)

    def set_size(self, n_symbols):
        if self._progress is not None:
            self._progress.update(self._task, total=n_symbols)

    def on_symbols(self, outcomes):
        self._failed += sum(Status(o["status"]).counts_as_failed for o in outcomes)
        if self._progress is not None:
            self._progress.update(self._task, advance=len(outcomes), failed=self._failed)

    def on_write(self, rows, total_rows):
        self._rows = total_rows
        if self._progress is not None:
            self._progress.update(self._task, rows=total_rows)

    def on_note(self, text):
        self.console.print(f"kdist: {text}")

    def on_finish(self, report):
        if self._progress is not None:
            self._progress.stop()
