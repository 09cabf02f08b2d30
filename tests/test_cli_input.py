"""The kdist command on bad input: exit 2 in one line, no traceback, no database file.

Issue 14: symbol files in GBK or binary junk, out-of-range dates, negative or NaN numbers,
``--db :memory:``, and output piped into ``head``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import kdist
from kdist.cli import main

WINDOW = ["--start", "2024-01-01", "--end", "2024-03-31"]
KDIST = Path(sys.executable).parent / "kdist"


def run(capsys, *args):
    """Exit code, stdout and stderr of ``kdist ARGS`` in this process (argparse exits too)."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


def refused(code, err, *fragments):
    """Exit 2, one line naming every fragment, no traceback."""
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("kdist: error: ") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err


# --- --symbols-file: encodings and junk --------------------------------------------------------


@pytest.mark.parametrize("text, encoding", [
    ("代码,名称\n600000,浦发银行\n000001,平安银行\n", "gbk"),                # a Windows export
    ("代码\t名称\t现价\n600000\t浦发银行\t10.52\n000001\t平安银行\t12.1\n", "gbk"),
    ("# 自选股\n600000.SH 浦发银行\n000001.SZ 平安银行\n", "gbk"),
    ("\ufeff600000.SH,浦发银行\r\n000001.SZ,平安银行\r\n", "utf-8"),     # UTF-8 with a BOM
    ("symbol,name\n600000.SH,Pudong Development Bank\n000001.SZ,Ping An Bank\n", "utf-8"),
    ("600000.SH 浦发银行\n000001.SZ 平安银行\n", "utf-16"),               # Excel's "Unicode text"
])
def test_symbols_file_in_gbk_or_utf8_with_names(capsys, db, tmp_path, text, encoding):
    path = tmp_path / "自选股.txt"
    path.write_bytes(text.encode(encoding))
    code, out, err = run(capsys, "ingest", "--symbols-file", path, *WINDOW, "--db", db,
                         "--scheduler", "sync", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["n_symbols"] == 2 and report["symbols_ok"] == 2


def test_symbols_file_words_that_may_be_codes_are_not_skipped(capsys, db, tmp_path):
    """Only names are skipped: a code glued to a name, or in full-width digits, is refused."""
    path = tmp_path / "list.txt"
    path.write_text("600000.SH 浦发银行\n000001平安银行\n６０００００\n", encoding="gbk")
    code, _, err = run(capsys, "ingest", "--symbols-file", path, *WINDOW, "--db", db)
    refused(code, err, "2 invalid symbol(s): '000001平安银行', '６０００００'")
    assert not Path(db).exists()


def test_symbols_file_encoding_can_be_named(capsys, db, tmp_path):
    path = tmp_path / "big5.txt"
    path.write_bytes("600000.SH 浦發銀行\n".encode("big5"))
    code, out, err = run(capsys, "ingest", "--symbols-file", path, "--symbols-encoding", "big5",
                         *WINDOW, "--db", db, "--scheduler", "sync", "--json")
    assert code == 0 and json.loads(out)["n_symbols"] == 1, err
    other = Path(db).with_name("other.duckdb")
    code, _, err = run(capsys, "ingest", "--symbols-file", path, "--symbols-encoding", "klingon",
                       *WINDOW, "--db", other)
    refused(code, err, "klingon")
    assert not other.exists()


@pytest.mark.parametrize("content, line", [
    (b"600000.SH\n000001.SZ\n\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", 4),   # a picture
    (b"600000.SH\n\xff\xfa\xfb\xfc\n", 2),                                # neither UTF-8 nor GBK
    (b"600000.SH\n000001.SZ\n600001.SH\x00\x00\x00\n", 3),                # NUL bytes
])
def test_symbols_file_of_junk_names_the_file_and_line(capsys, db, tmp_path, content, line):
    path = tmp_path / "list.txt"
    path.write_bytes(content)
    code, _, err = run(capsys, "ingest", "--symbols-file", path, *WINDOW, "--db", db)
    refused(code, err, str(path), f"line {line}")
    assert not Path(db).exists()


def test_symbols_file_that_is_a_directory(capsys, db, tmp_path):
    code, _, err = run(capsys, "ingest", "--symbols-file", tmp_path, *WINDOW, "--db", db)
    refused(code, err, str(tmp_path))


# --- dates out of range ---------------------------------------------------------------------


@pytest.mark.parametrize("dates", [
    ["--start=-1"],
    ["--start", "0000-01-01"],
    ["--start", "-20"],
    ["--start", "1066-10-14"],
    ["--start", "2020-01-01", "--end", "99999-01-01"],
    ["--start", "2020-01-01", "--end", "9999-12-31"],
    ["--start", "2020-01-01", "--end=-1"],
])
def test_out_of_range_dates_exit_2_and_leave_no_database(capsys, db, dates):
    code, _, err = run(capsys, "ingest", "600000.SH", *dates, "--db", db, "--scheduler", "sync")
    refused(code, err, "Invalid ")
    assert not Path(db).exists()


def test_show_with_an_out_of_range_date(capsys, db):
    kdist.ingest(["600000.SH"], start="2024-01-01", end="2024-01-31", db=db, client="sync")
    code, _, err = run(capsys, "show", "600000.SH", "--start=-1", "--db", db)
    refused(code, err, "Invalid start '-1'")


# --- numbers --------------------------------------------------------------------------------


@pytest.mark.parametrize("option, value", [
    ("--timeout", "-1"), ("--timeout", "nan"), ("--timeout", "inf"), ("--retries", "0"),
    ("--max-concurrency", "-1"), ("--max-concurrency", "0"),
    ("--max-rate", "nan"), ("--max-rate", "-2"), ("--max-rate", "0"),
    ("--workers", "-2"), ("--workers", "0"), ("--threads", "-1"), ("--chunk-size", "0"),
    ("--retries", "-1"), ("--overlap", "0"), ("--cooldown", "-5"), ("--cooldown", "nan"),
    ("--workers", "many"), ("--timeout", "soon"),
])
def test_bad_numbers_exit_2_before_any_database(capsys, db, option, value):
    code, _, err = run(capsys, "ingest", "600000.SH", *WINDOW, "--db", db, "--scheduler", "sync",
                       f"{option}={value}")
    refused(code, err, option, repr(value))
    assert not Path(db).exists()


def test_bad_numbers_of_update_and_show(capsys, db):
    code, _, err = run(capsys, "update", "--db", db, "--timeout", "nan")
    refused(code, err, "--timeout")
    code, _, err = run(capsys, "show", "600000.SH", "--db", db, "--tail", "-3")
    refused(code, err, "--tail")
    assert not Path(db).exists()


@pytest.mark.parametrize("args, fragment", [
    (["cluster", "certs", "{tmp}/c", "--days", "99999999"], "--days"),
    (["cluster", "certs", "{tmp}/c", "--days", "0"], "--days"),
    (["cluster", "scheduler", "--certs", "{tmp}", "--port", "70000", "--print"], "--port"),
    (["cluster", "worker", "tls://127.0.0.1:8786", "--nthreads", "-1", "--print"], "--nthreads"),
    (["ingest", "600000.SH", *WINDOW, "--split", "halves"], "--split"),
    (["ingest", "600000.SH", *WINDOW, "--symbols-encoding", "gbk"], "--symbols-encoding"),
    (["show", "600000.SH", "--start", "2024-02-01", "--end", "2024-01-01"], "after end"),
    (["cluster", "worker"], "ADDRESS"),
    (["frobnicate"], "frobnicate"),
])
def test_other_bad_input_is_one_line(capsys, tmp_path, monkeypatch, args, fragment):
    monkeypatch.chdir(tmp_path)  # the default --db, were anything written
    code, _, err = run(capsys, *(a.replace("{tmp}", str(tmp_path)) for a in args))
    refused(code, err, fragment)
    assert not (tmp_path / "c").exists()


def test_good_numbers_still_pass(capsys, db):
    code, out, err = run(capsys, "ingest", "600000.SH", *WINDOW, "--db", db, "--scheduler",
                         "sync", "--timeout", "0", "--retries", "1", "--cooldown", "0",
                         "--max-rate", "0.5", "--max-concurrency", "1", "--chunk-size", "1",
                         "--json")
    assert code == 0, err
    assert json.loads(out)["symbols_ok"] == 1


# --- --db :memory: ----------------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ["ingest", "600000.SH", *WINDOW, "--scheduler", "sync"],
    ["update", "--scheduler", "sync"],
    ["jobs"], ["show", "600000.SH"], ["status"], ["check"],
])
@pytest.mark.parametrize("db", [":memory:", ":memory:jobs", ""])
def test_db_that_is_not_a_file_is_refused(capsys, tmp_path, monkeypatch, args, db):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, *args, "--db", db)
    refused(code, err, "--db")
    assert list(tmp_path.iterdir()) == []


# --- output into a closed pipe ----------------------------------------------------------------


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A database with ten years of one symbol's daily bars (more than a pipe holds)."""
    db = str(tmp_path_factory.mktemp("pipe") / "kdist.duckdb")
    kdist.ingest(["600000.SH", "000001.SZ"], start="2015-01-01", end="2024-12-31", db=db,
                 client="sync")
    return db


def test_show_into_head_exits_quietly(stored):
    """``kdist show ... | head -2``: a real pipe, closed by head after two lines."""
    kd = subprocess.Popen([KDIST, "show", "600000.SH", "--tail", "0", "--db", stored],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = subprocess.run(["head", "-2"], stdin=kd.stdout, capture_output=True, timeout=60)
    kd.stdout.close()  # head holds the only reading end: when it exits, the pipe breaks
    err = kd.stderr.read()
    kd.wait(timeout=60)
    kd.stderr.close()
    assert len(head.stdout.splitlines()) == 2
    assert err == b""
    assert kd.returncode == 141


@pytest.mark.parametrize("args", [
    ["jobs", "--json"], ["jobs"], ["status", "--json"], ["check"], ["providers"],
    ["show", "000001.SZ", "--json"],
    ["ingest", "600000.SH", *WINDOW, "--scheduler", "sync", "--json"],
    ["ingest", "600000.SH", *WINDOW, "--scheduler", "sync"],            # rich's table
])
def test_output_into_a_closed_pipe_exits_quietly(stored, args):
    """The reader is gone before kdist writes a byte (``kdist jobs --json | head -0``).

    stdout block-buffered, as for a user (not PYTHONUNBUFFERED, as under some CI): the error
    then comes from the last flush, which Python would report at exit.
    """
    db = ["--db", stored] if args[0] != "providers" else []
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    kd = subprocess.Popen([KDIST, *args, *db], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=env)
    kd.stdout.close()
    _, err = kd.communicate(timeout=120)
    if "--json" in args or args[0] != "ingest":
        assert err == b""
    else:  # the progress bar is on stderr
        assert b"Traceback" not in err and b"Error" not in err
    assert kd.returncode == 141


# --- mistyped names: the closest one is suggested (issue 17) ------------------------------------


@pytest.mark.parametrize("args, fragment", [
    (["--provider", "synthetc"],
     "Unknown provider 'synthetc' (did you mean 'synthetic'?); available: "),
    (["--option", "latncy=0.1"],
     "Unknown option(s) latncy for provider 'synthetic' (did you mean 'latency'?); known: "),
    (["--provider", "synthetic", "--option", "sed=1", "--option", "jiter=1"],
     "(did you mean 'jitter' for 'jiter', 'seed' for 'sed'?)"),
    (["--freq", "1dd"], "Unknown freq '1dd' (did you mean '1d'?); choose one of 1d, 1w"),
    (["--freq", "1D"], "Unknown freq '1D' (did you mean '1d'?)"),
    (["--adjust", "qfg"], "Unknown adjust 'qfg' (did you mean 'qfq'?); choose one of none"),
])
def test_a_mistyped_name_is_refused_with_the_closest_one(capsys, db, args, fragment):
    code, _, err = run(capsys, "ingest", "600000.SH", *WINDOW, *args, "--db", db,
                       "--scheduler", "sync")
    refused(code, err, fragment)
    assert not Path(db).exists()


@pytest.mark.parametrize("args", [["--provider", "yf"], ["--freq", "2d"], ["--adjust", "both"],
                                  ["--option", "zzz=1"]])
def test_nothing_close_suggests_nothing(capsys, db, args):
    code, _, err = run(capsys, "ingest", "600000.SH", *WINDOW, *args, "--db", db)
    refused(code, err)
    assert "did you mean" not in err


def test_the_python_api_suggests_the_same(db):
    from kdist.errors import InvalidOptionError, UnknownProviderError

    with pytest.raises(UnknownProviderError, match=r"did you mean 'synthetic'\?"):
        kdist.get_provider("synthetc")
    with pytest.raises(InvalidOptionError, match=r"did you mean 'latency'\?"):
        kdist.get_provider("synthetic", latncy=0.1)
    with pytest.raises(InvalidOptionError, match=r"did you mean '1d'\?") as info:
        kdist.ingest(["600000.SH"], start="2024-01-01", freq="1dd", db=db, client="sync")
    assert info.value.option == "freq" and info.value.exit_code == 2
    with pytest.raises(InvalidOptionError, match=r"did you mean 'hfq'\?"):
        kdist.ingest(["600000.SH"], start="2024-01-01", adjust="hfg", db=db, client="sync")
    assert not Path(db).exists()
