"""Tests of kdist.actions: the reference price, the factors and the adjustment, on answers
worked out by hand from the exchanges' rule and baostock's published example."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from kdist.actions import (
    COLUMNS,
    EVENT_COLUMNS,
    NO_EVENT,
    adjust_prices,
    empty_actions,
    hfq_factors,
    hfq_steps,
    normalise_actions,
    reference_price,
)
from kdist.errors import DataError

SYMBOL = "600000.SH"


def stamps(*days) -> np.ndarray:
    return np.array(days, "datetime64[us]")


# --- the reference price (SSE rule) ----------------------------------------------------------


def test_reference_price_of_cash_and_bonus_shares():
    # Close 10.00, 10派2元送3股: cash 0.2 and bonus 0.3 per share.
    assert reference_price(10.0, cash=0.2, bonus=0.3) == pytest.approx((10 - 0.2) / 1.3)
    assert reference_price(10.0, cash=0.2, bonus=0.3) == pytest.approx(7.538461538)
    assert reference_price(10.0, cash=0.2) == pytest.approx(9.8)
    assert reference_price(10.0, bonus=1.0) == pytest.approx(5.0)  # 10转10 halves it


def test_reference_price_of_a_rights_issue():
    # 10配3 at 6.00 on a close of 10.00: (10 + 6 * 0.3) / 1.3.
    assert reference_price(10.0, rights=0.3, rights_price=6.0) == pytest.approx(11.8 / 1.3)
    # With 10派2送3 on the same day: (10 - 0.2 + 1.8) / (1 + 0.3 + 0.3) = 7.25.
    assert reference_price(10.0, 0.2, 0.3, 0.3, 6.0) == pytest.approx(7.25)
    # Rights priced at the close change nothing.
    assert reference_price(10.0, rights=0.3, rights_price=10.0) == pytest.approx(10.0)


def test_reference_price_of_splits():
    assert reference_price(30.0, split=2.0) == pytest.approx(15.0)
    assert reference_price(30.0, split=0.1) == pytest.approx(300.0)  # 1-for-10 reverse split
    # A split after a dividend: (20 - 1) / 2.
    assert reference_price(20.0, cash=1.0, split=2.0) == pytest.approx(9.5)


def test_reference_price_takes_arrays():
    got = reference_price(np.array([10.0, 20.0]), np.array([0.2, 0.0]), np.array([0.3, 0.0]),
                          0.0, 0.0, np.array([1.0, 2.0]))
    np.testing.assert_allclose(got, [9.8 / 1.3, 10.0])


def test_hfq_steps_and_factors():
    assert hfq_steps(10.0, cash=0.2, bonus=0.3) == pytest.approx(10 / (9.8 / 1.3))
    assert hfq_steps(10.0, cash=0.2, bonus=0.3) == pytest.approx(1.326530612)
    assert hfq_steps(30.0, split=2.0) == pytest.approx(2.0)
    events = pd.DataFrame({"ex_date": pd.to_datetime(["2020-06-01", "2021-06-01", "2022-06-01"]),
                           "cash": [0.2, 0.0, 0.5], "bonus": [0.3, 0.0, 0.0],
                           "rights": [0.0, 0.0, 0.0], "rights_price": [0.0, 0.0, 0.0],
                           "split": [1.0, 2.0, 1.0]})
    prev = np.array([10.0, 30.0, 10.0])
    steps = [10 / (9.8 / 1.3), 2.0, 10 / 9.5]
    np.testing.assert_allclose(hfq_factors(events, prev), np.cumprod(steps))
    assert hfq_factors(events, prev)[-1] == pytest.approx(1.326530612 * 2 * 1.052631579)


# --- normalise_actions -----------------------------------------------------------------------


def test_normalise_fills_missing_columns_and_sorts():
    frame = pd.DataFrame({"ex_date": ["2024-07-01", "2023-06-15"], "cash": [0.3, 0.25]})
    got = normalise_actions(frame, symbol=SYMBOL)
    assert list(got.columns) == list(COLUMNS)
    assert got["ex_date"].tolist() == [pd.Timestamp("2023-06-15"), pd.Timestamp("2024-07-01")]
    assert got["cash"].tolist() == [0.25, 0.3]
    for column in EVENT_COLUMNS[1:]:
        assert (got[column] == NO_EVENT[column]).all(), column
    assert got["factor"].isna().all()
    assert str(got["ex_date"].dtype) == "datetime64[us]"


def test_normalise_takes_vendor_forms_of_dates():
    ex = pd.to_datetime(["2024-07-01 09:30", "2023-06-15 00:00"]).tz_localize("Asia/Shanghai")
    frame = pd.DataFrame({"ex_date": ex, "cash": ["0.3", "0.25"]})  # vendors give strings
    got = normalise_actions(frame, symbol=SYMBOL)
    assert got["ex_date"].tolist() == [pd.Timestamp("2023-06-15"), pd.Timestamp("2024-07-01")]
    assert got["cash"].tolist() == [0.25, 0.3]


def test_normalise_combines_the_rows_of_one_ex_date():
    # A dividend and a bonus issue from two vendor calls, a split in two steps, a rights
    # issue, and a factor given once: one row.
    frame = pd.DataFrame({
        "ex_date": ["2024-07-01", "2024-07-01", "2024-07-01", "2024-05-02"],
        "cash": [0.2, 0.0, 0.1, 0.5],
        "bonus": [0.0, 0.3, 0.0, 0.0],
        "rights": [0.0, 0.0, 0.2, 0.0],
        "rights_price": [0.0, 0.0, 6.5, 0.0],
        "split": [2.0, 1.5, 1.0, 1.0],
        "factor": [np.nan, 3.25, 9.0, 1.05],
    })
    got = normalise_actions(frame, symbol=SYMBOL)
    assert len(got) == 2
    first, second = got.iloc[0], got.iloc[1]
    assert first["ex_date"] == pd.Timestamp("2024-05-02") and first["cash"] == 0.5
    assert second["ex_date"] == pd.Timestamp("2024-07-01")
    assert second["cash"] == pytest.approx(0.3)  # added
    assert second["bonus"] == pytest.approx(0.3)
    assert second["rights"] == pytest.approx(0.2) and second["rights_price"] == 6.5
    assert second["split"] == pytest.approx(3.0)  # multiplied
    assert second["factor"] == 3.25  # the first one given


def test_normalise_drops_rows_without_event_or_factor():
    frame = pd.DataFrame({
        "ex_date": ["2024-07-01", "2024-08-01", "2024-09-02", "2024-10-08"],
        "cash": [0.0, 0.2, 0.0, np.nan],
        "split": [1.0, 1.0, 1.0, np.nan],
        "factor": [np.nan, np.nan, 1.2, np.nan],
    })
    got = normalise_actions(frame, symbol=SYMBOL)
    # The first and last rows say nothing; a row with a factor alone is kept.
    assert got["ex_date"].tolist() == [pd.Timestamp("2024-08-01"), pd.Timestamp("2024-09-02")]
    assert got["factor"].iloc[1] == 1.2


@pytest.mark.parametrize("frame", [None, pd.DataFrame(), pd.DataFrame(columns=["ex_date"])])
def test_normalise_of_nothing_is_an_empty_canonical_frame(frame):
    got = normalise_actions(frame, symbol=SYMBOL)
    assert len(got) == 0 and list(got.columns) == list(COLUMNS)
    pd.testing.assert_frame_equal(got, empty_actions())
    assert str(got["ex_date"].dtype) == "datetime64[us]"
    assert all(str(got[c].dtype) == "float64" for c in COLUMNS[1:])


@pytest.mark.parametrize("column, value, what", [
    ("cash", -0.1, "is negative"),
    ("bonus", -0.3, "is negative"),
    ("rights", -0.1, "is negative"),
    ("rights_price", -5.0, "is negative"),
    ("split", 0.0, "is not positive"),
    ("split", -2.0, "is not positive"),
    ("factor", 0.0, "is not positive"),
])
def test_normalise_refuses_impossible_numbers_naming_symbol_and_date(column, value, what):
    frame = pd.DataFrame({"ex_date": ["2024-05-02", "2024-07-01"], "cash": [0.1, 0.2]})
    frame[column] = [1.0 if column in ("split", "factor") else 0.0, value]
    with pytest.raises(DataError) as info:
        normalise_actions(frame, symbol=SYMBOL)
    message = str(info.value)
    assert SYMBOL in message and "2024-07-01" in message and column in message, message
    assert what in message, message
    assert info.value.symbol == SYMBOL and info.value.column == column
    copy = pickle.loads(pickle.dumps(info.value))  # Dask sends worker errors back
    assert str(copy) == message


@pytest.mark.parametrize("bad", ["not a date", "2024-13-45", None])
def test_normalise_refuses_a_bad_ex_date_naming_symbol_and_value(bad):
    frame = pd.DataFrame({"ex_date": ["2024-05-02", bad], "cash": [0.1, 0.2]})
    with pytest.raises(DataError) as info:
        normalise_actions(frame, symbol=SYMBOL)
    message = str(info.value)
    assert message.startswith(f"{SYMBOL}: corporate action with ex_date ") and "no date" in message
    if bad is not None:  # a missing date is quoted as pandas holds it (None or nan)
        assert repr(bad) in message, message
    assert info.value.symbol == SYMBOL and info.value.column == "ex_date"


def test_normalise_refuses_a_frame_without_ex_dates():
    with pytest.raises(DataError, match=f"{SYMBOL}: corporate actions without an ex_date"):
        normalise_actions(pd.DataFrame({"cash": [0.1]}), symbol=SYMBOL)


# --- adjust_prices -----------------------------------------------------------------------------


EX = stamps("2024-03-01", "2024-06-03")
FACTORS = np.array([1.5, 3.0])
TS = stamps("2024-02-29", "2024-03-01", "2024-03-01T09:31", "2024-05-31", "2024-06-03T15:00",
            "2024-07-01")
RAW = np.array([10.0, 10.0, 10.0, 10.0, 10.0, 10.0])


def test_hfq_multiplies_by_the_factor_in_force():
    got = adjust_prices(TS, RAW, EX, FACTORS, "hfq")
    # Before the first ex-date 1; from the ex-date's midnight on (its intraday bars too).
    np.testing.assert_allclose(got, [10.0, 15.0, 15.0, 15.0, 30.0, 30.0])


def test_qfq_divides_by_the_latest_factor_or_the_anchors():
    np.testing.assert_allclose(adjust_prices(TS, RAW, EX, FACTORS, "qfq"),
                               [10 / 3, 5.0, 5.0, 5.0, 10.0, 10.0])
    # Anchored between the ex-dates: bars up to the anchor's ex-date are unchanged...
    np.testing.assert_allclose(adjust_prices(TS, RAW, EX, FACTORS, "qfq", anchor="2024-05-31"),
                               [10 / 1.5, 10.0, 10.0, 10.0, 20.0, 20.0])
    # ... an anchor on an ex-date takes that ex-date's factor, one before all is 1 (as hfq).
    np.testing.assert_allclose(adjust_prices(TS, RAW, EX, FACTORS, "qfq", anchor="2024-06-03"),
                               adjust_prices(TS, RAW, EX, FACTORS, "qfq"))
    np.testing.assert_allclose(adjust_prices(TS, RAW, EX, FACTORS, "qfq", anchor="2020-01-01"),
                               adjust_prices(TS, RAW, EX, FACTORS, "hfq"))


def test_adjust_prices_of_several_columns_and_without_events():
    prices = np.stack([RAW, RAW * 2], axis=1)
    got = adjust_prices(TS, prices, EX, FACTORS, "hfq")
    np.testing.assert_allclose(got[:, 1], 2 * adjust_prices(TS, RAW, EX, FACTORS, "hfq"))
    none = np.array([], "datetime64[us]")
    for adjust in ("qfq", "hfq"):
        np.testing.assert_array_equal(adjust_prices(TS, RAW, none, np.array([]), adjust), RAW)


def test_adjust_prices_refuses_an_unknown_adjustment():
    with pytest.raises(ValueError, match="'qfq' or 'hfq', not 'none'"):
        adjust_prices(TS, RAW, EX, FACTORS, "none")


def test_baostocks_example_fore_is_back_over_the_latest_back():
    # baostock's wiki: 2015-06-23 back 6.295967 fore 0.663792, 2017-05-25 back 9.385732 fore
    # 0.989551. Both give the same latest back factor (a later ex-date): fore = back / latest.
    latest = 6.295967 / 0.663792
    assert 9.385732 / 0.989551 == pytest.approx(latest, rel=2e-6)  # 6 decimals each
    ex = stamps("2015-06-23", "2017-05-25", "2018-07-01")
    factors = np.array([6.295967, 9.385732, latest])
    ts = stamps("2015-06-23", "2017-05-25")
    fore = adjust_prices(ts, np.ones(2), ex, factors, "qfq")
    np.testing.assert_allclose(fore, [0.663792, 0.989551], atol=1.5e-6)
    back = adjust_prices(ts, np.ones(2), ex, factors, "hfq")
    np.testing.assert_array_equal(back, [6.295967, 9.385732])
