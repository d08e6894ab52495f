"""The ``bench`` command: run, report, list, env; compare, baseline, gate, ab, export.

Bad input of any kind is one line on stderr and exit code 2, with nothing written to disk.
"""

import argparse
import json
import shutil
import signal
import sys
import warnings
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console
from rich.table import Table

from bench.errors import Terminated, UserError
from bench.results.store import MANIFEST, RECORDS, status_summary
from bench.spec import suite as suites
from bench.spec.case import COMPILE_MODES, FINETUNE_STRATEGIES, OPTIMIZERS, PRECISIONS
from bench.spec.catalog import WORKLOADS, num_params

EXIT_FAILED_CASES = 1
EXIT_BAD_INPUT = 2
FAILED_STATUSES = ("error", "timeout")
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a process SIGTERM ended


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
    _add_distributed_options(run)

    report = commands.add_parser(
        "report", help="tables, figures, FAQ: report.md and a self-contained report.html"
    )
    report.add_argument("runs", nargs="*", help="run directories or suites (default: latest runs)")
    report.add_argument(
        "--results", type=Path, default=Path("results"), help="where runs are (default: results)"
    )
    report.add_argument("--out", type=Path, help="report directory (default: RESULTS/report)")

    estimate = commands.add_parser(
        "estimate", help="FLOPs, time, energy, cost and memory to train N parameters on D tokens"
    )
    estimate.add_argument("--params", required=True, help="parameters N: 7B, 350M, 1e9")
    estimate.add_argument("--tokens", help="training tokens D (default: 20 per parameter)")
    estimate.add_argument("--seq-len", help="sequence length T (with --layers, --d-model)")
    estimate.add_argument("--layers", help="transformer layers L")
    estimate.add_argument("--d-model", help="model width d (heads x head size)")
    estimate.add_argument("--micro-batch", help="sequences per GPU step, for activations (1)")
    estimate.add_argument("--mfu", help="model FLOPs utilisation, 0-1 (default: measured here)")
    estimate.add_argument("--gpu", help="GPU name for the peak FLOP/s (default: measured device)")
    estimate.add_argument("--dtype", choices=("bf16", "fp16", "tf32", "fp32"), default="bf16")
    estimate.add_argument("--gpus", help="number of GPUs (default 1)")
    estimate.add_argument("--watts", help="power per GPU, W (default: energy measured here)")
    estimate.add_argument("--pue", help="power usage effectiveness, >= 1 (default 1)")
    estimate.add_argument("--price-per-gpu-hour", help="price of one GPU-hour, for the cost")
    estimate.add_argument("--results", type=Path, default=Path("results"))
    estimate.add_argument("--json", action="store_true", help="print the figures as JSON")

    listing = commands.add_parser("list", help="suites, workloads, optimizers, precisions, modes")
    listing.add_argument("--json", action="store_true")
    listing.add_argument("--suites", type=Path, default=Path("suites"))

    env = commands.add_parser("env", help="the machine and software as a run records them")
    env.add_argument("--json", action="store_true")
    _add_gating_commands(commands)
    return parser


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
    where.add_argument("--rdzv-backend", choices=("c10d", "static"), default="c10d")
    where.add_argument("--node-rank", type=int, help="this node's rank (static rendezvous)")
    where.add_argument("--rdzv-id", default="bench", help="prefix of each case's rendezvous id")
    slurm = run.add_argument_group("--executor slurm")
    slurm.add_argument("--slurm-partition")
    slurm.add_argument("--slurm-account")
    slurm.add_argument("--slurm-gpus-per-node", type=int, help="default: nproc on cuda")
    slurm.add_argument("--slurm-cpus-per-task", type=int)
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


def _where(args: argparse.Namespace, cases: list) -> tuple[Any, Any]:
    """The placement and Slurm options of ``bench run``, checked against the executor."""
    from bench.run.executors import DEFAULT_RDZV_PORT, SlurmOptions
    from bench.run.torchrun import Placement

    rdzv_given = [
        name
        for name, value, default in (
            ("--rdzv-endpoint", args.rdzv_endpoint, None),
            ("--rdzv-backend", args.rdzv_backend, "c10d"),
            ("--node-rank", args.node_rank, None),
            ("--rdzv-id", args.rdzv_id, "bench"),
        )
        if value != default
    ]
    slurm_given = [
        name
        for name, value in vars(args).items()
        if name.startswith("slurm_") and value not in (None, [])
    ]
    # submitit's local executor takes the job's size and time, not the cluster's own options.
    cluster_only = ("slurm_partition", "slurm_account", "slurm_setup", "slurm_param")
    misplaced = [
        name
        for name in slurm_given
        if args.executor == "local" or (args.executor != "slurm" and name in cluster_only)
    ]
    if misplaced:
        options = ", ".join("--" + name.replace("_", "-") for name in misplaced)
        only_slurm = all(n in cluster_only for n in misplaced)
        allowed = "slurm" if only_slurm else "slurm or submitit-local"
        raise UserError(f"{options}: only with --executor {allowed}")
    if args.slurm_rdzv_port is not None and not 1 <= args.slurm_rdzv_port <= 65535:
        raise UserError(f"--slurm-rdzv-port {args.slurm_rdzv_port}: a port is 1 to 65535")
    if args.node_rank is not None and args.rdzv_backend != "static":
        raise UserError(
            f"--node-rank {args.node_rank}: only with --rdzv-backend static (c10d, the default, "
            "orders the nodes itself)"
        )
    # Malformed values first: an error, not a warning and then an error.
    placement = Placement(args.rdzv_endpoint, args.rdzv_backend, args.node_rank, args.rdzv_id)
    if args.executor != "local" and rdzv_given:
        raise UserError(
            f"{', '.join(rdzv_given)}: with --executor {args.executor}, each job finds its "
            "nodes itself (submitit's job environment); give these with --executor local only"
        )
    if rdzv_given and max(case.nnodes for case in cases) == 1:
        warnings.warn(
            f"{', '.join(rdzv_given)} has no effect: no case has nnodes > 1", stacklevel=1
        )
    for name in ("slurm_gpus_per_node", "slurm_cpus_per_task", "slurm_time", "slurm_max_parallel"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise UserError(f"--{name.replace('_', '-')} {value}: must be a positive integer")
    params: dict[str, str | bool] = {}
    for text in args.slurm_param:
        key, sep, value = text.partition("=")
        if not key or (sep and not value):
            raise UserError(
                f"--slurm-param {text!r}: give KEY=VALUE (constraint=h100) or a flag (exclusive)"
            )
        params[key] = value if sep else True  # submitit writes True as a bare sbatch flag
    if args.executor == "slurm" and shutil.which("srun") is None:
        raise UserError(
            "--executor slurm: no srun on this machine's PATH; run bench on a Slurm login node "
            "(or try the same jobs here with --executor submitit-local)"
        )
    if args.executor == "local":
        placement.check(cases)
    slurm = SlurmOptions(
        partition=args.slurm_partition,
        account=args.slurm_account,
        gpus_per_node=args.slurm_gpus_per_node,
        cpus_per_task=args.slurm_cpus_per_task,
        time_min=args.slurm_time,
        max_parallel=args.slurm_max_parallel,
        setup=list(args.slurm_setup),
        params=params,
        rdzv_port=args.slurm_rdzv_port or DEFAULT_RDZV_PORT,
    )
    return placement, slurm


def main(argv: list[str] | None = None) -> int:
    warnings.showwarning = _show_warning
    # SIGTERM unwinds like Ctrl-C: the launcher's clean-up kills the running case's process
    # group and the fork server exits with us, instead of the case running on to its end.
    signal.signal(signal.SIGTERM, _terminate)
    # Not a terminal (a pipe, a CI log): no width to fit, so tables are not squeezed to 80 columns.
    console = Console(width=None if sys.stdout.isatty() else 200)
    try:
        args = build_parser().parse_args(argv)
        handler = {"run": cmd_run, "report": cmd_report, "list": cmd_list, "env": cmd_env}
        handler |= {"estimate": cmd_estimate}
        handler |= {"compare": cmd_compare, "baseline": cmd_baseline, "gate": cmd_gate}
        handler |= {"ab": cmd_ab, "export": cmd_export}
        return handler[args.command](args, console)
    except UserError as error:
        message = " ".join(str(error).split())  # one line, whatever the message held
        print(f"bench: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as stop:
        print("bench: interrupted", file=sys.stderr)
        return _exit_code(stop)


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


def _exit_code(stop: KeyboardInterrupt) -> int:
    return EXIT_TERMINATED if isinstance(stop, Terminated) else EXIT_INTERRUPTED


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"bench: warning: {message}", file=sys.stderr)


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    from bench.run import sweep as runner

    if args.resume is not None:
        if args.suite or args.overrides or args.repeats or args.dry_run:
            raise UserError(
                "bench run --resume RUN takes the suite and its options from RUN/run.json; "
                "give no suite, --set, --repeats or --dry-run with it"
            )
        return _execute(args.resume, console, resumed=True)
    if not args.suite:
        raise UserError("bench run: give a suite (e.g. suites/compile_vs_eager) or --resume RUN")
    if args.seed != 0 and args.order != "random":
        warnings.warn("--seed has no effect without --order random", stacklevel=1)
    if args.repeats is not None and args.repeats <= 0:
        raise UserError(f"--repeats {args.repeats}: must be a positive integer")
    suite = suites.load(args.suite)
    overrides = dict(suites.parse_override(text) for text in args.overrides)
    if args.repeats is not None:
        overrides["repeats"] = args.repeats
    device = _resolve_device(args.device)
    cases = suites.expand(suite, device, overrides)
    placement, slurm = _where(args, cases)
    if args.dry_run:
        _print_cases(suite, cases, device, overrides, console)
        return 0
    options = runner.RunOptions(
        device, overrides, args.order, args.seed, args.executor, slurm, placement
    )
    run_dir = runner.create_run(args.out, suite, cases, options)
    console.print(f"run {run_dir}: {_count(cases)} on {device}")
    return _execute(run_dir, console, resumed=False)


def _execute(run_dir: Path, console: Console, resumed: bool) -> int:
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
        return _exit_code(stop)
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


def _resolve_device(choice: str) -> str:
    from bench.machine.nvml import cuda_device_count

    if choice == "cpu":
        return "cpu"
    count, reason = cuda_device_count()
    if choice == "cuda" and not count:
        raise UserError(f"--device cuda: no CUDA device here ({reason}); use --device cpu")
    return "cuda" if count else "cpu"


def _count(cases: list) -> str:
    runs = sum(case.repeats for case in cases)
    return f"{len(cases)} cases, {runs} runs"


def _print_cases(
    suite: suites.Suite, cases: list, device: str, overrides: dict[str, Any], console: Console
) -> None:
    from bench.run.sweep import case_labels

    labels = case_labels(cases)
    # Settings pinned with --set are the same in every case, so the column would not show them;
    # one that applies to no case was normalised away (a warning says so): it is not shown set.
    pinned = ", ".join(
        f"{k}={v}"
        for k, v in overrides.items()
        if not isinstance(v, list) and any(getattr(case, k) is not None for case in cases)
    )
    table = Table(
        title=f"{suite.name} on {device}: {_count(cases)} (dry run: nothing runs)",
        caption=f"every case: {pinned}" if pinned else None,
    )
    for column in ("#", "case id", "settings", "repeats", "will"):
        table.add_column(column)
    for index, case in enumerate(cases, start=1):
        reason = case.skip_reason()
        will = f"skip: {reason}" if reason else "run"
        table.add_row(str(index), case.id, labels[case.id], str(case.repeats), will)
    console.print(table)


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    from bench.report.report import build_report
    from bench.results.store import find_latest_runs

    out = args.out or args.results / "report"
    # Before anything is printed: the nearest part of the path that exists must be a directory.
    existing = next((p for p in (out, *out.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise UserError(
            f"--out {out}: {existing} is a file, not a directory; "
            "give a directory (it is created if missing)"
        )
    run_dirs = [_run_dir_of(arg, args.results) for arg in args.runs]
    if not run_dirs:
        run_dirs = find_latest_runs(args.results)
    if not run_dirs:
        raise UserError(
            f"{args.results}: no runs to report; "
            "run a suite first: bench run suites/compile_vs_eager"
        )
    report = build_report(run_dirs, out, console)
    console.print(f"report written: {report.markdown}, {report.html}")
    console.print(f"figures: {len(report.figures)} PNG in {out / 'figures'}")
    return 0


def _run_dir_of(arg: str, results: Path) -> Path:
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


def cmd_estimate(args: argparse.Namespace, console: Console) -> int:
    from bench.report import estimate

    inputs = estimate.parse_inputs(args)
    result = estimate.estimate(inputs, estimate.measured_here(args.results))
    if args.json:
        print(estimate.to_json(result))
    else:
        estimate.render(result, console)
    return 0


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
    for key in ("optimizers", "precisions", "compile_modes", "finetune_strategies"):
        console.print(f"{key.replace('_', ' ')}: {', '.join(listing[key])}")
    for workload in listing["workloads"]:
        tasks = ", ".join(workload["finetune_tasks"]) or "none"
        metrics = ", ".join(workload["eval_metrics"])
        console.print(f"{workload['name']}: fine-tuning tasks {tasks}; target metrics {metrics}")
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
            "eval_metrics": list(info.eval_metrics),
            "finetune_tasks": list(info.finetune_tasks),
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
        "finetune_strategies": list(FINETUNE_STRATEGIES),
        "suites": found,
    }


def cmd_env(args: argparse.Namespace, console: Console) -> int:
    from bench.machine.env import collect
    from bench.machine.paths import PROJECT_ROOT

    info = collect(PROJECT_ROOT)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    table = Table(title="environment", show_header=False)
    for key, value in info.items():
        if key != "nvml":
            text = value if isinstance(value, str) else json.dumps(value)
            table.add_row(key, text)
    console.print(table)
    # NVML on its own: its state, and every device it sees with the telemetry each one offers.
    nvml = info["nvml"]
    title = nvml["reason"]  # why NVML is unavailable
    if nvml["state"] == "ok":
        title = f"NVML {nvml['nvml_version']}, driver {nvml['driver_version']}: "
        title += f"{len(nvml['devices'])} device(s)"
    devices = Table(title=title)
    for column in ("index", "name", "uuid", "memory", "power limit", "telemetry", "unsupported"):
        devices.add_column(column)
    for d in nvml["devices"]:
        memory = d["memory_total_bytes"]
        devices.add_row(
            str(d["index"]),
            d["name"],
            d["uuid"],
            f"{memory / 2**30:.1f} GiB" if memory is not None else "-",
            f"{d['power_limit_w']:.0f} W" if d["power_limit_w"] is not None else "-",
            ", ".join(f"{k}: {v}" for k, v in d["telemetry"].items()),
            ", ".join(d["unsupported"]) or "-",
        )
    console.print(devices)
    return 0


# CI gating (docs/GATING.md): compare, baseline, gate, ab, export. The work is in
# bench.gate.compare, bench.gate.baseline, bench.gate.ab and bench.results.export; these handlers
# parse and print.


def _add_gating_commands(commands: Any) -> None:
    compare = commands.add_parser("compare", help="verdict per case: did CAND regress vs BASE?")
    compare.add_argument("base", help="run directory, records file or baseline name")
    compare.add_argument("cand", help="run directory, records file or baseline name")
    compare.add_argument("--results", type=Path, default=Path("results"))
    _add_compare_options(compare)

    baseline = commands.add_parser("baseline", help="save and list baselines for bench gate")
    actions = baseline.add_subparsers(dest="action", required=True, parser_class=_Parser)
    save = actions.add_parser("save", help="copy a run to RESULTS/baselines/NAME/")
    save.add_argument("name")
    save.add_argument("run", help="run directory, or a suite (its latest run)")
    save.add_argument("--force", action="store_true", help="replace an existing baseline")
    save.add_argument("--results", type=Path, default=Path("results"))
    listing = actions.add_parser("list", help="the baselines under RESULTS/baselines/")
    listing.add_argument("--json", action="store_true")
    listing.add_argument("--results", type=Path, default=Path("results"))

    gate = commands.add_parser("gate", help="run a suite and compare it with a baseline")
    gate.add_argument("suite")
    gate.add_argument("--baseline", required=True, metavar="NAME")
    ab = commands.add_parser("ab", help="base ref vs working tree, interleaved in one job")
    ab.add_argument("suite")
    ab.add_argument("--base-ref", required=True, metavar="REF", help="e.g. origin/main")
    for parser in (gate, ab):
        parser.add_argument("--set", dest="overrides", action="append", default=[])
        parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
        parser.add_argument("--repeats", type=int, help="repeats per case (ab: rounds per side)")
        parser.add_argument("--out", type=Path, default=Path("results"), help="results directory")
        _add_compare_options(parser)
    gate.add_argument("--order", choices=("interleaved", "random"), default="interleaved")
    gate.add_argument("--seed", type=int, default=0, help="seed of --order random")

    export = commands.add_parser("export", help="a run in another tool's format")
    export.add_argument("run", help="run directory, or a suite (its latest run)")
    export.add_argument("--format", choices=("pytest-benchmark",), required=True)
    export.add_argument("-o", "--output", type=Path, required=True, metavar="FILE")
    export.add_argument("--results", type=Path, default=Path("results"))


def _add_compare_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="[METRIC=]PCT",
        help="smallest change that counts (default 5%%): 5%%, step_time=3%%, final_loss=off",
    )
    parser.add_argument("--markdown", type=Path, metavar="FILE", help="write a Markdown summary")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the verdicts as JSON")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--bootstrap-seed", type=int, default=0)


def _comparing(args: argparse.Namespace) -> dict[str, Any]:
    """The comparison settings, validated before anything runs or is written."""
    from bench.gate.compare import parse_thresholds

    for path in (args.markdown, args.json):
        if path is not None and not path.parent.is_dir():
            raise UserError(f"{path}: no such directory {path.parent}")
    if args.resamples < 100:
        raise UserError(f"--resamples {args.resamples}: use at least 100")
    thresholds = parse_thresholds(args.threshold)
    return {"thresholds": thresholds, "resamples": args.resamples, "seed": args.bootstrap_seed}


def _report_comparison(comparison: Any, args: argparse.Namespace, console: Console) -> int:
    from bench.gate.compare_output import render_terminal, write_outputs

    render_terminal(comparison, console)
    write_outputs(comparison, args.markdown, args.json)
    return 1 if comparison.failed else 0


def cmd_compare(args: argparse.Namespace, console: Console) -> int:
    from bench.gate.compare import compare, load_side

    settings = _comparing(args)
    base, cand = load_side(args.base, args.results), load_side(args.cand, args.results)
    return _report_comparison(compare(base, cand, **settings), args, console)


def cmd_baseline(args: argparse.Namespace, console: Console) -> int:
    from bench.gate import baseline

    if args.action == "save":
        path = baseline.save(
            args.results, args.name, _run_dir_of(args.run, args.results), args.force
        )
        console.print(f"baseline {args.name!r} saved: {path} (commit it to gate CI against it)")
        return 0
    entries = baseline.list_baselines(args.results)
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    table = Table(title=f"baselines in {args.results / baseline.BASELINES}")
    for column in ("name", "suites", "cases", "records", "commit", "created", "from run"):
        table.add_column(column)
    for e in entries:
        if "error" in e:
            table.add_row(e["name"], f"unreadable: {e['error']}", "", "", "", "", "")
            continue
        commit = ((e.get("git") or {}).get("commit") or "")[:12]
        suites_ = ", ".join(e.get("suites", []))
        cases, records = str(e.get("num_cases")), str(e.get("num_records"))
        table.add_row(
            e["name"],
            suites_,
            cases,
            records,
            commit,
            e.get("created_at", ""),
            e.get("source_run", ""),
        )
    console.print(table)
    return 0


def _planned_cases(
    args: argparse.Namespace, repeats_override: bool
) -> tuple[suites.Suite, list, str, dict[str, Any]]:
    if args.repeats is not None and args.repeats <= 0:
        raise UserError(f"--repeats {args.repeats}: must be a positive integer")
    suite = suites.load(args.suite)
    overrides = dict(suites.parse_override(text) for text in args.overrides)
    if repeats_override and args.repeats is not None:
        overrides["repeats"] = args.repeats
    device = _resolve_device(args.device)
    cases = suites.expand(suite, device, overrides)
    return suite, cases, device, overrides


def cmd_gate(args: argparse.Namespace, console: Console) -> int:
    from bench.gate.compare import compare, load_side
    from bench.run import sweep as runner

    settings = _comparing(args)
    if args.seed != 0 and args.order != "random":
        warnings.warn("--seed has no effect without --order random", stacklevel=1)
    base = load_side(args.baseline, args.out)
    suite, cases, device, overrides = _planned_cases(args, repeats_override=True)
    if not {case.id for case in cases} & {r["case_id"] for r in base.records}:
        raise UserError(
            f"{suite.path}: no case in common with baseline {args.baseline!r} (the suite or its "
            f"settings changed since it was saved); save a new one: bench baseline save NAME RUN"
        )
    options = runner.RunOptions(device, overrides, args.order, args.seed)
    run_dir = runner.create_run(args.out, suite, cases, options)
    console.print(f"gate: run {run_dir}: {_count(cases)} on {device}, then compare")
    if _execute(run_dir, console, resumed=False) == EXIT_INTERRUPTED:
        return EXIT_INTERRUPTED
    # A case that crashed (exit 1 of bench run) is for the comparison to judge: broken.
    cand = load_side(str(run_dir), args.out)
    return _report_comparison(compare(base, cand, **settings), args, console)


def cmd_ab(args: argparse.Namespace, console: Console) -> int:
    from bench.gate.ab import run_ab
    from bench.gate.compare import compare, load_side
    from bench.machine.paths import PROJECT_ROOT

    settings = _comparing(args)
    suite, cases, device, _ = _planned_cases(args, repeats_override=False)
    rounds = args.repeats or max(case.repeats for case in cases)
    runs = run_ab(
        PROJECT_ROOT,
        suite.path.resolve(),
        suite.name,
        args.base_ref,
        rounds,
        device,
        args.overrides,
        args.out,
        console,
    )
    console.print(f"ab: base {runs['base']}, cand {runs['cand']}")
    base, cand = load_side(str(runs["base"]), args.out), load_side(str(runs["cand"]), args.out)
    return _report_comparison(compare(base, cand, **settings), args, console)


def cmd_export(args: argparse.Namespace, console: Console) -> int:
    from bench.results.export import export_pytest_benchmark
    from bench.results.store import write_json

    if not args.output.parent.is_dir():
        raise UserError(f"{args.output}: no such directory {args.output.parent}")
    document, left_out = export_pytest_benchmark(_run_dir_of(args.run, args.results))
    for case in left_out:
        print(f"bench: warning: case {case}: not exported", file=sys.stderr)
    write_json(args.output, document)
    console.print(f"{len(document['benchmarks'])} benchmarks written: {args.output}")
    console.print(f"compare with: pytest-benchmark compare {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
