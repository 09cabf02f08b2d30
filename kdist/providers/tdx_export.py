"""Reading 通达信 (TDX) "数据导出" files: recognise one, check its title, turn its rows into bars.

TDX's export writes GBK text: a title line (``601003 柳钢股份 日线 前复权``: code, name, period,
adjustment), a header of tab-separated, space-padded Chinese names (日期, 时间 for minute
bars, 开盘, 最高, 最低, 收盘, 成交量, 成交额), rows separated by commas or tabs with dates like
``2007/02/28`` and times like ``0935`` (the bar's end), and a footer ``数据来源:通达信``. Its
title must agree with the request: the code with the symbol's, the period with ``freq``, the
adjustment with ``adjust``; a title in other words over TDX's header is checked for its code
only. Variants of the export settings are read as well: dates with ``/``, ``-`` or none, a
blank line after the title, rows ending in a separator, columns in any order, a UTF-8 BOM.

This module knows the format only: :class:`~kdist.providers.files.CSVProvider` finds and
decodes the files, keeps the rows in the requested window and sets the volume unit (from
:attr:`TdxExport.header_volume_unit`, or else the amounts). :func:`header_key` and
:func:`parse_numbers` serve its plain CSV files as well.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..errors import PermanentProviderError
from ..schema import Adjust, Freq
from .base import one_line

__all__ = ["TdxExport", "check_title", "header_key", "parse_numbers", "parse_tdx_export",
           "read_tdx_export"]

#: A trailing unit in brackets of a header name: "成交量(手)", "成交额（元）".
_UNIT_SUFFIX = re.compile(r"\s*[(（]([^()（）]*)[)）]$")
#: The title line: code, name (may hold spaces: "*ST 某某"), period (日线, 5分钟线 ...) and
#: adjustment (不复权, 前复权, 后复权).
_TDX_TITLE = re.compile(
    r"^\s*(?P<code>[0-9A-Za-z]{4,8})\s+(?P<name>.+?)\s+(?P<period>\S*(?:线|分钟))"
    r"(?:\s+(?P<adjust>\S*权\S*))?\s*$"
)
#: The first word of a title line the pattern above does not read: the code, when it is one.
_TDX_CODE = re.compile(r"^\s*(?P<code>[0-9A-Za-z]{4,8})(?:\s|$)")
_TDX_FOOTER = ("数据来源", "#数据来源")
_TDX_ADJUST = {"不复权": Adjust.NONE, "除权": Adjust.NONE, "前复权": Adjust.QFQ,
               "后复权": Adjust.HFQ}
_TDX_COLUMNS = {"日期": "date", "时间": "time", "开盘": "open", "最高": "high", "最低": "low",
                "收盘": "close", "成交量": "volume", "成交额": "amount", "成交金额": "amount"}


def header_key(name) -> str:
    """Comparable form of a header: stripped, BOM-free, lower-case, without a unit suffix."""
    text = str(name).strip().lstrip("\ufeff").strip().lower()
    return _UNIT_SUFFIX.sub("", text) or text


def _unit_of(name) -> str:
    """The unit in brackets at the end of a header ("成交量(手)" -> "手"), or ""."""
    m = _UNIT_SUFFIX.search(str(name).strip())
    return m.group(1).strip() if m else ""


def parse_numbers(values: pd.Series) -> pd.Series:
    """Parse numbers written as text ("1,158,366"); NaN where there is none."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.astype("float64")
    return pd.to_numeric(values.astype("str").str.replace(",", "").str.strip(),
                         errors="coerce").astype("float64")


@dataclass(frozen=True)
class TdxExport:
    """What a TDX export's first lines say: title fields, header, and where the rows begin."""

    code: str | None
    name: str
    period: str
    adjust_word: str
    header: list[str]
    lines: list[str]  # every line of the file, decoded
    first_row: int  # index in lines of the first line after the header

    @property
    def freq(self) -> Freq | None:
        """The title's period as a freq; None when it has none kdist stores (季线, 年线)."""
        period = self.period
        if "分钟" in period:
            digits = "".join(ch for ch in period if ch.isdigit())
            try:
                return Freq(f"{int(digits)}m") if digits else None
            except ValueError:
                return None
        return {"日线": Freq.DAY, "周线": Freq.WEEK, "月线": Freq.MONTH}.get(period)

    @property
    def adjust(self) -> Adjust | None:
        if not self.adjust_word:
            return None
        for word, adjust in _TDX_ADJUST.items():
            if word in self.adjust_word:  # 等比前复权, 前复权(等比): forward adjustments too
                return adjust
        return None

    @property
    def header_volume_unit(self) -> str:
        """The unit its 成交量 header names ("成交量(手)" -> "手"), or ""."""
        return next((_unit_of(h) for h in self.header if header_key(h) == "成交量"), "")


def _split_header(line: str) -> list[str]:
    """The names of a TDX header line: tab-separated and space-padded (or comma-separated)."""
    if "\t" in line:
        names = line.split("\t")
    elif "," in line:
        names = line.split(",")
    else:
        names = line.split()
    return [n.strip().lstrip("\ufeff").strip() for n in names if n.strip()]


def parse_tdx_export(text: str, force: bool) -> TdxExport | None:
    """Recognise a TDX export in ``text`` (the file decoded); None when it is none.

    ``force`` (``format="tdx"``) also takes a file without a title line, the header first.
    """
    lines = text.lstrip("\ufeff").splitlines()  # a UTF-8 file may start with a BOM
    nonblank = [i for i, line in enumerate(lines) if line.strip()]
    if not nonblank:
        return None
    first = nonblank[0]
    title = _TDX_TITLE.match(lines[first])
    # Without its title (TDX can leave it out), the header still shows: tab-separated and
    # padded, where a plain Chinese CSV separates its names by commas.
    names = {header_key(h) for h in _split_header(lines[first])}
    headless = "\t" in lines[first] and {"日期", "开盘"} <= names
    code = title.group("code") if title else None
    if title is None and not headless and len(nonblank) > 1:
        # A title in words the pattern does not know, over TDX's padded header: the first
        # word is still the code (checked against the symbol), the period and adjustment
        # are not checked.
        second = lines[nonblank[1]]
        if "\t" in second and {"日期", "开盘"} <= {header_key(h) for h in _split_header(second)}:
            word = _TDX_CODE.match(lines[first])
            code = word.group("code") if word else None
            return TdxExport(code=code, name="", period="", adjust_word="",
                             header=_split_header(second), lines=lines,
                             first_row=nonblank[1] + 1)
    if title and len(nonblank) > 1:
        header_at = nonblank[1]
    elif force or headless:
        title, header_at = None, first
    else:
        return None
    header = _split_header(lines[header_at])
    if "日期" not in {header_key(h) for h in header}:
        return None
    return TdxExport(
        code=code if title else None,
        name=title.group("name") if title else "",
        period=title.group("period") if title else "",
        adjust_word=(title.group("adjust") or "") if title else "",
        header=header,
        lines=lines,
        first_row=header_at + 1,
    )


def check_title(export: TdxExport, path: Path, symbol: str, code: str, freq: Freq,
                adjust: Adjust) -> None:
    """Refuse an export whose title names another security than ``code`` (the symbol's), or
    another period or adjustment than asked for; ``path`` and ``symbol`` name it in errors.
    """
    if export.code is not None and export.code.upper() != code.upper():
        held = f"{export.code} {export.name}".strip()
        raise PermanentProviderError(
            f"{path} is the TDX export of {held}, not of {symbol}; "
            "check the file name or pattern",
            symbol=symbol,
            path=str(path),
        )
    title_freq = export.freq
    if title_freq is not None and title_freq is not freq:
        raise PermanentProviderError(
            f"{path} holds {export.period} ({title_freq.value}) bars, not {freq.value}; "
            f"import it with --freq {title_freq.value}",
            symbol=symbol,
            path=str(path),
        )
    if export.adjust_word:
        held = export.adjust
        if held is None:
            raise PermanentProviderError(
                f"{path} holds {export.adjust_word} prices, which kdist cannot store; "
                "export 不复权 (none), 前复权 (qfq) or 后复权 (hfq) prices",
                symbol=symbol,
                path=str(path),
            )
        if held is not adjust:
            raise PermanentProviderError(
                f"{path} holds {export.adjust_word} ({held.value}) prices, not "
                f"{adjust.value!r}; import it with --adjust {held.value}",
                symbol=symbol,
                path=str(path),
            )


def read_tdx_export(export: TdxExport, path: Path, symbol: str, freq: Freq) -> pd.DataFrame:
    """The bars of a TDX export, ``ts`` parsed; ``path`` and ``symbol`` name it in errors."""
    columns = {}
    for i, name in enumerate(export.header):
        canonical = _TDX_COLUMNS.get(header_key(name))
        if canonical is not None:
            columns.setdefault(canonical, i)
    missing = [c for c in ("date", "open", "high", "low", "close") if c not in columns]
    if missing:
        raise PermanentProviderError(
            f"{path} has no {', '.join(missing)} column in its TDX header "
            f"({', '.join(export.header)}); export 日期, 开盘, 最高, 最低, 收盘",
            symbol=symbol,
            path=str(path),
        )
    rows = []
    for line in export.lines[export.first_row:]:
        text = line.strip()
        if not text:
            continue
        if text.startswith(_TDX_FOOTER):
            break
        rows.append(text)
    if freq.intraday and "time" not in columns:
        raise PermanentProviderError(
            f"{path} has no 时间 (time) column: it holds daily bars, not {freq.value}; "
            "export minute bars from TDX, or import it with --freq 1d",
            symbol=symbol,
            path=str(path),
        )
    sep = "," if rows and "," in rows[0] else ("\t" if rows and "\t" in rows[0] else r"\s+")
    width = max(columns.values()) + 1
    try:
        table = pd.read_csv(
            io.StringIO("\n".join(rows)), sep=sep, header=None, dtype=str,
            usecols=range(width), names=range(width), index_col=False,
            engine="python" if sep == r"\s+" else "c",
        ) if rows else pd.DataFrame({i: pd.Series(dtype=str) for i in range(width)})
    except (ValueError, pd.errors.ParserError) as exc:
        raise PermanentProviderError(
            f"Cannot read the rows of TDX export {path}: {one_line(exc)}",
            symbol=symbol,
            path=str(path),
        ) from exc
    time = table[columns["time"]] if "time" in columns and freq.intraday else None
    frame = pd.DataFrame({"ts": _tdx_stamps(table[columns["date"]], time)})
    for name in ("open", "high", "low", "close", "volume", "amount"):
        if name in columns:
            frame[name] = parse_numbers(table[columns[name]])
    if len(frame) and frame["ts"].isna().all():
        raise PermanentProviderError(
            f"The dates of TDX export {path} are unreadable (first "
            f"{table[columns['date']].iloc[0]!r}); export dates as YYYY/MM/DD",
            symbol=symbol,
            path=str(path),
        )
    return frame


def _tdx_stamps(dates: pd.Series, times: pd.Series | None) -> pd.Series:
    """Timestamps of TDX export rows: dates ``2007/02/28`` (or ``2007-02-28``, ``20070228``)
    and, for minute bars, times ``0935`` (HHMM, the bar's end). Unreadable rows are NaT.
    """
    text = dates.astype("str").str.strip().str.replace("/", "-", regex=False)
    compact = text.str.fullmatch(r"\d{8}")
    day = pd.to_datetime(text.where(~compact), format="%Y-%m-%d", errors="coerce")
    if compact.any():
        day = day.where(~compact, pd.to_datetime(text.where(compact), format="%Y%m%d",
                                                  errors="coerce"))
    day = day.astype("datetime64[us]")
    if times is None:
        return day
    clock = times.astype("str").str.strip().str.replace(":", "", regex=False).str.zfill(4)
    valid = clock.str.fullmatch(r"\d{4}")
    hours = pd.to_numeric(clock.str[:2].where(valid), errors="coerce")
    minutes = pd.to_numeric(clock.str[2:].where(valid), errors="coerce")
    ok = (hours < 24) & (minutes < 60)
    offset = pd.to_timedelta((hours * 60 + minutes).where(ok), unit="m")
    return (day + offset).astype("datetime64[us]")
