"""Corporate actions and adjustment factors: the columns, the formula and the arithmetic.

kdist stores raw bars as the truth and derives adjusted prices from a per-symbol table of
corporate actions (``kdist_actions``): one row per ex-date with the event (cash dividend,
bonus and transfer shares, rights issue, split) and the cumulative back-adjustment (hfq)
factor in force from that ex-date on. This module is what providers and the store share:

- :data:`COLUMNS`, the frame a provider's :meth:`~kdist.providers.base.Provider.actions`
  returns, and :func:`normalise_actions`, which validates it;
- :func:`reference_price`, the exchanges' ex-rights reference price (除权参考价);
- :func:`hfq_steps` and :func:`hfq_factors`, the factors built from events and the raw close
  before each ex-date, the way baostock documents its back factor (涨跌幅复权法: the
  cumulative product of ``close(t-1) / preclose(t)``) and Yahoo builds its adjusted close;
- :func:`adjust_prices`, the derivation the store runs in SQL, in numpy, for providers that
  serve vendor-adjusted bars computed from their own events (``synthetic``) and for tests.

Units: every number is **per share** (A-share vendors and TDX quote per 10 shares: divide by
10), in the currency of the bars. ``split`` is the number of shares after per share before
(2.0 for a 2-for-1 split, 0.1 for a 1-for-10 reverse split).

The formula (the SSE rule, 上交所《交易规则》4.3.2)::

    ref(e)    = (close(e-1) - cash + rights_price * rights) / ((1 + bonus + rights) * split)
    step(e)   = close(e-1) / ref(e)
    F(t)      = product of step(e) over ex-dates e <= t          (1 before the first)
    hfq(t)    = raw(t) * F(t)
    qfq(t)    = raw(t) * F(t) / F(anchor)      anchor: the latest ex-date known (or as of)

Volume and amount are never adjusted (the convention of A-share software: akshare, hikyuu,
TDX and Eastmoney adjust prices only).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import DataError

__all__ = [
    "COLUMNS",
    "EVENT_COLUMNS",
    "NO_EVENT",
    "adjust_prices",
    "empty_actions",
    "hfq_factors",
    "hfq_steps",
    "normalise_actions",
    "reference_price",
]

#: The event's numbers, per share; :data:`NO_EVENT` holds the value meaning "none".
EVENT_COLUMNS = ("cash", "bonus", "rights", "rights_price", "split")
NO_EVENT = {"cash": 0.0, "bonus": 0.0, "rights": 0.0, "rights_price": 0.0, "split": 1.0}
#: A provider's actions frame: ``ex_date`` (midnight), the events, and ``factor``: the
#: vendor's cumulative hfq factor from ``ex_date`` on (``hfq = raw * factor``), NaN where
#: the vendor gives events only and kdist computes it from the raw closes.
COLUMNS = ("ex_date", *EVENT_COLUMNS, "factor")


def empty_actions() -> pd.DataFrame:
    """An actions frame without rows, with :data:`COLUMNS` and their dtypes."""
    frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in COLUMNS})
    frame["ex_date"] = pd.Series(dtype="datetime64[us]")
    return frame


def normalise_actions(frame: pd.DataFrame | None, *, symbol: str = "?") -> pd.DataFrame:
    """Return a provider's actions as :data:`COLUMNS`: one row per ex-date, sorted.

    Missing event columns mean "no such event" (:data:`NO_EVENT`); a missing ``factor`` is
    NaN. Several rows of one ex-date (a dividend and a bonus issue from two vendor calls) are
    combined: cash, bonus and rights add up, splits multiply, the first rights price and
    factor given are kept. Rows that carry neither an event nor a factor are dropped.

    A frame with a ``symbol`` column holds several symbols' actions (a provider's
    ``actions_many``): the result keeps that column first, one row per symbol and ex-date,
    sorted by both; messages name the row's symbol.

    Raises
    ------
    DataError
        A row has no valid ex-date, a negative amount, a split that is not positive, or a
        factor that is not positive; the message names the symbol and the date.
    """
    if frame is None or len(frame) == 0:
        return empty_actions()
    if "ex_date" not in frame.columns:
        raise DataError(f"{symbol}: corporate actions without an ex_date column", symbol=symbol)
    # numpy throughout: a job calls this once per symbol, and pandas' per-call costs were
    # milliseconds a call (more than the provider's own work).
    given = frame["ex_date"]
    if given.dtype.kind != "M":
        given = pd.to_datetime(pd.Series(given.to_numpy(object)), errors="coerce")
    if getattr(given.dtype, "tz", None) is not None:
        given = given.dt.tz_localize(None)
    dates = given.to_numpy().astype("datetime64[us]")
    names = frame["symbol"].to_numpy(object) if "symbol" in frame.columns else None
    if np.isnat(dates).any():
        at = int(np.flatnonzero(np.isnat(dates))[0])
        who = symbol if names is None else names[at]
        raise DataError(f"{who}: corporate action with ex_date {frame['ex_date'].iloc[at]!r} "
                        "that is no date", symbol=who, column="ex_date")
    dates = dates.astype("datetime64[D]").astype("datetime64[us]")  # midnight
    out = {"ex_date": dates} if names is None else {"symbol": names, "ex_date": dates}
    for column in (*EVENT_COLUMNS, "factor"):
        if column in frame.columns:
            values = frame[column]
            values = (values.to_numpy("float64", copy=True) if values.dtype.kind in "fiu"
                      else pd.to_numeric(values, errors="coerce").to_numpy("float64", copy=True))
        else:
            values = np.full(len(dates), np.nan)
        if column != "factor":
            values[np.isnan(values)] = NO_EVENT[column]
        out[column] = values
    for column in ("cash", "bonus", "rights", "rights_price"):
        _refuse(out, out[column] < 0, column, "is negative", symbol)
    _refuse(out, ~(out["split"] > 0), "split", "is not positive", symbol)
    factor = out["factor"]
    _refuse(out, ~np.isnan(factor) & ~(factor > 0), "factor", "is not positive", symbol)
    keep = ~np.isnan(factor)
    for column in EVENT_COLUMNS:
        keep |= out[column] != NO_EVENT[column]
    if not keep.all():
        out = {c: v[keep] for c, v in out.items()}
    # One symbol's rows: all of one code.
    codes = (np.zeros(len(out["ex_date"]), np.intp) if names is None
             else pd.factorize(out["symbol"], sort=True)[0])
    order = np.lexsort((out["ex_date"], codes))
    if (np.diff(order) != 1).any():
        out = {c: v[order] for c, v in out.items()}
    result = pd.DataFrame(out, copy=False)
    if names is not None:
        result["symbol"] = result["symbol"].astype("str")
    repeated = (np.diff(codes[order]) == 0) & (np.diff(out["ex_date"]) == np.timedelta64(0))
    return _combine(result).reset_index(drop=True) if repeated.any() else result


def _refuse(frame: dict, bad, column: str, what: str, symbol: str):
    bad = np.asarray(bad)
    if bad.any():
        at = int(np.flatnonzero(bad)[0])
        symbol = frame["symbol"][at] if "symbol" in frame else symbol
        day = pd.Timestamp(frame["ex_date"][at]).date()
        raise DataError(
            f"{symbol}: corporate action of {day} has {column} {float(frame[column][at])!r}, "
            f"which "
            f"{what}", symbol=symbol, column=column,
        )


def _combine(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per ex-date: amounts added, splits multiplied, first price and factor kept."""
    first_set = lambda s: s[s != 0].iloc[0] if (s != 0).any() else 0.0  # noqa: E731
    keys = ["symbol", "ex_date"] if "symbol" in frame.columns else ["ex_date"]
    grouped = frame.groupby(keys, sort=True)
    return pd.DataFrame({
        "cash": grouped["cash"].sum(),
        "bonus": grouped["bonus"].sum(),
        "rights": grouped["rights"].sum(),
        "rights_price": grouped["rights_price"].agg(first_set),
        "split": grouped["split"].prod(),
        "factor": grouped["factor"].first(),
    }).reset_index()[[*keys[:-1], *COLUMNS]]


def reference_price(prev_close, cash=0.0, bonus=0.0, rights=0.0, rights_price=0.0, split=1.0):
    """The ex-rights reference price of an ex-date, from the raw close before it (arrays or
    scalars, per-share units)."""
    prev_close = np.asarray(prev_close, dtype="float64")
    return (prev_close - cash + np.multiply(rights_price, rights)) / (
        (1.0 + np.add(bonus, rights)) * split)


def hfq_steps(prev_close, cash=0.0, bonus=0.0, rights=0.0, rights_price=0.0, split=1.0):
    """``close(e-1) / ref(e)``: how much the hfq factor grows at each ex-date."""
    prev_close = np.asarray(prev_close, dtype="float64")
    return prev_close / reference_price(prev_close, cash, bonus, rights, rights_price, split)


def hfq_factors(events: pd.DataFrame, prev_close) -> np.ndarray:
    """The cumulative hfq factor from each ex-date of ``events`` (one symbol, sorted) on,
    given the raw close before each ex-date: the running product of :func:`hfq_steps`."""
    steps = hfq_steps(prev_close, *(events[c].to_numpy("float64") for c in EVENT_COLUMNS))
    return np.cumprod(steps)


def adjust_prices(ts, prices, ex_dates, factors, adjust: str, anchor=None) -> np.ndarray:
    """Adjust raw ``prices`` stamped ``ts`` by the factors in force at each stamp.

    ``ex_dates`` (sorted) and ``factors`` are one symbol's cumulative hfq factors. ``adjust``
    is ``"hfq"`` (``raw * F(t)``) or ``"qfq"`` (``raw * F(t) / F(anchor)``, ``anchor`` the
    latest ex-date when None). No rounding: vendors round the result (0.01 for A-shares).
    """
    ts = np.asarray(ts, dtype="datetime64[us]")
    ex = np.asarray(ex_dates, dtype="datetime64[us]")
    factors = np.asarray(factors, dtype="float64")
    at = np.searchsorted(ex, ts, side="right") - 1
    level = np.where(at >= 0, factors[np.maximum(at, 0)] if len(factors) else 1.0, 1.0)
    if adjust == "qfq":
        if anchor is None:
            last = factors[-1] if len(factors) else 1.0
        else:
            i = np.searchsorted(ex, np.datetime64(pd.Timestamp(anchor), "us"), side="right") - 1
            last = factors[i] if i >= 0 else 1.0
        level = level / last
    elif adjust != "hfq":
        raise ValueError(f"adjust must be 'qfq' or 'hfq', not {adjust!r}")
    prices = np.asarray(prices, dtype="float64")
    return prices * (level if prices.ndim == 1 else level[:, None])
