"""Raw bars plus corporate actions: what the store keeps, and the qfq/hfq derived from them.

The provider here serves the synthetic provider's raw bars and corporate actions given as an
option, so each test knows every event, and its vendor-adjusted bars are computed from the
same events the way the vendors document it (:mod:`kdist.actions`).
"""

from __future__ import annotations

import datetime as dt
import json

import duckdb
import numpy as np
import pandas as pd
import pytest

import kdist
import kdist.store
from kdist.actions import adjust_prices, hfq_factors
from kdist.errors import PermanentProviderError, TransientProviderError, UsageError
from kdist.providers.base import Option, Provider
from kdist.providers.synthetic import SyntheticProvider
from kdist.schema import Adjust

PRICES = ["open", "high", "low", "close"]


class Events(Provider):
    """Synthetic raw bars, with the corporate actions named in option ``events`` (JSON:
    ``{symbol: [{ex_date, cash, bonus, ...}]}``); ``vendor=True`` also gives the factor the
    way a vendor would (from its own raw closes), ``fail`` symbols whose actions raise."""

    name = "events"
    remote = False
    options = {
        "events": Option(str, "{}", "JSON: symbol -> list of events"),
        "vendor": Option(bool, False, "give the vendor's factor too"),
        "fail": Option(str, "", "symbols whose actions raise a permanent error"),
        "drop": Option(str, "", "symbols whose actions raise a transient error"),
        "splits": Option(bool, False, "the raw bars have splits applied (Yahoo)"),
    }

    @property
    def splits_in_bars(self):
        return self.splits

    def _raw(self):
        extra = {"actions": False} if "actions" in SyntheticProvider.options else {}
        return SyntheticProvider(**extra)

    def _events(self, symbol) -> pd.DataFrame:
        rows = json.loads(self.events).get(symbol, [])
        frame = pd.DataFrame(rows, columns=["ex_date", "cash", "bonus", "rights",
                                            "rights_price", "split"])
        frame["ex_date"] = pd.to_datetime(frame["ex_date"])
        defaults = {"cash": 0.0, "bonus": 0.0, "rights": 0.0, "rights_price": 0.0, "split": 1.0}
        return frame.fillna(defaults).astype({c: "float64" for c in defaults})

    def _factors(self, symbol, events) -> np.ndarray:
        raw = self._raw().fetch(symbol, "1990-01-01", "2030-12-31")
        at = np.searchsorted(raw["ts"].to_numpy(), events["ex_date"].to_numpy()) - 1
        prev = raw["close"].to_numpy()[at]
        if self.splits:
            events = events.assign(split=1.0)
        return hfq_factors(events, prev)

    def _fetch(self, symbol, start, end, freq, adjust):
        bars = self._raw().fetch(symbol, start, end, freq.value)
        if adjust is not Adjust.NONE and len(bars):
            events = self._events(symbol)
            factors = self._factors(symbol, events)
            anchor = end if adjust is Adjust.QFQ else None
            for column in PRICES:
                bars[column] = np.round(adjust_prices(
                    bars["ts"], bars[column], events["ex_date"], factors, adjust.value,
                    anchor=anchor), 2)
        return bars

    def _actions(self, symbol, start, end):
        if symbol in self.fail.split(","):
            raise PermanentProviderError(f"no dividend data for {symbol}", symbol=symbol)
        if symbol in self.drop.split(","):
            raise TransientProviderError(f"connection reset for {symbol}", symbol=symbol)
        events = self._events(symbol)
        if self.vendor:
            events["factor"] = self._factors(symbol, events)
        return events[events["ex_date"] <= end]


def events(**by_symbol) -> str:
    return json.dumps({s.replace("_", "."): rows for s, rows in by_symbol.items()})


A = "600000.SH"
B = "000001.SZ"
TWO = {"SH600000": [{"ex_date": "2021-06-15", "cash": 0.5},
                    {"ex_date": "2022-07-01", "cash": 0.3, "bonus": 0.3}],
       "SZ000001": [{"ex_date": "2021-09-01", "split": 2.0},
                    {"ex_date": "2022-05-10", "cash": 0.25, "rights": 0.1, "rights_price": 5.0}]}


def provider(given=None, **options) -> Events:
    given = TWO if given is None else given
    rows = {("600000.SH" if k == "SH600000" else "000001.SZ" if k == "SZ000001" else k): v
            for k, v in given.items()}
    return Events(events=json.dumps(rows), **options)


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "k.duckdb")


def ingest(db, p, start="2020-01-01", end="2022-12-31", **kw):
    return kdist.ingest([A, B], start=start, end=end, provider=p, db=db, client="sync", **kw)


def expected(db, p, symbol, adjust, as_of=None):
    """What a vendor would serve: the stored raw bars adjusted in numpy by the factors of
    every event (up to as_of)."""
    raw = kdist.load(db, symbol)
    events = p._events(symbol)
    if as_of is not None:
        events = events[events["ex_date"] <= pd.Timestamp(as_of)]
        raw = raw[raw["ts"] < pd.Timestamp(as_of) + pd.Timedelta(days=1)]
    at = np.searchsorted(raw["ts"].to_numpy(), events["ex_date"].to_numpy()) - 1
    prev = raw["close"].to_numpy()[at]
    steps = events.assign(split=1.0) if p.splits else events
    factors = hfq_factors(steps, prev)
    out = raw.copy()
    for column in PRICES:
        out[column] = adjust_prices(raw["ts"], raw[column], events["ex_date"], factors, adjust)
    return out.reset_index(drop=True)


def test_derived_qfq_and_hfq_follow_the_formula(db):
    p = provider()
    report = ingest(db, p)
    assert report.actions and report.actions_checked == 2
    assert report.actions_new == [B, A]
    assert "corporate actions  checked for 2 symbols; 2 symbols with new ones" in str(report)
    for symbol in (A, B):
        for adjust in ("qfq", "hfq"):
            got = kdist.load(db, symbol, adjust=adjust)
            pd.testing.assert_frame_equal(got, expected(db, p, symbol, adjust), rtol=1e-12)
    raw = kdist.load(db, A)
    qfq = kdist.load(db, A, adjust="qfq")
    # After the last ex-date qfq is raw; volume and amount are never adjusted.
    last = raw["ts"] >= "2022-07-01"
    assert (qfq["close"][last] == raw["close"][last]).all()
    assert (qfq[["volume", "amount"]] == raw[["volume", "amount"]]).all().all()
    # The reference price: at the ex-date the qfq series does not gap by the dividend.
    day = raw.index[raw["ts"] == "2021-06-15"][0]
    prev, ref = raw["close"][day - 1], raw["close"][day - 1] - 0.5
    hfq = kdist.load(db, A, adjust="hfq")
    assert hfq["close"][day] == pytest.approx(raw["close"][day] * prev / ref, rel=1e-12)


def test_the_stored_actions_name_their_source_job_and_factor(db):
    report = ingest(db, provider())
    actions = kdist.corporate_actions(db)
    assert actions["symbol"].tolist() == [B, B, A, A]
    assert set(actions["source"]) == {"events"} and set(actions["job_id"]) == {report.job_id}
    assert set(actions["factor_from"]) == {"events"}
    assert actions["valid_to"].isna().all()
    split = actions[actions["ex_date"] == "2021-09-01"].iloc[0]
    assert split["split"] == 2.0 and split["factor"] == pytest.approx(2.0)
    rights = actions[actions["ex_date"] == "2022-05-10"].iloc[0]
    assert (rights["cash"], rights["rights"], rights["rights_price"]) == (0.25, 0.1, 5.0)


def test_a_new_dividend_changes_derived_qfq_without_rewriting_a_bar(db, monkeypatch):
    clock = iter([dt.datetime(2023, 1, 3, 18), dt.datetime(2023, 8, 1, 18)])
    first = next(clock)
    monkeypatch.setattr(kdist.store, "_now", lambda: first)
    ingest(db, provider(), end="2023-01-02")
    raw_before = kdist.load(db)
    with duckdb.connect(db, read_only=True) as con:
        rowids = con.execute("SELECT rowid, symbol, ts FROM kline ORDER BY rowid").df()
    qfq_before = kdist.load(db, A, adjust="qfq")
    as_of_before = kdist.load(db, A, adjust="qfq", as_of="2022-12-30")
    # A dividend goes ex in June 2023; the update fetches it with the new bars.
    later = {**TWO, "SH600000": TWO["SH600000"] + [{"ex_date": "2023-06-20", "cash": 1.2}]}
    second = next(clock)
    monkeypatch.setattr(kdist.store, "_now", lambda: second)
    [report] = kdist.update(db, provider=provider(later), end="2023-07-31", client="sync")
    assert report.actions_new == [A]  # B had none since the last update
    assert "1 symbol with new ones (600000.SH)" in str(report)
    # No stored bar was rewritten: the same rows, in place, with the same values.
    with duckdb.connect(db, read_only=True) as con:
        still = con.execute("SELECT rowid, symbol, ts FROM kline WHERE ts < '2023-01-03' "
                            "ORDER BY rowid").df()
    pd.testing.assert_frame_equal(still, rowids)
    old = kdist.load(db, end="2023-01-02")
    pd.testing.assert_frame_equal(old, raw_before)
    # The derived qfq history changed from the first bar on, by the new step...
    qfq_after = kdist.load(db, A, adjust="qfq", end="2023-01-02")
    ratio = (qfq_after["close"] / qfq_before["close"]).to_numpy()
    raw = kdist.load(db, A)
    day = raw.index[raw["ts"] == "2023-06-20"][0]
    prev = raw["close"][day - 1]
    np.testing.assert_allclose(ratio, (prev - 1.2) / prev, rtol=1e-12)
    pd.testing.assert_frame_equal(kdist.load(db, A, adjust="qfq"),
                                  expected(db, provider(later), A, "qfq"), rtol=1e-12)
    # ...while a read as of a day before it is what it was.
    pd.testing.assert_frame_equal(kdist.load(db, A, adjust="qfq", as_of="2022-12-30"),
                                  as_of_before)
    pd.testing.assert_frame_equal(
        kdist.load(db, A, adjust="qfq", as_of="2023-06-19"),
        expected(db, provider(later), A, "qfq", as_of="2023-06-19"), rtol=1e-12)


def test_a_revised_event_is_superseded_and_as_of_reads_see_the_version_known(db, monkeypatch):
    days = {"first": dt.datetime(2023, 1, 3, 18), "second": dt.datetime(2023, 3, 1, 18)}
    monkeypatch.setattr(kdist.store, "_now", lambda: days["first"])
    ingest(db, provider(), end="2022-12-31")
    before = kdist.load(db, A, adjust="qfq")
    revised = {**TWO, "SH600000": [{"ex_date": "2021-06-15", "cash": 0.55},
                                   TWO["SH600000"][1]]}
    monkeypatch.setattr(kdist.store, "_now", lambda: days["second"])
    ingest(db, provider(revised), end="2022-12-31")
    history = kdist.corporate_actions(db, A, history=True)
    june = history[history["ex_date"] == "2021-06-15"]
    assert june["cash"].tolist() == [0.5, 0.55]
    assert june["valid_to"].tolist()[0] == pd.Timestamp(days["second"])
    assert pd.isna(june["valid_to"].tolist()[1])
    # The July 2022 row's factor moved with it (it is cumulative): superseded as well.
    assert (history["ex_date"] == "2022-07-01").sum() == 2
    now = kdist.load(db, A, adjust="qfq")
    pd.testing.assert_frame_equal(now, expected(db, provider(revised), A, "qfq"), rtol=1e-12)
    # As of a day kdist held the first version, a read sees that one; as of a day before
    # kdist knew of either, the first it recorded.
    pd.testing.assert_frame_equal(kdist.load(db, A, adjust="qfq", as_of="2023-02-01"), before)
    pd.testing.assert_frame_equal(kdist.load(db, A, adjust="qfq", as_of="2022-12-31"), before)
    pd.testing.assert_frame_equal(kdist.load(db, A, adjust="qfq", as_of="2023-03-02"), now)


def test_vendor_factors_are_used_as_given(db):
    p = provider(vendor=True)
    ingest(db, p)
    actions = kdist.corporate_actions(db)
    assert set(actions["factor_from"]) == {"vendor"}
    for symbol in (A, B):
        got = kdist.load(db, symbol, adjust="hfq")
        pd.testing.assert_frame_equal(got, expected(db, p, symbol, "hfq"), rtol=1e-12)


def test_splits_already_in_the_bars_are_left_out_of_the_factors(db):
    p = provider(splits=True)
    ingest(db, p)
    split = kdist.corporate_actions(db, B)
    assert split["split"].tolist() == [2.0, 1.0]  # kept as the record
    assert split["factor"].iloc[0] == 1.0  # but not applied again
    pd.testing.assert_frame_equal(kdist.load(db, B, adjust="qfq"),
                                  expected(db, p, B, "qfq"), rtol=1e-12)


def test_check_adjust_compares_vendor_bars_with_derived_ones(db):
    p = provider()
    ingest(db, p)
    ingest(db, p, adjust="qfq")  # the vendor's qfq bars, stored as they came
    ingest(db, p, adjust="hfq")
    # By default qfq reads derive; the vendor's stay readable with derive=False.
    vendor = kdist.load(db, A, adjust="qfq", derive=False)
    derived = kdist.load(db, A, adjust="qfq")
    assert not vendor.equals(derived)
    assert (vendor["close"] - derived["close"]).abs().max() <= 0.005 + 1e-9
    found = kdist.check_adjust(db)
    assert sorted(zip(found["symbol"], found["adjust"])) == [
        (B, "hfq"), (B, "qfq"), (A, "hfq"), (A, "qfq")]
    assert (found["differing"] == 0).all() and (found["max_diff"] <= 0.005 + 1e-9).all()
    with duckdb.connect(db) as con:
        con.execute("UPDATE kline SET close = close + 0.05 WHERE symbol = ? AND adjust = 'qfq' "
                    "AND ts = '2021-03-01'", [A])
    found = kdist.check_adjust(db).set_index(["symbol", "adjust"])
    assert found.loc[(A, "qfq"), "differing"] == 1
    assert found.loc[(A, "qfq"), "first_differing"] == pd.Timestamp("2021-03-01")
    assert found["differing"].sum() == 1


def test_symbols_without_actions_keep_the_vendor_bars(db):
    p = provider()
    ingest(db, p, adjust="qfq")  # vendor-adjusted only: no actions fetched
    assert kdist.corporate_actions(db).empty
    qfq = kdist.load(db, A, adjust="qfq")
    pd.testing.assert_frame_equal(qfq, kdist.load(db, A, adjust="qfq", derive=False))
    assert kdist.load(db, A, adjust="qfq", derive=True).empty


def test_a_symbol_whose_actions_fail_is_failed_whole_and_resumed(db):
    """A transient error, retries spent: no bars stored without their actions; a resume
    fetches both."""
    report = kdist.ingest([A, B], start="2020-01-01", end="2022-12-31",
                          provider=provider(drop=A), db=db, client="sync", retries=1)
    assert report.symbols_failed == 1 and "corporate actions of 600000.SH" in report.failures[A]
    assert kdist.load(db, A).empty  # no bars without their actions
    assert kdist.corporate_actions(db)["symbol"].unique().tolist() == [B]
    again = kdist.ingest(resume=report.job_id, provider=provider(), db=db, client="sync")
    assert again.symbols_ok == 1 and len(kdist.load(db, A))
    assert kdist.corporate_actions(db)["symbol"].unique().tolist() == [B, A]


def test_a_vendor_without_actions_for_a_symbol_keeps_its_bars(db):
    """A permanent error (the vendor has none for it, a missing package): the bars are
    stored, no check is recorded, and the report and the ledger say so."""
    p = provider(fail=A)
    report = kdist.ingest([A, B], start="2020-01-01", end="2022-12-31", provider=p, db=db,
                          client="sync")
    assert report.symbols_ok == 2 and report.status == "done"
    assert list(report.actions_failed) == [A]
    assert "no dividend data for 600000.SH" in report.actions_failed[A]
    assert "none for 1 symbol (stored without: 600000.SH)" in str(report)
    assert len(kdist.load(db, A)) and kdist.corporate_actions(db, A).empty
    ledger = kdist.ledger(db, report.job_id).set_index("symbol")
    assert ledger.loc[A, "status"] == "ok" and "corporate actions" in ledger.loc[A, "error"]
    assert kdist.load(db, A, adjust="qfq").empty  # nothing to derive from, no vendor bars
    assert len(kdist.load(db, B, adjust="qfq"))


def test_actions_can_be_left_out_and_are_refused_where_they_cannot_be(db):
    report = ingest(db, provider(), actions=False)
    assert not report.actions and kdist.corporate_actions(db).empty
    with pytest.raises(UsageError, match="fetched with raw bars"):
        ingest(db, provider(), adjust="qfq", actions=True)
    extra = {"actions": False} if "actions" in SyntheticProvider.options else None
    if extra is not None:
        with pytest.raises(UsageError, match="serves no corporate actions"):
            ingest(db, SyntheticProvider(**extra), actions=True)


def test_events_before_the_first_stored_bar_do_not_move_it(db):
    early = {"SH600000": [{"ex_date": "2019-06-03", "cash": 0.4},
                          {"ex_date": "2021-06-15", "cash": 0.5}], "SZ000001": []}
    p = provider(early)
    ingest(db, p)  # from 2020: no close before the 2019 dividend is stored
    stored = kdist.corporate_actions(db, A)
    assert stored["factor"].iloc[0] == 1.0
    hfq = kdist.load(db, A, adjust="hfq")
    raw = kdist.load(db, A)
    assert hfq["close"].iloc[0] == raw["close"].iloc[0]


# -- the command line ------------------------------------------------------------------------


def test_cli_lists_actions_shows_as_of_and_checks_vendor_bars(db, capsys):
    from kdist.cli import main

    p = provider()
    ingest(db, p)
    ingest(db, p, adjust="qfq")
    assert main(["actions", "sh600000", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "2021-06-15" in out and "2022-07-01" in out and "valid_from" not in out
    assert kdist.corporate_actions(db, A, start="2022-01-01")["ex_date"].tolist() == [
        pd.Timestamp("2022-07-01")]
    assert main(["actions", A, "--end", "2021-12-31", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "2021-06-15" in out and "2022-07-01" not in out
    assert main(["actions", "--history", "--json", "--db", db]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 4 and {"valid_from", "valid_to", "factor"} <= set(rows[0])
    assert main(["actions", "688001.SH", "--db", db]) == 1
    assert "No corporate actions of 688001.SH" in capsys.readouterr().err

    assert main(["show", A, "--db", db, "--adjust", "qfq", "--as-of", "2021-12-31",
                 "--tail", "0", "--json"]) == 0
    shown = pd.DataFrame(json.loads(capsys.readouterr().out))
    want = expected(db, p, A, "qfq", as_of="2021-12-31")
    np.testing.assert_allclose(shown["close"], want["close"], rtol=1e-9)  # JSON: 10 digits
    assert main(["show", A, "--db", db, "--adjust", "qfq", "--stored", "--tail", "1",
                 "--json"]) == 0
    stored = json.loads(capsys.readouterr().out)[0]
    assert stored["close"] == kdist.load(db, A, adjust="qfq", derive=False)["close"].iat[-1]

    assert main(["status", "--db", db]) == 0
    assert ("corporate actions from events: 2 symbols, 4 events in force, last fetched"
            in capsys.readouterr().out)

    assert main(["check", "--adjust", "--db", db]) == 0
    assert "2 series compared: 0 differ by more than 0.01" in capsys.readouterr().out
    with duckdb.connect(db) as con:
        con.execute("UPDATE kline SET open = open * 1.1 WHERE symbol = ? AND adjust = 'qfq'", [B])
    assert main(["check", "--adjust", "--db", db]) == 1
    out = capsys.readouterr().out
    assert "1 differ by more than 0.01" in out and B in out and A not in out.split("\n", 1)[1]


# -- the worker side ---------------------------------------------------------------------------


def _chunk(symbols):
    from kdist.plan import Chunk

    return Chunk(0, tuple(symbols), pd.Timestamp("2018-01-01"), pd.Timestamp("2023-01-01"))


def test_a_chunk_fetched_in_one_call_asks_its_actions_in_one_call(monkeypatch):
    from kdist.fetching import fetch_chunk
    from kdist.schema import Freq

    p = SyntheticProvider()
    symbols = p.list_symbols()[:12]
    calls = []
    many = SyntheticProvider.actions_many
    monkeypatch.setattr(SyntheticProvider, "actions_many",
                        lambda self, *a: calls.append(a) or many(self, *a))
    together = fetch_chunk(p, _chunk(symbols), Freq.DAY, Adjust.NONE, actions=True)
    assert len(calls) == 1 and list(calls[0][0]) == symbols
    # What asking symbol by symbol gives (actions_many declining), to the last bit.
    monkeypatch.setattr(SyntheticProvider, "actions_many", lambda self, *a: None)
    one_by_one = fetch_chunk(p, _chunk(symbols), Freq.DAY, Adjust.NONE, actions=True)
    def ordered(frame):
        return frame.sort_values(["symbol", *frame.columns[1:2]]).reset_index(drop=True)

    pd.testing.assert_frame_equal(ordered(together.actions), ordered(one_by_one.actions),
                                  check_exact=True)
    pd.testing.assert_frame_equal(ordered(together.checks), ordered(one_by_one.checks))
    assert set(together.checks["symbol"]) == set(symbols)
    # A failing actions_many is never a failed symbol: they are asked one by one.
    monkeypatch.setattr(SyntheticProvider, "actions_many",
                        lambda self, *a: (_ for _ in ()).throw(ConnectionError("reset")))
    again = fetch_chunk(p, _chunk(symbols), Freq.DAY, Adjust.NONE, actions=True)
    assert all(o["status"] == "ok" for o in again.outcomes)
    pd.testing.assert_frame_equal(ordered(again.actions), ordered(one_by_one.actions),
                                  check_exact=True)


# -- what a read derives, and from what ---------------------------------------------------------


def test_bars_stored_without_actions_get_them_from_their_first_bar_on_the_next_update(db):
    """An update asks for actions from its overlap on; a symbol whose raw bars were stored
    without any (--no-actions, or a file from before kdist stored them) is asked from its
    first stored bar, or the events before the overlap would be missing."""
    p = provider()
    ingest(db, p, end="2022-12-31", actions=False)
    assert kdist.corporate_actions(db).empty
    [report] = kdist.update(db, provider=p, end="2023-01-31", client="sync")
    assert report.actions and report.actions_new == [B, A]
    assert len(kdist.corporate_actions(db)) == 4  # 2021 and 2022 events, before the overlap
    for symbol in (A, B):
        pd.testing.assert_frame_equal(kdist.load(db, symbol, adjust="qfq"),
                                      expected(db, p, symbol, "qfq"), rtol=1e-12)


def test_weeks_and_months_are_built_from_the_derived_days(db):
    from kdist.bars import resample
    from kdist.schema import Freq

    p = provider()
    ingest(db, p)
    days = kdist.load(db, A, adjust="qfq")
    for freq in (Freq.WEEK, Freq.MONTH):
        got = kdist.load(db, A, adjust="qfq", freq=freq.value, start="2021-03-01",
                         end="2022-10-31")
        periods = resample({c: days[c].to_numpy() for c in days.columns[1:-1]}, freq)
        keep = (periods["ts"] >= np.datetime64("2021-03-01")) & (
            periods["ts"] <= np.datetime64("2022-10-31"))
        assert (got["ts"].to_numpy() == periods["ts"][keep]).all()
        for column in (*PRICES, "volume"):
            np.testing.assert_allclose(got[column].to_numpy(), periods[column][keep],
                                       rtol=1e-12, err_msg=f"{freq.value} {column}")
    # The week of the 2021-06-15 dividend: its open is the adjusted Monday's, not raw times
    # the factor after the dividend.
    week = kdist.load(db, A, adjust="qfq", freq="1w", start="2021-06-14", end="2021-06-18")
    monday = days[days["ts"] == "2021-06-14"].iloc[0]
    assert week["open"].iat[0] == pytest.approx(monday["open"], rel=1e-12)


def test_vendor_bars_of_another_freq_stay_readable(db):
    p = provider()
    kdist.ingest([A], start="2020-01-01", end="2022-12-31", provider=p, db=db, client="sync")
    kdist.ingest([A, B], start="2020-01-01", end="2022-12-31", provider=p, db=db,
                 client="sync", freq="1w", adjust="qfq")
    weekly = kdist.load(db, freq="1w", adjust="qfq")
    # A: derived from its raw days; B: no raw bars to derive from, the vendor's as stored.
    assert set(weekly["symbol"]) == {A, B}
    stored = kdist.load(db, B, freq="1w", adjust="qfq", derive=False)
    pd.testing.assert_frame_equal(weekly[weekly["symbol"] == B].reset_index(drop=True), stored)


def test_raw_bars_of_every_source_take_the_factors_of_the_last_checked(db):
    """A symbol's history from two sources is one series: one set of factors, one anchor."""
    extra = {"actions": False} if "actions" in SyntheticProvider.options else {}
    kdist.ingest([A], start="2019-01-01", end="2019-12-31", provider=SyntheticProvider(**extra),
                 db=db, client="sync")
    p = provider()
    kdist.ingest([A], start="2020-01-01", end="2022-12-31", provider=p, db=db, client="sync")
    raw = kdist.load(db, A)
    assert set(raw["source"]) == {"synthetic", "events"}
    qfq = kdist.load(db, A, adjust="qfq")
    assert len(qfq) == len(raw)  # no bar of the unchecked source left out
    pd.testing.assert_frame_equal(qfq, expected(db, p, A, "qfq"), rtol=1e-12)


def test_as_of_reads_only_derived_bars(db):
    p = provider()
    kdist.ingest([A], start="2020-01-01", end="2022-12-31", provider=p, db=db, client="sync")
    kdist.ingest([B], start="2020-01-01", end="2022-12-31", provider=p, db=db, client="sync",
                 adjust="qfq")  # B: the vendor's qfq only, anchored when it was fetched
    assert set(kdist.load(db, adjust="qfq")["symbol"]) == {A, B}
    assert set(kdist.load(db, adjust="qfq", as_of="2021-12-31")["symbol"]) == {A}


# --- the merge reads only the current rows it can change -----------------------------------

_EVERY_CURRENT_ROW = """
    SELECT a.symbol, a.ex_date::TIMESTAMP AS ex_date, a.cash, a.bonus, a.rights,
           a.rights_price, a.split, a.factor, a.factor_from
    FROM kdist_actions a SEMI JOIN kdist_checks c ON a.symbol = c.symbol
    WHERE a.source = ? AND a.valid_to IS NULL"""


def _random_store(path, rng, symbols, kinds=("vendor", "events", "mixed", "none")):
    """Raw closes and current actions (vendor's, computed from events, or a mix) of
    ``symbols``, source ``v``."""
    kdist.store.Store(str(path)).close()
    days = pd.bdate_range("2020-01-01", "2020-12-31")
    bars = pd.DataFrame({
        "symbol": np.repeat(symbols, len(days)), "freq": "1d", "adjust": "none",
        "ts": np.tile(days.to_numpy("datetime64[s]"), len(symbols)),
        "close": rng.uniform(5, 50, len(symbols) * len(days)), "source": "v"})
    rows = []
    for symbol in symbols:
        kind = rng.choice(kinds)
        for ex in sorted(rng.choice(days[5:-5], rng.integers(0, 7), replace=False)):
            origin = kind if kind != "mixed" else rng.choice(["vendor", "events", None])
            rows.append({"symbol": symbol, "source": "v", "ex_date": ex,
                         "cash": float(rng.choice([0.0, 0.3])), "bonus": 0.0, "rights": 0.0,
                         "rights_price": 0.0, "split": float(rng.choice([1.0, 2.0])),
                         "factor": float(rng.uniform(1, 3)) if origin == "vendor" else 1.1,
                         "factor_from": origin, "job_id": "j0",
                         "valid_from": pd.Timestamp("2021-01-01"), "valid_to": None})
    actions = pd.DataFrame(rows, columns=["symbol", "source", "ex_date", "cash", "bonus",
                                          "rights", "rights_price", "split", "factor",
                                          "factor_from", "job_id", "valid_from", "valid_to"])
    with duckdb.connect(str(path)) as con:
        con.execute("INSERT INTO kline BY NAME SELECT * FROM bars")
        con.execute("INSERT INTO kdist_actions SELECT symbol, source, ex_date::DATE, cash, "
                    "bonus, rights, rights_price, split, factor, factor_from, job_id, "
                    "valid_from, valid_to::TIMESTAMP FROM actions")
    return days


def _random_answer(rng, symbols, days, stored, vendor=None):
    """A vendor's answer for a window of each symbol: some stored ex-dates again (same,
    revised or bare), new ones, factors or events only."""
    checks, answer = [], []
    for symbol in symbols:
        mine = stored[stored["symbol"] == symbol]
        if len(mine) and rng.random() < 0.4:  # a window from one stored ex-date to another
            lo, hi = sorted(rng.choice(mine["ex_date"].to_numpy(), 2))
        else:
            lo = days[rng.integers(0, len(days) - 30)]
            hi = lo + pd.Timedelta(days=int(rng.integers(0, 200)))
        if rng.random() < 0.2:  # a window open at one end (Store.write takes any checks)
            lo, hi = (pd.NaT, hi) if rng.random() < 0.5 else (lo, pd.NaT)
        checks.append((symbol, lo, hi))
        # The chance of each answered row giving the vendor's factor.
        odds = rng.random() if vendor is None else vendor
        picks = [*rng.choice(mine["ex_date"].to_numpy(), min(len(mine), rng.integers(0, 3)),
                             replace=False)] if len(mine) else []
        picks += list(rng.choice(days, rng.integers(0, 3)))
        for ex in picks:
            bare = rng.random() < 0.3
            answer.append({"symbol": symbol, "ex_date": pd.Timestamp(ex),
                           "cash": 0.0 if bare else float(rng.choice([0.0, 0.3, 0.5])),
                           "bonus": 0.0, "rights": 0.0, "rights_price": 0.0,
                           "split": 1.0 if bare else float(rng.choice([1.0, 2.0])),
                           "factor": float(rng.uniform(1, 3)) if rng.random() < odds
                           else np.nan})
    checks = pd.DataFrame(checks, columns=["symbol", "start", "end"]).astype(
        {"start": "datetime64[us]", "end": "datetime64[us]"})
    answer = pd.DataFrame(answer, columns=["symbol", "ex_date", "cash", "bonus", "rights",
                                           "rights_price", "split", "factor"])
    return checks, answer.drop_duplicates(["symbol", "ex_date"])


def _both_merges(tmp_path, monkeypatch, seed, vendor_only=False) -> list[int]:
    """Merge one random answer into a random store with ``_CURRENT`` and with the whole read;
    assert they store the same; return the rows each read."""
    from kdist import adjustment

    rng = np.random.default_rng(seed)
    symbols = [f"S{i}" for i in range(10)]
    days = _random_store(tmp_path / "a.duckdb", rng, symbols,
                         *([("vendor",)] if vendor_only else []))
    with duckdb.connect(str(tmp_path / "a.duckdb")) as con:
        stored = con.execute("SELECT symbol, ex_date::TIMESTAMP AS ex_date "
                             "FROM kdist_actions").df()
    asked = [s for s in symbols if rng.random() < 0.8]
    checks, answer = _random_answer(rng, asked, days, stored, 1.0 if vendor_only else None)
    # The answer may name a symbol that was not asked: it is not merged.
    answer = pd.concat([answer, answer.head(1).assign(symbol="S99")], ignore_index=True)
    (tmp_path / "b.duckdb").write_bytes((tmp_path / "a.duckdb").read_bytes())
    now = pd.Timestamp("2022-01-01")
    results, read = [], []
    for name, sql in (("a", adjustment._CURRENT), ("b", _EVERY_CURRENT_ROW)):
        monkeypatch.setattr(adjustment, "_CURRENT", sql)
        with duckdb.connect(str(tmp_path / f"{name}.duckdb")) as con:
            con.register("kdist_checks", checks)
            con.register("kdist_answered", adjustment._answered(answer))
            read.append(len(con.execute(sql, ["v"]).fetchall()))
            con.unregister("kdist_checks")
            con.unregister("kdist_answered")
            changed = adjustment.merge_actions(
                con, answer, checks, source="v", job_id="j1", now=now,
                splits_in_bars=bool(seed % 2))
            table = con.execute("SELECT * FROM kdist_actions ORDER BY ALL").df()
        results.append((changed, table))
    (changed, narrow), (changed_whole, whole) = results
    assert changed == changed_whole
    pd.testing.assert_frame_equal(narrow, whole)
    assert len(whole) > 0 and read[0] <= read[1]
    return read


@pytest.mark.parametrize("seed", range(12))
def test_the_merge_reading_only_what_it_can_change_stores_what_a_whole_read_does(
        tmp_path, monkeypatch, seed):
    _both_merges(tmp_path, monkeypatch, seed)


def test_the_merge_reads_fewer_rows_where_the_vendor_gives_every_factor(tmp_path, monkeypatch):
    counts = []
    for seed in range(12, 18):
        (tmp_path / str(seed)).mkdir()
        counts.append(_both_merges(tmp_path / str(seed), monkeypatch, seed, vendor_only=True))
    narrow, whole = (sum(c) for c in zip(*counts))
    assert narrow < whole, (narrow, whole)


def _action_rows(rng, keys) -> pd.DataFrame:
    """Random current or desired rows of ``kdist_actions`` for ``keys`` (symbol, ex_date)."""
    n = len(keys)
    rows = pd.DataFrame({"symbol": pd.Series([k[0] for k in keys], dtype="str"),
                         "ex_date": pd.to_datetime([k[1] for k in keys]).astype("datetime64[us]")})
    for column in ("cash", "bonus", "rights", "rights_price", "split", "factor"):
        rows[column] = rng.choice([0.0, 0.5, 1.0, 2.0, np.nan], n)
    rows["factor_from"] = pd.Series(rng.choice(["vendor", "events", None], n), dtype=object)
    return rows


@pytest.mark.parametrize("seed", range(20))
def test_pairing_rows_of_the_same_keys_finds_what_the_merge_finds(monkeypatch, seed):
    # adjustment._paired compares rows of the same keys one against one; without it the
    # outer merge does: same gone and added rows, whatever the order the rows come in.
    from kdist import adjustment

    rng = np.random.default_rng(seed)
    keys = sorted({(f"{600000 + int(rng.integers(0, 30))}.SH",
                    f"20{int(rng.integers(10, 25))}-0{int(rng.integers(1, 10))}-1"
                    f"{int(rng.integers(0, 10))}") for _ in range(60)})
    current = _action_rows(rng, keys)
    desired = current.copy()
    change = rng.random(len(keys)) < 0.3
    other = _action_rows(rng, keys)
    desired.loc[change] = other.loc[change]
    desired.loc[rng.random(len(keys)) < 0.1, "factor"] += 1e-13  # within isclose's 1e-12
    if seed % 2:
        current = current.sample(frac=1, random_state=seed)  # another order: sorted first
    paired = adjustment._paired(current, desired)
    assert paired is not None
    monkeypatch.setattr(adjustment, "_paired", lambda current, desired: None)
    merged = adjustment._difference(current, desired)
    for mine, theirs in zip(paired, merged):
        mine = mine.sort_values(["symbol", "ex_date"], ignore_index=True)
        theirs = theirs.sort_values(["symbol", "ex_date"], ignore_index=True)
        pd.testing.assert_frame_equal(mine, theirs)
    assert len(merged[1]) == len(merged[0]) > 0


def test_pairing_declines_rows_of_other_keys_or_a_repeated_key():
    from kdist import adjustment

    rng = np.random.default_rng(0)
    keys = [("600000.SH", "2020-06-01"), ("600000.SH", "2021-06-01"), ("600001.SH", "2020-06-01")]
    current = _action_rows(rng, keys)
    assert adjustment._paired(current, _action_rows(rng, keys[:2])) is None
    other = [*keys[:2], ("600002.SH", "2020-06-01")]
    assert adjustment._paired(current, _action_rows(rng, other)) is None
    twice = [keys[0], keys[0], keys[1]]
    assert adjustment._paired(_action_rows(rng, twice), _action_rows(rng, twice)) is None
