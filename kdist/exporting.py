"""Stored bars out of the DuckDB file, for the tools people backtest with.

``kdist.export(db, out, format=...)`` (``kdist export FORMAT OUT``) writes:

``parquet``
    a Parquet dataset, hive-partitioned by ``freq``, ``adjust`` and ``year``
    (``out/freq=1d/adjust=none/year=2024/data_<uuid>.parquet``), written by DuckDB's own
    ``COPY ... (FORMAT parquet, PARTITION_BY ...)`` chunk by chunk of symbols; pandas,
    pyarrow, polars and DuckDB read it back. Columns ``symbol, ts, open, high, low, close,
    volume, amount, source`` (qfq/hfq derived as :func:`kdist.load` derives them). One
    directory holds one dataset; other freqs and adjust modes of it are kept when one is
    exported again. The export is written beside ``out`` and put in its place at the end,
    so a failed or interrupted one leaves ``out`` as it was.
``qlib``
    qlib's on-disk layout (:mod:`kdist.qlib`), always backward-adjusted with qlib's factor.

Each chunk of symbols is read with a store opened for that read alone, so an import writing
the file meanwhile gets its turn between chunks. zipline takes a bundle registered in its
``extension.py`` instead (:mod:`kdist.zipline`), and backtrader a feed (:mod:`kdist.feeds`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd

from .errors import UsageError
from .schema import Adjust, Freq, read_symbols

__all__ = ["FORMATS", "export"]

FORMATS = ("parquet", "qlib")
#: Daily bars' symbols per chunk: a progress step, and a bound on a read's memory (about
#: 440 bytes a bar in pandas: 250 symbols x 10 years is about 280 MB). Minute freqs take as
#: many bars' worth of symbols (a 1-minute chunk is one symbol).
CHUNK = 250


def export(db, out, format: str = "parquet", *, symbols=None, start=None, end=None,
           freq="1d", adjust="none", overwrite: bool = False, progress=None) -> dict:
    """Write the stored bars of ``db`` to ``out`` in ``format`` (see the module docstring).

    ``symbols``/``start``/``end``/``freq``/``adjust`` choose the bars, as for
    :func:`kdist.load` (qlib's layout holds hfq prices and qlib's factor whatever the
    adjust: ``qfq`` is refused for it). An ``out`` holding the same freq and adjust of a
    Parquet dataset is refused unless ``overwrite``; a directory holding anything else is
    refused. qlib's directory is updated in place, as qlib's ``dump_update`` does.
    ``progress(done, total)`` is called as chunks of symbols are done. Returns a summary:
    format, path, symbols, bars (and files, for Parquet).

    Raises
    ------
    UsageError
        An unknown format, symbols with nothing stored, no bars in the window, an ``out``
        that is a file or holds what is not an export: nothing is written.
    """
    if format not in FORMATS:
        raise UsageError(f"Unknown export format {format!r}: choose one of "
                         f"{', '.join(FORMATS)} (zipline: register a bundle with "
                         "kdist.zipline.register in zipline's extension.py)")
    freq, adjust = Freq.parse(freq), Adjust.parse(adjust)
    if format == "qlib":
        if adjust is Adjust.QFQ:
            raise UsageError("qlib's layout holds backward-adjusted (hfq) prices and qlib's "
                             "factor ($close / $factor is the raw close): leave --adjust out")
        from .qlib import write_qlib

        summary = write_qlib(db, out, symbols=symbols, start=start, end=end, freq=freq,
                             progress=progress)
        return {"format": "qlib", "path": str(out), **summary}
    out = Path(out)
    names = _chosen(db, symbols, freq, adjust)
    part = Path(f"freq={freq.value}") / f"adjust={adjust.value}"
    _check_target(out, part, overwrite)
    staging = out.parent / f".{out.name}.kdist-export"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        bars = _write_all(db, names, staging, start, end, freq, adjust, progress)
        if not bars:
            raise UsageError(f"No {freq.value} {adjust.value} bars of the {len(names)} "
                             f"symbol(s) between {start or 'the first'} and {end or 'the last'}"
                             f" in {db}: nothing to export")
        _put_in_place(staging, out, part)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    files = sorted((out / part).rglob("*.parquet"))
    return {"format": "parquet", "path": str(out), "symbols": len(names), "bars": bars,
            "files": len(files)}


def _chosen(db, symbols, freq: Freq, adjust: Adjust) -> list[str]:
    """The symbols to export: those a read of ``freq``/``adjust`` returns bars of (derived
    ones included); a symbol asked for with nothing stored is refused."""
    from .store import reading

    with reading(db) as store:
        names = set(store.series(freq, adjust)["symbol"])
        if adjust is not Adjust.NONE:
            # Derived weeks and months are built from the derived days.
            days = Freq.DAY if freq in (Freq.WEEK, Freq.MONTH) else freq
            names |= set(store.series(days, Adjust.NONE)["symbol"]) & store.derivable()
    if symbols is None:
        if not names:
            raise UsageError(f"No {freq.value} {adjust.value} bars of any symbol in {db}: "
                             "'kdist status' lists what is stored")
        return sorted(names)
    wanted = read_symbols(symbols)
    missing = [s for s in wanted if s not in names]
    if missing:
        raise UsageError(f"No {freq.value} {adjust.value} bars of {', '.join(missing[:5])}"
                         f"{' and more' if len(missing) > 5 else ''} in {db}: 'kdist status "
                         "--series' lists what is stored")
    return sorted(set(wanted))


def _check_target(out: Path, part: Path, overwrite: bool):
    """``out`` is a directory for a dataset: new, empty, or one of kdist's (its ``freq=``
    directories), not holding ``part`` already unless ``overwrite``."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file: export into a directory")
    if not out.exists() or not any(out.iterdir()):
        return
    foreign = [p.name for p in out.iterdir() if not p.name.startswith("freq=")]
    if foreign:
        raise UsageError(f"{out} holds {', '.join(sorted(foreign)[:3])}, not only a kdist "
                         "Parquet dataset: choose another directory")
    if (out / part).exists() and not overwrite:
        raise UsageError(f"{out} already holds {part.as_posix()}: choose a new directory, or "
                         "pass --overwrite to replace it")


def _write_all(db, names, staging: Path, start, end, freq: Freq, adjust: Adjust,
               progress) -> int:
    """Every chunk of symbols into the dataset at ``staging``; the bars written."""
    from .store import reading

    size = CHUNK if not freq.intraday else max(1, CHUNK * freq.minutes // 240)
    if progress is not None:
        progress(0, len(names))
    bars = 0
    for at in range(0, len(names), size):
        chunk = names[at:at + size]
        with reading(db) as store:  # one short read: an import may write between chunks
            frame = store.load(chunk, start, end, freq, adjust)
            if len(frame):
                staging.mkdir(parents=True, exist_ok=True)
                _write(store.con, frame.assign(freq=freq.value, adjust=adjust.value), staging)
        bars += len(frame)
        if progress is not None:
            progress(min(at + size, len(names)), len(names))
    return bars


def _put_in_place(staging: Path, out: Path, part: Path):
    """The written ``freq=F/adjust=A`` of ``staging`` replaces ``out``'s (other freqs and
    adjust modes stay), a rename on the same file system."""
    target = out / part
    target.parent.mkdir(parents=True, exist_ok=True)
    old = target.parent / f".{target.name}.kdist-old"
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(staging / part, target)
    shutil.rmtree(old, ignore_errors=True)


def _write(con, frame: pd.DataFrame, out: Path):
    """One chunk's bars into the dataset: DuckDB's COPY, partitioned by freq, adjust and
    year, new files beside those of earlier chunks."""
    con.register("kdist_export", frame)
    try:
        con.sql(
            """SELECT symbol, ts, open, high, low, close, volume, amount, source, freq, adjust,
                      year(ts) AS year
               FROM kdist_export ORDER BY symbol, ts""").write_parquet(
            str(out), partition_by=["freq", "adjust", "year"], filename_pattern="data_{uuid}",
            append=True)
    finally:
        con.unregister("kdist_export")
