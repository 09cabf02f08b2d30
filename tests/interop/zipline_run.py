"""Run by .venv-zipline's Python (tests/test_export_zipline.py): zipline itself reads a kdist
file through kdist.zipline.

    python zipline_run.py CONFIG.json

CONFIG names ``db``, ``root`` (a fresh ZIPLINE_ROOT), ``bundle``, ``calendar``, ``start``,
``end``, ``symbols``, ``buy`` (the symbol the algorithm buys 100 shares of on its first day)
and ``history_ends`` (days whose adjusted history windows are read), ``out`` (the JSON
written). The script

1. writes ``ROOT/extension.py`` calling ``kdist.zipline.register`` and runs
   ``python -m zipline ingest -b BUNDLE`` with ZIPLINE_ROOT=ROOT, as a user would;
2. loads the bundle: its assets and exchanges, the raw daily bars (``equity_daily_bar_reader``)
   and the adjustment tables, and the adjusted close and open history windows ending at each
   of ``history_ends`` (``DataPortal.get_history_window``, adjusted as zipline adjusts);
3. runs an algorithm (``zipline.run_algorithm``, no commission or slippage): it buys 100
   shares of ``buy`` on the first session and records, every session, ``data.current``'s
   close of every asset, its position and cash and portfolio value;

and writes all of it to ``out`` as JSON, dates as YYYY-MM-DD.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd


def day(value) -> str:
    return pd.Timestamp(value).strftime("%Y-%m-%d")


def main(config_path: str):
    config = json.loads(Path(config_path).read_text())
    root = Path(config["root"])
    root.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "ZIPLINE_ROOT": str(root)}
    register = (f"kdist.zipline.register({config['bundle']!r}, {config['db']!r}, "
                f"symbols={config.get('symbols')!r}, start={config.get('start')!r}, "
                f"end={config.get('end')!r}, calendar={config.get('calendar')!r})")
    (root / "extension.py").write_text(f"import kdist.zipline\n\n{register}\n")
    out: dict = {"timings": {}}

    # 1. zipline's own command.
    started = time.monotonic()
    ingest = subprocess.run([sys.executable, "-m", "zipline", "ingest", "-b", config["bundle"]],
                            env=env, capture_output=True, text=True, timeout=300,
                            check=False)
    out["timings"]["ingest"] = time.monotonic() - started
    out["ingest"] = {"returncode": ingest.returncode, "stdout": ingest.stdout[-4000:],
                     "stderr": ingest.stderr[-8000:]}
    if ingest.returncode != 0:
        Path(config["out"]).write_text(json.dumps(out, indent=1))
        sys.exit(f"zipline ingest failed:\n{ingest.stderr[-4000:]}")

    from zipline import run_algorithm
    from zipline.api import (
        order,
        record,
        set_commission,
        set_slippage,
        symbol,
    )
    from zipline.data import bundles
    from zipline.data.data_portal import DataPortal
    from zipline.finance import commission, slippage
    from zipline.utils.calendar_utils import get_calendar
    from zipline.utils.run_algo import load_extensions

    # 2. The bundle as zipline reads it.
    started = time.monotonic()
    load_extensions(True, (), True, env)
    bundle = bundles.load(config["bundle"], env)
    calendar = get_calendar(config["calendar"])
    finder = bundle.asset_finder
    assets = finder.retrieve_all(finder.sids)
    out["assets"] = [{"sid": int(a.sid), "symbol": a.symbol, "name": a.asset_name,
                      "exchange": a.exchange, "country": a.country_code,
                      "start": day(a.start_date), "end": day(a.end_date),
                      "auto_close": day(a.auto_close_date)} for a in assets]
    out["lookup"] = {a.symbol: int(finder.lookup_symbol(a.symbol, as_of_date=None).sid)
                     for a in assets}
    reader = bundle.equity_daily_bar_reader
    raw = {}
    for asset in assets:
        fields = ["open", "high", "low", "close", "volume"]
        arrays = reader.load_raw_arrays(fields, asset.start_date, asset.end_date, [asset.sid])
        days = calendar.sessions_in_range(asset.start_date, asset.end_date)
        raw[asset.symbol] = {day(d): [float(a[i, 0]) for a in arrays]
                             for i, d in enumerate(days)}
    out["raw"] = raw
    con = bundle.adjustment_reader.conn
    tables = {}
    for table in ("splits", "mergers", "dividends", "dividend_payouts"):
        cursor = con.execute(f"SELECT * FROM {table} ORDER BY sid, rowid")
        names = [c[0] for c in cursor.description]
        tables[table] = [dict(zip(names, row)) for row in cursor.fetchall()]
    for rows in tables.values():
        for row in rows:
            for key in ("effective_date", "ex_date", "pay_date"):
                if key in row and row[key] is not None and row[key] > 0:
                    row[key] = day(pd.Timestamp(row[key], unit="s"))
    out["adjustments"] = tables
    portal = DataPortal(finder, calendar, first_trading_day=reader.first_trading_day,
                        equity_daily_reader=reader, adjustment_reader=bundle.adjustment_reader)
    out["history"] = {}
    for end in config["history_ends"]:
        end_dt = pd.Timestamp(end)
        live = [a for a in assets if a.start_date <= end_dt]
        count = len(calendar.sessions_in_range(min(a.start_date for a in live), end_dt))
        window = {}
        for field in ("open", "close"):
            frame = portal.get_history_window(live, end_dt, count, "1d", field, "daily")
            window[field] = {a.symbol: {day(d): (None if pd.isna(v) else float(v))
                                        for d, v in frame[a].items()} for a in live}
        out["history"][day(end_dt)] = window
    out["timings"]["read"] = time.monotonic() - started

    # 3. A backtest on the bundle.
    def initialize(context):
        set_commission(commission.PerShare(cost=0.0, min_trade_cost=0.0))
        set_slippage(slippage.FixedSlippage(spread=0.0))
        context.asset = symbol(config["buy"])
        context.assets = assets
        context.bought = False

    def handle_data(context, data):
        if not context.bought:
            order(context.asset, 100)
            context.bought = True
        position = context.portfolio.positions.get(context.asset)
        record(closes={a.symbol: float(data.current(a, "close")) for a in context.assets},
               shares=float(position.amount) if position else 0.0)

    started = time.monotonic()
    start, end = pd.Timestamp(config["algo_start"]), pd.Timestamp(config["algo_end"])
    sessions = calendar.sessions_in_range(start, end)
    perf = run_algorithm(
        start=start, end=end, initialize=initialize, handle_data=handle_data,
        capital_base=1_000_000.0, data_frequency="daily", bundle=config["bundle"],
        trading_calendar=calendar, environ=env,
        benchmark_returns=pd.Series(0.0, index=sessions.tz_localize("UTC")))
    out["timings"]["algorithm"] = time.monotonic() - started
    out["algorithm"] = [
        {"day": day(ts), "closes": row["closes"], "shares": row["shares"],
         "cash": float(row["ending_cash"]), "value": float(row["portfolio_value"])}
        for ts, row in perf.iterrows()]
    out["sessions"] = [day(d) for d in sessions]
    Path(config["out"]).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main(sys.argv[1])
