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
from kdist.providers.files import CSVProvider
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
