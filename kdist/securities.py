"""Kinds of China A-share market securities: one code table, and what each kind's numbers mean.

A six-digit code says what a security is only together with its exchange: ``000001`` is Ping
An Bank in Shenzhen and the SSE Composite index in Shanghai. :data:`CODE_TABLE` maps
``(exchange, code prefix)`` to a :class:`Kind` (the longest matching prefix wins) and is the
only place kdist knows the exchanges' code ranges: symbol validation
(:func:`kdist.schema.normalise_symbol`), the guess of a bare code's exchange, the TDX
reader's units and ``kdist status``'s kind column all read it.

Sources of the table (read 2026-12): the SSE's code allocation guide (上海证券交易所证券
交易业务指南第4号——证券代码段分配指南, 2024 revision 2, and the 2009 分配规则 before it:
first digit 0 indexes/government bonds, 1 bonds, 2 bonds and repo, 3 preferred shares, 5
funds/REITs/warrants, 6 A shares and depositary receipts, 7 non-trading, 9 B shares; 530xxx
ETFs from 2024), the SZSE's code ranges (00 main board, 03 warrants, 10-14 bonds with 131xxx
pledged repo and 140xxx preferred shares, 15/16/18 funds, 200 B shares, 30 ChiNext, 39
indexes), the BSE's (43/83/87 stocks that kept their NEEQ codes, 920xxx stocks since 2024,
899xxx indexes), and the TDX client's own codes read by pytdx, mootdx and hikyuu (880xxx and
881xxx blocks, 999999/999998/... aliases of SSE indexes). Ranges not in use (7xxxxx
subscription codes, 201xxx.SZ ...) are no security: a symbol there is refused.

Units. Every kind stores ``open high low close`` as the exchange quotes them, ``amount`` in the
quote currency and ``volume`` in the kind's unit (:data:`MEANING`): shares for stocks, B
shares, preferred shares and warrants, fund units for funds, bonds of 100 yuan face value for
bonds, 100-yuan units of money lent (张) for repo, and shares for indexes and TDX blocks. A
repo's "price" is its annualised rate in percent.

TDX's files (:func:`tdx_units`) hold the price TDX keeps internally: in ``.day`` files as an
integer, ``10**decimals`` times it (2 or 3 decimals), in minute files as float32. TDX holds
bonds and repo per 1,000 yuan face value (10x the quote: 113011.SH closing at 104.797 is the
integer 1047970) and counts them in 手 of 10; indexes, blocks and aliases count 手 of 100
shares.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

import numpy as np

__all__ = [
    "CODE_TABLE",
    "EXCHANGES",
    "EXCHANGE_NAMES",
    "Kind",
    "LISTED_KINDS",
    "MEANING",
    "TdxUnits",
    "YAHOO_SUFFIXES",
    "exchange_of",
    "kind_of",
    "kind_of_code",
    "parse_kinds",
    "split_symbol",
    "tdx_units",
    "volume_factor_from_amount",
]

EXCHANGES = ("SH", "SZ", "BJ")
EXCHANGE_NAMES = {"SH": "Shanghai", "SZ": "Shenzhen", "BJ": "Beijing"}


class Kind(str, Enum):
    """What a security is; its value is what ``kdist status`` shows."""

    STOCK = "stock"  # A shares, STAR, ChiNext, Beijing, depositary receipts
    BSHARE = "bshare"  # B shares: Shanghai in US dollars, Shenzhen in Hong Kong dollars
    PREFERRED = "preferred"
    FUND = "fund"  # ETFs, LOFs, closed-end funds, REITs
    WARRANT = "warrant"
    BOND = "bond"  # convertible, exchangeable, government, corporate bonds
    REPO = "repo"  # bond repurchase: the "price" is a rate in percent
    INDEX = "index"
    BLOCK = "block"  # TDX's own sector and statistics indexes (880xxx, 881xxx)
    ALIAS = "alias"  # TDX's second codes for SSE indexes (999999 is 000001.SH)


#: Kinds an exchange lists; TDX's blocks and aliases are the TDX client's own.
LISTED_KINDS = frozenset(Kind) - {Kind.BLOCK, Kind.ALIAS}

#: ``(exchange, code prefix, kind, what the range holds)``; the longest matching prefix wins.
CODE_TABLE: tuple[tuple[str, str, Kind, str], ...] = (
    # Shanghai
    ("SH", "00", Kind.BOND, "government bonds (001xxx, 009xxx)"),
    ("SH", "000", Kind.INDEX, "SSE and CSI indexes (000680-000689: STAR indexes)"),
    ("SH", "01", Kind.BOND, "government bonds"),
    ("SH", "02", Kind.BOND, "discount government bonds"),
    ("SH", "1", Kind.BOND, "corporate, enterprise, local government bonds, ABS"),
    ("SH", "110", Kind.BOND, "convertible bonds"),
    ("SH", "111", Kind.BOND, "convertible bonds"),
    ("SH", "113", Kind.BOND, "convertible bonds"),
    ("SH", "118", Kind.BOND, "STAR convertible bonds"),
    ("SH", "132", Kind.BOND, "exchangeable bonds"),
    ("SH", "2", Kind.BOND, "corporate bonds (24xxxx, 25xxxx since 2022)"),
    ("SH", "20", Kind.REPO, "bond repo (204xxx pledged repo: GC001 is 204001)"),
    ("SH", "360", Kind.PREFERRED, "preferred shares"),
    ("SH", "5", Kind.FUND, "ETFs (51-53, 56, 588/589), LOFs (501), closed-end funds, REITs (508)"),
    ("SH", "580", Kind.WARRANT, "warrants (until 2011)"),
    ("SH", "60", Kind.STOCK, "main board A shares (600-605)"),
    ("SH", "68", Kind.STOCK, "STAR Market (688) and its depositary receipts (689)"),
    ("SH", "880", Kind.BLOCK, "TDX sector and statistics indexes"),
    ("SH", "881", Kind.BLOCK, "TDX industry indexes"),
    ("SH", "900", Kind.BSHARE, "B shares, in US dollars"),
    ("SH", "9999", Kind.ALIAS, "TDX aliases of SSE indexes (999999: 000001.SH)"),
    # Shenzhen
    ("SZ", "00", Kind.STOCK, "main board A shares (000-004; 002 was the SME board)"),
    ("SZ", "03", Kind.WARRANT, "warrants (until 2011)"),
    ("SZ", "10", Kind.BOND, "government bonds"),
    ("SZ", "11", Kind.BOND, "corporate and enterprise bonds"),
    ("SZ", "12", Kind.BOND, "convertible (123, 127, 128) and exchangeable (120) bonds"),
    ("SZ", "123", Kind.BOND, "convertible bonds"),
    ("SZ", "127", Kind.BOND, "convertible bonds"),
    ("SZ", "128", Kind.BOND, "convertible bonds"),
    ("SZ", "13", Kind.BOND, "corporate bonds, ABS"),
    ("SZ", "131", Kind.REPO, "bond repo (131810 is R-001)"),
    ("SZ", "14", Kind.BOND, "corporate bonds"),
    ("SZ", "140", Kind.PREFERRED, "preferred shares"),
    ("SZ", "15", Kind.FUND, "ETFs (159), structured funds (150)"),
    ("SZ", "16", Kind.FUND, "LOFs"),
    ("SZ", "18", Kind.FUND, "closed-end funds (184), REITs (180)"),
    ("SZ", "200", Kind.BSHARE, "B shares, in Hong Kong dollars"),
    ("SZ", "30", Kind.STOCK, "ChiNext (300, 301, 302)"),
    ("SZ", "39", Kind.INDEX, "SZSE and CNI indexes (399xxx, 395xxx)"),
    # Beijing
    ("BJ", "43", Kind.STOCK, "stocks with NEEQ codes"),
    ("BJ", "81", Kind.BOND, "convertible bonds"),
    ("BJ", "83", Kind.STOCK, "stocks with NEEQ codes"),
    ("BJ", "87", Kind.STOCK, "stocks with NEEQ codes"),
    ("BJ", "899", Kind.INDEX, "BSE indexes (899050: BSE 50)"),
    ("BJ", "920", Kind.STOCK, "stocks with BSE codes (since 2024)"),
)

_BY_PREFIX: dict[tuple[str, str], Kind] = {(ex, p): kind for ex, p, kind, _ in CODE_TABLE}
_LONGEST = max(len(p) for _, p, _, _ in CODE_TABLE)

#: What ``open high low close``, ``volume`` and ``amount`` mean per kind (README's table).
MEANING: dict[Kind, tuple[str, str, str]] = {
    Kind.STOCK: ("yuan per share", "shares", "yuan"),
    Kind.BSHARE: ("US dollars (SH) or Hong Kong dollars (SZ) per share", "shares",
                  "the quote currency"),
    Kind.PREFERRED: ("yuan per share", "shares", "yuan"),
    Kind.FUND: ("yuan per unit", "units", "yuan"),
    Kind.WARRANT: ("yuan per warrant", "warrants", "yuan"),
    Kind.BOND: ("yuan per 100 yuan face value, as quoted", "bonds (100 yuan face value each)",
                "yuan"),
    Kind.REPO: ("annualised rate in percent (2.72 is 2.72%)",
                "units of 100 yuan lent (张)", "yuan lent"),
    Kind.INDEX: ("index points", "shares of the constituents", "yuan"),
    Kind.BLOCK: ("index points", "shares of the constituents", "yuan"),
    Kind.ALIAS: ("index points", "shares of the constituents", "yuan"),
}

#: Yahoo Finance's market suffixes (yfinance's ``_MIC_TO_YAHOO_SUFFIX`` and Yahoo's help page
#: "Exchanges and data providers"), the only non-A-share suffixes kdist accepts by default:
#: ``0700.HK``, ``VOD.L``, ``7203.T``. US tickers have none (``AAPL``, ``BRK-B``).
YAHOO_SUFFIXES = frozenset({
    "AE", "AQ", "AS", "AT", "AX", "BA", "BD", "BE", "BK", "BM", "BO", "BR", "CA", "CBT", "CL",
    "CME", "CMX", "CN", "CO", "CR", "DE", "DU", "F", "HA", "HE", "HK", "HM", "IC", "IL", "IR",
    "IS", "JK", "JO", "KL", "KQ", "KS", "KW", "L", "LS", "MC", "MI", "MU", "MX", "NE", "NS",
    "NX", "NYB", "NYM", "NZ", "OL", "PA", "PR", "PS", "QA", "RG", "RO", "SA", "SG", "SI", "SN",
    "SR", "ST", "SW", "T", "TA", "TI", "TL", "TO", "TW", "TWO", "V", "VI", "VN", "VS", "WA",
    "XA", "XC", "XD",
})


@lru_cache(maxsize=65536)
def kind_of_code(code: str, exchange: str) -> Kind | None:
    """Return the kind of ``code`` (six ASCII digits) on ``exchange``, None outside every range.

    Examples
    --------
    >>> kind_of_code("000001", "SH"), kind_of_code("000001", "SZ"), kind_of_code("300750", "SH")
    (<Kind.INDEX: 'index'>, <Kind.STOCK: 'stock'>, None)
    """
    if len(code) != 6 or not code.isascii() or not code.isdigit():
        return None
    exchange = exchange.upper()
    for n in range(min(_LONGEST, 6), 0, -1):
        kind = _BY_PREFIX.get((exchange, code[:n]))
        if kind is not None:
            return kind
    return None


def _match_length(code: str, exchange: str) -> int:
    return next((n for n in range(min(_LONGEST, 6), 0, -1) if (exchange, code[:n]) in _BY_PREFIX),
                0)


@lru_cache(maxsize=65536)
def exchange_of(code: str) -> str | None:
    """Guess the exchange of a bare six-digit code, or None when no exchange uses it.

    A stock wins (``000001`` is Ping An Bank, 000001.SZ, not the SSE index); otherwise the
    exchange whose range names the code most precisely (``113011``: a Shanghai convertible,
    ``131810``: Shenzhen repo, ``510050``: a Shanghai ETF).

    Examples
    --------
    >>> exchange_of("000001"), exchange_of("510050"), exchange_of("830799"), exchange_of("7")
    ('SZ', 'SH', 'BJ', None)
    """
    found = [(ex, kind_of_code(code, ex)) for ex in EXCHANGES]
    found = [(ex, kind) for ex, kind in found if kind is not None]
    if not found:
        return None
    stocks = [ex for ex, kind in found if kind is Kind.STOCK]
    if stocks:
        return stocks[0]
    # max keeps the first of equals: EXCHANGES is in the order of the old first-digit guess.
    return max(found, key=lambda pair: _match_length(code, pair[0]))[0]


def kind_of(symbols) -> np.ndarray:
    """Return the kind (its string value) of every canonical symbol, None for other tickers.

    Vectorised for catalog tables: each distinct symbol is looked up once.

    Parameters
    ----------
    symbols : str or iterable of str
        Canonical symbols (``600000.SH``, ``AAPL``).

    Returns
    -------
    numpy.ndarray
        Object array of the same length: ``"stock"``, ``"index"``, ... or None.

    Examples
    --------
    >>> kind_of(["600000.SH", "000001.SH", "113011.SH", "AAPL"]).tolist()
    ['stock', 'index', 'bond', None]
    """
    if isinstance(symbols, str):
        symbols = [symbols]
    values = np.asarray(list(symbols) if not isinstance(symbols, np.ndarray) else symbols,
                        dtype=object)
    if values.size == 0:
        return np.empty(0, dtype=object)
    unique, inverse = np.unique(values.astype(str), return_inverse=True)
    kinds = np.empty(len(unique), dtype=object)
    kinds[:] = [_kind_value(s) for s in unique]
    return kinds[inverse.reshape(-1)]


def _kind_value(symbol: str) -> str | None:
    parts = split_symbol(symbol)
    kind = kind_of_code(*parts) if parts else None
    return None if kind is None else kind.value


def split_symbol(symbol: str) -> tuple[str, str] | None:
    """Return ``(code, exchange)`` of a canonical A-share symbol, None for any other symbol.

    Examples
    --------
    >>> split_symbol("600000.SH"), split_symbol("0700.HK")
    (('600000', 'SH'), None)
    """
    code, dot, exchange = symbol.rpartition(".")
    if dot and exchange in EXCHANGES and len(code) == 6 and code.isascii() and code.isdigit():
        return code, exchange
    return None


def parse_kinds(text: str) -> frozenset[Kind]:
    """Parse a comma-separated list of kinds; ``listed`` (every exchange-listed kind), ``all``.

    Raises
    ------
    ValueError
        A word that is no kind; the message lists the words that are.
    """
    chosen: set[Kind] = set()
    for word in (w.strip().lower() for w in str(text).split(",")):
        if not word:
            continue
        if word == "listed":
            chosen |= LISTED_KINDS
        elif word == "all":
            chosen |= set(Kind)
        else:
            try:
                chosen.add(Kind(word))
            except ValueError:
                known = ", ".join(["listed", "all", *(k.value for k in Kind)])
                raise ValueError(f"{word!r} is no kind of security; use {known}") from None
    if not chosen:
        raise ValueError("no kind of security given; use e.g. listed, or stock,index")
    return frozenset(chosen)


# --- units ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TdxUnits:
    """How a TDX file holds one kind's numbers, and how kdist turns them into quotes.

    TDX keeps an internal price, ``quote_factor`` times the quote. ``.day`` files hold it
    times ``10**tdx_decimals`` as an integer (so the quote is the integer over
    :attr:`price_scale`), minute files as float32. Volume times ``volume_factor`` is the
    kind's unit; quotes from float32 are rounded to ``decimals``, the quote's tick.
    """

    kind: Kind
    #: Decimals of TDX's internal price: .day integers are that price times 10**tdx_decimals.
    tdx_decimals: int
    #: TDX's internal price / the quote (10 for bonds and repo, held per 1,000 yuan face).
    quote_factor: int
    #: Stored volume / TDX's volume (10 for bonds counted in 手 of 10, 100 for index 手).
    volume_factor: int
    #: Decimals of the quote's tick.
    decimals: int

    @property
    def price_scale(self) -> int:
        """Divisor of the ``.day`` integer prices."""
        return 10**self.tdx_decimals * self.quote_factor


def tdx_units(kind: Kind, exchange: str) -> TdxUnits:
    """Return how TDX stores ``kind`` on ``exchange`` (see the module docstring)."""
    exchange = exchange.upper()
    if kind in (Kind.INDEX, Kind.BLOCK, Kind.ALIAS):
        # Index volume is in 手: 000001.SH's amount / volume is ~1,300 yuan, 100 shares' worth.
        return TdxUnits(kind, 2, 1, 100, 2)
    if kind in (Kind.BOND, Kind.REPO):
        # TDX holds bonds per 手 of 10 bonds (1,000 yuan face): price and volume both 10x off
        # the quote, so amount = price x volume holds in either unit.
        return TdxUnits(kind, 3, 10, 10, 3)
    if kind in (Kind.FUND, Kind.WARRANT, Kind.PREFERRED):
        return TdxUnits(kind, 3, 1, 1, 3)
    if kind is Kind.BSHARE and exchange == "SH":
        return TdxUnits(kind, 3, 1, 1, 3)  # US dollars to 0.001
    return TdxUnits(kind, 2, 1, 1, 2)


#: Volume units a file may count in, per kind: shares or 手 of 100; bonds or 手 of 10.
_CANDIDATES = {
    Kind.BOND: (1, 10),
    Kind.REPO: (1, 10, 100),
}


def volume_factor_from_amount(kind: Kind | None, close, volume, amount, default: int) -> int:
    """Return the volume factor that makes a file's volume agree with its amount.

    A bar's amount is its volume times its average price, so ``amount / (close x volume)``
    is about 1 when volume counts shares (or bonds) and about 100 (10 for bonds) when it
    counts 手. Indexes have no price per share: their amount per share is the constituents'
    average price, a few to a few tens of yuan, so ``amount / volume`` of about 1,000 means
    手. Repo is priced by a rate: its amount per 张 is 100 yuan. The median over the bars
    decides; without usable bars, or when no unit fits within a factor of 3, ``default``.

    Parameters
    ----------
    kind
        The security's kind; None (a ticker) is read as a stock.
    close, volume, amount
        Arrays of the bars to judge by (prices as quoted).
    default
        The factor to use when the bars cannot tell.
    """
    close, volume, amount = (np.asarray(a, dtype="float64") for a in (close, volume, amount))
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = np.isfinite(close) & np.isfinite(volume) & np.isfinite(amount)
        ok &= (volume > 0) & (amount > 0) & (close > 0)
    if not ok.any():
        return default
    per_unit = amount[ok] / volume[ok]
    if kind in (Kind.INDEX, Kind.BLOCK, Kind.ALIAS):
        # An average A-share price of 10 yuan; shares give ~10, 手 ~1,000.
        ratio, candidates = float(np.median(per_unit)) / 10.0, (1, 100)
    elif kind is Kind.REPO:
        ratio, candidates = float(np.median(per_unit)) / 100.0, _CANDIDATES[Kind.REPO]
    else:
        ratio = float(np.median(per_unit / close[ok]))
        candidates = _CANDIDATES.get(kind, (1, 100))
    if not ratio > 0 or not math.isfinite(ratio):
        return default
    distance, best = min((abs(math.log10(ratio / m)), m) for m in candidates)
    return best if distance < math.log10(3) else default
