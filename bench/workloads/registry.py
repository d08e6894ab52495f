"""From a case's ``workload`` to the family module that builds it (bench/workloads/<family>.py).

Each family module has ``build(case, device, dtype[, splits])`` returning a
:class:`~bench.workloads.interface.Workload`; the families that fine-tune also have
``load(case)``, their data splits (bench/train/finetune.py cuts a task's parts from them). The
families import the interface, never this module, so that dispatch and interface form no cycle.
"""

import dataclasses
import importlib
from types import ModuleType
from typing import Any

import torch

from bench.spec.case import Case
from bench.spec.catalog import workload_info, zoo_of
from bench.spec.hf_source import is_hf
from bench.spec.user_workload import is_user_spec
from bench.workloads import user
from bench.workloads.interface import Workload

# Workload name -> module under bench/workloads/ (the catalog, bench/spec/catalog.py, has each
# family's sizes and facts).
FAMILIES = {
    "mlp": "mlp",
    "gpt": "gpt",
    "cnn": "cnn",
    "vit": "vit",
    "recsys": "recsys",
    "diffusion": "diffusion",
}


def family(name: str) -> ModuleType:
    """The module of workload ``name`` (validated by the Case: one of FAMILIES, or a zoo's
    ``torchvision:NAME`` / ``timm:NAME``, or ``hf:NAME_OR_PATH``)."""
    if zoo_of(name) is not None:
        return importlib.import_module("bench.workloads.zoo")
    if is_hf(name):
        return importlib.import_module("bench.workloads.hf")
    return importlib.import_module(f"bench.workloads.{FAMILIES[name]}")


def build(case: Case, device: torch.device, dtype: torch.dtype, splits: Any = None) -> Workload:
    """Build the case's workload on ``device`` with parameters and float inputs in ``dtype``.

    ``splits``: the data to use instead of the family's own ``load(case)`` (a fine-tuning task's
    part of it, bench/train/finetune.py); the family's split type (``data.ImageSplits``, ...).
    Only the families that fine-tune (catalog: ``finetune_tasks``) take it.
    """
    if is_user_spec(case.workload):
        return user.build(case, device, dtype)
    module = family(case.workload)
    if splits is None:
        workload = module.build(case, device, dtype)
    else:
        workload = module.build(case, device, dtype, splits)
    # Whether the suite's loss applies: the catalog's to say for a built-in family.
    return dataclasses.replace(workload, classifier=workload_info(case.workload).classifier)


def load(case: Case) -> Any:
    """The data splits of a family that fine-tunes (its ``load(case)``)."""
    return family(case.workload).load(case)
