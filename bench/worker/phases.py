"""The phases of one case, timed apart (docs/METHOD.md): set-up, FLOPs counted on the eager
model, the first step alone (it carries compilation), warm-up, the measured window with its
telemetry and memory peaks, and the held-out evaluations. The result is built from them in
bench/worker/result.py."""

import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from bench.errors import NotApplicable
from bench.measure.flops import count_step_flops
from bench.measure.memory import MemorySnapshot, PeakMemory, PhaseMemory
from bench.measure.profile import profile_steps
from bench.measure.target import QualityTracker
from bench.measure.timing import step_timer, time_call, wall
from bench.measure.window import PeriodicEval, WindowPolicy, WindowResult, block_steps, run_window
from bench.spec.case import Case
from bench.telemetry.window import WindowTelemetry
from bench.train import compiling
from bench.train.precision import POLICIES, unsupported_reason
from bench.worker.prepare import Training, TrainModule, case_loss, prepare
from bench.worker.result import build_result

if TYPE_CHECKING:
    from bench.worker.distributed import Ranks


@dataclass
class Phases:
    """What the phases measured, for the result."""

    threads: int
    setup_s: float
    pretrain_s: float | None
    eval_before: dict[str, float] | None
    eval_before_s: float
    flops_per_evaluation: float | None
    flop_count_s: float
    first_step_s: float
    frames_after_first_step: int
    warmup_s: float
    window: WindowResult
    telemetry: WindowTelemetry
    tracker: QualityTracker
    peaks: dict[str, Any]
    evaluation: dict[str, float]
    eval_s: float
    memory: dict[str, Any]
    """Memory by phase and what holds it (bench/measure/memory.PhaseMemory)."""
    profile: dict[str, Any] | None
    """The profiled steps' summary (bench/measure/profile.py); None without profile_steps."""
    flags: list[str] = field(default_factory=list)


def measure(
    case: Case, ranks: "Ranks | None" = None, artifacts: Path | None = None
) -> dict[str, Any]:
    """Run the case's training steps and return ``runtime``, ``metrics``, ``samples``, ``flags``.

    ``ranks``: this process's place in a distributed case (bench/worker/distributed.py): its
    device, the model wrapper, and the agreement that keeps every rank's window the same length.
    ``artifacts``: the path prefix of this job's files in the run's logs (``logs/<job>``), where
    a profile's trace and a memory snapshot go."""
    device = ranks.device if ranks else torch.device(case.device)
    # The node's cores shared among its ranks (an oversubscribed CPU slows every rank down).
    threads = case.threads or max(1, len(os.sched_getaffinity(0)) // case.nproc)
    torch.set_num_threads(threads)
    if device.type == "cuda" and not torch.cuda.is_available():
        return {"status": "skipped", "reason": "no CUDA device is available to this process"}
    if reason := unsupported_reason(case.precision, device):
        return {"status": "skipped", "reason": reason}
    cold_cache = compiling.use_cold_cache() if case.compile_cache == "cold" else None
    try:
        setup_start = wall()
        phase_memory = PhaseMemory(device)
        try:
            training = prepare(case, device, ranks.wrap if ranks else None)
        except NotApplicable as error:
            return {"status": "skipped", "reason": str(error)}
        pretrain_s = training.finetuned.pretrain_s if training.finetuned else None
        setup_s = wall() - setup_start - (pretrain_s or 0.0)
        phase_memory.after_build()
        phases = run_phases(
            case, device, training, ranks, threads, setup_s, pretrain_s, phase_memory, artifacts
        )
        return build_result(case, device, training, phases)
    finally:
        # On every way out this process sees (a skip, an error, an out-of-memory); the launcher
        # removes it after a process killed (a timeout, a signal) too.
        if cold_cache:
            shutil.rmtree(cold_cache, ignore_errors=True)


def run_phases(
    case: Case,
    device: torch.device,
    training: Training,
    ranks: "Ranks | None",
    threads: int,
    setup_s: float,
    pretrain_s: float | None,
    phase_memory: PhaseMemory,
    artifacts: Path | None,
) -> Phases:
    """Everything after set-up, in order: the only place where the case's steps run."""
    workload, step = training.workload, training.step

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
    snapshot = MemorySnapshot(artifacts) if case.memory_snapshot else None
    phase_memory.before_first_step()
    _, first_step_s = time_call(step, device)
    phase_memory.after_first_step()
    frames_after_first_step = compiling.frames_compiled()
    _, warmup_s = time_call(lambda: [step() for _ in range(case.warmup_steps)], device)
    snapshot_info = snapshot.dump() if snapshot else None
    step_estimate_s = warmup_s / case.warmup_steps if case.warmup_steps else first_step_s

    tracker = QualityTracker(
        case.target_metric,
        case.target_value,
        1 + case.warmup_steps,
        first_step_s + warmup_s,
        direction=workload.directions.get(case.target_metric or ""),
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
    # After the window and the evaluation: what follows changes nothing that was measured.
    phase_memory.optimizer_step_peak(step, training.optimizers.optimizers)
    phase_memory.activations(step, workload.model)
    profiled = None
    if case.profile_steps:
        trace = artifacts.with_name(artifacts.name + ".pt.trace.json") if artifacts else None
        profiled = profile_steps(step, case.profile_steps, device, trace)
    memory_figures = phase_memory.result(
        workload.model, training.optimizers.state_bytes(), peaks.get("peak_rss_bytes")
    )
    memory_figures["snapshot"] = snapshot_info
    workload.close()
    return Phases(
        threads=threads,
        setup_s=setup_s,
        pretrain_s=pretrain_s,
        eval_before=eval_before,
        eval_before_s=eval_before_s,
        flops_per_evaluation=flops_per_evaluation,
        flop_count_s=flop_count_s,
        first_step_s=first_step_s,
        frames_after_first_step=frames_after_first_step,
        warmup_s=warmup_s,
        window=window,
        telemetry=telemetry,
        tracker=tracker,
        peaks=peaks,
        evaluation=evaluation,
        eval_s=eval_before_s + tracker.eval_s + final_eval_s,
        memory=memory_figures,
        profile=profiled,
        flags=flags,
    )
