"""Stored bars as the data feeds of backtesting libraries.

``kdist.feeds.backtrader(db, "600000.SH")`` is a ``backtrader.feeds.PandasData`` of one
symbol's stored bars, read with :func:`kdist.load`: forward-adjusted (qfq, derived from the
raw bars and the stored corporate actions) with the placeholder bars of suspended days left
out, by default, since a backtest should neither trade on a day nobody traded nor see a
dividend as a price drop. ``backtrader_many`` reads several symbols in one query and
returns one feed each.

vectorbt takes :func:`kdist.panel` as it is (dates x symbols, NaN where a symbol has no
bar); polars, pyarrow and DuckDB read a Parquet export (:func:`kdist.export`). Neither
needs a function here.

backtrader is imported when a feed is made, never by ``import kdist``; missing, it raises
:class:`~kdist.errors.MissingDependencyError` with the command that installs it.
"""

from __future__ import annotations

import pandas as pd

from .errors import MissingDependencyError, UsageError
from .schema import Adjust, Freq, read_symbols
from .store import DEFAULT_DB, load

__all__ = ["backtrader", "backtrader_frame", "backtrader_many"]

#: The columns of a feed's frame, in backtrader's order; ``openinterest`` is absent.
COLUMNS = ("open", "high", "low", "close", "volume")


def _backtrader():
    try:
        import backtrader
    except ImportError as error:
        raise MissingDependencyError(
            "kdist.feeds.backtrader needs the backtrader package: pip install backtrader",
            name="backtrader", extra=None) from error
    return backtrader


def _timeframe(bt, freq: Freq) -> tuple:
    """backtrader's ``(timeframe, compression)`` for a kdist freq."""
    if freq.intraday:
        return bt.TimeFrame.Minutes, freq.minutes
    return {Freq.DAY: bt.TimeFrame.Days, Freq.WEEK: bt.TimeFrame.Weeks,
            Freq.MONTH: bt.TimeFrame.Months}[freq], 1


def _frames(db, symbols, start, end, freq, adjust, placeholders, as_of) -> dict[str, pd.DataFrame]:
    """One frame per symbol asked (in the order asked; every stored one when None):
    a DatetimeIndex ``datetime`` and the columns :data:`COLUMNS`, as ``kdist.load`` reads
    them. A symbol with no bars raises :class:`UsageError` naming it."""
    bars = load(db, symbols, start, end, freq, adjust, as_of=as_of,
                placeholders=placeholders)
    if symbols is None:
        wanted = sorted(bars["symbol"].unique())
    else:
        wanted = read_symbols(symbols)
    frames = {}
    for symbol, group in bars.groupby("symbol", sort=False):
        frame = group.loc[:, list(COLUMNS)].set_axis(
            pd.DatetimeIndex(group["ts"], name="datetime"), axis=0)
        frames[symbol] = frame
    missing = [s for s in wanted if s not in frames]
    if missing or not wanted:
        window = f" from {start or 'the first bar'} to {end or 'the last'}"
        raise UsageError(
            f"No {Freq.parse(freq).value} {Adjust.parse(adjust).value} bars of {', '.join(missing) or 'any symbol'} in {db}{window}: "
            "import them first (kdist ingest), or ask another freq or adjust "
            "(qfq and hfq need the symbol's corporate actions, or bars a job stored adjusted)")
    return {s: frames[s] for s in wanted}


def backtrader_frame(db=DEFAULT_DB, symbol=None, *, start=None, end=None, freq="1d",
                     adjust="qfq", placeholders="drop", as_of=None) -> pd.DataFrame:
    """The frame :func:`backtrader` feeds: a DatetimeIndex named ``datetime`` (naive
    timestamps, ``.to_pydatetime()`` works) and the columns open, high, low, close, volume
    of ``kdist.load(db, symbol, ..., adjust=adjust, placeholders=placeholders)``."""
    if symbol is None:
        raise UsageError("backtrader_frame() needs a symbol, e.g. '600000.SH'")
    [frame] = _frames(db, symbol, start, end, freq, adjust, placeholders, as_of).values()
    return frame


def _feed(bt, frame: pd.DataFrame, name: str, freq: Freq, params: dict):
    timeframe, compression = _timeframe(bt, freq)
    given = {"timeframe": timeframe, "compression": compression, **params}
    return bt.feeds.PandasData(dataname=frame, name=name, datetime=None, open="open",
                               high="high", low="low", close="close", volume="volume",
                               openinterest=None, **given)


def backtrader(db=DEFAULT_DB, symbol=None, *, start=None, end=None, freq="1d", adjust="qfq",
               placeholders="drop", as_of=None, name=None, **params):
    """One symbol's stored bars as a ``backtrader.feeds.PandasData``.

    Parameters
    ----------
    db
        Path of the DuckDB file.
    symbol
        The symbol, in any accepted form (``sh600000``, ``600000.SH``). Required.
    start, end, freq, adjust, as_of
        As :func:`kdist.load` takes them; ``adjust`` is ``"qfq"`` by default (derived from
        the stored corporate actions). ``as_of`` reads what was known that day: no
        look-ahead in the factors.
    placeholders
        ``"drop"`` (the default) leaves out the placeholder bars of suspended days;
        ``"keep"`` feeds every stored bar.
    name
        The feed's name (``strategy.getdatabyname``); the normalised symbol by default.
    **params
        Further ``PandasData`` parameters (``fromdate``, ``plot``, ``sessionend``, ...).
        ``timeframe`` and ``compression`` follow ``freq`` unless given.

    Raises
    ------
    MissingDependencyError
        backtrader is not installed.
    UsageError
        No bars of that symbol, freq and adjust are stored in the window.

    Examples
    --------
    >>> import backtrader as bt  # doctest: +SKIP
    >>> cerebro = bt.Cerebro()  # doctest: +SKIP
    >>> cerebro.adddata(kdist.feeds.backtrader("data/kdist.duckdb", "600000.SH"))  # doctest: +SKIP
    """
    bt = _backtrader()
    if symbol is None:
        raise UsageError("backtrader() needs a symbol, e.g. '600000.SH'")
    if not isinstance(symbol, str):
        raise UsageError(f"backtrader() feeds one symbol, not {symbol!r}: "
                         "use backtrader_many for several")
    freq = Freq.parse(freq)
    [(stored, frame)] = _frames(db, symbol, start, end, freq.value, adjust, placeholders,
                                as_of).items()
    return _feed(bt, frame, name or stored, freq, params)


def backtrader_many(db=DEFAULT_DB, symbols=None, *, start=None, end=None, freq="1d",
                    adjust="qfq", placeholders="drop", as_of=None, **params) -> list:
    """Several symbols' stored bars as a list of ``PandasData`` feeds, one per symbol in the
    order given (every stored symbol of that freq, sorted, when ``symbols`` is None), each
    named by its symbol; read in one query. The other arguments are :func:`backtrader`'s.

    Examples
    --------
    >>> for feed in kdist.feeds.backtrader_many("data/kdist.duckdb", ["600000.SH", "000001.SZ"]):  # doctest: +SKIP
    ...     cerebro.adddata(feed)
    """
    bt = _backtrader()
    freq = Freq.parse(freq)
    frames = _frames(db, symbols, start, end, freq.value, adjust, placeholders, as_of)
    return [_feed(bt, frame, symbol, freq, params) for symbol, frame in frames.items()]
