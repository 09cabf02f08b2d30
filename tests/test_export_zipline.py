"""kdist.zipline: zipline-reloaded itself ingests a kdist file as a bundle and backtests on it.

zipline pins pandas < 3, so it runs in its own virtual environment (``.venv-zipline``, made by
``make interop`` from tests/interop/zipline.txt, kdist installed there without its
dependencies): this test imports bars into a kdist file here, then runs
tests/interop/zipline_run.py with that environment's Python, which registers the file in an
``extension.py``, runs ``zipline ingest``, reads the bundle back (raw bars, adjustments,
adjusted history windows) and runs a small algorithm, and writes what it saw as JSON.

The calendar, chosen deliberately: synthetic bars follow the synthetic provider's calendar
(weekdays less 1 January, 1 May and 1-3 October), not XSHG's. Those holidays are XSHG
holidays too, so every XSHG session has a synthetic bar; but XSHG's own holidays on weekdays
(Spring Festival, Qingming, Labour Day, Dragon Boat, Mid-Autumn, National Day) are synthetic
trading days. 2024-01-02 .. 2024-11-29 on XSHG therefore has 15 synthetic bars per symbol on
days that are no session, which the bundle must leave out, and one rights issue (600326.SH,
2024-04-04) whose ex-date is such a day. A vendor that leaves out a suspended day is
simulated by deleting one stored bar, which the bundle must fill. The symbols were picked
for their 2024 events: cash with bonus shares (600101.SH 10送10 and a 2-for-1 split,
600076.SH), rights issues (600161.SH, 600326.SH), cash only (000001.SZ); AAPL is stored too
and left out of an XSHG bundle.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

import kdist
from kdist.calendars import sessions as calendar_sessions
from kdist.errors import UsageError

SYMBOLS = ["000001.SZ", "600076.SH", "600101.SH", "600161.SH", "600326.SH"]
START, END = "2024-01-02", "2024-11-29"
GAP = ("000001.SZ", "2024-03-12")  # the bar deleted: a session the bundle fills
BUY = "600101.SH"
HISTORY_ENDS = ["2024-11-29", "2024-08-15"]
SCRIPT = Path(__file__).parent / "interop" / "zipline_run.py"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def zipline_run(tmp_path_factory):
    """The kdist file and what zipline made of it (the script's JSON)."""
    # conftest's interop_python, for a module-scoped fixture.
    python = ROOT / ".venv-zipline" / "bin" / "python"
    if not python.exists():
        pytest.fail(f"{python} is missing: run make interop (make test does it first)")
    tmp = tmp_path_factory.mktemp("zipline")
    db = str(tmp / "kdist.duckdb")
    report = kdist.ingest([*SYMBOLS, "AAPL"], start=START, end=END, db=db, client="sync",
                          progress=False)
    assert report.status == "done"
    with duckdb.connect(db) as con:
        con.execute("DELETE FROM kline WHERE symbol = ? AND ts = ?::TIMESTAMP_S", list(GAP))
    config = {
        "db": db, "root": str(tmp / "zipline-root"), "bundle": "kdist-test",
        "calendar": "XSHG", "start": None, "end": None, "symbols": None, "buy": BUY,
        "history_ends": HISTORY_ENDS, "algo_start": "2024-01-03", "algo_end": END,
        "out": str(tmp / "out.json"),
    }
    (tmp / "config.json").write_text(json.dumps(config))
    done = subprocess.run([str(python), str(SCRIPT), str(tmp / "config.json")],
                          capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    return db, json.loads(Path(config["out"]).read_text())


def _sessions(first, last) -> pd.DatetimeIndex:
    return calendar_sessions("XSHG", first, last).days


@pytest.mark.interop
def test_the_bundle_holds_the_symbols_of_its_calendar(zipline_run):
    _, out = zipline_run
    assets = {a["symbol"]: a for a in out["assets"]}
    assert list(assets) == SYMBOLS  # AAPL trades on XNYS: not in an XSHG bundle
    assert [a["sid"] for a in out["assets"]] == list(range(len(SYMBOLS)))
    assert out["lookup"] == {s: i for i, s in enumerate(SYMBOLS)}  # zipline's symbol()
    sessions = _sessions(START, END)
    for symbol, asset in assets.items():
        assert asset["exchange"] == ("XSHE" if symbol.endswith(".SZ") else "XSHG")
        assert asset["country"] == "CN"
        assert (asset["start"], asset["end"]) == (f"{sessions[0]:%Y-%m-%d}",
                                                  f"{sessions[-1]:%Y-%m-%d}")
    log = out["ingest"]["stderr"]
    assert "bars on days that are no XSHG session, left out: 75" in log
    assert "(sessions without a stored bar, filled: 1)" in log


@pytest.mark.interop
def test_raw_bars_read_back_equal_kdist_on_every_session(zipline_run):
    db, out = zipline_run
    raw = kdist.load(db, SYMBOLS)
    sessions = _sessions(START, END)
    for symbol in SYMBOLS:
        theirs = pd.DataFrame.from_dict(out["raw"][symbol], orient="index",
                                        columns=["open", "high", "low", "close", "volume"])
        theirs.index = pd.to_datetime(theirs.index)
        # Every session from the first bar to the last, and no other day.
        assert theirs.index.equals(sessions)
        ours = raw[raw["symbol"] == symbol].set_index("ts")
        off = ~ours.index.isin(sessions)
        assert off.sum() == 15  # synthetic bars on XSHG holidays, left out
        ours = ours[~off]
        both = theirs.loc[ours.index]
        prices = ["open", "high", "low", "close"]
        np.testing.assert_allclose(both[prices].to_numpy(), ours[prices].to_numpy(),
                                   rtol=0, atol=0.0011)  # zipline's uint32 thousandths
        np.testing.assert_array_equal(both["volume"].to_numpy(), ours["volume"].to_numpy())
        missing = theirs.index.difference(ours.index)
        if symbol == GAP[0]:
            assert list(missing) == [pd.Timestamp(GAP[1])]
            filled = theirs.loc[GAP[1]]
            before = ours[ours.index < GAP[1]].iloc[-1]
            assert filled[prices].tolist() == pytest.approx([before["close"]] * 4, abs=0.0011)
            assert filled["volume"] == 0
        else:
            assert missing.empty


@pytest.mark.interop
def test_adjustments_follow_the_stored_corporate_actions(zipline_run):
    db, out = zipline_run
    actions = kdist.corporate_actions(db, SYMBOLS, start=START, end=END)
    sessions = _sessions(START, END)
    sid = {s: i for i, s in enumerate(SYMBOLS)}
    splits, dividends, merged = set(), set(), set()
    for row in actions.itertuples():
        day = f"{sessions[sessions.searchsorted(row.ex_date)]:%Y-%m-%d}"
        ratio = 1 / ((1 + row.bonus) * row.split)
        if ratio != 1:
            splits.add((sid[row.symbol], day, round(ratio, 9)))
        if row.cash > 0:
            dividends.add((sid[row.symbol], day, round(row.cash, 9)))
        if row.rights > 0:
            merged.add((sid[row.symbol], day))
    tables = out["adjustments"]
    assert {(r["sid"], r["effective_date"], round(r["ratio"], 9))
            for r in tables["splits"]} == splits
    assert {(r["sid"], r["ex_date"], round(r["amount"], 9))
            for r in tables["dividend_payouts"]} == dividends
    # Paid on the ex-date (zipline pays no dividend without a pay date).
    assert all(r["pay_date"] == r["ex_date"] for r in tables["dividend_payouts"])
    # A rights issue is a price-only ratio, on the first session after its ex-date.
    assert merged <= {(r["sid"], r["effective_date"]) for r in tables["mergers"]}
    assert (sid["600326.SH"], "2024-04-08") in merged  # ex-date 2024-04-04, a holiday
    assert {(3, "2024-11-06", 0.5), (2, "2024-05-13", 0.5), (2, "2024-11-11", 0.5)} <= splits


@pytest.mark.interop
@pytest.mark.parametrize("end", HISTORY_ENDS)
def test_adjusted_history_is_kdists_qfq_anchored_at_its_end(zipline_run, end):
    db, out = zipline_run
    qfq = kdist.load(db, SYMBOLS, adjust="qfq", as_of=end)
    raw = kdist.load(db, SYMBOLS, end=end)
    window = out["history"][end]
    for field in ("open", "close"):
        for symbol in SYMBOLS:
            theirs = pd.Series(window[field][symbol], dtype="float64")
            theirs.index = pd.to_datetime(theirs.index)
            ours = qfq[qfq["symbol"] == symbol].set_index("ts")[field]
            ours = ours[ours.index.isin(theirs.index)]
            assert len(ours) >= len(theirs) - 1  # all but the filled session
            got = theirs.loc[ours.index].to_numpy()
            # zipline rounds adjusted prices to 0.001.
            np.testing.assert_allclose(got, ours.to_numpy(), rtol=2e-6, atol=0.0005 + 1e-9)
    # The adjustments mattered: qfq is far from raw before the events.
    moved = (raw.set_index(["symbol", "ts"])["close"]
             - qfq.set_index(["symbol", "ts"])["close"]).abs()
    assert moved.max() > 10


@pytest.mark.interop
def test_an_algorithm_runs_on_every_session_with_splits_and_dividends(zipline_run):
    _, out = zipline_run
    days = out["algorithm"]
    sessions = _sessions("2024-01-03", END)
    assert [d["day"] for d in days] == [f"{s:%Y-%m-%d}" for s in sessions]
    for d in days:
        # data.current is the bundle's raw close, the filled session's included.
        assert d["closes"] == {s: pytest.approx(out["raw"][s][d["day"]][3]) for s in SYMBOLS}
        assert d["value"] == pytest.approx(d["cash"] + d["shares"] * d["closes"][BUY])
    shares = {d["day"]: d["shares"] for d in days}
    cash = {d["day"]: d["cash"] for d in days}
    # 100 bought on the second session; 10送10 with 8.00 cash on 2024-05-13 (the cash is
    # paid on the shares held before the bonus), 2-for-1 on 2024-11-11.
    assert shares["2024-01-03"] == 0 and shares["2024-01-04"] == 100
    assert shares["2024-05-10"] == 100 and shares["2024-05-13"] == 200
    assert shares["2024-11-08"] == 200 and shares["2024-11-11"] == 400 == shares[END]
    assert cash["2024-05-13"] - cash["2024-05-10"] == pytest.approx(800.0)
    assert cash[END] == cash["2024-05-13"]


# Without zipline: what register refuses before it imports zipline.

def test_register_refuses_symbols_of_several_calendars(tmp_path):
    import kdist.zipline

    with pytest.raises(UsageError, match="2 calendars"):
        kdist.zipline.register("x", tmp_path / "k.duckdb", symbols=["600000.SH", "AAPL"])
    with pytest.raises(UsageError, match="no calendar known"):
        kdist.zipline.register("x", tmp_path / "k.duckdb", symbols=["ABC.XX"])


def test_register_without_zipline_says_where_it_goes(tmp_path):
    import importlib.util

    import kdist.zipline
    from kdist.errors import MissingDependencyError

    if importlib.util.find_spec("zipline") is not None:
        pytest.skip("zipline is installed here")
    with pytest.raises(MissingDependencyError, match="environment of its own"):
        kdist.zipline.register("x", tmp_path / "k.duckdb", calendar="XSHG")


class _Writer:
    """A stand-in for zipline's writers: keeps what it is given."""

    def write(self, data=None, **kwargs):
        if data is not None:
            self.data = list(data)
        self.kwargs = kwargs


def test_the_ingest_function_under_kdists_pandas_with_stand_in_writers(db):
    """The ingest function zipline calls, here under pandas 3 (zipline's environment has
    pandas 2): every session filled, bars off the calendar or before the bundle's first
    session left out and counted, zipline's columns and dtypes."""
    import warnings

    import exchange_calendars as xcals

    from kdist.zipline import KdistBundle

    kdist.ingest(SYMBOLS[:3], start=START, end=END, db=db, client="sync", progress=False)
    with duckdb.connect(db) as con:
        con.execute("DELETE FROM kline WHERE symbol = ? AND ts = ?::TIMESTAMP_S", list(GAP))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # exchange_calendars on pandas 3
        calendar = xcals.get_calendar("XSHG", side="right")
    bars, assets, adjustments = _Writer(), _Writer(), _Writer()
    ingest = KdistBundle(db, symbols=None, calendar="XSHG")
    first = pd.Timestamp("2024-03-01")  # as if the calendar began there
    ingest({}, assets, None, bars, adjustments, calendar, first, pd.Timestamp("2026-12-31"),
           None, False, "unused")
    summary = ingest.summary
    assert summary["assets"] == 3 and summary["filled"] == 1
    assert summary["outside"] == 3 * len(pd.bdate_range(START, "2024-02-29"))
    assert summary["off_calendar"] == 3 * 9  # the holidays from March on
    sessions = _sessions(first, END)
    for sid, frame in bars.data:
        assert frame.index.equals(sessions) and frame.index.tz is None
        assert list(frame.columns) == ["open", "high", "low", "close", "volume"]
        assert not frame.isna().any().any()
    filled = dict(bars.data)[0].loc[GAP[1]]
    assert filled["volume"] == 0 and filled["open"] == filled["close"]
    equities = assets.kwargs["equities"]
    assert list(equities["symbol"]) == SYMBOLS[:3]
    assert set(assets.kwargs["exchanges"]["country_code"]) == {"CN"}
    splits = adjustments.kwargs["splits"]
    assert str(splits["effective_date"].dtype) == "datetime64[ns]"
    dividends = adjustments.kwargs["dividends"]
    assert (dividends["pay_date"] == dividends["ex_date"]).all()
    assert dividends["record_date"].isna().all()
