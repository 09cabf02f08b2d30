"""Trading calendars come from exchange_calendars, and a symbol's exchange from its form.

Known answers from the exchanges' published holidays: the Shanghai exchange had 242 sessions
in 2024 and closed for the Spring Festival from 9 to 16 February; New York closed on
Independence Day.
"""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from kdist.calendars import calendar_for, sessions
from kdist.errors import UsageError


@pytest.mark.parametrize("symbol, calendar", [
    ("600000.SH", "XSHG"), ("000001.SZ", "XSHG"), ("830799.BJ", "XSHG"), ("600000.SS", "XSHG"),
    ("0700.HK", "XHKG"), ("VOD.L", "XLON"), ("7203.T", "XTKS"), ("SHOP.TO", "XTSE"),
    ("AAPL", "XNYS"), ("BRK-B", "XNYS"), ("sap.de", "XETR"), ("SIE.F", "XFRA"),
    ("1155.KL", "XKLS"), ("6488.TWO", "XTAI"), ("PTT.BK", "XBKK"), ("OMV.VI", "XWBO"),
    ("^HSI", "XHKG"), ("^N225", "XTKS"), ("^GSPC", "XNYS"), ("BTC-USD", "24/7"),
    ("EURUSD=X", "24/5"), ("ES=F", "CMES"), ("ABC.XX", None), ("^UNKNOWN", None),
])
def test_a_symbols_calendar_comes_from_its_form(symbol, calendar):
    assert calendar_for(symbol) == calendar


def test_an_override_wins():
    assert calendar_for("AAPL", override="XNAS") == "XNAS"


def test_shanghai_2024_has_its_published_sessions():
    got = sessions("XSHG", "2024-01-01", "2024-12-31")
    assert len(got.days) == 242
    festival = pd.date_range("2024-02-09", "2024-02-16")
    assert not got.days.isin(festival).any()
    assert pd.Timestamp("2024-02-08") in got.days and pd.Timestamp("2024-02-19") in got.days
    assert got.days.tz is None and (got.days == got.days.normalize()).all()


def test_new_york_closes_on_independence_day():
    got = sessions("XNYS", "2024-07-01", "2024-07-05")
    assert pd.Timestamp("2024-07-04") not in got.days and len(got.days) == 4


def test_past_the_calendars_horizon_it_says_so_and_never_raises():
    got = sessions("XSHG", "2026-12-01", "2027-03-31")
    assert got.known_until <= pd.Timestamp("2027-03-31")
    assert got.unknown_after("2027-03-31") and not got.unknown_after(got.known_until)
    assert got.days.max() <= got.known_until
    assert len(sessions("XSHG", "2030-01-01", "2030-12-31").days) == 0


def test_history_reaches_back_to_the_first_a_share_sessions():
    assert len(sessions("XSHG", "1991-01-01", "1991-12-31").days) > 200


def test_an_unknown_calendar_is_a_usage_error():
    with pytest.raises(UsageError, match="Unknown trading calendar 'XXXX'"):
        sessions("XXXX", "2024-01-01", "2024-01-31")


def test_importing_kdist_does_not_import_exchange_calendars():
    code = "import sys, kdist, kdist.calendars; sys.exit('exchange_calendars' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
