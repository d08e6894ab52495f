"""``bench run``: a suite's sweep of real training steps, its dry run, and resuming a run."""

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bench.cli.arguments import (
    DEVICE_HELP,
    EXIT_FAILED_CASES,
    FAILED_STATUSES,
    SET_HELP,
    check_out_dir,
    count_runs,
    exit_code,
    resolve_device,
)
from bench.errors import UserError
from bench.results.store import MANIFEST, status_summary
from bench.spec import suite as suites
from bench.spec.user_workload import check_cases


def add_commands(commands: Any) -> None:
    run = commands.add_parser("run", help="run a suite's sweep of real training steps")
    run.set_defaults(handler=cmd_run)
    run.add_argument("suite", nargs="?", help="suite file, e.g. suites/compile_vs_eager")
    run.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP
    )
    run.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help=DEVICE_HELP)
    run.add_argument("--repeats", type=int, help="processes per case (overrides the suite)")
    run.add_argument(
        "--out", type=Path, default=Path("results"), help="results directory: runs go to OUT/SUITE/"
    )
    run.add_argument("--dry-run", action="store_true", help="print the cases and run nothing")
    run.add_argument("--resume", type=Path, metavar="RUN", help="finish an interrupted run")
    run.add_argument(
        "--order",
        choices=("interleaved", "random"),
        default="interleaved",
        help="order of cases within each round of repeats",
    )
    run.add_argument("--seed", type=int, default=0, help="seed of --order random")
    _add_distributed_options(run)


def _add_distributed_options(run: argparse.ArgumentParser) -> None:
    """Where cases run: a multi-node rendezvous, or Slurm jobs (docs/DISTRIBUTED.md)."""
    from bench.run.executors import EXECUTORS

    run.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="local: this machine; slurm: each (case, repeat) a Slurm job (submitit); "
        "submitit-local: those jobs on this machine",
    )
    where = run.add_argument_group("multi-node cases (nnodes > 1), local executor")
    where.add_argument("--rdzv-endpoint", metavar="HOST:PORT", help="node 0's rendezvous")
    where.add_argument(
        "--rdzv-backend",
        choices=("c10d", "static"),
        default="c10d",
        help="c10d: the nodes order themselves; static: each given its --node-rank",
    )
    where.add_argument("--node-rank", type=int, help="this node's rank (static rendezvous)")
    where.add_argument("--rdzv-id", default="bench", help="prefix of each case's rendezvous id")
    slurm = run.add_argument_group("--executor slurm")
    slurm.add_argument("--slurm-partition", help="sbatch --partition (default: Slurm's)")
    slurm.add_argument("--slurm-account", help="sbatch --account (default: Slurm's)")
    slurm.add_argument("--slurm-gpus-per-node", type=int, help="default: nproc on cuda")
    slurm.add_argument(
        "--slurm-cpus-per-task", type=int, help="sbatch --cpus-per-task (default: Slurm's)"
    )
    slurm.add_argument("--slurm-time", type=int, metavar="MIN", help="default: timeout_s + 5 min")
    slurm.add_argument("--slurm-max-parallel", type=int, metavar="N", help="jobs queued at once")
    slurm.add_argument(
        "--slurm-setup", action="append", default=[], metavar="LINE", help="shell line (repeat)"
    )
    slurm.add_argument(
        "--slurm-param",
        action="append",
        default=[],
        metavar="KEY[=VALUE]",
        help="another sbatch option, e.g. constraint=h100 or exclusive (repeatable)",
    )
    slurm.add_argument(
        "--slurm-rdzv-port", type=int, metavar="PORT", help="default: 29500 (multi-node jobs)"
    )


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    from bench.run import sweep as runner
    from bench.run.placement import placement_and_slurm

    if args.resume is not None:
        if args.suite or args.overrides or args.repeats or args.dry_run:
            raise UserError(
                "bench run --resume RUN takes the suite and its options from RUN/run.json; "
                "give no suite, --set, --repeats or --dry-run with it"
            )
        return execute(args.resume, console, resumed=True)
    if not args.suite:
        raise UserError("bench run: give a suite (e.g. suites/compile_vs_eager) or --resume RUN")
    if args.seed != 0 and args.order != "random":
        warnings.warn("--seed has no effect without --order random", stacklevel=1)
    if args.repeats is not None and args.repeats <= 0:
        raise UserError(f"--repeats {args.repeats}: must be a positive integer")
    check_out_dir(args.out)
    suite = suites.load(args.suite)
    overrides = dict(suites.parse_override(text) for text in args.overrides)
    if args.repeats is not None:
        overrides["repeats"] = args.repeats
    device = resolve_device(args.device)
    cases = suites.expand(suite, device, overrides)
    placement, slurm = placement_and_slurm(args, cases)
    if args.dry_run:
        _print_cases(suite, cases, device, overrides, args.executor, console)
        return 0
    check_cases(cases, str(suite.path))  # the user's code imports: one child Python per spec
    options = runner.RunOptions(
        device, overrides, args.order, args.seed, args.executor, slurm, placement
    )
    run_dir = runner.create_run(args.out, suite, cases, options)
    console.print(f"run {run_dir}: {count_runs(cases)} on {device}")
    return execute(run_dir, console, resumed=False)


def execute(run_dir: Path, console: Console, resumed: bool) -> int:
    from bench.run import sweep as runner

    if not (run_dir / MANIFEST).is_file():
        raise UserError(f"--resume {run_dir}: not a run directory (it has no run.json)")
    try:
        records = runner.execute(run_dir, console)
    except KeyboardInterrupt as stop:
        console.print(
            f"interrupted: every finished record is kept in {run_dir}/records.jsonl; "
            f"continue with: bench run --resume {run_dir}"
        )
        return exit_code(stop)
    for warning in runner.unresolved_comparisons(records):
        print(f"bench: warning: {warning}", file=sys.stderr)
    statuses = [r["status"] for r in records]
    console.print(f"{'resumed ' if resumed else ''}run {run_dir}: {status_summary(records)}")
    console.print(f"report: bench report {run_dir}")
    failed = [s for s in statuses if s in FAILED_STATUSES]
    if failed:
        # Out of memory and skipped are outcomes a sweep measures; a crash or a hang is not.
        kinds = ", ".join(sorted(set(failed)))
        print(
            f"bench: {len(failed)} of {len(records)} records failed ({kinds}): see their reasons "
            f"in the report or {run_dir}/logs/",
            file=sys.stderr,
        )
        return EXIT_FAILED_CASES
    return 0


def _print_cases(
    suite: suites.Suite,
    cases: list,
    device: str,
    overrides: dict[str, Any],
    executor: str,
    console: Console,
) -> None:
    from bench.run.executors import skip_reason
    from bench.run.launcher import Job
    from bench.spec.labels import case_labels

    labels = case_labels({case.id: case.to_dict() for case in cases})
    # Settings pinned with --set are the same in every case, so the column would not show them;
    # one that applies to no case was normalised away (a warning says so): it is not shown set.
    pinned = ", ".join(
        f"{k}={v}"
        for k, v in overrides.items()
        if not isinstance(v, list) and any(getattr(case, k) is not None for case in cases)
    )
    title = f"{suite.name} on {device}: {count_runs(cases)} (dry run: nothing runs)"
    caption = f"every case: {pinned}" if pinned else None
    columns = ("#", "case id", "settings", "repeats", "will")
    rows = []
    for index, case in enumerate(cases, start=1):
        # Every rule known before running; a local run's also this machine's (its GPUs, the
        # packages installed), which a cluster's nodes may not share.
        reason = skip_reason(Job(case, 0)) if executor == "local" else case.skip_reason()
        will = f"skip: {reason}" if reason else "run"
        rows.append((str(index), case.id, labels[case.id], str(case.repeats), will))
    if len(rows) > PLAIN_TABLE_ROWS:
        _print_plain(title, caption, columns, rows)
        return
    table = Table(title=title, caption=caption)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))  # not markup: "bench[hf]"
    console.print(table)


# Above this many cases the dry run prints plain aligned columns: rich lays a table out cell by
# cell, about 0.4 ms a row on the project's CPU (3.5 s of a 9,000-case dry run's 5 s).
PLAIN_TABLE_ROWS = 1000


def _print_plain(
    title: str, caption: str | None, columns: tuple[str, ...], rows: list[tuple[str, ...]]
) -> None:
    widths = [max(len(row[i]) for row in (columns, *rows)) for i in range(len(columns))]
    lines = [title, "  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    if caption:
        lines.append(caption)
    sys.stdout.write("\n".join(lines) + "\n")
