"""kdist export parquet: a hive-partitioned dataset DuckDB writes, read back as load returns."""

from __future__ import annotations

import json

import duckdb
import pandas as pd
import pyarrow.dataset as ds
import pytest

import kdist
from kdist.cli import main
from kdist.export import export

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
    monkeypatch.setattr("kdist.export.CHUNK", 1)  # one write per symbol: three chunks
    seen = []
    out = tmp_path / "bars"
    export(db, out, symbols=["600000.SH", "sz000001"], start="2023-01-01", end="2023-12-31",
           progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 2), (2, 2)]
    got = read_back(out)
    expected = kdist.load(db, ["600000.SH", "000001.SZ"], start="2023-01-01", end="2023-12-31")
    pd.testing.assert_frame_equal(got[expected.columns], expected, check_dtype=False)


def test_an_existing_directory_is_refused_or_replaced(db, tmp_path):
    out = tmp_path / "bars"
    export(db, out, symbols="600000.SH")
    with pytest.raises(kdist.UsageError, match="is not empty"):
        export(db, out)
    export(db, out, overwrite=True)  # the earlier dataset replaced, not added to
    assert len(read_back(out)) == len(kdist.load(db))
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


def test_cli_export(db, tmp_path, capsys):
    out = tmp_path / "bars"
    assert main(["export", "parquet", str(out), "--db", db, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["bars"] == len(kdist.load(db))
    assert main(["export", "parquet", str(out), "--db", db]) == 2
    assert "is not empty" in capsys.readouterr().err
    assert main(["export", "parquet", str(out), "600000.SH", "--db", db, "--overwrite",
                 "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    assert set(read_back(out)["symbol"]) == {"600000.SH"}
