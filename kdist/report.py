"""The report of one import: what ran where, what each symbol came to, and how fast.

``str(report)`` is a readable summary, ``report.table()`` a terminal table,
``report.to_html()`` (the notebook repr) an HTML table, and ``report.to_dict()`` the JSON the
CLI prints with ``--json``.
"""

from __future__ import annotations

import html
from dataclasses import asdict, dataclass, field

from .outcome import JobStatus, Status

__all__ = ["Report", "counted", "reasons"]


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
        for o in outcomes:
            symbol, status = o["symbol"], o["status"]
            if status == Status.FAILED:
                continue
            if status == Status.OK:
                self.symbols_ok -= 1
                if o.get("revised") and symbol in self.revised:
                    self.revised.remove(symbol)
            elif status == Status.EMPTY:
                self.symbols_empty -= 1
                if symbol in self.empty:
                    self.empty.remove(symbol)
            elif status == Status.SKIPPED:
                self.symbols_skipped -= 1
            self.symbols_failed += 1
            self.unstored += 1
            self.failures[symbol] = reason

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
