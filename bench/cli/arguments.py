"""What the commands share: the parser, exit codes, and how arguments name devices and runs."""

import argparse
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


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UserError(f"{self.prog}: {message} (see {self.prog} --help)")


def exit_code(stop: KeyboardInterrupt) -> int:
    return EXIT_TERMINATED if isinstance(stop, Terminated) else EXIT_INTERRUPTED


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


def run_dir_of(arg: str, results: Path) -> Path:
    """A run directory as given, or the latest run of a suite named by its file or name."""
    path = Path(arg)
    if (path / RECORDS).is_file():
        return path
    from bench.results.store import find_latest_runs

    if path.is_dir():  # a suite's folder of runs, e.g. results/compile_vs_eager
        runs = sorted(run.parent for run in path.glob(f"*/{RECORDS}"))
        if not runs:
            raise UserError(f"{arg}: a directory with no run in it (no */{RECORDS})")
        return runs[-1]
    name = suites.load(arg).name if (path.suffix == ".toml" or "/" in arg) else arg
    latest = [run for run in find_latest_runs(results) if run.parent.name == name]
    if not latest:
        raise UserError(f"{arg}: not a run directory, and {results}/{name}/ holds no run")
    return latest[0]


def planned_cases(
    args: argparse.Namespace, repeats_override: bool
) -> tuple[suites.Suite, list, str, dict[str, Any]]:
    if args.repeats is not None and args.repeats <= 0:
        raise UserError(f"--repeats {args.repeats}: must be a positive integer")
    suite = suites.load(args.suite)
    overrides = dict(suites.parse_override(text) for text in args.overrides)
    if repeats_override and args.repeats is not None:
        overrides["repeats"] = args.repeats
    device = resolve_device(args.device)
    cases = suites.expand(suite, device, overrides)
    return suite, cases, device, overrides
