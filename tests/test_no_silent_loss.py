"""No silent loss: a source that covers less than what is stored never deletes the rest, a
write that replaces another source's bars says so, and rejected rows are visible where a
user looks (``kdist jobs JOB_ID``, ``kdist.fetch``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import kdist

KDIST = str(Path(sys.executable).parent / "kdist")


@pytest.fixture
def exports(tmp_path):
    """Two daily CSV files; one has a row with high below low and one with a zero price."""
    root = tmp_path / "csv"
    root.mkdir()
    good = ["date,open,high,low,close,volume",
            "2024-01-02,10.0,10.5,9.8,10.1,1000",
            "2024-01-03,10.1,10.6,9.9,10.2,1100",
            "2024-01-04,10.2,10.7,10.0,10.3,1200"]
    (root / "600000.SH.csv").write_text("\n".join(good) + "\n")
    bad = good[:2] + ["2024-01-03,10.1,9.0,9.9,10.2,1100",  # high below low
                      "2024-01-04,0,10.7,10.0,10.3,1200"]   # a zero price
    (root / "000001.SZ.csv").write_text("\n".join(bad) + "\n")
    return root


def test_kdist_jobs_lists_each_symbol_with_rejected_rows_and_why(exports, tmp_path):
    db = str(tmp_path / "k.duckdb")
    report = kdist.ingest(["600000.SH", "000001.SZ"], start="2024-01-01", end="2024-01-31",
                          provider=kdist.get_provider("csv", root=str(exports)), db=db,
                          client="sync")
    assert report.rejected_rows == 2
    done = subprocess.run([KDIST, "jobs", report.job_id, "--db", db, "--json"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)["rejected"]
    assert listed == [{"symbol": "000001.SZ", "rejected_rows": 2,
                       "reasons": "1 non-positive price; 1 high below low"}] or \
        listed == [{"symbol": "000001.SZ", "rejected_rows": 2,
                    "reasons": "1 high below low; 1 non-positive price"}]
    text = subprocess.run([KDIST, "jobs", report.job_id, "--db", db],
                          capture_output=True, text=True).stdout
    assert "symbols with rejected rows (1):" in text
    assert "000001.SZ" in text.split("symbols with rejected rows")[1]
    assert "high below low" in text


def test_fetch_warns_with_the_rejected_counts(exports):
    with pytest.warns(UserWarning, match=r"2 rows rejected in 1 symbol: 000001\.SZ: .*high below low"):
        bars = kdist.fetch(["600000.SH", "000001.SZ"], start="2024-01-01", end="2024-01-31",
                           provider=kdist.get_provider("csv", root=str(exports)))
    assert len(bars) == 4


def test_a_source_covering_less_than_what_is_stored_deletes_nothing_outside_its_span(tmp_path):
    db = str(tmp_path / "k.duckdb")
    window = {"start": "2024-01-01", "end": "2024-06-28"}
    kdist.ingest(["600000.SH"], **window, db=db, client="sync")
    before = kdist.load(db, "600000.SH")
    # An export covering February to March only, with other prices.
    root = tmp_path / "csv"
    root.mkdir()
    span = before[(before["ts"] >= "2024-02-01") & (before["ts"] < "2024-04-01")]
    export = span[["ts", "open", "high", "low", "close", "volume"]].assign(
        open=lambda f: f["open"] + 1, high=lambda f: f["high"] + 1, low=lambda f: f["low"] + 1,
        close=lambda f: f["close"] + 1)
    export.rename(columns={"ts": "date"}).to_csv(root / "600000.SH.csv", index=False)
    report = kdist.ingest(["600000.SH"], **window, db=db, client="sync",
                          provider=kdist.get_provider("csv", root=str(root)))
    after = kdist.load(db, "600000.SH")
    assert len(after) == len(before)  # nothing outside the export's span was deleted
    inside = after["ts"].isin(span["ts"])
    assert (after.loc[inside, "source"] == "csv").all()
    assert (after.loc[~inside, "source"] == "synthetic").all()
    assert after.loc[~inside, "close"].tolist() == before.loc[~before["ts"].isin(span["ts"]), "close"].tolist()
    assert report.rows_written == len(span)
    # The report says whose bars were replaced, and the catalog that the series mixes sources.
    assert report.replaced == {"synthetic": len(span)}
    assert f"replaced {len(span):,} bars of synthetic" in str(report)
    [row] = kdist.catalog(db).to_dict("records")
    assert row["source"] == "csv,synthetic" and row["mixed"] and row["kind"] == "stock"
    status = subprocess.run([KDIST, "status", "--db", db], capture_output=True, text=True)
    assert "csv,synthetic" in status.stdout, status
