"""A real browser test: JupyterLab and headless Chromium run ``04-widgets`` and click Start.

JupyterLab serves a temporary copy of the notebook on 127.0.0.1 (so saving never touches the
repository), Playwright drives Debian's Chromium (``/usr/bin/chromium``; Playwright's own
browser download is never used) to run all cells, click Start on the ingest panel and wait
until the symbols bar reaches 100% and a new report says ``done``; then it waits for the
browse panel's interactive chart (bokeh, in an iframe) to draw its canvas. The screenshots
(the page, the ingest panel, the browse panel), the server log and the browser console are
kept in ``test-artifacts/browser/``.

Neither side makes outside connections: Chromium runs with background networking, component
updates and sync off; JupyterLab with no news feed, no update check and a read-only
extension manager, and with user config, data and settings in a temporary HOME.

Without Chromium, Playwright or JupyterLab the test skips, unless ``KDIST_REQUIRE_BROWSER=1``
(set by ``.ci/run``), where it fails instead.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "04-widgets.ipynb"
ARTIFACTS = ROOT / "test-artifacts" / "browser"
REQUIRE = os.environ.get("KDIST_REQUIRE_BROWSER") == "1"

#: The whole test, server start to screenshot, must finish within this many seconds.
BUDGET_S = 180

# As root Chromium needs --no-sandbox; the rest keep it off the network but for 127.0.0.1.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-domain-reliability",
    "--disable-breakpad",
    "--metrics-recording-only",
    "--disable-dev-shm-usage",
    # Even so Chromium looks up accounts.google.com and update.googleapis.com at start:
    # resolve nothing but 127.0.0.1.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]

#: A job id as ``kdist.runner`` makes them: 20260101-120000-abcdef.
JOB_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}")

#: Console or page text that means a widget failed to render.
WIDGET_ERRORS = re.compile(
    r"Error displaying widget|Class \S+ not found|Could not create (a )?(model|view)"
    r"|Failed to (load|create) (model|view)|Error rendering widget",
    re.I,
)


def _unavailable(reason: str):
    if REQUIRE:
        pytest.fail(f"{reason} (KDIST_REQUIRE_BROWSER=1, so this is an error)", pytrace=False)
    pytest.skip(reason)


def _chromium() -> str | None:
    candidates = ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser"))
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


class Budget:
    """One deadline for the whole test; each wait gets what is left of it."""

    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds

    def left(self, cap: float | None = None) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"browser test ran over its {BUDGET_S} s budget", pytrace=False)
        return min(left, cap) if cap else left

    def ms(self, cap: float | None = None) -> float:
        return 1000 * self.left(cap)


@pytest.fixture
def budget():
    return Budget(BUDGET_S)


@pytest.fixture
def chromium():
    path = _chromium()
    if path is None:
        _unavailable("Chromium not found (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[browser]')")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str, timeout: float = 2.0):
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.status, resp.read()


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")


def _stop(proc: subprocess.Popen, base: str, token: str) -> None:
    """Shut the server and its kernels down, then kill whatever of them is left."""
    import psutil

    try:
        family = [psutil.Process(proc.pid)]
        family += family[0].children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    if proc.poll() is None:
        try:  # a clean shutdown stops the kernels (they run in sessions of their own)
            req = urllib.request.Request(
                f"{base}/api/shutdown", method="POST", headers={"Authorization": f"token {token}"}
            )
            urllib.request.urlopen(req, timeout=5).close()
            proc.wait(timeout=20)
        except (OSError, urllib.error.URLError, subprocess.TimeoutExpired):
            pass
    for p in family:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(family, timeout=5)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


@pytest.fixture
def lab(tmp_path, budget):
    """JupyterLab on 127.0.0.1 serving a temporary copy of 04-widgets: (base url, token)."""
    if not NOTEBOOK.exists():
        pytest.fail(f"{NOTEBOOK.relative_to(ROOT)} is missing", pytrace=False)
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        _unavailable("jupyterlab is not installed (pip install -e '.[notebook]')")

    root = tmp_path / "notebooks"
    root.mkdir()
    shutil.copy2(NOTEBOOK, root / NOTEBOOK.name)

    home = tmp_path / "home"
    config_dir = home / ".jupyter"
    settings_dir = home / "lab-settings"
    # No news feed, no update check, no PyPI-backed extension manager: nothing leaves 127.0.0.1.
    _write_json(
        config_dir / "jupyter_server_config.json",
        {
            "LabApp": {
                "news_url": None,
                "check_for_updates_class": "jupyterlab.NeverCheckForUpdate",
                "extension_manager": "readonly",
                "expose_app_in_browser": True,
            },
            "ServerApp": {"open_browser": False},
        },
    )
    _write_json(
        settings_dir / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings",
        {"fetchNews": "false", "checkForUpdates": False},
    )
    env = dict(
        os.environ,
        HOME=str(home),
        JUPYTER_CONFIG_DIR=str(config_dir),
        JUPYTER_DATA_DIR=str(home / "jupyter-data"),
        JUPYTER_RUNTIME_DIR=str(home / "jupyter-runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(settings_dir),
        JUPYTERLAB_WORKSPACES_DIR=str(home / "lab-workspaces"),
        IPYTHONDIR=str(home / ".ipython"),
        MPLCONFIGDIR=str(home / ".matplotlib"),
        PYTHONUNBUFFERED="1",
    )
    env.pop("JUPYTER_TOKEN", None)

    token = secrets.token_hex(16)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_path = ARTIFACTS / "jupyterlab.log"
    cmd = [
        sys.executable, "-m", "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.terminals_enabled=False",
    ]
    if os.geteuid() == 0:  # CI containers run as root
        cmd.append("--allow-root")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + budget.left(60)
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited with {proc.returncode}; see {log_path}",
                            pytrace=False)
            try:
                status, _ = _get(f"{base}/api/status", token)
                if status == 200:
                    break
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"jupyter lab did not answer on {base}; see {log_path}", pytrace=False)
            time.sleep(0.25)
        yield base, token
    finally:
        _stop(proc, base, token)


# JavaScript run in the page; `window.jupyterapp` is there by LabApp.expose_app_in_browser.
JS_KERNEL_IDLE = """() => {
  const app = window.jupyterapp;
  const nb = app && app.shell.currentWidget;
  if (!nb || !nb.sessionContext || !nb.context || !nb.context.isReady) return false;
  const kernel = nb.sessionContext.session && nb.sessionContext.session.kernel;
  return !!kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
}"""

JS_RUN_ALL = """() => {
  window.__kdistRunAll = null;
  window.jupyterapp.commands.execute('notebook:run-all-cells').then(
    ok => { window.__kdistRunAll = {ok: ok !== false}; },
    err => { window.__kdistRunAll = {ok: false, error: String(err)}; });
}"""

JS_CELLS = """() => {
  const nb = window.jupyterapp.shell.currentWidget;
  const kernel = nb.sessionContext.session.kernel;
  const cells = [];
  nb.content.widgets.forEach((cell, i) => {
    if (cell.model.type !== 'code') return;
    const errors = cell.model.outputs.toJSON()
      .filter(o => o.output_type === 'error')
      .map(o => `${o.ename}: ${o.evalue}`);
    cells.push({index: i, count: cell.model.executionCount, errors,
                source: cell.model.sharedModel.getSource().split('\\n')[0]});
  });
  return {cells, kernel: kernel.status};
}"""

JS_PANEL = """() => {
  const panels = document.querySelectorAll('.kdist-ingest-panel');
  const panel = panels[panels.length - 1];
  if (!panel) return null;
  const text = sel => { const el = panel.querySelector(sel); return el ? el.innerText : null; };
  const width = sel => {
    const bar = panel.querySelector(sel + ' .progress-bar');
    return bar ? parseFloat(bar.style.width) : null;
  };
  const start = panel.querySelector('.kdist-start');
  return {
    report: text('.kdist-report'), status: text('.kdist-status'),
    symbols: width('.kdist-symbols-bar'), chunks: width('.kdist-chunks-bar'),
    startDisabled: start ? start.disabled : null, panels: panels.length,
  };
}"""


def _local(url: str) -> bool:
    return url.startswith(("http://127.0.0.1:", "ws://127.0.0.1:", "data:", "blob:", "about:"))


def _new_done_job(report: str | None, before: set[str]) -> str | None:
    """The id of a job not in ``before`` whose report, from its id on, says status ... done."""
    if not report:
        return None
    for match in JOB_ID.finditer(report):
        if match.group() not in before:
            rest = report[match.start():]
            if re.search(r"\bstatus\b", rest) and re.search(r"\bdone\b", rest):
                return match.group()
    return None


def test_ingest_panel_runs_in_jupyterlab(chromium, lab, budget):
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    base, token = lab
    console: list[str] = []
    outside: list[str] = []
    screenshot = ARTIFACTS / "04-widgets.png"
    for old in ("04-widgets.png", "04-widgets-panel.png", "04-widgets-browse.png",
                "04-widgets-running.png",
                "04-widgets-failure.png", "console.log"):
        (ARTIFACTS / old).unlink(missing_ok=True)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_ARGS, timeout=budget.ms(60)
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1700})
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            page.on("request", lambda r: None if _local(r.url) else outside.append(r.url))
            try:
                _drive(page, base, token, budget, screenshot)
            except BaseException:  # assertions, Playwright errors, pytest.fail, the timeout
                try:  # what the page shows when it fails is the most useful artifact
                    page.screenshot(path=str(ARTIFACTS / "04-widgets-failure.png"), timeout=10_000)
                except PlaywrightError:
                    pass
                raise
            finally:
                (ARTIFACTS / "console.log").write_text("\n".join(console) + "\n", encoding="utf-8")
        finally:
            browser.close()

    assert not outside, f"the page asked for outside addresses: {outside}"
    widget_errors = [line for line in console if WIDGET_ERRORS.search(line)]
    assert not widget_errors, "widget errors in the browser console:\n" + "\n".join(widget_errors)


def _drive(page, base, token, budget, screenshot):
    page.goto(f"{base}/lab/tree/{NOTEBOOK.name}?token={token}", timeout=budget.ms(60))
    page.wait_for_function(JS_KERNEL_IDLE, timeout=budget.ms(90), polling=250)

    page.evaluate(JS_RUN_ALL)
    page.wait_for_function("() => window.__kdistRunAll !== null", timeout=budget.ms(120),
                           polling=250)
    outcome = page.evaluate("() => window.__kdistRunAll")
    cells = page.evaluate(JS_CELLS)
    failed = [c for c in cells["cells"] if c["errors"]]
    assert not failed, "cells raised:\n" + "\n".join(
        f"  cell {c['index']} ({c['source']}): {'; '.join(c['errors'])}" for c in failed
    )
    not_run = [c for c in cells["cells"] if c["count"] is None]
    assert outcome["ok"] and not not_run, f"run all did not finish: {outcome}, not run: {not_run}"

    panel = page.locator(".kdist-ingest-panel").last
    panel.wait_for(state="visible", timeout=budget.ms(30))
    rendered = page.locator(".jp-Notebook").inner_text()
    broken = WIDGET_ERRORS.search(rendered)
    assert not broken, f"a widget failed to render: {broken.group()!r}"
    source = NOTEBOOK.read_text(encoding="utf-8")
    if "BrowsePanel" in source:
        page.locator(".kdist-browse-panel").first.wait_for(state="attached", timeout=budget.ms(30))

    before = page.evaluate(JS_PANEL)
    previous = set(JOB_ID.findall(before["report"] or ""))

    start = panel.locator(".kdist-start")
    start.scroll_into_view_if_needed(timeout=budget.ms(10))
    page.wait_for_function(
        "() => { const b = [...document.querySelectorAll('.kdist-ingest-panel')].pop()"
        ".querySelector('.kdist-start'); return b && !b.disabled; }",
        timeout=budget.ms(30), polling=250,
    )
    start.click(timeout=budget.ms(10))

    seen, state, job = [], before, None  # seen: the symbols bar's widths, for the message
    running = ARTIFACTS / "04-widgets-running.png"
    while True:
        state = page.evaluate(JS_PANEL)
        if not seen or seen[-1] != state["symbols"]:
            seen.append(state["symbols"])
        if not running.exists() and state["symbols"] and state["symbols"] < 90:
            panel.screenshot(path=str(running))  # the panel while its import runs
        job = _new_done_job(state["report"], previous)
        if job and state["symbols"] is not None and state["symbols"] >= 99.9:
            break
        if budget.left() < 15:  # leave time for the screenshot and the server's shutdown
            pytest.fail(
                f"no new finished job after clicking Start: symbols bar {state['symbols']}% "
                f"(seen {seen}), status {state['status']!r}, report {state['report']!r}",
                pytrace=False,
            )
        page.wait_for_timeout(200)

    report = state["report"]
    assert "status" in report and "done" in report and job in report, report
    assert running.exists(), f"no picture of the running panel (symbols bar seen at {seen})"
    # Room for the panel in the picture: no file browser, the panel's top at the top.
    page.evaluate("() => window.jupyterapp.shell.collapseLeft()")
    panel.evaluate("el => el.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(500)  # let the layout settle and the last frame paint
    page.screenshot(path=str(screenshot))
    panel.screenshot(path=str(ARTIFACTS / "04-widgets-panel.png"))
    assert screenshot.stat().st_size > 0
    if "BrowsePanel" in source:
        _screenshot_browse_panel(page, budget)


def _screenshot_browse_panel(page, budget):
    """The browse panel's interactive chart: an iframe whose inline BokehJS draws a canvas
    (bokeh's elements sit in open shadow roots, which Playwright's locators enter)."""
    browse = page.locator(".kdist-browse-panel").first
    frame = browse.locator("iframe.kdist-chart-frame")
    frame.wait_for(state="attached", timeout=budget.ms(30))
    browse.scroll_into_view_if_needed(timeout=budget.ms(10))
    canvas = browse.frame_locator("iframe.kdist-chart-frame").locator("canvas").first
    canvas.wait_for(state="visible", timeout=budget.ms(30))
    box = canvas.bounding_box()
    assert box and box["width"] > 200 and box["height"] > 100, f"the chart's canvas: {box}"
    table = browse.locator(".kdist-bars-table table.kdist-bars")
    assert table.locator("tbody tr").count() == 20, "a page of the bars table has 20 rows"
    page.wait_for_timeout(500)  # let the chart's last frame paint
    path = ARTIFACTS / "04-widgets-browse.png"
    browse.screenshot(path=str(path))
    assert path.stat().st_size > 0
