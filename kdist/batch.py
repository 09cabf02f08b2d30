"""Frames and outcomes waiting to be written together, and the rule for writing them.

The client coalesces finished chunks into a :class:`Batch` and writes it in one
transaction when it is big enough or old enough; a batch commits whole row groups and
carries the rest into the next one.
"""

from __future__ import annotations

import time

import pandas as pd

from .fetching import ChunkResult, concat
from .layout import ROW_GROUP
from .outcome import Status
from .plan import Chunk
from .store import Store

__all__ = ["BATCH_ROWS", "FLUSH_SECONDS", "ROW_GROUP", "Batch"]

#: A batch commits whole row groups (:data:`kdist.layout.ROW_GROUP` rows) and carries the rest
#: of its rows into the next one: DuckDB then never rewrites a partly filled row group, which
#: costs CPU and bytes per bar (see docs/performance.md#batches).
#: Rows that make a batch worth writing, and the age at which a smaller batch is written anyway.
BATCH_ROWS = 2 * ROW_GROUP
FLUSH_SECONDS = 5.0


class Batch:
    """Frames and outcomes waiting to be written together.

    ``stored`` names the job's symbols that had bars in the store when the job started: only
    their windows need deleting before the insert. Each symbol is written once per job, so a
    symbol new to the store never needs it, and skipping those deletes keeps a first import
    from scanning an ever larger table batch after batch.
    """

    def __init__(self, stored: set[str] | None = None):
        self.stored = stored
        #: Bars of other sources this job's writes replaced: {source: bars}.
        self.replaced: dict[str, int] = {}
        #: Symbols whose corporate actions this job's writes changed, and how many symbols
        #: had their actions checked.
        self.actions_new: set[str] = set()
        self.actions_checked = 0
        self._reset()

    def _reset(self):
        self.frames, self.outcomes, self.windows = [], [], []
        self.actions, self.checks = [], []
        self.rows = 0
        self.since = None

    def add(self, result: ChunkResult, chunk: Chunk):
        if self.since is None:
            self.since = time.monotonic()
        if len(result.bars):
            self.frames.append(result.bars)
            self.rows += len(result.bars)
        self.outcomes.extend(result.outcomes)
        if result.checks is not None and len(result.checks):
            self.checks.append(result.checks)
            if len(result.actions):
                self.actions.append(result.actions)
        # Only symbols that came back with bars replace stored bars, and only within the
        # span the source returned (first to last bar): a failure or an empty answer never
        # erases history, nor does a source that covers less than what is stored.
        ok = [(o["symbol"], o["first_ts"], o["last_ts"]) for o in result.outcomes
              if o["status"] == Status.OK and not o.get("appended") and o["rows"]
              and (self.stored is None or o["symbol"] in self.stored)]
        if ok:
            symbols, firsts, lasts = zip(*ok)
            self.windows.append(pd.DataFrame({
                "symbol": list(symbols), "start": list(firsts),
                # Exclusive: one second past the last bar, as ts holds whole seconds.
                "stop": pd.to_datetime(list(lasts)) + pd.Timedelta(seconds=1),
            }))

    def add_outcomes(self, outcomes):
        if self.since is None:
            self.since = time.monotonic()
        self.outcomes.extend(outcomes)

    def due(self, batch_rows, flush_seconds) -> bool:
        if self.since is None:
            return False
        return self.rows >= batch_rows or time.monotonic() - self.since >= flush_seconds

    def write(self, store: Store, *, final: bool = True, **job) -> int:
        """Write the batch in one transaction; unless ``final``, only whole row groups.

        The rows past the last whole row group wait for the next write, with the outcomes
        of their symbols, so a symbol is recorded ok only in the transaction that stores the
        last of its bars. Its stored window is replaced now, before the first of them. A job
        that dies in between leaves such a symbol pending with some bars: a resume replaces
        its window, as for any stored symbol.
        """
        if self.since is None:
            return 0
        windows = (
            pd.concat(self.windows, ignore_index=True).astype(
                {"start": "datetime64[us]", "stop": "datetime64[us]"})
            if self.windows
            else pd.DataFrame({"symbol": pd.Series(dtype="str"),
                               "start": pd.Series(dtype="datetime64[us]"),
                               "stop": pd.Series(dtype="datetime64[us]")})
        )
        bars = concat(self.frames)
        cut = len(bars) if final else len(bars) // ROW_GROUP * ROW_GROUP
        if cut == 0:
            cut = len(bars)  # less than a row group: written as it is (a time-based flush)
        carry = bars.iloc[cut:]
        waiting = set(carry["symbol"].unique()) if len(carry) else set()
        now = [o for o in self.outcomes if o["symbol"] not in waiting]
        later = [o for o in self.outcomes if o["symbol"] in waiting]
        # A symbol's corporate actions go with its outcome: factors computed from events
        # need its raw closes stored.
        actions, actions_later = _split(self.actions, waiting)
        checks, checks_later = _split(self.checks, waiting)
        rows = store.write_batch(bars.iloc[:cut], now, windows=windows, actions=actions,
                                 checks=checks, spans=_spans(bars, cut, now, later), **job)
        self.actions_new.update(getattr(store, "actions_new", ()))
        self.actions_checked += 0 if checks is None else len(checks)
        for source, n in getattr(store, "replaced", {}).items():
            self.replaced[source] = self.replaced.get(source, 0) + n
        self._reset()
        if len(carry):
            self.since = time.monotonic()
            self.frames = [carry.reset_index(drop=True)]
            self.rows = len(carry)
            self.outcomes = later
            self.actions = [] if actions_later is None else [actions_later]
            self.checks = [] if checks_later is None else [checks_later]
        return rows


def _spans(bars: pd.DataFrame, cut: int, now: list[dict], later: list[dict]) -> dict | None:
    """The first and last bar of each symbol among ``bars[:cut]``, without reading them:
    a symbol's bars are one run in ``ts`` order (each chunk's, as validation sorts them),
    from its outcome's ``first_ts`` to its ``last_ts``. Its outcome is written with its last
    bar, so a symbol with an outcome in ``now`` has every bar stored by then; the one symbol
    whose run the cut splits has its first bars here and its outcome ``later``."""
    spans = {o["symbol"]: (o["first_ts"], o["last_ts"]) for o in now
             if o["rows"] and o["first_ts"] is not None}
    if 0 < cut < len(bars):
        split = bars["symbol"].iat[cut - 1]
        if split == bars["symbol"].iat[cut]:
            first = next((o["first_ts"] for o in later if o["symbol"] == split), None)
            if first is None:
                return None  # not a run of a chunk's bars: the store reads the spans
            spans[split] = (first, bars["ts"].iat[cut - 1])
    return spans


def _split(frames: list[pd.DataFrame], waiting: set) -> tuple:
    """``frames`` as one frame of the symbols not ``waiting`` and one of those waiting
    (None where there are none)."""
    if not frames:
        return None, None
    whole = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    later = whole["symbol"].isin(waiting).to_numpy() if waiting else None
    if later is None or not later.any():
        return whole, None
    return whole[~later].reset_index(drop=True), whole[later].reset_index(drop=True)
