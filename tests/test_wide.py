"""Analysis-ready loads: kdist.panel and load(layout="wide") against the long frame."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

import kdist

SYMBOLS = ["600000.SH", "000001.SZ", "600519.SH"]


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("wide") / "k.duckdb")
    kdist.ingest(SYMBOLS, start="2022-01-01", end="2023-12-31", db=path, client="sync",
                 progress=False)
    return path


def pivoted(long: pd.DataFrame, field: str) -> pd.DataFrame:
    return long.pivot(index="ts", columns="symbol", values=field)


@pytest.mark.parametrize("adjust", ["none", "qfq", "hfq"])
def test_one_field_is_dates_by_symbols(db, adjust):
    long = kdist.load(db, adjust=adjust)
    close = kdist.panel(db, fields="close", adjust=adjust)
    assert close.index.name == "ts" and close.columns.name == "symbol"
    assert list(close.columns) == sorted(SYMBOLS)
    assert str(close.index.dtype) == "datetime64[us]" and close.index.is_monotonic_increasing
    expected = pivoted(long, "close")
    np.testing.assert_array_equal(close.to_numpy(), expected.to_numpy())


def test_several_fields_and_whole_volumes(db):
    frame = kdist.panel(db, fields=["open", "close", "volume"])
    assert frame.columns.names == ["field", "symbol"]
    assert list(frame.columns.get_level_values("field").unique()) == ["open", "close", "volume"]
    volume = frame["volume"]
    assert (volume.dtypes == "int64").all()  # every stored volume is whole
    long = kdist.load(db)
    np.testing.assert_array_equal(volume.to_numpy(), pivoted(long, "volume").to_numpy())
    # load(layout="wide") is the same, OHLCV by default, the shape yfinance downloads.
    wide = kdist.load(db, layout="wide")
    assert list(wide.columns.get_level_values("field").unique()) == [
        "open", "high", "low", "close", "volume"]
    pd.testing.assert_frame_equal(wide[["open", "close", "volume"]], frame)


def test_gaps_are_nan_in_every_field(tmp_path, db):
    path = str(tmp_path / "k.duckdb")
    import shutil

    shutil.copy(db, path)
    con = duckdb.connect(path)
    con.execute("DELETE FROM kline WHERE symbol = '600519.SH' AND ts = '2023-03-01'")
    con.close()
    frame = kdist.panel(path, fields=["close", "volume"])
    assert np.isnan(frame.loc["2023-03-01", ("close", "600519.SH")])
    # float64 with a gap: numpy and numba (vectorbt's indicators) take it, not pandas' Int64.
    assert frame["volume"].dtypes.eq("float64").all()
    assert np.isnan(frame.loc["2023-03-01", ("volume", "600519.SH")])
    assert frame.loc["2023-03-01", ("volume", "600000.SH")] > 0


def test_symbols_window_and_as_of(db):
    close = kdist.panel(db, ["600000.SH", "sz000001"], start="2023-06-01", end="2023-06-30")
    assert list(close.columns) == ["000001.SZ", "600000.SH"]
    assert close.index.min() >= pd.Timestamp("2023-06-01")
    assert close.index.max() <= pd.Timestamp("2023-06-30")
    seen = kdist.panel(db, fields="close", adjust="qfq", as_of="2022-12-30")
    assert seen.index.max() == pd.Timestamp("2022-12-30")


def test_bad_fields_and_layouts(db):
    with pytest.raises(kdist.UsageError, match="Unknown field.*'price'"):
        kdist.panel(db, fields=["close", "price"])
    with pytest.raises(kdist.UsageError, match="layout must be 'long' or 'wide'"):
        kdist.load(db, layout="tall")
    with pytest.raises(kdist.UsageError, match="fields= picks the columns of a wide layout"):
        kdist.load(db, fields="close")
