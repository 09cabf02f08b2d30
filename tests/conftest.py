"""Shared fixtures: a temporary database, a small real Dask cluster, and the oracle.

The cluster is session-scoped and small (2 worker processes x 1 thread), as this suite runs
on two cores; each test gets its own client to it.
"""

from __future__ import annotations

import logging
import os

import pytest

import kdist

# Dashboards on a free port, so tests never fight over 8787.
os.environ.setdefault("KDIST_DASHBOARD_ADDRESS", "127.0.0.1:0")


@pytest.fixture
def db(tmp_path):
    """Path of a fresh DuckDB file."""
    return str(tmp_path / "kdist.duckdb")


def oracle(db, freq="1d", adjust="none"):
    """Per-symbol bar count and value hash: equal for equal stored data (see docs/testplan.md)."""
    with kdist.Store(db, read_only=True) as store:
        return store.fingerprint(freq, adjust)


@pytest.fixture
def fingerprint():
    return oracle


@pytest.fixture(scope="session")
def cluster():
    """A LocalCluster of 2 worker processes with 1 thread each, on 127.0.0.1."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        silence_logs=logging.ERROR,
    ) as cluster:
        yield cluster


@pytest.fixture
def client(cluster):
    """A client of the session cluster, closed after the test."""
    from distributed import Client

    with Client(cluster, set_as_default=False) as client:
        yield client


@pytest.fixture
def interop_python():
    """``interop_python("qlib")``: the Python of ``.venv-qlib``, the virtual environment
    ``make interop`` makes from ``tests/interop/qlib.txt`` for a consumer whose pins conflict
    with kdist's. Missing, the test fails (make test makes it first)."""
    from pathlib import Path

    def python(name: str) -> str:
        path = Path(__file__).resolve().parent.parent / f".venv-{name}" / "bin" / "python"
        if not path.exists():
            pytest.fail(f"{path} is missing: run make interop (make test does it first)")
        return str(path)

    return python
