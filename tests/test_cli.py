"""The kdist command: exit codes, JSON, one-line errors, the read commands."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kdist.cli import main

WINDOW = ["--start", "2024-01-01", "--end", "2024-03-31"]


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_ingest_json_report_and_exit_0(capsys, db):
    code, out, err = run(capsys, "ingest", "600000.SH", "sz000001", *WINDOW, "--db", db,
                         "--scheduler", "sync", "--json")
    assert code == 0, err
    report = json.loads(out)
    for key in ("job_id", "mode", "n_symbols", "symbols_ok", "symbols_empty", "failures",
                "rows_written", "elapsed_s"):
        assert key in report
    assert report["n_symbols"] == 2 and report["symbols_ok"] == 2 and report["mode"] == "sync"


def test_some_failed_exit_3_and_named(capsys, db):
    code, out, _ = run(capsys, "ingest", "600000.SH", "000001.SZ", *WINDOW, "--db", db,
                       "--scheduler", "sync", "--option", "fail=000001.SZ", "--json")
    assert code == 3
    assert list(json.loads(out)["failures"]) == ["000001.SZ"]


def test_all_failed_exit_1(capsys, db):
    code, out, err = run(capsys, "ingest", "600000.SH", *WINDOW, "--db", db, "--scheduler", "sync",
                         "--option", "fail=600000.SH", "--json")
    assert code == 1
    assert json.loads(out)["symbols_failed"] == 1
    assert err.startswith("kdist: error: No symbol could be imported")


@pytest.mark.parametrize(
    "args, message",
    [
        (["ingest", "600000.SH", "x';DROP TABLE kline;--", *WINDOW], "invalid symbol"),
        (["ingest", "600000.SH", "--start", "2024-05-01", "--end", "2024-01-01"], "after end"),
        (["ingest", "600000.SH", *WINDOW, "--provider", "yf"], "Unknown provider 'yf'; available:"),
        (["ingest", "600000.SH", *WINDOW, "--freq", "2d"], "Unknown freq '2d'"),
        (["ingest", "600000.SH", *WINDOW, "--adjust", "both"], "Unknown adjust 'both'"),
        (["ingest", "600000.SH", *WINDOW, "--option", "nope=1"], "Unknown option(s) nope"),
        (["ingest", "600000.SH", *WINDOW, "--option", "latency=fast"], "latency='fast'"),
        (["ingest", *WINDOW], "No symbols"),
        (["ingest", "600000.SH", "--start", "yesterday-ish"], "Invalid start"),
    ],
)
def test_bad_usage_exit_2_one_line_nothing_written(capsys, db, args, message):
    code, out, err = run(capsys, *args, "--db", db, "--scheduler", "sync")
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not Path(db).exists()


def test_argparse_errors_are_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["ingest", "600000.SH", "--workers", "many"])
    assert info.value.code == 2
    code, _, err = run(capsys, "ingest", "600000.SH")
    assert code == 2 and "--start is required" in err


def test_debug_shows_the_traceback(db):
    with pytest.raises(Exception, match="after end"):
        main(["--debug", "ingest", "600000.SH", "--start", "2024-05-01", "--end", "2024-01-01",
              "--db", db])


def test_symbols_file_and_all(capsys, db, tmp_path):
    path = tmp_path / "symbols.txt"
    path.write_text("# my list\n600000.SH, 000001.SZ\nsh600001\n")
    code, out, _ = run(capsys, "ingest", "--symbols-file", path, *WINDOW, "--db", db,
                       "--scheduler", "sync", "--json")
    assert code == 0 and json.loads(out)["n_symbols"] == 3
    code, out, _ = run(capsys, "ingest", "--all", "--option", "universe=7", *WINDOW, "--db", db,
                       "--scheduler", "sync", "--json")
    assert code == 0 and json.loads(out)["n_symbols"] == 7


def test_read_commands(capsys, db):
    code, out, _ = run(capsys, "ingest", "600000.SH", "000001.SZ", *WINDOW, "--db", db,
                       "--scheduler", "sync", "--option", "fail=000001.SZ", "--json")
    job_id = json.loads(out)["job_id"]

    code, out, _ = run(capsys, "jobs", "--db", db, "--json")
    jobs = json.loads(out)
    assert code == 0 and jobs[0]["job_id"] == job_id and jobs[0]["status"] == "partial"
    assert jobs[0]["symbols_ok"] == 1 and jobs[0]["symbols_failed"] == 1

    code, out, _ = run(capsys, "jobs", job_id, "--db", db)
    assert code == 0 and "000001.SZ" in out and "PermanentProviderError" in out

    code, out, _ = run(capsys, "show", "sh600000", "--db", db, "--tail", "3")
    assert code == 0 and out.startswith("600000.SH 1d none:") and "2024-03-29" in out

    code, out, _ = run(capsys, "status", "--db", db, "--json")
    assert [row["symbol"] for row in json.loads(out)] == ["600000.SH"]

    code, out, _ = run(capsys, "check", "--db", db, "--json")
    assert code == 0 and json.loads(out)["ok"] is True


def test_read_commands_on_a_missing_database(capsys, tmp_path):
    code, _, err = run(capsys, "jobs", "--db", tmp_path / "none.duckdb")
    assert code == 1 and "No kdist database" in err


def test_providers_lists_synthetic(capsys):
    code, out, _ = run(capsys, "providers", "--json")
    names = {row["name"]: row for row in json.loads(out)}
    assert code == 0 and names["synthetic"]["installed"] is True
    # What a gap check and the horizon warnings take from each provider.
    assert (names["synthetic"]["calendar"], names["synthetic"]["bar_time"]) == ("SYNTHETIC", "end")
    assert names["yfinance"]["bar_time"] == "start" and names["csv"]["bar_time"] is None
    assert names["yfinance"]["horizons"]["1m"]["days"] == 30
    code, out, _ = run(capsys, "providers")
    lines = out.splitlines()
    yahoo = lines[next(i for i, l in enumerate(lines) if l.startswith("yfinance")) + 1:]
    assert next(l for l in yahoo if "calendar:" in l).strip() == (
        "calendar: each symbol's exchange; intraday bars stamped at their start; served: 1m "
        "the last 30 days; 5m 15m 30m 60m the last 60 days")


@pytest.mark.slow
def test_locked_database_fails_before_fetching_and_names_the_holder(tmp_path):
    db = tmp_path / "k.duckdb"
    log = tmp_path / "calls.log"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         f"import duckdb, time; c = duckdb.connect({str(db)!r}); print('ready', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        result = subprocess.run(
            [Path(sys.executable).parent / "kdist", "ingest", "600000.SH", *WINDOW, "--db", db,
             "--scheduler", "sync", "--option", f"call_log={log}"],
            capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 1
        assert f"PID {holder.pid}" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert not log.exists()  # nothing was fetched
        assert holder.poll() is None  # the holder is unaffected
    finally:
        holder.kill()
        holder.wait()


# --- kdist cluster: certificates and TLS commands --------------------------------------------


def test_cluster_certs_writes_a_ca_and_says_where_each_file_goes(capsys, tmp_path):
    certs = tmp_path / "certs"
    code, out, err = run(capsys, "cluster", "certs", certs, "--host", "sched.lan",
                         "--host", "10.0.0.5")
    assert code == 0, err
    assert sorted(p.name for p in certs.iterdir()) == [
        "ca-key.pem", "ca.pem", "client-key.pem", "client.pem", "scheduler-key.pem",
        "scheduler.pem", "worker-key.pem", "worker.pem"]
    assert "sched.lan, 10.0.0.5" in out and "signed by a new CA" in out
    assert "stays here" in out and "every worker machine" in out
    assert f"kdist cluster scheduler --certs {certs} --host sched.lan" in out
    assert f"--scheduler tls://sched.lan:8786 --certs {certs}" in out

    code, _, err = run(capsys, "cluster", "certs", certs)
    assert code == 2 and "--force" in err and len(err.strip().splitlines()) == 1
    code, out, _ = run(capsys, "cluster", "certs", certs, "--force")
    assert code == 0 and f"signed by the CA already in {certs}" in out


def test_cluster_scheduler_and_worker_print_the_dask_commands(capsys, tmp_path):
    import shlex

    from kdist.security import scheduler_command, worker_command

    certs = tmp_path / "certs"
    run(capsys, "cluster", "certs", certs)
    code, out, _ = run(capsys, "cluster", "scheduler", "--certs", certs, "--port", "8800",
                       "--print")
    assert code == 0
    assert shlex.split(out) == scheduler_command(certs, port=8800)
    assert shlex.split(out)[1:4] == ["scheduler", "--protocol", "tls"]

    code, out, _ = run(capsys, "cluster", "worker", "tls://127.0.0.1:8800", "--certs", certs,
                       "--nthreads", "2", "--print")
    assert code == 0
    assert shlex.split(out) == worker_command("tls://127.0.0.1:8800", certs, nthreads=2)

    code, out, _ = run(capsys, "cluster", "worker", "tls://127.0.0.1:8800",
                       "--tls-ca", certs / "ca.pem", "--tls-cert", certs / "worker.pem",
                       "--tls-key", certs / "worker-key.pem", "--print")
    assert code == 0 and f"--tls-cert {certs / 'worker.pem'}" in out


@pytest.mark.parametrize("args, message", [
    (["cluster", "scheduler", "--print"], "needs --certs DIR"),
    (["cluster", "scheduler", "--certs", "{tmp}/nope", "--print"], "no such directory"),
    (["cluster", "worker", "tcp://127.0.0.1:8786", "--certs", "{tmp}", "--print"],
     "not a TLS address"),
    (["cluster", "certs", "{tmp}/c", "--host", "not a host"], "Invalid host"),
    (["ingest", "600000.SH", *WINDOW, "--scheduler", "tls://127.0.0.1:8786"],
     "uses TLS: give the client's certificates with --certs DIR or --tls-ca"),
    (["ingest", "600000.SH", *WINDOW, "--scheduler", "tls://127.0.0.1:8786",
      "--tls-ca", "{tmp}/ca.pem"], "--tls-ca, --tls-cert and --tls-key together"),
    (["ingest", "600000.SH", *WINDOW, "--scheduler", "sync", "--certs", "{tmp}"],
     "they are for a tls:// scheduler"),
    (["update", "--scheduler", "tls://127.0.0.1:8786"], "uses TLS"),
])
def test_tls_usage_errors_exit_2_in_one_line(capsys, tmp_path, db, args, message):
    if args[0] == "update":  # update needs something stored to update
        run(capsys, "ingest", "600000.SH", *WINDOW, "--db", db, "--scheduler", "sync")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "{tmp}/ca.pem" not in " ".join(args):
        from kdist.security import make_certs

        make_certs(tmp_path)
    code, _, err = run(capsys, *args, *(["--db", db] if args[0] in ("ingest", "update") else []))
    assert code == 2, err
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_update_extends_what_is_stored(capsys, db):
    code, _, err = run(capsys, "ingest", "600000.SH", "--start", "2024-01-01", "--end",
                       "2024-02-29", "--db", db, "--scheduler", "sync")
    assert code == 0, err
    code, out, err = run(capsys, "update", "--end", "2024-03-29", "--db", db,
                         "--scheduler", "sync", "--json")
    assert code == 0, err
    [report] = json.loads(out)
    assert report["symbols_ok"] == 1 and report["rows_written"] > 0
    code, out, _ = run(capsys, "show", "600000.SH", "--db", db, "--tail", "1")
    assert "2024-03-29" in out


def test_cluster_certs_prints_commands_that_paste(tmp_path):
    """Quoted for the shell, an IPv6 scheduler in brackets."""
    import shlex

    target = tmp_path / "with space"
    out = subprocess.run(
        [sys.executable, "-m", "kdist", "cluster", "certs", str(target), "--host", "fd00::5"],
        capture_output=True, text=True, check=True,
    ).stdout
    worker = next(line for line in out.splitlines() if "cluster worker" in line)
    assert shlex.split(worker)[3:] == ["tls://[fd00::5]:8786", "--certs", str(target)]
