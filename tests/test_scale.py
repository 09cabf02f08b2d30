"""Scale (docs/testplan.md 25-26): 5,000 symbols x 10 years of daily bars through a local cluster.

The client's peak memory must follow the batch size, not the job size: the same import of
5x fewer symbols peaks at nearly the same RSS. An incremental update afterwards fetches and
writes only the new bars.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow

JOB = textwrap.dedent(
    """
    import json, sys
    import kdist

    def peak_mb():
        # VmHWM, not ru_maxrss: ru_maxrss also holds the peak of the process that started
        # this one (the kernel keeps it across exec), here the whole pytest session's.
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM in /proc/self/status")

    if __name__ == "__main__":
        n, db, start, end, incremental, log = sys.argv[1:7]
        provider = kdist.get_provider("synthetic", universe=int(n), call_log=log)
        report = kdist.ingest(None, start=start, end=end, provider=provider, db=db,
                              client="local", n_workers=2, threads_per_worker=1,
                              incremental=incremental == "1")
        print(json.dumps({"rows": report.rows_written, "ok": report.symbols_ok,
                          "elapsed": report.elapsed_s,
                          "peak_mb": peak_mb()}))
    """
)


def run_job(tmp_path, n, db, start="2015-01-01", end="2024-12-31", incremental=False, log=""):
    script = tmp_path / "job.py"
    script.write_text(JOB)
    out = subprocess.run(
        [sys.executable, script, str(n), db, start, end, "1" if incremental else "0", log],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "KDIST_DASHBOARD_ADDRESS": "127.0.0.1:0"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(900)
def test_5000_symbols_ten_years_exact_rows_bounded_memory_then_incremental(tmp_path):
    import kdist

    small = run_job(tmp_path, 1000, str(tmp_path / "small.duckdb"))
    db = str(tmp_path / "big.duckdb")
    big = run_job(tmp_path, 5000, db)

    # Exact: every symbol has every trading day of the synthetic calendar (2,575 bars).
    assert big["ok"] == 5000 and big["rows"] == 5000 * 2575
    assert kdist.check(db)["rows"] == 5000 * 2575
    # Five times the rows, about the same client peak: memory follows the batch, not the job.
    assert big["peak_mb"] < small["peak_mb"] + 400, (small, big)
    assert big["peak_mb"] < 1500

    # docs/testplan.md 26: one more trading day; only new bars (plus a 3-bar overlap) are fetched.
    log = tmp_path / "calls.log"
    update = run_job(tmp_path, 5000, db, end="2025-01-02", incremental=True, log=str(log))
    starts = {line.split()[1] for line in log.read_text().splitlines()}
    assert starts == {"2024-12-27"}  # the 3 overlap bars: Dec 27, 30, 31
    assert update["rows"] == 5000  # the overlap bars matched: only the new day is written
    assert kdist.check(db)["rows"] == 5000 * 2576
