"""The synthetic provider: deterministic bars, its calendar and sessions, simulated failures."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from kdist.errors import (
    InvalidOptionError,
    PermanentProviderError,
    TransientProviderError,
    UsageError,
)
from kdist.providers import get_provider
from kdist.providers.synthetic import SyntheticProvider
from kdist.schema import Adjust, Freq, normalise
from kdist.testing import ProviderConformance

SYMBOL = "600000.SH"


@pytest.fixture
def provider():
    return SyntheticProvider(seed=7)


def days(frame):
    return [str(t.date()) for t in frame["ts"]]


# --- determinism -----------------------------------------------------------------------------


def test_same_values_for_any_sub_range(provider):
    full = provider.fetch(SYMBOL, "2024-01-01", "2024-06-30")
    part = provider.fetch(SYMBOL, "2024-03-04", "2024-03-29")
    expected = full[(full["ts"] >= "2024-03-04") & (full["ts"] <= "2024-03-29")]
    assert len(part) == 20
    pd.testing.assert_frame_equal(part.reset_index(drop=True), expected.reset_index(drop=True))


def test_same_intraday_values_for_any_sub_range(provider):
    two_days = provider.fetch(SYMBOL, "2024-01-02", "2024-01-03", "5m")
    second = provider.fetch(SYMBOL, "2024-01-03", "2024-01-03", "5m")
    pd.testing.assert_frame_equal(two_days.iloc[48:].reset_index(drop=True), second)


def test_same_values_in_any_order_and_from_fresh_instances():
    symbols = ["600000.SH", "000001.SZ", "AAPL"]
    a = SyntheticProvider(seed=1)
    forward = {s: a.fetch(s, "2024-01-01", "2024-02-29") for s in symbols}
    b = SyntheticProvider(seed=1)
    backward = {s: b.fetch(s, "2024-01-01", "2024-02-29") for s in reversed(symbols)}
    for s in symbols:
        pd.testing.assert_frame_equal(forward[s], backward[s])
    # Different symbols have different prices.
    assert forward["600000.SH"]["close"].tolist() != forward["000001.SZ"]["close"].tolist()


def test_pickled_copy_gives_same_values(provider):
    copy = pickle.loads(pickle.dumps(provider))
    assert copy is not provider and copy == provider
    pd.testing.assert_frame_equal(
        copy.fetch(SYMBOL, "2024-01-01", "2024-03-31", "30m"),
        provider.fetch(SYMBOL, "2024-01-01", "2024-03-31", "30m"),
    )


def test_seed_changes_values_not_calendar():
    a = SyntheticProvider(seed=1).fetch(SYMBOL, "2024-01-01", "2024-03-31")
    b = SyntheticProvider(seed=2).fetch(SYMBOL, "2024-01-01", "2024-03-31")
    assert days(a) == days(b)
    assert not np.allclose(a["close"], b["close"])
    assert (a["volume"] != b["volume"]).any()


def test_frame_shape_and_dtypes(provider):
    frame = provider.fetch(SYMBOL, "2024-01-01", "2024-01-31")
    assert list(frame.columns) == ["ts", "open", "high", "low", "close", "volume", "amount"]
    assert str(frame["ts"].dtype) == "datetime64[us]"
    assert all(frame[c].dtype == np.float64 for c in frame.columns[1:])
    assert frame["ts"].is_monotonic_increasing and frame["ts"].is_unique
    # Already canonical: normalise rejects nothing.
    bars, rejected = normalise(frame)
    assert rejected == {} and len(bars) == len(frame)


# --- calendar and sessions -------------------------------------------------------------------


def test_calendar_weekdays_without_holidays(provider):
    frame = provider.fetch(SYMBOL, "2024-01-01", "2024-12-31")
    stamps = pd.DatetimeIndex(frame["ts"])
    assert (stamps.day_of_week < 5).all()
    assert (stamps == stamps.normalize()).all()
    for holiday in ("2024-01-01", "2024-05-01", "2024-10-01", "2024-10-02", "2024-10-03"):
        assert pd.Timestamp(holiday) not in stamps
    # Every other weekday is there: 262 weekdays in 2024, five of them holidays.
    assert len(frame) == 262 - 5
    assert "2024-10-04" in days(frame) and "2024-09-30" in days(frame)


def test_weekend_only_window_is_empty(provider):
    frame = provider.fetch(SYMBOL, "2024-01-06", "2024-01-07")
    assert len(frame) == 0
    assert provider.fetch(SYMBOL, "2024-01-05", "2024-01-02").empty  # start after end


@pytest.mark.parametrize("freq, per_day", [("1m", 240), ("5m", 48), ("15m", 16), ("30m", 8), ("60m", 4)])
def test_intraday_bars_per_day(provider, freq, per_day):
    frame = provider.fetch(SYMBOL, "2024-01-02", "2024-01-05", freq)
    counts = frame.groupby(frame["ts"].dt.date).size()
    assert counts.tolist() == [per_day] * 4


def test_one_minute_session_times(provider):
    frame = provider.fetch(SYMBOL, "2024-01-02", "2024-01-02", "1m")
    times = frame["ts"].dt.strftime("%H:%M").tolist()
    assert times[0] == "09:31" and times[119] == "11:30"
    assert times[120] == "13:01" and times[-1] == "15:00"
    assert not any("11:31" <= t <= "13:00" for t in times)
    assert len(set(times)) == 240


def test_sixty_minute_bars_stamped_at_the_end(provider):
    frame = provider.fetch(SYMBOL, "2024-01-02", "2024-01-02", "60m")
    assert frame["ts"].dt.strftime("%H:%M").tolist() == ["10:30", "11:30", "14:00", "15:00"]


def test_intraday_holiday_has_no_bars(provider):
    frame = provider.fetch(SYMBOL, "2024-04-30", "2024-05-02", "60m")
    assert sorted(set(days(frame))) == ["2024-04-30", "2024-05-02"]


def test_weekly_bars_aggregate_daily_bars(provider):
    weekly = provider.fetch(SYMBOL, "2025-09-01", "2025-10-12", "1w")
    daily = provider.fetch(SYMBOL, "2025-09-01", "2025-10-12", "1d")
    # The week of 29 Sep 2025 ends on Tuesday 30 Sep (1-3 Oct are holidays).
    assert days(weekly) == [
        "2025-09-05", "2025-09-12", "2025-09-19", "2025-09-26", "2025-09-30", "2025-10-10",
    ]
    week = pd.DatetimeIndex(daily["ts"]).to_period("W")
    for (_, group), (_, bar) in zip(daily.groupby(week), weekly.iterrows()):
        assert bar["ts"] == group["ts"].iloc[-1]
        assert bar["open"] == group["open"].iloc[0]
        assert bar["high"] == group["high"].max()
        assert bar["low"] == group["low"].min()
        assert bar["close"] == group["close"].iloc[-1]
        assert bar["volume"] == group["volume"].sum()
        assert bar["amount"] == pytest.approx(group["amount"].sum())


def test_weekly_bar_is_complete_even_when_the_window_starts_midweek(provider):
    whole = provider.fetch(SYMBOL, "2024-01-08", "2024-01-12", "1w")
    partial = provider.fetch(SYMBOL, "2024-01-10", "2024-01-12", "1w")
    pd.testing.assert_frame_equal(whole, partial)
    # A window ending before the week's last trading day does not include that week.
    assert provider.fetch(SYMBOL, "2024-01-08", "2024-01-11", "1w").empty


def test_monthly_bars_stamped_on_last_trading_day(provider):
    monthly = provider.fetch(SYMBOL, "2024-01-01", "2024-06-30", "1M")
    daily = provider.fetch(SYMBOL, "2024-01-01", "2024-06-30", "1d")
    # March 2024 ends on a Sunday, June on a Sunday: stamped on the Fridays before.
    assert days(monthly) == [
        "2024-01-31", "2024-02-29", "2024-03-29", "2024-04-30", "2024-05-31", "2024-06-28",
    ]
    month = pd.DatetimeIndex(daily["ts"]).to_period("M")
    for (_, group), (_, bar) in zip(daily.groupby(month), monthly.iterrows()):
        assert bar["open"] == group["open"].iloc[0]
        assert bar["high"] == group["high"].max()
        assert bar["low"] == group["low"].min()
        assert bar["close"] == group["close"].iloc[-1]
        assert bar["volume"] == group["volume"].sum()


@pytest.mark.parametrize("freq", ["1d", "1w", "1M", "1m", "15m"])
@pytest.mark.parametrize("adjust", ["none", "qfq", "hfq"])
def test_ohlc_consistent_and_whole_lots(provider, freq, adjust):
    end = "2024-01-10" if freq.endswith("m") and freq != "1M" else "2024-12-31"
    frame = provider.fetch("000001.SZ", "2024-01-01", end, freq, adjust)
    assert len(frame) > 0
    assert (frame["high"] >= frame[["open", "close"]].max(axis=1)).all()
    assert (frame["low"] <= frame[["open", "close"]].min(axis=1)).all()
    assert (frame["low"] > 0).all()
    assert (frame["volume"] > 0).all() and (frame["volume"] % 100 == 0).all()
    assert (frame["amount"] > 0).all()


def test_adjustments_scale_prices_not_calendar(provider):
    none = provider.fetch(SYMBOL, "2024-01-01", "2024-03-31", adjust="none")
    qfq = provider.fetch(SYMBOL, "2024-01-01", "2024-03-31", adjust="qfq")
    hfq = provider.fetch(SYMBOL, "2024-01-01", "2024-03-31", adjust="hfq")
    assert days(none) == days(qfq) == days(hfq)
    assert (qfq["close"] <= none["close"]).all() and (hfq["close"] >= none["close"]).all()
    assert none["volume"].tolist() == qfq["volume"].tolist()


# --- simulated network -----------------------------------------------------------------------


def test_fail_option_raises_permanent_error():
    p = SyntheticProvider(fail="000001.SZ,AAPL")
    with pytest.raises(PermanentProviderError, match="000001.SZ") as info:
        p.fetch("000001.SZ", "2024-01-01", "2024-01-31")
    assert info.value.symbol == "000001.SZ"
    assert not isinstance(info.value, TransientProviderError)
    assert len(p.fetch(SYMBOL, "2024-01-01", "2024-01-31")) > 0


def test_empty_option_gives_no_bars():
    p = SyntheticProvider(empty="000001.SZ")
    frame = p.fetch("000001.SZ", "2024-01-01", "2024-01-31")
    assert frame.empty and "close" in frame.columns
    bars, rejected = normalise(frame)
    assert len(bars) == 0 and rejected == {}
    assert len(p.fetch(SYMBOL, "2024-01-01", "2024-01-31")) > 0


def outcomes(provider, symbol, calls):
    result = []
    for _ in range(calls):
        try:
            provider.fetch(symbol, "2024-01-02", "2024-01-05")
            result.append("ok")
        except TransientProviderError as exc:
            assert exc.symbol == symbol
            result.append("reset")
    return result


def test_flaky_is_deterministic_for_a_seed():
    first = outcomes(SyntheticProvider(seed=3, flaky=0.5), SYMBOL, 40)
    again = outcomes(SyntheticProvider(seed=3, flaky=0.5), SYMBOL, 40)
    assert first == again
    assert 5 <= first.count("reset") <= 35  # about half
    other = outcomes(SyntheticProvider(seed=4, flaky=0.5), SYMBOL, 40)
    assert other != first


def test_flaky_extremes():
    assert outcomes(SyntheticProvider(flaky=1.0), SYMBOL, 5) == ["reset"] * 5
    assert outcomes(SyntheticProvider(flaky=0.0), SYMBOL, 5) == ["ok"] * 5


def test_flaky_message_counts_calls():
    p = SyntheticProvider(flaky=1.0)
    for call in (1, 2):
        with pytest.raises(TransientProviderError, match=f"call {call}\\)"):
            p.fetch(SYMBOL, "2024-01-02", "2024-01-05")


def test_call_log_one_line_per_call(tmp_path):
    log = tmp_path / "calls.log"
    p = SyntheticProvider(call_log=str(log), fail="AAPL")
    p.fetch(SYMBOL, "2024-01-02", "2024-01-05")
    p.fetch("000001.SZ", "2024-01-02", "2024-01-05", "5m")
    p.fetch(SYMBOL, "2024-01-02", "2024-01-05")
    with pytest.raises(PermanentProviderError):
        p.fetch("AAPL", "2024-01-02", "2024-01-05")
    window = "2024-01-02 2024-01-05"
    assert log.read_text(encoding="utf-8").splitlines() == [
        f"{SYMBOL} {window}", f"000001.SZ {window}", f"{SYMBOL} {window}", f"AAPL {window}"
    ]


def test_call_log_survives_pickling(tmp_path):
    log = tmp_path / "calls.log"
    p = pickle.loads(pickle.dumps(SyntheticProvider(call_log=str(log))))
    p.fetch(SYMBOL, "2024-01-02", "2024-01-05")
    assert log.read_text(encoding="utf-8") == f"{SYMBOL} 2024-01-02 2024-01-05\n"


# --- symbols and options ---------------------------------------------------------------------


@pytest.mark.parametrize("universe", [0, 1, 5, 100, 1001])
def test_list_symbols(universe):
    listed = SyntheticProvider(universe=universe).list_symbols()
    assert len(listed) == len(set(listed)) == universe
    assert all(s.endswith((".SH", ".SZ")) for s in listed)


def test_list_symbols_interleaves_exchanges():
    assert SyntheticProvider(universe=5).list_symbols() == [
        "600000.SH", "000001.SZ", "600001.SH", "000002.SZ", "600002.SH",
    ]
    assert len(SyntheticProvider().list_symbols()) == 100


def test_options_coerced_from_strings():
    p = get_provider("synthetic", seed="5", flaky="0.1", latency="0", universe="3")
    assert (p.seed, p.flaky, p.latency, p.universe) == (5, 0.1, 0.0, 3)
    assert isinstance(p.flaky, float) and isinstance(p.seed, int)
    assert p == SyntheticProvider(seed=5, flaky=0.1, universe=3)


@pytest.mark.parametrize("option, value", [("seed", "x"), ("flaky", "often"), ("seed", 2.5)])
def test_options_of_wrong_type(option, value):
    with pytest.raises(InvalidOptionError, match=f"Option {option}=") as info:
        SyntheticProvider(**{option: value})
    assert info.value.option == option


def test_unknown_option_lists_known_ones():
    with pytest.raises(InvalidOptionError) as info:
        SyntheticProvider(sed=1)
    message = str(info.value)
    assert "Unknown option(s) sed for provider 'synthetic'" in message
    assert ("known: call_log, crash, empty, fail, flaky, hang, jitter, latency, latency_dist, "
            "seed, slow_factor, slow_worker, universe") in message
    assert info.value.option == "sed"


def test_pickling_keeps_options():
    p = SyntheticProvider(seed=9, fail="AAPL", empty="MSFT", flaky=0.25, universe=7)
    copy = pickle.loads(pickle.dumps(p))
    assert type(copy) is SyntheticProvider
    assert copy.config == p.config
    assert copy.given_options() == {
        "seed": 9, "fail": "AAPL", "empty": "MSFT", "flaky": 0.25, "universe": 7,
    }
    assert repr(copy) == repr(p)
    with pytest.raises(PermanentProviderError):
        copy.fetch("AAPL", "2024-01-02", "2024-01-05")


def test_unknown_attribute_is_an_attribute_error(provider):
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        provider.nope


def test_check_accepts_every_freq_and_adjust(provider):
    for freq in Freq:
        for adjust in Adjust:
            provider.check(freq=freq, adjust=adjust, start=pd.Timestamp("2024-01-01"),
                           end=pd.Timestamp("2024-01-02"))


def test_base_provider_cannot_list_symbols_by_default():
    from kdist.providers import Provider

    class Quiet(Provider):
        name = "quiet"

    with pytest.raises(UsageError, match="cannot list its symbols"):
        Quiet().list_symbols()


# --- conformance -----------------------------------------------------------------------------


class TestConformance(ProviderConformance):
    symbol = SYMBOL
    start, end = "2024-01-02", "2024-01-31"
    empty_window = ("2024-01-06", "2024-01-07")  # a weekend
    unknown_symbol = None  # every symbol has bars

    @pytest.fixture
    def provider(self, provider):  # the module's provider fixture
        return provider
