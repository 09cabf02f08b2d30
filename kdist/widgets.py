"""Notebook panels: start an import and look at the stored bars without writing code.

:class:`IngestPanel` collects the arguments of :func:`kdist.ingest` (symbols, dates, freq,
adjust, provider and its options, cluster, database), runs the import in a background thread
so the kernel stays free, and shows its progress through the same
:class:`~kdist.progress.Callback` the terminal bar uses. :class:`BrowsePanel` reads what is
stored (:func:`kdist.catalog`, :func:`kdist.load`) and draws it with
:func:`kdist.plotting.candles`. The panels hold no import logic of their own: everything they do
can be done with the public API, and ``import kdist`` never imports this module or ipywidgets.

Every control is a public attribute, so a panel can be driven from code and tested headless::

    panel = IngestPanel(db="data/kdist.duckdb", symbols=["600000.SH", "000001.SZ"])
    panel.start_button.click()
    report = panel.wait()
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import html
import io
import re
import threading
import time
from pathlib import Path

try:
    import ipywidgets as W
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        'kdist.widgets needs ipywidgets: pip install "kdist[notebook]"'
    ) from exc

from .cluster import close_shared, is_shared, shared_cluster
from .errors import ClusterError, KdistError, UsageError
from .outcome import Status
from .progress import Callback
from .providers import available_providers, get_provider
from .providers.registry import provider_class
from .runner import ingest
from .schema import Adjust, Freq, normalise_symbol, to_date
from .store import DEFAULT_DB

__all__ = ["BrowsePanel", "IngestPanel"]

#: Seconds between two refreshes of the slower parts of a panel (rates, failures table).
REFRESH_S = 0.25
#: Failures listed in the panel; the ledger keeps them all.
MAX_FAILURES_SHOWN = 50

def _date(value, name: str) -> dt.date | None:
    return None if value is None or value == "" else to_date(value, name=name).date()


def _close_tree(widget):
    """Close a widget and every widget inside it (``close`` alone leaves the children)."""
    for child in getattr(widget, "children", ()):
        _close_tree(child)
    W.Widget.close(widget)  # not a panel's own close(), which calls this


def _error_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _symbols_from_upload(files) -> list[str]:
    """Symbols from uploaded .txt/.csv files: a ``symbol`` column if there is one, else
    every token separated by commas, spaces or new lines."""
    symbols: list[str] = []
    for f in files:
        raw = bytes(f["content"])
        for encoding in ("utf-8-sig", "gbk"):
            try:
                text = raw.decode(encoding)
                break
            except UnicodeDecodeError:
                continue
        else:
            raise UsageError(f"Cannot read {f['name']}: save it as UTF-8 or GBK text")
        lines = text.splitlines()
        header = [c.strip().lower() for c in lines[0].split(",")] if lines else []
        if "symbol" in header and str(f["name"]).lower().endswith(".csv"):
            import pandas as pd

            try:
                table = pd.read_csv(io.StringIO(text), dtype=str)
            except (ValueError, pd.errors.ParserError) as exc:
                first = str(exc).splitlines()[0]
                raise UsageError(f"Cannot read {f['name']} as CSV ({first})") from None
            column = table.columns[[c.strip().lower() for c in table.columns].index("symbol")]
            symbols += table[column].dropna().str.strip().tolist()
        else:
            symbols += [t for t in re.split(r"[\s,;]+", text) if t]
    return symbols


class _PanelProgress(Callback):
    """Moves an :class:`IngestPanel`'s bars and labels as the job reports progress.

    Called from the import's thread. Bars follow every event; the rate and the failures table
    are redrawn at most every :data:`REFRESH_S` seconds, and once more at the end.
    """

    def __init__(self, panel: IngestPanel):
        self.panel = panel
        self.t0 = time.perf_counter()
        self.symbols_done = 0
        self.failures: list[tuple[str, str]] = []
        self.n_failed = 0
        self._drawn = 0.0

    def on_start(self, info):
        p = self.panel
        self.t0 = time.perf_counter()
        p.job_id = info["job_id"]
        p.chunks_bar.max = max(1, info["n_chunks"])
        p.symbols_bar.max = max(1, info["n_symbols"])
        link = info.get("dashboard_link")
        p.dashboard.value = (
            f"Dask dashboard: <a href='{html.escape(link)}' target='_blank'>"
            f"{html.escape(link)}</a>" if link else "No Dask dashboard: running in this process"
        )
        p._say(
            f"Running job <b>{html.escape(info['job_id'])}</b>: {info['n_symbols']} symbols in "
            f"{info['n_chunks']} tasks on {html.escape(info['mode'])}"
        )

    def set_size(self, n_symbols):
        self.panel.symbols_bar.max = max(1, n_symbols)

    def on_chunks(self, done, total):
        bar = self.panel.chunks_bar
        bar.max = max(1, total)
        bar.value = done

    def on_symbols(self, outcomes):
        self.symbols_done += len(outcomes)
        self.panel.symbols_bar.value = min(self.symbols_done, self.panel.symbols_bar.max)
        for o in outcomes:
            if Status(o["status"]).counts_as_failed:
                self.n_failed += 1
                if len(self.failures) < MAX_FAILURES_SHOWN:
                    self.failures.append((o["symbol"], str(o.get("error") or o["status"])))
        self._draw()

    def on_write(self, rows, total_rows):
        self.panel.rows_label.value = f"{total_rows:,} rows written"
        self._draw()

    def on_finish(self, report):
        self._draw(force=True)

    def _draw(self, force=False):
        now = time.perf_counter()
        if not force and now - self._drawn < REFRESH_S:
            return
        self._drawn = now
        elapsed = max(now - self.t0, 1e-9)
        self.panel.rate_label.value = (
            f"{self.symbols_done / elapsed:,.1f} symbols/s, {elapsed:,.1f} s"
        )
        self.panel.failures.value = self._failures_html()

    def _failures_html(self) -> str:
        if not self.failures:
            return ""
        rows = "".join(
            f"<tr><td>{html.escape(s)}</td><td>{html.escape(e)}</td></tr>"
            for s, e in self.failures
        )
        more = self.n_failed - len(self.failures)
        db = html.escape(self.panel.db.value, quote=False)
        more = (f"<p>... and {more} more: see <code>kdist jobs {self.panel.job_id} --db {db}"
                f"</code></p>" if more > 0 else "")
        return (
            f"<b>Failed or skipped ({self.n_failed})</b>"
            f"<table class='kdist-failures-table'><tr><th>symbol</th><th>error</th></tr>"
            f"{rows}</table>{more}"
        )


class IngestPanel(W.VBox):
    """A panel that imports bars into a DuckDB file: pick, click Start, watch.

    The arguments give the controls their first values; everything can be changed in the panel.

    Parameters
    ----------
    db
        Path of the DuckDB file.
    symbols
        Symbols to fill the text area with.
    all_symbols
        Tick "all symbols": import every symbol the provider lists (the text area and the
        file upload are then disabled).
    start, end, freq, adjust, provider
        As for :func:`kdist.ingest`.
    provider_options
        The provider's options, e.g. ``{"latency": 0.05}`` for ``synthetic``.
    client
        A ``distributed.Client`` to run on; adds "this notebook's client" to the cluster
        choices and selects it.
    certs
        For a ``tls://`` scheduler address: the directory ``kdist cluster certs`` wrote.
    n_workers, threads_per_worker
        Size of the local cluster started on the first run and kept for later ones (panels of
        the same size share it; :meth:`close` stops it). It speaks TLS, as kdist's local
        cluster does (see :func:`kdist.cluster.resolve_cluster`).
    **ingest_options
        Passed to :func:`kdist.ingest` unchanged (``chunk_size``, ``retries``, ...);
        ``security=False`` also starts the local cluster over plain TCP, which every user
        of this machine can reach.

    Attributes
    ----------
    report
        The :class:`~kdist.report.Report` of the last finished run, or None.
    error
        The exception the last run raised, or None.
    job_id
        The id of the running or last job.
    """

    def __init__(self, db=DEFAULT_DB, *, symbols=None, all_symbols=False, start=None, end=None,
                 freq="1d", adjust="none", provider="synthetic", provider_options=None,
                 client=None, n_workers=2, threads_per_worker=1, certs=None, **ingest_options):
        self._client = client
        self._ingest_options = ingest_options
        self._local = None  # the shared local cluster last used
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        # Start, Cancel and the end of a run change the buttons and the status: one at a time.
        self._lock = threading.Lock()
        self._closing = False
        # Bad arguments fail here, as kdist errors, before any widget exists.
        name = provider if isinstance(provider, str) else provider.name
        provider_class(name)  # UnknownProviderError lists the names
        first_start, first_end = _date(start, "start"), _date(end, "end")
        self.report = None
        self.error: BaseException | None = None
        self.job_id: str | None = None
        self._build_symbol_controls([symbols] if isinstance(symbols, str) else symbols,
                                    all_symbols)
        self._build_bar_controls(first_start, first_end, freq, adjust)
        self._build_provider_controls(name, provider_options or (
            {} if isinstance(provider, str) else provider.given_options()))
        self._build_cluster_controls(n_workers, threads_per_worker, certs, db)
        self._build_run_controls()
        self._wire_controls()
        self._add_classes()
        super().__init__(self._layout())

    # -- building the controls ------------------------------------------------------------

    def _build_symbol_controls(self, symbols, all_symbols):
        self.symbols_text = W.Textarea(
            value=", ".join(symbols or []), placeholder="600000.SH, 000001.SZ, AAPL ...",
            description="Symbols", layout=W.Layout(width="100%", height="80px"))
        self.symbols_upload = W.FileUpload(accept=".txt,.csv", multiple=True,
                                           description="Symbols file")
        self.all_symbols = W.Checkbox(value=all_symbols, description="all symbols",
                                      indent=False, tooltip="every symbol the provider lists")

    def _build_bar_controls(self, first_start, first_end, freq, adjust):
        self.start_date = W.DatePicker(value=first_start, description="Start")
        self.end_date = W.DatePicker(value=first_end, description="End")
        self.freq = W.Dropdown(options=[f.value for f in Freq], value=Freq.parse(freq).value,
                               description="Freq")
        self.adjust = W.Dropdown(options=[a.value for a in Adjust],
                                 value=Adjust.parse(adjust).value, description="Adjust")

    def _build_provider_controls(self, name: str, values: dict):
        names = [p["name"] for p in available_providers() if p["installed"]]
        self.provider = W.Dropdown(options=names, value=name, description="Provider")
        self.options: dict[str, W.ValueWidget] = {}
        # The provider's options, three to a row, folded away under a summary of those set.
        self.options_box = W.GridBox(layout=W.Layout(
            grid_template_columns="repeat(3, minmax(0, 1fr))", width="100%"))
        self.options_fold = W.Accordion(children=[self.options_box], selected_index=None)
        self._build_options(name, values)

    def _build_cluster_controls(self, n_workers, threads_per_worker, certs, db):
        choices = [("local cluster", "local"), ("scheduler address", "address"),
                   ("in this process", "sync")]
        if self._client is not None:
            choices.insert(0, ("this notebook's client", "client"))
        self.cluster = W.ToggleButtons(options=choices, value=choices[0][1], description="Run on")
        self.n_workers = W.BoundedIntText(value=n_workers, min=1, max=64, description="Workers")
        self.threads = W.BoundedIntText(value=threads_per_worker, min=1, max=64,
                                        description="Threads")
        self.certs = W.Text(value="" if certs is None else str(certs), description="Certificates",
                            placeholder="for tls://: a directory from kdist cluster certs")
        self.address = W.Text(placeholder="tcp://scheduler:8786 or tls://...",
                              description="Address")
        self.db = W.Text(value=str(db), description="Database", layout=W.Layout(width="100%"))

    def _build_run_controls(self):
        """The buttons, and what shows a run: status, dashboard link, bars and tables."""
        self.start_button = W.Button(description="Start", button_style="primary", icon="play")
        self.cancel_button = W.Button(description="Cancel", button_style="warning",
                                      icon="stop", disabled=True)
        self.resume_button = W.Button(description="Resume", icon="redo", disabled=True,
                                      tooltip="Fetch what the last job left unfinished")
        self.status = W.HTML("Ready.")
        self.dashboard = W.HTML()
        self.chunks_bar = W.IntProgress(value=0, min=0, max=1, description="Tasks",
                                        layout=W.Layout(width="60%"))
        self.symbols_bar = W.IntProgress(value=0, min=0, max=1, description="Symbols",
                                         layout=W.Layout(width="60%"))
        self.rows_label = W.Label("0 rows written")
        self.rate_label = W.Label("")
        self.failures = W.HTML()
        self.report_html = W.HTML()

    def _wire_controls(self):
        """Connect the controls to the panel's methods (no closures). The buttons name theirs:
        it is looked up at each click, so a method replaced later is the one called."""
        self.all_symbols.observe(self._show_symbol_fields, "value")
        self.symbols_upload.observe(self._take_upload, "value")
        self.provider.observe(self._choose_provider, "value")
        self.cluster.observe(self._show_cluster_fields, "value")
        self.start_button.on_click(functools.partial(self._click, "start"))
        self.cancel_button.on_click(functools.partial(self._click, "cancel"))
        self.resume_button.on_click(functools.partial(self._click, "resume"))

    def _add_classes(self):
        """The CSS classes a page's styles and the browser tests find the widgets by."""
        for widget, name in [
            (self, "kdist-ingest-panel"), (self.start_button, "kdist-start"),
            (self.cancel_button, "kdist-cancel"), (self.resume_button, "kdist-resume"),
            (self.symbols_bar, "kdist-symbols-bar"), (self.chunks_bar, "kdist-chunks-bar"),
            (self.status, "kdist-status"), (self.failures, "kdist-failures"),
            (self.report_html, "kdist-report"), (self.dashboard, "kdist-dashboard")]:
            widget.add_class(name)

    def _layout(self) -> list:
        """The panel's rows, top to bottom, with the fields the choices hide or disable set."""
        self._cluster_fields = W.HBox([self.n_workers, self.threads, self.address, self.certs])
        self._show_cluster_fields()
        self._show_symbol_fields()
        return [
            W.HTML("<h3 style='margin:0'>kdist import</h3>"), self.symbols_text,
            W.HBox([self.symbols_upload, self.all_symbols]),
            W.HBox([W.VBox([self.start_date, self.end_date]), W.VBox([self.freq, self.adjust])]),
            self.provider, self.options_fold, self.cluster, self._cluster_fields, self.db,
            W.HBox([self.start_button, self.cancel_button, self.resume_button]),
            self.status, self.dashboard, self.chunks_bar, self.symbols_bar,
            W.HBox([self.rows_label, self.rate_label],
                   layout=W.Layout(justify_content="space-between", width="60%")),
            self.failures, self.report_html,
        ]

    def _build_options(self, name: str, values: dict):
        cls = provider_class(name)
        unknown = set(values) - set(cls.options)
        if unknown:
            raise UsageError(
                f"Provider {name!r} has no option {', '.join(sorted(unknown))}; "
                f"it has: {', '.join(cls.options) or 'none'}"
            )
        for widget in self.options.values():
            widget.close()
        self.options = {}
        for key, opt in cls.options.items():
            given = values.get(key)
            if opt.type is bool:
                widget = W.Checkbox(value=bool(opt.default if given is None else given),
                                    description=key, indent=False)
            else:
                widget = W.Text(value=opt.format(given),
                                placeholder="" if opt.default is None else str(opt.default),
                                description=key)
            widget.tooltip = opt.help
            widget.layout.width = "auto"
            widget.observe(lambda _: self._title_options(), "value")
            self.options[key] = widget
        self.options_box.children = list(self.options.values())
        self._title_options()

    def _choose_provider(self, change):
        self._build_options(change["new"], {})

    def _title_options(self):
        """Name the options that differ from the provider's defaults in the fold's title."""
        defaults = provider_class(self.provider.value).options
        given = [
            f"{k}={w.value}" for k, w in self.options.items()
            if (w.value.strip() if isinstance(w.value, str) else w.value != defaults[k].default)
        ]
        summary = ", ".join(given) if given else "defaults"
        self.options_fold.set_title(0, f"{self.provider.value} options: {summary}")

    def _show_symbol_fields(self, _change=None):
        everything = self.all_symbols.value
        self.symbols_text.disabled = self.symbols_upload.disabled = everything

    def _take_upload(self, _change=None):
        """Move an uploaded file's symbols into the text area, where they can be seen and
        edited, and clear the upload so they are not added again."""
        if not self.symbols_upload.value:
            return
        try:
            found = _symbols_from_upload(self.symbols_upload.value)
        except UsageError as exc:
            self._say(html.escape(_error_line(exc), quote=False), error=True)
        else:
            typed = self.symbols_text.value.strip()
            self.symbols_text.value = ", ".join(([typed] if typed else []) + found)
            self._say(f"Added {len(found)} symbols from "
                      f"{html.escape(', '.join(f['name'] for f in self.symbols_upload.value))}.")
        self.symbols_upload.value = ()

    def _show_cluster_fields(self, _change=None):
        mode = self.cluster.value
        self.n_workers.layout.display = self.threads.layout.display = (
            None if mode == "local" else "none")
        self.address.layout.display = self.certs.layout.display = (
            None if mode == "address" else "none")

    # -- what the controls say --------------------------------------------------------------

    def arguments(self) -> dict:
        """The keyword arguments of :func:`kdist.ingest` the controls describe (without
        ``client``), so a run can be repeated from code."""
        if self.all_symbols.value:
            symbols = None
        else:
            symbols = [t for t in re.split(r"[\s,;]+", self.symbols_text.value) if t]
            if not symbols:
                raise UsageError(
                    "No symbols: type some, upload a file of them, or tick 'all symbols'"
                )
        return {
            "symbols": symbols,
            "start": self.start_date.value,
            "end": self.end_date.value,
            "freq": self.freq.value,
            "adjust": self.adjust.value,
            "provider": self._provider(),
            "db": self.db.value.strip() or DEFAULT_DB,
            **self._ingest_options,
        }

    def _provider(self):
        """The provider chosen, with the options typed into the panel."""
        cls = provider_class(self.provider.value)
        options = {}
        for key, widget in self.options.items():
            value = widget.value
            if isinstance(value, str):
                if not value.strip():
                    continue
                value = cls.options[key].coerce(key, value.strip())
            elif value == cls.options[key].default:
                continue
            options[key] = value
        return get_provider(self.provider.value, **options)

    def _client_for_run(self):
        mode = self.cluster.value
        if mode == "client":
            return self._client
        if mode == "sync":
            return "sync"
        if mode == "address":
            return self.address.value.strip()
        size = (self.n_workers.value, self.threads.value)
        security = self._ingest_options.get("security")
        if not is_shared(*size, security=security):
            self._say(f"Starting a local cluster of {size[0]} workers x {size[1]} threads ...")
        # Panels of the same size share one cluster: re-running the cell that builds a
        # panel does not start another.
        self._local = shared_cluster(*size, security=security)
        return self._local.client

    # -- running ------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether an import is running in this panel."""
        return self._thread is not None and self._thread.is_alive()

    def start(self):
        """Start an import with the current values (what the Start button does)."""
        arguments = self.arguments()  # bad input is reported before anything starts
        if self.cluster.value == "address" and not self.address.value.strip():
            raise UsageError("No scheduler address: give one like tcp://host:8786")
        self._launch(arguments)

    def resume(self):
        """Fetch what the last job left unfinished (what the Resume button does).

        The job keeps everything it recorded: symbols, dates, freq, adjust, provider and
        provider options, so its bars all come from the same source settings.
        """
        if self.job_id is None:
            raise UsageError("Nothing to resume: no job has run in this panel")
        self._launch({"resume": self.job_id, "db": self.db.value.strip() or DEFAULT_DB,
                      **self._ingest_options})

    def cancel(self):
        """Stop the running import: what finished is kept and the job can be resumed.

        On a cluster the tasks in flight are cancelled at once; in this process the import
        stops after the provider call in progress returns.
        """
        with self._lock:
            if not self.running or self._cancel.is_set():
                return
            self._cancel.set()
            self.cancel_button.disabled = True
            self._say("Cancelling: waiting for the calls in flight ...")

    def wait(self, timeout: float | None = None):
        """Wait for the running import and return its report; raise what it raised.

        Raises ``TimeoutError`` if it is still running after ``timeout`` seconds.
        """
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"The import is still running after {timeout:g} s")
        if self.error is not None:
            raise self.error
        return self.report

    def close(self):
        """Cancel a running import, close the widgets and stop the panel's local cluster.

        Returns at once: a running import stops in the background and the cluster is stopped
        when it has.
        """
        with self._lock:
            self._closing = True
            running = self.running
        if running:
            self.cancel()  # _run's end stops the cluster
        else:
            self._stop_local()
        _close_tree(self)

    def _stop_local(self):
        if self._local is not None:
            close_shared(self._local)
            self._local = None

    def _click(self, action: str, _button=None):
        """A button's handler: every error ends up in the status line, never in a log."""
        try:
            getattr(self, action)()
        except Exception as exc:
            self._say(html.escape(_error_line(exc), quote=False), error=True)

    def _launch(self, arguments: dict):
        with self._lock:
            if self.running:
                return  # a second click while it runs
            self._cancel = threading.Event()
            self.report = self.error = None
            self.chunks_bar.value = self.symbols_bar.value = 0
            for bar in (self.chunks_bar, self.symbols_bar):
                bar.bar_style = ""
            self.rows_label.value = "0 rows written"
            self.rate_label.value = self.failures.value = self.report_html.value = ""
            self.start_button.disabled = self.resume_button.disabled = True
            self.cancel_button.disabled = False
            self._say("Starting ...")
            self._thread = threading.Thread(
                target=self._run, args=(arguments,), name="kdist-panel", daemon=True
            )
            self._thread.start()

    def _run(self, arguments: dict):
        progress = _PanelProgress(self)
        try:
            client = self._client_for_run()
            certs = self.certs.value.strip() if self.cluster.value == "address" else ""
            # security may also be among the ingest options (False: no TLS for local clusters).
            arguments = {**arguments, "security": certs or arguments.get("security")}
            # A scheduler the user named must be used or fail: never a silent local stand-in.
            self.report = ingest(**arguments, client=client, callback=progress,
                                 cancel=self._cancel, fallback=self.cluster.value == "local")
        except BaseException as exc:  # shown in the panel; wait() re-raises it
            self.error = exc
            self.report = getattr(exc, "report", None)
        finally:
            with self._lock:
                self._finished()
            if self._closing:
                self._stop_local()

    def _finished(self):
        report, error = self.report, self.error
        if report is not None:
            self.job_id = report.job_id
            self.report_html.value = report.to_html()
        style = {"done": "success", "partial": "warning", "cancelled": "warning"}.get(
            getattr(report, "status", None), "danger")
        self.symbols_bar.bar_style = self.chunks_bar.bar_style = style
        if error is not None:
            self._say(html.escape(_error_line(error), quote=False), error=True)
        elif report.status == "cancelled":
            self._say(
                f"Cancelled: what finished is stored. Click Resume, or run "
                f"<code>kdist ingest --resume {html.escape(report.job_id)} "
                f"--db {html.escape(report.db)}</code>"
            )
        else:
            self._say(f"Finished job <b>{html.escape(report.job_id)}</b>: {report.status}, "
                      f"{report.rows_written:,} rows in {report.elapsed_s:.1f} s")
        if report is not None:
            resumable = report.status in ("cancelled", "interrupted", "partial")
        else:  # a lost cluster: the job is recorded as interrupted
            resumable = isinstance(error, ClusterError) and self.job_id is not None
        self.resume_button.disabled = not resumable
        self.start_button.disabled = False
        self.cancel_button.disabled = True

    def _say(self, text: str, error: bool = False):
        colour = "#b00020" if error else "inherit"
        self.status.value = f"<span style='color:{colour}'>{text}</span>"


class BrowsePanel(W.VBox):
    """A panel to look at stored bars: pick symbol, freq, adjust and dates; see a candlestick
    chart with volume and the table of bars.

    Parameters
    ----------
    db
        Path of the DuckDB file (opened read-only, only while reading).
    symbol
        The symbol shown first (default: the first stored one).
    rows
        How many bars the table lists (the newest first).
    """

    def __init__(self, db=DEFAULT_DB, *, symbol=None, rows=200):
        self.db = Path(db)
        self.rows = rows
        self.catalog = None
        self.bars = None
        self.symbol = W.Dropdown(description="Symbol")
        self.freq = W.Dropdown(description="Freq")
        self.adjust = W.Dropdown(description="Adjust")
        self.start_date = W.DatePicker(description="From")
        self.end_date = W.DatePicker(description="To")
        self.refresh_button = W.Button(description="Refresh", icon="refresh",
                                       tooltip="Read the catalog again after an import")
        self.status = W.HTML()
        self.chart = W.Image(format="png", layout=W.Layout(max_width="100%"))
        self.figure = None
        self.table = W.HTML(layout=W.Layout(max_height="320px", overflow="auto"))
        for widget, name in [(self, "kdist-browse-panel"), (self.status, "kdist-browse-status"),
                             (self.table, "kdist-bars-table"), (self.chart, "kdist-chart")]:
            widget.add_class(name)
        super().__init__([
            W.HTML("<h3 style='margin:0'>kdist bars</h3>"),
            W.HBox([self.symbol, self.freq, self.adjust, self.refresh_button]),
            W.HBox([self.start_date, self.end_date]),
            self.status, self.chart, self.table,
        ])
        self._quiet = False
        self.symbol.observe(lambda _: self._choose_series(), "value")
        self.freq.observe(lambda _: self._choose_series(), "value")
        self.adjust.observe(lambda _: self._choose_range(), "value")
        for picker in (self.start_date, self.end_date):
            picker.observe(lambda _: self.show(), "value")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.refresh(symbol)

    def refresh(self, symbol=None):
        """Read the catalog again (after an import) and show the chosen symbol."""
        from .store import catalog

        try:
            if not self.db.exists():
                raise UsageError(f"{self.db} does not exist yet: import some bars first")
            self.catalog = catalog(self.db)
        except KdistError as exc:
            self.catalog = None
            self._say(html.escape(_error_line(exc), quote=False), error=True)
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
            adjusts = sorted(series.loc[series["freq"] == self.freq.value, "adjust"].unique())
            self.adjust.options = adjusts
            if self.adjust.value not in adjusts:
                self.adjust.value = "none" if "none" in adjusts else adjusts[0]
        self._choose_range()

    def _choose_range(self):
        if self._quiet or self.catalog is None:
            return
        s = self._series()
        row = s[(s["freq"] == self.freq.value) & (s["adjust"] == self.adjust.value)].iloc[0]
        first, last = _date(row["first"], "first"), _date(row["last"], "last")
        with self._hold():
            # The last year by default: a readable chart; widen "From" for more.
            self.start_date.value = max(first, last - dt.timedelta(days=365))
            self.end_date.value = last
        self.show()

    def show(self):
        """Load the chosen bars and draw the chart and the table."""
        if self._quiet or self.catalog is None or self.symbol.value is None:
            return
        from .plotting import candles
        from .store import load

        try:
            self.bars = load(self.db, self.symbol.value, start=self.start_date.value,
                             end=self.end_date.value, freq=self.freq.value,
                             adjust=self.adjust.value)
        except KdistError as exc:
            self._say(html.escape(_error_line(exc), quote=False), error=True)
            return
        bars = self.bars
        if bars.empty:
            self.chart.value, self.figure = b"", None
            self._say("No bars in that range.", error=True)
            self.table.value = ""
            return
        self._say(
            f"{html.escape(self.symbol.value)} {self.freq.value} {self.adjust.value}: "
            f"{len(bars):,} bars from {bars['ts'].iloc[0]:%Y-%m-%d} to "
            f"{bars['ts'].iloc[-1]:%Y-%m-%d}, source {html.escape(str(bars['source'].iloc[0]))}"
        )
        # A PNG in an Image widget shows the same in a kernel, a browser and a headless test,
        # whatever matplotlib backend is active.
        try:
            self.figure = candles(bars, title=f"{self.symbol.value} {self.freq.value}")
            buffer = io.BytesIO()
            self.figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
            self.chart.value = buffer.getvalue()
            _close(self.figure)
        except Exception as exc:  # an observer's error would only reach a hidden log
            self.chart.value, self.figure = b"", None
            self._say(html.escape(_error_line(exc), quote=False), error=True)
        newest = bars.iloc[::-1].head(self.rows).drop(columns=["symbol"])
        self.table.value = newest.to_html(index=False, float_format=lambda v: f"{v:,.2f}",
                                          classes="kdist-bars", border=0)

    def _say(self, text: str, error: bool = False):
        colour = "#b00020" if error else "inherit"
        self.status.value = f"<span style='color:{colour}'>{text}</span>"

    def close(self):
        """Close the panel and every widget in it."""
        _close_tree(self)


def _close(figure):
    """Forget a figure pyplot may be tracking, so charts drawn for the panel do not pile up
    (or show a second time under the inline backend)."""
    import matplotlib.pyplot as plt

    plt.close(figure)
