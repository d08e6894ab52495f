"""The report as one self-contained HTML file: figures embedded as base64 PNG data, the style
inline, no script and no external URL, so it opens offline and can be mailed or attached to a
CI run. Every string that comes from records or suites (names, settings, reasons) is escaped.
"""

import base64
from html import escape

from bench.report.faq import FaqSection
from bench.report.plots import Plot
from bench.report.tables import TableView

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 0.3em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
caption, .caption { caption-side: bottom; text-align: left; color: #555; font-size: 0.85em; }
figure { margin: 1em 0; } img { max-width: 100%; }
.missing { color: #a33; } code { background: #f4f4f4; padding: 0 0.2em; }
"""


def render_table(view: TableView) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in view.headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{escape(cell)}</td>' if numeric else f"<td>{escape(cell)}</td>"
            for cell, numeric in zip(row, view.numeric)
        )
        + "</tr>"
        for row in view.rows
    )
    caption = f'<p class="caption">{escape(view.caption)}</p>' if view.caption else ""
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{caption}"
    if view.folded:
        return f"<details><summary>{escape(view.title)}</summary>{table}</details>"
    return f"<h3>{escape(view.title)}</h3>{table}"


def render_plot(plot: Plot) -> str:
    assert plot.path is not None, "written before it is embedded"
    data = base64.b64encode(plot.path.read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{escape(plot.title)}" src="data:image/png;base64,{data}">'
        f"<figcaption><b>{escape(plot.title)}.</b> {escape(plot.caption)}</figcaption></figure>"
    )


def render_faq(section: FaqSection) -> str:
    parts = [
        f"<h3>{escape(section.question)}</h3>",
        f"<p><i>Method.</i> {escape(section.method)}</p>",
    ]
    if section.runs:
        parts.append(f"<p><i>Runs used:</i> {escape(', '.join(section.runs))}</p>")
    parts += [f"<p>{escape(line)}</p>" for line in section.lines]
    parts += [render_table(view) for view in section.tables]
    parts += [
        f'<p class="missing">Not answered here: run {escape(what)}.</p>' for what in section.missing
    ]
    return "".join(parts)


def render_html(
    suites: list[tuple[str, list[TableView], list[Plot]]],
    faq: list[FaqSection],
    missing: list[str],
) -> str:
    """The whole page: per suite its tables and figures, then the FAQ."""
    body = ["<h1>Benchmark report</h1>"]
    if missing:
        items = "".join(f"<li>{escape(m)}</li>" for m in missing)
        body.append(f"<p>No record here holds:</p><ul>{items}</ul>")
    for name, tables, plots in suites:
        body.append(f"<h2>{escape(name)}</h2>")
        body += [render_table(view) for view in tables]
        body += [render_plot(plot) for plot in plots]
    body.append("<h2>FAQ: answered with this machine's numbers</h2>")
    body += [render_faq(section) for section in faq]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Benchmark report</title><style>{STYLE}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )
