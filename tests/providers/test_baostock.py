"""The baostock provider through a replaced seam: one login per process, codes, rows, timeouts.

``kdist.providers.baostock_._baostock`` is the only thing replaced. The fake answers like the
``baostock`` package: ``login``/``logout`` return objects with ``error_code``/``error_msg``,
``query_history_k_data_plus``, ``query_adjust_factor`` and ``query_dividend_data`` a result
with ``fields``, ``next()`` and ``get_row_data()`` returning lists of strings ("" for
missing), and errors as codes, not exceptions. Each test gets a fresh process session. The
factor and dividend rows of sh.600000 are baostock's own documented examples (its wiki pages
复权因子信息 and 除权除息信息, 2015-2017).
"""

from __future__ import annotations

import json
import os
import pickle
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pandas as pd
import pytest

import kdist
from kdist.actions import COLUMNS
from kdist.errors import (
    DataError,
    InvalidOptionError,
    PermanentProviderError,
    SymbolNotFoundError,
    TransientProviderError,
)
from kdist.providers import baostock_
from kdist.providers.baostock_ import BaostockProvider
from kdist.schema import Adjust, Freq, normalise
from kdist.testing import ProviderConformance

DAILY = "date,code,open,high,low,close,volume,amount,adjustflag,tradestatus"
PERIOD = "date,code,open,high,low,close,volume,amount,adjustflag"
MINUTE = "date,time,code,open,high,low,close,volume,amount,adjustflag"

#: (code, frequency) -> rows as baostock sends them: every value a string.
ROWS = {
    ("sh.600000", "d"): [
        ["2024-01-02", "sh.600000", "6.5800", "6.6000", "6.5300", "6.5500", "23342500",
         "153153290.0000", "3", "1"],
        ["2024-01-03", "sh.600000", "6.5500", "6.6100", "6.5400", "6.6000", "31501100",
         "207295320.0000", "3", "1"],
        # A suspended day: previous close repeated, no trades.
        ["2024-01-04", "sh.600000", "6.6000", "6.6000", "6.6000", "6.6000", "", "", "3", "0"],
        ["2024-01-05", "sh.600000", "6.6000", "6.7200", "6.5900", "6.6800", "41733300",
         "", "3", "1"],
    ],
    ("sz.000001", "d"): [
        ["2024-01-02", "sz.000001", "9.3900", "9.4200", "9.2100", "9.2100", "115836600",
         "1075742252.4500", "3", "1"],
    ],
    ("sh.600000", "w"): [
        ["2024-01-05", "sh.600000", "6.5800", "6.7200", "6.5300", "6.6800", "96577000",
         "632116012.0000", "3"],
    ],
    ("sh.600000", "m"): [
        ["2024-01-31", "sh.600000", "6.5800", "6.9900", "6.4100", "6.9300", "512345600",
         "3412345678.0000", "3"],
    ],
    ("sh.600000", "5"): [
        ["2024-01-02", "20240102093500000", "sh.600000", "6.5800", "6.5900", "6.5600",
         "6.5700", "1234500", "8113456.0000", "3"],
        ["2024-01-02", "20240102094000000", "sh.600000", "6.5700", "6.5800", "6.5600",
         "6.5800", "812300", "5336211.0000", "3"],
        ["2024-01-02", "20240102150000000", "sh.600000", "6.5500", "6.5600", "6.5400",
         "6.5500", "2301000", "15071550.0000", "3"],
    ],
}


FACTOR = "code,dividOperateDate,foreAdjustFactor,backAdjustFactor,adjustFactor"
DIVIDEND = ("code,dividPreNoticeDate,dividAgmPumDate,dividPlanAnnounceDate,dividPlanDate,"
            "dividRegistDate,dividOperateDate,dividPayDate,dividStockMarketDate,"
            "dividCashPsBeforeTax,dividCashPsAfterTax,dividStocksPs,dividCashStock,"
            "dividReserveToStockPs")

#: code -> query_adjust_factor's rows (baostock's wiki example for sh.600000).
FACTORS = {
    "sh.600000": [
        ["sh.600000", "2015-06-23", "0.663792", "6.295967", "6.295967"],
        ["sh.600000", "2016-06-23", "0.751598", "7.128788", "7.128788"],
        ["sh.600000", "2017-05-25", "0.989551", "9.385732", "9.385732"],
    ],
}
#: code -> query_dividend_data's rows (baostock's wiki example for sh.600000): per share,
#: the after-tax cash as text ("0.6813或0.71915"), 10派/10转 text, "" for none.
DIVIDENDS = {
    "sh.600000": [
        ["sh.600000", "", "2015-05-16", "2015-03-19", "2015-06-16", "2015-06-19", "2015-06-23",
         "2015-06-23", "", "0.757", "0.6813或0.71915", "0.000000",
         "10派7.57元（含税，扣税后6.813或7.1915元）", ""],
        ["sh.600000", "", "2016-04-29", "2016-04-07", "2016-06-16", "2016-06-22", "2016-06-23",
         "2016-06-23", "2016-06-24", "0.515", "0.4635或0.515", "0.000000",
         "10转1派5.15元（含税，扣税后4.635或5.15元）", "0.100000"],
        ["sh.600000", "", "2017-04-26", "2017-04-01", "2017-05-19", "2017-05-24", "2017-05-25",
         "2017-05-25", "2017-05-26", "0.2", "0.18或0.2", "0.000000",
         "10转3派2元（含税，扣税后1.8或2元）", "0.300000"],
    ],
}
#: baostock's default start of query_adjust_factor when none is sent.
DEFAULT_START = "2015-01-01"


class Result:
    """Shaped like baostock.data.resultset.ResultData."""

    def __init__(self, error_code="0", error_msg="success", fields="", rows=(), per_page=2000):
        self.error_code = error_code
        self.error_msg = error_msg
        self.fields = fields.split(",") if fields else []
        self.data = [list(r) for r in rows]
        self.per_page_count = str(per_page)  # the server's echo is a string
        self.cur_row_num = 0

    def next(self):
        return self.cur_row_num < len(self.data)

    def get_row_data(self):
        row = self.data[self.cur_row_num]
        self.cur_row_num += 1
        return row

    def get_data(self):
        raise AssertionError("get_data() calls DataFrame.append, gone since pandas 2")


class FakeBaostock:
    """Stands in for the seam: scripted login and query answers, a record of every call."""

    def __init__(self):
        self.calls: list[tuple[str, dict]] = []
        self.login_codes: list[str] = []  # answers to the next logins, then "0"
        self.query_codes: list[str | None] = []  # the next queries' codes (None: rows)
        self.query_raises: list[BaseException] = []
        self.hang = threading.Event()  # set: queries block until the socket is closed
        self.closed = threading.Event()
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    def ops(self, *names):
        return [op for op, _ in self.calls if not names or op in names]

    def __call__(self, op, **kwargs):
        if op == "close_socket":  # the watchdog's call, made beside a running one
            self.calls.append((op, kwargs))
            self.closed.set()
            return None
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            self.calls.append((op, kwargs))
            time.sleep(0.002)  # room for another thread to collide, if the lock let it
            if op == "login":
                code = self.login_codes.pop(0) if self.login_codes else "0"
                return Result(code, "success" if code == "0" else "login failed")
            if op == "logout":
                return Result()
            assert op in ("query_history_k_data_plus", "query_adjust_factor",
                          "query_dividend_data"), op
            if self.hang.is_set():
                self.closed.wait(10)
                # What baostock reports once its socket is closed under it.
                return Result("10002007", "网络接收错误。")
            if self.query_raises:
                raise self.query_raises.pop(0)
            code = self.query_codes.pop(0) if self.query_codes else None
            if code is not None:
                return Result(code, {"10004011": "无效的证券代码",
                                     "10004006": "参数错误"}.get(code, "网络错误"))
            if op == "query_adjust_factor":
                lo, hi = kwargs.get("start_date") or DEFAULT_START, kwargs["end_date"]
                rows = FACTORS.get(kwargs["code"], [])
                return Result(fields=FACTOR, rows=[r for r in rows if lo <= r[1] <= hi])
            if op == "query_dividend_data":
                at = DIVIDEND.split(",").index(
                    "dividOperateDate" if kwargs["yearType"] == "operate"
                    else "dividPlanAnnounceDate")
                rows = DIVIDENDS.get(kwargs["code"], [])
                return Result(fields=DIVIDEND,
                              rows=[r for r in rows if r[at][:4] == str(kwargs["year"])])
            rows = ROWS.get((kwargs["code"], kwargs["frequency"]), [])
            lo, hi = kwargs["start_date"], kwargs["end_date"]
            return Result(fields=kwargs["fields"], rows=[r for r in rows if lo <= r[0] <= hi])
        finally:
            with self._lock:
                self.active -= 1


@pytest.fixture
def vendor(monkeypatch):
    fake = FakeBaostock()
    monkeypatch.setattr(baostock_, "_baostock", fake)
    monkeypatch.setattr(baostock_, "_SESSION", None)  # a fresh process session per test
    return fake


@pytest.fixture
def provider():
    return kdist.get_provider("baostock")


def session():
    return baostock_._session()


def canonical(frame, provider, freq="1d", adjust="none"):
    """What the runner does after fetch: kdist.schema.normalise with the provider's tz."""
    return normalise(frame, freq=Freq.parse(freq), adjust=Adjust.parse(adjust), tz=provider.tz)


# --- canonical frames --------------------------------------------------------------------------


def test_daily_bars_are_canonical_and_suspended_days_are_placeholders(vendor, provider):
    frame = provider.fetch("600000.SH", "2024-01-02", "2024-01-05")
    bars, rejected = canonical(frame, provider)
    assert rejected == {}
    assert bars["ts"].dt.strftime("%Y-%m-%d %H:%M").tolist() == [
        "2024-01-02 00:00", "2024-01-03 00:00", "2024-01-04 00:00", "2024-01-05 00:00"]
    first = bars.iloc[0]
    assert (first.open, first.high, first.low, first.close) == (6.58, 6.60, 6.53, 6.55)
    assert first.volume == 23_342_500  # shares already
    assert first.amount == 153_153_290.0
    # 01-04 was suspended (tradestatus 0): a placeholder bar, no trades at the last close.
    held = bars.iloc[2]
    assert (held.open, held.high, held.low, held.close, held.volume, held.amount) == (
        6.60, 6.60, 6.60, 6.60, 0.0, 0.0)
    assert pd.isna(bars.iloc[3].amount)  # "" of a traded day is missing, not zero
    assert str(bars["ts"].dtype) == "datetime64[us]" and (bars.dtypes.iloc[1:] == "float64").all()


def test_daily_query_arguments(vendor, provider):
    provider.fetch("600000.SH", "2024-01-02", "2024-01-05")
    assert vendor.calls[-1] == ("query_history_k_data_plus", {
        "code": "sh.600000", "fields": DAILY, "start_date": "2024-01-02",
        "end_date": "2024-01-05", "frequency": "d", "adjustflag": "3"})


@pytest.mark.parametrize(("adjust", "flag"), [("hfq", "1"), ("qfq", "2"), ("none", "3")])
def test_adjust_maps_to_adjustflag(vendor, provider, adjust, flag):
    provider.fetch("600000.SH", "2024-01-02", "2024-01-05", "1d", adjust)
    assert vendor.calls[-1][1]["adjustflag"] == flag


@pytest.mark.parametrize(("freq", "frequency", "fields", "stamp"), [
    ("1w", "w", PERIOD, "2024-01-05 00:00"),
    ("1M", "m", PERIOD, "2024-01-31 00:00"),
    ("5m", "5", MINUTE, "2024-01-02 09:35"),
])
def test_frequencies_fields_and_stamps(vendor, provider, freq, frequency, fields, stamp):
    frame = provider.fetch("600000.SH", "2024-01-01", "2024-01-31", freq)
    sent = vendor.calls[-1][1]
    assert (sent["frequency"], sent["fields"]) == (frequency, fields)
    assert sent["start_date"] == "2024-01-01"  # always sent: "" would mean 2015-01-01
    bars, rejected = canonical(frame, provider, freq)
    assert rejected == {} and bars["ts"].dt.strftime("%Y-%m-%d %H:%M").iloc[0] == stamp


@pytest.mark.parametrize(("freq", "frequency"), [("15m", "15"), ("30m", "30"), ("60m", "60")])
def test_minute_frequencies(vendor, provider, freq, frequency):
    provider.fetch("600000.SH", "2024-01-02", "2024-01-02", freq)
    assert vendor.calls[-1][1]["frequency"] == frequency
    assert vendor.calls[-1][1]["fields"] == MINUTE


def test_minute_time_is_exchange_local(vendor, provider):
    frame = provider.fetch("600000.SH", "2024-01-02", "2024-01-02", "5m")
    bars, _ = canonical(frame, provider, "5m")
    # 20240102093500000 is 09:35 in Shanghai: stored as is, not shifted to UTC.
    assert bars["ts"].dt.strftime("%H:%M").tolist() == ["09:35", "09:40", "15:00"]
    assert bars["volume"].tolist() == [1_234_500, 812_300, 2_301_000]


@pytest.mark.parametrize(("symbol", "code"), [
    ("600000.SH", "sh.600000"), ("000001.SZ", "sz.000001"), ("000001.SH", "sh.000001"),
    ("sz000001", "sz.000001"),
])
def test_symbols_become_baostock_codes(vendor, provider, symbol, code):
    provider.fetch(symbol, "2024-01-02", "2024-01-02")
    assert vendor.calls[-1][1]["code"] == code


@pytest.mark.parametrize(("symbol", "message"), [
    ("AAPL", "A-shares only, not AAPL"),
    ("830799.BJ", "Shanghai and Shenzhen only, not 830799.BJ"),
])
def test_unserved_symbols_are_refused_before_login(vendor, provider, symbol, message):
    with pytest.raises(PermanentProviderError, match=message) as info:
        provider.fetch(symbol, "2024-01-02", "2024-01-05")
    assert info.value.symbol == symbol
    assert vendor.calls == []


def test_empty_result_is_an_empty_frame(vendor, provider):
    frame = provider.fetch("600000.SH", "2030-01-01", "2030-01-31")
    assert len(frame) == 0
    assert list(frame.columns) == ["ts", "open", "high", "low", "close", "volume", "amount"]
    assert canonical(frame, provider)[0].empty


# --- corporate actions ---------------------------------------------------------------------------


def test_actions_are_back_factors_and_per_share_events(vendor, provider):
    got = provider.actions("600000.SH", "2015-01-01", "2017-12-31")
    assert list(got.columns) == list(COLUMNS)
    assert got["ex_date"].dt.strftime("%Y-%m-%d").tolist() == [
        "2015-06-23", "2016-06-23", "2017-05-25"]
    assert got["factor"].tolist() == [6.295967, 7.128788, 9.385732]  # backAdjustFactor
    # Per share already (baostock is not per 10): 10派7.57 -> 0.757, 10转1 -> 0.1 bonus.
    assert got["cash"].tolist() == [0.757, 0.515, 0.2]
    assert got["bonus"].tolist() == [0.0, 0.1, 0.3]
    assert (got["rights"] == 0).all() and (got["split"] == 1).all()
    assert str(got["ex_date"].dtype) == "datetime64[us]"


def test_actions_ask_factors_from_1990_and_dividends_per_year_with_an_ex_date(vendor, provider):
    provider.actions("600000.SH", "2015-01-01", "2017-12-31")
    queries = [(op, kw) for op, kw in vendor.calls if op.startswith("query_")]
    assert queries == [
        ("query_adjust_factor", {"code": "sh.600000", "start_date": "1990-01-01",
                                 "end_date": "2017-12-31"}),  # never "": 2015-01-01 hidden
        ("query_dividend_data", {"code": "sh.600000", "year": "2015", "yearType": "operate"}),
        ("query_dividend_data", {"code": "sh.600000", "year": "2016", "yearType": "operate"}),
        ("query_dividend_data", {"code": "sh.600000", "year": "2017", "yearType": "operate"}),
    ]
    assert vendor.ops("login") == ["login"]


def test_a_window_gets_the_factor_in_force_at_its_start(vendor, provider):
    got = provider.actions("600000.SH", "2017-01-01", "2017-12-31")
    # 2015 and 2016 are outside the window but their factors are the ones in force before
    # 2017-05-25; only 2017's dividends are asked.
    assert got["ex_date"].dt.year.tolist() == [2015, 2016, 2017]
    assert got["factor"].tolist() == [6.295967, 7.128788, 9.385732]
    assert [kw["year"] for op, kw in vendor.calls if op == "query_dividend_data"] == ["2017"]


def test_a_window_without_ex_dates_asks_no_dividends(vendor, provider):
    got = provider.actions("600000.SH", "2018-01-01", "2018-12-31")
    assert got["factor"].tolist() == [6.295967, 7.128788, 9.385732]
    assert vendor.ops("query_adjust_factor", "query_dividend_data") == ["query_adjust_factor"]
    assert provider.actions("600000.SH", "2014-01-01", "2014-12-31").empty
    assert vendor.ops("query_dividend_data") == []


def test_an_empty_window_asks_nothing(vendor, provider):
    got = provider.actions("600000.SH", "2017-12-31", "2017-01-01")
    assert got.empty and list(got.columns) == list(COLUMNS)
    assert vendor.calls == []


def test_exact_cash_from_the_per_ten_text(vendor, provider, monkeypatch):
    # dividCashPsBeforeTax has 6 decimals; dividCashStock's per-10 text has the exact figure.
    factors = [["sh.600000", "2019-07-16", "1.0", "10.7", "10.7"],
               ["sh.600000", "2020-07-23", "1.0", "11.4", "11.4"]]
    rows = [
        ["sh.600000", "", "", "", "", "", "2019-07-16", "2019-07-16", "", "0.191842",
         "0.172658或0.191842", "0.000000", "10派1.918424元（含税，扣税后1.726582或1.918424元）",
         ""],
        # Disagreeing text (a typo on the server): the per-share number wins.
        ["sh.600000", "", "", "", "", "", "2020-07-23", "2020-07-23", "", "0.59", "", "", "10派9元",
         ""],
    ]
    monkeypatch.setitem(FACTORS, "sh.600000", factors)
    monkeypatch.setitem(DIVIDENDS, "sh.600000", rows)
    got = provider.actions("600000.SH", "2019-01-01", "2020-12-31")
    assert got["cash"].tolist() == [0.1918424, 0.59]
    assert got["bonus"].tolist() == [0.0, 0.0]  # "" is none


def test_plans_and_later_events_are_left_out_and_events_carry_the_factor_in_force(
        vendor, provider, monkeypatch):
    factors = [["sh.600000", "2021-06-01", "1.0", "2.0", "2.0"]]
    rows = [
        # A plan without an ex-date yet.
        ["sh.600000", "", "", "2021-03-01", "", "", "", "", "", "0.3", "", "0", "10派3元", ""],
        # An ex-date the factors lack (a bonus issue that left the factor unchanged).
        ["sh.600000", "", "", "", "", "", "2021-06-15", "", "", "", "", "0.100000", "10送1股",
         ""],
        # After the window's end: its factor is not asked yet.
        ["sh.600000", "", "", "", "", "", "2021-09-01", "", "", "0.2", "", "0", "10派2元", ""],
    ]
    monkeypatch.setitem(FACTORS, "sh.600000", factors)
    monkeypatch.setitem(DIVIDENDS, "sh.600000", rows)
    got = provider.actions("600000.SH", "2021-01-01", "2021-06-30")
    assert got["ex_date"].dt.strftime("%Y-%m-%d").tolist() == ["2021-06-01", "2021-06-15"]
    assert got["factor"].tolist() == [2.0, 2.0]
    assert got["bonus"].tolist() == [0.0, 0.1]


def test_a_factor_that_is_no_number_is_a_data_error(vendor, provider, monkeypatch):
    monkeypatch.setitem(FACTORS, "sh.600000", [["sh.600000", "2021-06-01", "", "", ""]])
    with pytest.raises(DataError, match="600000.SH on 2021-06-01 is ''") as info:
        provider.actions("600000.SH", "2021-01-01", "2021-12-31")
    assert info.value.column == "factor"


@pytest.mark.parametrize(("answer", "message"), [
    (Result(fields="code,dividOperateDate,foreAdjustFactor",
            rows=[["sh.600000", "2021-06-01", "1.0"]]), "no field 'backAdjustFactor'"),
    (Result(fields=FACTOR, rows=[["sh.600000", "2021-06-01"]]),
     "rows for 600000.SH do not match its fields"),
])
def test_a_changed_answer_is_a_data_error(vendor, provider, monkeypatch, answer, message):
    monkeypatch.setattr(baostock_, "_baostock", lambda op, **kw: (
        answer if op == "query_adjust_factor" else vendor(op, **kw)))
    with pytest.raises(DataError, match=message):
        provider.actions("600000.SH", "2021-01-01", "2021-12-31")


def test_actions_unknown_code_is_symbol_not_found(vendor, provider):
    vendor.query_codes = ["10004011"]
    with pytest.raises(SymbolNotFoundError) as info:
        provider.actions("600000.SH", "2015-01-01", "2017-12-31")
    message = str(info.value)
    assert "\n" not in message and "query_adjust_factor for 600000.SH" in message
    assert info.value.symbol == "600000.SH" and info.value.code == "10004011"


def test_actions_network_code_logs_in_again_and_repeats(vendor, provider):
    vendor.query_codes = ["10002007"]
    got = provider.actions("600000.SH", "2015-01-01", "2015-12-31")
    assert got["factor"].tolist() == [6.295967] and got["cash"].tolist() == [0.757]
    assert vendor.ops("login", "query_adjust_factor") == [
        "login", "query_adjust_factor", "login", "query_adjust_factor"]


@pytest.mark.parametrize(("error", "expected"), [
    (ConnectionResetError(104, "Connection reset by peer"), TransientProviderError),
    (json.JSONDecodeError("Expecting value", "", 0), TransientProviderError),
    (AttributeError("'NoneType' object has no attribute 'split'"), PermanentProviderError),
])
def test_actions_exceptions_inside_baostock(vendor, provider, error, expected):
    vendor.query_raises = [error]
    with pytest.raises(expected, match=type(error).__name__) as info:
        provider.actions("600000.SH", "2015-01-01", "2017-12-31")
    assert isinstance(info.value, TransientProviderError) is (expected is TransientProviderError)
    assert "query_adjust_factor for 600000.SH" in str(info.value)
    assert info.value.symbol == "600000.SH" and "\n" not in str(info.value)


def test_a_failing_dividend_query_fails_the_actions(vendor, provider):
    vendor.query_codes = [None, "10004006"]  # the factors, then the first year's dividends
    with pytest.raises(PermanentProviderError, match="query_dividend_data for 600000.SH"):
        provider.actions("600000.SH", "2015-01-01", "2017-12-31")


def test_actions_refuse_unserved_symbols_before_login(vendor, provider):
    with pytest.raises(PermanentProviderError, match="Shanghai and Shenzhen only"):
        provider.actions("830799.BJ", "2015-01-01", "2017-12-31")
    assert vendor.calls == []


def test_actions_and_bars_share_one_session(vendor, provider):
    provider.actions("600000.SH", "2015-01-01", "2017-12-31")
    provider.fetch("600000.SH", "2024-01-02", "2024-01-05")
    assert vendor.ops("login") == ["login"] and session().logins == 1


# --- check ---------------------------------------------------------------------------------------


def test_one_minute_bars_are_refused_by_check(vendor, provider):
    with pytest.raises(InvalidOptionError, match="no 1m bars; it serves 1d, 1w, 1M, 5m"):
        provider.check(freq=Freq.MIN1, adjust=Adjust.NONE, start=pd.Timestamp("2024-01-02"),
                       end=pd.Timestamp("2024-01-03"))
    with pytest.raises(InvalidOptionError):
        provider.fetch("600000.SH", "2024-01-02", "2024-01-02", "1m")
    assert vendor.calls == []


def test_check_accepts_what_baostock_serves(provider):
    for freq in ("1d", "1w", "1M", "5m", "15m", "30m", "60m"):
        for adjust in ("none", "qfq", "hfq"):
            provider.check(freq=Freq(freq), adjust=Adjust(adjust),
                           start=pd.Timestamp("2024-01-02"), end=pd.Timestamp("2024-02-01"))


# --- error codes ---------------------------------------------------------------------------------


def test_unknown_code_is_symbol_not_found(vendor, provider):
    vendor.query_codes = ["10004011"]
    with pytest.raises(SymbolNotFoundError, match="10004011.*does not know 600000.SH") as info:
        provider.fetch("600000.SH", "2024-01-02", "2024-01-05")
    assert (info.value.symbol, info.value.code) == ("600000.SH", "10004011")
    assert isinstance(info.value, LookupError)
    assert session().logged_in  # a bad code does not spoil the session


def test_bad_parameter_is_permanent(vendor, provider):
    vendor.query_codes = ["10004006"]
    with pytest.raises(PermanentProviderError, match="10004006 \\(参数错误\\)") as info:
        provider.fetch("600000.SH", "2024-01-02", "2024-01-05")
    assert not isinstance(info.value, (TransientProviderError, SymbolNotFoundError))


def test_login_limit_is_transient(vendor, provider):
    vendor.login_codes = ["10001005"]
    with pytest.raises(TransientProviderError, match="10001005.*fewer worker processes") as info:
        provider.fetch("600000.SH", "2024-01-02", "2024-01-05")
    assert info.value.kind == "login_limit"
    assert vendor.ops("query_history_k_data_plus") == []
    assert not session().logged_in
    assert len(provider.fetch("600000.SH", "2024-01-02", "2024-01-05")) == 4  # next call logs in


def test_other_login_refusals_are_permanent(vendor, provider):
    vendor.login_codes = ["10001011"]  # blacklisted
    with pytest.raises(PermanentProviderError, match="login failed with error 10001011"):
        provider.fetch("600000.SH", "2024-01-02", "2024-01-05")


@pytest.mark.parametrize("code", [f"1000200{i}" for i in range(1, 9)])
def test_network_code_logs_in_again_and_repeats_the_query(vendor, provider, code):
    provider.fetch("600000.SH", "2024-01-02", "2024-01-05")
    vendor.query_codes = [code]
    frame = provider.fetch("600000.SH", "2024-01-02", "2024-01-05")
    assert len(frame) == 4
    assert vendor.ops("login", "close_socket", "query_history_k_data_plus") == [
        "login", "query_history_k_data_plus",
        "query_history_k_data_plus",  # -> network code
        "close_socket", "login", "query_history_k_data_plus"]
    assert session().logins == 2


def test_not_logged_in_logs_in_again(vendor, provider):
    vendor.query_codes = ["10001001"]
    assert len(provider.fetch("600000.SH", "2024-01-02", "2024-01-05")) == 4
    assert session().logins == 2


def test_persistent_network_error_is_transient_then_recovers(vendor, provider):
    vendor.query_codes = ["10002007", "10002007"]
    with pytest.raises(TransientProviderError, match="10002007.*network") as info:
        provider.fetch("600000.SH", "2024-01-02", "2024-01-05")
    assert info.value.kind == "connection" and session().logins == 2
    assert not session().logged_in
    copy = pickle.loads(pickle.dumps(info.value))
    assert (type(copy), str(copy), copy.code) == (TransientProviderError, str(info.value),
                                                  "10002007")
    # The runner's retry: a fresh login, then the bars.
    assert len(provider.fetch("600000.SH", "2024-01-02", "2024-01-05")) == 4
    assert session().logins == 3


@pytest.mark.parametrize(("error", "transient"), [
    (json.JSONDecodeError("Expecting value", "", 0), True),  # a cut page
    (ConnectionResetError(104, "Connection reset by peer"), True),
    (AttributeError("'NoneType' object has no attribute 'split'"), False),
])
def test_exceptions_inside_baostock(vendor, provider, error, transient):
    vendor.query_raises = [error]
    expected = TransientProviderError if transient else PermanentProviderError
    with pytest.raises(expected, match=type(error).__name__) as info:
        provider.fetch("600000.SH", "2024-01-02", "2024-01-05")
    assert isinstance(info.value, TransientProviderError) is transient
    assert not session().logged_in  # the socket's state is unknown: log in afresh
    copy = pickle.loads(pickle.dumps(info.value))
    assert (type(copy), str(copy), copy.symbol) == (expected, str(info.value), "600000.SH")


def test_silently_cut_pages_are_transient(vendor, provider, monkeypatch):
    # baostock's next() returns False with error_code "0" when a page request gets no
    # answer, leaving a full page behind: that is not the end of the data.
    full_page = Result(fields=DAILY, rows=ROWS[("sh.600000", "d")][:2], per_page=2)
    monkeypatch.setattr(baostock_, "_baostock", lambda op, **kw: (
        full_page if op == "query_history_k_data_plus" else vendor(op, **kw)))
    with pytest.raises(TransientProviderError, match="stopped sending pages.*after 2 rows"):
        provider.fetch("600000.SH", "2024-01-02", "2024-01-05")
    assert not session().logged_in


def test_a_short_last_page_is_complete(vendor, provider, monkeypatch):
    short_page = Result(fields=DAILY, rows=ROWS[("sh.600000", "d")][:2], per_page=3)
    monkeypatch.setattr(baostock_, "_baostock", lambda op, **kw: (
        short_page if op == "query_history_k_data_plus" else vendor(op, **kw)))
    assert len(provider.fetch("600000.SH", "2024-01-02", "2024-01-05")) == 2


def test_unparseable_dates_answer_none(vendor, provider, monkeypatch):
    # baostock returns None instead of a result for dates it cannot parse.
    monkeypatch.setattr(baostock_, "_baostock", lambda op, **kw: (
        None if op == "query_history_k_data_plus" else vendor(op, **kw)))
    with pytest.raises(PermanentProviderError, match="refused the dates"):
        provider.fetch("600000.SH", "2024-01-02", "2024-01-05")


# --- the process session -------------------------------------------------------------------------


def test_one_login_per_process_across_instances_copies_and_threads(vendor):
    a = BaostockProvider()
    b = pickle.loads(pickle.dumps(BaostockProvider(timeout=12)))
    a.fetch("600000.SH", "2024-01-02", "2024-01-05")
    b.fetch("000001.SZ", "2024-01-02", "2024-01-05")
    errors = []

    def work(p, symbol):
        try:
            for _ in range(5):
                p.fetch(symbol, "2024-01-02", "2024-01-05")
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(p, s))
               for p in (a, b) for s in ("600000.SH", "000001.SZ")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert vendor.ops("login") == ["login"]
    assert len(vendor.ops("query_history_k_data_plus")) == 22
    assert vendor.max_active == 1  # never two baostock calls at once


def test_busy_session_times_out_as_transient(vendor):
    s = session()
    s.lock.acquire()
    try:
        t0 = time.monotonic()
        with pytest.raises(TransientProviderError, match="busy in this process") as info:
            BaostockProvider(timeout=0.2).fetch("600000.SH", "2024-01-02", "2024-01-05")
        assert time.monotonic() - t0 < 2 and info.value.kind == "busy"
    finally:
        s.lock.release()
    assert vendor.calls == []


def test_hung_query_is_cut_by_closing_the_socket(vendor):
    p = BaostockProvider(timeout=0.3)
    p.fetch("600000.SH", "2024-01-02", "2024-01-05")
    vendor.hang.set()
    t0 = time.monotonic()
    with pytest.raises(TransientProviderError, match="no answer for 600000.SH within 0.3s") as info:
        p.fetch("600000.SH", "2024-01-02", "2024-01-05")
    assert time.monotonic() - t0 < 5
    assert info.value.kind == "timeout"
    assert "close_socket" in vendor.ops()
    assert not session().logged_in and not session().lock.locked()
    vendor.hang.clear()
    assert len(p.fetch("600000.SH", "2024-01-02", "2024-01-05")) == 4
    assert session().logins == 2


class LocalServer:
    """A stand-in for baostock's server on 127.0.0.1: answers the login, then goes silent
    (``hang``) or hangs up (``hangup``) on the query. Nothing leaves this machine."""

    def __init__(self, mode):
        self.mode = mode
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @staticmethod
    def login_answer() -> bytes:
        import baostock.common.contants as cons

        body = "0\1success\1login\1anonymous"
        kind = cons.MESSAGE_TYPE_LOGIN_RESPONSE
        head = f"{cons.BAOSTOCK_CLIENT_VERSION}\1{kind}\1{len(body):010d}"  # 21 characters
        return (head + body + "<![CDATA[]]>\n").encode()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        with conn:
            if not conn.recv(65536):
                return
            conn.sendall(self.login_answer())
            if conn.recv(65536) and self.mode == "hang":
                conn.recv(65536)  # never answer; returns when the client closes


@pytest.mark.parametrize("mode", ["hang", "hangup"])
def test_watchdog_ends_a_stuck_call_inside_the_real_baostock(monkeypatch, mode):
    # The real seam, the real package, a local server. On "hangup" baostock 0.9.4 would spin
    # forever (recv() returns b"" and its loop waits for an end marker); on "hang" it would
    # block forever. Closing its socket must end both within the timeout.
    cons = pytest.importorskip("baostock.common.contants")
    server = LocalServer(mode)
    monkeypatch.setattr(cons, "BAOSTOCK_SERVER_IP", "127.0.0.1")
    monkeypatch.setattr(cons, "BAOSTOCK_SERVER_PORT", server.port)
    monkeypatch.setattr(baostock_, "_SESSION", None)
    t0 = time.monotonic()
    try:
        with pytest.raises(TransientProviderError, match="no answer for 600000.SH within 0.5s"):
            BaostockProvider(timeout=0.5).fetch("600000.SH", "2024-01-02", "2024-01-05")
    finally:
        server.sock.close()
    assert time.monotonic() - t0 < 5
    assert session().logins == 1 and not session().logged_in and not session().lock.locked()


def test_a_forked_child_does_not_reuse_the_parent_session(vendor, provider, monkeypatch):
    provider.fetch("600000.SH", "2024-01-02", "2024-01-05")
    parent = session()
    monkeypatch.setattr(parent, "pid", os.getpid() + 1)  # as seen from a child process
    child = session()
    assert child is not parent and not child.logged_in
    provider.fetch("600000.SH", "2024-01-02", "2024-01-05")
    assert vendor.ops("login") == ["login", "login"]


def test_logout_at_process_exit(tmp_path):
    script = textwrap.dedent(
        """
        from kdist.providers import baostock_
        from kdist.providers.baostock_ import BaostockProvider

        class Answer:
            def __init__(self, fields=()):
                self.error_code, self.error_msg, self.fields = "0", "success", list(fields)
                self.rows = [["2024-01-02", "sh.600000", "6.58", "6.60", "6.53", "6.55",
                              "23342500", "153153290", "3", "1"]]
            def next(self):
                return bool(self.rows)
            def get_row_data(self):
                return self.rows.pop(0)

        def seam(op, **kwargs):
            print(op, flush=True)
            return Answer(kwargs.get("fields", "").split(","))

        baostock_._baostock = seam
        p = BaostockProvider()
        p.fetch("600000.SH", "2024-01-02", "2024-01-02")
        p.fetch("600000.SH", "2024-01-02", "2024-01-02")
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, timeout=120).stdout.split()
    assert out == ["login", "query_history_k_data_plus", "query_history_k_data_plus", "logout"]


# --- the provider object -------------------------------------------------------------------------


def test_pickles_by_options_without_the_session(vendor):
    p = BaostockProvider(timeout=9)
    p.fetch("600000.SH", "2024-01-02", "2024-01-05")
    data = pickle.dumps(p)
    assert b"_Session" not in data and b"Lock" not in data
    copy = pickle.loads(data)
    assert copy == p and copy.given_options() == {"timeout": 9.0}
    copy.fetch("600000.SH", "2024-01-02", "2024-01-05")
    assert session().logins == 1  # the copy uses this process's session


def test_timeout_must_be_positive():
    with pytest.raises(InvalidOptionError, match="timeout=-1.0"):
        BaostockProvider(timeout=-1)


# --- end to end ----------------------------------------------------------------------------------


def test_ingest_end_to_end(vendor, tmp_path):
    vendor.query_codes = ["10002004"]  # the first query meets a dropped connection
    db = str(tmp_path / "k.duckdb")
    report = kdist.ingest(
        ["600000.SH", "000001.SZ", "000002.SZ"], start="2024-01-02", end="2024-01-05",
        provider=kdist.get_provider("baostock"), db=db, client="sync",
    )
    assert (report.symbols_ok, report.symbols_empty, report.symbols_failed) == (2, 1, 0)
    stored = kdist.load(db)
    assert stored.groupby("symbol").size().to_dict() == {"000001.SZ": 1, "600000.SH": 4}
    row = stored[(stored.symbol == "600000.SH") & (stored.ts == "2024-01-03")].iloc[0]
    assert (row.open, row.close, row.volume, row.amount) == (6.55, 6.60, 31_501_100, 207295320.0)
    assert vendor.ops("login") == ["login", "login"]  # once, and once after the drop
    # Raw bars come with their corporate actions: baostock's factors up to the window's end.
    actions = kdist.corporate_actions(db)
    assert actions.groupby("symbol")["factor"].apply(list).to_dict() == {
        "600000.SH": [6.295967, 7.128788, 9.385732]}
    assert vendor.ops("query_dividend_data") == []  # no ex-date in the window


@pytest.mark.network
def test_live_bars(monkeypatch):
    monkeypatch.setattr(baostock_, "_SESSION", None)
    p = kdist.get_provider("baostock", timeout=30)
    try:
        daily = p.fetch("600000.SH", "2024-01-02", "2024-01-10", "1d", "none")
        minute = p.fetch("600000.SH", "2024-01-02", "2024-01-02", "5m", "none")
    finally:
        baostock_._session().logout(10)
    bars, rejected = canonical(daily, p)
    assert len(bars) == 7 and rejected == {}
    bars, rejected = canonical(minute, p, "5m")
    assert len(bars) == 48 and rejected == {}
    assert bars["ts"].iloc[0] == pd.Timestamp("2024-01-02 09:35")


# --- conformance ---------------------------------------------------------------------------------


class TestConformance(ProviderConformance):
    symbol = "600000.SH"
    start, end = "2024-01-02", "2024-01-05"
    empty_window = ("2030-01-01", "2030-01-31")
    unknown_symbol = "AAPL"  # refused before login: A-shares only
    actions_window = ("2016-01-01", "2017-12-31")
    metadata = {"name": "baostock", "requires": ("baostock",), "extra": "baostock",
                "tz": "Asia/Shanghai", "freqs": tuple(f for f in Freq if f is not Freq.MIN1),
                "options": {"timeout": 30.0}}

    @pytest.fixture
    def provider(self, vendor, provider):  # the module's provider, its seam replaced
        return provider
