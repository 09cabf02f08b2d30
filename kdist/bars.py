"""Longer bars from shorter ones: daily bars into weeks and months, minute bars into buckets.

For providers whose source holds fewer frequencies than they serve (the synthetic provider
generates daily bars, the tdx provider reads daily and 5-minute files). Bars are a dict of
numpy columns ``ts open high low close volume amount``, sorted by time with unique stamps;
the price and volume columns may hold one row per symbol (2-D, time along the last axis)
when ``ts`` is shared. A longer bar opens with its first bar, closes with its last, spans
their highest high and lowest low, and sums their volume and amount.
"""

from __future__ import annotations

import numpy as np

from .schema import Freq

__all__ = ["WEEK_EPOCH", "aggregate", "period_keys", "resample"]

#: A Monday: weeks run Monday to Sunday.
WEEK_EPOCH = np.datetime64("1970-01-05", "D")


def period_keys(days: np.ndarray, freq: Freq) -> np.ndarray:
    """Return the number of the week (Monday to Sunday) or month of each of ``days``.

    Parameters
    ----------
    days : numpy.ndarray
        ``datetime64[D]`` values.
    freq : Freq
        :attr:`Freq.WEEK` or :attr:`Freq.MONTH`.
    """
    if freq is Freq.WEEK:
        return (days - WEEK_EPOCH).astype(np.int64) // 7
    if freq is Freq.MONTH:
        return days.astype("datetime64[M]").astype(np.int64)
    raise ValueError(f"daily bars resample to 1w or 1M, not {freq.value}")


def aggregate(bars: dict[str, np.ndarray], keys: np.ndarray, stamps: np.ndarray) -> dict:
    """Return one bar per run of equal ``keys``, stamped with ``stamps`` of its last bar.

    ``keys`` and ``stamps`` have one value per bar (``bars["ts"]`` is not read). No bars are
    returned as they are.
    """
    if len(keys) == 0:
        return bars
    first = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    last = np.r_[first[1:], len(keys)] - 1
    return {
        "ts": stamps[last],
        "open": bars["open"][..., first],
        "high": np.maximum.reduceat(bars["high"], first, axis=-1),
        "low": np.minimum.reduceat(bars["low"], first, axis=-1),
        "close": bars["close"][..., last],
        "volume": np.add.reduceat(bars["volume"], first, axis=-1),
        "amount": np.add.reduceat(bars["amount"], first, axis=-1),
    }


def resample(bars: dict[str, np.ndarray], freq: Freq) -> dict:
    """Return weekly or monthly bars of daily ``bars``, stamped on each period's last bar.

    A week or month without bars has no bar; one with bars is whole, whatever window it
    is later cut to.

    Examples
    --------
    >>> days = np.array(["2024-01-04", "2024-01-05", "2024-01-08"], "datetime64[us]")
    >>> ones = np.ones(3)
    >>> week = resample({"ts": days, "open": np.array([1.0, 2, 3]), "high": ones,
    ...                  "low": ones, "close": np.array([1.0, 2, 3]), "volume": ones,
    ...                  "amount": ones}, Freq.WEEK)
    >>> week["ts"].astype("datetime64[D]").tolist(), week["close"].tolist()
    ([datetime.date(2024, 1, 5), datetime.date(2024, 1, 8)], [2.0, 3.0])
    """
    ts = bars["ts"]
    return aggregate(bars, period_keys(ts.astype("datetime64[D]"), freq), ts)
