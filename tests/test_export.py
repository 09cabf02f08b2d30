"""kdist export parquet: a hive-partitioned dataset DuckDB writes, read back as load returns."""

from __future__ import annotations

import json

import duckdb
import pandas as pd
import pyarrow.dataset as ds
import pytest

import kdist
from kdist.cli import main
from kdist.exporting import export

SYMBOLS = ["600000.SH", "000001.SZ", "600519.SH"]


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("export") / "k.duckdb")
    kdist.ingest(SYMBOLS, start="2022-06-01", end="2024-03-31", db=path, client="sync",
                 progress=False)
    return path


def read_back(out) -> pd.DataFrame:
    table = ds.dataset(out, partitioning="hive").to_table().to_pandas()
    return table.sort_values(["symbol", "ts"]).reset_index(drop=True)


@pytest.mark.parametrize("adjust", ["none", "qfq"])
def test_parquet_dataset_holds_what_load_returns(db, tmp_path, adjust):
    out = tmp_path / "bars"
    summary = export(db, out, "parquet", adjust=adjust)
    expected = kdist.load(db, adjust=adjust)
    assert summary == {"format": "parquet", "path": str(out), "symbols": 3,
                       "bars": len(expected), "files": summary["files"]}
    years = sorted(p.name for p in (out / "freq=1d" / f"adjust={adjust}").iterdir())
    assert years == ["year=2022", "year=2023", "year=2024"]
    got = read_back(out)
    assert (got["freq"] == "1d").all() and (got["adjust"] == adjust).all()
    assert (got["year"] == got["ts"].dt.year).all()
    pd.testing.assert_frame_equal(got[expected.columns], expected, check_dtype=False)
    # DuckDB reads the same dataset with its partitions.
    con = duckdb.connect()
    n = con.execute("SELECT count(*) FROM read_parquet(?, hive_partitioning = true)",
                    [str(out / "**" / "*.parquet")]).fetchall()[0][0]
    assert n == len(expected)


def test_symbols_window_and_chunks(db, tmp_path, monkeypatch):
    monkeypatch.setattr("kdist.exporting.CHUNK", 1)  # one write per symbol: three chunks
    seen = []
    out = tmp_path / "bars"
    export(db, out, symbols=["600000.SH", "sz000001"], start="2023-01-01", end="2023-12-31",
           progress=lambda done, total: seen.append((done, total)))
    assert seen == [(0, 2), (1, 2), (2, 2)]
    got = read_back(out)
    expected = kdist.load(db, ["600000.SH", "000001.SZ"], start="2023-01-01", end="2023-12-31")
    pd.testing.assert_frame_equal(got[expected.columns], expected, check_dtype=False)


def test_an_existing_directory_is_refused_or_replaced(db, tmp_path):
    out = tmp_path / "bars"
    export(db, out, symbols="600000.SH")
    with pytest.raises(kdist.UsageError, match="already holds freq=1d/adjust=none"):
        export(db, out)
    export(db, out, overwrite=True)  # the earlier dataset replaced, not added to
    assert len(read_back(out)) == len(kdist.load(db))
    # Another adjust of the same dataset goes beside it; nothing already there is lost.
    export(db, out, adjust="qfq")
    assert sorted(p.name for p in (out / "freq=1d").iterdir()) == ["adjust=none", "adjust=qfq"]
    # A refused or failed request leaves the dataset as it was, even with --overwrite.
    before = sorted(out.rglob("*.parquet"))
    for bad in ({"freq": "5m"}, {"symbols": "600001.SH"}, {"start": "2030-01-01"}):
        with pytest.raises(kdist.UsageError):
            export(db, out, overwrite=True, **bad)
        assert sorted(out.rglob("*.parquet")) == before
    assert not list(tmp_path.glob(".*kdist-export"))
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(kdist.UsageError, match="not only a kdist Parquet dataset"):
        export(db, other, overwrite=True)
    assert (other / "notes.txt").read_text() == "mine"


def test_bad_requests(db, tmp_path):
    with pytest.raises(kdist.UsageError, match="Unknown export format 'csv'"):
        export(db, tmp_path / "x", "csv")
    with pytest.raises(kdist.UsageError, match="No 5m none bars"):
        export(db, tmp_path / "x", freq="5m")
    with pytest.raises(kdist.UsageError, match="No 1d none bars of 600001.SH"):
        export(db, tmp_path / "x", symbols=["600000.SH", "600001.SH"])
    with pytest.raises(kdist.UsageError, match="nothing to export"):
        export(db, tmp_path / "x", start="2030-01-01")
    (tmp_path / "afile").write_text("")
    with pytest.raises(kdist.UsageError, match="is a file"):
        export(db, tmp_path / "afile")
    with pytest.raises(kdist.UsageError, match="leave --adjust out"):
        export(db, tmp_path / "q", "qlib", adjust="qfq")
    assert not (tmp_path / "x").exists() and not (tmp_path / "q").exists()


def test_weekly_qfq_is_exported_as_load_derives_it(db, tmp_path):
    out = tmp_path / "weeks"
    export(db, out, freq="1w", adjust="qfq")
    expected = kdist.load(db, freq="1w", adjust="qfq")
    got = read_back(out)
    pd.testing.assert_frame_equal(got[expected.columns], expected, check_dtype=False)


def test_kdist_export_is_the_function():
    assert kdist.export is export


def test_cli_export(db, tmp_path, capsys):
    out = tmp_path / "bars"
    assert main(["export", "parquet", str(out), "--db", db, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["bars"] == len(kdist.load(db))
    assert main(["export", "parquet", str(out), "--db", db]) == 2
    assert "already holds freq=1d/adjust=none" in capsys.readouterr().err
    assert main(["export", "parquet", str(out), "600000.SH", "--db", db, "--overwrite",
                 "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    assert set(read_back(out)["symbol"]) == {"600000.SH"}


def test_cli_export_qlib_and_unwritable_paths(db, tmp_path, capsys):
    out = tmp_path / "qlib"
    assert main(["export", "qlib", str(out), "--db", db]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("qlib: 3 symbols, ") and printed.rstrip().endswith(str(out))
    assert (out / "calendars" / "day.txt").exists()
    assert main(["export", "qlib", str(out), "--db", db, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["format"], summary["path"], summary["symbols"]) == ("qlib", str(out), 3)
    assert main(["export", "parquet", "/proc/nope/x", "--db", db]) == 2
    assert "Cannot write the export to /proc/nope/x" in capsys.readouterr().err


def test_an_import_writes_between_an_exports_chunks(db, tmp_path, monkeypatch):
    """Each chunk is read with the file opened for that read alone: a writer opening the
    file between two chunks gets in at once."""
    import shutil

    from kdist.store import Store

    path = str(tmp_path / "k.duckdb")
    shutil.copy(db, path)
    monkeypatch.setattr("kdist.exporting.CHUNK", 1)
    opened = []

    def between(done, total):
        if 0 < done < total:
            with Store(path, wait=0.5) as writer:  # fails unless no reader holds the file
                opened.append(writer.path)

    export(path, tmp_path / "bars", progress=between)
    assert len(opened) == 2
