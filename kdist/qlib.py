"""Stored bars written in qlib's on-disk layout (the one ``scripts/dump_bin.py`` writes), for
``qlib.init(provider_uri=OUT)`` and ``D.features``.

The layout::

    OUT/calendars/day.txt                 one date a line (1min.txt, 5min.txt ...: minutes,
                                          ``%Y-%m-%d %H:%M:%S``): the union of the dates of
                                          every symbol exported
    OUT/instruments/all.txt               ``SH600000<TAB>2020-01-02<TAB>2023-12-29``: the qlib
                                          code, the first and the last bar
    OUT/features/sh600000/close.day.bin   one file per field: little-endian float32, element 0
                                          the calendar index of the symbol's first bar, then
                                          one value per calendar date up to its last bar, NaN
                                          on a date it has no bar

Codes (:func:`qlib_code`): A-shares as qlib's cn data names them, ``600000.SH`` ->
``SH600000``, ``000001.SZ`` -> ``SZ000001``, ``830799.BJ`` -> ``BJ830799``; any other ticker
as kdist stores it, upper-case (``0700.HK``); a feature directory is the code in lower case
(with qlib's ``_qlib_`` prefix for the names Windows reserves, ``CON``, ``COM1`` ...).

Fields, in qlib's convention for adjusted prices (``$close / $factor`` is the raw close):

- ``open high low close``: backward-adjusted (hfq) prices, as ``load(adjust="hfq")``
  returns them: raw x the cumulative factor of the stored corporate actions; for a symbol
  without stored actions its stored vendor hfq bars, or its raw bars if it has none;
- ``factor``: hfq close / raw close (1 for raw bars; NaN where the raw close is unknown, a
  symbol with vendor hfq bars only: qlib then trades on adjusted prices);
- ``volume``: raw volume / factor, so price x volume stays the raw amount (the stored
  volume where the factor is NaN);
- ``amount``: the raw amount as stored (NaN where the vendor gives none);
- ``change``: close / the symbol's previous exported close - 1, from the float32 closes
  written (so a later incremental export computes the same bits); NaN on a symbol's first
  exported bar.

A date a symbol has no bar on is NaN in every field. Placeholder bars (a vendor's
suspended day: volume 0, every price the previous close) are left out by default
(``placeholders="drop"``), as qlib's own collectors set suspended days to NaN: qlib takes a
NaN ``$close`` for a suspended stock, a placeholder for a tradeable one.

Incremental exports, like ``dump_bin.py dump_update``: exporting into a directory that
holds an export of the same freq merges into it.

- The new calendar is the old one together with the dates read. If the old calendar is a
  prefix of it (the usual case: the store was updated, ``end`` moved on, symbols were
  added), every bin keeps its positions: a requested symbol's files are rewritten from the
  first value that differs, which for unchanged history means the new dates are appended
  (and nothing is written for a symbol that did not change); a symbol whose history changed
  (a corporate action learnt since, a re-fetched bar) is rewritten from its first change.
  Symbols in the directory that were not requested (or have no bar in the window) are left
  as they are.
- Otherwise (an earlier start, a new symbol trading on a date the calendar lacks) every bin
  in the directory is rewritten for the new calendar, requested symbols from the store and
  the others re-indexed from their own files. These files are written beside the old ones
  (``*.kdist-new``) and renamed into place only when all are written; a journal file,
  ``.kdist-qlib-rewrite``, lets the next export finish (or drop) an interrupted rewrite.
- ``start``/``end`` bound what is read: a requested symbol's bars inside the window replace
  those exported before, its bars outside it stay. An export without ``start`` reads each
  symbol's whole history; one with a recent ``start`` reads less and keeps the rest.
- ``instruments/all.txt`` gets a line for every symbol written (its first and last bar),
  keeps every other line, sorted by code; other instrument files (``csi300.txt``) and
  other fields' files are kept (re-indexed on a rewrite).

The calendar must be whole before the first bin is written, so an export reads the store
in chunks of symbols (:data:`CHUNK_SYMBOLS`) into a spill directory inside ``out``
(``.kdist-qlib-spill-*``, about 36 bytes a bar, removed at the end) and then writes.

One directory holds one freq (qlib reads minute data from a provider_uri of its own); weeks
and months are not exported, qlib builds them from days. Minute bars keep the stamps they
are stored with (kdist's providers stamp a bar at its end, 09:31 for 09:30-09:31, where
qlib's own cn minute data stamps it at its start).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import UsageError
from .schema import Adjust, Freq, read_symbols, to_date
from .store import reading

__all__ = ["FIELDS", "qlib_code", "qlib_freq", "write_qlib"]

#: The fields written for every symbol, one ``<field>.<freq>.bin`` each.
FIELDS = ("open", "close", "high", "low", "volume", "factor", "change", "amount")
#: Symbols read from the store at a time (daily bars; fewer for minute bars, by their count
#: a day), which bounds the memory of an export.
CHUNK_SYMBOLS = 500
#: The journal of a rewrite for a new calendar (see the module docstring).
JOURNAL = ".kdist-qlib-rewrite"
#: The prefix of the directory an export spills the bars it read to, inside ``out``.
SPILL = ".kdist-qlib-spill-"
_NEW = ".kdist-new"
_A_SHARE = re.compile(r"^(\d{6})\.(SH|SZ|BJ)$")
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)),
             *(f"LPT{i}" for i in range(10))}
# Columns of the values read, in the order they are spilled.
_READ = ("open", "close", "high", "low", "volume", "factor", "amount")


def qlib_code(symbol: str) -> str:
    """The qlib instrument of a kdist symbol: ``600000.SH`` -> ``SH600000``; other tickers
    upper-cased as they are."""
    match = _A_SHARE.match(symbol.upper())
    if match:
        return match.group(2) + match.group(1)
    return symbol.upper()


def _dirname(code: str) -> str:
    """The features directory of a code, as qlib's ``code_to_fname`` names it, lower case."""
    return ("_qlib_" + code if code.upper() in _RESERVED else code).lower()


def qlib_freq(freq) -> str:
    """qlib's name of a kdist freq: ``1d`` -> ``day``, ``5m`` -> ``5min``."""
    freq = Freq.parse(freq)
    if freq is Freq.DAY:
        return "day"
    if freq.intraday:
        return f"{freq.minutes}min"
    raise UsageError(f"qlib reads days and minutes (it builds weeks and months from days): "
                     f"export freq 1d or a minute freq, not {freq.value}")


def write_qlib(db_or_store, out, *, symbols=None, start=None, end=None, freq="1d",
               progress=None, placeholders: str = "drop") -> dict:
    """Write stored bars to ``out`` in qlib's layout (see the module docstring), or merge
    them into the export already there.

    Parameters
    ----------
    db_or_store
        The DuckDB file (opened read-only), or an open :class:`~kdist.store.Store`.
    out
        The qlib directory (``provider_uri``): missing, empty, or an export of the same freq.
    symbols
        A symbol or a list of them, in any form kdist accepts; every stored symbol of
        ``freq`` (raw or hfq bars) when None.
    start, end
        Inclusive date bounds of the bars read; open when None.
    freq
        ``1d`` (qlib ``day``) or a minute freq (``1m`` -> ``1min``).
    progress
        ``progress(done, total)``, called as chunks of symbols are read and written: each
        symbol counts once read and once written, so ``total`` is twice their number.
    placeholders
        ``"drop"`` (the default): a vendor's placeholder bars of suspended days are NaN, as
        qlib wants; ``"keep"`` exports them as bars.

    Returns
    -------
    dict
        ``out``, ``freq`` (qlib's name), ``mode`` (``new``, ``incremental`` or ``rewrite``:
        the calendar grew other than at its end), ``incremental`` (an export was there and
        kept its positions), ``symbols`` (written now), ``bars`` (read), ``calendar`` (its
        length), ``first`` and ``last`` (its dates), ``appended``, ``rewritten`` and
        ``unchanged`` (symbols already in the directory, by what their files needed),
        ``added`` (new symbols), ``missing`` (requested symbols with no bar in the window).

    Raises
    ------
    UsageError
        ``out`` is a file or a non-empty directory that is not a qlib export, or one of
        another freq; ``freq`` is weekly or monthly; nothing is stored for the request.
    """
    qfreq = qlib_freq(freq)
    freq = Freq.parse(freq)
    if placeholders not in ("keep", "drop"):
        raise UsageError(f"placeholders must be 'keep' or 'drop', not {placeholders!r}")
    out = Path(out).expanduser()
    old = _Existing.open(out, qfreq)
    lo = to_date(start, name="start") if start is not None else None
    hi = to_date(end, name="end") + pd.Timedelta(days=1) if end is not None else None
    symbols = read_symbols(symbols)
    # Each read opens the file for itself (kdist.store.reading): an import writing it
    # meanwhile gets its turn between chunks, and the bins are written with it closed.
    return _export(db_or_store, out, old, qfreq, freq, symbols, lo, hi, start, end,
                   progress, placeholders)


def _export(store, out, old, qfreq, freq, symbols, lo, hi, start, end, progress,
            placeholders) -> dict:
    if symbols is None:
        with reading(store) as opened:
            stored = set(opened.series(freq, Adjust.NONE)["symbol"])
            stored |= set(opened.series(freq, Adjust.HFQ)["symbol"])
        symbols = sorted(stored)
    if not symbols:
        raise UsageError(f"nothing stored for freq {freq.value} in {_name(store)}: nothing "
                         "to export to qlib")
    size = CHUNK_SYMBOLS if not freq.intraday else max(
        1, CHUNK_SYMBOLS * freq.minutes // 240)
    total = 2 * len(symbols)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _export_into(store, out, old, qfreq, freq, symbols, lo, hi, start, end,
                            progress, placeholders, size, total)
    except UsageError:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise


def _export_into(store, out, old, qfreq, freq, symbols, lo, hi, start, end, progress,
                 placeholders, size, total) -> dict:
    # Pass one spills what it reads beside the export (not to a /tmp that may be memory):
    # the calendar must be whole before the first bin is written.
    with tempfile.TemporaryDirectory(prefix=SPILL, dir=out) as spill:
        dates, read, bars, files = np.array([], "int64"), [], 0, []
        for n, at in enumerate(range(0, len(symbols), size)):
            chunk = symbols[at:at + size]
            codes, offsets, when, values = _read_chunk(store, chunk, start, end, freq,
                                                       placeholders)
            if len(codes):
                path = os.path.join(spill, f"chunk-{n:06d}.npz")
                np.savez(path, codes=codes, offsets=offsets, when=when, values=values)
                files.append(path)
                dates = np.union1d(dates, when)
                read.extend(codes)
                bars += len(when)
            if progress is not None:
                progress(at + len(chunk), total)
        if not read:
            window = f" from {start}" if start is not None else ""
            window += f" to {end}" if end is not None else ""
            raise UsageError(f"nothing stored for the {len(symbols)} symbol(s) asked at freq "
                             f"{freq.value}{window} in {_name(store)}: nothing to export")
        summary = _write(out, old, qfreq, dates, files, lo, hi, progress, len(symbols),
                         total)
    asked = {qlib_code(s): s for s in symbols}
    summary.update(bars=bars, missing=sorted(asked[c] for c in set(asked) - set(read)))
    return summary


def _name(store) -> str:
    """The file of a path or a Store, for messages."""
    return str(getattr(store, "path", store))


def _read_chunk(store, chunk, start, end, freq, placeholders):
    """One chunk of symbols read from the store: their codes, each one's offset into
    ``when`` (bar times, whole seconds) and ``values`` (one row per bar, :data:`_READ`)."""
    with reading(store) as opened:
        hfq = opened.load(chunk, start, end, freq, "hfq", placeholders=placeholders)
        raw = opened.load(chunk, start, end, freq, "none", placeholders=placeholders)
    keys = ["symbol", "ts"]
    adjusted = hfq.merge(raw[[*keys, "close", "volume"]], on=keys, how="left",
                         suffixes=("", "_raw"))
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = adjusted["close"].to_numpy("float64") / adjusted["close_raw"].to_numpy(
            "float64")
        factor[~np.isfinite(factor) | (factor <= 0)] = np.nan
        volume = adjusted["volume_raw"].to_numpy("float64") / factor
    volume = np.where(np.isnan(factor), adjusted["volume"].to_numpy("float64"), volume)
    adjusted = adjusted.assign(factor=factor, volume=volume)
    plain = raw[~raw["symbol"].isin(set(hfq["symbol"]))].assign(factor=1.0)
    bars = pd.concat([f for f in (adjusted, plain) if len(f)] or [adjusted],
                     ignore_index=True)
    bars = bars.sort_values(keys, kind="stable").reset_index(drop=True)
    if freq is Freq.DAY:
        ts = bars["ts"].dt.normalize()
    else:
        ts = bars["ts"]
    when = ts.to_numpy().astype("datetime64[s]").astype("int64")
    symbol = bars["symbol"].to_numpy(dtype=object)
    starts = np.flatnonzero(np.r_[True, symbol[1:] != symbol[:-1]]) if len(bars) else \
        np.array([], "int64")
    codes = np.array([qlib_code(s) for s in symbol[starts]], dtype=str)
    offsets = np.r_[starts, len(bars)].astype("int64")
    values = bars[list(_READ)].to_numpy("float64").astype("float32")
    return codes, offsets, when, values


class _Existing:
    """What ``out`` holds: nothing, or a qlib export of ``freq`` (its calendar, instrument
    lines and feature directories)."""

    def __init__(self, out: Path, freq: str, calendar: np.ndarray | None,
                 instruments: dict[str, str]):
        self.out, self.freq = out, freq
        self.calendar = calendar  # int64 seconds, or None: no export there
        self.instruments = instruments  # code -> its line(s) in all.txt

    @classmethod
    def open(cls, out: Path, freq: str) -> _Existing:
        if out.exists() and not out.is_dir():
            raise UsageError(f"{out} is a file: give a directory for the qlib export")
        if not out.exists() or not any(out.iterdir()):
            return cls(out, freq, None, {})
        entries = {p.name for p in out.iterdir()}
        calendars = out / "calendars"
        for name in sorted(entries):
            if name.startswith(SPILL):  # an export that was killed
                shutil.rmtree(out / name, ignore_errors=True)
                entries.discard(name)
        if not entries & {"calendars", "features", "instruments"} or not (
                entries - {JOURNAL}) <= {"calendars", "features", "instruments", ".DS_Store"}:
            raise UsageError(f"{out} is a directory that is not a qlib export: give an empty "
                             "or new directory, or one a qlib export was written to")
        _finish_rewrite(out)
        others = sorted(p.stem for p in calendars.glob("*.txt")
                        if p.stem != freq and not p.stem.endswith("_future"))
        mine = calendars / f"{freq}.txt"
        if others and not mine.exists():
            raise UsageError(f"{out} holds qlib data of freq {', '.join(others)}: export "
                             f"{freq} into a directory of its own")
        calendar = _read_calendar(mine) if mine.exists() else None
        instruments = {}
        path = out / "instruments" / "all.txt"
        if calendar is not None and path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    code = line.split("\t", 1)[0].strip().upper()
                    instruments[code] = (instruments[code] + "\n" + line
                                         if code in instruments else line)
        return cls(out, freq, calendar, instruments)


def _read_calendar(path: Path) -> np.ndarray:
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    stamps = pd.to_datetime(pd.Series([x for x in lines if x], dtype="str"))
    return stamps.to_numpy().astype("datetime64[s]").astype("int64")


def _format(when: np.ndarray, freq: str) -> list[str]:
    stamps = pd.DatetimeIndex(when.astype("datetime64[s]"))
    return list(stamps.strftime("%Y-%m-%d" if freq == "day" else "%Y-%m-%d %H:%M:%S"))


def _finish_rewrite(out: Path):
    """An interrupted rewrite: rolled forward when every new file was written (its
    journal says ``rename``), otherwise its new files removed."""
    journal = out / JOURNAL
    if not journal.exists():
        return
    phase = json.loads(journal.read_text(encoding="utf-8")).get("phase")
    for path in sorted(out.rglob(f"*{_NEW}")):
        if phase == "rename":
            os.replace(path, path.with_name(path.name[: -len(_NEW)]))
        else:
            path.unlink()
    journal.unlink()


def _write(out: Path, old: _Existing, qfreq: str, dates: np.ndarray, files: list[str], lo,
           hi, progress, n_symbols: int, total: int) -> dict:
    """Pass two: the calendar, every requested symbol's bins, the instruments."""
    if old.calendar is None:
        mode, calendar = "new", dates
    else:
        calendar = np.union1d(old.calendar, dates)
        prefix = np.array_equal(calendar[: len(old.calendar)], old.calendar)
        mode = "incremental" if prefix else "rewrite"
    lo_s = None if lo is None else np.datetime64(lo, "s").astype("int64")
    hi_s = None if hi is None else np.datetime64(hi, "s").astype("int64")
    features = out / "features"
    features.mkdir(parents=True, exist_ok=True)
    suffix = _NEW if mode == "rewrite" else ""
    if mode == "rewrite":
        (out / JOURNAL).write_text(json.dumps({"phase": "write"}), encoding="utf-8")
    counts = dict(appended=0, rewritten=0, unchanged=0, added=0)
    lines, done, written = {}, n_symbols, set()
    for path in files:
        with np.load(path) as chunk:
            codes, offsets = chunk["codes"], chunk["offsets"]
            when, values = chunk["when"], chunk["values"]
        for i, code in enumerate(codes):
            rows = slice(offsets[i], offsets[i + 1])
            folder = features / _dirname(str(code))
            series = _Series(when[rows], values[rows])
            known = old.calendar is not None and any(folder.glob(f"*.{qfreq}.bin"))
            if known and (lo_s is not None or hi_s is not None):
                series = series.merged(_Series.read(folder, qfreq, old.calendar), lo_s, hi_s)
            outcome = series.write(folder, qfreq, calendar, suffix, compare=known)
            counts["added" if not known else outcome] += 1
            if known and mode == "rewrite":
                _reindex(folder, qfreq, old.calendar, calendar, skip=FIELDS)
            first, last = _format(series.when[[0, -1]], qfreq)
            lines[str(code)] = f"{code}\t{first}\t{last}"
            written.add(folder.name)
        done += offsets.size - 1
        if progress is not None:
            progress(min(done, total), total)
    if progress is not None and done < total:
        progress(total, total)  # the symbols that had no bar to write
    if mode == "rewrite":
        for folder in sorted(p for p in features.iterdir() if p.is_dir()):
            if folder.name not in written:
                _reindex(folder, qfreq, old.calendar, calendar)
    calendars, instruments = out / "calendars", out / "instruments"
    calendars.mkdir(exist_ok=True)
    instruments.mkdir(exist_ok=True)
    merged = {**old.instruments, **lines}
    _replace(calendars / f"{qfreq}.txt", "".join(s + "\n" for s in _format(calendar, qfreq)),
             suffix)
    _replace(instruments / "all.txt", "".join(merged[c] + "\n" for c in sorted(merged)),
             suffix)
    if mode == "rewrite":
        (out / JOURNAL).write_text(json.dumps({"phase": "rename"}), encoding="utf-8")
        _finish_rewrite(out)
    first, last = _format(calendar[[0, -1]], qfreq)
    return dict(out=str(out), freq=qfreq, mode=mode, incremental=mode == "incremental",
                symbols=len(lines), calendar=len(calendar), first=first, last=last, **counts)


def _replace(path: Path, text: str, suffix: str):
    """Write a text file whole: through a temporary file and a rename (or, in a rewrite,
    to its ``.kdist-new`` file, renamed with the others)."""
    target = path.with_name(path.name + suffix) if suffix else path
    tmp = path.with_name(path.name + ".kdist-tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)


class _Series:
    """One symbol's bars: times (seconds) and float32 values, one column per :data:`_READ`
    field (``change`` is computed when written)."""

    def __init__(self, when: np.ndarray, values: np.ndarray):
        self.when, self.values = when, values

    @classmethod
    def read(cls, folder: Path, freq: str, calendar: np.ndarray) -> _Series:
        """What the directory holds for a symbol: the dates where any field has a value."""
        columns = {}
        for i, field in enumerate(_READ):
            path = folder / f"{field}.{freq}.bin"
            if path.exists():
                data = np.fromfile(path, dtype="<f4")
                if len(data):
                    columns[i] = (int(data[0]), data[1:])
        if not columns:
            return cls(np.array([], "int64"), np.empty((0, len(_READ)), "float32"))
        lo = min(start for start, _ in columns.values())
        hi = min(len(calendar), max(start + len(v) for start, v in columns.values()))
        values = np.full((hi - lo, len(_READ)), np.nan, "float32")
        for i, (start, data) in columns.items():
            n = min(len(data), hi - start)
            values[start - lo: start - lo + n, i] = data[:n]
        keep = ~np.isnan(values).all(axis=1)
        return cls(calendar[lo:hi][keep], values[keep])

    def merged(self, old: _Series, lo, hi) -> _Series:
        """These bars (read for the window ``[lo, hi)``) over the old ones outside it."""
        outside = np.zeros(len(old.when), bool)
        if lo is not None:
            outside |= old.when < lo
        if hi is not None:
            outside |= old.when >= hi
        when = np.concatenate([old.when[outside], self.when])
        values = np.concatenate([old.values[outside], self.values])
        order = np.argsort(when, kind="stable")
        return _Series(when[order], values[order])

    def columns(self, calendar: np.ndarray) -> tuple[int, dict[str, np.ndarray]]:
        """The start index and each field's values on the calendar from there."""
        at = np.searchsorted(calendar, self.when)
        first, n = int(at[0]), int(at[-1] - at[0] + 1)
        out = {}
        for i, field in enumerate(_READ):
            column = np.full(n, np.nan, "float32")
            column[at - first] = self.values[:, i]
            out[field] = column
        close = self.values[:, _READ.index("close")].astype("float64")
        change = np.full(len(close), np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            change[1:] = close[1:] / close[:-1] - 1.0
        column = np.full(n, np.nan, "float32")
        column[at - first] = change.astype("float32")
        out["change"] = column
        return first, out

    def write(self, folder: Path, freq: str, calendar: np.ndarray, suffix: str,
              compare: bool) -> str:
        """Write each field's bin; with ``compare`` only from the first value that differs
        from the file there. Returns ``appended``, ``rewritten`` or ``unchanged``."""
        folder.mkdir(parents=True, exist_ok=True)
        first, columns = self.columns(calendar)
        outcome = "unchanged"
        for field in FIELDS:
            data = np.concatenate([[np.float32(first)], columns[field]]).astype("<f4")
            path = folder / f"{field}.{freq}.bin"
            if suffix or not compare or not path.exists():
                data.tofile(path.with_name(path.name + suffix))
                outcome = "rewritten" if compare else outcome
                continue
            before = np.fromfile(path, dtype="<f4")
            a, b = data.view("<u4"), before.view("<u4")
            n = min(len(a), len(b))
            differs = np.flatnonzero(a[:n] != b[:n])
            at = int(differs[0]) if len(differs) else n
            if at == len(a) == len(b):
                continue
            with open(path, "r+b") as fp:
                fp.seek(4 * at)
                fp.write(data[at:].tobytes())
                fp.truncate()
            if at < len(b):
                outcome = "rewritten"
            elif outcome == "unchanged":
                outcome = "appended"
        return outcome


def _reindex(folder: Path, freq: str, old: np.ndarray, new: np.ndarray, skip=()):
    """Each bin of ``folder`` (but the ``skip`` fields) moved from the old calendar's
    positions to the new one's, to its ``.kdist-new`` file."""
    for path in sorted(folder.glob(f"*.{freq}.bin")):
        if path.name[: -len(f".{freq}.bin")] in skip:
            continue
        data = np.fromfile(path, dtype="<f4")
        if len(data) == 0:
            shutil.copyfile(path, path.with_name(path.name + _NEW))
            continue
        start, values = int(data[0]), data[1:]
        values = values[: max(0, len(old) - start)]
        if len(values) == 0:
            shutil.copyfile(path, path.with_name(path.name + _NEW))
            continue
        at = np.searchsorted(new, old[start: start + len(values)])
        column = np.full(int(at[-1] - at[0] + 1), np.nan, "float32")
        column[at - at[0]] = values
        np.concatenate([[np.float32(at[0])], column]).astype("<f4").tofile(
            path.with_name(path.name + _NEW))
