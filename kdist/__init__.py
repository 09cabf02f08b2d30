"""kdist: import historical K-line bars for many symbols on a Dask cluster into DuckDB.

The public API::

    report = kdist.ingest(["600000.SH", "000001.SZ"], start="2020-01-01", end="2024-12-31",
                          db="data/kdist.duckdb")
    bars = kdist.load("data/kdist.duckdb", "600000.SH")

Importing kdist imports no vendor library and no notebook package; ``kdist.widgets`` and
the vendor providers load theirs when used.
"""

from . import errors
from ._version import __version__
from .cluster import Cluster, resolve_cluster
from .errors import (
    DatabaseLockedError,
    InvalidSymbolError,
    JobFailedError,
    KdistError,
    ProviderError,
    StoreError,
    UsageError,
)
from .outcome import JobStatus, Status
from .plan import Chunk, plan_chunks
from .progress import Callback, TerminalProgress
from .providers import Provider, available_providers, get_provider
from .report import Report
from .exporting import export
from .runner import ChunkResult, chunk_tasks, fetch, fetch_chunk, ingest, update
from .schema import Adjust, Freq, normalise, normalise_symbol
from .store import (
    DEFAULT_DB,
    Store,
    catalog,
    check,
    check_adjust,
    corporate_actions,
    findings,
    jobs,
    ledger,
    load,
    panel,
    quality,
    quality_history,
)
from .verification import VerifyReport, verify

__all__ = [
    "Adjust",
    "Callback",
    "Chunk",
    "ChunkResult",
    "Cluster",
    "DEFAULT_DB",
    "DatabaseLockedError",
    "Freq",
    "InvalidSymbolError",
    "JobFailedError",
    "JobStatus",
    "KdistError",
    "Provider",
    "ProviderError",
    "Report",
    "Status",
    "Store",
    "StoreError",
    "TerminalProgress",
    "UsageError",
    "VerifyReport",
    "__version__",
    "available_providers",
    "catalog",
    "check",
    "check_adjust",
    "chunk_tasks",
    "corporate_actions",
    "errors",
    "export",
    "fetch",
    "fetch_chunk",
    "findings",
    "get_provider",
    "ingest",
    "jobs",
    "ledger",
    "load",
    "normalise",
    "normalise_symbol",
    "panel",
    "plan_chunks",
    "quality",
    "quality_history",
    "resolve_cluster",
    "update",
    "verify",
]


#: Modules reached as ``kdist.NAME`` without importing them first (each imports its own
#: packages, backtrader's or zipline's, only when used).
_LAZY = ("feeds", "horizons", "qlib", "zipline")


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'kdist' has no attribute {name!r}")
