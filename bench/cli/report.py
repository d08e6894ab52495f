"""``bench report``: tables, figures and the FAQ from the runs, as Markdown and HTML."""

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.cli.arguments import check_out_dir, run_dir_of
from bench.errors import UserError


def add_commands(commands: Any) -> None:
    report = commands.add_parser(
        "report", help="tables, figures, FAQ: report.md and a self-contained report.html"
    )
    report.set_defaults(handler=cmd_report)
    report.add_argument("runs", nargs="*", help="run directories or suites (default: latest runs)")
    report.add_argument("--results", type=Path, default=Path("results"), help="where runs are")
    report.add_argument("--out", type=Path, help="report directory (default: RESULTS/report)")


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    from bench.report.report import build_report
    from bench.results.store import find_latest_runs

    out = args.out or args.results / "report"
    check_out_dir(out)
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
