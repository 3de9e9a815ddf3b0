"""What the report and the dashboard share on a page: style, number formatting, escaping, tables.

Everything a store holds (names, hyperparameter values, failure messages) is data: it reaches HTML
only through `text`, `cell` or `table`, which escape it, and Plotly only through `plot_text`.
"""

from __future__ import annotations

import html
import math
from typing import Any, Iterable
from urllib.parse import quote

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1150px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
caption { text-align: left; font-weight: bold; padding: 4px 0; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
td.text { text-align: left; white-space: pre-wrap; max-width: 40em; overflow-wrap: anywhere; }
.summary span { margin-right: 2em; }
.chart { min-height: 320px; }
.error { color: #a00; }
"""


class Html(str):
    """Markup poptrain wrote itself (a link, a table): passed through `cell` unescaped."""


def text(value: Any) -> str:
    """Any value as HTML text: escaped, quotes included (safe inside attributes too)."""
    return html.escape(str(value))


def number(value: Any) -> str:
    """A value short enough for a table cell, unescaped: floats to 4 significant digits, none as —."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else "—"
    return str(value)


def cell(value: Any) -> str:
    """A table cell's HTML: markup poptrain wrote as is, anything else formatted and escaped."""
    return value if isinstance(value, Html) else text(number(value))


def plot_text(value: Any) -> str:
    """A string for Plotly: it reads tags and entities in titles, labels and hovers, so `<`, `>`, `&` are escaped.

    Plotly turns `&lt;`, `&gt;` and `&amp;` back into the characters, so the text shows literally.
    """
    return html.escape(str(value), quote=False)


def one_line(message: str, limit: int = 300) -> str:
    """A message (a traceback's last line, say) on one line, cut at `limit` characters."""
    flat = " ".join(str(message).split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


def table(columns: Iterable[Any], rows: Iterable[Iterable[Any]], caption: str | None = None,
          text_columns: Iterable[Any] = ()) -> Html:
    """An HTML table; headers and cells escaped (except `Html` cells); `text_columns` left-aligned and wrapped."""
    columns = list(columns)
    wrapped = {i for i, c in enumerate(columns) if c in set(text_columns)}
    head = "".join(f"<th>{text(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td class='text'>{cell(v)}</td>" if i in wrapped else f"<td>{cell(v)}</td>"
                                    for i, v in enumerate(row)) + "</tr>" for row in rows)
    top = f"<caption>{text(caption)}</caption>" if caption else ""
    return Html(f"<table>{top}<tr>{head}</tr>{body}</table>")


def link(*parts: Any) -> str:
    """A path of the dashboard with each part URL-quoted (a name a store holds never shapes the URL)."""
    return "/" + "/".join(quote(str(p), safe="") for p in parts)


def document(title: str, body: str, head: str = "") -> str:
    """A whole HTML page: `title` is escaped; `body` and `head` are markup the caller built (escaped already)."""
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{text(title)}</title>"
            f"<style>{STYLE}</style>{head}</head><body>{body}</body></html>")
