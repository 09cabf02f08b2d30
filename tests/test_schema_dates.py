"""Dates: ``to_date`` and ``window_bounds`` refuse what no job can use, in one error."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from kdist.errors import InvalidOptionError
from kdist.schema import to_date, window_bounds

FIRST, LAST = pd.Timestamp("1800-01-01"), pd.Timestamp("2200-12-31")


@pytest.mark.parametrize("value", [
    "-1", "-20", "0000-01-01", "1066-10-14", "1799-12-31", "2201-01-01", "9999-12-31",
    "99999-01-01", dt.date(1, 1, 1), np.datetime64("-100-01-01"), 10**30, float("inf"), True,
])
def test_dates_out_of_range_or_not_dates_are_refused(value):
    with pytest.raises(InvalidOptionError, match=r"Invalid start .*2024-01-31") as info:
        to_date(value, name="start")
    assert info.value.option == "start"


def test_the_range_is_inclusive():
    assert to_date("1800-01-01") == FIRST
    assert to_date("2200-12-31 23:59") == LAST
    assert to_date(pd.Timestamp("2024-01-01 09:30", tz="Asia/Shanghai")) == pd.Timestamp(
        "2024-01-01")
    lo, hi = window_bounds(FIRST, LAST)
    assert (lo, hi) == (FIRST, LAST + pd.Timedelta(days=1))
    assert hi.date() == dt.date(2201, 1, 1)  # the report's dates are Python dates


def test_window_bounds_names_the_bad_end():
    with pytest.raises(InvalidOptionError, match="Invalid end '-1'"):
        window_bounds("2024-01-01", "-1")
