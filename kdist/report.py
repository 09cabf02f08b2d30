"""The report of one import: what ran where, what each symbol came to, and how fast.

``str(report)`` is a readable summary, ``report.table()`` a terminal table,
``report.to_html()`` (the notebook repr) an HTML table, and ``report.to_dict()`` the JSON the
CLI prints with ``--json``. Where the client's time went, phase by phase, is measured by a
:class:`Clock` and kept in ``report.timings``.
"""

from __future__ import annotations

import html
import time
from dataclasses import asdict, dataclass, field

from .outcome import JobStatus, Status

__all__ = ["PHASES", "Clock", "Report", "counted", "reasons"]

#: The phases of a job's wall time as the client spends it, in :attr:`Report.timings`:
#:
#: - ``cluster``: starting and stopping the job's cluster, its shared gates, and watching it
#:   (the watchdog, silent workers, stopping chunks at the end);
#: - ``plan``: checking the symbols, dates and options, asking the store what it holds of
#:   them (stored symbols, incremental windows, actions to fetch), cutting the chunks;
#: - ``ledger``: recording the job and its symbols as pending, and its end;
#: - ``submit``: handing the chunks' tasks to the scheduler;
#: - ``wait``: waiting for workers, and receiving the results they finished;
#: - ``take``: taking a finished chunk's result into the batch;
#: - ``write``: the store's time: opening the file, writing batches (bars, the symbols'
#:   ledger rows and corporate actions in one transaction), letting readers in between
#:   batches, closing the file;
#: - ``progress``: the progress display's callbacks;
#: - ``report``: counting outcomes into the report;
#: - ``maintain``: upkeep of the store at the end of a job, after its writes;
#: - ``other``: the rest of the elapsed time, whatever no phase above names.
PHASES = ("cluster", "plan", "ledger", "submit", "wait", "take", "write", "progress",
          "report", "maintain", "other")


class Clock:
    """Splits a job's wall time into the named :data:`PHASES`, as the client spends it.

    The time since the last switch is charged to the phase then running, so nested phases
    count once: a batch written while a result is taken is ``write``, not ``take`` too, and
    the phases add up to the elapsed time by construction. Phases are coarse (a chunk's
    result, a batch, a start-up step), never one symbol: two ``perf_counter`` calls each.
    Only the job's own thread switches it.

    Examples
    --------
    >>> clock = Clock()
    >>> with clock.phase("plan"):
    ...     pass
    >>> clock.stop()
    >>> abs(sum(clock.timings().values()) - clock.elapsed()) < 1e-9
    True
    """

    def __init__(self):
        #: When the job started (``time.perf_counter()``).
        self.t0 = time.perf_counter()
        self.spent = dict.fromkeys(PHASES, 0.0)
        self.current = "other"
        self._since = self.t0
        self._stopped: float | None = None

    def switch(self, phase: str) -> str:
        """Charge the time since the last switch to the running phase, start ``phase``, and
        return the phase it ended (to switch back to). A stopped clock stays as it is."""
        if self._stopped is not None:
            return self.current
        now = time.perf_counter()
        ended, self.current = self.current, phase
        self.spent[ended] += now - self._since
        self._since = now
        return ended

    def phase(self, name: str) -> _Phase:
        """A context manager that runs ``name`` and then returns to the phase it found."""
        if name not in self.spent:
            raise ValueError(f"Unknown phase {name!r}; the phases are {', '.join(PHASES)}")
        return _Phase(self, name)

    def stop(self) -> None:
        """End the clock: the elapsed time and the phases stand still from now on."""
        if self._stopped is None:
            self.switch("other")
            self._stopped = self._since

    def elapsed(self) -> float:
        """Seconds since the job started, up to :meth:`stop` once stopped."""
        return (self._stopped if self._stopped is not None else time.perf_counter()) - self.t0

    def timings(self) -> dict[str, float]:
        """Seconds per phase up to now, ``other`` being the elapsed time less every named
        phase, so nothing hides: they add up to :meth:`elapsed`."""
        now = self._stopped if self._stopped is not None else time.perf_counter()
        spent = dict(self.spent)
        spent[self.current] += now - self._since
        named = {k: v for k, v in spent.items() if k != "other"}
        return {**named, "other": max(0.0, (now - self.t0) - sum(named.values()))}


class _Phase:
    """One use of :meth:`Clock.phase`: a plain class, cheaper to enter than a generator."""

    __slots__ = ("clock", "name", "previous")

    def __init__(self, clock: Clock, name: str):
        self.clock, self.name = clock, name

    def __enter__(self):
        self.previous = self.clock.switch(self.name)
        return self

    def __exit__(self, *exc):
        self.clock.switch(self.previous)
        return False


def counted(n: int, noun: str) -> str:
    """``n`` and the noun, plural unless one: ``1 symbol``, ``1,474 bars``."""
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def reasons(rejected: dict[str, int], sep: str = ", ") -> str:
    """Rejected rows by reason, as one phrase: ``1 high below low, 2 non-positive price``."""
    return sep.join(f"{n:,} {reason}" for reason, n in rejected.items())


@dataclass(repr=False)
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
    #: Symbols not fetched because the provider's circuit breaker opened (resumable).
    symbols_skipped: int = 0
    #: Symbols fetched whose bars or outcome could not be written (counted as failed; their
    #: ledger rows stay pending, so a resume fetches them again).
    unstored: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    empty: list[str] = field(default_factory=list)
    rows_written: int = 0
    #: Stored bars of other sources that this job's bars replaced: {source: bars}.
    replaced: dict[str, int] = field(default_factory=dict)
    rejected_rows: int = 0
    #: Seconds the call took, closing the store and its own cluster included (the ledger's
    #: ``elapsed_s`` is the job's up to its record, just before those).
    elapsed_s: float = 0.0
    dashboard_link: str | None = None
    #: True when the job ran on a cluster it started for itself, closed when the job
    #: returns: its dashboard link is then dead (a caller's cluster, or the one a notebook's
    #: calls share, stays up).
    cluster_closed: bool = False
    fallback_reason: str | None = None
    #: Why the job ran where it did when no scheduler was named (a small job in process).
    mode_reason: str | None = None
    #: Symbols whose stored overlap differed at the source, so they were fetched in full.
    revised: list[str] = field(default_factory=list)
    #: True when this run finished an earlier job (``resume=``): counts are this run's.
    resumed: bool = False
    incremental: bool = False
    #: Why the job stopped early, and what to do (e.g. the breaker opened).
    note: str | None = None
    #: Whether corporate actions were fetched with the bars, for how many symbols, and
    #: which of them had actions new to the store (a new ex-date, or a vendor revision).
    actions: bool = False
    actions_checked: int = 0
    actions_new: list[str] = field(default_factory=list)
    #: Symbols stored without corporate actions, the vendor having none for them (a
    #: permanent error): symbol -> reason. Their qfq/hfq reads are the vendor's stored bars.
    actions_failed: dict[str, str] = field(default_factory=dict)
    #: Where the client's wall time went: seconds per phase (:data:`PHASES`), adding up to
    #: ``elapsed_s``; measured by a :class:`Clock`, empty for a report not made by a job.
    timings: dict[str, float] = field(default_factory=dict)
    #: What an update did to keep ``kline`` clustered after its writes (:mod:`kdist.layout`),
    #: when it had to: the bars sorted into place and how long that took.
    maintained: str | None = None

    def count(self, outcomes) -> None:
        """Count symbols' outcomes (:func:`kdist.outcome.outcome` dicts) in the totals."""
        for o in outcomes:
            status = o["status"]
            if status == Status.OK:
                self.symbols_ok += 1
                if o.get("error"):  # ok, its corporate actions not (see fetching)
                    self.actions_failed[o["symbol"]] = f"{o['error_class']}: {o['error']}"
                if o.get("revised"):
                    self.revised.append(o["symbol"])
            elif status == Status.EMPTY:
                self.symbols_empty += 1
                self.empty.append(o["symbol"])
            elif status == Status.SKIPPED:
                self.symbols_skipped += 1
            else:
                self.symbols_failed += 1
                self.failures[o["symbol"]] = f"{o['error_class']}: {o['error']}"
            self.rejected_rows += o.get("rejected_rows", 0)

    def unstore(self, outcomes, error: BaseException) -> None:
        """Move symbols whose outcomes were counted but whose batch could not be written from
        ok, empty or skipped to failed ("not stored"): no symbol is reported ok unless its
        bars are in the file. Their ledger rows were to be written with their bars, so the
        ledger still has them pending and a resume fetches them again."""
        reason = f"{type(error).__name__}: not stored ({error})"
        moved = [o for o in outcomes if o["status"] != Status.FAILED]
        for o in moved:
            status = o["status"]
            if status == Status.OK:
                self.symbols_ok -= 1
            elif status == Status.EMPTY:
                self.symbols_empty -= 1
            elif status == Status.SKIPPED:
                self.symbols_skipped -= 1
            self.failures[o["symbol"]] = reason
        self.symbols_failed += len(moved)
        self.unstored += len(moved)
        # One pass over each list, not a search per symbol: a batch of many thousands of
        # symbols may fail to be written.
        gone = {o["symbol"] for o in moved if o["status"] == Status.OK and o.get("revised")}
        if gone:
            self.revised = [s for s in self.revised if s not in gone]
        gone = {o["symbol"] for o in moved if o["status"] == Status.EMPTY}
        if gone:
            self.empty = [s for s in self.empty if s not in gone]

    def final_status(self) -> str:
        """The job's status from this run's counts, once every symbol has an outcome."""
        if self.symbols_skipped:
            return JobStatus.INTERRUPTED  # the breaker stopped it: resumable later
        if self.symbols_failed == 0:
            return JobStatus.DONE
        if self.symbols_failed == self.n_symbols:
            return JobStatus.FAILED
        return JobStatus.PARTIAL

    @property
    def rows_per_s(self) -> float:
        return self.rows_written / self.elapsed_s if self.elapsed_s else 0.0

    def time_shares(self, least: float = 0.01) -> str:
        """Each phase's share of the elapsed time, largest first, in one line: ``wait 80%,
        write 12%, plan 2%``; phases under ``least`` of it are left out."""
        total = sum(self.timings.values())
        if total <= 0:
            return ""
        shares = sorted(((s / total, name) for name, s in self.timings.items()), reverse=True)
        shown = [f"{name} {share:.0%}" for share, name in shares if share >= least]
        rest = sum(share for share, _ in shares if share < least)
        return ", ".join(shown) + (f", the rest {rest:.0%}" if rest >= 0.005 else "")

    def to_dict(self) -> dict:
        """A JSON-ready dict of every field."""
        return asdict(self)

    def _rows(self):
        kind = ", ".join(k for k, on in (("resumed", self.resumed), ("incremental", self.incremental)) if on)
        rows = [
            ("job", self.job_id + (f" ({kind})" if kind else "")),
            ("status", self.status),
            ("mode", self.mode + (f" (fallback: {self.fallback_reason})" if self.fallback_reason
                                  else f" ({self.mode_reason})" if self.mode_reason else "")),
            ("provider", f"{self.provider}  {self.freq} {self.adjust}  {self.start} .. {self.end}"),
            ("symbols", f"{counted(self.n_symbols, 'symbol')} in {counted(self.n_chunks, 'chunk')}: "
                        f"{self.symbols_ok} ok, "
                        f"{self.symbols_empty} empty, {self.symbols_failed} failed"
                        + (f" ({self.unstored} not stored)" if self.unstored else "")
                        + (f", {self.symbols_skipped} skipped" if self.symbols_skipped else "")
                        + (f", {len(self.revised)} revised" if self.revised else "")),
            ("rows written", f"{self.rows_written:,}" + (f" ({self.rejected_rows:,} rejected)" if self.rejected_rows else "")
             + ("; replaced " + ", ".join(f"{counted(n, 'bar')} of {src}" for src, n in self.replaced.items())
                if self.replaced else "")),
            *([("corporate actions",
                f"checked for {counted(self.actions_checked, 'symbol')}; "
                f"{counted(len(self.actions_new), 'symbol')} with new ones"
                + (f" ({', '.join(self.actions_new[:5])}"
                   + (" ..." if len(self.actions_new) > 5 else "") + ")"
                   if self.actions_new else "")
                + (f"; none for {counted(len(self.actions_failed), 'symbol')} (stored "
                   f"without: {', '.join(list(self.actions_failed)[:3])}"
                   + (" ..." if len(self.actions_failed) > 3 else "") + ")"
                   if self.actions_failed else ""))] if self.actions else []),
            ("time", f"{self.elapsed_s:.1f} s ({self.rows_per_s:,.0f} rows/s)"),
            *([("client time", self.time_shares())] if self.timings else []),
            *([("layout", self.maintained)] if self.maintained else []),
            ("database", self.db),
        ]
        if self.dashboard_link:
            rows.append(("dashboard", self.dashboard_link + (" (closed with its cluster)"
                                                             if self.cluster_closed else "")))
        if self.note:
            rows.append(("note", self.note))
        return rows

    def _failure_lines(self, limit=10):
        items = list(self.failures.items())
        lines = [f"{s}: {r}" for s, r in items[:limit]]
        if len(items) > limit:
            lines.append(f"... and {len(items) - limit:,} more (kdist jobs {self.job_id})")
        return lines

    def __repr__(self):
        return (
            f"<Report {self.job_id} {self.status} on {self.mode}: "
            f"{counted(self.n_symbols, 'symbol')}, "
            f"{self.symbols_ok} ok, {self.symbols_empty} empty, {self.symbols_failed} failed, "
            f"{self.rows_written:,} rows in {self.elapsed_s:.1f} s>"
        )

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
        return self.to_html()

    def to_html(self) -> str:
        """The summary as an HTML table, as notebooks show it."""
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th><td style='text-align:left'>"
            f"{html.escape(str(v))}</td></tr>"
            for k, v in self._rows()
        )
        fails = "".join(f"<li>{html.escape(line)}</li>" for line in self._failure_lines())
        fails = f"<p><b>failures</b></p><ul>{fails}</ul>" if fails else ""
        return f"<div><b>kdist import</b><table>{rows}</table>{fails}</div>"
