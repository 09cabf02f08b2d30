"""Ctrl-C in a terminal reaches every process of the foreground group: kdist's local workers
must stay quiet, and the user sees kdist's one line (issue: 73 lines of worker tracebacks)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

KDIST = str(Path(sys.executable).parent / "kdist")
ENV = {**os.environ, "KDIST_DASHBOARD_ADDRESS": "127.0.0.1:0", "COLUMNS": "120"}

pytestmark = pytest.mark.skipif(not hasattr(os, "killpg"), reason="process groups")


def _start(db, *extra):
    proc = subprocess.Popen(
        [KDIST, "ingest", "--all", "--start", "2020-01-02", "--end", "2024-12-31", "--db", db,
         "--provider", "synthetic", "--option", "universe=400", "--option", "latency=0.05",
         "--scheduler", "local", "--workers", "2", "--threads", "1", "--no-local-tls",
         *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
        start_new_session=True)  # its own group: the test plays the terminal
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    return proc, lines, reader


def _workers_of(pid: int) -> list[int]:
    """Processes in the group of ``pid`` other than itself (the fork server, the workers)."""
    out = subprocess.run(["ps", "-o", "pid=", "-g", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split() if int(p) != pid]


def test_ctrl_c_on_a_local_cluster_prints_one_line(db):
    proc, lines, reader = _start(db)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len(_workers_of(proc.pid)) < 3:
            time.sleep(0.2)  # the fork server and two workers are up
        time.sleep(2.0)  # chunks are running on them
        assert proc.poll() is None, "".join(lines)
        before = len(lines)
        os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        code = proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    reader.join(timeout=10)
    after = [line.rstrip("\n") for line in lines[before:] if line.strip()]
    text = "\n".join(lines)
    assert code == 130, text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    said = [line for line in after if line.startswith("kdist:")]
    assert len(said) == 1 and "interrupted" in said[0] and "--resume" in said[0], after
    # Besides that line, at most the progress bar's last state.
    assert len(after) <= 3, after


def test_dask_tornado_and_bokeh_logs_go_to_the_log_file(tmp_path, monkeypatch, capfd):
    """A dashboard tab's disconnect (a bokeh/tornado traceback) or a cluster's error lands in
    the log file, not in the terminal's progress bar."""
    import logging

    from kdist import cli

    log = tmp_path / "state" / "kdist.log"
    monkeypatch.setenv("KDIST_LOG", str(log))
    import distributed  # noqa: F401  (Dask's logging setup, as the command meets it)

    names = [*cli._NOISY, "distributed.client"]
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).propagate)
             for n in names}
    try:
        cli._logs_to_file()
        logging.getLogger("distributed.scheduler").error("worker lost")
        logging.getLogger("distributed.client").error("reconnect failed")  # Dask's own handler
        logging.getLogger("tornado.application").error("Uncaught exception in websocket")
        logging.getLogger("bokeh.server.protocol_handler").error("AssertionError: pull")
        for name in cli._NOISY:
            for handler in logging.getLogger(name).handlers:
                handler.flush()
        out, err = capfd.readouterr()
        assert "worker lost" not in err and "websocket" not in err and "AssertionError" not in err
        text = log.read_text(encoding="utf-8")
        assert "worker lost" in text and "websocket" in text and "AssertionError: pull" in text
        assert "reconnect failed" in text and "reconnect failed" not in err
    finally:
        for name, (handlers, propagate) in saved.items():
            logger = logging.getLogger(name)
            for handler in logger.handlers:
                if handler not in handlers:
                    handler.close()
            logger.handlers[:] = handlers
            logger.propagate = propagate


def test_the_log_file_is_in_the_users_state_directory(monkeypatch, tmp_path):
    from kdist import cli

    monkeypatch.delenv("KDIST_LOG", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert cli.log_path() == str(tmp_path / "kdist" / "kdist.log")
