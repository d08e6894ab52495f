"""Figures of training progress: loss against time per optimizer, fine-tuning strategies,
time to target (see ``plots`` for how figures are chosen and written)."""

from typing import Any

import pandas as pd
import seaborn as sns

from bench.report.canvas import Plot, bars, panels
from bench.report.curves import common_loss_target, loss_curves, time_to_loss
from bench.report.format import MIB
from bench.report.frame import eval_before_columns, eval_columns


def optimizer_figure(
    cases: pd.DataFrame, records: list[dict[str, Any]], axes: list[str]
) -> Plot | None:
    """Loss against window time per optimizer, time to a common loss, optimizer state."""
    others = [a for a in axes if a != "optimizer"]
    curves = loss_curves(records, ["optimizer", *others])
    if curves.empty:
        return None
    target = common_loss_target(curves)
    times = time_to_loss(curves, target) if target is not None else pd.DataFrame()
    data = cases.assign(state_mib=cases["optimizer_state_bytes"] / MIB)
    if len(times):  # the suite's own metrics.target first, else the time to the common loss
        from_curves = data["case_id"].map(times["time_to_target_s"])
        data["time_to_target_s"] = data["time_to_target_s"].fillna(from_curves)
    fig, (ax1, ax2, ax3) = panels(3)
    curves = curves.assign(label=curves["optimizer"].astype(str))
    sns.lineplot(
        data=curves, x="window_s", y="loss", hue="label", units="repeat", estimator=None, ax=ax1
    )
    if target is not None:
        ax1.axhline(target, color="grey", linestyle="--", linewidth=1)
    ax1.set_xlabel("window time (s)")
    ax1.set_ylabel("training loss")
    ax1.legend(fontsize=7)
    bars(ax2, data, "optimizer", "time_to_target_s", None, "time to target (s)")
    bars(ax3, data, "optimizer", "state_mib", None, "optimizer state (MiB)")
    fig.tight_layout()
    return Plot(
        "optimizers",
        "Optimizers: loss against time, time to target, state memory",
        f"Left: each repeat's loss readings against the measured time of the steps before them. "
        f"Middle: time until the loss first reached {target:.4g} (dashed, left), the lowest "
        f"loss that every case reached (read at block ends, about every 0.25 s of steps). "
        f"Right: bytes held in the optimizer's state.",
        fig,
    )


def finetune_figure(cases: pd.DataFrame, axes: list[str]) -> Plot | None:
    """Trainable against total parameters, and quality before and after, per strategy."""
    data = cases[cases["finetune"].notna() & cases["num_params"].notna()]
    if data.empty:
        return None
    after = [c for c in eval_columns(data) if data[c].notna().any()]
    before = [c for c in eval_before_columns(data) if data[c].notna().any()]
    params = data.rename(columns={"num_params": "total", "trainable_params": "trainable"}).melt(
        id_vars=["finetune"], value_vars=["total", "trainable"], var_name="parameters"
    )
    fig, (ax1, ax2) = panels(2)
    bars(ax1, params, "finetune", "value", "parameters", "parameters")
    ax1.set_yscale("log")
    metric = next((c for c in after if c.removeprefix("eval_") in ("accuracy", "loss")), None)
    if metric:
        key = metric.removeprefix("eval_")
        columns = {}
        if f"eval_before_{key}" in before:
            columns[f"eval_before_{key}"] = "before"
        columns[metric] = "after"
        quality = data.rename(columns=columns).melt(
            id_vars=["finetune"], value_vars=list(columns.values()), var_name="when"
        )
        bars(ax2, quality, "finetune", "value", "when", f"held-out {key}")
    fig.tight_layout()  # both legends kept: each panel has its own hue
    return Plot(
        "finetune",
        "Fine-tuning strategies: parameters trained, quality before and after",
        "Left: total and trainable parameters (log scale). Right: held-out quality before "
        "fine-tuning and after the window.",
        fig,
    )


def target_figure(cases: pd.DataFrame, axes: list[str]) -> Plot | None:
    """Time and steps to the suite's target (metrics.target), per case."""
    data = cases[cases["time_to_target_s"].notna()]
    if data.empty:
        return None
    axis = next((a for a in axes if a not in ("workload",)), axes[0] if axes else "case_id")
    data = data.assign(x=data[axis].astype(str))
    fig, (ax1, ax2) = panels(2)
    bars(ax1, data, "x", "time_to_target_s", None, "time to target (s)")
    bars(ax2, data, "x", "steps_to_target", None, "steps to target")
    for ax in (ax1, ax2):
        ax.set_xlabel(axis)
    fig.tight_layout()
    # The target's settings (config columns; absent from records older than them).
    metric = _first(data, "target_metric")
    value = _first(data, "target_value")
    return Plot(
        "target",
        "Time to target",
        f"Time and steps until {metric} reached {value} (metrics.target, median over repeats).",
        fig,
    )


def _first(data: pd.DataFrame, column: str) -> object:
    """The first value of ``column`` that is set, or "" when none is (or there is no column)."""
    if column not in data or not data[column].notna().any():
        return ""
    return data[column].dropna().iloc[0]
