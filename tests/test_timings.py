"""Where a job's time goes: the phase clock on the report, and the changes made so that the
client's own work stays small on a big universe keep their results."""

from __future__ import annotations

import io
import json
import types

import pandas as pd
import pytest

import kdist
from kdist import report as report_module
from kdist.loop import _job_status
from kdist.outcome import Status, outcome
from kdist.plan import plan_chunks
from kdist.progress import TerminalProgress, Throttle, failed_in
from kdist.report import PHASES, Clock, Report

WINDOW = dict(start="2024-01-01", end="2024-12-31")


@pytest.fixture(scope="module")
def local_job(tmp_path_factory):
    """A real job of 300 symbols on a local cluster kdist starts and stops itself (2 workers
    x 1 thread): ``(report, db)``."""
    db = str(tmp_path_factory.mktemp("timings") / "kdist.duckdb")
    symbols = kdist.get_provider("synthetic", universe=300).list_symbols()
    report = kdist.ingest(symbols, **WINDOW, db=db, client="local", n_workers=2,
                          threads_per_worker=1)
    return report, db


def test_the_phases_add_up_to_the_elapsed_time(local_job):
    report, _ = local_job
    assert report.mode == "local" and report.status == "done"
    timings = report.timings
    assert list(timings) == list(PHASES)
    assert all(seconds >= 0 for seconds in timings.values()), timings
    assert sum(timings.values()) == pytest.approx(report.elapsed_s, abs=0.002)
    # What no phase names is small: the clock leaves nothing big out.
    assert timings["other"] <= max(0.25, 0.05 * report.elapsed_s), timings
    # Each of the job's steps was timed where it happened.
    for phase in ("cluster", "plan", "ledger", "submit", "wait", "write"):
        assert timings[phase] > 0, (phase, timings)


def test_the_elapsed_time_holds_closing_the_store_and_the_cluster(local_job):
    """The report's time is the call's, its cluster's stop included; the ledger's is the job's
    up to its record, which comes before."""
    report, db = local_job
    jobs = kdist.jobs(db)
    assert 0 < jobs["elapsed_s"].iat[0] <= report.elapsed_s
    assert report.timings["cluster"] > 0


def test_the_report_shows_where_the_time_went(local_job):
    report, _ = local_job
    [line] = [v for k, v in report._rows() if k == "client time"]
    parts = [part.rsplit(" ", 1) for part in line.split(", ")]
    assert all(name in PHASES or name == "the rest" for name, _ in parts), line
    shares = [int(share.rstrip("%")) for _, share in parts]
    assert 95 <= sum(shares) <= 105 and shares[:-1] == sorted(shares[:-1], reverse=True)
    assert "client time" in str(report) and "client time" in report.to_html()
    data = json.loads(json.dumps(report.to_dict()))
    assert data["timings"] == report.timings


def test_the_ledger_has_one_row_per_symbol(local_job):
    report, db = local_job
    ledger = kdist.ledger(db, report.job_id)
    assert len(ledger) == ledger["symbol"].nunique() == report.n_symbols == 300
    assert set(ledger["status"]) == {"ok"}
    assert int(ledger["rows"].sum()) == report.rows_written


def test_a_report_not_made_by_a_job_has_no_time_line():
    report = Report("j", "done", "sync", "synthetic", "1d", "none", "a", "b", "x.duckdb")
    assert report.timings == {} and "client time" not in str(report)


def _fake_time(monkeypatch) -> list[float]:
    """The clock's ``perf_counter`` reads the returned list's one value."""
    now = [100.0]
    monkeypatch.setattr(report_module, "time",
                        types.SimpleNamespace(perf_counter=lambda: now[0]))
    return now


def test_nested_phases_count_once(monkeypatch):
    now = _fake_time(monkeypatch)
    clock = Clock()
    now[0] += 1  # other
    with clock.phase("take"):
        now[0] += 2
        with clock.phase("write"):  # a batch written while a result is taken
            now[0] += 5
        now[0] += 1
    with clock.phase("take"):
        now[0] += 1
    now[0] += 0.5
    clock.stop()
    now[0] += 10  # after the stop: counts nowhere
    timings = clock.timings()
    assert timings["take"] == 4 and timings["write"] == 5 and timings["other"] == 1.5
    assert clock.elapsed() == sum(timings.values()) == 10.5


def test_a_phase_ends_when_its_block_raises(monkeypatch):
    now = _fake_time(monkeypatch)
    clock = Clock()
    with pytest.raises(RuntimeError), clock.phase("write"):
        now[0] += 2
        raise RuntimeError("disk full")
    now[0] += 3
    assert clock.current == "other"
    assert clock.timings()["write"] == 2 and clock.timings()["other"] == 3


def test_an_unknown_phase_is_refused():
    with pytest.raises(ValueError, match="Unknown phase 'sleep'; the phases are cluster"):
        Clock().phase("sleep")


# -- what changed for speed keeps its results ---------------------------------------------


def test_unstore_moves_each_symbol_once_and_keeps_the_order():
    counted = [outcome("A", Status.OK, revised=True), outcome("B", Status.EMPTY),
               outcome("C", Status.OK, revised=True), outcome("D", Status.EMPTY),
               outcome("E", Status.FAILED, error=ValueError("bad")),
               outcome("F", Status.SKIPPED), outcome("G", Status.OK)]
    report = Report("j", "running", "local", "synthetic", "1d", "none", "a", "b", "x",
                    n_symbols=7)
    report.count(counted)
    report.unstore([counted[i] for i in (2, 3, 4, 5, 6)], OSError("disk full"))
    assert (report.symbols_ok, report.symbols_empty, report.symbols_skipped,
            report.symbols_failed, report.unstored) == (1, 1, 0, 5, 4)
    assert report.revised == ["A"] and report.empty == ["B"]
    reason = "OSError: not stored (disk full)"
    assert report.failures == {"E": "ValueError: bad", "C": reason, "D": reason,
                               "F": reason, "G": reason}


def test_the_symbol_counts_are_the_ledger_s(db):
    report = kdist.ingest(["600000.SH", "000001.SZ", "000002.SZ"], **WINDOW, db=db,
                          client="sync", provider=kdist.get_provider(
                              "synthetic", fail="000001.SZ", empty="000002.SZ"))
    with kdist.Store(db, read_only=True) as store:
        counts = store.symbol_counts(report.job_id)
        assert counts == store.job_symbols(report.job_id)["status"].value_counts().to_dict()
        assert counts == {"ok": 1, "failed": 1, "empty": 1}
        assert _job_status(store, report.job_id, "done") == "partial"
        assert _job_status(store, report.job_id, "cancelled") == "cancelled"


def test_a_resumed_job_ends_with_every_symbol_counted(db):
    failing = kdist.get_provider("synthetic", fail="000001.SZ")
    first = kdist.ingest(["600000.SH", "000001.SZ"], **WINDOW, db=db, client="sync",
                         provider=failing)
    assert first.status == "partial"
    again = kdist.ingest(resume=first.job_id, db=db, client="sync", options={"fail": ""})
    assert again.status == "done" and again.n_symbols == 1
    assert kdist.jobs(db)["status"].iat[0] == "done"


def test_the_report_has_the_writes_of_every_batch(db):
    """What the writes did reaches the report once, at the end, from every batch."""
    class Writes(kdist.Callback):
        batches = 0

        def on_write(self, rows, total_rows):
            self.batches += 1

    symbols = kdist.get_provider("synthetic", universe=40).list_symbols()
    writes = Writes()
    report = kdist.ingest(symbols, **WINDOW, db=db, client="sync", batch_rows=1000,
                          chunk_size=5, callback=writes)
    assert report.actions and writes.batches > 2
    assert report.actions_checked == 40
    with kdist.Store(db, read_only=True) as store:
        with_actions = set(store.actions()["symbol"])
    assert report.actions_new == sorted(with_actions) and with_actions


def test_incremental_chunks_keep_each_symbol_s_window():
    symbols = [f"{600000 + i:06d}.SH" for i in range(30)]
    start, end = pd.Timestamp("2024-01-01"), pd.Timestamp("2024-07-01")
    since = [pd.Timestamp("2024-06-20") if i % 3 else pd.Timestamp("2024-05-02")
             for i in range(30)]
    windows = pd.DataFrame({"symbol": symbols, "since": since, "full": start}).astype(
        {"since": "datetime64[us]", "full": "datetime64[us]"}).iloc[::-1]
    chunks = plan_chunks(symbols, start, end, chunk_size=7, windows=windows)
    got = {s: c.window(i) for c in chunks for i, s in enumerate(c.symbols)}
    assert got == {s: (d, start) for s, d in zip(symbols, since)}
    assert all(type(t) is pd.Timestamp for c in chunks for t in c.since + c.full)


def test_failed_in_counts_what_displays_show_as_failed():
    outcomes = [{"status": s.value} for s in Status]
    assert failed_in(outcomes) == sum(s.counts_as_failed for s in Status) == 2


def test_throttle_says_when_a_redraw_is_due(monkeypatch):
    now = [10.0]
    monkeypatch.setattr("kdist.progress.time",
                        types.SimpleNamespace(monotonic=lambda: now[0]))
    due = Throttle(0.25)
    assert due() and not due()
    now[0] += 0.1
    assert not due() and due(now=True)
    now[0] += 0.3
    assert due()


def _events(callback, n_chunks: int, per_chunk: int = 5):
    """A job's events, as many chunks as asked, each with one failed symbol."""
    n = n_chunks * per_chunk
    callback.on_start({"job_id": "j", "mode": "local", "n_symbols": n,
                       "n_chunks": n_chunks, "dashboard_link": None, "db": "x.duckdb"})
    callback.set_size(n)
    for k in range(n_chunks):
        callback.on_symbols([{"symbol": f"S{k}-{i}", "status": "failed" if i == 0 else "ok",
                              "error": "bad"} for i in range(per_chunk)])
        callback.on_progress((k + 1) * per_chunk, n)
        callback.on_chunks(k + 1, n_chunks)
        callback.on_write(10, (k + 1) * 10)


class _CountedBar(TerminalProgress):
    """The terminal bar, counting its updates of rich's bar."""

    def on_start(self, info):
        super().on_start(info)
        self.updates = 0
        update = self._progress.update

        def counted(*args, **kwargs):
            self.updates += 1
            update(*args, **kwargs)

        self._progress.update = counted


def test_the_terminal_bar_is_redrawn_a_few_times_and_ends_on_the_last_counts():
    bar = _CountedBar(file=io.StringIO())
    _events(bar, 2000)
    bar.on_finish(None)
    task = bar._progress.tasks[0]
    assert (task.completed, task.total, task.fields["rows"], task.fields["failed"]) == (
        10_000, 10_000, 20_000, 2000)
    assert bar.updates < 100  # for 8,000 events


def test_the_panel_is_redrawn_a_few_times_and_ends_on_the_last_counts():
    W = pytest.importorskip("ipywidgets")
    widgets = pytest.importorskip("kdist.widgets")
    panel = widgets.IngestPanel(db="unused.duckdb", symbols="600000.SH")
    changes = []
    for widget in (panel.symbols_bar, panel.chunks_bar, panel.symbols_count,
                   panel.chunks_count, panel.rows_label, panel.rate_label, panel.failures):
        widget.observe(changes.append, names="value")
    progress = widgets._PanelProgress(panel)
    _events(progress, 2000)
    progress.on_finish(None)
    assert (panel.symbols_count.value, panel.chunks_count.value) == ("10,000/10,000",
                                                                    "2,000/2,000")
    assert panel.symbols_bar.value == 10_000 and panel.rows_label.value == "20,000 rows written"
    assert "Failed or skipped (2000)" in panel.failures.value
    assert len(changes) < 200  # for 8,000 events, each of which moved a bar before
