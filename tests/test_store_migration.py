"""Schema version 1 files (``kline.ts TIMESTAMP``): migrated in place by a writer, read as they
are by a reader, refused when a bar has sub-second parts; newer versions are refused."""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest

import kdist
from kdist.errors import SchemaVersionError, StoreError
from kdist.schema import Adjust, Freq
from kdist.store import SCHEMA_VERSION, Store

#: The tables as kdist 0.1.0 created them (schema version 1), frozen here: the migration
#: must keep working on such files whatever the current DDL becomes.
V1_DDL = """
CREATE TABLE kdist_meta (key VARCHAR NOT NULL, value VARCHAR);
CREATE TABLE kline (
    symbol VARCHAR NOT NULL, freq VARCHAR NOT NULL, adjust VARCHAR NOT NULL,
    ts TIMESTAMP NOT NULL, open DOUBLE, high DOUBLE, low DOUBLE, close DOUBLE,
    volume DOUBLE, amount DOUBLE, source VARCHAR
);
CREATE TABLE kdist_jobs (
    job_id VARCHAR NOT NULL, created_at TIMESTAMP, finished_at TIMESTAMP, status VARCHAR,
    mode VARCHAR, provider VARCHAR, provider_options VARCHAR, provider_version VARCHAR,
    freq VARCHAR, adjust VARCHAR, start DATE, "end" DATE, n_symbols INTEGER,
    symbols_ok INTEGER DEFAULT 0, symbols_empty INTEGER DEFAULT 0,
    symbols_failed INTEGER DEFAULT 0, symbols_skipped INTEGER DEFAULT 0,
    rows_written BIGINT DEFAULT 0, rejected_rows BIGINT DEFAULT 0, elapsed_s DOUBLE,
    kdist_version VARCHAR, params VARCHAR, note VARCHAR
);
CREATE TABLE kdist_job_symbols (
    job_id VARCHAR NOT NULL, symbol VARCHAR NOT NULL, status VARCHAR NOT NULL, rows BIGINT,
    first_ts TIMESTAMP, last_ts TIMESTAMP, attempts INTEGER, error_class VARCHAR,
    error VARCHAR, rejected_rows BIGINT, rejected VARCHAR, window_start TIMESTAMP,
    revised BOOLEAN, updated_at TIMESTAMP
);
INSERT INTO kdist_meta VALUES ('schema_version', '1'), ('created_by', 'kdist 0.1.0');
INSERT INTO kdist_jobs (job_id, created_at, finished_at, status, mode, provider, freq, adjust,
                        start, "end", n_symbols, symbols_ok, rows_written)
    VALUES ('old-job', '2024-07-01 10:00:00', '2024-07-01 10:01:00', 'done', 'sync',
            'synthetic', '1d', 'none', '2020-01-01', '2024-06-28', 3, 3, 0);
"""

#: Bars of several series, as version 1 stored them: daily at midnight, intraday at whole
#: minutes and seconds, and dates far from today.
V1_BARS = """
INSERT INTO kline
SELECT 'S' || lpad((i % 3)::VARCHAR, 5, '0') || '.SZ', '1d', 'none',
       TIMESTAMP '2020-01-01' + to_days((i // 3)::INTEGER),
       10 + i % 7, 11 + i % 7, 9 + i % 7, 10.5 + i % 7, 1000 * i, 10500.25 * i, 'synthetic'
FROM range(3000) t(i);
INSERT INTO kline
SELECT '600000.SH', '1m', 'qfq', TIMESTAMP '2024-06-28 09:30:00' + to_seconds(60 * i + i % 2),
       -1.5 + i, i, -2 + i, -1 + i, 5, 5.5, 'csv'
FROM range(240) t(i);
INSERT INTO kline VALUES
    ('OLD.SH', '1M', 'hfq', TIMESTAMP '1970-01-01', 1, 2, 0.5, 1.5, 0, 0, 'csv'),
    ('OLD.SH', '1M', 'hfq', TIMESTAMP '1969-12-01 23:59:59', 1, 2, 0.5, 1.5, 0, 0, 'csv'),
    ('OLD.SH', '1M', 'hfq', TIMESTAMP '2199-12-31 15:00:00', 1, 2, 0.5, 1.5, 0, 0, 'csv');
INSERT INTO kdist_job_symbols (job_id, symbol, status, rows, first_ts, last_ts, attempts,
                               updated_at)
SELECT 'old-job', symbol, 'ok', count(*), min(ts), max(ts), 1, TIMESTAMP '2024-07-01 10:01:00'
FROM kline WHERE freq = '1d' GROUP BY symbol;
"""

SERIES = [("1d", "none"), ("1m", "qfq"), ("1M", "hfq")]


def make_v1(path, extra_sql: str = ""):
    con = duckdb.connect(path)
    try:
        con.execute(V1_DDL)
        con.execute(V1_BARS)
        if extra_sql:
            con.execute(extra_sql)
    finally:
        con.close()


def query(path, sql):
    with duckdb.connect(path, read_only=True) as con:
        return con.execute(sql).fetchall()


def v1_reads(path) -> dict:
    """What kdist 0.1.0's read paths returned for a version-1 file (its SQL, verbatim)."""
    with duckdb.connect(path, read_only=True) as con:
        reads = {}
        for freq, adjust in SERIES:
            reads["load", freq] = con.execute(
                """SELECT symbol, ts, open, high, low, close, volume, amount, source FROM kline
                   WHERE freq = ? AND adjust = ? ORDER BY symbol, ts""", [freq, adjust]).df()
            reads["fingerprint", freq] = con.execute(
                """SELECT symbol, count(*) AS bars,
                          sum(hash(ts, open, high, low, close, volume)::HUGEINT)::VARCHAR
                              AS value_hash
                   FROM kline WHERE freq = ? AND adjust = ? GROUP BY symbol ORDER BY symbol""",
                [freq, adjust]).df()
        reads["catalog"] = con.execute(
            """SELECT symbol, freq, adjust, count(*) AS bars, min(ts) AS first, max(ts) AS last,
                      any_value(source) AS source
               FROM kline GROUP BY ALL ORDER BY symbol, freq, adjust""").df()
    return reads


def store_reads(store: Store) -> dict:
    reads = {}
    for freq, adjust in SERIES:
        reads["load", freq] = store.load(freq=freq, adjust=adjust)
        reads["fingerprint", freq] = store.fingerprint(freq, adjust)
    # The catalog's kind and mixed columns are computed, not read from the stored bars.
    reads["catalog"] = store.catalog().drop(columns=["updated", "kind", "mixed"])
    return reads


def assert_same_reads(got: dict, want: dict):
    assert got.keys() == want.keys()
    for key in want:
        pd.testing.assert_frame_equal(got[key], want[key], check_exact=True, obj=str(key))


def kline_ts_type(path) -> str:
    return query(path, "SELECT data_type FROM duckdb_columns() "
                       "WHERE table_name = 'kline' AND column_name = 'ts'")[0][0]


def schema_version(path) -> str:
    return query(path, "SELECT value FROM kdist_meta WHERE key = 'schema_version'")[0][0]


@pytest.fixture
def v1_db(db):
    make_v1(db)
    return db


def test_v1_file_is_migrated_in_place_by_a_writer(v1_db):
    before = v1_reads(v1_db)
    rows = query(v1_db, "SELECT count(*) FROM kline")[0][0]
    with Store(v1_db) as store:
        after = store_reads(store)
        assert store.check()["rows"] == rows
        jobs = store.jobs()
        ledger = store.job_symbols("old-job")
    assert kline_ts_type(v1_db) == "TIMESTAMP_S"
    assert schema_version(v1_db) == SCHEMA_VERSION == "5"
    # A file keeps the block size it was created with (DuckDB's default for version 1).
    assert query(v1_db, "SELECT block_size FROM pragma_database_size()") == [(262144,)]
    meta = dict(query(v1_db, "SELECT key, value FROM kdist_meta"))
    assert meta["created_by"] == "kdist 0.1.0"
    assert meta["migrated_from_1"].startswith(f"kdist {kdist.__version__} at ")
    # Then to version 5: the corporate-action and data-check tables, empty, and every
    # series' first and last bar, read from the bars.
    assert meta["migrated_from_2"].startswith(f"kdist {kdist.__version__} at ")
    for table in ("kdist_actions", "kdist_action_checks", "kdist_quality", "kdist_findings"):
        assert query(v1_db, f"SELECT count(*) FROM {table}") == [(0,)]
    assert query(v1_db, "SELECT count(*) FROM kdist_series")[0][0] > 0
    assert kdist.check(v1_db)["stale_bounds"] == 0
    # Every bar, value and dtype as version 1 returned them (ts still datetime64[us]); the
    # fingerprints are equal too, so an oracle taken before the upgrade still holds.
    assert_same_reads(after, before)
    assert str(after["load", "1d"]["ts"].dtype) == "datetime64[us]"
    assert after["load", "1m"]["ts"].dt.second.tolist()[:3] == [0, 1, 0]
    assert jobs["job_id"].tolist() == ["old-job"] and jobs["status"].tolist() == ["done"]
    assert ledger["rows"].tolist() == [1000, 1000, 1000]
    # Opened again: nothing more to do, the data stays as it is.
    with Store(v1_db) as store:
        assert_same_reads(store_reads(store), before)
    assert query(v1_db, "SELECT count(*) FROM kdist_meta") == [(4,)]


def test_migrated_file_takes_new_writes(v1_db, fingerprint):
    from test_store import bars, write

    with Store(v1_db) as store:
        write(store, [bars("S00001.SZ", ["2020-01-01", "2020-01-02"], close=99.0)],
              start="2020-01-01", end="2020-01-02")
        loaded = store.load("S00001.SZ", end="2020-01-03")
        assert store.check()["duplicate_keys"] == 0
    assert loaded["close"].tolist() == [99.0, 99.0, 10.5 + 7 % 7]  # 2020-01-03 untouched
    assert fingerprint(v1_db).set_index("symbol")["bars"].to_dict() == {
        "S00000.SZ": 1000, "S00001.SZ": 1000, "S00002.SZ": 1000}


def test_v1_file_read_only_is_read_as_it_is(v1_db):
    before = v1_reads(v1_db)
    with Store(v1_db, read_only=True) as store:
        assert_same_reads(store_reads(store), before)
        assert store.check()["ok"]
        windows, overlap = store.incremental_windows(
            ["S00000.SZ"], Freq.DAY, Adjust.NONE, pd.Timestamp("2020-01-01"),
            pd.Timestamp("2030-01-01"), 2)
    assert sorted(overlap["ts"]) == [pd.Timestamp("2022-09-25"), pd.Timestamp("2022-09-26")]
    assert windows["since"].tolist() == [pd.Timestamp("2022-09-25")]
    assert str(overlap["ts"].dtype) == "datetime64[us]"
    pd.testing.assert_frame_equal(kdist.load(v1_db), before["load", "1d"])
    # Not migrated: a reader never writes.
    assert kline_ts_type(v1_db) == "TIMESTAMP" and schema_version(v1_db) == "1"


def test_v1_file_with_sub_second_bars_is_refused_and_left_alone(db):
    make_v1(db, """INSERT INTO kline VALUES
        ('600000.SH', '1m', 'qfq', TIMESTAMP '2024-06-28 09:31:00.250', 1, 2, 1, 1, 0, 0, 'x'),
        ('600000.SH', '1m', 'qfq', TIMESTAMP '2024-06-28 09:32:00.999', 1, 2, 1, 1, 0, 0, 'x')""")
    before = v1_reads(db)
    with pytest.raises(StoreError) as info:
        Store(db)
    err = info.value
    assert isinstance(err, SchemaVersionError) and err.found == "1" and err.path == db
    message = str(err)
    assert "\n" not in message
    assert "2 bars have sub-second timestamps" in message
    assert "600000.SH 2024-06-28 09:31:00.250000" in message
    assert "kdist version that wrote it" in message
    # Nothing changed, not even rounded; the file still opens for reading.
    assert kline_ts_type(db) == "TIMESTAMP" and schema_version(db) == "1"
    assert_same_reads(v1_reads(db), before)
    with Store(db, read_only=True) as store:
        assert store.load("600000.SH", freq="1m", adjust="qfq")["ts"].dt.microsecond.max() == 999000


def test_failed_migration_rolls_back_entirely(v1_db, monkeypatch):
    """The type change and the version record are one transaction."""
    before = v1_reads(v1_db)
    connect = duckdb.connect

    class Failing:
        def __init__(self, con):
            self._con = con

        def __getattr__(self, name):
            return getattr(self._con, name)

        def execute(self, sql, *args):
            if sql.startswith("UPDATE kdist_meta"):
                raise duckdb.IOException("IO Error: disk full (simulated)")
            return self._con.execute(sql, *args)

    monkeypatch.setattr(duckdb, "connect", lambda *a, **k: Failing(connect(*a, **k)))
    with pytest.raises(StoreError, match="disk full"):
        Store(v1_db)
    monkeypatch.undo()
    assert kline_ts_type(v1_db) == "TIMESTAMP" and schema_version(v1_db) == "1"
    assert_same_reads(v1_reads(v1_db), before)
    with Store(v1_db) as store:  # and a later writer migrates it
        assert_same_reads(store_reads(store), before)
    assert kline_ts_type(v1_db) == "TIMESTAMP_S"


@pytest.mark.parametrize("found", ["6", "10", "0", "two"])
def test_other_versions_are_still_refused(v1_db, found):
    con = duckdb.connect(v1_db)
    con.execute("UPDATE kdist_meta SET value = ? WHERE key = 'schema_version'", [found])
    con.close()
    for read_only in (False, True):
        with pytest.raises(SchemaVersionError) as info:
            Store(v1_db, read_only=read_only)
        assert f"uses kdist schema version {found}, this kdist uses 5" in str(info.value)
        assert info.value.found == found
    assert kline_ts_type(v1_db) == "TIMESTAMP" and schema_version(v1_db) == found


def test_v2_file_gains_the_corporate_action_tables(v1_db):
    """A version-2 file (no corporate-action tables) reads as one without actions, and the
    first writer adds the tables; qfq reads keep returning the vendor's stored bars."""
    with Store(v1_db) as store:
        store.con.execute("DROP TABLE kdist_actions")
        store.con.execute("DROP TABLE kdist_action_checks")
        store.con.execute("DROP TABLE kdist_quality")
        store.con.execute("DROP TABLE kdist_findings")
        store.con.execute("UPDATE kdist_meta SET value = '2' WHERE key = 'schema_version'")
        store.con.execute("DELETE FROM kdist_meta WHERE key = 'migrated_from_2'")
    with Store(v1_db, read_only=True) as store:
        assert not store.has_actions
        assert store.actions().empty and store.check_adjust().empty
        before = store_reads(store)
        qfq = store.load(freq="1m", adjust="qfq")
    assert len(qfq)
    assert schema_version(v1_db) == "2"
    with Store(v1_db) as store:
        assert store.has_actions
        assert_same_reads(store_reads(store), before)
    assert schema_version(v1_db) == "5"
    assert query(v1_db, "SELECT count(*) FROM kdist_actions") == [(0,)]


def test_v3_file_gains_the_data_check_tables(v1_db):
    """A version-3 file (corporate actions, no data-check tables) reads with its actions and
    without stored checks; the first writer adds the two tables and keeps everything else."""
    with Store(v1_db) as store:
        store.con.execute("DROP TABLE kdist_quality")
        store.con.execute("DROP TABLE kdist_findings")
        store.con.execute("UPDATE kdist_meta SET value = '3' WHERE key = 'schema_version'")
        store.con.execute("DELETE FROM kdist_meta WHERE key LIKE 'migrated_from_%'")
    with Store(v1_db, read_only=True) as store:
        assert store.has_actions and not store.has_quality
        before = store_reads(store)
    assert schema_version(v1_db) == "3"
    with Store(v1_db) as store:
        assert store.has_actions and store.has_quality
        assert_same_reads(store_reads(store), before)
    assert schema_version(v1_db) == "5"
    meta = dict(query(v1_db, "SELECT key, value FROM kdist_meta"))
    assert meta["migrated_from_3"].startswith(f"kdist {kdist.__version__} at ")
    assert query(v1_db, "SELECT count(*) FROM kdist_quality") == [(0,)]


def test_v4_file_gains_the_series_bounds(v1_db):
    """A version-4 file (no kept first and last bars) reads as it is, its series aggregated
    from the bars; the first writer fills ``kdist_series`` from them, and updates read it."""
    with Store(v1_db) as store:
        expected = {(f, a): store.series(Freq.parse(f), Adjust.parse(a))
                    for f, a in store.con.execute(
                        "SELECT DISTINCT freq, adjust FROM kline").fetchall()}
        store.con.execute("DROP TABLE kdist_series")
        store.con.execute("UPDATE kdist_meta SET value = '4' WHERE key = 'schema_version'")
        store.con.execute("DELETE FROM kdist_meta WHERE key LIKE 'migrated_from_%'")
    with Store(v1_db, read_only=True) as store:
        assert store.has_actions and store.has_quality and not store.has_series
        for (f, a), frame in expected.items():
            pd.testing.assert_frame_equal(store.series(Freq.parse(f), Adjust.parse(a)), frame)
        assert "stale_bounds" not in store.check()
    assert schema_version(v1_db) == "4"
    with Store(v1_db) as store:
        assert store.has_series
        for (f, a), frame in expected.items():
            pd.testing.assert_frame_equal(store.series(Freq.parse(f), Adjust.parse(a)), frame)
        assert store.check()["stale_bounds"] == 0
    assert schema_version(v1_db) == "5"
    meta = dict(query(v1_db, "SELECT key, value FROM kdist_meta"))
    assert meta["migrated_from_4"].startswith(f"kdist {kdist.__version__} at ")
