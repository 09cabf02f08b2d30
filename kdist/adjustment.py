"""Corporate actions in the store: how a fetch's answer is merged, and how adjusted bars are
derived from raw bars in SQL.

``kdist_actions`` holds one row per (symbol, source, ex-date) and version: the event's
numbers per share and the cumulative hfq factor in force from the ex-date on, with the job
that fetched it and ``valid_from``/``valid_to``. A row is never updated except to close it:
when a later answer changes an event or a factor (a vendor's revision, a raw close that
changed), the current row gets ``valid_to`` and the new one is inserted, so the history of
the factors themselves is kept. ``kdist_action_checks`` records each (symbol, source, window)
whose actions were fetched: a symbol with a check has its qfq/hfq derived from its raw bars,
even when it never had an event.

Factors come from the vendor (baostock's back factor, Sina's hfq factor, the synthetic
provider's own) or, where the vendor gives events only, are computed here from the events
and the stored raw close before each ex-date (:func:`kdist.actions.hfq_factors`); an
ex-date with no raw bar on or after it has no factor yet (it is computed when its bars
arrive). Derived reads (:func:`read_derived`) join each raw bar to the factor in force at its
time inside DuckDB, an as-of join written as an equi-join on the factors' intervals.

Every function takes the caller's connection inside its transaction; identifiers are fixed
strings, values go through ``?`` parameters.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from .actions import EVENT_COLUMNS, NO_EVENT, hfq_steps
from .schema import Adjust, Freq

__all__ = ["compare_with_vendor", "merge_actions", "read_derived"]

#: Raw bars whose last bar before an ex-date is that day's close (not weekly or monthly).
_CLOSE_FREQS = tuple(f.value for f in Freq if f is Freq.DAY or f.intraday)
_VALUES = (*EVENT_COLUMNS, "factor")


def merge_actions(con: duckdb.DuckDBPyConnection, actions: pd.DataFrame | None,
                  checks: pd.DataFrame, *, source: str, job_id: str, now,
                  splits_in_bars: bool) -> list[str]:
    """Merge one batch's corporate actions into ``kdist_actions``; return the symbols whose
    actions changed (new ex-dates, revised events or factors).

    ``checks`` (``symbol, start, end``) names each symbol asked and its window: current rows
    of that window the answer lacks are closed; rows outside it are kept unless the answer
    has the same ex-date. Factors the vendor gave are stored as given; a symbol without
    them gets factors computed from its events and stored raw closes, all of its events
    recomputed (an earlier event or close that changed moves every later factor).
    """
    if checks is None or len(checks) == 0:
        return []
    checks = checks.drop_duplicates("symbol", keep="last").reset_index(drop=True)
    con.register("kdist_checks", checks)
    con.register("kdist_answered", _answered(actions))
    try:
        current = con.execute(_CURRENT, [source]).df()
        desired = _desired(current, actions, checks)
        desired = _with_factors(con, desired, source=source, splits_in_bars=splits_in_bars)
        gone, added = _difference(current, desired)
        if len(gone):
            con.register("kdist_gone", gone)
            con.execute(
                """UPDATE kdist_actions SET valid_to = ? FROM kdist_gone g
                   WHERE kdist_actions.symbol = g.symbol AND kdist_actions.source = ?
                     AND kdist_actions.ex_date = g.ex_date::DATE
                     AND kdist_actions.valid_to IS NULL""",
                [now, source])
        if len(added):
            con.register("kdist_added", added)
            con.execute(
                """INSERT INTO kdist_actions
                   SELECT symbol, ?, ex_date::DATE, cash, bonus, rights, rights_price, split,
                          factor, factor_from, ?, ?, NULL
                   FROM kdist_added""", [source, job_id, now])
        con.execute(
            """INSERT INTO kdist_action_checks
               SELECT symbol, ?, start::DATE, "end"::DATE, ?, ?, ? FROM kdist_checks""",
            [source, splits_in_bars, job_id, now])
    finally:
        for name in ("kdist_checks", "kdist_answered", "kdist_gone", "kdist_added"):
            try:
                con.unregister(name)
            except duckdb.Error:
                pass
    return sorted(added["symbol"].unique().tolist())


# The current rows of the checked symbols that a merge can change. A symbol the answer gives
# vendor factors for, and whose current rows are all the vendor's, keeps every row outside
# its window that the answer does not repeat exactly as it is (_desired keeps it, _with_factors
# leaves vendor rows alone): only its rows in the window (a day's slack either side) and at
# the answer's ex-dates are read. Every other symbol's rows are read whole, its factors
# recomputed from all of its events. An update of 5,000 symbols reads 5,000 rows, not 48,000
# (docs/performance.md#updates).
_CURRENT = """
    WITH cur AS (SELECT a.symbol, a.ex_date, a.cash, a.bonus, a.rights, a.rights_price,
                        a.split, a.factor, a.factor_from
                 FROM kdist_actions a SEMI JOIN kdist_checks c ON a.symbol = c.symbol
                 WHERE a.source = ? AND a.valid_to IS NULL),
         vendor AS (SELECT DISTINCT symbol FROM kdist_answered WHERE vendor),
         whole AS (SELECT c.symbol FROM kdist_checks c ANTI JOIN vendor v ON c.symbol = v.symbol
                   UNION
                   SELECT symbol FROM cur WHERE factor_from IS DISTINCT FROM 'vendor'),
         picked AS (
             SELECT a.* FROM cur a SEMI JOIN whole w ON a.symbol = w.symbol
             UNION
             SELECT a.* FROM cur a JOIN kdist_checks c ON a.symbol = c.symbol
             WHERE (c.start IS NULL OR a.ex_date >= c.start::DATE - 1)
               AND (c."end" IS NULL OR a.ex_date <= c."end"::DATE + 1)
             UNION
             SELECT a.* FROM cur a SEMI JOIN kdist_answered n
                 ON a.symbol = n.symbol AND a.ex_date = n.ex_date::DATE)
    SELECT symbol, ex_date::TIMESTAMP AS ex_date, cash, bonus, rights, rights_price, split,
           factor, factor_from
    FROM picked ORDER BY symbol, ex_date"""


def _answered(actions: pd.DataFrame | None) -> pd.DataFrame:
    """The answer's (symbol, ex_date) and whether the vendor gave its factor: which current
    rows :data:`_CURRENT` reads."""
    if actions is None or len(actions) == 0:
        return pd.DataFrame({"symbol": pd.Series(dtype="str"),
                             "ex_date": pd.Series(dtype="datetime64[us]"),
                             "vendor": pd.Series(dtype=bool)})
    return pd.DataFrame({
        "symbol": actions["symbol"].astype("str").to_numpy(),
        "ex_date": pd.to_datetime(actions["ex_date"]).astype("datetime64[us]").to_numpy(),
        "vendor": actions["factor"].notna().to_numpy(bool),
    })


def _desired(current: pd.DataFrame, actions: pd.DataFrame | None,
             checks: pd.DataFrame) -> pd.DataFrame:
    """The rows each checked symbol should have now: the answer, and the current rows
    outside the asked window that the answer does not replace."""
    columns = ["symbol", "ex_date", *_VALUES, "factor_from"]
    if actions is None or len(actions) == 0:
        new = pd.DataFrame({c: pd.Series(dtype="float64") for c in columns})
        new["symbol"] = pd.Series(dtype="str")
        new["ex_date"] = pd.Series(dtype="datetime64[us]")
    else:
        new = actions.assign(
            ex_date=pd.to_datetime(actions["ex_date"]).astype("datetime64[us]"),
            factor_from=np.where(actions["factor"].notna(), "vendor", None),
        )[columns]
    if len(current) == 0:  # nothing stored to keep (a first import, say): the answer as is
        return new.sort_values(["symbol", "ex_date"], kind="stable").reset_index(drop=True)
    window = checks.set_index("symbol")
    lo = current["symbol"].map(window["start"]).astype("datetime64[us]")
    hi = current["symbol"].map(window["end"]).astype("datetime64[us]")
    answered = pd.MultiIndex.from_frame(new[["symbol", "ex_date"]])
    mine = pd.MultiIndex.from_frame(current[["symbol", "ex_date"]].astype(
        {"ex_date": "datetime64[us]"}))
    outside = ((current["ex_date"] < lo) | (current["ex_date"] > hi)).to_numpy()
    kept = current[outside & ~mine.isin(answered)]
    if len(new) and (outside & mine.isin(answered)).any():
        # Outside the asked window an answer only adds: an answered row without event
        # figures (a vendor's whole factor series, its dividends asked for the window's
        # years only) keeps the figures stored for that ex-date.
        known = current[outside].astype({"ex_date": "datetime64[us]"}).set_index(
            ["symbol", "ex_date"])
        at = pd.MultiIndex.from_frame(new[["symbol", "ex_date"]])
        bare = np.ones(len(new), bool)
        for column in EVENT_COLUMNS:
            bare &= new[column].to_numpy("float64") == NO_EVENT[column]
        fill = bare & at.isin(known.index)
        if fill.any():
            new = new.copy()
            rows = known.loc[at[fill]]
            for column in EVENT_COLUMNS:
                new.loc[fill, column] = rows[column].to_numpy("float64")
    frames = [f for f in (new, kept[columns]) if len(f)]
    if not frames:
        return new
    desired = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return desired.sort_values(["symbol", "ex_date"], kind="stable").reset_index(drop=True)


def _with_factors(con, desired: pd.DataFrame, *, source: str,
                  splits_in_bars: bool) -> pd.DataFrame:
    """``desired`` with the factors of symbols the vendor gave none for computed from their
    events and the stored raw close before each ex-date."""
    if len(desired) == 0 or desired["factor_from"].eq("vendor").all():
        return desired  # every factor the vendor's (an update's usual answer): none to compute
    vendor = desired["symbol"].isin(
        desired.loc[desired["factor_from"].eq("vendor"), "symbol"].unique())
    desired.loc[vendor & desired["factor_from"].ne("vendor"), ["factor", "factor_from"]] = (
        np.nan, None)
    need = desired.loc[~vendor, ["symbol", "ex_date"]].reset_index()
    if len(need) == 0:
        return desired
    need["ex_date"] = need["ex_date"].astype("datetime64[s]")
    con.register("kdist_need", need)
    try:
        closes = con.execute(
            """WITH raw AS (
                    SELECT symbol, ts, close FROM kline
                    WHERE adjust = 'none' AND source = ?
                      AND freq IN (SELECT unnest(?::VARCHAR[]))
                      AND symbol IN (SELECT symbol FROM kdist_need)),
                before AS (
                    SELECT n."index", r.close AS prev_close
                    FROM kdist_need n ASOF LEFT JOIN raw r
                      ON n.symbol = r.symbol AND n.ex_date > r.ts),
                after AS (
                    SELECT n."index", r.ts IS NOT NULL AS traded
                    FROM kdist_need n ASOF LEFT JOIN raw r
                      ON n.symbol = r.symbol AND n.ex_date <= r.ts)
                SELECT "index", prev_close, traded FROM before JOIN after USING ("index")""",
            [source, list(_CLOSE_FREQS)]).df().set_index("index")
    finally:
        con.unregister("kdist_need")
    rows = need["index"].to_numpy()
    prev = closes["prev_close"].reindex(rows).to_numpy("float64")
    traded = closes["traded"].reindex(rows).fillna(False).to_numpy(bool)
    events = desired.loc[rows]
    split = np.ones(len(rows)) if splits_in_bars else events["split"].to_numpy("float64")
    steps = hfq_steps(prev, events["cash"].to_numpy("float64"),
                      events["bonus"].to_numpy("float64"), events["rights"].to_numpy("float64"),
                      events["rights_price"].to_numpy("float64"), split)
    # No raw bar before the ex-date: nothing stored to adjust across it.
    steps = np.where(np.isfinite(steps) & (steps > 0), steps, 1.0)
    factors = pd.Series(steps, index=rows).groupby(events["symbol"].to_numpy()).cumprod()
    desired.loc[rows, "factor"] = np.where(traded, factors.to_numpy(), np.nan)
    desired.loc[rows, "factor_from"] = "events"
    return desired


def _same(now: dict, new: dict) -> np.ndarray:
    """Row by row, whether two aligned sets of rows hold the same numbers and factor source."""
    same = np.ones(len(now["factor_from"]), bool)
    for column in _VALUES:
        a, b = now[column], new[column]
        same &= np.isclose(a, b, rtol=1e-12, atol=0.0) | (np.isnan(a) & np.isnan(b))
    return same & (now["factor_from"] == new["factor_from"])


def _keys_of(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    return frame["symbol"].to_numpy(object), frame["ex_date"].to_numpy()


def _paired(current: pd.DataFrame, desired: pd.DataFrame):
    """:func:`_difference` when ``current`` and ``desired`` hold the same unique keys (an
    update's usual merge: every answered row stored already), row against row in key order
    instead of an outer merge (12-14 ms against 5 ms for an update's 5,000 rows); None
    otherwise."""
    if len(current) != len(desired):
        return None
    key = ["symbol", "ex_date"]
    now = current.astype({"ex_date": "datetime64[us]"})
    new = desired.astype({"ex_date": "datetime64[us]"})
    names, days = _keys_of(now)
    ordered = ((names[1:] > names[:-1])
               | ((names[1:] == names[:-1]) & (days[1:] >= days[:-1]))).all()
    if not ordered:  # _CURRENT and _desired both sort by key: not expected
        now = now.sort_values(key, kind="stable", ignore_index=True)
        new = new.sort_values(key, kind="stable", ignore_index=True)
        names, days = _keys_of(now)
    theirs, their_days = _keys_of(new)
    if not ((names == theirs).all() and (days == their_days).all()):
        return None
    if ((names[1:] == names[:-1]) & (days[1:] == days[:-1])).any():
        return None  # a repeated key: the merge pairs each with each
    rows = [{**{c: f[c].to_numpy("float64") for c in _VALUES},
             "factor_from": f["factor_from"].fillna("").to_numpy(object)} for f in (now, new)]
    changed = ~_same(*rows)
    added = new.loc[changed, key + list(_VALUES) + ["factor_from"]]
    return now.loc[changed, key].reset_index(drop=True), added.reset_index(drop=True)


def _difference(current: pd.DataFrame, desired: pd.DataFrame):
    """``(gone, added)``: current rows that no desired row repeats, and desired rows that
    no current row holds already (same ex-date, same numbers)."""
    key = ["symbol", "ex_date"]
    if len(current) == 0:  # nothing stored: every desired row is new
        added = desired[key + list(_VALUES) + ["factor_from"]].astype(
            {"ex_date": "datetime64[us]"})
        return current[key].astype({"ex_date": "datetime64[us]"}), added.reset_index(drop=True)
    paired = _paired(current, desired)
    if paired is not None:
        return paired
    both = current.astype({"ex_date": "datetime64[us]"}).merge(
        desired.astype({"ex_date": "datetime64[us]"}), on=key, how="outer",
        suffixes=("_now", "_new"), indicator=True)
    same = both["_merge"].eq("both").to_numpy() & _same(*(
        {**{c: both[f"{c}_{side}"].to_numpy("float64") for c in _VALUES},
         "factor_from": both[f"factor_from_{side}"].fillna("").to_numpy(object)}
        for side in ("now", "new")))
    gone = both.loc[~same & both["_merge"].ne("right_only").to_numpy(), key]
    added = both.loc[~same & both["_merge"].ne("left_only").to_numpy()]
    added = added[key + [f"{c}_new" for c in _VALUES] + ["factor_from_new"]]
    added.columns = key + list(_VALUES) + ["factor_from"]
    return gone.reset_index(drop=True), added.reset_index(drop=True)


_NOW = "SELECT * FROM kdist_actions WHERE valid_to IS NULL"
# Known by the end of as_of: valid_from before the next midnight.
_AS_OF = """SELECT * FROM (
                SELECT *, bool_or(valid_from < ?::TIMESTAMP + INTERVAL 1 DAY)
                            OVER (PARTITION BY symbol, source, ex_date) AS known,
                          row_number() OVER (PARTITION BY symbol, source, ex_date
                                             ORDER BY valid_from) AS nth
                FROM kdist_actions WHERE ex_date <= ?::DATE)
            WHERE CASE WHEN known
                THEN valid_from < ?::TIMESTAMP + INTERVAL 1 DAY
                     AND (valid_to IS NULL OR valid_to >= ?::TIMESTAMP + INTERVAL 1 DAY)
                ELSE nth = 1 END"""
# The as-of join, as an equi-join: each factor holds from its ex-date to the next, and that
# interval is cut at year ends, so every raw bar finds its factor by (symbol, year) and the
# interval's bounds. Half the time of DuckDB's ASOF JOIN, which sorts both sides (see
# docs/performance.md#derived-reads). {versions}: the factors' versions read; {scale}: what
# a bar's prices are multiplied by.
_DERIVED = """
    WITH src AS (SELECT symbol, arg_max(source, checked_at) AS source
                 FROM kdist_action_checks
                 WHERE (?::VARCHAR[] IS NULL OR symbol IN (SELECT unnest(?::VARCHAR[])))
                 GROUP BY symbol),
         f AS (SELECT v.symbol, v.ex_date::TIMESTAMP_S AS ex_ts, v.factor
               FROM ({versions}) v JOIN src USING (symbol, source)
               WHERE v.factor IS NOT NULL),
         raw AS (SELECT k.symbol, k.ts, k.open, k.high, k.low, k.close, k.volume, k.amount,
                        k.source
                 FROM kline k SEMI JOIN src ON k.symbol = src.symbol
                 WHERE k.adjust = 'none' AND k.freq = ?
                   AND (?::TIMESTAMP_S IS NULL OR k.ts >= ?::TIMESTAMP_S)
                   AND (?::TIMESTAMP_S IS NULL OR k.ts < ?::TIMESTAMP_S)),
         span AS (SELECT year(min(ts)) AS y0, year(max(ts)) AS y1 FROM raw),
         steps AS (
             SELECT symbol, ex_ts AS lo, factor,
                    lead(ex_ts, 1, TIMESTAMP_S '9999-12-31')
                        OVER (PARTITION BY symbol ORDER BY ex_ts) AS hi,
                    arg_max(factor, ex_ts) OVER (PARTITION BY symbol) AS last
             FROM f
             UNION ALL  -- before the first ex-date: no adjustment (hfq factor 1)
             SELECT symbol, TIMESTAMP_S '0001-01-01', 1.0, min(ex_ts), arg_max(factor, ex_ts)
             FROM f GROUP BY symbol),
         b AS (SELECT s.symbol, y, s.lo, s.hi, {scale} AS m
               FROM steps s, span,
                    unnest(range(greatest(year(s.lo), span.y0),
                                 least(year(s.hi), span.y1) + 1)) t(y)),
         derived AS (
             SELECT r.symbol, r.ts::TIMESTAMP AS ts, r.open * m AS open, r.high * m AS high,
                    r.low * m AS low, r.close * m AS close, r.volume, r.amount, r.source
             FROM (SELECT r.*, coalesce(b.m, 1.0) AS m
                   FROM raw r LEFT JOIN b ON r.symbol = b.symbol AND year(r.ts) = b.y
                                         AND r.ts >= b.lo AND r.ts < b.hi) r)"""
# Weeks and months from the derived days, stamped on their last trading day (kdist.bars),
# kept when stamped inside [lo, hi). {period}: week (Monday to Sunday) or month.
_PERIODS = """
    SELECT * FROM (
        SELECT symbol, max(ts) AS ts, arg_min(open, ts) AS open, max(high) AS high,
               min(low) AS low, arg_max(close, ts) AS close, sum(volume) AS volume,
               sum(amount) AS amount, arg_max(source, ts) AS source
        FROM derived GROUP BY symbol, date_trunc('{period}', ts))
    WHERE (?::TIMESTAMP IS NULL OR ts >= ?::TIMESTAMP)
      AND (?::TIMESTAMP IS NULL OR ts < ?::TIMESTAMP)"""
# The vendor's stored adjusted bars of the symbols not derived at this freq (no check, or no
# raw bars of it to derive from).
_STORED = """
    SELECT k.symbol, k.ts::TIMESTAMP AS ts, k.open, k.high, k.low, k.close, k.volume,
           k.amount, k.source
    FROM kline k
    WHERE k.adjust = ? AND k.freq = ?
      AND (?::VARCHAR[] IS NULL OR k.symbol IN (SELECT unnest(?::VARCHAR[])))
      AND (?::TIMESTAMP_S IS NULL OR k.ts >= ?::TIMESTAMP_S)
      AND (?::TIMESTAMP_S IS NULL OR k.ts < ?::TIMESTAMP_S)
      AND k.symbol NOT IN (
          SELECT DISTINCT r.symbol FROM kline r
          SEMI JOIN (SELECT DISTINCT symbol FROM kdist_action_checks) c ON r.symbol = c.symbol
          WHERE r.adjust = 'none' AND r.freq = ?)"""


_COMPARE = """
    , v AS (SELECT symbol, ts::TIMESTAMP AS ts, open, high, low, close
            FROM kline WHERE freq = ? AND adjust = ?),
      diff AS (SELECT v.symbol, v.ts,
                      greatest(abs(v.open - d.open), abs(v.high - d.high),
                               abs(v.low - d.low), abs(v.close - d.close)) AS diff
               FROM v JOIN d USING (symbol, ts))
    SELECT symbol, ? AS adjust, count(*) AS bars, max(diff) AS max_diff,
           count(*) FILTER (WHERE diff > ?) AS differing,
           min(ts) FILTER (WHERE diff > ?) AS first_differing
    FROM diff GROUP BY symbol ORDER BY symbol"""


def read_derived(con: duckdb.DuckDBPyConnection, adjust: Adjust, freq: Freq, *,
                 as_of: pd.Timestamp | None, symbols: list[str] | None,
                 lo: pd.Timestamp | None, hi: pd.Timestamp | None,
                 stored: bool = False) -> pd.DataFrame:
    """Adjusted bars derived from raw bars, sorted by symbol and ts.

    Symbols with a ``kdist_action_checks`` row and raw bars of ``freq`` (of ``1d`` for weeks
    and months, which are built from the derived days, as vendors build theirs) are read:
    every raw bar, whatever its source, times the factor in force at its time, from the
    factors of the source whose actions were fetched last (one series and one anchor per
    symbol); qfq divided by the factor in force at the anchor. ``symbols`` (None: all) and
    ``[lo, hi)`` pick the bars; ``as_of``: only factors of ex-dates up to that date, each in
    the version kdist held at the end of that day (or, for an event kdist learnt of later,
    the first version it recorded), and qfq anchored there. With ``stored``, the other
    symbols' stored vendor-adjusted bars are added. Columns are those of
    :meth:`kdist.store.Store.load`; volume and amount are raw.
    """
    return _run(con, adjust, freq, as_of=as_of, symbols=symbols, lo=lo, hi=hi,
                stored=stored)


def compare_with_vendor(con: duckdb.DuckDBPyConnection, freq: Freq,
                        tolerance: float) -> pd.DataFrame:
    """Per symbol and adjust, stored vendor-adjusted bars against the derived ones (see
    :meth:`kdist.store.Store.check_adjust`)."""
    return pd.concat([_run(con, adjust, freq, tolerance=tolerance)
                      for adjust in (Adjust.QFQ, Adjust.HFQ)], ignore_index=True)


def _run(con, adjust: Adjust, freq: Freq, *, as_of=None, symbols=None, lo=None, hi=None,
         stored: bool = False, tolerance: float | None = None) -> pd.DataFrame:
    """Derived bars (:func:`read_derived`), or with ``tolerance`` their comparison with the
    stored vendor bars (:func:`compare_with_vendor`). Every piece of the SQL is one of this
    module's constants; every value a parameter."""
    params = [symbols, symbols]
    if as_of is None:
        versions = _NOW
    else:
        versions = _AS_OF
        params += [as_of.to_pydatetime()] * 4
    if adjust is Adjust.QFQ:
        scale = "s.factor / s.last"
    else:
        scale = "s.factor"
    weeks = freq in (Freq.WEEK, Freq.MONTH)
    # A week or month is built from all its days: read a month more either side, and keep
    # the periods stamped inside [lo, hi).
    month = pd.Timedelta(days=31)
    first = lo - month if weeks and lo is not None else lo
    last = hi + month if weeks and hi is not None else hi
    raw_freq = Freq.DAY if weeks else freq
    params += [raw_freq.value, first, first, last, last]
    if not weeks:
        tail = " SELECT * FROM derived"
    elif freq is Freq.WEEK:
        tail = _PERIODS.format(period="week")
        params += [lo, lo, hi, hi]
    else:
        tail = _PERIODS.format(period="month")
        params += [lo, lo, hi, hi]
    derived = _DERIVED.format(versions=versions, scale=scale)
    bars = derived + tail
    if tolerance is not None:
        # The derived bars' CTEs, then the comparison's: one WITH.
        compare = derived + ", d AS (" + tail + ")" + _COMPARE
        return con.execute(compare, [*params, freq.value, adjust.value, adjust.value,
                                     tolerance + 1e-9, tolerance + 1e-9]).df()
    if stored:
        params += [adjust.value, freq.value, symbols, symbols, lo, lo, hi, hi, raw_freq.value]
        return con.execute(bars + " UNION ALL " + _STORED + " ORDER BY symbol, ts", params).df()
    return con.execute(bars + " ORDER BY symbol, ts", params).df()
