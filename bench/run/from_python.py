"""Running cases from Python (a notebook, a script, the pytest plugin): the same isolation as
``bench run`` (a fresh process per case and repeat, from the fork server), the records returned.

Torch-free, like the rest of bench/run: the cases run in their own processes.
"""

import io
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.errors import ConfigError
from bench.results.store import read_records
from bench.spec import suite as suites
from bench.spec.case import Case
from bench.spec.hf_source import is_hf
from bench.spec.user_workload import check_cases, is_user_spec


def run_cases(
    cases: dict[str, Any] | list[dict[str, Any]] | str | Path,
    device: str = "cpu",
    out: str | Path = "results",
    name: str = "python",
    console: Console | None = None,
) -> list[dict[str, Any]]:
    """Run ``cases`` and return their records (docs/RESULTS.md), one per (case, repeat).

    ``cases``: the settings of one case (``{"workload": "model.py:build", "batch_size": 32}``,
    every suite key allowed, a user's file relative to the current directory), a list of them,
    or the path of a suite file. The run is written under ``out/<name>/`` as ``bench run``
    writes it, so that ``bench report`` reads it too. A bad setting raises
    :class:`bench.errors.UserError` before anything runs, as ``bench run`` exits 2.
    """
    from bench.run import sweep as runner

    if isinstance(cases, str | Path):
        suite = suites.load(str(cases))
        resolved = suites.expand(suite, device)
    else:
        settings = [cases] if isinstance(cases, dict) else list(cases)
        suite = suites.Suite(Path.cwd() / f"{name}.toml", name, "cases run from Python")
        resolved = [_case(values, device) for values in settings]
    check_cases(resolved, str(suite.path))
    options = runner.RunOptions(device, {})
    run_dir = runner.create_run(Path(out), suite, resolved, options)
    quiet = console or Console(file=io.StringIO())
    runner.execute(run_dir, quiet)
    return read_records(run_dir)


def _case(values: dict[str, Any], device: str) -> Case:
    values = {**values, "device": device}
    if is_user_spec(values.get("workload")) or is_hf(values.get("workload")):
        values.setdefault("workload_root", str(Path.cwd()))  # FILE.py and hf:DIR are found here
    try:
        return Case.from_dict(values)
    except ConfigError as error:
        raise error.at("run_cases") from None
