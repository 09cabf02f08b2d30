"""Chunking a job's symbols into tasks."""

from __future__ import annotations

import pandas as pd
import pytest

from kdist.errors import InvalidOptionError
from kdist.plan import (
    CHUNKS_PER_THREAD,
    MAX_CHUNK_ROWS,
    MAX_CHUNK_SYMBOLS,
    MAX_CHUNK_SYMBOLS_IN_PROCESS,
    Chunk,
    estimate_rows,
    plan_chunks,
)
from kdist.schema import Freq, window_bounds

START, END = window_bounds("2020-01-01", "2024-12-31")


def symbols(n):
    return [f"{600000 + i:06d}.SH" for i in range(n)]


def flatten(chunks):
    return [s for c in chunks for s in c.symbols]


def test_default_gives_several_chunks_per_thread():
    syms = symbols(400)
    chunks = plan_chunks(syms, START, END, n_threads=4, n_workers=2)
    assert len(chunks) >= CHUNKS_PER_THREAD * 4
    sizes = [len(c) for c in chunks]
    # 25 symbols on average (400 / (4 chunks x 4 threads)) before the last round.
    assert sum(sizes[:12]) == 12 * 25
    assert flatten(chunks) == syms


def test_chunks_vary_in_size_so_they_do_not_finish_together():
    chunks = plan_chunks(symbols(1000), START, END, n_threads=32, n_workers=2)
    sizes = [len(c) for c in chunks]
    assert sizes[:8] == [10, 6] * 4  # 8 on average: 1000 / (4 chunks x 32 threads)
    assert max(sizes) <= MAX_CHUNK_SYMBOLS
    assert flatten(chunks) == symbols(1000)


def test_the_last_round_of_chunks_is_smaller():
    sizes = [len(c) for c in plan_chunks(symbols(1000), START, END, n_threads=32)]
    # One chunk per thread's worth of symbols (32 x 8) at the end: half in halves, half in
    # quarters.
    assert sizes[-96:] == [4] * 32 + [2] * 64
    assert sum(sizes[:-96]) == 1000 - 256


def test_chunk_sizes_never_pass_the_row_budget_to_vary():
    # 25 years of daily bars: the row budget sets the size, so chunks cannot be larger.
    lo, hi = window_bounds("2000-01-01", "2024-12-31")
    most = MAX_CHUNK_ROWS // estimate_rows(Freq.DAY, lo, hi)
    assert most < MAX_CHUNK_SYMBOLS
    syms = symbols(2000)
    sizes = [len(c) for c in plan_chunks(syms, lo, hi, n_threads=4)]
    assert sizes[: 2000 // most - 4] == [most] * (2000 // most - 4)
    assert max(sizes) == most


def test_few_symbols_give_one_symbol_chunks():
    chunks = plan_chunks(symbols(3), START, END, n_threads=8)
    assert [len(c) for c in chunks] == [1, 1, 1]


def test_default_respects_max_chunk_symbols():
    syms = symbols(1000)
    chunks = plan_chunks(syms, START, END, n_threads=1)
    assert max(len(c) for c in chunks) == MAX_CHUNK_SYMBOLS
    assert len(chunks) == 1000 // MAX_CHUNK_SYMBOLS
    assert flatten(chunks) == syms


def test_in_process_chunks_hold_more_symbols_within_the_row_budget():
    syms = symbols(5000)
    lo, hi = window_bounds("2024-12-24", "2024-12-31")  # an update's few days
    chunks = plan_chunks(syms, lo, hi, n_threads=1, in_process=True)
    assert MAX_CHUNK_SYMBOLS_IN_PROCESS >= 1250
    assert [len(c) for c in chunks] == [1250] * 4  # 4 chunks for the one thread
    assert flatten(chunks) == syms
    # Years of bars: the row budget still decides, as on a cluster.
    years = plan_chunks(syms, START, END, n_threads=1, in_process=True)
    assert max(len(c) for c in years) == MAX_CHUNK_ROWS // estimate_rows(Freq.DAY, START, END)


def test_intraday_respects_row_budget():
    lo, hi = window_bounds("2024-01-01", "2024-12-31")
    syms = symbols(200)
    daily = plan_chunks(syms, lo, hi, freq=Freq.DAY, n_threads=1)
    minute = plan_chunks(syms, lo, hi, freq=Freq.MIN1, n_threads=1)
    per_symbol = estimate_rows(Freq.MIN1, lo, hi)
    assert per_symbol > 50_000  # a year of 1-minute bars
    assert max(len(c) for c in minute) * per_symbol <= MAX_CHUNK_ROWS
    assert len(minute) > len(daily)
    assert flatten(minute) == syms


def test_huge_intraday_window_still_one_symbol_per_chunk():
    lo, hi = window_bounds("2000-01-01", "2024-12-31")
    assert estimate_rows(Freq.MIN1, lo, hi) > MAX_CHUNK_ROWS
    chunks = plan_chunks(symbols(5), lo, hi, freq=Freq.MIN1, n_threads=1)
    assert [len(c) for c in chunks] == [1] * 5


def test_estimate_rows_by_freq():
    lo, hi = window_bounds("2024-01-01", "2024-12-31")
    day = estimate_rows(Freq.DAY, lo, hi)
    assert 240 <= day <= 250
    assert estimate_rows(Freq.MIN1, lo, hi) == pytest.approx(day * 240, rel=0.01)
    assert estimate_rows(Freq.MIN60, lo, hi) == pytest.approx(day * 4, rel=0.01)
    assert estimate_rows(Freq.WEEK, lo, hi) == pytest.approx(day / 5, rel=0.02)
    assert 11 <= estimate_rows(Freq.MONTH, lo, hi) <= 12
    assert estimate_rows(Freq.DAY, lo, lo + pd.Timedelta(days=1)) == 1


def test_chunk_size_override():
    syms = symbols(10)
    chunks = plan_chunks(syms, START, END, n_threads=64, chunk_size=4)
    assert [len(c) for c in chunks] == [4, 4, 2]
    assert [c.index for c in chunks] == [0, 1, 2]
    assert flatten(chunks) == syms


def test_chunk_size_override_beats_max_chunk_symbols():
    chunks = plan_chunks(symbols(120), START, END, chunk_size=100)
    assert [len(c) for c in chunks] == [100, 20]


def test_per_worker_gives_one_slice_per_worker():
    syms = symbols(10)
    chunks = plan_chunks(syms, START, END, n_threads=6, n_workers=3, split="per-worker")
    assert [len(c) for c in chunks] == [4, 4, 2]
    assert flatten(chunks) == syms
    # Contiguous slices.
    assert chunks[0].symbols == tuple(syms[:4])


@pytest.mark.parametrize("n", [1, 5, 10, 99])
@pytest.mark.parametrize("n_workers", [1, 2, 3, 4])
def test_per_worker_never_more_slices_than_workers(n, n_workers):
    syms = symbols(n)
    chunks = plan_chunks(syms, START, END, n_threads=8, n_workers=n_workers, split="per-worker")
    assert 1 <= len(chunks) <= n_workers
    assert flatten(chunks) == syms


def test_per_worker_even_split():
    chunks = plan_chunks(symbols(300), START, END, n_threads=2, n_workers=2, split="per-worker")
    assert [len(c) for c in chunks] == [150, 150]


@pytest.mark.parametrize("n", [1, 7, 49, 50, 51, 333])
@pytest.mark.parametrize("n_threads", [1, 3, 16])
def test_every_symbol_exactly_once_in_order(n, n_threads):
    syms = symbols(n)
    chunks = plan_chunks(syms, START, END, n_threads=n_threads)
    assert flatten(chunks) == syms
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert all(len(c) >= 1 for c in chunks)


def test_chunks_carry_the_window():
    chunks = plan_chunks(symbols(3), START, END, chunk_size=2)
    assert all((c.start, c.end) == (START, END) for c in chunks)
    assert isinstance(chunks[0], Chunk) and len(chunks[0]) == 2


def test_no_symbols_no_chunks():
    assert plan_chunks([], START, END) == []
    assert plan_chunks([], START, END, split="per-worker") == []


@pytest.mark.parametrize("bad", [0, -1, 2.5, "10", True])
def test_bad_chunk_size(bad):
    with pytest.raises(InvalidOptionError, match="chunk_size must be a positive whole number") as info:
        plan_chunks(symbols(3), START, END, chunk_size=bad)
    assert info.value.option == "chunk_size"


@pytest.mark.parametrize("bad", ["per_worker", "", "workers", None])
def test_bad_split(bad):
    with pytest.raises(InvalidOptionError, match="choose 'chunks' or 'per-worker'") as info:
        plan_chunks(symbols(3), START, END, split=bad)
    assert info.value.option == "split"
