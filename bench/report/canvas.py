"""What every figure of the report shares: matplotlib on its Agg backend (files only, no
display), the :class:`Plot` a figure function returns, panels, labels per case, bars."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display, files only

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from bench.report.frame import distinguishing_axes  # noqa: E402

DPI = 100
PANEL_IN = (4.6, 3.4)  # width, height of one panel in inches


@dataclass
class Plot:
    """A figure of a suite: its file name (under the report's figures/), title, caption."""

    name: str
    title: str
    caption: str
    figure: Any = field(repr=False)
    path: Path | None = None


def panels(count: int, rows: int = 1) -> tuple[Any, list[Any]]:
    """A figure of ``rows`` x ``count`` panels; the axes row by row."""
    fig, axes = plt.subplots(
        rows, count, figsize=(PANEL_IN[0] * count, PANEL_IN[1] * rows), dpi=DPI, squeeze=False
    )
    return fig, list(np.ravel(axes))


def hue_labels(cases: pd.DataFrame, axes: list[str], exclude: tuple[str, ...]) -> pd.Series | None:
    """A label per case from the suite's other varying axes (None when nothing else varies)."""
    others = [a for a in axes if a not in exclude]
    if not others:
        return None
    labels = cases[others].apply(
        lambda row: ", ".join(setting_text(row[a]) for a in others), axis=1
    )
    return labels.rename(", ".join(others))


def case_hue(cases: pd.DataFrame, axes: list[str], x: str) -> pd.Series | None:
    """Labels that, with ``x``, tell every case apart (frame.distinguishing_axes): a figure
    keyed on ``x`` and these draws each case once and averages none."""
    return hue_labels(cases, distinguishing_axes(cases, axes, x), ())


def setting_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def finish(fig: Any, hue: pd.Series | None) -> None:
    """One legend for the figure, beside its last panel (never over its bars): the last
    panel's own, else the first one any panel drew."""
    legends = [(ax, ax.get_legend()) for ax in fig.axes if ax.get_legend() is not None]
    last = fig.axes[-1]
    if legends and last.get_legend() is None:
        _, legend = legends[0]
        # The legend's own entries: seaborn draws a bar plot's hue legend from handles that are
        # not labelled artists of the axes (get_legend_handles_labels finds none of them).
        handles = list(legend.legend_handles)
        labels = [text.get_text() for text in legend.get_texts()]
        last.legend(handles, labels, title=legend.get_title().get_text())
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is not None and ax is not last:
            legend.remove()
        elif legend is not None:
            title = str(hue.name) if hue is not None else legend.get_title().get_text()
            sns.move_legend(ax, "upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, title=title)
    fig.tight_layout()


def log_if_wide(ax: Any, values: pd.Series) -> None:
    """A log scale where values span more than 20x (an MLP's samples/s beside a GPT's)."""
    positive = values[values > 0]
    if len(positive) and positive.max() / positive.min() > 20:
        ax.set_yscale("log")


def bars(
    ax: Any, data: pd.DataFrame, x: str, y: str, hue: str | None, ylabel: str, empty: str = ""
) -> None:
    """Bars of ``y`` per ``x``; where no case has a value, the panel says why instead."""
    if data[y].notna().any():
        sns.barplot(data=data, x=x, y=y, hue=hue, ax=ax, errorbar=None)
    else:
        ax.text(0.5, 0.5, empty or "no value in the records", ha="center", transform=ax.transAxes)
        ax.set_xticks([])
    ax.set_ylabel(ylabel)
    for label in ax.get_xticklabels():
        label.set_rotation(30)
        label.set_horizontalalignment("right")


# A case's curve sets no scale when it ends this far past the median case (x) or reads this far
# above the median case's highest reading (y): it is cut at the panel's edge and marked there.
OUTLIER_FACTOR = 3.0


def scale_without_outliers(ax: Any, curves: pd.DataFrame, x: str, y: str, label: str) -> list[str]:
    """Limits for a panel of curves (``label`` names each curve) that the bulk of the curves
    fill: a curve much longer than the others, or readings far above the others', are cut at
    the edge with a marker and a note instead of flattening every other curve. Returns the
    notes (also written on the panel)."""
    ends = curves.groupby(label)[x].max()
    peaks = curves.groupby(label)[y].max()
    # The scale the other curves set: the longest and the highest of those that are no outlier.
    x_top = 1.02 * float(ends[ends <= OUTLIER_FACTOR * ends.median()].max())
    y_top = 1.05 * float(peaks[peaks <= OUTLIER_FACTOR * peaks.median()].max())
    notes = []
    for name, end in ends.items():
        if end > x_top:
            notes.append(f"{name} runs on to {end:.3g} s")
    high = curves[curves[y] > y_top]
    for name, readings in high.groupby(label):
        notes.append(f"{name} reads up to {readings[y].max():.3g}")
        ax.plot(readings[x].clip(upper=x_top), [y_top] * len(readings), "k^", markersize=5)
    if notes:
        inside = curves[(curves[x] <= x_top) & (curves[y] <= y_top)]
        low = float(inside[y].min())
        margin = 0.04 * (y_top - low)
        if (ends > x_top).any():
            ax.set_xlim(0, x_top)
        if len(high):
            ax.set_ylim(low - margin, y_top + margin)
        ax.set_title(
            "off scale, marked \u25b2 / \u2192: " + "; ".join(notes), fontsize=7, wrap=True
        )
        for name in ends[ends > x_top].index:
            last = curves[curves[label] == name].sort_values(x)
            inside_last = last[last[x] <= x_top]
            if len(inside_last):
                ax.annotate("\u2192", (x_top, float(inside_last[y].iloc[-1])), fontsize=9)
    return notes


def interval_bars(
    ax: Any,
    data: pd.DataFrame,
    x: str,
    hue: str | None,
    comparison: str,
    ylabel: str,
    empty: str = "",
    no_difference: bool = True,
) -> None:
    """Bars of the comparisons in ``data[comparison]`` (bench/report/comparisons.Comparison, or
    None) per ``x`` and ``hue``: the bar is the comparison's value, its error bar the rule's
    95% interval; a hatched, pale bar is one the rule does not resolve. A dashed line at 1: no
    difference (``no_difference``)."""
    rows = data[data[comparison].notna()]
    if rows.empty:
        ax.text(0.5, 0.5, empty or "no comparison", ha="center", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_ylabel(ylabel)
        return
    xs = list(dict.fromkeys(rows[x].astype(str)))
    levels = list(dict.fromkeys(rows[hue].astype(str))) if hue else [""]
    width = 0.8 / len(levels)
    colours = sns.color_palette(n_colors=len(levels))
    for j, level in enumerate(levels):
        group = rows if not hue else rows[rows[hue].astype(str) == level]
        for name, c in zip(group[x].astype(str), group[comparison]):
            position = xs.index(name) - 0.4 + width * (j + 0.5)
            ax.bar(
                position,
                c.value,
                width,
                color=colours[j],
                alpha=1.0 if c.resolved else 0.35,
                hatch=None if c.resolved else "//",
                edgecolor=colours[j],
            )
            rule_errorbar(ax, position, c)
    if no_difference:
        ax.axhline(1.0, color="grey", linewidth=1, linestyle="--")
    ax.set_xticks(range(len(xs)), xs, rotation=30, ha="right")
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel)
    if hue:  # solid patches: a level's first bar may be a pale, unresolved one
        ax.legend(handles=[Patch(color=c, label=lv) for c, lv in zip(colours, levels)], title=hue)


def rule_errorbar(ax: Any, x: Any, c: Any) -> None:
    """The comparison rule's 95% interval of ``c`` (value, low, high) as an error bar at ``x``."""
    ax.errorbar(
        x,
        c.value,
        yerr=[[c.value - c.low], [c.high - c.value]],
        fmt="none",
        ecolor="black",
        capsize=3,
        linewidth=1,
    )
