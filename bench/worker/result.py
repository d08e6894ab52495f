"""A measured case's result: runtime facts, metrics with their units, the raw samples, flags and
the time of each phase (docs/RESULTS.md documents every field)."""

from typing import TYPE_CHECKING, Any

import torch

from bench.measure.mfu import flops_metrics
from bench.measure.timing import to_host
from bench.spec.case import Case
from bench.spec.user_workload import is_user_spec
from bench.statistics import median, summarize
from bench.train import compiling
from bench.train.precision import POLICIES
from bench.worker.prepare import Training
from bench.workloads import user

if TYPE_CHECKING:
    from bench.worker.phases import Phases


def build_result(
    case: Case, device: torch.device, training: Training, phases: "Phases"
) -> dict[str, Any]:
    workload, window, tracker = training.workload, phases.window, phases.tracker
    first_step_s = phases.first_step_s
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
    observed = phases.telemetry.result(stats.n, workload.samples_per_step)
    flags = phases.flags + observed.flags
    flops = flops_metrics(
        case,
        device,
        phases.flops_per_evaluation,
        stats.median,
        tokens,
        evaluations_per_step=optimizer["function_evals_per_step"] or 1.0,
    )
    if flops["above_peak"]:
        flags.append("mfu_above_peak")
    amp = None
    if training.scaler is not None:
        amp = {
            "final_scale": training.scaler.get_scale(),
            "num_skipped_steps": int(to_host(training.counters["skipped_steps"])),
            "num_steps": steps_total,
        }
    return {
        "status": "ok",
        "reason": None,
        "runtime": {
            "threads": phases.threads,
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
            "compile": compiling.stats(case, phases.frames_after_first_step),
            "finetune": training.finetuned.info if training.finetuned else None,
            # A user's workload: its spec, args, file and the file's SHA-256; and the loss it
            # trained on (its own, or the suite's on a classifier's scores).
            # An hf: model: its files, weights and tokenizer (bench/workloads/hf.py).
            "workload": user.source(case) if is_user_spec(case.workload) else workload.source,
            "loss": case.loss or ("cross-entropy" if workload.classifier else "own"),
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
            **phases.peaks,
            "final_train_loss": window.losses[-1][1] if window.losses else None,
            # Training steps before the evaluation: equal across cases only when the window's
            # length is fixed (min_steps = max_steps), as in the optimizers suite.
            "steps_trained": steps_total,
            "eval": phases.evaluation,
            "eval_before": phases.eval_before,
            "target": tracker.target_result(window.stop_reason),
            "optimizer": optimizer,
            "amp": amp,
            "flops": flops,
            "memory": phases.memory,
            "profile": phases.profile,
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
            "setup_s": phases.setup_s,
            "preprocess_s": workload.data.preprocess_s,
            "flop_count_s": phases.flop_count_s,
            "first_step_s": first_step_s,
            "warmup_s": phases.warmup_s,
            "window_s": window.window_s,
            "eval_s": phases.eval_s,
            "pretrain_s": phases.pretrain_s,
        },
    }


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
