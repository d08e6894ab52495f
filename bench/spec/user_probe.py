"""The child side of :func:`bench.spec.user_workload.check_cases`: run as
``python -m bench.spec.user_probe REQUEST`` (JSON), it imports the user's module, finds the
function and checks that it accepts the workload's arguments. Exit 0 when it can be called;
else exit 1 with the problem, in one line, as the last line of stdout.

Stdlib only on bench's side: the user's module may import torch, this module does not.
"""

import hashlib
import importlib
import importlib.util
import inspect
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any


def import_target(target: str, is_file: bool) -> ModuleType:
    """The user's module: a file (its directory first on ``sys.path``, so that its sibling
    modules import) or a dotted name from the current directory or ``PYTHONPATH``."""
    if not is_file:
        if "" not in sys.path and str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))
        return importlib.import_module(target)
    path = Path(target)
    # One module per file, named for its path: imported once per process however often asked.
    name = f"bench_user_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
    if name in sys.modules:
        return sys.modules[name]
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def signature_problem(function: Any, keys: list[str]) -> str | None:
    """A ``workload_args`` key the function's signature does not accept, or None. The function
    is called as ``function(context, **workload_args)``."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return None  # a builtin without a signature: it will say so when called
    parameters = list(signature.parameters.values())
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if not positional and not any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return "the function takes no argument; it is called as FUNCTION(context, **workload_args)"
    named = {p.name for p in parameters[1:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    for key in keys:
        if key not in named:
            allowed = ", ".join(sorted(named)) or "none"
            return (
                f"workload_args.{key}: the function accepts no such argument (it takes: {allowed})"
            )
    return None


def check(request: dict[str, Any]) -> str | None:
    target, function_name = request["target"], request["function"]
    try:
        module = import_target(target, request["is_file"])
    except BaseException as error:  # noqa: BLE001 - the user's import error, in one line
        first = (str(error).splitlines() or [""])[0]
        return f"cannot import {target}: {type(error).__name__}: {first}"
    if not hasattr(module, function_name):
        public = sorted(
            name
            for name, value in vars(module).items()
            if callable(value) and not name.startswith("_") and not inspect.isclass(value)
        )
        return f"{target} has no {function_name!r} (its functions: {', '.join(public) or 'none'})"
    function = getattr(module, function_name)
    if not callable(function):
        return f"{target}:{function_name} is a {type(function).__name__}, not a function"
    return signature_problem(function, request["keys"])


def main() -> None:
    problem = check(json.loads(sys.argv[1]))
    sys.stdout.flush()
    if problem:
        print(problem.replace("\n", " "))
        sys.exit(1)


if __name__ == "__main__":
    main()
