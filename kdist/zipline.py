"""A zipline bundle of the bars in a kdist file: backtest on what kdist imported.

zipline-reloaded reads prices from *bundles* it ingests once. :func:`register` makes the raw
daily bars of a kdist DuckDB file one, with their corporate actions as zipline's adjustments,
so that ``zipline ingest -b kdist`` copies them and ``zipline run -b kdist`` (or
``zipline.run_algorithm(..., bundle="kdist")``) backtests on them. Call it in zipline's
``~/.zipline/extension.py``::

    import kdist.zipline
    kdist.zipline.register("kdist", "/srv/kdist/data/kdist.duckdb", calendar="XSHG")

zipline 3.2 pins pandas < 3 and kdist needs pandas 3: install it in a virtual environment of
its own with kdist beside it (``pip install zipline-reloaded 'pandas<3' duckdb dask pyarrow
tenacity exchange-calendars`` then ``pip install --no-deps kdist``: the list in
``tests/interop/zipline.txt``). This module uses only pandas APIs of both 2.2 and 3.x and reads
the file through :class:`kdist.store.Store` (read-only, the way ``kdist.load`` does: it waits
for a running kdist import to let it in between batches).

What the bundle holds
---------------------
**Daily bars**: the stored raw bars (``freq='1d'``, ``adjust='none'``), one asset per symbol
(sids 0, 1, ... in symbol order), on the bundle's calendar. zipline wants a bar for every
session from an asset's first bar to its last, so a session without a stored bar (a suspended
day a vendor left out) is *filled*: the close carried forward, open = high = low = that close,
volume 0 (kdist's placeholder bars look the same). A bar stamped on a day that is no session
of the calendar, or outside the sessions it knows (XSHG's end on 2026-12-31), cannot be
stored by zipline and is left out with a warning. zipline keeps prices as ``uint32`` of
thousandths (0.001 steps) and volume as ``uint32``: volumes above 4,294,967,295 are capped
there (zipline would write 0), with a warning.

**Adjustments** come from the stored corporate actions in force (``kdist_actions``, rows with
``valid_to IS NULL``, of the source whose actions were fetched last, the one ``kdist.load(...,
adjust="qfq")`` uses). Each ex-date is moved to the first session on or after it (zipline
looks dividends up by session); one before or on an asset's first bar, or after its last, adjusts
no bar of it and is left out. For each ex-date:

- ``splits``: ``ratio = 1 / ((1 + bonus) * split)``: bonus and transfer shares (送股, 转增)
  and splits are shares a holder gets for nothing, so they are splits for prices, volumes
  and, in a backtest, positions (10送10 is ratio 0.5).
- ``dividends``: ``amount = cash`` per share, ``ex_date`` that session, ``pay_date`` the same
  session (A-shares pay cash dividends on the ex-date; zipline credits a held position on its
  pay date, and pays none that has no pay date), record and declared dates NaT. zipline
  derives the price ratio ``1 - cash / close(session before)`` itself.
- ``mergers`` (zipline's price-only adjustment): what kdist's factor says beyond those two, so
  that zipline's adjusted prices are kdist's: ``ratio = (F(before) / F(ex)) / (split ratio *
  dividend ratio)``, F the stored cumulative hfq factor, written where it differs from 1 by
  more than 1e-6. A **rights issue** (配股) lands here: holders get its shares only by paying
  ``rights_price`` (and A-share rights do not trade), so it is no split and changes no
  position; its price effect, the ex-rights formula's ``rights_price * rights`` term and
  ``1 + rights`` shares, is a price-only ratio. So does a vendor's factor (baostock's,
  the synthetic provider's) where the rounded event figures miss it.

A history window zipline reads with adjustments (``data.history``, ``DataPortal
.get_history_window``) is then kdist's qfq anchored at the window's last day
(``kdist.load(db, adjust="qfq", as_of=that day)``), to zipline's 0.001 steps; volumes in it are
divided by the split ratios, zipline's convention (kdist's adjusted volumes stay raw).
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pandas as pd

from .calendars import calendar_for
from .errors import MissingDependencyError, UsageError
from .schema import normalise_symbol
from .store import DEFAULT_DB, Store

__all__ = ["COUNTRIES", "MINUTES_PER_DAY", "KdistBundle", "register"]

log = logging.getLogger(__name__)

#: Trading minutes of a session, which zipline's ``register`` asks for its minute bars (this
#: bundle writes none): XSHG 09:30-11:30 and 13:00-15:00; zipline's default 390 elsewhere.
MINUTES_PER_DAY = {"XSHG": 240, "XNYS": 390}
#: Country code of each calendar, for zipline's exchanges table (``"??"`` where unknown).
COUNTRIES = {
    "XSHG": "CN", "XNYS": "US", "XHKG": "HK", "XLON": "GB", "XTKS": "JP", "XTSE": "CA",
    "XTSX": "CA", "XASX": "AU", "XETR": "DE", "XFRA": "DE", "XDUS": "DE", "XHAM": "DE",
    "XSTU": "DE", "XPAR": "FR", "XAMS": "NL", "XBRU": "BE", "XLIS": "PT", "XMIL": "IT",
    "XMAD": "ES", "XSWX": "CH", "XWBO": "AT", "XDUB": "IE", "XSTO": "SE", "XOSL": "NO",
    "XCSE": "DK", "XHEL": "FI", "XICE": "IS", "XKRX": "KR", "XTAI": "TW", "XSES": "SG",
    "XKLS": "MY", "XBKK": "TH", "XIDX": "ID", "XBOM": "IN", "XNZE": "NZ", "XTAE": "IL",
    "XJSE": "ZA", "BVMF": "BR", "XMEX": "MX", "XBUE": "AR", "XSGO": "CL",
}
#: The exchange (ISO 10383 MIC) of an A-share suffix: the three share XSHG's calendar.
_A_SHARE_EXCHANGES = {"SH": "XSHG", "SS": "XSHG", "SZ": "XSHE", "BJ": "BJSE"}
#: zipline keeps volume as uint32.
_MAX_VOLUME = float(np.iinfo(np.uint32).max)
#: A merger ratio closer to 1 than this is not written (kdist's factor from the events).
_MERGER_TOLERANCE = 1e-6
#: Symbols read from the file at a time, each batch in one short read: a kdist import
#: writing the file lets readers in between its batches.
_CHUNK = 200


def register(name: str = "kdist", db=DEFAULT_DB, *, symbols=None, start=None, end=None,
             calendar: str | None = None) -> KdistBundle:
    """Register the bars of the kdist file ``db`` as the zipline bundle ``name``.

    Call it in zipline's ``~/.zipline/extension.py`` (or before
    :func:`zipline.data.bundles.ingest` in a script); then ``zipline ingest -b NAME`` copies
    the stored raw daily bars and corporate actions into the bundle (see the module's
    docstring for what it holds) and ``zipline run -b NAME`` backtests on it. Ingest again
    after a ``kdist update``: a bundle is a copy.

    Parameters
    ----------
    name
        The bundle's name.
    db
        Path of the kdist DuckDB file, made absolute here (zipline may run elsewhere).
    symbols
        The symbols (any form kdist accepts); None: every symbol with raw daily bars stored
        whose calendar is the bundle's.
    start, end
        Dates: the bundle's first and last session. zipline clamps them to the sessions its
        calendar knows: its XSHG starts 20 years before today (2006-12-07 in December 2026)
        and ends on 2026-12-31, XNYS spans 1990 to a year ahead. None: those bounds. Stored
        bars outside them are left out with a warning.
    calendar
        An exchange_calendars name (``"XSHG"``, ``"XNYS"``). None: the one the symbols trade
        on (:func:`kdist.calendars.calendar_for`: A-shares XSHG, bare tickers XNYS); with
        neither ``symbols`` nor ``calendar`` that is decided from the symbols stored in
        ``db``, read now, so pass ``calendar=`` to register without opening the file.

    Returns
    -------
    KdistBundle
        The ingest function zipline calls (its ``summary`` says what the last ingest did).

    Raises
    ------
    UsageError
        The symbols trade on several calendars, or on none kdist knows: pass ``calendar=``
        (or register one bundle per calendar).
    MissingDependencyError
        zipline is not installed in this environment.

    Examples
    --------
    In ``~/.zipline/extension.py``::

        import kdist.zipline
        kdist.zipline.register("kdist-cn", "/srv/kdist/data/kdist.duckdb", calendar="XSHG",
                               start="2015-01-05")
    """
    path = os.path.abspath(os.fspath(db))
    if symbols is not None:
        symbols = [symbols] if isinstance(symbols, str) else list(symbols)
        symbols = list(dict.fromkeys(normalise_symbol(s, strict=False) for s in symbols))
        if not symbols:
            raise UsageError("symbols is empty: pass None for every stored symbol")
    if calendar is None:
        calendar = _calendar_of(symbols if symbols is not None else _stored(path), path)
    start, end = _session(start, "start"), _session(end, "end")
    ingest = KdistBundle(path, symbols=symbols, calendar=calendar, start=start, end=end)
    try:
        from zipline.data.bundles import register as zipline_register
    except ImportError as exc:
        raise MissingDependencyError(
            "zipline-reloaded is missing: it needs pandas < 3, so install it with kdist in a "
            "virtual environment of its own (the packages of tests/interop/zipline.txt, "
            "then pip install --no-deps kdist)", name="zipline") from exc

    zipline_register(name, ingest, calendar_name=calendar, start_session=start,
                     end_session=end, minutes_per_day=MINUTES_PER_DAY.get(calendar, 390))
    return ingest


def _session(value, what: str) -> pd.Timestamp | None:
    """A date as zipline's sessions are: a naive midnight."""
    if value is None:
        return None
    try:
        day = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{what}={value!r} is no date") from exc
    if day.tzinfo is not None:
        day = day.tz_localize(None)
    return day.normalize()


def _stored(path: str) -> list[str]:
    """The symbols with raw daily bars in the file."""
    with Store(path, read_only=True) as store:
        series = store.catalog()
    daily = series[(series["freq"] == "1d") & (series["adjust"] == "none")]
    return sorted(daily["symbol"].astype(str).unique())


def _calendar_of(symbols: list[str], path: str) -> str:
    """The one calendar ``symbols`` trade on, or a UsageError that says what to pass."""
    if not symbols:
        raise UsageError(f"{path} has no raw daily bars (kdist ingest --freq 1d --adjust none)")
    by = {}
    for symbol in symbols:
        by.setdefault(calendar_for(symbol), []).append(symbol)
    if None in by:
        raise UsageError(f"no calendar known for {', '.join(by[None][:5])}: pass calendar=")
    if len(by) > 1:
        listing = "; ".join(f"{c}: {', '.join(s[:3])}{' ...' if len(s) > 3 else ''}"
                            for c, s in sorted(by.items()))
        raise UsageError(f"the symbols trade on {len(by)} calendars ({listing}): a bundle has "
                         "one, so pass calendar= (or symbols=) and register one bundle each")
    return next(iter(by))


class KdistBundle:
    """zipline's ingest function of a kdist file (what :func:`register` registers).

    zipline calls it with its 11 positional arguments; after a call, :attr:`summary` holds
    the counts of what was written (also logged).
    """

    def __init__(self, db: str, *, symbols: list[str] | None, calendar: str,
                 start: pd.Timestamp | None = None, end: pd.Timestamp | None = None):
        self.db = db
        self.symbols = symbols
        self.calendar = calendar
        #: The dates asked for (None: open): bars outside them are not read.
        self.start, self.end = start, end
        self.summary: dict = {}

    def __repr__(self):
        return f"KdistBundle({self.db!r}, calendar={self.calendar!r})"

    def __call__(self, environ, asset_db_writer, minute_bar_writer, daily_bar_writer,
                 adjustment_writer, calendar, start_session, end_session, cache,
                 show_progress, output_dir):
        first, last = pd.Timestamp(start_session), pd.Timestamp(end_session)
        symbols = self._symbols()
        run = _Run(calendar, first, last)
        daily_bar_writer.write(run.bars(self.db, symbols, self.start, self.end),
                               assets=set(range(len(symbols))), show_progress=show_progress)
        if not run.equities:
            raise UsageError(f"{self.db}: none of the {len(symbols)} symbols has a raw daily "
                             f"bar on a {self.calendar} session from {first.date()} to "
                             f"{last.date()}")
        equities = pd.DataFrame(run.equities).set_index("sid")
        exchanges = sorted(set(equities["exchange"]))
        asset_db_writer.write(equities=equities, exchanges=pd.DataFrame({
            "exchange": exchanges, "canonical_name": exchanges,
            "country_code": [COUNTRIES.get(self.calendar, "??")] * len(exchanges)}))
        adjustment_writer.write(splits=run.frame("splits"), mergers=run.frame("mergers"),
                                dividends=run.frame("dividends"))
        self.summary = run.summary(len(symbols))
        self._report(self.summary, first, last)

    def _symbols(self) -> list[str]:
        """The bundle's symbols: those given, or the stored ones on its calendar."""
        stored = _stored(self.db)
        if self.symbols is None:
            symbols = [s for s in stored if calendar_for(s) == self.calendar]
            if not symbols:
                raise UsageError(f"{self.db} has no raw daily bars of a symbol trading on "
                                 f"{self.calendar}: pass symbols=")
            return symbols
        missing = sorted(set(self.symbols) - set(stored))
        if missing:
            log.warning("kdist bundle: no raw daily bars stored for %d symbols, left out: %s",
                        len(missing), ", ".join(missing[:10]))
        return sorted(set(self.symbols) - set(missing))

    def _report(self, s: dict, first, last):
        log.info("kdist bundle of %s (%s): %d assets, %d bars (sessions without a stored "
                 "bar, filled: %d), splits: %d, dividends: %d, price-only adjustments: %d",
                 self.db, self.calendar, s["assets"], s["bars"], s["filled"], s["splits"],
                 s["dividends"], s["mergers"])
        if s["off_calendar"]:
            log.warning("kdist bundle: bars on days that are no %s session, left out: %d "
                        "(%s)", self.calendar, s["off_calendar"], _few(s["off_calendar_by"]))
        if s["outside"]:
            log.warning("kdist bundle: bars outside the sessions zipline's %s knows (%s .. "
                        "%s), left out: %d (%s)", self.calendar, first.date(), last.date(),
                        s["outside"], _few(s["outside_by"]))
        if s["volume_capped"]:
            log.warning("kdist bundle: %d volumes above zipline's uint32 range capped at "
                        "4294967295", s["volume_capped"])


def _few(counts: dict, most: int = 5) -> str:
    shown = ", ".join(f"{k} {v}" for k, v in list(counts.items())[:most])
    return shown + (f" and {len(counts) - most} more symbols" if len(counts) > most else "")


class _Run:
    """One ingest: the bars it yields to zipline's writer, and what it gathers meanwhile
    (the assets, their adjustments, the counts)."""

    def __init__(self, calendar, first: pd.Timestamp, last: pd.Timestamp):
        self.calendar = calendar
        self.first, self.last = first, last
        self.equities: list[dict] = []
        self.rows = {"splits": [], "mergers": [], "dividends": []}
        self.counts = {"bars": 0, "filled": 0, "volume_capped": 0}
        self.off_calendar: dict[str, int] = {}
        self.outside: dict[str, int] = {}

    def bars(self, db: str, symbols: list[str], start=None, end=None):
        """``(sid, frame)`` of each symbol with bars on a session, read a chunk at a time."""
        for at in range(0, len(symbols), _CHUNK):
            chunk = symbols[at:at + _CHUNK]
            with Store(db, read_only=True) as store:
                raw = store.load(chunk, start, end, "1d", "none")
                actions = _actions(store, chunk)
            groups = dict(iter(raw.groupby("symbol", sort=False)))
            for sid, symbol in enumerate(chunk, start=at):
                if symbol not in groups:
                    continue
                frame = self._frame(symbol, groups.pop(symbol))
                if frame is None:
                    continue
                self._asset(sid, symbol, frame.index)
                self._adjustments(sid, frame, actions.get(symbol))
                yield sid, frame

    def _frame(self, symbol: str, raw: pd.DataFrame) -> pd.DataFrame | None:
        """One symbol's bars on every session from its first to its last, filled."""
        days = pd.DatetimeIndex(raw["ts"]).normalize()
        bars = pd.DataFrame({c: raw[c].to_numpy("float64") for c in
                             ("open", "high", "low", "close", "volume")},
                            index=days.astype("datetime64[ns]")).sort_index()
        bars = bars[~bars.index.duplicated(keep="last")]
        inside = (bars.index >= self.first) & (bars.index <= self.last)
        if not inside.all():
            self.outside[symbol] = int((~inside).sum())
            bars = bars[inside]
        if bars.empty:
            return None
        sessions = _sessions(self.calendar, bars.index[0], bars.index[-1])
        on = bars.index.isin(sessions)
        if not on.all():
            self.off_calendar[symbol] = int((~on).sum())
            bars = bars[on]
            if bars.empty:
                return None
            sessions = sessions[(sessions >= bars.index[0]) & (sessions <= bars.index[-1])]
        frame = bars.reindex(sessions)
        gaps = frame["close"].isna().to_numpy()
        if gaps.any():
            close = frame["close"].ffill()
            for column in ("open", "high", "low", "close"):
                frame[column] = frame[column].where(~gaps, close)
            frame["volume"] = frame["volume"].where(~gaps, 0.0)
        volume = frame["volume"].fillna(0.0)
        capped = volume > _MAX_VOLUME
        self.counts["volume_capped"] += int(capped.sum())
        frame["volume"] = volume.where(~capped, _MAX_VOLUME)
        self.counts["bars"] += len(frame)
        self.counts["filled"] += int(gaps.sum())
        return frame

    def _asset(self, sid: int, symbol: str, sessions: pd.DatetimeIndex):
        head, _, suffix = symbol.rpartition(".")
        exchange = _A_SHARE_EXCHANGES.get(suffix) if head else None
        self.equities.append({
            "sid": sid, "symbol": symbol, "asset_name": symbol,
            "start_date": sessions[0], "end_date": sessions[-1],
            "first_traded": sessions[0], "auto_close_date": sessions[-1] + pd.Timedelta(days=1),
            "exchange": exchange or self.calendar.name,
        })

    def _adjustments(self, sid: int, frame: pd.DataFrame, actions: pd.DataFrame | None):
        """The splits, dividends and price-only ratios of one asset's ex-dates."""
        if actions is None or actions.empty:
            return
        sessions = frame.index
        ex = pd.DatetimeIndex(actions["ex_date"]).astype("datetime64[ns]")
        # Each ex-date's step of kdist's factor: F(before) / F(ex), 1 where it has none yet.
        factor = actions["factor"].to_numpy("float64")
        known = ~np.isnan(factor)
        before = np.concatenate([[1.0], factor[known][:-1]])
        step = np.ones(len(factor))
        step[known] = before / factor[known]
        at = sessions.searchsorted(ex, side="left")
        keep = (at > 0) & (at < len(sessions))
        if not keep.any():
            return
        table = pd.DataFrame({
            "at": at[keep],
            "split": 1.0 / ((1.0 + actions["bonus"].to_numpy("float64")[keep])
                            * actions["split"].to_numpy("float64")[keep]),
            "cash": actions["cash"].to_numpy("float64")[keep],
            "step": step[keep],
        }).groupby("at", sort=True).agg({"split": "prod", "cash": "sum", "step": "prod"})
        # zipline's stored close of the session before, in its 0.001 steps.
        close = np.round(frame["close"].to_numpy("float64") * 1000.0) / 1000.0
        for at, row in table.iterrows():
            day = sessions[at]
            dividend = 1.0
            if row["cash"] > 0:
                self.rows["dividends"].append({
                    "sid": sid, "ex_date": day, "record_date": pd.NaT,
                    "declared_date": pd.NaT, "pay_date": day, "amount": row["cash"]})
                ratio = 1.0 - row["cash"] / close[at - 1]
                dividend = ratio if ratio > 0 else 1.0  # zipline drops a ratio <= 0
            if row["split"] != 1.0:
                self.rows["splits"].append({"sid": sid, "effective_date": day,
                                            "ratio": row["split"]})
            merger = row["step"] / (row["split"] * dividend)
            if abs(merger - 1.0) > _MERGER_TOLERANCE:
                self.rows["mergers"].append({"sid": sid, "effective_date": day,
                                             "ratio": merger})

    def frame(self, kind: str) -> pd.DataFrame:
        """The rows of one of zipline's adjustment tables, in its columns and dtypes."""
        rows = self.rows[kind]
        if kind == "dividends":
            columns = ["sid", "ex_date", "record_date", "declared_date", "pay_date", "amount"]
            dates = columns[1:5]
        else:
            columns, dates = ["sid", "effective_date", "ratio"], ["effective_date"]
        frame = pd.DataFrame(rows, columns=columns)
        frame["sid"] = frame["sid"].astype("int64")
        for column in dates:
            frame[column] = pd.to_datetime(frame[column]).astype("datetime64[ns]")
        value = "amount" if kind == "dividends" else "ratio"
        frame[value] = frame[value].astype("float64")
        return frame

    def summary(self, symbols: int) -> dict:
        return {
            "symbols": symbols, "assets": len(self.equities), **self.counts,
            "splits": len(self.rows["splits"]), "dividends": len(self.rows["dividends"]),
            "mergers": len(self.rows["mergers"]),
            "off_calendar": sum(self.off_calendar.values()), "off_calendar_by": self.off_calendar,
            "outside": sum(self.outside.values()), "outside_by": self.outside,
        }


def _sessions(calendar, first: pd.Timestamp, last: pd.Timestamp) -> pd.DatetimeIndex:
    """The calendar's sessions from ``first`` to ``last``, naive midnights (ns)."""
    days = pd.DatetimeIndex(calendar.sessions_in_range(first, last))
    if days.tz is not None:
        days = days.tz_localize(None)
    return days.astype("datetime64[ns]")


# The source each symbol's derived prices use: the one whose actions were fetched last
# (kdist.adjustment's rule for qfq and hfq).
_SOURCES = """SELECT symbol, arg_max(source, checked_at) AS source FROM kdist_action_checks
              WHERE symbol IN (SELECT unnest(?::VARCHAR[])) GROUP BY symbol"""


def _actions(store: Store, symbols: list[str]) -> dict[str, pd.DataFrame]:
    """Per symbol its corporate actions in force, of the source its derived prices use,
    sorted by ex-date."""
    if not store.has_actions:
        return {}
    actions = store.actions(symbols)
    if actions.empty:
        return {}
    source = dict(store.con.execute(_SOURCES, [symbols]).fetchall())
    actions = actions[actions["source"].astype(str).to_numpy()
                      == actions["symbol"].astype(str).map(source).to_numpy()]
    return {symbol: rows.sort_values("ex_date").reset_index(drop=True)
            for symbol, rows in actions.groupby("symbol", sort=False)}
