"""Providers that read bars from local files: one CSV or Parquet file per symbol under a root.

``CSVProvider`` ("csv") and ``ParquetProvider`` ("parquet") share everything but the reading
seam: a file is found from its symbol by a ``pattern`` (``{symbol}`` is the canonical symbol,
``{code}`` the six digits of an A-share or a ticker without its exchange suffix), every path
is resolved and refused unless it stays inside the resolved ``root`` (no ``../``, absolute
patterns or symlinks out), and the file's columns are mapped to the canonical ``ts open high
low close volume amount`` by the ``columns`` option or detected from common English and
Chinese headers. Only the mapped columns are read; rows outside the requested window are
dropped; ``volume_unit="lots"`` turns lots (手) into shares. Everything else - dtypes, OHLC
checks, sorting, duplicates - is :func:`kdist.schema.normalise`'s work in the runner. The
files are what they are: no adjustment is offered and the frequency is the caller's word.
"""

from __future__ import annotations

import codecs
import re
import string
from pathlib import Path, PurePosixPath
from typing import ClassVar

import pandas as pd

from ..errors import (
    InvalidOptionError,
    InvalidSymbolError,
    PermanentProviderError,
    SymbolNotFoundError,
)
from ..schema import BAR_COLUMNS, Adjust, Freq, normalise_symbol, to_date
from .base import Option, Provider, directory_option

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
_FIELDS = {"symbol", "code"}
_ASHARE = re.compile(r"^(\d{6})\.(SH|SZ|BJ)$", re.ASCII)
_UNIT_SUFFIX = re.compile(r"\s*[(（][^()（）]*[)）]$")
_GLOB_SPECIAL = re.compile(r"([*?\[])")


def _key(name) -> str:
    """Comparable form of a header: stripped, BOM-free, lower-case, without a unit suffix."""
    text = str(name).strip().lstrip("\ufeff").strip().lower()
    return _UNIT_SUFFIX.sub("", text) or text


def _code(symbol: str) -> str:
    """``000001.SZ`` -> ``000001``; ``0700.HK`` -> ``0700``; ``AAPL`` -> ``AAPL``."""
    if m := _ASHARE.match(symbol):
        return m.group(1)
    return symbol.rpartition(".")[0] or symbol


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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
        File name relative to ``root``; ``{symbol}`` is the canonical symbol (``000001.SZ``,
        ``AAPL``) and ``{code}`` the symbol without exchange suffix (``000001``, ``AAPL``).
    columns : dict or str, optional
        Canonical name -> file column, e.g. ``{"ts": "日期", "close": "收盘"}`` or the CLI form
        ``"ts:日期,close:收盘"``. Columns not given are detected from common headers.
    volume_unit : {"shares", "lots"}
        ``"lots"`` multiplies volume by 100 (Chinese exports often count 手).
    """

    #: File suffix in the default pattern and in messages.
    suffix: ClassVar[str] = ""
    remote = False  # local files: a small job runs in the client's process
    freqs = tuple(Freq)
    # The files hold whatever prices they hold; kdist cannot adjust them.
    adjusts = (Adjust.NONE,)
    options: ClassVar[dict[str, Option]] = {
        "root": Option(str, None, "directory with one file per symbol (required)"),
        "pattern": Option(str, "{symbol}", "file name under root; {symbol} or {code}"),
        "columns": Option(
            dict, None, "canonical:file column pairs, e.g. ts:日期,close:收盘 (default: detect)"
        ),
        "volume_unit": Option(str, "shares", "shares, or lots (x100) for exports in 手"),
    }

    def __init__(self, **options):
        super().__init__(**options)
        self._resolved_root: Path | None = None
        if not self.root:
            raise InvalidOptionError(
                f"Provider {self.name!r} needs option root: the directory with one "
                f"{self.suffix} file per symbol (e.g. --option root=data/bars)",
                option="root",
            )
        self._check_pattern()
        self._columns = self._check_columns()
        if self.volume_unit not in ("shares", "lots"):
            raise InvalidOptionError(
                f"Option volume_unit={self.volume_unit!r} of provider {self.name!r} is not "
                "'shares' or 'lots'; use lots when the file counts 手 (100 shares)",
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

    def check(self, **request):
        """Refuse the job up front when root is missing here (see :meth:`Provider.check`)."""
        super().check(**request)
        self._root

    def _check_root(self) -> Path:
        return directory_option(self, "root", f"one {self.suffix} file per symbol")

    def _check_pattern(self):
        try:
            parsed = list(string.Formatter().parse(self.pattern or ""))
        except ValueError as exc:
            raise InvalidOptionError(
                f"Option pattern={self.pattern!r} of provider {self.name!r} is not a valid "
                f"format string ({exc}); write e.g. '{{symbol}}{self.suffix}'",
                option="pattern",
                value=self.pattern,
            ) from None
        fields = [(f, spec, conv) for _, f, spec, conv in parsed if f is not None]
        # Only bare {symbol}/{code}: "{symbol.__class__}" would reach into Python objects.
        bad = [f for f, spec, conv in fields if f not in _FIELDS or spec or conv]
        if bad or not fields:
            problem = f"has field {{{bad[0]}}}" if bad else "names no symbol"
            raise InvalidOptionError(
                f"Option pattern={self.pattern!r} of provider {self.name!r} {problem}; use "
                f"{{symbol}} (000001.SZ, AAPL) or {{code}} (000001, AAPL), "
                f"e.g. '{{symbol}}{self.suffix}'",
                option="pattern",
                value=self.pattern,
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

    def _path(self, symbol: str) -> Path:
        """Return the resolved file of ``symbol``, refusing anything outside the root."""
        candidate = self._root / self.pattern.format(symbol=symbol, code=_code(symbol))
        try:
            path = candidate.resolve()
        except (OSError, RuntimeError, ValueError) as exc:  # symlink loop, NUL byte
            raise PermanentProviderError(
                f"Cannot resolve the file of {symbol} ({candidate}): {_one_line(exc)}",
                symbol=symbol,
                path=str(candidate),
            ) from exc
        if not path.is_relative_to(self._root):
            via = "" if path == candidate else f" (via {candidate})"
            raise PermanentProviderError(
                f"Refused the file of {symbol}: {path}{via} is outside root {self._root}; "
                f"files must be inside root (check pattern={self.pattern!r} and symlinks)",
                symbol=symbol,
                path=str(path),
            )
        return path

    # -- the contract ---------------------------------------------------------------------

    def fetch(self, symbol, start, end, freq="1d", adjust="none") -> pd.DataFrame:
        """Return the file's bars of ``symbol`` stamped in ``[start, end]`` (dates inclusive).

        Returns
        -------
        pandas.DataFrame
            ``ts`` (datetime64), ``open high low close`` and ``volume``/``amount`` when the
            file has them, as read (:func:`kdist.schema.normalise` coerces the dtypes).

        Raises
        ------
        SymbolNotFoundError
            No file for ``symbol``; the message names the path tried.
        PermanentProviderError
            The path leaves the root, or the file cannot be read or mapped.
        InvalidSymbolError
            ``symbol`` is not a symbol at all.
        """
        freq, adjust = Freq.parse(freq), Adjust.parse(adjust)
        lo, hi = to_date(start, name="start"), to_date(end, name="end") + pd.Timedelta(days=1)
        self.check(freq=freq, adjust=adjust, start=lo, end=hi)
        # Symbols are validated upstream, but a path is built from this one: never trust it.
        symbol = normalise_symbol(symbol)
        path = self._path(symbol)
        if not path.is_file():
            if path.exists():
                raise PermanentProviderError(
                    f"The file of {symbol}, {path}, is not a regular file", symbol=symbol,
                    path=str(path),
                )
            raise SymbolNotFoundError(
                f"No file for symbol {symbol}: {path} does not exist; check the symbol, "
                f"root={self.root!r} and pattern={self.pattern!r}",
                symbol=symbol,
                path=str(path),
            )
        mapping = self._map_columns(self._header(path, symbol), path, symbol, freq)
        raw = self._read(path, symbol, list(dict.fromkeys(mapping.values())))
        # One frame per canonical name: the same file column may serve two of them.
        frame = pd.DataFrame({name: raw[column] for name, column in mapping.items()})
        try:
            ts = _parse_ts(frame["ts"])
        except (ValueError, TypeError, OverflowError) as exc:
            raise PermanentProviderError(
                f"Cannot parse the dates in column {mapping['ts']!r} of {path}: "
                f"{_one_line(exc)}; map ts to the date column with columns=ts:<name>",
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
        # NaT rows (a footer such as "数据来源:通达信") belong to no window: drop them here,
        # or they would turn every otherwise empty window into a rejected-rows failure.
        keep = ((ts >= lo) & (ts < hi)).to_numpy()
        frame = frame[keep].assign(ts=ts[keep].astype("datetime64[us]")).reset_index(drop=True)
        if self.volume_unit == "lots" and "volume" in frame:
            volume = frame["volume"]
            if not pd.api.types.is_numeric_dtype(volume):
                volume = pd.to_numeric(volume.astype("str").str.replace(",", ""), errors="coerce")
            frame["volume"] = volume.astype("float64") * 100.0
        return frame

    def list_symbols(self) -> list[str]:
        """Return the canonical symbols of the files under root that match the pattern.

        Files whose name is not a symbol's canonical file name, and symlinks out of the root,
        are skipped.

        Raises
        ------
        PermanentProviderError
            The pattern's directory is outside the root.
        """
        # "./{symbol}.csv" and "{symbol}.csv" name the same files; glob yields the latter.
        pattern = PurePosixPath(self.pattern).as_posix()
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
        glob, regex, seen = [], [], set()
        for literal, field, _, _ in string.Formatter().parse(pattern):
            glob.append(_GLOB_SPECIAL.sub(r"[\1]", literal))
            regex.append(re.escape(literal))
            if field is not None:
                glob.append("*")
                regex.append(f"(?P={field})" if field in seen else f"(?P<{field}>[^/]+)")
                seen.add(field)
        matcher = re.compile("".join(regex))
        found = set()
        for path in self._root.glob("".join(glob)):
            rel = path.relative_to(self._root).as_posix()
            m = matcher.fullmatch(rel)
            if not m:
                continue
            groups = m.groupdict()
            try:
                symbol = normalise_symbol(groups.get("symbol") or groups["code"])
            except InvalidSymbolError:
                continue
            # Only names fetch() would build: "000001.sz.csv" is not the file of 000001.SZ.
            expected = self.pattern.format(symbol=symbol, code=_code(symbol))
            if PurePosixPath(expected).as_posix() != rel:
                continue
            if path.is_file() and path.resolve().is_relative_to(self._root):
                found.add(symbol)
        return sorted(found)

    # -- columns --------------------------------------------------------------------------

    def _map_columns(self, header: list[str], path: Path, symbol: str, freq: Freq) -> dict:
        """Return canonical name -> file column for the columns this file has."""
        by_key: dict[str, str] = {}
        for column in header:
            by_key.setdefault(_key(column), column)
        mapping = {}
        for name, column in self._columns.items():
            found = column if column in header else by_key.get(_key(column))
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

    def _header(self, path: Path, symbol: str) -> list[str]:
        """Return the file's column names."""
        raise NotImplementedError

    def _read(self, path: Path, symbol: str, columns: list[str]) -> pd.DataFrame:
        """Return ``columns`` of the file, every row."""
        raise NotImplementedError


class CSVProvider(_FileProvider):
    """Bars from local CSV files, one per symbol (``<SYMBOL>.csv``), any encoding.

    Takes the options of the file providers (``root``, ``pattern``, ``columns``,
    ``volume_unit``) and ``encoding`` (default ``"utf-8"``; ``"gbk"`` for most Chinese
    exports). Dates may be ISO strings, ``2024/01/02``, yyyymmdd integers or date-times;
    day-first forms such as ``02.01.2024`` are read month-first.

    Examples
    --------
    >>> from kdist.providers import get_provider
    >>> p = get_provider("csv", root="exports", encoding="gbk")  # doctest: +SKIP
    >>> p.fetch("000001.SZ", "2024-01-02", "2024-01-31").columns.tolist()  # doctest: +SKIP
    ['ts', 'open', 'high', 'low', 'close', 'volume', 'amount']
    """

    name = "csv"
    suffix = ".csv"
    description = "Local CSV files, one per symbol (<SYMBOL>.csv); columns mapped or detected"
    options = {
        **_FileProvider.options,
        "pattern": Option(str, "{symbol}.csv", "file name under root; {symbol} or {code}"),
        "encoding": Option(str, "utf-8", "text encoding of the files; gbk for Chinese exports"),
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

    def _read_csv(self, path: Path, symbol: str, **kwargs) -> pd.DataFrame:
        try:
            # index_col=False: a trailing comma on each row must not shift columns to an index.
            return pd.read_csv(path, encoding=self.encoding, index_col=False, **kwargs)
        except UnicodeDecodeError as exc:
            raise PermanentProviderError(
                f"Cannot decode {path} as {self.encoding} ({exc.reason} at byte {exc.start}); "
                "set the encoding option to the file's encoding (gbk for Chinese exports)",
                symbol=symbol,
                path=str(path),
            ) from exc
        except pd.errors.EmptyDataError as exc:
            raise PermanentProviderError(
                f"{path} is empty (no header row); re-export it or remove it",
                symbol=symbol,
                path=str(path),
            ) from exc
        except (OSError, ValueError) as exc:  # pandas' ParserError is a ValueError
            raise PermanentProviderError(
                f"Cannot read {path} as CSV: {_one_line(exc)}",
                symbol=symbol,
                path=str(path),
            ) from exc

    def _header(self, path, symbol):
        return list(self._read_csv(path, symbol, nrows=0).columns)

    def _read(self, path, symbol, columns):
        return self._read_csv(path, symbol, usecols=columns)

    def version(self) -> str:
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
    options = {
        **_FileProvider.options,
        "pattern": Option(str, "{symbol}.parquet", "file name under root; {symbol} or {code}"),
    }

    def _arrow(self, path: Path, symbol: str, read):
        import pyarrow as pa

        try:
            return read()
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise PermanentProviderError(
                f"Cannot read {path} as Parquet: {_one_line(exc)}",
                symbol=symbol,
                path=str(path),
            ) from exc

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

    def version(self) -> str:
        import pyarrow

        return pyarrow.__version__
