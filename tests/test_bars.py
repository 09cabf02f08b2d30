"""Tests of kdist.bars: longer bars equal pandas' own aggregation of the same shorter bars.

The synthetic and tdx providers resample with it; their own tests check the bars they serve.
Volumes and amounts are whole numbers here, so sums are exact in any order of addition.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kdist.bars import aggregate, period_keys, resample
from kdist.schema import BAR_COLUMNS, Freq

PERIODS = {Freq.WEEK: "W-SUN", Freq.MONTH: "M"}  # weeks run Monday to Sunday


def daily_bars(seed: int, n: int = 300) -> dict[str, np.ndarray]:
    """``n`` sorted, unique days from 1999 on, weekends and gaps included, random bars."""
    rng = np.random.default_rng(seed)
    days = np.sort(rng.choice(np.arange(n * 3), size=n, replace=False))
    ts = (np.datetime64("1999-12-27", "D") + days).astype("datetime64[us]")
    open_, close = rng.uniform(5, 15, n), rng.uniform(5, 15, n)
    return {
        "ts": ts,
        "open": open_,
        "high": np.maximum(open_, close) + rng.uniform(0, 1, n),
        "low": np.minimum(open_, close) - rng.uniform(0, 1, n),
        "close": close,
        "volume": rng.integers(0, 10**6, n).astype(np.float64),
        "amount": rng.integers(0, 10**9, n).astype(np.float64),
    }


def pandas_resample(bars: dict[str, np.ndarray], freq: Freq) -> pd.DataFrame:
    frame = pd.DataFrame(bars)
    groups = frame.groupby(frame["ts"].dt.to_period(PERIODS[freq]), sort=True)
    return pd.DataFrame({
        "ts": groups["ts"].max(), "open": groups["open"].first(), "high": groups["high"].max(),
        "low": groups["low"].min(), "close": groups["close"].last(),
        "volume": groups["volume"].sum(), "amount": groups["amount"].sum(),
    }).reset_index(drop=True)


@pytest.mark.parametrize("freq", [Freq.WEEK, Freq.MONTH])
@pytest.mark.parametrize("seed", range(5))
def test_resample_equals_pandas(freq, seed):
    bars = daily_bars(seed)
    got = pd.DataFrame(resample(bars, freq))[list(BAR_COLUMNS)]
    pd.testing.assert_frame_equal(got, pandas_resample(bars, freq), check_exact=True)


@pytest.mark.parametrize("freq", [Freq.WEEK, Freq.MONTH])
def test_rows_of_symbols_resample_as_each_alone(freq):
    # The synthetic provider's layout: one row per symbol, time along the last axis.
    alone = [daily_bars(seed) for seed in range(3)]
    ts = alone[0]["ts"]
    stacked = {"ts": ts, **{c: np.stack([b[c] for b in alone]) for c in BAR_COLUMNS[1:]}}
    got = resample(stacked, freq)
    for row, bars in enumerate(alone):
        expected = resample({**bars, "ts": ts}, freq)
        np.testing.assert_array_equal(got["ts"], expected["ts"])
        for column in BAR_COLUMNS[1:]:
            np.testing.assert_array_equal(got[column][row], expected[column])


def test_weeks_run_monday_to_sunday_and_months_by_calendar():
    days = np.array(["2024-01-07", "2024-01-08", "2024-01-14", "2024-01-31", "2024-02-01"],
                    "datetime64[D]")
    weeks = period_keys(days, Freq.WEEK)
    assert (weeks - weeks[0]).tolist() == [0, 1, 1, 4, 4]  # Sunday 7th ends a week
    assert period_keys(days, Freq.MONTH).tolist() == [648, 648, 648, 648, 649]  # since 1970


def test_no_bars_stay_no_bars_and_other_freqs_are_refused():
    empty = {c: np.array([], "datetime64[us]" if c == "ts" else np.float64)
             for c in BAR_COLUMNS}
    assert resample(empty, Freq.WEEK) is empty
    assert aggregate(empty, np.array([], np.int64), empty["ts"]) is empty
    with pytest.raises(ValueError, match="not 1d"):
        period_keys(np.array(["2024-01-02"], "datetime64[D]"), Freq.DAY)
