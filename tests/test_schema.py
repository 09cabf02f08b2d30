"""The canonical bar: freq/adjust parsing, symbols, date windows and frame normalisation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kdist.errors import DataError, InvalidOptionError, InvalidSymbolError, UsageError
from kdist.schema import (
    BAR_COLUMNS,
    Adjust,
    Freq,
    normalise,
    normalise_symbol,
    parse_symbols,
    to_date,
    window_bounds,
)

DAYS = ["2024-01-02", "2024-01-03", "2024-01-04"]
OHLCV = {
    "open": [10.0, 11.0, 12.0],
    "high": [11.0, 12.0, 13.0],
    "low": [9.0, 10.5, 11.0],
    "close": [10.5, 11.5, 12.5],
    "volume": [100.0, 200.0, 300.0],
}


def frame(ts=DAYS, **overrides):
    """A clean three-bar provider frame, with some columns replaced."""
    return pd.DataFrame({"ts": ts, **OHLCV, **overrides})


def ts_list(bars):
    return [str(t) for t in bars["ts"]]


# --- Freq and Adjust -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [("1d", Freq.DAY), ("1w", Freq.WEEK), ("1M", Freq.MONTH), ("1m", Freq.MIN1),
     ("5m", Freq.MIN5), ("60m", Freq.MIN60), (Freq.MIN30, Freq.MIN30)],
)
def test_freq_parse(text, expected):
    assert Freq.parse(text) is expected


def test_freq_month_and_minute_are_distinct():
    assert Freq.parse("1M") is not Freq.parse("1m")
    assert not Freq.MONTH.intraday and not Freq.DAY.intraday and not Freq.WEEK.intraday
    assert Freq.MIN1.intraday and Freq.MIN60.intraday
    assert (Freq.MIN5.minutes, Freq.MIN60.minutes) == (5, 60)


@pytest.mark.parametrize("bad", ["1D", "daily", "", 5, None])
def test_freq_parse_unknown_lists_choices(bad):
    with pytest.raises(InvalidOptionError) as info:
        Freq.parse(bad)
    assert info.value.option == "freq"
    assert "1d, 1w, 1M, 1m, 5m, 15m, 30m, 60m" in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "text, expected",
    [("none", Adjust.NONE), ("QFQ", Adjust.QFQ), ("hfq", Adjust.HFQ), (None, Adjust.NONE),
     ("", Adjust.NONE), (Adjust.QFQ, Adjust.QFQ)],
)
def test_adjust_parse(text, expected):
    assert Adjust.parse(text) is expected


def test_adjust_parse_unknown():
    with pytest.raises(InvalidOptionError, match="Unknown adjust 'forward'; choose one of none"):
        Adjust.parse("forward")


# --- symbols ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, canonical",
    [
        ("000001.SZ", "000001.SZ"),
        ("000001.sz", "000001.SZ"),
        ("sz000001", "000001.SZ"),
        ("sz.000001", "000001.SZ"),
        ("SH.600000", "600000.SH"),
        ("600000.SS", "600000.SH"),
        ("600000", "600000.SH"),
        ("000001", "000001.SZ"),
        ("300750", "300750.SZ"),
        ("830799", "830799.BJ"),
        ("430047", "430047.BJ"),
        ("920001", "920001.BJ"),
        ("830799.bj", "830799.BJ"),
        ("  600000.SH \n", "600000.SH"),
        ("AAPL", "AAPL"),
        ("aapl", "AAPL"),
        ("brk-b", "BRK-B"),
        ("^GSPC", "^GSPC"),
        ("EURUSD=X", "EURUSD=X"),
        ("0700.HK", "0700.HK"),
    ],
)
def test_normalise_symbol(raw, canonical):
    assert normalise_symbol(raw) == canonical


@pytest.mark.parametrize(
    "bad",
    [
        "'; DROP TABLE kline; --",
        "AAPL'",
        'AA"PL',
        "AAPL;",
        "A\x00B",
        "AAPL\x00",
        "../etc",
        "a/b",
        "a\\b",
        "/etc/passwd",
        "AAPL\nMSFT",
        "A" * 10_000,
        "A" * 21,
        "",
        "   ",
        "12345",
        "1234567",
        ".HIDDEN",
        # Non-ASCII digits must not pass as an A-share code.
        "６０００００",
        "\u0666\u0660\u0660\u0660\u0660\u0660",
    ],
)
def test_invalid_symbols_are_rejected(bad):
    with pytest.raises(InvalidSymbolError) as info:
        normalise_symbol(bad)
    assert info.value.symbols == [bad]
    assert "use A-share codes like 000001.SZ" in str(info.value)
    # The message stays short even for a 10 kB symbol.
    assert len(str(info.value)) < 200


@pytest.mark.parametrize("bad", [None, 600000, b"600000.SH", ["AAPL"]])
def test_non_string_symbols_are_rejected(bad):
    with pytest.raises(InvalidSymbolError, match="expected a string"):
        normalise_symbol(bad)


def test_parse_symbols_keeps_order_and_dedupes():
    valid, invalid = parse_symbols(["sz000001", "AAPL", "600000", "000001.SZ", "aapl", "600000.SS"])
    assert valid == ["000001.SZ", "AAPL", "600000.SH"]
    assert invalid == []


def test_parse_symbols_splits_strings():
    assert parse_symbols("600000 sz000001,AAPL , ,600000.SH") == (
        ["600000.SH", "000001.SZ", "AAPL"],
        [],
    )


def test_parse_symbols_names_every_invalid_one():
    with pytest.raises(InvalidSymbolError) as info:
        parse_symbols(["600519.SH", "x'y", "MSFT", "a/b", "c;d"])
    assert info.value.symbols == ["x'y", "a/b", "c;d"]
    message = str(info.value)
    assert message.startswith("3 invalid symbol(s):")
    for bad in ("\"x'y\"", "'a/b'", "'c;d'"):
        assert bad in message
    assert "600519" not in message and "MSFT" not in message
    assert "nothing was fetched" in message
    assert isinstance(info.value, UsageError)


def test_parse_symbols_caps_the_names_shown():
    bad = [f"bad;{i}" for i in range(8)]
    with pytest.raises(InvalidSymbolError) as info:
        parse_symbols(bad)
    assert info.value.symbols == bad
    assert "'bad;4'" in str(info.value) and "'bad;5'" not in str(info.value)
    assert "and 3 more" in str(info.value)


def test_parse_symbols_skip_invalid():
    valid, invalid = parse_symbols(["x'y", "AAPL", "", "sh600000", 7], skip_invalid=True)
    assert valid == ["AAPL", "600000.SH"]
    assert invalid == ["x'y", "", "7"]


# --- dates -----------------------------------------------------------------------------------


def test_window_bounds_end_is_exclusive_next_day():
    lo, hi = window_bounds("2024-01-01", "2024-01-31")
    assert (lo, hi) == (pd.Timestamp("2024-01-01"), pd.Timestamp("2024-02-01"))


def test_window_bounds_accepts_dates_and_timestamps():
    import datetime as dt

    lo, hi = window_bounds(dt.date(2024, 2, 28), pd.Timestamp("2024-02-29 15:00", tz="UTC"))
    assert (lo, hi) == (pd.Timestamp("2024-02-28"), pd.Timestamp("2024-03-01"))


def test_window_bounds_single_day():
    lo, hi = window_bounds("2024-03-05", "2024-03-05")
    assert hi - lo == pd.Timedelta(days=1)


def test_window_bounds_start_after_end():
    with pytest.raises(InvalidOptionError, match="start 2024-02-01 is after end 2024-01-31"):
        window_bounds("2024-02-01", "2024-01-31")


@pytest.mark.parametrize("bad", ["yesterday-ish", "2024-13-45", None])
def test_to_date_rejects_garbage(bad):
    with pytest.raises(InvalidOptionError, match="start"):
        to_date(bad, name="start")


# --- normalise: columns and dtypes -----------------------------------------------------------


def test_normalise_canonical_columns_and_dtypes():
    bars, rejected = normalise(frame())
    assert tuple(bars.columns) == BAR_COLUMNS
    assert str(bars["ts"].dtype) == "datetime64[us]"
    for col in BAR_COLUMNS[1:]:
        assert bars[col].dtype == np.float64, col
    assert ts_list(bars) == [f"{d} 00:00:00" for d in DAYS]
    assert bars["close"].tolist() == [10.5, 11.5, 12.5]
    assert bars["amount"].isna().all()  # optional column, absent in the input
    assert rejected == {}


def test_normalise_empty_frame():
    for empty in (None, pd.DataFrame(), frame().iloc[:0]):
        bars, rejected = normalise(empty)
        assert tuple(bars.columns) == BAR_COLUMNS and len(bars) == 0 and rejected == {}
        assert str(bars["ts"].dtype) == "datetime64[us]"


@pytest.mark.parametrize("alias", ["date", "Date", "DATETIME", "time", "Timestamp", " TS "])
def test_normalise_ts_aliases_case_insensitive(alias):
    raw = pd.DataFrame({alias: DAYS, **{k.upper(): v for k, v in OHLCV.items()}})
    bars, _ = normalise(raw)
    assert ts_list(bars) == [f"{d} 00:00:00" for d in DAYS]
    assert bars["high"].tolist() == OHLCV["high"]


def test_normalise_datetime_index():
    raw = pd.DataFrame(OHLCV, index=pd.DatetimeIndex(DAYS, name="Date"))
    bars, _ = normalise(raw)
    assert ts_list(bars) == [f"{d} 00:00:00" for d in DAYS]
    assert bars["open"].tolist() == OHLCV["open"]


def test_normalise_multiindex_field_ticker():
    cols = pd.MultiIndex.from_product(
        [["Open", "High", "Low", "Close", "Volume"], ["AAPL"]], names=["Price", "Ticker"]
    )
    values = np.column_stack([OHLCV[c] for c in ("open", "high", "low", "close", "volume")])
    raw = pd.DataFrame(values, columns=cols, index=pd.DatetimeIndex(DAYS, name="Date"))
    bars, _ = normalise(raw)
    assert bars["close"].tolist() == OHLCV["close"]
    assert bars["volume"].tolist() == OHLCV["volume"]


def test_normalise_multiindex_ticker_field():
    cols = pd.MultiIndex.from_product([["AAPL"], ["Open", "High", "Low", "Close"]])
    values = np.column_stack([OHLCV[c] for c in ("open", "high", "low", "close")])
    bars, _ = normalise(pd.DataFrame(values, columns=cols, index=pd.DatetimeIndex(DAYS)))
    assert bars["low"].tolist() == OHLCV["low"]


def test_normalise_multiindex_of_several_tickers_is_a_data_error():
    cols = pd.MultiIndex.from_product([["Open", "High", "Low", "Close"], ["AAPL", "MSFT"]])
    raw = pd.DataFrame(np.ones((3, 8)), columns=cols, index=pd.DatetimeIndex(DAYS))
    with pytest.raises(DataError, match="appears more than once") as info:
        normalise(raw)
    assert info.value.column == "close"


def test_normalise_multiindex_without_fields():
    cols = pd.MultiIndex.from_product([["a", "b"], ["x", "y"]])
    raw = pd.DataFrame(np.ones((3, 4)), columns=cols, index=pd.DatetimeIndex(DAYS))
    with pytest.raises(DataError, match="'close'"):
        normalise(raw)


def test_normalise_extra_columns_are_dropped():
    bars, _ = normalise(frame(turnover=[1, 2, 3], name=["x", "y", "z"]))
    assert tuple(bars.columns) == BAR_COLUMNS


@pytest.mark.parametrize("missing", ["open", "high", "low", "close"])
def test_normalise_missing_price_column_names_it(missing):
    raw = frame().drop(columns=[missing])
    with pytest.raises(DataError, match=f"missing column '{missing}'") as info:
        normalise(raw)
    assert info.value.column == missing


def test_normalise_missing_ts_names_it():
    raw = frame().drop(columns=["ts"])
    with pytest.raises(DataError, match="missing column 'ts'") as info:
        normalise(raw)
    assert info.value.column == "ts"


def test_normalise_untranslated_vendor_headers_name_the_column():
    raw = pd.DataFrame({"日期": DAYS, "开盘": OHLCV["open"], "收盘": OHLCV["close"]})
    with pytest.raises(DataError) as info:
        normalise(raw)
    assert info.value.column == "ts"


def test_normalise_volume_strings_with_dashes_and_thousands():
    bars, rejected = normalise(frame(volume=["1,234,500", "--", "300"], amount=["1.5e3", "-", ""]))
    assert bars["volume"].tolist()[0] == 1_234_500.0
    assert np.isnan(bars["volume"].iloc[1])
    assert bars["volume"].iloc[2] == 300.0
    assert bars["amount"].iloc[0] == 1500.0 and bars["amount"].iloc[1:].isna().all()
    assert rejected == {}  # missing volume is not a reason to drop a bar


def test_normalise_price_strings():
    bars, _ = normalise(frame(close=["10.5", "11.5", "1,012.5"], high=["11", "12", "1,013"]))
    assert bars["close"].tolist() == [10.5, 11.5, 1012.5]


def test_normalise_yyyymmdd_int_dates():
    bars, rejected = normalise(frame(ts=[20240102, 20240103, 20240104]))
    assert ts_list(bars) == [f"{d} 00:00:00" for d in DAYS]
    assert rejected == {}


def test_normalise_yyyymmdd_with_a_missing_date():
    # A blank date makes a CSV column float, a nullable int column holds NA: neither may
    # crash nor become 1970-01-01.
    for ts in ([20240102.0, np.nan, 20240104.0], pd.array([20240102, None, 20240104], "Int64")):
        bars, rejected = normalise(frame(ts=ts))
        assert ts_list(bars) == ["2024-01-02 00:00:00", "2024-01-04 00:00:00"]
        assert rejected == {"bad timestamp": 1}


def test_normalise_unparseable_dates_are_counted():
    bars, rejected = normalise(frame(ts=["2024-01-02", "not a date", "2024-01-04"]))
    assert len(bars) == 2
    assert rejected == {"bad timestamp": 1}


# --- normalise: validation -------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, reason",
    [
        ({"high": [11.0, 10.0, 13.0], "low": [9.0, 10.5, 11.0]}, "high below low"),
        ({"close": [10.5, 12.5, 12.5]}, "open or close outside [low, high]"),
        ({"open": [10.0, 10.0, 12.0]}, "open or close outside [low, high]"),
        ({"close": [10.5, np.nan, 12.5]}, "missing or non-finite price"),
        ({"high": [11.0, np.inf, 13.0]}, "missing or non-finite price"),
        ({"low": [9.0, -np.inf, 11.0]}, "missing or non-finite price"),
        ({"open": [10.0, "--", 12.0]}, "missing or non-finite price"),
        ({"low": [9.0, 0.0, 11.0]}, "non-positive price"),
        (
            {"open": [10.0, -1.0, 12.0], "low": [9.0, -2.0, 11.0], "close": [10.5, -1.5, 12.5]},
            "non-positive price",
        ),
        ({"volume": [100.0, -5.0, 300.0]}, "negative volume"),
        ({"amount": [1.0, -5.0, 3.0]}, "negative volume"),
    ],
)
def test_normalise_rejects_bad_rows_with_reason(overrides, reason):
    bars, rejected = normalise(frame(**overrides))
    assert rejected == {reason: 1}
    assert ts_list(bars) == ["2024-01-02 00:00:00", "2024-01-04 00:00:00"]
    # The clean rows are untouched.
    assert bars["close"].tolist() == [10.5, 12.5]


def test_normalise_counts_each_reason():
    raw = frame(
        ts=DAYS + ["2024-01-05", "2024-01-08"],
        open=[10.0, 11.0, 12.0, 1.0, 2.0],
        high=[11.0, 10.0, 13.0, np.nan, 3.0],
        low=[9.0, 10.5, 11.0, 1.0, 1.0],
        close=[10.5, 11.5, 12.5, 1.0, 2.0],
        volume=[1.0, 1.0, -1.0, 1.0, 1.0],
    )
    bars, rejected = normalise(raw)
    assert rejected == {"high below low": 1, "negative volume": 1, "missing or non-finite price": 1}
    assert ts_list(bars) == ["2024-01-02 00:00:00", "2024-01-08 00:00:00"]


def test_normalise_negative_prices_allowed_for_qfq_only():
    raw = frame(
        open=[-1.0, 11.0, 12.0], high=[-0.5, 12.0, 13.0], low=[-2.0, 10.5, 11.0],
        close=[-1.5, 11.5, 12.5],
    )
    bars, rejected = normalise(raw, adjust=Adjust.QFQ)
    assert rejected == {} and bars["close"].tolist() == [-1.5, 11.5, 12.5]
    for adjust in (Adjust.NONE, Adjust.HFQ):
        bars, rejected = normalise(raw, adjust=adjust)
        assert rejected == {"non-positive price": 1} and len(bars) == 2


def test_normalise_qfq_still_rejects_broken_ohlc():
    raw = frame(open=[-1.0, 11.0, 12.0], high=[-3.0, 12.0, 13.0], low=[-2.0, 10.5, 11.0])
    bars, rejected = normalise(raw, adjust=Adjust.QFQ)
    assert rejected == {"high below low": 1} and len(bars) == 2


def test_normalise_duplicates_last_wins_and_sorted():
    raw = frame(
        ts=["2024-01-04", "2024-01-02", "2024-01-03", "2024-01-02"],
        open=[12.0, 10.0, 11.0, 20.0],
        high=[13.0, 11.0, 12.0, 21.0],
        low=[11.0, 9.0, 10.5, 19.0],
        close=[12.5, 10.5, 11.5, 20.5],
        volume=[3.0, 1.0, 2.0, 4.0],
    )
    bars, rejected = normalise(raw)
    assert ts_list(bars) == [f"{d} 00:00:00" for d in DAYS]
    assert bars["close"].tolist() == [20.5, 11.5, 12.5]  # the later 2024-01-02 row won
    assert bars["volume"].tolist() == [4.0, 2.0, 3.0]
    assert rejected == {"duplicate timestamp": 1}
    assert bars.index.tolist() == [0, 1, 2]


def test_normalise_rows_outside_window_rejected():
    bars, rejected = normalise(
        frame(ts=["2023-12-29", "2024-01-02", "2024-01-05"]),
        start=pd.Timestamp("2024-01-01"),
        end=pd.Timestamp("2024-01-05"),  # exclusive
    )
    assert ts_list(bars) == ["2024-01-02 00:00:00"]
    assert rejected == {"outside requested window": 2}


def test_normalise_intraday_keeps_end_day_bars_within_window():
    lo, hi = window_bounds("2024-01-02", "2024-01-02")
    raw = frame(ts=["2024-01-02 09:31", "2024-01-02 15:00", "2024-01-03 09:31"])
    bars, rejected = normalise(raw, freq=Freq.MIN1, start=lo, end=hi)
    assert ts_list(bars) == ["2024-01-02 09:31:00", "2024-01-02 15:00:00"]
    assert rejected == {"outside requested window": 1}


def test_normalise_daily_bars_at_midnight():
    raw = frame(ts=["2024-01-02 15:00", "2024-01-03 00:00:00", "2024-01-04 09:30:01"])
    bars, _ = normalise(raw, freq=Freq.DAY)
    assert ts_list(bars) == [f"{d} 00:00:00" for d in DAYS]
    intraday, _ = normalise(raw, freq=Freq.MIN60)
    assert ts_list(intraday)[0] == "2024-01-02 15:00:00"


def test_normalise_daily_bars_same_day_collapse_to_last():
    raw = frame(ts=["2024-01-02 09:00", "2024-01-02 15:00", "2024-01-03"])
    bars, rejected = normalise(raw, freq=Freq.DAY)
    assert ts_list(bars) == ["2024-01-02 00:00:00", "2024-01-03 00:00:00"]
    assert bars["close"].tolist() == [11.5, 12.5]
    assert rejected == {"duplicate timestamp": 1}


# --- normalise: time zones -------------------------------------------------------------------

LOCAL = pd.DatetimeIndex(["2024-01-02 10:30", "2024-01-02 11:30", "2024-01-03 14:00"])
SHANGHAI = LOCAL.tz_localize("Asia/Shanghai")
# The same instants, seen from other zones (New York is 13 hours behind in January).
SAME_INSTANTS = {
    "naive": LOCAL,
    "Asia/Shanghai": SHANGHAI,
    "America/New_York": SHANGHAI.tz_convert("America/New_York"),
    "UTC": SHANGHAI.tz_convert("UTC"),
}


def test_same_instants_are_really_the_same():
    ny = SAME_INSTANTS["America/New_York"]
    assert str(ny[0]) == "2024-01-01 21:30:00-05:00"  # the previous calendar day there
    assert (ny == SAME_INSTANTS["UTC"]).all() and (ny == SHANGHAI).all()


@pytest.mark.parametrize("zone", list(SAME_INSTANTS))
@pytest.mark.parametrize("layout", ["column", "index", "iso strings"])
def test_time_zones_give_the_same_exchange_local_ts(zone, layout):
    idx = SAME_INSTANTS[zone]
    if layout == "column":
        raw = pd.DataFrame({"ts": idx, **OHLCV})
    elif layout == "index":
        raw = pd.DataFrame(OHLCV, index=idx)
    else:
        raw = pd.DataFrame({"datetime": [t.isoformat() for t in idx], **OHLCV})
    bars, rejected = normalise(raw, freq=Freq.MIN60, tz="Asia/Shanghai")
    assert ts_list(bars) == ["2024-01-02 10:30:00", "2024-01-02 11:30:00", "2024-01-03 14:00:00"]
    assert bars["ts"].dt.tz is None
    assert rejected == {}


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Asia/Shanghai"])
def test_daily_bars_no_off_by_one_day(zone):
    midnights = pd.DatetimeIndex(DAYS).tz_localize("Asia/Shanghai").tz_convert(zone)
    bars, _ = normalise(pd.DataFrame({"date": midnights, **OHLCV}), tz="Asia/Shanghai")
    assert ts_list(bars) == [f"{d} 00:00:00" for d in DAYS]


def test_tz_aware_without_tz_keeps_wall_time():
    raw = pd.DataFrame({"ts": SAME_INSTANTS["America/New_York"], **OHLCV})
    bars, _ = normalise(raw, freq=Freq.MIN60)
    assert ts_list(bars)[0] == "2024-01-01 21:30:00"


def test_offsets_across_daylight_saving_change():
    # New York switched from -05:00 to -04:00 on 2024-03-10: one column, two offsets.
    raw = frame(ts=["2024-03-08 09:30:00-05:00", "2024-03-11 09:30:00-04:00", "2024-03-12T09:30-04:00"])
    bars, rejected = normalise(raw, freq=Freq.MIN30, tz="America/New_York")
    assert ts_list(bars) == [
        "2024-03-08 09:30:00",
        "2024-03-11 09:30:00",
        "2024-03-12 09:30:00",
    ]
    assert rejected == {}
    with pytest.raises(DataError, match="mixed UTC offsets") as info:
        normalise(raw, freq=Freq.MIN30)
    assert info.value.column == "ts"


def test_mixed_zone_datetime_objects_are_converted():
    ts = pd.Series(
        [pd.Timestamp("2024-01-02 02:30", tz="UTC"), pd.Timestamp("2024-01-02 11:30", tz="Asia/Shanghai"),
         pd.Timestamp("2024-01-03 01:00", tz="America/New_York")],
        dtype=object,
    )
    bars, rejected = normalise(frame(ts=ts), freq=Freq.MIN60, tz="Asia/Shanghai")
    assert ts_list(bars) == ["2024-01-02 10:30:00", "2024-01-02 11:30:00", "2024-01-03 14:00:00"]
    assert rejected == {}


def test_a_value_converted_once_is_told_apart_by_its_zone_and_may_be_unhashable():
    from kdist.schema import once_per_value

    calls = []
    day = once_per_value(lambda v: calls.append(v) or pd.Timestamp(v).normalize())
    utc = pd.Timestamp("2024-01-01 23:00", tz="UTC")
    shanghai = pd.Timestamp("2024-01-02 07:00", tz="Asia/Shanghai")  # the same instant
    assert utc == shanghai
    assert [day(utc), day(shanghai), day(utc)] == [
        pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-01-02", tz="Asia/Shanghai"),
        pd.Timestamp("2024-01-01", tz="UTC")]
    assert len(calls) == 2  # the third was converted already
    size = once_per_value(len)
    assert (size([1, 2]), size([1, 2, 3])) == (2, 3)  # unhashable: converted each time
