"""The worker: runs one (case, repeat) in its own process and writes its result as JSON.

Order of events, as docs/METHOD.md explains: build data, model and optimizer; time the first step
alone (it carries compilation); warm up; run the measured window; evaluate on held-out data. The
launcher turns the result into a record; this module imports torch, the launcher does not.
"""

import json
import math
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bench import compile as compiling
from bench.config import CUDAGRAPH_MODES, Case
from bench.measure import WindowPolicy, block_steps, run_window
from bench.optimizers import build_optimizer
from bench.precision import POLICIES, unsupported_reason
from bench.statistics import summarize
from bench.timing import step_timer, synchronize, time_call, wall
from bench.workloads.workload import Workload, build

ERROR_TAIL_LINES = 20


class TrainModule(nn.Module):
    """Model and loss in one module, so that ``torch.compile`` captures the loss with the model."""

    def __init__(self, model: nn.Module, loss_fn) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(self.model(x), y)


@dataclass
class Training:
    """A case ready to train: ``step()`` runs one real training step and returns its loss."""

    workload: Workload
    step: Callable[[], torch.Tensor]


def prepare(case: Case, device: torch.device) -> Training:
    """Build the case's data, model, optimizer, precision and compile wrapper."""
    policy = POLICIES[case.precision]
    torch.manual_seed(case.seed)
    workload = build(case, device, policy.param_dtype)
    train_module = compiling.wrap(TrainModule(workload.model, workload.loss_fn), case.compile)
    optimizer = build_optimizer(case.optimizer, workload.model, case.lr)
    marks_steps = device.type == "cuda" and case.compile in CUDAGRAPH_MODES

    def step() -> torch.Tensor:
        if marks_steps:
            # Tell CUDA-graph trees that a new training iteration begins, so that replaying the
            # graph may reuse the previous iteration's output memory (torch.compiler docs).
            torch.compiler.cudagraph_mark_step_begin()
        x, y = workload.next_batch()
        with policy.autocast(device):
            loss = train_module(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    return Training(workload, step)


def measure(case: Case) -> dict[str, Any]:
    """Run the case's training steps and return ``runtime``, ``metrics``, ``samples``, ``flags``."""
    device = torch.device(case.device)
    threads = case.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    policy = POLICIES[case.precision]
    if reason := unsupported_reason(case.precision, device):
        return {"status": "skipped", "reason": reason}
    if device.type == "cuda" and not torch.cuda.is_available():
        return {"status": "skipped", "reason": "no CUDA device is available to this process"}

    setup_start = wall()
    training = prepare(case, device)
    workload, step = training.workload, training.step
    setup_s = wall() - setup_start
    _, first_step_s = time_call(step, device)
    frames_after_first_step = compiling.frames_compiled()
    _, warmup_s = time_call(lambda: [step() for _ in range(case.warmup_steps)], device)
    step_estimate_s = warmup_s / case.warmup_steps if case.warmup_steps else first_step_s

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    frames_before_window = compiling.frames_compiled()
    window = run_window(
        step,
        step_timer(device),
        WindowPolicy(
            case.min_steps, case.max_steps, case.min_time_s, case.max_time_s, case.ci_target
        ),
        block_steps(step_estimate_s),
        device,
    )
    flags = []
    if any(not math.isfinite(loss) for _, loss in window.losses):
        flags.append("loss_not_finite")
    if compiling.frames_compiled() > frames_before_window:
        flags.append("recompile_in_window")
    peak_alloc = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    peak_reserved = torch.cuda.max_memory_reserved(device) if device.type == "cuda" else None

    eval_start = wall()
    with policy.autocast(device):
        evaluation = workload.evaluate(workload.model)
    synchronize(device)
    eval_s = wall() - eval_start

    stats = summarize(window.step_times_s)
    tokens = workload.tokens_per_step
    return {
        "status": "ok",
        "reason": None,
        "runtime": {
            "threads": threads,
            "device_name": _device_name(device),
            **policy.describe(),
            "data": {
                "name": workload.data.name,
                "num_train": workload.data.num_train,
                "num_val": workload.data.num_val,
                "sha256": workload.data.sha256,
                "path": workload.data.path,
            },
            "compile": compiling.stats(case.compile, frames_after_first_step),
        },
        "metrics": {
            "step_time_s": stats.to_dict(),
            "samples_per_s": workload.samples_per_step / stats.median,
            "tokens_per_s": tokens / stats.median if tokens else None,
            "first_step_s": first_step_s,
            "compile_time_s": first_step_s - stats.median if case.compile != "eager" else None,
            "window_s": window.window_s,
            "stop_reason": window.stop_reason,
            "num_params": sum(p.numel() for p in workload.model.parameters()),
            "peak_alloc_bytes": peak_alloc,
            "peak_reserved_bytes": peak_reserved,
            # ru_maxrss is in KiB on Linux.
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "final_train_loss": window.losses[-1][1] if window.losses else None,
            "eval": evaluation,
        },
        "samples": {
            "step_time_s": window.step_times_s,
            "loss": [[done, loss] for done, loss in window.losses],
        },
        "flags": flags,
        "timing": {
            "setup_s": setup_s,
            "first_step_s": first_step_s,
            "warmup_s": warmup_s,
            "window_s": window.window_s,
            "eval_s": eval_s,
        },
    }


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from bench.env import cpu_model

    return cpu_model()


def classify_failure(error: BaseException) -> str:
    """``oom`` for an allocation failure on any device, else ``error``."""
    if isinstance(error, torch.OutOfMemoryError | MemoryError):
        return "oom"
    message = str(error)
    if isinstance(error, RuntimeError) and (
        "can't allocate memory" in message or "out of memory" in message
    ):
        return "oom"
    return "error"


def error_tail(error: BaseException) -> str:
    lines = "".join(traceback.format_exception(error)).strip().splitlines()
    return "\n".join(lines[-ERROR_TAIL_LINES:]).strip()


def main(case_dict: dict[str, Any], result_path: str, log_path: str, launched_at: float) -> None:
    """Entry point of the worker process (forked by the launcher's fork server)."""
    started = time.time()
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    try:
        result = measure(Case(**case_dict))
    except BaseException as error:  # noqa: BLE001 - every failure becomes a record
        traceback.print_exc()
        result = {"status": classify_failure(error), "reason": error_tail(error)}
    timing = result.setdefault("timing", {})
    timing["spawn_s"] = started - launched_at
    timing["worker_s"] = time.time() - started
    sys.stdout.flush()
    sys.stderr.flush()
    tmp = f"{result_path}.tmp"
    with open(tmp, "w") as f:
        json.dump(result, f)  # a diverged loss is written as NaN, which Python's json reads back
    os.replace(tmp, result_path)
