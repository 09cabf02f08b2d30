"""The synthetic provider: deterministic bars, its calendar and sessions, its corporate actions
and vendor-adjusted bars, simulated failures."""

from __future__ import annotations

import hashlib
import pickle

import numpy as np
import pandas as pd
import pytest

from kdist.bars import resample
from kdist.actions import COLUMNS, EVENT_COLUMNS, adjust_prices, hfq_factors, reference_price
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
    none = provider.fetch(SYMBOL, "2024-01-01", "2024-09-30", adjust="none")
    qfq = provider.fetch(SYMBOL, "2024-01-01", "2024-09-30", adjust="qfq")
    hfq = provider.fetch(SYMBOL, "2024-01-01", "2024-09-30", adjust="hfq")
    assert days(none) == days(qfq) == days(hfq)
    # A dividend on 5 July: qfq lowers the bars before it, hfq raises every bar.
    before = none["ts"] < "2024-07-05"
    assert (qfq["close"][before] < none["close"][before]).all()
    assert (qfq["close"][~before] == none["close"][~before]).all()
    assert (hfq["close"] > none["close"]).all()
    for column in ("volume", "amount"):  # prices only, as A-share vendors adjust
        assert none[column].tolist() == qfq[column].tolist() == hfq[column].tolist()


# --- corporate actions -----------------------------------------------------------------------

#: seed 7 with actions=False: the bars served before there were corporate actions. A digest of
#: rounded prices and volumes (numpy's exp may differ in the last bit; 2 dp hide that).
RAW_PATH_DIGEST = "054187989b3d2c21"
PRICES = ["open", "high", "low", "close"]
HISTORY = ("1990-01-01", "2100-12-31")


def digest(provider) -> str:
    """sha256 of daily, 5-minute, weekly and monthly bars and a fetch_many, 16 hex digits."""
    hashed = hashlib.sha256()
    for symbol, start, end, freq in [("600000.SH", "1990-01-01", "2024-12-31", "1d"),
                                     ("000001.SZ", "2024-06-03", "2024-06-07", "5m"),
                                     ("AAPL", "2000-01-01", "2030-12-31", "1w"),
                                     ("600519.SH", "1995-01-01", "2024-12-31", "1M")]:
        frame = provider.fetch(symbol, start, end, freq)
        hashed.update(frame["ts"].to_numpy("datetime64[us]").astype("int64").tobytes())
        hashed.update(frame[PRICES + ["volume", "amount"]].to_numpy("float64").tobytes())
    many = provider.fetch_many(["600000.SH", "000002.SZ"], ["2020-01-01", "2022-03-04"],
                               "2024-12-31", "1d")
    hashed.update(many[PRICES + ["volume", "amount"]].to_numpy("float64").tobytes())
    return hashed.hexdigest()[:16]


@pytest.fixture(scope="module")
def universe():
    return SyntheticProvider(universe=200).list_symbols()


@pytest.fixture(scope="module")
def history(universe):
    """Raw daily bars of 1990-2100 and the actions of 50 symbols, seed 7: ``{symbol: (bars,
    actions)}``."""
    p = SyntheticProvider(seed=7)
    symbols = universe[:50]
    bars = p.fetch_many(symbols, [HISTORY[0]] * len(symbols), HISTORY[1])
    return {s: (group.drop(columns="symbol").reset_index(drop=True), p.actions(s, *HISTORY))
            for s, group in bars.groupby("symbol", observed=True, sort=False)}


def close_before(bars: pd.DataFrame, ex_dates) -> np.ndarray:
    """The raw close of the last bar before each ex-date."""
    at = np.searchsorted(bars["ts"].to_numpy(), pd.to_datetime(ex_dates).to_numpy())
    assert (at > 0).all()
    return bars["close"].to_numpy()[at - 1]


def test_without_actions_the_bars_are_those_of_before():
    p = SyntheticProvider(seed=7, actions=False)
    assert digest(p) == RAW_PATH_DIGEST
    assert not p.serves_actions and p.actions(SYMBOL, *HISTORY) is None
    raw = p.fetch(SYMBOL, "2020-01-01", "2024-12-31")
    for adjust in ("qfq", "hfq"):  # no events, nothing to adjust
        pd.testing.assert_frame_equal(p.fetch(SYMBOL, "2020-01-01", "2024-12-31", adjust=adjust),
                                      raw)
    on = SyntheticProvider(seed=7)
    assert on.serves_actions and digest(on) != RAW_PATH_DIGEST  # the same walk, gapped
    assert get_provider("synthetic", seed=7, actions="false") == p
    assert repr(p) == "SyntheticProvider(seed=7, actions=False)"


def test_events_look_like_a_shares(history):
    years = 2100 - 1991 + 1
    every = pd.concat([a.assign(symbol=s) for s, (_, a) in history.items()])
    per_year = lambda mask: mask.sum() / (len(history) * years)  # noqa: E731
    assert 0.7 < per_year(every["cash"] > 0) < 0.9  # a dividend most years
    assert 0.06 < per_year(every["bonus"] > 0) < 0.14  # bonus shares every several years
    assert 0.01 < per_year(every["split"] != 1) < 0.04  # a split once in a few decades
    assert 0.005 < per_year(every["rights"] > 0) < 0.04  # rights issues, rarely
    assert set(every["bonus"]) <= {0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 1.0}
    assert set(every["split"]) == {1.0, 2.0} and set(every["rights"]) == {0.0, 0.1, 0.2, 0.3}
    # Announced per 10 shares to 0.01 yuan: 0.001 per share.
    np.testing.assert_allclose(every["cash"] * 1000, np.round(every["cash"] * 1000), atol=1e-6)
    for symbol, (bars, actions) in history.items():
        ex = actions["ex_date"]
        assert ex.min() >= pd.Timestamp("1991-01-01") and ex.max() <= pd.Timestamp("2100-12-31")
        assert ex.isin(bars["ts"]).all(), f"{symbol}: an ex-date that is no trading day"
        prev = close_before(bars, ex)
        paid = actions["cash"] > 0
        yields = (actions["cash"] / prev)[paid]
        assert yields.between(0.0045, 0.0405).all(), f"{symbol}: yields {yields.describe()}"
        rights = actions["rights"] > 0
        assert (actions["rights_price"][rights] < prev[rights]).all()  # below the market
        assert (actions["rights_price"][~rights] == 0).all()


def test_raw_bars_gap_at_ex_dates_by_the_reference_price(history):
    misses, drops = [], []
    for bars, actions in history.values():
        prev = close_before(bars, actions["ex_date"])
        ref = reference_price(prev, *(actions[c].to_numpy() for c in EVENT_COLUMNS))
        at = np.searchsorted(bars["ts"].to_numpy(), actions["ex_date"].to_numpy())
        misses.append(np.log(bars["open"].to_numpy()[at] / ref))
        big = (actions["split"] != 1) | (actions["bonus"] >= 0.5)
        drops.append((bars["open"].to_numpy()[at] / prev)[big.to_numpy()])
    misses, drops = np.concatenate(misses), np.concatenate(drops)
    # The open of an ex-date is the reference price give or take one night's move...
    assert abs(misses.mean()) < 0.002 and misses.std() < 0.02 and np.abs(misses).max() < 0.1
    # ... so raw bars really gap: a split or 10送5 and more takes a third or more off.
    assert len(drops) > 20 and (drops < 0.75).all()


def test_raw_prices_stay_realistic_over_the_whole_calendar(history):
    lows = [bars["low"].min() for bars, _ in history.values()]
    highs = [bars["high"].max() for bars, _ in history.values()]
    assert min(lows) > 1.0 and max(highs) < 1000.0
    # No drift over the decades, though the events create ever more shares.
    decade = {s: bars.groupby(bars["ts"].dt.year // 10)["close"].median()
              for s, (bars, _) in history.items()}
    drift = [np.log(d.loc[209] / d.loc[199]) for d in decade.values()]
    assert abs(np.mean(drift)) < 0.15


def test_vendor_factor_is_the_gaps_and_the_formula_gives_it_to_rounding(history):
    """The vendor's factor is its raw bars' own gaps; the ex-rights formula on the reported
    (rounded) figures and the raw closes gives the same steps to within that rounding, as a
    real vendor's published factor and figures agree."""
    for symbol, (bars, actions) in history.items():
        steps = actions["factor"].to_numpy() / np.r_[1.0, actions["factor"].to_numpy()[:-1]]
        expected = hfq_factors(actions, close_before(bars, actions["ex_date"]))
        formula = expected / np.r_[1.0, expected[:-1]]
        np.testing.assert_allclose(steps, formula, rtol=2e-3, err_msg=symbol)
        assert (np.diff(actions["factor"]) > 0).all()  # every event raises the factor
        # hfq bars are the walk: the raw gap at an ex-date is undone by the factor's step.
        hfq = adjust_prices(bars["ts"], bars["close"], actions["ex_date"], actions["factor"],
                            "hfq")
        jumps = np.abs(np.diff(np.log(hfq)))
        at = np.searchsorted(bars["ts"].to_numpy(), actions["ex_date"].to_numpy())
        at = at[(at > 0) & (at < len(bars))]
        assert jumps[at - 1].max() < 0.12, symbol  # a day's move, not a 2-for-1 split's


def test_actions_from_the_one_in_force_at_the_start(provider):
    """The ex-dates from the one in force at the window's start to its end, with their
    factors; the figures of the window's own, the one before as a factor alone."""
    whole = provider.actions(SYMBOL, *HISTORY)
    figures = ["cash", "bonus", "rights", "rights_price", "split"]
    for start, end in [("2024-01-01", "2024-12-31"), ("1990-01-01", "2000-06-30"),
                       ("2031-05-05", "2031-05-05"), ("1980-01-01", "1990-12-31")]:
        got = provider.actions(SYMBOL, start, end)
        before = whole["ex_date"] < pd.Timestamp(start)
        since = whole["ex_date"][before].max() if before.any() else whole["ex_date"].min()
        expected = whole[(whole["ex_date"] <= pd.Timestamp(end))
                         & (whole["ex_date"] >= since)].reset_index(drop=True)
        assert (got["ex_date"] < pd.Timestamp(start)).sum() <= 1
        pd.testing.assert_frame_equal(got[["ex_date", "factor"]], expected[["ex_date", "factor"]])
        inside = (got["ex_date"] >= pd.Timestamp(start)).to_numpy()
        pd.testing.assert_frame_equal(got[inside], expected[inside])
        assert (got.loc[~inside, figures] == [0.0, 0.0, 0.0, 0.0, 1.0]).all().all()
    assert provider.actions(SYMBOL, "1980-01-01", "1990-12-31").empty  # listed 1990, events 1991 on
    pd.testing.assert_frame_equal(SyntheticProvider(seed=7).actions(SYMBOL, *HISTORY), whole)
    other = SyntheticProvider(seed=8).actions(SYMBOL, *HISTORY)
    assert other["ex_date"].tolist() != whole["ex_date"].tolist()


def test_actions_are_planned_once_per_symbol_and_seed(provider, monkeypatch):
    from kdist.providers import synthetic

    computed = []
    compute = synthetic._compute_plans
    monkeypatch.setattr(synthetic, "_compute_plans",
                        lambda keys, year: computed.extend(keys) or compute(keys, year))
    provider.actions("CACHED.SH", "2024-01-01", "2024-12-31")
    assert len(computed) == 1
    # Planned once per symbol, seed and last year asked, whichever call asks.
    for end in ("2024-06-30", "2024-12-31", "2024-02-01"):
        provider.actions("CACHED.SH", "2020-01-01", end)
    provider.fetch_many(["CACHED.SH"], ["2020-01-01"], "2024-12-31", adjust="qfq")
    provider.actions_many(["CACHED.SH", "OTHER.SZ"], ["2020-01-01"] * 2, "2024-12-31")
    assert len(computed) == 2  # OTHER.SZ only
    # A later year's plan agrees with the earlier one where both reach.
    early = provider.actions("CACHED.SH", "1990-01-01", "2024-12-31")
    late = provider.actions("CACHED.SH", "1990-01-01", "2030-12-31")
    pd.testing.assert_frame_equal(late[late["ex_date"] <= "2024-12-31"], early)


def test_actions_many_gives_what_actions_gives(provider):
    from kdist.actions import normalise_actions

    symbols = provider.list_symbols()[:30] + ["300999.SZ"]
    provider = type(provider)(**{**provider.given_options(), "empty": "300999.SZ"})
    many = normalise_actions(provider.actions_many(symbols, ["2015-01-01"] * 31, "2024-12-31"))
    one = pd.concat([provider.actions(s, "2015-01-01", "2024-12-31").assign(symbol=s)
                     for s in symbols], ignore_index=True)
    one = one[["symbol", *one.columns[:-1]]].sort_values(["symbol", "ex_date"])
    pd.testing.assert_frame_equal(many, one.reset_index(drop=True).astype({"symbol": "str"}),
                                  check_exact=True)
    assert "300999.SZ" not in set(many["symbol"])
    failing = type(provider)(fail="000001.SZ")
    assert failing.actions_many(symbols, ["2015-01-01"] * 31, "2024-12-31") is None


@pytest.mark.parametrize("end", ["2024-12-31", "2024-07-05", "1995-03-10"])
def test_an_updates_actions_many_gives_what_actions_gives(end):
    """An update's short windows, each symbol from its own overlap day: most have no
    ex-date inside and get the one in force, computed for all of them together."""
    from kdist.actions import normalise_actions

    provider = SyntheticProvider(seed=5, empty="000002.SZ")
    symbols = SyntheticProvider(universe=400).list_symbols()

    def one_by_one(symbols, starts):
        one = pd.concat([provider.actions(s, start, end).assign(symbol=s)
                         for s, start in zip(symbols, starts)], ignore_index=True)
        one = one[["symbol", *one.columns[:-1]]].sort_values(["symbol", "ex_date"])
        return one.reset_index(drop=True).astype({"symbol": "str"})

    last = pd.Timestamp(end)
    starts = [last - pd.Timedelta(days=d) for d in np.arange(len(symbols)) % 9]
    many = normalise_actions(provider.actions_many(symbols, starts, end))
    pd.testing.assert_frame_equal(many, one_by_one(symbols, starts), check_exact=True)
    if end == "2024-07-05":  # the dividend season: both kinds of answer are in there
        assert 0 < (many["cash"] > 0).sum() < len(many)
    # A window that starts after it ends: the same answers, all together or one by one.
    late = last + pd.Timedelta(days=90)
    many = normalise_actions(provider.actions_many(symbols[:60], [late] * 60, end))
    pd.testing.assert_frame_equal(many, one_by_one(symbols[:60], [late] * 60), check_exact=True)


def test_actions_cost_the_blocks_before_the_windows_ex_dates_only(monkeypatch):
    from kdist.providers import synthetic

    computed = []
    bridge = synthetic._bridge

    def counting(keys, blocks, pins, ends):
        computed.append(len(blocks))
        return bridge(keys, blocks, pins, ends)

    monkeypatch.setattr(synthetic, "_bridge", counting)
    p = SyntheticProvider(seed=7)
    whole = p.actions(SYMBOL, "1990-01-01", "2100-12-31")
    every_block = (np.datetime64("2100-12-31") - np.datetime64("1990-01-01")).astype(int) // 128
    # One call, at most one block per ex-date (the day before it), not every block since 1990.
    assert len(computed) == 1 and computed[0] <= len(whole) < every_block / 2
    # A window's figures cost its own ex-dates' blocks; an update's few days none at all.
    p.actions(SYMBOL, "2020-01-01", "2024-12-31")
    inside = ((whole["ex_date"] >= "2020-01-01") & (whole["ex_date"] <= "2024-12-31")).sum()
    assert len(computed) == 2 and computed[1] <= inside
    p.actions(SYMBOL, "2024-12-24", "2024-12-31")
    assert len(computed) == 2

def test_actions_of_empty_and_failing_symbols():
    p = SyntheticProvider(empty="000001.SZ", fail="AAPL")
    got = p.actions("000001.SZ", *HISTORY)
    assert got.empty and list(got.columns) == list(COLUMNS)
    with pytest.raises(PermanentProviderError, match="AAPL"):
        p.actions("AAPL", *HISTORY)
    assert len(p.actions(SYMBOL, *HISTORY)) > 50


@pytest.mark.parametrize("freq", ["1d", "15m", "1w"])
def test_bars_with_actions_are_the_same_in_any_window_and_chunking(universe, freq):
    p = SyntheticProvider(seed=7)
    symbols = universe[:8]
    start, end, cuts = {"1d": ("1990-01-01", "2030-12-31", 7),
                        "15m": ("2024-05-01", "2024-08-31", 4),
                        "1w": ("1995-01-01", "2025-12-31", 5)}[freq]
    whole = p.fetch_many(symbols, [start] * len(symbols), end, freq)
    days = pd.date_range(start, end, periods=cuts + 1).normalize()
    for i, symbol in enumerate(symbols):
        parts = []
        for lo, hi in zip(days[:-1], days[1:]):
            lo = lo if lo == days[0] else lo + pd.Timedelta(days=1)
            parts.append(SyntheticProvider(seed=7).fetch(symbol, lo, hi, freq))
        expected = whole[whole["symbol"] == symbol].drop(columns="symbol").reset_index(drop=True)
        pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True), expected)
    # Each symbol from its own start, in one call: the same bars.
    starts = [str(d.date()) for d in days[:len(symbols) // 2]] * 2
    ragged = p.fetch_many(symbols, starts, end, freq)
    for symbol, lo in zip(symbols, starts):
        got = ragged[ragged["symbol"] == symbol].reset_index(drop=True)
        expected = whole[(whole["symbol"] == symbol) & (whole["ts"] >= lo)]
        pd.testing.assert_frame_equal(got, expected.reset_index(drop=True))


@pytest.mark.parametrize("freq, adjust, start, end", [
    ("1d", "none", "1991-03-01", "1996-05-01"),
    ("1d", "qfq", "2015-01-01", "2024-12-31"),
    ("1d", "hfq", "2024-12-31", "2024-12-31"),
    ("5m", "qfq", "2023-12-25", "2024-01-05"),
    ("1w", "none", "2010-01-01", "2025-03-01"),
    ("1M", "hfq", "2090-01-01", "2100-12-31"),
])
def test_bars_need_no_events_past_a_few_years_after_the_window(universe, monkeypatch, freq,
                                                               adjust, start, end):
    """Bars computed from the events up to a few years after the window (an update's few
    days need not compute a century of them) equal those from every year's."""
    import kdist.providers.synthetic as synthetic

    p = SyntheticProvider(seed=3)
    symbols = universe[:40]
    starts = [start] * len(symbols)
    bounded = p.fetch_many(symbols, starts, end, freq, adjust)
    monkeypatch.setattr(synthetic, "_events_through", lambda last: None)
    pd.testing.assert_frame_equal(bounded, p.fetch_many(symbols, starts, end, freq, adjust))
    # The bound is tight enough to matter: one year fewer than it takes changes bars.
    if end < "2090":
        monkeypatch.setattr(synthetic, "_events_through",
                            lambda last: int(str(last)[:4]) + 1)
        assert not bounded.equals(p.fetch_many(symbols, starts, end, freq, adjust))


def test_intraday_weekly_and_monthly_bars_gap_with_the_daily_ones(provider):
    actions = provider.actions(SYMBOL, *HISTORY)
    split = actions[actions["split"] == 2.0]["ex_date"].iloc[0]  # 12 Oct 2000 for seed 7
    lo, hi = split - pd.Timedelta(days=10), split + pd.Timedelta(days=25)
    daily = provider.fetch(SYMBOL, lo, hi).set_index("ts")
    before = daily.index[daily.index.get_loc(split) - 1]
    assert daily.loc[split, "open"] / daily.loc[before, "close"] == pytest.approx(0.5, abs=0.05)
    bars = provider.fetch(SYMBOL, before, split, "5m")
    for day, group in bars.groupby(bars["ts"].dt.normalize()):
        assert group["open"].iloc[0] == daily.loc[day, "open"]
        assert group["close"].iloc[-1] == daily.loc[day, "close"]
        assert group["low"].min() > 0.8 * daily.loc[day, "low"]
        assert group["high"].max() < 1.2 * daily.loc[day, "high"]
    for freq, period in [("1w", "W"), ("1M", "M")]:
        longer = provider.fetch(SYMBOL, lo, hi, freq).set_index("ts")
        for _, group in daily.groupby(daily.index.to_period(period)):
            if group.index[-1] in longer.index:
                bar = longer.loc[group.index[-1]]
                assert bar["open"] == group["open"].iloc[0]
                assert bar["close"] == group["close"].iloc[-1]
                assert bar["high"] == group["high"].max() and bar["low"] == group["low"].min()
                assert bar["volume"] == group["volume"].sum()


@pytest.mark.parametrize("start, end, freq", [
    ("1990-01-01", "2024-12-31", "1d"),
    ("2013-05-20", "2019-07-31", "1d"),
    ("2024-06-01", "2024-08-31", "15m"),
    ("2010-01-01", "2024-12-31", "1w"),
])
def test_vendor_qfq_and_hfq_are_the_raw_bars_adjusted_by_the_actions(universe, start, end, freq):
    p = SyntheticProvider(seed=7)

    def by_symbol(adjust, start=start, end=end):
        frame = p.fetch_many(universe, [start] * len(universe), end, freq, adjust)
        return {s: g.drop(columns="symbol").reset_index(drop=True)
                for s, g in frame.groupby("symbol", observed=True, sort=False)}

    adjusted = {a: by_symbol(a) for a in ("qfq", "hfq")}
    # Weeks are built from the adjusted days, as vendors build theirs.
    weekly, freq = freq == "1w", "1d" if freq == "1w" else freq
    if weekly:  # whole weeks: the days of the weeks stamped inside the window
        week = pd.Timedelta(days=7)
        raw = by_symbol("none", pd.Timestamp(start) - week, pd.Timestamp(end) + week)
    else:
        raw = by_symbol("none")
    assert len(raw) == len(universe)
    events_inside = 0
    for symbol, bars in raw.items():
        actions = p.actions(symbol, start, end)  # every event up to end: qfq's anchor is last
        events_inside += int((actions["ex_date"] >= pd.Timestamp(start)).sum())
        for adjust, frames in adjusted.items():
            expected = bars.copy()
            for column in PRICES:
                expected[column] = np.round(adjust_prices(
                    bars["ts"], bars[column], actions["ex_date"], actions["factor"], adjust), 2)
            if weekly:
                weeks = resample({c: expected[c].to_numpy() for c in expected}, Freq.WEEK)
                keep = (weeks["ts"] >= np.datetime64(start)) & (weeks["ts"] <= np.datetime64(end))
                expected = pd.DataFrame({c: v[keep] for c, v in weeks.items()})
            pd.testing.assert_frame_equal(frames[symbol], expected, obj=f"{symbol} {adjust}")
    assert events_inside > len(universe) // 2  # the windows hold ex-dates, not just anchors


def test_fetch_and_fetch_many_adjust_alike(universe):
    p = SyntheticProvider(seed=7)
    for adjust in ("qfq", "hfq"):
        many = p.fetch_many(universe[:5], ["2018-01-01"] * 5, "2024-07-31", "1d", adjust)
        for symbol in universe[:5]:
            got = many[many["symbol"] == symbol].drop(columns="symbol").reset_index(drop=True)
            pd.testing.assert_frame_equal(
                got, p.fetch(symbol, "2018-01-01", "2024-07-31", "1d", adjust))


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
    assert ("known: actions, call_log, crash, empty, fail, flaky, hang, jitter, latency, "
            "latency_dist, seed, slow_factor, slow_worker, universe") in message
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
    actions_window = ("2024-01-01", "2024-12-31")  # seed 7: a dividend on 5 July 2024

    @pytest.fixture
    def provider(self, provider):  # the module's provider fixture
        return provider


def test_a_big_universe_lists_valid_stock_codes():
    """Past 609999.SH and 009999.SZ the universe goes on through ChiNext, STAR and Beijing
    codes: 50,000 symbols (a global universe's size) are all stocks, none twice."""
    import kdist
    from kdist.schema import parse_symbols
    from kdist.securities import kind_of

    small = kdist.get_provider("synthetic", universe=6).list_symbols()
    assert small == ["600000.SH", "000001.SZ", "600001.SH", "000002.SZ", "600002.SH",
                     "000003.SZ"]
    symbols = kdist.get_provider("synthetic", universe=50_000).list_symbols()
    assert len(set(symbols)) == 50_000 and symbols[:6] == small
    assert symbols[19_999] == "300000.SZ" and symbols[-1] == "878000.BJ"
    valid, invalid = parse_symbols(symbols)
    assert invalid == [] and len(valid) == 50_000
    assert {k for s in symbols[::97] for k in kind_of(s)} == {"stock"}
    with pytest.raises(InvalidOptionError, match="at most 71,999"):
        kdist.get_provider("synthetic", universe=72_000).list_symbols()
