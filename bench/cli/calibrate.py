"""``bench calibrate``: an A/A of a suite on this machine, for the noise floor of separate runs.

The work is in :mod:`bench.gate.calibration`; this handler runs the suite (or reads runs already
made), prints the drift it found and stores it in the machine's cache.
"""

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.cli.arguments import EXIT_INTERRUPTED, count_runs, planned_cases
from bench.errors import UserError

DEFAULT_RUNS = 5


def add_commands(commands: Any) -> None:
    calibrate = commands.add_parser(
        "calibrate",
        help="A/A: run a suite several times and store this machine's run-to-run drift",
        description="Run SUITE --runs times one after the other with unchanged code (or read "
        "runs already made, --from) and store, per case and metric, how far apart its runs "
        "landed: bench compare and bench gate widen the interval of separate runs by it.",
    )
    calibrate.set_defaults(handler=cmd_calibrate)
    calibrate.add_argument("suite", nargs="?", help="suite to run (not with --from)")
    calibrate.add_argument(
        "--runs", type=int, default=DEFAULT_RUNS, help=f"sequential runs (default {DEFAULT_RUNS})"
    )
    calibrate.add_argument(
        "--from",
        dest="from_runs",
        nargs="+",
        metavar="RUN",
        help="calibrate on these run directories (of unchanged code) instead of running",
    )
    calibrate.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting in every case (repeatable), as bench run",
    )
    calibrate.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="where the cases run"
    )
    calibrate.add_argument("--repeats", type=int, help="repeats per case (gate with the same)")
    calibrate.add_argument(
        "--results", "--out", type=Path, default=Path("results"), help="results directory"
    )


def cmd_calibrate(args: argparse.Namespace, console: Console) -> int:
    from bench.gate import calibration
    from bench.results.store import ENV, RECORDS, read_json, read_records

    if args.from_runs:
        if args.suite or args.overrides or args.repeats is not None:
            raise UserError("bench calibrate --from RUN...: give no SUITE, --set or --repeats")
        run_dirs = [Path(arg) for arg in args.from_runs]
        for run in run_dirs:
            if not (run / RECORDS).is_file():
                raise UserError(f"--from {run}: not a run directory (it has no {RECORDS})")
    else:
        if not args.suite:
            raise UserError("bench calibrate: give a SUITE to run, or --from RUN RUN RUN")
        if args.runs < calibration.MIN_RUNS:
            raise UserError(f"--runs {args.runs}: use at least {calibration.MIN_RUNS}")
        run_dirs = _run_suite(args, console)
        if run_dirs is None:
            return EXIT_INTERRUPTED
    if len(run_dirs) < calibration.MIN_RUNS:
        raise UserError(
            f"bench calibrate: at least {calibration.MIN_RUNS} runs, got {len(run_dirs)}"
        )
    machines = {calibration.machine_key(read_json(run / ENV)) for run in run_dirs}
    if len(machines) > 1:
        raise UserError(f"bench calibrate: the runs come from {len(machines)} machines")
    runs = [read_records(run / RECORDS) for run in run_dirs]
    entries = calibration.measure_drift(runs)
    env = read_json(run_dirs[-1] / ENV)
    suites = sorted({str(r.get("suite")) for records in runs for r in records})
    path = calibration.save(env, entries, ", ".join(suites))
    _print(entries, console, len(run_dirs))
    console.print(f"calibration of {calibration.machine_key(env)} saved: {path}")
    return 0


def _run_suite(args: argparse.Namespace, console: Console) -> list[Path] | None:
    from bench.cli.run import execute
    from bench.run import sweep as runner

    suite, cases, device, overrides = planned_cases(args, repeats_override=True)
    run_dirs = []
    for index in range(args.runs):
        options = runner.RunOptions(device, overrides, "interleaved", 0)
        run_dir = runner.create_run(args.results, suite, cases, options)
        console.print(f"calibrate: run {index + 1}/{args.runs} {run_dir}: {count_runs(cases)}")
        if execute(run_dir, console, resumed=False) == EXIT_INTERRUPTED:
            return None
        run_dirs.append(run_dir)
    return run_dirs


def _print(entries: dict[str, dict[str, dict[str, Any]]], console: Console, runs: int) -> None:
    table = Table(
        title=f"run-to-run drift over {runs} sequential runs of unchanged code",
        caption="drift: 99% prediction bound of the ratio between two new runs; separate runs "
        "are compared with their interval widened by it",
    )
    for column in ("case", "metric", "runs", "repeats", "largest ratio seen", "drift"):
        table.add_column(column)
    for case_id, metrics in entries.items():
        for name, e in metrics.items():
            table.add_row(
                case_id,
                name,
                str(e["runs"]),
                str(e["repeats"]),
                f"{e['observed']:+.1%}",
                f"±{e['drift']:.1%}",
            )
    console.print(table)
