"""The benchmark harness still works: a smoke run measures every alternative of every scenario.

Performance targets are not asserted here (CI machines vary); ``make bench`` measures them.
What is asserted: every run happened, stored the same rows as the others of its scenario,
and reported sane figures in the JSON layout ``benchmarks/results.json`` has.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ is a top-level folder, not part of the package
    sys.path.insert(0, str(ROOT))

from benchmarks import run as bench  # noqa: E402

pytestmark = pytest.mark.slow

RUNS = {
    "A": {"kdist_cold", "kdist_local", "kdist_warm", "sequential", "gather_all", "records",
          "ceiling"},
    "B": {"kdist_warm"},
    "C": {"slow_worker.default", "slow_worker.per_worker", "pareto.default", "pareto.per_worker"},
    "D": {"kdist_cold", "gather_all", "kdist_cold_bars_only"},
    "E": {"load_raw", "load_qfq", "check_gaps", "check_gaps_xshg", "panel_close",
          "pivot_close", "kdist_update_cold", "kdist_update_warm"},
    "F": {"kdist_cold", "kdist_local", "gather_all", "ceiling", "kdist_update_cold", "columns"},
    "G": {"daily_updates"},
    "H": {"kdist_cold", "gather_all"},
    "I": {"A.kdist_local", "A.dask_cli", "B.kdist_local", "B.dask_cli"},
}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    out = tmp / "results.json"
    assert bench.main(["--smoke", "--out", str(out), "--workdir", str(tmp), "--quiet"]) == 0
    return json.loads(out.read_text()), tmp


def test_every_alternative_ran(smoke):
    result, _ = smoke
    assert result["smoke"] is True and result["repeats"] == 1
    assert set(result["scenarios"]) == set(RUNS)
    for name, labels in RUNS.items():
        assert set(result["scenarios"][name]) == labels, name


def test_figures_are_sane(smoke):
    result, _ = smoke
    for name, runs in result["scenarios"].items():
        for label, r in runs.items():
            assert r["seconds"] > 0, (name, label)
            assert r["rows"] > 0 and r["rows_per_s"] > 0, (name, label)
            assert r["peak_rss_mb"] > 50, (name, label)  # a Python process with pandas
            assert r["db_bytes"] > 0 and r["bytes_per_bar"] > 0, (name, label)
            assert len(r["repeats"]) == 1


def test_same_data_everywhere(smoke):
    result, _ = smoke
    sizes = result["sizes"]
    a = result["scenarios"]["A"]
    # Every alternative stored the same bars: 40 symbols x 257 trading days of 2024.
    assert {r["rows"] for r in a.values()} == {sizes["A"]["symbols"] * 257}
    # kdist_local runs on kdist's local cluster whatever the machine and the job's size.
    for name in ("A", "F"):
        assert result["scenarios"][name]["kdist_local"]["repeats"][0]["mode"] == "local"
    for name in ("B", "C", "D", "H"):
        assert len({r["rows"] for r in result["scenarios"][name].values()}) == 1, name
    # Minute bars: every alternative stored the same bars, 240 a session; the update added
    # one session of every symbol.
    f = result["scenarios"]["F"]
    minute_rows = f["kdist_cold"]["rows"]
    assert minute_rows % 240 == 0 and {
        f[k]["rows"] for k in ("kdist_local", "gather_all", "ceiling")} == {minute_rows}
    assert f["kdist_update_cold"]["rows"] == minute_rows + 240 * sizes["F"]["symbols"]
    assert f["kdist_cold"]["repeats"][0]["check_ok"] is True
    columns = f["columns"]["repeats"][0]["columns"]
    assert set(columns) == {"symbol", "freq", "adjust", "ts", "open", "high", "low", "close",
                            "volume", "amount", "source"}
    assert all(c["bytes_per_bar"] > 0 for c in columns.values())
    # Scenario I: the same import on both clusters, A's and B's bars.
    i = result["scenarios"]["I"]
    for of in ("A", "B"):
        assert i[f"{of}.kdist_local"]["rows"] == i[f"{of}.dask_cli"]["rows"] > 0, of
        for cluster in ("kdist_local", "dask_cli"):
            assert i[f"{of}.{cluster}"]["repeats"][0]["status"] == "done"
    d = result["scenarios"]["D"]["kdist_cold"]["repeats"][0]
    assert d["status"] == "done" and d["check_ok"] is True
    # The loads read every bar of D's store, raw and derived qfq.
    e = result["scenarios"]["E"]
    for label in ("load_raw", "load_qfq"):
        r = e[label]["repeats"][0]
        assert r["loaded"] == e[label]["rows"] == result["scenarios"]["D"]["kdist_cold"]["rows"]
        assert r["symbols_loaded"] == sizes["D"]["symbols"]
    # kdist check --gaps over every series of D's store: nothing to list against the synthetic
    # calendar (exit 0); against Shanghai's, the weekdays it closes (exit 1).
    n = sizes["D"]["symbols"]
    own, xshg = (e[label]["repeats"][0] for label in ("check_gaps", "check_gaps_xshg"))
    assert own["exit_code"] == 0 and own["summary"].startswith(f"{n:,} series checked")
    assert "; 0 missing, 0 suspended, 0 off the calendar" in own["summary"]
    assert xshg["exit_code"] == 1 and "; 0 missing, 0 suspended, " in xshg["summary"]
    off = re.search(r"([\d,]+) off the calendar", xshg["summary"])
    assert off and int(off.group(1).replace(",", "")) > 0
    # The wide panel and DuckDB's PIVOT hold the same cells: every bar of D's store.
    for label in ("panel_close", "pivot_close"):
        r = e[label]["repeats"][0]
        assert (r["symbols_wide"], r["cells"]) == (n, result["scenarios"]["D"]["kdist_cold"]["rows"])


def test_daily_updates_and_reads_were_measured(smoke):
    result, _ = smoke
    size = result["sizes"]["G"]
    g = result["scenarios"]["G"]["daily_updates"]
    assert len(g["repeats"]) == 1  # the updates repeat inside the run
    r = g["repeats"][0]
    assert r["updates"] == size["days"] == len(r["update_seconds"])
    assert all(s > 0 for s in r["update_seconds"])
    # One new bar per symbol and session: D's store plus the days.
    assert g["rows"] == result["scenarios"]["D"]["kdist_cold"]["rows"] + \
        size["days"] * result["sizes"]["D"]["symbols"]
    # Read in new processes before and after, and in the updating process after: the same
    # store, so the same row groups.
    for when in ("before", "after", "after_in_updating_process"):
        assert r[when]["one_symbol_s"] > 0 and r[when]["last_60_days_s"] > 0
        assert r[when]["row_groups"] >= 1
    assert r["after"]["row_groups"] == r["after_in_updating_process"]["row_groups"]
    assert {"G.one_symbol_read", "G.updating_process.one_symbol_read"} <= set(result["targets"])


def test_big_universe_overhead_is_measured(smoke):
    result, _ = smoke
    r = result["scenarios"]["H"]["kdist_cold"]["repeats"][0]
    timings = r["timings"]
    assert {"plan", "ledger", "wait", "write", "progress", "report", "other"} <= set(timings)
    assert sum(timings.values()) == pytest.approx(r["elapsed_s"], rel=0.05, abs=0.05)
    share = bench.overhead(timings, r["elapsed_s"])
    assert 0.0 <= share <= 1.0
    assert result["targets"]["H.overhead"]["value"] == pytest.approx(share)


def test_update_fetched_only_the_tail(smoke):
    result, _ = smoke
    d_rows = result["scenarios"]["D"]["kdist_cold"]["rows"]
    for label, run in result["scenarios"]["E"].items():
        if not label.startswith("kdist_update"):
            continue
        r = run["repeats"][0]
        assert r["status"] == "done" and r["revised"] == 0
        assert r["calls"] == result["sizes"]["D"]["symbols"]  # one call per symbol
        assert r["fetch_ends"] == ["2024-12-31"]
        assert run["rows"] == d_rows + result["sizes"]["D"]["symbols"]  # one new bar each
    assert result["targets"]["E.only_new_bars"]["pass"] is True


def test_targets_and_machine_reported(smoke):
    result, _ = smoke
    for key, (what, op, target) in bench.TARGETS.items():
        verdict = result["targets"][key]
        assert verdict["what"] == what and verdict["target"] == f"{op} {target:g}"
        assert isinstance(verdict["value"], float) and verdict["pass"] in (True, False)
    machine = result["machine"]
    assert machine["cores"] >= 1 and machine["ram_gb"] > 0 and machine["python"]
    assert machine["packages"]["kdist"] and machine["packages"]["duckdb"]
    assert len(machine["load_at_start"]) == 3
    # Linux: how much CPU the host gave to other machines, per run and over the whole run.
    assert 0.0 <= result["steal_pct"] <= 100.0
    for runs in result["scenarios"].values():
        for r in runs.values():
            assert 0.0 <= r["steal_pct"] <= 100.0


def test_steal_is_the_share_of_cpu_time_taken_by_the_host():
    assert bench._steal_pct((10, 1000), (30, 1100)) == pytest.approx(20.0)
    assert bench._steal_pct((10, 1000), (10, 1000)) is None  # no time passed
    assert bench._steal_pct(None, (30, 1100)) is None  # no /proc/stat
    steal, total = bench._cpu_ticks()
    assert 0 <= steal <= total


def test_table_names_every_run(smoke):
    result, _ = smoke
    text = bench.table(result)
    for labels in RUNS.values():
        for label in labels:
            assert label in text
    assert "A.kdist_vs_ceiling" in text and ("PASS" in text or "FAIL" in text)


def test_unknown_scenario_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        bench.main(["--scenarios", "Z"])
    assert info.value.code == 2
    assert "unknown scenario(s) Z" in capsys.readouterr().err


def test_update_needs_the_full_import(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--scenarios", "E"])
    assert "scenario E updates scenario D's database" in capsys.readouterr().err
