"""Run terminal commands in the background from a notebook, tied to its kernel.

``02-cluster`` runs ``kdist cluster scheduler`` and ``kdist cluster worker`` as you would in
two terminals, so that the notebook runs top to bottom by itself (and under nbval)::

    from background import Processes

    procs = Processes(directory)                        # commands run in directory
    procs.run("kdist cluster certs certs")              # waits for it, prints its output
    scheduler = procs.start("scheduler", "kdist cluster scheduler --certs certs --port 0")
    address = scheduler.wait_for("Scheduler at:")       # the rest of that log line
    procs.stop()                                        # the last started first

A command's first word ``kdist``, ``dask`` or ``python`` is this kernel's environment's (the
kernel's ``PATH`` may not have them). Each background command writes to ``NAME.log`` in the
directory and runs in a session of its own, so interrupting a cell does not reach it, under a
small launcher that stops it when the launcher's input pipe closes: when :meth:`stop` closes
it, or when the kernel ends in any way (killed included: the system closes the pipe then). No
scheduler or worker outlives the notebook. Dask's scratch space goes in the directory too.

Only the notebooks use this module; it is not part of kdist.
"""

from __future__ import annotations

import atexit
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["Process", "Processes"]

#: Seconds to wait for a process by default: generous, a busy machine can be slow to start one.
TIMEOUT = 180.0

#: Runs the command given in its arguments; stops it (SIGTERM, then waits for it) once its own
#: standard input closes, and exits with the command's code if the command ends first.
LAUNCHER = "\n".join([
    "import subprocess, sys, threading",
    "child = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL)",
    "def stop():",
    "    sys.stdin.read()  # returns when the pipe closes: stop() or the kernel is gone",
    "    child.terminate()",
    "threading.Thread(target=stop, daemon=True).start()",
    "sys.exit(child.wait())",
])


def argv(command: str | list) -> list[str]:
    """The command line to run: ``kdist``, ``dask`` and ``python`` from this environment."""
    words = shlex.split(command) if isinstance(command, str) else [str(w) for w in command]
    if words and words[0] in ("kdist", "dask"):
        return [sys.executable, "-m", words[0], *words[1:]]
    if words and words[0] == "python":
        return [sys.executable, *words[1:]]
    return words


class Process:
    """A command started by :meth:`Processes.start`; its output is in :attr:`log`."""

    def __init__(self, name: str, popen: subprocess.Popen, log: Path):
        self.name, self.popen, self.log = name, popen, log

    def __repr__(self) -> str:
        state = "running" if self.running() else f"exited {self.popen.returncode}"
        return f"<Process {self.name} ({state}), log {self.log}>"

    def running(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def wait_for(self, text: str, timeout: float = TIMEOUT) -> str:
        """Wait until a line of the log contains ``text`` and return what follows it there.

        Raises ``RuntimeError`` (with the log) if the process exits first, ``TimeoutError``
        after ``timeout`` seconds.
        """
        print(f"waiting for the {self.name}'s {text!r} line ...", flush=True)
        deadline = time.monotonic() + timeout
        while True:
            for line in self.output().splitlines():
                if text in line:
                    return line.split(text, 1)[1].strip()
            if not self.running():
                raise RuntimeError(f"the {self.name} exited with code {self.popen.returncode} "
                                   f"before printing {text!r}; its log {self.log}:\n"
                                   f"{self.output()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {text!r} line from the {self.name} after {timeout:g} s; "
                                   f"its log {self.log}:\n{self.output()}")
            time.sleep(0.1)

    def stop(self, timeout: float = 60.0) -> None:
        """Close the launcher's pipe and wait; SIGKILL the whole session if it hangs."""
        if self.popen.stdin is not None and not self.popen.stdin.closed:
            self.popen.stdin.close()
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.popen.wait()


class Processes:
    """Commands run in ``directory``, the background ones stopped by :meth:`stop`."""

    def __init__(self, directory):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.started: list[Process] = []
        self.env = dict(os.environ, PYTHONUNBUFFERED="1",
                        DASK_TEMPORARY_DIRECTORY=str(self.directory / "dask"))
        atexit.register(self.stop)

    def run(self, command, timeout: float = TIMEOUT) -> str:
        """Run ``command`` to its end, print and return its output; raise if it fails."""
        done = subprocess.run(argv(command), cwd=self.directory, env=self.env, text=True,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, check=False,
                              stderr=subprocess.STDOUT, timeout=timeout)
        print(done.stdout, end="")
        if done.returncode:
            raise subprocess.CalledProcessError(done.returncode, command, done.stdout)
        return done.stdout

    def start(self, name: str, command) -> Process:
        """Start ``command`` in the background, its output in ``NAME.log``."""
        log = self.directory / f"{name}.log"
        with open(log, "w", encoding="utf-8") as out:
            popen = subprocess.Popen(
                [sys.executable, "-c", LAUNCHER, *argv(command)],
                cwd=self.directory, env=self.env, stdin=subprocess.PIPE, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        process = Process(name, popen, log)
        self.started.append(process)
        return process

    def running(self) -> int:
        """How many of the background processes are still running."""
        return sum(p.running() for p in self.started)

    def stop(self, timeout: float = 60.0) -> None:
        """Stop every background process, the last started first (workers, then their
        scheduler), and wait for each."""
        for process in reversed(self.started):
            process.stop(timeout)
