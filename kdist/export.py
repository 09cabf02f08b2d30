"""Stored bars out of the DuckDB file, for the tools people backtest with.

``kdist.export(db, out, format=...)`` (``kdist export FORMAT OUT``) writes:

``parquet``
    a Parquet dataset, hive-partitioned by ``freq``, ``adjust`` and ``year``
    (``out/freq=1d/adjust=none/year=2024/data_<uuid>.parquet``), written by DuckDB's own
    ``COPY ... (FORMAT parquet, PARTITION_BY ...)`` chunk by chunk of symbols; pandas,
    pyarrow, polars and DuckDB read it back. Columns ``symbol, ts, open, high, low, close,
    volume, amount, source`` (qfq/hfq derived as :func:`kdist.load` derives them).
``qlib``
    qlib's on-disk layout (:mod:`kdist.qlib`).

zipline takes a bundle registered in its ``extension.py`` instead (:mod:`kdist.zipline`),
and backtrader a feed (:mod:`kdist.feeds`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from .errors import UsageError
from .schema import Adjust, Freq, parse_symbols

__all__ = ["FORMATS", "export"]

FORMATS = ("parquet", "qlib")
#: Symbols per chunk: a progress step, and a bound on a derived read's memory.
CHUNK = 500


def export(db, out, format: str = "parquet", *, symbols=None, start=None, end=None,
           freq="1d", adjust="none", overwrite: bool = False, progress=None) -> dict:
    """Write the stored bars of ``db`` to ``out`` in ``format`` (see the module docstring).

    ``symbols``/``start``/``end``/``freq``/``adjust`` choose the bars, as for
    :func:`kdist.load`. An existing, non-empty ``out`` is refused unless ``overwrite``
    (Parquet: replaced when it holds only a dataset kdist wrote; qlib: updated in place, as
    qlib's ``dump_update`` does). ``progress(done, total)`` is called after each chunk of
    symbols. Returns a summary: format, path, symbols, bars (and files, for Parquet).
    """
    from .store import Store

    if format not in FORMATS:
        raise UsageError(f"Unknown export format {format!r}: choose one of "
                         f"{', '.join(FORMATS)} (zipline: register a bundle with "
                         "kdist.zipline.register in zipline's extension.py)")
    if format == "qlib":
        from .qlib import write_qlib

        return write_qlib(db, out, symbols=symbols, start=start, end=end, freq=freq,
                          progress=progress)
    freq, adjust = Freq.parse(freq), Adjust.parse(adjust)
    out = Path(out)
    _prepare(out, overwrite)
    with Store(db, read_only=True) as store:
        names = _stored(store, symbols, freq, adjust)
        if not names:
            raise UsageError(f"No {freq.value} {adjust.value} bars of "
                             f"{'those symbols' if symbols else 'any symbol'} in {db}: "
                             "'kdist status' lists what is stored")
        out.mkdir(parents=True, exist_ok=True)
        bars = 0
        for at in range(0, len(names), CHUNK):
            chunk = names[at:at + CHUNK]
            frame = store.load(chunk, start, end, freq, adjust)
            bars += len(frame)
            if len(frame):
                _write(store.con, frame.assign(freq=freq.value, adjust=adjust.value), out)
            if progress is not None:
                progress(min(at + CHUNK, len(names)), len(names))
    files = sorted(out.rglob("*.parquet"))
    return {"format": "parquet", "path": str(out), "symbols": len(names), "bars": bars,
            "files": len(files)}


def _prepare(out: Path, overwrite: bool):
    """Refuse to mix a new export with what ``out`` holds; with ``overwrite`` remove a
    dataset kdist wrote there before (and nothing else)."""
    if not out.exists() or not any(out.iterdir()):
        return
    if not overwrite:
        raise UsageError(f"{out} is not empty: choose a new directory, or pass --overwrite "
                         "to replace the dataset a kdist export wrote there")
    foreign = [p.name for p in out.iterdir() if not p.name.startswith("freq=")]
    if foreign:
        raise UsageError(f"{out} holds {', '.join(sorted(foreign)[:3])}, not only a kdist "
                         "Parquet dataset: choose another directory")
    shutil.rmtree(out)


def _stored(store, symbols, freq: Freq, adjust: Adjust) -> list[str]:
    """The symbols a read of ``freq``/``adjust`` returns bars of (derived ones included)."""
    wanted = None
    if symbols is not None:
        wanted = set(parse_symbols([symbols] if isinstance(symbols, str) else symbols,
                                   strict=False)[0])
    names = set(store.series(freq, adjust)["symbol"])
    if adjust is not Adjust.NONE:
        names |= set(store.series(freq, Adjust.NONE)["symbol"]) & store.derivable()
    return sorted(names if wanted is None else names & wanted)


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

