"""The browse panel's chart and table, headless: the interactive chart or its picture
fallback, and a table of aligned, paged bars with whole volumes."""

from __future__ import annotations

import re

import pytest

import kdist

pytest.importorskip("ipywidgets")
pytest.importorskip("matplotlib")
pytest.importorskip("bokeh")

from kdist.browse import BrowsePanel  # noqa: E402  (after the skips)


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """Daily bars of 2023 (257) for one symbol."""
    db = tmp_path_factory.mktemp("browse") / "kdist.duckdb"
    kdist.ingest(["000001.SZ"], start="2023-01-01", end="2023-12-31", db=db, client="sync")
    return db


def _rows(table: str) -> list[list[str]]:
    """The cells of each body row of the table's HTML."""
    body = table.split("<tbody>", 1)[1]
    return [re.findall(r"<td>(.*?)</td>", row) for row in body.split("</tr>") if "<td>" in row]


def test_the_panel_is_the_one_kdist_widgets_names():
    from kdist.widgets import BrowsePanel as named

    assert named is BrowsePanel


def test_the_table_is_paged_newest_first_with_aligned_columns(stored):
    panel = BrowsePanel(stored)
    bars = kdist.load(stored, "000001.SZ", start="2023-01-01")
    assert len(panel.bars) == len(bars) == 257
    table = panel.table.value
    assert re.findall(r"<th>(\w+)</th>", table) == [
        "date", "open", "high", "low", "close", "volume", "amount"]
    # Styled: padding, numbers right-aligned, the date left, a header that stays put.
    assert "padding:" in table and "text-align: right" in table and "sticky" in table
    rows = _rows(table)
    assert len(rows) == 20 and rows[0][0] == "2023-12-29"  # a page of 20, newest first
    newest = bars.iloc[-1]
    assert rows[0][1] == f"{newest['open']:,.2f}"
    assert rows[0][5] == f"{int(newest['volume']):,}"  # 2,440,100, not 2,440,100.00
    assert not rows[0][5].endswith(".00") and "," in rows[0][5]
    assert panel.page_label.value == "bars 1-20 of 257, newest first"
    assert panel.newer_button.disabled and not panel.older_button.disabled

    panel.older_button.click()
    assert _rows(panel.table.value)[0][0] == f"{bars['ts'].iloc[-21]:%Y-%m-%d}"
    assert panel.page_label.value == "bars 21-40 of 257, newest first"
    assert not panel.newer_button.disabled
    panel.turn(100)  # past the end: the last page
    assert panel.page_label.value == "bars 241-257 of 257, newest first"
    assert len(_rows(panel.table.value)) == 17 and panel.older_button.disabled
    assert _rows(panel.table.value)[-1][0] == f"{bars['ts'].iloc[0]:%Y-%m-%d}"
    panel.newer_button.click()
    assert panel.page_label.value == "bars 221-240 of 257, newest first"

    panel.start_date.value = panel.end_date.value  # a new range starts at the first page
    assert panel.page_label.value == "bars 1-1 of 1, newest first"
    assert panel.newer_button.disabled and panel.older_button.disabled


def test_rows_sets_the_page_size(stored):
    panel = BrowsePanel(stored, rows=7)
    assert len(_rows(panel.table.value)) == 7
    assert panel.page_label.value == "bars 1-7 of 257, newest first"


def test_the_chart_choice_and_the_picture_fallback(stored, monkeypatch):
    panel = BrowsePanel(stored)
    assert panel.chart_kind.value == "interactive"
    frame = panel.chart.value
    assert frame.startswith("<iframe") and "Bokeh" in frame  # BokehJS inline: no network
    assert "https://cdn.bokeh.org" not in frame

    panel.chart_kind.value = "png"
    assert bytes(panel.picture.value).startswith(b"\x89PNG") and panel.chart.value == ""
    assert panel.picture.layout.display is None and panel.chart.layout.display == "none"
    assert len(panel.figure.axes) == 2  # the matplotlib chart: prices and volume
    panel.chart_kind.value = "interactive"
    assert panel.chart.value.startswith("<iframe") and panel.picture.value == b""

    def broken(*args, **kwargs):
        raise RuntimeError("no bokeh here")

    monkeypatch.setattr("kdist.plotting.interactive", broken)
    panel.refresh()
    assert bytes(panel.picture.value).startswith(b"\x89PNG")
    assert panel.picture.layout.display is None and panel.chart.layout.display == "none"
    assert "No interactive chart (RuntimeError: no bokeh here)" in panel.status.value
    assert "257 bars" in panel.status.value

    picture = BrowsePanel(stored, chart="png")
    assert bytes(picture.picture.value).startswith(b"\x89PNG")


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(chart="svg"), "chart must be one of 'interactive', 'png', not 'svg'"),
    (dict(rows=0), "rows must be a positive integer, not 0"),
])
def test_bad_arguments_are_usage_errors(stored, kwargs, message):
    with pytest.raises(kdist.UsageError, match=message):
        BrowsePanel(stored, **kwargs)


def test_derived_qfq_and_hfq_are_offered_beside_the_raw_bars(tmp_path):
    db = tmp_path / "k.duckdb"
    report = kdist.ingest(["600000.SH"], start="2021-01-01", end="2023-12-31", db=db,
                          client="sync")
    assert report.actions  # the default provider serves corporate actions
    panel = BrowsePanel(db)
    assert list(panel.adjust.options) == ["hfq", "none", "qfq"]
    panel.adjust.value = "qfq"
    want = kdist.load(db, "600000.SH", start=panel.start_date.value, adjust="qfq")
    assert len(want) and panel.bars.equals(want)
    assert "600000.SH 1d qfq" in panel.status.value
