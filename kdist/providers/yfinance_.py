"""Bars of US and other Yahoo Finance tickers (and A-shares) through yfinance.

:class:`YfinanceProvider` ("yfinance") calls ``yfinance.Ticker(t).history(...)`` once per
symbol and window (a 1-minute window longer than a week in several calls) and turns the
frame into canonical bars. It relies on these vendor facts (see ``PROVIDERS.md``): tickers
are Yahoo's (``AAPL``, ``BRK-B``; Shanghai is ``.SS``, so ``600000.SH`` is sent as
``600000.SS``); ``start`` is inclusive and ``end`` exclusive, so the day after the requested
end is sent; intraday bars exist only for recent days (1m for about 30 days, at most 8 days
per request; other intervals 60 days: :attr:`YfinanceProvider.horizons`), which
:meth:`YfinanceProvider.check` refuses up front;
``history`` returns exchange-time-zone-aware timestamps, turned here into exchange-local
naive ones per ticker (the provider has no single ``tz``), and ``download``-shaped frames with
``(Price, Ticker)`` MultiIndex columns are accepted too; ``auto_adjust=True`` gives prices
back-adjusted to today's level, which is forward adjustment (``qfq``) in A-share terms, and
backward adjustment (``hfq``) is not served; Yahoo's plain ``Close`` is already adjusted for
splits (not for dividends), so ``adjust="none"`` means split-adjusted, dividend-unadjusted;
Yahoo has no traded amount (``amount`` is NaN); an unknown ticker yields no rows (kdist
reports it as empty); HTTP 429 raises ``YFRateLimitError``. Intraday bars are stamped at
their start (Yahoo's convention; baostock stamps the end), weekly bars on the week's Monday
and monthly bars on the 1st (other kdist providers stamp the last trading day).

``history`` rather than ``download``: kdist already calls once per symbol, ``history``
returns one flat frame in the exchange's zone, and it raises network errors, whereas
``download`` catches every per-ticker exception, prints it and returns an empty frame, which
kdist could not tell from "no data" and would never retry. For the same reason the seam sets
``yfinance.config.debug.hide_exceptions = False`` in the process that fetches: with the default
``True``, ``history`` too logs network failures and returns an empty frame. The vendor is
called in exactly one place, :meth:`YfinanceProvider._history`, which tests replace;
``yfinance`` is imported there, never when kdist or this module is imported.

Corporate actions (:meth:`YfinanceProvider._actions`) go through the same seam: one
``history(start, end + 1 day, interval="1d", auto_adjust=False, actions=True, timeout=...)``
per symbol and window, whose ``Dividends`` (per share) and ``Stock Splits`` (numerator /
denominator: 2.0 for 2-for-1, 0.1 for 1-for-10) columns are 0.0 except on ex-dates. Not
``Ticker.actions``: it downloads the whole history (``period="max"``) on every call, takes
no timeout and ignores the window, and it is another path for errors. Ex-dates are the
index's exchange-local day at midnight, naive (as bars are: UTC would move Asian ex-dates a
day back). Yahoo's unadjusted OHLC and its dividends are already split-adjusted, so the
class sets :attr:`~kdist.providers.base.Provider.splits_in_bars`: splits are recorded in
``split`` but left out of the factors, which kdist computes from the cash and the stored
raw closes (no vendor factor: ``factor`` is NaN). That reproduces Yahoo's Adj Close, built
as ``Close(t)`` times the product over later ex-dates ``e`` of ``1 - D(e) / Close(e-1)``
(yfinance's repair code uses this multiplier), to float precision: Yahoo rounds nothing
kdist relies on. ``Capital Gains`` (funds only) are left out: Yahoo sometimes counts them in
``Dividends`` already (yfinance's ``_repair_capital_gains``).
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from ..actions import empty_actions
from ..errors import DataError, InvalidOptionError, PermanentProviderError, TransientProviderError
from ..schema import Adjust, Freq, empty_bars
from ..securities import YAHOO_SUFFIXES, split_symbol
from .base import Horizon, Option, Provider, one_line, vendor_numbers

__all__ = ["YfinanceProvider"]

_INTERVALS = {
    Freq.DAY: "1d",
    Freq.WEEK: "1wk",
    Freq.MONTH: "1mo",
    Freq.MIN1: "1m",
    Freq.MIN5: "5m",
    Freq.MIN15: "15m",
    Freq.MIN30: "30m",
    Freq.MIN60: "60m",
}
#: How far back Yahoo serves intraday bars: YfinanceProvider.horizons, which check() enforces.
_ONE_MINUTE = Horizon(
    days=30,
    source="Yahoo refuses older 1m bars: 'The requested range must be within the last 30 days' "
           "(yfinance issue #383); yfinance 1.7.0 scrapers/history.py min_lookbacks['1m'] = 30 "
           "days",
)
_INTRADAY = Horizon(
    days=60,
    source="Yahoo refuses older 5m bars: 'The requested range must be within the last 60 "
           "days' (yfinance issue #1389); yfinance 1.7.0 scrapers/history.py: 60 days for "
           "2m-90m (period='max'). For 60m kdist keeps 60 days although yfinance 1.7.0 allows "
           "730 for 1h/60m (period='max', min_lookbacks['1h']): not relied on",
)
#: Yahoo serves at most 8 days of 1-minute bars per request: ask for 7 at a time.
_ONE_MINUTE_SPAN = pd.Timedelta(days=7)
#: Exchange zones kdist knows for certain, by canonical suffix; other tickers keep the zone
#: Yahoo stamped them in (its exchangeTimezoneName).
_ZONES = {"SH": "Asia/Shanghai", "SZ": "Asia/Shanghai", "BJ": "Asia/Shanghai"}
_PRICES = ("open", "high", "low", "close")


def _ticker(symbol: str) -> str:
    """Yahoo's ticker of a canonical symbol: ``600000.SH`` -> ``600000.SS``, others as given."""
    parts = split_symbol(symbol)
    if parts and parts[1] == "SH":
        return f"{parts[0]}.SS"
    return symbol


@functools.cache
def _yfinance():
    """Import yfinance once, making ``history`` raise network errors instead of hiding them."""
    import yfinance  # lazy: importing kdist must never import a vendor package

    # With hide_exceptions=True (the default) a dropped connection or a timeout is logged and
    # history() returns an empty frame: kdist would record "empty" and never retry.
    yfinance.config.debug.hide_exceptions = False
    return yfinance


@functools.cache
def _vendor_errors():
    """yfinance's exception classes: (rate limit, no such ticker or data, Yahoo down)."""
    from yfinance.exceptions import YFDataException, YFRateLimitError, YFTickerMissingError

    return YFRateLimitError, YFTickerMissingError, YFDataException


class YfinanceProvider(Provider):
    """Bars from Yahoo Finance via ``yfinance.Ticker.history``.

    Daily, weekly, monthly and recent intraday bars of any Yahoo ticker; A-shares are
    accepted in kdist's form (``600000.SH``). Timestamps are exchange-local per ticker.

    Examples
    --------
    >>> from kdist.providers import get_provider
    >>> p = get_provider("yfinance")  # doctest: +SKIP
    >>> p.fetch("AAPL", "2024-01-02", "2024-01-05", "1d", "qfq")  # doctest: +SKIP
    """

    name = "yfinance"
    description = "Yahoo Finance bars via yfinance: US and global tickers, A-shares as .SS/.SZ"
    requires = ("yfinance",)
    extra = "yfinance"
    url = "https://ranaroussi.github.io/yfinance/"
    freqs = tuple(_INTERVALS)
    adjusts = (Adjust.NONE, Adjust.QFQ)
    #: Ticker suffixes symbol validation accepts (kdist.schema.parse_symbols): Yahoo's markets.
    symbol_suffixes = YAHOO_SUFFIXES
    tdx_codes = False  # TDX's block codes are no Yahoo tickers
    #: None: each ticker is converted to its own exchange's local time in the provider.
    tz = None
    bar_time = "start"
    # Conservative cluster-wide politeness: Yahoo answers bursts with HTTP 429.
    max_concurrency = 4
    max_rate = 2.0
    options = {
        "timeout": Option(float, 30.0, "seconds one request to Yahoo may take", positive=True),
    }
    #: Yahoo's unadjusted OHLC (and its dividends) are already adjusted for splits.
    splits_in_bars = True
    #: Yahoo serves intraday bars for recent days only (daily, weekly and monthly: no limit).
    horizons = {Freq.MIN1: _ONE_MINUTE, Freq.MIN5: _INTRADAY, Freq.MIN15: _INTRADAY,
                Freq.MIN30: _INTRADAY, Freq.MIN60: _INTRADAY}

    def check(self, *, freq: Freq, adjust: Adjust, start: pd.Timestamp, end: pd.Timestamp):
        """Refuse backward adjustment and intraday windows older than Yahoo serves."""
        if adjust is Adjust.HFQ:
            raise InvalidOptionError(
                "Provider 'yfinance' has no 'hfq' adjustment: Yahoo serves unadjusted prices "
                "(adjust='none') and prices back-adjusted to today's level (adjust='qfq'); "
                "use the baostock or akshare provider for hfq A-share bars",
                option="adjust",
                value=adjust.value,
            )
        super().check(freq=freq, adjust=adjust, start=start, end=end)
        horizon = self.horizon(freq)
        if horizon is not None and horizon.rolling:
            days = horizon.days
            # Yahoo counts back from now; midnight (days - 1) ago is still inside the limit.
            earliest = horizon.first_served()
            if pd.Timestamp(start) < earliest:
                raise InvalidOptionError(
                    f"Yahoo serves {freq.value} bars for the last {days} days only; start "
                    f"{pd.Timestamp(start).date()} is before {earliest.date()}: use a later "
                    "start, a longer interval, or another provider for older intraday bars",
                    option="start",
                    value=str(pd.Timestamp(start).date()),
                )

    def _fetch(self, symbol, start, end, freq, adjust) -> pd.DataFrame:
        """Return the bars of ``symbol`` stamped in ``[start, end]`` (dates inclusive).

        See :meth:`Provider.fetch`, which parses the arguments and calls this.

        Returns
        -------
        pandas.DataFrame
            ``ts open high low close volume amount`` with exchange-local naive ``ts``;
            ``amount`` is NaN. Empty for an unknown ticker or a window without bars.

        Raises
        ------
        InvalidOptionError
            ``hfq``, or an intraday window older than Yahoo serves.
        TransientProviderError
            Rate limited (HTTP 429), a network error or timeout, or Yahoo is down.
        PermanentProviderError
            Yahoo refused the request, or yfinance failed in a way a retry will not fix.
        DataError
            yfinance's frame lacks a column kdist needs.
        """
        stop = end + pd.Timedelta(days=1)  # Yahoo's end is exclusive
        ticker = _ticker(symbol)
        if start > end:
            return empty_bars()
        step = _ONE_MINUTE_SPAN if freq is Freq.MIN1 else stop - start
        frames = []
        first = start
        while first < stop:
            last = min(first + step, stop)
            raw = self._call(
                symbol,
                ticker,
                start=first.strftime("%Y-%m-%d"),
                end=last.strftime("%Y-%m-%d"),
                interval=_INTERVALS[freq],
                auto_adjust=adjust is Adjust.QFQ,
                actions=False,
                timeout=self.timeout,
            )
            frames.append(_bars(raw, symbol, ticker))
            first = last
        frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        # The contract is bars stamped in the window; Yahoo may add one past the end (the
        # live bar) and stamps a weekly or monthly bar at its start, possibly before `start`.
        inside = (frame["ts"] >= start) & (frame["ts"] < stop)
        return frame[inside].reset_index(drop=True)

    def _actions(self, symbol, start, end) -> pd.DataFrame:
        """Return Yahoo's dividends and splits of ``symbol`` with ex-dates in ``[start, end]``.

        See :meth:`Provider.actions`, which parses the arguments and calls this. One call to
        the seam per symbol: daily ``history`` of the window, unadjusted, with actions.

        Returns
        -------
        pandas.DataFrame
            ``ex_date cash split``: ``cash`` Yahoo's dividend per share (split-adjusted, like
            its prices), ``split`` its ``Stock Splits`` ratio (shares after per share before);
            ``ex_date`` the exchange-local day at midnight; no ``factor`` (kdist computes it
            from the events and the raw closes, leaving the splits out: see
            :attr:`splits_in_bars`). Empty for an unknown ticker.

        Raises
        ------
        TransientProviderError
            Rate limited (HTTP 429), a network error or timeout, or Yahoo is down.
        PermanentProviderError
            Yahoo refused the request, or yfinance failed in a way a retry will not fix.
        """
        ticker = _ticker(symbol)
        if start > end:
            return empty_actions()
        raw = self._call(
            symbol,
            ticker,
            start=start.strftime("%Y-%m-%d"),
            end=(end + pd.Timedelta(days=1)).strftime("%Y-%m-%d"),  # Yahoo's end is exclusive
            interval=_INTERVALS[Freq.DAY],
            auto_adjust=False,
            actions=True,
            timeout=self.timeout,
        )
        events = _events(raw, symbol, ticker)
        inside = (events["ex_date"] >= start) & (events["ex_date"] <= end)
        return events[inside].reset_index(drop=True)

    # -- the vendor seam ------------------------------------------------------------------

    def _call(self, symbol: str, ticker: str, **kwargs) -> pd.DataFrame | None:
        """Call the seam and translate yfinance's exceptions; None means no data."""
        try:
            return self._history(ticker, **kwargs)
        except Exception as exc:
            error, from_yfinance = self._translate(exc, symbol, ticker)
            if error is None:
                return None
            if not from_yfinance:
                raise error from exc
        # yfinance's own exceptions do not survive pickle (YFRateLimitError() takes no
        # message), and tblib, which Dask installs, pickles an error's cause and context with
        # it: raise outside the except block so neither refers to them. The message names them.
        raise error

    def _translate(self, exc: Exception, symbol: str, ticker: str):
        """``(kdist error or None for "no data", whether exc is yfinance's own)``."""
        rate_limit, missing, yahoo_down = _vendor_errors()
        own = isinstance(exc, (rate_limit, missing, yahoo_down))
        where = f"yfinance history of {ticker} ({symbol})"
        name = type(exc).__name__
        if isinstance(exc, rate_limit):
            return TransientProviderError(
                f"{where}: Yahoo rate-limited this IP (HTTP 429, {name}); will retry, and if "
                "it persists use fewer workers or wait",
                symbol=symbol,
                kind="rate_limit",
            ), own
        if isinstance(exc, missing):
            if "data not available for starttime" in str(exc).lower():
                # Yahoo's own range limit (check() normally refuses these first).
                return PermanentProviderError(
                    f"{where}: {name}: {one_line(exc)}", symbol=symbol
                ), own
            return None, own  # unknown or delisted ticker, or no bars in the window
        if own or isinstance(exc, OSError):
            # curl_cffi's and requests' errors are OSErrors; YFDataException is "Yahoo is down".
            timed_out = isinstance(exc, TimeoutError) or "timeout" in name.lower()
            return TransientProviderError(
                f"{where} failed ({name}: {one_line(exc)}); will retry",
                symbol=symbol,
                kind="timeout" if timed_out else "connection",
            ), own
        return PermanentProviderError(
            f"{where} failed with {name}: {one_line(exc)}; upgrade yfinance if this persists "
            f"(installed: {self.version()})",
            symbol=symbol,
        ), own

    @staticmethod
    def _history(ticker: str, **kwargs) -> pd.DataFrame:
        """The only call into yfinance: ``yfinance.Ticker(ticker).history(**kwargs)``."""
        return _yfinance().Ticker(ticker).history(**kwargs)


def _flatten(frame: pd.DataFrame, ticker: str, symbol: str) -> pd.DataFrame:
    """Keep ``ticker``'s columns of a ``(Price, Ticker)`` MultiIndex frame, as flat names."""
    levels = [frame.columns.get_level_values(i) for i in range(frame.columns.nlevels)]
    price = next(
        (i for i, level in enumerate(levels) if {str(v).lower() for v in level} & {"close"}),
        None,
    )
    if price is None or frame.columns.nlevels != 2:
        raise DataError(
            f"yfinance's frame for {ticker} ({symbol}) has MultiIndex columns without a "
            "(Price, Ticker) shape",
            column="close",
            symbol=symbol,
        )
    other = 1 - price
    tickers = list(dict.fromkeys(map(str, levels[other])))
    if ticker in tickers:
        chosen = ticker
    elif len(tickers) == 1:
        chosen = tickers[0]
    else:
        raise DataError(
            f"yfinance's frame for {ticker} ({symbol}) holds tickers {', '.join(tickers)} "
            "but not this one",
            column="close",
            symbol=symbol,
        )
    keep = [str(v) == chosen for v in levels[other]]
    flat = frame.loc[:, keep].copy()
    flat.columns = [str(v) for v, k in zip(levels[price], keep) if k]
    return flat


def _bars(raw: pd.DataFrame | None, symbol: str, ticker: str) -> pd.DataFrame:
    """Turn a yfinance frame into canonical bars with exchange-local naive ``ts``."""
    if raw is None or len(raw) == 0:
        return empty_bars()
    frame = _flatten(raw, ticker, symbol) if isinstance(raw.columns, pd.MultiIndex) else raw
    columns = {str(c).strip().lower(): c for c in frame.columns}
    missing = [c for c in _PRICES if c not in columns]
    if missing:
        raise DataError(
            f"yfinance's frame for {ticker} ({symbol}) has no {missing[0]!r} column (its "
            f"columns: {', '.join(map(str, frame.columns))})",
            column=missing[0],
            symbol=symbol,
        )
    if isinstance(frame.index, pd.DatetimeIndex):
        ts = frame.index
    elif "date" in columns or "datetime" in columns:
        ts = pd.DatetimeIndex(pd.to_datetime(frame[columns.get("datetime", columns.get("date"))]))
    else:
        raise DataError(
            f"yfinance's frame for {ticker} ({symbol}) has no date index",
            column="ts",
            symbol=symbol,
        )
    bars = pd.DataFrame({"ts": _local(ts, symbol).as_unit("us")})
    # Yahoo has no traded amount.
    return vendor_numbers(bars, frame, {**{name: columns[name] for name in _PRICES},
                                        "volume": columns.get("volume"), "amount": None})


def _local(ts: pd.DatetimeIndex, symbol: str) -> pd.DatetimeIndex:
    """Exchange-local naive stamps of ``history()``'s index (naive ones are left as they are).

    history() stamps bars in the exchange's zone: dropping the zone keeps the exchange's wall
    time. Converting to UTC first would move Asian daily bars to the previous day.
    """
    if ts.tz is None:
        return ts
    parts = split_symbol(symbol)
    zone = _ZONES.get(parts[1]) if parts else None
    return ts.tz_convert(zone or ts.tz).tz_localize(None)


def _events(raw: pd.DataFrame | None, symbol: str, ticker: str) -> pd.DataFrame:
    """``ex_date cash split`` of the rows of a ``history(actions=True)`` frame that carry a
    dividend or a split (yfinance writes 0.0 on the other days)."""
    empty = empty_actions()[["ex_date", "cash", "split"]]
    if raw is None or len(raw) == 0:
        return empty
    frame = _flatten(raw, ticker, symbol) if isinstance(raw.columns, pd.MultiIndex) else raw
    columns = {str(c).strip().lower(): c for c in frame.columns}
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise DataError(f"yfinance's frame for {ticker} ({symbol}) has no date index",
                        column="ex_date", symbol=symbol)

    def events(name: str) -> np.ndarray:
        """A column of events, 0 where there is none (or no such column)."""
        if name not in columns:
            return np.zeros(len(frame))
        values = pd.to_numeric(frame[columns[name]], errors="coerce")
        return values.fillna(0.0).to_numpy("float64")

    cash, split = events("dividends"), events("stock splits")
    eventful = (cash != 0) | (split != 0)
    if not eventful.any():
        return empty
    days = _local(frame.index, symbol).normalize().as_unit("us")
    return pd.DataFrame({
        "ex_date": days[eventful],
        "cash": cash[eventful],
        "split": np.where(split[eventful] != 0, split[eventful], 1.0),  # 0.0 means none
    })
