"""Figures of training progress: loss against time per optimizer, fine-tuning strategies,
time to target (see ``plots`` for how figures are chosen and written).

Each bar is one case: the settings besides a figure's own axis go into the hue (or a row of
panels per workload), never averaged together by seaborn."""

from typing import Any

import pandas as pd
import seaborn as sns

from bench.report.canvas import (
    Plot,
    bars,
    case_hue,
    finish,
    log_if_wide,
    panels,
    scale_without_outliers,
    setting_text,
)
from bench.report.curves import common_loss_target, loss_curves, time_to_loss
from bench.report.format import MIB
from bench.report.frame import distinguishing_axes, eval_columns


def optimizer_figure(
    cases: pd.DataFrame, records: list[dict[str, Any]], axes: list[str]
) -> Plot | None:
    """Loss against window time per case, time to a common loss, optimizer state."""
    others = [a for a in axes if a != "optimizer"]
    curves = loss_curves(records, ["optimizer", *others])
    if curves.empty:
        return None
    target = common_loss_target(curves)
    times = time_to_loss(curves, target) if target is not None else pd.DataFrame()
    hue = case_hue(cases, axes, "optimizer")  # the other settings: a workload is not averaged in
    data = cases.assign(state_mib=cases["optimizer_state_bytes"] / MIB, label=hue)
    if len(times):  # the suite's own metrics.target first, else the time to the common loss
        from_curves = data["case_id"].map(times["time_to_target_s"])
        data["time_to_target_s"] = data["time_to_target_s"].fillna(from_curves)
    hue_col = "label" if hue is not None else None
    fig, (ax1, ax2, ax3) = panels(3)
    # One line per case and repeat (units), labelled with the case's optimizer and settings.
    names = data["optimizer"].astype(str)
    if hue is not None:
        names = names + ", " + hue
    curves = curves.assign(
        label=curves["case_id"].map(dict(zip(data["case_id"], names))),
        unit=curves["case_id"] + "/" + curves["repeat"].astype(str),
    )
    sns.lineplot(
        data=curves, x="window_s", y="loss", hue="label", units="unit", estimator=None, ax=ax1
    )
    if target is not None:
        ax1.axhline(target, color="grey", linestyle="--", linewidth=1)
    outliers = scale_without_outliers(ax1, curves, "window_s", "loss", "label")
    ax1.set_xlabel("window time (s)")
    ax1.set_ylabel("training loss")
    ax1.legend(fontsize=7)
    bars(ax2, data, "optimizer", "time_to_target_s", hue_col, "time to target (s)")
    log_if_wide(ax2, data["time_to_target_s"].dropna())
    unreached = data.loc[data["time_to_target_s"].isna(), "optimizer"].astype(str).tolist()
    if unreached and target is not None:
        labels = [tick.get_text() for tick in ax2.get_xticklabels()]
        for name in unreached:
            if name in labels:
                ax2.text(
                    labels.index(name), 0, "not\nreached", ha="center", va="bottom", fontsize=6
                )
    bars(ax3, data, "optimizer", "state_mib", hue_col, "optimizer state (MiB)")
    if ax2.get_legend() is not None:
        ax2.get_legend().remove()  # the same labels as the state panel's
    if ax3.get_legend() is not None and hue is not None:
        ax3.get_legend().set_title(str(hue.name))
    fig.tight_layout()
    return Plot(
        "optimizers",
        "Optimizers: loss against time, time to target, state memory",
        "Left: each repeat's loss readings against the measured time of the steps before them"
        + (
            f"; off the scale the other curves set (marked): {'; '.join(outliers)}"
            if outliers
            else ""
        )
        + f". Middle: time until the loss first reached {target:.4g} (dashed, left), the lowest "
        f"loss that at least two thirds of the cases reached (read at block ends, about every "
        f"0.25 s of steps)"
        + (f"; not reached by {', '.join(unreached)}" if unreached else "")
        + ". Right: bytes held in the optimizer's state. One bar per case.",
        fig,
    )


# The held-out figure a fine-tuning figure shows per workload, in this order of preference:
# accuracy where the workload has one (image tasks), else perplexity (gpt), else the loss.
QUALITY_ORDER = ("accuracy", "perplexity", "loss")


def finetune_figure(cases: pd.DataFrame, axes: list[str]) -> Plot | None:
    """Per workload (a row of panels): total and trainable parameters, and the workload's own
    held-out quality before and after, one bar pair per case."""
    data = cases[cases["finetune"].notna() & cases["num_params"].notna()]
    if data.empty:
        return None
    groups = list(data.groupby("workload", sort=False)) if "workload" in data else [("", data)]
    within = [a for a in axes if a != "workload"]
    fig, axs = panels(2, rows=len(groups))
    for (workload, group), (ax1, ax2) in zip(groups, zip(axs[::2], axs[1::2])):
        # The strategy, then the settings that tell its cases apart (the task, where it varies).
        others = distinguishing_axes(group, within, "finetune")
        group = group.assign(
            x=[
                "\n".join([setting_text(row["finetune"]), *_settings(row, others)])
                for _, row in group.iterrows()
            ]
        )
        params = group.rename(
            columns={"num_params": "total", "trainable_params": "trainable"}
        ).melt(id_vars=["x"], value_vars=["total", "trainable"], var_name="parameters")
        bars(ax1, params, "x", "value", "parameters", "parameters")
        ax1.set_yscale("log")
        ax1.set_title(f"{workload}: parameters", fontsize=9)
        key = next((k for k in QUALITY_ORDER if _has(group, f"eval_{k}")), None)
        if key is None:
            key = next(
                (c.removeprefix("eval_") for c in eval_columns(group) if _has(group, c)), None
            )
        if key is not None:
            columns = {f"eval_before_{key}": "before", f"eval_{key}": "after"}
            columns = {c: when for c, when in columns.items() if _has(group, c)}
            quality = group.rename(columns=columns).melt(
                id_vars=["x"], value_vars=list(columns.values()), var_name="when"
            )
            bars(ax2, quality, "x", "value", "when", f"held-out {key}")
            ax2.set_title(f"{workload}: held-out {key}", fontsize=9)
        else:
            ax2.text(0.5, 0.5, "no held-out evaluation", ha="center", transform=ax2.transAxes)
        for ax in (ax1, ax2):
            ax.set_xlabel("")
            if ax.get_legend() is not None:
                # Beside its panel: over the bars it hid the tallest (a full fine-tune's).
                ax.legend(
                    fontsize=7,
                    title_fontsize=7,
                    loc="upper left",
                    bbox_to_anchor=(1.0, 1.0),
                    frameon=False,
                )
    fig.tight_layout()  # both legends kept: each panel has its own hue
    return Plot(
        "finetune",
        "Fine-tuning strategies: parameters trained, quality before and after",
        "One row per workload, one bar (or pair) per case. Left: total and trainable "
        "parameters (log scale). Right: the workload's held-out quality (accuracy where it has "
        "one, else perplexity) before fine-tuning and after the window.",
        fig,
    )


def _settings(row: pd.Series, axes: list[str]) -> list[str]:
    """A case's values of ``axes``: a name as it is ("rotated"), a number or flag with its key."""
    return [
        setting_text(row[a]) if isinstance(row[a], str) else f"{a}={setting_text(row[a])}"
        for a in axes
    ]


def _has(data: pd.DataFrame, column: str) -> bool:
    return column in data and bool(data[column].notna().any())


def target_figure(cases: pd.DataFrame, axes: list[str]) -> Plot | None:
    """Time and steps to the suite's target (metrics.target), one bar per case."""
    data = cases[cases["time_to_target_s"].notna()]
    if data.empty:
        return None
    axis = next((a for a in axes if a != "workload"), axes[0] if axes else "case_id")
    hue = case_hue(data, axes, axis) if axis != "case_id" else None
    data = data.assign(x=data[axis].astype(str), label=hue)
    hue_col = "label" if hue is not None else None
    fig, (ax1, ax2) = panels(2)
    bars(ax1, data, "x", "time_to_target_s", hue_col, "time to target (s)")
    bars(ax2, data, "x", "steps_to_target", hue_col, "steps to target")
    for ax in (ax1, ax2):
        ax.set_xlabel(axis)
    finish(fig, hue)
    # The target's settings (config columns; absent from records older than them).
    metric = _first(data, "target_metric")
    value = _first(data, "target_value")
    return Plot(
        "target",
        "Time to target",
        f"Time and steps until {metric} reached {value} (metrics.target, median over repeats), "
        "one bar per case.",
        fig,
    )


def _first(data: pd.DataFrame, column: str) -> object:
    """The first value of ``column`` that is set, or "" when none is (or there is no column)."""
    if column not in data or not data[column].notna().any():
        return ""
    return data[column].dropna().iloc[0]
