"""Seaborn figures of a suite, chosen from the axes it varies, written as PNG files.

Each ``*_figure`` function takes one suite's aggregated cases (and, where it needs them, its
per-repeat rows, loss curves or records) and returns a :class:`Plot` or None when the suite
holds nothing for it; :func:`suite_plots` picks the figures for a suite and :func:`write_plots`
saves them. A figure's bars and points are the numbers of the tables: nothing is drawn that the
records do not hold. Figures of training progress (optimizers, fine-tuning, targets) are in
``plots_progress``; the shared drawing helpers in ``canvas``.
"""

import hashlib
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import seaborn as sns

from bench.report.canvas import (
    Plot,
    bars,
    finish,
    hue_labels,
    interval_bars,
    log_if_wide,
    panels,
    plt,
    rule_errorbar,
    setting_text,
)
from bench.report.comparisons import EFFICIENCY, BreakEven, break_even, case_comparisons
from bench.report.curves import gpu_timeline, timeline_record
from bench.report.format import MIB
from bench.report.frame import (
    peak_memory_bytes,
    scaling_efficiency,
    varying_axes,
    workload_bound_axes,
)
from bench.report.plots_progress import finetune_figure, optimizer_figure, target_figure
from bench.report.profiles import profile_figure


def compile_figure(cases: pd.DataFrame, axes: list[str]) -> Plot | None:
    """Speedup against eager per mode with the rule's interval, compile time, and the
    break-even steps (compile time over the step time saved) where the speedup is resolved."""
    compiled = cases[cases["compile"] != "eager"]
    if compiled["step_time_s"].notna().sum() == 0:
        return None
    hue = hue_labels(cases, axes, ("compile",))
    speedups = case_comparisons(cases).get("speedup vs eager", pd.Series(None, index=cases.index))
    paid = [b if isinstance(b, BreakEven) else None for b in break_even(cases, speedups)]
    data = cases.assign(label=hue, speedup=speedups, break_even=paid)[
        lambda d: (d["compile"] != "eager") & d["step_time_s"].notna()  # modes that ran
    ]
    hue_col = "label" if hue is not None else None
    fig, (ax1, ax2, ax3) = panels(3)
    interval_bars(ax1, data, "compile", hue_col, "speedup", "speedup vs eager (×)")
    compile_s = "compile_time_net_s" if "compile_time_net_s" in data else "compile_time_s"
    bars(ax2, data, "compile", compile_s, hue_col, "compile time, net (s)")
    interval_bars(
        ax3,
        data,
        "compile",
        hue_col,
        "break_even",
        "break-even steps",
        "none resolved: no compiled case\nresolved as faster than eager",
        no_difference=False,
    )
    finish(fig, hue)
    return Plot(
        "compile",
        "torch.compile against eager",
        "Left: eager step time / compiled step time; error bars: the 95% interval of the "
        "comparison rule (bench/comparison_rule.py; repeats paired by round within a run); "
        "hatched pale bars: not resolved (the rule does not call it a change); dashed: no "
        "difference. Middle: compile time net of eager's own first-step excess (first step "
        "- steady step, less the eager twin's same excess). Right: steps after which compiling "
        "pays off, with the interval the speedup's carries, drawn only where the rule resolves "
        "the compiled step as faster.",
        fig,
    )


def precision_figure(cases: pd.DataFrame, axes: list[str]) -> Plot | None:
    """Speedup against fp32 with the rule's interval, peak memory and final training loss per
    precision."""
    ok = cases[cases["step_time_s"].notna()]
    if ok.empty:
        return None
    hue = hue_labels(ok, axes, ("precision",))
    speedups = case_comparisons(ok).get("speedup vs fp32", pd.Series(None, index=ok.index))
    data = ok.assign(label=hue, peak_mib=peak_memory_bytes(ok) / MIB, speedup=speedups)
    hue_col = "label" if hue is not None else None
    fig, (ax1, ax2, ax3) = panels(3)
    interval_bars(ax1, data, "precision", hue_col, "speedup", "speedup vs fp32 (×)")
    bars(ax2, data, "precision", "peak_mib", hue_col, "peak memory (MiB)")
    bars(ax3, data, "precision", "final_train_loss", hue_col, "final training loss")
    finish(fig, hue)
    return Plot(
        "precision",
        "Precision: speed, memory, loss reached",
        "Left: fp32 step time / this precision's; error bars: the comparison rule's 95% "
        "interval (repeats paired by round); hatched pale bars: not resolved. Middle: peak "
        "memory (CUDA allocator peak; on a CPU the RSS rise above the process before the model "
        "was built). Right: the training loss over the window's last block (compare it at "
        "equal steps: the table's steps trained). A missing bar: skipped or failed.",
        fig,
    )


def batch_figure(cases: pd.DataFrame, axes: list[str]) -> Plot | None:
    """Throughput and peak memory against batch size; the largest batch that fits as a line."""
    numeric = pd.to_numeric(cases["batch_size"], errors="coerce")
    data = cases.assign(batch=numeric, peak_mib=peak_memory_bytes(cases) / MIB)
    data = data[data["batch"].notna() & data["step_time_s"].notna()]
    hue = hue_labels(data, axes, ("batch_size",))
    groups = data.groupby(hue if hue is not None else [0] * len(data))["batch"].nunique()
    if data.empty or groups.max() < 2:  # batch varies only with the workload: no curve
        return None
    data = data.assign(label=hue)
    hue_col = "label" if hue is not None else None
    fig, (ax1, ax2) = panels(2)
    for ax, y, label in ((ax1, "samples_per_s", "samples/s"), (ax2, "peak_mib", "peak MiB")):
        sns.lineplot(data=data, x="batch", y=y, hue=hue_col, marker="o", ax=ax, errorbar=None)
        ax.set_xscale("log", base=2)
        log_if_wide(ax, data[y])
        ax.set_xlabel("batch size")
        ax.set_ylabel(label)
    found = cases[cases["max_batch_size"].notna()]
    for size, group in found.groupby("max_batch_size"):  # one line per distinct largest batch
        capped = " (limit)" if (group["max_batch_capped"] == 1).all() else ""
        who = ", ".join(setting_text(w) for w in group["workload"])
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
    finish(fig, hue)
    return Plot(
        "batch_size",
        "Batch size: throughput and memory",
        "Samples/s and peak memory against batch size (log scale); dotted red: the largest "
        "batch that fitted (the search's limit when it never ran out of memory). Each point is "
        "the case's samples/s; its ratio to the smallest batch's, with the comparison rule's "
        "95% interval and whether it is resolved, is in the table and the findings.",
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
    hue = hue_labels(data, axes, ("model_size",))
    data = data.assign(label=hue, peak_mib=peak_memory_bytes(data) / MIB)
    hue_col = "label" if hue is not None else None
    fig, (ax1, ax2, ax3) = panels(3)
    columns = ((ax1, "samples_per_s", "samples/s"), (ax2, "mfu", "MFU"), (ax3, "peak_mib", "MiB"))
    for ax, y, label in columns:
        if data[y].notna().any():
            sns.lineplot(
                data=data, x="num_params", y=y, hue=hue_col, marker="o", ax=ax, errorbar=None
            )
            log_if_wide(ax, data[y])
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
        # Two fits a line: four workloads' in one line ran past the panel.
        lines = ["; ".join(fits[i : i + 2]) for i in range(0, len(fits), 2)]
        ax3.set_title("fitted: " + "\n".join(lines), fontsize=8)
    finish(fig, hue)
    return Plot(
        "model_size",
        "Model size: throughput, MFU, memory",
        "Against the exact parameter count (log scale). Memory's fitted bytes per parameter: "
        "the least-squares slope of peak memory over parameter count.",
        fig,
    )


def scaling_figure(cases: pd.DataFrame, axes: list[str]) -> Plot | None:
    """Scaling efficiency and peak memory per rank against the number of processes."""
    rule = case_comparisons(cases).get(EFFICIENCY, pd.Series(None, index=cases.index))
    # The table's figure: the rule's ratio where there is a comparison, 1 at one process.
    ruled = pd.Series([c.value if c is not None else math.nan for c in rule], index=cases.index)
    efficiency = ruled.fillna(scaling_efficiency(cases))
    data = cases.assign(efficiency=efficiency, peak_mib=peak_memory_bytes(cases), rule=rule)
    data = data[data["nproc"].notna() & data["step_time_s"].notna()]
    if data["nproc"].nunique() < 2:
        return None
    hue = hue_labels(data, axes, ("nproc", "strategy"))
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
    fig, (ax1, ax2) = panels(2)
    sns.lineplot(data=data, x="nproc", y="efficiency", hue="curve", marker="o", ax=ax1)
    for nproc, c in zip(data["nproc"], data["rule"]):
        if c is not None:  # the rule's 95% interval of the efficiency
            rule_errorbar(ax1, nproc, c)
    ax1.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    ax1.set_ylabel("scaling efficiency")
    sns.lineplot(data=data, x="nproc", y="peak_mib", hue="curve", marker="o", ax=ax2)
    ax2.set_ylabel("peak MiB per rank (largest)")
    for ax in (ax1, ax2):
        ax.set_xticks(sorted(data["nproc"].unique()))
    finish(fig, hue)
    return Plot(
        "scaling",
        "Scaling: efficiency and memory per rank",
        "Efficiency = throughput(N) / (N × throughput(1)), the one-process case with the same "
        "other settings as reference; error bars: the comparison rule's 95% interval against "
        "perfect scaling (dashed; repeats paired by round within a run); memory: the largest "
        "rank's peak.",
        fig,
    )


def telemetry_figure(records: list[dict[str, Any]]) -> Plot | None:
    """GPU utilisation, power and SM clock over the window of the case with the longest
    NVML timeline."""
    record = timeline_record(records)
    if record is None:
        return None
    data = gpu_timeline(record)
    fig, axs = panels(3)
    for ax, column, label in zip(
        axs, ("gpu_util_percent", "power_w", "sm_clock_mhz"), ("GPU util %", "power W", "SM MHz")
    ):
        sns.lineplot(data=data, x="t_s", y=column, hue="device", ax=ax, marker=".")
        ax.set_xlabel("window time (s)")
        ax.set_ylabel(label)
    finish(fig, None)
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
        plots.append(compile_figure(cases, axes))
    if "precision" in axes:
        plots.append(precision_figure(cases, axes))
    if "batch_size" in axes:
        plots.append(batch_figure(cases, axes))
    # Model sizes that differ only with the workload are no sweep over sizes: no curve.
    if "model_size" in axes and "model_size" not in workload_bound_axes(cases, axes):
        plots.append(model_size_figure(cases, axes))
    if "optimizer" in axes:
        plots.append(optimizer_figure(cases, records, axes))
    if "nproc" in axes:
        plots.append(scaling_figure(cases, axes))
    if "finetune" in axes:
        plots.append(finetune_figure(cases, axes))
    plots.append(target_figure(cases, axes))
    plots.append(telemetry_figure(records))
    plots.append(profile_figure(records))
    return [plot for plot in plots if plot is not None]


def write_plots(plots: list[Plot], directory: Path, prefix: str) -> list[Plot]:
    """Save each figure as ``directory/<prefix>-<name>.png`` and close it."""
    directory.mkdir(parents=True, exist_ok=True)
    for plot in plots:
        plot.path = directory / f"{safe_name(prefix)}-{plot.name}.png"
        # "tight": the figure grows to hold a legend placed beside its last panel.
        plot.figure.savefig(plot.path, format="png", bbox_inches="tight")
        plt.close(plot.figure)
    return plots


def safe_name(name: str) -> str:
    """A file-name-safe form of a suite's name (it may hold anything). Where characters had to
    be replaced, a short hash of the name follows, so that suites "a b" and "a_b" keep files
    of their own."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    if safe == name and safe:
        return safe
    return f"{safe or 'suite'}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
