"""What the notebook panels (:mod:`kdist.widgets`, :mod:`kdist.browse`) share: ipywidgets,
imported with an install hint, dates from pickers, the status line, closing a panel, and
tooltips that never read "null".
"""

from __future__ import annotations

import datetime as dt
import html

try:
    import ipywidgets as W
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        'kdist.widgets needs ipywidgets: pip install "kdist[notebook]"'
    ) from exc

from .schema import to_date

__all__ = ["W", "close_tree", "date_or_none", "error_html", "error_line", "settle_tooltips",
           "status_html"]


def date_or_none(value, name: str) -> dt.date | None:
    """A picker's or an argument's date, or None for no date."""
    return None if value is None or value == "" else to_date(value, name=name).date()


def close_tree(widget) -> None:
    """Close a widget and every widget inside it (``close`` alone leaves the children)."""
    for child in getattr(widget, "children", ()):
        close_tree(child)
    W.Widget.close(widget)  # not a panel's own close(), which calls this


def error_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def status_html(text: str, error: bool = False) -> str:
    """A status line: ``text`` is HTML, red when it reports an error."""
    colour = "#b00020" if error else "inherit"
    return f"<span style='color:{colour}'>{text}</span>"


def error_html(exc: BaseException) -> str:
    """An exception as a red status line."""
    return status_html(html.escape(error_line(exc), quote=False), error=True)


def settle_tooltips(root) -> None:
    """Give every control under ``root`` that has no tooltip an empty one.

    ipywidgets sends an unset tooltip as null, and its front end writes that into the
    ``title`` of a control's description label and of the file upload button, where the
    browser shows it as the text "null" on hover. An empty tooltip shows nothing. Buttons
    keep theirs unset: a button without a tooltip shows its description instead.
    """
    for child in getattr(root, "children", ()):
        settle_tooltips(child)
    if getattr(root, "tooltip", "") is None and not isinstance(root, W.Button):
        root.tooltip = ""
