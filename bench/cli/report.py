"""``bench report`` (tables, figures, FAQ) and ``bench estimate`` (the cost of training N on D)."""

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.cli.arguments import run_dir_of
from bench.errors import UserError
from bench.machine.peaks import DTYPES


def add_commands(commands: Any) -> None:
    report = commands.add_parser(
        "report", help="tables, figures, FAQ: report.md and a self-contained report.html"
    )
    report.set_defaults(handler=cmd_report)
    report.add_argument("runs", nargs="*", help="run directories or suites (default: latest runs)")
    report.add_argument(
        "--results", type=Path, default=Path("results"), help="where runs are (default: results)"
    )
    report.add_argument("--out", type=Path, help="report directory (default: RESULTS/report)")

    estimate = commands.add_parser(
        "estimate", help="FLOPs, time, energy, cost and memory to train N parameters on D tokens"
    )
    estimate.set_defaults(handler=cmd_estimate)
    estimate.add_argument("--params", required=True, help="parameters N: 7B, 350M, 1e9")
    estimate.add_argument("--tokens", help="training tokens D (default: 20 per parameter)")
    estimate.add_argument("--seq-len", help="sequence length T (with --layers, --d-model)")
    estimate.add_argument("--layers", help="transformer layers L")
    estimate.add_argument("--d-model", help="model width d (heads x head size)")
    estimate.add_argument("--micro-batch", help="sequences per GPU step, for activations (1)")
    estimate.add_argument("--mfu", help="model FLOPs utilisation, 0-1 (default: measured here)")
    estimate.add_argument("--gpu", help="GPU name for the peak FLOP/s (default: measured device)")
    estimate.add_argument("--dtype", choices=DTYPES, default="bf16")
    estimate.add_argument("--gpus", help="number of GPUs (default 1)")
    estimate.add_argument("--watts", help="power per GPU, W (default: energy measured here)")
    estimate.add_argument("--pue", help="power usage effectiveness, >= 1 (default 1)")
    estimate.add_argument("--price-per-gpu-hour", help="price of one GPU-hour, for the cost")
    estimate.add_argument("--results", type=Path, default=Path("results"))
    estimate.add_argument("--json", action="store_true", help="print the figures as JSON")


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
    run_dirs = [run_dir_of(arg, args.results) for arg in args.runs]
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


def cmd_estimate(args: argparse.Namespace, console: Console) -> int:
    from bench.report import estimate

    inputs = estimate.parse_inputs(args)
    result = estimate.estimate(inputs, estimate.measured_here(args.results))
    if args.json:
        print(estimate.to_json(result))
    else:
        estimate.render(result, console)
    return 0
