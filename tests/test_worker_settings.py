"""Worker processes run chunks with kdist's glibc allocator settings, however they started.

A `dask worker` started with Dask's defaults has ``MALLOC_TRIM_THRESHOLD_=65536`` from its
nanny, with which glibc maps every allocation over 128 KiB afresh and unmaps it on free
(docs/performance.md#worker-memory). Observed on glibc itself: whether an 8 MiB ``malloc``
in the worker process is an mmapped block (``mallinfo2().hblks``), as it is with Dask's
setting every time, and is not below kdist's 32 MiB threshold.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import pytest
from _procs import kill_groups

import kdist
from kdist import fetching
from kdist.fetching import WORKER_MALLOC, _malloc_plan, _mallopt, tune_allocator

BIN = Path(sys.executable).parent
SYMBOLS = ["600000.SH", "000001.SZ"]
WINDOW = {"start": "2024-01-01", "end": "2024-03-31"}

glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not fetching._glibc(),
    reason="glibc's allocator only",
)

# The probe runs on the workers: sent by value, as they cannot import this module.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def mmapped(size: int = 8 << 20, times: int = 2) -> list[int]:
    """For each of ``times`` ``malloc(size)``/``free`` in this process, whether glibc served
    it with a fresh mmap (glibc's own dynamic threshold maps only the first)."""
    import ctypes

    class Mallinfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = Mallinfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    seen = []
    for _ in range(times):
        before = libc.mallinfo2().hblks
        block = libc.malloc(size)
        seen.append(libc.mallinfo2().hblks - before)
        libc.free(block)
    return seen


def _environ(*names) -> dict:
    return {name: os.environ.get(name) for name in names}


@pytest.fixture(scope="module")
def dask_worker(tmp_path_factory):
    """A `dask scheduler` and one `dask worker` with Dask's defaults (a nanny, spawn, no
    allocator variables of ours); yields the scheduler's address."""
    tmp = tmp_path_factory.mktemp("dask")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "KDIST_"))}
    env["DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED"] = "False"
    sched_file = tmp / "scheduler.json"
    procs = [subprocess.Popen(
        [BIN / "dask", "scheduler", "--host", "127.0.0.1", "--port", "0",
         "--dashboard-address", "127.0.0.1:0", "--scheduler-file", sched_file],
        stdout=subprocess.DEVNULL, stderr=open(tmp / "scheduler.log", "w"), env=env,
        start_new_session=True)]
    try:
        deadline = time.monotonic() + 30
        address = None
        while address is None:
            assert time.monotonic() < deadline, (tmp / "scheduler.log").read_text()
            try:
                address = json.loads(sched_file.read_text())["address"]
            except (OSError, ValueError, KeyError):
                time.sleep(0.1)
        procs.append(subprocess.Popen(
            [BIN / "dask", "worker", address, "--nthreads", "1", "--host", "127.0.0.1",
             "--no-dashboard", "--local-directory", tmp / "w0"],
            stdout=subprocess.DEVNULL, stderr=open(tmp / "worker.log", "w"), env=env,
            start_new_session=True))
        yield address
    finally:
        kill_groups(procs)


@glibc
@pytest.mark.timeout(60)
def test_a_dask_worker_takes_kdists_allocator_settings_with_its_first_chunk(dask_worker, db):
    from distributed import Client

    with Client(dask_worker, timeout=20, set_as_default=False) as client:
        client.wait_for_workers(1, timeout=20)
        # Started with Dask's setting: every 8 MiB block is mapped afresh.
        assert list(client.run(_environ, "MALLOC_TRIM_THRESHOLD_").values()) == [
            {"MALLOC_TRIM_THRESHOLD_": "65536"}]
        assert list(client.run(mmapped).values()) == [[1, 1]]

        report = kdist.ingest(SYMBOLS, **WINDOW, db=db, client=client, progress=False)
        assert report.mode == "distributed" and report.symbols_ok == len(SYMBOLS)

        assert list(client.run(mmapped).values()) == [[0, 0]]
        # What the worker applied, once: asking again applies nothing new.
        assert list(client.run(tune_allocator).values()) == [WORKER_MALLOC]
        assert list(client.run(tune_allocator).values()) == [WORKER_MALLOC]
        assert list(client.run(lambda: fetching._tuned).values()) == [WORKER_MALLOC]


@glibc
@pytest.mark.timeout(60)
def test_kdists_local_workers_have_the_settings_from_their_start():
    """Forked from the fork server, they have its allocator: it must start with them."""
    code = (
        "import json, os, sys; sys.path.insert(0, sys.argv[1])\n"
        "import test_worker_settings as t\n"
        "from kdist.cluster import resolve_cluster\n"
        "with resolve_cluster('local', n_workers=1, threads_per_worker=1, fallback=False,\n"
        "                     security=False) as c:\n"
        "    print(json.dumps(list(c.client.run(t.mmapped).values())))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "KDIST_"))}
    env["KDIST_DASHBOARD_ADDRESS"] = "127.0.0.1:0"
    done = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent)],
                          capture_output=True, text=True, timeout=50, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == [[0, 0]]


def test_an_in_process_job_leaves_the_callers_allocator_alone(db, monkeypatch):
    called = []
    monkeypatch.setattr(fetching, "tune_allocator", lambda: called.append(1) or {})
    report = kdist.ingest(SYMBOLS, **WINDOW, db=db, client="sync", progress=False)
    assert report.mode == "sync" and report.symbols_ok == len(SYMBOLS)
    assert called == []


def test_only_dasks_default_or_kdists_own_values_are_replaced():
    trim, mmap = (str(WORKER_MALLOC[k]) for k in ("MALLOC_TRIM_THRESHOLD_",
                                                   "MALLOC_MMAP_THRESHOLD_"))
    assert _malloc_plan({}) == WORKER_MALLOC
    assert _malloc_plan({"MALLOC_TRIM_THRESHOLD_": "65536"}) == WORKER_MALLOC  # Dask's nanny
    assert _malloc_plan({"MALLOC_TRIM_THRESHOLD_": trim,
                         "MALLOC_MMAP_THRESHOLD_": mmap}) == WORKER_MALLOC  # kdist's nanny
    # The cluster owner's own choice is kept, whole.
    assert _malloc_plan({"MALLOC_TRIM_THRESHOLD_": "0"}) == {}
    assert _malloc_plan({"MALLOC_TRIM_THRESHOLD_": "65536",
                         "MALLOC_MMAP_THRESHOLD_": "1048576"}) == {}
    assert _malloc_plan({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"}) == {}
    assert _malloc_plan({"GLIBC_TUNABLES": "glibc.rtld.optional_static_tls=512"}) == WORKER_MALLOC


def test_nothing_is_applied_without_glibc(monkeypatch):
    monkeypatch.setattr(fetching, "_glibc", lambda: False)
    assert _mallopt(dict(WORKER_MALLOC)) == {}


def test_the_local_cluster_starts_its_workers_with_the_same_numbers():
    from kdist.cluster import _WORKER_MALLOC

    assert {key.rsplit(".", 1)[1]: value for key, value in _WORKER_MALLOC.items()} == WORKER_MALLOC
