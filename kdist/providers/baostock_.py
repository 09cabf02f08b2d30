"""China A-share daily, weekly, monthly and 5-60 minute bars from baostock, one login per process.

:class:`BaostockProvider` ("baostock") asks ``baostock.query_history_k_data_plus`` for one
symbol and window and turns the string rows into canonical bars. It relies on these vendor
facts (see ``PROVIDERS.md``): login state is global to the process (one TCP socket) and the
package is not thread-safe, so this module keeps one session per worker process, opened
lazily by the first fetch, shared by every provider instance and thread, with every call
serialised by a process-level lock and a logout at exit. Errors come back as codes, not
exceptions: 10002001-10002008 (network) and 10001001 (not logged in) mean the session is
stale, so the query is retried once after a fresh login; 10004011 is an unknown code, 10004006
a bad parameter, 10001005 the account's login limit. Codes are ``sh.600000``/``sz.000001``
(Beijing is not served), ``adjustflag`` is 1 = hfq, 2 = qfq, 3 = none, ``start_date`` is always
sent (an empty one silently means 2015-01-01), rows are read with
``while rs.error_code == "0" and rs.next(): rs.get_row_data()`` as lists of strings (``""`` is
missing), volume is in shares and amount in yuan, minute ``time`` reads ``20240102093500000``
(the end of the bar, exchange-local) and daily rows with ``tradestatus == "0"`` are suspended
days, kept as the placeholder bars they are (volume 0 at the previous close). baostock offers no timeout and its socket has none: a watchdog thread
closes the socket when a call stays silent for ``timeout`` seconds, which turns the stuck
call into a network error (see :class:`_Session`). Every call into the package goes through
:func:`_baostock`, the seam tests replace; ``baostock`` is imported there, never when kdist or
this module is imported.

Corporate actions (:meth:`BaostockProvider._actions`) come from two more queries through the
same session, timeout and error codes. ``query_adjust_factor(code, start_date, end_date)``
answers one row per ex-date, ``code dividOperateDate foreAdjustFactor backAdjustFactor
adjustFactor`` as strings with 6 decimals (``6.295967``); ``backAdjustFactor`` is the
cumulative back (hfq) factor from that ex-date on (涨跌幅复权法: the product of
``close(t-1) / preclose(t)``, 1 before the first ex-date), kdist's ``factor``. Its start
defaults to 2015-01-01, so kdist always sends 1990-01-01, once per symbol. The events come
from ``query_dividend_data(code, year, yearType="operate")``, asked only for the years of the
window that hold an ex-date among the factors: per share (not per 10), ``dividCashPsBeforeTax``
(cash before tax, 6 decimals; made exact from ``dividCashStock``'s per-10 text,
``10派1.918424元（含税…）``, when the two agree), ``dividStocksPs`` (bonus shares) plus
``dividReserveToStockPs`` (shares from the capital reserve, 转增) as ``bonus``; rows without
``dividOperateDate`` (plans) are left out. baostock's dividends carry no rights issues or
splits: its factor covers them. Result sets are read row by row as above, never with
``get_data()`` (it calls ``DataFrame.append``, gone since pandas 2).
"""

from __future__ import annotations

import atexit
import os
import re
import socket
import threading
import time

import numpy as np
import pandas as pd

from ..actions import empty_actions
from ..errors import (
    DataError,
    PermanentProviderError,
    SymbolNotFoundError,
    TransientProviderError,
)
from ..schema import Adjust, Freq, empty_bars
from ..securities import split_symbol
from .base import Horizon, Option, Provider, vendor_numbers

__all__ = ["BaostockProvider"]

_FREQUENCY = {
    Freq.DAY: "d",
    Freq.WEEK: "w",
    Freq.MONTH: "m",
    Freq.MIN5: "5",
    Freq.MIN15: "15",
    Freq.MIN30: "30",
    Freq.MIN60: "60",
}
_ADJUSTFLAG = {Adjust.HFQ: "1", Adjust.QFQ: "2", Adjust.NONE: "3"}
# Only what the canonical bar needs: fewer fields, smaller answers. Weekly and monthly bars
# have no tradestatus (baostock refuses it there), minute bars add time.
_DAILY_FIELDS = ("date", "code", "open", "high", "low", "close", "volume", "amount",
                 "adjustflag", "tradestatus")
_PERIOD_FIELDS = ("date", "code", "open", "high", "low", "close", "volume", "amount",
                  "adjustflag")
_MINUTE_FIELDS = ("date", "time", "code", "open", "high", "low", "close", "volume", "amount",
                  "adjustflag")
_NUMBERS = ("open", "high", "low", "close", "volume", "amount")

# baostock's error codes (baostock/common/contants.py).
_OK = "0"
_NOT_LOGGED_IN = "10001001"
_LOGIN_LIMIT = "10001005"
_NETWORK = frozenset(f"1000200{i}" for i in range(1, 9))
_BAD_PARAMETER = "10004006"
_BAD_CODE = "10004011"
#: A damaged answer (cannot parse, cannot unzip) or a server fault: worth a retry.
_DAMAGED = frozenset({"10004001", "10004002", "10005001"})
#: The session is gone: log in again and repeat the query once.
_RELOGIN = _NETWORK | {_NOT_LOGGED_IN}
#: Seconds the logout at process exit may take.
_EXIT_TIMEOUT = 5.0

# The queries kdist makes: bars, the adjustment factors, the dividends of a year.
_BARS = "query_history_k_data_plus"
_FACTORS = "query_adjust_factor"
_DIVIDENDS = "query_dividend_data"
#: Earlier than any A-share ex-date: query_adjust_factor's own default start is 2015-01-01.
_FIRST_DAY = "1990-01-01"
#: The cash of dividCashStock's per-10 text, ``10转3派2元（含税，...）`` -> 2.
_PER_TEN_CASH = re.compile(r"派\s*([0-9]+(?:\.[0-9]+)?)\s*元")


def _code(symbol: str) -> str:
    """Return baostock's code of an A-share symbol: ``600000.SH`` -> ``sh.600000``.

    Raises
    ------
    PermanentProviderError
        ``symbol`` is no Shanghai or Shenzhen A-share.
    """
    parts = split_symbol(symbol)
    if parts is None:
        raise PermanentProviderError(
            f"baostock serves China A-shares only, not {symbol}; use the yfinance provider "
            "for other markets",
            symbol=symbol,
        )
    code, exchange = parts
    if exchange == "BJ":
        raise PermanentProviderError(
            f"baostock serves Shanghai and Shenzhen only, not {symbol} (Beijing); use the "
            "akshare provider for Beijing stocks",
            symbol=symbol,
        )
    return f"{exchange.lower()}.{code}"


def _error(code: str, msg: str, *, symbol: str | None, doing: str):
    """The kdist error for a baostock error code."""
    what = f"baostock {doing} failed with error {code} ({msg or 'no message'})"
    context = {"symbol": symbol, "code": code}
    if code == _BAD_CODE:
        return SymbolNotFoundError(f"{what}: baostock does not know {symbol}", **context)
    if code in _NETWORK:
        return TransientProviderError(f"{what}: network trouble, will retry", kind="connection",
                                      **context)
    if code == _NOT_LOGGED_IN:
        return TransientProviderError(f"{what}: the session was lost twice in a row, will "
                                      "retry", kind="session", **context)
    if code == _LOGIN_LIMIT:
        return TransientProviderError(
            f"{what}: too many sessions for this account; use fewer worker processes or wait "
            "for old sessions to expire", kind="login_limit", **context)
    if code in _DAMAGED:
        return TransientProviderError(f"{what}: a damaged answer, will retry", kind="server",
                                      **context)
    if code == _BAD_PARAMETER:
        return PermanentProviderError(f"{what}: baostock refused the request's parameters "
                                      "(frequency, adjustment or dates)", **context)
    return PermanentProviderError(f"{what}; check the request, or upgrade baostock "
                                  "if it says the client is outdated", **context)


def _what(op: str) -> str:
    """How messages name a query: "query" for bars, the function's name for the others."""
    return "query" if op == _BARS else op


def _truncated(rs) -> bool:
    """True when ``rs.next()`` gave up fetching a page without saying so.

    A complete result always ends on a short (or empty) page; baostock's ``next()`` returns
    False with ``error_code == "0"`` when a page request gets no answer, leaving the last
    full page in ``rs.data``.
    """
    data, per_page = getattr(rs, "data", None), getattr(rs, "per_page_count", None)
    try:
        return data is not None and len(data) > 0 and len(data) >= int(per_page)
    except (TypeError, ValueError):
        return False


class _Session:
    """The baostock login of this process: one session, one call at a time, bounded calls.

    ``lock`` serialises every call into baostock (its socket and login are process-global).
    A long-lived watchdog thread enforces the hard timeout baostock lacks: a call that makes
    no progress for ``timeout`` seconds gets its socket shut down and closed, which makes the
    blocked (or, when the server hung up, spinning) receive loop inside baostock fail, so the
    call returns and releases the lock. The one thing the watchdog cannot interrupt is the TCP
    connect inside ``login`` (baostock creates that socket internally); the operating system
    bounds it (about two minutes on Linux), and meanwhile other calls give up waiting for the
    lock after their own ``timeout``.
    """

    def __init__(self):
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.logged_in = False
        #: The socket may still be open but is useless: close it before the next login.
        self.stale = False
        self.logins = 0
        self._cond = threading.Condition()
        self._deadline: float | None = None
        self._fired = False
        self._watchdog: threading.Thread | None = None

    # -- the hard timeout -----------------------------------------------------------------

    def _arm(self, seconds: float):
        with self._cond:
            self._fired = False
            self._deadline = time.monotonic() + seconds
            if self._watchdog is None or not self._watchdog.is_alive():
                self._watchdog = threading.Thread(
                    target=self._watch, name="kdist-baostock-watchdog", daemon=True
                )
                self._watchdog.start()
            self._cond.notify()

    def _touch(self, seconds: float):
        # Progress (a row, a page): push the deadline. No notify: the watchdog re-reads the
        # deadline when it wakes, so extending it needs no lock round trip per row.
        if self._deadline is not None:
            self._deadline = time.monotonic() + seconds

    def _disarm(self) -> bool:
        """Stop watching; True when the deadline passed during the call."""
        with self._cond:
            self._deadline = None
            return self._fired

    def _watch(self):
        while True:
            with self._cond:
                while self._deadline is None:
                    self._cond.wait()
                left = self._deadline - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                self._deadline = None
                self._fired = True
                # Still holding the condition: _disarm() waits for the close, so a late close
                # can never hit the socket of the next login. The one call made beside a
                # running one, and its purpose: unblock it.
                try:
                    _baostock("close_socket")
                except Exception:  # noqa: BLE001 - a failed close must not kill the watchdog
                    pass

    # -- calls ----------------------------------------------------------------------------

    def _drop(self):
        self.logged_in = False
        self.stale = True

    def _acquire(self, timeout: float, symbol: str | None):
        if not self.lock.acquire(timeout=timeout):
            raise TransientProviderError(
                f"baostock is busy in this process: another call held the session for more "
                f"than {timeout:g}s, so {symbol} was not fetched; it will be retried",
                symbol=symbol,
                kind="busy",
            )

    def _login(self, timeout: float, symbol: str | None):
        if self.logged_in:
            return
        if self.stale:
            _baostock("close_socket")  # baostock opens a new socket per login: free the old
            self.stale = False
        self._arm(timeout)
        try:
            result = _baostock("login")
        except Exception as exc:
            self._disarm()
            self._drop()
            raise TransientProviderError(
                f"baostock login failed with {type(exc).__name__}: {exc}; will retry",
                symbol=symbol,
                kind="connection",
            ) from exc
        fired = self._disarm()
        code = str(getattr(result, "error_code", "")) if result is not None else ""
        if fired or code != _OK:
            self._drop()
            if fired:
                raise TransientProviderError(
                    f"baostock login gave no answer within {timeout:g}s; will retry",
                    symbol=symbol,
                    kind="timeout",
                )
            raise _error(code, getattr(result, "error_msg", ""), symbol=symbol, doing="login")
        self.logged_in = True
        self.logins += 1
        _register_logout()

    def _query_once(self, op: str, kwargs: dict, timeout: float, symbol: str):
        """One query and its pages: ``(code, msg, fields, rows)``; raises on a timeout."""
        what = _what(op)
        rows: list[list[str]] = []
        self._arm(timeout)
        try:
            rs = _baostock(op, **kwargs)
            while rs is not None and rs.error_code == _OK and rs.next():
                rows.append(rs.get_row_data())
                self._touch(timeout)
        except Exception as exc:
            fired = self._disarm()
            self._drop()  # the socket's state is unknown after a failure inside baostock
            # baostock parses the socket's bytes itself: these are a damaged or cut answer.
            damaged = fired or isinstance(exc, (OSError, ValueError, IndexError, KeyError))
            error = TransientProviderError if damaged else PermanentProviderError
            raise error(
                f"baostock {what} for {symbol} failed with {type(exc).__name__}: {exc}"
                + ("; will retry" if damaged else "; upgrade baostock if this persists"),
                symbol=symbol,
                kind="connection" if damaged else "vendor",
            ) from exc
        if rs is None:
            self._disarm()
            # baostock returns None, not a result, for dates it cannot parse.
            raise PermanentProviderError(
                f"baostock refused the dates {kwargs.get('start_date')!r}.."
                f"{kwargs.get('end_date')!r} for {symbol}" if op == _BARS else
                f"baostock {what} for {symbol} returned no result",
                symbol=symbol,
            )
        if self._disarm():
            self._drop()
            raise TransientProviderError(
                f"baostock gave no answer for {symbol} within {timeout:g}s; its socket was "
                "closed and the next call logs in again",
                symbol=symbol,
                kind="timeout",
            )
        code = str(rs.error_code)
        if code == _OK and _truncated(rs):
            self._drop()
            raise TransientProviderError(
                f"baostock stopped sending pages for {symbol} after {len(rows)} rows (a page "
                "request got no answer); will retry",
                symbol=symbol,
                kind="connection",
            )
        return code, str(getattr(rs, "error_msg", "")), list(rs.fields), rows

    def query(self, kwargs: dict, *, timeout: float, symbol: str, op: str = _BARS):
        """Return ``(fields, rows)`` of ``op(**kwargs)``, by default
        ``query_history_k_data_plus``.

        Logs in first if needed; a stale session (network or not-logged-in code) is
        logged in again and the query repeated once.
        """
        self._acquire(timeout, symbol)
        try:
            for attempt in (1, 2):
                self._login(timeout, symbol)
                code, msg, fields, rows = self._query_once(op, kwargs, timeout, symbol)
                if code == _OK:
                    return fields, rows
                if code in _RELOGIN:
                    self._drop()
                    if attempt == 1:
                        continue
                raise _error(code, msg, symbol=symbol, doing=f"{_what(op)} for {symbol}")
        finally:
            self.lock.release()
        raise AssertionError("unreachable")  # pragma: no cover

    def logout(self, timeout: float):
        """Log out if logged in; never raises (it runs at process exit)."""
        if not self.lock.acquire(timeout=timeout):
            return
        try:
            if not self.logged_in:
                return
            self._arm(timeout)
            try:
                _baostock("logout")
            except Exception:  # noqa: BLE001 - the process is ending either way
                pass
            finally:
                self._disarm()
                self.logged_in = False
        finally:
            self.lock.release()


_SESSION: _Session | None = None
_SESSION_GUARD = threading.Lock()
_logout_registered_pid: int | None = None


def _session() -> _Session:
    """This process's session, created on first use."""
    global _SESSION
    session = _SESSION
    if session is not None and session.pid == os.getpid():
        return session
    with _SESSION_GUARD:
        if _SESSION is None or _SESSION.pid != os.getpid():
            # A forked child inherits the parent's socket (and maybe a held lock): start over.
            _SESSION = _Session()
        return _SESSION


def _register_logout():
    global _logout_registered_pid
    if _logout_registered_pid != os.getpid():
        _logout_registered_pid = os.getpid()
        atexit.register(_logout_at_exit)


def _logout_at_exit():
    session = _SESSION
    if session is not None and session.pid == os.getpid() and session.logged_in:
        session.logout(_EXIT_TIMEOUT)


def _baostock(op: str, **kwargs):
    """The vendor seam: every call into the ``baostock`` package goes through here.

    ``op`` is ``"login"``, ``"logout"``, ``"query_history_k_data_plus"``,
    ``"query_adjust_factor"`` or ``"query_dividend_data"`` (called with ``kwargs``), or
    ``"close_socket"``: shut down and close baostock's process-global socket,
    the only way to end a call that hangs in it.
    """
    import baostock  # lazy: importing kdist must never import a vendor package

    if op == "close_socket":
        from baostock.common import context

        sock = getattr(context, "default_socket", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv()
            except OSError:
                pass  # not connected, or already closed
            sock.close()
        return None
    if op not in ("login", "logout", _BARS, _FACTORS, _DIVIDENDS):
        raise ValueError(f"unknown baostock operation {op!r}")
    return getattr(baostock, op)(**kwargs)


#: From baostock.com's data range note ("5、15、30、60分钟K线数据,时间范围:1999-07-26至今"),
#: seen only in third-party copies of it (CSDN posts); not in PROVIDERS.md or
#: VENDOR-FACTS.md: unverified, and nothing relies on it (check() does not refuse earlier
#: dates; baostock answers them with no rows).
_MINUTE_HORIZON = Horizon(
    earliest="1999-07-26",
    source="3rd-party, unverified: baostock.com's data range note as copied in CSDN posts "
           "('5、15、30、60分钟K线数据,时间范围:1999-07-26至今'); not in PROVIDERS.md or "
           "VENDOR-FACTS.md",
)


class BaostockProvider(Provider):
    """China A-share bars from baostock: daily, weekly, monthly and 5-60 minute.

    One login per worker process, shared by all instances and threads (see
    :class:`_Session`); the provider itself holds only its options and pickles by them.
    Minute bars are stamped at their end (``09:35`` is the first 5-minute bar).

    Examples
    --------
    >>> from kdist.providers import get_provider
    >>> p = get_provider("baostock")  # doctest: +SKIP
    >>> p.fetch("600000.SH", "2024-01-02", "2024-01-05", "5m", "qfq")  # doctest: +SKIP
    """

    name = "baostock"
    description = "China A-share (SH/SZ) daily/weekly/monthly and 5-60 minute bars from baostock"
    requires = ("baostock",)
    extra = "baostock"
    url = "http://baostock.com"
    freqs = (Freq.DAY, Freq.WEEK, Freq.MONTH, Freq.MIN5, Freq.MIN15, Freq.MIN30, Freq.MIN60)
    adjusts = (Adjust.NONE, Adjust.QFQ, Adjust.HFQ)
    tz = "Asia/Shanghai"
    freq_hint = "for 1-minute bars use the tdx provider with local files"
    #: Minute bars from a fixed first date, no rolling look-back: they do not expire.
    horizons = {f: _MINUTE_HORIZON for f in (Freq.MIN5, Freq.MIN15, Freq.MIN30, Freq.MIN60)}
    # Conservative cluster-wide politeness: its server limits logins and sessions.
    max_concurrency = 4
    max_rate = 5.0
    options = {
        "timeout": Option(
            float, 30.0,
            "seconds a baostock login, query or page may stay silent before the session is reset",
            positive=True,
        ),
    }

    def _fetch(self, symbol, start, end, freq, adjust) -> pd.DataFrame:
        """Return the bars of ``symbol`` stamped in ``[start, end]`` (dates inclusive).

        See :meth:`Provider.fetch`, which parses the arguments and calls this.

        Returns
        -------
        pandas.DataFrame
            ``ts open high low close volume amount``; suspended days are placeholder bars
            (volume 0 at the previous close); volume in
            shares, amount in yuan; empty when baostock has no bars in the window.

        Raises
        ------
        InvalidOptionError
            1-minute bars.
        SymbolNotFoundError
            baostock does not know the code (10004011).
        PermanentProviderError
            ``symbol`` is no SH/SZ A-share, or baostock refused the parameters.
        TransientProviderError
            Network trouble, a timeout, a busy session or the account's login limit.
        """
        code = _code(symbol)
        if start > end:
            return empty_bars()
        if freq.intraday:
            fields = _MINUTE_FIELDS
        elif freq is Freq.DAY:
            fields = _DAILY_FIELDS
        else:
            fields = _PERIOD_FIELDS
        columns, rows = _session().query(
            {
                "code": code,
                "fields": ",".join(fields),
                "start_date": start.strftime("%Y-%m-%d"),
                "end_date": end.strftime("%Y-%m-%d"),
                "frequency": _FREQUENCY[freq],
                "adjustflag": _ADJUSTFLAG[adjust],
            },
            timeout=self.timeout,
            symbol=symbol,
        )
        return _bars(columns, rows, freq, symbol)

    def _actions(self, symbol, start, end) -> pd.DataFrame:
        """Return baostock's back-adjustment factors and dividends of ``symbol``.

        See :meth:`Provider.actions`, which parses the arguments and calls this. Asks
        ``query_adjust_factor`` once, from 1990-01-01 (never baostock's default start,
        2015-01-01) to ``end``: the whole series, so the factor in force at the window's
        first bar is there too. Then ``query_dividend_data(yearType="operate")`` once per
        year of ``[start, end]`` that has an ex-date among the factors, for the events:
        no year, no further call.

        Returns
        -------
        pandas.DataFrame
            ``ex_date cash bonus factor``: every factor row up to ``end`` and the dividend
            events of the years asked, per share; an event's ``factor`` is the one in
            force on its ex-date.

        Raises
        ------
        SymbolNotFoundError
            baostock does not know the code (10004011).
        PermanentProviderError
            ``symbol`` is no SH/SZ A-share, or baostock refused the parameters.
        TransientProviderError
            Network trouble, a timeout, a busy session or the account's login limit.
        DataError
            A factor or ex-date that baostock sent is no number or date.
        """
        code = _code(symbol)
        if start > end:
            return empty_actions()
        fields, rows = _session().query(
            {"code": code, "start_date": _FIRST_DAY, "end_date": end.strftime("%Y-%m-%d")},
            op=_FACTORS, timeout=self.timeout, symbol=symbol,
        )
        factors = _factors(fields, rows, symbol)
        ex_dates = factors["ex_date"]
        years = sorted({day.year for day in ex_dates[(ex_dates >= start) & (ex_dates <= end)]})
        events = []
        for year in years:
            fields, rows = _session().query(
                {"code": code, "year": str(year), "yearType": "operate"},
                op=_DIVIDENDS, timeout=self.timeout, symbol=symbol,
            )
            events.append(_dividends(fields, rows, symbol))
        if not events:
            return factors
        events = pd.concat(events, ignore_index=True)
        # A year's later events are not yet in the factors asked (they end at `end`).
        return _with_factors(events[events["ex_date"] <= end], factors)


def _bars(columns: list[str], rows: list[list[str]], freq: Freq, symbol: str) -> pd.DataFrame:
    """Turn baostock's string rows into canonical bars."""
    stamp = "time" if freq.intraday else "date"
    missing = [c for c in (stamp, *_NUMBERS[:4]) if c not in columns]
    if missing:
        raise DataError(
            f"baostock's answer for {symbol} has no field {missing[0]!r} (fields: "
            f"{', '.join(columns)}); baostock changed its output: pin a version kdist supports",
            column="ts" if missing[0] == stamp else missing[0],
            symbol=symbol,
        )
    try:
        raw = pd.DataFrame(rows, columns=columns, dtype=object)
    except ValueError as exc:
        raise DataError(
            f"baostock's rows for {symbol} do not match its fields ({', '.join(columns)}): {exc}",
            column="ts",
            symbol=symbol,
        ) from exc
    if len(raw) == 0:
        return empty_bars()
    if freq.intraday:
        # 20240102093500000 -> 2024-01-02 09:35:00 (the bar's end, Beijing time); the last
        # three digits are milliseconds, always 000.
        ts = pd.to_datetime(raw["time"].astype(str).str[:14], format="%Y%m%d%H%M%S",
                            errors="coerce")
    else:
        ts = pd.to_datetime(raw["date"].astype(str), format="%Y-%m-%d", errors="coerce")
    frame = pd.DataFrame({"ts": ts.astype("datetime64[us]")})
    # Every value is a string; "" (missing) becomes NaN.
    vendor_numbers(frame, raw, {name: name for name in _NUMBERS})
    if "tradestatus" in raw.columns:
        _placeholders(frame, raw["tradestatus"].astype(str).eq("0").to_numpy())
    return frame.reset_index(drop=True)


def _placeholders(frame: pd.DataFrame, suspended: np.ndarray):
    """Keep baostock's suspended days (``tradestatus`` 0) as the placeholder bars they are:
    no trades (its empty volume and amount are 0) at the previous close, so that
    ``kdist check --gaps`` reports them as suspended and ``kdist.load(placeholders="drop")``
    can leave them out."""
    if not suspended.any():
        return
    frame.loc[suspended, ["volume", "amount"]] = frame.loc[suspended, ["volume", "amount"]].fillna(0)
    close = frame["close"].where(~suspended | frame["close"].notna(), frame["close"].ffill())
    frame["close"] = close
    for col in ("open", "high", "low"):
        frame.loc[suspended, col] = frame.loc[suspended, col].fillna(close[suspended])


def _table(columns: list[str], rows: list[list[str]], needed: tuple[str, ...], symbol: str,
           op: str) -> pd.DataFrame:
    """baostock's answer to ``op`` as a frame of strings; DataError unless it has every field
    of ``needed`` and its rows match its fields."""
    missing = [c for c in needed if c not in columns]
    if missing:
        raise DataError(
            f"baostock's {op} answer for {symbol} has no field {missing[0]!r} (fields: "
            f"{', '.join(columns)}); baostock changed its output: pin a version kdist supports",
            column="ex_date" if missing[0] == "dividOperateDate" else "factor",
            symbol=symbol,
        )
    try:
        return pd.DataFrame(rows, columns=columns, dtype=object)
    except ValueError as exc:
        raise DataError(
            f"baostock's {op} rows for {symbol} do not match its fields "
            f"({', '.join(columns)}): {exc}", column="ex_date", symbol=symbol,
        ) from exc


def _ex_dates(values: pd.Series, symbol: str, op: str) -> pd.Series:
    """``YYYY-MM-DD`` strings as midnight datetimes; DataError names the first bad one."""
    dates = pd.to_datetime(values, format="%Y-%m-%d", errors="coerce")
    if dates.isna().any():
        bad = values[dates.isna()].iloc[0]
        raise DataError(f"baostock's {op} answer for {symbol} has ex-date {bad!r}, which is "
                        "no YYYY-MM-DD date", column="ex_date", symbol=symbol)
    return dates.astype("datetime64[us]")


def _factors(columns: list[str], rows: list[list[str]], symbol: str) -> pd.DataFrame:
    """``ex_date factor`` from query_adjust_factor's rows: the back (hfq) factor, sorted."""
    raw = _table(columns, rows, ("dividOperateDate", "backAdjustFactor"), symbol, _FACTORS)
    factor = pd.to_numeric(raw["backAdjustFactor"], errors="coerce").astype("float64")
    if factor.isna().any():
        at = factor.isna().to_numpy().argmax()
        raise DataError(
            f"baostock's back-adjustment factor of {symbol} on "
            f"{raw['dividOperateDate'].iloc[at]} is {raw['backAdjustFactor'].iloc[at]!r}, "
            "which is no number", column="factor", symbol=symbol)
    frame = pd.DataFrame({"ex_date": _ex_dates(raw["dividOperateDate"], symbol, _FACTORS),
                          "factor": factor})
    return frame.sort_values("ex_date", kind="stable").reset_index(drop=True)


def _dividends(columns: list[str], rows: list[list[str]], symbol: str) -> pd.DataFrame:
    """``ex_date cash bonus`` from query_dividend_data's rows, per share.

    Rows without an ex-date (plans not carried out) are left out. ``cash`` is the cash
    dividend before tax (``dividCashPsBeforeTax``, 6 decimals), made exact from the per-10
    text of ``dividCashStock`` when the two agree; ``bonus`` is bonus shares plus shares
    from the capital reserve (``dividStocksPs + dividReserveToStockPs``).
    """
    raw = _table(columns, rows, ("dividOperateDate", "dividCashPsBeforeTax", "dividStocksPs",
                                 "dividReserveToStockPs"), symbol, _DIVIDENDS)
    raw = raw[raw["dividOperateDate"].astype(str).str.strip() != ""]
    number = lambda c: pd.to_numeric(raw[c], errors="coerce").fillna(0.0)  # noqa: E731
    cash = number("dividCashPsBeforeTax").astype("float64")
    if "dividCashStock" in raw.columns:
        cash = pd.Series([_exact_cash(t, c) for t, c in zip(raw["dividCashStock"], cash)],
                         index=raw.index, dtype="float64")
    return pd.DataFrame({
        "ex_date": _ex_dates(raw["dividOperateDate"], symbol, _DIVIDENDS),
        "cash": cash,
        "bonus": number("dividStocksPs") + number("dividReserveToStockPs"),
    }).reset_index(drop=True)


def _exact_cash(text, cash: float) -> float:
    """The cash per share of ``10派1.918424元（含税…）`` (0.1918424) when it rounds to
    ``cash`` (baostock's 6-decimal 0.191842); ``cash`` otherwise."""
    found = _PER_TEN_CASH.search(str(text or ""))
    if found is None or not str(text).startswith("10"):
        return cash
    exact = round(float(found.group(1)) / 10.0, 12)  # 0.757, not 0.7570000000000001
    return exact if abs(exact - cash) <= 5.01e-7 else cash


def _with_factors(events: pd.DataFrame, factors: pd.DataFrame) -> pd.DataFrame:
    """Factor rows and event rows in one frame, each event carrying the factor in force on
    its ex-date (1 before the first: baostock's back factor starts at 1)."""
    levels = np.concatenate([[1.0], factors["factor"].to_numpy("float64")])
    at = np.searchsorted(factors["ex_date"].to_numpy(), events["ex_date"].to_numpy(),
                         side="right")
    return pd.concat([factors, events.assign(factor=levels[at])], ignore_index=True)
