"""notebooks/background.py, which 02-cluster uses to run `kdist cluster scheduler` and `kdist
cluster worker` as a terminal would: commands run, waited for by a log line, and stopped,
also when the notebook's kernel dies without a word."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parent.parent / "notebooks" / "background.py"


@pytest.fixture(scope="module")
def background():
    spec = importlib.util.spec_from_file_location("kdist_notebook_background", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _gone(pid: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


SERVER = ("python -c \"import os, time; open('pid', 'w').write(str(os.getpid())); "
          "print('ready at: tcp://x', flush=True); time.sleep(600)\"")


def test_the_environment_runs_the_commands(background):
    assert background.argv("kdist cluster certs certs") == [sys.executable, "-m", "kdist",
                                                            "cluster", "certs", "certs"]
    assert background.argv("dask worker tls://h:1")[:3] == [sys.executable, "-m", "dask"]
    assert background.argv(["python", "-c", "1"]) == [sys.executable, "-c", "1"]


def test_run_prints_the_output_and_raises_on_failure(background, tmp_path, capsys):
    procs = background.Processes(tmp_path)
    assert procs.run("python -c \"print('hello')\"") == "hello\n"
    assert capsys.readouterr().out.endswith("hello\n")
    with pytest.raises(subprocess.CalledProcessError):
        procs.run("python -c \"import sys; sys.exit(3)\"")


def test_start_wait_for_and_stop(background, tmp_path, capsys):
    procs = background.Processes(tmp_path)
    server = procs.start("server", SERVER)
    assert server.wait_for("ready at:", timeout=60) == "tcp://x"
    assert "waiting for the server's 'ready at:' line" in capsys.readouterr().out
    child = int((tmp_path / "pid").read_text())
    assert procs.running() == 1 and _alive(child)
    procs.stop()
    assert procs.running() == 0
    assert _gone(child), "the command outlived stop()"


def test_a_command_that_exits_is_reported_with_its_log(background, tmp_path):
    procs = background.Processes(tmp_path)
    broken = procs.start("scheduler", "python -c \"print('no such option'); raise SystemExit(2)\"")
    with pytest.raises(RuntimeError, match=r"(?s)exited with code 2.*no such option"):
        broken.wait_for("Scheduler at:", timeout=60)


def test_a_silent_command_times_out(background, tmp_path):
    procs = background.Processes(tmp_path)
    quiet = procs.start("worker", "python -c \"import time; time.sleep(600)\"")
    with pytest.raises(TimeoutError, match="no 'Registered' line from the worker after 0.5 s"):
        quiet.wait_for("Registered", timeout=0.5)
    procs.stop()


def test_the_commands_stop_when_the_kernel_is_killed(tmp_path):
    """SIGKILL the process that started them (a notebook's kernel): they stop all the same."""
    script = (
        "import sys, time\n"
        f"sys.path.insert(0, {str(PATH.parent)!r})\n"
        "from background import Processes\n"
        f"procs = Processes({str(tmp_path)!r})\n"
        f"procs.start('server', {SERVER!r}).wait_for('ready at:', timeout=60)\n"
        "time.sleep(600)\n"
    )
    kernel = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "pid").exists() or not (tmp_path / "pid").read_text():
            assert time.monotonic() < deadline, "the command did not start"
            assert kernel.poll() is None, "the kernel exited"
            time.sleep(0.05)
        child = int((tmp_path / "pid").read_text())
    finally:
        kernel.send_signal(signal.SIGKILL)
        kernel.wait()
    assert _gone(child), "the command outlived the kernel"
