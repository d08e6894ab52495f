"""One point of a sweep: the frozen, validated configuration of a case.

A :class:`Case` holds two kinds of settings. The *measured* settings (workload, size, batch,
precision, compile mode, optimizer, ...) define what is measured; their hash is the case id, which
matches a case across runs and machines. The *run-length* settings (warm-up, step and time bounds,
confidence target, repeats, timeout) say how long to measure; they are recorded but are not part
of the id, so a longer run of the same case still compares with a shorter one.

Torch-free: validation runs before any process imports torch.
"""

import dataclasses
import hashlib
import json
from dataclasses import dataclass, fields
from typing import Any, Literal

from bench.errors import ConfigError
from bench.workloads.catalog import GPTSize, size_of, workload_info

PRECISIONS = ("fp32", "bf16", "amp-bf16")
COMPILE_MODES = (
    "eager",
    "default",
    "reduce-overhead",
    "max-autotune",
    "max-autotune-no-cudagraphs",
)
# Modes whose torch preset turns on CUDA graphs (torch._inductor.list_mode_options).
CUDAGRAPH_MODES = ("reduce-overhead", "max-autotune")
OPTIMIZERS = ("sgd", "adam", "adamw")
DEVICES = ("cpu", "cuda")
# Learning rates used when a suite names none: torch's own default for Adam/AdamW; 0.01 for SGD,
# the value the tutorial trains its MLP with.
DEFAULT_LR = {"sgd": 0.01, "adam": 1e-3, "adamw": 1e-3}

RUN_LENGTH_KEYS = (
    "warmup_steps",
    "min_steps",
    "max_steps",
    "min_time_s",
    "max_time_s",
    "ci_target",
    "repeats",
    "timeout_s",
)
# Keys that only some workloads read; on the others they are normalised to None so that they
# neither change the case id nor pretend to have an effect.
LANGUAGE_ONLY_KEYS = ("seq_len", "eval_batches", "tie_embeddings")


@dataclass(frozen=True)
class Case:
    """A fully resolved case. Construct with :meth:`from_dict` (validates and fills defaults)."""

    workload: str = "mlp"
    """Workload family: ``mlp`` or ``gpt`` (``bench list`` shows them)."""
    model_size: str | None = None
    """A named size of the workload; None means the workload's default size."""
    batch_size: int | None = None
    """Samples (sequences for ``gpt``) per step; None means the workload's default."""
    seq_len: int | None = None
    """Tokens per sequence (``gpt`` only); None means the size's default context length."""
    tie_embeddings: bool | None = None
    """Share the token embedding with the output head (``gpt`` only; default True)."""
    data: str = "auto"
    """Data source; allowed values depend on the workload (``bench list``)."""
    data_path: str | None = None
    """MNIST root directory (``mlp``) or the text file for ``data = "text"`` (``gpt``)."""
    precision: Literal["fp32", "bf16", "amp-bf16"] = "fp32"
    """fp32; bf16 (parameters and activations in bf16); amp-bf16 (autocast to bf16)."""
    compile: str = "eager"
    """``eager`` or a ``torch.compile`` mode string, exactly as torch spells it."""
    optimizer: Literal["sgd", "adam", "adamw"] = "adamw"
    """Optimizer (torch.optim)."""
    lr: float | None = None
    """Learning rate; None means the optimizer's default in DEFAULT_LR."""
    seed: int = 0
    """Seed for weights, data order and synthetic data."""
    threads: int | None = None
    """CPU threads for torch (``torch.set_num_threads``); None means the machine's cores."""
    eval_batches: int | None = None
    """Held-out batches evaluated at the end (``gpt`` only; ``mlp`` evaluates its whole split)."""
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

    def __post_init__(self) -> None:
        info = workload_info(self.workload)
        _choice("precision", self.precision, PRECISIONS)
        _choice("compile", self.compile, COMPILE_MODES)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("device", self.device, DEVICES)
        _choice("data", self.data, info.data, f"allowed for {self.workload}")
        if self.model_size is not None:
            size_of(self.workload, self.model_size)
        for key in ("batch_size", "seq_len", "threads", "eval_batches"):
            _number(key, getattr(self, key), integer=True, bound="positive", optional=True)
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
        if self.data == "text" and self.data_path is None:
            raise ConfigError("data", self.data, "needs data_path (the text file to train on)")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Case":
        """Validate raw settings (from TOML or ``--set``) and fill every default explicitly."""
        known = {f.name for f in fields(cls)}
        for key in values:
            if key not in known:
                raise ConfigError(
                    key, values[key], f"unknown key; allowed: {', '.join(sorted(known))}"
                )
        case = cls(**values)
        info = workload_info(case.workload)
        resolved: dict[str, Any] = {
            "model_size": case.model_size or info.default_size,
            "batch_size": case.batch_size or info.default_batch_size,
            "lr": case.lr if case.lr is not None else DEFAULT_LR[case.optimizer],
        }
        if info.language:
            shape = size_of(case.workload, resolved["model_size"])
            assert isinstance(shape, GPTSize)
            resolved["seq_len"] = case.seq_len or shape.seq_len
            resolved["eval_batches"] = case.eval_batches or 20
            resolved["tie_embeddings"] = (
                True if case.tie_embeddings is None else case.tie_embeddings
            )
        else:
            resolved.update({key: None for key in LANGUAGE_ONLY_KEYS})
        return dataclasses.replace(case, **resolved)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def measured(self) -> dict[str, Any]:
        """The settings that define what is measured (everything but the run length)."""
        return {k: v for k, v in self.to_dict().items() if k not in RUN_LENGTH_KEYS}

    @property
    def id(self) -> str:
        """Stable id: a hash of the measured settings, equal across runs and machines."""
        blob = json.dumps(self.measured(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def skip_reason(self) -> str | None:
        """Why this case cannot run on its device, known before any process starts."""
        if self.device == "cpu" and self.compile in CUDAGRAPH_MODES:
            return (
                f"compile mode {self.compile!r} uses CUDA graphs, which need a CUDA device "
                "(on CPU: 'max-autotune-no-cudagraphs')"
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
    if bound == "positive" and value <= 0:  # type: ignore[operator]
        raise ConfigError(key, value, f"must be a positive {kind.split()[1]}")
    if bound == "non-negative" and value < 0:  # type: ignore[operator]
        raise ConfigError(key, value, f"must be {kind} >= 0")


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
