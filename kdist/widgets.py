"""Notebook panels: start an import and look at the stored bars without writing code.

:class:`IngestPanel` collects the arguments of :func:`kdist.ingest` (symbols, dates, freq,
adjust, provider and its options, cluster, database), runs the import in a background thread
so the kernel stays free, and shows its progress through the same
:class:`~kdist.progress.Callback` the terminal bar uses. :class:`BrowsePanel` (from
:mod:`kdist.browse`) reads what is stored and charts it. The panels hold no import logic of
their own: everything they do can be done with the public API, and ``import kdist`` never
imports this module or ipywidgets.

Every control is a public attribute, so a panel can be driven from code and tested headless::

    panel = IngestPanel(db="data/kdist.duckdb", symbols=["600000.SH", "000001.SZ"])
    panel.start_button.click()
    report = panel.wait()
"""

from __future__ import annotations

import functools
import html
import io
import re
import threading
import time

from ._panels import (
    W,
    close_tree,
    date_or_none,
    error_html,
    settle_tooltips,
    status_html,
)
from .browse import BrowsePanel
from .cluster import close_shared, is_shared, shared_cluster
from .errors import ClusterError, KdistError, UsageError
from .outcome import Status
from .progress import Callback, Throttle, dashboard_html, failed_in
from .report import counted
from .providers import available_providers, get_provider
from .providers.registry import provider_class
from .runner import ingest
from .schema import Adjust, Freq
from .store import DEFAULT_DB

__all__ = ["BrowsePanel", "IngestPanel"]

#: Seconds between two refreshes of the slower parts of a panel (rates, failures table).
REFRESH_S = 0.25
#: Failures listed in the panel; the ledger keeps them all.
MAX_FAILURES_SHOWN = 50


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


def _why_not(name: str) -> str:
    """Why a provider cannot run, and what installs it: the error getting it raises."""
    try:
        get_provider(name)
    except KdistError as exc:  # MissingDependencyError, or a plug-in that does not load
        return str(exc)
    return f"Provider {name!r} is not installed"


def _provider_label(row: dict) -> str:
    """A provider's name in the list; one that is not installed says what installs it."""
    if row["installed"]:
        return row["name"]
    if row["extra"]:
        return f"{row['name']} (not installed: pip install 'kdist[{row['extra']}]')"
    return f"{row['name']} (cannot be loaded)"


def _help_html(text: str) -> str:
    """An option's help, small and quiet, under its field."""
    return ("<div class='kdist-option-help' style='font-size:11px; line-height:1.3; "
            f"opacity:0.7; margin:0 0 6px 4px'>{html.escape(text, quote=False)}</div>")


def _move(bar, count, done: int, total: int) -> None:
    """Set a progress bar and its ``done/total`` label."""
    done = min(done, total)
    bar.max = max(1, total)
    bar.value = done
    count.value = f"{done:,}/{total:,}"


class _PanelProgress(Callback):
    """Moves an :class:`IngestPanel`'s bars and labels as the job reports progress.

    Called from the import's thread. Every event updates the counts; the bars, the rate and
    the failures table are redrawn from them at most every :data:`REFRESH_S` seconds (each
    widget value set is a message to the front end, and a job of many chunks sends
    thousands of events), when the size changes, and once more at the end.
    """

    def __init__(self, panel: IngestPanel):
        self.panel = panel
        self.t0 = time.perf_counter()
        self.symbols_done = 0
        self.n_symbols = 0
        self.chunks_done = self.n_chunks = 0
        self.rows_written: int | None = None  # unchanged until the first batch is written
        self.failures: list[tuple[str, str]] = []
        self.n_failed = 0
        self._due = Throttle(REFRESH_S)

    def on_start(self, info):
        p = self.panel
        self.t0 = time.perf_counter()
        p.job_id = info["job_id"]
        self.n_symbols, self.n_chunks = info["n_symbols"], info["n_chunks"]
        _move(p.chunks_bar, p.chunks_count, 0, info["n_chunks"])
        _move(p.symbols_bar, p.symbols_count, self.symbols_done, self.n_symbols)
        link = info.get("dashboard_link")
        p.dashboard.value = (dashboard_html(link) if link
                             else "No Dask dashboard: running in this process")
        p._say(
            f"Running job <b>{html.escape(info['job_id'])}</b>: "
            f"{counted(info['n_symbols'], 'symbol')} in {counted(info['n_chunks'], 'task')} "
            f"on {html.escape(info['mode'])}"
        )

    def set_size(self, n_symbols):
        self.n_symbols = n_symbols
        self._draw(force=True)

    def on_chunks(self, done, total):
        self.chunks_done, self.n_chunks = done, total
        self._draw(force=done >= total)

    def on_progress(self, done, total):
        # Symbol by symbol, those inside running chunks included (on_symbols comes later).
        self.symbols_done = max(self.symbols_done, done)
        self.n_symbols = total
        self._draw(force=done >= total)

    def on_symbols(self, outcomes):
        if failed_in(outcomes):
            for o in outcomes:
                if Status(o["status"]).counts_as_failed:
                    self.n_failed += 1
                    if len(self.failures) < MAX_FAILURES_SHOWN:
                        self.failures.append((o["symbol"],
                                              str(o.get("error") or o["status"])))
        self._draw()

    def on_write(self, rows, total_rows):
        self.rows_written = total_rows
        self._draw()

    def on_finish(self, report):
        self._draw(force=True)

    def _draw(self, force=False):
        if not self._due(force):
            return
        p = self.panel
        _move(p.chunks_bar, p.chunks_count, self.chunks_done, self.n_chunks)
        _move(p.symbols_bar, p.symbols_count, self.symbols_done, self.n_symbols)
        if self.rows_written is not None:
            p.rows_label.value = f"{self.rows_written:,} rows written"
        now = time.perf_counter()
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
        As for :func:`kdist.ingest`. The provider list names every registered provider; one
        whose package is missing says what installs it, and Start is disabled while it is
        chosen.
    provider_options
        The provider's options, e.g. ``{"latency": 0.05}`` for ``synthetic``; the panel shows
        each option's help under its field.
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
        first_start, first_end = date_or_none(start, "start"), date_or_none(end, "end")
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
        settle_tooltips(self)
        self._show_provider_state()

    # -- building the controls ------------------------------------------------------------

    def _build_symbol_controls(self, symbols, all_symbols):
        self.symbols_text = W.Textarea(
            value=", ".join(symbols or []), placeholder="600000.SH, 000001.SZ, AAPL ...",
            description="Symbols", layout=W.Layout(width="100%", height="80px"))
        self.symbols_upload = W.FileUpload(
            accept=".txt,.csv", multiple=True, description="Symbols file",
            tooltip="Add the symbols of .txt or .csv files: a 'symbol' column, or symbols "
                    "separated by commas, spaces or new lines")
        self.all_symbols = W.Checkbox(value=all_symbols, description="all symbols",
                                      indent=False, tooltip="every symbol the provider lists")

    def _build_bar_controls(self, first_start, first_end, freq, adjust):
        self.start_date = W.DatePicker(value=first_start, description="Start",
                                       tooltip="The first day to import")
        self.end_date = W.DatePicker(value=first_end, description="End",
                                     tooltip="The last day to import (empty: today)")
        self.freq = W.Dropdown(options=[f.value for f in Freq], value=Freq.parse(freq).value,
                               description="Freq", tooltip="Bar length: 1d day, 1w week, "
                               "1M month, 1m to 60m minutes")
        self.adjust = W.Dropdown(
            options=[a.value for a in Adjust], value=Adjust.parse(adjust).value,
            description="Adjust",
            tooltip="Prices as traded (none), forward-adjusted (qfq) or backward-adjusted (hfq)")

    def _build_provider_controls(self, name: str, values: dict):
        # Every registered provider is listed; one whose package is missing says what
        # installs it, and Start stays disabled while it is chosen.
        providers = available_providers()
        self._descriptions = {p["name"]: p["description"] for p in providers}
        self._missing = {p["name"]: _why_not(p["name"]) for p in providers if not p["installed"]}
        self._hinting = False  # the status line shows a missing provider's hint
        self.provider = W.Dropdown(
            options=[(_provider_label(p), p["name"]) for p in providers], value=name,
            description="Provider")
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
        self.cluster = W.ToggleButtons(options=choices, value=choices[0][1], description="Run on",
                                       tooltip="Where the import's tasks run")
        self.n_workers = W.BoundedIntText(value=n_workers, min=1, max=64, description="Workers",
                                          tooltip="Worker processes of the local cluster")
        self.threads = W.BoundedIntText(value=threads_per_worker, min=1, max=64,
                                        description="Threads", tooltip="Threads per worker")
        self.certs = W.Text(value="" if certs is None else str(certs), description="Certificates",
                            placeholder="for tls://: a directory from kdist cluster certs")
        self.address = W.Text(placeholder="tcp://scheduler:8786 or tls://...",
                              description="Address")
        self.db = W.Text(value=str(db), description="Database", layout=W.Layout(width="100%"),
                         tooltip="The DuckDB file the bars go to (created if missing)")

    def _build_run_controls(self):
        """The buttons, and what shows a run: status, dashboard link, bars and tables."""
        self.start_button = W.Button(description="Start", button_style="primary", icon="play",
                                     tooltip="Import the bars these settings describe")
        self.cancel_button = W.Button(description="Cancel", icon="stop",
                                      tooltip="Stop the import; what finished is kept")
        self._enable_cancel(False)
        self.resume_button = W.Button(description="Resume", icon="redo", disabled=True,
                                      tooltip="Fetch what the last job left unfinished")
        self.status = W.HTML("Ready.")
        self.dashboard = W.HTML()
        self.chunks_bar = W.IntProgress(value=0, min=0, max=1, description="Tasks",
                                        layout=W.Layout(width="60%"),
                                        tooltip="Tasks (chunks of symbols) finished")
        self.symbols_bar = W.IntProgress(value=0, min=0, max=1, description="Symbols",
                                         layout=W.Layout(width="60%"),
                                         tooltip="Symbols done: stored, empty or failed")
        self.chunks_count, self.symbols_count = W.Label(), W.Label()
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
            self.status, self.dashboard, W.HBox([self.chunks_bar, self.chunks_count]),
            W.HBox([self.symbols_bar, self.symbols_count]),
            W.HBox([self.rows_label, self.rate_label],
                   layout=W.Layout(justify_content="space-between", width="60%")),
            self.failures, self.report_html,
        ]

    def _build_options(self, name: str, values: dict):
        try:
            specs = provider_class(name).options
        except KdistError:  # a plug-in that does not load: nothing to set
            specs = {}
        unknown = set(values) - set(specs)
        if unknown:
            raise UsageError(
                f"Provider {name!r} has no option {', '.join(sorted(unknown))}; "
                f"it has: {', '.join(specs) or 'none'}"
            )
        for cell in self.options_box.children:
            close_tree(cell)
        self._specs, self.options = specs, {}
        for key, opt in specs.items():
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
        # Each option over its help, which a tooltip would hide (a text field with a
        # description shows none).
        self.options_box.children = [
            W.VBox([widget, W.HTML(_help_html(specs[key].help))], layout=W.Layout(width="auto"))
            for key, widget in self.options.items()
        ]
        settle_tooltips(self.options_box)
        self._title_options()

    def _choose_provider(self, change):
        self._build_options(change["new"], {})
        self._show_provider_state()

    def _show_provider_state(self):
        """Start only with a provider that can run; say what installs one that cannot."""
        name = self.provider.value
        self.provider.tooltip = self._descriptions.get(name) or ""
        if self.running:
            return
        self.start_button.disabled = name in self._missing
        if name in self._missing:
            self._say(html.escape(self._missing[name], quote=False), error=True)
        elif self._hinting:
            self._say("Ready.")
        self._hinting = name in self._missing

    def _title_options(self):
        """Name the options that differ from the provider's defaults in the fold's title."""
        given = [
            f"{k}={w.value}" for k, w in self.options.items()
            if (w.value.strip() if isinstance(w.value, str) else w.value != self._specs[k].default)
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
            self.status.value = error_html(exc)
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
        options = {}
        for key, widget in self.options.items():
            value = widget.value
            if isinstance(value, str):
                if not value.strip():
                    continue
                value = self._specs[key].coerce(key, value.strip())
            elif value == self._specs[key].default:
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
            self._enable_cancel(False)
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
        close_tree(self)

    def _stop_local(self):
        if self._local is not None:
            close_shared(self._local)
            self._local = None

    def _click(self, action: str, _button=None):
        """A button's handler: every error ends up in the status line, never in a log."""
        try:
            getattr(self, action)()
        except Exception as exc:
            self.status.value = error_html(exc)

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
            self.chunks_count.value = self.symbols_count.value = ""
            self.start_button.disabled = self.resume_button.disabled = True
            self._enable_cancel(True)
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
            self.status.value = error_html(error)
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
        self.start_button.disabled = self.provider.value in self._missing
        self._enable_cancel(False)

    def _enable_cancel(self, enabled: bool):
        """Cancel is orange only while it can be clicked."""
        self.cancel_button.disabled = not enabled
        self.cancel_button.button_style = "warning" if enabled else ""

    def _say(self, text: str, error: bool = False):
        self.status.value = status_html(text, error)
