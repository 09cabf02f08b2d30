"""Split a job's symbols into chunks, one Dask task each.

By default chunks are small and many, several per worker thread, so a slow or dead worker
delays one small chunk rather than a large slice of the job, and results reach the store
steadily. A chunk is also kept under a row budget, so intraday jobs get smaller chunks.
``split="per-worker"`` reproduces one contiguous slice per worker, for comparison.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import InvalidOptionError
from .schema import Freq

__all__ = ["Chunk", "estimate_rows", "plan_chunks"]

#: Chunks per worker thread when ``chunk_size`` is not given.
CHUNKS_PER_THREAD = 4
#: Upper bound on the symbols of one chunk, and on its estimated rows.
MAX_CHUNK_SYMBOLS = 50
#: The bound for a job run in process: no worker can be lost with a chunk, and each chunk
#: costs a task and a check of its own (see docs/performance.md#in-process); the row budget
#: still bounds a chunk of years.
MAX_CHUNK_SYMBOLS_IN_PROCESS = 2000
MAX_CHUNK_ROWS = 250_000

_BARS_PER_DAY = {Freq.DAY: 1, Freq.WEEK: 0.2, Freq.MONTH: 1 / 21}


@dataclass(frozen=True, eq=False)
class Chunk:
    """A unit of work: some symbols and the window to fetch for each of them.

    A plain job fetches every symbol in ``[start, end)``. An incremental job gives each
    symbol its own start in ``since`` (from its last stored bars), the stored bars it must
    match in ``overlap`` (``symbol, ts, open, high, low, close, volume``), and in ``full``
    the start to fetch from instead when they do not match (history was revised).
    """

    index: int
    symbols: tuple[str, ...]
    start: pd.Timestamp
    end: pd.Timestamp  # exclusive
    since: tuple[pd.Timestamp, ...] | None = None
    full: tuple[pd.Timestamp, ...] | None = None
    overlap: pd.DataFrame | None = None

    def __len__(self):
        return len(self.symbols)

    def window(self, i: int) -> tuple[pd.Timestamp, pd.Timestamp]:
        """Start of symbol ``i``'s fetch, and where a full re-fetch would start."""
        if self.since is None:
            return self.start, self.start
        return self.since[i], self.full[i]

    def split(self) -> list[Chunk]:
        """One chunk per symbol, each keeping its window and overlap bars."""
        return [
            Chunk(
                self.index, (symbol,), self.start, self.end,
                since=None if self.since is None else (self.since[i],),
                full=None if self.full is None else (self.full[i],),
                overlap=self.stored_overlap(symbol),
            )
            for i, symbol in enumerate(self.symbols)
        ]

    def stored_overlap(self, symbol: str) -> pd.DataFrame | None:
        if self.overlap is None:
            return None
        rows = self.overlap[self.overlap["symbol"] == symbol]
        return rows if len(rows) else None


def _bounds(n: int, size: int, threads: int, most: int) -> list[int]:
    """Where the chunks of a job start (and the last one ends), ``size`` symbols each on
    average, never more than ``most``.

    With several threads, two changes to equal chunks, for a job that waits on a network:
    - Chunk sizes alternate a quarter above and below ``size``, when ``most`` allows: equal
      chunks started together finish together, and then every thread normalises its bars
      and asks the scheduler for more work at the same moment.
    - The last round (one chunk per thread) is cut in halves, its second half in quarters:
      at the end some threads run out of work while others still have a whole chunk to
      finish, and smaller last chunks shorten that wait.
    Scenario B gains and scenario C's stragglers lose a little (see
    docs/performance.md#chunking).
    """
    if threads <= 1 or size < 2 or n <= threads * size:
        return list(range(0, n, size)) + [n]
    step = max(1, size // 4)
    if size + step <= most:
        cycle = [size + step, size - step]
    else:
        cycle = [size]
    head = n - threads * size  # where the last round starts
    bounds, at = [], 0
    while at < head:
        bounds.append(at)
        at += cycle[len(bounds) % len(cycle) - 1]
    half = head + (n - head) // 2
    bounds += list(range(head, half, max(1, size // 2)))
    bounds += list(range(half, n, max(1, size // 4)))
    return bounds + [n]


def _stamps(column: pd.Series) -> list[pd.Timestamp]:
    """A column of dates as Timestamps, one object per distinct date: an update's symbols
    share a few starts, and making one Timestamp per symbol cost more than cutting the
    chunks (a chunk's task then also pickles each shared start once)."""
    codes, uniques = pd.factorize(column, use_na_sentinel=False)
    stamps = list(uniques)
    return [stamps[code] for code in codes]


def estimate_rows(freq: Freq, start: pd.Timestamp, end: pd.Timestamp) -> int:
    """Rough bars per symbol in ``[start, end)``: 245 trading days a year, 4 hours a day."""
    days = max(1.0, (end - start).days * 245 / 365)
    per_day = 240 / freq.minutes if freq.intraday else _BARS_PER_DAY[freq]
    return max(1, int(days * per_day))


def plan_chunks(
    symbols: list[str],
    start: pd.Timestamp,
    end: pd.Timestamp,
    *,
    freq: Freq = Freq.DAY,
    n_threads: int = 1,
    n_workers: int = 1,
    chunk_size: int | None = None,
    split: str = "chunks",
    windows: pd.DataFrame | None = None,
    overlap: pd.DataFrame | None = None,
    in_process: bool = False,
) -> list[Chunk]:
    """Return the chunks of a job, in sorted symbol order.

    Parameters
    ----------
    symbols
        Canonical, unique symbols.
    start, end
        The window, ``end`` exclusive.
    n_threads, n_workers
        The cluster's total worker threads and workers, which size the default chunks.
    chunk_size
        Symbols per chunk, overriding the default.
    split
        ``"chunks"`` (default) or ``"per-worker"``: one contiguous slice per worker.
    windows, overlap
        Incremental jobs: ``windows`` has one row per symbol with ``since`` (fetch start) and
        ``full`` (start of a full re-fetch); ``overlap`` the stored bars each fetch must match.
    in_process
        The job runs in this process (``sync``): default chunks may hold up to
        ``MAX_CHUNK_SYMBOLS_IN_PROCESS`` symbols instead of ``MAX_CHUNK_SYMBOLS``.
    """
    if split not in ("chunks", "per-worker"):
        raise InvalidOptionError(
            f"Unknown split {split!r}; choose 'chunks' or 'per-worker'", option="split"
        )
    # bool is an int subclass: chunk_size=True would silently mean 1.
    if chunk_size is not None and (
        not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1
    ):
        raise InvalidOptionError(
            f"chunk_size must be a positive whole number, not {chunk_size!r}", option="chunk_size"
        )
    # Sorted, so that each chunk is a contiguous range of symbols: the row groups a batch
    # writes then hold narrow ranges of them, and a read of one symbol skips every other
    # row group by its min/max statistics (see docs/performance.md#layout). In the order
    # given (the synthetic universe alternates .SH and .SZ), every row group held codes from
    # 000001.SZ to 603999.SH and a one-symbol read scanned them all.
    symbols = sorted(symbols)
    n = len(symbols)
    if n == 0:
        return []
    threads = most = 1  # a given chunk_size, or slices per worker, are taken as they are
    if chunk_size is None:
        if split == "per-worker":
            chunk_size = math.ceil(n / max(1, n_workers))
        else:
            # An incremental chunk fetches from each symbol's `since`; a revised symbol's
            # full history is fetched on its own, so it does not size the chunk.
            first = start if windows is None else windows["since"].min()
            by_threads = math.ceil(n / (CHUNKS_PER_THREAD * max(1, n_threads)))
            by_rows = max(1, MAX_CHUNK_ROWS // estimate_rows(freq, first, end))
            cap = MAX_CHUNK_SYMBOLS_IN_PROCESS if in_process else MAX_CHUNK_SYMBOLS
            most = max(1, min(by_rows, cap))
            chunk_size = min(by_threads, most)
            threads = 1 if in_process else n_threads
    bounds = _bounds(n, chunk_size, threads, most)
    if windows is None:
        return [Chunk(i, tuple(symbols[lo:hi]), start, end)
                for i, (lo, hi) in enumerate(zip(bounds, bounds[1:]))]
    position = pd.Index(symbols)
    windows = windows.iloc[np.argsort(position.get_indexer(windows["symbol"]), kind="stable")]
    since, full = _stamps(windows["since"]), _stamps(windows["full"])
    if overlap is not None and len(overlap):
        # Sorted by the symbols' order once, then each chunk's bars are one slice.
        at = position.get_indexer(overlap["symbol"])
        order = np.argsort(at, kind="stable")
        overlap, at = overlap.iloc[order].reset_index(drop=True), at[order]
    chunks = []
    for i, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
        rows = None
        if overlap is not None and len(overlap):
            a, b = np.searchsorted(at, [lo, hi])
            rows = overlap.iloc[a:b].reset_index(drop=True) if b > a else None
        chunks.append(Chunk(i, tuple(symbols[lo:hi]), start, end, since=tuple(since[lo:hi]),
                            full=tuple(full[lo:hi]), overlap=rows))
    return chunks
