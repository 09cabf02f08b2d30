"""Providers that read bars from local files: one CSV or Parquet file per symbol under a root.

``CSVProvider`` ("csv") and ``ParquetProvider`` ("parquet") share everything but the reading
seam. A file is found from its symbol by a ``pattern``: ``{symbol}`` is the canonical symbol,
``{code}`` the six digits of an A-share or a ticker without its suffix, ``{exchange}`` the
A-share's exchange (``SH``, ``SZ``, ``BJ``) or the ticker's suffix. The default, ``auto``, tries
``{symbol}.csv`` and then TDX's export names ``{exchange}#{code}.txt`` (``SH#601003.txt``) and
``{exchange}#{code}.csv``. A pattern naming the code alone takes the exchange from a literal
``SH``/``SZ``/``BJ`` just before it (``SH#{code}.txt`` holds Shanghai files only) or else
guesses it from the code. Every path is resolved and refused unless it stays inside the
resolved ``root`` (no ``../``, absolute patterns or symlinks out).

A plain file's columns are mapped to the canonical ``ts open high low close volume amount`` by
the ``columns`` option or detected from common English and Chinese headers; only the mapped
columns are read. A 通达信 (TDX) "数据导出" file is read as TDX writes it (detected, or
``format="tdx"``), its title checked against the request: :mod:`kdist.providers.tdx_export`
knows the format.

The files hold what they hold: kdist adjusts nothing, so ``adjust`` declares what the files
are (``--adjust qfq``: forward-adjusted files, whose early prices may be negative) and the
frequency is the caller's word. Volume: ``volume_unit="shares"`` keeps it, ``"lots"`` counts
手 (100 shares; 10 for bonds and repo), and the default ``"auto"`` keeps plain files' volume
and reads a TDX export's unit from its own amounts (TDX exports count shares or 手 depending
on the client's settings; :func:`kdist.securities.volume_factor_from_amount`). Rows outside
the requested window are dropped; dtypes, OHLC checks, sorting and duplicates are
:func:`kdist.schema.normalise`'s work in the runner.

Corporate actions: option ``actions_pattern`` (default ``""``: none) names a second file per
symbol under the same root, found and kept inside it as the bar files are (e.g.
``actions/{symbol}.csv``), read as the provider reads its bars (CSV with ``encoding``,
Parquet). Its header is ``ex_date`` (a date per row: ISO, ``2024/01/02`` or yyyymmdd) and any
of ``cash bonus rights rights_price split factor``, named exactly so (case and surrounding
blanks aside); any other column is refused. Every number is **per share**, as
:mod:`kdist.actions` defines them (divide the per-10-shares figures of A-share vendors by
10): ``cash`` dividend and ``rights_price`` in the bars' currency, ``bonus`` and ``rights``
shares received per share, ``split`` shares after per share before, ``factor`` the vendor's
cumulative back-adjustment factor from ``ex_date`` on (``hfq = raw * factor``). An empty
cell is no such event (no factor: kdist computes it from the raw closes with the formula in
:mod:`kdist.actions`). A symbol without the file has no corporate actions (an empty frame).
"""

from __future__ import annotations

import codecs
import re
import string
from pathlib import Path, PurePosixPath
from typing import ClassVar

import pandas as pd

from .. import securities
from ..actions import COLUMNS as ACTION_COLUMNS
from ..actions import empty_actions
from ..errors import (
    InvalidOptionError,
    InvalidSymbolError,
    PermanentProviderError,
    SymbolNotFoundError,
    did_you_mean,
)
from ..schema import BAR_COLUMNS, Adjust, Freq, normalise_symbol
from ..securities import Kind
from .base import (
    Option,
    Provider,
    directory_option,
    file_inside,
    missing_file,
    one_line,
    required_option,
)
from .tdx_export import (
    TdxExport,
    check_title,
    header_key,
    parse_numbers,
    parse_tdx_export,
    read_tdx_export,
)

__all__ = ["CSVProvider", "ParquetProvider"]

#: Header names recognised per canonical column, compared stripped, lower-cased and without a
#: trailing unit in brackets ("成交量(手)"). Order is priority: a file with both ``datetime``
#: and ``date`` uses ``datetime``.
_ALIASES: dict[str, tuple[str, ...]] = {
    "ts": (
        "ts", "datetime", "timestamp", "trade_date", "date", "交易日期", "日期", "time", "时间",
        # pandas' name for an unnamed index written to Parquet.
        "__index_level_0__",
    ),
    "open": ("open", "开盘", "开盘价"),
    "high": ("high", "最高", "最高价"),
    "low": ("low", "最低", "最低价"),
    "close": ("close", "收盘", "收盘价"),
    "volume": ("volume", "vol", "成交量"),
    "amount": ("amount", "turnover", "value", "成交额", "成交金额"),
}
_REQUIRED = ("ts", "open", "high", "low", "close")
_DATE_ONLY = {"trade_date", "date", "交易日期", "日期"}
_TIME_ONLY = {"time", "时间"}
_FIELDS = {"symbol", "code", "exchange"}
_GLOB_SPECIAL = re.compile(r"([*?\[])")
#: A literal exchange just before {code} in a pattern: "SH#{code}.txt", "sh/{code}.csv".
_PINNED = re.compile(r"(?:^|[^A-Za-z])(SH|SZ|BJ)[#._/-]?$", re.IGNORECASE)
_VOLUME_UNITS = ("auto", "shares", "lots")
#: The columns of an actions file besides ``ex_date``: kdist.actions' names, per share.
_ACTION_NUMBERS = ACTION_COLUMNS[1:]
_FORMATS = ("auto", "csv", "tdx")

#: Bars of a qfq (hfq) export equal the traded prices only at its end (start): judge the
#: volume unit by the amounts of that many bars there.
_UNIT_SAMPLE = 20


def _fields(symbol: str) -> dict[str, str]:
    """Pattern fields of a canonical symbol.

    ``000001.SZ`` -> code ``000001``, exchange ``SZ``; ``0700.HK`` -> ``0700``, ``HK``;
    ``AAPL`` -> ``AAPL``, ``""``.
    """
    if parts := securities.split_symbol(symbol):
        return {"symbol": symbol, "code": parts[0], "exchange": parts[1]}
    code, dot, exchange = symbol.rpartition(".")
    if not dot:
        code, exchange = symbol, ""
    return {"symbol": symbol, "code": code, "exchange": exchange}


def _glob_and_regex(pattern: str) -> tuple[str, re.Pattern]:
    """The glob that finds a pattern's files, and the regex whose groups name the fields."""
    glob, regex, seen = [], [], set()
    for literal, field, _, _ in string.Formatter().parse(pattern):
        glob.append(_GLOB_SPECIAL.sub(r"[\1]", literal))
        regex.append(re.escape(literal))
        if field is not None:
            glob.append("*")
            group = "[A-Za-z]*" if field == "exchange" else "[^/]+"
            regex.append(f"(?P={field})" if field in seen else f"(?P<{field}>{group})")
            seen.add(field)
    return "".join(glob), re.compile("".join(regex))


def _pinned_exchange(pattern: str) -> str | None:
    """The exchange a literal before ``{code}`` names ("SH#{code}.txt" -> "SH"), or None."""
    literal = ""
    for text, field, _, _ in string.Formatter().parse(pattern):
        literal += text
        if field == "code":
            m = _PINNED.search(literal)
            return m.group(1).upper() if m else None
        if field is not None:
            return None  # {symbol} or {exchange} already names the exchange
    return None


def _lot(symbol: str) -> float:
    """Units in one 手 of ``symbol``: 10 bonds for bonds and repo, else 100 shares."""
    parts = securities.split_symbol(symbol)
    kind = securities.kind_of_code(*parts) if parts else None
    return 10.0 if kind in (Kind.BOND, Kind.REPO) else 100.0


def _unreadable(path: Path, symbol: str, exc: BaseException, as_: str = ""):
    """The error for a file that cannot be read (``as_``: "CSV", "Parquet", or "" for bytes)."""
    how = f" as {as_}" if as_ else ""
    return PermanentProviderError(
        f"Cannot read {path}{how}: {one_line(exc)}", symbol=symbol, path=str(path),
    )


def _undecodable(path: Path, symbol: str, encoding: str, exc: UnicodeDecodeError):
    return PermanentProviderError(
        f"Cannot decode {path} as {encoding} ({exc.reason} at byte {exc.start}); "
        "set the encoding option to the file's encoding (gbk for Chinese exports)",
        symbol=symbol,
        path=str(path),
    )


def _parse_ts(values: pd.Series) -> pd.Series:
    """Parse a date column: datetimes, ISO-like strings or yyyymmdd numbers; tz dropped.

    Unparseable values become NaT. tz-aware values keep their wall time, as
    :func:`kdist.schema.normalise` does for a provider without a time zone.
    """
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_localize(None)
    if pd.api.types.is_datetime64_dtype(values):
        return values
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        # yyyymmdd integers; a float column means the CSV had an empty date cell. Fractions
        # and inf are no dates: NaT, as kdist.schema reads them.
        days = pd.to_numeric(values, errors="coerce").astype("float64")
        text = days.where(days % 1 == 0).astype("Int64").astype("str")
        return pd.to_datetime(text, format="%Y%m%d", errors="coerce")
    try:
        ts = pd.to_datetime(values, format="ISO8601", errors="coerce")
    except ValueError:
        # Mixed UTC offsets (a file across a daylight-saving change): each row's wall time
        # is its exchange-local time, so drop the offsets rather than convert to one zone.
        values = values.astype("str").str.replace(r"(Z|[+-]\d{2}:?\d{2})$", "", regex=True)
        ts = pd.to_datetime(values, format="ISO8601", errors="coerce")
    if isinstance(ts.dtype, pd.DatetimeTZDtype):
        ts = ts.dt.tz_localize(None)
    # Re-parse only the failures element by element: the fast path covers the usual file.
    retry = ts.isna() & values.notna()
    if retry.any():
        again = pd.to_datetime(values[retry], format="mixed", errors="coerce")
        if isinstance(again.dtype, pd.DatetimeTZDtype):
            again = again.dt.tz_localize(None)
        ts = ts.astype("datetime64[us]")
        ts[retry] = again.astype("datetime64[us]")
    return ts


class _FileProvider(Provider):
    """Shared logic of the file providers; subclasses implement :meth:`_header` and :meth:`_read`.

    Parameters
    ----------
    root : str
        Directory holding one file per symbol. Required; it must exist.
    pattern : str
        File name relative to ``root``: ``{symbol}`` is the canonical symbol (``000001.SZ``,
        ``AAPL``), ``{code}`` the symbol without its suffix (``000001``, ``AAPL``) and
        ``{exchange}`` the suffix (``SZ``, ``""``). ``auto`` (the default) tries the
        provider's usual names (CSV: ``{symbol}.csv``, then TDX's ``{exchange}#{code}.txt``
        and ``{exchange}#{code}.csv``).
    columns : dict or str, optional
        Canonical name -> file column, e.g. ``{"ts": "日期", "close": "收盘"}`` or the CLI form
        ``"ts:日期,close:收盘"``. Columns not given are detected from common headers.
    volume_unit : {"auto", "shares", "lots"}
        ``"lots"`` counts 手: 100 shares, or 10 bonds for bonds and repo. ``"auto"`` keeps a
        plain file's volume and judges a TDX export's unit by its amounts.
    actions_pattern : str
        File of a symbol's corporate actions under ``root``, with the fields of ``pattern``
        (e.g. ``actions/{symbol}.csv``); ``""`` (the default): the provider serves none.
        Columns ``ex_date`` and any of ``cash bonus rights rights_price split factor``, per
        share (see the module's docstring). A symbol without the file has none.
    """

    #: File suffix in the default pattern and in messages.
    suffix: ClassVar[str] = ""
    #: File names ``pattern="auto"`` tries, in order.
    auto_patterns: ClassVar[tuple[str, ...]] = ()
    remote = False  # local files: a small job runs in the client's process
    bar_time = None  # the files' own convention: kdist check --gaps tells it from the bars
    freqs = tuple(Freq)
    horizons = {}  # the user's files: no vendor window
    # kdist adjusts nothing: the caller's adjust says what the files hold (a TDX export's
    # title is checked against it).
    adjusts = tuple(Adjust)
    # File names are the user's: any ticker suffix (stooq's aapl.us), and TDX's own codes.
    symbol_suffixes = None
    tdx_codes = True
    options: ClassVar[dict[str, Option]] = {
        "root": Option(str, None, "directory with one file per symbol (required)"),
        "pattern": Option(str, "auto", "file name under root; {symbol}, {code}, {exchange}"),
        "columns": Option(
            dict, None, "canonical:file column pairs, e.g. ts:日期,close:收盘 (default: detect)"
        ),
        "volume_unit": Option(
            str, "auto", "auto, shares, or lots (手: x100, x10 for bonds); auto reads TDX "
            "exports' unit from their amounts"
        ),
        "actions_pattern": Option(
            str, "", "corporate actions file under root, e.g. actions/{symbol}.csv: ex_date, "
            "cash bonus rights rights_price split factor, per share (default: none)"
        ),
    }

    def __init__(self, **options):
        super().__init__(**options)
        self._resolved_root: Path | None = None
        required_option(self, "root", f"the directory with one {self.suffix} file per symbol "
                        "(e.g. --option root=data/bars)")
        self._check_pattern()
        if self.actions_pattern:
            self._check_pattern("actions_pattern")
            if self.actions_pattern in self._patterns:
                raise InvalidOptionError(
                    f"Option actions_pattern={self.actions_pattern!r} of provider "
                    f"{self.name!r} names the bar files; name another file, e.g. "
                    "actions/{symbol}" + self.suffix,
                    option="actions_pattern",
                    value=self.actions_pattern,
                )
        self._columns = self._check_columns()
        if self.volume_unit not in _VOLUME_UNITS:
            raise InvalidOptionError(
                f"Option volume_unit={self.volume_unit!r} of provider {self.name!r} is not "
                "auto, shares or lots; use lots when the file counts 手 (100 shares)",
                option="volume_unit",
                value=self.volume_unit,
            )

    # -- option checks (on construction, so the client refuses a bad job before any work) --

    @property
    def _root(self) -> Path:
        # Resolved lazily, not on construction: a provider unpickled on a remote worker must
        # find the directory there, and a client that only submits need not have it.
        if self._resolved_root is None:
            self._resolved_root = self._check_root()
        return self._resolved_root

    @property
    def _patterns(self) -> tuple[str, ...]:
        return self.auto_patterns if self.pattern == "auto" else (self.pattern,)

    def check(self, **request):
        """Refuse the job up front when root is missing here (see :meth:`Provider.check`)."""
        super().check(**request)
        self._root

    def _check_root(self) -> Path:
        return directory_option(self, "root", f"one {self.suffix} file per symbol")

    def _check_pattern(self, key: str = "pattern"):
        value = self.config[key]
        if key == "pattern" and value == "auto":
            return
        example = (f"'actions/{{symbol}}{self.suffix}'" if key == "actions_pattern" else
                   f"'{{symbol}}{self.suffix}' or '{{exchange}}#{{code}}.txt'")
        try:
            parsed = list(string.Formatter().parse(value or ""))
        except ValueError as exc:
            raise InvalidOptionError(
                f"Option {key}={value!r} of provider {self.name!r} is not a valid "
                f"format string ({exc}); write e.g. {example}",
                option=key,
                value=value,
            ) from None
        fields = [(f, spec, conv) for _, f, spec, conv in parsed if f is not None]
        # Only bare fields: "{symbol.__class__}" would reach into Python objects.
        bad = [f for f, spec, conv in fields if f not in _FIELDS or spec or conv]
        names = {f for f, _, _ in fields}
        if bad or not names & {"symbol", "code"}:
            problem = f"has field {{{bad[0]}}}" if bad else "names no symbol"
            raise InvalidOptionError(
                f"Option {key}={value!r} of provider {self.name!r} {problem}; use "
                f"{{symbol}} (000001.SZ, AAPL), {{code}} (000001, AAPL) and {{exchange}} "
                f"(SZ), e.g. {example}",
                option=key,
                value=value,
            )

    def _check_columns(self) -> dict[str, str]:
        given = self.columns or {}
        mapping = {}
        for key, column in given.items():
            canonical = "ts" if str(key).strip().lower() == "date" else str(key).strip().lower()
            if canonical not in _ALIASES or not isinstance(column, str) or not column.strip():
                raise InvalidOptionError(
                    f"Option columns of provider {self.name!r} has the bad pair "
                    f"{key!r}:{column!r}; keys are {', '.join(BAR_COLUMNS)} and values "
                    "file column names, e.g. ts:日期,close:收盘",
                    option="columns",
                    value=given,
                )
            mapping[canonical] = column.strip()
        return mapping

    # -- paths ----------------------------------------------------------------------------

    def _resolve(self, symbol: str, pattern: str, key: str = "pattern") -> Path:
        """Return the file ``pattern`` (option ``key``'s) names for ``symbol``, resolved;
        refuse paths out of root."""
        candidate = self._root / pattern.format(**_fields(symbol))
        what = "the actions file" if key == "actions_pattern" else "the file"
        return file_inside(
            candidate, self._root, symbol=symbol, what=what,
            hint=f"files must be inside root (check {key}={self.config[key]!r} and symlinks)",
        )

    def _path(self, symbol: str) -> Path:
        """Return the file of ``symbol``: the first of the patterns' paths that exists.

        Raises
        ------
        SymbolNotFoundError
            None exists (the message names them), or every pattern pins another exchange
            ("SH#{code}.txt" for a Shenzhen symbol).
        """
        tried: list[Path] = []
        parts = securities.split_symbol(symbol)
        for pattern in self._patterns:
            pinned = _pinned_exchange(pattern)
            if pinned is not None and (parts is None or parts[1] != pinned):
                continue  # "SH#{code}.txt" holds Shanghai files: not 000001.SZ's
            path = self._resolve(symbol, pattern)
            if path.exists():
                return path
            tried.append(path)
        if not tried:
            where = securities.EXCHANGE_NAMES.get(_pinned_exchange(self.pattern) or "", "")
            raise SymbolNotFoundError(
                f"No file for symbol {symbol}: pattern={self.pattern!r} names {where} files "
                "only; write {exchange} in the pattern for files of every exchange",
                symbol=symbol,
            )
        raise missing_file(
            symbol, tried, f"file for symbol {symbol}",
            f"check the symbol, root={self.root!r} and pattern={self.pattern!r}",
        )

    # -- the contract ---------------------------------------------------------------------

    def _symbol(self, symbol) -> str:
        """``symbol`` canonical among the symbols this provider accepts (any suffix)."""
        return normalise_symbol(symbol, provider=self)

    def _fetch(self, symbol, start, end, freq, adjust) -> pd.DataFrame:
        """Return the file's bars of ``symbol`` stamped in ``[start, end]`` (dates inclusive).

        ``adjust`` declares what the file holds; a TDX export's title must agree with it.
        See :meth:`Provider.fetch`, which parses the arguments and calls this.

        Returns
        -------
        pandas.DataFrame
            ``ts`` (datetime64), ``open high low close`` and ``volume``/``amount`` when the
            file has them, as read (:func:`kdist.schema.normalise` coerces the dtypes).

        Raises
        ------
        SymbolNotFoundError
            No file for ``symbol``; the message names the paths tried.
        PermanentProviderError
            The path leaves the root, the file cannot be read or mapped, or a TDX export's
            title names another code, period or adjustment than asked for.
        InvalidSymbolError
            ``symbol`` is not a symbol at all.
        """
        path = self._path(symbol)
        if not path.is_file():
            raise PermanentProviderError(
                f"The file of {symbol}, {path}, is not a regular file", symbol=symbol,
                path=str(path),
            )
        export = self._tdx_export(path, symbol)
        if export is not None:
            frame = self._read_tdx_export(export, path, symbol, freq, adjust)
        else:
            frame = self._read_plain(path, symbol, freq)
        # The unit is judged on the whole file, so every window of it gets the same one.
        factor = self._volume_factor(symbol, frame, export, adjust) if "volume" in frame else 1
        # NaT rows (a footer such as "数据来源:通达信") belong to no window: drop them here,
        # or they would turn every otherwise empty window into a rejected-rows failure.
        stop = end + pd.Timedelta(days=1)
        keep = ((frame["ts"] >= start) & (frame["ts"] < stop)).to_numpy()
        frame = frame[keep].reset_index(drop=True)
        if factor != 1:
            frame["volume"] = parse_numbers(frame["volume"]) * factor
        return frame

    def _read_plain(self, path: Path, symbol: str, freq: Freq) -> pd.DataFrame:
        """Read a file with a header row, columns mapped or detected; ``ts`` parsed."""
        mapping = self._map_columns(self._header(path, symbol), path, symbol, freq)
        raw = self._read(path, symbol, list(dict.fromkeys(mapping.values())))
        # One frame per canonical name: the same file column may serve two of them.
        frame = pd.DataFrame({name: raw[column] for name, column in mapping.items()})
        try:
            ts = _parse_ts(frame["ts"])
        except (ValueError, TypeError, OverflowError) as exc:
            raise PermanentProviderError(
                f"Cannot parse the dates in column {mapping['ts']!r} of {path}: "
                f"{one_line(exc)}; map ts to the date column with columns=ts:<name>",
                symbol=symbol,
                path=str(path),
            ) from exc
        if len(ts) and ts.isna().all():
            raise PermanentProviderError(
                f"Column {mapping['ts']!r} of {path} holds no readable dates (first value "
                f"{frame['ts'].iloc[0]!r}); map ts to the date column with columns=ts:<name>",
                symbol=symbol,
                path=str(path),
            )
        return frame.assign(ts=ts.astype("datetime64[us]"))

    # -- corporate actions ----------------------------------------------------------------

    @property
    def serves_actions(self) -> bool:
        """Whether option ``actions_pattern`` names a file of corporate actions per symbol."""
        return bool(self.actions_pattern)

    def _actions(self, symbol, start, end) -> pd.DataFrame:
        """Return the rows of ``symbol``'s actions file with ex-dates in ``[start, end]``.

        See :meth:`Provider.actions`; the columns and their units are in the module's
        docstring. A symbol without the file has none: an empty frame.

        Raises
        ------
        PermanentProviderError
            The path leaves the root, or the file cannot be read, has no ``ex_date`` column,
            a column that is not an action's, a date or a number that is none; the message
            names the file (and the column).
        """
        path = self._resolve(symbol, self.actions_pattern, "actions_pattern")
        if not path.exists():
            return empty_actions()
        if not path.is_file():
            raise PermanentProviderError(
                f"The actions file of {symbol}, {path}, is not a regular file", symbol=symbol,
                path=str(path),
            )
        mapping = self._action_columns(self._header(path, symbol), path, symbol)
        raw = self._read(path, symbol, list(mapping.values()))
        frame = pd.DataFrame({name: raw[column] for name, column in mapping.items()})
        frame["ex_date"] = self._action_dates(frame["ex_date"], path, symbol)
        for name in [n for n in mapping if n != "ex_date"]:
            frame[name] = self._action_numbers(frame[name], path, symbol, name)
        day = frame["ex_date"].dt.normalize()
        keep = ((day >= start) & (day < end + pd.Timedelta(days=1))).to_numpy()
        return frame[keep].reset_index(drop=True)

    def _action_columns(self, header: list, path: Path, symbol: str) -> dict[str, str]:
        """Return action column -> file column; refuse unknown or repeated names."""
        mapping: dict[str, str] = {}
        for column in header:
            name = str(column).strip().lower()
            if name not in ACTION_COLUMNS or name in mapping:
                why = ("twice" if name in mapping else
                       f"that kdist does not know{did_you_mean(name, ACTION_COLUMNS)}")
                raise PermanentProviderError(
                    f"{path} has the column {column!r} {why}; an actions file has ex_date "
                    f"and any of {' '.join(_ACTION_NUMBERS)}, per share",
                    symbol=symbol, path=str(path),
                )
            mapping[name] = column
        if "ex_date" not in mapping:
            raise PermanentProviderError(
                f"{path} has no ex_date column (its columns are "
                f"{', '.join(map(str, header)) or 'none'}); an actions file has ex_date and "
                f"any of {' '.join(_ACTION_NUMBERS)}, per share",
                symbol=symbol, path=str(path),
            )
        return mapping

    @staticmethod
    def _action_dates(values: pd.Series, path: Path, symbol: str) -> pd.Series:
        try:
            dates = _parse_ts(values)
        except (ValueError, TypeError, OverflowError):
            dates = pd.Series(pd.NaT, index=values.index, dtype="datetime64[us]")
        if dates.isna().any():
            at = int(dates.isna().to_numpy().nonzero()[0][0])
            raise PermanentProviderError(
                f"Row {at + 1} of {path} has ex_date {values.iat[at]!r}, which is no date; "
                "write dates as 2024-06-14 or 20240614",
                symbol=symbol, path=str(path),
            )
        return dates.astype("datetime64[us]")

    @staticmethod
    def _action_numbers(values: pd.Series, path: Path, symbol: str, name: str) -> pd.Series:
        numbers = pd.to_numeric(values, errors="coerce").astype("float64")
        given = values.notna() & (values.astype("str").str.strip() != "")
        bad = (numbers.isna() & given).to_numpy()
        if bad.any():
            at = int(bad.nonzero()[0][0])
            raise PermanentProviderError(
                f"Row {at + 1} of {path} has {name} {values.iat[at]!r}, which is no number; "
                "leave the cell empty for no such event",
                symbol=symbol, path=str(path),
            )
        return numbers

    def _volume_factor(self, symbol: str, frame: pd.DataFrame, export, adjust: Adjust) -> float:
        """What the file's volume is multiplied by to count shares (bonds for bonds)."""
        if self.volume_unit == "shares":
            return 1.0
        if self.volume_unit == "lots":
            return _lot(symbol)
        if export is None:
            return 1.0  # a plain file: as written, unless the user says lots
        unit = export.header_volume_unit
        if unit in ("股", "份", "张"):
            return 1.0
        if unit == "手":
            return _lot(symbol)
        parts = securities.split_symbol(symbol)
        kind = securities.kind_of_code(*parts) if parts else None
        # Without amounts to judge by: TDX's own unit for the kind (its .day files' unit).
        default = securities.tdx_units(kind, parts[1]).volume_factor if kind else 1
        if "amount" not in frame or len(frame) == 0:
            return float(default)
        # Adjusted prices are traded prices only where the adjustment is anchored.
        sample = frame.iloc[-_UNIT_SAMPLE:] if adjust is Adjust.QFQ else (
            frame.iloc[:_UNIT_SAMPLE] if adjust is Adjust.HFQ else frame)
        return float(securities.volume_factor_from_amount(
            kind, parse_numbers(sample["close"]), parse_numbers(sample["volume"]),
            parse_numbers(sample["amount"]), default,
        ))

    def list_symbols(self) -> list[str]:
        """Return the canonical symbols of the files under root that match the pattern(s).

        Files whose name is not a symbol's file name (canonical, in a valid range), and
        symlinks out of the root, are skipped.

        Raises
        ------
        PermanentProviderError
            The pattern's directory is outside the root.
        """
        found: set[str] = set()
        for pattern in self._patterns:
            found |= self._list(pattern)
        return sorted(found)

    def _list(self, pattern: str) -> set[str]:
        # "./{symbol}.csv" and "{symbol}.csv" name the same files; glob yields the latter.
        pattern = PurePosixPath(pattern).as_posix()
        fixed = []
        for part in PurePosixPath(pattern).parts[:-1]:
            if "{" in part:
                break
            fixed.append(part)
        base = self._root.joinpath(*fixed).resolve()
        if not base.is_relative_to(self._root) or PurePosixPath(pattern).is_absolute():
            raise PermanentProviderError(
                f"Refused to list {base}: it is outside root {self._root}; "
                f"fix pattern={self.pattern!r}",
                path=str(base),
            )
        pinned = _pinned_exchange(pattern)
        glob, matcher = _glob_and_regex(pattern)
        # An actions file that the bar pattern's glob also finds is no symbol's bars.
        actions = (_glob_and_regex(PurePosixPath(self.actions_pattern).as_posix())[1]
                   if self.actions_pattern else None)
        found = set()
        for path in self._root.glob(glob):
            rel = path.relative_to(self._root).as_posix()
            m = matcher.fullmatch(rel)
            if not m or (actions is not None and actions.fullmatch(rel)):
                continue
            groups = m.groupdict()
            if groups.get("symbol"):
                name = groups["symbol"]
            else:
                exchange = groups.get("exchange") or pinned
                name = f"{groups['code']}.{exchange}" if exchange else groups["code"]
            try:
                symbol = normalise_symbol(name, provider=self)
            except InvalidSymbolError:
                continue
            # Only names fetch() would build: "000001.sz.csv" is not the file of 000001.SZ.
            if PurePosixPath(pattern.format(**_fields(symbol))).as_posix() != rel:
                continue
            if path.is_file() and path.resolve().is_relative_to(self._root):
                found.add(symbol)
        return found

    # -- columns --------------------------------------------------------------------------


    def _map_columns(self, header: list[str], path: Path, symbol: str, freq: Freq) -> dict:
        """Return canonical name -> file column for the columns this file has."""
        by_key: dict[str, str] = {}
        for column in header:
            by_key.setdefault(header_key(column), column)
        mapping = {}
        for name, column in self._columns.items():
            found = column if column in header else by_key.get(header_key(column))
            if found is None:
                raise PermanentProviderError(
                    f"{path} has no column {column!r} (mapped to {name}); its columns are "
                    f"{', '.join(map(str, header))}; fix the columns option",
                    symbol=symbol,
                    path=str(path),
                )
            mapping[name] = found
        for name, aliases in _ALIASES.items():
            if name in mapping:
                continue
            hit = next((a for a in aliases if a in by_key), None)
            if hit is not None:
                mapping[name] = by_key[hit]
                if name == "ts" and freq.intraday and hit in _DATE_ONLY:
                    # Separate date and time columns would stamp every minute bar at
                    # midnight and collapse a day into one row: refuse rather than guess.
                    time = next((by_key[t] for t in _TIME_ONLY if t in by_key), None)
                    if time is not None:
                        raise PermanentProviderError(
                            f"{path} has separate date ({by_key[hit]!r}) and time ({time!r}) "
                            f"columns; {freq.value} bars need one timestamp column: combine "
                            "them, or map ts to a column holding both (columns=ts:<name>)",
                            symbol=symbol,
                            path=str(path),
                        )
        missing = [name for name in _REQUIRED if name not in mapping]
        if missing:
            raise PermanentProviderError(
                f"{path} has no {', '.join(missing)} column (its columns are "
                f"{', '.join(map(str, header))}); name them with the columns option, "
                "e.g. ts:日期,open:开盘,high:最高,low:最低,close:收盘",
                symbol=symbol,
                path=str(path),
            )
        return {name: mapping[name] for name in BAR_COLUMNS if name in mapping}

    # -- the reading seam -----------------------------------------------------------------

    def _tdx_export(self, path: Path, symbol: str) -> TdxExport | None:
        """Return the file as a TDX export when it is one, else None (plain files)."""
        return None

    def _read_tdx_export(self, export, path, symbol, freq, adjust) -> pd.DataFrame:
        raise NotImplementedError

    def _header(self, path: Path, symbol: str) -> list[str]:
        """Return the file's column names."""
        raise NotImplementedError

    def _read(self, path: Path, symbol: str, columns: list[str]) -> pd.DataFrame:
        """Return ``columns`` of the file, every row."""
        raise NotImplementedError


class CSVProvider(_FileProvider):
    """Bars from local CSV files, one per symbol (``<SYMBOL>.csv``), any encoding.

    Takes the options of the file providers (``root``, ``pattern``, ``columns``,
    ``volume_unit``), ``encoding`` (default ``"utf-8"``; ``"gbk"`` for most Chinese exports,
    and TDX exports, which TDX writes in GBK, are read as GBK when they are not UTF-8) and
    ``format``: ``auto`` (TDX "数据导出" files are recognised by their title line), ``csv``
    (always a plain header row) or ``tdx`` (always a TDX export, title line optional).
    Dates may be ISO strings, ``2024/01/02``, yyyymmdd integers or date-times; day-first
    forms such as ``02.01.2024`` are read month-first.

    Examples
    --------
    >>> from kdist.providers import get_provider
    >>> p = get_provider("csv", root="exports", encoding="gbk")  # doctest: +SKIP
    >>> p.fetch("000001.SZ", "2024-01-02", "2024-01-31").columns.tolist()  # doctest: +SKIP
    ['ts', 'open', 'high', 'low', 'close', 'volume', 'amount']
    """

    name = "csv"
    suffix = ".csv"
    description = (
        "Local CSV files, one per symbol (<SYMBOL>.csv), and TDX exports (SH#600000.txt)"
    )
    auto_patterns = ("{symbol}.csv", "{exchange}#{code}.txt", "{exchange}#{code}.csv")
    options = {
        **_FileProvider.options,
        "pattern": Option(
            str, "auto", "file name under root with {symbol}, {code}, {exchange}; auto: "
            "{symbol}.csv or TDX's {exchange}#{code}.txt"
        ),
        "encoding": Option(str, "utf-8", "text encoding of the files; gbk for Chinese exports"),
        "format": Option(str, "auto", "auto, csv, or tdx (TDX 数据导出 files: title line, "
                         "Chinese header, footer)"),
    }

    def __init__(self, **options):
        super().__init__(**options)
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise InvalidOptionError(
                f"Option encoding={self.encoding!r} of provider 'csv' is not a known "
                "encoding; use e.g. utf-8 or gbk",
                option="encoding",
                value=self.encoding,
            ) from None
        if self.format not in _FORMATS:
            raise InvalidOptionError(
                f"Option format={self.format!r} of provider 'csv' is not one of "
                f"{', '.join(_FORMATS)}; use tdx for 通达信 数据导出 files",
                option="format",
                value=self.format,
            )

    # -- TDX exports ----------------------------------------------------------------------

    def _decode(self, data: bytes, path: Path, symbol: str, export_only: bool) -> str | None:
        """Decode ``data`` with the encoding option, or as GBK for a TDX export that is not
        UTF-8 (TDX writes nothing else). None when ``export_only`` and the text is no export.
        """
        try:
            return data.decode(self.encoding)
        except UnicodeDecodeError as exc:
            utf8 = codecs.lookup(self.encoding).name == "utf-8"
            if utf8:
                try:
                    text = data.decode("gb18030")
                except UnicodeDecodeError:
                    text = None
                if text is not None and parse_tdx_export(text, self.format == "tdx"):
                    return text
            if export_only:
                return None
            raise _undecodable(path, symbol, self.encoding, exc) from exc

    def _tdx_export(self, path, symbol):
        if self.format == "csv":
            return None
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise _unreadable(path, symbol, exc) from exc
        # A plain CSV's decoding errors are pandas' to report, as before.
        text = self._decode(data, path, symbol, export_only=self.format != "tdx")
        export = None if text is None else parse_tdx_export(text, self.format == "tdx")
        if export is None and self.format == "tdx":
            raise PermanentProviderError(
                f"{path} is not a TDX export: no header line with 日期 (Date) near its top; "
                "export it with TDX's 数据导出, or use format=csv",
                symbol=symbol,
                path=str(path),
            )
        return export

    def _read_tdx_export(self, export, path, symbol, freq, adjust) -> pd.DataFrame:
        """The bars of a TDX export, its title checked against the request; ``ts`` parsed."""
        check_title(export, path, symbol, _fields(symbol)["code"], freq, adjust)
        return read_tdx_export(export, path, symbol, freq)

    def _read_csv(self, path: Path, symbol: str, **kwargs) -> pd.DataFrame:
        try:
            # index_col=False: a trailing comma on each row must not shift columns to an index.
            return pd.read_csv(path, encoding=self.encoding, index_col=False, **kwargs)
        except UnicodeDecodeError as exc:
            raise _undecodable(path, symbol, self.encoding, exc) from exc
        except pd.errors.EmptyDataError as exc:
            raise PermanentProviderError(
                f"{path} is empty (no header row); re-export it or remove it",
                symbol=symbol,
                path=str(path),
            ) from exc
        except (OSError, ValueError) as exc:  # pandas' ParserError is a ValueError
            raise _unreadable(path, symbol, exc, "CSV") from exc

    def _header(self, path, symbol):
        return list(self._read_csv(path, symbol, nrows=0).columns)

    def _read(self, path, symbol, columns):
        return self._read_csv(path, symbol, usecols=columns)

    def version(self) -> str:
        """pandas' version: the files are read with it."""
        return pd.__version__


class ParquetProvider(_FileProvider):
    """Bars from local Parquet files, one per symbol (``<SYMBOL>.parquet``).

    A pandas index written to the file (``df.set_index("date").to_parquet(...)``) is read
    as an ordinary column.
    """

    name = "parquet"
    suffix = ".parquet"
    description = (
        "Local Parquet files, one per symbol (<SYMBOL>.parquet); columns mapped or detected"
    )
    requires = ("pyarrow",)
    auto_patterns = ("{symbol}.parquet",)
    options = {
        **_FileProvider.options,
        "pattern": Option(
            str, "auto", "file name under root with {symbol}, {code}, {exchange}; auto: "
            "{symbol}.parquet"
        ),
    }

    def _arrow(self, path: Path, symbol: str, read):
        import pyarrow as pa

        try:
            return read()
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise _unreadable(path, symbol, exc, "Parquet") from exc

    def _header(self, path, symbol):
        import pyarrow.parquet as pq

        return list(self._arrow(path, symbol, lambda: pq.read_schema(path)).names)

    def _read(self, path, symbol, columns):
        import pyarrow.parquet as pq

        # ignore_metadata: a stored pandas index comes back as a column, not as the index.
        return self._arrow(
            path,
            symbol,
            lambda: pq.read_table(path, columns=columns).to_pandas(ignore_metadata=True),
        )
