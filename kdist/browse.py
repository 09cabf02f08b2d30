"""The browse panel: look at stored bars without writing code.

:class:`BrowsePanel` reads what is stored (:func:`kdist.catalog`, :func:`kdist.load`) and
shows one series as an interactive chart (:func:`kdist.plotting.interactive`), or as a picture
(:func:`kdist.plotting.candles`), over a paged table of its bars. ``from kdist.widgets import
BrowsePanel`` finds it too.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import html
import io
from pathlib import Path

import numpy as np
import pandas as pd

from ._panels import (
    W,
    close_tree,
    date_or_none,
    error_html,
    error_line,
    settle_tooltips,
    status_html,
)
from .errors import KdistError, UsageError
from .schema import normalise_symbol
from .store import DEFAULT_DB

__all__ = ["BrowsePanel", "CHARTS"]

#: What the panel can draw: an interactive chart (bokeh), or a picture (PNG, matplotlib).
CHARTS = ("interactive", "png")
#: Height in pixels of the interactive chart, both panes.
CHART_HEIGHT = 440

#: The table's look: aligned numbers, padding, a header that stays put, quiet stripes. The
#: colours are JupyterLab's theme variables (light and dark), with plain ones elsewhere.
TABLE_CSS = """<style>
.kdist-bars {border-collapse: collapse; font-size: 12px; font-variant-numeric: tabular-nums;}
.kdist-bars th, .kdist-bars td {padding: 3px 12px; text-align: right; white-space: nowrap;}
.kdist-bars th:first-child, .kdist-bars td:first-child {text-align: left;}
.kdist-bars th {position: sticky; top: 0; font-weight: 600;
  background: var(--jp-layout-color1, #fff);
  border-bottom: 1px solid var(--jp-border-color1, #bdbdbd);}
.kdist-bars tbody tr:nth-child(even) {background: var(--jp-layout-color2, #f5f5f5);}
</style>"""


class BrowsePanel(W.VBox):
    """A panel to look at stored bars: pick symbol, freq, adjust and dates; see a candlestick
    chart with volume and a table of the bars.

    The chart is interactive (zoom with the wheel or a box, pan, reset, hover for a bar's
    prices and volume); past 400 bars it shows weekly or monthly bars and says so in its
    title. Where a front end shows no interactive chart, pick "picture" for a PNG.

    Parameters
    ----------
    db
        Path of the DuckDB file (opened read-only, only while reading).
    symbol
        The symbol shown first (default: the first stored one).
    rows
        How many bars a page of the table lists (the newest first).
    chart
        ``"interactive"`` (bokeh) or ``"png"`` (a picture drawn by matplotlib).

    Attributes
    ----------
    bars
        The bars shown, as :func:`kdist.load` returned them.
    figure
        What drew the chart: a bokeh ``GridPlot`` (interactive) or a matplotlib ``Figure``
        (closed once rendered), or None.
    """

    def __init__(self, db=DEFAULT_DB, *, symbol=None, rows=20, chart="interactive"):
        if chart not in CHARTS:
            raise UsageError(f"chart must be one of {', '.join(map(repr, CHARTS))}, "
                             f"not {chart!r}")
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
            raise UsageError(f"rows must be a positive integer, not {rows!r}")
        self.db = Path(db)
        self.rows = rows
        self.page = 0
        self.catalog = None
        self.derivable: set[str] = set()
        self.bars = None
        self.figure = None
        self._summary = ""
        self._build_controls(chart)
        super().__init__([
            W.HTML("<h3 style='margin:0'>kdist bars</h3>"),
            W.HBox([self.symbol, self.freq, self.adjust, self.refresh_button]),
            W.HBox([self.start_date, self.end_date, self.chart_kind]),
            self.status, self.chart, self.picture, self.table,
            W.HBox([self.newer_button, self.page_label, self.older_button],
                   layout=W.Layout(align_items="center")),
        ])
        for widget, name in [
            (self, "kdist-browse-panel"), (self.status, "kdist-browse-status"),
            (self.table, "kdist-bars-table"), (self.chart, "kdist-chart"),
            (self.picture, "kdist-chart-png"), (self.page_label, "kdist-bars-page")]:
            widget.add_class(name)
        settle_tooltips(self)
        self._quiet = False
        self._wire()
        self.refresh(symbol)

    def _build_controls(self, chart: str):
        self.symbol = W.Dropdown(description="Symbol", tooltip="A stored symbol")
        self.freq = W.Dropdown(description="Freq", tooltip="Bar lengths stored for the symbol")
        self.adjust = W.Dropdown(description="Adjust",
                                 tooltip="Price adjustments stored for the symbol and freq")
        self.start_date = W.DatePicker(description="From", tooltip="First bar shown")
        self.end_date = W.DatePicker(description="To", tooltip="Last bar shown")
        self.refresh_button = W.Button(description="Refresh", icon="refresh",
                                       tooltip="Read the catalog again after an import")
        self.chart_kind = W.ToggleButtons(
            options=[("interactive", "interactive"), ("picture", "png")], value=chart,
            description="Chart", tooltip="How the chart is drawn",
            tooltips=["Zoom, pan and read each bar's values (bokeh)",
                      "A PNG picture (matplotlib), where the interactive chart does not show"])
        self.status = W.HTML()
        self.chart = W.HTML(layout=W.Layout(width="100%"))
        self.picture = W.Image(format="png", layout=W.Layout(max_width="100%"))
        self.table = W.HTML(layout=W.Layout(max_height="420px", overflow="auto"))
        self.newer_button = W.Button(description="Newer", icon="chevron-left",
                                     tooltip="The previous page: newer bars", disabled=True)
        self.older_button = W.Button(description="Older", icon="chevron-right",
                                     tooltip="The next page: older bars", disabled=True)
        self.page_label = W.Label()

    def _wire(self):
        self.symbol.observe(lambda _: self._choose_series(), "value")
        self.freq.observe(lambda _: self._choose_series(), "value")
        self.adjust.observe(lambda _: self._choose_range(), "value")
        for picker in (self.start_date, self.end_date):
            picker.observe(lambda _: self.show(), "value")
        self.chart_kind.observe(lambda _: self._draw_chart(), "value")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.newer_button.on_click(lambda _: self.turn(-1))
        self.older_button.on_click(lambda _: self.turn(+1))

    def refresh(self, symbol=None):
        """Read the catalog again (after an import) and show the chosen symbol."""
        from .store import Store

        try:
            if not self.db.exists():
                raise UsageError(f"{self.db} does not exist yet: import some bars first")
            with Store(self.db, read_only=True) as store:
                self.catalog = store.catalog()
                # qfq and hfq derived from raw bars and corporate actions, offered beside
                # what is stored.
                self.derivable = store.derivable()
        except KdistError as exc:
            self.catalog = None
            self.status.value = error_html(exc)
            return
        if self.catalog.empty:
            self._say(f"No bars stored in {html.escape(str(self.db))} yet.", error=True)
            return
        symbols = sorted(self.catalog["symbol"].unique())
        if symbol is not None:
            symbol = normalise_symbol(symbol)
            if symbol not in symbols:
                raise UsageError(
                    f"{symbol} is not stored in {self.db}; stored: {', '.join(symbols[:5])}"
                    + (f" and {len(symbols) - 5} more" if len(symbols) > 5 else "")
                )
        keep = symbol or (self.symbol.value if self.symbol.value in symbols else symbols[0])
        with self._hold():
            self.symbol.options = symbols
            self.symbol.value = keep
        self._choose_series()

    @contextlib.contextmanager
    def _hold(self):
        """Change several controls without redrawing after each one."""
        self._quiet = True
        try:
            yield
        finally:
            self._quiet = False

    def _series(self):
        c = self.catalog
        return c[c["symbol"] == self.symbol.value]

    def _choose_series(self):
        if self._quiet or self.catalog is None:
            return
        series = self._series()
        with self._hold():
            freqs = sorted(series["freq"].unique())
            self.freq.options = freqs
            if self.freq.value not in freqs:
                self.freq.value = "1d" if "1d" in freqs else freqs[0]
            adjusts = set(series.loc[series["freq"] == self.freq.value, "adjust"])
            if "none" in adjusts and self.symbol.value in self.derivable:
                adjusts |= {"qfq", "hfq"}
            adjusts = sorted(adjusts)
            self.adjust.options = adjusts
            if self.adjust.value not in adjusts:
                self.adjust.value = "none" if "none" in adjusts else adjusts[0]
        self._choose_range()

    def _choose_range(self):
        if self._quiet or self.catalog is None:
            return
        s = self._series()
        s = s[s["freq"] == self.freq.value]
        # A derived series spans its raw bars.
        row = s[s["adjust"] == (self.adjust.value if self.adjust.value in set(s["adjust"])
                                else "none")].iloc[0]
        first, last = date_or_none(row["first"], "first"), date_or_none(row["last"], "last")
        with self._hold():
            # The last year by default: a readable chart; widen "From" for more.
            self.start_date.value = max(first, last - dt.timedelta(days=365))
            self.end_date.value = last
        self.show()

    def show(self):
        """Load the chosen bars and draw the chart and the first page of the table."""
        if self._quiet or self.catalog is None or self.symbol.value is None:
            return
        from .store import load

        try:
            self.bars = load(self.db, self.symbol.value, start=self.start_date.value,
                             end=self.end_date.value, freq=self.freq.value,
                             adjust=self.adjust.value)
        except KdistError as exc:
            self.status.value = error_html(exc)
            return
        self.page = 0
        bars = self.bars
        if bars.empty:
            self._say("No bars in that range.", error=True)
            self._clear_chart()
            self._draw_table()
            return
        self._summary = (
            f"{html.escape(self.symbol.value)} {self.freq.value} {self.adjust.value}: "
            f"{len(bars):,} bars from {bars['ts'].iloc[0]:%Y-%m-%d} to "
            f"{bars['ts'].iloc[-1]:%Y-%m-%d}, source {html.escape(str(bars['source'].iloc[0]))}"
        )
        self._say(self._summary)
        self._draw_chart()
        self._draw_table()

    # -- the chart --------------------------------------------------------------------------

    def _clear_chart(self):
        self.chart.value, self.picture.value, self.figure = "", b"", None
        self._show_only(None)

    def _draw_chart(self):
        """Draw the bars as the chart choice says; a failed interactive chart falls back to
        the picture, and the status line says why."""
        if self.bars is None or self.bars.empty:
            return
        self._clear_chart()
        title = f"{self.symbol.value} {self.freq.value}"
        fallback = ""
        if self.chart_kind.value == "interactive":
            try:
                return self._draw_interactive(title)
            except Exception as exc:  # an observer's error would only reach a hidden log
                why = html.escape(error_line(exc), quote=False)
                fallback = f"<br>No interactive chart ({why}): showing a picture."
        try:
            self._draw_picture(title)
        except Exception as exc:
            self._clear_chart()
            self.status.value = error_html(exc)
            return
        if fallback:
            self._say(self._summary + fallback)

    def _draw_interactive(self, title: str):
        """The bokeh chart as a page of its own in an iframe: it needs no notebook extension
        and no network (BokehJS is inline), and looks the same in any front end that runs
        JavaScript."""
        from bokeh.embed import file_html
        from bokeh.resources import INLINE

        from .plotting import interactive

        self.figure = interactive(self.bars, title=title, freq=self.freq.value,
                                  height=CHART_HEIGHT)
        page = file_html(self.figure, INLINE, title=title)
        self.chart.value = (
            f"<iframe class='kdist-chart-frame' title='{html.escape(title)}' "
            f"style='width:100%; height:{CHART_HEIGHT + 12}px; border:0' "
            f"srcdoc=\"{html.escape(page, quote=True)}\"></iframe>"
        )
        self._show_only(self.chart)

    def _draw_picture(self, title: str):
        """A PNG in an Image widget: the same in a kernel, any browser and a headless test,
        whatever matplotlib backend is active."""
        from .plotting import candles

        self.figure = candles(self.bars, title=title)  # a UsageError without matplotlib
        import matplotlib.pyplot as plt

        buffer = io.BytesIO()
        try:
            self.figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
        finally:
            # pyplot tracks the figures it made: forget it, so charts drawn for the panel
            # do not pile up (or show a second time under the inline backend).
            plt.close(self.figure)
        self.picture.value = buffer.getvalue()
        self._show_only(self.picture)

    def _show_only(self, widget):
        for each in (self.chart, self.picture):
            each.layout.display = None if each is widget else "none"

    # -- the table --------------------------------------------------------------------------

    def turn(self, pages: int):
        """Show the page ``pages`` further on (older bars; negative: newer)."""
        self.page += pages
        self._draw_table()

    def _draw_table(self):
        n = 0 if self.bars is None else len(self.bars)
        last_page = max(0, (n - 1) // self.rows)
        self.page = min(max(self.page, 0), last_page)
        first = self.page * self.rows
        newest = self.bars.iloc[::-1].iloc[first:first + self.rows] if n else None
        self.table.value = "" if newest is None else _table_html(newest)
        self.page_label.value = (
            f"bars {first + 1:,}-{first + len(newest):,} of {n:,}, newest first" if n else "")
        self.newer_button.disabled = self.page == 0
        self.older_button.disabled = self.page >= last_page

    def _say(self, text: str, error: bool = False):
        self.status.value = status_html(text, error)

    def close(self):
        """Close the panel and every widget in it."""
        close_tree(self)


#: Decimals of the table's numbers: the fewest of the first that show every value on the page
#: exactly, else the second. Prices have cents (or mils: funds, bonds); whole volumes and
#: amounts have none (``2,440,100``, not ``2,440,100.00``).
DECIMALS = {"open": ((2, 3), 2), "high": ((2, 3), 2), "low": ((2, 3), 2), "close": ((2, 3), 2),
            "volume": ((0,), 2), "amount": ((0,), 2)}


def _table_html(bars: pd.DataFrame) -> str:
    """Bars as an HTML table: the date (and time), prices, volume and amount."""
    stamps = pd.DatetimeIndex(bars["ts"])
    intraday = bool((stamps != stamps.normalize()).any())
    columns = {("time" if intraday else "date"):
               stamps.strftime("%Y-%m-%d %H:%M" if intraday else "%Y-%m-%d")}
    for name, (exact, otherwise) in DECIMALS.items():
        if name in bars.columns:
            values = bars[name].to_numpy(dtype=float)
            digits = _decimals(values, exact, otherwise)
            columns[name] = ["" if np.isnan(v) else f"{v:,.{digits}f}" for v in values]
    head = "".join(f"<th>{name}</th>" for name in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>"
        for row in zip(*columns.values())
    )
    return (f"{TABLE_CSS}<table class='kdist-bars'><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>")


def _decimals(values: np.ndarray, exact: tuple[int, ...], otherwise: int) -> int:
    """The fewest of ``exact`` decimals that show every value exactly, else ``otherwise``."""
    finite = values[np.isfinite(values)]
    for digits in exact:
        if np.allclose(finite, np.round(finite, digits), rtol=0, atol=1e-6):
            return digits
    return otherwise
