"""Progress callbacks: how a running job tells the outside world what it is doing.

The runner calls a :class:`Callback`; it never imports a UI library. The terminal bar here,
the notebook widget bar and a test's recorder are implementations of the same small
interface, so each can be swapped for another without touching the import.

Events come per finished chunk, and a job may have tens of thousands of them: a display
keeps its counts on every event (a few additions) and draws them at most every fraction of
a second (:class:`Throttle`), so its cost does not grow with the job.
"""

from __future__ import annotations

import html
import sys
import time

from .outcome import Status
from .report import counted

__all__ = ["Callback", "NotebookProgress", "TerminalProgress", "Throttle", "display",
           "failed_in", "in_notebook"]

#: The statuses every display shows as failed (:attr:`Status.counts_as_failed`), as strings:
#: counting a chunk's failures is then a set lookup per symbol, not an enum per symbol.
_FAILED = frozenset(s.value for s in Status if s.counts_as_failed)


def failed_in(outcomes) -> int:
    """How many of ``outcomes`` every display counts as failed."""
    return sum(o["status"] in _FAILED for o in outcomes)


class Throttle:
    """Says when a display is due a redraw: at most once every ``seconds``, or whenever
    asked ``now`` (the last event of a job, its end); the first call always is.

    Drawing is what costs (a terminal render, a message to the notebook's front end per
    widget value); the counts behind a drawing are kept on every event, so a skipped
    redraw loses nothing: the next one shows them.
    """

    __slots__ = ("seconds", "last")

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.last = None

    def __call__(self, now: bool = False) -> bool:
        t = time.monotonic()
        if not now and self.last is not None and t - self.last < self.seconds:
            return False
        self.last = t
        return True


class Callback:
    """Receives a job's events. Every method is optional; the base class ignores them all.

    Order: ``on_start`` once, then ``set_size`` once, then ``on_symbols`` as chunks finish,
    ``on_progress`` as symbols finish (inside running chunks too), ``on_write`` after each
    committed batch and ``on_chunks`` after each task's result (interleaved), then
    ``on_finish`` once.
    """

    def on_start(self, info: dict) -> None:
        """The job is planned: ``info`` has ``job_id, mode, n_symbols, n_chunks,
        dashboard_link, db``."""

    def set_size(self, n_symbols: int) -> None:
        """How many symbols the job will report on."""

    def on_symbols(self, outcomes: list[dict]) -> None:
        """Symbols finished (one dict each: ``symbol, status, rows, error, ...``)."""

    def on_progress(self, done: int, total: int) -> None:
        """``done`` of ``total`` symbols are finished, counting those done inside chunks
        still running (whose outcomes ``on_symbols`` brings later); never decreases."""

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
    """A progress bar on the terminal (stderr), with rows written and failures so far.

    The bar is updated at most every :attr:`EVERY` seconds: rich redraws it ten times a
    second, so more updates than that are never seen.
    """

    EVERY = 0.1

    def __init__(self, file=None):
        from rich.console import Console

        self.console = Console(file=file or sys.stderr)
        self._progress = None
        self._task = None
        self._failed = self._rows = self._done = self._total = 0
        self._due = Throttle(self.EVERY)

    def on_start(self, info):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console.print(headline(info))
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
        self._total = info["n_symbols"]
        self._task = self._progress.add_task("ingest", total=self._total, rows=0, failed=0)

    def set_size(self, n_symbols):
        self._total = n_symbols
        self._update(now=True)

    def on_symbols(self, outcomes):
        self._failed += failed_in(outcomes)
        self._update()

    def on_progress(self, done, total):
        self._done, self._total = done, total
        self._update(now=done >= total)

    def on_write(self, rows, total_rows):
        self._rows = total_rows
        self._update()

    def on_note(self, text):
        self.console.print(f"kdist: {text}")

    def on_finish(self, report):
        if self._progress is not None:
            self._update(now=True)  # the counts the last skipped update would have shown
            self._progress.stop()

    def _update(self, now: bool = False):
        if self._progress is not None and self._due(now):
            self._progress.update(self._task, completed=self._done, total=self._total,
                                  rows=self._rows, failed=self._failed)


def headline(info: dict) -> str:
    """What a display says when a job starts (``info`` as :meth:`Callback.on_start` gets)."""
    return (f"kdist job {info['job_id']}: {counted(info['n_symbols'], 'symbol')} in "
            f"{counted(info['n_chunks'], 'chunk')} on {info['mode']} -> {info['db']}")


def dashboard_html(link: str) -> str:
    """The dashboard's link as notebook displays show it, opening in a new tab."""
    return (f"Dask dashboard: <a href='{html.escape(link)}' target='_blank'>"
            f"{html.escape(link)}</a>")


def in_notebook() -> bool:
    """Whether this is a Jupyter kernel (where a notebook shows what a cell displays)."""
    if "IPython" not in sys.modules:  # never import IPython only to ask
        return False
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and (type(shell).__name__ == "ZMQInteractiveShell"
                                  or "IPKernelApp" in getattr(shell, "config", {}))


def display(progress: bool | None) -> Callback:
    """The progress display a call of the public API shows: in a notebook, a live bar unless
    ``progress=False``; elsewhere none unless ``progress=True`` (then the terminal bar)."""
    if progress is False or (progress is None and not in_notebook()):
        return Callback()
    return NotebookProgress() if in_notebook() else TerminalProgress()


class NotebookProgress(Callback):
    """A live progress display in a notebook cell's output: the symbols bar with n/N, rows,
    failures and time left, the dashboard link while the cluster runs, notes, and the
    report at the end.

    An ipywidgets bar where ipywidgets is installed, otherwise a line of text updated in
    place. Redrawn at most :attr:`EVERY` seconds apart, so thousands of symbols do not flood
    the front end.
    """

    EVERY = 0.25

    def __init__(self):
        self._done = self._total = self._rows = self._failed = 0
        self._t0 = 0.0
        self._due = Throttle(self.EVERY)
        self._bar = self._label = self._text = self._dashboard = self._notes_html = None
        self._notes: list[str] = []

    def on_start(self, info):
        from IPython.display import HTML
        from IPython.display import display as show

        self._t0 = time.monotonic()
        self._total = info["n_symbols"]
        head = headline(info)
        link = info.get("dashboard_link")
        dash = dashboard_html(link) if link else ""
        try:
            import ipywidgets as W
        except ImportError:
            show(HTML(f"<div>{html.escape(head)}</div><div>{dash}</div>"))
            self._text = show(HTML(self._line()), display_id=True)
            return
        self._bar = W.IntProgress(value=0, min=0, max=max(1, self._total),
                                  description="symbols", bar_style="info")
        self._label = W.HTML(self._line())
        self._dashboard = W.HTML(dash)
        self._notes_html = W.HTML()
        show(W.VBox([W.HTML(html.escape(head)), self._dashboard,
                     W.HBox([self._bar, self._label]), self._notes_html]))

    def set_size(self, n_symbols):
        self._total = n_symbols
        if self._bar is not None:
            self._bar.max = max(1, n_symbols)

    def on_progress(self, done, total):
        self._done, self._total = done, total
        self._draw(done >= total)

    def on_symbols(self, outcomes):
        self._failed += failed_in(outcomes)

    def on_write(self, rows, total_rows):
        self._rows = total_rows
        self._draw()

    def on_note(self, text):
        self._notes.append(text)
        if self._notes_html is not None:
            self._notes_html.value = "<br>".join(f"kdist: {html.escape(n)}"
                                                 for n in self._notes[-5:])
        else:
            print(f"kdist: {text}")

    def on_finish(self, report):
        self._draw(True)
        if self._bar is not None:
            self._bar.bar_style = "danger" if report.symbols_failed else "success"
        if self._dashboard is not None and self._dashboard.value and report.cluster_closed:
            self._dashboard.value += " (closed with the job: a cluster it started for itself)"

    def _line(self) -> str:
        elapsed = time.monotonic() - self._t0 if self._t0 else 0.0
        left = (f", about {elapsed / self._done * (self._total - self._done):.0f} s left"
                if 0 < self._done < self._total else "")
        failed = f", {self._failed:,} failed" if self._failed else ""
        return (f"{self._done:,}/{self._total:,} symbols, {self._rows:,} rows{failed} "
                f"({elapsed:.0f} s{left})")

    def _draw(self, now: bool = False):
        if not self._due(now):
            return
        if self._bar is not None:
            self._bar.value = min(self._done, self._bar.max)
            self._label.value = html.escape(self._line())
        elif self._text is not None:
            from IPython.display import HTML

            self._text.update(HTML(html.escape(self._line())))
