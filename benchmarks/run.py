"""End-to-end benchmark of kdist against the ways users import bars without it.

Usage::

    python -m benchmarks.run                      # every scenario, full size (make bench)
    python -m benchmarks.run --smoke              # tiny sizes, one repeat: proves it works
    python -m benchmarks.run --scenarios A,B      # some scenarios
    python -m benchmarks.run --repeats 5 --out /tmp/results.json --workdir /tmp/bench

Every measurement runs in a fresh Python process (so the client's peak memory is its own,
not a previous run's), writes into a fresh database created by kdist, and is repeated
(``--repeats``, default 3); figures are the medians. The table is printed and the whole
result (machine, scenarios, every repeat, medians, ratios, targets, pass/fail) is written as
JSON to ``benchmarks/results.json`` unless ``--out`` says otherwise.

Scenarios (full size; ``--smoke`` shrinks every one):

A. zero latency, 2,000 symbols x 10 years daily: kdist (cold: its default local cluster
   started inside the call; warm: the same cluster already running), the sequential loop,
   gather-all, the records bridge and the DuckDB ceiling;
B. 100 ms +/- 20 ms per symbol, 1,000 symbols x 1 year daily, 2 workers x 16 threads: kdist
   against the concurrency bound (total threads / latency symbols per second);
C. stragglers, 400 symbols x 1 year, 20 ms per symbol: one worker 4x slower, and
   heavy-tailed (Pareto) latency: kdist's default chunking against one slice per worker;
D. 5,000 symbols x 10 years daily: client peak memory of kdist and gather-all, bytes per
   stored bar;
E. after D, ``kdist.update`` adding one day (cold: as a cron job runs it; warm: on a running
   cluster): its time against D's import (cold), and what it fetched;
F. minute bars, 500 symbols x a year of 1m bars: kdist against gather-all and DuckDB's ceiling,
   a one-day update, and the bytes of each stored column;
G. 250 daily updates of D's store in one process: the last updates against the first, and
   reads of one symbol and of every symbol's last 60 days after them against before (the
   store as imported, kept as a copy; both read in new processes, in turns);
H. 50,000 symbols x a year daily: the client's time outside fetching and writing (the
   report's phase clock), its peak memory against gather-all's;
I. A and B on a ``dask scheduler`` and ``dask worker`` processes with Dask's defaults against
   kdist's own local cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_OUT = HERE / "results.json"

# --- scenarios -----------------------------------------------------------------------------

FULL = {
    "A": {"symbols": 2000, "start": "2015-01-01", "end": "2024-12-31"},
    "B": {"symbols": 1000, "start": "2024-01-01", "end": "2024-12-31",
          "latency": 0.1, "jitter": 0.02, "n_workers": 2, "threads_per_worker": 16},
    "C": {"symbols": 400, "start": "2024-01-01", "end": "2024-12-31", "latency": 0.02,
          "n_workers": 2, "threads_per_worker": 2},
    "D": {"symbols": 5000, "start": "2015-01-01", "end": "2024-12-30"},
    "E": {"end": "2024-12-31"},
    "F": {"symbols": 500, "start": "2024-01-01", "end": "2024-12-30", "freq": "1m",
          "update_end": "2024-12-31"},
    "G": {"symbols": 5000, "after": "2024-12-30", "days": 250, "reads": 7, "window": 10},
    "H": {"symbols": 50000, "start": "2024-01-01", "end": "2024-12-31"},
}
SMOKE = {
    "A": {"symbols": 40, "start": "2024-01-01", "end": "2024-12-31"},
    "B": {"symbols": 48, "start": "2024-01-01", "end": "2024-03-31",
          "latency": 0.05, "jitter": 0.01, "n_workers": 2, "threads_per_worker": 4},
    "C": {"symbols": 24, "start": "2024-01-01", "end": "2024-03-31", "latency": 0.01,
          "n_workers": 2, "threads_per_worker": 2},
    "D": {"symbols": 60, "start": "2024-01-01", "end": "2024-12-30"},
    "E": {"end": "2024-12-31"},
    "F": {"symbols": 6, "start": "2024-12-02", "end": "2024-12-30", "freq": "1m",
          "update_end": "2024-12-31"},
    "G": {"symbols": 60, "after": "2024-12-30", "days": 6, "reads": 2, "window": 2},
    "H": {"symbols": 600, "start": "2024-10-01", "end": "2024-12-31"},
}
# I: A's and B's imports again, on clusters of a given shape (A's: 2 workers x 2 threads, as
# kdist's local cluster on this machine; B's its own), kdist's local one and the user's own.
for _sizes, _threads in ((FULL, 2), (SMOKE, 1)):
    _sizes["I"] = {"A": {**_sizes["A"], "n_workers": 2, "threads_per_worker": _threads},
                   "B": dict(_sizes["B"])}
TARGETS = {
    "A.kdist_vs_records": ("records time / kdist time", ">=", 40.0),
    "A.kdist_vs_sequential": ("kdist time / sequential time", "<=", 0.5),
    "A.kdist_vs_ceiling": ("kdist rows/s / DuckDB ceiling rows/s", ">=", 0.6),
    "B.kdist_vs_bound": ("kdist symbols/s / (threads / mean latency)", ">=", 0.85),
    "C.slow_worker": ("per-worker time / default chunking time, one worker 4x slower", ">=", 1.5),
    "C.pareto": ("per-worker time / default chunking time, Pareto latency", ">=", 1.5),
    "D.memory_vs_gather": ("kdist client peak RSS / gather-all client peak RSS", "<=", 1 / 3),
    "D.memory_mb": ("kdist client peak RSS, MB", "<", 1500.0),
    "D.bytes_per_bar": ("database bytes / stored bars (kdist)", "<=", 20.0),
    "E.update_vs_import": ("update time / full import time (both cold)", "<", 0.10),
    "E.only_new_bars": ("symbols fetched from their overlap on, none in full", "==", 1.0),
    "E.qfq_load_vs_raw": ("load of every bar as derived qfq / load of the raw bars", "<=", 1.5),
    "E.check_gaps_s": ("kdist check --gaps over every series of D's store, seconds", "<=", 5.0),
    "E.panel_vs_pivot": ("kdist.panel close of every bar / DuckDB PIVOT of the same", "<=", 1.0),
    "F.kdist_vs_ceiling": ("kdist minute bars/s / DuckDB ceiling bars/s", ">=", 0.5),
    "F.memory_vs_gather": ("kdist client peak RSS / gather-all client peak RSS, minute bars",
                           "<=", 1 / 3),
    "F.update_vs_import": ("one-day update of every symbol / full import, minute bars",
                           "<", 0.05),
    "G.last_vs_first_update": ("median of the last 10 daily updates / of the first 10", "<=",
                               1.3),
    "G.one_symbol_read": ("one symbol's 10 years, after 250 updates / after the import "
                          "(each read in a new process)", "<=", 1.3),
    "G.recent_read": ("every symbol's last 60 days, after 250 updates / after the import "
                      "(each read in a new process)", "<=", 1.3),
    "H.overhead": ("client time outside fetching and writing / the job's time, 50,000 "
                   "symbols", "<=", 0.10),
    "H.memory_vs_gather": ("kdist client peak RSS / gather-all client peak RSS, 50,000 "
                           "symbols", "<=", 1 / 3),
    "I.A_vs_local": ("scenario A on dask scheduler + dask worker / on kdist's local cluster",
                     "<=", 1.1),
    "I.B_vs_local": ("scenario B on dask scheduler + dask worker / on kdist's local cluster",
                     "<=", 1.1),
}


#: Figures reported next to the targets, without a target of their own.
INFO = {
    "A.warm.kdist_vs_records": "as A.kdist_vs_records, kdist on a running cluster",
    "A.warm.kdist_vs_sequential": "as A.kdist_vs_sequential, kdist on a running cluster",
    "A.warm.kdist_vs_ceiling": "as A.kdist_vs_ceiling, kdist on a running cluster",
    "E.warm.update_vs_import": "update on a running cluster / full import (cold)",
    "D.actions_cost": "import with corporate actions (the default) / import of bars only",
    "E.check_gaps_xshg_s": "as E.check_gaps_s, against XSHG (every series has bars to list)",
    "A.local.kdist_vs_ceiling": "as A.kdist_vs_ceiling, on kdist's local cluster (started in "
                                "the call) whatever the machine",
    "F.local.kdist_vs_ceiling": "as F.kdist_vs_ceiling, on kdist's local cluster (started in "
                                "the call) whatever the machine",
    "F.bytes_per_bar": "database bytes / stored minute bars (kdist)",
    "G.updating_process.one_symbol_read": "as G.one_symbol_read, the read after the updates "
                                          "made in the process that ran them",
    "G.updating_process.recent_read": "as G.recent_read, the read after the updates made in "
                                      "the process that ran them",
    "G.maintenance_s": "seconds the 250 updates spent keeping kline clustered",
    "G.row_groups_after": "row groups of kline after the 250 updates",
    "H.memory_mb": "kdist client peak RSS, MB, 50,000 symbols",
}

#: The phases of a job's client time (``Report.timings``) spent fetching and writing: the
#: rest (planning, the ledger, the report, progress, anything unnamed) is overhead.
WORK_PHASES = ("cluster", "wait", "write", "take")


def overhead(timings: dict | None, elapsed: float | None) -> float | None:
    """Share of a job's time the client spent outside fetching and writing."""
    if not timings or not elapsed:
        return None
    return max(0.0, elapsed - sum(timings.get(p, 0.0) for p in WORK_PHASES)) / elapsed


def _runs(name: str, size: dict, tmp: Path) -> list[tuple[str, dict]]:
    """The measurements of one scenario: (label, child spec)."""
    base = {k: size[k] for k in ("symbols", "start", "end") if k in size}
    shape = {k: size[k] for k in ("n_workers", "threads_per_worker") if k in size}
    # A-C compare kdist's import of bars with ways of fetching and storing bars only: kdist
    # runs without corporate actions there too. D and E hold them (the default): the store
    # the derived reads and the updates are measured on.
    bars = {"actions": False}
    if name == "A":
        base = {**base, "options": bars}
        return [
            ("kdist_cold", {**base, "alt": "kdist", "mode": "cold"}),
            # The same on kdist's local cluster, started inside the call, whatever the machine.
            ("kdist_local", {**base, "alt": "kdist", "mode": "cold", "client": "local"}),
            ("kdist_warm", {**base, "alt": "kdist", "mode": "warm"}),
            ("sequential", {**base, "alt": "sequential"}),
            ("gather_all", {**base, "alt": "gather_all"}),
            ("records", {**base, "alt": "records"}),
            ("ceiling", {**base, "alt": "ceiling"}),
        ]
    if name == "B":
        options = {"latency": size["latency"], "jitter": size["jitter"], **bars}
        return [("kdist_warm", {**base, **shape, "alt": "kdist", "mode": "warm",
                                "options": options})]
    if name == "C":
        runs = []
        stragglers = {
            "slow_worker": {"latency": size["latency"], "slow_worker": "0", "slow_factor": 4.0,
                            **bars},
            "pareto": {"latency": size["latency"], "latency_dist": "pareto", **bars},
        }
        for kind, options in stragglers.items():
            for split in ("chunks", "per-worker"):
                label = f"{kind}.{'default' if split == 'chunks' else 'per_worker'}"
                runs.append((label, {**base, **shape, "alt": "kdist", "mode": "warm",
                                     "split": split, "options": options}))
        return runs
    if name == "D":
        return [
            ("kdist_cold", {**base, "alt": "kdist", "mode": "cold", "keep_db": True,
                            "check": True}),
            ("gather_all", {**base, "alt": "gather_all"}),
            # What fetching and storing the corporate actions costs the import.
            ("kdist_cold_bars_only", {**base, "alt": "kdist", "mode": "cold",
                                      "options": bars}),
        ]
    if name == "E":
        # Reads of D's store first (it is read as it is), then updates of copies of it.
        on = {"on": "D"}
        return [(f"load_{adjust}", {"alt": "load", "adjust": adjust, "read": True, **on})
                for adjust in ("raw", "qfq")] + [
            ("check_gaps", {"alt": "gaps", "read": True, **on}),
            # A wide close panel of every bar, and DuckDB's PIVOT of the same bars.
            ("panel_close", {"alt": "panel", "how": "kdist", "read": True, **on}),
            ("pivot_close", {"alt": "panel", "how": "pivot", "read": True, **on}),
            # The same bars against Shanghai's calendar: ~72 of their weekdays a year are
            # no XSHG session, so every series has bars to list (the slower path).
            ("check_gaps_xshg", {"alt": "gaps", "calendar": "XSHG", "read": True, **on}),
        ] + [
            (f"kdist_update_{mode}", {"alt": "kdist", "mode": mode, "update": True, **on,
                                      "end": size["end"], "call_log": str(tmp / "E-calls.log"),
                                      "options": {"call_log": str(tmp / "E-calls.log")}})
            for mode in ("cold", "warm")
        ]
    if name == "F":
        # Minute bars: kdist on its default local cluster, the hand-written gather-all and
        # DuckDB alone on the same rows; then one more day of every symbol, and where the
        # bytes of the stored minute bars go.
        minute = {**base, "freq": size["freq"], "options": bars}
        return [
            ("kdist_cold", {**minute, "alt": "kdist", "mode": "cold", "keep_db": True,
                            "check": True}),
            ("kdist_local", {**minute, "alt": "kdist", "mode": "cold", "client": "local"}),
            ("gather_all", {**minute, "alt": "gather_all"}),
            ("ceiling", {**minute, "alt": "ceiling"}),
            ("kdist_update_cold", {"alt": "kdist", "mode": "cold", "update": True, "on": "F",
                                   "freq": size["freq"], "end": size["update_end"],
                                   "call_log": str(tmp / "F-calls.log"),
                                   "options": {**bars, "call_log": str(tmp / "F-calls.log")}}),
            ("columns", {"alt": "columns", "read": True, "on": "F", "once": True}),
        ]
    if name == "G":
        # A year of daily updates of D's store, in one process, as a daily cron job.
        return [("daily_updates", {"alt": "daily_updates", "on": "D", "once": True,
                                   "symbols": size["symbols"], "after": size["after"],
                                   "days": size["days"], "reads": size["reads"],
                                   "window": size["window"]})]
    if name == "H":
        # A universe of many symbols: kdist's client time outside fetching and writing, and
        # its peak memory against gather-all's.
        return [
            ("kdist_cold", {**base, "alt": "kdist", "mode": "cold", "check": True}),
            ("gather_all", {**base, "alt": "gather_all"}),
        ]
    if name == "I":
        # Scenarios A and B on kdist's own local cluster and on the user's own (dask
        # scheduler and dask worker with Dask's defaults), both running before the timer.
        runs = []
        for of in ("A", "B"):
            sized = size[of]
            spec = {k: sized[k] for k in ("symbols", "start", "end", "n_workers",
                                          "threads_per_worker") if k in sized}
            options = {k: sized[k] for k in ("latency", "jitter") if k in sized}
            for cluster in ("kdist_local", "dask_cli"):
                runs.append((f"{of}.{cluster}", {**spec, "alt": "cluster", "cluster": cluster,
                                                 "options": {**options, **bars}}))
        return runs
    raise ValueError(f"unknown scenario {name!r}")


# --- running -------------------------------------------------------------------------------


#: Environment of every measured process. Dask's worker profiler is off: on Python 3.11 its
#: sys._current_frames() calls were seen to deadlock a kdist worker (see README.md); the
#: Dask alternatives run on the same cluster settings, so the comparison stays fair.
CHILD_ENV = {"KDIST_DASHBOARD_ADDRESS": "127.0.0.1:0",
             "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False"}


def _cpu_ticks() -> tuple[int, int] | None:
    """(steal, total) jiffies of all CPUs since boot, from /proc/stat; None elsewhere."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal [guest guest_nice, counted in user]
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def _steal_pct(before, after) -> float | None:
    """Share of the CPU time the hypervisor gave to other machines: a shared host's runs
    are slower by about that much, whatever the load average says."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return 100.0 * (after[0] - before[0]) / (after[1] - before[1])


def _child(spec: dict, tmp: Path, index: int, timeout: float, profiler: bool = False) -> dict:
    """Run one measurement in a fresh interpreter; return its measurements."""
    spec = {**spec, "db": str(tmp / f"run-{index}.duckdb")}
    out = tmp / f"run-{index}.json"
    env = {**os.environ, **CHILD_ENV,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    if profiler:
        env.pop("DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED")
    cmd = [sys.executable, "-m", "benchmarks.run", "--child", json.dumps(spec), "--child-out",
           str(out)]
    ticks = _cpu_ticks()
    # A session of its own: a run that hangs is killed with its worker processes.
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise RuntimeError(f"benchmark run {spec['alt']} did not finish within {timeout:g}s")
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(
            f"benchmark run {spec['alt']} failed (exit {proc.returncode}):\n{stderr[-3000:]}"
        )
    result = json.loads(out.read_text())
    result["steal_pct"] = _steal_pct(ticks, _cpu_ticks())
    if not spec.get("keep_db"):
        for suffix in ("", ".wal"):
            Path(spec["db"] + suffix).unlink(missing_ok=True)
    else:
        result["db"] = spec["db"]
    return result


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _summarise(repeats: list[dict]) -> dict:
    keys = ("seconds", "rows", "peak_rss_mb", "rss_before_mb", "db_bytes", "client_cpu_s",
            "workers_cpu_s", "load_before", "load_after", "steal_pct")
    summary = {k: _median([r.get(k) for r in repeats]) for k in keys}
    summary["rows_per_s"] = summary["rows"] / summary["seconds"] if summary["seconds"] else None
    summary["bytes_per_bar"] = (summary["db_bytes"] / summary["rows"]) if summary["rows"] else None
    summary["repeats"] = repeats
    return summary


def _calls(path: Path) -> list[tuple[str, str, str]]:
    if not path.exists():
        return []
    return [tuple(line.split()) for line in path.read_text().splitlines() if line.strip()]


def run_scenario(name: str, size: dict, repeats: int, tmp: Path, state: dict, log,
                 only=None, timeout: float = 1800.0, profiler: bool = False) -> dict:
    results = {}
    for label, spec in _runs(name, size, tmp):
        if only and label not in only:
            continue
        # A run on a database another run kept: read as it is ("read"), or a copy of it.
        source = spec.pop("on", None)
        if source is not None:
            kept = state.get("kept", {}).get(source)
            if kept is None:
                raise RuntimeError(f"scenario {name}'s {label} needs scenario {source}'s "
                                   f"database: run {source}'s kdist_cold too")
            if spec.pop("read", False):
                spec = {**spec, "read_db": kept["db"]}
                if "adjust" in spec:
                    spec["adjust"] = "none" if spec["adjust"] == "raw" else spec["adjust"]
            else:
                spec = {**spec, "base_db": kept["db"]}
        reps = []
        # A run that repeats its own work many times inside (scenario G) runs once.
        for i in range(1 if spec.get("once") else repeats):
            index = len(state.setdefault("runs", []))
            state["runs"].append(label)
            result = _child(spec, tmp, index, timeout, profiler)
            if spec.get("call_log"):
                calls = _calls(Path(spec["call_log"]))
                result["calls"] = len(calls)
                result["fetch_starts"] = sorted({c[1] for c in calls})
                result["fetch_ends"] = sorted({c[2] for c in calls})
            reps.append(result)
            log(f"  {name} {label} #{i + 1}: {result['seconds']:.2f}s, {result['rows']:,} rows, "
                f"peak {result['peak_rss_mb']:.0f} MB, load {result['load_before']:.1f}, "
                f"steal {_fmt(result['steal_pct'], '%')}")
            if spec.get("keep_db") and i < repeats - 1:
                for suffix in ("", ".wal"):
                    Path(result["db"] + suffix).unlink(missing_ok=True)
        results[label] = _summarise(reps)
        results[label]["spec"] = {k: v for k, v in spec.items() if k not in ("db",)}
        if spec.get("keep_db"):
            state.setdefault("kept", {})[name] = {
                "db": reps[-1]["db"], "seconds": results[label]["seconds"],
                "symbols": spec["symbols"], "start": spec["start"]}
    return results


def _ratio(a, b):
    return a / b if a is not None and b else None


class _Missing(dict):
    """A run that was not measured (``--runs``): every figure is None."""

    def __missing__(self, key):
        return None


def _get(runs: dict, label: str) -> dict:
    return runs.get(label) or _Missing()


def evaluate(scenarios: dict, sizes: dict, state: dict) -> dict:
    """Ratios against the issue's targets; a target whose inputs were not run is absent."""
    got = {}
    if "A" in scenarios:
        a = {k: _get(scenarios["A"], k) for k in
             ("kdist_cold", "kdist_local", "kdist_warm", "sequential", "gather_all", "records",
              "ceiling")}
        kdist = a["kdist_cold"]
        got["A.kdist_vs_records"] = _ratio(a["records"]["seconds"], kdist["seconds"])
        got["A.kdist_vs_sequential"] = _ratio(kdist["seconds"], a["sequential"]["seconds"])
        got["A.kdist_vs_ceiling"] = _ratio(kdist["rows_per_s"], a["ceiling"]["rows_per_s"])
        got["A.local.kdist_vs_ceiling"] = _ratio(a["kdist_local"]["rows_per_s"],
                                                 a["ceiling"]["rows_per_s"])
        warm = a["kdist_warm"]
        got["A.warm.kdist_vs_records"] = _ratio(a["records"]["seconds"], warm["seconds"])
        got["A.warm.kdist_vs_sequential"] = _ratio(warm["seconds"], a["sequential"]["seconds"])
        got["A.warm.kdist_vs_ceiling"] = _ratio(warm["rows_per_s"], a["ceiling"]["rows_per_s"])
    if "B" in scenarios:
        size = sizes["B"]
        bound = size["n_workers"] * size["threads_per_worker"] / size["latency"]
        run = scenarios["B"].get("kdist_warm")
        if run:
            rate = size["symbols"] / run["seconds"]
            run["symbols_per_s"], run["bound_symbols_per_s"] = rate, bound
            got["B.kdist_vs_bound"] = rate / bound
    if "C" in scenarios:
        c = {k: _get(scenarios["C"], k) for k in
             ("slow_worker.default", "slow_worker.per_worker", "pareto.default",
              "pareto.per_worker")}
        for kind in ("slow_worker", "pareto"):
            got[f"C.{kind}"] = _ratio(c[f"{kind}.per_worker"]["seconds"],
                                      c[f"{kind}.default"]["seconds"])
    if "D" in scenarios:
        d = {k: _get(scenarios["D"], k) for k in ("kdist_cold", "gather_all")}
        got["D.memory_vs_gather"] = _ratio(d["kdist_cold"]["peak_rss_mb"],
                                           d["gather_all"]["peak_rss_mb"])
        got["D.memory_mb"] = d["kdist_cold"]["peak_rss_mb"]
        got["D.bytes_per_bar"] = d["kdist_cold"]["bytes_per_bar"]
        got["D.actions_cost"] = _ratio(d["kdist_cold"]["seconds"],
                                       _get(scenarios["D"], "kdist_cold_bars_only")["seconds"])
    kept = state.get("kept", {})
    if "E" in scenarios and kept.get("D") and scenarios["E"]:
        d = kept["D"]
        e = _get(scenarios["E"], "kdist_update_cold")
        got["E.update_vs_import"] = _ratio(e["seconds"], d["seconds"])
        got["E.warm.update_vs_import"] = _ratio(
            _get(scenarios["E"], "kdist_update_warm")["seconds"], d["seconds"])
        ok = all(
            r["calls"] == d["symbols"] and r["fetch_starts"]
            and min(r["fetch_starts"]) > d["start"]
            for label, runs in scenarios["E"].items() if label.startswith("kdist_update")
            for r in runs["repeats"]
        )
        got["E.only_new_bars"] = 1.0 if ok else 0.0
    if "E" in scenarios and scenarios["E"]:
        got["E.qfq_load_vs_raw"] = _ratio(_get(scenarios["E"], "load_qfq")["seconds"],
                                          _get(scenarios["E"], "load_raw")["seconds"])
        got["E.check_gaps_s"] = _get(scenarios["E"], "check_gaps")["seconds"]
        got["E.panel_vs_pivot"] = _ratio(_get(scenarios["E"], "panel_close")["seconds"],
                                         _get(scenarios["E"], "pivot_close")["seconds"])
        got["E.check_gaps_xshg_s"] = _get(scenarios["E"], "check_gaps_xshg")["seconds"]
    if "F" in scenarios and scenarios["F"]:
        f = {k: _get(scenarios["F"], k) for k in
             ("kdist_cold", "kdist_local", "gather_all", "ceiling", "kdist_update_cold",
              "columns")}
        got["F.kdist_vs_ceiling"] = _ratio(f["kdist_cold"]["rows_per_s"],
                                           f["ceiling"]["rows_per_s"])
        got["F.local.kdist_vs_ceiling"] = _ratio(f["kdist_local"]["rows_per_s"],
                                                 f["ceiling"]["rows_per_s"])
        got["F.memory_vs_gather"] = _ratio(f["kdist_cold"]["peak_rss_mb"],
                                           f["gather_all"]["peak_rss_mb"])
        got["F.update_vs_import"] = _ratio(f["kdist_update_cold"]["seconds"],
                                           f["kdist_cold"]["seconds"])
        got["F.bytes_per_bar"] = f["kdist_cold"]["bytes_per_bar"]
        if f["columns"]["repeats"]:
            for column, c in f["columns"]["repeats"][0]["columns"].items():
                got[f"F.bytes_per_bar.{column}"] = c["bytes_per_bar"]
    if "G" in scenarios and scenarios["G"].get("daily_updates"):
        g = scenarios["G"]["daily_updates"]["repeats"][0]
        got["G.last_vs_first_update"] = _ratio(g["last_updates_s"], g["first_updates_s"])
        got["G.one_symbol_read"] = _ratio(g["after"]["one_symbol_s"],
                                          g["before"]["one_symbol_s"])
        got["G.recent_read"] = _ratio(g["after"]["last_60_days_s"],
                                      g["before"]["last_60_days_s"])
        if "after_in_updating_process" in g:
            same = g["after_in_updating_process"]
            got["G.updating_process.one_symbol_read"] = _ratio(same["one_symbol_s"],
                                                               g["before"]["one_symbol_s"])
            got["G.updating_process.recent_read"] = _ratio(same["last_60_days_s"],
                                                           g["before"]["last_60_days_s"])
        got["G.maintenance_s"] = sum(m["seconds"] for m in g["maintained"])
        got["G.row_groups_after"] = float(g["after"]["row_groups"])
    if "H" in scenarios and scenarios["H"]:
        h = {k: _get(scenarios["H"], k) for k in ("kdist_cold", "gather_all")}
        got["H.overhead"] = _median([overhead(r.get("timings"), r.get("elapsed_s"))
                                     for r in h["kdist_cold"]["repeats"] or []])
        got["H.memory_vs_gather"] = _ratio(h["kdist_cold"]["peak_rss_mb"],
                                           h["gather_all"]["peak_rss_mb"])
        got["H.memory_mb"] = h["kdist_cold"]["peak_rss_mb"]
    if "I" in scenarios and scenarios["I"]:
        i = scenarios["I"]
        for of in ("A", "B"):
            got[f"I.{of}_vs_local"] = _ratio(_get(i, f"{of}.dask_cli")["seconds"],
                                             _get(i, f"{of}.kdist_local")["seconds"])
    verdicts = {}
    for key, value in got.items():
        if key not in TARGETS:
            what = INFO.get(key) or (f"bytes per stored minute bar of column "
                                     f"{key.rsplit('.', 1)[1]}" if key.startswith(
                                         "F.bytes_per_bar.") else key)
            verdicts[key] = {"what": what, "value": value}
            continue
        what, op, target = TARGETS[key]
        ok = None if value is None else {
            ">=": value >= target, "<=": value <= target, "<": value < target,
            "==": value == target,
        }[op]
        verdicts[key] = {"what": what, "value": value, "target": f"{op} {target:g}", "pass": ok}
    return verdicts


# --- machine and report --------------------------------------------------------------------


def machine() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    cpu = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem_kb = int(line.split()[1])
    packages = {}
    for name in ("kdist", "dask", "distributed", "pandas", "numpy", "pyarrow", "duckdb"):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    commit = None
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True,
                               text=True, timeout=10).stdout.strip()
        commit = commit + ("+dirty" if dirty else "") if commit else None
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "ram_gb": round(mem_kb / 2**20, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": packages,
        "commit": commit,
        "load_at_start": list(os.getloadavg()),
    }


def _fmt(value, unit=""):
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}{unit}"
        return f"{value:.3g}{unit}"
    return f"{value:,}{unit}"


def _cpu(r: dict):
    """CPU seconds of the client and its worker processes: steadier than wall time on a
    shared machine (None for results that predate the figure)."""
    if r.get("workers_cpu_s") is None:
        return None
    return r["client_cpu_s"] + r["workers_cpu_s"]


def table(result: dict) -> str:
    lines = []
    lines.append(f"machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, "
                 f"{result['machine']['ram_gb']} GB, Python {result['machine']['python']}, "
                 f"load {result['machine']['load_at_start'][0]:.1f} at start, "
                 f"{result['load_at_end'][0]:.1f} at end, "
                 f"CPU steal {_fmt(result.get('steal_pct'), '%')}")
    lines.append("")
    head = f"{'scenario':<9} {'run':<22} {'seconds':>9} {'cpu s':>6} {'rows':>12} " \
           f"{'rows/s':>11} {'peak MB':>8} {'B/bar':>6} {'load':>5} {'steal':>6}"
    lines.append(head)
    lines.append("-" * len(head))
    for name, runs in result["scenarios"].items():
        for label, r in runs.items():
            lines.append(
                f"{name:<9} {label:<22} {_fmt(r['seconds']):>9} {_fmt(_cpu(r)):>6} "
                f"{_fmt(r['rows']):>12} "
                f"{_fmt(r['rows_per_s']):>11} {_fmt(r['peak_rss_mb']):>8} "
                f"{_fmt(r['bytes_per_bar']):>6} {_fmt(r['load_before']):>5} "
                f"{_fmt(r.get('steal_pct'), '%'):>6}"
            )
    lines.append("")
    head = f"{'target':<26} {'value':>8} {'wanted':>9}  result"
    lines.append(head)
    lines.append("-" * len(head))
    for key, v in result["targets"].items():
        verdict = {True: "PASS", False: "FAIL", None: "-"}[v.get("pass")] if "pass" in v else "(info)"
        lines.append(f"{key:<26} {_fmt(v['value']):>8} {v.get('target', ''):>9}  {verdict}")
    return "\n".join(lines)


def markdown(result: dict) -> str:
    """The results as Markdown tables, for README.md."""
    m = result["machine"]
    runs = [r for rs in result["scenarios"].values() for r in rs.values()]
    cpu = any(_cpu(r) is not None for r in runs)  # results older than the figure have none
    steal = any(r.get("steal_pct") is not None for r in runs)  # likewise
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gb']} GB RAM, {m['os']}, "
        f"Python {m['python']}; " + ", ".join(f"{k} {v}" for k, v in m["packages"].items()) + ".",
        f"Command: `{result['command'].strip()}` (commit {m.get('commit')}); median of "
        f"{result['repeats']} runs; load average {m['load_at_start'][0]:.1f} at the start, "
        f"{result['load_at_end'][0]:.1f} at the end; "
        + (f"CPU steal {_fmt(result.get('steal_pct'), '%')} over the run; " if steal else "")
        + f"{result['total_seconds']:.0f} s in all.",
        "",
        "| scenario | run | seconds |" + (" CPU s |" if cpu else "")
        + " bars | bars/s | client peak MB | bytes/bar | load |" + (" CPU steal |" if steal else ""),
        "|---|---|---:|" + ("---:|" if cpu else "") + "---:|---:|---:|---:|---:|"
        + ("---:|" if steal else ""),
    ]
    for name, runs in result["scenarios"].items():
        for label, r in runs.items():
            lines.append(
                f"| {name} | {label} | {_fmt(r['seconds'])} | "
                + (f"{_fmt(_cpu(r))} | " if cpu else "") + f"{_fmt(r['rows'])} | "
                f"{_fmt(r['rows_per_s'])} | {_fmt(r['peak_rss_mb'])} | "
                f"{_fmt(r['bytes_per_bar'])} | {_fmt(r['load_before'])} |"
                + (f" {_fmt(r.get('steal_pct'), '%')} |" if steal else "")
            )
    lines += ["", "| target | measured | wanted | result |", "|---|---:|---:|---|"]
    for key, v in result["targets"].items():
        verdict = {True: "pass", False: "**fail**", None: "-"}[v.get("pass")] if "pass" in v \
            else "(info)"
        what = v.get("what", key)
        lines.append(f"| {key}: {what} | {_fmt(v['value'])} | {v.get('target', '')} | {verdict} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat")
    parser.add_argument("--scenarios", default=",".join(FULL), help="comma-separated, e.g. A,B")
    parser.add_argument("--repeats", type=int, help="repeats per measurement (default 3, smoke 1)")
    parser.add_argument("--out", default=None, help=f"results JSON (default {DEFAULT_OUT})")
    parser.add_argument("--workdir", default=None, help="where databases go (default: a temp dir)")
    parser.add_argument("--runs", default=None,
                        help="only these runs, e.g. kdist_warm,ceiling (targets needing others "
                             "are left out)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds one run may take before it is killed (default 1800, smoke 300)")
    parser.add_argument("--dask-profiler", action="store_true",
                        help="keep Dask's worker profiler on (off by default, see README.md)")
    parser.add_argument("--quiet", action="store_true", help="print only the table")
    parser.add_argument("--markdown", metavar="RESULTS_JSON",
                        help="print the tables of a results file as Markdown, run nothing")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        from benchmarks.alternatives import run

        result = run(json.loads(args.child))
        Path(args.child_out).write_text(json.dumps(result, default=str))
        return 0

    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text())))
        return 0

    names = [s.strip().upper() for s in args.scenarios.split(",") if s.strip()]
    unknown = sorted(set(names) - set(FULL))
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(FULL)}")
    for needs in ("E", "G"):
        if needs in names and "D" not in names:
            parser.error(f"scenario {needs} updates scenario D's database: add D")
    sizes = SMOKE if args.smoke else FULL
    repeats = args.repeats or (1 if args.smoke else 3)
    out = Path(args.out) if args.out else DEFAULT_OUT
    log = (lambda *a: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))

    result = {"command": "python -m benchmarks.run " + " ".join(argv or sys.argv[1:]),
              "smoke": args.smoke, "repeats": repeats, "machine": machine(),
              "sizes": {n: sizes[n] for n in names},
              "environment": {k: v for k, v in CHILD_ENV.items()
                              if not (args.dask_profiler and "PROFILE" in k)},
              "scenarios": {}}
    t0, ticks = time.perf_counter(), _cpu_ticks()
    with tempfile.TemporaryDirectory(prefix="kdist-bench-", dir=args.workdir) as tmp:
        state: dict = {}
        for name in names:
            log(f"scenario {name}: {sizes[name]}")
            only = set(args.runs.split(",")) if args.runs else None
            result["scenarios"][name] = run_scenario(
                name, sizes[name], repeats, Path(tmp), state, log, only,
                timeout=args.timeout or (300.0 if args.smoke else 1800.0),
                profiler=args.dask_profiler)
        result["targets"] = evaluate(result["scenarios"], sizes, state)
    result["load_at_end"] = list(os.getloadavg())
    result["steal_pct"] = _steal_pct(ticks, _cpu_ticks())
    result["total_seconds"] = round(time.perf_counter() - t0, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(table(result))
    print(f"\nwritten: {out} ({result['total_seconds']:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
