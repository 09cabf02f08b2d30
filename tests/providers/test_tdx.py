"""Tests of the tdx provider: TDX vipdoc binary files written in tmp_path, read back exactly.

Records are packed with :mod:`struct` from the layouts in PROVIDERS.md, independently of the
provider's numpy dtypes, so a wrong field order or width fails here. Every frame is passed
through :func:`kdist.schema.normalise` as the runner does; the security tests prove that files
resolving outside root are refused even when the file they point to exists.
"""

from __future__ import annotations

import os
import pickle
import struct

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
from kdist.providers.tdx import TdxProvider
from kdist.schema import BAR_COLUMNS, Adjust, Freq, normalise, window_bounds
from kdist.testing import ProviderConformance

# .day rows: date, open, high, low, close (price x scale), amount (float32), volume.
STOCK = [  # 600000.SH, x100
    (20240102, 650, 658, 649, 655, 1310000.0, 200000),
    (20240103, 655, 661, 652, 660, 1650000.0, 250000),
    (20240104, 660, 665, 655, 662, 1986000.0, 300000),
    (20240105, 662, 670, 660, 668, 2004000.0, 300000),
    (20240108, 668, 672, 661, 663, 1326000.0, 200000),
    (20240110, 663, 669, 650, 651, 1302000.0, 200000),
    (20240201, 700, 710, 690, 705, 705000.0, 100000),
    (20240229, 705, 720, 701, 719, 719000.0, 100000),
]
ETF = [  # 510050.SH, x1000
    (20240102, 2345, 2360, 2330, 2351, 12345678.0, 5250000),
    (20240103, 2351, 2355, 2334, 2338, 9876543.0, 4220000),
]
SZ_ETF = [  # 159915.SZ, x1000
    (20240102, 1789, 1800, 1780, 1795, 3000000.0, 1670000),
]
BJ_STOCK = [  # 830799.BJ, x100
    (20240102, 1520, 1555, 1500, 1533, 1533000.0, 100000),
    (20240103, 1533, 1540, 1510, 1512, 1512000.0, 100000),
]
SH_INDEX = [  # 000001.SH, x100, volume in 手 (amount / volume ~1,315 yuan: 100 shares' worth)
    (20240102, 343180, 343305, 338048, 338635, 412345678901.23, 313541012),
]
SZ_INDEX = [  # 399001.SZ, x100, volume in 手
    (20240102, 952464, 953000, 940000, 941230, 479876543210.5, 350500000),
]
SZ_STOCK = [  # 000001.SZ, x100
    (20240102, 939, 942, 921, 921, 1075742.0, 115836600),
]


def packed_date(y, m, d):
    return (y - 2004) * 2048 + m * 100 + d


def day_path(root, symbol, folder="lday", suffix="day"):
    code, exchange = symbol.split(".")
    exchange = exchange.lower()
    return root / "vipdoc" / exchange / folder / f"{exchange}{code}.{suffix}"


def write_day(root, symbol, rows, extra=b""):
    path = day_path(root, symbol)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b"".join(struct.pack("<IIIIIfII", *row, 0) for row in rows)
    path.write_bytes(data + extra)
    return path


def write_minute(root, symbol, rows, suffix="lc1"):
    """Write minute rows ``(datetime string, open, high, low, close, amount, volume)``.

    An ``.lc1``/``.lc5`` file holds float prices; an older ``.1``/``.5`` file (TDX's sh5fz
    archives) integers like a .day file's: ``<HHIIIIfII``.
    """
    folder = "minline" if suffix in ("lc1", "1") else "fzline"
    layout = "<HHfffffII" if suffix.startswith("lc") else "<HHIIIIfII"
    path = day_path(root, symbol, folder, suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b""
    for stamp, o, h, lo, c, amount, volume in rows:
        t = pd.Timestamp(stamp)
        data += struct.pack(
            layout, packed_date(t.year, t.month, t.day), t.hour * 60 + t.minute,
            o, h, lo, c, amount, volume, 0,
        )
    path.write_bytes(data)
    return path


MINUTE = [  # 600000.SH, 1-minute bars stamped at their end
    ("2024-01-02 09:31", 10.01, 10.05, 9.98, 10.02, 12024.0, 1200),
    ("2024-01-02 09:32", 10.02, 10.04, 10.01, 10.03, 8024.0, 800),
    ("2024-01-02 15:00", 10.10, 10.12, 10.09, 10.11, 30330.0, 3000),
    ("2024-01-03 09:31", 10.11, 10.15, 10.10, 10.14, 9126.0, 900),
    ("2024-01-03 15:00", 10.20, 10.22, 10.18, 10.21, 15315.0, 1500),
    ("2024-01-04 09:31", 10.21, 10.25, 10.20, 10.22, 7154.0, 700),
]


def five_minute_day(date):
    """A full session of 48 five-minute bars, 09:35-11:30 and 13:05-15:00, simple values."""
    ends = [570 + 5 * i for i in range(1, 25)] + [780 + 5 * i for i in range(1, 25)]
    rows = []
    for i, minute in enumerate(ends):
        o = round(10 + 0.01 * i, 2)
        c = round(o + 0.01, 2)
        stamp = f"{date} {minute // 60:02d}:{minute % 60:02d}"
        rows.append((stamp, o, round(c + 0.02, 2), round(o - 0.01, 2), c, 1000.0 * (i + 1),
                     100 * (i + 1)))
    return rows


def bars(provider, symbol, start, end, freq="1d"):
    """Fetch and normalise as the runner does; return the canonical frame."""
    lo, hi = window_bounds(start, end)
    raw = provider.fetch(symbol, start, end, freq, "none")
    frame, rejected = normalise(raw, freq=Freq.parse(freq), start=lo, end=hi, tz=provider.tz)
    assert rejected == {}
    assert list(frame.columns) == list(BAR_COLUMNS)
    assert str(frame["ts"].dtype) == "datetime64[us]"
    assert all(frame[c].dtype == np.float64 for c in BAR_COLUMNS[1:])
    assert frame["ts"].is_monotonic_increasing and frame["ts"].is_unique
    return frame


def stamps(frame, fmt="%Y-%m-%d"):
    return frame["ts"].dt.strftime(fmt).tolist()


def ohlc(frame, i=0):
    row = frame.iloc[i]
    return (row.open, row.high, row.low, row.close)


@pytest.fixture
def root(tmp_path):
    """A TDX installation with daily files of every kind of code, and 1m/5m files."""
    directory = tmp_path / "new_tdx"
    for symbol, rows in [
        ("600000.SH", STOCK), ("510050.SH", ETF), ("159915.SZ", SZ_ETF),
        ("830799.BJ", BJ_STOCK), ("000001.SH", SH_INDEX), ("399001.SZ", SZ_INDEX),
        ("000001.SZ", SZ_STOCK),
    ]:
        write_day(directory, symbol, rows)
    write_minute(directory, "600000.SH", MINUTE)
    write_minute(directory, "510050.SH", [("2024-01-02 09:31", 2.345, 2.347, 2.344, 2.346,
                                          23460.0, 10000)])
    write_minute(directory, "600000.SH",
                 five_minute_day("2024-01-02") + five_minute_day("2024-01-03")[:3], "lc5")
    return directory


@pytest.fixture
def tdx(root):
    return get_provider("tdx", root=str(root))


# -- daily files ------------------------------------------------------------------------------


def test_stock_day_file_exact_values(tdx):
    frame = bars(tdx, "600000.SH", "2024-01-01", "2024-01-31")
    assert stamps(frame) == [
        "2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-08", "2024-01-10",
    ]
    assert (frame["ts"].dt.hour == 0).all()
    assert ohlc(frame) == (6.50, 6.58, 6.49, 6.55)
    assert frame["close"].tolist() == [6.55, 6.60, 6.62, 6.68, 6.63, 6.51]
    assert frame["volume"].tolist() == [200000.0, 250000.0, 300000.0, 300000.0, 200000.0,
                                        200000.0]
    assert frame["amount"].iloc[0] == 1310000.0


@pytest.mark.parametrize(
    ("symbol", "first", "volume"),
    [
        ("510050.SH", (2.345, 2.360, 2.330, 2.351), 5250000.0),  # Shanghai ETF: x1000
        ("159915.SZ", (1.789, 1.800, 1.780, 1.795), 1670000.0),  # Shenzhen ETF: x1000
        ("830799.BJ", (15.20, 15.55, 15.00, 15.33), 100000.0),  # Beijing stock: x100
        # Indexes: x100, volume in 手 of 100 shares.
        ("000001.SH", (3431.80, 3433.05, 3380.48, 3386.35), 31354101200.0),
        ("399001.SZ", (9524.64, 9530.00, 9400.00, 9412.30), 35050000000.0),
        ("000001.SZ", (9.39, 9.42, 9.21, 9.21), 115836600.0),  # SZ stock: x100
    ],
)
def test_price_scale_is_detected_from_the_code(tdx, symbol, first, volume):
    frame = bars(tdx, symbol, "2024-01-02", "2024-01-02")
    assert ohlc(frame) == first
    assert frame["volume"].iat[0] == volume


def test_amount_is_the_files_float32(tdx):
    # 412345678901.23 does not fit a float32: the stored value is what TDX wrote.
    frame = bars(tdx, "000001.SH", "2024-01-02", "2024-01-02")
    assert frame["amount"].iat[0] == float(np.float32(412345678901.23)) == 412345663488.0


@pytest.mark.parametrize(
    ("scale", "symbol", "close"),
    [("1000", "600000.SH", 0.655), (100, "510050.SH", 23.51), ("auto", "510050.SH", 2.351)],
)
def test_price_scale_override(root, scale, symbol, close):
    provider = get_provider("tdx", root=str(root), price_scale=scale)
    assert bars(provider, symbol, "2024-01-02", "2024-01-02")["close"].tolist() == [close]


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        ("2024-01-03", "2024-01-05", ["2024-01-03", "2024-01-04", "2024-01-05"]),
        ("2024-01-05", "2024-01-05", ["2024-01-05"]),
        ("2024-01-06", "2024-01-07", []),  # a weekend: empty, not an error
        ("2024-02-29", "2030-01-01", ["2024-02-29"]),
        (pd.Timestamp("2023-12-01"), pd.Timestamp("2024-01-02").date(), ["2024-01-02"]),
    ],
)
def test_window_is_inclusive(tdx, start, end, expected):
    assert stamps(bars(tdx, "600000.SH", start, end)) == expected


def test_weekly_and_monthly_bars_are_stamped_on_their_last_trading_day(tdx):
    weekly = bars(tdx, "600000.SH", "2024-01-01", "2024-02-29", freq="1w")
    assert stamps(weekly) == ["2024-01-05", "2024-01-10", "2024-02-01", "2024-02-29"]
    assert ohlc(weekly) == (6.50, 6.70, 6.49, 6.68)
    assert weekly["volume"].iat[0] == 1050000.0 and weekly["amount"].iat[0] == 6950000.0
    assert ohlc(weekly, 1) == (6.68, 6.72, 6.50, 6.51)
    monthly = bars(tdx, "600000.SH", "2024-01-01", "2024-12-31", freq="1M")
    assert stamps(monthly) == ["2024-01-10", "2024-02-29"]
    assert ohlc(monthly) == (6.50, 6.72, 6.49, 6.51)
    assert monthly["volume"].tolist() == [1450000.0, 200000.0]


def test_weekly_bar_in_window_keeps_its_days_before_start(tdx):
    # The week of 2024-01-08 is stamped 01-10; from 01-09 it is the same bar, whole.
    weekly = bars(tdx, "600000.SH", "2024-01-09", "2024-01-31", freq="1w")
    assert stamps(weekly) == ["2024-01-10"]
    assert ohlc(weekly) == (6.68, 6.72, 6.50, 6.51)
    # A window ending before a period's last trading day does not hold that period.
    assert len(bars(tdx, "600000.SH", "2024-01-02", "2024-01-04", freq="1w")) == 0


def test_bad_dates_are_dropped_and_a_file_without_dates_refused(root, tdx):
    write_day(root, "600001.SH", [(20240231, 650, 658, 649, 655, 1.0, 1), STOCK[0]])
    assert stamps(bars(tdx, "600001.SH", "2000-01-01", "2030-01-01")) == ["2024-01-02"]
    # A 1-minute file renamed to .day: the same size, no decodable date.
    day_path(root, "600002.SH").write_bytes(day_path(root, "600000.SH", "minline", "lc1")
                                            .read_bytes())
    with pytest.raises(PermanentProviderError, match=r"sh600002\.day.*no valid date"):
        tdx.fetch("600002.SH", "2024-01-01", "2024-01-31")


def test_a_repeated_record_counts_once_in_aggregates(root, tdx):
    corrected = (20240102, 650, 658, 649, 657, 1314000.0, 200000)
    write_day(root, "600001.SH", [STOCK[0], corrected, STOCK[1]])
    daily, rejected = normalise(tdx.fetch("600001.SH", "2024-01-01", "2024-01-31"))
    assert rejected == {"duplicate timestamp": 1}
    assert daily["close"].tolist() == [6.57, 6.60]  # the later record wins
    weekly = bars(tdx, "600001.SH", "2024-01-01", "2024-01-31", freq="1w")
    assert ohlc(weekly) == (6.50, 6.61, 6.49, 6.60)
    assert weekly["volume"].tolist() == [450000.0]
    assert weekly["amount"].tolist() == [2964000.0]


# -- minute files -----------------------------------------------------------------------------


def test_one_minute_bars_keep_their_end_time_and_the_whole_last_day(tdx):
    frame = bars(tdx, "600000.SH", "2024-01-02", "2024-01-03", freq="1m")
    assert stamps(frame, "%Y-%m-%d %H:%M") == [
        "2024-01-02 09:31", "2024-01-02 09:32", "2024-01-02 15:00",
        "2024-01-03 09:31", "2024-01-03 15:00",
    ]
    # float32 prices come back as the exchange's ticks, not 10.0100002...
    assert ohlc(frame) == (10.01, 10.05, 9.98, 10.02)
    assert frame["close"].tolist() == [10.02, 10.03, 10.11, 10.14, 10.21]
    assert frame["volume"].tolist() == [1200.0, 800.0, 3000.0, 900.0, 1500.0]
    assert frame["amount"].tolist() == [12024.0, 8024.0, 30330.0, 9126.0, 15315.0]


def test_minute_prices_of_an_etf_keep_three_decimals(tdx):
    frame = bars(tdx, "510050.SH", "2024-01-02", "2024-01-02", freq="1m")
    assert ohlc(frame) == (2.345, 2.347, 2.344, 2.346)


def test_five_minute_bars(tdx):
    frame = bars(tdx, "600000.SH", "2024-01-03", "2024-01-03", freq="5m")
    assert stamps(frame, "%H:%M") == ["09:35", "09:40", "09:45"]
    assert ohlc(frame) == (10.00, 10.03, 9.99, 10.01)
    assert len(bars(tdx, "600000.SH", "2024-01-02", "2024-01-03", freq="5m")) == 51


@pytest.mark.parametrize(
    ("freq", "expected"),
    [
        ("15m", ["09:45", "10:00", "10:15", "10:30", "10:45", "11:00", "11:15", "11:30",
                 "13:15", "13:30", "13:45", "14:00", "14:15", "14:30", "14:45", "15:00"]),
        ("30m", ["10:00", "10:30", "11:00", "11:30", "13:30", "14:00", "14:30", "15:00"]),
        ("60m", ["10:30", "11:30", "14:00", "15:00"]),
    ],
)
def test_longer_intraday_bars_aggregate_five_minute_bars_per_session(tdx, freq, expected):
    frame = bars(tdx, "600000.SH", "2024-01-02", "2024-01-02", freq=freq)
    assert stamps(frame, "%H:%M") == expected
    # Recompute every bucket from the rows written, in plain Python.
    rows = five_minute_day("2024-01-02")
    size = len(rows) // len(expected)
    for i in range(len(expected)):
        chunk = rows[i * size:(i + 1) * size]
        assert ohlc(frame, i) == (chunk[0][1], max(r[2] for r in chunk),
                                  min(r[3] for r in chunk), chunk[-1][4])
        assert frame["volume"].iat[i] == sum(r[6] for r in chunk)
        assert frame["amount"].iat[i] == sum(r[5] for r in chunk)


def test_older_integer_minute_files_are_read_when_no_lc_file_exists(root, tdx):
    # 600004.SH has only sh600004.5 and sh600004.1: integer prices x100, like .day.
    write_minute(root, "600004.SH", [
        ("2024-01-02 09:35", 1001, 1005, 998, 1002, 1002000.0, 100000),
        ("2024-01-02 09:40", 1002, 1004, 1001, 1003, 501500.0, 50000),
        ("2024-01-02 15:00", 1010, 1012, 1009, 1011, 303300.0, 30000),
    ], "5")
    write_minute(root, "600004.SH", [
        ("2024-01-02 09:31", 1001, 1002, 1000, 1002, 20040.0, 2000),
    ], "1")
    five = bars(tdx, "600004.SH", "2024-01-02", "2024-01-02", freq="5m")
    assert stamps(five, "%H:%M") == ["09:35", "09:40", "15:00"]
    assert ohlc(five) == (10.01, 10.05, 9.98, 10.02)
    assert five["volume"].tolist() == [100000.0, 50000.0, 30000.0]
    assert five["amount"].tolist() == [1002000.0, 501500.0, 303300.0]
    hour = bars(tdx, "600004.SH", "2024-01-02", "2024-01-02", freq="60m")
    assert stamps(hour, "%H:%M") == ["10:30", "15:00"]
    assert ohlc(hour) == (10.01, 10.05, 9.98, 10.03)
    one = bars(tdx, "600004.SH", "2024-01-02", "2024-01-02", freq="1m")
    assert stamps(one, "%H:%M") == ["09:31"] and ohlc(one) == (10.01, 10.02, 10.00, 10.02)
    # An ETF's integers carry three decimals, as in its .day file.
    write_minute(root, "510300.SH", [("2024-01-02 09:35", 3512, 3515, 3510, 3514,
                                      351400.0, 100000)], "5")
    assert ohlc(bars(tdx, "510300.SH", "2024-01-02", "2024-01-02", freq="5m")) == (
        3.512, 3.515, 3.510, 3.514)


def test_an_lc_file_wins_over_the_older_file_and_a_missing_one_names_both(root, tdx):
    write_minute(root, "600000.SH", [("2024-01-03 09:35", 1, 1, 1, 1, 1.0, 1)], "5")
    frame = bars(tdx, "600000.SH", "2024-01-03", "2024-01-03", freq="5m")
    assert stamps(frame, "%H:%M") == ["09:35", "09:40", "09:45"]  # sh600000.lc5's bars
    with pytest.raises(SymbolNotFoundError, match=r"sh600009\.lc5 nor .*sh600009\.5 does"):
        tdx.fetch("600009.SH", "2024-01-02", "2024-01-02", "5m")


def test_partial_hour_is_stamped_at_its_bucket_end(tdx):
    # 2024-01-03 has only 09:35-09:45: one 60m bar, stamped 10:30, not 09:45.
    frame = bars(tdx, "600000.SH", "2024-01-03", "2024-01-03", freq="60m")
    assert stamps(frame, "%Y-%m-%d %H:%M") == ["2024-01-03 10:30"]
    assert ohlc(frame) == (10.00, 10.05, 9.99, 10.03)
    assert frame["volume"].tolist() == [600.0]


def test_freq_without_its_directory_is_refused_up_front(tmp_path):
    write_day(tmp_path, "600000.SH", STOCK)
    provider = get_provider("tdx", root=str(tmp_path))
    with pytest.raises(InvalidOptionError, match=r"no 1m bars .*minline.*盘后数据下载"):
        provider.check(freq=Freq.MIN1, adjust=Adjust.NONE, start=None, end=None)
    with pytest.raises(InvalidOptionError, match=r"no 30m bars .*fzline"):
        kdist.ingest(["600000.SH"], start="2024-01-01", end="2024-01-31", freq="30m",
                     provider=provider, db=str(tmp_path / "k.duckdb"), client="sync")
    assert not (tmp_path / "k.duckdb").exists()


def test_adjusted_prices_are_refused(tdx):
    assert TdxProvider.adjusts == (Adjust.NONE,)
    with pytest.raises(InvalidOptionError, match="qfq"):
        tdx.fetch("600000.SH", "2024-01-01", "2024-01-31", adjust="qfq")


# -- missing and broken files -----------------------------------------------------------------


def test_missing_file_is_symbol_not_found_naming_the_path(root, tdx):
    with pytest.raises(SymbolNotFoundError) as info:
        tdx.fetch("600001.SH", "2024-01-01", "2024-01-31")
    expected = str(root.resolve() / "vipdoc" / "sh" / "lday" / "sh600001.day")
    assert expected in str(info.value) and info.value.path == expected
    assert isinstance(info.value, LookupError) and info.value.symbol == "600001.SH"
    restored = pickle.loads(pickle.dumps(info.value))
    assert type(restored) is SymbolNotFoundError and restored.path == expected
    with pytest.raises(SymbolNotFoundError, match=r"minline[/\\]sz000001\.lc1"):
        tdx.fetch("000001.SZ", "2024-01-01", "2024-01-31", freq="1m")


def test_symbols_outside_the_a_share_markets_are_not_found(tdx):
    with pytest.raises(SymbolNotFoundError, match=r"AAPL.*600000\.SH"):
        tdx.fetch("AAPL", "2024-01-01", "2024-01-31")


def test_symbols_are_normalised_before_the_path_is_built(tdx):
    assert len(tdx.fetch("sh600000", "2024-01-02", "2024-01-05")) == 4
    with pytest.raises(InvalidSymbolError):
        tdx.fetch("../600000.SH", "2024-01-01", "2024-01-31")


@pytest.mark.parametrize("extra", [b"\x00" * 5, b"\x00" * 31])
def test_truncated_file_is_a_permanent_error(root, tdx, extra):
    write_day(root, "600001.SH", STOCK[:2], extra=extra)
    with pytest.raises(PermanentProviderError, match=r"sh600001\.day.*truncated") as info:
        tdx.fetch("600001.SH", "2024-01-01", "2024-01-31")
    assert not isinstance(info.value, SymbolNotFoundError)
    assert info.value.symbol == "600001.SH"


def test_empty_file_is_no_bars(root, tdx):
    write_day(root, "600001.SH", [])
    assert len(normalise(tdx.fetch("600001.SH", "2024-01-01", "2024-01-31"))[0]) == 0


def test_directory_in_place_of_a_file_is_a_permanent_error(root, tdx):
    day_path(root, "600001.SH").mkdir()
    with pytest.raises(PermanentProviderError, match="not a regular file"):
        tdx.fetch("600001.SH", "2024-01-01", "2024-01-31")


# -- security ---------------------------------------------------------------------------------


@pytest.fixture
def outside(tmp_path):
    """A real TDX-like tree outside root, so a refusal cannot be a mere 'not found'."""
    directory = tmp_path / "secret"
    write_day(directory, "600001.SH", STOCK)
    return directory


def test_symlinked_file_out_of_root_is_refused(root, tdx, outside):
    link = day_path(root, "600001.SH")
    os.symlink(day_path(outside, "600001.SH"), link)
    with pytest.raises(PermanentProviderError, match="outside root") as info:
        tdx.fetch("600001.SH", "2024-01-01", "2024-01-31")
    assert not isinstance(info.value, SymbolNotFoundError)
    assert str(link) in str(info.value) or str(link.resolve()) in str(info.value)
    assert "600001.SH" not in tdx.list_symbols()


def test_symlinked_directory_out_of_root_is_refused(tmp_path, outside):
    root = tmp_path / "tdx"
    (root / "vipdoc" / "sh").mkdir(parents=True)
    os.symlink(outside / "vipdoc" / "sh" / "lday", root / "vipdoc" / "sh" / "lday")
    provider = get_provider("tdx", root=str(root))
    with pytest.raises(PermanentProviderError, match="outside root"):
        provider.fetch("600001.SH", "2024-01-01", "2024-01-31")
    assert provider.list_symbols() == []


def test_symlinks_inside_root_and_a_symlinked_vipdoc_are_fine(tmp_path, outside):
    # vipdoc on another drive is a common setup: the link at the top is the user's choice.
    root = tmp_path / "tdx"
    root.mkdir()
    os.symlink(outside / "vipdoc", root / "vipdoc")
    link = day_path(outside, "600002.SH")
    os.symlink(day_path(outside, "600001.SH"), link)
    provider = get_provider("tdx", root=str(root))
    assert len(provider.fetch("600002.SH", "2024-01-02", "2024-01-05")) == 4
    assert provider.list_symbols() == ["600001.SH", "600002.SH"]


# -- list_symbols -----------------------------------------------------------------------------


def test_list_symbols(root, tdx):
    # Not a symbol, the wrong exchange's folder, another suffix, a directory: all skipped.
    lday = root / "vipdoc" / "sh" / "lday"
    for name in ("sz000002.day", "sh60000.day", "sh600001.lc1", "notes.txt", "SH600003.day"):
        (lday / name).write_bytes(b"")
    (lday / "sh600004.day").mkdir()
    write_day(root, "000002.SZ", SZ_STOCK)
    assert tdx.list_symbols() == [
        "000001.SH", "000001.SZ", "000002.SZ", "159915.SZ", "399001.SZ", "510050.SH",
        "600000.SH", "830799.BJ",
    ]


def test_list_symbols_feeds_ingest_all(tmp_path, tdx):
    report = kdist.ingest(None, start="2024-01-02", end="2024-01-02", provider=tdx,
                          db=str(tmp_path / "k.duckdb"), client="sync")
    assert report.symbols_ok == 7 and report.rows_written == 7


# -- options, metadata, pickling --------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({}, "needs option root"),
        ({"root": ""}, "needs option root"),
        ({"root": "x", "price_scale": "250"}, "price_scale='250'.*power of ten"),
        ({"root": "x", "price_scale": "0.01"}, "price_scale='0.01'"),
        ({"root": "x", "price_scale": "10000000"}, "power of ten"),
        ({"root": "x", "price_scale": 1e3}, "price_scale='1000.0'"),
        ({"root": "x", "kinds": "stock,etf"}, "kinds='stock,etf'.*'etf' is no kind"),
        ({"root": "x", "kinds": ","}, "no kind"),
        ({"root": "x", "scale": "100"}, "Unknown option"),
    ],
)
def test_bad_options_are_refused_on_construction(options, match):
    with pytest.raises(InvalidOptionError, match=match):
        get_provider("tdx", **options)


def test_missing_root_is_refused_before_the_job_not_on_construction(tmp_path):
    # Construction must succeed where the files are not (a client submitting to remote
    # workers); the job itself checks the root before any work is submitted.
    provider = get_provider("tdx", root=str(tmp_path / "missing"))
    assert pickle.loads(pickle.dumps(provider)) == provider
    with pytest.raises(InvalidOptionError, match="does not exist"):
        kdist.ingest(["600000.SH"], start="2024-01-01", end="2024-01-31", provider=provider,
                     db=str(tmp_path / "k.duckdb"), client="sync")
    assert not (tmp_path / "k.duckdb").exists()


def test_root_must_hold_vipdoc(root):
    with pytest.raises(InvalidOptionError, match="has no vipdoc/ directory"):
        get_provider("tdx", root=str(root.parent)).list_symbols()
    with pytest.raises(InvalidOptionError, match=r"give its parent, .*new_tdx"):
        get_provider("tdx", root=str(root / "vipdoc")).list_symbols()
    (root / "file").write_bytes(b"")
    with pytest.raises(InvalidOptionError, match="is not a directory"):
        get_provider("tdx", root=str(root / "file")).check(
            freq=Freq.DAY, adjust=Adjust.NONE, start=None, end=None
        )


def test_pickle_round_trip_keeps_options(root):
    provider = get_provider("tdx", root=str(root), price_scale=1000)
    clone = pickle.loads(pickle.dumps(provider))
    assert clone == provider and clone.config == provider.config
    assert clone.given_options() == {"root": str(root), "price_scale": "1000"}
    pd.testing.assert_frame_equal(
        clone.fetch("600000.SH", "2024-01-01", "2024-01-31"),
        provider.fetch("600000.SH", "2024-01-01", "2024-01-31"),
    )
    assert clone.fetch("600000.SH", "2024-01-02", "2024-01-02")["close"].iat[0] == 0.655


def test_unpickled_provider_resolves_root_where_it_runs(tmp_path):
    # Built and pickled before the directory exists (a client), used after (a worker).
    target = tmp_path / "later"
    clone = pickle.loads(pickle.dumps(get_provider("tdx", root=str(target))))
    write_day(target, "600000.SH", STOCK)
    assert clone.list_symbols() == ["600000.SH"]


# -- end to end -------------------------------------------------------------------------------


def test_ingest_end_to_end(tmp_path, root):
    db = str(tmp_path / "k.duckdb")
    report = kdist.ingest(
        ["600000.SH", "510050.SH", "159915.SZ", "830799.BJ", "600001.SH"],
        start="2024-01-03", end="2024-01-05",
        provider=kdist.get_provider("tdx", root=str(root)), db=db, client="sync",
    )
    assert (report.symbols_ok, report.symbols_failed, report.rows_written) == (3, 1, 5)
    assert report.symbols_empty == 1  # 159915.SZ has no bar in the window
    assert "sh600001.day does not exist" in report.failures["600001.SH"]
    stored = kdist.load(db)
    assert stored.groupby("symbol").size().to_dict() == {
        "510050.SH": 1, "600000.SH": 3, "830799.BJ": 1,
    }
    stock = stored[stored["symbol"] == "600000.SH"]
    assert stamps(stock) == ["2024-01-03", "2024-01-04", "2024-01-05"]
    assert stock["close"].tolist() == [6.60, 6.62, 6.68]
    assert stock["volume"].tolist() == [250000.0, 300000.0, 300000.0]
    etf = stored[stored["symbol"] == "510050.SH"].iloc[0]
    assert (etf.open, etf.high, etf.low, etf.close, etf.amount) == (
        2.351, 2.355, 2.334, 2.338, 9876543.0,
    )
    assert set(stored["source"]) == {"tdx"}
    minute = kdist.ingest(["600000.SH"], start="2024-01-02", end="2024-01-02", freq="60m",
                          provider=kdist.get_provider("tdx", root=str(root)), db=db,
                          client="sync")
    assert minute.rows_written == 4
    assert stamps(kdist.load(db, freq="60m"), "%H:%M") == ["10:30", "11:30", "14:00", "15:00"]


# -- kinds of security: units as real TDX trees hold them (issue 15) --------------------------
#
# Records as a 2023 vipdoc tree holds them. Bonds and repo: TDX's price is per 1,000 yuan
# face value with 3 decimals (x1000), so the integer is 10,000x the quote, and volume counts
# 手 of 10 bonds. Indexes, TDX blocks and aliases count 手 of 100 shares.
BOND_SH = [  # 113011.SH, 2023-02-24: traded near 104.80 with ~3.73 million bonds
    (20230224, 1045000, 1050100, 1044000, 1047970, 390870000.0, 372968),
]
BOND_SZ = [  # 127045.SZ, a Shenzhen convertible
    (20230224, 1228000, 1235500, 1224100, 1230450, 184567000.0, 150000),
]
REPO_SH = [  # 204001.SH (GC001): rates 2.00% to 3.00%, closing at 2.72%
    (20230224, 20000, 30000, 15000, 27200, 1.0e12, 1000000000),
]
REPO_SZ = [  # 131810.SZ, closing at 2.67%
    (20230224, 21000, 29950, 12000, 26700, 1.5e11, 150000000),
]
INDEXES = {  # amount / volume ~1,300 yuan: a 手 of 100 shares at ~13 yuan
    "000300.SH": [(20230224, 412345, 413001, 409876, 410203, 2.6e11, 200000000)],
    "899050.BJ": [(20230224, 98500, 99210, 97654, 98765, 1.63e9, 1234567)],
    "880001.SH": [(20230224, 102345, 103000, 101000, 102500, 25.0e9, 19000000)],  # a block
    "999999.SH": [(20230224, 328226, 328629, 326171, 326716, 412345678901.23, 313541012)],
}
#: TDX's statistics rows (880006 涨跌家数 ...): their "open" is outside [low, high].
STATISTICS = [(20230224, 300000, 150000, 100000, 120000, 0.0, 0)]
#: 000725.SZ (BOE) trades billions of shares on busy days: above the int32 range, read unsigned.
BUSY_STOCK = [(20230224, 395, 400, 393, 398, 9.9e9, 2500000000)]
B_SHARES = {
    "900901.SH": [(20230224, 356, 360, 351, 358, 123456.0, 345000)],  # US dollars to 0.001
    "200002.SZ": [(20230224, 612, 618, 605, 615, 5678900.0, 925000)],  # HK dollars to 0.01
}


@pytest.fixture
def tree(tmp_path):
    """A vipdoc tree with every kind of security, laid out as TDX writes it."""
    directory = tmp_path / "new_tdx"
    files = {
        "600000.SH": STOCK, "510050.SH": ETF, "113011.SH": BOND_SH, "127045.SZ": BOND_SZ,
        "204001.SH": REPO_SH, "131810.SZ": REPO_SZ, "000001.SH": SH_INDEX,
        "399001.SZ": SZ_INDEX, "880006.SH": STATISTICS, "000725.SZ": BUSY_STOCK, **INDEXES,
        **B_SHARES,
    }
    for symbol, rows in files.items():
        write_day(directory, symbol, rows)
    write_minute(directory, "113011.SH", [
        # lc5 floats hold TDX's internal price too: 1047.97 per 1,000 yuan face value.
        ("2023-02-24 09:35", 1045.00, 1046.50, 1044.00, 1046.10, 13077350.0, 1250),
        ("2023-02-24 15:00", 1047.00, 1048.20, 1046.90, 1047.97, 4191880.0, 400),
    ], "lc5")
    write_minute(directory, "000001.SH", [
        ("2023-02-24 09:35", 3278.10, 3280.55, 3277.01, 3279.99, 9.5e9, 7200000),
    ], "lc5")
    return directory


def day(provider, symbol):
    return bars(provider, symbol, "2023-02-24", "2023-02-24").iloc[0]


def test_convertible_bonds_are_stored_as_quoted_per_100_yuan_and_in_bonds(tree):
    tdx = get_provider("tdx", root=str(tree))
    sh = day(tdx, "113011.SH")
    assert (sh.open, sh.high, sh.low, sh.close) == (104.5, 105.01, 104.4, 104.797)
    assert sh.volume == 3729680.0  # 372,968 手 of 10 bonds
    assert sh.amount == float(np.float32(390870000.0))
    # A bond's amount is its price (per 100 yuan face) times the bonds traded.
    assert 0.99 < sh.amount / (sh.close * sh.volume) < 1.01
    sz = day(tdx, "127045.SZ")
    assert (sz.open, sz.close, sz.volume) == (122.8, 123.045, 1500000.0)
    assert 0.99 < sz.amount / (sz.close * sz.volume) < 1.01


def test_bond_minute_bars_use_the_same_units(tree):
    tdx = get_provider("tdx", root=str(tree))
    frame = bars(tdx, "113011.SH", "2023-02-24", "2023-02-24", freq="5m")
    assert ohlc(frame) == (104.5, 104.65, 104.4, 104.61)
    assert frame["close"].tolist() == [104.61, 104.797]
    assert frame["volume"].tolist() == [12500.0, 4000.0]


def test_index_block_and_alias_volume_is_in_shares(tree):
    tdx = get_provider("tdx", root=str(tree))
    for symbol, rows in {"000001.SH": SH_INDEX, "399001.SZ": SZ_INDEX, **INDEXES}.items():
        start = str(rows[0][0])
        frame = bars(tdx, symbol, start, start)
        row = frame.iloc[0]
        assert row.close == rows[0][4] / 100, symbol
        assert row.volume == rows[0][6] * 100.0, symbol
        # Yuan per share of the constituents: a plausible A-share price, not 1,300.
        assert 5 < row.amount / row.volume < 30, symbol
    minute = bars(tdx, "000001.SH", "2023-02-24", "2023-02-24", freq="5m")
    assert ohlc(minute) == (3278.10, 3280.55, 3277.01, 3279.99)
    assert minute["volume"].tolist() == [720000000.0]


def test_a_file_that_counts_bonds_or_shares_keeps_its_unit(tree):
    # The amounts say which unit a file counts in: TDX trees count 手, but a file written by
    # other tools (or a TDX version) that counts bonds, or index shares, is kept as it is.
    write_day(tree, "113012.SH", [(20230224, 1045000, 1050100, 1044000, 1047970,
                                   390870000.0, 3729680)])
    write_day(tree, "000016.SH", [(20230224, 256789, 258000, 255000, 257012, 5.2e10,
                                   4000000000)])
    tdx = get_provider("tdx", root=str(tree))
    assert day(tdx, "113012.SH").volume == 3729680.0
    assert day(tdx, "000016.SH").volume == 4000000000.0


def test_repo_is_stored_as_a_rate_in_percent(tree):
    tdx = get_provider("tdx", root=str(tree))
    sh, sz = day(tdx, "204001.SH"), day(tdx, "131810.SZ")
    assert (sh.open, sh.high, sh.low, sh.close) == (2.0, 3.0, 1.5, 2.72)
    assert (sz.open, sz.high, sz.low, sz.close) == (2.1, 2.995, 1.2, 2.67)
    # Volume in 100-yuan units lent: amount / volume is 100 yuan.
    assert sh.volume == 10000000000.0 and sh.amount / sh.volume == pytest.approx(100, rel=1e-6)
    assert sz.volume == 1500000000.0 and sz.amount / sz.volume == pytest.approx(100, rel=1e-6)


def test_repo_rates_are_read_whichever_scale_the_file_uses(tree):
    # A repo file whose integers are the rate x 1,000 (2670 for 2.67%), not TDX's internal
    # rate x 10 (26700): the file's median rate says which, as its amounts say the volume's.
    write_day(tree, "131811.SZ", [(20230223, 2100, 2995, 1200, 2500, 1.2e11, 120000000),
                                  (20230224, 2100, 2995, 1200, 2670, 1.5e11, 150000000)])
    write_minute(tree, "131810.SZ", [("2023-02-24 09:35", 21.0, 29.95, 12.0, 26.7,
                                      1.5e9, 1500000)], "lc5")
    write_minute(tree, "131811.SZ", [("2023-02-24 09:35", 2.1, 2.995, 1.2, 2.67,
                                      1.5e9, 1500000)], "lc5")
    tdx = get_provider("tdx", root=str(tree))
    row = day(tdx, "131811.SZ")
    assert (row.open, row.high, row.low, row.close) == (2.1, 2.995, 1.2, 2.67)
    assert row.volume == 1500000000.0 and row.amount / row.volume == pytest.approx(100)
    for symbol in ("131810.SZ", "131811.SZ"):
        minute = bars(tdx, symbol, "2023-02-24", "2023-02-24", freq="5m")
        assert ohlc(minute) == (2.1, 2.995, 1.2, 2.67), symbol
    # An explicit price_scale is taken at its word.
    fixed = get_provider("tdx", root=str(tree), price_scale="10000")
    assert day(fixed, "131811.SZ").close == 0.267


def test_stock_volume_is_shares_read_unsigned(tree):
    row = day(get_provider("tdx", root=str(tree)), "000725.SZ")
    assert (row.close, row.volume) == (3.98, 2500000000.0)
    assert 0.9 < row.amount / (row.close * row.volume) < 1.1


def test_b_shares_keep_their_currency_ticks(tree):
    tdx = get_provider("tdx", root=str(tree))
    assert day(tdx, "900901.SH").close == 0.358  # US dollars, 3 decimals
    assert day(tdx, "200002.SZ").close == 6.15  # Hong Kong dollars, 2 decimals


@pytest.mark.parametrize(
    ("scale", "symbol", "close"),
    [("10000", "600000.SH", 0.0655), ("1000", "113011.SH", 1047.97), ("10", "600000.SH", 65.5),
     ("1", "204001.SH", 27200.0), ("auto", "113011.SH", 104.797)],
)
def test_price_scale_takes_any_power_of_ten(tree, scale, symbol, close):
    write_day(tree, "600000.SH", STOCK)
    provider = get_provider("tdx", root=str(tree), price_scale=scale)
    start = "2024-01-02" if symbol == "600000.SH" else "2023-02-24"
    assert bars(provider, symbol, start, start)["close"].tolist() == [close]


def test_minute_prices_follow_a_price_scale_override(tree):
    provider = get_provider("tdx", root=str(tree), price_scale="1000")
    frame = bars(provider, "113011.SH", "2023-02-24", "2023-02-24", freq="5m")
    assert frame["close"].tolist() == [1046.1, 1047.97]


def test_all_leaves_out_tdx_blocks_aliases_and_unknown_codes(tree):
    for name in ("sh700001.day", "sz201001.day", "sh300750.day"):  # codes no exchange uses
        (tree / "vipdoc" / name[:2] / "lday" / name).write_bytes(b"")
    listed = get_provider("tdx", root=str(tree)).list_symbols()
    assert "880001.SH" not in listed and "880006.SH" not in listed
    assert "999999.SH" not in listed
    assert {"000001.SH", "000300.SH", "399001.SZ", "899050.BJ", "113011.SH", "204001.SH",
            "131810.SZ", "900901.SH", "200002.SZ"} <= set(listed)
    assert not {"700001.SH", "201001.SZ", "300750.SH"} & set(listed)
    every = get_provider("tdx", root=str(tree), kinds="all").list_symbols()
    assert {"880001.SH", "880006.SH", "999999.SH"} <= set(every)
    assert get_provider("tdx", root=str(tree), kinds="index,block").list_symbols() == [
        "000001.SH", "000300.SH", "399001.SZ", "880001.SH", "880006.SH", "899050.BJ",
    ]
    # A block named explicitly is read whatever the kinds option says.
    assert day(get_provider("tdx", root=str(tree)), "880001.SH").close == 1025.0


def test_ingest_all_of_a_real_tree_stores_exact_units_and_no_statistics_rows(tmp_path, tree):
    db = str(tmp_path / "k.duckdb")
    report = kdist.ingest(None, start="2023-02-24", end="2023-02-24",
                          provider=get_provider("tdx", root=str(tree)), db=db, client="sync")
    assert report.symbols_failed == 0, report.failures
    stored = kdist.load(db).set_index("symbol")
    assert "880006.SH" not in stored.index and "999999.SH" not in stored.index
    bond = stored.loc["113011.SH"]
    assert (bond.close, bond.volume) == (104.797, 3729680.0)
    assert stored.loc["127045.SZ", "close"] == 123.045
    index = stored.loc["000300.SH"]
    assert (index.close, index.volume) == (4102.03, 20000000000.0)
    assert stored.loc["899050.BJ", "volume"] == 123456700.0
    assert (stored.loc["204001.SH", "close"], stored.loc["131810.SZ", "close"]) == (2.72, 2.67)
    # Asked for, TDX's rows come too; the statistics row is rejected as no exchange's bar.
    report = kdist.ingest(["880001.SH", "880006.SH"], start="2023-02-24", end="2023-02-24",
                          provider=get_provider("tdx", root=str(tree)), db=db, client="sync")
    assert report.symbols_ok == 1 and report.symbols_failed == 1
    assert "open or close outside [low, high]" in report.failures["880006.SH"]
    assert kdist.load(db, "880001.SH")["volume"].tolist() == [1900000000.0]


def test_kinds_option_pickles(tree):
    provider = get_provider("tdx", root=str(tree), kinds="stock,bond")
    clone = pickle.loads(pickle.dumps(provider))
    assert clone == provider
    assert clone.list_symbols() == ["000725.SZ", "113011.SH", "127045.SZ", "600000.SH"]


# -- conformance ------------------------------------------------------------------------------


class TestConformance(ProviderConformance):
    """No gbbq under this root: the provider serves no corporate actions (actions() is
    None); test_tdx_gbbq.py runs the suite on a root with one, actions_window set."""

    symbol = "600000.SH"
    start, end = "2024-01-01", "2024-01-31"
    empty_window = ("2024-01-06", "2024-01-07")  # a weekend
    unknown_symbol = "600001.SH"  # no file
    metadata = {"name": "tdx", "requires": (), "freqs": tuple(Freq), "adjusts": (Adjust.NONE,),
                "tz": None, "options": {"root": None, "price_scale": "auto", "kinds": "listed"}}

    @pytest.fixture
    def provider(self, tdx):
        return tdx
