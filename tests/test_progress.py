"""What a user sees while a job runs: progress symbol by symbol (in process and from Dask
workers), a live display in notebooks by default, a dashboard that counts the whole job, a
free dashboard port, and a summary that says when the dashboard is gone."""

from __future__ import annotations

import socket
import threading
import time
import warnings

import pytest

import kdist
import kdist.cluster
from kdist.progress import Callback, NotebookProgress, display, in_notebook

WINDOW = {"start": "2024-01-02", "end": "2024-02-29"}


class Recorder(Callback):
    """Every progress event with its time; what the scheduler knew when asked (``probe``)."""

    def __init__(self, probe=None):
        self.progress: list[tuple[float, int, int]] = []
        self.chunks: list[tuple[float, int, int]] = []
        self.probe, self.probed = probe, []

    def on_progress(self, done, total):
        self.progress.append((time.monotonic(), done, total))

    def on_chunks(self, done, total):
        self.chunks.append((time.monotonic(), done, total))
        if self.probe is not None and done == 1:
            self.probed.append(self.probe())


def _symbols(n):
    return kdist.get_provider("synthetic", universe=n).list_symbols()


def _moved_inside_chunks(rec: Recorder, chunk_size: int):
    """Progress counts that are no multiple of the chunk size, reported before the first
    chunk's result came back: symbols told from inside running chunks."""
    first_result = rec.chunks[0][0]
    return [done for t, done, _ in rec.progress if t < first_result and done % chunk_size]


def test_in_process_progress_moves_symbol_by_symbol(db):
    rec = Recorder()
    report = kdist.ingest(_symbols(12), **WINDOW, db=db, client="sync", chunk_size=12,
                          callback=rec, provider=kdist.get_provider("synthetic", latency=0.15))
    assert report.status == "done"
    assert _moved_inside_chunks(rec, 12), rec.progress
    dones = [done for _, done, _ in rec.progress]
    assert dones == sorted(dones) and dones[-1] == 12  # never back, and to the end


def test_progress_from_dask_workers_moves_symbol_by_symbol(db, client):
    """The ticks travel as Dask events from worker processes to the client."""
    rec = Recorder()
    report = kdist.ingest(_symbols(16), **WINDOW, db=db, client=client, chunk_size=8,
                          callback=rec, provider=kdist.get_provider("synthetic", latency=0.3))
    assert report.status == "done"
    assert _moved_inside_chunks(rec, 8), rec.progress
    assert rec.progress[-1][1:] == (16, 16)


def test_the_scheduler_knows_every_chunk_of_the_job_while_it_runs(db, client):
    """The dashboard's counts come from the scheduler's tasks: every chunk is submitted at
    once, and the scheduler holds what no thread can run yet."""

    def chunk_tasks():
        def count(dask_scheduler):
            states = [ts.state for key, ts in dask_scheduler.tasks.items()
                      if "-chunk-" in str(key)]
            return {"known": len(states), "waiting": sum(s in ("queued", "no-worker")
                                                          for s in states)}
        return client.run_on_scheduler(count)

    rec = Recorder(probe=chunk_tasks)
    report = kdist.ingest(_symbols(40), **WINDOW, db=db, client=client, chunk_size=2,
                          callback=rec, provider=kdist.get_provider("synthetic", latency=0.05))
    assert report.n_chunks == 20 and report.status == "done"
    seen = rec.probed[0]
    # The first result just came back (so at most one chunk is forgotten); 2 threads run two
    # chunks; the rest wait on the scheduler, counted on the dashboard.
    assert seen["known"] >= report.n_chunks - 1, seen
    assert seen["waiting"] >= report.n_chunks - 6, seen


def test_outside_a_notebook_nothing_is_shown_unless_asked():
    assert not in_notebook()
    assert type(display(None)) is Callback
    assert type(display(False)) is Callback
    assert type(display(True)).__name__ == "TerminalProgress"


def test_a_second_local_cluster_takes_a_free_dashboard_port_without_a_warning(monkeypatch):
    monkeypatch.delenv("KDIST_DASHBOARD_ADDRESS", raising=False)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setattr(kdist.cluster, "DASHBOARD", f"127.0.0.1:{port}")
        assert kdist.cluster.dashboard_address() == "127.0.0.1:0"
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # Dask's "Port ... is already in use" would raise
            with kdist.cluster.resolve_cluster("local", n_workers=1, threads_per_worker=1,
                                               fallback=False, security=False) as cluster:
                link = cluster.dashboard_link
        assert link.startswith("http://127.0.0.1:") and f":{port}/" not in link
    monkeypatch.setattr(kdist.cluster, "DASHBOARD", f"127.0.0.1:{port}")
    assert kdist.cluster.dashboard_address() == f"127.0.0.1:{port}"  # free again: its own


def test_the_summary_says_the_dashboard_closed_with_the_job(db):
    report = kdist.ingest(_symbols(4), **WINDOW, db=db, client="local", n_workers=1,
                          threads_per_worker=1, security=False)
    assert report.mode == "local" and report.cluster_closed
    assert "(closed with its cluster)" in str(report)
    assert report.to_dict()["dashboard_link"] == report.dashboard_link
    shared = kdist.cluster.shared_cluster(1, 1, security=False)
    try:
        again = kdist.ingest(_symbols(4), **WINDOW, db=db, client=shared.client)
        assert again.mode == "local"  # what the panels pass: the shared local cluster
        assert not again.cluster_closed and "closed" not in str(again)
        assert shared.connected()
    finally:
        kdist.cluster.close_shared(shared)


def test_notebook_progress_draws_counts_and_the_dashboard_link(monkeypatch):
    """The widget display, driven as a job drives it (a kernel test below shows it live)."""
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda *a, **k: shown.append(a))
    bar = NotebookProgress()
    bar.on_start({"job_id": "J", "mode": "local", "n_symbols": 3, "n_chunks": 1,
                  "dashboard_link": "http://127.0.0.1:8787/status", "db": "x.duckdb"})
    bar.on_progress(1, 3)
    bar.on_symbols([{"symbol": "A", "status": "failed"}])
    bar.on_progress(3, 3)
    box = shown[0][0]
    text = str(box.children[0].value) + box.children[1].value
    assert "3 symbols in 1 chunk on local" in text and "8787/status" in text
    assert bar._bar.value == 3 and "3/3 symbols" in bar._label.value
    assert "1 failed" in bar._label.value


KERNEL_CELL = """
import kdist
report = kdist.ingest(kdist.get_provider("synthetic", universe=6).list_symbols(),
                      start="2024-01-02", end="2024-01-31", db={db!r}, client="sync",
                      provider=kdist.get_provider("synthetic", latency=0.05){extra})
print(report.status)
"""


@pytest.mark.parametrize("extra, widget", [("", True), (", progress=False", False)])
def test_ingest_in_a_notebook_shows_a_live_bar_by_default(db, extra, widget):
    """A real kernel runs kdist.ingest in a cell: its output holds the progress widget
    unless progress=False."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell(KERNEL_CELL.format(db=db, extra=extra)))
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    outputs = nb.cells[0].outputs
    views = [o for o in outputs if "application/vnd.jupyter.widget-view+json"
             in o.get("data", {})]
    assert bool(views) is widget, outputs
    assert any("done" in o.get("text", "") for o in outputs), outputs


def _kdist_ingest(db, *extra, **popen):
    import os
    import subprocess
    import sys
    from pathlib import Path

    return subprocess.Popen(
        [str(Path(sys.executable).parent / "kdist"), "ingest", "600000.SH", "000001.SZ",
         "--start", "2024-01-02", "--end", "2024-01-31", "--db", db, "--no-local-tls",
         "--workers", "1", "--threads", "1", "--quiet", *extra],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "KDIST_DASHBOARD_ADDRESS": "127.0.0.1:0"}, **popen)


def test_keep_cluster_keeps_the_dashboard_up_until_enter(db):
    """kdist ingest --keep-cluster at a terminal: the summary's dashboard link still answers
    after the job; Enter closes the cluster and the command exits 0."""
    import os
    import pty
    import re
    import urllib.request

    leader, follower = pty.openpty()  # the user's terminal
    proc = _kdist_ingest(db, "--keep-cluster", stdin=follower)
    os.close(follower)
    try:
        line = proc.stderr.readline()
        link = re.search(r"dashboard at (http://\S+);", line)
        assert link, line + proc.stderr.read()
        with urllib.request.urlopen(link.group(1), timeout=30) as page:  # still up
            assert page.status == 200
        os.write(leader, b"\n")
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
    with pytest.raises(OSError):
        urllib.request.urlopen(link.group(1), timeout=5)
    assert kdist.load(db)["symbol"].nunique() == 2


def test_keep_cluster_without_a_terminal_closes_at_once(db):
    """From cron, a pipe or ssh there is nobody to press Enter: never wait."""
    import subprocess

    proc = _kdist_ingest(db, "--keep-cluster", stdin=subprocess.PIPE)  # open, never closed
    try:
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "no terminal to wait on" in proc.stderr.read()
