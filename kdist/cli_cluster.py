"""``kdist cluster certs|scheduler|worker``: a cluster's TLS certificates, and ``dask
scheduler`` / ``dask worker`` run with them (``--print`` shows the command instead).

Also ``--keep-cluster`` of ``kdist ingest`` / ``update``: the local cluster kept up after the
job, with its dashboard. See docs/deploy.md. The arguments shared with ``kdist ingest`` (``--certs``, ``--tls-*``) and
the argparse helpers are :mod:`kdist.cli`'s, which adds these commands to its parser.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys

from .cli import EXIT_FAILED, EXIT_OK, _add_tls, _command, _number, _Parser
from .errors import UsageError

__all__ = ["add_cluster"]


#: The examples ending each command's --help. ``cluster``: the three steps of a small TLS
#: cluster, in order (then ``kdist ingest ... --scheduler tls://sched.lan:8786 --certs certs/``).
_EXAMPLES = {
    "cluster": (
        "kdist cluster certs certs/ --host sched.lan",
        "kdist cluster scheduler --certs certs/ --host 0.0.0.0",
        "kdist cluster worker tls://sched.lan:8786 --certs certs/",
    ),
    "certs": (
        "kdist cluster certs certs/                       # localhost and 127.0.0.1 only",
        "kdist cluster certs certs/ --host sched.lan --host 10.0.0.5",
        "kdist cluster certs certs/ --host sched.lan --days 365 --force  # renew",
    ),
    "scheduler": (
        "kdist cluster scheduler --certs certs/                  # this machine only",
        "kdist cluster scheduler --certs certs/ --host 0.0.0.0   # workers elsewhere too",
        "kdist cluster scheduler --certs certs/ --print          # show the dask command",
    ),
    "worker": (
        "kdist cluster worker tls://sched.lan:8786 --certs certs/",
        "kdist cluster worker tls://10.0.0.5:8786 --certs certs/ --nthreads 4 --name w1",
        "kdist cluster worker tls://127.0.0.1:8786 --certs certs/ --print",
    ),
}


def add_cluster(sub):
    """``kdist cluster`` and its three commands, on the parser's subcommands ``sub``."""
    cluster = _command(
        sub, "cluster", "TLS certificates, and a TLS dask scheduler or worker",
        _EXAMPLES["cluster"], description="Make a cluster's TLS certificates and start dask scheduler / dask "
                    "worker with them. See docs/deploy.md.")
    csub = cluster.add_subparsers(dest="cluster_command", required=True, parser_class=_Parser)
    for add in (_add_cluster_certs, _add_cluster_scheduler, _add_cluster_worker):
        add(csub)


def _add_cluster_certs(csub):
    p = _command(csub, "certs", "make a CA and scheduler, worker and client certificates",
                 _EXAMPLES["certs"])
    p.add_argument("dir", metavar="DIR", help="directory to write (created if missing)")
    p.add_argument("--host", action="append", metavar="NAME_OR_IP",
                   help="a host name or IP of the machines, repeatable "
                        "(default: localhost and 127.0.0.1)")
    p.add_argument("--days", type=_number(int, 1, most=36500), default=825, metavar="N",
                   help="days the certificates are valid (default 825)")
    p.add_argument("--force", action="store_true",
                   help="replace existing certificates (an existing CA is kept)")
    p.set_defaults(func=cmd_cluster_certs)


def _add_cluster_scheduler(csub):
    p = _command(csub, "scheduler", "run dask scheduler with TLS", _EXAMPLES["scheduler"])
    _add_tls(p, "scheduler")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; the "
                        "machine's address or 0.0.0.0 to let workers on other machines in)")
    p.add_argument("--port", type=_number(int, 0, most=65535), default=8786, help="default 8786")
    p.add_argument("--dashboard-address", default="127.0.0.1:8787", metavar="HOST:PORT",
                   help="the dashboard, plain HTTP without login (default 127.0.0.1:8787)")
    p.add_argument("--print", action="store_true", help="print the dask command, do not run it")
    p.set_defaults(func=cmd_cluster_scheduler)


def _add_cluster_worker(csub):
    p = _command(csub, "worker", "run dask worker with TLS", _EXAMPLES["worker"])
    p.add_argument("address", metavar="ADDRESS", help="the scheduler, tls://HOST:PORT")
    _add_tls(p, "worker")
    p.add_argument("--nthreads", type=_number(int, 1), metavar="N",
                   help="threads (default: Dask's, the cores)")
    p.add_argument("--host", help="address to listen on (default: 127.0.0.1 for a scheduler "
                                  "on this machine, else the interface that reaches it)")
    p.add_argument("--name", help="worker name shown on the dashboard")
    p.add_argument("--print", action="store_true", help="print the dask command, do not run it")
    p.set_defaults(func=cmd_cluster_worker)


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


@contextlib.contextmanager
def kept_cluster(args):
    """``--keep-cluster``: the job runs on a local cluster started here, which stays up with
    its dashboard after the job (the summary's link still answers) until Enter or Ctrl-C.

    Only someone at a terminal can press Enter: without one (a pipe, cron, ``ssh host
    kdist ...``), or after the job was stopped by a signal, the cluster closes at once.
    """
    if not getattr(args, "keep_cluster", False):
        yield
        return
    from . import cli
    from .cluster import named_scheduler, resolve_cluster

    if args.scheduler not in (None, "local") or args.certs or args.tls_ca or (
            args.scheduler is None and named_scheduler()):
        raise UsageError("--keep-cluster keeps kdist's own local cluster: leave out "
                         "--scheduler ADDRESS, KDIST_SCHEDULER and certificates (a cluster of "
                         "yours stays up anyway)")
    with resolve_cluster("local", n_workers=args.workers, threads_per_worker=args.threads,
                         fallback=False, security=False if args.no_local_tls else None) as kept:
        args.scheduler = kept.client
        yield
        stop = cli._stop
        if stop is not None and stop.event.is_set():
            return  # stopped by a signal: closing is what was asked
        if sys.stdin is None or not sys.stdin.isatty():
            print("kdist: --keep-cluster: no terminal to wait on; closing the cluster",
                  file=sys.stderr)
            return
        if stop is not None:
            stop.signals = 0  # a Ctrl-C now means "close", not a second stop
        print(f"kdist: the cluster stays up, its dashboard at {kept.dashboard_link}; press "
              "Enter (or Ctrl-C) to close it", file=sys.stderr, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            sys.stdin.readline()
