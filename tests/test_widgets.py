"""The notebook panels, driven headless: set the controls, click, wait, check the database."""

from __future__ import annotations

import datetime as dt
import gc
import html
import time
from pathlib import Path

import pytest

import kdist
from kdist.errors import InvalidOptionError

W = pytest.importorskip("ipywidgets")
widgets = pytest.importorskip("kdist.widgets")
browse = pytest.importorskip("kdist.browse")
pytest.importorskip("matplotlib")


def _panel(db, **kwargs):
    kwargs.setdefault("start", "2023-01-01")
    kwargs.setdefault("end", "2023-12-31")
    return widgets.IngestPanel(db=db, **kwargs)


def test_start_imports_what_the_controls_say(db, client, fingerprint):
    panel = _panel(db, symbols=["600000.SH"], client=client)
    # Change the controls the way a user would, after construction.
    panel.symbols_text.value = "600000.SH, 000001.SZ\nsz000002 , AAPL"
    panel.start_date.value = dt.date(2022, 1, 1)
    panel.end_date.value = dt.date(2022, 12, 31)
    panel.freq.value = "1w"
    panel.options["fail"].value = "AAPL"
    panel.options["seed"].value = "3"
    assert panel.cluster.value == "client"

    panel.start_button.click()
    report = panel.wait(120)

    assert report.status == "partial" and report.job_id == panel.job_id
    stored = fingerprint(db, freq="1w")
    assert sorted(stored["symbol"]) == ["000001.SZ", "000002.SZ", "600000.SH"]
    expected = kdist.fetch(["600000.SH", "000001.SZ", "000002.SZ"], start="2022-01-01",
                           end="2022-12-31", freq="1w",
                           provider=kdist.get_provider("synthetic", seed=3))
    assert report.rows_written == int(stored["bars"].sum()) == len(expected)
    # The bars went where the controls said: weekly, seed 3.
    loaded = kdist.load(db, "600000.SH", freq="1w")
    want = expected[expected["symbol"] == "600000.SH"].reset_index(drop=True)
    assert loaded["close"].tolist() == pytest.approx(want["close"].tolist())

    # Progress: every symbol and task counted, rows shown, the failure listed with its error.
    assert panel.symbols_bar.value == panel.symbols_bar.max == 4
    assert panel.chunks_bar.value == panel.chunks_bar.max == report.n_chunks
    assert panel.symbols_count.value == "4/4"
    assert panel.chunks_count.value == f"{report.n_chunks}/{report.n_chunks}"
    assert panel.rows_label.value == f"{report.rows_written:,} rows written"
    assert "symbols/s" in panel.rate_label.value
    assert "AAPL" in panel.failures.value and "option fail" in panel.failures.value
    assert "600000.SH" not in panel.failures.value
    assert report.job_id in panel.report_html.value and "partial" in panel.report_html.value
    assert client.dashboard_link in panel.dashboard.value
    assert panel.symbols_bar.bar_style == "warning"
    assert not panel.start_button.disabled and panel.cancel_button.disabled


def test_the_panel_runs_on_its_own_local_cluster_and_reuses_it(db):
    panel = _panel(db, symbols="600000.SH", n_workers=1, threads_per_worker=1)
    try:
        assert panel.cluster.value == "local"
        panel.start()
        first = panel.wait(120)
        local = panel._local
        assert local is kdist.cluster.shared_cluster(1, 1)  # the shared one, not a new one
        assert first.status == "done" and first.mode == "local"  # its shared local cluster
        assert local.n_workers == 1
        assert first.dashboard_link and first.dashboard_link in panel.dashboard.value
        assert "127.0.0.1" in first.dashboard_link

        panel.symbols_text.value = "000001.SZ"
        panel.start()
        second = panel.wait(120)
        assert second.status == "done" and panel._local is local  # no second one
    finally:
        panel.close()
    assert not kdist.cluster.is_shared(1, 1) and not local.connected()
    assert sorted(kdist.catalog(db)["symbol"]) == ["000001.SZ", "600000.SH"]


def test_all_symbols_and_in_process(db):
    panel = _panel(db, symbols=["AAPL"], all_symbols=True, provider_options={"universe": 7})
    assert panel.symbols_text.disabled and panel.symbols_upload.disabled  # they would not count
    panel.cluster.value = "sync"
    panel.start()
    report = panel.wait(60)
    assert report.mode == "sync" and report.n_symbols == 7 and report.status == "done"
    assert len(kdist.catalog(db)) == 7
    assert panel.dashboard.value.startswith("No Dask dashboard")


def _until(predicate, seconds=60):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _ticks(n, while_=lambda: True) -> list[float]:
    """How long each of ``n`` 20 ms sleeps of this thread takes.

    The objects a long test session has piled up are frozen first: a full garbage collection
    of them (hundreds of ms in the whole suite, a few ms in a fresh kernel) would stall this
    thread whatever the panel does.
    """
    gc.collect()
    gc.freeze()
    try:
        ticks = []
        while len(ticks) < n and while_():
            t = time.perf_counter()
            time.sleep(0.02)
            ticks.append(time.perf_counter() - t)
        return ticks
    finally:
        gc.unfreeze()


def test_the_kernel_stays_free_and_cancel_stops_a_30_second_import(db, client, tmp_path):
    """600 symbols x 0.1 s on 2 threads: about 30 seconds. While it runs the kernel's thread
    keeps its pace; Cancel stops it within seconds and no provider call starts after that."""
    calls = tmp_path / "calls.log"
    symbols = kdist.get_provider("synthetic", universe=600).list_symbols()
    panel = _panel(db, symbols=symbols, client=client, chunk_size=2,
                   provider_options={"latency": 0.1, "call_log": str(calls)})
    panel.start_button.click()
    _until(lambda: panel.symbols_bar.value >= 10)
    assert panel.running and panel.symbols_bar.max == 600

    ticks = _ticks(100)
    assert max(ticks) < 0.25, max(ticks)
    # Failures and progress are drawn while it runs, not only at the end.
    assert 10 < panel.symbols_bar.value < 600 and "symbols/s" in panel.rate_label.value

    clicked = time.monotonic()
    panel.cancel_button.click()
    assert panel.cancel_button.disabled and "Cancelling" in panel.status.value
    report = panel.wait(30)
    assert report.status == "cancelled" and time.monotonic() - clicked < 10

    time.sleep(1.0)
    made = calls.read_text().count("\n")
    time.sleep(1.0)
    assert calls.read_text().count("\n") == made < len(symbols) / 2
    with kdist.Store(db, read_only=True) as store:
        assert store.job(report.job_id)["status"] == "cancelled"
        assert len(store.unfinished_symbols(report.job_id)) > len(symbols) / 2
    assert f"--resume {report.job_id}" in panel.status.value
    assert not panel.resume_button.disabled and panel.symbols_bar.bar_style == "warning"


def test_the_kernel_stays_free_while_the_panel_writes(db, client):
    """No latency: the panel's thread is busy collecting and writing bars, the heaviest the
    client side gets. The kernel's own thread still keeps its pace."""
    symbols = kdist.get_provider("synthetic", universe=1000).list_symbols()
    panel = _panel(db, symbols=symbols, client=client, start="2015-01-01", end="2024-12-31")
    panel.start()
    _until(lambda: panel.rows_label.value != "0 rows written" or not panel.running)
    ticks = _ticks(100, lambda: panel.running)
    panel.cancel()
    panel.wait(60)
    assert len(ticks) > 20 and max(ticks) < 0.5, (len(ticks), max(ticks))


def test_cancel_then_resume_fetches_only_the_rest_with_the_recorded_options(
        db, client, tmp_path, fingerprint):
    calls = tmp_path / "calls.log"
    symbols = kdist.get_provider("synthetic", universe=40).list_symbols()
    panel = _panel(db, symbols=symbols, client=client, chunk_size=2,
                   provider_options={"latency": 0.1, "seed": 3, "call_log": str(calls)})
    panel.start()
    _until(lambda: panel.symbols_bar.value >= 6)
    panel.cancel()
    report = panel.wait(30)
    assert report.status == "cancelled"
    time.sleep(0.5)  # calls in flight when the job stopped
    made = calls.read_text().count("\n")
    with kdist.Store(db, read_only=True) as store:
        left = store.unfinished_symbols(report.job_id)

    # Looking at another provider in between changes nothing: the job's options are its own.
    panel.provider.value = "csv"
    panel.provider.value = "synthetic"
    panel.resume_button.click()
    resumed = panel.wait(120)
    assert resumed.status == "done" and resumed.resumed and resumed.job_id == report.job_id
    assert resumed.n_symbols == len(left)
    fetched = calls.read_text().splitlines()[made:]
    assert sorted(line.split()[0] for line in fetched) == sorted(left)
    expected = kdist.fetch(symbols, start="2023-01-01", end="2023-12-31",
                           provider=kdist.get_provider("synthetic", seed=3))
    stored = kdist.load(db)
    assert len(stored) == len(expected)
    assert stored["close"].tolist() == pytest.approx(
        expected.sort_values(["symbol", "ts"])["close"].tolist())
    assert sorted(fingerprint(db)["symbol"]) == sorted(symbols)


def test_a_second_click_and_cancel_racing_the_end_leave_a_true_status(db):
    panel = _panel(db, symbols="600000.SH 000001.SZ")
    panel.cluster.value = "sync"
    for _ in range(10):
        panel.start_button.click()
        panel.start_button.click()  # ignored while it runs
        while panel.running:
            panel.cancel()
        report = panel.wait(30)
        assert "Cancelling" not in panel.status.value
        assert report.status in ("done", "cancelled")
        assert not panel.start_button.disabled and panel.cancel_button.disabled
    with kdist.Store(db, read_only=True) as store:
        assert len(store.jobs()) == 10


def test_close_during_a_run_returns_at_once_and_stops_the_cluster(db):
    panel = _panel(db, symbols=kdist.get_provider("synthetic", universe=200).list_symbols(),
                   n_workers=1, threads_per_worker=1, provider_options={"latency": 0.1})
    panel.start()
    _until(lambda: panel.symbols_bar.value >= 2)
    cluster = panel._local
    assert kdist.cluster.is_shared(1, 1)
    t = time.monotonic()
    panel.close()
    assert time.monotonic() - t < 1.0
    panel._thread.join(30)
    assert not panel.running and not cluster.connected() and not kdist.cluster.is_shared(1, 1)
    with kdist.Store(db, read_only=True) as store:
        assert store.jobs()["status"].tolist() == ["cancelled"]


def test_panels_of_the_same_size_share_one_local_cluster(db, tmp_path):
    first = _panel(db, symbols="600000.SH", n_workers=1, threads_per_worker=1)
    second = _panel(tmp_path / "other.duckdb", symbols="000001.SZ", n_workers=1,
                    threads_per_worker=1)
    try:
        first.start()
        first.wait(120)
        second.start()
        second.wait(120)
        assert first.report.dashboard_link == second.report.dashboard_link
    finally:
        first.close()
        second.close()


def test_a_named_scheduler_that_does_not_answer_is_an_error_not_a_local_run(db):
    panel = _panel(db, symbols="600000.SH")
    panel.cluster.value = "address"
    panel.address.value = "tcp://127.0.0.1:1"
    panel.start_button.click()
    with pytest.raises(kdist.errors.SchedulerUnreachableError):
        panel.wait(60)
    assert "SchedulerUnreachableError" in panel.status.value and panel.report is None
    assert not Path(db).exists()


def test_bad_input_is_one_line_in_the_panel_and_starts_nothing(db):
    panel = _panel(db, symbols="")
    panel.all_symbols.value = False
    panel.start_button.click()
    assert not panel.running and "No symbols" in panel.status.value
    assert not Path(db).exists()

    panel.symbols_text.value = "600000.SH"
    panel.options["latency"].value = "soon"
    panel.start_button.click()
    assert "latency='soon' is not a valid float" in panel.status.value
    with pytest.raises(InvalidOptionError):
        panel.arguments()

    # An error the import raises (end before start) is shown and kept for wait().
    panel.options["latency"].value = ""
    panel.cluster.value = "sync"
    panel.start_date.value, panel.end_date.value = dt.date(2024, 1, 1), dt.date(2023, 1, 1)
    panel.start_button.click()
    with pytest.raises(kdist.UsageError):
        panel.wait(30)
    assert "is after end 2023-01-01: swap them" in panel.status.value
    assert "#b00020" in panel.status.value
    assert not panel.start_button.disabled

    panel.cluster.value = "address"
    panel.start_date.value = dt.date(2023, 1, 1)
    panel.start_button.click()
    assert "No scheduler address" in panel.status.value and not panel.running


def test_a_tls_address_asks_for_certificates(db, tmp_path):
    panel = _panel(db, symbols="600000.SH")
    panel.cluster.value = "address"
    assert panel.certs.layout.display is None  # shown with the address
    panel.address.value = "tls://127.0.0.1:8786"
    panel.start_button.click()
    with pytest.raises(kdist.UsageError):
        panel.wait(30)
    assert "certificates" in panel.status.value.lower() and not Path(db).exists()

    panel.certs.value = str(tmp_path / "no-such-dir")
    panel.start_button.click()
    with pytest.raises(kdist.KdistError):
        panel.wait(30)
    assert "no-such-dir" in panel.status.value and not Path(db).exists()


def test_constructor_errors_are_kdist_errors():
    with pytest.raises(kdist.errors.UnknownProviderError, match="available"):
        _panel("unused.duckdb", provider="yf")
    with pytest.raises(kdist.errors.InvalidOptionError, match="start"):
        _panel("unused.duckdb", start="the first of May")
    assert _panel("unused.duckdb", start="2023/01/05").start_date.value == dt.date(2023, 1, 5)


def test_dict_options_round_trip(tmp_path):
    columns = {"ts": "日期", "close": "收盘"}
    panel = _panel("unused.duckdb", symbols="600000.SH", provider="csv",
                   provider_options={"root": str(tmp_path), "columns": columns})
    assert panel.options["columns"].value == "ts:日期,close:收盘"
    assert panel._provider().given_options()["columns"] == columns


def test_provider_choice_rebuilds_its_options():
    panel = _panel("unused.duckdb", symbols="600000.SH")
    assert "latency" in panel.options and "root" not in panel.options
    panel.provider.value = "csv"
    assert set(panel.options) == set(kdist.providers.registry.provider_class("csv").options)
    # Each option's field over its help.
    assert [c.children[0] for c in panel.options_box.children] == list(panel.options.values())
    with pytest.raises(kdist.UsageError, match="no option colour"):
        _panel("unused.duckdb", provider_options={"colour": "red"})


def test_an_uploaded_file_fills_the_text_area(db):
    panel = _panel(db, symbols="AAPL")
    panel.symbols_upload.value = ({
        "name": "list.csv", "type": "text/csv", "size": 40, "last_modified": dt.datetime(2024, 1, 1),
        "content": memoryview(b"symbol,name\n600000.SH,a\n000001.SZ,b\n"),
    },)
    assert panel.symbols_text.value == "AAPL, 600000.SH, 000001.SZ"
    assert panel.symbols_upload.value == ()  # taken once, not again at every Start
    assert "Added 2 symbols from list.csv" in panel.status.value
    assert panel.arguments()["symbols"] == ["AAPL", "600000.SH", "000001.SZ"]

    panel.symbols_upload.value = ({
        "name": "bad.csv", "type": "text/csv", "size": 20, "last_modified": dt.datetime(2024, 1, 1),
        "content": memoryview(b'symbol,name\n"600000.SH,a\n'),
    },)
    assert "Cannot read bad.csv as CSV" in panel.status.value
    assert panel.symbols_text.value == "AAPL, 600000.SH, 000001.SZ"


def test_any_error_in_a_button_reaches_the_status_line(db, monkeypatch):
    panel = _panel(db, symbols="600000.SH")
    monkeypatch.setattr(panel, "arguments", lambda: 1 / 0)
    panel.start_button.click()
    assert "ZeroDivisionError" in panel.status.value and not panel.running


def test_symbols_from_an_uploaded_file():
    files = [
        {"name": "list.csv", "content": memoryview("Symbol,name\n600000.SH,浦发银行\n000001.SZ,平安银行\n".encode("gbk"))},
        {"name": "more.txt", "content": memoryview(b"AAPL MSFT\nsz000002")},
    ]
    assert widgets._symbols_from_upload(files) == [
        "600000.SH", "000001.SZ", "AAPL", "MSFT", "sz000002"
    ]


def test_browse_panel_shows_what_is_stored(db):
    kdist.ingest(["600000.SH", "000001.SZ"], start="2021-01-01", end="2023-12-31", db=db,
                 client="sync")
    kdist.ingest(["000001.SZ"], start="2023-01-01", end="2023-12-31", freq="1w", db=db,
                 client="sync")
    panel = widgets.BrowsePanel(db, rows=50)
    assert list(panel.symbol.options) == ["000001.SZ", "600000.SH"]
    assert panel.symbol.value == "000001.SZ" and list(panel.freq.options) == ["1d", "1w"]
    assert panel.freq.value == "1d"
    # The last year by default.
    assert panel.end_date.value == dt.date(2023, 12, 29)
    assert panel.start_date.value == dt.date(2022, 12, 29)
    expected = kdist.load(db, "000001.SZ", start="2022-12-29", end="2023-12-29")
    assert len(panel.bars) == len(expected)
    assert panel.table.value.count("<tr") == 50 + 1  # header and the newest 50
    assert "2023-12-29" in panel.table.value
    # The interactive chart, in an iframe: prices over volume, the last year's daily bars.
    assert "<iframe" in panel.chart.value and "srcdoc=" in panel.chart.value
    assert panel.chart.layout.display is None and panel.picture.layout.display == "none"
    price = panel.figure.select_one({"name": "kdist-price"})
    assert price.title.text == "000001.SZ 1d"
    assert panel.figure.select_one({"name": "kdist-volume"}).x_range is price.x_range
    assert f"{len(expected):,} bars" in panel.status.value

    panel.symbol.value = "600000.SH"
    assert list(panel.freq.options) == ["1d"]
    panel.start_date.value = dt.date(2021, 1, 1)
    assert len(panel.bars) == len(kdist.load(db, "600000.SH"))
    # Three years of daily bars are too many to read: weekly ones are drawn, and said so.
    title = panel.figure.select_one({"name": "kdist-price"}).title.text
    assert title == f"600000.SH 1d: weekly bars from {len(panel.bars):,} daily"

    panel.symbol.value = "000001.SZ"
    panel.freq.value = "1w"
    assert len(panel.bars) == len(kdist.load(db, "000001.SZ", freq="1w"))


def test_browse_panel_symbol_argument(db):
    kdist.ingest(["600000.SH", "000001.SZ"], start="2023-01-01", end="2023-03-31", db=db,
                 client="sync")
    assert widgets.BrowsePanel(db, symbol="sh600000").symbol.value == "600000.SH"
    with pytest.raises(kdist.UsageError, match="AAPL is not stored"):
        widgets.BrowsePanel(db, symbol="AAPL")


def test_browse_panel_shows_intraday_and_a_single_bar(db):
    kdist.ingest(["600000.SH"], start="2024-03-01", end="2024-03-04", freq="5m", db=db,
                 client="sync")
    kdist.ingest(["000001.SZ"], start="2024-03-01", end="2024-03-01", db=db, client="sync")
    for chart in browse.CHARTS:
        panel = widgets.BrowsePanel(db, symbol="600000.SH", chart=chart)
        assert panel.freq.value == "5m" and len(panel.bars) == 2 * 48
        assert _drawn(panel, chart)
        assert "<th>time</th>" in panel.table.value and "2024-03-04 15:00" in panel.table.value
        panel.symbol.value = "000001.SZ"
        assert len(panel.bars) == 1 and _drawn(panel, chart)
        panel.close()


def _drawn(panel, chart) -> bool:
    """Whether the panel shows a chart of that kind, and only that one."""
    if chart == "png":
        return (bytes(panel.picture.value).startswith(b"\x89PNG") and panel.chart.value == ""
                and panel.chart.layout.display == "none" and panel.picture.layout.display is None)
    return ("<iframe" in panel.chart.value and panel.picture.value == b""
            and panel.picture.layout.display == "none" and panel.chart.layout.display is None)


def test_browse_panel_explains_a_missing_or_empty_database(tmp_path):
    panel = widgets.BrowsePanel(tmp_path / "none.duckdb")
    assert "does not exist yet" in panel.status.value
    with kdist.Store(tmp_path / "empty.duckdb"):
        pass
    panel = widgets.BrowsePanel(tmp_path / "empty.duckdb")
    assert "No bars stored" in panel.status.value


def test_browse_panel_refresh_sees_a_new_import(db):
    kdist.ingest(["600000.SH"], start="2023-01-01", end="2023-03-31", db=db, client="sync")
    panel = widgets.BrowsePanel(db)
    kdist.ingest(["000001.SZ"], start="2023-01-01", end="2023-03-31", db=db, client="sync")
    panel.refresh_button.click()
    assert list(panel.symbol.options) == ["000001.SZ", "600000.SH"]
    assert panel.symbol.value == "600000.SH"  # the choice is kept


def test_panel_thread_ends_even_when_the_database_is_locked(db):
    with kdist.Store(db):  # another writer holds the file
        panel = _panel(db, symbols="600000.SH")
        panel.cluster.value = "sync"
        panel.start()
        with pytest.raises(kdist.DatabaseLockedError):
            panel.wait(30)
    assert "in use by another import in this process" in panel.status.value
    assert not panel.running and panel.report is None


def test_the_options_fold_names_what_is_set():
    panel = _panel("unused.duckdb", symbols="600000.SH", provider_options={"latency": 0.05})
    assert panel.options_fold.get_title(0) == "synthetic options: latency=0.05"
    panel.options["fail"].value = "AAPL"
    assert panel.options_fold.get_title(0) == "synthetic options: latency=0.05, fail=AAPL"
    panel.provider.value = "csv"
    assert panel.options_fold.get_title(0) == "csv options: defaults"


def _tree(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _tree(child)


def _null_tooltips(panel) -> list[str]:
    """Controls whose tooltip the front end would show as "null" (see settle_tooltips)."""
    return [f"{type(w).__name__} {getattr(w, 'description', '')!r}" for w in _tree(panel)
            if getattr(w, "tooltip", "") is None and not isinstance(w, W.Button)]


def test_no_control_has_a_null_tooltip(db):
    kdist.ingest(["600000.SH"], start="2023-01-01", end="2023-03-31", db=db, client="sync")
    panel = _panel(db, symbols="600000.SH")
    assert _null_tooltips(panel) == []
    assert "symbol" in panel.symbols_upload.tooltip  # the file upload says what it takes
    assert panel.freq.tooltip and panel.adjust.tooltip and panel.db.tooltip
    assert panel.provider.tooltip == kdist.get_provider("synthetic").description
    panel.provider.value = "csv"  # the options are rebuilt
    assert _null_tooltips(panel) == []
    assert _null_tooltips(widgets.BrowsePanel(db)) == []


def test_provider_options_show_their_help():
    panel = _panel("unused.duckdb", symbols="600000.SH")
    options = kdist.get_provider("synthetic").options
    cells = panel.options_box.children
    assert len(cells) == len(options)
    for cell, (key, option) in zip(cells, options.items()):
        field, help_text = cell.children
        assert field is panel.options[key] and field.tooltip == option.help
        assert "kdist-option-help" in help_text.value
        assert html.escape(option.help, quote=False) in help_text.value
    panel.provider.value = "csv"
    texts = [cell.children[1].value for cell in panel.options_box.children]
    assert any("directory with one file per symbol" in text for text in texts)


def test_cancel_is_orange_only_while_it_can_be_clicked(db):
    panel = _panel(db, symbols="600000.SH, 000001.SZ", provider_options={"latency": 1.0})
    assert panel.cancel_button.disabled and panel.cancel_button.button_style == ""
    panel.cluster.value = "sync"
    panel.start()
    assert not panel.cancel_button.disabled and panel.cancel_button.button_style == "warning"
    panel.cancel()
    assert panel.cancel_button.disabled and panel.cancel_button.button_style == ""
    assert panel.wait(30).status == "cancelled"
    assert panel.cancel_button.disabled and panel.cancel_button.button_style == ""


def test_the_bars_show_done_of_total(monkeypatch):
    # Every event drawn: this is about what the bars say (tests/test_timings.py shows that
    # a job's many events are drawn a few times a second).
    monkeypatch.setattr(widgets, "REFRESH_S", 0.0)
    panel = _panel("unused.duckdb", symbols="600000.SH")
    progress = widgets._PanelProgress(panel)
    progress.on_start({"job_id": "j", "n_chunks": 3, "n_symbols": 1200, "mode": "sync"})
    assert (panel.chunks_count.value, panel.symbols_count.value) == ("0/3", "0/1,200")
    progress.on_progress(150, 1200)  # symbols done inside the first chunk, still running
    assert (panel.chunks_count.value, panel.symbols_count.value) == ("0/3", "150/1,200")
    progress.on_chunks(1, 3)
    progress.on_symbols([{"symbol": f"{i:06d}.SZ", "status": "ok"} for i in range(400)])
    progress.on_progress(400, 1200)
    assert (panel.chunks_count.value, panel.symbols_count.value) == ("1/3", "400/1,200")
    assert panel.symbols_bar.value == 400 and panel.symbols_bar.max == 1200
    progress.set_size(1000)  # the job shrank: what it counts now
    assert panel.symbols_count.value == "400/1,000"
    progress.on_chunks(4, 4)  # a retried chunk added a task
    assert panel.chunks_count.value == "4/4" and panel.chunks_bar.max == 4


def test_a_vendor_that_is_not_installed_is_listed_and_cannot_start(monkeypatch):
    from kdist.providers.akshare_ import AkshareProvider

    monkeypatch.setattr(AkshareProvider, "requires", ("kdist_test_no_such_module",))
    panel = _panel("unused.duckdb", symbols="600000.SH")
    labels = dict((value, label) for label, value in panel.provider.options)
    assert labels["akshare"] == "akshare (not installed: pip install 'kdist[akshare]')"
    assert labels["synthetic"] == "synthetic"
    assert not panel.start_button.disabled

    panel.provider.value = "akshare"
    assert panel.start_button.disabled
    assert 'pip install "kdist[akshare]"' in panel.status.value
    assert list(panel.options) == list(AkshareProvider.options)  # still shown, with help
    with pytest.raises(kdist.errors.MissingDependencyError):
        panel.start()
    panel.provider.value = "synthetic"
    assert not panel.start_button.disabled and "Ready." in panel.status.value

    chosen = _panel("unused.duckdb", symbols="600000.SH", provider="akshare")
    assert chosen.provider.value == "akshare" and chosen.start_button.disabled
    assert "pip install" in chosen.status.value
