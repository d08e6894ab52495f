"""The tutorial's compute-cost questions, answered from the runs present, with the method and
the runs each answer used. Where the runs a question needs are missing, the answer names the
suite to run, and guesses nothing.
"""

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from bench.report.answers import (
    break_evens,
    evaluation_answer,
    optimizer_answer,
    target_rounds,
)
from bench.report.curves import common_loss_target, loss_curves, time_to_loss
from bench.report.estimate import Inputs, estimate, measured_from_records
from bench.report.format import (
    MISSING,
    format_count,
    format_duration,
    format_metric,
    format_mib,
    format_number,
    format_rate,
    format_setting,
)
from bench.report.frame import (
    distinguishing_axes,
    eval_columns,
    peak_memory_bytes,
    varying_axes,
)
from bench.report.tables import TableView


@dataclass
class FaqSection:
    question: str
    method: str
    runs: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    tables: list[TableView] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    """What to run for what is not answered: "suites/X.toml: why"."""
    answer: list[str] = field(default_factory=list)
    """One or two closing sentences: what the resolved data says, or what to run."""


def _runs(cases: pd.DataFrame) -> list[str]:
    pairs = cases[["suite", "run_id"]].drop_duplicates().itertuples(index=False)
    return [f"{suite}/{run_id}" for suite, run_id in pairs]


def _label(case: Any, axes: list[str]) -> str:
    return " ".join(f"{a}={format_setting(getattr(case, a))}" for a in axes) or case.case_id


def compute_section(agg: pd.DataFrame, records: list[dict[str, Any]]) -> FaqSection:
    section = FaqSection(
        "How much compute does large-model development need?",
        "Training FLOPs = 6·N·D (plus 12·L·d·T·D for attention), D = 20 tokens per parameter "
        "(compute-optimal, Chinchilla); time = FLOPs / (GPUs × peak × MFU) with the MFU of the "
        "case that reached the highest FLOP/s here; energy from the joules per FLOP measured "
        "here (NVML). Any other model: "
        "`bench estimate --params N [--tokens D] [--gpus G] [--price-per-gpu-hour P]`.",
    )
    measured = measured_from_records(records)
    if measured.mfu is None:
        section.missing.append("suites/model_size.toml: no record holds an MFU (metrics.flops)")
        section.answer.append(
            "Nothing here measures the MFU an estimate needs: run suites/model_size.toml (or any "
            "suite) on the device you would train on, then bench estimate --params N."
        )
        return section
    section.runs = measured.runs
    section.lines.append(
        f"Fastest case measured: MFU {measured.mfu:.3f} of {measured.peak_device} "
        f"({measured.peak_dtype}, peak {measured.peak_per_s / 1e12:.4g} TFLOP/s), "
        f"in {measured.mfu_case}."
    )
    if measured.num_mfu_above_one:
        section.lines.append(
            f"Left out: {measured.num_mfu_above_one} record(s) with an MFU above 1 (their peak, "
            "e.g. a CPU's measured bf16 matmul rate, is below what the step achieved)."
        )
    if measured.joules_per_flop is None:
        section.missing.append(
            "any suite on a GPU with NVML: no record holds energy, so no energy per FLOP"
        )
    rows = []
    for params in (1e9, 7e9, 70e9):
        result = estimate(Inputs(params=params), measured)
        compute, energy = result["compute"], result["energy"]
        rows.append(
            [
                format_count(params),
                f"{result['tokens']:.3g}",
                f"{result['flops']['total']:.3g}",
                f"{compute['gpu_hours']:,.0f}",
                MISSING if energy["kwh"] is None else f"{energy['kwh']:,.0f}",
                f"{16 * params / 2**30:,.0f}",
            ]
        )
    seven = estimate(Inputs(params=7e9), measured)
    section.answer.append(
        f"At the best MFU measured here ({measured.mfu:.3f}, one case's median, not a comparison), "
        f"a compute-optimal 7B model ({seven['tokens']:.3g} tokens) needs about "
        f"{seven['compute']['gpu_hours']:,.0f} hours of this device; the figure scales with "
        "1 / MFU, so measure the MFU on the device and model size you mean to train."
    )
    headers = ["params", "tokens", "FLOPs", "device-hours", "kWh", "GiB to train (16 B/param)"]
    section.tables.append(
        TableView(
            "Compute-optimal training at the MFU measured here, one device",
            headers,
            [False] + [True] * 5,
            rows,
            "device-hours on this machine's device at its measured MFU; the memory column is "
            "mixed-precision Adam's 16 bytes per parameter, activations excluded.",
        )
    )
    return section


def optimizer_section(agg: pd.DataFrame, records: list[dict[str, Any]]) -> FaqSection:
    section = FaqSection(
        "How to choose an optimizer?",
        "Per optimizer, same model, data, seed and steps: time and steps until the suite's own "
        "target (metrics.target) where it sets one, else until the training loss first reached "
        "the lowest loss at least two thirds of the cases reached (from the loss readings and "
        "the measured step "
        "times); the final loss, the optimizer state, the step time. The table's title names "
        "the target.",
    )
    suites = [
        s for s, cases in agg.groupby("suite", sort=False) if "optimizer" in varying_axes(cases)
    ]
    if not suites:
        section.missing.append("suites/optimizers.toml: no suite here varies the optimizer")
        section.answer.append(
            "Nothing here compares optimizers: run suites/optimizers.toml, with --repeats 3 or "
            "more so that the comparison rule can resolve which reaches the target first."
        )
        return section
    for suite in suites:
        cases = agg[agg["suite"] == suite]
        section.runs += _runs(cases)
        axes = varying_axes(cases)
        # The other settings that tell cases apart (a workload), the optimizer's own lr aside.
        others = distinguishing_axes(cases, axes, "optimizer")
        own = _suite_target(cases)
        curves, target = None, None
        if own is None:  # no metrics.target: the lowest loss two thirds of the cases reached
            suite_records = [r for r in records if r.get("suite") == suite]
            curves = loss_curves(suite_records, ["optimizer"])
            target = common_loss_target(curves)
            times = time_to_loss(curves, target) if target is not None else None
            where = f"loss {target:.4g}" if target is not None else "a common loss (none)"
        else:  # every row from metrics.target: one target for the whole column
            where = f"{own} (the suite's metrics.target)"
        rows = []
        for case in cases.itertuples():
            if own is None:
                t = _at(times, case.case_id, "time_to_target_s")
                steps = _at(times, case.case_id, "steps_to_target")
            else:
                t, steps = case.time_to_target_s, case.steps_to_target
            rows.append(
                [
                    " ".join([format_setting(case.optimizer), _label(case, others)])
                    if others
                    else format_setting(case.optimizer),
                    str(case.status),
                    format_number(t, ".3g"),
                    format_number(steps, ".0f"),
                    format_metric(case.final_train_loss),
                    format_mib(case.optimizer_state_bytes),
                    MISSING if math.isnan(case.step_time_s) else format_duration(case.step_time_s),
                ]
            )
        in_suite = [r for r in records if r.get("suite") == suite]
        rounds = target_rounds(in_suite, own, curves, target)
        groups = cases.groupby(others, sort=False, dropna=False) if others else [((), cases)]
        for _, group in groups:
            prefix = f"{_label(next(group.itertuples()), others)}: " if others else ""
            section.answer.append(prefix + optimizer_answer(group, rounds, where))
        section.tables.append(
            TableView(
                f"{suite}: optimizers to {where}",
                [
                    "optimizer",
                    "status",
                    "time to target s",
                    "steps",
                    "final loss",
                    "state MiB",
                    "step time",
                ],
                [False, False, True, True, True, True, True],
                rows,
            )
        )
    return section


def _suite_target(cases: pd.DataFrame) -> str | None:
    """The suite's target as "metric value" (its settings target_metric and target_value),
    several joined where cases differ; None when no case has one."""
    if "target_metric" not in cases or not cases["target_metric"].notna().any():
        return None
    values = cases["target_value"] if "target_value" in cases else pd.Series(None, cases.index)
    pairs = dict.fromkeys(
        f"{metric} {format_setting(value)}"
        for metric, value in zip(cases["target_metric"], values)
        if isinstance(metric, str)
    )
    return ", ".join(pairs)


def _at(times: pd.DataFrame | None, case_id: str, column: str) -> float:
    if times is None or case_id not in times.index:
        return math.nan
    return float(times.loc[case_id, column])


def evaluation_section(agg: pd.DataFrame, records: list[dict[str, Any]]) -> FaqSection:
    section = FaqSection(
        "How to evaluate a large model's performance?",
        "Quality on held-out data (accuracy, loss, perplexity) next to system metrics "
        "(throughput, MFU, peak memory, energy per sample) for every case that ran: a faster "
        "setting that learns worse shows it here.",
    )
    ok = agg[agg["num_ok"] > 0]
    quality = [c for c in eval_columns(ok) if ok[c].notna().any()]
    ok = ok[ok[quality].notna().any(axis=1)] if quality else ok  # max-batch searches: no eval
    if ok.empty or not quality:
        section.missing.append("suites/precision.toml: no case here has a held-out evaluation")
        section.answer.append(evaluation_answer(agg, records))
        return section
    section.runs = _runs(ok)
    headers = [
        "suite",
        "case",
        *[c.replace("_", " ") for c in quality],
        "samples/s",
        "MFU",
        "peak MiB",
        "J/sample",
    ]
    rows = []
    memory = peak_memory_bytes(ok)
    for index, case in zip(ok.index, ok.itertuples()):
        axes = varying_axes(agg[agg["suite"] == case.suite])
        rows.append(
            [
                str(case.suite),
                _label(case, axes),
                *[format_metric(getattr(case, c)) for c in quality],
                format_rate(case.samples_per_s),
                format_number(case.mfu, ".3f"),
                format_mib(memory[index]),
                format_number(case.energy_per_sample_j, ".3g"),
            ]
        )
    section.tables.append(
        TableView(
            "Quality next to system metrics",
            headers,
            [False, False] + [True] * (len(headers) - 2),
            rows,
        )
    )
    if ok["energy_per_sample_j"].isna().all():
        section.missing.append("any suite on a GPU with NVML: no energy per sample here")
    section.answer.append(evaluation_answer(agg, records))
    return section


def challenges_section(agg: pd.DataFrame) -> FaqSection:
    section = FaqSection(
        "What are the main challenges?",
        "Each challenge quantified from the runs present: the memory wall (largest batch and "
        "model that fit), compile overhead and its break-even, data-loading stalls (share of "
        "step time waiting for data), numeric trouble (AMP skipped steps, non-finite losses).",
    )
    section.runs = _runs(agg)
    maxb = agg[agg["max_batch_size"].notna()]
    if len(maxb):
        for case in maxb.itertuples():
            section.lines.append(
                f"Memory wall: largest batch that fitted, {case.suite} "
                f"workload={getattr(case, 'workload', None)}: {case.max_batch_size:.0f}"
                + (
                    " (the search's limit, max_batch_limit: it never ran out of memory)."
                    if case.max_batch_capped == 1
                    else " (the next batch ran out of memory)."
                )
            )
    else:
        section.missing.append("suites/batch_size.toml: no max-batch search here")
    sized = agg[agg["num_params"].notna() & (agg["num_ok"] > 0)]
    oom = agg[agg["status"] == "oom"]
    if len(sized) and sized["num_params"].nunique() > 1:
        big = sized.loc[sized["num_params"].idxmax()]
        peak = peak_memory_bytes(sized)
        section.lines.append(
            f"Memory wall: largest model that trained: {format_count(big['num_params'])} "
            f"parameters ({big.get('workload')}, peak {format_mib(peak[big.name])} MiB)"
            + (
                f"; {len(oom)} case(s) ran out of memory."
                if len(oom)
                else "; none ran out of memory."
            )
        )
    else:
        section.missing.append("suites/model_size.toml: no sweep over model sizes here")
    compiled = agg[agg["compile_time_s"].notna()]
    if len(compiled):
        net = compiled.get("compile_time_net_s", compiled["compile_time_s"])
        paid, unresolved = break_evens(agg)
        section.lines.append(
            f"Compile overhead (net of eager's own first-step excess): {net.min():.2f} to "
            f"{net.max():.2f} s per compiled case."
        )
        if paid:
            section.lines.append("Break-even (resolved speedups only): " + "; ".join(paid) + ".")
            section.answer.append(
                "Resolved here: compiling pays off after " + "; ".join(paid) + " steps."
            )
        if unresolved:
            section.lines.append(
                "No break-even is derived where the speedup is not resolved: "
                + "; ".join(unresolved)
                + "."
            )
            if not paid:
                section.answer.append(
                    "Whether compiling pays off is not resolved on this machine: its noise hides "
                    "every compiled case's difference from eager; rerun "
                    "suites/compile_vs_eager.toml with the repeats named above (--repeats N), "
                    "or on a quieter machine."
                )
    else:
        section.missing.append("suites/compile_vs_eager.toml: no compiled case here")
    waits = agg[agg["data_wait_fraction"].notna()]
    if len(waits):
        worst = waits.loc[waits["data_wait_fraction"].idxmax()]
        section.lines.append(
            f"Data-loading stalls: up to {100 * worst['data_wait_fraction']:.1f}% of step time "
            f"waiting for data ({worst['suite']}, case {worst['case_id']}); median "
            f"{100 * waits['data_wait_fraction'].median():.1f}% over {len(waits)} case(s)."
        )
    else:
        section.missing.append(
            "suites/data_pipeline.toml: no record here holds metrics.data_wait_fraction "
            "(the share of step time spent waiting for data)"
        )
    amp = agg[agg["amp_skipped_steps"].notna()]
    flagged = agg[agg["flags"].fillna("").str.contains("loss_not_finite")]
    if len(amp) or len(flagged):
        parts = [
            f"{case.suite} precision={getattr(case, 'precision', None)}: "
            f"{case.amp_skipped_steps:.0f} of "
            f"{case.amp_num_steps:.0f} steps skipped by GradScaler"
            for case in amp.itertuples()
        ]
        parts += [
            f"{case.suite} case {case.case_id}: non-finite loss" for case in flagged.itertuples()
        ]
        section.lines.append("Numeric trouble: " + "; ".join(parts) + ".")
    else:
        section.missing.append("suites/precision.toml: no amp-fp16 case here (GradScaler skips)")
    if not section.answer:
        section.answer.append(
            "No compiled case here, so nothing resolves whether compiling pays off: run "
            "suites/compile_vs_eager.toml (with --repeats 5 on a busy machine)."
        )
    if len(maxb):
        fits = ", ".join(
            f"{getattr(c, 'workload', None)} {c.max_batch_size:.0f}" for c in maxb.itertuples()
        )
        section.answer.append(f"The memory wall, measured: the largest batch that fitted: {fits}.")
    return section


def faq_sections(agg: pd.DataFrame, records: list[dict[str, Any]]) -> list[FaqSection]:
    return [
        compute_section(agg, records),
        optimizer_section(agg, records),
        evaluation_section(agg, records),
        challenges_section(agg),
    ]
