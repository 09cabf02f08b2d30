"""kdist.verify: stored bars compared with a second provider's, with known answers.

Synthetic bars are imported, exported to CSV files with deliberate distortions (one symbol's
volume in lots, three bars deleted from another, one close off by 5%, one symbol's prices
adjusted qfq-like at two dates, one symbol without a file), and the verification must find
exactly those, write nothing to ``kline`` and record itself as a ledger job that no import,
update, resume or catalog takes for a write.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

import kdist
import kdist.verification as verify_module
from kdist.errors import (
    DatabaseLockedError,
    InvalidOptionError,
    InvalidSymbolError,
    StoreError,
    UnknownProviderError,
    UsageError,
)
from kdist.providers.base import Horizon
from kdist.providers.files import CSVProvider
from kdist.providers.synthetic import SyntheticProvider
from kdist.schema import Adjust, Freq
from kdist.verification import compare_bars

START, END = "2023-01-01", "2024-06-30"
CLEAN, LOTS, GAPS, PRICE, QFQ, MISSING = ("600000.SH", "000001.SZ", "600519.SH", "000002.SZ",
                                          "300750.SZ", "601318.SH")
SYMBOLS = [CLEAN, LOTS, GAPS, PRICE, QFQ, MISSING]
STEPS = (pd.Timestamp("2023-06-01"), pd.Timestamp("2024-01-02"))  # qfq-like factor steps
TOL = 0.005


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A database of synthetic bars, and CSV exports of it: ``clean`` as stored, ``distorted``
    with the injected differences; ``expected``: the findings they must give."""
    root = tmp_path_factory.mktemp("verify")
    db = str(root / "base.duckdb")
    kdist.ingest(SYMBOLS, start=START, end=END, db=db, client="sync", progress=False)
    bars = kdist.load(db)
    clean, distorted = root / "clean", root / "distorted"
    clean.mkdir()
    distorted.mkdir()
    expected = set()
    for symbol, rows in bars.groupby("symbol"):
        rows = rows.drop(columns=["symbol", "source"]).reset_index(drop=True)
        _export(rows, clean / f"{symbol}.csv")
        if symbol == MISSING:
            continue  # the second provider fails for it: no file
        if symbol == LOTS:
            assert (rows["volume"] > 0).all()
            rows["volume"] = rows["volume"] / 100
            expected.add((LOTS, "volume_units", None, "volume"))
        elif symbol == GAPS:
            for i in (10, 50, 100):
                expected.add((GAPS, "only_ours", rows.at[i, "ts"], None))
            rows = rows.drop(index=[10, 50, 100])
        elif symbol == PRICE:
            i = 40
            ts, close, high = rows.at[i, "ts"], rows.at[i, "close"], rows.at[i, "high"]
            rows.at[i, "close"] = close * 1.05
            rows.at[i, "high"] = max(high, close * 1.05)  # keep the bar a valid bar
            expected.add((PRICE, "price", ts, "close"))
            moved = rows.at[i, "high"] - high
            if moved > max(0.01, TOL * rows.at[i, "high"]):
                expected.add((PRICE, "price", ts, "high"))
        elif symbol == QFQ:
            factor = np.where(rows["ts"] < STEPS[0], 0.8,
                              np.where(rows["ts"] < STEPS[1], 0.9, 1.0))
            for col in ("open", "high", "low", "close"):
                rows[col] = (rows[col] * factor).round(2)  # a vendor's cents
            expected.add((QFQ, "adjust", None, "close"))
        _export(rows, distorted / f"{symbol}.csv")
    return {"db": db, "clean": str(clean), "distorted": str(distorted), "expected": expected,
            "bars": bars}


def _export(rows: pd.DataFrame, path: Path):
    """One symbol's bars in the layout the csv provider reads (``<SYMBOL>.csv``)."""
    rows[["ts", "open", "high", "low", "close", "volume", "amount"]].to_csv(path, index=False)


@pytest.fixture
def db(base, tmp_path):
    """A fresh copy of the base database for one test."""
    path = str(tmp_path / "kdist.duckdb")
    shutil.copy(base["db"], path)
    return path


def found(report) -> set:
    """``(symbol, kind, ts, field)`` of every finding."""
    return {(r.symbol, r.kind, None if pd.isna(r.ts) else pd.Timestamp(r.ts),
             r.field if isinstance(r.field, str) else None)
            for r in report.findings.itertuples(index=False)}


def job_symbols(db, job_id) -> pd.DataFrame:
    with kdist.Store(db, read_only=True) as store:
        return store.job_symbols(job_id).set_index("symbol")


# -- known answers ---------------------------------------------------------------------------


def test_finds_exactly_the_injected_differences(base, db):
    report = kdist.verify(db, "csv", options={"root": base["distorted"]}, client="sync")
    assert found(report) == base["expected"]
    assert report.status == "partial" and not report.ok
    assert (report.n_symbols, report.symbols_compared, report.symbols_failed) == (6, 5, 1)
    assert report.symbols_with_findings == 4 and report.symbols_agreeing == 1
    assert report.failures[MISSING].startswith("SymbolNotFoundError")
    assert report.counts["only_ours"] == 3 and report.counts["volume_units"] == 1
    assert report.counts["adjust"] == 1 and report.counts["only_theirs"] == 0
    assert report.counts["volume"] == 0 and report.n_findings == len(base["expected"])
    findings = report.findings.set_index("kind")
    assert "ratio ours/theirs 100" in findings.at["volume_units", "detail"]
    assert "ours in shares, theirs in lots" in findings.at["volume_units", "detail"]
    # The adjustment finding names the first bars at the new factors and the ratio range.
    bars = base["bars"]
    steps = [bars[(bars["symbol"] == QFQ) & (bars["ts"] >= d)]["ts"].min() for d in STEPS]
    detail = findings.at["adjust", "detail"]
    assert all(str(d.date()) in detail for d in steps)
    assert "0.8 to 1" in detail
    close = report.findings[(report.findings["kind"] == "price")
                            & (report.findings["field"] == "close")].iloc[0]
    assert close["theirs"] == pytest.approx(close["ours"] * 1.05)


def test_a_clean_copy_agrees(base, db):
    report = kdist.verify(db, "csv", options={"root": base["clean"]}, client="sync")
    assert report.ok and report.status == "done"
    assert report.n_findings == 0 and report.findings.empty
    assert report.symbols_compared == report.symbols_agreeing == len(SYMBOLS)
    assert report.bars_compared == len(base["bars"])
    assert "agrees" in report.to_text()


def test_the_same_provider_agrees_with_derived_qfq(db):
    """qfq derived from raw bars and stored corporate actions (Store.load) against the
    vendor's own qfq bars."""
    report = kdist.verify(db, "synthetic", adjust="qfq", client="sync")
    assert report.ok, report.to_text()


def test_qfq_bars_against_raw_ones_are_one_adjust_finding_per_symbol(db, tmp_path):
    bars = kdist.fetch([GAPS, PRICE], start=START, end=END, adjust="qfq")
    for symbol, rows in bars.groupby("symbol"):
        _export(rows, tmp_path / f"{symbol}.csv")
    report = kdist.verify(db, "csv", [GAPS, PRICE], options={"root": str(tmp_path)},
                          client="sync")
    assert {(s, k) for s, k, _, _ in found(report)} == {(GAPS, "adjust"), (PRICE, "adjust")}
    # The steps are the ex-dates of the stored corporate actions in the window.
    actions = kdist.corporate_actions(db, [GAPS, PRICE], start=START, end=END)
    for symbol, detail in zip(report.findings["symbol"], report.findings["detail"]):
        for ex_date in actions[actions["symbol"] == symbol]["ex_date"]:
            assert str(ex_date.date()) in detail


def test_the_window_and_symbols_given_are_compared(base, db):
    (price_ts,) = [ts for s, k, ts, f in base["expected"] if s == PRICE and f == "close"]
    day = str(price_ts.date())
    report = kdist.verify(db, "csv", [PRICE, "sz000001"], start=day, end=day,
                          options={"root": base["distorted"]}, client="sync")
    # LOTS on one bar: its ratio of 100 still counts as units.
    assert {(s, k, f) for s, k, _, f in found(report)} >= {(PRICE, "price", "close"),
                                                          (LOTS, "volume_units", "volume")}
    assert report.bars_compared == 2 and (report.start, report.end) == (day, day)


# -- nothing written, the ledger -----------------------------------------------------------------


def test_verify_writes_no_bars_and_changes_no_catalog(base, db, fingerprint, capsys):
    from kdist.cli import main

    before = (fingerprint(db), kdist.catalog(db))
    assert main(["status", "--db", db]) == 0
    status = capsys.readouterr().out
    kdist.verify(db, "csv", options={"root": base["distorted"]}, client="sync")
    pd.testing.assert_frame_equal(fingerprint(db), before[0])
    pd.testing.assert_frame_equal(kdist.catalog(db), before[1])  # ``updated`` too
    assert main(["status", "--db", db]) == 0
    assert capsys.readouterr().out == status


def test_the_ledger_records_the_verification(base, db, tmp_path):
    root = tmp_path / "csv"
    shutil.copytree(base["distorted"], root)
    # Bars outside every stored window: the provider returns nothing for the window.
    pd.DataFrame({"ts": ["2019-01-02"], "open": [1.0], "high": [1.0], "low": [1.0],
                  "close": [1.0], "volume": [100.0], "amount": [100.0]}).to_csv(
        root / f"{CLEAN}.csv", index=False)
    report = kdist.verify(db, "csv", options={"root": str(root)}, client="sync")
    assert report.symbols_empty == 1 and report.empty == [CLEAN] and not report.ok
    jobs = kdist.jobs(db).set_index("job_id")
    job = jobs.loc[report.job_id]
    assert (job["mode"], job["provider"], job["status"]) == ("verify", "csv", "partial")
    assert (job["symbols_ok"], job["symbols_empty"], job["symbols_failed"]) == (4, 1, 1)
    assert job["rows_written"] == 0
    ledger = job_symbols(db, report.job_id)
    assert ledger["status"].to_dict() == {CLEAN: "empty", LOTS: "ok", GAPS: "ok", PRICE: "ok",
                                          QFQ: "ok", MISSING: "failed"}
    assert ledger.at[MISSING, "error_class"] == "SymbolNotFoundError"
    assert (ledger["rows"] == 0).all()
    with kdist.Store(db, read_only=True) as store:
        recorded = store.job(report.job_id)
        assert recorded["provider_options"] == {"root": str(root)}
        assert recorded["params"]["tolerance"] == TOL
        table = store.con.execute(
            "SELECT DISTINCT job_id, freq, adjust, against FROM kdist_findings").fetchall()
    assert table == [(report.job_id, "1d", "none", "csv")]
    pd.testing.assert_frame_equal(kdist.findings(db), report.findings, check_dtype=False)
    pd.testing.assert_frame_equal(kdist.findings(db, report.job_id), report.findings,
                                  check_dtype=False)


def test_a_failing_symbol_does_not_stop_the_others(db):
    failing = kdist.get_provider("synthetic", fail=f"{LOTS},{QFQ}")
    report = kdist.verify(db, failing, client="sync")
    assert report.status == "partial" and report.n_findings == 0
    assert set(report.failures) == {LOTS, QFQ} and report.symbols_compared == 4
    statuses = job_symbols(db, report.job_id)["status"]
    assert statuses[LOTS] == statuses[QFQ] == "failed"
    assert (statuses.drop([LOTS, QFQ]) == "ok").all()


def test_a_verify_job_is_never_resumed(base, db):
    report = kdist.verify(db, "csv", options={"root": base["distorted"]}, client="sync")
    with pytest.raises(UsageError, match="verification.*kdist verify again"):
        kdist.ingest(db=db, resume=report.job_id, client="sync", progress=False)


def test_update_ignores_a_verification_s_provider_options(db):
    kdist.verify(db, "synthetic", options={"seed": 7}, client="sync")  # differs everywhere
    (report,) = kdist.update(db, end="2024-07-15", client="sync", progress=False)
    with kdist.Store(db, read_only=True) as store:
        assert store.job(report.job_id)["provider_options"] == {}
    assert report.revised == [] and report.status == "done"


def test_sample_is_deterministic(db):
    runs = [kdist.verify(db, "synthetic", sample=3, seed=seed, client="sync")
            for seed in (1, 1, 2)]
    chosen = [sorted(job_symbols(db, r.job_id).index) for r in runs]
    assert chosen[0] == chosen[1] and len(chosen[0]) == len(chosen[2]) == 3
    assert set(chosen[0]) <= set(SYMBOLS)
    everything = kdist.verify(db, "synthetic", sample=50, client="sync")  # more than stored
    assert everything.n_symbols == len(SYMBOLS)


# -- where it runs, how politely --------------------------------------------------------------


def test_runs_on_a_dask_cluster(base, db, client):
    report = kdist.verify(db, "csv", options={"root": base["distorted"]}, client=client,
                          chunk_size=2)
    assert report.mode != "sync" and report.n_chunks == 3
    assert found(report) == base["expected"]
    assert set(job_symbols(db, report.job_id)["status"]) == {"ok", "failed"}


class PoliteCSV(CSVProvider):
    """The csv provider with politeness limits of its own."""

    max_concurrency = 2
    max_rate = 200.0


def test_the_provider_s_politeness_limits_apply(base, db, monkeypatch):
    seen = []
    real = verify_module._limits

    def spy(job, cluster, **given):
        seen.append(real(job, cluster, **given))
        return seen[-1]

    monkeypatch.setattr(verify_module, "_limits", spy)
    polite = PoliteCSV(root=base["distorted"])
    report = kdist.verify(db, polite, client="sync")
    assert found(report) == base["expected"]  # symbol by symbol, as limits require
    assert (seen[0].max_concurrency, seen[0].max_rate) == (2, 200.0)
    kdist.verify(db, polite, client="sync", max_concurrency=1, max_rate=100.0)
    assert (seen[1].max_concurrency, seen[1].max_rate) == (1, 100.0)


def test_progress_events(base, db):
    events = []

    class Recorder(kdist.Callback):
        def on_start(self, info):
            events.append(("start", info["n_symbols"]))

        def on_symbols(self, outcomes):
            events.extend(("symbol", o["symbol"]) for o in outcomes)

        def on_finish(self, report):
            events.append(("finish", report.status))

    kdist.verify(db, "csv", options={"root": base["distorted"]}, client="sync",
                 callback=Recorder())
    assert events[0] == ("start", 6) and events[-1] == ("finish", "partial")
    assert sorted(s for e, s in events if e == "symbol") == sorted(SYMBOLS)


# -- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize("tolerance", [-0.1, 1.0, 2, math.nan, math.inf, "1%", True, None])
def test_a_bad_tolerance_is_refused(db, tolerance):
    with pytest.raises(InvalidOptionError, match="tolerance"):
        kdist.verify(db, "synthetic", tolerance=tolerance, client="sync")


def test_bad_requests_are_refused_before_anything_is_recorded(db, base, tmp_path):
    with pytest.raises(UnknownProviderError):
        kdist.verify(db, "synthetc", client="sync")
    with pytest.raises(InvalidSymbolError):
        kdist.verify(db, "synthetic", ["not a symbol!"], client="sync")
    with pytest.raises(UsageError, match="Not stored.*600001.SH"):
        kdist.verify(db, "synthetic", [CLEAN, "600001.SH"], client="sync")
    with pytest.raises(UsageError, match="not both"):
        kdist.verify(db, "synthetic", [CLEAN], sample=2, client="sync")
    with pytest.raises(UsageError, match="sample"):
        kdist.verify(db, "synthetic", sample=0, client="sync")
    with pytest.raises(UsageError, match="Nothing is stored.*1w"):
        kdist.verify(db, "synthetic", freq="1w", client="sync")
    with pytest.raises(InvalidOptionError, match="root"):
        kdist.verify(db, "csv", options={"root": str(tmp_path / "nowhere")}, client="sync")
    with pytest.raises(InvalidOptionError, match="after end"):
        kdist.verify(db, "synthetic", start="2024-01-02", end="2023-01-02", client="sync")
    with pytest.raises(StoreError, match="No kdist database"):
        kdist.verify(str(tmp_path / "none.duckdb"), "synthetic", client="sync")
    with kdist.Store(db, read_only=True) as reader:
        with pytest.raises(UsageError, match="opened for writing"):
            kdist.verify(reader, "synthetic", client="sync")
    with kdist.Store(db):  # an import holds the file
        with pytest.raises(DatabaseLockedError, match="in use"):
            kdist.verify(db, "synthetic", client="sync")
    assert set(kdist.jobs(db)["mode"]) == {"sync"}  # the import's only


def test_a_writable_store_can_be_given(db):
    with kdist.Store(db) as store:
        report = kdist.verify(store, "synthetic", client="sync")
        assert report.ok
        assert report.findings.empty


# -- the comparison's rules ------------------------------------------------------------------


def bars(symbol, closes, volume=1000.0, start="2024-01-02", **columns):
    closes = np.asarray(closes, dtype="float64")
    frame = pd.DataFrame({
        "symbol": symbol, "ts": pd.bdate_range(start, periods=len(closes)),
        "open": closes, "high": closes, "low": closes, "close": closes, "volume": volume,
    })
    return frame.assign(**columns)


def test_a_cent_never_counts_then_the_tolerance_does():
    ours = bars("600000.SH", [10.0, 10.0, 1000.0, 1000.0])
    theirs = ours.assign(close=[10.01, 10.02, 1004.0, 1006.0])
    loose = compare_bars(ours, theirs, tolerance=0.005)
    assert list(loose["ts"].dt.day) == [5] and list(loose["field"]) == ["close"]
    strict = compare_bars(ours, theirs, tolerance=0.0)
    assert sorted(strict["ts"].dt.day) == [3, 4, 5]  # 10.02, 1004, 1006
    assert strict.iloc[0]["detail"].startswith("theirs +0.02")


def test_volume_units_and_volume_per_bar():
    stock = bars("600000.SH", [10.0] * 5, volume=[1000.0, 2000.0, 0.0, 300.0, 5000.0])
    lots = stock.assign(volume=stock["volume"] / 100)
    (units,) = compare_bars(stock, lots).itertuples(index=False)
    assert (units.kind, units.field) == ("volume_units", "volume")
    assert "ours in shares, theirs in lots" in units.detail
    (back,) = compare_bars(lots, stock).itertuples(index=False)
    assert "ours in lots" in back.detail and "0.01" in back.detail
    bond = bars("113011.SH", [100.0] * 3, volume=[100.0, 200.0, 300.0])
    (bonds,) = compare_bars(bond, bond.assign(volume=bond["volume"] / 10)).itertuples(
        index=False)
    assert bonds.kind == "volume_units" and "手 of 10" in bonds.detail
    # A stock's ratio of 10 is no unit: one volume finding per bar.
    tenth = compare_bars(stock, stock.assign(volume=stock["volume"] / 10))
    assert set(tenth["kind"]) == {"volume"} and len(tenth) == 4  # the zero agrees
    one = stock.assign(volume=[1000.0, 2015.0, 0.0, 300.0, 5000.0])
    assert compare_bars(stock, one).empty  # 0.75% is within 1%
    two = stock.assign(volume=[1000.0, 2050.0, 0.0, 300.0, np.nan])
    (bar,) = compare_bars(stock, two).itertuples(index=False)  # NaN is not compared
    assert (bar.kind, bar.ours, bar.theirs) == ("volume", 2000.0, 2050.0)


def test_an_adjustment_is_one_finding_and_a_lone_bad_bar_still_shows():
    closes = np.linspace(10, 20, 40)
    ours = bars("600000.SH", closes)
    factor = np.where(np.arange(40) < 25, 0.9, 1.0)
    theirs = ours.assign(**{c: (ours[c] * factor).round(2)
                            for c in ("open", "high", "low", "close")})
    theirs.loc[5, "close"] = theirs.loc[5, "close"] * 1.2  # one bad bar in the 0.9 piece
    theirs.loc[5, "high"] = theirs.loc[5, "close"]
    result = compare_bars(ours, theirs)
    assert list(zip(result["kind"], result["field"])) == [("adjust", "close"),
                                                          ("price", "close")]
    adjust, price = result.itertuples(index=False)
    assert f"stepping on {ours['ts'][25].date()}" in adjust.detail and "0.9 to 1" in adjust.detail
    assert price.ts == ours["ts"][5] and "neighbours" in price.detail
    # A constant ratio throughout (hfq against raw with no event in the window).
    constant = compare_bars(ours, ours.assign(**{c: ours[c] * 2 for c in ("open", "high",
                                                                          "low", "close")}))
    assert list(constant["kind"]) == ["adjust"] and "2 throughout" in constant["detail"][0]
    # Two bad bars are two bars, not an adjustment.
    two = ours.assign(close=ours["close"].where(~ours.index.isin([3, 30]),
                                                ours["close"] * 1.05))
    assert list(compare_bars(ours, two)["kind"]) == ["price", "price"]


def test_bars_only_one_side_has():
    ours = bars("600000.SH", [10.0, 11.0, 12.0])
    theirs = bars("600000.SH", [11.0, 12.0, 13.0], start="2024-01-03")
    result = compare_bars(ours, theirs)
    assert list(zip(result["kind"], result["ts"].dt.day)) == [("only_ours", 2),
                                                              ("only_theirs", 5)]
    assert list(result["ours"].fillna(0)) == [10.0, 0] and result["theirs"].iat[1] == 13.0
    assert compare_bars(ours.iloc[:0], theirs.iloc[:0]).empty


# -- the report ------------------------------------------------------------------------------


def test_the_report_as_text_json_and_html(base, db):
    report = kdist.verify(db, "csv", options={"root": base["distorted"]}, client="sync")
    text = report.to_text(limit=3)
    assert "symbol" in text and "kind" in text and "ours" in text and "theirs" in text
    assert f"and {report.n_findings - 3} more" in text
    assert f"{MISSING}: SymbolNotFoundError" in text
    data = json.loads(report.to_json())
    assert data["ok"] is False and data["counts"]["adjust"] == 1
    assert len(data["findings"]) == report.n_findings
    assert {f["kind"] for f in data["findings"]} == {k for _, k, _, _ in base["expected"]}
    page = report._repr_html_()
    assert page.startswith("<div><b>kdist verify</b>") and "<td" in page and MISSING in page
    assert repr(report).startswith(f"<VerifyReport {report.job_id} partial against csv")


def test_many_findings_are_read_back_from_the_table(base, db, monkeypatch):
    monkeypatch.setattr(verify_module, "KEEP_FINDINGS", 2)
    report = kdist.verify(db, "csv", options={"root": base["distorted"]}, client="sync")
    assert report._kept is None and found(report) == base["expected"]
    with kdist.Store(db) as store:
        again = kdist.verify(store, "csv", options={"root": base["distorted"]}, client="sync")
        assert found(again) == base["expected"]  # read on the Store given, still open


# -- the command line ---------------------------------------------------------------------------


def test_cli_verify(base, db, capsys):
    from kdist.cli import main

    code = main(["verify", "--against", "csv", "--option", f"root={base['clean']}", CLEAN,
                 LOTS, "--db", db, "--scheduler", "sync", "--quiet"])
    assert code == 0 and capsys.readouterr().out == ""  # quiet, and nothing differs
    code = main(["verify", "--against", "csv", "--option", f"root={base['distorted']}",
                 "--db", db, "--scheduler", "sync", "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert code == 1  # findings
    assert payload["counts"]["volume_units"] == 1 and payload["symbols_failed"] == 1
    code = main(["verify", "--against", "csv", "--option", f"root={base['distorted']}", LOTS,
                 "--db", db, "--scheduler", "sync", "--quiet"])
    out = capsys.readouterr().out
    assert code == 1 and LOTS in out and "volume_units" in out
    # Only a failure, no difference: partial (3), as an import with failed symbols.
    code = main(["verify", "--against", "csv", "--option", f"root={base['distorted']}", CLEAN,
                 MISSING, "--db", db, "--scheduler", "sync", "--quiet"])
    assert code == 3 and MISSING in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    ([CLEAN, "--sample", "2"], "SYMBOLS or --sample N, not both"),
    (["--tolerance", "-1"], "--tolerance"),
    (["--sample", "0"], "--sample"),
])
def test_cli_verify_bad_input(base, db, capsys, args, message):
    code = exit_code(["verify", "--against", "csv", "--option", f"root={base['clean']}",
                      "--db", db, "--scheduler", "sync", *args])
    assert code == 2 and message in capsys.readouterr().err


def test_cli_verify_needs_a_provider(db, capsys):
    assert exit_code(["verify", "--db", db]) == 2
    assert "--against" in capsys.readouterr().err


def exit_code(argv) -> int:
    """main's exit code, or argparse's (it exits on the arguments it refuses)."""
    from kdist.cli import main

    try:
        return main(argv)
    except SystemExit as exit:
        return exit.code


# -- suspensions: placeholder bars one side has -------------------------------------------------


def suspended(frame: pd.DataFrame, rows) -> pd.DataFrame:
    """``frame`` with placeholder bars at ``rows``: volume 0, flat at the previous close (the
    rows in order, so a run repeats the close before it)."""
    frame = frame.copy()
    for i in rows:
        frame.loc[i, ["open", "high", "low", "close"]] = frame.at[i - 1, "close"]
        frame.loc[i, "volume"] = 0.0
    return frame


def a_report(**given) -> verify_module.VerifyReport:
    fields = {"job_id": "job", "status": "done", "mode": "sync", "against": "csv",
              "freq": "1d", "adjust": "none", "start": "2024-01-02", "end": "2024-12-31",
              "db": "kdist.duckdb", "tolerance": TOL}
    return verify_module.VerifyReport(**{**fields, **given})


def test_suspended_days_one_side_has_are_information_not_differences():
    from kdist.outcome import outcome

    traded = bars(CLEAN, np.linspace(10, 12, 30))
    ours = suspended(traded, [10, 11, 12, 20])  # baostock's placeholders
    theirs = traded.drop(index=[10, 11, 12, 20])  # Eastmoney leaves the days out
    result = compare_bars(ours, theirs)
    assert list(result["kind"]) == ["suspended", "suspended"]  # one per run of days
    assert list(result["ts"]) == [traded["ts"][10], traded["ts"][20]]
    first = result["detail"].iat[0]
    assert first.startswith("3 placeholder bars") and str(traded["ts"][12].date()) in first
    assert "ours" in first and result["ours"].iat[0] == ours["close"][10]
    back = compare_bars(theirs, ours)  # the other way round: theirs has them
    assert list(back["kind"]) == ["suspended", "suspended"] and "theirs" in back["detail"][0]
    report = a_report()
    report.count([outcome(CLEAN, "ok")], result)
    assert report.ok and report.n_differences == 0 and report.counts["suspended"] == 2
    assert report.symbols_agreeing == 1 and report.symbols_with_findings == 0
    assert "agrees" in report.to_text()
    # A placeholder matched with a bar the other side traded: one volume finding, no prices.
    (bar,) = compare_bars(suspended(traded, [5]), traded).itertuples(index=False)
    assert (bar.kind, bar.field, bar.ts) == ("volume", "volume", traded["ts"][5])
    assert "placeholder" in bar.detail and (bar.ours, bar.theirs) == (0.0, 1000.0)
    # ... also when the symbol's volumes are in other units.
    lots = traded.assign(volume=traded["volume"] / 100)
    kinds = compare_bars(suspended(traded, [5]), lots)["kind"]
    assert sorted(kinds) == ["volume", "volume_units"]


def test_a_verification_of_suspended_days_is_ok(tmp_path):
    rows = bars(CLEAN, np.linspace(10, 12, 30), amount=1e4)
    (tmp_path / "ours").mkdir()
    (tmp_path / "theirs").mkdir()
    _export(suspended(rows, [10, 11, 12]), tmp_path / "ours" / f"{CLEAN}.csv")
    _export(rows.drop(index=[10, 11, 12]), tmp_path / "theirs" / f"{CLEAN}.csv")
    db = str(tmp_path / "kdist.duckdb")
    kdist.ingest([CLEAN], start="2024-01-01", end="2024-03-31",
                 provider=kdist.get_provider("csv", root=str(tmp_path / "ours")), db=db,
                 client="sync", progress=False)
    report = kdist.verify(db, "csv", options={"root": str(tmp_path / "theirs")},
                          client="sync")
    assert report.ok and report.status == "done"
    assert report.counts["suspended"] == 1 and report.n_findings == 1
    assert report.counts["only_ours"] == 0 and report.n_differences == 0


# -- an adjustment steps one way; a run of bad bars comes back --------------------------------


def test_a_run_of_bad_bars_that_comes_back_is_price_findings_not_an_adjustment():
    ours = bars(CLEAN, np.linspace(10, 20, 40))
    prices = ["open", "high", "low", "close"]
    bad = [18, 19, 20]
    theirs = ours.copy()
    theirs.loc[bad, prices] = (ours.loc[bad, prices] * 1.1).round(2)
    result = compare_bars(ours, theirs)
    assert set(result["kind"]) == {"price"}
    assert set(zip(result["ts"], result["field"])) == {(ours["ts"][i], f) for i in bad
                                                       for f in prices}
    # Inside a real adjustment: one adjust finding, and the run's bars as price findings.
    factor = np.where(np.arange(40) < 25, 0.9, 1.0)
    adjusted = ours.assign(**{c: (ours[c] * factor).round(2) for c in prices})
    adjusted.loc[[10, 11, 12], prices] = (adjusted.loc[[10, 11, 12], prices] * 1.1).round(2)
    result = compare_bars(ours, adjusted)
    assert list(result["kind"]).count("adjust") == 1
    (detail,) = result.loc[result["kind"] == "adjust", "detail"]
    assert f"to 1, stepping on {ours['ts'][25].date()}:" in detail  # one step, the 25th bar
    assert "ratio theirs/ours 0.9" in detail or "ratio theirs/ours 0.8999" in detail
    price = result[result["kind"] == "price"]
    assert set(price["ts"]) == set(ours["ts"][[10, 11, 12]])
    # A ratio that goes one way and back over long pieces is no adjustment either.
    there_and_back = ours.assign(**{c: (ours[c] * np.where((np.arange(40) >= 10)
                                                           & (np.arange(40) < 30), 1.1, 1.0))
                                    .round(2) for c in prices})
    assert set(compare_bars(ours, there_and_back)["kind"]) == {"price"}


# -- the provider's horizon -------------------------------------------------------------------


class Horizoned(SyntheticProvider):
    """The synthetic provider as a vendor that serves 5m bars for the last 30 days only, and
    refuses earlier starts as Yahoo does."""

    horizons: ClassVar[dict] = {Freq.MIN5: Horizon(days=30, source="a test's")}

    def check(self, *, freq, adjust, start, end):
        super().check(freq=freq, adjust=adjust, start=start, end=end)
        served = self.horizon(freq).first_served() if self.horizon(freq) else None
        if served is not None and pd.Timestamp(start) < served:
            raise InvalidOptionError(f"start {start} is before {served}", option="start")


def test_windows_start_where_the_provider_s_horizon_does(tmp_path):
    db = str(tmp_path / "kdist.duckdb")
    today = pd.Timestamp.now().normalize()
    kdist.ingest([CLEAN], start=today - pd.Timedelta(days=45), end=today - pd.Timedelta(days=1),
                 freq="5m", db=db, client="sync", progress=False)
    kdist.ingest([LOTS], start=today - pd.Timedelta(days=50),
                 end=today - pd.Timedelta(days=40), freq="5m", db=db, client="sync",
                 progress=False)
    served = Horizoned.horizon("5m").first_served()
    report = kdist.verify(db, Horizoned(), freq="5m", client="sync")
    assert f"windows start at {served.date()}" in report.note
    assert "serves 5m bars for the last 30 days" in report.note
    assert report.start == str(served.date())
    assert report.n_findings == 0 and report.counts["only_ours"] == 0
    stored = kdist.load(db, [CLEAN], freq="5m")
    assert report.bars_compared == int((stored["ts"] >= served).sum()) > 0
    # A series whose every bar is older cannot be compared: a failure that says why.
    assert report.symbols_compared == 1 and set(report.failures) == {LOTS}
    assert f"before {served.date()}" in report.failures[LOTS]
    with pytest.raises(UsageError, match="serves 5m bars for the last 30 days"):
        kdist.verify(db, Horizoned(), [LOTS], freq="5m", client="sync")


def test_yahoo_s_minute_bars_are_compared_for_the_days_it_serves(tmp_path, monkeypatch):
    """kdist.verify(db, "yfinance", freq="1m") on 1m bars stored 40 days back: not refused
    (Yahoo serves 30 days), the windows clipped, the older bars not compared."""
    from kdist.outcome import outcome
    from kdist.providers.yfinance_ import YfinanceProvider

    today = pd.Timestamp.now().normalize()
    days = pd.bdate_range(today - pd.Timedelta(days=40), today - pd.Timedelta(days=1))
    ts = pd.Series([d + pd.Timedelta(minutes=m) for d in days for m in (570, 571)],
                   dtype="datetime64[us]")
    stored = pd.DataFrame({"symbol": "AAPL", "ts": ts, "open": 10.0, "high": 10.5, "low": 9.5,
                           "close": 10.2, "volume": 1000.0, "amount": np.nan})
    db = str(tmp_path / "kdist.duckdb")
    with kdist.Store(db) as store:
        store.write_batch(stored, [outcome("AAPL", "ok", rows=len(stored))], job_id="job-yahoo",
                          freq=Freq.MIN1, adjust=Adjust.NONE, source="yfinance",
                          windows=pd.DataFrame({"symbol": ["AAPL"], "start": [days[0]],
                                                "stop": [days[-1] + pd.Timedelta(days=1)]}))
    calls = []

    def history(ticker, **kwargs):  # Yahoo's answer: 09:30 and 09:31 of each weekday asked
        calls.append(kwargs)
        asked = pd.bdate_range(kwargs["start"], pd.Timestamp(kwargs["end"]) - pd.Timedelta(days=1))
        stamps = pd.DatetimeIndex([d + pd.Timedelta(minutes=m) for d in asked for m in (570, 571)],
                                  name="Datetime").tz_localize("America/New_York")
        n = len(stamps)
        return pd.DataFrame({"Open": [10.0] * n, "High": [10.5] * n, "Low": [9.5] * n,
                             "Close": [10.2] * n, "Volume": [1000] * n}, index=stamps)

    monkeypatch.setattr(YfinanceProvider, "_history", staticmethod(history))
    report = kdist.verify(db, "yfinance", freq="1m", client="sync")
    served = YfinanceProvider.horizon(Freq.MIN1).first_served()
    assert calls and min(pd.Timestamp(c["start"]) for c in calls) >= served
    assert report.ok and report.n_findings == 0, report.to_text()
    assert report.note.startswith(f"windows start at {served.date()}: yfinance serves 1m bars "
                                  "for the last 30 days")
    assert report.bars_compared == int((ts >= served).sum()) > 0


# -- stamp conventions ----------------------------------------------------------------------------


def test_bars_stamped_at_their_start_against_their_end_are_one_bar_time_finding():
    ours = kdist.fetch([CLEAN], start="2024-03-04", end="2024-03-06", freq="5m")
    theirs = ours.assign(ts=ours["ts"] - pd.Timedelta(minutes=5))  # Yahoo's stamps
    theirs.loc[20, "close"] = theirs.loc[20, "close"] * 1.05  # and one real difference
    theirs.loc[20, "high"] = max(theirs.loc[20, "high"], theirs.loc[20, "close"])
    for given in ({"freq": "5m", "bar_times": ("end", "start")}, {}):
        result = compare_bars(ours, theirs, **given)
        assert set(result["kind"]) == {"bar_time", "price"}, result
        (stamp,) = result.loc[result["kind"] == "bar_time", "detail"]
        assert ("theirs are stamped at the bar's start, ours at its end: every bar 5 minutes "
                "earlier") in stamp
        assert set(result.loc[result["kind"] == "price", "ts"]) == {ours["ts"][20]}
    assert "as declared" in compare_bars(ours, theirs, freq="5m",
                                         bar_times=("end", "start"))["detail"][0]
    assert compare_bars(ours, ours, freq="5m").empty  # the same stamps: nothing
    later = compare_bars(theirs, ours, freq="5m")  # the other way round
    assert "at the bar's end, ours at its start: every bar 5 minutes later" in later["detail"][0]


def test_a_verification_against_files_stamped_at_the_bar_s_start(db, tmp_path):
    kdist.ingest([CLEAN], start="2024-03-04", end="2024-03-08", freq="5m", db=db,
                 client="sync", progress=False)
    rows = kdist.load(db, [CLEAN], freq="5m").drop(columns=["symbol", "source"])
    _export(rows.assign(ts=rows["ts"] - pd.Timedelta(minutes=5)), tmp_path / f"{CLEAN}.csv")
    report = kdist.verify(db, "csv", [CLEAN], freq="5m", options={"root": str(tmp_path)},
                          client="sync")
    assert report.counts["bar_time"] == 1 and report.n_findings == 1
    assert report.bars_compared == len(rows)
    assert "synthetic" in report.findings["detail"][0]  # ours' declared convention


# -- the JSON's size --------------------------------------------------------------------------


def test_the_json_holds_a_bounded_number_of_findings(monkeypatch):
    from kdist.outcome import outcome

    n = verify_module.JSON_FINDINGS + 500
    ours = bars(LOTS, np.full(n, 10.0), volume=1000.0)
    found = compare_bars(ours, ours.assign(volume=2000.0))  # a volume finding per bar
    held = bars(CLEAN, np.linspace(10, 12, 30))  # sorts first: informational findings
    found = pd.concat([compare_bars(suspended(held, [5, 15]), held.drop(index=[5, 15])),
                       found], ignore_index=True)
    report = a_report()
    report.count([outcome(CLEAN, "ok"), outcome(LOTS, "ok")], found)
    data = report.to_dict()
    assert len(data["findings"]) == verify_module.JSON_FINDINGS
    assert data["findings_omitted"] == n + 2 - verify_module.JSON_FINDINGS
    assert data["n_findings"] == n + 2 and data["counts"]["volume"] == n
    assert "kdist.findings('kdist.duckdb', 'job')" in data["all_findings"]
    assert {f["kind"] for f in data["findings"]} == {"volume"}  # differences first
    everything = json.loads(report.to_json(limit=None))
    assert len(everything["findings"]) == n + 2 and everything["findings_omitted"] == 0
    assert len(report.to_dict(limit=3)["findings"]) == 3
