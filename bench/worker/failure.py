"""How a case's process reports: a failure as a status and the tail of its error, and the
result file, written whole. Shared by the worker and the distributed agent and its ranks."""

import math
import traceback
from pathlib import Path
from typing import Any

import torch

from bench import atomic

ERROR_TAIL_LINES = 20


def classify_failure(error: BaseException) -> str:
    """``oom`` for an allocation failure on any device, else ``error``."""
    if isinstance(error, torch.OutOfMemoryError | MemoryError):
        return "oom"
    message = str(error)
    if isinstance(error, RuntimeError) and (
        "can't allocate memory" in message or "out of memory" in message
    ):
        return "oom"
    return "error"


def error_tail(error: BaseException) -> str:
    lines = "".join(traceback.format_exception(error)).strip().splitlines()
    return "\n".join(lines[-ERROR_TAIL_LINES:]).strip()


def finite_or_null(value: Any) -> Any:
    """NaN and infinities (a diverged loss) as null: JSON has no such numbers, and strict readers
    (jq, browsers) reject the bare ``NaN`` Python would write. The record's flags say why."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite_or_null(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_null(item) for item in value]
    return value


def write_result(path: Path, result: dict[str, Any]) -> None:
    """The launcher reads the file once the process has exited: written whole, strict JSON."""
    atomic.write_json(path, finite_or_null(result), allow_nan=False)
