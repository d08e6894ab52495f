"""``bench history --html DIR``: one small seaborn plot per series (the per-run medians with
their 95% intervals, the change points marked, the newest runs shaded) on a self-contained page,
DIR/history.html, the figures also as DIR/figures/*.png.

It draws a history as ``bench history --json`` writes it (the dict of
:meth:`bench.gate.history.History.to_dict`), so the report package needs nothing of the gate's.
"""

import re
from html import escape
from pathlib import Path
from typing import Any

from bench import atomic
from bench.report.canvas import DPI, PANEL_IN, plt
from bench.report.html import STYLE, render_plot
from bench.report.plots import Plot


def _scale(unit: str) -> tuple[float, str]:
    return (1e3, "ms") if unit == "s" else (1 / 2**20, "MiB") if unit == "B" else (1.0, unit)


def series_plot(series: dict[str, Any], last: int) -> Plot:
    import seaborn as sns

    factor, unit = _scale(series["unit"])
    points = series["points"]
    x = list(range(1, len(points) + 1))
    y = [p["median"] * factor for p in points]
    fig, ax = plt.subplots(figsize=(PANEL_IN[0] * 1.6, PANEL_IN[1] * 0.9), dpi=DPI)
    sns.lineplot(x=x, y=y, marker="o", ax=ax, color="C0")
    low = [(p["median"] - (p["ci_low"] or p["median"])) * factor for p in points]
    high = [((p["ci_high"] or p["median"]) - p["median"]) * factor for p in points]
    ax.errorbar(x, y, yerr=[low, high], fmt="none", ecolor="C0", alpha=0.5, capsize=2)
    for change in series["change_points"]:
        ax.axvline(change["index"] + 0.5, color="C3", linestyle="--")
        ax.annotate(
            f"{change['change']['ratio'] - 1:+.0%}",
            (change["index"] + 0.6, max(y)),
            color="C3",
            fontsize=8,
        )
    for index in range(1, len(points)):  # where the suite's repository moved to another commit
        if points[index]["commit"] != points[index - 1]["commit"]:
            ax.axvline(index + 0.5, color="0.4", linestyle=":")
    if len(points) > last:
        ax.axvspan(len(points) - last + 0.5, len(points) + 0.5, color="0.85", zorder=0)
    ax.set_xlabel("run (in the order they ran)")
    ax.set_ylabel(f"{series['metric']} ({unit})" if unit else series["metric"])
    fig.tight_layout()
    name = re.sub(r"[^A-Za-z0-9._-]", "_", f"{series['case_id']}-{series['metric']}")
    caption = (
        f"{series['label']} on {series['machine']}: per-run median and its 95% interval; red "
        f"dashed lines: change points; dotted: a new commit; grey: the newest {last} runs"
    )
    return Plot(name, f"{series['label']}: {series['metric']}", caption, fig)


def write_page(hist: dict[str, Any], directory: Path) -> Path:
    """DIR/history.html and DIR/figures/*.png of a history; returns the page's path."""
    figures = directory / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    body = []
    for index, series in enumerate(hist["series"]):
        plot = series_plot(series, hist["rule"]["last"])
        plot.path = atomic.write_with(
            figures / f"{index:03d}-{plot.name}.png",
            lambda path, fig=plot.figure: fig.savefig(path, format="png"),
        )
        plt.close(plot.figure)
        alert = " <b>(newest runs regressed)</b>" if series["alert"] else ""
        body.append(f"<h2>{escape(series['label'])}: {escape(series['metric'])}{alert}</h2>")
        body.append(render_plot(plot))
    suites = escape(", ".join(hist["suites"]))
    machines = "".join(f"<li>{escape(m)}</li>" for m in hist["machines"])
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>bench history: {suites}"
        f"</title><style>{STYLE}</style></head><body><h1>bench history: {suites}</h1>"
        f"<p>{hist['runs']} runs; machines (never mixed in one series):</p><ul>{machines}</ul>"
        + "".join(body)
        + "</body></html>\n"
    )
    return atomic.write_text(directory / "history.html", page)
