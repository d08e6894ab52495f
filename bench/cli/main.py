"""The ``bench`` command: the parser, and the error and signal handling every command shares.

Each command family adds its own subcommands and handlers: :mod:`bench.cli.run` (run),
:mod:`bench.cli.report` (report), :mod:`bench.cli.estimate` (estimate), :mod:`bench.cli.info`
(list, env), :mod:`bench.cli.gating` (compare, baseline, gate, ab, export),
:mod:`bench.cli.history` (history),
:mod:`bench.cli.cache` (cache) and :mod:`bench.cli.calibrate` (calibrate). Bad input of any kind
is one line on stderr and exit code 2, with nothing written to disk.
"""

import argparse
import os
import signal
import sys
import warnings

from rich.console import Console

from bench.cli import cache, calibrate, estimate, gating, history, info, report, run
from bench.cli.arguments import EXIT_BAD_INPUT, EXIT_BROKEN_PIPE, Parser, exit_code
from bench.errors import Terminated, UserError


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="bench", description="Benchmark PyTorch 2.x training and fine-tuning.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for family in (run, report, estimate, info, gating, history, cache, calibrate):
        family.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    warnings.showwarning = _show_warning
    # Ctrl-C stops bench even when it started with SIGINT ignored, as every background job of a
    # shell without job control does (`make test &`, a CI script's `cmd &`): Python then keeps
    # it ignored and a SIGINT was dropped, the sweep running on to its end.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # SIGTERM unwinds like Ctrl-C: the launcher's clean-up kills the running case's process
    # group and the fork server exits with us, instead of the case running on to its end.
    signal.signal(signal.SIGTERM, _terminate)
    # Not a terminal (a pipe, a CI log): no width to fit, so tables are not squeezed to 80 columns.
    console = Console(width=None if sys.stdout.isatty() else 200)
    try:
        args = build_parser().parse_args(argv)
        return args.handler(args, console)
    except UserError as error:
        message = " ".join(str(error).split())  # one line, whatever the message held
        print(f"bench: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as stop:
        print("bench: interrupted", file=sys.stderr)
        return exit_code(stop)
    except BrokenPipeError:
        # The reader went away (`bench estimate --json | head -1`): stop quietly as a command
        # killed by SIGPIPE would, with its status; stdout goes to /dev/null so that the flush
        # at exit does not raise again (the recipe of Python's signal module documentation).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"bench: warning: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
