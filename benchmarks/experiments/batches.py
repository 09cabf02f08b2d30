"""How the size of each write transaction changes DuckDB's file size and speed.

Usage: ``python -m benchmarks.experiments.batches [SYMBOLS]`` (default 2,000 x 10 years of
synthetic daily bars). Writes the same bars into kdist's table in transactions of 250k rows
(kdist's ``BATCH_ROWS`` today), 500k, 1M and all at once, with and without DuckDB's optimistic
writes, and prints seconds and bytes per bar of each file.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import duckdb
import pandas as pd

import kdist

RUNS = [
    ("250k rows per transaction", 250_000, {}),
    ("500k rows per transaction", 500_000, {}),
    ("1M rows per transaction", 1_000_000, {}),
    ("one transaction", 10**12, {}),
    ("250k, no optimistic writes, checkpoint at 1 GB", 250_000,
     {"enable_optimistic_write": False, "checkpoint_threshold": "1GB"}),
]


def main(argv=None) -> int:
    args = argv or sys.argv[1:]
    n = int(args[0]) if args else 2000
    provider = kdist.get_provider("synthetic")
    frames = []
    for symbol in kdist.get_provider("synthetic", universe=n).list_symbols():
        frame = provider.fetch(symbol, "2015-01-01", "2024-12-31")
        frame.insert(0, "symbol", symbol)
        frames.append(frame)
    rows = sum(len(f) for f in frames)
    print(f"{rows:,} bars of {n} symbols; load {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        for label, batch_rows, config in RUNS:
            path = os.path.join(tmp, "batches.duckdb")
            for p in (path, path + ".wal"):
                if os.path.exists(p):
                    os.remove(p)
            kdist.Store(path).close()  # kdist's tables
            t0 = time.perf_counter()
            con = duckdb.connect(path, config={"memory_limit": "512MB", **config})
            pending, count = [], 0
            for i, frame in enumerate(frames):
                pending.append(frame)
                count += len(frame)
                if count >= batch_rows or i == len(frames) - 1:
                    batch = pd.concat(pending, ignore_index=True)
                    con.begin()
                    con.register("batch", batch)
                    con.execute("""INSERT INTO kline SELECT symbol, '1d', 'none', ts, open, high,
                                   low, close, volume, amount, 'synthetic' FROM batch""")
                    con.unregister("batch")
                    con.commit()
                    pending, count = [], 0
            con.close()
            seconds = time.perf_counter() - t0
            size = sum(os.path.getsize(p) for p in (path, path + ".wal") if os.path.exists(p))
            print(f"  {label:<48} {seconds:6.2f} s  {size / rows:6.2f} B/bar  "
                  f"load {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
