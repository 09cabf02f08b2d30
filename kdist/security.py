"""Certificates for TLS clusters, and the Dask ``Security`` and commands that use them.

A Dask worker runs whatever its scheduler sends it, so a scheduler reachable from a network
must only let in machines that prove they belong. kdist's answer is Dask's own mutual TLS:
one certificate authority (CA) for the cluster and certificates signed by it, which
:func:`make_certs` writes to one directory::

    ca.pem                               the CA certificate: every machine
    ca-key.pem                           the CA key: signs certificates; never leaves this directory
    scheduler.pem, scheduler-key.pem     the scheduler machine
    worker.pem, worker-key.pem           every worker machine
    client.pem, client-key.pem           the machine that runs kdist ingest (it has the database)

Every connection (client to scheduler, scheduler to worker, worker to worker) is encrypted
and both ends must show a certificate signed by the CA; anything else is refused during the
handshake. Dask checks the CA, not host names, so the names in the certificates
(``hosts``, default ``localhost`` and ``127.0.0.1``) document where they are meant to be used.
Keys are written readable by their owner only (0600).

:func:`scheduler_command` and :func:`worker_command` build the ``dask scheduler`` /
``dask worker`` command lines that use these files (``kdist cluster scheduler`` and
``kdist cluster worker`` run them); :func:`client_security` builds the
``distributed.security.Security`` of the client from a directory or three file names.
:func:`local_security` makes the same kind of credentials in memory for each local cluster
kdist starts: on a shared machine, 127.0.0.1 is reachable by every local user.
``cryptography`` and ``distributed`` are imported only when these functions are called.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from .errors import KdistError, UsageError

__all__ = [
    "DEFAULT_HOSTS",
    "ROLES",
    "TLSFiles",
    "cert_files",
    "client_security",
    "local_security",
    "make_certs",
    "scheduler_command",
    "worker_command",
]

#: Names written into the certificates when no ``hosts`` are given.
DEFAULT_HOSTS = ("localhost", "127.0.0.1")
#: The certificates :func:`make_certs` writes, besides the CA's.
ROLES = ("scheduler", "worker", "client")
CA_CERT, CA_KEY = "ca.pem", "ca-key.pem"
#: Days a new certificate is valid, and a new CA at least.
DAYS, CA_DAYS = 825, 3650
DEFAULT_PORT = 8786

_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.?)+$")
# Clocks of different machines disagree a little: a certificate made a minute ago on the CA
# machine must already be valid on a worker whose clock runs behind.
_SKEW = _dt.timedelta(minutes=5)


@dataclass(frozen=True)
class TLSFiles:
    """The three files one machine needs: the CA certificate, its certificate and its key."""

    ca: Path
    cert: Path
    key: Path


def cert_files(directory, role: str = "client") -> TLSFiles:
    """Return the files of ``role`` (``scheduler``, ``worker`` or ``client``) in ``directory``."""
    if role not in ROLES:
        raise UsageError(f"Unknown certificate role {role!r}; choose one of {', '.join(ROLES)}")
    directory = Path(directory).expanduser()
    return TLSFiles(directory / CA_CERT, directory / f"{role}.pem", directory / f"{role}-key.pem")


def _check_hosts(hosts) -> list[str]:
    hosts = [h.strip() for h in ([hosts] if isinstance(hosts, str) else hosts or ())]
    hosts = list(dict.fromkeys(h for h in hosts if h))  # ordered, unique
    if not hosts:
        raise UsageError("No host names for the certificates: give --host NAME_OR_IP")
    for host in hosts:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if not _HOSTNAME.match(host):
                raise UsageError(
                    f"Invalid host {host!r} for a certificate: give a host name "
                    "(worker1.example.org) or an IP address (10.0.0.5)"
                ) from None
    return hosts


def _names(hosts):
    from cryptography import x509

    names = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _write(path: Path, data: bytes, mode: int):
    """Write a file atomically with ``mode`` (a key is never readable by others, not even
    for a moment)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)  # a leftover would keep its own mode
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have taken bits of a certificate's 0644
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _key_pem(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _new_key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _new_ca(hosts, days: int):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = _new_key()
    now = _dt.datetime.now(_dt.timezone.utc)
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kdist"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"kdist cluster CA ({hosts[0]})"),
    ])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _SKEW)
        .not_valid_after(now + _dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _key_usage(*, ca: bool):
    """Signing only; a CA's key also signs certificates and revocation lists."""
    from cryptography import x509

    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
        encipher_only=False, decipher_only=False,
    )


def _new_leaf(role: str, hosts, ca_cert, ca_key, days: int):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = _new_key()
    now = _dt.datetime.now(_dt.timezone.utc)
    not_after = min(now + _dt.timedelta(days=days), ca_cert.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kdist"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"kdist {role}"),
        ]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(_names(hosts)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        # Every Dask process both listens and connects (the scheduler dials workers, workers
        # dial each other), so each certificate serves both ends of a handshake.
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                   ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _load_ca(directory: Path):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    key_file = directory / CA_KEY
    try:
        info = key_file.stat()
        cert = x509.load_pem_x509_certificate((directory / CA_CERT).read_bytes())
        key = serialization.load_pem_private_key(key_file.read_bytes(), None)
    except (OSError, ValueError, TypeError) as exc:
        raise UsageError(
            f"Cannot use the CA in {directory} ({CA_CERT}, {CA_KEY}): {exc}; "
            "use an empty directory to make a new CA"
        ) from exc
    # A CA key others can read, or one somebody else put there, would sign their
    # certificates too: refuse it rather than trust it.
    if info.st_mode & 0o077 or info.st_uid != os.getuid():
        raise UsageError(
            f"Refusing the CA in {directory}: {key_file} must belong to you and be readable by "
            "you only (chmod 600); if others could read it, make a new CA in an empty directory"
        )
    if cert.not_valid_after_utc <= _dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(days=1):
        raise UsageError(
            f"The CA in {directory} expires on {cert.not_valid_after_utc:%Y-%m-%d}: make a new "
            "CA in an empty directory and give every machine its ca.pem"
        )
    return cert, key


def make_certs(directory, hosts=DEFAULT_HOSTS, *, days: int = DAYS, force: bool = False) -> dict:
    """Write a CA and the scheduler, worker and client certificates of a cluster.

    A directory that already holds a CA (``ca.pem`` and ``ca-key.pem``) keeps it, and the
    new certificates are signed by it, so machines that have the CA certificate keep working.

    Parameters
    ----------
    directory
        Where to write (created, mode 0700, if missing).
    hosts
        Host names and IP addresses of the machines, written into every certificate
        (``subjectAltName``); default ``localhost`` and ``127.0.0.1``.
    days
        How long the certificates are valid.
    force
        Replace existing scheduler, worker and client certificates.

    Returns
    -------
    dict
        ``{"ca": Path, "ca_key": Path, "scheduler": TLSFiles, "worker": TLSFiles,
        "client": TLSFiles, "hosts": [...], "not_after": datetime, "new_ca": bool}``.

    Raises
    ------
    UsageError
        Invalid host names or ``days``, certificates already there (without ``force``), or
        a CA that cannot be read.
    KdistError
        The directory cannot be written.

    Examples
    --------
    >>> from kdist.security import make_certs  # doctest: +SKIP
    >>> make_certs("certs", hosts=["sched.example.org", "10.0.0.5", "10.0.0.6"])  # doctest: +SKIP
    """
    from cryptography.hazmat.primitives import serialization

    hosts = _check_hosts(DEFAULT_HOSTS if hosts is None else hosts)
    if not isinstance(days, int) or days < 1:
        raise UsageError(f"days must be a whole number of days >= 1, not {days!r}")
    directory = Path(directory).expanduser()
    leaves = {role: cert_files(directory, role) for role in ROLES}
    existing = [p.name for f in leaves.values() for p in (f.cert, f.key) if p.exists()]
    if existing and not force:
        raise UsageError(
            f"{directory} already has {', '.join(existing)}: pass --force (force=True) to "
            "replace them (the CA is kept), or give another directory"
        )
    has_cert, has_key = (directory / CA_CERT).exists(), (directory / CA_KEY).exists()
    if has_cert != has_key:
        missing = CA_KEY if has_cert else CA_CERT
        raise UsageError(
            f"{directory} has a CA without {missing}: new certificates cannot be signed; "
            "give an empty directory to make a new CA"
        )
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if has_cert:
            ca_cert, ca_key = _load_ca(directory)
        else:
            # The CA outlives its first certificates, so later ones can be signed by it.
            ca_cert, ca_key = _new_ca(hosts, max(days, CA_DAYS))
            _write(directory / CA_KEY, _key_pem(ca_key), 0o600)
            _write(directory / CA_CERT, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
        not_after = None
        for role, files in leaves.items():
            cert, key = _new_leaf(role, hosts, ca_cert, ca_key, days)
            _write(files.key, _key_pem(key), 0o600)
            _write(files.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
            not_after = cert.not_valid_after_utc
    except OSError as exc:
        raise KdistError(
            f"Cannot write certificates to {directory}: {exc.strerror or exc}", path=str(directory)
        ) from exc
    return {"ca": directory / CA_CERT, "ca_key": directory / CA_KEY, **leaves, "hosts": hosts,
            "not_after": not_after, "new_ca": not has_cert}


def local_security():
    """Return the ``distributed.security.Security`` of one new local cluster.

    A new CA and one certificate signed by it, for the scheduler, the workers and the client
    alike, held in memory only: nothing is written, and the CA key is dropped at once, so
    only the processes given this object (the cluster kdist starts and its client) can
    complete a handshake with the cluster. Like Dask's ``Security.temporary()``, but with
    the P-256 keys and certificates of :func:`make_certs`: its RSA key takes far longer to
    make, and every local cluster kdist starts would wait for one (see docs/performance.md#tls).

    Examples
    --------
    >>> from distributed import LocalCluster  # doctest: +SKIP
    >>> LocalCluster(host="127.0.0.1", security=local_security())  # doctest: +SKIP
    """
    from cryptography.hazmat.primitives import serialization
    from distributed.security import Security

    hosts = ["127.0.0.1"]
    ca_cert, ca_key = _new_ca(hosts, DAYS)
    cert, key = _new_leaf("local cluster", hosts, ca_cert, ca_key, DAYS)
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM).decode()
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = _key_pem(key).decode()
    # PEM text rather than file names: Dask passes it to the worker processes it starts.
    return Security(
        require_encryption=True,
        tls_ca_file=ca_pem,
        **{f"tls_{role}_{part}": pem for role in ROLES
           for part, pem in (("cert", cert_pem), ("key", key_pem))},
    )


def _tls_files(certs=None, *, tls_ca=None, tls_cert=None, tls_key=None, role="client",
               flag="--certs") -> TLSFiles | None:
    """The TLS files named by a directory or by the three file names; None when neither."""
    given = {"--tls-ca": tls_ca, "--tls-cert": tls_cert, "--tls-key": tls_key}
    if certs is not None:
        if any(v is not None for v in given.values()):
            raise UsageError(f"Give {flag} DIR or --tls-ca, --tls-cert and --tls-key, not both")
        if not Path(certs).expanduser().is_dir():
            raise UsageError(
                f"{flag} {certs}: no such directory; make one with 'kdist cluster certs {certs}'"
            )
        files = cert_files(certs, role)
        names = {"--tls-ca": files.ca, "--tls-cert": files.cert, "--tls-key": files.key}
    elif any(v is not None for v in given.values()):
        missing = [k for k, v in given.items() if v is None]
        if missing:
            raise UsageError(
                f"TLS needs --tls-ca, --tls-cert and --tls-key together (missing "
                f"{', '.join(missing)}); or give {flag} DIR"
            )
        files = TLSFiles(*(Path(v).expanduser() for v in given.values()))
        names = dict(zip(given, (files.ca, files.cert, files.key)))
    else:
        return None
    for flag_name, path in names.items():
        if not path.is_file():
            raise UsageError(
                f"TLS file {path} ({flag_name}) does not exist; 'kdist cluster certs DIR' "
                "makes the CA and certificates"
            )
        if not os.access(path, os.R_OK):
            raise UsageError(f"TLS file {path} ({flag_name}) is not readable by this user")
    return files


def client_security(security=None, *, tls_ca=None, tls_cert=None, tls_key=None):
    """Return the ``distributed.security.Security`` of a client, or None when none is given.

    Parameters
    ----------
    security
        A ``Security`` (returned as is), or a directory made by :func:`make_certs` (its
        ``ca.pem``, ``client.pem`` and ``client-key.pem`` are used).
    tls_ca, tls_cert, tls_key
        Or the three files: the cluster's CA certificate, the client's certificate and key.

    Raises
    ------
    UsageError
        Missing or unreadable files, a key that does not match its certificate, or both a
        ``security`` and file names.
    """
    files_given = any(v is not None for v in (tls_ca, tls_cert, tls_key))
    if security is None and not files_given:
        return None  # and distributed is not imported: a "sync" job does not need it
    from distributed.security import Security

    if isinstance(security, Security):
        if files_given:
            raise UsageError("Give security=Security(...) or tls_ca/tls_cert/tls_key, not both")
        return security
    if security is not None and not isinstance(security, (str, os.PathLike)):
        raise UsageError(
            f"security must be a distributed.security.Security or a certificate directory, "
            f"not {type(security).__name__}"
        )
    files = _tls_files(security, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key)
    result = Security(
        tls_ca_file=str(files.ca),
        tls_client_cert=str(files.cert),
        tls_client_key=str(files.key),
        require_encryption=True,
    )
    try:
        # Builds the SSL context: unreadable PEM or a key of another certificate fails here,
        # with the file names, rather than as a handshake error later.
        result.get_connection_args("client")
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None)
        if reason == "KEY_VALUES_MISMATCH":
            why = f"the key {files.key} does not belong to the certificate {files.cert}"
        else:
            why = f"{reason or exc} (are they PEM files from 'kdist cluster certs'?)"
        raise UsageError(
            f"Cannot use the TLS files {files.ca}, {files.cert}, {files.key}: {why}"
        ) from exc
    _check_dates(files.cert)
    return result


def _check_dates(path: Path):
    """Refuse a client certificate that is expired (or not yet valid) here, with what to do,
    rather than as the scheduler's refusal of the handshake."""
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    except (OSError, ValueError):
        return  # PEM text in memory, or a format Dask reads and we do not: Dask decides
    now = _dt.datetime.now(_dt.timezone.utc)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise UsageError(
            f"The client certificate {path} is valid from {cert.not_valid_before_utc:%Y-%m-%d} "
            f"to {cert.not_valid_after_utc:%Y-%m-%d}, not now: re-issue the certificates with "
            "'kdist cluster certs DIR --force' and give them to every machine"
        )


def config_security():
    """The ``Security`` of Dask's configuration (``distributed.comm.tls.*``), if it names a
    CA and a client certificate; else None."""
    from distributed.security import Security

    security = Security(require_encryption=True)
    if not (security.tls_ca_file and security.tls_client_cert):
        return None
    try:
        security.get_connection_args("client")  # reads and checks the files
    except Exception as exc:
        raise UsageError(
            "Dask's TLS settings (distributed.comm.tls.ca-file, .client.cert, .client.key) "
            f"cannot be used: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}; "
            "fix them or pass --certs DIR"
        ) from None
    return security


def dask_command() -> list[str]:
    """The ``dask`` command of this Python environment."""
    local = Path(sys.executable).parent / "dask"
    if local.exists():
        return [str(local)]
    found = shutil.which("dask")
    return [found] if found else [sys.executable, "-m", "dask"]


def _tls_options(files: TLSFiles) -> list[str]:
    return ["--protocol", "tls", "--tls-ca-file", str(files.ca.resolve()),
            "--tls-cert", str(files.cert.resolve()), "--tls-key", str(files.key.resolve())]


def scheduler_command(certs=None, *, tls_ca=None, tls_cert=None, tls_key=None,
                      host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                      dashboard_address: str = "127.0.0.1:8787") -> list[str]:
    """Return the ``dask scheduler`` command line of a TLS scheduler.

    Parameters
    ----------
    certs
        A directory made by :func:`make_certs` (its ``ca.pem``, ``scheduler.pem`` and
        ``scheduler-key.pem``), or the three files as ``tls_ca``, ``tls_cert``, ``tls_key``.
    host, port
        Where the scheduler listens: ``127.0.0.1`` (this machine only) by default; the
        machine's address, or ``0.0.0.0`` for every interface, to let other machines in.
    dashboard_address
        The dashboard (plain HTTP, no login): ``127.0.0.1:8787`` by default, reached from
        elsewhere through an SSH tunnel. (Dask serves its health and metrics pages there
        even without the dashboard, so the address is always given.)
    """
    files = _tls_files(certs, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key,
                       role="scheduler")
    if files is None:
        raise UsageError("A TLS scheduler needs --certs DIR (or --tls-ca, --tls-cert and "
                         "--tls-key); 'kdist cluster certs DIR' makes them")
    if not 0 <= int(port) <= 65535:
        raise UsageError(f"Invalid port {port}")
    return [*dask_command(), "scheduler", *_tls_options(files), "--host", host,
            "--port", str(port), "--dashboard-address", dashboard_address]


def worker_command(address: str, certs=None, *, tls_ca=None, tls_cert=None, tls_key=None,
                   nthreads: int | None = None, host: str | None = None,
                   name: str | None = None) -> list[str]:
    """Return the ``dask worker`` command line of a worker of the TLS scheduler ``address``.

    ``host`` is where the worker listens for the scheduler and the other workers: by default
    ``127.0.0.1`` when the scheduler is on this machine, otherwise Dask's choice (the address
    of the interface that reaches the scheduler). Workers run without their own dashboard
    (the scheduler's shows them), and the health and metrics pages Dask serves anyway listen
    on 127.0.0.1 (``dask worker`` alone puts them on every interface). ``certs`` or
    ``tls_*`` as for :func:`scheduler_command`, with ``worker.pem`` and ``worker-key.pem``.
    """
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    if parsed.scheme != "tls" or not parsed.hostname:
        raise UsageError(
            f"Scheduler address {address!r} is not a TLS address: give tls://HOST:PORT "
            "(a scheduler started by 'kdist cluster scheduler')"
        )
    files = _tls_files(certs, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key, role="worker")
    if files is None:
        raise UsageError("A TLS worker needs --certs DIR (or --tls-ca, --tls-cert and "
                         "--tls-key); 'kdist cluster certs DIR' makes them")
    if host is None and _loopback_host(parsed.hostname):
        host = "127.0.0.1"
    command = [*dask_command(), "worker", address, *_tls_options(files)]
    if host:
        command += ["--host", host]
    if nthreads:
        command += ["--nthreads", str(int(nthreads))]
    if name:
        command += ["--name", name]
    return command + ["--no-dashboard", "--dashboard-address", "127.0.0.1:0"]


def _loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
