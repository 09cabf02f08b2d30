"""The ingest loop and fetch_chunk, in process (client="sync"): outcomes, batches, re-runs."""

from __future__ import annotations

import dask
import pandas as pd
import pytest

import kdist
from kdist.errors import InvalidSymbolError, JobFailedError, UsageError
from kdist.progress import Callback
from kdist.fetching import fetch_chunk
from kdist.plan import Chunk

SYMBOLS = ["600000.SH", "000001.SZ", "600001.SH", "000002.SZ", "830799.BJ"]
WINDOW = {"start": "2024-01-01", "end": "2024-06-30"}


class Recorder(Callback):
    def __init__(self):
        self.events = []

    def on_start(self, info):
        self.events.append(("start", info["n_symbols"], info["n_chunks"]))

    def set_size(self, n):
        self.events.append(("size", n))

    def on_symbols(self, outcomes):
        self.events.append(("symbols", [o["status"] for o in outcomes]))

    def on_write(self, rows, total):
        self.events.append(("write", rows, total))

    def on_chunks(self, done, total):
        self.events.append(("chunks", done, total))

    def on_finish(self, report):
        self.events.append(("finish", report.status))


def test_ingest_stores_every_symbol_and_reports(db):
    report = kdist.ingest(SYMBOLS, **WINDOW, db=db, client="sync")
    stored = kdist.load(db)
    assert report.status == "done"
    assert report.mode == "sync"
    assert report.symbols_ok == 5 and report.symbols_failed == 0
    assert report.rows_written == len(stored) > 0
    assert sorted(stored["symbol"].unique()) == sorted(SYMBOLS)
    assert kdist.check(db)["ok"]
    assert "5 ok" in str(report) and "<table>" in report._repr_html_()


def test_one_failing_of_a_hundred_stores_the_other_99(db):
    symbols = kdist.get_provider("synthetic").list_symbols()
    provider = kdist.get_provider("synthetic", fail=symbols[17])
    report = kdist.ingest(symbols, **WINDOW, provider=provider, db=db, client="sync")
    assert report.status == "partial"
    assert report.symbols_ok == 99 and report.symbols_failed == 1
    assert list(report.failures) == [symbols[17]]
    assert "PermanentProviderError" in report.failures[symbols[17]]
    assert kdist.load(db)["symbol"].nunique() == 99
    with kdist.Store(db, read_only=True) as store:
        ledger = store.job_symbols(report.job_id, status="failed")
    assert ledger["symbol"].tolist() == [symbols[17]]
    assert ledger["attempts"].tolist() == [1]  # permanent: never retried


def test_transient_errors_are_retried_and_attempts_recorded(db):
    provider = kdist.get_provider("synthetic", flaky=0.5, seed=3)
    report = kdist.ingest(SYMBOLS, **WINDOW, provider=provider, db=db, client="sync", retries=8)
    assert report.symbols_failed == 0
    with kdist.Store(db, read_only=True) as store:
        attempts = store.job_symbols(report.job_id)["attempts"]
    assert attempts.max() > 1  # some symbol needed a retry, and it was counted


def test_empty_symbol_is_reported_as_empty_not_ok(db):
    provider = kdist.get_provider("synthetic", empty="000001.SZ")
    report = kdist.ingest(SYMBOLS, **WINDOW, provider=provider, db=db, client="sync")
    assert report.status == "done"
    assert report.symbols_empty == 1 and report.empty == ["000001.SZ"]
    assert report.symbols_ok == 4


def test_all_failing_raises_job_failed_with_report(db):
    provider = kdist.get_provider("synthetic", fail=",".join(SYMBOLS))
    with pytest.raises(JobFailedError) as info:
        kdist.ingest(SYMBOLS, **WINDOW, provider=provider, db=db, client="sync")
    assert info.value.report.symbols_failed == 5
    with kdist.Store(db, read_only=True) as store:
        assert store.jobs()["status"].tolist() == ["failed"]


def test_rerun_is_idempotent(db, fingerprint):
    kdist.ingest(SYMBOLS, **WINDOW, db=db, client="sync")
    first = fingerprint(db)
    kdist.ingest(SYMBOLS, **WINDOW, db=db, client="sync", chunk_size=2)
    pd.testing.assert_frame_equal(fingerprint(db), first)
    assert kdist.check(db)["duplicate_keys"] == 0


def test_rerun_after_the_source_changed_fetches_again(db, fingerprint):
    kdist.ingest(SYMBOLS, **WINDOW, db=db, client="sync")
    first = fingerprint(db)
    kdist.ingest(SYMBOLS, **WINDOW, db=db, client="sync", provider=kdist.get_provider("synthetic", seed=1))
    second = fingerprint(db)
    assert (second["bars"] == first["bars"]).all()
    assert (second["value_hash"] != first["value_hash"]).all()


@pytest.mark.parametrize("chunk_size", [1, 2, 7])
def test_any_chunk_size_stores_the_same_table(tmp_path, chunk_size, fingerprint):
    ref, other = str(tmp_path / "ref.duckdb"), str(tmp_path / "other.duckdb")
    kdist.ingest(SYMBOLS, **WINDOW, db=ref, client="sync")
    kdist.ingest(SYMBOLS, **WINDOW, db=other, client="sync", chunk_size=chunk_size)
    pd.testing.assert_frame_equal(fingerprint(other), fingerprint(ref))


def test_small_batches_are_written_as_results_arrive(db):
    recorder = Recorder()
    report = kdist.ingest(SYMBOLS, **WINDOW, db=db, client="sync", chunk_size=1, batch_rows=1, callback=recorder)
    writes = [e for e in recorder.events if e[0] == "write" and e[1] > 0]
    assert len(writes) >= 2  # batches go out as chunks finish: never gathered at the end
    assert sum(w[1] for w in writes) == report.rows_written
    assert writes[-1][2] == report.rows_written
    assert recorder.events[0] == ("start", 5, 5)
    assert recorder.events[-1] == ("finish", "done")
    chunks = [e[1:] for e in recorder.events if e[0] == "chunks"]
    assert chunks == [(i, 5) for i in range(1, 6)]


def test_while_the_last_chunks_run_the_waiting_bars_are_written(db):
    # Twelve one-symbol chunks, at most four in flight: the last four run while the client
    # has nothing left to submit, and it writes what it holds rather than wait for the end.
    # Each symbol takes 0.15 s at the source, longer than a write: a chunk still running
    # when the client looks, as on a network.
    symbols = kdist.get_provider("synthetic").list_symbols()[:12]
    recorder = Recorder()
    report = kdist.ingest(symbols, **WINDOW, db=db, client="sync", chunk_size=1,
                          batch_rows=500, flush_seconds=3600, max_in_flight=4,
                          callback=recorder,
                          provider=kdist.get_provider("synthetic", latency=0.15))
    writes = [e[1] for e in recorder.events if e[0] == "write" and e[1] > 0]
    assert sum(writes) == report.rows_written == 12 * 128  # 128 bars each
    # Full batches every four symbols; then, draining, one symbol's bars at a time (a quarter
    # of a batch is enough), so the end writes the last chunk's bars, not the last four's.
    assert writes[-1] == 128 and len(writes) >= 4


def test_invalid_symbols_refused_before_anything_is_written(db):
    with pytest.raises(InvalidSymbolError) as info:
        kdist.ingest(["600000.SH", "x'; DROP TABLE kline;--"], **WINDOW, db=db, client="sync")
    assert "DROP TABLE" in str(info.value)
    import os

    assert not os.path.exists(db)


def test_skip_invalid_records_them_as_failed(db):
    report = kdist.ingest(["600000.SH", "bad/symbol"], **WINDOW, db=db, client="sync", skip_invalid=True)
    assert report.symbols_ok == 1 and report.symbols_failed == 1
    assert "bad/symbol" in report.failures


def test_start_after_end_is_a_usage_error(db):
    with pytest.raises(UsageError, match="after end"):
        kdist.ingest(SYMBOLS, start="2024-06-30", end="2024-01-01", db=db, client="sync")


def test_cancel_event_stops_and_marks_the_job(db):
    import threading

    cancel = threading.Event()

    class CancelAfterFirst(Callback):
        def on_symbols(self, outcomes):
            cancel.set()

    provider = kdist.get_provider("synthetic", latency=0.05)
    report = kdist.ingest(SYMBOLS, **WINDOW, provider=provider, db=db, client="sync", chunk_size=1,
                          callback=CancelAfterFirst(), cancel=cancel)
    assert report.status == "cancelled"
    assert 1 <= report.symbols_ok < 5
    assert kdist.load(db)["symbol"].nunique() == report.symbols_ok  # finished work was kept


def test_chunk_tasks_compose_with_dask():
    tasks = kdist.chunk_tasks(SYMBOLS, **WINDOW, chunk_size=2, job_id="test")
    assert [t.key for t in tasks] == [f"kdist-test-chunk-{i:05d}" for i in range(3)]
    results = dask.compute(*tasks, scheduler="sync")
    assert sum(len(r.outcomes) for r in results) == 5
    again = kdist.chunk_tasks(SYMBOLS, **WINDOW, chunk_size=2)
    assert {t.key for t in again}.isdisjoint(t.key for t in tasks)  # never a cached result


def test_fetch_chunk_isolates_a_failing_symbol():
    provider = kdist.get_provider("synthetic", fail="000001.SZ")
    lo, hi = pd.Timestamp("2024-01-01"), pd.Timestamp("2024-02-01")
    result = fetch_chunk(provider, Chunk(0, ("600000.SH", "000001.SZ", "600001.SH"), lo, hi),
                         kdist.Freq.DAY, kdist.Adjust.NONE)
    assert [o["status"] for o in result.outcomes] == ["ok", "failed", "ok"]
    assert set(result.bars["symbol"]) == {"600000.SH", "600001.SH"}
    assert result.bars["ts"].between(lo, hi, inclusive="left").all()


def test_fetch_returns_a_frame_without_storing(tmp_path):
    frame = kdist.fetch(SYMBOLS[:2], **WINDOW)
    assert set(frame["symbol"]) == set(SYMBOLS[:2])
    assert list(tmp_path.iterdir()) == []
    with pytest.warns(UserWarning, match="1 symbol"):
        kdist.fetch(SYMBOLS[:2], **WINDOW, provider=kdist.get_provider("synthetic", fail=SYMBOLS[0]))


def test_report_repr_is_one_readable_line(db):
    report = kdist.ingest(SYMBOLS[:2], **WINDOW, db=db, client="sync")
    text = repr(report)
    assert "\n" not in text and text.startswith(f"<Report {report.job_id} done on sync: 2 symbols")
    assert f"{report.rows_written:,} rows" in text


class _Writes:
    """Stands in for the store: records what each transaction would write."""

    def __init__(self):
        self.calls = []

    def write_batch(self, bars, outcomes, *, windows, **job):
        self.calls.append((bars.copy(), [o["symbol"] for o in outcomes], list(windows["symbol"])))
        return len(bars)


def test_batches_commit_whole_row_groups_and_carry_the_rest(monkeypatch):
    from kdist import batch as batches
    from kdist.fetching import ChunkResult, outcome

    monkeypatch.setattr(batches, "ROW_GROUP", 10)
    chunk = Chunk(0, ("A", "B", "C"), pd.Timestamp("2024-01-01"), pd.Timestamp("2024-02-01"))
    days = pd.date_range("2024-01-02", periods=7, freq="D")
    bars = pd.concat([pd.DataFrame({"symbol": s, "ts": days, "close": 1.0}) for s in "ABC"],
                     ignore_index=True)
    outcomes = [outcome(s, "ok", rows=7, start=chunk.start) for s in "ABC"]
    outcomes.append(outcome("D", "failed", error=ValueError("x")))
    batch = batches.Batch(stored={"A", "C"})
    batch.add(ChunkResult(0, bars, outcomes), chunk)
    store = _Writes()
    assert batch.write(store, final=False, job_id="j") == 20  # 21 rows: two row groups now
    written, recorded, replaced = store.calls[0]
    assert len(written) == 20 and recorded == ["A", "B", "D"]  # C's last bar waits
    assert replaced == ["A", "C"]  # C's stored window goes now, before its first bars
    assert batch.rows == 1 and [o["symbol"] for o in batch.outcomes] == ["C"]
    assert batch.write(store, final=True, job_id="j") == 1
    written, recorded, replaced = store.calls[1]
    assert list(written["symbol"]) == ["C"] and recorded == ["C"] and replaced == []


def test_an_import_in_row_group_batches_stores_every_bar_once(db, tmp_path, monkeypatch,
                                                               fingerprint):
    from kdist import batch

    whole = tmp_path / "whole.duckdb"
    kdist.ingest(SYMBOLS, **WINDOW, db=whole, client="sync")  # one batch
    monkeypatch.setattr(batch, "ROW_GROUP", 50)
    report = kdist.ingest(SYMBOLS, **WINDOW, db=db, client="sync", chunk_size=2, batch_rows=100)
    assert report.status == "done" and report.symbols_ok == len(SYMBOLS)
    pd.testing.assert_frame_equal(fingerprint(db), fingerprint(whole))
    with kdist.Store(db, read_only=True) as store:
        ledger = store.job_symbols(report.job_id)
    assert (ledger["status"] == "ok").all() and ledger["rows"].sum() == report.rows_written


def test_the_last_row_groups_are_written_while_the_last_chunks_run():
    # A batch holding a whole row group is written once the bars still to come (as many per
    # symbol as so far) would not fill a batch: waiting for a full one put most of a job's
    # last batch after its last chunk, on the job's time.
    from types import SimpleNamespace

    from kdist.batch import ROW_GROUP
    from kdist.loop import JobLoop

    loop = SimpleNamespace(batch=SimpleNamespace(rows=ROW_GROUP), finished=500,
                           taken_rows=500 * 257, report=SimpleNamespace(n_symbols=1000),
                           batch_rows=2 * ROW_GROUP)
    assert JobLoop.ending(loop)  # 128,500 bars to come: less than a batch
    loop.report.n_symbols = 1500  # 257,000 to come: the batch fills again first
    assert not JobLoop.ending(loop)
    loop.report.n_symbols, loop.batch.rows = 1000, ROW_GROUP - 1  # not a whole row group
    assert not JobLoop.ending(loop)
    loop.finished = 0  # nothing taken yet: nothing to go by
    assert not JobLoop.ending(loop)
