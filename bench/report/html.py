"""The report as one self-contained HTML file: figures embedded as base64 PNG data, the style
and one small script (sorting a table by a click on its header) inline, no external URL, so it
opens offline and can be mailed or attached to a CI run. Every string that comes from records or
suites (names, settings, reasons) is escaped. A table wider than :data:`MAX_COLUMNS` keeps its
first columns in view and folds the rest into a second table (with the row's settings again),
so that the page fits a 1,400-pixel window.
"""

import base64
from html import escape

from bench.report.faq import FaqSection
from bench.report.findings import SuiteFindings
from bench.report.findings import render_html as render_findings
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
td { max-width: 26em; overflow-wrap: anywhere; }
th.sortable { cursor: pointer; } th.sortable:hover { background: #e4e4e4; }
th[aria-sort="ascending"]::after { content: " \\25B2"; }
th[aria-sort="descending"]::after { content: " \\25BC"; }
details { margin: 0.3em 0 0.8em; } summary { cursor: pointer; color: #345; }
"""
MAX_COLUMNS = 10
# Click a header to sort its table by that column (numbers by value: "1,234", "8.00 ms ±6%",
# "1.38×" and "12%" by their leading number; text alphabetically); click again to reverse.
SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, column) {
    th.classList.add("sortable");
    th.addEventListener("click", function () {
      var body = table.tBodies[0], rows = Array.from(body.rows);
      var up = th.getAttribute("aria-sort") !== "ascending";
      table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", up ? "ascending" : "descending");
      var key = function (row) {
        var text = row.cells[column].textContent.trim();
        var number = parseFloat(text.replace(/,/g, ""));
        return isNaN(number) ? text.toLowerCase() : number;
      };
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (typeof x !== typeof y) { return (typeof x === "number" ? -1 : 1); }
        return (x < y ? -1 : x > y ? 1 : 0) * (up ? 1 : -1);
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def _table(headers: list[str], numeric: list[bool], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{escape(cell)}</td>' if is_number else f"<td>{escape(cell)}</td>"
            for cell, is_number in zip(row, numeric)
        )
        + "</tr>"
        for row in rows
    )
    return f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def render_table(view: TableView) -> str:
    caption = f'<p class="caption">{escape(view.caption)}</p>' if view.caption else ""
    if len(view.headers) <= MAX_COLUMNS:
        table = _table(view.headers, view.numeric, view.rows)
    else:
        # The row's settings again, then the columns past the first MAX_COLUMNS.
        key = min(view.key_columns, MAX_COLUMNS)
        more = [*range(key), *range(MAX_COLUMNS, len(view.headers))]
        table = _table(
            view.headers[:MAX_COLUMNS], view.numeric, [r[:MAX_COLUMNS] for r in view.rows]
        )
        folded = _table(
            [view.headers[i] for i in more],
            [view.numeric[i] for i in more],
            [[row[i] for i in more] for row in view.rows],
        )
        names = ", ".join(view.headers[MAX_COLUMNS:])
        table += f"<details><summary>more columns: {escape(names)}</summary>{folded}</details>"
    if view.folded:
        return f"<details><summary>{escape(view.title)}</summary>{table}{caption}</details>"
    return f"<h3>{escape(view.title)}</h3>{table}{caption}"


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
    if section.answer:
        parts.append(f'<p class="answer"><b>Answer.</b> {escape(" ".join(section.answer))}</p>')
    return "".join(parts)


def render_html(
    suites: list[tuple[str, list[TableView], list[Plot]]],
    faq: list[FaqSection],
    missing: list[str],
    findings: list[SuiteFindings] | None = None,
) -> str:
    """The whole page: the findings, per suite its tables and figures, then the FAQ."""
    body = ["<h1>Benchmark report</h1>"]
    if findings:
        body.append(render_findings(findings))
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
        f"<body>{''.join(body)}<script>{SCRIPT}</script></body></html>\n"
    )
