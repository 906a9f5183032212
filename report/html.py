"""Assemble sections into one self-contained HTML page (inline CSS, inline SVG, no scripts, no network)."""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from report.charts import Chart

CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#1f3a5f;color:#fff;padding:18px 28px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;opacity:.85}main{max-width:1100px;margin:0 auto;padding:8px 24px 48px}
nav{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px 14px;margin:16px 0}
nav{display:flex;flex-wrap:wrap;gap:4px 14px}nav a{color:#1f3a5f;text-decoration:none;white-space:nowrap}
section{background:#fff;border:1px solid #ddd;border-radius:6px;padding:12px 20px;margin:18px 0;break-inside:avoid}
section h2{font-size:18px;margin:6px 0 10px;color:#1f3a5f}section.unavailable{border-style:dashed;color:#666}
table{border-collapse:collapse;margin:8px 0;font-size:12.5px}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f0f3f7}td:first-child,th:first-child{text-align:left}
details{margin:6px 0}summary{cursor:pointer;color:#1f3a5f}
.chart{max-width:100%;height:auto;display:block;margin:8px 0}.ct{font-weight:600;font-size:14px}
.al{font-size:12px;fill:#333}.tk{font-size:10.5px;fill:#444}.hv{font-size:9.5px;fill:#222}.ax{stroke:#888}
.ref{stroke:#d62728;stroke-width:2;stroke-dasharray:5 3}.note{color:#555;font-size:12.5px}
.ex{font:12px ui-monospace,monospace;white-space:pre-wrap;background:#f6f6f6;padding:6px;border-radius:4px;
max-height:8em;overflow:hidden;margin:4px 0}.kpi{display:inline-block;margin:4px 18px 4px 0}
.kpi b{display:block;font-size:20px;color:#1f3a5f}.up{color:#2a7a2a}.down{color:#b22}
@media print{body{background:#fff}nav{display:none}section{border:none;padding:0}}
"""


@dataclass
class Section:
    """One report section: prose, charts (each with its numbers), tables and examples."""

    id: str
    title: str
    intro: str = ""
    charts: list[Chart] = field(default_factory=list)
    tables: list[tuple[str, list[list]]] = field(default_factory=list)
    html_parts: list[str] = field(default_factory=list)
    data: dict = field(default_factory=dict)
    unavailable: str | None = None


def esc(s: object) -> str:
    return html.escape(str(s), quote=True)


def fmt_cell(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e6 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return esc("" if v is None else v)


def table_html(rows: list[list], caption: str = "", max_rows: int = 60) -> str:
    """An HTML table; the first row is the header."""
    if not rows:
        return ""
    head, body = rows[0], rows[1 : max_rows + 1]
    more = len(rows) - 1 - len(body)
    out = [f"<table><caption class='note'>{esc(caption)}</caption>" if caption else "<table>"]
    out.append("<tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>")
    out.extend("<tr>" + "".join(f"<td>{fmt_cell(c)}</td>" for c in r) + "</tr>" for r in body)
    out.append("</table>")
    if more > 0:
        out.append(f"<p class='note'>… {more} more rows in the CSV.</p>")
    return "".join(out)


def section_html(s: Section) -> str:
    if s.unavailable:
        return (
            f"<section id='{esc(s.id)}' class='unavailable'><h2>{esc(s.title)}</h2>"
            f"<p><b>Unavailable:</b> {esc(s.unavailable)}</p></section>"
        )
    parts = [f"<section id='{esc(s.id)}'><h2>{esc(s.title)}</h2>"]
    if s.intro:
        parts.append(f"<p class='note'>{s.intro}</p>")
    parts.extend(s.html_parts)
    for c in s.charts:
        parts.append(c.svg)
        parts.append(
            f"<details><summary>Numbers for “{esc(c.title)}” (<a href='csv/{esc(c.id)}.csv'>CSV</a>)</summary>"
            f"{table_html(c.rows)}</details>"
        )
    for caption, rows in s.tables:
        parts.append(table_html(rows, caption))
    parts.append("</section>")
    return "".join(parts)


def page(title: str, subtitle: str, sections: list[Section]) -> str:
    """The whole self-contained page."""
    nav = "".join(f"<a href='#{esc(s.id)}'>{esc(s.title)}</a>" for s in sections)
    body = "".join(section_html(s) for s in sections)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header><main><nav>{nav}</nav>{body}</main></body></html>"
    )
