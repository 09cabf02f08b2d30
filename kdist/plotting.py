"""Charts of stored bars: :func:`candles` draws one symbol's K-line with a volume panel.

This module turns a frame shaped like :func:`kdist.load` output into a matplotlib figure,
built from a handful of array-backed artists (one collection for the bodies, one for the
wicks, one for the volume bars) so that thousands of bars draw quickly. The x axis is the
bar's position, not its time, so weekends, holidays and the midday break leave no gaps; the
tick labels show the bars' dates. matplotlib is optional (``pip install "kdist[notebook]"``)
and is imported only when a chart is drawn, so ``import kdist.plotting`` stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .errors import UsageError

__all__ = ["candles"]

#: (up, down) colours per convention: A-share software shows rising bars red; western
#: charts show them green.
_STYLES = {"cn": ("#d62728", "#2ca02c"), "us": ("#2ca02c", "#d62728")}
_PRICES = ("open", "high", "low", "close")
_BODY_WIDTH = 0.7  # in bars: a gap of 0.3 bar keeps neighbouring bodies apart
_VOLUME_TINT = 0.6  # volume bars mix their colour 60:40 with white


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


def _prepare(bars, *, volume: bool, max_bars: int | None) -> tuple[pd.DataFrame, int]:
    """Validate the frame and the bar limit; return the bars to draw, by time, and the total."""
    if not isinstance(bars, pd.DataFrame):
        raise UsageError(
            f"candles() needs a DataFrame of bars such as kdist.load() returns, "
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
            f"candles() needs columns {', '.join(needed)}; the frame lacks "
            f"{', '.join(missing)}{hint}"
        )
    if "symbol" in bars.columns:
        symbols = bars["symbol"].unique()
        if len(symbols) > 1:
            shown = ", ".join(map(str, symbols[:3])) + (", ..." if len(symbols) > 3 else "")
            raise UsageError(
                f"candles() draws one symbol; the frame has {len(symbols)} ({shown}): "
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

    if colors is None:
        if style not in _STYLES:
            raise UsageError(
                f"Unknown style {style!r}; use 'cn' (up red, down green) or 'us' "
                "(up green, down red), or pass colors=(up, down)"
            )
        colors = _STYLES[style]
    if isinstance(colors, str) or not isinstance(colors, Sequence) or len(colors) != 2:
        raise UsageError(f"colors must be an (up, down) pair of colours, not {colors!r}")
    try:
        return to_rgba(colors[0]), to_rgba(colors[1])
    except ValueError as exc:
        raise UsageError(f"colors {colors!r}: {exc}") from exc


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


def _date_labeller(ts: pd.Series):
    """A function from an x position to the date (and time, if intraday) of that bar, and
    whether the bars are intraday."""
    stamps = pd.DatetimeIndex(ts)
    intraday = bool((stamps != stamps.normalize()).any())
    labels = stamps.strftime("%Y-%m-%d %H:%M" if intraday else "%Y-%m-%d")

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
