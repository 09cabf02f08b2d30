"""Intraday history that expires (kdist.horizons): the providers' declared horizons, which
stored series pass them when, the bars a delay loses, and what ``kdist status`` and
``kdist update`` say of it.

The known answers are counted by hand on the New York calendar of November 2026 (Thanksgiving
on the 26th is its only holiday) with ``now`` fixed at Monday 2026-12-07; the command-line
tests run on the real clock and compare with the API.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from kdist import calendars, horizons
from kdist.cli import main
from kdist.errors import InvalidOptionError
from kdist.providers import provider_class
from kdist.providers.base import Horizon
from kdist.providers.synthetic import SyntheticProvider
from kdist.providers.yfinance_ import YfinanceProvider
from kdist.schema import Adjust, Freq
from kdist.store import Store

NOW = "2026-12-07 10:00"
INTRADAY = [Freq.MIN1, Freq.MIN5, Freq.MIN15, Freq.MIN30, Freq.MIN60]


def stamps(calendar: str, first: str, last: str, minutes: int, skip=()) -> pd.Series:
    """Yahoo-stamped (bar start) bars of every session of ``calendar`` in ``[first, last]``
    but the days of ``skip``."""
    days = calendars.sessions(calendar, first, last).days
    days = days[~days.isin(pd.to_datetime(list(skip)))]
    return calendars.bar_stamps(calendar, days, minutes, "start")["ts"].astype("datetime64[us]")


def write(store: Store, symbol: str, ts, freq: Freq, source: str, adjust=Adjust.NONE):
    """Store ``ts`` as ``symbol``'s bars from ``source``, as a job's batch would."""
    ts = pd.Series(pd.to_datetime(ts)).astype("datetime64[us]").reset_index(drop=True)
    bars = pd.DataFrame({"symbol": symbol, "ts": ts, "open": 10.0, "high": 11.0, "low": 9.0,
                         "close": 10.0, "volume": 100.0, "amount": 1000.0})
    outcome = {"symbol": symbol, "status": "ok", "rows": len(bars), "first_ts": None,
               "last_ts": None, "attempts": 1, "error_class": None, "error": None,
               "rejected_rows": 0, "rejected": {}}
    window = pd.DataFrame({"symbol": [symbol], "start": [ts.iat[0].normalize()],
                           "stop": [ts.iat[-1].normalize() + pd.Timedelta(days=1)]})
    store.write_batch(bars, [outcome], job_id=f"job-{source}", freq=freq, adjust=adjust,
                      source=source, windows=window)


@pytest.fixture
def stored(db):
    """Three yfinance series at three distances from their horizon, and series that never
    expire: a baostock 5m (fixed first date), a yfinance 1d, a csv 1m."""
    with Store(db) as store:
        # Mon-Fri 16-20 Nov, 390 bars a session: due by 20 Nov + 29 days = 19 Dec.
        write(store, "AAPL", stamps("XNYS", "2026-11-16", "2026-11-20", 1), Freq.MIN1, "yfinance")
        # 5 sessions of 78 5-minute bars, last 9 Oct: due by 9 Oct + 59 days = 7 Dec (today).
        write(store, "MSFT", stamps("XNYS", "2026-10-05", "2026-10-09", 5), Freq.MIN5, "yfinance")
        # Last 3 Nov: due by 2 Dec; 4-6 Nov have left Yahoo's window (it serves 8 Nov on).
        write(store, "NVDA", stamps("XNYS", "2026-11-02", "2026-11-03", 1), Freq.MIN1, "yfinance")
        write(store, "600000.SH", stamps("XSHG", "2026-11-02", "2026-11-03", 5), Freq.MIN5,
              "baostock")
        write(store, "AAPL", ["2026-10-01", "2026-10-02"], Freq.DAY, "yfinance")
        write(store, "IBM", stamps("XNYS", "2026-10-01", "2026-10-02", 1), Freq.MIN1, "csv")
    return db


# --- what providers declare ------------------------------------------------------------------


def test_each_provider_declares_its_horizons():
    yahoo = {f: YfinanceProvider.horizon(f) for f in Freq}
    assert yahoo[Freq.MIN1].days == 30
    assert {yahoo[f].days for f in INTRADAY[1:]} == {60}  # 60m too: kdist's limit, not 730
    assert all(yahoo[f] is None for f in (Freq.DAY, Freq.WEEK, Freq.MONTH))
    assert all(yahoo[f].earliest is None and "yfinance" in yahoo[f].source for f in INTRADAY)

    baostock = provider_class("baostock")
    for freq in (Freq.MIN5, Freq.MIN15, Freq.MIN30, Freq.MIN60):
        h = baostock.horizon(freq)
        assert h.earliest == pd.Timestamp("1999-07-26") and not h.rolling
        assert "unverified" in h.source
    assert baostock.horizon("1m") is None and baostock.horizon("1d") is None
    for name in ("akshare", "tdx", "csv", "parquet", "synthetic"):
        assert all(provider_class(name).horizon(f) is None for f in Freq), name


def test_horizon_first_served():
    assert Horizon(days=30).first_served("2026-12-07 23:59") == pd.Timestamp("2026-11-08")
    assert Horizon(earliest="1999-07-26").first_served(NOW) == pd.Timestamp("1999-07-26")
    # The later of the two limits; none at all: None.
    assert Horizon(days=30, earliest="2026-11-20").first_served(NOW) == pd.Timestamp("2026-11-20")
    assert Horizon().first_served(NOW) is None
    with pytest.raises(ValueError):
        Horizon(days=0)


@pytest.mark.parametrize("freq", INTRADAY)
def test_yfinance_refusal_uses_the_declared_horizon(freq):
    """check() refuses a start one day before the horizon's first served day, and accepts
    that day: the declaration is the one source of the limit."""
    provider = YfinanceProvider()
    first = YfinanceProvider.horizon(freq).first_served()
    today = pd.Timestamp.now().normalize()
    assert first == today - pd.Timedelta(days=YfinanceProvider.horizon(freq).days - 1)
    provider.check(freq=freq, adjust=Adjust.NONE, start=first, end=today)
    with pytest.raises(InvalidOptionError, match=f"last {YfinanceProvider.horizon(freq).days} "
                       "days only"):
        provider.check(freq=freq, adjust=Adjust.NONE, start=first - pd.Timedelta(days=1),
                       end=today)


# --- expiring and bars_lost: known answers ---------------------------------------------------


def test_expiring_known_answers(stored):
    frame = horizons.expiring(stored, now=NOW)
    assert list(frame.columns) == horizons.COLUMNS
    got = frame[["symbol", "freq", "source", "bars", "look_back", "deadline", "expires",
                 "days_left", "bars_per_day", "lost", "calendar"]]
    assert got.to_dict("records") == [
        # Past its deadline; 4, 5 and 6 Nov (3 x 390 bars) are gone for good.
        {"symbol": "NVDA", "freq": "1m", "source": "yfinance", "bars": 780, "look_back": 30,
         "deadline": pd.Timestamp("2026-12-02"), "expires": pd.Timestamp("2026-12-03"),
         "days_left": -5, "bars_per_day": 390.0, "lost": 1170, "calendar": "XNYS"},
        {"symbol": "MSFT", "freq": "5m", "source": "yfinance", "bars": 390, "look_back": 60,
         "deadline": pd.Timestamp("2026-12-07"), "expires": pd.Timestamp("2026-12-08"),
         "days_left": 0, "bars_per_day": 78.0, "lost": 0, "calendar": "XNYS"},
        {"symbol": "AAPL", "freq": "1m", "source": "yfinance", "bars": 1950, "look_back": 30,
         "deadline": pd.Timestamp("2026-12-19"), "expires": pd.Timestamp("2026-12-20"),
         "days_left": 12, "bars_per_day": 390.0, "lost": 0, "calendar": "XNYS"},
    ]
    assert (frame["first_served"] == [pd.Timestamp("2026-11-08"), pd.Timestamp("2026-10-09"),
                                      pd.Timestamp("2026-11-08")]).all()
    # within_days: the series that lose bars unless updated within that many days.
    assert horizons.expiring(stored, now=NOW, within_days=1)["symbol"].tolist() == ["NVDA", "MSFT"]
    assert horizons.expiring(stored, now=NOW, within_days=0)["symbol"].tolist() == ["NVDA"]
    assert len(horizons.expiring(stored, now=NOW, within_days=13)) == 3


#: NVDA's 4-6 Nov (3 sessions x 390) have left Yahoo's window already: lost whatever one does,
#: so not counted as what a delay would lose.
GONE = 1170


@pytest.mark.parametrize(("days", "lost"), [
    (0, 1170 - GONE),
    # run 14 Dec: NVDA 4-13 Nov (8 sessions x 390), MSFT 12-15 Oct (4 x 78)
    (7, 3120 + 312 - GONE),
    # run 17 Dec: NVDA 4-17 Nov (10 x 390), MSFT 12-16 Oct (5 x 78)
    (10, 3900 + 390 - GONE),
    # run 1 Jan: AAPL 23 Nov - 2 Dec without Thanksgiving (7 x 390), MSFT 12 Oct - 2 Nov
    # (16 x 78), NVDA 4 Nov - 2 Dec (20 x 390)
    (25, 2730 + 1248 + 7800 - GONE),
])
def test_bars_lost_known_answers(stored, days, lost):
    assert horizons.bars_lost(stored, days, now=NOW) == lost


def test_bars_per_day_counts_sessions_not_weekdays(db):
    """A stored gap lowers the estimate (5 sessions, 4 stored); a holiday does not (the
    calendar's sessions are counted: 20-30 Nov holds 6, Thanksgiving left out)."""
    with Store(db) as store:
        write(store, "AAPL", stamps("XNYS", "2026-11-16", "2026-11-20", 1, skip=["2026-11-18"]),
              Freq.MIN1, "yfinance")
        write(store, "MSFT", [*stamps("XNYS", "2026-11-20", "2026-11-20", 1),
                              *stamps("XNYS", "2026-11-30", "2026-11-30", 1)], Freq.MIN1,
              "yfinance")
    frame = horizons.expiring(db, now=NOW).set_index("symbol")
    assert frame.loc["AAPL", "bars_per_day"] == 4 * 390 / 5
    assert frame.loc["MSFT", "bars_per_day"] == 2 * 390 / 6


def test_what_never_expires_is_left_out(db):
    """Daily bars, fixed first dates, local files, generated data and unknown sources; a
    series mixing sources is judged by the rolling horizon among them."""
    ts = stamps("XNYS", "2026-11-16", "2026-11-17", 1)
    with Store(db) as store:
        write(store, "AAPL", ts, Freq.MIN1, "csv")
        write(store, "AAPL", ts + pd.Timedelta(days=1), Freq.MIN1, "yfinance")  # csv,yfinance
        write(store, "IBM", ts, Freq.MIN1, "nosuchprovider")
        write(store, "600000.SH", ts, Freq.MIN5, "baostock")
        write(store, "600001.SH", ts, Freq.MIN1, "synthetic")
        write(store, "600002.SH", ts, Freq.MIN1, "tdx")
    frame = horizons.expiring(db, now=NOW)
    assert frame[["symbol", "source", "look_back"]].values.tolist() == [
        ["AAPL", "csv,yfinance", 30]]


def test_inputs_a_store_a_path_or_a_catalog(stored):
    with Store(stored, read_only=True) as store:
        by_store = horizons.expiring(store, now=NOW)
        by_catalog = horizons.expiring(store.catalog(), now=NOW)
    pd.testing.assert_frame_equal(by_store, horizons.expiring(stored, now=NOW))
    pd.testing.assert_frame_equal(by_catalog, by_store)
    with pytest.raises(TypeError):
        horizons.expiring(42)


def test_nothing_stored_or_nothing_expiring(db):
    with Store(db):
        pass
    frame = horizons.expiring(db, now=NOW)
    assert frame.empty and list(frame.columns) == horizons.COLUMNS
    assert horizons.bars_lost(db, 30, now=NOW) == 0
    summary = horizons.outlook(db, 7, now=NOW)
    assert summary["series"] == 0 and summary["next"] is None
    assert horizons.update_line(summary) is None
    assert horizons.status_warnings(frame, 7) == []


def test_texts(stored):
    frame = horizons.expiring(stored, now=NOW)
    assert horizons.status_warnings(frame, 7) == [
        "warning: 1 intraday series (yfinance 1m) passed the vendor's 30-day horizon: 1,170 "
        "bars lost for good, 390 more a day each; run kdist update --freq 1m now to keep what "
        "is left (from 2026-11-08); first: NVDA (since 2026-12-03)",
        "warning: 1 intraday series (yfinance 5m) reach the vendor's 60-day horizon within 7 "
        "days: run kdist update --freq 5m by 2026-12-07 or lose 78 bars a day each; first: "
        "MSFT (by 2026-12-07)",
    ]
    # A week later: per source and freq, the passed series first, then those still in time.
    week = horizons.status_warnings(horizons.expiring(stored, now="2026-12-14"), 7)
    assert [line[:60] for line in week] == [
        "warning: 1 intraday series (yfinance 1m) passed the vendor's",
        "warning: 1 intraday series (yfinance 1m) reach the vendor's ",
        "warning: 1 intraday series (yfinance 5m) passed the vendor's"]
    assert week[1].endswith("by 2026-12-19 or lose 390 bars a day each; first: AAPL (by "
                            "2026-12-19)")
    summary = horizons.outlook(stored, 7, now=NOW)
    assert summary == {
        "warn_days": 7, "series": 3, "losing": 2, "bars_lost": 3432 - GONE,
        "already_lost": GONE,
        "groups": ["yfinance 1m", "yfinance 5m"], "passed": 1, "next_deadline": "2026-12-02",
        "next": {"symbol": "NVDA", "source": "yfinance", "freq": "1m", "adjust": "none",
                 "days_left": -5}}
    assert horizons.update_line(summary) == (
        "horizon: not running kdist update for 7 days would lose 2,262 bars of 2 intraday "
        "series (yfinance 1m, yfinance 5m) for good; 1 intraday series passed the vendor's "
        "horizon already (first: NVDA yfinance 1m, due by 2026-12-02): this update keeps what "
        "the vendor still serves")
    # A week after updating AAPL alone: nothing lost within a week, the next date named.
    later = horizons.outlook(stored, 7, now="2026-11-23")
    assert later["bars_lost"] == 0 and later["passed"] == 0
    assert horizons.update_line(later) == (
        "horizon: not running kdist update for 7 days would lose no bars; the next vendor "
        "horizon is 2026-12-02 (NVDA yfinance 1m: update it by then)")


def test_per_series_follows_the_catalog(stored):
    with Store(stored, read_only=True) as store:
        catalog = store.catalog()
    rows = dict(zip(zip(catalog["symbol"], catalog["freq"]),
                    horizons.per_series(catalog, now=NOW, within_days=7)))
    assert rows[("NVDA", "1m")] == {"look_back_days": 30, "update_by": "2026-12-02",
                                    "days_left": -5, "bars_per_day": 390.0, "bars_lost": 1170,
                                    "warning": True}
    assert rows[("AAPL", "1m")]["warning"] is False and rows[("AAPL", "1m")]["days_left"] == 12
    assert rows[("AAPL", "1d")] is None and rows[("600000.SH", "5m")] is None


def test_a_large_catalog_is_answered_in_bulk():
    n = 50_000
    rng = np.random.default_rng(7)
    last = pd.Timestamp("2026-12-04 15:00") - pd.to_timedelta(rng.integers(0, 40, n), unit="D")
    catalog = pd.DataFrame({
        "symbol": [f"{i:06d}.SH" if i % 2 else f"T{i}" for i in range(n)],
        "freq": np.where(rng.random(n) < 0.8, "1m", "5m"), "adjust": "none",
        "bars": rng.integers(100, 20_000, n),
        "first": (last - pd.Timedelta(days=20)).astype("datetime64[us]"),
        "last": last.astype("datetime64[us]"),
        "source": np.where(rng.random(n) < 0.7, "yfinance", "baostock"),
    })
    horizons.expiring(catalog.head(4), now=NOW)  # loads the calendars once per process
    t0 = time.perf_counter()
    frame = horizons.expiring(catalog, now=NOW)
    lost = horizons.bars_lost(catalog, 7, now=NOW)
    elapsed = time.perf_counter() - t0
    assert len(frame) == (catalog["source"] == "yfinance").sum() and lost > 0
    # A guard against a loop over the series, not a measurement: about 0.5 s here alone,
    # 1.8 s once on a machine busy with other tests (docs/architecture.md has the figure).
    assert elapsed < 5.0, elapsed


# --- the command line -------------------------------------------------------------------------


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_status_warns_before_the_horizon(capsys, db):
    today = pd.Timestamp.now().normalize()
    last = today - pd.Timedelta(days=25)  # due by today + 4
    with Store(db) as store:
        ts = [last - pd.Timedelta(hours=14), last + pd.Timedelta(hours=10),
              last + pd.Timedelta(hours=10, minutes=1)]
        write(store, "AAPL", ts, Freq.MIN1, "yfinance")
        write(store, "600000.SH", ["2024-01-02", "2024-01-03"], Freq.DAY, "synthetic")
    due = f"{today + pd.Timedelta(days=4):%Y-%m-%d}"
    per_day = round(horizons.expiring(db).at[0, "bars_per_day"])
    code, out, err = run(capsys, "status", "--db", db)
    assert code == 0, err
    table, _, warning = out.rstrip("\n").rpartition("\n\n")
    assert "yfinance" in table and "series of" in table
    assert warning == (
        f"warning: 1 intraday series (yfinance 1m) reach the vendor's 30-day horizon within 7 "
        f"days: run kdist update --freq 1m by {due} or lose {per_day} bars a day each; first: "
        f"AAPL (by {due})")
    code, out, _ = run(capsys, "status", "--db", db, "--series")
    assert out.rstrip().endswith(f"first: AAPL (by {due})")
    code, out, _ = run(capsys, "status", "--db", db, "--warn-days", "4")
    assert code == 0 and "warning" not in out
    code, out, _ = run(capsys, "status", "--db", db, "--json")
    rows = {(r["symbol"], r["freq"]): r for r in json.loads(out)}
    assert rows[("AAPL", "1m")]["horizon"] == {
        "look_back_days": 30, "update_by": due, "days_left": 4,
        "bars_per_day": round(horizons.expiring(db).at[0, "bars_per_day"], 1), "bars_lost": 0,
        "warning": True}
    assert rows[("600000.SH", "1d")]["horizon"] is None


@pytest.fixture
def expiring_synthetic(monkeypatch):
    """The synthetic provider as a vendor with Yahoo's 1-minute look-back, so an update
    runs offline."""
    monkeypatch.setattr(SyntheticProvider, "horizons",
                        {Freq.MIN1: Horizon(days=30, source="test")})


def test_update_says_what_a_delay_would_lose(capsys, db, expiring_synthetic):
    today = pd.Timestamp.now().normalize()
    code, _, err = run(capsys, "ingest", "600000.SH", "--freq", "1m", "--start",
                       f"{today - pd.Timedelta(days=12):%Y-%m-%d}", "--end",
                       f"{today - pd.Timedelta(days=6):%Y-%m-%d}", "--db", db,
                       "--scheduler", "sync", "--quiet")
    assert code == 0, err
    code, out, err = run(capsys, "update", "--freq", "1m", "--end",
                         f"{today - pd.Timedelta(days=4):%Y-%m-%d}", "--db", db, "--scheduler",
                         "sync")
    assert code == 0, err
    summary = horizons.outlook(db, 7)
    assert summary["series"] == 1 and summary["bars_lost"] == 0
    line = out.rstrip("\n").splitlines()[-1]
    assert line == horizons.update_line(summary)
    assert line.startswith("horizon: not running kdist update for 7 days would lose no bars; "
                           f"the next vendor horizon is {summary['next_deadline']} "
                           "(600000.SH synthetic 1m")

    code, out, err = run(capsys, "update", "--freq", "1m", "--db", db, "--scheduler", "sync",
                         "--json", "--warn-days", "40")
    assert code == 0, err
    [report] = json.loads(out)
    assert report["symbols_ok"] == 1
    lost = horizons.bars_lost(db, 40)
    assert lost > 0 and report["horizon"]["bars_lost"] == lost
    assert report["horizon"]["warn_days"] == 40 and report["horizon"]["losing"] == 1

    code, out, err = run(capsys, "update", "--freq", "1m", "--db", db, "--scheduler", "sync",
                         "--quiet")
    assert code == 0 and out == "" and err == "", err
    # From cron (--quiet), bars about to be lost are still said, on stderr (cron mails it).
    code, out, err = run(capsys, "update", "--freq", "1m", "--db", db, "--scheduler", "sync",
                         "--quiet", "--warn-days", "40")
    assert code == 0 and out == ""
    assert err.startswith("horizon: not running kdist update for 40 days would lose ")


def test_update_of_a_series_past_yahoos_horizon_fetches_what_is_left(db, monkeypatch):
    """A yfinance 1m series last updated 35 days ago: ``kdist update`` is not refused (it
    asked from the first stored bar and Yahoo's 30-day check turned the whole job down);
    it fetches from the first day Yahoo still serves, and stores those bars."""
    today = pd.Timestamp.now().normalize()
    old = calendars.sessions("XNYS", today - pd.Timedelta(days=40), today - pd.Timedelta(days=35))
    with Store(db) as store:
        write(store, "AAPL", calendars.bar_stamps("XNYS", old.days[-1:], 1, "start")["ts"],
              Freq.MIN1, "yfinance")
    calls = []

    def history(ticker, **kwargs):  # Yahoo's answer: 09:30 and 09:31 of each weekday asked
        calls.append(kwargs)
        days = pd.bdate_range(kwargs["start"], pd.Timestamp(kwargs["end"]) - pd.Timedelta(days=1))
        stamps = pd.DatetimeIndex([d + pd.Timedelta(minutes=m) for d in days for m in (570, 571)],
                                  name="Datetime").tz_localize("America/New_York")
        n = len(stamps)
        return pd.DataFrame({"Open": [10.0] * n, "High": [10.5] * n, "Low": [9.5] * n,
                             "Close": [10.2] * n, "Volume": [1000] * n}, index=stamps)

    monkeypatch.setattr(YfinanceProvider, "_history", staticmethod(history))
    code = main(["update", "--freq", "1m", "--db", db, "--scheduler", "sync", "--quiet",
                 "--no-actions"])
    assert code == 0
    served = YfinanceProvider.horizon(Freq.MIN1).first_served()
    assert calls and min(pd.Timestamp(c["start"]) for c in calls) >= served
    with Store(db, read_only=True) as store:
        bars = store.load("AAPL", freq="1m")
    assert bars["ts"].max() >= today - pd.Timedelta(days=4)
    assert not ((bars["ts"] > old.days[-1] + pd.Timedelta(days=1)) & (bars["ts"] < served)).any()
