"""China A-share daily, weekly and monthly bars from Eastmoney through akshare.

:class:`AkshareProvider` ("akshare") calls ``akshare.stock_zh_a_hist`` once per symbol and
window, and turns its frame into canonical bars. It relies on these vendor facts (see
``PROVIDERS.md``): the function takes a bare six-digit code (``000001``), ``period`` in
``daily|weekly|monthly``, inclusive ``YYYYMMDD`` dates, ``adjust`` in ``""|"qfq"|"hfq"`` and a
``timeout`` in seconds; it returns Chinese columns in a fixed order (日期 股票代码 开盘 收盘 最高
最低 成交量 成交额 振幅 涨跌幅 涨跌额 换手率) with 成交量 in lots of 100 shares (multiplied here)
and 成交额 in yuan; no data is an empty frame, not an error; network trouble raises from
``requests`` (an :class:`OSError`), and Eastmoney answers bursts by dropping connections
(``RemoteDisconnected``), never with HTTP 429. akshare picks the exchange from the code
alone (``6xxxxx`` is Shanghai, anything else Shenzhen/Beijing), so a symbol whose suffix
disagrees (``000001.SH``, the Shanghai composite index) is refused rather than silently
fetched as another security. Each vendor function is called in exactly one place, a static
method named after it (:meth:`AkshareProvider._stock_zh_a_hist` for bars), which tests
replace; ``akshare`` is imported there, never when kdist or this module is imported.

Eastmoney exposes no factors, so corporate actions (:meth:`AkshareProvider._actions`) come
from Sina, in three calls per symbol that each answer the whole history and ignore dates:

- ``stock_zh_a_daily(symbol="sz000001", adjust="hfq-factor")``: ``date`` (datetime64) and
  ``hfq_factor`` as strings with 16 decimals (``169.1453113717332000``), newest first, and a
  ``1900-01-01`` row last (factor 1, dropped here: kdist takes 1 before the first factor
  anyway). Sina's hfq factor is a ratio factor from its date on, kdist's ``factor``: akshare
  builds Sina's bars as ``hfq = raw x hfq_factor`` and ``qfq = raw / qfq_factor`` with
  ``qfq_factor = hfq_latest / hfq_factor``, rounded to 2 decimals; kdist keeps the factors'
  full precision and rounds nothing. It raises ``ValueError("sina hfq factor not
  available")`` for a code Sina has no factors for.
- ``stock_history_dividend_detail(symbol="000001", indicator="分红")``: 送股, 转增 and 派息
  (cash before tax) **per 10 shares**, divided by 10 here (bonus = 送股 + 转增), 除权除息日 a
  ``date`` or NaT (plans and "不分配" rows have none and are left out);
  ``indicator="配股"``: 配股方案 per 10 shares (divided by 10), 配股价格 per share, 除权日.
  An event is kept when the factors already reach its ex-date (Sina publishes a factor on
  its ex-date; a later fetch brings the rest) and carries the factor in force on it.

Sina's functions take no timeout: kdist's per-call timeout bounds them. This provider's own
``qfq``/``hfq`` bars are Eastmoney's, which follow another convention: cash is added, bonus
shares multiply (akshare's docs example of 000001: 2017-03-01 raw 9.49, qfq 8.14 = 9.49 - 1.35
of later cash, hfq 1575.20 = 162.5 x 9.49 + 33.075), so they differ from prices derived with
Sina's ratio factors by more than their rounding; derived prices match Sina's own bars to
their 0.01.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..actions import empty_actions
from ..errors import DataError, PermanentProviderError, TransientProviderError
from ..schema import Adjust, Freq, empty_bars
from ..securities import split_symbol
from .base import Option, Provider, one_line, vendor_numbers

__all__ = ["AkshareProvider"]

_PERIODS = {Freq.DAY: "daily", Freq.WEEK: "weekly", Freq.MONTH: "monthly"}
_ADJUST = {Adjust.NONE: "", Adjust.QFQ: "qfq", Adjust.HFQ: "hfq"}
#: stock_zh_a_hist's columns -> canonical names; 成交量 is in lots (手) of 100 shares.
_COLUMNS = {
    "日期": "ts",
    "开盘": "open",
    "最高": "high",
    "最低": "low",
    "收盘": "close",
    "成交量": "volume",
    "成交额": "amount",
}
_REQUIRED = ("日期", "开盘", "最高", "最低", "收盘")
_SHARES_PER_LOT = 100.0
#: Where each akshare function gets its data, and how that site answers bursts.
_SOURCES = {"stock_zh_a_hist": "Eastmoney", "stock_zh_a_daily": "Sina",
            "stock_history_dividend_detail": "Sina"}
_BURSTS = {"Eastmoney": "drops connections after bursts", "Sina": "blocks IPs that ask too often"}
#: Sina's per-10-share events: 分红 (送股, 转增 and 派息 before tax) and 配股.
_PER_TEN = 10.0
#: The first row Sina sends after its factors: the factor before the first of them.
_SENTINEL = pd.Timestamp("1900-01-01")


def _code(symbol: str) -> str:
    """Return akshare's code of an A-share symbol: ``000001.SZ`` -> ``000001``.

    Raises
    ------
    PermanentProviderError
        ``symbol`` is no A-share, or akshare would fetch another security for it.
    """
    parts = split_symbol(symbol)
    if parts is None:
        raise PermanentProviderError(
            f"akshare serves China A-shares only, not {symbol}; use the yfinance provider "
            "for other markets",
            symbol=symbol,
        )
    code, exchange = parts
    # stock_zh_a_hist sends secid 1.<code> (Shanghai) for codes starting with 6 and
    # 0.<code> (Shenzhen, Beijing) for all others, whatever the caller meant.
    if (exchange == "SH") != code.startswith("6"):
        served = f"{code}.SH" if code.startswith("6") else f"{code}.SZ"
        raise PermanentProviderError(
            f"akshare cannot fetch {symbol}: stock_zh_a_hist picks the exchange from the code "
            f"and would return {served} instead (Shanghai codes other than 6xxxxx, such as "
            "indices and funds, are not served); use the baostock provider for it",
            symbol=symbol,
        )
    return code


class AkshareProvider(Provider):
    """China A-share bars from Eastmoney via ``akshare.stock_zh_a_hist``.

    Daily, weekly and monthly bars, unadjusted or forward/backward adjusted; volume in
    shares (akshare's lots x 100), amount in yuan.

    Examples
    --------
    >>> from kdist.providers import get_provider
    >>> p = get_provider("akshare", timeout=10)  # doctest: +SKIP
    >>> p.fetch("000001.SZ", "2024-01-02", "2024-01-05", "1d", "qfq")  # doctest: +SKIP
    """

    name = "akshare"
    description = "China A-share daily/weekly/monthly bars from Eastmoney via akshare"
    requires = ("akshare",)
    extra = "akshare"
    url = "https://akshare.akfamily.xyz/data/stock/stock.html"
    freqs = (Freq.DAY, Freq.WEEK, Freq.MONTH)
    adjusts = (Adjust.NONE, Adjust.QFQ, Adjust.HFQ)
    tz = "Asia/Shanghai"
    freq_hint = "use the baostock provider for 5-60 minute A-share bars"
    #: Daily, weekly and monthly bars only, with no look-back limit known: none declared.
    horizons = {}
    # Conservative cluster-wide politeness: Eastmoney drops connections after bursts.
    max_concurrency = 2
    max_rate = 1.0
    options = {
        "timeout": Option(
            float, 30.0, "seconds one HTTP request to Eastmoney may take", positive=True
        ),
    }

    def _fetch(self, symbol, start, end, freq, adjust) -> pd.DataFrame:
        """Return the bars of ``symbol`` stamped in ``[start, end]`` (dates inclusive).

        See :meth:`Provider.fetch`, which parses the arguments and calls this.

        Returns
        -------
        pandas.DataFrame
            ``ts open high low close volume amount``; volume in shares, amount in yuan.
            Empty when Eastmoney has no bars in the window (or does not know the code).

        Raises
        ------
        InvalidOptionError
            A minute frequency.
        PermanentProviderError
            ``symbol`` is no A-share akshare can fetch, or akshare failed in a way a retry
            will not fix.
        TransientProviderError
            The connection dropped or timed out (Eastmoney throttles bursts this way).
        DataError
            akshare's frame lacks a column kdist needs (akshare changed its output).
        """
        code = _code(symbol)
        if start > end:
            return empty_bars()
        raw = self._call(
            symbol,
            "stock_zh_a_hist",
            symbol=code,
            period=_PERIODS[freq],
            start_date=start.strftime("%Y%m%d"),
            end_date=end.strftime("%Y%m%d"),
            adjust=_ADJUST[adjust],
            timeout=self.timeout,
        )
        return _bars(raw, symbol)

    def _actions(self, symbol, start, end) -> pd.DataFrame:
        """Return Sina's back-adjustment factors and events of ``symbol``.

        See :meth:`Provider.actions`, which parses the arguments and calls this. Three calls
        per symbol, each answering the whole history whatever the window:
        ``stock_zh_a_daily(symbol="sz000001", adjust="hfq-factor")`` for the factors, then
        ``stock_history_dividend_detail(symbol="000001", indicator="分红")`` and
        ``indicator="配股"`` for the events.

        Returns
        -------
        pandas.DataFrame
            ``ex_date cash bonus rights rights_price factor``: every factor up to ``end`` and
            the events up to ``end`` that the factors already cover, per share; an event's
            ``factor`` is the one in force on its ex-date.

        Raises
        ------
        PermanentProviderError
            ``symbol`` is no A-share akshare can fetch, or akshare failed in a way a retry
            will not fix (Sina has no factors for the code, its page changed).
        TransientProviderError
            The connection dropped or timed out.
        DataError
            A factor that is no number, or a frame without a column kdist needs.
        """
        code = _code(symbol)
        if start > end:
            return empty_actions()
        exchange = split_symbol(symbol)[1].lower()
        raw = self._call(symbol, "stock_zh_a_daily", symbol=f"{exchange}{code}",
                         adjust="hfq-factor")
        factors = _factors(raw, symbol)
        factors = factors[factors["ex_date"] <= end]
        dividends = self._call(symbol, "stock_history_dividend_detail", symbol=code,
                               indicator="分红")
        rights = self._call(symbol, "stock_history_dividend_detail", symbol=code,
                            indicator="配股")
        events = pd.concat([_dividends(dividends, symbol), _rights(rights, symbol)],
                           ignore_index=True)
        # The factors of an ex-date Sina has not published yet come with a later fetch.
        newest = factors["ex_date"].max() if len(factors) else pd.Timestamp.min
        events = events[events["ex_date"] <= min(end, newest)]
        return _with_factors(events, factors)

    # -- the vendor seams -----------------------------------------------------------------

    def _call(self, symbol: str, function: str, /, **kwargs) -> pd.DataFrame:
        """Call the seam of akshare's ``function`` and translate its exceptions."""
        source = _SOURCES[function]
        try:
            return getattr(self, f"_{function}")(**kwargs)
        except OSError as exc:
            # requests' ConnectionError/Timeout/JSONDecodeError and http.client's
            # RemoteDisconnected are all OSErrors. A garbled body is what a throttled
            # vendor sends too, so it is worth a retry like a dropped connection.
            name = type(exc).__name__
            timed_out = isinstance(exc, TimeoutError) or "timeout" in name.lower()
            kind = "timeout" if timed_out else "connection"
            if timed_out:
                hint = ("no answer in time" if function != "stock_zh_a_hist"
                        else f"no answer within {self.timeout:g}s")
            else:
                hint = (f"connection dropped; {source} {_BURSTS[source]}, so if this repeats "
                        "slow down (fewer workers) or wait before retrying")
            raise TransientProviderError(
                f"akshare's {function} failed for {symbol} ({name}: {one_line(exc)}): {hint}",
                symbol=symbol,
                kind=kind,
            ) from exc
        except Exception as exc:
            raise PermanentProviderError(
                f"akshare's {function} failed for {symbol} with {type(exc).__name__}: "
                f"{one_line(exc)}; {source}'s answer may have changed shape: upgrade akshare "
                f"(installed: {self.version()})",
                symbol=symbol,
            ) from exc

    @staticmethod
    def _stock_zh_a_hist(**kwargs) -> pd.DataFrame:
        """The call for bars: ``akshare.stock_zh_a_hist(**kwargs)`` (Eastmoney)."""
        import akshare  # lazy: importing kdist must never import a vendor package

        return akshare.stock_zh_a_hist(**kwargs)

    @staticmethod
    def _stock_zh_a_daily(**kwargs) -> pd.DataFrame:
        """The call for factors: ``akshare.stock_zh_a_daily(**kwargs)`` (Sina)."""
        import akshare  # lazy: importing kdist must never import a vendor package

        return akshare.stock_zh_a_daily(**kwargs)

    @staticmethod
    def _stock_history_dividend_detail(**kwargs) -> pd.DataFrame:
        """The call for events: ``akshare.stock_history_dividend_detail(**kwargs)`` (Sina)."""
        import akshare  # lazy: importing kdist must never import a vendor package

        return akshare.stock_history_dividend_detail(**kwargs)


def _bars(raw: pd.DataFrame | None, symbol: str) -> pd.DataFrame:
    """Turn stock_zh_a_hist's frame into canonical columns and units."""
    if raw is None or len(raw) == 0:
        return empty_bars()
    missing = [c for c in _REQUIRED if c not in raw.columns]
    if missing:
        _columns(raw, _REQUIRED, symbol, "stock_zh_a_hist", _COLUMNS[missing[0]])
    frame = pd.DataFrame(
        {"ts": pd.to_datetime(raw["日期"], errors="coerce").astype("datetime64[us]")}
    )
    numbers = {name: chinese for chinese, name in _COLUMNS.items() if name != "ts"}
    vendor_numbers(frame, raw, numbers)
    frame["volume"] = frame["volume"] * _SHARES_PER_LOT
    return frame.reset_index(drop=True)


def _columns(raw: pd.DataFrame, needed: tuple[str, ...], symbol: str, what: str, column: str):
    """Raise DataError unless ``raw`` has every column of ``needed``."""
    missing = [c for c in needed if c not in raw.columns]
    if missing:
        raise DataError(
            f"akshare's {what} returned no column {missing[0]!r} for {symbol} (its columns: "
            f"{', '.join(map(str, raw.columns))}); akshare changed its output: pin an akshare "
            "version kdist supports",
            column=column,
            symbol=symbol,
        )


def _factors(raw: pd.DataFrame | None, symbol: str) -> pd.DataFrame:
    """``ex_date factor`` from Sina's hfq factors (strings, newest first, a 1900-01-01 row
    last), oldest first; the 1900 row only when its factor is not 1 (the factor before the
    first row, which kdist assumes anyway)."""
    if raw is None or len(raw) == 0:
        return pd.DataFrame({"ex_date": pd.Series(dtype="datetime64[us]"),
                             "factor": pd.Series(dtype="float64")})
    _columns(raw, ("date", "hfq_factor"), symbol, "stock_zh_a_daily(adjust='hfq-factor')",
             "factor")
    dates = pd.to_datetime(raw["date"], errors="coerce")
    factor = pd.to_numeric(raw["hfq_factor"], errors="coerce").astype("float64")
    bad = dates.isna() | factor.isna()
    if bad.any():
        at = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"Sina's hfq factor of {symbol} has a row ({raw['date'].iloc[at]!r}, "
            f"{raw['hfq_factor'].iloc[at]!r}) that is no date and number",
            column="factor", symbol=symbol)
    frame = pd.DataFrame({"ex_date": dates.dt.normalize().astype("datetime64[us]").to_numpy(),
                          "factor": factor.to_numpy()})
    frame = frame[~((frame["ex_date"] == _SENTINEL) & (frame["factor"] == 1.0))]
    return frame.sort_values("ex_date", kind="stable").reset_index(drop=True)


def _event_dates(raw: pd.DataFrame, column: str) -> pd.Series:
    """A column of dates (``datetime.date`` or NaT) as datetime64."""
    return pd.to_datetime(raw[column], errors="coerce").astype("datetime64[us]")


def _per_share(raw: pd.DataFrame, *columns: str) -> pd.Series:
    """The sum of per-10 ``columns`` per share (a blank is 0); rounded to 12 decimals, so 2.85
    becomes 0.285, not 0.28500000000000003 (Sina quotes at most 4)."""
    per_ten = sum(pd.to_numeric(raw[c], errors="coerce").fillna(0.0).astype("float64")
                  for c in columns)
    return (per_ten / _PER_TEN).round(12)


def _dividends(raw: pd.DataFrame | None, symbol: str) -> pd.DataFrame:
    """``ex_date cash bonus`` per share from Sina's 分红 table (per 10 shares); rows without
    an ex-date (plans, no distribution) are left out."""
    if raw is None or len(raw) == 0:
        return pd.DataFrame({"ex_date": pd.Series(dtype="datetime64[us]")})
    _columns(raw, ("除权除息日", "送股", "转增", "派息"), symbol,
             "stock_history_dividend_detail(indicator='分红')", "ex_date")
    frame = pd.DataFrame({
        "ex_date": _event_dates(raw, "除权除息日"),
        "cash": _per_share(raw, "派息"),
        "bonus": _per_share(raw, "送股", "转增"),
    })
    return frame[frame["ex_date"].notna()]


def _rights(raw: pd.DataFrame | None, symbol: str) -> pd.DataFrame:
    """``ex_date rights rights_price`` from Sina's 配股 table (shares per 10, price per share);
    rows without an ex-date are left out."""
    if raw is None or len(raw) == 0:
        return pd.DataFrame({"ex_date": pd.Series(dtype="datetime64[us]")})
    _columns(raw, ("除权日", "配股方案", "配股价格"), symbol,
             "stock_history_dividend_detail(indicator='配股')", "ex_date")
    frame = pd.DataFrame({
        "ex_date": _event_dates(raw, "除权日"),
        "rights": _per_share(raw, "配股方案"),
        "rights_price": pd.to_numeric(raw["配股价格"], errors="coerce").fillna(0.0),
    })
    return frame[frame["ex_date"].notna()]


def _with_factors(events: pd.DataFrame, factors: pd.DataFrame) -> pd.DataFrame:
    """Factor rows and event rows in one frame, each event carrying the factor in force on
    its ex-date (1 before the first)."""
    if len(events) == 0:
        return factors
    levels = np.concatenate([[1.0], factors["factor"].to_numpy("float64")])
    at = np.searchsorted(factors["ex_date"].to_numpy(), events["ex_date"].to_numpy(),
                         side="right")
    return pd.concat([factors, events.assign(factor=levels[at])], ignore_index=True)
