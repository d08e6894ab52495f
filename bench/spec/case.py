"""One point of a sweep: the frozen, validated configuration of a case.

A :class:`Case` holds two kinds of settings. The *measured* settings (workload, size, batch,
precision, compile mode, optimizer, ...) define what is measured; their hash is the case id, which
matches a case across runs and machines. The *run-length* settings (warm-up, step and time bounds,
confidence target, repeats, timeout, telemetry interval) say how long (and how closely) to
measure; they are recorded but are not part of the id, so a longer run of the same case still
compares with a shorter one.

Torch-free: validation runs before any process imports torch.
"""

import dataclasses
import difflib
import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any, Literal

from bench.errors import ConfigError
from bench.spec.catalog import (
    WORKLOADS,
    GPTSize,
    ViTSize,
    WorkloadInfo,
    size_of,
    workload_info,
)
from bench.spec.hub_weights import TORCHVISION, WEIGHTS, sizes_with_weights
from bench.spec.lora_layers import adapted_layers, narrowest
from bench.spec.vision_shapes import AUGMENTS

PRECISIONS = ("fp32", "tf32", "bf16", "amp-bf16", "amp-fp16")
COMPILE_MODES = (
    "eager",
    "default",
    "reduce-overhead",
    "max-autotune",
    "max-autotune-no-cudagraphs",
)
# Modes whose torch preset turns on CUDA graphs (torch._inductor.list_mode_options).
CUDAGRAPH_MODES = ("reduce-overhead", "max-autotune")
OPTIMIZERS = (
    "sgd",
    "sgd-momentum",
    "adam",
    "adamw",
    "adagrad",
    "rmsprop",
    "adafactor",
    "muon",
    "lbfgs",
)
# Implementations torch.optim offers per optimizer: `foreach` and `fused` where its constructor
# takes that flag (a test checks this table against torch's signatures); the rest step one
# parameter at a time.
OPTIMIZER_IMPLS = {
    "sgd": ("for-loop", "foreach", "fused"),
    "sgd-momentum": ("for-loop", "foreach", "fused"),
    "adam": ("for-loop", "foreach", "fused"),
    "adamw": ("for-loop", "foreach", "fused"),
    "adagrad": ("for-loop", "foreach", "fused"),
    "rmsprop": ("for-loop", "foreach"),
    "adafactor": ("for-loop", "foreach"),
    "muon": ("for-loop",),
    "lbfgs": ("for-loop",),
}
IMPLS = ("for-loop", "foreach", "fused")
LOSSES = ("cross-entropy", "mse", "focal")
POOLINGS = ("sum", "mean")
LR_SCHEDULES = ("constant", "cosine", "warmup-cosine")
COMPILE_SCOPES = ("model", "step")
COMPILE_CACHES = ("warm", "cold")
DEVICES = ("cpu", "cuda")
STRATEGIES = ("ddp", "fsdp")
# Optimizers whose step FSDP2 cannot drive: LBFGS re-evaluates the model through a closure and
# flattens every parameter into one vector, which a sharded DTensor parameter does not allow.
FSDP_UNSUPPORTED_OPTIMIZERS = ("lbfgs",)
# Learning rates used when a suite names none: torch's own default for Adam/AdamW; 0.01 for SGD,
# the value the tutorial trains its MLP with.
# Others: torch's defaults (Adagrad, RMSprop 0.01; Adafactor 0.01; Muon 0.02 as in torch.optim;
# LBFGS 1, its natural step of a quasi-Newton direction).
DEFAULT_LR = {
    "sgd": 0.01,
    "sgd-momentum": 0.01,
    "adam": 1e-3,
    "adamw": 1e-3,
    "adagrad": 0.01,
    "rmsprop": 0.01,
    "adafactor": 0.01,
    "muon": 0.02,
    "lbfgs": 1.0,
}

# Measured settings whose value here changes nothing a case measures: left out of its id.
ID_NEUTRAL: dict[str, Any] = {"nproc": 1, "nnodes": 1}
_UNSET = object()

RUN_LENGTH_KEYS = (
    "warmup_steps",
    "min_steps",
    "max_steps",
    "min_time_s",
    "max_time_s",
    "ci_target",
    "repeats",
    "timeout_s",
    "max_batch_limit",
    "telemetry_interval_s",
)
# Keys that only some workloads read; on the others they are normalised to None so that they
# neither change the case id nor pretend to have an effect.
LANGUAGE_ONLY_KEYS = ("seq_len", "eval_batches", "tie_embeddings", "activation_checkpointing")
COMPILE_ONLY_KEYS = ("compile_scope", "fullgraph", "dynamic", "compile_cache")
FINETUNE_STRATEGIES = ("full", "frozen", "lora")
FINETUNE_ONLY_KEYS = ("finetune_task", "pretrain_steps", "checkpoint")
LORA_ONLY_KEYS = ("lora_rank", "lora_alpha")
RECSYS_ONLY_KEYS = ("pooling",)
DEFAULT_PRETRAIN_STEPS = 300
# The ``corpus`` fine-tuning task's source: gpt pretrains on the stdlib's source code
# (bench/train/finetune.py), so its target must be another corpus.
CORPUS_SOURCE = "stdlib"
DEFAULT_LORA_RANK = 8
DEFAULT_EVAL_EVERY = 50
# Held-out metrics a target may name, and which way is better: a loss-like metric is reached at
# or below its value, accuracy at or above it.
TARGET_DIRECTIONS = {"accuracy": "max", "auc": "max", "loss": "min", "perplexity": "min"}
# Keys of the image data pipeline (bench/workloads/pipeline.py): they apply to the workloads that
# read images through it, and not to synthetic data, which is made on the device.
LOADER_KEYS = ("augment", "num_workers", "pin_memory")


@dataclass(frozen=True)
class Case:
    """A fully resolved case. Construct with :meth:`from_dict` (validates and fills defaults)."""

    workload: str = "mlp"
    """Workload family: ``mlp``, ``gpt``, ``recsys``, ``diffusion``, ``hf-gpt2`` (``bench list``
    shows them)."""
    model_size: str | int | None = None
    """A named size of the workload, or a target parameter count (``"25M"``, ``"1.5B"``) for which
    the workload chooses depth and width; None means the workload's default size."""
    batch_size: int | Literal["max"] | None = None
    """Samples (sequences for ``gpt``) per step; ``"max"`` searches the largest batch that fits;
    None means the workload's default."""
    seq_len: int | None = None
    """Tokens per sequence (``gpt`` only); None means the size's default context length."""
    tie_embeddings: bool | None = None
    """Share the token embedding with the output head (``gpt`` only; default True)."""
    activation_checkpointing: bool | None = None
    """Recompute each transformer block's activations in backward (``gpt`` only; default off)."""
    pooling: Literal["sum", "mean"] | None = None
    """How ``nn.EmbeddingBag`` pools a bag's rows (``recsys`` only; default ``sum``)."""
    data: str = "auto"
    """Data source; allowed values depend on the workload (``bench list``)."""
    data_path: str | None = None
    """Data root of MNIST and CIFAR-10 (``mlp``, ``cnn``, ``vit``) or the text file for
    ``data = "text"`` (``gpt``)."""
    image_size: int | None = None
    """Side of the square input images (``cnn``, ``vit``; default: the size's own, 32 for the
    CIFAR-style networks and toys, 224 for the ImageNet ones). Stored images are resized to it
    in the data pipeline; for ``vit`` it must be a multiple of the patch size."""
    augment: str | None = None
    """Augmentation recipe of the data pipeline (``cnn``, ``vit``; default ``none``): ``none``,
    ``crop-flip``, ``affine``, ``affine-crop-flip`` (docs/SUITES.md)."""
    num_workers: int | None = None
    """``torch.utils.data.DataLoader`` worker processes preparing batches (``cnn``, ``vit``;
    default 0: batches are prepared in the training process, between steps)."""
    pin_memory: bool | None = None
    """DataLoader batches in page-locked memory and copied to the GPU asynchronously (``cnn``,
    ``vit`` on CUDA; default off). A CPU case has no copy to speed up: None there."""
    precision: str = "fp32"
    """fp32; tf32 (CUDA matmul and cuDNN in TF32); bf16 (parameters and activations in bf16);
    amp-bf16 (autocast to bf16); amp-fp16 (autocast to fp16 with a GradScaler)."""
    compile: str = "eager"
    """``eager`` or a ``torch.compile`` mode string, exactly as torch spells it."""
    compile_scope: Literal["model", "step"] | None = None
    """What is compiled: the model with its loss, or the whole training step with the optimizer
    (compiled modes only; default ``model``)."""
    fullgraph: bool | None = None
    """``torch.compile(fullgraph=...)``: a graph break is an error (compiled modes; default off)."""
    dynamic: bool | None = None
    """``torch.compile(dynamic=...)``; None leaves torch to decide (compiled modes)."""
    compile_cache: Literal["warm", "cold"] | None = None
    """``cold`` compiles into a fresh inductor cache directory, so that ``compile_time_s`` is the
    real first-time cost; ``warm`` uses the machine's cache (compiled modes; default warm)."""
    optimizer: str = "adamw"
    """Optimizer (torch.optim): sgd, sgd-momentum, adam, adamw, adagrad, rmsprop, adafactor, muon
    (2-D hidden weights; AdamW for the rest), lbfgs (quasi-Newton, driven with a closure)."""
    lr: float | None = None
    """Learning rate; None means the optimizer's default in DEFAULT_LR."""
    impl: Literal["for-loop", "foreach", "fused"] | None = None
    """The optimizer's implementation; None lets torch choose. One torch does not offer for the
    optimizer is a ``skipped`` record."""
    nesterov: bool | None = None
    """Nesterov momentum (``sgd-momentum`` only; default off). Momentum is 0.9."""
    lr_schedule: Literal["constant", "cosine", "warmup-cosine"] = "constant"
    """Learning rate per step: constant, cosine decay to 0, or linear warm-up then cosine."""
    lr_warmup_steps: int | None = None
    """Steps of linear warm-up (``warmup-cosine`` only; default 10)."""
    lr_schedule_steps: int | None = None
    """Length of the cosine; default: every step the case can run (1 + warmup + max_steps)."""
    loss: Literal["cross-entropy", "mse", "focal"] | None = "cross-entropy"
    """Classification loss: cross-entropy, mse on one-hot targets, or focal (``gamma``,
    ``alpha``). None for workloads with their own objective (``recsys``: binary cross-entropy of
    clicks; ``diffusion``: noise-prediction MSE)."""
    gamma: float | None = None
    """Focal loss focusing parameter (``focal`` only; default 2, Lin et al. 2017)."""
    alpha: float | None = None
    """Focal loss weight (``focal`` only; default 0.25, Lin et al. 2017)."""
    seed: int = 0
    """Seed for weights, data order and synthetic data."""
    threads: int | None = None
    """CPU threads for torch (``torch.set_num_threads``); None means the machine's cores."""
    eval_batches: int | None = None
    """Held-out batches evaluated at the end (``gpt`` only; ``mlp`` evaluates its whole split)."""
    finetune: Literal["full", "frozen", "lora"] | None = None
    """Fine-tune a pretrained backbone on another task (bench/train/finetune.py): ``full`` trains
    every weight, ``frozen`` only the head (a linear probe), ``lora`` low-rank adapters on the
    linear layers and attention projections. None: plain training from scratch."""
    finetune_task: str | None = None
    """The pair of tasks (fine-tuning only): ``new-classes`` (digits 0-4, then a new head on 5-9)
    or ``rotated`` (upright digits, then turned by 90 degrees) for image workloads; ``corpus``
    (the stdlib's source, then ``data``) for ``gpt``. Default: the workload's first."""
    pretrain_steps: int | None = None
    """Steps of the pretraining phase, before and outside the measured window (fine-tuning without
    a ``checkpoint``; default 300). Its weights are cached, so other cases reuse them."""
    checkpoint: str | None = None
    """A state-dict file (``torch.save(model.state_dict())``, or a dict with it under ``model``)
    of the workload's model to fine-tune, instead of pretraining one (fine-tuning only); or
    ``"torchvision"``: torchvision's ImageNet weights for the size, read from the local torch hub
    cache and never downloaded (bench/spec/hub_weights.py; ``cnn`` resnet18/34/50, ``vit``
    vit_b_16/vit_l_16)."""
    lora_rank: int | None = None
    """Rank r of the LoRA adapters (``lora`` only; default 8)."""
    lora_alpha: float | None = None
    """LoRA's scale numerator: the adapter adds (alpha / r) B A x (``lora`` only; default 2 r)."""
    target_metric: str | None = None
    """Train until this held-out metric reaches ``target_value`` (or the budget, ``max_steps`` or
    ``max_time_s``, ends): ``accuracy`` (reached at or above), ``loss`` or ``perplexity`` (at or
    below), as the workload evaluates them. Records time and steps to target."""
    target_value: float | None = None
    """The value ``target_metric`` must reach."""
    eval_every: int | None = None
    """Evaluate on held-out data every this many measured steps (default 50 with a target, or
    ``max_steps`` where smaller; none without): a quality curve, and the resolution of
    steps-to-target; the window's last step is evaluated too. At most ``max_steps`` in a target
    case. Evaluation time is in no step time and not in time-to-target."""
    nproc: int = 1
    """Processes (ranks) per node. More than one launches the case through torchrun, one rank
    per process (one GPU each on CUDA; gloo on CPU, NCCL on CUDA). ``batch_size`` is per rank:
    a step trains on nproc x nnodes x batch_size samples (docs/DISTRIBUTED.md)."""
    nnodes: int = 1
    """Nodes the case spans (torchrun's ``--nnodes``); where they meet is set with ``bench run
    --rdzv-endpoint`` (not part of the case: it says where to run, not what is measured)."""
    strategy: Literal["ddp", "fsdp"] | None = None
    """Data parallelism across ranks: ``ddp`` (DistributedDataParallel) or ``fsdp`` (FSDP2
    ``fully_shard``, parameters, gradients and optimizer state sharded). None (and only None)
    with one rank; default ``ddp`` with more."""
    device: Literal["cpu", "cuda"] = "cpu"
    """Device the case runs on; set by ``bench run --device``, not by suites."""

    # Run length: how long to measure (not part of the case id).
    warmup_steps: int = 10
    """Steps run after the first (compiling) step and before the measured window."""
    min_steps: int = 20
    """Measured steps at least."""
    max_steps: int = 2000
    """Measured steps at most."""
    min_time_s: float = 1.0
    """Seconds of measured window at least."""
    max_time_s: float = 20.0
    """Seconds of measured window at most (checked between steps)."""
    ci_target: float = 0.01
    """Stop once the 95% CI of the median step time is within +-ci_target of the median."""
    repeats: int = 3
    """Separate processes per case, interleaved with the other cases."""
    timeout_s: float = 600.0
    """Wall-clock limit of one (case, repeat) process; past it the process is killed."""
    max_batch_limit: int = 65536
    """``batch_size = "max"`` stops doubling here: the search's cap (a CPU has no memory wall
    short of swapping the machine)."""
    telemetry_interval_s: float = 0.1
    """Seconds between two samples of host and GPU telemetry in the measured window. It says how
    closely to watch, not what is measured, so it is not part of the case id. At least 0.01:
    NVML's utilisation covers a past period of 1/6 s to 1 s (nvmlDeviceGetUtilizationRates), and
    a sampler waking more often would take CPU from the training loop it watches."""

    def __post_init__(self) -> None:
        info = workload_info(self.workload)
        _choice("precision", self.precision, PRECISIONS)
        _choice("compile", self.compile, COMPILE_MODES)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("device", self.device, DEVICES)
        _choice("data", self.data, info.data, f"allowed for {self.workload}")
        if self.model_size is not None:
            size_of(self.workload, self.model_size)
        if self.loss is not None:
            _choice("loss", self.loss, LOSSES)
        _choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        for key, allowed in (
            ("impl", IMPLS),
            ("compile_scope", COMPILE_SCOPES),
            ("pooling", POOLINGS),
            ("compile_cache", COMPILE_CACHES),
        ):
            if getattr(self, key) is not None:
                _choice(key, getattr(self, key), allowed)
        for key in ("nproc", "nnodes"):
            _number(key, getattr(self, key), integer=True, bound="positive")
        if self.strategy is not None:
            _choice("strategy", self.strategy, STRATEGIES)
        if self.batch_size != "max":
            _number("batch_size", self.batch_size, integer=True, bound="positive", optional=True)
        if self.augment is not None:
            _choice("augment", self.augment, AUGMENTS)
        _number("num_workers", self.num_workers, True, "non-negative", optional=True)
        _bool("pin_memory", self.pin_memory, optional=True)
        for key in ("seq_len", "threads", "eval_batches", "lr_schedule_steps", "image_size"):
            _number(key, getattr(self, key), integer=True, bound="positive", optional=True)
        _number("lr_warmup_steps", self.lr_warmup_steps, True, "non-negative", optional=True)
        _number("max_batch_limit", self.max_batch_limit, integer=True, bound="positive")
        _number("telemetry_interval_s", self.telemetry_interval_s, integer=False, bound="positive")
        if self.telemetry_interval_s < 0.01:
            raise ConfigError("telemetry_interval_s", self.telemetry_interval_s, "must be >= 0.01")
        _number("gamma", self.gamma, integer=False, bound="non-negative", optional=True)
        _number("alpha", self.alpha, integer=False, bound="positive", optional=True)
        if self.alpha is not None and self.alpha > 1:
            raise ConfigError("alpha", self.alpha, "a weight: 0 < alpha <= 1")
        for key in ("activation_checkpointing", "fullgraph", "dynamic", "nesterov"):
            _bool(key, getattr(self, key), optional=True)
        for key in ("min_steps", "max_steps", "repeats"):
            _number(key, getattr(self, key), integer=True, bound="positive")
        _number("warmup_steps", self.warmup_steps, integer=True, bound="non-negative")
        _number("seed", self.seed, integer=True)
        _bool("tie_embeddings", self.tie_embeddings, optional=True)
        _str("data_path", self.data_path, optional=True)
        _number("lr", self.lr, integer=False, bound="positive", optional=True)
        for key in ("max_time_s", "timeout_s", "ci_target"):
            _number(key, getattr(self, key), integer=False, bound="positive")
        _number("min_time_s", self.min_time_s, integer=False, bound="non-negative")
        if self.ci_target >= 1:
            raise ConfigError("ci_target", self.ci_target, "a fraction: 0 < ci_target < 1")
        if self.max_steps < self.min_steps:
            raise ConfigError(
                "max_steps", self.max_steps, f"must be >= min_steps ({self.min_steps})"
            )
        if self.max_time_s < self.min_time_s:
            raise ConfigError(
                "max_time_s", self.max_time_s, f"must be >= min_time_s ({self.min_time_s})"
            )
        if self.compile in CUDAGRAPH_MODES and self.warmup_steps < 2:
            raise ConfigError(
                "warmup_steps",
                self.warmup_steps,
                f"{self.compile!r} records its CUDA graphs in the first steps after compiling; "
                "at least 2 keep that out of the measured window",
            )
        if self.data == "text" and self.data_path is None:
            raise ConfigError("data", self.data, "needs data_path (the text file to train on)")
        if self.world_size > 1 and self.batch_size == "max":
            raise ConfigError(
                "batch_size",
                self.batch_size,
                f"'max' probes one process; with nproc x nnodes = {self.world_size} ranks give "
                "a number (per rank)",
            )
        self._check_finetune(info)
        self._check_target(info)

    def _check_finetune(self, info: WorkloadInfo) -> None:
        if self.finetune is not None:
            _choice("finetune", self.finetune, FINETUNE_STRATEGIES)
            if not info.finetune_tasks:
                offered = ", ".join(w.name for w in WORKLOADS.values() if w.finetune_tasks)
                raise ConfigError(
                    "finetune",
                    self.finetune,
                    f"{self.workload} has no fine-tuning task; {offered} do",
                )
            if self.data == "synthetic":
                raise ConfigError(
                    "data", self.data, "fine-tuning needs real data: noise has no task to transfer"
                )
            task = self.finetune_task or info.finetune_tasks[0]
            if task == "corpus" and self.data == CORPUS_SOURCE:
                others = [d for d in info.data if d not in ("auto", CORPUS_SOURCE, "synthetic")]
                raise ConfigError(
                    "data",
                    self.data,
                    f"the corpus task pretrains on {CORPUS_SOURCE}; tune on another: "
                    f"{', '.join(others)} (auto = docs)",
                )
        if self.finetune_task is not None and info.finetune_tasks:
            _choice(
                "finetune_task",
                self.finetune_task,
                info.finetune_tasks,
                f"allowed for {self.workload}",
            )
        for key in ("pretrain_steps", "lora_rank"):
            _number(key, getattr(self, key), integer=True, bound="positive", optional=True)
        if self.finetune == "lora" and self.lora_rank is not None and self.model_size is not None:
            layer = narrowest(adapted_layers(self.workload, self.model_size))
            if layer is not None and self.lora_rank >= min(layer[1], layer[2]):
                name, n_in, n_out = layer
                raise ConfigError(
                    "lora_rank",
                    self.lora_rank,
                    f"must be below {min(n_in, n_out)}, the narrowest layer LoRA adapts in "
                    f"{self.workload} {self.model_size} ({name}, {n_in} -> {n_out}): a rank >= "
                    "min(in, out) is not low-rank",
                )
        _number("lora_alpha", self.lora_alpha, integer=False, bound="positive", optional=True)
        _str("checkpoint", self.checkpoint, optional=True)

    def _check_target(self, info: WorkloadInfo) -> None:
        _number("eval_every", self.eval_every, integer=True, bound="positive", optional=True)
        _number("target_value", self.target_value, integer=False, optional=True)
        if self.target_metric is None:
            if self.target_value is not None:
                raise ConfigError("target_value", self.target_value, "needs target_metric")
            return
        _choice(
            "target_metric", self.target_metric, info.eval_metrics, f"{self.workload} evaluates"
        )
        if self.target_value is None:
            raise ConfigError("target_metric", self.target_metric, "needs target_value")
        if self.target_metric == "accuracy" and not 0 < self.target_value <= 1:
            raise ConfigError("target_value", self.target_value, "an accuracy: 0 < value <= 1")
        if self.target_metric == "auc" and not 0 < self.target_value <= 1:
            raise ConfigError("target_value", self.target_value, "an AUC: 0 < value <= 1")
        if self.target_metric == "perplexity" and self.target_value < 1:
            raise ConfigError("target_value", self.target_value, "a perplexity: value >= 1")
        if self.target_metric == "loss" and self.target_value < 0:
            raise ConfigError("target_value", self.target_value, "a loss: value >= 0")
        if self.eval_every is not None and self.eval_every > self.max_steps:
            # The window's end is evaluated too (bench/measure/target.py), but a target judged
            # only at the end of its budget has no steps to target to measure.
            raise ConfigError(
                "eval_every",
                self.eval_every,
                f"must be <= max_steps ({self.max_steps}) in a target case, or no periodic "
                "evaluation falls inside the step budget",
            )

    @property
    def world_size(self) -> int:
        """Ranks of the case: processes per node times nodes."""
        return self.nproc * self.nnodes

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Case":
        """Validate raw settings (from TOML or ``--set``) and fill every default explicitly."""
        known = {f.name for f in fields(cls)}
        for key in values:
            if key not in known:
                raise ConfigError(key, values[key], unknown_key_help(key, known))
        case = cls(**values)
        info = workload_info(case.workload)
        resolved: dict[str, Any] = {
            "model_size": case.model_size or info.default_size,
            "batch_size": case.batch_size or info.default_batch_size,
            "lr": case.lr if case.lr is not None else DEFAULT_LR[case.optimizer],
        }
        # Defaults of keys that apply to this case; the others are None (see _NOT_APPLICABLE).
        if info.language:
            shape = size_of(case.workload, resolved["model_size"])
            assert isinstance(shape, GPTSize)
            resolved["seq_len"] = case.seq_len or shape.seq_len
            resolved["eval_batches"] = case.eval_batches or 20
            resolved["tie_embeddings"] = _default(case.tie_embeddings, True)
            resolved["activation_checkpointing"] = _default(case.activation_checkpointing, False)
        if info.image_pipeline:
            shape = size_of(case.workload, resolved["model_size"])
            resolved["image_size"] = case.image_size or shape.image_size
            if isinstance(shape, ViTSize) and resolved["image_size"] % shape.patch_size:
                raise ConfigError(
                    "image_size",
                    resolved["image_size"],
                    f"vit {resolved['model_size']} cuts images into {shape.patch_size}x"
                    f"{shape.patch_size} patches: the side must be a multiple of "
                    f"{shape.patch_size}",
                )
            resolved["augment"] = case.augment or "none"
            resolved["num_workers"] = _default(case.num_workers, 0)
            resolved["pin_memory"] = _default(case.pin_memory, False)
        if case.workload == "recsys":
            resolved["pooling"] = case.pooling or "sum"
        if case.compile != "eager":
            resolved["compile_scope"] = case.compile_scope or "model"
            resolved["fullgraph"] = _default(case.fullgraph, False)
            resolved["compile_cache"] = case.compile_cache or "warm"
        if case.optimizer == "sgd-momentum":
            resolved["nesterov"] = _default(case.nesterov, False)
        if case.lr_schedule == "warmup-cosine":
            resolved["lr_warmup_steps"] = _default(case.lr_warmup_steps, 10)
        if case.lr_schedule != "constant":
            resolved["lr_schedule_steps"] = case.lr_schedule_steps or (
                1 + case.warmup_steps + case.max_steps
            )
        if case.world_size > 1:
            resolved["strategy"] = case.strategy or "ddp"
        if case.loss == "focal":
            resolved["gamma"] = _default(case.gamma, 2.0)
            resolved["alpha"] = _default(case.alpha, 0.25)
        if case.finetune is not None:
            resolved["finetune_task"] = case.finetune_task or info.finetune_tasks[0]
            if case.checkpoint is None:
                resolved["pretrain_steps"] = case.pretrain_steps or DEFAULT_PRETRAIN_STEPS
        if case.finetune == "lora":
            rank = case.lora_rank or DEFAULT_LORA_RANK
            resolved["lora_rank"] = rank
            resolved["lora_alpha"] = float(_default(case.lora_alpha, 2 * rank))
        if case.target_metric is not None:
            resolved["eval_every"] = case.eval_every or min(DEFAULT_EVAL_EVERY, case.max_steps)
        case = dataclasses.replace(case, **resolved)
        case = dataclasses.replace(case, **{key: None for key in case.not_applicable()})
        case._check_hub_weights()
        return case

    def _check_hub_weights(self) -> None:
        """``checkpoint = "torchvision"`` names weights torchvision publishes, at the input size
        they take (on the resolved case: its size and image side)."""
        if self.checkpoint != TORCHVISION:
            return
        assert self.model_size is not None, "unresolved case"
        weights = WEIGHTS.get((self.workload, self.model_size))
        if weights is None:
            raise ConfigError(
                "checkpoint",
                self.checkpoint,
                f"torchvision publishes no weights for {self.workload} {self.model_size}; it "
                f"does for {sizes_with_weights()} (a file named torchvision: ./torchvision)",
            )
        if weights.image_size is not None and self.image_size != weights.image_size:
            raise ConfigError(
                "image_size",
                self.image_size,
                f"{weights.enum} takes {weights.image_size}x{weights.image_size} images only "
                f"(its position embeddings hold one per patch): image_size = "
                f"{weights.image_size} with checkpoint = 'torchvision'",
            )

    def not_applicable(self) -> list[str]:
        """Keys that mean nothing for this case: normalised to None, so that they neither change
        the case id nor pretend to have an effect."""
        info = workload_info(self.workload)
        rules = {
            LANGUAGE_ONLY_KEYS: not info.language,
            ("image_size",): not info.image_pipeline,
            LOADER_KEYS: not info.image_pipeline or self.data == "synthetic",
            ("pin_memory",): self.device != "cuda",
            RECSYS_ONLY_KEYS: self.workload != "recsys",
            # A workload with its own objective ignores the classification loss and its knobs.
            ("loss",): not info.classifier,
            COMPILE_ONLY_KEYS: self.compile == "eager",
            ("nesterov",): self.optimizer != "sgd-momentum",
            ("lr_warmup_steps",): self.lr_schedule != "warmup-cosine",
            ("lr_schedule_steps",): self.lr_schedule == "constant",
            ("gamma", "alpha"): self.loss != "focal" or not info.classifier,
            FINETUNE_ONLY_KEYS: self.finetune is None,
            LORA_ONLY_KEYS: self.finetune != "lora",
            ("pretrain_steps",): self.checkpoint is not None,
            ("strategy",): self.world_size == 1,
        }
        return [key for keys, applies_not in rules.items() if applies_not for key in keys]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def measured(self) -> dict[str, Any]:
        """The settings that define what is measured (everything but the run length)."""
        return {k: v for k, v in self.to_dict().items() if k not in RUN_LENGTH_KEYS}

    @property
    def id(self) -> str:
        """Stable id: a hash of the measured settings, equal across runs and machines.

        Settings at None (they do not apply, see :meth:`not_applicable`) and at a value that
        changes nothing (``ID_NEUTRAL``: one process, one node) are left out, so that a key added
        to the harness later does not change the id of every case measured before it existed.
        """
        hashed = {
            key: value
            for key, value in self.measured().items()
            if value is not None and ID_NEUTRAL.get(key, _UNSET) != value
        }
        blob = json.dumps(hashed, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def skip_reason(self) -> str | None:
        """Why this case cannot run, known before any process starts (a combination that does
        not apply, never silently run as another)."""
        if self.device == "cpu" and self.compile in CUDAGRAPH_MODES:
            return (
                f"compile mode {self.compile!r} uses CUDA graphs, which need a CUDA device "
                "(on CPU: 'max-autotune-no-cudagraphs')"
            )
        if self.device == "cpu" and self.precision == "tf32":
            return "tf32 is a CUDA tensor-core format (matmul and cuDNN); a CPU has no TF32 mode"
        if self.impl is not None and self.impl not in OPTIMIZER_IMPLS[self.optimizer]:
            offered = ", ".join(OPTIMIZER_IMPLS[self.optimizer])
            return f"torch.optim offers {self.optimizer} as {offered}, not {self.impl!r}"
        if self.compile_scope == "step" and self.optimizer == "lbfgs":
            return (
                "lbfgs re-evaluates the model inside step() through its closure; compile it with "
                "compile_scope = 'model'"
            )
        if self.optimizer == "lbfgs" and self.precision == "amp-fp16":
            return "amp-fp16's GradScaler cannot drive lbfgs, which steps through a closure"
        if self.strategy == "fsdp" and self.optimizer in FSDP_UNSUPPORTED_OPTIMIZERS:
            return (
                f"fsdp shards parameters, and {self.optimizer} steps through a closure over one "
                "flat vector of every parameter; use strategy = 'ddp'"
            )
        if self.world_size > 1 and self.finetune is not None:
            return (
                "fine-tuning runs in one process: its pretraining phase and weight cache are "
                "per process (give nproc = 1)"
            )
        if self.strategy == "fsdp" and self.precision == "amp-fp16":
            return (
                "amp-fp16's GradScaler would check for inf/NaN in one rank's shard of the "
                "gradients only (ranks could skip different steps); use amp-bf16 with fsdp"
            )
        if self.world_size > 1 and self.compile_scope == "step":
            return (
                f"bench compiles the model under {self.strategy} (compile_scope = 'model'); "
                "a compiled whole step around distributed gradients is not supported"
            )
        if self.compile_scope == "step" and self.fullgraph:
            return (
                "compile_scope = 'step' breaks the graph at loss.backward(); fullgraph = true "
                "cannot hold the whole step in one graph"
            )
        return None


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


def varying_keys(configs: list[dict[str, Any]]) -> list[str]:
    """The measured settings (run-length keys aside) that take more than one value across
    ``configs``, in the order they first appear. A key varies when it takes two values other
    than None: workload-specific keys are None on the other workloads, and that alone tells
    nothing the workload does not."""
    keys = list(dict.fromkeys(k for config in configs for k in config if k not in RUN_LENGTH_KEYS))
    return [k for k in keys if len({repr(c[k]) for c in configs if c.get(k) is not None}) > 1]


def unknown_key_help(key: str, known: Iterable[str]) -> str:
    """What to say about an unknown key: the closest known one, then all that are allowed."""
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown key; {hint}allowed: {', '.join(sorted(known))}"


def _default(value: Any, default: Any) -> Any:
    return default if value is None else value


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
