"""No SQL is built from input: every statement kdist sends to DuckDB is fixed text.

A static check over ``kdist/`` (docs/testplan.md scenario 22, and the store's rule in
kdist/store.py: identifiers are fixed strings; every value goes through a ``?`` parameter). The SQL argument of
every ``.execute(``, ``.executemany(``, ``.sql(`` and ``.query(`` call must be

- a string literal, or
- a module-level constant (a name assigned exactly once, at module level, to such text), or
- a local variable whose every assignment is such text, or
- an f-string, ``+``, ``%`` or ``.format()`` whose parts are all of the above (so a table
  name may come from a module constant, never from a parameter or a computed value).

Values go through ``?`` parameters, which this check does not look at. A call whose first
argument is a dict literal is not SQL (baostock's ``query({...})``). The negative cases
below prove the check catches SQL built by formatting input.
"""

from __future__ import annotations

import ast
import textwrap
from collections import Counter
from pathlib import Path

import pytest

import kdist

PACKAGE = Path(kdist.__file__).parent
SQL_METHODS = {"execute", "executemany", "sql", "query", "filter", "project", "aggregate",
               "from_query", "table", "view"}


class _Checker(ast.NodeVisitor):
    """Collect the SQL calls of one module and the ones whose SQL is not fixed text."""

    def __init__(self, tree: ast.Module, name: str):
        self.name = name
        self.constants = _module_constants(tree)
        self.scopes: list[set[str]] = []  # safe local names of the enclosing functions
        self.shadowed: list[set[str]] = []  # parameters and other local names: never safe
        self.calls: list[tuple[int, str]] = []
        self.violations: list[str] = []

    def names(self) -> set[str]:
        return self.constants.union(*self.scopes) - set().union(*self.shadowed)

    def visit_FunctionDef(self, node):
        safe, unsafe = _safe_locals(node, self.names())
        self.scopes.append(safe)
        self.shadowed.append(unsafe)
        self.generic_visit(node)
        self.scopes.pop()
        self.shadowed.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node):
        args = node.args
        self.shadowed.append({a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)})
        self.generic_visit(node)
        self.shadowed.pop()

    def visit_Call(self, node):
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in SQL_METHODS:
            sql = node.args[0] if node.args else next(
                (k.value for k in node.keywords if k.arg in ("query", "sql")), None)
            if sql is not None and not isinstance(sql, ast.Dict):
                self.calls.append((node.lineno, func.attr))
                names = self.names()
                if not _safe(sql, names):
                    culprits = sorted({n.id for n in ast.walk(sql) if isinstance(n, ast.Name)}
                                      - names)
                    self.violations.append(
                        f"{self.name}:{node.lineno} .{func.attr}() SQL is built from "
                        f"{', '.join(culprits) or ast.unparse(sql)[:60]}"
                    )
        self.generic_visit(node)


def _safe(node, names: set[str]) -> bool:
    """True when ``node`` evaluates to fixed text: literals and names in ``names`` only."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.Name):
        return node.id in names
    if isinstance(node, ast.JoinedStr):
        return all(_safe(v, names) for v in node.values)
    if isinstance(node, ast.FormattedValue):
        return _safe(node.value, names) and (node.format_spec is None
                                             or _safe(node.format_spec, names))
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
        return _safe(node.left, names) and _safe(node.right, names)
    if isinstance(node, ast.Tuple):
        return all(_safe(e, names) for e in node.elts)
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("format", "join") and _safe(node.func.value, names)):
        args = [*node.args, *(k.value for k in node.keywords)]
        if node.func.attr == "join":
            return len(args) == 1 and isinstance(args[0], (ast.List, ast.Tuple)) and all(
                _safe(e, names) for e in args[0].elts)
        return all(_safe(a, names) for a in args)
    return False


def _module_level(tree: ast.Module):
    """Every statement that runs at module level, inside if/for/while/try/with blocks too,
    but not inside functions or classes."""
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for field in ("body", "orelse", "finalbody", "handlers"):
            todo.extend(getattr(node, field, []) or [])


def _module_constants(tree: ast.Module) -> set[str]:
    """Module-level names bound exactly once, to fixed text, and never declared global."""
    counts, values = Counter(), {}
    rebound = {n for node in ast.walk(tree) if isinstance(node, ast.Global) for n in node.names}
    for node in _module_level(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:  # an imported name is not fixed text
                name = (alias.asname or alias.name).split(".")[0]
                counts[name] += 1
                values[name] = None
            continue
        if isinstance(node, (ast.For, ast.AsyncFor)):
            for name in ast.walk(node.target):
                if isinstance(name, ast.Name):
                    counts[name.id] += 2  # a loop binds many values
            continue
        targets, value = [], None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        elif isinstance(node, ast.AugAssign):
            targets = [node.target, node.target]  # counts as a second binding
        for target in targets:
            for name in ast.walk(target):
                if isinstance(name, ast.Name):
                    counts[name.id] += 1
                    values[name.id] = value if isinstance(target, ast.Name) else None
    safe: set[str] = set()
    changed = True
    while changed:  # constants may be built from other constants
        changed = False
        for name, value in values.items():
            if (name not in safe and name not in rebound and counts[name] == 1
                    and value is not None and _safe(value, safe)):
                safe.add(name)
                changed = True
    return safe


def _safe_locals(func, outer: set[str]) -> tuple[set[str], set[str]]:
    """Local names of ``func`` whose every binding is fixed text, and its other local names
    (parameters among them), which hide module constants of the same name."""
    args = func.args
    params = {a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)}
    params |= {a.arg for a in (args.vararg, args.kwarg) if a is not None}
    bindings: dict[str, list] = {}
    other: set[str] = set(params)
    for node in ast.walk(func):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    bindings.setdefault(target.id, []).append(node.value)
                else:
                    other |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            bindings.setdefault(node.target.id, []).append(node.value)
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            ok = isinstance(node.op, ast.Add)
            bindings.setdefault(node.target.id, []).append(node.value if ok else None)
        elif isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
            other |= {n.id for n in ast.walk(node.target) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                if item.optional_vars is not None:
                    other |= {n.id for n in ast.walk(item.optional_vars)
                              if isinstance(n, ast.Name)}
        elif isinstance(node, ast.NamedExpr):
            other.add(node.target.id)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            other |= set(node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            other.add(node.name)
    safe: set[str] = set()
    changed = True
    while changed:
        changed = False
        for name, values in bindings.items():
            if name in safe or name in other:
                continue
            if all(v is not None and _safe(v, (outer - other) | safe) for v in values):
                safe.add(name)
                changed = True
    return safe, (other | set(bindings)) - safe


def check_source(source: str, name: str = "<snippet>") -> tuple[list, list[str]]:
    """Return ``(sql_calls, violations)`` of one module's source."""
    tree = ast.parse(source)
    checker = _Checker(tree, name)
    checker.visit(tree)
    return checker.calls, checker.violations


def test_kdist_builds_no_sql_from_input():
    calls, violations = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        found, bad = check_source(path.read_text(encoding="utf-8"),
                                  str(path.relative_to(PACKAGE.parent)))
        calls += found
        violations += bad
    assert not violations, "SQL built from values; bind them as ? parameters:\n" + "\n".join(
        violations)
    # The check is not vacuous: it sees the store's statements.
    assert len(calls) >= 20


BAD = {
    "a constant rebound inside an if at module level": """
        TABLE = "kline"
        if True:
            TABLE = input()
        def count(con):
            return con.execute(f"SELECT count(*) FROM {TABLE}").fetchone()
    """,
    "an imported name as an identifier": """
        from os import environ as TABLE
        def count(con):
            return con.execute(f"SELECT count(*) FROM {TABLE}").fetchone()
    """,
    "a relation filter built from a value": """
        def load(con, symbol):
            return con.table("kline").filter(f"symbol = '{symbol}'").df()
    """,
    "f-string of a parameter": """
        def load(con, symbol):
            return con.execute(f"SELECT * FROM kline WHERE symbol = '{symbol}'").df()
    """,
    "identifier from a parameter": """
        def count(con, table):
            return con.execute(f"SELECT count(*) FROM {table}").fetchone()
    """,
    "concatenation": """
        def load(con, symbol):
            return con.sql("SELECT * FROM kline WHERE symbol = '" + symbol + "'")
    """,
    "percent formatting": """
        def load(con, symbol):
            return con.execute("SELECT * FROM kline WHERE symbol = '%s'" % symbol)
    """,
    "str.format": """
        def load(con, symbol):
            return con.execute("SELECT * FROM kline WHERE symbol = '{}'".format(symbol))
    """,
    "a parameter as the whole statement": """
        def run(con, sql):
            return con.execute(sql)
    """,
    "a local built from a parameter": """
        def load(con, symbol):
            sql = "SELECT * FROM kline WHERE symbol = "
            sql += repr(symbol)
            return con.execute(sql)
    """,
    "a loop variable": """
        def drop(con, tables):
            for t in tables:
                con.execute("DROP TABLE " + t)
    """,
    "keyword argument": """
        def load(con, where):
            return con.sql(query=f"SELECT * FROM kline WHERE {where}")
    """,
    "a module name bound twice": """
        TABLE = "kline"
        TABLE = input()
        def load(con):
            return con.execute(f"SELECT * FROM {TABLE}")
    """,
    "a module name computed at import": """
        import os
        TABLE = os.environ["KDIST_TABLE"]
        def load(con):
            return con.execute(f"SELECT * FROM {TABLE}")
    """,
    "a lambda parameter shadowing a constant": """
        TABLE = "kline"
        work = lambda con, TABLE: con.execute(f"SELECT * FROM {TABLE}")
    """,
    "executemany": """
        def insert(con, table, rows):
            con.executemany(f"INSERT INTO {table} VALUES (?, ?)", rows)
    """,
    "a parameter shadowing a constant": """
        TABLE = "kline"
        def load(con, TABLE):
            return con.execute(f"SELECT * FROM {TABLE}")
    """,
    "a local rebinding a constant": """
        TABLE = "kline"
        def load(con, name):
            TABLE = name
            return con.execute(f"SELECT * FROM {TABLE}")
    """,
}

GOOD = {
    "literal with parameters": """
        def load(con, symbol):
            return con.execute("SELECT * FROM kline WHERE symbol = ?", [symbol]).df()
    """,
    "module constant": """
        _DDL = "CREATE TABLE IF NOT EXISTS kline (symbol VARCHAR)"
        def prepare(con):
            con.execute(_DDL)
    """,
    "identifier from a fixed name": """
        TABLE = "kline"
        COLUMNS = ", ".join(["symbol", "ts"])
        def load(con, symbol):
            return con.execute(f"SELECT {COLUMNS} FROM {TABLE} WHERE symbol = ?", [symbol])
    """,
    "local fixed text": """
        def load(con, symbol, latest):
            sql = "SELECT * FROM kline WHERE symbol = ?"
            if latest:
                sql += " ORDER BY ts DESC LIMIT 1"
            return con.execute(sql, [symbol])
    """,
    "lambda in a transaction": """
        def mark(store, job_id):
            store.transaction(lambda con: con.execute(
                "UPDATE kdist_jobs SET status = 'done' WHERE job_id = ?", [job_id]))
    """,
    "a vendor query with a dict is not SQL": """
        def fetch(session, code):
            return session.query({"code": code})
    """,
}


@pytest.mark.parametrize("source", BAD.values(), ids=BAD.keys())
def test_sql_built_from_input_is_caught(source):
    calls, violations = check_source(textwrap.dedent(source))
    assert calls and len(violations) == 1, violations


@pytest.mark.parametrize("source", GOOD.values(), ids=GOOD.keys())
def test_fixed_sql_passes(source):
    _, violations = check_source(textwrap.dedent(source))
    assert violations == []
