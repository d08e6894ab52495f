"""The worker: runs one (case, repeat) in its own process and writes its result as JSON.

Order of events, as docs/METHOD.md explains: build data, model and optimizer; time the first step
alone (it carries compilation); warm up; run the measured window; evaluate on held-out data. The
launcher turns the result into a record; this module imports torch, the launcher does not.
"""

import json
import math
import os
import shutil
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from bench.errors import CaseError, NotApplicable
from bench.measure.flops import count_step_flops
from bench.measure.memory import PeakMemory
from bench.measure.mfu import flops_metrics
from bench.measure.target import QualityTracker
from bench.measure.timing import epoch, step_timer, time_call, to_host, wall
from bench.measure.window import PeriodicEval, WindowPolicy, block_steps, run_window
from bench.spec.case import Case
from bench.spec.choices import CUDAGRAPH_MODES
from bench.statistics import median, summarize
from bench.telemetry.window import WindowTelemetry
from bench.train import compiling, finetune
from bench.train.losses import build_loss
from bench.train.optimizers import Optimizers, build_optimizers
from bench.train.precision import POLICIES, unsupported_reason
from bench.train.schedules import build_scheduler
from bench.workloads.workload import Workload, build

if TYPE_CHECKING:
    from bench.worker.distributed import Ranks

ERROR_TAIL_LINES = 20


class TrainModule(nn.Module):
    """Model and loss in one module, so that ``torch.compile`` captures the loss with the model."""

    def __init__(self, model: nn.Module, loss_fn) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(self.model(x), y)


def case_loss(case: Case, workload: Workload):
    """The loss the case trains on: the suite's classification loss where it applies, else the
    workload's own objective (``loss`` is None there: clicks' BCE, diffusion's noise MSE)."""
    if case.loss is None:
        return workload.loss_fn
    return build_loss(case.loss, case.gamma, case.alpha)


@dataclass
class Training:
    """A case ready to train: ``step()`` runs one real training step and returns its loss."""

    workload: Workload
    step: Callable[[], torch.Tensor]
    train: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    """The step on a given batch: ``step()`` is ``train(*workload.next_batch())``; the measured
    window calls the two apart, to time the wait for the batch."""
    optimizers: Optimizers
    counters: dict[str, Any]
    """Counted while training: ``function_evals`` (a Python int: closure calls of lbfgs) and
    ``skipped_steps`` (a device tensor: steps GradScaler skipped for inf/NaN gradients)."""
    scaler: torch.amp.GradScaler | None
    finetuned: finetune.Finetuned | None
    """A fine-tuning case's pretraining phase and strategy (bench/train/finetune.py); else None."""


def prepare(
    case: Case, device: torch.device, wrap: Callable[[nn.Module], nn.Module] | None = None
) -> Training:
    """Build the case's data, model, loss, optimizer, schedule, precision and compile wrapper.

    ``wrap`` (DDP or FSDP, bench/worker/distributed.py) wraps the model and loss before compiling
    and before the optimizer is built, so that the optimizer holds the parameters it trains."""
    policy = POLICIES[case.precision]
    policy.apply()
    torch.manual_seed(case.seed)
    finetuned = None
    if case.finetune is not None:
        finetuned = finetune.prepare(case, device, policy.param_dtype)
        workload = finetuned.workload
    else:
        workload = build(case, device, policy.param_dtype)
    module: nn.Module = TrainModule(workload.model, case_loss(case, workload))
    if wrap is not None:
        module = wrap(module)
    step_scope = case.compile_scope == "step"
    train_module = module if step_scope else compiling.wrap(module, case)
    optimizers = build_optimizers(case, workload.model, tensor_lr=step_scope)
    schedulers = build_scheduler(
        optimizers.optimizers, case.lr_schedule, case.lr_schedule_steps, case.lr_warmup_steps
    )
    scaler = torch.amp.GradScaler(device.type) if policy.grad_scaler else None
    counters: dict[str, Any] = {
        "function_evals": 0,
        "skipped_steps": torch.zeros((), device=device, dtype=torch.int64),
    }

    def forward(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with policy.autocast(device):
            return train_module(x, y)

    def update(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Forward, backward and optimizer step on one batch."""
        optimizers.zero_grad()
        loss = forward(x, y)
        if scaler is None:
            loss.backward()
            optimizers.step()
            return loss
        scaler.scale(loss).backward()
        # Read on the device: a host read of the scale each step would be a sync per step.
        scale_before = scaler._scale.clone()
        for optimizer in optimizers.optimizers:
            scaler.step(optimizer)
        scaler.update()
        counters["skipped_steps"] += scaler._scale < scale_before  # backs off only on inf/NaN
        return loss

    def lbfgs_update(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """LBFGS re-evaluates loss and gradient through a closure, several times per step."""

        def closure() -> torch.Tensor:
            counters["function_evals"] += 1
            optimizers.zero_grad()
            loss = forward(x, y)
            loss.backward()
            return loss

        (optimizer,) = optimizers.optimizers
        return optimizer.step(closure)  # the loss of the first evaluation, before the update

    if case.optimizer == "lbfgs":
        update_fn = lbfgs_update
    else:
        update_fn = compiling.wrap(update, case) if step_scope else update
    marks_steps = device.type == "cuda" and case.compile in CUDAGRAPH_MODES

    def train(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if marks_steps:
            # Tell CUDA-graph trees that a new training iteration begins, so that replaying the
            # graph may reuse the previous iteration's output memory (torch.compiler docs).
            torch.compiler.cudagraph_mark_step_begin()
        loss = update_fn(x, y)
        for scheduler in schedulers:
            scheduler.step()
        return loss

    def step() -> torch.Tensor:
        return train(*workload.next_batch())

    return Training(workload, step, train, optimizers, counters, scaler, finetuned)


def measure(case: Case, ranks: "Ranks | None" = None) -> dict[str, Any]:
    """Run the case's training steps and return ``runtime``, ``metrics``, ``samples``, ``flags``.

    ``ranks``: this process's place in a distributed case (bench/worker/distributed.py): its
    device, the model wrapper, and the agreement that keeps every rank's window the same length."""
    device = ranks.device if ranks else torch.device(case.device)
    # The node's cores shared among its ranks (an oversubscribed CPU slows every rank down).
    threads = case.threads or max(1, len(os.sched_getaffinity(0)) // case.nproc)
    torch.set_num_threads(threads)
    if device.type == "cuda" and not torch.cuda.is_available():
        return {"status": "skipped", "reason": "no CUDA device is available to this process"}
    if reason := unsupported_reason(case.precision, device):
        return {"status": "skipped", "reason": reason}
    cold_cache = compiling.use_cold_cache() if case.compile_cache == "cold" else None

    setup_start = wall()
    try:
        training = prepare(case, device, ranks.wrap if ranks else None)
    except NotApplicable as error:
        return {"status": "skipped", "reason": str(error)}
    workload, step = training.workload, training.step
    pretrain_s = training.finetuned.pretrain_s if training.finetuned else None
    setup_s = wall() - setup_start - (pretrain_s or 0.0)

    def evaluate() -> dict[str, float]:
        """Held-out metrics of the eager model (it shares the compiled model's weights)."""
        with POLICIES[case.precision].autocast(device):
            return workload.evaluate(workload.model)

    eval_before, eval_before_s = time_call(evaluate, device) if training.finetuned else (None, 0.0)
    # FLOPs counted once, on the eager model with the case's loss, before the first (compiling)
    # step: never under compile (bench/measure/flops.py).
    eager = TrainModule(workload.model, case_loss(case, workload))
    autocast, batch = POLICIES[case.precision].autocast(device), workload.next_batch()
    flops_per_evaluation, flop_count_s = time_call(
        lambda: count_step_flops(eager, batch, autocast), device
    )
    _, first_step_s = time_call(step, device)
    frames_after_first_step = compiling.frames_compiled()
    _, warmup_s = time_call(lambda: [step() for _ in range(case.warmup_steps)], device)
    step_estimate_s = warmup_s / case.warmup_steps if case.warmup_steps else first_step_s

    tracker = QualityTracker(
        case.target_metric, case.target_value, 1 + case.warmup_steps, first_step_s + warmup_s
    )

    def evaluate_periodically(window_steps: int, window_train_s: float) -> bool:
        evaluation, seconds = time_call(evaluate, device)
        return tracker.record(window_steps, window_train_s, evaluation, seconds)

    periodic = PeriodicEval(case.eval_every, evaluate_periodically) if case.eval_every else None
    telemetry = WindowTelemetry(device, case.telemetry_interval_s)
    memory = PeakMemory(device)
    memory.reset()
    frames_before_window = compiling.frames_compiled()
    steps_per_block = block_steps(step_estimate_s)
    if ranks:
        steps_per_block = ranks.agree(steps_per_block)  # rank 0's, so that blocks line up
    telemetry.start()
    window = run_window(
        training.train,
        step_timer(device),
        WindowPolicy(
            case.min_steps,
            case.max_steps,
            case.min_time_s,
            case.max_time_s,
            case.ci_target,
            until_target=case.target_metric is not None,
        ),
        steps_per_block,
        device,
        periodic,
        fetch=workload.next_batch,
        agree=ranks.agree if ranks else None,
    )
    telemetry.stop()
    flags = []
    if any(not math.isfinite(loss) for _, loss in window.losses):
        flags.append("loss_not_finite")
    if compiling.frames_compiled() > frames_before_window:
        flags.append("recompile_in_window")
    peaks = memory.read()

    evaluation, final_eval_s = time_call(evaluate, device)
    # The window's last steps count toward the curve and the target too
    # (bench/measure/target.py); the evaluation's time is then in the tracker's.
    window_steps, window_train_s = len(window.step_times_s), sum(window.step_times_s)
    if periodic and tracker.record_end(window_steps, window_train_s, evaluation, final_eval_s):
        final_eval_s = 0.0
    eval_s = eval_before_s + tracker.eval_s + final_eval_s
    workload.close()

    stats = summarize(window.step_times_s)
    tokens = workload.tokens_per_step
    steps_total = 1 + case.warmup_steps + stats.n
    optimizer = {
        "state_bytes": training.optimizers.state_bytes(),
        "final_lr": training.optimizers.lr,
        "function_evals_per_step": (
            training.counters["function_evals"] / steps_total if case.optimizer == "lbfgs" else None
        ),
    }
    observed = telemetry.result(stats.n, workload.samples_per_step)
    flags += observed.flags
    flops = flops_metrics(
        case,
        device,
        flops_per_evaluation,
        stats.median,
        tokens,
        evaluations_per_step=optimizer["function_evals_per_step"] or 1.0,
    )
    amp = None
    if training.scaler is not None:
        amp = {
            "final_scale": training.scaler.get_scale(),
            "num_skipped_steps": int(to_host(training.counters["skipped_steps"])),
            "num_steps": steps_total,
        }
    result = {
        "status": "ok",
        "reason": None,
        "runtime": {
            "threads": threads,
            "device_name": _device_name(device),
            **POLICIES[case.precision].describe(),
            "data": {
                "name": workload.data.name,
                "num_train": workload.data.num_train,
                "num_val": workload.data.num_val,
                "sha256": workload.data.sha256,
                "path": workload.data.path,
                "pipeline": workload.data.pipeline,
            },
            "compile": compiling.stats(case, frames_after_first_step),
            "finetune": training.finetuned.info if training.finetuned else None,
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
            "trainable_params": sum(
                p.numel() for p in workload.model.parameters() if p.requires_grad
            ),
            **peaks,
            "final_train_loss": window.losses[-1][1] if window.losses else None,
            # Training steps before the evaluation: equal across cases only when the window's
            # length is fixed (min_steps = max_steps), as in the optimizers suite.
            "steps_trained": steps_total,
            "eval": evaluation,
            "eval_before": eval_before,
            "target": tracker.target_result(window.stop_reason),
            "optimizer": optimizer,
            "amp": amp,
            "flops": flops,
            **data_wait_metrics(window.data_wait_s, window.step_times_s),
            **observed.metrics,
        },
        "samples": {
            "step_time_s": window.step_times_s,
            "data_wait_s": window.data_wait_s,
            "loss": [[done, loss] for done, loss in window.losses],
            # [steps trained, training seconds, {metric: value}] per periodic evaluation.
            "eval": tracker.curve,
            "telemetry": observed.samples,
        },
        "flags": flags,
        "timing": {
            "setup_s": setup_s,
            "preprocess_s": workload.data.preprocess_s,
            "flop_count_s": flop_count_s,
            "first_step_s": first_step_s,
            "warmup_s": warmup_s,
            "window_s": window.window_s,
            "eval_s": eval_s,
            "pretrain_s": pretrain_s,
        },
    }
    if cold_cache:
        shutil.rmtree(cold_cache, ignore_errors=True)
    return result


def data_wait_metrics(waits_s: list[float], step_times_s: list[float]) -> dict[str, float]:
    """``data_wait_fraction``: the window's total wait for batches over its total step time (a
    share of the time, which a median would hide when workers keep up on most steps and not on
    some); ``data_wait_s``: the median wait per step."""
    return {
        "data_wait_fraction": sum(waits_s) / sum(step_times_s),
        "data_wait_s": median(waits_s),
    }


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from bench.machine.env import cpu_model

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
    started = epoch()
    # Truncated: a resumed run's log holds this attempt only, not a killed one's lines.
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    try:
        result = measure(Case(**case_dict))
    except CaseError as error:  # a reason the user can act on, in one line: no traceback
        print(f"error: {error}")
        result = {"status": "error", "reason": str(error)}
    except BaseException as error:  # noqa: BLE001 - every failure becomes a record
        traceback.print_exc()
        result = {"status": classify_failure(error), "reason": error_tail(error)}
    timing = result.setdefault("timing", {})
    timing["spawn_s"] = started - launched_at
    timing["worker_s"] = epoch() - started
    sys.stdout.flush()
    sys.stderr.flush()
    tmp = f"{result_path}.tmp"
    with open(tmp, "w") as f:
        json.dump(finite_or_null(result), f, allow_nan=False)
    os.replace(tmp, result_path)


def finite_or_null(value: Any) -> Any:
    """NaN and infinities (a diverged loss) as null: JSON has no such numbers, and strict readers
    (jq, browsers) reject the bare ``NaN`` Python would write. The record's flags say why."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite_or_null(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_null(item) for item in value]
    return value
