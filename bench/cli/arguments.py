"""What the commands share: the parser, exit codes, and how arguments name devices and runs."""

import argparse
from argparse import SUPPRESS
from pathlib import Path
from typing import Any, NoReturn

from bench.errors import Terminated, UserError
from bench.results.store import RECORDS
from bench.spec import suite as suites

EXIT_FAILED_CASES = 1
EXIT_BAD_INPUT = 2
FAILED_STATUSES = ("error", "timeout")
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a process SIGTERM ended
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader of stdout went away (`| head`)


DEVICE_HELP = "where cases run; auto: cuda if a GPU is here, else cpu"
SET_HELP = "override a setting in every case (repeatable); a list value makes it an axis"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default after its help, unless it has none to show (a flag, an option
    that is unset by default) or the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        default = action.default
        nothing = default is None or default is False or default == [] or default == SUPPRESS
        if nothing or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{self.prog}: {message} (see {self.prog} --help)")


def exit_code(stop: KeyboardInterrupt) -> int:
    return EXIT_TERMINATED if isinstance(stop, Terminated) else EXIT_INTERRUPTED


def check_out_dir(out: Path, option: str = "--out") -> None:
    """Before anything runs or is written: the nearest part of ``out`` that exists must be a
    directory (the rest is created)."""
    existing = next((p for p in (out, *out.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise UserError(
            f"{option} {out}: {existing} is a file, not a directory; "
            "give a directory (it is created if missing)"
        )


def resolve_device(choice: str) -> str:
    from bench.machine.nvml import cuda_device_count

    if choice == "cpu":
        return "cpu"
    count, reason = cuda_device_count()
    if choice == "cuda" and not count:
        raise UserError(f"--device cuda: no CUDA device here ({reason}); use --device cpu")
    return "cuda" if count else "cpu"


def count_runs(cases: list) -> str:
    runs = sum(case.repeats for case in cases)
    return f"{len(cases)} cases, {runs} runs"


RUN_ARGUMENT = (
    "a run directory, its records.jsonl, a suite's folder of runs (results/SUITE), "
    "a suite file or a suite's name"
)


def run_dir_of(arg: str, results: Path) -> Path:
    """A run directory as given (or its records file), or the latest run of a suite named by its
    folder of runs, its file or its name."""
    path = Path(arg)
    if (path / RECORDS).is_file():
        return path
    if path.name == RECORDS and path.is_file():
        return path.parent
    from bench.results.store import find_latest_runs

    if path.is_dir():  # a suite's folder of runs, e.g. results/compile_vs_eager
        runs = sorted(run.parent for run in path.glob(f"*/{RECORDS}"))
        if not runs:
            raise UserError(f"{arg}: a directory with no run in it (no */{RECORDS})")
        return runs[-1]
    if path.is_file() and path.suffix != ".toml":
        raise UserError(
            f"{arg}: a file, but not a run's {RECORDS} or a suite file; give {RUN_ARGUMENT}"
        )
    if path.suffix == ".toml" or "/" in arg:
        if not (path.exists() or path.with_name(path.name + ".toml").is_file()):
            raise UserError(f"{arg}: no such file or directory; give {RUN_ARGUMENT}")
        name = suites.load(arg).name
    else:
        name = arg
    latest = [run for run in find_latest_runs(results) if run.parent.name == name]
    if not latest:
        raise UserError(f"{arg}: not a run directory, and {results}/{name}/ holds no run")
    return latest[0]


def planned_cases(
    args: argparse.Namespace, repeats_override: bool
) -> tuple[suites.Suite, list, str, dict[str, Any]]:
    if args.repeats is not None and args.repeats <= 0:
        raise UserError(f"--repeats {args.repeats}: must be a positive integer")
    check_out_dir(args.results, "--results")
    suite = suites.load(args.suite)
    overrides = dict(suites.parse_override(text) for text in args.overrides)
    if repeats_override and args.repeats is not None:
        overrides["repeats"] = args.repeats
    device = resolve_device(args.device)
    cases = suites.expand(suite, device, overrides)
    return suite, cases, device, overrides
