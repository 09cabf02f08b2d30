"""The akshare provider through replaced seams: Eastmoney's bars, Sina's factors and events.

``AkshareProvider._stock_zh_a_hist`` (bars), ``_stock_zh_a_daily`` (factors) and
``_stock_history_dividend_detail`` (events) are the only things replaced. The fakes answer
with frames shaped like akshare's: ``stock_zh_a_hist``'s Chinese columns in order (股票代码 and
the percent columns, 日期 as ``datetime.date``, volume in lots); ``stock_zh_a_daily(adjust=
"hfq-factor")``'s ``date`` (datetime64) and ``hfq_factor`` (strings), newest first with a
1900-01-01 row last, built by akshare's own steps; ``stock_history_dividend_detail``'s 分红 and
配股 tables, per 10 shares, dates as ``datetime.date`` or NaT. They raise what ``requests``
raises. Where akshare's docs give numbers (000001's Eastmoney bars of 2017-03 and 2024-05,
sz000002's Sina factors), the tests use them.
"""

from __future__ import annotations

import datetime as dt
import http.client
import pickle

import pandas as pd
import pytest
import requests
import urllib3

import kdist
from kdist.actions import COLUMNS, adjust_prices
from kdist.errors import (
    DataError,
    InvalidOptionError,
    PermanentProviderError,
    TransientProviderError,
)
from kdist.providers.akshare_ import AkshareProvider
from kdist.schema import Adjust, Freq, normalise
from kdist.testing import ProviderConformance

AK_COLUMNS = ["日期", "股票代码", "开盘", "收盘", "最高", "最低", "成交量", "成交额",
              "振幅", "涨跌幅", "涨跌额", "换手率"]

#: code -> rows of (date, open, close, high, low, volume in lots, amount in yuan).
BARS = {
    "000001": [
        ("2024-01-02", 9.39, 9.21, 9.42, 9.21, 1158366, 1075742252.45),
        ("2024-01-03", 9.19, 9.20, 9.22, 9.15, 733610, 673673613.50),
        ("2024-01-04", 9.19, 9.11, 9.19, 9.08, 864194, 787470695.34),
        ("2024-01-05", 9.10, 9.27, 9.44, 9.08, 1991622, 1862628349.21),
    ],
    "600000": [
        ("2024-01-02", 6.58, 6.55, 6.60, 6.53, 233425, 153153290.00),
        ("2024-01-03", 6.55, 6.60, 6.61, 6.54, 315011, 207295320.00),
    ],
}


def ak_frame(code: str, rows) -> pd.DataFrame:
    """A frame as stock_zh_a_hist returns it: the columns, order and dtypes akshare builds."""
    if not rows:
        return pd.DataFrame()  # akshare's answer when Eastmoney has no klines
    prev_close = rows[0][2]
    records = []
    for day, open_, close, high, low, lots, amount in rows:
        records.append([
            dt.date.fromisoformat(day), code, open_, close, high, low, lots, amount,
            round((high - low) / prev_close * 100, 2),  # 振幅 %
            round((close - prev_close) / prev_close * 100, 2),  # 涨跌幅 %
            round(close - prev_close, 2),  # 涨跌额
            0.6,  # 换手率 %
        ])
        prev_close = close
    return pd.DataFrame(records, columns=AK_COLUMNS)


class FakeAkshare:
    """Stands in for ``stock_zh_a_hist``: answers from BARS within the dates, records calls."""

    def __init__(self, bars=None):
        self.bars = BARS if bars is None else bars
        self.calls: list[dict] = []
        self.errors: dict[str, list[BaseException]] = {}  # code -> exceptions raised in turn

    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        pending = self.errors.get(kwargs["symbol"])
        if pending:
            raise pending.pop(0)
        lo = dt.datetime.strptime(kwargs["start_date"], "%Y%m%d").date().isoformat()
        hi = dt.datetime.strptime(kwargs["end_date"], "%Y%m%d").date().isoformat()
        rows = [r for r in self.bars.get(kwargs["symbol"], []) if lo <= r[0] <= hi]
        return ak_frame(kwargs["symbol"], rows)


def sina_factors(rows) -> pd.DataFrame:
    """A frame as stock_zh_a_daily(adjust="hfq-factor") returns it, built by akshare's own
    steps from Sina's hfq.js records ``{"d": date, "f": factor}``: newest first, strings
    (akshare resets the index in place, which pandas 3.1 deprecates: the same, without)."""
    frame = pd.DataFrame([{"d": d, "f": f} for d, f in rows])
    frame.columns = ["date", "hfq_factor"]
    frame.index = pd.to_datetime(frame.date)
    del frame["date"]
    return frame.reset_index()


DIVIDEND_COLUMNS = ["公告日期", "送股", "转增", "派息", "进度", "除权除息日", "股权登记日", "红股上市日"]
RIGHTS_COLUMNS = ["公告日期", "配股方案", "配股价格", "基准股本", "除权日", "股权登记日", "缴款起始日",
                  "缴款终止日", "配股上市日", "募集资金合计"]


def sina_table(columns, rows, numbers) -> pd.DataFrame:
    """A frame as stock_history_dividend_detail returns it: akshare's conversions of Sina's
    HTML table (numbers per 10 shares, dates as ``datetime.date`` or NaT)."""
    if not rows:
        return pd.DataFrame()  # akshare's answer to Sina's "暂时没有数据！"
    frame = pd.DataFrame(rows, columns=columns)
    for column in columns:
        if column in numbers:
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
        elif column != "进度":
            frame[column] = pd.to_datetime(frame[column], errors="coerce").dt.date
    return frame


#: Sina symbol -> hfq factors as Sina sends them, newest first with its 1900-01-01 row.
#: sz000002's two latest are akshare's docs example; sz000001's are illustrative (166.5 times
#: the steps of 10派2.85 and 10派7.19 after closes of 11.20 and 10.30), and so is sh600000's.
SINA_FACTORS = {
    "sz000001": [("2024-06-14", "183.6685955077050000"), ("2023-06-14", "170.8474576271186000"),
                 ("1991-04-03", "166.5000000000000000"), ("1900-01-01", "1.0000000000000000")],
    "sz000002": [("2023-08-25", "169.1453113717332000"), ("2022-08-25", "160.8188465756604000"),
                 ("1900-01-01", "1.0000000000000000")],
    "sh600000": [("2023-07-20", "12.4100000000000000"), ("1999-11-10", "1.0000000000000000"),
                 ("1900-01-01", "1.0000000000000000")],
}
#: code -> Sina's 分红 rows (per 10 shares): 公告日期 送股 转增 派息 进度 除权除息日 股权登记日 红股上市日.
SINA_DIVIDENDS = {
    "000001": [
        ("2025-03-15", 0, 0, 3.62, "预案", None, None, None),  # a plan: no ex-date yet
        ("2024-06-07", 0, 0, 7.19, "实施", "2024-06-14", "2024-06-13", None),
        ("2023-06-08", 0, 0, 2.85, "实施", "2023-06-14", "2023-06-13", None),
        ("2022-03-10", 0, 0, 0, "不分配", None, None, None),
    ],
}
#: code -> Sina's 配股 rows (配股方案 per 10 shares, 配股价格 per share).
SINA_RIGHTS: dict[str, list] = {"000001": []}


class FakeSina:
    """Stands in for stock_zh_a_daily and stock_history_dividend_detail: whole histories,
    whatever the dates; records calls as ``(function, kwargs)``."""

    def __init__(self):
        self.calls: list[tuple[str, dict]] = []
        self.errors: dict[str, list[BaseException]] = {}  # function -> raised in turn
        self.factors, self.dividends, self.rights = SINA_FACTORS, SINA_DIVIDENDS, SINA_RIGHTS

    def _raise(self, function):
        if self.errors.get(function):
            raise self.errors[function].pop(0)

    def stock_zh_a_daily(self, **kwargs):
        self.calls.append(("stock_zh_a_daily", kwargs))
        self._raise("stock_zh_a_daily")
        assert kwargs["adjust"] == "hfq-factor"
        if kwargs["symbol"] not in self.factors:
            raise ValueError("sina hfq factor not available")  # what akshare raises
        return sina_factors(self.factors[kwargs["symbol"]])

    def stock_history_dividend_detail(self, **kwargs):
        self.calls.append(("stock_history_dividend_detail", kwargs))
        self._raise("stock_history_dividend_detail")
        if kwargs["indicator"] == "分红":
            return sina_table(DIVIDEND_COLUMNS, self.dividends.get(kwargs["symbol"], []),
                              {"送股", "转增", "派息"})
        return sina_table(RIGHTS_COLUMNS, self.rights.get(kwargs["symbol"], []),
                          {"配股方案", "配股价格", "基准股本", "募集资金合计"})


@pytest.fixture
def sina(monkeypatch):
    fake = FakeSina()
    monkeypatch.setattr(AkshareProvider, "_stock_zh_a_daily",
                        staticmethod(fake.stock_zh_a_daily))
    monkeypatch.setattr(AkshareProvider, "_stock_history_dividend_detail",
                        staticmethod(fake.stock_history_dividend_detail))
    return fake


@pytest.fixture
def vendor(monkeypatch, sina):
    fake = FakeAkshare()
    monkeypatch.setattr(AkshareProvider, "_stock_zh_a_hist", staticmethod(fake))
    return fake


@pytest.fixture
def provider():
    return kdist.get_provider("akshare")


def canonical(frame, provider, freq="1d", adjust="none"):
    """What the runner does after fetch: kdist.schema.normalise with the provider's tz."""
    return normalise(frame, freq=Freq.parse(freq), adjust=Adjust.parse(adjust), tz=provider.tz)


def connection_dropped() -> requests.ConnectionError:
    """What requests raises when Eastmoney hangs up: RemoteDisconnected inside."""
    cause = http.client.RemoteDisconnected("Remote end closed connection without response")
    return requests.ConnectionError(urllib3.exceptions.ProtocolError("Connection aborted.", cause))


# --- canonical frames --------------------------------------------------------------------------


def test_daily_bars_are_canonical_with_volume_in_shares(vendor, provider):
    frame = provider.fetch("000001.SZ", "2024-01-02", "2024-01-05")
    bars, rejected = canonical(frame, provider)
    assert rejected == {}
    assert list(bars.columns) == ["ts", "open", "high", "low", "close", "volume", "amount"]
    assert bars["ts"].dt.strftime("%Y-%m-%d %H:%M").tolist() == [
        "2024-01-02 00:00", "2024-01-03 00:00", "2024-01-04 00:00", "2024-01-05 00:00"]
    first = bars.iloc[0]
    assert (first.open, first.high, first.low, first.close) == (9.39, 9.42, 9.21, 9.21)
    assert first.volume == 115_836_600  # 1,158,366 lots of 100 shares
    assert first.amount == pytest.approx(1_075_742_252.45)  # yuan, unchanged
    assert str(bars["ts"].dtype) == "datetime64[us]"
    assert (bars.dtypes.iloc[1:] == "float64").all()


def test_frame_has_only_canonical_columns(vendor, provider):
    frame = provider.fetch("000001.SZ", "2024-01-02", "2024-01-03")
    # No 股票代码 or percent columns leak through.
    assert list(frame.columns) == ["ts", "open", "high", "low", "close", "volume", "amount"]


@pytest.mark.parametrize(
    ("freq", "period"), [("1d", "daily"), ("1w", "weekly"), ("1M", "monthly")]
)
@pytest.mark.parametrize(("adjust", "flag"), [("none", ""), ("qfq", "qfq"), ("hfq", "hfq")])
def test_arguments_sent_to_akshare(vendor, freq, period, adjust, flag):
    p = AkshareProvider(timeout=7.5)
    p.fetch("600000.SH", "2024-01-02", "2024-01-31", freq, adjust)
    assert vendor.calls == [
        {"symbol": "600000", "period": period, "start_date": "20240102",
         "end_date": "20240131", "adjust": flag, "timeout": 7.5}
    ]


@pytest.mark.parametrize(("symbol", "code"), [
    ("000001.SZ", "000001"), ("600000.SH", "600000"), ("830799.BJ", "830799"),
    ("399001.SZ", "399001"), ("sz000001", "000001"),
])
def test_symbols_become_six_digit_codes(vendor, provider, symbol, code):
    provider.fetch(symbol, "2024-01-02", "2024-01-02")
    assert vendor.calls[-1]["symbol"] == code


def test_string_numbers_and_dashes_become_nan(monkeypatch, provider):
    raw = ak_frame("000001", BARS["000001"][:2])
    raw["成交量"] = raw["成交量"].astype(str)
    raw["成交额"] = raw["成交额"].astype(object)
    raw.loc[1, "成交额"] = "--"
    monkeypatch.setattr(AkshareProvider, "_stock_zh_a_hist", staticmethod(lambda **kw: raw))
    frame = provider.fetch("000001.SZ", "2024-01-02", "2024-01-03")
    assert frame["volume"].tolist() == [115_836_600.0, 73_361_000.0]
    assert frame["amount"].isna().tolist() == [False, True]


def test_negative_forward_adjusted_prices_are_kept(monkeypatch, provider):
    # qfq subtracts later dividends from old prices, which can go below zero: valid data.
    bars = {"000002": [("1991-01-29", -0.52, -0.50, -0.49, -0.53, 100, 52000.0)]}
    monkeypatch.setattr(AkshareProvider, "_stock_zh_a_hist", staticmethod(FakeAkshare(bars)))
    frame = provider.fetch("000002.SZ", "1991-01-29", "1991-01-29", "1d", "qfq")
    bars_, rejected = canonical(frame, provider, adjust="qfq")
    assert rejected == {} and bars_["close"].tolist() == [-0.50]


# --- empty, refused and failed requests ----------------------------------------------------------


def test_no_data_is_an_empty_frame(vendor, provider):
    frame = provider.fetch("000001.SZ", "2030-01-01", "2030-01-31")
    assert len(frame) == 0
    assert list(frame.columns) == ["ts", "open", "high", "low", "close", "volume", "amount"]
    assert len(vendor.calls) == 1
    bars, rejected = canonical(frame, provider)
    assert len(bars) == 0 and rejected == {}


@pytest.mark.parametrize("symbol", ["AAPL", "BRK-B", "0700.HK"])
def test_non_ashare_symbols_are_refused(vendor, provider, symbol):
    with pytest.raises(PermanentProviderError, match=f"A-shares only, not {symbol}") as info:
        provider.fetch(symbol, "2024-01-02", "2024-01-05")
    assert info.value.symbol == symbol
    assert vendor.calls == []


@pytest.mark.parametrize(("symbol", "would_be"), [
    ("000001.SH", "000001.SZ"),  # the Shanghai composite index, not Ping An Bank
    ("510050.SH", "510050.SZ"),  # a Shanghai ETF
    ("113011.SH", "113011.SZ"),  # a Shanghai convertible bond
])
def test_exchange_akshare_would_get_wrong_is_refused(vendor, provider, symbol, would_be):
    with pytest.raises(PermanentProviderError, match=f"would return {would_be}"):
        provider.fetch(symbol, "2024-01-02", "2024-01-05")
    assert vendor.calls == []


@pytest.mark.parametrize("freq", ["1m", "5m", "15m", "30m", "60m"])
def test_minute_bars_are_refused_by_check(vendor, provider, freq):
    lo, hi = pd.Timestamp("2024-01-02"), pd.Timestamp("2024-01-06")
    with pytest.raises(InvalidOptionError, match=f"no {freq} bars.*baostock"):
        provider.check(freq=kdist.Freq(freq), adjust=kdist.Adjust.NONE, start=lo, end=hi)
    with pytest.raises(InvalidOptionError):
        provider.fetch("000001.SZ", "2024-01-02", "2024-01-05", freq)
    assert vendor.calls == []


def test_check_accepts_what_akshare_serves(provider):
    for freq in ("1d", "1w", "1M"):
        for adjust in ("none", "qfq", "hfq"):
            provider.check(freq=kdist.Freq(freq), adjust=kdist.Adjust(adjust),
                           start=pd.Timestamp("2024-01-02"), end=pd.Timestamp("2024-02-01"))


@pytest.mark.parametrize(("error", "kind"), [
    (connection_dropped(), "connection"),
    (http.client.RemoteDisconnected("Remote end closed connection without response"),
     "connection"),
    (ConnectionResetError(104, "Connection reset by peer"), "connection"),
    (requests.ReadTimeout("HTTPSConnectionPool(host='push2his.eastmoney.com'): Read timed out."),
     "timeout"),
    (requests.exceptions.JSONDecodeError("Expecting value", "<html>", 0), "connection"),
])
def test_network_errors_are_transient(vendor, provider, error, kind):
    vendor.errors["000001"] = [error]
    with pytest.raises(TransientProviderError, match="000001.SZ") as info:
        provider.fetch("000001.SZ", "2024-01-02", "2024-01-05")
    err = info.value
    assert err.symbol == "000001.SZ" and err.kind == kind
    assert err.__cause__ is error
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is TransientProviderError
    assert (str(copy), copy.symbol, copy.kind) == (str(err), "000001.SZ", kind)


def test_dropped_connection_message_says_what_to_do(vendor, provider):
    vendor.errors["000001"] = [connection_dropped()]
    with pytest.raises(TransientProviderError, match="fewer workers"):
        provider.fetch("000001.SZ", "2024-01-02", "2024-01-05")


def test_unexpected_vendor_errors_are_permanent(vendor, provider):
    vendor.errors["000001"] = [KeyError("klines")]
    with pytest.raises(PermanentProviderError, match="KeyError.*upgrade akshare") as info:
        provider.fetch("000001.SZ", "2024-01-02", "2024-01-05")
    assert not isinstance(info.value, TransientProviderError)
    assert pickle.loads(pickle.dumps(info.value)).symbol == "000001.SZ"


def test_missing_column_is_a_data_error(monkeypatch, provider):
    raw = ak_frame("000001", BARS["000001"]).drop(columns=["收盘"])
    monkeypatch.setattr(AkshareProvider, "_stock_zh_a_hist", staticmethod(lambda **kw: raw))
    with pytest.raises(DataError, match="no column '收盘'") as info:
        provider.fetch("000001.SZ", "2024-01-02", "2024-01-05")
    assert info.value.column == "close"


# --- corporate actions ---------------------------------------------------------------------------


def test_actions_are_sinas_hfq_factors_oldest_first_without_the_1900_row(vendor, sina, provider):
    got = provider.actions("000001.SZ", "2020-01-01", "2024-12-31")
    assert list(got.columns) == list(COLUMNS)
    assert got["ex_date"].dt.strftime("%Y-%m-%d").tolist() == [
        "1991-04-03", "2023-06-14", "2024-06-14"]
    # The strings' digits are kept to float precision: no rounding to akshare's 2 dp.
    assert got["factor"].tolist() == [166.5, float("170.8474576271186000"),
                                      float("183.6685955077050000")]
    assert str(got["ex_date"].dtype) == "datetime64[us]"


def test_actions_events_are_per_share(vendor, sina, provider, monkeypatch):
    # Sina quotes per 10 shares: 10送1转2派7.19 and 10配3 at 8.00 yuan a share.
    monkeypatch.setitem(sina.dividends, "000001", [
        ("2024-06-07", 1, 2, 7.19, "实施", "2024-06-14", "2024-06-13", "2024-06-17")])
    monkeypatch.setitem(sina.rights, "000001", [
        ("2023-05-20", 3, 8.0, 1.0e9, "2023-06-14", "2023-06-13", "2023-06-14", "2023-06-20",
         "2023-06-28", 2.4e9)])
    got = provider.actions("000001.SZ", "2023-01-01", "2024-12-31").set_index("ex_date")
    assert got.loc["2024-06-14", ["cash", "bonus"]].tolist() == [0.719, 0.3]  # not 0.719...01
    # The price is per share already; the rights are per 10.
    assert got.loc["2023-06-14", ["rights", "rights_price"]].tolist() == [0.3, 8.0]
    assert got.loc["2023-06-14", "factor"] == float("170.8474576271186000")


def test_actions_ask_sina_three_times_whatever_the_window(vendor, sina, provider):
    provider.actions("000001.SZ", "2024-01-02", "2024-01-05")
    provider.actions("600000.SH", "2024-01-02", "2024-01-05")
    assert sina.calls == [
        ("stock_zh_a_daily", {"symbol": "sz000001", "adjust": "hfq-factor"}),
        ("stock_history_dividend_detail", {"symbol": "000001", "indicator": "分红"}),
        ("stock_history_dividend_detail", {"symbol": "000001", "indicator": "配股"}),
        ("stock_zh_a_daily", {"symbol": "sh600000", "adjust": "hfq-factor"}),
        ("stock_history_dividend_detail", {"symbol": "600000", "indicator": "分红"}),
        ("stock_history_dividend_detail", {"symbol": "600000", "indicator": "配股"}),
    ]
    assert vendor.calls == []  # no Eastmoney call


def test_a_window_gets_every_earlier_factor_and_no_later_one(vendor, sina, provider):
    got = provider.actions("000001.SZ", "2024-01-02", "2024-01-05")
    # The factor in force at the window's first bar is 2023-06-14's; 2024-06-14 is later.
    assert got["ex_date"].dt.strftime("%Y-%m-%d").tolist() == ["1991-04-03", "2023-06-14"]
    assert got["cash"].tolist() == [0.0, 0.285]


def test_plans_and_events_sina_has_no_factor_for_yet_are_left_out(vendor, sina, provider,
                                                                  monkeypatch):
    monkeypatch.setitem(sina.dividends, "000001", [
        *SINA_DIVIDENDS["000001"],
        # Carried out, but Sina's factors do not have it yet: it comes with a later fetch.
        ("2025-06-05", 0, 0, 3.62, "实施", "2025-06-12", "2025-06-11", None),
        # A bonus issue whose ex-date is not among the factors: the factor in force then.
        ("2023-09-01", 1, 0, 0, "实施", "2023-09-08", "2023-09-07", "2023-09-08"),
    ])
    got = provider.actions("000001.SZ", "2020-01-01", "2025-12-31")
    assert got["ex_date"].dt.strftime("%Y-%m-%d").tolist() == [
        "1991-04-03", "2023-06-14", "2023-09-08", "2024-06-14"]
    assert got["factor"].iloc[2] == got["factor"].iloc[1] and got["bonus"].iloc[2] == 0.1


def test_a_1900_row_that_is_not_1_is_kept(vendor, sina, provider, monkeypatch):
    monkeypatch.setitem(sina.factors, "sz000001", [("2023-06-14", "2.0"), ("1900-01-01", "1.5")])
    got = provider.actions("000001.SZ", "2020-01-01", "2024-12-31")
    # (2024-06-14's dividend waits for its factor.)
    assert got["ex_date"].dt.strftime("%Y-%m-%d").tolist() == ["1900-01-01", "2023-06-14"]
    assert got["factor"].tolist() == [1.5, 2.0]


def test_derived_prices_reproduce_sinas_from_its_documented_factors(provider, monkeypatch):
    # akshare's docs: sz000002's hfq factors 160.8188465756604000 (2022-08-25) and
    # 169.1453113717332000 (2023-08-25); its qfq factors 1.0517754291451000 and 1.0.
    # akshare builds Sina's bars as qfq = raw / qfq_factor and hfq = round(raw * hfq_factor,
    # 2), each factor forward-filled from its date. The raw closes are illustrative.
    fake = FakeSina()
    monkeypatch.setattr(AkshareProvider, "_stock_zh_a_daily", staticmethod(fake.stock_zh_a_daily))
    monkeypatch.setattr(AkshareProvider, "_stock_history_dividend_detail",
                        staticmethod(fake.stock_history_dividend_detail))
    got = provider.actions("000002.SZ", "2022-01-01", "2023-12-31")
    raw = pd.Series([19.70, 18.80, 13.81, 13.15, 13.02], index=pd.to_datetime([
        "2022-08-24", "2022-08-25", "2023-08-24", "2023-08-25", "2023-08-28"]))
    hfq = adjust_prices(raw.index, raw, got["ex_date"], got["factor"], "hfq")
    qfq = adjust_prices(raw.index, raw, got["ex_date"], got["factor"], "qfq")
    hfq_factor = pd.Series([1.0, 160.8188465756604, 160.8188465756604, 169.1453113717332,
                            169.1453113717332], index=raw.index)
    qfq_factor = pd.Series([1.0517754291451, 1.0517754291451, 1.0517754291451, 1.0, 1.0],
                           index=raw.index)
    sina_hfq = (raw * hfq_factor).round(2)  # akshare's rounding of Sina's hfq bars
    assert abs(hfq - sina_hfq.to_numpy()).max() <= 0.005 + 1e-9
    # qfq = raw * F(t) / F(latest) is Sina's raw / qfq_factor. (The fixture's series is
    # abridged: the bar before 2022-08-25 sees the 1900 row, not Sina's real earlier factor.)
    sina_qfq = (raw / qfq_factor).to_numpy()
    assert qfq[1:] == pytest.approx(sina_qfq[1:], rel=1e-12)


#: akshare's docs example of stock_zh_a_hist for 000001 (Eastmoney): (date, open, close) raw
#: and hfq. Eastmoney's hfq is 162.5 x raw + B: bonus shares multiply, cash is added
#: (B = 33.075 in 2017-03, 252.54 in 2024-05), not a ratio factor like Sina's and kdist's.
EASTMONEY_RAW = [("2017-03-01", 9.49, 9.49), ("2017-03-02", 9.51, 9.43),
                 ("2017-03-03", 9.41, 9.40), ("2017-03-06", 9.40, 9.45),
                 ("2017-03-07", 9.44, 9.45), ("2024-05-22", 11.56, 11.56),
                 ("2024-05-23", 11.53, 11.40), ("2024-05-24", 11.37, 11.31),
                 ("2024-05-27", 11.31, 11.51)]
EASTMONEY_HFQ = [1575.20, 1575.20, 1578.45, 1565.45, 1562.20, 1560.57, 1560.57, 1568.70,
                 1567.07, 1568.70, 2131.04, 2131.04, 2126.17, 2105.04, 2100.16, 2090.41,
                 2090.41, 2122.92]


def test_eastmoneys_own_adjusted_bars_add_cash_so_derived_ratios_differ(provider, monkeypatch):
    hfq_rows = [(d, *EASTMONEY_HFQ[2 * i:2 * i + 2]) for i, (d, _, _) in
                enumerate(EASTMONEY_RAW)]

    def answer(**kwargs):
        rows = hfq_rows if kwargs["adjust"] == "hfq" else EASTMONEY_RAW
        return ak_frame("000001", [(d, o, c, max(o, c), min(o, c), 1000, 1e6)
                                   for d, o, c in rows])

    monkeypatch.setattr(AkshareProvider, "_stock_zh_a_hist", staticmethod(answer))
    raw = provider.fetch("000001.SZ", "2017-03-01", "2024-05-27", "1d", "none")
    hfq = provider.fetch("000001.SZ", "2017-03-01", "2024-05-27", "1d", "hfq")
    for year in (2017, 2024):
        at = (raw["ts"].dt.year == year).to_numpy()
        r = raw.loc[at, ["open", "close"]].to_numpy().ravel()
        h = hfq.loc[at, ["open", "close"]].to_numpy().ravel()
        b = h[0] - 162.5 * r[0]
        assert abs(162.5 * r + b - h).max() <= 0.005 + 1e-9  # affine, to Eastmoney's 2 dp
        # No ratio factor k can: max |k r - h| >= min(r) * (spread of h / r) / 2 > 0.01.
        ratio = h / r
        assert r.min() * (ratio.max() - ratio.min()) / 2 > 0.01


def test_sina_errors_are_translated(vendor, sina, provider):
    sina.errors["stock_zh_a_daily"] = [
        connection_dropped(),
        requests.ReadTimeout("HTTPSConnectionPool(host='finance.sina.com.cn'): Read timed out."),
        SyntaxError("invalid syntax\n  var hfq=<html>"),
    ]
    with pytest.raises(TransientProviderError) as info:
        provider.actions("000001.SZ", "2024-01-02", "2024-01-05")
    assert info.value.kind == "connection" and info.value.symbol == "000001.SZ"
    assert "stock_zh_a_daily failed for 000001.SZ" in str(info.value)
    assert "Sina blocks IPs" in str(info.value)
    with pytest.raises(TransientProviderError) as info:
        provider.actions("000001.SZ", "2024-01-02", "2024-01-05")
    assert info.value.kind == "timeout"
    with pytest.raises(PermanentProviderError, match="SyntaxError: invalid syntax; Sina's") as info:
        provider.actions("000001.SZ", "2024-01-02", "2024-01-05")
    assert "\n" not in str(info.value) and info.value.symbol == "000001.SZ"
    assert pickle.loads(pickle.dumps(info.value)).symbol == "000001.SZ"


def test_no_sina_factors_is_permanent(vendor, sina, provider):
    with pytest.raises(PermanentProviderError, match="sina hfq factor not available") as info:
        provider.actions("000004.SZ", "2024-01-02", "2024-01-05")
    assert not isinstance(info.value, TransientProviderError)
    assert [c[0] for c in sina.calls] == ["stock_zh_a_daily"]  # no event call after it


def test_dividend_page_errors_are_translated(vendor, sina, provider):
    sina.errors["stock_history_dividend_detail"] = [
        IndexError("list index out of range"),  # read_html found fewer tables
        ConnectionResetError(104, "Connection reset by peer"),
    ]
    with pytest.raises(PermanentProviderError,
                       match="stock_history_dividend_detail failed for 000001.SZ with IndexError"):
        provider.actions("000001.SZ", "2024-01-02", "2024-01-05")
    with pytest.raises(TransientProviderError, match="ConnectionResetError"):
        provider.actions("000001.SZ", "2024-01-02", "2024-01-05")


def test_a_factor_that_is_no_number_is_a_data_error(vendor, sina, provider, monkeypatch):
    monkeypatch.setitem(sina.factors, "sz000001", [("2023-06-14", "--"),
                                                   ("1900-01-01", "1.0")])
    with pytest.raises(DataError, match="000001.SZ has a row .*'--'") as info:
        provider.actions("000001.SZ", "2020-01-01", "2024-12-31")
    assert info.value.column == "factor"


def test_a_changed_dividend_table_is_a_data_error(vendor, sina, provider, monkeypatch):
    monkeypatch.setattr(AkshareProvider, "_stock_history_dividend_detail", staticmethod(
        lambda **kw: pd.DataFrame({"公告日期": ["2024-06-07"], "派息(税前)": [7.19]})))
    with pytest.raises(DataError, match="no column '除权除息日'"):
        provider.actions("000001.SZ", "2020-01-01", "2024-12-31")


def test_actions_refuse_what_bars_refuse(vendor, sina, provider):
    with pytest.raises(PermanentProviderError, match="would return 000001.SZ"):
        provider.actions("000001.SH", "2024-01-02", "2024-01-05")
    assert sina.calls == []
    assert provider.actions("000001.SZ", "2024-01-05", "2024-01-02").empty
    assert sina.calls == []


# --- the provider object -------------------------------------------------------------------------


def test_pickles_by_its_options(vendor):
    p = AkshareProvider(timeout=5)
    p.fetch("000001.SZ", "2024-01-02", "2024-01-03")
    copy = pickle.loads(pickle.dumps(p))
    assert copy == p and copy is not p and copy.timeout == 5.0
    assert copy.given_options() == {"timeout": 5.0}
    copy.fetch("000001.SZ", "2024-01-02", "2024-01-03")
    assert vendor.calls[0] == vendor.calls[1]


def test_timeout_must_be_positive():
    with pytest.raises(InvalidOptionError, match="timeout=0.0"):
        AkshareProvider(timeout=0)
    with pytest.raises(InvalidOptionError, match="not a valid float"):
        AkshareProvider(timeout="soon")


# --- end to end ----------------------------------------------------------------------------------


def test_ingest_end_to_end(vendor, tmp_path):
    vendor.errors["600000"] = [connection_dropped()]  # one drop: retried, then stored
    db = str(tmp_path / "k.duckdb")
    report = kdist.ingest(
        ["000001.SZ", "600000.SH", "000002.SZ"], start="2024-01-02", end="2024-01-05",
        provider=kdist.get_provider("akshare"), db=db, client="sync",
    )
    assert (report.symbols_ok, report.symbols_empty, report.symbols_failed) == (2, 1, 0)
    assert report.empty == ["000002.SZ"]
    stored = kdist.load(db)
    assert stored.groupby("symbol").size().to_dict() == {"000001.SZ": 4, "600000.SH": 2}
    row = stored[(stored.symbol == "600000.SH") & (stored.ts == "2024-01-03")].iloc[0]
    assert (row.open, row.close, row.volume, row.amount) == (6.55, 6.60, 31_501_100, 207295320.0)
    assert len(vendor.calls) == 4  # 000001, 600000 twice (the drop), 000002
    # Raw bars come with Sina's factors up to the window's end, for the symbols with bars.
    actions = kdist.corporate_actions(db)
    assert actions.groupby("symbol")["factor"].apply(list).to_dict() == {
        "000001.SZ": [166.5, 170.8474576271186], "600000.SH": [1.0, 12.41]}


@pytest.mark.network
def test_live_daily_bars():
    p = kdist.get_provider("akshare", timeout=20)
    frame = p.fetch("000001.SZ", "2024-01-02", "2024-01-10", "1d", "none")
    bars, rejected = canonical(frame, p)
    assert len(bars) == 7 and rejected == {}
    assert bars["ts"].iloc[0] == pd.Timestamp("2024-01-02")
    assert bars["volume"].iloc[0] > 1e7  # shares, not lots


# --- conformance ---------------------------------------------------------------------------------


class TestConformance(ProviderConformance):
    symbol = "000001.SZ"
    start, end = "2024-01-02", "2024-01-05"
    empty_window = ("2024-01-06", "2024-01-07")  # a weekend
    unknown_symbol = "000002.SZ"  # Eastmoney answers no klines: an empty frame
    actions_window = ("2023-01-01", "2023-12-31")
    metadata = {"name": "akshare", "requires": ("akshare",), "extra": "akshare",
                "tz": "Asia/Shanghai", "freqs": (Freq.DAY, Freq.WEEK, Freq.MONTH),
                "options": {"timeout": 30.0}}

    @pytest.fixture
    def provider(self, vendor, provider):  # the module's provider, its seam replaced
        return provider
