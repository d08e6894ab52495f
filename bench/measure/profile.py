"""Where a training step's time goes: N more steps under ``torch.profiler`` after the measured
window (never inside it), a trace that Chrome's trace viewer, Perfetto and TensorBoard's profiler
plugin open, and a per-step summary for the record (docs/METHOD.md, "Profiles").

Every operator's self time is assigned to one category by the first rule that matches
(:data:`CATEGORY_RULES`, on the op's name, lower-cased), except that anything running under an
optimizer's ``step`` or ``zero_grad`` (torch.optim wraps both in a ``record_function`` named
``Optimizer.step#<Class>.step``) is ``optimizer``. Device time goes to the category of the host
op that launched the kernel. Kernels that inductor generates (``triton_poi_fused_*``,
``cpp_fused_*``) and the self time of a compiled region are ``elementwise``: fused pointwise
and reduction code.
"""

import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from bench.measure.timing import synchronize
from bench.results.metrics import PROFILE_CATEGORIES as CATEGORIES

TOP_OPERATORS = 10
# (category, pattern searched in the op's lower-cased name), first match wins.
CATEGORY_RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (category, re.compile(pattern))
    for category, pattern in (
        ("attention", r"attention|flash|fmha|sdpa"),
        ("convolution", r"conv"),
        ("matmul", r"aten::(mm|addmm|bmm|baddbmm|matmul|linear|addmv|mv|dot|_scaled_mm)\b|gemm"),
        ("normalisation", r"norm"),
        ("data copy", r"aten::(copy_|_to_copy|to|clone|contiguous)\b|memcpy|memset"),
        (
            "elementwise",
            r"fused|compiled|aten::(add|sub|mul|div|relu|gelu|silu|sigmoid|tanh|exp|log|pow|neg"
            r"|where|threshold|softmax|_softmax|log_softmax|_log_softmax|nll_loss|mse_loss"
            r"|cross_entropy|dropout|native_dropout|fill_|zero_|sum|mean|max|min|clamp|abs|sqrt"
            r"|rsqrt|embedding|embedding_bag|_embedding_bag|index|gather|scatter|cat|stack)",
        ),
    )
)
_OPTIMIZER_SCOPE = re.compile(r"^Optimizer\.(step|zero_grad)#")


def category(name: str) -> str:
    """The category of an op by its name alone (the optimizer scope aside)."""
    lowered = name.lower()
    for label, pattern in CATEGORY_RULES:
        if pattern.search(lowered):
            return label
    return "other"


def profile_steps(
    step: Callable[[], Any], num_steps: int, device: torch.device, trace_path: Path
) -> dict[str, Any]:
    """Run ``num_steps`` training steps under the profiler; write the trace to ``trace_path``
    and return the per-step summary for ``metrics.profile``."""
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities, record_shapes=True) as prof:
        for _ in range(num_steps):
            step()
        synchronize(device)  # the kernels' times are the device's: wait for the last of them
    trace_path.parent.mkdir(parents=True, exist_ok=True)
    prof.export_chrome_trace(str(trace_path))
    return summarize(prof.events(), num_steps, device, trace_path)


def summarize(
    events: list[Any], num_steps: int, device: torch.device, trace_path: Path | None
) -> dict[str, Any]:
    """Per-step shares and top operators from the profiler's events (``prof.events()``)."""
    host_us: Counter[str] = Counter()
    device_us: Counter[str] = Counter()
    host_by_op: Counter[str] = Counter()
    device_by_op: Counter[str] = Counter()
    # An op's category in the top lists: the one most of its time was spent in (aten::mul_
    # counts as optimizer inside Optimizer.step, as elementwise in the model).
    time_in: Counter[tuple[str, str]] = Counter()
    num_ops = num_kernels = 0
    span_start, span_end = float("inf"), 0.0
    for event in events:
        span_start = min(span_start, event.time_range.start)
        span_end = max(span_end, event.time_range.end)
        label = _category_in_scope(event)
        host_us[label] += event.self_cpu_time_total
        host_by_op[event.name] += event.self_cpu_time_total
        kernels_us = sum(kernel.duration for kernel in event.kernels)
        time_in[event.name, label] += event.self_cpu_time_total + kernels_us
        device_us[label] += kernels_us
        if kernels_us:
            device_by_op[event.name] += kernels_us
        num_kernels += len(event.kernels)
        if event.name.startswith("aten::") and not _has_aten_parent(event):
            num_ops += 1
    cuda = device.type == "cuda"
    busy_us = sum(device_us.values())
    wall_us = max(0.0, span_end - span_start)
    shares = _shares(device_us if cuda and busy_us else host_us)
    return {
        "source": f"{num_steps} profiled steps after the window (not the measured window)",
        "num_steps": num_steps,
        # The file's name: it lies in the run's logs/, wherever the run directory is moved.
        "trace": trace_path.name if trace_path else None,
        "time_basis": "device" if cuda and busy_us else "host",
        "shares": shares,
        "step_time_by_category_s": {
            k: v / 1e6 / num_steps for k, v in (device_us if cuda else host_us).items() if v
        },
        "top_host_ops": _top(host_by_op, num_steps, time_in),
        "top_device_ops": _top(device_by_op, num_steps, time_in) if cuda else None,
        "ops_per_step": num_ops / num_steps,
        "kernels_per_step": num_kernels / num_steps if cuda else None,
        # Device idle = the profiled span less the kernels' own time: the device waiting for
        # the host (launch overhead, Python, data); concurrent kernels on two streams would
        # count once each, so this is a lower bound where streams overlap.
        "device_idle_s_per_step": (max(0.0, wall_us - busy_us) / 1e6 / num_steps if cuda else None),
        "device_idle_reason": None if cuda else "a CPU runs the ops itself: no device to idle",
    }


def _category_in_scope(event: Any) -> str:
    parent = event
    while parent is not None:
        if _OPTIMIZER_SCOPE.match(parent.name):
            return "optimizer"
        parent = parent.cpu_parent
    return category(event.name)


def _has_aten_parent(event: Any) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith("aten::"):
            return True
        parent = parent.cpu_parent
    return False


def _shares(times_us: Counter[str]) -> dict[str, float]:
    total = sum(times_us.values())
    return {k: (times_us.get(k, 0.0) / total if total else 0.0) for k in CATEGORIES}


def _top(
    by_op: Counter[str], num_steps: int, time_in: Counter[tuple[str, str]]
) -> list[dict[str, Any]]:
    total = sum(by_op.values())

    def label(name: str) -> str:
        spent = {c: us for (op, c), us in time_in.items() if op == name}
        return max(spent, key=spent.__getitem__) if spent else category(name)

    return [
        {
            "name": name,
            "category": label(name),
            "self_s_per_step": us / 1e6 / num_steps,
            "share": us / total if total else 0.0,
        }
        for name, us in by_op.most_common(TOP_OPERATORS)
    ]
