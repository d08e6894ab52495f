"""Fine-tuning: a pretrained backbone adapted to another task, with full, frozen or LoRA training.

A fine-tuning case (``finetune`` set) has two phases in its one process:

1. **Pretrained weights**, outside the measured run (``timing.pretrain_s``): from ``checkpoint``
   (a state-dict file; ``"torchvision"``: torchvision's ImageNet weights from the local torch hub
   cache, their 1000-class head dropped for the workload's new one), from the cache of an
   earlier case, or trained now on the task's *source*
   for ``pretrain_steps`` steps with a fixed recipe (:data:`PRETRAIN_RECIPE`), then cached under
   the bench cache directory, keyed by everything that determines them, so that the other
   strategies and repeats of a suite start from the very same weights.
2. **The case itself** on the task's *target*: the workload is built on the target data, loads
   those weights, re-initialises its head where the target has new classes, and the strategy
   decides what trains. The worker then runs its usual first step, warm-up, measured window and
   evaluation; it evaluates once before (``metrics.eval_before``) as well.

Tasks (``finetune_task``; ``catalog.WorkloadInfo.finetune_tasks``):
- ``new-classes`` (images): source = the images of classes 0-4 (both splits), target = classes
  5-9; the head is re-initialised, its rows for 0-4 meaning nothing for 5-9.
- ``rotated`` (images): source = the images as they are, target = the same images turned by 90
  degrees; the head is kept (same classes, another domain).
- ``corpus`` (``gpt``): source = the standard library's source code, target = the case's
  ``data`` (``auto``: Python's language reference in English, ``data = "docs"``).

Strategies (``finetune``): ``full`` trains every weight; ``frozen`` only the head (a linear probe
on a frozen backbone); ``lora`` rank-r adapters (bench/train/lora.py) on every linear layer and
attention projection but the head, the head training too only where it is new.
"""

import dataclasses
import fcntl
import hashlib
import importlib.util
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench import atomic
from bench.errors import CaseError, NotApplicable
from bench.machine.cache import LOCK, PRETRAINED, cache_dir
from bench.measure.timing import time_call
from bench.spec.case import Case
from bench.spec.catalog import workload_info
from bench.spec.choices import CORPUS_SOURCE
from bench.spec.hf_source import is_hf, locate
from bench.spec.hub_weights import TORCHVISION
from bench.train.checkpoint import file_sha256, hub_weights, load_state, own_head, read_checkpoint
from bench.train.lora import add_adapters, add_peft_adapters
from bench.workloads import data, registry
from bench.workloads.interface import DataInfo, Workload
from bench.workloads.registry import build

# The pretraining phase's recipe: fixed, so that every fine-tuning strategy, optimizer, batch
# size and precision of a suite starts from the same weights. AdamW at torch's default rate
# trains the catalog's small models quickly; fp32, eager, the workload's default batch size, the
# case's seed.
PRETRAIN_RECIPE = "adamw lr=1e-3 fp32 eager default-batch"
PRETRAIN_LR = 1e-3
# new-classes: the source task has classes below this one, the target the others (digits 0-4,
# then 5-9; any 10-class image data).
FIRST_TARGET_CLASS = 5


@dataclass(frozen=True)
class Task:
    """A source and a target split of the family's data type (``data.ImageSplits``, ...)."""

    source: Any
    target: Any
    new_head: bool
    """The target's classes are not the source's: the head is re-initialised before tuning."""


@dataclass
class Finetuned:
    workload: Workload
    """The target task's workload, its model holding the pretrained weights and the strategy."""
    pretrain_s: float
    """Seconds this process spent getting the pretrained weights (training or loading them)."""
    info: dict[str, Any]
    """``runtime.finetune`` of the record (docs/RESULTS.md)."""


def prepare(case: Case, device: torch.device, dtype: torch.dtype) -> Finetuned:
    """The case's target workload with pretrained weights, its strategy applied."""
    assert case.finetune is not None and case.finetune_task is not None, "not a fine-tuning case"
    if workload_info(case.workload).user or case.finetune_task == "own":
        return _prepare_own(case, device, dtype)
    task = make_task(case)
    workload = build(case, device, dtype, task.target)
    if workload.head is None:
        raise AssertionError(f"{case.workload} names no head: it offers no fine-tuning task")
    (source, state), pretrain_s = time_call(lambda: pretrained(case, task, device), device)
    new_head = task.new_head
    if source["weights"] == TORCHVISION:
        # ImageNet's 1000-class head means nothing for ten classes: the workload's own, new.
        state = own_head(state, workload.model, workload.head)
        new_head = True
    load_state(workload.model, state, source["checkpoint"], case)
    head = workload.model.get_submodule(workload.head)
    if new_head:
        torch.manual_seed(case.seed)
        for module in head.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    adapter_params = apply_strategy(workload.model, head, case, new_head)
    info = {
        "strategy": case.finetune,
        "task": case.finetune_task,
        "new_head": new_head,
        "head": workload.head,
        "adapter_params": adapter_params,
        "lora_impl": lora_impl(case),
        **source,
    }
    return Finetuned(workload, pretrain_s, info)


def _prepare_own(case: Case, device: torch.device, dtype: torch.dtype) -> Finetuned:
    """Task ``own`` (a user's workload; an hf: model's files): the model as built, with its own
    weights or ``checkpoint``'s, tuned on its own data (the case's); no pretraining phase."""
    workload = build(case, device, dtype)
    assert workload.head is not None, "checked where the user's workload is built"
    pretrain_s = 0.0
    source: dict[str, Any] = {"weights": "workload", "checkpoint": None}
    if is_hf(case.workload):  # the model's files (runtime.workload says which)
        source = {"weights": "pretrained", "checkpoint": None}
    if case.checkpoint is not None:
        state, pretrain_s = time_call(lambda: read_checkpoint(str(case.checkpoint)), device)
        source = {"weights": "checkpoint", "checkpoint": case.checkpoint}
        load_state(workload.model, state, case.checkpoint, case)
    head = workload.model.get_submodule(workload.head)
    adapter_params = apply_strategy(workload.model, head, case, new_head=False)
    info = {
        "strategy": case.finetune,
        "task": case.finetune_task,
        "new_head": False,
        "head": workload.head,
        "adapter_params": adapter_params,
        "lora_impl": lora_impl(case),
        **source,
    }
    return Finetuned(workload, pretrain_s, info)


def make_task(case: Case) -> Task:
    """The source and target data of the case's task."""
    if case.finetune_task == "corpus":
        # Validation keeps data = CORPUS_SOURCE out: tuning on the pretraining corpus is no task.
        assert case.data != CORPUS_SOURCE, "unvalidated case"
        return Task(source=data.stdlib_corpus(), target=registry.load(case), new_head=False)
    # Image families: their ``load(case)`` gives splits with ``x_train``, ``y_train``, ``x_val``,
    # ``y_val`` of (N, C, H, W) images and labels 0-9 (``data.ImageSplits``, ...).
    splits = registry.load(case)
    if case.finetune_task == "new-classes":
        source = _classes(splits, lambda y: y < FIRST_TARGET_CLASS)
        target = _classes(splits, lambda y: y >= FIRST_TARGET_CLASS)
        return Task(source, target, new_head=True)
    assert case.finetune_task == "rotated", f"unvalidated task {case.finetune_task!r}"
    x_train = torch.rot90(splits.x_train, k=1, dims=(2, 3)).contiguous()  # (N, C, W, H)
    x_val = torch.rot90(splits.x_val, k=1, dims=(2, 3)).contiguous()
    target = _replace_images(splits, x_train, x_val, splits.y_train, splits.y_val)
    return Task(splits, target, new_head=False)


def _classes(splits: Any, keep) -> Any:
    train, val = keep(splits.y_train), keep(splits.y_val)
    return _replace_images(
        splits, splits.x_train[train], splits.x_val[val], splits.y_train[train], splits.y_val[val]
    )


def _replace_images(splits: Any, x_train, x_val, y_train, y_val) -> Any:
    """``splits`` (a dataclass) with other images; its ``DataInfo``, where it has one, names them
    (sizes and hash of the task's part)."""
    changes: dict[str, Any] = {
        "x_train": x_train,
        "x_val": x_val,
        "y_train": y_train,
        "y_val": y_val,
    }
    if isinstance(getattr(splits, "info", None), DataInfo):
        changes["info"] = dataclasses.replace(
            splits.info,
            num_train=len(y_train),
            num_val=len(y_val),
            sha256=data.sha256_of(x_train, y_train, x_val, y_val),
        )
    return dataclasses.replace(splits, **changes)


def pretrained(case: Case, task: Task, device: torch.device) -> tuple[dict[str, Any], dict]:
    """``runtime.finetune``'s account of the weights, and the weights (a state dict on the CPU)."""
    if case.checkpoint == TORCHVISION:
        path, state, weights = hub_weights(case)
        source = {
            "weights": TORCHVISION,
            "checkpoint": str(path),
            "checkpoint_sha256": file_sha256(path),
            "torchvision_weights": weights.enum,
            "pretrain_steps": None,
        }
        return {**source, "pretrain_train_s": None, "source_data": None, "source_eval": None}, (
            state
        )
    if case.checkpoint is not None:
        path = str(Path(case.checkpoint).expanduser())
        source = {"weights": "checkpoint", "checkpoint": path, "pretrain_steps": None}
        return {**source, "pretrain_train_s": None, "source_data": None, "source_eval": None}, (
            read_checkpoint(path)
        )
    assert case.pretrain_steps is not None, "unresolved case"
    source_data = describe(task.source)
    key = {
        "workload": case.workload,
        "model_size": case.model_size,
        "seq_len": case.seq_len,
        "tie_embeddings": case.tie_embeddings,
        "image_size": case.image_size,
        "augment": case.augment,
        "seed": case.seed,
        "pretrain_steps": case.pretrain_steps,
        "task": case.finetune_task,
        "source_sha256": source_data["sha256"],
        "device": device.type,
        "torch": torch.__version__,
        "recipe": PRETRAIN_RECIPE,
    }
    if is_hf(case.workload):
        # Its files (a new save changes the config's hash) and whether their weights load.
        key["workload_args"] = case.workload_args
        key["config_sha256"] = locate(case.workload, case.workload_root).config_sha256()
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    name = case.workload.replace(":", "-").replace("/", "-")  # hf:./model: a file name
    path = cache_dir() / PRETRAINED / f"{name}-{digest}.pt"
    notes_path = path.with_suffix(".json")
    common = {
        "checkpoint": str(path),
        "pretrain_steps": case.pretrain_steps,
        "source_data": source_data,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # One process trains at a time: another that misses the same key waits, then finds the
    # weights the first one cached instead of training them again.
    with _locked(path.parent / LOCK):
        if path.is_file() and notes_path.is_file():
            try:
                state = read_checkpoint(str(path))
                notes = json.loads(notes_path.read_text())
                return {"weights": "cache", **common, **notes["result"]}, state
            except (CaseError, ValueError, KeyError):
                pass  # a damaged cache entry is a miss: train again and overwrite it
        state, result = pretrain(case, task.source, device)
        _write_cache(path, notes_path, state, {"key": key, "result": result})
    return {"weights": "trained", **common, **result}, state


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (created), held until the block ends; it goes with the
    process however it ends."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def describe(splits: Any) -> dict[str, Any]:
    """Name, sizes, hash and path of a task's data: its ``DataInfo`` where it has one, else
    (images as stored, before the image pipeline) worked out from its tensors."""
    if isinstance(getattr(splits, "info", None), DataInfo):
        return dataclasses.asdict(splits.info)
    tensors = (splits.x_train, splits.y_train, splits.x_val, splits.y_val)
    return {
        "name": splits.name,
        "num_train": len(splits.y_train),
        "num_val": len(splits.y_val),
        "sha256": data.sha256_of(*tensors),
        "path": splits.path,
    }


def pretrain(case: Case, source: Any, device: torch.device) -> tuple[dict, dict[str, Any]]:
    """Train the workload's model on the source task: the fixed recipe, ``pretrain_steps`` steps.
    Returns its state dict (on the CPU) and its training time and held-out evaluation."""
    assert case.pretrain_steps is not None, "unresolved case"
    recipe = dataclasses.replace(case, batch_size=workload_info(case.workload).default_batch_size)
    torch.manual_seed(case.seed)
    workload = build(recipe, device, torch.float32, source)
    model = workload.model
    optimizer = torch.optim.AdamW(model.parameters(), lr=PRETRAIN_LR)

    def train() -> None:
        for _ in range(case.pretrain_steps):
            x, y = workload.next_batch()
            loss = workload.loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    _, train_s = time_call(train, device)
    evaluation = workload.evaluate(model)
    workload.close()  # DataLoader workers of the image pipeline
    state = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    return state, {"pretrain_train_s": train_s, "source_eval": evaluation}


def _write_cache(path: Path, notes_path: Path, state: dict, notes: dict[str, Any]) -> None:
    """Weights, then the notes that make them a cache entry; each replaced atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_with(path, lambda tmp: torch.save(state, tmp))
    atomic.write_json(notes_path, notes, indent=1, sort_keys=True)


def lora_impl(case: Case) -> str | None:
    """Whose LoRA a case uses, named on its record (``runtime.finetune.lora_impl``): PEFT's,
    the field's library, on an ``hf:`` model where peft is installed; bench's own
    (bench/train/lora.py) everywhere else. None but for ``finetune = "lora"``."""
    if case.finetune != "lora":
        return None
    if is_hf(case.workload) and importlib.util.find_spec("peft") is not None:
        return "peft"
    return "builtin"


def apply_strategy(model: nn.Module, head: nn.Module, case: Case, new_head: bool) -> int:
    """Set what trains; returns the parameters the adapters add (0 but for ``lora``)."""
    if case.finetune == "full":
        return 0
    if case.finetune == "frozen":
        for param in model.parameters():
            param.requires_grad_(False)
        for param in head.parameters():
            param.requires_grad_(True)
        return 0
    assert case.finetune == "lora" and case.lora_rank and case.lora_alpha, "unresolved case"
    if lora_impl(case) == "peft":
        return add_peft_adapters(model, case.lora_rank, case.lora_alpha)
    added = add_adapters(model, case.lora_rank, case.lora_alpha, skip=head)
    if added == 0:
        raise NotApplicable(
            f"{case.workload} {case.model_size} has no linear layer or attention projection "
            "outside its head: LoRA would train the head only, which is finetune = 'frozen'"
        )
    if new_head:  # a fresh head has to learn in full: adapters on random weights mean nothing
        for param in head.parameters():
            param.requires_grad_(True)
    return added
