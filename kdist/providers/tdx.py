"""The ``tdx`` provider: bars read from the ``vipdoc`` binary files of a 通达信 (TDX) installation.

Option ``root`` is the installation directory holding ``vipdoc/``; a symbol maps to
``vipdoc/{sh,sz,bj}/lday/{sh600000,sz000001,bj830799}.day`` (daily), ``.../minline/*.lc1``
(1-minute) and ``.../fzline/*.lc5`` (5-minute), and every path is resolved and refused unless
it stays inside the resolved ``vipdoc`` (which may itself link to a data drive; links out of
it are refused). A file is an array of 32-byte little-endian records, read whole with
``numpy.frombuffer`` and a structured dtype; a size that is not a multiple of 32 is a
truncated file. A ``.day`` record is ``<IIIIIfII``: date as the integer YYYYMMDD, open, high,
low and close as integers, amount as float32 (yuan), volume as an integer and 4 reserved
bytes. An ``.lc1``/``.lc5`` record is ``<HHfffffII``: date packed as ``(year - 2004) * 2048 +
month * 100 + day``, minutes since midnight at the bar's end (the first 1-minute bar is 09:31,
the first 5-minute bar 09:35), open, high, low, close and amount as float32, volume as an
integer and 4 reserved bytes. Where no ``.lc1``/``.lc5`` file exists, the older ``.1``/``.5``
file in the same directory is read (TDX's downloadable sh5fz/sz5fz archives; pytdx's
``TdxMinBarReader``): ``<HHIIIIfII``, the same record with prices as integers like ``.day``'s.

What the numbers mean depends on the kind of security (:mod:`kdist.securities`, one code
table): TDX keeps a price with 2 decimals (stocks, Shenzhen B shares, indexes) or 3 (funds,
warrants, Shanghai B shares, bonds, repo) and stores ``.day`` prices as that price times 100
or 1000. Bonds and repo are held per 1,000 yuan face value and counted in 手 of 10, so their
stored price is 10x the quote (113011.SH: 1047970 for 104.797) and their volume a tenth of the
bonds traded; a repo's quote is its annualised rate in percent (204001.SH: 27200 for 2.72%).
A repo file whose median rate would be below 0.79% read so holds the rate itself (2720 for
2.72%) and is read as such: no repo's rates are 10x off ~2.5% for a whole file.
Indexes, TDX blocks (880xxx, 881xxx) and TDX's aliases of SSE indexes (999999 ...) count 手 of
100 shares. For these kinds the whole file's amounts confirm the unit, so a file that counts
bonds or shares keeps them (:func:`kdist.securities.volume_factor_from_amount`). kdist stores
quotes, volume in shares, fund units, bonds or 100-yuan repo units, and amount as written
(float32 yuan). Option ``price_scale`` (a power of ten) overrides the divisor of the ``.day``
integers; minute prices are scaled alike, and rounded to the quote's tick, which restores the
exchange's prices from float32. Option ``kinds`` says which kinds ``list_symbols``
(``--all``) returns: by default every kind an exchange lists, without TDX's blocks and
aliases; a symbol named explicitly is read whatever its kind.

Timestamps are exchange-local and tz-naive, daily bars at midnight. ``1d`` comes from
``.day``, ``1m`` from ``.lc1`` (or ``.1``), ``5m`` from ``.lc5`` (or ``.5``); ``1w`` and
``1M`` aggregate whole weeks (Monday to Sunday) and months of ``.day`` bars, stamped on their
last trading day, and ``15m``/``30m``/``60m`` aggregate 5-minute bars within the A-share
sessions 09:30-11:30 and 13:00-15:00, stamped at the bucket's end (a bar outside the
sessions joins the first or last bucket of the nearer one). The files are unadjusted: only
``adjust="none"``. Records whose date does not decode are dropped (they belong to no window);
dtypes, OHLC checks, sorting and duplicates are :func:`kdist.schema.normalise`'s work in the
runner.

Corporate actions come from TDX's ``T0002/hq_cache/gbbq`` under root (股本变迁, downloaded
with 盘后数据下载), read by :mod:`kdist.providers.tdx_gbbq` (format, units, pytdx's key):
its 除权除息 records per share (cash and rights price in yuan, bonus and rights shares per
share) with ``factor`` NaN, so kdist computes the factors from the raw closes it stored
(:mod:`kdist.actions` has the formula). Without that file the provider serves no actions:
:attr:`~TdxProvider.serves_actions` is False and ``actions()`` answers None, so nothing
stored is superseded. Reading it needs pytdx (``pip install "kdist[tdx]"``); bars do not.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from .. import securities
from ..actions import empty_actions
from ..bars import aggregate, resample
from ..errors import InvalidOptionError, PermanentProviderError, SymbolNotFoundError
from ..schema import BAR_COLUMNS, Adjust, Freq
from ..securities import Kind, TdxUnits
from . import tdx_gbbq
from .base import (
    Option,
    Provider,
    directory_option,
    file_inside,
    missing_file,
    one_line,
    required_option,
)

__all__ = ["TdxProvider"]

_RECORD_SIZE = 32
_DAY_RECORD = np.dtype(
    [
        ("date", "<u4"), ("open", "<u4"), ("high", "<u4"), ("low", "<u4"), ("close", "<u4"),
        ("amount", "<f4"), ("volume", "<u4"), ("reserved", "<u4"),
    ]
)
_MINUTE_RECORD = np.dtype(
    [
        ("date", "<u2"), ("minute", "<u2"), ("open", "<f4"), ("high", "<f4"), ("low", "<f4"),
        ("close", "<f4"), ("amount", "<f4"), ("volume", "<u4"), ("reserved", "<u4"),
    ]
)
#: The older ``.1``/``.5`` minute files (TDX's downloadable sh5fz/sz5fz archives, pytdx's
#: ``TdxMinBarReader``): the ``.lc`` date and minute, prices as integers like ``.day``'s.
_INT_MINUTE_RECORD = np.dtype(
    [
        ("date", "<u2"), ("minute", "<u2"), ("open", "<u4"), ("high", "<u4"), ("low", "<u4"),
        ("close", "<u4"), ("amount", "<f4"), ("volume", "<u4"), ("reserved", "<u4"),
    ]
)
assert _DAY_RECORD.itemsize == _MINUTE_RECORD.itemsize == _INT_MINUTE_RECORD.itemsize
assert _DAY_RECORD.itemsize == _RECORD_SIZE

_EXCHANGES = tuple(exchange.lower() for exchange in securities.EXCHANGES)  # vipdoc/sh ...
#: Directory under ``vipdoc/<exchange>/`` and file suffix of the file each freq is built from.
_SOURCES: dict[Freq, tuple[str, str]] = {
    Freq.DAY: ("lday", "day"),
    Freq.WEEK: ("lday", "day"),
    Freq.MONTH: ("lday", "day"),
    Freq.MIN1: ("minline", "lc1"),
    Freq.MIN5: ("fzline", "lc5"),
    Freq.MIN15: ("fzline", "lc5"),
    Freq.MIN30: ("fzline", "lc5"),
    Freq.MIN60: ("fzline", "lc5"),
}
#: A minute file TDX's client writes (``.lc1``/``.lc5``, float prices) and, when it is
#: missing, the older integer-priced file of the same bars in the same directory.
_OLDER_SUFFIX = {"lc1": "1", "lc5": "5"}
_FILE_KIND = {"day": "daily", "lc1": "1-minute", "lc5": "5-minute", "1": "1-minute",
              "5": "5-minute"}
#: A repo's internal price is its rate in percent times 10 in the trees seen (27200 in a
#: .day file for 2.72%); a file whose median internal rate is below this holds the rate
#: itself (2720 for 2.72%). The split is the geometric middle of 0.79% and 7.9% around
#: typical rates of ~2.5%: no repo's median rate over a file is 10x off that.
_REPO_SPLIT = 7.9
#: Kinds whose volume unit the file's amounts confirm (TDX counts them in 手).
_JUDGED = frozenset({Kind.BOND, Kind.REPO, Kind.INDEX, Kind.BLOCK, Kind.ALIAS})
#: price_scale may be 1, 10, ... 10**6: no TDX price has more decimals.
_MAX_SCALE_DIGITS = 6
# Session opens in minutes since midnight; a bar stamped before noon belongs to the morning.
_MORNING, _AFTERNOON, _NOON, _SESSION_MINUTES = 570, 780, 720, 120


def _parse_scale(value: str) -> int | None:
    """Return the power of ten ``value`` names ("1000"), None for "auto" or anything else."""
    text = str(value).strip()
    if text.isascii() and text.isdigit() and text.startswith("1") and set(text[1:]) <= {"0"}:
        if len(text) - 1 <= _MAX_SCALE_DIGITS:
            return int(text)
    return None


def _dates(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Return ``datetime64[D]`` from integer parts, NaT where they name no calendar day."""
    year, month, day = (np.asarray(a, dtype=np.int64) for a in (year, month, day))
    ok = (year >= 1900) & (year <= 2200) & (month >= 1) & (month <= 12) & (day >= 1) & (day <= 31)
    months = np.where(ok, (year - 1970) * 12 + month - 1, 0).astype("datetime64[M]")
    days = months.astype("datetime64[D]") + np.where(ok, day - 1, 0)
    # 20240231 would roll into March: a date is valid only if it stays in its month.
    ok &= days.astype("datetime64[M]") == months
    return np.where(ok, days, np.datetime64("NaT", "D"))


def _sorted_unique(bars: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Sort ``bars`` by ts, keeping the last of equal timestamps as normalise does.

    Aggregation must see each bar once, or a repeated record would count its volume twice.
    """
    ts = bars["ts"]
    order = np.argsort(ts, kind="stable")
    ordered = ts[order]
    last = np.ones(len(order), bool)
    last[:-1] = ordered[1:] != ordered[:-1]
    return {k: v[order[last]] for k, v in bars.items()}


def _day_file_symbol(name: str, exchange: str) -> tuple[str, str] | None:
    """Return ``(code, EXCHANGE)`` of the daily file ``name`` (``sh600000.day``) in the
    folder of ``exchange`` (``sh``), None for any other name (glob may ignore case)."""
    if not (name.startswith(exchange) and name.endswith(".day")):
        return None
    return securities.split_symbol(f"{name[len(exchange):-len('.day')]}.{exchange.upper()}")


class TdxProvider(Provider):
    """Bars from the binary files of a local 通达信 (TDX) installation.

    Parameters
    ----------
    root : str
        The TDX installation directory, the one holding ``vipdoc/`` (e.g. ``C:/new_tdx``).
        Required. Checked by :meth:`check`, not on construction, so a provider built on a
        client without the files still pickles to workers that have them.
    price_scale : str
        ``auto``, or a power of ten (``1``, ``10``, ... ``1000000``): the divisor of the
        integer prices in ``.day`` files; minute prices are scaled alike. ``auto`` takes it
        from the kind of security (:func:`kdist.securities.tdx_units`): 100 for stocks and
        indexes, 1000 for funds, warrants and Shanghai B shares, 10000 for bonds and repo.
    kinds : str
        Comma-separated kinds :meth:`list_symbols` returns (for ``--all``): ``listed`` (the
        default: every kind an exchange lists), ``all``, or names such as ``stock,index``;
        ``block`` and ``alias`` are TDX's own 880xxx/881xxx and 99999x codes.

    Corporate actions (:meth:`actions`) are read from ``root/T0002/hq_cache/gbbq`` when it
    exists (:attr:`serves_actions`); without it the provider serves none.

    Examples
    --------
    >>> from kdist.providers import get_provider
    >>> p = get_provider("tdx", root="C:/new_tdx")  # doctest: +SKIP
    >>> p.fetch("510050.SH", "2024-01-02", "2024-01-05")["close"].tolist()  # doctest: +SKIP
    [2.345, 2.351, 2.338, 2.342]
    """

    remote = False  # local files: a small job runs in the client's process
    name = "tdx"
    description = "Local 通达信 (TDX) vipdoc files: .day daily, .lc1 1-minute, .lc5 5-minute bars"
    url = "https://www.tdx.com.cn/"
    freqs = tuple(Freq)
    #: None: the local files hold what they hold (TDX keeps what the user downloaded), a
    #: horizon no provider can vouch for.
    horizons = {}
    # The files hold traded prices; adjusted prices are kdist's, derived from the gbbq's
    # corporate actions (actions()) and the stored raw bars.
    adjusts = (Adjust.NONE,)
    #: A-share codes only (symbol validation refuses tickers with a suffix), TDX's own included.
    symbol_suffixes: ClassVar[frozenset[str]] = frozenset()
    tdx_codes = True
    options: ClassVar[dict[str, Option]] = {
        "root": Option(str, None, "TDX installation directory holding vipdoc/ (required)"),
        "price_scale": Option(
            str, "auto", "auto, or a power of ten: .day price divisor (auto: by kind of security)"
        ),
        "kinds": Option(
            str, "listed", "kinds --all lists: listed (no TDX blocks/aliases), all, or "
            "stock,fund,bond,repo,index,..."
        ),
    }

    def __init__(self, **options):
        super().__init__(**options)
        self._resolved_vipdoc: Path | None = None
        required_option(self, "root", "the TDX installation directory that holds vipdoc/ "
                        "(e.g. --option root=C:/new_tdx)")
        if self.price_scale != "auto" and _parse_scale(self.price_scale) is None:
            raise InvalidOptionError(
                f"Option price_scale={self.price_scale!r} of provider 'tdx' is not auto or a "
                "power of ten; use e.g. 100 (2 decimals), 1000 (3) or 10000 (bonds)",
                option="price_scale",
                value=self.price_scale,
            )
        try:
            self._kinds = securities.parse_kinds(self.kinds)
        except ValueError as exc:
            raise InvalidOptionError(
                f"Option kinds={self.kinds!r} of provider 'tdx': {exc}",
                option="kinds",
                value=self.kinds,
            ) from None

    # -- root -----------------------------------------------------------------------------

    @property
    def _vipdoc(self) -> Path:
        # Resolved lazily, not on construction: a provider unpickled on a remote worker must
        # find the directory there, and a client that only submits need not have it.
        if self._resolved_vipdoc is None:
            self._resolved_vipdoc = self._check_root()
        return self._resolved_vipdoc

    def _check_root(self) -> Path:
        root = directory_option(self, "root", "vipdoc/ (the TDX installation directory)")
        vipdoc = root / "vipdoc"
        if not vipdoc.is_dir():
            hint = (
                f" (root looks like vipdoc itself: give its parent, {root.parent})"
                if root.name.lower() == "vipdoc"
                else ""
            )
            raise InvalidOptionError(
                f"Option root={self.root!r} of provider 'tdx' has no vipdoc/ directory; give "
                f"the TDX installation directory that holds vipdoc/{hint}",
                option="root",
                value=self.root,
            )
        return vipdoc.resolve()

    def check(self, *, freq: Freq, adjust: Adjust, start, end):
        """Refuse the job up front when root, or any file for ``freq``, is missing here.

        See :meth:`Provider.check`. A freq whose directory (``lday``, ``minline`` or
        ``fzline``) exists under no exchange would fail every symbol, so it is refused whole.
        """
        freq = Freq.parse(freq)
        super().check(freq=freq, adjust=adjust, start=start, end=end)
        folder, suffix = _SOURCES[freq]
        if not any((self._vipdoc / ex / folder).is_dir() for ex in _EXCHANGES):
            raise InvalidOptionError(
                f"Provider 'tdx' has no {freq.value} bars under {self._vipdoc}: no "
                f"{{sh,sz,bj}}/{folder}/ directory holds {_FILE_KIND[suffix]} .{suffix} files; "
                "download them in TDX (盘后数据下载) or choose another freq",
                option="freq",
                value=freq.value,
            )

    # -- paths ----------------------------------------------------------------------------

    def _path(self, symbol: str, freq: Freq) -> tuple[Path, str, str, str]:
        """Return ``(resolved file, exchange, code, suffix)`` of ``symbol``.

        A minute freq reads ``.lc1``/``.lc5`` and, when that file does not exist, the older
        ``.1``/``.5`` file in the same directory. Paths out of root are refused.
        """
        parts = securities.split_symbol(symbol)
        if parts is None:
            raise SymbolNotFoundError(
                f"Provider 'tdx' has no file for {symbol}: it reads the sh, sz and bj markets "
                "of vipdoc/; use symbols like 600000.SH, 000001.SZ or 830799.BJ",
                symbol=symbol,
            )
        code, exchange = parts[0], parts[1].lower()
        folder, suffix = _SOURCES[freq]
        tried = []
        for name in (suffix, _OLDER_SUFFIX.get(suffix)):
            if name is None:
                continue
            candidate = self._vipdoc / exchange / folder / f"{exchange}{code}.{name}"
            path = file_inside(candidate, self._vipdoc, symbol=symbol, what="the TDX file",
                               hint="files must be inside vipdoc/ (check the symlinks)")
            if path.is_file():
                return path, exchange, code, name
            if path.exists():
                raise PermanentProviderError(
                    f"The TDX file of {symbol}, {path}, is not a regular file",
                    symbol=symbol,
                    path=str(path),
                )
            tried.append(path)
        raise missing_file(
            symbol, tried, f"TDX {_FILE_KIND[suffix]} file for {symbol}",
            f"check the symbol and root={self.root!r}, and download the data in TDX (盘后数据下载)",
        )

    def _units(self, exchange: str, code: str) -> tuple[TdxUnits, int]:
        """Return the units of ``code`` on ``exchange`` and the ``.day`` price divisor."""
        # Symbols reach here validated, so the code has a kind; a stock's units otherwise.
        kind = securities.kind_of_code(code, exchange) or Kind.STOCK
        units = securities.tdx_units(kind, exchange)
        scale = _parse_scale(self.price_scale) or units.price_scale
        return units, scale

    @staticmethod
    def _volume_factor(units: TdxUnits, bars: dict[str, np.ndarray]) -> float:
        """What the file's volume is multiplied by: the kind's, confirmed by the amounts.

        Bonds and repo are counted in 手 of 10, indexes in 手 of 100, in the trees seen; the
        whole file's amounts (price x volume for bonds, ~100 yuan per 张 of repo, a share
        price of a few yuan for indexes) confirm it, so a file that counts otherwise keeps
        its own unit. Stocks and funds count shares.
        """
        if units.kind not in _JUDGED:
            return float(units.volume_factor)
        return float(securities.volume_factor_from_amount(
            units.kind, bars["close"], bars["volume"], bars["amount"], units.volume_factor
        ))

    # -- reading --------------------------------------------------------------------------

    @staticmethod
    def _records(path: Path, symbol: str, dtype: np.dtype) -> np.ndarray:
        """Return the file's records; one read, so a file TDX is appending to stays whole."""
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise PermanentProviderError(
                f"Cannot read the TDX file of {symbol}, {path}: {one_line(exc)}",
                symbol=symbol,
                path=str(path),
            ) from exc
        if len(raw) % _RECORD_SIZE:
            raise PermanentProviderError(
                f"The TDX file of {symbol}, {path}, is truncated: {len(raw)} bytes is not a "
                f"whole number of {_RECORD_SIZE}-byte records; download it again in TDX "
                "(盘后数据下载) or delete it",
                symbol=symbol,
                path=str(path),
            )
        return np.frombuffer(raw, dtype=dtype)

    @staticmethod
    def _repo_units(units: TdxUnits, internal_close: np.ndarray) -> TdxUnits:
        """Return ``units`` with the quote factor the file's repo rates say (10 or 1).

        ``internal_close`` is the file's closes in TDX's internal price (the ``.day``
        integer over ``10**tdx_decimals``, or the ``.lc`` float).
        """
        close = np.asarray(internal_close, dtype=np.float64)
        close = close[np.isfinite(close) & (close > 0)]
        if len(close) and float(np.median(close)) < _REPO_SPLIT:
            return dataclasses.replace(units, quote_factor=1)
        return units

    @staticmethod
    def _day_bars(rec: np.ndarray, units: TdxUnits, scale: int) -> dict[str, np.ndarray]:
        date = rec["date"].astype(np.int64)
        days = _dates(date // 10000, date // 100 % 100, date % 100)
        # Integer / scale is correctly rounded: 1021 / 100 is exactly the float 10.21.
        bars = {"ts": days.astype("datetime64[us]")}
        bars.update({c: rec[c] / scale for c in ("open", "high", "low", "close")})
        bars["volume"] = rec["volume"].astype(np.float64)
        bars["amount"] = rec["amount"].astype(np.float64)
        return bars

    @staticmethod
    def _minute_stamps(rec: np.ndarray) -> np.ndarray:
        """Timestamps of minute records: the packed date plus minutes since midnight."""
        packed = rec["date"].astype(np.int64)
        days = _dates(packed // 2048 + 2004, packed % 2048 // 100, packed % 2048 % 100)
        minute = rec["minute"].astype(np.int64)
        days = np.where(minute < 1440, days, np.datetime64("NaT", "D"))
        ts = days.astype("datetime64[m]") + minute.astype("timedelta64[m]")
        return ts.astype("datetime64[us]")

    @classmethod
    def _int_minute_bars(cls, rec: np.ndarray, units: TdxUnits, scale: int) -> dict:
        """Bars of a ``.1``/``.5`` file: prices are integers, divided as ``.day``'s are."""
        bars = {"ts": cls._minute_stamps(rec)}
        bars.update({c: rec[c] / scale for c in ("open", "high", "low", "close")})
        bars["volume"] = rec["volume"].astype(np.float64)
        bars["amount"] = rec["amount"].astype(np.float64)
        return bars

    @classmethod
    def _minute_bars(cls, rec: np.ndarray, units: TdxUnits, scale: int) -> dict:
        bars = {"ts": cls._minute_stamps(rec)}
        # The floats are TDX's internal price, the .day integer over 10**tdx_decimals: scale
        # them as the .day integers are (bonds: 1047.97 -> 104.797).
        internal = 10**units.tdx_decimals
        shift = round(math.log10(scale)) - round(math.log10(units.price_scale))
        # float32 10.01 is 10.0100002...: rounding to the tick's decimals restores 10.01.
        decimals = max(0, units.decimals + shift)
        for c in ("open", "high", "low", "close"):
            price = rec[c].astype(np.float64)
            if scale >= internal:
                price = price / (scale // internal)
            else:
                price = price * (internal // scale)
            bars[c] = np.round(price, decimals)
        bars["volume"] = rec["volume"].astype(np.float64)
        bars["amount"] = rec["amount"].astype(np.float64)
        return bars

    # -- the contract ---------------------------------------------------------------------

    def _fetch(self, symbol, start, end, freq, adjust) -> pd.DataFrame:
        """Return the bars of ``symbol`` stamped in ``[start, end]`` (dates inclusive).

        See :meth:`Provider.fetch`, which parses the arguments and calls this.

        Returns
        -------
        pandas.DataFrame
            ``ts`` (datetime64[us], exchange-local), ``open high low close volume amount``
            as float64, in file order for ``1d``/``1m``/``5m``, sorted when aggregated.

        Raises
        ------
        SymbolNotFoundError
            No file for ``symbol`` (the message names the path tried), or a symbol outside
            the sh, sz and bj markets.
        PermanentProviderError
            The file is truncated, unreadable, holds no decodable date, or resolves outside
            root.
        InvalidOptionError
            root is missing, or the freq or adjust is not served (see :meth:`check`).
        InvalidSymbolError
            ``symbol`` is not a symbol at all.
        """
        path, exchange, code, suffix = self._path(symbol, freq)
        units, scale = self._units(exchange, code)
        dtype, read = {
            "day": (_DAY_RECORD, self._day_bars),
            "lc1": (_MINUTE_RECORD, self._minute_bars),
            "lc5": (_MINUTE_RECORD, self._minute_bars),
            "1": (_INT_MINUTE_RECORD, self._int_minute_bars),
            "5": (_INT_MINUTE_RECORD, self._int_minute_bars),
        }[suffix]
        rec = self._records(path, symbol, dtype)
        if units.kind is Kind.REPO and self.price_scale == "auto":
            close = rec["close"].astype(np.float64)
            if dtype is not _MINUTE_RECORD:
                close = close / 10**units.tdx_decimals
            units = self._repo_units(units, close)
            scale = units.price_scale
        bars = read(rec, units, scale)
        bars["volume"] = bars["volume"] * self._volume_factor(units, bars)
        ts = bars["ts"]
        if len(ts) and np.isnat(ts).all():
            raise PermanentProviderError(
                f"The TDX file of {symbol}, {path}, holds no valid date in its {len(ts)} "
                f"records (first raw date {int(rec['date'][0])}); it is not a "
                f"{_FILE_KIND[suffix]} TDX file: download it again or delete it",
                symbol=symbol,
                path=str(path),
            )
        stop = end + pd.Timedelta(days=1)
        lo64, hi64 = start.as_unit("us").to_datetime64(), stop.as_unit("us").to_datetime64()
        if freq in (Freq.WEEK, Freq.MONTH):
            # Whole periods, then the window on their stamps: a week stamped inside the
            # window keeps its days before start, as the week's bar in any other window.
            bars = resample(_sorted_unique({k: v[~np.isnat(ts)] for k, v in bars.items()}), freq)
            ts = bars["ts"]
            bars = {k: v[(ts >= lo64) & (ts < hi64)] for k, v in bars.items()}
        else:
            # NaT compares False: undecodable records belong to no window.
            bars = {k: v[(ts >= lo64) & (ts < hi64)] for k, v in bars.items()}
            if freq in (Freq.MIN15, Freq.MIN30, Freq.MIN60):
                bars = self._buckets(_sorted_unique(bars), freq.minutes)
        return pd.DataFrame({c: bars[c] for c in BAR_COLUMNS})

    @staticmethod
    def _buckets(bars: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
        """Aggregate sorted 5-minute bars into ``n``-minute bars within the A-share sessions."""
        ts = bars["ts"]
        day = ts.astype("datetime64[D]")
        minute = ((ts - day) // np.timedelta64(1, "m")).astype(np.int64)
        session = np.where(minute < _NOON, _MORNING, _AFTERNOON)
        # Ceiling division: the 09:35 bar (09:30-09:35) ends in the 09:45 bucket of 15m.
        index = np.clip(-((session - minute) // n), 1, _SESSION_MINUTES // n)
        stamps = (day.astype("datetime64[m]") + (session + index * n).astype("timedelta64[m]"))
        stamps = stamps.astype("datetime64[us]")
        return aggregate(bars, stamps.astype(np.int64), stamps)

    # -- corporate actions ----------------------------------------------------------------

    @property
    def _gbbq(self) -> Path:
        """``root/T0002/hq_cache/gbbq``; a fixed name, so no symbol can lead it out of root."""
        return Path(self.root).expanduser() / tdx_gbbq.GBBQ

    @property
    def serves_actions(self) -> bool:
        """Whether root holds ``T0002/hq_cache/gbbq`` here: TDX's corporate actions.

        Asked where the actions are read (a worker), like the files themselves: False
        without the file (or without root), and :meth:`actions` then answers None.
        """
        return self._gbbq.is_file()

    def _actions(self, symbol, start, end) -> pd.DataFrame:
        """Return the 除权除息 rows of ``symbol`` in ``[start, end]`` from the gbbq file.

        See :meth:`Provider.actions`. Per share, ``factor`` NaN (kdist computes it from the
        raw closes); a symbol the file has no record of has none (an empty frame).

        Raises
        ------
        PermanentProviderError
            The gbbq file is gone, unreadable or corrupt (the message names its path).
        MissingDependencyError
            pytdx, which holds the file's key, is not installed.
        """
        path = self._gbbq
        if not path.is_file():
            raise PermanentProviderError(
                f"Provider 'tdx' has no corporate actions for {symbol}: {path} does not "
                "exist (any more); download 股本变迁 in TDX (盘后数据下载)",
                symbol=symbol, path=str(path),
            )
        parts = securities.split_symbol(symbol)
        if parts is None:
            return empty_actions()
        frame = tdx_gbbq.load(path).actions(*parts)
        stop = end + pd.Timedelta(days=1)
        keep = ((frame["ex_date"] >= start) & (frame["ex_date"] < stop)).to_numpy()
        return frame[keep].reset_index(drop=True)

    def list_symbols(self) -> list[str]:
        """Return the canonical symbols of the daily files under root of the chosen kinds.

        Files whose name is not ``<exchange><6 digits>.day`` in that exchange's ``lday``
        directory, codes in no range of that exchange (:data:`kdist.securities.CODE_TABLE`)
        or of a kind not in option ``kinds`` (by default TDX's blocks and aliases, whose
        statistics rows no exchange publishes), and symlinks out of root are skipped.
        """
        found = set()
        for exchange in _EXCHANGES:
            folder = self._vipdoc / exchange / "lday"
            if not folder.is_dir():
                continue
            for path in folder.glob(f"{exchange}*.day"):
                parts = _day_file_symbol(path.name, exchange)
                if parts is None or securities.kind_of_code(*parts) not in self._kinds:
                    continue
                try:
                    resolved = path.resolve()
                except (OSError, RuntimeError):
                    continue  # a symlink loop is no symbol
                if resolved.is_file() and resolved.is_relative_to(self._vipdoc):
                    found.add(f"{parts[0]}.{parts[1]}")
        return sorted(found)

    def version(self) -> str:
        """numpy's version: the files are read with it."""
        return np.__version__
