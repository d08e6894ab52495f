"""A user's workload: import ``FILE.py:FUNCTION`` (or ``package.module:FUNCTION``), call it with a
:class:`~bench.workloads.interface.WorkloadContext` and the case's ``workload_args``, and check
what it returns (docs/WORKLOADS.md).

The spec is parsed and its module checked before any case runs (bench/spec/user_workload.py);
here, in the case's process, the function runs. A function that raises is an ``error`` record
with the tail of its traceback (bench/worker/entry.py); one that returns something else than a
``Workload``, or a workload the case cannot use, is an error record that says what to fix; a
suite ``loss`` on a workload that is no classifier is a skipped record.
"""

import dataclasses
import inspect
from typing import Any

import torch

from bench.errors import CaseError, NotApplicable
from bench.spec.case import Case
from bench.spec.choices import TARGET_DIRECTIONS
from bench.spec.user_probe import import_target
from bench.spec.user_workload import file_sha256, parse
from bench.workloads.interface import DataInfo, Workload, WorkloadContext

DIRECTIONS = ("max", "min")


def source(case: Case) -> dict[str, Any]:
    """``runtime.workload`` of the record: the spec, the file imported and its SHA-256 (a change
    of code changes the record, not the case id)."""
    spec = parse(case.workload)
    if spec.is_file:
        path = spec.path(case.workload_root)
    else:
        module = import_target(spec.target, is_file=False)
        path = inspect.getsourcefile(module)
    return {
        "spec": case.workload,
        "args": case.workload_args or {},
        "path": str(path) if path else None,
        "sha256": file_sha256(path) if path else None,
    }


def build(case: Case, device: torch.device, dtype: torch.dtype) -> Workload:
    spec = parse(case.workload)
    target = str(spec.path(case.workload_root)) if spec.is_file else spec.target
    module = import_target(target, spec.is_file)
    function = getattr(module, spec.function)
    args = dict(case.workload_args or {})
    assert case.batch_size != "max", "the max-batch search resolves the batch first"
    context = WorkloadContext(
        device=device,
        dtype=dtype,
        batch_size=int(case.batch_size or 0),
        model_size=case.model_size,
        seed=case.seed,
        data_root=case.data_path,
        args=args,
    )
    workload = function(context, **args)
    if not isinstance(workload, Workload):
        raise CaseError(
            f"{case.workload} returned {type(workload).__module__}.{type(workload).__qualname__}, "
            "not a bench.api.Workload"
        )
    return _complete(case, workload)


def _complete(case: Case, workload: Workload) -> Workload:
    """The workload with the defaults the worker relies on, or why the case cannot use it."""
    name = case.workload
    if not isinstance(workload.model, torch.nn.Module):
        raise CaseError(
            f"{name}: Workload.model is a {type(workload.model).__name__}, not a module"
        )
    if not isinstance(workload.samples_per_step, int) or workload.samples_per_step <= 0:
        raise CaseError(f"{name}: Workload.samples_per_step must be a positive integer")
    for metric, direction in workload.directions.items():
        if direction not in DIRECTIONS:
            raise CaseError(f"{name}: Workload.directions[{metric!r}] = {direction!r}: max or min")
    changes: dict[str, Any] = {}
    # A classifier's scores go to the suite's loss, cross-entropy where it names none
    # (bench/worker/prepare.case_loss).
    if not workload.classifier:
        if case.loss is not None:
            raise NotApplicable(
                f"loss = {case.loss!r}: {name} is no classifier (Workload.classifier = False); "
                "it trains on its own loss_fn"
            )
        if workload.loss_fn is None:
            raise CaseError(f"{name}: Workload.classifier is False, so it needs its loss_fn")
    if workload.evaluate is None:
        if case.target_metric is not None:
            raise CaseError(
                f"target_metric = {case.target_metric!r}: {name} has no held-out evaluation "
                "(Workload.evaluate)"
            )
        changes["evaluate"] = lambda model: {}
    metric = case.target_metric
    if metric is not None and metric not in {**TARGET_DIRECTIONS, **workload.directions}:
        raise CaseError(
            f"target_metric = {metric!r}: say whether higher or lower is better in "
            f"Workload.directions (e.g. {{{metric!r}: 'max'}})"
        )
    if case.finetune is not None and workload.head is None:
        raise NotApplicable(
            f"finetune = {case.finetune!r}: {name} names no output layer (Workload.head)"
        )
    if workload.data is None:
        changes["data"] = DataInfo(name="user", num_train=0, num_val=0, sha256="")
    return dataclasses.replace(workload, **changes) if changes else workload
