"""Seaborn figures of a suite, chosen from the axes it varies, written as PNG files.

Matplotlib runs on its Agg backend (files only, no display). Each ``*_figure`` function takes one
suite's aggregated cases (and, where it needs them, its per-repeat rows, loss curves or records)
and returns a :class:`Plot` or None when the suite holds nothing for it; :func:`suite_plots`
picks the figures for a suite and :func:`write_plots` saves them. A figure's bars and points are
the numbers of the tables: nothing is drawn that the records do not hold.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display, files only

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from bench.report.curves import (  # noqa: E402
    common_loss_target,
    gpu_timeline,
    loss_curves,
    time_to_loss,
    timeline_record,
)
from bench.report.format import MIB  # noqa: E402
from bench.report.frame import (  # noqa: E402
    break_even_steps,
    eval_before_columns,
    eval_columns,
    peak_memory_bytes,
    reference_values,
    scaling_efficiency,
    speedup_vs_reference,
    varying_axes,
)

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


def _panels(count: int) -> tuple[Any, list[Any]]:
    fig, axes = plt.subplots(1, count, figsize=(PANEL_IN[0] * count, PANEL_IN[1]), dpi=DPI)
    return fig, list(np.atleast_1d(axes))


def _hue(cases: pd.DataFrame, axes: list[str], exclude: tuple[str, ...]) -> pd.Series | None:
    """A label per case from the suite's other varying axes (None when nothing else varies)."""
    others = [a for a in axes if a not in exclude]
    if not others:
        return None
    labels = cases[others].apply(lambda row: ", ".join(_setting(row[a]) for a in others), axis=1)
    return labels.rename(", ".join(others))


def _setting(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _finish(fig: Any, hue: pd.Series | None) -> None:
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is not None and ax is not fig.axes[-1]:
            legend.remove()
        elif legend is not None and hue is not None:
            legend.set_title(str(hue.name))  # the axes the labels are values of
    fig.tight_layout()


def _log_if_wide(ax: Any, values: pd.Series) -> None:
    """A log scale where values span more than 20x (an MLP's samples/s beside a GPT's)."""
    positive = values[values > 0]
    if len(positive) and positive.max() / positive.min() > 20:
        ax.set_yscale("log")


def _bars(
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


def compile_figure(cases: pd.DataFrame, repeats: pd.DataFrame, axes: list[str]) -> Plot | None:
    """Speedup against eager per mode (bars: the range over repeats), compile time, and the
    break-even steps: compile time over the step time saved."""
    compiled = cases[cases["compile"] != "eager"]
    if compiled["step_time_s"].notna().sum() == 0:
        return None
    hue = _hue(cases, axes, ("compile",))
    eager_s = reference_values(cases, "compile", "eager")
    # Speedup of each ok repeat against the eager case's step time: the bars' spread.
    per_repeat = repeats[repeats["status"] == "ok"].merge(
        pd.DataFrame({"case_id": cases["case_id"], "eager_s": eager_s, "label": hue}),
        on="case_id",
    )
    per_repeat["speedup"] = per_repeat["eager_s"] / per_repeat["step_time_median_s"]
    per_repeat = per_repeat[per_repeat["compile"] != "eager"].dropna(subset=["speedup"])
    data = cases.assign(
        label=hue,
        break_even=break_even_steps(cases),
        speedup=speedup_vs_reference(cases),
    )[lambda d: d["compile"] != "eager"]
    hue_col = "label" if hue is not None else None
    fig, (ax1, ax2, ax3) = _panels(3)
    sns.barplot(
        data=per_repeat,
        x="compile",
        y="speedup",
        hue=hue_col,
        ax=ax1,
        errorbar=("pi", 100),
        estimator="median",
    )
    ax1.axhline(1.0, color="grey", linewidth=1, linestyle="--")
    ax1.set_ylabel("speedup vs eager (×)")
    ax1.tick_params(axis="x", labelrotation=20)
    _bars(ax2, data, "compile", "compile_time_s", hue_col, "compile time (s)")
    _bars(
        ax3,
        data,
        "compile",
        "break_even",
        hue_col,
        "break-even steps",
        "never: no compiled case\nfaster than its eager twin",
    )
    _finish(fig, hue)
    return Plot(
        "compile",
        "torch.compile against eager",
        "Left: eager step time / compiled step time (bar: median over repeats; line: their "
        "range; dashed: no gain). Middle: compile time (first step - steady step). Right: "
        "steps after which compiling pays off (no bar: never, or no eager twin).",
        fig,
    )


def precision_figure(cases: pd.DataFrame, axes: list[str]) -> Plot | None:
    """Throughput, peak memory and final training loss per precision."""
    ok = cases[cases["step_time_s"].notna()]
    if ok.empty:
        return None
    hue = _hue(ok, axes, ("precision",))
    data = ok.assign(label=hue, peak_mib=peak_memory_bytes(ok) / MIB)
    hue_col = "label" if hue is not None else None
    fig, (ax1, ax2, ax3) = _panels(3)
    _bars(ax1, data, "precision", "samples_per_s", hue_col, "samples/s")
    _log_if_wide(ax1, data["samples_per_s"])
    _bars(ax2, data, "precision", "peak_mib", hue_col, "peak memory (MiB)")
    _bars(ax3, data, "precision", "final_train_loss", hue_col, "final training loss")
    _finish(fig, hue)
    return Plot(
        "precision",
        "Precision: speed, memory, loss reached",
        "Throughput, peak memory (CUDA allocator peak; process RSS on a CPU) and the training "
        "loss over the window's last block, per precision; a missing bar: skipped or failed.",
        fig,
    )


def batch_figure(cases: pd.DataFrame, axes: list[str]) -> Plot | None:
    """Throughput and peak memory against batch size; the largest batch that fits as a line."""
    numeric = pd.to_numeric(cases["batch_size"], errors="coerce")
    data = cases.assign(batch=numeric, peak_mib=peak_memory_bytes(cases) / MIB)
    data = data[data["batch"].notna() & data["step_time_s"].notna()]
    hue = _hue(data, axes, ("batch_size",))
    groups = data.groupby(hue if hue is not None else [0] * len(data))["batch"].nunique()
    if data.empty or groups.max() < 2:  # batch varies only with the workload: no curve
        return None
    data = data.assign(label=hue)
    hue_col = "label" if hue is not None else None
    fig, (ax1, ax2) = _panels(2)
    for ax, y, label in ((ax1, "samples_per_s", "samples/s"), (ax2, "peak_mib", "peak MiB")):
        sns.lineplot(data=data, x="batch", y=y, hue=hue_col, marker="o", ax=ax, errorbar=None)
        ax.set_xscale("log", base=2)
        _log_if_wide(ax, data[y])
        ax.set_xlabel("batch size")
        ax.set_ylabel(label)
    found = cases[cases["max_batch_size"].notna()]
    for size, group in found.groupby("max_batch_size"):  # one line per distinct largest batch
        capped = " (limit)" if (group["max_batch_capped"] == 1).all() else ""
        who = ", ".join(_setting(w) for w in group["workload"])
        ax1.axvline(size, color="red", linestyle=":", linewidth=1)
        ax1.annotate(
            f"max {size:.0f}{capped}: {who}",
            (size, 0.02),
            xycoords=("data", "axes fraction"),
            rotation=90,
            va="bottom",
            ha="right",
            fontsize=8,
        )
    _finish(fig, hue)
    return Plot(
        "batch_size",
        "Batch size: throughput and memory",
        "Samples/s and peak memory against batch size (log scale); dotted red: the largest "
        "batch that fitted (the search's limit when it never ran out of memory).",
        fig,
    )


def fitted_bytes_per_param(cases: pd.DataFrame) -> float | None:
    """Slope of peak memory against parameter count (least squares): memory per parameter
    once the fixed part (the process, the data, the CUDA context) is left out. None with fewer
    than two sizes."""
    data = pd.DataFrame({"n": cases["num_params"], "bytes": peak_memory_bytes(cases)}).dropna()
    if data["n"].nunique() < 2:
        return None
    slope, _ = np.polyfit(data["n"].to_numpy(float), data["bytes"].to_numpy(float), 1)
    return float(slope)


def model_size_figure(cases: pd.DataFrame, axes: list[str]) -> Plot | None:
    """Throughput, MFU and peak memory against parameter count, with bytes per parameter."""
    data = cases[cases["num_params"].notna() & cases["step_time_s"].notna()]
    if data["num_params"].nunique() < 2:
        return None
    hue = _hue(data, axes, ("model_size",))
    data = data.assign(label=hue, peak_mib=peak_memory_bytes(data) / MIB)
    hue_col = "label" if hue is not None else None
    fig, (ax1, ax2, ax3) = _panels(3)
    panels = ((ax1, "samples_per_s", "samples/s"), (ax2, "mfu", "MFU"), (ax3, "peak_mib", "MiB"))
    for ax, y, label in panels:
        if data[y].notna().any():
            sns.lineplot(
                data=data, x="num_params", y=y, hue=hue_col, marker="o", ax=ax, errorbar=None
            )
            _log_if_wide(ax, data[y])
        else:
            ax.text(0.5, 0.5, f"no {label} in the records", ha="center", transform=ax.transAxes)
        ax.set_xscale("log")
        ax.set_xlabel("parameters")
        ax.set_ylabel(label)
    groups = [("", data)] if hue is None else list(data.groupby("label", sort=False))
    fits = []
    for label, group in groups:
        slope = fitted_bytes_per_param(group)
        if slope is not None:
            fits.append(f"{label} {slope:.1f} B/param".strip())
    if fits:
        ax3.set_title("fitted: " + "; ".join(fits), fontsize=8)
    _finish(fig, hue)
    return Plot(
        "model_size",
        "Model size: throughput, MFU, memory",
        "Against the exact parameter count (log scale). Memory's fitted bytes per parameter: "
        "the least-squares slope of peak memory over parameter count.",
        fig,
    )


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
    fig, (ax1, ax2, ax3) = _panels(3)
    curves = curves.assign(label=curves["optimizer"].astype(str))
    sns.lineplot(
        data=curves, x="window_s", y="loss", hue="label", units="repeat", estimator=None, ax=ax1
    )
    if target is not None:
        ax1.axhline(target, color="grey", linestyle="--", linewidth=1)
    ax1.set_xlabel("window time (s)")
    ax1.set_ylabel("training loss")
    ax1.legend(fontsize=7)
    _bars(ax2, data, "optimizer", "time_to_target_s", None, "time to target (s)")
    _bars(ax3, data, "optimizer", "state_mib", None, "optimizer state (MiB)")
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


def scaling_figure(cases: pd.DataFrame, axes: list[str]) -> Plot | None:
    """Scaling efficiency and peak memory per rank against the number of processes."""
    data = cases.assign(efficiency=scaling_efficiency(cases), peak_mib=peak_memory_bytes(cases))
    data = data[data["nproc"].notna() & data["step_time_s"].notna()]
    if data["nproc"].nunique() < 2:
        return None
    hue = _hue(data, axes, ("nproc", "strategy"))
    data = data.assign(label=hue if hue is not None else "", peak_mib=data["peak_mib"] / MIB)
    # One curve per strategy, each starting from the one-process case (which has none).
    strategy = data["strategy"] if "strategy" in data else pd.Series(None, index=data.index)
    single = data["nproc"] == 1
    curves = []
    for name in strategy[~single].dropna().unique():
        # Its own one-process case where the runs recorded one, else the one without strategy.
        start = single & (strategy == name)
        start = start if start.any() else single & strategy.isna()
        curve = data[start | (~single & (strategy == name))]
        curves.append(curve.assign(curve=(curve["label"] + f" {name}").str.strip()))
    curves = curves or [data.assign(curve=data["label"])]
    data = pd.concat(curves)
    fig, (ax1, ax2) = _panels(2)
    sns.lineplot(data=data, x="nproc", y="efficiency", hue="curve", marker="o", ax=ax1)
    ax1.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    ax1.set_ylabel("scaling efficiency")
    sns.lineplot(data=data, x="nproc", y="peak_mib", hue="curve", marker="o", ax=ax2)
    ax2.set_ylabel("peak MiB per rank (largest)")
    _finish(fig, hue)
    return Plot(
        "scaling",
        "Scaling: efficiency and memory per rank",
        "Efficiency = throughput(N) / (N × throughput(1)), the one-process case with the same "
        "other settings as reference; memory: the largest rank's peak.",
        fig,
    )


def finetune_figure(cases: pd.DataFrame, axes: list[str]) -> Plot | None:
    """Trainable against total parameters, and quality before and after, per strategy."""
    data = cases[cases["finetune"].notna() & cases["num_params"].notna()]
    if data.empty:
        return None
    after = [c for c in eval_columns(data) if data[c].notna().any()]
    before = [c for c in eval_before_columns(data) if data[c].notna().any()]
    params = data.melt(
        id_vars=["finetune"], value_vars=["num_params", "trainable_params"], var_name="count"
    )
    fig, (ax1, ax2) = _panels(2)
    _bars(ax1, params, "finetune", "value", "count", "parameters")
    ax1.set_yscale("log")
    metric = next((c for c in after if c.removeprefix("eval_") in ("accuracy", "loss")), None)
    if metric:
        key = metric.removeprefix("eval_")
        columns = {metric: "after"}
        if f"eval_before_{key}" in before:
            columns[f"eval_before_{key}"] = "before"
        quality = data.rename(columns=columns).melt(
            id_vars=["finetune"], value_vars=list(columns.values()), var_name="when"
        )
        _bars(ax2, quality, "finetune", "value", "when", f"held-out {key}")
    _finish(fig, None)
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
    fig, (ax1, ax2) = _panels(2)
    _bars(ax1, data, "x", "time_to_target_s", None, "time to target (s)")
    _bars(ax2, data, "x", "steps_to_target", None, "steps to target")
    for ax in (ax1, ax2):
        ax.set_xlabel(axis)
    fig.tight_layout()
    metric = data["target_metric"].dropna().iloc[0] if data["target_metric"].notna().any() else ""
    value = data["target_value"].dropna().iloc[0] if data["target_value"].notna().any() else ""
    return Plot(
        "target",
        "Time to target",
        f"Time and steps until {metric} reached {value} (metrics.target, median over repeats).",
        fig,
    )


def telemetry_figure(records: list[dict[str, Any]]) -> Plot | None:
    """GPU utilisation, power and SM clock over the window of the case with the longest
    NVML timeline."""
    record = timeline_record(records)
    if record is None:
        return None
    data = gpu_timeline(record)
    fig, axs = _panels(3)
    for ax, column, label in zip(
        axs, ("gpu_util_percent", "power_w", "sm_clock_mhz"), ("GPU util %", "power W", "SM MHz")
    ):
        sns.lineplot(data=data, x="t_s", y=column, hue="device", ax=ax, marker=".")
        ax.set_xlabel("window time (s)")
        ax.set_ylabel(label)
    _finish(fig, None)
    config = record.get("config") or {}
    case = ", ".join(f"{k}={config.get(k)}" for k in ("workload", "model_size", "batch_size"))
    return Plot(
        "telemetry",
        "GPU telemetry of one case",
        f"NVML samples over the measured window of case {record.get('case_id')} ({case}), "
        f"repeat {record.get('repeat')}: the case with the longest timeline.",
        fig,
    )


def suite_plots(
    cases: pd.DataFrame, repeats: pd.DataFrame, records: list[dict[str, Any]]
) -> list[Plot]:
    """The figures one suite's axes call for (``cases``: its aggregate rows; ``repeats``: its
    records frame rows; ``records``: its raw records)."""
    axes = varying_axes(cases)
    plots = []
    if "compile" in axes:
        plots.append(compile_figure(cases, repeats, axes))
    if "precision" in axes:
        plots.append(precision_figure(cases, axes))
    if "batch_size" in axes:
        plots.append(batch_figure(cases, axes))
    if "model_size" in axes:
        plots.append(model_size_figure(cases, axes))
    if "optimizer" in axes:
        plots.append(optimizer_figure(cases, records, axes))
    if "nproc" in axes:
        plots.append(scaling_figure(cases, axes))
    if "finetune" in axes:
        plots.append(finetune_figure(cases, axes))
    plots.append(target_figure(cases, axes))
    plots.append(telemetry_figure(records))
    return [plot for plot in plots if plot is not None]


def write_plots(plots: list[Plot], directory: Path, prefix: str) -> list[Plot]:
    """Save each figure as ``directory/<prefix>-<name>.png`` and close it."""
    directory.mkdir(parents=True, exist_ok=True)
    for plot in plots:
        plot.path = directory / f"{_safe(prefix)}-{plot.name}.png"
        plot.figure.savefig(plot.path, format="png")
        plt.close(plot.figure)
    return plots


def _safe(name: str) -> str:
    """A file-name-safe form of a suite's name (it may hold anything)."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "suite"
