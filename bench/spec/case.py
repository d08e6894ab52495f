"""One point of a sweep: the frozen, validated configuration of a case.

A :class:`Case` holds two kinds of settings. The *measured* settings (workload, size, batch,
precision, compile mode, optimizer, ...) define what is measured; their hash is the case id, which
matches a case across runs and machines. The *run-length* settings (warm-up, step and time bounds,
confidence target, repeats, timeout, telemetry interval) say how long (and how closely) to
measure; they are recorded but are not part of the id, so a longer run of the same case still
compares with a shorter one.

Torch-free: validation runs before any process imports torch.
"""

import copy
import dataclasses
import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Literal

from bench.errors import ConfigError
from bench.spec import hf_source
from bench.spec.catalog import (
    ZOO_IMAGE_SIZE,
    GPTSize,
    ViTSize,
    WorkloadInfo,
    size_of,
    workload_info,
)
from bench.spec.checks import check_hub_weights, unknown_key_help, validate
from bench.spec.choices import (
    COMPILE_ONLY_KEYS,
    DEFAULT_EVAL_EVERY,
    DEFAULT_LORA_RANK,
    DEFAULT_LR,
    DEFAULT_PRETRAIN_STEPS,
    FINETUNE_ONLY_KEYS,
    LANGUAGE_ONLY_KEYS,
    LOADER_KEYS,
    LORA_ONLY_KEYS,
    RECSYS_ONLY_KEYS,
    RUN_LENGTH_KEYS,
    CompileCache,
    CompileMode,
    CompileScope,
    Device,
    FinetuneStrategy,
    Impl,
    Loss,
    LRSchedule,
    Optimizer,
    Pooling,
    Precision,
    Strategy,
)
from bench.spec.hf_source import ALIASES
from bench.spec.skips import skip_reason

# Measured settings whose value here changes nothing a case measures: left out of its id.
ID_NEUTRAL: dict[str, Any] = {"nproc": 1, "nnodes": 1}
_UNSET = object()


@dataclass(frozen=True)
class Case:
    """A fully resolved case. Construct with :meth:`from_dict` (validates and fills defaults)."""

    workload: str = "mlp"
    """Workload family: ``mlp``, ``gpt``, ``cnn`` (ResNets), ``vit`` (vision transformers),
    ``recsys``, ``diffusion``, ``hf-gpt2`` (``bench list`` shows them with their sizes); a model
    zoo's (``torchvision:NAME``, ``timm:NAME``); or the user's own code: ``"FILE.py:FUNCTION"``
    (a path relative to the suite file) or ``"package.module:FUNCTION"`` (docs/WORKLOADS.md)."""
    workload_args: dict[str, Any] | None = None
    """Keyword arguments of a user's workload function (``[base.workload_args]``; each may be an
    axis, ``workload_args.hidden = [256, 512]``). Part of the case id. None on built-ins."""
    workload_root: str | None = None
    """The directory a user's ``FILE.py`` is resolved from: the suite file's. Set by bench, not by
    suites; not part of the case id (a checkout and bench ab's worktree of it share case ids)."""
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
    pooling: Pooling | None = None
    """How ``nn.EmbeddingBag`` pools a bag's rows (``recsys`` only; default ``sum``)."""
    data: str = "auto"
    """Data source; allowed values depend on the workload (``bench list``)."""
    data_path: str | None = None
    """Data root of MNIST and CIFAR-10 in torchvision's layout (``mlp``, ``cnn``, ``vit``,
    ``diffusion``; None: ``$BENCH_DATA_ROOT``, else ``~/.cache/bench/data``) or the text file for
    ``data = "text"`` (``gpt``, ``hf-gpt2``)."""
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
    precision: Precision = "fp32"
    """fp32; tf32 (CUDA matmul and cuDNN in TF32); bf16 (parameters and activations in bf16);
    amp-bf16 (autocast to bf16); amp-fp16 (autocast to fp16 with a GradScaler)."""
    compile: CompileMode = "eager"
    """``eager`` or a ``torch.compile`` mode string, exactly as torch spells it."""
    compile_scope: CompileScope | None = None
    """What is compiled: the model with its loss, or the whole training step with the optimizer
    (compiled modes only; default ``model``)."""
    fullgraph: bool | None = None
    """``torch.compile(fullgraph=...)``: a graph break is an error (compiled modes; default off)."""
    dynamic: bool | None = None
    """``torch.compile(dynamic=...)``; None leaves torch to decide (compiled modes)."""
    compile_cache: CompileCache | None = None
    """``cold`` compiles into a fresh inductor cache directory, so that ``compile_time_s`` is the
    real first-time cost; ``warm`` uses the machine's cache (compiled modes; default warm)."""
    optimizer: Optimizer = "adamw"
    """Optimizer (torch.optim): sgd, sgd-momentum, adam, adamw, adagrad, rmsprop, adafactor, muon
    (2-D hidden weights; AdamW for the rest), lbfgs (quasi-Newton, driven with a closure)."""
    lr: float | None = None
    """Learning rate; None means the optimizer's default in DEFAULT_LR."""
    impl: Impl | None = None
    """The optimizer's implementation; None lets torch choose. One torch does not offer for the
    optimizer is a ``skipped`` record."""
    nesterov: bool | None = None
    """Nesterov momentum (``sgd-momentum`` only; default off). Momentum is 0.9."""
    lr_schedule: LRSchedule = "constant"
    """Learning rate per step: constant, cosine decay to 0, or linear warm-up then cosine."""
    lr_warmup_steps: int | None = None
    """Steps of linear warm-up (``warmup-cosine`` only; default 10)."""
    lr_schedule_steps: int | None = None
    """Length of the cosine; default: every step the case can run (1 + warmup + max_steps)."""
    loss: Loss | None = "cross-entropy"
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
    """CPU threads for torch (``torch.set_num_threads``); None means the cores this process may
    run on (its affinity), shared among the node's ranks (``nproc``)."""
    eval_batches: int | None = None
    """Held-out batches evaluated at the end (``gpt``, ``hf-gpt2``; the other workloads evaluate
    their whole held-out split)."""
    finetune: FinetuneStrategy | None = None
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
    strategy: Strategy | None = None
    """Data parallelism across ranks: ``ddp`` (DistributedDataParallel) or ``fsdp`` (FSDP2
    ``fully_shard``, parameters, gradients and optimizer state sharded). None (and only None)
    with one rank; default ``ddp`` with more."""
    device: Device = "cpu"
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
    profile_steps: int = 0
    """Training steps run under ``torch.profiler`` after the window and the evaluation (0: none):
    a trace in the run's logs and ``metrics.profile``. Outside the window, so not part of the
    case id: a profiled case and its unprofiled twin are the same case."""
    memory_snapshot: bool = False
    """CUDA only: record the allocator's history over the first steps and dump a snapshot for
    PyTorch's memory visualiser (``metrics.memory.snapshot``); run-length, like profile_steps."""

    def __post_init__(self) -> None:
        validate(self)

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
        if values.get("workload") in ALIASES:  # hf-gpt2 is hf:gpt2 (docs/WORKLOADS.md)
            values = {**values, "workload": ALIASES[values["workload"]]}
        case = cls(**values)
        info = workload_info(case.workload)
        source = hf_source.files_for(case, values) if info.hub else None
        if info.user and "loss" not in values:
            # The built workload says whether it is a classifier: cross-entropy then, its own
            # loss otherwise (bench/workloads/user.py). A loss the suite names is kept, and is a
            # skipped record where the workload is no classifier.
            case = dataclasses.replace(case, loss=None)
        resolved: dict[str, Any] = {
            "model_size": case.model_size or info.default_size,
            "batch_size": case.batch_size or info.default_batch_size,
            "lr": case.lr if case.lr is not None else DEFAULT_LR[case.optimizer],
        }
        # Defaults of keys that apply to this case; the others are None (see not_applicable).
        if source is not None:  # an hf: model's files give its shape (no model_size)
            resolved |= hf_source.file_defaults(case, source)
        elif info.language:
            shape = size_of(case.workload, resolved["model_size"])
            assert isinstance(shape, GPTSize)
            resolved["seq_len"] = case.seq_len or shape.seq_len
            resolved["eval_batches"] = case.eval_batches or 20
            resolved["tie_embeddings"] = _default(case.tie_embeddings, True)
            resolved["activation_checkpointing"] = _default(case.activation_checkpointing, False)
        if info.image_pipeline:
            shape = None if info.zoo else size_of(case.workload, resolved["model_size"])
            resolved["image_size"] = case.image_size or (
                shape.image_size if shape is not None else ZOO_IMAGE_SIZE
            )
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
            if case.checkpoint is None and not info.user:
                resolved["pretrain_steps"] = case.pretrain_steps or DEFAULT_PRETRAIN_STEPS
        if case.finetune == "lora":
            rank = case.lora_rank or DEFAULT_LORA_RANK
            resolved["lora_rank"] = rank
            resolved["lora_alpha"] = float(_default(case.lora_alpha, 2 * rank))
        if case.target_metric is not None:
            resolved["eval_every"] = case.eval_every or min(DEFAULT_EVAL_EVERY, case.max_steps)
        case = dataclasses.replace(case, **resolved)
        case = dataclasses.replace(case, **{key: None for key in case.not_applicable()})
        check_hub_weights(case)
        return case

    def not_applicable(self) -> list[str]:
        """Keys that mean nothing for this case: normalised to None, so that they neither change
        the case id nor pretend to have an effect."""
        info = workload_info(self.workload)
        return [
            key for keys, applies_not in _APPLIES_NOT if applies_not(self, info) for key in keys
        ]

    def to_dict(self) -> dict[str, Any]:
        """The settings as a plain dict: ``dataclasses.asdict``'s result (its containers
        copied), without its deep copy of every scalar, which made the expansion of a
        10,000-case matrix take seconds."""
        return {
            name: copy.deepcopy(value) if isinstance(value, dict | list | tuple) else value
            for name, value in ((name, getattr(self, name)) for name in _FIELD_NAMES)
        }

    def measured(self) -> dict[str, Any]:
        """The settings that define what is measured (everything but the run length)."""
        return {k: v for k, v in self.to_dict().items() if k not in RUN_LENGTH_KEYS}

    @functools.cached_property  # a frozen case's id never changes; a sweep asks it often
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
        """Why this case cannot run, known before any process starts (bench/spec/skips.py)."""
        return skip_reason(self)


_FIELD_NAMES = tuple(f.name for f in fields(Case))


def _default(value: Any, default: Any) -> Any:
    return default if value is None else value


# The keys that apply to some cases only, and when they do not (Case.not_applicable); the one
# source of which keys a case may normalise to None (bench/spec/suite.py warns about a key set
# where it applies to no case).
_APPLIES_NOT: tuple[tuple[tuple[str, ...], Callable[[Case, WorkloadInfo], bool]], ...] = (
    (LANGUAGE_ONLY_KEYS, lambda case, info: not info.language),
    (("image_size",), lambda case, info: not info.image_pipeline),
    (LOADER_KEYS, lambda case, info: not info.image_pipeline or case.data == "synthetic"),
    (("pin_memory",), lambda case, info: case.device != "cuda"),
    (("workload_root",), lambda case, info: not info.user and not info.hub),
    (RECSYS_ONLY_KEYS, lambda case, info: case.workload != "recsys"),
    # A workload with its own objective ignores the classification loss and its knobs.
    (("loss",), lambda case, info: not info.classifier),
    (("workload_args",), lambda case, info: not case.workload_args),
    (COMPILE_ONLY_KEYS, lambda case, info: case.compile == "eager"),
    (("nesterov",), lambda case, info: case.optimizer != "sgd-momentum"),
    (("lr_warmup_steps",), lambda case, info: case.lr_schedule != "warmup-cosine"),
    (("lr_schedule_steps",), lambda case, info: case.lr_schedule == "constant"),
    (("gamma", "alpha"), lambda case, info: case.loss != "focal" or not info.classifier),
    (FINETUNE_ONLY_KEYS, lambda case, info: case.finetune is None),
    (LORA_ONLY_KEYS, lambda case, info: case.finetune != "lora"),
    (
        ("pretrain_steps",),
        lambda case, info: case.checkpoint is not None or info.user or case.finetune_task == "own",
    ),
    (("strategy",), lambda case, info: case.world_size == 1),
)
CONDITIONAL_KEYS = frozenset(key for keys, _ in _APPLIES_NOT for key in keys)
"""Every key that :meth:`Case.not_applicable` may normalise to None."""
