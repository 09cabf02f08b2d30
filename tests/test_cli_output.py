"""What the kdist command prints (issue 17): the status summary, what ``show`` says when the
asked-for bars are not stored, output that is not a terminal, counts, whole volumes."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

import kdist
from kdist.cli import main

WINDOW = ["--start", "2024-01-01", "--end", "2024-03-31"]


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """Two symbols of daily bars and one of weekly bars, all synthetic."""
    db = str(tmp_path_factory.mktemp("stored") / "kdist.duckdb")
    for symbols, freq in ((["600000.SH", "000001.SZ"], "1d"), (["600000.SH"], "1w")):
        kdist.ingest(symbols, start="2024-01-01", end="2024-03-31", freq=freq, db=db,
                     client="sync")
    return db


# --- 3. kdist status: a summary per source, freq and adjust; --series per series ------------


def test_status_summarises_per_source_freq_and_adjust(capsys, stored):
    series = kdist.catalog(stored)
    code, out, _ = run(capsys, "status", "--db", stored)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["source", "freq", "adjust", "symbols", "bars", "first", "last",
                                "last", "update"]
    daily = series[series["freq"] == "1d"]
    weekly = series[series["freq"] == "1w"]
    rows = [line.split() for line in lines[1:3]]
    assert rows[0][:7] == ["synthetic", "1d", "none", "2", f"{daily['bars'].sum()}",
                           "2024-01-02", "2024-03-29"]
    assert rows[1][:5] == ["synthetic", "1w", "none", "1", f"{weekly['bars'].sum()}"]
    updated = series["updated"].max()
    assert f"{updated:%Y-%m-%d %H:%M}" in lines[1]  # from the job ledger
    assert "600000.SH" not in out and "000001.SZ" not in out
    assert f"3 series of 2 symbols in {stored}; 'kdist status --series' lists each" in out


def test_status_series_is_the_table_per_series(capsys, stored):
    code, out, _ = run(capsys, "status", "--db", stored, "--series")
    assert code == 0
    assert out.splitlines()[0].split()[:4] == ["symbol", "kind", "freq", "adjust"]
    assert sum("600000.SH" in line for line in out.splitlines()) == 2
    code, out, _ = run(capsys, "status", "--db", stored, "--json")  # as before: per series
    assert [(r["symbol"], r["freq"]) for r in json.loads(out)] == [
        ("000001.SZ", "1d"), ("600000.SH", "1d"), ("600000.SH", "1w")]


def test_summary_is_reachable_from_python(stored):
    summary = kdist.store.summary(stored)
    assert summary[["source", "freq", "adjust", "symbols"]].values.tolist() == [
        ["synthetic", "1d", "none", 2], ["synthetic", "1w", "none", 1]]
    assert summary["bars"].sum() == kdist.catalog(stored)["bars"].sum()


# --- 4. kdist show of bars not stored says what is ---------------------------------------------


def test_show_of_another_freq_says_what_is_stored(capsys, stored):
    code, out, err = run(capsys, "show", "000001.SZ", "--freq", "1w", "--db", stored)
    assert code == 1 and out == ""  # exit 1, as for a symbol not stored at all
    assert len(err.strip().splitlines()) == 1
    bars = len(kdist.load(stored, "000001.SZ"))
    assert (f"No 1w none bars for 000001.SZ in {stored}; stored: 1d none "
            f"(2024-01-02..2024-03-29, {bars} bars)") in err
    assert "--freq 1d --adjust none" in err


def test_show_outside_the_stored_window_says_so(capsys, stored):
    code, _, err = run(capsys, "show", "600000.SH", "--start", "2023-01-01", "--end",
                       "2023-12-31", "--db", stored)
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "No 1d none bars for 600000.SH from 2023-01-01 to 2023-12-31" in err
    assert "stored: 1d none (2024-01-02..2024-03-29" in err and "1w none (" in err
    assert "--start" in err


def test_show_of_a_symbol_not_stored(capsys, stored):
    code, _, err = run(capsys, "show", "600001.SH", "--db", stored)
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "No bars for 600001.SH in" in err and "kdist status" in err


# --- 5. output that is not a terminal is not wrapped --------------------------------------------


def test_report_into_a_file_keeps_a_long_path_on_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    db = tmp_path / ("a-rather-long-directory-name-" * 3) / ("and-another-one-" * 3) / "k.duckdb"
    db.parent.mkdir(parents=True)
    code, out, err = run(capsys, "ingest", "600000.SH", *WINDOW, "--db", db,
                         "--scheduler", "sync")
    assert code == 0, err
    assert any(str(db) in line for line in out.splitlines()), out


def test_a_report_to_a_pipe_is_not_wrapped(tmp_path):
    """A real pipe, as cron or ``| tee log`` give: no line breaks inside the path."""
    import os
    import subprocess
    import sys

    db = tmp_path / ("long-directory-name-" * 6) / "k.duckdb"
    db.parent.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    result = subprocess.run(
        [sys.executable, "-m", "kdist", "ingest", "600000.SH", *WINDOW, "--db", str(db),
         "--scheduler", "sync"], check=False, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert any(str(db) in line for line in result.stdout.splitlines()), result.stdout


# --- 6. counts: 1 symbol, 2 symbols --------------------------------------------------------------


def test_counts_are_singular_for_one(capsys, db):
    code, out, err = run(capsys, "ingest", "600000.SH", *WINDOW, "--db", db, "--scheduler", "sync")
    assert code == 0, err
    assert "1 symbol in 1 chunk:" in out
    assert not re.search(r"\b1 (symbols|chunks|bars|rows)\b", out), out
    code, out, _ = run(capsys, "show", "600000.SH", "--start", "2024-01-02", "--end",
                       "2024-01-02", "--db", db)
    assert code == 0 and out.startswith("600000.SH 1d none: 1 bar, 2024-01-02")
    report = kdist.ingest(["600000.SH", "000001.SZ"], **dict(zip(("start", "end"), WINDOW[1::2])),
                          db=db, client="sync", chunk_size=1)
    assert "2 symbols in 2 chunks:" in str(report)


# --- 7. whole volumes print whole ----------------------------------------------------------------


def test_show_prints_whole_volumes_without_a_decimal_point(capsys, stored):
    bars = kdist.load(stored, "600000.SH")
    assert bars["volume"].dtype == "float64"  # stored as it was: only the printing changed
    code, out, _ = run(capsys, "show", "600000.SH", "--db", stored, "--tail", "3")
    assert code == 0
    header, *rows = out.splitlines()[1:]
    column = header.split().index("volume")
    volumes = [row.split()[column] for row in rows]
    expected = [f"{v:.0f}" for v in bars["volume"].tail(3)]
    assert volumes == expected, out


def test_a_fractional_volume_keeps_its_fraction():
    from kdist.cli_format import frame_text

    frame = pd.DataFrame({"close": [1.5, 2.0], "volume": [4468100.0, 12.5]})
    lines = frame_text(frame).splitlines()
    assert lines[1].split() == ["1.5", "4468100"] and lines[2].split() == ["2.0", "12.5"]
