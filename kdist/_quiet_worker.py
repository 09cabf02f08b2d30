"""A Dask worker preload for kdist's local cluster: its workers ignore SIGINT.

A terminal's Ctrl-C (and a notebook's interrupt) goes to every process of the foreground
group, the local workers included, and each printed its own ``KeyboardInterrupt``
traceback. The process that started the cluster takes the signal, stops the job and closes
the cluster, which ends the workers.
"""

from __future__ import annotations

import signal
import threading


def dask_setup(worker) -> None:
    """Called by Dask in the worker process as the worker starts, on its main thread."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
