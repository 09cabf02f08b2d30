"""Each series' first and last bar, kept by every write (kdist.bounds): whatever a write
deletes and inserts, ``kdist_series`` says what an aggregate of ``kline`` says."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kdist.schema import Adjust, Freq
from kdist.store import Store
from test_store import bars, outcome

DAYS = pd.bdate_range("2024-01-01", "2024-03-29")
SYMBOLS = ["600000.SH", "000001.SZ", "600001.SH", "000002.SZ"]


def aggregate(store, freq="1d", adjust="none"):
    """``Store.series`` as an aggregate of the bars computes it."""
    return store.con.execute(
        """SELECT symbol, arg_max(source, ts) AS source, min(ts)::TIMESTAMP AS first,
                  max(ts)::TIMESTAMP AS last
           FROM kline WHERE freq = ? AND adjust = ? GROUP BY symbol ORDER BY symbol""",
        [freq, adjust]).df()


def write(store, source, plan, freq=Freq.DAY):
    """``plan``: {symbol: (window start, window stop, days of bars to insert)}."""
    frames = [bars(s, days, close=10.0 + i) for i, (s, (_, _, days)) in enumerate(plan.items())
              if len(days)]
    batch = (pd.concat(frames, ignore_index=True) if frames
             else bars("600000.SH", []).iloc[:0])
    windows = pd.DataFrame({"symbol": pd.Series(list(plan), dtype="str"),
                            "start": [pd.Timestamp(lo) for lo, _, _ in plan.values()],
                            "stop": [pd.Timestamp(hi) for _, hi, _ in plan.values()]})
    outcomes = [outcome(s, rows=len(days)) for s, (_, _, days) in plan.items()]
    store.write_batch(batch, outcomes, job_id="job-1", freq=freq, adjust=Adjust.NONE,
                      source=source, windows=windows)


def assert_kept(store, freq="1d"):
    got = store.series(Freq.parse(freq), Adjust.NONE)
    pd.testing.assert_frame_equal(got, aggregate(store, freq), check_dtype=False)
    assert store.check()["stale_bounds"] == 0


def test_import_then_updates_and_refetches(db):
    with Store(db) as store:
        write(store, "a", {s: ("2024-01-01", "2024-02-01", DAYS[DAYS < "2024-02-01"])
                           for s in SYMBOLS})
        assert_kept(store)
        # An update: a few overlap bars replaced and a day added.
        write(store, "a", {s: ("2024-01-29", "2024-02-02", DAYS[(DAYS >= "2024-01-29")
                                                                & (DAYS < "2024-02-02")])
                           for s in SYMBOLS})
        assert_kept(store)
        # A full refetch whose history now starts later: the old first bars are gone.
        write(store, "a", {SYMBOLS[0]: ("2023-01-01", "2024-02-02",
                                        DAYS[(DAYS >= "2024-01-10") & (DAYS < "2024-02-02")])})
        assert_kept(store)
        assert store.series(Freq.DAY, Adjust.NONE).set_index("symbol").loc[
            SYMBOLS[0], "first"] == pd.Timestamp("2024-01-10")


def test_other_sources_and_deletions_are_read_back(db):
    with Store(db) as store:
        write(store, "a", {s: ("2024-01-01", "2024-03-01", DAYS[DAYS < "2024-03-01"])
                           for s in SYMBOLS})
        # Another source takes over the last weeks of one symbol: the older source keeps
        # its first bars, the newer one holds the last.
        write(store, "b", {SYMBOLS[1]: ("2024-02-15", "2024-03-30",
                                        DAYS[DAYS >= "2024-02-15"])})
        assert_kept(store)
        kept = store.con.execute(
            "SELECT source, first_ts, last_ts FROM kdist_series WHERE symbol = ? ORDER BY 1",
            [SYMBOLS[1]]).fetchall()
        assert [k[0] for k in kept] == ["a", "b"]
        assert kept[0][2] < pd.Timestamp("2024-02-15") <= kept[1][1]
        # A window with no bars in it deletes (a vendor that now serves less): read back.
        write(store, "a", {SYMBOLS[2]: ("2024-02-01", "2024-03-01", [])})
        assert_kept(store)
        # Every bar of a symbol deleted: its row goes.
        write(store, "a", {SYMBOLS[3]: ("2023-01-01", "2025-01-01", [])})
        assert_kept(store)
        assert SYMBOLS[3] not in set(store.series(Freq.DAY, Adjust.NONE)["symbol"])


def test_series_are_kept_apart(db):
    with Store(db) as store:
        write(store, "a", {s: ("2024-01-01", "2024-02-01", DAYS[DAYS < "2024-02-01"])
                           for s in SYMBOLS})
        minutes = pd.date_range("2024-01-02 09:31", periods=5, freq="min")
        write(store, "a", {SYMBOLS[0]: ("2024-01-02", "2024-01-03", minutes)},
              freq=Freq.parse("1m"))
        assert_kept(store)
        assert_kept(store, "1m")
        assert len(store.series(Freq.parse("1m"), Adjust.NONE)) == 1


@pytest.mark.parametrize("seed", range(6))
def test_random_writes_keep_the_bounds_exact(db, seed):
    """Random windows (within, around, before and after what is stored; some empty) and
    random bars inside them, from two sources, as imports, updates and refetches write."""
    rng = np.random.default_rng(seed)
    with Store(db) as store:
        for _ in range(12):
            plan = {}
            for symbol in rng.choice(SYMBOLS, size=rng.integers(1, len(SYMBOLS) + 1),
                                     replace=False):
                lo, hi = sorted(rng.choice(len(DAYS) + 1, size=2, replace=False))
                inside = DAYS[lo:hi]
                keep = rng.random(len(inside)) < rng.choice([0.0, 0.5, 1.0])
                stop = DAYS[hi] if hi < len(DAYS) else DAYS[-1] + pd.Timedelta(days=1)
                plan[str(symbol)] = (DAYS[lo], stop, inside[keep])
            write(store, str(rng.choice(["a", "a", "b"])), plan)
            assert_kept(store)


def test_an_import_in_batches_keeps_them_exact_after_every_write(db, monkeypatch):
    """Through the runner: batches cut at row groups split a symbol's run between two
    writes (its outcome goes with the second); after every write the kept bounds are the
    bars' own, taken from the outcomes (no aggregate of the batch)."""
    import kdist
    from kdist import bounds

    seen = []
    write_batch = Store.write_batch

    def checked(self, bars, outcomes, **kwargs):
        rows = write_batch(self, bars, outcomes, **kwargs)
        seen.append((kwargs.get("spans"), bars["symbol"].iat[-1] if len(bars) else None))
        assert bounds.stale(self.con) == 0
        return rows

    monkeypatch.setattr(Store, "write_batch", checked)
    symbols = kdist.get_provider("synthetic", universe=20).list_symbols()
    report = kdist.ingest(symbols, start="2024-01-01", end="2024-06-20", freq="1m", db=db,
                          client="sync", actions=False, batch_rows=130_000, progress=False)
    assert report.status == "done" and len(seen) >= 3
    assert all(spans is not None for spans, _ in seen)
    # Some write ended inside a symbol's run: that symbol's span stopped at its last bar
    # there, before its outcome.
    assert any(last in spans for spans, last in seen[:-1])
    with Store(db) as store:
        assert_kept(store, "1m")


def test_updates_through_the_runner_keep_them_exact(db):
    """Updates that append, and one whose overlap bars changed at the source (the symbol is
    fetched again from its first bar), leave the kept bounds equal to the bars'."""
    import kdist

    symbols = kdist.get_provider("synthetic", universe=30).list_symbols()
    kdist.ingest(symbols, start="2024-01-01", end="2024-06-28", db=db, client="sync",
                 progress=False)
    for end in ("2024-07-05", "2024-07-12"):
        kdist.update(db, end=end, client="sync", progress=False)
        assert kdist.check(db)["stale_bounds"] == 0
    # Another seed: every overlap bar differs, so every symbol is fetched again in full.
    kdist.update(db, end="2024-07-19", provider=kdist.get_provider("synthetic", seed=99),
                 client="sync", progress=False)
    with Store(db) as store:
        assert_kept(store)
        last = store.series(Freq.DAY, Adjust.NONE)["last"]
    assert (last == pd.Timestamp("2024-07-19")).all()


def test_an_updates_overlap_bars_reach_back_over_a_suspension(db):
    """A minute series whose last bar came 18 days after the one before (a suspension): the
    three overlap bars still include the two before it, as a single look 21 days back found."""
    minutes = pd.date_range("2024-03-01 14:51", "2024-03-01 15:00", freq="min")
    with Store(db) as store:
        write(store, "a", {SYMBOLS[0]: ("2024-03-01", "2024-03-02", minutes)},
              freq=Freq.parse("1m"))
        write(store, "a", {SYMBOLS[0]: ("2024-03-19", "2024-03-20",
                                        [pd.Timestamp("2024-03-19 09:31")])},
              freq=Freq.parse("1m"))
        windows, overlap = store.incremental_windows(
            [SYMBOLS[0]], Freq.parse("1m"), Adjust.NONE, "2024-01-01", "2024-03-25", 3)
    assert overlap["ts"].tolist() == [pd.Timestamp("2024-03-01 14:59"),
                                      pd.Timestamp("2024-03-01 15:00"),
                                      pd.Timestamp("2024-03-19 09:31")]
    assert windows["since"].tolist() == [pd.Timestamp("2024-03-01")]
