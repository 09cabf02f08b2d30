"""The exception tree: the inheritance its docstring draws, exit codes, and pickling."""

from __future__ import annotations

import pickle

import pytest

import kdist.errors as errors
from kdist.errors import (
    ClusterError,
    DataError,
    DatabaseLockedError,
    InvalidOptionError,
    InvalidSymbolError,
    JobFailedError,
    KdistError,
    MissingDependencyError,
    NoWorkersError,
    PermanentProviderError,
    ProviderError,
    ProviderTrippedError,
    SchedulerUnreachableError,
    SchemaVersionError,
    StoreError,
    SymbolNotFoundError,
    TransientProviderError,
    UnknownProviderError,
    UsageError,
)

ALL = [getattr(errors, name) for name in errors.__all__]

#: Class -> (kdist parent, builtin it must also be), as the module docstring draws it.
TREE = {
    UsageError: (KdistError, ValueError),
    InvalidSymbolError: (UsageError, ValueError),
    InvalidOptionError: (UsageError, ValueError),
    UnknownProviderError: (UsageError, LookupError),
    MissingDependencyError: (KdistError, ImportError),
    ProviderError: (KdistError, Exception),
    TransientProviderError: (ProviderError, Exception),
    PermanentProviderError: (ProviderError, Exception),
    SymbolNotFoundError: (PermanentProviderError, LookupError),
    ProviderTrippedError: (ProviderError, Exception),
    DataError: (KdistError, Exception),
    ClusterError: (KdistError, Exception),
    SchedulerUnreachableError: (ClusterError, OSError),
    NoWorkersError: (ClusterError, TimeoutError),
    StoreError: (KdistError, Exception),
    DatabaseLockedError: (StoreError, Exception),
    SchemaVersionError: (StoreError, Exception),
    JobFailedError: (KdistError, Exception),
}


def test_all_is_sorted_and_complete():
    assert errors.__all__ == sorted(errors.__all__)
    defined = {
        name for name, obj in vars(errors).items()
        if isinstance(obj, type) and issubclass(obj, BaseException) and obj.__module__ == errors.__name__
    }
    assert set(errors.__all__) == defined
    assert set(ALL) == set(TREE) | {KdistError}


def test_docstring_draws_every_class():
    for cls in ALL:
        assert cls.__name__ in errors.__doc__, cls


@pytest.mark.parametrize("cls", list(TREE), ids=lambda c: c.__name__)
def test_inheritance(cls):
    parent, builtin = TREE[cls]
    assert cls.__bases__[0] is parent
    assert issubclass(cls, KdistError) and issubclass(cls, builtin)


def test_catching_by_builtin():
    with pytest.raises(LookupError):
        raise UnknownProviderError("Unknown provider 'x'", name="x", available=[])
    with pytest.raises(LookupError):
        raise SymbolNotFoundError("no such symbol", symbol="X")
    with pytest.raises(ValueError):
        raise InvalidSymbolError("bad", symbols=["'"])
    with pytest.raises(ImportError):
        raise MissingDependencyError("needs x", extra="x")
    with pytest.raises(TimeoutError):
        raise NoWorkersError("no workers", address="tcp://127.0.0.1:1")
    with pytest.raises(OSError):
        raise SchedulerUnreachableError("unreachable", address="tcp://127.0.0.1:1")


def test_transient_and_permanent_are_distinct():
    assert not issubclass(TransientProviderError, PermanentProviderError)
    assert not issubclass(PermanentProviderError, TransientProviderError)
    assert not issubclass(DataError, ProviderError)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_exit_codes(cls):
    usage = issubclass(cls, UsageError) or cls is MissingDependencyError
    assert cls.exit_code == (2 if usage else 1)
    assert cls("x").exit_code == cls.exit_code


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_every_error_pickles_with_message_and_attributes(cls):
    err = cls(
        f"{cls.__name__}: something failed for 600000.SH",
        symbol="600000.SH",
        symbols=["a'b", "c/d"],
        column="close",
        extra={"nested": [1, 2.5, None]},
    )
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is cls
    assert str(copy) == str(err) == f"{cls.__name__}: something failed for 600000.SH"
    assert copy.args == err.args == (str(err),)
    assert copy.symbol == "600000.SH"
    assert copy.symbols == ["a'b", "c/d"]
    assert copy.column == "close"
    assert copy.extra == {"nested": [1, 2.5, None]}


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_every_error_pickles_without_context(cls):
    copy = pickle.loads(pickle.dumps(cls("just a message")))
    assert type(copy) is cls and str(copy) == "just a message"
    copy = pickle.loads(pickle.dumps(cls()))
    assert type(copy) is cls and str(copy) == ""


def test_attributes_that_builtins_reserve():
    # ImportError.name/.path and OSError.errno/.filename are slots: the given values must win.
    err = MissingDependencyError("needs x", name="tdx", path="/x", extra="tdx")
    assert (err.name, err.path, err.extra) == ("tdx", "/x", "tdx")
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.name, copy.path, copy.extra) == ("tdx", "/x", "tdx")
    err = SchedulerUnreachableError("unreachable", address="tcp://10.0.0.1:8786", filename="f")
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.address, copy.filename) == ("tcp://10.0.0.1:8786", "f")
    assert str(copy) == "unreachable"


def test_attributes_set_later_and_notes_survive_pickle():
    err = TransientProviderError("connection reset", symbol="AAPL")
    err.attempts = 3
    err.add_note("while fetching chunk 2")
    copy = pickle.loads(pickle.dumps(err))
    assert copy.attempts == 3 and copy.symbol == "AAPL"
    assert copy.__notes__ == ["while fetching chunk 2"]


def test_job_failed_error_carries_its_report():
    from kdist.report import Report

    report = Report(job_id="j1", status="failed", mode="sync", provider="synthetic", freq="1d",
                    adjust="none", start="2024-01-01", end="2024-01-31", db="x.duckdb",
                    n_symbols=2, symbols_failed=2, failures={"AAPL": "boom", "MSFT": "bang"})
    copy = pickle.loads(pickle.dumps(JobFailedError("No symbol could be imported", report=report)))
    assert copy.report == report and copy.report.failures["MSFT"] == "bang"


def test_lock_error_carries_holder():
    err = DatabaseLockedError("in use by python (PID 42)", path="/tmp/x.duckdb", holder="python", pid=42)
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.path, copy.holder, copy.pid) == ("/tmp/x.duckdb", "python", 42)
    assert isinstance(copy, StoreError)
