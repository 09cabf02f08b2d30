"""The acceptance criterion of derived adjustment, end to end, for every vendor fixture.

"Derived qfq and hfq equal the vendor-shaped adjusted bars to the vendor's rounding for every
vendor fixture": each test runs the real ``kdist.ingest(..., client="sync")`` path with only
the vendor's seam replaced, by the fakes of ``tests/providers/test_<vendor>.py`` (loaded from
their files: :func:`vendor_tests`) answering with bars shaped like the vendor's, and compares
what kdist derives from raw bars and the stored corporate actions with the adjusted bars the
vendor builds its own way:

- baostock: ``price x backAdjustFactor`` (hfq) and ``x back / latest back`` (qfq), 2 dp;
- akshare: Sina's ``raw x hfq_factor`` and ``raw / qfq_factor``, 2 dp, match; Eastmoney's own
  qfq (cash subtracted, not scaled) is reported as differing by ``check_adjust``;
- yfinance: Yahoo's Adj Close (and ``auto_adjust=True`` OHLC) from split-adjusted bars;
- tdx: the mootdx/hikyuu ratio qfq from the raw closes and the gbbq's per-10 figures;
- csv/parquet: the SSE formula worked by hand for an events-only file, a factors-only file;
- synthetic: its 100-symbol universe, its own rounded qfq/hfq bars;
- an update that brings a new dividend (yfinance) fetches from the overlap only, rewrites no
  stored bar and names only that symbol; a baostock update, whose factor series reaches back
  before its window while its dividends are asked for the window's years, keeps the stored
  dividend figures of earlier ex-dates.

The raw bars of a fixture are a 2-decimal random walk that gaps at each ex-date to the
exchange's reference price (:func:`traded`), so the factors a test builds from them (Sina's)
are those the vendor would publish; baostock's are test_baostock's, from its wiki. Expected
prices are computed here in plain numpy and pandas, not with :mod:`kdist.actions`.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

import kdist

PRICES = ["open", "high", "low", "close"]
#: A vendor rounding to 0.01 is off by at most half a cent (and float noise).
HALF_CENT = 0.005 + 1e-9
_PROVIDER_TESTS = Path(__file__).parent / "providers"


def vendor_tests(name: str):
    """The module ``tests/providers/<name>.py``, loaded from its file under a private name,
    for its fakes and fixture builders (``tests/providers`` is no package). A module that
    skips itself (``pytest.importorskip`` of a missing vendor package) skips the caller."""
    key = f"_kdist_vendor_fixtures_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, _PROVIDER_TESTS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[key]
            raise
    return sys.modules[key]


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "k.duckdb")


def traded(start, end, first: float, seed: int, events=(), pins=None) -> pd.DataFrame:
    """Daily bars on every weekday of ``[start, end]``, as traded: 2-decimal prices of a
    random walk that opens each ex-date from the reference price of the close before it,
    ``(C - cash + rights_price x rights) / ((1 + bonus + rights) x split)`` (per share).
    ``pins`` fixes the close of given days (the day before an ex-date, for round numbers)."""
    days = pd.bdate_range(start, end)
    rng = np.random.default_rng(seed)
    moves = rng.normal(0.0, 0.015, (len(days), 4))
    by_day = {pd.Timestamp(e["ex_date"]): e for e in events}
    pins = {pd.Timestamp(k): v for k, v in (pins or {}).items()}
    rows, prev = [], None
    for i, day in enumerate(days):
        base = first if prev is None else prev
        e = by_day.get(day)
        if e is not None and prev is not None:
            base = (prev - e.get("cash", 0.0) + e.get("rights_price", 0.0) * e.get("rights", 0.0)
                    ) / ((1 + e.get("bonus", 0.0) + e.get("rights", 0.0)) * e.get("split", 1.0))
        open_ = round(base * math.exp(0.3 * moves[i, 0]), 2)
        close = round(pins.get(day, base * math.exp(moves[i, 1])), 2)
        high = max(round(max(open_, close) * (1 + 0.3 * abs(moves[i, 2])), 2), open_, close)
        low = min(round(min(open_, close) * (1 - 0.3 * abs(moves[i, 3])), 2), open_, close)
        volume = float(round(1_000_000 * (1 + abs(moves[i, 2]) * 20)))
        rows.append((day, open_, high, low, close, volume, round(volume * close, 2)))
        prev = close
    return pd.DataFrame(rows, columns=["ts", *PRICES, "volume", "amount"]).astype(
        {"ts": "datetime64[us]"})


def level_at(ts, ex_dates, levels, before=1.0) -> np.ndarray:
    """The level in force at each stamp: that of the latest ex-date on or before it."""
    at = np.searchsorted(np.asarray(ex_dates, "datetime64[us]"),
                         np.asarray(ts, "datetime64[us]"), side="right") - 1
    levels = np.asarray(levels, "float64")
    return np.where(at >= 0, levels[np.maximum(at, 0)] if len(levels) else before, before)


def max_diff(a: pd.DataFrame, b: pd.DataFrame) -> float:
    """The largest price difference of two frames of the same bars."""
    assert a["ts"].tolist() == b["ts"].tolist()
    return float(np.abs(a[PRICES].to_numpy("float64") - b[PRICES].to_numpy("float64")).max())


def only_clean_checks(found: pd.DataFrame, expected: list[tuple[str, str]]):
    """check_adjust compared exactly these (symbol, adjust) series, none differing."""
    assert sorted(zip(found["symbol"], found["adjust"])) == sorted(expected)
    assert (found["differing"] == 0).all(), found
    assert (found["max_diff"] <= HALF_CENT).all(), found


# -- baostock -------------------------------------------------------------------------------------

#: sh.600000's dividends of the test_baostock fixture (baostock's wiki example), per share.
BAOSTOCK_EVENTS = [{"ex_date": "2015-06-23", "cash": 0.757},
                   {"ex_date": "2016-06-23", "cash": 0.515, "bonus": 0.1},
                   {"ex_date": "2017-05-25", "cash": 0.2, "bonus": 0.3}]


def baostock_rows(bars: pd.DataFrame, code: str, flag: str) -> list[list[str]]:
    """query_history_k_data_plus's daily rows: every value a string, 4 decimals."""
    return [[f"{t:%Y-%m-%d}", code, *(f"{v:.4f}" for v in (o, h, lo, c, vol, amount)), flag, "1"]
            for t, o, h, lo, c, vol, amount in bars.itertuples(index=False)]


def baostock_vendor(tb, bars: dict[str, pd.DataFrame], factors: dict[str, list]):
    """The seam, answering each code's raw bars (adjustflag 3) and the hfq (1) and qfq (2)
    bars baostock builds from them: ``price x backAdjustFactor`` of the latest factor row
    with ``dividOperateDate <= t`` (1 before the first), qfq that over the latest back
    factor, rounded to 2 dp. Factors and dividends are test_baostock's fixture."""
    answers = {}
    for code, raw in bars.items():
        rows = factors.get(code, [])
        back = level_at(raw["ts"], pd.to_datetime([r[1] for r in rows]),
                        [float(r[3]) for r in rows])
        latest = float(rows[-1][3]) if rows else 1.0
        answers[(code, "3")] = baostock_rows(raw, code, "3")
        for flag, scale in (("1", back), ("2", back / latest)):
            adjusted = raw.copy()
            for column in PRICES:
                adjusted[column] = np.round(raw[column].to_numpy() * scale, 2)
            answers[(code, flag)] = baostock_rows(adjusted, code, flag)

    class Baostock(tb.FakeBaostock):
        def __call__(self, op, **kwargs):
            if op != "query_history_k_data_plus":
                return super().__call__(op, **kwargs)  # login, factors, dividends
            self.calls.append((op, kwargs))
            lo, hi = kwargs["start_date"], kwargs["end_date"]
            rows = answers.get((kwargs["code"], kwargs["adjustflag"]), [])
            return tb.Result(fields=kwargs["fields"], rows=[r for r in rows if lo <= r[0] <= hi])

    return Baostock()


def test_baostock_derived_qfq_and_hfq_equal_its_adjusted_bars(db, monkeypatch):
    tb = vendor_tests("test_baostock")
    from kdist.providers import baostock_

    raw = {"sh.600000": traded("2015-01-05", "2017-12-29", 15.0, 1, BAOSTOCK_EVENTS),
           # No factor rows at all: checked, derived, equal to raw.
           "sz.000001": traded("2015-01-05", "2017-12-29", 11.0, 2)}
    vendor = baostock_vendor(tb, raw, tb.FACTORS)
    monkeypatch.setattr(baostock_, "_baostock", vendor)
    monkeypatch.setattr(baostock_, "_SESSION", None)
    p = kdist.get_provider("baostock")
    symbols = ["600000.SH", "000001.SZ"]
    report = kdist.ingest(symbols, start="2015-01-01", end="2017-12-31", provider=p, db=db,
                          client="sync", max_rate=1000)
    assert report.symbols_ok == 2 and report.actions_checked == 2
    assert report.actions_new == ["600000.SH"]
    for adjust in ("qfq", "hfq"):
        done = kdist.ingest(symbols, start="2015-01-01", end="2017-12-31", adjust=adjust,
                            provider=p, db=db, client="sync", max_rate=1000)
        assert done.symbols_ok == 2 and not done.actions
    assert sorted({c[1]["adjustflag"] for c in vendor.calls
                   if c[0] == "query_history_k_data_plus"}) == ["1", "2", "3"]

    # The factors are baostock's, as given; the events carry the one in force.
    actions = kdist.corporate_actions(db, "600000.SH")
    assert set(actions["factor_from"]) == {"vendor"}
    assert actions["factor"].tolist() == [6.295967, 7.128788, 9.385732]
    assert actions["cash"].tolist() == [0.757, 0.515, 0.2]
    assert actions["bonus"].tolist() == [0.0, 0.1, 0.3]

    only_clean_checks(kdist.check_adjust(db, tolerance=0.01),
                      [(s, a) for s in symbols for a in ("qfq", "hfq")])
    assert max_diff(kdist.load(db, "600000.SH", adjust="qfq", derive=False),
                    kdist.load(db, "600000.SH")) > 1  # the adjustment is no rounding
    for symbol in symbols:
        for adjust in ("qfq", "hfq"):
            derived = kdist.load(db, symbol, adjust=adjust)
            stored = kdist.load(db, symbol, adjust=adjust, derive=False)
            assert max_diff(derived, stored) <= HALF_CENT

    # hfq is raw x backAdjustFactor, unrounded; qfq that over the latest one (raw after it).
    bars = kdist.load(db, "600000.SH")
    back = level_at(bars["ts"], pd.to_datetime(["2015-06-23", "2016-06-23", "2017-05-25"]),
                    [6.295967, 7.128788, 9.385732])
    hfq = kdist.load(db, "600000.SH", adjust="hfq")
    qfq = kdist.load(db, "600000.SH", adjust="qfq")
    for column in PRICES:
        np.testing.assert_allclose(hfq[column], bars[column] * back, rtol=1e-12, atol=0)
        np.testing.assert_allclose(qfq[column], bars[column] * back / 9.385732, rtol=1e-12,
                                   atol=0)
    assert (hfq[["volume", "amount"]] == bars[["volume", "amount"]]).all().all()
    other = kdist.load(db, "000001.SZ", adjust="qfq")
    pd.testing.assert_frame_equal(other, kdist.load(db, "000001.SZ"))


def test_a_baostock_update_keeps_the_stored_dividends(db, monkeypatch):
    tb = vendor_tests("test_baostock")
    from kdist.providers import baostock_

    raw = {"sh.600000": traded("2015-01-05", "2018-01-31", 15.0, 1, BAOSTOCK_EVENTS),
           "sz.000001": traded("2015-01-05", "2018-01-31", 11.0, 2,
                               [{"ex_date": "2018-01-15", "cash": 0.158}])}
    before = raw["sz.000001"].set_index("ts")["close"][:"2018-01-12"].iloc[-1]
    # sz.000001 goes ex after the first job: its factor row and its dividend row.
    monkeypatch.setitem(tb.FACTORS, "sz.000001", [
        ["sz.000001", "2018-01-15", "1.000000", f"{before / (before - 0.158):.6f}",
         f"{before / (before - 0.158):.6f}"]])
    monkeypatch.setitem(tb.DIVIDENDS, "sz.000001", [
        ["sz.000001", "", "2017-12-01", "2017-11-20", "2017-12-08", "2018-01-12", "2018-01-15",
         "2018-01-15", "", "0.158", "0.1422", "0.000000", "10派1.58元（含税，扣税后1.422元）", ""]])
    vendor = baostock_vendor(tb, raw, tb.FACTORS)
    monkeypatch.setattr(baostock_, "_baostock", vendor)
    monkeypatch.setattr(baostock_, "_SESSION", None)
    p = kdist.get_provider("baostock")
    first = kdist.ingest(["600000.SH", "000001.SZ"], start="2015-01-01", end="2017-12-29",
                         provider=p, db=db, client="sync", max_rate=1000)
    assert first.actions_new == ["600000.SH"]
    qfq_before = kdist.load(db, "600000.SH", adjust="qfq")

    [report] = kdist.update(db, provider=p, end="2018-01-31", client="sync", max_rate=1000)
    # Derived prices are right either way: the factors did not change.
    pd.testing.assert_frame_equal(
        kdist.load(db, "600000.SH", adjust="qfq", end="2017-12-29"), qfq_before)
    assert kdist.corporate_actions(db, "000001.SZ")["cash"].tolist() == [0.158]
    # What fails: 600000.SH had no new event, and its dividends are kept as they were.
    assert report.actions_new == ["000001.SZ"]
    mine = kdist.corporate_actions(db, "600000.SH", history=True)
    assert mine["valid_to"].isna().all()
    assert mine["cash"].tolist() == [0.757, 0.515, 0.2]


# -- akshare: Sina's factors, Eastmoney's bars -----------------------------------------------------

#: 000001's cash dividends of 2022-2024 (Sina's 分红 table, per 10 shares: 10派2.28 ...).
AKSHARE_CASH = {"2022-07-22": 2.28, "2023-06-14": 2.85, "2024-06-14": 7.19, "2024-10-10": 2.46}
#: Sina's factor of 000001 before them (test_akshare's fixture: 1991-04-03, 166.5).
SINA_FIRST = ("1991-04-03", 166.5)


def sina_factors(raw: pd.DataFrame) -> list[tuple[str, float]]:
    """Sina's hfq factors from the raw closes, oldest first: each ex-date multiplies the last
    by ``C / (C - cash)``, C the close before it (the ratio method Sina's series follows)."""
    out = [SINA_FIRST]
    closes = raw.set_index("ts")["close"]
    for day, per_ten in AKSHARE_CASH.items():
        before = closes[closes.index < pd.Timestamp(day)].iloc[-1]
        out.append((day, out[-1][1] * before / (before - per_ten / 10)))
    return out


def eastmoney_rows(bars: pd.DataFrame):
    """stock_zh_a_hist's rows of test_akshare's BARS: (date, open, close, high, low, lots,
    amount)."""
    return [(f"{t:%Y-%m-%d}", o, c, h, lo, round(v / 100), a)
            for t, o, h, lo, c, v, a in bars.itertuples(index=False)]


def akshare_vendor(tak, monkeypatch, answers: dict[str, pd.DataFrame], factors):
    """Replace both seams: Eastmoney answers ``answers[adjust]`` for 000001; Sina answers
    ``factors`` (newest first with the 1900 row, as strings of 16 decimals) and the cash
    dividends, through test_akshare's FakeSina."""
    from kdist.providers.akshare_ import AkshareProvider

    calls = []

    def stock_zh_a_hist(**kwargs):
        calls.append(kwargs)
        lo = pd.Timestamp(kwargs["start_date"])
        hi = pd.Timestamp(kwargs["end_date"])
        bars = answers[kwargs["adjust"]]
        inside = bars[(bars["ts"] >= lo) & (bars["ts"] <= hi)]
        return tak.ak_frame(kwargs["symbol"], eastmoney_rows(inside))

    sina = tak.FakeSina()
    sina.factors = {"sz000001": [(d, f"{f:.16f}") for d, f in reversed(factors)]
                    + [("1900-01-01", "1.0000000000000000")]}
    sina.dividends = {"000001": [("2025-03-15", 0, 0, 3.62, "预案", None, None, None)] + [
        (day, 0, 0, per_ten, "实施", day, day, None) for day, per_ten in AKSHARE_CASH.items()]}
    sina.rights = {"000001": []}
    monkeypatch.setattr(AkshareProvider, "_stock_zh_a_hist", staticmethod(stock_zh_a_hist))
    monkeypatch.setattr(AkshareProvider, "_stock_zh_a_daily",
                        staticmethod(sina.stock_zh_a_daily))
    monkeypatch.setattr(AkshareProvider, "_stock_history_dividend_detail",
                        staticmethod(sina.stock_history_dividend_detail))
    return calls


def test_akshare_derived_prices_match_sinas_and_eastmoneys_are_reported(db, monkeypatch):
    tak = vendor_tests("test_akshare")
    raw = traded("2022-01-04", "2024-12-31", 15.5, 3,
                 [{"ex_date": d, "cash": c / 10} for d, c in AKSHARE_CASH.items()])
    factors = sina_factors(raw)
    ex_dates = pd.to_datetime([d for d, _ in factors])
    hfq_factor = level_at(raw["ts"], ex_dates, [f for _, f in factors])
    qfq_factor = factors[-1][1] / hfq_factor  # akshare: hfq_latest / hfq_factor
    # Eastmoney's qfq (等差): the cash of every later dividend is subtracted, not scaled.
    later_cash = sum(np.where(raw["ts"] < pd.Timestamp(d), c / 10, 0.0)
                     for d, c in AKSHARE_CASH.items())
    sina_hfq, sina_qfq, eastmoney_qfq = raw.copy(), raw.copy(), raw.copy()
    for column in PRICES:
        sina_hfq[column] = np.round(raw[column] * hfq_factor, 2)
        sina_qfq[column] = np.round(raw[column] / qfq_factor, 2)
        eastmoney_qfq[column] = np.round(raw[column] - later_cash, 2)
    calls = akshare_vendor(tak, monkeypatch, {"": raw, "qfq": eastmoney_qfq}, factors)
    p = kdist.get_provider("akshare")
    report = kdist.ingest(["000001.SZ"], start="2022-01-01", end="2024-12-31", provider=p,
                          db=db, client="sync", max_rate=1000)
    assert report.symbols_ok == 1 and report.actions_new == ["000001.SZ"]
    actions = kdist.corporate_actions(db)
    assert actions["ex_date"].dt.strftime("%Y-%m-%d").tolist() == [SINA_FIRST[0],
                                                                   *AKSHARE_CASH]
    np.testing.assert_allclose(actions["factor"], [f for _, f in factors], rtol=1e-15)
    assert actions["cash"].tolist() == [0.0, 0.228, 0.285, 0.719, 0.246]

    # Derived from Sina's factors: Sina's own bars, to their 0.01.
    qfq = kdist.load(db, "000001.SZ", adjust="qfq")
    hfq = kdist.load(db, "000001.SZ", adjust="hfq")
    assert max_diff(qfq, sina_qfq.assign(symbol="000001.SZ")) <= HALF_CENT
    assert max_diff(hfq, sina_hfq.assign(symbol="000001.SZ")) <= HALF_CENT

    # Eastmoney's own qfq bars (the provider's --adjust qfq) are stored as they come, and
    # check_adjust says by how much they differ from the ratio-adjusted series.
    done = kdist.ingest(["000001.SZ"], start="2022-01-01", end="2024-12-31", adjust="qfq",
                        provider=p, db=db, client="sync", max_rate=1000)
    assert done.symbols_ok == 1 and [c["adjust"] for c in calls] == ["", "qfq"]
    stored = kdist.load(db, "000001.SZ", adjust="qfq", derive=False)
    assert max_diff(stored, eastmoney_qfq.assign(symbol="000001.SZ")) == 0.0
    diff = np.abs(stored[PRICES].to_numpy() - qfq[PRICES].to_numpy()).max(axis=1)
    differing = diff > 0.01 + 1e-9
    [found] = kdist.check_adjust(db, tolerance=0.01).itertuples(index=False)
    assert (found.symbol, found.adjust, found.bars) == ("000001.SZ", "qfq", len(raw))
    assert found.differing == differing.sum() > len(raw) // 4
    assert found.max_diff == pytest.approx(diff.max(), rel=1e-9) and diff.max() > 0.1
    assert found.first_differing == stored["ts"][differing].iloc[0]
    # After the last ex-date both are raw: nothing differs there.
    assert not differing[(stored["ts"] >= "2024-10-10").to_numpy()].any()


# -- yfinance -------------------------------------------------------------------------------------

#: Split-adjusted dividends per share and the 4-for-1 split of AAPL; MSFT's dividends.
YAHOO = {
    "AAPL": {"first": 75.0, "seed": 4, "split": ("2020-08-31", 4.0),
             "cash": {"2020-02-07": 0.1925, "2020-05-08": 0.205, "2020-08-07": 0.205,
                      "2020-11-06": 0.205, "2021-02-05": 0.205, "2021-05-07": 0.22,
                      "2021-08-06": 0.22}},
    "MSFT": {"first": 160.0, "seed": 5, "split": None,
             "cash": {"2020-02-19": 0.51, "2020-05-20": 0.51, "2020-08-19": 0.51,
                      "2020-11-18": 0.56, "2021-02-17": 0.56, "2021-05-19": 0.56,
                      "2021-08-18": 0.56}},
}


def yahoo_history(tyf, ticker: str, today: str) -> pd.DataFrame:
    """What ``Ticker(t).history(auto_adjust=False, actions=True)`` answers on ``today``:
    split-adjusted OHLC (no gap at the split), Adj Close built from every dividend up to
    today (test_yfinance's ``yahoo_adj_close``), Dividends and Stock Splits (0.0 on the
    other days), on a New York-zoned index."""
    spec = YAHOO[ticker]
    bars = traded("2020-01-02", "2021-08-31", spec["first"], spec["seed"],
                  [{"ex_date": d, "cash": c} for d, c in spec["cash"].items()])
    bars = bars[bars["ts"] <= pd.Timestamp(today)]
    index = pd.DatetimeIndex(bars["ts"], name="Date").tz_localize("America/New_York")
    frame = pd.DataFrame({"Open": bars["open"].to_numpy(), "High": bars["high"].to_numpy(),
                          "Low": bars["low"].to_numpy(), "Close": bars["close"].to_numpy()},
                         index=index)
    day = index.tz_localize(None)
    dividends = pd.Series(0.0, index=index)
    for ex_date, cash in spec["cash"].items():
        dividends[day == pd.Timestamp(ex_date)] = cash
    splits = pd.Series(0.0, index=index)
    if spec["split"]:
        splits[day == pd.Timestamp(spec["split"][0])] = spec["split"][1]
    frame["Adj Close"] = tyf.yahoo_adj_close(frame["Close"], dividends)
    frame["Volume"] = bars["volume"].to_numpy().astype("int64")
    frame["Dividends"], frame["Stock Splits"] = dividends, splits
    return frame


class Yahoo:
    """The seam ``YfinanceProvider._history``: answers ``frames[ticker]`` within
    ``[start, end)`` shaped by ``auto_adjust`` (OHLC x Adj Close / Close, no Adj Close) and
    ``actions``, as yfinance does; records every call."""

    def __init__(self, frames: dict[str, pd.DataFrame]):
        self.frames, self.calls = frames, []

    def __call__(self, ticker, **kwargs):
        self.calls.append((ticker, kwargs))
        frame = self.frames[ticker]
        day = frame.index.strftime("%Y-%m-%d")
        frame = frame[(day >= kwargs["start"]) & (day < kwargs["end"])].copy()
        if kwargs["auto_adjust"]:
            ratio = frame["Adj Close"] / frame["Close"]
            for column in ("Open", "High", "Low", "Close"):
                frame[column] = frame[column] * ratio
            frame = frame.drop(columns="Adj Close")
        if not kwargs["actions"]:
            frame = frame.drop(columns=["Dividends", "Stock Splits"])
        return frame


def yahoo(monkeypatch, frames) -> Yahoo:
    from kdist.providers.yfinance_ import YfinanceProvider

    fake = Yahoo(frames)
    monkeypatch.setattr(YfinanceProvider, "_history", staticmethod(fake))
    return fake


def test_yfinance_derived_qfq_is_adj_close_and_splits_count_once(db, monkeypatch):
    tyf = vendor_tests("test_yfinance")
    history = yahoo_history(tyf, "AAPL", "2021-06-30")
    yahoo(monkeypatch, {"AAPL": history})
    p = kdist.get_provider("yfinance")
    report = kdist.ingest(["AAPL"], start="2020-01-02", end="2021-06-30", provider=p, db=db,
                          client="sync", max_rate=1000)
    assert report.symbols_ok == 1 and report.actions_new == ["AAPL"]
    actions = kdist.corporate_actions(db).set_index("ex_date")
    assert actions.index.strftime("%Y-%m-%d").tolist() == sorted(
        [d for d in YAHOO["AAPL"]["cash"] if d <= "2021-06-30"] + ["2020-08-31"])
    assert set(actions["factor_from"]) == {"events"}
    # The split is recorded, and moves no factor: Yahoo's bars and dividends have it.
    split = actions.loc["2020-08-31"]
    assert (split["split"], split["cash"]) == (4.0, 0.0)
    assert split["factor"] == actions.loc["2020-08-07", "factor"]

    adj_close = history["Adj Close"].to_numpy()
    qfq = kdist.load(db, "AAPL", adjust="qfq")
    np.testing.assert_allclose(qfq["close"], adj_close, rtol=1e-6, atol=0)
    pre_split = (qfq["ts"] < "2020-08-31").to_numpy()
    assert pre_split.sum() > 100 and (qfq["close"][pre_split] > 50).all()  # not a quarter

    # Yahoo's auto_adjust=True bars, which kdist stores under qfq: the same, OHLC.
    done = kdist.ingest(["AAPL"], start="2020-01-02", end="2021-06-30", adjust="qfq",
                        provider=p, db=db, client="sync", max_rate=1000)
    assert done.symbols_ok == 1
    stored = kdist.load(db, "AAPL", adjust="qfq", derive=False)
    for column in PRICES:
        np.testing.assert_allclose(qfq[column], stored[column], rtol=1e-6, atol=0)
    [found] = kdist.check_adjust(db, tolerance=0.01).itertuples(index=False)
    assert (found.symbol, found.adjust, found.differing) == ("AAPL", "qfq", 0)
    assert found.max_diff < 1e-6


def test_an_update_with_a_new_dividend_stays_incremental(db, monkeypatch):
    tyf = vendor_tests("test_yfinance")
    fake = yahoo(monkeypatch, {t: yahoo_history(tyf, t, "2021-08-31") for t in YAHOO})
    p = kdist.get_provider("yfinance")
    first = kdist.ingest(["AAPL", "MSFT"], start="2020-01-02", end="2021-06-30", provider=p,
                         db=db, client="sync", max_rate=1000)
    assert first.actions_new == ["AAPL", "MSFT"]
    with duckdb.connect(db, read_only=True) as con:
        rows = con.execute("SELECT rowid, symbol, ts FROM kline ORDER BY rowid").df()
    raw_before = kdist.load(db)
    qfq_before = {t: kdist.load(db, t, adjust="qfq") for t in YAHOO}
    since = sorted(raw_before["ts"].unique())[-3]  # the overlap: the last 3 stored bars
    fake.calls.clear()

    # AAPL goes ex on 2021-08-06; MSFT's next is 2021-08-18, after the update's end.
    [report] = kdist.update(db, provider=p, end="2021-08-10", client="sync", max_rate=1000)
    assert report.actions_new == ["AAPL"]
    assert "1 symbol with new ones (AAPL)" in str(report)
    # Bars and actions were asked from the overlap on only, once each per symbol.
    assert sorted((t, kw["actions"]) for t, kw in fake.calls) == [
        ("AAPL", False), ("AAPL", True), ("MSFT", False), ("MSFT", True)]
    assert {(kw["start"], kw["end"]) for _, kw in fake.calls} == {
        (f"{pd.Timestamp(since):%Y-%m-%d}", "2021-08-11")}
    # No stored bar was rewritten: the same rows in place, the same values.
    with duckdb.connect(db, read_only=True) as con:
        still = con.execute("SELECT rowid, symbol, ts FROM kline WHERE ts <= '2021-06-30' "
                            "ORDER BY rowid").df()
    pd.testing.assert_frame_equal(still, rows)
    pd.testing.assert_frame_equal(kdist.load(db, end="2021-06-30"), raw_before)
    # Only AAPL's new row was added; MSFT's rows kept their one version.
    history = kdist.corporate_actions(db, history=True)
    assert history["valid_to"].isna().all()
    assert history.groupby("symbol").size().to_dict() == {"AAPL": 8, "MSFT": 6}
    assert history["job_id"][history["ex_date"] == "2021-08-06"].tolist() == [report.job_id]

    # AAPL's qfq history moved by the new step; it is Yahoo's Adj Close of the new day.
    aapl = kdist.load(db, "AAPL", adjust="qfq")
    np.testing.assert_allclose(
        aapl["close"], yahoo_history(tyf, "AAPL", "2021-08-10")["Adj Close"], rtol=1e-6, atol=0)
    raw = kdist.load(db, "AAPL").set_index("ts")["close"]
    prev = raw[raw.index < "2021-08-06"].iloc[-1]
    old = aapl[aapl["ts"] <= "2021-06-30"].reset_index(drop=True)
    np.testing.assert_allclose(old["close"] / qfq_before["AAPL"]["close"], (prev - 0.22) / prev,
                               rtol=1e-12)
    pd.testing.assert_frame_equal(kdist.load(db, "MSFT", adjust="qfq", end="2021-06-30"),
                                  qfq_before["MSFT"])


# -- tdx: a vipdoc day file and a gbbq file --------------------------------------------------------

#: 600000.SH's 除权除息 records as TDX writes them, per 10 shares (f1 cash, f2 rights price,
#: f3 bonus shares, f4 rights shares); 4.14 is no float32 (4.1399998665).
TDX_EVENTS = [(20230721, 3.2, 0.0, 0.0, 0.0), (20240110, 2.25, 0.0, 3.0, 0.0),
              (20240205, 1.5, 8.5, 0.0, 2.0), (20240719, 4.14, 0.0, 0.0, 0.0)]


def test_tdx_derived_qfq_is_mootdx_and_hikyuus(db, tmp_path):
    tdx_files = vendor_tests("test_tdx")
    gbbq = vendor_tests("test_tdx_gbbq")  # skips without pytdx
    root = tmp_path / "new_tdx"
    events = [{"ex_date": str(d), "cash": f1 / 10, "rights_price": f2, "bonus": f3 / 10,
               "rights": f4 / 10} for d, f1, f2, f3, f4 in TDX_EVENTS]
    raw = traded("2023-01-03", "2024-12-31", 10.5, 6, events)
    tdx_files.write_day(root, "600000.SH", [
        (int(f"{t:%Y%m%d}"), *(round(x * 100) for x in (o, h, lo, c)), a, int(v))
        for t, o, h, lo, c, v, a in raw.itertuples(index=False)])
    gbbq.write_gbbq(root, [
        (1, "600000", 20230301, 2, 100.0, 200.0, 130.0, 260.0),  # share counts, not actions
        *[(1, "600000", d, 1, f1, f2, f3, f4) for d, f1, f2, f3, f4 in TDX_EVENTS],
        (1, "600000", 20240301, 11, 0.0, 0.0, 0.5, 0.0),  # 扩缩股: not read
        (0, "600000", 20240301, 1, 9.0, 0.0, 0.0, 0.0),  # another market's code
    ])
    p = kdist.get_provider("tdx", root=str(root))
    report = kdist.ingest(["600000.SH"], start="2023-01-01", end="2024-12-31", provider=p,
                          db=db, client="sync")
    assert report.symbols_ok == 1 and report.actions_new == ["600000.SH"]
    assert len(kdist.corporate_actions(db)) == 4

    # mootdx's (and hikyuu's) forward adjustment, from the raw closes and the per-10 figures:
    # preclose = (close(t-1) x 10 - 分红 + 配股 x 配股价) / (10 + 配股 + 送转股), and every
    # price times the product over later ex-dates of preclose / close(t-1).
    xdxr = pd.DataFrame(TDX_EVENTS, columns=["date", "fenhong", "peigujia", "songzhuangu",
                                             "peigu"])
    xdxr.index = pd.to_datetime(xdxr.pop("date").astype(str))
    frame = raw.set_index("ts")[PRICES].join(xdxr).fillna(0.0)
    preclose = (frame["close"].shift(1) * 10 - frame["fenhong"]
                + frame["peigu"] * frame["peigujia"]) / (10 + frame["peigu"]
                                                         + frame["songzhuangu"])
    step = (preclose.shift(-1) / frame["close"]).fillna(1.0)
    adj = step[::-1].cumprod()[::-1]
    total = 1 / np.prod(step)  # the product of close(t-1) / preclose over every ex-date
    qfq = kdist.load(db, "600000.SH", adjust="qfq")
    hfq = kdist.load(db, "600000.SH", adjust="hfq")
    for column in PRICES:
        np.testing.assert_allclose(qfq[column], frame[column] * adj, rtol=1e-9, atol=0)
        # hfq: qfq scaled by the whole product, 1 before the first ex-date.
        np.testing.assert_allclose(hfq[column], frame[column] * adj * total, rtol=1e-9, atol=0)
    assert not np.allclose(qfq["close"], raw["close"])
    # 4.14 per 10 read as 0.414 a share: the close before it adjusts to C - 0.414.
    before = (qfq["ts"] < "2024-07-19").to_numpy().nonzero()[0][-1]
    assert qfq["close"].iat[before] == pytest.approx(raw["close"].iat[before] - 0.414,
                                                     rel=1e-12)


# -- csv and parquet: an events-only file and a factors-only file ----------------------------------

#: 000001.SZ's events, per share, and the closes before them (pinned to round numbers).
FILE_EVENTS = [{"ex_date": "2023-03-01", "cash": 0.5},
               {"ex_date": "2023-06-01", "cash": 0.2, "bonus": 0.3},
               {"ex_date": "2023-09-01", "rights": 0.2, "rights_price": 8.5},
               {"ex_date": "2023-11-01", "split": 2.0}]
FILE_PINS = {"2023-02-28": 10.0, "2023-05-31": 13.0, "2023-08-31": 12.0, "2023-10-31": 20.0}
#: Each ex-date's step C / ref(e), worked by hand: 10 / (10 - 0.5); 13 / ((13 - 0.2) / 1.3);
#: 12 / ((12 + 0.2 x 8.5) / 1.2); 20 / (20 / 2).
FILE_STEPS = [10 / 9.5, 16.9 / 12.8, 14.4 / 13.7, 2.0]
#: 600000.SH's vendor factors (hfq), as given in a factors-only file.
FILE_FACTORS = {"2023-04-10": 1.05, "2023-08-15": 1.12, "2023-12-01": 1.2}


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_file_actions_derive_the_expected_prices(db, tmp_path, kind):
    root = tmp_path / "bars"
    (root / "actions").mkdir(parents=True)
    bars = {"000001.SZ": traded("2023-01-02", "2023-12-29", 9.0, 7, FILE_EVENTS, FILE_PINS),
            "600000.SH": traded("2023-01-02", "2023-12-29", 7.0, 8)}
    events = pd.DataFrame(FILE_EVENTS, columns=["ex_date", "cash", "bonus", "rights",
                                                "rights_price", "split"])
    factors = pd.DataFrame({"ex_date": list(FILE_FACTORS), "factor": list(FILE_FACTORS.values())})
    for symbol, frame in bars.items():
        frame = frame.rename(columns={"ts": "date"})
        if kind == "csv":
            frame.assign(date=frame["date"].dt.strftime("%Y-%m-%d")).to_csv(
                root / f"{symbol}.csv", index=False)
        else:
            frame.to_parquet(root / f"{symbol}.parquet", index=False)
    for symbol, actions in (("000001.SZ", events), ("600000.SH", factors)):
        if kind == "csv":
            actions.to_csv(root / "actions" / f"{symbol}.csv", index=False)  # NaN: empty
        else:
            actions.assign(ex_date=pd.to_datetime(actions["ex_date"])).to_parquet(
                root / "actions" / f"{symbol}.parquet", index=False)
    p = kdist.get_provider(kind, root=str(root), actions_pattern=f"actions/{{symbol}}.{kind}")
    report = kdist.ingest(list(bars), start="2023-01-01", end="2023-12-31", provider=p, db=db,
                          client="sync")
    assert report.symbols_ok == 2 and report.actions_new == ["000001.SZ", "600000.SH"]

    stored = kdist.corporate_actions(db).set_index("symbol")
    cumulative = np.cumprod(FILE_STEPS)
    np.testing.assert_allclose(stored.loc["000001.SZ", "factor"], cumulative, rtol=1e-12)
    assert set(stored.loc["000001.SZ", "factor_from"]) == {"events"}
    assert stored.loc["600000.SH", "factor"].tolist() == list(FILE_FACTORS.values())
    assert set(stored.loc["600000.SH", "factor_from"]) == {"vendor"}

    for symbol, ex_dates, levels in (
            ("000001.SZ", [e["ex_date"] for e in FILE_EVENTS], cumulative),
            ("600000.SH", list(FILE_FACTORS), list(FILE_FACTORS.values()))):
        raw = kdist.load(db, symbol)
        pd.testing.assert_frame_equal(raw[PRICES], bars[symbol][PRICES])
        factor = level_at(raw["ts"], pd.to_datetime(ex_dates), levels)
        hfq = kdist.load(db, symbol, adjust="hfq")
        qfq = kdist.load(db, symbol, adjust="qfq")
        for column in PRICES:
            np.testing.assert_allclose(hfq[column], raw[column] * factor, rtol=1e-12, atol=0)
            np.testing.assert_allclose(qfq[column], raw[column] * factor / levels[-1],
                                       rtol=1e-12, atol=0)
    # By hand: the close before the split, 20.00, is 10.00 forward-adjusted (its reference
    # price) and 20 x the first three steps backward-adjusted; before the first factor of
    # 600000.SH, qfq is raw / 1.2 and hfq is raw.
    qfq = kdist.load(db, "000001.SZ", adjust="qfq").set_index("ts")["close"]
    hfq = kdist.load(db, "000001.SZ", adjust="hfq").set_index("ts")["close"]
    assert qfq["2023-10-31"] == pytest.approx(10.0, rel=1e-12)
    assert hfq["2023-10-31"] == pytest.approx(20 * 10 / 9.5 * 16.9 / 12.8 * 14.4 / 13.7,
                                              rel=1e-12)
    assert qfq["2023-02-28"] == pytest.approx(10.0 / cumulative[-1], rel=1e-12)
    first = kdist.load(db, "600000.SH", end="2023-04-07")
    early = kdist.load(db, "600000.SH", adjust="qfq", end="2023-04-07")
    np.testing.assert_allclose(early["close"], first["close"] / 1.2, rtol=1e-12)
    pd.testing.assert_frame_equal(kdist.load(db, "600000.SH", adjust="hfq", end="2023-04-07"),
                                  first)


# -- synthetic: the whole default universe ---------------------------------------------------------


def test_synthetic_universe_derives_its_own_adjusted_bars(db):
    p = kdist.get_provider("synthetic")  # actions=True by default
    symbols = p.list_symbols()
    assert len(symbols) == 100
    for adjust in ("none", "qfq", "hfq"):
        done = kdist.ingest(symbols, start="2021-01-01", end="2023-12-31", adjust=adjust,
                            provider=p, db=db, client="sync")
        assert done.symbols_ok == 100
    assert kdist.corporate_actions(db)["symbol"].nunique() == 100
    found = kdist.check_adjust(db, tolerance=0.01)
    only_clean_checks(found, [(s, a) for s in symbols for a in ("qfq", "hfq")])
    assert (found["bars"] == len(kdist.load(db, symbols[0]))).all()
    assert found["max_diff"].max() > 0.001  # the vendor's rounding, compared for real
