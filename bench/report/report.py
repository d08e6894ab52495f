"""Build the report: read runs, aggregate repeats, print tables, write ``report.md``."""

import os
import tempfile
from pathlib import Path

from rich.console import Console

from bench.errors import UserError
from bench.report.frame import aggregate, records_frame
from bench.report.tables import render_markdown, render_terminal
from bench.store import read_records

REPORT_FILE = "report.md"


def build_report(run_dirs: list[Path], out_dir: Path, console: Console) -> Path:
    """Report on the given run directories; returns the path of the written ``report.md``."""
    records = [record for run_dir in run_dirs for record in read_records(run_dir)]
    if not records:
        names = ", ".join(str(run_dir) for run_dir in run_dirs) or "(no run directories)"
        raise UserError(f"no records to report in {names}")
    agg = aggregate(records_frame(records))
    render_terminal(agg, console)
    return write_atomic(out_dir / REPORT_FILE, render_markdown(agg))


def write_atomic(path: Path, text: str) -> Path:
    """Write through a temporary file in the same directory, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", delete=False
    ) as tmp:
        tmp.write(text)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp.name, 0o666 & ~umask)  # as open() would have made it, not mkstemp's 0600
    try:
        os.replace(tmp.name, path)
    except OSError:
        os.unlink(tmp.name)
        raise
    return path
