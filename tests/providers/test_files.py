"""Tests of the csv and parquet providers: small files in tmp_path, frames checked canonical.

Every frame is passed through :func:`kdist.schema.normalise` as the runner does, and checked
for canonical columns, dtypes and values; the security tests prove that paths leaving the
root are refused even when the file they point to exists.
"""

from __future__ import annotations

import os
import pickle

import numpy as np
import pandas as pd
import pytest

import kdist
from kdist.errors import (
    InvalidOptionError,
    InvalidSymbolError,
    PermanentProviderError,
    SymbolNotFoundError,
)
from kdist.providers import get_provider
from kdist.providers.files import CSVProvider, ParquetProvider
from kdist.schema import BAR_COLUMNS, Adjust, Freq, normalise, window_bounds
from kdist.testing import ProviderConformance

# Yahoo-style export: capitalised headers, an extra column, no amount.
ENGLISH = """Date,Open,High,Low,Close,Adj Close,Volume
2024-01-02,187.15,188.44,183.89,185.64,185.40,82488700
2024-01-03,184.22,185.88,183.43,184.25,184.01,58414500
2024-01-04,182.15,183.09,180.88,181.91,181.67,71983600
2024-01-05,181.99,182.76,180.17,181.18,180.94,62303300
2024-01-08,182.09,185.60,181.50,185.56,185.32,59144500
"""

# Chinese export in gbk: volume in lots (手), a thousands separator in quotes, and the
# footer line such tools append.
CHINESE = """日期,开盘,最高,最低,收盘,成交量,成交额
2024-01-02,9.39,9.42,9.21,9.21,"1,158,366",1075742252.15
2024-01-03,9.19,9.22,9.15,9.20,733610,673673734.00
2024-01-04,9.19,9.19,9.10,9.11,864194,790048578.00
数据来源:通达信,,,,,,
"""

# An index: no volume, no amount.
INDEX = """date,open,high,low,close
2024-01-02,3431.80,3433.05,3380.48,3386.35
2024-01-03,3382.19,3385.04,3360.59,3368.86
2024-01-04,3365.76,3368.67,3334.03,3336.36
"""

MINUTE = """datetime,open,high,low,close,volume,amount
2024-01-02 09:31:00,10.00,10.05,9.98,10.02,1200,12024.0
2024-01-02 09:32:00,10.02,10.04,10.01,10.03,800,8024.0
2024-01-02 15:00:00,10.10,10.12,10.09,10.11,3000,30330.0
2024-01-03 09:31:00,10.11,10.15,10.10,10.14,900,9126.0
2024-01-03 15:00:00,10.20,10.22,10.18,10.21,1500,15315.0
2024-01-04 09:31:00,10.21,10.25,10.20,10.22,700,7154.0
"""

# Tushare-style: yyyymmdd integers, "vol" and an unused code column.
TUSHARE = """ts_code,trade_date,open,high,low,close,vol,amount
600000.SH,20240104,6.60,6.65,6.55,6.62,300000,1986000.0
600000.SH,20240103,6.55,6.61,6.52,6.60,250000,1650000.0
600000.SH,20240102,6.50,6.58,6.49,6.55,200000,1310000.0
"""


def write(directory, name, text, encoding="utf-8"):
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def bars(provider, symbol, start, end, freq="1d"):
    """Fetch and normalise as the runner does; return the canonical frame."""
    lo, hi = window_bounds(start, end)
    raw = provider.fetch(symbol, start, end, freq, "none")
    frame, rejected = normalise(raw, freq=Freq.parse(freq), start=lo, end=hi, tz=provider.tz)
    assert rejected == {}
    return frame


def assert_canonical(frame):
    assert list(frame.columns) == list(BAR_COLUMNS)
    assert str(frame["ts"].dtype) == "datetime64[us]"
    assert all(frame[c].dtype == np.float64 for c in BAR_COLUMNS[1:])
    assert frame["ts"].is_monotonic_increasing and frame["ts"].is_unique


@pytest.fixture
def root(tmp_path):
    directory = tmp_path / "bars"
    directory.mkdir()
    return directory


# -- CSV reading ------------------------------------------------------------------------------


def test_english_headers_utf8(root):
    write(root, "AAPL.csv", ENGLISH)
    frame = bars(get_provider("csv", root=str(root)), "AAPL", "2024-01-01", "2024-01-31")
    assert_canonical(frame)
    assert frame["ts"].dt.strftime("%Y-%m-%d").tolist() == [
        "2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-08",
    ]
    first = frame.iloc[0]
    assert (first.open, first.high, first.low, first.close) == (187.15, 188.44, 183.89, 185.64)
    assert first.volume == 82488700.0
    # "Adj Close" is not close, and there is no amount column.
    assert frame["close"].tolist()[-1] == 185.56
    assert frame["amount"].isna().all()


def test_gbk_chinese_headers_in_lots(root):
    write(root, "000001.SZ.csv", CHINESE, encoding="gbk")
    provider = get_provider("csv", root=str(root), encoding="gbk", volume_unit="lots")
    frame = bars(provider, "000001.SZ", "2024-01-01", "2024-01-31")
    assert_canonical(frame)
    assert len(frame) == 3  # the footer line is no bar
    assert frame["volume"].tolist() == [115836600.0, 73361000.0, 86419400.0]
    assert frame["amount"].iloc[0] == 1075742252.15
    assert frame["close"].tolist() == [9.21, 9.20, 9.11]


def test_lots_default_is_shares(root):
    write(root, "000001.SZ.csv", CHINESE, encoding="gbk")
    frame = bars(get_provider("csv", root=str(root), encoding="gbk"), "000001.SZ",
                 "2024-01-03", "2024-01-03")
    assert frame["volume"].tolist() == [733610.0]


def test_gbk_file_read_as_utf8_is_a_permanent_error(root):
    write(root, "000001.SZ.csv", CHINESE, encoding="gbk")
    with pytest.raises(PermanentProviderError, match=r"decode .*utf-8.*gbk") as info:
        get_provider("csv", root=str(root)).fetch("000001.SZ", "2024-01-01", "2024-01-31")
    assert "\n" not in str(info.value)
    assert info.value.symbol == "000001.SZ"


def test_utf8_bom_header_is_detected(root):
    write(root, "000001.SZ.csv", CHINESE.replace("数据来源:通达信,,,,,,\n", ""), "utf-8-sig")
    frame = bars(get_provider("csv", root=str(root)), "000001.SZ", "2024-01-01", "2024-01-31")
    assert len(frame) == 3


def test_index_without_volume_and_amount(root):
    write(root, "000300.SH.csv", INDEX)
    frame = bars(get_provider("csv", root=str(root)), "000300.SH", "2024-01-01", "2024-01-31")
    assert_canonical(frame)
    assert frame["close"].tolist() == [3386.35, 3368.86, 3336.36]
    assert frame["volume"].isna().all() and frame["amount"].isna().all()


def test_index_in_lots_has_no_volume_to_scale(root):
    write(root, "000300.SH.csv", INDEX)
    raw = get_provider("csv", root=str(root), volume_unit="lots").fetch(
        "000300.SH", "2024-01-01", "2024-01-31"
    )
    assert "volume" not in raw.columns and len(raw) == 3


def test_minute_bars_keep_their_time_and_the_whole_last_day(root):
    write(root, "600000.SH.csv", MINUTE)
    provider = get_provider("csv", root=str(root))
    frame = bars(provider, "600000.SH", "2024-01-02", "2024-01-03", freq="1m")
    assert_canonical(frame)
    assert frame["ts"].dt.strftime("%Y-%m-%d %H:%M").tolist() == [
        "2024-01-02 09:31", "2024-01-02 09:32", "2024-01-02 15:00",
        "2024-01-03 09:31", "2024-01-03 15:00",
    ]
    assert frame["amount"].tolist()[-1] == 15315.0


def test_yyyymmdd_integers_vol_alias_and_unsorted_rows(root):
    write(root, "600000.SH.csv", TUSHARE)
    raw = get_provider("csv", root=str(root)).fetch("600000.SH", "2024-01-03", "2024-01-04")
    assert list(raw.columns) == ["ts", "open", "high", "low", "close", "volume", "amount"]
    frame, _ = normalise(raw)
    assert frame["ts"].dt.strftime("%Y%m%d").tolist() == ["20240103", "20240104"]
    assert frame["volume"].tolist() == [250000.0, 300000.0]


def test_blank_yyyymmdd_cell_is_no_bar(root):
    write(root, "600000.SH.csv", TUSHARE + "600000.SH,,6.6,6.7,6.5,6.6,1,1\n")
    raw = get_provider("csv", root=str(root)).fetch("600000.SH", "2024-01-01", "2024-01-31")
    assert sorted(raw["ts"].dt.strftime("%Y%m%d")) == ["20240102", "20240103", "20240104"]


def test_utc_offsets_across_daylight_saving_keep_wall_time(root):
    write(root, "AAPL.csv", "timestamp,open,high,low,close\n"
                            "2024-03-08T09:30:00-05:00,1,2,0.5,1.5\n"
                            "2024-03-11T09:30:00-04:00,1,2,0.5,1.5\n")
    frame = bars(get_provider("csv", root=str(root)), "AAPL", "2024-03-01", "2024-03-31", "30m")
    assert frame["ts"].dt.strftime("%m-%d %H:%M").tolist() == ["03-08 09:30", "03-11 09:30"]


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        ("2024-01-03", "2024-01-05", ["2024-01-03", "2024-01-04", "2024-01-05"]),
        ("2024-01-05", "2024-01-05", ["2024-01-05"]),
        ("2024-01-06", "2024-01-07", []),  # a weekend: no bars, no error
        ("2023-01-01", "2023-12-31", []),
        (pd.Timestamp("2024-01-08"), "2030-01-01", ["2024-01-08"]),
    ],
)
def test_window_is_inclusive(root, start, end, expected):
    write(root, "AAPL.csv", ENGLISH)
    provider = get_provider("csv", root=str(root))
    raw = provider.fetch("AAPL", start, end)
    assert raw["ts"].dt.strftime("%Y-%m-%d").tolist() == expected
    assert_canonical(bars(provider, "AAPL", start, end))


def test_columns_mapping_as_dict_and_as_cli_string(root):
    write(root, "AAPL.csv", "Day;O;H;L;C;Qty\n".replace(";", ",") + "2024-01-02,1,2,0.5,1.5,10\n")
    text = "ts:Day,open:O,high:H,low:L,close:C,volume:Qty"
    from_cli = get_provider("csv", root=str(root), columns=text)
    assert from_cli.columns == {"ts": "Day", "open": "O", "high": "H", "low": "L",
                                "close": "C", "volume": "Qty"}
    from_dict = get_provider("csv", root=str(root), columns=dict(from_cli.columns))
    assert from_cli == from_dict
    frame = bars(from_cli, "AAPL", "2024-01-01", "2024-01-31")
    assert_canonical(frame)
    assert frame.iloc[0][list(BAR_COLUMNS[1:6])].tolist() == [1.0, 2.0, 0.5, 1.5, 10.0]


def test_partial_mapping_overrides_detection(root):
    # Both "date" and "publish_date": the mapping picks the second, the rest is detected.
    write(root, "AAPL.csv", "date,publish_date,open,high,low,close\n"
                            "2024-01-01,2024-01-02,1,2,0.5,1.5\n")
    provider = get_provider("csv", root=str(root), columns="date:publish_date")
    assert provider.fetch("AAPL", "2024-01-02", "2024-01-02")["close"].tolist() == [1.5]


def test_mapped_column_missing_names_it_and_the_header(root):
    write(root, "AAPL.csv", ENGLISH)
    provider = get_provider("csv", root=str(root), columns="amount:Turnover")
    with pytest.raises(PermanentProviderError, match=r"no column 'Turnover'.*Adj Close"):
        provider.fetch("AAPL", "2024-01-01", "2024-01-31")


def test_undetectable_header_asks_for_the_columns_option(root):
    write(root, "AAPL.csv", "d,o,h,l,c\n2024-01-02,1,2,0.5,1.5\n")
    with pytest.raises(PermanentProviderError, match=r"no ts, open, high, low, close.*columns"):
        get_provider("csv", root=str(root)).fetch("AAPL", "2024-01-01", "2024-01-31")


def test_separate_date_and_time_refused_for_minute_bars(root):
    write(root, "AAPL.csv", "日期,时间,开盘,最高,最低,收盘\n2024-01-02,0931,1,2,0.5,1.5\n")
    provider = get_provider("csv", root=str(root))
    with pytest.raises(PermanentProviderError, match="separate date"):
        provider.fetch("AAPL", "2024-01-01", "2024-01-31", "1m")
    # Daily bars only need the date.
    assert len(provider.fetch("AAPL", "2024-01-01", "2024-01-31", "1d")) == 1


def test_unreadable_dates_are_a_permanent_error(root):
    write(root, "AAPL.csv", "date,open,high,low,close\nsoon,1,2,0.5,1.5\nlater,1,2,0.5,1.5\n")
    with pytest.raises(PermanentProviderError, match="no readable dates"):
        get_provider("csv", root=str(root)).fetch("AAPL", "2024-01-01", "2024-01-31")


@pytest.mark.parametrize("content", [b"", b'date,open\n"2024-01-02,1\n'])
def test_empty_or_corrupt_csv_is_a_permanent_error(root, content):
    (root / "AAPL.csv").write_bytes(content)
    with pytest.raises(PermanentProviderError, match=r"AAPL\.csv") as info:
        get_provider("csv", root=str(root)).fetch("AAPL", "2024-01-01", "2024-01-31")
    assert "\n" not in str(info.value)


def test_header_only_file_is_empty_not_an_error(root):
    write(root, "AAPL.csv", ENGLISH.splitlines()[0] + "\n")
    raw = get_provider("csv", root=str(root)).fetch("AAPL", "2024-01-01", "2024-01-31")
    assert len(raw) == 0
    assert len(normalise(raw)[0]) == 0


def test_missing_file_is_symbol_not_found(root):
    provider = get_provider("csv", root=str(root))
    with pytest.raises(SymbolNotFoundError) as info:
        provider.fetch("000002.SZ", "2024-01-01", "2024-01-31")
    assert isinstance(info.value, LookupError)
    assert "000002.SZ" in str(info.value)
    assert str(root.resolve() / "000002.SZ.csv") in str(info.value)
    assert info.value.path == str(root.resolve() / "000002.SZ.csv")
    restored = pickle.loads(pickle.dumps(info.value))
    assert type(restored) is SymbolNotFoundError and restored.symbol == "000002.SZ"


def test_symbols_are_normalised_before_the_path_is_built(root):
    write(root, "000001.SZ.csv", INDEX)
    provider = get_provider("csv", root=str(root))
    assert len(provider.fetch("sz000001", "2024-01-01", "2024-01-31")) == 3
    with pytest.raises(InvalidSymbolError):
        provider.fetch("../000001.SZ", "2024-01-01", "2024-01-31")


def test_code_pattern(root):
    write(root, "daily/000001.csv", INDEX)
    write(root, "daily/AAPL.csv", ENGLISH)
    provider = get_provider("csv", root=str(root), pattern="daily/{code}.csv")
    assert len(provider.fetch("000001.SZ", "2024-01-01", "2024-01-31")) == 3
    assert len(provider.fetch("AAPL", "2024-01-01", "2024-01-31")) == 5
    assert provider.list_symbols() == ["000001.SZ", "AAPL"]


def test_adjusted_prices_are_refused(root):
    write(root, "AAPL.csv", ENGLISH)
    provider = get_provider("csv", root=str(root))
    assert CSVProvider.adjusts == (Adjust.NONE,)
    with pytest.raises(InvalidOptionError, match="qfq"):
        provider.fetch("AAPL", "2024-01-01", "2024-01-31", adjust="qfq")
    with pytest.raises(InvalidOptionError, match="qfq"):
        kdist.ingest(["AAPL"], start="2024-01-01", end="2024-01-31", adjust="qfq",
                     provider=provider, db=str(root.parent / "never.duckdb"), client="sync")
    assert not (root.parent / "never.duckdb").exists()


# -- security ----------------------------------------------------------------------------------


@pytest.fixture
def outside(tmp_path):
    """A real file outside the root, so a refusal cannot be a mere 'not found'."""
    directory = tmp_path / "secret"
    directory.mkdir()
    write(directory, "AAPL.csv", ENGLISH)
    return directory


def test_dotdot_pattern_is_refused(root, outside):
    provider = get_provider("csv", root=str(root), pattern="../secret/{symbol}.csv")
    with pytest.raises(PermanentProviderError, match="outside root") as info:
        provider.fetch("AAPL", "2024-01-01", "2024-01-31")
    assert not isinstance(info.value, SymbolNotFoundError)
    with pytest.raises(PermanentProviderError, match="outside root"):
        provider.list_symbols()


def test_absolute_pattern_is_refused(root, outside):
    provider = get_provider("csv", root=str(root), pattern=str(outside / "{symbol}.csv"))
    with pytest.raises(PermanentProviderError, match="outside root"):
        provider.fetch("AAPL", "2024-01-01", "2024-01-31")
    with pytest.raises(PermanentProviderError, match="outside root"):
        provider.list_symbols()


def test_symlink_out_of_root_is_refused(root, outside):
    os.symlink(outside / "AAPL.csv", root / "AAPL.csv")
    os.symlink(outside, root / "linked")
    provider = get_provider("csv", root=str(root))
    with pytest.raises(PermanentProviderError, match="outside root") as info:
        provider.fetch("AAPL", "2024-01-01", "2024-01-31")
    assert str(root.resolve() / "AAPL.csv") in str(info.value)  # names the link it followed
    with pytest.raises(PermanentProviderError, match="outside root"):
        get_provider("csv", root=str(root), pattern="linked/{symbol}.csv").fetch(
            "AAPL", "2024-01-01", "2024-01-31"
        )
    assert provider.list_symbols() == []


def test_symlink_inside_root_and_symlinked_root_are_fine(tmp_path, root):
    write(root, "store/AAPL-file.csv", ENGLISH)
    os.symlink(root / "store/AAPL-file.csv", root / "AAPL.csv")
    os.symlink(root, tmp_path / "alias")
    provider = get_provider("csv", root=str(tmp_path / "alias"))
    assert len(provider.fetch("AAPL", "2024-01-01", "2024-01-31")) == 5
    assert provider.list_symbols() == ["AAPL"]


# -- list_symbols -----------------------------------------------------------------------------


def test_list_symbols(root):
    for name in ("AAPL.csv", "000001.SZ.csv", "600000.SH.csv", "^GSPC.csv"):
        write(root, name, INDEX)
    # Not a symbol, not canonical, another suffix, a directory: all skipped.
    for name in ("bad name!.csv", "000001.sz.csv", "MSFT.parquet", "notes.txt"):
        write(root, name, INDEX)
    (root / "DIR.csv").mkdir()
    assert get_provider("csv", root=str(root)).list_symbols() == [
        "000001.SZ", "600000.SH", "AAPL", "^GSPC",
    ]
    assert get_provider("parquet", root=str(root)).list_symbols() == ["MSFT"]


def test_list_symbols_feeds_ingest_all(tmp_path, root):
    write(root, "AAPL.csv", ENGLISH)
    write(root, "000300.SH.csv", INDEX)
    report = kdist.ingest(None, start="2024-01-01", end="2024-01-31",
                          provider=get_provider("csv", root=str(root)),
                          db=str(tmp_path / "k.duckdb"), client="sync")
    assert report.symbols_ok == 2 and report.rows_written == 8


# -- options, metadata, pickling --------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({}, "needs option root"),
        ({"pattern": "{sym}.csv"}, r"field \{sym\}"),
        ({"pattern": "{symbol.__class__}.csv"}, "field"),
        ({"pattern": "{symbol!r}.csv"}, "field"),
        ({"pattern": "bars.csv"}, "names no symbol"),
        ({"pattern": "{symbol.csv"}, "not a valid format string"),
        ({"volume_unit": "hands"}, "volume_unit"),
        ({"encoding": "klingon"}, "not a known encoding"),
        ({"columns": "price:close"}, "bad pair"),
        ({"columns": "ts"}, "columns"),
        ({"colums": "ts:date"}, "Unknown option"),
    ],
)
def test_bad_options_are_refused_on_construction(root, options, match):
    if "root" in options:
        options = {**options, "root": str(root / "missing")}
    elif options:
        options = {**options, "root": str(root)}
    with pytest.raises(InvalidOptionError, match=match):
        get_provider("csv", **options)


def test_root_must_be_a_directory(root):
    write(root, "AAPL.csv", ENGLISH)
    provider = get_provider("parquet", root=str(root / "AAPL.csv"))
    with pytest.raises(InvalidOptionError, match="is not a directory"):
        provider.check(freq=Freq.DAY, adjust=Adjust.NONE, start=None, end=None)


def test_missing_root_is_refused_before_the_job_not_on_construction(root, tmp_path):
    # Construction must succeed where the files are not (a client submitting to remote
    # workers); the job itself checks the root before any work is submitted.
    provider = get_provider("csv", root=str(root / "missing"))
    assert pickle.loads(pickle.dumps(provider)) == provider
    with pytest.raises(InvalidOptionError, match="does not exist"):
        kdist.ingest(["AAPL"], start="2024-01-01", end="2024-01-31", provider=provider,
                     db=str(tmp_path / "k.duckdb"), client="sync")
    assert not (tmp_path / "k.duckdb").exists()


def test_metadata_and_registry():
    assert kdist.providers.provider_class("csv") is CSVProvider
    assert kdist.providers.provider_class("parquet") is ParquetProvider
    assert CSVProvider.requires == () and ParquetProvider.requires == ("pyarrow",)
    assert CSVProvider.freqs == tuple(Freq) and ParquetProvider.adjusts == (Adjust.NONE,)
    assert "encoding" in CSVProvider.options and "encoding" not in ParquetProvider.options
    rows = {r["name"]: r for r in kdist.available_providers()}
    assert rows["csv"]["installed"] and rows["parquet"]["installed"]
    assert "root" in rows["parquet"]["options"]


@pytest.mark.parametrize("name", ["csv", "parquet"])
def test_pickle_round_trip_keeps_options(root, name):
    write(root, "AAPL.csv", ENGLISH)
    pd.read_csv(root / "AAPL.csv").to_parquet(root / "AAPL.parquet")
    options = {"root": str(root), "columns": "ts:Date", "volume_unit": "lots"}
    if name == "csv":
        options["encoding"] = "latin-1"
    provider = get_provider(name, **options)
    clone = pickle.loads(pickle.dumps(provider))
    assert clone == provider and clone.config == provider.config
    assert clone.given_options() == {**options, "columns": {"ts": "Date"}}
    pd.testing.assert_frame_equal(
        clone.fetch("AAPL", "2024-01-01", "2024-01-31"),
        provider.fetch("AAPL", "2024-01-01", "2024-01-31"),
    )
    assert provider.fetch("AAPL", "2024-01-02", "2024-01-02")["volume"].iat[0] == 8248870000.0


# -- parquet ----------------------------------------------------------------------------------


def test_parquet_with_index_chinese_headers_and_dates(root):
    english = pd.read_csv(pd.io.common.StringIO(ENGLISH), parse_dates=["Date"])
    english.set_index("Date").to_parquet(root / "AAPL.parquet")  # ts stored as a pandas index
    chinese = pd.DataFrame(
        {
            "日期": [pd.Timestamp("2024-01-02").date(), pd.Timestamp("2024-01-03").date()],
            "开盘": [9.39, 9.19], "最高": [9.42, 9.22], "最低": [9.21, 9.15],
            "收盘": [9.21, 9.20], "成交量": [1158366, 733610], "成交额": [1.07e9, 6.7e8],
            "代码": ["000001", "000001"],
        }
    )
    chinese.to_parquet(root / "000001.SZ.parquet")  # 日期 is a date32 column
    provider = get_provider("parquet", root=str(root), volume_unit="lots")
    frame = bars(provider, "AAPL", "2024-01-03", "2024-01-05")
    assert_canonical(frame)
    assert frame["close"].tolist() == [184.25, 181.91, 181.18]
    assert frame["volume"].tolist() == [5841450000.0, 7198360000.0, 6230330000.0]
    frame = bars(provider, "000001.SZ", "2024-01-01", "2024-01-31")
    assert_canonical(frame)
    assert frame["ts"].dt.strftime("%Y-%m-%d").tolist() == ["2024-01-02", "2024-01-03"]
    assert frame["volume"].tolist() == [115836600.0, 73361000.0]


def test_parquet_minute_bars_tz_aware(root):
    minute = pd.read_csv(pd.io.common.StringIO(MINUTE), parse_dates=["datetime"])
    minute["datetime"] = minute["datetime"].dt.tz_localize("Asia/Shanghai")
    minute.drop(columns=["volume", "amount"]).to_parquet(root / "600000.SH.parquet")
    provider = get_provider("parquet", root=str(root))
    frame = bars(provider, "600000.SH", "2024-01-03", "2024-01-04", freq="1m")
    assert_canonical(frame)
    assert frame["ts"].dt.strftime("%Y-%m-%d %H:%M").tolist() == [
        "2024-01-03 09:31", "2024-01-03 15:00", "2024-01-04 09:31",
    ]
    assert frame["volume"].isna().all()


def test_corrupt_parquet_is_a_permanent_error(root):
    (root / "AAPL.parquet").write_bytes(b"PAR1 this is not a parquet file")
    with pytest.raises(PermanentProviderError, match=r"Cannot read .*AAPL\.parquet as Parquet"):
        get_provider("parquet", root=str(root)).fetch("AAPL", "2024-01-01", "2024-01-31")


def test_parquet_missing_file(root):
    write(root, "AAPL.csv", ENGLISH)
    with pytest.raises(SymbolNotFoundError, match=r"AAPL\.parquet"):
        get_provider("parquet", root=str(root)).fetch("AAPL", "2024-01-01", "2024-01-31")


# -- end to end -------------------------------------------------------------------------------


def test_ingest_end_to_end(tmp_path, root):
    write(root, "AAPL.csv", ENGLISH)
    write(root, "000300.SH.csv", INDEX)
    db = str(tmp_path / "k.duckdb")
    report = kdist.ingest(
        ["AAPL", "000300.SH", "MSFT"], start="2024-01-03", end="2024-01-05",
        provider=kdist.get_provider("csv", root=str(root)), db=db, client="sync",
    )
    assert (report.symbols_ok, report.symbols_failed, report.rows_written) == (2, 1, 5)
    assert "MSFT.csv does not exist" in report.failures["MSFT"]
    stored = kdist.load(db)
    assert stored.groupby("symbol").size().to_dict() == {"000300.SH": 2, "AAPL": 3}
    aapl = stored[stored["symbol"] == "AAPL"]
    assert aapl["ts"].dt.strftime("%Y-%m-%d").tolist() == ["2024-01-03", "2024-01-04",
                                                          "2024-01-05"]
    assert aapl["close"].tolist() == [184.25, 181.91, 181.18]
    assert aapl["volume"].tolist() == [58414500.0, 71983600.0, 62303300.0]
    assert stored.loc[stored["symbol"] == "000300.SH", "volume"].isna().all()
    assert set(stored["source"]) == {"csv"}


# -- conformance ------------------------------------------------------------------------------


class TestConformance(ProviderConformance):
    symbol = "AAPL"
    start, end = "2024-01-01", "2024-01-31"
    empty_window = ("2024-01-06", "2024-01-07")  # a weekend
    unknown_symbol = "MSFT"  # no file

    @pytest.fixture(params=["csv", "parquet"])
    def provider(self, request, root):
        write(root, "AAPL.csv", ENGLISH)
        pd.read_csv(root / "AAPL.csv").to_parquet(root / "AAPL.parquet")
        return get_provider(request.param, root=str(root))
