"""Gaps, classified (kdist check --gaps, kdist.quality): known answers.

A synthetic universe with injected missing bars, placeholder bars of suspended days and bars
off the calendar is classified exactly: every injected case found, nothing else. Real
calendars come from exchange_calendars (the Spring Festival week of 2024, New York's half
day after Thanksgiving); baostock's suspended rows arrive as placeholder bars through its
vendor seam.
"""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pandas as pd
import pytest

import kdist
from kdist import calendars
from kdist.cli import main
from kdist.store import Store

SYMBOLS = ["600000.SH", "000001.SZ", "300750.SZ", "AAPL"]
WINDOW = {"start": "2023-01-01", "end": "2024-12-31"}
SYNTHETIC = {"provider": kdist.get_provider("synthetic", actions=False), "client": "sync",
             "progress": False}


def sql(db, *statements):
    con = duckdb.connect(db)
    try:
        for statement in statements:
            con.execute(statement)
    finally:
        con.close()


def placeholders_at(db, symbol, freq, days):
    """Turn ``symbol``'s bars of ``days`` into placeholder bars: no trade at the close of
    the bar before the first of them (what vendors write for a suspension)."""
    con = duckdb.connect(db)
    try:
        # The series' first bar has no previous close: any flat price will do.
        [(prev,)] = con.execute(
            "SELECT coalesce((SELECT close FROM kline WHERE symbol = ? AND freq = ? "
            "AND ts < ?::TIMESTAMP_S ORDER BY ts DESC LIMIT 1), 10.0)",
            [symbol, freq, min(days)]).fetchall()
        con.execute(
            "UPDATE kline SET open = ?, high = ?, low = ?, close = ?, volume = 0, amount = 0 "
            "WHERE symbol = ? AND freq = ? AND ts::DATE IN (SELECT unnest(?::DATE[]))",
            [prev, prev, prev, prev, symbol, freq, list(days)])
    finally:
        con.close()


@pytest.fixture(scope="module")
def universe(tmp_path_factory):
    """Four symbols x two years of daily bars and three days of 5-minute bars of one, with
    known injections; returns the db and the expected gaps."""
    db = str(tmp_path_factory.mktemp("gaps") / "k.duckdb")
    kdist.ingest(SYMBOLS, **WINDOW, db=db, **SYNTHETIC)
    kdist.ingest(["600000.SH"], start="2024-06-03", end="2024-06-05", freq="5m", db=db,
                 **SYNTHETIC)
    sql(db,
        # Missing: a run of two sessions and one alone; and the 5m bars 10:00-10:10.
        "DELETE FROM kline WHERE symbol = '600000.SH' AND freq = '1d' "
        "AND ts IN ('2024-03-04', '2024-03-05', '2024-07-01')",
        "DELETE FROM kline WHERE symbol = '600000.SH' AND freq = '5m' "
        "AND ts BETWEEN '2024-06-04 10:00' AND '2024-06-04 10:10'",
        # Off the calendar: a Sunday record (as TDX LOF files carry), and a 5m bar at 12:00.
        "INSERT INTO kline SELECT symbol, freq, adjust, '2024-03-10'::TIMESTAMP_S, open, high, "
        "low, close, volume, amount, source FROM kline WHERE symbol = 'AAPL' AND freq = '1d' "
        "AND ts = '2024-03-08'",
        "INSERT INTO kline SELECT symbol, freq, adjust, '2024-06-05 12:00'::TIMESTAMP_S, open, "
        "high, low, close, volume, amount, source FROM kline WHERE symbol = '600000.SH' "
        "AND freq = '5m' AND ts = '2024-06-05 11:30'")
    # Suspended: three daily placeholder bars, and a whole day of 5m placeholders.
    placeholders_at(db, "000001.SZ", "1d", ["2024-05-07", "2024-05-08", "2024-05-09"])
    placeholders_at(db, "600000.SH", "5m", ["2024-06-03"])
    stamps_0603 = calendars.bar_stamps("SYNTHETIC", pd.DatetimeIndex(["2024-06-03"]), 5)["ts"]
    expected = {
        ("600000.SH", "1d", "missing"): ["2024-03-04", "2024-03-05", "2024-07-01"],
        ("600000.SH", "5m", "missing"): ["2024-06-04 10:00", "2024-06-04 10:05",
                                         "2024-06-04 10:10"],
        ("AAPL", "1d", "off_calendar"): ["2024-03-10"],
        ("600000.SH", "5m", "off_calendar"): ["2024-06-05 12:00"],
        ("000001.SZ", "1d", "suspended"): ["2024-05-07", "2024-05-08", "2024-05-09"],
        ("600000.SH", "5m", "suspended"): [t.strftime("%Y-%m-%d %H:%M") for t in stamps_0603],
    }
    return db, expected


def found_as_dict(found) -> dict:
    out = {}
    for (symbol, freq, kind), rows in found.gaps.groupby(["symbol", "freq", "kind"]):
        stamps = [t.strftime("%Y-%m-%d") if t == t.normalize() else t.strftime("%Y-%m-%d %H:%M")
                  for t in rows["ts"]]
        out[(symbol, freq, kind)] = stamps
    return out


def test_injected_gaps_are_classified_exactly(universe):
    db, expected = universe
    found = kdist.quality(db, record=False)
    assert found_as_dict(found) == expected
    assert not found.ok
    series = found.series.set_index(["symbol", "freq"])
    # Synthetic bars are checked against the synthetic provider's own calendar.
    assert set(series["calendar"]) == {"SYNTHETIC"}
    clean = series.loc[("300750.SZ", "1d")]
    assert (clean.missing, clean.suspended, clean.off_calendar, clean.completeness) == (0, 0, 0, 1)
    day = series.loc[("600000.SH", "1d")]
    assert day.sessions == day.bars + 3
    assert day.completeness == pytest.approx(1 - 3 / day.sessions)
    five = series.loc[("600000.SH", "5m")]
    assert five.sessions == 3 * 48 and five.bars == 3 * 48 - 3 + 1
    assert (five.missing, five.suspended, five.off_calendar) == (3, 48, 1)
    # Suspensions are the vendor's word: they do not count against completeness.
    assert series.loc[("000001.SZ", "1d")].completeness == 1
    # Per symbol, daily sessions and minute bars are counted apart.
    per_symbol = found.symbols().set_index(["symbol", "freq"])
    assert per_symbol.loc[("600000.SH", "1d"), "missing"] == 3
    assert per_symbol.loc[("600000.SH", "5m"), "completeness"] == pytest.approx(
        1 - 3 / five.sessions)
    assert found.completeness() == {
        "1d": pytest.approx(1 - 3 / series.xs("1d", level="freq")["sessions"].sum()),
        "5m": pytest.approx(1 - 3 / five.sessions)}
    coverage = found.coverage("5m").loc["600000.SH"]
    assert coverage[pd.Period("2024-06", "M")] == pytest.approx(1 - 3 / (3 * 48))


def test_runs_group_consecutive_sessions(universe):
    db, _ = universe
    runs = kdist.quality(db, "600000.SH", freq="1d", record=False).runs()
    assert [(r.kind, f"{r.first:%Y-%m-%d}", f"{r.last:%Y-%m-%d}", r.count)
            for r in runs.itertuples()] == [("missing", "2024-03-04", "2024-03-05", 2),
                                            ("missing", "2024-07-01", "2024-07-01", 1)]


def test_narrowing_by_symbol_freq_and_window(universe):
    db, expected = universe
    found = kdist.quality(db, ["600000.SH"], freq="5m", start="2024-06-04", end="2024-06-04",
                          record=False)
    assert found_as_dict(found) == {("600000.SH", "5m", "missing"):
                                    expected[("600000.SH", "5m", "missing")]}


def test_placeholders_can_be_left_out_of_load(universe):
    db, _ = universe
    kept = kdist.load(db, ["000001.SZ", "300750.SZ"])
    dropped = kdist.load(db, ["000001.SZ", "300750.SZ"], placeholders="drop")
    gone = kept.merge(dropped, how="left", indicator=True).query("_merge == 'left_only'")
    assert gone["symbol"].tolist() == ["000001.SZ"] * 3
    assert gone["ts"].dt.strftime("%Y-%m-%d").tolist() == ["2024-05-07", "2024-05-08",
                                                           "2024-05-09"]
    minutes = kdist.load(db, "600000.SH", freq="5m", placeholders="drop")
    assert not (minutes["ts"].dt.strftime("%Y-%m-%d") == "2024-06-03").any()
    with pytest.raises(kdist.UsageError, match="placeholders must be 'keep' or 'drop'"):
        kdist.load(db, placeholders="skip")


def test_a_quiet_minute_is_not_a_suspension(db):
    """One zero-volume flat 1-minute bar in a traded day is no placeholder day."""
    kdist.ingest(["600000.SH"], start="2024-06-03", end="2024-06-04", freq="1m", db=db,
                 **SYNTHETIC)
    placeholders_at(db, "600000.SH", "1m", ["2024-06-03"])
    sql(db, "UPDATE kline SET volume = 5, high = high + 0.01 WHERE freq = '1m' "
            "AND ts = '2024-06-03 14:00'")
    found = kdist.quality(db, record=False)
    assert found.gaps.empty and found.ok
    assert len(kdist.load(db, freq="1m", placeholders="drop")) == 2 * 240


def test_checks_are_recorded_with_their_time(tmp_path):
    db = str(tmp_path / "k.duckdb")
    kdist.ingest(["600000.SH", "000001.SZ"], start="2024-01-01", end="2024-03-31", db=db,
                 **SYNTHETIC)
    sql(db, "DELETE FROM kline WHERE symbol = '600000.SH' AND ts BETWEEN '2024-02-01' AND "
            "'2024-02-29'")
    first = kdist.quality(db)
    assert first.recorded
    # The gap is filled by a new import; the next check records the better coverage.
    kdist.ingest(["600000.SH"], start="2024-02-01", end="2024-02-29", db=db, **SYNTHETIC)
    second = kdist.quality(db)
    history = kdist.quality_history(db, "600000.SH")
    assert history["checked_at"].tolist() == [first.checked_at, second.checked_at]
    assert history["missing"].tolist() == [first.series.set_index("symbol").loc[
        "600000.SH", "missing"], 0]
    assert history["completeness"].iat[0] < 1 == history["completeness"].iat[1]
    assert len(kdist.quality_history(db)) == 4
    kdist.quality(db, record=False)
    assert len(kdist.quality_history(db)) == 4


# --- real calendars ----------------------------------------------------------------------------


def write_csv(root, symbol, days, *, times=None, close=10.0, volume=1000):
    ts = pd.DatetimeIndex(days) if times is None else pd.DatetimeIndex(times)
    n = len(ts)
    closes = close + np.arange(n) * 0.01
    frame = pd.DataFrame({"ts": ts, "open": closes, "high": closes + 0.1, "low": closes - 0.1,
                          "close": closes, "volume": volume, "amount": volume * closes})
    frame.to_csv(root / f"{symbol}.csv", index=False)


def test_a_shares_on_the_shanghai_calendar(tmp_path):
    """Every weekday of February 2024 as a bar: the Spring Festival closure (9-16 February,
    exchange_calendars' XSHG) holds six weekday bars that are no sessions."""
    root = tmp_path / "files"
    root.mkdir()
    write_csv(root, "600000.SH", pd.bdate_range("2024-02-01", "2024-02-29"))
    db = str(tmp_path / "k.duckdb")
    kdist.ingest(["600000.SH"], start="2024-02-01", end="2024-02-29", db=db,
                 provider=kdist.get_provider("csv", root=str(root)), client="sync",
                 progress=False)
    found = kdist.quality(db, record=False)
    assert found.series["calendar"].tolist() == ["XSHG"]
    assert found_as_dict(found) == {("600000.SH", "1d", "off_calendar"): [
        "2024-02-09", "2024-02-12", "2024-02-13", "2024-02-14", "2024-02-15", "2024-02-16"]}
    # The same bars told to be New York's: Presidents' Day is the one weekday off.
    told = kdist.quality(db, calendar={"csv": "XNYS"}, record=False)
    assert found_as_dict(told) == {("600000.SH", "1d", "off_calendar"): ["2024-02-19"]}


def test_bars_past_the_calendar_horizon_are_unknown(tmp_path):
    """exchange_calendars knows XSHG's holidays up to 2026-12-31: later bars (a store kept
    into 2027 with this calendar version) are counted as unknown, never as off-calendar."""
    db = str(tmp_path / "k.duckdb")
    kdist.ingest(["600000.SH"], start="2026-11-02", end="2026-11-30", db=db, **SYNTHETIC)
    days = pd.bdate_range("2026-12-21", "2027-01-08")
    sql(db, *[f"INSERT INTO kline SELECT symbol, freq, adjust, '{d:%Y-%m-%d}'::TIMESTAMP_S, "
              "open, high, low, close, volume, amount, 'csv' FROM kline WHERE ts = '2026-11-30'"
              for d in days],
        "UPDATE kline SET source = 'csv'")
    found = kdist.quality(db, record=False)
    row = found.series.iloc[0]
    known = calendars.sessions("XSHG", "2026-11-02", "2027-01-08")
    assert row.unknown == (days > known.known_until).sum() == 6
    # 1-18 December have no bar: missing; the rest of the known sessions have one.
    missing = known.days[(known.days > "2026-11-30") & (known.days < "2026-12-21")]
    assert (row.sessions, row.missing) == (len(known.days), len(missing))
    assert "outside the sessions their calendar knows" in found.to_text()


def test_new_york_hourly_bars_stamped_at_their_start(tmp_path):
    """Yahoo stamps bars at their start: 09:30 .. 15:30, and the half day after Thanksgiving
    ends at 13:00 (12:30 the last 60m bar); one bar is removed, one put at 12:45."""
    days = pd.DatetimeIndex(["2024-11-26", "2024-11-27", "2024-11-29"])
    stamps = calendars.bar_stamps("XNYS", days, 60, "start")["ts"]
    assert stamps.dt.strftime("%H:%M")[-4:].tolist() == ["09:30", "10:30", "11:30", "12:30"]
    times = [t for t in stamps if t != pd.Timestamp("2024-11-27 11:30")]
    times.append(pd.Timestamp("2024-11-29 12:45"))
    root = tmp_path / "files"
    root.mkdir()
    write_csv(root, "AAPL", None, times=sorted(times))
    db = str(tmp_path / "k.duckdb")
    kdist.ingest(["AAPL"], start="2024-11-26", end="2024-11-29", freq="60m", db=db,
                 provider=kdist.get_provider("csv", root=str(root)), client="sync",
                 progress=False)
    found = kdist.quality(db, record=False)  # the files' convention told from the bars
    assert found_as_dict(found) == {("AAPL", "60m", "missing"): ["2024-11-27 11:30"],
                                    ("AAPL", "60m", "off_calendar"): ["2024-11-29 12:45"]}
    assert found.series["sessions"].tolist() == [len(stamps)]
    # Told the bars are stamped at their end, every bar but the first of each day is off.
    ends = kdist.quality(db, bar_time="end", record=False)
    assert ends.counts()["off_calendar"] > 3


def test_baostock_suspensions_arrive_as_placeholders(tmp_path, monkeypatch):
    """baostock's tradestatus 0 row is stored as a placeholder bar: a suspended session."""
    from test_adjustment_vendors import vendor_tests

    fake = vendor_tests("test_baostock").FakeBaostock()  # the vendor seam's fake
    monkeypatch.setattr("kdist.providers.baostock_._baostock", fake)
    monkeypatch.setattr("kdist.providers.baostock_._SESSION", None)
    db = str(tmp_path / "k.duckdb")
    kdist.ingest(["600000.SH"], start="2024-01-02", end="2024-01-05", db=db,
                 provider=kdist.get_provider("baostock"), client="sync", progress=False,
                 actions=False)
    found = kdist.quality(db, record=False)
    assert found_as_dict(found) == {("600000.SH", "1d", "suspended"): ["2024-01-04"]}
    assert found.ok and found.series["calendar"].tolist() == ["XSHG"]
    assert kdist.load(db, placeholders="drop")["ts"].dt.day.tolist() == [2, 3, 5]


# --- the command line --------------------------------------------------------------------------


def test_cli_check_gaps(universe, capsys):
    db, expected = universe
    assert main(["check", "--gaps", "--db", db, "--no-record"]) == 1
    out = capsys.readouterr().out
    assert "600000.SH 1d none  missing      2024-03-04 .. 2024-03-05  (2)" in out
    assert "AAPL 1d none  off_calendar 2024-03-10  (1)" in out
    assert main(["check", "--gaps", "300750.SZ", "--db", db, "--json", "--no-record"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["ok"] and payload["series"] == 1 and payload["runs"] == []
    assert payload["by_series"][0]["completeness"] == 1 and "gaps" not in payload
    assert main(["check", "--gaps", "600000.SH", "--freq", "5m", "--db", db, "--json",
                 "--no-record", "--every-gap"]) == 1
    payload = json.loads(capsys.readouterr().out)
    assert [r["kind"] for r in payload["runs"]] == ["suspended", "missing", "off_calendar"]
    assert [g["ts"] for g in payload["gaps"] if g["kind"] == "missing"] == [
        "2024-06-04T10:00:00", "2024-06-04T10:05:00", "2024-06-04T10:10:00"]
    # Suspensions alone are no failure: the vendor said why.
    assert main(["check", "--gaps", "000001.SZ", "--db", db, "--no-record"]) == 0
    assert "suspended    2024-05-07 .. 2024-05-09  (3)" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--calendar", "NOPE"], "Unknown trading calendar 'NOPE'"),
    (["--calendar", "XNYS", "--calendar", "XSHG"], "--calendar NAME is given once"),
    (["--freq", "1w"], "not 1w: weekly and monthly bars are built from the days"),
])
def test_cli_check_gaps_bad_input(universe, capsys, args, message):
    db, _ = universe
    assert main(["check", "--gaps", "--db", db, "--no-record", *args]) == 2
    assert message in capsys.readouterr().err


def test_cli_symbols_need_gaps(universe, capsys):
    db, _ = universe
    assert main(["check", "AAPL", "--db", db]) == 2
    assert "only with --gaps" in capsys.readouterr().err


def test_coverage_per_symbol_and_month(universe):
    db, _ = universe
    coverage = kdist.quality(db, record=False).coverage()
    assert list(coverage.index) == ["000001.SZ", "300750.SZ", "600000.SH", "AAPL"]
    assert str(coverage.columns[0]) == "2023-01" and str(coverage.columns[-1]) == "2024-12"
    march = calendars.sessions("SYNTHETIC", "2024-03-01", "2024-03-31").days
    july = calendars.sessions("SYNTHETIC", "2024-07-01", "2024-07-31").days
    row = coverage.loc["600000.SH"]
    assert row[pd.Period("2024-03", "M")] == pytest.approx(1 - 2 / len(march))
    assert row[pd.Period("2024-07", "M")] == pytest.approx(1 - 1 / len(july))
    # Every other month of every symbol is whole (suspensions are no holes).
    whole = coverage.drop(columns=[pd.Period("2024-03", "M"), pd.Period("2024-07", "M")])
    assert (whole == 1).all().all() and (coverage.drop(index="600000.SH") == 1).all().all()


def test_weekly_and_monthly_series_are_named_not_checked(tmp_path):
    db = str(tmp_path / "k.duckdb")
    kdist.ingest(["600000.SH"], start="2024-01-01", end="2024-06-30", db=db, **SYNTHETIC)
    kdist.ingest(["600000.SH"], start="2024-01-01", end="2024-06-30", freq="1w", db=db,
                 **SYNTHETIC)
    found = kdist.quality(db, record=False)
    assert found.series["freq"].tolist() == ["1d"]
    assert found.skipped == ["1 weekly or monthly series not checked (built from days: their "
                             "daily bars are)"]
    assert found.to_text().endswith(found.skipped[0])


def test_eastmoney_minute_files_with_the_opening_auction_bar(tmp_path):
    """Eastmoney's 1-minute bars: 09:30 (the opening auction), 09:31 .. 11:30, 13:01 .. 15:00,
    241 a day. A bar at 15:00 says they are stamped at their end; the 09:30 bar is allowed,
    not expected; a removed minute is missing."""
    days = calendars.sessions("XSHG", "2024-06-03", "2024-06-05").days
    stamps = calendars.bar_stamps("XSHG", days, 1, "end")["ts"]
    auction = pd.Series(calendars.opens("XSHG", days)).astype("datetime64[us]")
    times = sorted([*stamps, *auction])
    assert len(times) == 3 * 241
    times.remove(pd.Timestamp("2024-06-04 10:00"))
    root = tmp_path / "files"
    root.mkdir()
    write_csv(root, "600000.SH", None, times=times)
    db = str(tmp_path / "k.duckdb")
    kdist.ingest(["600000.SH"], start="2024-06-03", end="2024-06-05", freq="1m", db=db,
                 provider=kdist.get_provider("csv", root=str(root)), client="sync",
                 progress=False)
    found = kdist.quality(db, record=False)
    assert found_as_dict(found) == {("600000.SH", "1m", "missing"): ["2024-06-04 10:00"]}
    assert found.series["sessions"].tolist() == [3 * 240]


def test_us_history_before_1990_is_on_new_yorks_calendar(tmp_path):
    """New York's calendar is asked from 1900 (exchange_calendars sets it no bound): IBM's
    bars of 1988 are checked, not called off the calendar."""
    root = tmp_path / "files"
    root.mkdir()
    days = calendars.sessions("XNYS", "1988-01-01", "1991-12-31").days
    write_csv(root, "IBM", days.delete([300]))
    db = str(tmp_path / "k.duckdb")
    kdist.ingest(["IBM"], start="1988-01-01", end="1991-12-31", db=db,
                 provider=kdist.get_provider("csv", root=str(root)), client="sync",
                 progress=False)
    found = kdist.quality(db, record=False)
    assert found_as_dict(found) == {("IBM", "1d", "missing"): [f"{days[300]:%Y-%m-%d}"]}
    assert found.series["unknown"].tolist() == [0]


def test_symbols_of_no_known_calendar_are_named_not_guessed(tmp_path):
    root = tmp_path / "files"
    root.mkdir()
    days = pd.bdate_range("2024-03-01", "2024-03-29")
    for symbol in ("ZAIN.KW", "1155.KL"):  # Kuwait: a Yahoo suffix, no calendar
        write_csv(root, symbol, days)
    db = str(tmp_path / "k.duckdb")
    kdist.ingest(["ZAIN.KW", "1155.KL"], start="2024-03-01", end="2024-03-29", db=db,
                 provider=kdist.get_provider("csv", root=str(root)), client="sync",
                 progress=False)
    found = kdist.quality(db, record=False)
    assert found.series["symbol"].tolist() == ["1155.KL"]
    assert found.series["calendar"].tolist() == ["XKLS"]
    assert found.skipped == ["1 series not checked: no trading calendar known for ZAIN.KW "
                             "(name one: --calendar SYMBOL=NAME, e.g. XKLS)"]
    named = kdist.quality(db, calendar={"ZAIN.KW": "XNYS"}, record=False)
    assert named.series["symbol"].tolist() == ["1155.KL", "ZAIN.KW"] and not named.skipped


def test_a_check_leaves_an_older_file_as_it_is(tmp_path):
    """A version-3 file (before the table of checks) is checked as it is: not upgraded, the
    result says why nothing was recorded."""
    db = str(tmp_path / "k.duckdb")
    kdist.ingest(["600000.SH"], start="2024-01-01", end="2024-03-31", db=db, **SYNTHETIC)
    sql(db, "DROP TABLE kdist_quality", "DROP TABLE kdist_findings",
        "UPDATE kdist_meta SET value = '3' WHERE key = 'schema_version'")
    found = kdist.quality(db)
    assert found.ok and not found.recorded
    assert found.note.startswith("not recorded: the file's schema predates the table of checks")
    con = duckdb.connect(db, read_only=True)
    try:
        assert con.execute("SELECT value FROM kdist_meta WHERE key = 'schema_version'"
                            ).fetchall() == [("3",)]
    finally:
        con.close()


def test_a_file_this_user_cannot_write_is_checked_without_recording(tmp_path, monkeypatch):
    db = str(tmp_path / "k.duckdb")
    kdist.ingest(["600000.SH"], start="2024-01-01", end="2024-03-31", db=db, **SYNTHETIC)
    real = Store.__init__

    def refuse_writers(self, path, *, read_only=False, **kwargs):
        if not read_only:  # as the lock file of a 444 file in a read-only directory fails
            raise kdist.StoreError(f"Cannot lock {path}.lock: Permission denied")
        real(self, path, read_only=read_only, **kwargs)

    monkeypatch.setattr(Store, "__init__", refuse_writers)
    found = kdist.quality(db)
    assert found.ok and not found.recorded
    assert found.note == ("not recorded: the file cannot be opened for writing (Cannot lock "
                          f"{db}.lock: Permission denied)")
    assert found.note in found.to_text()


@pytest.mark.parametrize("symbol, calendar, minutes", [
    ("0700.HK", "XHKG", 60),  # Yahoo: 09:30 .. 11:30, then 13:00 .. 15:00
    ("VOD.L", "XLON", 30),    # 08:00 .. 16:00, the last bar's start at 16:00
    ("7203.T", "XTKS", 60),   # 09:00 .. 11:00, 12:30 .. 14:30
])
def test_yahoo_start_stamped_files_are_told_from_their_bars(tmp_path, symbol, calendar, minutes):
    days = calendars.sessions(calendar, "2024-06-03", "2024-06-07").days
    times = list(calendars.bar_stamps(calendar, days, minutes, "start")["ts"])
    gone = times.pop(7)
    root = tmp_path / "files"
    root.mkdir()
    write_csv(root, symbol, None, times=times)
    db = str(tmp_path / "k.duckdb")
    kdist.ingest([symbol], start="2024-06-03", end="2024-06-07", freq=f"{minutes}m", db=db,
                 provider=kdist.get_provider("csv", root=str(root)), client="sync",
                 progress=False)
    found = kdist.quality(db, record=False)
    assert found_as_dict(found) == {(symbol, f"{minutes}m", "missing"):
                                    [f"{gone:%Y-%m-%d %H:%M}"]}


def test_minute_bars_of_a_suspended_day_are_suspended_not_missing(tmp_path):
    """baostock writes a placeholder daily bar for a suspended day and no minute bars: the
    day's minutes are suspended too, and do not count against completeness."""
    db = str(tmp_path / "k.duckdb")
    kdist.ingest(["600000.SH"], start="2024-06-03", end="2024-06-07", db=db, **SYNTHETIC)
    kdist.ingest(["600000.SH"], start="2024-06-03", end="2024-06-07", freq="5m", db=db,
                 **SYNTHETIC)
    placeholders_at(db, "600000.SH", "1d", ["2024-06-05"])
    sql(db, "DELETE FROM kline WHERE freq = '5m' AND ts::DATE = '2024-06-05'",
        "DELETE FROM kline WHERE freq = '5m' AND ts = '2024-06-06 10:00'")
    found = kdist.quality(db, record=False)
    five = found.series.set_index("freq").loc["5m"]
    assert (five.missing, five.suspended, five.completeness) == (1, 48, 1 - 1 / (5 * 48))
    got = found_as_dict(found)
    assert got[("600000.SH", "5m", "missing")] == ["2024-06-06 10:00"]
    assert len(got[("600000.SH", "5m", "suspended")]) == 48
    assert got[("600000.SH", "1d", "suspended")] == ["2024-06-05"]


def test_placeholders_are_dropped_from_derived_reads_and_windows_alike(tmp_path):
    """A suspension across an ex-date: its placeholders are raw ones, and a derived qfq read
    drops the same days as the raw read (adjusted, the ex-date's placeholder no longer
    repeats the close before it). A window starting inside it drops the same days too."""
    db = str(tmp_path / "k.duckdb")
    kdist.ingest(["600000.SH"], start="2019-01-01", end="2024-12-31", db=db, client="sync",
                 progress=False)
    actions = kdist.corporate_actions(db, "600000.SH")
    ex = actions[actions["ex_date"] > "2020-01-01"]["ex_date"].iloc[0]
    raw = kdist.load(db, "600000.SH")
    at = int(np.searchsorted(raw["ts"], ex))
    days = [f"{d:%Y-%m-%d}" for d in raw["ts"].iloc[at - 2:at + 2]]
    placeholders_at(db, "600000.SH", "1d", days)
    for adjust in ("none", "qfq", "hfq"):
        kept = kdist.load(db, "600000.SH", adjust=adjust)
        dropped = kdist.load(db, "600000.SH", adjust=adjust, placeholders="drop")
        assert sorted(set(kept["ts"]) - set(dropped["ts"])) == [pd.Timestamp(d) for d in days]
        inside = kdist.load(db, "600000.SH", start=days[1], adjust=adjust, placeholders="drop")
        assert not inside["ts"].isin(pd.to_datetime(days)).any()


def test_unstored_symbols_and_unknown_calendar_keys_are_refused(universe):
    db, _ = universe
    with pytest.raises(kdist.UsageError, match="No bars of 600001.SH to check"):
        kdist.quality(db, ["600001.SH"], record=False)
    with pytest.raises(kdist.UsageError, match="no stored symbol or source is named 'cvs'"):
        kdist.quality(db, calendar={"cvs": "XSHG"}, record=False)
    # A symbol key in any accepted form names the stored symbol.
    told = kdist.quality(db, calendar={"aapl": "XSHG"}, record=False)
    series = told.series
    assert series.loc[series["symbol"] == "AAPL", "calendar"].tolist() == ["XSHG"]
