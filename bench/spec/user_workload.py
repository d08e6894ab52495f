"""A workload from the user's own code: ``workload = "FILE.py:FUNCTION"`` or
``"package.module:FUNCTION"`` (docs/WORKLOADS.md).

Torch-free: this module parses the spec, finds the file and describes the workload for
validation (:data:`USER_INFO`); the function itself is imported and called only in a case's
process (bench/workloads/user.py). Whether the module imports, has the function and accepts the
``workload_args`` is checked before any case runs, in a child process (:func:`check_cases`,
bench/spec/user_probe.py), because the user's module imports torch and the ``bench`` process
never does.
"""

import hashlib
import importlib.util
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.errors import UserError
from bench.spec.hf_source import is_hf, locate

if TYPE_CHECKING:
    from bench.spec.case import Case

# Prefixes of model registries reached by name (issue 13, part 2), never a user's module.
REGISTRIES = ("torchvision", "timm", "hf")


@dataclass(frozen=True)
class UserSpec:
    """A parsed ``TARGET:FUNCTION``: a Python file (relative to the suite's directory) or a
    dotted module name importable from the current directory or ``PYTHONPATH``."""

    spec: str
    target: str
    function: str

    @property
    def is_file(self) -> bool:
        return self.target.endswith(".py")

    def path(self, root: str | None) -> Path:
        """The file a file spec names, resolved against ``root`` (the suite's directory)."""
        path = Path(self.target).expanduser()
        if not path.is_absolute() and root is not None:
            path = Path(root) / path
        return path.resolve()


def is_user_spec(workload: object) -> bool:
    """``FILE.py:FUNCTION`` or ``module:FUNCTION``, as opposed to a built-in family's name."""
    if not isinstance(workload, str) or ":" not in workload:
        return False
    return workload.split(":", 1)[0] not in REGISTRIES


def parse(workload: str) -> UserSpec:
    target, _, function = workload.rpartition(":")
    if not target or not function.isidentifier():
        raise UserError(
            f"workload = {workload!r}: expected 'FILE.py:FUNCTION' or 'package.module:FUNCTION'"
        )
    if not target.endswith(".py") and not all(part.isidentifier() for part in target.split(".")):
        raise UserError(
            f"workload = {workload!r}: {target!r} is neither a .py file nor a dotted module name"
        )
    return UserSpec(workload, target, function)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_cases(cases: list["Case"], where: str) -> None:
    """Every ``torchvision:NAME`` of ``cases`` is one of torchvision's classifiers and takes the
    case's ``image_size``, every ``hf:NAME`` without files here is a model type transformers
    builds from a config alone, and every
    user workload imports, has its function, and that function accepts the
    case's ``workload_args``: checked once per distinct (spec, root, keys) in a child Python
    (the user's module imports torch), before anything is written. A problem is a
    :class:`UserError` of one line, prefixed with ``where`` (the suite file)."""
    # Each torchvision model with the smallest image side a case gives it.
    torchvision: dict[str, int] = {}
    for case in cases:
        if case.workload.startswith("torchvision:"):
            name, side = case.workload.split(":", 1)[1], int(case.image_size or 0)
            torchvision[name] = min(side, torchvision.get(name, side))
    if torchvision and (problem := _ask(torchvision, "bench.workloads.zoo")):
        raise UserError(f"{where}: {problem}")
    # hf: names with no files here: model types transformers must build from a config alone.
    # Without transformers their cases are skipped records that name the install instead.
    from_config: dict[str, list[str]] = {}
    for case in cases:
        if is_hf(case.workload):
            source = locate(case.workload, case.workload_root)
            if source.kind == "config":
                from_config[case.workload] = list(source.looked)
    if from_config and importlib.util.find_spec("transformers") is not None:
        if problem := _ask(from_config, "bench.workloads.hf"):
            raise UserError(f"{where}: {problem}")
    seen: set[tuple[str, str | None, tuple[str, ...]]] = set()
    for case in cases:
        if not is_user_spec(case.workload):
            continue
        keys = tuple(sorted(case.workload_args or {}))
        key = (case.workload, case.workload_root, keys)
        if key in seen:
            continue
        seen.add(key)
        spec = parse(case.workload)
        path = spec.path(case.workload_root)
        if spec.is_file and not path.is_file():
            raise UserError(f"{where}: workload = {case.workload!r}: no such file {path}")
        problem = probe(spec, case.workload_root, keys)
        if problem:
            raise UserError(f"{where}: workload = {case.workload!r}: {problem}")


def probe(spec: UserSpec, root: str | None, keys: tuple[str, ...]) -> str | None:
    """Import the spec's module in a child Python (bench/spec/user_probe.py) and check its
    function; the problem in one line, or None."""
    request = {
        "target": str(spec.path(root)) if spec.is_file else spec.target,
        "is_file": spec.is_file,
        "function": spec.function,
        "keys": list(keys),
    }
    return _ask(request, "bench.spec.user_probe")


def _ask(request: Any, module: str) -> str | None:
    """Run ``python -m MODULE REQUEST`` (JSON); its problem in one line, or None."""
    completed = subprocess.run(
        [sys.executable, "-m", module, json.dumps(request)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if completed.returncode == 0:
        return None
    lines = [line for line in completed.stdout.splitlines() if line.strip()]
    if lines:
        return lines[-1]
    tail = completed.stderr.strip().splitlines()
    return f"checking it failed: {tail[-1] if tail else f'exit {completed.returncode}'}"


def args_error(workload_args: Any) -> str | None:
    """Why ``workload_args`` is not a table of TOML values keyed by identifiers, or None."""
    if not isinstance(workload_args, dict):
        return "must be a table ([base.workload_args])"
    for key in workload_args:
        if not isinstance(key, str) or not key.isidentifier():
            return f"{key!r} is not a Python identifier (it is passed as a keyword)"
    return None
