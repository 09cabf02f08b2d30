"""The akshare provider through a replaced seam: Eastmoney's frames, units, arguments, errors.

``AkshareProvider._stock_zh_a_hist`` is the only thing replaced; the fake answers with frames
shaped like ``akshare.stock_zh_a_hist``'s (Chinese columns in order, 股票代码 and the percent
columns, 日期 as ``datetime.date``, volume in lots) and raises what ``requests`` raises.
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


@pytest.fixture
def vendor(monkeypatch):
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
    metadata = {"name": "akshare", "requires": ("akshare",), "extra": "akshare",
                "tz": "Asia/Shanghai", "freqs": (Freq.DAY, Freq.WEEK, Freq.MONTH),
                "options": {"timeout": 30.0}}

    @pytest.fixture
    def provider(self, vendor, provider):  # the module's provider, its seam replaced
        return provider
