"""Helpers for tests that start Dask processes themselves."""

from __future__ import annotations

import contextlib
import os
import signal


def kill_groups(procs, timeout: float = 20) -> None:
    """SIGKILL each process's group (a `dask worker` is a nanny and its worker), then reap."""
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    for proc in procs:
        proc.wait(timeout=timeout)
