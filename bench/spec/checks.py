"""Validation of a case's settings: every key's type and range, and the combinations that are
errors (fine-tuning, targets, torchvision weights). Torch-free: it runs before any process
imports torch. A :class:`~bench.errors.ConfigError` names the key, its value and what is allowed.
"""

import difflib
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal

from bench.errors import ConfigError, UserError
from bench.spec.catalog import WORKLOADS, WorkloadInfo, size_of, workload_info
from bench.spec.choices import (
    COMPILE_CACHES,
    COMPILE_MODES,
    COMPILE_SCOPES,
    CORPUS_SOURCE,
    CUDAGRAPH_MODES,
    DEVICES,
    FINETUNE_STRATEGIES,
    IMPLS,
    LOSSES,
    LR_SCHEDULES,
    OPTIMIZERS,
    POOLINGS,
    PRECISIONS,
    STRATEGIES,
)
from bench.spec.hub_weights import TORCHVISION, WEIGHTS, sizes_with_weights
from bench.spec.lora_layers import adapted_layers, narrowest
from bench.spec.user_workload import args_error, parse
from bench.spec.vision_shapes import AUGMENTS

if TYPE_CHECKING:
    from bench.spec.case import Case


def validate(case: "Case") -> None:
    """Check every setting of a case on construction: a :class:`ConfigError` names the first
    key that is wrong, its value and what is allowed."""
    info = workload_info(case.workload)
    _choice("precision", case.precision, PRECISIONS)
    _choice("compile", case.compile, COMPILE_MODES)
    _choice("optimizer", case.optimizer, OPTIMIZERS)
    _choice("device", case.device, DEVICES)
    _choice("data", case.data, info.data, f"allowed for {case.workload}")
    _check_user(case, info)
    if case.model_size is not None and info.zoo:
        raise ConfigError(
            "model_size", case.model_size, f"{case.workload} names its model: leave model_size out"
        )
    if case.model_size is not None and not info.user:
        size_of(case.workload, case.model_size)
    if case.loss is not None:
        _choice("loss", case.loss, LOSSES)
    _choice("lr_schedule", case.lr_schedule, LR_SCHEDULES)
    for key, allowed in (
        ("impl", IMPLS),
        ("compile_scope", COMPILE_SCOPES),
        ("pooling", POOLINGS),
        ("compile_cache", COMPILE_CACHES),
    ):
        if getattr(case, key) is not None:
            _choice(key, getattr(case, key), allowed)
    for key in ("nproc", "nnodes"):
        _number(key, getattr(case, key), integer=True, bound="positive")
    if case.strategy is not None:
        _choice("strategy", case.strategy, STRATEGIES)
    if case.batch_size != "max":
        _number("batch_size", case.batch_size, integer=True, bound="positive", optional=True)
    if case.augment is not None:
        _choice("augment", case.augment, AUGMENTS)
    _number("num_workers", case.num_workers, True, "non-negative", optional=True)
    _bool("pin_memory", case.pin_memory, optional=True)
    for key in ("seq_len", "threads", "eval_batches", "lr_schedule_steps", "image_size"):
        _number(key, getattr(case, key), integer=True, bound="positive", optional=True)
    _number("lr_warmup_steps", case.lr_warmup_steps, True, "non-negative", optional=True)
    _number("max_batch_limit", case.max_batch_limit, integer=True, bound="positive")
    _number("telemetry_interval_s", case.telemetry_interval_s, integer=False, bound="positive")
    if case.telemetry_interval_s < 0.01:
        raise ConfigError("telemetry_interval_s", case.telemetry_interval_s, "must be >= 0.01")
    _number("gamma", case.gamma, integer=False, bound="non-negative", optional=True)
    _number("alpha", case.alpha, integer=False, bound="positive", optional=True)
    if case.alpha is not None and case.alpha > 1:
        raise ConfigError("alpha", case.alpha, "a weight: 0 < alpha <= 1")
    for key in ("activation_checkpointing", "fullgraph", "dynamic", "nesterov"):
        _bool(key, getattr(case, key), optional=True)
    for key in ("min_steps", "max_steps", "repeats"):
        _number(key, getattr(case, key), integer=True, bound="positive")
    _number("warmup_steps", case.warmup_steps, integer=True, bound="non-negative")
    _number("profile_steps", case.profile_steps, integer=True, bound="non-negative")
    _bool("memory_snapshot", case.memory_snapshot)
    if case.memory_snapshot and case.device != "cuda":
        raise ConfigError(
            "memory_snapshot", True, "a CUDA caching-allocator snapshot: only with device cuda"
        )
    _number("seed", case.seed, integer=True)
    _bool("tie_embeddings", case.tie_embeddings, optional=True)
    _str("data_path", case.data_path, optional=True)
    _number("lr", case.lr, integer=False, bound="positive", optional=True)
    for key in ("max_time_s", "timeout_s", "ci_target"):
        _number(key, getattr(case, key), integer=False, bound="positive")
    _number("min_time_s", case.min_time_s, integer=False, bound="non-negative")
    if case.ci_target >= 1:
        raise ConfigError("ci_target", case.ci_target, "a fraction: 0 < ci_target < 1")
    if case.max_steps < case.min_steps:
        raise ConfigError("max_steps", case.max_steps, f"must be >= min_steps ({case.min_steps})")
    if case.max_time_s < case.min_time_s:
        raise ConfigError(
            "max_time_s", case.max_time_s, f"must be >= min_time_s ({case.min_time_s})"
        )
    if case.compile in CUDAGRAPH_MODES and case.warmup_steps < 2:
        raise ConfigError(
            "warmup_steps",
            case.warmup_steps,
            f"{case.compile!r} records its CUDA graphs in the first steps after compiling; "
            "at least 2 keep that out of the measured window",
        )
    if case.data == "text" and case.data_path is None:
        raise ConfigError("data", case.data, "needs data_path (the text file to train on)")
    if case.world_size > 1 and case.batch_size == "max":
        raise ConfigError(
            "batch_size",
            case.batch_size,
            f"'max' probes one process; with nproc x nnodes = {case.world_size} ranks give "
            "a number (per rank)",
        )
    _check_finetune(case, info)
    _check_target(case, info)


def _check_user(case: "Case", info: WorkloadInfo) -> None:
    """A user's workload: its spec parses, its args are a table; args on a built-in are an
    error (they would change nothing)."""
    if info.hub:
        if case.workload_args is not None and (problem := args_error(case.workload_args)):
            raise ConfigError("workload_args", case.workload_args, problem)
        return  # its keys: hf_source.workload_args_problem, once the files are found
    if not info.user:
        if case.workload_args is not None:
            raise ConfigError(
                "workload_args",
                case.workload_args,
                f"{case.workload} is built in; workload_args are for your own "
                "workload = 'FILE.py:FUNCTION' (or pretrained for an hf: model)",
            )
        return
    try:
        parse(case.workload)
    except UserError as error:
        raise ConfigError("workload", case.workload, str(error).split(": ", 1)[-1]) from None
    if case.workload_args is not None and (problem := args_error(case.workload_args)):
        raise ConfigError("workload_args", case.workload_args, problem)
    if case.model_size is not None and not isinstance(case.model_size, str | int):
        raise ConfigError("model_size", case.model_size, "a size name or count, passed to you")


def _check_finetune(case: "Case", info: WorkloadInfo) -> None:
    if case.finetune is not None:
        _choice("finetune", case.finetune, FINETUNE_STRATEGIES)
        if not info.finetune_tasks:
            offered = ", ".join(w.name for w in WORKLOADS.values() if w.finetune_tasks)
            raise ConfigError(
                "finetune",
                case.finetune,
                f"{case.workload} has no fine-tuning task; {offered} do",
            )
        if case.data == "synthetic":
            raise ConfigError(
                "data", case.data, "fine-tuning needs real data: noise has no task to transfer"
            )
        task = case.finetune_task or info.finetune_tasks[0]
        if task == "corpus" and case.data == CORPUS_SOURCE:
            others = [d for d in info.data if d not in ("auto", CORPUS_SOURCE, "synthetic")]
            raise ConfigError(
                "data",
                case.data,
                f"the corpus task pretrains on {CORPUS_SOURCE}; tune on another: "
                f"{', '.join(others)} (auto = docs)",
            )
    if case.finetune_task is not None and info.finetune_tasks:
        _choice(
            "finetune_task",
            case.finetune_task,
            info.finetune_tasks,
            f"allowed for {case.workload}",
        )
    for key in ("pretrain_steps", "lora_rank"):
        _number(key, getattr(case, key), integer=True, bound="positive", optional=True)
    if (
        case.finetune == "lora"
        and case.lora_rank is not None
        and case.model_size is not None
        and not info.user
        and not info.zoo
        and not info.hub
    ):
        layer = narrowest(adapted_layers(case.workload, case.model_size))
        if layer is not None and case.lora_rank >= min(layer[1], layer[2]):
            name, n_in, n_out = layer
            raise ConfigError(
                "lora_rank",
                case.lora_rank,
                f"must be below {min(n_in, n_out)}, the narrowest layer LoRA adapts in "
                f"{case.workload} {case.model_size} ({name}, {n_in} -> {n_out}): a rank >= "
                "min(in, out) is not low-rank",
            )
    _number("lora_alpha", case.lora_alpha, integer=False, bound="positive", optional=True)
    _str("checkpoint", case.checkpoint, optional=True)


def _check_target(case: "Case", info: WorkloadInfo) -> None:
    _number("eval_every", case.eval_every, integer=True, bound="positive", optional=True)
    _number("target_value", case.target_value, integer=False, optional=True)
    if case.target_metric is None:
        if case.target_value is not None:
            raise ConfigError("target_value", case.target_value, "needs target_metric")
        return
    if not info.user:  # a user's evaluation names its own metrics (checked once it is built)
        _choice(
            "target_metric", case.target_metric, info.eval_metrics, f"{case.workload} evaluates"
        )
    else:
        _str("target_metric", case.target_metric)
    if case.target_value is None:
        raise ConfigError("target_metric", case.target_metric, "needs target_value")
    if case.target_metric == "accuracy" and not 0 < case.target_value <= 1:
        raise ConfigError("target_value", case.target_value, "an accuracy: 0 < value <= 1")
    if case.target_metric == "auc" and not 0 < case.target_value <= 1:
        raise ConfigError("target_value", case.target_value, "an AUC: 0 < value <= 1")
    if case.target_metric == "perplexity" and case.target_value < 1:
        raise ConfigError("target_value", case.target_value, "a perplexity: value >= 1")
    if case.target_metric == "loss" and case.target_value < 0:
        raise ConfigError("target_value", case.target_value, "a loss: value >= 0")
    if case.eval_every is not None and case.eval_every > case.max_steps:
        # The window's end is evaluated too (bench/measure/target.py), but a target judged
        # only at the end of its budget has no steps to target to measure.
        raise ConfigError(
            "eval_every",
            case.eval_every,
            f"must be <= max_steps ({case.max_steps}) in a target case, or no periodic "
            "evaluation falls inside the step budget",
        )


def check_hub_weights(case: "Case") -> None:
    """``checkpoint = "torchvision"`` names weights torchvision publishes, at the input size
    they take (on the resolved case: its size and image side)."""
    if case.checkpoint != TORCHVISION:
        return
    assert case.model_size is not None, "unresolved case"
    weights = WEIGHTS.get((case.workload, case.model_size))
    if weights is None:
        raise ConfigError(
            "checkpoint",
            case.checkpoint,
            f"torchvision publishes no weights for {case.workload} {case.model_size}; it "
            f"does for {sizes_with_weights()} (a file named torchvision: ./torchvision)",
        )
    if weights.image_size is not None and case.image_size != weights.image_size:
        raise ConfigError(
            "image_size",
            case.image_size,
            f"{weights.enum} takes {weights.image_size}x{weights.image_size} images only "
            f"(its position embeddings hold one per patch): image_size = "
            f"{weights.image_size} with checkpoint = 'torchvision'",
        )


def _choice(key: str, value: object, allowed: tuple[str, ...], label: str = "allowed") -> None:
    if value not in allowed:
        raise ConfigError(key, value, f"{label}: {', '.join(allowed)}")


def _number(
    key: str,
    value: object,
    integer: bool,
    bound: Literal["positive", "non-negative"] | None = None,
    optional: bool = False,
) -> None:
    if value is None and optional:
        return
    kind = "an integer" if integer else "a number"
    if not isinstance(value, int if integer else int | float) or isinstance(value, bool):
        raise ConfigError(key, value, f"must be {kind}")
    if not math.isfinite(value):
        raise ConfigError(key, value, "must be a finite number")
    if bound == "positive" and value <= 0:  # type: ignore[operator]
        raise ConfigError(key, value, f"must be a positive {kind.split()[1]}")
    if bound == "non-negative" and value < 0:  # type: ignore[operator]
        raise ConfigError(key, value, f"must be {kind} >= 0")


def unknown_key_help(key: str, known: Iterable[str]) -> str:
    """What to say about an unknown key: the closest known one, then all that are allowed."""
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown key; {hint}allowed: {', '.join(sorted(known))}"


def _bool(key: str, value: object, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, bool):
        raise ConfigError(key, value, "must be true or false")


def _str(key: str, value: object, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not value:
        raise ConfigError(key, value, "must be a non-empty string")
