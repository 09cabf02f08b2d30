"""kline stays clustered by symbol while updates append to it (kdist.layout): the bars
updates append are sorted into place once they fill a row group, in one transaction that a
failure or a kill leaves as it was, and reads return the same bars before and after."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap

import duckdb
import pandas as pd
import pytest

import kdist
from kdist import layout

SYMBOLS = kdist.get_provider("synthetic", universe=40).list_symbols()


def _table(db) -> pd.DataFrame:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute("SELECT * FROM kline ORDER BY symbol, freq, adjust, ts").df()


def _physical_symbols(db, after, freq="1d") -> list[str]:
    """The symbols of the series' bars after ``after``, in the order they are stored."""
    with duckdb.connect(str(db), read_only=True) as con:
        return [r[0] for r in con.execute(
            """SELECT symbol FROM kline WHERE freq = ? AND ts > ?::TIMESTAMP_S
               ORDER BY rowid""", [freq, after]).fetchall()]


def _marks(db, freq="1d", adjust="none"):
    with duckdb.connect(str(db), read_only=True) as con:
        return layout.marks(con, freq, adjust)


def _updated(db, days: int, monkeypatch=None, **kw):
    """``days`` daily updates after the import (which ends on 2024-06-28)."""
    provider = kdist.get_provider("synthetic", actions=False)
    reports = []
    for day in pd.bdate_range("2024-07-01", periods=days):
        reports += kdist.update(db, end=day.strftime("%Y-%m-%d"), provider=provider,
                                client="sync", progress=False, **kw)
    return reports


@pytest.fixture
def imported(tmp_path):
    db = tmp_path / "k.duckdb"
    kdist.ingest(SYMBOLS, start="2024-01-01", end="2024-06-28", db=str(db), client="sync",
                 provider=kdist.get_provider("synthetic", actions=False), progress=False)
    return db


def test_updates_mark_where_their_bars_start(imported):
    assert _marks(imported) == (None, None)  # an import alone needs no marks
    _updated(imported, 1)
    start, through = _marks(imported)
    assert start == through == pd.Timestamp("2024-06-28")


def test_a_row_group_of_appended_bars_is_sorted_into_place(imported, monkeypatch):
    # 40 symbols a day: a "row group" of 100 bars fills in three updates.
    monkeypatch.setattr(layout, "TAIL_ROWS", 100)
    monkeypatch.setattr(layout, "RUN_ROWS", 10_000)
    before = _table(imported)
    reports = _updated(imported, 2)
    # Two days of 40 symbols: not due yet, the tail is in arrival order (day by day).
    assert all(r.maintained is None for r in reports)
    tail = _physical_symbols(imported, "2024-06-28")
    assert len(tail) == 80 and tail != sorted(tail)
    reports = _updated_from(imported, "2024-07-03", 1)
    assert reports[-1].timings["maintain"] > 0
    assert "sorted the 120 most recent bars" in reports[-1].maintained
    tail = _physical_symbols(imported, "2024-06-28")
    assert tail == sorted(tail) and len(tail) == 120
    # The same bars as before, plus the three days: nothing lost, nothing doubled.
    after = _table(imported)
    assert len(after) == len(before) + 120
    pd.testing.assert_frame_equal(after[after["ts"] <= "2024-06-28"].reset_index(drop=True),
                                  before)
    assert kdist.check(str(imported))["ok"]
    assert _marks(imported) == (pd.Timestamp("2024-06-28"), pd.Timestamp("2024-07-03"))


def _updated_from(db, first: str, days: int):
    provider = kdist.get_provider("synthetic", actions=False)
    reports = []
    for day in pd.bdate_range(first, periods=days):
        reports += kdist.update(db, end=day.strftime("%Y-%m-%d"), provider=provider,
                                client="sync", progress=False)
    return reports


def test_the_run_is_rewritten_whole_until_it_is_closed(imported, monkeypatch):
    monkeypatch.setattr(layout, "TAIL_ROWS", 40)  # every update sorts
    monkeypatch.setattr(layout, "RUN_ROWS", 120)  # three days make a closed run
    _updated(imported, 2)
    # The run holds both days, sorted as one: each symbol's two bars together.
    assert _physical_symbols(imported, "2024-06-28") == sorted(SYMBOLS * 2)
    assert _marks(imported)[0] == pd.Timestamp("2024-06-28")
    _updated_from(imported, "2024-07-03", 1)
    # Three days: the run is left alone from now on; the next one starts after it.
    assert _marks(imported) == (pd.Timestamp("2024-07-03"), pd.Timestamp("2024-07-03"))
    _updated_from(imported, "2024-07-04", 2)
    assert _physical_symbols(imported, "2024-06-28")[:120] == sorted(SYMBOLS * 3)
    assert _physical_symbols(imported, "2024-07-03") == sorted(SYMBOLS * 2)
    assert kdist.check(str(imported))["ok"]


def test_reads_are_the_same_before_and_after_a_sort(imported, monkeypatch):
    monkeypatch.setattr(layout, "TAIL_ROWS", 10**9)  # never due by itself
    _updated(imported, 5)
    wide = kdist.panel(str(imported), fields="close")
    one = kdist.load(str(imported), SYMBOLS[7])
    with kdist.Store(str(imported)) as store:
        done = store.maintain(force=True)
    assert done.rows == 200 and not done.closed_run
    pd.testing.assert_frame_equal(kdist.panel(str(imported), fields="close"), wide)
    pd.testing.assert_frame_equal(kdist.load(str(imported), SYMBOLS[7]), one)
    with kdist.Store(str(imported)) as store:
        assert store.maintain() is None  # nothing appended since


def test_a_failed_sort_leaves_the_table_and_the_marks(imported, monkeypatch):
    monkeypatch.setattr(layout, "TAIL_ROWS", 10**9)
    _updated(imported, 3)
    before, marks = _table(imported), _marks(imported)
    order = _physical_symbols(imported, "2024-06-28")
    real = layout._set

    def fail(con, key, value):  # after the delete and the insert, before the marks
        raise RuntimeError("disk gone")

    monkeypatch.setattr(layout, "_set", fail)
    with kdist.Store(str(imported)) as store, pytest.raises(RuntimeError, match="disk gone"):
        store.maintain(force=True)
    monkeypatch.setattr(layout, "_set", real)
    pd.testing.assert_frame_equal(_table(imported), before)
    assert _marks(imported) == marks
    assert _physical_symbols(imported, "2024-06-28") == order
    with kdist.Store(str(imported)) as store:  # and the connection still writes
        assert store.maintain(force=True).rows == 120


def test_a_kill_during_the_sort_leaves_the_table_whole(tmp_path):
    """A real kill (SIGKILL) in the middle of a sort of about 600,000 bars: the file opens
    with every bar once and in its old order, and the next sort does the work."""
    db = tmp_path / "k.duckdb"
    many = kdist.get_provider("synthetic", universe=3000).list_symbols()
    provider = kdist.get_provider("synthetic", actions=False)
    kdist.ingest(many, start="2024-06-01", end="2024-06-28", db=str(db), provider=provider,
                 client="sync", progress=False)
    with kdist.Store(str(db)) as store:
        store.mark_appends()
    # 200 days of every symbol in the order daily updates append them: day after day.
    bars = provider.fetch_many(many, ["2024-07-01"] * len(many), "2025-04-04")
    with duckdb.connect(str(db)) as con:
        con.register("b", bars)
        con.execute("""INSERT INTO kline SELECT symbol, '1d', 'none', ts, open, high, low,
                       close, volume, amount, 'synthetic' FROM b ORDER BY ts, symbol""")
    before, order = _table(db), _physical_symbols(db, "2024-06-28")
    # The kill lands inside the transaction: after the delete and the sorted insert, before
    # the marks move and the commit.
    script = textwrap.dedent(f"""
        import time, kdist
        from kdist import layout
        real = layout._set
        def held(con, key, value):
            print("inside", flush=True)
            time.sleep(60)
            real(con, key, value)
        layout._set = held
        with kdist.Store({str(db)!r}) as store:
            store.maintain(force=True)
        print("done", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 120)
        assert ready, "the sort did not start within 120 s"
        assert proc.stdout.readline().strip() == "inside"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    pd.testing.assert_frame_equal(_table(db), before)
    assert _physical_symbols(db, "2024-06-28") == order  # not half-sorted either
    with kdist.Store(str(db)) as store:
        done = store.maintain(force=True)
    assert done.rows == len(order) > 500_000
    assert _physical_symbols(db, "2024-06-28") == sorted(order)
    pd.testing.assert_frame_equal(_table(db), before)


def test_each_series_keeps_its_own_marks(tmp_path, monkeypatch):
    """Minute and daily bars of one store move forward on their own (a daily bar is stamped
    at midnight, before the day's minutes): each series' appended bars are sorted by its
    own marks, and none is stranded behind the other's."""
    monkeypatch.setattr(layout, "TAIL_ROWS", 2 * 240 * 4)  # two days of four symbols' minutes
    monkeypatch.setattr(layout, "RUN_ROWS", 10**9)
    db = str(tmp_path / "k.duckdb")
    four = SYMBOLS[:4]
    provider = kdist.get_provider("synthetic", actions=False)
    for freq in ("1m", "1d"):
        kdist.ingest(four, start="2024-06-24", end="2024-06-28", freq=freq, db=db,
                     provider=provider, client="sync", progress=False)
    for day in pd.bdate_range("2024-07-01", periods=2):
        end = day.strftime("%Y-%m-%d")
        # Minutes first, then the day: the daily bar's midnight is before the minutes'.
        kdist.update(db, end=end, freq="1m", provider=provider, client="sync", progress=False)
        kdist.update(db, end=end, freq="1d", provider=provider, client="sync", progress=False)
    assert _marks(db, "1m") == (pd.Timestamp("2024-06-28 15:00"),
                                pd.Timestamp("2024-07-02 15:00"))
    # The minutes filled their tail and were sorted; the daily series, 8 bars, was not due.
    minutes = _physical_symbols(db, "2024-06-28 15:00", "1m")
    assert minutes == sorted(minutes) and len(minutes) == 2 * 240 * 4
    assert _marks(db, "1d") == (pd.Timestamp("2024-06-28"), pd.Timestamp("2024-06-28"))
    with kdist.Store(db) as store:
        done = store.maintain("1d", "none", force=True)
    assert done.rows == 8 and done.series == "1d none"
    assert _physical_symbols(db, "2024-06-28", "1d") == sorted(four * 2)
    assert kdist.check(db)["ok"]


def test_a_tail_written_in_large_batches_is_left_as_it_is(imported, monkeypatch):
    """A tail of a run's size or more came in large batches (an import of new symbols, a
    catch-up): its chunks are contiguous symbols already; the marks move past it unsorted,
    so no sort grows with what was appended."""
    monkeypatch.setattr(layout, "TAIL_ROWS", 40)
    monkeypatch.setattr(layout, "RUN_ROWS", 200)
    _updated(imported, 1)  # marks, and one day sorted (40 bars)
    assert _marks(imported) == (pd.Timestamp("2024-06-28"), pd.Timestamp("2024-07-01"))
    rows = len(_table(imported))
    # Six more days in one update: a tail of 240 bars, over RUN_ROWS.
    reports = _updated_from(imported, "2024-07-09", 1)
    assert "nothing sorted" in reports[-1].maintained
    assert _marks(imported) == (pd.Timestamp("2024-07-09"), pd.Timestamp("2024-07-09"))
    assert len(_table(imported)) == rows + 240 and kdist.check(str(imported))["ok"]
