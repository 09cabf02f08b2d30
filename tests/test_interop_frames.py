"""A Parquet export read back by the libraries people load it with: polars, pyarrow, DuckDB
and pandas each get exactly the bars :func:`kdist.load` returns (same rows, values and
column types), and the hive partitions (``freq``, ``adjust``, ``year``) filter as they say.

The store is synthetic and its provider serves corporate actions, so a qfq export holds
derived prices; the bars span three years, so the dataset has three year partitions.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

import kdist
from kdist.exporting import export

#: A consumer library run on what kdist gives it: make test-interop runs these too.
pytestmark = pytest.mark.interop

SYMBOLS = ["600000.SH", "000001.SZ", "300750.SZ"]
COLUMNS = ["symbol", "ts", "open", "high", "low", "close", "volume", "amount", "source"]
PRICES = ["open", "high", "low", "close", "volume", "amount"]
ADJUSTS = ("none", "qfq")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``{adjust: (out, bars kdist.load returns)}``, one dataset per adjust."""
    root = tmp_path_factory.mktemp("frames")
    db = str(root / "kdist.duckdb")
    kdist.ingest(SYMBOLS[:2], start="2022-06-01", end="2024-03-31", db=db, client="sync",
                 progress=False)
    kdist.ingest(SYMBOLS[2:], start="2023-02-01", end="2024-03-31", db=db, client="sync",
                 progress=False)
    found = {}
    for adjust in ADJUSTS:
        out = root / f"out-{adjust}"
        summary = export(db, str(out), format="parquet", adjust=adjust)
        bars = kdist.load(db, adjust=adjust)
        assert summary["bars"] == len(bars) and summary["symbols"] == len(SYMBOLS)
        found[adjust] = (str(out), bars)
    # The qfq export holds derived prices, not the raw ones again.
    assert not np.array_equal(found["qfq"][1]["close"], found["none"][1]["close"])
    return found


def same_bars(frame: pd.DataFrame, expected: pd.DataFrame):
    """``frame`` (read back, any order) holds exactly ``expected``'s rows and values."""
    frame = frame[COLUMNS].sort_values(["symbol", "ts"], ignore_index=True)
    pd.testing.assert_frame_equal(frame, expected[COLUMNS].reset_index(drop=True),
                                  check_exact=True)


def test_the_dataset_is_partitioned_by_freq_adjust_and_year(exported):
    for adjust, (out, bars) in exported.items():
        files = sorted(Path(out).rglob("*.parquet"))
        dirs = {f.parent.relative_to(out).as_posix() for f in files}
        years = sorted(bars["ts"].dt.year.unique())
        assert dirs == {f"freq=1d/adjust={adjust}/year={y}" for y in years}
        assert years == [2022, 2023, 2024]


@pytest.mark.parametrize("adjust", ADJUSTS)
def test_polars_scan_parquet_reads_back_the_bars(exported, adjust):
    out, bars = exported[adjust]
    lazy = pl.scan_parquet(out + "/**/*.parquet", hive_partitioning=True)
    frame = lazy.collect()
    schema = frame.schema
    assert schema["symbol"] == pl.String and schema["source"] == pl.String
    assert schema["ts"] == pl.Datetime("us")  # naive, as kdist.load's
    assert all(schema[c] == pl.Float64 for c in PRICES)
    assert frame["freq"].unique().to_list() == ["1d"]
    assert frame["adjust"].unique().to_list() == [adjust]
    assert (frame["year"] == frame["ts"].dt.year()).all()
    same_bars(frame.select(COLUMNS).to_pandas(), bars)

    # A partition filter reads that year alone.
    year = lazy.filter(pl.col("year") == 2023).select(COLUMNS).collect().to_pandas()
    same_bars(year, bars[bars["ts"].dt.year == 2023])


@pytest.mark.parametrize("adjust", ADJUSTS)
def test_pyarrow_dataset_reads_back_the_bars(exported, adjust):
    out, bars = exported[adjust]
    dataset = ds.dataset(out, format="parquet", partitioning="hive")
    table = dataset.to_table()
    assert table.schema.field("ts").type == pa.timestamp("us")
    assert table.schema.field("symbol").type in (pa.string(), pa.large_string())
    assert all(table.schema.field(c).type == pa.float64() for c in PRICES)
    assert set(table.column("adjust").to_pylist()) == {adjust}
    same_bars(table.select(COLUMNS).to_pandas(), bars)

    year = dataset.to_table(columns=COLUMNS, filter=(ds.field("year") == 2024)
                            & (ds.field("symbol") == "300750.SZ"))
    same_bars(year.to_pandas(), bars[(bars["ts"].dt.year == 2024)
                                     & (bars["symbol"] == "300750.SZ")])


@pytest.mark.parametrize("adjust", ADJUSTS)
def test_duckdb_read_parquet_reads_back_the_bars(exported, adjust):
    out, bars = exported[adjust]
    con = duckdb.connect()
    try:
        rel = con.read_parquet(out + "/**/*.parquet", hive_partitioning=True)
        types = dict(zip(rel.columns, map(str, rel.types)))
        assert types["ts"] == "TIMESTAMP" and types["symbol"] == "VARCHAR"
        assert all(types[c] == "DOUBLE" for c in PRICES)
        same_bars(rel.select(*COLUMNS).df(), bars)
        [(years,)] = con.execute(
            "SELECT count(*) FILTER (WHERE year <> year(ts)) "
            "FROM read_parquet(?, hive_partitioning = true)", [out + "/**/*.parquet"]).fetchall()
        assert years == 0
    finally:
        con.close()


@pytest.mark.parametrize("adjust", ADJUSTS)
def test_pandas_read_parquet_reads_back_the_bars(exported, adjust):
    out, bars = exported[adjust]
    frame = pd.read_parquet(out)
    # The bar columns come back with kdist.load's own dtypes, the partitions as categories.
    assert frame[COLUMNS].dtypes.to_dict() == bars[COLUMNS].dtypes.to_dict()
    assert frame["adjust"].astype(str).unique().tolist() == [adjust]
    same_bars(frame, bars)
    one = pd.read_parquet(out, filters=[("year", "==", 2022)])
    same_bars(one, bars[bars["ts"].dt.year == 2022])
