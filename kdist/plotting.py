"""Charts of stored bars: one symbol's K-line with a volume panel, static or interactive.

:func:`candles` turns a frame shaped like :func:`kdist.load` output into a matplotlib figure
for files and reports, built from a handful of array-backed artists (one collection for the
bodies, one for the wicks, one for the volume bars) so that thousands of bars draw quickly.
:func:`interactive` draws the same chart with bokeh for browsing: wheel and box zoom, pan,
reset, a hover read-out of each bar, and a volume pane that moves with the prices; past a few
hundred bars it draws weekly or monthly bars instead, and its title says so.

In both the x axis is the bar's position, not its time, so weekends, holidays and the midday
break leave no gaps; the tick labels show the bars' dates. matplotlib is optional (``pip
install "kdist[notebook]"``); it and bokeh are imported only when a chart is drawn, so
``import kdist.plotting`` stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .bars import aggregate, period_keys
from .errors import UsageError
from .schema import Freq

__all__ = ["RESAMPLE_ABOVE", "candles", "interactive"]

#: (up, down) colours per convention: A-share software shows rising bars red; western
#: charts show them green.
_STYLES = {"cn": ("#d62728", "#2ca02c"), "us": ("#2ca02c", "#d62728")}
_PRICES = ("open", "high", "low", "close")
_BODY_WIDTH = 0.7  # in bars: a gap of 0.3 bar keeps neighbouring bodies apart
_VOLUME_TINT = 0.6  # volume bars mix their colour 60:40 with white

#: Past this many bars :func:`interactive` draws longer ones: days become weeks, then months.
RESAMPLE_ABOVE = 400
#: Bar lengths :func:`interactive` steps through, shortest first.
_LEVELS = ("intraday", "daily", "weekly", "monthly")
#: The hover read-out: price digits as stored (2, or 3 for funds), volume in whole units.
_PRICE_FORMAT = "{0,0.00[0]}"
_TOOLTIPS = [("date", "@date"), *((p, f"@{p}{_PRICE_FORMAT}") for p in _PRICES),
             ("volume", "@volume{0,0}")]
#: Fits the price (and volume) axis to the bars in view whenever the x range moves.
_FIT_Y = """
const low = source.data.low, high = source.data.high, vol = source.data.volume;
const i0 = Math.max(0, Math.ceil(xr.start)), i1 = Math.min(low.length - 1, Math.floor(xr.end));
let lo = Infinity, hi = -Infinity, top = 0;
for (let i = i0; i <= i1; i++) {
  if (low[i] < lo) lo = low[i];
  if (high[i] > hi) hi = high[i];
  if (vol && vol[i] > top) top = vol[i];
}
if (hi >= lo) {
  const pad = (hi - lo) * 0.05 || Math.abs(hi) * 0.01 || 1;
  yr.start = lo - pad;
  yr.end = hi + pad;
}
if (vr && top > 0) {
  vr.start = 0;
  vr.end = top * 1.05;
}
"""


def candles(
    bars: pd.DataFrame,
    *,
    title: str | None = None,
    volume: bool = True,
    ax=None,
    max_bars: int | None = None,
    figsize: tuple[float, float] = (10, 5),
    style: str = "cn",
    colors: tuple | None = None,
):
    """Draw a candlestick chart of one symbol's bars, with its volume in a panel below.

    Each bar is a body from open to close and a wick from low to high, coloured by
    direction: a bar is *up* when ``close >= open`` and *down* otherwise. Bars sit at
    positions 0, 1, 2, ... so non-trading time leaves no gaps; tick labels and the cursor
    read-out show each bar's date (and time, for intraday bars).

    Parameters
    ----------
    bars
        Bars of one symbol, as returned by :func:`kdist.load` or :func:`kdist.fetch`: columns
        ``ts`` (or a DatetimeIndex), ``open``, ``high``, ``low``, ``close`` and, when
        ``volume`` is true, ``volume``. Other columns are ignored; rows are sorted by time.
    title
        Title of the price panel. By default the symbol (when the frame has a ``symbol``
        column) and, when ``max_bars`` cut the frame, how many bars are shown; ``""`` for none.
    volume
        Draw the volume panel below the prices, sharing their x axis.
    ax
        Draw into existing axes instead of a new figure: one Axes gets the candles only
        (there is no room for volume), a pair ``(price_ax, volume_ax)`` gets both (create it
        with ``sharex=True`` so zooming moves both). ``volume=False`` needs a single Axes.
    max_bars
        Draw only the last ``max_bars`` bars (the most recent ones). Bars are not resampled,
        since that would silently change their frequency: resample first for a longer view
        (as many weekly bars span five times as long). All bars when None.
    figsize
        Size in inches of the new figure; ignored when ``ax`` is given.
    style
        Colour convention: ``"cn"`` (default, as in A-share software) draws up bars red and
        down bars green; ``"us"`` draws up bars green and down bars red.
    colors
        An ``(up, down)`` pair of matplotlib colours, overriding ``style``.

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn on. New figures are made with pyplot, so in a notebook assign the
        result (``fig = candles(...)``) or it is shown twice. The artists carry a ``gid``
        for restyling: ``"kdist-bodies"`` and ``"kdist-wicks"`` (on the price Axes) and
        ``"kdist-volume"``.

    Raises
    ------
    UsageError
        The frame is empty, holds more than one symbol or lacks a column; an argument is
        invalid; or matplotlib is not installed.

    Examples
    --------
    >>> import kdist, kdist.plotting  # doctest: +SKIP
    >>> bars = kdist.load("data/kdist.duckdb", "600000.SH", start="2024-01-01")  # doctest: +SKIP
    >>> fig = kdist.plotting.candles(bars, max_bars=120)  # doctest: +SKIP
    >>> fig.savefig("600000.png")  # doctest: +SKIP
    """
    try:
        from matplotlib.collections import PolyCollection
        from matplotlib.ticker import EngFormatter, FuncFormatter, MaxNLocator
    except ImportError as exc:
        raise UsageError(
            'kdist.plotting needs matplotlib: pip install "kdist[notebook]"'
        ) from exc

    frame, total = _prepare(bars, volume=volume, max_bars=max_bars)
    up_rgba, down_rgba = _colours(style, colors)
    price_ax, volume_ax = _axes(ax, volume=volume, figsize=figsize)

    n = len(frame)
    x = np.arange(n, dtype=float)
    o, h, lo, c = (frame[col].to_numpy(dtype=float) for col in _PRICES)
    rgba = np.where((c >= o)[:, None], up_rgba, down_rgba)
    # Thin lines once bars get narrower than a point or so, or the chart turns to a smear.
    linewidth = float(np.clip(300.0 / n, 0.3, 1.0))

    price_ax.vlines(x, lo, h, colors=rgba, linewidths=linewidth, gid="kdist-wicks", zorder=2)
    bodies = PolyCollection(
        _boxes(x, np.minimum(o, c), np.maximum(o, c)),
        facecolors=rgba,
        edgecolors=rgba,  # a doji (open == close) still shows as a line
        linewidths=linewidth,
        gid="kdist-bodies",
        zorder=3,
    )
    price_ax.add_collection(bodies, autolim=True)
    price_ax.autoscale_view()
    price_ax.set_ylabel("price")
    price_ax.grid(True, alpha=0.3)

    if volume_ax is not None:
        v = np.nan_to_num(frame["volume"].to_numpy(dtype=float))
        # Lighter, but opaque: overlapping edges of dense bars must not darken each other.
        rgba_v = rgba * _VOLUME_TINT + (1.0 - _VOLUME_TINT)
        volume_ax.add_collection(
            PolyCollection(_boxes(x, np.zeros(n), v), facecolors=rgba_v, edgecolors=rgba_v,
                           linewidths=linewidth, gid="kdist-volume"),
            autolim=True,
        )
        volume_ax.autoscale_view()
        volume_ax.set_ylim(bottom=0)
        volume_ax.set_ylabel("volume")
        volume_ax.yaxis.set_major_formatter(EngFormatter(sep=""))
        volume_ax.grid(True, alpha=0.3)

    label, intraday = _date_labeller(frame["ts"])
    for axis in [a for a in (price_ax, volume_ax) if a is not None]:
        axis.set_xlim(-1.0, float(n))
        # Fewer ticks for the longer "date time" labels, so they do not overlap.
        axis.xaxis.set_major_locator(MaxNLocator(nbins=5 if intraday else 8, integer=True))
        axis.xaxis.set_major_formatter(FuncFormatter(lambda pos, _: label(pos)))

    if title is None:
        title = _default_title(frame, total)
    if title:
        price_ax.set_title(title)
    return price_ax.figure


def interactive(
    bars: pd.DataFrame,
    *,
    title: str | None = None,
    volume: bool = True,
    freq: str | None = None,
    resample_above: int | None = RESAMPLE_ABOVE,
    height: int = 440,
    width: int | None = None,
    style: str = "cn",
    colors: tuple[str, str] | None = None,
):
    """Draw an interactive candlestick chart of one symbol's bars, with its volume below.

    The bokeh counterpart of :func:`candles`, for looking around rather than for files: the
    mouse wheel zooms (in time; the price axis follows the bars in view), dragging pans, the
    toolbar has box zoom, reset and save, and hovering over a bar shows its date, open,
    high, low, close and volume. The volume pane shares the price pane's x range, so both
    move together. Bars sit at positions 0, 1, 2, ... as in :func:`candles`.

    More than ``resample_above`` bars would be too thin to read, so longer bars are drawn
    instead, made by :mod:`kdist.bars` (first bar's open, last bar's close, highest high,
    lowest low, summed volume): intraday bars become daily, daily bars weekly, and weekly
    bars monthly, a step further while there are still too many. The title then says so,
    e.g. ``"600000.SH: weekly bars from 1,290 daily"``.

    Parameters
    ----------
    bars
        Bars of one symbol, as for :func:`candles`.
    title
        Title of the price pane. By default the symbol (when the frame has a ``symbol``
        column). When bars were resampled, what was done is added after a colon (to a given
        title too: a chart never hides that its bars are not the stored ones).
    volume
        Draw the volume pane below the prices.
    freq
        The bars' frequency (``"1d"``, ``"1w"``, ``"5m"``, ...), which decides what they
        resample to; by default the frame's ``freq`` column, else guessed from the stamps.
    resample_above
        Resample when there are more bars than this (default :data:`RESAMPLE_ABOVE`, 400);
        None draws every bar.
    height, width
        Size of the chart in pixels, both panes together. ``width=None`` fills the width of
        the page (or of the notebook cell).
    style, colors
        As for :func:`candles`; ``colors`` are CSS colours (``"red"``, ``"#d62728"``).

    Returns
    -------
    bokeh.models.GridPlot
        The price figure over the volume figure, with one toolbar. Show it with
        ``bokeh.io.show`` (after ``bokeh.io.output_notebook()`` in a notebook) or save it
        with ``bokeh.io.save``. Its parts have names: ``chart.select_one({"name":
        "kdist-price"})`` is the price figure, ``"kdist-volume"`` the volume figure,
        ``"kdist-bodies"``, ``"kdist-wicks"`` and ``"kdist-volume-bars"`` their renderers.

    Raises
    ------
    UsageError
        As :func:`candles`; or bokeh is not installed.

    Examples
    --------
    >>> import kdist, kdist.plotting  # doctest: +SKIP
    >>> from bokeh.io import output_notebook, show  # doctest: +SKIP
    >>> output_notebook()  # doctest: +SKIP
    >>> bars = kdist.load("data/kdist.duckdb", "600000.SH")  # doctest: +SKIP
    >>> show(kdist.plotting.interactive(bars))  # doctest: +SKIP
    """
    try:
        from bokeh.layouts import gridplot
        from bokeh.models import WheelZoomTool
    except ImportError as exc:
        raise UsageError("kdist.plotting.interactive needs bokeh: pip install bokeh") from exc

    _check_sizes(resample_above=resample_above, height=height, width=width)
    frame, _ = _prepare(bars, volume=volume, max_bars=None, who="interactive()")
    up, down = _css_pair(style, colors)
    shown, note = _coarsen(frame, _level(frame, freq), resample_above)
    if title is None:
        title = _default_title(frame, len(frame))
    title = ": ".join(part for part in (title, note) if part)

    source = _source(shown, up, down)
    price_height = round(height * 0.72) if volume else height
    price = _price_figure(source, title=title, height=price_height, width=width)
    figures = [price]
    if volume:
        figures.append(_volume_figure(source, price.x_range, height=height - price_height,
                                      width=width))
        price.xaxis.visible = False  # the volume pane's axis shows the dates
    _fit_y_to_view(source, *figures)
    chart = gridplot([[f] for f in figures], merge_tools=True, toolbar_location="right",
                     sizing_mode="stretch_width" if width is None else "fixed")
    # The wheel zooms without first picking the tool: the chart is for looking around.
    chart.toolbar.active_scroll = next(
        t for t in chart.toolbar.tools if isinstance(t.tools[0], WheelZoomTool))
    return chart


def _prepare(bars, *, volume: bool, max_bars: int | None,
             who: str = "candles()") -> tuple[pd.DataFrame, int]:
    """Validate the frame and the bar limit; return the bars to draw, by time, and the total."""
    if not isinstance(bars, pd.DataFrame):
        raise UsageError(
            f"{who} needs a DataFrame of bars such as kdist.load() returns, "
            f"not {type(bars).__name__}"
        )
    if max_bars is not None and (
        isinstance(max_bars, bool) or not isinstance(max_bars, (int, np.integer)) or max_bars < 1
    ):
        raise UsageError(f"max_bars must be a positive integer or None, not {max_bars!r}")
    if bars.empty:
        raise UsageError(
            "No bars to plot: the frame is empty; check the symbol, dates, freq and adjust "
            "given to kdist.load (kdist.catalog(db) lists what is stored)"
        )
    if "ts" not in bars.columns and isinstance(bars.index, pd.DatetimeIndex):
        bars = bars.rename_axis("ts").reset_index()
    needed = ("ts", *_PRICES, *(("volume",) if volume else ()))
    missing = [col for col in needed if col not in bars.columns]
    if missing:
        hint = "; or pass volume=False" if missing == ["volume"] else ""
        raise UsageError(
            f"{who} needs columns {', '.join(needed)}; the frame lacks "
            f"{', '.join(missing)}{hint}"
        )
    if "symbol" in bars.columns:
        symbols = bars["symbol"].unique()
        if len(symbols) > 1:
            shown = ", ".join(map(str, symbols[:3])) + (", ..." if len(symbols) > 3 else "")
            raise UsageError(
                f"{who} draws one symbol; the frame has {len(symbols)} ({shown}): "
                f"select one, e.g. bars[bars['symbol'] == {str(symbols[0])!r}]"
            )
    if not bars["ts"].is_monotonic_increasing:
        bars = bars.sort_values("ts", kind="stable")
    total = len(bars)
    if max_bars is not None and total > max_bars:
        bars = bars.iloc[-max_bars:]
    return bars.reset_index(drop=True), total


def _colours(style: str, colors) -> tuple[tuple, tuple]:
    """(up, down) as RGBA tuples, from ``colors`` when given, else from ``style``."""
    from matplotlib.colors import to_rgba

    colors = _pair(style, colors)
    try:
        return to_rgba(colors[0]), to_rgba(colors[1])
    except ValueError as exc:
        raise UsageError(f"colors {colors!r}: {exc}") from exc


def _pair(style: str, colors) -> tuple:
    """The (up, down) colours as given: ``colors`` when given, else those of ``style``."""
    if colors is None:
        if style not in _STYLES:
            raise UsageError(
                f"Unknown style {style!r}; use 'cn' (up red, down green) or 'us' "
                "(up green, down red), or pass colors=(up, down)"
            )
        colors = _STYLES[style]
    if isinstance(colors, str) or not isinstance(colors, Sequence) or len(colors) != 2:
        raise UsageError(f"colors must be an (up, down) pair of colours, not {colors!r}")
    return colors[0], colors[1]


def _axes(ax, *, volume: bool, figsize):
    """(price_ax, volume_ax or None): new ones, or the caller's one Axes or pair."""
    import matplotlib.pyplot as plt
    from matplotlib.axes import Axes

    if ax is None:
        if not volume:
            _, price_ax = plt.subplots(figsize=figsize, layout="constrained")
            return price_ax, None
        _, (price_ax, volume_ax) = plt.subplots(
            2, 1, sharex=True, figsize=figsize, layout="constrained",
            gridspec_kw={"height_ratios": (3, 1)},
        )
        return price_ax, volume_ax
    if isinstance(ax, Axes):
        return ax, None
    pair = list(np.ravel(np.asarray(ax, dtype=object)))
    if len(pair) != 2 or not all(isinstance(a, Axes) for a in pair):
        got = type(ax).__name__ + (f" of {len(pair)} items" if np.ndim(ax) else "")
        raise UsageError(
            f"ax must be one matplotlib Axes or a pair (price_ax, volume_ax), not a {got}"
        )
    if not volume:
        raise UsageError("volume=False draws into one Axes; pass ax=price_ax, not a pair")
    return pair[0], pair[1]


def _boxes(x: np.ndarray, bottom: np.ndarray, top: np.ndarray) -> np.ndarray:
    """Rectangles centred on ``x``, one per bar, as PolyCollection vertices (n, 4, 2)."""
    left, right = x - _BODY_WIDTH / 2, x + _BODY_WIDTH / 2
    corners = ((left, bottom), (left, top), (right, top), (right, bottom))
    return np.stack([np.column_stack(corner) for corner in corners], axis=1)


def _date_labels(ts: pd.Series) -> tuple[pd.Index, bool]:
    """Each bar's date (and time, if intraday) as text, and whether the bars are intraday."""
    stamps = pd.DatetimeIndex(ts)
    intraday = bool((stamps != stamps.normalize()).any())
    return stamps.strftime("%Y-%m-%d %H:%M" if intraday else "%Y-%m-%d"), intraday


def _date_labeller(ts: pd.Series):
    """A function from an x position to the date (and time, if intraday) of that bar, and
    whether the bars are intraday."""
    labels, intraday = _date_labels(ts)

    def label(pos: float) -> str:
        i = int(round(pos))
        return labels[i] if 0 <= i < len(labels) else ""

    return label, intraday


def _default_title(frame: pd.DataFrame, total: int) -> str:
    """The symbol, and how many bars are shown when only the last ones are."""
    parts = []
    if "symbol" in frame.columns:
        parts.append(str(frame["symbol"].iloc[0]))
    if len(frame) < total:
        parts.append(f"last {len(frame):,} of {total:,} bars")
    return ", ".join(parts)


# -- the interactive chart ---------------------------------------------------------------------


def _check_sizes(*, resample_above, height, width) -> None:
    """Refuse a bar limit or a size that is not a positive integer (None where allowed)."""
    for name, value, optional in (("resample_above", resample_above, True),
                                  ("height", height, False), ("width", width, True)):
        if value is None and optional:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            allowed = " or None" if optional else ""
            raise UsageError(f"{name} must be a positive integer{allowed}, not {value!r}")


def _css_pair(style: str, colors) -> tuple[str, str]:
    """(up, down) as CSS colours bokeh can draw."""
    from bokeh.core.properties import Color

    pair = _pair(style, colors)
    for colour in pair:
        if not (isinstance(colour, str) and Color().is_valid(colour)):
            raise UsageError(f"colors {colors!r}: {colour!r} is not a CSS colour")
    return pair


def _level(frame: pd.DataFrame, freq) -> str:
    """Which of :data:`_LEVELS` the bars are: from ``freq``, the frame's ``freq`` column, or
    the spacing of their stamps."""
    if freq is None and "freq" in frame.columns:
        freq = frame["freq"].iloc[0]
    if freq is not None:
        freq = Freq.parse(freq)
        if freq.intraday:
            return "intraday"
        return {Freq.DAY: "daily", Freq.WEEK: "weekly"}.get(freq, "monthly")
    stamps = pd.DatetimeIndex(frame["ts"])
    if (stamps != stamps.normalize()).any():
        return "intraday"
    days = np.diff(stamps.to_numpy().astype("datetime64[D]").astype(np.int64))
    gap = float(np.median(days)) if len(days) else 1.0
    return "daily" if gap < 4 else "weekly" if gap < 20 else "monthly"


def _coarsen(frame: pd.DataFrame, level: str, limit: int | None) -> tuple[pd.DataFrame, str]:
    """The bars to draw, at most ``limit`` of them where a longer bar allows it, and what was
    done to them (``"weekly bars from 1,290 daily"``, or ``""``)."""
    if limit is None or len(frame) <= limit or level == "monthly":
        return frame, ""
    for target in _LEVELS[_LEVELS.index(level) + 1:]:
        shown = _resampled(frame, target)
        if len(shown) <= limit:
            break
    return shown, f"{target} bars from {len(frame):,} {level}"


def _resampled(frame: pd.DataFrame, target: str) -> pd.DataFrame:
    """``frame``'s bars, sorted by time, as daily, weekly or monthly bars (kdist.bars)."""
    stamps = pd.DatetimeIndex(frame["ts"]).tz_localize(None).to_numpy()
    days = stamps.astype("datetime64[D]")
    summed = [c for c in ("volume", "amount") if c in frame.columns]
    columns = {c: frame[c].to_numpy(dtype=float) if c in frame.columns else np.zeros(len(frame))
               for c in (*_PRICES, "volume", "amount")}
    if target == "daily":  # a day's bar is stamped at midnight, as stored daily bars are
        out = aggregate(columns, days.astype(np.int64), days.astype(stamps.dtype))
    else:
        keys = period_keys(days, Freq.WEEK if target == "weekly" else Freq.MONTH)
        out = aggregate(columns, keys, stamps)
    return pd.DataFrame({c: out[c] for c in ("ts", *_PRICES, *summed)})


def _source(frame: pd.DataFrame, up: str, down: str):
    """The chart's data: one row per bar, at positions 0, 1, 2, ..."""
    from bokeh.models import ColumnDataSource

    o, h, lo, c = (frame[col].to_numpy(dtype=float) for col in _PRICES)
    labels, _ = _date_labels(frame["ts"])
    data = {
        "x": np.arange(len(frame)), "date": list(labels),
        "open": o, "high": h, "low": lo, "close": c,
        "top": np.maximum(o, c), "bottom": np.minimum(o, c),
        "color": np.where(c >= o, up, down).tolist(),
    }
    if "volume" in frame.columns:
        data["volume"] = frame["volume"].to_numpy(dtype=float)
    return ColumnDataSource(data, name="kdist-bars")


def _figure(source, *, name: str, x_range, y_range, height: int, width: int | None):
    """A pane: positional x axis labelled with the bars' dates, zoom and pan in time."""
    from bokeh.models import (BasicTicker, BoxZoomTool, CustomJSTickFormatter, PanTool,
                              ResetTool, SaveTool, WheelZoomTool)
    from bokeh.plotting import figure

    size = {"sizing_mode": "stretch_width"} if width is None else {"width": width}
    fig = figure(
        name=name, x_range=x_range, y_range=y_range, height=height, **size,
        tools=[PanTool(dimensions="width"), WheelZoomTool(dimensions="width"),
               BoxZoomTool(dimensions="width"), ResetTool(), SaveTool()],
        min_border_left=70,  # the same for both panes, so their plot areas line up
    )
    fig.xaxis.ticker = BasicTicker(min_interval=1, desired_num_ticks=8)  # whole bars only
    fig.xaxis.formatter = CustomJSTickFormatter(
        args={"labels": source.data["date"]},
        code="const i = Math.round(tick); return i >= 0 && i < labels.length ? labels[i] : '';",
    )
    fig.grid.grid_line_alpha = 0.3
    return fig


def _hover(fig, renderer, source) -> None:
    """The bar's date, prices and volume anywhere above or below it."""
    from bokeh.models import HoverTool

    tooltips = [t for t in _TOOLTIPS if t[0] != "volume" or "volume" in source.data]
    fig.add_tools(HoverTool(renderers=[renderer], tooltips=tooltips, mode="vline"))


def _price_figure(source, *, title: str, height: int, width: int | None):
    from bokeh.models import Range1d

    n = len(source.data["x"])
    fig = _figure(source, name="kdist-price", height=height, width=width,
                  x_range=Range1d(-1, n, bounds=(-1, n)),
                  y_range=Range1d(*_span(source.data["low"], source.data["high"])))
    fig.segment("x", "high", "x", "low", source=source, color="color", name="kdist-wicks")
    bodies = fig.vbar(x="x", width=_BODY_WIDTH, top="top", bottom="bottom", source=source,
                      fill_color="color", line_color="color", name="kdist-bodies")
    fig.title.text = title
    fig.yaxis.axis_label = "price"
    _hover(fig, bodies, source)
    return fig


def _volume_figure(source, x_range, *, height: int, width: int | None):
    from bokeh.models import NumeralTickFormatter, Range1d

    top = float(np.nanmax(source.data["volume"], initial=0.0))
    fig = _figure(source, name="kdist-volume", height=height, width=width, x_range=x_range,
                  y_range=Range1d(0, top * 1.05 if top > 0 else 1))
    bars = fig.vbar(x="x", width=_BODY_WIDTH, top="volume", source=source, fill_color="color",
                    line_color="color", fill_alpha=0.5, line_alpha=0.5, name="kdist-volume-bars")
    fig.yaxis.axis_label = "volume"
    fig.yaxis.formatter = NumeralTickFormatter(format="0.[0]a")
    _hover(fig, bars, source)
    return fig


def _span(low: np.ndarray, high: np.ndarray) -> tuple[float, float]:
    """The price axis of bars from ``low`` to ``high``, with a margin (as :data:`_FIT_Y`)."""
    lo, hi = float(np.nanmin(low)), float(np.nanmax(high))
    pad = (hi - lo) * 0.05 or abs(hi) * 0.01 or 1.0
    return lo - pad, hi + pad


def _fit_y_to_view(source, price, volume=None) -> None:
    """Refit the price (and volume) axis to the bars in view whenever the x range changes."""
    from bokeh.models import CustomJS

    fit = CustomJS(args={"source": source, "xr": price.x_range, "yr": price.y_range,
                         "vr": None if volume is None else volume.y_range}, code=_FIT_Y)
    price.x_range.js_on_change("start", fit)
    price.x_range.js_on_change("end", fit)
