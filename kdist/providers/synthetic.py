"""An offline, deterministic provider: realistic-looking bars for any symbol, no network.

The bar of ``(symbol, ts)`` depends only on ``(symbol, ts, seed)``: prices come from a
sum of value-noise octaves evaluated at the bar's own time (a random walk in look, a pure
function in fact), so any sub-range, chunking, order or machine produces identical values.
The calendar is every weekday except a fixed list of holidays (1 January, 1 May, 1-3
October); intraday bars follow the A-share sessions 09:30-11:30 and 13:00-15:00, stamped at
the end of each bar. Weekly and monthly bars aggregate the daily bars and are stamped on
the last trading day of their week or month.

Options simulate the network for tests and benchmarks: ``latency``/``jitter`` (seconds per
call), ``fail`` (symbols that raise a permanent error), ``empty`` (symbols with no bars),
``flaky`` (probability of a transient error per call, deterministic from the seed and the
call count), ``hang`` (symbols whose call never answers), ``crash`` (symbols whose call kills
the process, as a dying worker would) and ``call_log`` (a file that gets one line per call,
``SYMBOL START END``, to prove what was fetched).
"""

from __future__ import annotations

import functools
import os
import random
import time
import zlib

import numpy as np
import pandas as pd

from ..errors import PermanentProviderError, TransientProviderError
from ..schema import Adjust, Freq, parse_symbols, to_date
from .base import Option, Provider

__all__ = ["SyntheticProvider"]

_EPOCH = np.datetime64("1990-01-01", "D")
_HOLIDAYS = ("01-01", "05-01", "10-01", "10-02", "10-03")
_OCTAVES = np.arange(-8, 12)  # periods from 1/256 day (5.6 min) to 2048 days
_SIGMA = 0.011  # daily log-price volatility
_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


@functools.cache
def _holidays() -> np.ndarray:
    return np.array([f"{y}-{md}" for y in range(1990, 2101) for md in _HOLIDAYS], "datetime64[D]")


def _trading_days(first: np.datetime64, last: np.datetime64) -> np.ndarray:
    days = np.arange(first, last + 1, dtype="datetime64[D]")
    return days[np.is_busday(days, holidays=_holidays())]


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a well-spread uint64 hash of uint64 input, vectorised."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def _unit(key: np.ndarray) -> np.ndarray:
    """Hash to a float in [-1, 1)."""
    return (_mix(key) >> np.uint64(11)).astype(np.float64) / float(1 << 52) - 1.0


def _symbol_key(symbol: str, seed: int) -> np.uint64:
    return np.uint64(zlib.crc32(symbol.encode()) | (zlib.crc32(f"{seed}".encode()) << 32))


def _log_price(key: np.uint64, x: np.ndarray) -> np.ndarray:
    """Sum of value-noise octaves at times ``x`` (days since 1990), amplitude ~ sqrt(period)."""
    total = np.zeros(len(x))
    with np.errstate(over="ignore"):
        for octave in _OCTAVES:
            period = 2.0**octave
            pos = x / period
            knot = np.floor(pos)
            frac = pos - knot
            k = knot.astype(np.int64).astype(np.uint64)
            salt = key ^ (np.uint64(octave + 64) * np.uint64(0x632BE59BD9B4E019))
            left = _unit(k ^ salt)
            right = _unit((k + np.uint64(1)) ^ salt)
            total += (left + (right - left) * frac) * (_SIGMA * np.sqrt(period))
    return total


def _noise(key: np.uint64, x: np.ndarray, salt: int) -> np.ndarray:
    with np.errstate(over="ignore"):
        bits = np.round(x * 1440.0).astype(np.int64).astype(np.uint64)
        return _unit(bits ^ key ^ np.uint64(salt * 0x2545F4914F6CDD1D & 0xFFFFFFFFFFFFFFFF))


def _bars(symbol: str, seed: int, x_open: np.ndarray, x_close: np.ndarray, scale: float):
    key = _symbol_key(symbol, seed)
    base = 5.0 + float(_mix(np.array([key]))[0] % np.uint64(9500)) / 100.0
    open_ = base * np.exp(_log_price(key, x_open))
    close = base * np.exp(_log_price(key, x_close))
    spread = 0.004 + 0.012 * np.abs(_noise(key, x_close, 1)) * np.sqrt(scale)
    high = np.round(np.maximum(open_, close) * (1 + spread * np.abs(_noise(key, x_close, 2))), 2)
    low = np.round(np.minimum(open_, close) * (1 - spread * np.abs(_noise(key, x_close, 3))), 2)
    open_, close = np.round(open_, 2), np.round(close, 2)
    lots = (2_000 + float(_mix(np.array([key ^ np.uint64(7)]))[0] % np.uint64(50_000))) * scale
    volume = np.maximum(1.0, np.round(lots * np.exp(0.6 * _noise(key, x_close, 4)))) * 100.0
    amount = np.round(volume * (open_ + high + low + close) / 4.0, 2)
    return open_, high, low, close, volume, amount


class SyntheticProvider(Provider):
    """Deterministic offline bars for any symbol (the default provider)."""

    name = "synthetic"
    description = "Deterministic offline bars for any symbol; simulates latency and failures"
    options = {
        "seed": Option(int, 0, "changes every value, keeps the calendar"),
        "latency": Option(float, 0.0, "seconds per call, a simulated network"),
        "jitter": Option(float, 0.0, "random +/- seconds added to latency"),
        "fail": Option(str, "", "comma-separated symbols that raise a permanent error"),
        "empty": Option(str, "", "comma-separated symbols that have no bars"),
        "flaky": Option(float, 0.0, "probability of a transient error per call"),
        "universe": Option(int, 100, "how many symbols list_symbols() returns"),
        "call_log": Option(str, "", "append 'SYMBOL START END' per call to this file"),
        "hang": Option(str, "", "comma-separated symbols whose call never answers"),
        "crash": Option(str, "", "comma-separated symbols whose call kills the process"),
    }

    def __init__(self, **options):
        super().__init__(**options)
        self._calls: dict[str, int] = {}
        # Same forms as everywhere else: "sh600000, 000001" names 600000.SH and 000001.SZ.
        self._fail = set(parse_symbols(self.fail)[0]) if self.fail else set()
        self._empty = set(parse_symbols(self.empty)[0]) if self.empty else set()
        self._hang = set(parse_symbols(self.hang)[0]) if self.hang else set()
        self._crash = set(parse_symbols(self.crash)[0]) if self.crash else set()

    def list_symbols(self) -> list[str]:
        half = (self.universe + 1) // 2
        sh = [f"{600000 + i:06d}.SH" for i in range(half)]
        sz = [f"{1 + i:06d}.SZ" for i in range(self.universe - half)]
        return [s for pair in zip(sh, sz + [None]) for s in pair if s][: self.universe]

    def _simulate_network(self, symbol: str, start, end):
        attempt = self._calls.get(symbol, 0)
        self._calls[symbol] = attempt + 1
        if self.call_log:
            # One short line per call, appended: atomic across worker processes.
            with open(self.call_log, "a", encoding="utf-8") as log:
                log.write(f"{symbol} {to_date(start).date()} {to_date(end).date()}\n")
        if symbol in self._crash:
            os._exit(70)  # a worker dying mid-task, as a segfault or the OOM killer would
        if symbol in self._hang:
            time.sleep(24 * 3600)
        delay = self.latency + (random.uniform(-self.jitter, self.jitter) if self.jitter else 0.0)
        if delay > 0:
            time.sleep(delay)
        if symbol in self._fail:
            raise PermanentProviderError(
                f"synthetic failure for {symbol} (option fail)", symbol=symbol
            )
        if self.flaky:
            draw = (_unit(np.array([_symbol_key(symbol, self.seed) + np.uint64(attempt)]))[0] + 1) / 2
            if draw < self.flaky:
                raise TransientProviderError(
                    f"synthetic connection reset for {symbol} (call {attempt + 1})", symbol=symbol
                )

    def fetch(self, symbol, start, end, freq="1d", adjust="none") -> pd.DataFrame:
        freq, adjust = Freq.parse(freq), Adjust.parse(adjust)
        self._simulate_network(symbol, start, end)
        first = to_date(start).to_datetime64().astype("datetime64[D]")
        last = to_date(end).to_datetime64().astype("datetime64[D]")
        if symbol in self._empty or first > last:
            return pd.DataFrame(columns=["ts", "open", "high", "low", "close", "volume", "amount"])
        if freq is Freq.WEEK:
            first = first - (first - np.datetime64("1970-01-05")).astype(int) % 7
            last = last + 6 - (last - np.datetime64("1970-01-05")).astype(int) % 7
        elif freq is Freq.MONTH:
            first = first.astype("datetime64[M]").astype("datetime64[D]")
            last = (last.astype("datetime64[M]") + 1).astype("datetime64[D]") - 1
        days = _trading_days(first, last)
        day_x = (days - _EPOCH).astype(np.float64)
        if freq.intraday:
            n = freq.minutes
            ends = np.concatenate([np.arange(570 + n, 691, n), np.arange(780 + n, 901, n)])
            x_close = (day_x[:, None] + ends[None, :] / 1440.0).ravel()
            x_open = x_close - n / 1440.0
            ts = days.astype("datetime64[m]").repeat(len(ends)) + np.tile(ends, len(days))
            scale = n / 240.0
        else:
            x_open, x_close = day_x + 570 / 1440.0, day_x + 900 / 1440.0
            ts = days
            scale = 1.0
        o, h, l, c, v, a = _bars(symbol, self.seed, x_open, x_close, scale)
        frame = pd.DataFrame(
            {
                "ts": ts.astype("datetime64[us]"),
                "open": o,
                "high": h,
                "low": l,
                "close": c,
                "volume": v,
                "amount": a,
            }
        )
        if adjust is not Adjust.NONE:
            # A simple, deterministic adjustment: prices scaled by a per-symbol factor.
            factor = 1.0 + (zlib.crc32(f"{symbol}{adjust.value}".encode()) % 50) / 100.0
            factor = 1.0 / factor if adjust is Adjust.QFQ else factor
            for col in ("open", "high", "low", "close"):
                frame[col] = (frame[col] * factor).round(2)
        if freq in (Freq.WEEK, Freq.MONTH):
            frame = _aggregate(frame, freq)
            lo, hi = to_date(start), to_date(end)
            frame = frame[(frame["ts"] >= lo) & (frame["ts"] <= hi)].reset_index(drop=True)
        return frame

    def version(self) -> str:
        from .. import __version__

        return __version__


def _aggregate(daily: pd.DataFrame, freq: Freq) -> pd.DataFrame:
    days = daily["ts"].to_numpy().astype("datetime64[D]")
    if freq is Freq.WEEK:
        group = (days - np.datetime64("1970-01-05")).astype(np.int64) // 7
    else:
        group = days.astype("datetime64[M]").astype(np.int64)
    return (
        daily.assign(_g=group)
        .groupby("_g", sort=True)
        .agg(
            ts=("ts", "last"),
            open=("open", "first"),
            high=("high", "max"),
            low=("low", "min"),
            close=("close", "last"),
            volume=("volume", "sum"),
            amount=("amount", "sum"),
        )
        .reset_index(drop=True)
    )

