"""An example kdist provider plug-in: simple deterministic daily bars for a small universe.

It uses only kdist's public API and is registered through the ``kdist.providers`` entry
point in ``pyproject.toml``; kdist finds it once the package is installed. The bar of
``(symbol, day)`` depends only on the symbol, the day and the ``base`` option.
"""

from __future__ import annotations

import zlib

import pandas as pd

from kdist import Adjust, Freq, Provider
from kdist.errors import SymbolNotFoundError
from kdist.providers import Option
from kdist.schema import BAR_COLUMNS, to_date

__all__ = ["ExampleProvider"]
__version__ = "0.1.0"

#: The symbols this provider knows; any other raises SymbolNotFoundError.
UNIVERSE = ("000001.SZ", "600000.SH", "AAPL")


class ExampleProvider(Provider):
    """Deterministic daily bars, every weekday, for the symbols in ``UNIVERSE``."""

    name = "example"
    description = "Example plug-in: deterministic daily bars for 000001.SZ, 600000.SH, AAPL"
    url = "https://example.invalid/kdist-example-plugin"
    freqs = (Freq.DAY,)
    adjusts = (Adjust.NONE,)
    options = {"base": Option(float, 10.0, "price level of the first day of 2000")}

    def list_symbols(self) -> list[str]:
        return list(UNIVERSE)

    def fetch(self, symbol, start, end, freq="1d", adjust="none") -> pd.DataFrame:
        self.check(freq=Freq.parse(freq), adjust=Adjust.parse(adjust), start=None, end=None)
        if symbol not in UNIVERSE:
            raise SymbolNotFoundError(
                f"Provider 'example' does not know {symbol}; it serves {', '.join(UNIVERSE)}",
                symbol=symbol,
            )
        days = pd.bdate_range(to_date(start), to_date(end))  # every weekday, [start, end]
        if len(days) == 0:
            return pd.DataFrame(columns=list(BAR_COLUMNS))
        step = (days - pd.Timestamp("2000-01-03")).days.to_numpy() % 10
        close = self.base + zlib.crc32(symbol.encode()) % 100 / 10 + step * 0.1
        open_ = close - 0.05
        volume = 1_000.0 * (step + 1)
        return pd.DataFrame(
            {
                "ts": days,
                "open": open_.round(2),
                "high": (close + 0.1).round(2),
                "low": (open_ - 0.1).round(2),
                "close": close.round(2),
                "volume": volume,
                "amount": (volume * close).round(2),
            }
        )

    def version(self) -> str:
        return __version__
