"""Why is it slow? The report's views of profiled steps (``metrics.profile``: where the step's
time goes, the top operators) and of what dynamo did (``runtime.compile``: graphs, graph breaks
and recompiles with their reasons). Both read the raw records of one suite."""

from statistics import fmean
from typing import Any

import pandas as pd

from bench.report.canvas import Plot, panels
from bench.report.format import format_mib, format_number
from bench.report.tables import TableView
from bench.results.metrics import PROFILE_CATEGORIES as CATEGORIES
from bench.spec.labels import case_labels

PROFILE_NOTE = (
    "From the profiled steps run after the measured window (profile_steps), not from the window "
    "itself: shares of the step's time per category (device time on CUDA, host self time on a "
    "CPU), averaged over the ok repeats; ops/step counts the operators the step dispatched."
)


def _by_case(records: list[dict[str, Any]], pick) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for record in records:
        if record.get("status") == "ok" and (value := pick(record)) is not None:
            found.setdefault(record["case_id"], []).append(value)
    return found


def _labels(records: list[dict[str, Any]]) -> dict[str, str]:
    return case_labels({r["case_id"]: r["config"] for r in records})


def profile_tables(records: list[dict[str, Any]]) -> list[TableView]:
    """ "Where the time goes" per profiled case, then each case's top operators (folded)."""
    profiles = _by_case(records, lambda r: (r.get("metrics") or {}).get("profile"))
    if not profiles:
        return []
    labels = _labels(records)
    rows = []
    for case_id, found in profiles.items():
        shares = [fmean(p["shares"].get(c, 0.0) for p in found) for c in CATEGORIES]
        idle = [p["device_idle_s_per_step"] for p in found if p["device_idle_s_per_step"]]
        rows.append(
            [labels[case_id]]
            + [f"{100 * share:.1f}%" for share in shares]
            + [
                format_number(fmean(p["ops_per_step"] for p in found), ",.0f"),
                format_number(fmean(idle) * 1e3, ".2f") if idle else "-",
            ]
        )
    views = [
        TableView(
            "where the time goes (profiled steps)",
            ["case", *CATEGORIES, "ops/step", "device idle ms/step"],
            [False] + [True] * (len(CATEGORIES) + 2),
            rows,
            PROFILE_NOTE,
        )
    ]
    for case_id, found in profiles.items():
        top = found[0]["top_device_ops"] or found[0]["top_host_ops"]
        basis = "device" if found[0]["top_device_ops"] else "host"
        views.append(
            TableView(
                f"top operators by {basis} self time: {labels[case_id]}",
                ["operator", "category", "ms/step", "share"],
                [False, False, True, True],
                [
                    [
                        op["name"],
                        op["category"],
                        format_number(op["self_s_per_step"] * 1e3, ".3f"),
                        f"{100 * op['share']:.1f}%",
                    ]
                    for op in top
                ],
                f"repeat 0 of the case; trace: logs/{found[0]['trace']} of its run",
                folded=True,
            )
        )
    return views


def _compiled(record: dict[str, Any]) -> dict[str, Any] | None:
    stats = (record.get("runtime") or {}).get("compile")
    return stats if stats and stats.get("mode") != "eager" else None


def compile_table(records: list[dict[str, Any]]) -> TableView | None:
    """Graphs, graph breaks and recompiles of each compiled case, with dynamo's reasons."""
    compiled = _by_case(
        records,
        lambda r: (
            c if (c := (r.get("runtime") or {}).get("compile")) and c["mode"] != "eager" else None
        ),
    )
    if not compiled:
        return None
    labels = _labels(records)
    rows = []
    for case_id, found in compiled.items():
        first = found[0]
        breaks = first.get("graph_break_counts") or dict.fromkeys(
            first.get("graph_break_reasons") or [], 1
        )
        recompiles = first.get("recompile_reasons") or {}
        rows.append(
            [
                labels[case_id],
                str(first.get("num_graphs", "-")),
                str(first.get("num_graph_breaks", "-")),
                "; ".join(f"{reason} (x{count})" for reason, count in breaks.items()) or "-",
                str(first.get("num_recompiles", "-")),
                "; ".join(f"{reason} (x{count})" for reason, count in recompiles.items()) or "-",
            ]
        )
    return TableView(
        "compilation: graphs, graph breaks and recompiles",
        ["case", "graphs", "graph breaks", "break reasons", "recompiles", "recompile reasons"],
        [False, True, True, False, True, False],
        rows,
        "From dynamo's counters and its recompile log (guard failures), repeat 0 of each case; "
        "a recompile inside the measured window is also flagged on the record.",
    )


MEMORY_PARTS = (
    ("parameters", "parameters_bytes"),
    ("gradients", "gradients_bytes"),
    ("optimizer state", "optimizer_state_bytes"),
    ("activations", "activations_bytes"),
)
MEMORY_PARTS_NOTE = (
    "MiB per rank, repeat 0 of each case (metrics.memory). Parameters, gradients and optimizer "
    "state as the tensors hold them; activations: what autograd saved for the backward pass in "
    "one step after the window (each storage once, parameters excluded; a compiled graph's saved "
    "tensors included). The peak: the allocator's peak over the window on CUDA, the window's RSS "
    "rise above the process before the model was built on a CPU (the allocator's free lists and "
    "the data are in it too)."
)


def memory_table(records: list[dict[str, Any]]) -> TableView | None:
    """What takes the memory: each part of a case's memory beside the window's peak."""
    found = _by_case(records, lambda r: (r.get("metrics") or {}).get("memory"))
    found = {k: v for k, v in found.items() if v[0].get("activations_bytes") is not None}
    if not found:
        return None
    labels = _labels(records)
    first_of = {r["case_id"]: r for r in records if r.get("status") == "ok"}
    rows = []
    for case_id, memories in found.items():
        memory, metrics = memories[0], first_of[case_id]["metrics"]
        peak = metrics.get("peak_alloc_bytes")
        rows.append(
            [labels[case_id]]
            + [format_mib(memory.get(key)) for _, key in MEMORY_PARTS]
            + [format_mib(peak if peak is not None else memory.get("window_rss_rise_bytes"))]
        )
    return TableView(
        "what takes the memory",
        ["case", *(name for name, _ in MEMORY_PARTS), "window peak"],
        [False] + [True] * (len(MEMORY_PARTS) + 1),
        rows,
        MEMORY_PARTS_NOTE,
        folded=True,
    )


def profile_figure(records: list[dict[str, Any]]) -> Plot | None:
    """A stacked bar per profiled case: its step's time by category."""
    profiles = _by_case(records, lambda r: (r.get("metrics") or {}).get("profile"))
    if not profiles:
        return None
    labels = _labels(records)
    shares = pd.DataFrame(
        {
            labels[case_id]: [fmean(p["shares"].get(c, 0.0) for p in found) for c in CATEGORIES]
            for case_id, found in profiles.items()
        },
        index=list(CATEGORIES),
    ).T
    fig, (ax,) = panels(1)
    fig.set_size_inches(8, 1.2 + 0.45 * len(shares))
    (100 * shares).plot.barh(stacked=True, ax=ax, width=0.7, colormap="tab10")
    ax.set_xlabel("share of the profiled step's time (%)")
    ax.set_xlim(0, 100)
    ax.invert_yaxis()
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small", frameon=False)
    fig.tight_layout()
    return Plot(
        "profile",
        "Where the step's time goes",
        PROFILE_NOTE,
        fig,
    )
