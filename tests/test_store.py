"""The DuckDB store: tables, replace-by-window writes, the ledger, load, check, locks."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import duckdb
import numpy as np
import pandas as pd
import pytest

import kdist
from kdist.errors import DatabaseLockedError, InvalidSymbolError, SchemaVersionError, StoreError
from kdist.schema import Adjust, Freq, window_bounds
from kdist.store import BLOCK_SIZE, SCHEMA_VERSION, Store

JAN = [f"2024-01-{d:02d}" for d in (2, 3, 4, 5, 8)]
FEB = [f"2024-02-{d:02d}" for d in (1, 2, 5)]


def bars(symbol, days, close=10.0):
    """Clean bars of one symbol: close as given (a number or one per day)."""
    ts = pd.to_datetime(days).astype("datetime64[us]")
    close = np.broadcast_to(np.asarray(close, float), len(ts)).copy()
    return pd.DataFrame(
        {
            "symbol": symbol,
            "ts": ts,
            "open": close,
            "high": close + 1,
            "low": close / 2,
            "close": close,
            "volume": 100.0,
            "amount": close * 100,
        }
    )


def outcome(symbol, status="ok", rows=0, **extra):
    return {
        "symbol": symbol, "status": status, "rows": rows, "first_ts": None, "last_ts": None,
        "attempts": 1, "error_class": None, "error": None, "rejected_rows": 0, "rejected": {},
        **extra,
    }


def windows(symbols, start, end):
    lo, hi = window_bounds(start, end)
    return pd.DataFrame({"symbol": pd.Series(symbols, dtype="str"), "start": lo, "stop": hi})


def write(store, frames, *, start="2024-01-01", end="2024-12-31", outcomes=None, window=None,
          job_id="job-1", freq=Freq.DAY, adjust=Adjust.NONE):
    """Write a batch the way the runner does: every symbol with bars is replaced in its window."""
    batch = pd.concat(frames, ignore_index=True)
    if outcomes is None:
        counts = batch.groupby("symbol").size()
        outcomes = [outcome(s, rows=int(n)) for s, n in counts.items()]
    if window is None:
        window = windows([o["symbol"] for o in outcomes if o["status"] == "ok"], start, end)
    return store.write_batch(
        batch, outcomes, job_id=job_id, freq=freq, adjust=adjust, source="test", windows=window
    )


def rows(db, sql, params=None):
    con = duckdb.connect(db, read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


# --- opening ---------------------------------------------------------------------------------


def test_new_store_creates_tables_and_version(db):
    with Store(db) as store:
        tables = {r[0] for r in store.con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert tables == {"kline", "kdist_meta", "kdist_jobs", "kdist_job_symbols", "kdist_actions",
                      "kdist_action_checks", "kdist_quality", "kdist_findings", "kdist_series"}
    meta = dict(rows(db, "SELECT key, value FROM kdist_meta"))
    assert meta["schema_version"] == SCHEMA_VERSION
    assert meta["created_by"] == f"kdist {kdist.__version__}"
    columns = [r[0] for r in rows(db, "SELECT column_name FROM duckdb_columns() "
                                      "WHERE table_name = 'kline' ORDER BY column_index")]
    assert columns[:11] == ["symbol", "freq", "adjust", "ts", "open", "high", "low", "close",
                            "volume", "amount", "source"]
    types = dict(rows(db, "SELECT column_name, data_type FROM duckdb_columns() "
                          "WHERE table_name = 'kline'"))
    assert types["ts"] == "TIMESTAMP_S" and types["open"] == "DOUBLE" and types["volume"] == "DOUBLE"
    assert rows(db, "SELECT block_size FROM pragma_database_size()") == [(BLOCK_SIZE,)]


def test_reopening_keeps_data_and_meta(db):
    with Store(db) as store:
        write(store, [bars("600000.SH", JAN)])
    with Store(db) as store:
        assert len(store.load()) == len(JAN)
    assert rows(db, "SELECT count(*) FROM kdist_meta WHERE key = 'schema_version'") == [(1,)]


def test_store_creates_missing_directories(tmp_path):
    path = tmp_path / "a" / "b" / "kdist.duckdb"
    with Store(path) as store:
        assert store.check()["rows"] == 0
    assert path.exists()


def test_uncreatable_directory_is_a_store_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="Cannot create the directory") as info:
        Store(blocker / "kdist.duckdb")
    assert info.value.path == str(blocker / "kdist.duckdb")


def test_read_only_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nowhere" / "missing.duckdb"
    with pytest.raises(StoreError, match="No kdist database at") as info:
        Store(path, read_only=True)
    assert str(path) in str(info.value) and info.value.path == str(path)
    assert not path.exists() and not path.parent.exists()
    with pytest.raises(StoreError, match=str(path)):
        kdist.load(str(path))


def test_read_only_on_a_plain_duckdb_file(db):
    duckdb.connect(db).close()
    with pytest.raises(StoreError, match="is not a kdist database"):
        Store(db, read_only=True)


def test_not_a_database_file_is_a_store_error(tmp_path):
    path = tmp_path / "notes.duckdb"
    path.write_text("just some text, not a database\n" * 100)
    with pytest.raises(StoreError, match="Cannot use database") as info:
        Store(path)
    assert info.value.path == str(path)


def test_foreign_kline_table_is_refused(db):
    con = duckdb.connect(db)
    con.execute("CREATE TABLE kline (code VARCHAR, day DATE, price DECIMAL(10,2))")
    con.execute("INSERT INTO kline VALUES ('x', DATE '2024-01-02', 1.5)")
    con.close()
    for read_only in (False, True):
        with pytest.raises(SchemaVersionError, match="'kline' table that kdist did not create"):
            Store(db, read_only=read_only)
    # Nothing was added or changed.
    assert rows(db, "SELECT table_name FROM duckdb_tables()") == [("kline",)]
    assert rows(db, "SELECT count(*) FROM kline") == [(1,)]


def test_other_schema_version_is_refused(db):
    with Store(db) as store:
        write(store, [bars("600000.SH", JAN)])
        store.con.execute("UPDATE kdist_meta SET value = '99' WHERE key = 'schema_version'")
    for read_only in (False, True):
        with pytest.raises(SchemaVersionError) as info:
            Store(db, read_only=read_only)
        assert "schema version 99" in str(info.value) and f"uses {SCHEMA_VERSION}" in str(info.value)
        assert info.value.found == "99" and info.value.path == db
    assert rows(db, "SELECT count(*) FROM kline") == [(len(JAN),)]


def test_missing_schema_version_is_refused(db):
    Store(db).close()
    con = duckdb.connect(db)
    con.execute("DELETE FROM kdist_meta")
    con.close()
    with pytest.raises(SchemaVersionError) as info:
        Store(db)
    assert info.value.found is None


# --- replace-by-window writes ----------------------------------------------------------------


def test_write_returns_rows_and_stores_values(db):
    with Store(db) as store:
        assert write(store, [bars("600000.SH", JAN, close=[1, 2, 3, 4, 5])]) == len(JAN)
        loaded = store.load("600000.SH")
    assert [str(t.date()) for t in loaded["ts"]] == JAN
    assert loaded["close"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert loaded["high"].tolist() == [2.0, 3.0, 4.0, 5.0, 6.0]
    assert set(loaded["source"]) == {"test"}
    assert rows(db, "SELECT DISTINCT freq, adjust FROM kline") == [("1d", "none")]


def test_batch_of_many_frames_leaves_no_free_blocks(db):
    """Two row groups of bars concatenated from 96 frames, as the runner builds a batch: the
    file holds them once. A string column of many Arrow chunks let DuckDB insert the pieces
    in parallel into row groups of their own, rewritten at the checkpoint, and half the file
    was free blocks."""
    days = pd.bdate_range("2015-01-01", periods=2560).strftime("%Y-%m-%d")
    frames = [bars(f"{600000 + i:06d}.SH", days, close=np.arange(1.0, 2561.0)) for i in range(96)]
    for frame in frames:
        frame["symbol"] = frame["symbol"].astype("str")
    with Store(db) as store:
        assert write(store, frames, start="2015-01-01", end="2025-12-31") == 96 * 2560
    ((free, used),) = rows(
        db, "SELECT free_blocks, used_blocks FROM pragma_database_size()"
    )
    assert used > 0 and free == 0


def test_same_window_twice_no_duplicates(db, fingerprint):
    with Store(db) as store:
        write(store, [bars("600000.SH", JAN + FEB), bars("000001.SZ", JAN)])
    first = fingerprint(db)
    with Store(db) as store:
        write(store, [bars("600000.SH", JAN + FEB), bars("000001.SZ", JAN)], job_id="job-2")
        assert store.check()["duplicate_keys"] == 0
        assert store.check()["rows"] == len(JAN + FEB) + len(JAN)
    pd.testing.assert_frame_equal(fingerprint(db), first)
    assert first.set_index("symbol")["bars"].to_dict() == {"000001.SZ": 5, "600000.SH": 8}


def test_second_write_replaces_changed_values(db, fingerprint):
    with Store(db) as store:
        write(store, [bars("600000.SH", JAN, close=10.0)])
    before = fingerprint(db)
    with Store(db) as store:
        write(store, [bars("600000.SH", JAN, close=[10, 10, 20, 10, 10])])
        loaded = store.load("600000.SH")
    assert loaded["close"].tolist() == [10.0, 10.0, 20.0, 10.0, 10.0]
    assert len(loaded) == len(JAN)
    after = fingerprint(db)
    assert after["bars"].tolist() == before["bars"].tolist()
    assert after["value_hash"].tolist() != before["value_hash"].tolist()


def test_replace_drops_bars_the_new_data_no_longer_has(db):
    with Store(db) as store:
        write(store, [bars("600000.SH", JAN)])
        write(store, [bars("600000.SH", JAN[:2])])
        assert [str(t.date()) for t in store.load()["ts"]] == JAN[:2]


def test_rows_outside_the_window_untouched(db):
    with Store(db) as store:
        write(store, [bars("600000.SH", JAN + FEB, close=10.0)])
        write(store, [bars("600000.SH", FEB, close=50.0)], start="2024-02-01", end="2024-02-29")
        loaded = store.load("600000.SH")
    assert loaded["close"].tolist() == [10.0] * len(JAN) + [50.0] * len(FEB)


def test_window_end_day_is_replaced_including_intraday_bars(db):
    intraday = ["2024-01-02 09:31", "2024-01-02 15:00", "2024-01-03 09:31"]
    with Store(db) as store:
        write(store, [bars("600000.SH", intraday, close=1.0)], freq=Freq.MIN1)
        write(store, [bars("600000.SH", intraday[:2], close=2.0)], start="2024-01-02",
              end="2024-01-02", freq=Freq.MIN1)
        loaded = store.load("600000.SH", freq="1m")
    assert loaded["close"].tolist() == [2.0, 2.0, 1.0]


def test_other_symbols_freqs_and_adjusts_untouched(db):
    with Store(db) as store:
        write(store, [bars("600000.SH", JAN, 1.0), bars("000001.SZ", JAN, 1.0)])
        write(store, [bars("600000.SH", JAN, 2.0)], adjust=Adjust.QFQ)
        write(store, [bars("600000.SH", ["2024-01-05"], 3.0)], freq=Freq.WEEK)
        write(store, [bars("600000.SH", JAN, 9.0)])  # replaces only 1d/none of 600000.SH
        assert store.load("000001.SZ")["close"].tolist() == [1.0] * 5
        assert store.load("600000.SH")["close"].tolist() == [9.0] * 5
        assert store.load("600000.SH", adjust="qfq")["close"].tolist() == [2.0] * 5
        assert store.load("600000.SH", freq="1w")["close"].tolist() == [3.0]


def test_failed_and_empty_symbols_keep_their_rows(db):
    with Store(db) as store:
        write(store, [bars("600000.SH", JAN, 1.0), bars("000001.SZ", JAN, 1.0),
                      bars("AAPL", JAN, 1.0)])
        outcomes = [
            outcome("600000.SH", rows=5),
            outcome("000001.SZ", "failed", error_class="TransientProviderError", error="reset"),
            outcome("AAPL", "empty"),
        ]
        # As the runner does: only symbols that came back ok are in `windows`.
        write(store, [bars("600000.SH", JAN, 2.0)], outcomes=outcomes)
        loaded = store.load()
    closes = loaded.groupby("symbol")["close"].apply(list).to_dict()
    assert closes == {"000001.SZ": [1.0] * 5, "600000.SH": [2.0] * 5, "AAPL": [1.0] * 5}


def test_empty_batch_with_only_outcomes(db):
    with Store(db) as store:
        write(store, [bars("600000.SH", JAN)])
        store.start_job(_job("job-2"), ["600000.SH"])
        empty = bars("600000.SH", [])
        n = store.write_batch(
            empty,
            [outcome("600000.SH", "failed", error="boom")],
            job_id="job-2",
            freq=Freq.DAY,
            adjust=Adjust.NONE,
            source="test",
            windows=windows([], "2024-01-01", "2024-12-31"),
        )
        assert n == 0
        assert len(store.load()) == len(JAN)
        assert store.job_symbols("job-2")["status"].tolist() == ["failed"]


def test_failed_write_rolls_back_the_whole_batch(db, fingerprint):
    with Store(db) as store:
        write(store, [bars("600000.SH", JAN, 1.0), bars("000001.SZ", JAN, 1.0)])
    before = fingerprint(db)
    bad = bars("000001.SZ", JAN, 2.0)
    bad["ts"] = bad["ts"].astype(str).where(bad.index != 3, "not a time")
    with Store(db) as store:
        with pytest.raises(StoreError, match="Cannot use database .*Conversion Error"):
            # The delete of both windows runs, then the insert fails on the bad timestamp.
            write(store, [bars("600000.SH", JAN, 2.0).astype({"ts": str}), bad])
        # Nothing of the batch is there, and the connection is still usable.
        pd.testing.assert_frame_equal(store.fingerprint(), before)
        write(store, [bars("600000.SH", JAN, 3.0)])
        assert store.load("600000.SH")["close"].tolist() == [3.0] * 5


def test_non_database_error_rolls_back_too(db):
    with Store(db) as store:
        with pytest.raises(KeyError):
            store.start_job({"job_id": "half"}, ["600000.SH"])  # no "mode"
        # The half-done transaction is gone: the next one works and nothing was recorded.
        store.start_job(_job("job-2"), ["600000.SH"])
        assert store.jobs()["job_id"].tolist() == ["job-2"]
        assert store.con.execute(
            "SELECT count(*) FROM kdist_job_symbols WHERE job_id = 'half'"
        ).fetchone() == (0,)


def test_sql_metacharacters_are_plain_values(db):
    nasty = [
        "'; DROP TABLE kline; --",
        'x" OR "1"="1',
        "a'); DELETE FROM kdist_jobs; --",
        "../../etc/passwd",
        "a\x00b",
        "😀" * 3,
        "Z" * 10_000,
    ]
    with Store(db) as store:
        store.start_job(_job("job-1"), nasty)
        write(store, [bars(s, JAN[:2], float(i + 1)) for i, s in enumerate(nasty)])
        store.finish_job("job-1", status="done", elapsed_s=0.1)
        loaded = store.con.execute(
            "SELECT symbol, close FROM kline WHERE symbol = ? ORDER BY ts", [nasty[0]]
        ).fetchall()
        assert loaded == [(nasty[0], 1.0), (nasty[0], 1.0)]
        assert set(store.load()["symbol"]) == set(nasty)
        with pytest.raises(InvalidSymbolError):
            store.load(nasty[0])  # load() takes symbols as users type them: validated
        assert store.check()["rows"] == 2 * len(nasty)
        assert store.jobs()["symbols_ok"].tolist() == [len(nasty)]
        assert set(store.job_symbols("job-1")["symbol"]) == set(nasty)
    tables = {r[0] for r in rows(db, "SELECT table_name FROM duckdb_tables()")}
    assert tables == {"kline", "kdist_meta", "kdist_jobs", "kdist_job_symbols", "kdist_actions",
                      "kdist_action_checks", "kdist_quality", "kdist_findings", "kdist_series"}


def test_invalid_symbols_never_reach_the_database(db, fingerprint):
    kdist.ingest(["600000.SH"], start="2024-01-02", end="2024-01-12", db=db, client="sync")
    before = fingerprint(db)
    with pytest.raises(InvalidSymbolError, match="DROP TABLE"):
        kdist.ingest(["600000.SH", "'; DROP TABLE kline; --"], start="2024-01-02",
                     end="2024-01-12", db=db, client="sync")
    pd.testing.assert_frame_equal(fingerprint(db), before)
    assert rows(db, "SELECT count(*) FROM kdist_jobs") == [(1,)]


# --- the ledger ------------------------------------------------------------------------------


def _job(job_id, **extra):
    return {"job_id": job_id, "mode": "sync", "provider": "synthetic", "freq": "1d",
            "adjust": "none", "start": pd.Timestamp("2024-01-01").date(), "end": "2024-01-31",
            "provider_options": {"seed": 3}, **extra}


def test_start_job_records_running_and_pending(db):
    with Store(db) as store:
        store.start_job(_job("job-1", note="fallback: no cluster"), ["600000.SH", "000001.SZ"])
        jobs = store.jobs()
        symbols = store.job_symbols("job-1")
    job = jobs.iloc[0]
    assert (job["job_id"], job["status"], job["mode"], job["provider"]) == (
        "job-1", "running", "sync", "synthetic")
    assert job["n_symbols"] == 2 and job["note"] == "fallback: no cluster"
    assert str(job["start"].date()) == "2024-01-01" and str(job["end"].date()) == "2024-01-31"
    assert symbols["symbol"].tolist() == ["000001.SZ", "600000.SH"]
    assert symbols["status"].tolist() == ["pending", "pending"]
    assert rows(db, "SELECT provider_options, kdist_version FROM kdist_jobs") == [
        ('{"seed": 3}', kdist.__version__)]


def test_ledger_outcomes_and_finish_counts(db):
    jan = bars("600000.SH", JAN)
    with Store(db) as store:
        store.start_job(_job("job-1"), ["600000.SH", "000001.SZ", "AAPL", "MSFT"])
        write(
            store,
            [jan],
            outcomes=[
                outcome("600000.SH", rows=5, first_ts=jan["ts"].iat[0], last_ts=jan["ts"].iat[-1],
                        attempts=2, rejected_rows=3, rejected={"high below low": 2,
                                                               "negative volume": 1}),
                outcome("000001.SZ", "failed", attempts=3, error_class="TransientProviderError",
                        error="connection reset"),
            ],
        )
        write(store, [bars("AAPL", [])], outcomes=[outcome("AAPL", "empty")])
        store.finish_job("job-1", status="partial", elapsed_s=2.5, note="one failed")
        ledger = store.job_symbols("job-1").set_index("symbol")
        failed = store.job_symbols("job-1", status="failed")
        job = store.jobs().iloc[0]
    assert ledger["status"].to_dict() == {
        "000001.SZ": "failed", "600000.SH": "ok", "AAPL": "empty", "MSFT": "pending"}
    ok = ledger.loc["600000.SH"]
    assert (ok["rows"], ok["attempts"], ok["rejected_rows"]) == (5, 2, 3)
    assert str(ok["first_ts"].date()) == JAN[0] and str(ok["last_ts"].date()) == JAN[-1]
    assert ok["rejected"] == '{"high below low": 2, "negative volume": 1}'
    assert failed["symbol"].tolist() == ["000001.SZ"]
    assert failed["error_class"].tolist() == ["TransientProviderError"]
    assert failed["error"].tolist() == ["connection reset"]
    assert failed["attempts"].tolist() == [3]
    assert (job["status"], job["symbols_ok"], job["symbols_empty"], job["symbols_failed"]) == (
        "partial", 1, 1, 1)
    assert (job["rows_written"], job["rejected_rows"], job["elapsed_s"]) == (5, 3, 2.5)
    assert job["note"] == "one failed" and job["finished_at"] >= job["created_at"]


def test_rewriting_a_symbol_replaces_its_ledger_row(db):
    with Store(db) as store:
        store.start_job(_job("job-1"), ["600000.SH"])
        write(store, [bars("600000.SH", [])], outcomes=[outcome("600000.SH", "failed", error="x")])
        write(store, [bars("600000.SH", JAN)])  # a retry within the job succeeded
        ledger = store.job_symbols("job-1")
        store.finish_job("job-1", status="done", elapsed_s=1.0)
        job = store.jobs().iloc[0]
    assert ledger["status"].tolist() == ["ok"] and ledger["rows"].tolist() == [5]
    assert (job["symbols_ok"], job["symbols_failed"], job["rows_written"]) == (1, 0, 5)


def test_jobs_newest_first_and_ledgers_separate(db):
    with Store(db) as store:
        store.start_job(_job("job-1"), ["600000.SH"])
        store.start_job(_job("job-2"), ["000001.SZ"])
        assert store.jobs()["job_id"].tolist() == ["job-2", "job-1"]
        assert store.job_symbols("job-1")["symbol"].tolist() == ["600000.SH"]
        assert store.job_symbols("job-3").empty


# --- reading ---------------------------------------------------------------------------------


@pytest.fixture
def filled(db):
    with Store(db) as store:
        write(store, [bars("600000.SH", JAN + FEB, 11.0), bars("000001.SZ", JAN, 12.0),
                      bars("AAPL", FEB, 13.0)])
        write(store, [bars("600000.SH", JAN, 14.0)], adjust=Adjust.QFQ)
        write(store, [bars("600000.SH", ["2024-01-05", "2024-01-12"], 15.0)], freq=Freq.WEEK)
    return db


def test_load_everything_sorted(filled):
    loaded = kdist.load(filled)
    assert list(loaded.columns) == ["symbol", "ts", "open", "high", "low", "close", "volume",
                                    "amount", "source"]
    assert loaded["symbol"].tolist() == ["000001.SZ"] * 5 + ["600000.SH"] * 8 + ["AAPL"] * 3
    assert loaded.groupby("symbol")["ts"].apply(lambda t: t.is_monotonic_increasing).all()
    assert str(loaded["ts"].dtype).startswith("datetime64")


def test_load_filters_symbols(filled):
    assert set(kdist.load(filled, "AAPL")["symbol"]) == {"AAPL"}
    assert set(kdist.load(filled, ["AAPL", "000001.SZ"])["symbol"]) == {"AAPL", "000001.SZ"}
    assert kdist.load(filled, ["MSFT"]).empty
    assert kdist.load(filled, []).empty


def test_load_start_end_inclusive(filled):
    loaded = kdist.load(filled, "600000.SH", start="2024-01-04", end="2024-02-01")
    assert [str(t.date()) for t in loaded["ts"]] == ["2024-01-04", "2024-01-05", "2024-01-08",
                                                     "2024-02-01"]
    assert len(kdist.load(filled, "600000.SH", start="2024-02-01")) == 3
    assert len(kdist.load(filled, "600000.SH", end="2024-01-03")) == 2


def test_load_freq_and_adjust(filled):
    assert kdist.load(filled, "600000.SH", adjust="qfq")["close"].tolist() == [14.0] * 5
    weekly = kdist.load(filled, freq="1w")
    assert weekly["close"].tolist() == [15.0, 15.0]
    assert kdist.load(filled, freq="1w", adjust="hfq").empty
    with pytest.raises(kdist.UsageError, match="Unknown freq"):
        kdist.load(filled, freq="daily")


def test_check_clean_store(filled):
    result = kdist.check(filled)
    assert result == {"rows": 16 + 5 + 2, "duplicate_keys": 0, "ohlc_violations": 0,
                      "non_positive_prices": 0, "missing_prices": 0, "negative_volume": 0,
                      "stale_bounds": 0, "ok": True}


def test_check_finds_problems_inserted_with_sql(filled):
    con = duckdb.connect(filled)
    con.execute("INSERT INTO kline SELECT * FROM kline WHERE symbol = 'AAPL' AND ts = '2024-02-01'")
    con.execute("INSERT INTO kline SELECT * FROM kline WHERE symbol = 'AAPL' AND ts = '2024-02-02'")
    con.execute("""INSERT INTO kline VALUES
        ('BAD1', '1d', 'none', '2024-01-02', 10, 9, 11, 10, 100, 1000, 'sql'),   -- high < low
        ('BAD2', '1d', 'none', '2024-01-02', 10, 11, 9, 12, 100, 1000, 'sql'),   -- close > high
        ('BAD3', '1d', 'none', '2024-01-02', 0, 1, 0, 1, 100, 1000, 'sql'),      -- zero price
        ('BAD4', '1d', 'none', '2024-01-02', NULL, 1, 1, 1, 100, 1000, 'sql'),   -- missing open
        ('BAD5', '1d', 'none', '2024-01-02', 1, 'nan', 1, 1, 100, 1000, 'sql'),  -- NaN high
        ('BAD6', '1d', 'none', '2024-01-02', 1, 1, 1, 1, -100, 1000, 'sql'),     -- volume < 0
        ('NEG', '1d', 'qfq', '2024-01-02', -2, -1, -3, -2, 100, 1000, 'sql')     -- fine for qfq
    """)
    con.close()
    result = kdist.check(filled)
    assert result["duplicate_keys"] == 2
    assert result["ohlc_violations"] == 2
    assert result["non_positive_prices"] == 1
    assert result["missing_prices"] == 2
    assert result["negative_volume"] == 1
    assert result["rows"] == 23 + 2 + 7
    # Bars inserted behind kdist's back: the kept first and last bars no longer hold.
    assert result["stale_bounds"] == 7
    assert result["ok"] is False
    with kdist.Store(filled) as store:
        store.rebuild_bounds()
    assert kdist.check(filled)["stale_bounds"] == 0


def test_fingerprint_equal_for_equal_data_whatever_the_batches(tmp_path):
    one, two = str(tmp_path / "one.duckdb"), str(tmp_path / "two.duckdb")
    with Store(one) as store:
        write(store, [bars("600000.SH", JAN + FEB, 1.0), bars("000001.SZ", JAN, 2.0)])
    with Store(two) as store:
        # Other batches, other order, a re-write in between: the same stored data.
        write(store, [bars("000001.SZ", JAN, 2.0)])
        write(store, [bars("600000.SH", FEB, 9.0)])
        write(store, [bars("600000.SH", JAN + FEB, 1.0)])
        write(store, [bars("000001.SZ", JAN, 2.0)])
    with Store(one, read_only=True) as a, Store(two, read_only=True) as b:
        pd.testing.assert_frame_equal(a.fingerprint(), b.fingerprint())
        assert a.fingerprint()["bars"].tolist() == [5, 8]


@pytest.mark.parametrize("column, value", [("close", 1.0000001), ("volume", 101.0), ("open", 0.99)])
def test_fingerprint_changes_when_one_value_changes(tmp_path, column, value):
    one, two = str(tmp_path / "one.duckdb"), str(tmp_path / "two.duckdb")
    changed = bars("600000.SH", JAN, 1.0)
    changed.loc[2, column] = value
    with Store(one) as store:
        write(store, [bars("600000.SH", JAN, 1.0), bars("000001.SZ", JAN, 2.0)])
    with Store(two) as store:
        write(store, [changed, bars("000001.SZ", JAN, 2.0)])
    with Store(one, read_only=True) as a, Store(two, read_only=True) as b:
        fa, fb = a.fingerprint().set_index("symbol"), b.fingerprint().set_index("symbol")
    assert fa.loc["600000.SH", "bars"] == fb.loc["600000.SH", "bars"]
    assert fa.loc["600000.SH", "value_hash"] != fb.loc["600000.SH", "value_hash"]
    assert fa.loc["000001.SZ", "value_hash"] == fb.loc["000001.SZ", "value_hash"]


def test_fingerprint_sees_a_duplicated_bar(filled, fingerprint):
    before = fingerprint(filled).set_index("symbol")
    con = duckdb.connect(filled)
    con.execute("INSERT INTO kline SELECT * FROM kline WHERE symbol = 'AAPL' LIMIT 1")
    con.close()
    after = fingerprint(filled).set_index("symbol")
    assert after.loc["AAPL", "bars"] == before.loc["AAPL", "bars"] + 1
    assert after.loc["AAPL", "value_hash"] != before.loc["AAPL", "value_hash"]
    assert after.loc["600000.SH"].tolist() == before.loc["600000.SH"].tolist()


def test_fingerprint_per_freq_and_adjust(filled):
    with Store(filled, read_only=True) as store:
        assert store.fingerprint("1w")["bars"].tolist() == [2]
        assert store.fingerprint("1d", "qfq")["symbol"].tolist() == ["600000.SH"]
        assert store.fingerprint("1d", "hfq").empty


def test_summary(filled):
    with Store(filled, read_only=True) as store:
        summary = store.catalog()
    row = summary[(summary["symbol"] == "600000.SH") & (summary["freq"] == "1d")
                  & (summary["adjust"] == "none")].iloc[0]
    assert row["bars"] == 8 and str(row["first"].date()) == JAN[0] and str(row["last"].date()) == FEB[-1]
    assert len(summary) == 5


def test_series_lists_one_freq_and_adjust_as_the_catalog_does(filled):
    with Store(filled, read_only=True) as store:
        summary = store.catalog()
        for freq, adjust in [(Freq.DAY, Adjust.NONE), (Freq.DAY, Adjust.QFQ),
                             (Freq.WEEK, Adjust.NONE), (Freq.MIN1, Adjust.NONE)]:
            series = store.series(freq, adjust)
            mine = summary[(summary["freq"] == freq.value) & (summary["adjust"] == adjust.value)]
            assert series["symbol"].tolist() == mine["symbol"].tolist()
            assert series["first"].tolist() == mine["first"].tolist()
            assert series["last"].tolist() == mine["last"].tolist()
            assert set(series["source"]) <= {"test"}


def _windows(store, end, symbols=("600000.SH", "000001.SZ", "NEW.SZ")):
    return store.incremental_windows(list(symbols), Freq.DAY, Adjust.NONE,
                                     pd.Timestamp("2023-12-01"), pd.Timestamp(end), 2)


@pytest.mark.parametrize("end", ["2025-01-01", "2024-02-02", "2024-01-04"])
def test_windows_after_series_are_the_windows_of_a_fresh_connection(filled, end):
    # An update reads series() and then the windows on one connection; the windows reuse
    # series()' bounds only when every stored bar is before `end` (the first end here).
    with Store(filled, read_only=True) as store:
        expected = _windows(store, end)
    with Store(filled, read_only=True) as store:
        store.series(Freq.DAY, Adjust.NONE)
        got = _windows(store, end)
    for want, have in zip(expected, got):
        pd.testing.assert_frame_equal(have, want)
    # Ordered whatever plan the scan ran with: unordered, CI once saw the two differ.
    assert got[1][["symbol", "ts"]].equals(
        got[1][["symbol", "ts"]].sort_values(["symbol", "ts"], ignore_index=True))
    # The last two bars before `end`, unless one is further back than the slice reaches.
    assert sorted(got[1].loc[got[1]["symbol"] == "600000.SH", "ts"].dt.strftime("%Y-%m-%d")) \
        == {"2025-01-01": FEB[-2:], "2024-02-02": FEB[:1], "2024-01-04": JAN[:2]}[end]


def test_windows_of_a_symbol_named_twice_are_its_windows(filled):
    with Store(filled, read_only=True) as store:
        once = _windows(store, "2025-01-01")
        twice = _windows(store, "2025-01-01", ("600000.SH", "600000.SH", "000001.SZ", "NEW.SZ"))
    assert twice[0]["symbol"].tolist() == ["600000.SH", "600000.SH", "000001.SZ", "NEW.SZ"]
    pd.testing.assert_frame_equal(twice[0].iloc[1:].reset_index(drop=True), once[0])
    pd.testing.assert_frame_equal(twice[1], once[1])


def test_a_write_after_series_makes_the_windows_read_the_file_again(filled):
    with Store(filled) as store:
        store.series(Freq.DAY, Adjust.NONE)
        march = ["2024-03-01", "2024-03-04"]
        write(store, [bars("000001.SZ", march, 16.0)], start=march[0], end=march[-1])
        windows_, overlap = _windows(store, "2025-01-01", ["000001.SZ"])
    assert sorted(overlap["ts"].dt.strftime("%Y-%m-%d")) == march
    assert str(windows_["since"].iat[0].date()) == march[0]


def test_reads_return_ts_as_datetime64_us(filled):
    """kline.ts is TIMESTAMP_S on disk; every read gives pandas what it gave before."""
    with Store(filled) as store:
        store.start_job(_job("job-9"), ["600000.SH"])
        jan = bars("600000.SH", JAN)
        write(store, [jan], job_id="job-9", outcomes=[
            outcome("600000.SH", rows=5, first_ts=jan["ts"].iat[0], last_ts=jan["ts"].iat[-1],
                    window_start=jan["ts"].iat[0])])
    with Store(filled, read_only=True) as store:
        loaded = store.load()
        summary = store.catalog()
        windows_, overlap = store.incremental_windows(
            ["600000.SH", "NEW.SZ"], Freq.DAY, Adjust.NONE, pd.Timestamp("2024-01-01"),
            pd.Timestamp("2025-01-01"), 2)
        ledger = store.job_symbols("job-9")
        fp = store.fingerprint()
    us = np.dtype("datetime64[us]")
    assert loaded["ts"].dtype == us
    assert (summary["first"].dtype, summary["last"].dtype, summary["updated"].dtype) == (us,) * 3
    assert overlap["ts"].dtype == us and windows_["since"].dtype == us
    assert sorted(overlap["ts"].dt.strftime("%Y-%m-%d")) == JAN[-2:]
    assert (ledger["first_ts"].dtype, ledger["last_ts"].dtype, ledger["window_start"].dtype) == (
        us,) * 3
    assert fp["bars"].dtype == np.int64 and fp["value_hash"].map(type).eq(str).all()


def test_fingerprint_hashes_ts_as_microsecond_timestamps(filled):
    """Fingerprints are what schema version 1 (ts TIMESTAMP) gave for the same bars."""
    with Store(filled, read_only=True) as store:
        got = store.fingerprint()
        want = store.con.execute(
            """SELECT symbol, count(*) AS bars,
                      sum(hash(ts::TIMESTAMP, open, high, low, close, volume)::HUGEINT)::VARCHAR
                          AS value_hash
               FROM (SELECT * REPLACE (ts::TIMESTAMP AS ts) FROM kline)
               WHERE freq = '1d' AND adjust = 'none' GROUP BY symbol ORDER BY symbol"""
        ).df()
    pd.testing.assert_frame_equal(got, want)


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_any_datetime_unit_is_stored_exactly(db, unit):
    times = ["2024-01-02 09:31:00", "2024-01-02 09:31:59", "1969-12-31 23:59:59",
             "2199-12-31 15:00:00"]
    frame = bars("600000.SH", times)
    frame["ts"] = frame["ts"].astype(f"datetime64[{unit}]")
    with Store(db) as store:
        write(store, [frame], start="1969-01-01", end="2200-01-01", freq=Freq.MIN1)
        loaded = store.load(freq="1m")
    assert loaded["ts"].dtype == np.dtype("datetime64[us]")
    assert loaded["ts"].tolist() == sorted(pd.Timestamp(t) for t in times)


def test_sub_second_bars_are_refused_not_rounded(db, fingerprint):
    with Store(db) as store:
        write(store, [bars("600000.SH", JAN)])
    before = fingerprint(db)
    bad = bars("000001.SZ", pd.to_datetime(["2024-01-02 09:31:00", "2024-01-02 09:31:00.500",
                                            "2024-01-02 09:32:59.999999"], format="ISO8601"))
    with Store(db) as store:
        with pytest.raises(StoreError) as info:
            write(store, [bars("600000.SH", JAN, 2.0), bad], freq=Freq.MIN1)
        err = info.value
        assert "2 bars with sub-second timestamps" in str(err)
        assert "000001.SZ 2024-01-02 09:31:00.500000" in str(err) and err.path == db
        # Nothing of the batch was written, and the store still works.
        write(store, [bars("000001.SZ", ["2024-01-02 09:31:00"])], freq=Freq.MIN1)
    pd.testing.assert_frame_equal(fingerprint(db), before)
    assert kdist.load(db, freq="1m")["ts"].tolist() == [pd.Timestamp("2024-01-02 09:31:00")]


def test_window_bounds_with_sub_second_parts_replace_exactly(db):
    # Stored ts are whole seconds and the delete compares them with the bounds rounded up:
    # ts >= 09:31:00.3 must not take the 09:31:00 bar, ts < 09:31:01.5 must take 09:31:01.
    minutes = ["2024-01-02 09:31:00", "2024-01-02 09:31:01", "2024-01-02 09:31:02"]
    window = pd.DataFrame({"symbol": pd.Series(["600000.SH"], dtype="str"),
                           "start": [pd.Timestamp("2024-01-02 09:31:00.300")],
                           "stop": [pd.Timestamp("2024-01-02 09:31:01.500")]})
    with Store(db) as store:
        write(store, [bars("600000.SH", minutes, 1.0)], freq=Freq.MIN1)
        write(store, [bars("600000.SH", [])], freq=Freq.MIN1, window=window,
              outcomes=[outcome("600000.SH", rows=0)])
        kept = store.load(freq="1m")["ts"].dt.strftime("%H:%M:%S").tolist()
    assert kept == ["09:31:00", "09:31:02"]


def test_reader_can_register_frames_right_after_opening(filled):
    # DuckDB 2.0 refuses register() while a result is not read to its end: opening and
    # check() must leave none behind.
    with Store(filled, read_only=True) as store:
        assert store.stored_symbols(["AAPL", "MSFT"], Freq.DAY, Adjust.NONE) == {"AAPL"}
        store.check()
        assert store.stored_symbols(["AAPL"], Freq.DAY, Adjust.NONE) == {"AAPL"}


# --- locks -----------------------------------------------------------------------------------

HOLDER = textwrap.dedent(
    """
    import sys, duckdb
    con = duckdb.connect(sys.argv[1])
    print("ready", flush=True)
    sys.stdin.readline()
    con.execute("INSERT INTO kdist_meta VALUES ('holder', 'still writing')")
    print(con.execute("SELECT value FROM kdist_meta WHERE key = 'holder'").fetchone()[0], flush=True)
    con.close()
    """
)


@pytest.fixture
def holder(db):
    """Another process that holds ``db`` read-write until told to write once and exit."""
    Store(db).close()
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, db],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()
        proc.stdin.close()
        proc.stderr.close()


def test_locked_database_names_the_holder(db, holder):
    for read_only in (False, True):
        with pytest.raises(DatabaseLockedError) as info:
            Store(db, read_only=read_only)
        err = info.value
        assert err.pid == holder.pid
        assert f"(PID {holder.pid})" in str(err)
        assert db in str(err) and "use another --db" in str(err)
        assert err.path == db and "python" in err.holder.lower()
    with pytest.raises(DatabaseLockedError, match=f"PID {holder.pid}"):
        kdist.load(db)
    # The holder is unaffected: it still writes and commits.
    out, err = holder.communicate("go\n", timeout=10)
    assert holder.returncode == 0, err
    assert out.strip() == "still writing"
    # Released: the file opens again and holds what the holder wrote.
    with Store(db) as store:
        assert store.con.execute(
            "SELECT value FROM kdist_meta WHERE key = 'holder'"
        ).fetchone() == ("still writing",)


def test_locked_database_fails_ingest_before_fetching(db, holder, tmp_path):
    log = tmp_path / "calls.log"
    provider = kdist.get_provider("synthetic", call_log=str(log))
    with pytest.raises(DatabaseLockedError, match=f"PID {holder.pid}"):
        kdist.ingest(["600000.SH"], start="2024-01-02", end="2024-01-05", db=db,
                     client="sync", provider=provider)
    assert not log.exists()
