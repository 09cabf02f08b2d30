"""Analysis-ready panels: stored bars as one frame of dates x symbols.

``kdist.panel(db, fields="close")`` returns the shape yfinance's ``download`` and vectorbt
use: a DatetimeIndex (``ts``) by symbols for one field, and columns ``(field, symbol)`` for
several. Prices are adjusted as :func:`kdist.load` adjusts them (qfq/hfq derived from the
raw bars and the stored factors where corporate actions are stored); volume comes back as
``int64`` when every cell is a whole number, and as float64 (NaN) when a symbol has no bar
on a date: numpy and numba, vectorbt's indicators, cannot take pandas' nullable integers.

Raw prices are read in DuckDB as the fields asked and numbered there, and laid out with one
numpy assignment: no long frame of every column, no pandas pivot (see
docs/performance.md#wide-panels).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .errors import UsageError
from .schema import Adjust, Freq, read_symbols, to_date

__all__ = ["FIELDS", "panel"]

#: The fields a panel can hold.
FIELDS = ("open", "high", "low", "close", "volume", "amount")


def _fields(fields) -> list[str]:
    chosen = [fields] if isinstance(fields, str) else list(fields)
    unknown = [f for f in chosen if f not in FIELDS]
    if unknown or not chosen:
        raise UsageError(f"Unknown field(s) {', '.join(map(repr, unknown)) or '(none)'}: "
                         f"choose from {', '.join(FIELDS)}")
    return chosen


def panel(store, symbols=None, fields="close", start=None, end=None, freq="1d",
          adjust="none", *, as_of=None, derive=None, placeholders="keep") -> pd.DataFrame:
    """Stored bars of ``store`` (an open :class:`kdist.Store`) as dates x symbols: see
    :func:`kdist.panel`."""
    chosen = _fields(fields)
    freq, adjust = Freq.parse(freq), Adjust.parse(adjust)
    if adjust is Adjust.NONE and as_of is None and placeholders == "keep":
        tables = _raw_columns(store, symbols, chosen, start, end, freq)
    else:
        long = store.load(symbols, start, end, freq, adjust, as_of=as_of, derive=derive,
                          placeholders=placeholders)
        tables = _from_frame(long, chosen)
    return _lay_out(tables, chosen, single=isinstance(fields, str))


def _raw_columns(store, symbols, chosen, start, end, freq) -> pa.Table:
    """``symbol, ts`` and the fields asked of the stored raw bars, as Arrow: one query per
    field (its name a parameter, the text fixed), each bringing only its own column."""
    lo = to_date(start, name="start") if start is not None else None
    hi = to_date(end, name="end") + pd.Timedelta(days=1) if end is not None else None
    symbols = read_symbols(symbols)
    tables = []
    for field in chosen:
        tables.append(store.con.sql(
            """SELECT k.symbol, k.ts::TIMESTAMP AS ts,
                      CASE ? WHEN 'open' THEN k.open WHEN 'high' THEN k.high
                             WHEN 'low' THEN k.low WHEN 'close' THEN k.close
                             WHEN 'volume' THEN k.volume ELSE k.amount END AS value
               FROM kline k
               WHERE k.adjust = 'none' AND k.freq = ?
                 AND (?::VARCHAR[] IS NULL OR k.symbol IN (SELECT unnest(?::VARCHAR[])))
                 AND (?::TIMESTAMP_S IS NULL OR k.ts >= ?::TIMESTAMP_S)
                 AND (?::TIMESTAMP_S IS NULL OR k.ts < ?::TIMESTAMP_S)""",
            params=[field, freq.value, symbols, symbols, lo, lo, hi, hi]).to_arrow_table())
    return tables


def _from_frame(long: pd.DataFrame, chosen: list[str]) -> list[pa.Table]:
    table = pa.Table.from_pandas(long[["symbol", "ts", *chosen]], preserve_index=False)
    return [table.select(["symbol", "ts", field]).rename_columns(["symbol", "ts", "value"])
            for field in chosen]


def _lay_out(tables: list[pa.Table], chosen: list[str], single: bool) -> pd.DataFrame:
    """One numpy array per field, rows the sorted dates, columns the sorted symbols; each
    field's rows placed by their own symbol and date (the queries' orders may differ)."""
    symbols = pc.unique(_joined(tables, "symbol")).sort()
    dates = pc.unique(_joined(tables, "ts")).sort()
    index = pd.DatetimeIndex(dates.to_numpy(zero_copy_only=False).astype("datetime64[us]"),
                             name="ts")
    names = pd.Index(symbols.to_pylist(), name="symbol", dtype="str")
    frames = {}
    for field, table in zip(chosen, tables):
        col = pc.index_in(table["symbol"], value_set=symbols).to_numpy(zero_copy_only=False)
        row = pc.index_in(table["ts"], value_set=dates).to_numpy(zero_copy_only=False)
        values = table["value"].to_numpy()
        grid = np.full((len(index), len(names)), np.nan)
        grid[row, col] = values
        frame = pd.DataFrame(grid, index=index, columns=names)
        frames[field] = _whole(frame, values) if field == "volume" else frame
    if single:
        return frames[chosen[0]]
    return pd.concat(frames, axis=1, names=["field", "symbol"])


def _joined(tables: list[pa.Table], column: str) -> pa.ChunkedArray:
    """One column of every table, as one chunked array (their chunks, not copied)."""
    return pa.chunked_array([chunk for t in tables for chunk in t[column].chunks],
                            type=tables[0][column].type)


def _whole(frame: pd.DataFrame, values: np.ndarray) -> pd.DataFrame:
    """Volume as int64 when every cell holds a whole number; with a gap (NaN) it stays
    float64, which numpy and numba (vectorbt's indicators) take: pandas' nullable Int64
    is an array of objects to them."""
    if frame.isna().to_numpy().any() or not np.array_equal(values, np.round(values)):
        return frame
    return frame.astype("int64")
