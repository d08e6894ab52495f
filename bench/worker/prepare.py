"""Building a case's training step: data, model, loss, optimizer, schedule, precision policy and
compile wrapper, ready for the phases to time (bench/worker/phases.py)."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bench.spec.case import Case
from bench.spec.choices import CUDAGRAPH_MODES
from bench.spec.user_workload import is_user_spec
from bench.train import compiling, finetune
from bench.train.losses import build_loss
from bench.train.optimizers import Optimizers, build_optimizers
from bench.train.precision import POLICIES
from bench.train.schedules import build_scheduler
from bench.workloads.interface import Workload
from bench.workloads.registry import build


class TrainModule(nn.Module):
    """Model and loss in one module, so that ``torch.compile`` captures the loss with the model."""

    def __init__(self, model: nn.Module, loss_fn, fsdp_units: list[nn.Module] | None = None):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn
        self.fsdp_units = fsdp_units
        """The modules FSDP2 shards as units; None: the family's layout
        (bench/worker/distributed.py)."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(self.model(x), y)


def case_loss(case: Case, workload: Workload):
    """The loss the case trains on: the suite's classification loss where it applies (a user's
    classifier whose suite names none: cross-entropy), else the workload's own objective
    (``loss`` is None there: clicks' BCE, diffusion's noise MSE, a user's own loss)."""
    if case.loss is None and not workload.classifier:
        assert workload.loss_fn is not None, "checked where the workload is built"
        return workload.loss_fn
    return build_loss(case.loss or "cross-entropy", case.gamma, case.alpha)


def fsdp_units(case: Case, workload: Workload) -> list[nn.Module] | None:
    """FSDP2's units: every module of the workload's ``fsdp_unit`` class; a user's workload that
    names none is one unit, the whole model; None: the built-in family's own layout."""
    if workload.fsdp_unit is not None:
        return [m for m in workload.model.modules() if isinstance(m, workload.fsdp_unit)]
    return [] if is_user_spec(case.workload) else None


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
    module: nn.Module = TrainModule(
        workload.model, case_loss(case, workload), fsdp_units(case, workload)
    )
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
