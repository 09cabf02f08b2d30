"""kdist.plotting.interactive: a bokeh price pane over a volume pane sharing its x range, the
tools (wheel and box zoom, pan, reset, hover with a bar's values), one candle per bar, and
weekly or monthly bars past 400 with a title that says so."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import kdist
from kdist.errors import UsageError

pytest.importorskip("bokeh")

from bokeh.models import (  # noqa: E402  (after the skip)
    BoxZoomTool,
    GridPlot,
    HoverTool,
    PanTool,
    ResetTool,
    WheelZoomTool,
)
from bokeh.plotting import figure  # noqa: E402

from kdist.plotting import RESAMPLE_ABOVE, interactive  # noqa: E402

SYNTHETIC = kdist.get_provider("synthetic")


def _bars(start, end, freq="1d", symbol="600000.SH"):
    bars = SYNTHETIC.fetch(symbol, start, end, freq=freq)
    bars["symbol"] = symbol
    return bars


@pytest.fixture(scope="module")
def year():
    """About 250 daily bars: drawn as they are."""
    return _bars("2024-01-01", "2024-12-31")


@pytest.fixture(scope="module")
def five_years():
    """1,286 daily bars, Monday 2020-01-06 to Friday 2024-12-27: whole weeks."""
    return _bars("2020-01-06", "2024-12-27")


def _parts(chart):
    price = chart.select_one({"name": "kdist-price"})
    volume = chart.select_one({"name": "kdist-volume"})
    source = chart.select_one({"name": "kdist-bars"})
    return price, volume, source


def test_a_price_pane_over_a_volume_pane_with_one_x_range(year):
    chart = interactive(year)
    assert isinstance(chart, GridPlot)
    price, volume, source = _parts(chart)
    assert isinstance(price, figure) and isinstance(volume, figure)
    assert [(child, row) for child, row, _ in chart.children] == [(price, 0), (volume, 1)]
    assert volume.x_range is price.x_range  # zoom or pan one, the other follows
    assert price.title.text == "600000.SH"
    assert not price.xaxis[0].visible and volume.xaxis[0].visible  # dates under volume only
    assert price.height + volume.height == 440

    alone = interactive(year, volume=False)
    assert alone.select_one({"name": "kdist-volume"}) is None
    assert len(alone.children) == 1


def test_the_tools_zoom_pan_reset_and_hover_with_the_bar_values(year):
    chart = interactive(year)
    price, volume, _ = _parts(chart)
    for pane in (price, volume):
        kinds = {type(tool) for tool in pane.tools}
        assert {WheelZoomTool, BoxZoomTool, PanTool, ResetTool, HoverTool} <= kinds
        hover = pane.select_one(HoverTool)
        assert [field for field, _ in hover.tooltips] == [
            "date", "open", "high", "low", "close", "volume"]
        assert dict(hover.tooltips)["date"] == "@date"
        assert dict(hover.tooltips)["volume"] == "@volume{0,0}"
        assert hover.mode == "vline"  # anywhere above or below a bar
    # One toolbar for both panes; the wheel zooms without picking the tool first.
    assert chart.toolbar_location == "right"
    assert isinstance(chart.toolbar.active_scroll.tools[0], WheelZoomTool)
    assert price.select_one(WheelZoomTool).dimensions == "width"  # zoom in time


def test_one_candle_per_bar_at_consecutive_positions(year):
    chart = interactive(year, style="us")
    _, _, source = _parts(chart)
    data = source.data
    n = len(year)
    assert n < RESAMPLE_ABOVE
    np.testing.assert_array_equal(data["x"], np.arange(n))  # no weekend gaps
    np.testing.assert_allclose(data["close"], year["close"])
    np.testing.assert_allclose(data["volume"], year["volume"])
    assert data["date"][0] == f"{year['ts'].iloc[0]:%Y-%m-%d}"
    up = (year["close"] >= year["open"]).to_numpy()
    assert set(np.asarray(data["color"])[up]) == {"#2ca02c"}  # us: up green
    assert set(np.asarray(data["color"])[~up]) == {"#d62728"}
    bodies = chart.select_one({"name": "kdist-bodies"})
    assert bodies.glyph.top == "top" and bodies.glyph.bottom == "bottom"


def test_past_400_daily_bars_it_draws_weekly_bars_and_says_so(five_years):
    assert len(five_years) == 1_286
    chart = interactive(five_years)
    price, _, source = _parts(chart)
    assert price.title.text == "600000.SH: weekly bars from 1,286 daily"
    # The same weeks as the provider's own weekly bars (both from kdist.bars).
    weekly = SYNTHETIC.fetch("600000.SH", "2020-01-06", "2024-12-27", freq="1w")
    assert len(source.data["x"]) == len(weekly) == 260
    for column in ("open", "high", "low", "close", "volume"):
        np.testing.assert_allclose(source.data[column], weekly[column], err_msg=column)
    assert source.data["date"][-1] == "2024-12-27"

    titled = interactive(five_years, title="600000.SH 1d")
    assert _parts(titled)[0].title.text == "600000.SH 1d: weekly bars from 1,286 daily"
    every = interactive(five_years, resample_above=None)
    assert len(_parts(every)[2].data["x"]) == 1_286
    assert _parts(every)[0].title.text == "600000.SH"


def test_too_many_weeks_become_months():
    daily = _bars("2016-01-04", "2024-11-29")  # ~470 weeks: too many, so months
    chart = interactive(daily)
    price, _, source = _parts(chart)
    assert price.title.text == f"600000.SH: monthly bars from {len(daily):,} daily"
    monthly = SYNTHETIC.fetch("600000.SH", "2016-01-04", "2024-11-29", freq="1M")
    np.testing.assert_allclose(source.data["close"], monthly["close"])
    np.testing.assert_allclose(source.data["high"], monthly["high"])

    weekly = _bars("2015-01-05", "2024-12-27", freq="1w")
    assert len(weekly) == 521
    chart = interactive(weekly)
    assert _parts(chart)[0].title.text == "600000.SH: monthly bars from 521 weekly"
    assert len(_parts(chart)[2].data["x"]) <= RESAMPLE_ABOVE


def test_intraday_bars_become_daily_and_the_rule_follows_freq(year):
    minutes = _bars("2024-03-01", "2024-03-20", freq="5m")
    chart = interactive(minutes)
    price, _, source = _parts(chart)
    assert price.title.text == f"600000.SH: daily bars from {len(minutes):,} intraday"
    days = minutes.groupby(minutes["ts"].dt.date)
    np.testing.assert_allclose(source.data["close"], days["close"].last())
    np.testing.assert_allclose(source.data["volume"], days["volume"].sum())
    assert source.data["date"][0] == "2024-03-01"

    # The freq decides, not the spacing: bars said to be monthly are never resampled.
    assert _parts(interactive(year, freq="1M", resample_above=10))[0].title.text == "600000.SH"
    assert "weekly bars from" in _parts(interactive(year, resample_above=100))[0].title.text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(resample_above=0), "resample_above must be a positive integer or None"),
        (dict(height=0), "height must be a positive integer, not 0"),
        (dict(width=12.5), "width must be a positive integer or None"),
        (dict(style="jp"), "Unknown style 'jp'"),
        (dict(colors=("red", "nocolour")), "'nocolour' is not a CSS colour"),
        (dict(freq="2d"), "Unknown freq '2d'"),
        (dict(volume=True, drop="volume"), "interactive\\(\\) needs columns"),
    ],
    ids=["limit", "height", "width", "style", "colors", "freq", "no-volume"],
)
def test_bad_arguments_are_usage_errors(year, kwargs, message):
    kwargs = dict(kwargs)
    bars = year.drop(columns=kwargs.pop("drop")) if "drop" in kwargs else year
    with pytest.raises(UsageError, match=message):
        interactive(bars, **kwargs)


def test_without_bokeh_says_how_to_install_it(year, monkeypatch):
    for name in [m for m in sys.modules if m == "bokeh" or m.startswith("bokeh.")]:
        monkeypatch.setitem(sys.modules, name, None)  # None makes the import fail
    with pytest.raises(UsageError, match="interactive needs bokeh: pip install bokeh"):
        interactive(year)


def test_importing_kdist_and_kdist_plotting_does_not_import_bokeh():
    code = "import sys, kdist, kdist.plotting\nprint('bokeh' in sys.modules)\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
