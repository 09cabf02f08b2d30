"""The ``kdist`` command: a thin layer that parses arguments, calls the API and prints.

Exit codes: 0 every symbol ok or empty; 3 some symbols failed; 1 the job failed (nothing
imported, database locked or unusable, cluster lost, a TLS scheduler refused the
certificates); 2 bad usage (invalid symbols, dates, options, a ``tls://`` scheduler without
certificates); 130 stopped by SIGINT or SIGTERM (what finished is stored; the message names
the resume command); 141 the reader of the output went away (``kdist jobs | head``), quietly.
A kdist error is one line on stderr; ``--debug`` shows the traceback.

Every command's ``--help`` ends with examples. The ``cluster`` commands are in
:mod:`kdist.cli_cluster`, how output is printed (JSON, tables, no wrapping when stdout is not
a terminal) in :mod:`kdist.cli_format`.
"""

from __future__ import annotations

import argparse
import codecs
import logging
import math
import os
import re
import shlex
import signal
import sys
import threading
import unicodedata
import warnings

from . import __version__
from .cli_format import frame_json, frame_text, not_stored, print_json, rejected_rows
from .errors import JobFailedError, KdistError, UsageError
from .report import counted
from .runner import CALL_TIMEOUT, COOLDOWN, OVERLAP, RETRIES
from .store import DEFAULT_DB

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a job stopped by Ctrl-C
# 128 + SIGPIPE: what shells report for cat, seq or git when the reader of their output
# (head) has gone; not 0 (the output was not all delivered) nor 1 (here: the job failed).
EXIT_PIPE = 141


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line, like every kdist error: the usage of ingest alone is five lines.
        self.exit(EXIT_USAGE, f"kdist: error: {message} (see {self.prog} --help)\n")


def _options(pairs) -> dict:
    options = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--option expects KEY=VALUE, not {pair!r}")
        options[key.strip()] = value
    return options


def _number(cast, least, *, above: bool = False, most=None):
    """An argparse type: a finite number of at least ``least`` (above it, with ``above``).

    argparse turns the refusal into exit 2 and one line naming the option and the value,
    before anything is opened or recorded.
    """
    kind = "a whole number" if cast is int else "a number"
    bound = f"above {least:g}" if above else f"of at least {least:g}"
    if most is not None:
        bound = f"from {least:g} to {most:g}"

    def parse(text):
        try:
            value = cast(text)
        except ValueError:
            value = math.nan
        if (not math.isfinite(value) or value < least or (above and value == least)
                or (most is not None and value > most)):
            raise argparse.ArgumentTypeError(f"expected {kind} {bound}, not {text!r}")
        return value

    return parse


def _db_path(text: str) -> str:
    """An argparse type: a DuckDB file, not DuckDB's in-memory or MotherDuck names."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected the path of a DuckDB file, not ''")
    if text.startswith(":memory:"):
        raise argparse.ArgumentTypeError(
            f"{text!r} is a database that vanishes when kdist exits: give a file, "
            "e.g. data/kdist.duckdb")
    if text.startswith(("md:", "motherduck:")):
        raise argparse.ArgumentTypeError(
            f"{text!r} is a MotherDuck database: kdist writes a local file, e.g. data/kdist.duckdb")
    return text


#: Largest --symbols-file read: every listed security fits in well under a megabyte; a
#: bigger file is the wrong one (or /dev/zero), not worth filling memory with.
_SYMBOLS_FILE_BYTES = 16 * 2**20
#: Header names of the symbol column of a table of symbols: of a Windows export such as
#: "代码,名称,现价" only that column is read.
_SYMBOL_COLUMNS = frozenset(
    {"symbol", "symbols", "code", "ticker", "ts_code", "代码", "证券代码", "股票代码"})
#: Characters no text file holds (tab, line breaks and form feed excepted): binary data.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_ENCODING_NAMES = {"utf-8-sig": "UTF-8", "gbk": "GBK", "utf-16": "UTF-16"}


def _read_symbols_file(path, encoding: str | None = None) -> list[str]:
    """The symbols in a ``--symbols-file``; junk is a UsageError naming the file and line."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(_SYMBOLS_FILE_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"Cannot read --symbols-file {path}: {exc.strerror}") from None
    if len(raw) > _SYMBOLS_FILE_BYTES:
        raise UsageError(f"--symbols-file {path} is larger than {_SYMBOLS_FILE_BYTES >> 20} MB: "
                         "give a text file of symbols, one or more a line")
    lines = _decode_symbols_file(path, raw, encoding).splitlines()
    for number, line in enumerate(lines, 1):
        if bad := _CONTROL.search(line):
            raise UsageError(
                f"--symbols-file {path} is not a text file: line {number} holds the control "
                f"character {bad.group()!r}; give a text file of symbols, one or more a line")
    return _symbols_in(lines)


def _decode_symbols_file(path, raw: bytes, encoding: str | None) -> str:
    """The text of a symbols file: UTF-8 (with a BOM or not), UTF-16 with a BOM, else GBK."""
    if encoding:
        tried = [encoding]
    elif raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        tried = ["utf-16"]  # Excel's and Notepad's "Unicode text"
    else:
        # GBK (code page 936) is what Windows saves Chinese text in: A-share lists exported
        # there, with the names next to the codes.
        tried = ["utf-8-sig", "gbk"]
    failed = []
    for name in tried:
        try:
            return raw.decode(name).removeprefix("\ufeff")
        except LookupError:
            raise UsageError(f"Unknown --symbols-encoding {name!r}: name one Python knows, "
                             "e.g. utf-8, gbk, gb18030, big5 or utf-16") from None
        except UnicodeDecodeError as exc:
            failed.append((name, exc))
    # Name the line where the likelier encoding, the one that read furthest, broke down.
    name, exc = max(failed, key=lambda pair: pair[1].start)
    line = len((raw[:exc.start].decode(name, "replace") + "x").splitlines())
    names = [_ENCODING_NAMES.get(n, n) for n in tried]
    what = f"neither {' nor '.join(names)}" if len(names) > 1 else f"not {names[0]}"
    raise UsageError(
        f"Cannot read --symbols-file {path}: line {line} is {what} text (byte "
        f"0x{raw[exc.start]:02x}); save it as UTF-8, or name its encoding with --symbols-encoding")


def _symbols_in(lines: list[str]) -> list[str]:
    """The symbols of a symbols file's lines.

    Lines starting with ``#`` are comments. A table whose header names a symbol column
    (``symbol``, ``code``, ``代码``, ...) gives that column; otherwise every word between
    spaces, commas or semicolons is a symbol, except names in Chinese (words of CJK letters
    without a digit), which exports put next to the codes.
    """
    lines = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        return []
    sep = next((s for s in "\t,;" if s in lines[0]), None)  # None: runs of spaces
    header = [field.strip().strip("\"'").lower() for field in lines[0].split(sep)]
    column = next((i for i, name in enumerate(header) if name in _SYMBOL_COLUMNS), None)
    if column is not None:
        rows = (line.split(sep) for line in lines[1:])
        values = (row[column].strip().strip("\"'") for row in rows if len(row) > column)
        return [value for value in values if value]
    return [word for line in lines for word in re.split(r"[\s,;]+", line)
            if word and not _is_name(word)]


def _is_name(word: str) -> bool:
    """Whether ``word`` is a security's name in Chinese (浦发银行, 万科Ａ), not a code."""
    return (any(unicodedata.category(c) == "Lo" for c in word)
            and not any(c in "0123456789" for c in word))


def _read_symbols(args) -> list[str] | None:
    symbols = list(args.symbols)
    if args.symbols_encoding and not args.symbols_file:
        raise UsageError("--symbols-encoding is the encoding of a --symbols-file: give one")
    if args.symbols_file:
        symbols += _read_symbols_file(args.symbols_file, args.symbols_encoding)
    if args.all:
        if symbols:
            raise UsageError("Give symbols or --all, not both")
        return None
    if not symbols:
        raise UsageError("No symbols: name some, use --symbols-file F, or --all")
    return symbols


def _provider(args):
    """The provider the user named, or None for the default (for --resume: the job's)."""
    from .providers import get_provider

    options = _options(args.option)
    if args.provider is not None:
        return get_provider(args.provider, **options)
    if getattr(args, "resume", None) and options:
        return None  # --option alone changes the job's recorded options: ingest(options=)
    if options:
        return get_provider("synthetic", **options)
    return None


def _run_args(args) -> dict:
    """Keyword arguments shared by ingest and update."""
    from .progress import TerminalProgress

    if args.no_local_tls and args.certs:
        raise UsageError("Give --certs DIR or --no-local-tls, not both: the certificates are "
                         "for a tls:// scheduler, --no-local-tls for kdist's local cluster")
    return dict(
        db=args.db, client=args.scheduler, chunk_size=args.chunk_size,
        n_workers=args.workers, threads_per_worker=args.threads,
        fallback=not args.no_fallback, retries=args.retries, timeout=args.timeout,
        security=False if args.no_local_tls else args.certs,
        tls_ca=args.tls_ca, tls_cert=args.tls_cert, tls_key=args.tls_key,
        max_concurrency=args.max_concurrency, max_rate=args.max_rate, cooldown=args.cooldown,
        callback=None if (args.json or args.quiet) else TerminalProgress(),
        cancel=_cancel(),
    )


def _show_reports(args, reports) -> int:
    if args.json:
        print_json(reports[0].to_dict() if args.command == "ingest" else
                    [r.to_dict() for r in reports])
    elif not args.quiet:
        from .cli_format import console

        for report in reports:
            console().print(report.table())
    for report in reports:
        if report.note:
            print(f"kdist: {report.note}", file=sys.stderr)
    for report in reports:
        if report.status == "cancelled":
            return _interrupted(f"kdist ingest --resume {report.job_id} --db "
                                f"{shlex.quote(report.db)}")
    return EXIT_PARTIAL if any(r.symbols_failed or r.symbols_skipped for r in reports) else EXIT_OK


def cmd_ingest(args) -> int:
    from .runner import ingest

    if args.resume:
        if args.symbols or args.symbols_file or args.all or args.start:
            raise UsageError("--resume takes the job's own symbols and dates; give only --db")
        symbols = None
    else:
        if not args.start:
            raise UsageError("--start is required (or --resume JOB_ID)")
        symbols = _read_symbols(args)
    try:
        report = ingest(
            symbols, start=args.start, end=args.end, freq=args.freq, adjust=args.adjust,
            provider=_provider(args), split=args.split, skip_invalid=args.skip_invalid,
            incremental=args.incremental, overlap=args.overlap, resume=args.resume,
            options=_options(args.option) if args.resume else None,
            **({} if args.resume else {"actions": args.actions}), **_run_args(args),
        )
    except JobFailedError as exc:
        if args.json:
            print_json(exc.report.to_dict())
        raise
    return _show_reports(args, [report])


def cmd_update(args) -> int:
    from .runner import update

    # db comes with the shared arguments (passing it twice was a TypeError).
    reports = update(provider=args.provider, options=_options(args.option),
                     freq=args.freq, adjust=args.adjust,
                     end=args.end, overlap=args.overlap, actions=args.actions,
                     **_run_args(args))
    if not reports:
        print(f"Nothing stored for {args.freq} {args.adjust} in {args.db}", file=sys.stderr)
        return EXIT_OK
    from .horizons import outlook, update_line

    # Stored intraday series a vendor serves for a rolling look-back only: the bars that
    # not updating for --warn-days days would lose for good (kdist.horizons).
    horizon = outlook(args.db, args.warn_days)
    if args.quiet and not args.json:
        if horizon["bars_lost"] or horizon["passed"]:
            print(update_line(horizon), file=sys.stderr)  # cron mails what is on stderr
        return _show_reports(args, reports)
    if not args.json:
        code = _show_reports(args, reports)
        if (line := update_line(horizon)) is not None:
            print(line)
        return code
    print_json([{**r.to_dict(), "horizon": horizon} for r in reports])
    return _show_reports(argparse.Namespace(**{**vars(args), "json": False, "quiet": True}),
                         reports)  # the notes and the exit code, nothing on stdout


def cmd_jobs(args) -> int:
    from .store import jobs as recorded_jobs
    from .store import ledger as job_ledger

    jobs = recorded_jobs(args.db)
    if args.job_id:
        match = jobs[jobs["job_id"] == args.job_id]
        if match.empty:
            raise UsageError(f"No job {args.job_id!r} in {args.db}; 'kdist jobs' lists them")
        ledger = job_ledger(args.db, args.job_id)
        failed = ledger[ledger["status"] == "failed"]
        rejected = rejected_rows(ledger)
        if args.json:
            print_json({**frame_json(match)[0], "failed": frame_json(failed),
                        "rejected": rejected.to_dict("records")})
            return EXIT_OK
        print(match.T.to_string(header=False))
        if len(failed):
            print(f"\nfailed symbols ({len(failed)}):")
            print(frame_text(failed[["symbol", "attempts", "error_class", "error"]]))
        if len(rejected):
            print(f"\nsymbols with rejected rows ({len(rejected)}):")
            print(frame_text(rejected))
        return EXIT_OK
    if args.json:
        print_json(frame_json(jobs))
    elif jobs.empty:
        print(f"No jobs in {args.db}")
    else:
        cols = ["job_id", "status", "mode", "provider", "freq", "adjust", "n_symbols",
                "symbols_ok", "symbols_empty", "symbols_failed", "rows_written", "elapsed_s"]
        print(frame_text(jobs[cols]))
    return EXIT_OK


def cmd_show(args) -> int:
    from .schema import normalise_symbol, window_bounds
    from .store import load

    symbol = normalise_symbol(args.symbol, strict=False)
    if args.start and args.end:
        window_bounds(args.start, args.end)  # start after end: say so, not "no bars"
    bars = load(args.db, symbol, start=args.start, end=args.end, freq=args.freq,
                adjust=args.adjust, as_of=args.as_of, derive=False if args.stored else None)
    if bars.empty:
        print(not_stored(args.db, symbol, args.freq, args.adjust, args.start, args.end),
              file=sys.stderr)
        return EXIT_FAILED
    shown = bars.tail(args.tail) if args.tail else bars
    if args.json:
        print_json(frame_json(shown))
    else:
        print(f"{symbol} {args.freq} {args.adjust}: {counted(len(bars), 'bar')}, "
              f"{bars['ts'].iat[0]} .. {bars['ts'].iat[-1]}")
        print(frame_text(shown.drop(columns=["symbol"])))
    return EXIT_OK


def cmd_status(args) -> int:
    from .cli_format import status_text
    from .horizons import expiring, per_series, status_warnings
    from .store import Store

    with Store(args.db, read_only=True) as store:
        series = store.catalog()
        summary = store.summary(series)
        actions = store.actions_summary()
    if args.json:
        # Every series, as before the summary: for scripts; "horizon" is null unless the
        # vendor serves the series' freq for a rolling look-back only (kdist.horizons).
        rows = frame_json(series)
        for row, horizon in zip(rows, per_series(series, within_days=args.warn_days)):
            row["horizon"] = horizon
        print_json(rows)
        return EXIT_OK
    if series.empty:
        print(f"No bars in {args.db}")
    elif args.series:
        print(frame_text(series))
    else:
        print(status_text(summary, series, args.db, actions))
    alerts = status_warnings(expiring(series), args.warn_days)
    if alerts:
        print("\n" + "\n".join(alerts))
    return EXIT_OK


def _calendars(values: list[str] | None):
    """``--calendar XNYS`` (every series) or ``--calendar SOURCE_OR_SYMBOL=NAME`` (some)."""
    if not values:
        return None
    pairs = [v for v in values if "=" in v]
    if not pairs:
        if len(values) > 1:
            raise UsageError("--calendar NAME is given once; use --calendar KEY=NAME to set "
                             "the calendar of a source or a symbol")
        return values[0]
    if len(pairs) != len(values):
        raise UsageError("--calendar takes either one NAME or KEY=NAME pairs, not both")
    return _options(pairs)


def cmd_check(args) -> int:
    from .schema import normalise_symbol
    from .store import check, check_adjust, quality

    if args.symbols and not args.gaps:
        raise UsageError("Symbols are checked one by one only with --gaps: kdist check "
                         "--gaps SYMBOL ...")
    if args.gaps:
        symbols = [normalise_symbol(s, strict=False) for s in args.symbols] or None
        found = quality(args.db, symbols, args.freq, None, args.start, args.end,
                        calendar=_calendars(args.calendar), bar_time=args.bar_time,
                        record=not args.no_record)
        if args.json:
            print_json(found.to_dict(every_gap=args.every_gap))
        elif found.series.empty:
            which = ", ".join(symbols) if symbols else "any symbol"
            print(f"No daily or intraday bars of {which} in {args.db} to check")
        else:
            print(found.to_text())
        return EXIT_OK if found.ok else EXIT_FAILED
    if args.adjust:
        found = check_adjust(args.db, tolerance=args.tolerance)
        differ = found[found["differing"] > 0]
        if args.json:
            print_json(frame_json(found))
        elif found.empty:
            print(f"No symbol in {args.db} has both vendor-adjusted bars and corporate "
                  "actions to compare")
        else:
            print(f"{len(found):,} series compared: {len(differ)} differ by more "
                  f"than {args.tolerance:g}")
            if len(differ):
                print(frame_text(differ))
        return EXIT_FAILED if len(differ) else EXIT_OK
    result = check(args.db)
    if args.json:
        print_json(result)
    else:
        for key, value in result.items():
            print(f"{key:<20} {value}")
    return EXIT_OK if result["ok"] else EXIT_FAILED


def cmd_verify(args) -> int:
    from .progress import TerminalProgress
    from .schema import normalise_symbol
    from .verification import verify

    symbols = [normalise_symbol(s, strict=False) for s in args.symbols] or None
    if symbols and args.sample:
        raise UsageError("Give SYMBOLS or --sample N, not both")
    report = verify(
        args.db, args.against, symbols, sample=args.sample, seed=args.seed, start=args.start,
        end=args.end, freq=args.freq, adjust=args.adjust, tolerance=args.tolerance,
        options=_options(args.option), client=args.scheduler, chunk_size=args.chunk_size,
        max_concurrency=args.max_concurrency, max_rate=args.max_rate,
        callback=None if (args.json or args.quiet) else TerminalProgress(), cancel=_cancel())
    if args.json:
        print_json(report.to_dict())
    elif not args.quiet or not report.ok:
        print(report.to_text())
    if report.status == "cancelled":
        return _interrupted(None, "verify")
    if report.n_differences:  # suspended (information) never fails the run
        return EXIT_FAILED
    return EXIT_OK if report.ok else EXIT_PARTIAL


def cmd_export(args) -> int:
    from .exporting import export
    from .schema import normalise_symbol

    symbols = [normalise_symbol(s, strict=False) for s in args.symbols] or None
    bar = None
    if not (args.json or args.quiet) and sys.stderr.isatty():
        from rich.progress import Progress

        bar = Progress(transient=True)
    task = None

    def progress(done, total):
        nonlocal task
        if bar is None:
            return
        if task is None:
            bar.start()
            task = bar.add_task(f"export {args.format}", total=total)
        bar.update(task, completed=done)

    try:
        summary = export(args.db, args.out, args.format, symbols=symbols, start=args.start,
                         end=args.end, freq=args.freq, adjust=args.adjust,
                         overwrite=args.overwrite, progress=progress)
    except OSError as exc:  # a path that cannot be made or written
        raise UsageError(f"Cannot write the export to {args.out}: {exc.strerror or exc}; "
                         "choose a directory you can write") from exc
    finally:
        if bar is not None:
            bar.stop()
    if args.json:
        print_json(summary)
    elif not args.quiet:
        print(f"{summary['format']}: {summary.get('symbols', 0):,} symbols, "
              f"{summary.get('bars', 0):,} bars -> {summary['path']}")
        if summary.get("missing"):
            print(f"no bars in the window for {', '.join(summary['missing'][:5])}",
                  file=sys.stderr)
    return EXIT_OK


def cmd_actions(args) -> int:
    from .schema import normalise_symbol
    from .store import corporate_actions

    symbols = [normalise_symbol(s, strict=False) for s in args.symbols] or None
    actions = corporate_actions(args.db, symbols, args.start, args.end, history=args.history)
    if args.json:
        print_json(frame_json(actions))
    elif actions.empty:
        which = ", ".join(symbols) if symbols else "any symbol"
        print(f"No corporate actions of {which} in {args.db}: they are fetched with raw bars "
              "(kdist ingest/update --actions)", file=sys.stderr)
        return EXIT_FAILED
    else:
        columns = [c for c in actions.columns
                   if args.history or c not in ("valid_from", "valid_to", "job_id")]
        print(frame_text(actions[columns]))
    return EXIT_OK


def cmd_providers(args) -> int:
    from .providers import available_providers

    rows = available_providers()
    if args.json:
        print_json(rows)
        return EXIT_OK
    for row in rows:
        state = "installed" if row["installed"] else f'pip install "kdist[{row["extra"]}]"'
        print(f"{row['name']:<10} {state:<28} {row['description']}")
        for key, text in (row.get("options") or {}).items():
            print(f"{'':<12}--option {key}=...  {text}")
        if row["installed"]:
            print(f"{'':<12}{_conventions(row)}")
    return EXIT_OK


def _conventions(row: dict) -> str:
    """How a provider's bars are checked: calendar, intraday stamps, look-back limits."""
    text = "calendar: " + (row["calendar"] or "each symbol's exchange")
    if any(f.endswith("m") and f != "1M" for f in row["freqs"]):
        stamps = {"end": "at their end", "start": "at their start"}.get(
            row["bar_time"], "as the files show")
        text += f"; intraday bars stamped {stamps}"
    limits: dict[str, list[str]] = {}  # the same limit of several freqs said once
    for freq, h in row["horizons"].items():
        said = ", ".join(filter(None, [h["days"] and f"the last {h['days']} days",
                                       h["earliest"] and f"from {h['earliest']}"]))
        limits.setdefault(said, []).append(freq)
    if limits:
        text += "; served: " + "; ".join(f"{' '.join(freqs)} {said}"
                                        for said, freqs in limits.items())
    return text


#: Date forms --start and --end take (what :func:`kdist.schema.to_date` reads), as --help
#: lists them; a time of day is dropped, and the year must lie in 1800..2200.
DATE_FORMS = ("2024-01-02", "20240102", "2024/01/02", "2024-01", "2024")
_DATES = (f"{', '.join(DATE_FORMS[:3])}, or {DATE_FORMS[3]} / {DATE_FORMS[4]} for the first "
          "day of a month / year")


#: The examples ending each command's --help: real command lines, as typed (a ``# note``
#: after one is fine).
_EXAMPLES = {
    "kdist": (
        "kdist ingest 600000.SH 000001.SZ --start 2024-01-01",
        "kdist update --quiet   # from cron",
        "kdist status",
        "kdist show 600000.SH --tail 5",
    ),
    "ingest": (
        "kdist ingest 600000.SH 000001.SZ --start 2020-01-01 --end 2024-12-31",
        "kdist ingest --symbols-file hs300.txt --start 20240101 --freq 1w --adjust qfq",
        "kdist ingest --all --provider tdx --option root=/mnt/tdx --start 2024-01-01",
        "kdist ingest --resume 20240105-173012-3f9a1c   # finish a stopped job",
    ),
    "update": (
        "kdist update --db data/kdist.duckdb --quiet   # daily bars, e.g. from cron",
        "kdist update --freq 1w --adjust qfq",
        "kdist update --end 2024-12-31 --scheduler tcp://10.0.0.5:8786",
        "kdist update --freq 1m --provider yfinance --warn-days 3   # and what 3 days off lose",
    ),
    "jobs": (
        "kdist jobs",
        "kdist jobs 20240105-173012-3f9a1c   # its failed symbols and why",
        "kdist jobs --json --db data/kdist.duckdb",
    ),
    "show": (
        "kdist show 600000.SH",
        "kdist show sz000001 --freq 1w --adjust qfq --tail 0   # every weekly bar",
        "kdist show 600000.SH --adjust qfq --as-of 2024-06-28   # as known that day",
        "kdist show 600000.SH --start 2024-01-01 --end 2024-03-31 --json",
    ),
    "export": (
        "kdist export parquet exports/bars --adjust qfq   # hive-partitioned by freq/adjust/year",
        "kdist export qlib ~/.qlib/qlib_data/kdist --start 2015-01-01",
        "kdist export parquet exports/minutes 600000.SH --freq 5m --overwrite",
    ),
    "verify": (
        "kdist verify --against baostock --sample 50   # 50 stored 1d series, bar by bar",
        "kdist verify --against csv --option root=exports 600000.SH --start 2024-01-01",
        "kdist verify --against akshare --tolerance 0.01 --json   # exit 1 on differences",
    ),
    "actions": (
        "kdist actions 600000.SH",
        "kdist actions 600000.SH --start 2020-01-01 --history   # superseded factors too",
        "kdist actions --json --db data/kdist.duckdb",
    ),
    "status": (
        "kdist status",
        "kdist status --series                  # one row per symbol, freq and adjust",
        "kdist status --json --db data/kdist.duckdb",
        "kdist status --warn-days 14            # warn 2 weeks before minute bars expire",
    ),
    "check": (
        "kdist check --json --db data/kdist.duckdb   # exit 1 when anything is wrong",
        "kdist check --adjust   # vendor qfq/hfq bars against the derived ones",
        "kdist check --gaps   # missing, suspended and off-calendar bars; exit 1 if missing",
        "kdist check --gaps 600000.SH --freq 5m --calendar csv=XSHG --json",
    ),
    "providers": (
        "kdist providers",
        "kdist providers --json",
    ),
}


def _command(sub, name: str, help: str, examples: tuple[str, ...] | None = None, **kwargs):
    """Add the subcommand ``name``, its --help ending with ``examples`` (default: the
    command's in :data:`_EXAMPLES`)."""
    return sub.add_parser(
        name, help=help, description=kwargs.pop("description", help[0].upper() + help[1:]),
        epilog=_epilog(_EXAMPLES[name] if examples is None else examples),
        formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)


def _epilog(examples) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in examples)


def _add_db(p):
    p.add_argument("--db", default=DEFAULT_DB, type=_db_path,
                   help=f"DuckDB file (default {DEFAULT_DB})")


def _add_bars(p):
    p.add_argument("--freq", default="1d", help="1d 1w 1M 1m 5m 15m 30m 60m (default 1d)")
    p.add_argument("--adjust", default="none", help="none qfq hfq (default none)")


def _add_tls(p, role: str):
    p.add_argument("--certs", metavar="DIR",
                   help=f"directory from 'kdist cluster certs' (uses ca.pem, {role}.pem, "
                        f"{role}-key.pem)")
    p.add_argument("--tls-ca", metavar="FILE", help="or: the cluster's CA certificate")
    p.add_argument("--tls-cert", metavar="FILE", help=f"and the {role} certificate")
    p.add_argument("--tls-key", metavar="FILE", help=f"and the {role} key")


def _add_cluster_options(p):
    """Where a run's tasks go: the scheduler, its certificates, the local cluster's size."""
    p.add_argument("--scheduler", metavar="ADDRESS|local|sync",
                   help="scheduler address, 'local' or 'sync' (default $KDIST_SCHEDULER or local)")
    _add_tls(p, "client")
    p.add_argument("--no-local-tls", action="store_true",
                   help="start the local cluster over plain TCP, not TLS: every user of "
                        "this machine can then run code on it (also KDIST_LOCAL_TLS=0)")
    p.add_argument("--workers", type=_number(int, 1), metavar="N", help="local cluster workers")
    p.add_argument("--threads", type=_number(int, 1), metavar="N", help="threads per local worker")
    p.add_argument("--chunk-size", type=_number(int, 1), metavar="N", help="symbols per task")
    p.add_argument("--no-fallback", action="store_true",
                   help="fail instead of running locally when the scheduler is unusable")
    p.add_argument("--keep-cluster", action="store_true",
                   help="keep the local cluster and its dashboard up after the job, until "
                        "Enter or Ctrl-C")


def _add_run_options(p):
    """The options ingest and update share: the end, the bars, the provider, the cluster
    and the calls, in the order their --help lists them."""
    p.add_argument("--end", metavar="D",
                   help=f"last day, inclusive (default today): {_DATES}")
    _add_bars(p)
    p.add_argument("--provider", help="provider name (default synthetic)")
    p.add_argument("--option", action="append", metavar="KEY=VALUE", help="provider option")
    _add_db(p)
    _add_cluster_options(p)
    p.add_argument("--retries", type=_number(int, 1), default=RETRIES, metavar="N",
                   help=f"attempts per symbol for transient errors (default {RETRIES})")
    p.add_argument("--timeout", type=_number(float, 0), default=CALL_TIMEOUT, metavar="S",
                   help=f"seconds one provider call may take (default {CALL_TIMEOUT:g}; "
                        "0: no limit)")
    p.add_argument("--overlap", type=_number(int, 1), default=OVERLAP, metavar="N",
                   help=f"bars re-fetched before the last stored one (default {OVERLAP})")
    p.add_argument("--actions", action=argparse.BooleanOptionalAction, default=None,
                   help="also fetch corporate actions (dividends, bonus shares, splits, the "
                        "vendor's factors), from which qfq/hfq are derived (default: with "
                        "raw bars from a provider that serves them)")
    p.add_argument("--max-concurrency", type=_number(int, 1), metavar="N",
                   help="provider calls in flight across the cluster (default: per vendor)")
    p.add_argument("--max-rate", type=_number(float, 0, above=True), metavar="R",
                   help="provider calls started per second across the cluster")
    p.add_argument("--cooldown", type=_number(float, 0), default=COOLDOWN, metavar="S",
                   help="pause after repeated connection drops before trying again "
                        f"(default {COOLDOWN:g})")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")


def _add_ingest(sub):
    p = _command(sub, "ingest", "import bars into the database")
    p.add_argument("symbols", nargs="*", metavar="SYMBOL",
                   help="symbols to import: A-shares as 600000.SH, sh600000, 600000.SS or a "
                        "bare code such as 000001 (its exchange guessed); other tickers as "
                        "the provider knows them (AAPL, 0700.HK for yfinance)")
    p.add_argument("--symbols-file", metavar="F",
                   help="file of symbols, one or more a line, in UTF-8 or GBK; of a table "
                        "with a symbol, code or 代码 column only that column; names in "
                        "Chinese next to the codes are skipped")
    p.add_argument("--symbols-encoding", metavar="NAME",
                   help="the encoding of --symbols-file, e.g. big5 (default: UTF-8, else GBK)")
    p.add_argument("--all", action="store_true", help="every symbol the provider lists")
    p.add_argument("--start", metavar="D",
                   help=f"first day (required unless --resume): {_DATES}")
    _add_run_options(p)
    p.add_argument("--split", default="chunks", choices=["chunks", "per-worker"],
                   help="how symbols become tasks: chunks (default: several small ones per "
                        "worker thread, so a slow one does not hold the job up) or "
                        "per-worker (one contiguous slice per worker, for comparison)")
    p.add_argument("--skip-invalid", action="store_true",
                   help="record invalid symbols as failed and import the rest")
    p.add_argument("--incremental", action="store_true",
                   help="fetch stored symbols from their last bars on")
    p.add_argument("--resume", metavar="JOB_ID",
                   help="finish a job: fetch only its symbols not yet ok or empty")
    p.set_defaults(func=cmd_ingest)


def _add_update(sub):
    p = _command(sub, "update", "bring every stored symbol up to date (for cron)")
    _add_run_options(p)
    p.add_argument("--warn-days", type=_number(int, 0), default=7, metavar="N",
                   help="say how many stored intraday bars would be lost for good if no "
                        "update ran for N days (vendors with a rolling look-back; default 7)")
    p.set_defaults(func=cmd_update)


def _add_jobs(sub):
    p = _command(sub, "jobs", "list jobs, or show one job's failed symbols")
    p.add_argument("job_id", nargs="?", metavar="JOB_ID",
                   help="one job: its record, failed symbols and rejected rows")
    _add_db(p)
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=cmd_jobs)


def _add_show(sub):
    p = _command(sub, "show", "print a symbol's stored bars")
    p.add_argument("symbol", metavar="SYMBOL", help="a stored symbol, in any accepted form")
    _add_db(p)
    _add_bars(p)
    p.add_argument("--start", metavar="D", help=f"first day: {_DATES}")
    p.add_argument("--end", metavar="D", help=f"last day, inclusive: {_DATES}")
    p.add_argument("--tail", type=_number(int, 0), default=10, metavar="N",
                   help="last N bars (0: all)")
    p.add_argument("--as-of", metavar="D",
                   help="qfq/hfq as known at the end of that day: its factors, no later bar")
    p.add_argument("--stored", action="store_true",
                   help="the vendor's qfq/hfq bars as stored, not derived from raw bars")
    p.add_argument("--json", action="store_true", help="print the bars as JSON")
    p.set_defaults(func=cmd_show)


def _add_actions(sub):
    p = _command(sub, "actions", "list stored corporate actions and adjustment factors")
    p.add_argument("symbols", nargs="*", metavar="SYMBOL", help="symbols (default: all)")
    _add_db(p)
    p.add_argument("--start", metavar="D", help=f"first ex-date: {_DATES}")
    p.add_argument("--end", metavar="D", help=f"last ex-date, inclusive: {_DATES}")
    p.add_argument("--history", action="store_true",
                   help="superseded versions too (valid_from, valid_to)")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=cmd_actions)


def _add_status(sub):
    p = _command(sub, "status", "what is stored, per source, freq and adjust")
    _add_db(p)
    p.add_argument("--series", action="store_true",
                   help="one row per symbol, freq and adjust: kind, bars, first and last bar, "
                        "source, mixed, updated")
    p.add_argument("--json", action="store_true", help="print every series as JSON")
    p.add_argument("--warn-days", type=_number(int, 0), default=7, metavar="N",
                   help="warn of stored intraday series whose vendor stops serving their "
                        "next bars unless updated within N days (default 7)")
    p.set_defaults(func=cmd_status)


def _add_export(sub):
    p = _command(sub, "export", "write stored bars as a Parquet dataset or qlib's layout")
    p.add_argument("format", choices=["parquet", "qlib"],
                   help="parquet: a hive-partitioned dataset (freq/adjust/year); qlib: "
                        "calendars/, instruments/, features/*.bin")
    p.add_argument("out", metavar="DIR", help="where to write")
    p.add_argument("symbols", nargs="*", metavar="SYMBOL", help="only these (default: all)")
    _add_db(p)
    _add_bars(p)
    p.add_argument("--start", metavar="D", help=f"first day: {_DATES}")
    p.add_argument("--end", metavar="D", help=f"last day, inclusive: {_DATES}")
    p.add_argument("--overwrite", action="store_true",
                   help="parquet: replace the dataset an earlier export wrote in DIR; qlib "
                        "updates its directory in place without it")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=cmd_export)


def _add_verify(sub):
    p = _command(sub, "verify", "compare stored bars with a second provider's, bar by bar")
    p.add_argument("symbols", nargs="*", metavar="SYMBOL",
                   help="stored symbols to compare (default: every stored one, or --sample)")
    p.add_argument("--against", required=True, metavar="PROVIDER",
                   help="the second provider (e.g. baostock, akshare, yfinance, csv)")
    p.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="an option of that provider (repeatable), e.g. root=DIR for csv")
    _add_db(p)
    _add_bars(p)
    p.add_argument("--sample", type=_number(int, 1), metavar="N",
                   help="N stored symbols chosen at random (the same N with the same --seed)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="of --sample (default 0)")
    p.add_argument("--start", metavar="D", help=f"first day: {_DATES} (default: each "
                                                "symbol's first stored bar)")
    p.add_argument("--end", metavar="D", help=f"last day, inclusive: {_DATES}")
    p.add_argument("--tolerance", type=_number(float, 0), default=0.005, metavar="X",
                   help="relative price difference allowed above a cent (default 0.005)")
    p.add_argument("--scheduler", metavar="ADDRESS|local|sync",
                   help="where to fetch (default: as kdist ingest chooses)")
    p.add_argument("--chunk-size", type=_number(int, 1), metavar="N", help="symbols per task")
    p.add_argument("--max-concurrency", type=_number(int, 1), metavar="N",
                   help="calls in flight at once (default: the provider's)")
    p.add_argument("--max-rate", type=_number(float, 0, above=True), metavar="R",
                   help="calls started per second (default: the provider's)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar; print only when something differs")
    p.set_defaults(func=cmd_verify)


def _add_check(sub):
    p = _command(sub, "check", "prove the stored bars have no duplicates or bad values")
    p.add_argument("symbols", nargs="*", metavar="SYMBOL", help="with --gaps: only these")
    _add_db(p)
    p.add_argument("--gaps", action="store_true",
                   help="instead: list the sessions each daily or intraday series lacks "
                        "(missing, suspended) and bars off its exchange's calendar, with "
                        "completeness per series; recorded in the file")
    p.add_argument("--freq", help="with --gaps: only this freq (1d or a minute freq)")
    p.add_argument("--start", metavar="D", help=f"with --gaps: first day: {_DATES}")
    p.add_argument("--end", metavar="D", help=f"with --gaps: last day, inclusive: {_DATES}")
    p.add_argument("--calendar", action="append", metavar="[KEY=]NAME",
                   help="with --gaps: an exchange_calendars name (XSHG, XNYS, XHKG...) for "
                        "every series, or KEY=NAME for a source or symbol (repeatable); "
                        "default: each symbol's exchange, or its provider's calendar")
    p.add_argument("--bar-time", choices=["end", "start"],
                   help="with --gaps: intraday bars are stamped at their end or start "
                        "(default: the provider's convention, or what the bars show)")
    p.add_argument("--no-record", action="store_true",
                   help="with --gaps: do not record the result in the file")
    p.add_argument("--every-gap", action="store_true",
                   help="with --gaps --json: every missing session or minute, not only runs")
    p.add_argument("--adjust", action="store_true",
                   help="instead: compare stored vendor qfq/hfq bars with the ones derived "
                        "from raw bars and corporate actions, and list symbols that differ")
    p.add_argument("--tolerance", type=_number(float, 0), default=0.01, metavar="X",
                   help="with --adjust: a price difference allowed, the vendor's rounding "
                        "(default 0.01, A-share prices)")
    p.add_argument("--json", action="store_true", help="print the counts as JSON")
    p.set_defaults(func=cmd_check)


def _add_providers(sub):
    p = _command(sub, "providers", "list data providers and how to install them")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=cmd_providers)


def build_parser() -> argparse.ArgumentParser:
    from .cli_cluster import add_cluster

    parser = _Parser(
        prog="kdist", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Import K-line bars on a Dask cluster into DuckDB.\n"
                    "'kdist COMMAND --help' shows a command's options and examples.",
        epilog=_epilog(_EXAMPLES["kdist"]))
    parser.add_argument("--version", action="version", version=f"kdist {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in (_add_ingest, _add_update, _add_jobs, _add_show, _add_actions, _add_status,
                _add_check, _add_verify, _add_export, _add_providers, add_cluster):
        add(sub)
    return parser


def _one_line_warning(message, category, filename, lineno, line=None):
    return f"kdist: warning: {message}\n"


#: Libraries whose own log lines go to :func:`log_path`, not the terminal (``--debug``
#: leaves them on stderr): Dask's cluster errors, the dashboard's web server.
_NOISY = ("distributed", "tornado", "bokeh")


def log_path() -> str:
    """Where the command writes Dask's, Tornado's and Bokeh's log: ``$KDIST_LOG``, else
    ``kdist.log`` in the user's state directory (``$XDG_STATE_HOME``, ``~/.local/state``)."""
    if os.environ.get("KDIST_LOG"):
        return os.environ["KDIST_LOG"]
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                            "state")
    return os.path.join(state, "kdist", "kdist.log")


def _logs_to_file():
    """Send the cluster's library logs to :func:`log_path`; kdist says what matters itself.

    On the terminal they were tracebacks of a cluster that failed (kdist says it in one
    line) and a dashboard browser tab's disconnect landing inside the progress bar. Dask sets
    levels and a handler on several of its loggers (``distributed.client`` among them), so
    each is reached; their records go to the file through the three parents.
    """
    import dask
    import distributed  # noqa: F401  (importing it applies Dask's logging setup first)

    path = log_path()
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        handler: logging.Handler = logging.FileHandler(path, encoding="utf-8")
    except OSError:  # nowhere to write: the lines are dropped, never shown
        handler = logging.NullHandler()
    handler.setFormatter(logging.Formatter(
        "%(asctime)s %(process)d %(name)s %(levelname)s: %(message)s"))
    names = {*_NOISY, *dask.config.get("distributed.logging", {}), *(
        name for name in logging.root.manager.loggerDict if name.startswith(_NOISY))}
    for name in names:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if isinstance(h, logging.StreamHandler)]:
            logger.removeHandler(old)
        if name in _NOISY:
            logger.addHandler(handler)
            logger.propagate = False  # never to the root's stderr handler
        else:
            logger.propagate = True  # Dask turns it off where it sets a handler


class _Stop:
    """The handler of SIGTERM and SIGINT: stop the job, keep what finished, exit 130.

    While the runner's loop watches the event (``kdist_watched``) the handler only sets it:
    an exception raised inside a DuckDB write interrupts the write ("Query interrupted")
    instead of stopping the job cleanly. Before that, it raises ``KeyboardInterrupt``. A
    second signal while the job is being stopped is noted, not raised; a third ends the
    process at once (DuckDB's write-ahead log keeps the file whole).
    """

    def __init__(self):
        self.event = threading.Event()
        self.signals = 0

    def __call__(self, signum, frame):
        self.signals += 1
        if self.signals >= 3:
            os._exit(EXIT_INTERRUPTED)
        if self.signals == 2:
            print("kdist: stopping: writing what finished (signal again to abandon it)",
                  file=sys.stderr)
            return
        self.event.set()
        if not getattr(self.event, "kdist_watched", False):
            raise KeyboardInterrupt


_stop: _Stop | None = None


def _cancel() -> threading.Event | None:
    """The event a signal sets to stop the running job (None outside ``main``)."""
    return _stop.event if _stop is not None else None


def _interrupted(resume: str | None, command: str = "ingest") -> int:
    if command not in ("ingest", "update"):
        print("kdist: interrupted", file=sys.stderr)  # nothing was being imported
        return EXIT_INTERRUPTED
    resume = resume or "kdist ingest --resume JOB_ID (see kdist jobs)"
    print(f"kdist: interrupted; finished batches are stored; finish with: {resume}",
          file=sys.stderr)
    return EXIT_INTERRUPTED


def _stdout_closed() -> bool:
    """Whether the reader of stdout has gone, so a BrokenPipeError is not some socket's."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return False  # not a file (a test's capture): the broken pipe is something else's
    import select

    if not hasattr(select, "poll"):
        return True
    poll = select.poll()
    poll.register(fd, 0)  # errors and hang-ups are reported whatever is asked
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poll.poll(0))


def _silence_stdout():
    """Point stdout at devnull: Python flushes it again at exit, which would print
    "Exception ignored ... BrokenPipeError" (docs.python.org, signal, "Note on SIGPIPE")."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def main(argv=None) -> int:
    """Run the ``kdist`` command; return its exit code."""
    args = build_parser().parse_args(argv)
    if not args.debug:
        warnings.formatwarning = _one_line_warning
        if args.command in ("ingest", "update"):
            _logs_to_file()
    global _stop
    previous = {}
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (kill, systemd, a cron timeout) stops a job like Ctrl-C: finished batches
        # are committed and the job is marked cancelled, ready for --resume.
        _stop = _Stop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, _stop)
    from .cli_cluster import kept_cluster  # it imports this module

    try:
        with kept_cluster(args):
            code = args.func(args)
            sys.stdout.flush()  # a reader that has gone (| head) shows here, not at exit
        return code
    except BrokenPipeError:
        if not _stdout_closed():
            raise
        _silence_stdout()
        return EXIT_PIPE
    except KdistError as exc:
        if args.debug:
            raise
        print(f"kdist: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        return _interrupted(getattr(exc, "kdist_resume", None), args.command)
    except RuntimeError as exc:
        if str(exc) != "Query interrupted":
            raise
        # A signal that landed inside a DuckDB statement: DuckDB reports it this way.
        return _interrupted(None, args.command)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _stop = None


if __name__ == "__main__":
    sys.exit(main())
