"""Backtesting libraries run on stored bars: backtrader on ``kdist.feeds.backtrader``,
vectorbt on ``kdist.panel``. Each test runs the library itself (installed with the ``test``
extra) and checks that what it saw is exactly what :func:`kdist.load` returns, and that the
strategy traded.

The store is synthetic: its provider serves corporate actions, so qfq is derived, and a
few bars are turned into the placeholder bars of a suspension, so ``placeholders="drop"``
has something to leave out.
"""

from __future__ import annotations

import subprocess
import sys

import duckdb
import numpy as np
import pandas as pd
import pytest

import kdist
import kdist.feeds as feeds

#: A consumer library run on what kdist gives it: make test-interop runs these too.
pytestmark = pytest.mark.interop

SYMBOLS = ["600000.SH", "000001.SZ"]
LATE = "300750.SZ"  # stored from 2023-03 only: NaN before that in a panel
SUSPENDED = {"600000.SH": ["2023-06-05", "2023-06-06", "2023-06-07"],
             "000001.SZ": ["2024-02-19", "2024-02-20"]}


def suspend(db, symbol, days):
    """Turn ``symbol``'s daily bars of ``days`` into placeholders: no trade, every price the
    close of the bar before (what vendors write for a suspended day)."""
    con = duckdb.connect(db)
    try:
        [(prev,)] = con.execute(
            "SELECT close FROM kline WHERE symbol = ? AND freq = '1d' AND adjust = 'none' "
            "AND ts < ?::TIMESTAMP_S ORDER BY ts DESC LIMIT 1", [symbol, min(days)]).fetchall()
        con.execute(
            "UPDATE kline SET open = ?, high = ?, low = ?, close = ?, volume = 0, amount = 0 "
            "WHERE symbol = ? AND freq = '1d' AND ts::DATE IN (SELECT unnest(?::DATE[]))",
            [prev, prev, prev, prev, symbol, days])
    finally:
        con.close()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    db = str(tmp_path_factory.mktemp("feeds") / "kdist.duckdb")
    kdist.ingest(SYMBOLS, start="2022-01-01", end="2024-12-31", db=db, client="sync",
                 progress=False)
    kdist.ingest([LATE], start="2023-03-01", end="2024-12-31", db=db, client="sync",
                 progress=False)
    for symbol, days in SUSPENDED.items():
        suspend(db, symbol, days)
    return db


# --- backtrader -------------------------------------------------------------------------------


def crossover(bt):
    """SMA(10)/SMA(30) crossover, 100 shares; records every bar it is shown (``prenext``
    while the averages warm up, ``next`` after) and every executed order."""

    class Crossover(bt.Strategy):
        def __init__(self):
            self.seen, self.fills = [], []
            self.cross = bt.ind.CrossOver(bt.ind.SMA(self.data.close, period=10),
                                          bt.ind.SMA(self.data.close, period=30))

        def record(self):
            d = self.data
            self.seen.append((d.datetime.datetime(0), d.open[0], d.high[0], d.low[0],
                              d.close[0], d.volume[0]))

        def prenext(self):
            self.record()

        def next(self):
            self.record()
            if not self.position and self.cross[0] > 0:
                self.buy(size=100)
            elif self.position and self.cross[0] < 0:
                self.close()

        def notify_order(self, order):
            if order.status == order.Completed:
                self.fills.append((bt.num2date(order.executed.dt), order.isbuy(),
                                   order.executed.size, order.executed.price))

    return Crossover


def run(bt, *datas):
    cerebro = bt.Cerebro(stdstats=False)
    for data in datas:
        cerebro.adddata(data)
    cerebro.addstrategy(crossover(bt))
    cerebro.broker.setcash(1_000_000)
    [strategy] = cerebro.run()
    return strategy


def test_backtrader_sees_exactly_the_qfq_bars_kdist_loads_and_trades(store):
    import backtrader as bt

    symbol = "600000.SH"
    feed = feeds.backtrader(store, "sh600000")  # any accepted form of the symbol
    strategy = run(bt, feed)

    expected = kdist.load(store, symbol, adjust="qfq", placeholders="drop")
    seen = pd.DataFrame(strategy.seen, columns=["ts", "open", "high", "low", "close", "volume"])
    seen["ts"] = seen["ts"].astype("datetime64[us]")
    pd.testing.assert_frame_equal(
        seen, expected[["ts", "open", "high", "low", "close", "volume"]], check_exact=True)

    # The check has teeth: qfq differs from the raw bars before an ex-date, and the
    # suspension's placeholder days are stored but were not fed.
    raw = kdist.load(store, symbol)
    assert not np.array_equal(raw["close"].iloc[:10], seen["close"].iloc[:10])
    assert set(raw["ts"]) - set(seen["ts"]) == set(pd.to_datetime(SUSPENDED[symbol]))
    assert strategy.data._name == symbol

    # It traded: buys and sells of 100 shares, each filled at the next bar's qfq open
    # (backtrader's market orders), on bars kdist stored. (The executed price is
    # backtrader's size-weighted average of the fills: equal to the open to the last bit
    # or two.)
    assert len(strategy.fills) >= 4
    assert {buy for _, buy, _, _ in strategy.fills} == {True, False}
    opens = expected.set_index("ts")["open"]
    for when, buy, size, price in strategy.fills:
        assert size == (100 if buy else -100)
        assert price == pytest.approx(opens[pd.Timestamp(when)], rel=1e-13)


def test_backtrader_keeps_placeholders_when_asked_and_reads_raw_or_a_window(store):
    import backtrader as bt

    symbol = "600000.SH"
    kept = feeds.backtrader_frame(store, symbol, adjust="none", placeholders="keep",
                                  start="2023-01-01", end="2023-12-31")
    expected = kdist.load(store, symbol, start="2023-01-01", end="2023-12-31")
    assert kept.index.name == "datetime" and list(kept.columns) == list(feeds.COLUMNS)
    assert kept.index.to_pydatetime()[0] == expected["ts"].iloc[0].to_pydatetime()
    np.testing.assert_array_equal(kept.index, expected["ts"])
    np.testing.assert_array_equal(kept["close"], expected["close"])
    assert set(pd.to_datetime(SUSPENDED[symbol])) <= set(kept.index)

    strategy = run(bt, feeds.backtrader(store, symbol, adjust="none", placeholders="keep",
                                        start="2023-01-01", end="2023-12-31", name="pfyh"))
    assert [row[4] for row in strategy.seen] == expected["close"].tolist()
    assert strategy.data._name == "pfyh"


def test_backtrader_many_feeds_each_symbol_in_one_cerebro(store):
    import backtrader as bt

    datas = feeds.backtrader_many(store, [*SYMBOLS, LATE])
    assert [d._name for d in datas] == [*SYMBOLS, LATE]
    assert [d._name for d in feeds.backtrader_many(store)] == sorted([*SYMBOLS, LATE])
    for data in datas:
        symbol = data._name
        expected = kdist.load(store, symbol, adjust="qfq", placeholders="drop")
        np.testing.assert_array_equal(data.p.dataname.index, expected["ts"])
        np.testing.assert_array_equal(data.p.dataname["close"], expected["close"])
        assert data.p.timeframe == bt.TimeFrame.Days and data.p.compression == 1
    # All three in one run: backtrader aligns them on their dates.
    strategy = run(bt, *datas)
    assert len(strategy.datas) == 3 and strategy.fills


def test_an_intraday_feed_has_minute_timeframe_and_exact_stamps(tmp_path):
    import backtrader as bt

    db = str(tmp_path / "k.duckdb")
    kdist.ingest(["600000.SH"], start="2024-06-03", end="2024-06-07", freq="5m", db=db,
                 client="sync", progress=False)
    feed = feeds.backtrader(db, "600000.SH", freq="5m", adjust="none")
    assert (feed.p.timeframe, feed.p.compression) == (bt.TimeFrame.Minutes, 5)
    strategy = run(bt, feed)
    expected = kdist.load(db, "600000.SH", freq="5m")
    assert [row[0] for row in strategy.seen] == list(expected["ts"].dt.to_pydatetime())


def test_feeds_refuse_what_is_not_stored_and_name_the_package_when_missing(store, monkeypatch):
    with pytest.raises(kdist.UsageError, match="No 1d qfq bars of 601398.SH"):
        feeds.backtrader(store, "601398.SH")
    with pytest.raises(kdist.UsageError, match="No 1d qfq bars of 601398.SH"):
        feeds.backtrader_many(store, ["600000.SH", "601398.SH"])
    with pytest.raises(kdist.UsageError, match="needs a symbol"):
        feeds.backtrader(store)
    with pytest.raises(kdist.UsageError, match="backtrader_many"):
        feeds.backtrader(store, ["600000.SH", "000001.SZ"])
    monkeypatch.setitem(sys.modules, "backtrader", None)  # import backtrader fails
    with pytest.raises(kdist.errors.MissingDependencyError, match="pip install backtrader"):
        feeds.backtrader(store, "600000.SH")


def test_importing_kdist_and_its_feeds_imports_no_backtester():
    code = ("import sys, kdist, kdist.feeds; "
            "print(sorted(m for m in ('backtrader', 'vectorbt') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


# --- vectorbt ---------------------------------------------------------------------------------


def pandas_crossover(fast: pd.Series, slow: pd.Series):
    """The crossover in plain pandas: the fast average crosses the slow one from strictly
    below (entries) or strictly above (exits); no signal next to a bar without averages."""
    entries = (fast > slow) & (fast.shift() < slow.shift())
    exits = (fast < slow) & (fast.shift() > slow.shift())
    return entries, exits


def pandas_fills(entries: pd.Series, exits: pd.Series) -> list[tuple[int, int]]:
    """Long only, one position at a time: (bar, +1 buy / -1 sell) of each order."""
    fills, holding = [], False
    for i, (entry, exit_) in enumerate(zip(entries, exits)):
        if not holding and entry:
            fills.append((i, 1))
            holding = True
        elif holding and exit_:
            fills.append((i, -1))
            holding = False
    return fills


@pytest.mark.filterwarnings("ignore::numba.core.errors.NumbaPendingDeprecationWarning")
def test_vectorbt_from_signals_on_a_panel(store):
    import vectorbt as vbt

    close = kdist.panel(store, fields="close", adjust="qfq", placeholders="drop")
    symbols = [*SYMBOLS, LATE]
    assert sorted(close.columns) == sorted(symbols)
    fast = vbt.MA.run(close, 10, short_name="fast", hide_params=["window"])
    slow = vbt.MA.run(close, 30, short_name="slow", hide_params=["window"])
    entries, exits = fast.ma_crossed_above(slow), fast.ma_crossed_below(slow)
    pf = vbt.Portfolio.from_signals(close, entries, exits, size=100, init_cash=1_000_000,
                                    fees=0.0, freq="1D")

    # The close vectorbt used is the panel: each symbol's qfq closes on its own dates,
    # NaN where it has no bar (before LATE was stored, on the suspended days).
    pd.testing.assert_frame_equal(pf.close, close, check_exact=True)
    for symbol in symbols:
        bars = kdist.load(store, symbol, adjust="qfq", placeholders="drop")
        column = close[symbol]
        np.testing.assert_array_equal(column.dropna().index, bars["ts"])
        np.testing.assert_array_equal(column.dropna(), bars["close"])
    assert close[LATE].loc[:"2023-02-28"].isna().all()
    assert close.loc[pd.to_datetime(SUSPENDED["600000.SH"]), "600000.SH"].isna().all()

    # It traded, every symbol.
    trades = pf.trades.count()
    assert (trades > 0).all(), trades

    # One symbol (with a gap) against the same averages, signal and orders in plain pandas.
    # The averages agree to rounding (vectorbt keeps a running sum, pandas a compensated
    # one), so the crosses are taken from vectorbt's: at a near-tie the last bit decides.
    symbol = "600000.SH"
    for ma, window in ((fast.ma[symbol], 10), (slow.ma[symbol], 30)):
        mean = close[symbol].rolling(window).mean()
        pd.testing.assert_index_equal(ma.dropna().index, mean.dropna().index)
        np.testing.assert_allclose(ma.dropna(), mean.dropna(), rtol=1e-12)
    want_entries, want_exits = pandas_crossover(fast.ma[symbol], slow.ma[symbol])
    assert want_entries.sum() >= 3 and want_exits.sum() >= 3
    pd.testing.assert_series_equal(entries[symbol], want_entries, check_names=False)
    pd.testing.assert_series_equal(exits[symbol], want_exits, check_names=False)
    orders = pf.orders.records_arr
    mine = orders[orders["col"] == list(close.columns).index(symbol)]
    expected = pandas_fills(want_entries, want_exits)
    assert [(int(i), 1 if side == 0 else -1) for i, side in zip(mine["idx"], mine["side"])] \
        == expected
    assert trades[symbol] == sum(1 for _, side in expected if side == 1)
    np.testing.assert_array_equal(mine["price"], close[symbol].to_numpy()[mine["idx"]])
    assert (mine["size"] == 100).all()
