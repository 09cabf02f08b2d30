"""Resume, cancel, incremental updates, timeouts, validation in the ledger, in process.

The provider call log (synthetic option call_log: one "SYMBOL START END" line per call)
proves what was fetched; the oracle (per-symbol count and value hash) proves what is stored.
"""

from __future__ import annotations

import json
import threading
import time

import pandas as pd
import pytest

import kdist
from kdist.errors import DatabaseLockedError, StoreError, UsageError
from kdist.progress import Callback
from kdist.providers import Provider
from kdist.providers.synthetic import SyntheticProvider

SYMBOLS = kdist.get_provider("synthetic", universe=12).list_symbols()
WINDOW = {"start": "2024-01-01", "end": "2024-06-28"}


def calls(log) -> list[list[str]]:
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def reference(tmp_path, fingerprint):
    def make(**kwargs):
        db = str(tmp_path / f"ref-{len(list(tmp_path.iterdir()))}.duckdb")
        kdist.ingest(kwargs.pop("symbols", SYMBOLS), **{**WINDOW, **kwargs}, db=db, client="sync")
        return fingerprint(db)

    return make


class CancelAfter(Callback):
    def __init__(self, event, n):
        self.event, self.n, self.seen = event, n, 0

    def on_symbols(self, outcomes):
        self.seen += len(outcomes)
        if self.seen >= self.n:
            self.event.set()


def test_cancel_then_resume_fetches_only_the_rest(db, tmp_path, reference, fingerprint):
    log = tmp_path / "calls.log"
    cancel = threading.Event()
    provider = kdist.get_provider("synthetic", call_log=str(log), latency=0.02)
    first = kdist.ingest(SYMBOLS, **WINDOW, provider=provider, db=db, client="sync", chunk_size=1,
                         callback=CancelAfter(cancel, 4), cancel=cancel)
    assert first.status == "cancelled"
    with kdist.Store(db, read_only=True) as store:
        assert store.jobs()["status"].tolist() == ["cancelled"]
        done = set(store.job_symbols(first.job_id, status="ok")["symbol"])
    assert 4 <= len(done) < len(SYMBOLS)

    log.unlink()
    second = kdist.ingest(resume=first.job_id, db=db, client="sync")
    fetched = {c[0] for c in calls(log)}
    assert fetched == set(SYMBOLS) - done  # nothing fetched twice
    assert second.job_id == first.job_id and second.resumed
    assert second.n_symbols == len(SYMBOLS) - len(done)
    with kdist.Store(db, read_only=True) as store:
        job = store.jobs().iloc[0]
    assert job["status"] == "done" and job["symbols_ok"] == len(SYMBOLS)
    pd.testing.assert_frame_equal(fingerprint(db), reference())


def test_resume_on_the_same_cluster_never_reuses_the_cancelled_runs_results(
        db, client, reference, fingerprint):
    """A resumed job keeps its id; chunks of the cancelled run may still be running on the
    cluster when the resume submits its own. Sharing their keys handed the stale results to
    the new tasks: symbols were lost and others stored twice."""
    symbols = kdist.get_provider("synthetic").list_symbols()[:40]
    cancel = threading.Event()
    first = kdist.ingest(symbols, **WINDOW, db=db, client=client, cancel=cancel,
                         provider=kdist.get_provider("synthetic", latency=0.2),
                         callback=CancelAfter(cancel, 6))
    assert first.status == "cancelled"
    second = kdist.ingest(resume=first.job_id, db=db, client=client,
                          provider=kdist.get_provider("synthetic"))
    assert second.status == "done"
    assert second.symbols_ok + first.symbols_ok == len(symbols)
    assert kdist.check(db)["duplicate_keys"] == 0
    with kdist.Store(db, read_only=True) as store:
        ledger = store.job_symbols(first.job_id)
    assert (ledger["status"] == "ok").all() and len(ledger) == len(symbols)
    pd.testing.assert_frame_equal(fingerprint(db), reference(symbols=symbols))


def test_resume_of_a_finished_job_fetches_nothing(db, tmp_path):
    log = tmp_path / "calls.log"
    provider = kdist.get_provider("synthetic", call_log=str(log))
    report = kdist.ingest(SYMBOLS[:3], **WINDOW, provider=provider, db=db, client="sync")
    log.unlink()
    again = kdist.ingest(resume=report.job_id, db=db)
    assert again.status == "done" and again.n_symbols == 0
    assert not log.exists()


def test_resume_retries_failed_symbols_with_the_recorded_provider(db, tmp_path, reference, fingerprint):
    log = tmp_path / "calls.log"
    provider = kdist.get_provider("synthetic", fail=SYMBOLS[2], call_log=str(log))
    report = kdist.ingest(SYMBOLS, **WINDOW, provider=provider, db=db, client="sync")
    assert report.status == "partial"
    log.unlink()
    # The recorded options would fail again: the caller may give a provider to resume with.
    again = kdist.ingest(resume=report.job_id, db=db, client="sync",
                         provider=kdist.get_provider("synthetic", call_log=str(log)))
    assert [c[0] for c in calls(log)] == [SYMBOLS[2]]
    assert again.symbols_ok == 1 and again.status == "done"
    pd.testing.assert_frame_equal(fingerprint(db), reference())


def test_resume_unknown_job_is_a_usage_error(db):
    kdist.ingest(SYMBOLS[:1], **WINDOW, db=db, client="sync")
    with pytest.raises(UsageError, match="No job 'nope'"):
        kdist.ingest(resume="nope", db=db)


def test_incremental_fetches_only_new_bars_and_equals_a_full_import(db, tmp_path, reference, fingerprint):
    log = tmp_path / "calls.log"
    provider = kdist.get_provider("synthetic", call_log=str(log))
    kdist.ingest(SYMBOLS, start="2024-01-01", end="2024-06-14", provider=provider, db=db, client="sync")
    log.unlink()
    report = kdist.ingest(SYMBOLS, **WINDOW, provider=provider, db=db, client="sync", incremental=True)
    assert report.incremental and report.revised == []
    starts = {c[1] for c in calls(log)}
    # The 3 overlap bars before 2024-06-14 (Fri) start on Wed 2024-06-12.
    assert starts == {"2024-06-12"}
    # The 3 overlap bars matched the stored ones and stay as they are: only the 10 new
    # trading days are written, and nothing stored is deleted.
    assert report.rows_written == len(SYMBOLS) * 10
    with kdist.Store(db, read_only=True) as store:
        ledger = store.job_symbols(report.job_id)
    assert (ledger["rows"] == 10).all() and (ledger["first_ts"] == pd.Timestamp("2024-06-17")).all()
    pd.testing.assert_frame_equal(fingerprint(db), reference())


def test_incremental_refetches_a_revised_symbol_whole(db, tmp_path, reference, fingerprint):
    kdist.ingest(SYMBOLS, start="2024-01-01", end="2024-06-14", db=db, client="sync")
    log = tmp_path / "calls.log"
    revised = kdist.get_provider("synthetic", seed=5, call_log=str(log))  # history changed
    report = kdist.ingest(SYMBOLS, **WINDOW, provider=revised, db=db, client="sync", incremental=True)
    assert sorted(report.revised) == sorted(SYMBOLS)
    assert {tuple(c[1:]) for c in calls(log)} == {("2024-06-12", "2024-06-28"), ("2024-01-01", "2024-06-28")}
    pd.testing.assert_frame_equal(fingerprint(db), reference(provider=kdist.get_provider("synthetic", seed=5)))
    with kdist.Store(db, read_only=True) as store:
        assert store.job_symbols(report.job_id)["revised"].all()


def test_incremental_gives_new_symbols_the_full_window(db, tmp_path):
    kdist.ingest(SYMBOLS[:2], **WINDOW, db=db, client="sync")
    log = tmp_path / "calls.log"
    provider = kdist.get_provider("synthetic", call_log=str(log))
    kdist.ingest(SYMBOLS[:3], **WINDOW, provider=provider, db=db, client="sync", incremental=True)
    starts = {c[0]: c[1] for c in calls(log)}
    assert starts[SYMBOLS[2]] == "2024-01-01"
    assert starts[SYMBOLS[0]] == starts[SYMBOLS[1]] == "2024-06-26"


def test_update_extends_every_stored_series_with_recorded_options(db, tmp_path, reference, fingerprint):
    kdist.ingest(SYMBOLS, start="2024-01-01", end="2024-06-14", db=db, client="sync",
                 provider=kdist.get_provider("synthetic", seed=2))
    reports = kdist.update(db, end=WINDOW["end"], client="sync")
    assert len(reports) == 1 and reports[0].incremental and reports[0].revised == []
    pd.testing.assert_frame_equal(
        fingerprint(db), reference(provider=kdist.get_provider("synthetic", seed=2))
    )
    catalog = kdist.catalog(db)
    assert (catalog["last"] == pd.Timestamp("2024-06-28")).all()
    assert catalog["updated"].notna().all() and set(catalog["source"]) == {"synthetic"}


def test_an_update_with_nothing_new_writes_nothing_and_is_ok(db):
    kdist.ingest(SYMBOLS, **WINDOW, db=db, client="sync")
    (report,) = kdist.update(db, end=WINDOW["end"], client="sync")
    assert report.status == "done" and report.symbols_ok == len(SYMBOLS)
    assert report.rows_written == 0 and report.revised == []


def test_update_with_nothing_stored_does_nothing(db):
    kdist.ingest(SYMBOLS[:1], **WINDOW, db=db, client="sync")
    assert kdist.update(db, freq="1w", client="sync") == []


def test_update_of_a_missing_file_creates_nothing(tmp_path):
    missing = tmp_path / "none.duckdb"
    with pytest.raises(StoreError, match="No kdist database at"):
        kdist.update(missing, client="sync")
    assert not missing.exists()


def test_ingest_into_an_open_store_leaves_it_open(db, reference, fingerprint):
    with kdist.Store(db) as store:
        report = kdist.ingest(SYMBOLS, **WINDOW, db=store, client="sync")
        # Still this caller's connection, and still the only writer in this process.
        stored = store.con.execute("SELECT count(*) FROM kline").fetchone()[0]
        assert stored == report.rows_written and stored > 0
        with pytest.raises(DatabaseLockedError):
            kdist.ingest(SYMBOLS, **WINDOW, db=db, client="sync")
    assert report.db == str(db) and report.status == "done"
    pd.testing.assert_frame_equal(fingerprint(db), reference())


def test_ingest_refuses_a_read_only_store(db):
    kdist.ingest(SYMBOLS[:1], **WINDOW, db=db, client="sync")
    with kdist.Store(db, read_only=True) as store:
        with pytest.raises(UsageError, match="opened for writing"):
            kdist.ingest(SYMBOLS[:1], **WINDOW, db=store, client="sync")


def test_a_hanging_call_times_out_and_is_retried(db):
    provider = kdist.get_provider("synthetic", hang=SYMBOLS[1])
    t0 = time.monotonic()
    report = kdist.ingest(SYMBOLS[:3], **WINDOW, provider=provider, db=db, client="sync",
                          timeout=0.3, retries=2)
    assert time.monotonic() - t0 < 10
    assert list(report.failures) == [SYMBOLS[1]]
    assert "no answer" in report.failures[SYMBOLS[1]]
    with kdist.Store(db, read_only=True) as store:
        row = store.job_symbols(report.job_id, status="failed").iloc[0]
    assert row["attempts"] == 2 and row["error_class"] == "TransientProviderError"


def test_rejected_rows_are_counted_per_symbol_with_reasons(db):
    class Dirty(kdist.Provider):
        name = "dirty"

        def fetch(self, symbol, start, end, freq="1d", adjust="none"):
            frame = kdist.get_provider("synthetic").fetch(symbol, start, end, freq, adjust)
            frame.loc[0, "high"] = frame.loc[0, "low"] - 1          # high below low
            frame.loc[1, "close"] = float("nan")                      # missing price
            frame.loc[2, "volume"] = -5                               # negative volume
            return pd.concat([frame, frame.iloc[[3]]])                # a duplicate timestamp

    report = kdist.ingest(SYMBOLS[:2], **WINDOW, provider=Dirty(), db=db, client="sync")
    assert report.status == "done" and report.rejected_rows == 2 * 4
    with kdist.Store(db, read_only=True) as store:
        ledger = store.job_symbols(report.job_id)
        jobs = store.jobs()
    reasons = json.loads(ledger["rejected"].iat[0])
    assert reasons == {"high below low": 1, "missing or non-finite price": 1,
                       "negative volume": 1, "duplicate timestamp": 1}
    assert jobs["rejected_rows"].iat[0] == 8
    assert kdist.check(db)["ok"]


def test_a_second_import_in_the_same_process_is_refused(db):
    with kdist.Store(db):
        with pytest.raises(DatabaseLockedError, match="another import in this process"):
            kdist.ingest(SYMBOLS[:1], **WINDOW, db=db, client="sync")
        assert kdist.load(db).empty  # an idle writer lets a reader in, even on its own thread
    assert kdist.load(db).empty  # released: readable again


def test_an_open_read_only_connection_is_named_when_it_blocks_an_import(db):
    """A notebook that queries the file with DuckDB and then imports meets this."""
    import duckdb

    kdist.ingest(SYMBOLS[:1], **WINDOW, db=db, client="sync")
    con = duckdb.connect(db, read_only=True)
    try:
        with pytest.raises(DatabaseLockedError, match=r"duckdb.connect\(\.\.\., read_only=True\)"):
            kdist.ingest(SYMBOLS[:1], **WINDOW, db=db, client="sync")
    finally:
        con.close()
    assert kdist.ingest(SYMBOLS[:1], **WINDOW, db=db, client="sync").status == "done"


def test_a_job_left_running_shows_as_interrupted_and_resumes(db, fingerprint, reference):
    report = kdist.ingest(SYMBOLS, **WINDOW, db=db, client="sync")
    with kdist.Store(db) as store:  # simulate a process killed mid-job
        store.con.execute("UPDATE kdist_jobs SET status = 'running'")
        store.con.execute("UPDATE kdist_job_symbols SET status = 'pending' WHERE symbol = ?",
                          [SYMBOLS[0]])
    with kdist.Store(db, read_only=True) as store:
        assert store.jobs()["status"].tolist() == ["interrupted"]
    again = kdist.ingest(resume=report.job_id, db=db, client="sync")
    assert again.n_symbols == 1
    pd.testing.assert_frame_equal(fingerprint(db), reference())


def test_unwritable_database_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a directory")
    with pytest.raises(kdist.StoreError, match="file.txt"):
        kdist.ingest(SYMBOLS[:1], **WINDOW, db=str(blocker / "k.duckdb"), client="sync")


def test_a_task_that_raises_timeouterror_fails_its_chunk_not_the_loop(db, monkeypatch):
    # A TimeoutError raised by the task itself must not pass for a slow result transfer.
    import kdist.fetching as fetching

    def broken(limits):
        raise TimeoutError("semaphore not granted")

    monkeypatch.setattr(fetching, "get_gate", broken)
    t0 = time.monotonic()
    with pytest.raises(kdist.JobFailedError):
        kdist.ingest(SYMBOLS[:2], **WINDOW, db=db, client="sync")
    assert time.monotonic() - t0 < 10


def test_resume_fails_recorded_invalid_symbols_again_without_fetching(db, tmp_path):
    log = tmp_path / "calls.log"
    report = kdist.ingest(["600000.SH", "bad$sym"], **WINDOW, db=db, client="sync",
                          skip_invalid=True)
    with pytest.raises(kdist.JobFailedError, match="invalid") as info:
        kdist.ingest(resume=report.job_id, db=db, client="sync",
                     provider=kdist.get_provider("synthetic", call_log=str(log)))
    assert not log.exists()
    assert list(info.value.report.failures) == ["bad$sym"]
    assert set(kdist.load(db)["symbol"]) == {"600000.SH"}


class _OneByOne(SyntheticProvider):
    """Without the batch hook: a chunk is one call per symbol, and cancel acts between them."""

    fetch_many = Provider.fetch_many


def test_cancel_in_process_keeps_the_finished_symbols_of_a_running_chunk(db):
    cancel = threading.Event()
    fired = []

    class CancelAfterTwo(_OneByOne):
        def _fetch(self, *args):
            frame = super()._fetch(*args)
            if len(self._calls) == 2:  # the user presses cancel as the second symbol ends
                fired.append(time.monotonic())
                cancel.set()
            return frame

    provider = CancelAfterTwo(latency=0.4)  # the whole chunk: 12 x 0.4 = 4.8 s
    report = kdist.ingest(SYMBOLS, **WINDOW, provider=provider, db=db, client="sync",
                          chunk_size=len(SYMBOLS), cancel=cancel)
    # stops at the next symbol, not the chunk's end (4 s of calls after the cancel)
    assert fired and time.monotonic() - fired[0] < 2.0
    assert report.status == "cancelled" and 1 <= report.symbols_ok < len(SYMBOLS)
    assert kdist.load(db)["symbol"].nunique() == report.symbols_ok
    with kdist.Store(db, read_only=True) as store:
        assert (store.job_symbols(report.job_id)["status"] == "pending").sum() == \
            len(SYMBOLS) - report.symbols_ok


def test_repeated_jobs_leave_no_threads_behind(db):
    before = set(threading.enumerate())  # earlier tests may have abandoned hung calls
    for _ in range(3):
        kdist.ingest(SYMBOLS[:2], **WINDOW, db=db, client="sync", max_rate=50)
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline:
        extra = [t.name for t in threading.enumerate()
                 if t not in before and t.name.startswith("kdist-")]
        if not extra:
            break
        time.sleep(0.5)
    assert extra == []


@pytest.mark.slow
def test_fetch_on_a_cluster_that_loses_every_worker_ends_with_an_error():
    """kdist.fetch used to submit everything and wait: with no worker left it waited forever."""
    import logging

    from distributed import Client, LocalCluster

    from kdist.errors import NoWorkersError

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR) as cluster, \
            Client(cluster, set_as_default=False) as client:
        symbols = kdist.get_provider("synthetic", universe=40).list_symbols()
        threading.Timer(1.5, lambda: cluster.scale(0)).start()
        t0 = time.monotonic()
        with pytest.raises(NoWorkersError, match="No workers for 3s"):
            kdist.fetch(symbols, **WINDOW, client=client, chunk_size=1, worker_timeout=3,
                        provider=kdist.get_provider("synthetic", latency=0.3))
        assert time.monotonic() - t0 < 30
