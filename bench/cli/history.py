"""``bench history``: change points across many runs, for a nightly job (docs/HISTORY.md).

The work is in bench.gate.history (series, change points, the newest runs' verdict) and
bench.report.history_page (the HTML page); this handler parses and prints.
"""

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.cli.arguments import check_out_dir
from bench.errors import UserError


def add_commands(commands: Any) -> None:
    from bench.gate.metrics import METRIC_NAMES

    history = commands.add_parser(
        "history", help="change points across runs; exit 1 when the newest runs regressed"
    )
    history.set_defaults(handler=cmd_history)
    history.add_argument(
        "runs",
        nargs="+",
        metavar="SUITE_OR_RUN",
        help="a suite (its file, name or folder of runs: every run of it, and the baselines "
        "holding it) or a run directory",
    )
    history.add_argument(
        "--metric",
        action="append",
        choices=METRIC_NAMES,
        metavar="METRIC",
        help=f"metric to follow (repeatable; default step_time): {', '.join(METRIC_NAMES)}",
    )
    history.add_argument("--since", metavar="DATE", help="only runs started then or later (ISO)")
    history.add_argument(
        "--last",
        type=int,
        default=3,
        metavar="K",
        help="the newest K runs are judged against the segment before them (exit 1: regressed)",
    )
    history.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="[METRIC=]PCT",
        help="smallest change that counts, for change points and the newest runs (default 5%%): "
        "5%%, step_time=3%%, as bench compare takes it",
    )
    history.add_argument("--json", type=Path, metavar="FILE", help="write the history as JSON")
    history.add_argument("--markdown", type=Path, metavar="FILE", help="write a Markdown summary")
    history.add_argument("--html", type=Path, metavar="DIR", help="write DIR/history.html")
    history.add_argument("--results", type=Path, default=Path("results"), help="where runs are")


def cmd_history(args: argparse.Namespace, console: Console) -> int:
    from bench.gate.compare import parse_thresholds
    from bench.gate.history import history
    from bench.gate.history_output import render_terminal, write_outputs
    from bench.gate.history_runs import find_runs, parse_since

    for path in (args.markdown, args.json):
        if path is not None and not path.parent.is_dir():
            raise UserError(f"{path}: no such directory {path.parent}")
    if args.html is not None:
        check_out_dir(args.html, "--html")
    if args.last < 1:
        raise UserError(f"--last {args.last}: must be a positive number of runs")
    thresholds = parse_thresholds(args.threshold)
    metrics = args.metric or ["step_time"]
    if all(thresholds[m] is None for m in metrics):
        raise UserError(f"--threshold: {', '.join(metrics)} set off: no metric left to follow")
    since = parse_since(args.since)
    runs = find_runs(args.runs, args.results)
    hist = history(runs, metrics, thresholds, args.last, since)
    if not hist.series:
        raise UserError(
            f"{', '.join(args.runs)}: no ok record with {', '.join(hist.metrics)} in "
            f"{hist.runs} runs" + (f" since {args.since} (of {len(runs)})" if since else "")
        )
    render_terminal(hist, console)
    write_outputs(hist, args.markdown, args.json)
    if args.html is not None:
        from bench.report.history_page import write_page

        console.print(f"history page: {write_page(hist.to_dict(), args.html)}")
    return 1 if hist.failed else 0
