"""How the ``kdist`` command prints: JSON, tables of frames, rich tables, what is stored
(``kdist status``, and what ``kdist show`` says when the bars asked for are not).

Output that is not a terminal (a file, a pipe, cron's mail, a log) is never wrapped: a rich
table gets an unlimited width there, so a long path stays on one line for ``grep`` and the
reader; pandas' ``to_string`` does not wrap. Counts read ``1 symbol``, ``2 symbols``
(:func:`kdist.report.counted`); a volume that is a whole number prints as one (``4468100``,
not ``4468100.0``), the stored float unchanged.
"""

from __future__ import annotations

import json
import math
import sys

from .report import counted, reasons

#: Width given to rich when stdout is not a terminal: wide enough never to wrap a line.
UNWRAPPED = 1_000_000


def print_json(obj):
    print(json.dumps(obj, default=str, ensure_ascii=False, indent=2))


def frame_json(frame):
    return json.loads(frame.to_json(orient="records", date_format="iso", force_ascii=False))


def is_terminal(stream=None) -> bool:
    """Whether ``stream`` (stdout) is a terminal; a test's capture or a closed file is not."""
    try:
        return (stream or sys.stdout).isatty()
    except (AttributeError, ValueError, OSError):
        return False


def console():
    """A rich console on stdout: the terminal's width, or unwrapped when not a terminal.

    A reader that went away (``| head``) raises BrokenPipeError, as ``print`` does, for the
    command to end quietly (rich's own handling exits 1, which means "the job failed").
    """
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self):
            raise BrokenPipeError

    return _Console(width=None if is_terminal() else UNWRAPPED)


def whole(value) -> str:
    """A number as it reads best: ``4468100`` for a whole float, ``12.5`` otherwise."""
    value = float(value)
    if math.isfinite(value) and value.is_integer():
        return f"{value:.0f}"
    return str(value)


def frame_text(frame) -> str:
    """A frame as a plain table without its index, volumes as whole numbers where whole."""
    formatters = {"volume": whole} if "volume" in frame.columns else None
    return frame.to_string(index=False, formatters=formatters)


def day(ts) -> str:
    """``2024-01-02`` for a midnight, ``2024-01-02 09:31:00`` for a time of day."""
    return str(ts.date()) if ts == ts.normalize() else str(ts)


def stored_text(series) -> str:
    """What a catalog's rows hold, one phrase each: ``1d none (2024-01-02..2024-03-29, 61
    bars), 1w none (...)``."""
    return ", ".join(
        f"{row.freq} {row.adjust} ({day(row.first)}..{day(row.last)}, {counted(row.bars, 'bar')})"
        for row in series.itertuples())


def rejected_rows(ledger):
    """One row per symbol of a job's ledger with rejected rows: how many, and why."""
    import pandas as pd

    rows = ledger[ledger["rejected_rows"].fillna(0) > 0]
    return pd.DataFrame({
        "symbol": rows["symbol"].tolist(),
        "rejected_rows": rows["rejected_rows"].astype("int64").tolist(),
        "reasons": [reasons(json.loads(text or "{}"), sep="; ") for text in rows["rejected"]],
    })


def not_stored(db, symbol: str, freq, adjust, start=None, end=None) -> str:
    """Why ``kdist show`` found no bars, in one line: what is stored for the symbol instead
    (``stored: 1d none (2020-01-02..2024-12-31, 1,186 bars)``) and how to show it."""
    from .schema import Adjust, Freq, to_date
    from .store import catalog

    freq, adjust = Freq.parse(freq).value, Adjust.parse(adjust).value
    series = catalog(db)
    series = series[series["symbol"] == symbol]
    if series.empty:
        return (f"No bars for {symbol} in {db}, of any freq or adjust; "
                "'kdist status --series' lists the symbols stored")
    start, end = (to_date(d).date() if d else None for d in (start, end))
    window = (f" from {start} to {end}" if start and end else f" from {start} on" if start
              else f" up to {end}" if end else "")
    said = f"No {freq} {adjust} bars for {symbol}{window} in {db}; stored: {stored_text(series)}"
    if ((series["freq"] == freq) & (series["adjust"] == adjust)).any():
        return f"{said}; give --start and --end within that span"
    first = series.iloc[0]
    return f"{said}; show them with --freq {first['freq']} --adjust {first['adjust']}"


def status_text(summary, series, db, actions=None) -> str:
    """``kdist status``: one row per source, freq and adjust, then a line of totals, and a
    line per source of corporate actions (``actions``, :meth:`Store.actions_summary`)."""
    import pandas as pd

    shown = summary.rename(columns={"updated": "last update"}).copy()
    for column in ("first", "last"):
        shown[column] = [day(ts) for ts in shown[column]]
    shown["last update"] = ["-" if pd.isna(ts) else f"{ts:%Y-%m-%d %H:%M}"
                            for ts in shown["last update"]]
    symbols = series["symbol"].nunique()
    text = (f"{frame_text(shown)}\n\n{len(series):,} series of "
            f"{counted(symbols, 'symbol')} in {db}; 'kdist status --series' lists each")
    for row in ([] if actions is None else actions.itertuples()):
        text += (f"\ncorporate actions from {row.source}: {counted(row.symbols, 'symbol')}, "
                 f"{counted(row.events, 'event')} in force"
                 + (f", {row.superseded:,} superseded" if row.superseded else "")
                 + f", last fetched {row.checked:%Y-%m-%d %H:%M}; qfq/hfq derived "
                 "('kdist actions' lists them)")
    return text
