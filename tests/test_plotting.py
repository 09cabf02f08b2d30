"""kdist.plotting.candles: one body, wick and volume bar per bar, the right colours, no gaps,
max_bars, drawing into given axes, clear errors, and no matplotlib on ``import kdist``."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import kdist
from kdist.errors import UsageError

mpl = pytest.importorskip("matplotlib")
mpl.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
from matplotlib.colors import to_rgba  # noqa: E402

from kdist.plotting import candles  # noqa: E402

RED, GREEN = to_rgba("#d62728"), to_rgba("#2ca02c")


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """Two symbols of daily bars, ingested in-process into a DuckDB file."""
    db = tmp_path_factory.mktemp("plotting") / "kdist.duckdb"
    report = kdist.ingest(["600000.SH", "000001.SZ"], start="2024-01-01", end="2024-06-30",
                          provider="synthetic", client="sync", db=db)
    assert report.status == "done"
    return db


@pytest.fixture(scope="module")
def bars(stored):
    """One symbol's bars as kdist.load returns them (with symbol and source columns)."""
    return kdist.load(stored, "600000.SH")


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def artist(ax, gid):
    found = [c for c in ax.collections if c.get_gid() == gid]
    assert len(found) == 1, f"{gid}: {len(found)} collections"
    return found[0]


def extents(collection):
    """(x centre, bottom, top) of each path of a collection, in data coordinates."""
    out = []
    for path in collection.get_paths():
        xs, ys = path.vertices[:, 0], path.vertices[:, 1]
        out.append(((xs.min() + xs.max()) / 2, ys.min(), ys.max()))
    return np.array(out)


def test_price_and_volume_panels_share_the_x_axis(bars):
    fig = candles(bars)
    assert isinstance(fig, mpl.figure.Figure)
    price, volume = fig.axes
    assert price.get_shared_x_axes().joined(price, volume)
    assert price.get_title() == "600000.SH"
    assert len(candles(bars, volume=False).axes) == 1


def test_one_body_wick_and_volume_bar_per_bar_at_consecutive_positions(bars):
    fig = candles(bars)
    price, volume = fig.axes
    n = len(bars)
    assert n > 100

    body = extents(artist(price, "kdist-bodies"))
    np.testing.assert_allclose(body[:, 0], np.arange(n))  # positional: no weekend gaps
    np.testing.assert_allclose(body[:, 1], np.minimum(bars["open"], bars["close"]))
    np.testing.assert_allclose(body[:, 2], np.maximum(bars["open"], bars["close"]))

    segments = artist(price, "kdist-wicks").get_segments()
    assert len(segments) == n
    np.testing.assert_allclose([s[:, 1].min() for s in segments], bars["low"])
    np.testing.assert_allclose([s[:, 1].max() for s in segments], bars["high"])

    vol = extents(artist(volume, "kdist-volume"))
    np.testing.assert_allclose(vol[:, 2], bars["volume"])
    assert volume.get_ylim()[0] == 0


def test_tick_labels_are_the_dates_of_the_bars(bars):
    fig = candles(bars)
    fig.canvas.draw()
    formatter = fig.axes[1].xaxis.get_major_formatter()
    for i in (0, 17, len(bars) - 1):
        assert formatter(i) == bars["ts"].iloc[i].strftime("%Y-%m-%d")
    assert formatter(-5) == formatter(len(bars) + 5) == ""
    labels = [t.get_text() for t in fig.axes[1].get_xticklabels() if t.get_text()]
    assert len(labels) >= 3 and all(label.startswith("2024-") for label in labels)


def test_intraday_labels_show_the_time():
    bars = kdist.fetch(["600000.SH"], start="2024-12-30", end="2024-12-31", freq="30m")
    formatter = candles(bars).axes[0].xaxis.get_major_formatter()
    assert formatter(0) == bars["ts"].iloc[0].strftime("%Y-%m-%d %H:%M")


def up_and_down(bars):
    up = int(np.flatnonzero(bars["close"] > bars["open"])[0])
    down = int(np.flatnonzero(bars["close"] < bars["open"])[0])
    return up, down


@pytest.mark.parametrize(
    ("kwargs", "up_colour", "down_colour"),
    [
        ({}, RED, GREEN),
        ({"style": "cn"}, RED, GREEN),
        ({"style": "us"}, GREEN, RED),
        ({"colors": ("black", "blue")}, to_rgba("black"), to_rgba("blue")),
    ],
    ids=["default", "cn", "us", "colors"],
)
def test_up_and_down_colours(bars, kwargs, up_colour, down_colour):
    up, down = up_and_down(bars)
    price, volume = candles(bars, **kwargs).axes
    bodies = artist(price, "kdist-bodies").get_facecolors()
    wicks = artist(price, "kdist-wicks").get_colors()
    assert tuple(bodies[up]) == tuple(wicks[up]) == up_colour
    assert tuple(bodies[down]) == tuple(wicks[down]) == down_colour
    # Volume bars take a lighter shade of their candle's colour: 60% colour, 40% white.
    shades = artist(volume, "kdist-volume").get_facecolors()
    np.testing.assert_allclose(shades[up], np.array(up_colour) * 0.6 + 0.4)
    np.testing.assert_allclose(shades[down], np.array(down_colour) * 0.6 + 0.4)


def test_max_bars_shows_the_last_bars(bars):
    n = len(bars)
    fig = candles(bars, max_bars=20)
    price, volume = fig.axes
    body = extents(artist(price, "kdist-bodies"))
    assert len(body) == len(artist(volume, "kdist-volume").get_paths()) == 20
    last = bars.iloc[-20:]
    np.testing.assert_allclose(body[:, 2], np.maximum(last["open"], last["close"]))
    assert price.xaxis.get_major_formatter()(0) == last["ts"].iloc[0].strftime("%Y-%m-%d")
    assert price.get_title() == f"600000.SH, last 20 of {n} bars"

    everything = candles(bars, max_bars=n + 10)
    assert len(artist(everything.axes[0], "kdist-bodies").get_paths()) == n
    assert everything.axes[0].get_title() == "600000.SH"


def test_thousands_of_bars_draw():
    bars = kdist.fetch(["000001.SZ"], start="2015-01-01", end="2024-12-31")
    assert len(bars) > 2000
    fig = candles(bars, title="")
    fig.canvas.draw()
    price = fig.axes[0]
    assert len(artist(price, "kdist-bodies").get_paths()) == len(bars)
    assert len(price.collections) == 2  # one artist per kind, not one per bar
    assert price.get_title() == ""


def test_unsorted_frame_and_datetime_index(bars):
    shuffled = bars.sample(frac=1.0, random_state=0)
    body = extents(artist(candles(shuffled).axes[0], "kdist-bodies"))
    np.testing.assert_allclose(body[:, 2], np.maximum(bars["open"], bars["close"]))

    indexed = bars.drop(columns="symbol").set_index("ts")
    fig = candles(indexed, title="indexed")
    assert len(artist(fig.axes[0], "kdist-bodies").get_paths()) == len(bars)
    assert fig.axes[0].get_title() == "indexed"


def test_draws_into_one_given_axes(bars):
    fig, ax = plt.subplots()
    before = plt.get_fignums()
    assert candles(bars, ax=ax, max_bars=30) is fig
    assert plt.get_fignums() == before
    assert fig.axes == [ax]
    assert len(artist(ax, "kdist-bodies").get_paths()) == 30


@pytest.mark.parametrize("as_array", [False, True], ids=["tuple", "array"])
def test_draws_into_a_given_pair(bars, as_array):
    fig, axes = plt.subplots(2, 1, sharex=True)
    pair = axes if as_array else tuple(axes)
    assert candles(bars, ax=pair) is fig
    assert len(artist(axes[0], "kdist-bodies").get_paths()) == len(bars)
    assert len(artist(axes[1], "kdist-volume").get_paths()) == len(bars)


def test_empty_frame_is_a_usage_error(bars):
    with pytest.raises(UsageError, match="No bars to plot: the frame is empty"):
        candles(bars.iloc[:0])


def test_frame_of_an_unknown_symbol_is_a_usage_error(stored):
    with pytest.raises(UsageError, match="empty"):
        candles(kdist.load(stored, "600999.SH"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b, s: dict(bars=kdist.load(s)), r"one symbol; the frame has 2 \(000001.SZ"),
        (lambda b, s: dict(bars=b.drop(columns="high")), "lacks high"),
        (lambda b, s: dict(bars=b.drop(columns="volume")), "lacks volume; or pass volume=False"),
        (lambda b, s: dict(bars=b.to_dict()), "needs a DataFrame"),
        (lambda b, s: dict(bars=b, max_bars=0), "max_bars must be a positive integer"),
        (lambda b, s: dict(bars=b, max_bars=2.5), "max_bars must be a positive integer"),
        (lambda b, s: dict(bars=b, style="jp"), "Unknown style 'jp'"),
        (lambda b, s: dict(bars=b, colors="red"), r"\(up, down\) pair"),
        (lambda b, s: dict(bars=b, colors=("red", "nocolour")), "nocolour"),
        (lambda b, s: dict(bars=b, ax="axes"), "one matplotlib Axes or a pair"),
        (lambda b, s: dict(bars=b, ax=plt.subplots(2)[1], volume=False), "volume=False"),
    ],
    ids=["two-symbols", "no-high", "no-volume", "not-a-frame", "max-bars-0", "max-bars-float",
         "style", "colors-str", "colors-bad", "ax-str", "pair-without-volume"],
)
def test_bad_arguments_are_usage_errors(bars, stored, change, message):
    kwargs = change(bars, stored)
    with pytest.raises(UsageError, match=message):
        candles(kwargs.pop("bars"), **kwargs)


def test_no_volume_column_needed_without_the_volume_panel(bars):
    fig = candles(bars.drop(columns=["volume", "amount"]), volume=False)
    assert len(fig.axes) == 1


def test_without_matplotlib_says_how_to_install_it(bars, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)  # None makes the import fail
    with pytest.raises(UsageError) as info:
        candles(bars)
    message = str(info.value)
    assert message == 'kdist.plotting needs matplotlib: pip install "kdist[notebook]"'
    assert isinstance(info.value.__cause__, ImportError)


def test_importing_kdist_and_kdist_plotting_does_not_import_matplotlib():
    code = (
        "import sys, kdist, kdist.plotting\n"
        "print(','.join(m for m in ('matplotlib', 'IPython', 'ipywidgets') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
