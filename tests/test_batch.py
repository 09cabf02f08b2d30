"""One provider call and one validation pass per chunk (``Provider.fetch_many`` and
``normalise_many``) give exactly the bars and outcomes of the symbol-by-symbol path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import kdist
from kdist.errors import TransientProviderError
from kdist.limits import Limits
from kdist.plan import Chunk
from kdist.providers import Provider
from kdist.providers.synthetic import SyntheticProvider
from kdist.fetching import _batches, fetch_chunk
from kdist.schema import Adjust, Freq, normalise, normalise_many

SYMBOLS = ("600000.SH", "000001.SZ", "AAPL", "830799.BJ", "600519.SH")
START, END = pd.Timestamp("2023-11-01"), pd.Timestamp("2024-03-01")


class Counting(SyntheticProvider):
    """The synthetic provider, counting its batch calls (in process: the tests run sync)."""

    def __init__(self, **options):
        super().__init__(**options)
        self.batches = 0

    def fetch_many(self, *args, **kwargs):
        self.batches += 1
        return super().fetch_many(*args, **kwargs)


class OneByOne(SyntheticProvider):
    """The same bars, without the batch hook: kdist asks symbol by symbol."""

    fetch_many = Provider.fetch_many


def _same(batch, one):
    pd.testing.assert_frame_equal(
        batch.bars.reset_index(drop=True), one.bars.reset_index(drop=True)
    )
    assert batch.outcomes == one.outcomes
    assert batch.index == one.index


def _both(chunk, freq=Freq.DAY, adjust=Adjust.NONE, **options):
    provider = Counting(**options)
    batch = fetch_chunk(provider, chunk, freq, adjust)
    one = fetch_chunk(OneByOne(**options), chunk, freq, adjust)
    return provider, batch, one


@pytest.mark.parametrize(
    "freq,adjust",
    [(Freq.DAY, Adjust.NONE), (Freq.DAY, Adjust.QFQ), (Freq.WEEK, Adjust.HFQ),
     (Freq.MONTH, Adjust.NONE), (Freq.MIN5, Adjust.NONE), (Freq.MIN60, Adjust.QFQ)],
)
def test_a_batch_equals_symbol_by_symbol(freq, adjust):
    provider, batch, one = _both(Chunk(3, SYMBOLS, START, END), freq, adjust,
                                 empty="AAPL", seed=5)
    assert provider.batches == 1
    _same(batch, one)
    statuses = {o["symbol"]: o["status"] for o in batch.outcomes}
    assert statuses == {s: "empty" if s == "AAPL" else "ok" for s in SYMBOLS}
    assert batch.bars["symbol"].dtype == one.bars["symbol"].dtype == "str"


def test_a_batch_with_a_window_per_symbol_equals_symbol_by_symbol():
    since = (START, pd.Timestamp("2024-02-20"), pd.Timestamp("2024-03-05"), START,
             pd.Timestamp("2023-12-31"))
    chunk = Chunk(0, SYMBOLS, START, END, since=since, full=since)
    provider, batch, one = _both(chunk)
    assert provider.batches == 1
    _same(batch, one)
    outcome = {o["symbol"]: o for o in batch.outcomes}
    assert outcome["AAPL"]["status"] == "empty"  # its window starts after the chunk's end
    assert outcome["000001.SZ"]["first_ts"] >= pd.Timestamp("2024-02-20")


def _stored(chunk: Chunk) -> pd.DataFrame:
    """What the store would hold: each symbol's bars from its window start on."""
    bars = fetch_chunk(OneByOne(), chunk, Freq.DAY, Adjust.NONE).bars
    return bars[["symbol", "ts", "open", "high", "low", "close", "volume"]]


def test_revised_history_is_detected_per_symbol_in_a_batch():
    since = tuple([pd.Timestamp("2024-02-26")] * len(SYMBOLS))
    full = tuple([START] * len(SYMBOLS))
    overlap = _stored(Chunk(0, SYMBOLS, since[0], pd.Timestamp("2024-02-29")))
    overlap.loc[overlap["symbol"] == "000001.SZ", "close"] += 0.01  # the source revised it
    gone = overlap.index[overlap["symbol"] == "AAPL"][1]
    overlap.loc[gone, "ts"] = pd.Timestamp("2024-02-25")  # a stored bar the source lost
    chunk = Chunk(0, SYMBOLS, START, END, since=since, full=full, overlap=overlap)
    provider, batch, one = _both(chunk)
    assert provider.batches == 1
    _same(batch, one)
    revised = {o["symbol"] for o in batch.outcomes if o["revised"]}
    assert revised == {"000001.SZ", "AAPL"}
    for o in batch.outcomes:
        assert o["window_start"] == (START if o["symbol"] in revised else since[0])
        assert o["attempts"] == (2 if o["symbol"] in revised else 1)
        assert o["appended"] == (o["symbol"] not in revised)
    # Symbols whose stored bars still hold get only the bars after them; revised ones all.
    first = batch.bars.groupby("symbol")["ts"].min()
    assert (first.drop(sorted(revised)) > pd.Timestamp("2024-02-28")).all()
    assert (first[sorted(revised)] < pd.Timestamp("2023-11-03")).all()


class Crafted(Provider):
    """Vendor-shaped frames with bad rows, per symbol, and a batch built from them."""

    name = "crafted"
    ROWS = {
        # a repeated day (the later row wins), a negative price and a row outside the window
        "600000.SH": [("2024-01-02", 10, 11, 9, 10.5), ("2024-01-03", 10, 11, 9, 10),
                      ("2024-01-02", 10, 11.5, 9, 11), ("2024-01-04", -1, 11, 9, 10),
                      ("2023-12-01", 10, 11, 9, 10)],
        # every row rejected: high below low
        "000001.SZ": [("2024-01-02", 10, 8, 9, 10)],
        "AAPL": [("2024-01-03", 1, 2, 0.5, 1.5), ("2024-01-02", 1, 2, 0.5, 1.2)],
        "830799.BJ": [],
    }

    def fetch(self, symbol, start, end, freq="1d", adjust="none"):
        rows = self.ROWS[symbol]
        return pd.DataFrame(rows, columns=["date", "open", "high", "low", "close"])

    def fetch_many(self, symbols, starts, end, freq="1d", adjust="none"):
        frames = [self.fetch(s, st, end).assign(symbol=s) for s, st in zip(symbols, starts)]
        return pd.concat(frames, ignore_index=True)


class CraftedOneByOne(Crafted):
    fetch_many = Provider.fetch_many


def test_rejected_rows_are_counted_per_symbol_in_a_batch():
    chunk = Chunk(1, tuple(Crafted.ROWS), pd.Timestamp("2024-01-01"), pd.Timestamp("2024-02-01"))
    batch = fetch_chunk(Crafted(), chunk, Freq.DAY, Adjust.NONE)
    one = fetch_chunk(CraftedOneByOne(), chunk, Freq.DAY, Adjust.NONE)
    _same(batch, one)
    outcome = {o["symbol"]: o for o in batch.outcomes}
    assert outcome["600000.SH"]["rejected"] == {
        "non-positive price": 1, "outside requested window": 1, "duplicate timestamp": 1}
    assert outcome["600000.SH"]["rows"] == 2
    assert batch.bars.loc[batch.bars["symbol"] == "600000.SH", "close"].iloc[0] == 11  # last wins
    assert outcome["000001.SZ"]["status"] == "failed"
    assert "every row was rejected (1 high below low)" in outcome["000001.SZ"]["error"]
    assert outcome["830799.BJ"]["status"] == "empty"
    assert list(batch.bars.loc[batch.bars["symbol"] == "AAPL", "close"]) == [1.2, 1.5]


class Broken(SyntheticProvider):
    """A batch that goes wrong in the given way; ``fetch`` still works."""

    def __init__(self, how="raise", **options):
        super().__init__(**options)
        self.how = how

    def __reduce__(self):
        return (Broken, (self.how,))

    def fetch_many(self, symbols, starts, end, freq="1d", adjust="none"):
        if self.how == "raise":
            raise TransientProviderError("connection reset by peer")
        frame = super().fetch_many(symbols, starts, end, freq, adjust)
        return frame.drop(columns="close")  # "missing column 'close'" for the whole batch


@pytest.mark.parametrize("how", ["raise", "bad frame"])
def test_a_failed_batch_falls_back_to_symbol_by_symbol(how):
    chunk = Chunk(0, SYMBOLS, START, END)
    batch = fetch_chunk(Broken(how), chunk, Freq.DAY, Adjust.NONE)
    one = fetch_chunk(OneByOne(), chunk, Freq.DAY, Adjust.NONE)
    _same(batch, one)
    assert all(o["status"] == "ok" for o in batch.outcomes)


def test_a_symbol_with_a_simulated_fault_sends_the_chunk_symbol_by_symbol():
    chunk = Chunk(0, SYMBOLS, START, END)
    provider = Counting(fail="AAPL")
    result = fetch_chunk(provider, chunk, Freq.DAY, Adjust.NONE)
    assert provider.batches == 1  # asked, and it declined
    statuses = {o["symbol"]: o["status"] for o in result.outcomes}
    assert statuses == {s: "failed" if s == "AAPL" else "ok" for s in SYMBOLS}


def test_concurrency_and_rate_limits_keep_calls_symbol_by_symbol():
    provider = SyntheticProvider()
    assert _batches(provider, None)
    assert _batches(provider, Limits(key="k", provider="synthetic"))
    assert not _batches(provider, Limits(key="k", provider="synthetic", max_rate=5.0))
    assert not _batches(provider, Limits(key="k", provider="synthetic", max_concurrency=2))
    assert not _batches(OneByOne(), None)


def test_an_import_through_batches_stores_what_symbol_by_symbol_stores(tmp_path, fingerprint):
    symbols = SyntheticProvider(universe=30).list_symbols()
    window = {"start": "2023-06-01", "end": "2024-05-31"}
    reports = []
    for name, provider in (("batch", SyntheticProvider(empty=symbols[3])),
                           ("one", OneByOne(empty=symbols[3]))):
        reports.append(kdist.ingest(symbols, **window, provider=provider, client="sync",
                                    db=tmp_path / f"{name}.duckdb", chunk_size=7))
    pd.testing.assert_frame_equal(fingerprint(tmp_path / "batch.duckdb"),
                                  fingerprint(tmp_path / "one.duckdb"))
    ledgers = []
    for name, report in zip(("batch", "one"), reports):
        with kdist.Store(tmp_path / f"{name}.duckdb", read_only=True) as store:
            ledgers.append(store.job_symbols(report.job_id))
    pd.testing.assert_frame_equal(*ledgers)
    assert reports[0].symbols_empty == 1 and reports[0].symbols_ok == 29


def test_normalise_many_matches_normalise_per_symbol():
    rng = np.random.default_rng(7)
    frames, starts = [], []
    for i, symbol in enumerate(SYMBOLS):
        n = 40
        close = 10 + rng.normal(0, 1, n)
        frame = pd.DataFrame({
            "ts": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 30, n), "D"),
            "open": close, "high": close + 0.5, "low": close - rng.normal(0.5, 1, n),
            "close": close, "volume": rng.integers(-2, 100, n).astype(float),
        })
        frames.append(frame.assign(symbol=symbol))
        starts.append(pd.Timestamp("2024-01-01") + pd.Timedelta(days=i))
    many = pd.concat(frames, ignore_index=True).sample(frac=1, random_state=1)
    for names in (many["symbol"], many["symbol"].astype("category")):
        bars, codes, rejected = normalise_many(
            many.assign(symbol=names), SYMBOLS, start=starts, end=pd.Timestamp("2024-01-25")
        )
        for i, symbol in enumerate(SYMBOLS):
            mine = many[many["symbol"] == symbol].drop(columns="symbol")
            want, why = normalise(mine, start=starts[i], end=pd.Timestamp("2024-01-25"))
            got = bars[codes == i].reset_index(drop=True)
            pd.testing.assert_frame_equal(got, want)
            assert rejected[i] == why


def test_normalise_many_drops_rows_of_symbols_not_asked_for():
    frame = pd.DataFrame({"symbol": ["A", "B", "C"], "ts": pd.to_datetime(["2024-01-02"] * 3),
                          "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0})
    bars, codes, rejected = normalise_many(frame, ["C", "A"])
    assert list(codes) == [0, 1] and len(bars) == 2 and rejected == [{}, {}]


def test_a_chunk_of_many_symbols_is_checked_against_its_stored_bars():
    # 600 symbols in one chunk: the (symbol, time) keys of the overlap check must not overflow.
    symbols = tuple(SyntheticProvider(universe=600).list_symbols())
    since = tuple([pd.Timestamp("2024-02-26")] * len(symbols))
    overlap = _stored(Chunk(0, symbols, since[0], pd.Timestamp("2024-02-29")))
    chunk = Chunk(0, symbols, START, END, since=since, full=tuple([START] * len(symbols)),
                  overlap=overlap)
    provider, batch, one = _both(chunk)
    assert provider.batches == 1
    _same(batch, one)
    assert not any(o["revised"] for o in batch.outcomes)
    assert all(o["appended"] for o in batch.outcomes)
