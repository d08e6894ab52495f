"""The values each setting of a case may take, the defaults the Case fills in, and which keys
apply to which workloads. Torch-free.

A choice is declared once, as a ``Literal`` type (for the Case's fields and type checkers); the
tuple of allowed values that validation and ``bench list`` show is derived from it.
"""

from dataclasses import dataclass
from typing import Literal, get_args

Precision = Literal["fp32", "tf32", "bf16", "amp-bf16", "amp-fp16"]
CompileMode = Literal[
    "eager", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"
]
Optimizer = Literal[
    "sgd", "sgd-momentum", "adam", "adamw", "adagrad", "rmsprop", "adafactor", "muon", "lbfgs"
]
Impl = Literal["for-loop", "foreach", "fused"]
Loss = Literal["cross-entropy", "mse", "focal"]
Pooling = Literal["sum", "mean"]
LRSchedule = Literal["constant", "cosine", "warmup-cosine"]
CompileScope = Literal["model", "step"]
CompileCache = Literal["warm", "cold"]
Device = Literal["cpu", "cuda"]
Strategy = Literal["ddp", "fsdp"]
FinetuneStrategy = Literal["full", "frozen", "lora"]

PRECISIONS: tuple[str, ...] = get_args(Precision)
COMPILE_MODES: tuple[str, ...] = get_args(CompileMode)
OPTIMIZERS: tuple[str, ...] = get_args(Optimizer)
IMPLS: tuple[str, ...] = get_args(Impl)
LOSSES: tuple[str, ...] = get_args(Loss)
POOLINGS: tuple[str, ...] = get_args(Pooling)
LR_SCHEDULES: tuple[str, ...] = get_args(LRSchedule)
COMPILE_SCOPES: tuple[str, ...] = get_args(CompileScope)
COMPILE_CACHES: tuple[str, ...] = get_args(CompileCache)
DEVICES: tuple[str, ...] = get_args(Device)
STRATEGIES: tuple[str, ...] = get_args(Strategy)
FINETUNE_STRATEGIES: tuple[str, ...] = get_args(FinetuneStrategy)

# Modes whose torch preset turns on CUDA graphs (torch._inductor.list_mode_options).
CUDAGRAPH_MODES = ("reduce-overhead", "max-autotune")
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
    "profile_steps",
    "memory_snapshot",
    # Not a run length, but not measured either: the directory a user's workload file is
    # resolved from (the suite's), which differs between a checkout and bench ab's worktree.
    "workload_root",
)
# Keys that only some workloads read; on the others they are normalised to None so that they
# neither change the case id nor pretend to have an effect.
LANGUAGE_ONLY_KEYS = ("seq_len", "eval_batches", "tie_embeddings", "activation_checkpointing")
COMPILE_ONLY_KEYS = ("compile_scope", "fullgraph", "dynamic", "compile_cache")
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
class PrecisionDtypes:
    """What a precision trains in, as torch's dtype names (torch-free: the worker's policies
    build torch dtypes from these, bench estimate counts bytes from them)."""

    param: str
    """Dtype of the parameters and of floating inputs."""
    autocast: str | None
    """Dtype of ``torch.autocast`` around forward and loss; None runs without autocast."""


PRECISION_DTYPES: dict[str, PrecisionDtypes] = {
    "fp32": PrecisionDtypes("float32", None),
    "tf32": PrecisionDtypes("float32", None),
    "bf16": PrecisionDtypes("bfloat16", None),
    "amp-bf16": PrecisionDtypes("float32", "bfloat16"),
    "amp-fp16": PrecisionDtypes("float32", "float16"),
}
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def param_bytes(precision: str) -> int:
    """Bytes of one parameter (and of its gradient) under ``precision``."""
    return DTYPE_BYTES[PRECISION_DTYPES[precision].param]
