"""Where the bytes of a kdist database go, and what other column types would store.

Usage: ``python -m benchmarks.experiments.storage DB`` (DB is only read). Each line copies
one column (or the whole table, or a variant) from ``DB`` into a fresh database file with one
``CREATE TABLE ... AS`` and a checkpoint, and prints its size per stored bar; 256 KiB blocks
make each figure exact to about 0.05 byte per bar for a few million bars.
"""

from __future__ import annotations

import os
import sys
import tempfile

import duckdb

COLUMNS = ["symbol", "freq", "adjust", "ts", "open", "high", "low", "close", "volume", "amount",
           "source"]
VARIANTS = [
    ("all columns, in stored order", "SELECT * FROM src.kline"),
    ("all columns, ORDER BY symbol, ts", "SELECT * FROM src.kline ORDER BY symbol, ts"),
    ("without freq, adjust, source", "SELECT * EXCLUDE (freq, adjust, source) FROM src.kline"),
    ("ts as TIMESTAMP_S", "SELECT ts::TIMESTAMP_S AS ts FROM src.kline"),
    ("ts as DATE", "SELECT ts::DATE AS ts FROM src.kline"),
    ("open as FLOAT", "SELECT open::FLOAT AS open FROM src.kline"),
    ("open as DECIMAL(12,3)", "SELECT open::DECIMAL(12,3) AS open FROM src.kline"),
    ("volume as BIGINT", "SELECT volume::BIGINT AS volume FROM src.kline"),
    ("amount as DECIMAL(18,2)", "SELECT amount::DECIMAL(18,2) AS amount FROM src.kline"),
    ("table with ts TIMESTAMP_S",
     "SELECT * REPLACE (ts::TIMESTAMP_S AS ts) FROM src.kline"),
    ("table with ts TIMESTAMP_S, no freq/adjust/source",
     "SELECT * EXCLUDE (freq, adjust, source) REPLACE (ts::TIMESTAMP_S AS ts) FROM src.kline"),
]


def size_per_bar(src: str, select: str, rows: int, workdir: str) -> tuple[float, str]:
    path = os.path.join(workdir, "column.duckdb")
    for p in (path, path + ".wal"):
        if os.path.exists(p):
            os.remove(p)
    con = duckdb.connect(path)
    try:
        con.execute(f"ATTACH '{src}' AS src (READ_ONLY)")
        con.execute(f"CREATE TABLE t AS {select}")
        con.execute("CHECKPOINT")
        used, block = con.execute(
            "SELECT used_blocks, block_size FROM pragma_database_size() "
            "WHERE database_name = 'column'").fetchone()
        methods = con.execute(
            "SELECT string_agg(DISTINCT compression, ',') FROM pragma_storage_info('t') "
            "WHERE segment_type <> 'VALIDITY'").fetchone()[0]
    finally:
        con.close()
    return used * block / rows, methods


def main(argv=None) -> int:
    src = (argv or sys.argv[1:])[0]
    with duckdb.connect(src, read_only=True) as con:
        rows = con.execute("SELECT count(*) FROM kline").fetchone()[0]
    file_bytes = sum(os.path.getsize(p) for p in (src, src + ".wal") if os.path.exists(p))
    print(f"{src}: {rows:,} bars, {file_bytes / rows:.2f} bytes per bar as written")
    with tempfile.TemporaryDirectory() as tmp:
        for column in COLUMNS:
            size, how = size_per_bar(src, f"SELECT {column} FROM src.kline", rows, tmp)
            print(f"  column {column:<44} {size:6.2f} B/bar  {how}")
        for label, select in VARIANTS:
            size, how = size_per_bar(src, select, rows, tmp)
            print(f"  {label:<51} {size:6.2f} B/bar  {how}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
