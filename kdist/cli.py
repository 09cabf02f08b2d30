"""The ``kdist`` command: a thin layer that parses arguments, calls the API and prints.

Exit codes: 0 every symbol ok or empty; 3 some symbols failed; 1 the job failed (nothing
imported, database locked or unusable, cluster lost, a TLS scheduler refused the
certificates); 2 bad usage (invalid symbols, dates, options, a ``tls://`` scheduler without
certificates). A kdist error is one line on stderr; ``--debug`` shows the traceback.

``kdist cluster certs|scheduler|worker`` make a cluster's TLS certificates and run
``dask scheduler`` / ``dask worker`` with them (``--print`` shows the command instead).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import signal
import sys
import threading
import warnings

from . import __version__
from .errors import JobFailedError, KdistError, UsageError
from .store import DEFAULT_DB

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"kdist: error: {message}\n")


def _options(pairs) -> dict:
    options = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--option expects KEY=VALUE, not {pair!r}")
        options[key.strip()] = value
    return options


def _read_symbols(args) -> list[str] | None:
    symbols = list(args.symbols)
    if args.symbols_file:
        try:
            with open(args.symbols_file, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise UsageError(f"Cannot read --symbols-file {args.symbols_file}: {exc.strerror}")
        symbols += [s for line in text.splitlines() for s in line.replace(",", " ").split()
                    if not line.lstrip().startswith("#")]
    if args.all:
        if symbols:
            raise UsageError("Give symbols or --all, not both")
        return None
    if not symbols:
        raise UsageError("No symbols: name some, use --symbols-file F, or --all")
    return symbols


def _print_json(obj):
    print(json.dumps(obj, default=str, ensure_ascii=False, indent=2))


def _frame_json(frame):
    return json.loads(frame.to_json(orient="records", date_format="iso", force_ascii=False))


def _provider(args):
    """The provider the user named, or None for the default (for --resume: the job's)."""
    from .providers import get_provider

    options = _options(args.option)
    if args.provider is not None:
        return get_provider(args.provider, **options)
    if getattr(args, "resume", None) and options:
        # --option alone changes the job's recorded provider options (e.g. a timeout).
        from .store import Store

        with Store(args.db, read_only=True) as store:
            job = store.job(args.resume)
        return get_provider(job["provider"], **{**job["provider_options"], **options})
    if options:
        return get_provider("synthetic", **options)
    return None


def _run_args(args) -> dict:
    """Keyword arguments shared by ingest and update."""
    from .progress import TerminalProgress

    return dict(
        db=args.db, client=args.scheduler, chunk_size=args.chunk_size,
        n_workers=args.workers, threads_per_worker=args.threads,
        fallback=not args.no_fallback, retries=args.retries, timeout=args.timeout,
        security=args.certs, tls_ca=args.tls_ca, tls_cert=args.tls_cert, tls_key=args.tls_key,
        max_concurrency=args.max_concurrency, max_rate=args.max_rate, cooldown=args.cooldown,
        callback=None if (args.json or args.quiet) else TerminalProgress(),
    )


def _show_reports(args, reports) -> int:
    if args.json:
        _print_json(reports[0].to_dict() if args.command == "ingest" else
                    [r.to_dict() for r in reports])
    elif not args.quiet:
        from rich.console import Console

        for report in reports:
            Console().print(report.table())
    for report in reports:
        if report.note:
            print(f"kdist: {report.note}", file=sys.stderr)
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
            **_run_args(args),
        )
    except JobFailedError as exc:
        if args.json:
            _print_json(exc.report.to_dict())
        raise
    return _show_reports(args, [report])


def cmd_update(args) -> int:
    from .runner import update

    # db comes with the shared arguments (passing it twice was a TypeError).
    reports = update(provider=args.provider, options=_options(args.option),
                     freq=args.freq, adjust=args.adjust,
                     end=args.end, overlap=args.overlap, **_run_args(args))
    if not reports:
        print(f"Nothing stored for {args.freq} {args.adjust} in {args.db}", file=sys.stderr)
        return EXIT_OK
    return _show_reports(args, reports)


def cmd_jobs(args) -> int:
    from .store import Store

    with Store(args.db, read_only=True) as store:
        if args.job_id:
            jobs = store.jobs()
            match = jobs[jobs["job_id"] == args.job_id]
            if match.empty:
                raise UsageError(f"No job {args.job_id!r} in {args.db}; 'kdist jobs' lists them")
            failed = store.job_symbols(args.job_id, status="failed")
            if args.json:
                _print_json({**_frame_json(match)[0], "failed": _frame_json(failed)})
                return EXIT_OK
            print(match.T.to_string(header=False))
            if len(failed):
                print(f"\nfailed symbols ({len(failed)}):")
                print(failed[["symbol", "attempts", "error_class", "error"]].to_string(index=False))
            return EXIT_OK
        jobs = store.jobs()
    if args.json:
        _print_json(_frame_json(jobs))
    elif jobs.empty:
        print(f"No jobs in {args.db}")
    else:
        cols = ["job_id", "status", "mode", "provider", "freq", "adjust", "n_symbols",
                "symbols_ok", "symbols_empty", "symbols_failed", "rows_written", "elapsed_s"]
        print(jobs[cols].to_string(index=False))
    return EXIT_OK


def cmd_show(args) -> int:
    from .schema import normalise_symbol
    from .store import load

    symbol = normalise_symbol(args.symbol)
    bars = load(args.db, symbol, start=args.start, end=args.end, freq=args.freq, adjust=args.adjust)
    if bars.empty:
        print(f"No {args.freq} {args.adjust} bars for {symbol} in {args.db}", file=sys.stderr)
        return EXIT_FAILED
    shown = bars.tail(args.tail) if args.tail else bars
    if args.json:
        _print_json(_frame_json(shown))
    else:
        print(f"{symbol} {args.freq} {args.adjust}: {len(bars)} bars, "
              f"{bars['ts'].iat[0]} .. {bars['ts'].iat[-1]}")
        print(shown.drop(columns=["symbol"]).to_string(index=False))
    return EXIT_OK


def cmd_status(args) -> int:
    from .store import Store

    with Store(args.db, read_only=True) as store:
        summary = store.catalog()
    if args.json:
        _print_json(_frame_json(summary))
    elif summary.empty:
        print(f"No bars in {args.db}")
    else:
        print(summary.to_string(index=False))
    return EXIT_OK


def cmd_check(args) -> int:
    from .store import check

    result = check(args.db)
    if args.json:
        _print_json(result)
    else:
        for key, value in result.items():
            print(f"{key:<20} {value}")
    return EXIT_OK if result["ok"] else EXIT_FAILED


def cmd_providers(args) -> int:
    from .providers import available_providers

    rows = available_providers()
    if args.json:
        _print_json(rows)
        return EXIT_OK
    for row in rows:
        state = "installed" if row["installed"] else f'pip install "kdist[{row["extra"]}]"'
        print(f"{row['name']:<10} {state:<28} {row['description']}")
        for key, text in (row.get("options") or {}).items():
            print(f"{'':<12}--option {key}=...  {text}")
    return EXIT_OK


def cmd_cluster_certs(args) -> int:
    from .security import make_certs

    made = make_certs(args.dir, hosts=args.host or None, days=args.days, force=args.force)
    d = args.dir.rstrip("/") or "/"
    ca = "a new CA" if made["new_ca"] else f"the CA already in {d}"
    print(f"Certificates for {', '.join(made['hosts'])}, signed by {ca}, valid until "
          f"{made['not_after']:%Y-%m-%d}, in {d}/:")
    rows = [
        ("ca.pem", "CA certificate", "every machine"),
        ("ca-key.pem", "CA key (0600)", "stays here: it signs new certificates"),
        ("scheduler.pem scheduler-key.pem", "scheduler", "the scheduler machine"),
        ("worker.pem worker-key.pem", "workers", "every worker machine"),
        ("client.pem client-key.pem", "client", "the machine with the database (kdist ingest)"),
    ]
    for files, what, where in rows:
        print(f"  {files:<33} {what:<15} -> {where}")
    remote = [h for h in made["hosts"] if h not in ("localhost", "127.0.0.1", "::1")]
    host = remote[0] if remote else "127.0.0.1"
    listen = f" --host {shlex.quote(host)}" if remote else ""
    address = f"tls://{f'[{host}]' if ':' in host else host}:8786"  # IPv6 in brackets
    certs = shlex.quote(str(d))
    print("Next (see docs/deploy.md; the scheduler is assumed on the first host given):\n"
          f"  kdist cluster scheduler --certs {certs}{listen}\n"
          f"  kdist cluster worker {address} --certs {certs}\n"
          f"  kdist ingest 600000.SH --start 2024-01-01 --scheduler {address} --certs {certs}")
    return EXIT_OK


def _start(command: list[str], args, note: str) -> int:
    """Print the ``dask`` command (``--print``), or replace this process with it."""
    if args.print:
        print(shlex.join(command))
        return EXIT_OK
    print(f"kdist: {note}\nkdist: running: {shlex.join(command)}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    # exec, not a child: Ctrl-C, SIGTERM and a service manager reach Dask directly.
    os.execv(command[0], command)
    return EXIT_FAILED  # not reached


def cmd_cluster_scheduler(args) -> int:
    from .security import scheduler_command

    command = scheduler_command(args.certs, tls_ca=args.tls_ca, tls_cert=args.tls_cert,
                                tls_key=args.tls_key, host=args.host, port=args.port,
                                dashboard_address=args.dashboard_address)
    host = args.host if args.host not in ("0.0.0.0", "::", "") else "THIS_HOST"
    port = args.port or "PORT"  # 0: Dask picks one, shown in its "Scheduler at:" line
    certs = f"--certs {args.certs}" if args.certs else "--tls-ca ... --tls-cert ... --tls-key ..."
    return _start(command, args,
                  f"clients connect with --scheduler tls://{host}:{port} {certs} "
                  "(their client certificates)")


def cmd_cluster_worker(args) -> int:
    from .security import worker_command

    command = worker_command(args.address, args.certs, tls_ca=args.tls_ca,
                             tls_cert=args.tls_cert, tls_key=args.tls_key,
                             nthreads=args.nthreads, host=args.host, name=args.name)
    return _start(command, args, f"starting a worker of {args.address}")


def _tls_args(p, role: str):
    p.add_argument("--certs", metavar="DIR",
                   help=f"directory from 'kdist cluster certs' (uses ca.pem, {role}.pem, "
                        f"{role}-key.pem)")
    p.add_argument("--tls-ca", metavar="FILE", help="or: the cluster's CA certificate")
    p.add_argument("--tls-cert", metavar="FILE", help=f"and the {role} certificate")
    p.add_argument("--tls-key", metavar="FILE", help=f"and the {role} key")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="kdist", description="Import K-line bars on a Dask cluster into DuckDB.")
    parser.add_argument("--version", action="version", version=f"kdist {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def db_arg(p):
        p.add_argument("--db", default=DEFAULT_DB, help=f"DuckDB file (default {DEFAULT_DB})")

    def bars_args(p):
        p.add_argument("--freq", default="1d", help="1d 1w 1M 1m 5m 15m 30m 60m (default 1d)")
        p.add_argument("--adjust", default="none", help="none qfq hfq (default none)")

    def run_args(p):
        p.add_argument("--provider", help="provider name (default synthetic)")
        p.add_argument("--option", action="append", metavar="KEY=VALUE", help="provider option")
        db_arg(p)
        p.add_argument("--scheduler", metavar="ADDRESS|local|sync",
                       help="scheduler address, 'local' or 'sync' "
                            "(default $KDIST_SCHEDULER or local)")
        _tls_args(p, "client")
        p.add_argument("--workers", type=int, metavar="N", help="local cluster workers")
        p.add_argument("--threads", type=int, metavar="N", help="threads per local worker")
        p.add_argument("--chunk-size", type=int, metavar="N", help="symbols per task")
        p.add_argument("--no-fallback", action="store_true",
                       help="fail instead of running locally when the scheduler is unusable")
        p.add_argument("--retries", type=int, default=3, metavar="N",
                       help="attempts per symbol for transient errors (default 3)")
        p.add_argument("--timeout", type=float, default=60.0, metavar="S",
                       help="seconds one provider call may take (default 60)")
        p.add_argument("--overlap", type=int, default=3, metavar="N",
                       help="bars re-fetched before the last stored one (default 3)")
        p.add_argument("--max-concurrency", type=int, metavar="N",
                       help="provider calls in flight across the cluster (default: per vendor)")
        p.add_argument("--max-rate", type=float, metavar="R",
                       help="provider calls started per second across the cluster")
        p.add_argument("--cooldown", type=float, default=60.0, metavar="S",
                       help="pause after repeated connection drops before trying again "
                            "(default 60)")
        p.add_argument("--json", action="store_true", help="print the report as JSON")
        p.add_argument("--quiet", action="store_true", help="no progress bar or summary")

    p = sub.add_parser("ingest", help="import bars into the database")
    p.add_argument("symbols", nargs="*", metavar="SYMBOL")
    p.add_argument("--symbols-file", metavar="F", help="file of symbols (one or more a line)")
    p.add_argument("--all", action="store_true", help="every symbol the provider lists")
    p.add_argument("--start", metavar="D", help="first day (required unless --resume)")
    p.add_argument("--end", metavar="D", help="inclusive (default today)")
    bars_args(p)
    run_args(p)
    p.add_argument("--split", default="chunks", choices=["chunks", "per-worker"])
    p.add_argument("--skip-invalid", action="store_true",
                   help="record invalid symbols as failed and import the rest")
    p.add_argument("--incremental", action="store_true",
                   help="fetch stored symbols from their last bars on")
    p.add_argument("--resume", metavar="JOB_ID",
                   help="finish a job: fetch only its symbols not yet ok or empty")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("update", help="bring every stored symbol up to date (for cron)")
    p.add_argument("--end", metavar="D", help="inclusive (default today)")
    bars_args(p)
    run_args(p)
    p.set_defaults(func=cmd_update)

    p = sub.add_parser("jobs", help="list jobs, or show one job's failed symbols")
    p.add_argument("job_id", nargs="?")
    db_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_jobs)

    p = sub.add_parser("show", help="print a symbol's stored bars")
    p.add_argument("symbol")
    db_arg(p)
    bars_args(p)
    p.add_argument("--start", metavar="D")
    p.add_argument("--end", metavar="D")
    p.add_argument("--tail", type=int, default=10, metavar="N", help="last N bars (0: all)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("status", help="what is stored, per symbol, freq and adjust")
    db_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("check", help="prove the stored bars have no duplicates or bad values")
    db_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("providers", help="list data providers and how to install them")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_providers)

    cluster = sub.add_parser(
        "cluster", help="TLS certificates, and a TLS dask scheduler or worker",
        description="Make a cluster's TLS certificates and start dask scheduler / dask "
                    "worker with them. See docs/deploy.md.")
    csub = cluster.add_subparsers(dest="cluster_command", required=True, parser_class=_Parser)
    p = csub.add_parser("certs", help="make a CA and scheduler, worker and client certificates")
    p.add_argument("dir", metavar="DIR", help="directory to write (created if missing)")
    p.add_argument("--host", action="append", metavar="NAME_OR_IP",
                   help="a host name or IP of the machines, repeatable "
                        "(default: localhost and 127.0.0.1)")
    p.add_argument("--days", type=int, default=825, metavar="N",
                   help="days the certificates are valid (default 825)")
    p.add_argument("--force", action="store_true",
                   help="replace existing certificates (an existing CA is kept)")
    p.set_defaults(func=cmd_cluster_certs)

    p = csub.add_parser("scheduler", help="run dask scheduler with TLS")
    _tls_args(p, "scheduler")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; the "
                        "machine's address or 0.0.0.0 to let workers on other machines in)")
    p.add_argument("--port", type=int, default=8786, help="default 8786")
    p.add_argument("--dashboard-address", default="127.0.0.1:8787", metavar="HOST:PORT",
                   help="the dashboard, plain HTTP without login (default 127.0.0.1:8787)")
    p.add_argument("--print", action="store_true", help="print the dask command, do not run it")
    p.set_defaults(func=cmd_cluster_scheduler)

    p = csub.add_parser("worker", help="run dask worker with TLS")
    p.add_argument("address", metavar="ADDRESS", help="the scheduler, tls://HOST:PORT")
    _tls_args(p, "worker")
    p.add_argument("--nthreads", type=int, metavar="N", help="threads (default: Dask's, the cores)")
    p.add_argument("--host", help="address to listen on (default: 127.0.0.1 for a scheduler "
                                  "on this machine, else the interface that reaches it)")
    p.add_argument("--name", help="worker name shown on the dashboard")
    p.add_argument("--print", action="store_true", help="print the dask command, do not run it")
    p.set_defaults(func=cmd_cluster_worker)
    return parser


def _one_line_warning(message, category, filename, lineno, line=None):
    return f"kdist: warning: {message}\n"


def _quiet_dask():
    """Dask logs its own tracebacks when a cluster fails; kdist says it in one line.

    Dask sets levels on several of its loggers (``distributed.client`` among them), so
    silencing the parent is not enough.
    """
    import dask
    import distributed  # noqa: F401  (importing it applies Dask's logging levels first)

    names = {"distributed", *dask.config.get("distributed.logging", {}), *(
        name for name in logging.root.manager.loggerDict if name.startswith("distributed"))}
    for name in names:
        if name.startswith("distributed"):
            logging.getLogger(name).setLevel(logging.CRITICAL)


def _terminate(signum, frame):
    # SIGTERM (kill, systemd, a cron timeout) stops a job like Ctrl-C: finished batches are
    # committed and the job is marked cancelled, ready for --resume.
    raise KeyboardInterrupt


def main(argv=None) -> int:
    """Run the ``kdist`` command; return its exit code."""
    args = build_parser().parse_args(argv)
    if not args.debug:
        warnings.formatwarning = _one_line_warning
        if args.command in ("ingest", "update"):
            _quiet_dask()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return args.func(args)
    except KdistError as exc:
        if args.debug:
            raise
        print(f"kdist: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        resume = getattr(exc, "kdist_resume", "kdist ingest --resume JOB_ID (see kdist jobs)")
        print(f"kdist: interrupted; finished batches are stored; finish with: {resume}",
              file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
