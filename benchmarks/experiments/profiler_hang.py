"""Provoke the worker hang seen in the first full benchmark run, to test a fix.

Usage: ``python -m benchmarks.experiments.profiler_hang [RUNS] [ROOT]``. Runs scenario A's
warm kdist import (2,000 symbols x 10 years) ``RUNS`` times (default 5) with Dask's worker
profiler sampling every millisecond instead of every 10, each with a 90 s limit, and
reports which runs hung. ``ROOT`` is the source tree to test (default: this one).

Seen on Python 3.11.7: a hung worker's main thread sits in ``sys._current_frames()`` ->
garbage collection -> a lock, and the task threads wait for it forever. With kdist as of
this benchmark, 4 of 7 runs hung; with ``fetching._fetch_one`` reusing one tenacity
``Retrying`` per process (each holds a ``threading.local``) none of 15 did.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SPEC = {"alt": "kdist", "mode": "warm", "symbols": 2000, "start": "2015-01-01",
        "end": "2024-12-31"}


def main(argv=None) -> int:
    args = argv or sys.argv[1:]
    runs = int(args[0]) if args else 5
    root = Path(args[1] if len(args) > 1 else Path(__file__).resolve().parents[2])
    env = {**os.environ, "KDIST_DASHBOARD_ADDRESS": "127.0.0.1:0",
           "DASK_DISTRIBUTED__WORKER__PROFILE__INTERVAL": "1ms", "PYTHONPATH": str(root)}
    env.pop("DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED", None)
    hung = 0
    tmp = Path("/tmp") / f"kdist-profiler-hang-{os.getpid()}"
    tmp.mkdir(exist_ok=True)
    for i in range(runs):
        spec = {**SPEC, "db": str(tmp / "hang.duckdb")}
        cmd = [sys.executable, "-m", "benchmarks.run", "--child", json.dumps(spec),
               "--child-out", str(tmp / "hang.json")]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            proc.wait(timeout=90)
            state = "finished" if proc.returncode == 0 else f"failed ({proc.returncode})"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            state, hung = "HUNG", hung + 1
        print(f"run {i + 1}: {state} after {time.perf_counter() - t0:.1f}s, "
              f"load {os.getloadavg()[0]:.1f}", flush=True)
    print(f"{hung} of {runs} runs hung ({root})")
    for p in tmp.iterdir():
        p.unlink()
    tmp.rmdir()
    return 1 if hung else 0


if __name__ == "__main__":
    sys.exit(main())
