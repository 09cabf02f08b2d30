"""Where a job runs when nobody names a scheduler: small jobs from providers that do not wait
on a network run in the client's process, and so do their jobs of any size on a machine of
one or two cores; everything else gets a local cluster."""

from __future__ import annotations

import pandas as pd
import pytest

import kdist
import kdist.runner as runner
from kdist.cli import main

SYMBOLS = ["600000.SH", "000001.SZ", "600001.SH"]
WINDOW = {"start": "2024-01-01", "end": "2024-03-31"}


@pytest.fixture(autouse=True)
def no_named_scheduler(monkeypatch):
    monkeypatch.delenv("KDIST_SCHEDULER", raising=False)


def test_a_small_job_runs_in_process_and_says_why(db):
    report = kdist.ingest(SYMBOLS, **WINDOW, db=db)
    assert report.mode == "sync"
    assert "small job of about 183 bars" in report.mode_reason
    assert "small job" in str(report) and "--scheduler local" in str(report)
    assert report.status == "done" and report.rows_written == len(kdist.load(db))
    with kdist.Store(db, read_only=True) as store:
        assert store.job(report.job_id)["mode"] == "sync"


def test_naming_local_always_starts_a_cluster(db):
    report = kdist.ingest(SYMBOLS[:1], **WINDOW, db=db, client="local", n_workers=1,
                          threads_per_worker=1)
    assert report.mode == "local" and report.mode_reason is None


@pytest.mark.parametrize("options", [{"latency": 0.001}, {"crash": "000002.SZ"}])
def test_a_provider_that_waits_or_kills_its_process_gets_a_cluster(db, options):
    provider = kdist.get_provider("synthetic", **options)
    assert provider.remote
    report = kdist.ingest(SYMBOLS, **WINDOW, db=db, provider=provider, n_workers=1,
                          threads_per_worker=1)
    assert report.mode == "local" and report.mode_reason is None


def test_a_big_job_gets_a_cluster(db, monkeypatch):
    monkeypatch.setattr(runner, "SMALL_JOB_BARS", 100)
    monkeypatch.setattr(runner, "usable_cores", lambda: 8)
    report = kdist.ingest(SYMBOLS, **WINDOW, db=db, n_workers=1, threads_per_worker=1)
    assert report.mode == "local"


def test_on_a_small_machine_a_big_job_runs_in_process_and_says_why(db, monkeypatch):
    """Up to two cores, moving bars between processes costs more than making them: a job
    of any size from a provider that does not wait on a network runs in this process."""
    monkeypatch.setattr(runner, "SMALL_JOB_BARS", 100)
    monkeypatch.setattr(runner, "usable_cores", lambda: 2)
    report = kdist.ingest(SYMBOLS, **WINDOW, db=db)
    assert report.mode == "sync"
    assert "fastest in this process on 2 cores" in report.mode_reason
    assert "--scheduler local" in str(report)
    assert report.status == "done" and report.rows_written == len(kdist.load(db))
    # A provider that waits on a network still gets its cluster, whatever the machine.
    slow = kdist.get_provider("synthetic", latency=0.001)
    again = kdist.ingest(SYMBOLS, **WINDOW, db=db, provider=slow, n_workers=1,
                         threads_per_worker=1)
    assert again.mode == "local"
    # So does a job whose caller sized the cluster.
    sized = kdist.ingest(SYMBOLS, **WINDOW, db=db, n_workers=1)
    assert sized.mode == "local"


def test_usable_cores_are_this_process_s():
    assert 1 <= runner.usable_cores() <= (__import__("os").cpu_count() or 1)


def test_an_update_is_sized_by_what_it_fetches_not_by_what_is_stored(db, monkeypatch):
    kdist.ingest(SYMBOLS, start="2020-01-01", end="2024-03-29", db=db, client="sync")
    # Four years are stored; the update fetches the overlap bars and one new day per symbol.
    monkeypatch.setattr(runner, "SMALL_JOB_BARS", 100)
    (report,) = kdist.update(db, end="2024-04-01")
    assert report.mode == "sync" and report.incremental
    bars = int(report.mode_reason.split("about ")[1].split(" bars")[0].replace(",", ""))
    assert bars < 100
    assert kdist.load(db)["ts"].max() == pd.Timestamp("2024-04-01")


def test_an_update_in_process_fetches_in_few_large_chunks(db):
    symbols = kdist.get_provider("synthetic", universe=1200).list_symbols()
    kdist.ingest(symbols, start="2024-03-01", end="2024-03-28", db=db, client="sync")
    (report,) = kdist.update(db, end="2024-04-01")
    # In process, a chunk may hold up to 2,000 symbols: 4 chunks of 300 for the one thread
    # (a cluster's chunks hold at most 50: 24 of them).
    assert report.mode == "sync" and report.n_chunks == 4
    assert report.symbols_ok == 1200
    assert (kdist.load(db).groupby("symbol")["ts"].max() == pd.Timestamp("2024-04-01")).all()


def test_the_cli_prints_where_a_small_job_ran(db, capsys):
    assert main(["ingest", *SYMBOLS, "--start", "2024-01-01", "--end", "2024-01-31",
                 "--db", db]) == 0
    assert "sync (a small job of about" in capsys.readouterr().out
