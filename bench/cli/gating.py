"""CI gating (docs/GATING.md): compare, baseline, gate, ab, export.

The work is in bench.gate.compare, bench.gate.baseline, bench.gate.ab and bench.results.export;
these handlers parse and print.
"""

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.cli.arguments import (
    DEVICE_HELP,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    SET_HELP,
    Parser,
    check_out_dir,
    count_runs,
    planned_cases,
    run_dir_of,
)
from bench.cli.run import execute
from bench.errors import UserError

RESULTS_HELP = "where runs and baselines/ are"
EXPORT_FORMATS = ("pytest-benchmark", "github-action-benchmark", "bencher", "mlflow", "tensorboard")
FILE_FORMATS = EXPORT_FORMATS[:3]


def add_commands(commands: Any) -> None:
    compare = commands.add_parser("compare", help="verdict per case: did CAND regress vs BASE?")
    compare.add_argument("base", help="run directory, records file or baseline name")
    compare.add_argument("cand", help="run directory, records file or baseline name")
    compare.add_argument("--results", type=Path, default=Path("results"), help=RESULTS_HELP)
    compare.set_defaults(handler=cmd_compare)
    _add_compare_options(compare)

    baseline = commands.add_parser("baseline", help="save and list baselines for bench gate")
    baseline.set_defaults(handler=cmd_baseline)
    actions = baseline.add_subparsers(dest="action", required=True, parser_class=Parser)
    save = actions.add_parser("save", help="copy a run to RESULTS/baselines/NAME/")
    save.add_argument("name", help="the baseline's name: letters, digits, '.', '_', '-'")
    save.add_argument("run", help="run directory, or a suite (its latest run)")
    save.add_argument("--force", action="store_true", help="replace an existing baseline")
    save.add_argument("--results", type=Path, default=Path("results"), help=RESULTS_HELP)
    listing = actions.add_parser("list", help="the baselines under RESULTS/baselines/")
    listing.add_argument("--json", action="store_true", help="print them as JSON")
    listing.add_argument("--results", type=Path, default=Path("results"), help=RESULTS_HELP)

    gate = commands.add_parser("gate", help="run a suite and compare it with a baseline")
    gate.set_defaults(handler=cmd_gate)
    gate.add_argument("suite", help="suite file, e.g. suites/ci")
    gate.add_argument(
        "--baseline", required=True, metavar="NAME", help="RESULTS/baselines/NAME to compare with"
    )
    ab = commands.add_parser("ab", help="base ref vs working tree, interleaved in one job")
    ab.set_defaults(handler=cmd_ab)
    ab.add_argument("suite", help="suite file (the working tree's), run by both sides")
    ab.add_argument("--base-ref", required=True, metavar="REF", help="e.g. origin/main")
    gate.add_argument(
        "--repeats", type=int, help="processes per case (default: the suite's repeats)"
    )
    ab.add_argument(
        "--repeats",
        type=int,
        help="rounds, each one bench run --repeats 1 per side (default: the suite's repeats)",
    )
    for side in ("base", "cand"):
        ab.add_argument(
            f"--{side}-set",
            dest=f"{side}_overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help=f"a run-length setting for the {side} side only (default: none), e.g. "
            "--cand-set profile_steps=5 with --base-ref HEAD: does profiling change the window?",
        )
    for parser in (gate, ab):
        parser.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help=SET_HELP,
        )
        parser.add_argument(
            "--device", choices=("auto", "cpu", "cuda"), default="auto", help=DEVICE_HELP
        )
        parser.add_argument(
            "--results",
            "--out",
            dest="results",
            type=Path,
            default=Path("results"),
            help="results directory: the run is written there and (gate) the baseline read from "
            "RESULTS/baselines/, as bench baseline save writes it (--out: the same, older name)",
        )
        _add_compare_options(parser)
    gate.add_argument(
        "--order",
        choices=("interleaved", "random"),
        default="interleaved",
        help="order of cases within each round of repeats",
    )
    gate.add_argument("--seed", type=int, default=0, help="seed of --order random")

    export = commands.add_parser("export", help="a run in another tool's format")
    export.set_defaults(handler=cmd_export)
    export.add_argument("run", help="run directory, or a suite (its latest run)")
    export.add_argument(
        "--format", choices=EXPORT_FORMATS, required=True, help="the format to write"
    )
    export.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="PATH",
        help="the file to write (pytest-benchmark, github-action-benchmark, bencher: required); "
        "the store's directory (mlflow: default MLflow's own, MLFLOW_TRACKING_URI or ./mlflow.db; "
        "tensorboard: default RESULTS/tensorboard)",
    )
    export.add_argument(
        "--report", type=Path, metavar="FILE", help="mlflow: a report file to attach to each run"
    )
    export.add_argument("--results", type=Path, default=Path("results"), help=RESULTS_HELP)


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
    parser.add_argument(
        "--bootstrap-seed", type=int, default=0, help="seed of the bootstrap's resampling"
    )


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


def _judge(base: Any, cand: Any, settings: dict[str, Any]) -> Any:
    """compare(), with this machine's calibrated drift for separate runs (bench calibrate)."""
    from bench.gate import calibration
    from bench.gate.compare import compare

    calibrated = calibration.for_sides(base.env, cand.env)
    return compare(base, cand, **settings, calibration=calibrated)


def _report_comparison(comparison: Any, args: argparse.Namespace, console: Console) -> int:
    from bench.gate.compare_output import render_terminal, write_outputs

    render_terminal(comparison, console)
    write_outputs(comparison, args.markdown, args.json)
    return 1 if comparison.failed else 0


def cmd_compare(args: argparse.Namespace, console: Console) -> int:
    from bench.gate.compare import load_side

    settings = _comparing(args)
    base, cand = load_side(args.base, args.results), load_side(args.cand, args.results)
    return _report_comparison(_judge(base, cand, settings), args, console)


def cmd_baseline(args: argparse.Namespace, console: Console) -> int:
    from bench.gate import baseline

    if args.action == "save":
        path = baseline.save(
            args.results, args.name, run_dir_of(args.run, args.results), args.force
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


def cmd_gate(args: argparse.Namespace, console: Console) -> int:
    from bench.gate.compare import load_side
    from bench.run import sweep as runner
    from bench.spec.user_workload import check_cases

    settings = _comparing(args)
    if args.seed != 0 and args.order != "random":
        warnings.warn("--seed has no effect without --order random", stacklevel=1)
    base = load_side(args.baseline, args.results)
    suite, cases, device, overrides = planned_cases(args, repeats_override=True)
    if not {case.id for case in cases} & {r["case_id"] for r in base.records}:
        raise UserError(
            f"{suite.path}: no case in common with baseline {args.baseline!r} (the suite or its "
            f"settings changed since it was saved); save a new one: bench baseline save NAME RUN"
        )
    check_cases(cases, str(suite.path))
    options = runner.RunOptions(device, overrides, args.order, args.seed)
    run_dir = runner.create_run(args.results, suite, cases, options)
    console.print(f"gate: run {run_dir}: {count_runs(cases)} on {device}, then compare")
    code = execute(run_dir, console, resumed=False)
    if code in (EXIT_INTERRUPTED, EXIT_TERMINATED):
        # Stopped (Ctrl-C, a cancelled CI job): the cases that never ran would count as missing,
        # which does not fail, so a verdict of the partial run could pass. None is written.
        print("bench: gate stopped before the comparison: no verdict", file=sys.stderr)
        return code
    # A case that crashed (exit 1 of bench run) is for the comparison to judge: broken.
    cand = load_side(str(run_dir), args.results)
    return _report_comparison(_judge(base, cand, settings), args, console)


def cmd_ab(args: argparse.Namespace, console: Console) -> int:
    from bench.gate.ab import run_ab
    from bench.gate.compare import load_side
    from bench.machine.paths import PROJECT_ROOT

    settings = _comparing(args)
    suite, cases, device, overrides = planned_cases(args, repeats_override=False)
    side_overrides = _side_settings(args, suite, device, overrides)
    rounds = args.repeats or max(case.repeats for case in cases)
    runs = run_ab(
        PROJECT_ROOT,
        suite.path.resolve(),
        suite.name,
        args.base_ref,
        rounds,
        device,
        args.overrides,
        args.results,
        console,
        side_overrides,
    )
    console.print(f"ab: base {runs['base']}, cand {runs['cand']}")
    base = load_side(str(runs["base"]), args.results)
    cand = load_side(str(runs["cand"]), args.results)
    return _report_comparison(_judge(base, cand, settings), args, console)


def _side_settings(
    args: argparse.Namespace, suite: Any, device: str, overrides: dict[str, Any]
) -> dict[str, list[str]]:
    """``--base-set`` / ``--cand-set``: checked like ``--set`` (key, value, the expanded suite),
    and only run-length keys, since a setting that changes the case id would leave the sides
    with no case in common."""
    from bench.spec import suite as suites
    from bench.spec.choices import RUN_LENGTH_KEYS

    sides = {"base": args.base_overrides, "cand": args.cand_overrides}
    for side, texts in sides.items():
        parsed = dict(suites.parse_override(text) for text in texts)
        for key in parsed:
            if key not in RUN_LENGTH_KEYS or key in ("repeats", "workload_root"):
                allowed = ", ".join(
                    k for k in RUN_LENGTH_KEYS if k not in ("repeats", "workload_root")
                )
                raise UserError(
                    f"--{side}-set {key}: only a run-length setting may differ between the sides "
                    f"(it leaves the case id alone); allowed: {allowed}. Settings that change "
                    "what is measured are compared as axes of one suite"
                )
        suites.expand(suite, device, {**overrides, **parsed})
    return sides


def cmd_export(args: argparse.Namespace, console: Console) -> int:
    from bench.results.export import read_run_cases

    if args.format in FILE_FORMATS and args.output is None:
        raise UserError(f"--format {args.format} needs -o FILE: the file to write")
    if args.output is not None and args.format in FILE_FORMATS:
        if not args.output.parent.is_dir():
            raise UserError(f"{args.output}: no such directory {args.output.parent}")
    elif args.output is not None:
        check_out_dir(args.output, "-o")
    if args.report is not None and (args.format != "mlflow" or not args.report.is_file()):
        raise UserError(f"--report {args.report}: a report file, for --format mlflow only")
    run_dir = run_dir_of(args.run, args.results)
    run = read_run_cases(run_dir)
    for case in run.left_out:
        print(f"bench: warning: case {case}: not exported", file=sys.stderr)
    if args.format == "pytest-benchmark":
        from bench.results.export import export_pytest_benchmark
        from bench.results.store import write_json

        document, _ = export_pytest_benchmark(run_dir)
        write_json(args.output, document)
        console.print(f"{len(document['benchmarks'])} benchmarks written: {args.output}")
        console.print(f"compare with: pytest-benchmark compare {args.output}")
    elif args.format == "github-action-benchmark":
        from bench.atomic import write_json as write_whole
        from bench.results.export_dashboards import github_action_benchmark

        smaller, bigger = github_action_benchmark(run)
        bigger_path = args.output.with_name(f"{args.output.stem}-bigger{args.output.suffix}")
        write_whole(args.output, smaller, indent=2)
        console.print(f"{len(smaller)} entries: {args.output} (tool: customSmallerIsBetter)")
        if bigger:
            write_whole(bigger_path, bigger, indent=2)
            console.print(f"{len(bigger)} entries: {bigger_path} (tool: customBiggerIsBetter)")
    elif args.format == "bencher":
        from bench.atomic import write_json as write_whole
        from bench.results.export_dashboards import bencher

        document = bencher(run)
        write_whole(args.output, document, indent=2)
        console.print(f"{len(document)} benchmarks written: {args.output}")
        console.print(f"track with: bencher run --adapter json --file {args.output}")
    elif args.format == "mlflow":
        from bench.results.export_mlflow import export_mlflow

        uri, ids = export_mlflow(run, run_dir, args.output, args.report)
        console.print(f"{len(ids)} MLflow runs logged to {uri}")
        console.print(f"see them with: mlflow ui --backend-store-uri {uri}")
    else:
        from bench.results.export_tensorboard import export_tensorboard

        logdir = args.output or args.results / "tensorboard"
        folders = export_tensorboard(run, logdir)
        console.print(f"{len(folders)} TensorBoard runs written under {folders[0].parent}")
        console.print(f"see them with: tensorboard --logdir {logdir}")
    return 0
