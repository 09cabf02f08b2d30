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
from kdist.actions import COLUMNS as ACTION_COLUMNS
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


def test_adjust_declares_what_plain_files_hold(root):
    # kdist adjusts nothing: --adjust qfq says "these files are qfq" and stores them so.
    write(root, "AAPL.csv", ENGLISH)
    provider = get_provider("csv", root=str(root))
    assert CSVProvider.adjusts == ParquetProvider.adjusts == tuple(Adjust)
    plain = provider.fetch("AAPL", "2024-01-01", "2024-01-31")
    pd.testing.assert_frame_equal(
        provider.fetch("AAPL", "2024-01-01", "2024-01-31", adjust="qfq"), plain
    )
    db = str(root.parent / "k.duckdb")
    report = kdist.ingest(["AAPL"], start="2024-01-01", end="2024-01-31", adjust="hfq",
                          provider=provider, db=db, client="sync")
    assert report.rows_written == 5
    assert kdist.load(db, adjust="hfq")["close"].tolist()[-1] == 185.56
    assert len(kdist.load(db)) == 0  # nothing stored as unadjusted


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


# -- TDX "数据导出" files (issue 15) -----------------------------------------------------------
#
# Laid out as TDX's 数据导出 writes them: GBK, CRLF line ends, a title line (code, name,
# period, adjustment), a header of tab-separated names padded with spaces, rows separated by
# commas (or tabs), dates as YYYY/MM/DD, minute bars' times as HHMM (the bar's end), and a
# footer naming the source.
TDX_HEADER = "      日期\t    开盘\t    最高\t    最低\t    收盘\t    成交量\t    成交额"
TDX_MINUTE_HEADER = (
    "      日期\t    时间\t    开盘\t    最高\t    最低\t    收盘\t    成交量\t    成交额"
)
# 601003 柳钢股份, listed 2007-02-27, forward-adjusted: its early prices are negative. Volume
# in shares (amount / (close x volume) is ~1 where the prices are the traded ones, at the end).
QFQ_ROWS = [
    "2007/02/27,-0.55,-0.31,-0.67,-0.42,74326547,475963264.00",
    "2007/02/28,-0.43,-0.25,-0.55,-0.30,30254668,196655232.00",
    "2023/02/23,3.35,3.40,3.33,3.38,11234500,37937424.00",
    "2023/02/24,3.38,3.42,3.36,3.41,9876500,33552416.00",
]


def tdx_export(title, rows, header=TDX_HEADER, footer="数据来源:通达信"):
    """The bytes of a TDX export: GBK with CRLF line ends."""
    return "\r\n".join([title, header, *rows, footer, ""]).encode("gbk")


def put(root, name, data: bytes):
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def qfq_bars(provider, symbol, start, end, freq="1d", adjust="qfq"):
    lo, hi = window_bounds(start, end)
    raw = provider.fetch(symbol, start, end, freq, adjust)
    frame, rejected = normalise(raw, freq=Freq.parse(freq), adjust=adjust, start=lo, end=hi)
    assert rejected == {}
    assert_canonical(frame)
    return frame


def test_tdx_export_is_read_as_exported_without_any_option(root):
    put(root, "SH#601003.txt", tdx_export("601003 柳钢股份 日线 前复权", QFQ_ROWS))
    provider = get_provider("csv", root=str(root))  # no pattern, encoding or columns
    assert provider.list_symbols() == ["601003.SH"]
    frame = qfq_bars(provider, "601003.SH", "2007-01-01", "2023-12-31")
    assert frame["ts"].dt.strftime("%Y-%m-%d").tolist() == [
        "2007-02-27", "2007-02-28", "2023-02-23", "2023-02-24",
    ]
    first = frame.iloc[0]
    assert (first.open, first.high, first.low, first.close) == (-0.55, -0.31, -0.67, -0.42)
    assert frame["volume"].tolist() == [74326547.0, 30254668.0, 11234500.0, 9876500.0]
    assert frame["amount"].tolist()[-1] == 33552416.0


@pytest.mark.parametrize(("asked", "held"), [("none", "qfq"), ("hfq", "qfq")])
def test_tdx_export_title_must_match_the_adjust_asked_for(root, asked, held):
    put(root, "SH#601003.txt", tdx_export("601003 柳钢股份 日线 前复权", QFQ_ROWS))
    with pytest.raises(PermanentProviderError,
                       match=rf"holds 前复权 \({held}\) prices, not '{asked}'; .*--adjust qfq"):
        get_provider("csv", root=str(root)).fetch("601003.SH", "2007-01-01", "2023-12-31",
                                                  adjust=asked)


def test_tdx_export_title_names_the_security_and_period(root):
    put(root, "SH#601003.txt", tdx_export("600000 浦发银行 日线 不复权", QFQ_ROWS[2:]))
    put(root, "SH#600000.txt", tdx_export("600000 浦发银行 周线 不复权", QFQ_ROWS[2:]))
    provider = get_provider("csv", root=str(root))
    with pytest.raises(PermanentProviderError, match="export of 600000 浦发银行, not of 601003"):
        provider.fetch("601003.SH", "2023-01-01", "2023-12-31")
    with pytest.raises(PermanentProviderError, match=r"holds 周线 \(1w\) bars, not 1d"):
        provider.fetch("600000.SH", "2023-01-01", "2023-12-31")
    assert len(provider.fetch("600000.SH", "2023-01-01", "2023-12-31", freq="1w")) == 2


def test_tdx_export_tab_separated_with_hash_footer_and_lots(root):
    # Tab-separated rows; the client set to count 手: amount / (close x volume) is ~100.
    rows = ["2024/01/02\t9.39\t9.42\t9.21\t9.21\t1158366\t1075742252.00",
            "2024/01/03\t9.19\t9.22\t9.15\t9.20\t733610\t673673734.00"]
    put(root, "SZ#000001.txt", tdx_export("000001 平安银行 日线 不复权", rows,
                                          footer="#数据来源:通达信"))
    frame = qfq_bars(get_provider("csv", root=str(root)), "000001.SZ", "2024-01-01",
                     "2024-01-31", adjust="none")
    assert frame["close"].tolist() == [9.21, 9.20]
    assert frame["volume"].tolist() == [115836600.0, 73361000.0]
    # The user's word wins over the amounts.
    shares = get_provider("csv", root=str(root), volume_unit="shares")
    assert shares.fetch("000001.SZ", "2024-01-01", "2024-01-31")["volume"].tolist() == [
        1158366.0, 733610.0,
    ]


def test_tdx_export_of_an_index_is_shanghai_and_counts_shares(root):
    # SH#000001.txt is the SSE Composite (000001.SH), not Ping An Bank (000001.SZ); its
    # volume is in 手: amount / volume is ~1,315 yuan, 100 shares' worth.
    rows = ["2023/02/23,3287.48,3291.93,3275.47,3287.48,311245678,410876543488.00",
            "2023/02/24,3282.26,3286.29,3261.71,3267.16,313541012,412345663488.00"]
    put(root, "SH#000001.txt", tdx_export("000001 上证指数 日线 不复权", rows))
    provider = get_provider("csv", root=str(root))
    assert provider.list_symbols() == ["000001.SH"]
    frame = qfq_bars(provider, "000001.SH", "2023-02-24", "2023-02-24", adjust="none")
    assert frame["close"].tolist() == [3267.16]
    assert frame["volume"].tolist() == [31354101200.0]
    with pytest.raises(SymbolNotFoundError, match="SZ#000001.txt"):
        provider.fetch("000001.SZ", "2023-02-24", "2023-02-24")


def test_tdx_export_of_a_bond_counts_bonds(root):
    rows = ["2023/02/24,104.500,105.010,104.400,104.797,372968,390870000.00"]
    put(root, "SH#113011.txt", tdx_export("113011 光大转债 日线 不复权", rows))
    frame = qfq_bars(get_provider("csv", root=str(root)), "113011.SH", "2023-02-24",
                     "2023-02-24", adjust="none")
    assert (frame["close"].iat[0], frame["volume"].iat[0]) == (104.797, 3729680.0)


def test_tdx_export_header_unit_is_taken_at_its_word(root):
    header = TDX_HEADER.replace("成交量", "成交量(手)")
    rows = ["2024/01/02,9.39,9.42,9.21,9.21,1158366,1075742252.00"]
    put(root, "SZ#000001.txt", tdx_export("000001 平安银行 日线 不复权", rows, header=header))
    frame = get_provider("csv", root=str(root)).fetch("000001.SZ", "2024-01-02", "2024-01-02")
    assert frame["volume"].tolist() == [115836600.0]


def test_tdx_minute_export_has_a_time_column_at_the_bars_end(root):
    rows = ["2024/01/02\t0935\t6.50\t6.53\t6.49\t6.52\t1523400\t9914376.00",
            "2024/01/02\t0940\t6.52\t6.54\t6.51\t6.53\t823100\t5370726.00",
            "2024/01/02\t1130\t6.55\t6.56\t6.54\t6.55\t412300\t2700564.00",
            "2024/01/02\t1305\t6.55\t6.57\t6.55\t6.56\t512300\t3360688.00",
            "2024/01/03\t0935\t6.56\t6.58\t6.55\t6.57\t700000\t4599000.00"]
    put(root, "SH#600000.txt", tdx_export("600000 浦发银行 5分钟线 不复权", rows,
                                          header=TDX_MINUTE_HEADER, footer="#数据来源:通达信"))
    provider = get_provider("csv", root=str(root))
    frame = qfq_bars(provider, "600000.SH", "2024-01-02", "2024-01-02", freq="5m",
                     adjust="none")
    assert frame["ts"].dt.strftime("%Y-%m-%d %H:%M").tolist() == [
        "2024-01-02 09:35", "2024-01-02 09:40", "2024-01-02 11:30", "2024-01-02 13:05",
    ]
    assert frame["close"].tolist() == [6.52, 6.53, 6.55, 6.56]
    assert frame["volume"].tolist()[0] == 1523400.0
    with pytest.raises(PermanentProviderError, match=r"5分钟线 \(5m\) bars, not 1d"):
        provider.fetch("600000.SH", "2024-01-02", "2024-01-02")


@pytest.mark.parametrize(
    ("variant", "lines", "encoding"),
    [
        # Rows ending in a separator, as some export settings write them.
        ("trailing comma", ["600000 浦发银行 日线 不复权", TDX_HEADER,
                            "2024/01/02,6.50,6.58,6.49,6.55,200000,1310000.00,"], "gbk"),
        ("trailing tab", ["600000 浦发银行 日线 不复权", TDX_HEADER,
                          "2024/01/02\t6.50\t6.58\t6.49\t6.55\t200000\t1310000.00\t"], "gbk"),
        # A blank line after the title, a header padded with spaces only, dates with dashes.
        ("blank line", ["600000 浦发银行 日线 不复权", "",
                        "日期  开盘  最高  最低  收盘  成交量  成交额",
                        "2024-01-02,6.50,6.58,6.49,6.55,200000,1310000.00"], "gbk"),
        # 成交额 before 成交量: the header's order is the rows' order.
        ("amount first", ["600000 浦发银行 日线 不复权",
                          "      日期\t    开盘\t    最高\t    最低\t    收盘\t    成交额\t    成交量",
                          "2024/01/02,6.50,6.58,6.49,6.55,1310000.00,200000"], "gbk"),
        # Saved as UTF-8 with a byte order mark.
        ("utf-8 bom", ["\ufeff600000 浦发银行 日线 不复权", TDX_HEADER,
                       "2024/01/02,6.50,6.58,6.49,6.55,200000,1310000.00"], "utf-8"),
        # A qualified adjustment, and a title in words the pattern does not know.
        ("qualified adjust", ["600000 浦发银行 日线 不复权(原始)", TDX_HEADER,
                              "2024/01/02,6.50,6.58,6.49,6.55,200000,1310000.00"], "gbk"),
        ("unknown title", ["600000 浦发银行 日线数据 2024-01-31", TDX_HEADER,
                           "2024/1/2,6.50,6.58,6.49,6.55,200000,1310000.00"], "gbk"),
    ],
)
def test_tdx_export_variants(root, variant, lines, encoding):
    put(root, "SH#600000.txt", "\r\n".join([*lines, "数据来源:通达信", ""]).encode(encoding))
    frame = qfq_bars(get_provider("csv", root=str(root)), "600000.SH", "2024-01-01",
                     "2024-01-31", adjust="none")
    assert frame["ts"].dt.strftime("%Y-%m-%d").tolist() == ["2024-01-02"], variant
    row = frame.iloc[0]
    assert (row.open, row.high, row.low, row.close) == (6.50, 6.58, 6.49, 6.55), variant
    assert (row.volume, row.amount) == (200000.0, 1310000.0), variant


def test_tdx_export_with_an_unknown_title_still_names_its_code(root):
    put(root, "SH#600000.txt", tdx_export("600001 浦发银行 日线数据", QFQ_ROWS[2:]))
    with pytest.raises(PermanentProviderError, match="export of 600001, not of 600000.SH"):
        get_provider("csv", root=str(root)).fetch("600000.SH", "2023-01-01", "2023-12-31")


def test_format_option(root):
    # A header without title (format=tdx), and an export read as a plain CSV (format=csv).
    rows = ["2024/01/02,9.39,9.42,9.21,9.21,115836600,1075742252.00"]
    headerless = "\r\n".join([TDX_HEADER, *rows, "数据来源:通达信", ""]).encode("gbk")
    put(root, "SZ#000001.txt", headerless)
    tdx = get_provider("csv", root=str(root), format="tdx")
    assert tdx.fetch("000001.SZ", "2024-01-02", "2024-01-02")["close"].tolist() == [9.21]
    # TDX's padded, tab-separated header gives it away without the option too.
    auto = get_provider("csv", root=str(root))
    assert auto.fetch("000001.SZ", "2024-01-02", "2024-01-02")["close"].tolist() == [9.21]
    put(root, "SZ#000002.txt", tdx_export("000002 万 科Ａ 日线 不复权", rows))
    plain = get_provider("csv", root=str(root), format="csv", encoding="gbk")
    with pytest.raises(PermanentProviderError, match="no ts, open, high, low, close column"):
        plain.fetch("000002.SZ", "2024-01-02", "2024-01-02")
    write(root, "600000.SH.csv", MINUTE)
    with pytest.raises(PermanentProviderError, match="is not a TDX export"):
        tdx.fetch("600000.SH", "2024-01-02", "2024-01-02")
    with pytest.raises(InvalidOptionError, match="format='xls'"):
        get_provider("csv", root=str(root), format="xls")


def test_exchange_placeholder_and_pinned_patterns(root):
    rows = ["2023/02/24,3282.26,3286.29,3261.71,3267.16,313541012,412345663488.00"]
    put(root, "exports/SH#000001.txt", tdx_export("000001 上证指数 日线 不复权", rows))
    put(root, "exports/SZ#000001.txt", tdx_export("000001 平安银行 日线 不复权",
                                                  ["2023/02/24,13.32,13.40,13.21,13.30,"
                                                   "75400000,1002820000.00"]))
    both = get_provider("csv", root=str(root), pattern="exports/{exchange}#{code}.txt")
    assert both.list_symbols() == ["000001.SH", "000001.SZ"]
    assert both.fetch("000001.SH", "2023-02-24", "2023-02-24")["close"].tolist() == [3267.16]
    assert both.fetch("000001.SZ", "2023-02-24", "2023-02-24")["close"].tolist() == [13.30]
    # The pattern: the literal SH# says Shanghai, whatever the code looks like.
    shanghai = get_provider("csv", root=str(root), pattern="exports/SH#{code}.txt")
    assert shanghai.list_symbols() == ["000001.SH"]
    assert shanghai.fetch("000001.SH", "2023-02-24", "2023-02-24")["close"].tolist() == [3267.16]
    with pytest.raises(SymbolNotFoundError, match="names Shanghai files only"):
        shanghai.fetch("000001.SZ", "2023-02-24", "2023-02-24")


def test_auto_pattern_lists_every_kind_of_file(root):
    write(root, "AAPL.csv", ENGLISH)
    put(root, "SH#601003.txt", tdx_export("601003 柳钢股份 日线 前复权", QFQ_ROWS))
    put(root, "BJ#830799.txt", tdx_export("830799 艾融软件 日线 不复权",
                                          ["2024/01/02,15.20,15.55,15.00,15.33,100000,"
                                           "1533000.00"]))
    put(root, "SH#60000.txt", tdx_export("60000 x 日线 不复权", []))  # no symbol
    put(root, "31#01093.txt", b"")  # TDX's extended markets are numbered: not an A-share
    assert get_provider("csv", root=str(root)).list_symbols() == [
        "601003.SH", "830799.BJ", "AAPL",
    ]


def test_ingest_a_qfq_export_end_to_end(tmp_path, root):
    put(root, "SH#601003.txt", tdx_export("601003 柳钢股份 日线 前复权", QFQ_ROWS))
    db = str(tmp_path / "k.duckdb")
    report = kdist.ingest(None, start="2007-01-01", end="2023-12-31", adjust="qfq",
                          provider=get_provider("csv", root=str(root)), db=db, client="sync")
    assert (report.symbols_ok, report.rows_written) == (1, 4)
    stored = kdist.load(db, "601003.SH", adjust="qfq")
    assert stored["ts"].dt.strftime("%Y-%m-%d").tolist()[0] == "2007-02-27"
    assert stored["close"].tolist() == [-0.42, -0.30, 3.38, 3.41]
    assert stored["volume"].tolist()[-1] == 9876500.0
    assert len(kdist.load(db, adjust="none")) == 0
    # Asked as unadjusted, the title refuses it: the symbol fails, nothing is stored as none.
    write(root, "AAPL.csv", ENGLISH)
    report = kdist.ingest(["601003.SH", "AAPL"], start="2007-01-01", end="2024-12-31",
                          provider=get_provider("csv", root=str(root)), db=db, client="sync")
    assert report.symbols_failed == 1 and "--adjust qfq" in report.failures["601003.SH"]
    assert kdist.load(db, adjust="none")["symbol"].unique().tolist() == ["AAPL"]


# -- corporate actions ------------------------------------------------------------------------

# AAPL's dividends and its 4-for-1 split of 2020, per share, events only.
EVENTS = """ex_date,cash,split
20200807,0.82,
20200831,,4
20201106,0.205,
20240209,0.24,
"""
# A vendor's cumulative hfq factors only, ISO dates, a blank line.
FACTORS = """ex_date,factor
2020-08-07,1.0045

2020-08-31,4.018
2020-11-06,4.0261
"""


def actions(provider, symbol="AAPL", start="2020-01-01", end="2024-12-31"):
    got = provider.actions(symbol, start, end)
    assert list(got.columns) == list(ACTION_COLUMNS)
    return got


def days(frame):
    return frame["ex_date"].dt.strftime("%Y-%m-%d").tolist()


def test_no_actions_pattern_serves_no_actions(root):
    write(root, "AAPL.csv", ENGLISH)
    provider = get_provider("csv", root=str(root))
    assert provider.serves_actions is False
    assert provider.actions("AAPL", "2020-01-01", "2024-12-31") is None


def test_events_only_file_per_share(root):
    write(root, "actions/AAPL.csv", EVENTS)
    provider = get_provider("csv", root=str(root), actions_pattern="actions/{symbol}.csv")
    assert provider.serves_actions
    got = actions(provider)
    assert days(got) == ["2020-08-07", "2020-08-31", "2020-11-06", "2024-02-09"]
    assert got["cash"].tolist() == [0.82, 0.0, 0.205, 0.24]
    assert got["split"].tolist() == [1.0, 4.0, 1.0, 1.0]
    assert (got[["bonus", "rights", "rights_price"]] == 0).all().all()
    assert got["factor"].isna().all()  # kdist computes it from the raw closes
    # The window is inclusive; rows outside it are left out.
    assert days(actions(provider, start="2020-08-31", end="2020-11-06")) == [
        "2020-08-31", "2020-11-06"]


def test_factors_only_file(root):
    write(root, "AAPL.factors.csv", FACTORS)
    provider = get_provider("csv", root=str(root), actions_pattern="{symbol}.factors.csv")
    got = actions(provider)
    assert days(got) == ["2020-08-07", "2020-08-31", "2020-11-06"]
    assert got["factor"].tolist() == [1.0045, 4.018, 4.0261]
    assert got["split"].tolist() == [1.0] * 3 and (got["cash"] == 0).all()


def test_parquet_actions_file_with_dates_and_any_case_columns(root):
    frame = pd.DataFrame({
        "Ex_Date": pd.to_datetime(["2024-06-14", "2024-07-01"]),
        " CASH ": [0.5, None], "Bonus": [0.3, None], "factor": [None, 1.7],
    })
    (root / "actions").mkdir()
    frame.to_parquet(root / "actions" / "600000.SH.parquet")
    provider = get_provider("parquet", root=str(root),
                            actions_pattern="actions/{symbol}.parquet")
    got = actions(provider, "600000.SH")
    assert days(got) == ["2024-06-14", "2024-07-01"]
    assert got["cash"].tolist() == [0.5, 0.0] and got["bonus"].tolist() == [0.3, 0.0]
    assert got["factor"].iloc[1] == 1.7 and np.isnan(got["factor"].iloc[0])


def test_a_symbol_without_an_actions_file_has_none(root):
    write(root, "MSFT.csv", ENGLISH)
    provider = get_provider("csv", root=str(root), actions_pattern="actions/{symbol}.csv")
    got = actions(provider, "MSFT")
    assert len(got) == 0
    (root / "actions" / "MSFT.csv").mkdir(parents=True)
    with pytest.raises(PermanentProviderError, match="is not a regular file"):
        provider.actions("MSFT", "2020-01-01", "2024-12-31")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("ex_date,cahs\n2024-01-02,0.5\n",
         r"has the column 'cahs' that kdist does not know \(did you mean 'cash'\?\); an "
         "actions file has ex_date and any of cash bonus rights rights_price split factor"),
        ("ex_date,cash,Cash\n2024-01-02,0.5,0.5\n", "has the column 'Cash' twice"),
        ("date,cash\n2024-01-02,0.5\n", r"column 'date' .* \(did you mean 'ex_date'\?\)"),
        ("cash,split\n0.5,\n", r"has no ex_date column \(its columns are cash, split\)"),
        ("ex_date,cash\n2024-01-02,0.5\nsoon,0.6\n", "Row 2 of .* has ex_date 'soon', which is"),
        ("ex_date,cash\n2024-01-02,0.5\n2024-02-02,-\n", "Row 2 of .* has cash '-', which is no"),
        ("ex_date,split\n2024-01-02,0\n", "2024-01-02 has split .*0.0.*, which is not positive"),
    ],
    ids=["unknown", "twice", "date", "no-ex_date", "bad-date", "bad-number", "bad-split"],
)
def test_a_bad_actions_file_is_refused_in_one_line(root, text, match):
    path = write(root, "actions/AAPL.csv", text)
    provider = get_provider("csv", root=str(root), actions_pattern="actions/{symbol}.csv")
    with pytest.raises((PermanentProviderError, kdist.errors.DataError), match=match) as caught:
        provider.actions("AAPL", "2020-01-01", "2024-12-31")
    message = str(caught.value)
    assert "\n" not in message and ("AAPL" in message or str(path) in message)


def test_actions_files_stay_inside_the_root(root, outside):
    provider = get_provider("csv", root=str(root), actions_pattern="../secret/{symbol}.csv")
    with pytest.raises(PermanentProviderError, match="Refused the actions file of AAPL"):
        provider.actions("AAPL", "2020-01-01", "2024-12-31")
    (root / "actions").mkdir()
    (root / "actions" / "AAPL.csv").symlink_to(outside / "AAPL.csv")
    provider = get_provider("csv", root=str(root), actions_pattern="actions/{symbol}.csv")
    with pytest.raises(PermanentProviderError, match="is outside root"):
        provider.actions("AAPL", "2020-01-01", "2024-12-31")


@pytest.mark.parametrize(
    ("pattern", "match"),
    [
        ("{sym}.csv", r"actions_pattern='\{sym\}.csv' .* has field \{sym\}"),
        ("actions.csv", "names no symbol"),
        ("{symbol}.csv", "names the bar files"),
    ],
)
def test_bad_actions_patterns_are_refused_on_construction(root, pattern, match):
    with pytest.raises(InvalidOptionError, match=match):
        get_provider("csv", root=str(root), actions_pattern=pattern)


def test_actions_files_are_no_symbols_to_list(root):
    write(root, "AAPL.csv", ENGLISH)
    write(root, "AAPL.DIV.csv", EVENTS)  # a file name that would be ticker AAPL.DIV's bars
    assert get_provider("csv", root=str(root)).list_symbols() == ["AAPL", "AAPL.DIV"]
    provider = get_provider("csv", root=str(root), actions_pattern="{symbol}.DIV.csv")
    assert provider.list_symbols() == ["AAPL"]
    assert days(actions(provider))[0] == "2020-08-07"


# -- conformance ------------------------------------------------------------------------------


FILE_OPTIONS = {"root": None, "pattern": "auto", "columns": None, "volume_unit": "auto",
                "actions_pattern": ""}


class FileConformance(ProviderConformance):
    """The suite for both file providers (not collected: its name does not start with Test)."""

    symbol = "AAPL"
    start, end = "2024-01-01", "2024-01-31"
    empty_window = ("2024-01-06", "2024-01-07")  # a weekend
    unknown_symbol = "MSFT"  # no file
    actions_window = ("2024-01-01", "2024-12-31")

    @pytest.fixture
    def provider(self, root):
        write(root, "AAPL.csv", ENGLISH)
        pd.read_csv(root / "AAPL.csv").to_parquet(root / "AAPL.parquet")
        write(root, "actions/AAPL.csv", EVENTS)
        pd.read_csv(root / "actions" / "AAPL.csv").to_parquet(root / "actions" / "AAPL.parquet")
        name = self.metadata["name"]  # csv or parquet: the actions file's suffix too
        return get_provider(name, root=str(root), actions_pattern=f"actions/{{symbol}}.{name}")


class TestCSVConformance(FileConformance):
    metadata = {"name": "csv", "requires": (), "freqs": tuple(Freq), "adjusts": tuple(Adjust),
                "options": {**FILE_OPTIONS, "encoding": "utf-8", "format": "auto"}}


class TestParquetConformance(FileConformance):
    metadata = {"name": "parquet", "requires": ("pyarrow",), "freqs": tuple(Freq),
                "adjusts": tuple(Adjust), "options": FILE_OPTIONS}
