"""The yfinance provider through a replaced seam: tickers, zones, adjustments, limits, errors.

``YfinanceProvider._history`` is the only thing replaced. The fake answers like
``yfinance.Ticker(t).history``: flat Open/High/Low/Close/Volume columns (Adj Close too when
``auto_adjust=False``, Dividends and Stock Splits with ``actions=True``, 0.0 on days without
one) on an exchange-zone-aware index named Date or Datetime; some tests answer
``download``-shaped frames with ``(Price, Ticker)`` MultiIndex columns instead. Errors are
yfinance's own exception classes and curl_cffi's network errors. Adj Close is built the way
Yahoo builds it: ``Close(t) x`` the product over later ex-dates ``e`` of
``1 - D(e) / Close(e-1)`` (yfinance's ``_fix_bad_div_adjust``).
"""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

import kdist
from kdist.actions import COLUMNS, adjust_prices, hfq_factors
from kdist.errors import (
    DataError,
    InvalidOptionError,
    PermanentProviderError,
    TransientProviderError,
)
from kdist.providers.yfinance_ import YfinanceProvider
from kdist.schema import Adjust, Freq, normalise
from kdist.testing import ProviderConformance

# Real classes, so the provider's translation is tested against what yfinance raises.
yf_exceptions = pytest.importorskip("yfinance.exceptions")
curl_exceptions = pytest.importorskip("curl_cffi.requests.exceptions")

ZONES = {"AAPL": "America/New_York", "BRK-B": "America/New_York", "NVDA": "America/New_York",
         "600000.SS": "Asia/Shanghai", "000001.SZ": "Asia/Shanghai"}
#: ticker -> daily (date, open, high, low, close, adj close, volume), unadjusted.
DAILY = {
    "AAPL": [
        ("2024-01-02", 187.15, 188.44, 183.89, 185.64, 184.29, 82488700),
        ("2024-01-03", 184.22, 185.88, 183.43, 184.25, 182.91, 58414500),
        ("2024-01-04", 182.15, 183.09, 180.88, 181.91, 180.59, 71983600),
    ],
    "600000.SS": [
        ("2024-01-02", 6.58, 6.60, 6.53, 6.55, 6.12, 23342500),
        ("2024-01-03", 6.55, 6.61, 6.54, 6.60, 6.17, 31501100),
    ],
    "BRK-B": [("2024-01-02", 356.0, 359.9, 355.2, 359.4, 359.4, 3210000)],
}


def history_frame(ticker, rows, *, interval="1d", auto_adjust=False) -> pd.DataFrame:
    """A frame as Ticker.history returns it: flat columns, exchange-zone-aware index."""
    if not rows:
        # yfinance's utils.empty_df(): the columns, no rows, index named Date.
        empty = pd.DataFrame(columns=["Open", "High", "Low", "Close", "Adj Close", "Volume"],
                             dtype="float64")
        empty.index = pd.DatetimeIndex([], name="Date")
        return empty
    stamps = pd.DatetimeIndex([r[0] for r in rows]).tz_localize(ZONES[ticker])
    frame = pd.DataFrame(
        [list(r[1:]) for r in rows],
        index=stamps.rename("Date" if interval[-1] not in "mh" or interval == "1mo"
                            else "Datetime"),
        columns=["Open", "High", "Low", "Close", "Adj Close", "Volume"],
    )
    if auto_adjust:
        ratio = frame["Adj Close"] / frame["Close"]
        for col in ("Open", "High", "Low", "Close"):
            frame[col] = frame[col] * ratio
        frame = frame.drop(columns="Adj Close")
    frame["Volume"] = frame["Volume"].astype("int64")
    return frame


#: ticker -> daily (date, close, dividend, split) around corporate actions: AAPL's dividends
#: of 2024 (0.24, 0.25) with illustrative closes; 600000.SS's 2024 dividend (0.414).
ACTION_DAYS = {
    "AAPL": [
        ("2024-02-06", 189.30, 0.0, 0.0), ("2024-02-07", 189.41, 0.0, 0.0),
        ("2024-02-08", 188.32, 0.0, 0.0), ("2024-02-09", 188.85, 0.24, 0.0),
        ("2024-02-12", 187.15, 0.0, 0.0), ("2024-05-08", 182.74, 0.0, 0.0),
        ("2024-05-09", 184.57, 0.0, 0.0), ("2024-05-10", 183.05, 0.25, 0.0),
        ("2024-05-13", 186.28, 0.0, 0.0),
    ],
    "600000.SS": [
        ("2024-07-18", 8.01, 0.0, 0.0), ("2024-07-19", 7.62, 0.414, 0.0),
        ("2024-07-22", 7.66, 0.0, 0.0),
    ],
}


def yahoo_adj_close(close: pd.Series, dividends: pd.Series) -> pd.Series:
    """Yahoo's Adj Close: Close(t) times, for every later ex-date e, 1 - D(e)/Close(e-1)."""
    multiplier = (1.0 - dividends / close.shift(1)).fillna(1.0)
    # The product over ex-dates strictly after t: a reversed cumulative product, shifted.
    later = multiplier[::-1].cumprod()[::-1].shift(-1).fillna(1.0)
    return close * later


def actions_frame(ticker, rows) -> pd.DataFrame:
    """A frame as Ticker.history(auto_adjust=False, actions=True) returns it."""
    stamps = pd.DatetimeIndex([r[0] for r in rows], name="Date").tz_localize(ZONES[ticker])
    close = pd.Series([r[1] for r in rows], index=stamps, dtype="float64")
    dividends = pd.Series([r[2] for r in rows], index=stamps, dtype="float64")
    return pd.DataFrame({
        "Open": close, "High": close * 1.01, "Low": close * 0.99, "Close": close,
        "Adj Close": yahoo_adj_close(close, dividends), "Volume": 1_000_000,
        "Dividends": dividends, "Stock Splits": [float(r[3]) for r in rows],
    })


def as_download(frame: pd.DataFrame, ticker: str) -> pd.DataFrame:
    """The same bars shaped like yf.download: (Price, Ticker) MultiIndex columns."""
    out = frame.copy()
    out.columns = pd.MultiIndex.from_product([frame.columns, [ticker]], names=["Price", "Ticker"])
    return out


class FakeYahoo:
    """Stands in for Ticker(t).history: answers from DAILY within [start, end), records calls."""

    def __init__(self):
        self.calls: list[tuple[str, dict]] = []
        self.errors: dict[str, list[BaseException]] = {}
        self.frames: dict[str, pd.DataFrame] = {}  # ticker -> a fixed answer

    def __call__(self, ticker, **kwargs):
        self.calls.append((ticker, kwargs))
        if self.errors.get(ticker):
            raise self.errors[ticker].pop(0)
        if ticker in self.frames:
            return self.frames[ticker]
        if kwargs.get("actions"):
            frame = actions_frame(ticker, ACTION_DAYS.get(ticker, [("2000-01-03", 1, 0, 0)]))
            day = frame.index.strftime("%Y-%m-%d")
            return frame[(day >= kwargs["start"]) & (day < kwargs["end"])]
        rows = [r for r in DAILY.get(ticker, []) if kwargs["start"] <= r[0] < kwargs["end"]]
        return history_frame(ticker, rows, interval=kwargs["interval"],
                             auto_adjust=kwargs["auto_adjust"])


@pytest.fixture
def vendor(monkeypatch):
    fake = FakeYahoo()
    monkeypatch.setattr(YfinanceProvider, "_history", staticmethod(fake))
    return fake


@pytest.fixture
def provider():
    return kdist.get_provider("yfinance")


def canonical(frame, provider, freq="1d", adjust="none"):
    """What the runner does after fetch: kdist.schema.normalise with the provider's tz."""
    return normalise(frame, freq=Freq.parse(freq), adjust=Adjust.parse(adjust), tz=provider.tz)


def recent(days_ago: int) -> pd.Timestamp:
    return pd.Timestamp.now().normalize() - pd.Timedelta(days=days_ago)


def intraday(ticker, day: pd.Timestamp, times, zone) -> pd.DataFrame:
    stamps = pd.DatetimeIndex([f"{day.date()} {t}" for t in times], name="Datetime")
    n = len(times)
    return pd.DataFrame(
        {"Open": [10.0] * n, "High": [10.5] * n, "Low": [9.5] * n, "Close": [10.2] * n,
         "Volume": [1000] * n},
        index=stamps.tz_localize(zone),
    )


# --- canonical frames --------------------------------------------------------------------------


def test_daily_bars_are_canonical(vendor, provider):
    frame = provider.fetch("AAPL", "2024-01-02", "2024-01-04")
    bars, rejected = canonical(frame, provider)
    assert rejected == {}
    assert bars["ts"].dt.strftime("%Y-%m-%d %H:%M").tolist() == [
        "2024-01-02 00:00", "2024-01-03 00:00", "2024-01-04 00:00"]
    first = bars.iloc[0]
    assert (first.open, first.high, first.low, first.close) == (187.15, 188.44, 183.89, 185.64)
    assert first.volume == 82_488_700
    assert bars["amount"].isna().all()  # Yahoo has no traded amount
    assert str(bars["ts"].dtype) == "datetime64[us]" and (bars.dtypes.iloc[1:] == "float64").all()


def test_end_is_sent_exclusive_and_arguments(vendor, provider):
    YfinanceProvider(timeout=12).fetch("AAPL", "2024-01-02", "2024-01-04")
    assert vendor.calls == [("AAPL", {
        "start": "2024-01-02", "end": "2024-01-05", "interval": "1d", "auto_adjust": False,
        "actions": False, "timeout": 12.0})]


@pytest.mark.parametrize(("freq", "interval"), [
    ("1d", "1d"), ("1w", "1wk"), ("1M", "1mo"), ("1m", "1m"), ("5m", "5m"), ("15m", "15m"),
    ("30m", "30m"), ("60m", "60m"),
])
def test_intervals(vendor, provider, freq, interval):
    day = recent(3)
    provider.fetch("AAPL", day, day, freq)
    assert vendor.calls[-1][1]["interval"] == interval


@pytest.mark.parametrize(("symbol", "ticker"), [
    ("600000.SH", "600000.SS"), ("000001.SZ", "000001.SZ"), ("AAPL", "AAPL"),
    ("BRK-B", "BRK-B"), ("brk-b", "BRK-B"), ("sh600000", "600000.SS"),
])
def test_tickers(vendor, provider, symbol, ticker):
    provider.fetch(symbol, "2024-01-02", "2024-01-02")
    assert vendor.calls[-1][0] == ticker


def test_none_uses_close_as_is_and_qfq_auto_adjusts(vendor, provider):
    raw = provider.fetch("AAPL", "2024-01-02", "2024-01-02", "1d", "none")
    adjusted = provider.fetch("AAPL", "2024-01-02", "2024-01-02", "1d", "qfq")
    assert [c[1]["auto_adjust"] for c in vendor.calls] == [False, True]
    assert raw["close"].tolist() == [185.64]  # not Adj Close
    assert adjusted["close"].tolist() == [pytest.approx(184.29)]
    assert adjusted["open"].tolist() == [pytest.approx(187.15 * 184.29 / 185.64)]


def test_ashare_daily_bars_stay_on_their_day(vendor, provider):
    # 2024-01-02 00:00+08:00 is 2024-01-01 16:00 UTC: converting to UTC would lose a day.
    frame = provider.fetch("600000.SH", "2024-01-02", "2024-01-03")
    bars, _ = canonical(frame, provider)
    assert bars["ts"].dt.strftime("%Y-%m-%d %H:%M").tolist() == [
        "2024-01-02 00:00", "2024-01-03 00:00"]


def test_intraday_timestamps_are_exchange_local_per_ticker(vendor, provider):
    day = recent(2)
    vendor.frames["AAPL"] = intraday("AAPL", day, ["09:30", "09:35", "15:55"],
                                     "America/New_York")
    vendor.frames["600000.SS"] = intraday("600000.SS", day, ["09:30", "14:55"], "Asia/Shanghai")
    us = canonical(provider.fetch("AAPL", day, day, "5m"), provider, "5m")[0]
    cn = canonical(provider.fetch("600000.SH", day, day, "5m"), provider, "5m")[0]
    assert us["ts"].dt.strftime("%H:%M").tolist() == ["09:30", "09:35", "15:55"]
    assert cn["ts"].dt.strftime("%H:%M").tolist() == ["09:30", "14:55"]


def test_ashare_in_utc_is_converted_to_shanghai(vendor, provider):
    day = recent(2)
    utc = intraday("600000.SS", day, ["01:30", "06:55"], "UTC")
    vendor.frames["600000.SS"] = as_download(utc, "600000.SS")
    bars, _ = canonical(provider.fetch("600000.SH", day, day, "5m"), provider, "5m")
    assert bars["ts"].dt.strftime("%H:%M").tolist() == ["09:30", "14:55"]


def test_download_shaped_multiindex_columns(vendor, provider):
    history = history_frame("AAPL", DAILY["AAPL"])
    vendor.frames["AAPL"] = as_download(history, "AAPL")
    frame = provider.fetch("AAPL", "2024-01-02", "2024-01-04")
    assert frame["close"].tolist() == [185.64, 184.25, 181.91]
    assert frame["ts"].dt.strftime("%Y-%m-%d").tolist() == ["2024-01-02", "2024-01-03",
                                                            "2024-01-04"]


def test_multiindex_with_several_tickers_keeps_the_requested_one(vendor, provider):
    aapl = as_download(history_frame("AAPL", DAILY["AAPL"][:1]), "AAPL")
    brk = as_download(history_frame("BRK-B", DAILY["BRK-B"]), "BRK-B")
    vendor.frames["BRK-B"] = pd.concat([aapl, brk], axis=1)
    assert provider.fetch("BRK-B", "2024-01-02", "2024-01-02")["close"].tolist() == [359.4]
    vendor.frames["AAPL"] = as_download(history_frame("BRK-B", DAILY["BRK-B"]), "BRK-B")
    vendor.frames["AAPL"] = pd.concat([vendor.frames["AAPL"], vendor.frames["AAPL"].rename(
        columns={"BRK-B": "MSFT"}, level=1)], axis=1)
    with pytest.raises(DataError, match="holds tickers BRK-B, MSFT but not this one"):
        provider.fetch("AAPL", "2024-01-02", "2024-01-02")


def test_bars_outside_the_window_are_dropped(vendor, provider):
    # Yahoo may append the live bar past the end, and stamps a week at its Monday.
    rows = [("2024-01-01", 1.0, 1.0, 1.0, 1.0, 1.0, 1), *DAILY["AAPL"],
            ("2024-01-08", 1.0, 1.0, 1.0, 1.0, 1.0, 1)]
    vendor.frames["AAPL"] = history_frame("AAPL", rows)
    frame = provider.fetch("AAPL", "2024-01-02", "2024-01-04")
    assert frame["ts"].dt.strftime("%Y-%m-%d").tolist() == ["2024-01-02", "2024-01-03",
                                                            "2024-01-04"]


def test_one_minute_windows_are_fetched_a_week_at_a_time(vendor, provider):
    lo, hi = recent(20), recent(1)
    provider.fetch("AAPL", lo, hi, "1m")
    spans = [(c[1]["start"], c[1]["end"]) for c in vendor.calls]
    day = lambda n: str(recent(n).date())  # noqa: E731
    assert spans == [(day(20), day(13)), (day(13), day(6)), (day(6), day(0))]


def test_one_minute_pieces_are_concatenated(vendor, provider, monkeypatch):
    lo = recent(10)
    answers = iter([intraday("AAPL", lo, ["09:31"], "America/New_York"),
                    intraday("AAPL", recent(2), ["09:31", "09:32"], "America/New_York")])
    monkeypatch.setattr(YfinanceProvider, "_history", staticmethod(lambda t, **kw: next(answers)))
    frame = provider.fetch("AAPL", lo, recent(1), "1m")
    assert len(frame) == 3 and frame["ts"].is_monotonic_increasing


# --- empty, refused and failed requests ----------------------------------------------------------


def test_empty_answer_is_an_empty_frame(vendor, provider):
    frame = provider.fetch("AAPL", "2030-01-01", "2030-01-31")
    assert len(frame) == 0
    assert list(frame.columns) == ["ts", "open", "high", "low", "close", "volume", "amount"]
    assert canonical(frame, provider)[0].empty


@pytest.mark.parametrize("error", [
    yf_exceptions.YFTzMissingError("NOSUCH"),
    yf_exceptions.YFPricesMissingError("NOSUCH", "(1d 2024-01-02 -> 2024-01-05)"),
])
def test_unknown_ticker_is_empty(vendor, provider, error):
    vendor.errors["NOSUCH"] = [error]
    assert len(provider.fetch("NOSUCH", "2024-01-02", "2024-01-05")) == 0


def test_hfq_is_refused_by_check(vendor, provider):
    with pytest.raises(InvalidOptionError, match="no 'hfq' adjustment.*adjust='qfq'"):
        provider.check(freq=Freq.DAY, adjust=Adjust.HFQ, start=pd.Timestamp("2024-01-02"),
                       end=pd.Timestamp("2024-01-03"))
    with pytest.raises(InvalidOptionError):
        provider.fetch("AAPL", "2024-01-02", "2024-01-05", "1d", "hfq")
    assert vendor.calls == []


@pytest.mark.parametrize(("freq", "days_ago", "limit"), [
    ("1m", 31, 30), ("1m", 45, 30), ("5m", 61, 60), ("60m", 100, 60),
])
def test_old_intraday_windows_are_refused_by_check(vendor, provider, freq, days_ago, limit):
    start = recent(days_ago)
    with pytest.raises(InvalidOptionError, match=f"{freq} bars for the last {limit} days only; "
                       f"start {start.date()}"):
        provider.check(freq=Freq(freq), adjust=Adjust.NONE, start=start, end=recent(0))
    with pytest.raises(InvalidOptionError):
        provider.fetch("AAPL", start, recent(1), freq)
    assert vendor.calls == []


@pytest.mark.parametrize(("freq", "days_ago"), [
    ("1m", 29), ("5m", 59), ("15m", 40), ("60m", 59), ("1d", 20_000), ("1w", 3000),
])
def test_check_accepts_what_yahoo_serves(provider, freq, days_ago):
    provider.check(freq=Freq(freq), adjust=Adjust.QFQ, start=recent(days_ago), end=recent(0))


@pytest.mark.parametrize(("error", "kind"), [
    (yf_exceptions.YFRateLimitError(), "rate_limit"),
    (curl_exceptions.ConnectionError("Failed to perform, curl: (7) Couldn't connect"),
     "connection"),
    (curl_exceptions.Timeout("Failed to perform, curl: (28) Operation timed out"), "timeout"),
    (yf_exceptions.YFDataException("*** YAHOO! FINANCE IS CURRENTLY DOWN! ***"), "connection"),
    (ConnectionResetError(104, "Connection reset by peer"), "connection"),
])
def test_network_errors_are_transient(vendor, provider, error, kind):
    vendor.errors["AAPL"] = [error]
    with pytest.raises(TransientProviderError, match="AAPL") as info:
        provider.fetch("AAPL", "2024-01-02", "2024-01-05")
    assert info.value.kind == kind and info.value.symbol == "AAPL"
    assert type(error).__name__ in str(info.value)
    if type(error).__module__.startswith("yfinance"):
        # Not chained: yfinance's exceptions break pickling as a cause (see _call).
        assert info.value.__cause__ is None and info.value.__context__ is None
    else:
        assert info.value.__cause__ is error
    copy = pickle.loads(pickle.dumps(info.value))
    assert (type(copy), str(copy), copy.kind) == (TransientProviderError, str(info.value), kind)


def test_yahoos_range_refusal_is_permanent(vendor, provider):
    vendor.errors["AAPL"] = [yf_exceptions.YFPricesMissingError(
        "AAPL", "", yahoo_reason="1m data not available for startTime=1704205800 and "
        "endTime=1704465000. Only 8 days worth of 1m granularity data are allowed to be "
        "fetched per request.")]
    with pytest.raises(PermanentProviderError, match="1m data not available") as info:
        provider.fetch("AAPL", recent(3), recent(1), "1m")
    assert not isinstance(info.value, TransientProviderError)
    assert str(pickle.loads(pickle.dumps(info.value))) == str(info.value)


def test_unexpected_errors_are_permanent(vendor, provider):
    vendor.errors["AAPL"] = [TypeError("'NoneType' object is not subscriptable")]
    with pytest.raises(PermanentProviderError, match="TypeError.*upgrade yfinance"):
        provider.fetch("AAPL", "2024-01-02", "2024-01-05")


def test_missing_close_is_a_data_error(vendor, provider):
    vendor.frames["AAPL"] = history_frame("AAPL", DAILY["AAPL"]).drop(columns="Close")
    with pytest.raises(DataError, match="no 'close' column") as info:
        provider.fetch("AAPL", "2024-01-02", "2024-01-04")
    assert info.value.column == "close"


# --- corporate actions ---------------------------------------------------------------------------


def test_actions_are_yahoos_dividends_and_splits(vendor, provider):
    got = provider.actions("AAPL", "2024-02-01", "2024-05-31")
    assert list(got.columns) == list(COLUMNS)
    assert got["ex_date"].dt.strftime("%Y-%m-%d").tolist() == ["2024-02-09", "2024-05-10"]
    assert got["cash"].tolist() == [0.24, 0.25]  # per share, as Yahoo gives them
    assert (got["split"] == 1).all() and got["factor"].isna().all()  # kdist computes it
    assert str(got["ex_date"].dtype) == "datetime64[us]"


def test_actions_ask_history_once_for_the_window(vendor, provider):
    YfinanceProvider(timeout=12).actions("AAPL", "2024-02-01", "2024-05-31")
    assert vendor.calls == [("AAPL", {
        "start": "2024-02-01", "end": "2024-06-01", "interval": "1d", "auto_adjust": False,
        "actions": True, "timeout": 12.0})]  # the day after the end: Yahoo's is exclusive
    provider.actions("600000.SH", "2024-07-01", "2024-07-31")
    assert vendor.calls[-1][0] == "600000.SS"


def test_derived_qfq_reproduces_yahoos_adj_close(vendor, provider):
    rows = ACTION_DAYS["AAPL"]
    yahoo = actions_frame("AAPL", rows)
    events = provider.actions("AAPL", rows[0][0], rows[-1][0])
    close = yahoo["Close"].to_numpy()
    days = yahoo.index.tz_localize(None)
    before = np.searchsorted(days, events["ex_date"].to_numpy()) - 1  # the bar before each
    # Cash only: Yahoo's closes are split-adjusted already (splits_in_bars).
    factors = hfq_factors(events.assign(split=1.0), close[before])
    qfq = adjust_prices(days, close, events["ex_date"], factors, "qfq")
    assert qfq == pytest.approx(yahoo["Adj Close"].to_numpy(), rel=1e-6)
    assert not np.allclose(qfq, close)  # the dividends did adjust something


def test_ex_dates_are_exchange_local_days(vendor, provider):
    # 2024-07-19 00:00+08:00 is 2024-07-18 16:00 UTC: the day must stay the 19th.
    got = provider.actions("600000.SH", "2024-07-01", "2024-07-31")
    assert got["ex_date"].tolist() == [pd.Timestamp("2024-07-19")]
    assert got["cash"].tolist() == [0.414]
    utc = actions_frame("600000.SS", ACTION_DAYS["600000.SS"]).tz_convert("UTC")
    vendor.frames["600000.SS"] = as_download(utc, "600000.SS")
    got = provider.actions("600000.SH", "2024-07-01", "2024-07-31")
    assert got["ex_date"].tolist() == [pd.Timestamp("2024-07-19")]


def test_splits_are_reported_and_left_out_of_the_factors(vendor, provider):
    # NVDA's 10-for-1 split of 2024-06-10 and its 0.01 dividend the day after; the closes
    # before the split are divided by 10 already, as Yahoo's are.
    rows = [("2024-06-06", 120.998, 0.0, 0.0), ("2024-06-07", 120.888, 0.0, 0.0),
            ("2024-06-10", 121.79, 0.0, 10.0), ("2024-06-11", 120.91, 0.01, 0.0)]
    vendor.frames["NVDA"] = actions_frame("NVDA", rows)
    got = provider.actions("NVDA", "2024-06-01", "2024-06-30")
    assert got["split"].tolist() == [10.0, 1.0] and got["cash"].tolist() == [0.0, 0.01]
    assert YfinanceProvider.splits_in_bars  # kdist leaves the 10.0 out of the factors
    # A 1-for-10 reverse split: Yahoo's numerator / denominator, 0.1.
    vendor.frames["NVDA"] = actions_frame("NVDA", [("2024-03-01", 5.0, 0.0, 0.1)])
    assert provider.actions("NVDA", "2024-03-01", "2024-03-01")["split"].tolist() == [0.1]


def test_events_outside_the_window_are_left_out(vendor, provider):
    vendor.frames["AAPL"] = actions_frame("AAPL", ACTION_DAYS["AAPL"])  # ignores the dates
    got = provider.actions("AAPL", "2024-05-01", "2024-05-31")
    assert got["ex_date"].dt.strftime("%Y-%m-%d").tolist() == ["2024-05-10"]


def test_no_events_and_unknown_tickers_are_empty(vendor, provider):
    assert provider.actions("AAPL", "2024-01-02", "2024-01-04").empty
    vendor.errors["NOSUCH"] = [yf_exceptions.YFTzMissingError("NOSUCH")]
    got = provider.actions("NOSUCH", "2024-01-02", "2024-01-04")
    assert got.empty and list(got.columns) == list(COLUMNS)
    vendor.frames["AAPL"] = history_frame("AAPL", DAILY["AAPL"])  # no event columns at all
    assert provider.actions("AAPL", "2024-01-02", "2024-01-04").empty
    calls = len(vendor.calls)
    assert provider.actions("AAPL", "2024-01-04", "2024-01-02").empty
    assert len(vendor.calls) == calls


@pytest.mark.parametrize(("error", "expected", "kind"), [
    (yf_exceptions.YFRateLimitError(), TransientProviderError, "rate_limit"),
    (curl_exceptions.Timeout("Failed to perform, curl: (28) Operation timed out"),
     TransientProviderError, "timeout"),
    (TypeError("'NoneType' object is not subscriptable\nmore"), PermanentProviderError, None),
])
def test_actions_errors_are_translated(vendor, provider, error, expected, kind):
    vendor.errors["AAPL"] = [error]
    with pytest.raises(expected) as info:
        provider.actions("AAPL", "2024-02-01", "2024-05-31")
    err = info.value
    assert type(err) is expected and err.symbol == "AAPL" and getattr(err, "kind", None) == kind
    assert "yfinance history of AAPL" in str(err) and "\n" not in str(err)
    copy = pickle.loads(pickle.dumps(err))
    assert (type(copy), str(copy)) == (expected, str(err))


# --- the provider object -------------------------------------------------------------------------


def test_pickles_by_its_options(vendor):
    p = YfinanceProvider(timeout=4)
    copy = pickle.loads(pickle.dumps(p))
    assert copy == p and copy.given_options() == {"timeout": 4.0}
    copy.fetch("AAPL", "2024-01-02", "2024-01-02")
    assert vendor.calls[-1][1]["timeout"] == 4.0


def test_timeout_must_be_positive():
    with pytest.raises(InvalidOptionError, match="timeout=0.0"):
        YfinanceProvider(timeout=0)


# --- end to end ----------------------------------------------------------------------------------


def test_ingest_end_to_end(vendor, tmp_path):
    vendor.errors["AAPL"] = [yf_exceptions.YFRateLimitError()]  # retried, then stored
    vendor.errors["NOSUCH"] = [yf_exceptions.YFTzMissingError("NOSUCH")]
    db = str(tmp_path / "k.duckdb")
    report = kdist.ingest(
        ["AAPL", "600000.SH", "NOSUCH"], start="2024-01-02", end="2024-01-04",
        provider=kdist.get_provider("yfinance"), db=db, client="sync",
    )
    assert (report.symbols_ok, report.symbols_empty, report.symbols_failed) == (2, 1, 0)
    assert report.empty == ["NOSUCH"]
    stored = kdist.load(db)
    assert stored.groupby("symbol").size().to_dict() == {"600000.SH": 2, "AAPL": 3}
    row = stored[(stored.symbol == "600000.SH") & (stored.ts == "2024-01-03")].iloc[0]
    assert (row.open, row.close, row.volume) == (6.55, 6.60, 31_501_100)
    assert pd.isna(row.amount)
    bars = [c[0] for c in vendor.calls if not c[1]["actions"]]
    assert bars.count("AAPL") == 2
    # Raw bars come with their corporate actions: one more call per symbol with bars.
    # (in the plan's order: symbols sorted, 600000.SH before AAPL)
    assert [c[0] for c in vendor.calls if c[1]["actions"]] == ["600000.SS", "AAPL"]


@pytest.mark.network
def test_live_daily_bars():
    p = kdist.get_provider("yfinance", timeout=20)
    frame = p.fetch("AAPL", "2024-01-02", "2024-01-10", "1d", "none")
    bars, rejected = canonical(frame, p)
    assert len(bars) == 7 and rejected == {}
    assert bars["ts"].iloc[0] == pd.Timestamp("2024-01-02")
    assert bars["close"].iloc[0] == pytest.approx(185.64, abs=0.05)


# --- conformance ---------------------------------------------------------------------------------


class TestConformance(ProviderConformance):
    symbol = "AAPL"
    start, end = "2024-01-02", "2024-01-04"
    empty_window = ("2024-01-06", "2024-01-07")  # a weekend
    unknown_symbol = "NOSUCH"
    actions_window = ("2024-02-01", "2024-02-29")
    metadata = {"name": "yfinance", "requires": ("yfinance",), "extra": "yfinance", "tz": None,
                "freqs": tuple(Freq), "adjusts": (Adjust.NONE, Adjust.QFQ),
                "splits_in_bars": True, "options": {"timeout": 30.0}}

    @pytest.fixture
    def provider(self, vendor, provider):  # the module's provider, its seam replaced
        # What Yahoo answers for a ticker it does not know.
        vendor.errors["NOSUCH"] = [yf_exceptions.YFTzMissingError("NOSUCH")]
        return provider
