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
fetched as another security. The vendor function is called in exactly one place,
:meth:`AkshareProvider._stock_zh_a_hist`, which tests replace; ``akshare`` is imported there,
never when kdist or this module is imported.
"""

from __future__ import annotations

import pandas as pd

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
            symbol=code,
            period=_PERIODS[freq],
            start_date=start.strftime("%Y%m%d"),
            end_date=end.strftime("%Y%m%d"),
            adjust=_ADJUST[adjust],
            timeout=self.timeout,
        )
        return _bars(raw, symbol)

    # -- the vendor seam ------------------------------------------------------------------

    def _call(self, symbol: str, /, **kwargs) -> pd.DataFrame:
        """Call the seam and translate akshare's exceptions into kdist errors."""
        try:
            return self._stock_zh_a_hist(**kwargs)
        except OSError as exc:
            # requests' ConnectionError/Timeout/JSONDecodeError and http.client's
            # RemoteDisconnected are all OSErrors. A garbled body is what a throttled
            # Eastmoney sends too, so it is worth a retry like a dropped connection.
            name = type(exc).__name__
            timed_out = isinstance(exc, TimeoutError) or "timeout" in name.lower()
            kind = "timeout" if timed_out else "connection"
            hint = (
                f"no answer within {self.timeout:g}s"
                if timed_out
                else "connection dropped; Eastmoney drops connections after bursts, so if "
                "this repeats slow down (fewer workers) or wait before retrying"
            )
            raise TransientProviderError(
                f"akshare's stock_zh_a_hist failed for {symbol} ({name}: {one_line(exc)}): "
                f"{hint}",
                symbol=symbol,
                kind=kind,
            ) from exc
        except Exception as exc:
            raise PermanentProviderError(
                f"akshare's stock_zh_a_hist failed for {symbol} with {type(exc).__name__}: "
                f"{one_line(exc)}; Eastmoney's answer may have changed shape: upgrade akshare "
                f"(installed: {self.version()})",
                symbol=symbol,
            ) from exc

    @staticmethod
    def _stock_zh_a_hist(**kwargs) -> pd.DataFrame:
        """The only call into akshare: ``akshare.stock_zh_a_hist(**kwargs)``."""
        import akshare  # lazy: importing kdist must never import a vendor package

        return akshare.stock_zh_a_hist(**kwargs)


def _bars(raw: pd.DataFrame | None, symbol: str) -> pd.DataFrame:
    """Turn stock_zh_a_hist's frame into canonical columns and units."""
    if raw is None or len(raw) == 0:
        return empty_bars()
    missing = [c for c in _REQUIRED if c not in raw.columns]
    if missing:
        raise DataError(
            f"akshare's stock_zh_a_hist returned no column {missing[0]!r} for {symbol} (its "
            f"columns: {', '.join(map(str, raw.columns))}); akshare changed its output: "
            "pin an akshare version kdist supports",
            column=_COLUMNS[missing[0]],
            symbol=symbol,
        )
    frame = pd.DataFrame(
        {"ts": pd.to_datetime(raw["日期"], errors="coerce").astype("datetime64[us]")}
    )
    numbers = {name: chinese for chinese, name in _COLUMNS.items() if name != "ts"}
    vendor_numbers(frame, raw, numbers)
    frame["volume"] = frame["volume"] * _SHARES_PER_LOT
    return frame.reset_index(drop=True)
