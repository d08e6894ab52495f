"""The ``bench`` command: run, report, list, env.

Bad input of any kind is one line on stderr and exit code 2, with nothing written to disk.
"""

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console
from rich.table import Table

from bench import suite as suites
from bench.config import COMPILE_MODES, OPTIMIZERS, PRECISIONS
from bench.errors import UserError
from bench.workloads.catalog import WORKLOADS, num_params

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UserError(f"{self.prog}: {message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bench", description="Benchmark PyTorch 2.x training and fine-tuning.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = commands.add_parser("run", help="run a suite's sweep of real training steps")
    run.add_argument("suite", nargs="?", help="suite file, e.g. suites/compile_vs_eager")
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting in every case (repeatable); a list value makes it an axis",
    )
    run.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    run.add_argument("--repeats", type=int, help="processes per case (overrides the suite)")
    run.add_argument("--out", type=Path, default=Path("results"), help="results directory")
    run.add_argument("--dry-run", action="store_true", help="print the cases and run nothing")
    run.add_argument("--resume", type=Path, metavar="RUN", help="finish an interrupted run")
    run.add_argument(
        "--order",
        choices=("interleaved", "random"),
        default="interleaved",
        help="order of cases within each round of repeats",
    )
    run.add_argument("--seed", type=int, default=0, help="seed of --order random")

    report = commands.add_parser("report", help="tables and a Markdown report of runs")
    report.add_argument("runs", nargs="*", help="run directories or suites (default: latest runs)")
    report.add_argument("--results", type=Path, default=Path("results"))
    report.add_argument("--out", type=Path, help="report directory (default: RESULTS/report)")

    listing = commands.add_parser("list", help="suites, workloads, optimizers, precisions, modes")
    listing.add_argument("--json", action="store_true")
    listing.add_argument("--suites", type=Path, default=Path("suites"))

    env = commands.add_parser("env", help="the machine and software as a run records them")
    env.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    warnings.showwarning = _show_warning
    # Not a terminal (a pipe, a CI log): no width to fit, so tables are not squeezed to 80 columns.
    console = Console(width=None if sys.stdout.isatty() else 200)
    try:
        args = build_parser().parse_args(argv)
        handler = {"run": cmd_run, "report": cmd_report, "list": cmd_list, "env": cmd_env}
        return handler[args.command](args, console)
    except UserError as error:
        message = " ".join(str(error).split())  # one line, whatever the message held
        print(f"bench: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"bench: warning: {message}", file=sys.stderr)


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    from bench import runner

    if args.resume is not None:
        if args.suite or args.overrides or args.repeats or args.dry_run:
            raise UserError(
                "bench run --resume RUN takes the suite and its options from RUN/run.json; "
                "give no suite, --set, --repeats or --dry-run with it"
            )
        return _execute(args.resume, console, resumed=True)
    if not args.suite:
        raise UserError("bench run: give a suite (e.g. suites/compile_vs_eager) or --resume RUN")
    if args.repeats is not None and args.repeats <= 0:
        raise UserError(f"--repeats {args.repeats}: must be a positive integer")
    suite = suites.load(args.suite)
    overrides = dict(suites.parse_override(text) for text in args.overrides)
    if args.repeats is not None:
        overrides["repeats"] = args.repeats
    device = _resolve_device(args.device)
    cases = suites.expand(suite, device, overrides)
    if args.dry_run:
        _print_cases(suite, cases, device, console)
        return 0
    options = runner.RunOptions(device, overrides, args.order, args.seed)
    run_dir = runner.create_run(args.out, suite, cases, options)
    console.print(f"run {run_dir}: {_count(cases)} on {device}")
    return _execute(run_dir, console, resumed=False)


def _execute(run_dir: Path, console: Console, resumed: bool) -> int:
    from bench import runner

    if not (run_dir / "run.json").is_file():
        raise UserError(f"--resume {run_dir}: not a run directory (it has no run.json)")
    try:
        records = runner.execute(run_dir, console)
    except KeyboardInterrupt:
        console.print(
            f"interrupted: every finished record is kept in {run_dir}/records.jsonl; "
            f"continue with: bench run --resume {run_dir}"
        )
        return EXIT_INTERRUPTED
    for warning in runner.unresolved_comparisons(records):
        print(f"bench: warning: {warning}", file=sys.stderr)
    statuses = [r["status"] for r in records]
    summary = ", ".join(f"{statuses.count(s)} {s}" for s in sorted(set(statuses)))
    console.print(f"{'resumed ' if resumed else ''}run {run_dir}: {summary}")
    console.print(f"report: bench report {run_dir}")
    return 0


def _resolve_device(choice: str) -> str:
    from bench.nvml import cuda_device_count

    if choice == "cpu":
        return "cpu"
    count, reason = cuda_device_count()
    if choice == "cuda" and not count:
        raise UserError(f"--device cuda: no CUDA device here ({reason}); use --device cpu")
    return "cuda" if count else "cpu"


def _count(cases: list) -> str:
    runs = sum(case.repeats for case in cases)
    return f"{len(cases)} cases, {runs} runs"


def _print_cases(suite: suites.Suite, cases: list, device: str, console: Console) -> None:
    from bench.runner import case_labels

    labels = case_labels(cases)
    table = Table(title=f"{suite.name} on {device}: {_count(cases)} (dry run: nothing runs)")
    for column in ("#", "case id", "settings", "repeats", "will"):
        table.add_column(column)
    for index, case in enumerate(cases, start=1):
        reason = case.skip_reason()
        will = f"skip: {reason}" if reason else "run"
        table.add_row(str(index), case.id, labels[case.id], str(case.repeats), will)
    console.print(table)


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    from bench.report.report import build_report
    from bench.store import find_latest_runs

    run_dirs = [_run_dir_of(arg, args.results) for arg in args.runs]
    if not run_dirs:
        run_dirs = find_latest_runs(args.results)
    if not run_dirs:
        raise UserError(
            f"{args.results}: no runs to report; "
            "run a suite first: bench run suites/compile_vs_eager"
        )
    out = args.out or args.results / "report"
    path = build_report(run_dirs, out, console)
    console.print(f"report written: {path}")
    return 0


def _run_dir_of(arg: str, results: Path) -> Path:
    """A run directory as given, or the latest run of a suite named by its file or name."""
    path = Path(arg)
    if (path / "records.jsonl").is_file():
        return path
    from bench.store import find_latest_runs

    name = suites.load(arg).name if (path.suffix == ".toml" or "/" in arg) else arg
    latest = [run for run in find_latest_runs(results) if run.parent.name == name]
    if not latest:
        raise UserError(f"{arg}: not a run directory, and {results}/{name}/ holds no run")
    return latest[0]


def cmd_list(args: argparse.Namespace, console: Console) -> int:
    listing = catalog_listing(args.suites)
    if args.json:
        print(json.dumps(listing, indent=2))
        return 0
    table = Table(title="workloads")
    for column in ("workload", "size", "parameters", "default", "data"):
        table.add_column(column)
    for workload in listing["workloads"]:
        for size in workload["sizes"]:
            default = "default" if size["name"] == workload["default_size"] else ""
            data = ", ".join(workload["data"])
            table.add_row(workload["name"], size["name"], f"{size['num_params']:,}", default, data)
    console.print(table)
    for key in ("optimizers", "precisions", "compile_modes"):
        console.print(f"{key.replace('_', ' ')}: {', '.join(listing[key])}")
    suites_table = Table(title=f"suites in {args.suites}")
    for column in ("suite", "file", "description"):
        suites_table.add_column(column)
    for entry in listing["suites"]:
        suites_table.add_row(entry["name"], entry["path"], entry["description"])
    console.print(suites_table)
    return 0


def catalog_listing(suites_dir: Path) -> dict[str, Any]:
    workloads = [
        {
            "name": info.name,
            "description": info.description,
            "default_size": info.default_size,
            "default_batch_size": info.default_batch_size,
            "data": list(info.data),
            "sizes": [
                {"name": size, "num_params": num_params(info.name, size)} for size in info.sizes
            ],
        }
        for info in WORKLOADS.values()
    ]
    found = []
    for path in sorted(suites_dir.glob("*.toml")):
        try:
            suite = suites.load(str(path))
            found.append({"name": suite.name, "path": str(path), "description": suite.description})
        except UserError as error:
            found.append({"name": path.stem, "path": str(path), "description": f"invalid: {error}"})
    return {
        "workloads": workloads,
        "optimizers": list(OPTIMIZERS),
        "precisions": list(PRECISIONS),
        "compile_modes": list(COMPILE_MODES),
        "suites": found,
    }


def cmd_env(args: argparse.Namespace, console: Console) -> int:
    from bench.env import collect
    from bench.runner import PROJECT_ROOT

    info = collect(PROJECT_ROOT)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    table = Table(title="environment", show_header=False)
    for key, value in info.items():
        text = value if isinstance(value, str) else json.dumps(value)
        table.add_row(key, text)
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
