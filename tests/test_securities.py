"""Tests of kdist.securities: the code table, kinds, units, and symbol validation built on it.

The table's cases are real securities (listed codes of each exchange and kind) and real
mistakes (a ChiNext code with .SH, five digits, unknown suffixes); symbol validation is
checked where users meet it: parse_symbols, and the exit code of ``kdist ingest``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import kdist
from kdist.cli import main
from kdist.errors import InvalidSymbolError, UsageError
from kdist.providers import get_provider
from kdist.schema import normalise_symbol, parse_symbols
from kdist.securities import (
    CODE_TABLE,
    LISTED_KINDS,
    MEANING,
    YAHOO_SUFFIXES,
    Kind,
    exchange_of,
    kind_of,
    kind_of_code,
    parse_kinds,
    split_symbol,
    tdx_units,
    volume_factor_from_amount,
)

# -- the code table ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("symbol", "kind"),
    [
        ("600000.SH", "stock"), ("601398.SH", "stock"), ("603288.SH", "stock"),
        ("605499.SH", "stock"), ("688981.SH", "stock"), ("689009.SH", "stock"),
        ("000001.SZ", "stock"), ("001979.SZ", "stock"), ("002594.SZ", "stock"),
        ("003816.SZ", "stock"), ("300750.SZ", "stock"), ("301269.SZ", "stock"),
        ("830799.BJ", "stock"), ("430047.BJ", "stock"), ("873527.BJ", "stock"),
        ("920001.BJ", "stock"),
        ("900901.SH", "bshare"), ("200002.SZ", "bshare"),
        ("510050.SH", "fund"), ("512880.SH", "fund"), ("520830.SH", "fund"),
        ("530000.SH", "fund"), ("560010.SH", "fund"), ("588000.SH", "fund"),
        ("501018.SH", "fund"), ("508000.SH", "fund"), ("159915.SZ", "fund"),
        ("161725.SZ", "fund"), ("180101.SZ", "fund"), ("184801.SZ", "fund"),
        ("110059.SH", "bond"), ("111010.SH", "bond"), ("113011.SH", "bond"),
        ("118000.SH", "bond"), ("132018.SH", "bond"), ("019547.SH", "bond"),
        ("240001.SH", "bond"), ("123107.SZ", "bond"), ("127045.SZ", "bond"),
        ("128136.SZ", "bond"), ("101901.SZ", "bond"), ("149999.SZ", "bond"),
        ("204001.SH", "repo"), ("204007.SH", "repo"), ("131810.SZ", "repo"),
        ("000001.SH", "index"), ("000300.SH", "index"), ("000688.SH", "index"),
        ("399001.SZ", "index"), ("399006.SZ", "index"), ("395001.SZ", "index"),
        ("899050.BJ", "index"),
        ("880001.SH", "block"), ("880006.SH", "block"), ("881001.SH", "block"),
        ("999999.SH", "alias"), ("999998.SH", "alias"), ("999997.SH", "alias"),
        ("360001.SH", "preferred"), ("140001.SZ", "preferred"),
        ("580026.SH", "warrant"), ("031005.SZ", "warrant"),
        # Codes no exchange uses, or another exchange's.
        ("300750.SH", None), ("600000.SZ", None), ("000001.BJ", None), ("700001.SH", None),
        ("201001.SZ", None), ("510050.SZ", None), ("899050.SH", None), ("AAPL", None),
        ("0700.HK", None),
    ],
)
def test_kind_of_real_codes(symbol, kind):
    assert kind_of([symbol]).tolist() == [kind]
    code, _, exchange = symbol.partition(".")
    found = kind_of_code(code, exchange) if exchange in ("SH", "SZ", "BJ") else None
    assert (found.value if found else None) == kind


def test_kind_of_is_vectorised_and_keeps_order():
    symbols = np.array(["600000.SH", "AAPL", "000001.SH", "600000.SH", "113011.SH"] * 1000)
    kinds = kind_of(symbols)
    assert kinds.dtype == object and len(kinds) == 5000
    assert kinds[:5].tolist() == ["stock", None, "index", "stock", "bond"]
    assert kind_of([]).tolist() == [] and kind_of("131810.SZ").tolist() == ["repo"]


def test_the_table_has_one_kind_per_prefix_and_meanings_for_every_kind():
    keys = [(exchange, prefix) for exchange, prefix, _, _ in CODE_TABLE]
    assert len(keys) == len(set(keys))
    assert all(p.isdigit() and 1 <= len(p) <= 6 for _, p, _, _ in CODE_TABLE)
    assert set(MEANING) == set(Kind)
    assert LISTED_KINDS == set(Kind) - {Kind.BLOCK, Kind.ALIAS}


@pytest.mark.parametrize(
    ("code", "exchange"),
    [("000001", "SZ"), ("600000", "SH"), ("300750", "SZ"), ("830799", "BJ"),
     ("430047", "BJ"), ("920001", "BJ"), ("510050", "SH"), ("159915", "SZ"),
     ("113011", "SH"), ("127045", "SZ"), ("131810", "SZ"), ("204001", "SH"),
     ("000300", "SZ"), ("899050", "BJ"), ("900901", "SH"), ("200002", "SZ"),
     ("700001", None), ("12345", None)],
)
def test_a_bare_code_is_guessed_onto_the_exchange_that_lists_it(code, exchange):
    assert exchange_of(code) == exchange


def test_split_symbol():
    assert split_symbol("600000.SH") == ("600000", "SH")
    assert split_symbol("0700.HK") is None and split_symbol("AAPL") is None
    assert split_symbol("60000.SH") is None


def test_parse_kinds():
    assert parse_kinds("listed") == LISTED_KINDS
    assert parse_kinds("all") == set(Kind)
    assert parse_kinds(" Stock , index,") == {Kind.STOCK, Kind.INDEX}
    assert parse_kinds("listed,block") == LISTED_KINDS | {Kind.BLOCK}
    with pytest.raises(ValueError, match="'etf' is no kind.*listed, all, stock"):
        parse_kinds("etf")


# -- units ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "exchange", "scale", "volume", "decimals"),
    [
        (Kind.STOCK, "SH", 100, 1, 2), (Kind.STOCK, "BJ", 100, 1, 2),
        (Kind.FUND, "SZ", 1000, 1, 3), (Kind.BSHARE, "SH", 1000, 1, 3),
        (Kind.BSHARE, "SZ", 100, 1, 2), (Kind.BOND, "SH", 10000, 10, 3),
        (Kind.BOND, "SZ", 10000, 10, 3), (Kind.REPO, "SH", 10000, 10, 3),
        (Kind.INDEX, "SH", 100, 100, 2), (Kind.BLOCK, "SH", 100, 100, 2),
        (Kind.ALIAS, "SH", 100, 100, 2),
    ],
)
def test_tdx_units(kind, exchange, scale, volume, decimals):
    units = tdx_units(kind, exchange)
    assert (units.price_scale, units.volume_factor, units.decimals) == (scale, volume, decimals)


@pytest.mark.parametrize(
    ("kind", "close", "volume", "amount", "factor"),
    [
        # A stock in shares, then in 手 (an export set to count 手).
        (Kind.STOCK, 9.21, 115836600, 1075742252.0, 1),
        (Kind.STOCK, 9.21, 1158366, 1075742252.0, 100),
        # Bonds in bonds, then in 手 of 10 bonds.
        (Kind.BOND, 104.797, 3729680, 390870000.0, 1),
        (Kind.BOND, 104.797, 372968, 390870000.0, 10),
        # Indexes: ~13 yuan per share of the constituents; 1,315 per 手.
        (Kind.INDEX, 3267.16, 31354101200, 412345678901.0, 1),
        (Kind.INDEX, 3267.16, 313541012, 412345678901.0, 100),
        # Repo: 100 yuan per 张; 1,000 per 手 of 10.
        (Kind.REPO, 2.72, 10000000000, 1.0e12, 1),
        (Kind.REPO, 2.72, 1000000000, 1.0e12, 10),
        # Nothing to judge by, or no unit fits: the default.
        (Kind.STOCK, 9.21, 0, 0.0, 7),
        (Kind.STOCK, 9.21, 1000, 92100.0, 7),
        (None, 185.64, 82488700, 15313206000.0, 1),
    ],
)
def test_volume_factor_from_amount(kind, close, volume, amount, factor):
    got = volume_factor_from_amount(kind, [close] * 3, [volume] * 3, [amount] * 3, default=7)
    assert got == factor


def test_yahoo_suffixes_are_yfinances():
    # The table of yfinance's const._MIC_TO_YAHOO_SUFFIX, read where yfinance is installed.
    const = pytest.importorskip("yfinance.const")
    yahoo = {s for s in const._MIC_TO_YAHOO_SUFFIX.values() if s} - {"SS", "SZ"}
    assert yahoo == YAHOO_SUFFIXES


# -- symbols (issue 15 item 10) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("60000.SH", "six digits"),
        ("6000000.SH", "six digits"),
        ("60000", "six digits"),
        ("sh60000", "six digits"),
        ("600000.SX", "unknown suffix .SX"),
        ("AAPL.US", "US tickers have no suffix"),
        ("BRK.B", "BRK-B"),
        ("ABC.SH", "six digits"),
        ("300750.SH", "300750 is no Shanghai code; 300750.SZ is a Shenzhen stock"),
        ("600000.SZ", "600000.SH is a Shanghai stock"),
        ("510050.SZ", "510050.SH is a Shanghai fund"),
        ("000001.BJ", "no Beijing code"),
        ("700001", "no exchange lists code 700001"),
    ],
)
def test_malformed_or_out_of_range_symbols_are_refused_saying_why(bad, why):
    with pytest.raises(InvalidSymbolError, match=why) as info:
        normalise_symbol(bad)
    assert "use A-share codes like 000001.SZ or tickers like AAPL" in str(info.value)
    with pytest.raises(InvalidSymbolError) as info:
        parse_symbols(["600000.SH", bad])
    assert info.value.symbols == [bad] and why in str(info.value)
    assert isinstance(info.value, UsageError)


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [("113011", "113011.SH"), ("sh204001", "204001.SH"), ("131810.sz", "131810.SZ"),
     ("510050", "510050.SH"), ("899050", "899050.BJ"), ("VOD.L", "VOD.L"),
     ("7203.T", "7203.T"), ("RCI-B.TO", "RCI-B.TO"), ("880001.SH", "880001.SH")],
)
def test_valid_symbols(raw, canonical):
    assert normalise_symbol(raw) == canonical


def test_what_a_provider_knows_narrows_the_symbols():
    synthetic, yfinance = get_provider("synthetic"), kdist.providers.provider_class("yfinance")
    tdx, csv = get_provider("tdx", root="x"), get_provider("csv", root="x")
    # Synthetic accepts plain tickers and Yahoo's suffixes, as before; not made-up suffixes.
    assert parse_symbols(["AAPL", "BRK-B", "0700.HK"], provider=synthetic)[0] == [
        "AAPL", "BRK-B", "0700.HK",
    ]
    with pytest.raises(InvalidSymbolError, match="AAPL.US"):
        parse_symbols(["AAPL.US"], provider=synthetic)
    assert parse_symbols(["0700.HK", "VOD.L"], provider=yfinance)[0] == ["0700.HK", "VOD.L"]
    with pytest.raises(InvalidSymbolError, match="880001 is a TDX block code"):
        parse_symbols(["880001.SH"], provider=yfinance)
    # TDX reads A-share codes only (its own included); files may be named anything.
    with pytest.raises(InvalidSymbolError, match="provider 'tdx' has no .HK tickers"):
        parse_symbols(["0700.HK"], provider=tdx)
    assert parse_symbols(["880001.SH", "AAPL"], provider=tdx)[0] == ["880001.SH", "AAPL"]
    assert parse_symbols(["AAPL.US", "0700.HK"], provider=csv)[0] == ["AAPL.US", "0700.HK"]
    with pytest.raises(InvalidSymbolError, match="six digits"):
        parse_symbols(["60000.SH"], provider=csv)


def test_parse_symbols_skip_invalid_keeps_the_valid():
    assert parse_symbols(["60000.SH", "600000.SH", "AAPL.US"], skip_invalid=True) == (
        ["600000.SH"], ["60000.SH", "AAPL.US"],
    )


@pytest.mark.parametrize("bad", ["60000.SH", "6000000.SH", "600000.SX", "AAPL.US", "60000"])
def test_ingest_refuses_bad_symbols_with_exit_2_and_writes_nothing(capsys, tmp_path, bad):
    db = tmp_path / "k.duckdb"
    code = main(["ingest", bad, "--start", "2024-01-02", "--end", "2024-01-05", "--db",
                 str(db), "--scheduler", "sync"])
    _, err = capsys.readouterr()
    assert code == 2
    assert bad in err and "use A-share codes like 000001.SZ" in err
    assert len(err.strip().splitlines()) == 1
    assert not db.exists()


def test_the_right_symbols_are_still_imported(tmp_path):
    report = kdist.ingest(["sh600000", "600000.SS", "AAPL", "BRK-B", "0700.HK"],
                          start="2024-01-02", end="2024-01-05", db=str(tmp_path / "k.duckdb"),
                          client="sync")
    assert report.symbols_ok == 4 and report.symbols_failed == 0
    assert math.isfinite(report.rows_written) and report.rows_written > 0


def test_reads_take_names_an_older_kdist_stored():
    # Imports refuse 60000.SH; a database written before may hold it, and stays readable.
    assert parse_symbols(["S00001.SZ", "60000.sh", "sz000001", "a/b"], strict=False,
                         skip_invalid=True) == (["S00001.SZ", "60000.SH", "000001.SZ"], ["a/b"])
    assert normalise_symbol("AAPL.US", strict=False) == "AAPL.US"
    with pytest.raises(InvalidSymbolError):
        normalise_symbol("'; DROP TABLE kline; --", strict=False)
