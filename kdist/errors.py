"""Every exception kdist raises, in one tree.

Each error says what failed, for which input, and what to do next. Errors cross process
boundaries (Dask sends worker exceptions back to the client), so every class pickles: only
the message goes to ``Exception.__init__`` and context is kept as attributes.

::

    KdistError
    ├── UsageError (ValueError)                bad input from the caller; CLI exit code 2
    │   ├── InvalidSymbolError                 symbols that fail validation (``.symbols``)
    │   ├── InvalidOptionError                 unknown or mistyped provider option, freq, adjust, date
    │   └── UnknownProviderError (LookupError) no provider of that name (``.available``)
    ├── MissingDependencyError (ImportError)   a provider's optional package is not installed
    ├── ProviderError                          a provider call failed (``.symbol``)
    │   ├── TransientProviderError             worth retrying: connection drops, timeouts, 429/5xx
    │   ├── PermanentProviderError             not worth retrying: unknown symbol, bad parameters
    │   │   └── SymbolNotFoundError (LookupError)
    │   └── ProviderTrippedError               the job stopped calling a vendor that kept failing
    ├── DataError                              a provider frame cannot be normalised (``.column``)
    ├── ClusterError                           no Dask cluster could be used
    │   ├── SchedulerUnreachableError (OSError)
    │   └── NoWorkersError (TimeoutError)
    ├── StoreError                             the DuckDB file cannot be used (``.path``)
    │   ├── DatabaseLockedError                another process holds the file (``.holder``)
    │   └── SchemaVersionError                 the file was written by another kdist schema
    └── JobFailedError                         nothing could be imported (``.report``)
"""

from __future__ import annotations

__all__ = [
    "ClusterError",
    "DataError",
    "DatabaseLockedError",
    "InvalidOptionError",
    "InvalidSymbolError",
    "JobFailedError",
    "KdistError",
    "MissingDependencyError",
    "NoWorkersError",
    "PermanentProviderError",
    "ProviderError",
    "ProviderTrippedError",
    "SchedulerUnreachableError",
    "SchemaVersionError",
    "StoreError",
    "SymbolNotFoundError",
    "TransientProviderError",
    "UnknownProviderError",
    "UsageError",
]


class KdistError(Exception):
    """Base class of every kdist error.

    Keyword arguments become attributes, so the message stays the only positional argument
    and the exception survives ``pickle`` with its context intact.
    """

    #: Exit code of the ``kdist`` command when this error ends it.
    exit_code = 1

    def __init__(self, message: str = "", **context):
        super().__init__(message)
        self.__dict__.update(context)  # what __reduce__ carries across processes
        for key, value in context.items():
            # ImportError.name/.path and OSError.errno/.filename are slots that shadow the
            # instance dict: set them as well, or MissingDependencyError(name=...).name is None.
            setattr(self, key, value)

    def __str__(self):
        # The message alone: OSError subclasses would otherwise format errno and filename.
        return str(self.args[0]) if self.args else ""

    def __reduce__(self):
        return (_rebuild, (type(self), str(self), dict(self.__dict__)))


def _rebuild(cls, message, context):
    return cls(message, **context)


def closest(value, choices) -> str | None:
    """The one of ``choices`` a mistyped ``value`` was most likely meant to be, or None.

    A choice equal but for case wins (``1D`` -> ``1d``); else the closest by
    :func:`difflib.get_close_matches`, compared as typed, then case-folded.
    """
    import difflib

    text, choices = str(value), [str(c) for c in choices]
    folded = {c.lower(): c for c in reversed(choices)}  # of choices equal folded, the first
    if text.lower() in folded and text not in choices:
        return folded[text.lower()]
    best = difflib.get_close_matches(text, choices, n=1) or [
        folded[m] for m in difflib.get_close_matches(text.lower(), list(folded), n=1)]
    return best[0] if best else None


def did_you_mean(value, choices) -> str:
    """`` (did you mean 'synthetic'?)`` when ``value`` is close to one of ``choices``, else
    ``""``: the hint an "Unknown ..." message puts after the name it refuses."""
    match = closest(value, choices)
    return f" (did you mean {match!r}?)" if match is not None else ""


class UsageError(KdistError, ValueError):
    """The caller asked for something kdist cannot do; nothing was fetched or written."""

    exit_code = 2


class InvalidSymbolError(UsageError):
    """One or more symbols failed validation (``symbols`` lists them)."""


class InvalidOptionError(UsageError):
    """An option, freq, adjust or date is unknown or has the wrong type."""


class UnknownProviderError(UsageError, LookupError):
    """No provider is registered under that name (``available`` lists those that are)."""


class MissingDependencyError(KdistError, ImportError):
    """A provider needs an optional package that is not installed (``extra`` names it)."""

    exit_code = 2


class ProviderError(KdistError):
    """A provider call failed for ``symbol``."""


class TransientProviderError(ProviderError):
    """A failure that may pass: connection drop, timeout, rate limit, server error."""


class PermanentProviderError(ProviderError):
    """A failure that retrying will not fix: unknown symbol, unsupported parameters."""


class SymbolNotFoundError(PermanentProviderError, LookupError):
    """The provider does not know ``symbol``."""


class ProviderTrippedError(ProviderError):
    """The circuit breaker opened: the job makes no more calls to ``provider``."""


class DataError(KdistError):
    """A provider frame cannot be turned into canonical bars (``column`` names the culprit)."""


class ClusterError(KdistError):
    """No Dask cluster could be used for the job."""


class SchedulerUnreachableError(ClusterError, OSError):
    """The scheduler at ``address`` did not answer in time."""


class NoWorkersError(ClusterError, TimeoutError):
    """The scheduler at ``address`` had no workers within the wait."""


class StoreError(KdistError):
    """The DuckDB file at ``path`` cannot be opened or written."""


class DatabaseLockedError(StoreError):
    """Another process holds the DuckDB file (``holder`` describes it, ``pid`` when known)."""


class SchemaVersionError(StoreError):
    """The DuckDB file was written by an incompatible kdist schema version."""


class JobFailedError(KdistError):
    """No symbol of the job could be imported (``report`` holds the details)."""
