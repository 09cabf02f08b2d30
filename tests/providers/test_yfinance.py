"""The yfinance provider through a replaced seam: tickers, zones, adjustments, limits, errors.

``YfinanceProvider._history`` is the only thing replaced. The fake answers like
``yfinance.Ticker(t).history``: flat Open/High/Low/Close/Volume columns (Adj Close too when
``auto_adjust=False``) on an exchange-zone-aware index named Date or Datetime; some tests
answer ``download``-shaped frames with ``(Price, Ticker)`` MultiIndex columns instead. Errors
are yfinance's own exception classes and curl_cffi's network errors.
"""

from __future__ import annotations

import pickle

import pandas as pd
import pytest

import kdist
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

ZONES = {"AAPL": "America/New_York", "BRK-B": "America/New_York",
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
    assert [c[0] for c in vendor.calls].count("AAPL") == 2


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
    metadata = {"name": "yfinance", "requires": ("yfinance",), "extra": "yfinance", "tz": None,
                "freqs": tuple(Freq), "adjusts": (Adjust.NONE, Adjust.QFQ),
                "options": {"timeout": 30.0}}

    @pytest.fixture
    def provider(self, vendor, provider):  # the module's provider, its seam replaced
        # What Yahoo answers for a ticker it does not know.
        vendor.errors["NOSUCH"] = [yf_exceptions.YFTzMissingError("NOSUCH")]
        return provider
