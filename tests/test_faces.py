"""What the command line and the panels use is public API: resume with changed options, the
shared local cluster, the report's HTML, the jobs and their ledgers."""

from __future__ import annotations

import pytest

import kdist
from kdist.errors import UsageError

WINDOW = {"start": "2024-01-01", "end": "2024-03-29"}


def test_a_resume_takes_changed_provider_options(db):
    provider = kdist.get_provider("synthetic", fail="600001.SH")
    symbols = ["600000.SH", "600001.SH"]
    report = kdist.ingest(symbols, **WINDOW, db=db, provider=provider, client="sync", retries=1)
    assert report.status == "partial"
    # The recorded options keep failing it; an empty `fail` option lets it through.
    again = kdist.ingest(resume=report.job_id, db=db, client="sync", options={"fail": ""})
    assert again.status == "done" and again.symbols_ok == 1
    assert set(kdist.ledger(db, report.job_id)["status"]) == {"ok"}


def test_options_without_resume_are_refused(db):
    with pytest.raises(UsageError, match="resumed job"):
        kdist.ingest(["600000.SH"], **WINDOW, db=db, options={"seed": 1})


def test_jobs_and_ledger_read_what_was_recorded(db):
    report = kdist.ingest(["600000.SH", "000001.SZ"], **WINDOW, db=db, client="sync")
    jobs = kdist.jobs(db)
    assert jobs["job_id"].tolist() == [report.job_id] and jobs["status"].tolist() == ["done"]
    ledger = kdist.ledger(db)  # the newest job's
    assert sorted(ledger["symbol"]) == ["000001.SZ", "600000.SH"]
    assert set(ledger["status"]) == {kdist.Status.OK}
    with pytest.raises(UsageError, match="No job 'nope'"):
        kdist.ledger(db, "nope")


def test_the_report_renders_html_for_notebooks_and_panels(db):
    report = kdist.ingest(["600000.SH"], **WINDOW, db=db, client="sync")
    html = report.to_html()
    assert html == report._repr_html_() and report.job_id in html and "<table>" in html


def test_statuses_count_the_same_everywhere():
    assert kdist.Status("failed").counts_as_failed and kdist.Status("skipped").counts_as_failed
    assert not kdist.Status("ok").counts_as_failed and not kdist.Status("empty").counts_as_failed
    assert kdist.Status.OK.finished and not kdist.Status.PENDING.finished
