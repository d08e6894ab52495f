"""How the report writes numbers and settings: one place, so tables, FAQ and HTML agree."""

import math
from typing import Any

MIB = 1024 * 1024
MISSING = "—"
REASON_CHARS = 300


def format_status(case: Any) -> str:
    if case.status == "partial":
        return f"partial: {case.num_ok}/{case.num_repeats} ok"
    return str(case.status)


def format_step_time(case: Any) -> str:
    if missing(case.step_time_s):
        return MISSING
    text = format_duration(case.step_time_s)
    if case.num_ok < 2:
        return text
    half_range_s = (case.repeat_max_s - case.repeat_min_s) / 2
    return f"{text} ±{100 * half_range_s / case.step_time_s:.1f}%"


def format_duration(seconds: float) -> str:
    """Three significant digits in the unit that keeps the number below 1000: µs, ms or s."""
    for unit, scale in (("µs", 1e-6), ("ms", 1e-3)):
        if seconds < 1000 * scale:
            return f"{three_digits(seconds / scale)} {unit}"
    return f"{three_digits(seconds)} s"


def three_digits(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def format_rate(value: float) -> str:
    if missing(value):
        return MISSING
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def format_mib(value: float) -> str:
    if missing(value):
        return MISSING
    # Below 10 MiB (an optimizer's state on a small model) a whole MiB would round it away.
    return f"{value / MIB:.2f}" if value < 10 * MIB else f"{value / MIB:,.0f}"


def format_number(value: float, spec: str) -> str:
    return MISSING if missing(value) else format(value, spec)


def format_metric(value: float) -> str:
    if missing(value):
        return MISSING
    return f"{value:.3f}" if abs(value) < 100 else f"{value:,.1f}"


def format_setting(value: object) -> str:
    """Config values as written in a suite: 64 not 64.0 (a column with None turns ints float)."""
    if missing(value):
        return MISSING
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def format_reason(case: Any) -> str:
    """The last non-empty line of the reason (an error's last line names the exception)."""
    lines = [] if missing(case.reason) else str(case.reason).strip().splitlines()
    last = lines[-1].strip() if lines else MISSING
    if len(last) > REASON_CHARS:
        last = last[: REASON_CHARS - 1] + "…"
    # A partial case's status says how many repeats failed, not how the last one failed.
    return f"{case.failed_status}: {last}" if case.status == "partial" else last


def missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def format_count(value: float) -> str:
    """A parameter count: 52.6K, 124M, 1.48B."""
    if missing(value):
        return MISSING
    for suffix, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.0f}"
